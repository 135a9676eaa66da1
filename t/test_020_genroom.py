# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""matrix-fed gen-room, checked independently in Python: signatures (python
signedjson over a redaction written here from the spec's tables), content
hashes and event IDs (canonicaljson + hashlib), v1/v2 edge hashes, the v12
room ID, the DAG (edges point backwards, depth rule, branches and merges),
the key files, the per-event expectations against the events themselves,
and determinism."""
import base64
import hashlib
import json
import os
import stat
import subprocess

import pytest
import signedjson.key
import signedjson.sign
from canonicaljson import encode_canonical_json

VERSIONS = ["1", "3", "6", "10", "11", "12"]
EVENTS = 300


def b64(data, urlsafe=False):
    text = base64.b64encode(data).decode().rstrip("=")
    return text.replace("+", "-").replace("/", "_") if urlsafe else text


def vnum(version):
    return int(version)


# ---------------------------------------------------------------------------
# Redaction (client-server API "Redactions" and the room version pages),
# written from the spec's tables for the event types the generator makes.

TOP_KEYS = {"event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
            "signatures", "depth", "prev_events", "auth_events", "origin_server_ts"}
TOP_KEYS_PRE_V11 = {"origin", "membership", "prev_state"}


def content_keys(etype, version):
    v = vnum(version)
    if etype == "m.room.member":
        keys = {"membership"}
        if v >= 9:
            keys.add("join_authorised_via_users_server")
        return keys
    if etype == "m.room.create":
        return None if v >= 11 else {"creator"}   # None: all keys
    if etype == "m.room.join_rules":
        return {"join_rule", "allow"} if v >= 8 else {"join_rule"}
    if etype == "m.room.power_levels":
        keys = {"ban", "events", "events_default", "kick", "redact", "state_default",
                "users", "users_default"}
        if v >= 11:
            keys.add("invite")
        return keys
    if etype == "m.room.history_visibility":
        return {"history_visibility"}
    if etype == "m.room.aliases" and v <= 5:
        return {"aliases"}
    if etype == "m.room.redaction" and v >= 11:
        return {"redacts"}
    return set()


def redact(event, version):
    keep = TOP_KEYS | (TOP_KEYS_PRE_V11 if vnum(version) < 11 else set())
    out = {k: v for k, v in event.items() if k in keep}
    ck = content_keys(event["type"], version)
    if ck is not None:
        out["content"] = {k: v for k, v in event["content"].items() if k in ck}
    return out


def content_hash(event):
    e = {k: v for k, v in event.items() if k not in ("unsigned", "signatures", "hashes")}
    return b64(hashlib.sha256(encode_canonical_json(e)).digest())


def reference_hash(event, version):
    r = redact(event, version)
    r.pop("signatures", None)
    r.pop("unsigned", None)
    return hashlib.sha256(encode_canonical_json(r)).digest()


def event_id(event, version):
    v = vnum(version)
    if v <= 2:
        return event["event_id"]
    return "$" + b64(reference_hash(event, version), urlsafe=v >= 4)


def edge_ids(edges, version):
    return [e[0] for e in edges] if vnum(version) <= 2 else list(edges)


def check_power(ev, before, by_id, version, sender_membership):
    """The power-level parts of the auth rules that the generator's events meet."""
    pl = by_id[before["m.room.power_levels|"]]["content"] \
        if "m.room.power_levels|" in before else None
    creator = by_id[before["m.room.create|"]]["sender"]

    def power(user):
        if vnum(version) >= 12 and user == creator:
            return float("inf")
        if pl is None:
            return 100 if user == creator else 0
        return pl["users"].get(user, pl.get("users_default", 0))

    def membership(user):
        m = before.get("m.room.member|" + user)
        return by_id[m]["content"]["membership"] if m else None

    if pl is None:
        return
    sender = ev["sender"]
    if ev["type"] == "m.room.member":
        target, m = ev["state_key"], ev["content"]["membership"]
        jr = by_id[before["m.room.join_rules|"]]["content"]["join_rule"]
        if m == "join":
            assert jr == "public" or sender_membership in ("invite", "join")
        elif m == "invite":
            assert power(sender) >= pl["invite"]
            assert membership(target) not in ("join", "ban")
        elif m == "ban":
            assert power(sender) >= pl["ban"] and power(target) < power(sender)
        elif m == "leave" and target != sender:
            if membership(target) == "ban":
                assert power(sender) >= pl["ban"]
            assert power(sender) >= pl["kick"] and power(target) < power(sender)
        return
    state = "state_key" in ev
    need = pl["events"].get(ev["type"], pl["state_default"] if state else pl["events_default"])
    assert power(sender) >= need
    if ev["type"] == "m.room.power_levels":
        old = pl["users"]
        for user in set(old) | set(ev["content"]["users"]):
            if old.get(user) != ev["content"]["users"].get(user) and user != sender:
                assert old.get(user, 0) < power(sender)


