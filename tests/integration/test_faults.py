"""Fault injection under steady load (issue "Hardening", README "Limits and failure
behaviour").

Every test runs a load driver: LOAD_CLIENTS length-protocol clients, each sending a
message every LOAD_INTERVAL seconds from one selector thread and matching the echoed
replies (at most MAX_INFLIGHT recent requests per client, so a slow or busy machine
skips sends instead of piling up a backlog). A reply counts as *lost* when it has not
arrived LOST_AFTER seconds after the driver stopped sending; each test prints
(pytest -s) and bounds sent/received/lost.

  php-fpm restarted        only requests sent around the gap are lost
  backend killed -9        lost replies only for requests already at the dead backend,
                           everything after goes to the other one
  router killed -9         no reply lost; SEND_ALL reaches every client after restart
  worker killed -9         the other worker's clients lose nothing; the dead worker's
                           clients are closed and get EVENT=2 from its successor
  10,000 connect cycles    worker fds exactly and RSS (+2 MiB) back to their baseline
  slow consumer            disconnected past MAX_OUTPUT_SIZE; 1,000 others get every
                           broadcast; worker RSS stays bounded
  slow consumer, small     memory per queued small message stays near what
  messages                 MAX_OUTPUT_SIZE counts (small pushes are copied, not
                           referenced one block each)

Under an AddressSanitizer build (FOOKING=build-asan/fooking-asan) RSS is reported,
not judged (the quarantine keeps freed memory); fd counts still are.

php-fpm is restarted with and without BACKEND_KEEPALIVE. The Go backend here runs
without its connection-count file (rewriting it on every accept caps goecho at a few
hundred requests a second).
"""

import collections
import json
import math
import os
import re
import selectors
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

import fk
import rproto
from conftest import base_params
import peers  # noqa: E402
from peers import (established, gateways, nfds, raise_nofile, router,  # noqa: F401 (fixtures)
                   rss_kb, sanitized, workers_by_index)

LOAD_CLIENTS = 50
LOAD_INTERVAL = 0.02
LOST_AFTER = 3.0
MAX_INFLIGHT = 4       # requests per client younger than WINDOW_AGE
WINDOW_AGE = 1.0


# ---------------------------------------------------------------- helpers

def go_keys(srv, event_log=None, **extra):
    p = base_params()
    if event_log:
        p["EVENT_LOG"] = str(event_log)
    keys = {"BACKEND_SERVER": srv if isinstance(srv, (str, dict)) else srv.addr,
            "FASTCGI_PREFIX": "HTTP_", "FASTCGI_PARAMS": p}
    keys.update(extra)
    return keys


class GoEcho(fk.GoEcho):
    """goecho without its connection-count file (rewriting that file on every accept
    caps it at a few hundred connections per second)."""

    def start(self, timeout=10.0):
        self._out = open(self.out_file, "ab")
        self.proc = subprocess.Popen([str(self.binary), self.addr], stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=subprocess.STDOUT)
        fk.wait_listening(self.port, self.proc, timeout, "goecho", self.out_file)
        return self


def php_keys(srv, **extra):
    keys = {"BACKEND_SERVER": srv.addr, "FASTCGI_PREFIX": "", "FASTCGI_PARAMS": base_params()}
    keys.update(extra)
    return keys


def sid_worker(sid):
    """The worker id inside a SID (DESIGN §4: ... 5 bits worker, 6 bits sequence)."""
    return (int(sid, 16) >> 6) & 0x1F


def summarize(times, t0):
    """A short text for lost send times relative to t0."""
    rel = [round(t - t0, 3) for t in times]
    if len(rel) <= 12:
        return repr(rel)
    return "%d, first %r, last %r" % (len(rel), rel[:6], rel[-6:])


def report(name, st, extra=""):
    print("\n[%s] sent=%d received=%d lost=%d closed=%d (sends skipped, window full: %d)%s"
          % (name, st["sent"], st["received"], st["lost"], st["closed"], st["skipped"], extra))


# ---------------------------------------------------------------- load driver

class LoadClient:
    def __init__(self, idx, sock):
        self.idx = idx
        self.sock = sock
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.mask = selectors.EVENT_READ
        self.sid = None
        self.seq = 0
        self.outstanding = {}   # seq -> monotonic send time
        self.sent = 0
        self.skipped = 0
        self.received = 0
        self.last_seq = -1
        self.misordered = 0
        self.unknown = 0
        self.npushes = 0
        self.pushes = []        # first 64 bytes of every message that is not an echo
        self.closed = False
        self.t_closed = None


