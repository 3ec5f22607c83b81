-- Gaia schema 5: the notification outbox.
CREATE TABLE outbox (
    id                 INTEGER PRIMARY KEY,
    channel            TEXT    NOT NULL,
    target             TEXT    NOT NULL,
    kind               TEXT    NOT NULL,
    payload            TEXT    NOT NULL,
    dedupe_key         TEXT    UNIQUE,
    status             TEXT    NOT NULL,
    attempts           INTEGER NOT NULL,
    requeues           INTEGER NOT NULL,
    created_at_us      INTEGER NOT NULL,
    next_attempt_at_us INTEGER NOT NULL,
    leased_until_us    INTEGER NOT NULL DEFAULT 0,
    last_error         TEXT,
    sent_at_us         INTEGER,
    dead_at_us         INTEGER,
    result             TEXT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at_us);
