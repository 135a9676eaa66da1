# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""History visibility and membership changed on a branch that
arrives in a later part. What each event serves to a joined server, to a
server that left, and to one never in the room (mxf_served_pdu, sql/003),
and the room's servers, must be those of the one-file import."""

import pytest

from mxftest.vbuilder import Keys, VRoom
from test_064_import_parts import semantic
from test_075_import_regiven_stored import (current_state, rejected, one_go_and_split,
                                            pdu_line as line)

A = "@admin:hs1.example"
B = "@bob:hs2.example"
C = "@carol:hs3.example"
KEYS = Keys()


def served(postgres, db):
    return postgres.psql(db, "SELECT string_agg(e.event_id || ' ' || s.s || ' '"
                             " || coalesce(md5(mxf_pdu_for(e, vb, va, s.s)), '-')"
                             " || ' vis=' || (e.vis_id IS NOT NULL)"
                             " || ' va=' || (e.vis_after_id IS NOT NULL), chr(10)"
                             " ORDER BY e.event_id, s.s)"
                             " FROM mxf_events e"
                             " LEFT JOIN mxf_visibility vb ON vb.vis_id = e.vis_id"
                             " LEFT JOIN mxf_visibility va ON va.vis_id = e.vis_after_id,"
                             " (VALUES ('hs1.example'), ('hs2.example'),"
                             " ('hs3.example'), ('hs9.example')) s(s)")


def servers(postgres, db):
    return postgres.psql(db, "SELECT string_agg(server_name || '=' || joined, ','"
                             " ORDER BY server_name) FROM mxf_room_servers")


@pytest.mark.parametrize("version", ["1", "10"])
@pytest.mark.parametrize("late", ["hv", "leave", "both"])
def test_106_001_visibility_on_late_branch(version, late, build_env, workdir, postgres,
                                           tmp_path):
    r = VRoom(version, KEYS, f"!partsvis{version}{late}:hs1.example")
    cr = r.create(A)
    ja = r.join(A)
    p1 = r.pl(A, {"users": {A: 100}})
    jr = r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    hv0 = r.make("m.room.history_visibility", A, {"history_visibility": "shared"},
                 state_key="")
    jb = r.join(B)
    jc = r.join(C)
    fork = r.msg(A, "fork")
    # Branch X: visibility "joined", then B leaves.
    hv1 = r.make("m.room.history_visibility", A, {"history_visibility": "joined"},
                 state_key="", prev=[fork], auth=[cr, p1, ja])
    lb = r.member(B, B, "leave", prev=[hv1], auth=[cr, p1, jb])
    # Branch Y: messages.
    m1 = r.msg(A, "m1", prev=[fork], auth=[cr, p1, ja])
    m2 = r.msg(C, "m2", prev=[m1], auth=[cr, p1, jc])
    # Merge, then more history.
    mg = r.msg(A, "merge", prev=[lb, m2], auth=[cr, p1, ja])
    r.last = mg
    r.msg(A, "after1", auth=[cr, p1, ja])
    r.msg(C, "after2", auth=[cr, p1, jc])
    ev = r.by_id
    ids = [e for e, _ in r.events]
    del hv0, jr
    missing = {"hv": [hv1], "leave": [lb], "both": [hv1, lb]}[late]
    part1 = [line(ev[e]) for e in ids if e not in missing]
    part2 = [line(ev[e]) for e in missing]
    want, got = one_go_and_split(KEYS, [part1 + part2], [part1, part2], build_env, workdir,
                                 postgres, tmp_path)
    assert rejected(postgres, want) == {}, "setup"
    assert rejected(postgres, got) == rejected(postgres, want)
    assert current_state(postgres, got) == current_state(postgres, want)
    assert servers(postgres, got) == servers(postgres, want)
    assert semantic(postgres, got) == semantic(postgres, want)
    assert served(postgres, got) == served(postgres, want)