# ---------------------------------------------------------------------------

def gen(build_env, out, version, seed=7, events=EVENTS, branchiness=0.2, extra=()):
    args = [build_env.cli, "gen-room", "--out", str(out), "--room-version", version,
            "--events", str(events), "--branchiness", str(branchiness),
            "--seed", str(seed), "--redactions", "0.05", *extra]
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       env=build_env.sanitizer_env(str(out.parent)))
    assert r.returncode == 0, r.stderr
    return out


def load_room(d):
    with open(os.path.join(d, "room.jsonl"), "rb") as f:
        raw = f.read()
    lines = raw.split(b"\n")
    assert lines[-1] == b""
    return raw, [json.loads(line) for line in lines[:-1]]


def load_keys(d):
    with open(os.path.join(d, "keys", "all.json")) as f:
        resp = json.load(f)["server_keys"]
    keys = {}
    for r in resp:
        for key_id, k in r["verify_keys"].items():
            keys[r["server_name"]] = (key_id, signedjson.key.decode_verify_key_bytes(
                key_id, base64.b64decode(k["key"] + "==")))
    return resp, keys


@pytest.fixture(scope="module", params=VERSIONS)
def room(request, build_env, tmp_path_factory):
    version = request.param
    d = gen(build_env, tmp_path_factory.mktemp(f"room-v{version}") / "out", version)
    raw, events = load_room(d)
    with open(os.path.join(d, "expected.json")) as f:
        summary = json.load(f)
    with open(os.path.join(d, "expected.jsonl")) as f:
        expect = [json.loads(line) for line in f]
    return {"version": version, "dir": d, "raw": raw, "events": events,
            "summary": summary, "expect": expect}


