# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""get_missing_events over a generated room of 2,000 events once the tables
are vacuumed (autovacuum does it soon after an import: its insert threshold
is 1,000 rows): three latest_events (the layered walk
mxf_missing_events_walk, sql/010 and 015) with an earliest event and limit
1000 must answer well within MatrixFedQueryTimeout (10 s). Measured: 90-130
ms before the VACUUM, 24-26 s after it (503): under its forced generic plan
each layer's statement reads the whole room (an index-only scan of
mxf_events_room_depth filtered by NOT ALL(seen), hash-joined to the edges)."""
import os
import time

from mxftest.matrix import Room, q
from test_020_genroom import gen
from test_021_import import new_db
from test_064_import_parts import import_path, room_signers, serve

FED = "/_matrix/federation/v1"


def test_074_001_gme_three_latest_after_vacuum(build_env, workdir, postgres, httpd_factory,
                                                signing_key, backend, tmp_path):
    d = gen(build_env, tmp_path / "room", "10", seed=913, events=2000, branchiness=0.3,
            extra=["--conflicts", "0.5"])
    room = Room(str(d))
    db = new_db(postgres, build_env)
    import_path(build_env, workdir, postgres, db, os.path.join(str(d), "room.jsonl"),
                os.path.join(str(d), "keys", "all.json"))
    postgres.psql(db, "VACUUM ANALYZE")
    h = serve(httpd_factory, postgres, signing_key, backend, db, "gme-vacuumed")
    signer = room_signers(room)[0]
    body = {"earliest_events": [room.order[len(room.order) // 2]],
            "latest_events": room.order[-3:], "limit": 1000}
    times = []
    try:
        for _ in range(3):
            t0 = time.time()
            r = signer.request(h, "POST", f"{FED}/get_missing_events/{q(room.room_id)}", body)
            times.append((r.status, round(time.time() - t0, 2)))
    finally:
        h.stop()
    assert all(st == 200 and t < 3 for st, t in times), times
