# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Server keys and X-Matrix request authentication through a real httpd:
our key endpoint (checked with python3-signedjson), requests signed the way
homeservers sign them (python3-signedjson), every authentication failure as
a 401 JSON answer, and other servers' keys fetched over HTTPS (TLS
verification on, against a CA file made here) from fake homeservers and a
fake notary on loopback: cached, stored in the key table, refetched after
expiry, with slow and dead key servers bounded in time."""
import http.server
import json
import os
import subprocess
import threading
import time
import urllib.parse

import pytest
import signedjson.key
import signedjson.sign

from conftest import SERVER_NAME, site_config, spec_public_key, write_key
from mxftest import tlsserver
from mxftest.env import free_port
from mxftest.httpd import BASE_MODULES

FED = "/_matrix/federation/v1"
MODULES = BASE_MODULES + ["socache_shmcb"]
# Fetch failures are expected in these tests (dead and slow key servers).
ALLOWED_LOG = [r"MXF25014", r"MXF25020", r"AH10159"]


def ev(tag):
    """A well-formed (room version 4+) event ID path segment no room has."""
    return "%24" + (tag + "A" * 43)[:43]


def now_ms():
    return int(time.time() * 1000)


def vkey_b64(key):
    return signedjson.key.encode_verify_key_base64(signedjson.key.get_verify_key(key))


def key_id(key):
    return f"{key.alg}:{key.version}"


def sign_request(origin, key, method, uri, content=None, destination=SERVER_NAME):
    req = {"method": method, "uri": uri, "origin": origin, "destination": destination}
    if content is not None:
        req["content"] = content
    signed = signedjson.sign.sign_json(req, origin, key)
    return signed["signatures"][origin][key_id(key)]


def xmatrix(origin, key, method, uri, content=None, destination=SERVER_NAME):
    sig = sign_request(origin, key, method, uri, content, destination)
    return (f'X-Matrix origin="{origin}",destination="{destination}",'
            f'key="{key_id(key)}",sig="{sig}"')


def assert_error(resp, status, errcode, text=None):
    assert resp.status == status, resp
    assert resp.header("Content-Type") == "application/json", resp.headers
    body = resp.json
    assert body["errcode"] == errcode, body
    if text:
        assert text.lower() in body["error"].lower(), body


def insert_key(pg, server, key, valid_until, expired_ts=None):
    vk = vkey_b64(key)
    exp = "NULL" if expired_ts is None else str(expired_ts)
    pg.psql(pg.DBNAME,
            "INSERT INTO mxf_server_keys (server_name, key_id, public_key, valid_until_ts,"
            " expired_ts, source, fetched_ts) VALUES"
            f" ('{server}', '{key_id(key)}',"
            f" decode('{vk}' || repeat('=', (4 - length('{vk}') % 4) % 4), 'base64'),"
            f" {valid_until}, {exp}, 'test', (extract(epoch FROM now()) * 1000)::bigint)"
            " ON CONFLICT (server_name, key_id) DO UPDATE SET public_key = EXCLUDED.public_key,"
            " valid_until_ts = EXCLUDED.valid_until_ts, expired_ts = EXCLUDED.expired_ts,"
            " fetched_ts = EXCLUDED.fetched_ts")


# ------------------------------------------------------------------ TLS + fake servers

def make_cert(directory, name):
    """A self-signed certificate for 127.0.0.1 (its own CA)."""
    cert, key = os.path.join(directory, f"{name}.crt"), os.path.join(directory, f"{name}.key")
    if not os.path.exists(cert):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", f"/CN={name}",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.chmod(cert, 0o644)
    return cert, key


class FakeKeyServer:
    """A homeserver's key endpoint over HTTPS, and optionally a notary."""

    def __init__(self, name, cert, validity_ms=3600_000, delay=0.0):
        self.name = name
        self.key = signedjson.key.generate_signing_key("k" + str(abs(hash(name)) % 1000))
        self.old_key = signedjson.key.generate_signing_key("old")
        self.validity_ms = validity_ms
        self.delay = delay
        self.hits = 0
        self.queries = 0
        self.notarised = {}          # server name -> FakeKeyServer
        self.sign_wrong = False      # notary: sign with a key nobody pinned
        self.bad_first = set()       # notary: these servers' answers start with a forgery
        self.port = free_port()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                path = urllib.parse.urlsplit(self.path).path
                if path == "/_matrix/key/v2/server":
                    outer.hits += 1
                    if outer.delay:
                        time.sleep(outer.delay)
                    body = outer.response()
                elif path.startswith("/_matrix/key/v2/query/"):
                    outer.queries += 1
                    name = urllib.parse.unquote(path.rsplit("/", 1)[1])
                    body = {"server_keys": []}
                    if name in outer.notarised:
                        resp = outer.notarised[name].response()
                        signer = (signedjson.key.generate_signing_key("n")
                                  if outer.sign_wrong else outer.key)
                        if name in outer.bad_first:
                            forged = outer.notarised[name].response(forged=True)
                            body["server_keys"].append(
                                signedjson.sign.sign_json(forged, outer.name, signer))
                        body["server_keys"].append(
                            signedjson.sign.sign_json(resp, outer.name, signer))
                else:
                    self.send_error(404)
                    return
                tlsserver.send_json(self, 200, body)

            def log_message(self, *args):
                pass

        self.server = tlsserver.start(Handler, cert, self.port)

    def response(self, forged=False):
        """The key document; @forged: self-signed by another key under the
        same key ID (and valid longer), which must not verify."""
        obj = {
            "server_name": self.name,
            "valid_until_ts": now_ms() + self.validity_ms + (3600_000 if forged else 0),
            "verify_keys": {key_id(self.key): {"key": vkey_b64(self.key)}},
            "old_verify_keys": {key_id(self.old_key): {"key": vkey_b64(self.old_key),
                                                       "expired_ts": now_ms() - 1000}},
        }
        signer = self.key
        if forged:
            signer = signedjson.key.generate_signing_key(self.key.version)
        return signedjson.sign.sign_json(obj, self.name, signer)

    def url(self):
        return f"https://127.0.0.1:{self.port}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def certs(workdir):
    d = os.path.join(workdir, "tls")
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)
    return {"good": make_cert(d, "keyserver"), "other": make_cert(d, "untrusted")}


