"""Robustness of the httpd glue under adverse conditions: a slow key fetch
must not hold a database connection, a statement failing on a sound
connection is not prepared and run again, a subrequest to a module path
is answered once (401) without running the handler, and a database that
stops answering holds no request past its time limit, whether the request
opens a connection, runs a short statement or a streamed one."""
import contextlib
import os
import socket
import struct
import subprocess
import threading
import time

import pytest
import signedjson.key

from conftest import SERVER_NAME, site_config
from mxftest.httpd import BASE_MODULES
from mxftest.matrix import gen_room, import_room, load_key, q
from test_030_keys_auth import (FED, FakeKeyServer, assert_error, certs, ev,  # noqa: F401
                                insert_key, now_ms, xmatrix)


@contextlib.contextmanager
def events_locked(postgres):
    """mxf_events locked against every reader by another session until the
    block ends: the database stops answering the module's statements."""
    locker = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-d", postgres.conninfo()],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        locker.stdin.write("BEGIN;\nLOCK TABLE mxf_events IN ACCESS EXCLUSIVE MODE;\n"
                           "SELECT 'locked';\n")
        locker.stdin.flush()
        assert locker.stdout.readline().strip() == "locked"
        yield
    finally:
        locker.stdin.write("ROLLBACK;\n\\q\n")
        locker.stdin.flush()
        locker.wait(10)


def known_origin(postgres, h, name):
    """An origin whose key is in the key table: the path of an unknown
    event and the headers of its signed GET, checked to be answered (404)."""
    key = signedjson.key.generate_signing_key("k" + name.split(".")[0])
    insert_key(postgres, name, key, now_ms() + 3600_000)
    path = FED + "/event/" + ev(name.split(".")[0])
    headers = {"Authorization": xmatrix(name, key, "GET", path)}
    assert_error(h.get(path, headers=headers), 404, "M_NOT_FOUND")
    return path, headers


@pytest.fixture(scope="module")
def slow(certs):  # noqa: F811
    s = FakeKeyServer("slow.test", certs["good"], delay=4.0)
    yield s
    s.stop()


def test_042_001_key_fetch_holds_no_db_connection(httpd_factory, postgres, signing_key,
                                                   backend, slow, certs):  # noqa: F811
    """Requests waiting for a key fetch hold no pooled connection: with a
    pool of two, two origins whose keys are being fetched (slowly) leave
    the requests of a known origin answered at once."""
    names = ["slowa.test", "slowb.test"]
    urls = "\n".join(f"MatrixFedKeyServerURL {n} {slow.url()}" for n in names)
    extra = f"""
{urls}
MatrixFedKeyFetchCAFile {certs["good"][0]}
MatrixFedKeyFetchTimeout 5
ServerLimit 1
ThreadsPerChild 16
MaxRequestWorkers 16
DBDKeep 2
DBDMax 2
"""
    h = httpd_factory.new("httpd-dbd-hold")
    h.start(site_config(postgres, signing_key, backend, extra=extra))
    try:
        path, known_auth = known_origin(postgres, h, "known.test")
        hits, threads = slow.hits, []
        for n in names:
            k = signedjson.key.generate_signing_key("s")
            th = threading.Thread(target=h.get, args=(path,), kwargs={
                "headers": {"Authorization": xmatrix(n, k, "GET", path)}})
            th.start()
            threads.append(th)
        deadline = time.time() + 3
        while slow.hits < hits + 2 and time.time() < deadline:
            time.sleep(0.02)
        assert slow.hits == hits + 2, "the two key fetches did not start"
        t0 = time.time()
        r = h.get(path, headers=known_auth)
        took = time.time() - t0
        for th in threads:
            th.join(20)
        assert_error(r, 404, "M_NOT_FOUND")
        assert took < 1.0, f"a known origin's request waited {took:.1f} s for a connection"
    finally:
        h.stop()


