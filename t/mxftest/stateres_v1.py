# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Room version 1: the v2 authorization rules (v1 and v2 differ in state
resolution only) with state resolution v1, written from content/rooms/v1.md
("State resolution") and Synapse synapse/state/v1.py, not from the module.

(SYN) points, all from synapse/state/v1.py:
- _seperate: a key that some states lack is not conflicted; it takes the
  value of the states that have it unless two of them differ.
- the auth events the conflicted events are checked against start as the
  unconflicted state restricted to the auth types of the conflicted events
  (_create_auth_events_from_maps), then grow with the resolved power levels,
  then join rules, then members (each member key is resolved against the
  state after the join rules pass, not against other resolved members).
- _resolve_auth_events: events sorted by ascending depth, descending
  sha1(event_id) hex; the first is taken unchecked, each next one is checked
  with the previous one in place, the last allowed one wins.
- _resolve_normal_events: highest depth, lowest sha1 first, the first one
  allowed wins; none: the last one of that order."""
import hashlib

from .stateres12 import Model, PL
from .stateres_tpi import ModelTPI

JR_T = "m.room.join_rules"


class ModelV1(ModelTPI):
    def __init__(self, events, order, version="1"):
        Model.__init__(self, events, order, version="2")
        self.v = 2                     # the auth rules of v1 are those of v2
        self.v21 = False
        self.redacted = set()

    def _ordered(self, ids):
        return sorted(ids, key=lambda e: (-int(self.E[e]["depth"]),
                                          hashlib.sha1(e.encode("utf-8")).hexdigest()))

    def _resolve_auth(self, ids, auth_events):
        rev = list(reversed(self._ordered(ids)))
        keys = set()
        for e in ids:
            keys |= self.auth_types(self.E[e])
        a = {k: auth_events[k] for k in keys if k in auth_events}
        prev = rev[0]
        for e in rev[1:]:
            a[self.key(prev)] = prev
            if not self.allowed(e, a):
                return prev
            prev = e
        return prev

    def _resolve_normal(self, ids, auth_events):
        e = None
        for e in self._ordered(ids):
            if self.allowed(e, auth_events):
                return e
        return e

    def resolve(self, states):
        unconf = dict(states[0])
        conf = {}
        for s in states[1:]:
            for k, val in s.items():
                u = unconf.get(k)
                if u is None:
                    if k in conf:
                        conf[k].add(val)
                    else:
                        unconf[k] = val
                elif u != val:
                    conf[k] = {val, u}
                    unconf.pop(k)
        if not conf:
            return unconf
        auth = {}
        for ids in conf.values():
            for e in ids:
                for k in self.auth_types(self.E[e]):
                    if k not in auth and unconf.get(k):
                        auth[k] = unconf[k]
        resolved = {}
        if PL in conf:
            resolved[PL] = self._resolve_auth(conf[PL], auth)
        auth.update(resolved)
        for k, ids in conf.items():
            if k[0] == JR_T:
                resolved[k] = self._resolve_auth(ids, auth)
        auth.update(resolved)
        for k, ids in conf.items():
            if k[0] == "m.room.member":
                resolved[k] = self._resolve_auth(ids, auth)
        auth.update(resolved)
        for k, ids in conf.items():
            if k not in resolved:
                resolved[k] = self._resolve_normal(ids, auth)
        out = dict(unconf)
        out.update(resolved)
        return out
