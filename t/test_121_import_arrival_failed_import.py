# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""An import that fails (a bad line) leaves mxf_event_arrival as it was (one
transaction), and the next import takes the next import number as if the
failed one had not run."""
from test_064_import_parts import import_path
from test_104_import_parts_redaction_state import A, line
from test_113_import_arrival_rows import arrivals, first_part, write


def test_121_001_failed_import_leaves_arrivals(build_env, workdir, postgres, tmp_path):
    c, db, keyfile = first_part(build_env, workdir, postgres, tmp_path)
    before = arrivals(postgres, db)
    r = c["room"]
    after = r.msg(A, "after R", prev=[c["red"]])
    bad = import_path(build_env, workdir, postgres, db,
                      write(tmp_path, "bad.jsonl", [line(r.by_id[after]), "{not json"]),
                      keyfile, check=False)
    assert bad.returncode != 0, bad.stdout
    assert arrivals(postgres, db) == before
    import_path(build_env, workdir, postgres, db,
                write(tmp_path, "p2.jsonl", [line(r.by_id[after])]), keyfile)
    assert arrivals(postgres, db) == {**before, after: (2 << 32) + 1}
