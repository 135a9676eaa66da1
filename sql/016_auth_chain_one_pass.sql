-- Reading auth chains in one recursive query, and their events by index.
--
-- 006 followed the chain links in rounds, one statement per hop, each
-- merging the links' targets into the arrays of every chain reached so far.
-- Where the hops are sequential (the auth chain of one membership event in a
-- big room runs through the sender's membership, their inviter's, and so
-- on) that is thousands of rounds over thousands of chains: /event_auth of
-- one event of the benchmark's 1,000,000-event room took 10-17 s (8,838
-- events, 3,000 rounds). The recursive query below walks chain positions
-- in blocks of 16 (each block's links read once, each position reached
-- reads at most one block), so its work stays linear in the answer whatever
-- the shape of the room: 0.2 s for that event. Reading every link up to
-- each position reached instead is quadratic where a chain is reached at
-- many positions (power levels handed from member to member 12,000 times
-- took 10-19 s); one position at a time is linear too, but was 1.6-2.6
-- times slower than blocks on the benchmark's rooms.
--
-- The callers joined the chain to mxf_events with a plain join, which the
-- planner, expecting the function's 1,000 rows, made a hash join over a
-- sequential scan of the whole table (7.5 of the 10 ms of a /state_ids in
-- the 10,000-event room). The events are now read by one index scan over
-- the sorted IDs (= ANY of an array), and /event_auth sorts the IDs by
-- depth before it reads the PDUs, not the PDUs themselves (8,838 PDUs went
-- to a 7 MB sort on disk).

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

CREATE OR REPLACE FUNCTION mxf_state_at(p_room bigint, p_event_id text, p_bodies boolean)
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
          FROM mxf_events e WHERE e.event_nid = ANY (ARRAY(SELECT mxf_auth_chain(p_room, state)));
END
$$;

-- The order is the one of 003 (depth, then arrival): the nested loop keeps
-- the order of the sorted IDs, so the PDUs are not sorted again.
CREATE OR REPLACE FUNCTION mxf_event_auth(p_room bigint, p_event_id text)
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
          FROM (SELECT x.event_nid, x.depth FROM mxf_events x
                 WHERE x.event_nid = ANY (ARRAY(SELECT mxf_auth_chain(p_room, ARRAY[ev.event_nid])))
                 ORDER BY x.depth, x.event_nid) o
          CROSS JOIN LATERAL (SELECT y.* FROM mxf_events y
                               WHERE y.event_nid = o.event_nid OFFSET 0) e
         ORDER BY o.depth, o.event_nid;
END
$$;
