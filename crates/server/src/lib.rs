//! The metaward server: sources, ingest pipeline, hub, REST and WebSocket API.
