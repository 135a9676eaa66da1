# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The read path's SQL against the reference walks the schema keeps, on
random requests in generated rooms of every room version (1-12; the odd
ones imported in three parts): mxf_auth_chain (the chain index, sql/016)
against mxf_auth_chain_walk (auth_events edges), mxf_backfill (windows,
sql/017) against mxf_backfill_walk, mxf_missing_events against
mxf_missing_events_walk, with several v, limits 1-150, earliest and latest
sets, min_depth and events of no room. Any difference is reported with the
request that shows it. (The walks themselves are checked against walks
written in Python in test_025, test_040 and test_044.)"""
import os
import random
import subprocess

import pytest

from mxftest.matrix import gen_room

CHECK = r"""
DO $$
DECLARE
    rm record; ids text[]; nids bigint[]; n int; i int; lim int; md bigint;
    v text[]; e text[]; l text[]; a bigint[]; b bigint[]; bad int := 0;
BEGIN
    PERFORM setseed(0.42);
    FOR rm IN SELECT room_nid, room_version FROM mxf_rooms ORDER BY room_nid LOOP
        SELECT array_agg(event_id ORDER BY event_nid), array_agg(event_nid ORDER BY event_nid)
          INTO ids, nids FROM mxf_events WHERE room_nid = rm.room_nid;
        n := cardinality(ids);
        CONTINUE WHEN n IS NULL;
        FOR i IN 1 .. ITERS LOOP
            -- auth chains of 1-3 events
            SELECT array_agg(nids[1 + floor(random() * n)::int]) INTO a
              FROM generate_series(1, 1 + floor(random() * 3)::int);
            IF ARRAY(SELECT x FROM mxf_auth_chain(rm.room_nid, a) x ORDER BY 1)
               IS DISTINCT FROM
               ARRAY(SELECT DISTINCT x FROM mxf_auth_chain_walk(rm.room_nid, a) x ORDER BY 1) THEN
                bad := bad + 1;
                RAISE NOTICE 'AUTHCHAIN room % v% nids %', rm.room_nid, rm.room_version, a;
            END IF;
            -- backfill
            lim := 1 + floor(random() * 150)::int;
            SELECT array_agg(ids[1 + floor(random() * n)::int]) INTO v
              FROM generate_series(1, 1 + floor(random() * 4)::int);
            IF random() < 0.2 THEN v := v || '$other:event'::text; END IF;
            IF ARRAY(SELECT x FROM mxf_backfill(rm.room_nid, v, lim) x)
               IS DISTINCT FROM ARRAY(SELECT x FROM mxf_backfill_walk(rm.room_nid, v, lim) x)
            THEN
                bad := bad + 1;
                RAISE NOTICE 'BACKFILL room % v% v=% limit=%', rm.room_nid, rm.room_version, v, lim;
            END IF;
            -- get_missing_events
            lim := 1 + floor(random() * 50)::int;
            SELECT array_agg(ids[1 + floor(random() * n)::int]) INTO l
              FROM generate_series(1, 1 + floor(random() * 3)::int);
            SELECT coalesce(array_agg(ids[1 + floor(random() * n)::int]), '{}') INTO e
              FROM generate_series(1, floor(random() * 3)::int);
            md := CASE WHEN random() < 0.3 THEN floor(random() * 50)::bigint ELSE 0 END;
            IF ARRAY(SELECT x FROM mxf_missing_events(rm.room_nid, e, l, lim, md) x ORDER BY 1)
               IS DISTINCT FROM
               ARRAY(SELECT x FROM mxf_missing_events_walk(rm.room_nid, e, l, lim, md) x ORDER BY 1)
            THEN
                bad := bad + 1;
                RAISE NOTICE 'GME room % v% earliest=% latest=% limit=% min_depth=%',
                    rm.room_nid, rm.room_version, e, l, lim, md;
            END IF;
        END LOOP;
    END LOOP;
    RAISE NOTICE 'DIFFERENCES %', bad;
END
$$;
"""


def run_check(conninfo, iters):
    out = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", conninfo,
                          "-c", CHECK.replace("ITERS", str(iters))],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    assert out.returncode == 0, out.stdout
    return [l for l in out.stdout.splitlines() if "NOTICE" in l]


def import_parts(cli, conninfo, room, parts):
    lines = open(os.path.join(room.dir, "room.jsonl"), "rb").read().splitlines(keepends=True)
    k = max(1, len(lines) // parts)
    for j in range(0, len(lines), k):
        p = os.path.join(room.dir, f"part{j}.jsonl")
        with open(p, "wb") as f:
            f.writelines(lines[j:j + k])
        out = subprocess.run([cli, "import", "--quiet", "--db", conninfo,
                              "--keys", os.path.join(room.dir, "keys", "all.json"), p],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert out.returncode == 0, (room.dir, j, out.stdout[-2000:])


@pytest.fixture(scope="module")
def rooms(build_env, postgres, workdir):
    dbs = []
    for v in range(1, 13):
        r = gen_room(build_env.cli, os.path.join(workdir, f"room-walks-v{v}"),
                     room_version=v, events=300, servers=4, branchiness=0.3,
                     redactions=0.05, conflicts=0.2 if v > 1 else 0, seed=100 + v)
        db = f"mxf_walks_v{v}"
        postgres.psql("postgres", f"DROP DATABASE IF EXISTS {db}")
        postgres.psql("postgres", f"CREATE DATABASE {db}")
        subprocess.run([build_env.cli, "db", "init", "--db", postgres.conninfo(db)], check=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        import_parts(build_env.cli, postgres.conninfo(db), r, 3 if v % 2 else 1)
        dbs.append((v, postgres.conninfo(db)))
    return dbs


@pytest.mark.parametrize("v", range(1, 13))
def test_045_001_sql_matches_walks(rooms, v):
    notices = run_check(dict(rooms)[v], 60)
    diffs = [n for n in notices if "DIFFERENCES" not in n]
    assert not diffs, "\n".join(diffs[:40])
