# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""An import that gives again an event an earlier import stored reads the
stored copy, with its stored redaction status, for everything it judges:
the auth checks of its new events, state resolution, the state and
redactions of stored events whose state it completes (refills). The input's
copy may be another - altered in transit (content hash mismatch) where the
stored one matches, or the reverse - or miss a redaction an earlier import
applied. The verdicts and rows are those of importing the events stored
before and then only the new ones, or of a one-go import of the same copies
(room version 10: a redacted m.room.power_levels has no `invite`, whose
default is 0)."""
import json

import pytest

from mxftest.vbuilder import Keys, VRoom
from test_021_import import new_db
from test_064_import_parts import cli_sanitizer_reports, import_path, semantic

A = "@admin:hs1.example"
B = "@bob:hs2.example"
D = "@dave:hs4.example"
V = "10"


def line(ev):
    return json.dumps(ev, separators=(",", ":"), ensure_ascii=False)


def altered(ev, **content):
    """A copy altered in transit: content changed outside what the redaction
    keeps, so its event ID and signatures still hold but its content hash
    does not match."""
    return dict(ev, content=dict(ev["content"], **content))


def base(r, pl):
    r.create(A)
    r.join(A)
    p = r.make("m.room.power_levels", A, pl, state_key="")
    r.make("m.room.join_rules", A, {"join_rule": "public"}, state_key="")
    r.join(B)
    return p


class Case:
    def __init__(self, name):
        self.name = name
        self.room = VRoom(V, KEYS, f"!{name}:hs1.example")


KEYS = Keys()


def case_a():
    """Stored altered (processed redacted: no `invite`, so 0), given again
    matching (invite 100), with an invite by a user at level 0."""
    c = Case("rga")
    r = c.room
    p = base(r, {"users": {A: 100}, "invite": 100})
    ev = r.by_id
    # The room as stored: P processed redacted, so invite level 0.
    inv = r.member(B, D, "invite")
    ids = [e for e, _ in r.events]
    first = [line(altered(ev[e], note="altered in transit")) if e == p else line(ev[e])
             for e in ids if e != inv]
    c.parts = [first, [line(ev[p]), line(ev[inv])]]
    c.reference = [first, [line(ev[inv])]]
    c.accepted, c.rejected = {inv}, set()
    return c


def case_b():
    """P redacted by an m.room.redaction of an earlier import, given again,
    with an invite that the redacted P (no `invite`) allows."""
    c = Case("rgb")
    r = c.room
    p = base(r, {"users": {A: 100}, "invite": 50})
    red = r.redaction(A, p)
    inv = r.member(B, D, "invite")
    ev = r.by_id
    ids = [e for e, _ in r.events]
    c.parts = [[line(ev[e]) for e in ids if e != inv], [line(ev[p]), line(ev[inv])]]
    c.reference = [[line(ev[e]) for e in ids]]
    c.accepted, c.rejected = {red, inv}, set()
    return c


def case_c():
    """Stored matching (invite 100), given again altered (which would be
    processed redacted: invite 0), with an invite by a user at level 0."""
    c = Case("rgc")
    r = c.room
    p = base(r, {"users": {A: 100}, "invite": 100})
    inv = r.member(B, D, "invite", rejected=True)
    ev = r.by_id
    ids = [e for e, _ in r.events]
    first = [line(ev[e]) for e in ids if e != inv]
    c.parts = [first, [line(altered(ev[p], note="altered in transit")), line(ev[inv])]]
    c.reference = [first, [line(ev[inv])]]
    c.accepted, c.rejected = set(), {inv}
    return c


def case_d():
    """Refills given again altered: E1 (a message) and E2 (a redaction by a
    user with the redact level of another server's message) are stored
    with their state unknown (their prev X is missing); the next import
    brings X and gives them again altered (an altered v10 redaction would
    redact nothing). They follow their stored copies: E2 applies."""
    c = Case("rgd")
    r = c.room
    base(r, {"users": {A: 100}})
    mb = r.msg(B, "to be redacted")
    x = r.msg(B, "x")
    e1 = r.msg(B, "hello")
    e2 = r.redaction(A, mb)
    end = r.msg(A, "end")
    ev = r.by_id
    ids = [e for e, _ in r.events]
    c.parts = [[line(ev[e]) for e in ids if e != x],
               [line(ev[x]), line(altered(ev[e1], body="altered in transit")),
                line(altered(ev[e2], reason="altered in transit"))]]
    c.reference = [[line(ev[e]) for e in ids]]
    c.accepted, c.rejected = {e1, e2, end}, set()
    c.redacted = {mb}
    return c


def case_e():
    """A refill not given again, stored altered: P2 (power levels, invite
    100 but processed redacted, so 0) and an invite by a user at level 0
    citing it, stored with their state unknown (their prev X is missing).
    The next import brings only X: P2 is read as stored, processed
    redacted, and the invite stays accepted."""
    c = Case("rge")
    r = c.room
    base(r, {"users": {A: 100}, "invite": 100})
    x = r.msg(B, "x")
    p2 = r.make("m.room.power_levels", A, {"users": {A: 100}, "invite": 100}, state_key="")
    # modelled as processed redacted
    inv = r.member(B, D, "invite")
    ev = r.by_id
    ids = [e for e, _ in r.events]
    first = [line(altered(ev[e], note="altered in transit")) if e == p2 else line(ev[e])
             for e in ids if e != x]
    c.parts = [first, [line(ev[x])]]
    # one go, with the same (altered) copy of P2
    c.reference = [[line(altered(ev[e], note="altered in transit")) if e == p2 else line(ev[e])
                    for e in ids]]
    c.accepted, c.rejected = {p2, inv}, set()
    return c


CASES = {"a_stored_altered_given_matching": case_a,
         "b_stored_redacted_by_event": case_b,
         "c_stored_matching_given_altered": case_c,
         "d_refills_given_again_altered": case_d,
         "e_refill_stored_altered": case_e}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cases = {k: f() for k, f in CASES.items()}
    d = tmp_path_factory.mktemp("regiven")
    keyfile = str(d / "keys.json")
    KEYS.write_responses(keyfile)
    return cases, keyfile, d


def run_parts(build_env, workdir, postgres, keyfile, d, tag, parts):
    db = new_db(postgres, build_env)
    for k, part in enumerate(parts):
        path = d / f"{tag}-{k}.jsonl"
        path.write_text("".join(x + "\n" for x in part))
        import_path(build_env, workdir, postgres, db, str(path), keyfile)
    return db


def pdu_line(ev):
    """A PDU as one line of an import file."""
    return json.dumps(ev, separators=(",", ":"), ensure_ascii=False)


def one_go_and_split(keys, one_go, parts, build_env, workdir, postgres, tmp_path):
    """The databases of the import of @one_go and of the imports of @parts
    (lists of files, each a list of lines), the servers' keys from @keys."""
    keyfile = str(tmp_path / "keys.json")
    keys.write_responses(keyfile)
    want = run_parts(build_env, workdir, postgres, keyfile, tmp_path, "onego", one_go)
    got = run_parts(build_env, workdir, postgres, keyfile, tmp_path, "split", parts)
    return want, got


def split_verdicts(keys, case, build_env, workdir, postgres, tmp_path):
    """one_go_and_split() of @case's "one_go" and "parts", with each
    database's rejected events: (want, got, want_rej, got_rej)."""
    want, got = one_go_and_split(keys, case["one_go"], case["parts"], build_env, workdir,
                                 postgres, tmp_path)
    return want, got, rejected(postgres, want), rejected(postgres, got)


def assert_same_rejected(version, got_rej, want_rej):
    assert got_rej == want_rej, f"v{version}: split rejects {sorted(got_rej)}, one file " \
                                f"{sorted(want_rej)}"


def rejected(postgres, db):
    out = postgres.psql(db, "SELECT event_id || chr(9) || rejected_reason FROM mxf_events"
                            " WHERE rejected_reason IS NOT NULL")
    return dict(x.split("\t", 1) for x in out.splitlines() if x)


def redacted(postgres, db):
    out = postgres.psql(db, "SELECT event_id || chr(9) || redacted_because FROM mxf_events"
                            " WHERE redacted_because IS NOT NULL")
    return dict(x.split("\t", 1) for x in out.splitlines() if x)


def current_state(postgres, db):
    return postgres.psql(db, "SELECT string_agg(s.type || '|' || s.state_key || '=' || e.event_id,"
                             " ';' ORDER BY s.type, s.state_key)"
                             "  FROM mxf_rooms r, mxf_state_of(r.current_state_group) s"
                             "  JOIN mxf_events e USING (event_nid)")


@pytest.mark.parametrize("name", list(CASES))
def test_075_001_regiven_read_as_stored(name, built, build_env, workdir, postgres):
    cases, keyfile, d = built
    c = cases[name]
    got = run_parts(build_env, workdir, postgres, keyfile, d, f"{name}-parts", c.parts)
    want = run_parts(build_env, workdir, postgres, keyfile, d, f"{name}-ref", c.reference)
    got_rej = rejected(postgres, got)
    want_rej = rejected(postgres, want)
    assert not (c.accepted & set(got_rej)), \
        f"{name}: rejected, expected accepted: { {e: got_rej[e] for e in c.accepted & set(got_rej)} }"
    assert c.rejected <= set(got_rej), f"{name}: accepted, expected rejected: {c.rejected - set(got_rej)}"
    assert got_rej == want_rej, name
    for e in getattr(c, "redacted", ()):
        assert e in redacted(postgres, got), f"{name}: {e} not redacted"
    assert redacted(postgres, got) == redacted(postgres, want), name
    assert current_state(postgres, got) == current_state(postgres, want), name
    assert semantic(postgres, got) == semantic(postgres, want), name
    assert not cli_sanitizer_reports(workdir)
