# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Which redactions apply in room version 12 (v3 "handling redactions",
kept by v12): the redaction's sender has the redact level, or is of the
target's sender's server. Creators have infinite power, with or without a
power levels event, above a redact level of 2**53 - 1."""
import pytest

from mxftest.v12util import db_events, import_ok, verdict_diff
from mxftest.vbuilder12 import SHARED_KEYS, V12Room

A = "@alice:hs1.example"
B = "@bob:hs2.example"
C = "@carol:hs3.example"
Z = "@zed:hs4.example"
W = "@wes:hs5.example"
MAXI = 2 ** 53 - 1


def redacted_because(postgres, eid):
    return postgres.psql(postgres.DBNAME, "SELECT coalesce(redacted_because, '') FROM"
                         f" mxf_events WHERE event_id = '{eid}'")


def build_no_pl():
    r = V12Room(SHARED_KEYS, ts0=1790000000000)
    r.create(A, additional_creators=[C])
    r.join(A)
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    r.join(B)
    r.join(C)
    mb = r.msg(B, "bob's")
    mc = r.msg(C, "carol's")
    applied = [r.redaction(C, mb, label="creator C redacts B's (no PL: infinite >= 50)")]
    not_applied = [r.redaction(B, mc, label="B redacts C's (0 < 50, other server)")]
    r.msg(A, "end")
    return r, {mb: applied[0]}, [mc]


def build_max():
    r = V12Room(SHARED_KEYS, ts0=1790000100000)
    r.create(A, additional_creators=[C])
    r.join(A)
    r.pl(A, {"users": {Z: MAXI, W: MAXI - 1}, "redact": MAXI})
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    for u in (B, C, Z, W):
        r.join(u)
    m1, m2, m3 = r.msg(B, "1"), r.msg(B, "2"), r.msg(B, "3")
    red1 = r.redaction(C, m1, label="creator C (redact 2^53-1)")
    red2 = r.redaction(Z, m2, label="Z at 2^53-1")
    r.redaction(W, m3, label="W at 2^53-2: does not apply")
    r.msg(A, "end")
    return r, {m1: red1, m2: red2}, [m3]


@pytest.mark.parametrize("which", ["no_pl", "max"])
def test_085_001_redactions_applied(build_env, postgres, workdir, which):
    r, applied, not_applied = {"no_pl": build_no_pl, "max": build_max}[which]()
    import_ok(build_env, postgres, workdir, f"red-{which}", r.lines(), SHARED_KEYS)
    got = db_events(postgres, r.room_id)
    assert not verdict_diff(r, got), verdict_diff(r, got)
    for target, red in applied.items():
        assert redacted_because(postgres, target) == red, r.labels[red]
    for target in not_applied:
        assert redacted_because(postgres, target) == "", target
