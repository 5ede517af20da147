-- The working queue's indexes carry the columns its filters test (issue
-- 16), so a count and a page are index-only scans once the table is
-- vacuumed. Not the excerpt: a B-tree entry has a size limit (about 2.7 kB)
-- an excerpt of a long URL could pass, and an alert must never fail to be
-- stored. SQLite's twin (../sqlite/0016_queue_covering.sql) covers it too.

DROP INDEX alerts_live_urgency;
DROP INDEX alerts_live_school_urgency;
CREATE INDEX alerts_live_urgency ON alerts (urgency, id, status) INCLUDE (school, audience, assignee, due_at) WHERE status <> 'closed';
CREATE INDEX alerts_live_school_urgency ON alerts (school, urgency, id, status) INCLUDE (audience, assignee, due_at) WHERE status <> 'closed';
