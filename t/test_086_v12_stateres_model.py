# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""gen-room v12 rooms with conflicting forks, judged three ways:
by an independent model of the v12 auth rules and state resolution v2.1
(mxftest/stateres12.py, from the spec and Synapse), by the generator's
expectations, and by the importer (the states it stores). Every event's
state before it and its verdict must agree."""
import json
import os
import subprocess

import pytest

from mxftest.stateres12 import Model
from mxftest.helpers12 import db_states_before
from mxftest.v12util import db_events

SEEDS = [11, 23, 37]


def gen(build_env, workdir, seed, events=400):
    d = os.path.join(workdir, f"gen12-{seed}")
    subprocess.run([build_env.cli, "gen-room", "--out", d, "--room-version", "12",
                    "--events", str(events), "--servers", "4", "--conflicts", "0.5",
                    "--branchiness", "0.3", "--seed", str(seed)], check=True,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = open(os.path.join(d, "room.jsonl")).read().splitlines()
    exp = [json.loads(l) for l in open(os.path.join(d, "expected.jsonl"))]
    summary = json.load(open(os.path.join(d, "expected.json")))
    events, order = {}, []
    for x in exp:
        ev = json.loads(lines[x["i"]])
        ev.pop("event_id", None)
        events[x["event_id"]] = ev
        order.append(x["event_id"])
    return d, events, order, exp, summary


def fmt(st):
    return {f"{k[0]}|{k[1]}": v for k, v in st.items()}


@pytest.fixture(scope="module", params=SEEDS)
def judged(request, build_env, postgres, workdir):
    seed = request.param
    d, events, order, exp, summary = gen(build_env, workdir, seed)
    p = subprocess.run([build_env.cli, "import", "--quiet", "--db", postgres.conninfo(),
                        "--keys", os.path.join(d, "keys", "all.json"),
                        os.path.join(d, "room.jsonl")], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, env=build_env.sanitizer_env(workdir))
    assert p.returncode == 0, p.stderr
    model = Model(events, order).run()
    return seed, events, order, exp, summary, model


def describe(events, eid):
    ev = events[eid]
    return f"{ev['type']} {ev.get('state_key', '')} {ev['content'].get('membership', '')}"


def test_086_001_model_vs_module_states(judged, postgres):
    seed, events, order, exp, summary, model = judged
    got = db_states_before(postgres, summary["room_id"])
    bad = []
    for eid in order:
        want = fmt(model.before[eid])
        g = got.get(eid)
        if g != want:
            diff = {k: (g.get(k) if g else None, want.get(k))
                    for k in set(g or {}) | set(want) if (g or {}).get(k) != want.get(k)}
            bad.append((order.index(eid), describe(events, eid), diff))
    assert not bad, f"seed {seed}: {len(bad)} events; first: {bad[:3]}"


def test_086_002_model_vs_module_verdicts(judged, postgres):
    seed, events, order, exp, summary, model = judged
    got = db_events(postgres, summary["room_id"])
    bad = [(order.index(e), describe(events, e), model.rejected.get(e), got.get(e))
           for e in order if (e in model.rejected) != (got.get(e, "") != "")]
    assert not bad, f"seed {seed}: {bad[:5]}"


def test_086_003_model_vs_generator(judged):
    seed, events, order, exp, summary, model = judged
    bad = []
    for x in exp:
        eid = x["event_id"]
        if x["state_before"] != fmt(model.before[eid]):
            bad.append((x["i"], describe(events, eid)))
    assert not bad, f"seed {seed}: {len(bad)} differ, first {bad[:3]}"