class Load:
    """n length-protocol clients; each sends b"L <idx> <seq>" every interval seconds
    (all from one selector thread) and matches the echoes. With welcome=True the
    first message of each client is the EVENT_CONNECT reply "welcome <SID>" (so
    sid_worker() tells which worker holds it). Anything else received is a push."""

    def __init__(self, port, n=LOAD_CLIENTS, interval=LOAD_INTERVAL, welcome=False):
        self.port = port
        self.n = n
        self.interval = interval
        self.welcome = welcome
        self.clients = []
        self.sel = selectors.DefaultSelector()
        self.lock = threading.Lock()
        self.sending = threading.Event()
        self.stopped = threading.Event()
        self.error = None
        self.thread = None

    # ---- control
    def start(self, timeout=10.0):
        self.add(self.n)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        if self.welcome:
            fk.wait_until(lambda: all(c.sid for c in self.clients), timeout,
                          msg="the welcome message (SID) of every load client")
        self.sending.set()
        return self

    def add(self, n):
        new = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            with self.lock:
                c = LoadClient(len(self.clients), s)
                self.clients.append(c)
                self.sel.register(s, selectors.EVENT_READ, c)
            new.append(c)
        return new

    def resume(self):
        self.sending.set()

    def quiesce(self, settle=LOST_AFTER):
        """Stops sending and waits up to settle seconds for the replies in flight;
        whatever is still missing then counts as lost."""
        self.sending.clear()
        try:
            fk.wait_until(lambda: self.stats()["lost"] == 0, settle)
        except AssertionError:
            pass
        self.check()
        return self.stats()

    def close(self):
        self.sending.clear()
        self.stopped.set()
        if self.thread:
            self.thread.join(5)
        with self.lock:
            for c in self.clients:
                if not c.closed:
                    c.closed = True
                    c.sock.close()
        self.sel.close()

    def check(self):
        if self.error:
            raise AssertionError("load driver failed: %r" % (self.error,))

    # ---- inspection
    def stats(self, clients=None):
        with self.lock:
            cs = self.clients if clients is None else clients
            return {"sent": sum(c.sent for c in cs),
                    "skipped": sum(c.skipped for c in cs),
                    "received": sum(c.received for c in cs),
                    "lost": sum(len(c.outstanding) for c in cs),
                    "closed": sum(1 for c in cs if c.closed),
                    "misordered": sum(c.misordered for c in cs),
                    "unknown": sum(c.unknown for c in cs),
                    "pushes": sum(c.npushes for c in cs)}

    def lost_times(self, clients=None):
        with self.lock:
            cs = self.clients if clients is None else clients
            return sorted(t for c in cs for t in c.outstanding.values())

    def received_marks(self):
        with self.lock:
            return {c.idx: c.received for c in self.clients}

    def all_progressed(self, marks, k, clients=None):
        """True when every open client (of clients) got k more replies than in marks."""
        with self.lock:
            cs = self.clients if clients is None else clients
            return all(c.received >= marks.get(c.idx, 0) + k for c in cs if not c.closed)

    def wait_progress(self, k=10, timeout=10.0, clients=None, what="every load client served"):
        marks = self.received_marks()
        fk.wait_until(lambda: self.check() or self.all_progressed(marks, k, clients), timeout,
                      msg="%s (%d more replies each)" % (what, k))

    # ---- the selector thread
    def _loop(self):
        try:
            next_tick = time.monotonic()
            while not self.stopped.is_set():
                now = time.monotonic()
                if self.sending.is_set() and now >= next_tick:
                    with self.lock:
                        for c in self.clients:
                            if not c.closed:
                                self._send(c, now)
                    next_tick += self.interval
                    if next_tick < now:
                        next_tick = now + self.interval  # no catch-up bursts
                wait = next_tick - time.monotonic() if self.sending.is_set() else 0.02
                events = self.sel.select(min(max(wait, 0.0), 0.05))
                with self.lock:
                    for key, mask in events:
                        c = key.data
                        if c.closed:
                            continue
                        if mask & selectors.EVENT_WRITE:
                            self._flush(c)
                        if mask & selectors.EVENT_READ and not c.closed:
                            self._read(c)
        except Exception as e:  # reported by check()
            self.error = e
            raise

    def _send(self, c, now):
        # a window of MAX_INFLIGHT recent requests per client keeps a slow (or busy,
        # shared) machine from piling up a backlog; older unanswered ones (likely lost)
        # no longer hold the client back
        cutoff = now - WINDOW_AGE
        if sum(1 for t in c.outstanding.values() if t > cutoff) >= MAX_INFLIGHT:
            c.skipped += 1
            return
        payload = b"L %d %d" % (c.idx, c.seq)
        c.outstanding[c.seq] = now
        c.seq += 1
        c.sent += 1
        c.wbuf += struct.pack(">I", len(payload)) + payload
        self._flush(c)

    def _flush(self, c):
        try:
            n = c.sock.send(c.wbuf) if c.wbuf else 0
        except BlockingIOError:
            n = 0
        except OSError:
            return self._closed(c)
        del c.wbuf[:n]
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if c.wbuf else 0)
        if want != c.mask:
            self.sel.modify(c.sock, want, c)
            c.mask = want

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
        buf = c.rbuf
        off = 0
        while len(buf) - off >= 4:
            n = int.from_bytes(buf[off:off + 4], "big")
            if len(buf) - off < 4 + n:
                break
            self._message(c, bytes(buf[off + 4:off + 4 + n]))
            off += 4 + n
        if off:
            del buf[:off]

    def _message(self, c, msg):
        if msg.startswith(b"L "):
            seq = int(msg.split(b" ")[2])
            if c.outstanding.pop(seq, None) is None:
                c.unknown += 1
                return
            c.received += 1
            if seq < c.last_seq:
                c.misordered += 1
            c.last_seq = seq
        elif self.welcome and c.sid is None and msg.startswith(b"welcome "):
            c.sid = msg[8:].decode()
        else:
            c.npushes += 1
            c.pushes.append(msg[:64])

    def _closed(self, c):
        c.closed = True
        c.t_closed = time.monotonic()
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()


