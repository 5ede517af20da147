-- Screenshots sent with monitoring events, kept by SHA-256 in the evidence
-- folder (never for possible sexual content). Keep in lock-step with ../sqlite/0004_screenshots.sql.

ALTER TABLE alerts ADD COLUMN screenshot TEXT NULL;
ALTER TABLE alerts ADD COLUMN screenshot_withheld BIGINT NOT NULL DEFAULT 0;
