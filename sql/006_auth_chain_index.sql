-- The auth chain index: /event_auth, /state and /state_ids read the auth
-- chain of an event or of a whole state from it instead of walking
-- auth_events edges back to the create event on every request.
--
-- A chain cover of the auth DAG. Every state event of an indexed room has a
-- position (chain_id, seq) on a chain: a path of the auth DAG on which each
-- event cites the one before it (seq - 1) among its auth events, so an event
-- reaches every event of its chain with a smaller seq. An auth event on
-- another chain is reached through a link (origin chain and seq -> target
-- chain and seq): the event at the origin, and every event above it on its
-- chain, reaches the target and everything below the target on its chain.
-- The importer assigns positions in topological order (an event continues
-- the chain of the auth event it replaces, or of another auth event at the
-- top of its chain, else starts one) and leaves out a link when an earlier
-- one from the same chain already reaches as far. A room's auth chains then
-- take a few chains per member and a few links per state event, and reading
-- a chain costs one round per link hop plus one range scan per chain: no
-- walk over the events themselves.
--
-- Rooms stored before this index existed are marked not indexed and are
-- still walked (mxf_auth_chain_walk); re-importing such a room's events
-- into a fresh database indexes it.

ALTER TABLE mxf_rooms ADD COLUMN auth_chains_indexed boolean NOT NULL DEFAULT false;

CREATE TABLE mxf_auth_chain_pos (
    event_nid  bigint  PRIMARY KEY,
    chain_id   bigint  NOT NULL,
    seq        int     NOT NULL CHECK (seq > 0)
);
CREATE UNIQUE INDEX mxf_auth_chain_pos_chain ON mxf_auth_chain_pos (chain_id, seq)
    INCLUDE (event_nid);

CREATE TABLE mxf_auth_chain_links (
    origin_chain  bigint  NOT NULL,
    origin_seq    int     NOT NULL,
    target_chain  bigint  NOT NULL,
    target_seq    int     NOT NULL
);
CREATE INDEX mxf_auth_chain_links_origin
    ON mxf_auth_chain_links (origin_chain, origin_seq) INCLUDE (target_chain, target_seq);

-- The walk of sql/003, kept for rooms without the index.
ALTER FUNCTION mxf_auth_chain(bigint, bigint[]) RENAME TO mxf_auth_chain_walk;

-- The auth chain of the events p_nids of room p_room (the events themselves
-- only where one reaches another), from the index: one statement per link
-- hop, then one index range per chain reached (OFFSET 0 keeps the planner
-- from hash-joining whole tables instead). In v12 rooms the create event,
-- which no event cites, is added as in the walk.
CREATE FUNCTION mxf_auth_chain(p_room bigint, p_nids bigint[])
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
