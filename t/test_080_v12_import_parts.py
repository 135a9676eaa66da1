# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Room version 12 rooms imported in parts: the create event
alone first, then the rest (whose events never list it: it is implied by
the room ID and must be found in the database); additional creators of
other servers who never join are no members."""
import json
import subprocess

import pytest

from mxftest.matrix import q
from mxftest.v12util import db_events, db_room, import_lines, import_ok, verdict_diff
from mxftest.vbuilder12 import SHARED_KEYS, Keys, V12Room
from mxftest.vroom import FED, serve

A = "@alice:hs1.example"
B = "@bob:hs2.example"
C = "@carol:hs3.example"
D = "@dave:hs4.example"
KEYS = SHARED_KEYS


def build(keys, ts0):
    r = V12Room(keys, ts0=ts0)
    r.create(A, additional_creators=[C, D])
    r.join(A, label="A joins (auth_events [], prev the create)")
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    r.pl(A, {"users": {B: 10}}, label="PL")
    r.join(B)
    r.join(D, label="additional creator D joins")
    r.pl(D, {"users": {B: 60}}, label="D (creator) raises B")
    r.pl(B, {"users": {B: 60}, "state_default": 70}, rejected=True,
         label="B raises state_default above himself (10.6)")
    r.member(B, D, "ban", rejected=True, label="B bans creator D")
    r.pl(A, {"users": {B: 60, D: 1}}, rejected=True, label="PL lists creator D (10.4)")
    r.msg(B, "end")
    return r


@pytest.fixture(scope="module")
def parts(build_env, postgres, workdir):
    keys = KEYS
    keys.get("hs3.example")
    r = build(keys, 1740000000000)
    lines = r.lines()
    p1 = import_lines(build_env, postgres, workdir, "parts-1", lines[:1], keys)
    p2 = import_lines(build_env, postgres, workdir, "parts-2", lines[1:], keys)
    return keys, r, p1, p2


def test_080_001_create_alone_then_rest(parts, postgres):
    keys, r, p1, p2 = parts
    assert p1.returncode == 0, p1.stderr
    assert p2.returncode == 0, p2.stderr
    assert db_room(postgres, r.room_id) == "12"
    got = db_events(postgres, r.room_id)
    wrong = verdict_diff(r, got)
    assert not wrong, "\n".join(wrong)


def test_080_002_rest_then_create(build_env, postgres, workdir):
    """The rest without the create event: a bad line per the README (the
    room's first import must hold it); the database is unchanged; then the
    create event alone, then the rest again: as in one go."""
    keys = KEYS
    r = build(keys, 1740000100000)
    lines = r.lines()
    p = import_lines(build_env, postgres, workdir, "rest-first", lines[1:], keys)
    assert p.returncode != 0
    assert db_room(postgres, r.room_id) is None
    import_ok(build_env, postgres, workdir, "rest-first-2", lines[:1], keys)
    import_ok(build_env, postgres, workdir, "rest-first-3", lines[1:], keys)
    got = db_events(postgres, r.room_id)
    assert not verdict_diff(r, got), verdict_diff(r, got)


def test_080_003_create_and_more_in_three_parts(build_env, postgres, workdir):
    keys = KEYS
    r = build(keys, 1740000200000)
    lines = r.lines()
    for i, part in enumerate((lines[:3], lines[3:6], lines[6:])):
        import_ok(build_env, postgres, workdir, f"three-{i}", part, keys)
    got = db_events(postgres, r.room_id)
    assert not verdict_diff(r, got), verdict_diff(r, got)


@pytest.fixture(scope="module")
def fed(httpd_factory, postgres, signing_key, backend, parts):
    yield from serve(httpd_factory, postgres, signing_key, backend, parts[0], "httpd-905")


def test_080_004_creator_not_joined_is_no_member(parts, fed):
    """C is an additional creator of hs3 and never joined: hs3 has no joined
    member, so it is refused like any server outside the room; D (hs4), an
    additional creator who joined, is served; /event_auth of A's join (no
    auth_events at all) is the create event alone."""
    keys, r, _, _ = parts
    tip = r.last
    path = f"{FED}/state_ids/{q(r.room_id)}?event_id={q(tip)}"
    assert fed.get("hs3.example", path).status == 403
    resp = fed.get("hs4.example", path)
    assert resp.status == 200, resp
    join_a = r.events[1][0]
    resp = fed.get("hs4.example", f"{FED}/event_auth/{q(r.room_id)}/{q(join_a)}")
    assert resp.status == 200, resp
    assert resp.json["auth_chain"] == [r.by_id[r.create_id]]
    resp = fed.get("hs4.example", f"{FED}/state_ids/{q(r.room_id)}?event_id={q(join_a)}")
    assert resp.status == 200 and resp.json == {"auth_chain_ids": [],
                                                "pdu_ids": [r.create_id]}, resp


def check_all_auth_answers(fed, r, origin):
    rid = q(r.room_id)
    by_json = {json.dumps(ev, sort_keys=True): e for e, ev in r.events}
    bad = []
    for eid, _ in r.events:
        if eid in r.rejected:
            continue
        resp = fed.get(origin, f"{FED}/event_auth/{rid}/{q(eid)}")
        got = {by_json.get(json.dumps(p, sort_keys=True)) for p in resp.json["auth_chain"]}
        if got != r.auth_chain([eid]):
            bad.append(("event_auth", r.labels[eid]))
        want = set(r.before[eid].values())
        resp = fed.get(origin, f"{FED}/state_ids/{rid}?event_id={q(eid)}")
        if set(resp.json["pdu_ids"]) != want or \
                set(resp.json["auth_chain_ids"]) != r.auth_chain(want):
            bad.append(("state_ids", r.labels[eid]))
    return bad


def test_080_005_three_parts_served(build_env, postgres, workdir, fed):
    """Imported in three parts (the create event with the first two events,
    then 3, then the rest): every auth chain served holds the create event."""
    r = build(KEYS, 1740000300000)
    lines = r.lines()
    for i, part in enumerate((lines[:1], lines[1:4], lines[4:])):
        import_ok(build_env, postgres, workdir, f"three-b-{i}", part, KEYS)
    bad = check_all_auth_answers(fed, r, "hs2.example")
    assert not bad, bad


def test_080_006_backfill_answer_newest_first(build_env, postgres, workdir):
    """A v12 room saved as a /backfill answer (newest first, the create event
    last and without room_id): the importer ties the create event to its
    room by its hash."""
    r = build(KEYS, 1740000400000)
    answer = {"origin": "hs1.example", "origin_server_ts": 1,
              "pdus": [ev for _, ev in reversed(r.events)]}
    import_ok(build_env, postgres, workdir, "backfill-answer",
              [json.dumps(answer, separators=(",", ":"))], KEYS)
    got = db_events(postgres, r.room_id)
    assert not verdict_diff(r, got), verdict_diff(r, got)


def test_080_007_export_roundtrip(build_env, postgres, workdir):
    """export --room writes the room back byte for byte, the create event
    (which has no room_id) included."""
    r = build(KEYS, 1740000500000)
    import_ok(build_env, postgres, workdir, "export", r.lines(), KEYS)
    p = subprocess.run([build_env.cli, "export", "--db", postgres.conninfo(), "--room",
                        r.room_id], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       env=build_env.sanitizer_env(workdir))
    assert p.returncode == 0, p.stderr
    assert sorted(p.stdout.splitlines()) == sorted(r.lines())
