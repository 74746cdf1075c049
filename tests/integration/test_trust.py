"""Trust boundaries on the client side of a gateway: what a client may make the
gateway hold, send or believe. Each test plays the attacker with raw sockets
against a real gateway and checks what the backend or the client received, the
worker's memory, or that the gateway closed the connection.

  - handshake headers cannot set the params the gateway sets (php-fpm and Go,
    both FASTCGI_PREFIX values)
  - every byte queued for a client counts against MAX_OUTPUT_SIZE (pongs too)
  - a clean stop posts every close event, paced by the backend queue
  - cross-site WebSocket handshakes refused by default
  - one client cannot take the whole backend queue; a paused client is not cut
    for pings it cannot read
  - half-open TLS handshakes and half-sent first messages time out; connections
    per address capped; TCP keepalive on client sockets
  - a kicked client that was paused is never read again
"""

import json
import os
import re
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

import fk
import rproto
from peers import make_cert, rss_kb
import wsraw
from conftest import Backend, base_params

FORGED_SID = "0123456789abcdef"




def sid_of_port(gw, port):
    """The SID the gateway gave the client on local port `port` (LOG_LEVEL 3)."""
    lines = fk.wait_until(lambda: gw.log_lines(":%d connected" % port), 5,
                          msg="connect log line of port %d" % port)
    m = re.search(r"client ([0-9a-f]{16}) ", lines[0])
    assert m, lines[0]
    return m.group(1)


# ---------------------------------------------------------------- 1. params


@pytest.fixture(params=["php", "go"])
def real_backend(request):
    if request.param == "php":
        return request.getfixturevalue("php")
    return request.getfixturevalue("goecho")


@pytest.mark.parametrize("prefix", ["", "HTTP_"])
def test_handshake_headers_cannot_set_gateway_params(gateway, real_backend, prefix):
    params = base_params()
    params["HTTP_X_TRUSTED"] = "set by the gateway"
    gw = gateway(BACKEND_SERVER=real_backend.addr, FASTCGI_PREFIX=prefix, FASTCGI_PARAMS=params,
                 PROTOCOL="websocket", LOG_LEVEL=3)
    forged = [("Sessionid", FORGED_SID), ("Event", "2"), ("Uid", "admin"),
              ("Session", '{"role":"admin"}'), ("X-Trusted", "forged"),
              ("X-Real", "a"), ("x-real", "b"), ("Cookie", "a=1"), ("Cookie", "b=2")]
    ws = wsraw.RawWs(gw.port)
    try:
        ws.handshake(extra=forged)
        real_sid = sid_of_port(gw, ws.sock.getsockname()[1])
        ws.send_text("params")
        _, body = ws.recv_message()
    finally:
        ws.close()
    p = json.loads(body)
    sid = p.get("SESSIONID") or p.get("HTTP_SESSIONID")
    assert sid == real_sid, p
    assert (p.get("EVENT") or p.get("HTTP_EVENT")) == "0", p
    assert p.get("HTTP_SESSIONID", real_sid) == real_sid, p
    assert "HTTP_UID" not in p and "HTTP_SESSION" not in p, p
    assert p.get("HTTP_X_TRUSTED") == "set by the gateway", p
    # one param per header name, repeated values joined as HTTP does
    assert p.get("HTTP_X_REAL") in ("a, b", "a,b"), p
    assert p.get("HTTP_COOKIE") == "a=1; b=2", p
    assert gw.log_lines("handshake header Sessionid not passed")


# ---------------------------------------------------------------- 2. output limit


