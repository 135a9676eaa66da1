# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The input order of events stored with their state unknown
(mxf_event_arrival, sql/021): each such event gets (import number << 32) +
its input line, the import number one above the highest recorded; the row
goes when a later import completes the event's state. Rows as migration 021
writes them for events stored before it (the event number) give the order
of event numbers, as the README says of such events.

The room is test_111's: part 1 leaves R (a redaction of P2) and INV (which
reads P2) of unknown state, INV numbered before R though it comes after R in
the input; part 2 adds AFTER (prev R), still of unknown state; part 3 brings
P2."""
from test_021_import import new_db
from test_064_import_parts import import_path
from test_075_import_regiven_stored import rejected
from test_104_import_parts_redaction_state import A, KEYS, line
from test_111_import_refill_order import case


def arrivals(postgres, db):
    out = postgres.psql(db, "SELECT e.event_id || chr(9) || a.arrival FROM mxf_event_arrival a"
                            "  JOIN mxf_events e USING (event_nid)")
    return {k: int(v) for k, v in (x.split("\t") for x in out.splitlines() if x)}


def unknown_state(postgres, db):
    out = postgres.psql(db, "SELECT event_id FROM mxf_events"
                            " WHERE state_before IS NULL AND NOT outlier")
    return set(x for x in out.splitlines() if x)


def write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("".join(x + "\n" for x in lines))
    return str(path)


def first_part(build_env, workdir, postgres, tmp_path):
    """test_111's v10 room, its first part imported: (case, database, key file)."""
    c = case("10")
    keyfile = str(tmp_path / "keys.json")
    KEYS.write_responses(keyfile)
    db = new_db(postgres, build_env)
    import_path(build_env, workdir, postgres, db, write(tmp_path, "p1.jsonl", c["parts"][0]),
                keyfile)
    return c, db, keyfile


def test_113_001_rows_follow_input_lines(build_env, workdir, postgres, tmp_path):
    c, db, keyfile = first_part(build_env, workdir, postgres, tmp_path)
    by_line = c["part1_line"]
    got = arrivals(postgres, db)
    assert set(got) == unknown_state(postgres, db) == {c["red"], c["inv"]}, got
    assert got[c["red"]] == (1 << 32) + by_line[c["red"]], got
    assert got[c["inv"]] == (1 << 32) + by_line[c["inv"]], got
    assert got[c["red"]] < got[c["inv"]], "R comes before INV in the input"
    nids = dict(x.split("\t") for x in postgres.psql(
        db, "SELECT event_id || chr(9) || event_nid FROM mxf_events").splitlines() if x)
    assert int(nids[c["inv"]]) < int(nids[c["red"]]), \
        "setup: INV numbered before R, so the numbers alone would give the other order"

    # A second import still leaves the gap open: its event gets import number 2.
    r = c["room"]
    after = r.msg(A, "after R", prev=[c["red"]])
    import_path(build_env, workdir, postgres, db,
                write(tmp_path, "p2.jsonl", [line(r.by_id[after])]), keyfile)
    got2 = arrivals(postgres, db)
    assert got2 == {**got, after: (2 << 32) + 1}, got2

    # The part that closes the gap: every row goes, every state is known.
    import_path(build_env, workdir, postgres, db, write(tmp_path, "p3.jsonl", c["parts"][1]),
                keyfile)
    assert arrivals(postgres, db) == {}
    assert unknown_state(postgres, db) == set()
    assert c["inv"] not in rejected(postgres, db), "R redacts P2 before INV reads it"


def test_113_002_rows_of_older_releases_keep_number_order(build_env, workdir, postgres,
                                                          tmp_path):
    c, db, keyfile = first_part(build_env, workdir, postgres, tmp_path)
    # What migration 021 writes for events stored before it.
    postgres.psql(db, "UPDATE mxf_event_arrival SET arrival = event_nid")
    import_path(build_env, workdir, postgres, db, write(tmp_path, "p2.jsonl", c["parts"][1]),
                keyfile)
    assert arrivals(postgres, db) == {}
    rej = rejected(postgres, db)
    assert c["inv"] in rej, f"by event number INV comes first and reads P2 whole: {rej}"
