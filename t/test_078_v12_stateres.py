# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""State resolution v2.1 (room version 12) against v2 (room version 11) on
a fork where they differ. From content/rooms/v12.md and
Synapse synapse/state/v2.py (base_state = {} for V2_1):

    ... P (PL: X 100) ... MX (X joins)
    J2: X sets join_rules invite
    L:  X leaves
    branch a: J3 (admin sets join_rules public), prev L
    branch b: Mg (a message), prev L
    M: merge, prev [J3, Mg]

The states after J3 and Mg differ only in join_rules: J3 against J2; X's
leave L is unconflicted. The power events J2, J3 are sorted by their
senders' power: the admin's J3 first (a v12 creator has infinite power;
a plain admin at 150 > X's 100 too), then J2.
- v2 starts the iterative auth checks from the unconflicted state, where X
  has left: J2 fails, join_rules = J3 (public).
- v2.1 starts from the empty state: J2 is checked against its own auth
  events (X joined, 100 >= 50) and passes after J3: join_rules = J2 (invite).
Then Y joins citing J3 (public), as a server resolving with v2 would: in
room version 12 the state before Y's join is invite-only, and the join is
rejected; in room version 11 it is accepted."""
import pytest

from mxftest.v12util import (db_current_state, db_events, db_state_before, import_ok,
                             verdict_diff)
from mxftest.vbuilder import VRoom
from mxftest.vbuilder12 import SHARED_KEYS, Keys, V12Room

A = "@alice:hs1.example"
Z = "@zed:hs1.example"
X = "@xavier:hs2.example"
Y = "@yve:hs3.example"


def build12(keys, admin_is_creator, ts0):
    r = V12Room(keys, ts0=ts0)
    r.create(A)
    r.join(A)
    admin = A if admin_is_creator else Z
    users = {X: 100} if admin_is_creator else {X: 100, Z: 150}
    r.pl(A, {"users": users})
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    if not admin_is_creator:
        r.join(Z)
    r.join(X)
    j2 = r.make("m.room.join_rules", X, {"join_rule": "invite"}, state_key="", label="J2")
    leave = r.member(X, X, "leave", label="L")
    j3 = r.make("m.room.join_rules", admin, {"join_rule": "public"}, state_key="", label="J3")
    r.goto(leave)
    mg = r.msg(A, "branch b", label="Mg")
    # the merge: v2.1 gives J2 (module model: the state the test states)
    resolved = dict(r.after[mg])
    resolved[("m.room.join_rules", "")] = j2
    r.state = resolved
    m = r.msg(A, "merge", prev=[j3, mg], label="M (merge)")
    yj = r.make("m.room.member", Y, {"membership": "join"}, state_key=Y,
                auth=[r.state[("m.room.power_levels", "")], j3], rejected=True,
                label="Y joins citing J3: invite-only after v2.1")
    r.msg(A, "end", label="tip")
    return r, dict(j2=j2, j3=j3, m=m, yj=yj)


def build11(keys, ts0):
    """The same DAG in room version 11 (v2): the admin needs a level there."""
    r = VRoom("11", keys, f"!sr11:hs1.example", ts0=ts0)
    r.create(A)
    r.join(A)
    r.make("m.room.power_levels", A, {"users": {A: 150, X: 100}}, state_key="")
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    r.join(X)
    j2 = r.make("m.room.join_rules", X, {"join_rule": "invite"}, state_key="")
    leave = r.member(X, X, "leave")
    j3 = r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    after_j3 = dict(r.state)
    r.state = dict(r.after[leave])
    r.last = leave
    mg = r.msg(A, "branch b")
    r.state = after_j3          # v2: J3
    m = r.msg(A, "merge", prev=[j3, mg])
    yj = r.make("m.room.member", Y, {"membership": "join"}, state_key=Y,
                auth=[r.state[("m.room.create", "")], r.state[("m.room.power_levels", "")], j3])
    r.msg(A, "end")
    return r, dict(j2=j2, j3=j3, m=m, yj=yj)


@pytest.fixture(scope="module")
def rooms(build_env, postgres, workdir):
    keys = SHARED_KEYS
    out = {"v12-creator": build12(keys, True, 1720000000000),
           "v12-admin": build12(keys, False, 1720000100000),
           "v11": build11(keys, 1720000200000)}
    lines = []
    for r, _ in out.values():
        if isinstance(r, V12Room):
            lines += r.lines()
        else:
            import json
            lines += [json.dumps(ev, separators=(",", ":")) for _, ev in r.events]
    import_ok(build_env, postgres, workdir, "stateres", lines, keys)
    return out


@pytest.mark.parametrize("name", ["v12-creator", "v12-admin", "v11"])
def test_078_001_merge_state(rooms, postgres, name):
    r, ids = rooms[name]
    want = ids["j2"] if name.startswith("v12") else ids["j3"]
    st = db_state_before(postgres, ids["m"])
    assert st.get(("m.room.join_rules", "")) == want, \
        f"join_rules before the merge: got {'J3' if st.get(('m.room.join_rules', '')) == ids['j3'] else st.get(('m.room.join_rules', ''))}"


@pytest.mark.parametrize("name", ["v12-creator", "v12-admin", "v11"])
def test_078_002_verdicts(rooms, postgres, name):
    r, ids = rooms[name]
    got = db_events(postgres, r.room_id)
    if isinstance(r, V12Room):
        wrong = verdict_diff(r, got)
    else:
        wrong = [f"#{i} {ev['type']}: expected {'rejected' if e in r.rejected else 'accepted'}"
                 f" ({got.get(e)})" for i, (e, ev) in enumerate(r.events)
                 if (e in r.rejected) != (got.get(e, '') != '')]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("name", ["v12-creator", "v12-admin", "v11"])
def test_078_003_current_state(rooms, postgres, name):
    r, ids = rooms[name]
    st = db_current_state(postgres, r.room_id)
    want = ids["j2"] if name.startswith("v12") else ids["j3"]
    assert st[("m.room.join_rules", "")] == want
    assert (("m.room.member", Y) in st) == (name == "v11")


def test_078_004_creator_above_max_level_in_power_sort(build_env, postgres, workdir):
    """The reverse topological power ordering compares senders' levels; a
    creator's (Synapse: 2**53) is above any level a power levels event can
    give (2**53 - 1). Concurrent join_rules by Z (2**53 - 1, earlier
    origin_server_ts) and creator A (later): A's sorts first, Z's is applied
    after it and wins. Were the creator's level not above Z's, the earlier
    timestamp would sort Z's first and A's would win."""
    MAXI = 2 ** 53 - 1
    r = V12Room(SHARED_KEYS, ts0=1720000300000)
    r.create(A)
    r.join(A)
    r.pl(A, {"users": {Z: MAXI}})
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    zj = r.join(Z)
    jz = r.make("m.room.join_rules", Z, {"join_rule": "knock"}, state_key="", label="JZ")
    r.goto(zj)
    ja = r.make("m.room.join_rules", A, {"join_rule": "invite"}, state_key="", label="JA")
    assert r.by_id[jz]["origin_server_ts"] < r.by_id[ja]["origin_server_ts"]
    resolved = dict(r.after[ja])
    resolved[("m.room.join_rules", "")] = jz
    r.state = dict(resolved)
    m = r.msg(A, "merge", prev=[ja, jz], label="M")
    import_ok(build_env, postgres, workdir, "power-sort", r.lines(), SHARED_KEYS)
    st = db_state_before(postgres, m)
    got = st.get(("m.room.join_rules", ""))
    assert got == jz, f"join_rules after the merge: {'JA (creator)' if got == ja else got}"
