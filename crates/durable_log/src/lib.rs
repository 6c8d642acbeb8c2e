//! An append-only, checksummed, segmented log with group commit: device data is acknowledged only once it is here.
