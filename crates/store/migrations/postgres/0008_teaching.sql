-- The DSL teaches the monitoring (issue 13): example sentences beside the
-- phrases and exclusions ("treat messages like this as <category> at level
-- <1-5>", or "as not a concern"), each with its reason and removable with
-- one; and a verdict on every alert closed from now on (real concern or not
-- a concern), from which a trust retrains its own semantic head. Alerts
-- closed before have no verdict. Keep in lock-step with
-- ../sqlite/0008_teaching.sql.

ALTER TABLE lexicon_entries ADD COLUMN kind TEXT NOT NULL DEFAULT 'phrase';
ALTER TABLE lexicon_entries ADD COLUMN level BIGINT NULL;
UPDATE lexicon_entries SET kind = 'exclude' WHERE category IS NULL;
ALTER TABLE alerts ADD COLUMN verdict TEXT NULL;
