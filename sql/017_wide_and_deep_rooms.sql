-- The windowed queries of get_missing_events and backfill (007, 010, 012,
-- 015) on rooms of other shapes than a line.
--
-- Wide rooms. Both windows started at `limit` (steps back from
-- latest_events; depth units below the top of v). Where hundreds of events
-- share a depth (a DAG of many forward extremities, each event citing
-- several of them), that first window already held tens of thousands of
-- events: a get_missing_events for 20 events took 2-10 s (its search also
-- keeps an event once per distance at which it is found), a backfill of
-- 100 up to 1.6 s. Both now count the room's events in the depth range of
-- their first window (at most a few times `limit` of them, from the depth
-- index); when there are that many, the window starts at one and doubles.
-- A room one or a few events wide keeps its first window of `limit`.
--
-- Depth gaps. An event may carry a depth far above its prev events' (any
-- server can send one; the room stays depth-monotone). backfill widened its
-- window four times over from the top each round, so a window that crossed
-- such a gap covered the whole room below it. The bound now moves below the
-- deepest event outside the window that the walk has an edge to (or the
-- deepest given event below it), twice as far each round.
--
-- A given event below the window. backfill counted every event of v into
-- its first window whatever its depth, and stopped when that made `limit`:
-- with v = [the newest event, 89 events deep in history] and limit 100 it
-- returned those 89 given events instead of the reachable events just below
-- the newest. Only events at or above the bound now count, and the answer
-- is taken once the window holds `limit` of them or nothing more is
-- reachable.
--
-- The reference walks (mxf_missing_events_walk, mxf_backfill_walk) are
-- unchanged; the tests compare the windows with them.

CREATE OR REPLACE FUNCTION mxf_missing_events_window(p_room bigint, p_earliest text[],
                                                     p_latest text[], p_limit int,
                                                     p_min_depth bigint)
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
    -- A wide room: more than 8 events per depth unit below latest_events
    -- in the first window's reach.
    SELECT CASE WHEN count(*) >= 8 * p_limit THEN 1 ELSE p_limit END INTO w
      FROM (SELECT 1 FROM (SELECT max(l.depth) AS top FROM mxf_events l
                            WHERE l.event_id = ANY (p_latest) AND l.room_nid = p_room) t
              JOIN mxf_events e ON e.room_nid = p_room AND e.depth <= t.top
                               AND e.depth >= t.top - p_limit
             LIMIT 8 * p_limit) c;
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
        w := w * (CASE WHEN w < p_limit THEN 2 ELSE 4 END);
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
    step    bigint;
    bound   bigint;
    nxt     bigint;
    below   bigint;
    picked  bigint[];
    walked  bigint[];
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
    step := p_limit;
    -- A wide room: more than 4 events per depth unit of the first window.
    IF (SELECT count(*) FROM (SELECT 1 FROM mxf_events e
                               WHERE e.room_nid = p_room AND e.depth <= top
                                 AND e.depth >= top - p_limit
                               LIMIT 4 * p_limit) c) >= 4 * p_limit THEN
        step := 1;
    END IF;
    bound := top - step;
    LOOP
        -- Every event reachable from v at or above the bound is reached
        -- through events at or above it (depths decrease along every edge).
        WITH RECURSIVE walk (nid, depth, accepted) AS (
            SELECT e.event_nid, e.depth, e.rejected_reason IS NULL
              FROM mxf_events e WHERE e.event_nid = ANY (start)
            UNION
            SELECT p.event_nid, p.depth, p.rejected_reason IS NULL
              FROM walk
              CROSS JOIN LATERAL (SELECT x.prev_nid FROM mxf_event_edges x
                                   WHERE x.event_nid = walk.nid OFFSET 0) x
              JOIN mxf_events p ON p.event_nid = x.prev_nid
             WHERE p.room_nid = p_room AND NOT p.outlier AND p.depth >= bound
        )
        SELECT (SELECT array_agg(t.nid) FROM (
                    SELECT walk.nid FROM walk WHERE walk.accepted AND walk.depth >= bound
                     ORDER BY walk.depth DESC, walk.nid DESC LIMIT p_limit) t),
               CASE WHEN (SELECT count(*) FROM walk
                           WHERE walk.accepted AND walk.depth >= bound) < p_limit
                    THEN (SELECT array_agg(walk.nid) FROM walk) END
          INTO picked, walked;
        EXIT WHEN coalesce(cardinality(picked), 0) >= p_limit;
        -- The deepest event below the window that the walk has an edge to,
        -- and the deepest given event below it.
        SELECT max(p.depth) INTO nxt
          FROM unnest(walked) w(nid)
          CROSS JOIN LATERAL (SELECT x.prev_nid FROM mxf_event_edges x
                               WHERE x.event_nid = w.nid OFFSET 0) x
          JOIN mxf_events p ON p.event_nid = x.prev_nid
         WHERE p.room_nid = p_room AND NOT p.outlier AND p.depth < bound;
        SELECT max(e.depth) INTO below FROM mxf_events e
         WHERE e.event_nid = ANY (start) AND e.depth < bound;
        IF nxt IS NULL AND below IS NULL THEN
            -- Nothing more is reachable: every walked event counts.
            SELECT array_agg(t.nid) INTO picked FROM (
                SELECT e.event_nid AS nid FROM mxf_events e
                 WHERE e.event_nid = ANY (walked) AND e.rejected_reason IS NULL
                 ORDER BY e.depth DESC, e.event_nid DESC LIMIT p_limit) t;
            EXIT;
        END IF;
        step := step * 2;
        bound := greatest(nxt, below) - step;
    END LOOP;
    RETURN QUERY SELECT unnest(picked);
