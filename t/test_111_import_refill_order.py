# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Stored events a later import takes up again (their state was unknown)
are ordered among themselves by their place in the input of the import that
stored them (mxf_event_arrival, sql/021), as a one-file import of the parts
reads them; the event numbers, which follow that import's topological order,
would give another order.

Room: base (create, A joins, P1, public join rules, B joins). Z (A's
message, prev [JB]); P2 (power levels, invite 100, prev [JB]); R (B
redacts P2, prev [Z, P2]); INV (B, level 0, invites D, prev [P2], cites
P2).

One file [base, R, INV, Z, P2]: Z, P2, then R and INV are ready at once:
R first (input order), it redacts P2 (accepted; B is of P2's sender's
server), INV reads P2 redacted (no invite level) and is accepted.

Split: part 1 = base, R, INV, Z (P2 missing). There INV is ready before Z
and R waits for Z, so INV gets a lower event number than R. Part 2 = P2:
R and INV are refilled and ready at once; by their input lines R comes
first, as in the one-file import (by event number INV would come first,
read P2 whole, with invite 100, and be rejected).
"""
import pytest

from mxftest.vbuilder import VRoom
from test_064_import_parts import semantic
from test_075_import_regiven_stored import assert_same_rejected, redacted, split_verdicts
from test_104_import_parts_redaction_state import A, B1, D, KEYS, base, line


def case(version):
    r = VRoom(version, KEYS, f"!refillorder{version}:hs1.example")
    i = base(r, B1)
    z = r.msg(A, "Z", prev=[i["jb"]])
    p2 = r.pl(A, {"users": {A: 100}, "invite": 100}, prev=[i["jb"]],
              auth=[i["cr"], i["p1"], i["ja"]])
    red = r.redaction(B1, p2, prev=[z, p2], auth=[i["cr"], i["p1"], i["jb"]])
    inv = r.member(B1, D, "invite", prev=[p2], auth=[i["cr"], p2, i["jb"], i["jr"]])
    ev = r.by_id
    basel = [line(ev[e]) for e, _ in r.events if e not in (z, p2, red, inv)]
    part1 = basel + [line(ev[red]), line(ev[inv]), line(ev[z])]
    part2 = [line(ev[p2])]
    return {"inv": inv, "p2": p2, "red": red, "parts": [part1, part2],
            "one_go": [part1 + part2], "room": r,
            "part1_line": {red: len(basel) + 1, inv: len(basel) + 2}}


@pytest.mark.parametrize("version", ["1", "3", "10"])
def test_111_001_refilled_ties_follow_input_order(version, build_env, workdir, postgres,
                                                  tmp_path):
    c = case(version)
    want, got, want_rej, got_rej = split_verdicts(KEYS, c, build_env, workdir, postgres,
                                                  tmp_path)
    assert c["p2"] in redacted(postgres, want), "setup: one file redacts P2"
    assert c["inv"] not in want_rej, f"setup: one file accepts INV: {want_rej}"
    assert_same_rejected(version, got_rej, want_rej)
    assert semantic(postgres, got) == semantic(postgres, want)
