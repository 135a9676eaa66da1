# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""History visibility changing over time (world_readable ->
shared -> invited -> joined and back, an unknown value, a setting without
its key) while servers join, leave, get invited and reject, in several room
versions. For every event and every server, the expected copy (whole or the
room version's redaction) is computed here as the reference homeserver
decides it for servers (synapse rust/src/events/filter.rs
event_visible_to_server over the state after the event: visible unless the
history visibility is exactly "invited" or "joined"; then visible when the
server has a joined member, or an invited one under "invited") and compared
with /event, backfill and get_missing_events."""
import json

import pytest

from mxftest.vroom import import_rooms, serve
from mxftest.vbuilder import Keys, VRoom, redact, reference_hash, b64, b64u

A = "@admin:hs1.example"
B = "@bob:hs2.example"
C = "@carol:hs3.example"
D = "@dave:hs4.example"
E = "@erin:hs5.example"
SERVERS = ["hs1.example", "hs2.example", "hs3.example", "hs4.example", "hs5.example"]
VERSIONS = ["1", "3", "6", "9", "10", "11"]


def hv(r, value):
    c = {"history_visibility": value} if value is not None else {}
    return r.make("m.room.history_visibility", A, c, state_key="")


def build(keys, v):
    r = VRoom(v, keys, f"!hv{v}:hs1.example")
    r.create(A)
    r.join(A)
    r.make("m.room.power_levels", A, {"users": {A: 100}}, state_key="")
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    hv(r, "world_readable")
    r.msg(A, "m1")
    hv(r, "shared")
    r.msg(A, "m2")
    r.join(B)
    r.msg(B, "m3")
    hv(r, "invited")
    r.msg(A, "m4")
    r.member(A, C, "invite")
    r.msg(A, "m5")
    r.member(B, B, "leave")
    r.msg(A, "m6")
    hv(r, "joined")
    r.msg(A, "m7")
    r.join(C)
    r.msg(C, "m8")
    r.join(D)
    r.msg(D, "m9")
    r.member(D, D, "leave")
    r.msg(A, "m10")
    hv(r, "invited")
    r.msg(A, "m11")
    r.member(A, E, "invite")
    r.msg(A, "m12")
    r.member(E, E, "leave")
    r.msg(A, "m13")
    hv(r, "no_such_setting")        # unknown: treated as shared
    r.msg(A, "m14")
    hv(r, "joined")
    r.msg(A, "m15")
    hv(r, None)                     # no history_visibility key: shared
    r.msg(A, "m16")
    hv(r, "joined")
    r.member(A, B, "invite")
    r.msg(A, "m17")                 # B invited only: not visible under joined
    r.join(B)
    r.join(D)
    r.join(E)
    r.msg(A, "m18")
    return r


def build_multi(keys, v):
    """Several users per server; knock, ban; a rejected and a redacted
    history_visibility event; a merge of two branches."""
    b1, b2, b3 = "@b1:hs2.example", "@b2:hs2.example", "@b3:hs2.example"
    r = VRoom(v, keys, f"!hm{v}:hs1.example")
    r.create(A)
    r.join(A)
    r.make("m.room.power_levels", A, {"users": {A: 100}}, state_key="")
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    hv(r, "joined")
    r.join(b1)
    r.join(b2)
    r.member(b1, b1, "leave")          # b2 still joined: visible to hs2
    r.msg(A, "n1")
    r.member(b2, b2, "leave")          # the last one: not visible under joined
    r.msg(A, "n2")
    r.member(A, b2, "invite")          # invited only, under joined
    h = hv(r, "invited")               # judged by the new setting: visible to hs2
    r.msg(A, "n3")
    r.make("m.room.history_visibility", b2, {"history_visibility": "world_readable"},
           state_key="", rejected=True)  # b2 is not joined: rejected, no effect
    r.msg(A, "n4")
    r.member(A, b3, "ban")
    r.msg(A, "n5")
    r.redaction(A, h)                  # the redacted copy keeps history_visibility
    r.applied = {h}
    r.msg(A, "n6")
    r.make("m.room.join_rules", A, {"join_rule": "knock"}, state_key="")
    if r.v >= 7:
        r.member(D, D, "knock")        # a knock is neither joined nor invited
        r.msg(A, "n7")
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    hv(r, "joined")
    # two branches: one has hs2 join, the other hs4 (invite then join)
    fork = r.last
    r.join(b2)
    r.msg(b2, "branch b")
    left = r.last
    st_left = dict(r.state)
    r.last = fork
    r.state = dict(r.after[fork])
    r.member(A, D, "invite")
    r.join(D)
    r.msg(D, "branch d")
    right = r.last
    # merge: each branch changed keys the other did not (state resolution
    # keeps both branches' changes)
    merged = dict(st_left)
    merged.update({k: e for k, e in r.state.items() if r.after[fork].get(k) != e})
    r.state = merged
    r.msg(A, "merged", prev=[left, right])
    r.member(A, C, "invite")
    r.join(C)
    r.member(A, E, "invite")
    r.join(E)
    r.msg(A, "end")
    return r


def visible(r, eid, server):
    st = r.after[eid]
    hvid = st.get(("m.room.history_visibility", ""))
    vis = r.by_id[hvid]["content"].get("history_visibility", "shared") if hvid else "shared"
    if vis not in ("invited", "joined"):
        return True
    for (t, sk), mid in st.items():
        if t != "m.room.member" or sk.split(":", 1)[1] != server:
            continue
        m = r.by_id[mid]["content"]["membership"]
        if m == "join" or (m == "invite" and vis == "invited"):
            return True
    return False


def expected_copy(r, eid, server):
    ev = r.by_id[eid]
    if eid in getattr(r, "applied", ()):
        return redact(ev, r.version)
    return ev if visible(r, eid, server) else redact(ev, r.version)


def id_of(r, pdu):
    if r.v <= 2:
        return pdu["event_id"]
    h = reference_hash(pdu, r.version)
    return "$" + (b64(h) if r.v == 3 else b64u(h))


@pytest.fixture(scope="module")
def rooms(build_env, postgres, workdir):
    keys = Keys()
    rs = {v: build(keys, v) for v in VERSIONS}
    rs.update({"m" + v: build_multi(keys, v) for v in VERSIONS})
    keys.get("hs9.example")
    import_rooms(build_env, postgres, workdir, "t902", list(rs.values()), keys)
    return keys, rs


@pytest.fixture(scope="module")
def fed(httpd_factory, postgres, signing_key, backend, rooms):
    yield from serve(httpd_factory, postgres, signing_key, backend, rooms[0], "httpd-055",
                     extra="MatrixFedBackfillLimit 1000\nMatrixFedMissingEventsLimit 1000")


def describe(r, eid):
    ev = r.by_id[eid]
    return f"{ev['type']} {ev['sender']} {json.dumps(ev['content'])[:60]}"


@pytest.mark.parametrize("v", VERSIONS + ["m" + v for v in VERSIONS])
@pytest.mark.parametrize("server", SERVERS)
def test_055_001_event(rooms, fed, v, server):
    r = rooms[1][v]
    wrong = []
    for eid, _ in r.events:
        resp = fed.event(server, r.room_id, eid)
        if eid in r.rejected:
            assert resp.status == 404, (describe(r, eid), resp)
            continue
        assert resp.status == 200, (describe(r, eid), resp)
        got = resp.json["pdus"][0]
        want = expected_copy(r, eid, server)
        if got != want:
            wrong.append(f"{describe(r, eid)}: expected "
                         f"{'whole' if want is r.by_id[eid] else 'redacted'}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("v", VERSIONS + ["m" + v for v in VERSIONS])
@pytest.mark.parametrize("server", SERVERS)
def test_055_002_backfill_and_gme(rooms, fed, v, server):
    r = rooms[1][v]
    last = r.events[-1][0]
    resp = fed.backfill(server, r.room_id, last)
    assert resp.status == 200, resp
    pdus = resp.json["pdus"]
    assert len(pdus) == len(r.events) - len(r.rejected)
    wrong = [describe(r, id_of(r, p)) for p in pdus
             if p != expected_copy(r, id_of(r, p), server)]
    assert not wrong, "backfill:\n" + "\n".join(wrong)
    resp = fed.gme(server, r.room_id, last)
    assert resp.status == 200, resp
    pdus = resp.json["events"]
    assert len(pdus) == len(r.events) - 1 - len(r.rejected)
    wrong = [describe(r, id_of(r, p)) for p in pdus
             if p != expected_copy(r, id_of(r, p), server)]
    assert not wrong, "get_missing_events:\n" + "\n".join(wrong)


def test_055_003_not_in_room(rooms, fed):
    r = rooms[1]["10"]
    resp = fed.event("hs9.example", r.room_id, r.events[-1][0])
    assert resp.status == 403, resp