def test_042_002_statement_failing_on_sound_connection(httpd_factory, postgres, signing_key,
                                                       backend):
    """A statement that fails on a sound connection (a lock timeout) is
    answered 503 after one wait: not run again, nothing prepared again."""
    site = site_config(postgres, signing_key, backend)
    assert "connect_timeout=5" in site
    site = site.replace("connect_timeout=5", "connect_timeout=5 options='-c lock_timeout=300'")
    h = httpd_factory.new("httpd-lock-timeout")
    h.start(site)
    try:
        path, hdr = known_origin(postgres, h, "known2.test")
        log0 = os.path.getsize(postgres.logfile)
        with events_locked(postgres):
            t0 = time.time()
            r = h.get(path, headers=hdr)
            took = time.time() - t0
        with open(postgres.logfile, errors="replace") as f:
            f.seek(log0)
            log = f.read()
        assert_error(r, 503, "M_UNKNOWN")
        assert log.count("canceling statement due to lock timeout") == 1, log
        assert "already exists" not in log, log
        assert took < 0.9, took
        # The connection is sound: the next request is served.
        assert_error(h.get(path, headers=hdr), 404, "M_NOT_FOUND")
    finally:
        h.stop()


def test_042_003_subrequest_answered_once(httpd_factory, postgres, signing_key, backend,
                                          workdir):
    """An SSI include of a module path (a subrequest, which carries no
    X-Matrix credentials of its own) is answered 401, once: the handler
    does not run after it."""
    docs = os.path.join(workdir, "ssi")
    os.makedirs(docs, exist_ok=True)
    os.chmod(docs, 0o755)
    with open(os.path.join(docs, "page.shtml"), "w") as f:
        f.write('BEGIN <!--#include virtual="/_matrix/federation/v1/event/%24'
                + "A" * 43 + '" --> END\n')
    os.chmod(os.path.join(docs, "page.shtml"), 0o644)
    extra = f"""
TypesConfig /etc/mime.types
ProxyPass /ssi !
Alias /ssi {docs}
<Directory {docs}>
  Options +Includes
  AddOutputFilter INCLUDES .shtml
  Require all granted
</Directory>
"""
    h = httpd_factory.new("httpd-ssi")
    h.start(site_config(postgres, signing_key, backend, extra=extra),
            modules=BASE_MODULES + ["include", "alias", "mime"])
    try:
        r = h.get("/ssi/page.shtml")
        assert r.status == 200, r
        assert r.body.startswith("BEGIN ") and r.body.rstrip().endswith(" END"), r.body
        assert r.body.count("errcode") == 1 and "M_UNAUTHORIZED" in r.body, r.body
    finally:
        h.stop()


def test_042_004_statement_timeout(httpd_factory, postgres, signing_key, backend):
    """A database that stops answering mid-statement (here: a lock held
    for ever, no lock_timeout) holds a request only for
    MatrixFedQueryTimeout: 503, the connection dropped and, once the
    database answers again, reset and used as before."""
    h = httpd_factory.new("httpd-query-timeout")
    h.start(site_config(postgres, signing_key, backend, extra="MatrixFedQueryTimeout 700ms\n"))
    try:
        path, hdr = known_origin(postgres, h, "known4.test")
        answers = []
        with events_locked(postgres):
            # The second request may find its connection reset (the statement
            # not prepared there): preparing it waits on the lock too, within
            # the same time.
            for _ in range(2):
                t0 = time.time()
                answers.append((h.get(path, headers=hdr), time.time() - t0))
        for r, took in answers:
            assert_error(r, 503, "M_UNKNOWN")
            assert 0.6 < took < 3, took
        assert sum("MXF25069" in line for line in h.new_log_lines()) >= 2
        for _ in range(3):
            assert_error(h.get(path, headers=hdr), 404, "M_NOT_FOUND")
    finally:
        h.stop()


@pytest.mark.parametrize("directive", ["MatrixFedQueryTimeout", "MatrixFedStreamTimeout"])
@pytest.mark.parametrize("value", ["50ms", "2h", "soon"])
def test_042_005_statement_timeout_range(httpd_factory, postgres, signing_key, backend,
                                         directive, value):
    httpd_factory.assert_start_fails("httpd-timeout-bad",
                                     site_config(postgres, signing_key, backend,
                                                 extra=f"{directive} {value}\n"),
                                     directive)


@pytest.fixture(scope="module")
def small_room(build_env, postgres, workdir):
    room = gen_room(build_env.cli, os.path.join(workdir, "room-042"), room_version=10,
                    events=40, servers=2, seed=42)
    import_room(build_env.cli, postgres.conninfo(), room)
    return room


