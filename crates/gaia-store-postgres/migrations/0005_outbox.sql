-- Gaia schema 5: the notification outbox.
CREATE TABLE outbox (
    id                 BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel            TEXT    NOT NULL,
    target             TEXT    NOT NULL,
    kind               TEXT    NOT NULL,
    payload            TEXT    NOT NULL,
    dedupe_key         TEXT    UNIQUE,
    status             TEXT    NOT NULL,
    attempts           BIGINT  NOT NULL,
    requeues           BIGINT  NOT NULL,
    created_at_us      BIGINT  NOT NULL,
    next_attempt_at_us BIGINT  NOT NULL,
    leased_until_us    BIGINT  NOT NULL DEFAULT 0,
    last_error         TEXT,
    sent_at_us         BIGINT,
    dead_at_us         BIGINT,
    result             TEXT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at_us);
