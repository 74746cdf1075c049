"""Integration tests of the gateway core (DESIGN §2-6): length-prefixed clients,
master/workers, the FastCGI backend side, limits and config checking.

Real backends: php-fpm + tests/backends/echo.php (no FASTCGI_PREFIX) and the Go
net/http/fcgi program tests/backends/goecho (FASTCGI_PREFIX = "HTTP_"); the fakes
of fcgifake.py where a fault must be injected or connections counted.
"""

import json
import os
import re
import signal
import socket
import struct
import time

import pytest

import fk
from conftest import STATIC_PARAM, base_params

SID_RE = re.compile(r"^[0-9a-f]{16}$")
SID_TOKEN = re.compile(r"(?<![0-9a-zA-Z])[0-9a-f]{16}(?![0-9a-zA-Z])")
ALL_BYTES = bytes(range(256))


def fake_keys(f, **kw):
    keys = {"BACKEND_SERVER": f.addr, "FASTCGI_PARAMS": base_params()}
    keys.update(kw)
    return keys


def params_of(client):
    """The params the backend saw for a "params" message of this client."""
    return json.loads(client.request(b"params"))


def served(gw, n=1, payload=b"still-alive"):
    """n fresh clients each get an echo."""
    for i in range(n):
        with gw.client() as c:
            msg = payload + b"-%d" % i
            assert c.request(msg) == msg


# ---------------------------------------------------------------- echo