def test_042_006_locked_table_holds_no_request(httpd_factory, postgres, signing_key, backend,
                                               small_room):
    """A table every answer reads locked (as a migration or VACUUM FULL
    holds it), from before the first request: /event gets its 503 within
    MatrixFedQueryTimeout although its connection is new (statements are
    prepared at first use within that time, not by mod_dbd as it opens the
    connection, with no limit); /state_ids and /event_auth, streamed, get
    theirs within MatrixFedStreamTimeout. Once the lock goes every one is
    answered again, on the connections that were dropped and reset."""
    h = httpd_factory.new("httpd-locked")
    h.start(site_config(postgres, signing_key, backend,
                        extra="MatrixFedQueryTimeout 700ms\nMatrixFedStreamTimeout 1500ms\n"))
    server = sorted(small_room.summary["joined_servers"])[0]
    key = load_key(small_room.key_path(server))
    rid, eid = q(small_room.room_id), q(small_room.order[-1])
    cases = [("event", f"{FED}/event/{eid}", 0.7, "MatrixFedQueryTimeout"),
             ("state_ids", f"{FED}/state_ids/{rid}?event_id={eid}", 1.5,
              "MatrixFedStreamTimeout"),
             ("event_auth", f"{FED}/event_auth/{rid}/{eid}", 1.5, "MatrixFedStreamTimeout")]

    def get(path):
        return h.get(path, headers={"Authorization": xmatrix(server, key, "GET", path,
                                                             destination=SERVER_NAME)})
    try:
        with events_locked(postgres):
            for name, path, limit, directive in cases:
                t0 = time.time()
                r = get(path)
                took = time.time() - t0
                assert_error(r, 503, "M_UNKNOWN")
                assert limit - 0.1 < took < limit + 2.5, (name, took)
                log = "\n".join(h.new_log_lines())
                assert "MXF25069" in log and f"({directive})" in log, (name, log)
        for name, path, _, _ in cases:
            r = get(path)
            assert r.status == 200, (name, r)
    finally:
        h.stop()



@pytest.fixture(scope="module")
def wide_state_room(build_env, postgres, workdir):
    """A room whose /state answer takes several 64 KB pieces."""
    room = gen_room(build_env.cli, os.path.join(workdir, "room-042-state"), room_version=10,
                    events=3000, servers=6, users_per_server=60, seed=77)
    import_room(build_env.cli, postgres.conninfo(), room)
    return room


def test_042_008_client_gone_mid_stream_without_persistent_connections(
        httpd_factory, postgres, signing_key, backend, wide_state_room):
    """With DBDPersist Off the request's connection lives in a subpool of the
    request's pool, closed before that pool's own cleanups run, so the
    cleanup that stops a streamed answer left mid-way (the client resets the
    connection) is a pre-cleanup, run while the connection is open. Here:
    such answers left mid-way many times crash nothing and leave no
    sanitizer report, and later answers are whole. (The sanitizer cannot
    see the reads a cleanup run too late makes: they happen inside libpq,
    which is not instrumented.)"""
    h = httpd_factory.new("httpd-persist-off")
    h.start(site_config(postgres, signing_key, backend, extra="DBDPersist Off\n"))
    server = sorted(wide_state_room.summary["joined_servers"])[0]
    key = load_key(wide_state_room.key_path(server))
    path = (f"{FED}/state/{q(wide_state_room.room_id)}"
            f"?event_id={q(wide_state_room.order[-1])}")

    def auth():
        return xmatrix(server, key, "GET", path, destination=SERVER_NAME)
    try:
        full = h.get(path, headers={"Authorization": auth()})
        assert full.status == 200
        assert len(full.body) > 3 * 64 * 1024, len(full.body)
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", h.port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth()}\r\n\r\n"
                      .encode())
            s.recv(2048)
            time.sleep(0.05)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        time.sleep(1)
        again = h.get(path, headers={"Authorization": auth()})
        assert again.status == 200 and again.body == full.body
        log = "\n".join(h.new_log_lines())
        assert "exit signal" not in log, log[-3000:]
    finally:
        h.stop()
    assert not h.sanitizer_reports()