END
$$;

-- timestamp_to_event orders by timestamp, then depth and arrival, among
-- accepted events that are not outliers; the index had the timestamp and
-- arrival only, so many events of one timestamp (any server can send them)
-- were sorted whole at every request (60,000 of them: 28-54 ms). An index
-- in the statements' own order, over the events they may return, answers
-- from its first entry.
DROP INDEX mxf_events_room_ts;
CREATE INDEX mxf_events_room_ts ON mxf_events (room_nid, origin_server_ts, depth, event_nid)
    WHERE rejected_reason IS NULL AND NOT outlier;

-- The step-by-step backfill walk (rooms that are not depth-monotone) read
-- every queued event from the events table again at each step to pick the
-- deepest: 55-105 ms for 100 events of a wide room. The queue now carries
-- each event's depth and whether it is accepted, and the deepest is picked
-- from the arrays.
CREATE OR REPLACE FUNCTION mxf_backfill_walk(p_room bigint, p_v text[], p_limit int)
RETURNS SETOF bigint LANGUAGE plpgsql STABLE ROWS 100
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    seen    bigint[];
    qn      bigint[];               -- queued events,
    qd      bigint[];               -- their depths,
    qa      boolean[];              -- and whether they are accepted
    picked  bigint[] := '{}';
    best    int;
BEGIN
    SELECT coalesce(array_agg(e.event_nid), '{}'), coalesce(array_agg(e.depth), '{}'),
           coalesce(array_agg(e.rejected_reason IS NULL), '{}')
      INTO qn, qd, qa
      FROM mxf_events e
     WHERE e.event_id = ANY (p_v) AND e.room_nid = p_room AND NOT e.outlier;
    seen := qn;
    WHILE cardinality(qn) > 0 AND cardinality(picked) < p_limit LOOP
        SELECT u.i INTO best FROM unnest(qn, qd) WITH ORDINALITY u(n, d, i)
         ORDER BY u.d DESC, u.n DESC LIMIT 1;
        IF qa[best] THEN
            picked := picked || qn[best];
        END IF;
        SELECT qn[:best - 1] || qn[best + 1:] || coalesce(array_agg(p.event_nid), '{}'),
               qd[:best - 1] || qd[best + 1:] || coalesce(array_agg(p.depth), '{}'),
               qa[:best - 1] || qa[best + 1:] || coalesce(array_agg(p.rejected_reason IS NULL), '{}'),
               seen || coalesce(array_agg(p.event_nid), '{}')
          INTO qn, qd, qa, seen
          FROM (SELECT DISTINCT p.event_nid, p.depth, p.rejected_reason
                  FROM mxf_event_edges x JOIN mxf_events p ON p.event_nid = x.prev_nid
                 WHERE x.event_nid = qn[best] AND p.room_nid = p_room AND NOT p.outlier
                   AND NOT (p.event_nid = ANY (seen))) p;
    END LOOP;
    RETURN QUERY SELECT unnest(picked);
END
$$;
