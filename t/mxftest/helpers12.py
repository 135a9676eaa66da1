# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Database reads for the room version 12 tests."""
import json


def db_states_before(postgres, room_id):
    out = postgres.psql(postgres.DBNAME, f"""
        SELECT coalesce(json_object_agg(e.event_id, s.st), '{{}}') FROM mxf_events e
          JOIN mxf_rooms r USING (room_nid)
          CROSS JOIN LATERAL (
            SELECT coalesce(json_object_agg(x.type || '|' || x.state_key, y.event_id), '{{}}') st
              FROM mxf_state_of(e.state_before) x JOIN mxf_events y ON y.event_nid = x.event_nid
          ) s
         WHERE r.room_id = '{room_id}'""")
    return json.loads(out)
