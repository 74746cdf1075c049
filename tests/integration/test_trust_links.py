"""What the router and the gateway's links must hold against peers they should
not trust, links that die without a reset, and pushes that cannot fit a client.

A. An unauthenticated peer of a router with ROUTER_SECRET holds nothing: a type
   other than AUTH/SECRET is refused on its header, AUTH/SECRET bodies are capped,
   and a peer that does not authenticate within 5 s is closed.
B. Half-open links (LINK_TIMEOUT): a router link or a Redis connection that
   stops answering without a reset is found, dropped and reconnected; a TCP proxy
   here that stops forwarding (sockets left open) plays the stuck middlebox.
C. A push larger than a client's MAX_OUTPUT_SIZE can hold is dropped once, and
   no client is disconnected for it.
D. The bus-mode router's INFO never runs KEYS.
E. Channel names in logs are escaped.

Every wait has a deadline; everything started here is stopped by pid.
"""

import os
import selectors
import socket
import struct
import threading
import time

import pytest

import fk
import peers
import rproto as rp
from peers import gateways, redis_server, router, welcomed_clients  # noqa: F401 (fixtures)

SECRET = b"trust-links-secret"


def peer_closed(sock, timeout):
    """True once the other side closed sock (EOF or reset) within timeout; what
    arrives before is discarded."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True


# ---------------------------------------------------------------- A: pre-auth


def test_unauthenticated_peers_hold_nothing(router):
    r = router(ROUTER_SECRET=SECRET.decode())
    baseline = r.rss_kb()
    big = 32 << 20
    chunk = b"x" * (1 << 20)
    # Four peers announce 32 MB bodies (a broadcast, and an AUTH that claims to
    # carry a 32 MB secret) and then send as much of them as the router takes.
    heads = [struct.pack(">HHI", rp.SEND_ALL, 0, big), struct.pack(">HHI", rp.SEND_ALL, 0, big),
             struct.pack(">HHI", rp.AUTH, 0, big), struct.pack(">HHI", rp.SECRET, 0, big)]
    peers = []
    for h in heads:
        s = socket.create_connection(("127.0.0.1", r.port))
        s.sendall(h)
        peers.append(s)
    peak = baseline
    sent = [0] * len(peers)
    done = [False] * len(peers)
    deadline = time.monotonic() + 20
    while not all(done) and time.monotonic() < deadline:
        for i, s in enumerate(peers):
            if done[i]:
                continue
            s.settimeout(0.2)
            try:
                s.send(chunk)
                sent[i] += len(chunk)
                if sent[i] >= big:
                    done[i] = True
            except socket.timeout:
                pass  # the router stopped reading: that is fine too
            except (BrokenPipeError, ConnectionResetError):
                done[i] = True
        peak = max(peak, r.rss_kb())
    for s in peers:
        assert peer_closed(s, 5), "router kept a peer that announced a 32 MB body before auth"
        s.close()
    peak = max(peak, r.rss_kb())
    print("router RSS: baseline %d kB, peak %d kB; bytes the peers got to send: %r"
          % (baseline, peak, sent))
    if not r.sanitized():
        assert peak < baseline + 8 * 1024, \
            "router grew from %d to %d kB for peers that never authenticated" % (baseline, peak)
    log = r.read_log()
    assert "SEND_ALL (0 + %d bytes announced) before ROUTER_SECRET" % big in log
    assert log.count("message length over the limit") >= 2, log[-3000:]

    # The secret still works for a gateway link (AUTH) and a backend (SECRET).
    g = rp.Gateway(r.port, 1, 0, nsids=2, secret=SECRET)
    rp.wait_info(r.port, lambda i: i["clients"] == 2, secret=SECRET)
    bk = rp.Backend(r.port, secret=SECRET)
    bk.send_msg(g.sids, b"hello")
    assert rp.sync(bk, [g])[g] == [(rp.SEND_MSG, b"".join(g.sids), b"hello")]
    bk.close()
    g.close()


def test_unauthenticated_peers_closed_after_deadline(router):
    r = router(ROUTER_SECRET=SECRET.decode())
    silent = socket.create_connection(("127.0.0.1", r.port))
    # A peer that starts a well-formed AUTH and then trickles it, one byte at a
    # time: it never completes, so it never becomes trusted.
    trickle = socket.create_connection(("127.0.0.1", r.port))
    trickle.sendall(struct.pack(">HHI", rp.AUTH, 0, 8 + 256))
    t0 = time.monotonic()
    # A trusted backend on its own connection is not affected.
    bk = rp.Backend(r.port, secret=SECRET)
    closed_at = None
    while time.monotonic() - t0 < 10:
        try:
            trickle.sendall(b"\0")
        except (BrokenPipeError, ConnectionResetError):
            break
        if peer_closed(trickle, 0.3):
            break
    closed_at = time.monotonic() - t0
    assert peer_closed(silent, 10 - closed_at), "a silent unauthenticated peer was kept"
    silent_at = time.monotonic() - t0
    assert 3.5 < closed_at < 8, "trickling peer closed after %.1f s, not ~5 s" % closed_at
    assert 3.5 < silent_at < 8, "silent peer closed after %.1f s, not ~5 s" % silent_at
    assert "no ROUTER_SECRET within 5 s" in r.read_log()
    info = bk.info()
    assert info["clients"] == 0
    bk.close()
    silent.close()
    trickle.close()


# ---------------------------------------------------------------- C: oversized pushes


def test_oversized_push_dropped_clients_stay(router, gateways, php, tmp_path):
    r = router()
    gw = gateways(**peers.gateway_keys(php, r.port, tmp_path / "events.log", MAX_OUTPUT_SIZE=65536))
    clients = welcomed_clients(gw, 4)
    rp.wait_info(r.port, lambda i: i["clients"] == 4)
    bk = rp.Backend(r.port)
    big = b"B" * (100 * 1024)
    bk.send_all(big)
    bk.send_msg([c.sid for c in clients], big)    # shared among several recipients
    bk.send_msg([clients[0].sid], big)            # one recipient: copied
    bk.ch_add([c.sid for c in clients], b"room")
    bk.ch_pub(b"room", big)
    bk.send_all(b"small after")
    for i, c in enumerate(clients):
        assert c.recv(10) == b"small after", "client %d" % i
    # The largest push that fits still goes through: 65536 - 14 bytes.
    edge = b"E" * (65536 - 14)
    bk.send_msg([clients[1].sid], edge)
    assert clients[1].recv(10) == edge
    for c in clients:
        assert not c.recv_closed(0.2), "a client was closed for a push it could never hold"
    lines = gw.log_lines("over the largest push a client can take")
    assert len(lines) == 4, "one log line per dropped message:\n" + "\n".join(lines)
    assert not gw.log_lines("slow consumer")
    bk.close()
    for c in clients:
        c.close()


# ---------------------------------------------------------------- B: half-open links


class StallProxy:
    """A TCP proxy on a loopback port in front of 127.0.0.1:upstream. stall()
    makes every connection open now stop forwarding in both directions while
    its sockets stay open (a stuck middlebox: no FIN, no reset); connections
    made afterwards are forwarded normally. One thread, stopped by stop()."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.lsock, selectors.EVENT_READ, None)
        self.pairs = []          # [client sock, upstream sock, stalled]
        self.accepted = 0
        self.lock = threading.Lock()
        self.running = True
        self.stall_req = False
        self.stalled = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            if self.stall_req:
                self._do_stall()
            for key, _ in self.sel.select(0.05):
                if key.data is None:
                    c, _ = self.lsock.accept()
                    try:
                        u = socket.create_connection(("127.0.0.1", self.upstream), timeout=2)
                    except OSError:
                        c.close()
                        continue
                    pair = [c, u, False]
                    with self.lock:
                        self.pairs.append(pair)
                        self.accepted += 1
                    self.sel.register(c, selectors.EVENT_READ, (pair, 0))
                    self.sel.register(u, selectors.EVENT_READ, (pair, 1))
                    continue
                pair, side = key.data
                src, dst = pair[side], pair[1 - side]
                try:
                    data = src.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._drop(pair)
                    continue
                try:
                    dst.sendall(data)
                except OSError:
                    self._drop(pair)

    def _drop(self, pair):
        for s in pair[:2]:
            try:
                self.sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()
        with self.lock:
            if pair in self.pairs:
                self.pairs.remove(pair)

    def stall(self):
        """Stops forwarding on every connection open now; returns how many."""
        self.stalled = None
        self.stall_req = True
        peers.wait_until(lambda: self.stalled is not None, 5, interval=0.01,
                         msg="the proxy thread to stall")
        return self.stalled

    def _do_stall(self):
        # In the proxy thread: the selector is only touched there.
        with self.lock:
            pairs = list(self.pairs)
        for p in pairs:
            for s in p[:2]:
                try:
                    self.sel.unregister(s)
                except (KeyError, ValueError):
                    pass
            p[2] = True
        self.stall_req = False
        self.stalled = len(pairs)

    def stop(self):
        self.running = False
        self.thread.join(5)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        with self.lock:
            for p in self.pairs:
                for s in p[:2]:
                    s.close()
        self.sel.close()


