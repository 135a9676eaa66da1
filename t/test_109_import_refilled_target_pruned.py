# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""A refilled target must not be read redacted by a refilled redaction
before that redaction is judged again (load_refills() set e->pruned for
every stored event whose redacted_because is an event ID; now only for a
redaction whose state is known).

Room: base (create, A joins, P1, public join rules, B joins). On one
branch G (A's message, prev [JB]) then P2 (power levels, invite 100, prev
[G]) then INV (B, level 0, invites D; cites P2). On another branch BAN (A
bans B, prev [JB]) then R (B redacts P2, prev [BAN], auth events cite B's
join).

One file [base, P2, R, INV, G, BAN]: R is rejected (B is banned in the
state before it), P2 is never read redacted, INV is rejected (invite 100).

Split: part 1 = base, P2, R, INV (G and BAN missing: P2, R and INV are of
unknown state; R passes its auth events and redacts P2 at once - README:
"A redaction among them, accepted by its auth events, redacts its target
when it is stored"). Part 2 = G, BAN: P2, R and INV are refilled. R is
rejected now and P2 is served whole again (unapply_refilled_redactions),
and INV must be checked with P2 read whole and rejected, as in one file (it
was accepted: load_refills() marked P2 pruned from the start, because its
stored redacted_because names R). README: "a redaction counts once its own
state is known".
"""
import pytest

from mxftest.vbuilder import VRoom
from test_064_import_parts import semantic
from test_075_import_regiven_stored import (assert_same_rejected, current_state, redacted,
                                            split_verdicts)
from test_104_import_parts_redaction_state import A, B1, D, KEYS, base, line


def case(version):
    r = VRoom(version, KEYS, f"!refillrefprune{version}:hs1.example")
    i = base(r, B1)
    g = r.msg(A, "G", prev=[i["jb"]])
    p2 = r.pl(A, {"users": {A: 100}, "invite": 100}, prev=[g],
              auth=[i["cr"], i["p1"], i["ja"]])
    inv = r.member(B1, D, "invite", prev=[p2], auth=[i["cr"], p2, i["jb"], i["jr"]],
                   rejected=True)
    ban = r.member(A, B1, "ban", prev=[i["jb"]], auth=[i["cr"], i["p1"], i["ja"], i["jb"]])
    red = r.redaction(B1, p2, prev=[ban], auth=[i["cr"], i["p1"], i["jb"]], rejected=True)
    ev = r.by_id
    basel = [line(ev[e]) for e, _ in r.events if e not in (g, p2, inv, ban, red)]
    part1 = basel + [line(ev[p2]), line(ev[red]), line(ev[inv])]
    part2 = [line(ev[g]), line(ev[ban])]
    return {"inv": inv, "p2": p2, "red": red, "parts": [part1, part2],
            "one_go": [part1 + part2]}


@pytest.mark.parametrize("version", ["1", "3", "10"])
def test_109_001_refilled_target_of_refilled_rejected_redaction(version, build_env, workdir,
                                                                 postgres, tmp_path):
    c = case(version)
    want, got, want_rej, got_rej = split_verdicts(KEYS, c, build_env, workdir, postgres,
                                                  tmp_path)
    assert c["red"] in want_rej and c["inv"] in want_rej, f"setup: {want_rej}"
    assert c["p2"] not in redacted(postgres, want), "setup: one file leaves P2 whole"
    assert c["p2"] not in redacted(postgres, got), "split: P2 served whole again"
    assert_same_rejected(version, got_rej, want_rej)
    assert current_state(postgres, got) == current_state(postgres, want)
    assert semantic(postgres, got) == semantic(postgres, want)
