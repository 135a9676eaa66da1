# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""A later batch with something wrong in its middle, imported
into a database that already holds the earlier batches. README: "Every bad
line is reported with its number and the import commits nothing"; a PDU whose
key is unknown is stored with signatures_verified false (refused with
--require-signatures); an event given more than once with other bytes is kept
once, the copy whose content hash matches."""
import json
import os

import pytest
import signedjson.key

from mxftest.matrix import Room
from test_020_genroom import event_id, gen
from test_021_import import (canonical, new_db, query_json, read_lines, resign, server_keys,
                             snapshot, write_lines)
from test_064_import_parts import cli_sanitizer_reports, import_path, semantic


def rows(postgres, db):
    snap = snapshot(postgres, db)
    del snap["mxf_server_keys"]
    return snap




@pytest.fixture(scope="module")
def room(build_env, tmp_path_factory):
    d = gen(build_env, tmp_path_factory.mktemp("bad") / "room", "10", seed=904,
            events=300, branchiness=0.2)
    r = Room(str(d))
    r.keys = os.path.join(str(d), "keys", "all.json")
    r.path = os.path.join(str(d), "room.jsonl")
    r.lines = read_lines(r.path)
    return r


@pytest.fixture(scope="module")
def ref(room, build_env, workdir, postgres):
    db = new_db(postgres, build_env)
    import_path(build_env, workdir, postgres, db, room.path, room.keys)
    return semantic(postgres, db)


def first_message(room, start):
    return next(i for i in range(start, len(room.lines))
                if json.loads(room.lines[i])["type"] == "m.room.message")


def bad_second_batch(room, build_env, workdir, postgres, tmp_path, bad_line, extra=()):
    """Batch 1 (lines 0-149) imported; batch 2 (150-) with @bad_line put in
    its middle. Returns (db, result, rows after batch 1, batch 2 path, line no.)."""
    db = new_db(postgres, build_env)
    first = write_lines(tmp_path / "b1.jsonl", room.lines[:150])
    import_path(build_env, workdir, postgres, db, first, room.keys)
    after1 = rows(postgres, db)
    rest = list(room.lines[150:])
    mid = len(rest) // 2
    rest.insert(mid, bad_line)
    path = write_lines(tmp_path / "b2.jsonl", rest)
    r = import_path(build_env, workdir, postgres, db, path, room.keys, extra=extra, check=False)
    return db, r, after1, path, mid + 1


@pytest.mark.parametrize("kind", ["truncated", "not_json", "bad_signature", "wrong_room"])
def test_067_001_bad_line_in_a_later_batch(kind, room, ref, build_env, workdir, postgres,
                                           tmp_path):
    k = first_message(room, 200)
    ev = json.loads(room.lines[k])
    if kind == "truncated":
        bad = room.lines[k][:len(room.lines[k]) // 2]
    elif kind == "not_json":
        bad = b"this is not JSON"
    elif kind == "bad_signature":
        # A field the signature covers changed, the signature kept: the
        # sender's key is known and the signature does not verify.
        bad = canonical(dict(ev, origin_server_ts=ev["origin_server_ts"] + 1))
    else:
        bad = canonical(dict(ev, room_id="!other:hs1.example",
                             content={"body": "x", "msgtype": "m.text"}))
    db, r, after1, path, lineno = bad_second_batch(room, build_env, workdir, postgres,
                                                   tmp_path, bad)
    assert r.returncode == 1, (kind, r.stdout, r.stderr)
    assert f"{path}:{lineno}:" in r.stderr, (kind, r.stderr)
    assert "the database is unchanged" in r.stderr
    assert rows(postgres, db) == after1, "earlier batches' rows changed"
    # The batch without the bad line completes the room as one import does.
    fixed = write_lines(tmp_path / "b2-fixed.jsonl", room.lines[150:])
    import_path(build_env, workdir, postgres, db, fixed, room.keys)
    assert semantic(postgres, db) == ref
    assert not cli_sanitizer_reports(workdir)


def test_067_002_unknown_server_key_in_a_later_batch(room, build_env, workdir, postgres,
                                                     tmp_path):
    """A PDU whose server's key is known nowhere: with --require-signatures
    the batch is refused (status 1, line named, nothing written); without, it
    is kept with signatures_verified false and the summary counts it."""
    k = first_message(room, 200)
    ev = json.loads(room.lines[k])
    stranger = signedjson.key.generate_signing_key("x1")
    forged = dict(ev, sender="@mallory:stranger.example",
                  content={"body": "hello", "msgtype": "m.text"})
    bad = canonical(resign(forged, "10", {"stranger.example": stranger}))
    db, r, after1, path, lineno = bad_second_batch(room, build_env, workdir, postgres,
                                                   tmp_path, bad,
                                                   extra=["--require-signatures"])
    assert r.returncode == 1, r.stderr
    assert f"{path}:{lineno}:" in r.stderr, r.stderr
    assert rows(postgres, db) == after1
    out = import_path(build_env, workdir, postgres, db, path, room.keys).stdout
    assert "1 unverifiable" in out, out
    [row] = query_json(postgres, db, "SELECT signatures_verified, rejected_reason FROM mxf_events"
                                     f" WHERE event_id = '{event_id(json.loads(bad), '10')}'")
    assert row["signatures_verified"] is False
    # A user of a server with no member in the room cannot send a message.
    assert row["rejected_reason"] is not None
