# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""An event stored unverified (no key known) and given again
with the keys known is marked signatures_verified only when the new line's
bytes equal the stored bytes (UPDATE ... WHERE e.pdu = v.pdu).

README: "a later import that gives the same PDU again, its servers' keys
known, verifies its signatures and sets that to true". The same PDU
(same event ID, same signatures, same canonical JSON) saved another way - a
/backfill answer of another server, whose JSON encoder orders keys and
spaces differently, or the answer pretty-printed by `jq .` - is verified by
this import, yet its stored row stays false, and the summary says nothing."""
import json
import os

import pytest

from mxftest.matrix import gen_room
from test_021_import import import_ok, new_db, query_json, write_lines


@pytest.fixture(scope="module")
def room(build_env, workdir):
    return gen_room(build_env.cli, os.path.join(workdir, "903-room"), room_version=10,
                    events=30, servers=2, seed=9031)


def reformatted_lines(room):
    return [json.dumps(json.loads(l), sort_keys=True, separators=(", ", ": ")).encode()
            for l in room.lines]


def backfill_answer_pretty(room):
    pdus = [json.loads(l) for l in room.lines]
    return json.dumps({"origin": "hs1.example", "origin_server_ts": 1, "pdus": pdus},
                      indent=2).encode().split(b"\n")


@pytest.mark.parametrize("form", ["keys reordered, spaced", "backfill answer, jq-style"])
def test_071_001_same_pdu_other_bytes_marked_verified(room, build_env, postgres, tmp_path,
                                                      form):
    db = new_db(postgres, build_env)
    out = import_ok(build_env, postgres, db, write_lines(tmp_path / "nokeys.jsonl", room.lines))
    assert "0 verified" in out, out
    lines = reformatted_lines(room) if form.startswith("keys") else backfill_answer_pretty(room)
    out = import_ok(build_env, postgres, db, write_lines(tmp_path / "again.json", lines),
                    os.path.join(room.dir, "keys", "all.json"), extra=["--require-signatures"])
    rows = query_json(postgres, db, "SELECT event_id, signatures_verified FROM mxf_events")
    unverified = [r["event_id"] for r in rows if not r["signatures_verified"]]
    assert unverified == [], (f"{len(unverified)} of {len(rows)} stay unverified although "
                              f"this import verified their signatures; summary: {out}")
