# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Room version 12 authorization, on rooms built by hand from the spec
(content/rooms/v12.md) and the reference homeserver (Synapse event_auth.py,
rust/src/events/formats/v4.rs), independently of gen-room.

Each event is stated accepted or rejected with the rule that decides it."""
import json

import pytest

from mxftest.v12util import (db_events, db_event, db_room, import_lines, import_ok,
                             verdict_diff)
from mxftest.vbuilder12 import SHARED_KEYS, Keys, V12Room, event_id12

A = "@alice:hs1.example"
B = "@bob:hs2.example"
C = "@carol:hs3.example"
D = "@dave:hs4.example"
E = "@erin:hs5.example"
MAXI = 2 ** 53 - 1      # the largest integer canonical JSON allows


def room_creators(keys):
    """Creators (sender + additional_creators) have infinite power level."""
    r = V12Room(keys, ts0=1700000000000)
    r.create(A, additional_creators=[C])
    r.join(A, label="A joins (5.3.1: only prev is create, A its sender)")
    assert r.by_id[r.last]["auth_events"] == []
    r.pl(A, {"users": {B: 50}}, label="PL by A")
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    r.make("m.room.history_visibility", A, {"history_visibility": "shared"}, state_key="")
    r.join(B)
    r.join(C, label="C (additional creator, other server) joins")
    r.join(D)
    r.pl(A, {"users": {A: 100, B: 50}}, rejected=True,
         label="PL listing the create sender in users (10.4)")
    r.pl(A, {"users": {C: 100, B: 50}}, rejected=True,
         label="PL listing an additional creator in users (10.4)")
    r.pl(C, {"users": {B: 100}},
         label="PL by C, additional creator: infinite power (users_default 0 otherwise)")
    r.member(B, C, "leave", rejected=True,
             label="B (100) kicks creator C: C's level is not below B's (5.5.4)")
    r.member(B, A, "ban", rejected=True, label="B (100) bans creator A (5.6.2)")
    r.member(A, C, "leave", rejected=True,
             label="creator A kicks creator C: infinite is not below infinite (5.5.4)")
    r.member(C, B, "leave", label="creator C kicks B (100)")
    r.pl(A, {"users": {D: MAXI}, "ban": MAXI, "kick": MAXI},
         label="PL by A with levels 2^53-1 (below a creator's)")
    r.member(A, D, "leave", label="creator A kicks D at 2^53-1: D is below A (5.5.4)")
    r.join(D, label="D rejoins (public)")
    r.member(D, C, "ban", rejected=True, label="D (2^53-1) bans creator C (5.6.2)")
    r.member(D, B, "ban", label="D (2^53-1 >= ban 2^53-1) bans B (0)")
    r.pl(D, {"users": {D: MAXI, E: 1}, "ban": MAXI, "kick": MAXI},
         label="D adds E at 1")
    r.member(A, A, "leave", label="creator A leaves")
    r.msg(A, "after leaving", rejected=True, label="A not joined (6), infinite power aside")
    r.make("m.room.topic", C, {"topic": "t"}, state_key="", label="C sets the topic")
    r.join(E)
    r.make("m.room.topic", E, {"topic": "t2"}, state_key="", rejected=True,
           label="E (1) below state_default 50 (8)")
    r.msg(E, "hello")
    r.make("m.room.message", E, {"body": "x"}, auth=[r.state[("m.room.member", E)],
                                                      r.state[("m.room.power_levels", "")],
                                                      r.state[("m.room.join_rules", "")]],
           rejected=True, label="message citing join_rules (3.2)")
    r.make("m.room.message", E, {"body": "y"},
           auth=[r.state[("m.room.member", E)], r.state[("m.room.power_levels", "")],
                 r.state[("m.room.member", E)]],
           rejected=True, label="auth_events with a duplicate entry (3.1)")
    r.msg(C, "end")
    return r


def room_no_pl(keys):
    """No power levels event: creators (also additional ones) have infinite
    power, everybody else 0; state_default is 50. A 'creator' key in the create
    content means nothing in v11+."""
    r = V12Room(keys, ts0=1700000100000)
    create = r.create(A, additional_creators=[C], extra_content={"creator": B})
    r.join(C, rejected=True, label="additional creator joins first: no join rule (5.3.7)")
    r.goto(create)
    r.join(A, prev=[create], label="A joins (5.3.1)")
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    r.join(C)
    r.join(B)
    r.make("m.room.name", C, {"name": "by C"}, state_key="",
           label="C (additional creator, no PL event) sets name: infinite >= 50")
    r.make("m.room.name", B, {"name": "by B"}, state_key="", rejected=True,
           label="B named 'creator' in the create content: level 0 < 50 (8)")
    r.msg(B, "hi", label="B message (0 >= 0)")
    r.member(C, B, "ban", label="C bans B without PL event (infinite >= 50)")
    r.msg(A, "end")
    return r


def room_federate(keys):
    """m.federate false: only the creator's server may send (rule 4)."""
    r = V12Room(keys, ts0=1700000200000)
    r.create(A, extra_content={"m.federate": False})
    r.join(A)
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    r.join(B, rejected=True, label="B of hs2 joins an unfederated room (4)")
    r.join("@alf:hs1.example", label="a user of hs1 joins")
    r.msg(A, "end")
    return r


