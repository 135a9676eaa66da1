# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The module over TLS to PostgreSQL, as with a database on another host
(`sslmode=require` in DBDParams; Debian's own clusters have ssl = on, so
libpq's default sslmode=prefer takes TLS over TCP too). The streamed
answers read rows as they come: a TLS record that libpq has only partly
taken stays in OpenSSL's buffer, where poll() on the socket does not see
it, so each wait must first take what is buffered. Answers of big PDUs
(state events of 50 KB: DataRow messages over several TLS records) must
all come whole and quickly, however the records fall."""
import json
import os
import pwd
import subprocess
import time

import pytest

from conftest import SERVER_NAME, site_config
from mxftest.matrix import q
from mxftest.postgres import Postgres
from mxftest.vbuilder import Keys
from mxftest.vroom import Fed, import_rooms
from test_042_robustness import events_locked
from test_090_sytest_rooms import ALICE, CHARLIE, synapse_room

FED = "/_matrix/federation/v1"
BIG = 40


class TlsPostgres(Postgres):
    """The harness's cluster with ssl = on (a self-signed certificate)."""

    def __init__(self, basedir):
        os.makedirs(basedir, exist_ok=True)
        cert, key = os.path.join(basedir, "server.crt"), os.path.join(basedir, "server.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.chmod(key, 0o600)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for f in (cert, key):
                os.chown(f, pw.pw_uid, pw.pw_gid)
        super().__init__(basedir, settings=["ssl=on", f"ssl_cert_file={cert}",
                                            f"ssl_key_file={key}"])

    def conninfo(self, dbname=None):
        return super().conninfo(dbname) + " sslmode=require"


@pytest.fixture(scope="module")
def tls(build_env, workdir, signing_key, backend, httpd_factory):
    pg = TlsPostgres(os.path.join(workdir, "pg-tls"))
    pg.start()
    try:
        r = subprocess.run([build_env.cli, "db", "init", "--db", pg.conninfo()],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert r.returncode == 0, r.stdout
        keys = Keys()
        room = synapse_room(keys, "!tls:hs1.example")
        room.join(CHARLIE)
        for i in range(BIG):
            # 50 KB of content that compresses badly, in a state event
            blob = "".join(f"{(i * 7919 + k * 104729) % 1000003:07d}" for k in range(7000))
            room.make("org.example.big", ALICE, {"blob": blob}, state_key=str(i))
        last = room.msg(ALICE, "after the big state")
        import_rooms(build_env, pg, workdir, "tls", [room], keys)
        h = httpd_factory.new("httpd-tls")
        # libpq looks for a client certificate under $HOME/.postgresql; httpd's
        # children (www-data) cannot read the test runner's (root's) home
        h.extra_env = {"HOME": "/nonexistent"}
        h.start(site_config(pg, signing_key, backend, extra="MatrixFedStreamTimeout 5s"))
        yield {"pg": pg, "fed": Fed(h, keys), "room": room, "last": last, "httpd": h}
        h.stop()
    finally:
        pg.stop()


def test_095_001_big_state_over_tls(tls):
    fed, room, last = tls["fed"], tls["room"], tls["last"]
    path = f"{FED}/state/{q(room.room_id)}?event_id={q(last)}"
    sizes = set()
    for _ in range(12):
        t0 = time.time()
        r = fed.get("remote.example", path)
        took = time.time() - t0
        assert r.status == 200, (r.status, r.body[:300], tls["httpd"].log_tail())
        body = json.loads(r.body)
        big = [p for p in body["pdus"] if p["type"] == "org.example.big"]
        assert len(big) == BIG, len(big)
        assert took < 4, f"/state took {took:.1f} s"
        sizes.add(len(r.body))
    assert len(sizes) == 1 and sizes.pop() > BIG * 49000
    # the module's connections do use TLS
    n = tls["pg"].psql(tls["pg"].DBNAME,
                       "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)"
                       " WHERE s.ssl AND a.datname = current_database()"
                       "   AND a.pid <> pg_backend_pid()")
    assert int(n) >= 1
    assert not [l for l in tls["httpd"].new_log_lines() if "MXF25069" in l]


def test_095_002_state_ids_and_event_auth_over_tls(tls):
    fed, room, last = tls["fed"], tls["room"], tls["last"]
    r = fed.get("remote.example", f"{FED}/state_ids/{q(room.room_id)}?event_id={q(last)}")
    assert r.status == 200, r.body[:300]
    assert len(json.loads(r.body)["pdu_ids"]) >= BIG
    r = fed.get("remote.example", f"{FED}/event_auth/{q(room.room_id)}/{q(last)}")
    assert r.status == 200, r.body[:300]


def test_095_003_time_limits_over_tls(tls, httpd_factory, signing_key, backend):
    """The waits over TLS are cut into slices; the time limits still hold: a
    locked table gets /event its 503 within MatrixFedQueryTimeout and
    /state within MatrixFedStreamTimeout, and once the lock goes both are
    answered."""
    pg, room, last = tls["pg"], tls["room"], tls["last"]
    h = httpd_factory.new("httpd-tls-limits")
    h.extra_env = {"HOME": "/nonexistent"}
    h.start(site_config(pg, signing_key, backend,
                        extra="MatrixFedQueryTimeout 700ms\nMatrixFedStreamTimeout 1500ms\n"))
    fed = Fed(h, tls["fed"].keys)
    cases = [(f"{FED}/event/{q(last)}", 0.7, "MatrixFedQueryTimeout"),
             (f"{FED}/state/{q(room.room_id)}?event_id={q(last)}", 1.5,
              "MatrixFedStreamTimeout")]
    try:
        # warm: every statement prepared, the connections open
        for path, _, _ in cases:
            assert fed.get("remote.example", path).status == 200
        with events_locked(pg):
            for path, limit, directive in cases:
                t0 = time.time()
                r = fed.get("remote.example", path)
                took = time.time() - t0
                assert r.status == 503 and json.loads(r.body)["errcode"] == "M_UNKNOWN", r.body
                assert limit - 0.1 < took < limit + 2.5, (path, took)
                log = "\n".join(h.new_log_lines())
                assert "MXF25069" in log and f"({directive})" in log, log
        for path, _, _ in cases:
            assert fed.get("remote.example", path).status == 200, path
    finally:
        h.stop()
