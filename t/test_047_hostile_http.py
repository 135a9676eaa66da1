# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Hostile and malformed HTTP input to every endpoint the module owns.
Requests are X-Matrix signed (so they reach the parsing past
authentication) and sent over raw sockets, so that the request line,
headers and body are exactly what is written here. Every answer must be a
valid answer or a Matrix error ({"errcode","error"} as application/json) with
the status the README and the spec give, never a hang, an HTML page, a 500
or a sanitizer report (the httpd_factory fixture fails the run on one).

test_047_020 is a bounded fuzzer: random mutations of valid signed
requests, every answer checked. The tests after it: a malformed escape in a
path, a notary parameter given twice, and a body announced but never read."""
import gzip
import json
import os
import random
import re
import socket
import time
import urllib.parse

import pytest

from conftest import SERVER_NAME
from mxftest.matrix import gen_room, import_room, load_key, xmatrix

FED = "/_matrix/federation/v1"


def q(value):
    return urllib.parse.quote(value, safe="")


# ------------------------------------------------------------------ raw HTTP

def raw(port, data, timeout=40):
    """Sends @data as is; returns (bytes received until close, seconds)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    t0 = time.monotonic()
    out = b""
    try:
        try:
            s.sendall(data)
        except OSError:
            pass
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                out += b"<<TIMEOUT>>"
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    return out, time.monotonic() - t0


def parse(out):
    """(status, headers, body) of the first final answer in @out (chunked
    bodies joined)."""
    while out.startswith(b"HTTP/1.1 100"):
        out = out.split(b"\r\n\r\n", 1)[1]
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        status = None
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
    if headers.get("transfer-encoding") == "chunked":
        joined, rest = b"", body
        while rest:
            n, _, rest = rest.partition(b"\r\n")
            try:
                n = int(n.split(b";")[0], 16)
            except ValueError:
                break
            if n == 0:
                break
            joined += rest[:n]
            rest = rest[n + 2:]
        body = joined
    return status, headers, body


class Peer:
    """One origin server with a joined member in the rooms, sending signed
    requests over raw sockets."""

    def __init__(self, httpd, origin, key):
        self.httpd, self.origin, self.key = httpd, origin, key

    def auth(self, method, uri, content=None):
        try:
            return xmatrix(self.origin, self.key, SERVER_NAME, method, uri, content)
        except (UnicodeEncodeError, ValueError, TypeError):
            return xmatrix(self.origin, self.key, SERVER_NAME, method, uri, None)

    def build(self, method, uri, body=None, content=None, headers=None, sign=True,
              close=True):
        hs = {"Host": "localhost"}
        if close:
            hs["Connection"] = "close"
        if sign:
            hs["Authorization"] = self.auth(method, uri, content)
        if body is not None:
            if isinstance(body, str):
                body = body.encode()
            hs["Content-Type"] = "application/json"
            hs["Content-Length"] = str(len(body))
        for k, v in (headers or {}).items():
            if v is None:
                hs.pop(k, None)
            else:
                hs[k] = v
        head = f"{method} {uri} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs.items())
        return head.encode("latin-1") + b"\r\n" + (body or b"")

    def send(self, method, uri, body=None, content=None, **kw):
        """(status, headers, body bytes, seconds)."""
        if content is None and body is not None:
            try:
                content = json.loads(body)
            except (ValueError, RecursionError):
                content = None
        out, t = raw(self.httpd.port, self.build(method, uri, body, content, **kw))
        status, headers, b = parse(out)
        return status, headers, b, t


def assert_matrix_error(resp, status, errcode=None):
    st, headers, body = resp[0], resp[1], resp[2]
    assert st == status, resp
    assert headers.get("content-type") == "application/json", resp
    err = json.loads(body)
    assert isinstance(err.get("errcode"), str) and isinstance(err.get("error"), str), resp
    if errcode:
        assert err["errcode"] == errcode, resp


# ------------------------------------------------------------------ rooms