class TestGenRoom:

    def test_020_001_signatures_hashes_ids(self, room):
        version, events = room["version"], room["events"]
        _, keys = load_keys(room["dir"])
        assert len(events) == EVENTS
        refs = {}
        for ev in events:
            assert ev["hashes"]["sha256"] == content_hash(ev)
            redacted = redact(ev, version)
            sender_server = ev["sender"].split(":", 1)[1]
            assert sender_server in ev["signatures"]
            for server in ev["signatures"]:
                key_id, vk = keys[server]
                assert list(ev["signatures"][server]) == [key_id]
                signedjson.sign.verify_signed_json(redacted, server, vk)
            eid = event_id(ev, version)
            if vnum(version) <= 2:
                assert eid.endswith(":" + sender_server)
            else:
                assert "event_id" not in ev
                assert len(eid) == 44
                assert ("+" not in eid and "/" not in eid) if vnum(version) >= 4 else True
            assert eid not in refs
            refs[eid] = b64(reference_hash(ev, version))
            assert ("origin" in ev) == (vnum(version) < 11)
        if vnum(version) <= 2:
            # [id, {"sha256": reference hash}] pairs name the right events.
            for ev in events:
                for eid, h in ev["prev_events"] + ev["auth_events"]:
                    assert refs[eid] == h["sha256"]

    def test_020_002_create_and_room_id(self, room):
        version, events, summary = room["version"], room["events"], room["summary"]
        create = events[0]
        assert create["type"] == "m.room.create" and create["state_key"] == ""
        assert create["prev_events"] == [] and create["auth_events"] == []
        assert create["content"]["room_version"] == version
        if vnum(version) >= 11:
            assert "creator" not in create["content"]
        else:
            assert create["content"]["creator"] == create["sender"]
        if vnum(version) >= 12:
            assert "room_id" not in create
            room_id = "!" + b64(reference_hash(create, version), urlsafe=True)
        else:
            room_id = create["room_id"]
            assert room_id.endswith(":hs1.example")
        assert summary["room_id"] == room_id
        assert all(ev["room_id"] == room_id for ev in events[1:])
        create_id = event_id(create, version)
        for ev in events[1:]:
            auth = edge_ids(ev["auth_events"], version)
            assert (create_id in auth) == (vnum(version) < 12)

    def test_020_003_dag(self, room):
        version, events = room["version"], room["events"]
        pos, depth = {}, {}
        prev_sets, two_prevs = {}, 0
        last_ts = {}
        for i, ev in enumerate(events):
            eid = event_id(ev, version)
            prevs = edge_ids(ev["prev_events"], version)
            for e in prevs + edge_ids(ev["auth_events"], version):
                assert e in pos, f"event {i} refers to a later or unknown event"
            if i > 0:
                assert ev["depth"] == max(depth[p] for p in prevs) + 1
                assert ev["origin_server_ts"] > max(last_ts[p] for p in prevs)
            else:
                assert ev["depth"] == 1
            assert len(prevs) <= 20 and len(ev["auth_events"]) <= 10
            two_prevs += len(prevs) == 2
            prev_sets.setdefault(tuple(sorted(prevs)), []).append(i)
            pos[eid], depth[eid], last_ts[eid] = i, ev["depth"], ev["origin_server_ts"]
        forks = [v for v in prev_sets.values() if len(v) > 1]
        assert forks, "no two events share prev_events"
        assert two_prevs > 0, "no merge events"
        # The two sides of a fork are sent by different servers.
        for idx in forks:
            servers = {events[i]["sender"].split(":")[1] for i in idx}
            assert len(servers) == len(idx)
        assert set(room["summary"]["forward_extremities"]) <= set(pos)

    def test_020_004_expectations_match_events(self, room):
        version, events, expect = room["version"], room["events"], room["expect"]
        summary = room["summary"]
        assert summary["sampled"] == "all" and len(expect) == len(events)
        ids = [event_id(ev, version) for ev in events]
        by_id = dict(zip(ids, events))
        after = {}
        for x, ev in zip(expect, events):
            assert x["event_id"] == ids[x["i"]]
            assert x["type"] == ev["type"] and x["depth"] == ev["depth"]
            assert x["prev_events"] == edge_ids(ev["prev_events"], version)
            assert x["auth_events"] == edge_ids(ev["auth_events"], version)
            assert x.get("state_key") == ev.get("state_key")
            before = x["state_before"]
            prevs = x["prev_events"]
            if len(prevs) == 1:
                assert before == after[prevs[0]]
            elif len(prevs) == 2:
                # Non-conflicting branches: the union of both sides' states.
                a, b = after[prevs[0]], after[prevs[1]]
                for k in set(a) | set(b):
                    assert before[k] in (a.get(k), b.get(k))
            after[x["event_id"]] = x["state_after"]
            # Auth events are the state's create / power levels / members / join rules.
            assert set(x["auth_events"]) <= set(before.values())
            if ev["type"] == "m.room.create":
                continue
            # Sender joined (except joins and an invitee's own leave).
            member = before.get("m.room.member|" + ev["sender"])
            membership = by_id[member]["content"]["membership"] if member else None
            if ev["type"] == "m.room.member" and ev["state_key"] == ev["sender"]:
                if ev["content"]["membership"] == "leave":
                    assert membership in ("join", "invite")
                else:
                    assert membership != "ban"
            else:
                assert membership == "join"
            check_power(ev, before, by_id, version, membership)
            hv = before.get("m.room.history_visibility|")
            want = by_id[hv]["content"]["history_visibility"] if hv else "shared"
            assert x["history_visibility"] == want
            joined = sorted({k.split(":", 1)[1] for k, v in before.items()
                             if k.startswith("m.room.member|")
                             and by_id[v]["content"]["membership"] == "join"})
            assert sorted(x["joined_servers"]) == joined
        tips = summary["forward_extremities"]
        if len(tips) == 1:
            assert summary["final_state"] == after[tips[0]]
        else:
            a, b = after[tips[0]], after[tips[1]]
            assert set(summary["final_state"]) == set(a) | set(b)
            for k, v in summary["final_state"].items():
                assert v in (a.get(k), b.get(k))

    def test_020_005_content_variety_and_redactions(self, room):
        version, events, summary = room["version"], room["events"], room["summary"]
        ids = [event_id(ev, version) for ev in events]
        by_id = dict(zip(ids, events))
        types = {ev["type"] for ev in events}
        assert {"m.room.create", "m.room.member", "m.room.power_levels",
                "m.room.join_rules", "m.room.history_visibility", "m.room.server_acl",
                "m.room.message", "m.room.redaction"} <= types
        acl = next(ev for ev in events if ev["type"] == "m.room.server_acl")
        assert acl["content"] == {"allow": ["*"], "deny": ["denied.example"],
                                  "allow_ip_literals": False}
        memberships = {ev["content"]["membership"] for ev in events
                       if ev["type"] == "m.room.member"}
        assert {"join", "leave", "invite"} <= memberships
        redactions = [ev for ev in events if ev["type"] == "m.room.redaction"]
        assert len(redactions) == len(summary["redacted"])
        for ev in redactions:
            if vnum(version) >= 11:
                target = ev["content"]["redacts"]
                assert "redacts" not in ev
            else:
                target = ev["redacts"]
                assert "redacts" not in ev["content"]
            assert by_id[target]["type"] == "m.room.message"
            assert ids.index(target) < ids.index(event_id(ev, version))
            assert summary["redacted"][target] == event_id(ev, version)
        pl = [ev for ev in events if ev["type"] == "m.room.power_levels"]
        creator = events[0]["sender"]
        for ev in pl:
            assert (creator in ev["content"]["users"]) == (vnum(version) < 12)

    def test_020_006_key_files(self, room):
        d = room["dir"]
        resp, keys = load_keys(d)
        names = sorted(r["server_name"] for r in resp)
        assert names == ["hs1.example", "hs2.example", "hs3.example", "hs4.example"]
        for r in resp:
            name = r["server_name"]
            key_id, vk = keys[name]
            signedjson.sign.verify_signed_json(r, name, vk)
            assert r["old_verify_keys"] == {} and r["valid_until_ts"] > 4e12
            with open(os.path.join(d, "keys", name + ".json")) as f:
                assert json.load(f) == r
            path = os.path.join(d, "keys", name + ".key")
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            with open(path) as f:
                sk = signedjson.key.read_signing_keys(f)[0]
            assert "ed25519:" + sk.version == key_id
            assert signedjson.key.encode_verify_key_base64(sk.verify_key) == \
                signedjson.key.encode_verify_key_base64(vk)


