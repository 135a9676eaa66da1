# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The README's way to load a room "as a server that joined late
has it": its /send_join answer (state, auth_chain, event) with the events
after the join; later (the room grows, or the earlier history is fetched
with backfill) the whole history is imported into the same database. The
snapshot events become "events of the room like any other" (README), so
after the second import every endpoint must answer as for the whole room
imported in one go into a fresh database."""
import json
import os
import random

import pytest

from mxftest.matrix import Room
from test_020_genroom import gen
from test_021_import import new_db, query_json, read_lines, write_lines
from test_064_import_parts import (collect, diff, import_path, request_list, room_signers,
                                   serve)


@pytest.fixture(scope="module")
def room(build_env, tmp_path_factory):
    d = gen(build_env, tmp_path_factory.mktemp("sj") / "room", "10", seed=905,
            events=300, branchiness=0.25)
    r = Room(str(d))
    r.keys = os.path.join(str(d), "keys", "all.json")
    r.path = os.path.join(str(d), "room.jsonl")
    return r


def send_join_answer(room, join_id):
    """The v2 /send_join answer for @join_id: the state before it, the auth
    chain of that state and of the join, the join itself."""
    state = room.events[join_id]["exp"]["state_before"]
    state_ids = sorted(set(state.values()))
    chain = room.auth_chain(state_ids + [join_id])
    pdu = lambda e: room.events[e]["json"]  # noqa: E731
    return {"origin": "hs1.example", "members_omitted": False,
            "state": [pdu(e) for e in state_ids],
            "auth_chain": [pdu(e) for e in sorted(chain)],
            "event": pdu(join_id)}


def late_join(room):
    """A join after the middle of the room (its server is then the one
    that "joined late": what it has is its send_join answer and what came after)."""
    for i, eid in enumerate(room.order):
        ev = room.events[eid]["json"]
        if (i > len(room.order) // 2 and ev["type"] == "m.room.member"
                and ev["content"].get("membership") == "join"):
            return i, eid
    raise AssertionError("no join after the middle of the room")


def test_068_001_send_join_then_whole_history(room, build_env, workdir, postgres,
                                              httpd_factory, signing_key, backend, tmp_path):
    i, join_id = late_join(room)
    lines = read_lines(room.path)
    idx_of = {eid: room.idx(eid) for eid in room.order}
    after = [lines[idx_of[e]] for e in room.order[i + 1:]]
    answer = json.dumps(send_join_answer(room, join_id)).encode()
    first = write_lines(tmp_path / "joined.jsonl", [answer] + after)

    one = new_db(postgres, build_env)
    import_path(build_env, workdir, postgres, one, room.path, room.keys)
    db = new_db(postgres, build_env)
    out1 = import_path(build_env, workdir, postgres, db, first, room.keys).stdout
    assert "1 event given the state before it by a /send_join answer" in out1, out1
    outliers = int(postgres.psql(db, "SELECT count(*) FROM mxf_events WHERE outlier"))
    assert outliers > 10, outliers
    out2 = import_path(build_env, workdir, postgres, db, room.path, room.keys).stdout

    # Rows: what the second import left of the snapshot's outliers.
    sql = ("SELECT event_id, outlier, state_before IS NULL AS no_state_before,"
           " state_after IS NULL AS no_state_after, rejected_reason FROM mxf_events")
    want = {r["event_id"]: r for r in query_json(postgres, one, sql)}
    got = {r["event_id"]: r for r in query_json(postgres, db, sql)}
    row_diffs = [(e, want[e], got.get(e)) for e in want if want[e] != got.get(e)]

    rnd = random.Random(905)
    snap_ids = set(e for e in room.events[join_id]["exp"]["state_before"].values())
    snap_ids |= room.auth_chain(sorted(snap_ids) + [join_id])
    sample = sorted(set(rnd.sample(sorted(snap_ids), min(12, len(snap_ids)))
                        + rnd.sample(room.order, 20) + [join_id]), key=room.order.index)
    reqs = request_list(room, sample)
    signers = room_signers(room)
    answers = {}
    for name, d in (("one", one), ("parts", db)):
        h = serve(httpd_factory, postgres, signing_key, backend, d, f"sj-{name}")
        try:
            answers[name] = collect(h, signers, reqs)
        finally:
            h.stop()
    bad, text = diff(answers["one"], answers["parts"])
    assert not row_diffs and not bad, (
        f"{len(row_diffs)} events' rows differ from the one-go import, e.g. "
        f"{row_diffs[:3]}\n{text}\nfirst import: {out1.splitlines()[0]}\n"
        f"second import: {out2}")


@pytest.fixture(scope="module")
def linear(build_env, tmp_path_factory):
    """No forks: every event after the join descends from it alone."""
    d = gen(build_env, tmp_path_factory.mktemp("sjl") / "room", "10", seed=9052,
            events=300, branchiness=0.0)
    r = Room(str(d))
    r.keys = os.path.join(str(d), "keys", "all.json")
    r.path = os.path.join(str(d), "room.jsonl")
    return r