@pytest.fixture(scope="module")
def hostile_rooms(build_env, postgres, workdir):
    """Rooms whose event IDs have each form: v1 ($local:server), v3 (standard
    base64 with '/' and '+'), v10 (URL-safe), v12 (room ID from the create
    event's hash)."""
    rooms = {}
    for v in ("1", "3", "10", "12"):
        room = gen_room(build_env.cli, os.path.join(workdir, f"room-e2-v{v}"), room_version=v,
                        events=80, servers=3, seed=5)
        import_room(build_env.cli, postgres.conninfo(), room)
        rooms[v] = room
    return rooms


def peer_for(httpd, room):
    origin = room.summary["joined_servers"][0]
    return Peer(httpd, origin, load_key(room.key_path(origin)))


@pytest.fixture(scope="class")
def peer(httpd, hostile_rooms):
    return peer_for(httpd, hostile_rooms["10"])


# ------------------------------------------------------------------ fixed cases

class TestHostileInput:
    def test_047_001_path_edge_cases(self, peer, hostile_rooms):
        room = hostile_rooms["10"]
        rid, tip = q(room.room_id), q(room.order[-1])
        cases = [
            (f"{FED}/event/%24abc%00def", 400, "M_INVALID_PARAM"),
            (f"{FED}/event/%24abc%FF", 400, "M_INVALID_PARAM"),         # not UTF-8
            (f"{FED}/event/%24%C0%AF", 400, "M_INVALID_PARAM"),         # overlong
            (f"{FED}/event/%24%ED%A0%80", 400, "M_INVALID_PARAM"),      # surrogate
            (f"{FED}/event/%24" + "a" * 254, 404, "M_NOT_FOUND"),
            (f"{FED}/event/%24" + "a" * 255, 400, "M_INVALID_PARAM"),
            (f"{FED}/event/%24" + "a" * 8000, 400, "M_INVALID_PARAM"),
            (f"{FED}/event/%24" + "a" * 65000, 414, None),               # over LimitRequestLine
            (f"{FED}/event/%24abc%2Fdef", 404, "M_NOT_FOUND"),
            (f"{FED}/event/", 404, "M_UNRECOGNIZED"),
            (f"{FED}/event/{tip}/x/y", 404, "M_UNRECOGNIZED"),
            (f"{FED}/event_auth/{rid}/{tip}/x", 404, "M_UNRECOGNIZED"),
            (f"{FED}/event_auth//{tip}", 404, "M_UNRECOGNIZED"),
            (f"{FED}/state_ids/notaroom?event_id={tip}", 400, "M_INVALID_PARAM"),
            (f"{FED}/state_ids/%21%FF%3Atest.example?event_id={tip}", 400, "M_INVALID_PARAM"),
            (f"{FED}/state_ids/%21a%3Ax.y%3A0?event_id={tip}", 400, "M_INVALID_PARAM"),
            (f"{FED}/state_ids/%21" + "a" * 300 + f"%3Ax.y?event_id={tip}", 400,
             "M_INVALID_PARAM"),
            (f"{FED}/../../../../x", 400, None),
            ("/_matrix/key/v2/query/%00", 400, "M_INVALID_PARAM"),
            ("/_matrix/key/v2/query/a/b/c", 404, "M_UNRECOGNIZED"),
            (f"{FED}/version/x", 404, "M_UNRECOGNIZED"),
        ]
        for path, status, errcode in cases:
            assert_matrix_error(peer.send("GET", path), status, errcode)
        for path in (f"{FED}/event/{tip}", f"{FED}/event/{tip}/", f"{FED}//event/{tip}",
                     f"{FED}/event//{tip}", f"{FED}/x/../event/{tip}"):
            assert peer.send("GET", path)[0] == 200, path

    def test_047_002_every_id_form(self, httpd, hostile_rooms):
        for v, room in hostile_rooms.items():
            p = peer_for(httpd, room)
            rid, tip, mid = q(room.room_id), q(room.order[-1]), q(room.order[40])
            for path in (f"{FED}/event/{tip}", f"{FED}/event_auth/{rid}/{mid}",
                         f"{FED}/state_ids/{rid}?event_id={mid}",
                         f"{FED}/state/{rid}?event_id={mid}",
                         f"{FED}/backfill/{rid}?v={tip}&limit=3",
                         f"{FED}/timestamp_to_event/{rid}?ts=0&dir=f"):
                st, h, b, _ = p.send("GET", path)
                assert st == 200 and h["content-type"] == "application/json", (v, path, st, b)
                json.loads(b)

    def test_047_003_query_values(self, peer, hostile_rooms):
        room = hostile_rooms["10"]
        rid, tip = q(room.room_id), q(room.order[-1])
        bf, ts = f"{FED}/backfill/{rid}", f"{FED}/timestamp_to_event/{rid}"
        for lim in ("1e3", "10.5", "-0", "+5", "0x10", "%205", "5%20", "", "1,2", "abc"):
            assert_matrix_error(peer.send("GET", f"{bf}?v={tip}&limit={lim}"), 400,
                                "M_INVALID_PARAM")
        for lim in ("99999999999999999999", "00010", "%31%30"):
            assert peer.send("GET", f"{bf}?v={tip}&limit={lim}")[0] == 200, lim
        assert_matrix_error(peer.send("GET", f"{bf}?v={tip}&limit"), 400, "M_MISSING_PARAM")
        assert_matrix_error(peer.send("GET", f"{bf}?v&limit=3"), 400, "M_MISSING_PARAM")
        assert peer.send("GET", f"{bf}?v=" + ",".join(["$x"] * 2000) + "&limit=3")[0] == 200
        assert_matrix_error(peer.send("GET", f"{bf}?" + "&".join([f"v={tip}"] * 300)
                                      + "&limit=3"), 414)
        for t in ("abc", "-1", "-0", "1.5", "1e3", "0x1", ""):
            assert_matrix_error(peer.send("GET", f"{ts}?ts={t}&dir=f"), 400, "M_INVALID_PARAM")
        assert_matrix_error(peer.send("GET", f"{ts}?ts=99999999999999999999&dir=f"), 404,
                            "M_NOT_FOUND")
        for d in ("F", "x", "", "fb", "b,f"):
            assert_matrix_error(peer.send("GET", f"{ts}?ts=0&dir={d}"), 400, "M_INVALID_PARAM")
        assert_matrix_error(peer.send("GET", f"{ts}?ts=0"), 400, "M_MISSING_PARAM")
        assert_matrix_error(peer.send("GET", f"{FED}/state_ids/{rid}"), 400, "M_MISSING_PARAM")

    def test_047_004_methods(self, peer, hostile_rooms):
        room = hostile_rooms["10"]
        rid, tip = q(room.room_id), q(room.order[-1])
        gets = [f"{FED}/event/{tip}", f"{FED}/state_ids/{rid}?event_id={tip}",
                f"{FED}/event_auth/{rid}/{tip}", f"{FED}/version", "/_matrix/key/v2/server"]
        for path in gets:
            for m in ("PUT", "DELETE", "TRACE", "PATCH", "POST", "FOO"):
                r = peer.send(m, path, body="{}" if m in ("PUT", "PATCH", "POST") else None)
                assert_matrix_error(r, 405, "M_UNRECOGNIZED")
                assert r[1]["allow"] == "GET, HEAD", r
            st, h, b, _ = peer.send("HEAD", path)
            assert st == 200 and b == b"", (path, st, b)
            st, h, b, _ = peer.send("OPTIONS", path, sign=False)
            assert st == 204 and h["allow"] == "GET, HEAD, OPTIONS", (path, st, h)
        gme = f"{FED}/get_missing_events/{rid}"
        for m in ("GET", "HEAD", "PUT", "DELETE", "TRACE"):
            r = peer.send(m, gme)
            assert r[0] == 405 and r[1]["allow"] == "POST", r

    def test_047_005_bodies(self, peer, hostile_rooms):
        room = hostile_rooms["10"]
        tip = room.order[-1]
        gme = f"{FED}/get_missing_events/{q(room.room_id)}"
        cases = [
            ("hello", 400, "M_NOT_JSON"), ("", 400, "M_NOT_JSON"), ("1", 400, "M_BAD_JSON"),
            ('"x"', 400, "M_BAD_JSON"), ("null", 400, "M_BAD_JSON"), ("[]", 400, "M_BAD_JSON"),
            ('{"limit":1,"limit":2}', 400, "M_BAD_JSON"),
            ('{"x":' + "[" * 10000 + "]" * 10000 + "}", 400, "M_BAD_JSON"),
            ("[" * 30000, 400, "M_BAD_JSON"),
            ('{"latest_events":[1,null,{}]}', 400, "M_BAD_JSON"),
            ('{"latest_events":["\\ud800"]}', 400, "M_NOT_JSON"),
            (b'{"latest_events":["\xff\xfe"]}', 400, "M_NOT_JSON"),
            (b"\xef\xbb\xbf{}", 400, "M_NOT_JSON"),
            ("{} x", 400, "M_NOT_JSON"), ('{"limit":NaN}', 400, "M_NOT_JSON"),
            ('{"limit":1e400}', 400, "M_BAD_JSON"), ('{"limit":-0.0}', 400, "M_INVALID_PARAM"),
            ('{"limit":10.5}', 400, "M_INVALID_PARAM"), ('{"limit":true}', 400, "M_BAD_JSON"),
            (json.dumps({"latest_events": ["$" + "a" * 1000000]}), 413, "M_TOO_LARGE"),
        ]
        for body, status, errcode in cases:
            assert_matrix_error(peer.send("POST", gme, body=body), status, errcode)
        good = json.dumps({"latest_events": [tip], "limit": 2})
        for headers in ({"Content-Type": "text/plain"}, {"Content-Type": None},
                        {"Content-Encoding": "identity"}, {"Expect": "100-continue"}):
            st, h, b, _ = peer.send("POST", gme, body=good, headers=headers)
            assert st == 200 and len(json.loads(b)["events"]) == 2, (headers, st, b)
        zipped = gzip.compress(good.encode())
        assert_matrix_error(peer.send("POST", gme, body=zipped, content=json.loads(good),
                                      headers={"Content-Encoding": "gzip"}), 400, "M_NOT_JSON")
        # Chunked: whole, too large (413 as soon as the limit is passed), malformed.
        data = good.encode()
        chunked = b"5\r\n" + data[:5] + b"\r\n" + b"%x\r\n" % (len(data) - 5) + data[5:] \
            + b"\r\n0\r\n\r\n"
        st, h, b, _ = peer.send("POST", gme, body=chunked, content=json.loads(good),
                                headers={"Transfer-Encoding": "chunked", "Content-Length": None})
        assert st == 200, (st, b)
        big = b"".join(b"2000\r\n" + b"a" * 0x2000 + b"\r\n" for _ in range(25)) + b"0\r\n\r\n"
        assert_matrix_error(peer.send("POST", gme, body=big, headers={
            "Transfer-Encoding": "chunked", "Content-Length": None}), 413, "M_TOO_LARGE")
        assert_matrix_error(peer.send("POST", gme, body=b"zz\r\nabc\r\n0\r\n\r\n", headers={
            "Transfer-Encoding": "chunked", "Content-Length": None}), 400)

    def test_047_006_truncated_body_ends_within_timeout(self, peer, hostile_rooms):
        """A client that announces more body than it sends gets 408 (a
        Matrix error) within httpd's Timeout (30 s in the harness)."""
        gme = f"{FED}/get_missing_events/{q(hostile_rooms['10'].room_id)}"
        data = peer.build("POST", gme, body=b'{"limit":2}', content={"limit": 2},
                          headers={"Content-Length": "100"}, close=False)
        out, t = raw(peer.httpd.port, data, timeout=45)
        assert t < 35, t
        assert_matrix_error(parse(out), 408)

    def test_047_007_authorization_variants(self, peer, hostile_rooms):
        path = f"{FED}/event/{q(hostile_rooms['10'].order[-1])}"
        good = peer.auth("GET", path)
        sig = good.split('sig="')[1].rstrip('"')

        def get(value):
            return peer.send("GET", path, sign=False, headers={"Authorization": value})

        for value in (good.replace("X-Matrix", "x-matrix"), good.replace('"', ""),
                      good + ',foo="bar"', good + ",foo", good.replace("origin=", "ORIGIN="),
                      good.replace(sig, sig + "=" * (-len(sig) % 4)),
                      good.replace(sig, sig.replace("+", "-").replace("/", "_")),
                      good.replace(f'destination="{SERVER_NAME}",', ""), good + ",",
                      ", " + good, good + ", Basic Zm9vOmJhcg==", good + ",x=\"" + "a" * 7000 + '"'):
            assert get(value)[0] == 200, value
        for value in ("", "Bearer abc", "X-Matrix", good.replace("X-Matrix ", ""),
                      good + f',origin="{peer.origin}"', good.replace(sig, sig[:-4]),
                      good.replace(sig, "!!!!" + sig[4:]), good + "," * 5000,
                      good.replace(f'destination="{SERVER_NAME}"', 'destination="other.example"'),
                      good.replace('key="ed25519:', 'key="ED25519:'), good + ',x="abc\\',
                      "X-Matrix abcdef=="):
            assert_matrix_error(get(value), 401, "M_UNAUTHORIZED")
        lines = [f"GET {path} HTTP/1.1", "Host: x", "Connection: close"]
        for values, status in (([good, "garbage"], 200), ([good, good.replace(sig, sig[::-1])], 401)):
            data = "\r\n".join(lines + [f"Authorization: {v}" for v in values]) + "\r\n\r\n"
            assert parse(raw(peer.httpd.port, data.encode())[0])[0] == status, values

    def test_047_008_pipelined_requests_stay_in_step(self, peer, hostile_rooms):
        """Bodies the module does not read (GET, 405, OPTIONS, HEAD) are
        discarded, never taken as the next request."""
        room = hostile_rooms["10"]
        ev, gme = f"{FED}/event/{q(room.order[-1])}", f"{FED}/get_missing_events/{q(room.room_id)}"
        smuggled = b"GET /_matrix/federation/v1/version HTTP/1.1\r\nHost: x\r\n\r\n"
        seq = [peer.build("GET", ev, close=False),
               peer.build("POST", ev, body=smuggled, close=False),
               peer.build("POST", gme, body='{"limit":1}', content={"limit": 1}, close=False),
               peer.build("OPTIONS", gme, body=smuggled, close=False),
               peer.build("GET", ev, body=smuggled, close=False),
               peer.build("DELETE", ev, body=smuggled, close=False),
               peer.build("HEAD", ev, body=smuggled, close=False),
               peer.build("GET", ev)]
        out, _ = raw(peer.httpd.port, b"".join(seq))
        statuses = [int(x) for x in re.findall(rb"HTTP/1\.1 (\d{3}) ", out)]
        expected = [200, 405, 200, 204, 200, 405, 200, 200]
        # The server may close after a request whose body it leaves unread
        # (saying so); it must never answer a smuggled request.
        assert statuses == expected[:len(statuses)] and statuses, statuses
        assert b"/version" not in out and b'"server":' not in out, out[-300:]
        if len(statuses) < len(expected):
            last_head = out[out.rfind(b"HTTP/1.1 "):].split(b"\r\n\r\n", 1)[0]
            assert b"Connection: close" in last_head, last_head


