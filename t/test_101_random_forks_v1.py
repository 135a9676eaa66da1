# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Random fork-heavy rooms of room version 1 (state resolution v1), made by
the generators of test_098 (power, membership, join rules, aliases, stringy
levels, redactions) and test_099 (third-party invites), judged by
mxftest/stateres_v1.py (content/rooms/v1.md and Synapse synapse/state/v1.py).

Knobs: MXF_V1_SEEDS (1-4), MXF_V1_EVENTS (120), MXF_V1_MODES (one,shuffle,chunks)."""
import json
import os

import pytest

import test_098_random_forks_v2_11 as g098
import test_099_random_tpi_v2_11 as g099
from mxftest.stateres_v1 import ModelV1
from mxftest.modelcmp import state_differences, verdict_differences
from mxftest.v12util import import_as
from mxftest.vbuilder12 import SHARED_KEYS

SEEDS = [int(x) for x in os.environ.get("MXF_V1_SEEDS", "1-4").split("-")]
SEEDS = list(range(SEEDS[0], SEEDS[-1] + 1))
NEVENTS = int(os.environ.get("MXF_V1_EVENTS", "120"))
MODES = os.environ.get("MXF_V1_MODES", "one,shuffle,chunks").split(",")


def room_098(seed, state_redactions):
    old = g098.ModelV
    g098.ModelV = ModelV1
    try:
        r, model = g098.random_room("1", seed, n=NEVENTS, state_redactions=state_redactions)
    finally:
        g098.ModelV = old
    return r, model, {}


def room_901(seed, state_redactions):
    return g099.random_room("1", seed, n=NEVENTS, state_redactions=state_redactions,
                            model_cls=ModelV1)


GENS = {"g098": room_098, "g099": room_901}
CASES = [(g, s, m) for g in GENS for s in SEEDS for m in MODES]


@pytest.fixture(scope="module", params=CASES, ids=[f"{g}-s{s}-{m}" for g, s, m in CASES])
def judged(request, build_env, postgres, workdir):
    gen, seed, mode = request.param
    mi = ["one", "shuffle", "chunks"].index(mode)
    r, model, kinds = GENS[gen](seed + 1000 * mi, mode in ("one", "chunks"))
    for _, ev in r.events:
        SHARED_KEYS.get(ev["sender"].split(":", 1)[1])
        SHARED_KEYS.get(ev["event_id"].split(":", 1)[1])
    lines = [json.dumps(ev, separators=(",", ":"), ensure_ascii=False) for _, ev in r.events]
    import_as(mode, build_env, postgres, workdir, f"v1-{gen}-{seed}-{mode}", lines, SHARED_KEYS,
              seed=seed)
    return (gen, seed, mode), r, model, kinds


def desc(r, eid, kinds):
    ev = r.by_id[eid]
    i = [e for e, _ in r.events].index(eid)
    return (f"#{i} {ev['type']} {ev['sender']} {ev.get('state_key', '')} "
            f"{ev['content'].get('membership', ev['content'].get('join_rule', ''))}"
            f" [{kinds.get(eid, '')}] depth={ev['depth']} prev={len(ev['prev_events'])}")


def test_101_000_forks(judged):
    """The rooms have resolutions with conflicts."""
    case, r, model, kinds = judged
    merges = [e for e, ev in r.events if len(ev["prev_events"]) > 1]
    assert len(merges) >= 5


def test_101_001_verdicts(judged, postgres):
    case, r, model, kinds = judged
    bad = verdict_differences(postgres, r, model, lambda e: desc(r, e, kinds))
    assert not bad, f"{case}: {len(bad)}: {bad[:4]}"


def test_101_002_states(judged, postgres):
    case, r, model, kinds = judged
    bad = state_differences(postgres, r, model, lambda e: desc(r, e, kinds))
    assert not bad, f"{case}: {len(bad)} states differ (got, model), first {bad[:3]}"