@pytest.fixture
def proxies():
    started = []

    def start(upstream):
        p = StallProxy(upstream)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def test_router_link_stalled_is_found_and_resynced(router, gateways, proxies, php, tmp_path):
    r = router(LINK_TIMEOUT=2)
    px = proxies(r.port)
    gw = gateways(**peers.gateway_keys(php, px.port, tmp_path / "events.log", LINK_TIMEOUT=2))
    (c,) = welcomed_clients(gw, 1)
    rp.wait_info(r.port, lambda i: i["clients"] == 1)
    gw.wait_log("pings this link", timeout=5)
    assert px.stall() == 1
    t0 = time.monotonic()
    gw.wait_log("LINK_TIMEOUT", "the link is dead", timeout=8)
    found = time.monotonic() - t0
    # Reconnected through the proxy (new connections are forwarded) and resynced.
    fk.wait_until(lambda: px.accepted >= 2, 8, msg="the gateway to reconnect")
    gw.wait_log("connected, announced 1 sessions", timeout=8)
    bk = rp.Backend(r.port)
    deadline = time.monotonic() + 10
    got = None
    while got is None and time.monotonic() < deadline:
        bk.send_msg([c.sid], b"after the stall")
        try:
            got = c.recv(0.5)
        except TimeoutError:
            pass
    assert got == b"after the stall"
    print("dead link found %.1f s after the stall" % found)
    assert found < 2 + 2, "found after %.1f s, LINK_TIMEOUT is 2" % found
    # The router, for its part, dropped the stalled link (or the new AUTH replaced it).
    rp.wait_for(lambda: "LINK_TIMEOUT" in r.read_log() or "replaces its link" in r.read_log(),
                timeout=8, what="the router to let go of the stalled link")
    bk.close()
    c.close()


