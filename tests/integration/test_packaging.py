"""What fooking ships besides the binary (README "Operations", "Shipped files"):
systemd units, the logrotate file, man pages, `make install`, `make deb`, the Go
module and the Composer package.

The units are checked by `systemd-analyze verify` (which works without systemd as
PID 1) and run for real the way systemd would: the unit's ExecStart under the
unit's CapabilityBoundingSet and NoNewPrivileges (setpriv), its KillSignal to
stop. Logrotate rotates a running gateway's log for real (`logrotate -f -s
state`). Nothing is installed on the system: every install goes to a temp dir.
"""

import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import fk

REPO = fk.REPO
MAN = REPO / "packaging" / "man"
UNITS = ("fooking.service", "fooking@.service", "fooking-router.service")


def need(*tools):
    for t in tools:
        if shutil.which(t) is None:
            pytest.skip("%s is not installed (scripts/deps.sh test installs it)" % t)


def make(*args, timeout=120):
    r = subprocess.run(["make", "--no-print-directory", "-C", str(REPO)] + list(args),
                       capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, "make %s failed:\n%s\n%s" % (" ".join(args), r.stdout, r.stderr)
    return r


def unit_settings(path):
    """{key: [values]} of a unit file's [Service] (and other) sections."""
    out = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        k, _, v = line.partition("=")
        out.setdefault(k.strip(), []).append(v.strip())
    return out


# ---------------------------------------------------------------- make install

@pytest.fixture(scope="module")
def installed():
    """`make install` into a temp prefix whose paths exist, so the installed units
    name a real binary (systemd-analyze checks) and the logrotate file real dirs."""
    d = Path(tempfile.mkdtemp(prefix="fooking-install-"))
    os.chmod(str(d), 0o755)  # workers running as nobody reopen the log under it
    prefix, etc, log = d / "usr", d / "etc", d / "log"
    make("install", "PREFIX=%s" % prefix, "SYSCONFDIR=%s" % etc, "LOGDIR=%s" % log)
    log.mkdir(mode=0o755)
    yield {"dir": d, "prefix": prefix, "etc": etc, "log": log,
           "bin": prefix / "bin" / "fooking", "units": prefix / "lib" / "systemd" / "system",
           "man": prefix / "share" / "man", "logrotate": etc / "logrotate.d" / "fooking"}
    shutil.rmtree(str(d), ignore_errors=True)


def test_make_install_layout(installed):
    p = installed["prefix"]
    want = [p / "bin" / "fooking",
            installed["etc"] / "fooking" / "config.lua", installed["etc"] / "fooking" / "router.lua",
            p / "share" / "doc" / "fooking" / "examples" / "config.lua",
            p / "share" / "doc" / "fooking" / "examples" / "router.lua",
            p / "share" / "doc" / "fooking" / "README.md",
            p / "share" / "man" / "man1" / "fooking.1.gz",
            p / "share" / "man" / "man5" / "fooking.lua.5.gz",
            installed["logrotate"]] + [installed["units"] / u for u in UNITS]
    missing = [str(f) for f in want if not f.is_file()]
    assert not missing, "not installed: %s" % missing
    assert os.access(str(p / "bin" / "fooking"), os.X_OK)
    assert (p / "share" / "doc" / "fooking" / "examples" / "config.lua").read_bytes() \
        == (REPO / "config.lua").read_bytes()
    # Every placeholder was filled in, with the install's own paths.
    for f in [installed["units"] / u for u in UNITS] + [installed["logrotate"]]:
        text = f.read_text()
        assert not re.findall(r"@[A-Z]+@", text), f
        assert str(installed["bin"]) in text, f
    gw = unit_settings(installed["units"] / "fooking.service")
    assert gw["ExecStart"] == ["%s -f %s/fooking/config.lua" % (installed["bin"], installed["etc"])]


def test_make_install_keeps_edited_configs(installed, tmp_path):
    conf = installed["etc"] / "fooking" / "config.lua"
    original = conf.read_text()
    conf.write_text(original + "-- edited by the admin\n")
    try:
        make("install", "PREFIX=%s" % installed["prefix"], "SYSCONFDIR=%s" % installed["etc"],
             "LOGDIR=%s" % installed["log"])
        assert conf.read_text().endswith("-- edited by the admin\n")
    finally:
        conf.write_text(original)


# ---------------------------------------------------------------- systemd units

def test_systemd_analyze_verify_is_clean(installed):
    need("systemd-analyze")
    units = installed["units"]
    env = dict(os.environ, MANPATH=str(installed["man"]), SYSTEMD_LOG_LEVEL="notice")
    # First prove verify really checks here (no systemd as PID 1 needed): a bad
    # unit must be reported.
    bad = installed["dir"] / "bad.service"
    bad.write_text("[Service]\nType=simple\nExecStart=%s x.lua\nKillSignal=SIGNOPE\n"
                   % installed["bin"])
    r = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True,
                       text=True, env=env, timeout=60)
    assert "SIGNOPE" in r.stdout + r.stderr, "systemd-analyze verify does not check: %r" % (r,)
    bad.unlink()
    r = subprocess.run(["systemd-analyze", "verify", "fooking.service", "fooking-router.service",
                        "fooking@test.service"], cwd=str(units), capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", \
        "systemd-analyze verify:\n%s\n%s" % (r.stdout, r.stderr)


@pytest.mark.parametrize("unit", UNITS)
def test_unit_settings(installed, unit):
    s = unit_settings(installed["units"] / unit)
    one = {k: v[-1] for k, v in s.items()}
    assert one["Type"] == "simple"
    assert one["Restart"] == "on-failure"
    assert one["KillMode"] == "mixed"
    assert int(one["LimitNOFILE"]) >= 65536
    assert one["NoNewPrivileges"] == "yes"
    assert one["ProtectSystem"] == "strict" and one["PrivateTmp"] == "yes"
    conf = s["ExecStart"][0].split()[-1]
    assert s["ExecStartPre"] == ["%s -t %s" % (installed["bin"], conf)]
    assert s["ExecReload"] == ["%s -t %s" % (installed["bin"], conf), "/bin/kill -HUP $MAINPID"]
    if unit == "fooking-router.service":
        assert one["KillSignal"] == "SIGTERM"  # the router has no SIGQUIT handler
    else:
        assert one["KillSignal"] == "SIGQUIT"
        # Above GRACEFUL_STOP_TIME's default (10 s) and the master's 12 s hard stop.
        assert int(one["TimeoutStopSec"]) >= 30
    for d in ("RuntimeDirectory", "LogsDirectory"):
        assert one[d] == "fooking"
    assert one["RuntimeDirectoryPreserve"] == "yes"  # shared by every fooking unit


def _low_port():
    """A free loopback port below 1024 (binding it needs CAP_NET_BIND_SERVICE)."""
    for port in range(1023, 900, -1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    pytest.skip("no free port below 1024")


def _setpriv_argv(unit_file):
    """setpriv arguments giving a root process what systemd would: the unit's
    CapabilityBoundingSet (and ambient/inheritable nothing) and NoNewPrivileges."""
    s = unit_settings(unit_file)
    caps = s["CapabilityBoundingSet"][-1].split()
    names = ",".join("+" + c.lower().replace("cap_", "") for c in caps)
    return ["setpriv", "--no-new-privs", "--bounding-set", "-all," + names,
            "--inh-caps", "-all"]


def _lines_with(path, needle):
    try:
        return [l for l in Path(path).read_text(errors="replace").splitlines() if needle in l]
    except OSError:
        return []


def _rotate(installed, state):
    r = subprocess.run(["logrotate", "-f", "-s", str(state), str(installed["logrotate"])],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, "logrotate:\n%s\n%s" % (r.stdout, r.stderr)


def test_gateway_unit_runs_confined_and_logrotate_reopens(installed, fake, tmp_path):
    """The gateway the way fooking.service runs it: as root under the unit's
    capability bounding set with NoNewPrivileges, workers as nobody, on a port
    below 1024. A real logrotate run (the shipped file) moves the log and makes
    master and workers write to the new file; reload works; the unit's
    KillSignal (SIGQUIT) stops it all; a restart reopens the log that now
    belongs to nobody."""
    need("logrotate")
    root = os.geteuid() == 0
    if root:
        need("setpriv")
    f = fake()
    name = "gw%d" % os.getpid()
    log = installed["log"] / ("%s.log" % name)
    conf = installed["etc"] / "fooking" / ("%s.lua" % name)
    port = _low_port() if root else fk.free_port()
    # DAEMONIZE = 1: the unit's -f must keep the master in the foreground anyway.
    keys = {"HOST": "127.0.0.1", "PORT": port, "DAEMONIZE": 1, "WORKER_NUM": 2,
            "LOG_FILE": str(log), "LOG_LEVEL": 3, "PID_FILE": str(installed["dir"] / ("%s.pid" % name)),
            "BACKEND_SERVER": f.addr,
            "FASTCGI_PARAMS": {"SCRIPT_FILENAME": "/x.php", "REQUEST_METHOD": "POST"}}
    if root:
        keys.update(USER="nobody", GROUP="nogroup")
    fk.write_config(conf, keys)
    unit = unit_settings(installed["units"] / "fooking.service")
    argv = [str(installed["bin"]), "-f", str(conf)]
    assert unit["ExecStart"][0].split()[:2] == argv[:2]
    pre = (_setpriv_argv(installed["units"] / "fooking.service") if root else [])
    state = tmp_path / "logrotate.state"
    out = open(str(tmp_path / "gw.out"), "ab")
    procs = []

    def start():
        check = subprocess.run(pre + [str(installed["bin"]), "-t", str(conf)],
                               capture_output=True, text=True, timeout=10)
        assert check.returncode == 0, check.stderr
        p = subprocess.Popen(pre + argv, stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT)
        procs.append(p)
        fk.wait_listening(port, p, 10, "fooking", tmp_path / "gw.out")
        fk.wait_until(lambda: len(fk.children_of(p.pid)) == 2, 10, msg="2 workers")
        return p

    try:
        p = start()
        workers = fk.children_of(p.pid)
        if root:
            for w in workers:
                with open("/proc/%d/status" % w) as st:
                    uid = [l for l in st if l.startswith("Uid:")][0].split()[1]
                assert int(uid) == 65534, "worker %d not running as nobody" % w
        with fk.Client(port) as c:
            assert c.request(b"before") == b"before"

        _rotate(installed, state)
        rotated = installed["log"] / ("%s.log.1" % name)
        assert rotated.is_file(), "logrotate did not rotate %s" % log
        fk.wait_until(lambda: log.is_file(), 5, msg="the master to create the new log")
        if root:
            assert log.stat().st_uid == 65534, "new log not given to USER"
        # Every worker reopened: each logs its own reload into the new file.
        subprocess.run([str(installed["bin"]), "-s", "reload", str(conf)], check=True, timeout=10)
        fk.wait_until(lambda: _lines_with(log, "master: reload"), 5,
                      msg="the master's reload line in the new log:\n%s" % (
                          log.read_text(errors="replace")[-2000:]))
        for w in workers:
            fk.wait_until(lambda: _lines_with(log, "[%d]" % w), 5,
                          msg="a line of worker %d in the new log:\n%s" % (
                              w, log.read_text(errors="replace")[-2000:]))
        assert not _lines_with(rotated, "master: reload")
        with fk.Client(port) as c:
            assert c.request(b"after") == b"after"

        # Stop as systemd does: KillSignal to the main process only.
        p.send_signal(getattr(signal, unit["KillSignal"][-1]))
        assert p.wait(15) == 0
        fk.wait_until(lambda: not any(fk.pid_alive(w) for w in workers), 5, msg="workers gone")

        # Started again: the master reopens a log owned by nobody.
        p = start()
        with fk.Client(port) as c:
            assert c.request(b"again") == b"again"
        # A second rotation: delaycompress compresses the first one now.
        _rotate(installed, state)
        fk.wait_until(lambda: (installed["log"] / ("%s.log.2.gz" % name)).is_file(), 5,
                      msg="%s.log.2.gz" % name)
        assert b"master started" in gzip.open(str(installed["log"] / ("%s.log.2.gz" % name))).read()
    finally:
        for p in procs:
            workers = fk.children_of(p.pid) if p.poll() is None else []
            fk.stop_pid(p)
            for w in workers:
                fk.stop_pid(w)
        out.close()
        conf.unlink()


# ---------------------------------------------------------------- man pages

MAN_PAGES = [MAN / "fooking.1", MAN / "fooking.lua.5"]


@pytest.mark.parametrize("page", MAN_PAGES, ids=lambda p: p.name)
def test_man_page_renders_without_warnings(page):
    need("groff", "man")
    r = subprocess.run(["groff", "-man", "-ww", "-z", str(page)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True, text=True,
                       timeout=30, env=dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0"))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert len(r.stdout.splitlines()) > 40


def _man_headings(page):
    """Names in the tag line of every .TP paragraph of a man page."""
    lines = page.read_text().splitlines()
    tags = [lines[i + 1] for i, l in enumerate(lines[:-1]) if l.startswith(".TP")]
    return set(re.findall(r"[A-Z][A-Z0-9_]+", " ".join(tags)))


def config_keys():
    """Every key README's configuration table, config.lua, router.lua and the
    parser's list of known keys (src/config.c) name."""
    keys = set()
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("## Configuration"):readme.index("## Clients")]
    for line in table.splitlines():
        if line.startswith("| `"):
            keys.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    for conf in ("config.lua", "router.lua"):
        for line in (REPO / conf).read_text().splitlines():
            m = re.match(r"(?:--\s*)?([A-Z][A-Z0-9_]+)\s*=", line)  # top level only
            if m:
                keys.add(m.group(1))
    src = (REPO / "src" / "config.c").read_text()
    m = re.search(r"config_keys\[\]\s*=\s*\{(.*?)NULL", src, re.S)
    assert m, "src/config.c: config_keys[] not found"
    keys.update(re.findall(r'"([A-Z][A-Z0-9_]+)"', m.group(1)))
    return keys


def test_fooking_lua_5_documents_every_config_key():
    keys = config_keys()
    assert {"PORT", "BACKEND_SERVER", "LINK_TIMEOUT", "ROUTER_OUTPUT_LIMIT"} <= keys
    missing = sorted(keys - _man_headings(MAN / "fooking.lua.5"))
    assert not missing, "fooking.lua.5 does not document: %s" % missing


def test_fooking_1_documents_every_option_and_signal():
    src = (REPO / "src" / "main.c").read_text()
    opts = re.search(r'getopt\(argc, argv, "([^"]+)"\)', src).group(1).replace(":", "")
    text = (MAN / "fooking.1").read_text()
    for o in opts:
        assert re.search(r"^\.BI? \\-%s\b" % o, text, re.M), "option -%s not documented" % o
    for word in re.findall(r'strcmp\(what, "(\w+)"\)', src):
        assert word in text, "-s %s not documented" % word
    for sig in ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1"):
        assert sig in text
    for sect in ("OPTIONS", "SIGNALS", "EXIT STATUS", "FILES"):
        assert re.search(r"^\.SH %s$" % sect, text, re.M), sect


# ---------------------------------------------------------------- make deb

def test_make_deb(tmp_path):
    need("dpkg-deb", "dpkg-shlibdeps")
    make("deb", "DEBDIR=%s" % tmp_path, timeout=180)
    debs = list(tmp_path.glob("fooking_*.deb"))
    assert len(debs) == 1, debs
    deb = str(debs[0])
    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True,
                             check=True).stdout
    files = {l.split()[-1].lstrip(".") for l in listing.splitlines()}
    want = {"/usr/bin/fooking", "/etc/fooking/config.lua", "/etc/fooking/router.lua",
            "/etc/logrotate.d/fooking", "/usr/share/man/man1/fooking.1.gz",
            "/usr/share/man/man5/fooking.lua.5.gz", "/usr/share/doc/fooking/README.md",
            "/usr/share/doc/fooking/examples/config.lua"} \
        | {"/lib/systemd/system/" + u for u in UNITS}
    assert want <= files, "missing from the package: %s" % sorted(want - files)
    assert not any("/usr/local" in f or str(REPO) in f for f in files)

    def field(name):
        return subprocess.run(["dpkg-deb", "-f", deb, name], capture_output=True, text=True,
                              check=True).stdout.strip()
    assert field("Package") == "fooking"
    version = subprocess.run([str(fk.FOOKING), "-v"], capture_output=True,
                             text=True).stdout.split()[1]
    assert field("Version") == version
    assert field("Architecture") == subprocess.run(["dpkg", "--print-architecture"],
                                                   capture_output=True, text=True).stdout.strip()
    depends = field("Depends")
    for lib in ("libevent-2.1-7", "libevent-openssl-2.1-7", "liblua5.3-0", "libhiredis0.14",
                "libssl3", "libjansson4", "libc6"):
        assert re.search(r"(^|, )%s\b" % re.escape(lib), depends), (lib, depends)
    info = subprocess.run(["dpkg-deb", "-I", deb], capture_output=True, text=True,
                          check=True).stdout
    assert "conffiles" in info

    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", deb, str(root)], check=True)
    ctl = tmp_path / "ctl"
    subprocess.run(["dpkg-deb", "-e", deb, str(ctl)], check=True)
    assert set((ctl / "conffiles").read_text().split()) == {
        "/etc/fooking/config.lua", "/etc/fooking/router.lua", "/etc/logrotate.d/fooking"}
    for script in ("postinst", "postrm"):
        r = subprocess.run(["sh", "-n", str(ctl / script)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    unit = (root / "lib" / "systemd" / "system" / "fooking.service").read_text()
    assert "ExecStart=/usr/bin/fooking -f /etc/fooking/config.lua" in unit
    assert not re.findall(r"@[A-Z]+@", (root / "etc" / "logrotate.d" / "fooking").read_text())
    # The packaged binary runs and checks the packaged configs.
    for conf in ("config.lua", "router.lua"):
        r = subprocess.run([str(root / "usr" / "bin" / "fooking"), "-t",
                            str(root / "etc" / "fooking" / conf)],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------- client packages

GO_MOD_DIR = REPO / "example" / "clients" / "go" / "src" / "fooking"


def test_go_client_is_a_module_that_builds_offline(tmp_path):
    """go.mod is valid and the package builds in module mode, offline: the
    consumer replaces the module with this directory, redigo and nats.go (and
    nats.go's own dependencies) with Debian's copies, and the modules that only
    their go.mod files name (testify, golang.org/x/tools, x/mod) with stubs;
    Debian's nuid has no go.mod, so it gets one."""
    need("go")
    gocode = Path("/usr/share/gocode/src")
    debian = {"github.com/gomodule/redigo": None, "github.com/nats-io/nats.go": None,
              "github.com/nats-io/nkeys": None, "github.com/nats-io/nuid": None,
              "golang.org/x/crypto": None, "golang.org/x/net": None, "golang.org/x/sys": None,
              "golang.org/x/term": None, "golang.org/x/text": None}
    for mod in debian:
        if not (gocode / mod).is_dir():
            pytest.skip("%s is not installed (scripts/deps.sh test)" % mod)
    env = dict(os.environ, GO111MODULE="on", GOFLAGS="-mod=mod", GOPROXY="off",
               GOSUMDB="off", CGO_ENABLED="0", GOPATH=str(tmp_path / "gopath"),
               GOCACHE=str(tmp_path / "cache"), GOMODCACHE=str(tmp_path / "gopath" / "mod"))
    r = subprocess.run(["go", "mod", "edit", "-json"], cwd=str(GO_MOD_DIR), capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    mod = json.loads(r.stdout)
    path = mod["Module"]["Path"]
    assert path.endswith("/fooking")
    assert {q["Path"] for q in mod.get("Require") or []} == {"github.com/gomodule/redigo",
                                                               "github.com/nats-io/nats.go"}
    stubs = tmp_path / "stubs"
    for m in list(debian):
        d = gocode / m
        if not (d / "go.mod").is_file():
            d = stubs / m
            shutil.copytree(gocode / m, d)
            (d / "go.mod").write_text("module %s\n\ngo 1.13\n" % m)
        debian[m] = d
    for m in ("github.com/stretchr/testify", "golang.org/x/tools", "golang.org/x/mod"):
        d = stubs / m
        d.mkdir(parents=True)
        (d / "go.mod").write_text("module %s\n\ngo 1.13\n" % m)
        debian[m] = d
    app = tmp_path / "app"
    app.mkdir()
    (app / "go.mod").write_text(
        "module fookingtest\n\ngo 1.19\n\nrequire %s v0.0.0\n\nreplace %s => %s\n\n" % (
            path, path, GO_MOD_DIR)
        + "".join("replace %s => %s\n" % kv for kv in sorted(debian.items())))
    (app / "main.go").write_text(
        'package main\n\nimport (\n\t"fmt"\n\n\t"%s"\n)\n\n'
        "func main() {\n\tfmt.Println(len(fooking.Encode(fooking.TypeKick, nil, nil)), "
        "fooking.DefaultBusPrefix, fooking.NATSName(\"a.b\"))\n}\n" % path)
    r = subprocess.run(["go", "run", "."], cwd=str(app), capture_output=True, text=True,
                       env=env, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ["8", "fooking:", "a%2Eb"]


def test_php_client_is_a_composer_package(tmp_path):
    """composer.json is valid JSON, names a library, and its classmap covers the
    files that define the classes (global: existing backends use them unqualified);
    loading the mapped files defines every class the README documents."""
    php_dir = REPO / "example" / "clients" / "php"
    meta = json.loads((php_dir / "composer.json").read_text())
    assert re.fullmatch(r"[a-z0-9_.-]+/[a-z0-9_.-]+", meta["name"])
    assert meta["type"] == "library"
    auto = meta["autoload"]
    classmap = auto["classmap"]
    defined = {}
    for php in php_dir.glob("*.php"):
        text = php.read_text()
        assert not re.search(r"^namespace\s", text, re.M), \
            "%s has a namespace: it belongs under the PSR-4 directory" % php.name
        for cls in re.findall(r"^(?:final\s+|abstract\s+)?class\s+(\w+)", text, re.M):
            defined[cls] = php.name
    assert set(defined) == {"FookingRouter", "FookingRouterError", "FookingRedis", "FookingReply"}
    for entry in classmap:
        assert (php_dir / entry).exists(), entry
    assert set(defined.values()) <= set(classmap)
    # PSR-4: Fooking\Router, Fooking\RouterError, Fooking\Redis and Fooking\Reply, each in
    # <dir>/<Name>.php
    psr4 = auto["psr-4"]
    assert list(psr4) == ["Fooking\\"], psr4
    src = php_dir / psr4["Fooking\\"]
    for name in ("Router", "RouterError", "Redis", "Reply"):
        text = (src / (name + ".php")).read_text()
        assert re.search(r"^namespace Fooking;", text, re.M), name
    need("php")
    # A PSR-4 autoloader (what Composer's does for this mapping) finds them all.
    autoload = ("spl_autoload_register(function ($c) { if (strncmp($c, 'Fooking\\\\', 8) == 0)"
                " require %s . '/' . substr($c, 8) . '.php'; });" % json.dumps(str(src)))
    r = subprocess.run(["php", "-r", autoload + 'echo class_exists("Fooking\\Router") ? 1 : 0, '
                        'class_exists("Fooking\\Redis") ? 1 : 0, '
                        'class_exists("Fooking\\RouterError") ? 1 : 0, '
                        'class_exists("Fooking\\Reply") ? 1 : 0, '
                        '(new ReflectionClass("Fooking\\Router"))->getName();'],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout == "1111FookingRouter", r.stdout + r.stderr
    loader = "".join("require_once %s;" % json.dumps(str(php_dir / e)) for e in classmap)
    r = subprocess.run(["php", "-r", loader + 'echo implode(",", array_map("class_exists", '
                        '["FookingRouter", "FookingRouterError", "FookingRedis", "FookingReply"]));'],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout == "1,1,1,1", r.stdout + r.stderr
