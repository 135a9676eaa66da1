# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The module in a multi-virtual-host httpd, as operators deploy
it. Name-based hosts on one port and hosts on other ports, each with its own
MatrixFedServerName, signing key and (mod_dbd allows it) database; a host
with MatrixFederation Off; a host that inherits everything from the main
server. README "Directives": all directives are valid in the server config
and in virtual hosts except the server-config-only ones."""
import json
import os
import subprocess

import pytest
import signedjson.key

from conftest import module_config, write_key
from mxftest.env import free_port
from mxftest.matrix import gen_room, import_room, load_key, q, room_request

FED = "/_matrix/federation/v1"
MODULES = ["mpm_event", "authz_core", "authn_core", "authz_host", "log_config", "dbd",
           "proxy", "proxy_http"]
OLD_MAIN = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"


def new_key(path, version):
    key = signedjson.key.generate_signing_key(version)
    seed = signedjson.key.encode_signing_key_base64(key)
    return write_key(path, seed=seed, version=version)


@pytest.fixture(scope="module")
def setup(build_env, postgres, workdir, backend, httpd_factory):
    d = os.path.join(workdir, "vhosts")
    os.makedirs(d, exist_ok=True)
    room = gen_room(build_env.cli, os.path.join(d, "room"), room_version=10, events=120,
                    servers=3, seed=901)
    other = gen_room(build_env.cli, os.path.join(d, "room-other"), room_version=10,
                     events=60, servers=2, seed=902)
    import_room(build_env.cli, postgres.conninfo(), room)
    import_room(build_env.cli, postgres.conninfo(), other)
    db2 = "matrix_fed_vh"
    postgres.psql("postgres", f"DROP DATABASE IF EXISTS {db2}")
    postgres.psql("postgres", f"CREATE DATABASE {db2}")
    subprocess.run([build_env.cli, "db", "init", "--db", postgres.conninfo(db2)], check=True,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                   env=build_env.sanitizer_env(workdir))
    import_room(build_env.cli, postgres.conninfo(db2), room)      # 'other' only in the first
    keys = {n: new_key(os.path.join(d, f"{n}.key"), n) for n in ("main", "a", "b", "d")}
    h = httpd_factory.new("httpd-vhosts")
    p1 = h.port
    p2, p3, p4 = free_port(), free_port(), free_port()
    proxy = f"ProxyPass /_matrix http://127.0.0.1:{backend.port}/_matrix nocanon"
    site = f"""
{module_config(postgres, keys['main'], "main.example")}
MatrixFedOldVerifyKey ed25519:oldmain {OLD_MAIN} 1532645052628
<VirtualHost 127.0.0.1:{p1}>
  ServerName a.example
  MatrixFedServerName a.example
  MatrixFedSigningKey {keys['a']}
  {proxy}
</VirtualHost>
<VirtualHost 127.0.0.1:{p1}>
  ServerName b.example
  DBDParams "{postgres.conninfo(db2)}"
  MatrixFedServerName b.example
  MatrixFedSigningKey {keys['b']}
  {proxy}
</VirtualHost>
<VirtualHost 127.0.0.1:{p2}>
  ServerName c.example
  MatrixFederation Off
  {proxy}
</VirtualHost>
<VirtualHost 127.0.0.1:{p3}>
  ServerName d.example
  MatrixFedServerName d.example:{p3}
  MatrixFedSigningKey {keys['d']}
</VirtualHost>
<VirtualHost 127.0.0.1:{p4}>
  ServerName e.example