def test_router_drops_silent_link_that_answered_ping(router):
    r = router(LINK_TIMEOUT=2)
    new = rp.Gateway(r.port, 1, 0, nsids=1)
    new.pong = True
    old = rp.Gateway(r.port, 1, 1, nsids=1)   # an old gateway: never answers PING
    rp.wait_info(r.port, lambda i: i["clients"] == 2)
    # Both get PINGs; the new one answers.
    deadline = time.monotonic() + 5
    while (new.pings == 0 or old.pings == 0) and time.monotonic() < deadline:
        for g in (new, old):
            try:
                g.recv(0.1)
            except TimeoutError:
                pass
    assert new.pings and old.pings, (new.pings, old.pings)
    # The new one falls silent (it stops reading and answering): dropped within
    # LINK_TIMEOUT. The old one, which never answered, is kept.
    new.pong = False
    t0 = time.monotonic()
    assert new.wait_closed(6), "router kept a link silent for LINK_TIMEOUT"
    assert time.monotonic() - t0 < 4.5
    assert "LINK_TIMEOUT" in r.read_log()
    info = rp.wait_info(r.port, lambda i: len(i["gateways"]) == 1)
    assert info["gateways"][0][:2] == (1, 1)
    old.close()
    new.close()


# ---------------------------------------------------------------- B, D: the Redis bus

BUS_PREFIX = "fktrust:"


def bus_gateway_keys(php, url, event_log, **over):
    return peers.gateway_keys(php, None, event_log, bus=url, BUS_PREFIX=BUS_PREFIX, **over)


