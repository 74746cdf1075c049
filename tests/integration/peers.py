"""The processes and probes the router, cluster, bus, fault and link tests share,
each defined once: the router and redis-server launchers, the gateway launcher
that survives a port race, Go builds of the client-library drivers, worker pids,
RSS and fd counts, and ports held so that nobody else can take them.

Ports. A port found free and closed (fk.free_port) can be taken by anyone before
the child binds it: an outgoing connection of another test picks its local port
from the same ephemeral range. So every launcher here checks that *its* process
(not merely someone) listens on the port, and when the child could not bind
("Address already in use") it starts again on a new port, unless the port was
fixed by the caller (a restart on the port the gateways know). A port that must
refuse connections is held bound without listening (hold_port), so no other
process can start listening there meanwhile.

The back-off numbers the README documents (uplink and bus: 0.1 s doubling to
5 s) are BACKOFF_MAX here: a test waiting for a reconnect waits longer than that.
Every wait has a deadline; everything started here is stopped by its pid.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

import fk

ROOT = fk.REPO

# src/uplink.c UPLINK_BACKOFF_MAX and src/bus.c BUS_BACKOFF_MAX: the longest wait
# between two reconnect attempts of a gateway worker (to the router or to Redis)
# or of a bus router (to Redis).
BACKOFF_MAX = 5.0
# A reconnect, its AUTH and the resync of a few thousand sessions: how long after
# the peer is back a test waits for the link to be whole again.
RESYNC_DEADLINE = BACKOFF_MAX + 3.0
# src/buslink.c: presence heartbeat TTL and refresh period.
HB_TTL = 10
HB_EVERY = 3

ADDR_IN_USE = "Address already in use"
START_ATTEMPTS = 5

wait_until = fk.wait_until
free_port = fk.free_port


# ---------------------------------------------------------------- ports

def hold_port():
    """(socket, port): a loopback port bound by this process and not listening.
    A connect to it is refused, and no other process can listen on it while the
    socket is open: the "dead" address a test points a peer at. Close it when done."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


