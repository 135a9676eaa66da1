# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Matrix helpers for the integration tests, written from the spec and built
on the libraries the reference homeserver uses (python3-signedjson,
python3-canonicaljson): X-Matrix request signing, generated rooms as an
in-memory DAG, and expectations for the history endpoints computed here,
independently of the module's SQL."""
import http.client
import json
import os
import subprocess
import urllib.parse

import signedjson.key
import signedjson.sign


# ---------------------------------------------------------------- signing

def load_key(path):
    with open(path) as f:
        return signedjson.key.read_signing_keys(f)[0]


def xmatrix(origin, key, destination, method, uri, content=None):
    """The Authorization header value a homeserver would send."""
    req = {"method": method, "uri": uri, "origin": origin, "destination": destination}
    if content is not None:
        req["content"] = content
    signed = signedjson.sign.sign_json(req, origin, key)
    sig = signed["signatures"][origin][f"{key.alg}:{key.version}"]
    return (f'X-Matrix origin="{origin}",destination="{destination}",'
            f'key="{key.alg}:{key.version}",sig="{sig}"')


def q(value):
    """Percent-encodes a path segment or query value (IDs contain $ : / +)."""
    return urllib.parse.quote(value, safe="")


# ---------------------------------------------------------------- rooms

def server_of(user_id):
    return user_id.split(":", 1)[1]


