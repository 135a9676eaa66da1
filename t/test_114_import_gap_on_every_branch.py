# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""A gap in the imported history behind every forward extremity (README
"State and authorization": the room's current state is resolved from the
forward extremities whose state is known, or, when the gap is behind all of
them, from the last events whose state is known): the room is served with
its last known state, not refused as a room with no known members.

Room: create, A joins, power levels, public join rules, B (hs2) joins; M1
(A), M2 (B), C (hs3) joins, M3 (C), one after another. The import leaves M1
out: M2, C's join and M3 have no known state, so the last known state is
the one after B's join (hs1 and hs2 joined, not hs3). The import that brings
M1 completes it: hs3 is joined."""
import pytest

from mxftest.matrix import q
from mxftest.vbuilder import VRoom
from test_021_import import new_db
from test_064_import_parts import Signer, cli_sanitizer_reports, import_path, serve
from test_075_import_regiven_stored import current_state, pdu_line
from test_104_import_parts_redaction_state import A, B2, KEYS, base
from test_113_import_arrival_rows import write

C = "@carol:hs3.example"


def room(version):
    r = VRoom(version, KEYS, f"!gapall{version}:hs1.example")
    i = base(r, B2)
    i["m1"] = r.msg(A, "M1", prev=[i["jb"]])
    i["m2"] = r.msg(B2, "M2", prev=[i["m1"]])
    i["jc"] = r.join(C, prev=[i["m2"]])
    i["m3"] = r.msg(C, "M3", prev=[i["jc"]])
    return r, i


def servers(postgres, db):
    return set(postgres.psql(db, "SELECT server_name FROM mxf_room_servers").split())


@pytest.mark.parametrize("version", ["1", "10"])
def test_114_001_last_known_state(version, build_env, workdir, postgres, tmp_path):
    r, i = room(version)
    keyfile = str(tmp_path / "keys.json")
    KEYS.write_responses(keyfile)
    db = new_db(postgres, build_env)
    lines = [pdu_line(r.by_id[e]) for e, _ in r.events if e != i["m1"]]
    out = import_path(build_env, workdir, postgres, db, write(tmp_path, "gap.jsonl", lines),
                      keyfile, check=True).stdout
    assert "current state: 1 room(s) with forward extremities behind missing" in out, out
    state = current_state(postgres, db)
    assert f"m.room.member|{B2}={i['jb']}" in state, state
    assert f"m.room.member|{C}" not in state, state
    assert servers(postgres, db) == {"hs1.example", "hs2.example"}

    out = import_path(build_env, workdir, postgres, db,
                      write(tmp_path, "m1.jsonl", [pdu_line(r.by_id[i["m1"]])]), keyfile,
                      check=True).stdout
    assert "forward extremities behind missing" not in out, out
    assert f"m.room.member|{C}={i['jc']}" in current_state(postgres, db)
    assert servers(postgres, db) == {"hs1.example", "hs2.example", "hs3.example"}
    assert not cli_sanitizer_reports(workdir)


def test_114_002_served_to_servers_of_last_known_state(build_env, workdir, postgres, tmp_path,
                                                       httpd_factory, signing_key, backend):
    r, i = room("10")
    keyfile = str(tmp_path / "keys.json")
    KEYS.write_responses(keyfile)
    db = new_db(postgres, build_env)
    lines = [pdu_line(r.by_id[e]) for e, _ in r.events if e != i["m1"]]
    import_path(build_env, workdir, postgres, db, write(tmp_path, "gap.jsonl", lines), keyfile,
                check=True)
    h = serve(httpd_factory, postgres, signing_key, backend, db, "gap-114")
    try:
        path = f"/_matrix/federation/v1/event/{q(i['m3'])}"
        got = Signer("hs2.example", KEYS.get("hs2.example")).request(h, "GET", path)
        assert got.status == 200, got
        assert got.json["pdus"][0]["content"]["body"] == "M3"
        # hs3's join is behind the gap: not a member the module knows of.
        got = Signer("hs3.example", KEYS.get("hs3.example")).request(h, "GET", path)
        assert got.status == 403 and got.json["errcode"] == "M_FORBIDDEN", got
    finally:
        h.stop()
