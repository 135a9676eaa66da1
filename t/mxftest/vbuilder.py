# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Hand-built, signed rooms of room versions 1-11 written from
the spec's room version pages independently of the module: the redaction
algorithm of each version, content hashes, event IDs (v1/v2 carried
"$x:server", v3 standard base64, v4+ URL-safe base64 of the reference hash),
v1/v2 reference-hash pairs in prev_events/auth_events, signatures of the
sender's server (and the event ID's server in v1/v2), and a simple model of
the room: the state after each event on a line of history, the
authorization verdict being the test's to state."""
import base64
import copy
import hashlib
import json

import canonicaljson
import signedjson.sign

from .builder import Keys  # noqa: F401  (re-exported)

TOP_ALL = ["event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
           "signatures", "depth", "prev_events", "auth_events", "origin_server_ts"]
TOP_PRE11 = ["origin", "membership", "prev_state"]


def vnum(version):
    return int(version)


def redact(ev, version):
    """The redaction algorithm of @version (spec, room version pages)."""
    v = vnum(version)
    keep_top = TOP_ALL + (TOP_PRE11 if v < 11 else [])
    out = {k: copy.deepcopy(ev[k]) for k in keep_top if k in ev}
    t = ev.get("type")
    c = ev.get("content", {})
    keep = []
    if t == "m.room.member":
        keep = ["membership"] + (["join_authorised_via_users_server"] if v >= 9 else [])
    elif t == "m.room.create":
        keep = None if v >= 11 else ["creator"]
    elif t == "m.room.join_rules":
        keep = ["join_rule"] + (["allow"] if v >= 8 else [])
    elif t == "m.room.power_levels":
        keep = ["ban", "events", "events_default", "kick", "redact", "state_default", "users",
                "users_default"] + (["invite"] if v >= 11 else [])
    elif t == "m.room.aliases":
        keep = ["aliases"] if v <= 5 else []
    elif t == "m.room.history_visibility":
        keep = ["history_visibility"]
    elif t == "m.room.redaction":
        keep = ["redacts"] if v >= 11 else []
    if "content" in ev:
        if keep is None:
            out["content"] = copy.deepcopy(c)
        else:
            out["content"] = {k: copy.deepcopy(c[k]) for k in keep if k in c}
            if v >= 11 and t == "m.room.member" and isinstance(c.get("third_party_invite"), dict):
                tpi = c["third_party_invite"]
                out["content"]["third_party_invite"] = (
                    {"signed": copy.deepcopy(tpi["signed"])} if "signed" in tpi else {})
    return out


def b64(b):
    return base64.b64encode(b).rstrip(b"=").decode()


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def reference_hash(ev, version):
    red = redact(ev, version)
    red.pop("signatures", None)
    red.pop("unsigned", None)
    return hashlib.sha256(canonicaljson.encode_canonical_json(red)).digest()


def server_of(uid):
    return uid.split(":", 1)[1]


class EventKinds:
    """The event kinds the hand-built rooms use most, on top of make()."""

    def join(self, user, **kw):
        return self.make("m.room.member", user, dict({"membership": "join"}, **kw.pop("c", {})),
                         state_key=user, **kw)

    def member(self, sender, target, membership, **kw):
        c = dict({"membership": membership}, **kw.pop("c", {}))
        return self.make("m.room.member", sender, c, state_key=target, **kw)

    def msg(self, sender, body, **kw):
        return self.make("m.room.message", sender, {"msgtype": "m.text", "body": body}, **kw)

    def pl(self, sender, content, **kw):
        return self.make("m.room.power_levels", sender, content, state_key="", **kw)