@pytest.mark.parametrize("size", [0, 1, 65535, 65536])
def test_echo_sizes(gateway, backend, size):
    gw = gateway(**backend.keys())
    body = (ALL_BYTES * (size // 256 + 1))[:size]
    with gw.client() as c:
        c.send(body, b"after")
        got = c.recv()
        if size == 0 and got == b"after":
            return  # an empty reply body sends nothing back (DESIGN §6: "the body (if any)")
        assert len(got) == size and got == body
        assert c.recv() == b"after"


def test_echo_one_megabyte(gateway, backend):
    gw = gateway(**backend.keys(MAX_BUFF_SIZE=2000000, MAX_OUTPUT_SIZE=16 * 1024 * 1024))
    body = os.urandom(1000000)
    with gw.client(timeout=15) as c:
        c.send(body)
        got = c.recv()
        assert len(got) == len(body) and got == body
        assert c.request(b"small") == b"small"


def test_pipelined_order(gateway, backend):
    gw = gateway(**backend.keys())
    msgs = [b"msg-%03d" % i for i in range(100)]
    with gw.client(timeout=15) as c:
        c.send(*msgs)
        got = [c.recv() for _ in msgs]
    assert got == msgs


def test_pipelined_1000_backpressure(gateway, backend):
    # more than any backend queue: the gateway must hold the client back, not drop
    gw = gateway(**backend.keys())
    msgs = [b"m%04d" % i for i in range(1000)]
    with gw.client(timeout=30) as c:
        c.send(*msgs)
        got = [c.recv() for _ in msgs]
    assert got == msgs


def test_framing_byte_by_byte(fake, gateway):
    f = fake()
    gw = gateway(**fake_keys(f, EVENT_CLOSE=0))
    msgs = [b"abc", b"x" * 300, b"defgh"]
    with gw.client() as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = b"".join(c.frame(m) for m in msgs)
        for i in range(len(data)):
            c.send_raw(data[i:i + 1])
        assert [c.recv() for _ in msgs] == msgs
    # Requests run concurrently on separate connections: the backend may record
    # them in any order (the client's replies above are in order).
    assert sorted(r["body"] for r in f.messages()) == sorted(msgs)


@pytest.mark.parametrize("body", [ALL_BYTES, b"\rstarts with CR", b"\nstarts with LF",
                                  b"\r\n\r\nlooks like the end of headers", b"\0" * 7,
                                  ALL_BYTES[::-1] * 300],
                         ids=["all-bytes", "cr", "lf", "crlfcrlf", "nuls", "76800-bytes"])
def test_binary_roundtrip(gateway, backend, body):
    gw = gateway(**backend.keys(MAX_BUFF_SIZE=100000))
    with gw.client() as c:
        assert c.request(body) == body


def test_several_clients_and_workers(gateway, backend):
    gw = gateway(**backend.keys(WORKER_NUM=2))
    clients = [gw.client() for _ in range(10)]
    try:
        for i, c in enumerate(clients):
            c.send(b"from client %d" % i)
        for i, c in enumerate(clients):
            assert c.recv() == b"from client %d" % i
    finally:
        for c in clients:
            c.close()


# ---------------------------------------------------------------- params and events

def test_params_reach_backend(gateway, backend):
    gw = gateway(**backend.keys())
    with gw.client() as c, gw.client() as c2:
        j = params_of(c)
        sid = j["SESSIONID"]
        assert SID_RE.match(sid), sid
        assert j["EVENT"] == "0"
        assert j["REMOTE_ADDR"] == "127.0.0.1"
        assert j["REMOTE_PORT"] == str(c.local_port)
        assert j["CONTENT_LENGTH"] == str(len(b"params"))
        assert j[STATIC_PARAM[0]] == STATIC_PARAM[1]
        if backend.name == "php":
            # no prefix: plain SESSIONID / EVENT
            assert "HTTP_SESSIONID" not in j and "HTTP_EVENT" not in j
        # the SID is stable for a session and distinct between sessions
        assert params_of(c)["SESSIONID"] == sid
        sid2 = params_of(c2)["SESSIONID"]
        assert SID_RE.match(sid2) and sid2 != sid


def test_prefix_applies_to_sessionid_and_event_only(fake, gateway):
    f = fake()
    gw = gateway(**fake_keys(f, FASTCGI_PREFIX="HTTP_"))
    with gw.client() as c:
        j = params_of(c)
    assert SID_RE.match(j["HTTP_SESSIONID"]) and j["HTTP_EVENT"] == "0"
    assert "SESSIONID" not in j and "EVENT" not in j
    assert j["REMOTE_ADDR"] == "127.0.0.1" and j["CONTENT_LENGTH"] == "6"


def test_sids_unique_across_workers(fake, gateway):
    f = fake()
    gw = gateway(**fake_keys(f, WORKER_NUM=2))
    clients = [gw.client() for _ in range(30)]
    try:
        for c in clients:
            c.send(b"params")
        sids = [json.loads(c.recv())["SESSIONID"] for c in clients]
    finally:
        for c in clients:
            c.close()
    assert all(SID_RE.match(s) for s in sids)
    assert len(set(sids)) == len(sids)


def test_event_connect_welcome_first(gateway, backend):
    gw = gateway(**backend.keys(EVENT_CONNECT=1))
    with gw.client() as c:
        c.send(b"first")  # sent at once: the welcome must still come before it
        welcome = c.recv()
        assert welcome.startswith(b"welcome "), welcome
        sid = welcome[8:].decode()
        assert SID_RE.match(sid), welcome
        assert c.recv() == b"first"
        assert params_of(c)["SESSIONID"] == sid


def test_event_close_reaches_backend(gateway, backend, tmp_path):
    log = tmp_path / "events.log"
    gw = gateway(**backend.keys(event_log=log, EVENT_CLOSE=1))
    c = gw.client()
    sid = params_of(c)["SESSIONID"]
    c.close()
    fk.wait_until(lambda: log.exists() and (sid + " closed") in log.read_text(),
                  msg="EVENT=2 for %s in %s" % (sid, log))
    # exactly one: the stop (which posts what is still owed) must not post it again
    assert gw.stop()
    assert [l.split()[0] for l in log.read_text().splitlines()].count(sid) == 1, log.read_text()


def test_event_close_params(fake, gateway):
    f = fake()
    gw = gateway(**fake_keys(f, EVENT_CLOSE=1))
    c = gw.client()
    sid = params_of(c)["SESSIONID"]
    c.close()
    ev = fk.wait_until(lambda: f.events(2, sid), msg="EVENT=2 request")
    assert ev[0]["params"].get("CONTENT_LENGTH", "0") in ("0", "")
    assert ev[0]["params"][STATIC_PARAM[0]] == STATIC_PARAM[1]


def test_stderr_logged_with_sid(fake, gateway):
    f = fake()
    gw = gateway(**fake_keys(f, LOG_LEVEL=3))
    with gw.client() as c:
        assert c.request(b"fault:stderr") == b"fault:stderr"
        sid = f.sid_of(b"fault:stderr")
    gw.wait_log("fake stderr message", sid)


def test_php_stderr_logged(gateway, php):
    gw = gateway(BACKEND_SERVER=php.addr, FASTCGI_PARAMS=base_params(), LOG_LEVEL=3)
    with gw.client() as c:
        sid = params_of(c)["SESSIONID"]
        assert c.request(b"stderr please") == b"stderr please"
    gw.wait_log("echo.php stderr test message", sid)


# ---------------------------------------------------------------- keepalive and pool

@pytest.mark.parametrize("keepalive", [0, 4])
def test_keepalive_go_connection_count(new_goecho, gateway, keepalive):
    g = new_goecho()
    gw = gateway(BACKEND_SERVER=g.addr, FASTCGI_PREFIX="HTTP_", FASTCGI_PARAMS=base_params(),
                 BACKEND_KEEPALIVE=keepalive, EVENT_CLOSE=0)
    n = 40
    with gw.client() as c:
        for i in range(n):
            assert c.request(b"k%d" % i) == b"k%d" % i
    if keepalive:
        assert 1 <= g.connections() <= keepalive, "%d connections for %d requests" % (g.connections(), n)
    else:
        fk.wait_until(lambda: g.connections() >= n,
                      msg="one connection per request (%d)" % g.connections())


def test_multiplex_go(new_goecho, gateway):
    """BACKEND_MULTIPLEX with Go's net/http/fcgi (it answers FCGI_MPXS_CONNS=1):
    with one connection allowed, 20 clients' slow requests run at the same
    time on it instead of one after the other."""
    g = new_goecho()
    gw = gateway(BACKEND_SERVER=g.addr, FASTCGI_PREFIX="HTTP_", FASTCGI_PARAMS=base_params(),
                 BACKEND_MULTIPLEX=1, BACKEND_KEEPALIVE=1, BACKEND_MAX_CONNS=1, EVENT_CLOSE=0)
    with gw.client() as warm:  # the first request learns that the backend multiplexes
        assert warm.request(b"warm") == b"warm"
    clients = [gw.client() for _ in range(20)]
    try:
        for i, c in enumerate(clients):
            c.send(b"sleep 1 m%d" % i)
        # One after the other this would take 20 s; together, about 1 s.
        deadline = time.monotonic() + 8
        for i, c in enumerate(clients):
            left = max(0.1, deadline - time.monotonic())
            assert c.recv(timeout=left) == b"sleep 1 m%d" % i
    finally:
        for c in clients:
            c.close()
    assert g.connections() == 1


def test_multiplex_php_declines(gateway, php):
    """php-fpm answers FCGI_MPXS_CONNS=0: requests still work, one per connection."""
    gw = gateway(BACKEND_SERVER=php.addr, FASTCGI_PARAMS=base_params(), BACKEND_MULTIPLEX=1,
                 BACKEND_KEEPALIVE=2, EVENT_CLOSE=0)
    clients = [gw.client() for _ in range(6)]
    try:
        for i, c in enumerate(clients):
            c.send(b"m%d" % i, b"n%d" % i)
        for i, c in enumerate(clients):
            assert c.recv() == b"m%d" % i and c.recv() == b"n%d" % i
    finally:
        for c in clients:
            c.close()


@pytest.mark.parametrize("keepalive", [0, 2])
def test_keepalive_fake_flag_and_count(fake, gateway, keepalive):
    f = fake()
    gw = gateway(**fake_keys(f, BACKEND_KEEPALIVE=keepalive, EVENT_CLOSE=0))
    n = 30
    with gw.client() as c:
        for i in range(n):
            assert c.request(b"f%d" % i) == b"f%d" % i
    msgs = f.messages()
    assert len(msgs) == n
    assert all(r["keep"] == bool(keepalive) for r in msgs)
    if keepalive:
        assert f.connections <= keepalive
    else:
        assert len({r["conn"] for r in msgs}) == n


def test_keepalive_php(gateway, php):
    gw = gateway(BACKEND_SERVER=php.addr, FASTCGI_PARAMS=base_params(), BACKEND_KEEPALIVE=2)
    with gw.client() as c, gw.client() as c2:
        for i in range(30):
            c.send(b"a%d" % i)
            c2.send(b"b%d" % i)
            assert c.recv() == b"a%d" % i
            assert c2.recv() == b"b%d" % i


def test_first_backend_down(fake, gateway):
    f = fake()
    dead = "127.0.0.1:%d" % fk.free_port()
    gw = gateway(**fake_keys(f, BACKEND_SERVER={dead: 1, f.addr: 1}, BACKEND_CONNECT_TIMEOUT=1))
    with gw.client() as c:
        for i in range(20):
            assert c.request(b"r%d" % i) == b"r%d" % i
    assert len(f.messages()) == 20


def test_first_backend_down_php(gateway, php):
    dead = "127.0.0.1:%d" % fk.free_port()
    gw = gateway(BACKEND_SERVER={dead: 5, php.addr: 1}, FASTCGI_PARAMS=base_params())
    with gw.client() as c:
        for i in range(20):
            assert c.request(b"p%d" % i) == b"p%d" % i


def test_weights_spread_requests(fake, gateway):
    a, b = fake(), fake()
    gw = gateway(**fake_keys(a, BACKEND_SERVER={a.addr: 3, b.addr: 1}, EVENT_CLOSE=0))
    with gw.client() as c:
        for i in range(40):
            assert c.request(b"w%d" % i) == b"w%d" % i
    na, nb = len(a.messages()), len(b.messages())
    assert na + nb == 40
    assert 25 <= na <= 35 and 5 <= nb <= 15, (na, nb)


def test_unix_socket_backend(fake, gateway, tmp_path):
    f = fake(unix=tmp_path / "fcgi.sock")
    gw = gateway(**fake_keys(f))
    with gw.client() as c:
        assert c.request(b"via unix") == b"via unix"


def test_backend_max_conns_caps_connections(fake, gateway):
    f = fake(mode="slow", delay=0.1)
    gw = gateway(**fake_keys(f, BACKEND_MAX_CONNS=2, BACKEND_QUEUE_SIZE=100, EVENT_CLOSE=0))
    clients = [gw.client(timeout=10) for _ in range(12)]
    try:
        for i, c in enumerate(clients):
            c.send(b"burst %d" % i)
        for i, c in enumerate(clients):
            assert c.recv() == b"burst %d" % i
    finally:
        for c in clients:
            c.close()
    assert f.max_open <= 2, "%d connections open at once with BACKEND_MAX_CONNS=2" % f.max_open


def test_backend_queue_overflow_fails_request_only(fake, gateway):
    f = fake(mode="hang")
    gw = gateway(**fake_keys(f, BACKEND_MAX_CONNS=1, BACKEND_QUEUE_SIZE=2, EVENT_CLOSE=0,
                             BACKEND_READ_TIMEOUT=30))
    clients = [gw.client() for _ in range(6)]
    try:
        for i, c in enumerate(clients):
            c.send(b"q%d" % i)
        # 1 in flight + 2 queued; the others fail at once, logged with their SID
        fk.wait_until(lambda: len(f.messages()) == 1, msg="one request at the backend")
        fk.wait_until(lambda: len({m.group(0) for l in gw.log_lines() if "queue" in l.lower()
                                   for m in [SID_TOKEN.search(l)] if m}) >= 3,
                      msg="3 queue-full failures logged with their SID:\n" + gw.log())
        assert not any(c.recv_closed(0.05) for c in clients), "a client was closed"
    finally:
        for c in clients:
            c.close()
    assert f.max_open <= 1
    f.stop()  # fail the hung request now, so the gateway need not wait for it at stop


def test_many_clients(backend, gateway):
    gw = gateway(**backend.keys(WORKER_NUM=2, EVENT_CLOSE=0))
    clients = [gw.client(timeout=15) for _ in range(200)]
    try:
        for i, c in enumerate(clients):
            c.send(b"client %d" % i)
        for i, c in enumerate(clients):
            assert c.recv() == b"client %d" % i
    finally:
        for c in clients:
            c.close()


def test_no_backend_client_stays(gateway):
    dead = "127.0.0.1:%d" % fk.free_port()
    gw = gateway(BACKEND_SERVER=dead, FASTCGI_PARAMS=base_params(), BACKEND_CONNECT_TIMEOUT=1,
                 EVENT_CLOSE=0)

    def failure_lines():
        # lines naming a SID and the backend (its address or the word)
        return [l for l in (gw.log() + gw.output()).splitlines()
                if SID_TOKEN.search(l) and (dead in l or "backend" in l.lower())]
    with gw.client() as c:
        c.send(b"nobody home")
        lines = fk.wait_until(failure_lines, msg="a failure line with the SID:\n" + gw.log())
        sid = SID_TOKEN.search(lines[0]).group(0)
        assert not c.recv_closed(0.3), "client closed after a backend failure"
        c.send(b"again")
        fk.wait_until(lambda: len([l for l in failure_lines() if sid in l]) > len(lines),
                      msg="the second failure logged")
        assert not c.recv_closed(0.2), "client closed after a backend failure"


# ---------------------------------------------------------------- slow and broken backends

def test_read_timeout_then_served(fake, gateway):
    f = fake()
    gw = gateway(**fake_keys(f, BACKEND_READ_TIMEOUT=1))
    with gw.client(timeout=8) as c, gw.client() as other:
        c.send(b"fault:hang", b"after the hang")
        assert other.request(b"other") == b"other"
        assert c.recv() == b"after the hang"
        sid = f.sid_of(b"fault:hang")
        gw.wait_log(sid)
        assert c.request(b"next") == b"next"


def test_read_timeout_fast_backend_serves_next(fake, gateway):
    slow, fast = fake(mode="hang"), fake()
    gw = gateway(**fake_keys(slow, BACKEND_SERVER={slow.addr: 1, fast.addr: 1},
                             BACKEND_READ_TIMEOUT=1, EVENT_CLOSE=0))
    msgs = [b"m%d" % i for i in range(4)]
    with gw.client(timeout=8) as c:
        c.send(*msgs)
        fk.wait_until(lambda: len(slow.messages()) + len(fast.messages()) == len(msgs),
                      msg="all requests at a backend")
        hung = [r["body"] for r in slow.messages()]
        assert hung, "no request reached the hanging backend"
        expected = [m for m in msgs if m not in hung]
        assert expected, "no request reached the fast backend"
        # the fast replies arrive, in order, once the hung ones before them time out
        assert [c.recv(timeout=5) for _ in expected] == expected
        gw.wait_log(slow.messages()[0]["sid"], slow.addr)
        assert not c.recv_closed(0.2), "client closed after a backend read timeout"


@pytest.mark.parametrize("keepalive", [0, 2])
@pytest.mark.parametrize("fault", ["badversion", "overlong", "close_early"])
def test_broken_backend(fake, gateway, fault, keepalive):
    f = fake()
    gw = gateway(**fake_keys(f, BACKEND_KEEPALIVE=keepalive, BACKEND_READ_TIMEOUT=3))
    workers = gw.worker_pids()
    with gw.client() as c, gw.client() as other:
        c.send(b"fault:" + fault.encode())
        fk.wait_until(lambda: f.sid_of(b"fault:"), msg="the request reaching the fake")
        sid = f.sid_of(b"fault:")
        gw.wait_log(sid, f.addr)
        for i in range(3):
            assert c.request(b"ok%d" % i) == b"ok%d" % i  # no truncated/garbage reply first
            assert other.request(b"other%d" % i) == b"other%d" % i
    assert gw.worker_pids() == workers


@pytest.mark.parametrize("keepalive", [0, 2])
def test_backend_stdout_after_end(fake, gateway, keepalive):
    f = fake()
    gw = gateway(**fake_keys(f, BACKEND_KEEPALIVE=keepalive))
    workers = gw.worker_pids()
    with gw.client() as c, gw.client() as other:
        assert c.request(b"fault:after_end") == b"fault:after_end"
        for i in range(5):
            assert c.request(b"ok%d" % i) == b"ok%d" % i
            assert other.request(b"o%d" % i) == b"o%d" % i
    assert gw.worker_pids() == workers


@pytest.mark.parametrize("fault", ["lf", "nocl", "tiny", "status:201"])
def test_cgi_reply_shapes(fake, gateway, fault):
    f = fake()
    gw = gateway(**fake_keys(f))
    body = b"fault:" + fault.encode() + b" \x00\r\n body"
    with gw.client() as c:
        assert c.request(body) == body
        assert c.request(b"next") == b"next"


def test_cgi_content_length_honoured(fake, gateway):
    f = fake()
    gw = gateway(**fake_keys(f))
    with gw.client() as c:
        assert c.request(b"fault:cl_short and more") == b"fau"
        assert c.request(b"next") == b"next"


def test_reply_order_fake_slow_first(fake, gateway):
    f = fake()
    gw = gateway(**fake_keys(f, EVENT_CLOSE=0))
    msgs = [b"fault:sleep:0.7 first (slow)", b"second", b"third", b"fourth"]
    with gw.client() as c:
        c.send(*msgs)
        assert [c.recv() for _ in msgs] == msgs
    # the backend really finished them out of order: the later ones were answered
    # while the first was still sleeping
    reqs = {r["body"]: r for r in f.messages()}
    first = reqs[msgs[0]]
    assert all(reqs[m]["t_done"] < first["t_done"] for m in msgs[1:]), \
        "requests of one client were not dispatched concurrently"


def test_reply_order_real_backend(gateway, backend):
    gw = gateway(**backend.keys())
    msgs = [b"sleep 0.5", b"fast one", b"fast two"]
    with gw.client() as c:
        c.send(*msgs)
        assert [c.recv() for _ in msgs] == msgs


def test_client_vanishes_while_request_in_flight(fake, gateway):
    f = fake()
    gw = gateway(**fake_keys(f))
    workers = gw.worker_pids()
    c = gw.client()
    c.send(b"fault:sleep:0.3 reply to a ghost")
    sid = fk.wait_until(lambda: f.sid_of(b"fault:sleep"), msg="request at the backend")
    c.close()
    fk.wait_until(lambda: f.answered_for(sid, b"fault:sleep"), msg="the slow reply sent")
    served(gw, 3)
    assert gw.worker_pids() == workers


# ---------------------------------------------------------------- bad clients

def test_oversize_length_prefix(fake, gateway):
    f = fake()
    gw = gateway(**fake_keys(f, MAX_BUFF_SIZE=65536))
    workers = gw.worker_pids()
    with gw.client() as bad, gw.client() as good:
        sid = params_of(bad)["SESSIONID"]
        bad.send_raw(struct.pack(">I", 65537) + b"x" * 100)
        assert bad.recv_closed(3), "client with an oversize message not closed"
        gw.wait_log(sid)
        assert good.request(b"fine") == b"fine"
    assert gw.worker_pids() == workers
    assert not any(r["body"].startswith(b"x") for r in f.messages())


@pytest.mark.parametrize("garbage", [b"\xff\xff\xff\xffgarbage", b"GET / HTTP/1.1\r\n\r\n",
                                     b"\x80\x00\x00\x00"], ids=["ffff", "http", "2GiB"])
def test_garbage_length_prefix(fake, gateway, garbage):
    f = fake()
    gw = gateway(**fake_keys(f))
    workers = gw.worker_pids()
    with gw.client() as bad, gw.client() as good:
        bad.send_raw(garbage)
        assert bad.recv_closed(3)
        assert good.request(b"fine") == b"fine"
    assert gw.worker_pids() == workers


def test_client_vanishes_mid_message(fake, gateway):
    f = fake()
    gw = gateway(**fake_keys(f, EVENT_CLOSE=0))
    workers = gw.worker_pids()
    with gw.client() as good:
        for _ in range(5):
            c = gw.client()
            c.send_raw(struct.pack(">I", 1000) + b"partial")
            c.close()
        c = gw.client()
        c.send_raw(b"\x00\x00")  # half a length prefix
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()  # reset
        assert good.request(b"fine") == b"fine"
    assert [r["body"] for r in f.messages()] == [b"fine"]
    assert gw.worker_pids() == workers


# ---------------------------------------------------------------- processes

def test_worker_kill9_respawned(gateway, backend):
    gw = gateway(**backend.keys(WORKER_NUM=2))
    before = gw.worker_pids()
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)
    after = fk.wait_until(lambda: (lambda p: len(p) == 2 and before[0] not in p and p)(gw.worker_pids()),
                          timeout=5, msg="a new worker after kill -9")
    assert before[1] in after
    served(gw, 6)
    assert gw.alive()


def test_worker_kill9_posts_close_events(fake, gateway):
    f = fake()
    gw = gateway(**fake_keys(f, EVENT_CLOSE=1))
    c = gw.client()
    sid = params_of(c)["SESSIONID"]
    os.kill(gw.worker_pids()[0], signal.SIGKILL)
    assert c.recv_closed(5)
    fk.wait_until(lambda: f.events(2, sid), timeout=5, msg="EVENT=2 for the dead worker's client")
    served(gw, 2)
    c.close()


def test_sigterm_master_stops_all(fake, gateway):
    f = fake()
    gw = gateway(**fake_keys(f, WORKER_NUM=2))
    workers = gw.worker_pids()
    with gw.client() as c:
        assert c.request(b"x") == b"x"
        os.kill(gw.pid, signal.SIGTERM)
        fk.wait_until(lambda: gw.proc.poll() is not None, timeout=5, msg="master exit")
        fk.wait_until(lambda: not any(fk.pid_alive(p) for p in workers), timeout=5,
                      msg="workers exit")
        assert c.recv_closed(2)
    assert gw.proc.returncode == 0
    assert not fk.port_listening(gw.port)


def test_daemonize_pid_file(fake, tmp_path):
    import subprocess
    f = fake()
    pid_file = tmp_path / "fooking.pid"
    gw = fk.Gateway(tmp_path / "gw", **fake_keys(f, DAEMONIZE=1, PID_FILE=str(pid_file),
                                                 WORKER_NUM=2))
    fk.write_config(gw.conf, gw.keys)
    r = subprocess.run([str(fk.FOOKING), str(gw.conf)], capture_output=True, text=True,
                       timeout=10, stdin=subprocess.DEVNULL, cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    pid = None
    try:
        pid = int(fk.wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(),
                                msg="the pid file"))
        assert fk.pid_alive(pid)
        fk.wait_until(lambda: fk.port_listening(gw.port), msg="the daemon listening")
        workers = fk.wait_until(lambda: (lambda w: len(w) == 2 and w)(fk.children_of(pid)),
                                msg="2 workers of the daemon")
        served(gw, 2)
        os.kill(pid, signal.SIGTERM)
        fk.wait_until(lambda: not fk.pid_alive(pid) and not any(fk.pid_alive(w) for w in workers),
                      msg="the daemon and its workers to exit")
    finally:
        if pid and fk.pid_alive(pid):
            for w in fk.children_of(pid):
                os.kill(w, signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)


def test_log_level_1_only_errors(fake, gateway):
    f = fake()
    gw = gateway(**fake_keys(f, LOG_LEVEL=1))
    served(gw, 3)
    with gw.client() as c:
        c.send_raw(struct.pack(">I", 1 << 30))
        assert c.recv_closed(3)
    gw.wait_log("MAX_BUFF_SIZE")
    assert not gw.log_lines("INFO"), gw.log()


# ---------------------------------------------------------------- limits

def test_max_client_num(fake, gateway):
    f = fake()
    gw = gateway(**fake_keys(f, MAX_CLIENT_NUM=2, EVENT_CLOSE=0))
    c1, c2 = gw.client(), gw.client()
    try:
        assert c1.request(b"one") == b"one"
        assert c2.request(b"two") == b"two"
        with gw.client() as c3:
            try:
                c3.send(b"three")
            except OSError:
                pass
            assert c3.recv_closed(3), "the third client was not closed"
        assert c1.request(b"one again") == b"one again"
        c1.close()

        def new_client_served():
            try:
                with gw.client(timeout=1) as c:
                    return c.request(b"four") == b"four"
            except (fk.Closed, TimeoutError, OSError):
                return False
        fk.wait_until(new_client_served, timeout=5, msg="a slot freed by a closed client")
    finally:
        c1.close()
        c2.close()
    assert not any(r["body"] == b"three" for r in f.messages())


def test_max_client_num_across_workers(fake, gateway):
    f = fake()
    gw = gateway(**fake_keys(f, MAX_CLIENT_NUM=3, WORKER_NUM=2, EVENT_CLOSE=0))
    clients = [gw.client() for _ in range(3)]
    try:
        for i, c in enumerate(clients):
            assert c.request(b"c%d" % i) == b"c%d" % i
        for _ in range(3):  # whichever worker takes them, the whole gateway is full
            with gw.client() as extra:
                try:
                    extra.send(b"extra")
                except OSError:
                    pass
                assert extra.recv_closed(3), "a client over MAX_CLIENT_NUM (3, 2 workers) was served"
    finally:
        for c in clients:
            c.close()


def test_idle_time(fake, gateway):
    f = fake()
    gw = gateway(**fake_keys(f, IDLE_TIME=1, EVENT_CLOSE=0))
    with gw.client() as silent, gw.client() as active:
        t0 = time.monotonic()
        closed = False
        while time.monotonic() - t0 < 5:
            assert active.request(b"ping") == b"ping"
            if silent.recv_closed(0.25):
                closed = True
                break
        assert closed, "silent client not closed with IDLE_TIME=1"
        assert time.monotonic() - t0 >= 0.8
        assert active.request(b"still here") == b"still here"


def test_slow_consumer_disconnected(fake, gateway):
    f = fake()
    limit = 256 * 1024
    gw = gateway(**fake_keys(f, MAX_OUTPUT_SIZE=limit, EVENT_CLOSE=1))
    workers = gw.worker_pids()
    reply = 60000
    with gw.client(rcvbuf=4096, timeout=5) as slow, gw.client() as other:
        sid = params_of(slow)["SESSIONID"]
        sent = 0
        for _ in range(50):  # at most 50 * 20 * 60000 bytes = 60 MB of replies
            if f.events(2, sid):
                break
            try:
                slow.send(*[b"big %d" % reply] * 20)
            except OSError:
                break
            sent += 20
            try:
                fk.wait_until(lambda: f.events(2, sid) or f.answered_for(sid, b"big") >= sent,
                              timeout=2)
            except AssertionError:
                pass
            assert other.request(b"other") == b"other"
        fk.wait_until(lambda: f.events(2, sid), timeout=5,
                      msg="the slow consumer disconnected (EVENT=2 at the backend)")
        closed, nbytes = slow.drain(10)
        assert closed
        assert nbytes < sent * reply
        assert other.request(b"other goes on") == b"other goes on"
    assert gw.worker_pids() == workers


# ---------------------------------------------------------------- signals

def test_sighup_reload_backend_and_params(fake, gateway):
    a, b = fake(), fake()
    gw = gateway(**fake_keys(a, EVENT_CLOSE=0))
    with gw.client() as c:
        assert params_of(c)[STATIC_PARAM[0]] == STATIC_PARAM[1]
        params = base_params()
        params[STATIC_PARAM[0]] = "reloaded"
        gw.keys.update(BACKEND_SERVER=b.addr, FASTCGI_PARAMS=params)
        fk.write_config(gw.conf, gw.keys)
        os.kill(gw.pid, signal.SIGHUP)

        def reloaded():
            j = params_of(c)
            return j[STATIC_PARAM[0]] == "reloaded" and j
        fk.wait_until(reloaded, timeout=5, interval=0.1, msg="the new params after SIGHUP")
        assert b.messages(), "the new backend got nothing"
        assert c.request(b"same client") == b"same client"


def test_sighup_bad_config_keeps_running(fake, gateway):
    f = fake()
    gw = gateway(**fake_keys(f, EVENT_CLOSE=0))
    with gw.client() as c:
        gw.conf.write_text(gw.conf.read_text() + "WORKER_NUM = \"two\"\n")
        os.kill(gw.pid, signal.SIGHUP)
        gw.wait_log("WORKER_NUM")
        assert c.request(b"still served") == b"still served"
        assert gw.alive()
        served(gw, 2)


def test_sigusr1_reopens_log(fake, gateway):
    f = fake()
    gw = gateway(**fake_keys(f, EVENT_CLOSE=0))
    served(gw, 1)
    fk.wait_until(lambda: gw.log(), msg="a log file")
    rotated = gw.log_file.with_suffix(".log.1")
    os.rename(gw.log_file, rotated)
    os.kill(gw.pid, signal.SIGUSR1)

    def new_lines():
        with gw.client() as c:  # a connect + close logs a line at INFO
            c.request(b"x")
        return gw.log_file.exists() and "closed" in gw.log_file.read_text()
    fk.wait_until(new_lines, timeout=5, interval=0.1, msg="lines in the reopened log")


def test_dash_s_reload_and_stop(fake, tmp_path):
    import subprocess
    f = fake()
    pid_file = tmp_path / "fk.pid"
    gw = fk.Gateway(tmp_path / "gw", **fake_keys(f, PID_FILE=str(pid_file), EVENT_CLOSE=0))
    gw.start()
    try:
        fk.wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() == str(gw.pid),
                      msg="the pid file with the master pid")
        r = subprocess.run([str(fk.FOOKING), "-s", "reload", str(gw.conf)], capture_output=True,
                           text=True, timeout=10)
        assert r.returncode == 0, r.stdout + r.stderr
        gw.wait_log("reload")
        served(gw, 1)
        r = subprocess.run([str(fk.FOOKING), "-s", "stop", str(gw.conf)], capture_output=True,
                           text=True, timeout=10)
        assert r.returncode == 0, r.stdout + r.stderr
        fk.wait_until(lambda: gw.proc.poll() is not None, msg="stop by -s stop")
    finally:
        gw.stop()


