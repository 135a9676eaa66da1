# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Third-party invites on top of the v2-v11 model (mxftest/stateres_v2_11.py),
written from the spec (content/rooms/fragments/v*-auth-rules.md: membership
invite with content.third_party_invite, rule "If type is
m.room.third_party_invite") and Synapse (synapse/event_auth.py
_verify_third_party_invite, get_public_keys, auth_types_for_event), not from
the module.

any_signature=True follows the spec ("If any signature in signed matches any
public key"); False follows Synapse, which per public key tries only the first
ed25519 signature of the signed block and moves to the next public key when
it does not verify (SYN)."""
import signedjson.key
import signedjson.sign
from unpaddedbase64 import decode_base64

from .stateres12 import CREATE, domain
from .stateres_v2_11 import ModelV

TPI = "m.room.third_party_invite"


def public_keys(tev):
    """(SYN get_public_keys) public_key, then the entries of public_keys."""
    c = tev["content"]
    out = []
    if "public_key" in c:
        out.append(c["public_key"])
    pks = c.get("public_keys", [])
    if isinstance(pks, list):
        out += [o.get("public_key") for o in pks if isinstance(o, dict)]
    return out


def verifies(signed, server, key_name, pk):
    try:
        vk = signedjson.key.decode_verify_key_bytes(key_name, decode_base64(pk))
        signedjson.sign.verify_signed_json(dict(signed), server, vk)
        return True
    except Exception:
        return False


class ModelTPI(ModelV):
    any_signature = True

    def auth_types(self, ev):
        t = super().auth_types(ev)
        if ev["type"] == "m.room.member" and ev["content"].get("membership") == "invite":
            tpi = ev["content"].get("third_party_invite")
            if isinstance(tpi, dict) and isinstance(tpi.get("signed"), dict) and \
                    isinstance(tpi["signed"].get("token"), str):
                t.add((TPI, tpi["signed"]["token"]))
        return t

    def allowed(self, eid, st):
        ev = self.E[eid]
        if ev["type"] == TPI and "state_key" in ev:
            create = self.ev_of(st, CREATE)
            if create is None:
                return False
            if create["content"].get("m.federate", True) is False and \
                    domain(ev["sender"]) != domain(create["sender"]):
                return False
            if self.membership(st, ev["sender"]) != "join":
                return False
            return self.level(ev["sender"], st) >= self.named(st, "invite", 0)
        return super().allowed(eid, st)

    def member_ok(self, eid, ev, st, create):
        c = ev["content"]
        if "state_key" in ev and c.get("membership") == "invite" and "third_party_invite" in c:
            return self.tpi_ok(ev, st)
        return super().member_ok(eid, ev, st, create)

    def tpi_ok(self, ev, st):
        target = ev["state_key"]
        if self.membership(st, target) == "ban":
            return False
        tpi = ev["content"]["third_party_invite"]
        if not isinstance(tpi, dict) or not isinstance(tpi.get("signed"), dict):
            return False
        signed = tpi["signed"]
        if any(k not in signed for k in ("mxid", "token", "signatures")):
            return False
        if signed["mxid"] != target or not isinstance(signed["token"], str):
            return False
        tev = self.ev_of(st, (TPI, signed["token"]))
        if tev is None or tev["sender"] != ev["sender"]:
            return False
        sigs = signed["signatures"]
        if not isinstance(sigs, dict):
            return False
        for pk in public_keys(tev):
            if not isinstance(pk, str):
                continue
            for server, block in sigs.items():
                if not isinstance(block, dict):
                    continue
                first = True
                for kn in block:
                    if not kn.startswith("ed25519:"):
                        continue
                    if verifies(signed, server, kn, pk):
                        return True
                    if not self.any_signature and first:
                        break
                    first = False
                else:
                    continue
                if not self.any_signature:
                    break
        return False
