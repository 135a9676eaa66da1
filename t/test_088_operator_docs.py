# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The README's "Building and installing into an existing Apache" section,
conf/ and the --help texts, followed literally as a new operator would.

Each test names the README / conf text it holds the project to."""
import os
import re
import subprocess

import pytest

# What a stock Debian 12 apache2 has enabled (/etc/apache2/mods-enabled after
# "apt-get install apache2"), before the README's a2enmod line.
DEBIAN_DEFAULT_MODS = [
    "access_compat", "alias", "auth_basic", "authn_core", "authn_file", "authz_core",
    "authz_host", "authz_user", "autoindex", "deflate", "dir", "env", "filter", "mime",
    "mpm_event", "negotiation", "reqtimeout", "setenvif", "status", "log_config",
]


def _readme(build_env):
    with open(os.path.join(build_env.srcdir, "README")) as f:
        return f.read()


def _a2enmod_modules(build_env):
    """The modules the README's Debian steps enable, with a2enmod's
    "Depends:" resolution (from /etc/apache2/mods-available, or conf/ for
    the module's own .load file)."""
    m = re.search(r"^\s+a2enmod ([^\n]+)$", _readme(build_env), re.M)
    assert m, "the README's Debian steps have no a2enmod line"
    order = []

    def enable(mod):
        if mod in order:
            return
        for load in (os.path.join(build_env.srcdir, "conf", f"{mod}.load"),
                     f"/etc/apache2/mods-available/{mod}.load"):
            if os.path.exists(load):
                with open(load) as f:
                    dep = re.search(r"^# Depends: (.+)$", f.read(), re.M)
                for d in (dep.group(1).split() if dep else []):
                    enable(d)
                break
        order.append(mod)

    for mod in m.group(1).split("#")[0].split():
        enable(mod)
    # a2enmod puts dependencies first; httpd loads mods-enabled alphabetically,
    # which also puts dbd before matrix_fed.
    return [m for m in order if m != "matrix_fed"]


def test_088_001_conf_example_passes_configtest_with_readme_modules(httpd_factory,
                                                                    build_env, workdir):
    """README, "Then, on Debian": cp matrix_fed.load; a2enmod dbd matrix_fed;
    ...; "add the directives below (see conf/matrix_fed.conf) to your
    federation vhost"; apachectl configtest. conf/matrix_fed.conf says: "Put
    this inside the <VirtualHost> that serves federation". Doing exactly that
    on a stock Debian apache2 passes configtest with the modules the steps
    enable (the example's ProxyPass needs mod_proxy_http)."""
    from conftest import write_key
    key = write_key(os.path.join(workdir, "conf-example.key"))
    with open(os.path.join(build_env.srcdir, "conf", "matrix_fed.conf")) as f:
        conf = f.read().replace("/etc/matrix-fed/signing.key", key)
    site = f"<VirtualHost *:*>\nServerName fed.example\n{conf}\n</VirtualHost>\n"
    mods = DEBIAN_DEFAULT_MODS + [m for m in _a2enmod_modules(build_env)
                                  if m not in DEBIAN_DEFAULT_MODS]
    h = httpd_factory.new("httpd-conf-example")
    status, out = h.config_test(site, modules=mods)
    assert status == 0, (mods, out)


def test_088_002_conf_keygen_line_works_on_a_fresh_machine(build_env, tmp_path):
    """conf/matrix_fed.conf: "Only for a server with no key yet: matrix-fed
    keygen /etc/matrix-fed/signing.key". On a fresh machine /etc/matrix-fed
    does not exist: the conf says to create it first (else keygen would fail
    "No such file or directory")."""
    with open(os.path.join(build_env.srcdir, "conf", "matrix_fed.conf")) as f:
        conf = f.read()
    before_keygen = conf[:conf.index("matrix-fed keygen /etc/matrix-fed/")]
    if re.search(r"(mkdir|install -d)[^\n]*/etc/matrix-fed", before_keygen):
        return                          # the conf says to create the directory
    target = tmp_path / "etc" / "matrix-fed" / "signing.key"
    r = subprocess.run([build_env.cli, "keygen", str(target)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_088_003_top_help_agrees_with_readme_on_db_init(build_env):
    """README: `db init --db CONNINFO [--lock-timeout S] [--lock-tries N]`;
    `matrix-fed --help` ("lists every command") shows the same."""
    r = subprocess.run([build_env.cli, "--help"], capture_output=True, text=True)
    assert "--lock-timeout" in r.stdout and "--lock-tries" in r.stdout, r.stdout


def test_088_004_sign_request_body_without_post_is_refused(build_env, workdir):
    """README: "a body sent with any other method [than POST or PUT] is not
    part of the signed request": sign-request refuses --body without
    --method (GET), whose header the module would reject with that body."""
    from conftest import write_key
    key = write_key(os.path.join(workdir, "sign.key"))
    r = subprocess.run([build_env.cli, "sign-request", "--key", key, "--origin", "a.example",
                        "--destination", "b.example", "--body", '{"a":1}',
                        "/_matrix/federation/v1/event/$x"], capture_output=True, text=True)
    assert r.returncode != 0, r.stdout


def test_088_005_export_usage_like_the_other_commands(build_env):
    """Like every other command, `matrix-fed export` without its required
    options prints its Usage."""
    r = subprocess.run([build_env.cli, "export"], capture_output=True, text=True)
    assert r.returncode == 2
    assert "Usage: matrix-fed export" in r.stderr + r.stdout, r.stderr


@pytest.mark.parametrize("form", ["object", "array", "lines", "notary"])
def test_088_007_import_keys_file_forms(build_env, postgres, tmp_path, form):
    """`import --help`: "--keys FILE holds /_matrix/key/v2/server or notary
    (/_matrix/key/v2/query) responses (one JSON object, an array of them, or
    one per line)". Each form lets --require-signatures import a generated
    room."""
    import json
    room = tmp_path / "room"
    subprocess.run([build_env.cli, "gen-room", "--out", str(room), "--events", "30",
                    "--servers", "2", "--seed", "901"], check=True, capture_output=True)
    docs = json.load(open(room / "keys" / "all.json"))["server_keys"]
    keys = tmp_path / "keys.json"
    if form == "object":
        files = []
        for i, d in enumerate(docs):
            p = tmp_path / f"k{i}.json"
            p.write_text(json.dumps(d))
            files += ["--keys", str(p)]
    else:
        keys.write_text({"array": json.dumps(docs),
                         "lines": "\n".join(json.dumps(d) for d in docs) + "\n",
                         "notary": json.dumps({"server_keys": docs})}[form])
        files = ["--keys", str(keys)]
    db = f"keysform_{form}"
    postgres.psql("postgres", f"CREATE DATABASE {db}")
    subprocess.run([build_env.cli, "db", "init", "--db", postgres.conninfo(db)], check=True,
                   capture_output=True)
    r = subprocess.run([build_env.cli, "import", "--db", postgres.conninfo(db), *files,
                        "--require-signatures", "--quiet", str(room / "room.jsonl")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "30 verified" in r.stdout, r.stdout


@pytest.mark.parametrize("args", [
    ["import", "--db", "x", "--threads"],
    ["import", "--db", "x", "--keys"],
    ["import", "--db", "x", "--batch-events"],
    ["import", "--db"],
    ["export", "--db", "x", "--room", "r", "--out"],
    ["export", "--db", "x", "--room"],
    ["db", "init", "--db"],
])
def test_088_008_option_without_value_is_named_as_such(build_env, args):
    """Every command says "option --X needs a value" when one of its options
    ends the command line (not "unknown option" or "unexpected argument")."""
    r = subprocess.run([build_env.cli, *args], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 2
    assert "needs a value" in r.stderr, r.stderr
