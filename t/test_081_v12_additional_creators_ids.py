# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""additional_creators and the user ID validation "applied to sender"
(content/rooms/v12.md rule 1.4), as the reference homeserver reads it
(Synapse event_auth.check_valid_additional_creators: a list of strings,
UserID.is_valid - "@", a ":" and a server name that
parse_and_validate_server_name takes (host name, IPv4 or [IPv6] literal,
optional port) - and at most 255 code points and 255 bytes). Historical
user IDs (appendices: any character but ":" and NUL in the localpart) are
user IDs."""
import pytest

from mxftest.v12util import db_events, import_lines
from mxftest.vbuilder12 import SHARED_KEYS, V12Room

A = "@alice:hs1.example"

VALID = [("port", "@carol:hs3.example:8448"), ("upper", "@CAROL:hs3.example"),
         ("ipv6", "@carol:[::1]"), ("ipv4", "@carol:127.0.0.1"),
         ("non-ascii", "@caröl:hs3.example"), ("punct", "@c/a=r+o_l:hs3.example"),
         ("255-bytes", "@" + "c" * (255 - len("@:hs3.example")) + ":hs3.example")]
INVALID = [("empty-domain", "@carol:"), ("underscore-host", "@carol:hs3_example"),
           ("space-host", "@carol:hs3 example"), ("no-sigil", "carol:hs3.example"),
           ("room-sigil", "!carol:hs3.example"), ("empty", ""),
           ("256-bytes", "@" + "c" * (256 - len("@:hs3.example")) + ":hs3.example")]


def room(value, ts, rejected):
    r = V12Room(SHARED_KEYS, ts0=ts)
    r.create(A, additional_creators=[value], rejected=rejected,
             label=f"create with additional_creators [{value[:40]!r}]")
    r.join(A, rejected=rejected)
    return r


def check(build_env, postgres, workdir, tag, value, ts, valid):
    r = room(value, ts, not valid)
    p = import_lines(build_env, postgres, workdir, f"ac-{tag}", r.lines(), SHARED_KEYS)
    if not valid and p.returncode != 0:
        return                              # refused outright: nothing accepted
    assert p.returncode == 0, p.stderr
    got = db_events(postgres, r.room_id)
    assert got.get(r.create_id) is not None, "create event not stored"
    if valid:
        assert got[r.create_id] == "", got[r.create_id]
        assert all(v == "" for v in got.values()), got
    else:
        assert got[r.create_id] != "", "an invalid additional creator was accepted"


@pytest.mark.parametrize("tag,value", VALID)
def test_081_001_valid(build_env, postgres, workdir, tag, value):
    check(build_env, postgres, workdir, tag, value, 1750000000000 + len(tag) * 1000 + 7, True)


@pytest.mark.parametrize("tag,value", INVALID)
def test_081_002_invalid(build_env, postgres, workdir, tag, value):
    check(build_env, postgres, workdir, tag, value, 1750100000000 + len(tag) * 1000 + 9, False)
