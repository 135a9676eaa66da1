# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The import benchmark; run it through bench/import.sh. A room made by
matrix-fed gen-room (4 servers, branchiness 0.1, seed 1) is cached under
bench/cache/import/; each run starts a throwaway PostgreSQL cluster (the
test harness's, with bulk-load settings), imports the room with signature
verification (--keys) into a fresh database, prints the figures and stops
the cluster."""
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "t"))

from mxftest.postgres import Postgres  # noqa: E402

# A bulk load into a throwaway cluster: large WAL between checkpoints, no
# WAL archiving, shared buffers for the indexes.
SETTINGS = ["shared_buffers=512MB", "max_wal_size=16GB", "checkpoint_timeout=1h",
            "wal_level=minimal", "max_wal_senders=0", "synchronous_commit=off",
            "maintenance_work_mem=256MB"]


def main():
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 1000000
    version = sys.argv[2] if len(sys.argv) > 2 else "10"
    cli = os.path.join(os.environ["MXF_BUILDDIR"], "matrix-fed")
    room = os.path.join(HERE, "cache", "import", f"v{version}-{events}")
    if not os.path.exists(os.path.join(room, "expected.json")):
        print(f"generating a {events}-event room (version {version}) in {room}", flush=True)
        shutil.rmtree(room, ignore_errors=True)
        os.makedirs(os.path.dirname(room), exist_ok=True)
        subprocess.run([cli, "gen-room", "--out", room, "--room-version", version,
                        "--events", str(events), "--branchiness", "0.1", "--seed", "1"],
                       check=True)
    size = os.path.getsize(os.path.join(room, "room.jsonl"))
    base = tempfile.mkdtemp(prefix="mxf-import-bench-")
    os.chmod(base, 0o755)
    pg = Postgres(os.path.join(base, "pg"), settings=SETTINGS)
    os.makedirs(pg.basedir)
    try:
        pg.start()
        db = pg.conninfo()
        subprocess.run([cli, "db", "init", "--db", db], check=True, stdout=subprocess.DEVNULL)
        args = [cli, "import", "--db", db, "--quiet",
                "--keys", os.path.join(room, "keys", "all.json")]
        if os.environ.get("MXF_BENCH_THREADS"):
            args += ["--threads", os.environ["MXF_BENCH_THREADS"]]
        args.append(os.path.join(room, "room.jsonl"))
        t0 = time.monotonic()
        r = subprocess.run(args, stdout=subprocess.PIPE, text=True)
        wall = time.monotonic() - t0
        sys.stdout.write(r.stdout)
        if r.returncode != 0:
            sys.exit("import failed")
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss   # KiB, largest child
        total = int(pg.psql(pg.DBNAME, "SELECT sum(pg_total_relation_size(c.oid))"
                                       "  FROM pg_class c WHERE c.relkind = 'r'"
                                       "   AND c.relname LIKE 'mxf\\_%'"))
        n = int(pg.psql(pg.DBNAME, "SELECT count(*) FROM mxf_events"))
        assert n == events, (n, events)
        print(f"\nroom: {events} events, version {version}, {size / events:.0f} bytes/event"
              f" of JSON lines")
        print(f"import: {wall:.1f} s, {events / wall:.0f} events/s"
              f" (with signature verification, {os.cpu_count()} CPUs)")
        print(f"peak RSS of matrix-fed: {rss / 1024:.0f} MiB")
        print(f"database: {total / 2**20:.0f} MiB in the mxf_ tables,"
              f" {total / events:.0f} bytes/event")
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
