# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""An independent model of the authorization rules of room versions 2-11 and
of state resolution v2, written from the spec (content/rooms/v1.md .. v11.md,
"Authorization rules", and rooms/v2.md "State resolution") and Synapse
(synapse/event_auth.py, synapse/state/v2.py) without reading the module.

Built on mxftest/stateres12.py (same state resolution skeleton, v21=False).
Scope: the event kinds the random rooms of test_9xx_random_forks_v2_11 make
(no third-party invites, no m.federate false, redactions only of messages).
Where the spec leaves a point open or Synapse reads it its own way, Synapse's
reading is taken and marked (SYN)."""
from .stateres12 import Model, CREATE, PL, JR, domain
from .vbuilder import redact as vredact


def to_int(v):
    """(SYN) what Synapse's int() accepts for pre-v10 power levels."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        return int(v)
    raise ValueError(v)


def int_ok(v):
    try:
        to_int(v)
        return True
    except (ValueError, TypeError):
        return False


def valid_user_id(u):
    return isinstance(u, str) and u.startswith("@") and ":" in u


class ModelV(Model):
    def __init__(self, events, order, version):
        super().__init__(events, order, version=str(version))
        self.v = int(version)
        assert 2 <= self.v <= 11
        self.v21 = False                    # state resolution v2
        self.redacted = set()               # targets of applied redactions so far

    def redaction_applies(self, eid):
        """Whether the accepted redaction @eid takes effect (README; Synapse's
        recheck_redaction: from v3 on only by the redact level or the target's
        sender's server - the random rooms use the latter only)."""
        ev = self.E[eid]
        t = ev.get("redacts") if self.v < 11 else ev["content"].get("redacts")
        if not isinstance(t, str) or t not in self.E:
            return None
        tev = self.E[t]
        if tev["type"] == "m.room.create":
            return None
        if self.v <= 2 or domain(ev["sender"]) == domain(tev["sender"]):
            return t
        lv = self.level(ev["sender"], self.before[eid])
        return t if lv >= self.named(self.before[eid], "redact", 50) else None

    # ------------------------------------------------------------ helpers
    def auth_ids(self, eid):
        return list(self.E[eid]["auth_events"])       # v2-11: the create event is listed

    def creator(self, create):
        if self.v >= 11:                                # v11: implicit room creator
            return create["sender"]
        return create["content"].get("creator")

    def level(self, user, st):
        pl = self.ev_of(st, PL)
        if pl is not None:
            users = pl["content"].get("users", {})
            lv = users.get(user)
            if lv is None:
                lv = pl["content"].get("users_default", 0)
            return to_int(lv)
        create = self.ev_of(st, CREATE)
        if create is not None and self.creator(create) == user:
            return 100
        return 0

    def named(self, st, name, default):
        pl = self.ev_of(st, PL)
        if pl is None:
            return default
        lv = pl["content"].get(name)
        return default if lv is None else to_int(lv)

    def auth_types(self, ev):
        if ev["type"] == "m.room.create":
            return set()
        t = {CREATE, PL, ("m.room.member", ev["sender"])}
        if ev["type"] == "m.room.member":
            m = ev["content"].get("membership")
            t.add(("m.room.member", ev.get("state_key")))
            if m in ("join", "invite", "knock"):
                t.add(JR)
            via = ev["content"].get("join_authorised_via_users_server")
            if self.v >= 8 and m == "join" and via is not None:      # restricted_join_rule
                t.add(("m.room.member", via))
        return t

    # ------------------------------------------------------------ auth rules
    def allowed(self, eid, st):
        ev = self.E[eid]
        t = ev["type"]
        if t == "m.room.create":
            if ev["prev_events"]:
                return False
            if domain(ev["room_id"]) != domain(ev["sender"]):
                return False
            if self.v <= 10 and "creator" not in ev["content"]:
                return False
            return True
        create = self.ev_of(st, CREATE)
        if create is None:
            return False
        if create["content"].get("m.federate", True) is False and \
                domain(ev["sender"]) != domain(create["sender"]):
            return False
        sender = ev["sender"]
        if t == "m.room.aliases" and self.v <= 5:       # v1-v5 special case
            if "state_key" not in ev:
                return False
            return ev["state_key"] == domain(sender)
        if t == "m.room.member":
            return self.member_ok(eid, ev, st, create)
        if self.membership(st, sender) != "join":
            return False
        pl = self.ev_of(st, PL)
        pc = pl["content"] if pl else {}
        need = pc.get("events", {}).get(t)
        if need is None:
            # (SYN) no power levels event: state_default 50
            need = pc.get("state_default", 50) if "state_key" in ev else \
                pc.get("events_default", 0)
        if to_int(need) > self.level(sender, st):
            return False
        sk = ev.get("state_key")
        if isinstance(sk, str) and sk.startswith("@") and sk != sender:
            return False
        if t == "m.room.power_levels":
            return self.pl_ok(ev, st)
        if t == "m.room.redaction" and self.v <= 2:
            if self.level(sender, st) >= self.named(st, "redact", 50):
                return True
            red = ev.get("redacts")
            return isinstance(red, str) and domain(eid) == domain(red)
        return True

    def member_ok(self, eid, ev, st, create):
        c = ev["content"]
        if "state_key" not in ev or "membership" not in c:
            return False
        m = c["membership"]
        sender, target = ev["sender"], ev["state_key"]
        if m == "join" and len(ev["prev_events"]) == 1 and \
                ev["prev_events"][0] == st.get(CREATE) and self.creator(create) == target:
            return True
        smem = self.membership(st, sender)
        tmem = self.membership(st, target)
        jr_ev = self.ev_of(st, JR)
        jr = jr_ev["content"].get("join_rule", "invite") if jr_ev else "invite"  # (SYN)
        slevel = self.level(sender, st)
        tlevel = self.level(target, st)
        knock_ok = self.v >= 7
        if m not in ("join", "knock"):
            if (smem == "invite" or (knock_ok and smem == "knock")) and m == "leave" \
                    and target == sender:
                return True
            if smem != "join":
                return False
        if m == "invite":
            if tmem in ("join", "ban"):
                return False
            return slevel >= self.named(st, "invite", 0)
        if m == "join":
            if sender != target or tmem == "ban":
                return False
            if jr == "public":
                return True
            if (self.v >= 8 and jr == "restricted") or (self.v >= 10 and jr == "knock_restricted"):
                if smem in ("join", "invite"):
                    return True
                via = c.get("join_authorised_via_users_server")
                if via is None or self.membership(st, via) != "join":
                    return False
                return self.level(via, st) >= self.named(st, "invite", 0)
            if jr == "invite" or (knock_ok and jr == "knock") or \
                    (self.v >= 10 and jr == "knock_restricted"):
                return smem in ("join", "invite")
            return False
        if m == "leave":
            if tmem == "ban" and slevel < self.named(st, "ban", 50):
                return False
            if target != sender:
                if slevel < self.named(st, "kick", 50) or slevel <= tlevel:
                    return False
            return True
        if m == "ban":
            return slevel >= self.named(st, "ban", 50) and slevel > tlevel
        if m == "knock" and knock_ok:
            if jr != "knock" and not (self.v >= 10 and jr == "knock_restricted"):
                return False
            if sender != target:
                return False
            return tmem not in ("join", "ban") and smem != "invite"
        return False

    def pl_ok(self, ev, st):
        c = ev["content"]
        names = ("users_default", "events_default", "state_default", "ban", "redact",
                 "kick", "invite")
        users = c.get("users", {})
        if not isinstance(users, dict):
            return False
        for k, x in users.items():
            if not valid_user_id(k) or not int_ok(x):
                return False
        if self.v >= 10:                       # integer power levels
            for n in names:
                if n in c and type(c[n]) is not int:
                    return False
            for n in ("events", "notifications", "users"):
                if n in c and not (isinstance(c[n], dict) and
                                   all(type(x) is int for x in c[n].values())):
                    return False
        old = self.ev_of(st, PL)
        if old is None:
            return True
        oc = old["content"]
        me = self.level(ev["sender"], st)
        checks = [(n, None) for n in names]
        checks += [(u, "users") for u in set(oc.get("users", {})) | set(users)]
        checks += [(t, "events") for t in set(oc.get("events", {})) | set(c.get("events", {}))]
        if self.v >= 6:                        # notifications limited (MSC2209)
            checks += [(t, "notifications") for t in
                       set(oc.get("notifications", {})) | set(c.get("notifications", {}))]
        for k, d in checks:
            o, n = (oc, c) if d is None else (oc.get(d, {}), c.get(d, {}))
            ol = to_int(o[k]) if k in o else None
            nl = to_int(n[k]) if k in n else None
            if ol is not None and nl is not None and ol == nl:
                continue
            if d == "users" and k != ev["sender"] and ol == me:
                return False
            if (ol is not None and ol > me) or (nl is not None and nl > me):
                return False
        return True

    # ------------------------------------------------------------ state resolution
    def power_of_sender(self, eid):
        ev = self.E[eid]
        auth = {}
        for a in self.auth_ids(eid):
            if a in self.E:
                auth.setdefault(self.key(a), a)
        pl = self.ev_of(auth, PL)
        if pl is None:
            create = self.ev_of(auth, CREATE)
            if create is not None and self.creator(create) == ev["sender"]:
                return 100
            return 0
        users = pl["content"].get("users", {})
        lv = users.get(ev["sender"])
        if lv is None:
            lv = pl["content"].get("users_default", 0)
        return to_int(lv)

    # ------------------------------------------------------------ the room
    def add(self, eid, before=None):
        super().add(eid, before)
        if self.E[eid]["type"] == "m.room.redaction" and eid not in self.rejected:
            t = self.redaction_applies(eid)
            if t is not None:
                self.redacted.add(t)

    def check(self, eid, before):
        """Auth and state events that an applied redaction before @eid (input
        order) redacted are read redacted (README; Synapse reads auth events
        with EventRedactBehaviour.redact, state resolution as_is)."""
        if not self.redacted:
            return self._check(eid, before)
        real = self.E
        view = dict(real)
        for t in self.redacted:
            if t != eid:
                view[t] = vredact(real[t], str(self.v))
        self.E = view
        try:
            return self._check(eid, before)
        finally:
            self.E = real

    def _check(self, eid, before):
        ev = self.E[eid]
        if ev["type"] == "m.room.create":
            return None if self.allowed(eid, {}) else "create"
        auth = {}
        types = self.auth_types(ev)
        for a in ev["auth_events"]:
            if a not in self.E:
                return "unknown auth event"
            k = self.key(a)
            if self.E[a].get("room_id") != ev.get("room_id"):
                return "auth of other room"
            if a in self.rejected:
                return "rejected auth"
            if k in auth:
                return "duplicate auth"
            if k not in types:
                return "unexpected auth"
            auth[k] = a
        if CREATE not in auth:
            return "no create in auth events"
        if not self.allowed(eid, auth):
            return "against auth events"
        if not self.allowed(eid, before):
            return "against state before"
        return None
