# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""On a host with MatrixFederation On, every path and method
the module does not own reaches the homeserver behind mod_proxy unchanged
(path as sent, method, body), whichever way the operator wrote the proxy
(ProxyPass, ProxyPassMatch, ProxyPass in a <Location>, mod_rewrite [P]);
the module's own endpoints never reach it. MatrixFedNotary Off gives the
notary endpoints to the homeserver. README "What it is"."""
import json
import os

import pytest

from conftest import SERVER_NAME, module_config
from mxftest.matrix import gen_room, import_room, q, room_request

FED = "/_matrix/federation/v1"
MODULES = ["mpm_event", "authz_core", "authn_core", "authz_host", "log_config", "dbd",
           "proxy", "proxy_http", "rewrite"]


@pytest.fixture(scope="module")
def room(build_env, postgres, workdir):
    r = gen_room(build_env.cli, os.path.join(workdir, "fall-room"), room_version=10,
                 events=60, servers=2, seed=904)
    import_room(build_env.cli, postgres.conninfo(), r)
    return r


def variants(b):
    return {
        "proxypass": f"ProxyPass /_matrix {b}/_matrix nocanon\nProxyPass / {b}/",
        "proxypassmatch": f"ProxyPassMatch ^/_matrix/(.*)$ {b}/_matrix/$1 nocanon\n"
                          f"ProxyPass / {b}/",
        "location": f"<Location /_matrix>\n  ProxyPass {b}/_matrix nocanon\n</Location>\n"
                    f"ProxyPass / {b}/",
        "rewrite": f"RewriteEngine On\nRewriteRule ^/(.*)$ {b}/$1 [P,NE]",
        "notary-off": f"MatrixFedNotary Off\nProxyPass /_matrix {b}/_matrix nocanon\n"
                      f"ProxyPass / {b}/",
    }


@pytest.fixture(scope="module", params=list(variants("")))
def srv(request, httpd_factory, postgres, signing_key, backend):
    h = httpd_factory.new(f"httpd-fall-{request.param}")
    site = f"""
{module_config(postgres, signing_key)}
{variants(f"http://127.0.0.1:{backend.port}")[request.param]}
"""
    h.start(site, modules=MODULES)
    h.variant = request.param
    yield h
    h.stop()
    assert h.sanitizer_reports() == []


def owned(room):
    ev, rid = q(room.order[-1]), q(room.room_id)
    return [("GET", f"{FED}/version", None), ("GET", "/_matrix/key/v2/server", None),
            ("GET", "/_matrix/key/v2/server/ed25519:1", None),
            ("GET", "/_matrix/key/v2/query/hs1.example", None),
            ("POST", "/_matrix/key/v2/query", {"server_keys": {"hs1.example": {}}}),
            ("POST", f"{FED}/get_missing_events/{rid}",
             {"earliest_events": [], "latest_events": [room.order[-1]]}),
            ("GET", f"{FED}/backfill/{rid}?v={ev}&limit=3", None),
            ("GET", f"{FED}/event/{ev}", None), ("GET", f"{FED}/event/{ev}/", None),
            ("GET", f"{FED}/state/{rid}?event_id={ev}", None),
            ("GET", f"{FED}/state_ids/{rid}?event_id={ev}", None),
            ("GET", f"{FED}/event_auth/{rid}/{ev}", None),
            ("GET", f"{FED}/timestamp_to_event/{rid}?ts=0&dir=f", None),
            ("PUT", f"{FED}/event/{ev}", {"x": 1}), ("OPTIONS", f"{FED}/event/{ev}", None),
            ("DELETE", "/_matrix/key/v2/server", None)]


def not_owned():
    rid, ev = q("!r:hs1.example"), q("$abc/def")
    return [("PUT", f"{FED}/send/txn1", {"pdus": [], "edus": []}),
            ("GET", f"{FED}/query/profile?user_id=%40a%3Ahs1.example&field=displayname", None),
            ("GET", f"{FED}/make_join/{rid}/%40u%3Ab.example?ver=10", None),
            ("PUT", f"/_matrix/federation/v2/send_join/{rid}/{ev}", {"a": 1}),
            ("PUT", f"/_matrix/federation/v2/invite/{rid}/{ev}", {"event": {}}),
            ("GET", f"{FED}/publicRooms?limit=5", None), ("POST", f"{FED}/publicRooms", {"l": 5}),
            ("GET", f"{FED}/user/devices/%40u%3Ahs1.example", None),
            ("GET", "/_matrix/client/versions", None),
            ("GET", "/_matrix/media/v3/download/hs1.example/abc", None),
            ("GET", f"{FED}/versions", None), ("GET", f"{FED}/eventx/{ev}", None),
            ("GET", f"/_matrix/federation/v2/event/{ev}", None),
            ("POST", f"{FED}/get_missing_eventsx/{rid}", {"a": 1}),
            ("GET", "/_matrix/key/v3/server", None),
            ("OPTIONS", "/_matrix/client/v3/login", None),
            ("GET", "/.well-known/matrix/server", None)]


def send(h, room, method, path, content):
    status, _, body = room_request(h.port, room, method, path, content,
                                   destination=SERVER_NAME)
    return status, body


def test_051_001_owned_never_reach_the_homeserver(srv, room):
    for method, path, content in owned(room):
        st, body = send(srv, room, method, path, content)
        proxied = body.startswith(b'{"backend"')
        if srv.variant == "notary-off" and path.startswith("/_matrix/key/v2/query"):
            assert proxied, (method, path, st, body[:200])
        else:
            assert not proxied, (method, path, st, body[:200])


def test_051_002_everything_else_reaches_it_unchanged(srv, room):
    for method, path, content in not_owned():
        if srv.variant == "rewrite" and "%" in path:
            continue        # mod_rewrite decodes the path it substitutes: not the module's
        st, body = send(srv, room, method, path, content)
        assert body.startswith(b'{"backend"'), (method, path, st, body[:200])
        got = json.loads(body)
        assert (got["method"], got["path"]) == (method, path)
        assert got["body"] == (json.dumps(content) if content is not None else "")
