-- People (issue 16): the pupils and staff the MIS export and the config
-- name, so alerts, chronologies and incidents show "Amy Pupil (Year 10,
-- 10GH)" rather than a login. Synced from the config on every start and
-- reload; someone no longer in the MIS is marked left (left_at), never
-- deleted, since the record still speaks of them. `folded` is the display
-- name and login in lower case, for a search that ignores case on both
-- back ends. An alert about a login nobody knows (a typo, a stranger's
-- account) is flagged unidentified for the DSL to match to a pupil.
-- Keep in lock-step with ../postgres/0011_people.sql.

CREATE TABLE people (
    school TEXT NOT NULL,
    login TEXT NOT NULL,
    display_name TEXT NULL,
    year TEXT NULL,
    form TEXT NULL,
    classes TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL,
    folded TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    left_at BIGINT NULL,
    PRIMARY KEY (school, login)
);
CREATE INDEX people_search ON people (school, folded);

ALTER TABLE alerts ADD COLUMN unidentified BIGINT NOT NULL DEFAULT 0;
