-- A person's chronology (crates/store/src/chronology.rs): each kind of entry
-- is read newest first by a keyset seek on an index that starts with the
-- person, so a page costs the same whatever the person's history holds.
-- Keep in lock-step with ../sqlite/0015_chronology.sql.

CREATE INDEX alerts_person_received ON alerts (school, person, received_at, id);
CREATE INDEX incidents_person_raised ON incidents (school, person, raised_at, id);
-- Incidents linked to a person (`kind = 'person'`, `target = 'school/login'`).
CREATE INDEX incident_links_target ON incident_links (kind, target);
-- A page's incidents' steps in one query.
CREATE INDEX incident_actions_incident ON incident_actions (incident, at);
CREATE INDEX reports_person ON reports (school, person, at, id);
-- Filtering changes and requests for one user.
CREATE INDEX filter_changes_user ON filter_changes (school, scope, scope_id, created_at, id);
