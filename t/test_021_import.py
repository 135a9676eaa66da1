# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""matrix-fed import and export against a real PostgreSQL, checked against
what matrix-fed gen-room knows about the rooms it makes (expected.jsonl,
expected.json) and against Python's own reading of the events, never against
the importer's logic: edges, depth, the state before and after every event,
visibility rows, redactions, current state, joined servers and the ACL; bad
lines (each reported with its line number, the database unchanged); an
import killed mid-way; idempotent re-import; export round trips; any input
order; events whose prev_events are missing (the edge of history)."""
import itertools
import json
import os
import random
import re
import select
import signal
import subprocess
import time

import pytest
import signedjson.key
import signedjson.sign
from canonicaljson import encode_canonical_json

from test_020_genroom import content_hash, event_id, gen, redact

VERSIONS = ["1", "3", "6", "10", "11", "12"]
EVENTS = 400
BIG_EVENTS = 12000

TABLES = ["mxf_rooms", "mxf_room_servers", "mxf_visibility", "mxf_events",
          "mxf_event_edges", "mxf_auth_edges", "mxf_redactions", "mxf_state_groups",
          "mxf_state_entries", "mxf_server_keys", "mxf_auth_chain_pos",
          "mxf_auth_chain_links"]

_dbs = itertools.count()


# ---------------------------------------------------------------------------
# Helpers


def new_db(postgres, build_env, template=None):
    """A fresh database with the schema (or a copy of @template)."""
    name = f"imp_{os.getpid()}_{next(_dbs)}"
    if template:
        postgres.psql("postgres", f"CREATE DATABASE {name} TEMPLATE {template}")
        return name
    postgres.psql("postgres", f"CREATE DATABASE {name}")
    subprocess.run([build_env.cli, "db", "init", "--db", postgres.conninfo(name)], check=True,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return name


def cli(build_env, *args, stdin=None):
    return subprocess.run([build_env.cli, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          input=stdin, env=build_env.sanitizer_env(os.environ.get("TMPDIR", "/tmp")))


def import_file(build_env, postgres, db, path, keys=None, extra=()):
    args = ["import", "--db", postgres.conninfo(db), "--quiet", *extra]
    if keys:
        args += ["--keys", keys]
    return cli(build_env, *args, path)


def import_ok(build_env, postgres, db, path, keys=None, extra=()):
    r = import_file(build_env, postgres, db, path, keys, extra)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


def query_json(postgres, db, sql):
    """Rows of @sql as a list of dicts."""
    out = postgres.psql(db, f"SELECT coalesce(json_agg(t), '[]') FROM ({sql}) t")
    return json.loads(out)


def snapshot(postgres, db):
    """Row counts and a digest of every row of every table."""
    parts = ", ".join(
        f"'{t}', (SELECT json_build_array(count(*), md5(coalesce(string_agg(x::text, '|' "
        f"ORDER BY x::text), ''))) FROM {t} x)" for t in TABLES)
    return json.loads(postgres.psql(db, f"SELECT json_build_object({parts})"))


def counts(postgres, db):
    return {t: v[0] for t, v in snapshot(postgres, db).items()}


DB_EVENTS = """
SELECT e.event_id, e.event_nid, e.type, e.state_key, e.sender, e.depth, e.membership,
       e.origin_server_ts, e.state_before, e.state_after, e.vis_id, e.vis_after_id,
       e.redacted_because, e.redacted_pdu, e.signatures_verified, e.outlier,
       e.rejected_reason
  FROM mxf_events e ORDER BY e.event_nid"""

DB_EDGES = """
SELECT c.event_id, x.{col}_id AS ref, p.event_id AS resolved, x.{col}_nid AS nid
  FROM mxf_{table} x JOIN mxf_events c ON c.event_nid = x.event_nid
  LEFT JOIN mxf_events p ON p.event_nid = x.{col}_nid"""

DB_STATES = """
SELECT g.g AS group_id,
       coalesce(json_object_agg(s.type || '|' || s.state_key, e.event_id)
                FILTER (WHERE s.type IS NOT NULL), '{}') AS state
  FROM (SELECT state_before AS g FROM mxf_events UNION SELECT state_after FROM mxf_events
        UNION SELECT current_state_group FROM mxf_rooms) g
  LEFT JOIN LATERAL mxf_state_of(g.g) s ON true
  LEFT JOIN mxf_events e ON e.event_nid = s.event_nid
 WHERE g.g IS NOT NULL GROUP BY g.g"""


def load_db(postgres, db):
    """Everything the checks need, keyed by event ID."""
    events = {e["event_id"]: e for e in query_json(postgres, db, DB_EVENTS)}
    prevs, auths = {}, {}
    for rows, out in ((query_json(postgres, db, DB_EDGES.format(col="prev", table="event_edges")),
                       prevs),
                      (query_json(postgres, db, DB_EDGES.format(col="auth", table="auth_edges")),
                       auths)):
        for r in rows:
            out.setdefault(r["event_id"], {})[r["ref"]] = r["resolved"]
    states = {r["group_id"]: r["state"] for r in query_json(postgres, db, DB_STATES)}
    vis = {r["vis_id"]: r for r in query_json(postgres, db, "SELECT * FROM mxf_visibility")}
    rooms = query_json(postgres, db, "SELECT * FROM mxf_rooms")
    servers = {r["server_name"]: r["joined"]
               for r in query_json(postgres, db, "SELECT * FROM mxf_room_servers")}
    return {"events": events, "prevs": prevs, "auths": auths, "states": states, "vis": vis,
            "rooms": rooms, "servers": servers}


def state_map(dbd, group):
    return None if group is None else dbd["states"][group]


def vis_of(dbd, vis_id):
    v = dbd["vis"][vis_id]
    return (v["history_visibility"], sorted(v["joined_servers"]), sorted(v["invited_servers"]))


def write_lines(path, lines):
    with open(path, "wb") as f:
        f.write(b"".join(line + b"\n" for line in lines))
    return str(path)


def read_lines(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data.endswith(b"\n")
    return data[:-1].split(b"\n")


def edge_ids(ev, key, version):
    return [x[0] for x in ev[key]] if int(version) <= 2 else list(ev[key])


def vis_from_state(state, by_id):
    """(history visibility, joined servers, invited servers) of a state map,
    read from the events themselves."""
    hv_id = state.get("m.room.history_visibility|")
    hv = by_id[hv_id]["content"].get("history_visibility", "shared") if hv_id else "shared"
    if hv not in ("world_readable", "shared", "invited", "joined"):
        hv = "shared"
    joined, invited = set(), set()
    for key, eid in state.items():
        if key.startswith("m.room.member|"):
            m = by_id[eid]["content"]["membership"]
            server = key.split(":", 1)[1]
            if m == "join":
                joined.add(server)
            elif m == "invite":
                invited.add(server)
    return hv, sorted(joined), sorted(invited)


def server_keys(room_dir):
    """Signing keys of the generated servers, by server name."""
    keys = {}
    for name in os.listdir(os.path.join(room_dir, "keys")):
        if name.endswith(".key"):
            with open(os.path.join(room_dir, "keys", name)) as f:
                keys[name[:-4]] = signedjson.key.read_signing_keys(f)[0]
    return keys


def resign(ev, version, keys, rehash=True):
    """@ev with a fresh content hash and the sender's server's signature."""
    ev = {k: v for k, v in ev.items() if k != "signatures"}
    if rehash:
        ev["hashes"] = {"sha256": content_hash(ev)}
    server = ev["sender"].split(":", 1)[1]
    signed = signedjson.sign.sign_json(redact(ev, version), server, keys[server])
    ev["signatures"] = signed["signatures"]
    return ev


def canonical(ev):
    return encode_canonical_json(ev)


# ---------------------------------------------------------------------------
# Fixtures


def late_join_room(build_env, tmp_path, version, seed):
    """A linear room of 150 events and its last join among the first 120:
    the directory, lines, key file, events, IDs, events by ID, what the
    generator expects of each, and the join's index."""
    d = gen(build_env, tmp_path / "room", version, seed=seed, events=150, branchiness=0)
    lines = read_lines(os.path.join(d, "room.jsonl"))
    keys = os.path.join(d, "keys", "all.json")
    evs = [json.loads(x) for x in lines]
    ids = [event_id(ev, version) for ev in evs]
    with open(os.path.join(d, "expected.jsonl")) as f:
        expect = {x["event_id"]: x for x in map(json.loads, f)}
    j = max(i for i, ev in enumerate(evs[:120]) if ev["type"] == "m.room.member"
            and ev["content"].get("membership") == "join")
    return d, lines, keys, evs, ids, dict(zip(ids, evs)), expect, j


@pytest.fixture(scope="module", params=VERSIONS)
def imported(request, build_env, postgres, tmp_path_factory):
    """A generated room of each version, imported into a fresh database."""
    version = request.param
    d = gen(build_env, tmp_path_factory.mktemp(f"imp-v{version}") / "room", version,
            seed=11, events=EVENTS, branchiness=0.2)
    room = os.path.join(d, "room.jsonl")
    keys = os.path.join(d, "keys", "all.json")
    lines = read_lines(room)
    events = [json.loads(line) for line in lines]
    with open(os.path.join(d, "expected.json")) as f:
        summary = json.load(f)
    with open(os.path.join(d, "expected.jsonl")) as f:
        expect = [json.loads(line) for line in f]
    db = new_db(postgres, build_env)
    out = import_ok(build_env, postgres, db, room, keys)
    ids = [event_id(ev, version) for ev in events]
    return {"version": version, "dir": str(d), "room": room, "keys": keys, "lines": lines,
            "events": events, "ids": ids, "by_id": dict(zip(ids, events)),
            "summary": summary, "expect": expect, "db": db, "out": out,
            "dbd": load_db(postgres, db)}


@pytest.fixture(scope="session")
def big_room(build_env, tmp_path_factory):
    d = gen(build_env, tmp_path_factory.mktemp("imp-big") / "room", "10", seed=5,
            events=BIG_EVENTS, branchiness=0.1)
    return str(d)


def acl_allows(acl, server_name):
    """The spec's server ACL matching (m.room.server_acl): the host without
    its port, case-insensitive globs ("*" any run, "?" one character); IP
    literals denied unless allow_ip_literals; deny before allow; no allow
    match: denied."""
    host = server_name
    if host.startswith("["):
        host = host[:host.index("]") + 1]
    elif ":" in host:
        host = host.rsplit(":", 1)[0]

    def match(pattern):
        rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
        return re.fullmatch(rx, host, re.IGNORECASE | re.DOTALL) is not None

    ip_literal = host.startswith("[") or re.fullmatch(r"[0-9.]+", host) is not None
    if acl.get("allow_ip_literals", True) is False and ip_literal:
        return False
    if any(isinstance(p, str) and match(p) for p in acl.get("deny", [])):
        return False
    return any(isinstance(p, str) and match(p) for p in acl.get("allow", []))


# ---------------------------------------------------------------------------
# Generated rooms of every version


