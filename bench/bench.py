# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The read-path benchmark (issue 8). Run it through bench/run, which builds
the module and installs wrk first; see the README's "Benchmarks" section.

Everything runs on 127.0.0.1: a PostgreSQL cluster kept between runs under
bench/cache/pg (one database per room, imported once), one httpd (event MPM,
bench/httpd.conf.in) that serves both the module and the static files of the
ceiling, and wrk (bench/wrk.lua) replaying X-Matrix-signed requests prepared
beforehand. Every load is bounded in time (wrk -d) and in count, and
everything started here is stopped on exit."""
import argparse
import datetime
import glob
import hashlib
import http.client
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(TOP, "t"))

from mxftest.env import BuildEnv  # noqa: E402
from mxftest.httpd import Httpd  # noqa: E402
from mxftest.matrix import Room, load_key, q, xmatrix  # noqa: E402
from mxftest.postgres import Postgres  # noqa: E402

FED = "/_matrix/federation/v1"
SERVER_NAME = "bench.example"
CACHE = os.path.join(BENCH, "cache")
RESULTS = os.path.join(BENCH, "results")

# The generated rooms: same options and seed give the same bytes.
GEN = {"room-version": 10, "servers": 8, "users-per-server": 3, "branchiness": 0.1,
       "redactions": 0.02, "seed": 1}
ROOMS = [("10k", 10_000), ("1m", 1_000_000)]

# (name, endpoint family, limit)
ENDPOINTS = [("gme10", "gme", 10), ("gme20", "gme", 20), ("backfill100", "backfill", 100),
             ("event", "event", None), ("state_ids", "state_ids", None),
             ("event_auth", "event_auth", None)]
VIEWERS = ("full", "restricted")
CONNS = (16, 64)
WRK_THREADS = 2

TARGET_RATIO = {"gme10": 0.50, "backfill100": 0.30, "event": 0.60}
TARGET_P99_MS = 50.0
TARGET_GROWTH = 1.25
TARGET_MEM = 0.10


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sha(data):
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------ services

class BenchPostgres(Postgres):
    """The harness's throwaway cluster, kept between runs in a fixed
    directory, with pg_stat_statements and production-like memory."""

    def __init__(self, basedir):
        super().__init__(basedir)
        self.state_file = os.path.join(basedir, "bench-state.json")

    def _pg_start(self):
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} "
                f"-c unix_socket_directories={self.sockdir} -c fsync=off "
                "-c max_connections=250 -c shared_buffers=2GB -c effective_cache_size=12GB "
                "-c shared_preload_libraries=pg_stat_statements "
                "-c pg_stat_statements.track=top -c pg_stat_statements.max=1000")
        self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir,
                  "-l", self.logfile, "-o", opts, "-w", "-t", "120", "start")

    def start(self):
        if os.path.exists(os.path.join(self.datadir, "PG_VERSION")):
            if os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
                # Left by a run that was killed: stop it (it is ours).
                self.stop()
            self._pg_start()
            self.wait_ready_db("postgres")
        else:
            os.makedirs(self.basedir, exist_ok=True)
            super().start()
        self.psql("postgres", "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    def stop(self):
        if os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
            subprocess.run(self._as + [os.path.join(self.bindir, "pg_ctl"), "-D",
                                       self.datadir, "-m", "fast", "-w", "-t", "120", "stop"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_ready_db(self, db, timeout=60):
        deadline = time.time() + timeout
        while True:
            try:
                self.psql(db, "SELECT 1")
                return
            except subprocess.CalledProcessError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)

    def socket_conninfo(self, db):
        return f"host={self.sockdir} port={self.port} user={self.USER} dbname={db} connect_timeout=5"

    def load_state(self):
        try:
            return json.load(open(self.state_file))
        except (OSError, ValueError):
            return {}

    def save_state(self, state):
        with open(self.state_file + ".tmp", "w") as f:
            json.dump(state, f, indent=1)
        os.replace(self.state_file + ".tmp", self.state_file)


class BenchHttpd(Httpd):
    """The harness's httpd process handling, with bench/httpd.conf.in, and
    glibc's malloc limited to --malloc-arenas arenas (MALLOC_ARENA_MAX, as
    the README recommends for production; 0: glibc's default)."""

    def __init__(self, env, basedir, name, arenas):
        super().__init__(env, basedir, name)
        if arenas:
            self.extra_env = {"MALLOC_ARENA_MAX": str(arenas)}

    def render(self, site, **kw):
        values = dict(site)
        values.update(RUNDIR=self.dir, PORT=str(self.port),
                      MODULEDIR=self.env.moduledir, MODULE=self.env.module)
        values["USER"] = "User www-data\nGroup www-data" if os.geteuid() == 0 else ""
        text = open(os.path.join(BENCH, "httpd.conf.in")).read()
        for k, v in values.items():
            text = text.replace(f"@{k}@", v)
        left = re.findall(r"@[A-Z_]+@", text)
        if left:
            raise RuntimeError(f"httpd.conf.in: no value for {left}")
        with open(self.conf, "w") as f:
            f.write(text)
        return self.conf

    def pids(self):
        if not self.proc:
            return []
        out = [self.proc.pid]
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                fields = open(stat).read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                out.append(int(stat.split("/")[2]))
        return out

    def finished(self, timeout=120):
        """Waits until no request is running (the access log has not grown
        for a second) and returns the number of requests logged so far."""
        deadline = time.time() + timeout
        last, since = -1, time.time()
        while time.time() < deadline:
            size = os.path.getsize(self.access_log) if os.path.exists(self.access_log) else 0
            if size != last:
                last, since = size, time.time()
            elif time.time() - since >= 1.0:
                break
            time.sleep(0.1)
        if not os.path.exists(self.access_log):
            return 0
        with open(self.access_log, "rb") as f:
            return f.read().count(b"\n")

    def rss_kb(self):
        """Resident memory of the parent and all children, in KiB."""
        total = 0
        for pid in self.pids():
            try:
                for line in open(f"/proc/{pid}/status"):
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total