class Room:
    """A generated room (matrix-fed gen-room), as a DAG in memory."""

    def __init__(self, directory):
        self.dir = directory
        self.lines = open(os.path.join(directory, "room.jsonl"), "rb").read().splitlines()
        self.summary = json.load(open(os.path.join(directory, "expected.json")))
        self.expected = [json.loads(l) for l in open(os.path.join(directory, "expected.jsonl"))]
        self.room_id = self.summary["room_id"]
        self.version = self.summary["room_version"]
        self.events = {}        # event_id -> dict with json, raw, index
        self.order = []
        for exp in self.expected:
            raw = self.lines[exp["i"]]
            ev = json.loads(raw)
            self.events[exp["event_id"]] = {"json": ev, "raw": raw, "i": exp["i"], "exp": exp}
            self.order.append(exp["event_id"])
        self.by_sig = {}
        for eid, ev in self.events.items():
            for srv, sigs in ev["json"]["signatures"].items():
                for sig in sigs.values():
                    self.by_sig[sig] = eid

    def key_path(self, server):
        return os.path.join(self.dir, "keys", f"{server}.key")

    def prevs(self, eid):
        p = self.events[eid]["json"]["prev_events"]
        return [x[0] if isinstance(x, list) else x for x in p]

    def auths(self, eid):
        a = self.events[eid]["json"]["auth_events"]
        return [x[0] if isinstance(x, list) else x for x in a]

    def depth(self, eid):
        return self.events[eid]["json"]["depth"]

    def idx(self, eid):
        return self.events[eid]["i"]

    def identify(self, pdu):
        """The event ID of a served PDU (full or redacted), by its signatures."""
        for sigs in pdu["signatures"].values():
            for sig in sigs.values():
                if sig in self.by_sig:
                    return self.by_sig[sig]
        raise AssertionError(f"served PDU is not an event of the room: {pdu}")

    # -------------------------------------------------- expectations

    def missing_events(self, earliest, latest, limit, min_depth=0):
        """get_missing_events as the spec and the digest describe: BFS over
        prev_events from latest, never returning or walking through
        earliest, nor events below min_depth; a latest event is returned
        only when the walk reaches it from another (only earliest are
        seen at the start); nearest first when the limit cuts a layer;
        result oldest first."""
        seen = {e for e in earliest if e in self.events}
        front = [e for e in latest if e in self.events and e not in seen]
        picked = []
        while front and len(picked) < limit:
            layer = {p for e in front for p in self.prevs(e)
                     if p in self.events and p not in seen and self.depth(p) >= min_depth}
            layer = sorted(layer, key=lambda p: (self.depth(p), self.idx(p)), reverse=True)
            front = []
            for p in layer:
                if len(picked) >= limit:
                    break
                front.append(p)
                picked.append(p)
            seen |= set(front)
        return sorted(picked, key=lambda p: (self.depth(p), self.idx(p)))

    def backfill(self, v, limit):
        """The v events and their ancestors, walked by depth descending
        (later arrival first on ties), at most limit; sorted newest first."""
        queue = {e for e in v if e in self.events}
        seen = set(queue)
        out = []
        while queue and len(out) < limit:
            cur = max(queue, key=lambda e: (self.depth(e), self.idx(e)))
            queue.remove(cur)
            out.append(cur)
            for p in self.prevs(cur):
                if p in self.events and p not in seen:
                    seen.add(p)
                    queue.add(p)
        return sorted(out, key=lambda e: (self.depth(e), self.idx(e)), reverse=True)

    def auth_chain(self, eids):
        """Auth events of eids, recursively, without eids themselves unless
        reached from another (v12: plus the implicit create event)."""
        out = set()
        stack = [a for e in eids for a in self.auths(e)]
        while stack:
            a = stack.pop()
            if a in out or a not in self.events:
                continue
            out.add(a)
            stack.extend(self.auths(a))
        if self.version == "12":
            create = self.order[0]
            if any(e != create for e in eids):
                out.add(create)
        return out

    def membership(self, eid):
        return self.events[eid]["json"]["content"].get("membership")

    def visible(self, eid, server):
        """Server history visibility at an event (the spec's rules for servers), judged
        on the state after the event, as the reference homeserver does (for
        an event that is not a state event, the state before it)."""
        exp = self.events[eid]["exp"]
        return self.visible_in(exp.get("state_after") or exp["state_before"], server)

    def visible_before(self, eid, server):
        """The same judged on the state before the event (what a user's own
        membership changes are also judged on, for clients)."""
        return self.visible_in(self.events[eid]["exp"]["state_before"], server)

    def visible_in(self, st, server):
        """Whether the history visibility and memberships of state st let
        server see an event."""
        hv_id = st.get("m.room.history_visibility|")
        hv = (self.events[hv_id]["json"]["content"].get("history_visibility", "shared")
              if hv_id in self.events else "shared")
        if hv not in ("world_readable", "shared", "invited", "joined"):
            hv = "shared"
        if hv in ("world_readable", "shared"):
            return True
        for key, mid in st.items():
            if not key.startswith("m.room.member|") or server_of(key.split("|", 1)[1]) != server:
                continue
            m = self.membership(mid)
            if m == "join" or (hv == "invited" and m == "invite"):
                return True
        return False


def room_request(port, room, method, path, content=None, headers=None, destination=None,
                 timeout=30):
    """One request on a connection of its own to 127.0.0.1:@port, signed
    (X-Matrix, for @destination) as the first joined server of @room when
    @destination is given, with @content as its JSON body: (status, headers
    with lower-case names, body)."""
    hdr = dict(headers or {})
    if destination:
        origin = sorted(room.summary["joined_servers"])[0]
        hdr["Authorization"] = xmatrix(origin, load_key(room.key_path(origin)), destination,
                                       method, path, content)
    body = json.dumps(content) if content is not None else None
    if body:
        hdr["Content-Type"] = "application/json"
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=hdr)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def gen_room(cli, out, **opts):
    args = [cli, "gen-room", "--out", out]
    for k, v in opts.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    subprocess.run(args, check=True, stdout=subprocess.PIPE)
    return Room(out)


def import_room(cli, conninfo, room, extra=()):
    return subprocess.run([cli, "import", "--quiet", "--db", conninfo,
                           "--keys", os.path.join(room.dir, "keys", "all.json"),
                           *extra, os.path.join(room.dir, "room.jsonl")],
                          check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
