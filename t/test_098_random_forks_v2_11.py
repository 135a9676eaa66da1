# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Random rooms of versions 2-11 with forks and merges, judged by
an independent model of the v2-v11 authorization rules and state resolution
v2 (mxftest/stateres_v2_11.py, from the spec and Synapse): power and
membership changes, bans/unbans/kicks, join rule changes (knock, restricted,
knock_restricted whatever the version allows), joins authorised via a user,
aliases (special case in v1-v5), redactions of messages (domain rule of v1/v2),
stringy power levels before v10, events the rules reject, and auth events
sometimes chosen from a stale branch, a subset or a wrong list; in v2-v10
every third seed's create event names another user as the creator. The
module's stored state before each event and its verdict must equal the
model's. Each room is imported four ways (MODES below).

Knobs: MXF_V2_11_VERSIONS (2,3,6,8,10,11), MXF_V2_11_SEEDS (1-3),
MXF_V2_11_EVENTS (120), MXF_V2_11_MODES, MXF_V2_11_PARTS (3).
The rchunks order (create event, then the parts latest first) found the
heap overflow of test_097 (v2 seed 3, v10 seed 1)."""
import json
import os
import random

import pytest

from mxftest.stateres_v2_11 import ModelV
from mxftest.modelcmp import state_differences, verdict_differences
from mxftest.v12util import import_as
from mxftest.vbuilder import VRoom
from mxftest.vbuilder12 import SHARED_KEYS

A = "@alice:hs1.example"
B = "@bob:hs1.example"
USERS = [A, B, "@u1:hs2.example", "@u2:hs2.example", "@u3:hs3.example", "@u4:hs4.example",
         "@u5:hs5.example"]
VERSIONS = os.environ.get("MXF_V2_11_VERSIONS", "2,3,6,8,10,11").split(",")
SEEDS = [int(x) for x in os.environ.get("MXF_V2_11_SEEDS", "1-3").split("-")]
SEEDS = list(range(SEEDS[0], SEEDS[-1] + 1))
NEVENTS = int(os.environ.get("MXF_V2_11_EVENTS", "120"))


def server_of(u):
    return u.split(":", 1)[1]


def normal(r, eid):
    """The event as the model reads it: prev/auth as lists of event IDs."""
    ev = dict(r.by_id[eid])
    ev["prev_events"] = [p[0] if isinstance(p, list) else p for p in ev["prev_events"]]
    ev["auth_events"] = [a[0] if isinstance(a, list) else a for a in ev["auth_events"]]
    return ev


def random_room(version, seed, n=NEVENTS, state_redactions=True):
    v = int(version)
    rnd = random.Random(seed * 1000 + v)
    r = VRoom(version, SHARED_KEYS, f"!rnd{v}s{seed}x{rnd.randrange(10**6)}:hs1.example",
              ts0=1700000000000 + seed * 10 ** 7 + v * 10 ** 5)
    E = {}
    model = ModelV(E, [], version)
    msgs = []

    def add(eid):
        E[eid] = normal(r, eid)
        model.create_id = model.create_id or eid
        model.add(eid)
        if eid in model.rejected:
            r.rejected.add(eid)
        return eid

    # every third seed: the create event's content names bob as the creator,
    # which counts in v2-v10 (bob joins first) and not in v11 (bob's join fails)
    alt = seed % 3 == 0
    cid = r.create(A, extra_content={"creator": B} if alt else None)
    add(cid)
    first = B if alt and v <= 10 else A
    if alt:
        r.state = dict(model.after[cid])
        add(r.join(B))
        if v >= 11:
            r.last = cid
    r.state = dict(model.after[r.last])
    add(r.join(A) if first == A else r.member(A, A, "join"))
    if alt and v <= 10:
        r.last = r.events[-2][0]        # alice's join was rejected: go on from bob's
    r.state = dict(model.after[r.last])
    add(r.pl(first, {"users": {A: 100, B: 100, USERS[2]: 100, USERS[3]: 50}}))
    r.state = dict(model.after[r.last])
    add(r.make("m.room.join_rules", first, {"join_rule": "public"}, state_key=""))
    for u in USERS:
        if model.membership(model.after[r.last], u) == "join":
            continue
        r.state = dict(model.after[r.last])
        add(r.join(u))
    tips = [r.last]
    order = [e for e, _ in r.events]

    def lvl():
        x = rnd.choice([0, 10, 50, 75, 100])
        if rnd.random() < 0.08:                 # stringy: accepted before v10 (SYN int())
            x = rnd.choice([str(x), "0" + str(x), "+" + str(x), " %d" % x, "%d " % x,
                            "1_0", True, False, "-1"])
        return x

    def make(type_, sender, content, state_key=None, via=None):
        k = rnd.random()
        if len(tips) > 1 and k < 0.25:
            prev = rnd.sample(tips, min(len(tips), rnd.choice([2, 2, 3])))
        elif k < 0.45:
            recent = [e for e in order[-12:] if e not in model.rejected] or tips
            prev = [rnd.choice(recent)]
        else:
            prev = [rnd.choice(tips)]
        before = model.state_before_of(prev)
        x = rnd.random()
        if x < 0.08 and len(prev) > 1:
            before = dict(model.after[rnd.choice(prev)])      # a stale view of a merge
        elif x < 0.14 and [e for e in order[-30:] if e not in model.rejected]:
            older = [e for e in order[-30:] if e not in model.rejected]
            before = dict(model.after[rnd.choice(older)])     # auth from another branch
        r.state = dict(before)
        auth = r.auth_for(type_, sender, state_key, content)
        y = rnd.random()
        if y < 0.02 and (("m.room.topic", "") in before):
            auth = auth + [before[("m.room.topic", "")]]          # unexpected type
        elif y < 0.035:
            auth = [a for a in auth if a != model.create_id]     # no create event
        elif y < 0.05 and len(auth) > 1:
            auth = auth + [auth[-1]]                             # the same event twice
        elif y < 0.11 and ("m.room.power_levels", "") in before:
            auth = [a for a in auth if a != before[("m.room.power_levels", "")]]  # no PL
        elif y < 0.14 and len(auth) > 2:
            auth = [a for a in auth if a != rnd.choice(auth[1:])]  # a subset
        extra = {}
        if type_ == "m.room.redaction" and v < 11:
            extra["redacts"] = content.pop("redacts")
        sign_extra = [server_of(via)] if via and server_of(via) != server_of(sender) else []
        eid = r.make(type_, sender, content, state_key=state_key, prev=prev, auth=auth,
                     extra=extra or None, sign_extra=sign_extra)
        add(eid)
        order.append(eid)
        if eid not in model.rejected or rnd.random() < 0.2:
            for p in prev:
                if p in tips:
                    tips.remove(p)
            tips.append(eid)
        while len(tips) > 4:
            tips.pop(0)
        return eid

    jrs = ["public", "public", "invite", "knock", "restricted", "knock_restricted"]
    for _ in range(n):
        st = model.after[rnd.choice(tips)]
        joined = [u for u in USERS if model.membership(st, u) == "join"]
        s = rnd.choice(joined) if joined and rnd.random() < 0.7 else rnd.choice(USERS)
        k = rnd.random()
        if k < 0.2:
            users = {u: lvl() for u in rnd.sample(USERS[1:], 3)}
            if rnd.random() < 0.85:
                users[A] = 100
            content = {"users": users, "invite": rnd.choice([0, 50]),
                       "kick": rnd.choice([50, 75]), "ban": rnd.choice([50, 100]),
                       "state_default": rnd.choice([50, 75])}
            if rnd.random() < 0.3:
                content["invite"] = rnd.choice([50, 75])
            if rnd.random() < 0.2:
                content["users_default"] = rnd.choice([0, 10])
            if rnd.random() < 0.2:
                content["events"] = {"m.room.topic": rnd.choice([0, 50, 100])}
            if rnd.random() < 0.2:
                content["notifications"] = {"room": rnd.choice([50, 100])}
            if rnd.random() < 0.1:
                content["redact"] = lvl()
            if rnd.random() < 0.05:
                content["kick"] = str(content["kick"])
            make("m.room.power_levels", s, content, state_key="")
        elif k < 0.32:
            jr = rnd.choice(jrs)
            c = {"join_rule": jr}
            if jr in ("restricted", "knock_restricted"):
                c["allow"] = [{"type": "m.room_membership", "room_id": "!other:hs1.example"}]
            make("m.room.join_rules", s, c, state_key="")
        elif k < 0.67:
            t = rnd.choice(USERS)
            m = rnd.choice(["join", "join", "join", "leave", "ban", "invite", "invite", "knock",
                            "leave"])
            c = {"membership": m}
            via = None
            if m in ("join", "knock"):
                t = s
            if m == "join" and rnd.random() < 0.4:
                via = rnd.choice(USERS)
                c["join_authorised_via_users_server"] = via
            make("m.room.member", s, c, state_key=t, via=via)
        elif k < 0.74:
            make("m.room.topic", s, {"topic": f"t{rnd.random()}"}, state_key="")
        elif k < 0.77:
            sk = rnd.choice([s, s, rnd.choice(USERS), "x"])    # @-keys: the sender's own only
            make("org.example.custom", s, {"n": rnd.randrange(9)}, state_key=sk)
        elif k < 0.82:
            d = server_of(s) if rnd.random() < 0.7 else rnd.choice(["hs1.example",
                                                                       "hs3.example"])
            make("m.room.aliases", s, {"aliases": [f"#a{rnd.randrange(99)}:{d}"]},
                 state_key=d)
        elif k < 0.9 and msgs:
            target = rnd.choice(msgs)
            if rnd.random() < 0.6 and state_redactions:   # a state event, by its sender's server
                cands = [e for e in order[-40:] if e not in model.rejected and
                         r.by_id[e]["type"] in ("m.room.power_levels", "m.room.join_rules",
                                                "m.room.member")]
                tip_pl = model.after[rnd.choice(tips)].get(("m.room.power_levels", ""))
                if tip_pl and rnd.random() < 0.7:
                    cands = [tip_pl]
                if cands:
                    target = rnd.choice(cands)
                    d = server_of(r.by_id[target]["sender"])
                    s = rnd.choice([u for u in USERS if server_of(u) == d])
            make("m.room.redaction", s, {"redacts": target})
        else:
            msgs.append(make("m.room.message", s, {"msgtype": "m.text", "body": "m"}))
    r.state = model.state_before_of(list(tips))
    eid = r.make("m.room.message", A, {"msgtype": "m.text", "body": "final merge"},
                 prev=list(tips))
    add(eid)
    return r, model


# How the room is given to matrix-fed import: one file in the order made; one
# file shuffled (the importer orders by prev_events/auth_events); three
# imports in order; the create event, then three imports, the last part
# first (events of unknown state until the earlier parts come). Redactions of state events only where
# the input order is the order made (which redaction is "before" an event
# follows the input order).
MODES = os.environ.get("MXF_V2_11_MODES", "one,shuffle,chunks,rchunks").split(",")
CASES = [(v, s, m) for v in VERSIONS for s in SEEDS for m in MODES]


@pytest.fixture(scope="module", params=CASES, ids=[f"v{v}-s{s}-{m}" for v, s, m in CASES])
def judged(request, build_env, postgres, workdir):
    v, seed, mode = request.param
    mi = ["one", "shuffle", "chunks", "rchunks"].index(mode)
    r, model = random_room(v, seed + 1000 * mi, state_redactions=mode in ("one", "chunks"))
    lines = [json.dumps(ev, separators=(",", ":"), ensure_ascii=False) for _, ev in r.events]
    import_as(mode, build_env, postgres, workdir, f"rnd-v{v}-{seed}-{mode}", lines, SHARED_KEYS,
              seed=seed, parts=int(os.environ.get("MXF_V2_11_PARTS", "3")))
    return (v, seed, mode), r, model


def desc(r, eid):
    ev = r.by_id[eid]
    i = [e for e, _ in r.events].index(eid)
    return (f"#{i} {ev['type']} {ev['sender']} {ev.get('state_key', '')} "
            f"{ev['content'].get('membership', ev['content'].get('join_rule', ''))}"
            f" prev={len(ev['prev_events'])}")


def test_098_001_verdicts(judged, postgres):
    case, r, model = judged
    bad = verdict_differences(postgres, r, model, lambda e: desc(r, e))
    assert not bad, f"{case}: {len(bad)}: {bad[:4]}"


def test_098_002_states(judged, postgres):
    case, r, model = judged
    bad = state_differences(postgres, r, model, lambda e: desc(r, e))
    assert not bad, f"{case}: {len(bad)} states differ (got, model), first {bad[:3]}"
