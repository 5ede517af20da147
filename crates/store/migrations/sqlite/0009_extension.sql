-- The browser extension (issue 14): each device's last contact, the
-- extension's version and how many events wait in its offline queue (and
-- how many it had to drop), so IT sees a device that went quiet; pupils'
-- acceptances of the acceptable-use text, one per version; and the key
-- that signs the policy devices obey (sealed when the record has a key).
-- Keep in lock-step with ../postgres/0009_extension.sql.

ALTER TABLE devices ADD COLUMN last_seen_at BIGINT NULL;
ALTER TABLE devices ADD COLUMN agent TEXT NULL;
ALTER TABLE devices ADD COLUMN queue_depth BIGINT NULL;
ALTER TABLE devices ADD COLUMN dropped BIGINT NULL;
-- The pupil a device belongs to (a one-to-one laptop), when the browser
-- does not say who is signed in.
ALTER TABLE devices ADD COLUMN owner TEXT NULL;

CREATE TABLE acceptances (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    school TEXT NOT NULL REFERENCES schools(id),
    person TEXT NOT NULL,
    version TEXT NOT NULL,
    accepted_at BIGINT NOT NULL,
    device BIGINT NULL REFERENCES devices(id),
    UNIQUE (school, person, version)
);

CREATE TABLE signing_keys (
    name TEXT PRIMARY KEY,
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
