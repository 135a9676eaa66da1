# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The auth chain index (sql/006): matrix-fed import places every state
event on a chain and links the chains; mxf_auth_chain() reads the auth
chain of any event, or of a whole state, from it. Checked against the auth
chains computed here from the events' own auth_events, for generated rooms
with conflicting branches imported in one go, in a random order and in two
parts (the later part first, so that auth events arrive after the events
citing them); and the walk still answers for a room stored without the
index."""
import json
import os
import random

import pytest

from test_020_genroom import event_id, gen
from test_021_import import (canonical, import_ok, new_db, query_json, read_lines, resign,
                             server_keys, write_lines)
from test_022_stateres_import import gen_conflicts

VERSIONS = ["2", "10", "12"]
EVENTS = 400


def auth_chains(events, version):
    """event ID -> its auth chain (set of event IDs), from auth_events."""
    by_id = {event_id(e, version): e for e in events}
    memo = {}

    def refs(e):
        a = e.get("auth_events", [])
        return [x[0] for x in a] if int(version) <= 2 else list(a)

    def chain(eid):
        if eid in memo:
            return memo[eid]
        out = set()
        for a in refs(by_id[eid]):
            if a in by_id:
                out.add(a)
                out |= chain(a)
        memo[eid] = out
        return out

    for eid in sorted(by_id, key=lambda i: by_id[i]["depth"]):
        chain(eid)
    return by_id, memo


def expected_chain(ids, chains, by_id, version):
    """The auth chain of the set @ids; in v12 the create event, which no
    event cites, belongs to the chain of every other event."""
    out = set()
    for i in ids:
        out |= chains[i]
    if version == "12":
        create = [k for k, e in by_id.items() if e["type"] == "m.room.create"][0]
        if any(i != create for i in ids):
            out.add(create)
    return out


def db_chains(postgres, db):
    """event ID -> auth chain per mxf_auth_chain(), for every event."""
    rows = query_json(postgres, db,
                      "SELECT e.event_id AS id,"
                      "       array(SELECT x.event_id FROM mxf_auth_chain(e.room_nid,"
                      "                 ARRAY[e.event_nid]) c"
                      "               JOIN mxf_events x ON x.event_nid = c) AS chain"
                      "  FROM mxf_events e")
    return {r["id"]: set(r["chain"]) for r in rows}


def db_state_chain(postgres, db):
    """(current state IDs, auth chain of the current state) from the database."""
    [r] = query_json(postgres, db,
                     "SELECT array(SELECT x.event_id FROM mxf_state_of(r.current_state_group) s"
                     "               JOIN mxf_events x ON x.event_nid = s.event_nid) AS state,"
                     "       array(SELECT x.event_id FROM mxf_auth_chain(r.room_nid,"
                     "                 array(SELECT s.event_nid"
                     "                         FROM mxf_state_of(r.current_state_group) s)) c"
                     "               JOIN mxf_events x ON x.event_nid = c) AS chain"
                     "  FROM mxf_rooms r")
    return r["state"], set(r["chain"])


@pytest.fixture(scope="module", params=VERSIONS)
def room(request, build_env, tmp_path_factory):
    version = request.param
    d = gen_conflicts(build_env, tmp_path_factory.mktemp(f"aci-v{version}") / "room", version,
                      seed=24, events=EVENTS)
    path = os.path.join(d, "room.jsonl")
    lines = read_lines(path)
    events = [json.loads(x) for x in lines]
    by_id, chains = auth_chains(events, version)
    return {"version": version, "path": path, "keys": os.path.join(d, "keys", "all.json"),
            "lines": lines, "by_id": by_id, "chains": chains}


def check_db(postgres, db, room):
    version, by_id, chains = room["version"], room["by_id"], room["chains"]
    got = db_chains(postgres, db)
    assert set(got) == set(by_id)
    wrong = [i for i in by_id if got[i] != expected_chain([i], chains, by_id, version)]
    assert wrong == [], f"{len(wrong)} events with a wrong auth chain, e.g. {wrong[:3]}"
    state, chain = db_state_chain(postgres, db)
    assert len(state) > 5
    assert chain == expected_chain(state, chains, by_id, version)


def test_024_001_index_built_and_right(room, build_env, postgres):
    """One import: the room is indexed, every state event has a position,
    links stay few, and every event's auth chain and the current state's
    auth chain are exact."""
    db = new_db(postgres, build_env)
    out = import_ok(build_env, postgres, db, room["path"], room["keys"])
    assert "auth chain index: " in out
    [r] = query_json(postgres, db,
                     "SELECT (SELECT bool_and(auth_chains_indexed) FROM mxf_rooms) AS indexed,"
                     " (SELECT count(*) FROM mxf_events WHERE state_key IS NOT NULL) AS states,"
                     " (SELECT count(*) FROM mxf_auth_chain_pos p JOIN mxf_events e"
                     "   USING (event_nid) WHERE e.state_key IS NOT NULL) AS placed,"
                     " (SELECT count(*) FROM mxf_auth_chain_pos) AS positions,"
                     " (SELECT count(*) FROM mxf_auth_chain_links) AS links")
    assert r["indexed"] is True
    assert r["placed"] == r["states"] == r["positions"]
    assert 0 < r["links"] <= 3 * r["states"], r
    check_db(postgres, db, room)


def test_024_002_any_order_and_parts(room, build_env, postgres, tmp_path):
    """A random input order, and the second half imported before the first
    (auth events arriving after the events that cite them): the same auth
    chains."""
    lines = list(room["lines"])
    random.Random(24).shuffle(lines)
    db = new_db(postgres, build_env)
    import_ok(build_env, postgres, db, write_lines(tmp_path / "shuffled.jsonl", lines),
              room["keys"])
    check_db(postgres, db, room)
    lines = room["lines"]
    half = len(lines) // 2
    db = new_db(postgres, build_env)
    import_ok(build_env, postgres, db,
              write_lines(tmp_path / "second.jsonl", [lines[0]] + lines[half:]), room["keys"])
    import_ok(build_env, postgres, db, write_lines(tmp_path / "first.jsonl", lines[:half]),
              room["keys"])
    check_db(postgres, db, room)


def test_024_003_room_without_index_is_walked(room, build_env, postgres):
    """A room stored before the index existed (marked not indexed, no
    positions) is answered by the walk, with the same chains."""
    db = new_db(postgres, build_env)
    import_ok(build_env, postgres, db, room["path"], room["keys"])
    postgres.psql(db, "UPDATE mxf_rooms SET auth_chains_indexed = false;"
                      " TRUNCATE mxf_auth_chain_pos, mxf_auth_chain_links")
    check_db(postgres, db, room)


@pytest.mark.parametrize("version", ["10", "12"])
def test_024_004_invited_one_by_another(version, build_env, postgres, tmp_path):
    """Members invited one by another, each joining before inviting the
    next: the auth chain of the last join runs back through every earlier
    invite and join, one chain link after another. mxf_auth_chain() gives
    every new event's chain exactly, the state's too, and mxf_event_auth()
    answers the last join's chain in depth order."""
    d = gen(build_env, tmp_path / "room", version, seed=44, events=60, branchiness=0)
    lines = read_lines(os.path.join(d, "room.jsonl"))
    signing = server_keys(d)
    evs = [json.loads(x) for x in lines]
    ids = [event_id(ev, version) for ev in evs]
    by_id = dict(zip(ids, evs))
    with open(os.path.join(d, "expected.jsonl")) as f:
        final = [json.loads(x) for x in f][-1]["state_after"]
    pl = by_id[final["m.room.power_levels|"]]["content"]
    admin = evs[0]["sender"]    # the creator: in v12 outside power levels' users
    create = [] if version == "12" else [ids[0]]
    room_id = evs[-1]["room_id"]
    tip = ids[-1]
    added = []

    def event(sender, typ, content, auths, state_key):
        nonlocal tip
        ev = {"room_id": room_id, "sender": sender, "type": typ, "content": content,
              "depth": by_id[tip]["depth"] + 1,
              "origin_server_ts": by_id[tip]["origin_server_ts"] + 1,
              "prev_events": [tip], "auth_events": create + auths, "hashes": {},
              "state_key": state_key}
        ev = resign(ev, version, signing)
        tip = event_id(ev, version)
        by_id[tip] = ev
        added.append(ev)
        return tip

    # Anyone joined may invite.
    pl_id = event(admin, "m.room.power_levels", dict(pl, invite=0),
                  [final["m.room.member|" + admin], final["m.room.power_levels|"]], "")
    jr = final["m.room.join_rules|"]
    servers = sorted(signing)
    inviter, inviter_join = admin, final["m.room.member|" + admin]
    for i in range(40):
        user = f"@chain{i}:{servers[i % len(servers)]}"
        inv = event(inviter, "m.room.member", {"membership": "invite"},
                    [pl_id, inviter_join, jr], user)
        join = event(user, "m.room.member", {"membership": "join"}, [pl_id, jr, inv], user)
        inviter, inviter_join = user, join

    db = new_db(postgres, build_env)
    path = write_lines(tmp_path / "chain.jsonl",
                       lines + [canonical(ev) for ev in added])
    import_ok(build_env, postgres, db, path, os.path.join(d, "keys", "all.json"))
    new_ids = [event_id(ev, version) for ev in added]
    [r] = query_json(postgres, db, "SELECT count(*) AS n FROM mxf_events"
                                   " WHERE rejected_reason IS NOT NULL AND event_id IN ("
                                   + ",".join(f"'{i}'" for i in new_ids) + ")")
    assert r["n"] == 0

    _, chains = auth_chains(list(by_id.values()), version)
    got = db_chains(postgres, db)
    wrong = [i for i in new_ids if got[i] != expected_chain([i], chains, by_id, version)]
    assert wrong == [], f"{len(wrong)} of {len(new_ids)} new events with a wrong auth chain"
    last = expected_chain([tip], chains, by_id, version)
    assert {event_id(by_id[i], version) for i in new_ids[:-1]} <= last | {tip}
    state, chain = db_state_chain(postgres, db)
    assert chain == expected_chain(state, chains, by_id, version)

    rows = query_json(postgres, db, "SELECT event_id AS id, pdu::json->'depth' AS depth"
                                    " FROM mxf_event_auth((SELECT room_nid FROM mxf_rooms),"
                                    f" '{tip}')")
    assert {x["id"] for x in rows} == last
    depths = [x["depth"] for x in rows]
    assert depths == sorted(depths)
