-- Gaia schema 2: API tokens (stored hashed) and claim expiry reporting.

CREATE TABLE tokens (
    name          TEXT    PRIMARY KEY,
    role          TEXT    NOT NULL,
    hash          TEXT    NOT NULL UNIQUE,
    created_at_us BIGINT  NOT NULL,
    created_by    TEXT    NOT NULL,
    revoked_at_us BIGINT
);

-- The fencing token whose expiry was last reported as claim.expired, so that each acquisition
-- expires at most once in the log.
ALTER TABLE claims ADD COLUMN expiry_reported_token BIGINT NOT NULL DEFAULT 0;
