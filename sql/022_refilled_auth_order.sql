-- An order of the stored events that follows their auth events, for state
-- resolution in later imports.
--
-- State resolution walks auth chains in descending order of a number that
-- grows along auth edges; the importer took each stored event's number
-- (event_nid), which grows along them for the events of one import. An
-- event stored with its state unknown may cite auth events a later import
-- brings, with higher numbers, and keeps its number when that import
-- completes it: later imports then walked its auth chain out of order, and a
-- room imported in three parts could get another state than the one-file
-- import (a merge's state kept joins that state resolution drops).
--
-- The order is now event_nid << 24 for every event, but for the events an
-- import completes (takes up again), which get a row here: a number between
-- those of the new events before and after them in that import's order.

CREATE TABLE mxf_event_seq (
    event_nid  bigint  PRIMARY KEY REFERENCES mxf_events ON DELETE CASCADE,
    seq        bigint  NOT NULL
);