class VRoom(EventKinds):
    """A line of history in one room of room version @version."""

    def __init__(self, version, keys, room_id, ts0=1600000000000):
        self.version = str(version)
        self.v = vnum(version)
        self.keys = keys
        self.room_id = room_id
        self.ts = ts0
        self.events = []           # (event_id, dict)
        self.by_id = {}
        self.state = {}            # (type, sk) -> event_id (accepted events only)
        self.after = {}            # event_id -> state dict after it
        self.rejected = set()
        self.n = 0
        self.last = None

    # ------------------------------------------------------------ building
    pair_hash = None     # v1/v2: what the reference pairs carry (None: the real hash)

    def _ref(self, eid):
        if self.v <= 2:
            if self.pair_hash is not None:
                return [eid, self.pair_hash]
            return [eid, {"sha256": b64(reference_hash(self.by_id[eid], self.version))}]
        return eid

    def make(self, type_, sender, content, state_key=None, prev=None, auth=None, depth=None,
             ts=None, extra=None, rejected=False, signer=None, sign_extra=()):
        """Appends an event. @rejected: the test says the auth rules reject it (it
        then does not change the modelled state). prev defaults to the last event;
        auth to the spec's auth events selection from the modelled state."""
        if prev is None:
            prev = [self.last] if self.last else []
        if auth is None:
            auth = self.auth_for(type_, sender, state_key, content)
        if depth is None:
            depth = 1 + max([self.by_id[p]["depth"] for p in prev] or [0])
        if ts is None:
            self.ts += 1
            ts = self.ts
        server = signer or server_of(sender)
        ev = {"auth_events": [self._ref(a) for a in auth], "content": content, "depth": depth,
              "origin": server_of(sender), "origin_server_ts": ts,
              "prev_events": [self._ref(p) for p in prev], "room_id": self.room_id,
              "sender": sender, "type": type_}
        if state_key is not None:
            ev["state_key"] = state_key
        if extra:
            ev.update(extra)
        if self.v <= 2 and "event_id" in (extra or {}):
            pass
        elif self.v <= 2:
            self.n += 1
            tag = hashlib.sha256(self.room_id.encode()).hexdigest()[:10]
            ev["event_id"] = f"${tag}e{self.n}:{server_of(sender)}"
        ev["hashes"] = {"sha256": b64(hashlib.sha256(
            canonicaljson.encode_canonical_json(
                {k: x for k, x in ev.items()
                 if k not in ("hashes", "signatures", "unsigned")})).digest())}
        red = redact(ev, self.version)
        red.pop("signatures", None)
        red.pop("unsigned", None)
        sigs = {}
        for s in [server] + list(sign_extra):
            sigs.update(signedjson.sign.sign_json(dict(red), s, self.keys.get(s))["signatures"])
        if self.v <= 2:
            eid_server = ev["event_id"].split(":", 1)[1]
            if eid_server not in sigs:
                sigs.update(signedjson.sign.sign_json(dict(red), eid_server,
                                                      self.keys.get(eid_server))["signatures"])
        ev["signatures"] = sigs
        if self.v <= 2:
            eid = ev["event_id"]
        else:
            h = reference_hash(ev, self.version)
            eid = "$" + (b64(h) if self.v == 3 else b64u(h))
        self.events.append((eid, ev))
        self.by_id[eid] = ev
        if rejected:
            self.rejected.add(eid)
        else:
            if state_key is not None:
                self.state[(type_, state_key)] = eid
            self.last = eid
        self.after[eid] = dict(self.state)
        return eid

    def auth_for(self, type_, sender, state_key=None, content=None):
        if type_ == "m.room.create":
            return []
        st = self.state
        a = [st[("m.room.create", "")]]
        for k in [("m.room.power_levels", ""), ("m.room.member", sender)]:
            if k in st:
                a.append(st[k])
        if type_ == "m.room.member":
            m = (content or {}).get("membership")
            if state_key != sender and ("m.room.member", state_key) in st:
                a.append(st[("m.room.member", state_key)])
            if m in ("join", "invite", "knock") and ("m.room.join_rules", "") in st:
                a.append(st[("m.room.join_rules", "")])
            if m == "invite" and "third_party_invite" in (content or {}):
                tok = content["third_party_invite"]["signed"]["token"]
                if ("m.room.third_party_invite", tok) in st:
                    a.append(st[("m.room.third_party_invite", tok)])
            via = (content or {}).get("join_authorised_via_users_server")
            if m == "join" and via and self.v >= 8 and ("m.room.member", via) in st \
                    and ("m.room.member", via) != ("m.room.member", sender):
                a.append(st[("m.room.member", via)])
        return a

    def create(self, creator, extra_content=None):
        c = {"room_version": self.version}
        if self.v <= 10:
            c["creator"] = creator
        c.update(extra_content or {})
        return self.make("m.room.create", creator, c, state_key="")

    def redaction(self, sender, target, **kw):
        content = dict(kw.pop("c", {}))
        extra = dict(kw.pop("extra", {}) or {})
        if self.v >= 11:
            content.setdefault("redacts", target)
        else:
            extra["redacts"] = target
        return self.make("m.room.redaction", sender, content, extra=extra, **kw)

    def write(self, path, lines=None):
        with open(path, "w") as f:
            for _, ev in self.events:
                f.write(json.dumps(ev, separators=(",", ":"), ensure_ascii=False) + "\n")