def room_bad_creators(keys, value, ts):
    r = V12Room(keys, ts0=ts)
    r.create(A, additional_creators=value, rejected=True,
             label=f"additional_creators {value!r} (1.4)")
    r.join(A, rejected=True, label="join in a room whose create event is rejected (2)")
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="", rejected=True,
           label="state in a room whose create event is rejected (2)")
    return r


BAD_CREATORS = [("string", "@carol:hs3.example"), ("not-user", ["carol"]),
                ("number", [1]), ("no-server", ["@carol"]), ("object", [{"u": C}])]


def room_empty_creators(keys):
    r = V12Room(keys, ts0=1700000400000)
    r.create(A, additional_creators=[], label="additional_creators [] (an array of strings)")
    r.join(A)
    r.msg(A, "end")
    return r


@pytest.fixture(scope="module")
def rooms(build_env, postgres, workdir):
    keys = SHARED_KEYS
    out = {"creators": room_creators(keys), "no_pl": room_no_pl(keys),
           "federate": room_federate(keys), "empty": room_empty_creators(keys)}
    lines = []
    for r in out.values():
        lines += r.lines()
    import_ok(build_env, postgres, workdir, "auth", lines, keys)
    return keys, out


@pytest.mark.parametrize("name", ["creators", "no_pl", "federate", "empty"])
def test_076_001_verdicts(rooms, postgres, name):
    r = rooms[1][name]
    assert db_room(postgres, r.room_id) == "12"
    got = db_events(postgres, r.room_id)
    assert set(got) == {e for e, _ in r.events}, "event IDs differ"
    wrong = verdict_diff(r, got)
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("tag,value", BAD_CREATORS)
def test_076_002_bad_additional_creators(build_env, postgres, workdir, tag, value):
    """Rule 1.4: additional_creators not an array of valid user IDs: the create
    event is rejected, and so is every event of the room (rule 2). The import
    may also refuse the room's lines (a bad line): either way nothing of the
    room may be accepted."""
    keys = SHARED_KEYS
    r = room_bad_creators(keys, value, 1700000300000 + hash(tag) % 1000)
    p = import_lines(build_env, postgres, workdir, f"bad-{tag}", r.lines(), keys)
    if p.returncode != 0:
        assert db_room(postgres, r.room_id) is None
        return
    got = db_events(postgres, r.room_id)
    accepted = [r.labels[e] for e, v in got.items() if v == ""]
    assert not accepted, accepted


def test_076_003_create_in_auth_events(build_env, postgres, workdir):
    """Rule 3.2 (v12): the create event must not be selected for auth_events;
    an event that lists it is rejected (Synapse refuses such a PDU outright).
    Not accepted either way."""
    keys = SHARED_KEYS
    r = V12Room(keys, ts0=1700000500000)
    r.create(A)
    r.join(A)
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    good = r.last
    bad = r.make("m.room.topic", A, {"topic": "x"}, state_key="",
                 auth=[r.create_id, r.state[("m.room.member", A)]], rejected=True,
                 label="topic listing the create event in auth_events (3.2)")
    r.goto(good)
    p = import_lines(build_env, postgres, workdir, "create-in-auth", r.lines(), keys)
    if p.returncode != 0:
        # refused as a bad line: the rest must then be importable without it
        assert str(len(r.events)) in p.stderr or "auth" in p.stderr, p.stderr
        return
    got = db_events(postgres, r.room_id)
    assert got.get(bad, "") != "", "an event listing the create event was accepted"