class TestImportGenerated:

    def test_021_001_summary(self, imported):
        out = imported["out"]
        n = len(imported["lines"])
        assert f"imported {n} new events ({n} PDUs; 0 already known" in out
        assert f"signatures: {n} verified, 0 unverifiable" in out
        assert f"{len(imported['summary']['redacted'])} by m.room.redaction" in out
        assert "0 by content hash mismatch" in out

    def test_021_002_events_edges_depth(self, imported):
        dbd, version = imported["dbd"], imported["version"]
        assert len(dbd["events"]) == len(imported["events"]) == EVENTS
        nids = {}
        for x in imported["expect"]:
            e = dbd["events"][x["event_id"]]
            nids[x["event_id"]] = e["event_nid"]
            assert e["type"] == x["type"]
            assert e["state_key"] == x.get("state_key")
            assert e["sender"] == x["sender"]
            assert e["depth"] == x["depth"]
            assert e["origin_server_ts"] == x["origin_server_ts"]
            assert e["signatures_verified"] is True
            assert e["outlier"] is False and e["rejected_reason"] is None
            ev = imported["by_id"][x["event_id"]]
            assert edge_ids(ev, "prev_events", version) == x["prev_events"]
            # Every edge, with its target resolved to the stored event.
            assert dbd["prevs"].get(x["event_id"], {}) == {p: p for p in x["prev_events"]}
            assert dbd["auths"].get(x["event_id"], {}) == {a: a for a in x["auth_events"]}
            if x["type"] == "m.room.member":
                assert e["membership"] == ev["content"]["membership"]
            else:
                assert e["membership"] is None
        # Arrival order is a topological order.
        for x in imported["expect"]:
            for p in x["prev_events"] + x["auth_events"]:
                assert nids[p] < nids[x["event_id"]]

    def test_021_003_state_before_after(self, imported):
        dbd = imported["dbd"]
        for x in imported["expect"]:
            e = dbd["events"][x["event_id"]]
            assert state_map(dbd, e["state_before"]) == x["state_before"], x["i"]
            assert state_map(dbd, e["state_after"]) == x["state_after"], x["i"]
            if "state_key" not in x:
                assert e["state_after"] == e["state_before"]

    def test_021_004_visibility(self, imported):
        dbd, by_id = imported["dbd"], imported["by_id"]
        for x in imported["expect"]:
            e = dbd["events"][x["event_id"]]
            want = (x["history_visibility"], sorted(x["joined_servers"]),
                    sorted(x["invited_servers"]))
            assert vis_of(dbd, e["vis_id"]) == want, x["i"]
            assert vis_from_state(x["state_before"], by_id) == want, x["i"]
            after = vis_from_state(x["state_after"], by_id)
            if x["type"] in ("m.room.member", "m.room.history_visibility") and after != want:
                assert e["vis_after_id"] is not None
                assert vis_of(dbd, e["vis_after_id"]) == after, x["i"]
            else:
                assert e["vis_after_id"] is None, x["i"]

    def test_021_005_redactions(self, imported):
        dbd, version, by_id = imported["dbd"], imported["version"], imported["by_id"]
        redacted = imported["summary"]["redacted"]
        assert redacted, "the generator made no redactions"
        got = {eid: e["redacted_because"] for eid, e in dbd["events"].items()
               if e["redacted_because"]}
        assert got == redacted
        for eid, e in dbd["events"].items():
            ev = by_id[eid]
            x_vis = [vis_of(dbd, e["vis_id"])[0]]
            if e["vis_after_id"]:
                x_vis.append(vis_of(dbd, e["vis_after_id"])[0])
            restricted = any(v in ("invited", "joined") for v in x_vis)
            if eid in redacted or restricted:
                red = json.loads(e["redacted_pdu"])
                assert red == redact(ev, version)
                assert e["redacted_pdu"].encode() == canonical(red)
                assert red["hashes"] == ev["hashes"] and red["signatures"] == ev["signatures"]
                if ev["type"] == "m.room.message":
                    assert red["content"] == {}
            else:
                assert e["redacted_pdu"] is None, eid
        # Redaction targets are messages whose content the redacted form drops.
        for target in redacted:
            assert by_id[target]["type"] == "m.room.message"
            assert by_id[target]["content"]

    def test_021_012_references(self, imported, postgres):
        """The references the schema leaves to the importer (sql/004, sql/008):
        every one points at a row that exists."""
        dangling = postgres.psql(imported["db"], """
SELECT json_build_object(
  'edges', (SELECT count(*) FROM mxf_event_edges x
             WHERE NOT EXISTS (SELECT 1 FROM mxf_events e WHERE e.event_nid = x.event_nid)),
  'auth_edges', (SELECT count(*) FROM mxf_auth_edges x
             WHERE NOT EXISTS (SELECT 1 FROM mxf_events e WHERE e.event_nid = x.event_nid)),
  'event_rooms', (SELECT count(*) FROM mxf_events e
             WHERE NOT EXISTS (SELECT 1 FROM mxf_rooms r WHERE r.room_nid = e.room_nid)),
  'entries', (SELECT count(*) FROM mxf_state_entries x
             WHERE NOT EXISTS (SELECT 1 FROM mxf_state_groups g WHERE g.group_id = x.group_id)),
  'group_prev', (SELECT count(*) FROM mxf_state_groups x WHERE x.prev_group IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM mxf_state_groups g WHERE g.group_id = x.prev_group)),
  'group_rooms', (SELECT count(*) FROM mxf_state_groups x
             WHERE NOT EXISTS (SELECT 1 FROM mxf_rooms r WHERE r.room_nid = x.room_nid)),
  'vis_rooms', (SELECT count(*) FROM mxf_visibility x
             WHERE NOT EXISTS (SELECT 1 FROM mxf_rooms r WHERE r.room_nid = x.room_nid)),
  'event_groups', (SELECT count(*) FROM mxf_events e, unnest(ARRAY[e.state_before,
             e.state_after]) g WHERE g IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM mxf_state_groups s WHERE s.group_id = g)),
  'event_vis', (SELECT count(*) FROM mxf_events e, unnest(ARRAY[e.vis_id, e.vis_after_id]) v
             WHERE v IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM mxf_visibility x WHERE x.vis_id = v)))""")
        counts_ = json.loads(dangling)
        assert counts_ == {k: 0 for k in counts_}
        # And the groups chain back to a group without a predecessor.
        assert postgres.psql(imported["db"], "SELECT count(*) FROM mxf_state_groups"
                                             " WHERE prev_group >= group_id") == "0"

    def test_021_006_current_state(self, imported):
        dbd, summary, by_id = imported["dbd"], imported["summary"], imported["by_id"]
        [room] = dbd["rooms"]
        assert room["room_id"] == summary["room_id"]
        assert room["room_version"] == imported["version"]
        assert dbd["events"][imported["ids"][0]]["event_nid"] == room["create_event_nid"]
        final = summary["final_state"]
        assert state_map(dbd, room["current_state_group"]) == final
        acl = by_id[final["m.room.server_acl|"]]["content"]
        assert json.loads(room["current_acl"]) == acl
        joined = {}
        for key, eid in final.items():
            if key.startswith("m.room.member|") and by_id[eid]["content"]["membership"] == "join":
                server = key.split(":", 1)[1]
                joined[server] = joined.get(server, 0) + 1
        assert dbd["servers"] == joined
        assert sorted(joined) == sorted(summary["joined_servers"])

    def test_021_013_acl_decisions(self, imported, postgres):
        """Each server with joined members carries the current server ACL's
        decision (sql/009), as the spec's matching gives it."""
        [room] = imported["dbd"]["rooms"]
        acl = json.loads(room["current_acl"])
        rows = query_json(postgres, imported["db"],
                          "SELECT server_name, acl_allowed FROM mxf_room_servers")
        assert rows and len(rows) == len(imported["dbd"]["servers"])
        for r in rows:
            assert r["acl_allowed"] is acl_allows(acl, r["server_name"]), r
        # The generated ACL denies a server, so the decision is not constant.
        assert not acl_allows(acl, imported["summary"]["denied_server"])

    def test_021_013b_acl_decided_by_the_served_copy(self, imported, build_env, postgres,
                                                      tmp_path):
        """An m.room.server_acl whose content was altered on the way (its
        signatures cover only the redacted form, so they still verify) is
        stored redacted for the content hash, and the room's ACL is what is
        served of it: no allow list, so no server is allowed."""
        acl_id = imported["summary"]["final_state"]["m.room.server_acl|"]
        lines = []
        for line, eid in zip(imported["lines"], imported["ids"]):
            if eid == acl_id:
                ev = json.loads(line)
                ev["content"] = {"allow": ["*"], "deny": []}
                line = json.dumps(ev, separators=(",", ":")).encode()
            lines.append(line)
        db = new_db(postgres, build_env)
        import_ok(build_env, postgres, db, write_lines(tmp_path / "tampered.jsonl", lines),
                  imported["keys"])
        [room] = query_json(postgres, db, "SELECT current_acl FROM mxf_rooms")
        assert json.loads(room["current_acl"]) == {}
        rows = query_json(postgres, db, "SELECT server_name, acl_allowed FROM mxf_room_servers")
        assert rows and all(r["acl_allowed"] is False for r in rows), rows
        [ev] = query_json(postgres, db, "SELECT redacted_because FROM mxf_events"
                                        f" WHERE event_id = '{acl_id}'")
        assert ev["redacted_because"] == "content-hash"

    def test_021_007_reimport_is_idempotent(self, imported, build_env, postgres):
        before = snapshot(postgres, imported["db"])
        out = import_ok(build_env, postgres, imported["db"], imported["room"], imported["keys"])
        n = len(imported["lines"])
        assert f"imported 0 new events ({n} PDUs; {n} already known" in out
        assert "nothing new" in out
        after = snapshot(postgres, imported["db"])
        # Only the key table's fetch times may move.
        before.pop("mxf_server_keys"), after.pop("mxf_server_keys")
        assert after == before

    def test_021_007b_key_responses_kept_for_the_notary(self, imported, postgres):
        """Each server's verified Server Keys object from --keys is kept as
        it was signed (the module's /_matrix/key/v2/query serves it)."""
        with open(imported["keys"]) as f:
            given = {o["server_name"]: o for o in json.load(f)["server_keys"]}
        rows = query_json(postgres, imported["db"],
                          "SELECT server_name, response, valid_until_ts"
                          " FROM mxf_server_key_responses")
        assert {r["server_name"] for r in rows} == set(given)
        for r in rows:
            assert json.loads(r["response"]) == given[r["server_name"]]
            assert r["valid_until_ts"] == given[r["server_name"]]["valid_until_ts"]

    def test_021_008_export_round_trip(self, imported, build_env, postgres, tmp_path):
        r = cli(build_env, "export", "--db", postgres.conninfo(imported["db"]),
                "--room", imported["summary"]["room_id"])
        assert r.returncode == 0, r.stderr.decode()
        with open(imported["room"], "rb") as f:
            assert r.stdout == f.read()
        # And again through a second database.
        out = write_lines(tmp_path / "export.jsonl", r.stdout[:-1].split(b"\n"))
        db2 = new_db(postgres, build_env)
        import_ok(build_env, postgres, db2, out, imported["keys"])
        r2 = cli(build_env, "export", "--db", postgres.conninfo(db2),
                 "--room", imported["summary"]["room_id"])
        assert r2.returncode == 0 and r2.stdout == r.stdout

    def test_021_009_any_input_order(self, imported, build_env, postgres, tmp_path):
        lines = list(imported["lines"])
        random.Random(21).shuffle(lines)
        path = write_lines(tmp_path / "shuffled.jsonl", lines)
        db = new_db(postgres, build_env)
        import_ok(build_env, postgres, db, path, imported["keys"])
        a, b = imported["dbd"], load_db(postgres, db)
        assert set(a["events"]) == set(b["events"])
        for eid, ea in a["events"].items():
            eb = b["events"][eid]
            assert state_map(b, eb["state_before"]) == state_map(a, ea["state_before"])
            assert state_map(b, eb["state_after"]) == state_map(a, ea["state_after"])
            assert vis_of(b, eb["vis_id"]) == vis_of(a, ea["vis_id"])
            assert (eb["vis_after_id"] is None) == (ea["vis_after_id"] is None)
            assert eb["redacted_because"] == ea["redacted_because"]
            assert eb["redacted_pdu"] == ea["redacted_pdu"]
            assert b["prevs"].get(eid) == a["prevs"].get(eid)
        assert state_map(b, b["rooms"][0]["current_state_group"]) == \
            imported["summary"]["final_state"]
        assert b["servers"] == a["servers"]

    def test_021_011_in_chunks(self, imported, build_env, postgres, tmp_path):
        """Consecutive slices, one import each: branches that fork in one
        import and merge in the next merge states loaded from the database."""
        lines, dbd = imported["lines"], imported["dbd"]
        db = new_db(postgres, build_env)
        cuts = [0, 97, 151, 230, 333, len(lines)]
        for a, b in zip(cuts, cuts[1:]):
            path = write_lines(tmp_path / f"chunk{a}.jsonl", lines[a:b])
            out = import_ok(build_env, postgres, db, path, imported["keys"])
            assert f"imported {b - a} new events" in out
        d = load_db(postgres, db)
        for x in imported["expect"]:
            e = d["events"][x["event_id"]]
            assert state_map(d, e["state_before"]) == x["state_before"], x["i"]
            assert state_map(d, e["state_after"]) == x["state_after"], x["i"]
            assert vis_of(d, e["vis_id"]) == vis_of(dbd, dbd["events"][x["event_id"]]["vis_id"])
            assert e["redacted_because"] == dbd["events"][x["event_id"]]["redacted_because"]
        assert state_map(d, d["rooms"][0]["current_state_group"]) == \
            imported["summary"]["final_state"]
        assert d["servers"] == dbd["servers"]
        assert d["rooms"][0]["current_acl"] == dbd["rooms"][0]["current_acl"]

    def test_021_010b_one_event_missing_for_good(self, imported, build_env, postgres,
                                                 tmp_path):
        """A message missing from the middle of the history: the events after
        it have no known state, and the room's state is the last one known
        (from the forward extremities before the gap), so its members are
        still known."""
        lines, ids, by_id = imported["lines"], imported["ids"], imported["by_id"]
        late = [i for i in range(len(ids) * 2 // 3, len(ids) - 5)
                if by_id[ids[i]]["type"] == "m.room.message"]
        gone = ids[late[0]]
        db = new_db(postgres, build_env)
        out = import_ok(build_env, postgres, db,
                        write_lines(tmp_path / "gap.jsonl",
                                    [l for l, i in zip(lines, ids) if i != gone]),
                        imported["keys"])
        assert "current state: 1 room(s) with forward extremities behind missing" in out
        d = load_db(postgres, db)
        assert any(e["state_after"] is None for e in d["events"].values())
        assert d["rooms"][0]["current_state_group"] is not None
        assert d["servers"], "no member server known despite the history before the gap"

    def test_021_010c_many_forward_extremities(self, imported, build_env, postgres, tmp_path):
        """70 messages each on a branch of its own from one late message (more
        forward extremities): the import succeeds and the room's state,
        resolved over all 70 at once, is what it is with one such branch (the
        branches change no state)."""
        version, ids, by_id = imported["version"], imported["ids"], imported["by_id"]
        keys = server_keys(imported["dir"])
        # A late message: its sender is joined in the state after it.
        fork_id = [i for i in ids[:-5] if by_id[i]["type"] == "m.room.message"][-1]
        fork = by_id[fork_id]
        server = fork["sender"].split(":", 1)[1]
        base = {k: v for k, v in fork.items() if k not in ("hashes", "signatures", "unsigned",
                                                             "event_id", "state_key")}
        extra = []
        for i in range(70):
            ev = dict(base, type="m.room.message",
                      content={"body": f"branch {i}", "msgtype": "m.text"},
                      prev_events=[[fork_id, {}] if int(version) <= 2 else fork_id],
                      depth=fork["depth"] + 1, origin_server_ts=fork["origin_server_ts"] + i + 1)
            if int(version) <= 2:
                ev["event_id"] = f"$branch{i}:{server}"
            extra.append(json.dumps(resign(ev, version, keys), separators=(",", ":")).encode())
        db = new_db(postgres, build_env)
        out = import_ok(build_env, postgres, db,
                        write_lines(tmp_path / "branches.jsonl", imported["lines"] + extra),
                        imported["keys"])
        assert "forward extremities" not in out
        d = load_db(postgres, db)
        # The branches all share one state: the same as with a single branch.
        one = new_db(postgres, build_env)
        import_ok(build_env, postgres, one,
                  write_lines(tmp_path / "branch.jsonl", imported["lines"] + extra[:1]),
                  imported["keys"])
        d1 = load_db(postgres, one)
        assert state_map(d, d["rooms"][0]["current_state_group"]) == \
            state_map(d1, d1["rooms"][0]["current_state_group"])
        assert d["servers"] == d1["servers"]
        branches = query_json(postgres, db, "SELECT count(*) AS n FROM mxf_events"
                                            " WHERE rejected_reason IS NULL"
                                            "   AND pdu LIKE '%\"branch %'")
        assert branches == [{"n": 70}]

    def test_021_010e_many_conflicting_extremities(self, imported, build_env, postgres,
                                                   tmp_path):
        """70 branches from one topic change, each setting the topic again
        (70 forward extremities conflicting on one key), then a merge citing
        all 70: every branch and the merge are accepted (state resolution
        takes any number of states), the merge's state holds one of their
        topics, in versions 2-12 the branch that mainline ordering puts last
        (the latest timestamp), and neither it nor the room's current state
        depends on the order the branches arrive in."""
        version, ids, by_id = imported["version"], imported["ids"], imported["by_id"]
        keys = server_keys(imported["dir"])
        ref = (lambda eid: [eid, {}]) if int(version) <= 2 else (lambda eid: eid)
        # A late state change whose sender may change the topic.
        fork_id = [i for i in ids[:-5]
                   if by_id[i]["type"] in ("m.room.topic", "m.room.name")][-1]
        fork = by_id[fork_id]
        server = fork["sender"].split(":", 1)[1]
        base = {k: v for k, v in fork.items() if k not in ("hashes", "signatures", "unsigned",
                                                             "event_id")}
        branches = []
        for i in range(70):
            ev = dict(base, type="m.room.topic", state_key="", content={"topic": f"branch {i}"},
                      prev_events=[ref(fork_id)], depth=fork["depth"] + 1,
                      # the latest timestamp is branch 41's: not first, not last
                      origin_server_ts=fork["origin_server_ts"] + 1 + (i * 29) % 70)
            if int(version) <= 2:
                ev["event_id"] = f"$topic{i}:{server}"
            branches.append(resign(ev, version, keys))
        branch_ids = [event_id(ev, version) for ev in branches]
        latest = max(range(70), key=lambda i: branches[i]["origin_server_ts"])
        assert latest == 41
        merge = dict(base, type="m.room.message", content={"body": "merge", "msgtype": "m.text"},
                     prev_events=[ref(b) for b in branch_ids], depth=fork["depth"] + 2,
                     origin_server_ts=fork["origin_server_ts"] + 100)
        merge.pop("state_key", None)
        if int(version) <= 2:
            merge["event_id"] = f"$merge70:{server}"
        merge = resign(merge, version, keys)
        merge_id = event_id(merge, version)

        def enc(ev):
            return json.dumps(ev, separators=(",", ":")).encode()

        def run(name, order, with_merge):
            db = new_db(postgres, build_env)
            extra = [enc(branches[i]) for i in order] + ([enc(merge)] if with_merge else [])
            import_ok(build_env, postgres, db,
                      write_lines(tmp_path / f"{name}.jsonl", imported["lines"] + extra),
                      imported["keys"])
            d = load_db(postgres, db)
            topic_of = {e["event_id"]: e for e in d["events"].values()}
            for b in branch_ids + ([merge_id] if with_merge else []):
                assert topic_of[b]["rejected_reason"] is None, (b, topic_of[b]["rejected_reason"])
            cur = state_map(d, d["rooms"][0]["current_state_group"])
            merged = state_map(d, topic_of[merge_id]["state_before"]) if with_merge else None
            return d, cur, merged

        d, cur, merged = run("ordered", range(70), True)
        winner = merged["m.room.topic|"]
        assert winner in branch_ids
        if int(version) >= 2:
            assert winner == branch_ids[latest]
        # The current state also resolves the room's own tip (after the fork).
        assert cur["m.room.topic|"] in branch_ids + [ids[-1]] + ids[ids.index(fork_id):]
        _, cur2, merged2 = run("shuffled", random.Random(5).sample(range(70), 70), True)
        assert cur2 == cur and merged2 == merged
        # Without the merge: the 70 branches are the forward extremities.
        _, cur3, _ = run("tips", random.Random(6).sample(range(70), 70), False)
        assert cur3 == cur

    def test_021_010d_behind_a_gap_judged_by_auth_events(self, imported, build_env, postgres,
                                                         tmp_path):
        """Behind a gap (state unknown) an event is still judged by its own
        auth events (checks on receipt, step 4): a message from a user who
        never joined, citing only the create event, is rejected at once and
        never served; the events whose auth events are not known yet are
        left unchecked, none rejected that the whole room accepts. Once the
        gap is filled the rejected event gets its state, and so do the
        events after it."""
        lines, ids, by_id = imported["lines"], imported["ids"], imported["by_id"]
        version = imported["version"]
        keys = server_keys(imported["dir"])
        half = len(lines) // 2
        fork_id = [i for i in ids[half:-5] if by_id[i]["type"] == "m.room.message"][-1]
        fork = by_id[fork_id]
        server = fork["sender"].split(":", 1)[1]
        ref = (lambda eid: [eid, {}]) if int(version) <= 2 else (lambda eid: eid)
        intruder = {k: v for k, v in fork.items()
                    if k not in ("hashes", "signatures", "unsigned", "event_id")}
        intruder.update(sender=f"@intruder:{server}", depth=fork["depth"] + 1,
                        content={"body": "never joined", "msgtype": "m.text"},
                        prev_events=[ref(fork_id)],
                        auth_events=[] if version == "12" else [ref(ids[0])],
                        origin_server_ts=fork["origin_server_ts"] + 1)
        if int(version) <= 2:
            intruder["event_id"] = f"$intruder:{server}"
        intruder = resign(intruder, version, keys)
        intruder_id = event_id(intruder, version)
        after = dict(intruder, sender=fork["sender"], depth=fork["depth"] + 2,
                     content={"body": "after it", "msgtype": "m.text"},
                     prev_events=[ref(intruder_id)], auth_events=fork["auth_events"],
                     origin_server_ts=fork["origin_server_ts"] + 2)
        after.pop("signatures")
        if int(version) <= 2:
            after["event_id"] = f"$after-intruder:{server}"
        after = resign(after, version, keys)
        after_id = event_id(after, version)
        extra = [canonical(intruder), canonical(after)]

        db = new_db(postgres, build_env)
        out = import_ok(build_env, postgres, db,
                        write_lines(tmp_path / "second.jsonl", [lines[0]] + lines[half:] + extra),
                        imported["keys"])
        assert "1 rejected" in out, out
        d, full = load_db(postgres, db), imported["dbd"]
        e = d["events"][intruder_id]
        assert e["state_before"] is None
        assert e["rejected_reason"] and "auth events" in e["rejected_reason"], e
        for eid in ids[half:]:
            if d["events"][eid]["rejected_reason"]:
                assert full["events"][eid]["rejected_reason"], eid
        assert d["events"][after_id]["rejected_reason"] is None
        served = query_json(postgres, db,
                            "SELECT e.event_id FROM mxf_events e"
                            "  LEFT JOIN mxf_visibility vb ON vb.vis_id = e.vis_id"
                            "  LEFT JOIN mxf_visibility va ON va.vis_id = e.vis_after_id"
                            f" WHERE mxf_pdu_for(e, vb, va, '{server}') IS NOT NULL"
                            "   AND e.rejected_reason IS NULL")
        assert intruder_id not in {r["event_id"] for r in served}

        import_ok(build_env, postgres, db,
                  write_lines(tmp_path / "first.jsonl", lines[:half]), imported["keys"])
        d = load_db(postgres, db)
        e = d["events"][intruder_id]
        assert e["rejected_reason"] and e["state_before"] is not None
        assert state_map(d, e["state_after"]) == state_map(d, e["state_before"]) == \
            state_map(d, d["events"][fork_id]["state_after"])
        assert d["events"][after_id]["state_before"] is not None
        for eid in ids:
            assert d["events"][eid]["rejected_reason"] == full["events"][eid]["rejected_reason"]

    def test_021_010_edge_of_history(self, imported, build_env, postgres, tmp_path):
        """The create event and the second half alone: the second half's
        state is unknown and its edges into the first half dangle; once the
        first half arrives, edges link and every state is known."""
        lines, ids, by_id = imported["lines"], imported["ids"], imported["by_id"]
        version = imported["version"]
        half = len(lines) // 2
        second = write_lines(tmp_path / "second.jsonl", [lines[0]] + lines[half:])
        first = write_lines(tmp_path / "first.jsonl", lines[:half])
        db = new_db(postgres, build_env)
        out = import_ok(build_env, postgres, db, second, imported["keys"])
        assert "current state: 1 room(s) with forward extremities behind missing" in out
        d = load_db(postgres, db)
        assert len(d["events"]) == len(lines) - half + 1
        in_db = set(d["events"])
        dangling = 0
        for eid in ids[half:]:
            e = d["events"][eid]
            assert e["state_before"] is None and e["state_after"] is None, eid
            # Judged as under "shared" (sql/014): no redacted copy unless redacted.
            assert (e["redacted_pdu"] is None) == (e["redacted_because"] is None), eid
            for p in edge_ids(by_id[eid], "prev_events", version):
                assert d["prevs"][eid][p] == (p if p in in_db else None)
                dangling += p not in in_db
        assert dangling > 0
        # Served whole whoever asks, as the reference homeserver serves events
        # of unknown state (as under "shared"), unless redacted.
        served = query_json(postgres, db,
                            "SELECT e.event_id, e.redacted_because IS NOT NULL AS redacted,"
                            "       mxf_pdu_for(e, vb, va, 'hs9.example') AS served,"
                            "       e.pdu, e.redacted_pdu"
                            "  FROM mxf_events e"
                            "  LEFT JOIN mxf_visibility vb ON vb.vis_id = e.vis_id"
                            "  LEFT JOIN mxf_visibility va ON va.vis_id = e.vis_after_id"
                            " WHERE e.vis_id IS NULL")
        assert {r["event_id"] for r in served} == set(ids[half:])
        assert sum(not r["redacted"] for r in served) > len(served) // 2
        for r in served:
            assert r["served"] == (r["redacted_pdu"] if r["redacted"] else r["pdu"]), r
        # The room's state is the last one known: after the create event, the
        # one forward extremity whose state is known.
        assert state_map(d, d["rooms"][0]["current_state_group"]) == {"m.room.create|": ids[0]}
        assert d["servers"] == {}

        out = import_ok(build_env, postgres, db, first, imported["keys"])
        assert f"imported {half - 1} new events" in out
        d = load_db(postgres, db)
        full = imported["dbd"]
        for eid in ids:
            assert d["prevs"].get(eid) == full["prevs"].get(eid)
            assert d["auths"].get(eid) == full["auths"].get(eid)
            e, f = d["events"][eid], full["events"][eid]
            assert state_map(d, e["state_before"]) == state_map(full, f["state_before"]), eid
            assert state_map(d, e["state_after"]) == state_map(full, f["state_after"]), eid
            assert vis_of(d, e["vis_id"]) == vis_of(full, f["vis_id"])
            assert e["redacted_because"] == f["redacted_because"], eid
            # The copies needed once the state is known are made then.
            assert e["redacted_pdu"] == f["redacted_pdu"], eid
        assert state_map(d, d["rooms"][0]["current_state_group"]) == \
            imported["summary"]["final_state"]
        assert d["servers"] == full["servers"]


# ---------------------------------------------------------------------------
# Bad lines


@pytest.fixture(scope="module")
def bad_base(build_env, postgres, tmp_path_factory):
    """A v10 and a v1 room: the first half imported into a template database,
    the second half to be imported with one line spoilt."""
    rooms = {}
    for version in ("10", "1"):
        d = gen(build_env, tmp_path_factory.mktemp(f"bad-v{version}") / "room", version,
                seed=12, events=300, branchiness=0.2)
        lines = read_lines(os.path.join(d, "room.jsonl"))
        db = new_db(postgres, build_env)
        first = write_lines(os.path.join(d, "first.jsonl"), lines[:150])
        keys = os.path.join(d, "keys", "all.json")
        import_ok(build_env, postgres, db, first, keys)
        rooms[version] = {"dir": str(d), "lines": lines, "db": db, "keys": keys,
                          "signing": server_keys(str(d)), "version": version}
    return rooms


# Spoilers: (id, room version, function(event dict, line bytes, room) -> line bytes,
#            expected words in the message)
def _broken_json(ev, line, room):
    return line[:len(line) // 2]


def _malformed_hashes(ev, line, room):
    ev = dict(ev, hashes={"sha256": 12})
    return canonical(resign(ev, room["version"], room["signing"], rehash=False))


def _hashes_not_object(ev, line, room):
    ev = dict(ev, hashes="abc")
    return canonical(resign(ev, room["version"], room["signing"], rehash=False))


def _carried_event_id(ev, line, room):
    # A v10 PDU carrying an event_id that is not its reference hash.
    ev = dict(ev, event_id="$" + "A" * 43)
    return canonical(resign(ev, room["version"], room["signing"]))


def _invalid_v1_event_id(ev, line, room):
    ev = dict(ev, event_id="not-an-event-id")
    return canonical(resign(ev, room["version"], room["signing"]))


def _missing_v1_event_id(ev, line, room):
    ev = {k: v for k, v in ev.items() if k != "event_id"}
    return canonical(resign(ev, room["version"], room["signing"]))


def _oversize(ev, line, room):
    ev = dict(ev, content=dict(ev["content"], pad="x" * 66000))
    return canonical(resign(ev, room["version"], room["signing"]))


def _bad_signature(ev, line, room):
    sigs = json.loads(json.dumps(ev["signatures"]))
    server = ev["sender"].split(":", 1)[1]
    key_id = next(iter(sigs[server]))
    s = sigs[server][key_id]
    sigs[server][key_id] = ("B" if s[0] != "B" else "C") + s[1:]
    return canonical(dict(ev, signatures=sigs))


def _unsigned_by_sender(ev, line, room):
    server = ev["sender"].split(":", 1)[1]
    return canonical(dict(ev, signatures={k: v for k, v in ev["signatures"].items()
                                          if k != server}))


def _duplicate_key(ev, line, room):
    assert line.count(b'"depth":') == 1
    return line.replace(b'"depth":', b'"depth":1,"depth":', 1)


def _float(ev, line, room):
    return line.replace(b'"content":{', b'"content":{"f":1.5,', 1)


def _big_int(ev, line, room):
    return line.replace(b'"content":{', b'"content":{"n":9007199254740992,', 1)


def _unknown_room(ev, line, room):
    ev = dict(ev, room_id="!unknown:hs1.example")
    return canonical(resign(ev, room["version"], room["signing"]))


def _not_object(ev, line, room):
    return b"[1, 2, 3]"


def _nul_outside_content(ev, line, room):
    ev = dict(ev, origin=ev["sender"].split(":", 1)[1] + "\u0000x")
    return canonical(resign(ev, room["version"], room["signing"]))


def _nul_in_state_event(ev, line, room):
    ev = dict(ev, type="x.custom.state", state_key="", content={"v": "a\u0000b"})
    return canonical(resign(ev, room["version"], room["signing"]))


SPOILERS = [
    ("broken-json", "10", _broken_json, "JSON"),
    ("malformed-hashes", "10", _malformed_hashes, "hash"),
    ("hashes-not-object", "10", _hashes_not_object, "hash"),
    ("carried-event-id", "10", _carried_event_id, "event_id"),
    ("invalid-v1-event-id", "1", _invalid_v1_event_id, "event_id"),
    ("missing-v1-event-id", "1", _missing_v1_event_id, "event_id"),
    ("oversize", "10", _oversize, "bytes"),
    ("bad-signature", "10", _bad_signature, "signature"),
    ("bad-signature-v1", "1", _bad_signature, "signature"),
    ("unsigned-by-sender", "10", _unsigned_by_sender, "sign"),
    ("duplicate-key", "10", _duplicate_key, "depth"),
    ("float-in-v10", "10", _float, "room version 10"),
    ("big-int-in-v10", "10", _big_int, "room version 10"),
    ("unknown-room", "10", _unknown_room, "!unknown:hs1.example"),
    ("not-an-object", "10", _not_object, "object"),
    ("nul-outside-content", "10", _nul_outside_content, "U+0000"),
    ("nul-in-state-event", "10", _nul_in_state_event, "U+0000"),
]


class TestBadLines:

    @pytest.mark.parametrize("name,version,spoil,words", SPOILERS,
                             ids=[s[0] for s in SPOILERS])
    @pytest.mark.parametrize("require", [False, True], ids=["", "require-signatures"])
    def test_021_020_bad_line(self, bad_base, build_env, postgres, tmp_path,
                              name, version, spoil, words, require):
        room = bad_base[version]
        second = list(room["lines"][150:])
        k = 60                                   # a message, a member event, ... any line
        ev = json.loads(second[k])
        second[k] = spoil(ev, second[k], room)
        path = write_lines(tmp_path / "bad.jsonl", second)
        before = snapshot(postgres, room["db"])
        r = import_file(build_env, postgres, room["db"], path,
                        extra=["--require-signatures"] if require else [])
        err = r.stderr.decode()
        assert r.returncode == 1, err
        assert f"{path}:{k + 1}: " in err, err
        line = [x for x in err.splitlines() if f"{path}:{k + 1}: " in x][0]
        assert words in line, line
        assert "database is unchanged" in err
        assert snapshot(postgres, room["db"]) == before

    def test_021_021_control(self, bad_base, build_env, postgres, tmp_path):
        """Unspoilt, the same second halves import (so the tests above
        would have written something)."""
        for room in bad_base.values():
            db = new_db(postgres, build_env, template=room["db"])
            path = write_lines(tmp_path / f"good-{room['version']}.jsonl", room["lines"][150:])
            out = import_ok(build_env, postgres, db, path, extra=["--require-signatures"])
            assert f"imported {len(room['lines']) - 150} new events" in out

    def test_021_022_several_bad_lines_all_reported(self, bad_base, build_env, postgres,
                                                    tmp_path):
        room = bad_base["10"]
        second = list(room["lines"][150:])
        for k in (3, 40, 99):
            second[k] = _broken_json(None, second[k], room)
        path = write_lines(tmp_path / "bad.jsonl", second)
        r = import_file(build_env, postgres, room["db"], path)
        err = r.stderr.decode()
        assert r.returncode == 1
        for k in (3, 40, 99):
            assert f"{path}:{k + 1}: " in err
        assert "3 bad lines" in err

    def test_021_022b_first_line_bad(self, bad_base, build_env, postgres, tmp_path):
        """JSON lines whose first line is cut short are still JSON lines (the
        lines after it are whole values): every bad line is named."""
        room = bad_base["10"]
        second = list(room["lines"][150:])
        for k in (0, 4):
            second[k] = _broken_json(None, second[k], room)
        path = write_lines(tmp_path / "bad.jsonl", second)
        before = snapshot(postgres, room["db"])
        r = import_file(build_env, postgres, room["db"], path)
        err = r.stderr.decode()
        assert r.returncode == 1
        assert f"{path}:1: " in err and f"{path}:5: " in err, err
        assert "2 bad lines" in err
        assert snapshot(postgres, room["db"]) == before

    @pytest.mark.parametrize("with_broken_json", [False, True], ids=["signatures", "mixed"])
    def test_021_025_bad_signatures_all_reported(self, bad_base, build_env, postgres, tmp_path,
                                                 with_broken_json):
        """Signatures are verified alongside the writing: every line whose
        signature does not verify is still named (with the other bad lines,
        in input order), and nothing is committed."""
        room = bad_base["10"]
        second = list(room["lines"][150:])
        bad = [10, 90]
        for k in bad:
            second[k] = _bad_signature(json.loads(second[k]), second[k], room)
        if with_broken_json:
            second[40] = _broken_json(None, second[40], room)
            bad = [10, 40, 90]
        path = write_lines(tmp_path / "bad.jsonl", second)
        before = snapshot(postgres, room["db"])
        r = import_file(build_env, postgres, room["db"], path)
        err = r.stderr.decode()
        assert r.returncode == 1, err
        named = [int(x.split(f"{path}:", 1)[1].split(":", 1)[0]) - 1
                 for x in err.splitlines() if f"{path}:" in x]
        assert named == bad, err
        for k in (10, 90):
            line = [x for x in err.splitlines() if f"{path}:{k + 1}: " in x][0]
            assert "signature" in line and "does not verify" in line, line
        assert f"{len(bad)} bad lines" in err
        assert snapshot(postgres, room["db"]) == before

    def test_021_023_content_hash_mismatch_is_stored_redacted(self, bad_base, build_env,
                                                              postgres, tmp_path):
        room = bad_base["10"]
        lines = list(room["lines"])
        k = next(i for i, line in enumerate(lines)
                 if json.loads(line)["type"] == "m.room.message")
        ev = json.loads(lines[k])
        spoilt = dict(ev, content=dict(ev["content"], body="tampered"))
        # Message content is not part of the redacted form: the signature and
        # the event ID stay valid, only the content hash fails.
        lines[k] = canonical(spoilt)
        path = write_lines(tmp_path / "hash.jsonl", lines)
        db = new_db(postgres, build_env)
        out = import_ok(build_env, postgres, db, path, room["keys"],
                        extra=["--require-signatures"])
        assert "1 by content hash mismatch" in out
        eid = event_id(ev, "10")
        [row] = query_json(postgres, db, "SELECT redacted_because, redacted_pdu, pdu"
                                         f" FROM mxf_events WHERE event_id = '{eid}'")
        assert row["redacted_because"] == "content-hash"
        assert row["pdu"].encode() == lines[k]
        assert json.loads(row["redacted_pdu"]) == redact(spoilt, "10")

    @pytest.mark.parametrize("name", ["big-unsigned", "float-in-unsigned", "urlsafe-signature",
                                      "urlsafe-hash", "not-a-hash", "age-ts-after-hashing",
                                      "nul-in-message"])
    def test_021_026_accepted_as_other_servers_accept(self, bad_base, build_env, postgres,
                                                      tmp_path, name):
        """What the reference homeserver persists is imported, not refused:
        an unsigned part beyond the size limit or with reals (receivers strip
        it before those checks), base64 in the URL-safe alphabet, a hash that
        is no hash (a mismatch: served redacted), a top-level age_ts added
        after hashing (left out of the hash), U+0000 in a message's content."""
        room = bad_base["10"]
        lines = list(room["lines"])
        targets = {json.loads(x).get("redacts") for x in lines} | \
            {json.loads(x)["content"].get("redacts") for x in lines}

        def pick(pred):
            return next(i for i, line in enumerate(lines)
                        if json.loads(line)["type"] == "m.room.message"
                        and event_id(json.loads(line), "10") not in targets
                        and pred(json.loads(line)))

        def sig_of(ev):
            server = ev["sender"].split(":", 1)[1]
            return server, next(iter(ev["signatures"][server].items()))

        if name == "urlsafe-signature":
            k = pick(lambda ev: set(sig_of(ev)[1][1]) & set("+/"))
            ev = json.loads(lines[k])
            server, (key_id, sig) = sig_of(ev)
            ev["signatures"][server][key_id] = sig.replace("+", "-").replace("/", "_")
        elif name == "urlsafe-hash":
            k = pick(lambda ev: set(ev["hashes"]["sha256"]) & set("+/"))
            ev = json.loads(lines[k])
            ev["hashes"]["sha256"] = ev["hashes"]["sha256"].replace("+", "-").replace("/", "_")
            ev = resign(ev, "10", room["signing"], rehash=False)
        else:
            k = pick(lambda ev: True)
            ev = json.loads(lines[k])
            if name == "big-unsigned":
                ev["unsigned"] = {"prev_content": {"pad": "x" * 70000}, "age": 5}
            elif name == "float-in-unsigned":
                ev["unsigned"] = {"age": 12.25}
            elif name == "nul-in-message":
                ev = resign(dict(ev, content=dict(ev["content"], body="a\u0000b")), "10",
                            room["signing"])
            elif name == "not-a-hash":
                ev = resign(dict(ev, hashes={"sha256": "AAAA"}), "10", room["signing"],
                            rehash=False)
            else:
                ev["age_ts"] = 5
        lines[k] = canonical(ev) if name != "float-in-unsigned" else \
            json.dumps(ev, separators=(",", ":"), sort_keys=True).encode()
        path = write_lines(tmp_path / "lenient.jsonl", lines)
        db = new_db(postgres, build_env)
        import_ok(build_env, postgres, db, path, room["keys"], extra=["--require-signatures"])
        [row] = query_json(postgres, db, "SELECT redacted_because, signatures_verified, pdu"
                                         f" FROM mxf_events WHERE event_id ="
                                         f" '{event_id(ev, '10')}'")
        assert row["signatures_verified"] is True
        # Stored without what servers do not share (unsigned, a top-level age_ts).
        shared = {key: v for key, v in ev.items() if key not in ("unsigned", "age_ts")}
        assert row["pdu"].encode() == (canonical(shared) if shared != ev else lines[k])
        assert row["redacted_because"] == ("content-hash" if name == "not-a-hash" else None)

    def test_021_028_same_event_with_other_bytes(self, bad_base, build_env, postgres,
                                                 tmp_path):
        """An event given twice with other bytes (another unsigned, or content
        altered in transit: its ID and signatures cover only the redacted
        form): one copy is kept, the one whose content hash matches."""
        room = bad_base["10"]
        lines = list(room["lines"])
        k = next(i for i, line in enumerate(lines)
                 if json.loads(line)["type"] == "m.room.message")
        ev = json.loads(lines[k])
        tampered = canonical(dict(ev, content=dict(ev["content"], body="tampered")))
        other_unsigned = canonical(dict(ev, unsigned={"age": 1}))     # taken off: the same
        path = write_lines(tmp_path / "twice.jsonl",
                           lines[:k] + [tampered] + lines[k:] + [other_unsigned])
        db = new_db(postgres, build_env)
        out = import_ok(build_env, postgres, db, path, room["keys"],
                        extra=["--require-signatures"])
        assert f"imported {len(lines)} new events" in out
        assert "1 event repeated with other bytes" in out
        assert "2 repeated in the input" in out
        [row] = query_json(postgres, db, "SELECT redacted_because, pdu FROM mxf_events"
                                         f" WHERE event_id = '{event_id(ev, '10')}'")
        assert row["pdu"].encode() == lines[k]
        assert row["redacted_because"] != "content-hash"

    def test_021_027_byte_order_mark_and_blank_lines(self, bad_base, build_env, postgres,
                                                     tmp_path):
        room = bad_base["10"]
        lines = list(room["lines"])
        path = tmp_path / "bom.jsonl"
        path.write_bytes(b"\xef\xbb\xbf" + b"\n \t \n".join(lines) + b"\n   \n")
        db = new_db(postgres, build_env)
        out = import_ok(build_env, postgres, db, str(path), room["keys"],
                        extra=["--require-signatures"])
        assert f"imported {len(lines)} new events" in out

    @pytest.mark.parametrize("version", ["4", "10", "12"])
    def test_021_029_carried_event_id_taken_off(self, build_env, postgres, tmp_path, version):
        """PDUs of room versions 3 and later must not carry event_id, but
        dumps of rooms often add it: when it is the event's ID it is taken
        off (as gomatrixserverlib does before hashing) and the PDU is stored,
        served and exported without it, as if it had come without; when it
        is not, the line is refused (test_021_020 carried-event-id)."""
        d = gen(build_env, tmp_path / "room", version, seed=29, events=120, branchiness=0.2)
        lines = read_lines(os.path.join(d, "room.jsonl"))
        keys = os.path.join(d, "keys", "all.json")
        evs = [json.loads(x) for x in lines]
        assert not any("event_id" in ev for ev in evs)
        if version == "12":
            assert "room_id" not in evs[0] and evs[0]["type"] == "m.room.create"
        carrying = [canonical(dict(ev, event_id=event_id(ev, version))) for ev in evs]
        plain_db, carried_db = new_db(postgres, build_env), new_db(postgres, build_env)
        import_ok(build_env, postgres, plain_db, write_lines(tmp_path / "plain.jsonl", lines),
                  keys, extra=["--require-signatures"])
        out = import_ok(build_env, postgres, carried_db,
                        write_lines(tmp_path / "carried.jsonl", carrying), keys,
                        extra=["--require-signatures"])
        assert f"imported {len(lines)} new events" in out
        assert f"{len(lines)} PDUs of room version 3 or later carried their event_id" in out
        assert load_db(postgres, carried_db) == load_db(postgres, plain_db)
        stored = query_json(postgres, carried_db, "SELECT event_id, pdu FROM mxf_events")
        assert {r["event_id"]: json.loads(r["pdu"]) for r in stored} == \
            {event_id(ev, version): ev for ev in evs}
        room_id = evs[1]["room_id"]
        exported = cli(build_env, "export", "--db", postgres.conninfo(carried_db),
                       "--room", room_id)
        assert exported.returncode == 0, exported.stderr.decode()
        assert sorted(canonical(json.loads(x)) for x in exported.stdout.splitlines()
                      if x.strip()) == sorted(canonical(ev) for ev in evs)
        # Imported again without event_id: nothing new.
        out = import_ok(build_env, postgres, carried_db,
                        write_lines(tmp_path / "again.jsonl", lines), keys)
        assert "imported 0 new events" in out

    def test_021_031_responses_and_arrays_as_input(self, bad_base, build_env, postgres,
                                                   tmp_path):
        """PDUs as other servers answer them and operators save them: a /state
        answer and transactions (/backfill answers) one per line, and the same
        room as one pretty-printed JSON array. Each loads the room as the JSON
        lines do; PDUs on one line keep their bytes (the export is the same
        file), pretty-printed ones lose only the whitespace between tokens."""
        room = bad_base["10"]
        lines = list(room["lines"])
        room_id = json.loads(lines[0])["room_id"]
        plain = new_db(postgres, build_env)
        import_ok(build_env, postgres, plain, write_lines(tmp_path / "plain.jsonl", lines),
                  room["keys"], extra=["--require-signatures"])
        want = cli(build_env, "export", "--db", postgres.conninfo(plain), "--room", room_id)
        assert want.returncode == 0 and want.stdout.count(b"\n") == len(lines)

        # /state (its auth chain repeating some of its PDUs), then transactions
        # (or /backfill answers) with the whole history.
        state = (b'{"auth_chain":[' + b",".join(lines[:40]) + b'],"pdus":['
                 + b",".join(lines[:100]) + b']}')
        txns = [b'{"origin":"hs1.example","origin_server_ts":1,"pdus":['
                + b", ".join(lines[a:a + 50]) + b'],"edus":[]}'
                for a in range(0, len(lines), 50)]
        db = new_db(postgres, build_env)
        out = import_ok(build_env, postgres, db,
                        write_lines(tmp_path / "responses.json", [state] + txns),
                        room["keys"], extra=["--require-signatures"])
        assert f"imported {len(lines)} new events ({len(lines) + 140} PDUs;" in out
        assert "140 repeated in the input" in out
        got = cli(build_env, "export", "--db", postgres.conninfo(db), "--room", room_id)
        assert got.returncode == 0 and got.stdout == want.stdout
        assert load_db(postgres, db) == load_db(postgres, plain)

        # The /state answer alone: a snapshot, not history - its events are
        # outliers, as servers store them.
        db = new_db(postgres, build_env)
        import_ok(build_env, postgres, db, write_lines(tmp_path / "state.json", [state]),
                  room["keys"])
        d = load_db(postgres, db)
        assert len(d["events"]) == 100 and all(e["outlier"] for e in d["events"].values())

        # One pretty-printed array, as json.dump(indent=2) writes it.
        evs = [json.loads(x) for x in lines]
        path = tmp_path / "room.json"
        path.write_text(json.dumps(evs, indent=2, ensure_ascii=False) + "\n")
        db = new_db(postgres, build_env)
        out = import_ok(build_env, postgres, db, str(path), room["keys"],
                        extra=["--require-signatures"])
        assert f"imported {len(lines)} new events" in out
        assert load_db(postgres, db) == load_db(postgres, plain)
        got = cli(build_env, "export", "--db", postgres.conninfo(db), "--room", room_id)
        exported = got.stdout.splitlines()
        assert len(exported) == len(lines)
        assert sorted(canonical(json.loads(x)) for x in exported) == \
            sorted(canonical(json.loads(x)) for x in want.stdout.splitlines())
        assert not any(x.startswith(b"{ ") or b'": ' in x[:40] for x in exported)

    def test_021_032_bad_pdu_in_a_response_named(self, bad_base, build_env, postgres, tmp_path):
        """A bad PDU inside a response is reported at the line the response
        starts on and by its place in it; nothing is written."""
        room = bad_base["10"]
        second = list(room["lines"][150:])
        second[7] = _bad_signature(json.loads(second[7]), second[7], room)
        txn = b'{"origin":"hs1.example","pdus":[' + b",".join(second[:20]) + b"]}"
        path = write_lines(tmp_path / "txn.json", [b"", txn, *second[20:]])
        before = snapshot(postgres, room["db"])
        r = import_file(build_env, postgres, room["db"], path)
        err = r.stderr.decode()
        assert r.returncode == 1, err
        assert f"{path}:2: (pdus[7]) signature" in err, err
        assert "database is unchanged" in err
        assert snapshot(postgres, room["db"]) == before

    @pytest.mark.parametrize("text,line,words", [
        (b'[\n{"type": "m.room.message"},\n{"type": "x"\n]\n', 1, "does not match"),
        (b'\n\n{\n"pdus": [\n', 3, "does not end"),
        (b'[\n{"type": "a"} {"type": "b"}\n]', 1, "commas"),
    ], ids=["mismatched", "unterminated", "no-comma"])
    def test_021_033_input_not_well_formed(self, bad_base, build_env, postgres, tmp_path,
                                           text, line, words):
        """JSON over many lines that does not end, or whose brackets do not
        match: refused at the line the value starts on."""
        path = tmp_path / "broken.json"
        path.write_bytes(text)
        before = snapshot(postgres, bad_base["10"]["db"])
        r = import_file(build_env, postgres, bad_base["10"]["db"], str(path))
        err = r.stderr.decode()
        assert r.returncode == 1
        assert f"{path}:{line}: " in err and words in err, err
        assert snapshot(postgres, bad_base["10"]["db"]) == before

    def test_021_034_values_not_shared_taken_off(self, bad_base, build_env, postgres,
                                                 tmp_path):
        """What dumps of rooms carry that servers do not share is taken off:
        in unsigned everything but a member event's stripped room state
        (transaction IDs, copies of earlier state that would outlive their
        redaction, a redaction with its reason, a stale age), a non-object
        unsigned, and the top-level age_ts, outlier and destinations. No
        hash or signature covers them: the events import with every
        signature verified."""
        room = bad_base["10"]
        lines = list(room["lines"])
        evs = [json.loads(x) for x in lines]
        member = next(i for i, ev in enumerate(evs) if ev["type"] == "m.room.member"
                      and ev["content"].get("membership") == "invite")
        messages = [i for i, ev in enumerate(evs) if ev["type"] == "m.room.message"]
        stripped_state = [{"type": "m.room.name", "state_key": "", "content": {"name": "x"},
                           "sender": evs[0]["sender"]}]
        changes = {
            member: ({"unsigned": {"invite_room_state": stripped_state, "age": 5,
                                   "prev_content": {"membership": "leave"}}},
                     {"unsigned": {"invite_room_state": stripped_state}}),
            messages[0]: ({"unsigned": {"transaction_id": "m1234.5", "age_ts": 1,
                                        "redacted_because": {"content": {"reason": "r"}}}},
                          {}),
            messages[1]: ({"unsigned": "not an object", "outlier": False,
                           "destinations": ["hs2.example"], "age_ts": 7}, {}),
            messages[2]: ({"unsigned": {"invite_room_state": []}}, {}),
        }
        for k, (added, _) in changes.items():
            lines[k] = canonical(dict(evs[k], **added))
        db = new_db(postgres, build_env)
        out = import_ok(build_env, postgres, db, write_lines(tmp_path / "local.jsonl", lines),
                        room["keys"], extra=["--require-signatures"])
        assert f"signatures: {len(lines)} verified" in out
        assert "4 PDUs carried values servers do not share" in out
        rows = {r["event_id"]: r for r in query_json(
            postgres, db, "SELECT event_id, pdu, redacted_because FROM mxf_events")}
        for k, (_, kept) in changes.items():
            row = rows[event_id(evs[k], "10")]
            assert row["pdu"].encode() == canonical(dict(evs[k], **kept)), k
            assert row["redacted_because"] != "content-hash"
        # The others keep their bytes.
        assert rows[event_id(evs[messages[3]], "10")]["pdu"].encode() == lines[messages[3]]

    def test_021_034b_unsigned_the_parser_refuses(self, bad_base, build_env, postgres,
                                                  tmp_path):
        """What "unsigned" carries is not checked (receivers strip it first):
        an integer beyond 64 bits or nesting deeper than the parser takes
        there (a prev_content copy of a deep state event) does not refuse
        the PDU, which is stored without it; in a PDU's own fields they do."""
        room = bad_base["10"]
        lines = list(room["lines"])
        evs = [json.loads(x) for x in lines]
        k1, k2, k3 = [i for i, ev in enumerate(evs) if ev["type"] == "m.room.message"][:3]
        deep = "x"
        for _ in range(200):
            deep = {"d": deep}
        lines[k1] = canonical(evs[k1])[:-1] + b',"unsigned":{"age":9223372036854775808}}'
        lines[k2] = canonical(dict(evs[k2], unsigned={"prev_content": deep}))
        db = new_db(postgres, build_env)
        out = import_ok(build_env, postgres, db, write_lines(tmp_path / "u.jsonl", lines),
                        room["keys"], extra=["--require-signatures"])
        assert f"imported {len(lines)} new events" in out
        rows = {r["event_id"]: r["pdu"] for r in query_json(
            postgres, db, "SELECT event_id, pdu FROM mxf_events")}
        for k in (k1, k2):
            assert rows[event_id(evs[k], "10")].encode() == canonical(evs[k])
        lines[k3] = canonical(evs[k3])[:-1] + b',"x":9223372036854775808}'
        r = import_file(build_env, postgres, new_db(postgres, build_env),
                        write_lines(tmp_path / "x.jsonl", lines))
        assert r.returncode == 1 and f":{k3 + 1}: JSON refused" in r.stderr.decode()

    def test_021_034c_type_written_with_escapes(self, bad_base, build_env, postgres, tmp_path):
        """The create event's type written with a \\u escape is the same
        string: the room is found."""
        room = bad_base["10"]
        lines = list(room["lines"])
        assert b'"type":"m.room.create"' in lines[0]
        lines[0] = lines[0].replace(b'"type":"m.room.create"', b'"type":"m.room.cre\\u0061te"')
        db = new_db(postgres, build_env)
        out = import_ok(build_env, postgres, db, write_lines(tmp_path / "esc.jsonl", lines),
                        room["keys"], extra=["--require-signatures"])
        assert f"imported {len(lines)} new events" in out

    @pytest.mark.parametrize("version", ["1", "10", "11"])
    def test_021_035_redaction_with_hash_mismatch(self, build_env, postgres, tmp_path, version):
        """A redaction whose content was altered in transit is processed
        redacted (checks on receipt, step 3): up to room version 10 that
        takes off its top-level "redacts", so it redacts nothing; from 11 on
        content.redacts stays and it applies."""
        d = gen(build_env, tmp_path / "room", version, seed=35, events=120, branchiness=0)
        lines = read_lines(os.path.join(d, "room.jsonl"))
        keys = os.path.join(d, "keys", "all.json")
        signing = server_keys(d)
        evs = [json.loads(x) for x in lines]
        target = [ev for ev in evs if ev["type"] == "m.room.message"][-3]
        target_id = event_id(target, version)
        last = evs[-1]
        server = target["sender"].split(":", 1)[1]
        ref = (lambda eid: [eid, {}]) if int(version) <= 2 else (lambda eid: eid)
        red = {k: v for k, v in target.items()
               if k not in ("hashes", "signatures", "unsigned", "event_id")}
        red.update(type="m.room.redaction", content={"reason": "spam"}, depth=last["depth"] + 1,
                   prev_events=[ref(event_id(last, version))],
                   origin_server_ts=last["origin_server_ts"] + 1)
        if int(version) <= 10:
            red["redacts"] = target_id
        else:
            red["content"]["redacts"] = target_id
        if int(version) <= 2:
            red["event_id"] = f"$tampered-redaction:{server}"
        red = resign(red, version, signing)
        red["content"] = dict(red["content"], reason="altered after signing")
        db = new_db(postgres, build_env)
        out = import_ok(build_env, postgres, db,
                        write_lines(tmp_path / "r.jsonl", lines + [canonical(red)]), keys,
                        extra=["--require-signatures"])
        assert "1 by content hash mismatch" in out
        rows = {r["event_id"]: r for r in query_json(
            postgres, db, "SELECT event_id, redacted_because, rejected_reason FROM mxf_events")}
        assert rows[event_id(red, version)]["redacted_because"] == "content-hash"
        # In 1 and 2 a redaction that names no event passes only on power, as
        # the reference homeserver's check_redaction has it; later versions
        # accept it and check the target when it is applied.
        assert int(version) <= 2 or rows[event_id(red, version)]["rejected_reason"] is None
        assert rows[target_id]["redacted_because"] == \
            (event_id(red, version) if int(version) >= 11 else None)

    @pytest.mark.parametrize("version", ["1", "5"])
    def test_021_036_depth_beyond_canonical_json(self, build_env, postgres, tmp_path,
                                                 version):
        """Room versions 1-5 parse integers beyond 2^53 - 1, but the reference
        homeserver drops a PDU whose depth is one on receipt and never
        serves it: such an event is kept out of the room (rejected)."""
        d = gen(build_env, tmp_path / "room", version, seed=36, events=60, branchiness=0)
        lines = read_lines(os.path.join(d, "room.jsonl"))
        signing = server_keys(d)
        evs = [json.loads(x) for x in lines]
        msg = [ev for ev in evs if ev["type"] == "m.room.message"][-1]
        last = evs[-1]
        server = msg["sender"].split(":", 1)[1]
        ref = (lambda eid: [eid, {}]) if int(version) <= 2 else (lambda eid: eid)
        deep = {k: v for k, v in msg.items()
                if k not in ("hashes", "signatures", "unsigned", "event_id")}
        deep.update(depth=2 ** 53, prev_events=[ref(event_id(last, version))],
                    content={"body": "deep", "msgtype": "m.text"},
                    origin_server_ts=last["origin_server_ts"] + 1)
        if int(version) <= 2:
            deep["event_id"] = f"$deep:{server}"
        deep = resign(deep, version, signing)
        db = new_db(postgres, build_env)
        out = import_ok(build_env, postgres, db,
                        write_lines(tmp_path / "deep.jsonl", lines + [canonical(deep)]),
                        os.path.join(d, "keys", "all.json"), extra=["--require-signatures"])
        assert "1 rejected" in out, out
        [row] = query_json(postgres, db, "SELECT rejected_reason FROM mxf_events"
                                         f" WHERE event_id = '{event_id(deep, version)}'")
        assert "2^53" in row["rejected_reason"]

    @pytest.mark.parametrize("version", ["1", "10", "12"])
    def test_021_037_send_join_answer_gives_the_state(self, build_env, postgres, tmp_path,
                                                      version):
        """A room as a server that joined late has it: a /send_join answer
        (the state before the join, its auth chain, the join) and the events
        after the join. The join's prev_events are not known, so the state
        before it is the answer's; from there every state is known, the same
        as with the whole room, and so are the room's members and servers."""
        d, lines, keys, evs, ids, by_id, expect, j = late_join_room(build_env, tmp_path,
                                                                    version, 37)
        assert j > 40
        join_id = ids[j]
        state_ids = list(expect[join_id]["state_before"].values())
        chain, todo = set(), list(state_ids) + [join_id]
        while todo:
            for a in edge_ids(by_id[todo.pop()], "auth_events", version):
                if a not in chain:
                    chain.add(a)
                    todo.append(a)
        answer = {"origin": "hs1.example", "origin_server_ts": 1, "members_omitted": False,
                  "state": [by_id[x] for x in state_ids],
                  "auth_chain": [by_id[x] for x in sorted(chain)],
                  "event": by_id[join_id]}
        path = tmp_path / "joined-late.json"
        path.write_bytes(json.dumps(answer).encode() + b"\n" + b"\n".join(lines[j + 1:]) + b"\n")

        full = new_db(postgres, build_env)
        import_ok(build_env, postgres, full, os.path.join(d, "room.jsonl"), keys)
        db = new_db(postgres, build_env)
        out = import_ok(build_env, postgres, db, str(path), keys, extra=["--require-signatures"])
        assert "1 event given the state before it by a /send_join answer" in out, out
        a, b = load_db(postgres, full), load_db(postgres, db)
        assert state_map(b, b["events"][join_id]["state_before"]) == \
            expect[join_id]["state_before"]
        for eid in ids[j:]:
            assert state_map(b, b["events"][eid]["state_before"]) == \
                expect[eid]["state_before"], eid
            assert state_map(b, b["events"][eid]["state_after"]) == \
                expect[eid]["state_after"], eid
            assert b["events"][eid]["rejected_reason"] == a["events"][eid]["rejected_reason"]
            assert vis_of(b, b["events"][eid]["vis_id"]) == vis_of(a, a["events"][eid]["vis_id"])
        assert state_map(b, b["rooms"][0]["current_state_group"]) == \
            state_map(a, a["rooms"][0]["current_state_group"])
        assert b["servers"] == a["servers"]
        assert b["rooms"][0]["current_acl"] == a["rooms"][0]["current_acl"]
        # The answer's state and auth chain are outliers, as a joining server
        # keeps them; the join and what follows are not.
        assert {eid for eid, e in b["events"].items() if e["outlier"]} == \
            (set(state_ids) | chain) - {join_id}

        # The history before the join arrives later: the outliers become events
        # of the room's history, and every state is the whole room's.
        out = import_ok(build_env, postgres, db,
                        write_lines(tmp_path / "before.jsonl", lines[:j]), keys)
        b = load_db(postgres, db)
        assert not any(e["outlier"] for e in b["events"].values())
        for eid in ids:
            assert state_map(b, b["events"][eid]["state_before"]) == \
                expect[eid]["state_before"], eid
        assert state_map(b, b["rooms"][0]["current_state_group"]) == \
            state_map(a, a["rooms"][0]["current_state_group"])

    def test_021_038_v1_event_id_of_another_room(self, build_env, postgres, tmp_path):
        """In room versions 1 and 2 servers choose event IDs: an event whose ID
        an event of another room already has is dropped, as other servers
        drop it (the first one known keeps the ID), and the summary says so,
        whether that room came before or in the same input."""
        rooms = []
        for seed in (38, 39):
            d = gen(build_env, tmp_path / f"room{seed}", "1", seed=seed, events=60,
                    branchiness=0)
            rooms.append((d, read_lines(os.path.join(d, "room.jsonl"))))
        (da, la), (db_, lb) = rooms
        a_msgs = [json.loads(x) for x in la if json.loads(x)["type"] == "m.room.message"]
        b_last = json.loads(lb[-1])
        assert b_last["type"] == "m.room.message"
        server = b_last["sender"].split(":", 1)[1]
        taken = next(ev["event_id"] for ev in a_msgs if ev["event_id"].endswith(":" + server))
        clash = resign(dict(b_last, event_id=taken), "1", server_keys(db_))
        lb = lb[:-1] + [canonical(clash)]
        keys = ["--keys", os.path.join(db_, "keys", "all.json")]
        ka = os.path.join(da, "keys", "all.json")
        db = new_db(postgres, build_env)
        import_ok(build_env, postgres, db, write_lines(tmp_path / "a.jsonl", la), ka)
        out = import_ok(build_env, postgres, db, write_lines(tmp_path / "b.jsonl", lb), None,
                        extra=keys + ["--require-signatures"])
        assert "1 event of room version 1 or 2 with the ID of another room's event: dropped" \
            in out, out
        db2 = new_db(postgres, build_env)
        out = import_ok(build_env, postgres, db2, write_lines(tmp_path / "ab.jsonl", la + lb), ka,
                        extra=keys + ["--require-signatures"])
        assert "1 event of room version 1 or 2 with the ID of another room's event: dropped" \
            in out, out
        for d_ in (db, db2):
            [row] = query_json(postgres, d_, "SELECT r.room_id FROM mxf_events e JOIN mxf_rooms r"
                                             f" USING (room_nid) WHERE e.event_id = '{taken}'")
            assert row["room_id"] == a_msgs[0]["room_id"]

    @pytest.mark.parametrize("version", ["10", "11"])
    def test_021_039_auth_reads_redacted_auth_events(self, build_env, postgres, tmp_path,
                                                     version):
        """Once a power-levels event is redacted, the events after the
        redaction are authorized against its redacted form, as the reference
        homeserver reads auth events: up to room version 10 redaction drops
        the "invite" level, so a member without power may then invite; from
        11 on it is kept, and the invite stays refused. Without the
        redaction it is refused in both."""
        d = gen(build_env, tmp_path / "room", version, seed=39, events=80, branchiness=0)
        lines = read_lines(os.path.join(d, "room.jsonl"))
        signing = server_keys(d)
        evs = [json.loads(x) for x in lines]
        ids = [event_id(ev, version) for ev in evs]
        by_id = dict(zip(ids, evs))
        with open(os.path.join(d, "expected.jsonl")) as f:
            final = [json.loads(x) for x in f][-1]["state_after"]
        pl = by_id[final["m.room.power_levels|"]]
        users = pl["content"].get("users", {})
        admin = max(users, key=lambda u: users[u])
        joined = [k.split("|", 1)[1] for k, v in final.items() if k.startswith("m.room.member|")
                  and by_id[v]["content"].get("membership") == "join"]
        low = next(u for u in joined if users.get(u, pl["content"].get("users_default", 0)) < 50)
        last = evs[-1]

        def event(sender, typ, content, prev, auths, state_key=None, **extra):
            ev = {"room_id": last["room_id"], "sender": sender, "type": typ,
                  "content": content, "depth": by_id[prev]["depth"] + 1,
                  "origin_server_ts": by_id[prev]["origin_server_ts"] + 1,
                  "prev_events": [prev], "auth_events": auths, "hashes": {}, **extra}
            if state_key is not None:
                ev["state_key"] = state_key
            ev = resign(ev, version, signing)
            eid = event_id(ev, version)
            by_id[eid] = ev
            return eid, ev

        create = [] if version == "12" else [ids[0]]
        new_pl, pl_ev = event(admin, "m.room.power_levels", dict(pl["content"], invite=50),
                              ids[-1], create + [final["m.room.member|" + admin],
                                                 final["m.room.power_levels|"]], "")
        red_content = {"redacts": new_pl} if version == "11" else {}
        red, red_ev = event(admin, "m.room.redaction", red_content, new_pl,
                            create + [new_pl, final["m.room.member|" + admin]],
                            **({} if version == "11" else {"redacts": new_pl}))
        invitee = "@newcomer:" + low.split(":", 1)[1]
        auths = create + [new_pl, final["m.room.member|" + low], final["m.room.join_rules|"]]
        inv, inv_ev = event(low, "m.room.member", {"membership": "invite"}, red, auths, invitee)
        inv2, inv2_ev = event(low, "m.room.member", {"membership": "invite"}, new_pl, auths,
                              invitee)
        keys = os.path.join(d, "keys", "all.json")
        results = {}
        for name, extra in (("redacted", [pl_ev, red_ev, inv_ev]), ("not", [pl_ev, inv2_ev])):
            db = new_db(postgres, build_env)
            import_ok(build_env, postgres, db,
                      write_lines(tmp_path / f"{name}.jsonl", lines + [canonical(x) for x in extra]),
                      keys, extra=["--require-signatures"])
            [row] = query_json(postgres, db, "SELECT rejected_reason FROM mxf_events WHERE"
                                             f" event_id = '{inv if name == 'redacted' else inv2}'")
            results[name] = row["rejected_reason"]
        assert results["not"] is not None and "invite" in results["not"], results
        if version == "10":
            assert results["redacted"] is None, results
        else:
            assert results["redacted"] is not None, results

    @pytest.mark.parametrize("version", ["3", "10"])
    def test_021_040_create_redaction_not_applied(self, build_env, postgres, tmp_path,
                                                  version):
        """A redaction of the m.room.create event is accepted but not applied,
        as the reference homeserver ignores it: served redacted, the create
        event would lose its room_version."""
        d = gen(build_env, tmp_path / "room", version, seed=40, events=40, branchiness=0)
        lines = read_lines(os.path.join(d, "room.jsonl"))
        evs = [json.loads(x) for x in lines]
        create, last = evs[0], evs[-1]
        create_id = event_id(create, version)
        with open(os.path.join(d, "expected.jsonl")) as f:
            final = [json.loads(x) for x in f][-1]["state_after"]
        auths = [create_id, final["m.room.power_levels|"],
                 final["m.room.member|" + create["sender"]]]
        red = {"room_id": last["room_id"], "sender": create["sender"],
               "type": "m.room.redaction", "content": {}, "redacts": create_id,
               "depth": last["depth"] + 1, "origin_server_ts": last["origin_server_ts"] + 1,
               "prev_events": [event_id(last, version)], "auth_events": auths}
        red = resign(red, version, server_keys(d))
        db = new_db(postgres, build_env)
        out = import_ok(build_env, postgres, db,
                        write_lines(tmp_path / "r.jsonl", lines + [canonical(red)]),
                        os.path.join(d, "keys", "all.json"), extra=["--require-signatures"])
        rows = {r["event_id"]: r for r in query_json(
            postgres, db, "SELECT event_id, redacted_because, rejected_reason FROM mxf_events")}
        assert rows[event_id(red, version)]["rejected_reason"] is None
        assert rows[create_id]["redacted_because"] is None
        with open(os.path.join(d, "expected.json")) as f:
            redacted = len(json.load(f)["redacted"])
        assert f"{redacted} by m.room.redaction" in out, out

    @pytest.mark.parametrize("version", ["1", "10", "12"])
    def test_021_041_member_event_without_membership_is_rejected(self, build_env, postgres,
                                                                 tmp_path, version):
        """An m.room.member event whose content has no membership, or one
        that is not a string, is a well-formed PDU that the authorization
        rules reject ("If there is no state_key property, or no membership
        property in content, reject"; an unknown membership is rejected
        too): it is kept as rejected, the import goes on, and an event after
        it is accepted."""
        d = gen(build_env, tmp_path / "room", version, seed=41, events=40, branchiness=0)
        lines = read_lines(os.path.join(d, "room.jsonl"))
        evs = [json.loads(x) for x in lines]
        create, last = evs[0], evs[-1]
        user = create["sender"]
        with open(os.path.join(d, "expected.jsonl")) as f:
            final = [json.loads(x) for x in f][-1]["state_after"]
        signing = server_keys(d)
        tip = last
        added = []

        def ref(ev):
            eid = event_id(ev, version)
            return [eid, {"sha256": ev["hashes"]["sha256"]}] if version == "1" else eid

        for i, content in enumerate(({}, {"membership": 5}, {"membership": ["join"]},
                                     {"displayname": "x", "membership": None})):
            auths = ([] if version == "12" else [event_id(create, version)]) + \
                [final["m.room.power_levels|"], final["m.room.member|" + user]]
            ev = {"room_id": last["room_id"], "sender": user, "type": "m.room.member",
                  "state_key": user, "content": content, "depth": tip["depth"] + 1,
                  "origin_server_ts": tip["origin_server_ts"] + 1,
                  "prev_events": [ref(tip)],
                  "auth_events": [[a, {"sha256": next(x for x in evs
                                                      if event_id(x, version) == a)
                                       ["hashes"]["sha256"]}] for a in auths]
                  if version == "1" else auths}
            if version == "1":
                ev["event_id"] = f"$bad{i}:{user.split(':', 1)[1]}"
            ev = resign(ev, version, signing)
            added.append(ev)
            tip = ev
        msg = {"room_id": last["room_id"], "sender": user, "type": "m.room.message",
               "content": {"body": "after", "msgtype": "m.text"}, "depth": tip["depth"] + 1,
               "origin_server_ts": tip["origin_server_ts"] + 1, "prev_events": [ref(tip)],
               "auth_events": added[0]["auth_events"]}
        if version == "1":
            msg["event_id"] = f"$after:{user.split(':', 1)[1]}"
        msg = resign(msg, version, signing)
        db = new_db(postgres, build_env)
        import_ok(build_env, postgres, db,
                  write_lines(tmp_path / "m.jsonl",
                              lines + [canonical(x) for x in added + [msg]]),
                  os.path.join(d, "keys", "all.json"), extra=["--require-signatures"])
        rows = {r["event_id"]: r for r in query_json(
            postgres, db, "SELECT event_id, rejected_reason, membership FROM mxf_events")}
        for ev in added:
            r = rows[event_id(ev, version)]
            assert r["rejected_reason"] is not None and r["membership"] is None, r
        assert rows[event_id(msg, version)]["rejected_reason"] is None
        [cur] = query_json(postgres, db,
                           "SELECT e.event_id FROM mxf_rooms r, mxf_state_of(r.current_state_group) s"
                           " JOIN mxf_events e USING (event_nid)"
                           f" WHERE s.type = 'm.room.member' AND s.state_key = '{user}'")
        assert cur["event_id"] == final["m.room.member|" + user]

    def test_021_042_partial_state_send_join_answer_refused(self, build_env, postgres,
                                                            tmp_path):
        """A /send_join answer from a join with omit_members ("members_omitted":
        true: its state lacks the other members' m.room.member events) would be
        taken for the whole state before the join, and the events after it
        judged against a room without their senders: it is refused (status 1,
        its line named, the database unchanged), on one line, pretty-printed
        or in the v1 form; the whole answer imports."""
        version = "10"
        d, lines, keys, evs, ids, by_id, expect, j = late_join_room(build_env, tmp_path,
                                                                    version, 42)
        join_id = ids[j]
        joiner = by_id[join_id]["state_key"]

        def chain_of(roots):
            chain, todo = set(), list(roots)
            while todo:
                for a in by_id[todo.pop()]["auth_events"]:
                    if a not in chain:
                        chain.add(a)
                        todo.append(a)
            return chain

        full_state = list(expect[join_id]["state_before"].values())
        partial = [x for x in full_state if by_id[x]["type"] != "m.room.member"
                   or by_id[x]["state_key"] == joiner]
        assert len(partial) < len(full_state)

        def answer(state_ids, omitted):
            return {"origin": "hs1.example", "members_omitted": omitted,
                    "servers_in_room": ["hs1.example"],
                    "state": [by_id[x] for x in state_ids],
                    "auth_chain": [by_id[x] for x in sorted(chain_of(state_ids + [join_id]))],
                    "event": by_id[join_id]}

        after = b"\n".join(lines[j + 1:]) + b"\n"
        db = new_db(postgres, build_env)
        before = snapshot(postgres, db)
        pretty = json.dumps(answer(partial, True), indent=2).encode()
        forms = {
            "one-line": (json.dumps(answer(partial, True)).encode(), 1),
            "pretty": (pretty, pretty[:pretty.index(b'"members_omitted"')].count(b"\n") + 1),
            "v1": (json.dumps([200, answer(partial, True)]).encode(), 1),
        }
        for name, (text, lineno) in forms.items():
            path = tmp_path / f"partial-{name}.json"
            path.write_bytes(text + b"\n" + after)
            r = import_file(build_env, postgres, db, str(path), keys)
            err = r.stderr.decode()
            assert r.returncode == 1, (name, err)
            line = [x for x in err.splitlines() if f"{path}:{lineno}: " in x]
            assert line and "partial-state /send_join answer" in line[0] \
                and "omit_members" in line[0], (name, err)
            assert "1 bad line" in err and "the database is unchanged" in err, (name, err)
            assert snapshot(postgres, db) == before, name
        # The whole answer ("members_omitted": false) imports.
        path = tmp_path / "whole.json"
        path.write_bytes(json.dumps(answer(full_state, False)).encode() + b"\n" + after)
        out = import_ok(build_env, postgres, db, str(path), keys)
        assert "1 event given the state before it by a /send_join answer" in out, out

    def test_021_044_altered_copy_stored_by_an_earlier_import(self, bad_base, build_env,
                                                              postgres, tmp_path):
        """A message altered in transit (its ID and signatures cover only its
        redacted form) comes in one import, the original in a later one: the
        stored copy is kept (it was processed redacted, and the events after it
        judged so), and the later import's summary says so."""
        room = bad_base["10"]
        lines = list(room["lines"])
        k = next(i for i, line in enumerate(lines)
                 if i > 20 and json.loads(line)["type"] == "m.room.message")
        ev = json.loads(lines[k])
        altered = canonical(dict(ev, content=dict(ev["content"], body="altered in transit")))
        db = new_db(postgres, build_env)
        out = import_ok(build_env, postgres, db,
                        write_lines(tmp_path / "b1.jsonl", lines[:k] + [altered]), room["keys"])
        assert "1 by content hash mismatch" in out, out
        out = import_ok(build_env, postgres, db,
                        write_lines(tmp_path / "b2.jsonl", lines[k:]), room["keys"])
        assert f"imported {len(lines) - k - 1} new events" in out, out
        assert ("  1 event stored as altered copy (content hash mismatch) given again with its"
                " matching content: the stored copy is kept, served redacted (see README)"
                in out.splitlines()), out
        [row] = query_json(postgres, db, "SELECT redacted_because, pdu FROM mxf_events"
                                         f" WHERE event_id = '{event_id(ev, '10')}'")
        assert row["redacted_because"] == "content-hash" and row["pdu"].encode() == altered
        # Given again as stored, or any event stored whole: nothing to say.
        out = import_ok(build_env, postgres, db,
                        write_lines(tmp_path / "b3.jsonl", [altered] + lines[:k]), room["keys"])
        assert "altered" not in out, out

    def test_021_045_keys_given_later_verify_stored_events(self, bad_base, build_env, postgres,
                                                           tmp_path):
        """Events stored unverified (no key known) and given again with the keys:
        their signatures verify, and their rows say so (the summary counts
        them) - only where the stored PDU is the one verified (a stored copy
        whose signature is another stays unverified)."""
        room = bad_base["10"]
        lines = list(room["lines"])
        k = next(i for i, line in enumerate(lines)
                 if i > 20 and json.loads(line)["type"] == "m.room.message")
        spoilt = _bad_signature(json.loads(lines[k]), lines[k], room)
        first = lines[:k] + [spoilt] + lines[k + 1:]
        db = new_db(postgres, build_env)
        out = import_ok(build_env, postgres, db, write_lines(tmp_path / "nokeys.jsonl", first))
        assert f"signatures: 0 verified, {len(lines)} unverifiable" in out, out
        path = write_lines(tmp_path / "room.jsonl", lines)
        out = import_ok(build_env, postgres, db, path, room["keys"],
                        extra=["--require-signatures"])
        assert (f"  {len(lines) - 1} events stored before with signatures unverified (no key"
                " known then): verified now, and marked so" in out.splitlines()), out
        rows = {r["event_id"]: r["signatures_verified"] for r in query_json(
            postgres, db, "SELECT event_id, signatures_verified FROM mxf_events")}
        spoilt_id = event_id(json.loads(lines[k]), "10")
        assert rows.pop(spoilt_id) is False
        assert set(rows.values()) == {True}
        # Again: nothing left to mark.
        out = import_ok(build_env, postgres, db, path, room["keys"])
        assert "verified now" not in out, out

    def test_021_024_unverifiable(self, bad_base, build_env, postgres, tmp_path):
        """Without keys: imported as unverified, or refused with
        --require-signatures."""
        room = bad_base["10"]
        path = write_lines(tmp_path / "room.jsonl", room["lines"])
        db = new_db(postgres, build_env)
        before = snapshot(postgres, db)
        r = import_file(build_env, postgres, db, path, extra=["--require-signatures"])
        assert r.returncode == 1
        assert f"{path}:1: " in r.stderr.decode()
        assert snapshot(postgres, db) == before
        out = import_ok(build_env, postgres, db, path)
        n = len(room["lines"])
        assert f"signatures: 0 verified, {n} unverifiable" in out
        assert postgres.psql(db, "SELECT count(*) FROM mxf_events"
                                 " WHERE NOT signatures_verified") == str(n)


# ---------------------------------------------------------------------------
# Interrupted import


def test_021_043_waiting_import_says_so(build_env, postgres, tmp_path):
    """Imports into one database run one at a time (an advisory lock held by
    the import's transaction). An import that finds the lock taken says that
    it waits, and for which PostgreSQL backend, then waits and completes."""
    d = gen(build_env, tmp_path / "room", "10", seed=43, events=40, branchiness=0)
    db = new_db(postgres, build_env)
    holder = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-d", postgres.conninfo(db)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    holder.stdin.write("BEGIN; SELECT pg_advisory_xact_lock(7249018340513);"
                       " SELECT pg_backend_pid();\n")
    holder.stdin.flush()
    holder.stdout.readline()                    # the lock's empty result
    pid = holder.stdout.readline().strip()
    assert pid.isdigit(), pid
    p = subprocess.Popen([build_env.cli, "import", "--db", postgres.conninfo(db), "--quiet",
                          "--keys", os.path.join(d, "keys", "all.json"),
                          os.path.join(d, "room.jsonl")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=build_env.sanitizer_env(str(tmp_path)))
    try:
        # Said before it waits (a time-out: an import that says nothing waits for good).
        ready, _, _ = select.select([p.stderr], [], [], 30)
        assert ready, "the import waited for the lock without a word"
        said = p.stderr.readline()
        assert p.poll() is None, "the import did not wait for the lock"
        assert said.strip() == ("matrix-fed: import: waiting for another import into this"
                                f" database (PostgreSQL backend pid {pid}) to end"), said
    finally:
        holder.stdin.write("COMMIT;\n")
        holder.stdin.close()
        holder.wait(timeout=30)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert "imported 40 new events" in out, out


def test_021_030_killed_import_leaves_consistent_db(big_room, build_env, postgres):
    room = os.path.join(big_room, "room.jsonl")
    keys = os.path.join(big_room, "keys", "all.json")
    db = new_db(postgres, build_env)
    # Another session locks the auth edges table, so the import stops in its
    # first write round, after the COPY of that round's events and their
    # prev edges and before that of their auth edges, however fast the
    # build: it is killed there, with rows written in its transaction.
    lock = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-d", postgres.conninfo(db)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    lock.stdin.write("BEGIN; LOCK TABLE mxf_auth_edges IN ACCESS EXCLUSIVE MODE;"
                     " SELECT 'locked';\n")
    lock.stdin.flush()
    assert lock.stdout.readline().strip() == "locked"
    p = subprocess.Popen([build_env.cli, "import", "--db", postgres.conninfo(db), "--quiet",
                          "--batch-events", "200", "--keys", keys, room],
                         stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env=build_env.sanitizer_env("/tmp"))
    try:
        deadline = time.time() + 120
        while True:
            assert p.poll() is None, "the import ended while the auth edges table was locked"
            assert time.time() < deadline, "the import never waited for the lock"
            waiting = postgres.psql(db, "SELECT query FROM pg_stat_activity"
                                        " WHERE wait_event_type = 'Lock'"
                                        " AND datname = current_database()")
            if waiting:
                break
            time.sleep(0.05)
        assert waiting.startswith("COPY mxf_auth_edges"), waiting
        p.send_signal(signal.SIGKILL)
        p.wait()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        lock.stdin.write("COMMIT;\n")
        lock.stdin.close()
        lock.wait(timeout=30)
    # The server notices the client is gone and rolls back.
    deadline = time.time() + 30
    while postgres.psql(db, "SELECT count(*) FROM pg_stat_activity WHERE datname ="
                            " current_database() AND pid <> pg_backend_pid()") != "0":
        assert time.time() < deadline
        time.sleep(0.05)
    c = counts(postgres, db)
    assert c["mxf_events"] == 0 and c["mxf_rooms"] == 0 and c["mxf_state_groups"] == 0, c
    # And the import runs again from the start.
    out = import_ok(build_env, postgres, db, room, keys)
    assert f"imported {BIG_EVENTS} new events" in out
    c = counts(postgres, db)
    assert c["mxf_events"] == BIG_EVENTS
    assert postgres.psql(db, "SELECT count(*) FROM mxf_event_edges WHERE prev_nid IS NULL") \
        == "0"
    assert postgres.psql(db, "SELECT count(*) FROM mxf_events WHERE state_before IS NULL") \
        == "0"
