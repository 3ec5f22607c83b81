-- Gaia schema 9: GitHub sync. One row per backlog item and repository: the sync key its
-- issue's marker line carries (never changes), the issue number once known (NULL while only
-- the write-ahead intent to create it is recorded), the hash of what was last pushed, and
-- what a reconcile after an interrupted create needs (when the intent was first recorded,
-- the highest issue number seen before it).
CREATE TABLE github_sync (
    repo            TEXT    NOT NULL,
    item_kind       TEXT    NOT NULL,
    item            TEXT    NOT NULL,
    sync_key        TEXT    NOT NULL UNIQUE,
    issue           BIGINT,
    pushed_hash     TEXT,
    intent_at_us    BIGINT  NOT NULL,
    attempt_at_us   BIGINT  NOT NULL,
    last_seen       BIGINT  NOT NULL,
    updated_at_us   BIGINT  NOT NULL,
    PRIMARY KEY (repo, item_kind, item)
);
