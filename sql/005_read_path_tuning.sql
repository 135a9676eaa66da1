-- Read-path tuning, from profiling the benchmark (bench/run):
--  * mxf_may_see as plpgsql: a LANGUAGE sql function with a sub-SELECT is not
--    inlined, and was parsed and planned again on every call;
--  * the walk functions keep one generic plan for their per-step queries
--    (custom plans for array parameters were re-planned at every step) and
--    tell the planner how many rows they return;
--  * /state_ids gets the state at an event without the PDU texts.

CREATE OR REPLACE FUNCTION mxf_may_see(p_vis bigint, p_server text)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
DECLARE
    v mxf_visibility;
BEGIN
    SELECT * INTO v FROM mxf_visibility WHERE vis_id = p_vis;
    IF NOT FOUND THEN
        RETURN true;
    END IF;
    RETURN v.history_visibility IN ('world_readable', 'shared')
           OR p_server = ANY (v.joined_servers)
           OR (v.history_visibility = 'invited' AND p_server = ANY (v.invited_servers));
END
$$;

ALTER FUNCTION mxf_missing_events(bigint, text[], text[], int, bigint)
    ROWS 20 SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION mxf_backfill(bigint, text[], int)
    ROWS 100 SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION mxf_auth_chain(bigint, bigint[]) ROWS 1000;

-- mxf_state_at with a choice: p_bodies false leaves the pdu column NULL.
DROP FUNCTION mxf_state_at(bigint, text);
CREATE FUNCTION mxf_state_at(p_room bigint, p_event_id text, p_bodies boolean)
RETURNS TABLE (kind text, event_id text, pdu text) LANGUAGE plpgsql STABLE AS $$
DECLARE
    ev mxf_events;
    state bigint[];
BEGIN
    SELECT * INTO ev FROM mxf_events e WHERE e.event_id = p_event_id AND e.room_nid = p_room;
    IF NOT FOUND OR ev.rejected_reason IS NOT NULL OR ev.outlier OR ev.state_before IS NULL THEN
        RETURN QUERY SELECT '!'::text, p_event_id, NULL::text;
        RETURN;
    END IF;
    SELECT coalesce(array_agg(s.event_nid), '{}') INTO state FROM mxf_state_of(ev.state_before) s;
    RETURN QUERY
        SELECT 'p'::text, e.event_id, CASE WHEN p_bodies THEN mxf_stored_pdu(e) END
          FROM mxf_events e WHERE e.event_nid = ANY (state)
        UNION ALL
        SELECT 'a'::text, e.event_id, CASE WHEN p_bodies THEN mxf_stored_pdu(e) END
          FROM mxf_auth_chain(p_room, state) c JOIN mxf_events e ON e.event_nid = c;
END
$$;
