# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The README's Quick start and "Building and installing into an existing
Apache" section and conf/, followed literally on a Debian 12 machine. Each
test names the text it holds the project to."""
import glob
import os
import re
import shutil
import socket
import subprocess

import pytest

from mxftest.env import free_port


def _read(*parts):
    with open(os.path.join(*parts)) as f:
        return f.read()


def _directive(text, name):
    m = re.search(rf"^\s*{name}\s+(\S+)", text, re.M)
    return m.group(1) if m else None


def test_123_001_pool_sizing_names_debian_defaults(build_env):
    """conf/matrix_fed.conf and the README: "child processes x DBDMax must stay
    below PostgreSQL max_connections". The example's DBDMax in a stock Debian
    apache2 (ThreadsPerChild 25, MaxRequestWorkers 150: up to 6 child
    processes) against a stock Debian PostgreSQL (max_connections 100) breaks
    that rule: both texts say so, with the numbers and the remedy."""
    conf = _read(build_env.srcdir, "conf", "matrix_fed.conf")
    readme = _read(build_env.srcdir, "README")
    dbdmax = int(_directive(conf, "DBDMax"))
    samples = sorted(glob.glob("/usr/share/postgresql/*/postgresql.conf.sample"))
    mpm_path = "/etc/apache2/mods-available/mpm_event.conf"
    if not samples or not os.path.exists(mpm_path):
        pytest.skip("no Debian apache2 and PostgreSQL here")
    mpm = _read(mpm_path)
    threads = int(_directive(mpm, "ThreadsPerChild"))
    workers = int(_directive(mpm, "MaxRequestWorkers"))
    children = -(-workers // threads)
    max_conn = int(re.search(r"^#?max_connections\s*=\s*(\d+)", _read(samples[-1]),
                             re.M).group(1))
    assert dbdmax >= threads, "DBDMax below Debian's ThreadsPerChild"
    if children * dbdmax >= max_conn:
        for name, text in (("conf/matrix_fed.conf", conf), ("README", readme)):
            flat = " ".join(text.replace("#", " ").split())
            for needle in (f"MaxRequestWorkers {workers}", f"ThreadsPerChild {threads}",
                           str(children * dbdmax), str(max_conn), "max_connections"):
                assert needle in flat, f"{name} does not say {needle!r}"


def test_123_002_conf_db_init_line_runs_as_written(build_env):
    """conf/matrix_fed.conf's `db init` line names the role of its DBDParams
    (www-data), as the README's Debian steps run it: from a root shell a
    line without one connects as "root", which has no role."""
    conf = _read(build_env.srcdir, "conf", "matrix_fed.conf")
    lines = [l for l in conf.splitlines() if "matrix-fed db init" in l]
    assert lines
    for l in lines:
        assert "runuser -u www-data" in l or "user=www-data" in l, (
            f"conf/matrix_fed.conf: {l.strip()!r} names no database role; as root it "
            f"fails with 'role \"root\" does not exist'")


def test_123_003_readme_debian_steps_show_the_import(build_env):
    """README, "Then, on Debian": the steps show `matrix-fed import` run as
    www-data, the role the next paragraph says runs `db init` and `import`
    "as above"."""
    readme = _read(build_env.srcdir, "README")
    start = readme.index("Then, on Debian:")
    steps = readme[start:readme.index("The database role of", start)]
    assert re.search(r"runuser -u www-data -- matrix-fed import", steps), (
        "the README's Debian steps show no `matrix-fed import` (as www-data), "
        "though the next paragraph says 'as above'")


def test_123_004_make_install_drops_the_la_as_the_makefile_means(build_env, tmp_path):
    """Makefile.am: httpd loads the .so and "the libtool archive is of no use
    in its module directory", so `make install` leaves it out (the README
    says what is installed), and installs include/mod_matrix_fed.h ("public
    header for other modules") into `apxs -q INCLUDEDIR`; `make uninstall`
    removes what it installed."""
    dest = tmp_path / "dest"
    r = subprocess.run(["make", "-C", build_env.builddir, "install", f"DESTDIR={dest}"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    moddir = subprocess.check_output(["apxs", "-q", "LIBEXECDIR"], text=True).strip()
    incdir = subprocess.check_output(["apxs", "-q", "INCLUDEDIR"], text=True).strip()
    installed = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert (dest / moddir.lstrip("/") / "mod_matrix_fed.so").exists(), installed
    problems = []
    if (dest / moddir.lstrip("/") / "mod_matrix_fed.la").exists():
        problems.append("mod_matrix_fed.la installed although make install is to leave it out")
    if not (dest / incdir.lstrip("/") / "mod_matrix_fed.h").exists():
        problems.append("include/mod_matrix_fed.h (public header for other modules) not installed")
    assert not problems, f"{problems}; installed: {installed}"
    r = subprocess.run(["make", "-C", build_env.builddir, "uninstall", f"DESTDIR={dest}"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    left = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert not left, f"make uninstall left {left}"


def _port_free(p):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", p)) != 0


@pytest.mark.skipif(os.geteuid() != 0, reason="the quick start runs as root")
def test_123_005_second_checkouts_demo_leaves_the_first_alone(build_env, workdir):
    """README, Quick start: "When a port is taken by something else it stops
    with a message before it removes anything (a demo running already is
    stopped first; the running demo of another checkout in the same
    MXF_DEMO_PG_DIR is left alone, with a message)". Two checkouts sharing
    one MXF_DEMO_PG_DIR (as both would share the default): the second's
    `scripts/quickstart demo` leaves the first's PostgreSQL running."""
    import pathlib
    tmp_path = pathlib.Path(workdir) / "t123-005"    # the postgres account must reach it
    tmp_path.mkdir()
    src = build_env.srcdir
    a = tmp_path / "a"
    b = tmp_path / "b"
    for d in (a, b):
        subprocess.run(["git", "clone", "-q", src, str(d)], check=True)
        for f in ("configure", "Makefile.in", "aclocal.m4"):
            shutil.copy2(os.path.join(src, f), d / f)
        if not build_env.asan:
            # A build directory of the same sources: make finds nothing to do.
            # (An ASan build is not the demo's: the demo builds its own.)
            shutil.copytree(build_env.builddir, d / "build", symlinks=True)
    pgdir = tmp_path / "demo-pg"
    env = dict(os.environ, MXF_DEMO_PORT=str(free_port()), MXF_DEMO_PG_PORT=str(free_port()),
               MXF_DEMO_PG_DIR=str(pgdir))
    os.chmod(tmp_path, 0o755)
    pg_port = int(env["MXF_DEMO_PG_PORT"])
    try:
        # (with an ASan build under test, this demo builds its own first)
        r = subprocess.run([str(a / "scripts/quickstart"), "demo"], env=env, capture_output=True,
                           text=True, timeout=900)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert not _port_free(pg_port)
        r = subprocess.run([str(b / "scripts/quickstart"), "demo"], env=env, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode != 0 and "holds the running demo of" in r.stderr, \
            r.stdout + r.stderr
        assert not _port_free(pg_port), (
            "the second checkout's demo, refused for the taken port, stopped the first "
            "checkout's PostgreSQL and left its httpd running without a database")
    finally:
        subprocess.run([str(a / "scripts/quickstart"), "stop"], env=env, capture_output=True)
        subprocess.run([str(b / "scripts/quickstart"), "stop"], env=env, capture_output=True)
