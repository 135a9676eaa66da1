# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Cross-checks the core's event code (mxf_event: content hashes, redaction,
reference hashes / event IDs, v12 room IDs, event signing and signature
checks) against Python, for random events of every room version 1-12.

What comes from where on the Python side:
  - canonicaljson (Debian python3-canonicaljson): canonical JSON bytes;
  - signedjson (python3-signedjson) + nacl: JSON signing / verification;
  - hashlib: SHA-256.
Neither canonicaljson nor signedjson knows anything about *events*: they do
not redact, hash or compute event IDs. The redaction algorithm, the content
hash, the reference hash and the event ID rules below are a small
reimplementation written from the spec text (client-server API
"Redactions" and the room version pages v1..v12; server-server API
"Calculating the content hash / reference hash", "Validating hashes and
signatures on received events"), independently of the C code. Any
difference fails.

All requests go through one pipe to t/tools/mxf_core_tool.
"""
import base64
import copy
import hashlib
import json
import os
import random
import subprocess

import canonicaljson
import pytest

from mxftest.env import core_tool_path
import signedjson.key
import signedjson.sign

SEED = 20240612
EVENTS_PER_VERSION = 120
VERSIONS = [str(v) for v in range(1, 13)]
SPEC_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
MAX_SAFE = 2**53 - 1


def tool_path():
    return core_tool_path()


def run_tool(requests):
    """Sends all requests through one tool process; returns the results."""
    lines = [json.dumps(dict(req, id=i), ensure_ascii=(i % 2 == 0))
             for i, req in enumerate(requests)]
    proc = subprocess.run([tool_path()], input=("\n".join(lines) + "\n").encode("utf-8"),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    out = proc.stdout.split(b"\n")
    assert out[-1] == b""
    results = [json.loads(line) for line in out[:-1]]
    assert len(results) == len(requests)
    for i, res in enumerate(results):
        assert res.get("id") == i, res
        del res["id"]
    return results


def b64(data, urlsafe=False):
    enc = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return enc(data).decode("ascii").rstrip("=")


# ------------------------------------------------ the spec's rules, in Python

# Top-level keys the redaction algorithm keeps (client-server API
# "Redactions"; v11 dropped origin, membership and prev_state).
TOP_ALL = {"event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
           "signatures", "depth", "prev_events", "auth_events", "origin_server_ts"}
TOP_PRE_V11 = {"origin", "membership", "prev_state"}

PL_KEYS = ["ban", "events", "events_default", "kick", "redact", "state_default", "users",
           "users_default"]


def content_rule(version, etype):
    """(keys kept, keep everything) for content of type etype in room version."""
    v = int(version)
    if etype == "m.room.member":
        keys = ["membership"]
        if v >= 9:                                       # v9 redaction rules
            keys.append("join_authorised_via_users_server")
        return keys, False
    if etype == "m.room.create":
        return (["creator"], False) if v <= 10 else ([], True)   # v11: all keys
    if etype == "m.room.join_rules":
        return (["join_rule", "allow"] if v >= 8 else ["join_rule"]), False
    if etype == "m.room.power_levels":
        return PL_KEYS + (["invite"] if v >= 11 else []), False
    if etype == "m.room.aliases":
        return (["aliases"] if v <= 5 else []), False    # removed in v6
    if etype == "m.room.history_visibility":
        return ["history_visibility"], False
    if etype == "m.room.redaction":
        return (["redacts"] if v >= 11 else []), False
    return [], False


def py_redact(event, version):
    v = int(version)
    keep = TOP_ALL | (TOP_PRE_V11 if v <= 10 else set())
    out = {k: copy.deepcopy(val) for k, val in event.items() if k in keep}
    content = event.get("content")
    # The redacted form always has a content object: {} where the event has
    # none or one that is not an object (Synapse's prune_event_dict; the
    # signing example of the spec's RST appendix, test_011_004).
    out["content"] = {}
    if isinstance(content, dict):
        etype = event.get("type")
        keys, keep_all = content_rule(version, etype if isinstance(etype, str) else None)
        if keep_all:
            new = copy.deepcopy(content)
        else:
            new = {k: copy.deepcopy(content[k]) for k in keys if k in content}
            # v11: m.room.member keeps third_party_invite (an object) with its signed
            # member only; {} when it has none (Synapse and gomatrixserverlib alike).
            if v >= 11 and etype == "m.room.member":
                tpi = content.get("third_party_invite")
                if isinstance(tpi, dict):
                    new["third_party_invite"] = ({"signed": copy.deepcopy(tpi["signed"])}
                                                 if "signed" in tpi else {})
        out["content"] = new
    return out


def content_hash_input(event):
    # Without the spec's three keys, and the three the reference homeserver's
    # compute_content_hash also pops.
    return {k: v for k, v in event.items()
            if k not in ("unsigned", "signatures", "hashes", "age_ts", "outlier", "destinations")}


def py_content_hash(event):
    return hashlib.sha256(canonicaljson.encode_canonical_json(content_hash_input(event))).digest()


def py_reference_hash(event, version):
    r = py_redact(event, version)
    for k in ("signatures", "unsigned", "age_ts"):
        r.pop(k, None)
    return hashlib.sha256(canonicaljson.encode_canonical_json(r)).digest()


def py_event_id(event, version):
    v = int(version)
    if v <= 2:
        return event["event_id"]
    return "$" + b64(py_reference_hash(event, version), urlsafe=(v >= 4))


def py_sign(event, version, server, skey):
    """Server-server API 'Adding hashes and signatures to outgoing events'."""
    event = copy.deepcopy(event)
    event["hashes"] = {"sha256": b64(py_content_hash(event))}
    redacted = py_redact(event, version)
    signed = signedjson.sign.sign_json(redacted, server, skey)
    event["signatures"] = signed["signatures"]
    return event


# -------------------------------------------------------------- generators

SPECIAL_TYPES = ["m.room.member", "m.room.create", "m.room.join_rules",
                 "m.room.power_levels", "m.room.aliases", "m.room.history_visibility",
                 "m.room.redaction"]
OTHER_TYPES = ["m.room.message", "m.room.name", "m.room.topic", "m.room.third_party_invite",
               "m.room.server_acl", "org.example.custom", "m.room.member.extra",
               "M.room.create", ""]
# Every key any content rule mentions, so random content exercises them all.
CONTENT_KEYS = sorted({"membership", "join_authorised_via_users_server", "third_party_invite",
                       "creator", "join_rule", "allow", "aliases", "history_visibility",
                       "redacts", "invite", "notifications", "room_version", "m.federate",
                       "predecessor", "additional_creators", "displayname", "avatar_url",
                       "reason", "body", "msgtype", "name", "topic", *PL_KEYS})
TOP_EXTRA = ["origin", "membership", "prev_state", "unsigned", "redacts", "age_ts",
             "outlier", "room_version", "extra", "age", "destinations", "event_id"]


def rand_str(rng, maxlen=10):
    chars = []
    for _ in range(rng.randint(0, maxlen)):
        r = rng.random()
        if r < 0.6:
            chars.append(chr(rng.randint(0x20, 0x7e)))
        elif r < 0.7:
            chars.append(chr(rng.randint(1, 0x1f)))
        elif r < 0.9:
            c = rng.randint(0x80, 0xFFFF)
            chars.append(chr(c) if not 0xD800 <= c <= 0xDFFF else "\u00e9")
        else:
            chars.append(chr(rng.randint(0x10000, 0x10FFFF)))
    return "".join(chars)


def rand_value(rng, depth, big_ints):
    r = rng.random()
    if depth > 0 and r < 0.15:
        return {rand_str(rng, 6): rand_value(rng, depth - 1, big_ints)
                for _ in range(rng.randint(0, 4))}
    if depth > 0 and r < 0.25:
        return [rand_value(rng, depth - 1, big_ints) for _ in range(rng.randint(0, 4))]
    if r < 0.55:
        return rand_str(rng)
    if r < 0.85:
        if big_ints and rng.random() < 0.1:
            if rng.random() < 0.5:
                # A real, as legacy (v1-v5) events may hold.
                return rng.choice([50.0, -0.0, 1.5, 1e16, 1e-5, 0.1, 1e10,
                                   rng.uniform(-1e6, 1e6)])
            return rng.randint(-2**62, 2**62)
        return rng.randint(-MAX_SAFE, MAX_SAFE)
    return rng.choice([True, False, None])


def rand_server(rng):
    return rng.choice(["one.example", "two.example:8448", "1.2.3.4", "[::1]:80", "domain"])


def rand_user(rng, server=None):
    return "@" + rng.choice(["a", "bob", "c.d", "X Y"]) + ":" + (server or rand_server(rng))


def rand_content(rng, etype, version, big_ints):
    content = {}
    for k in CONTENT_KEYS:
        if rng.random() < 0.35:
            content[k] = rand_value(rng, 2, big_ints)
    if etype == "m.room.member":
        content["membership"] = rng.choice(["join", "invite", "leave", "ban", "knock"])
        if rng.random() < 0.5:
            content["join_authorised_via_users_server"] = rand_user(rng)
        else:
            content.pop("join_authorised_via_users_server", None)
        r = rng.random()
        if r < 0.3:
            content["third_party_invite"] = {"display_name": rand_str(rng),
                                             "signed": {"mxid": rand_user(rng),
                                                        "token": rand_str(rng),
                                                        "signatures": {}}}
        elif r < 0.4:
            content["third_party_invite"] = {"display_name": rand_str(rng)}
        elif r < 0.45:
            content["third_party_invite"] = rand_str(rng)
        else:
            content.pop("third_party_invite", None)
    for _ in range(rng.randint(0, 3)):
        content[rand_str(rng, 8)] = rand_value(rng, 2, big_ints)
    return content


def rand_event(rng, version):
    v = int(version)
    # v1-v5 may carry reals and integers beyond 2^53 (canonicaljson writes
    # reals with repr(), which is what hashes/signatures of such events were
    # made over); v6+ must refuse them (a few such events check that).
    big_ints = rng.random() < (0.2 if v <= 5 else 0.03)
    etype = rng.choice(SPECIAL_TYPES * 2 + OTHER_TYPES)
    sender_server = rand_server(rng)
    ev = {
        "type": etype,
        "room_id": "!" + rand_str(rng, 5).replace(":", "") + ":" + rand_server(rng),
        "sender": rand_user(rng, sender_server),
        "origin_server_ts": rng.randint(0, 2**41),
        "depth": rng.randint(1, 10**6),
        "content": rand_content(rng, etype, version, big_ints),
        "prev_events": [], "auth_events": [],
    }
    if etype in SPECIAL_TYPES or rng.random() < 0.3:
        ev["state_key"] = "" if etype != "m.room.member" else ev["sender"]
    if v <= 2:
        ev["event_id"] = "$" + str(rng.randint(0, 10**9)) + ":" + rand_server(rng)
        ev["prev_events"] = [["$p%d:x" % i, {"sha256": "abc"}] for i in range(rng.randint(0, 3))]
    else:
        ev["prev_events"] = ["$" + b64(rng.randbytes(32), v >= 4)
                             for _ in range(rng.randint(0, 3))]
    for k in TOP_EXTRA:
        if rng.random() < 0.3:
            if k == "event_id" and v <= 2:
                continue
            ev[k] = rand_value(rng, 2, big_ints) if k != "unsigned" else {"age": 5}
    if etype == "m.room.redaction" and rng.random() < 0.7:
        ev["redacts"] = "$" + rand_str(rng, 6)
    if v >= 12 and etype == "m.room.create" and rng.random() < 0.7:
        ev.pop("room_id", None)
        ev["state_key"] = ""
    if rng.random() < 0.5:
        ev["hashes"] = {"sha256": b64(rng.randbytes(32))}
    if rng.random() < 0.5:
        ev["signatures"] = {rand_server(rng): {"ed25519:x": b64(rng.randbytes(64))}}
    return ev


def has_big_int(value):
    """Whether value holds a number canonical JSON forbids (v6+): a real or
    an integer beyond 2^53 - 1."""
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return True
    if isinstance(value, int):
        return abs(value) > MAX_SAFE
    if isinstance(value, dict):
        return any(has_big_int(v) for v in value.values())
    if isinstance(value, list):
        return any(has_big_int(v) for v in value)
    return False


def generate():
    rng = random.Random(SEED)
    return [(version, rand_event(rng, version))
            for version in VERSIONS for _ in range(EVENTS_PER_VERSION)]


# ------------------------------------------------------------------- tests

def test_mxf_011_001_hashes_redaction_ids():
    """Content hash, redacted form, reference hash, event ID (and v12 room ID)
    of random events of every room version equal the Python reimplementation."""
    events = generate()
    reqs = []
    for version, ev in events:
        for op in ("content_hash", "redact", "event_id"):
            reqs.append({"op": op, "room_version": version, "event": ev})
    results = run_tool(reqs)
    checked_strict = 0
    for n, (version, ev) in enumerate(events):
        ch, red, eid = results[3 * n:3 * n + 3]
        label = f"v{version} event {n}: {json.dumps(ev)[:300]}"
        if int(version) >= 6 and has_big_int(content_hash_input(ev)):
            # Not canonical JSON in a strict room: the C side must refuse to
            # hash it; the event ID only covers the redacted form.
            assert not ch["ok"], label
            checked_strict += 1
            if has_big_int(py_redact(ev, version)):
                assert not eid["ok"], label
                continue
            assert eid["ok"], (label, eid)
            assert eid["event_id"] == py_event_id(ev, version), label
            continue
        # Redaction never fails (it does not encode).
        assert red["ok"], (label, red)
        assert red["redacted"] == py_redact(ev, version), label
        assert ch["ok"], (label, ch)
        assert ch["hash"] == b64(py_content_hash(ev)), label
        want_match = ev.get("hashes", {}).get("sha256") == ch["hash"]
        assert ch["match"] == want_match, label
        assert eid["ok"], (label, eid)
        assert eid["reference_hash"] == b64(py_reference_hash(ev, version)), label
        assert eid["event_id"] == py_event_id(ev, version), label
        if int(version) >= 12 and ev["type"] == "m.room.create" and "room_id" not in ev:
            assert eid["room_id"] == "!" + py_event_id(ev, version)[1:], label
        else:
            assert "room_id" not in eid, label
    # The generator must have exercised every special type in every version.
    seen = {(version, ev["type"]) for version, ev in events}
    for version in VERSIONS:
        for etype in SPECIAL_TYPES:
            assert (version, etype) in seen, (version, etype)
    assert 0 < checked_strict < len(events) // 10


def py_required(ev, version):
    """Servers whose signatures an event needs (server-server API, "Validating
    hashes and signatures on received events"; v8+ restricted joins)."""
    v = int(version)
    content = ev.get("content") if isinstance(ev.get("content"), dict) else {}
    member = ev.get("type") == "m.room.member"
    sender_server = ev["sender"].split(":", 1)[1]
    out = []
    third_party_invite = (member and content.get("membership") == "invite"
                          and isinstance(content.get("third_party_invite"), dict))
    if not third_party_invite:
        out.append(sender_server)
    if v <= 2:
        s = ev["event_id"].split(":", 1)[1]
        if s != sender_server and s not in out:
            out.append(s)
    if (v >= 8 and member and content.get("membership") == "join"
            and "join_authorised_via_users_server" in content):
        s = content["join_authorised_via_users_server"].split(":", 1)[1]
        if s not in out:
            out.append(s)
    return out


def test_mxf_011_002_event_signatures():
    """C event signatures equal Python's (redact + signedjson), and each side
    verifies the other's; tampering with a protected key fails in C."""
    rng = random.Random(SEED + 1)
    seeds = [b64(rng.randbytes(32)) for _ in range(4)]
    events = [(v, ev) for v, ev in generate()
              if int(v) <= 5 or not has_big_int(ev)][::2]
    reqs, expect = [], []
    for n, (version, ev) in enumerate(events):
        seed = seeds[n % len(seeds)]
        server = ev["sender"].split(":", 1)[1]
        skey = signedjson.key.decode_signing_key_base64("ed25519", "k%d" % (n % 4), seed)
        vk = b64(signedjson.key.get_verify_key(skey).encode())
        ev = copy.deepcopy(ev)
        ev.pop("signatures", None)
        required = py_required(ev, version)
        # Python signs as every required server (one key for all of them).
        py = copy.deepcopy(ev)
        for s in required:
            py = py_sign(py, version, s, skey)
        keys = {s: {"ed25519:" + skey.version: vk} for s in required + [server]}
        reqs.append({"op": "sign_event", "room_version": version, "event": ev, "seed": seed,
                     "server": server, "key_version": skey.version})
        reqs.append({"op": "verify_event", "room_version": version, "event": py,
                     "keys": keys})
        tampered = copy.deepcopy(py)
        tampered["origin_server_ts"] = py["origin_server_ts"] + 1
        reqs.append({"op": "verify_event", "room_version": version, "event": tampered,
                     "keys": keys})
        expect.append((version, ev, skey, server, required))
    results = run_tool(reqs)
    n_bad = 0
    for n, (version, ev, skey, server, required) in enumerate(expect):
        signed, ver, bad = results[3 * n:3 * n + 3]
        label = f"v{version} event {n}: {json.dumps(ev)[:300]}"
        assert signed["ok"], (label, signed)
        c_signed = signed["signed"]
        # Same hash and same signature as Python.
        py_one = py_sign(ev, version, server, skey)
        assert c_signed["hashes"] == py_one["hashes"], label
        assert c_signed["signatures"] == py_one["signatures"], label
        # Nothing else changed: content is not stripped, unsigned kept.
        assert {k: v for k, v in c_signed.items() if k not in ("hashes", "signatures")} == \
            {k: v for k, v in ev.items() if k not in ("hashes", "signatures")}, label
        # Python verifies C's signature over the redacted form.
        signedjson.sign.verify_signed_json(py_redact(c_signed, version), server,
                                           signedjson.key.get_verify_key(skey))
        # C verifies Python's (needing exactly the same servers)...
        assert ver["ok"], (label, ver)
        assert ver["required"] == required, label
        # ...and rejects the tampered copy, unless nobody had to sign.
        if required:
            assert not bad["ok"] and bad["status"] == "bad", (label, bad)
            n_bad += 1
        else:
            assert bad["ok"], (label, bad)
    assert n_bad > len(expect) // 2


def test_mxf_011_003_restricted_join_needs_authorising_server():
    """v8+: a join via join_authorised_via_users_server needs that server's
    signature too; v7 does not care."""
    rng = random.Random(SEED + 2)
    seed_a, seed_b = b64(rng.randbytes(32)), b64(rng.randbytes(32))
    ka = signedjson.key.decode_signing_key_base64("ed25519", "a", seed_a)
    kb = signedjson.key.decode_signing_key_base64("ed25519", "b", seed_b)
    keys = {"one.example": {"ed25519:a": b64(signedjson.key.get_verify_key(ka).encode())},
            "two.example": {"ed25519:b": b64(signedjson.key.get_verify_key(kb).encode())}}
    reqs, cases = [], []
    for version in VERSIONS[2:]:
        ev = {"type": "m.room.member", "sender": "@a:one.example",
              "state_key": "@a:one.example", "room_id": "!r:one.example",
              "origin_server_ts": 1, "depth": 2, "prev_events": [], "auth_events": [],
              "content": {"membership": "join",
                          "join_authorised_via_users_server": "@b:two.example"}}
        only_a = py_sign(ev, version, "one.example", ka)
        both = py_sign(only_a, version, "two.example", kb)
        for label, e in (("only_a", only_a), ("both", both)):
            reqs.append({"op": "verify_event", "room_version": version, "event": e,
                         "keys": keys})
            cases.append((version, label))
    for (version, label), res in zip(cases, run_tool(reqs)):
        restricted = int(version) >= 8
        want_ok = label == "both" or not restricted
        assert res["ok"] == want_ok, (version, label, res)
        if not want_ok:
            assert res["status"] == "missing" and "two.example" in res["error"], res
        want_req = ["one.example", "two.example"] if restricted else ["one.example"]
        assert res["required"] == want_req, (version, label, res)


def test_mxf_011_004_event_without_content():
    """The signing example of the spec's earlier (RST) appendix: an event
    with no content, signed over its redacted form, which has "content": {}
    (as Synapse's prune_event_dict makes it). Content that is not an object
    is redacted to {} too."""
    event = {"event_id": "$0:domain", "origin": "domain", "origin_server_ts": 1000000,
             "type": "X", "unsigned": {"age_ts": 1000000}}
    skey = signedjson.key.decode_signing_key_base64("ed25519", "1", SPEC_SEED)
    odd = dict(event, content=[1], sender="@u:domain")
    r = run_tool([{"op": "sign_event", "room_version": "1", "event": event, "seed": SPEC_SEED,
                   "server": "domain", "key_version": "1"},
                  {"op": "sign_event", "room_version": "3", "event": odd, "seed": SPEC_SEED,
                   "server": "domain", "key_version": "1"}])
    assert r[0]["ok"], r[0]
    assert r[0]["signed"]["hashes"] == {"sha256": "6tJjLpXtggfke8UxFhAKg82QVkJzvKOVOOSjUDK4ZSI"}
    assert r[0]["signed"]["signatures"] == {"domain": {"ed25519:1": (
        "2Wptgo4CwmLo/Y8B8qinxApKaCkBG2fjTWB7AbP5Uy+aIbygsSdLOFzvdDjww8zUVKCmI02eP9xtyJxc/cLiBA")}}
    assert r[0]["signed"]["signatures"] == py_sign(event, "1", "domain", skey)["signatures"]
    assert r[1]["ok"], r[1]
    assert r[1]["signed"]["signatures"] == py_sign(odd, "3", "domain", skey)["signatures"]
