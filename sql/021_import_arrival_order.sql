-- The input order of the events stored with their state unknown.
--
-- An event whose prev_events are not all stored is stored without a state;
-- a later import that brings the missing events takes it up again and
-- orders it with its own events. Events ready at the same time are taken in
-- the order they arrived, as a single import of all the files reads them:
-- each file's lines in turn. The event numbers give that order only among
-- the events of one import that were ready together; among the events an
-- import left with an unknown state they follow its topological order, not
-- its input. The importer now records, for each event stored with its state
-- unknown, its place in the input: (import number << 32) + line, the import
-- number one more than the highest recorded. The row goes when the event's
-- state becomes known.
--
-- Events stored with an unknown state before this migration get their event
-- number, which is below every number given from now on: they keep the
-- order they had.

CREATE TABLE mxf_event_arrival (
    event_nid  bigint  PRIMARY KEY REFERENCES mxf_events ON DELETE CASCADE,
    arrival    bigint  NOT NULL
);

INSERT INTO mxf_event_arrival (event_nid, arrival)
SELECT event_nid, event_nid FROM mxf_events
 WHERE state_before IS NULL AND NOT outlier;
