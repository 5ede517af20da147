-- The DSL's workspace (issue 16, parts 3 and 4). Keep in lock-step with
-- ../postgres/0013_incidents_staff.sql.

-- Who an alert is for: 'pupil' (the safeguarding queue), 'staff' (about a
-- member of staff: the headteacher and IT, never the DSL queue) or 'head'
-- (about the headteacher: the chair of governors).
ALTER TABLE alerts ADD COLUMN audience TEXT NOT NULL DEFAULT 'pupil';
CREATE INDEX alerts_audience ON alerts (school, audience);

-- The incident list pages newest first by (raised_at, id).
CREATE INDEX incidents_raised ON incidents (raised_at, id);

-- Alerts, people and other incidents linked to an incident.
CREATE TABLE incident_links (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident BIGINT NOT NULL REFERENCES incidents(id),
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    at BIGINT NOT NULL,
    account BIGINT NOT NULL REFERENCES accounts(id)
);
CREATE UNIQUE INDEX incident_links_once ON incident_links (incident, kind, target);

-- The school an audit row's object belongs to, filled by writes from this
-- migration on (rows before it stay NULL: only the trust sees those).
ALTER TABLE audit ADD COLUMN school TEXT NULL;
CREATE INDEX audit_school ON audit (school, at);
