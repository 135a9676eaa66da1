# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The read path of a hand-built room version 12 room: room IDs
without a server part in URLs, auth chains that hold the implied create
event (Synapse: auth_event_ids() adds "$" + room_id[1:] to every other
event's auth events, and /state, /state_ids and /event_auth read auth
chains through it), redacted copies by the v11 algorithm, ACLs."""
import json

import pytest
import signedjson.key
import signedjson.sign

from mxftest.matrix import q
from mxftest.v12util import db_events, import_ok, verdict_diff
from mxftest.vbuilder12 import SHARED_KEYS, Keys, V12Room, redact12
from mxftest.vroom import FED, serve

A = "@alice:hs1.example"
B = "@bob:hs2.example"
C = "@carol:hs3.example"
EVE = "@eve:evil.example"


def build(keys):
    r = V12Room(keys, ts0=1710000000000)
    r.create(A, additional_creators=[C], extra_content={"m.federate": True})
    r.join(A)
    r.pl(A, {"users": {B: 50}, "invite": 0, "notifications": {"room": 20}})
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    r.make("m.room.history_visibility", A, {"history_visibility": "joined"}, state_key="")
    h1 = r.msg(A, "hidden from hs2", label="hidden1")
    h2 = r.pl(A, {"users": {B: 50}, "invite": 10, "events": {"m.room.name": 60},
                  "notifications": {"room": 30}, "historical": 100}, label="hidden PL")
    bad = r.pl(A, {"users": {A: 100}}, rejected=True, label="rejected PL (10.4)")
    r.join(B, label="B joins")
    v1 = r.msg(A, "visible to hs2", label="visible1")
    r.make("m.room.history_visibility", A, {"history_visibility": "shared"}, state_key="")
    bm = r.msg(B, "bob says", label="bob msg")
    r.make("m.room.server_acl", A, {"allow": ["*"], "deny": ["evil.example"],
                                    "allow_ip_literals": False}, state_key="")
    r.join(EVE, label="eve joins (ACL is no auth rule)")
    r.join(C, label="carol joins")
    red = r.redaction(C, bm, label="creator C redacts bob's message (applies: C >= redact)")
    tip = r.msg(A, "end", label="tip")
    return r, dict(h1=h1, h2=h2, bad=bad, v1=v1, bm=bm, red=red, tip=tip)


@pytest.fixture(scope="module")
def room(build_env, postgres, workdir):
    keys = SHARED_KEYS
    r, ids = build(keys)
    keys.get("hs4.example")
    import_ok(build_env, postgres, workdir, "read", r.lines(), keys)
    return keys, r, ids


@pytest.fixture(scope="module")
def fed(httpd_factory, postgres, signing_key, backend, room):
    yield from serve(httpd_factory, postgres, signing_key, backend, room[0], "httpd-902",
                     extra="MatrixFedBackfillLimit 1000\nMatrixFedMissingEventsLimit 1000")


def verify_served_redacted(keys, r, eid, pdu):
    """A redacted copy is exactly the v11 redaction of the original (v12
    keeps it), and its signature verifies."""
    want = redact12(r.by_id[eid])
    assert pdu == want, (r.labels[eid], pdu, want)
    server = r.by_id[eid]["sender"].split(":", 1)[1]
    signedjson.sign.verify_signed_json(pdu, server,
                                       signedjson.key.get_verify_key(keys.get(server)))


def test_077_000_verdicts(room, postgres):
    _, r, _ = room
    got = db_events(postgres, r.room_id)
    assert not verdict_diff(r, got), verdict_diff(r, got)


def test_077_001_event(room, fed):
    keys, r, ids = room
    for eid, ev in r.events:
        resp = fed.get("hs2.example", f"{FED}/event/{q(eid)}")
        if eid in r.rejected:
            assert resp.status == 404, (r.labels[eid], resp)
            continue
        assert resp.status == 200, (r.labels[eid], resp)
        pdu = resp.json["pdus"][0]
        if eid in (ids["h1"], ids["h2"], ids["bm"]) or (
                r.labels[eid].endswith("history_visibility") and pdu == redact12(ev)):
            # (a change to 'joined' is judged by the new setting: README)
            verify_served_redacted(keys, r, eid, pdu)
        else:
            assert json.dumps(ev, separators=(",", ":"), ensure_ascii=False) in resp.body, \
                r.labels[eid]


def test_077_002_event_auth_has_create(room, fed):
    """/event_auth: the auth chain of the event, the implied create event
    included (it is reachable: every non-create event's auth events imply it)."""
    keys, r, ids = room
    rid = q(r.room_id)
    for eid, _ in r.events:
        if eid in r.rejected:
            continue
        resp = fed.get("hs2.example", f"{FED}/event_auth/{rid}/{q(eid)}")
        assert resp.status == 200, (r.labels[eid], resp)
        got = [json.dumps(p, sort_keys=True) for p in resp.json["auth_chain"]]
        got_ids = set()
        for p in resp.json["auth_chain"]:
            match = [e for e, ev in r.events
                     if json.dumps(ev, sort_keys=True) == json.dumps(p, sort_keys=True)]
            assert match, (r.labels[eid], p)
            got_ids.add(match[0])
        assert len(got) == len(got_ids)
        assert got_ids == r.auth_chain([eid]), (r.labels[eid], got_ids ^ r.auth_chain([eid]))


def test_077_003_state_ids_and_state(room, fed):
    keys, r, ids = room
    rid = q(r.room_id)
    for eid, _ in r.events:
        if eid in r.rejected:
            continue
        want = set(r.before[eid].values())
        resp = fed.get("hs2.example", f"{FED}/state_ids/{rid}?event_id={q(eid)}")
        assert resp.status == 200, (r.labels[eid], resp)
        assert set(resp.json["pdu_ids"]) == want, r.labels[eid]
        assert set(resp.json["auth_chain_ids"]) == r.auth_chain(want), \
            (r.labels[eid], set(resp.json["auth_chain_ids"]) ^ r.auth_chain(want))
        resp = fed.get("hs2.example", f"{FED}/state/{rid}?event_id={q(eid)}")
        assert resp.status == 200, (r.labels[eid], resp)
        by_json = {json.dumps(ev, sort_keys=True): e for e, ev in r.events}
        got_pdus = {by_json[json.dumps(p, sort_keys=True)] for p in resp.json["pdus"]}
        got_chain = {by_json[json.dumps(p, sort_keys=True)] for p in resp.json["auth_chain"]}
        assert got_pdus == want, r.labels[eid]
        assert got_chain == r.auth_chain(want), (r.labels[eid], got_chain ^ r.auth_chain(want))


def test_077_004_backfill_and_gme(room, fed):
    keys, r, ids = room
    rid = q(r.room_id)
    accepted = [e for e, _ in r.events if e not in r.rejected]
    resp = fed.get("hs2.example", f"{FED}/backfill/{rid}?v={q(ids['tip'])}&limit=100")
    assert resp.status == 200, resp
    by_json = {json.dumps(redact12(ev), sort_keys=True): e for e, ev in r.events}
    by_json.update({json.dumps(ev, sort_keys=True): e for e, ev in r.events})
    got = [by_json[json.dumps(p, sort_keys=True)] for p in resp.json["pdus"]]
    assert set(got) == set(accepted) and len(got) == len(accepted)
    assert got[-1] == r.create_id
    body = {"earliest_events": [], "latest_events": [ids["tip"]], "limit": 100}
    resp = fed.post("hs2.example", f"{FED}/get_missing_events/{rid}", body)
    assert resp.status == 200, resp
    got = [by_json[json.dumps(p, sort_keys=True)] for p in resp.json["events"]]
    assert set(got) == set(accepted) - {ids["tip"]}
    assert got[0] == r.create_id


def test_077_005_timestamp_to_event(room, fed):
    keys, r, ids = room
    rid = q(r.room_id)
    for key in ("v1", "tip"):
        eid = ids[key]
        ts = r.by_id[eid]["origin_server_ts"]
        for d in ("f", "b"):
            resp = fed.get("hs2.example", f"{FED}/timestamp_to_event/{rid}?ts={ts}&dir={d}")
            assert resp.status == 200, resp
            assert resp.json == {"event_id": eid, "origin_server_ts": ts}
    ts = r.by_id[r.create_id]["origin_server_ts"]
    resp = fed.get("hs2.example", f"{FED}/timestamp_to_event/{rid}?ts={ts - 5}&dir=f")
    assert resp.status == 200 and resp.json["event_id"] == r.create_id, resp
    # the rejected PL event is never found
    ts = r.by_id[ids["bad"]]["origin_server_ts"]
    resp = fed.get("hs2.example", f"{FED}/timestamp_to_event/{rid}?ts={ts}&dir=f")
    assert resp.status == 200 and resp.json["event_id"] != ids["bad"], resp


def test_077_006_acl_and_outsiders(room, fed):
    keys, r, ids = room
    rid = q(r.room_id)
    tip = ids["tip"]
    paths = [f"{FED}/state_ids/{rid}?event_id={q(tip)}", f"{FED}/state/{rid}?event_id={q(tip)}",
             f"{FED}/event_auth/{rid}/{q(tip)}", f"{FED}/backfill/{rid}?v={q(tip)}&limit=5"]
    for origin in ("evil.example", "hs4.example"):
        for p in paths:
            resp = fed.get(origin, p)
            assert resp.status == 403, (origin, p, resp)
        resp = fed.post(origin, f"{FED}/get_missing_events/{rid}",
                        {"earliest_events": [], "latest_events": [tip], "limit": 5})
        assert resp.status == 403, (origin, resp)
    # the creator's own server and an additional creator's server are in
    for origin in ("hs1.example", "hs3.example"):
        resp = fed.get(origin, paths[0])
        assert resp.status == 200, (origin, resp)


def test_077_007_room_id_forms_in_path(room, fed):
    """The room ID has no server part; '!' encoded or not, same answer."""
    keys, r, ids = room
    tip = ids["tip"]
    a = fed.get("hs2.example", f"{FED}/state_ids/{q(r.room_id)}?event_id={q(tip)}")
    b = fed.get("hs2.example", f"{FED}/state_ids/{r.room_id}?event_id={tip}")
    assert a.status == b.status == 200, (a, b)
    assert a.json == b.json
    # A server part appended to the v12 room ID names no room
    c = fed.get("hs2.example", f"{FED}/state_ids/{q(r.room_id + ':hs1.example')}"
                f"?event_id={q(tip)}")
    assert c.status in (403, 404), c
    # The create event's ID with '$' is no room ID
    d = fed.get("hs2.example", f"{FED}/state_ids/{q(r.create_id)}?event_id={q(tip)}")
    assert d.status in (400, 403, 404), d


# ---------------------------------------------------------------- v11 redaction of v12 events

def build_hidden(keys):
    """Events of many kinds under 'joined' before hs2's first member joins:
    hs2 gets each as the v11 redaction (v12 keeps it)."""
    r = V12Room(keys, ts0=1711000000000)
    r.create(A, additional_creators=[C], extra_content={"m.federate": True, "x": {"y": 1}})
    r.join(A, c={"displayname": "Alice", "avatar_url": "mxc://a/b"})
    r.pl(A, {"users": {}, "invite": 0, "notifications": {"room": 20}, "historical": 100})
    r.make("m.room.history_visibility", A, {"history_visibility": "joined", "extra": 1},
           state_key="")
    hidden = []
    allow = [{"type": "m.room_membership", "room_id": "!x"}]
    hidden.append(r.make("m.room.join_rules", A,
                         {"join_rule": "restricted", "allow": allow, "extra": 2}, state_key=""))
    hidden.append(r.join("@erin:hs5.example", c={"join_authorised_via_users_server": A,
                                                 "displayname": "E", "reason": "r"},
                         signers=["hs5.example", "hs1.example"]))
    m = r.msg(A, "to be redacted")
    hidden.append(r.make("m.room.redaction", A, {"redacts": m, "reason": "why"},
                         label="redaction"))
    hidden.append(r.make("m.room.server_acl", A, {"allow": ["*"], "deny": []}, state_key=""))
    hidden.append(r.make("m.room.aliases", A, {"aliases": ["#a:hs1.example"]},
                         state_key="hs1.example"))
    hidden.append(r.pl(A, {"users": {}, "invite": 5, "redact": 7, "events": {"a": 1},
                           "events_default": 0, "state_default": 50, "ban": 50, "kick": 50,
                           "users_default": 0, "notifications": {"room": 1}}))
    hidden.append(r.make("m.room.encryption", A, {"algorithm": "m.megolm.v1.aes-sha2"},
                         state_key=""))
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    r.join(B)
    r.msg(B, "end")
    return r, hidden, m


@pytest.fixture(scope="module")
def hidden_room(build_env, postgres, workdir, room):
    keys = room[0]
    r, hidden, m = build_hidden(keys)
    import_ok(build_env, postgres, workdir, "hidden", r.lines(), keys)
    return r, hidden, m


def test_077_008_hidden_events_redacted_by_v11_rules(hidden_room, room, fed, postgres):
    keys = room[0]
    r, hidden, m = hidden_room
    got = db_events(postgres, r.room_id)
    assert not verdict_diff(r, got), verdict_diff(r, got)
    for eid in hidden + [m]:
        resp = fed.get("hs2.example", f"{FED}/event/{q(eid)}")
        assert resp.status == 200, resp
        verify_served_redacted(keys, r, eid, resp.json["pdus"][0])
    # the creator's own server sees them whole (it was joined), but the
    # redacted message only redacted
    for eid in hidden:
        resp = fed.get("hs1.example", f"{FED}/event/{q(eid)}")
        assert json.dumps(r.by_id[eid], separators=(",", ":"), ensure_ascii=False) \
            in resp.body, r.labels[eid]
    resp = fed.get("hs1.example", f"{FED}/event/{q(m)}")
    verify_served_redacted(keys, r, m, resp.json["pdus"][0])
    # the create event: nothing of its content is ever taken off (v11 rules)
    resp = fed.get("hs2.example", f"{FED}/event/{q(r.create_id)}")
    assert resp.json["pdus"][0] == r.by_id[r.create_id]


def test_077_009_room_id_is_case_sensitive(room, fed):
    """Room IDs are compared as they are: the same hash with other letter
    case names no room known here."""
    keys, r, ids = room
    other = r.room_id[0] + r.room_id[1:].swapcase()
    tip = ids["tip"]
    resp = fed.get("hs2.example", f"{FED}/state_ids/{q(other)}?event_id={q(tip)}")
    assert resp.status in (403, 404), resp
    resp = fed.get("hs2.example", f"{FED}/backfill/{q(other)}?v={q(tip)}&limit=3")
    assert resp.status in (403, 404) or resp.json.get("pdus") == [], resp