@pytest.fixture
def load():
    started = []

    def factory(port, **kw):
        ld = Load(port, **kw).start()
        started.append(ld)
        return ld
    yield factory
    for ld in started:
        ld.close()


@pytest.fixture(scope="module")
def goecho(goecho_bin, tmp_path_factory):
    """One fast goecho for the module (overrides conftest's, which counts connections)."""
    srv = GoEcho(goecho_bin, tmp_path_factory.mktemp("goecho-fast")).start()
    yield srv
    srv.stop()


def assert_sane(st):
    assert st["misordered"] == 0, st
    assert st["unknown"] == 0, st


# ---------------------------------------------------------------- php-fpm restart

@pytest.mark.parametrize("keepalive", [0, 8])
def test_php_fpm_restart(gateways, load, tmp_path, keepalive):
    """php-fpm stopped (SIGQUIT to its master, by pid) and started again on the same
    port: the gateway survives, every client is served again, and only requests sent
    between the stop and the restart (or in flight at the stop) are lost."""
    php = fk.PhpFpm(tmp_path / "php", children=4)
    if not php.binary:
        pytest.skip("php-fpm not installed")
    php.start()
    try:
        # with keepalive, php-fpm (one connection per child) must be able to hold
        # every connection the workers open: 2 workers x 2 <= 4 children
        gw = gateways(**php_keys(php, WORKER_NUM=2, BACKEND_KEEPALIVE=keepalive,
                                BACKEND_MAX_CONNS=2 if keepalive else 64))
        workers = gw.worker_pids()
        ld = load(gw.port)
        ld.wait_progress(10, what="load served by php-fpm")

        t_stop = time.monotonic()
        php.stop()
        gap = gw.wait_log("backend", "Connection refused", timeout=10)
        php.start()
        t_up = time.monotonic()
        ld.wait_progress(25, timeout=15, what="every client served after the restart")
        st = ld.quiesce()
        lost_at = ld.lost_times()
        gap_s = t_up - t_stop
        report("php-fpm restart, keepalive %d" % keepalive, st, " gap=%.2fs refused=%d log lines" % (gap_s, len(gap)))

        assert gw.alive() and gw.worker_pids() == workers
        assert st["closed"] == 0, "a client was disconnected by a backend restart"
        assert_sane(st)
        # only what was sent during the gap (+ what was in flight at the stop) is lost
        assert all(t_stop - 1.0 <= t <= t_up + 0.5 for t in lost_at), \
            "replies lost outside the gap: %s" % summarize(lost_at, t_stop)
        # The bound was (gap_s + 1.5) * LOAD_CLIENTS / LOAD_INTERVAL, 2,500 per
        # second: what the load sends when every request is answered. Unanswered,
        # a client sends at most MAX_INFLIGHT requests per WINDOW_AGE, so over the
        # gap (+1.5 s of margin, as above) no more than this can be lost:
        windows = math.ceil((gap_s + 1.5) / WINDOW_AGE) + 1
        assert st["lost"] <= LOAD_CLIENTS * MAX_INFLIGHT * windows, (st["lost"], gap_s)
        assert st["received"] > 0 and st["lost"] < st["sent"]
    finally:
        php.stop()


