-- People who use metaward: a role, a scope of wards, a salted Argon2id password hash (PHC
-- string; the password itself is never stored), and the state of failed logins for lockout.
CREATE TABLE users (
    name               TEXT PRIMARY KEY,
    role               TEXT NOT NULL CHECK (role IN ('admin', 'physician', 'nurse', 'observer')),
    -- 1: every ward (now and future); 0: only the wards in user_wards.
    all_wards          INTEGER NOT NULL CHECK (all_wards IN (0, 1)),
    password_hash      TEXT NOT NULL,
    disabled           INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    failed_logins      INTEGER NOT NULL DEFAULT 0,
    locked_until_ms    INTEGER,
    created_at_ms      INTEGER NOT NULL,
    password_set_at_ms INTEGER NOT NULL
);

CREATE TABLE user_wards (
    user_name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    ward_id   TEXT NOT NULL,
    PRIMARY KEY (user_name, ward_id)
);

-- The audit trail: append-only (the triggers refuse UPDATE and DELETE) and tamper-evident:
-- `hash` is SHA-256 over the previous entry's hash and this entry's fields, so changing,
-- removing or inserting a row breaks the chain from there on (`metaward audit verify`).
CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY,
    time_ms    INTEGER NOT NULL,
    actor      TEXT NOT NULL,   -- user name, `anonymous`, or `system`
    role       TEXT,
    source     TEXT NOT NULL,   -- the peer's address
    action     TEXT NOT NULL,   -- e.g. `read`, `change`, `login`, `login_failed`, `acknowledge`
    what       TEXT NOT NULL,   -- the method and route template, or the command
    patient_id TEXT,
    outcome    TEXT NOT NULL,   -- `success`, or the HTTP status / reason of a refusal
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