# ------------------------------------------------------------------ fuzzer

ALLOWED_ERRORS = {400, 401, 403, 404, 405, 408, 411, 413, 414, 417, 431}
JUNK = ["%", "%0", "%00", "%zz", "%2F", "%25", "%FF", "%C3%28", "/", "//", "..", "%2e%2e", "?",
        "&", "=", ",", ";", "+", "$", "!", ":", "@", "\\", '"', "{", "a" * 300, "a" * 3000,
        "%24" + "b" * 254]
QVALS = ["", "0", "-1", "-0", "1e3", "10.5", "99999999999999999999", "0x10", "abc", "%00", "%ZZ",
         "f", "b", "1,2", ",", "$x", "%24x", "9" * 400, "+1", "%20", "nan", "00001"]
QNAMES = ["v", "limit", "event_id", "ts", "dir", "minimum_valid_until_ts", "x", ""]


class Fuzzer:
    def __init__(self, rooms, seed):
        self.rnd = random.Random(seed)
        self.bases = []
        for room in rooms.values():
            rid, tip = q(room.room_id), q(room.order[-1])
            mid = room.order[len(room.order) // 2]
            self.bases += [
                ("GET", f"{FED}/event/{tip}", None),
                ("GET", f"{FED}/backfill/{rid}?v={tip},{q(mid)}&limit=3", None),
                ("GET", f"{FED}/state_ids/{rid}?event_id={q(mid)}", None),
                ("GET", f"{FED}/state/{rid}?event_id={q(mid)}", None),
                ("GET", f"{FED}/event_auth/{rid}/{q(mid)}", None),
                ("GET", f"{FED}/timestamp_to_event/{rid}?ts=0&dir=f", None),
                ("POST", f"{FED}/get_missing_events/{rid}",
                 {"earliest_events": [mid], "latest_events": [room.order[-1]], "limit": 5}),
            ]
        self.bases += [("GET", f"{FED}/version", None), ("GET", "/_matrix/key/v2/server", None),
                       ("GET", "/_matrix/key/v2/query/test.example?minimum_valid_until_ts=0", None),
                       ("POST", "/_matrix/key/v2/query", {"server_keys": {"test.example": {}}})]

    def mut_str(self, s):
        s = list(s)
        for _ in range(self.rnd.randint(1, 3)):
            pos = self.rnd.randint(0, len(s))
            k = self.rnd.random()
            if k < 0.5:
                s[pos:pos] = list(self.rnd.choice(JUNK))
            elif k < 0.8 and s:
                del s[pos:pos + self.rnd.randint(1, 8)]
            else:
                s[pos:pos] = [chr(self.rnd.randint(0x21, 0x7e))]
        return "".join(s)

    def mut_query(self, uri):
        path, _, qs = uri.partition("?")
        parts = [p for p in qs.split("&") if p]
        for _ in range(self.rnd.randint(1, 3)):
            k = self.rnd.random()
            if k < 0.3 and parts:
                parts.pop(self.rnd.randrange(len(parts)))
            elif k < 0.5 and parts:
                parts.insert(self.rnd.randint(0, len(parts)), self.rnd.choice(parts))
            else:
                parts.insert(self.rnd.randint(0, len(parts)),
                             f"{self.rnd.choice(QNAMES)}={self.rnd.choice(QVALS)}")
        return path + ("?" + "&".join(parts) if parts else "")

    def rand_json(self, depth=0):
        k = self.rnd.random()
        if depth > 3 or k < 0.3:
            return self.rnd.choice([None, True, 0, -1, 1.5, 10.0, 2 ** 53, 2 ** 63 - 1, 1e300, "",
                                    "$x", "\ud83d\ude00", "a" * self.rnd.randint(0, 3000)])
        if k < 0.6:
            return [self.rand_json(depth + 1) for _ in range(self.rnd.randint(0, 4))]
        keys = ["earliest_events", "latest_events", "limit", "min_depth", "server_keys", "x"]
        return {self.rnd.choice(keys): self.rand_json(depth + 1)
                for _ in range(self.rnd.randint(0, 4))}

    def mut_body(self, obj):
        k = self.rnd.random()
        if k < 0.5:
            o = dict(obj)
            o[self.rnd.choice(list(o) + ["limit", "min_depth", "x"])] = self.rand_json()
            return json.dumps(o).encode(), o
        if k < 0.6:
            d = self.rnd.randint(100, 20000)
            return ("[" * d + "]" * d).encode(), None
        b = bytearray(json.dumps(obj).encode())
        if k < 0.8:
            for _ in range(self.rnd.randint(1, 5)):
                b[self.rnd.randrange(len(b))] = self.rnd.randrange(256)
            return bytes(b), None
        return bytes(b[:self.rnd.randint(0, len(b))]), None

    def request(self, peer):
        method, uri, content = self.rnd.choice(self.bases)
        body = json.dumps(content).encode() if content is not None else None
        r = self.rnd.random()
        if r < 0.3:
            path, sep, qs = uri.partition("?")
            uri = self.mut_str(path) + sep + qs
        elif r < 0.55:
            uri = self.mut_query(uri)
        elif r < 0.8 and content is not None:
            body, content = self.mut_body(content)
        elif r < 0.9:
            method = self.rnd.choice(["HEAD", "OPTIONS", "PUT", "DELETE", "TRACE", "GET", "POST"])
            if method in ("PUT", "POST") and body is None:
                body, content = b"{}", {}
            if method not in ("PUT", "POST"):
                content = None
        headers = {}
        if body is not None and self.rnd.random() < 0.1:
            body = b"".join(b"%x\r\n" % len(body[i:i + 777]) + body[i:i + 777] + b"\r\n"
                            for i in range(0, len(body), 777)) + b"0\r\n\r\n"
            headers = {"Transfer-Encoding": "chunked", "Content-Length": None}
        data = peer.build(method, uri, body, content, headers=headers,
                          sign=self.rnd.random() < 0.9)
        if self.rnd.random() < 0.1:
            head, _, rest = data.partition(b"\r\n\r\n")
            head = head.decode("latin-1").replace("Authorization: ", "Authorization: "
                                                  + self.rnd.choice(["", "x", ",", '"']))
            data = head.encode("latin-1") + b"\r\n\r\n" + rest
        return method, uri, data


def check_answer(method, uri, out, seconds):
    problems = []
    if seconds > 5:
        problems.append(f"took {seconds:.1f} s")
    if not out.startswith(b"HTTP/1.1 "):
        return problems + [f"no HTTP answer: {out[:80]!r}"]
    status, headers, body = parse(out)
    if status >= 500 or (status >= 400 and status not in ALLOWED_ERRORS):
        problems.append(f"status {status}")
    if method == "HEAD" or status in (204, 304) or not uri.startswith("/_matrix/"):
        return problems
    if headers.get("content-type") != "application/json":
        problems.append(f"Content-Type {headers.get('content-type')!r}")
    try:
        answer = json.loads(body)
    except ValueError:
        return problems + [f"body not JSON: {body[:80]!r}"]
    if status >= 400 and not (isinstance(answer, dict) and isinstance(answer.get("errcode"), str)
                              and answer["errcode"].startswith("M_")
                              and isinstance(answer.get("error"), str)):
        problems.append(f"not a Matrix error: {body[:80]!r}")
    return problems


@pytest.mark.parametrize("seed", [1, 2])
def test_047_020_fuzz_signed_requests(httpd, hostile_rooms, seed):
    """1,200 mutated requests per seed (about 10 s): every answer a valid
    answer or a Matrix error, none slow, httpd alive afterwards (sanitizer
    reports fail the session)."""
    peer = peer_for(httpd, hostile_rooms["10"])
    fuzzer = Fuzzer(hostile_rooms, seed)
    bad = []
    for _ in range(1200):
        method, uri, data = fuzzer.request(peer)
        out, seconds = raw(httpd.port, data, timeout=40)
        for p in check_answer(method, uri, out, seconds):
            bad.append((p, method, uri[:160], out[:300]))
    assert not bad, bad[:10]
    assert peer.send("GET", f"{FED}/version", sign=False)[0] == 200


# ------------------------------------------------------------------
# A malformed percent-escape in a path parameter of the module's endpoints
# is 400 M_INVALID_PARAM, as an encoded NUL there is and as the same escape
# in a query parameter is (README, "Errors"). httpd refuses such a path
# itself (AH10244 "invalid URI path") before the module can claim the
# request; the JSON error filter gives its 400 the module's errcode.
@pytest.mark.parametrize("what", ["event", "state_ids room", "event_auth event",
                                  "backfill room", "notary server"])
@pytest.mark.parametrize("escape", ["%ZZ", "%2", "%G0"])
def test_047_101_malformed_path_escape_is_invalid_param(peer, hostile_rooms, what,
                                                        escape):
    room = hostile_rooms["10"]
    rid, tip = q(room.room_id), q(room.order[-1])
    path = {
        "event": f"{FED}/event/%24abc{escape}",
        "state_ids room": f"{FED}/state_ids/%21abc{escape}%3Atest.example?event_id={tip}",
        "event_auth event": f"{FED}/event_auth/{rid}/%24abc{escape}",
        "backfill room": f"{FED}/backfill/%21abc{escape}%3Atest.example?v={tip}&limit=1",
        "notary server": f"/_matrix/key/v2/query/abc{escape}",
    }[what]
    # The same request with an encoded NUL is M_INVALID_PARAM already:
    assert_matrix_error(peer.send("GET", path.replace(escape, "%00")), 400, "M_INVALID_PARAM")
    assert_matrix_error(peer.send("GET", path), 400, "M_INVALID_PARAM")


# ------------------------------------------------------------------
# The notary's minimum_valid_until_ts given twice counts once, with its
# first value, as every query parameter but v (README), and as the
# reference homeserver reads it (parse_integer takes the first value).
@pytest.mark.parametrize("path", ["/_matrix/key/v2/query/test.example",
                                  "/_matrix/key/v2/query/test.example/ed25519:1"])
def test_047_201_repeated_minimum_valid_until_ts_counts_once(httpd, path):
    uri = f"{path}?minimum_valid_until_ts=1&minimum_valid_until_ts=2"
    out, _ = raw(httpd.port, f"GET {uri} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    status, headers, body = parse(out)
    assert status == 200, (status, body)
    keys = json.loads(body)["server_keys"]
    assert [k["server_name"] for k in keys] == ["test.example"], keys


# ------------------------------------------------------------------
# A request the module answers without reading its body (a GET with a body,
# a 405, a 401, OPTIONS) whose client announced a body and did not send it:
# the answer goes at once and the connection is closed, as for a body over
# MatrixFedMaxBodySize. On a kept-alive connection httpd would first wait in
# ap_discard_request_body() for the rest of the body, until Timeout, holding
# the answer and a worker.
class TestUnreadBody:
    SITE_EXTRA = "Timeout 10"

    @pytest.mark.parametrize("method,sign", [("GET", True), ("GET", False), ("POST", True),
                                             ("DELETE", True), ("OPTIONS", False)])
    def test_047_301_answer_not_held_for_an_unsent_body(self, peer, hostile_rooms,
                                                        method, sign):
        path = f"{FED}/event/{q(hostile_rooms['10'].order[-1])}"
        data = peer.build(method, path, sign=sign, close=False,
                          headers={"Content-Length": "100"}) + b"{"
        with socket.create_connection(("127.0.0.1", peer.httpd.port), timeout=20) as s:
            start = time.monotonic()
            s.sendall(data)
            first = s.recv(64)
            waited = time.monotonic() - start
        assert first.startswith(b"HTTP/1.1 "), first
        assert waited < 3, f"{method}: answer ({first[:12]!r}) held {waited:.1f} s"
