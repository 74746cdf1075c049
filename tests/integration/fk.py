"""Helpers for fooking's integration tests: ports, waiting, processes, the gateway,
php-fpm, the Go echo backend and a length-prefixed client.

Rules kept here: nothing sleeps blindly (wait_until polls a condition with a
deadline), and every process is started by us and stopped by its pid.
"""

import glob
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FOOKING = Path(os.environ.get("FOOKING", REPO / "fooking"))
BACKENDS = REPO / "tests" / "backends"
ECHO_PHP = BACKENDS / "echo.php"
GOECHO_SRC = BACKENDS / "goecho"


# ---------------------------------------------------------------- waiting

def wait_until(cond, timeout=5.0, interval=0.02, msg=None):
    """Polls cond() until it returns a truthy value (returned) or the deadline passes
    (AssertionError naming msg or the condition)."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s"
                                 % (timeout, msg or getattr(cond, "__name__", "condition")))
        time.sleep(interval)


def wait_equal(what, fn, want, timeout=5.0):
    """Asks fn() until it answers want, within timeout (AssertionError naming
    what, the wanted and the last answer)."""
    last = [None]

    def ok():
        last[0] = fn()
        return last[0] == want
    try:
        wait_until(ok, timeout, msg=what)
    except AssertionError:
        raise AssertionError("%s: wanted %r, last %r" % (what, want, last[0]))


# ---------------------------------------------------------------- ports

def free_port():
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_listening(port):
    """True when some socket is in LISTEN state on port (reads /proc/net/tcp{,6},
    so checking does not open a connection a backend or gateway would count)."""
    want = ":%04X" % port
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[1].endswith(want) and parts[3] == "0A":
                        return True
        except OSError:
            pass
    return False


def wait_listening(port, proc=None, timeout=10.0, what="server", output=None):
    def ready():
        if proc is not None and proc.poll() is not None:
            extra = ""
            if output and os.path.exists(output):
                extra = "\n" + Path(output).read_text(errors="replace")[-3000:]
            raise AssertionError("%s exited with %s before listening on %d%s"
                                 % (what, proc.returncode, port, extra))
        return port_listening(port)
    wait_until(ready, timeout, msg="%s to listen on port %d" % (what, port))


# ---------------------------------------------------------------- processes

def pid_alive(pid):
    """True if pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def children_of(ppid):
    """Pids of the live (non-zombie) processes whose parent is ppid."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == ppid and fields[0] not in ("Z", "X"):
            out.append(int(d))
    return sorted(out)


def stop_pid(proc_or_pid, timeout=5.0, sig=signal.SIGTERM):
    """Sends sig, waits up to timeout for the process to go, then SIGKILL.
    Returns True if it went away on sig alone."""
    if isinstance(proc_or_pid, subprocess.Popen):
        proc = proc_or_pid
        if proc.poll() is not None:
            return True
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            return True
        try:
            proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            return False
    pid = proc_or_pid
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    try:
        wait_until(lambda: not pid_alive(pid), timeout, msg="pid %d to exit" % pid)
        return True
    except AssertionError:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return False


# ---------------------------------------------------------------- Lua config

def lua_value(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (str, bytes)):
        return lua_quote(v)
    if isinstance(v, dict):
        return "{" + ", ".join("[%s] = %s" % (lua_value(k), lua_value(x))
                               for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "{" + ", ".join(lua_value(x) for x in v) + "}"
    raise TypeError("no Lua form for %r" % (v,))


def lua_quote(s):
    if isinstance(s, str):
        s = s.encode()
    out = ['"']
    for b in s:
        c = chr(b)
        if c in '"\\':
            out.append("\\" + c)
        elif 32 <= b < 127:
            out.append(c)
        else:
            out.append("\\%03d" % b)
    out.append('"')
    return "".join(out)


def write_config(path, keys):
    """Writes a Lua config file setting each key of the dict (None values are left out,
    a value of type `Raw` is written verbatim)."""
    lines = ["-- written by tests/integration/fk.py"]
    for k, v in keys.items():
        if v is None:
            continue
        lines.append("%s = %s" % (k, v.text if isinstance(v, Raw) else lua_value(v)))
    Path(path).write_text("\n".join(lines) + "\n")
    return path


class Raw:
    """A config value written as-is (to test malformed configs)."""

    def __init__(self, text):
        self.text = text


# ---------------------------------------------------------------- gateway

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


class Gateway:
    """A fooking gateway (ROUTER=0) with a generated config.lua in tmpdir.

        gw = Gateway(tmp_path, BACKEND_SERVER="127.0.0.1:9000", WORKER_NUM=2).start()
        gw.port, gw.pid, gw.worker_pids(), gw.log(), gw.stop()
    """

    def __init__(self, tmpdir, name="gw", **keys):
        self.dir = Path(tmpdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self._port_ours = "PORT" not in keys  # chosen here: may be chosen again
        self.port = keys.pop("PORT", None) or free_port()
        self.conf = self.dir / ("%s.lua" % name)
        self.log_file = self.dir / ("%s.log" % name)
        self.out_file = self.dir / ("%s.out" % name)
        self.keys = {"HOST": "127.0.0.1", "PORT": self.port, "DAEMONIZE": 0,
                     "LOG_FILE": str(self.log_file), "LOG_LEVEL": 2, "ROUTER": 0,
                     "WORKER_NUM": 1}
        self.keys.update(keys)
        self.proc = None
        self.known_pids = set()

    @property
    def worker_num(self):
        return int(self.keys.get("WORKER_NUM") or 1)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self, wait_workers=True, timeout=10.0):
        if not FOOKING.exists():
            raise AssertionError("%s not built (run make)" % FOOKING)
        # free_port() cannot reserve the port: another socket (an outgoing
        # connection's ephemeral port) may take it before the gateway binds.
        # Then the gateway says so and exits, and it is started on another.
        for attempt in range(3):
            write_config(self.conf, self.keys)
            self._out = open(self.out_file, "ab")
            self.proc = subprocess.Popen([str(FOOKING), str(self.conf)], cwd=str(self.dir),
                                         stdin=subprocess.DEVNULL, stdout=self._out,
                                         stderr=subprocess.STDOUT)
            self.known_pids.add(self.proc.pid)
            try:
                wait_listening(self.port, self.proc, timeout, "fooking", self.out_file)
                break
            except AssertionError:
                taken = "Address already in use" in (self.log() + self.output())
                if not taken or self.proc.poll() is None or attempt == 2 \
                        or self.keys.get("PORT") != self.port or not self._port_ours:
                    raise
                self._out.close()
                self.port = self.keys["PORT"] = free_port()
        if wait_workers:
            wait_until(lambda: len(self.worker_pids()) >= self.worker_num, timeout,
                       msg="%d fooking workers" % self.worker_num)
        return self

    def worker_pids(self):
        if not self.proc or self.proc.poll() is not None:
            return []
        pids = children_of(self.proc.pid)
        self.known_pids.update(pids)
        return pids

    def log(self):
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def output(self):
        try:
            return self.out_file.read_text(errors="replace")
        except OSError:
            return ""

    def log_lines(self, *needles):
        """Log lines (log file and stdout/stderr) containing every needle."""
        text = self.log() + "\n" + self.output()
        return [l for l in text.splitlines() if all(n in l for n in needles)]

    def wait_log(self, *needles, timeout=5.0):
        return wait_until(lambda: self.log_lines(*needles), timeout,
                          msg="a log line with %r\n--- log:\n%s" % (needles, self.log()[-3000:]))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=5.0):
        """SIGTERM to the master, wait, SIGKILL after the deadline; workers that
        outlive their master are killed by pid. Returns True if all went on SIGTERM."""
        if self.proc is None:
            return True
        workers = set(self.worker_pids()) | (self.known_pids - {self.proc.pid})
        clean = stop_pid(self.proc, timeout)
        deadline = time.monotonic() + timeout
        for pid in workers:
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if pid_alive(pid):
                clean = False
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._out.close()
        return clean

    def sanitizer_report(self):
        text = self.output() + self.log()
        return [l for l in text.splitlines() if any(m in l for m in SANITIZER_MARKS)]

    def client(self, **kw):
        return Client(self.port, **kw)


def run_check(conf_path, timeout=10):
    """`fooking -t conf` -> CompletedProcess (text)."""
    return subprocess.run([str(FOOKING), "-t", str(conf_path)], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


# ---------------------------------------------------------------- client

class Closed(Exception):
    pass


class Client:
    """Length-prefixed protocol client: 4-byte big-endian length + payload."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.local_port = self.sock.getsockname()[1]
        self.buf = bytearray()
        self.timeout = timeout
        self.eof = False

    @staticmethod
    def frame(payload):
        return struct.pack(">I", len(payload)) + payload

    def send(self, *payloads):
        self.sock.sendall(b"".join(self.frame(p) for p in payloads))

    def send_raw(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no complete message (have %d bytes)" % len(self.buf))
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            raise TimeoutError("no complete message (have %d bytes)" % len(self.buf))
        except (ConnectionResetError, BrokenPipeError) as e:
            self.eof = True
            raise Closed("connection reset: %s" % e)
        if not chunk:
            self.eof = True
            raise Closed("connection closed by the gateway (%d bytes pending)" % len(self.buf))
        self.buf += chunk

    def recv(self, timeout=None):
        """The next message; raises TimeoutError or Closed."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    msg = bytes(self.buf[4:4 + n])
                    del self.buf[:4 + n]
                    return msg
            self._fill(deadline)

    def request(self, payload, timeout=None):
        self.send(payload)
        return self.recv(timeout)

    def recv_closed(self, timeout=5.0):
        """True once the gateway closed the connection (EOF or reset) within timeout,
        discarding whatever data arrives before; False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._fill(deadline)
                self.buf.clear()
            except Closed:
                return True
            except TimeoutError:
                return False

    def drain(self, timeout=5.0):
        """Reads until EOF/reset; returns (closed, number of bytes read)."""
        deadline = time.monotonic() + timeout
        total = len(self.buf)
        self.buf.clear()
        while True:
            try:
                self._fill(deadline)
            except Closed:
                return True, total
            except TimeoutError:
                return False, total
            total += len(self.buf)
            self.buf.clear()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------- php-fpm

def find_php_fpm():
    found = sorted(glob.glob("/usr/sbin/php-fpm*"), reverse=True)
    for p in found:
        if os.access(p, os.X_OK):
            return p
    return shutil.which("php-fpm")


class PhpFpm:
    """php-fpm in the foreground, unprivileged (or -R as root), one static pool on a
    loopback port, no php.ini (-n)."""

    def __init__(self, tmpdir, children=4, binary=None):
        self.dir = Path(tmpdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.binary = binary or find_php_fpm()
        self.port = free_port()
        self.addr = "127.0.0.1:%d" % self.port
        self.conf = self.dir / "php-fpm.conf"
        self.log_file = self.dir / "php-fpm.log"
        self.out_file = self.dir / "php-fpm.out"
        self.children = children
        self.proc = None

    def start(self, timeout=10.0):
        root = os.geteuid() == 0
        user = "user = root\ngroup = root\n" if root else ""
        self.conf.write_text(
            "[global]\n"
            "pid = {d}/php-fpm.pid\n"
            "error_log = {log}\n"
            "daemonize = no\n"
            "log_level = notice\n"
            "[test]\n"
            "{user}"
            "listen = 127.0.0.1:{port}\n"
            "listen.backlog = 511\n"
            "pm = static\n"
            "pm.max_children = {n}\n"
            "catch_workers_output = yes\n"
            "clear_env = no\n".format(d=self.dir, log=self.log_file, user=user,
                                       port=self.port, n=self.children))
        cmd = [self.binary, "-F", "-n", "-y", str(self.conf)]
        if root:
            cmd.append("-R")
        self._out = open(self.out_file, "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT, cwd=str(self.dir))
        wait_listening(self.port, self.proc, timeout, "php-fpm", self.log_file)
        return self

    def log(self):
        text = ""
        for f in (self.log_file, self.out_file):
            try:
                text += f.read_text(errors="replace")
            except OSError:
                pass
        return text

    def stop(self):
        if self.proc:
            children = children_of(self.proc.pid)
            stop_pid(self.proc, 10, signal.SIGQUIT)
            for pid in children:
                if pid_alive(pid):
                    stop_pid(pid, 2, signal.SIGKILL)
            self._out.close()


# ---------------------------------------------------------------- Go echo

def build_goecho(outdir):
    """Builds tests/backends/goecho (GOPATH mode) into outdir; returns the binary path."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    binary = outdir / "goecho"
    env = dict(os.environ, GO111MODULE="off", CGO_ENABLED="0")
    if not env.get("GOCACHE"):
        home = env.get("HOME")
        if not home or not os.access(home, os.W_OK):
            env["GOCACHE"] = str(outdir / "gocache")
    env.setdefault("GOPATH", str(outdir / "gopath"))
    go = shutil.which("go") or "/usr/lib/go/bin/go"
    r = subprocess.run([go, "build", "-o", str(binary), "."], cwd=str(GOECHO_SRC), env=env,
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise AssertionError("go build goecho failed:\n" + r.stdout + r.stderr)
    return binary


class GoEcho:
    """The Go net/http/fcgi echo backend on a loopback port; counts connections."""

    def __init__(self, binary, tmpdir):
        self.binary = binary
        self.dir = Path(tmpdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.addr = "127.0.0.1:%d" % self.port
        self.count_file = self.dir / ("goecho-%d.count" % self.port)
        self.out_file = self.dir / ("goecho-%d.out" % self.port)
        self.proc = None

    def start(self, timeout=10.0):
        self._out = open(self.out_file, "ab")
        self.proc = subprocess.Popen([str(self.binary), self.addr, str(self.count_file)],
                                     stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT)
        wait_listening(self.port, self.proc, timeout, "goecho", self.out_file)
        return self

    def connections(self):
        try:
            return int(self.count_file.read_text() or 0)
        except (OSError, ValueError):
            return 0

    def output(self):
        try:
            return self.out_file.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc:
            stop_pid(self.proc, 5)
            self._out.close()
