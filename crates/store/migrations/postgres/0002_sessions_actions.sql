-- Sign-in sessions and what staff do about alerts. Keep in lock-step with
-- ../sqlite/0002_sessions_actions.sql.

CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    account BIGINT NOT NULL REFERENCES accounts(id),
    csrf TEXT NOT NULL,
    second_factor BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE alert_actions (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert BIGINT NOT NULL REFERENCES alerts(id),
    at BIGINT NOT NULL,
    account BIGINT NULL REFERENCES accounts(id),
    kind TEXT NOT NULL,
    note TEXT NOT NULL
);
CREATE INDEX alert_actions_alert ON alert_actions (alert, at);