@pytest.mark.parametrize("flag", ["-v", "-h"])
def test_version_and_help(flag):
    import subprocess
    r = subprocess.run([str(fk.FOOKING), flag], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0
    assert (r.stdout + r.stderr).strip()


# ---------------------------------------------------------------- config check

def good_config(tmp_path, **over):
    keys = {"HOST": "127.0.0.1", "PORT": fk.free_port(), "LOG_FILE": "", "WORKER_NUM": 1,
            "BACKEND_SERVER": "127.0.0.1:9000", "FASTCGI_PARAMS": base_params()}
    keys.update(over)
    return fk.write_config(tmp_path / "check.lua", keys)


def test_config_check_good(tmp_path):
    r = fk.run_check(good_config(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr


def test_config_check_good_table_backend(tmp_path):
    r = fk.run_check(good_config(tmp_path, BACKEND_SERVER={"127.0.0.1:9000": 2,
                                                           "unix:/tmp/x.sock": 1}))
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("key,value", [("WORKER_NUM", "two"), ("PORT", None),
                                       ("BACKEND_SERVER", None), ("WORKER_NUM", 0),
                                       ("MAX_BUFF_SIZE", -1)])
def test_config_check_bad(tmp_path, key, value):
    conf = good_config(tmp_path, **{key: value})
    r = fk.run_check(conf)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    lines = [l for l in out.splitlines() if "check.lua" in l and key in l]
    assert lines, "no line naming the file and %s in:\n%s" % (key, out)


def test_bad_config_starts_nothing(tmp_path):
    port = fk.free_port()
    conf = good_config(tmp_path, PORT=port, WORKER_NUM="two")
    import subprocess
    r = subprocess.run([str(fk.FOOKING), str(conf)], capture_output=True, text=True, timeout=10,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 1
    assert "WORKER_NUM" in r.stdout + r.stderr
    assert not fk.port_listening(port)


def test_config_lua_syntax_error(tmp_path):
    conf = tmp_path / "broken.lua"
    conf.write_text("PORT = = 1\n")
    r = fk.run_check(conf)
    assert r.returncode == 1
    assert "broken.lua" in r.stdout + r.stderr


def test_config_check_clean_config_no_warnings(tmp_path):
    r = fk.run_check(good_config(tmp_path))
    assert r.returncode == 0
    assert "warning" not in (r.stdout + r.stderr).lower(), r.stdout + r.stderr


def test_config_unknown_key_warns(tmp_path):
    r = fk.run_check(good_config(tmp_path, WORKER_NUMS=2))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert [l for l in out.splitlines() if "WORKER_NUMS" in l and "check.lua" in l], out


# ---------------------------------------------------------------- privileges

def _uid_gid(pid):
    uid = gid = None
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                uid = int(line.split()[1])
            elif line.startswith("Gid:"):
                gid = int(line.split()[1])
    return uid, gid


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")
def test_user_group_workers_drop_privileges(fake, gateway):
    """Started as root with USER/GROUP: the master binds and keeps root (to
    respawn and reopen logs); the workers run as that user and group, and serve."""
    import grp
    import pwd
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid).gr_name
    f = fake()
    gw = gateway(**fake_keys(f, USER="nobody", GROUP=group, WORKER_NUM=2))
    with gw.client() as c:
        assert c.request(b"as nobody") == b"as nobody"
    workers = gw.worker_pids()
    assert len(workers) == 2
    for pid in workers:
        assert _uid_gid(pid) == (nobody.pw_uid, nobody.pw_gid)
    assert _uid_gid(gw.pid)[0] == 0


def test_unknown_user_refuses_to_start(fake, gateway, tmp_path):
    f = fake()
    gw = gateway(start=False, **fake_keys(f, USER="no-such-user-here"))
    with pytest.raises(AssertionError):
        gw.start(timeout=3)
    fk.wait_until(lambda: "USER no-such-user-here: no such user" in gw.log() + gw.output(),
                  msg="a log line naming the user")


# ---------------------------------------------------------------- -t opens what a start opens

@pytest.mark.parametrize("key,value,needle", [
    ("SSL_CERT", "missing.pem", "SSL_CERT"),
    ("SCRIPT_FILE", "broken.lua", "SCRIPT_FILE"),
    ("STATIC_DIR", "no-such-dir", "STATIC_DIR"),
])
def test_check_opens_files(tmp_path, key, value, needle):
    (tmp_path / "broken.lua").write_text("function onRead(\n")
    keys = {"PORT": fk.free_port(), "BACKEND_SERVER": "127.0.0.1:9", key: value}
    if key == "SSL_CERT":
        keys.update(SSL=1, SSL_PKEY="missing-key.pem")
    conf = fk.write_config(tmp_path / "c.lua", keys)
    r = fk.run_check(conf)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = [l for l in r.stderr.splitlines() if needle in l]
    assert lines and lines[0].startswith(str(conf)), r.stderr
