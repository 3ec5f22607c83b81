-- Gaia schema 6: the token a claim was taken with. Only that token refreshes or releases it;
-- NULL for claims taken through direct store access (and for those taken before this version).
ALTER TABLE claims ADD COLUMN principal TEXT;
