-- Databases upgraded from earlier releases. Migrations 016 and 017 were
-- changed after they had been released, and 007 before that: a database
-- that had them applied kept their first bodies, as db init skips a version
-- it has recorded. This makes those bodies what they are now, drops what 007
-- drops today, and computes depth_monotone for rooms stored before 007
-- (added there as DEFAULT false and never computed, so their backfill took
-- the step-by-step walk for good). From here on a released migration is
-- never changed: a later one changes what it made.
--
-- And the breadth-first walk of get_missing_events (several latest_events):
-- under its generic plan each layer's statement read the whole room (an
-- index scan of the room's depths, hash-joined to the edges) once the
-- tables had statistics (autovacuum after an import): 24-26 s for three
-- latest events, limit 1000, in a room of 2,000 events. Each layer now
-- looks up the edges of its own events and their prev events by index.
DROP FUNCTION IF EXISTS mxf_served_pdu(mxf_events, text);
DROP FUNCTION IF EXISTS mxf_may_see(bigint, text);

UPDATE mxf_rooms r SET depth_monotone = true
 WHERE NOT r.depth_monotone
   AND NOT EXISTS (SELECT 1
                     FROM mxf_events c
                     JOIN mxf_event_edges x ON x.event_nid = c.event_nid
                     JOIN mxf_events p ON p.event_nid = x.prev_nid
                    WHERE c.room_nid = r.room_nid AND p.depth >= c.depth);

CREATE OR REPLACE FUNCTION mxf_auth_chain(p_room bigint, p_nids bigint[])
RETURNS SETOF bigint LANGUAGE plpgsql STABLE ROWS 1000 AS $$
BEGIN
    IF NOT coalesce((SELECT r.auth_chains_indexed FROM mxf_rooms r WHERE r.room_nid = p_room),
                    false) THEN
        RETURN QUERY SELECT w.w FROM mxf_auth_chain_walk(p_room, p_nids) w(w);
        RETURN;
    END IF;
    -- r: positions (chain, seq) reached: the chain holds chain c's events up
    -- to the highest s of c. A row reads the links from its own block of 16
    -- positions, (((s - 1) / 16) * 16, s], and brings the top of the block
    -- below; block tops are the same rows whichever position led there, so
    -- every block is read once, and a row of its own costs at most one
    -- block's links. A given event with a position is not itself in the
    -- chain (unless reached from another): it starts with the position below
    -- it and the targets of its own links. A given event without one (not a
    -- state event) starts with its auth events'.
    RETURN QUERY
        WITH RECURSIVE g (c, s) AS (
            SELECT p.chain_id, p.seq
              FROM mxf_auth_chain_pos p JOIN mxf_events e USING (event_nid)
             WHERE p.event_nid = ANY (p_nids) AND e.room_nid = p_room
        ), r (c, s) AS (
            SELECT g.c, g.s - 1 FROM g WHERE g.s > 1
            UNION ALL
            SELECT l.target_chain, l.target_seq
              FROM g JOIN mxf_auth_chain_links l ON l.origin_chain = g.c AND l.origin_seq = g.s
            UNION ALL
            SELECT p.chain_id, p.seq
              FROM mxf_auth_edges a
              JOIN mxf_events e ON e.event_nid = a.event_nid
              JOIN mxf_auth_chain_pos p ON p.event_nid = a.auth_nid
             WHERE a.event_nid = ANY (p_nids) AND e.room_nid = p_room
               AND NOT EXISTS (SELECT 1 FROM mxf_auth_chain_pos q
                                WHERE q.event_nid = a.event_nid)
            UNION
            SELECT n.c, n.s
              FROM r
              CROSS JOIN LATERAL (SELECT r.c, ((r.s - 1) / 16) * 16 WHERE r.s > 16
                                  UNION ALL
                                  SELECT x.target_chain, x.target_seq
                                    FROM mxf_auth_chain_links x
                                   WHERE x.origin_chain = r.c AND x.origin_seq <= r.s
                                     AND x.origin_seq > ((r.s - 1) / 16) * 16
                                  OFFSET 0) n (c, s)
        ), tops AS (
            SELECT r.c, max(r.s) AS top FROM r GROUP BY r.c
        )
        SELECT p.event_nid
          FROM tops
          CROSS JOIN LATERAL (SELECT x.event_nid FROM mxf_auth_chain_pos x
                               WHERE x.chain_id = tops.c AND x.seq <= tops.top OFFSET 0) p
        UNION
        SELECT r.create_event_nid FROM mxf_rooms r
         WHERE r.room_nid = p_room AND r.room_version = '12' AND r.create_event_nid IS NOT NULL
           AND EXISTS (SELECT 1 FROM unnest(p_nids) n WHERE n <> r.create_event_nid);
END
$$;

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
              FROM unnest(front) f(nid)
              CROSS JOIN LATERAL (SELECT x.prev_nid FROM mxf_event_edges x
                                   WHERE x.event_nid = f.nid OFFSET 0) x
              CROSS JOIN LATERAL (SELECT p.event_nid, p.depth FROM mxf_events p
                                   WHERE p.event_nid = x.prev_nid AND p.room_nid = p_room
                                     AND p.depth >= p_min_depth OFFSET 0) p
             WHERE NOT (p.event_nid = ANY (seen))
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
