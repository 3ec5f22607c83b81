-- Gaia schema 4: command approval requests.
CREATE TABLE commands (
    id              TEXT    PRIMARY KEY,
    spec            TEXT    NOT NULL, -- JSON: {"argv": [...]} or {"shell": "..."}
    cwd             TEXT,
    story           TEXT,
    todolist        TEXT,
    reason          TEXT,
    requester       TEXT    NOT NULL,
    is_test         INTEGER NOT NULL,
    test_allowed    INTEGER NOT NULL,
    created_at_us   INTEGER NOT NULL,
    expires_at_us   INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    decided_by      TEXT,
    decided_via     TEXT,
    decided_at_us   INTEGER,
    decision_reason TEXT,
    binding         TEXT    NOT NULL, -- SHA-256 of the exact command and cwd asked for
    execution       TEXT              -- JSON, once run
);
CREATE INDEX commands_status ON commands (status, expires_at_us);
CREATE INDEX commands_created ON commands (created_at_us);

-- Every request, decision and execution of every command, from the audit trail.
CREATE VIEW command_audit AS
    SELECT substr(subject, 9) AS command_id, id AS audit_id, ts_us, actor, action, outcome, details
    FROM audit
    WHERE subject LIKE 'command/%';