def listen_socket(backlog=64, rcvbuf=None):
    """(socket, port): a loopback listener bound to a port the kernel chose, for
    fake peers that live in the test process (no race: bound before anyone is
    told the port). rcvbuf is set before listen(), so accepted sockets inherit it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind(("127.0.0.1", 0))
    s.listen(backlog)
    return s, s.getsockname()[1]


def _tcp_rows():
    """The rows of /proc/net/tcp and tcp6, split: [1] local, [2] remote address
    (hex "ADDR:PORT"), [3] state, [9] inode."""
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                rows = [line.split() for line in f]
        except OSError:
            continue
        yield from rows


def tcp_sockets(port, state):
    """Inodes of the TCP sockets whose local port is port, in state (a hex code of
    /proc/net/tcp: "0A" listening, "01" established)."""
    want = ":%04X" % port
    return [r[9] for r in _tcp_rows() if r[1].endswith(want) and r[3] == state]


def fds_without_peer(pid, port):
    """Open descriptors of pid, not counting its TCP sockets to remote port
    `port` (connections to a backend come and go with the load, a leak of
    client descriptors is what a test looks for); -1 if pid is gone."""
    want = ":%04X" % port
    to_peer = {"socket:[%s]" % r[9] for r in _tcp_rows() if r[2].endswith(want)}
    try:
        links = []
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                links.append(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
            except OSError:
                pass
    except OSError:
        return -1
    return sum(1 for l in links if l not in to_peer)


def established(port):
    """How many ESTABLISHED sockets have local port `port` (the server side of a
    listener's connections); read from /proc, so it opens no connection."""
    return len(tcp_sockets(port, "01"))


def _listening_inodes(port):
    return set(tcp_sockets(port, "0A"))


def pid_listens(pid, port):
    """True when process pid itself holds a socket listening on port."""
    inodes = _listening_inodes(port)
    if not inodes:
        return False
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return False
    for fd in fds:
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return True
    return False


class PortTaken(Exception):
    """The child could not bind its port (someone took it first)."""


def wait_own_listen(proc, port, timeout, what, log):
    """Waits until proc listens on port; PortTaken if it exited because the port
    was in use, AssertionError (with its log) if it exited otherwise or never
    listened. log() returns the child's log text."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            text = log()
            if ADDR_IN_USE in text or "Address in use" in text:
                raise PortTaken(port)
            raise AssertionError("%s exited with %s before listening on %d:\n%s"
                                 % (what, proc.returncode, port, text[-3000:]))
        if pid_listens(proc.pid, port):
            return
        if time.monotonic() > deadline:
            raise AssertionError("%s (pid %d) not listening on %d after %.0fs:\n%s"
                                 % (what, proc.pid, port, timeout, log()[-3000:]))
        time.sleep(0.02)


def read_text(*paths):
    out = ""
    for p in paths:
        try:
            with open(p, errors="replace") as f:
                out += f.read()
        except OSError:
            pass
    return out


# ---------------------------------------------------------------- process probes

def rss_kb(pid):
    """VmRSS of pid in KiB (0 if it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def nfds(pid):
    """Open file descriptors of pid (-1 if it is gone)."""
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


_SANITIZED = []


def sanitized():
    """True when FOOKING is an AddressSanitizer build: its quarantine keeps freed
    memory, so RSS says nothing there (fd counts still do)."""
    if not _SANITIZED:
        try:
            with open(str(fk.FOOKING), "rb") as f:
                data = f.read()
            _SANITIZED.append(b"__asan_init" in data or b"AddressSanitizer" in data)
        except OSError:
            _SANITIZED.append(False)
    return _SANITIZED[0]


def worker_index(pid):
    """N of a process titled "fooking: worker N", else None."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            title = f.read().split(b"\0")[0].strip().decode(errors="replace")
    except OSError:
        return None
    m = re.fullmatch(r"fooking: worker (\d+)", title)
    return int(m.group(1)) if m else None


def workers_by_index(gw):
    """{worker id: pid} of gateway gw's live workers."""
    out = {}
    for pid in gw.worker_pids():
        i = worker_index(pid)
        if i is not None:
            out[i] = pid
    return out


def worker_pid(gw, wid):
    """Pid of gateway gw's worker wid, or None."""
    return workers_by_index(gw).get(wid)


# ---------------------------------------------------------------- the router

class Router:
    """`fooking router.lua` (ROUTER = 1) on a loopback port, LOG_LEVEL 3 unless
    given. With port=None the port is chosen here and changed if another process
    takes it first; with a port, that port (a restart where gateways expect it).
    start() can be called again after the process died (same port)."""

    def __init__(self, tmpdir, port=None, **keys):
        self.dir = Path(tmpdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fixed_port = port is not None
        self.port = port or free_port()
        self.log = str(self.dir / "router.log")       # the path; read_log() reads it
        self.out = str(self.dir / "stdout")
        self.conf = str(self.dir / "router.lua")
        self.keys = {"ROUTER": 1, "HOST": "127.0.0.1", "LOG_FILE": self.log, "LOG_LEVEL": 3}
        self.keys.update(keys)
        self.proc = None
        self._outf = None

    def start(self, timeout=10.0):
        if self.proc is not None:
            self.fixed_port = True      # a restart: the gateways know this port
        for attempt in range(START_ATTEMPTS):
            self.keys["PORT"] = self.port
            fk.write_config(self.conf, self.keys)
            if self._outf:
                self._outf.close()
            self._outf = open(self.out, "ab")
            self.proc = subprocess.Popen([str(fk.FOOKING), self.conf], cwd=str(self.dir),
                                         stdin=subprocess.DEVNULL, stdout=self._outf,
                                         stderr=subprocess.STDOUT)
            try:
                wait_own_listen(self.proc, self.port, timeout, "router", self.read_log)
                return self
            except PortTaken:
                if self.fixed_port:
                    # The port the gateways know is taken: wait for it, bounded.
                    time.sleep(0.2)
                else:
                    self.port = free_port()
        raise AssertionError("router: port %d in use %d times in a row" % (self.port,
                                                                          START_ATTEMPTS))

    @property
    def pid(self):
        return self.proc.pid

    def read_log(self):
        return read_text(self.log, self.out)

    def log_lines(self, *needles):
        return [l for l in self.read_log().splitlines() if all(n in l for n in needles)]

    def wait_log(self, *needles, timeout=5.0):
        return wait_until(lambda: self.log_lines(*needles), timeout,
                          msg="a router log line with %r\n--- log:\n%s"
                          % (needles, self.read_log()[-3000:]))

    def nfds(self):
        return nfds(self.pid)

    def rss_kb(self):
        return rss_kb(self.pid)

    def sanitized(self):
        return sanitized()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout=10.0):
        """SIGTERM, wait; returns the exit status (AssertionError after killing
        it by pid if it hangs)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise AssertionError("router did not stop on SIGTERM within %ss" % timeout)
        if self._outf:
            self._outf.close()
            self._outf = None
        return self.proc.returncode


@pytest.fixture
def router(tmp_path):
    """Factory fixture: router(**keys) starts a Router; at teardown every one
    still running is stopped and must exit with status 0 on SIGTERM."""
    started = []

    def start(**keys):
        r = Router(tmp_path / ("router%d" % len(started)), **keys).start()
        started.append(r)
        return r

    yield start
    bad = []
    for r in started:
        if r.alive():
            rc = r.stop()
            if rc != 0:
                bad.append((rc, r.read_log()[-3000:]))
    assert not bad, "a router did not exit cleanly on SIGTERM: %r" % bad


# ---------------------------------------------------------------- gateways

class Gateway(fk.Gateway):
    """fk.Gateway whose start() makes sure its own master listens on the port,
    and starts again on a new port when another process took it first (unless
    PORT was given)."""

    def __init__(self, tmpdir, name="gw", **keys):
        self.fixed_port = bool(keys.get("PORT"))
        super().__init__(tmpdir, name, **keys)

    def start(self, wait_workers=True, timeout=10.0):
        for attempt in range(START_ATTEMPTS):
            try:
                super().start(wait_workers=False, timeout=timeout)
                wait_own_listen(self.proc, self.port, timeout, "fooking",
                                lambda: self.log() + self.output())
            except (AssertionError, PortTaken):
                taken = ADDR_IN_USE in self.log() + self.output()
                self.stop()
                if not taken or self.fixed_port:
                    raise
                self.log_file.write_text("")
                self.out_file.write_text("")
                self.port = self.keys["PORT"] = free_port()
                continue
            if wait_workers:
                wait_until(lambda: len(self.worker_pids()) >= self.worker_num, timeout,
                           msg="%d fooking workers" % self.worker_num)
            return self
        raise AssertionError("gateway: port in use %d times in a row" % START_ATTEMPTS)


# ---------------------------------------------------------------- redis-server

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """redis-server in the foreground on a loopback port, no persistence; extra
    directives as keyword arguments (requirepass="x"). Restartable on the same
    port (stop, start); the first start picks a new port if its was taken."""

    def __init__(self, tmpdir, port=None, **directives):
        self.dir = Path(tmpdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fixed_port = port is not None
        self.port = port or free_port()
        self.log_file = self.dir / "redis.log"
        self.directives = directives
        self.proc = None
        self.started = 0
        self._out = None

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def start(self, timeout=10.0):
        extra = []
        for k, v in self.directives.items():
            extra += ["--" + k, str(v)]
        for attempt in range(START_ATTEMPTS):
            self._out = open(self.dir / "redis.out", "ab")
            self.proc = subprocess.Popen(
                [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--daemonize", "no",
                 "--dir", str(self.dir), "--logfile", str(self.log_file)] + extra,
                stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT)
            try:
                wait_own_listen(self.proc, self.port, timeout, "redis-server", self.log)
                self.started += 1
                return self
            except PortTaken:
                self._out.close()
                if self.fixed_port or self.started:
                    time.sleep(0.2)
                else:
                    self.port = free_port()
        raise AssertionError("redis-server: port %d in use %d times" % (self.port,
                                                                       START_ATTEMPTS))

    def log(self):
        return read_text(self.log_file, self.dir / "redis.out")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            fk.stop_pid(self.proc, 10)
        if self._out:
            self._out.close()
            self._out = None

    def client(self, **kw):
        import redis
        kw.setdefault("socket_timeout", 5)
        return redis.Redis(host="127.0.0.1", port=self.port, **kw)


@pytest.fixture
def redis_server(tmp_path):
    """A RedisServer of the test's own (skips without redis-server or redis-py)."""
    if not os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server not installed")
    pytest.importorskip("redis")
    srv = RedisServer(tmp_path / "redis").start()
    yield srv
    srv.stop()


# ---------------------------------------------------------------- Go builds

GO = shutil.which("go") or "/usr/lib/go/bin/go"
# The fooking client package (example/clients/go) and, for its Redis and NATS
# transports, Debian's redigo (golang-github-gomodule-redigo-dev) and nats.go
# (golang-github-nats-io-go-nats-dev, with nkeys, nuid and golang.org/x/crypto)
# under /usr/share/gocode.
GO_CLIENT_PATH = "%s:/usr/share/gocode" % (ROOT / "example" / "clients" / "go")
REDIGO = "/usr/share/gocode/src/github.com/gomodule/redigo/redis"
NATS_GO = "/usr/share/gocode/src/github.com/nats-io/nats.go"
NATS_GO_DEPS = [NATS_GO] + ["/usr/share/gocode/src/" + d for d in (
    "github.com/nats-io/nkeys", "github.com/nats-io/nuid", "golang.org/x/crypto/ed25519")]


def skip_without_go_deps():
    """Skips the test unless what the fooking package imports is installed:
    redigo and nats.go with its dependencies."""
    if not os.path.isdir(REDIGO):
        pytest.skip("redigo not installed (golang-github-gomodule-redigo-dev)")
    for d in NATS_GO_DEPS:
        if not os.path.isdir(d):
            pytest.skip("%s not installed (golang-github-nats-io-go-nats-dev)" % d)


def go_build(outdir, source, name="drive", gopath=GO_CLIENT_PATH, need_redigo=True):
    """Builds one Go program (GOPATH mode, no cgo) from `source` (the text of a
    main.go) into outdir/name and returns its path; skips the test when go (or,
    with need_redigo, what the fooking package imports: redigo for its Redis
    half, nats.go for its NATS half) is not installed."""
    if not os.path.exists(GO):
        pytest.skip("go not installed")
    if need_redigo:
        skip_without_go_deps()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    src = outdir / "main.go"
    src.write_text(source)
    env = dict(os.environ, GO111MODULE="off", GOPATH=gopath, GOFLAGS="", CGO_ENABLED="0")
    home = env.get("HOME")
    if not env.get("GOCACHE") and (not home or not os.access(home, os.W_OK)):
        env["GOCACHE"] = str(outdir / "gocache")
    binary = outdir / name
    p = subprocess.run([GO, "build", "-o", str(binary), str(src)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, "go build failed:\n" + p.stdout + p.stderr
    return str(binary)


# ---------------------------------------------------------------- gateway configs

def gateway_keys(php, router_port=None, event_log=None, bus=None, **over):
    """Keys of a gateway in front of php-fpm (tests/backends/echo.php): SERVER_ID 1,
    one worker, EVENT_CONNECT = 1 (every client first gets "welcome <SID>"), and
    either a router link (router_port) or a bus (bus = a redis:// URL)."""
    from conftest import base_params
    p = base_params()
    if event_log:
        p["EVENT_LOG"] = str(event_log)
    keys = {"SERVER_ID": 1, "WORKER_NUM": 1, "BACKEND_SERVER": php.addr,
            "FASTCGI_PREFIX": "", "FASTCGI_PARAMS": p, "EVENT_CONNECT": 1}
    if router_port is not None:
        keys.update(ROUTER_HOST="127.0.0.1", ROUTER_PORT=router_port)
    if bus is not None:
        keys["BUS"] = bus
    keys.update(over)
    return keys


@pytest.fixture
def gateways(tmp_path):
    """Factory fixture: gateways(**keys) starts a peers.Gateway; all are stopped at
    teardown and must show no sanitizer report."""
    started = []

    def start(**keys):
        gw = Gateway(tmp_path / ("gw%d" % len(started)), name="gw%d" % len(started), **keys)
        started.append(gw)
        return gw.start()

    yield start
    problems = []
    for gw in started:
        gw.stop()
        problems += gw.sanitizer_report()
    assert not problems, "sanitizer reports from fooking:\n" + "\n".join(problems[:20])


def welcomed_clients(gw, n):
    """n fk.Client of gw, each with .sid read from its welcome message (EVENT_CONNECT)."""
    out = []
    for _ in range(n):
        c = gw.client()
        w = c.recv(10)
        assert w.startswith(b"welcome "), w
        c.sid = w[len(b"welcome "):]
        out.append(c)
    return out


def raise_nofile(want=65536):
    """Raises this process's soft RLIMIT_NOFILE (inherited by what it starts) to
    want or the hard limit; returns the new soft limit."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---------------------------------------------------------------- library drivers

def ops_json(ops):
    """The operations a library driver runs, as JSON: ("kick", sids), ("send_msg",
    sids, msg), ("send_all", msg), ("ch_add"|"ch_del", sids, channel), ("ch_pub",
    channel, msg), ("online", sid), ("info",); SIDs bytes or str, messages bytes
    (base64 on the wire)."""
    import base64
    import json

    def text(x):
        return x.decode() if isinstance(x, bytes) else x
    out = []
    for o in ops:
        j = {"op": o[0]}
        if o[0] in ("kick", "send_msg", "ch_add", "ch_del"):
            j["sids"] = [text(s) for s in o[1]]
        if o[0] == "send_msg":
            j["msg"] = base64.b64encode(o[2]).decode()
        if o[0] in ("ch_add", "ch_del"):
            j["ch"] = o[2]
        if o[0] == "send_all":
            j["msg"] = base64.b64encode(o[1]).decode()
        if o[0] == "ch_pub":
            j["ch"], j["msg"] = o[1], base64.b64encode(o[2]).decode()
        if o[0] == "online":
            j["sid"] = text(o[1])
        out.append(j)
    return json.dumps(out)


def norm_info(i):
    """A library's parsed INFO (JSON) -> rproto.parse_info's shape, gateways sorted."""
    return {"clients": i["clients"], "channels": i["channels"],
            "gateways": sorted((g["server"], g["worker"], g["clients"], g["channels"])
                               for g in i["gateways"])}


def make_cert(directory, name=""):
    """A self-signed certificate for CN=localhost (openssl CLI), for TLS tests:
    returns (cert path, key path) as c<name>.pem and k<name>.pem in directory."""
    d = Path(directory)
    cert, key = d / ("c%s.pem" % name), d / ("k%s.pem" % name)
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return cert, key


# ---------------------------------------------------------------- nats-server

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


class NatsCluster:
    """n nats-servers on loopback ports, clustered (each routes to the others),
    each with its HTTP monitoring port; stopped by pid. A server can be stopped
    (kill) and started again on the same ports. url(i...) is the BUS value that
    lists servers i... in that order (all of them, starting at i, by default);
    extra nats-server arguments (--user/--pass, --auth) as `args`."""

    def __init__(self, tmpdir, n=3, args=()):
        self.dir = Path(tmpdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.n = n
        self.args = list(args)
        self.ports = [free_port() for _ in range(n)]
        self.cports = [free_port() for _ in range(n)]
        self.mports = [free_port() for _ in range(n)]
        self.procs = [None] * n
        self.outs = [None] * n
        self.started = [False] * n

    def url(self, *order, auth=""):
        order = order or range(self.n)
        return "nats://" + (auth + "@" if auth else "") + ",".join(
            "127.0.0.1:%d" % self.ports[i] for i in order)

    def log(self, i):
        return read_text(self.dir / ("nats%d.log" % i))

    def start_one(self, i, timeout=10.0):
        """Starts server i. One of its three ports taken by someone else (they are
        picked free, then bound by nats-server a moment later): a first start takes
        new ports (the others' routes to the old cluster port do not matter, its own
        routes to them form the cluster); a restart waits and tries the same ones."""
        for attempt in range(START_ATTEMPTS):
            routes = ",".join("nats://127.0.0.1:%d" % self.cports[j]
                              for j in range(self.n) if j != i)
            log_at = len(self.log(i))
            self.outs[i] = open(self.dir / ("nats%d.log" % i), "ab")
            self.procs[i] = subprocess.Popen(
                [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.ports[i]),
                 "-m", str(self.mports[i]), "-n", "fk%d" % i, "--cluster_name", "fk",
                 "--cluster", "nats://127.0.0.1:%d" % self.cports[i], "--routes", routes]
                + self.args, stdin=subprocess.DEVNULL, stdout=self.outs[i],
                stderr=subprocess.STDOUT)
            try:
                wait_own_listen(self.procs[i], self.ports[i], timeout, "nats-server %d" % i,
                                lambda: self.log(i))
                self.started[i] = True
                return
            except (PortTaken, AssertionError):
                if "address already in use" not in self.log(i)[log_at:].lower():
                    raise
                self.outs[i].close()
                self.outs[i] = None
                if self.started[i]:
                    time.sleep(0.2)
                else:
                    self.ports[i], self.cports[i], self.mports[i] = (free_port(), free_port(),
                                                                     free_port())
        raise AssertionError("nats-server %d: a port in use %d times" % (i, START_ATTEMPTS))

    def start(self):
        for i in range(self.n):
            self.start_one(i)
        self.wait_routed()
        return self

    def monitor(self, i, path):
        import json
        import urllib.request
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.mports[i], path),
                                    timeout=5) as r:
            return json.loads(r.read())

    def wait_routed(self, timeout=15.0):
        """Every running server has a route to every other running one."""
        up = [i for i in range(self.n) if self.alive(i)]

        def ok():
            try:
                return all(self.monitor(i, "/routez")["num_routes"] >= len(up) - 1 for i in up)
            except OSError:
                return False
        fk.wait_until(ok, timeout, msg="the NATS cluster to form")

    def subscriptions(self):
        """{subject: number of client subscriptions} over every running server."""
        out = {}
        for i in range(self.n):
            if not self.alive(i):
                continue
            try:
                conns = self.monitor(i, "/connz?subs=1&limit=10000")["connections"] or []
            except OSError:
                continue
            for c in conns:
                for s in c.get("subscriptions_list") or []:
                    out[s] = out.get(s, 0) + 1
        return out

    def alive(self, i):
        return self.procs[i] is not None and self.procs[i].poll() is None

    def kill(self, i):
        if self.alive(i):
            self.procs[i].kill()
            self.procs[i].wait(10)
        if self.outs[i]:
            self.outs[i].close()
            self.outs[i] = None

    def stop(self):
        for i in range(self.n):
            if self.alive(i):
                fk.stop_pid(self.procs[i], 10)
            if self.outs[i]:
                self.outs[i].close()
                self.outs[i] = None
