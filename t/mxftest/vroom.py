# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Helpers of the end-to-end tests on hand-built rooms of versions 1-11
(test_054-060): import a VRoom with matrix-fed
import, read what the database decided, and ask httpd with X-Matrix signed
requests as any server."""
import json
import os
import subprocess

from conftest import SERVER_NAME, site_config
from .matrix import q, xmatrix

FED = "/_matrix/federation/v1"


def import_rooms(build_env, postgres, workdir, name, rooms, keys, check=True):
    d = os.path.join(workdir, "vrooms", name)
    os.makedirs(d, exist_ok=True)
    keyfile = os.path.join(d, "keys.json")
    keys.write_responses(keyfile)
    path = os.path.join(d, "room.jsonl")
    with open(path, "w") as f:
        for r in rooms:
            for _, ev in r.events:
                f.write(json.dumps(ev, separators=(",", ":"), ensure_ascii=False) + "\n")
    p = subprocess.run([build_env.cli, "import", "--quiet", "--db", postgres.conninfo(),
                        "--keys", keyfile, path], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True,
                       env=build_env.sanitizer_env(workdir))
    if check:
        assert p.returncode == 0, p.stderr + p.stdout
    return p


def db_rejected(postgres, room_id):
    out = postgres.psql(postgres.DBNAME,
                        "SELECT e.event_id || chr(9) || e.rejected_reason FROM mxf_events e"
                        " JOIN mxf_rooms r USING (room_nid)"
                        f" WHERE r.room_id = '{room_id}' AND e.rejected_reason IS NOT NULL")
    return dict(l.split("\t", 1) for l in out.splitlines() if l)


def db_unverified(postgres, room_id):
    out = postgres.psql(postgres.DBNAME,
                        "SELECT e.event_id FROM mxf_events e JOIN mxf_rooms r USING (room_nid)"
                        f" WHERE r.room_id = '{room_id}' AND NOT e.signatures_verified")
    return set(out.split())


def serve(httpd_factory, postgres, signing_key, backend, keys, name, extra=""):
    """For a module-scoped fixture (yield from): httpd serving the database,
    and a Fed that signs as any server of @keys."""
    h = httpd_factory.new(name)
    h.start(site_config(postgres, signing_key, backend, extra=extra))
    yield Fed(h, keys)
    h.stop()


class Fed:
    def __init__(self, httpd, keys):
        self.httpd, self.keys = httpd, keys

    def get(self, origin, path):
        auth = xmatrix(origin, self.keys.get(origin), SERVER_NAME, "GET", path)
        return self.httpd.get(path, headers={"Authorization": auth}, timeout=60)

    def post(self, origin, path, content):
        auth = xmatrix(origin, self.keys.get(origin), SERVER_NAME, "POST", path, content)
        return self.httpd.post(path, body=json.dumps(content), headers={"Authorization": auth},
                               timeout=60)

    def event(self, origin, room, eid):
        return self.get(origin, f"{FED}/event/{q(eid)}")

    def backfill(self, origin, room, v, limit=1000):
        return self.get(origin, f"{FED}/backfill/{q(room)}?v={q(v)}&limit={limit}")

    def gme(self, origin, room, latest, limit=1000, earliest=()):
        return self.post(origin, f"{FED}/get_missing_events/{q(room)}",
                         {"earliest_events": list(earliest), "latest_events": [latest],
                          "limit": limit})
