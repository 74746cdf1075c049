#!/usr/bin/python3
"""make soak: a long mixed load on a router + a gateway (2 workers) + php-fpm, watching
every process's memory.

    make soak                    # 5 minutes
    make soak SOAK_SECONDS=60    # or tests/soak/soak.py with SOAK_SECONDS in the env

Load (one selector thread, all on 127.0.0.1):
  - CLIENTS length-protocol clients, each sending a message every MSG_INTERVAL s (at
    most 4 unanswered at a time) and checking the echoes (tests/backends/echo.php);
  - churn: CHURN_PER_S clients a second go away (half with a FIN, half with a RST, some
    with requests in flight) and as many new ones connect (EVENT_CONNECT=1 gives their
    SID, EVENT_CLOSE posts their close);
  - through the router, as a backend would: SEND_ALL every second, SEND_MSG to random
    sessions, CH_ADD/CH_DEL of random sessions to/from 8 channels, CH_PUB to them, KICK
    of random sessions, and PHP-style short connections that write one command and
    hang up without reading.

Every SAMPLE_S seconds the RSS (VmRSS) of every process (router, gateway master,
workers, php-fpm master and children) goes into a table, printed and written to
build/soak/rss.tsv, and charted with gnuplot into build/soak/rss.png.

Verdict (exit 1 on failure):
  - any process (router, gateway master, workers, php-fpm master and children) whose
    RSS grew between the first sample after the warm-up and the last by more than
    max(10 MiB, 20 %);
  - a fooking process that died or a worker that was replaced;
  - a client closed by the gateway that was not kicked, a reply that did not match,
    or a request of a still-connected client left unanswered at the end.
"""

import os
import random
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))

import fk  # noqa: E402
import rproto  # noqa: E402
from peers import Router  # noqa: E402

