# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""`matrix-fed import` killed with SIGKILL at random moments
(README: "the import is one transaction, so an interrupted import leaves the
database as it was"), into a database that already holds part of the room
(so the killed import would refill stored events' state): after each kill
the database is exactly as before (or, if the kill came after COMMIT, as
after), and the import run again ends with the rows a clean import gives."""
import os
import random
import subprocess
import time

import pytest

from mxftest.matrix import Room
from test_020_genroom import gen
from test_021_import import new_db, read_lines, snapshot, write_lines
from test_064_import_parts import cli_sanitizer_reports, import_path
from test_065_import_concurrency import start_import

EVENTS = 2400


def rows(postgres, db):
    snap = snapshot(postgres, db)
    del snap["mxf_server_keys"]
    return snap


def wait_backends_gone(postgres, db, timeout=60):
    deadline = time.time() + timeout
    while postgres.psql(db, "SELECT count(*) FROM pg_stat_activity WHERE datname ="
                            " current_database() AND pid <> pg_backend_pid()") != "0":
        assert time.time() < deadline, "the killed import's session never ended"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def room(build_env, tmp_path_factory):
    d = gen(build_env, tmp_path_factory.mktemp("kill") / "room", "10", seed=903,
            events=EVENTS, branchiness=0.3, extra=["--conflicts", "0.3"])
    r = Room(str(d))
    r.keys = os.path.join(str(d), "keys", "all.json")
    r.path = os.path.join(str(d), "room.jsonl")
    return r


def test_066_001_killed_at_random_moments(room, build_env, workdir, postgres, tmp_path):
    lines = read_lines(room.path)
    # The database holds the create event and the later part; the import
    # brings the rest (completing the state of the stored events).
    later = write_lines(tmp_path / "later.jsonl", [lines[0]] + lines[1600:])
    rest = write_lines(tmp_path / "rest.jsonl", lines[1:1600])
    ref = new_db(postgres, build_env)
    import_path(build_env, workdir, postgres, ref, later, room.keys)
    import_path(build_env, workdir, postgres, ref, rest, room.keys)
    want = rows(postgres, ref)
    # How long the import takes here.
    probe = new_db(postgres, build_env)
    import_path(build_env, workdir, postgres, probe, later, room.keys)
    t0 = time.time()
    import_path(build_env, workdir, postgres, probe, rest, room.keys,
                extra=["--batch-events", "100"])
    took = time.time() - t0

    db = new_db(postgres, build_env)
    import_path(build_env, workdir, postgres, db, later, room.keys)
    before = rows(postgres, db)
    rnd = random.Random(903)
    kills = []
    for attempt in range(7):
        p = start_import(build_env, workdir, postgres, db, rest, room.keys,
                         extra=["--batch-events", "100"])
        delay = rnd.uniform(0.02, took * 1.05)
        time.sleep(delay)
        p.kill()
        p.communicate()
        wait_backends_gone(postgres, db)
        now = rows(postgres, db)
        kills.append((round(delay, 2), p.returncode))
        if now == want:
            break       # killed after its COMMIT
        assert now == before, f"killed after {delay:.2f} s of {took:.2f}: rows changed"
    print(f"import takes {took:.2f} s; kills (delay, status): {kills}")
    # And again, to the end.
    import_path(build_env, workdir, postgres, db, rest, room.keys)
    assert rows(postgres, db) == want, kills
    assert not cli_sanitizer_reports(workdir)


def test_066_002_kill_while_another_import_waits(room, build_env, workdir, postgres):
    """One import is killed while a second waits for the import lock: the
    second goes on and completes."""
    db = new_db(postgres, build_env)
    ref = new_db(postgres, build_env)
    import_path(build_env, workdir, postgres, ref, room.path, room.keys)
    a = start_import(build_env, workdir, postgres, db, room.path, room.keys)
    time.sleep(0.3)
    b = start_import(build_env, workdir, postgres, db, room.path, room.keys)
    time.sleep(0.3)
    a.kill()
    a.communicate()
    out, err = b.communicate(timeout=300)
    assert b.returncode == 0, err
    assert rows(postgres, db) == rows(postgres, ref)
