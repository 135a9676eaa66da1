# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The history endpoints against a generated, signed room, through a real
httpd and PostgreSQL. Expectations come from the room itself (t/mxftest/
matrix.py walks the DAG in Python from the spec's rules), never from the
module's own queries; served PDUs are compared byte for byte with the
originals, and redacted copies are checked with python3-signedjson (the
signatures cover exactly the redacted form)."""
import json
import os
import socket
import subprocess
import time

import pytest
import signedjson.key
import signedjson.sign

from conftest import SERVER_NAME
from mxftest.matrix import gen_room, import_room, load_key, q, server_of, xmatrix
from test_020_genroom import event_id, redact
from test_021_import import resign, server_keys

FED = "/_matrix/federation/v1"


@pytest.fixture(scope="module")
def rooms(build_env, postgres, workdir):
    """A v10 room with forks, merges, redactions and moving history
    visibility, and a second room (v11) for room-confusion checks."""
    main = gen_room(build_env.cli, os.path.join(workdir, "room-history"), room_version=10,
                    events=400, servers=5, branchiness=0.2, seed=9, redactions=0.05)
    other = gen_room(build_env.cli, os.path.join(workdir, "room-other"), room_version=11,
                     events=60, servers=2, seed=99)
    import_room(build_env.cli, postgres.conninfo(), main)
    import_room(build_env.cli, postgres.conninfo(), other)
    return main, other


@pytest.fixture(scope="module")
def room(rooms):
    return rooms[0]


@pytest.fixture(scope="module")
def outsider(postgres, workdir):
    """A server with a known key and no member in any room."""
    key = signedjson.key.generate_signing_key("out1")
    vk = signedjson.key.encode_verify_key_base64(signedjson.key.get_verify_key(key))
    postgres.psql(postgres.DBNAME,
                  "INSERT INTO mxf_server_keys (server_name, key_id, public_key, valid_until_ts,"
                  " source, fetched_ts) VALUES ('outsider.example', 'ed25519:out1',"
                  f" decode('{vk}' || repeat('=', (4 - length('{vk}') % 4) % 4), 'base64'),"
                  " 4102444800000, 'test', (extract(epoch FROM now()) * 1000)::bigint)"
                  " ON CONFLICT DO NOTHING")
    return "outsider.example", key


class Client:
    """Signed federation requests as one origin server."""

    def __init__(self, httpd, origin, key):
        self.httpd, self.origin, self.key = httpd, origin, key

    def get(self, path):
        auth = xmatrix(self.origin, self.key, SERVER_NAME, "GET", path)
        return self.httpd.get(path, headers={"Authorization": auth})

    def post(self, path, content):
        auth = xmatrix(self.origin, self.key, SERVER_NAME, "POST", path, content)
        return self.httpd.post(path, body=json.dumps(content), headers={"Authorization": auth})


def member_server(room):
    """The server joined at the end that may see the least history, so that
    visibility filtering is exercised."""
    joined = room.summary["joined_servers"]
    hidden = {s: sum(1 for e in room.order if not room.visible(e, s)) for s in joined}
    server = max(joined, key=lambda s: (hidden[s], s))
    assert hidden[server] > 0, "the generated room restricts no history for any server"
    return server


@pytest.fixture(scope="class")
def client(httpd, room):
    server = member_server(room)
    return Client(httpd, server, load_key(room.key_path(server)))


def assert_error(resp, status, errcode):
    assert resp.status == status, resp
    assert resp.header("Content-Type") == "application/json"
    assert resp.json["errcode"] == errcode, resp.json


def check_served(room, server, resp_body, pdu):
    """A served PDU is the original bytes when the server may see the event
    and it is not redacted; otherwise its redacted copy, which still carries
    valid signatures (they cover the redacted form) but lacks content."""
    eid = room.identify(pdu)
    ev = room.events[eid]
    redacted = eid in room.summary.get("redacted", {})
    if room.visible(eid, server) and not redacted:
        assert ev["raw"].decode() in resp_body, f"{eid} not served as received"
        return eid
    # The signatures cover exactly the redacted form, so they verify on the
    # served copy only if it is that form (for some events, e.g. a bare
    # membership change, the redacted form is the event itself).
    sender_server = server_of(ev["json"]["sender"])
    key_id = next(iter(ev["json"]["signatures"][sender_server]))
    verify_key = signedjson.key.decode_verify_key_base64(
        "ed25519", key_id.split(":", 1)[1],
        next(s["public_key"] for s in room.summary["servers"] if s["server_name"] == sender_server))
    signedjson.sign.verify_signed_json(pdu, sender_server, verify_key)
    assert pdu["hashes"] == ev["json"]["hashes"]
    assert "unsigned" not in pdu
    return eid


# ------------------------------------------------------------------ get_missing_events

class TestGetMissingEvents:
    def gme(self, client, room, earliest, latest, limit=None, min_depth=None):
        body = {"earliest_events": earliest, "latest_events": latest}
        if limit is not None:
            body["limit"] = limit
        if min_depth is not None:
            body["min_depth"] = min_depth
        r = client.post(f"{FED}/get_missing_events/{q(room.room_id)}", body)
        assert r.status == 200, r
        assert r.header("Content-Type") == "application/json"
        events = r.json["events"]
        return [check_served(room, client.origin, r.body, e) for e in events]

    @pytest.mark.parametrize("limit", [1, 10, 20])
    def test_040_001_walk_from_tip(self, client, room, limit):
        tip = room.order[-1]
        got = self.gme(client, room, [], [tip], limit)
        assert got == room.missing_events([], [tip], limit)
        assert len(got) == limit

    def test_040_002_default_limit_is_10(self, client, room):
        tip = room.order[-1]
        assert self.gme(client, room, [], [tip]) == room.missing_events([], [tip], 10)

    def test_040_003_above_cap_is_cut_to_cap(self, client, room):
        tip = room.order[-1]
        got = self.gme(client, room, [], [tip], 500)
        assert got == room.missing_events([], [tip], 20)

    def test_040_004_earliest_stops_the_walk(self, client, room):
        tip = room.order[-1]
        stop = room.order[-8]
        got = self.gme(client, room, [stop], [tip], 20)
        assert got == room.missing_events([stop], [tip], 20)
        assert stop not in got and tip not in got

    def test_040_005_min_depth(self, client, room):
        tip = room.order[-1]
        min_depth = room.depth(tip) - 5
        got = self.gme(client, room, [], [tip], 20, min_depth)
        assert got == room.missing_events([], [tip], 20, min_depth)
        assert all(room.depth(e) >= min_depth for e in got)

    def test_040_006_merges(self, client, room):
        merges = [e for e in room.order if len(room.prevs(e)) > 1]
        assert merges, "the room has no merge events"
        for m in merges[-3:]:
            got = self.gme(client, room, [], [m], 20)
            assert got == room.missing_events([], [m], 20)

    def test_040_007_several_latest(self, client, room):
        latest = [room.order[-1], room.order[-30], room.order[-60]]
        earliest = [room.order[-90]]
        got = self.gme(client, room, earliest, latest, 20)
        assert got == room.missing_events(earliest, latest, 20)

    def test_040_007b_latest_that_is_a_prev_of_another_latest(self, client, room):
        """The spec asks for the previous events of latest_events, skipping
        only earliest_events: a latest event that is a prev event of
        another is among them, found in the first layer."""
        tip = room.order[-1]
        prev = room.prevs(tip)[0]
        grand = room.prevs(prev)[0]
        got = self.gme(client, room, [], [tip, prev], 3)
        assert got == room.missing_events([], [tip, prev], 3)
        assert prev in got and grand in got and tip not in got
        # Listed first or last: the same answer.
        assert self.gme(client, room, [], [prev, tip], 3) == got
        # Also in earliest_events: skipped, and the walk does not go through it.
        got = self.gme(client, room, [prev], [tip, prev], 20)
        assert prev not in got
        assert got == room.missing_events([prev], [tip, prev], 20)

    def test_040_007c_numbers_as_python_senders_write_them(self, client, room):
        """limit 10.0 and min_depth 0.0 (json.dumps of floats, signed as
        canonicaljson encodes them) are the whole numbers they stand for."""
        tip = room.order[-1]
        path = f"{FED}/get_missing_events/{q(room.room_id)}"
        content = {"earliest_events": [], "latest_events": [tip], "limit": 3.0,
                   "min_depth": 0.0}
        r = client.post(path, content)
        assert r.status == 200, r
        got = [check_served(room, client.origin, r.body, e) for e in r.json["events"]]
        assert got == room.missing_events([], [tip], 3)
        content["limit"] = 1e300
        r = client.post(path, content)
        assert r.status == 200 and len(r.json["events"]) == 20, r

    def test_040_007d_body_not_an_object(self, client, room):
        path = f"{FED}/get_missing_events/{q(room.room_id)}"
        for body in ([], 3, "x", None):
            assert_error(client.post(path, body) if body is not None else
                         client.httpd.post(path, body="null", headers={"Authorization": xmatrix(
                             client.origin, client.key, SERVER_NAME, "POST", path, None)}),
                         400, "M_BAD_JSON")

    def test_040_008_empty_and_unknown(self, client, room):
        assert self.gme(client, room, [], []) == []
        # A bare "{}" body (sent by some peers) is an empty request, not an error.
        r = client.post(f"{FED}/get_missing_events/{q(room.room_id)}", {})
        assert r.status == 200 and r.json == {"events": []}
        assert self.gme(client, room, [], ["$unknownunknownunknownunknownunknownunknown"]) == []

    def test_040_009_foreign_room_events_are_unknown(self, client, rooms):
        room, other = rooms
        # An event of another room as latest_events: treated as unknown.
        assert self.gme(client, room, [], [other.order[-1]], 20) == []

    def test_040_010_errors(self, client, room):
        path = f"{FED}/get_missing_events/{q(room.room_id)}"
        assert_error(client.post(path, {"earliest_events": {}}), 400, "M_BAD_JSON")
        assert_error(client.post(path, {"latest_events": [1]}), 400, "M_BAD_JSON")
        assert_error(client.post(path, {"earliest_events": [], "latest_events": "x"}),
                     400, "M_BAD_JSON")
        for bad in (0, -1, 1.5):
            assert_error(client.post(path, {"earliest_events": [], "latest_events": [],
                                            "limit": bad}), 400, "M_INVALID_PARAM")
        assert_error(client.post(path, {"earliest_events": [], "latest_events": [],
                                        "limit": "10"}), 400, "M_BAD_JSON")
        assert_error(client.post(path, {"earliest_events": [], "latest_events": [],
                                        "min_depth": -3}), 400, "M_INVALID_PARAM")
        # Not JSON, duplicate keys, too large.
        auth = xmatrix(client.origin, client.key, SERVER_NAME, "POST", path)
        r = client.httpd.post(path, body="not json", headers={"Authorization": auth})
        assert_error(r, 400, "M_NOT_JSON")
        big = {"earliest_events": ["$" + "a" * 100] * 1000, "latest_events": []}
        assert_error(client.post(path, big), 413, "M_TOO_LARGE")
        # JSON that the server does not take is JSON all the same: M_BAD_JSON.
        for body in ('{"earliest_events":[],"latest_events":[],"limit":9223372036854775808}',
                     '{"earliest_events":[],"latest_events":[],"x":1180591620717411303424}',
                     '{"earliest_events":[],"latest_events":["$a\\u0000b"]}',
                     '{"earliest_events":[],"earliest_events":[],"latest_events":[]}'):
            r = client.httpd.post(path, body=body, headers={"Authorization": auth})
            assert_error(r, 400, "M_BAD_JSON")

    def test_040_011_announced_body_too_large(self, client, room):
        """A Content-Length over MatrixFedMaxBodySize is refused at once
        (413), not after waiting for a body until httpd's Timeout."""
        path = f"{FED}/get_missing_events/{q(room.room_id)}"
        auth = xmatrix(client.origin, client.key, SERVER_NAME, "POST", path, {})
        with socket.create_connection(("127.0.0.1", client.httpd.port), timeout=10) as s:
            s.sendall((f"POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {auth}\r\n"
                       "Content-Type: application/json\r\nContent-Length: 99999999\r\n"
                       "\r\n{}").encode())
            start, data = time.monotonic(), b""
            while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            assert time.monotonic() - start < 5
        head, body = data.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 413 "), data
        assert b"Connection: close" in head, head
        assert json.loads(body)["errcode"] == "M_TOO_LARGE"

    @pytest.mark.parametrize("size", [100, 9000, 60000])
    def test_040_012_chunked_body(self, client, room, size):
        """A body sent chunked (no Content-Length), in pieces of 1,000 bytes,
        small or grown past its first buffer: the same answer as sent whole.
        earliest_events is padded with unknown IDs to the size wanted."""
        tip = room.order[-1]
        body = {"earliest_events": [], "latest_events": [tip], "limit": 5}
        while len(json.dumps(body)) < size:
            body["earliest_events"].append(f"$unknown{len(body['earliest_events']):06d}")
        data = json.dumps(body).encode()
        path = f"{FED}/get_missing_events/{q(room.room_id)}"
        auth = xmatrix(client.origin, client.key, SERVER_NAME, "POST", path, body)
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + 1000]), data[i:i + 1000])
                          for i in range(0, len(data), 1000)) + b"0\r\n\r\n"
        with socket.create_connection(("127.0.0.1", client.httpd.port), timeout=10) as s:
            s.sendall((f"POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {auth}\r\n"
                       "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                       "Connection: close\r\n\r\n").encode() + chunks)
            resp = b""
            while True:
                got = s.recv(65536)
                if not got:
                    break
                resp += got
        head, rest = resp.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200 "), resp[:300]
        if b"Transfer-Encoding: chunked" in head:
            out, raw = b"", rest
            while True:
                n, raw = raw.split(b"\r\n", 1)
                if int(n, 16) == 0:
                    break
                out, raw = out + raw[:int(n, 16)], raw[int(n, 16) + 2:]
            rest = out
        events = json.loads(rest)["events"]
        got = [check_served(room, client.origin, rest.decode(), e) for e in events]
        assert got == room.missing_events([], [tip], 5)


# ------------------------------------------------------------------ backfill

class TestBackfill:
    def backfill(self, client, room, v, limit):
        qs = "&".join(f"v={q(e)}" for e in v) + f"&limit={limit}"
        r = client.get(f"{FED}/backfill/{q(room.room_id)}?{qs}")
        assert r.status == 200, r
        body = r.json
        assert body["origin"] == SERVER_NAME
        assert isinstance(body["origin_server_ts"], int)
        return [check_served(room, client.origin, r.body, e) for e in body["pdus"]]

    @pytest.mark.parametrize("limit", [1, 10, 100])
    def test_040_020_from_tip(self, client, room, limit):
        tip = room.order[-1]
        got = self.backfill(client, room, [tip], limit)
        assert got == room.backfill([tip], limit)
        assert got[0] == tip

    def test_040_021_above_cap(self, client, room):
        tip = room.order[-1]
        assert self.backfill(client, room, [tip], 1000) == room.backfill([tip], 100)

    def test_040_022_several_v_and_merges(self, client, room):
        merges = [e for e in room.order if len(room.prevs(e)) > 1]
        v = [merges[-1], room.order[-40]]
        assert self.backfill(client, room, v, 30) == room.backfill(v, 30)

    def test_040_023_whole_room_visibility(self, client, room):
        """Every event of the room, served as the origin may see it."""
        got = set()
        v = [room.order[-1]]
        while v:
            got |= set(self.backfill(client, room, v, 100))
            # Continue from every edge not yet followed (forks leave several).
            v = sorted({p for e in got for p in room.prevs(e) if p not in got})[:20]
        assert got == set(room.order)
        hidden = [e for e in got if not room.visible(e, client.origin)]
        assert hidden, "no event was served redacted for visibility"

    def test_040_026_every_server_sees_its_own_history(self, httpd, room):
        """Each joined server gets exactly the events it may see in full and
        the others as redacted copies (servers that joined late, were only
        invited, left and came back...)."""
        hidden_total = differ = 0
        for server in room.summary["joined_servers"]:
            c = Client(httpd, server, load_key(room.key_path(server)))
            got = set()
            v = [room.order[-1]]
            while v:
                got |= set(self.backfill(c, room, v, 100))
                v = sorted({p for e in got for p in room.prevs(e) if p not in got})[:20]
            assert got == set(room.order)
            hidden_total += sum(1 for e in got if not room.visible(e, server))
            # Served as the state after the event decides (a server's own join
            # visible, its last member's leave or a tightening of
            # history_visibility not), as the reference homeserver does.
            differ += sum(1 for e in got
                          if room.visible(e, server) != room.visible_before(e, server))
        assert hidden_total > 0
        assert differ > 0, "no event whose state before and after judge differently"

    def test_040_024_foreign_v_is_empty(self, client, rooms):
        room, other = rooms
        assert self.backfill(client, room, [other.order[-1]], 10) == []

    def test_040_025_errors(self, client, room):
        base = f"{FED}/backfill/{q(room.room_id)}"
        assert_error(client.get(f"{base}?limit=10"), 400, "M_MISSING_PARAM")
        assert_error(client.get(f"{base}?v={q(room.order[-1])}"), 400, "M_MISSING_PARAM")
        for bad in ("0", "-5", "abc", "1.5", ""):
            assert_error(client.get(f"{base}?v={q(room.order[-1])}&limit={bad}"),
                         400, "M_INVALID_PARAM")
        # A limit beyond any room's size is served as the cap.
        tip = room.order[-1]
        r = client.get(f"{base}?v={q(tip)}&limit=99999999999999999999999")
        assert r.status == 200 and len(r.json["pdus"]) == len(room.backfill([tip], 100))

    def test_040_027_comma_separated_v(self, client, room):
        """v as the spec's OpenAPI has it (style form, explode false): one
        comma-separated value; the same answer as v repeated."""
        v = [room.order[-40], room.order[-1]]
        r = client.get(f"{FED}/backfill/{q(room.room_id)}?v={q(v[0])},{q(v[1])}&limit=30")
        assert r.status == 200, r
        got = [check_served(room, client.origin, r.body, e) for e in r.json["pdus"]]
        assert got == room.backfill(v, 30)
        assert got[0] == v[1]           # the tip, from the second part of the list
        assert_error(client.get(f"{FED}/backfill/not-a-room?v=x&limit=1"), 400,
                     "M_INVALID_PARAM")
        # An encoded comma is part of the value: one (unknown) event ID.
        r = client.get(f"{FED}/backfill/{q(room.room_id)}?v={q(v[0] + ',' + v[1])}&limit=30")
        assert r.status == 200 and r.json["pdus"] == [], r

    def test_040_028_malformed_query_parameters(self, client, room):
        """A parameter whose percent-encoding is malformed (or encodes a NUL)
        is there but invalid: 400 M_INVALID_PARAM, whether or not a good
        value comes with it."""
        base, tip = f"{FED}/backfill/{q(room.room_id)}", q(room.order[-1])
        for qs in ("v=%ZZ&limit=2", "v=%24a%00b&limit=2", f"v={tip}&v=%ZZ&limit=2",
                   f"v={tip},%ZZ&limit=2", f"v={tip}&limit=%3"):
            r = client.get(f"{base}?{qs}")
            assert_error(r, 400, "M_INVALID_PARAM")
            assert "percent-encoding" in r.json["error"], (qs, r.json)
        for path in (f"{FED}/state_ids/{q(room.room_id)}?event_id=%24a%ZZ",
                     f"{FED}/state/{q(room.room_id)}?event_id=%24a%00",
                     f"{FED}/timestamp_to_event/{q(room.room_id)}?ts=1%G0&dir=f",
                     f"{FED}/timestamp_to_event/{q(room.room_id)}?ts=1&dir=%"):
            assert_error(client.get(path), 400, "M_INVALID_PARAM")

    def test_040_029_ids_not_utf8(self, client, room):
        """An ID that is not UTF-8 (no event or room has one) is 400
        M_INVALID_PARAM wherever it comes: a backfill v among good ones
        (it was dropped, and the rest answered), an event_id, a path."""
        rid, tip = q(room.room_id), q(room.order[-1])
        for path in (f"{FED}/backfill/{rid}?v=%24%FF&limit=2",
                     f"{FED}/backfill/{rid}?v={tip}&v=%24a%C3&limit=2",
                     f"{FED}/backfill/{rid}?v={tip},%ED%A0%80&limit=2",
                     f"{FED}/state_ids/{rid}?event_id=%24%FF",
                     f"{FED}/state/{rid}?event_id=%24%C0%80",
                     f"{FED}/event/%24%FF",
                     f"{FED}/event_auth/{rid}/%24%FF",
                     f"{FED}/backfill/%21%FF%3Ahs1.example?v={tip}&limit=2",
                     f"{FED}/timestamp_to_event/%21%FF%3Ahs1.example?ts=1&dir=f"):
            r = client.get(path)
            assert_error(r, 400, "M_INVALID_PARAM")


# ------------------------------------------------------------------ event

class TestEvent:
    def test_040_030_each_kind_of_event(self, client, room):
        for eid in room.order[:: max(1, len(room.order) // 40)]:
            r = client.get(f"{FED}/event/{q(eid)}")
            assert r.status == 200, r
            assert len(r.json["pdus"]) == 1
            assert r.json["origin"] == SERVER_NAME
            assert check_served(room, client.origin, r.body, r.json["pdus"][0]) == eid

    def test_040_032_get_with_a_body(self, client, room):
        """A body sent with GET is not part of the request (only POST and
        PUT bodies are signed, as the reference homeserver reads them)."""
        path = f"{FED}/event/{q(room.order[-1])}"
        auth = xmatrix(client.origin, client.key, SERVER_NAME, "GET", path)
        for body in ("{}", "not json"):
            r = client.httpd.request("GET", path, body=body, headers={"Authorization": auth})
            assert r.status == 200, (body, r)
            assert check_served(room, client.origin, r.body, r.json["pdus"][0]) == room.order[-1]
        # Signed as if the body were content: not what was asked for.
        auth = xmatrix(client.origin, client.key, SERVER_NAME, "GET", path, {})
        r = client.httpd.request("GET", path, body="{}", headers={"Authorization": auth})
        assert_error(r, 401, "M_UNAUTHORIZED")

    def test_040_033_credential_of_another_algorithm_ignored(self, client, room):
        path = f"{FED}/event/{q(room.order[-1])}"
        good = xmatrix(client.origin, client.key, SERVER_NAME, "GET", path)
        other = (f'X-Matrix origin="{client.origin}",destination="{SERVER_NAME}",'
                 'key="curve448:1",sig="c2lnbmF0dXJl"')
        for value in (f"{other}, {good}", f"{good}, {other}"):
            r = client.httpd.get(path, headers={"Authorization": value})
            assert r.status == 200, (value, r)
        r = client.httpd.get(path, headers={"Authorization": other})
        assert_error(r, 401, "M_UNAUTHORIZED")
        assert "supported algorithm" in r.json["error"]

    def test_040_034_trailing_slash(self, client, room):
        """One trailing "/" is accepted where the reference homeserver's
        routes take it (event, state, state_ids, backfill,
        timestamp_to_event, get_missing_events); not on event_auth."""
        tip, rid = room.order[-1], q(room.room_id)
        ts = room.events[tip]["json"]["origin_server_ts"]
        for path in (f"{FED}/event/{q(tip)}", f"{FED}/state_ids/{rid}?event_id={q(tip)}",
                     f"{FED}/backfill/{rid}?v={q(tip)}&limit=3",
                     f"{FED}/timestamp_to_event/{rid}?ts={ts}&dir=b"):
            plain = client.get(path)
            base, _, query = path.partition("?")
            slashed = client.get(base + "/" + ("?" + query if query else ""))
            assert plain.status == 200 and slashed.status == 200, (path, slashed)
            assert {k: v for k, v in slashed.json.items() if k != "origin_server_ts"} == \
                {k: v for k, v in plain.json.items() if k != "origin_server_ts"}
        body = {"earliest_events": [], "latest_events": [tip], "limit": 3}
        r = client.post(f"{FED}/get_missing_events/{rid}/", body)
        assert r.status == 200 and len(r.json["events"]) == 3, r
        assert_error(client.get(f"{FED}/event_auth/{rid}/{q(tip)}/"), 404, "M_UNRECOGNIZED")
        assert_error(client.get(f"{FED}/event/{q(tip)}/x"), 404, "M_UNRECOGNIZED")

    def test_040_031_unknown_and_malformed(self, client):
        assert_error(client.get(f"{FED}/event/{q('$' + 'A' * 43)}"), 404, "M_NOT_FOUND")
        # Event IDs are opaque: one in no room version's form is unknown, not malformed.
        for unknown in ("$idontexist", "$idontexist:test.example", "$a/b+c=", "$\u00e9"):
            assert_error(client.get(f"{FED}/event/{q(unknown)}"), 404, "M_NOT_FOUND")
        for bad in ("not-an-event", q("$"), "%24%C3", q("$" + "e" * 255)):
            assert_error(client.get(f"{FED}/event/{bad}"), 400, "M_INVALID_PARAM")


# ------------------------------------------------------------------ state, state_ids, event_auth

class Continuation:
    """Hand-made events appended to a generated room, signed with its
    servers' keys and imported with it (auth events chosen from the state
    they build up; each event after the last one unless prevs are given)."""

    def __init__(self, room, version="10"):
        self.room, self.version = room, version
        self.keys = server_keys(room.dir)
        self.cur = dict(room.summary["final_state"])
        self.depths = {e: room.events[e]["json"]["depth"] for e in room.order}
        self.tip = room.order[-1]
        self.ts = max(room.events[e]["json"]["origin_server_ts"] for e in room.order)
        self.made, self.lines = {}, []

    def membership(self, user):
        mid = self.cur.get(f"m.room.member|{user}")
        if mid in self.room.events:
            return self.room.events[mid]["json"]["content"]["membership"]
        return None

    def make(self, name, sender, etype, content, state_key=None, prevs=None, ts=None):
        prevs = prevs or [self.tip]
        self.ts = ts if ts is not None else self.ts + 1000
        need = ["m.room.create|", "m.room.power_levels|", f"m.room.member|{sender}"]
        if etype == "m.room.member":
            need.append(f"m.room.member|{state_key}")
            if content["membership"] in ("join", "invite"):
                need.append("m.room.join_rules|")
        ev = {"auth_events": sorted({self.cur[k] for k in need if k in self.cur}),
              "content": content, "depth": 1 + max(self.depths[p] for p in prevs),
              "origin": server_of(sender), "origin_server_ts": self.ts, "prev_events": prevs,
              "room_id": self.room.summary["room_id"], "sender": sender, "type": etype}
        if state_key is not None:
            ev["state_key"] = state_key
        ev = resign(ev, self.version, self.keys)
        eid = event_id(ev, self.version)
        if state_key is not None:
            self.cur[f"{etype}|{state_key}"] = eid
        self.depths[eid], self.tip = ev["depth"], eid
        if name:
            self.made[name] = (eid, ev)
        self.lines.append(json.dumps(ev, separators=(",", ":"), sort_keys=True))
        return eid

    def import_all(self, build_env, postgres):
        """Imports the room and the events made, all accepted."""
        path = os.path.join(self.room.dir, "continued.jsonl")
        with open(os.path.join(self.room.dir, "room.jsonl")) as f, open(path, "w") as out:
            out.write(f.read().rstrip("\n") + "\n" + "\n".join(self.lines) + "\n")
        r = subprocess.run([build_env.cli, "import", "--db", postgres.conninfo(),
                            "--keys", os.path.join(self.room.dir, "keys", "all.json"),
                            "--require-signatures", path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert r.returncode == 0, r.stderr
        assert "auth rules: 0 rejected" in r.stdout, r.stdout


@pytest.fixture(scope="module")
def vis_room(build_env, postgres, workdir):
    """A v10 room continued by hand, so that the state before and the state
    after an event judge it differently for a server S whose last member is u,
    with content that the redacted copy drops: u leaves (with a reason)
    while history is "joined"; history goes "shared", then "joined" again
    (with an extra key) while S has nobody in the room; a message; u is
    invited and joins again (with a displayname); a message."""
    room = gen_room(build_env.cli, os.path.join(workdir, "room-vis-after"),
                    room_version=10, events=80, servers=3, branchiness=0.0, seed=21)
    c = Continuation(room)
    admin = room.summary["creator"]
    assert c.membership(admin) == "join"
    by_server = {}
    for key in c.cur:
        user = key.split("|", 1)[1]
        if key.startswith("m.room.member|") and c.membership(user) == "join":
            by_server.setdefault(server_of(user), []).append(user)
    candidates = sorted((len(users), srv) for srv, users in by_server.items()
                        if srv != server_of(admin))
    assert candidates, "the generated room has no other server with a joined member"
    server = candidates[0][1]
    *others, user = sorted(by_server[server])
    hv = "m.room.history_visibility"
    c.make("hv_joined", admin, hv, {"history_visibility": "joined", "note": "1"}, "")
    for other in others:        # S's other members leave first: u is its last
        c.make(None, other, "m.room.member", {"membership": "leave"}, other)
    c.make("leave", user, "m.room.member", {"membership": "leave", "reason": "gone for now"},
           user)
    c.make("hv_shared", admin, hv, {"history_visibility": "shared", "note": "2"}, "")
    c.make("hv_tightened", admin, hv,
           {"history_visibility": "joined", "note": "while S is away"}, "")
    c.make("away", admin, "m.room.message", {"body": "while S is away", "msgtype": "m.text"})
    c.make("invite", admin, "m.room.member", {"membership": "invite", "displayname": "U"}, user)
    c.make("join", user, "m.room.member", {"membership": "join", "displayname": "U"}, user)
    c.make("back", admin, "m.room.message", {"body": "welcome back", "msgtype": "m.text"})
    c.import_all(build_env, postgres)
    return {"server": server, "key": load_key(room.key_path(server)), "made": c.made,
            "version": c.version}


@pytest.fixture(scope="module")
def tie_room(build_env, postgres, workdir):
    """A fork after a generated room's last event: a1 (a topic) then a2 on
    one branch, b1 on the other, a2 and b1 at the same timestamp, a2 deeper
    and arriving first."""
    room = gen_room(build_env.cli, os.path.join(workdir, "room-ts-ties"),
                    room_version=10, events=30, servers=2, branchiness=0.0, seed=5)
    c = Continuation(room)
    admin, base = room.summary["creator"], c.tip
    msg = {"body": "tie", "msgtype": "m.text"}
    a1 = c.make(None, admin, "m.room.topic", {"topic": "on branch a"}, "", prevs=[base])
    tie = c.ts + 5000
    a2 = c.make(None, admin, "m.room.message", msg, prevs=[a1], ts=tie)
    b1 = c.make(None, admin, "m.room.message", msg, prevs=[base], ts=tie)
    c.make(None, admin, "m.room.message", msg, prevs=[a2, b1], ts=tie + 1000)
    c.import_all(build_env, postgres)
    server = server_of(admin)
    return {"room_id": room.room_id, "server": server, "key": load_key(room.key_path(server)),
            "a1": a1, "a2": a2, "b1": b1, "ts": tie}


class TestVisibilityAfterEvent:
    """Which copy a server gets is judged on the state after the event (the
    reference homeserver's rule): its own join in full, its last member's
    leave and a tightening of history_visibility while it had nobody in the
    room redacted; neither "before" alone nor "before or after"."""
    EXPECT_FULL = {"hv_joined": True, "leave": False, "hv_shared": True,
                   "hv_tightened": False, "away": False, "invite": False, "join": True,
                   "back": True}

    def check(self, vis_room, name, pdu):
        eid, original = vis_room["made"][name]
        want = original if self.EXPECT_FULL[name] else redact(original, vis_room["version"])
        assert want != (redact(original, vis_room["version"]) if self.EXPECT_FULL[name]
                        else original), f"{name}: the test cannot tell the copies apart"
        assert pdu == want, (name, pdu)

    def test_040_047_event(self, httpd, vis_room):
        c = Client(httpd, vis_room["server"], vis_room["key"])
        for name, (eid, _) in vis_room["made"].items():
            r = c.get(f"{FED}/event/{q(eid)}")
            assert r.status == 200, (name, r)
            self.check(vis_room, name, r.json["pdus"][0])

    def test_040_048_backfill_and_missing_events(self, httpd, vis_room):
        c = Client(httpd, vis_room["server"], vis_room["key"])
        made = vis_room["made"]
        by_id = {eid: name for name, (eid, _) in made.items()}
        r = c.get(f"{FED}/backfill/{q(made['back'][1]['room_id'])}?v={q(made['back'][0])}"
                  "&limit=20")
        assert r.status == 200, r
        got = {by_id[p_id]: p for p in r.json["pdus"]
               if (p_id := event_id(p, vis_room["version"])) in by_id}
        assert set(got) == set(made)
        for name, pdu in got.items():
            self.check(vis_room, name, pdu)
        r = c.post(f"{FED}/get_missing_events/{q(made['back'][1]['room_id'])}",
                   {"earliest_events": [made["hv_joined"][0]],
                    "latest_events": [made["back"][0]], "limit": 20})
        assert r.status == 200, r
        got = {by_id[p_id]: p for p in r.json["events"]
               if (p_id := event_id(p, vis_room["version"])) in by_id}
        assert set(got) == set(made) - {"hv_joined", "back"}
        for name, pdu in got.items():
            self.check(vis_room, name, pdu)


class TestState:
    def sample(self, room):
        return [e for e in room.order[1:]][:: max(1, len(room.order) // 12)]

    def test_040_040_state_ids(self, client, room):
        for eid in self.sample(room):
            r = client.get(f"{FED}/state_ids/{q(room.room_id)}?event_id={q(eid)}")
            assert r.status == 200, r
            exp_state = set(room.events[eid]["exp"]["state_before"].values())
            assert set(r.json["pdu_ids"]) == exp_state
            assert len(r.json["pdu_ids"]) == len(exp_state)
            assert set(r.json["auth_chain_ids"]) == room.auth_chain(exp_state)

    def test_040_041_state_pdus_as_stored(self, client, room):
        eid = room.order[-1]
        r = client.get(f"{FED}/state/{q(room.room_id)}?event_id={q(eid)}")
        assert r.status == 200, r
        exp_state = set(room.events[eid]["exp"]["state_before"].values())
        got = set()
        for pdu in r.json["pdus"]:
            sid = room.identify(pdu)
            got.add(sid)
            assert room.events[sid]["raw"].decode() in r.body
        assert got == exp_state
        assert {room.identify(p) for p in r.json["auth_chain"]} == room.auth_chain(exp_state)

    def test_040_042_event_auth(self, client, room):
        for eid in self.sample(room):
            r = client.get(f"{FED}/event_auth/{q(room.room_id)}/{q(eid)}")
            assert r.status == 200, r
            got = [room.identify(p) for p in r.json["auth_chain"]]
            assert set(got) == room.auth_chain([eid])
            assert len(got) == len(set(got))

    def test_040_043_errors(self, client, rooms):
        room, other = rooms
        base = f"{FED}/state_ids/{q(room.room_id)}"
        assert_error(client.get(base), 400, "M_MISSING_PARAM")
        assert_error(client.get(f"{base}?event_id={q('$' + 'B' * 43)}"), 404, "M_NOT_FOUND")
        # An event of another room is unknown here.
        assert_error(client.get(f"{base}?event_id={q(other.order[-1])}"), 404, "M_NOT_FOUND")
        assert_error(client.get(f"{FED}/event_auth/{q(room.room_id)}/{q(other.order[-1])}"),
                     404, "M_NOT_FOUND")
        assert_error(client.get(f"{FED}/state/{q(room.room_id)}"), 400, "M_MISSING_PARAM")
        # Opaque IDs in no room version's form: unknown (404), as the spec lists.
        for path in ("state_ids", "state"):
            assert_error(client.get(f"{FED}/{path}/{q(room.room_id)}?event_id=%24idontexist"),
                         404, "M_NOT_FOUND")
        assert_error(client.get(f"{FED}/event_auth/{q(room.room_id)}/%24idontexist"),
                     404, "M_NOT_FOUND")
        assert_error(client.get(f"{base}?event_id="), 400, "M_INVALID_PARAM")


# ------------------------------------------------------------------ a state streamed

@pytest.fixture(scope="module")
def big_state_room(build_env, postgres, workdir):
    """A room whose state and auth chain answer is several times the
    module's streaming chunk (64 KiB)."""
    r = gen_room(build_env.cli, os.path.join(workdir, "room-big-state"), room_version=10,
                 events=6000, servers=6, users_per_server=120, seed=21)
    import_room(build_env.cli, postgres.conninfo(), r)
    return r


def full_auth_chain(room, eids):
    """The auth chain of @eids over every event of the room's file (the
    room's expectations list only a sample of a room this big)."""
    auths = {}
    for raw in room.lines:
        ev = json.loads(raw)
        auths[event_id(ev, room.version)] = [a[0] if isinstance(a, list) else a
                                             for a in ev["auth_events"]]
    seen, stack = set(), [a for e in eids for a in auths[e]]
    while stack:
        a = stack.pop()
        if a not in seen:
            seen.add(a)
            stack.extend(auths[a])
    return seen


class TestStateStreamed:
    """/state, /state_ids and /event_auth are streamed as PostgreSQL hands over the rows:
    chunked, complete, and a client that goes away mid-answer leaves every
    pooled connection usable."""

    # A fixed, small socket send buffer: the kernel cannot take a whole answer
    # at once, so a client that leaves is noticed while the answer is made.
    SITE_EXTRA = "SendBufferSize 16384"

    def client(self, httpd, room):
        server = sorted(room.summary["joined_servers"])[0]
        return Client(httpd, server, load_key(room.key_path(server)))

    def test_040_045_large_state_chunked_and_complete(self, httpd, big_state_room):
        room = big_state_room
        c = self.client(httpd, room)
        eid = room.order[-1]
        exp_state = set(room.events[eid]["exp"]["state_before"].values())
        r = c.get(f"{FED}/state_ids/{q(room.room_id)}?event_id={q(eid)}")
        assert r.status == 200, r
        assert len(r.body) > 64 * 1024, (len(r.body), r.headers)
        assert r.header("Transfer-Encoding") == "chunked"
        assert r.header("Content-Length") is None
        assert sorted(r.json) == ["auth_chain_ids", "pdu_ids"]
        assert set(r.json["pdu_ids"]) == exp_state
        assert len(r.json["pdu_ids"]) == len(exp_state)
        chain = full_auth_chain(room, exp_state)
        assert set(r.json["auth_chain_ids"]) == chain
        assert len(r.json["auth_chain_ids"]) == len(chain)
        r = c.get(f"{FED}/state/{q(room.room_id)}?event_id={q(eid)}")
        assert r.status == 200, r
        assert len(r.body) > 8 * 64 * 1024, len(r.body)
        assert r.header("Transfer-Encoding") == "chunked"
        assert {event_id(p, room.version) for p in r.json["pdus"]} == exp_state
        assert {event_id(p, room.version) for p in r.json["auth_chain"]} == chain
        r2 = c.get(f"{FED}/event_auth/{q(room.room_id)}/{q(eid)}")
        assert r2.status == 200, r2
        assert r2.header("Transfer-Encoding") == "chunked"
        got = [event_id(p, room.version) for p in r2.json["auth_chain"]]
        assert set(got) == full_auth_chain(room, [eid]) and len(got) == len(set(got))
        # State events are served as received (the generator redacts only messages).
        raw = {event_id(json.loads(line), room.version): line.decode() for line in room.lines}
        for pdu in r.json["pdus"] + r.json["auth_chain"]:
            assert raw[event_id(pdu, room.version)] in r.body

    def test_040_046_client_gone_mid_answer(self, httpd, big_state_room):
        room = big_state_room
        c = self.client(httpd, room)
        eid = room.order[-1]
        path = f"{FED}/state/{q(room.room_id)}?event_id={q(eid)}"
        auth = xmatrix(c.origin, c.key, SERVER_NAME, "GET", path)
        gone_before = sum("MXF25059" in line for line in httpd.new_log_lines())
        # More abandoned answers than any process has pooled connections (DBDMax 8).
        for _ in range(24):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # the server blocks soon
                s.settimeout(10)
                s.connect(("127.0.0.1", httpd.port))
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: {SERVER_NAME}\r\n"
                          f"Authorization: {auth}\r\n\r\n".encode())
                assert s.recv(4096).startswith(b"HTTP/1.1 200")
                time.sleep(0.05)
        # The module noticed (debug log) that clients left mid-answer.
        deadline = time.time() + 10
        while sum("MXF25059" in line for line in httpd.new_log_lines()) == gone_before:
            assert time.time() < deadline, "no answer was cut short"
            time.sleep(0.1)
        # Every connection went back to the pool idle: whole answers again.
        exp_state = set(room.events[eid]["exp"]["state_before"].values())
        for _ in range(24):
            r = c.get(f"{FED}/state_ids/{q(room.room_id)}?event_id={q(eid)}")
            assert r.status == 200, r
            assert set(r.json["pdu_ids"]) == exp_state


# ------------------------------------------------------------------ timestamp_to_event

class TestTimestampToEvent:
    def test_040_050_both_directions(self, client, room):
        base = f"{FED}/timestamp_to_event/{q(room.room_id)}"
        evs = sorted(room.order, key=lambda e: (room.events[e]["json"]["origin_server_ts"],
                                                room.idx(e)))
        mid = evs[len(evs) // 2]
        ts = room.events[mid]["json"]["origin_server_ts"]
        r = client.get(f"{base}?ts={ts}&dir=f")
        assert r.status == 200 and r.json == {"event_id": mid, "origin_server_ts": ts}
        r = client.get(f"{base}?ts={ts + 1}&dir=b")
        assert r.json["event_id"] == mid
        r = client.get(f"{base}?ts={ts + 1}&dir=f")
        assert r.json["event_id"] == evs[len(evs) // 2 + 1]
        last_ts = room.events[evs[-1]]["json"]["origin_server_ts"]
        assert_error(client.get(f"{base}?ts={last_ts + 1}&dir=f"), 404, "M_NOT_FOUND")
        assert_error(client.get(f"{base}?ts=1&dir=b"), 404, "M_NOT_FOUND")

    def test_040_051_errors(self, client, room):
        base = f"{FED}/timestamp_to_event/{q(room.room_id)}"
        assert_error(client.get(f"{base}?dir=f"), 400, "M_MISSING_PARAM")
        assert_error(client.get(f"{base}?ts=5"), 400, "M_MISSING_PARAM")
        assert_error(client.get(f"{base}?ts=5&dir=x"), 400, "M_INVALID_PARAM")
        assert_error(client.get(f"{base}?ts=-5&dir=f"), 400, "M_INVALID_PARAM")
        # A timestamp beyond any event's: the last one looking backwards.
        r = client.get(f"{base}?ts=99999999999999999999999&dir=b")
        assert r.status == 200 and r.json["event_id"] == max(
            room.order, key=lambda e: (room.events[e]["json"]["origin_server_ts"], room.idx(e)))

    def test_040_053_ties_and_repeated_parameters(self, httpd, tie_room):
        """Events with the same timestamp: forward the shallower, backward the
        deeper (as the reference homeserver breaks ties), whatever the order
        they arrived in; a repeated parameter counts once, its first value."""
        t = tie_room
        c = Client(httpd, t["server"], t["key"])
        base = f"{FED}/timestamp_to_event/{q(t['room_id'])}"
        for ts in (t["ts"], t["ts"] - 1):
            r = c.get(f"{base}?ts={ts}&dir=f")
            assert r.status == 200 and r.json == {"event_id": t["b1"], "origin_server_ts": t["ts"]}
        r = c.get(f"{base}?ts={t['ts']}&dir=b")
        assert r.status == 200 and r.json == {"event_id": t["a2"], "origin_server_ts": t["ts"]}
        r = c.get(f"{base}?ts={t['ts']}&dir=b&dir=f&ts=1")
        assert r.status == 200 and r.json["event_id"] == t["a2"]
        r = c.get(f"{FED}/state_ids/{q(t['room_id'])}?event_id={q(t['a2'])}"
                  f"&event_id={q(t['b1'])}")
        assert r.status == 200 and t["a1"] in r.json["pdu_ids"]
        r = c.get(f"{FED}/backfill/{q(t['room_id'])}?v={q(t['a2'])}&limit=1&limit=50")
        assert r.status == 200 and len(r.json["pdus"]) == 1

    def test_040_052_unknown_room_is_not_found(self, client):
        """The spec lists 404 M_NOT_FOUND: a room not known here has no event."""
        r = client.get(f"{FED}/timestamp_to_event/{q('!nosuchroom:elsewhere.example')}"
                       "?ts=1&dir=f")
        assert_error(r, 404, "M_NOT_FOUND")


# ------------------------------------------------------------------ authorization

class TestAuthorization:
    def endpoints(self, room):
        tip = room.order[-1]
        rid = q(room.room_id)
        return [
            ("GET", f"{FED}/backfill/{rid}?v={q(tip)}&limit=5", None),
            ("POST", f"{FED}/get_missing_events/{rid}",
             {"earliest_events": [], "latest_events": [tip]}),
            ("GET", f"{FED}/state_ids/{rid}?event_id={q(tip)}", None),
            ("GET", f"{FED}/state/{rid}?event_id={q(tip)}", None),
            ("GET", f"{FED}/event_auth/{rid}/{q(tip)}", None),
            ("GET", f"{FED}/event/{q(tip)}", None),
            ("GET", f"{FED}/timestamp_to_event/{rid}?ts=0&dir=f", None),
        ]

    def call(self, c, method, path, body):
        return c.get(path) if method == "GET" else c.post(path, body)

    def test_040_060_non_member_is_forbidden(self, httpd, room, outsider):
        c = Client(httpd, *outsider)
        for method, path, body in self.endpoints(room):
            assert_error(self.call(c, method, path, body), 403, "M_FORBIDDEN")

    def test_040_061_unknown_room_is_forbidden(self, client):
        r = client.get(f"{FED}/backfill/{q('!nosuchroom:hs1.example')}?v={q('$x')}&limit=5")
        assert_error(r, 403, "M_FORBIDDEN")

    def test_040_062_acl(self, client, room, postgres):
        rid = room.room_id.replace("'", "''")
        saved = postgres.psql(postgres.DBNAME,
                              f"SELECT current_acl FROM mxf_rooms WHERE room_id = '{rid}'")
        host = client.origin.split(":")[0]
        cases = [
            ({"allow": ["*"], "deny": [host.upper()]}, False),
            ({"allow": ["*"], "deny": ["*.nomatch"]}, True),
            ({"allow": [host[:3] + "*"]}, True),
            ({"deny": []}, False),                       # no allow: deny all
            ({"allow": ["h?" + host[2:]]}, True),
        ]
        try:
            for acl, allowed in cases:
                text = json.dumps(acl).replace("'", "''")
                postgres.psql(postgres.DBNAME,
                              f"UPDATE mxf_rooms SET current_acl = '{text}' WHERE room_id = '{rid}'")
                for method, path, body in self.endpoints(room):
                    r = self.call(client, method, path, body)
                    if allowed:
                        assert r.status == 200, (acl, path, r)
                    else:
                        assert_error(r, 403, "M_FORBIDDEN")
        finally:
            value = "NULL" if not saved else "'" + saved.replace("'", "''") + "'"
            postgres.psql(postgres.DBNAME,
                          f"UPDATE mxf_rooms SET current_acl = {value} WHERE room_id = '{rid}'")

    def test_040_064_acl_decision_kept_by_the_importer(self, client, room, postgres):
        """get_missing_events and backfill check access and walk in one
        statement when the importer's ACL decision (mxf_room_servers.
        acl_allowed) lets the origin in, and in two otherwise; the module's
        own ACL check decides either way. Every combination of the kept
        decision and the ACL in force gives the same answers."""
        rid = room.room_id.replace("'", "''")
        origin = client.origin.replace("'", "''")
        where = (f"room_nid = (SELECT room_nid FROM mxf_rooms WHERE room_id = '{rid}')"
                 f" AND server_name = '{origin}'")
        saved_acl = postgres.psql(postgres.DBNAME,
                                  f"SELECT current_acl FROM mxf_rooms WHERE room_id = '{rid}'")
        saved = postgres.psql(postgres.DBNAME,
                              f"SELECT coalesce(acl_allowed::text, 'NULL')"
                              f" FROM mxf_room_servers WHERE {where}")
        # The importer decided: the generated room's ACL allows every
        # server with members but denied.example.
        assert saved == "true"
        tip = room.order[-1]
        walks = [
            ("POST", f"{FED}/get_missing_events/{q(room.room_id)}",
             {"earliest_events": [], "latest_events": [tip], "limit": 7}),
            ("GET", f"{FED}/backfill/{q(room.room_id)}?v={q(tip)}&limit=9", None),
        ]

        def answers():
            out = []
            for method, path, body in walks:
                r = self.call(client, method, path, body)
                out.append((r.status, r.json.get("events", r.json.get("pdus"))
                            if r.status == 200 else r.json["errcode"]))
            return out

        expected = answers()
        assert [len(a[1]) for a in expected] == [7, 9]
        host = client.origin.split(":")[0]
        deny_me = json.dumps({"allow": ["*"], "deny": [host]}).replace("'", "''")
        try:
            for kept in ("NULL", "false", "true"):
                postgres.psql(postgres.DBNAME,
                              f"UPDATE mxf_room_servers SET acl_allowed = {kept} WHERE {where}")
                assert answers() == expected, kept
            # A kept decision that no longer holds does not let a denied server in.
            postgres.psql(postgres.DBNAME,
                          f"UPDATE mxf_rooms SET current_acl = '{deny_me}' WHERE room_id = '{rid}'")
            for method, path, body in walks:
                assert_error(self.call(client, method, path, body), 403, "M_FORBIDDEN")
        finally:
            value = "NULL" if not saved_acl else "'" + saved_acl.replace("'", "''") + "'"
            postgres.psql(postgres.DBNAME,
                          f"UPDATE mxf_rooms SET current_acl = {value} WHERE room_id = '{rid}'")
            postgres.psql(postgres.DBNAME,
                          f"UPDATE mxf_room_servers SET acl_allowed = {saved} WHERE {where}")

    def test_040_063_unsigned_requests(self, httpd, room):
        for method, path, body in self.endpoints(room):
            r = httpd.request(method, path, body=json.dumps(body) if body else None)
            assert_error(r, 401, "M_UNAUTHORIZED")


# ------------------------------------------------------------------ the database going away

class TestDatabaseOutage:
    def test_040_090_outage_and_recovery(self, client, room, postgres):
        path = f"{FED}/event/{q(room.order[-1])}"
        assert client.get(path).status == 200
        postgres.stop()
        try:
            r = client.get(path)
            assert_error(r, 503, "M_UNKNOWN")
            assert r.header("Retry-After")
        finally:
            postgres.restart()
        # The module recovers without an httpd restart.
        statuses = [client.get(path).status for _ in range(3)]
        assert statuses[-1] == 200, statuses

    def test_040_091_outage_and_origins_not_yet_seen(self, httpd, client, room, postgres):
        """The keys of an origin this httpd has not seen yet are in the key
        table: with the database down the answer is 503 (try again), not
        401, and no key fetch is tried; after the restart each such
        origin's first request is authenticated at once (the key statement
        is prepared again on the reset connection)."""
        path = f"{FED}/event/{q(room.order[-1])}"
        others = [s for s in room.summary["joined_servers"] if s != client.origin]
        assert len(others) >= 2
        clients = [Client(httpd, s, load_key(room.key_path(s))) for s in others]
        assert client.get(path).status == 200
        postgres.stop()
        try:
            r = clients[0].get(path)
            assert_error(r, 503, "M_UNKNOWN")
            assert r.header("Retry-After")
        finally:
            postgres.restart()
        for c in clients:
            r = c.get(path)
            assert r.status == 200, (c.origin, r)
        log = "\n".join(httpd.new_log_lines())
        assert "MXF25068" in log and "could not be fetched" not in log, log


# ------------------------------------------------------------------ room version 3 IDs

class TestEncodedIds:
    """Room version 3 event IDs are standard base64: '/' and '+' must work
    percent-encoded in paths and queries, whatever AllowEncodedSlashes says
    (the module decodes its paths itself)."""

    @pytest.fixture(scope="class")
    def room3(self, build_env, postgres, workdir):
        room = gen_room(build_env.cli, os.path.join(workdir, "room-v3"), room_version=3,
                        events=150, servers=2, seed=31)
        import_room(build_env.cli, postgres.conninfo(), room)
        return room

    @staticmethod
    def served_by_id(h, room3, eids):
        """/event, /state_ids and /event_auth answer each of eids (percent-encoded)."""
        server = room3.summary["joined_servers"][-1]
        c = Client(h, server, load_key(room3.key_path(server)))
        for eid in eids:
            r = c.get(f"{FED}/event/{q(eid)}")
            assert r.status == 200, r
            assert room3.identify(r.json["pdus"][0]) == eid
            r = c.get(f"{FED}/state_ids/{q(room3.room_id)}?event_id={q(eid)}")
            assert r.status == 200, r
            assert set(r.json["pdu_ids"]) == set(room3.events[eid]["exp"]["state_before"].values())
            r = c.get(f"{FED}/event_auth/{q(room3.room_id)}/{q(eid)}")
            assert r.status == 200, r
            assert {room3.identify(p) for p in r.json["auth_chain"]} == room3.auth_chain([eid])
        return c

    def test_040_070_slash_and_plus(self, httpd, room3):
        odd = [e for e in room3.order if "/" in e or "+" in e]
        assert odd, "no event ID with '/' or '+' in the generated room"
        self.served_by_id(httpd, room3, odd[:10])

    @pytest.fixture(scope="class")
    def plain_httpd(self, httpd_factory, postgres, signing_key, backend):
        """The standard site without AllowEncodedSlashes (httpd's default: Off)."""
        from conftest import site_config
        site = "\n".join(l for l in site_config(postgres, signing_key, backend).splitlines()
                         if not l.startswith("AllowEncodedSlashes"))
        h = httpd_factory.new("httpd-no-encoded-slashes")
        h.start(site)
        yield h
        h.stop()

    def test_040_071_without_allow_encoded_slashes(self, plain_httpd, room3):
        slashed = [e for e in room3.order if "/" in e]
        assert slashed, "no event ID with '/' in the generated room"
        c = self.served_by_id(plain_httpd, room3, slashed[:5])
        # Percent-encoding decoded once: %2524 is "%24", not "$".
        assert_error(c.get(f"{FED}/event/%2524{q(slashed[0][1:])}"), 400, "M_INVALID_PARAM")

    @pytest.mark.parametrize("what", ["request-line", "header"])
    def test_040_073_over_httpd_limits_matrix_errors(self, httpd, room3, what):
        """A request line over LimitRequestLine (a backfill with many v, 414)
        or a header over LimitRequestFieldSize (400) is refused by httpd
        before any module runs; under /_matrix/ the answer is still a
        Matrix error, elsewhere httpd's own page."""
        server = room3.summary["joined_servers"][-1]
        c = Client(httpd, server, load_key(room3.key_path(server)))
        v = "&".join(f"v={q(room3.order[-1])}" for _ in range(200))
        path = f"{FED}/backfill/{q(room3.room_id)}?{v}&limit=2"
        if what == "request-line":
            assert len(path) > 8190
            r, status, other = c.get(path), 414, httpd.get("/x?" + "a" * 9000)
        else:
            big = {"X-Padding": "p" * 9000}
            path = f"{FED}/backfill/{q(room3.room_id)}?v={q(room3.order[-1])}&limit=2"
            r = httpd.get(path, headers={"Authorization": xmatrix(
                server, load_key(room3.key_path(server)), SERVER_NAME, "GET", path), **big})
            status, other = 400, httpd.get("/x", headers=big)
        assert_error(r, status, "M_UNKNOWN")
        assert set(r.json) == {"errcode", "error"}, r
        assert other.status == status and "text/html" in other.header("Content-Type"), other

    @pytest.mark.parametrize("path,status", [
        (FED + "/event/%ZZabc", 400),                   # not an escape
        (FED + "/event/%24a%00b", 400),                 # an encoded NUL
        (FED + "/event/%24a%2", 400),                   # cut short
        (FED + "/event/../../../../../../x", 400),      # above the root: httpd refuses it
    ])
    def test_040_072_bad_paths_get_matrix_errors(self, plain_httpd, httpd, room3, path, status):
        """Paths httpd itself would refuse with its HTML error page get a
        Matrix error under the module's prefixes, with or without
        AllowEncodedSlashes."""
        server = room3.summary["joined_servers"][-1]
        for h in (plain_httpd, httpd):
            c = Client(h, server, load_key(room3.key_path(server)))
            r = c.get(path)
            assert r.status == status, (path, r)
            assert r.header("Content-Type") == "application/json", (path, r)
            assert set(r.json) == {"errcode", "error"}, r
