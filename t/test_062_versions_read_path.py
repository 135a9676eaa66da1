# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The read endpoints through httpd for room versions other
than 10: v1/v2 (event_id in the PDU,
[id, hash] pairs), v3 (standard base64 IDs), v11 (v11 redaction), v12
(create event implicit in auth chains, room ID from the create event).
Redacted copies are checked by their signatures (which cover exactly the
redacted form of the room version), full ones byte for byte."""
import os

import pytest

from mxftest.matrix import gen_room, import_room, load_key, q
from test_040_history import FED, Client, check_served, member_server

VERSIONS = ["1", "2", "3", "11", "12"]


@pytest.fixture(scope="module")
def vrooms(build_env, postgres, workdir):
    out = {}
    for i, v in enumerate(VERSIONS):
        for attempt in range(8):
            r = gen_room(build_env.cli, os.path.join(workdir, f"room-v{v}-{attempt}"),
                         room_version=v, events=300, servers=5, branchiness=0.2,
                         redactions=0.05, seed=7919 * (i + 1) + 104729 * attempt)
            try:
                member_server(r)
                break
            except AssertionError:
                continue
        import_room(build_env.cli, postgres.conninfo(), r)
        out[v] = r
    return out


def client_for(httpd, room):
    s = member_server(room)
    return Client(httpd, s, load_key(room.key_path(s)))


@pytest.mark.parametrize("v", VERSIONS)
class TestVersions:
    def test_062_001_backfill_whole_room(self, httpd, vrooms, v):
        room = vrooms[v]
        c = client_for(httpd, room)
        got, seen_hidden = [], 0
        frontier = sorted(room.summary["forward_extremities"])[:20]
        seen = set()
        while frontier:
            qs = "&".join(f"v={q(e)}" for e in frontier) + "&limit=50"
            r = c.get(f"{FED}/backfill/{q(room.room_id)}?{qs}")
            assert r.status == 200, r
            ids = [check_served(room, c.origin, r.body, p) for p in r.json["pdus"]]
            assert ids == room.backfill(frontier, 50)
            seen |= set(ids)
            frontier = sorted({p for e in seen for p in room.prevs(e) if p not in seen})[:20]
        assert seen == set(room.order)
        assert any(not room.visible(e, c.origin) for e in seen)

    def test_062_002_gme(self, httpd, vrooms, v):
        room = vrooms[v]
        c = client_for(httpd, room)
        tip = room.order[-1]
        for earliest in ([], [room.order[-12]]):
            body = {"earliest_events": earliest, "latest_events": [tip], "limit": 20}
            r = c.post(f"{FED}/get_missing_events/{q(room.room_id)}", body)
            assert r.status == 200, r
            ids = [check_served(room, c.origin, r.body, p) for p in r.json["events"]]
            assert ids == room.missing_events(earliest, [tip], 20)

    def test_062_003_state_ids_state_event_auth(self, httpd, vrooms, v):
        room = vrooms[v]
        c = client_for(httpd, room)
        for eid in [room.order[1], room.order[len(room.order) // 2], room.order[-1]]:
            r = c.get(f"{FED}/state_ids/{q(room.room_id)}?event_id={q(eid)}")
            assert r.status == 200, r
            st = set(room.events[eid]["exp"]["state_before"].values())
            assert set(r.json["pdu_ids"]) == st
            assert set(r.json["auth_chain_ids"]) == room.auth_chain(st)
            r = c.get(f"{FED}/state/{q(room.room_id)}?event_id={q(eid)}")
            assert r.status == 200, r
            assert {room.identify(p) for p in r.json["pdus"]} == st
            for p in r.json["pdus"] + r.json["auth_chain"]:
                assert room.events[room.identify(p)]["raw"].decode() in r.body
            r = c.get(f"{FED}/event_auth/{q(room.room_id)}/{q(eid)}")
            assert r.status == 200, r
            got = [room.identify(p) for p in r.json["auth_chain"]]
            assert set(got) == room.auth_chain([eid]) and len(got) == len(set(got))

    def test_062_004_create_event_state(self, httpd, vrooms, v):
        """The state before the create event is empty; its auth chain too."""
        room = vrooms[v]
        c = client_for(httpd, room)
        create = room.order[0]
        r = c.get(f"{FED}/state_ids/{q(room.room_id)}?event_id={q(create)}")
        assert r.status == 200 and r.json == {"auth_chain_ids": [], "pdu_ids": []}, r
        r = c.get(f"{FED}/event_auth/{q(room.room_id)}/{q(create)}")
        assert r.status == 200 and r.json == {"auth_chain": []}, r

    def test_062_005_event_each(self, httpd, vrooms, v):
        room = vrooms[v]
        c = client_for(httpd, room)
        for eid in room.order[::7]:
            r = c.get(f"{FED}/event/{q(eid)}")
            assert r.status == 200, r
            assert check_served(room, c.origin, r.body, r.json["pdus"][0]) == eid