@pytest.fixture(scope="module")
def fakes(certs):
    good = certs["good"]
    f = {
        "remote": FakeKeyServer("remote.test", good),
        "fast": FakeKeyServer("fast.test", good),
        "slow": FakeKeyServer("slow.test", good, delay=6.0),
        "expiring": FakeKeyServer("expiring.test", good, validity_ms=2500),
        "notarised": FakeKeyServer("notarised.test", good),
        "badnotary": FakeKeyServer("badnotary.test", good),
        "untrusted": FakeKeyServer("untrusted.test", certs["other"]),
        "notary": FakeKeyServer("notary.test", good),
        "wrongnotary": FakeKeyServer("wrongnotary.test", good),
        "wrongname": FakeKeyServer("someone-else.test", good),
        "asked": FakeKeyServer("asked.test", good),          # the notary tests'
        "refreshed": FakeKeyServer("refreshed.test", good),
        "notarised2": FakeKeyServer("notarised2.test", good),
        "notarised3": FakeKeyServer("notarised3.test", good),
        "rotating": FakeKeyServer("rotating.test", good, validity_ms=30 * 86400_000),
        "iplit": FakeKeyServer("ip-literal", good),  # named 127.0.0.1:<port> below
        "slots": FakeKeyServer("slots.test", good),        # TestFetchConcurrency's
        "proxied": FakeKeyServer("proxied.test", good),    # test_030_038's
    }
    f["iplit"].name = f"127.0.0.1:{f['iplit'].port}"
    f["notary"].notarised["notarised.test"] = f["notarised"]
    f["notary"].notarised["notarised2.test"] = f["notarised2"]
    f["notary"].notarised["notarised3.test"] = f["notarised3"]
    f["notary"].bad_first.add("notarised3.test")
    f["wrongnotary"].notarised["badnotary.test"] = f["badnotary"]
    f["wrongnotary"].sign_wrong = True
    yield f
    for s in f.values():
        s.stop()


DEAD_PORT = free_port()          # nothing listens there


def key_site(fakes, certs, extra=""):
    urls = "\n".join(f"MatrixFedKeyServerURL {s.name} {s.url()}"
                     for k, s in fakes.items() if k not in ("notarised", "notarised2",
                                                            "notarised3", "badnotary",
                                                            "wrongname", "iplit"))
    return f"""
{urls}
MatrixFedKeyServerURL notarised.test https://127.0.0.1:{DEAD_PORT}
MatrixFedKeyServerURL notarised2.test https://127.0.0.1:{DEAD_PORT}
MatrixFedKeyServerURL notarised3.test https://127.0.0.1:{DEAD_PORT}
MatrixFedKeyServerURL badnotary.test https://127.0.0.1:{DEAD_PORT}
MatrixFedKeyServerURL dead.test https://127.0.0.1:{DEAD_PORT}
MatrixFedKeyServerURL liar.test {fakes["wrongname"].url()}
MatrixFedKeyServerURL stale.test https://127.0.0.1:{DEAD_PORT}
MatrixFedTrustedKeyServer notary.test {vkey_b64(fakes["notary"].key)}
MatrixFedTrustedKeyServer wrongnotary.test {vkey_b64(fakes["wrongnotary"].key)}
MatrixFedKeyFetchTimeout 2
MatrixFedKeyFetchRetryInterval 1
{extra}
"""


# ------------------------------------------------------------------ our own key

OLD_KEY = signedjson.key.generate_signing_key("retired")


@pytest.fixture(scope="module")
def khttpd(httpd_factory, postgres, signing_key, backend, fakes, certs):
    h = httpd_factory.new("httpd-keys")
    extra = key_site(fakes, certs, f"""
MatrixFedKeyFetchCAFile {certs["good"][0]}
MatrixFedKeyCache shmcb
MatrixFedKeyValidity 2h
MatrixFedOldVerifyKey {key_id(OLD_KEY)} {vkey_b64(OLD_KEY)} 1500000000000
""")
    h.start(site_config(postgres, signing_key, backend, extra=extra), modules=MODULES)
    yield h
    h.stop()


class TestOwnKey:
    @pytest.mark.parametrize("path", ["/_matrix/key/v2/server", "/_matrix/key/v2/server/",
                                      "/_matrix/key/v2/server/ed25519:1",
                                      "/_matrix/key/v2/server/ed25519%3Aauto"])
    def test_030_001_key_endpoint(self, khttpd, path):
        before = now_ms()
        r = khttpd.get(path)
        assert r.status == 200, r
        assert r.header("Content-Type") == "application/json"
        body = r.json
        assert body["server_name"] == SERVER_NAME
        vk = spec_public_key()
        assert body["verify_keys"] == {
            "ed25519:1": {"key": signedjson.key.encode_verify_key_base64(vk)}}
        vk.alg, vk.version = "ed25519", "1"
        signedjson.sign.verify_signed_json(body, SERVER_NAME, vk)   # raises if bad
        # MatrixFedKeyValidity 2h
        assert before + 7200_000 - 5000 <= body["valid_until_ts"] <= now_ms() + 7200_000
        assert body["old_verify_keys"] == {
            key_id(OLD_KEY): {"key": vkey_b64(OLD_KEY), "expired_ts": 1500000000000}}

    def test_030_002_no_auth_needed_and_head(self, khttpd):
        r = khttpd.request("HEAD", "/_matrix/key/v2/server")
        assert r.status == 200 and r.body == ""

    def test_030_003_default_validity_one_day(self, httpd):
        body = httpd.get("/_matrix/key/v2/server").json
        assert abs(body["valid_until_ts"] - (now_ms() + 86400_000)) < 60_000
        assert body["old_verify_keys"] == {}


