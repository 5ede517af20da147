-- Retention and subject access (issue 17): a legal hold on an incident
-- (set and cleared by the DSL with a reason) keeps it, its alerts and its
-- evidence from the retention job; alerts and reports past their period are
-- anonymised in place (who and what cleared, the numbers kept) and marked;
-- each run of the retention job is kept with its counts per class (never
-- content). Keep in lock-step with ../sqlite/0017_retention.sql.

ALTER TABLE incidents ADD COLUMN legal_hold BIGINT NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN hold_reason TEXT NULL;
ALTER TABLE incidents ADD COLUMN hold_by TEXT NULL;
ALTER TABLE incidents ADD COLUMN hold_at BIGINT NULL;
ALTER TABLE alerts ADD COLUMN anonymised_at BIGINT NULL;
ALTER TABLE reports ADD COLUMN anonymised_at BIGINT NULL;

CREATE INDEX incidents_retention ON incidents (status, closed_at);
CREATE INDEX alerts_retention ON alerts (status, last_seen);
CREATE INDEX audit_at ON audit (at);

CREATE TABLE retention_runs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at BIGINT NOT NULL,
    -- JSON: the period of each class, in days, the run applied.
    periods TEXT NOT NULL,
    -- JSON: how many records of each class were deleted or anonymised.
    counts TEXT NOT NULL,
    finished_at BIGINT NULL
);
CREATE INDEX retention_runs_at ON retention_runs (at);
