# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The post_read_request ErrorDocument override and claim()'s
connection close, over HTTP/2 (h2c prior knowledge), for HEAD, for the
homeserver's answers behind mod_proxy (ProxyErrorOverride Off), and
keep-alive of the module's POSTs."""
import http.client
import http.server
import json
import os
import socket
import subprocess
import threading
import time

import pytest

from conftest import SERVER_NAME, module_config
from test_049_errordocument import error_documents
from mxftest.env import free_port
from mxftest.matrix import gen_room, import_room, load_key, q, xmatrix

FED = "/_matrix/federation/v1"
MODULES = ["mpm_event", "authz_core", "authn_core", "authz_host", "log_config", "dbd",
           "proxy", "proxy_http", "http2", "mime", "alias"]


class ErrBackend:
    """A homeserver whose /_matrix/client/err/<status> answers <status> with
    its own Matrix error body."""

    def __init__(self):
        self.port = free_port()

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                code = int(self.path.rstrip("/").rsplit("/", 1)[1]) if "/err/" in self.path \
                    else 200
                out = json.dumps({"errcode": f"M_HS_{code}", "error": "from the homeserver",
                                  "retry_after_ms": 1234}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def room(build_env, postgres, workdir):
    r = gen_room(build_env.cli, os.path.join(workdir, "902-room"), room_version=10,
                 events=40, servers=2, seed=9021)
    import_room(build_env.cli, postgres.conninfo(), r)
    return r


@pytest.fixture(scope="module")
def srv(httpd_factory, postgres, signing_key, workdir, room):
    be = ErrBackend()
    ed = error_documents(workdir, "070-docroot", (400, 403, 404, 429, 500, 502, 503))
    h = httpd_factory.new("httpd-070-902")
    p1, p2 = h.port, free_port()
    proxy = f"ProxyPass /_matrix/client http://127.0.0.1:{be.port}/_matrix/client"
    site = f"""
{ed}
{module_config(postgres, signing_key)}
Timeout 10
<Location /_matrix/federation/v1/state_ids>
  Require ip 192.0.2.1
</Location>
<VirtualHost 127.0.0.1:{p1}>
  Protocols h2c http/1.1
  {proxy}
</VirtualHost>
<VirtualHost 127.0.0.1:{p2}>
  Protocols http/1.1
  ProxyErrorOverride On
  {proxy}
</VirtualHost>
"""
    h.start(site, modules=MODULES, listen_extra=(p2,))
    h.ports = (p1, p2)
    yield h
    h.stop()
    be.stop()
    assert h.sanitizer_reports() == []


def auth(room, method, path, content=None):
    origin = sorted(room.summary["joined_servers"])[0]
    return xmatrix(origin, load_key(room.key_path(origin)), SERVER_NAME, method, path, content)


def curl_h2(port, *args):
    out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-m", "8",
                          "-w", "\\n%{http_code} %{http_version} %{num_connects}\\n", *args],
                         capture_output=True, timeout=20)
    return out.stdout.decode("utf-8", "replace")


# -------------------------------------------------------------- HTTP/2

