# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The foundation: the module loads into a real httpd next to a real
PostgreSQL, answers /version, claims only its own endpoints and lets every
other request through to the homeserver behind mod_proxy."""
import os
import subprocess

import pytest

from conftest import site_config, write_key

JSON = "application/json"


def assert_matrix_error(resp, status, errcode):
    assert resp.status == status, resp
    assert resp.header("Content-Type") == JSON, resp.headers
    body = resp.json
    assert body["errcode"] == errcode, body
    assert isinstance(body["error"], str) and body["error"], body


class TestVersion:
    def test_001_001_version(self, httpd, build_env):
        r = httpd.get("/_matrix/federation/v1/version")
        assert r.status == 200
        assert r.header("Content-Type") == JSON
        assert r.json == {"server": {"name": "mod_matrix_fed", "version": build_env.version}}

    def test_001_001b_version_ignores_authorization(self, httpd, build_env):
        """/version and the key endpoint need no authentication, and an
        Authorization header that would not verify (or not parse) is ignored
        there, as the reference homeserver ignores it."""
        for auth in ('X-Matrix origin="nobody.example",key="ed25519:x",sig="bm9wZQ"',
                     "X-Matrix garbage", "Bearer abc"):
            r = httpd.get("/_matrix/federation/v1/version", headers={"Authorization": auth})
            assert r.status == 200, (auth, r)
            assert r.json["server"]["name"] == "mod_matrix_fed"
            r = httpd.get("/_matrix/key/v2/server", headers={"Authorization": auth})
            assert r.status == 200, (auth, r)

    def test_001_002_head_version(self, httpd):
        r = httpd.request("HEAD", "/_matrix/federation/v1/version")
        assert r.status == 200
        assert r.header("Content-Type") == JSON
        assert r.body == ""

    def test_001_003_wrong_method_is_405(self, httpd):
        for method in ("POST", "PUT", "DELETE"):
            r = httpd.request(method, "/_matrix/federation/v1/version", body="{}")
            assert_matrix_error(r, 405, "M_UNRECOGNIZED")
            assert "GET" in r.header("Allow")

    @pytest.mark.parametrize("path,allow", [
        ("/_matrix/federation/v1/version", "GET, HEAD, OPTIONS"),
        ("/_matrix/key/v2/server", "GET, HEAD, OPTIONS"),
        ("/_matrix/federation/v1/get_missing_events/%21r%3Ahs1.example", "POST, OPTIONS"),
        ("/_matrix/federation/v1/event/%24abc", "GET, HEAD, OPTIONS"),
    ])
    def test_001_003b_options_and_cors(self, httpd, path, allow):
        """OPTIONS (a browser's CORS preflight) is answered 204 with the
        methods and no authentication, as the homeserver answers it; every
        answer of the module, errors included, carries the CORS headers of
        the client-server spec and is not to be cached."""
        r = httpd.request("OPTIONS", path)
        assert r.status == 204, r
        assert r.header("Allow") == allow
        assert r.body == ""
        for resp in (r, httpd.get("/_matrix/federation/v1/version"),
                     httpd.get("/_matrix/federation/v1/event/%24abc"),       # 401
                     httpd.get("/_matrix/federation/v1/version/extra")):     # 404
            assert resp.header("Access-Control-Allow-Origin") == "*", resp
            assert "OPTIONS" in resp.header("Access-Control-Allow-Methods")
            assert "Authorization" in resp.header("Access-Control-Allow-Headers")
        assert httpd.get("/_matrix/federation/v1/version").header("Cache-Control") == \
            "no-cache, no-store, must-revalidate"

    @pytest.mark.parametrize("path", [
        "/_matrix/federation/v1/version/",
        "/_matrix/federation/v1/version/extra",
        "/_matrix/federation/v1/version/a/b?x=1",
    ])
    def test_001_004_unknown_under_own_prefix_is_404(self, httpd, path):
        assert_matrix_error(httpd.get(path), 404, "M_UNRECOGNIZED")

    def test_001_005_error_log_clean(self, httpd):
        assert httpd.unexpected_log_lines() == []


class TestCoexistence:
    """Everything the module does not implement reaches the homeserver."""

    @pytest.mark.parametrize("method,path", [
        ("PUT", "/_matrix/federation/v1/send/txn1"),
        ("GET", "/_matrix/federation/v1/query/profile?user_id=%40a%3Ab"),
        ("GET", "/_matrix/federation/v2/version"),
        ("GET", "/_matrix/federation/v1/versions"),
        ("GET", "/_matrix/federation/unstable/version"),
        ("GET", "/_matrix/client/versions"),
        ("POST", "/_matrix/client/v3/login"),
        ("GET", "/_matrix/media/v3/config"),
        ("GET", "/.well-known/matrix/server"),
        ("GET", "/index.html"),
    ])
    def test_001_010_proxied(self, httpd, method, path):
        r = httpd.request(method, path, body="{}" if method in ("PUT", "POST") else None)
        assert r.status == 200, r
        body = r.json
        assert body["backend"] == "homeserver"
        assert body["method"] == method
        assert body["path"] == path
        if method in ("PUT", "POST"):
            assert body["body"] == "{}"


class TestMatrixErrorPages:
    """Error pages httpd makes under /_matrix/ are Matrix errors, also for
    paths the module does not answer; answers of other handlers pass."""

    @pytest.fixture(scope="class")
    def lone(self, httpd_factory, postgres, signing_key, backend):
        """The module with nothing behind it, and /_matrix/client/ proxied to
        a port where nothing listens."""
        dead = __import__("mxftest.env", fromlist=["free_port"]).free_port()
        site = "\n".join(l for l in site_config(postgres, signing_key, backend).splitlines()
                         if not l.startswith("ProxyPass"))
        site += f"\nProxyPass /_matrix/client/ http://127.0.0.1:{dead}/_matrix/client/\n"
        h = httpd_factory.new("httpd-lone")
        h.start(site)
        yield h
        h.stop()

    @pytest.mark.parametrize("method,path", [
        ("PUT", "/_matrix/federation/v1/send/txn1"),
        ("GET", "/_matrix/federation/v2/version"),
        ("GET", "/_matrix/media/v3/config"),
    ])
    def test_001_015_unknown_matrix_paths(self, lone, method, path):
        r = lone.request(method, path, body="{}" if method == "PUT" else None)
        assert r.status in (404, 405), r
        assert_matrix_error(r, r.status, "M_UNRECOGNIZED")

    def test_001_016_homeserver_unreachable(self, lone):
        r = lone.get("/_matrix/client/versions")
        assert r.status in (502, 503), r
        assert_matrix_error(r, r.status, "M_UNKNOWN")

    def test_001_017_other_paths_untouched(self, lone):
        r = lone.get("/index-nowhere.html")
        assert r.status == 404
        assert "json" not in (r.header("Content-Type") or "")


class TestVhosts:
    """MatrixFederation is per virtual host."""

    def test_001_020_off_vhost_falls_through(self, httpd_factory, postgres, signing_key,
                                             backend):
        h = httpd_factory.new("httpd-vhosts")
        other = __import__("mxftest.env", fromlist=["free_port"]).free_port()
        site = site_config(postgres, signing_key, backend) + f"""
<VirtualHost 127.0.0.1:{other}>
    ServerName other.example
    MatrixFederation Off
    ProxyPass / http://127.0.0.1:{backend.port}/
</VirtualHost>
"""
        h.start(site, listen_extra=[other])
        try:
            r = h.get("/_matrix/federation/v1/version")
            assert r.json["server"]["name"] == "mod_matrix_fed"
            r = h.get("/_matrix/federation/v1/version", port=other)
            assert r.json["backend"] == "homeserver"
        finally:
            h.stop()


class TestStartupErrors:
    """Configuration errors stop httpd at start-up with a clear message."""

    def _fails(self, httpd_factory, name, site, expect, **kw):
        httpd_factory.assert_start_fails(name, site, expect, **kw)

    def test_001_030_missing_key_file(self, httpd_factory, postgres, backend, workdir):
        missing = os.path.join(workdir, "no-such.key")
        self._fails(httpd_factory, "httpd-nokey", site_config(postgres, missing, backend),
                    "MatrixFedSigningKey: cannot open")

    def test_001_031_bad_key(self, httpd_factory, postgres, backend, workdir):
        bad = write_key(os.path.join(workdir, "bad.key"), seed="not-base64!")
        self._fails(httpd_factory, "httpd-badkey", site_config(postgres, bad, backend),
                    "seed is not unpadded base64 of 32 bytes")

    def test_001_032_without_mod_dbd(self, httpd_factory, postgres, signing_key, backend):
        site = site_config(postgres, signing_key, backend)
        site = "\n".join(l for l in site.splitlines() if not l.startswith("DBD"))
        self._fails(httpd_factory, "httpd-nodbd", site, "MatrixFederation needs mod_dbd",
                    modules=["mpm_event", "authz_core", "proxy", "proxy_http"])

    def test_001_032b_without_mod_authz_core(self, httpd_factory, postgres, signing_key,
                                            backend):
        from mxftest.httpd import BASE_MODULES
        self._fails(httpd_factory, "httpd-noauthz", site_config(postgres, signing_key, backend),
                    "MatrixFederation needs mod_authz_core",
                    modules=[m for m in BASE_MODULES if m != "authz_core"])

    def test_001_033_missing_server_name(self, httpd_factory, postgres, signing_key, backend):
        site = "\n".join(l for l in site_config(postgres, signing_key, backend).splitlines()
                         if not l.startswith("MatrixFedServerName"))
        self._fails(httpd_factory, "httpd-noname", site, "MatrixFedServerName is not set")

    @pytest.mark.parametrize("name", ["bad/name", "example.org:99999", "..:", "[::1",
                                      "example.org:"])
    def test_001_034_invalid_server_name(self, httpd_factory, postgres, signing_key, backend,
                                         name):
        self._fails(httpd_factory, "httpd-badname",
                    site_config(postgres, signing_key, backend, server_name=name),
                    f"MatrixFedServerName '{name}'")


class TestSchema:
    def test_001_040_db_init_is_idempotent(self, postgres, build_env):
        # The session fixture applied the schema once already.
        out = subprocess.run([build_env.cli, "db", "init", "--db", postgres.conninfo()],
                             check=True, stdout=subprocess.PIPE, text=True).stdout
        assert "up to date" in out
        versions = postgres.psql(postgres.DBNAME,
                                 "SELECT string_agg(version::text, ',' ORDER BY version)"
                                 " FROM mxf_schema_migrations")
        assert versions.split(",")[0] == "1"
        # Every migration of sql/ is applied, and its objects exist.
        migrations = sorted(f for f in os.listdir(os.path.join(build_env.srcdir, "sql"))
                            if f[:3].isdigit() and f.endswith(".sql"))
        assert versions.split(",") == [str(int(f[:3])) for f in migrations]
        tables = postgres.psql(postgres.DBNAME,
                               "SELECT string_agg(tablename, ',' ORDER BY tablename)"
                               " FROM pg_tables WHERE tablename LIKE 'mxf_%'").split(",")
        assert {"mxf_server_keys", "mxf_events", "mxf_event_edges", "mxf_auth_edges",
                "mxf_state_groups", "mxf_state_entries", "mxf_visibility",
                "mxf_rooms"} <= set(tables)

    def test_001_041_db_init_fresh_database(self, postgres, build_env):
        postgres.psql("postgres", "DROP DATABASE IF EXISTS mxf_fresh")
        postgres.psql("postgres", "CREATE DATABASE mxf_fresh")
        out = subprocess.run([build_env.cli, "db", "init", "--db",
                              postgres.conninfo("mxf_fresh")],
                             check=True, stdout=subprocess.PIPE, text=True).stdout
        assert "applied 001_server_keys" in out

    def test_001_042_db_init_bad_conninfo(self, build_env):
        r = subprocess.run([build_env.cli, "db", "init", "--db",
                            "host=127.0.0.1 port=1 connect_timeout=2"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert r.returncode == 1
        assert "cannot connect to the database" in r.stderr

    def test_001_043_cli_usage(self, build_env):
        r = subprocess.run([build_env.cli, "--help"], stdout=subprocess.PIPE, text=True)
        assert r.returncode == 0 and "db init --db CONNINFO" in r.stdout
        r = subprocess.run([build_env.cli, "frobnicate"], stderr=subprocess.PIPE, text=True)
        assert r.returncode == 2 and "unknown command" in r.stderr

    @pytest.mark.parametrize("cmd", [["import"], ["export"], ["gen-room"], ["keygen"],
                                     ["pubkey"], ["sign-request"], ["verify-event"], ["db"],
                                     ["db", "init"]])
    def test_001_044_every_command_has_help(self, build_env, cmd):
        """The README: every command has --help (usage on stdout, status 0),
        wherever it comes among the arguments."""
        r = subprocess.run([build_env.cli, *cmd, "--help"], capture_output=True, text=True)
        assert r.returncode == 0, (cmd, r.returncode, r.stderr)
        assert "Usage: matrix-fed" in r.stdout and "unexpected argument" not in r.stderr
