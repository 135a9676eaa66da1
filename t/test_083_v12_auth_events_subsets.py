# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Room version 12 events whose auth_events leave out what the auth events
selection would give (the rules are checked against the auth events, and
again against the state before the event: server-server API "checks
performed on receipt", steps 4 and 5). Without the create event in
auth_events the other entries still count."""
import pytest

from mxftest.v12util import db_events, import_ok, verdict_diff
from mxftest.vbuilder12 import SHARED_KEYS, V12Room

A = "@alice:hs1.example"
B = "@bob:hs2.example"
C = "@carol:hs3.example"


def build():
    r = V12Room(SHARED_KEYS, ts0=1770000000000)
    r.create(A, additional_creators=[C])
    r.join(A)
    r.pl(A, {"users": {B: 50}})
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    r.join(B)
    r.join(C)
    pl = r.state[("m.room.power_levels", "")]
    mb = r.state[("m.room.member", B)]
    ma = r.state[("m.room.member", A)]
    r.msg(B, "no auth events", auth=[], rejected=True,
          label="B's message with auth_events []: not joined per its auth events (6)")
    r.msg(B, "member only", auth=[mb], label="B's message citing his join only (0 >= 0)")
    r.make("m.room.topic", B, {"topic": "x"}, state_key="", auth=[mb], rejected=True,
           label="B's topic without the PL: level 0 < 50 per its auth events (8)")
    r.make("m.room.topic", A, {"topic": "y"}, state_key="", auth=[ma],
           label="creator A's topic citing only his join: infinite")
    r.make("m.room.topic", B, {"topic": "z"}, state_key="", auth=[pl, mb],
           label="B's topic with PL (50 >= 50)")
    r.join("@dan:hs4.example", auth=[], rejected=True,
           label="join with auth_events []: no join rule per its auth events (5.3.7)")
    r.join("@dan:hs4.example", label="the same join with its join rules")
    r.msg(A, "end")
    return r


def other_room_create():
    r = V12Room(SHARED_KEYS, ts0=1770000100000)
    r.create(A)
    r.join(A)
    return r


@pytest.fixture(scope="module")
def rooms(build_env, postgres, workdir):
    r = build()
    o = other_room_create()
    r.make("m.room.message", A, {"body": "cites another room's create"},
           auth=[r.state[("m.room.member", A)], o.create_id], rejected=True,
           label="A's message citing another v12 room's create event (3.2, 3.4)")
    r.msg(A, "tip")
    import_ok(build_env, postgres, workdir, "subsets", o.lines() + r.lines(), SHARED_KEYS)
    return r


def test_083_001_verdicts(rooms, postgres):
    got = db_events(postgres, rooms.room_id)
    wrong = verdict_diff(rooms, got)
    assert not wrong, "\n".join(wrong)


def test_083_002_other_create_events(build_env, postgres, workdir):
    """Rule 1 applies to every event of type m.room.create (Synapse
    check_state_independent_auth_rules: `if event.type == EventTypes.Create:
    _check_create(event)`): one with another state_key, or none, in the
    room has prev_events (1.1) and a room_id (1.2): rejected, even when a
    creator sends it."""
    r = V12Room(SHARED_KEYS, ts0=1770000200000)
    r.create(A)
    r.join(A)
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    r.make("m.room.create", A, {"room_version": "12"}, state_key="x", rejected=True,
           label="m.room.create with state_key 'x' (1.1, 1.2)")
    r.make("m.room.create", A, {"room_version": "12"}, rejected=True,
           label="m.room.create without state_key (1.1, 1.2)")
    r.msg(A, "end")
    import_ok(build_env, postgres, workdir, "other-creates", r.lines(), SHARED_KEYS)
    got = db_events(postgres, r.room_id)
    wrong = verdict_diff(r, got)
    assert not wrong, "\n".join(wrong)


def test_083_003_first_power_levels_listing_a_creator(build_env, postgres, workdir):
    """Rule 10.4 comes before 10.5 ("no previous m.room.power_levels: allow"):
    the room's first power levels event may not list a creator either
    (Synapse _check_power_levels checks the creators before it looks for the
    current power levels)."""
    r = V12Room(SHARED_KEYS, ts0=1770000300000)
    r.create(A, additional_creators=[C])
    r.join(A)
    r.pl(A, {"users": {A: 100}}, rejected=True, label="first PL lists the sender of create")
    r.pl(A, {"users": {C: 100}}, rejected=True, label="first PL lists an additional creator")
    r.pl(A, {"users": {B: 100}}, label="first PL without creators")
    r.msg(A, "end")
    import_ok(build_env, postgres, workdir, "first-pl", r.lines(), SHARED_KEYS)
    got = db_events(postgres, r.room_id)
    wrong = verdict_diff(r, got)
    assert not wrong, "\n".join(wrong)
