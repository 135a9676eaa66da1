# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Events with unusual but valid content, as homeservers send them:
unicode in keys and values (keys sorted by code point, astral characters,
combining marks), JSON written with \\u escapes (ensure_ascii, as some
implementations send), integers at the edges of each version's range (v1-v5
parse any 64-bit integer; v6+ canonical JSON allows +-(2^53 - 1)), floats in
v1-v5 content (hashed and signed as Python's canonicaljson, i.e. the reference
homeserver, encodes them), an empty state_key, unicode state keys, and IDs at
the spec's 255-byte limit. Each event is signed here with python3-signedjson;
the import must accept and verify every one, and /event must serve the bytes
imported."""
import json

import pytest

from mxftest.vroom import db_rejected, db_unverified, import_rooms, serve
from mxftest.matrix import q
from mxftest.vbuilder import Keys, VRoom

A = "@admin:hs1.example"
VERSIONS = ["1", "3", "5", "6", "10", "11"]

UNICODE = {"body": "h\u00e9llo \U0001F600 \u2028 \u0301e", "\u043a\u043b\u044e\u0447": "\u0437",
           "\u00e9": 1, "e\u0301": 2, "\U0001F600": "astral key", "\uffff": "bmp max",
           "\u007f": "del", "a\"b\\c": "quote", "\t": "tab key", "nul": "x\u0000y",
           "msgtype": "m.text"}


def build(keys, v):
    n = int(v)
    # room ID of exactly 255 bytes
    local = "r" + v + "x" * (255 - len("!r" + v + ":hs1.example"))
    r = VRoom(v, keys, f"!{local}:hs1.example")
    assert len(r.room_id) == 255
    r.create(A)
    r.join(A)
    r.make("m.room.power_levels", A, {"users": {A: 100}}, state_key="")
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    cases = {}
    cases["unicode"] = r.make("m.room.message", A, UNICODE)
    ints = {"max53": 2**53 - 1, "min53": -(2**53 - 1), "zero": 0, "neg": -1}
    if n <= 5:
        ints.update({"big": 2**53, "bigger": 2**62, "max63": 2**63 - 1, "min63": -2**63})
    cases["ints"] = r.make("m.room.message", A, dict(ints, msgtype="m.text", body="ints"))
    if n <= 5:
        floats = {"one": 1.0, "tenth": 0.1, "e20": 1e20, "e16": 1e16, "e15": 1e15,
                  "small": 1e-7, "e5": 1e-5, "mixed": 123456789.123, "negzero": -0.0,
                  "denorm": 5e-324, "huge": 1.7976931348623157e308, "third": 1 / 3}
        cases["floats"] = r.make("m.room.message", A, dict(floats, msgtype="m.text",
                                                           body="floats"))
    cases["empty_sk"] = r.make("org.example.custom", A, {"k": "v"}, state_key="")
    cases["unicode_sk"] = r.make("org.example.custom", A, {"k": "u"},
                                 state_key="\u043a\U0001F600")
    cases["long_type"] = r.make("t" * 255, A, {"k": "long type"})
    cases["long_sk"] = r.make("org.example.custom", A, {"k": "l"}, state_key="s" * 255)
    cases["nested"] = r.make("m.room.message", A, {"msgtype": "m.text", "body": "deep",
                                                   "a": [[[{"b": [{}, [], None, True, False]}]]]})
    r.msg(A, "end")
    return r, cases


@pytest.fixture(scope="module")
def rooms(build_env, postgres, workdir):
    keys = Keys()
    out = {v: build(keys, v) for v in VERSIONS}
    import_rooms(build_env, postgres, workdir, "t904", [r for r, _ in out.values()], keys)
    # the same events written with \u escapes for everything not ASCII
    return keys, out


@pytest.fixture(scope="module")
def fed(httpd_factory, postgres, signing_key, backend, rooms):
    yield from serve(httpd_factory, postgres, signing_key, backend, rooms[0], "httpd-057")


@pytest.mark.parametrize("v", VERSIONS)
def test_057_001_accepted_and_served(rooms, fed, postgres, v):
    r, cases = rooms[1][v]
    assert db_rejected(postgres, r.room_id) == {}
    assert db_unverified(postgres, r.room_id) == set()
    for name, eid in cases.items():
        resp = fed.event("hs1.example", r.room_id, eid)
        assert resp.status == 200, (name, resp)
        raw = json.dumps(r.by_id[eid], separators=(",", ":"), ensure_ascii=False)
        assert raw in resp.body, name
        assert resp.json["pdus"][0] == r.by_id[eid], name


@pytest.mark.parametrize("v", VERSIONS)
def test_057_002_state_with_odd_keys(rooms, fed, v):
    r, cases = rooms[1][v]
    last = r.events[-1][0]
    resp = fed.get("hs1.example",
                   f"/_matrix/federation/v1/state_ids/{q(r.room_id)}?event_id={q(last)}")
    assert resp.status == 200, resp
    want = {eid for (t, sk), eid in r.state.items()}
    assert set(resp.json["pdu_ids"]) == want


@pytest.fixture(scope="module")
def escaped_room(build_env, postgres, workdir, rooms):
    """The unicode events of a fresh room, each line written with ensure_ascii
    (\\uXXXX escapes, surrogate pairs for astral characters), as some
    implementations serialise."""
    keys = rooms[0]
    out = {}
    for v in ["1", "5", "10", "11"]:
        r = VRoom(v, keys, f"!esc{v}:hs1.example")
        r.create(A)
        r.join(A)
        r.make("m.room.power_levels", A, {"users": {A: 100}}, state_key="")
        e = r.make("m.room.message", A, UNICODE)
        s = r.make("org.example.custom", A, {"k": "\u00e9"}, state_key="\u043a\U0001F600")
        r.msg(A, "end")
        out[v] = (r, [e, s])
    import os
    import subprocess
    d = os.path.join(workdir, "vrooms", "t904esc")
    os.makedirs(d, exist_ok=True)
    keys.write_responses(os.path.join(d, "keys.json"))
    path = os.path.join(d, "room.jsonl")
    with open(path, "w") as f:
        for r, _ in out.values():
            for _, ev in r.events:
                f.write(json.dumps(ev, separators=(",", ":"), ensure_ascii=True) + "\n")
    p = subprocess.run([build_env.cli, "import", "--quiet", "--db", postgres.conninfo(),
                        "--keys", os.path.join(d, "keys.json"), path],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.returncode == 0, p.stderr
    return out


@pytest.mark.parametrize("v", ["1", "5", "10", "11"])
def test_057_003_escaped_lines(escaped_room, fed, postgres, v):
    r, evs = escaped_room[v]
    assert db_rejected(postgres, r.room_id) == {}
    assert db_unverified(postgres, r.room_id) == set()
    for eid in evs:
        resp = fed.event("hs1.example", r.room_id, eid)
        assert resp.status == 200, resp
        assert resp.json["pdus"][0] == r.by_id[eid]
