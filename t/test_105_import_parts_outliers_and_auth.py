# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Rooms imported in parts where what links the parts is not a
missing prev_event.

test_105_001 (outlier with stored parents): the history up to M0 is
imported; then a /state answer (an outlier T1, the topic after M0, with its
auth chain); then the whole history. README: snapshot events are outliers
"until the same events come in as part of the room's history - in that
input or a later import - and are events of the room like any other".
The room must end as the one-file import of the whole history (the
concatenation of the three files gives T1 as history too).

test_105_002 (auth event on a concurrent branch): E, B's message after B's
join, cites as auth event B's later membership M2 (a displayname change) on
a concurrent branch; the first part lacks M2, the second brings it. One
file: E passes the rules against its auth events (M2: joined) and against
the state before it (B's join): accepted. Split: E's state is known in the
first part, M2 unknown there, so E is rejected ("auth event ... is
unknown"), and no later import judges it again - as the README says (an
event whose history a part holds whole is judged once; honest servers take
auth events from the state before the event, so only a crafted room cites
one from a concurrent branch)."""
import json

import pytest

from mxftest.vbuilder import Keys, VRoom
from test_064_import_parts import cli_sanitizer_reports, semantic
from test_075_import_regiven_stored import (current_state, rejected, one_go_and_split,
                                            pdu_line as line)

A = "@admin:hs1.example"
B = "@bob:hs2.example"
KEYS = Keys()


def db_rows(postgres, db):
    return postgres.psql(db, "SELECT string_agg(event_id || ' outlier=' || outlier ||"
                             " ' state=' || (state_before IS NOT NULL), chr(10)"
                             " ORDER BY event_nid) FROM mxf_events")


@pytest.mark.parametrize("version", ["1", "10"])
def test_105_001_outlier_with_stored_parents_given_as_history(version, build_env, workdir,
                                                               postgres, tmp_path):
    r = VRoom(version, KEYS, f"!partsout{version}:hs1.example")
    r.create(A)
    r.join(A)
    r.pl(A, {"users": {A: 100}})
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    m0 = r.msg(A, "M0")
    t1 = r.make("m.room.topic", A, {"topic": "T1"}, state_key="")
    r.msg(A, "M1")
    r.join(B)
    r.msg(B, "M2")
    ev = r.by_id
    ids = [e for e, _ in r.events]
    hist = [line(ev[e]) for e in ids]
    upto_m0 = hist[:ids.index(m0) + 1]
    chain = [ev[e] for e in ids[:3]]
    snapshot = json.dumps({"pdus": [ev[t1]], "auth_chain": chain},
                          separators=(",", ":"))
    want, got = one_go_and_split(KEYS, [hist], [upto_m0, [snapshot], hist], build_env, workdir,
                                 postgres, tmp_path)
    assert rejected(postgres, want) == {}, "setup"
    assert current_state(postgres, got) == current_state(postgres, want), db_rows(postgres, got)
    assert semantic(postgres, got) == semantic(postgres, want), db_rows(postgres, got)
    assert not cli_sanitizer_reports(workdir)


@pytest.mark.parametrize("version", ["1", "10"])
def test_105_002_auth_event_on_concurrent_branch_stays_rejected(version, build_env, workdir,
                                                                 postgres, tmp_path):
    r = VRoom(version, KEYS, f"!partsaeb{version}:hs1.example")
    cr = r.create(A)
    r.join(A)
    p1 = r.pl(A, {"users": {A: 100}})
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    jb = r.join(B)
    m2 = r.join(B, c={"displayname": "Bob"}, prev=[jb])
    e = r.msg(B, "E", prev=[jb], auth=[cr, p1, m2])
    ev = r.by_id
    ids = [x for x, _ in r.events]
    part1 = [line(ev[x]) for x in ids if x != m2]
    part2 = [line(ev[m2])]
    want, got = one_go_and_split(KEYS, [part1 + part2], [part1, part2], build_env, workdir,
                                 postgres, tmp_path)
    assert e not in rejected(postgres, want), "setup: one file accepts E"
    got_rejected = rejected(postgres, got)
    assert set(got_rejected) == {e}, got_rejected
    assert "unknown" in got_rejected[e], got_rejected
    assert m2 not in got_rejected
