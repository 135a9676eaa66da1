# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Hand-built, signed rooms of room version 12, written from the spec
(content/rooms/v12.md, v11 redaction and event format, server-server API
"auth events selection") and the reference homeserver (Synapse:
rust/src/events/formats/v4.rs auth_event_ids, event_auth.py, state/v2.py),
independently of the module and of gen-room.

What is new in v12 and modelled here:
- the create event has no room_id; the room ID is "!" + the create event's
  ID without "$" (URL-safe unpadded base64 of its reference hash);
- no event lists the create event in auth_events (it is implied);
- additional_creators: the creators have infinite power level.
The authorization verdict of each event is the test's to state."""
import copy
import hashlib
import json

import canonicaljson
import signedjson.sign

from .builder import Keys  # noqa: F401  (re-exported)
from .vbuilder import EventKinds, b64, b64u, redact as vredact


def redact12(ev):
    """v12 keeps the redaction algorithm of v11."""
    return vredact(ev, "11")


def reference_hash12(ev):
    red = redact12(ev)
    red.pop("signatures", None)
    red.pop("unsigned", None)
    return hashlib.sha256(canonicaljson.encode_canonical_json(red)).digest()


def event_id12(ev):
    return "$" + b64u(reference_hash12(ev))


def server_of(uid):
    return uid.split(":", 1)[1]


def content_hash(ev):
    return b64(hashlib.sha256(canonicaljson.encode_canonical_json(
        {k: x for k, x in ev.items() if k not in ("hashes", "signatures", "unsigned")}
    )).digest())


def sign(ev, keys, servers):
    red = redact12(ev)
    red.pop("signatures", None)
    red.pop("unsigned", None)
    sigs = {}
    for s in servers:
        sigs.update(signedjson.sign.sign_json(dict(red), s, keys.get(s))["signatures"])
    return sigs


class V12Room(EventKinds):
    """A room of version 12. By default a line of history; goto() moves the
    tip to any event (for forks), merge() adds an event with several prev
    events and the state the test says resolution gives."""

    def __init__(self, keys, ts0=1700000000000):
        self.keys = keys
        self.ts = ts0
        self.room_id = None
        self.create_id = None
        self.events = []           # (event_id, dict), in the order made
        self.by_id = {}
        self.state = {}            # (type, sk) -> event_id, accepted events only
        self.after = {}            # event_id -> state after it
        self.before = {}           # event_id -> state before it
        self.rejected = set()
        self.last = None
        self.labels = {}

    # ------------------------------------------------------------ building
    def finish(self, ev, signers):
        ev["hashes"] = {"sha256": content_hash(ev)}
        ev["signatures"] = sign(ev, self.keys, signers)
        return ev

    def create(self, creator, additional_creators=None, extra_content=None, extra=None,
               rejected=False, label="create", ts=None):
        c = {"room_version": "12"}
        if additional_creators is not None:
            c["additional_creators"] = additional_creators
        c.update(extra_content or {})
        self.ts += 1
        ev = {"auth_events": [], "content": c, "depth": 1,
              "origin_server_ts": ts or self.ts, "prev_events": [], "sender": creator,
              "state_key": "", "type": "m.room.create"}
        ev.update(extra or {})
        self.finish(ev, [server_of(creator)])
        eid = event_id12(ev)
        if self.room_id is None:
            self.room_id = "!" + eid[1:]
            self.create_id = eid
        self._add(eid, ev, rejected, label)
        return eid

    def _add(self, eid, ev, rejected, label):
        self.events.append((eid, ev))
        self.by_id[eid] = ev
        self.labels[eid] = label or f"#{len(self.events) - 1} {ev['type']}"
        self.before[eid] = dict(self.state)
        if rejected:
            self.rejected.add(eid)
            if ev["type"] == "m.room.create":
                self.last = eid
        else:
            if "state_key" in ev:
                self.state[(ev["type"], ev["state_key"])] = eid
            self.last = eid
        self.after[eid] = dict(self.state)

    def goto(self, eid):
        """Continue from @eid (a fork): the state is the state after it."""
        self.state = dict(self.after[eid])
        self.last = eid

    def make(self, type_, sender, content, state_key=None, prev=None, auth=None, depth=None,
             ts=None, extra=None, rejected=False, signers=None, label=None, room_id=None,
             drop=()):
        if prev is None:
            prev = [self.last]
        if auth is None:
            auth = self.auth_for(type_, sender, state_key, content)
        if depth is None:
            depth = 1 + max(self.by_id[p]["depth"] for p in prev)
        if ts is None:
            self.ts += 1
            ts = self.ts
        ev = {"auth_events": list(auth), "content": content, "depth": depth,
              "origin_server_ts": ts, "prev_events": list(prev),
              "room_id": room_id or self.room_id, "sender": sender, "type": type_}
        if state_key is not None:
            ev["state_key"] = state_key
        if extra:
            ev.update(extra)
        for k in drop:
            ev.pop(k, None)
        self.finish(ev, signers or [server_of(sender)])
        eid = event_id12(ev)
        self._add(eid, ev, rejected, label)
        return eid

    def auth_for(self, type_, sender, state_key=None, content=None):
        """Auth events selection (server-server API) for v12: never the create event."""
        st = self.state
        a = []
        for k in [("m.room.power_levels", ""), ("m.room.member", sender)]:
            if k in st:
                a.append(st[k])
        if type_ == "m.room.member":
            m = (content or {}).get("membership")
            if state_key != sender and ("m.room.member", state_key) in st:
                a.append(st[("m.room.member", state_key)])
            if m in ("join", "invite", "knock") and ("m.room.join_rules", "") in st:
                a.append(st[("m.room.join_rules", "")])
            via = (content or {}).get("join_authorised_via_users_server")
            if m == "join" and via and ("m.room.member", via) in st and via != sender:
                a.append(st[("m.room.member", via)])
        return a

    def redaction(self, sender, target, **kw):
        return self.make("m.room.redaction", sender, {"redacts": target}, **kw)

    # ------------------------------------------------------------ model
    def auth_chain(self, ids):
        """Events reachable over auth_events edges, the create event being an
        implied auth event of every other event (Synapse: auth_event_ids())."""
        out, todo = set(), list(ids)
        while todo:
            e = todo.pop()
            ev = self.by_id[e]
            nxt = list(ev["auth_events"])
            if ev["type"] != "m.room.create":
                nxt.append("$" + ev["room_id"][1:])
            for a in nxt:
                if a not in out:
                    out.add(a)
                    todo.append(a)
        return out

    def lines(self, ids=None):
        ids = ids if ids is not None else [e for e, _ in self.events]
        return [json.dumps(self.by_id[e], separators=(",", ":"), ensure_ascii=False)
                for e in ids]

    def write(self, path, ids=None):
        with open(path, "w") as f:
            for line in self.lines(ids):
                f.write(line + "\n")


def copy_event(ev):
    return copy.deepcopy(ev)


# One signing key per server for every test of a session (they share one
# database, whose key table holds one key per server and key ID).
SHARED_KEYS = Keys()
