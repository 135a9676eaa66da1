# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""A stored target (state known, not refilled) that a stored
redaction of unknown state redacted is not read redacted by a later
import's checks: "a redaction counts once its own state is known" (README,
"State and authorization in matrix-fed import"), and a one-file import does
not read it so (compute_events() calls mark_pruned() only when e->before).
ev_json() read it redacted for any redacted_because other than
'content-hash'.

Room: base (create, A joins, P1, public join rules, B joins), P2 (power
levels, invite 100, prev [JB]), BAN (A bans B, prev [JB]), R (B redacts
P2, prev [BAN], auth events cite B's join), INV (B, level 0, invites D,
prev [P2], cites P2).

gap_closes: part 1 = base, P2, R (BAN missing: R of unknown state, accepted
by its auth events, redacts P2 at once); part 2 = BAN, INV. One file
[base, P2, R, BAN, INV]: BAN, then R (rejected: B banned), then INV reads
P2 whole and is rejected. Split: R is refilled and rejected, P2 is served
whole again, and INV must be rejected too (it was checked with P2 read
redacted - its stored redacted_because still named R while
compute_events() ran - and accepted).

gap_never_closes: the same without BAN. One file [base, P2, R, INV]: R's
state is unknown, so it does not make P2 read redacted; INV is rejected.
Split (part 1 = base, P2, R; part 2 = INV): INV read the stored P2
redacted (by R, of unknown state) and was accepted. README: "The aim is
that however a room is split into files, the database ends as one import of
the files one after another leaves it"; the stored copy is read "redacted
when an earlier import's m.room.redaction redacted it and that redaction's
own state is known".
"""
import pytest

from mxftest.vbuilder import VRoom
from test_064_import_parts import semantic
from test_075_import_regiven_stored import assert_same_rejected, split_verdicts
from test_104_import_parts_redaction_state import A, B1, D, KEYS, base, line


def case(version, gap_closes):
    r = VRoom(version, KEYS, f"!refillstored{int(gap_closes)}v{version}:hs1.example")
    i = base(r, B1)
    p2 = r.pl(A, {"users": {A: 100}, "invite": 100}, prev=[i["jb"]],
              auth=[i["cr"], i["p1"], i["ja"]])
    ban = r.member(A, B1, "ban", prev=[i["jb"]], auth=[i["cr"], i["p1"], i["ja"], i["jb"]])
    red = r.redaction(B1, p2, prev=[ban], auth=[i["cr"], i["p1"], i["jb"]])
    inv = r.member(B1, D, "invite", prev=[p2], auth=[i["cr"], p2, i["jb"], i["jr"]])
    ev = r.by_id
    basel = [line(ev[e]) for e, _ in r.events if e not in (p2, ban, red, inv)]
    part1 = basel + [line(ev[p2]), line(ev[red])]
    part2 = ([line(ev[ban])] if gap_closes else []) + [line(ev[inv])]
    return {"inv": inv, "p2": p2, "red": red, "parts": [part1, part2],
            "one_go": [part1 + part2]}


@pytest.mark.parametrize("gap_closes", [True, False], ids=["gap_closes", "gap_never_closes"])
@pytest.mark.parametrize("version", ["1", "3", "10"])
def test_110_001_stored_target_of_unknown_state_redaction(version, gap_closes, build_env,
                                                           workdir, postgres, tmp_path):
    c = case(version, gap_closes)
    want, got, want_rej, got_rej = split_verdicts(KEYS, c, build_env, workdir, postgres,
                                                  tmp_path)
    assert c["inv"] in want_rej, f"setup: one file rejects INV: {want_rej}"
    assert_same_rejected(version, got_rej, want_rej)
    assert semantic(postgres, got) == semantic(postgres, want)
