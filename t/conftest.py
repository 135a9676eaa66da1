# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Session fixtures: build paths, a throwaway PostgreSQL with the schema, a
stand-in homeserver, and httpd instances. Services start only for the tests
that ask for them and are always stopped; the working directory (logs, data)
is kept when a test fails and its path is printed."""
import base64
import os
import shutil
import subprocess
import tempfile

import pytest

from mxftest.backend import Backend
from mxftest.env import BuildEnv
from mxftest.httpd import Httpd
from mxftest.postgres import Postgres

# The signing key of the spec's test vectors (appendices): a known public key.
SPEC_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
SERVER_NAME = "test.example"

_failed = []


def pytest_runtest_makereport(item, call):
    if call.excinfo is not None and call.when in ("setup", "call"):
        _failed.append(item.nodeid)


@pytest.fixture(scope="session")
def build_env():
    return BuildEnv()


@pytest.fixture(scope="session")
def workdir():
    d = tempfile.mkdtemp(prefix="mxf-test-")
    os.chmod(d, 0o755)
    yield d
    if _failed:
        print(f"\nkept test logs and data in {d}")
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(workdir, build_env):
    pg = Postgres(os.path.join(workdir, "pg"))
    os.makedirs(pg.basedir)
    try:
        pg.start()
        subprocess.run([build_env.cli, "db", "init", "--db", pg.conninfo()], check=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=build_env.sanitizer_env(workdir))
        yield pg
    finally:
        pg.stop()


@pytest.fixture(scope="session")
def backend():
    b = Backend()
    b.start()
    yield b
    b.stop()


def write_key(path, seed=SPEC_SEED, version="1"):
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(f"ed25519 {version} {seed}\n")
    return path


@pytest.fixture(scope="session")
def signing_key(workdir):
    return write_key(os.path.join(workdir, "signing.key"))


def module_config(pg, key, server_name=SERVER_NAME):
    """The module's part of an operator's configuration: the database pool
    and the module on, with its server name and signing key."""
    return f"""
AllowEncodedSlashes NoDecode
DBDriver pgsql
DBDParams "{pg.conninfo()}"
DBDMin 0
DBDKeep 2
DBDMax 8
MatrixFederation On
MatrixFedServerName {server_name}
MatrixFedSigningKey {key}
"""


def site_config(pg, key, backend, server_name=SERVER_NAME, extra=""):
    """The configuration an operator writes: the module on a vhost that
    proxies the rest of /_matrix to the homeserver."""
    return module_config(pg, key, server_name) + f"""{extra}
ProxyPass /_matrix http://127.0.0.1:{backend.port}/_matrix nocanon
ProxyPass / http://127.0.0.1:{backend.port}/
"""


class HttpdFactory:
    def __init__(self, env, workdir):
        self.env = env
        self.workdir = workdir
        self.servers = []

    def new(self, name):
        h = Httpd(self.env, self.workdir, name)
        self.servers.append(h)
        return h

    def assert_start_fails(self, name, site, expect, **kw):
        """httpd refuses to start with configuration @site, and its output
        or error log says @expect; so does configtest (httpd -t), so that
        an operator who tests before a reload never takes the server down."""
        h = self.new(name)
        ok, out = h.try_start(site, timeout=15, **kw)
        h.stop()
        text = out + "\n".join(h.new_log_lines())
        assert not ok, f"httpd started with a broken configuration: {site[-300:]}"
        assert expect in text, (expect, text)
        status, out = h.config_test(site, **kw)
        assert status != 0, f"configtest passed a broken configuration: {site[-300:]}"
        assert expect in out, (expect, out)

    def stop_all(self):
        for h in self.servers:
            h.stop()


@pytest.fixture(scope="session")
def httpd_factory(build_env, workdir):
    f = HttpdFactory(build_env, workdir)
    yield f
    f.stop_all()
    reports = [r for h in f.servers for r in h.sanitizer_reports()]
    if reports:
        text = "".join(open(r, errors="replace").read() for r in reports)
        pytest.fail(f"sanitizer reports from httpd:\n{text}")


@pytest.fixture(scope="class")
def httpd(httpd_factory, postgres, signing_key, backend, request):
    """httpd serving the module with the standard site configuration."""
    h = httpd_factory.new(f"httpd-{request.cls.__name__ if request.cls else 'fn'}")
    extra = getattr(request.cls, "SITE_EXTRA", "")
    h.start(site_config(postgres, signing_key, backend, extra=extra))
    yield h
    h.stop()


def spec_public_key():
    import nacl.signing
    seed = base64.b64decode(SPEC_SEED + "=")
    return nacl.signing.SigningKey(seed).verify_key
