# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""MatrixFedQueryConcurrency: at most that many statements of all child
processes together reach PostgreSQL at once; the other requests wait their
turn, and one that waits longer than MatrixFedQueryWait is answered 503 with
Retry-After.

PostgreSQL itself shows how many statements got in: while a test holds an
exclusive lock on the event table, every /event statement that reaches the
database waits on that lock, visible in pg_stat_activity. The server's
database connections are all opened at start, so that the only place a
request can wait before the database is the gate."""
import concurrent.futures
import http.client
import os
import pwd
import re
import subprocess
import time

import pytest

from conftest import SERVER_NAME
from mxftest.matrix import gen_room, import_room, load_key, q, xmatrix
from test_020_genroom import event_id

FED = "/_matrix/federation/v1"
CONCURRENT = 5

# One child, its eight connections opened (and the statements prepared) when
# it starts: a connection opened later would wait on the test's lock while
# preparing, before the gate.
ONE_CHILD = """
ServerLimit 1
StartServers 1
MaxRequestWorkers 8
DBDMin 8
DBDKeep 8
DBDMax 8
"""

# Two children of four workers each, each with its four connections opened
# at start. A child whose workers are all busy accepts no more connections,
# so eight requests held at once are spread over both.
TWO_CHILDREN = """
ServerLimit 2
StartServers 2
ThreadsPerChild 4
MaxRequestWorkers 8
MinSpareThreads 4
MaxSpareThreads 8
DBDMin 4
DBDKeep 4
DBDMax 4
"""


@pytest.fixture(scope="module")
def room(build_env, postgres, workdir):
    r = gen_room(build_env.cli, os.path.join(workdir, "room-gate"), room_version=10,
                 events=30, servers=2, seed=41)
    import_room(build_env.cli, postgres.conninfo(), r)
    return r


def event_get(httpd, room, eid):
    server = room.summary["joined_servers"][0]
    key = load_key(room.key_path(server))
    path = f"{FED}/event/{q(eid)}"
    return httpd.get(path, headers={"Authorization": xmatrix(server, key, SERVER_NAME,
                                                             "GET", path)})


class EventsLocked:
    """Holds an ACCESS EXCLUSIVE lock on mxf_events (in a psql session) while
    in the with-block."""

    def __init__(self, postgres):
        self.postgres = postgres

    def __enter__(self):
        self.proc = subprocess.Popen(
            ["psql", "-X", "-q", "-A", "-t", "-d", self.postgres.conninfo()],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.proc.stdin.write("BEGIN; LOCK TABLE mxf_events IN ACCESS EXCLUSIVE MODE;"
                              " SELECT 'locked';\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "locked"
        return self

    def __exit__(self, *exc):
        self.proc.stdin.write("COMMIT;\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def waiting_on_lock(postgres):
    """Module statements waiting for the test's lock right now."""
    return int(postgres.psql("postgres",
                             "SELECT count(*) FROM pg_stat_activity"
                             " WHERE wait_event_type = 'Lock' AND query LIKE '%mxf_events%'"
                             " AND application_name <> 'psql'"))


def settle(postgres, want, seconds=5.0):
    """Waits until want statements wait on the lock; returns how many do."""
    deadline = time.time() + seconds
    n = waiting_on_lock(postgres)
    while n < want and time.time() < deadline:
        time.sleep(0.05)
        n = waiting_on_lock(postgres)
    return n


