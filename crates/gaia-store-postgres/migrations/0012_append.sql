-- Gaia schema 12: the log append as one function, numbered and sealed where the log head is.
-- A write transaction sends it with its COMMIT in one message, so `log_head` is held for the
-- append and the commit only, with no round trip to the writing process in between; writers
-- queue at the row lock in the order they reach it and none is numbered from a guess.
--
-- Each audit record's hash is SHA-256 over the JSON array
-- [id,ts_us,"actor","action","subject","outcome","details","prev_hash] (as
-- `gaia_core::audit::record_hash` writes it). The caller sends the five texts in the middle
-- already serialised and joined (`a_fields`), so the JSON escaping is written once, in Gaia;
-- here only the id, the time and the previous hash (hex) are joined around them.
--
-- Returns the head as it was before: the caller numbers its events from it.
CREATE FUNCTION gaia_append(
    ts BIGINT,
    e_type TEXT[], e_actor TEXT[], e_subject TEXT[], e_data TEXT[],
    a_actor TEXT[], a_action TEXT[], a_subject TEXT[], a_outcome TEXT[], a_details TEXT[],
    a_fields TEXT[]
) RETURNS TABLE (head_seq BIGINT, head_audit BIGINT, head_hash TEXT)
LANGUAGE plpgsql AS $$
DECLARE
    n_events BIGINT := cardinality(e_type);
    n_audit  BIGINT := cardinality(a_actor);
    prevs    TEXT[] := '{}';
    hashes   TEXT[] := '{}';
    h        TEXT;
BEGIN
    IF cardinality(e_actor) <> n_events OR cardinality(e_subject) <> n_events
        OR cardinality(e_data) <> n_events OR cardinality(a_action) <> n_audit
        OR cardinality(a_subject) <> n_audit OR cardinality(a_outcome) <> n_audit
        OR cardinality(a_details) <> n_audit OR cardinality(a_fields) <> n_audit THEN
        RAISE EXCEPTION 'gaia_append: the columns of the events or the audit records differ in length';
    END IF;
    SELECT l.event_seq, l.audit_seq, l.audit_hash INTO head_seq, head_audit, head_hash
        FROM log_head l WHERE l.id = 1 FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'gaia_append: the log head row is missing';
    END IF;
    h := head_hash;
    FOR i IN 1 .. n_audit LOOP
        prevs := prevs || h;
        h := encode(sha256(convert_to(
            '[' || (head_audit + i) || ',' || ts || ',' || a_fields[i] || ',"' || h || '"]',
            'UTF8')), 'hex');
        hashes := hashes || h;
    END LOOP;
    INSERT INTO events (seq, ts_us, type, actor, subject, data)
        SELECT head_seq + u.n, ts, u.t, u.a, u.s, u.d
        FROM UNNEST(e_type, e_actor, e_subject, e_data) WITH ORDINALITY AS u(t, a, s, d, n);
    INSERT INTO audit (id, ts_us, actor, action, subject, outcome, details, prev_hash, hash)
        SELECT head_audit + u.n, ts, u.ac, u.act, u.s, u.o, u.d, prevs[u.n::INT], hashes[u.n::INT]
        FROM UNNEST(a_actor, a_action, a_subject, a_outcome, a_details)
            WITH ORDINALITY AS u(ac, act, s, o, d, n);
    UPDATE log_head SET event_seq = head_seq + n_events, audit_seq = head_audit + n_audit,
        audit_hash = h
        WHERE id = 1;
    RETURN NEXT;
END
$$;
