-- Gaia schema 10: delivery at scale.
-- Outbox lanes: a sender leases only the head of each chat (its oldest pending message), so
-- each chat's messages go out in order while chats are sent concurrently; this index finds a
-- chat's earlier pending messages without scanning the queue.
CREATE INDEX outbox_chat_pending ON outbox (channel, target, id) WHERE status = 'pending';
-- Telegram updates delivered to the webhook: each update_id is taken by one handler at a time
-- (until until_us, after which a redelivery may take it again) and, once handled, done for good,
-- so a redelivered update is applied once.
CREATE TABLE telegram_updates (
    update_id INTEGER PRIMARY KEY,
    done      INTEGER NOT NULL DEFAULT 0,
    until_us  INTEGER NOT NULL
);
CREATE INDEX telegram_updates_until ON telegram_updates (until_us);
