-- Read path, second round of profiling (bench/run):
--  * the served copy of an event is decided by an expression the planner
--    inlines into the module's statements (mxf_pdu_for over the event and
--    its two visibility rows, joined in), instead of two plpgsql calls per
--    returned event;
--  * backfill is one recursive query over a depth window instead of a loop
--    of two statements per returned event, in rooms whose depths are
--    monotone (see below); other rooms keep the loop (mxf_backfill_walk);
--  * get_missing_events is one recursive query over a window of distances
--    (the layer loop of 003 stays as the reference, mxf_missing_events_walk);
--  * mxf_state_of looks groups and entries up by index one by one (the
--    planner chose hash joins over whole tables inside the recursion: 19 ms
--    instead of 0.5 ms for one state of a 10,000-event room, growing with
--    the room).

-- Which copy of event e server p_server is served (the rule of 003's
-- mxf_served_pdu and mxf_may_see, which it replaces):
-- v_before and v_after are e's mxf_visibility rows (vis_id, vis_after_id),
-- NULL where e has none. A plain SQL expression, so it is inlined.
CREATE FUNCTION mxf_pdu_for(e mxf_events, v_before mxf_visibility, v_after mxf_visibility,
                            p_server text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN e.redacted_because IS NOT NULL THEN e.redacted_pdu
        WHEN e.vis_id IS NULL OR v_before.vis_id IS NULL
             OR v_before.history_visibility IN ('world_readable', 'shared')
             OR p_server = ANY (v_before.joined_servers)
             OR (v_before.history_visibility = 'invited'
                 AND p_server = ANY (v_before.invited_servers))
             OR (e.vis_after_id IS NOT NULL
                 AND (v_after.vis_id IS NULL
                      OR v_after.history_visibility IN ('world_readable', 'shared')
                      OR p_server = ANY (v_after.joined_servers)
                      OR (v_after.history_visibility = 'invited'
                          AND p_server = ANY (v_after.invited_servers))))
            THEN e.pdu
        ELSE e.redacted_pdu
    END
$$;
DROP FUNCTION mxf_served_pdu(mxf_events, text);
DROP FUNCTION mxf_may_see(bigint, text);

-- Whether depth decreases along every prev_events edge of the room (an
-- event deeper than all its prev_events, as the spec asks of senders). The
-- importer keeps it: true for a room it creates until an edge breaks it,
-- never true again once false; false for rooms stored before it existed.
ALTER TABLE mxf_rooms ADD COLUMN depth_monotone boolean NOT NULL DEFAULT false;

ALTER FUNCTION mxf_backfill(bigint, text[], int) RENAME TO mxf_backfill_walk;

-- backfill: the p_limit events that the walk of mxf_backfill_walk picks
-- (from p_v, always the deepest event known but not yet taken, walking
-- prev_events through accepted, non-outlier events). When depth decreases
-- along every edge, the deepest event not yet taken is the deepest of all
-- that are reachable, so the walk picks the p_limit deepest reachable
-- events, (depth, event_nid) descending; and every reachable event at least
-- as deep as some depth d is reachable through events at least as deep as
-- d. So one recursive query over the window [top - w, top] gives the
-- answer once it finds p_limit events; the window grows (x4) until it
-- does or covers the room. (OFFSET 0: edges by index, step by step, not a
-- hash join over the whole edge table at every step.)
CREATE FUNCTION mxf_backfill(p_room bigint, p_v text[], p_limit int)
RETURNS SETOF bigint LANGUAGE plpgsql STABLE ROWS 100
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    start   bigint[];
    top     bigint;
    lowest  bigint;
    w       bigint;
    picked  bigint[];
BEGIN
    IF p_limit <= 0 THEN
        RETURN;
    END IF;
    IF NOT coalesce((SELECT r.depth_monotone FROM mxf_rooms r WHERE r.room_nid = p_room),
                    false) THEN
        RETURN QUERY SELECT b.b FROM mxf_backfill_walk(p_room, p_v, p_limit) b(b);
        RETURN;
    END IF;
    SELECT array_agg(e.event_nid), max(e.depth) INTO start, top
      FROM mxf_events e
     WHERE e.event_id = ANY (p_v) AND e.room_nid = p_room
       AND e.rejected_reason IS NULL AND NOT e.outlier;
    IF start IS NULL THEN
        RETURN;
    END IF;
    w := p_limit;
    LOOP
        WITH RECURSIVE walk (nid, depth) AS (
            SELECT e.event_nid, e.depth FROM mxf_events e WHERE e.event_nid = ANY (start)
            UNION
            SELECT p.event_nid, p.depth
              FROM walk
              CROSS JOIN LATERAL (SELECT x.prev_nid FROM mxf_event_edges x
                                   WHERE x.event_nid = walk.nid OFFSET 0) x
              JOIN mxf_events p ON p.event_nid = x.prev_nid
             WHERE p.room_nid = p_room AND p.rejected_reason IS NULL AND NOT p.outlier
               AND p.depth >= top - w
        )
        SELECT array_agg(t.nid) INTO picked
          FROM (SELECT walk.nid FROM walk
                 ORDER BY walk.depth DESC, walk.nid DESC LIMIT p_limit) t;
        EXIT WHEN cardinality(picked) >= p_limit;
        IF lowest IS NULL THEN
            SELECT min(e.depth) INTO lowest FROM mxf_events e WHERE e.room_nid = p_room;
        END IF;
        EXIT WHEN top - w <= lowest;
        w := w * 4;
    END LOOP;
    RETURN QUERY SELECT unnest(picked);
END
$$;

-- The breadth-first walk of 003, kept as the reference for the query below
-- (the tests compare them), and used by nothing else.
ALTER FUNCTION mxf_missing_events(bigint, text[], text[], int, bigint)
    RENAME TO mxf_missing_events_walk;

-- get_missing_events (the breadth-first walk of mxf_missing_events_walk)
-- as one recursive query: every event at most w steps from p_latest
-- through prev_events, with its distance (not walking through p_earliest
-- or below p_min_depth); the walk picks the accepted ones by distance, then
-- depth and arrival descending, p_limit of them. The distances up to w
-- are exact, so when p_limit are found within w steps they are the walk's
-- answer; otherwise w grows (x4) until they are, or no event is w steps
-- away (the walk would have ended there too).
CREATE FUNCTION mxf_missing_events(p_room bigint, p_earliest text[], p_latest text[],
                                   p_limit int, p_min_depth bigint)
RETURNS SETOF bigint LANGUAGE plpgsql STABLE ROWS 20
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    stop    bigint[];
    w       int;
    picked  bigint[];
    far     int;
BEGIN
    IF p_limit <= 0 THEN
        RETURN;
    END IF;
    SELECT coalesce(array_agg(e.event_nid), '{}') INTO stop
      FROM mxf_events e WHERE e.event_id = ANY (p_earliest) AND e.room_nid = p_room;
    w := p_limit;
    LOOP
        WITH RECURSIVE bfs (nid, dist) AS (
            SELECT e.event_nid, 0 FROM mxf_events e
             WHERE e.event_id = ANY (p_latest) AND e.room_nid = p_room
               AND NOT (e.event_nid = ANY (stop))
            UNION
            SELECT p.event_nid, bfs.dist + 1
              FROM bfs
              CROSS JOIN LATERAL (SELECT x.prev_nid FROM mxf_event_edges x
                                   WHERE x.event_nid = bfs.nid OFFSET 0) x
              JOIN mxf_events p ON p.event_nid = x.prev_nid
             WHERE bfs.dist < w AND p.room_nid = p_room AND p.depth >= p_min_depth
               AND NOT (p.event_nid = ANY (stop))
        ), nearest AS (
            SELECT bfs.nid, min(bfs.dist) AS dist FROM bfs GROUP BY bfs.nid
        )
        SELECT (SELECT array_agg(t.nid) FROM (
                    SELECT n.nid FROM nearest n JOIN mxf_events e ON e.event_nid = n.nid
                     WHERE n.dist > 0 AND e.rejected_reason IS NULL
                     ORDER BY n.dist, e.depth DESC, e.event_nid DESC LIMIT p_limit) t),
               (SELECT max(n.dist) FROM nearest n)
          INTO picked, far;
        EXIT WHEN coalesce(cardinality(picked), 0) >= p_limit OR coalesce(far, 0) < w;
        w := w * 4;
    END LOOP;
    RETURN QUERY SELECT unnest(picked);
END
$$;

-- The full state of a group (as in 002), reading each group and its entries
-- by index (OFFSET 0 keeps the planner from turning the look-ups into hash
-- joins over the whole tables).
CREATE OR REPLACE FUNCTION mxf_state_of(g bigint)
RETURNS TABLE (type text, state_key text, event_nid bigint)
LANGUAGE sql STABLE ROWS 200 AS $$
    WITH RECURSIVE chain (group_id, prev_group, lvl) AS (
        SELECT s.group_id, s.prev_group, 0 FROM mxf_state_groups s WHERE s.group_id = g
        UNION ALL
        SELECT n.group_id, n.prev_group, c.lvl + 1
          FROM chain c
          CROSS JOIN LATERAL (SELECT s.group_id, s.prev_group FROM mxf_state_groups s
                               WHERE s.group_id = c.prev_group OFFSET 0) n
    )
    SELECT DISTINCT ON (e.type, e.state_key) e.type, e.state_key, e.event_nid
      FROM chain c
      CROSS JOIN LATERAL (SELECT x.type, x.state_key, x.event_nid FROM mxf_state_entries x
                           WHERE x.group_id = c.group_id OFFSET 0) e
     ORDER BY e.type, e.state_key, c.lvl
$$;
