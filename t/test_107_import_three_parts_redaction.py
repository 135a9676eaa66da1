# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""A redaction imported before its target, the target's parent in
a third part. As test_089 (R by A, level 100, redacts P2 =
power levels with invite 100; INV by B, level 0, cites P2: accepted when P2 is
read redacted, room versions 1-10), but P2 follows X, and X comes in its own
part: P2 and INV are of unknown state until X arrives."""
import itertools

import pytest

from mxftest.vbuilder import Keys, VRoom
from test_064_import_parts import semantic
from test_075_import_regiven_stored import (current_state, redacted, rejected, one_go_and_split,
                                            pdu_line as line)

A = "@admin:hs1.example"
B = "@bob:hs2.example"
D = "@dave:hs4.example"
KEYS = Keys()


@pytest.mark.parametrize("version", ["1", "3", "10"])
@pytest.mark.parametrize("order", list(itertools.permutations([1, 2, 3])))
def test_107_001_redaction_target_parent_third_part(version, order, build_env, workdir,
                                                    postgres, tmp_path):
    r = VRoom(version, KEYS, f"!parts3p{version}:hs1.example")
    cr = r.create(A)
    ja = r.join(A)
    p1 = r.pl(A, {"users": {A: 100}})
    jr = r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    fork = r.join(B)
    x = r.msg(A, "X", prev=[fork], auth=[cr, p1, ja])
    p2 = r.pl(A, {"users": {A: 100}, "invite": 100}, prev=[x], auth=[cr, p1, ja])
    inv = r.member(B, D, "invite", prev=[p2], auth=[cr, p2, fork, jr])
    red = r.redaction(A, p2, prev=[fork], auth=[cr, p1, ja])
    ev = r.by_id
    base = [line(ev[e]) for e, _ in r.events if e not in (x, p2, inv, red)]
    parts = {1: [line(ev[red])], 2: [line(ev[p2]), line(ev[inv])], 3: [line(ev[x])]}
    split = [base + parts[order[0]], parts[order[1]], parts[order[2]]]
    want, got = one_go_and_split(KEYS, [sum(split, [])], split, build_env, workdir, postgres,
                                 tmp_path)
    assert rejected(postgres, got) == rejected(postgres, want)
    assert redacted(postgres, got) == redacted(postgres, want)
    assert current_state(postgres, got) == current_state(postgres, want)
    assert semantic(postgres, got) == semantic(postgres, want)
