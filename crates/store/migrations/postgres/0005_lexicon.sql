-- The trust's own monitoring phrases and exclusions, edited in the web app
-- by safeguarding leads, each with its reason (requirements M09). Nothing is
-- deleted: removing an entry records who, when and why. A phrase has a
-- category (its lexicon table: bullying, vulnerable, ...) and a weight 1-5;
-- an exclusion has neither. Keep in lock-step with ../sqlite/0005_lexicon.sql.

CREATE TABLE lexicon_entries (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    category TEXT NULL,
    phrase TEXT NOT NULL,
    weight BIGINT NULL,
    reason TEXT NOT NULL,
    added_by TEXT NOT NULL,
    added_at BIGINT NOT NULL,
    removed_by TEXT NULL,
    removed_at BIGINT NULL,
    removed_reason TEXT NULL
);
