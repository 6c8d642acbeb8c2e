-- Device credentials for the embedded MQTT broker: one secret per device, stored only as a
-- salted Argon2id hash in PHC string form ($argon2id$v=19$m=...,t=...,p=...$salt$hash). The
-- secret itself is shown once, when it is set, and never stored. Deleting the row revokes it.
CREATE TABLE device_credentials (
    device_id   TEXT PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL,
    set_at_ms   INTEGER NOT NULL
);
