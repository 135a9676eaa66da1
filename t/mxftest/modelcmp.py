# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""What the random-room tests (test_098, test_099, test_101) compare: the
module's verdict on each event and its stored state before each event,
against an independent model's (model.rejected, model.before)."""
from .helpers12 import db_states_before
from .v12util import db_events


def verdict_differences(postgres, r, model, desc):
    """(event, the model's reason, the database's) where one rejects and the
    other does not; @desc(eid) names an event in the report."""
    got = db_events(postgres, r.room_id)
    return [(desc(e), model.rejected.get(e), got.get(e)) for e, _ in r.events
            if (e in model.rejected) != (got.get(e, "") != "")]


def state_differences(postgres, r, model, desc):
    """(event, {type|state_key: (stored, model's)}) where the stored state
    before an event is not the model's; events named by their place."""
    got = db_states_before(postgres, r.room_id)
    names = {x: f"#{i}" for i, (x, _) in enumerate(r.events)}
    bad = []
    for e, _ in r.events:
        want = {f"{k[0]}|{k[1]}": v for k, v in model.before[e].items()}
        g = got.get(e) or {}
        if g != want:
            bad.append((desc(e), {k: (names.get(g.get(k)), names.get(want.get(k)))
                                  for k in set(g) | set(want) if g.get(k) != want.get(k)}))
    return bad
