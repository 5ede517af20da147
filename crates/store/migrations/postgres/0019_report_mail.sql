-- Reports sent by e-mail (issue 17): the weekly DSL digest, one row per
-- school, week and recipient, kept until sent. Counts only, never a name or
-- a pupil's words; the unique key makes queuing a week's digest twice a no-op
-- (the schedule in `haven serve` and `haven report digest` may both ask).
-- Keep in lock-step with ../sqlite/0019_report_mail.sql.

CREATE TABLE report_mail (
    id BIGSERIAL PRIMARY KEY,
    -- digest.
    kind TEXT NOT NULL,
    school TEXT NOT NULL REFERENCES schools(id),
    -- The period it covers: the week's Monday, 2026-11-30.
    period TEXT NOT NULL,
    name TEXT NOT NULL,
    target TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    -- The same on every retry (the e-mail's Message-ID).
    notice_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    sent_at BIGINT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    gave_up_at BIGINT NULL,
    last_error TEXT NULL,
    UNIQUE (kind, school, period, target)
);
CREATE INDEX report_mail_due ON report_mail (sent_at, gave_up_at, due_at);
