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
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

import fk
import rproto as rp
from conftest import base_params
from routerfix import Router

SECRET = b"trust-links-secret"


@pytest.fixture
def router(tmp_path):
    """Factory: router(**keys) starts a router; all are stopped at teardown and
    must exit cleanly on SIGTERM."""
    started = []

    def start(**keys):
        d = tmp_path / ("router%d" % len(started))
        d.mkdir()
        r = Router(d, **keys).start()
        started.append(r)
        return r

    yield start
    for r in started:
        assert r.stop() == 0, r.read_log()[-4000:]


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


# ---------------------------------------------------------------- gateways


def gateway_keys(php, router_port, event_log, **over):
    p = base_params()
    p["EVENT_LOG"] = str(event_log)
    keys = {"SERVER_ID": 1, "WORKER_NUM": 1, "ROUTER_HOST": "127.0.0.1",
            "ROUTER_PORT": router_port, "BACKEND_SERVER": php.addr, "FASTCGI_PREFIX": "",
            "FASTCGI_PARAMS": p, "EVENT_CONNECT": 1}
    keys.update(over)
    return keys


@pytest.fixture
def gateways(tmp_path):
    """Factory: gateways(**keys) starts a gateway; all are stopped at teardown and
    must show no sanitizer report."""
    started = []

    def start(**keys):
        gw = fk.Gateway(tmp_path / ("gw%d" % len(started)), name="gw%d" % len(started), **keys)
        started.append(gw)
        return gw.start()

    yield start
    problems = []
    for gw in started:
        gw.stop()
        problems += gw.sanitizer_report()
    assert not problems, "\n".join(problems[:20])


def welcomed_clients(gw, n):
    """n length-protocol clients of gw, each with .sid from its welcome message."""
    out = []
    for _ in range(n):
        c = gw.client()
        w = c.recv(10)
        assert w.startswith(b"welcome "), w
        c.sid = w[len(b"welcome "):]
        out.append(c)
    return out


# ---------------------------------------------------------------- C: oversized pushes


def test_oversized_push_dropped_clients_stay(router, gateways, php, tmp_path):
    r = router()
    gw = gateways(**gateway_keys(php, r.port, tmp_path / "events.log", MAX_OUTPUT_SIZE=65536))
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
