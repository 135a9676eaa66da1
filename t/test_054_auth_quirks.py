# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Rooms as homeservers produce them, in room versions 1-11, built
and signed here (mxftest/vbuilder.py), imported with matrix-fed import and
read back through httpd. Each test states, from the spec's authorization
rules of the room version (and the reference homeserver where the spec leaves
a choice), which events are accepted; the module must store exactly those as
accepted (the others rejected, never served: /event 404), and serve the
accepted ones."""
import pytest

from mxftest.vroom import db_rejected, db_unverified, FED, import_rooms, serve
from mxftest.matrix import q
from mxftest.vbuilder import Keys, VRoom

VERSIONS = [str(v) for v in range(1, 12)]
A = "@admin:hs1.example"
B = "@bob:hs2.example"
C = "@carol:hs3.example"
D = "@dave:hs4.example"


def base(r, join_rule="public", hv="shared", pl=None):
    r.create(A)
    r.join(A)
    r.make("m.room.power_levels", A, pl or {"users": {A: 100}}, state_key="")
    r.make("m.room.join_rules", A, {"join_rule": join_rule}, state_key="")
    r.make("m.room.history_visibility", A, {"history_visibility": hv}, state_key="")


# ---------------------------------------------------------------- rooms

def room_power_levels(keys, v):
    """Levels absent (defaults), as strings (v1-v9), floats (v1-v5), per-type
    overrides and notifications."""
    r = VRoom(v, keys, f"!pl{v}:hs1.example")
    base(r)                                   # users_default/events_default/state_default absent
    r.join(B)
    r.join(C)
    r.make("m.room.topic", B, {"topic": "t"}, state_key="", rejected=True)   # 0 < 50
    r.msg(B, "hello")                                                        # 0 >= 0
    n = int(v)
    if n <= 5:
        bob, name_lvl, msg_lvl = 50.9, "60", 10.5
    else:
        bob, name_lvl, msg_lvl = "50", "60", "10"
    pl2 = {"users": {A: 100, B: bob}, "events": {"m.room.name": name_lvl,
                                                 "m.room.message": msg_lvl},
           "state_default": "40", "notifications": {"room": "20"}}
    strict = n >= 10
    r.make("m.room.power_levels", A, pl2, state_key="", rejected=strict)
    r.make("m.room.topic", B, {"topic": "t2"}, state_key="", rejected=strict)  # 50 >= 40
    r.make("m.room.name", B, {"name": "n"}, state_key="", rejected=True)        # 50 < 60
    r.msg(C, "carol", rejected=not strict)                                      # 0 < 10
    # bob changes notifications (v6+: checked like events): 20 -> 30, within his 50
    pl3 = dict(pl2, notifications={"room": 30})
    r.make("m.room.power_levels", B, pl3, state_key="", rejected=strict)
    # bob raises notifications above his own level: rejected from v6 on (10.5), and
    # in v10+ he has no power anyway
    pl4 = dict(pl3, notifications={"room": 60})
    r.make("m.room.power_levels", B, pl4, state_key="", rejected=(n >= 6 or strict))
    # an integer PL in every version: bob 50, state_default 50 absent, events absent
    r.make("m.room.power_levels", A, {"users": {A: 100, B: 50}, "kick": 75}, state_key="")
    r.make("m.room.topic", B, {"topic": "t3"}, state_key="")                 # 50 >= 50
    r.member(B, C, "leave", rejected=True)                                   # kick 75 > 50
    r.member(A, C, "leave")                                                  # admin kicks carol
    r.msg(B, "end")
    return r


def room_memberships(keys, v):
    """invite/reject, leave/rejoin, ban/unban, kick, knock (v7+), restricted
    (v8+), knock_restricted (v10+)."""
    n = int(v)
    r = VRoom(v, keys, f"!mb{v}:hs1.example")
    base(r, join_rule="invite")
    r.join(B, rejected=True)                 # not invited
    r.member(A, B, "invite")
    r.member(B, B, "leave")                  # rejects the invite
    r.join(B, rejected=True)                 # no longer invited
    r.member(A, B, "invite")
    r.join(B)
    r.member(B, B, "leave")
    r.join(B, rejected=True)                 # invite-only, left
    r.member(A, B, "invite")
    r.join(B)                                # rejoin after invite
    r.member(A, B, "ban")
    r.join(B, rejected=True)                 # banned
    r.member(A, B, "invite", rejected=True)  # cannot invite a banned user
    r.member(A, B, "leave")                  # unban
    r.member(A, C, "invite")
    r.member(C, C, "join")
    r.member(A, C, "leave")                  # kick
    r.member(C, C, "join", rejected=True)
    # knock
    r.make("m.room.join_rules", A, {"join_rule": "knock"}, state_key="", rejected=False)
    r.member(D, D, "knock", rejected=n < 7)  # knock membership unknown before v7
    r.member(D, D, "leave", rejected=n < 7)  # retracts the knock (v7+)
    r.member(D, D, "knock", rejected=n < 7)
    r.member(A, D, "invite")                 # accepting the knock
    r.join(D, rejected=n < 7)                # v1-v6: "knock" is no join rule: nobody joins
    # restricted (v8+): join_authorised_via_users_server
    allow = [{"type": "m.room_membership", "room_id": "!other:hs1.example"}]
    r.make("m.room.join_rules", A, {"join_rule": "restricted", "allow": allow}, state_key="")
    E = "@erin:hs5.example"
    # unknown join rule before v8: nobody may join uninvited
    r.join(E, c={"join_authorised_via_users_server": A}, rejected=n < 8,
           sign_extra=["hs1.example"] if n >= 8 else [])
    F = "@frank:hs5.example"
    # authorised by a user who is not joined (C was kicked): rejected
    r.join(F, c={"join_authorised_via_users_server": C}, rejected=True,
           sign_extra=["hs3.example"] if n >= 8 else [])
    # authorised by a user without the invite level
    r.make("m.room.power_levels", A, {"users": {A: 100}, "invite": 10}, state_key="")
    r.join(F, c={"join_authorised_via_users_server": D}, rejected=True,
           sign_extra=["hs4.example"] if n >= 8 else [])
    # knock_restricted (v10+): both knocking and restricted joins
    r.make("m.room.join_rules", A, {"join_rule": "knock_restricted", "allow": allow},
           state_key="")
    G = "@gina:hs6.example"
    r.member(G, G, "knock", rejected=n < 10)
    r.join(F, c={"join_authorised_via_users_server": A}, rejected=n < 10,
           sign_extra=["hs1.example"] if n >= 8 else [])
    r.msg(A, "end")
    return r


@pytest.fixture(scope="module")
def rooms(build_env, postgres, workdir):
    keys = Keys()
    out = {}
    for v in VERSIONS:
        out[("pl", v)] = room_power_levels(keys, v)
        out[("mb", v)] = room_memberships(keys, v)
    import_rooms(build_env, postgres, workdir, "t901", list(out.values()), keys)
    return keys, out


@pytest.fixture(scope="module")
def fed(httpd_factory, postgres, signing_key, backend, rooms):
    yield from serve(httpd_factory, postgres, signing_key, backend, rooms[0], "httpd-054",
                     extra="MatrixFedBackfillLimit 1000\nMatrixFedMissingEventsLimit 1000")


def label(r, eid):
    ev = r.by_id[eid]
    i = [e for e, _ in r.events].index(eid)
    return f"#{i} {ev['type']} {ev['sender']} {ev.get('state_key', '')} " \
           f"{ev['content'].get('membership', '')}"


@pytest.mark.parametrize("kind", ["pl", "mb"])
@pytest.mark.parametrize("v", VERSIONS)
def test_054_001_accepted_exactly(rooms, postgres, fed, kind, v):
    keys, all_rooms = rooms
    r = all_rooms[(kind, v)]
    got = db_rejected(postgres, r.room_id)
    assert not db_unverified(postgres, r.room_id)
    want = r.rejected
    wrong = [f"{label(r, e)}: expected {'rejected' if e in want else 'accepted'}"
             f"{' (' + got[e] + ')' if e in got else ''}"
             for e, _ in r.events if (e in want) != (e in got)]
    assert not wrong, "\n".join(wrong)
    # end to end: accepted events are served, rejected ones are not
    for eid, _ in r.events:
        resp = fed.event("hs1.example", r.room_id, eid)
        assert resp.status == (404 if eid in want else 200), (label(r, eid), resp)


# Before room version 10 the reference homeserver reads every power level with
# Python's int(): digit groups with underscores and leading zeroes are levels
# there, and so they are here (non-ASCII digits, which int() also takes, are
# not read here: README).
INT_CASES = [("5_0", "u"), ("000_050", "z")]


def int_levels_room(keys, v, value, tag):
    r = VRoom(v, keys, f"!pyint{tag}{v}:hs1.example")
    r.create(A)
    r.join(A)
    r.make("m.room.power_levels", A, {"users": {A: 100}}, state_key="")
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    r.join(B)
    r.make("m.room.power_levels", A, {"users": {A: 100, B: value}}, state_key="")
    # bob's level is int(value) >= 50: he may set the topic
    r.make("m.room.topic", B, {"topic": "t"}, state_key="")
    r.msg(A, "end")
    return r


@pytest.fixture(scope="module")
def int_rooms(build_env, postgres, workdir):
    keys = Keys()
    out = {(v, t): int_levels_room(keys, v, val, t) for v in ["3", "9"] for val, t in INT_CASES}
    import_rooms(build_env, postgres, workdir, "pyint", list(out.values()), keys)
    return out


@pytest.mark.parametrize("v", ["3", "9"])
@pytest.mark.parametrize("tag", [t for _, t in INT_CASES])
def test_054_002_levels_as_python_int_reads_them(int_rooms, postgres, v, tag):
    assert db_rejected(postgres, int_rooms[(v, tag)].room_id) == {}
