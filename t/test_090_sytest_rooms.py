# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The inbound federation read-path tests of SyTest (tests/50federation/
32room-getevent.pl, 34room-backfill.pl, 36state.pl) and Complement
(tests/federation_room_get_missing_events_test.go TestInboundCanReturnMissingEvents,
tests/federation_event_auth_test.go TestEventAuth), redone black-box against
the module. Rooms are built as those suites build them on the homeserver under
test (a creator on hs1.example, a public_chat preset, messages, visibility
changes, a remote user joining from the test's own server), signed by hand
(mxftest/vbuilder.py), imported with matrix-fed import, then queried with
X-Matrix requests as the remote server. Assertions: what the original test
asserts, plus what the spec requires."""
import copy
import hashlib
import json

import canonicaljson
import pytest
import signedjson.key
import signedjson.sign

from conftest import SERVER_NAME
from mxftest.matrix import q
from mxftest.vbuilder import Keys, VRoom, b64, redact
from mxftest.vroom import import_rooms, serve

FED = "/_matrix/federation/v1"
ALICE = "@alice:hs1.example"
CHARLIE = "@charlie:remote.example"      # the test suite's own server user
REMOTE = "remote.example"


def synapse_room(keys, room_id, version="10", preset="public_chat", creator=ALICE):
    """What a Synapse createRoom with @preset writes (room/creation handler):
    create, the creator's join, power levels, join rules, history
    visibility (and guest access for private_chat)."""
    r = VRoom(version, keys, room_id)
    r.create(creator)
    r.join(creator)
    r.pl(creator, {"users": {creator: 100}, "users_default": 0, "events_default": 0,
                   "state_default": 50, "ban": 50, "kick": 50, "redact": 50,
                   "invite": 50 if preset == "public_chat" else 0,
                   "events": {"m.room.name": 50, "m.room.power_levels": 100,
                              "m.room.history_visibility": 100,
                              "m.room.canonical_alias": 50, "m.room.avatar": 50,
                              "m.room.tombstone": 100, "m.room.server_acl": 100,
                              "m.room.encryption": 100}})
    r.make("m.room.join_rules", creator,
           {"join_rule": "public" if preset == "public_chat" else "invite"}, state_key="")
    r.make("m.room.history_visibility", creator, {"history_visibility": "shared"},
           state_key="")
    if preset == "private_chat":
        r.make("m.room.guest_access", creator, {"guest_access": "can_join"}, state_key="")
    return r


def content_hash_ok(pdu):
    ev = {k: v for k, v in pdu.items() if k not in ("hashes", "signatures", "unsigned")}
    h = b64(hashlib.sha256(canonicaljson.encode_canonical_json(ev)).digest())
    return h == pdu["hashes"]["sha256"]


def verify_sig(keys, pdu, version):
    server = pdu["sender"].split(":", 1)[1]
    red = redact(pdu, version)
    red.pop("unsigned", None)
    signedjson.sign.verify_signed_json(red, server,
                                       signedjson.key.get_verify_key(keys.get(server)))


def is_redacted_copy(keys, room, eid, pdu):
    """Complement's ev.Redacted(): the served PDU is the event's redacted
    form (hashes and signatures kept, so the content hash no longer matches)."""
    orig = room.by_id[eid]
    if redact(orig, room.version) == orig:
        return True                     # nothing to take away
    verify_sig(keys, pdu, room.version)
    assert pdu["hashes"] == orig["hashes"]
    return pdu == redact(orig, room.version) and not content_hash_ok(pdu)


def eid_of(room, pdu):
    if room.v <= 2:
        return pdu["event_id"]
    for eid, ev in room.events:
        if ev["hashes"] == pdu["hashes"] and ev["type"] == pdu["type"] \
                and ev["depth"] == pdu["depth"] and ev["origin_server_ts"] == pdu["origin_server_ts"]:
            return eid
    raise AssertionError(f"unknown PDU {pdu}")


# ------------------------------------------------------------------ rooms

VISIBILITIES = ["world_readable", "shared", "invited", "joined"]
GME_VERSIONS = ["10", "11", "1", "5"]      # Complement's default (10), and others


def gme_room(keys, vis, version="10"):
    """TestInboundCanReturnMissingEvents: alice creates a public_chat room,
    sets history_visibility (Synapse drops a no-op change to shared), sends a
    message; charlie joins over federation."""
    r = synapse_room(keys, f"!gme{vis.replace('_', '')}v{version}:hs1.example", version=version)
    if vis != "shared":
        r.make("m.room.history_visibility", ALICE, {"history_visibility": vis}, state_key="")
    r.msg(ALICE, "1")
    r.join(CHARLIE)
    return r


def event_auth_room(keys):
    """TestEventAuth: charlie joins, leaves, joins again; alice sets the
    join rule to invite."""
    r = synapse_room(keys, "!eventauth:hs1.example")
    first_join = r.join(CHARLIE)
    leave = r.member(CHARLIE, CHARLIE, "leave")
    rejoin = r.join(CHARLIE)
    jr = r.make("m.room.join_rules", ALICE, {"join_rule": "invite"}, state_key="")
    return r, {"first_join": first_join, "leave": leave, "rejoin": rejoin, "jr": jr}


def backfill_room_v1(keys):
    """'Inbound federation can backfill events': room version 1, ten messages,
    then the test server's user joins."""
    r = synapse_room(keys, "!backfill1:hs1.example", version="1")
    for i in range(1, 11):
        r.msg(ALICE, f"Message {i} here")
    join = r.join(CHARLIE)
    return r, join


def private_and_public(keys, version, tag):
    """'Backfill / Getting state (IDs) checks the events requested belong to
    the room': a private room the test server never joins, with a message,
    and a public room it joins."""
    priv = synapse_room(keys, f"!priv{tag}:hs1.example", version=version,
                        preset="private_chat")
    priv_msg = priv.msg(ALICE, "Hello world")
    pub = synapse_room(keys, f"!pub{tag}:hs1.example", version=version)
    pub.join(CHARLIE)
    return priv, priv_msg, pub


def getevent_room(keys):
    """32room-getevent.pl: a federated room (public), charlie joined, then
    a message of the creator."""
    r = synapse_room(keys, "!getevent:hs1.example")
    member = r.join(CHARLIE)
    msg = r.msg(ALICE, "body1")
    return r, member, msg


@pytest.fixture(scope="module")
def world(build_env, postgres, workdir):
    keys = Keys()
    keys.get(REMOTE)
    w = {"keys": keys}
    w["gme"] = {(vis, v): gme_room(keys, vis, v) for vis in VISIBILITIES
                for v in GME_VERSIONS}
    w["event_auth"] = event_auth_room(keys)
    w["backfill_v1"] = backfill_room_v1(keys)
    w["belongs_v10"] = private_and_public(keys, "10", "b10")
    w["belongs_v1"] = private_and_public(keys, "1", "b1")
    w["getevent"] = getevent_room(keys)
    rooms = list(w["gme"].values()) + [w["event_auth"][0], w["backfill_v1"][0],
                                       w["belongs_v10"][0], w["belongs_v10"][2],
                                       w["belongs_v1"][0], w["belongs_v1"][2],
                                       w["getevent"][0]]
    import_rooms(build_env, postgres, workdir, "t090", rooms, keys)
    return w


@pytest.fixture(scope="module")
def fed(httpd_factory, postgres, signing_key, backend, world):
    yield from serve(httpd_factory, postgres, signing_key, backend, world["keys"], "httpd-090")


def ok_json(r):
    assert r.status == 200, r
    assert r.header("Content-Type") == "application/json", r.headers
    return r.json


# ------------------------------------------------------------------ Complement gme

@pytest.mark.parametrize("version", GME_VERSIONS)
@pytest.mark.parametrize("vis", VISIBILITIES)
def test_090_001_inbound_can_return_missing_events(world, fed, vis, version):
    """Complement TestInboundCanReturnMissingEvents / SyTest 'Inbound
    federation can return missing events for $vis visibility'."""
    keys, r = world["keys"], world["gme"][(vis, version)]
    create = r.state[("m.room.create", "")]
    latest = r.state[("m.room.member", CHARLIE)]
    body = ok_json(fed.post(REMOTE, f"{FED}/get_missing_events/{q(r.room_id)}", {
        "earliest_events": [create], "latest_events": [latest], "limit": 10,
        "min_depth": 1}))
    events = body["events"]
    assert events, "no events returned from /get_missing_events"
    ids = [eid_of(r, e) for e in events]
    # Expected: every event between create and charlie's join, oldest first.
    expect = [eid for eid, _ in r.events[1:-1]]
    assert ids == expect
    types = [e["type"] for e in events]
    want = ["m.room.member", "m.room.power_levels", "m.room.join_rules",
            "m.room.history_visibility"]
    want += [] if vis == "shared" else ["m.room.history_visibility"]
    want += ["m.room.message"]
    assert types == want
    assert events[0]["state_key"] == ALICE
    for e in events:
        assert e["room_id"] == r.room_id
    msg_pdu, msg_id = events[-1], ids[-1]
    if vis in ("joined", "invited"):
        assert is_redacted_copy(keys, r, msg_id, msg_pdu), msg_pdu
        assert "body" not in msg_pdu["content"]
    else:
        assert msg_pdu["content"].get("msgtype") and msg_pdu["content"].get("body") == "1"
        assert msg_pdu == r.by_id[msg_id]


# ------------------------------------------------------------------ Complement TestEventAuth

def auth_chain(room, eids):
    seen, todo = set(), list(eids)
    while todo:
        e = todo.pop()
        for a in room.by_id[e]["auth_events"]:
            a = a if isinstance(a, str) else a[0]
            if a not in seen:
                seen.add(a)
                todo.append(a)
    return seen


def test_090_002_event_auth_returns_auth_events_of_join_rules(world, fed):
    """TestEventAuth 'returns auth events for the requested event'."""
    r, ids = world["event_auth"]
    body = ok_json(fed.get(REMOTE, f"{FED}/event_auth/{q(r.room_id)}/{q(ids['jr'])}"))
    got = [eid_of(r, e) for e in body["auth_chain"]]
    assert len(got) == len(set(got))
    assert set(got) == set(r.by_id[ids["jr"]]["auth_events"])
    assert set(got) == auth_chain(r, [ids["jr"]])


def test_090_003_event_auth_returns_the_auth_chain(world, fed):
    """TestEventAuth 'returns the auth chain for the requested event': the
    latest join's auth events and the earlier join and leave, nothing more
    (dendrite#2084: no auth chain of the current state)."""
    r, ids = world["event_auth"]
    body = ok_json(fed.get(REMOTE, f"{FED}/event_auth/{q(r.room_id)}/{q(ids['rejoin'])}"))
    got = [eid_of(r, e) for e in body["auth_chain"]]
    want = list(r.by_id[ids["rejoin"]]["auth_events"]) + [ids["first_join"], ids["leave"]]
    assert len(got) == len(want)          # Complement's own count (leave listed twice)
    assert set(want) <= set(got)
    assert set(got) == auth_chain(r, [ids["rejoin"]])
    assert ids["jr"] not in got and ids["rejoin"] not in got
    for e in body["auth_chain"]:
        assert e == r.by_id[eid_of(r, e)]           # served as signed


# ------------------------------------------------------------------ SyTest 32room-getevent

def test_090_010_inbound_can_return_events(world, fed):
    """SyTest 'Inbound federation can return events' (and the first half of
    'Inbound federation redacts events from erased users': erasure itself is
    out of the module's scope)."""
    r, member, msg = world["getevent"]
    body = ok_json(fed.get(REMOTE, f"{FED}/event/{q(member)}"))
    for k in ("origin", "origin_server_ts", "pdus"):
        assert k in body
    assert body["origin"] == SERVER_NAME
    assert isinstance(body["origin_server_ts"], int)
    [ev] = body["pdus"]
    for k in ("depth", "room_id", "sender", "state_key", "type"):
        assert ev[k] == r.by_id[member][k]
    assert ev == r.by_id[member]
    body = ok_json(fed.get(REMOTE, f"{FED}/event/{q(msg)}"))
    [ev] = body["pdus"]
    assert ev["content"]["body"] == "body1"


def test_090_011_inbound_can_return_events_v1_event_id(world, fed):
    """The v1/v2 leg of 'Inbound federation can return events': event_id kept."""
    r, _join = world["backfill_v1"]
    eid = r.state[("m.room.member", CHARLIE)]
    body = ok_json(fed.get(REMOTE, f"{FED}/event/{q(eid)}"))
    [ev] = body["pdus"]
    assert ev["event_id"] == eid


# ------------------------------------------------------------------ SyTest 34room-backfill

def test_090_020_inbound_can_backfill_events(world, fed):
    """SyTest 'Inbound federation can backfill events' (room version 1):
    v = the join's first prev event, limit 100."""
    r, join = world["backfill_v1"]
    v = r.by_id[join]["prev_events"][0][0]
    body = ok_json(fed.get(REMOTE, f"{FED}/backfill/{q(r.room_id)}?v={q(v)}&limit=100"))
    for k in ("origin", "pdus", "origin_server_ts"):
        assert k in body
    assert body["origin"] == SERVER_NAME
    events = body["pdus"]
    for e in events:
        assert "type" in e and "event_id" in e
    assert events[0]["event_id"] == v
    # Everything before the join, newest first (a line of history).
    assert [e["event_id"] for e in events] == [eid for eid, _ in r.events[:-1]][::-1]


@pytest.mark.parametrize("which", ["belongs_v10", "belongs_v1"])
def test_090_021_backfill_checks_events_belong_to_room(world, fed, which):
    """SyTest 'Backfill checks the events requested belong to the room':
    the private room's event asked of the public room gives 200 and no PDUs."""
    priv, priv_msg, pub = world[which]
    body = ok_json(fed.get(REMOTE, f"{FED}/backfill/{q(pub.room_id)}?v={q(priv_msg)}&limit=1"))
    assert body["origin"] == SERVER_NAME
    assert body["pdus"] == []


# ------------------------------------------------------------------ SyTest 36state

@pytest.mark.parametrize("endpoint", ["state", "state_ids"])
def test_090_030_inbound_can_get_state(world, fed, endpoint):
    """SyTest 'Inbound federation can get state for a room' / 'can get
    state_ids for a room': at the room's latest event, the state holds the
    create and power levels events; plus the spec: the state *before* the
    event and its whole auth chain."""
    r, member, msg = world["getevent"]
    body = ok_json(fed.get(REMOTE, f"{FED}/{endpoint}/{q(r.room_id)}?event_id={q(msg)}"))
    if endpoint == "state":
        assert set(body) == {"pdus", "auth_chain"}
        state = [eid_of(r, e) for e in body["pdus"]]
        chain = [eid_of(r, e) for e in body["auth_chain"]]
    else:
        assert set(body) == {"pdu_ids", "auth_chain_ids"}
        state, chain = body["pdu_ids"], body["auth_chain_ids"]
    assert r.state[("m.room.create", "")] in state
    assert r.state[("m.room.power_levels", "")] in state
    before = r.after[r.by_id[msg]["prev_events"][0]]
    assert sorted(state) == sorted(before.values())
    assert set(chain) == auth_chain(r, state)
    assert len(chain) == len(set(chain))


@pytest.mark.parametrize("endpoint", ["state", "state_ids"])
def test_090_031_state_requires_event_id(world, fed, endpoint):
    """SyTest 'Inbound federation of state(_ids) requires event_id as a
    mandatory paramater': /v1/state/notaroombutitdoesntmatter gives 400;
    and a real room without event_id 400 M_MISSING_PARAM."""
    r = fed.get(REMOTE, f"{FED}/{endpoint}/notaroombutitdoesntmatter")
    assert r.status == 400, r
    assert r.json["errcode"] in ("M_MISSING_PARAM", "M_INVALID_PARAM"), r.json
    room, _m, _msg = world["getevent"]
    r = fed.get(REMOTE, f"{FED}/{endpoint}/{q(room.room_id)}")
    assert r.status == 400, r
    assert r.json["errcode"] == "M_MISSING_PARAM", r.json


@pytest.mark.parametrize("endpoint", ["state", "state_ids"])
@pytest.mark.parametrize("which", ["belongs_v1", "belongs_v10"])
def test_090_032_state_checks_events_belong_to_room(world, fed, endpoint, which):
    """SyTest 'Getting state (IDs) checks the events requested belong to the
    room' (room version 1): M_NOT_FOUND."""
    priv, priv_msg, pub = world[which]
    r = fed.get(REMOTE, f"{FED}/{endpoint}/{q(pub.room_id)}?event_id={q(priv_msg)}")
    assert r.status == 404, r
    assert r.json["errcode"] == "M_NOT_FOUND", r.json


@pytest.mark.parametrize("which", ["belongs_v1", "belongs_v10"])
def test_090_033_event_auth_and_gme_check_events_belong_to_room(world, fed, which):
    """The same room binding for /event_auth and get_missing_events (spec
    digest: an event of another room is unknown, GHSA-27p5-4f45-gx76)."""
    priv, priv_msg, pub = world[which]
    r = fed.get(REMOTE, f"{FED}/event_auth/{q(pub.room_id)}/{q(priv_msg)}")
    assert r.status == 404 and r.json["errcode"] == "M_NOT_FOUND", r
    body = ok_json(fed.post(REMOTE, f"{FED}/get_missing_events/{q(pub.room_id)}",
                            {"earliest_events": [], "latest_events": [priv_msg], "limit": 10}))
    assert body["events"] == []


def test_090_034_private_room_not_readable_by_non_member(world, fed):
    """The remote server never joined the private room: refused (spec:
    the origin must be in the room)."""
    priv, priv_msg, pub = world["belongs_v10"]
    for path in (f"{FED}/state_ids/{q(priv.room_id)}?event_id={q(priv_msg)}",
                 f"{FED}/backfill/{q(priv.room_id)}?v={q(priv_msg)}&limit=5",
                 f"{FED}/event/{q(priv_msg)}",
                 f"{FED}/event_auth/{q(priv.room_id)}/{q(priv_msg)}"):
        r = fed.get(REMOTE, path)
        assert r.status == 403 and r.json["errcode"] == "M_FORBIDDEN", (path, r)
