-- The DSL's queue (issue 16). An alert's states are new (stored as `open`,
-- so the notifier, grouping and older records keep working), acknowledged,
-- triaged, escalated and closed; who holds it (`assignee`, an account id)
-- and the triage note. `urgency` is the queue's sort key in one column:
-- (6 - level) * 10^14 + due time in ms (no deadline: 10^14 - 1), so "level
-- high to low, then due soonest, no deadline last" is one ascending key that
-- a keyset page can seek on with (urgency, id) > (?, ?); the store writes it
-- with every level or deadline. Guidance per category and level, what to do
-- and who to tell, as the trust edits it (the defaults shipped in crates/store/src/guidance.txt).
-- Keep in lock-step with ../sqlite/0012_queue.sql.

ALTER TABLE alerts ADD COLUMN assignee BIGINT NULL;
ALTER TABLE alerts ADD COLUMN triage_note TEXT NULL;
ALTER TABLE alerts ADD COLUMN urgency BIGINT NOT NULL DEFAULT 0;
UPDATE alerts SET urgency = (6 - level) * 100000000000000 + COALESCE(due_at, 99999999999999);

-- Alerts not closed (the working queue), most urgent first, trust-wide and
-- per school; the state rides along so a count by state is read from the
-- index alone.
CREATE INDEX alerts_live_urgency ON alerts (urgency, id, status) WHERE status <> 'closed';
CREATE INDEX alerts_live_school_urgency ON alerts (school, urgency, id, status) WHERE status <> 'closed';
-- One status (closed ones above all), most urgent first.
CREATE INDEX alerts_status_urgency ON alerts (status, urgency, id);
CREATE INDEX alerts_school_status_urgency ON alerts (school, status, urgency, id);
-- Newest first, whatever the status.
CREATE INDEX alerts_received ON alerts (received_at, id);
CREATE INDEX alerts_school_received ON alerts (school, received_at, id);
-- "Mine": an account's alerts.
CREATE INDEX alerts_assignee ON alerts (assignee, urgency, id);

CREATE TABLE guidance (
    category TEXT NOT NULL,
    level BIGINT NOT NULL,
    what_to_do TEXT NOT NULL,
    who_to_tell TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by BIGINT NULL,
    PRIMARY KEY (category, level)
);