# ------------------------------------------------------------------ rooms

def room_dir(label, events):
    params = dict(GEN, events=events)
    tag = sha(json.dumps(params, sort_keys=True).encode())[:10]
    return os.path.join(CACHE, "rooms", f"{label}-{tag}"), params


def ensure_room(cli, label, events):
    d, params = room_dir(label, events)
    done = os.path.join(d, ".complete")
    if os.path.exists(done):
        log(f"room {label}: cached in {os.path.relpath(d, TOP)}")
        return d, None
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.dirname(d), exist_ok=True)
    args = [cli, "gen-room", "--out", d, "--threads", "2", "--events", str(events)]
    for k, v in GEN.items():
        args += [f"--{k}", str(v)]
    log(f"room {label}: generating {events} events ({' '.join(args[2:])})")
    t0 = time.time()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    secs = time.time() - t0
    with open(done, "w") as f:
        json.dump({"params": params, "seconds": secs}, f)
    log(f"room {label}: generated in {secs:.0f} s")
    return d, secs


def schema_files():
    return {os.path.basename(p): sha(open(p, "rb").read())
            for p in sorted(glob.glob(os.path.join(TOP, "sql", "*.sql")))}


def ensure_db(pg, cli, label, rdir, reimport=False):
    """The room's own database, with the schema and the room imported once;
    rebuilt when a migration that was applied to it has changed since or a
    new one has come, or when asked (after changes to the importer)."""
    db = f"mxf_bench_{label}"
    state = pg.load_state()
    rooms = state.setdefault("rooms", {})
    have = rooms.get(label)
    files = schema_files()
    key = os.path.basename(rdir)
    # a changed migration, or a new one (the importer may fill what it adds)
    stale = (reimport or have is None or have.get("room") != key
             or set(files) != set(have.get("schema", {}))
             or any(files.get(f) != h for f, h in have.get("schema", {}).items()))
    exists = pg.psql("postgres", f"SELECT count(*) FROM pg_database WHERE datname = '{db}'") == "1"
    if not stale and exists:
        subprocess.run([cli, "db", "init", "--db", pg.conninfo(db)], check=True,
                       stdout=subprocess.DEVNULL)
        # The signing servers' keys again: keys are trusted for 7 days from
        # when they were obtained, and this database may be older.
        empty = os.path.join(CACHE, "empty.jsonl")
        open(empty, "w").close()
        subprocess.run([cli, "import", "--quiet", "--db", pg.conninfo(db),
                        "--keys", os.path.join(rdir, "keys", "all.json"), empty], check=True,
                       stdout=subprocess.DEVNULL)
        have["schema"] = files
        pg.save_state(state)
        log(f"room {label}: imported earlier into database {db} "
            f"(import took {have.get('import_seconds', 0):.0f} s)")
        return db, have
    if exists:
        pg.psql("postgres", f"DROP DATABASE {db}")
    rooms.pop(label, None)
    pg.save_state(state)
    pg.psql("postgres", f"CREATE DATABASE {db}")
    subprocess.run([cli, "db", "init", "--db", pg.conninfo(db)], check=True,
                   stdout=subprocess.DEVNULL)
    log(f"room {label}: importing into database {db} (this can take minutes for big rooms)")
    t0 = time.time()
    subprocess.run([cli, "import", "--quiet", "--db", pg.conninfo(db),
                    "--keys", os.path.join(rdir, "keys", "all.json"),
                    os.path.join(rdir, "room.jsonl")], check=True)
    secs = time.time() - t0
    log(f"room {label}: imported in {secs:.0f} s; VACUUM ANALYZE")
    pg.psql(db, "VACUUM ANALYZE")
    have = {"room": key, "schema": files, "import_seconds": secs,
            "imported_at": datetime.datetime.now().isoformat(timespec="seconds")}
    state = pg.load_state()
    state.setdefault("rooms", {})[label] = have
    pg.save_state(state)
    return db, have


def complete_state_events(room, pg, db):
    """A big room's expectations cover a sample of its events, so the
    membership and history-visibility events their states name may be
    missing from room.events: fill those in (content only, all that
    Room.visible reads) from the imported PDUs."""
    out = pg.psql(db, "SELECT event_id || chr(9) || (pdu::json -> 'content')::text "
                      "FROM mxf_events WHERE type IN ('m.room.member', "
                      "'m.room.history_visibility')")
    added = 0
    for line in out.splitlines():
        eid, content = line.split("\t", 1)
        if eid not in room.events:
            room.events[eid] = {"json": {"content": json.loads(content)}}
            added += 1
    return added


