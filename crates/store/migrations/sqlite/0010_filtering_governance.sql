-- Filtering governance (issue 15): changes to the filtering policy made in
-- the record on top of the config's base policy, and requests for them
-- (a teacher's lesson unblock, a pupil's "should be allowed", staff
-- reporting over- or under-blocking, a lesson topic declared), each with its
-- whole history; notices for IT (a failed filtering check, a list feed that
-- could not be refreshed); the filtering checks log the DfE standards ask
-- for; and each list feed's refreshes. Keep in lock-step with
-- ../postgres/0010_filtering_governance.sql.

CREATE TABLE filter_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    school TEXT NOT NULL REFERENCES schools(id),
    -- change (made by staff who may), lesson (a teacher's request),
    -- pupil (from the block page), over-blocking, under-blocking, topic.
    kind TEXT NOT NULL,
    -- school, group, class or user; with its id (none for school).
    scope TEXT NOT NULL,
    scope_id TEXT NULL,
    -- allow or block; none for a topic.
    verdict TEXT NULL,
    site TEXT NULL,
    category TEXT NULL,
    reason TEXT NOT NULL,
    starts_at BIGINT NOT NULL,
    until_at BIGINT NULL,
    -- requested, in-force, refused, withdrawn, noted.
    state TEXT NOT NULL,
    -- How many approvals it has had in the chain.
    approvals BIGINT NOT NULL DEFAULT 0,
    requested_by TEXT NOT NULL,
    decided_by TEXT NULL,
    decided_at BIGINT NULL,
    decision TEXT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX filter_changes_state ON filter_changes (state, school);

CREATE TABLE filter_change_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    change_id BIGINT NOT NULL REFERENCES filter_changes(id),
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    -- asked, made, approved, narrowed, refused, withdrawn, noted, lapsed.
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX filter_change_events_change ON filter_change_events (change_id);

CREATE TABLE it_notices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    school TEXT NULL REFERENCES schools(id),
    -- filtering-check, feed.
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    raised_at BIGINT NOT NULL,
    seen_by TEXT NULL,
    seen_at BIGINT NULL
);

CREATE TABLE filter_checks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run TEXT NOT NULL,
    at BIGINT NOT NULL,
    who TEXT NOT NULL,
    -- web, schedule, command, device.
    origin TEXT NOT NULL,
    school TEXT NOT NULL,
    grp TEXT NOT NULL,
    device TEXT NULL,
    probe TEXT NOT NULL,
    path TEXT NOT NULL,
    target TEXT NOT NULL,
    expected TEXT NOT NULL,
    got TEXT NOT NULL,
    ok BIGINT NOT NULL,
    follow_up TEXT NULL
);
CREATE INDEX filter_checks_at ON filter_checks (at);

CREATE TABLE feed_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    at BIGINT NOT NULL,
    ok BIGINT NOT NULL,
    entries BIGINT NULL,
    message TEXT NOT NULL
);
CREATE INDEX feed_runs_source ON feed_runs (source, at);
