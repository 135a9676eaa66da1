# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Redactions end to end, per room version. Which redactions are
accepted (v1/v2: auth rule 11, redact level or same event-ID domain), which
apply (v3+: the redact level, or the redacter's server is the target's
sender's, as the spec's "Redactions" section and the reference homeserver's
check_redaction / recheck_redaction have it), what is served (the version's
redacted copy), and their effect on later authorization (an auth event that
was redacted is read redacted: in v1-v10 a redacted power levels event has no
`invite`, in v11 it keeps it). Also: v11 reads `redacts` from content only,
v1-v10 from the top level; a redaction of a redaction leaves the first in
force; a redaction naming another room's event does nothing; a redaction
imported before its target applies when the target comes."""
import json

import pytest

from mxftest.vroom import db_rejected, import_rooms, serve
from mxftest.vbuilder import Keys, VRoom, redact

A = "@admin:hs1.example"
B = "@bob:hs2.example"
B2 = "@bob2:hs2.example"
C = "@carol:hs3.example"
D = "@dave:hs4.example"
VERSIONS = [str(v) for v in range(1, 12)]


class Exp:
    def __init__(self):
        self.redacted = set()


def base(r, pl):
    r.create(A)
    r.join(A)
    r.make("m.room.power_levels", A, pl, state_key="")
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    r.make("m.room.history_visibility", A, {"history_visibility": "shared"}, state_key="")


def build(keys, v, other_msg):
    n = int(v)
    r = VRoom(v, keys, f"!rd{v}:hs1.example")
    x = Exp()
    base(r, {"users": {A: 100}, "invite": 50})
    pl1 = r.state[("m.room.power_levels", "")]
    r.join(B)
    r.join(B2)
    r.join(C)
    mA = r.msg(A, "a")
    mA2 = r.msg(A, "a2")
    mB = r.msg(B, "b")
    mB2 = r.msg(B, "b2")
    mC = r.msg(C, "c")
    # own message: always applies
    rb = r.redaction(B, mB)
    x.redacted.add(mB)
    # another server's message without power: v1/v2 rejected; v3+ accepted, not applied
    r.redaction(B, mA, rejected=n <= 2)
    # same server, other user: v1/v2 same event-ID domain; v3+ same sender server
    r.redaction(B2, mB2)
    x.redacted.add(mB2)
    # with power
    r.redaction(A, mC)
    x.redacted.add(mC)
    # the wrong place for `redacts`: nothing is redacted
    if n >= 11:
        r.make("m.room.redaction", A, {}, extra={"redacts": mA2})
    else:
        r.make("m.room.redaction", A, {"redacts": mA2})
    # a redaction naming another room's event (A has the power here)
    r.redaction(A, other_msg)
    # invite level 50: bob may not invite
    r.member(B, D, "invite", rejected=True)
    # redact the power levels: v1-v10 lose "invite" (default 0), v11 keeps it
    r.redaction(A, pl1)
    x.redacted.add(pl1)
    r.member(B, D, "invite", rejected=n >= 11)
    # a redaction of a redaction: the first stays in force
    r.redaction(A, rb)
    x.redacted.add(rb)
    r.msg(A, "end")
    return r, x


def build_other(keys, v):
    r = VRoom(v, keys, f"!ot{v}:hs1.example")
    base(r, {"users": {A: 100}})
    m = r.msg(A, "other room")
    r.msg(A, "end")
    return r, m


def build_late(keys, v):
    """A redaction imported before its target (a side branch whose only event
    comes in a second import)."""
    r = VRoom(v, keys, f"!lt{v}:hs1.example")
    x = Exp()
    base(r, {"users": {A: 100}})
    r.join(B)
    r.join(C)
    fork = r.last
    late_b = r.msg(B, "late b", prev=[fork])
    r.last = fork
    late_c = r.msg(C, "late c", prev=[fork])
    r.last = fork
    r.msg(A, "main")
    r.redaction(A, late_b)            # power: applies
    x.redacted.add(late_b)
    r.redaction(B, late_c)            # v3+: other server, no power: does not apply
    if r.v <= 2:                      # (v1/v2: rejected by rule 11)
        r.rejected.add(r.last)
    # close the fork later so that the late events are not forward extremities
    r.msg(A, "end")
    return r, x, {late_b, late_c}


@pytest.fixture(scope="module")
def rooms(build_env, postgres, workdir):
    keys = Keys()
    out = {}
    first, second = [], []
    for v in VERSIONS:
        other, om = build_other(keys, v)
        r, x = build(keys, v, om)
        lr, lx, late = build_late(keys, v)
        out[v] = (r, x, other, lr, lx, late)
        first += [other, r]
        # the late room without its late events first
        keep = [(e, j) for e, j in lr.events if e not in late]
        lr_first = VRoom(v, keys, lr.room_id)
        lr_first.events = keep
        first.append(lr_first)
        lr_second = VRoom(v, keys, lr.room_id)
        lr_second.events = [(e, j) for e, j in lr.events if e in late]
        second.append(lr_second)
    import_rooms(build_env, postgres, workdir, "t903a", first, keys)
    import_rooms(build_env, postgres, workdir, "t903b", second, keys)
    return keys, out


@pytest.fixture(scope="module")
def fed(httpd_factory, postgres, signing_key, backend, rooms):
    yield from serve(httpd_factory, postgres, signing_key, backend, rooms[0], "httpd-056")


def label(r, eid):
    ev = r.by_id[eid]
    i = [e for e, _ in r.events].index(eid)
    return f"#{i} {ev['type']} {ev['sender']} {json.dumps(ev['content'])[:50]}"


def check(fed, postgres, r, x):
    got_rej = db_rejected(postgres, r.room_id)
    wrong = [f"{label(r, e)}: expected {'rejected' if e in r.rejected else 'accepted'}"
             f" {got_rej.get(e, '')}"
             for e, _ in r.events if (e in r.rejected) != (e in got_rej)]
    for eid, ev in r.events:
        resp = fed.event("hs1.example", r.room_id, eid)
        if eid in r.rejected:
            if resp.status != 404:
                wrong.append(f"{label(r, eid)}: rejected but served")
            continue
        if resp.status != 200:
            wrong.append(f"{label(r, eid)}: {resp}")
            continue
        want = redact(ev, r.version) if eid in x.redacted else ev
        if resp.json["pdus"][0] != want:
            wrong.append(f"{label(r, eid)}: expected "
                         f"{'redacted' if eid in x.redacted else 'whole'}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("v", VERSIONS)
def test_056_001_redactions(rooms, fed, postgres, v):
    r, x, other, *_ = rooms[1][v]
    check(fed, postgres, r, x)


@pytest.mark.parametrize("v", VERSIONS)
def test_056_002_other_room_untouched(rooms, fed, postgres, v):
    r, x, other, *_ = rooms[1][v]
    check(fed, postgres, other, Exp())


@pytest.mark.parametrize("v", VERSIONS)
def test_056_003_redaction_before_target(rooms, fed, postgres, v):
    *_, lr, lx, late = rooms[1][v]
    check(fed, postgres, lr, lx)


@pytest.mark.parametrize("v", VERSIONS)
def test_056_004_state_serves_redacted_copies(rooms, fed, v):
    """/state and /event_auth carry the redacted copy of a redacted state event
    (here the power levels), as every other endpoint does."""
    from mxftest.matrix import q
    r, x, *_ = rooms[1][v]
    last = r.events[-1][0]
    resp = fed.get("hs1.example", f"/_matrix/federation/v1/state/{q(r.room_id)}?event_id={q(last)}")
    assert resp.status == 200, resp
    served = resp.json["pdus"] + resp.json["auth_chain"]
    by_sig = {json.dumps(ev["signatures"], sort_keys=True): eid for eid, ev in r.events}
    wrong = []
    for p in served:
        eid = by_sig[json.dumps(p["signatures"], sort_keys=True)]
        want = redact(r.by_id[eid], r.version) if eid in x.redacted else r.by_id[eid]
        if p != want:
            wrong.append(label(r, eid))
    assert not wrong, "\n".join(wrong)
    assert {by_sig[json.dumps(p["signatures"], sort_keys=True)] for p in resp.json["pdus"]} \
        == set(r.state.values())