def pick_viewers(room):
    """Among the servers joined at the end (so that they pass the room
    access check), the one that may see the most history and the one that
    may see the least, by the visibility rule of t/mxftest/matrix.py over
    the room's per-event expectations (a sample in big rooms)."""
    joined = sorted(room.summary["joined_servers"])
    hidden = {s: sum(1 for e in room.order if not room.visible(e, s)) for s in joined}
    full = min(joined, key=lambda s: (hidden[s], s))
    restricted = max(joined, key=lambda s: (hidden[s], s))
    return {"full": full, "restricted": restricted}, hidden


def prepare_requests(room, viewers, outdir, n, rng):
    """n X-Matrix-signed requests per (endpoint, viewer), drawn from the
    room's events; for the restricted viewer from the events it may not
    see, so that answers carry redacted copies. Returns {case: path}."""
    os.makedirs(outdir, exist_ok=True)
    order = room.order
    pos = {e: i for i, e in enumerate(order)}
    files = {}
    for vname, server in viewers.items():
        key = load_key(room.key_path(server))
        pool = [e for e in order[1:] if not room.visible(e, server)] if vname == "restricted" else []
        if len(pool) < 20:
            pool = order[1:]
        for name, fam, limit in ENDPOINTS:
            lines = []
            for _ in range(n):
                e = rng.choice(pool)
                body = None
                if fam == "gme":
                    early = order[max(0, pos[e] - rng.randint(20, 60))]
                    body = {"earliest_events": [early] if early != e else [],
                            "latest_events": [e], "limit": limit, "min_depth": 0}
                    method, path = "POST", f"{FED}/get_missing_events/{q(room.room_id)}"
                elif fam == "backfill":
                    method, path = "GET", f"{FED}/backfill/{q(room.room_id)}?v={q(e)}&limit={limit}"
                elif fam == "event":
                    method, path = "GET", f"{FED}/event/{q(e)}"
                elif fam == "state_ids":
                    method, path = "GET", f"{FED}/state_ids/{q(room.room_id)}?event_id={q(e)}"
                else:
                    method, path = "GET", f"{FED}/event_auth/{q(room.room_id)}/{q(e)}"
                auth = xmatrix(server, key, SERVER_NAME, method, path, body)
                text = json.dumps(body, separators=(",", ":")) if body is not None else ""
                lines.append(f"{method}\t{path}\t{auth}\t{text}\n")
            path = os.path.join(outdir, f"{name}-{vname}.tsv")
            with open(path, "w") as f:
                f.writelines(lines)
            files[(name, vname)] = path
    return files


def read_requests(path):
    out = []
    for line in open(path):
        m, p, a, b = line.rstrip("\n").split("\t", 3)
        out.append((m, p, a, b))
    return out


def site_values(pg, db, key_path, staticdir, servers):
    """The values of httpd.conf.in. Key fetching is pointed at a closed
    loopback port for every server of the room: all keys are in the key
    table, and should the database fail, nothing leaves the machine."""
    urls = "\n".join(f"MatrixFedKeyServerURL {s} https://127.0.0.1:9" for s in servers)
    return {"CONNINFO": pg.socket_conninfo(db), "SERVER_NAME": SERVER_NAME,
            "SIGNING_KEY": key_path, "STATICDIR": staticdir, "KEY_SERVER_URLS": urls}


# ------------------------------------------------------------------ measuring

def probe(httpd, reqfile, n, seconds=30, slow=2.0):
    """Sends the first n requests of a file one by one (at least 3, then as
    many as fit in the given seconds; only 3 when one takes over slow
    seconds): every answer must be 200. Returns the median body size, the
    share of redacted message PDUs among the message PDUs served, the
    median seconds per request, and how many requests were sent."""
    conn = http.client.HTTPConnection("127.0.0.1", httpd.port, timeout=300)
    sizes, times, msgs, redacted = [], [], 0, 0
    deadline = time.time() + seconds
    try:
        for m, p, a, b in read_requests(reqfile)[:n]:
            if len(sizes) >= 3 and (time.time() > deadline or max(times) > slow):
                break
            t0 = time.time()
            hdrs = {"Authorization": a}
            if b:
                hdrs["Content-Type"] = "application/json"
            conn.request(m, p, body=b.encode() if b else None, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
            times.append(time.time() - t0)
            if resp.status != 200:
                raise RuntimeError(f"{m} {p} -> {resp.status} {raw[:300]!r}\n{httpd.log_tail(10)}")
            sizes.append(len(raw))
            doc = json.loads(raw)
            for pdu in doc.get("events", []) + doc.get("pdus", []):
                if pdu.get("type") == "m.room.message":
                    msgs += 1
                    if "body" not in pdu.get("content", {}):
                        redacted += 1
    finally:
        conn.close()
    return (int(statistics.median(sizes)), (redacted / msgs if msgs else None),
            statistics.median(times), len(sizes))


def run_wrk(port, reqfile, conns, seconds, stop_after=0, timeout_s=10):
    env = dict(os.environ, MXF_REQS=reqfile, MXF_THREADS=str(WRK_THREADS))
    if stop_after:
        env["MXF_STOP_AFTER"] = str(stop_after)
    args = ["wrk", "-t", str(WRK_THREADS), "-c", str(conns), "-d", f"{seconds}s",
            "--timeout", f"{timeout_s}s", "--latency", "-s", os.path.join(BENCH, "wrk.lua"),
            f"http://127.0.0.1:{port}"]
    if not stop_after:
        out = subprocess.run(args, env=env, check=True, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=seconds + 60).stdout
    else:
        # Each thread stops after its share and says so with a file; wrk
        # itself would wait out -d, so it is ended with SIGINT (it then
        # prints its results, timed to that moment).
        prefix = os.path.join(os.path.dirname(reqfile), f"wrk-done-{os.getpid()}-")
        for old in glob.glob(prefix + "*"):
            os.unlink(old)
        env["MXF_DONE_PREFIX"] = prefix
        with subprocess.Popen(args, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) as proc:
            deadline = time.time() + seconds + 60
            while proc.poll() is None and time.time() < deadline:
                if len(glob.glob(prefix + "*")) >= WRK_THREADS:
                    proc.send_signal(signal.SIGINT)
                    break
                time.sleep(0.1)
            out = proc.communicate(timeout=max(1, deadline - time.time()))[0]
        for old in glob.glob(prefix + "*"):
            os.unlink(old)
    m = re.search(r"^MXFJSON (.*)$", out, re.M)
    if not m:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    res = json.loads(m.group(1))
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6) if res["duration_us"] else 0.0
    res["errors_total"] = sum(res["errors"].values())
    return res


