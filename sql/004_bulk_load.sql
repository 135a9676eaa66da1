-- Bulk loading: matrix-fed import is the only writer of the DAG tables and
-- writes each import in one transaction, with event numbers it allocates
-- itself under an advisory lock. The per-row foreign-key checks on the
-- largest tables cost it about half of PostgreSQL's time, so they go; the
-- importer keeps these references consistent (and the import tests check
-- them). The small tables keep theirs.
ALTER TABLE mxf_event_edges DROP CONSTRAINT mxf_event_edges_event_nid_fkey;
ALTER TABLE mxf_auth_edges DROP CONSTRAINT mxf_auth_edges_event_nid_fkey;
ALTER TABLE mxf_state_entries DROP CONSTRAINT mxf_state_entries_group_id_fkey;
ALTER TABLE mxf_events DROP CONSTRAINT mxf_events_room_nid_fkey;
