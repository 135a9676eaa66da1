# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""MatrixFedKeyFetchConcurrency and servers whose keys are
known but no longer valid (expired valid_until_ts, or past the 7-day cap
on keys obtained more than 7 days ago).

A key that must be fetched again (its valid_until_ts passed, as a
one-day key's does each day, or obtained more than 7 days ago) needs a fetch
as an unknown one does; when no slot is free the request gets the 503 with
Retry-After of this server's own limit, not a 401 (a final answer: the key
is bad)."""
import threading
import time

import pytest

from conftest import site_config
from test_030_keys_auth import (FED, MODULES, FakeKeyServer, assert_error, ev, insert_key,
                                make_cert, now_ms, xmatrix)

ALLOWED_LOG = [r"MXF25014", r"MXF25020", r"AH10159"]


@pytest.fixture(scope="module")
def setup(httpd_factory, postgres, signing_key, backend, workdir):
    import os
    d = os.path.join(workdir, "tls-069")
    os.makedirs(d, exist_ok=True)
    cert = make_cert(d, "keyserver069")
    slow = FakeKeyServer("slow901.test", cert, delay=6.0)
    known = FakeKeyServer("known901.test", cert)
    capped = FakeKeyServer("capped901.test", cert)
    h = httpd_factory.new("httpd-069")
    h.start(site_config(postgres, signing_key, backend, extra=f"""
MatrixFedKeyServerURL slow901.test {slow.url()}
MatrixFedKeyServerURL known901.test {known.url()}
MatrixFedKeyServerURL capped901.test {capped.url()}
MatrixFedKeyFetchCAFile {cert[0]}
MatrixFedKeyFetchTimeout 3
MatrixFedKeyFetchRetryInterval 1
MatrixFedKeyCache shmcb
MatrixFedKeyFetchConcurrency 1
# One child: the limit is per child process.
ServerLimit 1
MaxRequestWorkers 8
MinSpareThreads 1
"""), modules=MODULES)
    yield h, slow, known, capped
    h.stop()
    for s in (slow, known, capped):
        s.stop()
    assert h.sanitizer_reports() == []


def occupy_slot(h, slow):
    path = FED + "/event/" + ev("slow901")
    result = {}

    def call():
        result["r"] = h.get(path, headers={"Authorization": xmatrix("slow901.test", slow.key,
                                                                    "GET", path)})
    before = slow.hits
    th = threading.Thread(target=call)
    th.start()
    deadline = time.time() + 3
    while slow.hits == before and time.time() < deadline:
        time.sleep(0.02)
    assert slow.hits == before + 1, "the slow fetch did not start"
    return th


@pytest.mark.parametrize("which", ["valid_until_ts passed", "obtained 8 days ago"])
def test_069_001_known_but_stale_key_while_slots_busy_is_503_not_401(setup, postgres, which):
    h, slow, known, capped = setup
    fake = known if which == "valid_until_ts passed" else capped
    server = fake.name
    if which == "valid_until_ts passed":
        insert_key(postgres, server, fake.key, now_ms() - 60_000)
        postgres.psql(postgres.DBNAME, f"UPDATE mxf_server_keys SET fetched_ts = {now_ms()}"
                      f" - 86400000 WHERE server_name = '{server}'")
    else:
        insert_key(postgres, server, fake.key, now_ms() + 30 * 86400_000)
        postgres.psql(postgres.DBNAME, "UPDATE mxf_server_keys SET fetched_ts ="
                      f" {now_ms()} - 8 * 86400000 WHERE server_name = '{server}'")
    th = occupy_slot(h, slow)
    try:
        path = FED + "/event/" + ev("known901")
        r = h.get(path, headers={"Authorization": xmatrix(server, fake.key, "GET", path)})
        # This server's own limit: a retryable 503, as for an unknown origin.
        assert_error(r, 503, "M_UNKNOWN")
        assert r.header("Retry-After") == "1"
    finally:
        th.join(15)
        time.sleep(1.1)