def test_ping_flood_never_read_is_cut_at_max_output_size(gateway, php):
    """A client that pings and never reads grew the worker by its pongs without
    bound; now the pongs count like any output: the client is cut at the limit."""
    limit = 1 << 20
    gw = gateway(BACKEND_SERVER=php.addr, FASTCGI_PARAMS=base_params(), PROTOCOL="websocket",
                 MAX_OUTPUT_SIZE=limit)
    worker = gw.worker_pids()[0]
    ws = wsraw.RawWs(gw.port)
    ws.handshake()
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    before = rss_kb(worker)
    ping = wsraw.frame(wsraw.OP_PING, b"p" * 125)
    burst = ping * 512  # 64 KiB of pings, 64 KiB of pongs owed
    sent = 0
    total = 64 << 20  # without the limit, this much of pongs piles up in the worker
    # Non-blocking sends that keep their place: a partial send is finished, never
    # restarted, so the frames the gateway parses stay whole.
    ws.sock.setblocking(False)
    cut = False
    pending = b""
    stalled_since = None
    deadline = time.monotonic() + 30
    while sent < total and time.monotonic() < deadline and not cut:
        if not pending:
            pending = burst
        try:
            n = ws.sock.send(pending)
            sent += n
            pending = pending[n:]
            stalled_since = None
        except (BrokenPipeError, ConnectionResetError):
            cut = True
        except BlockingIOError:
            cut = bool(gw.log_lines("slow consumer"))
            now = time.monotonic()
            stalled_since = stalled_since or now
            if now - stalled_since > 10:
                break  # the gateway stopped reading without cutting: reported below
            time.sleep(0.01)
    grew = rss_kb(worker) - before
    print("\nping flood: sent %d bytes of pings, worker RSS %d -> %d KiB (+%d), cut: %s"
          % (sent, before, before + grew, grew, cut))
    sockets = subprocess.run(["ss", "-tnmi", "( sport = :%d or dport = :%d )" % (gw.port, gw.port)],
                             capture_output=True, text=True, timeout=10).stdout
    ws.close()
    assert cut or gw.log_lines("slow consumer"), \
        "sent %d bytes of pings, never cut; sockets:\n%s\nlog:\n%s" % (sent, sockets, gw.log())
    gw.wait_log("over MAX_OUTPUT_SIZE (slow consumer)")
    # The limit (1 MiB) plus socket buffers and one read; not the 64 MiB sent.
    assert grew < 16 * 1024, "worker grew %d KiB under a ping flood" % grew
    # The worker still serves others.
    with fk.Client(gw.port) as c:
        pass
    ws2 = wsraw.RawWs(gw.port)
    ws2.handshake()
    ws2.send_text("still here")
    assert ws2.recv_message() == (wsraw.OP_TEXT, b"still here")
    ws2.close()


# ---------------------------------------------------------------- 4. clean stop


def test_sigterm_posts_every_close_event_with_a_small_queue(gateway, php, tmp_path):
    n = 5000
    log = tmp_path / "events.log"
    gw = gateway(BACKEND_SERVER=php.addr, FASTCGI_PARAMS=dict(base_params(), EVENT_LOG=str(log)),
                 BACKEND_QUEUE_SIZE=10, EVENT_CLOSE=1)
    worker = gw.worker_pids()[0]
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", gw.port))
            socks.append(s)
        fk.wait_until(lambda: len(os.listdir("/proc/%d/fd" % worker)) >= n, 20,
                      msg="%d clients accepted" % n)
        gw.proc.send_signal(15)
        gw.proc.wait(timeout=30)
    finally:
        for s in socks:
            s.close()
    lines = log.read_text().split("\n")[:-1] if log.exists() else []
    sids = [l.split()[0] for l in lines]
    assert len(sids) == n, "%d close events for %d clients" % (len(sids), n)
    assert len(set(sids)) == n, "duplicate close events"
    assert not gw.log_lines("queue full")


# ---------------------------------------------------------------- 5. origin


@pytest.mark.parametrize("allowed,origin,status", [
    (None, None, 101),                            # not a browser: unaffected
    (None, "http://127.0.0.1:{port}", 101),       # same origin
    (None, "http://evil.example", 403),           # another site: refused
    (None, "http://127.0.0.1:1", 403),            # same host, another port
    (None, "null", 403),
    ("*", "http://evil.example", 101),            # explicitly open
    (["http://app.example"], "http://app.example", 101),
    (["http://app.example"], "http://127.0.0.1:{port}", 403),
])
def test_origin_default_same_origin(gateway, fake, allowed, origin, status):
    f = fake()
    keys = dict(BACKEND_SERVER=f.addr, FASTCGI_PARAMS=base_params(), PROTOCOL="websocket")
    if allowed is not None:
        keys["ALLOWED_ORIGINS"] = allowed
    gw = gateway(**keys)
    extra = [] if origin is None else [("Origin", origin.format(port=gw.port))]
    ws = wsraw.RawWs(gw.port)
    try:
        got, _ = ws.handshake(expect=None, host="127.0.0.1:%d" % gw.port, extra=extra)
    finally:
        ws.close()
    assert got == status


# ---------------------------------------------------------------- 6. fairness