class TestNotary:
    """GET /_matrix/key/v2/query/{serverName} and POST /_matrix/key/v2/query:
    each server's keys as it signed them, signed by this server too, checked
    with python3-signedjson."""

    @staticmethod
    def verify(obj, server, key):
        vk = signedjson.key.get_verify_key(key)
        signedjson.sign.verify_signed_json(obj, server, vk)        # raises if bad

    @staticmethod
    def our_vk():
        vk = spec_public_key()
        vk.alg, vk.version = "ed25519", "1"
        return vk

    def test_030_005_own_keys(self, khttpd):
        for r in (khttpd.get(f"/_matrix/key/v2/query/{SERVER_NAME}"),
                  khttpd.get(f"/_matrix/key/v2/query/{SERVER_NAME}/ed25519:1"),
                  khttpd.post("/_matrix/key/v2/query",
                              body={"server_keys": {SERVER_NAME: {}}})):
            assert r.status == 200, r
            assert r.header("Content-Type") == "application/json"
            [obj] = r.json["server_keys"]
            assert obj["server_name"] == SERVER_NAME
            assert obj["verify_keys"] == {"ed25519:1": {
                "key": signedjson.key.encode_verify_key_base64(spec_public_key())}}
            signedjson.sign.verify_signed_json(obj, SERVER_NAME, self.our_vk())

    def test_030_006_other_servers_keys_fetched_kept_and_countersigned(self, khttpd, fakes,
                                                                        postgres):
        fast = fakes["asked"]
        before = fast.hits
        r = khttpd.get("/_matrix/key/v2/query/asked.test")
        assert r.status == 200, r
        [obj] = r.json["server_keys"]
        assert obj["server_name"] == "asked.test"
        assert obj["verify_keys"] == {key_id(fast.key): {"key": vkey_b64(fast.key)}}
        self.verify(obj, "asked.test", fast.key)                     # the origin's own
        signedjson.sign.verify_signed_json(obj, SERVER_NAME, self.our_vk())   # ours
        assert fast.hits == before + 1
        kept = postgres.psql(postgres.DBNAME, "SELECT valid_until_ts FROM"
                             " mxf_server_key_responses WHERE server_name = 'asked.test'")
        assert int(kept) == obj["valid_until_ts"]
        # Valid long enough: served as kept, not fetched again (POST, several servers).
        r = khttpd.post("/_matrix/key/v2/query", body={"server_keys": {
            "asked.test": {key_id(fast.key): {"minimum_valid_until_ts": now_ms() + 60_000}},
            SERVER_NAME: {}}})
        assert r.status == 200, r
        names = sorted(o["server_name"] for o in r.json["server_keys"])
        assert names == ["asked.test", SERVER_NAME]
        assert fast.hits == before + 1

    def test_030_007_minimum_valid_until_ts_prompts_a_refresh(self, khttpd, fakes):
        remote = fakes["refreshed"]
        first = khttpd.get("/_matrix/key/v2/query/refreshed.test").json["server_keys"][0]
        before = remote.hits
        time.sleep(1.1)                 # past MatrixFedKeyFetchRetryInterval 1
        wanted = first["valid_until_ts"] + 1
        r = khttpd.get(f"/_matrix/key/v2/query/refreshed.test?minimum_valid_until_ts={wanted}")
        [obj] = r.json["server_keys"]
        assert remote.hits == before + 1
        assert obj["valid_until_ts"] >= wanted
        self.verify(obj, "refreshed.test", remote.key)

    def test_030_00b_keys_had_from_a_notary(self, khttpd, fakes):
        """notarised2.test is reachable only through notary.test: its answer
        keeps both signatures, and gains ours."""
        r = khttpd.get("/_matrix/key/v2/query/notarised2.test")
        [obj] = r.json["server_keys"]
        self.verify(obj, "notarised2.test", fakes["notarised2"].key)
        self.verify(obj, "notary.test", fakes["notary"].key)
        signedjson.sign.verify_signed_json(obj, SERVER_NAME, self.our_vk())

    def test_030_007b_key_rotation_followed(self, khttpd, fakes):
        """After a server rotates its key, the notary answers with its new
        document once it has been fetched (here for a request signed with the
        new key), though the old one said it was valid for 30 days more."""
        rot = fakes["rotating"]
        [obj] = khttpd.get("/_matrix/key/v2/query/rotating.test").json["server_keys"]
        assert key_id(rot.key) in obj["verify_keys"]
        old = rot.key
        rot.old_key, rot.key = old, signedjson.key.generate_signing_key("rotated")
        rot.validity_ms = 86400_000
        time.sleep(1.1)                 # past MatrixFedKeyFetchRetryInterval 1
        hits = rot.hits
        path = FED + "/event/" + ev("rotated")
        r = khttpd.get(path, headers={"Authorization": xmatrix("rotating.test", rot.key, "GET",
                                                               path)})
        assert_error(r, 404, "M_NOT_FOUND")
        assert rot.hits == hits + 1
        for r in (khttpd.get("/_matrix/key/v2/query/rotating.test"),
                  khttpd.post("/_matrix/key/v2/query",
                              body={"server_keys": {"rotating.test": {}}})):
            [obj] = r.json["server_keys"]
            assert list(obj["verify_keys"]) == [key_id(rot.key)], obj
            assert key_id(old) in obj["old_verify_keys"]
            self.verify(obj, "rotating.test", rot.key)
            signedjson.sign.verify_signed_json(obj, SERVER_NAME, self.our_vk())

    def test_030_008_unreachable_servers_left_out(self, khttpd):
        r = khttpd.post("/_matrix/key/v2/query", body={"server_keys": {
            "dead.test": {}, "not a server name": {}, SERVER_NAME: {}}})
        assert r.status == 200, r
        assert [o["server_name"] for o in r.json["server_keys"]] == [SERVER_NAME]
        r = khttpd.post("/_matrix/key/v2/query", body={"server_keys": {}})
        assert r.status == 200 and r.json == {"server_keys": []}

    def test_030_009_bad_requests(self, khttpd):
        path = "/_matrix/key/v2/query"
        for body, code in (({}, "M_BAD_JSON"), ({"server_keys": []}, "M_BAD_JSON"),
                           ({"server_keys": {"a.test": []}}, "M_BAD_JSON"),
                           ({"server_keys": {"a.test": {"ed25519:1": {
                               "minimum_valid_until_ts": "soon"}}}}, "M_BAD_JSON"),
                           ({"server_keys": {f"s{i}.test": {} for i in range(1001)}},
                            "M_INVALID_PARAM")):
            assert_error(khttpd.post(path, body=body), 400, code)
        # Many servers at once are answered (names that are no server names are
        # left out without a fetch).
        many = {f"not a server {i}": {} for i in range(999)}
        many[SERVER_NAME] = {}
        r = khttpd.post(path, body={"server_keys": many})
        assert r.status == 200, r
        assert [k["server_name"] for k in r.json["server_keys"]] == [SERVER_NAME]
        assert_error(khttpd.post(path, body="not json"), 400, "M_NOT_JSON")
        assert_error(khttpd.get(f"{path}/a.test?minimum_valid_until_ts=soon"), 400,
                     "M_INVALID_PARAM")
        assert_error(khttpd.request("PUT", path, body="{}"), 405, "M_UNRECOGNIZED")

    def test_030_00a_notary_off_leaves_it_to_the_homeserver(self, httpd_factory, postgres,
                                                             signing_key, backend):
        h = httpd_factory.new("httpd-notary-off")
        h.start(site_config(postgres, signing_key, backend, extra="MatrixFedNotary Off"))
        try:
            r = h.get("/_matrix/key/v2/query/example.org")
            assert r.json["backend"] == "homeserver"
            assert h.get("/_matrix/key/v2/server").json["server_name"] == SERVER_NAME
        finally:
            h.stop()


