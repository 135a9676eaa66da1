# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""A room imported in several parts (consecutive chunks, later
parts first, random subsets whose prev_events and auth_events only arrive in
a later part, parts given out of order) must be served exactly as the same
room imported in one go into a fresh database: every endpoint's full JSON
answer (gme, backfill, /event, /state, /state_ids, /event_auth,
timestamp_to_event) for a sample of events and two requesting servers.
Order among events of equal depth is documented as arrival order, so lists
are compared with ties at one depth taken as a set (limits large enough that
no tie is cut); strict order is reported too."""
import json
import os
import random
import subprocess

import pytest
from canonicaljson import encode_canonical_json

from conftest import SERVER_NAME, site_config
from mxftest.matrix import Room, load_key, q, xmatrix
from test_020_genroom import gen
from test_021_import import new_db, read_lines, snapshot, write_lines

FED = "/_matrix/federation/v1"
SITE_EXTRA = "MatrixFedMissingEventsLimit 1000\nMatrixFedBackfillLimit 1000\n"
EVENTS = 300
MAIN_TABLES = ["mxf_rooms", "mxf_room_servers", "mxf_events", "mxf_event_edges",
               "mxf_auth_edges", "mxf_redactions"]


# --------------------------------------------------------------------- helpers

SEMANTIC = """
SELECT md5(string_agg(concat_ws('#', e.event_id, e.rejected_reason, e.outlier,
                                 e.redacted_because, md5(e.redacted_pdu), md5(e.pdu),
                                 e.signatures_verified, sb.m, sa.m), ',' ORDER BY e.event_id))
  FROM mxf_events e
  LEFT JOIN LATERAL (SELECT string_agg(s.type || '|' || s.state_key || '=' || x.event_id, ';'
                                       ORDER BY s.type, s.state_key) m
                       FROM mxf_state_of(e.state_before) s JOIN mxf_events x USING (event_nid)
                      WHERE e.state_before IS NOT NULL) sb ON true
  LEFT JOIN LATERAL (SELECT string_agg(s.type || '|' || s.state_key || '=' || x.event_id, ';'
                                       ORDER BY s.type, s.state_key) m
                       FROM mxf_state_of(e.state_after) s JOIN mxf_events x USING (event_nid)
                      WHERE e.state_after IS NOT NULL) sa ON true"""


def semantic(postgres, db):
    """Every event's bytes, redaction, rejection, signature flag and the state
    before and after it (by event IDs), as one digest: equal for the same
    room however its rows were numbered."""
    return postgres.psql(db, SEMANTIC)


def run_cli(build_env, workdir, *args, check=False):
    """matrix-fed with sanitizer logs in @workdir/cli-san (checked by cli_sanitizer_reports)."""
    logdir = os.path.join(workdir, "cli-san")
    os.makedirs(logdir, exist_ok=True)
    r = subprocess.run([build_env.cli, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, env=build_env.sanitizer_env(logdir))
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def cli_sanitizer_reports(workdir):
    d = os.path.join(workdir, "cli-san")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def import_path(build_env, workdir, postgres, db, path, keys, extra=(), check=True):
    args = ["import", "--db", postgres.conninfo(db), "--quiet", *extra]
    if keys:
        args += ["--keys", keys]
    return run_cli(build_env, workdir, *args, path, check=check)


def serve(httpd_factory, postgres, signing_key, backend, db, name, extra=SITE_EXTRA):
    h = httpd_factory.new(name)
    site = site_config(postgres, signing_key, backend, extra=extra)
    site = site.replace(postgres.conninfo(), postgres.conninfo(db))
    h.start(site)
    return h


class Signer:
    def __init__(self, origin, key):
        self.origin, self.key = origin, key

    def request(self, h, method, path, content=None, timeout=30):
        auth = xmatrix(self.origin, self.key, SERVER_NAME, method, path, content)
        if method == "GET":
            return h.get(path, headers={"Authorization": auth}, timeout=timeout)
        return h.post(path, body=json.dumps(content), headers={"Authorization": auth},
                      timeout=timeout)


def canon(x):
    return encode_canonical_json(x).decode()


def depth_groups(pdus):
    """[[depth, sorted canonical PDUs of that depth], ...] in the served order
    of depths: arrival order among equal depths is taken out."""
    out = []
    for p in pdus:
        d = p.get("depth")
        if out and out[-1][0] == d:
            out[-1][1].append(canon(p))
        else:
            out.append([d, [canon(p)]])
    for g in out:
        g[1].sort()
    return out


def normalize(kind, status, body, strict=False):
    try:
        j = json.loads(body)
    except ValueError:
        return [status, "not JSON", body[:200]]
    if status != 200:
        return [status, j.get("errcode") if isinstance(j, dict) else j]
    if kind in ("event", "backfill"):
        j.pop("origin_server_ts", None)
    if kind == "backfill":
        j["pdus"] = [canon(p) for p in j["pdus"]] if strict else depth_groups(j["pdus"])
    elif kind == "gme":
        j["events"] = [canon(p) for p in j["events"]] if strict else depth_groups(j["events"])
    elif kind == "state":
        j["pdus"] = sorted(canon(p) for p in j["pdus"])
        j["auth_chain"] = sorted(canon(p) for p in j["auth_chain"])
    elif kind == "state_ids":
        j["pdu_ids"] = sorted(j["pdu_ids"])
        j["auth_chain_ids"] = sorted(j["auth_chain_ids"])
    elif kind == "event_auth":
        j["auth_chain"] = sorted(canon(p) for p in j["auth_chain"])
    return [status, canon(j)]


def request_list(room, sample, big=1000, small=7):
    rid = q(room.room_id)
    reqs = []
    for eid in sample:
        e = q(eid)
        reqs += [("event", "GET", f"{FED}/event/{e}", None),
                 ("state", "GET", f"{FED}/state/{rid}?event_id={e}", None),
                 ("state_ids", "GET", f"{FED}/state_ids/{rid}?event_id={e}", None),
                 ("event_auth", "GET", f"{FED}/event_auth/{rid}/{e}", None),
                 ("backfill", "GET", f"{FED}/backfill/{rid}?v={e}&limit={big}", None),
                 ("backfill", "GET", f"{FED}/backfill/{rid}?v={e}&limit={small}", None),
                 ("gme", "POST", f"{FED}/get_missing_events/{rid}",
                  {"earliest_events": [], "latest_events": [eid], "limit": big}),
                 ("gme", "POST", f"{FED}/get_missing_events/{rid}",
                  {"earliest_events": [], "latest_events": [eid], "limit": small})]
        ts = room.events[eid]["json"]["origin_server_ts"]
        for t in (ts - 1, ts, ts + 1):
            for d in ("f", "b"):
                reqs.append(("ts", "GET", f"{FED}/timestamp_to_event/{rid}?ts={t}&dir={d}",
                             None))
    # Two tips at once, and a walk bounded below by an early event.
    tips = room.order[-3:]
    reqs.append(("gme", "POST", f"{FED}/get_missing_events/{rid}",
                 {"earliest_events": [room.order[len(room.order) // 2]],
                  "latest_events": tips, "limit": big}))
    reqs.append(("backfill", "GET",
                 f"{FED}/backfill/{rid}?v={q(tips[0])}&v={q(tips[1])}&limit={big}", None))
    return reqs


def collect(h, signers, reqs, strict=False):
    out = {}
    for s in signers:
        for kind, method, path, body in reqs:
            r = s.request(h, method, path, body)
            key = f"{s.origin} {method} {path} {canon(body) if body else ''}"
            out[key] = normalize(kind, r.status, r.body, strict)
    return out


def arrival_dependent(key):
    """Answers whose limit (7) cuts among events of equal depth or of one
    breadth-first layer: which of them are served is documented as arrival
    order, so they may differ between imports in other orders."""
    return "limit=7" in key or '"limit":7' in key


def diff(want, got, n=6):
    bad = [k for k in want if want[k] != got.get(k) and not arrival_dependent(k)]
    lines = [f"{len(bad)} of {len(want)} answers differ"]
    for k in bad[:n]:
        lines.append(f"  {k}\n    one go: {str(want[k])[:300]}\n    parts:  {str(got[k])[:300]}")
    return bad, "\n".join(lines)


def room_signers(room):
    """A server joined at the end that sees the least history, and one that
    sees the most (two different answers to every visibility question)."""
    joined = room.summary["joined_servers"]
    hidden = {s: sum(1 for e in room.order if not room.visible(e, s)) for s in joined}
    least = max(joined, key=lambda s: (hidden[s], s))
    most = min(joined, key=lambda s: (hidden[s], s))
    return [Signer(s, load_key(room.key_path(s))) for s in dict.fromkeys([least, most])]


# --------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module", params=["10", "1"])
def room(build_env, tmp_path_factory, request):
    v = request.param
    d = gen(build_env, tmp_path_factory.mktemp(f"parts-v{v}") / "room", v, seed=901,
            events=EVENTS, branchiness=0.3, extra=["--conflicts", "0.5"] if v != "1" else [])
    r = Room(str(d))
    r.keys = os.path.join(str(d), "keys", "all.json")
    r.path = os.path.join(str(d), "room.jsonl")
    return r


@pytest.fixture(scope="module")
def sample(room):
    rnd = random.Random(901)
    ids = list(room.order)
    return ids[:3] + sorted(rnd.sample(ids[3:-3], 30), key=ids.index) + ids[-3:]


@pytest.fixture(scope="module")
def one_go(room, sample, build_env, workdir, postgres, httpd_factory, signing_key, backend):
    db = new_db(postgres, build_env)
    import_path(build_env, workdir, postgres, db, room.path, room.keys)
    h = serve(httpd_factory, postgres, signing_key, backend, db, "one-go")
    reqs = request_list(room, sample)
    signers = room_signers(room)
    try:
        ans = collect(h, signers, reqs)
        strict = collect(h, signers, reqs, strict=True)
    finally:
        h.stop()
    return {"db": db, "answers": ans, "strict": strict, "reqs": reqs, "signers": signers}


def split_parts(lines, how, rnd):
    """Parts of line numbers; the m.room.create (line 0) always goes in the
    first part imported (the importer refuses a room whose create event is
    neither in the input nor in the database)."""
    parts = _split_parts(lines, how, rnd)
    parts = [[i for i in p if i != 0] for p in parts]
    parts[0].insert(0, 0)
    return parts


def _split_parts(lines, how, rnd):
    n = len(lines)
    idx = list(range(n))
    if how == "chunks":
        cuts = [0, 41, 97, 150, 233, n]
        return [idx[a:b] for a, b in zip(cuts, cuts[1:])]
    if how == "chunks_reversed":
        cuts = [0, 41, 97, 150, 233, n]
        return [idx[a:b] for a, b in zip(cuts, cuts[1:])][::-1]
    if how == "second_half_first":
        return [idx[n // 2:], idx[:n // 2]]
    if how == "interleaved":
        return [idx[1::2], idx[0::2]]
    if how == "random_subsets":
        parts = [[] for _ in range(4)]
        for i in idx:
            parts[rnd.randrange(4)].append(i)
        return parts
    if how == "random_subsets_shuffled":
        parts = [[] for _ in range(3)]
        for i in idx:
            parts[rnd.randrange(3)].append(i)
        for p in parts:
            rnd.shuffle(p)
        return parts
    raise ValueError(how)


SPLITS = ["chunks", "chunks_reversed", "second_half_first", "interleaved", "random_subsets", "random_subsets_shuffled"]


# The random splits' seeds (they were hash(how), which Python draws afresh
# for each process, so every run split otherwise).
SPLIT_SEEDS = {"second_half_first": 64769, "random_subsets_shuffled": 19055}
# A split whose third part completes events whose other parents are stored
# and cited by no event of that part (room version 1).
REFILL_SPLIT = 9263


def import_split(room, lines, how, seed, build_env, workdir, postgres, tmp_path):
    parts = split_parts(lines, how, random.Random(seed))
    db = new_db(postgres, build_env)
    for k, part in enumerate(parts):
        path = write_lines(tmp_path / f"part{k}.jsonl", [lines[i] for i in part])
        import_path(build_env, workdir, postgres, db, path, room.keys,
                    extra=["--batch-events", "37"])
    return db


def test_064_000_refilled_events_with_stored_parents(room, one_go, build_env, workdir, postgres,
                                                    tmp_path):
    """A split whose third part completes events of unknown state whose
    other parents came in the second part, cited by no event of the third:
    those parents are read from the database, and every event ends with the
    state of the one-go import (this split of the version 1 room once left
    291 of 300 events without a state and no joined servers)."""
    lines = read_lines(room.path)
    db = import_split(room, lines, "random_subsets_shuffled", REFILL_SPLIT, build_env,
                      workdir, postgres, tmp_path)
    assert postgres.psql(db, "SELECT count(*) FROM mxf_events"
                             " WHERE state_before IS NULL OR state_after IS NULL") == "0"
    assert snapshot(postgres, db)["mxf_room_servers"] == snapshot(postgres, one_go["db"])[
        "mxf_room_servers"]
    assert semantic(postgres, db) == semantic(postgres, one_go["db"])


@pytest.mark.parametrize("how", ["second_half_first", "random_subsets_shuffled"])
def test_064_001_parts_served_as_one_go(how, room, one_go, build_env, workdir, postgres,
                                    httpd_factory, signing_key, backend, tmp_path):
    lines = read_lines(room.path)
    db = import_split(room, lines, how, SPLIT_SEEDS[how], build_env, workdir, postgres,
                      tmp_path)
    want_rows = snapshot(postgres, one_go["db"])
    got_rows = snapshot(postgres, db)
    counts_w = {t: want_rows[t][0] for t in MAIN_TABLES}
    counts_g = {t: got_rows[t][0] for t in MAIN_TABLES}
    assert counts_g == counts_w, how
    if semantic(postgres, db) != semantic(postgres, one_go["db"]):
        sql = SEMANTIC.replace("SELECT md5(string_agg(", "SELECT e.event_id, md5((").replace(
            ", ',' ORDER BY e.event_id))", "))") + " ORDER BY 1"
        a = dict(line.split("|") for line in postgres.psql(one_go["db"], sql).splitlines())
        b = dict(line.split("|") for line in postgres.psql(db, sql).splitlines())
        differ = sorted(e for e in a if a[e] != b.get(e))
        pytest.fail(f"{how}: {len(differ)} events stored otherwise than in one go: {differ[:5]}")
    h = serve(httpd_factory, postgres, signing_key, backend, db, f"{how}")
    try:
        got = collect(h, one_go["signers"], one_go["reqs"])
    finally:
        h.stop()
    bad, text = diff(one_go["answers"], got)
    assert not bad, f"{how}: {text}"
    assert not cli_sanitizer_reports(workdir)


def test_064_002_overlapping_and_repeated_imports(room, one_go, build_env, workdir, postgres,
                                              tmp_path):
    """Overlapping files, then the whole file twice: each event stored once,
    the summaries count what is new, and the rows are the one-go import's."""
    lines = read_lines(room.path)
    n = len(lines)
    db = new_db(postgres, build_env)
    a = write_lines(tmp_path / "a.jsonl", lines[:200])
    b = write_lines(tmp_path / "b.jsonl", [lines[0]] + lines[120:])
    out = import_path(build_env, workdir, postgres, db, a, room.keys).stdout
    assert out.startswith("imported 200 new events (200 PDUs; 0 already known"), out
    out = import_path(build_env, workdir, postgres, db, b, room.keys).stdout
    assert out.startswith(f"imported {n - 200} new events ({n - 119} PDUs; 81 already known"), out
    for _ in range(2):
        out = import_path(build_env, workdir, postgres, db, room.path, room.keys).stdout
        assert out.startswith(f"imported 0 new events ({n} PDUs; {n} already known"), out
        assert "nothing new" in out
    dup = postgres.psql(db, "SELECT count(*) - count(DISTINCT event_id) FROM mxf_events")
    assert dup == "0"
    edges = ("SELECT count(*) - count(DISTINCT (event_nid, prev_id)) FROM mxf_event_edges")
    assert postgres.psql(db, edges) == "0"
    assert semantic(postgres, db) == semantic(postgres, one_go["db"])
    assert {t: v[0] for t, v in snapshot(postgres, db).items() if t in MAIN_TABLES} == \
        {t: v[0] for t, v in snapshot(postgres, one_go["db"]).items() if t in MAIN_TABLES}