# ---------------------------------------------------------------- backend killed

SLEEP = 4  # seconds a parked request sleeps in a backend


def test_backend_killed_mid_request(gateways, load, goecho_bin, tmp_path):
    """Two Go backends; one is killed -9 while requests sleep in it. Those requests
    get no reply (logged), the clients stay connected, and every request after the
    kill is served by the other backend."""
    a = GoEcho(goecho_bin, tmp_path / "a").start()
    b = GoEcho(goecho_bin, tmp_path / "b").start()
    try:
        gw = gateways(**go_keys({a.addr: 1, b.addr: 1}, WORKER_NUM=2))
        workers = gw.worker_pids()
        ld = load(gw.port)
        ld.wait_progress(10)

        # park 20 requests in the backends (about half in each): with the load paused
        # the only connections to them are the sleepers', so we know how many are in a
        ld.quiesce()
        fk.wait_until(lambda: established(a.port) + established(b.port) == 0, 5,
                      msg="no connection to the backends while the load is paused")
        sleepers = [gw.client(timeout=10) for _ in range(20)]
        for i, c in enumerate(sleepers):
            c.send(b"sleep %d #%d" % (SLEEP, i))
        t_sleep = time.monotonic()
        fk.wait_until(lambda: established(a.port) + established(b.port) == len(sleepers), 5,
                      msg="every sleeping request inside a backend")
        at_a = established(a.port)
        assert at_a > 0, "no request went to backend a"
        ld.resume()
        ld.wait_progress(2)

        os.kill(a.proc.pid, signal.SIGKILL)
        t_kill = time.monotonic()
        a.proc.wait(5)
        gw.wait_log("backend %s" % a.addr, "before END_REQUEST")

        ld.wait_progress(25, what="every client served after the kill")
        st = ld.quiesce()
        lost_at = ld.lost_times()

        replies = 0
        # The premise: a is killed while its sleepers still sleep (on a busy machine
        # resume + wait_progress once took longer than a 2 s sleep, and a sleeper
        # answered by a before the kill was counted as one it should lose).
        assert t_kill - t_sleep < SLEEP - 0.5, "the kill came %.1f s after the sleepers " \
            "were sent: they may have been answered" % (t_kill - t_sleep)
        deadline = t_sleep + SLEEP + 5     # the ones at b answer after SLEEP s
        for i, c in enumerate(sleepers):
            try:
                got = c.recv(timeout=max(0.05, deadline - time.monotonic()))
                assert got == b"sleep %d #%d" % (SLEEP, i)
                replies += 1
            except TimeoutError:
                pass
        slept_lost = len(sleepers) - replies
        report("backend killed", st, "; sleepers: %d of %d at the killed backend, %d lost, "
               "%d answered by the other" % (at_a, len(sleepers), slept_lost, replies))

        assert gw.alive() and gw.worker_pids() == workers
        assert st["closed"] == 0
        assert_sane(st)
        # lost: only requests written to a before it died
        assert all(t <= t_kill + 0.05 for t in lost_at), \
            "requests sent after the kill were lost: %s" % summarize(lost_at, t_kill)
        assert st["lost"] <= MAX_INFLIGHT * LOAD_CLIENTS
        assert slept_lost == at_a
        assert b.proc.poll() is None
        for c in sleepers:  # still connected and served (by b)
            assert c.request(b"after") == b"after"
            c.close()
    finally:
        a.stop()
        b.stop()


# ---------------------------------------------------------------- router killed

