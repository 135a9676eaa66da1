# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Cross-checks the core's canonical JSON and JSON signing against the
Python reference libraries (Debian python3-canonicaljson, python3-signedjson)
on thousands of random documents, byte for byte.

All requests go through one pipe to t/tools/mxf_core_tool (one JSON request
per line, one JSON result per line).
"""
import base64
import copy
import json
import os
import random
import subprocess

import canonicaljson
import nacl.signing
import pytest

from mxftest.env import core_tool_path
import signedjson.key
import signedjson.sign

SEED = 20240611
N_DOCS = 3000
MAX_SAFE = 2**53 - 1

SPEC_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"


def tool_path():
    return core_tool_path()


def run_tool(requests, rng=None):
    """Sends all requests through one process; returns the parsed results."""
    lines = []
    for i, req in enumerate(requests):
        req = dict(req, id=i)
        ascii_only = rng.random() < 0.5 if rng else True
        lines.append(json.dumps(req, ensure_ascii=ascii_only))
    data = ("\n".join(lines) + "\n").encode("utf-8")
    proc = subprocess.run([tool_path()], input=data, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    # Split on b"\n" only: str.splitlines() would also split at U+2028 etc.
    out = proc.stdout.split(b"\n")
    assert out[-1] == b""
    out = out[:-1]
    assert len(out) == len(requests), proc.stderr.decode(errors="replace")
    results = [json.loads(line) for line in out]
    for i, res in enumerate(results):
        assert res.get("id") == i, res
    return results


# ---------------------------------------------------------------- generators

CONTROL = [chr(c) for c in range(0x20)] + ["\x7f"]
SPECIAL = ['"', "\\", "/", "\u2028", "\u2029", "\ufeff", "\ufffd", "\uffff",
           "\ue000", "\U00010000", "\U0010ffff", "\U0001f600", "\u00e9", "\u65e5"]


def rand_char(rng, allow_nul=True):
    r = rng.random()
    if r < 0.35:
        return chr(rng.randint(0x20, 0x7e))
    if r < 0.50:
        c = rng.choice(CONTROL)
        return c if allow_nul or c != "\x00" else "\x01"
    if r < 0.62:
        return rng.choice(SPECIAL)
    if r < 0.80:
        c = rng.randint(0x80, 0xFFFF)       # BMP without surrogates
        return chr(c) if not 0xD800 <= c <= 0xDFFF else "\ud7ff"
    plane = rng.randint(1, 16)               # astral, every plane
    return chr(plane * 0x10000 + rng.randint(0, 0xFFFF))


def rand_str(rng, allow_nul=True, maxlen=12):
    return "".join(rand_char(rng, allow_nul) for _ in range(rng.randint(0, maxlen)))


# Keys whose bytewise UTF-8 order differs from UTF-16 order, and prefixes.
TRICKY_KEYS = ["", "a", "ab", "a\x01", "\uffff", "\U00010000", "\ue000",
               "\U0001f600", "\ufb01", "A", "_", "\x7f", "\u0080", "\u2028"]


def rand_key(rng):
    if rng.random() < 0.25:
        return rng.choice(TRICKY_KEYS)
    return rand_str(rng, allow_nul=False, maxlen=8)   # jansson: no NUL in keys


def rand_int(rng, limit=MAX_SAFE):
    r = rng.random()
    if r < 0.3:
        return rng.randint(-10, 10)
    if r < 0.5:
        return rng.choice([limit, -limit, limit - 1, -limit + 1, 2**31, -2**31 - 1,
                           2**32, 10**15])
    return rng.randint(-limit, limit)


def rand_scalar(rng, int_limit):
    r = rng.random()
    if r < 0.4:
        return rand_str(rng)
    if r < 0.75:
        return rand_int(rng, int_limit)
    return rng.choice([True, False, None])


def rand_value(rng, depth, int_limit=MAX_SAFE):
    r = rng.random()
    if depth <= 0 or r < 0.45:
        return rand_scalar(rng, int_limit)
    if r < 0.75:
        return rand_object(rng, depth - 1, int_limit)
    return [rand_value(rng, depth - 1, int_limit) for _ in range(rng.randint(0, 6))]


def rand_object(rng, depth, int_limit=MAX_SAFE):
    return {rand_key(rng): rand_value(rng, depth, int_limit)
            for _ in range(rng.randint(0, 8))}


def rand_float(rng):
    r = rng.random()
    if r < 0.2:
        return float(rng.randint(-MAX_SAFE, MAX_SAFE))
    if r < 0.3:
        return rng.choice([0.0, -0.0, 1e10, 1e15, 1e16, 1e-4, 1e-5, 5e-324,
                           1.7976931348623157e308, 0.1, 2.5, -1.5e300])
    if r < 0.6:
        return rng.uniform(-1e6, 1e6)
    return rng.choice([-1, 1]) * 10 ** rng.uniform(-320, 308)


def with_floats(rng, value):
    """Replaces some integers inside value by floats."""
    if isinstance(value, dict):
        return {k: with_floats(rng, v) for k, v in value.items()}
    if isinstance(value, list):
        return [with_floats(rng, v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and rng.random() < 0.5:
        return rand_float(rng)
    return value


def has_nul(value):
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return isinstance(value, str) and "\x00" in value


def canonical(value):
    return canonicaljson.encode_canonical_json(value)


def b64(data):
    return base64.b64encode(data).decode().rstrip("=")


# --------------------------------------------------------------------- tests

def test_mxf_010_001_canonical_random_documents():
    """3000 random documents (strict-range ints) and 300 with big ints."""
    rng = random.Random(SEED)
    docs = [rand_object(rng, rng.randint(0, 5)) for _ in range(N_DOCS)]
    docs += [rand_value(rng, 3, int_limit=2**63 - 1) for _ in range(300)]
    docs += [rand_str(rng, maxlen=64) for _ in range(100)]        # bare strings
    reqs = [{"op": "canonical", "value": d} for d in docs]
    results = run_tool(reqs, rng)
    mismatches = []
    for doc, res in zip(docs, results):
        want = canonical(doc)
        got = res.get("canonical", "").encode("utf-8") if res["ok"] else None
        if got != want:
            mismatches.append((want, res))
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[0]!r}"


def test_mxf_010_002_canonical_python_floats():
    """MXF_CANON_PYTHON_FLOATS is byte-identical to canonicaljson on floats;
    the default (spec) mode writes integral reals as integers and refuses
    the rest."""
    rng = random.Random(SEED + 1)
    docs = [with_floats(rng, rand_object(rng, rng.randint(0, 4))) for _ in range(1000)]
    docs += [rand_float(rng) for _ in range(1000)]
    reqs = [{"op": "canonical", "value": d, "python_floats": True} for d in docs]
    reqs += [{"op": "canonical", "value": d} for d in docs]
    results = run_tool(reqs, rng)
    n = len(docs)

    def spec_form(v):
        if isinstance(v, dict):
            return {k: spec_form(x) for k, x in v.items()}
        if isinstance(v, list):
            return [spec_form(x) for x in v]
        if isinstance(v, float):
            if v != int(v) or abs(v) > MAX_SAFE:
                raise ValueError("not canonical")
            return int(v)
        return v

    for doc, res in zip(docs, results[:n]):
        assert res["ok"], res
        assert res["canonical"].encode("utf-8") == canonical(doc), (doc, res)
    for doc, res in zip(docs, results[n:]):
        try:
            want = canonical(spec_form(doc))
        except ValueError:
            want = None
        got = res["canonical"].encode("utf-8") if res["ok"] else None
        assert got == want, (doc, res)


def test_mxf_010_003_strict_parse():
    """Strict parsing: ints beyond 2^53-1, reals and duplicate keys fail."""
    rng = random.Random(SEED + 2)
    cases = []
    for _ in range(300):
        doc = rand_object(rng, 3)
        # Without MXF_JSON_ALLOW_NUL a U+0000 anywhere is refused.
        cases.append((json.dumps(doc), not has_nul(doc)))
        big = dict(doc, big=rng.choice([MAX_SAFE + 1, -MAX_SAFE - 1, 2**63 - 1]))
        cases.append((json.dumps(big), False))
        cases.append((json.dumps(dict(doc, real=1.0)), False))
        text = json.dumps(dict(doc, dup=1))
        cases.append(("{\"dup\":0," + text[1:], False))
    cases.append(('{"a":"\\u0000"}', False))
    reqs = [{"op": "parse", "text": t, "strict_ints": True} for t, _ in cases]
    results = run_tool(reqs)
    for (text, ok), res in zip(cases, results):
        assert res["ok"] == ok, (text, res)
        if ok:
            assert res["canonical"].encode("utf-8") == canonical(json.loads(text))


def test_mxf_010_006_duplicate_keys_rejected():
    """Python takes the last duplicate; the core must refuse the document."""
    texts = ['{"a":1,"a":2}', '{"x":{"b":1,"c":2,"b":1}}', '[{"k":[],"k":{}}]',
             '{"\u00e9":1,"\u00c3\u00a9":2,"\u00e9":3}']
    res = run_tool([{"op": "parse", "text": t, "any": True} for t in texts])
    for text, r in zip(texts, res):
        assert r["ok"] is False and "duplicate" in r["error"], (text, r)


def make_keys(rng, n):
    keys = []
    for i in range(n):
        seed = bytes(rng.getrandbits(8) for _ in range(32))
        version = "".join(rng.choice("abcXYZ019_") for _ in range(rng.randint(1, 8)))
        keys.append((b64(seed), version))
    keys.append((SPEC_SEED, "1"))
    return keys


def test_mxf_010_004_signatures():
    """C signatures equal signedjson's; each side verifies the other's."""
    rng = random.Random(SEED + 3)
    keys = make_keys(rng, 8)
    servers = ["domain", "example.org", "[::1]:8448", "h\u00e9.example"]
    jobs = []
    for _ in range(1000):
        doc = rand_object(rng, rng.randint(0, 4))
        if rng.random() < 0.3:
            doc["unsigned"] = rand_object(rng, 2)
        if rng.random() < 0.3:
            doc["signatures"] = {"other.example": {"ed25519:o": "c2ln"}}
        seed, version = rng.choice(keys)
        jobs.append((doc, seed, version, rng.choice(servers)))

    sign_reqs = [{"op": "sign", "value": d, "seed": s, "server": srv, "key_version": v}
                 for d, s, v, srv in jobs]
    c_signed = run_tool(sign_reqs, rng)

    verify_reqs = []
    for (doc, seed, version, server), res in zip(jobs, c_signed):
        assert res["ok"], res
        skey = signedjson.key.decode_signing_key_base64("ed25519", version, seed)
        py_signed = signedjson.sign.sign_json(copy.deepcopy(doc), server, skey)
        assert canonical(res["signed"]) == canonical(py_signed), (doc, res)
        vkey = signedjson.key.get_verify_key(skey)
        assert res["public_key"] == b64(bytes(vkey))
        # Python verifies the C signature ...
        signedjson.sign.verify_signed_json(res["signed"], server, vkey)
        # ... and C verifies Python's, and rejects a tampered copy.
        key_id = "ed25519:" + version
        verify_reqs.append({"op": "verify", "value": py_signed, "server": server,
                            "key_id": key_id, "public_key": b64(bytes(vkey))})
        tampered = copy.deepcopy(py_signed)
        tampered["tampered"] = True
        verify_reqs.append({"op": "verify", "value": tampered, "server": server,
                            "key_id": key_id, "public_key": b64(bytes(vkey))})
    results = run_tool(verify_reqs, rng)
    for i in range(0, len(results), 2):
        assert results[i]["ok"], results[i]
        assert not results[i + 1]["ok"] and results[i + 1]["status"] == "bad", results[i + 1]


def test_mxf_010_005_spec_vectors_through_tool():
    """The spec's JSON signing vectors, via the tool and via signedjson."""
    reqs = [
        {"op": "sign", "value": {}, "seed": SPEC_SEED, "server": "domain",
         "key_version": "1"},
        {"op": "sign", "value": {"one": 1, "two": "Two"}, "seed": SPEC_SEED,
         "server": "domain", "key_version": "1"},
        {"op": "sha256", "data": ""},
        {"op": "sha256", "data": "foobar", "urlsafe": True},
        {"op": "verify", "value": {"signatures": {}}, "server": "domain",
         "key_id": "ed25519:1", "public_key": "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"},
        {"op": "verify", "value": {"signatures": {"domain": {"ed25519:1": "!"}}},
         "server": "domain", "key_id": "ed25519:1",
         "public_key": "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"},
        {"op": "no-such-op"},
    ]
    res = run_tool(reqs)
    assert canonical(res[0]["signed"]) == (
        b'{"signatures":{"domain":{"ed25519:1":"K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdG'
        b'YI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}}}')
    assert canonical(res[1]["signed"]) == (
        b'{"one":1,"signatures":{"domain":{"ed25519:1":"KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2'
        b'sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"}},"two":"Two"}')
    assert res[0]["public_key"] == "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"
    assert res[2]["hash"] == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
    import hashlib
    assert res[3]["hash"] == base64.urlsafe_b64encode(
        hashlib.sha256(b"foobar").digest()).decode().rstrip("=")
    assert res[4]["ok"] is False and res[4]["status"] == "missing"
    assert res[5]["ok"] is False and res[5]["status"] == "malformed"
    assert res[6]["ok"] is False and "op" in res[6]["error"]
    # nacl agrees on the public key of the spec seed.
    sk = nacl.signing.SigningKey(base64.b64decode(SPEC_SEED[:-1] + "0="))
    assert b64(bytes(sk.verify_key)) == res[0]["public_key"]