class TestFetchDeny:
    """Key fetches never connect inside the network unless the operator says
    so: the default MatrixFedKeyFetchDeny ranges hold loopback, so a server
    named by its loopback address is not fetched; `none` or a list without
    loopback lets it through; MatrixFedKeyServerURL targets are exempt (the
    other tests' fake servers are all on 127.0.0.1)."""

    def call(self, h, fake):
        path = FED + "/event/" + ev("deny")
        return h.get(path, headers={"Authorization": xmatrix(fake.name, fake.key, "GET", path)})

    def test_030_050_loopback_denied_by_default(self, khttpd, fakes):
        f = fakes["iplit"]
        before = f.hits
        r = self.call(khttpd, f)
        assert_error(r, 401, "M_UNAUTHORIZED", "MatrixFedKeyFetchDeny")
        assert "127.0.0.1" in r.json["error"]
        assert f.hits == before, "the denied address was connected to"
        # The notary endpoint has nothing to say of it either.
        r = khttpd.get(f"/_matrix/key/v2/query/{f.name}")
        assert r.status == 200 and r.json == {"server_keys": []}

    @pytest.mark.parametrize("deny", ["none", "10.0.0.0/8 fc00::/7"])
    def test_030_051_allowed_when_configured(self, httpd_factory, postgres, signing_key,
                                             backend, fakes, certs, deny):
        f = fakes["iplit"]
        h = httpd_factory.new("httpd-deny-" + deny.split()[0].replace("/", "_"))
        extra = key_site(fakes, certs, f"MatrixFedKeyFetchCAFile {certs['good'][0]}\n"
                                       f"MatrixFedKeyFetchDeny {deny}")
        h.start(site_config(postgres, signing_key, backend, extra=extra), modules=MODULES)
        postgres.psql(postgres.DBNAME, "DELETE FROM mxf_server_keys"
                                       f" WHERE server_name = '{f.name}'")
        try:
            before = f.hits
            assert_error(self.call(h, f), 404, "M_NOT_FOUND")       # authenticated
            assert f.hits == before + 1
        finally:
            h.stop()

    def test_030_052_bad_ranges_refused(self, httpd_factory, postgres, signing_key, backend):
        mixed = "none cannot be combined with ranges"
        for i, (bad, expect) in enumerate([("10.1.0.0/8", "expected an IP address range"),
                                           ("example.org", "expected an IP address range"),
                                           ("::1/200", "expected an IP address range"),
                                           ("none 10.0.0.0/8", mixed),
                                           ("10.0.0.0/8 none", mixed),
                                           ("none default", mixed)]):
            httpd_factory.assert_start_fails(
                f"httpd-baddeny-{i}",
                site_config(postgres, signing_key, backend,
                            extra=f"MatrixFedKeyFetchDeny {bad}"),
                expect)

    def test_030_053_default_ranges_kept_with_one_more(self, httpd_factory, postgres,
                                                       signing_key, backend, fakes, certs):
        """`default` puts the default ranges back in beside one's own: loopback
        stays denied."""
        f = fakes["iplit"]
        h = httpd_factory.new("httpd-deny-default")
        extra = key_site(fakes, certs, f"MatrixFedKeyFetchCAFile {certs['good'][0]}\n"
                                       "MatrixFedKeyFetchDeny default 198.51.100.0/24")
        h.start(site_config(postgres, signing_key, backend, extra=extra), modules=MODULES)
        postgres.psql(postgres.DBNAME, "DELETE FROM mxf_server_keys"
                                       f" WHERE server_name = '{f.name}'")
        try:
            before = f.hits
            r = self.call(h, f)
            assert_error(r, 401, "M_UNAUTHORIZED", "MatrixFedKeyFetchDeny")
            assert f.hits == before
        finally:
            h.stop()


class TestKeyFileChecks:
    @pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
    def test_030_010_readable_key_refused(self, httpd_factory, postgres, backend, workdir,
                                          mode):
        path = write_key(os.path.join(workdir, f"open-{mode:o}.key"))
        os.chmod(path, mode)
        h = httpd_factory.new(f"httpd-keymode-{mode:o}")
        ok, out = h.try_start(site_config(postgres, path, backend), timeout=15)
        h.stop()
        text = out + "\n".join(h.new_log_lines())
        assert not ok
        assert "accessible by group or others" in text and "chmod 600" in text, text

    def test_030_011_bad_directives(self, httpd_factory, postgres, signing_key, backend):
        cases = [
            ("MatrixFedKeyServerURL a.test http://127.0.0.1:1", "not an https://"),
            ("MatrixFedTrustedKeyServer n.test notbase64!", "not the unpadded base64"),
            ("MatrixFedOldVerifyKey rsa:1 AAAA 1", "not an ed25519 key ID"),
            ("MatrixFedKeyValidity 5", "expected a duration from 60s to 7 days"),
            ("MatrixFedKeyValidity 8d", "expected a duration from 60s to 7 days"),
            ("MatrixFedKeyFetchTimeout 1000", "expected a duration from 100ms to 120s"),
            ("MatrixFedKeyFetchTimeout 50ms", "expected a duration from 100ms to 120s"),
            ("MatrixFedKeyFetchRetryInterval 0", "expected a duration from 1s to 1 day"),
            ("MatrixFedKeyFetchRetryInterval soon", "expected a duration from 1s to 1 day"),
            ("MatrixFedKeyCache nosuchcache", "unknown cache type"),
        ]
        for i, (line, expect) in enumerate(cases):
            httpd_factory.assert_start_fails(
                f"httpd-baddir-{i}", site_config(postgres, signing_key, backend, extra=line),
                expect)


# ------------------------------------------------------------------ authentication

