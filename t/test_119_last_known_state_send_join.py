# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The last known state of a room loaded from a /send_join answer (test_068's
linear room) when the event right after the join is left out: every forward
extremity is behind the gap, the last event of known state is the join, so
the room is served with the state after the join (README "State and
authorization": "from the last events whose state is known"); the import
that brings the missing event completes it."""
import json

from test_021_import import new_db, read_lines, write_lines
from test_064_import_parts import cli_sanitizer_reports, import_path
from test_068_send_join_then_history import late_join, linear, send_join_answer  # noqa: F401
from test_114_import_gap_on_every_branch import servers


def test_119_001_send_join_then_gap(linear, build_env, workdir, postgres, tmp_path):  # noqa: F811
    room = linear
    i, join_id = late_join(room)
    lines = read_lines(room.path)
    idx_of = {eid: room.idx(eid) for eid in room.order}
    gap = room.order[i + 1]
    after = [lines[idx_of[e]] for e in room.order[i + 2:]]
    answer = json.dumps(send_join_answer(room, join_id)).encode()
    db = new_db(postgres, build_env)
    out = import_path(build_env, workdir, postgres, db,
                      write_lines(tmp_path / "p1.jsonl", [answer] + after), room.keys).stdout
    assert "forward extremities behind missing" in out, out
    want = sorted(room.expected[idx_of[gap]]["joined_servers"])  # the state before it
    assert sorted(servers(postgres, db)) == want
    import_path(build_env, workdir, postgres, db,
                write_lines(tmp_path / "p2.jsonl", [lines[idx_of[gap]]]), room.keys)
    assert sorted(servers(postgres, db)) == sorted(room.summary["joined_servers"])
    assert not cli_sanitizer_reports(workdir)
