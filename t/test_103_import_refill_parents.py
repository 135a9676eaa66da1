# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""An event whose state an earlier import could not know (a prev_event was
missing) gets its state when a later import brings the missing event, from
all its parents: also from a stored parent whose state is known and that no
event of the later import cites.

The room forks after a topic: P (a new topic) and Q (a message) both follow
it, and X follows both. The first import has everything but Q, so X's state
is unknown; the second import is Q alone, which cites neither P nor X.
The importer loaded only the stored events the input cites, so P was taken
for an event outside the known history and X (and all after it) stayed
without a state: in a room of version 1 split in three parts that way, 291
of 300 events, and the room had no joined servers."""
import json

import pytest

from mxftest.v12util import db_current_state, db_events, db_state_before, import_lines
from mxftest.vbuilder import VRoom
from mxftest.vbuilder12 import SHARED_KEYS

A = "@alice:hs1.example"


def fork_room(version):
    r = VRoom(version, SHARED_KEYS, f"!refill{version}:hs1.example")
    r.create(A)
    r.join(A)
    r.pl(A, {"users": {A: 100}})
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    t0 = r.make("m.room.topic", A, {"topic": "before the fork"}, state_key="")
    p = r.make("m.room.topic", A, {"topic": "P"}, state_key="", prev=[t0])
    q = r.msg(A, "Q", prev=[t0])
    x = r.msg(A, "X", prev=[p, q])
    y = r.make("m.room.name", A, {"name": "after"}, state_key="", prev=[x])
    z = r.msg(A, "Z", prev=[y])
    return r, {"t0": t0, "P": p, "Q": q, "X": x, "Y": y, "Z": z}


def as_lines(evs):
    return [json.dumps(ev, separators=(",", ":"), ensure_ascii=False) for _, ev in evs]


@pytest.mark.parametrize("version", ["1", "2", "10", "11"])
def test_103_001_refill_reads_stored_parent(build_env, postgres, workdir, version):
    r, ids = fork_room(version)
    first = [(e, ev) for e, ev in r.events if e != ids["Q"]]
    second = [(e, ev) for e, ev in r.events if e == ids["Q"]]
    p = import_lines(build_env, postgres, workdir, f"refill-v{version}-1", as_lines(first),
                     SHARED_KEYS)
    assert p.returncode == 0, p.stderr
    assert db_state_before(postgres, ids["X"]) == {}, "X's state is not known yet"
    p = import_lines(build_env, postgres, workdir, f"refill-v{version}-2", as_lines(second),
                     SHARED_KEYS)
    assert p.returncode == 0, p.stderr
    got = db_events(postgres, r.room_id)
    assert len(got) == len(r.events) and not any(got.values())
    for name in ("Q", "X", "Y", "Z"):
        st = db_state_before(postgres, ids[name])
        assert st, f"{name} has a state"
        assert st[("m.room.topic", "")] == (ids["t0"] if name == "Q" else ids["P"]), name
    assert db_state_before(postgres, ids["Z"])[("m.room.name", "")] == ids["Y"]
    cur = db_current_state(postgres, r.room_id)
    assert cur[("m.room.topic", "")] == ids["P"]
    assert cur[("m.room.name", "")] == ids["Y"]
    assert cur[("m.room.member", A)] == r.events[1][0]
    servers = postgres.psql(postgres.DBNAME,
                            "SELECT string_agg(s.server_name, ',') FROM mxf_room_servers s"
                            " JOIN mxf_rooms r USING (room_nid)"
                            f" WHERE r.room_id = '{r.room_id}'")
    assert servers == "hs1.example"
