-- backfill walks through rejected events, as get_missing_events does and as
-- the reference homeserver does (its edge walk passes them, its event loader
-- leaves them out): a rejected event is never returned, nor counted against
-- the limit, but the history behind it is reached. Before this, an accepted
-- event whose only prev event was rejected ended the walk there. Outliers
-- are still not walked. The reference walk and the windowed query change
-- alike (the tests compare them); the window's argument (sql/007) holds
-- unchanged, as depth_monotone covers every edge, rejected events' too.

CREATE OR REPLACE FUNCTION mxf_backfill_walk(p_room bigint, p_v text[], p_limit int)
RETURNS SETOF bigint LANGUAGE plpgsql STABLE ROWS 100
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    seen    bigint[];
    queue   bigint[];
    picked  bigint[] := '{}';
    cur     bigint;
BEGIN
    SELECT coalesce(array_agg(e.event_nid), '{}') INTO queue
      FROM mxf_events e
     WHERE e.event_id = ANY (p_v) AND e.room_nid = p_room AND NOT e.outlier;
    seen := queue;
    WHILE cardinality(queue) > 0 AND cardinality(picked) < p_limit LOOP
        SELECT e.event_nid INTO cur FROM mxf_events e
         WHERE e.event_nid = ANY (queue) ORDER BY e.depth DESC, e.event_nid DESC LIMIT 1;
        queue := array_remove(queue, cur);
        IF EXISTS (SELECT 1 FROM mxf_events e
                    WHERE e.event_nid = cur AND e.rejected_reason IS NULL) THEN
            picked := picked || cur;
        END IF;
        SELECT queue || coalesce(array_agg(DISTINCT p.event_nid), '{}'),
               seen || coalesce(array_agg(DISTINCT p.event_nid), '{}')
          INTO queue, seen
          FROM mxf_event_edges x JOIN mxf_events p ON p.event_nid = x.prev_nid
         WHERE x.event_nid = cur AND p.room_nid = p_room AND NOT p.outlier
           AND NOT (p.event_nid = ANY (seen));
    END LOOP;
    RETURN QUERY SELECT unnest(picked);
END
$$;

CREATE OR REPLACE FUNCTION mxf_backfill(p_room bigint, p_v text[], p_limit int)
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
     WHERE e.event_id = ANY (p_v) AND e.room_nid = p_room AND NOT e.outlier;
    IF start IS NULL THEN
        RETURN;
    END IF;
    w := p_limit;
    LOOP
        WITH RECURSIVE walk (nid, depth, accepted) AS (
            SELECT e.event_nid, e.depth, e.rejected_reason IS NULL
              FROM mxf_events e WHERE e.event_nid = ANY (start)
            UNION
            SELECT p.event_nid, p.depth, p.rejected_reason IS NULL
              FROM walk
              CROSS JOIN LATERAL (SELECT x.prev_nid FROM mxf_event_edges x
                                   WHERE x.event_nid = walk.nid OFFSET 0) x
              JOIN mxf_events p ON p.event_nid = x.prev_nid
             WHERE p.room_nid = p_room AND NOT p.outlier AND p.depth >= top - w
        )
        SELECT array_agg(t.nid) INTO picked
          FROM (SELECT walk.nid FROM walk WHERE walk.accepted
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
