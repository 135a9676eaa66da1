# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""State resolution of many states (the multi-word bit sets of
6b73c62): a v10 room built by hand whose tip forks into N branches (N = 1,
63, 64, 65, 128, 200), each joining its own user, who sets the topic and a
state key of its own; a merge event lists all N tips as prev_events.
Expected (state res v2, worked by hand): every branch's member and org.x
event; the topic of the branch whose topic has the greatest
origin_server_ts (all topics share their mainline position: the last
applied wins). Checked for the merge event's state before it and for the
current state over the N forward extremities (before the merge is given),
and the time an import of N=200 takes."""
import json
import os
import random
import time

import pytest

from mxftest.builder import RoomBuilder
from test_021_import import import_ok, load_db, new_db, state_map, write_lines

ADMIN = "@admin:hs1.example"


def build(n, seed):
    b = RoomBuilder(room_id=f"!many{n}:hs1.example")
    c = b.make("m.room.create", ADMIN, {"creator": ADMIN, "room_version": "10"}, [], [],
               state_key="")
    j = b.make("m.room.member", ADMIN, {"membership": "join"}, [c], [c], state_key=ADMIN)
    pl = b.make("m.room.power_levels", ADMIN,
                {"users": {ADMIN: 100}, "users_default": 0, "events_default": 0,
                 "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": 0,
                 "events": {"m.room.topic": 0, "org.x": 0}}, [j], [c, j], state_key="")
    jr = b.make("m.room.join_rules", ADMIN, {"join_rule": "public"}, [pl], [c, pl, j],
                state_key="")
    tip = b.make("m.room.history_visibility", ADMIN, {"history_visibility": "shared"}, [jr],
                 [c, pl, j], state_key="")
    base = dict(b.state)
    t0 = b.ts + 10
    perm = list(range(n))
    random.Random(seed).shuffle(perm)
    tips, expect = [], {}
    for i in range(n):
        b.state = dict(base)
        u = f"@u{i}:hs1.example"
        m = b.make("m.room.member", u, {"membership": "join"}, [tip],
                   b.auth_for("m.room.member", u, u, "join"), state_key=u, ts=t0 + i)
        t = b.make("m.room.topic", u, {"topic": f"branch {i}"}, [m],
                   b.auth_for("m.room.topic", u), state_key="", ts=t0 + 10000 + perm[i])
        x = b.make("org.x", u, {"i": i}, [t], b.auth_for("org.x", u), state_key=f"k{i}",
                   ts=t0 + 20000 + i)
        tips.append(x)
        expect[f"m.room.member|{u}"] = m
        expect[f"org.x|k{i}"] = x
        if perm[i] == n - 1:
            expect["m.room.topic|"] = t
    for (ty, sk), eid in base.items():
        expect[f"{ty}|{sk}"] = eid
    b.state = dict(base)
    merge = b.make("m.room.message", ADMIN, {"body": "merge"}, tips,
                   b.auth_for("m.room.message", ADMIN), ts=t0 + 30000)
    return b, merge, expect


@pytest.mark.parametrize("n", [1, 64, 65, 200])
def test_072_001_many_states_resolved_in_one(n, build_env, postgres, tmp_path):
    b, merge, expect = build(n, seed=n)
    keys = str(tmp_path / "keys.json")
    b.keys.write_responses(keys)
    lines = [json.dumps(ev, separators=(",", ":")).encode() for _, ev in b.events]
    db = new_db(postgres, build_env)
    # Without the merge: the current state over N forward extremities.
    t = time.monotonic()
    import_ok(build_env, postgres, db, write_lines(tmp_path / "branches.jsonl", lines[:-1]),
              keys, extra=["--require-signatures"])
    took = time.monotonic() - t
    dbd = load_db(postgres, db)
    assert not [e for e in dbd["events"].values() if e.get("rejected_reason")]
    [room] = dbd["rooms"]
    assert state_map(dbd, room["current_state_group"]) == expect
    assert took < 30, took
    # The merge: its state before is the same resolution.
    import_ok(build_env, postgres, db, write_lines(tmp_path / "merge.jsonl", lines[-1:]),
              keys, extra=["--require-signatures"])
    dbd = load_db(postgres, db)
    e = dbd["events"][merge]
    assert e.get("rejected_reason") is None, e
    assert state_map(dbd, e["state_before"]) == expect