def test_070_001_h2_require_denial_is_matrix_error(srv, room):
    path = f"{FED}/state_ids/{q(room.room_id)}?event_id={q(room.order[-1])}"
    out = curl_h2(srv.ports[0], "-H", f"Authorization: {auth(room, 'GET', path)}",
                  f"http://127.0.0.1:{srv.ports[0]}{path}")
    body, status = out.rsplit("\n", 2)[0], out.rsplit("\n", 2)[1]
    assert status.startswith("403 2"), out
    assert json.loads(body)["errcode"] == "M_FORBIDDEN", out


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE"])
def test_070_002_h2_unsent_body_then_more_streams(srv, room, method):
    """A stream announcing a body it does not send (content-length 100, one
    byte, no END_STREAM): answered at once, and the same connection carries
    the next stream."""
    from test_050_http2_tls import H2
    path = f"{FED}/event/{q(room.order[-1])}"
    cl = H2(srv.ports[0])
    sid = cl.c.get_next_available_stream_id()
    cl.c.send_headers(sid, [(":method", method), (":path", path), (":scheme", "http"),
                            (":authority", SERVER_NAME),
                            ("authorization", auth(room, "GET", path)),
                            ("content-length", "100")], end_stream=False)
    cl.c.send_data(sid, b"{", end_stream=False)
    cl.flush()
    cl.streams[sid] = {"headers": None, "data": bytearray(), "ended": False, "reset": None}
    t0 = time.monotonic()
    cl.s.settimeout(15)
    cl.pump(lambda: cl.streams[sid]["ended"] or cl.streams[sid]["reset"] is not None)
    took = time.monotonic() - t0
    assert cl.streams[sid]["headers"] is not None, cl.streams[sid]
    assert took < 3, (method, took, cl.streams[sid]["headers"])
    nxt = cl.request("GET", path, [("authorization", auth(room, "GET", path))])
    cl.wait([nxt])
    assert cl.streams[nxt]["headers"][":status"] == "200"
    cl.s.close()


# -------------------------------------------------------------- homeserver errors

@pytest.mark.parametrize("code", [400, 404, 429, 500, 503])
def test_070_010_homeserver_error_passes_untouched_errorok_off(srv, code):
    c = http.client.HTTPConnection("127.0.0.1", srv.ports[0], timeout=10)
    c.request("GET", f"/_matrix/client/err/{code}")
    r = c.getresponse()
    body = json.loads(r.read())
    assert r.status == code
    assert body["errcode"] == f"M_HS_{code}", body


# -------------------------------------------------------------- HTTP/1.1 keep-alive

def test_070_020_get_missing_events_posts_stay_keep_alive(srv, room):
    path = f"{FED}/get_missing_events/{q(room.room_id)}"
    content = {"earliest_events": [], "latest_events": [room.order[-1]], "limit": 2}
    c = http.client.HTTPConnection("127.0.0.1", srv.ports[0], timeout=10)
    socks = set()
    for _ in range(3):
        c.request("POST", path, body=json.dumps(content),
                  headers={"Authorization": auth(room, "POST", path, content),
                           "Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        assert r.status == 200
        assert (r.getheader("Connection") or "").lower() != "close"
        socks.add(id(c.sock))
    assert len(socks) == 1


def test_070_021_chunked_post_stays_keep_alive(srv, room):
    path = f"{FED}/get_missing_events/{q(room.room_id)}"
    content = {"earliest_events": [], "latest_events": [room.order[-1]], "limit": 2}
    body = json.dumps(content).encode()
    req = (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth(room, 'POST', path, content)}"
           f"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
           ).encode() + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", srv.ports[0]), timeout=10) as s:
        s.sendall(req + req)
        data = b""
        deadline = time.time() + 8
        while data.count(b"HTTP/1.1 200") < 2 and time.time() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.count(b"HTTP/1.1 200") == 2, data[:400]


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_070_022_head_with_unsent_body_not_held(srv, room, method):
    """README: the connection is closed "after any answer that leaves an
    announced body unread ... which httpd would otherwise hold until it had
    read the rest of the body or Timeout passed". claim() asks
    ap_request_has_body(), which is false for every HEAD request
    (!r->header_only), while ap_discard_request_body() still reads a HEAD's
    announced body: a HEAD with Content-Length is held until Timeout (10 s
    here); the same GET is answered at once."""
    path = f"{FED}/event/{q(room.order[-1])}"
    req = (f"{method} {path} HTTP/1.1\r\nHost: x\r\n"
           f"Authorization: {auth(room, method, path)}\r\n"
           "Content-Length: 100\r\n\r\n{").encode()
    with socket.create_connection(("127.0.0.1", srv.ports[1]), timeout=15) as s:
        t0 = time.monotonic()
        s.sendall(req)
        first = s.recv(64)
        took = time.monotonic() - t0
    assert first.startswith(b"HTTP/1.1 "), first
    assert took < 3, f"{method}: answer held {took:.1f} s"
