-- The federation read path: walks and lookups the module runs, one round
-- trip each. Every function is confined to one room: an event of another
-- room is unknown to it, and walks never leave the room.

-- Whether server p_server may see events of visibility stretch p_vis
-- ("which events a remote server may see"): world_readable and shared
-- history to any server in the room; invited history to servers with a
-- joined or invited member; joined history to servers with a joined member.
CREATE FUNCTION mxf_may_see(p_vis bigint, p_server text)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT coalesce((
        SELECT v.history_visibility IN ('world_readable', 'shared')
               OR p_server = ANY (v.joined_servers)
               OR (v.history_visibility = 'invited' AND p_server = ANY (v.invited_servers))
          FROM mxf_visibility v WHERE v.vis_id = p_vis), true)
$$;

-- The PDU text to serve to p_server: the stored redacted copy when the event
-- was redacted or the server may not see it, else the PDU as received.
-- NULL only if a needed redacted copy is missing (never served then).
CREATE FUNCTION mxf_served_pdu(e mxf_events, p_server text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN e.redacted_because IS NOT NULL THEN e.redacted_pdu
        WHEN e.vis_id IS NULL OR mxf_may_see(e.vis_id, p_server)
             OR (e.vis_after_id IS NOT NULL AND mxf_may_see(e.vis_after_id, p_server))
            THEN e.pdu
        ELSE e.redacted_pdu
    END
$$;

-- The PDU as stored, redacted when an m.room.redaction applies (state and
-- auth chains are not filtered by history visibility).
CREATE FUNCTION mxf_stored_pdu(e mxf_events)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN e.redacted_because IS NOT NULL THEN e.redacted_pdu ELSE e.pdu END
$$;

-- get_missing_events: breadth-first over prev_events from p_latest (not
-- returned), never returning or walking through p_earliest, nor events
-- below p_min_depth; rejected events are walked through but not returned.
-- When a layer does not fit in the limit, the nearest (deepest) events are
-- kept. Returns the chosen events' numbers.
CREATE FUNCTION mxf_missing_events(p_room bigint, p_earliest text[], p_latest text[],
                                   p_limit int, p_min_depth bigint)
RETURNS SETOF bigint LANGUAGE plpgsql STABLE AS $$
DECLARE
    seen   bigint[];
    front  bigint[];
    layer  bigint[];
    picked bigint[] := '{}';
BEGIN
    SELECT coalesce(array_agg(e.event_nid), '{}') INTO seen
      FROM mxf_events e WHERE e.event_id = ANY (p_earliest) AND e.room_nid = p_room;
    SELECT coalesce(array_agg(e.event_nid), '{}') INTO front
      FROM mxf_events e
     WHERE e.event_id = ANY (p_latest) AND e.room_nid = p_room
       AND NOT (e.event_nid = ANY (seen));
    seen := seen || front;
    WHILE cardinality(front) > 0 AND cardinality(picked) < p_limit LOOP
        -- The next layer: unseen prev events in this room at or above min_depth,
        -- nearest first; accepted ones count against the limit.
        SELECT coalesce(array_agg(n ORDER BY d DESC, n DESC), '{}') INTO layer FROM (
            SELECT DISTINCT p.event_nid AS n, p.depth AS d
              FROM mxf_event_edges x JOIN mxf_events p ON p.event_nid = x.prev_nid
             WHERE x.event_nid = ANY (front) AND p.room_nid = p_room
               AND p.depth >= p_min_depth AND NOT (p.event_nid = ANY (seen))
        ) l;
        front := '{}';
        FOR i IN 1 .. cardinality(layer) LOOP
            EXIT WHEN cardinality(picked) >= p_limit;
            front := front || layer[i];
            IF EXISTS (SELECT 1 FROM mxf_events e
                        WHERE e.event_nid = layer[i] AND e.rejected_reason IS NULL) THEN
                picked := picked || layer[i];
            END IF;
        END LOOP;
        seen := seen || front;
    END LOOP;
    RETURN QUERY SELECT unnest(picked);
END
$$;

-- backfill: the p_v events and their ancestors, walked by depth descending
-- (ties: the later arrival first), at most p_limit; the caller sorts them the
-- same way. Outliers are not walked;
-- rejected events are neither returned nor walked.
CREATE FUNCTION mxf_backfill(p_room bigint, p_v text[], p_limit int)
RETURNS SETOF bigint LANGUAGE plpgsql STABLE AS $$
DECLARE
    seen    bigint[];
    queue   bigint[];
    picked  bigint[] := '{}';
    cur     bigint;
BEGIN
    SELECT coalesce(array_agg(e.event_nid), '{}') INTO queue
      FROM mxf_events e
     WHERE e.event_id = ANY (p_v) AND e.room_nid = p_room
       AND e.rejected_reason IS NULL AND NOT e.outlier;
    seen := queue;
    WHILE cardinality(queue) > 0 AND cardinality(picked) < p_limit LOOP
        SELECT e.event_nid INTO cur FROM mxf_events e
         WHERE e.event_nid = ANY (queue) ORDER BY e.depth DESC, e.event_nid DESC LIMIT 1;
        queue := array_remove(queue, cur);
        picked := picked || cur;
        SELECT queue || coalesce(array_agg(DISTINCT p.event_nid), '{}'),
               seen || coalesce(array_agg(DISTINCT p.event_nid), '{}')
          INTO queue, seen
          FROM mxf_event_edges x JOIN mxf_events p ON p.event_nid = x.prev_nid
         WHERE x.event_nid = cur AND p.room_nid = p_room
           AND p.rejected_reason IS NULL AND NOT p.outlier
           AND NOT (p.event_nid = ANY (seen));
    END LOOP;
    RETURN QUERY SELECT unnest(picked);
END
$$;

-- The auth chain of events p_nids: their auth events, recursively, within
-- the room, without p_nids themselves unless one is an auth event of
-- another. In room versions where the create event is implicit (12), it
-- belongs to every chain but its own.
CREATE FUNCTION mxf_auth_chain(p_room bigint, p_nids bigint[])
RETURNS SETOF bigint LANGUAGE sql STABLE AS $$
    WITH RECURSIVE chain (nid) AS (
        SELECT a.auth_nid FROM mxf_auth_edges a JOIN mxf_events e ON e.event_nid = a.auth_nid
         WHERE a.event_nid = ANY (p_nids) AND e.room_nid = p_room
        UNION
        SELECT a.auth_nid FROM chain c
          JOIN mxf_auth_edges a ON a.event_nid = c.nid
          JOIN mxf_events e ON e.event_nid = a.auth_nid
         WHERE e.room_nid = p_room
    )
    SELECT nid FROM chain
    UNION
    SELECT r.create_event_nid FROM mxf_rooms r
     WHERE r.room_nid = p_room AND r.room_version = '12' AND r.create_event_nid IS NOT NULL
       AND EXISTS (SELECT 1 FROM unnest(p_nids) n WHERE n <> r.create_event_nid)
$$;

-- /state and /state_ids at event p_event_id of room p_room: rows of kind
-- 'p' (the state before the event) and 'a' (the auth chain of that state),
-- or one row of kind '!' when the event is unknown in this room, rejected,
-- or its state is not known (an outlier or the edge of known history).
CREATE FUNCTION mxf_state_at(p_room bigint, p_event_id text)
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
        SELECT 'p'::text, e.event_id, mxf_stored_pdu(e)
          FROM mxf_events e WHERE e.event_nid = ANY (state)
        UNION ALL
        SELECT 'a'::text, e.event_id, mxf_stored_pdu(e)
          FROM mxf_auth_chain(p_room, state) c JOIN mxf_events e ON e.event_nid = c;
END
$$;

-- /event_auth: the auth chain of one event of the room ('!' row if unknown).
CREATE FUNCTION mxf_event_auth(p_room bigint, p_event_id text)
RETURNS TABLE (kind text, event_id text, pdu text) LANGUAGE plpgsql STABLE AS $$
DECLARE
    ev mxf_events;
BEGIN
    SELECT * INTO ev FROM mxf_events e WHERE e.event_id = p_event_id AND e.room_nid = p_room;
    IF NOT FOUND OR ev.rejected_reason IS NOT NULL THEN
        RETURN QUERY SELECT '!'::text, p_event_id, NULL::text;
        RETURN;
    END IF;
    RETURN QUERY
        SELECT 'a'::text, e.event_id, mxf_stored_pdu(e)
          FROM mxf_auth_chain(p_room, ARRAY[ev.event_nid]) c JOIN mxf_events e ON e.event_nid = c
         ORDER BY e.depth, e.event_nid;
END
$$;
