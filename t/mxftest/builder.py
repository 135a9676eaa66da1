"""Hand-built, signed rooms of room version 10, independent of matrix-fed
gen-room: content hashes, the redaction algorithm and event IDs (the v4+
reference hash of the redacted event, URL-safe unpadded base64) computed here
as the spec says, each event signed by its sender's server."""
import base64
import hashlib
import json
import os

import canonicaljson
import signedjson.key
import signedjson.sign


_KEEP_TOP = {"event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
             "signatures", "depth", "prev_events", "auth_events", "origin_server_ts",
             "origin", "membership", "prev_state"}
_KEEP_CONTENT = {
    "m.room.member": {"membership", "join_authorised_via_users_server"},
    "m.room.create": {"creator"},
    "m.room.join_rules": {"join_rule", "allow"},
    "m.room.power_levels": {"ban", "events", "events_default", "kick", "redact",
                            "state_default", "users", "users_default"},
    "m.room.history_visibility": {"history_visibility"},
}


def redact_v10(ev):
    out = {k: v for k, v in ev.items() if k in _KEEP_TOP}
    keep = _KEEP_CONTENT.get(ev["type"], set())
    if ev["type"] == "m.room.create":
        out["content"] = {k: v for k, v in ev["content"].items() if k in keep}
    else:
        out["content"] = {k: v for k, v in ev.get("content", {}).items() if k in keep}
    return out


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64(b):
    return base64.b64encode(b).rstrip(b"=").decode()


class Keys:
    """Fresh signing keys per server, and the self-signed /_matrix/key/v2/server
    responses (for matrix-fed import --keys)."""
    def __init__(self):
        self.keys = {}

    def get(self, server):
        if server not in self.keys:
            self.keys[server] = signedjson.key.generate_signing_key("rb")
        return self.keys[server]

    def write_responses(self, path):
        out = []
        for server, key in self.keys.items():
            vk = signedjson.key.encode_verify_key_base64(signedjson.key.get_verify_key(key))
            resp = {"server_name": server, "valid_until_ts": 4102444800000,
                    "old_verify_keys": {}, "verify_keys": {f"ed25519:{key.version}": {"key": vk}}}
            out.append(signedjson.sign.sign_json(resp, server, key))
        with open(path, "w") as f:
            json.dump({"server_keys": out}, f)


def event_id_of(ev):
    """The v4+ event ID of a PDU (reference hash of its redacted form)."""
    red = redact_v10(ev)
    red.pop("signatures", None)
    red.pop("unsigned", None)
    return "$" + b64u(hashlib.sha256(canonicaljson.encode_canonical_json(red)).digest())


class RoomBuilder:
    def __init__(self, room_id="!built:hs1.example", ts0=1600000000000, keys=None):
        self.room_id = room_id
        self.keys = keys or Keys()
        self.events = []          # (event_id, dict)
        self.by_id = {}
        self.ts = ts0
        self.state = {}           # (type, state_key) -> event_id

    def make(self, type_, sender, content, prev, auth, depth=None, state_key=None, ts=None):
        if depth is None:
            depth = 1 + max([self.by_id[p]["depth"] for p in prev] or [0])
        if ts is None:
            self.ts += 1
            ts = self.ts
        server = sender.split(":", 1)[1]
        ev = {"auth_events": list(auth), "content": content, "depth": depth,
              "origin": server, "origin_server_ts": ts, "prev_events": list(prev),
              "room_id": self.room_id, "sender": sender, "type": type_}
        if state_key is not None:
            ev["state_key"] = state_key
        h = hashlib.sha256(canonicaljson.encode_canonical_json(ev)).digest()
        ev["hashes"] = {"sha256": b64(h)}
        red = redact_v10(ev)
        sig = signedjson.sign.sign_json(dict(red), server, self.keys.get(server))["signatures"]
        ev["signatures"] = sig
        red = redact_v10(ev)
        red.pop("signatures", None)
        red.pop("unsigned", None)
        eid = "$" + b64u(hashlib.sha256(canonicaljson.encode_canonical_json(red)).digest())
        self.events.append((eid, ev))
        self.by_id[eid] = ev
        if state_key is not None:
            self.state[(type_, state_key)] = eid
        return eid

    def auth_for(self, type_, sender, state_key=None, membership=None):
        a = [self.state[("m.room.create", "")]]
        if ("m.room.power_levels", "") in self.state:
            a.append(self.state[("m.room.power_levels", "")])
        if ("m.room.member", sender) in self.state:
            a.append(self.state[("m.room.member", sender)])
        if type_ == "m.room.member":
            if state_key != sender and ("m.room.member", state_key) in self.state:
                a.append(self.state[("m.room.member", state_key)])
            if membership in ("join", "invite") and ("m.room.join_rules", "") in self.state:
                a.append(self.state[("m.room.join_rules", "")])
        return a

    def write(self, path):
        with open(path, "w") as f:
            for _, ev in self.events:
                f.write(json.dumps(ev, separators=(",", ":")) + "\n")


def basic_room(b, admin="@admin:hs1.example", join_rule="public", hv="shared", prev=None):
    """create, admin join, power levels, join rules, history visibility; returns last id."""
    c = b.make("m.room.create", admin, {"creator": admin, "room_version": "10"}, [], [],
               state_key="")
    j = b.make("m.room.member", admin, {"membership": "join"}, [c], [c], state_key=admin)
    pl = b.make("m.room.power_levels", admin,
                {"users": {admin: 100}, "users_default": 0, "events_default": 0,
                 "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": 0,
                 "events": {}}, [j], [c, j], state_key="")
    jr = b.make("m.room.join_rules", admin, {"join_rule": join_rule}, [pl], [c, pl, j],
                state_key="")
    h = b.make("m.room.history_visibility", admin, {"history_visibility": hv}, [jr],
               [c, pl, j], state_key="")
    return h
