# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The room's current state when a gap is behind some forward extremities
(README: "from the last events whose state is known (those with no accepted
child of known state: the other forward extremities, and the last known
events of each branch that runs into a gap)").

Room (v10): base (A, B of hs2 joined), C (hs3) joins; branch 1: A kicks C
(K), then M1 (left out of the import) and M2 (prev [K, M1], state unknown);
branch 2, in one case only: N (B's message, prev C's join), state known.

Whether or not N is there, the last known state includes K: hs3 is not a
joined server, as in the whole room."""
import pytest

from mxftest.vbuilder import VRoom
from test_021_import import new_db
from test_064_import_parts import import_path
from test_075_import_regiven_stored import pdu_line
from test_104_import_parts_redaction_state import A, B2, KEYS, base
from test_113_import_arrival_rows import write
from test_114_import_gap_on_every_branch import C, servers


def room(with_n):
    r = VRoom("10", KEYS, f"!lastknown{int(with_n)}:hs1.example")
    i = base(r, B2)
    i["jc"] = r.join(C, prev=[i["jb"]])
    i["k"] = r.member(A, C, "leave", prev=[i["jc"]])
    i["m1"] = r.msg(A, "M1", prev=[i["k"]])
    i["m2"] = r.msg(B2, "M2", prev=[i["k"], i["m1"]])
    if with_n:
        i["n"] = r.msg(B2, "N", prev=[i["jc"]])
    return r, i


@pytest.mark.parametrize("with_n", [False, True], ids=["all-behind-gap", "one-branch-known"])
def test_118_001_kick_before_gap_kept(with_n, build_env, workdir, postgres, tmp_path):
    r, i = room(with_n)
    keyfile = str(tmp_path / "keys.json")
    KEYS.write_responses(keyfile)
    whole = new_db(postgres, build_env)
    import_path(build_env, workdir, postgres, whole,
                write(tmp_path, "whole.jsonl", [pdu_line(ev) for _, ev in r.events]), keyfile)
    assert "hs3.example" not in servers(postgres, whole), "setup: the whole room kicked C"
    db = new_db(postgres, build_env)
    out = import_path(build_env, workdir, postgres, db,
                      write(tmp_path, "gap.jsonl",
                            [pdu_line(ev) for e, ev in r.events if e != i["m1"]]),
                      keyfile).stdout
    assert "forward extremities behind missing" in out, out
    assert "hs3.example" not in servers(postgres, db), \
        "C's kick (state known, before the gap) is forgotten: hs3 is served as joined"