def connection_owners(port):
    """The processes holding the server side of established TCP connections
    to 127.0.0.1:port, one entry per connection."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if int(cols[1].split(":")[1], 16) == port and cols[3] == "01":
                inodes.add(cols[9])
    owners = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                owners.append(int(pid))
    return owners


def semaphore_group(semid):
    """The group that owns System V semaphore set semid."""
    with open("/proc/sysvipc/sem") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if int(cols[1]) == semid:
                return int(cols[5])
    return None


def semaphores():
    """The System V semaphore sets of this machine: {semid: (uid, mode)}."""
    out = {}
    with open("/proc/sysvipc/sem") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            out[int(cols[1])] = (int(cols[4]), int(cols[2], 8) & 0o777)
    return out


def gate_log(httpd):
    """What the server's error log says of its gate's semaphore, oldest
    first: [(slots, semaphore ID, "new" or "kept")]."""
    with open(httpd.error_log, errors="replace") as f:
        return [(int(n), int(i), how) for n, i, how in re.findall(
            r"MXF25076: MatrixFedQueryConcurrency (\d+): one queue for all child processes "
            r"\(System V semaphore (\d+), (new|kept)\)", f.read())]


class TestQueryGateRefuses:
    SITE_EXTRA = ONE_CHILD + "MatrixFedQueryConcurrency 1\nMatrixFedQueryWait 300ms\n"

    def test_one_statement_in_the_rest_answered_503(self, httpd, room, postgres):
        eid = room.order[-1]
        # Warm: the origin's key is looked up once and cached by the child.
        assert event_get(httpd, room, eid).status == 200

        with concurrent.futures.ThreadPoolExecutor(CONCURRENT) as pool:
            with EventsLocked(postgres):
                futures = [pool.submit(event_get, httpd, room, eid) for _ in range(CONCURRENT)]
                assert settle(postgres, 1) == 1
                # Those behind the gate give up after 300 ms ...
                deadline = time.time() + 20
                while (sum(f.done() for f in futures) < CONCURRENT - 1
                       and time.time() < deadline):
                    time.sleep(0.05)
                # ... while exactly one statement stayed in the database.
                assert waiting_on_lock(postgres) == 1
                refused = [f.result() for f in futures if f.done()]
            answers = [f.result(timeout=10) for f in futures]

        assert len(refused) == CONCURRENT - 1
        for resp in refused:
            assert resp.status == 503, resp
            assert resp.header("Content-Type") == "application/json"
            assert resp.json["errcode"] == "M_UNKNOWN"
            assert "busy" in resp.json["error"]
            assert resp.header("Retry-After") == "1"
        assert sorted(r.status for r in answers) == [200] + [503] * (CONCURRENT - 1)
        ok = next(r for r in answers if r.status == 200)
        assert ok.json["pdus"][0]["room_id"] == room.room_id
        # One warning with the count (the first refusal reports at once, the
        # others fall in its 10 s), each refusal at info (LogLevel debug here).
        log = httpd.log_tail(200)
        warnings = [l for l in log.splitlines() if "MXF25062" in l]
        assert len(warnings) == 1, log
        assert "1 request(s) answered 503" in warnings[0]
        assert "MatrixFedQueryConcurrency" in warnings[0]
        assert sum("MXF25064" in l for l in log.splitlines()) == CONCURRENT - 1, log

    def test_free_again_afterwards(self, httpd, room, postgres):
        for eid in room.order[-3:]:
            assert event_get(httpd, room, eid).status == 200
        assert waiting_on_lock(postgres) == 0


class TestQueryGateQueues:
    SITE_EXTRA = ONE_CHILD + "MatrixFedQueryConcurrency 2\nMatrixFedQueryWait 30s\n"

    def test_queued_requests_served_in_turn(self, httpd, room, postgres):
        eids = room.order[-CONCURRENT:]
        assert event_get(httpd, room, eids[0]).status == 200

        with concurrent.futures.ThreadPoolExecutor(CONCURRENT) as pool:
            with EventsLocked(postgres):
                futures = [pool.submit(event_get, httpd, room, eid) for eid in eids]
                assert settle(postgres, 2) == 2
                time.sleep(0.5)
                # Two statements in the database, the other requests waiting.
                assert waiting_on_lock(postgres) == 2
                assert not any(f.done() for f in futures)
            answers = [f.result(timeout=30) for f in futures]

        for eid, resp in zip(eids, answers):
            assert resp.status == 200, resp
            assert resp.json["pdus"][0]["room_id"] == room.room_id
            assert resp.json["origin"] == SERVER_NAME
        # The served PDUs are the events asked for (IDs recomputed from them).
        assert [event_id(r.json["pdus"][0], room.version) for r in answers] == eids


class TestQueryGateAcrossChildren:
    SITE_EXTRA = (TWO_CHILDREN + "MatrixFedQueryConcurrency 2\nMatrixFedQueryWait 30s\n"
                  "MatrixFedQueryTimeout 60s\n")
    N = 8

    def test_one_queue_for_all_children(self, httpd, room, postgres):
        eids = room.order[-self.N:]
        assert event_get(httpd, room, eids[0]).status == 200

        with concurrent.futures.ThreadPoolExecutor(self.N) as pool:
            with EventsLocked(postgres):
                futures = [pool.submit(event_get, httpd, room, eid) for eid in eids]
                assert settle(postgres, 2) == 2
                deadline = time.time() + 10
                while len(connection_owners(httpd.port)) < self.N and time.time() < deadline:
                    time.sleep(0.05)
                owners = connection_owners(httpd.port)
                # Both children hold requests (as a rule four each: all their
                # workers; now and then a child is slow to take its last
                # connections from the listen queue), and still only two
                # statements are in the database: a gate per child would
                # have let in at least three (two in one child, one or two
                # in the other).
                assert len(owners) >= 3, owners
                assert len(set(owners)) == 2, owners
                seen = set()
                deadline = time.time() + 2
                while time.time() < deadline:
                    seen.add(waiting_on_lock(postgres))
                    time.sleep(0.05)
                assert seen == {2}, seen
                assert not any(f.done() for f in futures)
            answers = [f.result(timeout=30) for f in futures]

        for eid, resp in zip(eids, answers):
            assert resp.status == 200, resp
        assert [event_id(r.json["pdus"][0], room.version) for r in answers] == eids


# mod_status's page, outside the proxied paths.
SERVER_STATUS = """
ProxyPass /server-status !
<Location /server-status>
  SetHandler server-status
