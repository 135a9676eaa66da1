# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""SyTest tests/50federation/01keys.pl and 02server-names.pl, Complement
tests/federation_keys_test.go TestInboundFederationKeys, against the module:
its own key document, the notary endpoints (GET and POST), a notary that
must return an expired key when it finds no other, must not forget a key
because the origin later answers with another one, and X-Matrix origins with
a non-numeric port. The origin's key server is a fake HTTPS server on
loopback whose answer each test sets (as SyTest's await_http_request does)."""
import base64
import http.server
import json
import os
import time
import urllib.parse

import canonicaljson
import nacl.signing
import pytest
import signedjson.key
import signedjson.sign

from conftest import SERVER_NAME, site_config, spec_public_key
from mxftest import tlsserver
from mxftest.env import free_port
from mxftest.httpd import BASE_MODULES
from mxftest.matrix import xmatrix
from test_030_keys_auth import make_cert

FED = "/_matrix/federation/v1"
ORIGIN = "sytest-origin.example"        # SyTest's TEST_SERVER_INFO / INBOUND_SERVER


def now_ms():
    return int(time.time() * 1000)


def vk_b64(key):
    return signedjson.key.encode_verify_key_base64(signedjson.key.get_verify_key(key))


def build_key_response(server, key, valid_until_ts):
    """01keys.pl build_key_response."""
    resp = {"server_name": server, "valid_until_ts": valid_until_ts,
            "verify_keys": {f"ed25519:{key.version}": {"key": vk_b64(key)}},
            "old_verify_keys": {}}
    return signedjson.sign.sign_json(resp, server, key)


class OriginKeyServer:
    """/_matrix/key/v2/server of ORIGIN, answering what .answer says:
    (status, body)."""

    def __init__(self, cert):
        self.answer = (404, {})
        self.hits = 0
        self.port = free_port()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                path = urllib.parse.urlsplit(self.path).path
                if path.startswith("/_matrix/key/v2/server"):
                    outer.hits += 1
                    status, body = outer.answer
                else:
                    status, body = 404, {}
                tlsserver.send_json(self, status, body)

            def log_message(self, *a):
                pass

        self.server = tlsserver.start(H, cert, self.port)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def origin(workdir):
    d = os.path.join(workdir, "tls092")
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)
    cert = make_cert(d, "keyserver092")
    o = OriginKeyServer(cert)
    o.cert = cert
    yield o
    o.stop()


OLD = signedjson.key.generate_signing_key("old1")


@pytest.fixture(scope="module")
def kh(httpd_factory, postgres, signing_key, backend, origin):
    h = httpd_factory.new("httpd-092")
    extra = f"""
MatrixFedKeyServerURL {ORIGIN} https://127.0.0.1:{origin.port}
MatrixFedKeyServerURL {ORIGIN}2 https://127.0.0.1:{origin.port}
MatrixFedKeyServerURL {ORIGIN}3 https://127.0.0.1:{origin.port}
MatrixFedKeyServerURL {ORIGIN}4 https://127.0.0.1:{origin.port}
MatrixFedKeyServerURL {ORIGIN}5 https://127.0.0.1:{origin.port}
MatrixFedKeyServerURL {ORIGIN}6 https://127.0.0.1:{origin.port}
MatrixFedKeyFetchCAFile {origin.cert[0]}
MatrixFedKeyFetchTimeout 2
MatrixFedKeyFetchRetryInterval 1
MatrixFedOldVerifyKey ed25519:{OLD.version} {vk_b64(OLD)} 1500000000000
"""
    h.start(site_config(postgres, signing_key, backend, extra=extra),
            modules=BASE_MODULES + ["socache_shmcb"])
    yield h
    h.stop()


def our_vk():
    vk = spec_public_key()
    vk.alg, vk.version = "ed25519", "1"
    return vk


# ------------------------------------------------------------------ own keys