def test_one_client_cannot_take_the_whole_queue(gateway, fake):
    """With one backend connection and a queue of 32, a client pipelining 100
    messages holds at most 2 of the queue: it is paused, none of its messages is
    dropped, and another client's message is answered long before its last one."""
    f = fake(mode="sleep", delay=0.02)
    gw = gateway(BACKEND_SERVER=f.addr, FASTCGI_PARAMS=base_params(), BACKEND_MAX_CONNS=1,
                 BACKEND_QUEUE_SIZE=32, BACKEND_QUEUE_TIMEOUT=60)
    hog = fk.Client(gw.port, timeout=20)
    other = fk.Client(gw.port, timeout=20)
    try:
        hog.send(*[b"hog %03d" % i for i in range(100)])
        fk.wait_until(lambda: len(f.messages()) >= 3, 5, msg="the hog's first requests")
        t0 = time.monotonic()
        assert other.request(b"other", timeout=10) == b"other"
        other_done = time.monotonic() - t0
        got = [hog.recv(timeout=20) for _ in range(100)]
        hog_done = time.monotonic() - t0
    finally:
        hog.close()
        other.close()
    assert got == [b"hog %03d" % i for i in range(100)], "the hog lost or reordered messages"
    assert not gw.log_lines("queue full")
    # 100 x 20 ms for the hog; the other waits for at most a few of them.
    assert other_done < hog_done / 3, (other_done, hog_done)


def test_paused_websocket_client_is_not_cut_by_ping_timeout(gateway, fake):
    """256 requests in flight pause a client; while paused it is not read, so it
    cannot answer pings, and must not be cut for it."""
    f = fake(mode="sleep", delay=0.02)
    gw = gateway(BACKEND_SERVER=f.addr, FASTCGI_PARAMS=base_params(), PROTOCOL="websocket",
                 PING_INTERVAL=1, BACKEND_MAX_CONNS=1)
    ws = wsraw.RawWs(gw.port, timeout=30)
    try:
        ws.handshake()
        n = 300  # > 256 in flight: paused for the ~2.6 s that 128 replies take
        ws.send(b"".join(wsraw.frame(wsraw.OP_TEXT, b"m%03d" % i) for i in range(n)))
        got = [ws.recv_message(timeout=30)[1] for _ in range(n)]
    finally:
        ws.close()
    assert got == [b"m%03d" % i for i in range(n)]
    assert not gw.log_lines("ping timeout")


# ---------------------------------------------------------------- 7. slow and silent peers


def test_half_sent_first_message_times_out_whatever_idle_time(gateway, fake):
    f = fake()
    gw = gateway(BACKEND_SERVER=f.addr, FASTCGI_PARAMS=base_params(), HANDSHAKE_TIMEOUT=1,
                 IDLE_TIME=0)
    half = fk.Client(gw.port)
    quiet = fk.Client(gw.port)
    try:
        half.send_raw(b"\x00\x00")  # two bytes of a length prefix, then nothing
        t0 = time.monotonic()
        assert half.recv_closed(timeout=5), "half-sent first message never timed out"
        assert time.monotonic() - t0 < 3
        # A client that sent nothing is quiet, not half-open: still served.
        assert quiet.request(b"hello") == b"hello"
    finally:
        half.close()
        quiet.close()
    gw.wait_log("first message not completed in 1 s")


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_cert(tmp_path_factory.mktemp("cert"))


@pytest.mark.parametrize("protocol", ["length", "websocket"])
def test_stalled_tls_handshake_times_out(gateway, fake, cert, protocol):
    f = fake()
    gw = gateway(BACKEND_SERVER=f.addr, FASTCGI_PARAMS=base_params(), SSL=1,
                 SSL_CERT=str(cert[0]), SSL_PKEY=str(cert[1]), HANDSHAKE_TIMEOUT=1,
                 IDLE_TIME=0, PROTOCOL=protocol)
    silent = socket.create_connection(("127.0.0.1", gw.port))
    trickle = socket.create_connection(("127.0.0.1", gw.port))
    try:
        trickle.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
        for s in (silent, trickle):
            s.settimeout(5)
            t0 = time.monotonic()
            try:
                data = s.recv(100)
            except ConnectionResetError:
                data = b""
            assert data == b"" and time.monotonic() - t0 < 4, "TLS handshake never timed out"
    finally:
        silent.close()
        trickle.close()
    # A real TLS client is served.
    ctx = ssl.create_default_context(cafile=str(cert[0]))
    ctx.check_hostname = False
    if protocol == "length":
        raw = ctx.wrap_socket(socket.create_connection(("127.0.0.1", gw.port)),
                              server_hostname="localhost")
        raw.sendall(struct.pack(">I", 2) + b"hi")
        assert raw.recv(6) == struct.pack(">I", 2) + b"hi"
        raw.close()


