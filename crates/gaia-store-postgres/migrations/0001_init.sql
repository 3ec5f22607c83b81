-- Gaia schema 1: the log head, events, the audit chain and claims.
-- Times are microseconds since the Unix epoch (UTC), as on every backend.

-- One row. Its row lock orders every commit that appends to the log: event seqs are gap-free
-- and become visible in seq order, so a reader resuming after seq N never misses one.
CREATE TABLE log_head (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    event_seq         BIGINT  NOT NULL,
    audit_seq         BIGINT  NOT NULL,
    audit_hash        TEXT    NOT NULL,
    audit_anchor_id   BIGINT  NOT NULL,
    audit_anchor_hash TEXT    NOT NULL
);
INSERT INTO log_head VALUES (
    1, 0, 0,
    '0000000000000000000000000000000000000000000000000000000000000000',
    0,
    '0000000000000000000000000000000000000000000000000000000000000000'
);

CREATE TABLE events (
    seq     BIGINT PRIMARY KEY,
    ts_us   BIGINT NOT NULL,
    type    TEXT   NOT NULL,
    actor   TEXT   NOT NULL,
    subject TEXT   NOT NULL,
    data    TEXT   NOT NULL
);
CREATE INDEX events_subject ON events (subject, seq);

CREATE TABLE audit (
    id        BIGINT PRIMARY KEY,
    ts_us     BIGINT NOT NULL,
    actor     TEXT   NOT NULL,
    action    TEXT   NOT NULL,
    subject   TEXT   NOT NULL,
    outcome   TEXT   NOT NULL,
    details   TEXT   NOT NULL,
    prev_hash TEXT   NOT NULL,
    hash      TEXT   NOT NULL
);

-- One row per key ever claimed; it outlives releases so the fencing token keeps increasing.
CREATE TABLE claims (
    key            TEXT   PRIMARY KEY,
    story          TEXT   NOT NULL,
    todolist       TEXT   NOT NULL,
    agent          TEXT,
    operator       TEXT,
    fingerprint    TEXT,
    token          BIGINT NOT NULL,
    acquired_at_us BIGINT,
    expires_at_us  BIGINT,
    ttl_ms         BIGINT NOT NULL
);
CREATE INDEX claims_held ON claims (expires_at_us) WHERE agent IS NOT NULL;
