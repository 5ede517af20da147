-- A record that keeps everything (issue: nothing lost, nothing late).
-- Every finding joined to an alert keeps its own text, source, URL, time and
-- screenshot; a retried event is recognised by its idempotency key; reports
-- from people (block page, public page) are kept with the reporter's contact
-- details apart from the words that are classified; each notice carries an
-- idempotency id, gives up after capped retries and is cancelled once the
-- alert is acknowledged or closed. Keep in lock-step with ../sqlite/0006_record.sql.

CREATE TABLE occurrences (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert BIGINT NOT NULL REFERENCES alerts(id),
    at BIGINT NOT NULL,
    level BIGINT NOT NULL,
    source TEXT NOT NULL,
    excerpt TEXT NOT NULL,
    url TEXT NULL,
    spans TEXT NOT NULL,
    explanation TEXT NOT NULL,
    screenshot TEXT NULL,
    screenshot_withheld BIGINT NOT NULL DEFAULT 0,
    repeats BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX occurrences_alert ON occurrences (alert, at);
INSERT INTO occurrences (alert, at, level, source, excerpt, url, spans, explanation, screenshot, screenshot_withheld, repeats)
    SELECT id, received_at, level, source, excerpt, url, spans, explanation, screenshot, screenshot_withheld, occurrences FROM alerts;

CREATE TABLE ingest_keys (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    at BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE TABLE reports (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL,
    school TEXT NULL,
    person TEXT NULL,
    at BIGINT NOT NULL,
    reference TEXT NULL,
    url TEXT NULL,
    categories TEXT NOT NULL,
    rule TEXT NULL,
    words TEXT NOT NULL,
    contact TEXT NULL,
    alert BIGINT NULL REFERENCES alerts(id),
    status TEXT NOT NULL
);
CREATE INDEX reports_kind ON reports (kind, status, at);

ALTER TABLE notifications ADD COLUMN notice_id TEXT NULL;
ALTER TABLE notifications ADD COLUMN purpose TEXT NOT NULL DEFAULT 'alert';
ALTER TABLE notifications ADD COLUMN gave_up_at BIGINT NULL;
ALTER TABLE notifications ADD COLUMN cancelled_at BIGINT NULL;
ALTER TABLE notifications ADD COLUMN last_error TEXT NULL;
ALTER TABLE oncall ADD COLUMN preset TEXT NULL;