</VirtualHost>
"""
    h.start(site, modules=MODULES, listen_extra=(p2, p3, p4))
    yield {"h": h, "room": room, "other": other, "ports": (p1, p2, p3, p4), "keys": keys}
    h.stop()
    assert h.sanitizer_reports() == []


def req(port, host, method, path, room=None, dest=None, content=None):
    status, _, body = room_request(port, room, method, path, content, {"Host": host}, dest)
    return status, body


def pubkey(path):
    return signedjson.key.encode_verify_key_base64(
        signedjson.key.get_verify_key(load_key(path)))


def test_048_001_each_host_serves_its_own_key(setup):
    p1, p2, p3, p4 = setup["ports"]
    keys = setup["keys"]
    for host, port, name, key in [("a.example", p1, "a.example", "a"),
                                  ("b.example", p1, "b.example", "b"),
                                  ("unknown.example", p1, "a.example", "a"),  # first is default
                                  ("d.example", p3, f"d.example:{p3}", "d"),
                                  ("e.example", p4, "main.example", "main")]:
        st, b = req(port, host, "GET", "/_matrix/key/v2/server")
        assert st == 200, (host, b)
        doc = json.loads(b)
        assert doc["server_name"] == name
        assert doc["verify_keys"] == {f"ed25519:{key}": {"key": pubkey(keys[key])}}
    st, b = req(p2, "c.example", "GET", "/_matrix/key/v2/server")
    assert json.loads(b)["backend"] == "homeserver"


def test_048_002_destination_checked_per_host(setup):
    p1, p2, p3, p4 = setup["ports"]
    room = setup["room"]
    path = f"{FED}/event/{q(room.order[-1])}"
    for host, port, good, bad in [("a.example", p1, "a.example", "b.example"),
                                  ("b.example", p1, "b.example", "a.example"),
                                  ("d.example", p3, f"d.example:{p3}", "d.example"),
                                  ("e.example", p4, "main.example", "e.example")]:
        st, b = req(port, host, "GET", path, room, good)
        assert st == 200, (host, b)
        assert json.loads(b)["origin"] == good
        st, b = req(port, host, "GET", path, room, bad)
        assert st == 401 and json.loads(b)["errcode"] == "M_UNAUTHORIZED", (host, b)


def test_048_003_database_per_host(setup):
    p1 = setup["ports"][0]
    other = setup["other"]
    path = f"{FED}/event/{q(other.order[-1])}"
    st, b = req(p1, "a.example", "GET", path, other, "a.example")
    assert st == 200, b
    st, b = req(p1, "b.example", "GET", path, other, "b.example")
    assert st == 404 and json.loads(b)["errcode"] == "M_NOT_FOUND", b


def test_048_004_off_host_falls_through(setup):
    p2 = setup["ports"][1]
    room = setup["room"]
    for m, path in [("GET", f"{FED}/version"), ("GET", f"{FED}/event/{q(room.order[-1])}"),
                    ("POST", f"{FED}/get_missing_events/{q(room.room_id)}")]:
        st, b = req(p2, "c.example", m, path, room, "c.example",
                    {"earliest_events": [], "latest_events": []} if m == "POST" else None)
        got = json.loads(b)
        assert got["backend"] == "homeserver" and got["path"] == path, b


def test_048_005_global_only_directives_refused_in_a_vhost(httpd_factory, postgres, setup):
    h = httpd_factory.new("httpd-ct")
    for d in ("MatrixFedQueryConcurrency 2", "MatrixFedQueryWait 1s", "MatrixFedQueryTimeout 5s",
              "MatrixFedStreamTimeout 5s", "MatrixFedKeyCache none"):
        site = f"""DBDriver pgsql
DBDParams "{postgres.conninfo()}"
MatrixFederation On
MatrixFedServerName main.example
MatrixFedSigningKey {setup['keys']['main']}
<VirtualHost 127.0.0.1:{h.port}>
  {d}
</VirtualHost>"""
        status, out = h.config_test(site, modules=MODULES)
        assert status != 0 and "cannot occur within <VirtualHost> section" in out, (d, out)


def test_048_006_main_servers_old_keys_not_published_for_other_server_names(setup):
    """MatrixFedOldVerifyKey in the main server names a retired key of
    main.example. A virtual host with its own MatrixFedServerName and
    MatrixFedSigningKey is another Matrix server: publishing main.example's
    retired key in its old_verify_keys tells every other server that
    a.example once signed with it (spec, GET /_matrix/key/v2/server:
    old_verify_keys are "the public keys that the server used to use").
    The key file and the key already travel together in the merge
    (mxf_config_merge_srv); the old keys do not."""
    p1, p3 = setup["ports"][0], setup["ports"][2]
    for host, port in [("a.example", p1), ("b.example", p1), ("d.example", p3)]:
        st, b = req(port, host, "GET", "/_matrix/key/v2/server")
        doc = json.loads(b)
        assert "ed25519:oldmain" not in doc["old_verify_keys"], (host, doc)
    # The host that is main.example keeps it.
    st, b = req(setup["ports"][3], "e.example", "GET", "/_matrix/key/v2/server")
    assert "ed25519:oldmain" in json.loads(b)["old_verify_keys"]