@pytest.mark.parametrize("path", ["/_matrix/key/v2/server", "/_matrix/key/v2/server/ed25519:1"])
def test_092_001_unsigned_requests_for_keys(kh, path):
    """SyTest 'Federation key API allows unsigned requests for keys' and
    Complement TestInboundFederationKeys."""
    r = kh.get(path)
    assert r.status == 200, r
    body = r.json
    for k in ("server_name", "valid_until_ts", "signatures", "verify_keys",
              "old_verify_keys"):
        assert k in body
    assert body["server_name"] == SERVER_NAME
    assert isinstance(body["valid_until_ts"], int) and body["valid_until_ts"] > now_ms()
    assert len(body["verify_keys"]) == 1
    [(kid, key)] = body["verify_keys"].items()
    assert kid.startswith("ed25519:")
    raw = base64.b64decode(key["key"] + "=" * (-len(key["key"]) % 4))
    assert "=" not in key["key"] and len(raw) == 32
    sigs = body["signatures"]
    assert list(sigs) == [SERVER_NAME], "signatures by other servers"   # Complement
    sig = sigs[SERVER_NAME][kid]
    assert "=" not in sig and len(base64.b64decode(sig + "=" * (-len(sig) % 4))) == 64
    unsigned = {k: v for k, v in body.items() if k not in ("signatures", "unsigned")}
    nacl.signing.VerifyKey(raw).verify(canonicaljson.encode_canonical_json(unsigned),
                                       base64.b64decode(sig + "=" * (-len(sig) % 4)))
    assert isinstance(body["old_verify_keys"], dict)
    # Complement: old keys have expired_ts and key, are not also current keys,
    # and every signature is by a current or old key.
    for okid, old in body["old_verify_keys"].items():
        assert okid.startswith("ed25519:") and okid not in body["verify_keys"]
        assert isinstance(old["expired_ts"], int) and isinstance(old["key"], str)
    for skid in sigs[SERVER_NAME]:
        assert skid in body["verify_keys"] or skid in body["old_verify_keys"]


# ------------------------------------------------------------------ notary

def key_query_via_get(kh, server, key_id, signed_by=None, minimum=None):
    path = f"/_matrix/key/v2/query/{server}/{key_id}"
    if minimum is not None:
        path += f"?minimum_valid_until_ts={minimum}"
    hdr = {}
    if signed_by:
        hdr["Authorization"] = xmatrix(signed_by[0], signed_by[1], SERVER_NAME, "GET", path)
    return kh.get(path, headers=hdr)


def key_query_via_post(kh, server, key_id, min_valid_until_ts=0, signed_by=None):
    path = "/_matrix/key/v2/query"
    content = {"server_keys": {server: {key_id: {"minimum_valid_until_ts": min_valid_until_ts}}}}
    hdr = {}
    if signed_by:
        hdr["Authorization"] = xmatrix(signed_by[0], signed_by[1], SERVER_NAME, "POST", path,
                                       content)
    return kh.post(path, body=json.dumps(content), headers=hdr)


