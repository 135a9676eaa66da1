# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""An independent model of room version 12 authorization and state
resolution v2.1 (and v2 for comparison), written from
content/rooms/v12.md and Synapse (synapse/event_auth.py, synapse/state/v2.py)
without reading the module: for rooms of the event kinds gen-room makes
(no third-party invites). Computes, for every event, the state before it
and whether it is rejected.

Where Synapse and the spec text differ, Synapse's reading is taken and
marked (SYN)."""
import itertools

INF = 2 ** 53            # Synapse CREATOR_POWER_LEVEL
CREATE = ("m.room.create", "")
PL = ("m.room.power_levels", "")
JR = ("m.room.join_rules", "")


def domain(uid):
    return uid.split(":", 1)[1]


def is_int(v):
    return type(v) is int


class Model:
    def __init__(self, events, order, version="12", strict_x=False):
        """@events: event_id -> PDU dict; @order: event IDs, prev events first."""
        self.E = events
        self.order = order
        self.v21 = version == "12"
        self.strict_x = strict_x      # X enlarged by whole auth chains (spec) not walks (SYN)
        self.rejected = {}
        self.before = {}
        self.after = {}
        self.create_id = next((e for e in order if events[e]["type"] == "m.room.create"), None)

    # ------------------------------------------------------------------ helpers
    def key(self, eid):
        ev = self.E[eid]
        return (ev["type"], ev.get("state_key"))

    def auth_ids(self, eid):
        ev = self.E[eid]
        a = list(ev["auth_events"])
        if ev["type"] != "m.room.create" or ev.get("state_key") != "":
            if "room_id" in ev:
                a.append("$" + ev["room_id"][1:])
        return a

    def creators(self, create):
        c = {create["sender"]}
        ac = create["content"].get("additional_creators")
        if isinstance(ac, list):
            c |= {x for x in ac if isinstance(x, str)}
        return c

    def ev_of(self, st, k):
        e = st.get(k)
        return self.E[e] if e is not None else None

    def level(self, user, st):
        create = self.ev_of(st, CREATE)
        if user in self.creators(create):
            return INF
        pl = self.ev_of(st, PL)
        if pl is None:
            return 0
        users = pl["content"].get("users", {})
        if user in users:
            return users[user]
        return pl["content"].get("users_default", 0)

    def named(self, st, name, default):
        pl = self.ev_of(st, PL)
        if pl is None:
            return default
        return pl["content"].get(name, default)

    def membership(self, st, user):
        m = self.ev_of(st, ("m.room.member", user))
        return m["content"].get("membership") if m else None

    def auth_types(self, ev):
        t = {CREATE, PL, ("m.room.member", ev["sender"])}
        if ev["type"] == "m.room.member":
            m = ev["content"].get("membership")
            t.add(("m.room.member", ev.get("state_key")))
            if m in ("join", "invite", "knock"):
                t.add(JR)
            if m == "invite" and isinstance(ev["content"].get("third_party_invite"), dict):
                tok = ev["content"]["third_party_invite"].get("signed", {}).get("token")
                if tok is not None:
                    t.add(("m.room.third_party_invite", tok))
            via = ev["content"].get("join_authorised_via_users_server")
            if m == "join" and via is not None:
                t.add(("m.room.member", via))
        return t

    # ------------------------------------------------------------------ auth rules
    def allowed(self, eid, st):
        """The v12 rules from rule 4 on, against state @st (key -> event ID)."""
        ev = self.E[eid]
        t = ev["type"]
        if t == "m.room.create":
            return not ev["prev_events"] and "room_id" not in ev
        create = self.ev_of(st, CREATE)
        if create is None:
            return False
        if create["content"].get("m.federate", True) is False and \
                domain(ev["sender"]) != domain(create["sender"]):
            return False
        sender = ev["sender"]
        if t == "m.room.member":
            return self.member_ok(eid, ev, st, create)
        if self.membership(st, sender) != "join":
            return False
        if t == "m.room.third_party_invite":
            return self.level(sender, st) >= self.named(st, "invite", 0)
        pl = self.ev_of(st, PL)
        pc = pl["content"] if pl else {}
        need = pc.get("events", {}).get(t)
        if need is None:
            need = pc.get("state_default", 50) if "state_key" in ev else pc.get("events_default", 0)
        if need > self.level(sender, st):
            return False
        sk = ev.get("state_key")
        if isinstance(sk, str) and sk.startswith("@") and sk != sender:
            return False
        if t == "m.room.power_levels":
            return self.pl_ok(ev, st, create)
        return True

    def member_ok(self, eid, ev, st, create):
        c = ev["content"]
        if "state_key" not in ev or "membership" not in c:
            return False
        m = c["membership"]
        sender, target = ev["sender"], ev["state_key"]
        smem = self.membership(st, sender)
        tmem = self.membership(st, target)
        jr_ev = self.ev_of(st, JR)
        jr = jr_ev["content"].get("join_rule", "invite") if jr_ev else "invite"   # (SYN)
        slevel = self.level(sender, st)
        tlevel = self.level(target, st)
        if m == "join":
            if ev["prev_events"] == [self.create_id] and target == create["sender"]:
                return True
            if sender != target:
                return False
            if smem == "ban":
                return False
            if jr in ("invite", "knock"):
                return smem in ("invite", "join")
            if jr in ("restricted", "knock_restricted"):
                if smem in ("join", "invite"):
                    return True
                via = c.get("join_authorised_via_users_server")
                if via is None or self.membership(st, via) != "join":
                    return False
                return self.level(via, st) >= self.named(st, "invite", 0)
            return jr == "public"
        if m == "invite":
            if "third_party_invite" in c:
                return False           # not modelled
            if smem != "join":
                return False
            if tmem in ("join", "ban"):
                return False
            return slevel >= self.named(st, "invite", 0)
        if m == "leave":
            if sender == target:
                return smem in ("invite", "join", "knock")
            if smem != "join":
                return False
            if tmem == "ban" and slevel < self.named(st, "ban", 50):
                return False
            return slevel >= self.named(st, "kick", 50) and tlevel < slevel
        if m == "ban":
            if smem != "join":
                return False
            return slevel >= self.named(st, "ban", 50) and tlevel < slevel
        if m == "knock":
            if jr not in ("knock", "knock_restricted") or sender != target:
                return False
            return smem not in ("ban", "invite", "join")
        return False

    def pl_ok(self, ev, st, create):
        c = ev["content"]
        names = ("users_default", "events_default", "state_default", "ban", "redact",
                 "kick", "invite")
        for n in names:
            if n in c and not is_int(c[n]):
                return False
        for n in ("events", "notifications"):
            if n in c and not (isinstance(c[n], dict) and all(is_int(x) for x in c[n].values())):
                return False
        users = c.get("users", {})
        if not isinstance(users, dict) or not all(
                isinstance(k, str) and k.startswith("@") and ":" in k and is_int(v)
                for k, v in users.items()):
            return False
        if self.creators(create) & set(users):
            return False
        old = self.ev_of(st, PL)
        if old is None:
            return True
        oc = old["content"]
        me = self.level(ev["sender"], st)
        defaults = {"users_default": 0, "events_default": 0, "state_default": 50,
                    "ban": 50, "redact": 50, "kick": 50, "invite": 0}
        for n in names:
            if (n in oc) != (n in c) or oc.get(n) != c.get(n):
                if n in oc and oc[n] > me:
                    return False
                if n in c and c[n] > me:
                    return False
        for n in ("events", "notifications"):
            o, nw = oc.get(n, {}), c.get(n, {})
            for k in set(o) | set(nw):
                if k in o and (k not in nw or nw[k] != o[k]) and o[k] > me:
                    return False
                if k in nw and (k not in o or nw[k] != o[k]) and nw[k] > me:
                    return False
        ou = oc.get("users", {})
        for k in set(ou) | set(users):
            changed = (k in ou) != (k in users) or ou.get(k) != users.get(k)
            if not changed:
                continue
            if k in ou and k != ev["sender"] and ou[k] >= me:
                return False
            if k in users and users[k] > me:
                return False
        return True

    # ------------------------------------------------------------------ state resolution
    def chain(self, ids, include_self=True):
        out, todo = set(ids) if include_self else set(), list(ids)
        seen = set(ids)
        while todo:
            e = todo.pop()
            for a in self.auth_ids(e):
                if a in self.E and a not in out:
                    out.add(a)
                if a in self.E and a not in seen:
                    seen.add(a)
                    todo.append(a)
        return out

    def power_of_sender(self, eid):
        ev = self.E[eid]
        auth = {self.key(a): a for a in self.auth_ids(eid) if a in self.E}
        create = self.ev_of(auth, CREATE)
        if create is not None and ev["sender"] in self.creators(create):
            return INF
        pl = self.ev_of(auth, PL)
        if pl is None:
            return 0
        users = pl["content"].get("users", {})
        return users.get(ev["sender"], pl["content"].get("users_default", 0))

    def is_power(self, eid):
        ev = self.E[eid]
        k = self.key(eid)
        if k in (PL, JR, CREATE):
            return True
        if ev["type"] == "m.room.member" and ev["content"].get("membership") in ("leave", "ban"):
            return ev["sender"] != ev.get("state_key")
        return False

    def iac(self, ids, base):
        res = dict(base)
        for eid in ids:
            ev = self.E[eid]
            auth = {}
            for a in self.auth_ids(eid):
                if a in self.E and a not in self.rejected:
                    auth[self.key(a)] = a
            for k in self.auth_types(ev):
                if k in res and res[k] not in self.rejected:
                    auth[k] = res[k]
            if eid in self.rejected:          # (SYN) previously rejected events stay out
                continue
            if self.allowed(eid, auth):
                res[self.key(eid)] = eid
        return res

    def resolve(self, states):
        keys = set(itertools.chain.from_iterable(states))
        unconf, conf = {}, {}
        for k in keys:
            vals = {s.get(k) for s in states}
            if len(vals) == 1:
                unconf[k] = vals.pop()
            else:
                vals.discard(None)
                conf[k] = vals
        if not conf:
            return unconf
        conflicted = set(itertools.chain.from_iterable(conf.values()))
        chains = [self.chain(list(s.values())) for s in states]
        diff = set.union(*chains) - set.intersection(*chains)
        full = conflicted | diff
        if self.v21:
            back = self.chain(list(conflicted))          # reachable from conflicted (incl.)
            fwd = set()                                   # can reach a conflicted event
            for x in back:
                if x in conflicted or (self.chain([x], include_self=False) & conflicted):
                    fwd.add(x)
            full |= back & fwd
        full = {e for e in full if e in self.E}
        power = [e for e in full if self.is_power(e)]
        graph = {}
        if self.strict_x:
            for p in power:
                for x in ({p} | (self.chain([p], include_self=False) & full)):
                    graph.setdefault(x, set())
            for x in graph:
                graph[x] = {a for a in self.auth_ids(x) if a in graph}
        else:
            todo = list(power)
            while todo:
                x = todo.pop()
                graph.setdefault(x, set())
                for a in self.auth_ids(x):
                    if a in full:
                        if a not in graph:
                            todo.append(a)
                        graph[x].add(a)
        pw = {x: self.power_of_sender(x) for x in graph}
        sorted_power = []
        deps = {x: set(d) for x, d in graph.items()}
        while deps:
            cands = [x for x, d in deps.items() if not d]
            nxt = min(cands, key=lambda x: (-pw[x], self.E[x]["origin_server_ts"], x))
            sorted_power.append(nxt)
            del deps[nxt]
            for d in deps.values():
                d.discard(nxt)
        res = self.iac(sorted_power, {} if self.v21 else unconf)
        left = [e for e in full if e not in graph]
        plid = res.get(PL)
        mainline = []
        while plid is not None:
            mainline.append(plid)
            plid = next((a for a in self.auth_ids(plid)
                         if a in self.E and self.key(a) == PL), None)
        pos = {p: i for i, p in enumerate(mainline)}

        def mpos(e):
            cur = e
            while True:
                cur = next((a for a in self.auth_ids(cur)
                            if a in self.E and self.key(a) == PL), None)
                if cur is None:
                    return float("inf")
                if cur in pos:
                    return pos[cur]
        left.sort(key=lambda e: (-mpos(e), self.E[e]["origin_server_ts"], e))
        res = self.iac(left, res)
        res.update(unconf)
        return res

    # ------------------------------------------------------------------ the room
    def state_before_of(self, prevs):
        prevs = [p for p in prevs if p in self.after]
        if not prevs:
            return {}
        if len(prevs) == 1:
            return dict(self.after[prevs[0]])
        sts = [self.after[p] for p in prevs]
        if all(s == sts[0] for s in sts):
            return dict(sts[0])
        return self.resolve(sts)

    def add(self, eid, before=None):
        ev = self.E[eid]
        if before is None:
            before = self.state_before_of(ev["prev_events"])
        self.before[eid] = before
        reason = self.check(eid, before)
        if reason:
            self.rejected[eid] = reason
            self.after[eid] = before
        else:
            after = dict(before)
            if "state_key" in ev:
                after[self.key(eid)] = eid
            self.after[eid] = after

    def run(self):
        for eid in self.order:
            self.add(eid)
        return self

    def check(self, eid, before):
        ev = self.E[eid]
        if ev["type"] == "m.room.create":
            return None if self.allowed(eid, {}) else "create"
        auth = {}
        types = self.auth_types(ev)
        for a in ev["auth_events"]:
            if a not in self.E:
                return "unknown auth event"
            if a == self.create_id:
                return "create listed"
            k = self.key(a)
            if k in auth:
                return "duplicate auth"
            if k not in types:
                return "unexpected auth"
            if a in self.rejected:
                return "rejected auth"
            if self.E[a].get("room_id") != ev.get("room_id"):
                return "auth of other room"
            auth[k] = a
        auth[CREATE] = self.create_id
        if not self.allowed(eid, auth):
            return "against auth events"
        if not self.allowed(eid, before):
            return "against state before"
        return None
