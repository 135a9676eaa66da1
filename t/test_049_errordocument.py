# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Error pages on a host that has ErrorDocument set, as many
production httpd configurations do (site-wide custom error pages, often a
local URL, sometimes a remote one).

README: "Every error the module produces is such a Matrix error body, never
an HTML page. So are the error pages httpd itself would make for any other
path under /_matrix/ on a host with MatrixFederation On (404 and 405 as
M_UNRECOGNIZED where nothing answers the path, 502 or 503 as M_UNKNOWN
where the homeserver behind ProxyPass cannot be reached)".

ErrorDocument would otherwise answer httpd's own errors there (a 403 of a
`Require` in a <Location>, a 413 of LimitRequestBody, the homeserver
unreachable) with its HTML page or, for a remote URL, a 302 redirect: for
requests under /_matrix/ on such a host the module sets httpd's own error
pages back, which become Matrix errors. A string ErrorDocument, and the
module's own errors, are Matrix errors either way."""
import json
import os

import pytest

from conftest import SERVER_NAME, module_config
from mxftest.matrix import gen_room, import_room, q, room_request

FED = "/_matrix/federation/v1"
MODULES = ["mpm_event", "authz_core", "authn_core", "authz_host", "log_config", "dbd",
           "proxy", "proxy_http", "mime"]
STATUSES = (400, 401, 403, 404, 405, 413, 500, 502, 503)


@pytest.fixture(scope="module")
def room(build_env, postgres, workdir):
    r = gen_room(build_env.cli, os.path.join(workdir, "errdoc-room"), room_version=10,
                 events=60, servers=2, seed=903)
    import_room(build_env.cli, postgres.conninfo(), r)
    return r


def error_documents(workdir, name, statuses, remote=False):
    """Site-wide error pages, as production configurations have them: an HTML
    page per status under a document root (a local ErrorDocument URL), or a
    remote URL; the configuration lines."""
    docroot = os.path.join(workdir, name)
    os.makedirs(os.path.join(docroot, "errors"), exist_ok=True)
    for s in statuses:
        with open(os.path.join(docroot, "errors", f"{s}.html"), "w") as f:
            f.write(f"<html><body>Custom error {s}</body></html>\n")
    ed = "\n".join(f"ErrorDocument {s} https://errors.example.net/{s}" if remote
                   else f"ErrorDocument {s} /errors/{s}.html" for s in statuses)
    return f"""
TypesConfig /etc/mime.types
DocumentRoot {docroot}
<Directory {docroot}>
  Require all granted
</Directory>
{ed}
"""


@pytest.fixture(scope="module", params=["local", "remote"])
def srv(request, httpd_factory, postgres, signing_key, workdir, room):
    ed = error_documents(workdir, f"docroot-{request.param}", STATUSES,
                         remote=request.param == "remote")
    h = httpd_factory.new(f"httpd-errdoc-{request.param}")
    site = f"""
{ed}
{module_config(postgres, signing_key)}
LimitRequestBody 2000
<Location /_matrix/federation/v1/state_ids>
  Require ip 192.0.2.1
</Location>
# the homeserver is down
ProxyPass /_matrix/client http://127.0.0.1:1/_matrix/client
"""
    h.start(site, modules=MODULES)
    yield h
    h.stop()
    assert h.sanitizer_reports() == []


def send(h, room, method, path, content=None, signed=True):
    status, headers, body = room_request(h.port, room, method, path, content,
                                         destination=SERVER_NAME if signed else None)
    return status, headers.get("content-type"), body


def assert_matrix_error(got, status, errcode):
    st, ctype, body = got
    assert (st, ctype) == (status, "application/json"), got
    assert json.loads(body)["errcode"] == errcode, got


def test_049_001_require_denial_on_module_endpoint(srv, room):
    path = f"{FED}/state_ids/{q(room.room_id)}?event_id={q(room.order[-1])}"
    assert_matrix_error(send(srv, room, "GET", path), 403, "M_FORBIDDEN")


def test_049_002_limit_request_body_on_get_missing_events(srv, room):
    content = {"earliest_events": [], "latest_events": ["$" + "x" * 3000]}
    path = f"{FED}/get_missing_events/{q(room.room_id)}"
    assert_matrix_error(send(srv, room, "POST", path, content), 413, "M_TOO_LARGE")


def test_049_003_other_matrix_paths(srv, room):
    assert_matrix_error(send(srv, room, "GET", f"{FED}/no_such_endpoint", signed=False),
                        404, "M_UNRECOGNIZED")
    assert_matrix_error(send(srv, room, "GET", "/_matrix/client/versions", signed=False),
                        503, "M_UNKNOWN")


def test_049_004_module_errors_unaffected(srv, room):
    """What the module sends itself is already right (control)."""
    assert_matrix_error(send(srv, room, "GET", f"{FED}/event/%24nope"), 404, "M_NOT_FOUND")
    assert_matrix_error(send(srv, room, "GET", f"{FED}/event/%24nope", signed=False),
                        401, "M_UNAUTHORIZED")


@pytest.fixture(scope="module")
def srv_redirect(httpd_factory, postgres, signing_key, workdir, room):
    """A host whose old paths under /_matrix/ are rewritten in directory
    context, which httpd answers with an internal redirect (a new request
    for the new path, after its post_read_request hooks have run again)."""
    ed = error_documents(workdir, "docroot-redirect", STATUSES)
    docroot = os.path.join(workdir, "docroot-redirect")
    h = httpd_factory.new("httpd-errdoc-redirect")
    site = f"""
{ed}
{module_config(postgres, signing_key)}
<Directory {docroot}>
  RewriteEngine On
  RewriteRule ^_matrix/old/(.*)$ /_matrix/federation/v1/$1
</Directory>
<Location /_matrix/federation/v1/state_ids>
  Require ip 192.0.2.1
</Location>
"""
    h.start(site, modules=MODULES + ["rewrite"])
    yield h
    h.stop()
    assert h.sanitizer_reports() == []


def test_049_005_after_an_internal_redirect(srv_redirect, room):
    """The error of the request an internal redirect makes is a Matrix error
    too, not the host's ErrorDocument page (the custom responses are set
    again for the new request)."""
    st, _, body = send(srv_redirect, room, "GET", f"{FED}/event/{q(room.order[-1])}")
    assert st == 200, body
    path = f"/_matrix/old/state_ids/{q(room.room_id)}?event_id={q(room.order[-1])}"
    got = send(srv_redirect, room, "GET", path, signed=False)
    # Only the new request is under the <Location> that denies: a 403 says
    # the redirect was made.
    assert_matrix_error(got, 403, "M_FORBIDDEN")
