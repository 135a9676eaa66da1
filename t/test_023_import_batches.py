# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""matrix-fed import writes its rows in rounds (--batch-events), each
round sent by a writer thread while the next one is computed: tiny rounds
(many of them in flight one after the other, with state resolution reading
the database between them) give exactly the rows one round gives - for a
whole room, and for a room imported in two parts, the later part first
(events whose state the second part completes)."""
import os
import subprocess

import pytest

from test_021_import import (cli, import_ok, new_db, read_lines, snapshot, write_lines)
from test_022_stateres_import import gen_conflicts

EVENTS = 300


def rows(postgres, db):
    """Digest of every DAG table (the server key cache records fetch times)."""
    snap = snapshot(postgres, db)
    del snap["mxf_server_keys"]
    return snap


@pytest.fixture(scope="module")
def room(build_env, tmp_path_factory):
    d = gen_conflicts(build_env, tmp_path_factory.mktemp("batches") / "room", "10",
                      seed=23, events=EVENTS)
    return {"room": os.path.join(d, "room.jsonl"), "keys": os.path.join(d, "keys", "all.json")}


def import_with(build_env, postgres, room, batch, paths=None):
    db = new_db(postgres, build_env)
    outs = []
    for path in paths or [room["room"]]:
        extra = ["--batch-events", str(batch)] if batch else []
        outs.append(import_ok(build_env, postgres, db, path, room["keys"], extra))
    return db, outs


def test_023_001_small_rounds_same_rows(room, build_env, postgres):
    """Rounds of 1, 7 and 64 events: the same rows as the default round."""
    want_db, [want_out] = import_with(build_env, postgres, room, None)
    assert f"imported {EVENTS} new events" in want_out
    want = rows(postgres, want_db)
    assert want["mxf_events"][0] == EVENTS
    assert want["mxf_state_groups"][0] > 0
    for batch in (1, 7, 64):
        db, [out] = import_with(build_env, postgres, room, batch)
        assert f"imported {EVENTS} new events" in out
        assert rows(postgres, db) == want, batch


def test_023_002_two_parts_small_rounds(room, build_env, postgres, tmp_path):
    """The second half first, then the first half (completing the state of
    the second), in rounds of 5: the same rows as in default rounds."""
    lines = read_lines(room["room"])
    half = len(lines) // 2
    parts = [write_lines(tmp_path / "second.jsonl", [lines[0]] + lines[half:]),
             write_lines(tmp_path / "first.jsonl", lines[:half])]
    want_db, _ = import_with(build_env, postgres, room, None, parts)
    got_db, outs = import_with(build_env, postgres, room, 5, parts)
    refilled = int(outs[1].split("state now known for ")[1].split(" ")[0])
    assert refilled >= 10, outs[1]
    assert rows(postgres, got_db) == rows(postgres, want_db)


def test_023_003_batch_events_range(room, build_env, postgres):
    """--batch-events takes 1 to 1000000."""
    db = new_db(postgres, build_env)
    for bad in ("0", "-3", "x", "1000001"):
        r = cli(build_env, "import", "--db", postgres.conninfo(db), "--quiet",
                "--batch-events", bad, room["room"])
        assert r.returncode != 0, bad
        assert b"--batch-events takes 1 to 1000000" in r.stderr, bad


def test_023_010_round_over_2_gib(build_env, postgres):
    """A round of 2 GiB and more (a large --batch-events with big PDUs: each
    event row holds the PDU and its redacted copy) goes to PostgreSQL in
    pieces: PQputCopyData() takes an int length, and given whole such a
    round was sent as nothing, reported as written, and its events lost
    (the bulk tables have no foreign keys to catch it). The driver
    (t/tools/mxf_copy_len) hands mxf_pg_copy() 2 GiB + 1 MiB: 1000 rows, then
    NUL bytes, which PostgreSQL refuses, so the copy must fail."""
    tool = os.path.join(build_env.builddir, "t", "tools", "mxf_copy_len")
    assert os.access(tool, os.X_OK), f"{tool} is not built"
    r = subprocess.run([tool, postgres.conninfo()], capture_output=True, text=True,
                       timeout=300, env=build_env.sanitizer_env("/tmp"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "mxf_pg_copy: failure" in r.stdout, r.stdout
