-- External EMR sync (docs/emr.md). The vitals write-back is a cursor over the durable log,
-- like the projector's checkpoint: `log_offset` is the first record not yet accepted by the
-- EMR. It advances only after the EMR answered the batch with success, so a restart or an
-- outage resends from here (conditional creates on a stable identifier make a resend harmless).
CREATE TABLE emr_cursor (
    name       TEXT PRIMARY KEY,
    log_offset INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- The pull from the EMR: per admitted patient and resource type, the newest
-- `meta.lastUpdated` brought in. The next poll asks for `_lastUpdated=ge` it (ge, not gt: two
-- resources may share a millisecond; importing one again is a no-op).
CREATE TABLE emr_pull_watermark (
    patient_id      TEXT NOT NULL,
    resource_type   TEXT NOT NULL,
    last_updated_ms INTEGER NOT NULL,
    PRIMARY KEY (patient_id, resource_type)
) WITHOUT ROWID;