SECONDS = int(os.environ.get("SOAK_SECONDS", "300"))
OUT = REPO / "build" / "soak"
SAMPLE_S = 10
WARMUP_S = min(60, max(10, SECONDS // 5))
TOL_MIB = 10
TOL_PCT = 20
CLIENTS = 200
MSG_INTERVAL = 0.2
MAX_INFLIGHT = 4
CHURN_PER_S = 10
CHANNELS = [b"ch%d" % i for i in range(8)]


def log(msg):
    print("[soak %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


# ---------------------------------------------------------------- dependencies

def ensure_packages(have, packages):
    """Installs Debian packages (apt-get) when have() is false."""
    if have():
        return True
    log("installing %s" % " ".join(packages))
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(sudo + ["apt-get", "update", "-qq"], env=env)
    subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends"]
                   + packages, env=env)
    return have()


# ---------------------------------------------------------------- processes

def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def worker_index(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            title = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    m = re.search(r"worker (\d+)", title)
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------- clients

class Conn:
    __slots__ = ("sock", "rbuf", "wbuf", "mask", "sid", "seq", "outstanding", "next_send",
                 "kicked")

    def __init__(self, sock, now):
        self.sock = sock
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.mask = selectors.EVENT_READ
        self.sid = None
        self.seq = 0
        self.outstanding = {}
        self.next_send = now + random.random() * MSG_INTERVAL
        self.kicked = False


class Swarm:
    def __init__(self, port):
        self.port = port
        self.sel = selectors.DefaultSelector()
        self.conns = set()
        self.by_sid = {}
        self.n = dict(connects=0, dropped=0, dropped_inflight=0, kicked=0,
                      unexpected_close=0, sent=0, replies=0, bad_replies=0, skipped=0,
                      pushes_all=0, pushes_pub=0, pushes_msg=0, other=0)

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        c = Conn(s, time.monotonic())
        self.conns.add(c)
        self.sel.register(s, selectors.EVENT_READ, c)
        self.n["connects"] += 1
        return c

    def _forget(self, c):
        self.conns.discard(c)
        if c.sid:
            self.by_sid.pop(c.sid, None)
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    def drop(self, c, rst=False):
        if rst:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.n["dropped"] += 1
        self.n["dropped_inflight"] += len(c.outstanding)
        self._forget(c)

    def random_sids(self, k):
        sids = list(self.by_sid)
        return random.sample(sids, min(k, len(sids)))

    def send_due(self, now, sending=True):
        if not sending:
            return
        for c in list(self.conns):
            if c.sid is None or now < c.next_send:
                continue
            c.next_send += MSG_INTERVAL
            if c.next_send < now:
                c.next_send = now + MSG_INTERVAL
            if sum(1 for t in c.outstanding.values() if t > now - 1.0) >= MAX_INFLIGHT:
                self.n["skipped"] += 1
                continue
            payload = b"M %d" % c.seq
            c.outstanding[c.seq] = now
            c.seq += 1
            self.n["sent"] += 1
            c.wbuf += struct.pack(">I", len(payload)) + payload
            self._flush(c)

    def _flush(self, c):
        try:
            k = c.sock.send(c.wbuf) if c.wbuf else 0
        except BlockingIOError:
            k = 0
        except OSError:
            return self._closed(c)
        del c.wbuf[:k]
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if c.wbuf else 0)
        if want != c.mask:
            self.sel.modify(c.sock, want, c)
            c.mask = want

    def poll(self, timeout):
        for key, mask in self.sel.select(timeout):
            c = key.data
            if c not in self.conns:
                continue
            if mask & selectors.EVENT_WRITE:
                self._flush(c)
            if mask & selectors.EVENT_READ and c in self.conns:
                self._read(c)

    def _read(self, c):
        try:
            data = c.sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            return self._closed(c)
        c.rbuf += data
        off = 0
        buf = c.rbuf
        while len(buf) - off >= 4:
            k = int.from_bytes(buf[off:off + 4], "big")
            if len(buf) - off < 4 + k:
                break
            self._message(c, bytes(buf[off + 4:off + 4 + k]))
            off += 4 + k
        del buf[:off]

    def _message(self, c, msg):
        if msg.startswith(b"M "):
            try:
                seq = int(msg[2:])
            except ValueError:
                seq = -1
            if c.outstanding.pop(seq, None) is None:
                self.n["bad_replies"] += 1
            else:
                self.n["replies"] += 1
        elif msg.startswith(b"welcome ") and c.sid is None:
            c.sid = msg[8:]
            self.by_sid[c.sid] = c
        elif msg.startswith(b"ALL "):
            self.n["pushes_all"] += 1
        elif msg.startswith(b"PUB "):
            self.n["pushes_pub"] += 1
        elif msg.startswith(b"DM "):
            self.n["pushes_msg"] += 1
        else:
            self.n["other"] += 1

    def _closed(self, c):
        if c.kicked:
            self.n["kicked"] += 1
        else:
            self.n["unexpected_close"] += 1
            log("client %s closed by the gateway without a kick" % c.sid)
        self._forget(c)

    def inflight(self):
        """Requests of connected clients not yet answered (kicked ones excepted: the
        gateway drops what they still had in flight)."""
        return sum(len(c.outstanding) for c in self.conns if not c.kicked)

    def close(self):
        for c in list(self.conns):
            self._forget(c)
        self.sel.close()


# ---------------------------------------------------------------- the soak

class Soak:
    def __init__(self):
        self.run_dir = OUT / "run"
        self.php = self.router = self.gw = None
        self.samples = []       # (t, {name: kb})
        self.pids = {}          # name -> pid at the first sample
        self.failures = []

    def start(self):
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True)
        self.php = fk.PhpFpm(self.run_dir / "php", children=6).start()
        (self.run_dir / "router").mkdir()
        self.router = Router(self.run_dir / "router", LOG_LEVEL=2).start()
        params = {"SCRIPT_FILENAME": str(fk.ECHO_PHP), "REQUEST_METHOD": "POST",
                  "SERVER_PROTOCOL": "HTTP/1.1"}
        self.gw = fk.Gateway(self.run_dir / "gw", WORKER_NUM=2, BACKEND_SERVER=self.php.addr,
                             FASTCGI_PARAMS=params, ROUTER_HOST="127.0.0.1",
                             ROUTER_PORT=self.router.port, EVENT_CONNECT=1, EVENT_CLOSE=1,
                             LOG_LEVEL=2).start()
        log("php-fpm %s (pid %d), router port %d (pid %d), gateway port %d (master %d, "
            "workers %s); logs in %s" % (self.php.addr, self.php.proc.pid, self.router.port,
                                         self.router.pid, self.gw.port, self.gw.pid,
                                         self.gw.worker_pids(), self.run_dir))

    def stop(self):
        for what, fn in (("gateway", lambda: self.gw and self.gw.stop()),
                         ("router", lambda: self.router and self.router.stop()),
                         ("php-fpm", lambda: self.php and self.php.stop())):
            try:
                fn()
            except Exception as e:  # keep stopping the others
                log("stopping %s: %s" % (what, e))

    def processes(self):
        """name -> pid of every process of the system under test, right now."""
        out = {"router": self.router.pid if self.router.alive() else None,
               "master": self.gw.pid if self.gw.alive() else None}
        for pid in self.gw.worker_pids():
            out["worker%s" % worker_index(pid)] = pid
        out["php-fpm"] = self.php.proc.pid if self.php.proc.poll() is None else None
        for i, pid in enumerate(fk.children_of(self.php.proc.pid)):
            out["php%d" % (i + 1)] = pid
        return out

    def sample(self, t):
        procs = self.processes()
        if not self.pids:
            self.pids = dict(procs)
        row = {}
        for name, pid0 in self.pids.items():
            pid = procs.get(name)
            if pid is None or pid != pid0:
                if not name.startswith("php"):
                    self.fail_once("%s (pid %s) is gone%s" % (
                        name, pid0, "; now pid %s" % pid if pid else ""))
                row[name] = None
            else:
                row[name] = rss_kb(pid)
        self.samples.append((t, row))
        log("t=%4ds RSS MiB: %s" % (t, "  ".join(
            "%s %s" % (n, "-" if v is None else "%.2f" % (v / 1024)) for n, v in row.items())))

    def fail_once(self, why):
        if why not in self.failures:
            self.failures.append(why)
            log("FAIL: " + why)

    def run(self):
        sw = Swarm(self.gw.port)
        bk = rproto.Backend(self.router.port)
        t0 = time.monotonic()
        end = t0 + SECONDS
        next_sample = t0
        due = {"all": t0 + 1, "msg": t0, "add": t0, "del": t0 + 1, "pub": t0, "kick": t0 + 2,
               "short": t0 + 1, "churn": t0, "info": t0 + 5}
        counts = {"send_all": 0, "send_msg": 0, "ch_add": 0, "ch_del": 0, "ch_pub": 0,
                  "kick": 0, "short": 0}
        for _ in range(CLIENTS):
            sw.connect()
        try:
            while True:
                now = time.monotonic()
                if now >= next_sample:
                    self.sample(int(round(now - t0)))
                    next_sample += SAMPLE_S
                    if not self.gw.alive() or not self.router.alive():
                        break
                if now >= end:
                    break
                sw.send_due(now)
                if now >= due["churn"]:
                    due["churn"] += 1.0 / CHURN_PER_S
                    victims = [c for c in sw.conns if not c.kicked]
                    if victims:
                        sw.drop(random.choice(victims), rst=random.random() < 0.5)
                    while len(sw.conns) < CLIENTS:
                        sw.connect()
                if now >= due["all"]:
                    due["all"] += 1.0
                    counts["send_all"] += 1
                    bk.send_all(b"ALL %d" % counts["send_all"])
                if now >= due["msg"]:
                    due["msg"] += 0.5
                    sids = sw.random_sids(10)
                    if sids:
                        counts["send_msg"] += 1
                        bk.send_msg(sids, b"DM %d" % counts["send_msg"])
                if now >= due["add"]:
                    due["add"] += 0.25
                    sids = sw.random_sids(20)
                    if sids:
                        counts["ch_add"] += 1
                        bk.ch_add(sids, random.choice(CHANNELS))
                if now >= due["del"]:
                    due["del"] += 1.0
                    sids = sw.random_sids(5)
                    if sids:
                        counts["ch_del"] += 1
                        bk.ch_del(sids, random.choice(CHANNELS))
                if now >= due["pub"]:
                    due["pub"] += 0.2
                    ch = random.choice(CHANNELS)
                    counts["ch_pub"] += 1
                    bk.ch_pub(ch, b"PUB " + ch + b" %d" % counts["ch_pub"])
                if now >= due["kick"]:
                    due["kick"] += 2.0
                    sids = sw.random_sids(2)
                    for sid in sids:
                        sw.by_sid[sid].kicked = True
                    if sids:
                        counts["kick"] += len(sids)
                        bk.kick(sids)
                if now >= due["short"]:
                    # a PHP-style backend: connect, one command, hang up without reading
                    due["short"] += 1.0
                    counts["short"] += 1
                    short = rproto.Backend(self.router.port)
                    short.ch_pub(random.choice(CHANNELS), b"PUB short %d" % counts["short"])
                    short.close()
                if now >= due["info"]:
                    due["info"] += SAMPLE_S
                    info = bk.info()
                    log("router INFO: %d clients (%d connected here), %d channels, links %s; "
                        "replies %d, pushes all/pub/msg %d/%d/%d, kicked %d, dropped %d"
                        % (info["clients"], len(sw.conns), info["channels"], info["gateways"],
                           sw.n["replies"], sw.n["pushes_all"], sw.n["pushes_pub"],
                           sw.n["pushes_msg"], sw.n["kicked"], sw.n["dropped"]))
                wait = min(due.values()) - time.monotonic()
                sw.poll(min(max(wait, 0.0), 0.02))
            # wind down: stop sending, let the replies in flight arrive
            deadline = time.monotonic() + 10
            while sw.inflight() and time.monotonic() < deadline:
                sw.poll(0.05)
            if int(round(self.samples[-1][0])) != SECONDS:
                self.sample(int(round(time.monotonic() - t0)))
        finally:
            bk.close()
            self.counts = counts
            self.n = dict(sw.n, left_unanswered=sw.inflight(), open=len(sw.conns))
            sw.close()

    # ---- results
    def judge(self):
        n = self.n
        log("commands: %s" % self.counts)
        log("clients: %s" % n)
        if n["unexpected_close"]:
            self.fail_once("%d clients closed by the gateway without a kick" % n["unexpected_close"])
        if n["bad_replies"] or n["other"]:
            self.fail_once("%d replies that matched no request, %d unknown messages"
                           % (n["bad_replies"], n["other"]))
        if n["left_unanswered"]:
            self.fail_once("%d requests of connected clients never answered" % n["left_unanswered"])
        if n["replies"] == 0 or n["pushes_all"] == 0 or n["pushes_pub"] == 0 \
                or n["pushes_msg"] == 0 or n["kicked"] == 0:
            self.fail_once("some traffic never flowed: %s" % n)
        base_t, base = next(((t, r) for t, r in self.samples if t >= WARMUP_S), self.samples[-1])
        self.base_t = base_t
        last_t, last = self.samples[-1]
        log("RSS tolerance: every process may grow by max(%d MiB, %d%%) between t=%ds "
            "(first sample after the %ds warm-up) and t=%ds (last)"
            % (TOL_MIB, TOL_PCT, base_t, WARMUP_S, last_t))
        for name in self.pids:
            b, e = base.get(name), last.get(name)
            if b is None or e is None:
                continue
            allowed = max(TOL_MIB * 1024, b * TOL_PCT / 100)
            grew = e - b
            verdict = "ok"
            if grew > allowed:
                verdict = "FAIL"
                self.fail_once("%s RSS grew %.2f MiB (allowed %.2f MiB)"
                               % (name, grew / 1024, allowed / 1024))
            log("  %-8s %8.2f -> %8.2f MiB (%+.2f MiB, allowed +%.2f) %s"
                % (name, b / 1024, e / 1024, grew / 1024, allowed / 1024, verdict))

    def write_table(self):
        OUT.mkdir(parents=True, exist_ok=True)
        names = list(self.pids)
        lines = ["t_s\t" + "\t".join(names)]
        for t, row in self.samples:
            lines.append("%d\t" % t + "\t".join("" if row.get(k) is None else str(row[k])
                                                for k in names))
        tsv = OUT / "rss.tsv"
        tsv.write_text("\n".join(lines) + "\n")
        print("\nRSS (KiB) per process, every %d s -> %s" % (SAMPLE_S, tsv))
        width = max(9, max(len(n) for n in names) + 1)
        print("t_s".rjust(6) + "".join(n.rjust(width) for n in names))
        for t, row in self.samples:
            print(("%d" % t).rjust(6) + "".join(
                ("-" if row.get(k) is None else str(row[k])).rjust(width) for k in names))
        return tsv, names

    def chart(self, tsv, names):
        png = OUT / "rss.png"
        if not ensure_packages(lambda: shutil.which("gnuplot"), ["gnuplot-nox"]):
            log("gnuplot not available: no chart")
            return None
        gp = OUT / "rss.gp"
        nours = sum(1 for n in names if not n.startswith("php"))  # fooking's first, then php
        gp.write_text("""\
set terminal pngcairo size 1100,650 noenhanced font ",10"
set output '{png}'
set title 'fooking soak, {secs} s: RSS per process, sampled every {step} s (growth judged from t={base} s, after a {warm} s warm-up; php-fpm dashed)'
set xlabel 'seconds'
set ylabel 'RSS (MiB)'
set datafile separator '\\t'
set key outside right top
set grid
set yrange [0:*]
set arrow from {base}, graph 0 to {base}, graph 1 nohead dashtype 2 lc rgb 'gray'
plot for [i=2:{nours}] '{tsv}' using 1:(column(i)/1024.0) with linespoints lw 2 pt 7 ps 0.8 title columnheader(i), \\
     for [i={nours1}:{ncol}] '{tsv}' using 1:(column(i)/1024.0) with lines dashtype 2 title columnheader(i)
""".format(png=png, secs=SECONDS, step=SAMPLE_S, warm=WARMUP_S, base=getattr(self, "base_t", WARMUP_S),
           nours=1 + nours, nours1=2 + nours, ncol=len(names) + 1, tsv=tsv))
        r = subprocess.run(["gnuplot", str(gp)], capture_output=True, text=True)
        if r.returncode != 0 or not png.exists():
            log("gnuplot failed: %s" % r.stderr.strip())
            return None
        log("chart: %s" % png)
        return png


def main():
    if not fk.FOOKING.exists():
        print("soak: %s is not built (run make)" % fk.FOOKING, file=sys.stderr)
        return 1
    if not ensure_packages(fk.find_php_fpm, ["php-fpm", "php-cli"]):
        print("soak: php-fpm is missing and could not be installed", file=sys.stderr)
        return 1
    log("%d s of mixed load (warm-up %d s, RSS sampled every %d s)" % (SECONDS, WARMUP_S, SAMPLE_S))
    soak = Soak()

    def on_sigterm(sig, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        soak.start()
        soak.run()
    except KeyboardInterrupt:
        log("interrupted")
        return 1
    finally:
        soak.stop()   # everything started, by pid
    soak.judge()
    tsv, names = soak.write_table()
    soak.chart(tsv, names)
    if soak.failures:
        log("FAILED:\n  " + "\n  ".join(soak.failures))
        return 1
    log("PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
