# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Answers of the read path on rooms of shapes that are not a line, built and
signed here (mxftest/builder.py), the expectations computed here from the
spec's rules: a wide DAG (60 events per depth, each citing 10 prev_events of
the last 3 depths), the same with one edge whose depth does not decrease
(backfill then walks step by step), power levels handed from member to
member (a long auth chain with a chain link at every position), and a depth
gap (one event far deeper than its prev event). These are the shapes on which
the windowed queries and the auth chain index had been slow (sql/016, 017:
the benchmark measures speed, not these tests); backfill had also given a
wrong answer for v mixing the newest event with events deep in history."""
import json
import os
import random
import subprocess

import pytest

from conftest import SERVER_NAME
from mxftest.matrix import q, xmatrix
from mxftest.builder import Keys, RoomBuilder, basic_room, event_id_of

FED = "/_matrix/federation/v1"
ORIGIN = "hs1.example"


def members(b, last, n, servers=4):
    users = []
    for i in range(n):
        u = f"@u{i}:hs{1 + i % servers}.example"
        last = b.make("m.room.member", u, {"membership": "join"}, [last],
                      b.auth_for("m.room.member", u, u, "join"), state_key=u)
        users.append(u)
    return last, users


def fan_room(keys, room_id, width, levels, k, seed, nonmono=False):
    rnd = random.Random(seed)
    b = RoomBuilder(room_id, keys=keys)
    last = basic_room(b)
    last, users = members(b, last, 12)
    lv = [[last]]
    for L in range(levels):
        pool = [e for x in lv[-3:] for e in x]
        cur = []
        for i in range(width):
            u = rnd.choice(users)
            depth = 3 if (nonmono and L == levels - 1 and i == 0) else None
            cur.append(b.make("m.room.message", u, {"msgtype": "m.text", "body": f"{L}.{i}"},
                              rnd.sample(pool, min(k, len(pool))),
                              b.auth_for("m.room.message", u), depth=depth))
        lv.append(cur)
    top = b.make("m.room.message", users[0], {"msgtype": "m.text", "body": "top"}, lv[-1][:5],
                 b.auth_for("m.room.message", users[0]))
    return b, top


def pl_handoff_room(keys, room_id, P):
    """Power levels handed from member to member: h_k joins, h_(k-1) sends power
    levels giving h_k 100 (and dropping itself), P times."""
    b = RoomBuilder(room_id, keys=keys)
    last = basic_room(b)
    admin = "@admin:hs1.example"
    users = [f"@h{k}:hs{1 + k % 4}.example" for k in range(P + 2)]
    base = {"users_default": 0, "events_default": 0, "state_default": 50, "ban": 50,
            "kick": 50, "redact": 50, "invite": 0, "events": {}}
    last = b.make("m.room.member", users[0], {"membership": "join"}, [last],
                  b.auth_for("m.room.member", users[0], users[0], "join"), state_key=users[0])
    last = b.make("m.room.power_levels", admin, dict(base, users={users[0]: 100}), [last],
                  b.auth_for("m.room.power_levels", admin), state_key="")
    pls = [last]
    for k in range(P):
        nxt = users[k + 1]
        last = b.make("m.room.member", nxt, {"membership": "join"}, [last],
                      b.auth_for("m.room.member", nxt, nxt, "join"), state_key=nxt)
        last = b.make("m.room.power_levels", users[k], dict(base, users={nxt: 100}), [last],
                      b.auth_for("m.room.power_levels", users[k]), state_key="")
        pls.append(last)
    top = b.make("m.room.message", users[P], {"msgtype": "m.text", "body": "end"}, [last],
                 b.auth_for("m.room.message", users[P]))
    return b, top, pls


class Ref:
    """Expectations from the DAG, as the spec describes the endpoints."""

    def __init__(self, b):
        self.ev = dict(b.events)
        self.idx = {eid: i for i, (eid, _) in enumerate(b.events)}

    def depth(self, e):
        return self.ev[e]["depth"]

    def missing_events(self, earliest, latest, limit, min_depth=0):
        seen = set(earliest)
        front = [e for e in latest if e not in seen]
        picked = []
        while front and len(picked) < limit:
            layer = {p for e in front for p in self.ev[e]["prev_events"]
                     if p not in seen and self.depth(p) >= min_depth}
            layer = sorted(layer, key=lambda p: (self.depth(p), self.idx[p]), reverse=True)
            front = []
            for p in layer:
                if len(picked) >= limit:
                    break
                front.append(p)
                picked.append(p)
            seen |= set(front)
        return sorted(picked, key=lambda p: (self.depth(p), self.idx[p]))

    def backfill(self, v, limit):
        queue, seen, out = set(v), set(v), []
        while queue and len(out) < limit:
            cur = max(queue, key=lambda e: (self.depth(e), self.idx[e]))
            queue.remove(cur)
            out.append(cur)
            for p in self.ev[cur]["prev_events"]:
                if p not in seen:
                    seen.add(p)
                    queue.add(p)
        return out

    def auth_chain(self, eids):
        out, todo = set(), list(eids)
        while todo:
            for a in self.ev[todo.pop()]["auth_events"]:
                if a not in out:
                    out.add(a)
                    todo.append(a)
        return out

    def state_before(self, eid):
        """For a room whose DAG is a line: the last event of each (type, state_key) before eid."""
        st = {}
        for e, _ in sorted(self.ev.items(), key=lambda x: self.idx[x[0]]):
            if e == eid:
                break
            j = self.ev[e]
            if "state_key" in j:
                st[(j["type"], j["state_key"])] = e
        return set(st.values())


@pytest.fixture(scope="module")
def shapes(build_env, postgres, workdir):
    keys = Keys()
    fan, fan_top = fan_room(keys, "!rbfan:hs1.example", 60, 30, 10, 1)
    nm, nm_top = fan_room(keys, "!rbfannm:hs1.example", 60, 30, 10, 2, nonmono=True)
    pl, pl_top, pls = pl_handoff_room(keys, "!rbpl:hs1.example", 300)
    d = os.path.join(workdir, "shapes")
    os.makedirs(d, exist_ok=True)
    keyfile = os.path.join(d, "keys.json")
    keys.write_responses(keyfile)
    for name, b in (("fan", fan), ("nm", nm), ("pl", pl)):
        path = os.path.join(d, f"{name}.jsonl")
        b.write(path)
        subprocess.run([build_env.cli, "import", "--quiet", "--db", postgres.conninfo(),
                        "--keys", keyfile, path], check=True, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    flags = postgres.psql(postgres.DBNAME,
                          "SELECT string_agg(room_id || '=' || depth_monotone, ',' ORDER BY room_id)"
                          " FROM mxf_rooms WHERE room_id LIKE '!rb%'")
    assert flags == "!rbfan:hs1.example=true,!rbfannm:hs1.example=false,!rbpl:hs1.example=true"
    rej = postgres.psql(postgres.DBNAME,
                        "SELECT count(*) FROM mxf_events e JOIN mxf_rooms r USING (room_nid)"
                        " WHERE r.room_id LIKE '!rb%' AND (e.rejected_reason IS NOT NULL"
                        " OR NOT e.signatures_verified)")
    assert rej == "0", "the hand-built rooms must be accepted and verified"
    return {"keys": keys, "fan": (fan, fan_top), "nm": (nm, nm_top), "pl": (pl, pl_top, pls)}


class Client:
    def __init__(self, httpd, key):
        self.httpd, self.key = httpd, key

    def get(self, path):
        auth = xmatrix(ORIGIN, self.key, SERVER_NAME, "GET", path)
        r = self.httpd.get(path, headers={"Authorization": auth}, timeout=120)
        assert r.status == 200, r
        return r.json

    def post(self, path, content):
        auth = xmatrix(ORIGIN, self.key, SERVER_NAME, "POST", path, content)
        r = self.httpd.post(path, body=json.dumps(content), headers={"Authorization": auth},
                            timeout=120)
        assert r.status == 200, r
        return r.json


@pytest.fixture(scope="module")
def client(httpd_module, shapes):
    return Client(httpd_module, shapes["keys"].get(ORIGIN))


@pytest.fixture(scope="module")
def httpd_module(httpd_factory, postgres, signing_key, backend):
    from conftest import site_config
    h = httpd_factory.new("httpd-shapes")
    h.start(site_config(postgres, signing_key, backend))
    yield h
    h.stop()


def ids(pdus):
    return [event_id_of(p) for p in pdus]


@pytest.mark.parametrize("room", ["fan", "nm"])
@pytest.mark.parametrize("limit,min_depth", [(20, 0), (7, 0), (20, 25)])
def test_044_001_gme_wide_dag(client, shapes, room, limit, min_depth):
    """get_missing_events from one latest event of a wide DAG (the windowed
    query's first window of `limit` steps held every event of the room, each
    once per distance at which it was found)."""
    b, top = shapes[room]
    body = {"earliest_events": [], "latest_events": [top], "limit": limit,
            "min_depth": min_depth}
    got = ids(client.post(f"{FED}/get_missing_events/{q(b.room_id)}", body)["events"])
    assert got == Ref(b).missing_events([], [top], limit, min_depth)


@pytest.mark.parametrize("room", ["fan", "nm"])
def test_044_002_gme_two_latest_far_apart(client, shapes, room):
    b, top = shapes[room]
    ref = Ref(b)
    old = [e for e, _ in b.events][len(b.events) // 3]
    body = {"earliest_events": [], "latest_events": [top, old], "limit": 20}
    got = ids(client.post(f"{FED}/get_missing_events/{q(b.room_id)}", body)["events"])
    assert got == ref.missing_events([], [top, old], 20)


@pytest.mark.parametrize("room", ["fan", "nm"])
@pytest.mark.parametrize("limit", [100, 13])
def test_044_003_backfill_wide_dag(client, shapes, room, limit):
    """backfill from the top of a wide DAG (a first window of `limit` depth
    units holds thousands of events); "nm" has one edge whose depth does not
    decrease, so the step-by-step walk answers."""
    b, top = shapes[room]
    got = ids(client.get(f"{FED}/backfill/{q(b.room_id)}?v={q(top)}&limit={limit}")["pdus"])
    assert set(got) == set(Ref(b).backfill([top], limit))
    assert len(got) == limit


def test_044_004_backfill_many_v(client, shapes):
    b, top = shapes["fan"]
    ref = Ref(b)
    vs = [e for e, j in b.events if j["type"] == "m.room.message"][-40:]
    qs = "&".join(f"v={q(v)}" for v in vs)
    got = ids(client.get(f"{FED}/backfill/{q(b.room_id)}?{qs}&limit=100")["pdus"])
    assert set(got) == set(ref.backfill(vs, 100))


@pytest.mark.parametrize("which", ["last", "mid"])
def test_044_005_event_auth_pl_handoff(client, shapes, which):
    """/event_auth of a power-levels event where power was handed from member
    to member (reading every link below each chain position reached would be
    quadratic in the number of hand-offs)."""
    b, top, pls = shapes["pl"]
    ev = pls[-1] if which == "last" else pls[len(pls) // 2]
    got = ids(client.get(f"{FED}/event_auth/{q(b.room_id)}/{q(ev)}")["auth_chain"])
    assert len(got) == len(set(got))
    assert set(got) == Ref(b).auth_chain([ev])


def test_044_006_state_ids_pl_handoff(client, shapes):
    b, top, pls = shapes["pl"]
    ref = Ref(b)
    j = client.get(f"{FED}/state_ids/{q(b.room_id)}?event_id={q(top)}")
    st = ref.state_before(top)
    assert set(j["pdu_ids"]) == st
    assert len(j["pdu_ids"]) == len(st)
    assert set(j["auth_chain_ids"]) == ref.auth_chain(st)
    assert len(j["auth_chain_ids"]) == len(set(j["auth_chain_ids"]))


@pytest.fixture(scope="module")
def gap_room(build_env, postgres, workdir, shapes):
    """A line of 300 messages, then one event far deeper than its prev event
    (depth 10,000,000: still decreasing along every edge, so the room stays
    depth_monotone), then 10 more."""
    keys = shapes["keys"]
    b = RoomBuilder("!rbgap:hs1.example", keys=keys)
    last = basic_room(b)
    u = "@admin:hs1.example"
    line = []
    for i in range(300):
        last = b.make("m.room.message", u, {"msgtype": "m.text", "body": str(i)}, [last],
                      b.auth_for("m.room.message", u))
        line.append(last)
    last = b.make("m.room.message", u, {"msgtype": "m.text", "body": "jump"}, [last],
                  b.auth_for("m.room.message", u), depth=10_000_000)
    for i in range(10):
        last = b.make("m.room.message", u, {"msgtype": "m.text", "body": f"after{i}"}, [last],
                      b.auth_for("m.room.message", u))
    d = os.path.join(workdir, "shapes")
    keyfile = os.path.join(d, "keys.json")
    keys.write_responses(keyfile)
    path = os.path.join(d, "gap.jsonl")
    b.write(path)
    subprocess.run([build_env.cli, "import", "--quiet", "--db", postgres.conninfo(),
                    "--keys", keyfile, path], check=True, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE, text=True)
    assert postgres.psql(postgres.DBNAME, "SELECT depth_monotone FROM mxf_rooms"
                         " WHERE room_id = '!rbgap:hs1.example'") == "t"
    return b, last, line


@pytest.mark.parametrize("n_deep", [89, 40])
def test_044_007_backfill_deep_v_and_depth_gap(client, gap_room, n_deep):
    """backfill with v = the newest event and n_deep events deep in history,
    limit 100. The spec's backfill (and Synapse's, a queue ordered by depth)
    returns the 100 deepest events reachable from v: the 11 events from the top
    down to the jump, then the 89 right below the jump. The windowed query
    had counted the given events deep in history into its first window (top -
    100 .. top, which holds only the 11) and stopped with them: 89 of the
    events it returned were v events from depth ~100-190. With 40 deep events
    the window grew and the answer was right."""
    b, top, line = gap_room
    deep = line[100:100 + n_deep]
    vs = [top] + deep
    qs = "&".join(f"v={q(v)}" for v in vs)
    got = ids(client.get(f"{FED}/backfill/{q(b.room_id)}?{qs}&limit=100")["pdus"])
    want = Ref(b).backfill(vs, 100)
    assert set(got) == set(want)
