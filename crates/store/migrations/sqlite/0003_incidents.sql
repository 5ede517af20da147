-- Incidents following the response flowchart, what was done, and evidence
-- files (kept by SHA-256). Keep in lock-step with ../postgres/0003_incidents.sql.

CREATE TABLE incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    school TEXT NOT NULL REFERENCES schools(id),
    person TEXT NULL,
    alert BIGINT NULL REFERENCES alerts(id),
    title TEXT NOT NULL,
    kind TEXT NOT NULL,
    about_head BIGINT NOT NULL,
    status TEXT NOT NULL,
    raised_at BIGINT NOT NULL,
    raised_by BIGINT NOT NULL REFERENCES accounts(id),
    outcome TEXT NOT NULL,
    feedback TEXT NOT NULL,
    lessons TEXT NOT NULL,
    sanction TEXT NOT NULL,
    closed_at BIGINT NULL
);
CREATE INDEX incidents_person ON incidents (school, person);

CREATE TABLE incident_actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident BIGINT NOT NULL REFERENCES incidents(id),
    at BIGINT NOT NULL,
    account BIGINT NOT NULL REFERENCES accounts(id),
    note TEXT NOT NULL
);

CREATE TABLE evidence (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident BIGINT NOT NULL REFERENCES incidents(id),
    at BIGINT NOT NULL,
    account BIGINT NOT NULL REFERENCES accounts(id),
    filename TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    note TEXT NOT NULL
);
