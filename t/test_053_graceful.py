# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""`httpd -k graceful` with a changed configuration (the signing
key rotated, the old one listed with MatrixFedOldVerifyKey): new
connections get the new key document and signatures, a streamed answer in
flight on the old generation finishes whole. And `httpd -t` names misplaced
directives."""
import base64
import json
import os
import socket
import subprocess
import time

import nacl.signing
import pytest
import signedjson.key

from conftest import SERVER_NAME, module_config, write_key
from mxftest.matrix import gen_room, import_room, load_key, q, xmatrix

FED = "/_matrix/federation/v1"
MODULES = ["mpm_event", "authz_core", "authn_core", "log_config", "dbd", "proxy", "proxy_http"]


def site(postgres, key, old=""):
    return f"""
{module_config(postgres, key)}
{old}
SendBufferSize 16384
"""


def read_chunked(sock, first):
    data = first
    while True:
        b = sock.recv(65536)
        if not b:
            break
        data += b
    head, body = data.split(b"\r\n\r\n", 1)
    out, complete = b"", False
    while body:
        line, rest = body.split(b"\r\n", 1)
        n = int(line, 16)
        if n == 0:
            complete = True
            break
        out += rest[:n]
        body = rest[n + 2:]
    return head, out, complete


def test_053_001_graceful_key_rotation(httpd_factory, postgres, build_env, workdir):
    room = gen_room(build_env.cli, os.path.join(workdir, "graceful-room"), room_version=10,
                    events=4000, servers=6, users_per_server=100, seed=906)
    import_room(build_env.cli, postgres.conninfo(), room)
    k1 = signedjson.key.generate_signing_key("g1")
    k2 = signedjson.key.generate_signing_key("g2")
    p1 = write_key(os.path.join(workdir, "g1.key"),
                   seed=signedjson.key.encode_signing_key_base64(k1), version="g1")
    p2 = write_key(os.path.join(workdir, "g2.key"),
                   seed=signedjson.key.encode_signing_key_base64(k2), version="g2")
    pk1 = signedjson.key.encode_verify_key_base64(signedjson.key.get_verify_key(k1))
    h = httpd_factory.new("httpd-graceful")
    h.start(site(postgres, p1), modules=MODULES)
    try:
        assert list(h.get("/_matrix/key/v2/server").json["verify_keys"]) == ["ed25519:g1"]
        origin = sorted(room.summary["joined_servers"])[0]
        okey = load_key(room.key_path(origin))
        path = f"{FED}/state/{q(room.room_id)}?event_id={q(room.order[-1])}"
        auth = lambda: xmatrix(origin, okey, SERVER_NAME, "GET", path)
        ref = h.get(path, headers={"Authorization": auth()})
        assert ref.status == 200 and len(ref.body) > 256 * 1024
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(60)
        s.connect(("127.0.0.1", h.port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth()}\r\n"
                  "Connection: close\r\n\r\n".encode())
        first = s.recv(4096)
        h.render(site(postgres, p2,
                      f"MatrixFedOldVerifyKey ed25519:g1 {pk1} {int(time.time() * 1000)}"),
                 modules=MODULES)
        r = subprocess.run([build_env.httpd, "-d", h.dir, "-f", h.conf, "-k", "graceful"],
                           env=build_env.sanitizer_env(h.dir), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
        assert r.returncode == 0, r.stdout
        time.sleep(1.5)
        head, body, complete = read_chunked(s, first)
        s.close()
        assert complete and body == ref.body.encode()
        doc = h.get("/_matrix/key/v2/server").json
        assert list(doc["verify_keys"]) == ["ed25519:g2"]
        assert list(doc["old_verify_keys"]) == ["ed25519:g1"]
        assert list(doc["signatures"][SERVER_NAME]) == ["ed25519:g2"]
        r = h.get(f"{FED}/event/{q(room.order[-1])}",
                  headers={"Authorization": xmatrix(origin, okey, SERVER_NAME, "GET",
                                                    f"{FED}/event/{q(room.order[-1])}")})
        assert r.status == 200
    finally:
        h.stop()
    assert h.sanitizer_reports() == []


@pytest.mark.parametrize("where", ["<Location /x>", "<Directory /tmp>", "<Files x>"])
def test_053_002_configtest_names_misplaced_directives(httpd_factory, postgres,
                                                       signing_key, where):
    h = httpd_factory.new("httpd-t")
    tag = where[1:].split()[0]
    for d in ("MatrixFederation On", f"MatrixFedServerName {SERVER_NAME}",
              f"MatrixFedSigningKey {signing_key}", "MatrixFedNotary Off",
              "MatrixFedMaxBodySize 2048", "MatrixFedQueryConcurrency 2"):
        status, out = h.config_test(site(postgres, signing_key) + f"{where}\n{d}\n</{tag}>",
                                    modules=MODULES)
        assert status != 0, (d, where, out)
        assert f"{d.split()[0]} not allowed in {where.split()[0]}> context" in out, out
