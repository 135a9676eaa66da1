# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Server ACLs (m.room.server_acl schema and server-server-api
"Server Access Control Lists") end to end, from ACL events imported with
the room (not written into the database by hand): the port is not
considered, matching is case-insensitive, allow_ip_literals false denies IP
literals and a non-boolean counts as true, a redacted ACL denies everyone."""
import hashlib
import json
import os
import subprocess

import canonicaljson
import pytest
import signedjson.sign

from conftest import SERVER_NAME
from mxftest.builder import Keys, RoomBuilder, b64, b64u, basic_room, redact_v10
from mxftest.matrix import q, xmatrix

FED = "/_matrix/federation/v1"
ADMIN = "@admin:hs1.example"
PORTED = "@p:hs4.example:8448"
IPLIT = "@i:127.0.0.5"
OK = "@o:hs6.example"


def make_with(b, type_, sender, content, prev, auth, state_key=None, extra=None):
    """RoomBuilder.make with extra top-level keys (a v1-v10 redaction's redacts)."""
    depth = 1 + max(b.by_id[p]["depth"] for p in prev)
    b.ts += 1
    server = sender.split(":", 1)[1]
    ev = {"auth_events": list(auth), "content": content, "depth": depth, "origin": server,
          "origin_server_ts": b.ts, "prev_events": list(prev), "room_id": b.room_id,
          "sender": sender, "type": type_}
    ev.update(extra or {})
    if state_key is not None:
        ev["state_key"] = state_key
    ev["hashes"] = {"sha256": b64(hashlib.sha256(canonicaljson.encode_canonical_json(ev)).digest())}
    ev["signatures"] = signedjson.sign.sign_json(dict(redact_v10(ev)), server,
                                                 b.keys.get(server))["signatures"]
    red = redact_v10(ev)
    red.pop("signatures", None)
    eid = "$" + b64u(hashlib.sha256(canonicaljson.encode_canonical_json(red)).digest())
    b.events.append((eid, ev))
    b.by_id[eid] = ev
    if state_key is not None:
        b.state[(type_, state_key)] = eid
    return eid


def acl_room(keys, room_id, acl, redact_acl=False):
    b = RoomBuilder(room_id, keys=keys)
    last = basic_room(b, admin=ADMIN)
    for u in (PORTED, IPLIT, OK):
        last = b.make("m.room.member", u, {"membership": "join"}, [last],
                      b.auth_for("m.room.member", u, u, "join"), state_key=u)
    a = b.make("m.room.server_acl", ADMIN, acl, [last], b.auth_for("m.room.server_acl", ADMIN),
               state_key="")
    last = a
    if redact_acl:
        last = make_with(b, "m.room.redaction", ADMIN, {}, [a],
                         b.auth_for("m.room.redaction", ADMIN), extra={"redacts": a})
    last = b.make("m.room.message", ADMIN, {"body": "x", "msgtype": "m.text"}, [last],
                  b.auth_for("m.room.message", ADMIN))
    return b, last


@pytest.fixture(scope="module")
def acl_rooms(build_env, postgres, workdir):
    keys = Keys()
    rooms = {
        "strict": acl_room(keys, "!acl1:hs1.example",
                           {"allow": ["*"], "deny": ["HS4.Example"], "allow_ip_literals": False}),
        "ipstring": acl_room(keys, "!acl2:hs1.example",
                             {"allow": ["*"], "allow_ip_literals": "false"}),
        "redacted": acl_room(keys, "!acl3:hs1.example", {"allow": ["*"]}, redact_acl=True),
        "globs": acl_room(keys, "!acl4:hs1.example",
                          {"allow": ["hs?.EXAMPLE", "127.0.0.*"], "deny": ["hs6*"]}),
    }
    d = os.path.join(workdir, "acl")
    os.makedirs(d, exist_ok=True)
    keyfile = os.path.join(d, "keys.json")
    keys.write_responses(keyfile)
    for name, (b, _) in rooms.items():
        path = os.path.join(d, f"{name}.jsonl")
        b.write(path)
        subprocess.run([build_env.cli, "import", "--quiet", "--db", postgres.conninfo(),
                        "--keys", keyfile, path], check=True, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    return keys, rooms


def call(httpd, keys, server, room_id, tip):
    out = {}
    paths = {
        "state_ids": f"{FED}/state_ids/{q(room_id)}?event_id={q(tip)}",
        "backfill": f"{FED}/backfill/{q(room_id)}?v={q(tip)}&limit=2",
        "event_auth": f"{FED}/event_auth/{q(room_id)}/{q(tip)}",
        "state": f"{FED}/state/{q(room_id)}?event_id={q(tip)}",
    }
    for name, path in paths.items():
        r = httpd.get(path, headers={"Authorization": xmatrix(server, keys.get(server),
                                                              SERVER_NAME, "GET", path)})
        out[name] = (r.status, r.json.get("errcode"))
    path = f"{FED}/get_missing_events/{q(room_id)}"
    body = {"earliest_events": [], "latest_events": [tip]}
    r = httpd.post(path, body=json.dumps(body), headers={"Authorization": xmatrix(
        server, keys.get(server), SERVER_NAME, "POST", path, body)})
    out["gme"] = (r.status, r.json.get("errcode"))
    return out


ALLOWED = (200, None)
DENIED = (403, "M_FORBIDDEN")


@pytest.mark.parametrize("room,server,expect", [
    ("strict", "hs4.example:8448", DENIED),     # port not considered, case-insensitive
    ("strict", "127.0.0.5", DENIED),            # allow_ip_literals false
    ("strict", "hs6.example", ALLOWED),
    ("strict", "hs1.example", ALLOWED),
    ("ipstring", "127.0.0.5", ALLOWED),         # not a boolean: defaults to true
    ("redacted", "hs1.example", DENIED),        # redacted ACL: no allow, deny all
    ("redacted", "hs6.example", DENIED),
    ("globs", "hs4.example:8448", ALLOWED),     # hs? matches hs4, port ignored
    ("globs", "hs6.example", DENIED),           # deny before allow
    ("globs", "127.0.0.5", ALLOWED),
])
def test_063_001_acl(httpd, acl_rooms, room, server, expect):
    keys, rooms = acl_rooms
    b, tip = rooms[room]
    got = call(httpd, keys, server, b.room_id, tip)
    assert got == {k: expect for k in got}, got
