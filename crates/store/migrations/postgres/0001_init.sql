-- Haven's safeguarding record (PostgreSQL). Times are unix milliseconds (BIGINT),
-- booleans BIGINT 0/1: the same shapes as the PostgreSQL schema, so one code
-- path reads both through sqlx's Any driver. Keep in lock-step with
-- ../sqlite/0001_init.sql (a test compares the two).

CREATE TABLE schools (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    demo BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE accounts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    school TEXT NULL REFERENCES schools(id),
    password_hash TEXT NOT NULL,
    totp_secret TEXT NULL,
    failed_logins BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE devices (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    school TEXT NOT NULL REFERENCES schools(id),
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account BIGINT NOT NULL REFERENCES accounts(id),
    key_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE oncall (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    school TEXT NULL REFERENCES schools(id),
    name TEXT NOT NULL,
    email TEXT NULL,
    webhook TEXT NULL,
    priority BIGINT NOT NULL
);

CREATE TABLE alerts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    school TEXT NOT NULL REFERENCES schools(id),
    person TEXT NOT NULL,
    category TEXT NOT NULL,
    level BIGINT NOT NULL,
    status TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    due_at BIGINT NULL,
    last_seen BIGINT NOT NULL,
    occurrences BIGINT NOT NULL,
    source TEXT NOT NULL,
    excerpt TEXT NOT NULL,
    url TEXT NULL,
    explanation TEXT NOT NULL,
    spans TEXT NOT NULL
);
CREATE INDEX alerts_queue ON alerts (school, status, due_at);
CREATE INDEX alerts_person ON alerts (school, person, category, status);

CREATE TABLE notifications (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert BIGINT NOT NULL REFERENCES alerts(id),
    name TEXT NOT NULL,
    channel TEXT NOT NULL,
    target TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    sent_at BIGINT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    callout BIGINT NOT NULL
);
CREATE INDEX notifications_due ON notifications (sent_at, due_at);

CREATE TABLE audit (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_object ON audit (object, at);