class TestAuthentication:
    EVENT = FED + "/event/" + ev("nosuchevent")

    def signed_get(self, h, origin, key, path=None, **kw):
        path = path or self.EVENT
        return h.get(path, headers={"Authorization": xmatrix(origin, key, "GET", path, **kw)})

    def test_030_020_accepted_after_fetch_and_cached(self, khttpd, fakes, postgres):
        remote = fakes["remote"]
        r = self.signed_get(khttpd, "remote.test", remote.key)
        # Authenticated: the endpoint itself answers (the event does not exist).
        assert_error(r, 404, "M_NOT_FOUND")
        assert remote.hits == 1
        for _ in range(3):
            assert_error(self.signed_get(khttpd, "remote.test", remote.key), 404, "M_NOT_FOUND")
        assert remote.hits == 1, "the cached key was fetched again"
        rows = postgres.psql(postgres.DBNAME,
                             "SELECT key_id, source, expired_ts IS NULL FROM mxf_server_keys"
                             " WHERE server_name = 'remote.test' ORDER BY key_id")
        assert f"{key_id(remote.key)}|direct|t" in rows.splitlines()
        assert f"{key_id(remote.old_key)}|direct|f" in rows.splitlines()

    def test_030_021_access_log_user_is_origin(self, khttpd, fakes):
        self.signed_get(khttpd, "remote.test", fakes["remote"].key, path=FED + "/event/" + ev("logme"))
        time.sleep(0.2)
        lines = [l for l in open(khttpd.access_log) if ev("logme") in l]
        assert lines and lines[-1].split()[1] == "remote.test", lines
        khttpd.get(FED + "/event/" + ev("anon"))
        time.sleep(0.2)
        lines = [l for l in open(khttpd.access_log) if ev("anon") in l]
        assert lines and lines[-1].split()[1] == "-", lines
        assert lines[-1].split()[-2] == "401"

    def test_030_022_post_body_is_signed(self, khttpd, fakes):
        key = fakes["remote"].key
        path = FED + "/get_missing_events/%21nosuchroom%3Aremote.test"
        content = {"earliest_events": [], "latest_events": ["$a"], "limit": 5}
        auth = xmatrix("remote.test", key, "POST", path, content)
        # Same content, other whitespace and key order: still verifies.
        raw = '{ "limit" : 5, "latest_events": ["$a"],\n "earliest_events": [] }'
        r = khttpd.post(path, body=raw, headers={"Authorization": auth})
        assert_error(r, 403, "M_FORBIDDEN")       # authenticated, not in the room
        changed = dict(content, limit=6)
        r = khttpd.post(path, body=json.dumps(changed), headers={"Authorization": auth})
        assert_error(r, 401, "M_UNAUTHORIZED", "bad signature")
        # Signed without content, sent with a body.
        auth = xmatrix("remote.test", key, "POST", path)
        r = khttpd.post(path, body=json.dumps(content), headers={"Authorization": auth})
        assert_error(r, 401, "M_UNAUTHORIZED", "bad signature")

    def test_030_023_body_checks_come_first(self, khttpd, fakes):
        path = FED + "/get_missing_events/%21r%3Aremote.test"
        auth = xmatrix("remote.test", fakes["remote"].key, "POST", path, {})
        assert_error(khttpd.post(path, body="not json", headers={"Authorization": auth}),
                     400, "M_NOT_JSON")
        # Numbers canonical JSON cannot carry, signed the way Python senders
        # encode them: authenticated, then judged by the endpoint.
        for content in ({"earliest_events": [], "latest_events": [], "limit": 1.5},
                        {"earliest_events": [], "latest_events": [], "limit": 2 ** 53}):
            a = xmatrix("remote.test", fakes["remote"].key, "POST", path, content)
            r = khttpd.post(path, body=json.dumps(content), headers={"Authorization": a})
            assert r.status in (400, 403) and r.json["errcode"] != "M_UNAUTHORIZED", r
        big = json.dumps({"pad": "x" * 70000})
        assert_error(khttpd.post(path, body=big, headers={"Authorization": auth}),
                     413, "M_TOO_LARGE")

    def test_030_024_uri_exactly_as_sent(self, khttpd, fakes):
        key = fakes["remote"].key
        sent = FED + "/event/" + ev("abc") + "?x=1&y=%2F"
        r = khttpd.get(sent, headers={"Authorization": xmatrix("remote.test", key, "GET", sent)})
        assert_error(r, 404, "M_NOT_FOUND")
        # A signature over the decoded form does not verify.
        decoded = FED + "/event/$" + ev("abc")[3:] + "?x=1&y=/"
        r = khttpd.get(sent, headers={"Authorization": xmatrix("remote.test", key, "GET",
                                                               decoded)})
        assert_error(r, 401, "M_UNAUTHORIZED", "bad signature")
        r = khttpd.request("PUT", sent, body="{}", headers={
            "Authorization": xmatrix("remote.test", key, "GET", sent)})
        assert_error(r, 405, "M_UNRECOGNIZED")

    @pytest.mark.parametrize("fmt", [
        'X-Matrix origin={o},destination={d},key="{k}",sig="{s}"',
        'X-Matrix origin="{o}", destination="{d}" , key="{k}",\tsig="{s}"',
        'x-matrix ORIGIN="{o}",Destination="{d}",KEY="{k}",Sig="{s}"',
        'X-Matrix   sig="{s}",key="{k}",origin="{o}",destination="{d}"',
        'X-Matrix origin="{o}",key={k},sig={s},destination={d}',
        'X-Matrix origin="{o}",key="{k}",sig="{s}"',                    # no destination
        'X-Matrix origin="{o}",destination="{d}",key="{k}",sig="{s}",extra="ignored"',
        'X-Matrix origin="\\{o}",destination="{d}",key="{k}",sig="{s}"',
    ])
    def test_030_025_header_variants(self, khttpd, fakes, fmt):
        key = fakes["remote"].key
        path = FED + "/event/" + ev("variant")
        sig = sign_request("remote.test", key, "GET", path)
        header = fmt.format(o="remote.test", d=SERVER_NAME, k=key_id(key), s=sig)
        r = khttpd.get(path, headers={"Authorization": header})
        assert_error(r, 404, "M_NOT_FOUND")

    def test_030_026_several_headers(self, khttpd, fakes):
        key = fakes["remote"].key
        unknown = signedjson.key.generate_signing_key("nope")
        path = FED + "/event/" + ev("multi")
        good = xmatrix("remote.test", key, "GET", path)
        other = xmatrix("remote.test", unknown, "GET", path)
        # One credential with a key the origin does not publish, one valid.
        r = khttpd.get(path, headers={"Authorization": [other, good]})
        assert_error(r, 404, "M_NOT_FOUND")
        r = khttpd.get(path, headers={"Authorization": f"Bearer abc, {good}"})
        assert_error(r, 404, "M_NOT_FOUND")
        # A known key with a bad signature fails even next to a good one.
        bad = xmatrix("remote.test", key, "GET", path + "x")
        r = khttpd.get(path, headers={"Authorization": [good, bad]})
        assert_error(r, 401, "M_UNAUTHORIZED", "bad signature")

    def test_030_027_failures(self, khttpd, fakes, postgres):
        key = fakes["remote"].key
        path = FED + "/event/" + ev("fail")
        stranger = signedjson.key.generate_signing_key("zz")

        def get(header):
            hdrs = {} if header is None else {"Authorization": header}
            return khttpd.get(path, headers=hdrs)

        assert_error(get(None), 401, "M_UNAUTHORIZED", "missing")
        assert_error(get("Bearer sometoken"), 401, "M_UNAUTHORIZED", "missing")
        assert_error(get('X-Matrix origin="remote.test",key="ed25519:1"'), 401,
                     "M_UNAUTHORIZED", "malformed")
        assert_error(get('X-Matrix origin="bad/name",key="ed25519:1",sig="AAAA"'), 401,
                     "M_UNAUTHORIZED", "malformed")
        assert_error(get(xmatrix("remote.test", key, "GET", path, destination="other.example")),
                     401, "M_UNAUTHORIZED", "wrong destination")
        # The signature covers our name even when the header omits destination.
        sig = sign_request("remote.test", key, "GET", path, destination="other.example")
        assert_error(get(f'X-Matrix origin="remote.test",key="{key_id(key)}",sig="{sig}"'),
                     401, "M_UNAUTHORIZED", "bad signature")
        # Signed by someone else under the origin's key ID.
        fake = signedjson.key.generate_signing_key(key.version)
        assert_error(get(xmatrix("remote.test", fake, "GET", path)), 401, "M_UNAUTHORIZED",
                     "bad signature")
        # A key the origin does not publish (its keys were fetched already).
        assert_error(get(xmatrix("remote.test", stranger, "GET", path)), 401,
                     "M_UNAUTHORIZED", "unknown key")
        # An old (retired) key may not sign requests.
        assert_error(get(xmatrix("remote.test", fakes["remote"].old_key, "GET", path)), 401,
                     "M_UNAUTHORIZED", "expired key")
        # A key known from the table but past its valid_until_ts; no fresh copy.
        insert_key(postgres, "stale.test", stranger, now_ms() - 60_000)
        assert_error(get(xmatrix("stale.test", stranger, "GET", path)), 401, "M_UNAUTHORIZED",
                     "expired key")
        # Signed for another method or path.
        assert_error(get(xmatrix("remote.test", key, "POST", path)), 401, "M_UNAUTHORIZED",
                     "bad signature")
        # Origin that cannot be reached, and one whose server answers for another name.
        assert_error(get(xmatrix("dead.test", stranger, "GET", path)), 401, "M_UNAUTHORIZED",
                     "key unavailable")
        assert_error(get(xmatrix("liar.test", stranger, "GET", path)), 401, "M_UNAUTHORIZED",
                     "key unavailable")
        # Every one of them is JSON with a reason and a challenge.
        r = get(None)
        assert r.header("WWW-Authenticate") == "X-Matrix"

    def test_030_028_keys_from_table_without_fetch(self, khttpd, postgres):
        key = signedjson.key.generate_signing_key("tbl")
        insert_key(postgres, "table-only.test", key, now_ms() + 3600_000)
        path = FED + "/event/" + ev("tbl")
        r = khttpd.get(path, headers={"Authorization": xmatrix("table-only.test", key, "GET",
                                                               path)})
        assert_error(r, 404, "M_NOT_FOUND")

    def test_030_029_own_name_and_key(self, khttpd):
        """A request signed with this server's own key (e.g. by the homeserver
        behind it) is verified without any lookup."""
        seed = signedjson.key.decode_signing_key_base64(
            "ed25519", "1", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
        path = FED + "/event/" + ev("self")
        r = khttpd.get(path, headers={"Authorization": xmatrix(SERVER_NAME, seed, "GET", path)})
        assert_error(r, 404, "M_NOT_FOUND")

    def test_030_030_notary(self, khttpd, fakes, postgres):
        n = fakes["notarised"]
        before = fakes["notary"].queries
        path = FED + "/event/" + ev("notary")
        r = khttpd.get(path, headers={"Authorization": xmatrix("notarised.test", n.key, "GET",
                                                               path)})
        assert_error(r, 404, "M_NOT_FOUND")
        assert fakes["notary"].queries == before + 1
        assert n.hits == 0, "the notarised server itself was never reachable"
        src = postgres.psql(postgres.DBNAME,
                            "SELECT source FROM mxf_server_keys WHERE server_name ="
                            f" 'notarised.test' AND key_id = '{key_id(n.key)}'")
        assert src == "notary:notary.test"

    def test_030_030b_notary_entry_that_does_not_verify_passed_over(self, khttpd, fakes):
        """A trusted notary may answer with several documents of a server:
        one whose self-signature does not verify (here the first, and the
        longest-lived) is passed over, and the good one used."""
        n = fakes["notarised3"]
        path = FED + "/event/" + ev("notary3")
        r = khttpd.get(path, headers={"Authorization": xmatrix("notarised3.test", n.key, "GET",
                                                               path)})
        assert_error(r, 404, "M_NOT_FOUND")
        assert n.hits == 0

    def test_030_031_notary_signature_checked(self, khttpd, fakes):
        b = fakes["badnotary"]
        path = FED + "/event/" + ev("badnotary")
        r = khttpd.get(path, headers={"Authorization": xmatrix("badnotary.test", b.key, "GET",
                                                               path)})
        assert_error(r, 401, "M_UNAUTHORIZED", "key unavailable")
        assert "wrongnotary.test" in r.json["error"]
        assert fakes["wrongnotary"].queries >= 1

    def test_030_032_tls_verified(self, khttpd, fakes):
        u = fakes["untrusted"]
        path = FED + "/event/" + ev("tls")
        r = khttpd.get(path, headers={"Authorization": xmatrix("untrusted.test", u.key, "GET",
                                                               path)})
        assert_error(r, 401, "M_UNAUTHORIZED", "key unavailable")
        assert u.hits == 0, "the TLS handshake should have failed before any request"

    def test_030_033_refetched_after_expiry(self, khttpd, fakes):
        e = fakes["expiring"]
        path = FED + "/event/" + ev("exp")

        def call():
            return khttpd.get(path, headers={"Authorization": xmatrix("expiring.test", e.key,
                                                                      "GET", path)})
        assert_error(call(), 404, "M_NOT_FOUND")
        assert_error(call(), 404, "M_NOT_FOUND")
        assert e.hits == 1
        time.sleep(3.0)         # past valid_until_ts (2.5 s) and the retry interval (1 s)
        assert_error(call(), 404, "M_NOT_FOUND")
        assert e.hits == 2

    def test_030_034_slow_key_server_blocks_nobody_else(self, khttpd, fakes):
        slow, fast = fakes["slow"], fakes["fast"]
        path = FED + "/event/" + ev("slow")
        result = {}

        def slow_call():
            t0 = time.time()
            result["r"] = khttpd.get(path, headers={
                "Authorization": xmatrix("slow.test", slow.key, "GET", path)})
            result["t"] = time.time() - t0

        th = threading.Thread(target=slow_call)
        th.start()
        deadline = time.time() + 3
        while slow.hits == 0 and time.time() < deadline:
            time.sleep(0.02)
        assert slow.hits == 1
        t0 = time.time()
        r = khttpd.get(path, headers={"Authorization": xmatrix("fast.test", fast.key, "GET",
                                                               path)})
        took = time.time() - t0
        assert_error(r, 404, "M_NOT_FOUND")
        assert took < 1.0, f"another origin waited {took:.1f}s for the slow key server"
        # A second request for the slow origin waits for the same fetch, not a new one.
        t0 = time.time()
        r2 = khttpd.get(path, headers={"Authorization": xmatrix("slow.test", slow.key, "GET",
                                                                path)})
        th.join(15)
        assert_error(result["r"], 401, "M_UNAUTHORIZED", "key unavailable")
        assert 1.5 < result["t"] < 5.0, result["t"]      # MatrixFedKeyFetchTimeout 2
        assert_error(r2, 401, "M_UNAUTHORIZED", "key unavailable")
        assert slow.hits == 1
        # The failure is remembered briefly: an immediate retry does not wait.
        t0 = time.time()
        r3 = khttpd.get(path, headers={"Authorization": xmatrix("slow.test", slow.key, "GET",
                                                                path)})
        assert_error(r3, 401, "M_UNAUTHORIZED", "remembered")
        assert time.time() - t0 < 0.5
        assert slow.hits == 1

    def test_030_035_dead_key_server_fails_fast(self, khttpd):
        key = signedjson.key.generate_signing_key("d")
        path = FED + "/event/" + ev("dead")
        t0 = time.time()
        for _ in range(3):
            r = khttpd.get(path, headers={"Authorization": xmatrix("dead.test", key, "GET",
                                                                   path)})
            assert_error(r, 401, "M_UNAUTHORIZED", "key unavailable")
        assert time.time() - t0 < 2.0

    def test_030_039_error_log(self, khttpd):
        assert khttpd.unexpected_log_lines(ALLOWED_LOG) == []


class TestFetchConcurrency:
    """MatrixFedKeyFetchConcurrency: past that many key fetches at once in a
    child, a request whose origin's keys are not known is answered 503 with
    Retry-After at once, instead of holding a worker for the fetch; it
    succeeds once a slot is free."""

    @pytest.fixture(scope="class")
    def chttpd(self, httpd_factory, postgres, signing_key, backend, fakes, certs):
        h = httpd_factory.new("httpd-fetch-slots")
        h.start(site_config(postgres, signing_key, backend,
                            extra=key_site(fakes, certs, f"""
MatrixFedKeyFetchCAFile {certs["good"][0]}
MatrixFedKeyCache shmcb
MatrixFedKeyFetchConcurrency 1
# One child: the limit is per child process.
ServerLimit 1
MaxRequestWorkers 8
MinSpareThreads 1
""")),
                modules=MODULES)
        yield h
        h.stop()

    def test_030_036_fetches_past_the_limit_wait_their_turn(self, chttpd, fakes):
        slow, slots = fakes["slow"], fakes["slots"]
        path = FED + "/event/" + ev("slots")
        result = {}

        def slow_call():
            result["r"] = chttpd.get(path, headers={
                "Authorization": xmatrix("slow.test", slow.key, "GET", path)})

        before = slow.hits
        th = threading.Thread(target=slow_call)
        th.start()
        deadline = time.time() + 3
        while slow.hits == before and time.time() < deadline:
            time.sleep(0.02)
        assert slow.hits == before + 1, "the slow fetch did not start"
        t0 = time.time()
        r = chttpd.get(path, headers={"Authorization": xmatrix("slots.test", slots.key,
                                                               "GET", path)})
        assert time.time() - t0 < 1.0
        assert_error(r, 503, "M_UNKNOWN", "too many keys")
        assert r.header("Retry-After") == "1"
        th.join(15)
        assert_error(result["r"], 401, "M_UNAUTHORIZED", "key unavailable")
        # The slot is free again, and the busy answer was remembered a second only.
        time.sleep(1.1)
        r = chttpd.get(path, headers={"Authorization": xmatrix("slots.test", slots.key,
                                                               "GET", path)})
        assert_error(r, 404, "M_NOT_FOUND")
        assert any("MXF25072" in line for line in chttpd.new_log_lines())

    def test_030_038_proxy_from_the_environment_not_used(self, httpd_factory, postgres,
                                                         signing_key, backend, fakes, certs,
                                                         monkeypatch):
        """A proxy in httpd's environment (https_proxy, ALL_PROXY, as
        /etc/apache2/envvars may set) is not used for key fetches: through
        it, MatrixFedKeyFetchDeny would see the proxy's address only. The
        proxy here is a dead port: the fetch reaches the server directly."""
        for var in ("https_proxy", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(var, f"http://127.0.0.1:{DEAD_PORT}")
        h = httpd_factory.new("httpd-env-proxy")
        h.start(site_config(postgres, signing_key, backend,
                            extra=key_site(fakes, certs, f"""
MatrixFedKeyFetchCAFile {certs["good"][0]}
MatrixFedKeyCache shmcb
""")), modules=MODULES)
        try:
            p = fakes["proxied"]
            path = FED + "/event/" + ev("proxy")
            before = p.hits
            r = h.get(path, headers={"Authorization": xmatrix("proxied.test", p.key, "GET",
                                                              path)})
            assert_error(r, 404, "M_NOT_FOUND")
            assert p.hits == before + 1
        finally:
            h.stop()

    @pytest.mark.parametrize("value", ["0", "1001", "x", "+8", '" 8"', "-0"])
    def test_030_037_directive_range(self, httpd_factory, postgres, signing_key, backend,
                                     value):
        httpd_factory.assert_start_fails(
            "httpd-fetch-slots-bad",
            site_config(postgres, signing_key, backend,
                        extra=f"MatrixFedKeyFetchConcurrency {value}\n"),
            "MatrixFedKeyFetchConcurrency")


class TestKeyFreshness:
    """Keys are valid until the lesser of valid_until_ts and 7 days after
    they were obtained (keys.yaml: a MUST), fetched or imported; a notary
    refreshes a kept response past half its lifetime (keys_server.yaml's
    advice), at most 7 days. Time is moved by setting the stored times back."""

    @pytest.fixture(scope="class")
    def fhttpd(self, httpd_factory, postgres, signing_key, backend, certs):
        long_lived = FakeKeyServer("longlived.test", certs["good"], validity_ms=30 * 86400_000)
        h = httpd_factory.new("httpd-freshness")
        h.start(site_config(postgres, signing_key, backend, extra=f"""
MatrixFedKeyServerURL longlived.test {long_lived.url()}
MatrixFedKeyServerURL imported.test https://127.0.0.1:{DEAD_PORT}
MatrixFedKeyServerURL imported2.test https://127.0.0.1:{DEAD_PORT}
MatrixFedKeyFetchCAFile {certs["good"][0]}
MatrixFedKeyFetchTimeout 2
MatrixFedKeyFetchRetryInterval 1
"""), modules=MODULES)
        yield h, long_lived
        h.stop()
        long_lived.stop()

    def test_030_045_notary_refetches_a_response_older_than_7_days(self, fhttpd, postgres):
        h, srv = fhttpd
        r = h.get("/_matrix/key/v2/query/longlived.test")
        assert r.status == 200 and len(r.json["server_keys"]) == 1, r
        hits = srv.hits
        # Fetched 8 days ago; its valid_until_ts (30 days on) still 22 days ahead.
        postgres.psql(postgres.DBNAME,
                      "UPDATE mxf_server_key_responses SET fetched_ts = fetched_ts - 691200000,"
                      " valid_until_ts = valid_until_ts - 691200000"
                      " WHERE server_name = 'longlived.test'")
        time.sleep(1.1)                 # past MatrixFedKeyFetchRetryInterval
        r = h.get("/_matrix/key/v2/query/longlived.test")
        assert r.status == 200 and len(r.json["server_keys"]) == 1, r
        assert srv.hits == hits + 1

    def test_030_046_notary_refetches_past_half_the_lifetime(self, fhttpd, postgres):
        h, srv = fhttpd
        h.get("/_matrix/key/v2/query/longlived.test")
        hits = srv.hits
        # Valid for 6 days, fetched 4 days ago: past half (3 days), not expired.
        postgres.psql(postgres.DBNAME,
                      f"UPDATE mxf_server_key_responses SET fetched_ts = {now_ms()} - 345600000,"
                      f" valid_until_ts = {now_ms()} + 172800000"
                      " WHERE server_name = 'longlived.test'")
        time.sleep(1.1)
        r = h.get("/_matrix/key/v2/query/longlived.test")
        assert r.status == 200, r
        assert srv.hits == hits + 1
        # Just fetched: served as kept.
        r = h.get("/_matrix/key/v2/query/longlived.test")
        assert r.status == 200 and srv.hits == hits + 1

    def test_030_047_imported_key_not_trusted_beyond_7_days(self, fhttpd, postgres, build_env,
                                                           workdir):
        """Keys imported with `matrix-fed import --keys` from documents valid
        until 2100: one imported 6 days ago is trusted, one imported 8 days
        ago is fetched again first (its server is unreachable here: 401)."""
        h, _ = fhttpd
        d = os.path.join(workdir, "imported-key")
        os.makedirs(d, exist_ok=True)
        empty = os.path.join(d, "empty.jsonl")
        open(empty, "w").close()
        keys = {}
        for server, days in (("imported.test", 6), ("imported2.test", 8)):
            key = keys[server] = signedjson.key.generate_signing_key("imp")
            doc = signedjson.sign.sign_json(
                {"server_name": server, "valid_until_ts": 4102444800000,
                 "old_verify_keys": {}, "verify_keys": {key_id(key): {"key": vkey_b64(key)}}},
                server, key)
            kf = os.path.join(d, f"{server}.json")
            with open(kf, "w") as f:
                json.dump({"server_keys": [doc]}, f)
            subprocess.run([build_env.cli, "import", "--quiet", "--db", postgres.conninfo(),
                            "--keys", kf, empty], check=True, capture_output=True,
                           env=build_env.sanitizer_env(d))
            postgres.psql(postgres.DBNAME,
                          f"UPDATE mxf_server_keys SET fetched_ts = fetched_ts - {days} * 86400000"
                          f" WHERE server_name = '{server}'")
        path = FED + "/event/" + ev("imported")
        for server, status, errcode in (("imported.test", 404, "M_NOT_FOUND"),
                                        ("imported2.test", 401, "M_UNAUTHORIZED")):
            r = h.get(path, headers={"Authorization": xmatrix(server, keys[server], "GET",
                                                              path)})
            assert_error(r, status, errcode)


# ------------------------------------------------------------------ authorization

class TestRequireOrigin:
    """Require rules see the origin; TLS verification can be turned off."""

    @pytest.fixture(scope="class")
    def rhttpd(self, httpd_factory, postgres, signing_key, backend, fakes, certs):
        h = httpd_factory.new("httpd-require")
        extra = key_site(fakes, certs, """
MatrixFedKeyFetchTLSVerify Off
<Location /_matrix/federation/>
    <RequireAll>
        Require all granted
        Require not matrix-origin evil.test *.evil.test
        Require matrix-origin *.test
    </RequireAll>
</Location>
""")
        h.start(site_config(postgres, signing_key, backend, extra=extra), modules=MODULES)
        yield h
        h.stop()

    def call(self, h, origin, key):
        path = FED + "/event/" + ev("require")
        return h.get(path, headers={"Authorization": xmatrix(origin, key, "GET", path)})

    def test_030_040_allowed_and_denied(self, rhttpd, postgres, fakes):
        keys = {}
        for origin in ("evil.test", "sub.evil.test", "ok.test", "other.example"):
            keys[origin] = signedjson.key.generate_signing_key("r1")
            insert_key(postgres, origin, keys[origin], now_ms() + 3600_000)
        assert_error(self.call(rhttpd, "ok.test", keys["ok.test"]), 404, "M_NOT_FOUND")
        for origin in ("evil.test", "sub.evil.test", "other.example"):
            assert_error(self.call(rhttpd, origin, keys[origin]), 403, "M_FORBIDDEN")
        # Authentication still comes first.
        assert_error(rhttpd.get(FED + "/event/" + ev("x")), 401, "M_UNAUTHORIZED", "missing")

    def test_030_041_public_and_proxied_unaffected(self, rhttpd):
        assert rhttpd.get(FED + "/version").status == 200
        r = rhttpd.request("PUT", FED + "/send/txn1", body="{}")
        assert r.json["backend"] == "homeserver"

    def test_030_042_tls_verify_off(self, rhttpd, fakes):
        u = fakes["untrusted"]
        before = u.hits
        assert_error(self.call(rhttpd, "untrusted.test", u.key), 404, "M_NOT_FOUND")
        assert u.hits == before + 1
        assert any("MXF25020" in l for l in rhttpd.new_log_lines())
