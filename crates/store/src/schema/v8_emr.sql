-- External EMR sync (docs/emr.md). The vitals write-back is a cursor over the durable log,
-- like the projector's checkpoint: `log_offset` is the first record not yet accepted by the
-- EMR. It advances only after the EMR answered the batch with success, so a restart or an
-- outage resends from here (conditional creates on a stable identifier make a resend harmless).
CREATE TABLE emr_cursor (
    name       TEXT PRIMARY KEY,
    log_offset INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