SYTEST_KEY = signedjson.key.generate_signing_key("sytest1")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_092_010_notary_via_get_and_post(kh, origin, method):
    """SyTest 'Federation key API can act as a notary server via a $method
    request': the notary returns the origin's key, with exactly one signature
    of its own, which verifies. SyTest's client signs its requests (X-Matrix,
    as the origin itself), so they are signed here too. As in SyTest, both
    requests ask for the origin's one key (minimum_valid_until_ts 0)."""
    key = SYTEST_KEY
    origin.answer = (200, build_key_response(ORIGIN, key, now_ms() + 3600_000))
    kid = f"ed25519:{key.version}"
    if method == "GET":
        r = key_query_via_get(kh, ORIGIN, kid, signed_by=(ORIGIN, key))
    else:
        r = key_query_via_post(kh, ORIGIN, kid, 0, signed_by=(ORIGIN, key))
    assert r.status == 200, r
    assert isinstance(r.json["server_keys"], list)
    found = [k for k in r.json["server_keys"]
             if k["server_name"] == ORIGIN and kid in k["verify_keys"]]
    assert found, f"no response about {kid} from {ORIGIN}: {r.json}"
    k = found[0]
    ours = k["signatures"][SERVER_NAME]
    assert len(ours) == 1
    signedjson.sign.verify_signed_json(k, SERVER_NAME, our_vk())
    signedjson.sign.verify_signed_json(k, ORIGIN, signedjson.key.get_verify_key(key))


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_092_013_notary_asked_for_a_key_id_it_does_not_have(kh, origin, method):
    """After the origin rotated to a new key (new key ID), a server asking
    the notary for that key ID (minimum_valid_until_ts now, as the spec asks
    requesters to set it) must get a document holding it: the kept document
    lacks the key asked for, so it has to be fetched again (the reference
    homeserver's RemoteKey.query_keys counts a (server, key ID) it has not
    cached as a cache miss and fetches it). Here the kept document is still
    valid and fresh; the notary asks the origin again."""
    name = ORIGIN + ("4" if method == "GET" else "5")
    old = signedjson.key.generate_signing_key("before")
    new = signedjson.key.generate_signing_key("after")
    origin.answer = (200, build_key_response(name, old, now_ms() + 86400_000))
    time.sleep(1.1)
    r = key_query_via_post(kh, name, f"ed25519:{old.version}")
    assert "ed25519:before" in r.json["server_keys"][0]["verify_keys"], r.json
    origin.answer = (200, build_key_response(name, new, now_ms() + 86400_000))
    time.sleep(1.1)                      # past MatrixFedKeyFetchRetryInterval
    if method == "GET":
        r = key_query_via_get(kh, name, "ed25519:after", minimum=now_ms())
    else:
        r = key_query_via_post(kh, name, "ed25519:after", now_ms())
    assert r.status == 200, r
    assert any(k["server_name"] == name and "ed25519:after" in k["verify_keys"]
               for k in r.json["server_keys"]), r.json


def test_092_011_notary_returns_expired_key_when_nothing_else(kh, origin):
    """SyTest 'Key notary server should return an expired key if it can't
    find any others'."""
    key = signedjson.key.generate_signing_key("key_0")
    kid = "ed25519:key_0"
    expiry = now_ms() - 86400_000
    resp = build_key_response(ORIGIN + "2", key, expiry)
    origin.answer = (200, resp)
    time.sleep(1.1)
    # 1: populate
    r = key_query_via_post(kh, ORIGIN + "2", kid)
    assert r.status == 200, r
    # 2: later minimum_valid_until_ts forces a refetch; same answer
    time.sleep(1.1)
    hits = origin.hits
    r = key_query_via_post(kh, ORIGIN + "2", kid, expiry + 1000)
    assert r.status == 200, r
    assert r.json["server_keys"], f"request 2: no key returned: {r.json}"
    res = r.json["server_keys"][0]
    assert res["server_name"] == ORIGIN + "2"
    assert kid in res["verify_keys"]
    assert res["valid_until_ts"] == expiry
    assert origin.hits == hits + 1, "the notary did not ask the origin again"
    # 3: the origin answers 400
    origin.answer = (400, {})
    time.sleep(1.1)
    r = key_query_via_post(kh, ORIGIN + "2", kid, expiry + 1000)
    assert r.status == 200, r
    assert r.json["server_keys"], f"request 3: no key returned: {r.json}"
    res = r.json["server_keys"][0]
    assert res["server_name"] == ORIGIN + "2"
    assert kid in res["verify_keys"]
    assert res["valid_until_ts"] == expiry


def test_092_012_notary_must_not_overwrite_valid_key_with_spurious_result(kh, origin):
    """SyTest 'Key notary server must not overwrite a valid key with a
    spurious result from the origin server' (synapse#5305): asked for
    key_1 with an old minimum_valid_until_ts after the origin answered with
    only key_2, the notary still returns key_1."""
    name = ORIGIN + "3"
    key1 = signedjson.key.generate_signing_key("key_1")
    key2 = signedjson.key.generate_signing_key("key_2")
    expiry1 = now_ms() - 86400_000
    origin.answer = (200, build_key_response(name, key1, expiry1))
    time.sleep(1.1)
    r = key_query_via_post(kh, name, "ed25519:key_1")
    assert r.status == 200, r
    assert r.json["server_keys"], r.json
    assert "ed25519:key_1" in r.json["server_keys"][0]["verify_keys"]
    origin.answer = (200, build_key_response(name, key2, expiry1 + 1000))
    time.sleep(1.1)
    r = key_query_via_post(kh, name, "ed25519:key_1", now_ms())
    assert r.status == 200, r
    r = key_query_via_post(kh, name, "ed25519:key_1", expiry1)
    assert r.status == 200, r
    assert r.json["server_keys"], r.json
    assert any(k["server_name"] == name and "ed25519:key_1" in k["verify_keys"]
               for k in r.json["server_keys"]), r.json


