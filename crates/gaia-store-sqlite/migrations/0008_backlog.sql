-- Gaia schema 8: the backlog. Stories, each with one current todolist (named in the story row)
-- and archived ones; tasks of every list; what each task waits for; follow-ups to triage.
CREATE TABLE stories (
    slug            TEXT    PRIMARY KEY,
    title           TEXT    NOT NULL,
    description     TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    labels          TEXT    NOT NULL,
    created_by      TEXT    NOT NULL,
    created_at_us   INTEGER NOT NULL,
    updated_at_us   INTEGER NOT NULL,
    todolist        TEXT    NOT NULL,
    finalized_at_us INTEGER
);
CREATE INDEX stories_order ON stories (created_at_us, slug);
CREATE TABLE todolists (
    story           TEXT    NOT NULL REFERENCES stories (slug),
    name            TEXT    NOT NULL,
    created_at_us   INTEGER NOT NULL,
    finalized_at_us INTEGER,
    archived_at_us  INTEGER,
    PRIMARY KEY (story, name)
);
CREATE TABLE tasks (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    story           TEXT    NOT NULL REFERENCES stories (slug),
    todolist        TEXT    NOT NULL,
    title           TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    reason          TEXT,
    worker          TEXT,
    position        INTEGER NOT NULL,
    blocked_by      TEXT    NOT NULL,
    is_final        INTEGER NOT NULL,
    created_by      TEXT    NOT NULL,
    created_at_us   INTEGER NOT NULL,
    updated_at_us   INTEGER NOT NULL
);
CREATE INDEX tasks_list ON tasks (story, todolist, position);
CREATE INDEX tasks_todo ON tasks (status, story, todolist, position);
CREATE TABLE task_deps (
    task            INTEGER NOT NULL REFERENCES tasks (id),
    blocker         INTEGER NOT NULL REFERENCES tasks (id),
    PRIMARY KEY (task, blocker)
);
CREATE TABLE followups (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    path            TEXT    NOT NULL UNIQUE,
    hash            TEXT    NOT NULL,
    story           TEXT    NOT NULL,
    agent           TEXT    NOT NULL,
    task            TEXT    NOT NULL,
    title           TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    reason          TEXT,
    task_id         INTEGER,
    decided_by      TEXT,
    created_at_us   INTEGER NOT NULL,
    updated_at_us   INTEGER NOT NULL
);
CREATE INDEX followups_status ON followups (status, id);
