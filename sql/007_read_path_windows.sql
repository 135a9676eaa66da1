-- Read path, second round of profiling (bench/run):
--  * the served copy of an event is decided by an expression the planner
--    inlines into the module's statements (mxf_pdu_for over the event and
--    its two visibility rows, joined in), instead of two plpgsql calls per
--    returned event;
--  * backfill is one recursive query over a depth window instead of a loop
--    of two statements per returned event, in rooms whose depths are
--    monotone (see below); other rooms keep the loop (mxf_backfill_walk);
--  * get_missing_events reads whether events are accepted with each layer;
--  * mxf_state_of and mxf_auth_chain look groups, entries and chain ranges
--    up by index one by one (the planner chose hash joins over whole
--    tables inside the recursion: 19 ms instead of 0.5 ms for one state of
--    a 10,000-event room, growing with the room), and mxf_auth_chain takes
--    one statement per link hop instead of three.

-- Which copy of event e server p_server is served (as mxf_served_pdu):
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

-- get_missing_events as in 003, with whether each event of a layer is
-- accepted read with the layer (one statement per layer, none per event).
CREATE OR REPLACE FUNCTION mxf_missing_events(p_room bigint, p_earliest text[],
                                              p_latest text[], p_limit int,
                                              p_min_depth bigint)
RETURNS SETOF bigint LANGUAGE plpgsql STABLE ROWS 20
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    seen   bigint[];
    front  bigint[];
    layer  bigint[];
    ok     boolean[];
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
        SELECT coalesce(array_agg(l.n ORDER BY l.d DESC, l.n DESC), '{}'),
               coalesce(array_agg(l.a ORDER BY l.d DESC, l.n DESC), '{}')
          INTO layer, ok FROM (
            SELECT DISTINCT p.event_nid AS n, p.depth AS d, p.rejected_reason IS NULL AS a
              FROM mxf_event_edges x JOIN mxf_events p ON p.event_nid = x.prev_nid
             WHERE x.event_nid = ANY (front) AND p.room_nid = p_room
               AND p.depth >= p_min_depth AND NOT (p.event_nid = ANY (seen))
        ) l;
        front := '{}';
        FOR i IN 1 .. cardinality(layer) LOOP
            EXIT WHEN cardinality(picked) >= p_limit;
            front := front || layer[i];
            IF ok[i] THEN
                picked := picked || layer[i];
            END IF;
        END LOOP;
        seen := seen || front;
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

-- mxf_auth_chain of 006 with one statement per link hop, and the chain
-- ranges read by index per chain.
CREATE OR REPLACE FUNCTION mxf_auth_chain(p_room bigint, p_nids bigint[])
RETURNS SETOF bigint LANGUAGE plpgsql STABLE ROWS 1000 AS $$
DECLARE
    -- reached chains: the highest seq reached (rtop) and the highest seq
    -- whose links were followed (ltop); they differ only for a given event,
    -- which is below itself for its links but not for its own position
    chains  bigint[];
    rtops   int[];
    ltops   int[];
    -- links to follow next: origin seq in (lo, hi] of chain f_chain
    f_chain bigint[];
    f_lo    int[];
    f_hi    int[];
BEGIN
    IF NOT coalesce((SELECT r.auth_chains_indexed FROM mxf_rooms r WHERE r.room_nid = p_room),
                    false) THEN
        RETURN QUERY SELECT w.w FROM mxf_auth_chain_walk(p_room, p_nids) w(w);
        RETURN;
    END IF;
    -- Start: a given event with a position, strictly below it; one without
    -- (not a state event), its auth events.
    SELECT coalesce(array_agg(s.chain_id), '{}'), coalesce(array_agg(s.rtop), '{}'),
           coalesce(array_agg(s.ltop), '{}')
      INTO chains, rtops, ltops
      FROM (SELECT x.chain_id, max(x.rtop) AS rtop, max(x.ltop) AS ltop
              FROM (SELECT p.chain_id, p.seq - 1 AS rtop, p.seq AS ltop
                      FROM mxf_auth_chain_pos p JOIN mxf_events e USING (event_nid)
                     WHERE p.event_nid = ANY (p_nids) AND e.room_nid = p_room
                    UNION ALL
                    SELECT p.chain_id, p.seq, p.seq
                      FROM mxf_auth_edges a
                      JOIN mxf_events e ON e.event_nid = a.event_nid
                      JOIN mxf_auth_chain_pos p ON p.event_nid = a.auth_nid
                     WHERE a.event_nid = ANY (p_nids) AND e.room_nid = p_room
                       AND NOT EXISTS (SELECT 1 FROM mxf_auth_chain_pos q
                                        WHERE q.event_nid = a.event_nid)) x
             GROUP BY x.chain_id) s;
    f_chain := chains;
    f_lo := array_fill(0, ARRAY[cardinality(chains)]);
    f_hi := ltops;
    WHILE cardinality(f_chain) > 0 LOOP
        -- the links not followed yet (highest target per chain), merged into
        -- the reached chains; those whose links now reach higher come next
        WITH n AS (
            SELECT l.target_chain AS c, max(l.target_seq) AS top
              FROM unnest(f_chain, f_lo, f_hi) f(c, lo, hi)
              CROSS JOIN LATERAL (SELECT x.target_chain, x.target_seq
                                    FROM mxf_auth_chain_links x
                                   WHERE x.origin_chain = f.c AND x.origin_seq > f.lo
                                     AND x.origin_seq <= f.hi OFFSET 0) l
             GROUP BY l.target_chain
        ), m AS (
            SELECT coalesce(r.c, n.c) AS c, greatest(r.rt, n.top) AS rt,
                   greatest(r.lt, n.top) AS lt, coalesce(r.lt, 0) AS was,
                   n.top > coalesce(r.lt, 0) AS grows
              FROM unnest(chains, rtops, ltops) r(c, rt, lt)
              FULL JOIN n ON n.c = r.c
        )
        SELECT array_agg(m.c), array_agg(m.rt), array_agg(m.lt),
               coalesce(array_agg(m.c) FILTER (WHERE m.grows), '{}'),
               coalesce(array_agg(m.was) FILTER (WHERE m.grows), '{}'),
               coalesce(array_agg(m.lt) FILTER (WHERE m.grows), '{}')
          INTO chains, rtops, ltops, f_chain, f_lo, f_hi
          FROM m;
    END LOOP;
    RETURN QUERY
        SELECT p.event_nid
          FROM unnest(chains, rtops) r(c, top)
          CROSS JOIN LATERAL (SELECT x.event_nid FROM mxf_auth_chain_pos x
                               WHERE x.chain_id = r.c AND x.seq <= r.top OFFSET 0) p
        UNION
        SELECT r.create_event_nid FROM mxf_rooms r
         WHERE r.room_nid = p_room AND r.room_version = '12' AND r.create_event_nid IS NOT NULL
           AND EXISTS (SELECT 1 FROM unnest(p_nids) n WHERE n <> r.create_event_nid);
END
$$;
