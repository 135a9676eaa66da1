# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""A redaction stored by an earlier import before its target arrives: a
split import (two files) gives the rows of the one-go import of the same two
files concatenated (README: "to have the matching copies, import the files
together, concatenated"; t/test_064, t/test_075).

Room: base (create, A joins, P1 power levels {A: 100}, join_rules public,
B joins). Then, on a fork off the last base event, R: an m.room.redaction by
A (level 100) of P2. P2 (power levels {A: 100, invite: 100}) follows the last
base event on the other branch, then INV: B (level 0) invites D, citing P2.

One go, input order [base, R, P2, INV]: R is processed first (ties broken by
input order), and INV's auth checks read P2 redacted (room versions 1-10: no
`invite`, default 0): INV accepted. The reference homeserver reads auth
events through its redactions table whatever order the redaction and its
target arrived in (synapse/storage/databases/main/events_worker.py,
_maybe_redact_event_row), so INV is accepted there too.

Split, file 1 = [base, R], file 2 = [P2, INV]: R is stored when P2 comes;
P2 is read redacted as well, and INV is accepted, as in one go."""

import pytest

from mxftest.vbuilder import Keys, VRoom
from test_064_import_parts import cli_sanitizer_reports, semantic
from test_075_import_regiven_stored import (current_state, redacted, rejected, one_go_and_split,
                                            pdu_line as line)

A = "@admin:hs1.example"
B = "@bob:hs2.example"
D = "@dave:hs4.example"
KEYS = Keys()


def build(version):
    r = VRoom(version, KEYS, f"!rbt{version}:hs1.example")
    cr = r.create(A)
    ja = r.join(A)
    p1 = r.make("m.room.power_levels", A, {"users": {A: 100}}, state_key="")
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    fork = r.join(B)
    # P2 on one branch, INV after it (INV's auth events cite P2).
    p2 = r.make("m.room.power_levels", A, {"users": {A: 100}, "invite": 100}, state_key="",
                prev=[fork])
    inv = r.member(B, D, "invite", prev=[p2])
    # R on the other branch, off the same fork point: redacts P2.
    red = r.redaction(A, p2, prev=[fork], auth=[cr, p1, ja])
    ev = r.by_id
    base = [e for e, _ in r.events if e not in (p2, inv, red)]
    part1 = [line(ev[e]) for e in base] + [line(ev[red])]
    part2 = [line(ev[p2]), line(ev[inv])]
    return {"p2": p2, "inv": inv, "red": red, "parts": [part1, part2],
            "one_go": [part1 + part2]}


@pytest.mark.parametrize("version", ["1", "3", "10"])
def test_089_001_redaction_stored_before_its_target(version, build_env, workdir, postgres,
                                                     tmp_path):
    c = build(version)
    want, got = one_go_and_split(KEYS, c["one_go"], c["parts"], build_env, workdir, postgres,
                                 tmp_path)
    want_rej, got_rej = rejected(postgres, want), rejected(postgres, got)
    # The one-go import reads P2 redacted for INV (sanity check of the setup).
    assert c["inv"] not in want_rej, want_rej
    assert c["p2"] in redacted(postgres, want)
    assert got_rej == want_rej, f"v{version}: split rejects {got_rej}, one go {want_rej}"
    assert redacted(postgres, got) == redacted(postgres, want)
    assert current_state(postgres, got) == current_state(postgres, want)
    assert semantic(postgres, got) == semantic(postgres, want)
    assert not cli_sanitizer_reports(workdir)


# ---------------------------------------------------------------- v11, v12
# From room version 11 the redaction keeps every power level; what a pruned
# auth event loses that the rules read is an m.room.third_party_invite's
# public keys: an invite carrying third_party_invite.signed citing a pruned
# one fails (no key verifies the signature).

from mxftest.vbuilder12 import V12Room  # noqa: E402
from test_059_third_party_and_restricted import IDKEY, pk, signed_block  # noqa: E402

Z = "@zed:hs7.example"
TPI = {"display_name": "z...@example.org", "key_validity_url": "https://id.example/v",
       "public_key": None}


def tpi_content():
    return dict(TPI, public_key=pk(IDKEY))


def inv_content():
    return {"membership": "invite",
            "third_party_invite": {"display_name": "z...@example.org",
                                   "signed": signed_block(Z, "tok1")}}


def build_tpi(version):
    if version == "12":
        r = V12Room(KEYS)
        cr = r.create(A)
        ja = r.join(A)
        p1 = r.pl(A, {})  # v12: the creator is not listed
        jr = r.make("m.room.join_rules", A, {"join_rule": "invite"}, state_key="")
        fork = r.msg(A, "fork")
        t = r.make("m.room.third_party_invite", A, tpi_content(), state_key="tok1",
                   prev=[fork])
        inv = r.make("m.room.member", A, inv_content(), state_key=Z, prev=[t],
                     auth=[p1, ja, jr, t])
        red = r.redaction(A, t, prev=[fork], auth=[p1, ja])
        del cr
    else:
        r = VRoom(version, KEYS, f"!rbtp{version}:hs1.example")
        cr = r.create(A)
        ja = r.join(A)
        p1 = r.make("m.room.power_levels", A, {"users": {A: 100}}, state_key="")
        r.make("m.room.join_rules", A, {"join_rule": "invite"}, state_key="")
        fork = r.msg(A, "fork")
        t = r.make("m.room.third_party_invite", A, tpi_content(), state_key="tok1",
                   prev=[fork])
        inv = r.make("m.room.member", A, inv_content(), state_key=Z, prev=[t])
        red = r.redaction(A, t, prev=[fork], auth=[cr, p1, ja])
    ev = r.by_id
    base = [e for e, _ in r.events if e not in (t, inv, red)]
    part1 = [line(ev[e]) for e in base] + [line(ev[red])]
    part2 = [line(ev[t]), line(ev[inv])]
    return {"t": t, "inv": inv, "red": red, "parts": [part1, part2],
            "one_go": [part1 + part2]}


@pytest.mark.parametrize("version", ["3", "11", "12"])
def test_089_003_tpi_redaction_stored_before_its_target(version, build_env, workdir, postgres,
                                                         tmp_path):
    c = build_tpi(version)
    want, got = one_go_and_split(KEYS, c["one_go"], c["parts"], build_env, workdir, postgres,
                                 tmp_path)
    want_rej, got_rej = rejected(postgres, want), rejected(postgres, got)
    assert c["t"] in redacted(postgres, want)
    assert got_rej == want_rej, f"v{version}: split rejects {got_rej}, one go {want_rej}"
    assert semantic(postgres, got) == semantic(postgres, want)
    assert not cli_sanitizer_reports(workdir)
