# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""README "however a room is split into files, the database ends as one
import of the files one after another leaves it". Random rooms of test_098
(forks, redactions of state events, rejected events) are split into 3 or 4
random subsets (each part keeps the room's order; the create event in the
first part), imported part by part into one database, and compared with the
import of one file made of the parts one after another: every event's
bytes, rejection, whether it is redacted, state before and after (test_064's
semantic(), but for which redaction is recorded: README, a known exception)
and the room's current state. test_117_002: two rooms mixed in the files.
Knobs: MXF_SPLIT_SEEDS (default 1-6), MXF_SPLIT_VERSIONS (3,10)."""
import json
import os
import random

import pytest

from mxftest.vbuilder12 import SHARED_KEYS
from test_064_import_parts import SEMANTIC
from test_075_import_regiven_stored import current_state, one_go_and_split, redacted, rejected
from test_098_random_forks_v2_11 import random_room

VERSIONS = os.environ.get("MXF_SPLIT_VERSIONS", "3,10").split(",")
S = [int(x) for x in os.environ.get("MXF_SPLIT_SEEDS", "1-6").split("-")]
CASES = [(v, s) for v in VERSIONS for s in range(S[0], S[-1] + 1)]


def split(lines, seed):
    rnd = random.Random(seed)
    k = 3 + seed % 2
    parts = [[] for _ in range(k)]
    parts[0].append(lines[0])
    for x in lines[1:]:
        parts[rnd.randrange(k)].append(x)
    return [p for p in parts if p]


@pytest.mark.parametrize("version,seed", CASES, ids=[f"v{v}-s{s}" for v, s in CASES])
def test_117_001_split_as_concatenation(version, seed, build_env, workdir, postgres, tmp_path):
    r, _ = random_room(version, 5000 + seed, state_redactions=True)
    lines = [json.dumps(ev, separators=(",", ":"), ensure_ascii=False) for _, ev in r.events]
    parts = split(lines, seed)
    want, got = one_go_and_split(SHARED_KEYS, [sum(parts, [])], parts, build_env, workdir,
                                 postgres, tmp_path)
    wr, gr = rejected(postgres, want), rejected(postgres, got)
    assert set(gr) == set(wr), f"rejected: split-only {sorted(set(gr) - set(wr))[:3]}, " \
                               f"one-file-only {sorted(set(wr) - set(gr))[:3]}"
    no_because = SEMANTIC.replace("e.redacted_because,", "")
    assert "redacted_because" not in no_because
    assert postgres.psql(got, no_because) == postgres.psql(want, no_because)
    assert current_state(postgres, got) == current_state(postgres, want)
    # Which events are redacted, and which for a content hash, is the same;
    # which of two redactions of one event is recorded may differ (README).
    wd, gd = redacted(postgres, want), redacted(postgres, got)
    assert set(gd) == set(wd), f"redacted: split-only {sorted(set(gd) - set(wd))[:3]}, " \
                               f"one-file-only {sorted(set(wd) - set(gd))[:3]}"
    assert {t for t, why in gd.items() if why == "content-hash"} == \
        {t for t, why in wd.items() if why == "content-hash"}


def line(ev):
    return json.dumps(ev, separators=(",", ":"), ensure_ascii=False)


def mixed_parts(rooms, seed):
    """The lines of two @rooms interleaved at random (each room's in its
    order, both create events first), split at random into 3 or 4 parts."""
    rnd = random.Random(seed)
    queues = [[line(ev) for _, ev in r.events] for r in rooms]
    lines = [queues[0].pop(0), queues[1].pop(0)]
    while queues[0] or queues[1]:
        q = queues[rnd.randrange(2)] if queues[0] and queues[1] else (queues[0] or queues[1])
        lines.append(q.pop(0))
    parts = split(lines[1:], seed)
    parts[0].insert(0, lines[0])
    return parts


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_117_002_mixed_rooms_split_as_concatenation(seed, build_env, workdir, postgres,
                                                    tmp_path):
    """Two rooms in one file (lines interleaved at random, each room's in its
    order), split at random into 3 or 4 parts: as the one-file import of the
    parts, redacted_because aside (test_117_001)."""
    rooms = [random_room("3", 7000 + seed, state_redactions=True)[0],
             random_room("10", 8000 + seed, state_redactions=True)[0]]
    parts = mixed_parts(rooms, seed)
    want, got = one_go_and_split(SHARED_KEYS, [sum(parts, [])], parts, build_env, workdir,
                                 postgres, tmp_path)
    wr, gr = rejected(postgres, want), rejected(postgres, got)
    ids = {ev.get("event_id") or eid: (k, r.version if hasattr(r, "version") else "?")
           for k, r in enumerate(rooms) for eid, ev in r.events}
    assert set(gr) == set(wr), (
        f"split-only rejections {[(e[:8], ids.get(e), gr[e][:80]) for e in set(gr) - set(wr)]}"
        f"; one-file-only {[(e[:8], ids.get(e), wr[e][:80]) for e in set(wr) - set(gr)]}")
    no_because = SEMANTIC.replace("e.redacted_because,", "")
    assert postgres.psql(got, no_because) == postgres.psql(want, no_because)
    assert sorted(current_state(postgres, got).split(";")) == \
        sorted(current_state(postgres, want).split(";"))