</Location>
"""


def status_server(httpd_factory, name, postgres, signing_key, backend, extra):
    from conftest import site_config
    from mxftest.httpd import BASE_MODULES
    h = httpd_factory.new(name)
    h.start(site_config(postgres, signing_key, backend, extra=extra + SERVER_STATUS),
            modules=BASE_MODULES + ["status"])
    return h


def status_page(h, path):
    """The body of a 200 answer to GET path (no signature)."""
    conn = http.client.HTTPConnection("127.0.0.1", h.port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read().decode()
    finally:
        conn.close()
    assert resp.status == 200, body
    return body


def test_041_gate_on_server_status(httpd_factory, postgres, signing_key, backend, room):
    """mod_status's page shows the gate of the whole server (its semaphore,
    which all children share: TestQueryGateAcrossChildren): its slots, the
    statements in the database and the requests waiting their turn."""
    h = status_server(httpd_factory, "httpd-gate-status", postgres, signing_key, backend,
                      ONE_CHILD + "MatrixFedQueryConcurrency 2\nMatrixFedQueryWait 30s\n"
                      "MatrixFedQueryTimeout 60s\n")

    def auto():
        return dict(line.split(": ", 1)
                    for line in status_page(h, "/server-status?auto").splitlines()
                    if line.startswith("MatrixQuery"))

    def gate(busy, waiting):
        return {"MatrixQuerySlots": "2", "MatrixQueryBusy": str(busy),
                "MatrixQueryWaiting": str(waiting)}

    held = 6                                    # of 8 workers: the page gets one
    try:
        eids = room.order[-held:]
        assert event_get(h, room, eids[0]).status == 200
        assert auto() == gate(0, 0)
        with concurrent.futures.ThreadPoolExecutor(held) as pool:
            with EventsLocked(postgres):
                futures = [pool.submit(event_get, h, room, eid) for eid in eids]
                assert settle(postgres, 2) == 2
                deadline = time.time() + 10
                while auto() != gate(2, held - 2) and time.time() < deadline:
                    time.sleep(0.05)
                assert auto() == gate(2, held - 2)
                assert not any(f.done() for f in futures)
            answers = [f.result(timeout=30) for f in futures]
        assert [r.status for r in answers] == [200] * held
        assert auto() == gate(0, 0)
        html = status_page(h, "/server-status")
        assert ("MatrixFedQueryConcurrency 2: 0 statement(s) in the database, "
                "0 request(s) waiting for a turn (all child processes)") in html
    finally:
        h.stop()


def test_041_no_gate_on_server_status(httpd_factory, postgres, signing_key, backend):
    """Without MatrixFedQueryConcurrency the page has nothing of the module."""
    h = status_server(httpd_factory, "httpd-nogate-status", postgres, signing_key, backend, "")
    try:
        body = status_page(h, "/server-status?auto")
        assert "ServerVersion" in body, body
        assert "MatrixQuery" not in body
    finally:
        h.stop()


def test_041_gate_semaphore_lifecycle(httpd_factory, postgres, signing_key, backend, room,
                                      build_env):
    """One semaphore for the server: made when it starts (not for the first,
    trial pass over the configuration), owned by the user and group the
    children run as, mode 0600; kept over a graceful restart that keeps the
    number of slots (the old children finish in the same queue), replaced
    by one that changes it, removed by one that turns the limit off, and by
    stopping."""
    from conftest import site_config
    if os.geteuid() == 0:
        pw = pwd.getpwnam("www-data")
        owner = (pw.pw_uid, pw.pw_gid)
    else:
        owner = (os.geteuid(), os.getegid())

    def config(line):
        return site_config(postgres, signing_key, backend, extra=line + "\nMatrixFedQueryWait 5s\n")

    def graceful(line):
        h.render(config(line))
        r = subprocess.run([build_env.httpd, "-d", h.dir, "-f", h.conf, "-k", "graceful"],
                           env=build_env.sanitizer_env(h.dir), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
        assert r.returncode == 0, r.stdout
        time.sleep(1.5)
        deadline = time.time() + 15
        while event_get(h, room, room.order[-1]).status != 200 and time.time() < deadline:
            time.sleep(0.1)
        return gate_log(h)

    h = httpd_factory.new("httpd-gate-ipc")
    h.start(config("MatrixFedQueryConcurrency 3"))
    try:
        log = gate_log(h)
        assert [(n, how) for n, _, how in log] == [(3, "new")], log
        first = log[0][1]
        assert semaphores().get(first) == (owner[0], 0o600)
        assert semaphore_group(first) == owner[1]
        assert event_get(h, room, room.order[-1]).status == 200

        log = graceful("MatrixFedQueryConcurrency 3")
        assert log[1:] == [(3, first, "kept")], log
        assert first in semaphores()

        log = graceful("MatrixFedQueryConcurrency 5")
        assert [(n, how) for n, _, how in log[2:]] == [(5, "new")], log
        second = log[2][1]
        assert second != first
        held = semaphores()
        assert first not in held and held.get(second) == (owner[0], 0o600)

        log = graceful("")
        assert len(log) == 3, log              # no gate, no semaphore
        assert second not in semaphores()
        for eid in room.order[-3:]:
            assert event_get(h, room, eid).status == 200

        log = graceful("MatrixFedQueryConcurrency 2")
        assert [(n, how) for n, _, how in log[3:]] == [(2, "new")], log
        third = log[3][1]
        assert third in semaphores()
    finally:
        h.stop()
    assert third not in semaphores()


def test_041_gate_removed_by_hand(httpd_factory, postgres, signing_key, backend, room):
    """A semaphore removed from outside (ipcrm): requests are still served,
    unqueued, and each child says so once, at warn."""
    from conftest import site_config
    h = httpd_factory.new("httpd-gate-ipcrm")
    h.start(site_config(postgres, signing_key, backend,
                        extra=ONE_CHILD + "MatrixFedQueryConcurrency 2\n"))
    try:
        assert event_get(h, room, room.order[-1]).status == 200
        (_, semid, _), = gate_log(h)
        subprocess.run(["ipcrm", "-s", str(semid)], check=True)
        for eid in room.order[-4:]:
            assert event_get(h, room, eid).status == 200
        lines = [l for l in h.log_tail(400).splitlines() if "MXF25077" in l]
        warned = [l for l in lines if ":warn]" in l]
        assert len(warned) == 1, lines
        assert f"semaphore of MatrixFedQueryConcurrency ({semid}) was removed" in warned[0]
        assert "until the next restart" in warned[0]
        assert len(lines) == 4, lines          # the others at debug
    finally:
        h.stop()


def test_041_bad_directives(httpd_factory, postgres, signing_key, backend):
    from conftest import site_config
    cases = [
        ("MatrixFedQueryConcurrency 0", "whole number from 1 to 10000"),
        ("MatrixFedQueryConcurrency many", "whole number from 1 to 10000"),
        ("MatrixFedQueryConcurrency +4", "off or a whole number from 1 to 10000, not '+4'"),
        ('MatrixFedMaxBodySize " 2048"', "MatrixFedMaxBodySize must be a whole number"),
        ("MatrixFedQueryWait forever", "expected a duration from 0 to 300s"),
        ("MatrixFedQueryWait 301", "expected a duration from 0 to 300s"),
        ("<VirtualHost 127.0.0.1:1>\nMatrixFedQueryConcurrency 4\n</VirtualHost>",
         "cannot occur within"),
    ]
    for i, (line, expect) in enumerate(cases):
        httpd_factory.assert_start_fails(
            f"httpd-badgate-{i}", site_config(postgres, signing_key, backend, extra=line), expect)
