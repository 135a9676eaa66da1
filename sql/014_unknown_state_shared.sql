-- Events whose state is not known (vis_id NULL: the imported history has a
-- gap behind them) are served whole to the servers that may ask about the
-- room, as the reference homeserver serves its outliers: with no state to
-- judge by, the history visibility is taken to be "shared" (the default the
-- spec gives a room without the setting). 013 served them redacted, which a
-- receiver keeps for good (its content-hash check fails), losing content
-- that it may well see. Everything else is as in 013.

CREATE OR REPLACE FUNCTION mxf_pdu_for(e mxf_events, v_before mxf_visibility,
                                       v_after mxf_visibility, p_server text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN e.redacted_because IS NOT NULL THEN e.redacted_pdu
        WHEN e.vis_id IS NULL THEN e.pdu
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
