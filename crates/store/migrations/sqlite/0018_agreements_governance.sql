-- The governance record (issue 17, first part): acceptable-use agreements
-- per audience with their versions, who accepted which and how (a parent's
-- single-use link, a paper copy staff recorded, a device at sign-in); the
-- named people for filtering and monitoring (SLT lead, governor, DSLs, IT
-- provider) and staff training; the annual filtering and monitoring review
-- with its four sign-offs. Keep in lock-step with
-- ../postgres/0018_agreements_governance.sql.

CREATE TABLE agreements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    school TEXT NOT NULL REFERENCES schools(id),
    -- primary-pupil, secondary-pupil, staff, parent, guest.
    audience TEXT NOT NULL,
    version TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    published_at BIGINT NOT NULL,
    published_by TEXT NOT NULL,
    -- When a newer version for the same audience was published: from then
    -- on acceptances of this one are not current.
    superseded_at BIGINT NULL,
    UNIQUE (school, audience, version)
);
CREATE INDEX agreements_current ON agreements (school, audience, superseded_at);

CREATE TABLE agreement_acceptances (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agreement BIGINT NOT NULL REFERENCES agreements(id),
    school TEXT NOT NULL,
    -- The pupil's or member of staff's login; for a parent or carer, the
    -- pupil's login they accepted for; for a guest, their name.
    person TEXT NOT NULL,
    -- The name given when accepting (a carer's own name).
    signed_name TEXT NOT NULL,
    -- link, paper, device.
    method TEXT NOT NULL,
    accepted_at BIGINT NOT NULL,
    recorded_by TEXT NOT NULL,
    UNIQUE (agreement, person)
);
CREATE INDEX agreement_acceptances_person ON agreement_acceptances (school, person);

CREATE TABLE agreement_links (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agreement BIGINT NOT NULL REFERENCES agreements(id),
    school TEXT NOT NULL,
    -- The pupil whose parent or carer the link is for.
    person TEXT NOT NULL,
    -- SHA-256 of the token; the token itself is never stored.
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT NULL
);

CREATE TABLE governance_roles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    school TEXT NOT NULL REFERENCES schools(id),
    -- slt-lead, governor, dsl, it-provider.
    role TEXT NOT NULL,
    name TEXT NOT NULL,
    contact TEXT NOT NULL,
    responsibilities TEXT NOT NULL,
    since BIGINT NOT NULL,
    recorded_by TEXT NOT NULL,
    ended_at BIGINT NULL,
    ended_by TEXT NULL
);
CREATE INDEX governance_roles_school ON governance_roles (school, ended_at);

CREATE TABLE training_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    school TEXT NOT NULL REFERENCES schools(id),
    person TEXT NOT NULL,
    course TEXT NOT NULL,
    completed_at BIGINT NOT NULL,
    expires_at BIGINT NULL,
    recorded_by TEXT NOT NULL,
    recorded_at BIGINT NOT NULL
);
CREATE INDEX training_records_school ON training_records (school, expires_at);

CREATE TABLE reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    school TEXT NOT NULL REFERENCES schools(id),
    -- annual, or triggered (a new risk, new technology).
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    period_from BIGINT NOT NULL,
    period_to BIGINT NOT NULL,
    -- JSON: the template's sections, by key, as written.
    sections TEXT NOT NULL,
    -- draft, complete.
    state TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    completed_at BIGINT NULL
);
CREATE INDEX reviews_school ON reviews (school, completed_at);

CREATE TABLE review_signoffs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    review BIGINT NOT NULL REFERENCES reviews(id),
    -- slt-lead, dsl, it, governor.
    role TEXT NOT NULL,
    account BIGINT NOT NULL REFERENCES accounts(id),
    signed_as TEXT NOT NULL,
    signed_at BIGINT NOT NULL,
    UNIQUE (review, role)
);
