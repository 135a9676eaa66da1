# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The import benchmark; run it through bench/import.sh. Two rooms made by
matrix-fed gen-room (4 servers, seed 1) are cached under bench/cache/import/:
a conflict-free one (branchiness 0.1) and one with frequent conflicting
merges (branchiness 0.3, --conflicts 0.5: state resolution at every merge
of differing states). Each run starts a throwaway PostgreSQL cluster (the
test harness's, with bulk-load settings), imports each room with signature
verification (--keys) into a fresh database, prints the figures (both
rates side by side) and stops the cluster."""
import json
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


def make_room(cli, events, version, conflicts):
    """The cached room: conflict-free (branchiness 0.1), or with conflicting
    forks (branchiness 0.3, half of the forks conflicting)."""
    name = f"v{version}-{events}" + ("-conflicts" if conflicts else "")
    room = os.path.join(HERE, "cache", "import", name)
    if not os.path.exists(os.path.join(room, "expected.json")):
        print(f"generating a {events}-event room (version {version}"
              f"{', conflicting forks' if conflicts else ''}) in {room}", flush=True)
        shutil.rmtree(room, ignore_errors=True)
        os.makedirs(os.path.dirname(room), exist_ok=True)
        extra = ["--branchiness", "0.3", "--conflicts", "0.5"] if conflicts \
            else ["--branchiness", "0.1"]
        subprocess.run([cli, "gen-room", "--out", room, "--room-version", version,
                        "--events", str(events), "--seed", "1", *extra], check=True)
    return room


def import_room(cli, pg, room, events, version):
    """Imports @room into a fresh database; returns (wall seconds, stdout)."""
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
    return wall, r.stdout


def main():
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 1000000
    version = sys.argv[2] if len(sys.argv) > 2 else "10"
    cli = os.path.join(os.environ["MXF_BUILDDIR"], "matrix-fed")
    room = make_room(cli, events, version, False)
    croom = make_room(cli, events, version, True)
    size = os.path.getsize(os.path.join(room, "room.jsonl"))
    base = tempfile.mkdtemp(prefix="mxf-import-bench-")
    os.chmod(base, 0o755)
    pg = Postgres(os.path.join(base, "pg"), settings=SETTINGS)
    os.makedirs(pg.basedir)
    try:
        pg.start()
        wall, _ = import_room(cli, pg, room, events, version)
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss   # KiB, largest child
        total = int(pg.psql(pg.DBNAME, "SELECT sum(pg_total_relation_size(c.oid))"
                                       "  FROM pg_class c WHERE c.relkind = 'r'"
                                       "   AND c.relname LIKE 'mxf\\_%'"))
        n = int(pg.psql(pg.DBNAME, "SELECT count(*) FROM mxf_events"))
        assert n == events, (n, events)
        pg.psql("postgres", f"DROP DATABASE {pg.DBNAME}")
        pg.psql("postgres", f"CREATE DATABASE {pg.DBNAME}")
        cwall, cout = import_room(cli, pg, croom, events, version)
        with open(os.path.join(croom, "expected.json")) as f:
            ccounts = json.load(f)["counts"]
        resolved = cout.split("state resolution: ")[1].split(" merges")[0]
        print(f"\nroom: {events} events, version {version}, {size / events:.0f} bytes/event"
              f" of JSON lines")
        print(f"import: {wall:.1f} s, {events / wall:.0f} events/s"
              f" (with signature verification, {os.cpu_count()} CPUs)")
        print(f"import with conflicting merges: {cwall:.1f} s, {events / cwall:.0f} events/s"
              f" ({ccounts['conflicting_forks']} conflicting forks of {ccounts['branches']},"
              f" {resolved} merges resolved by state resolution)")
        print(f"peak RSS of matrix-fed: {rss / 1024:.0f} MiB")
        print(f"database: {total / 2**20:.0f} MiB in the mxf_ tables,"
              f" {total / events:.0f} bytes/event")
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