def test_max_conn_per_ip_across_workers(gateway, fake):
    f = fake()
    gw = gateway(BACKEND_SERVER=f.addr, FASTCGI_PARAMS=base_params(), WORKER_NUM=2,
                 MAX_CONN_PER_IP=3)
    held = [fk.Client(gw.port) for _ in range(3)]
    try:
        for i, c in enumerate(held):
            assert c.request(b"c%d" % i) == b"c%d" % i
        extra = fk.Client(gw.port)
        assert extra.recv_closed(timeout=5), "a 4th connection from one address was accepted"
        extra.close()
        gw.wait_log("127.0.0.1 has MAX_CONN_PER_IP (3) connections")
        # Another address is counted apart.
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        s.connect(("127.0.0.1", gw.port))
        s.sendall(struct.pack(">I", 3) + b"two")
        s.settimeout(5)
        assert s.recv(7) == struct.pack(">I", 3) + b"two"
        s.close()
        # One leaves: one more may come.
        held.pop().close()

        def admitted():
            c = fk.Client(gw.port)
            try:
                return c.request(b"again", timeout=2) == b"again"
            except (fk.Closed, TimeoutError, OSError):
                return False
            finally:
                c.close()
        fk.wait_until(admitted, 5, msg="a connection admitted after one closed")
    finally:
        for c in held:
            c.close()


def test_client_sockets_have_tcp_keepalive(gateway, fake):
    f = fake()
    gw = gateway(BACKEND_SERVER=f.addr, FASTCGI_PARAMS=base_params())
    with fk.Client(gw.port) as c:
        assert c.request(b"x") == b"x"
        out = subprocess.run(["ss", "-tnoH", "state", "established",
                              "( sport = :%d )" % gw.port], capture_output=True, text=True,
                             timeout=10).stdout
    line = [l for l in out.splitlines() if ":%d" % c.local_port in l]
    assert line and "timer:(keepalive" in line[0], out
    # the first probe after 60 s of silence, not the system's default 2 hours
    left = re.search(r"timer:\(keepalive,([0-9.]+)(ms|sec|min)", line[0])
    assert left, line[0]
    secs = float(left.group(1)) * {"ms": 0.001, "sec": 1, "min": 60}[left.group(2)]
    assert secs <= 60, line[0]


# ---------------------------------------------------------------- 9. closing clients


class FakeRouter:
    """Enough of a router for one gateway worker: accepts its link, records the
    SIDs it announces (CONN), sends commands to it."""

    def __init__(self):
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        self.sids = []
        self.link = None
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        self.lsock.settimeout(0.2)
        while not self._stop and self.link is None:
            try:
                self.link, _ = self.lsock.accept()
            except socket.timeout:
                continue
        buf = b""
        self.link.settimeout(0.2)
        while not self._stop:
            try:
                chunk = self.link.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while len(buf) >= 8:
                t, slen, dlen = struct.unpack(">HHI", buf[:8])
                if len(buf) < 8 + slen + dlen:
                    break
                s = buf[8:8 + slen]
                buf = buf[8 + slen + dlen:]
                if t == 2:  # CONN
                    self.sids += [s[i:i + 16].decode() for i in range(0, len(s), 16)]

    def send(self, mtype, s=b"", d=b""):
        self.link.sendall(rproto.encode(mtype, s, d))

    def stop(self):
        self._stop = True
        self._t.join(2)
        if self.link:
            self.link.close()
        self.lsock.close()


def test_kicked_paused_client_is_never_read_again(gateway, fake):
    """A paused client (256 requests in flight) that is kicked while its output
    is still pending was read again once replies came back, with no one parsing
    what it sent: its input grew without bound. Now reads stop for good."""
    router = FakeRouter()
    f = fake(mode="sleep", delay=0.004)
    gw = gateway(BACKEND_SERVER=f.addr, FASTCGI_PARAMS=base_params(), BACKEND_MAX_CONNS=1,
                 ROUTER_HOST="127.0.0.1", ROUTER_PORT=router.port, MAX_OUTPUT_SIZE=64 << 20)
    worker = gw.worker_pids()[0]
    c = fk.Client(gw.port, rcvbuf=4096)
    try:
        fk.wait_until(lambda: router.sids, 5, msg="the client's CONN")
        sid = router.sids[-1]
        # Output the client never reads, so a kick has something to flush.
        c.send(b"big 16000000")
        fk.wait_until(lambda: len(f.messages()) >= 1, 5)
        c.send(*[b"m%03d" % i for i in range(300)])
        fk.wait_until(lambda: len(f.messages()) >= 20, 10, msg="requests flowing")
        router.send(4, sid.encode())  # KICK
        before = rss_kb(worker)
        # Replies come back (pending drops below half) while we keep sending.
        c.sock.settimeout(0.2)
        junk = b"\xff" * 65536
        sent = 0
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and sent < 200 << 20:
            try:
                sent += c.sock.send(junk)
            except socket.timeout:
                continue
            except OSError:
                break
        grew = rss_kb(worker) - before
    finally:
        c.close()
        router.stop()
    assert grew < 16 * 1024, "worker grew %d KiB after a kick (%d bytes sent)" % (grew, sent)