def test_092_014_notary_object_of_many_keys(kh, origin, postgres):
    """An origin listing 3,000 keys in one object (within the 256 KB a
    fetch takes): the notary fetches, keeps and serves it at once, and keeps
    it once, whatever the number of its keys (each key ID points at it)."""
    import nacl.signing as ns
    name = ORIGIN + "6"
    key = signedjson.key.generate_signing_key("main")
    vk = {f"ed25519:{i}": {"key": base64.b64encode(ns.SigningKey.generate().verify_key.encode())
                                  .decode().rstrip("=")} for i in range(3000)}
    vk["ed25519:main"] = {"key": vk_b64(key)}
    doc = signedjson.sign.sign_json({"server_name": name, "valid_until_ts": now_ms() + 86400_000,
                                     "verify_keys": vk, "old_verify_keys": {}}, name, key)
    origin.answer = (200, doc)
    t0 = time.time()
    r = key_query_via_post(kh, name, "ed25519:main", now_ms())
    assert r.status == 200 and time.time() - t0 < 5, (r, time.time() - t0)
    got = [k for k in r.json["server_keys"] if k["server_name"] == name]
    assert len(got) == 1 and len(got[0]["verify_keys"]) == 3001
    assert postgres.psql(None, "SELECT count(*) FROM mxf_server_key_docs"
                               f" WHERE server_name = '{name}'") == "3001"
    assert postgres.psql(None, "SELECT count(*), sum(length(response)) < 300000"
                               " FROM mxf_server_key_bodies"
                               f" WHERE server_name = '{name}'") == "1|t"


# ------------------------------------------------------------------ 02server-names

@pytest.mark.parametrize("path", [f"{FED}/event/%24abc",
                                  f"{FED}/state_ids/%21r%3Ahs1.example?event_id=%24abc"])
def test_092_020_non_numeric_ports_in_server_names_rejected(kh, path):
    """SyTest 'Non-numeric ports in server names are rejected': an X-Matrix
    origin "localhost:http" is refused. SyTest expects 400 (the reference
    homeserver's answer); the module answers every authentication failure
    with 401 M_UNAUTHORIZED (README), so that is what is asserted."""
    key = signedjson.key.generate_signing_key("1")
    r = kh.get(path, headers={"Authorization": xmatrix("localhost:http", key, SERVER_NAME,
                                                       "GET", path)})
    assert r.status == 401 and r.json["errcode"] == "M_UNAUTHORIZED", r
    assert "server name" in r.json["error"], r


@pytest.mark.parametrize("path,method", [("/_matrix/key/v2/server", "GET"),
                                         (f"/_matrix/key/v2/query/{SERVER_NAME}", "GET"),
                                         ("/_matrix/key/v2/query", "POST"),
                                         (f"{FED}/version", "GET")])
def test_092_021_unauthenticated_endpoints_ignore_a_foreign_signature(kh, path, method):
    """SyTest's outbound client signs every request, the key and notary
    requests included; the reference homeserver does not authenticate
    these endpoints, so a header it cannot check (unknown server, or a
    malformed origin) does not fail them."""
    key = signedjson.key.generate_signing_key("zz")
    body = {"server_keys": {SERVER_NAME: {}}} if method == "POST" else None
    for origin in ("unknown-origin.invalid", "localhost:http"):
        hdr = {"Authorization": xmatrix(origin, key, SERVER_NAME, method, path, body)}
        r = kh.request(method, path, body=json.dumps(body) if body else None, headers=hdr)
        assert r.status == 200, (origin, r)