def test_bus_stalled_redis_is_found_and_resubscribed(redis_server, gateways, proxies, php,
                                                      tmp_path):
    px = proxies(redis_server.port)
    gw = gateways(**bus_gateway_keys(php, "redis://127.0.0.1:%d" % px.port,
                                     tmp_path / "events.log", LINK_TIMEOUT=2))
    rc = redis_server.client()
    fk.wait_until(lambda: rc.execute_command("PUBSUB", "NUMSUB", BUS_PREFIX + "gw:1:0")[1] == 1,
                  10, msg="the worker to subscribe")
    (c,) = welcomed_clients(gw, 1)
    assert px.stall() == 2          # the subscribe and the command connection
    t0 = time.monotonic()
    fk.wait_until(lambda: len(gw.log_lines("no answer to a ping", "LINK_TIMEOUT")) == 2, 8,
                  msg="both Redis connections found dead\n" + gw.log()[-3000:])
    found = time.monotonic() - t0
    print("dead Redis connections found %.1f s after the stall" % found)
    assert found < 2 + 2, "found after %.1f s, LINK_TIMEOUT is 2" % found
    # Reconnected through the proxy, subscribed again and presence rewritten.
    fk.wait_until(lambda: px.accepted >= 4, 8, msg="the gateway to reconnect to Redis")
    fk.wait_until(lambda: rc.sismember(BUS_PREFIX + "sids:1:0", c.sid), 8,
                  msg="presence rewritten after the reconnect")
    deadline = time.monotonic() + 10
    got = None
    while got is None and time.monotonic() < deadline:
        rc.publish(BUS_PREFIX + "gw:1:0", rp.encode(rp.SEND_MSG, c.sid, b"after the stall"))
        try:
            got = c.recv(0.5)
        except TimeoutError:
            pass
    assert got == b"after the stall"
    c.close()


def test_bus_info_never_scans_the_keyspace(redis_server, gateways, router, php, tmp_path):
    rc = redis_server.client()
    # A Redis shared with 200,000 other keys.
    pipe = rc.pipeline(transaction=False)
    for i in range(0, 200000, 5000):
        pipe.mset({"other:%d" % j: "v" for j in range(i, i + 5000)})
    pipe.execute()
    url = "redis://127.0.0.1:%d" % redis_server.port
    gw1 = gateways(**bus_gateway_keys(php, url, tmp_path / "events.log", WORKER_NUM=2))
    gw2 = gateways(**bus_gateway_keys(php, url, tmp_path / "events.log", SERVER_ID=2))
    welcomed = welcomed_clients(gw1, 3) + welcomed_clients(gw2, 2)
    # A worker that died without a clean stop: registered, heartbeat expired.
    rc.sadd(BUS_PREFIX + "workers", "9:9")
    r = router(BUS=url, BUS_PREFIX=BUS_PREFIX)
    rc.config_resetstat()

    def info():
        bk = rp.Backend(r.port)
        try:
            return bk.info()
        finally:
            bk.close()
    got = rp.wait_for(lambda: (lambda i: i if i["clients"] == 5 and len(i["gateways"]) == 3
                               else None)(info()), timeout=10, what="INFO with 5 clients")
    per = {g[:2]: g[2] for g in got["gateways"]}
    assert sum(per.values()) == 5 and set(per) == {(1, 0), (1, 1), (2, 0)}, got
    stats = rc.info("commandstats")
    assert "cmdstat_keys" not in stats, stats.get("cmdstat_keys")
    assert "cmdstat_scan" not in stats
    assert not rc.sismember(BUS_PREFIX + "workers", "9:9"), "stale registry entry kept"
    # A clean stop takes the worker out of the registry at once.
    gw2.stop()
    fk.wait_until(lambda: not rc.sismember(BUS_PREFIX + "workers", "2:0"), 5,
                  msg="the stopped worker to leave the registry")
    for c in welcomed:
        c.close()


# ---------------------------------------------------------------- E: log lines


def test_channel_names_escaped_in_router_log(router):
    r = router(LOG_LEVEL=3)
    evil = b"room\n2030-01-01 00:00:00.000 [1] ERROR forged line\x1b[2J\xff\\"
    g = rp.Gateway(r.port, 1, 0, nsids=1)
    g.sub(evil)
    # The subscription and the publish come on two connections: the publish
    # waits until the router has the subscription.
    rp.wait_info(r.port, lambda i: i["gateways"][0][3] == 2)
    bk = rp.Backend(r.port)
    bk.ch_pub(evil, b"hi")
    assert (rp.CH_PUB, evil, b"hi") in rp.sync(bk, [g])[g]
    g.unsub(evil)
    rp.wait_info(r.port, lambda i: i["gateways"][0][3] == 1)  # only the fence channel left
    log = r.read_log()
    want = "room\\x0a2030-01-01 00:00:00.000 [1] ERROR forged line\\x1b[2J\\xff\\\\"
    for verb in ("CH_SUB", "CH_PUB", "CH_UNSUB"):
        assert '%s "%s"' % (verb, want) in log, verb
    assert not [l for l in log.splitlines() if l.startswith("2030-01-01")], "a forged log line"
    assert "\x1b" not in log
    bk.close()
    g.close()