def test_router_killed_and_restarted(gateways, load, router, goecho):
    """The router is killed -9 and restarted: clients keep being served by the
    backend throughout (nothing lost), the workers reconnect and resync, and then a
    SEND_ALL (and a SEND_MSG per worker) via the router reaches every client."""
    r = router(LOG_LEVEL=2)
    gw = gateways(**go_keys(goecho, WORKER_NUM=2, ROUTER_HOST="127.0.0.1", ROUTER_PORT=r.port,
                           EVENT_CONNECT=1))
    ld = load(gw.port, welcome=True)
    rproto.wait_info(r.port, lambda i: i["clients"] == LOAD_CLIENTS and len(i["gateways"]) == 2)

    def pushed_to_all(msg):
        with ld.lock:
            return all(msg in c.pushes for c in ld.clients)

    bk = rproto.Backend(r.port)
    bk.send_all(b"push before")
    fk.wait_until(lambda: pushed_to_all(b"push before"), msg="SEND_ALL before the kill")
    bk.close()

    os.kill(r.pid, signal.SIGKILL)
    r.proc.wait(5)
    t_kill = time.monotonic()
    fk.wait_until(lambda: len(gw.log_lines("router", "link lost")) >= 2, 5,
                  msg="both workers noticing the router is gone")
    ld.wait_progress(25, what="clients served while the router is down")
    during = ld.stats()

    r.start()
    info = rproto.wait_info(r.port, lambda i: i["clients"] == LOAD_CLIENTS
                            and len(i["gateways"]) == 2, timeout=10)
    t_sync = time.monotonic()
    bk = rproto.Backend(r.port)
    bk.send_all(b"push after restart")
    by_worker = {}
    for c in ld.clients:
        by_worker.setdefault(sid_worker(c.sid), c)
    for w, c in by_worker.items():
        bk.send_msg([c.sid.encode()], b"direct to worker %d" % w)
    fk.wait_until(lambda: pushed_to_all(b"push after restart"), 5,
                  msg="SEND_ALL after the restart reaching every client")
    fk.wait_until(lambda: all(b"direct to worker %d" % w in c.pushes
                              for w, c in by_worker.items()), 5, msg="SEND_MSG after the restart")
    bk.close()
    ld.wait_progress(10)
    st = ld.quiesce()
    report("router killed", st, " resync=%.2fs replies while down=%d info=%r"
           % (t_sync - t_kill, during["received"], info))

    assert gw.alive()
    assert st["closed"] == 0
    assert st["lost"] == 0, "replies lost while the router was down"
    assert_sane(st)
    with ld.lock:
        for c in ld.clients:  # each push exactly once
            assert c.pushes.count(b"push before") == 1, c.pushes
            assert c.pushes.count(b"push after restart") == 1, c.pushes


# ---------------------------------------------------------------- worker killed

def test_worker_killed(gateways, load, goecho, tmp_path):
    """A worker is killed -9: the other worker's clients lose nothing; the dead
    worker's clients are disconnected; a new worker serves new clients and posts
    EVENT=2 for every session of the dead one."""
    event_log = tmp_path / "events.log"
    gw = gateways(**go_keys(goecho, event_log=event_log, WORKER_NUM=2, EVENT_CONNECT=1))
    ld = load(gw.port, welcome=True)
    ld.wait_progress(5)
    by_idx = workers_by_index(gw)
    assert set(by_idx) == {0, 1}, by_idx

    def grouped():
        groups = {0: [], 1: []}
        for c in ld.clients:
            groups[sid_worker(c.sid)].append(c)
        return groups
    groups = grouped()
    while min(len(g) for g in groups.values()) < 10 and len(ld.clients) < 4 * LOAD_CLIENTS:
        # the kernel decides which worker accepts: add clients until both have some
        extra = ld.add(10)
        fk.wait_until(lambda: all(c.sid for c in extra), msg="SIDs of extra clients")
        groups = grouped()
    victim_idx = 0 if len(groups[0]) >= len(groups[1]) else 1
    victims, survivors = groups[victim_idx], groups[1 - victim_idx]
    assert victims and survivors, {k: len(v) for k, v in groups.items()}
    victim_sids = {c.sid for c in victims}

    os.kill(by_idx[victim_idx], signal.SIGKILL)
    t_kill = time.monotonic()
    new_pid = fk.wait_until(lambda: (lambda m: m.get(victim_idx) not in (None, by_idx[victim_idx])
                                     and m[victim_idx])(workers_by_index(gw)), 5,
                            msg="a new worker %d" % victim_idx)
    t_new = time.monotonic()
    fk.wait_until(lambda: all(c.closed for c in victims), 5,
                  msg="the dead worker's clients disconnected")
    assert workers_by_index(gw)[1 - victim_idx] == by_idx[1 - victim_idx]
    ld.wait_progress(25, clients=survivors, what="the other worker's clients served")

    # a new client on the new worker is served
    fresh = []
    for _ in range(40):
        c = gw.client()
        fresh.append(c)
        sid = c.recv().split(b" ", 1)[1].decode()
        if sid_worker(sid) == victim_idx:
            assert c.request(b"on the new worker") == b"on the new worker"
            break
    else:
        pytest.fail("no new client landed on the new worker %d" % victim_idx)

    def closed_list():
        try:
            return [l.split()[0] for l in event_log.read_text().splitlines()]
        except OSError:
            return []

    def closed_sids():
        return set(closed_list())
    fk.wait_until(lambda: victim_sids <= closed_sids(), 10,
                  msg="EVENT=2 for every session of the dead worker")
    st_v = ld.stats(victims)
    st = ld.quiesce()
    st_s = ld.stats(survivors)
    report("worker killed", st_s, " (survivors, %d clients)" % len(survivors))
    report("worker killed", st_v, " (victims, %d clients, lost = in flight at the kill)"
           % len(victims))
    print("new worker pid %d seen %.2fs after the kill; %d EVENT=2 posted for %d victims"
          % (new_pid, t_new - t_kill, len(victim_sids & closed_sids()), len(victims)))

    assert gw.alive()
    assert st_s["closed"] == 0 and st_s["lost"] == 0, st_s
    assert_sane(st)
    assert st_v["closed"] == len(victims)
    assert st_v["lost"] <= 8 * len(victims)
    assert not ({c.sid for c in survivors} & closed_sids()), "EVENT=2 for a live session"
    # a set hides duplicates: each dead session's close event is posted once
    counts = collections.Counter(closed_list())
    dup = {s: n for s, n in counts.items() if s in victim_sids and n != 1}
    assert not dup, "close events posted more than once: %r" % dup
    for c in fresh:
        c.close()


