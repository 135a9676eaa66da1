# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""A real httpd (Debian's apache2 binary) with the module loaded from the
build tree, configured per test class from a generated httpd.conf."""
import glob
import http.client
import json
import os
import pwd
import re
import signal
import socket
import subprocess
import time

from .env import free_port

BASE_MODULES = ["mpm_event", "authz_core", "authn_core", "log_config", "dbd",
                "proxy", "proxy_http"]

_LOG_LINE = re.compile(r"^\[[^\]]*\] \[(?:(?P<module>[\w-]+):)?(?P<level>\w+)\]")


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def json(self):
        return json.loads(self.body)

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return f"<Response {self.status} {self.body[:200]!r}>"


class Httpd:
    def __init__(self, env, basedir, name="httpd"):
        self.env = env
        self.dir = os.path.join(basedir, name)
        os.makedirs(self.dir, exist_ok=True)
        # Children run as www-data when we are root; they write sanitizer logs here.
        os.chmod(self.dir, 0o777)
        self.port = free_port()
        self.conf = os.path.join(self.dir, "httpd.conf")
        self.error_log = os.path.join(self.dir, "error.log")
        self.access_log = os.path.join(self.dir, "access.log")
        self.proc = None
        self._log_mark = 0
        self.extra_env = {}             # set for httpd's process (the benchmark's malloc setting)

    # ------------------------------------------------------------ config
    def render(self, site, modules=None, load_module=True, listen_extra=()):
        modules = BASE_MODULES if modules is None else modules
        lines = [
            f"ServerRoot {self.dir}",
            f"DefaultRuntimeDir {self.dir}",
            f"PidFile {self.dir}/httpd.pid",
            f"ErrorLog {self.error_log}",
            "LogLevel warn matrix_fed:debug",
            f"Listen 127.0.0.1:{self.port}",
            *[f"Listen 127.0.0.1:{p}" for p in listen_extra],
            "ServerName 127.0.0.1",
            "Timeout 30",
            "StartServers 1",
            "ServerLimit 2",
            "ThreadsPerChild 8",
            "MaxRequestWorkers 16",
        ]
        if os.geteuid() == 0:
            pw = pwd.getpwnam("www-data")
            lines += [f"User {pw.pw_name}", "Group www-data"]
        for m in modules:
            # Modules compiled into the binary (log_config on Debian) have no .so.
            if os.path.exists(self.env.system_module(m)):
                lines.append(f"LoadModule {m}_module {self.env.system_module(m)}")
        if load_module:
            lines.append(f"LoadModule matrix_fed_module {self.env.module}")
        if "log_config" in modules:
            lines += ['LogFormat "%h %u \\"%r\\" %>s %b" mxf',
                      f"CustomLog {self.access_log} mxf"]
        lines.append(site)
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        return self.conf

    # ------------------------------------------------------------ process
    def start(self, site, timeout=20, **kw):
        """Starts httpd with @site appended to the base configuration.
        Raises if it does not come up."""
        ok, out = self.try_start(site, timeout=timeout, **kw)
        if not ok:
            raise RuntimeError(f"httpd did not start:\n{out}\n{self.log_tail()}")

    def try_start(self, site, timeout=20, **kw):
        """Starts httpd; returns (started, console output)."""
        self.stop()
        self.render(site, **kw)
        self._log_mark = os.path.getsize(self.error_log) if os.path.exists(self.error_log) else 0
        self.proc = subprocess.Popen(
            [self.env.httpd, "-d", self.dir, "-f", self.conf, "-DFOREGROUND"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=dict(self.env.sanitizer_env(self.dir), **self.extra_env), start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read()
                self.proc = None
                return False, out
            if self._answers():
                return True, ""
            time.sleep(0.05)
        self.stop()
        return False, "timed out waiting for httpd"

    def config_test(self, site, **kw):
        """"apachectl configtest" of @site: (exit status, output)."""
        self.render(site, **kw)
        r = subprocess.run([self.env.httpd, "-d", self.dir, "-f", self.conf, "-t"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env=dict(self.env.sanitizer_env(self.dir), **self.extra_env),
                           timeout=60)
        return r.returncode, r.stdout

    def _answers(self):
        """Whether the server answers an HTTP request: a listening socket
        alone is not enough (it opens before the configuration is checked)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"GET /.mxf-probe HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                return s.recv(12).startswith(b"HTTP/")
        except OSError:
            return False

    def stop(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    # ------------------------------------------------------------ requests
    def request(self, method, path, body=None, headers=None, port=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            hdrs = dict(headers or {})
            if body is not None and "Content-Type" not in hdrs:
                hdrs["Content-Type"] = "application/json"
            conn.putrequest(method, path, skip_accept_encoding=True)
            for k, v in hdrs.items():
                if isinstance(v, (list, tuple)):
                    for one in v:
                        conn.putheader(k, one)
                else:
                    conn.putheader(k, v)
            data = body.encode() if isinstance(body, str) else body
            if data is not None:
                conn.putheader("Content-Length", str(len(data)))
            conn.endheaders(data)
            resp = conn.getresponse()
            raw = resp.read()
            headers = {k.lower(): v for k, v in resp.getheaders()}
            return Response(resp.status, headers, raw.decode("utf-8", "replace"))
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    # ------------------------------------------------------------ logs
    def log_tail(self, n=40):
        if not os.path.exists(self.error_log):
            return ""
        with open(self.error_log, errors="replace") as f:
            return "".join(f.readlines()[-n:])

    def new_log_lines(self):
        """Error-log lines written since the last start."""
        if not os.path.exists(self.error_log):
            return []
        with open(self.error_log, errors="replace") as f:
            f.seek(self._log_mark)
            return f.read().splitlines()

    def unexpected_log_lines(self, allowed=()):
        """Lines of level warn or worse that match none of the @allowed tags
        or regular expressions; AH00170-style shutdown notices are fine."""
        bad = []
        for line in self.new_log_lines():
            m = _LOG_LINE.match(line)
            if not m or m.group("level") not in ("warn", "error", "crit", "alert", "emerg"):
                continue
            if any(re.search(a, line) for a in allowed):
                continue
            bad.append(line)
        return bad

    def sanitizer_reports(self):
        return sorted(glob.glob(os.path.join(self.dir, "asan*")) +
                      glob.glob(os.path.join(self.dir, "ubsan*")))