def test_020_010_deterministic(build_env, tmp_path):
    a = gen(build_env, tmp_path / "a", "10", seed=42)
    b = gen(build_env, tmp_path / "b", "10", seed=42, extra=("--threads", "0"))
    c = gen(build_env, tmp_path / "c", "10", seed=43)
    for name in ("room.jsonl", "expected.jsonl", "expected.json", "keys/all.json",
                 "keys/hs2.example.key"):
        with open(a / name, "rb") as fa, open(b / name, "rb") as fb:
            assert fa.read() == fb.read(), name
    with open(a / "room.jsonl", "rb") as fa, open(c / "room.jsonl", "rb") as fc:
        assert fa.read() != fc.read()
    with open(a / "keys/hs1.example.key") as fa, open(c / "keys/hs1.example.key") as fc:
        assert fa.read() != fc.read()


def test_020_011_sampled_expectations(build_env, tmp_path):
    d = gen(build_env, tmp_path / "big", "12", events=8000, branchiness=0.1)
    with open(d / "expected.json") as f:
        summary = json.load(f)
    with open(d / "expected.jsonl") as f:
        expect = [json.loads(line) for line in f]
    assert summary["events"] == 8000 and summary["sample_every"] >= 2
    assert 1500 < len(expect) < 3000
    assert [x["i"] for x in expect[:200]] == list(range(200))
    assert all(x["i"] < y["i"] for x, y in zip(expect, expect[1:]))
    _, events = load_room(d)
    assert len(events) == 8000
    for x in expect[::50]:
        assert event_id(events[x["i"]], "12") == x["event_id"]


@pytest.mark.parametrize("args", [
    [], ["--out"], ["--out", "x", "--events", "5"], ["--out", "x", "--room-version", "99"],
    ["--out", "x", "--branchiness", "1.5"], ["--out", "x", "--servers", "0"],
    ["--out", "x", "--events", "-3"], ["--out", "x", "--bogus"],
])
def test_020_012_usage_errors(build_env, tmp_path, args):
    r = subprocess.run([build_env.cli, "gen-room", *args], cwd=tmp_path,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       env=build_env.sanitizer_env(str(tmp_path)))
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("matrix-fed: ")
    assert not os.path.exists(tmp_path / "x")


def test_020_013_versions_and_seeds_give_other_rooms(build_env, tmp_path):
    """Rooms of different seeds or versions do not share a room ID, nor (in
    versions 1 and 2, whose event IDs are random) an event ID, so that they
    can be imported into one database: the seed equal to the version for
    each version, one seed for every version, and pairs such as seed 688 with
    version 3 and seed 689 with version 2, whose seed and version characters
    XOR to the same value."""
    versions = [str(v) for v in range(1, 13)]
    made = list(dict.fromkeys([(v, int(v)) for v in versions] + [(v, 7) for v in versions]
                              + [("3", 688), ("2", 689), ("1", 2), ("2", 1), ("11", 5),
                                 ("10", 5)]))
    rooms, event_ids = {}, {}
    for version, seed in made:
        d = gen(build_env, tmp_path / f"r{version}-{seed}", version, seed=seed, events=6)
        _, events = load_room(d)
        room_id = events[1]["room_id"]
        assert room_id not in rooms, f"v{version} seed {seed}: the room of {rooms.get(room_id)}"
        rooms[room_id] = (version, seed)
        for ev in events:
            if "event_id" in ev:
                assert ev["event_id"] not in event_ids, \
                    f"v{version} seed {seed}: {ev['event_id']} also in {event_ids[ev['event_id']]}"
                event_ids[ev["event_id"]] = (version, seed)
    assert len(rooms) == len(made)
