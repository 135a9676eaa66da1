# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""What the federation spec says of the read path, item by item (answers,
errors, X-Matrix, key documents, the notary, history visibility), on a
hand-built v10 room whose expectations are computed here, not by
matrix-fed."""
import hashlib
import json
import os
import subprocess
import time

import canonicaljson
import pytest
import signedjson.key
import signedjson.sign

from conftest import SERVER_NAME, spec_public_key
from mxftest.builder import Keys, RoomBuilder, basic_room, event_id_of, redact_v10
from mxftest.matrix import q, xmatrix

FED = "/_matrix/federation/v1"
ADMIN = "@admin:hs1.example"
BOB = "@bob:hs2.example"        # joins late, history "joined"
CAROL = "@carol:hs3.example"    # invited, never joins
ROOM = "!probe:hs1.example"
ROOM_ODD = "!odd:hs1.example"  # history_visibility value not understood


@pytest.fixture(scope="module")
def built(build_env, postgres, workdir):
    keys = Keys()
    b = RoomBuilder(ROOM, keys=keys)
    last = basic_room(b, admin=ADMIN, hv="joined")
    ev = {}
    ev["m1"] = b.make("m.room.message", ADMIN, {"body": "before bob", "msgtype": "m.text"},
                      [last], b.auth_for("m.room.message", ADMIN))
    ev["t1"] = b.make("m.room.topic", ADMIN, {"topic": "one"}, [ev["m1"]],
                      b.auth_for("m.room.topic", ADMIN), state_key="")
    ev["inv"] = b.make("m.room.member", ADMIN, {"membership": "invite"}, [ev["t1"]],
                       b.auth_for("m.room.member", ADMIN, CAROL, "invite"), state_key=CAROL)
    ev["m2"] = b.make("m.room.message", ADMIN, {"body": "carol invited", "msgtype": "m.text"},
                      [ev["inv"]], b.auth_for("m.room.message", ADMIN))
    ev["bj"] = b.make("m.room.member", BOB, {"membership": "join"}, [ev["m2"]],
                      b.auth_for("m.room.member", BOB, BOB, "join"), state_key=BOB)
    ev["t2"] = b.make("m.room.topic", ADMIN, {"topic": "two"}, [ev["bj"]],
                      b.auth_for("m.room.topic", ADMIN), state_key="")
    ev["m3"] = b.make("m.room.message", BOB, {"body": "after bob", "msgtype": "m.text"},
                      [ev["t2"]], b.auth_for("m.room.message", BOB))
    ev["m4"] = b.make("m.room.message", ADMIN, {"body": "last", "msgtype": "m.text"},
                      [ev["m3"]], b.auth_for("m.room.message", ADMIN))

    o = RoomBuilder(ROOM_ODD, keys=keys, ts0=1700000000000)
    olast = basic_room(o, admin=ADMIN, hv="x.unknown.value")
    odd = {}
    odd["m1"] = o.make("m.room.message", ADMIN, {"body": "odd before", "msgtype": "m.text"},
                       [olast], o.auth_for("m.room.message", ADMIN))
    odd["bj"] = o.make("m.room.member", BOB, {"membership": "join"}, [odd["m1"]],
                       o.auth_for("m.room.member", BOB, BOB, "join"), state_key=BOB)
    odd["m2"] = o.make("m.room.message", BOB, {"body": "odd after", "msgtype": "m.text"},
                       [odd["bj"]], o.auth_for("m.room.message", BOB))
    keys.get("hs2.example")
    keys.get("hs3.example")

    d = os.path.join(workdir, "probe")
    os.makedirs(d, exist_ok=True)
    keyfile = os.path.join(d, "keys.json")
    keys.write_responses(keyfile)
    for name, rb in (("main", b), ("odd", o)):
        path = os.path.join(d, f"{name}.jsonl")
        rb.write(path)
        subprocess.run([build_env.cli, "import", "--quiet", "--db", postgres.conninfo(),
                        "--keys", keyfile, path], check=True, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    return {"b": b, "ev": ev, "o": o, "odd": odd, "keys": keys}


class C:
    def __init__(self, httpd, origin, key):
        self.httpd, self.origin, self.key = httpd, origin, key

    def get(self, path):
        return self.httpd.get(path, headers={"Authorization": xmatrix(
            self.origin, self.key, SERVER_NAME, "GET", path)})

    def post(self, path, content):
        return self.httpd.post(path, body=json.dumps(content), headers={
            "Authorization": xmatrix(self.origin, self.key, SERVER_NAME, "POST", path, content)})


@pytest.fixture(scope="class")
def bob(httpd, built):
    return C(httpd, "hs2.example", built["keys"].get("hs2.example"))


def state_before(b, eid):
    """State before eid for a linear room: fold of the events before it."""
    st = {}
    for e, ev in b.events:
        if e == eid:
            return st
        if "state_key" in ev:
            st[(ev["type"], ev["state_key"])] = e
    raise KeyError(eid)


def auth_chain(b, eids):
    out, stack = set(), [a for e in eids for a in b.by_id[e]["auth_events"]]
    while stack:
        a = stack.pop()
        if a not in out:
            out.add(a)
            stack.extend(b.by_id[a]["auth_events"])
    return out


def raw(ev):
    return json.dumps(ev, separators=(",", ":"))


class TestProbe:
    # -------------------------------------------------- /state, /state_ids: state BEFORE
    @pytest.mark.parametrize("which", ["t1", "t2", "bj", "m3", "m4"])
    def test_061_001_state_ids_is_state_before(self, bob, built, which):
        b, eid = built["b"], built["ev"][which]
        r = bob.get(f"{FED}/state_ids/{q(ROOM)}?event_id={q(eid)}")
        assert r.status == 200, r
        assert r.header("Content-Type") == "application/json"
        st = set(state_before(b, eid).values())
        assert sorted(r.json.keys()) == ["auth_chain_ids", "pdu_ids"]
        assert set(r.json["pdu_ids"]) == st and len(r.json["pdu_ids"]) == len(st)
        assert eid not in r.json["pdu_ids"]
        assert set(r.json["auth_chain_ids"]) == auth_chain(b, st)

    def test_061_002_state_is_state_before_as_stored(self, bob, built):
        b, eid = built["b"], built["ev"]["t2"]
        r = bob.get(f"{FED}/state/{q(ROOM)}?event_id={q(eid)}")
        assert r.status == 200, r
        assert r.header("Content-Type") == "application/json"
        assert sorted(r.json.keys()) == ["auth_chain", "pdus"]
        st = set(state_before(b, eid).values())
        assert {event_id_of(p) for p in r.json["pdus"]} == st
        assert built["ev"]["t1"] in st
        # State PDUs are not visibility-filtered: served whole as received.
        for p in r.json["pdus"] + r.json["auth_chain"]:
            assert p == b.by_id[event_id_of(p)]
        assert {event_id_of(p) for p in r.json["auth_chain"]} == auth_chain(b, st)

    # -------------------------------------------------- /event_auth
    @pytest.mark.parametrize("which", ["m1", "bj", "m4"])
    def test_061_003_event_auth_exact(self, bob, built, which):
        b, eid = built["b"], built["ev"][which]
        r = bob.get(f"{FED}/event_auth/{q(ROOM)}/{q(eid)}")
        assert r.status == 200, r
        assert list(r.json.keys()) == ["auth_chain"]
        got = [event_id_of(p) for p in r.json["auth_chain"]]
        assert len(got) == len(set(got))
        assert set(got) == auth_chain(b, [eid])
        assert eid not in got

    # -------------------------------------------------- visibility for servers
    def test_061_004_joined_history_redacted_copy(self, bob, built):
        """m1 is before bob's join under "joined": a redacted copy, hashes and
        signatures kept, no unsigned; exactly the v10 redaction."""
        b, eid = built["b"], built["ev"]["m1"]
        r = bob.get(f"{FED}/event/{q(eid)}")
        assert r.status == 200, r
        assert sorted(r.json.keys()) == ["origin", "origin_server_ts", "pdus"]
        assert r.json["origin"] == SERVER_NAME
        assert isinstance(r.json["origin_server_ts"], int)
        assert abs(r.json["origin_server_ts"] - time.time() * 1000) < 60_000
        (pdu,) = r.json["pdus"]
        assert pdu == redact_v10(b.by_id[eid])
        # after the join: whole, byte for byte
        eid3 = built["ev"]["m3"]
        r = bob.get(f"{FED}/event/{q(eid3)}")
        assert raw(b.by_id[eid3]) in r.body

    def test_061_005_invited_server_before_join(self, httpd, built):
        """carol (hs3) was only invited; history "joined": every event is
        served redacted to hs3 -- but hs3 has no joined member, so the
        request is refused (403) before any visibility question."""
        c = C(httpd, "hs3.example", built["keys"].get("hs3.example"))
        r = c.get(f"{FED}/event/{q(built['ev']['m2'])}")
        assert r.status == 403 and r.json["errcode"] == "M_FORBIDDEN", r

    def test_061_006_unknown_history_visibility_is_shared(self, bob, built):
        o, eid = built["o"], built["odd"]["m1"]
        r = bob.get(f"{FED}/event/{q(eid)}")
        assert r.status == 200, r
        assert raw(o.by_id[eid]) in r.body, "an unknown history_visibility is 'shared'"

    # -------------------------------------------------- get_missing_events / backfill
    def test_061_007_gme_exact(self, bob, built):
        b, ev = built["b"], built["ev"]
        path = f"{FED}/get_missing_events/{q(ROOM)}"
        r = bob.post(path, {"earliest_events": [ev["t1"]], "latest_events": [ev["m4"]],
                            "limit": 10, "min_depth": 0})
        assert r.status == 200, r
        assert list(r.json.keys()) == ["events"]
        got = [event_id_of(p) for p in r.json["events"]]
        # oldest first, between t1 and m4 exclusive
        assert got == [ev["inv"], ev["m2"], ev["bj"], ev["t2"], ev["m3"]]
        # limit cuts: the nearest are kept
        r = bob.post(path, {"earliest_events": [], "latest_events": [ev["m4"]], "limit": 2})
        assert [event_id_of(p) for p in r.json["events"]] == [ev["t2"], ev["m3"]]
        # min_depth: nothing below it
        d = b.by_id[ev["bj"]]["depth"]
        r = bob.post(path, {"earliest_events": [], "latest_events": [ev["m4"]], "limit": 20,
                            "min_depth": d})
        assert [event_id_of(p) for p in r.json["events"]] == [ev["bj"], ev["t2"], ev["m3"]]

    def test_061_008_backfill_exact(self, bob, built):
        b, ev = built["b"], built["ev"]
        r = bob.get(f"{FED}/backfill/{q(ROOM)}?v={q(ev['m4'])}&limit=3")
        assert r.status == 200, r
        assert sorted(r.json.keys()) == ["origin", "origin_server_ts", "pdus"]
        assert [event_id_of(p) for p in r.json["pdus"]] == [ev["m4"], ev["m3"], ev["t2"]]

    # -------------------------------------------------- timestamp_to_event
    def test_061_009_timestamp_to_event(self, bob, built):
        b, ev = built["b"], built["ev"]
        ts = b.by_id[ev["m3"]]["origin_server_ts"]
        base = f"{FED}/timestamp_to_event/{q(ROOM)}"
        r = bob.get(f"{base}?ts={ts}&dir=f")
        assert r.status == 200 and r.json == {"event_id": ev["m3"], "origin_server_ts": ts}, r
        r = bob.get(f"{base}?ts={ts}&dir=b")
        assert r.json == {"event_id": ev["m3"], "origin_server_ts": ts}
        r = bob.get(f"{base}?ts={ts - 1}&dir=b")
        assert r.json["event_id"] == ev["t2"]
        r = bob.get(f"{base}?ts={ts + 1}&dir=f")
        assert r.json["event_id"] == ev["m4"]
        r = bob.get(f"{base}?ts={ts + 100}&dir=f")
        assert r.status == 404 and r.json["errcode"] == "M_NOT_FOUND"
        assert isinstance(r.json.get("error"), str)

    # -------------------------------------------------- errors carry both keys
    def test_061_010_every_error_has_errcode_and_error(self, bob, built):
        ev = built["ev"]
        cases = [
            bob.get(f"{FED}/state_ids/{q(ROOM)}"),
            bob.get(f"{FED}/state_ids/{q(ROOM)}?event_id={q('$nope')}"),
            bob.get(f"{FED}/backfill/{q(ROOM)}?v={q(ev['m4'])}"),
            bob.get(f"{FED}/backfill/{q(ROOM)}?v={q(ev['m4'])}&limit=x"),
            bob.get(f"{FED}/event/{q('$nope')}"),
            bob.get(f"{FED}/timestamp_to_event/{q(ROOM)}?ts=1&dir=q"),
            bob.httpd.get(f"{FED}/event/{q(ev['m4'])}"),
            bob.httpd.get(f"{FED}/event_auth/{q(ROOM)}"),
            bob.httpd.request("DELETE", f"{FED}/version"),
            bob.httpd.get("/_matrix/key/v2/query"),
        ]
        for r in cases:
            assert r.header("Content-Type") == "application/json", r
            body = r.json
            assert isinstance(body.get("errcode"), str) and isinstance(body.get("error"), str), r

    # -------------------------------------------------- X-Matrix details from the spec text
    def _sig(self, built, path, origin="hs2.example", dest=SERVER_NAME):
        key = built["keys"].get(origin)
        req = {"method": "GET", "uri": path, "origin": origin, "destination": dest}
        s = signedjson.sign.sign_json(req, origin, key)
        return key, s["signatures"][origin][f"ed25519:{key.version}"]

    def test_061_011_xmatrix_destination_absent_accepted(self, bob, built):
        path = f"{FED}/event/{q(built['ev']['m4'])}"
        key, sig = self._sig(built, path)   # destination is our own name in the signed JSON
        h = f'X-Matrix origin="hs2.example",key="ed25519:{key.version}",sig="{sig}"'
        assert bob.httpd.get(path, headers={"Authorization": h}).status == 200

    def test_061_012_xmatrix_destination_mismatch_401(self, bob, built):
        path = f"{FED}/event/{q(built['ev']['m4'])}"
        key, sig = self._sig(built, path, dest="other.example")
        h = (f'X-Matrix origin="hs2.example",destination="other.example",'
             f'key="ed25519:{key.version}",sig="{sig}"')
        r = bob.httpd.get(path, headers={"Authorization": h})
        assert r.status == 401 and r.json["errcode"] == "M_UNAUTHORIZED", r

    def test_061_013_xmatrix_spec_variants(self, bob, built):
        """Scheme then several spaces; tabs/spaces around commas; names in
        any case and order; token values unquoted (a colon allowed);
        backslash escapes in quoted values; unknown parameters ignored."""
        path = f"{FED}/event/{q(built['ev']['m4'])}"
        key, sig = self._sig(built, path)
        kid = f"ed25519:{key.version}"
        variants = [
            f'X-Matrix   SIG="{sig}" \t,\t Key={kid} ,Origin=hs2.example,'
            f'DESTINATION="{SERVER_NAME}",extra="x\\"y"',
            f'X-Matrix origin="h\\s2.example",destination="{SERVER_NAME}",key="{kid}",sig="{sig}"',
        ]
        for h in variants:
            r = bob.httpd.get(path, headers={"Authorization": h})
            assert r.status == 200, (h, r)

    # -------------------------------------------------- keys
    def test_061_020_key_document(self, httpd):
        r = httpd.get("/_matrix/key/v2/server")
        assert r.status == 200 and r.header("Content-Type") == "application/json"
        body = r.json
        for k in ("server_name", "verify_keys", "signatures", "valid_until_ts"):
            assert k in body
        now = time.time() * 1000
        # Origin servers should avoid serving responses that expire within the next hour.
        assert body["valid_until_ts"] > now + 3600_000
        for kid, v in body["verify_keys"].items():
            alg, ver = kid.split(":", 1)
            assert alg == "ed25519" and ver and all(c.isalnum() or c == "_" for c in ver)
            assert len(v["key"]) == 43 and "=" not in v["key"]
        for kid, v in body.get("old_verify_keys", {}).items():
            assert set(v) == {"key", "expired_ts"}
        vk = spec_public_key()
        vk.alg, vk.version = "ed25519", "1"
        signedjson.sign.verify_signed_json(body, SERVER_NAME, vk)

    def test_061_021_notary_empty(self, httpd):
        r = httpd.post("/_matrix/key/v2/query", body=json.dumps({"server_keys": {}}))
        assert r.status == 200 and r.json == {"server_keys": []}, r

    def test_061_022_notary_own_keys_get_and_post(self, httpd):
        for r in (httpd.get(f"/_matrix/key/v2/query/{SERVER_NAME}"),
                  httpd.post("/_matrix/key/v2/query", body=json.dumps(
                      {"server_keys": {SERVER_NAME: {}}}))):
            assert r.status == 200, r
            (doc,) = r.json["server_keys"]
            assert doc["server_name"] == SERVER_NAME
            vk = spec_public_key()
            vk.alg, vk.version = "ed25519", "1"
            signedjson.sign.verify_signed_json(doc, SERVER_NAME, vk)

    def test_061_023_notary_key_id_criteria(self, httpd):
        """A key ID that the server does not have: the notary may return more
        keys than asked, never an error."""
        r = httpd.post("/_matrix/key/v2/query", body=json.dumps(
            {"server_keys": {SERVER_NAME: {"ed25519:nope": {"minimum_valid_until_ts": 1}}}}))
        assert r.status == 200, r
        assert isinstance(r.json["server_keys"], list)


# ------------------------------------------------------------------ invited / world_readable
@pytest.fixture(scope="module")
def vis_built(build_env, postgres, workdir):
    keys = Keys()
    out = {"keys": keys}
    for hv in ("invited", "world_readable"):
        rid = f"!vis{hv.replace('_', '')}:hs1.example"
        b = RoomBuilder(rid, keys=keys)
        last = basic_room(b, admin=ADMIN, hv=hv)
        e = {}
        e["pre"] = b.make("m.room.message", ADMIN, {"body": "before invite", "msgtype": "m.text"},
                          [last], b.auth_for("m.room.message", ADMIN))
        e["inv"] = b.make("m.room.member", ADMIN, {"membership": "invite"}, [e["pre"]],
                          b.auth_for("m.room.member", ADMIN, CAROL, "invite"), state_key=CAROL)
        e["mid"] = b.make("m.room.message", ADMIN, {"body": "invited, not joined",
                                                    "msgtype": "m.text"},
                          [e["inv"]], b.auth_for("m.room.message", ADMIN))
        e["cj"] = b.make("m.room.member", CAROL, {"membership": "join"}, [e["mid"]],
                         b.auth_for("m.room.member", CAROL, CAROL, "join"), state_key=CAROL)
        e["post"] = b.make("m.room.message", ADMIN, {"body": "joined", "msgtype": "m.text"},
                           [e["cj"]], b.auth_for("m.room.message", ADMIN))
        out[hv] = (b, e)
    d = os.path.join(workdir, "vis")
    os.makedirs(d, exist_ok=True)
    keyfile = os.path.join(d, "keys.json")
    keys.write_responses(keyfile)
    for hv in ("invited", "world_readable"):
        path = os.path.join(d, f"{hv}.jsonl")
        out[hv][0].write(path)
        subprocess.run([build_env.cli, "import", "--quiet", "--db", postgres.conninfo(),
                        "--keys", keyfile, path], check=True, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    return out


@pytest.mark.parametrize("hv,which,whole", [
    ("invited", "pre", False), ("invited", "inv", True), ("invited", "mid", True),
    ("invited", "cj", True), ("invited", "post", True),
    ("world_readable", "pre", True), ("world_readable", "mid", True),
])
def test_061_030_history_visibility_for_servers(httpd, vis_built, hv, which, whole):
    b, e = vis_built[hv]
    c = C(httpd, "hs3.example", vis_built["keys"].get("hs3.example"))
    r = c.get(f"{FED}/event/{q(e[which])}")
    assert r.status == 200, r
    (pdu,) = r.json["pdus"]
    if whole:
        assert raw(b.by_id[e[which]]) in r.body
    else:
        assert pdu == redact_v10(b.by_id[e[which]])
