# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""A stored redaction of unknown state that its first import
rejected (against its auth events: one of them was rejected) and that a
later import accepts once its history is complete redacts its target.
add_event_row() writes an mxf_redactions row only for an accepted
redaction, and update_refilled() only updated mxf_redactions
(allowed_by_power), so a refilled redaction accepted now had no row, and
apply_redactions() / prune_by_stored_redactions(), which start from
mxf_redactions, never saw it; update_refilled() now adds the row.

Room (public join rules): base (create, A joins, P1, B joins), P2 (power
levels, invite 100, prev [JB]); M (A's message, prev [P2]); R0 (B redacts
P2, prev [M]); INV (B, level 0, invites D, prev [R0], cites P2); JD (D
joins, prev [INV], cites INV as D's membership); TD (D's message, prev
[JD]); RD (D redacts TD, prev [TD]).

One file [base, P2, R0, INV, JD, TD, RD, M]: M, R0 (accepted; B is of
P2's sender's server: P2 read redacted, no invite level), INV accepted,
JD, TD, RD accepted: TD redacted by RD.

Split: part 1 = all but M: R0..RD are of unknown state; INV is rejected
against its auth events (P2 read whole: R0's state is unknown), so JD, TD
and RD are rejected ("auth event ... was rejected"). Part 2 = M: all are
refilled and accepted now (same as one file), and TD must be redacted (it
stayed whole: RD had no mxf_redactions row).
"""
import pytest

from mxftest.vbuilder import VRoom
from test_064_import_parts import semantic
from test_075_import_regiven_stored import assert_same_rejected, redacted, split_verdicts
from test_104_import_parts_redaction_state import A, B1, D, KEYS, base, line


def case(version):
    r = VRoom(version, KEYS, f"!refillrejacc{version}:hs1.example")
    i = base(r, B1)
    p2 = r.pl(A, {"users": {A: 100}, "invite": 100}, prev=[i["jb"]],
              auth=[i["cr"], i["p1"], i["ja"]])
    m = r.msg(A, "M", prev=[p2], auth=[i["cr"], p2, i["ja"]])
    r0 = r.redaction(B1, p2, prev=[m], auth=[i["cr"], p2, i["jb"]])
    inv = r.member(B1, D, "invite", prev=[r0], auth=[i["cr"], p2, i["jb"], i["jr"]])
    jd = r.join(D, prev=[inv], auth=[i["cr"], p2, i["jr"], inv])
    td = r.msg(D, "TD", prev=[jd], auth=[i["cr"], p2, jd])
    rd = r.redaction(D, td, prev=[td], auth=[i["cr"], p2, jd])
    ev = r.by_id
    part1 = [line(ev[e]) for e, _ in r.events if e != m]
    part2 = [line(ev[m])]
    return {"td": td, "rd": rd, "inv": inv, "parts": [part1, part2],
            "one_go": [part1 + part2]}


@pytest.mark.parametrize("version", ["3", "10"])
def test_112_001_refilled_redaction_accepted_late_applies(version, build_env, workdir,
                                                          postgres, tmp_path):
    c = case(version)
    want, got, want_rej, got_rej = split_verdicts(KEYS, c, build_env, workdir, postgres,
                                                  tmp_path)
    assert not want_rej, f"setup: one file accepts all: {want_rej}"
    assert c["td"] in redacted(postgres, want), "setup: one file redacts TD"
    assert_same_rejected(version, got_rej, want_rej)
    assert redacted(postgres, got) == redacted(postgres, want), \
        f"v{version}: split leaves TD whole (RD accepted late, no mxf_redactions row)"
    assert semantic(postgres, got) == semantic(postgres, want)
