# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""A room imported in parts, a later part first: the create event,
then the events after the room's first state events, then those state events.
README: events whose state is not known yet are checked against their auth
events alone and against the state when a later import completes their
history; the import of each part must succeed and the room end as a one-file
import has it.

`matrix-fed import` died of SIGSEGV here (test_098's rchunks order found
it): the second import's state events cite the create event, which an
earlier import stored, and index_auth_kids() (mxf_cmd_import.c) counted
citations of database events too but gave slots (akid0) only to the events
of this import, so a database event's citations were written past a slot
range starting at 0 - beyond im->auth_kids when it had more than half of
the citations (a heap overflow in the pool), over other events' slots
otherwise."""
import json

import pytest

from mxftest.v12util import db_events, db_state_before, import_lines
from mxftest.vbuilder import VRoom
from mxftest.vbuilder12 import SHARED_KEYS

A = "@alice:hs1.example"


def room(version, n):
    r = VRoom(version, SHARED_KEYS, f"!parts{version}n{n}:hs1.example")
    r.create(A)
    r.join(A)
    r.pl(A, {"users": {A: 100}})
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    for i in range(n):
        r.make("m.room.topic", A, {"topic": f"t{i}"}, state_key="")
    return r


def lines(r, evs):
    return [json.dumps(ev, separators=(",", ":"), ensure_ascii=False) for _, ev in evs]


@pytest.mark.parametrize("version,n", [("10", 2000), ("2", 600), ("11", 40)])
def test_097_001_later_part_first(build_env, postgres, workdir, version, n):
    r = room(version, n)
    parts = [r.events[:1], r.events[4:], r.events[1:4]]
    for i, part in enumerate(parts):
        p = import_lines(build_env, postgres, workdir, f"parts-v{version}-{n}-{i}",
                         lines(r, part), SHARED_KEYS)
        assert p.returncode == 0, f"part {i}: exit {p.returncode}: {p.stderr[-2000:]}"
    got = db_events(postgres, r.room_id)
    assert len(got) == len(r.events)
    assert not [e for e, why in got.items() if why], "no event is rejected"
    last = r.events[-1][0]
    st = db_state_before(postgres, last)
    assert st[("m.room.topic", "")] == r.events[-2][0]
    assert st[("m.room.power_levels", "")] == r.events[2][0]
