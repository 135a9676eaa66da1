# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Random room version 12 rooms with forks and merges, power and
membership changes by creators and others, events that the rules reject. Each event's auth events are selected from the state before
it as the independent model (mxftest/stateres12.py) resolves it, sometimes
from a stale branch state instead; the module's stored states and verdicts
must equal the model's."""
import json
import os
import random

import pytest

from mxftest.stateres12 import Model
from mxftest.helpers12 import db_states_before
from mxftest.v12util import db_events, import_ok
from mxftest.vbuilder12 import SHARED_KEYS, V12Room

A = "@alice:hs1.example"
C = "@carol:hs3.example"
USERS = [A, C, "@u1:hs2.example", "@u2:hs2.example", "@u3:hs4.example", "@u4:hs5.example",
         "@u5:hs6.example"]
NOT_CREATORS = USERS[2:]
SEEDS = [int(x) for x in os.environ.get("MXF_V12_SEEDS", "1-12").split("-")]
SEEDS = list(range(SEEDS[0], SEEDS[-1] + 1))


def random_room(seed, n=int(os.environ.get("MXF_V12_EVENTS", "120"))):
    rnd = random.Random(seed)
    r = V12Room(SHARED_KEYS, ts0=1800000000000 + seed * 10 ** 7)
    model = Model(r.by_id, [], version="12")

    def add(eid):
        model.add(eid)
        model.create_id = model.create_id or eid
        return eid

    cid = r.create(A, additional_creators=[C])
    model.create_id = cid
    add(cid)
    add(r.join(A))
    add(r.pl(A, {"users": {USERS[2]: 100, USERS[3]: 50}, "invite": 0}))
    add(r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key=""))
    for u in USERS[1:]:
        add(r.join(u))
    tips = [r.last]

    def make(type_, sender, content, state_key=None):
        k = rnd.random()
        if len(tips) > 1 and k < 0.25:
            prev = rnd.sample(tips, 2)
        elif k < 0.45:
            # fork from a recent event
            recent = [e for e, _ in r.events[-12:] if e not in model.rejected] or tips
            prev = [rnd.choice(recent)]
        else:
            prev = [rnd.choice(tips)]
        before = model.state_before_of(prev)
        if rnd.random() < 0.15 and len(prev) == 1:
            pass
        elif rnd.random() < 0.1:
            before = dict(model.after[rnd.choice(prev)])      # a stale view of a merge
        r.state = dict(before)
        eid = r.make(type_, sender, content, state_key=state_key, prev=prev)
        add(eid)
        for p in prev:
            if p in tips:
                tips.remove(p)
        tips.append(eid)
        while len(tips) > 4:
            tips.pop(0)
        return eid

    for _ in range(n):
        s = rnd.choice(USERS)
        k = rnd.random()
        if k < 0.25:
            users = {u: rnd.choice([0, 10, 50, 75, 100]) for u in rnd.sample(NOT_CREATORS, 3)}
            if rnd.random() < 0.1:
                users[rnd.choice([A, C])] = 100              # lists a creator: rejected
            content = {"users": users, "invite": rnd.choice([0, 50]),
                       "kick": rnd.choice([50, 75]), "ban": rnd.choice([50, 100]),
                       "state_default": rnd.choice([50, 75])}
            make("m.room.power_levels", s, content, state_key="")
        elif k < 0.4:
            make("m.room.join_rules", s, {"join_rule": rnd.choice(["public", "invite",
                                                                   "knock"])}, state_key="")
        elif k < 0.7:
            t = rnd.choice(USERS)
            m = rnd.choice(["join", "leave", "ban", "invite", "knock", "leave"])
            if m in ("join", "knock"):
                t = s
            make("m.room.member", s, {"membership": m}, state_key=t)
        elif k < 0.85:
            make("m.room.topic", s, {"topic": f"t{rnd.random()}"}, state_key="")
        else:
            make("m.room.message", s, {"body": "m"})
    r.state = model.state_before_of(list(tips))
    add(r.make("m.room.message", A, {"body": "final merge"}, prev=list(tips)))
    return r, model


@pytest.fixture(scope="module", params=SEEDS)
def judged(request, build_env, postgres, workdir):
    r, model = random_room(request.param)
    import_ok(build_env, postgres, workdir, f"random-{request.param}", r.lines(), SHARED_KEYS)
    return request.param, r, model


def desc(r, eid):
    ev = r.by_id[eid]
    i = [e for e, _ in r.events].index(eid)
    return (f"#{i} {ev['type']} {ev['sender']} {ev.get('state_key', '')} "
            f"{ev['content'].get('membership', ev['content'].get('join_rule', ''))}"
            f" prev={len(ev['prev_events'])}")


def test_087_001_verdicts(judged, postgres):
    seed, r, model = judged
    got = db_events(postgres, r.room_id)
    bad = [(desc(r, e), model.rejected.get(e), got.get(e)) for e, _ in r.events
           if (e in model.rejected) != (got.get(e, "") != "")]
    assert not bad, f"seed {seed}: {len(bad)}: {bad[:4]}"


def test_087_002_states(judged, postgres):
    seed, r, model = judged
    got = db_states_before(postgres, r.room_id)
    bad = []
    for e, _ in r.events:
        want = {f"{k[0]}|{k[1]}": v for k, v in model.before[e].items()}
        g = got.get(e) or {}
        if g != want:
            names = {x: f"#{i}" for i, (x, _) in enumerate(r.events)}
            bad.append((desc(r, e), {k: (names.get(g.get(k)), names.get(want.get(k)))
                                     for k in set(g) | set(want) if g.get(k) != want.get(k)}))
    assert not bad, f"seed {seed}: {len(bad)} states differ, first {bad[:3]}"