def test_076_004_create_with_room_id(build_env, postgres, workdir):
    """Rule 1.2 (v12): a create event with a room_id is rejected; events of the
    room it would make ("!" + its hash) are rejected by rule 2; nothing may be
    accepted under either room ID."""
    keys = SHARED_KEYS
    r = V12Room(keys, ts0=1700000600000)
    cid = r.create(A, extra={"room_id": "!legacy:hs1.example"}, rejected=True)
    r.join(A, rejected=True)
    r.msg(A, "x", rejected=True)
    p = import_lines(build_env, postgres, workdir, "create-room-id", r.lines(), keys)
    if p.returncode != 0:
        return
    for eid, _ in r.events:
        got = db_event(postgres, eid)
        assert got is None or got[1] != "", (r.labels[eid], got)


def test_076_005_auth_event_of_another_room(build_env, postgres, workdir):
    """Rule 3.4: an auth event whose room_id differs from the event's: reject.
    Two v12 rooms; an event of room 2 cites room 1's power levels."""
    keys = SHARED_KEYS
    r1 = V12Room(keys, ts0=1700000700000)
    r1.create(A)
    r1.join(A)
    r1.pl(A, {"users": {}, "state_default": 0})
    r1.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    r1.join(B)
    r2 = V12Room(keys, ts0=1700000800000)
    r2.create(A)
    r2.join(A)
    r2.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    r2.join(B)
    bad = r2.make("m.room.topic", B, {"topic": "x"}, state_key="",
                  auth=[r1.state[("m.room.power_levels", "")], r2.state[("m.room.member", B)]],
                  rejected=True, label="cites another room's PL (3.4)")
    p = import_lines(build_env, postgres, workdir, "cross-room", r1.lines() + r2.lines(), keys)
    if p.returncode != 0:
        pytest.fail("import refused: " + p.stderr)
    got = db_events(postgres, r2.room_id)
    assert got[bad] != "", "an event citing another room's power levels was accepted"
    assert not verdict_diff(r2, got), verdict_diff(r2, got)


def test_076_006_event_ids_and_room_id_match(rooms, build_env, workdir):
    """The module's verify-event recomputes each ID as ours; the room ID is the
    create event's ID with '!' for '$'."""
    r = rooms[1]["creators"]
    assert r.room_id == "!" + r.create_id[1:]
    assert ":" not in r.room_id
    assert "room_id" not in r.by_id[r.create_id]
    for eid, ev in r.events:
        assert event_id12(ev) == eid


def test_076_007_extra_top_level_keys(build_env, postgres, workdir):
    """Top-level keys v11 redaction drops (origin, membership, prev_state, and
    any unknown key) are covered by the content hash but not the event ID:
    such events (older servers still send origin) keep the ID computed
    without them and are accepted."""
    keys = SHARED_KEYS
    r = V12Room(keys, ts0=1700000900000)
    extra = {"origin": "hs1.example", "prev_state": [], "x_custom": {"a": 1}}
    r.create(A, extra=dict(extra))
    r.join(A, extra=dict(extra, membership="join"))
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="", extra=dict(extra))
    r.join(B, extra={"origin": "hs2.example", "membership": "join"})
    r.msg(B, "hi", extra={"origin": "hs2.example", "unsigned": {"age": 5}})
    import_ok(build_env, postgres, workdir, "extra-keys", r.lines(), keys)
    got = db_events(postgres, r.room_id)
    assert not verdict_diff(r, got), verdict_diff(r, got)
    red = postgres.psql(postgres.DBNAME, "SELECT count(*) FROM mxf_events e JOIN mxf_rooms r"
                        f" USING (room_nid) WHERE r.room_id = '{r.room_id}'"
                        " AND e.redacted_because IS NOT NULL")
    assert red == "0", "events with extra keys taken as altered"
