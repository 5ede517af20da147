-- Suggestions for IT (issue 18): hosts no list names, counted by the DNS
-- filter and the proxy and added in here by `haven serve` every minute, with
-- the hostname model's guess and a few content verdicts. IT confirms one
-- (a block in the change register; the category chosen is kept here) or
-- rejects it with a reason. Every host is kept; the page shows those seen
-- often enough. A decided row keeps counting and never reopens.
-- Keep in lock-step with ../sqlite/0020_filter_suggestions.sql.

CREATE TABLE filter_suggestions (
    id BIGSERIAL PRIMARY KEY,
    -- The school the visits came from; NULL: people of no school (the trust's).
    school TEXT NULL,
    -- The school, or '' for the trust: NULLs are never equal in a unique key.
    scope TEXT NOT NULL,
    -- The registered domain (example.co.uk).
    domain TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    hits BIGINT NOT NULL DEFAULT 0,
    -- Different people in the busiest minute: a lower bound.
    people BIGINT NOT NULL DEFAULT 0,
    -- The hostname model's latest guess: a category id, thousandths, and the
    -- pieces of the name that weighed most (a JSON array).
    model_category TEXT NULL,
    model_confidence BIGINT NULL,
    model_evidence TEXT NOT NULL DEFAULT '[]',
    -- Up to five content verdicts: [{url, categories, score, at}].
    samples TEXT NOT NULL DEFAULT '[]',
    -- open, confirmed, rejected.
    status TEXT NOT NULL DEFAULT 'open',
    decided_by TEXT NULL,
    decided_at BIGINT NULL,
    -- The reason given (a rejection's), or the change's reason.
    decision TEXT NULL,
    -- The category IT confirmed.
    category TEXT NULL,
    -- The change register's row that blocks it (the first, for the trust's).
    change_id BIGINT NULL,
    UNIQUE (scope, domain)
);
CREATE INDEX filter_suggestions_queue ON filter_suggestions (status, hits);

-- The collector's own counts: hosts not kept because a minute held more
-- different hosts than it has room for, and when it last wrote.
CREATE TABLE filter_suggestion_collector (
    name TEXT PRIMARY KEY,
    not_kept BIGINT NOT NULL DEFAULT 0,
    last_not_kept_at BIGINT NULL,
    last_drain_at BIGINT NULL
);
