# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The last known state (every extremity behind a gap) with a rejected event
at the frontier: C (hs3) joins; K kicks C (by B, level 0: rejected; or by A:
accepted), prev C's join; M2 (prev [C's join, M1]) is of unknown state, M1
left out. A rejected K is never a last event of known state (hs3 stays
joined); an accepted one is (hs3 is not)."""
import pytest

from mxftest.vbuilder import VRoom
from test_021_import import new_db
from test_064_import_parts import import_path
from test_075_import_regiven_stored import pdu_line, rejected
from test_104_import_parts_redaction_state import A, B2, KEYS, base
from test_113_import_arrival_rows import write
from test_114_import_gap_on_every_branch import C, servers


@pytest.mark.parametrize("kicker", ["B", "A"])
def test_122_001_rejected_frontier(kicker, build_env, workdir, postgres, tmp_path):
    r = VRoom("10", KEYS, f"!rejfront{kicker}:hs1.example")
    i = base(r, B2)
    jc = r.join(C, prev=[i["jb"]])
    k = r.member(B2 if kicker == "B" else A, C, "leave", prev=[jc])
    m1 = r.msg(A, "M1", prev=[jc])
    r.msg(A, "M2", prev=[jc, m1])
    keyfile = str(tmp_path / "keys.json")
    KEYS.write_responses(keyfile)
    db = new_db(postgres, build_env)
    out = import_path(build_env, workdir, postgres, db,
                      write(tmp_path, "gap.jsonl", [pdu_line(ev) for e, ev in r.events if e != m1]),
                      keyfile).stdout
    assert "forward extremities behind missing" in out, out
    assert (k in rejected(postgres, db)) == (kicker == "B")
    assert ("hs3.example" in servers(postgres, db)) == (kicker == "B")
