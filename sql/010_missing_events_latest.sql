-- get_missing_events returns an event of latest_events when it is a prev
-- event of another one (or of an event the walk reaches): the spec asks for
-- "the previous events for latest_events, excluding any earliest_events",
-- and only earliest_events are skipped while walking, as in the reference
-- homeserver. Before this, every latest_events entry was marked seen at the
-- start and so never returned. Both the reference walk and the windowed
-- query change alike (the tests compare them).

-- The breadth-first walk (003), now starting with only earliest_events seen.
CREATE OR REPLACE FUNCTION mxf_missing_events_walk(p_room bigint, p_earliest text[],
                                                   p_latest text[], p_limit int,
                                                   p_min_depth bigint)
RETURNS SETOF bigint LANGUAGE plpgsql STABLE ROWS 20
SET plan_cache_mode = force_generic_plan AS $$
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

-- The windowed query (007): an event's distance is the length of the
-- shortest path of one or more prev_events steps from latest_events (a
-- latest_events entry is at distance 0 only as a starting point, and is
-- returned when some path of one or more steps reaches it).
CREATE OR REPLACE FUNCTION mxf_missing_events(p_room bigint, p_earliest text[], p_latest text[],
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
            SELECT bfs.nid, min(bfs.dist) AS dist FROM bfs WHERE bfs.dist > 0 GROUP BY bfs.nid
        )
        SELECT (SELECT array_agg(t.nid) FROM (
                    SELECT n.nid FROM nearest n JOIN mxf_events e ON e.event_nid = n.nid
                     WHERE e.rejected_reason IS NULL
                     ORDER BY n.dist, e.depth DESC, e.event_nid DESC LIMIT p_limit) t),
               (SELECT max(n.dist) FROM nearest n)
          INTO picked, far;
        EXIT WHEN coalesce(cardinality(picked), 0) >= p_limit OR coalesce(far, 0) < w;
        w := w * 4;
    END LOOP;
    RETURN QUERY SELECT unnest(picked);
END
$$;
