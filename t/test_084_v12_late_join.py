# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""A room version 12 room as a server that joined late has it:
its /send_join answer (state, auth_chain, event) and the events after the
join. The create event comes only in the answer's state and auth chain; no
event lists it. Auth chains served must still hold it; events after the
join are judged with the creators' infinite power."""
import json

import pytest

from mxftest.matrix import q
from mxftest.v12util import db_events, import_ok
from mxftest.vbuilder12 import SHARED_KEYS, V12Room
from mxftest.vroom import FED, serve

A = "@alice:hs1.example"
B = "@bob:hs2.example"
C = "@carol:hs3.example"
J = "@joiner:hs7.example"


def build():
    r = V12Room(SHARED_KEYS, ts0=1780000000000)
    r.create(A, additional_creators=[C])
    r.join(A)
    r.pl(A, {"users": {B: 50}})
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    r.join(B)
    r.join(C)
    for i in range(5):
        r.msg(B, f"before {i}")
    r.make("m.room.topic", B, {"topic": "t"}, state_key="")
    join = r.join(J, label="the late join")
    after = []
    after.append(r.pl(C, {"users": {B: 100, J: 10}}, label="creator C raises B"))
    after.append(r.member(B, C, "leave", rejected=True, label="B (100) kicks creator C"))
    after.append(r.pl(B, {"users": {B: 100, J: 10, A: 1}}, rejected=True,
                      label="PL lists creator A (10.4)"))
    after.append(r.make("m.room.name", J, {"name": "n"}, state_key="", rejected=True,
                        label="J (10) below 50"))
    after.append(r.msg(J, "hello"))
    return r, join, after


@pytest.fixture(scope="module")
def late(build_env, postgres, workdir):
    r, join, after = build()
    before = r.before[join]
    state_ids = sorted(set(before.values()))
    chain = r.auth_chain(state_ids + [join])
    answer = {"origin": "hs1.example", "members_omitted": False,
              "state": [r.by_id[e] for e in state_ids],
              "auth_chain": [r.by_id[e] for e in sorted(chain)],
              "event": r.by_id[join]}
    lines = [json.dumps(answer, separators=(",", ":"))] + r.lines(after)
    p = import_ok(build_env, postgres, workdir, "late", lines, SHARED_KEYS)
    return r, join, after, state_ids, p.stdout


def test_084_001_verdicts_after_join(late, postgres):
    r, join, after, _, out = late
    got = db_events(postgres, r.room_id)
    wrong = [f"{r.labels[e]}: expected {'rejected' if e in r.rejected else 'accepted'}"
             f" ({got.get(e)})" for e in [join] + after
             if (e in r.rejected) != (got.get(e, '') != '')]
    assert not wrong, "\n".join(wrong) + "\n" + out


@pytest.fixture(scope="module")
def fed(httpd_factory, postgres, signing_key, backend, late):
    yield from serve(httpd_factory, postgres, signing_key, backend, SHARED_KEYS, "httpd-909")


def test_084_002_auth_chains_hold_create(late, fed):
    r, join, after, state_ids, _ = late
    rid = q(r.room_id)
    for eid in [join] + [e for e in after if e not in r.rejected]:
        resp = fed.get("hs2.example", f"{FED}/event_auth/{rid}/{q(eid)}")
        assert resp.status == 200, resp
        ids = {x for x, ev in r.events for p in resp.json["auth_chain"] if p == ev}
        assert ids == r.auth_chain([eid]), r.labels[eid]
        assert r.create_id in ids
    resp = fed.get("hs2.example", f"{FED}/state_ids/{rid}?event_id={q(join)}")
    assert resp.status == 200, resp
    assert set(resp.json["pdu_ids"]) == set(state_ids)
    assert set(resp.json["auth_chain_ids"]) == r.auth_chain(state_ids)
    last = after[-1]
    resp = fed.get("hs2.example", f"{FED}/state/{rid}?event_id={q(last)}")
    assert resp.status == 200, resp
    want = set(r.before[last].values())
    got = {x for x, ev in r.events for p in resp.json["pdus"] if p == ev}
    assert got == want
    got = {x for x, ev in r.events for p in resp.json["auth_chain"] if p == ev}
    assert got == r.auth_chain(want)
