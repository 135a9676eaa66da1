-- get_missing_events naming many latest_events: the windowed query of
-- 007/010 walks from every one of them as far as its window reaches, so its
-- cost grows with their number (1,350 of them, a 64 KB body, took half a
-- second on a 25,000-event room); the breadth-first walk stops as soon as a
-- layer holds `limit` events, whatever their number. Both give the same
-- events (test_025 compares them). From 3 latest events on, the walk is
-- the faster (measured on the benchmark's 10,000-event room: 0.8 against
-- 1.2 ms for 2, 1.1 against 5.3 ms for 16, 4 against 65 ms for 400); for
-- one or two, the windowed query.
ALTER FUNCTION mxf_missing_events(bigint, text[], text[], int, bigint)
    RENAME TO mxf_missing_events_window;

CREATE FUNCTION mxf_missing_events(p_room bigint, p_earliest text[], p_latest text[],
                                   p_limit int, p_min_depth bigint)
RETURNS SETOF bigint LANGUAGE plpgsql STABLE ROWS 20 AS $$
BEGIN
    IF coalesce(cardinality(p_latest), 0) > 2 THEN
        RETURN QUERY SELECT w.w FROM mxf_missing_events_walk(p_room, p_earliest, p_latest,
                                                             p_limit, p_min_depth) w(w);
    ELSE
        RETURN QUERY SELECT w.w FROM mxf_missing_events_window(p_room, p_earliest, p_latest,
                                                               p_limit, p_min_depth) w(w);
    END IF;
END
$$;

-- Redactions of m.room.create are no longer applied, as the reference
-- homeserver ignores them (a create event of room versions 1-10 served
-- redacted loses its room_version, which receivers then read as "1"):
-- those an earlier import applied are undone. (A content-hash mismatch
-- still has the event served redacted.)
UPDATE mxf_events SET redacted_because = NULL
 WHERE type = 'm.room.create' AND state_key = ''
   AND redacted_because IS NOT NULL AND redacted_because <> 'content-hash';
