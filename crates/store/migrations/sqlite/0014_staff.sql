-- Staff are shown by name (issue: staff are protected and protected from).
-- Keep in lock-step with ../postgres/0014_staff.sql.

-- A member of staff's display name, shown wherever they acted (alert and
-- incident actions, evidence, the audit log, filtering changes). NULL:
-- shown by e-mail, as before.
ALTER TABLE accounts ADD COLUMN name TEXT;
