# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Two redactions of one event; the later one (R1, after R2 in the
DAG) is stored first, its state unknown (R2 missing), the target T and R2 come
in the second part. One file: R2 is processed first (R1 follows it) and is
the recorded redacted_because. Split: apply_redactions() took the
redactions in event_nid order, and the refilled R1 keeps the number of its
earlier import, so R1 was recorded (not served - the target is served
redacted either way - but the rows differed from the one-file import's).
Now the redactions an import orders are taken in its order."""

import pytest

from mxftest.vbuilder import Keys, VRoom
from test_064_import_parts import semantic
from test_075_import_regiven_stored import (redacted, one_go_and_split, pdu_line as line)

A = "@admin:hs1.example"
KEYS = Keys()


@pytest.mark.parametrize("version", ["1", "10"])
def test_108_001_first_redaction_recorded(version, build_env, workdir, postgres, tmp_path):
    r = VRoom(version, KEYS, f"!partswr{version}:hs1.example")
    r.create(A)
    r.join(A)
    r.pl(A, {"users": {A: 100}})
    t = r.msg(A, "T")
    r2 = r.redaction(A, t)
    r1 = r.redaction(A, t)
    ev = r.by_id
    ids = [e for e, _ in r.events]
    part1 = [line(ev[e]) for e in ids if e not in (t, r2)]
    part2 = [line(ev[t]), line(ev[r2])]
    want, got = one_go_and_split(KEYS, [part1 + part2], [part1, part2], build_env, workdir,
                                 postgres, tmp_path)
    assert redacted(postgres, want) == {t: r2}, "setup"
    assert redacted(postgres, got) == redacted(postgres, want), (r1, r2)
    assert semantic(postgres, got) == semantic(postgres, want)
