# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""SyTest tests/50federation/39redactions.pl, as far as the module serves
the outcome: the events arrive through matrix-fed import (the module's
inbound path), and what SyTest checks over the client API (the message
redacted or not) is checked here in what /event and /backfill serve to a
member server (redacted copy or original bytes)."""
import pytest

from mxftest.matrix import q
from mxftest.vbuilder import Keys, redact
from mxftest.vroom import db_rejected, import_rooms, serve
from test_090_sytest_rooms import ALICE, CHARLIE, REMOTE, synapse_room

FED = "/_matrix/federation/v1"


@pytest.fixture(scope="module")
def world(build_env, postgres, workdir):
    keys = Keys()
    w = {"keys": keys}
    # 1. room version 5: spoofed redactions from the test server are ignored,
    #    the creator's one applies, a later spoofed one changes nothing.
    r = synapse_room(keys, "!red5:hs1.example", version="5")
    r.join(CHARLIE)
    msg = r.msg(ALICE, "Hello")
    fake1 = r.redaction(CHARLIE, msg)
    sent1 = r.msg(CHARLIE, "sentinel 1")
    w["v5_stage1"] = (r, msg, fake1, sent1, len(r.events))
    legit = r.redaction(ALICE, msg)
    fake2 = r.redaction(CHARLIE, msg)
    sent2 = r.msg(CHARLIE, "sentinel 2")
    w["v5"] = (r, msg, legit, fake2, sent2)
    # 2. a redaction in room 2 of the test server's own message in room 1
    r1 = synapse_room(keys, "!redx1:hs1.example")
    r1.join(CHARLIE)
    hi = r1.msg(CHARLIE, "hi")
    r2 = synapse_room(keys, "!redx2:hs1.example")
    r2.join(CHARLIE)
    xred = r2.redaction(CHARLIE, hi)
    sentinel = r2.msg(CHARLIE, "sentinel")
    w["cross"] = (r1, hi, r2, xred, sentinel)
    # 3. room version 1: a redaction of itself; a pair redacting each other
    r3 = synapse_room(keys, "!redself:hs1.example", version="1")
    r3.join(CHARLIE)
    self_id = "$lolredact:remote.example"
    r3.make("m.room.redaction", CHARLIE, {}, extra={"event_id": self_id, "redacts": self_id})
    red1, red2 = "$redaction1:remote.example", "$redaction2:remote.example"
    r3.make("m.room.redaction", CHARLIE, {}, extra={"event_id": red1, "redacts": red2})
    r3.make("m.room.redaction", CHARLIE, {}, extra={"event_id": red2, "redacts": red1})
    w["v1"] = (r3, self_id, red1, red2)
    # stage 1 of room 1 first, as SyTest checks between the redactions
    class Stage1:
        events = r.events[:w["v5_stage1"][4]]
    import_rooms(build_env, postgres, workdir, "t094a", [Stage1], keys)
    return w


@pytest.fixture(scope="module")
def fed(httpd_factory, postgres, signing_key, backend, world):
    yield from serve(httpd_factory, postgres, signing_key, backend, world["keys"], "httpd-094")


def served(fed, eid):
    r = fed.get(REMOTE, f"{FED}/event/{q(eid)}")
    assert r.status == 200, r
    [pdu] = r.json["pdus"]
    return pdu


def test_094_001_ignores_redactions_from_invalid_servers_v5(build_env, postgres, workdir,
                                                           world, fed):
    """'Inbound federation ignores redactions from invalid servers room > v3'."""
    r, msg, fake1, sent1, n = world["v5_stage1"]
    pdu = served(fed, msg)
    assert pdu["content"]["body"] == "Hello", "message redacted by a spoofed redaction"
    assert pdu == r.by_id[msg]
    # the legitimate redaction, then a second spoofed one
    r, msg, legit, fake2, sent2 = world["v5"]

    class Rest:
        events = r.events[n:]
    import_rooms(build_env, postgres, workdir, "t094b", [Rest], world["keys"])
    pdu = served(fed, msg)
    assert pdu == redact(r.by_id[msg], "5"), pdu
    assert "body" not in pdu["content"]
    assert db_rejected(postgres, r.room_id) == {}


def test_094_002_redaction_in_a_different_room_ignored(build_env, postgres, workdir, world,
                                                      fed):
    """'An event which redacts an event in a different room should be ignored'."""
    r1, hi, r2, xred, sentinel = world["cross"]
    import_rooms(build_env, postgres, workdir, "t094c", [r1, r2], world["keys"])
    pdu = served(fed, hi)
    assert pdu["content"]["body"] == "hi"
    assert pdu == r1.by_id[hi]
    # backfill of room 1 serves it whole too
    resp = fed.get(REMOTE, f"{FED}/backfill/{q(r1.room_id)}?v={q(hi)}&limit=1")
    assert resp.status == 200 and resp.json["pdus"] == [r1.by_id[hi]], resp


def test_094_003_self_redaction_and_mutual_redactions_accepted_v1(build_env, postgres,
                                                                  workdir, world, fed):
    """'An event which redacts itself should be ignored' and 'A pair of
    events which redact each other should be ignored' (room version 1): the
    events are accepted into the room (SyTest waits for them in the
    timeline), so they are served."""
    r3, self_id, red1, red2 = world["v1"]
    import_rooms(build_env, postgres, workdir, "t094d", [r3], world["keys"])
    assert db_rejected(postgres, r3.room_id) == {}
    for eid in (self_id, red1, red2):
        pdu = served(fed, eid)
        assert pdu["event_id"] == eid
        assert pdu["type"] == "m.room.redaction"
    # Whether the self-redaction applies to itself SyTest does not say (the
    # test guards against redaction cycles breaking the server, synapse
    # v1.2.1); the reference homeserver's _maybe_redact_event_row has no
    # self check, and the module serves it redacted (its v1 redacted form,
    # without "redacts"). Not asserted.
