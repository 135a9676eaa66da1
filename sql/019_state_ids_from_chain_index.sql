-- /state_ids reads its auth chain IDs from the auth chain index alone.
--
-- The auth chain of a state can be most of a room's state events: in the
-- benchmark's room of 1,000,000 events, 177,759 of its 204,651 (an answer
-- of 8 MB). Read as event numbers and then looked up in mxf_events one by
-- one for their IDs, the lookups took as long as reading the chain (0.75
-- of 1.6 s), and the answer was then sorted by kind (0.25 s). The chain
-- positions now carry the event ID, covered by the (chain_id, seq) index
-- the chain is read from, so /state_ids reads no event row beyond the
-- state's own; its rows come in the order the module sends them (the auth
-- chain, then the state), which the statement keeps by ordinality rather
-- than sorting.
--
-- The column is filled from mxf_events in this migration: about 2 s per
-- 100,000 state events, holding mxf_auth_chain_pos (and so /state,
-- /state_ids and /event_auth, not the other endpoints) for that long.

ALTER TABLE mxf_auth_chain_pos ADD COLUMN event_id text;
UPDATE mxf_auth_chain_pos p SET event_id = e.event_id
  FROM mxf_events e WHERE e.event_nid = p.event_nid;
ALTER TABLE mxf_auth_chain_pos ALTER COLUMN event_id SET NOT NULL;
DROP INDEX mxf_auth_chain_pos_chain;
CREATE UNIQUE INDEX mxf_auth_chain_pos_chain ON mxf_auth_chain_pos (chain_id, seq)
    INCLUDE (event_nid, event_id);

-- The highest position reached on each chain by the auth chain of the
-- events p_nids of an indexed room (the recursion of 018's mxf_auth_chain,
-- unchanged): the chain is every position at or below its top.
CREATE FUNCTION mxf_auth_chain_tops(p_room bigint, p_nids bigint[])
RETURNS TABLE (chain_id bigint, top int) LANGUAGE sql STABLE ROWS 1000 AS $$
    -- r: positions (chain, seq) reached: the chain holds chain c's events up
    -- to the highest s of c. A row reads the links from its own block of 16
    -- positions, (((s - 1) / 16) * 16, s], and brings the top of the block
    -- below; block tops are the same rows whichever position led there, so
    -- every block is read once, and a row of its own costs at most one
    -- block's links. A given event with a position is not itself in the
    -- chain (unless reached from another): it starts with the position below
    -- it and the targets of its own links. A given event without one (not a
    -- state event) starts with its auth events'.
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
    )
    SELECT r.c, max(r.s) FROM r GROUP BY r.c
$$;

-- The create event of a v12 room, which no event cites, where the auth
-- chain of p_nids (other than the create event alone) is asked for.
CREATE FUNCTION mxf_auth_chain_v12_create(p_room bigint, p_nids bigint[])
RETURNS SETOF bigint LANGUAGE sql STABLE AS $$
    SELECT r.create_event_nid FROM mxf_rooms r
     WHERE r.room_nid = p_room AND r.room_version = '12' AND r.create_event_nid IS NOT NULL
       AND EXISTS (SELECT 1 FROM unnest(p_nids) n WHERE n <> r.create_event_nid)
$$;

-- The auth chain of the events p_nids of room p_room, as event numbers
-- (/state, /event_auth): the same set as 018's.
CREATE OR REPLACE FUNCTION mxf_auth_chain(p_room bigint, p_nids bigint[])
RETURNS SETOF bigint LANGUAGE plpgsql STABLE ROWS 1000 AS $$
BEGIN
    IF NOT coalesce((SELECT r.auth_chains_indexed FROM mxf_rooms r WHERE r.room_nid = p_room),
                    false) THEN
        RETURN QUERY SELECT w.w FROM mxf_auth_chain_walk(p_room, p_nids) w(w);
        RETURN;
    END IF;
    RETURN QUERY
        SELECT p.event_nid
          FROM mxf_auth_chain_tops(p_room, p_nids) t
          CROSS JOIN LATERAL (SELECT x.event_nid FROM mxf_auth_chain_pos x
                               WHERE x.chain_id = t.chain_id AND x.seq <= t.top OFFSET 0) p
        UNION
        SELECT c FROM mxf_auth_chain_v12_create(p_room, p_nids) c;
END
$$;

-- The same set as event IDs (/state_ids), read from the index's own rows.
CREATE FUNCTION mxf_auth_chain_ids(p_room bigint, p_nids bigint[])
RETURNS SETOF text LANGUAGE plpgsql STABLE ROWS 1000 AS $$
BEGIN
    IF NOT coalesce((SELECT r.auth_chains_indexed FROM mxf_rooms r WHERE r.room_nid = p_room),
                    false) THEN
        RETURN QUERY SELECT e.event_id
                       FROM mxf_auth_chain_walk(p_room, p_nids) w(w)
                       JOIN mxf_events e ON e.event_nid = w.w;
        RETURN;
    END IF;
    RETURN QUERY
        SELECT p.event_id
          FROM mxf_auth_chain_tops(p_room, p_nids) t
          CROSS JOIN LATERAL (SELECT x.event_id FROM mxf_auth_chain_pos x
                               WHERE x.chain_id = t.chain_id AND x.seq <= t.top OFFSET 0) p
        UNION
        SELECT e.event_id
          FROM mxf_auth_chain_v12_create(p_room, p_nids) c
          JOIN mxf_events e ON e.event_nid = c;
END
$$;

-- /state_ids at event p_event_id of room p_room: one '!' row when the state
-- there is not served (as mxf_state_at), else the auth chain's IDs ('a')
-- and then the state's ('p'), in that order.
CREATE FUNCTION mxf_state_ids_at(p_room bigint, p_event_id text)
RETURNS TABLE (kind text, event_id text) LANGUAGE plpgsql STABLE AS $$
DECLARE
    ev mxf_events;
    state bigint[];
BEGIN
    SELECT * INTO ev FROM mxf_events e WHERE e.event_id = p_event_id AND e.room_nid = p_room;
    IF NOT FOUND OR ev.rejected_reason IS NOT NULL OR ev.outlier OR ev.state_before IS NULL THEN
        RETURN QUERY SELECT '!'::text, p_event_id;
        RETURN;
    END IF;
    SELECT coalesce(array_agg(s.event_nid), '{}') INTO state FROM mxf_state_of(ev.state_before) s;
    RETURN QUERY SELECT 'a'::text, a.a FROM mxf_auth_chain_ids(p_room, state) a(a);
    RETURN QUERY SELECT 'p'::text, e.event_id FROM mxf_events e WHERE e.event_nid = ANY (state);
END
$$;
