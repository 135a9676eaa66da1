# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""matrix-fed import with the authorization rules and state resolution:
events that fail the auth rules are stored as rejected (state after =
state before, never a forward extremity, redactions by them not applied);
generated rooms whose concurrent branches conflict in state import without
stopping, with the state the generator predicts from the state resolution
rules; and importing the same events in any order (or in two parts, the
later part first) gives the same state everywhere and the same rejected
set."""
import json
import os
import random

import pytest
import signedjson.sign

from test_020_genroom import b64, event_id, gen, redact, reference_hash
from test_021_import import (import_ok, load_db, new_db, query_json, read_lines, resign,
                             server_keys, state_map, write_lines)

CONFLICT_VERSIONS = ["2", "10", "11", "12"]
CONFLICT_EVENTS = 300


def gen_conflicts(build_env, out, version, seed=3, events=CONFLICT_EVENTS):
    return gen(build_env, out, version, seed=seed, events=events, branchiness=0.35,
               extra=["--conflicts", "0.6"])


def rejected_rows(postgres, db):
    return {r["event_id"]: r["rejected_reason"] for r in query_json(
        postgres, db, "SELECT event_id, rejected_reason FROM mxf_events"
                      " WHERE rejected_reason IS NOT NULL")}


def states_by_event(dbd):
    return {eid: (state_map(dbd, e["state_before"]), state_map(dbd, e["state_after"]))
            for eid, e in dbd["events"].items()}


def current_state(dbd):
    [room] = dbd["rooms"]
    return state_map(dbd, room["current_state_group"])


# ---------------------------------------------------------------------------
# Conflicting branches


@pytest.fixture(scope="module", params=CONFLICT_VERSIONS)
def conflicted(request, build_env, postgres, tmp_path_factory):
    version = request.param
    d = gen_conflicts(build_env, tmp_path_factory.mktemp(f"conf-v{version}") / "room", version)
    room = os.path.join(d, "room.jsonl")
    keys = os.path.join(d, "keys", "all.json")
    with open(os.path.join(d, "expected.json")) as f:
        summary = json.load(f)
    with open(os.path.join(d, "expected.jsonl")) as f:
        expect = [json.loads(line) for line in f]
    db = new_db(postgres, build_env)
    out = import_ok(build_env, postgres, db, room, keys)
    return {"version": version, "room": room, "keys": keys, "lines": read_lines(room),
            "summary": summary, "expect": expect, "db": db, "out": out,
            "dbd": load_db(postgres, db)}


def test_022_001_conflicting_merges_import(conflicted, postgres):
    """The merges of conflicting branches no longer stop the import; the
    state at every event is what the generator predicts from the state
    resolution rules (not the union of the branches), and nothing is
    rejected (the generator only makes authorised events)."""
    out, summary, dbd = conflicted["out"], conflicted["summary"], conflicted["dbd"]
    counts = summary["counts"]
    assert counts["conflicting_forks"] >= 5, counts
    kinds = [k for k in counts if k.startswith("conflicts/")]
    assert len(kinds) >= 3, counts
    assert f"imported {CONFLICT_EVENTS} new events" in out
    assert "auth rules: 0 rejected" in out
    resolved = int(out.split("state resolution: ")[1].split(" merges")[0])
    assert resolved >= counts["conflicting_forks"] // 2, out
    assert rejected_rows(postgres, conflicted["db"]) == {}
    for x in conflicted["expect"]:
        e = dbd["events"][x["event_id"]]
        assert state_map(dbd, e["state_before"]) == x["state_before"], x["i"]
        assert state_map(dbd, e["state_after"]) == x["state_after"], x["i"]
    assert current_state(dbd) == summary["final_state"]


def test_022_002_prediction_is_not_the_union(conflicted):
    """At some merge of a conflicting fork the state is not the union of
    the branches' states (so the test above checks resolution)."""
    expect = conflicted["expect"]
    after = {x["event_id"]: x["state_after"] for x in expect}
    differs = 0
    for x in expect:
        if len(x["prev_events"]) != 2 or not all(p in after for p in x["prev_events"]):
            continue
        a, b = (after[p] for p in x["prev_events"])
        union = dict(a)
        for k, v in b.items():
            if a.get(k) != v:
                union[k] = v
        union_ab = dict(b)
        for k, v in a.items():
            if b.get(k) != v:
                union_ab[k] = v
        if x["state_before"] not in (union, union_ab):
            differs += 1
    assert differs > 0


