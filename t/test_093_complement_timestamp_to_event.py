# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Complement tests/room_timestamp_to_event_test.go TestJumpToDateEndpoint,
as the federation endpoint the remote homeserver calls
(GET /_matrix/federation/v1/timestamp_to_event/{roomId}?ts=&dir=): the
room is createTestRoom's (public_chat, message A, message B), the remote
user joins after; messages sent with an application service's ?ts= are
events with a given origin_server_ts."""
import pytest

from mxftest.matrix import q
from mxftest.vbuilder import Keys
from mxftest.vroom import import_rooms, serve
from test_090_sytest_rooms import ALICE, CHARLIE, REMOTE

FED = "/_matrix/federation/v1"
T0 = 1700000000000


def make_room(keys, tag):
    from mxftest.vbuilder import VRoom
    r = VRoom("10", keys, f"!t2e{tag}:hs1.example", ts0=T0)
    r.create(ALICE)
    r.join(ALICE)
    r.pl(ALICE, {"users": {ALICE: 100}})
    r.make("m.room.join_rules", ALICE, {"join_rule": "public"}, state_key="")
    r.make("m.room.history_visibility", ALICE, {"history_visibility": "shared"}, state_key="")
    a = r.msg(ALICE, "Message A", ts=T0 + 1000)
    b = r.msg(ALICE, "Message B", ts=T0 + 2000)
    return r, a, b


@pytest.fixture(scope="module")
def rooms(build_env, postgres, workdir):
    keys = Keys()
    out = {"keys": keys}
    # federation: looking forwards / backwards for events sent before we joined
    r, a, b = make_room(keys, "basic")
    r.join(CHARLIE, ts=T0 + 3000)
    out["basic"] = (r, a, b)
    # same timestamps: two messages at T0+2500 after the others
    r, a, b = make_room(keys, "same")
    r.join(CHARLIE, ts=T0 + 2100)
    m1 = r.msg(ALICE, "messageWithSameTime1", ts=T0 + 2500)
    m2 = r.msg(ALICE, "messageWithSameTime2", ts=T0 + 2500)
    out["same"] = (r, m1, m2)
    # imported: a message stamped long before the room was created
    r, a, b = make_room(keys, "imported")
    old = r.msg(ALICE, "old imported event", ts=1641168000000)     # 2022-01-03
    r.join(CHARLIE, ts=T0 + 3000)
    out["imported"] = (r, old)
    # private room the remote server is not in
    r, a, b = make_room(keys, "private")
    out["private"] = (r, a, b)
    import_rooms(build_env, postgres, workdir, "t093",
                 [out[k][0] for k in ("basic", "same", "imported", "private")], keys)
    return out


@pytest.fixture(scope="module")
def fed(httpd_factory, postgres, signing_key, backend, rooms):
    yield from serve(httpd_factory, postgres, signing_key, backend, rooms["keys"], "httpd-093")


def t2e(fed, room, ts, direction):
    return fed.get(REMOTE, f"{FED}/timestamp_to_event/{q(room.room_id)}?ts={ts}&dir={direction}")


def found(resp, room, eid):
    assert resp.status == 200, resp
    assert resp.json["event_id"] == eid, (resp.json, eid)
    assert resp.json["origin_server_ts"] == room.by_id[eid]["origin_server_ts"]


def test_093_001_find_event_after_given_timestamp(rooms, fed):
    r, a, b = rooms["basic"]
    found(t2e(fed, r, T0 + 999, "f"), r, a)          # eventA.BeforeTimestamp


def test_093_002_find_event_before_given_timestamp(rooms, fed):
    r, a, b = rooms["basic"]
    found(t2e(fed, r, T0 + 2001, "b"), r, b)         # eventB.AfterTimestamp


def test_093_003_nothing_before_the_earliest(rooms, fed):
    r, a, b = rooms["basic"]
    resp = t2e(fed, r, T0 - 1, "b")
    assert resp.status == 404 and resp.json["errcode"] == "M_NOT_FOUND", resp


def test_093_004_nothing_after_the_latest(rooms, fed):
    r, a, b = rooms["basic"]
    resp = t2e(fed, r, T0 + 3001, "f")
    assert resp.status == 404 and resp.json["errcode"] == "M_NOT_FOUND", resp


def test_093_005_same_timestamps_backwards_finds_the_later(rooms, fed):
    r, m1, m2 = rooms["same"]
    found(t2e(fed, r, T0 + 2500, "b"), r, m2)


def test_093_006_same_timestamps_forwards_finds_the_earlier(rooms, fed):
    r, m1, m2 = rooms["same"]
    found(t2e(fed, r, T0 + 2500, "f"), r, m1)


def test_093_007_backwards_before_creation_finds_imported_event(rooms, fed):
    r, old = rooms["imported"]
    found(t2e(fed, r, T0 - 1, "b"), r, old)


def test_093_008_not_a_member(rooms, fed):
    """'should not be able to query a private/public room you are not a
    member of' (there over the client API, 403): over federation the
    origin has no member, 403 M_FORBIDDEN."""
    r, a, b = rooms["private"]
    resp = t2e(fed, r, T0 + 999, "f")
    assert resp.status == 403 and resp.json["errcode"] == "M_FORBIDDEN", resp
