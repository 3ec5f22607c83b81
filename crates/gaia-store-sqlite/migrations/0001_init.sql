-- Gaia schema 1: the log head, events, the audit chain and claims.
-- Times are microseconds since the Unix epoch (UTC), as on every backend.

-- One row. Its lock orders every commit that appends to the log, which keeps event seqs gap-free
-- and in commit order, and builds the audit chain in the same order.
CREATE TABLE log_head (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    event_seq         INTEGER NOT NULL,
    audit_seq         INTEGER NOT NULL,
    audit_hash        TEXT    NOT NULL,
    audit_anchor_id   INTEGER NOT NULL,
    audit_anchor_hash TEXT    NOT NULL
);
INSERT INTO log_head VALUES (
    1, 0, 0,
    '0000000000000000000000000000000000000000000000000000000000000000',
    0,
    '0000000000000000000000000000000000000000000000000000000000000000'
);

CREATE TABLE events (
    seq     INTEGER PRIMARY KEY,
    ts_us   INTEGER NOT NULL,
    type    TEXT    NOT NULL,
    actor   TEXT    NOT NULL,
    subject TEXT    NOT NULL,
    data    TEXT    NOT NULL
);
CREATE INDEX events_subject ON events (subject, seq);

CREATE TABLE audit (
    id        INTEGER PRIMARY KEY,
    ts_us     INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    subject   TEXT    NOT NULL,
    outcome   TEXT    NOT NULL,
    details   TEXT    NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL
);

-- One row per key ever claimed; it outlives releases so the fencing token keeps increasing.
CREATE TABLE claims (
    key            TEXT    PRIMARY KEY,
    story          TEXT    NOT NULL,
    todolist       TEXT    NOT NULL,
    agent          TEXT,
    operator       TEXT,
    fingerprint    TEXT,
    token          INTEGER NOT NULL,
    acquired_at_us INTEGER,
    expires_at_us  INTEGER,
    ttl_ms         INTEGER NOT NULL
);
CREATE INDEX claims_held ON claims (expires_at_us) WHERE agent IS NOT NULL;
