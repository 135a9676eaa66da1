# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""State resolution in a later import walks stored events in an order that
must follow auth edges (sql/022). A v3 random room of test_098
(random_room("3", 7004)) split into three parts: the merge $m05ImsR (room
index 21, a knock by @u4) comes in the first part, its prev_events (#19,
#17) in the third, so it is stored with its state unknown and taken up
again by the third import; events of the first part cite auth events the
second brings, with higher event numbers. When stored events were ordered
by their numbers, the split gave the merge a state before it with the joins
of @u2, @u3 and @u4 (#6-#8), which the one-file import of the parts and the
independent model (mxftest/stateres_v2_11) do not have, and six accepted
events (invites, leaves) were rejected in the split only."""

from mxftest.vbuilder12 import SHARED_KEYS
from test_075_import_regiven_stored import one_go_and_split, rejected
from test_098_random_forks_v2_11 import random_room
from test_117_import_random_splits import line, mixed_parts

SQ = ("SELECT e.event_id || chr(9) || coalesce((SELECT string_agg(s.type || '|' || s.state_key"
      " || '=' || x.event_id, ' ' ORDER BY 1) FROM mxf_state_of(e.state_before) s"
      " JOIN mxf_events x USING (event_nid)), 'NULL') FROM mxf_events e")


def parts_of_seed_4():
    """test_117_002's parts of seed 4, this room's lines only."""
    seed = 4
    r, model = random_room("3", 7000 + seed, state_redactions=True)
    other, _ = random_room("10", 8000 + seed, state_redactions=True)
    mine = set(line(ev) for _, ev in r.events)
    parts = [p for p in ([x for x in p if x in mine] for p in mixed_parts([r, other], seed)) if p]
    return r, model, parts


def test_120_001_refilled_merge_state(build_env, workdir, postgres, tmp_path):
    r, model, parts = parts_of_seed_4()
    assert [len(p) for p in parts] == [49, 44, 38]
    want, got = one_go_and_split(SHARED_KEYS, [sum(parts, [])], parts, build_env, workdir,
                                 postgres, tmp_path)
    st = {}
    for name, db in (("one", want), ("split", got)):
        st[name] = dict(x.split("\t", 1) for x in postgres.psql(db, SQ).splitlines() if x)
    names = {e: f"#{i}" for i, (e, _) in enumerate(r.events)}
    bad = []
    for e, _ in r.events:
        model_before = " ".join(sorted(f"{k[0]}|{k[1]}={v}" for k, v in model.before[e].items()))
        if st["split"][e] != st["one"][e]:
            assert st["one"][e] == model_before, f"{names[e]}: one-file import is not the model's"
            a, b = set(st["one"][e].split()), set(st["split"][e].split())
            bad.append((names[e], e[:8], "split-only", sorted(names.get(x.split("=")[1], x)
                                                                for x in b - a),
                        "one-file-only", sorted(names.get(x.split("=")[1], x) for x in a - b)))
    inverted = postgres.psql(got, "SELECT count(*) FROM mxf_auth_edges WHERE auth_nid > event_nid")
    assert not bad, (f"{len(bad)} states before differ, first: {bad[:2]}; auth edges to a"
                     f" higher event number in the split database: {inverted}")
    assert rejected(postgres, got) == rejected(postgres, want)
