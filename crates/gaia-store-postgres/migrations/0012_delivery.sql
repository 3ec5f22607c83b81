-- Gaia schema 12: outbox lanes. A sender leases only the head of each chat (its oldest pending
-- message), so each chat's messages go out in order while chats are sent concurrently; this
-- index finds a chat's earlier pending messages without scanning the queue.
CREATE INDEX outbox_chat_pending ON outbox (channel, target, id) WHERE status = 'pending';
