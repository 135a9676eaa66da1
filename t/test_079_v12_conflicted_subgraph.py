# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""State resolution v2.1's conflicted state subgraph (room version 12),
after Synapse's tests/state/test_v21.py test_state_reset_replay_conflicted_
subgraph, as a room the importer reads:

  e1 create (Alice)   e2 Alice joins   e3 PL1 {users: {}}   e4 join_rules public
  e5 Bob joins   e6 Charlie joins   e7 PL2 {Bob: 50} (Alice)
  e8 PL3 {Bob: 50, Charlie: 50} (Bob)
  e9 Eve joins (prev e8)         e11 Zara joins (prev e8)
  e10 Eve joins again (a rename), citing PL1, prev events unknown; the state
      before it given by a /send_join answer: PL1 with Eve's e9 join - the
      "dodgy" state of the Synapse test.
  M   Alice's message, prev [e10, e11]

Resolving the states after e10 and e11 (by hand, from content/rooms/v12.md;
the result equals the Synapse test's expectation): the conflicted state set
is {e3, e8, e10, e11}; its subgraph (the auth paths between them) adds e4,
e5, e7, e9; the power events and their conflicted auth ancestors sort
e3, e4, e7, e5, e8, and from the empty state PL3 (e8) passes; then e10, e9,
e11 by mainline. Result: PL3 (e8), Eve e9, Zara e11.
Under v2 (no subgraph, unconflicted start) e7 and e5 are not replayed, Bob
has no power under PL1 and PL3 fails: PL1 - a state reset. Charlie (50
under PL3, 0 under PL1) then sets the topic: accepted only if the state
before it has PL3."""
import base64
import hashlib
import json

import pytest

from mxftest.matrix import q
from mxftest.v12util import db_events, db_state_before, import_lines, verdict_diff
from mxftest.vbuilder12 import SHARED_KEYS, Keys, V12Room
from mxftest.vroom import FED, serve

ALICE = "@alice:hs1.example"
BOB = "@bob:hs2.example"
CHARLIE = "@charlie:hs3.example"
EVE = "@evelyn:hs4.example"
ZARA = "@zara:hs5.example"


def build(keys):
    r = V12Room(keys, ts0=1730000000000)
    e = {}
    e[1] = r.create(ALICE)
    e[2] = r.join(ALICE)
    e[3] = r.pl(ALICE, {"users": {}}, label="e3 PL1")
    e[4] = r.make("m.room.join_rules", ALICE, {"join_rule": "public"}, state_key="")
    e[5] = r.join(BOB, label="e5 Bob joins")
    e[6] = r.join(CHARLIE, label="e6 Charlie joins")
    e[7] = r.pl(ALICE, {"users": {BOB: 50}}, label="e7 PL2")
    e[8] = r.pl(BOB, {"users": {BOB: 50, CHARLIE: 50}}, label="e8 PL3 (Bob)")
    e[9] = r.join(EVE, label="e9 Eve joins")
    r.goto(e[8])
    e[11] = r.join(ZARA, label="e11 Zara joins")
    # e10: prev unknown, the dodgy state before it
    nowhere = "$" + base64.urlsafe_b64encode(hashlib.sha256(b"nowhere").digest()) \
        .rstrip(b"=").decode()
    dodgy_before = {k: v for k, v in r.after[e[9]].items()}
    dodgy_before[("m.room.power_levels", "")] = e[3]
    r.state = dict(dodgy_before)
    e[10] = r.make("m.room.member", EVE, {"membership": "join", "displayname": "Eve"},
                   state_key=EVE, prev=[nowhere], auth=[e[3], e[4], e[9]], depth=10,
                   label="e10 Eve renames, citing PL1")
    resolved = dict(r.after[e[11]])
    resolved[("m.room.member", EVE)] = e[9]
    r.state = dict(resolved)
    m = r.msg(ALICE, "merge", prev=[e[10], e[11]], label="M (merge)")
    topic = r.make("m.room.topic", CHARLIE, {"topic": "by charlie"}, state_key="",
                   label="Charlie (50 under PL3) sets the topic")
    r.msg(ALICE, "end")
    answer = {"origin": "hs4.example", "members_omitted": False,
              "state": [r.by_id[x] for x in sorted(set(dodgy_before.values()))],
              "auth_chain": [r.by_id[x] for x in sorted(r.auth_chain(
                  list(dodgy_before.values()) + [e[10]]))],
              "event": r.by_id[e[10]]}
    return r, e, m, topic, answer, resolved


@pytest.fixture(scope="module")
def room(build_env, postgres, workdir):
    keys = SHARED_KEYS
    r, e, m, topic, answer, resolved = build(keys)
    lines = [json.dumps(answer, separators=(",", ":"))]
    lines += r.lines([x for x, _ in r.events if x != e[10]])
    p = import_lines(build_env, postgres, workdir, "subgraph", lines, keys)
    assert p.returncode == 0, p.stderr + p.stdout
    return keys, r, e, m, topic, resolved, p.stdout + p.stderr


def name_of(e, eid):
    for k, v in e.items():
        if v == eid:
            return f"e{k}"
    return eid


def test_079_001_state_before_merge(room, postgres):
    keys, r, e, m, topic, resolved, out = room
    got = db_state_before(postgres, m)
    assert got, "no state before the merge: " + out
    diff = {k: (name_of(e, got.get(k)), name_of(e, resolved.get(k)))
            for k in set(got) | set(resolved) if got.get(k) != resolved.get(k)}
    assert not diff, f"(got, expected): {diff}"


def test_079_002_verdicts(room, postgres):
    keys, r, e, m, topic, resolved, out = room
    got = db_events(postgres, r.room_id)
    wrong = verdict_diff(r, got)
    assert not wrong, "\n".join(wrong)


@pytest.fixture(scope="module")
def fed(httpd_factory, postgres, signing_key, backend, room):
    yield from serve(httpd_factory, postgres, signing_key, backend, room[0], "httpd-904")


def test_079_003_state_ids_served(room, fed):
    keys, r, e, m, topic, resolved, out = room
    resp = fed.get("hs3.example", f"{FED}/state_ids/{q(r.room_id)}?event_id={q(m)}")
    assert resp.status == 200, resp
    assert set(resp.json["pdu_ids"]) == set(resolved.values()), \
        {name_of(e, x) for x in set(resp.json["pdu_ids"]) ^ set(resolved.values())}