def sql_reset(pg):
    pg.psql("postgres", "SELECT pg_stat_statements_reset()")


def sql_calls(pg, db):
    """Statements the module ran in db since the last reset: total calls and
    the statements by calls."""
    out = pg.psql("postgres",
                  "SELECT s.calls, regexp_replace(left(s.query, 90), '\\s+', ' ', 'g') "
                  "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
                  f"WHERE d.datname = '{db}' ORDER BY s.calls DESC")
    stmts = []
    for line in out.splitlines():
        if line.strip():
            calls, query = line.split("|", 1)
            stmts.append((int(calls), query))
    return sum(c for c, _ in stmts), stmts


def static_file(staticdir, name, size):
    """A JSON file of exactly size bytes."""
    path = os.path.join(staticdir, f"{name}.json")
    pad = max(0, size - len('{"pad":""}'))
    with open(path, "w") as f:
        f.write('{"pad":"' + "x" * pad + '"}')
    os.chmod(path, 0o644)
    return "/" + os.path.basename(path)


def ms(us):
    return us / 1000.0


# ------------------------------------------------------------------ one room

def bench_room(args, env, pg, label, rdir, db, rundir, key_path, staticdir, rng):
    t0 = time.time()
    log(f"room {label}: loading {os.path.relpath(rdir, TOP)}")
    room = Room(rdir)
    complete_state_events(room, pg, db)
    viewers, hidden = pick_viewers(room)
    log(f"room {label}: {room.summary['events']} events; viewers {viewers} "
        f"(events hidden in the sample of {len(room.order)}: "
        f"{hidden[viewers['full']]} / {hidden[viewers['restricted']]})")
    reqdir = os.path.join(rundir, f"reqs-{label}")
    files = prepare_requests(room, viewers, reqdir, args.requests, rng)
    nevents = room.summary["events"]
    servers = [sv["server_name"] for sv in room.summary["servers"]]
    del room

    httpd = BenchHttpd(env, rundir, f"httpd-{label}", args.malloc_arenas)
    site = site_values(pg, db, key_path, staticdir, servers)
    httpd.start(site)
    results, ok_files = [], {}
    try:
        r = httpd.get(f"{FED}/version")
        assert r.status == 200, r
        for name, fam, limit in ENDPOINTS:
            if args.only and name not in args.only:
                continue
            for vname in VIEWERS:
                reqfile = files[(name, vname)]
                # The statements per request, exactly: the probe's requests
                # run one at a time and all of them finish.
                sql_reset(pg)
                median, redacted, secs, nprobe = probe(httpd, reqfile, args.probe,
                                                       slow=args.slow)
                probe_calls, _ = sql_calls(pg, db)
                probe_sql = probe_calls / nprobe
                if secs > args.slow:
                    # Not loaded: 64 answers of this size at once would only
                    # measure swapping, and each takes longer than wrk waits.
                    for conns in CONNS:
                        results.append({
                            "room": label, "room_events": nevents, "endpoint": name,
                            "viewer": vname, "server": viewers[vname], "conns": conns,
                            "skipped": f"{secs:.2f} s per request alone, answers of "
                                       f"{median:,} bytes",
                            "probe_seconds": secs, "median_bytes": median,
                            "sql_per_request": probe_sql,
                            "redacted_message_share": redacted})
                    log(f"{label:>3} {name:<11} {vname:<10} SKIPPED: {secs:.1f} s per request, "
                        f"answers of {median:,} bytes")
                    continue
                ok_files[(name, vname)] = (reqfile, secs, median)
                static = static_file(staticdir, f"{label}-{name}-{vname}", median)
                staticreqs = os.path.join(reqdir, f"static-{name}-{vname}.tsv")
                with open(staticreqs, "w") as f:
                    f.write(f"GET\t{static}\t\t\n")
                if args.warmup:
                    # At the most connections, so that every child's
                    # database pool is open, and every pooled connection
                    # has run the case's statement past PostgreSQL's first
                    # (custom-planned) executions, before anything is counted.
                    run_wrk(httpd.port, reqfile, CONNS[-1], args.warmup)
                for conns in CONNS:
                    logged0 = httpd.finished()
                    rss0 = httpd.rss_kb()
                    sql_reset(pg)
                    mod = run_wrk(httpd.port, reqfile, conns, args.duration)
                    # Requests still running when wrk stopped finish after it
                    # and count, in the log and in the statements alike.
                    served = httpd.finished() - logged0
                    calls, stmts = sql_calls(pg, db)
                    rss1 = httpd.rss_kb()
                    ceil = run_wrk(httpd.port, staticreqs, conns, args.duration)
                    case = {
                        "room": label, "room_events": nevents, "endpoint": name,
                        "viewer": vname, "server": viewers[vname], "conns": conns,
                        "rps": mod["rps"], "p50_ms": ms(mod["latency_us"]["p50"]),
                        "p99_ms": ms(mod["latency_us"]["p99"]),
                        "requests": mod["requests"], "errors": mod["errors"],
                        "served": served,
                        "sql_per_request": probe_sql,
                        "sql_per_request_under_load": calls / served if served else None,
                        "sql_statements": [{"calls_per_request": c / max(1, served),
                                            "query": qy} for c, qy in stmts[:5]],
                        "median_bytes": median, "redacted_message_share": redacted,
                        "rss_before_kb": rss0, "rss_after_kb": rss1,
                        "ceiling": {"rps": ceil["rps"], "p50_ms": ms(ceil["latency_us"]["p50"]),
                                    "p99_ms": ms(ceil["latency_us"]["p99"]),
                                    "errors": ceil["errors"]},
                        "ratio": mod["rps"] / ceil["rps"] if ceil["rps"] else None,
                    }
                    results.append(case)
                    log(f"{label:>3} {name:<11} {vname:<10} c={conns:<3} "
                        f"{case['rps']:8.0f} rps  p50 {case['p50_ms']:6.2f} ms  "
                        f"p99 {case['p99_ms']:6.2f} ms  sql/req {case['sql_per_request'] or 0:.2f}  "
                        f"{median} B  ceiling {ceil['rps']:8.0f} rps  ratio "
                        f"{case['ratio'] or 0:.2f}  rss {rss0 // 1024}->{rss1 // 1024} MiB"
                        + (f"  ERRORS {mod['errors']}" if mod["errors_total"] else ""))
        # All workers busy is what a 64-connection run is about.
        bad = httpd.unexpected_log_lines(allowed=("AH00484", "AH10159"))
    finally:
        httpd.stop()
    log(f"room {label}: done in {time.time() - t0:.0f} s")
    return results, viewers, ok_files, bad


