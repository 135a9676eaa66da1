# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""A third-party invite signed by the invitee's server only (exempt from the
sender's server signature: Synapse federation_base.py _is_invite_via_3pid,
decided on the PDU as received, before the content hash check) given with
its content altered in transit (content hash mismatch, ID and signature
intact as they cover the redacted form). Synapse: signatures pass, the hash
fails, the event is kept redacted and authorised redacted
(federation_base.py _check_sigs_and_hash returns the redacted event): in
v3-v10 the redacted invite has no third_party_invite, so its
m.room.third_party_invite auth event is not one the auth events selection
allows (event_auth.py check_state_independent_auth_rules: "unexpected
auth_event") and it is rejected, and so is the invitee's join; v11 keeps
third_party_invite.signed and accepts both. The import must not refuse
the file."""
import json

import pytest
import signedjson.key
import signedjson.sign

from mxftest.v12util import db_events, import_lines
from mxftest.vbuilder import VRoom
from mxftest.vbuilder12 import SHARED_KEYS

A = "@alice:hs1.example"
Z = "@z:hs7.example"
IDK = signedjson.key.generate_signing_key("0")


def pk(k):
    return signedjson.key.encode_verify_key_base64(signedjson.key.get_verify_key(k))


@pytest.mark.parametrize("v", ["3", "10", "11"])
def test_102_001_altered_3pid_invite(build_env, postgres, workdir, v):
    r = VRoom(v, SHARED_KEYS, f"!alt3pid{v}:hs1.example")
    r.create(A)
    r.join(A)
    r.pl(A, {"users": {A: 100}})
    r.make("m.room.join_rules", A, {"join_rule": "invite"}, state_key="")
    r.make("m.room.third_party_invite", A, {"display_name": "z", "public_key": pk(IDK)},
           state_key="tok")
    signed = signedjson.sign.sign_json({"mxid": Z, "token": "tok"}, "id.example", IDK)
    inv = r.make("m.room.member", A, {"membership": "invite", "third_party_invite":
                                      {"display_name": "z", "signed": signed}},
                 state_key=Z, signer="hs7.example")
    j = r.join(Z)
    SHARED_KEYS.get("hs7.example")
    lines = []
    for eid, ev in r.events:
        if eid == inv:
            ev = json.loads(json.dumps(ev))
            ev["content"]["third_party_invite"]["display_name"] = "altered"
        lines.append(json.dumps(ev, separators=(",", ":")))
    p = import_lines(build_env, postgres, workdir, f"alt3pid{v}", lines, SHARED_KEYS)
    assert p.returncode == 0, p.stderr + p.stdout
    got = db_events(postgres, r.room_id)
    if int(v) <= 10:
        assert got.get(inv) and got.get(j), got
    else:
        assert got.get(inv) == "" and got.get(j) == "", got
