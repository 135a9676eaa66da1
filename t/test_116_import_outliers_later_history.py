# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Outliers later given as history (README: snapshot events are outliers
"until the same events come in as part of the room's history - in that
input or a later import - and are events of the room like any other").

test_116_001: import 1 is a /send_join answer (test_068's room) and the
events after the join; import 2 gives the room's first events (create, the
creator's join, power levels), stored as outliers of the answer's auth
chain, as history lines. The rows end as the one-file import of the two
parts leaves them (history, with a state).

test_116_002: an outlier given as history whose prev_events are still not
stored is an event of unknown state like any other: it gets its place in
the input (mxf_event_arrival), by which the import that completes it orders
it."""
import json

from test_021_import import new_db, query_json, read_lines, write_lines
from test_064_import_parts import import_path
from test_068_send_join_then_history import late_join, room, send_join_answer  # noqa: F401

SQL = ("SELECT event_id, outlier, state_before IS NULL AS no_state_before,"
       " state_after IS NULL AS no_state_after, rejected_reason FROM mxf_events")


def test_116_001_first_events_after_send_join(room, build_env, workdir, postgres,  # noqa: F811
                                             tmp_path):
    i, join_id = late_join(room)
    lines = read_lines(room.path)
    idx_of = {eid: room.idx(eid) for eid in room.order}
    after = [lines[idx_of[e]] for e in room.order[i + 1:]]
    answer = json.dumps(send_join_answer(room, join_id)).encode()
    first = [answer] + after
    second = [lines[idx_of[e]] for e in room.order[:3]]   # create, join, power levels

    one = new_db(postgres, build_env)
    import_path(build_env, workdir, postgres, one,
                write_lines(tmp_path / "one.jsonl", first + second), room.keys)
    db = new_db(postgres, build_env)
    import_path(build_env, workdir, postgres, db, write_lines(tmp_path / "p1.jsonl", first),
                room.keys)
    out2 = import_path(build_env, workdir, postgres, db,
                       write_lines(tmp_path / "p2.jsonl", second), room.keys).stdout
    want = {r["event_id"]: r for r in query_json(postgres, one, SQL)}
    got = {r["event_id"]: r for r in query_json(postgres, db, SQL)}
    for e in room.order[:3]:
        assert not want[e]["outlier"] and not want[e]["no_state_before"], \
            f"setup: one file gives {e} a state: {want[e]}"
    diffs = [(e, want[e], got.get(e)) for e in want if want[e] != got.get(e)]
    assert not diffs, f"{len(diffs)} rows differ from the one-file import: {diffs[:3]}\n{out2}"


def test_116_002_outlier_given_as_history_behind_gap_gets_arrival(
        room, build_env, workdir, postgres, tmp_path):  # noqa: F811
    """sql/README: mxf_event_arrival gives each event stored with its state
    unknown (not an outlier) its place in the input. An outlier of import 1
    given as history in import 2 whose prev_events are still missing is such
    an event: it needs its row, or the import that completes it orders it by
    its event number (coalesce(a.arrival, e.event_nid) in load_refills()),
    ahead of every event with a row, wherever its line was."""
    i, join_id = late_join(room)
    lines = read_lines(room.path)
    idx_of = {eid: room.idx(eid) for eid in room.order}
    after = [lines[idx_of[e]] for e in room.order[i + 1:]]
    answer = json.dumps(send_join_answer(room, join_id)).encode()
    db = new_db(postgres, build_env)
    import_path(build_env, workdir, postgres, db,
                write_lines(tmp_path / "p1.jsonl", [answer] + after), room.keys)
    outl = set(postgres.psql(db, "SELECT event_id FROM mxf_events WHERE outlier").split())
    # Latest snapshot state events whose prev_events are not stored at all.
    stored = set(postgres.psql(db, "SELECT event_id FROM mxf_events").split())
    cands = [e for e in room.order[:i] if e in outl
             and not any(p in stored for p in room.events[e]["json"]["prev_events"])]
    assert cands, "setup: an outlier whose prev_events are not stored"
    s = cands[-1]
    import_path(build_env, workdir, postgres, db,
                write_lines(tmp_path / "p2.jsonl", [lines[idx_of[s]]]), room.keys)
    row = query_json(postgres, db, f"SELECT outlier, state_before IS NULL AS unknown,"
                                   f" (SELECT arrival FROM mxf_event_arrival a"
                                   f"   WHERE a.event_nid = e.event_nid) AS arrival"
                                   f" FROM mxf_events e WHERE event_id = '{s}'")[0]
    assert not row["outlier"] and row["unknown"], f"setup: history of unknown state: {row}"
    assert row["arrival"] is not None, f"{s}: no mxf_event_arrival row: {row}"
