# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Third-party invites (m.room.third_party_invite, then a member
invite carrying third_party_invite.signed signed by the identity server's key)
as homeservers produce them - the member event signed by a server other than
the sender's (the reference homeserver builds it where the exchange lands and
exempts such invites from the sender's-server signature: federation_base.py
_is_invite_via_3pid) - and restricted joins signed by the authorising server,
with the auth rules' verdicts per version, the served copies (the v11
redaction keeps third_party_invite.signed), and /state_ids after them."""
import json

import pytest
import signedjson.key
import signedjson.sign

from mxftest.vroom import db_rejected, db_unverified, FED, import_rooms, serve
from mxftest.matrix import q
from mxftest.vbuilder import Keys, VRoom, redact

A = "@admin:hs1.example"
B = "@bob:hs2.example"
Z = "@zed:hs7.example"
Y = "@yan:hs8.example"
VERSIONS = ["1", "3", "6", "9", "10", "11"]

IDKEY = signedjson.key.generate_signing_key("0")
IDKEY2 = signedjson.key.generate_signing_key("1")
OTHER = signedjson.key.generate_signing_key("0")


def pk(k):
    return signedjson.key.encode_verify_key_base64(signedjson.key.get_verify_key(k))


def signed_block(mxid, token, key=IDKEY):
    return signedjson.sign.sign_json({"mxid": mxid, "token": token}, "id.example", key)


def tpi_member(r, sender, target, token, key=IDKEY, signer=None, rejected=False):
    c = {"membership": "invite",
         "third_party_invite": {"display_name": "z...@example.org",
                                "signed": signed_block(target, token, key)}}
    return r.make("m.room.member", sender, c, state_key=target, signer=signer, rejected=rejected)


def build(keys, v):
    n = int(v)
    r = VRoom(v, keys, f"!tp{v}:hs1.example")
    red = set()
    r.create(A)
    r.join(A)
    r.make("m.room.power_levels", A, {"users": {A: 100, B: 50}}, state_key="")
    r.make("m.room.join_rules", A, {"join_rule": "invite"}, state_key="")
    r.make("m.room.history_visibility", A, {"history_visibility": "shared"}, state_key="")
    r.member(A, B, "invite")
    r.join(B)
    r.make("m.room.third_party_invite", A,
           {"display_name": "z...@example.org", "key_validity_url": "https://id.example/v",
            "public_key": pk(IDKEY),
            "public_keys": [{"public_key": pk(IDKEY2),
                             "key_validity_url": "https://id.example/v"}]},
           state_key="tok1")
    # signed by the invitee's server, not the sender's
    inv = tpi_member(r, A, Z, "tok1", signer="hs7.example")
    r.join(Z)
    # a key of public_keys signs; the inviter's server builds it
    tpi_member(r, A, Y, "tok1", key=IDKEY2)
    # mismatches: wrong token, wrong mxid, wrong key, sender not the tpi's sender
    tpi_member(r, A, "@w1:hs9.example", "nope", rejected=True)
    c = {"membership": "invite",
         "third_party_invite": {"signed": signed_block("@other:hs9.example", "tok1")}}
    r.make("m.room.member", A, c, state_key="@w2:hs9.example", rejected=True)
    tpi_member(r, A, "@w3:hs9.example", "tok1", key=OTHER, rejected=True)
    tpi_member(r, B, "@w4:hs9.example", "tok1", rejected=True)
    # redact the invite: v11 keeps third_party_invite.signed
    r.redaction(A, inv)
    red.add(inv)
    # restricted join (v8+), signed by the authorising server too
    allow = [{"type": "m.room_membership", "room_id": "!elsewhere:hs1.example"}]
    r.make("m.room.join_rules", A, {"join_rule": "restricted", "allow": allow},
           state_key="")
    rj = r.join("@rex:hs5.example", c={"join_authorised_via_users_server": B},
                rejected=n < 8, sign_extra=["hs2.example"] if n >= 8 else [])
    r.msg(A, "end")
    return r, red, rj


@pytest.fixture(scope="module")
def rooms(build_env, postgres, workdir):
    keys = Keys()
    out = {v: build(keys, v) for v in VERSIONS}
    import_rooms(build_env, postgres, workdir, "t906", [x[0] for x in out.values()], keys)
    return keys, out


@pytest.fixture(scope="module")
def fed(httpd_factory, postgres, signing_key, backend, rooms):
    yield from serve(httpd_factory, postgres, signing_key, backend, rooms[0], "httpd-059")


def label(r, eid):
    ev = r.by_id[eid]
    i = [e for e, _ in r.events].index(eid)
    return f"#{i} {ev['type']} {ev['sender']} {ev.get('state_key', '')}"


@pytest.mark.parametrize("v", VERSIONS)
def test_059_001_verdicts_and_copies(rooms, fed, postgres, v):
    r, red, rj = rooms[1][v]
    got = db_rejected(postgres, r.room_id)
    wrong = [f"{label(r, e)}: expected {'rejected' if e in r.rejected else 'accepted'} "
             f"{got.get(e, '')}" for e, _ in r.events if (e in r.rejected) != (e in got)]
    assert not wrong, "\n".join(wrong)
    assert not db_unverified(postgres, r.room_id)
    for eid, ev in r.events:
        resp = fed.event("hs1.example", r.room_id, eid)
        if eid in r.rejected:
            assert resp.status == 404
            continue
        assert resp.status == 200, (label(r, eid), resp)
        want = redact(ev, r.version) if eid in red else ev
        assert resp.json["pdus"][0] == want, label(r, eid)


@pytest.mark.parametrize("v", VERSIONS)
def test_059_002_state_ids(rooms, fed, v):
    r, red, rj = rooms[1][v]
    last = r.events[-1][0]
    resp = fed.get("hs1.example", f"{FED}/state_ids/{q(r.room_id)}?event_id={q(last)}")
    assert resp.status == 200, resp
    assert set(resp.json["pdu_ids"]) == set(r.state.values())
