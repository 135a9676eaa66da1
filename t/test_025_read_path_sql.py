# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The read path's SQL functions against their reference walks (sql/007):
backfill over a depth window (mxf_backfill) gives exactly what the walk
(mxf_backfill_walk) gives, from many starting sets and limits, in rooms
whose depths are monotone; the importer marks a room whose depths are not
(an event no deeper than a prev event, in one import or across two), and
such a room is answered by the walk. get_missing_events as one query over
a window of distances (mxf_missing_events_window) gives exactly what the
breadth-first walk (mxf_missing_events_walk) gives, for random latest and
earliest sets, limits and minimum depths; mxf_missing_events answers with
the first for one or two latest events and the walk for more (sql/015). The module's answers are checked
by the history tests (test_040)."""
import json
import os
import random

import pytest

from test_020_genroom import event_id, gen
from test_021_import import import_ok, new_db, query_json, read_lines, resign, server_keys, \
    write_lines
from test_022_stateres_import import gen_conflicts

VERSIONS = ["1", "10", "12"]


def backfills(postgres, db, room_nid, cases):
    """For each (starting event IDs, limit) of @cases: (window answer, walk
    answer) as lists of event IDs, deepest first; one statement for all."""
    rows = ",".join(f"({k}, ARRAY[" + ",".join("'" + x + "'" for x in starts)
                    + f"]::text[], {limit})" for k, (starts, limit) in enumerate(cases))
    out = query_json(postgres, db,
                     f"SELECT c.k,"
                     f"       array(SELECT e.event_id FROM mxf_backfill({room_nid}, c.v, c.n) b"
                     f"               JOIN mxf_events e ON e.event_nid = b"
                     f"              ORDER BY e.depth DESC, e.event_nid DESC) AS w,"
                     f"       array(SELECT e.event_id FROM mxf_backfill_walk({room_nid}, c.v,"
                     f"                  c.n) b JOIN mxf_events e ON e.event_nid = b"
                     f"              ORDER BY e.depth DESC, e.event_nid DESC) AS l"
                     f"  FROM (VALUES {rows}) c (k, v, n) ORDER BY c.k")
    return [(r["w"], r["l"]) for r in out]


def missing(postgres, db, room_nid, cases):
    """For each (earliest IDs, latest IDs, limit, min_depth) of @cases: (query
    answer, walk answer) as lists of event IDs in serving order."""
    def arr(ids):
        return "ARRAY[" + ",".join("'" + x + "'" for x in ids) + "]::text[]"
    rows = ",".join(f"({k}, {arr(e)}, {arr(l)}, {n}, {d})"
                    for k, (e, l, n, d) in enumerate(cases))
    out = query_json(postgres, db,
                     f"SELECT c.k,"
                     f"  array(SELECT e.event_id FROM mxf_missing_events_window({room_nid}, c.e,"
                     f"          c.l, c.n, c.d) m JOIN mxf_events e ON e.event_nid = m"
                     f"         ORDER BY e.depth, e.event_nid) AS q,"
                     f"  array(SELECT e.event_id FROM mxf_missing_events_walk({room_nid}, c.e,"
                     f"          c.l, c.n, c.d) m JOIN mxf_events e ON e.event_nid = m"
                     f"         ORDER BY e.depth, e.event_nid) AS w"
                     f"  FROM (VALUES {rows}) c (k, e, l, n, d) ORDER BY c.k")
    return [(r["q"], r["w"]) for r in out]


@pytest.fixture(scope="module", params=VERSIONS)
def room(request, build_env, postgres, tmp_path_factory):
    version = request.param
    out = tmp_path_factory.mktemp(f"rp-v{version}") / "room"
    # branchy rooms: with conflicting branches where the version has state resolution v2
    d = gen(build_env, out, version, seed=25, events=500, branchiness=0.35) if version == "1" \
        else gen_conflicts(build_env, out, version, seed=25, events=500)
    path = os.path.join(d, "room.jsonl")
    db = new_db(postgres, build_env)
    import_ok(build_env, postgres, db, path, os.path.join(d, "keys", "all.json"))
    lines = read_lines(path)
    events = [json.loads(x) for x in lines]
    return {"version": version, "dir": str(d), "db": db, "lines": lines, "events": events,
            "ids": [event_id(e, version) for e in events]}


def test_025_001_backfill_window_equals_walk(room, postgres):
    """200 random starting sets (1 to 3 events) and limits (1 to 150): the
    same events in the same order; the windows are exercised (the room is
    marked monotone and many answers are full)."""
    db = room["db"]
    [r] = query_json(postgres, db, "SELECT room_nid, depth_monotone FROM mxf_rooms")
    assert r["depth_monotone"] is True
    rng = random.Random(25)
    cases = [(rng.sample(room["ids"], rng.randint(1, 3)),
              rng.choice([1, 2, 5, 10, 20, 50, 100, 150])) for _ in range(200)]
    full = 0
    for (starts, limit), (w, l) in zip(cases, backfills(postgres, db, r["room_nid"], cases)):
        assert w == l, (starts, limit)
        assert len(w) <= limit
        full += len(w) == limit
    assert full > 100


def test_025_002_unknown_and_empty_starts(room, postgres):
    db = room["db"]
    [r] = query_json(postgres, db, "SELECT room_nid FROM mxf_rooms")
    assert backfills(postgres, db, r["room_nid"], [(["$unknown"], 10), ([room["ids"][-1]], 0)]) \
        == [([], []), ([], [])]


def test_025_003_non_monotone_depth_is_walked(room, build_env, postgres, tmp_path):
    """An event whose depth is not above its prev event's, imported with the
    room or in a later import (also when its prev event arrives after it):
    the room is marked, and backfill still answers as the walk."""
    version, events, ids = room["version"], room["events"], room["ids"]
    keys = server_keys(room["dir"])
    tip = max(events, key=lambda e: (e["depth"], e["origin_server_ts"]))
    tip_id = ids[events.index(tip)]
    ev = {k: v for k, v in tip.items() if k not in ("hashes", "signatures", "unsigned",
                                                      "event_id")}
    ev["type"] = "m.room.message"
    ev.pop("state_key", None)
    ev["content"] = {"body": "shallow", "msgtype": "m.text"}
    ev["prev_events"] = [[tip_id, {}]] if int(version) <= 2 else [tip_id]
    ev["depth"] = tip["depth"] - 3
    ev["origin_server_ts"] = tip["origin_server_ts"] + 1
    if int(version) <= 2:
        ev["event_id"] = "$shallow:" + tip["sender"].split(":")[1]
    ev = resign(ev, version, keys)
    shallow = json.dumps(ev, separators=(",", ":"), sort_keys=True).encode()
    sid = event_id(ev, version)
    keyfile = os.path.join(room["dir"], "keys", "all.json")
    layouts = {"one import": [room["lines"] + [shallow]],
               "later import": [room["lines"], [shallow]],
               "prev arrives later": [[x for x, i in zip(room["lines"], ids) if i != tip_id]
                                      + [shallow],
                                      [room["lines"][ids.index(tip_id)]]]}
    for name, parts in layouts.items():
        db = new_db(postgres, build_env)
        for k, part in enumerate(parts):
            import_ok(build_env, postgres, db, write_lines(tmp_path / f"{name}-{k}.jsonl", part),
                      keyfile)
        [r] = query_json(postgres, db, "SELECT room_nid, depth_monotone FROM mxf_rooms")
        assert r["depth_monotone"] is False, name
        [(w, l)] = backfills(postgres, db, r["room_nid"], [([sid], 30)])
        assert w == l and len(w) == 30, name


def test_025_004_missing_events_query_equals_walk(room, postgres):
    """300 random requests: the same events; many answers full, some cut by
    earliest_events or min_depth."""
    db, ids, events = room["db"], room["ids"], room["events"]
    [r] = query_json(postgres, db, "SELECT room_nid FROM mxf_rooms")
    depths = sorted(e["depth"] for e in events)
    rng = random.Random(250)
    cases = []
    for _ in range(300):
        latest = rng.sample(ids, rng.randint(1, 3))
        earliest = rng.sample(ids, rng.choice([0, 0, 1, 2, 5]))
        min_depth = rng.choice([0, 0, 0, depths[len(depths) // 2], depths[-1] - 15])
        cases.append((earliest, latest, rng.choice([1, 3, 10, 20, 50]), min_depth))
    full = 0
    for case, (q, w) in zip(cases, missing(postgres, db, r["room_nid"], cases)):
        assert q == w, case
        full += len(q) == case[2]
    assert full > 100


def test_025_004b_many_latest_events(room, postgres):
    """latest_events of 3 to 100 events (where mxf_missing_events takes the
    walk, whose cost does not grow with their number): the window query and
    the walk still agree, and mxf_missing_events gives the same."""
    db, ids = room["db"], room["ids"]
    [r] = query_json(postgres, db, "SELECT room_nid FROM mxf_rooms")
    rng = random.Random(254)
    cases = [(rng.sample(ids, rng.choice([0, 0, 5])),
              rng.sample(ids, rng.choice([3, 30, 100])), rng.choice([1, 10, 20]), 0)
             for _ in range(16)]
    answers = missing(postgres, db, r["room_nid"], cases)
    for case, (q, w) in zip(cases, answers):
        assert q == w, case
    rows = ",".join("(%d, ARRAY[%s]::text[], ARRAY[%s]::text[], %d)"
                    % (k, ",".join(f"'{x}'" for x in e), ",".join(f"'{x}'" for x in l), n)
                    for k, (e, l, n, _) in enumerate(cases))
    out = query_json(postgres, db,
                     "SELECT c.k, array(SELECT e.event_id FROM mxf_missing_events("
                     f"{r['room_nid']}, c.e, c.l, c.n, 0) m JOIN mxf_events e ON e.event_nid = m"
                     "   ORDER BY e.depth, e.event_nid) AS a"
                     f"  FROM (VALUES {rows}) c (k, e, l, n) ORDER BY c.k")
    assert [x["a"] for x in out] == [w for _, w in answers]


def test_025_005_latest_events_reached_from_another(room, postgres):
    """latest_events holding an event and one of its near ancestors (1 to 4
    prev_events steps up): the query and the walk agree, and the ancestor is
    returned whenever the limit leaves room for its layer."""
    db, ids, events, version = room["db"], room["ids"], room["events"], room["version"]
    [r] = query_json(postgres, db, "SELECT room_nid FROM mxf_rooms")
    prevs = {i: [p[0] if isinstance(p, list) else p for p in e.get("prev_events", [])]
             for i, e in zip(ids, events)}
    rng = random.Random(2505)
    cases, ancestors = [], []
    for _ in range(120):
        e = rng.choice(ids[10:])
        a, steps = e, rng.randint(1, 4)
        for _ in range(steps):
            if prevs.get(a):
                a = rng.choice(prevs[a])
        if a == e:
            continue
        latest = [e, a] if rng.random() < 0.5 else [a, e]
        cases.append(([], latest, 50, 0))
        ancestors.append(a)
    returned = 0
    for case, a, (q, w) in zip(cases, ancestors, missing(postgres, db, r["room_nid"], cases)):
        assert q == w, case
        returned += a in q
    # The room's DAG leaves a few ancestors beyond 50 events' worth of layers.
    assert returned > len(cases) * 0.8, (returned, len(cases))


def test_025_006_walks_pass_rejected_events(room, build_env, postgres, tmp_path):
    """An accepted event whose only prev event is rejected (sent by a user
    who is not in the room): backfill and get_missing_events from it walk
    through the rejected event to the history behind it, never returning
    it; the window query and the walk agree."""
    version, events, ids = room["version"], room["events"], room["ids"]
    keys = server_keys(room["dir"])
    # The latest accepted message: its sender may send another after it, with
    # the same auth events (a state event's would not fit a message).
    rejected = {r["event_id"] for r in query_json(
        postgres, room["db"], "SELECT event_id FROM mxf_events WHERE rejected_reason IS NOT NULL")}
    tip = max((e for e, i in zip(events, ids)
               if e["type"] == "m.room.message" and i not in rejected),
              key=lambda e: (e["depth"], e["origin_server_ts"]))
    tip_id = ids[events.index(tip)]
    server = tip["sender"].split(":", 1)[1]
    base = {k: v for k, v in tip.items() if k not in ("hashes", "signatures", "unsigned",
                                                        "event_id", "state_key")}
    carried = int(version) <= 2       # v1, v2: the event ID is in the event

    def message(prev_id, steps, tag, body, **kw):
        """A signed m.text message @steps below the tip, after @prev_id."""
        ev = dict(base, type="m.room.message", content={"body": body, "msgtype": "m.text"},
                  prev_events=[[prev_id, {}] if carried else prev_id],
                  depth=tip["depth"] + steps, origin_server_ts=tip["origin_server_ts"] + steps,
                  **kw)
        if carried:
            ev["event_id"] = f"${tag}:{server}"
        ev = resign(ev, version, keys)
        return ev, event_id(ev, version)

    bad, bad_id = message(tip_id, 1, "rejected", "not a member", sender=f"@stranger:{server}")
    good, good_id = message(bad_id, 2, "after", "after")
    lines = room["lines"] + [json.dumps(e, separators=(",", ":")).encode() for e in (bad, good)]
    db = new_db(postgres, build_env)
    import_ok(build_env, postgres, db, write_lines(tmp_path / "rejected.jsonl", lines),
              os.path.join(room["dir"], "keys", "all.json"))
    rows = {r["event_id"]: r for r in query_json(
        postgres, db, "SELECT event_id, rejected_reason IS NOT NULL AS rejected FROM mxf_events"
                      f" WHERE event_id IN ('{bad_id}', '{good_id}')")}
    assert rows[bad_id]["rejected"] and not rows[good_id]["rejected"], rows
    [r] = query_json(postgres, db, "SELECT room_nid FROM mxf_rooms")
    [(w, l)] = backfills(postgres, db, r["room_nid"], [([good_id], 5)])
    assert w == l, (w, l)
    assert len(w) == 5 and w[0] == good_id and w[1] == tip_id and bad_id not in w
    # From the rejected event itself: not returned, its history is.
    [(w, l)] = backfills(postgres, db, r["room_nid"], [([bad_id], 3)])
    assert w == l and w[0] == tip_id and bad_id not in w
    [(q, wk)] = missing(postgres, db, r["room_nid"], [([], [good_id], 3, 0)])
    assert q == wk and tip_id in q and bad_id not in q
