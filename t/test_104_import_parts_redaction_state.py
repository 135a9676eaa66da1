# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Redactions stored while their own state is unknown (a
prev_event missing), whose verdict or power becomes known only when a later
import brings the missing branch. README "Importing rooms": however a room
is split, the database ends as the one-file import of the same room (the
parts concatenated) leaves it.

Case "applied_then_rejected": B (joined) sends T, A bans B on a branch
(BAN), B's redaction R of T follows BAN (prev_events [BAN]; auth_events
cite B's join). One file: the state before R has B banned, R is rejected
(auth rules: the sender is not joined), T is not redacted. Split, part 1
without BAN: R's state is unknown, its auth events accept it, and
apply_redactions() redacts T at once (same server as T's sender; in v1/v2
accepted is enough). Part 2 (BAN) refills R and rejects it, and must take
T's redaction back (it did not: T stayed redacted by a rejected redaction).

Case "pruned_by_rejected": as test_089 (INV by B, level 0, cites P2 = power
levels with invite 100; a redaction of P2 makes INV pass in v1-10), but R
(by B, hs1 like P2's sender, so the redaction applies when accepted) follows
a ban of B on another branch. Part 1 = base + R (BAN missing: R accepted on
its auth events), part 2 = BAN, P2, INV. prune_by_stored_redactions() read
P2 redacted for INV from R's stored acceptance although R is rejected a
moment later in the same import; one file rejects INV. A redaction of
unknown state, or one the import judges again, is not read so.

Case "pruned_in_first_part": part 1 = base, P2, R and INV, BAN missing. R
(of unknown state) was read as redacting P2 for INV's checks, and INV,
whose state is known, was accepted for good; one file takes INV before R
(R waits for BAN, the last line) and rejects it.

Case "power_known_late": R by B (other server, hs2) is allowed by power
only after GRANT (power levels giving B 100) on a branch that arrives
later. One file, input order [base, R, GRANT, P2, INV]: R is processed
right after GRANT and before P2 (ties by input order), so INV reads P2
redacted and is accepted. Split: part 1 = base + R, part 2 = GRANT, P2,
INV: R (refilled) was ordered after all the part's events (line numbers
after the input's), so INV was checked before R marked P2 pruned and
rejected. Refilled events now come first among the events ready at once,
as they arrived first."""

import pytest

from mxftest.vbuilder import Keys, VRoom
from mxftest.vbuilder12 import V12Room
from mxftest.matrix import q
from test_064_import_parts import Signer, cli_sanitizer_reports, semantic, serve
from test_075_import_regiven_stored import (assert_same_rejected, current_state, redacted,
                                            rejected, one_go_and_split, pdu_line as line,
                                            split_verdicts)

A = "@admin:hs1.example"
B1 = "@bob:hs1.example"
B2 = "@bob:hs2.example"
D = "@dave:hs4.example"
KEYS = Keys()


def base(r, b):
    ids = {}
    ids["cr"] = r.create(A)
    ids["ja"] = r.join(A)
    ids["p1"] = r.pl(A, {"users": {A: 100}})
    ids["jr"] = r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    ids["jb"] = r.join(b)
    return ids


def case_applied_then_rejected(version):
    r = VRoom(version, KEYS, f"!partsart{version}:hs1.example")
    i = base(r, B1)
    t = r.msg(B1, "T")
    ban = r.member(A, B1, "ban", prev=[t], auth=[i["cr"], i["p1"], i["ja"], i["jb"]])
    red = r.redaction(B1, t, prev=[ban], auth=[i["cr"], i["p1"], i["jb"]], rejected=True)
    ev = r.by_id
    part1 = [line(ev[e]) for e, _ in r.events if e != ban]
    part2 = [line(ev[ban])]
    return {"t": t, "red": red, "parts": [part1, part2], "one_go": [part1 + part2]}


def case_applied_then_rejected_v12():
    r = V12Room(KEYS)
    r.create(A)
    ja = r.join(A)
    p1 = r.pl(A, {"users": {}})
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    jb = r.join(B1)
    t = r.msg(B1, "T")
    ban = r.member(A, B1, "ban", prev=[t], auth=[p1, ja, jb])
    red = r.redaction(B1, t, prev=[ban], auth=[p1, jb], rejected=True)
    ev = r.by_id
    part1 = [line(ev[e]) for e, _ in r.events if e != ban]
    part2 = [line(ev[ban])]
    return {"t": t, "red": red, "parts": [part1, part2], "one_go": [part1 + part2]}


def case_pruned_by_rejected(version):
    r = VRoom(version, KEYS, f"!partspbr{version}:hs1.example")
    i = base(r, B1)
    fork = i["jb"]
    ban = r.member(A, B1, "ban", prev=[fork], auth=[i["cr"], i["p1"], i["ja"], i["jb"]])
    p2 = r.pl(A, {"users": {A: 100}, "invite": 100}, prev=[fork],
              auth=[i["cr"], i["p1"], i["ja"]])
    inv = r.member(B1, D, "invite", prev=[p2], auth=[i["cr"], p2, i["jb"], i["jr"]],
                   rejected=True)
    red = r.redaction(B1, p2, prev=[ban], auth=[i["cr"], i["p1"], i["jb"]], rejected=True)
    ev = r.by_id
    basel = [line(ev[e]) for e, _ in r.events if e not in (ban, p2, inv, red)]
    part1 = basel + [line(ev[red])]
    part2 = [line(ev[ban]), line(ev[p2]), line(ev[inv])]
    return {"inv": inv, "p2": p2, "red": red, "parts": [part1, part2],
            "one_go": [part1 + part2]}


def case_pruned_in_first_part(version):
    """As case_pruned_by_rejected, but INV (state known) is in part 1, after R."""
    c = case_pruned_by_rejected(version)
    r_lines = c["one_go"][0]
    ban, p2, inv = r_lines[-3:]
    part1 = r_lines[:-4] + [p2, r_lines[-4], inv]      # base, P2, R, INV
    c["parts"] = [part1, [ban]]
    c["one_go"] = [part1 + [ban]]
    return c


def case_power_known_late(version):
    r = VRoom(version, KEYS, f"!partspkl{version}:hs1.example")
    i = base(r, B2)
    fork = i["jb"]
    grant = r.pl(A, {"users": {A: 100, B2: 100}}, prev=[fork],
                 auth=[i["cr"], i["p1"], i["ja"]])
    p2 = r.pl(A, {"users": {A: 100}, "invite": 100}, prev=[fork],
              auth=[i["cr"], i["p1"], i["ja"]])
    inv = r.member(B2, D, "invite", prev=[p2], auth=[i["cr"], p2, i["jb"], i["jr"]])
    red = r.redaction(B2, p2, prev=[grant], auth=[i["cr"], grant, i["jb"]])
    ev = r.by_id
    basel = [line(ev[e]) for e, _ in r.events if e not in (grant, p2, inv, red)]
    part1 = basel + [line(ev[red])]
    part2 = [line(ev[grant]), line(ev[p2]), line(ev[inv])]
    return {"inv": inv, "p2": p2, "red": red, "parts": [part1, part2],
            "one_go": [part1 + part2]}


@pytest.mark.parametrize("version", ["1", "3", "10", "11", "12"])
def test_104_001_redaction_applied_then_rejected(version, build_env, workdir, postgres,
                                                  tmp_path):
    c = case_applied_then_rejected(version) if version != "12" \
        else case_applied_then_rejected_v12()
    want, got = one_go_and_split(KEYS, c["one_go"], c["parts"], build_env, workdir, postgres,
                                 tmp_path)
    assert c["red"] in rejected(postgres, want), "setup: one file rejects R"
    assert c["t"] not in redacted(postgres, want), "setup: one file leaves T whole"
    assert c["red"] in rejected(postgres, got), "split: R rejected once its state is known"
    assert redacted(postgres, got) == redacted(postgres, want), \
        f"v{version}: split keeps T redacted by the rejected R"
    assert semantic(postgres, got) == semantic(postgres, want)
    assert not cli_sanitizer_reports(workdir)


def test_104_005_served_redacted_by_rejected_redaction(build_env, workdir, postgres, tmp_path,
                                                       httpd_factory, signing_key, backend):
    """/event serves T (B's message) whole, in the split import as in one file."""
    c = case_applied_then_rejected("10")
    want, got = one_go_and_split(KEYS, c["one_go"], c["parts"], build_env, workdir, postgres,
                                 tmp_path)
    signer = Signer("hs1.example", KEYS.get("hs1.example"))
    bodies = {}
    for name, db in (("one", want), ("split", got)):
        h = serve(httpd_factory, postgres, signing_key, backend, db, f"parts-104-{name}")
        try:
            r = signer.request(h, "GET", f"/_matrix/federation/v1/event/{q(c['t'])}")
            assert r.status == 200, r
            bodies[name] = r.json["pdus"][0].get("content")
        finally:
            h.stop()
    assert bodies["one"].get("body") == "T", bodies
    assert bodies["split"] == bodies["one"], bodies


@pytest.mark.parametrize("version", ["1", "3", "10"])
def test_104_002_target_pruned_by_redaction_rejected_later(version, build_env, workdir,
                                                           postgres, tmp_path):
    c = case_pruned_by_rejected(version)
    want, got, want_rej, got_rej = split_verdicts(KEYS, c, build_env, workdir, postgres,
                                                  tmp_path)
    assert c["red"] in want_rej and c["inv"] in want_rej, f"setup: {want_rej}"
    assert_same_rejected(version, got_rej, want_rej)
    assert current_state(postgres, got) == current_state(postgres, want)
    assert semantic(postgres, got) == semantic(postgres, want)


@pytest.mark.parametrize("version", ["1", "3", "10"])
def test_104_004_known_state_event_reads_target_of_unknown_state_redaction(
        version, build_env, workdir, postgres, tmp_path):
    c = case_pruned_in_first_part(version)
    want, got, want_rej, got_rej = split_verdicts(KEYS, c, build_env, workdir, postgres,
                                                  tmp_path)
    assert c["red"] in want_rej and c["inv"] in want_rej, f"setup: {want_rej}"
    assert_same_rejected(version, got_rej, want_rej)
    assert semantic(postgres, got) == semantic(postgres, want)


@pytest.mark.parametrize("version", ["1", "3", "10"])
def test_104_003_redaction_power_known_late(version, build_env, workdir, postgres, tmp_path):
    c = case_power_known_late(version)
    want, got, want_rej, got_rej = split_verdicts(KEYS, c, build_env, workdir, postgres,
                                                  tmp_path)
    assert c["p2"] in redacted(postgres, want), "setup: one file redacts P2"
    assert c["inv"] not in want_rej, f"setup: one file accepts INV: {want_rej}"
    assert_same_rejected(version, got_rej, want_rej)
    assert redacted(postgres, got) == redacted(postgres, want)
    assert current_state(postgres, got) == current_state(postgres, want)
    assert semantic(postgres, got) == semantic(postgres, want)