# ---------------------------------------------------------------- connect cycles

def gateway_usage(gw, backend_port):
    """Per worker: descriptors other than its backend connections (those open
    and close with the load, which a quiesced load does not stop at once), RSS."""
    return {pid: (peers.fds_without_peer(pid, backend_port), rss_kb(pid))
            for pid in gw.worker_pids()}


def cycles(port, total, width=16):
    """total connect / one message / close cycles, width sockets at a time. Every 4th
    closes before reading its reply (a request in flight when the client goes), every
    8th closes with a RST."""
    done = 0
    linger = struct.pack("ii", 1, 0)
    while done < total:
        batch = []
        for i in range(min(width, total - done)):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            n = done + i
            msg = b"cycle %d" % n
            s.sendall(struct.pack(">I", len(msg)) + msg)
            batch.append((n, s, msg))
        for n, s, msg in batch:
            if n % 4 != 3:
                want = struct.pack(">I", len(msg)) + msg
                got = b""
                while len(got) < len(want):
                    chunk = s.recv(len(want) - len(got))
                    assert chunk, "gateway closed cycle client %d" % n
                    got += chunk
                assert got == want
            if n % 8 == 7:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            s.close()
        done += len(batch)
    return done


def test_connect_cycles_no_leak(gateways, load, goecho):
    """10,000 connect / message / close cycles under load: each worker's fd count
    returns exactly to its baseline and its RSS to within +2 MiB."""
    raise_nofile()
    gw = gateways(**go_keys(goecho, WORKER_NUM=2))
    ld = load(gw.port)
    ld.wait_progress(5)
    cycles(gw.port, 1000, width=64)      # warm-up: allocator arenas, hash tables

    def settled():
        ld.quiesce()
        return gateway_usage(gw, goecho.port)
    base = settled()
    ld.resume()
    t0 = time.monotonic()
    n = cycles(gw.port, 10000, width=64)
    took = time.monotonic() - t0
    ld.wait_progress(5)
    st = ld.quiesce()
    fk.wait_until(lambda: {p: u[0] for p, u in gateway_usage(gw, goecho.port).items()}
                  == {p: u[0] for p, u in base.items()}, 10,
                  msg="worker fd counts back to %r (now %r)" % (base, gateway_usage(gw, goecho.port)))
    tol_kb = 2048
    try:
        fk.wait_until(lambda: all(gateway_usage(gw, goecho.port)[p][1] <= base[p][1] + tol_kb for p in base), 5)
    except AssertionError:
        pass
    after = gateway_usage(gw, goecho.port)
    report("connect cycles", st, " cycles=%d in %.1fs; per worker pid: fds %s, RSS KiB %s"
           % (n, took, {p: "%d->%d" % (base[p][0], after[p][0]) for p in base},
              {p: "%d->%d" % (base[p][1], after[p][1]) for p in base}))
    assert gw.alive() and set(after) == set(base)
    assert st["closed"] == 0 and st["lost"] == 0
    assert_sane(st)
    for p in base:
        assert after[p][0] == base[p][0]
        if not sanitized():
            assert after[p][1] <= base[p][1] + tol_kb, "worker %d RSS grew %d KiB" % (
                p, after[p][1] - base[p][1])


