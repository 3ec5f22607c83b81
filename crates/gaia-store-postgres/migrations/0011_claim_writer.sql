-- Gaia schema 11: what a claim batch numbered from a predicted log head calls when the head
-- is not there. Such a batch sends its statement and COMMIT in one message, so the statement
-- must fail, rolling the batch back, rather than commit the batch's rows without its events.
CREATE FUNCTION gaia_log_head_moved() RETURNS BOOLEAN LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the log head is not where this batch was numbered from'
        USING ERRCODE = 'GA001';
END
$$;
