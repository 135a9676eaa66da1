# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Creators' infinite power level where other rules compare levels
(content/rooms/v12.md rules 5.3.5.2, 5.4.4, 5.5, 5.6, 7; Synapse
get_user_power_level returns 2**53 for creators, above any canonical JSON
integer), and creators who are not joined (rule 6 and 5.4.2 still apply)."""
import pytest

from mxftest.v12util import db_events, import_ok, verdict_diff
from mxftest.vbuilder12 import SHARED_KEYS, V12Room

A = "@alice:hs1.example"
B = "@bob:hs2.example"
C = "@carol:hs3.example"
D = "@dave:hs4.example"
E = "@erin:hs5.example"
F = "@fred:hs6.example"
MAXI = 2 ** 53 - 1


def build():
    r = V12Room(SHARED_KEYS, ts0=1760000000000)
    r.create(A, additional_creators=[C])
    r.join(A)
    r.pl(A, {"users": {B: MAXI}, "invite": MAXI, "kick": 50, "ban": 50,
             "events": {"m.room.third_party_invite": 0}})
    r.make("m.room.join_rules", A, {"join_rule": "invite"}, state_key="")
    r.msg(C, "never joined", rejected=True, label="creator C not joined sends (6)")
    r.member(C, D, "invite", rejected=True, label="creator C not joined invites (5.4.2)")
    r.pl(C, {"users": {B: 1}}, rejected=True, label="creator C not joined sets PL (6)")
    r.member(A, C, "invite", label="A invites C (infinite >= invite 2^53-1)")
    r.join(C)
    r.member(A, B, "invite")
    r.join(B)
    r.member(B, D, "invite", label="B (2^53-1 >= invite 2^53-1) invites D")
    r.make("m.room.third_party_invite", C,
           {"display_name": "x", "key_validity_url": "https://id.example/v",
            "public_key": "AAAA"}, state_key="tok1",
           label="creator C: third_party_invite (invite level 2^53-1) (7)")
    r.make("m.room.third_party_invite", B,
           {"display_name": "y", "key_validity_url": "https://id.example/v",
            "public_key": "AAAA"}, state_key="tok2", label="B at 2^53-1 too (7)")
    allow = [{"type": "m.room_membership", "room_id": "!other"}]
    r.make("m.room.join_rules", A, {"join_rule": "restricted", "allow": allow}, state_key="")
    r.join(E, c={"join_authorised_via_users_server": C}, signers=["hs5.example", "hs3.example"],
           label="E joins authorised by creator C (5.3.5.2: C may invite)")
    r.join(F, c={"join_authorised_via_users_server": E}, signers=["hs6.example", "hs5.example"],
           rejected=True, label="F authorised by E (0 < invite) (5.3.5.2)")
    r.member(A, A, "leave", label="creator A leaves")
    r.member(B, A, "ban", rejected=True,
             label="B (2^53-1) bans creator A who left: A still infinite (5.6.2)")
    r.member(C, A, "ban", rejected=True, label="creator C bans creator A (5.6.2)")
    r.member(B, E, "ban", label="B bans E")
    r.member(C, B, "leave", label="creator C kicks B at 2^53-1 (5.5.4)")
    r.msg(C, "end")
    return r


@pytest.fixture(scope="module")
def room(build_env, postgres, workdir):
    r = build()
    import_ok(build_env, postgres, workdir, "levels", r.lines(), SHARED_KEYS)
    return r


def test_082_001_verdicts(room, postgres):
    got = db_events(postgres, room.room_id)
    wrong = verdict_diff(room, got)
    assert not wrong, "\n".join(wrong)
