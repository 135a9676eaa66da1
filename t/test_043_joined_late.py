# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""A room as a server that joined late has it, loaded from that server's
/send_join answer and the events after the join, served through a real httpd
and PostgreSQL: the state after the join is known (so are the members), the
answer's state and auth chain are outliers (served by /event, never walked
or found by time, no state of their own), and the walks stop at the join."""
import json
import os
import subprocess

import pytest

from mxftest.matrix import gen_room, load_key, q, server_of
from test_040_history import FED, Client, assert_error


@pytest.fixture(scope="module")
def late(build_env, postgres, workdir):
    room = gen_room(build_env.cli, os.path.join(workdir, "room-joined-late"), room_version=10,
                    events=150, servers=3, branchiness=0, seed=43)
    order = room.order
    j = max(i for i, e in enumerate(order[:120])
            if room.events[e]["json"]["type"] == "m.room.member"
            and room.membership(e) == "join"
            and server_of(room.events[e]["json"]["state_key"]) in room.summary["joined_servers"])
    assert j > 40
    join = order[j]
    state = list(room.events[join]["exp"]["state_before"].values())
    chain = room.auth_chain(state + [join])
    answer = {"origin": "hs1.example", "origin_server_ts": 1, "members_omitted": False,
              "state": [room.events[e]["json"] for e in state],
              "auth_chain": [room.events[e]["json"] for e in sorted(chain)],
              "event": room.events[join]["json"]}
    path = os.path.join(workdir, "joined-late.json")
    with open(path, "wb") as f:
        f.write(json.dumps(answer).encode() + b"\n"
                + b"\n".join(room.events[e]["raw"] for e in order[j + 1:]) + b"\n")
    out = subprocess.run([build_env.cli, "import", "--db", postgres.conninfo(),
                          "--keys", os.path.join(room.dir, "keys", "all.json"), path],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    assert "1 event given the state before it by a /send_join answer" in out
    server = server_of(room.events[join]["json"]["state_key"])
    outliers = (set(state) | chain) - {join}
    return {"room": room, "j": j, "join": join, "outliers": outliers, "server": server}


@pytest.fixture(scope="class")
def lc(httpd, late):
    return Client(httpd, late["server"], load_key(late["room"].key_path(late["server"])))


class TestJoinedLate:

    def test_043_001_state_known_after_the_join(self, lc, late):
        room = late["room"]
        for e in (late["join"], room.order[late["j"] + 7], room.order[-1]):
            r = lc.get(f"{FED}/state_ids/{q(room.room_id)}?event_id={q(e)}")
            assert r.status == 200, r
            assert set(r.json["pdu_ids"]) == set(room.events[e]["exp"]["state_before"].values())
            assert set(r.json["auth_chain_ids"]) == \
                room.auth_chain(list(room.events[e]["exp"]["state_before"].values()))

    def test_043_002_outliers_served_but_without_state(self, lc, late):
        room = late["room"]
        outlier = sorted(late["outliers"], key=room.idx)[-1]
        r = lc.get(f"{FED}/event/{q(outlier)}")
        assert r.status == 200, r
        assert room.identify(r.json["pdus"][0]) == outlier
        assert_error(lc.get(f"{FED}/state_ids/{q(room.room_id)}?event_id={q(outlier)}"),
                     404, "M_NOT_FOUND")

    def test_043_003_walks_stop_at_the_join(self, lc, late):
        room = late["room"]
        tip = room.order[-1]
        r = lc.get(f"{FED}/backfill/{q(room.room_id)}?v={q(tip)}&limit=500")
        assert r.status == 200, r
        got = [room.identify(p) for p in r.json["pdus"]]
        assert got == list(reversed(room.order[late["j"]:]))
        r = lc.post(f"{FED}/get_missing_events/{q(room.room_id)}",
                    {"earliest_events": [], "latest_events": [tip], "limit": 10})
        assert r.status == 200, r
        assert [room.identify(p) for p in r.json["events"]] == \
            room.missing_events([], [tip], 10)

    def test_043_004_timestamps_skip_outliers(self, lc, late):
        room = late["room"]
        join_ts = room.events[late["join"]]["json"]["origin_server_ts"]
        base = f"{FED}/timestamp_to_event/{q(room.room_id)}"
        r = lc.get(f"{base}?ts=1&dir=f")
        assert r.status == 200 and r.json["event_id"] == late["join"], r
        assert_error(lc.get(f"{base}?ts={join_ts - 1}&dir=b"), 404, "M_NOT_FOUND")