def test_022_003_order_independence(conflicted, build_env, postgres, tmp_path):
    """Several random input orders, and the second half imported before the
    first: identical state before and after every event, identical
    rejected sets and current state."""
    base = conflicted["dbd"]
    want = states_by_event(base)
    want_rejected = rejected_rows(postgres, conflicted["db"])
    lines = conflicted["lines"]
    rng = random.Random(22 + int(conflicted["version"]))
    for k in range(3):
        shuffled = list(lines)
        rng.shuffle(shuffled)
        path = write_lines(tmp_path / f"order{k}.jsonl", shuffled)
        db = new_db(postgres, build_env)
        import_ok(build_env, postgres, db, path, conflicted["keys"])
        got = load_db(postgres, db)
        assert states_by_event(got) == want, k
        assert rejected_rows(postgres, db) == want_rejected
        assert current_state(got) == current_state(base)
    half = len(lines) // 2
    db = new_db(postgres, build_env)
    import_ok(build_env, postgres, db,
              write_lines(tmp_path / "second.jsonl", [lines[0]] + lines[half:]),
              conflicted["keys"])
    import_ok(build_env, postgres, db, write_lines(tmp_path / "first.jsonl", lines[:half]),
              conflicted["keys"])
    got = load_db(postgres, db)
    assert states_by_event(got) == want
    assert rejected_rows(postgres, db) == want_rejected
    assert current_state(got) == current_state(base)


# ---------------------------------------------------------------------------
# Rejected events


def room_parts(d, version):
    """A generated room's lines, events, event IDs, events by ID, summary,
    signing keys, final state, create and power levels event IDs, power
    levels content and creator."""
    lines = read_lines(os.path.join(d, "room.jsonl"))
    events = [json.loads(x) for x in lines]
    ids = [event_id(e, version) for e in events]
    by_id = dict(zip(ids, events))
    with open(os.path.join(d, "expected.json")) as f:
        summary = json.load(f)
    final = summary["final_state"]
    create_id, pl_id = final["m.room.create|"], final["m.room.power_levels|"]
    return (lines, events, ids, by_id, summary, server_keys(str(d)), final, create_id, pl_id,
            by_id[pl_id]["content"], summary["creator"])


@pytest.fixture(scope="module")
def crafted(build_env, postgres, tmp_path_factory):
    """A small v10 room plus hand-made events that the auth rules reject."""
    version = "10"
    d = gen(build_env, tmp_path_factory.mktemp("rej") / "room", version, seed=9, events=60,
            branchiness=0.0)
    lines, events, ids, by_id, summary, keys, final, create_id, pl_id, pl, admin = \
        room_parts(d, version)
    # A joined member without power.
    weak = sorted(k.split("|", 1)[1] for k, v in final.items()
                  if k.startswith("m.room.member|") and by_id[v]["content"]["membership"] == "join"
                  and k.split("|", 1)[1] != admin
                  and pl["users"].get(k.split("|", 1)[1], 0) < 50)[0]
    tip = ids[-1]
    depth = max(e["depth"] for e in events)
    ts = max(e["origin_server_ts"] for e in events)

    def make(sender, etype, content, prevs, auths, state_key=None):
        nonlocal ts
        ts += 1000
        ev = {"auth_events": auths, "content": content, "depth": depth + 1, "origin": sender.split(":")[1],
              "origin_server_ts": ts, "prev_events": prevs, "room_id": summary["room_id"],
              "sender": sender, "type": etype}
        if state_key is not None:
            ev["state_key"] = state_key
        ev = resign(ev, version, keys)
        return ev, event_id(ev, version)

    stranger = "@stranger:hs2.example"
    crafted = {}
    # A message by a user who never joined.
    crafted["non_member"] = make(stranger, "m.room.message", {"body": "hi", "msgtype": "m.text"},
                                 [tip], [create_id, pl_id])
    # Power levels raised by a user without power.
    crafted["weak_pl"] = make(weak, "m.room.power_levels",
                              dict(pl, users=dict(pl["users"], **{weak: 100})), [tip],
                              [create_id, pl_id, final[f"m.room.member|{weak}"]], "")
    # An auth event nobody has.
    crafted["unknown_auth"] = make(admin, "m.room.message", {"body": "x", "msgtype": "m.text"},
                                   [tip], [create_id, pl_id, final[f"m.room.member|{admin}"],
                                           "$" + "A" * 43])
    # A topic citing the rejected power levels as its auth event.
    crafted["cites_rejected"] = make(weak, "m.room.topic", {"topic": "mine"},
                                     [crafted["weak_pl"][1]],
                                     [create_id, crafted["weak_pl"][1],
                                      final[f"m.room.member|{weak}"]], "")
    # An accepted message after the rejected power levels (its child).
    crafted["child_ok"] = make(admin, "m.room.message", {"body": "ok", "msgtype": "m.text"},
                               [crafted["weak_pl"][1]],
                               [create_id, pl_id, final[f"m.room.member|{admin}"]])
    # A state key of 70 four-byte characters: within 255 code points, over 255
    # bytes. Up to v10 kept as rejected (the reference homeserver long counted
    # code points, so rooms hold such events), not refused.
    crafted["long_state_key"] = make(admin, "my.room.breaker", {}, [tip],
                                     [create_id, pl_id, final[f"m.room.member|{admin}"]],
                                     "\U0001F4A5" * 70)
    # A redaction by the stranger of a message: rejected, so not applied.
    target = next(i for i, e in zip(ids, events) if e["type"] == "m.room.message"
                  and i not in summary["redacted"])
    red = make(stranger, "m.room.redaction", {"reason": "no"}, [tip], [create_id, pl_id])
    red[0]["redacts"] = target
    red = (resign(red[0], version, keys), None)
    crafted["redaction"] = (red[0], event_id(red[0], version))
    extra = [json.dumps(ev, separators=(",", ":"), sort_keys=True).encode()
             for ev, _ in crafted.values()]
    path = write_lines(os.path.join(d, "crafted.jsonl"), lines + extra)
    db = new_db(postgres, build_env)
    out = import_ok(build_env, postgres, db, path, os.path.join(d, "keys", "all.json"))
    return {"db": db, "out": out, "dbd": load_db(postgres, db), "ids": ids,
            "crafted": {k: v[1] for k, v in crafted.items()}, "final": final,
            "target": target, "lines": lines + extra, "keys": os.path.join(d, "keys", "all.json")}