# A case whose requests take longer than this one at a time, or whose
# median answer is bigger than this, is left out of the memory soak: a
# million requests cannot include answers of several megabytes that take
# seconds each (their memory is measured by their own cases, whose RSS
# before and after is in the results).
SOAK_MAX_PROBE_SECONDS = 0.25
SOAK_MAX_MEDIAN_BYTES = 1 << 20


def soak(args, env, pg, label, db, rundir, key_path, staticdir, files, servers):
    """A fresh httpd; the prepared requests of the room's cases mixed (but
    those of cases slower than SOAK_MAX_PROBE_SECONDS or with median answers
    over SOAK_MAX_MEDIAN_BYTES), 16 connections;
    httpd RSS after the first 10,000 requests, then after each further
    chunk until args.soak requests in all or args.soak_seconds."""
    mixed = os.path.join(rundir, f"soak-{label}.tsv")
    lines, mixed_cases, left_out = [], [], []
    for (name, vname), (path, secs, median) in sorted(files.items()):
        if secs > SOAK_MAX_PROBE_SECONDS or median > SOAK_MAX_MEDIAN_BYTES:
            left_out.append(f"{name} {vname} ({secs:.2f} s per request, median answer "
                            f"{median:,} bytes)")
            continue
        mixed_cases.append(f"{name} {vname}")
        lines += open(path).readlines()
    if left_out:
        log(f"soak {label}: left out (slower than {SOAK_MAX_PROBE_SECONDS} s per request, or "
            f"median answers over {SOAK_MAX_MEDIAN_BYTES:,} bytes): "
            + ", ".join(left_out))
    if not lines:
        log(f"soak {label}: not run, no case of this run is fast enough for it")
        return None
    random.Random(7).shuffle(lines)
    with open(mixed, "w") as f:
        f.writelines(lines)
    httpd = BenchHttpd(env, rundir, f"httpd-soak-{label}", args.malloc_arenas)
    site = site_values(pg, db, key_path, staticdir, servers)
    httpd.start(site)
    curve, errors, total = [], 0, 0
    t0 = time.time()
    try:
        rss_start = httpd.rss_kb()
        first = min(10_000, args.soak)
        chunk = max(first, min(100_000, args.soak // 10))
        while total < args.soak:
            left = args.soak_seconds - (time.time() - t0)
            if total and left < 5:
                break
            want = first if not total else min(chunk, args.soak - total)
            r = run_wrk(httpd.port, mixed, 16, int(max(left, 30)) if not total else int(left),
                        stop_after=want)
            total += r["requests"]
            errors += r["errors_total"]
            curve.append({"requests": total, "rss_kb": httpd.rss_kb(), "rps": r["rps"]})
            log(f"soak {label}: {total:,} requests, httpd RSS {curve[-1]['rss_kb'] // 1024} MiB "
                f"({r['rps']:.0f} req/s)")
            if r["requests"] < want * 0.99:
                break
    finally:
        httpd.stop()
    rss_first, rss_end = curve[0]["rss_kb"], curve[-1]["rss_kb"]
    res = {"room": label, "cases": mixed_cases, "left_out": left_out,
           "requested": args.soak, "requests": total,
           "complete": total >= args.soak * 0.99, "errors": errors, "seconds": time.time() - t0,
           "rss_start_kb": rss_start, "first_requests": curve[0]["requests"],
           "rss_after_first_kb": rss_first, "rss_end_kb": rss_end, "curve": curve,
           "growth": (rss_end - rss_first) / rss_first if rss_first else None}
    log(f"soak {label}: httpd RSS after the first {res['first_requests']:,} requests "
        f"{rss_first // 1024} MiB, after {total:,}: {rss_end // 1024} MiB "
        f"({res['growth'] * 100:+.1f} %)")
    return res


# ------------------------------------------------------------------ report

def evaluate(cases, soak_res, quick):
    targets = []

    def add(name, measured, ok):
        targets.append({"target": name, "measured": measured,
                        "result": "n/a" if ok is None else ("PASS" if ok else "MISS")})

    skipped = [c for c in cases if "skipped" in c]
    cases = [c for c in cases if "skipped" not in c]
    skipped_names = sorted({f"{c['room']} {c['endpoint']} {c['viewer']}" for c in skipped})
    errors = [c for c in cases if sum(c["errors"].values())]
    add("every case loaded, every request answered without error",
        f"{len(errors)} cases with errors"
        + (f"; not loaded (too slow): {', '.join(skipped_names)}" if skipped else ""),
        not errors and not skipped)
    for ep, want in TARGET_RATIO.items():
        rs = [c["ratio"] for c in cases if c["endpoint"] == ep and c["ratio"] is not None]
        sk = [c for c in skipped if c["endpoint"] == ep]
        if sk and not rs:
            add(f"{ep}: >= {want * 100:.0f} % of the ceiling's requests/s (every case)",
                "not loaded (too slow)", False)
        if rs:
            add(f"{ep}: >= {want * 100:.0f} % of the ceiling's requests/s (every case)",
                f"min {min(rs) * 100:.0f} %, max {max(rs) * 100:.0f} %"
                + (f"; {len(sk)} cases not loaded" if sk else ""), min(rs) >= want and not sk)
    p99 = [(c["p99_ms"], c) for c in cases if c["conns"] == 64]
    p99 += [(c["probe_seconds"] * 1000, c) for c in skipped if c["conns"] == 64]
    if p99:
        worst, wc = max(p99, key=lambda x: x[0])
        add(f"p99 < {TARGET_P99_MS:.0f} ms at 64 connections (every case)",
            f"worst {worst:.1f} ms ({wc['room']} {wc['endpoint']} {wc['viewer']}"
            + (", one request alone" if "skipped" in wc else "") + ")"
            + ("; some cases not loaded" if skipped else ""),
            worst < TARGET_P99_MS and not skipped)
    fams = {}
    for c in cases:
        fam = "gme" if c["endpoint"].startswith("gme") else c["endpoint"]
        if c["sql_per_request"] is not None:
            fams.setdefault(fam, []).append(c["sql_per_request"])
    if fams:
        spread = {f: (min(v), max(v)) for f, v in fams.items()}
        ok = all(hi - lo <= 0.1 for lo, hi in spread.values())
        add("SQL statements per request constant in limit and room size",
            ", ".join(f"{f} {lo:.2f}-{hi:.2f}" for f, (lo, hi) in spread.items()), ok)
    growth = []
    by = {(c["endpoint"], c["viewer"], c["conns"], c["room"]): c for c in cases}
    for (ep, v, cn, rm), c in by.items():
        if rm == "1m" and (ep, v, cn, "10k") in by:
            small = by[(ep, v, cn, "10k")]
            growth.append({"endpoint": ep, "viewer": v, "conns": cn,
                           "time_ratio": small["rps"] / c["rps"] if c["rps"] else None,
                           "p50_ratio": c["p50_ms"] / small["p50_ms"] if small["p50_ms"] else None})
    sk_big = sorted({f"{c['endpoint']} {c['viewer']}" for c in skipped if c["room"] != "10k"})
    if growth:
        worst = max(growth, key=lambda g: g["time_ratio"] or 0)
        add(f"time per request at 1,000,000 events <= {TARGET_GROWTH}x that at 10,000",
            f"worst measured {worst['time_ratio']:.2f}x ({worst['endpoint']} {worst['viewer']} "
            f"c={worst['conns']})"
            + (f"; not loaded in the big room: {', '.join(sk_big)}" if sk_big else ""),
            worst["time_ratio"] <= TARGET_GROWTH and not sk_big)
    else:
        add(f"time per request at 1,000,000 events <= {TARGET_GROWTH}x that at 10,000",
            "not measured (--quick)" if quick else "not measured", None)
    if soak_res:
        short = "" if soak_res["complete"] else " (soak cut short by its time limit)"
        n = soak_res["requests"]
        add(f"httpd memory after {n:,} requests within {TARGET_MEM * 100:.0f} % of "
            f"after the first {soak_res['first_requests']:,}",
            f"{soak_res['growth'] * 100:+.1f} % ({soak_res['rss_after_first_kb'] // 1024} -> "
            f"{soak_res['rss_end_kb'] // 1024} MiB, {soak_res['room']} room){short}"
            + ("" if soak_res["requested"] >= 1_000_000 else
               f"; soak of {soak_res['requested']:,} requests, not 1,000,000 (--soak)"),
            soak_res["growth"] <= TARGET_MEM and not soak_res["errors"])
    return targets, growth


def markdown(meta, cases, growth, soak_res, targets):
    out = [f"# Read-path benchmark ({meta['mode']})", "",
           f"{meta['date']} · commit {meta['commit']} · {meta['cpu']} · {meta['nproc']} cores "
           f"· wrk -t{WRK_THREADS} -d{meta['duration']}s on the same machine · {meta['httpd']} "
           f"· PostgreSQL {meta['postgres']} · load average {meta['loadavg_at_start']:.1f} at "
           f"the start, {meta['loadavg_at_end']:.1f} at the end · httpd with "
           + (f"MALLOC_ARENA_MAX={meta['malloc_arena_max']}" if meta.get("malloc_arena_max")
              else "glibc's default malloc arenas"), "",
           "Module: X-Matrix-signed requests, "
           f"{meta['requests_per_case']} different ones per case, replayed in a cycle. Ceiling: "
           "the same httpd serving a static file of the median response size, same wrk "
           "settings. SQL/req: pg_stat_statements calls per request over the case's first "
           "requests, sent one at a time before the load (the JSON also has the ratio under "
           "load, statements PostgreSQL finished / requests httpd logged, which requests cut "
           "off when wrk stops skew). RSS: all httpd processes, "
           "before -> after the case. Viewer: the origin server signing the requests, "
           "*full* may see all history, *restricted* is served redacted copies of what it "
           "may not see (redacted: share of the m.room.message PDUs served redacted, from "
           "the first requests of the case).", "",
           "| room | case | viewer | conns | req/s | p50 ms | p99 ms | SQL/req | resp B | "
           "redacted | ceiling req/s | ratio | RSS MiB |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for c in cases:
        if "skipped" in c:
            red = c["redacted_message_share"]
            red = "-" if red is None else f"{red * 100:.0f} %"
            out.append(f"| {c['room']} | {c['endpoint']} | {c['viewer']} ({c['server']}) | "
                       f"{c['conns']} | not loaded: {c['skipped']} | | | | "
                       f"{c['median_bytes']} | {red} | | | |")
            continue
        err = " (errors!)" if sum(c["errors"].values()) else ""
        red = c["redacted_message_share"]
        red = "-" if red is None else f"{red * 100:.0f} %"
        out.append(f"| {c['room']} | {c['endpoint']} | {c['viewer']} ({c['server']}) | "
                   f"{c['conns']} | {c['rps']:.0f}{err} | {c['p50_ms']:.2f} | {c['p99_ms']:.2f} | "
                   f"{c['sql_per_request']:.2f} | {c['median_bytes']} | {red} | "
                   f"{c['ceiling']['rps']:.0f} | {c['ratio'] * 100:.0f} % | "
                   f"{c['rss_before_kb'] // 1024} -> {c['rss_after_kb'] // 1024} |")
    if growth:
        out += ["", "## Cost growth: 1,000,000 vs 10,000 events", "",
                "| case | viewer | conns | time/request ratio (req/s 10k / req/s 1M) | p50 ratio |",
                "|---|---|---:|---:|---:|"]
        for g in growth:
            out.append(f"| {g['endpoint']} | {g['viewer']} | {g['conns']} | "
                       f"{g['time_ratio']:.2f} | {g['p50_ratio']:.2f} |")
    if soak_res:
        out += ["", "## Memory soak", "",
                f"{soak_res['room']} room, cases mixed: {', '.join(soak_res['cases'])}"
                + (f" (left out, too slow for a million requests: "
                   f"{', '.join(soak_res['left_out'])})" if soak_res["left_out"] else "")
                + f"; 16 connections: httpd RSS "
                f"{soak_res['rss_start_kb'] // 1024} MiB at start, "
                f"{soak_res['rss_after_first_kb'] // 1024} MiB after the first "
                f"{soak_res['first_requests']:,} requests, {soak_res['rss_end_kb'] // 1024} MiB "
                f"after {soak_res['requests']:,} ({soak_res['growth'] * 100:+.1f} %)"
                + ("" if soak_res["complete"] else
                   f"; the soak asked for {soak_res['requested']:,} and was cut by its time limit")
                + ("" if soak_res["requested"] >= 1_000_000 else
                   "; shorter than the target's 1,000,000 requests (--soak)") + "."]
    out += ["", "## Targets (issue 8)", "", "| target | measured | result |", "|---|---|---|"]
    for t in targets:
        out.append(f"| {t['target']} | {t['measured']} | {t['result']} |")
    return "\n".join(out) + "\n"


def machine_meta(args, env):
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def cmd(*a):
        try:
            return subprocess.run(a, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, cwd=TOP).stdout.strip()
        except OSError:
            return ""

    commit = cmd("git", "rev-parse", "--short", "HEAD") or "unknown"
    if cmd("git", "status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "loadavg_at_start": os.getloadavg()[0],
            "commit": commit, "cpu": cpu, "nproc": os.cpu_count(),
            "kernel": platform.release(),
            "httpd": cmd(env.httpd, "-v").splitlines()[0].split(":", 1)[-1].strip(),
            "postgres": (re.findall(r"\d+\.\d+", cmd("psql", "--version")) or ["?"])[0],
            "wrk": cmd("wrk", "-v").splitlines()[0].split(" [")[0] if shutil.which("wrk") else "",
            "mode": "quick: 10,000-event room only" if args.quick else "full",
            "duration": args.duration, "requests_per_case": args.requests,
            "conns": list(CONNS), "wrk_threads": WRK_THREADS,
            "malloc_arena_max": args.malloc_arenas}


# ------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="only the 10,000-event room")
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (10)")
    ap.add_argument("--warmup", type=int, default=5, help="warm-up seconds per case (5)")
    ap.add_argument("--requests", type=int, default=2000,
                    help="different signed requests per case (2000)")
    ap.add_argument("--probe", type=int, default=100,
                    help="requests per case checked one by one first (100)")
    ap.add_argument("--soak", type=int, default=None,
                    help="requests of the memory soak (default 1,000,000; --quick: 100,000; "
                         "0: no soak)")
    ap.add_argument("--soak-seconds", type=int, default=None,
                    help="time limit of the soak (default 1800; --quick: 600); a soak cut "
                         "short by it says so in the results")
    ap.add_argument("--slow", type=float, default=2.0,
                    help="a case whose requests take longer than this many seconds one "
                         "at a time is reported, not loaded (2)")
    ap.add_argument("--reimport", action="store_true",
                    help="import the rooms again (after changes to matrix-fed import)")
    ap.add_argument("--malloc-arenas", type=int, default=2,
                    help="MALLOC_ARENA_MAX of httpd (2, as the README recommends; 0: glibc's "
                         "default, 8 per core)")
    ap.add_argument("--only", default="", help="comma-separated cases, e.g. gme10,event")
    ap.add_argument("--big-events", type=int, default=ROOMS[1][1],
                    help="events of the big room (1,000,000)")
    args = ap.parse_args()
    args.only = [s for s in args.only.split(",") if s]
    if args.soak is None:
        args.soak = 100_000 if args.quick else 1_000_000
    if args.soak_seconds is None:
        args.soak_seconds = 600 if args.quick else 1800

    os.environ["MXF_BUILDDIR"] = os.path.join(BENCH, "build")
    env = BuildEnv()
    assert not env.asan, "bench/build must be configured without --enable-asan"
    rooms = [ROOMS[0]] if args.quick else [ROOMS[0], ("1m", args.big_events)]
    if not args.quick and args.big_events != 1_000_000:
        rooms[1] = (f"{args.big_events // 1000}k", args.big_events)

    os.makedirs(CACHE, exist_ok=True)
    os.chmod(CACHE, 0o755)
    rundir = os.path.join(CACHE, "run")
    shutil.rmtree(rundir, ignore_errors=True)
    os.makedirs(rundir)
    os.chmod(rundir, 0o777)
    staticdir = os.path.join(rundir, "static")
    os.makedirs(staticdir)
    os.chmod(staticdir, 0o755)

    meta = machine_meta(args, env)
    room_dirs = {label: ensure_room(env.cli, label, n) for label, n in rooms}

    pg = BenchPostgres(os.path.join(CACHE, "pg"))
    all_cases, soak_res, viewers_by_room, imports, warnings = [], None, {}, {}, []
    try:
        log("starting PostgreSQL (cached cluster in bench/cache/pg)")
        pg.start()
        key_path = os.path.join(rundir, "signing.key")
        subprocess.run([env.cli, "keygen", key_path], check=True, stdout=subprocess.DEVNULL)
        rng = random.Random(1)
        last = None
        for label, _ in rooms:
            rdir, gen_secs = room_dirs[label]
            db, info = ensure_db(pg, env.cli, label, rdir, args.reimport)
            imports[label] = {"import_seconds": info.get("import_seconds"),
                              "generate_seconds_this_run": gen_secs}
            all_servers = [sv["server_name"] for sv in
                           json.load(open(os.path.join(rdir, "expected.json")))["servers"]]
            cases, viewers, files, bad = bench_room(args, env, pg, label, rdir, db, rundir,
                                                    key_path, staticdir, rng)
            all_cases += cases
            viewers_by_room[label] = viewers
            warnings += bad
            last = (label, db, files)
            servers = all_servers
        if args.soak and last:
            label, db, files = last
            soak_res = soak(args, env, pg, label, db, rundir, key_path, staticdir, files,
                            servers)
    finally:
        pg.stop()

    targets, growth = evaluate(all_cases, soak_res, args.quick)
    meta["loadavg_at_end"] = os.getloadavg()[0]
    meta["viewers"] = viewers_by_room
    meta["imports"] = imports
    report = {"meta": meta, "cases": all_cases, "cost_growth": growth, "soak": soak_res,
              "targets": targets, "httpd_warnings": warnings[:50]}
    os.makedirs(RESULTS, exist_ok=True)
    md = markdown(meta, all_cases, growth, soak_res, targets)
    with open(os.path.join(RESULTS, "latest.md"), "w") as f:
        f.write(md)
    with open(os.path.join(RESULTS, "latest.json"), "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    print()
    print(md)
    if warnings:
        print(f"httpd logged {len(warnings)} warnings or errors, e.g.:\n  " +
              "\n  ".join(warnings[:5]))
    log("wrote bench/results/latest.md and bench/results/latest.json")
    return 0


def _on_signal(signum, frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(s, _on_signal)
    sys.exit(main())
