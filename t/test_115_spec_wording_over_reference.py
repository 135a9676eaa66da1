# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Where the reference homeserver departs from the spec's wording, the
importer follows the spec (README, "State and authorization"):

- `m.federate` denies other servers only when it is `false` (auth rule 3:
  "m.federate set to false"); a string "false", 0 or null does not;
- in room versions 1 and 2 an m.room.redaction with no `redacts` string,
  from a sender below the redact level, is rejected: rule 11 allows it only
  by power or by the redacted event's domain, and there is no redacted
  event. From version 3 the rule is gone and it is accepted (it redacts
  nothing).
"""
import hashlib

import pytest

from mxftest.vbuilder import Keys, VRoom
from mxftest.vroom import db_rejected, import_rooms

A = "@admin:hs1.example"
B = "@bob:hs2.example"
B1 = "@bert:hs1.example"


def room_id(*tag):
    return "!s" + hashlib.sha256(repr(tag).encode()).hexdigest()[:10] + ":hs1.example"


def federate_room(keys, version, value):
    r = VRoom(version, keys, room_id("federate", version, value))
    r.create(A, {"m.federate": value})
    r.join(A)
    r.pl(A, {"users": {A: 100}})
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    r.probe = r.join(B)
    return r


def redacts_room(keys, version, shape):
    r = VRoom(version, keys, room_id("redacts", version, shape))
    r.create(A)
    r.join(A)
    r.pl(A, {"users": {A: 100}})
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    r.join(B1)
    extra = {} if shape == "absent" else {"redacts": 5}
    content = {} if shape == "absent" or r.v < 11 else {"redacts": 5}
    r.probe = r.make("m.room.redaction", B1, content, extra=extra)
    return r


FEDERATE = [("1", False, True), ("10", False, True), ("11", False, True),
            ("1", "false", False), ("10", "false", False), ("10", 0, False),
            ("10", None, False), ("11", "false", False)]
REDACTS = [("1", "absent", True), ("2", "number", True), ("3", "absent", False),
           ("10", "number", False), ("11", "absent", False)]


@pytest.fixture(scope="module")
def rooms(build_env, postgres, workdir):
    keys = Keys()
    fed = {c: federate_room(keys, c[0], c[1]) for c in FEDERATE}
    red = {c: redacts_room(keys, c[0], c[1]) for c in REDACTS}
    import_rooms(build_env, postgres, workdir, "t115", list(fed.values()) + list(red.values()),
                 keys)
    return fed, red


@pytest.mark.parametrize("case", FEDERATE, ids=lambda c: f"v{c[0]}-{c[1]!r}")
def test_115_001_m_federate_false_only(rooms, postgres, case):
    r = rooms[0][case]
    rejected = db_rejected(postgres, r.room_id)
    assert (r.probe in rejected) == case[2], (case, rejected)


@pytest.mark.parametrize("case", REDACTS, ids=lambda c: f"v{c[0]}-{c[1]}")
def test_115_002_redaction_without_redacts(rooms, postgres, case):
    r = rooms[1][case]
    rejected = db_rejected(postgres, r.room_id)
    assert (r.probe in rejected) == case[2], (case, rejected)
    assert len(rejected) == int(case[2]), rejected
