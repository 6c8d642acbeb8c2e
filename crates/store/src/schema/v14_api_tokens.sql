-- Bearer credentials that outlive a process: long-lived API tokens and sign-in sessions. Only
-- SHA-256 hashes of the tokens are kept (each token is 256 random bits, so a hash cannot be
-- reversed by guessing); the tokens themselves are shown once, when they are made.

-- API tokens: a device's token for posting its own Observations over FHIR (`device_id`), or a
-- service token acting as a user with that user's role and wards (`user_name`), for
-- integrations such as an EMR link and scripts. Revoking deletes the row; rotating replaces
-- the hash, so the old secret stops working at once.
CREATE TABLE api_tokens (
    name          TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('device', 'service')),
    device_id     TEXT,
    user_name     TEXT REFERENCES users (name) ON DELETE CASCADE,
    token_hash    BLOB NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL,
    -- When the current secret was made (creation or the last rotation).
    secret_set_at_ms INTEGER NOT NULL,
    -- NULL: does not expire.
    expires_at_ms INTEGER,
    CHECK ((kind = 'device') = (device_id IS NOT NULL)),
    CHECK ((kind = 'service') = (user_name IS NOT NULL))
);

-- Sign-in sessions (access and refresh token hashes), so a restart does not sign everyone
-- out; a row is deleted when its session is refreshed, logged out, revoked or expired.
CREATE TABLE sessions (
    access_hash        BLOB PRIMARY KEY,
    refresh_hash       BLOB NOT NULL UNIQUE,
    user_name          TEXT NOT NULL,
    role               TEXT NOT NULL,
    -- NULL: every ward; otherwise a JSON array of ward ids.
    wards              TEXT,
    access_expires_ms  INTEGER NOT NULL,
    refresh_expires_ms INTEGER NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_name);