REJECTED = {"non_member": "not joined", "weak_pl": "power level",
            "unknown_auth": "unknown", "cites_rejected": "rejected", "redaction": "not joined",
            "long_state_key": "state_key is 280 bytes long"}


def test_022_010_rejected_rows(crafted, postgres):
    out, dbd, c = crafted["out"], crafted["dbd"], crafted["crafted"]
    assert f"auth rules: {len(REJECTED)} rejected (1 for auth events not known)" in out
    rej = rejected_rows(postgres, crafted["db"])
    assert set(rej) == {c[k] for k in REJECTED}
    for name, words in REJECTED.items():
        assert words in rej[c[name]], (name, rej[c[name]])
        e = dbd["events"][c[name]]
        # Stored with the state before it, which it does not change.
        assert e["state_before"] is not None
        assert e["state_after"] == e["state_before"]
    assert dbd["events"][c["child_ok"]]["rejected_reason"] is None
    # The state before the accepted child is the state before the rejected event.
    assert dbd["events"][c["child_ok"]]["state_before"] == \
        dbd["events"][c["weak_pl"]]["state_before"]
    assert state_map(dbd, dbd["events"][c["child_ok"]]["state_before"]) == crafted["final"]


def test_022_011_rejected_do_not_count(crafted, postgres):
    """Current state: rejected events are no forward extremities and change
    nothing; the rejected redaction redacts nothing."""
    dbd = crafted["dbd"]
    assert current_state(dbd) == crafted["final"]
    assert dbd["events"][crafted["target"]]["redacted_because"] is None
    assert query_json(postgres, crafted["db"],
                      "SELECT r.* FROM mxf_redactions r JOIN mxf_events e USING (event_nid)"
                      f" WHERE e.event_id = '{crafted['crafted']['redaction']}'") == []


def test_022_012_rejected_served_nowhere(crafted, postgres):
    """The read path's SQL answers nothing for a rejected event: not as an
    event's auth chain, not as state at it."""
    db, c = crafted["db"], crafted["crafted"]
    [room] = crafted["dbd"]["rooms"]
    for name in REJECTED:
        rows = query_json(postgres, db, "SELECT * FROM mxf_event_auth("
                                        f"{room['room_nid']}, '{c[name]}')")
        assert [r["kind"] for r in rows] == ["!"], (name, rows)


def test_022_013_rejected_order_independent(crafted, build_env, postgres, tmp_path):
    lines = list(crafted["lines"])
    random.Random(5).shuffle(lines)
    db = new_db(postgres, build_env)
    import_ok(build_env, postgres, db, write_lines(tmp_path / "shuffled.jsonl", lines),
              crafted["keys"])
    assert rejected_rows(postgres, db) == rejected_rows(postgres, crafted["db"])
    got = load_db(postgres, db)
    assert states_by_event(got) == states_by_event(crafted["dbd"])
    assert current_state(got) == crafted["final"]


