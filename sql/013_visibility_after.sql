-- Which copy of an event a server gets is decided on the state after the
-- event, as the reference homeserver decides it (its state of an event
-- includes the event itself): a server's own join is visible to it, its
-- last member's leave is not (under "joined"), and a change of
-- history_visibility is judged by the new setting. Before this, either the
-- state before or the state after sufficed (the client-server rule for a
-- user's own membership events, which the spec does not give servers).
-- vis_after_id is set exactly where the state after differs (sql/002), so
-- the row to judge by is vis_after_id's when set, else vis_id's.
--
-- Events whose state is not known (vis_id NULL: the history behind them has
-- a gap, so their visibility cannot be told) are served redacted; before
-- this they were served whole, whatever the room's history visibility. The
-- importer now stores their redacted copy; those stored before it has none
-- and are served whole as before (until the room is imported into a fresh
-- database).
--
-- Still one CASE expression without FROM, so PostgreSQL inlines it into
-- the statements that call it.

CREATE OR REPLACE FUNCTION mxf_pdu_for(e mxf_events, v_before mxf_visibility,
                                       v_after mxf_visibility, p_server text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN e.redacted_because IS NOT NULL THEN e.redacted_pdu
        WHEN e.vis_id IS NULL THEN coalesce(e.redacted_pdu, e.pdu)
        WHEN e.vis_after_id IS NULL THEN
            CASE WHEN v_before.vis_id IS NOT NULL
                      AND (v_before.history_visibility IN ('world_readable', 'shared')
                           OR p_server = ANY (v_before.joined_servers)
                           OR (v_before.history_visibility = 'invited'
                               AND p_server = ANY (v_before.invited_servers)))
                 THEN e.pdu ELSE e.redacted_pdu END
        WHEN v_after.vis_id IS NOT NULL
             AND (v_after.history_visibility IN ('world_readable', 'shared')
                  OR p_server = ANY (v_after.joined_servers)
                  OR (v_after.history_visibility = 'invited'
                      AND p_server = ANY (v_after.invited_servers)))
            THEN e.pdu
        ELSE e.redacted_pdu
    END
$$;