# ---------------------------------------------------------------- slow consumer

class Receivers:
    """n clients that only read, counting the broadcasts b"B <seq> ..." they get and
    checking they arrive in order without gaps."""

    def __init__(self, port, n):
        self.sel = selectors.DefaultSelector()
        self.socks = []
        self.count = {}
        self.next = {}
        self.bad = 0
        self.closed = 0
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.setblocking(False)
            self.socks.append(s)
            self.count[s] = 0
            self.next[s] = None
            self.sel.register(s, selectors.EVENT_READ, bytearray())
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stopped.is_set():
            for key, _ in self.sel.select(0.05):
                s, buf = key.fileobj, key.data
                try:
                    data = s.recv(1 << 18)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    with self.lock:
                        self.closed += 1
                    self.sel.unregister(s)
                    continue
                buf += data
                off = 0
                got = 0
                while len(buf) - off >= 4:
                    n = int.from_bytes(buf[off:off + 4], "big")
                    if len(buf) - off < 4 + n:
                        break
                    seq = int(buf[off + 6:off + 16].split(b" ", 1)[0])
                    if self.next[s] is not None and seq != self.next[s]:
                        self.bad += 1
                    self.next[s] = seq + 1
                    got += 1
                    off += 4 + n
                del buf[:off]
                if got:
                    with self.lock:
                        self.count[s] += got

    def counts(self):
        with self.lock:
            return list(self.count.values())

    def close(self):
        self.stopped.set()
        self.thread.join(5)
        for s in self.socks:
            s.close()
        self.sel.close()


def test_slow_consumer_among_broadcast_receivers(gateways, load, router, goecho):
    """1,000 clients receive SEND_ALL broadcasts of 1 KiB at a steady rate; one client
    stopped reading. It is cut off once its output passes MAX_OUTPUT_SIZE (logged as a
    slow consumer); the others receive every broadcast; worker RSS stays bounded."""
    raise_nofile()
    limit = 256 * 1024
    nrecv = 1000
    rate = 20                      # broadcasts per second
    size = 1024
    # growth allowed per worker over the test: the stalled client's share is bounded
    # by MAX_OUTPUT_SIZE; the rest is broadcasts queued for receivers that lag behind
    # (this Python process reads 1,000 sockets), ~2 KiB each today (see the xfail
    # test below)
    rss_limit_kb = 48 * 1024
    r = router(LOG_LEVEL=2)
    gw = gateways(**go_keys(goecho, WORKER_NUM=2, ROUTER_HOST="127.0.0.1", ROUTER_PORT=r.port,
                           MAX_OUTPUT_SIZE=limit))
    bk = rproto.Backend(r.port)
    ld = load(gw.port)
    recv = Receivers(gw.port, nrecv)
    stalled = gw.client(rcvbuf=4096)
    try:
        stalled_sid = json.loads(stalled.request(b"params"))["SESSIONID"].encode()
        # it read once, now it stops reading
        total = nrecv + LOAD_CLIENTS + 1
        fk.wait_until(lambda: (lambda i: i["clients"] == total and len(i["gateways"]) == 2)(
            bk.info()), 10, msg="the router to know all %d clients" % total)
        base = gateway_usage(gw, goecho.port)
        peak = dict((p, u[1]) for p, u in base.items())

        pad = b"x" * size
        big = b"y" * 65536
        seq = 0
        t0 = time.monotonic()
        t_cut = None
        while True:
            now = time.monotonic()
            msg = b"B %-10d" % seq
            bk.send_all(msg + pad[len(msg):])
            seq += 1
            if t_cut is None:
                # the kernel's send buffer to the stalled client grows to a few MiB
                # on loopback (tcp_wmem) before the gateway holds any output: fill
                # it faster than 1 KiB broadcasts would (256 KiB an iteration, so a
                # busy machine that slows this loop still gets there in seconds)
                for _ in range(4):
                    bk.send_msg([stalled_sid], big)
            for p, u in gateway_usage(gw, goecho.port).items():
                peak[p] = max(peak.get(p, 0), u[1])
            if t_cut is None and gw.log_lines("slow consumer"):
                t_cut = now
            if t_cut is not None and now - t_cut >= 2.0:
                break               # the others go on for 2 s after the cut
            assert now - t0 < 60, "the stalled client was never cut off\n" + gw.log()[-2000:]
            time.sleep(max(0.0, t0 + seq / rate - time.monotonic()))  # pacing
        bk.close()
        fk.wait_until(lambda: min(recv.counts()) >= seq, 15,
                      msg="every receiver to get all %d broadcasts (min %d)"
                          % (seq, min(recv.counts())))
        closed, nbytes = stalled.drain(10)
        counts = recv.counts()
        ld.wait_progress(5)
        st = ld.quiesce()
        with ld.lock:
            load_pushes = [c.npushes for c in ld.clients]
        line = gw.log_lines("slow consumer", "over MAX_OUTPUT_SIZE")[0]
        grow = {p: peak[p] - base[p][1] for p in base}
        report("slow consumer", st, " broadcasts=%d in %.1fs receivers=%d min/max=%d/%d "
               "gaps=%d load-client pushes min=%d; stalled cut after %.1fs, read %d bytes "
               "after; worker RSS growth KiB %s (limit %d)"
               % (seq, time.monotonic() - t0, nrecv, min(counts), max(counts), recv.bad,
                  min(load_pushes), t_cut - t0, nbytes, grow, rss_limit_kb))
        print(line)

        assert closed, "the stalled client was not disconnected"
        assert re.search(r"(\d+) bytes of output pending", line)
        assert int(re.search(r"(\d+) bytes of output pending", line).group(1)) > limit
        cut = gw.log_lines("over MAX_OUTPUT_SIZE")
        assert len(cut) == 1 and stalled_sid.decode() in cut[0], cut
        assert recv.closed == 0
        assert min(counts) == max(counts) == seq and recv.bad == 0
        assert min(load_pushes) == seq
        assert st["closed"] == 0 and st["lost"] == 0
        assert_sane(st)
        for p in base:
            if not sanitized():
                assert grow[p] <= rss_limit_kb, "worker %d RSS grew %d KiB" % (p, grow[p])
        assert gw.alive()
    finally:
        stalled.close()
        recv.close()


