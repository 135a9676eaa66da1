# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Third-party invite edge cases, each on its own branch off one base state,
with the verdict of the spec (content/rooms/fragments/v*-auth-rules.md) and
Synapse (event_auth.py _verify_third_party_invite: signedjson's
verify_signed_json drops `unsigned` and `signatures` before verifying,
unpaddedbase64.decode_base64 takes padded and URL-safe base64, key names not
starting with ed25519: are skipped; rule "If type is m.room.third_party_invite"
comes before the required power level and the @-state_key rule)."""
import base64
import hashlib
import json

import pytest
import signedjson.key
import signedjson.sign

from mxftest.stateres_tpi import ModelTPI, TPI
from mxftest.v12util import db_events, import_lines
from mxftest.vbuilder import VRoom
from mxftest.vbuilder12 import SHARED_KEYS

A = "@alice:hs1.example"
U1 = "@u1:hs2.example"
U2 = "@u2:hs3.example"
Z = "@z:hs7.example"
VERSIONS = ["3", "10", "11"]


def key_with(pred):
    for i in range(1000):
        seed = base64.b64encode(hashlib.sha256(b"tpi-edge-%d" % i).digest()).decode()
        k = signedjson.key.decode_signing_key_base64("ed25519", "0", seed)
        if pred(pk(k)):
            return k
    raise AssertionError


def pk(k):
    return signedjson.key.encode_verify_key_base64(signedjson.key.get_verify_key(k))


K = key_with(lambda s: True)
KURL = key_with(lambda s: "+" in s or "/" in s)


def b64url(s):
    return s.replace("+", "-").replace("/", "_")


def sign(obj, key=K):
    return signedjson.sign.sign_json(dict(obj), "id.example", key)


def normal(ev):
    ev = dict(ev)
    ev["prev_events"] = [p[0] if isinstance(p, list) else p for p in ev["prev_events"]]
    ev["auth_events"] = [a[0] if isinstance(a, list) else a for a in ev["auth_events"]]
    return ev


def build(v):
    r = VRoom(v, SHARED_KEYS, f"!tpiedge{v}:hs1.example")
    E = {}
    m = ModelTPI(E, [], v)
    want = {}

    def add(eid, expect=None, label=None):
        E[eid] = normal(r.by_id[eid])
        m.create_id = m.create_id or eid
        m.add(eid)
        if eid in m.rejected:
            r.rejected.add(eid)
        r.state = dict(m.after[eid])
        if expect is not None:
            want[eid] = (label, expect)
        return eid

    add(r.create(A))
    add(r.join(A))
    add(r.pl(A, {"users": {A: 100, U2: 50}, "invite": 50, "state_default": 75,
                 "events": {TPI: 100}}))
    add(r.make("m.room.join_rules", A, {"join_rule": "invite"}, state_key=""))
    add(r.member(A, U1, "invite"))
    add(r.join(U1))
    add(r.member(A, U2, "invite"))
    add(r.join(U2))
    url = "https://id.example/v"
    add(r.make(TPI, A, {"display_name": "x", "key_validity_url": url, "public_key": pk(K)},
               state_key="tok"))
    add(r.make(TPI, A, {"display_name": "x", "public_keys": [
        {"public_key": b64url(pk(KURL)), "key_validity_url": url}]}, state_key="tokurl"))
    add(r.make(TPI, A, {"display_name": "x", "public_key": pk(K) + "="}, state_key="tokpad"))
    add(r.make(TPI, A, {"display_name": "x", "public_key": pk(K)}, state_key="5"))
    base = r.last
    base_state = dict(r.state)

    def branch(label, expect, type_, sender, content, state_key, auth=None):
        r.state = dict(base_state)
        if auth is None:
            try:
                auth = r.auth_for(type_, sender, state_key, content)
            except (KeyError, TypeError):
                auth = r.auth_for(type_, sender, state_key, {"membership": "invite"})
        eid = r.make(type_, sender, content, state_key=state_key, prev=[base], auth=auth)
        return add(eid, expect, label)

    def inv(label, expect, signed, target=Z, sender=A, tpi=None):
        c = {"membership": "invite", "third_party_invite": {"display_name": "x"}}
        if signed is not None:
            c["third_party_invite"]["signed"] = signed
        if tpi is not None:
            c["third_party_invite"] = tpi
        return branch(label, expect, "m.room.member", sender, c, target)

    inv("plain valid", True, sign({"mxid": Z, "token": "tok"}))
    s = sign({"mxid": Z, "token": "tok"})
    s["unsigned"] = {"age": 5}
    inv("signed with an unsigned key (dropped before verifying)", True, s)
    inv("signed.sender not the event's sender (not checked)", True,
        sign({"mxid": Z, "token": "tok", "sender": U1}))
    inv("public_keys entry in URL-safe base64", True,
        sign({"mxid": Z, "token": "tokurl"}, KURL))
    inv("public_key with padding", True, sign({"mxid": Z, "token": "tokpad"}))
    s = sign({"mxid": Z, "token": "tok"})
    s["signatures"]["id.example"] = {"curve25519:x": "AAAA", **s["signatures"]["id.example"]}
    inv("non-ed25519 signature ahead of the good one", True, s)
    inv("third_party_invite without signed", False, None)
    # The only signature is an ed25519 signature by the listed key, under a key ID
    # whose algorithm is not ed25519: appendices "Checking for a Signature" step 2
    # removes it ("Removes any signing key identifiers from the entry with
    # algorithms it doesn't understand. If there are no signing key identifiers
    # left then the check fails."); Synapse skips key names not "ed25519:".
    for kid in ("curve25519:0", "0", "ed25519"):
        s = sign({"mxid": Z, "token": "tok"})
        s["signatures"]["id.example"] = {kid: s["signatures"]["id.example"]["ed25519:0"]}
        inv(f"only signature under key ID {kid!r}", False, s)
    s = sign({"mxid": Z, "token": 5})
    c = {"membership": "invite", "third_party_invite": {"signed": s}}
    r.state = dict(base_state)
    auth = r.auth_for("m.room.member", A, Z, {"membership": "invite"}) + \
        [base_state[(TPI, "5")]]
    add(r.make("m.room.member", A, c, state_key=Z, prev=[base], auth=auth), False,
        "integer token, tpi event with state key '5' listed")
    s = sign({"mxid": Z, "token": "tok"})
    s["mxid"] = "@other:hs7.example"
    inv("mxid changed after signing", False, s)
    branch("tpi event with an @ state key not the sender's", True, TPI, A,
           {"display_name": "x", "public_key": pk(K)}, U1)
    branch("tpi event by invite level, under events[tpi] and state_default", True, TPI, U2,
           {"display_name": "x", "public_key": pk(K)}, "tok2")
    branch("tpi event under the invite level", False, TPI, U1,
           {"display_name": "x", "public_key": pk(K)}, "tok3")
    r.state = dict(base_state)
    eid = r.make("m.room.message", A, {"msgtype": "m.text", "body": "end"},
                 prev=[e for e in want])
    return r, m, want


@pytest.fixture(scope="module")
def rooms(build_env, postgres, workdir):
    out = {v: build(v) for v in VERSIONS}
    for v, (r, m, want) in out.items():
        lines = [json.dumps(ev, separators=(",", ":")) for _, ev in r.events]
        p = import_lines(build_env, postgres, workdir, f"tpiedge{v}", lines, SHARED_KEYS)
        assert p.returncode == 0, p.stderr + p.stdout
    return out


@pytest.mark.parametrize("v", VERSIONS)
def test_100_001_model_agrees_with_expectations(rooms, v):
    r, m, want = rooms[v]
    bad = [(lab, exp, m.rejected.get(e)) for e, (lab, exp) in want.items()
           if (e not in m.rejected) != exp]
    assert not bad


KEYID = "only signature under key ID"


def verdicts(rooms, postgres, v, keyids):
    r, m, want = rooms[v]
    got = db_events(postgres, r.room_id)
    return [(lab, "accept" if exp else "reject", got.get(e)) for e, (lab, exp) in want.items()
            if (got.get(e, "") == "") != exp and lab.startswith(KEYID) == keyids]


@pytest.mark.parametrize("v", VERSIONS)
def test_100_002_verdicts(rooms, postgres, v):
    bad = verdicts(rooms, postgres, v, False)
    assert not bad, "\n".join(map(str, bad))


@pytest.mark.parametrize("v", VERSIONS)
def test_100_003_signature_key_ids_not_ed25519(rooms, postgres, v):
    """A signature of signed under a key ID that does not name ed25519 is no
    signature by the listed ed25519 public key (appendices, "Checking for a
    Signature", step 2; Synapse _verify_third_party_invite skips key names not
    starting with "ed25519:"): the invite is rejected."""
    bad = verdicts(rooms, postgres, v, True)
    assert not bad, "\n".join(map(str, bad))
