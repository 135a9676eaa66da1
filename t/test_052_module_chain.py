# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Other modules in the chain, as production hosts have them:
mod_deflate on the answers (the streamed ones decompress to the same JSON),
mod_headers, mod_status, `Require ip` in a <Location> (a Matrix 403),
and LimitRequestBody below a get_missing_events body (a Matrix 413)."""
import gzip
import json
import os
import re

import pytest

from conftest import SERVER_NAME, module_config
from mxftest.matrix import gen_room, import_room, q, room_request

FED = "/_matrix/federation/v1"
MODULES = ["mpm_event", "authz_core", "authn_core", "authz_host", "log_config", "dbd",
           "proxy", "proxy_http", "deflate", "filter", "headers", "status", "mime",
           "unique_id"]


@pytest.fixture(scope="module")
def room(build_env, postgres, workdir):
    r = gen_room(build_env.cli, os.path.join(workdir, "chain-room"), room_version=10,
                 events=3000, servers=6, users_per_server=80, seed=905)
    import_room(build_env.cli, postgres.conninfo(), r)
    return r


def base(postgres, signing_key, backend):
    return f"""
TypesConfig /etc/mime.types
{module_config(postgres, signing_key)}
ProxyPass /_matrix http://127.0.0.1:{backend.port}/_matrix nocanon
"""


def send(h, room, method, path, content=None, headers=None, signed=True):
    return room_request(h.port, room, method, path, content, headers,
                        destination=SERVER_NAME if signed else None, timeout=60)


def norm(body):
    body = re.sub(rb'"signatures":\{"' + re.escape(SERVER_NAME.encode()) + rb'":\{[^}]*\}\}',
                  b"", body)
    return re.sub(rb'"(origin_server_ts|valid_until_ts)":\d+', b"", body)


def cases(room):
    rid, eid = q(room.room_id), q(room.order[-1])
    return [("GET", f"{FED}/state/{rid}?event_id={eid}", None),
            ("GET", f"{FED}/state_ids/{rid}?event_id={eid}", None),
            ("GET", f"{FED}/event_auth/{rid}/{eid}", None),
            ("GET", f"{FED}/event/{eid}", None),
            ("GET", f"{FED}/backfill/{rid}?v={eid}&limit=50", None),
            ("POST", f"{FED}/get_missing_events/{rid}",
             {"earliest_events": [room.order[-40]], "latest_events": [room.order[-1]],
              "limit": 20, "min_depth": 0}),
            ("GET", "/_matrix/key/v2/server", None)]


def test_052_001_deflate_headers_status(httpd_factory, postgres, signing_key, backend, room):
    h = httpd_factory.new("httpd-deflate")
    h.start(base(postgres, signing_key, backend) + """
AddOutputFilterByType DEFLATE application/json
Header always set X-Always yes
Header set X-Onsuccess yes
ExtendedStatus On
<Location /server-status>
  SetHandler server-status
</Location>
""", modules=MODULES)
    try:
        biggest = 0
        for method, path, content in cases(room):
            signed = not path.startswith("/_matrix/key")
            st0, _, plain = send(h, room, method, path, content, signed=signed)
            st, hd, body = send(h, room, method, path, content,
                                headers={"Accept-Encoding": "gzip"}, signed=signed)
            assert st0 == st == 200, (path, st0, st)
            assert hd.get("content-encoding") == "gzip", (path, hd)
            assert hd.get("x-always") == "yes" and hd.get("x-onsuccess") == "yes"
            assert norm(gzip.decompress(body)) == norm(plain), path
            biggest = max(biggest, len(plain))
        assert biggest > 256 * 1024, biggest
        st, hd, body = send(h, room, "GET", f"{FED}/event/%24nope",
                            headers={"Accept-Encoding": "gzip"})
        assert st == 404 and hd.get("x-always") == "yes"
        st, _, body = send(h, room, "GET", "/server-status?auto", signed=False)
        assert st == 200 and b"ServerVersion" in body
    finally:
        h.stop()
    assert h.sanitizer_reports() == []


def test_052_002_require_ip_and_limit_request_body(httpd_factory, postgres, signing_key,
                                                   backend, room):
    h = httpd_factory.new("httpd-require")
    h.start(base(postgres, signing_key, backend) + """
LimitRequestBody 100
<Location /_matrix/federation/>
  Require ip 192.0.2.1
</Location>
<Location /_matrix/federation/v1/get_missing_events>
  Require all granted
</Location>
""", modules=MODULES)
    try:
        for method, path, content in cases(room):
            st, hd, body = send(h, room, method, path, content)
            if path.startswith("/_matrix/key"):
                assert st == 200
            elif method == "POST":
                assert len(json.dumps(content)) > 100
                assert st == 413 and json.loads(body)["errcode"] == "M_TOO_LARGE", body
            else:
                assert st == 403 and hd["content-type"] == "application/json", (path, body)
                assert json.loads(body)["errcode"] == "M_FORBIDDEN"
        st, _, body = send(h, room, "GET", f"{FED}/version", signed=False)
        assert st == 403 and json.loads(body)["errcode"] == "M_FORBIDDEN"
    finally:
        h.stop()
    assert h.sanitizer_reports() == []