def test_slow_consumer_small_messages_memory(gateways, load, router, goecho):
    """A client that stopped reading gets many small (32-byte) channel messages: it is
    cut off past MAX_OUTPUT_SIZE, and the worker's RSS grows by no more than
    RSS_BOUND (32x the limit: allocator slack and kernel-side buffering included)."""
    if sanitized():
        pytest.skip("RSS is not meaningful under AddressSanitizer")
    limit = 256 * 1024
    rss_bound_kb = 8 * 1024
    r = router(LOG_LEVEL=2)
    gw = gateways(**go_keys(goecho, WORKER_NUM=1, ROUTER_HOST="127.0.0.1", ROUTER_PORT=r.port,
                           MAX_OUTPUT_SIZE=limit))
    bk = rproto.Backend(r.port)
    ld = load(gw.port)
    with gw.client(rcvbuf=4096) as stalled:
        sid = json.loads(stalled.request(b"params"))["SESSIONID"].encode()
        bk.ch_add([sid], b"stalled")
        fk.wait_until(lambda: bk.info()["channels"] == 1, msg="the channel at the router")
        worker = gw.worker_pids()[0]
        base = peak = rss_kb(worker)
        batch = b"".join(rproto.encode(rproto.CH_PUB, b"stalled", b"m%031d" % i)
                         for i in range(1000))
        sent = 0
        t0 = time.monotonic()
        while not gw.log_lines("over MAX_OUTPUT_SIZE"):
            assert time.monotonic() - t0 < 60, "the stalled client was never cut off"
            bk.send_raw(batch)
            sent += 1000
            peak = max(peak, rss_kb(worker))
        peak = max(peak, rss_kb(worker))
        closed, _ = stalled.drain(10)
    bk.close()
    ld.wait_progress(5)
    st = ld.quiesce()
    grew = peak - base
    report("slow consumer, small messages", st, "; %d messages of 32 bytes before the cut "
           "(%.1fs); worker RSS %d -> %d KiB (+%.1f MiB, bound %.1f MiB, MAX_OUTPUT_SIZE "
           "%d KiB)" % (sent, time.monotonic() - t0, base, peak, grew / 1024,
                        rss_bound_kb / 1024, limit // 1024))
    assert closed
    assert st["closed"] == 0 and st["lost"] == 0
    assert gw.alive()
    assert grew <= rss_bound_kb, "worker RSS grew %.1f MiB for a %d KiB output limit" % (
        grew / 1024, limit // 1024)
