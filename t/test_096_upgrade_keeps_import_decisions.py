# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Databases that earlier releases imported rooms into, upgraded in place
(README, `db init`): an upgrade changes the schema and the functions, not
what the earlier `import` decided for each event; the remedy the README
gives, `export` and import into a fresh database, gives the rooms as a
fresh import of this release has them.

t/fixtures/upgrade_data/<commit>.sql.gz: pg_dump of a database that the
matrix-fed of <commit> initialised and imported into: v10.jsonl with
--keys keys.json, then v9.jsonl with --keys keys2.json (ids.json names
their events). What those releases decided otherwise:
- v10: a member event with `unsigned` {age, prev_content, replaces_state}
  and a message with `unsigned` {age, transaction_id}, stored with them;
  a message with the top-level `age_ts` old servers add after hashing,
  stored with it and (a2c4046, 6d86555) counted into its content hash, so
  served redacted;
- v9: power levels giving a user "5_0" (the reference homeserver's int()
  reads 50; the earlier releases rejected the event), then a topic that
  user sets and a message after it."""
import glob
import gzip
import json
import os
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures", "upgrade_data")
OLD = sorted(os.path.basename(p)[:-7] for p in glob.glob(os.path.join(FIX, "*.sql.gz")))
IDS = json.load(open(os.path.join(FIX, "ids.json")))
ROOMS = (("v10.jsonl", "keys.json"), ("v9.jsonl", "keys2.json"))

_n = iter(range(10**6))


def createdb(postgres, tag):
    db = f"upgrade_data_{tag}_{os.getpid()}_{next(_n)}"
    postgres.psql("postgres", f"CREATE DATABASE {db}")
    return db


def cli(build_env, *args):
    r = subprocess.run([build_env.cli, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    assert r.returncode == 0, (args, r.stdout)
    return r.stdout


def fresh(build_env, postgres, tag):
    db = createdb(postgres, tag)
    cli(build_env, "db", "init", "--db", postgres.conninfo(db))
    return db


def events(postgres, db):
    """event ID -> (accepted, why served redacted, stored PDU)"""
    out = postgres.psql(db, "SELECT json_agg(json_build_array(event_id, rejected_reason IS NULL,"
                            " redacted_because, pdu) ORDER BY event_id) FROM mxf_events")
    return {e[0]: tuple(e[1:]) for e in json.loads(out)}


@pytest.fixture(scope="module")
def reference(build_env, postgres):
    db = fresh(build_env, postgres, "ref")
    for room, keys in ROOMS:
        cli(build_env, "import", "--quiet", "--db", postgres.conninfo(db),
            "--keys", os.path.join(FIX, keys), os.path.join(FIX, room))
    return events(postgres, db)


@pytest.mark.parametrize("old", OLD)
def test_096_001_upgrade_keeps_decisions_export_import_redoes_them(old, build_env, postgres,
                                                                   reference, tmp_path):
    db = createdb(postgres, old)
    sql = gzip.open(os.path.join(FIX, f"{old}.sql.gz")).read()
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", postgres.conninfo(db)],
                   input=sql, check=True, stdout=subprocess.DEVNULL)
    cli(build_env, "db", "init", "--db", postgres.conninfo(db))
    up = events(postgres, db)
    assert set(up) == set(reference)
    # What the earlier import decided stays (README): the "5_0" power levels
    # rejected, and the topic set under them with it; the stored unsigned.
    assert not up[IDS["v9"]["pl2"]][0] and reference[IDS["v9"]["pl2"]][0]
    assert not up[IDS["v9"]["topic"]][0] and reference[IDS["v9"]["topic"]][0]
    assert '"unsigned"' not in reference[IDS["v10"]["unsigned"]][2]
    # The remedy: export, import into a fresh database.
    again = fresh(build_env, postgres, f"{old}_again")
    rooms = postgres.psql(db, "SELECT string_agg(room_id, ' ' ORDER BY room_id)"
                              " FROM mxf_rooms").split()
    assert len(rooms) == 2
    for room_id in rooms:
        out = str(tmp_path / f"{room_id[1:].split(':')[0]}.jsonl")
        cli(build_env, "export", "--db", postgres.conninfo(db), "--room", room_id, "--out", out)
        keys = {"!quirks10:hs1.example": "keys.json", "!quirks9:hs1.example": "keys2.json"}[room_id]
        cli(build_env, "import", "--quiet", "--db", postgres.conninfo(again),
            "--keys", os.path.join(FIX, keys), out)
    assert events(postgres, again) == reference
