# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Import helpers for hand-built v12 rooms."""
import json
import os
import random
import subprocess


def import_lines(build_env, postgres, workdir, name, lines, keys, extra_args=()):
    """Imports @lines (JSON texts) as one file; returns the CompletedProcess."""
    d = os.path.join(workdir, "v12rooms", name)
    os.makedirs(d, exist_ok=True)
    keyfile = os.path.join(d, "keys.json")
    keys.write_responses(keyfile)
    path = os.path.join(d, "room.jsonl")
    with open(path, "w") as f:
        for line in lines:
            f.write(line + "\n")
    return subprocess.run([build_env.cli, "import", "--quiet", "--db", postgres.conninfo(),
                           "--keys", keyfile, *extra_args, path], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True,
                          env=build_env.sanitizer_env(workdir))


def import_ok(build_env, postgres, workdir, name, lines, keys):
    p = import_lines(build_env, postgres, workdir, name, lines, keys)
    assert p.returncode == 0, p.stderr + p.stdout
    return p


def import_as(mode, build_env, postgres, workdir, name, lines, keys, seed=0, parts=3):
    """Imports @lines (a room's events in the order made) as @mode has them
    arrive: "one" file, "shuffle"d (by @seed), in @parts consecutive
    "chunks", or "rchunks": the create event, then those parts latest first
    (events of unknown state until the earlier parts come)."""
    lines = list(lines)
    if mode == "shuffle":
        random.Random(seed).shuffle(lines)
    if mode in ("chunks", "rchunks"):
        n = len(lines)
        files = [lines[j * n // parts:(j + 1) * n // parts] for j in range(parts)]
        if mode == "rchunks":            # the room's version comes from its create event
            files = [lines[:1]] + files[:0:-1] + [files[0][1:]]
    elif mode in ("one", "shuffle"):
        files = [lines]
    else:
        raise ValueError(mode)
    for i, part in enumerate(files):
        import_ok(build_env, postgres, workdir, f"{name}-{i}", part, keys)


def db_events(postgres, room_id):
    """event_id -> rejected_reason ('' when accepted) of the room's events."""
    out = postgres.psql(postgres.DBNAME,
                        "SELECT coalesce(json_object_agg(e.event_id,"
                        " coalesce(e.rejected_reason, '')), '{}')"
                        " FROM mxf_events e JOIN mxf_rooms r USING (room_nid)"
                        f" WHERE r.room_id = '{room_id}'")
    return json.loads(out)


def db_event(postgres, event_id):
    """(room_id, rejected_reason or '') of an event, None when not stored."""
    out = postgres.psql(postgres.DBNAME,
                        "SELECT r.room_id || chr(9) || coalesce(translate(e.rejected_reason, chr(10) || chr(9), '  '), '')"
                        " FROM mxf_events e JOIN mxf_rooms r USING (room_nid)"
                        f" WHERE e.event_id = '{event_id}'")
    if not out:
        return None
    return tuple(out.split("\t", 1))


def db_room(postgres, room_id):
    out = postgres.psql(postgres.DBNAME,
                        "SELECT room_version FROM mxf_rooms"
                        f" WHERE room_id = '{room_id}'")
    return out or None


def _state_map(out):
    """(type, state_key) -> event ID from psql lines "type<TAB>key<TAB>id"."""
    res = {}
    for line in out.splitlines():
        t, sk, eid = line.split("\t")
        res[(t, sk)] = eid
    return res


def db_current_state(postgres, room_id):
    out = postgres.psql(postgres.DBNAME,
                        "SELECT s.type || chr(9) || s.state_key || chr(9) || e.event_id"
                        " FROM mxf_rooms r, mxf_state_of(r.current_state_group) s"
                        " JOIN mxf_events e ON e.event_nid = s.event_nid"
                        f" WHERE r.room_id = '{room_id}'")
    return _state_map(out)


def db_state_before(postgres, event_id):
    out = postgres.psql(postgres.DBNAME,
                        "SELECT s.type || chr(9) || s.state_key || chr(9) || x.event_id"
                        " FROM mxf_events e, mxf_state_of(e.state_before) s"
                        " JOIN mxf_events x ON x.event_nid = s.event_nid"
                        f" WHERE e.event_id = '{event_id}'")
    return _state_map(out)


def verdict_diff(room, got):
    """Lines naming each event whose verdict differs from the room's model."""
    wrong = []
    for eid, _ in room.events:
        want_rej = eid in room.rejected
        if eid not in got:
            wrong.append(f"{room.labels[eid]}: not stored")
            continue
        got_rej = got[eid] != ""
        if want_rej != got_rej:
            wrong.append(f"{room.labels[eid]}: expected "
                         f"{'rejected' if want_rej else 'accepted'}"
                         f"{' (got: ' + got[eid] + ')' if got_rej else ''}")
    return wrong
