# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Latency that X-Matrix authentication adds to a served request (not a
test). Starts a throwaway PostgreSQL and httpd through the test harness,
puts an origin key in the key table, warms the key caches, then times, over
one keep-alive connection:
  public   GET /_matrix/federation/v1/version            (no authentication)
  signed   GET /_matrix/federation/v1/event/<malformed>  (authentication, then a
           400 from the handler before any database work)
The difference of the medians is what authentication costs per request with
the origin's key cached. Run through bench/auth.sh (needs MXF_BUILDDIR)."""
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "t"))

import signedjson.key  # noqa: E402
import signedjson.sign  # noqa: E402

from conftest import SERVER_NAME, site_config, write_key  # noqa: E402
from mxftest.backend import Backend  # noqa: E402
from mxftest.env import BuildEnv  # noqa: E402
from mxftest.httpd import BASE_MODULES, Httpd  # noqa: E402
from mxftest.postgres import Postgres  # noqa: E402

N = int(os.environ.get("MXF_BENCH_REQUESTS", "3000"))


def timed(conn, path, headers):
    t0 = time.perf_counter()
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    resp.read()
    return time.perf_counter() - t0, resp.status


def main():
    env = BuildEnv()
    work = tempfile.mkdtemp(prefix="mxf-bench-")
    os.chmod(work, 0o755)
    pg = Postgres(os.path.join(work, "pg"))
    os.makedirs(pg.basedir)
    backend = Backend()
    h = Httpd(env, work, "httpd")
    try:
        pg.start()
        subprocess.run([env.cli, "db", "init", "--db", pg.conninfo()], check=True,
                       stdout=subprocess.DEVNULL)
        key = signedjson.key.generate_signing_key("bench")
        vk = signedjson.key.encode_verify_key_base64(signedjson.key.get_verify_key(key))
        pg.psql(pg.DBNAME,
                "INSERT INTO mxf_server_keys (server_name, key_id, public_key, valid_until_ts,"
                " source, fetched_ts) VALUES ('origin.bench', 'ed25519:bench',"
                f" decode('{vk}' || repeat('=', (4 - length('{vk}') % 4) % 4), 'base64'),"
                " 4102444800000, 'bench', (extract(epoch FROM now()) * 1000)::bigint)")
        backend.start()
        signing = write_key(os.path.join(work, "signing.key"))
        h.start(site_config(pg, signing, backend).replace(
            "MatrixFedSigningKey", "LogLevel warn\nMatrixFedSigningKey"),
            modules=BASE_MODULES + ["socache_shmcb"])
        path = "/_matrix/federation/v1/event/not-an-event-id"
        req = {"method": "GET", "uri": path, "origin": "origin.bench",
               "destination": SERVER_NAME}
        sig = signedjson.sign.sign_json(req, "origin.bench", key)[
            "signatures"]["origin.bench"]["ed25519:bench"]
        auth = {"Authorization": f'X-Matrix origin="origin.bench",destination="{SERVER_NAME}"'
                                 f',key="ed25519:bench",sig="{sig}"'}
        conn = http.client.HTTPConnection("127.0.0.1", h.port, timeout=10)
        for _ in range(200):                     # warm-up: connection, caches
            timed(conn, "/_matrix/federation/v1/version", {})
            _, st = timed(conn, path, auth)
            assert st == 400, st
        pub, sgn = [], []
        for _ in range(N):
            pub.append(timed(conn, "/_matrix/federation/v1/version", {})[0])
            sgn.append(timed(conn, path, auth)[0])
        conn.close()
        mp, ms = statistics.median(pub) * 1e6, statistics.median(sgn) * 1e6
        print(f"{N} requests each, one keep-alive connection, key cached:")
        print(f"  public /version             median {mp:8.1f} us")
        print(f"  signed /event (auth, 400)   median {ms:8.1f} us")
        print(f"  authentication adds         median {ms - mp:8.1f} us per request")
    finally:
        h.stop()
        backend.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
