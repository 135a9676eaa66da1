# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Room versions 1 and 2 as old homeservers produced them: event
IDs carried in the PDU up to the spec's 255 bytes (served through /event,
backfill's v and /state_ids), and prev_events/auth_events reference pairs
whose hash part is empty or not the event's reference hash (receivers never
check it: the reference homeserver reads only the first element)."""
import pytest

from mxftest.vroom import db_rejected, db_unverified, FED, import_rooms, serve
from mxftest.matrix import q
from mxftest.vbuilder import Keys, VRoom

A = "@admin:hs1.example"
B = "@bob:hs2.example"


def build(keys, v, pair_hash, tag):
    r = VRoom(v, keys, f"!old{tag}{v}:hs1.example")
    r.pair_hash = pair_hash
    r.create(A)
    r.join(A)
    r.make("m.room.power_levels", A, {"users": {A: 100}}, state_key="")
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    r.join(B)
    long_id = "$" + "L" * (255 - 1 - len(":hs2.example") - len(tag + v)) + tag + v + ":hs2.example"
    assert len(long_id) == 255
    r.make("m.room.message", B, {"msgtype": "m.text", "body": "long id"},
           extra={"event_id": long_id})
    r.msg(A, "end")
    return r, long_id


CASES = [("1", None, "a"), ("2", None, "b"), ("1", {}, "c"), ("2", {"sha256": "bm90IGl0"}, "d")]


@pytest.fixture(scope="module")
def rooms(build_env, postgres, workdir):
    keys = Keys()
    out = {c[2]: build(keys, *c) for c in CASES}
    import_rooms(build_env, postgres, workdir, "t907", [r for r, _ in out.values()], keys)
    return keys, out


@pytest.fixture(scope="module")
def fed(httpd_factory, postgres, signing_key, backend, rooms):
    yield from serve(httpd_factory, postgres, signing_key, backend, rooms[0], "httpd-060")


@pytest.mark.parametrize("case", CASES, ids=[c[2] for c in CASES])
def test_060_001_served(rooms, fed, postgres, case):
    r, long_id = rooms[1][case[2]]
    assert db_rejected(postgres, r.room_id) == {}
    assert db_unverified(postgres, r.room_id) == set()
    for eid, ev in r.events:
        resp = fed.event("hs2.example", r.room_id, eid)
        assert resp.status == 200, (eid, resp)
        assert resp.json["pdus"][0] == ev
    resp = fed.backfill("hs2.example", r.room_id, long_id, limit=100)
    assert resp.status == 200, resp
    assert [p["event_id"] for p in resp.json["pdus"]] == [e for e, _ in r.events][-2::-1]
    last = r.events[-1][0]
    resp = fed.get("hs2.example", f"{FED}/state_ids/{q(r.room_id)}?event_id={q(last)}")
    assert resp.status == 200, resp
    assert set(resp.json["pdu_ids"]) == set(r.state.values())
    resp = fed.get("hs2.example", f"{FED}/event_auth/{q(r.room_id)}/{q(long_id)}")
    assert resp.status == 200, resp
    assert {p["event_id"] for p in resp.json["auth_chain"]} == {
        r.state[("m.room.create", "")], r.state[("m.room.power_levels", "")],
        r.state[("m.room.member", B)], r.state[("m.room.member", A)],
        r.state[("m.room.join_rules", "")]}
