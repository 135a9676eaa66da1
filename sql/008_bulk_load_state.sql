-- Bulk loading, continued (see 004): state groups and visibility stretches
-- are written for every state change, so at a million events they are
-- hundreds of thousands of rows per import, and their per-row foreign-key
-- checks (a lookup and a row lock per reference) were a tenth of
-- PostgreSQL's time in an import. The importer writes every group after
-- the group it extends and after its room, in the same transaction; the
-- import tests check these references.
ALTER TABLE mxf_state_groups DROP CONSTRAINT mxf_state_groups_prev_group_fkey;
ALTER TABLE mxf_state_groups DROP CONSTRAINT mxf_state_groups_room_nid_fkey;
ALTER TABLE mxf_visibility DROP CONSTRAINT mxf_visibility_room_nid_fkey;