# ---------------------------------------------------------------------------
# Redactions in room versions 1 and 2


@pytest.mark.parametrize("version", ["1", "2"])
def test_022_020_v1_redaction_by_event_id_domain(build_env, postgres, tmp_path, version):
    """In room versions 1 and 2 a redaction is checked by auth rule 11: a
    sender without the redact level may redact an event whose event ID has
    the domain of the redaction's own ID, whoever sent it. Accepted, it is
    applied (the target is served redacted); the sender-domain condition of
    later versions does not apply. One with another domain is rejected."""
    d = gen(build_env, tmp_path / "room", version, seed=21, events=200, branchiness=0.0)
    lines, events, _, by_id, summary, keys, final, create_id, pl_id, pl, admin = \
        room_parts(d, version)
    admin_server = admin.split(":", 1)[1]
    redact_level = int(pl.get("redact", 50))
    weak = sorted(k.split("|", 1)[1] for k, v in final.items()
                  if k.startswith("m.room.member|")
                  and by_id[v]["content"]["membership"] == "join"
                  and k.split("|", 1)[1].split(":", 1)[1] != admin_server
                  and int(pl["users"].get(k.split("|", 1)[1], pl.get("users_default", 0)))
                  < redact_level)[0]
    weak_server = weak.split(":", 1)[1]
    tip, depth = events[-1]["event_id"], max(e["depth"] for e in events)
    ts = max(e["origin_server_ts"] for e in events)

    def pair(eid):
        return [eid, {"sha256": b64(reference_hash(by_id[eid], version))}]

    def make(eid, sender, etype, content, prevs, auths, **extra):
        nonlocal ts, depth
        ts += 1000
        depth += 1
        ev = {"auth_events": [pair(a) for a in auths], "content": content, "depth": depth,
              "event_id": eid, "origin": sender.split(":")[1], "origin_server_ts": ts,
              "prev_events": [pair(p) for p in prevs], "room_id": summary["room_id"],
              "sender": sender, "type": etype, **extra}
        ev = resign(ev, version, keys)
        domain = eid.split(":", 1)[1]
        if domain != sender.split(":", 1)[1]:
            ev["signatures"].update(signedjson.sign.sign_json(
                redact(ev, version), domain, keys[domain])["signatures"])
        by_id[eid] = ev
        return ev

    member = final[f"m.room.member|{admin}"]
    # Sent by the admin, with an event ID of the weak member's server.
    target = make(f"$target:{weak_server}", admin, "m.room.message",
                  {"body": "secret", "msgtype": "m.text"}, [tip], [create_id, pl_id, member])
    other = make(f"$other:{admin_server}", admin, "m.room.message",
                 {"body": "kept", "msgtype": "m.text"}, [target["event_id"]],
                 [create_id, pl_id, member])
    weak_member = final[f"m.room.member|{weak}"]
    allowed = make(f"$red1:{weak_server}", weak, "m.room.redaction", {}, [other["event_id"]],
                   [create_id, pl_id, weak_member], redacts=target["event_id"])
    refused = make(f"$red2:{weak_server}", weak, "m.room.redaction", {}, [allowed["event_id"]],
                   [create_id, pl_id, weak_member], redacts=other["event_id"])
    crafted = [target, other, allowed, refused]
    path = write_lines(tmp_path / "crafted.jsonl",
                       lines + [json.dumps(e, sort_keys=True).encode() for e in crafted])
    db = new_db(postgres, build_env)
    import_ok(build_env, postgres, db, path, os.path.join(d, "keys", "all.json"),
              extra=["--require-signatures"])
    rows = {r["event_id"]: r for r in query_json(
        postgres, db, "SELECT event_id, rejected_reason, redacted_because, redacted_pdu"
                      "  FROM mxf_events")}
    assert rows[allowed["event_id"]]["rejected_reason"] is None
    assert "redact" in (rows[refused["event_id"]]["rejected_reason"] or ""), rows[refused[
        "event_id"]]
    assert rows[target["event_id"]]["redacted_because"] == allowed["event_id"]
    assert json.loads(rows[target["event_id"]]["redacted_pdu"]) == \
        dict(redact(target, version), signatures=target["signatures"])
    assert rows[other["event_id"]]["redacted_because"] is None
