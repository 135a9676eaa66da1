# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""A throwaway PostgreSQL cluster on loopback for the test session.

initdb refuses to run as root, so when the tests run as root the cluster
belongs to the unprivileged 'postgres' account (created by Debian's
postgresql package).
"""
import glob
import os
import pwd
import shutil
import subprocess
import time

from .env import free_port


def _bindir():
    for cand in sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                       key=lambda p: int(p.split("/")[-2]), reverse=True):
        if os.access(os.path.join(cand, "initdb"), os.X_OK):
            return cand
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(os.path.realpath(initdb))
    raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")


class Postgres:
    USER = "mxf"
    DBNAME = "matrix_fed"

    def __init__(self, basedir, settings=()):
        """@settings: extra server settings ("name=value"), e.g. for benchmarks."""
        self.basedir = basedir
        self.settings = list(settings)
        self.datadir = os.path.join(basedir, "pgdata")
        self.sockdir = os.path.join(basedir, "pgsock")
        self.logfile = os.path.join(basedir, "postgres.log")
        self.port = free_port()
        self.bindir = _bindir()
        self._as = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args, **kw):
        return subprocess.run(self._as + list(args), check=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, **kw)

    def start(self):
        os.makedirs(self.sockdir, exist_ok=True)
        if self._as:
            pw = pwd.getpwnam("postgres")
            for d in (self.basedir, self.sockdir):
                os.chown(d, pw.pw_uid, pw.pw_gid)
            os.chmod(self.basedir, 0o755)
        self._run(os.path.join(self.bindir, "initdb"), "-D", self.datadir,
                  "-U", self.USER, "-A", "trust", "--no-sync", "-E", "UTF8",
                  "--locale=C")
        self._pg_start()
        self.psql("postgres", f"CREATE DATABASE {self.DBNAME}")

    def _pg_start(self):
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} "
                f"-c unix_socket_directories={self.sockdir} -c fsync=off "
                "-c max_connections=200" + "".join(f" -c {x}" for x in self.settings))
        self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir,
                  "-l", self.logfile, "-o", opts, "-w", "-t", "60", "start")

    def restart(self):
        """Starts the cluster again after stop() (same port, same data)."""
        self._pg_start()
        self.wait_ready()

    def stop(self):
        if os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
            subprocess.run(self._as + [os.path.join(self.bindir, "pg_ctl"), "-D",
                                       self.datadir, "-m", "immediate", "-w", "stop"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def conninfo(self, dbname=None):
        return (f"host=127.0.0.1 port={self.port} user={self.USER} "
                f"dbname={dbname or self.DBNAME} connect_timeout=5")

    def psql(self, dbname, sql):
        """Runs SQL; returns its unaligned, tuples-only output."""
        out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                              "-d", self.conninfo(dbname), "-c", sql],
                             check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        return out.stdout.strip()

    def wait_ready(self, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                self.psql(self.DBNAME, "SELECT 1")
                return
            except subprocess.CalledProcessError:
                time.sleep(0.1)
        raise RuntimeError("PostgreSQL did not come up")
