# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Server ACLs changing over time (deny a server, later allow it;
a rejected ACL; a redacted one; odd shapes), checked against an evaluator
written here from the spec's m.room.server_acl section and the reference
homeserver's ServerAclEvaluator (port stripped, globs matched whole and
case-insensitively, IP literals denied when allow_ip_literals is false, a
missing allow denies all, non-list values read as empty). Only the room's
current ACL decides; every origin has a joined member."""
import ipaddress
import re

import pytest

from mxftest.vroom import import_rooms, serve
from mxftest.matrix import q
from mxftest.vbuilder import Keys, VRoom

A = "@admin:hs1.example"
USERS = {"hs1.example": A, "hs2.example": "@b:hs2.example",
         "evil.example:8448": "@c:evil.example:8448", "HS4.example": "@d:HS4.example",
         "1.2.3.4": "@e:1.2.3.4", "[::1]:9000": "@f:[::1]:9000",
         "x.bad.example": "@g:x.bad.example"}


def host_of(name):
    if name.startswith("["):
        return name[:name.index("]") + 1]
    return name.rsplit(":", 1)[0] if ":" in name else name


def glob_re(g):
    return re.compile("^" + "".join(".*?" if c == "*" else "." if c == "?" else re.escape(c)
                                    for c in g) + r"\Z", re.IGNORECASE | re.DOTALL)


def acl_allows(content, server):
    if content is None:
        return True
    host = host_of(server)
    ip_ok = content.get("allow_ip_literals", True)
    if not isinstance(ip_ok, bool):
        ip_ok = True
    if not ip_ok:
        if host.startswith("["):
            return False
        try:
            ipaddress.IPv4Address(host)
            return False
        except ValueError:
            pass
    allow = content.get("allow", [])
    deny = content.get("deny", [])
    allow = allow if isinstance(allow, list) else []
    deny = deny if isinstance(deny, list) else []
    if any(isinstance(d, str) and glob_re(d).match(host) for d in deny):
        return False
    return any(isinstance(a, str) and glob_re(a).match(host) for a in allow)


# each room: a list of ACL contents sent over time (None: no ACL event at all)
HISTORIES = {
    "deny_then_allow": [{"allow": ["*"], "deny": ["evil.example"]}, {"allow": ["*"]}],
    "allow_then_deny": [{"allow": ["*"]}, {"allow": ["*"], "deny": ["*.bad.example",
                                                                    "hs4.EXAMPLE"],
                                           "allow_ip_literals": False}],
    "allow_list": [{"allow": ["hs?.example", "EVIL.*"], "deny": []}],
    "no_allow": [{"deny": ["evil.example"]}],
    "odd_shapes": [{"allow": "*", "deny": ["hs2.example"]},
                   {"allow": ["*", 5, None], "deny": "hs2.example",
                    "allow_ip_literals": "no"}],
    "ip_literals_off": [{"allow": ["*"], "allow_ip_literals": False}],
    "port_in_pattern": [{"allow": ["*"], "deny": ["evil.example:8448", "[::1]"]}],
}


def build(keys, name, acls, redact_last=False, rejected_last=None):
    r = VRoom("10", keys, f"!acl{name}:hs1.example")
    r.create(A)
    r.join(A)
    r.make("m.room.power_levels", A, {"users": {A: 100}}, state_key="")
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    for u in USERS.values():
        if u != A:
            r.join(u)
    current = None
    for c in acls:
        r.make("m.room.server_acl", A, c, state_key="")
        current = c
        r.msg(A, "after acl")
    if rejected_last is not None:
        # a member without power tries to shut hs1 out: rejected, no effect
        r.make("m.room.server_acl", USERS["hs2.example"], rejected_last, state_key="",
               rejected=True)
    if redact_last:
        r.redaction(A, r.state[("m.room.server_acl", "")])
        current = {}
    r.msg(A, "end")
    return r, current


@pytest.fixture(scope="module")
def rooms(build_env, postgres, workdir):
    keys = Keys()
    out = {n: build(keys, n, h) for n, h in HISTORIES.items()}
    out["rejected"] = build(keys, "rejected", [{"allow": ["*"]}],
                            rejected_last={"allow": ["*"], "deny": ["hs1.example"]})
    out["redacted"] = build(keys, "redacted", [{"allow": ["*"], "deny": ["evil.example"]}],
                            redact_last=True)
    import_rooms(build_env, postgres, workdir, "t905", [r for r, _ in out.values()], keys)
    return keys, out


@pytest.fixture(scope="module")
def fed(httpd_factory, postgres, signing_key, backend, rooms):
    yield from serve(httpd_factory, postgres, signing_key, backend, rooms[0], "httpd-058")


@pytest.mark.parametrize("name", list(HISTORIES) + ["rejected", "redacted"])
def test_058_001_current_acl_decides(rooms, fed, name):
    r, current = rooms[1][name]
    last = r.events[-1][0]
    wrong = []
    for server in USERS:
        want = 200 if acl_allows(current, server) else 403
        got = fed.event(server, r.room_id, last).status
        got_bf = fed.backfill(server, r.room_id, last, limit=5).status
        if got != want or got_bf != want:
            wrong.append(f"{server}: expected {want}, /event {got}, backfill {got_bf}")
    assert not wrong, f"current ACL {current}:\n" + "\n".join(wrong)
