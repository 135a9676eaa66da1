# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""SyTest tests/50federation/50server-acl-endpoints.pl, the endpoints this
module serves ('Banned servers cannot get room state', '... get room state
ids', '... backfill', '... /event_auth', '... get missing events'): the
test's server (named with a port, as SyTest's is) joins a room; each request
works; the creator then sends m.room.server_acl denying the server's name
without its port; each request is then 403 M_FORBIDDEN. The ACL arrives in a
second import, as it would arrive after the first requests."""
import os
import subprocess

import pytest

from mxftest.matrix import q
from mxftest.vbuilder import Keys
from mxftest.vroom import import_rooms, serve
from test_090_sytest_rooms import ALICE, synapse_room

FED = "/_matrix/federation/v1"
SYTEST = "sytest.example:8448"
SYUSER = "@sytest:sytest.example:8448"


@pytest.fixture(scope="module")
def room(build_env, postgres, workdir):
    keys = Keys()
    r = synapse_room(keys, "!acl091:hs1.example")
    r.msg(ALICE, "before")
    r.join(SYUSER)
    n_before = len(r.events)
    import_rooms(build_env, postgres, workdir, "t091a", [r], keys)
    return keys, r, n_before


@pytest.fixture(scope="module")
def fed(httpd_factory, postgres, signing_key, backend, room):
    yield from serve(httpd_factory, postgres, signing_key, backend, room[0], "httpd-091")


def requests(r, tip):
    rid = q(r.room_id)
    return {
        "get room state": ("GET", f"{FED}/state/{rid}?event_id={q(tip)}", None),
        "get room state ids": ("GET", f"{FED}/state_ids/{rid}?event_id={q(tip)}", None),
        "backfill": ("GET", f"{FED}/backfill/{rid}?v={q(tip)}&limit=100", None),
        "/event_auth": ("GET", f"{FED}/event_auth/{rid}/{q(tip)}", None),
        # SyTest's can_get_missing_events posts an empty object.
        "get missing events": ("POST", f"{FED}/get_missing_events/{rid}", {}),
        "get missing events (full body)": (
            "POST", f"{FED}/get_missing_events/{rid}",
            {"earliest_events": [], "latest_events": [tip], "limit": 10}),
        # Not in SyTest's list; the spec digest (§8: Synapse ACL-checks
        # timestamp_to_event too) and the README (every history request):
        "/event": ("GET", f"{FED}/event/{q(tip)}", None),
        "/timestamp_to_event": ("GET", f"{FED}/timestamp_to_event/{rid}?ts=0&dir=f", None),
    }


def call(fed, method, path, body):
    if method == "GET":
        return fed.get(SYTEST, path)
    return fed.post(SYTEST, path, body)


def _ban(build_env, postgres, workdir, room):
    keys, r, n_before = room
    r.make("m.room.server_acl", ALICE, {"deny": ["sytest.example"], "allow": ["*"]},
           state_key="")
    # import only the new event (the room's first part is stored)
    class Tail:
        events = r.events[n_before:]
    import_rooms(build_env, postgres, workdir, "t091b", [Tail], keys)


NAMES = ["get room state", "get room state ids", "backfill", "/event_auth",
         "get missing events", "get missing events (full body)", "/event",
         "/timestamp_to_event"]


def test_091_001_allowed_then_forbidden_after_ban(build_env, postgres, workdir, room, fed):
    keys, r, n_before = room
    tip = r.events[n_before - 1][0]
    for name in NAMES:
        method, path, body = requests(r, tip)[name]
        resp = call(fed, method, path, body)
        assert resp.status == 200, (name, resp)
        if name == "get missing events":
            # the reference homeserver reads absent lists as empty: no events
            assert resp.json == {"events": []}, resp.json
    _ban(build_env, postgres, workdir, room)
    for name in NAMES:
        method, path, body = requests(r, tip)[name]
        resp = call(fed, method, path, body)
        assert resp.status == 403, (name, resp)
        assert resp.json["errcode"] == "M_FORBIDDEN", resp.json
