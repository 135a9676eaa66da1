# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""`matrix-fed db init` as operators run it on upgrades (README: "creates the
schema or upgrades it ... run it again after every upgrade, applied
migrations are skipped"): a database initialised by an older release and
upgraded by this build must end with the very schema a fresh `db init` of
this build makes (pg_dump --schema-only compared); so must a database
after db init twice, two db inits at once, and a db init killed (-9) in the
middle of a migration and run again. And the data a migration fills in:
the event IDs of the auth chain index (019) in a database with rooms.

t/fixtures/upgrade_schema/<commit>.sql.gz: pg_dump of a database that the
matrix-fed of <commit> initialised (a2c4046: its migrations applied the way
db init applies them, one transaction each)."""
import glob
import json
import gzip
import os
import re
import signal
import subprocess
import time

import pytest

from mxftest.matrix import gen_room, import_room

HERE = os.path.dirname(os.path.abspath(__file__))
OLD = sorted(os.path.basename(p)[:-7]
             for p in glob.glob(os.path.join(HERE, "fixtures", "upgrade_schema", "*.sql.gz")))

_n = iter(range(10**6))


def createdb(postgres):
    db = f"schema_{os.getpid()}_{next(_n)}"
    postgres.psql("postgres", f"CREATE DATABASE {db}")
    return db


def init(build_env, postgres, db):
    return subprocess.run([build_env.cli, "db", "init", "--db", postgres.conninfo(db)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def schema(postgres, db):
    out = subprocess.run(["pg_dump", "--schema-only", "--no-owner", "-d", postgres.conninfo(db)],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return [line for line in out.splitlines()
            if line and not line.startswith("--") and not re.match(r"\\(un)?restrict ", line)]


def migrations(postgres, db):
    return postgres.psql(db, "SELECT string_agg(version || ' ' || name, ',' ORDER BY version)"
                             " FROM mxf_schema_migrations")


def old_database_with_events_held(postgres):
    """A database of a00cfea (015), and a session holding mxf_events in a long
    transaction (as a reader would), which the migrations 017 on must wait
    for: (database, the session's psql process)."""
    db = createdb(postgres)
    sql = gzip.open(os.path.join(HERE, "fixtures", "upgrade_schema", "a00cfea.sql.gz")).read()
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", postgres.conninfo(db)],
                   input=sql, check=True, stdout=subprocess.DEVNULL)
    holder = subprocess.Popen(
        ["psql", "-X", "-q", "-d", postgres.conninfo(db)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    holder.stdin.write("BEGIN; LOCK TABLE mxf_events IN ACCESS SHARE MODE; SELECT pg_sleep(60);\n")
    holder.stdin.flush()
    time.sleep(0.5)
    return db, holder


@pytest.fixture(scope="module")
def fresh(build_env, postgres):
    db = createdb(postgres)
    r = init(build_env, postgres, db)
    assert r.returncode == 0, r.stdout
    return {"db": db, "schema": schema(postgres, db), "migrations": migrations(postgres, db)}


def schema_diff(want, got):
    import difflib
    d = [l for l in difflib.unified_diff(want, got, "fresh", "upgraded", n=0, lineterm="")]
    objs = sorted({m.group(1) for l in d for m in [re.search(r"FUNCTION (public\.\w+)", l)] if m})
    return d, objs


@pytest.mark.parametrize("old", OLD)
def test_073_001_upgraded_schema_is_fresh_schema(old, fresh, build_env, postgres):
    """Every function body, index and column as a fresh db init has them:
    a migration edited after it was released is skipped on a database
    that has it (recorded by version), so the old body stays for good."""
    db = createdb(postgres)
    sql = gzip.open(os.path.join(HERE, "fixtures", "upgrade_schema", f"{old}.sql.gz")).read()
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", postgres.conninfo(db)],
                   input=sql, check=True, stdout=subprocess.DEVNULL)
    r = init(build_env, postgres, db)
    assert r.returncode == 0, r.stdout
    assert migrations(postgres, db) == fresh["migrations"]
    d, objs = schema_diff(fresh["schema"], schema(postgres, db))
    assert not d, (f"database of {old} upgraded: {len(d)} diff lines; functions that differ "
                   f"from a fresh db init: {objs}\n" + "\n".join(d[:40]))


def test_073_002_twice(fresh, build_env, postgres):
    db = createdb(postgres)
    assert init(build_env, postgres, db).returncode == 0
    r = init(build_env, postgres, db)
    assert r.returncode == 0 and r.stdout.strip() == "schema is up to date", r.stdout
    assert schema(postgres, db) == fresh["schema"]
    assert migrations(postgres, db) == fresh["migrations"]


def test_073_003_concurrent(fresh, build_env, postgres):
    for _ in range(3):
        db = createdb(postgres)
        ps = [subprocess.Popen([build_env.cli, "db", "init", "--db", postgres.conninfo(db)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for _ in range(3)]
        outs = [p.communicate(timeout=120)[0] for p in ps]
        assert all(p.returncode == 0 for p in ps), outs
        applied = sum(o.count("applied ") for o in outs)
        assert applied == len(fresh["migrations"].split(",")), outs
        assert schema(postgres, db) == fresh["schema"]
        assert migrations(postgres, db) == fresh["migrations"]


def test_073_004_killed_in_a_migration(fresh, build_env, postgres):
    """A database of a00cfea (015) upgraded while a reader holds mxf_events:
    017 (DROP INDEX on mxf_events) waits for it; db init is killed (-9)
    there, the reader goes, db init runs again: nothing half-applied, the
    schema is a fresh one's."""
    db, holder = old_database_with_events_held(postgres)
    p = subprocess.Popen([build_env.cli, "db", "init", "--db", postgres.conninfo(db)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(2)
    waiting = postgres.psql(db, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type"
                                " = 'Lock' AND datname = current_database()")
    os.kill(p.pid, signal.SIGKILL)
    out = p.communicate()[0].decode()
    mid = migrations(postgres, db)
    holder.kill()
    holder.wait()
    # The orphaned backends go on until they next read from their clients.
    postgres.psql(db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE"
                      " datname = current_database() AND pid <> pg_backend_pid()"
                      " AND application_name = 'psql' AND state <> 'active'")
    r = init(build_env, postgres, db)
    assert waiting != "0", "db init did not wait in a migration; the test proves nothing"
    assert "017" not in mid, (out, mid)
    assert r.returncode == 0, r.stdout
    assert schema(postgres, db) == fresh["schema"]
    assert migrations(postgres, db) == fresh["migrations"]


def test_073_005_lock_timeout_lets_readers_go_on(fresh, build_env, postgres):
    """README: a migration waits at most --lock-timeout for a table lock,
    then is rolled back (the reads queued behind it go on) and tried again,
    --lock-tries times. A database of a00cfea (015) upgraded while a long
    transaction holds mxf_events: a reader started while db init waits is
    answered within the lock time-out, not after the long transaction; db
    init gives up naming the migration, with nothing of it applied, and
    completes once the long transaction has ended."""
    db, holder = old_database_with_events_held(postgres)
    try:
        t0 = time.monotonic()
        p = subprocess.Popen([build_env.cli, "db", "init", "--db", postgres.conninfo(db),
                              "--lock-timeout", "1", "--lock-tries", "3"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # The reader comes once db init waits for mxf_events (a loaded
        # machine may take a while to get it there).
        waiting, deadline = "0", time.monotonic() + 20
        while waiting == "0" and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.05)
            waiting = postgres.psql(db, "SELECT count(*) FROM pg_stat_activity WHERE"
                                        " wait_event_type = 'Lock'"
                                        " AND datname = current_database()")
        r0 = time.monotonic()
        reader = subprocess.run(
            ["psql", "-X", "-qAt", "-d", postgres.conninfo(db), "-c",
             "SET statement_timeout = '4s'", "-c", "SELECT count(*) FROM mxf_events"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        read_s = time.monotonic() - r0
        out = p.communicate(timeout=60)[0]
        took = time.monotonic() - t0
        mid = migrations(postgres, db)
    finally:
        holder.kill()
        holder.wait()
        postgres.psql(db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE"
                          " datname = current_database() AND pid <> pg_backend_pid()"
                          " AND application_name = 'psql'")
    assert waiting != "0", "db init never waited for the lock; the test proves nothing"
    assert reader.returncode == 0 and reader.stdout.strip() == "0", reader.stdout
    assert read_s < 3, f"the reader waited {read_s:.1f} s behind db init"
    assert p.returncode == 1, out
    m = re.search(r"(\d{3}_\w+): a table it changes stayed locked", out)
    assert m, out
    assert out.count("trying again") == 2, out
    assert 4 <= took < 30, (took, out)
    assert m.group(1)[:3] not in mid, (m.group(1), mid)
    assert "015" in mid, mid
    r = init(build_env, postgres, db)
    assert r.returncode == 0, r.stdout
    assert schema(postgres, db) == fresh["schema"]
    assert migrations(postgres, db) == fresh["migrations"]


def test_073_006_lock_options(build_env, postgres):
    db = createdb(postgres)
    for bad in (["--lock-timeout", "-1"], ["--lock-timeout", "x"], ["--lock-timeout", "3601"],
                ["--lock-tries", "0"], ["--lock-tries"], ["--lock-timeout", "5s"],
                ["--lock-timeout", "+5"], ["--lock-tries= 3"]):
        r = subprocess.run([build_env.cli, "db", "init", "--db", postgres.conninfo(db)] + bad,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert r.returncode == 2 and bad[0].split("=")[0] in r.stdout, (bad, r.stdout)
    assert postgres.psql(db, "SELECT count(*) FROM pg_tables WHERE tablename = 'mxf_events'") == "0"
    r = subprocess.run([build_env.cli, "db", "init", "--db", postgres.conninfo(db),
                        "--lock-timeout", "0", "--lock-tries", "1"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert r.returncode == 0, r.stdout


def sql_018_auth_chain():
    """018's CREATE OR REPLACE of mxf_auth_chain, as released."""
    text = open(os.path.join(HERE, "..", "sql", "018_upgrade_catch_up.sql")).read()
    m = re.search(r"CREATE OR REPLACE FUNCTION mxf_auth_chain\(.*?\n\$\$;\n", text, re.S)
    assert m
    return m.group(0)


def state_ids_rows(postgres, db, room_id, eid):
    out = postgres.psql(db, "SELECT s.kind || ' ' || s.event_id"
                            "  FROM mxf_state_ids_at((SELECT room_nid FROM mxf_rooms"
                            f"                         WHERE room_id = '{room_id}'), '{eid}')"
                            "       WITH ORDINALITY s ORDER BY s.ordinality")
    return [tuple(line.split(" ", 1)) for line in out.splitlines()]


@pytest.mark.parametrize("version", ["1", "10", "12"])
def test_073_007_chain_index_event_ids_filled(version, fresh, build_env, postgres, tmp_path):
    """A database of 018 with a room in it: 019 gives every auth chain index
    position its event's ID, and /state_ids' function reads the same auth
    chain and state from them as from a fresh import (the auth chain's IDs
    first, then the state's)."""
    room = gen_room(build_env.cli, str(tmp_path / "room"), events=300, room_version=version,
                    seed=7307)
    db = createdb(postgres)
    assert init(build_env, postgres, db).returncode == 0
    import_room(build_env.cli, postgres.conninfo(db), room)
    sample = room.order[5::29] + room.order[-1:]
    want = {eid: state_ids_rows(postgres, db, room.room_id, eid) for eid in sample}
    for eid, rows in want.items():
        kinds = [k for k, _ in rows]
        assert kinds == sorted(kinds) and "p" in kinds, (eid, kinds)
    assert sum(k == "a" for rows in want.values() for k, _ in rows) > 100

    # Back to 018's schema, positions without IDs.
    postgres.psql(db, "DROP FUNCTION mxf_state_ids_at(bigint, text);"
                      "DROP FUNCTION mxf_auth_chain_ids(bigint, bigint[]);"
                      + sql_018_auth_chain() +
                      "DROP FUNCTION mxf_auth_chain_tops(bigint, bigint[]);"
                      "DROP FUNCTION mxf_auth_chain_v12_create(bigint, bigint[]);"
                      "ALTER TABLE mxf_auth_chain_pos DROP COLUMN event_id;"
                      "CREATE UNIQUE INDEX mxf_auth_chain_pos_chain"
                      "  ON mxf_auth_chain_pos (chain_id, seq) INCLUDE (event_nid);"
                      "DELETE FROM mxf_schema_migrations WHERE version = 19")
    r = init(build_env, postgres, db)
    assert r.returncode == 0 and "applied 019_" in r.stdout, r.stdout
    assert schema(postgres, db) == fresh["schema"]
    assert postgres.psql(db, "SELECT count(*) FROM mxf_auth_chain_pos p"
                             "  JOIN mxf_events e USING (event_nid)"
                             " WHERE e.event_id = p.event_id") == \
        postgres.psql(db, "SELECT count(*) FROM mxf_auth_chain_pos")
    for eid, rows in want.items():
        got = state_ids_rows(postgres, db, room.room_id, eid)
        assert [k for k, _ in got] == [k for k, _ in rows], eid
        assert sorted(got) == sorted(rows), eid


def test_073_008_key_docs_filled(fresh, build_env, postgres):
    """A database of 019 with kept Server Keys objects: 020 keeps each under
    the key IDs of its verify_keys (old_verify_keys not), and from then on
    every object stored is kept so, the latest per key ID. An object jsonb
    cannot read (\\u0000 in a string) stays the latest, not kept by key ID."""
    db = createdb(postgres)
    assert init(build_env, postgres, db).returncode == 0
    postgres.psql(db, "DROP TRIGGER mxf_keep_key_docs ON mxf_server_key_responses;"
                      "DROP FUNCTION mxf_keep_key_docs(); DROP TABLE mxf_server_key_docs;"
                      "DROP TABLE mxf_server_key_bodies;"
                      "DELETE FROM mxf_schema_migrations WHERE version = 20")

    def put(server, keys, old, valid, fetched):
        doc = json.dumps({"server_name": server, "valid_until_ts": valid,
                          "verify_keys": {k: {"key": "AAAA"} for k in keys},
                          "old_verify_keys": {k: {"key": "AAAA", "expired_ts": 1} for k in old},
                          "note": "a\x00b" if server == "nul.example" else "x"})
        postgres.psql(db, "INSERT INTO mxf_server_key_responses VALUES"
                          f" ('{server}', '{doc}', {valid}, {fetched})"
                          " ON CONFLICT (server_name) DO UPDATE SET response = EXCLUDED.response,"
                          "  valid_until_ts = EXCLUDED.valid_until_ts,"
                          "  fetched_ts = EXCLUDED.fetched_ts")

    def docs():
        """(server, key ID, fetched_ts of the object it points at)"""
        out = postgres.psql(db, "SELECT d.server_name, d.key_id, b.fetched_ts"
                                "  FROM mxf_server_key_docs d JOIN mxf_server_key_bodies b"
                                "    USING (server_name, sha256) ORDER BY 1, 2")
        return [tuple(line.split("|")) for line in out.splitlines()]

    def bodies():
        return postgres.psql(db, "SELECT server_name || ' ' || fetched_ts"
                                 "  FROM mxf_server_key_bodies ORDER BY 1").splitlines()

    put("a.example", ["ed25519:1", "ed25519:2"], ["ed25519:0"], 500, 100)
    put("nul.example", ["ed25519:n"], [], 500, 100)
    r = init(build_env, postgres, db)
    assert r.returncode == 0 and "applied 020_" in r.stdout, r.stdout
    assert schema(postgres, db) == fresh["schema"]
    assert docs() == [("a.example", "ed25519:1", "100"), ("a.example", "ed25519:2", "100")]
    # A rotation: key 3 replaces 2; 1 and 2 keep the object that listed them.
    put("a.example", ["ed25519:1", "ed25519:3"], [], 900, 200)
    assert docs() == [("a.example", "ed25519:1", "200"), ("a.example", "ed25519:2", "100"),
                      ("a.example", "ed25519:3", "200")]
    assert bodies() == ["a.example 100", "a.example 200"]
    assert postgres.psql(db, "SELECT count(*) FROM mxf_server_key_responses") == "2"
    # Key 2 listed again: the first object is no longer pointed at, and goes.
    put("a.example", ["ed25519:2"], [], 900, 300)
    assert docs() == [("a.example", "ed25519:1", "200"), ("a.example", "ed25519:2", "300"),
                      ("a.example", "ed25519:3", "200")]
    assert bodies() == ["a.example 200", "a.example 300"]
    # A role with the README's grants (read everything, write the two key
    # tables) keeps objects by key ID too: the trigger runs as its owner.
    role = f"mxf_module_{os.getpid()}"
    postgres.psql(db, f"CREATE ROLE {role} LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public"
                      f" TO {role}; GRANT INSERT, UPDATE ON mxf_server_keys,"
                      f" mxf_server_key_responses TO {role}")
    as_role = postgres.conninfo(db).replace(f"user={postgres.USER}", f"user={role}")
    doc = json.dumps({"server_name": "c.example", "verify_keys": {"ed25519:c": {"key": "AAAA"}}})
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", as_role, "-c",
                    "INSERT INTO mxf_server_key_responses VALUES"
                    f" ('c.example', '{doc}', 900, 100)"], check=True)
    assert ("c.example", "ed25519:c", "100") in docs()
    # An object of 3,000 keys is stored once.
    put("b.example", [f"ed25519:k{i}" for i in range(3000)], [], 900, 100)
    assert postgres.psql(db, "SELECT count(*) FROM mxf_server_key_docs"
                             " WHERE server_name = 'b.example'") == "3000"
    assert postgres.psql(db, "SELECT count(*) FROM mxf_server_key_bodies"
                             " WHERE server_name = 'b.example'") == "1"


def test_073_009_key_docs_trigger_runs_no_code_of_the_writer(build_env, postgres):
    """020's trigger runs with its owner's rights. A role with the README's
    grants that can also create in public (every role before PostgreSQL 15)
    defines public.convert_to(text, text), which would match the trigger's
    call better than pg_catalog's, and writes a key object: its function is
    not run as the owner, and a temporary table of its session does not
    stand in for the key tables."""
    db = createdb(postgres)
    assert init(build_env, postgres, db).returncode == 0
    role = f"mxf_writer_{os.getpid()}"
    postgres.psql(db, f"CREATE ROLE {role} LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public"
                      f" TO {role}; GRANT INSERT, UPDATE ON mxf_server_keys,"
                      f" mxf_server_key_responses TO {role}; GRANT CREATE ON SCHEMA public"
                      f" TO {role}")
    as_role = postgres.conninfo(db).replace(f"user={postgres.USER}", f"user={role}")
    doc = json.dumps({"server_name": "w.example", "verify_keys": {"ed25519:w": {"key": "A"}}})
    r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", as_role],
                       input=f"""
CREATE FUNCTION public.convert_to(t text, e text) RETURNS bytea LANGUAGE plpgsql AS $f$
BEGIN
  IF current_user <> '{role}' THEN
    EXECUTE 'GRANT DELETE ON mxf_events TO {role}';
  END IF;
  RETURN pg_catalog.convert_to(t, e::name);
END $f$;
CREATE TEMP TABLE mxf_server_key_docs (server_name text, key_id text, sha256 bytea,
                                       fetched_ts bigint, PRIMARY KEY (server_name, key_id));
INSERT INTO mxf_server_key_responses VALUES ('w.example', '{doc}', 900, 100);
SELECT has_table_privilege('mxf_events', 'DELETE');
SELECT count(*) FROM pg_temp.mxf_server_key_docs;
""", text=True, capture_output=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["f", "0"], r.stdout
    assert postgres.psql(db, "SELECT count(*) FROM public.mxf_server_key_docs"
                             " WHERE server_name = 'w.example'") == "1"
    conf = postgres.psql(db, "SELECT array_to_string(proconfig, ';') FROM pg_proc"
                             " WHERE proname = 'mxf_keep_key_docs' AND prosecdef")
    assert conf == "search_path=pg_catalog, public, pg_temp", conf
