-- Gaia schema 7: outbox lease fencing, and pacing shared by every sender on the store.
-- Each lease of a message gets a larger token; a sender checks it before sending and when
-- recording, so a message taken over by another sender is neither sent nor recorded twice.
ALTER TABLE outbox ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0;
-- Per chat (channel:target): the retry_after hold, the last send (for the per-chat interval)
-- and the send in flight, if any (the chat is busy until it is recorded or its lease ends).
CREATE TABLE outbox_pacing (
    chat             TEXT    PRIMARY KEY,
    held_until_us    BIGINT NOT NULL DEFAULT 0,
    last_sent_us     BIGINT NOT NULL DEFAULT 0,
    sending_id       BIGINT,
    sending_token    BIGINT,
    sending_until_us BIGINT NOT NULL DEFAULT 0
);
-- Paced sends of the last minute, for the group and overall limits.
CREATE TABLE outbox_sends (
    chat  TEXT    NOT NULL,
    at_us BIGINT NOT NULL
);
CREATE INDEX outbox_sends_chat ON outbox_sends (chat, at_us);
CREATE INDEX outbox_sends_at ON outbox_sends (at_us);
-- Every paced slot is reserved with this row locked first: the overall limit is judged by one
-- reservation at a time across nodes.
INSERT INTO outbox_pacing (chat) VALUES ('*');
