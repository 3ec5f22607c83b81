-- Gaia schema 3: deployment-wide settings that every node shares (for example the key that
-- signs stream tickets). Values are written once and then only read.
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
