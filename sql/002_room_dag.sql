-- The room DAG, laid out for the federation read path. See sql/README for
-- the design; the module only reads these tables, matrix-fed import writes them.

-- One row per room.
CREATE TABLE mxf_rooms (
    room_nid            bigint  PRIMARY KEY,
    room_id             text    NOT NULL UNIQUE,
    room_version        text    NOT NULL,
    create_event_nid    bigint,
    -- State after the room's forward extremities (its current state).
    current_state_group bigint,
    -- Content of the current m.room.server_acl event, as received (NULL: none).
    current_acl         text
);

-- Servers with at least one joined member in the room's current state.
CREATE TABLE mxf_room_servers (
    room_nid     bigint  NOT NULL REFERENCES mxf_rooms,
    server_name  text    NOT NULL,
    joined       int     NOT NULL CHECK (joined > 0),
    PRIMARY KEY (room_nid, server_name)
);

-- Who may see events, per stretch of history: the history visibility in
-- force and the servers that had a joined or invited member. Consecutive
-- events share a row until one of these changes.
CREATE TABLE mxf_visibility (
    vis_id              bigint  PRIMARY KEY,
    room_nid            bigint  NOT NULL REFERENCES mxf_rooms,
    history_visibility  text    NOT NULL
        CHECK (history_visibility IN ('world_readable', 'shared', 'invited', 'joined')),
    joined_servers      text[]  NOT NULL,
    invited_servers     text[]  NOT NULL
);

-- Every event, with its PDU exactly as received.
CREATE TABLE mxf_events (
    event_nid         bigint   PRIMARY KEY,      -- also the arrival order
    event_id          text     NOT NULL UNIQUE,
    room_nid          bigint   NOT NULL REFERENCES mxf_rooms,
    type              text     NOT NULL,
    state_key         text,                      -- NULL: not a state event
    sender            text     NOT NULL,
    -- content.membership of m.room.member events.
    membership        text,
    depth             bigint   NOT NULL,
    origin_server_ts  bigint   NOT NULL,
    -- The signed JSON text as received: never re-serialised, never given an
    -- event_id it did not carry.
    pdu               text     NOT NULL,
    -- The room version's redaction of pdu (hashes and signatures kept), kept
    -- where the event is redacted or may be served redacted to some server.
    redacted_pdu      text,
    -- Why the event is always served redacted: the event ID of the
    -- m.room.redaction that applies, or 'content-hash' for a hash mismatch.
    redacted_because  text,
    outlier           boolean  NOT NULL DEFAULT false,
    rejected_reason   text,                      -- NULL: accepted
    signatures_verified boolean NOT NULL,
    -- State groups before and after the event (NULL for outliers).
    state_before      bigint,
    state_after       bigint,
    -- Visibility at the event; for m.room.history_visibility and m.room.member
    -- events also after it (visible if either allows).
    vis_id            bigint,
    vis_after_id      bigint,
    CHECK (redacted_because IS NULL OR redacted_pdu IS NOT NULL)
);
CREATE INDEX mxf_events_room_depth ON mxf_events (room_nid, depth DESC, event_nid DESC);
CREATE INDEX mxf_events_room_ts ON mxf_events (room_nid, origin_server_ts, event_nid);

-- prev_events edges. prev_nid is NULL while the referenced event is unknown
-- (the edge of known history); the importer fills it in when it arrives.
CREATE TABLE mxf_event_edges (
    event_nid  bigint  NOT NULL REFERENCES mxf_events,
    prev_id    text    NOT NULL,
    prev_nid   bigint,
    PRIMARY KEY (event_nid, prev_id)
);
CREATE INDEX mxf_event_edges_prev ON mxf_event_edges (prev_nid);
CREATE INDEX mxf_event_edges_unknown ON mxf_event_edges (prev_id) WHERE prev_nid IS NULL;

-- auth_events edges, likewise.
CREATE TABLE mxf_auth_edges (
    event_nid  bigint  NOT NULL REFERENCES mxf_events,
    auth_id    text    NOT NULL,
    auth_nid   bigint,
    PRIMARY KEY (event_nid, auth_id)
);
CREATE INDEX mxf_auth_edges_auth ON mxf_auth_edges (auth_nid);
CREATE INDEX mxf_auth_edges_unknown ON mxf_auth_edges (auth_id) WHERE auth_nid IS NULL;

-- m.room.redaction events and what they redact, so that a redaction that
-- arrives before its target is applied when the target arrives.
-- allowed_by_power: the redacter's power level sufficed, whoever the target's sender.
CREATE TABLE mxf_redactions (
    event_nid         bigint   PRIMARY KEY REFERENCES mxf_events,
    room_nid          bigint   NOT NULL REFERENCES mxf_rooms,
    redacts           text     NOT NULL,
    allowed_by_power  boolean  NOT NULL
);
CREATE INDEX mxf_redactions_redacts ON mxf_redactions (redacts);

-- State groups: a state is a delta over a previous group, or a full snapshot
-- (prev_group NULL). Chains are kept short (chain_len) by the importer.
CREATE TABLE mxf_state_groups (
    group_id    bigint  PRIMARY KEY,
    room_nid    bigint  NOT NULL REFERENCES mxf_rooms,
    prev_group  bigint  REFERENCES mxf_state_groups,
    chain_len   int     NOT NULL
);

CREATE TABLE mxf_state_entries (
    group_id   bigint  NOT NULL REFERENCES mxf_state_groups,
    type       text    NOT NULL,
    state_key  text    NOT NULL,
    event_nid  bigint  NOT NULL,
    PRIMARY KEY (group_id, type, state_key)
);

-- The full state of a group: its entries and those of the groups it is a
-- delta of, the nearest one winning.
CREATE FUNCTION mxf_state_of(g bigint)
RETURNS TABLE (type text, state_key text, event_nid bigint)
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE chain (group_id, prev_group, lvl) AS (
        SELECT group_id, prev_group, 0 FROM mxf_state_groups WHERE group_id = g
        UNION ALL
        SELECT s.group_id, s.prev_group, c.lvl + 1
          FROM mxf_state_groups s JOIN chain c ON s.group_id = c.prev_group
    )
    SELECT DISTINCT ON (e.type, e.state_key) e.type, e.state_key, e.event_nid
      FROM chain c JOIN mxf_state_entries e ON e.group_id = c.group_id
     ORDER BY e.type, e.state_key, c.lvl
$$;
