"""Prometheus metrics: the gateway master's METRICS_PORT (GET /metrics and
/healthz) over a real 2-worker gateway in front of a FastCGI backend, checked
with promtool and scraped by a real Prometheus server; and the router's
/metrics (on its HTTP_PORT)."""

import http.client
import os
import re
import shutil
import signal
import subprocess
import time
import json
import urllib.parse

import pytest

import fk
from peers import redis_server, router  # noqa: F401 (fixtures)

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")


def http_get(port, path, timeout=5.0):
    """(status, content type, body text) of GET path on 127.0.0.1:port."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.getheader("Content-Type"), r.read().decode()
    finally:
        c.close()


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse(text):
    """{(name, labels text): value} of the samples of an exposition text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def scrape(port):
    status, ctype, body = http_get(port, "/metrics")
    assert status == 200, body
    assert ctype == "text/plain; version=0.0.4; charset=utf-8"
    return parse(body)


def value(samples, name, labels=""):
    return samples[(name, labels)]


def promtool_check(text):
    if not PROMTOOL:
        pytest.skip("promtool not installed (Debian's prometheus package; scripts/deps.sh test)")
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
        "promtool check metrics:\n" + r.stdout + r.stderr + "\n--- text:\n" + text


@pytest.fixture
def metrics_gw(gateway, fake):
    """A 2-worker gateway with METRICS_PORT, in front of an echo FakeFcgi.
    EVENT_CLOSE = 0, so every backend request is a client message."""
    srv = fake()
    port = fk.free_port()
    gw = gateway(BACKEND_SERVER=srv.addr, WORKER_NUM=2, EVENT_CLOSE=0, METRICS_PORT=port)
    fk.wait_listening(port, gw.proc, what="fooking /metrics")
    gw.metrics_port = port
    return gw, srv


def test_metrics_text_is_valid_and_complete(metrics_gw):
    gw, _ = metrics_gw
    with gw.client() as c:
        assert c.request(b"hello") == b"hello"
    status, ctype, body = http_get(gw.metrics_port, "/metrics")
    assert status == 200
    assert ctype == "text/plain; version=0.0.4; charset=utf-8"
    promtool_check(body)
    s = parse(body)
    for name in ("fooking_workers", "fooking_workers_alive",
                 "fooking_client_connections_accepted_total",
                 "fooking_client_messages_received_total", "fooking_client_messages_sent_total",
                 "fooking_client_received_bytes_total", "fooking_client_sent_bytes_total",
                 "fooking_client_slow_consumers_total", "fooking_backend_queue_length",
                 "fooking_backend_request_duration_seconds_count",
                 "fooking_backend_request_duration_seconds_sum"):
        assert (name, "") in s, name
    assert value(s, "fooking_workers") == 2
    assert value(s, "fooking_workers_alive") == 2
    for proto in ("length", "websocket", "script"):
        assert ("fooking_clients", '{protocol="%s"}' % proto) in s
    for reason in ("client", "idle", "handshake_timeout", "slow_consumer", "kicked", "backend",
                   "stopping", "error"):
        assert ("fooking_client_closed_total", '{reason="%s"}' % reason) in s
    for outcome in ("ok", "failed", "timeout", "refused", "queue_full", "queue_timeout"):
        assert ("fooking_backend_requests_total", '{outcome="%s"}' % outcome) in s
    assert ("fooking_backend_request_duration_seconds_bucket", '{le="+Inf"}') in s
    # Without ROUTER_HOST and BUS, their metrics are not shown.
    assert not [k for k in s if k[0].startswith(("fooking_router_", "fooking_bus_"))]
    # One message each way: 4 + 5 bytes each way at least.
    assert value(s, "fooking_client_received_bytes_total") >= 9
    assert value(s, "fooking_client_sent_bytes_total") >= 9


def test_other_paths_and_methods(metrics_gw):
    gw, _ = metrics_gw
    status, _, body = http_get(gw.metrics_port, "/nothing")
    assert status == 404 and "/metrics" in body
    c = http.client.HTTPConnection("127.0.0.1", gw.metrics_port, timeout=5)
    c.request("POST", "/metrics", body=b"x")
    r = c.getresponse()
    assert r.status == 405
    r.read()
    c.close()


def test_counters_follow_clients_and_messages(metrics_gw):
    gw, srv = metrics_gw
    before = scrape(gw.metrics_port)
    clients = [gw.client() for _ in range(5)]
    try:
        for c in clients:  # connected: both workers may hold some
            assert c.request(b"ping") == b"ping"
        s = scrape(gw.metrics_port)
        assert value(s, "fooking_clients", '{protocol="length"}') \
            - value(before, "fooking_clients", '{protocol="length"}') == 5
        assert value(s, "fooking_client_connections_accepted_total") \
            - value(before, "fooking_client_connections_accepted_total") == 5
        n = 37
        for i in range(n):
            c = clients[i % len(clients)]
            assert c.request(b"m%d" % i) == b"m%d" % i
        s = scrape(gw.metrics_port)
        got = value(s, "fooking_client_messages_received_total") \
            - value(before, "fooking_client_messages_received_total")
        assert got == n + 5
        assert value(s, "fooking_client_messages_sent_total") \
            - value(before, "fooking_client_messages_sent_total") == n + 5
        # Every request was a message (EVENT_CLOSE = 0): the histogram saw each.
        hist = value(s, "fooking_backend_request_duration_seconds_count") \
            - value(before, "fooking_backend_request_duration_seconds_count")
        assert hist == n + 5 == len(srv.snapshot())
        assert value(s, "fooking_backend_request_duration_seconds_bucket", '{le="+Inf"}') \
            == value(s, "fooking_backend_request_duration_seconds_count")
        assert value(s, "fooking_backend_requests_total", '{outcome="ok"}') \
            - value(before, "fooking_backend_requests_total", '{outcome="ok"}') == n + 5
        assert value(s, "fooking_backend_request_duration_seconds_sum") > 0
    finally:
        for c in clients:
            c.close()
    fk.wait_until(lambda: value(scrape(gw.metrics_port), "fooking_clients",
                                '{protocol="length"}') == 0,
                  msg="fooking_clients back to 0")
    s = scrape(gw.metrics_port)
    assert value(s, "fooking_client_closed_total", '{reason="client"}') \
        - value(before, "fooking_client_closed_total", '{reason="client"}') == 5


def test_backend_outcomes(gateway, fake):
    srv = fake()
    port = fk.free_port()
    gw = gateway(BACKEND_SERVER=srv.addr, WORKER_NUM=1, EVENT_CLOSE=0, METRICS_PORT=port,
                 BACKEND_READ_TIMEOUT=0.3)
    fk.wait_listening(port, gw.proc)
    with gw.client() as c:
        c.send(b"fault:status:500 x")
        c.send(b"fault:hang")
        c.send(b"fault:badversion")
        fk.wait_until(lambda: value(scrape(port), "fooking_backend_request_duration_seconds_count")
                      == 3, msg="3 requests finished")
    s = scrape(port)
    assert value(s, "fooking_backend_requests_total", '{outcome="status"}') == 1
    assert value(s, "fooking_backend_requests_total", '{outcome="timeout"}') == 1
    assert value(s, "fooking_backend_requests_total", '{outcome="failed"}') == 1
    # The timed-out request took at least BACKEND_READ_TIMEOUT.
    assert value(s, "fooking_backend_request_duration_seconds_bucket", '{le="0.25"}') <= 2
    assert value(s, "fooking_backend_request_duration_seconds_sum") >= 0.3


def test_healthz_follows_the_workers(metrics_gw):
    gw, _ = metrics_gw
    status, ctype, body = http_get(gw.metrics_port, "/healthz")
    assert status == 200 and body.startswith("ok"), body
    known = set(gw.worker_pids())
    # A worker killed young (under a second old) is replaced after a back-off
    # (0.1 s, doubling): the second kill below holds the slot empty that long.
    first = gw.worker_pids()[0]
    os.kill(first, signal.SIGKILL)
    fk.wait_until(lambda: first not in gw.worker_pids() and len(gw.worker_pids()) == 2,
                  timeout=10, msg="the killed worker replaced")
    victims = {first}
    seen = []

    def degraded():
        st, _, b = http_get(gw.metrics_port, "/healthz")
        seen.append((st, b))
        return st == 503

    for pid in gw.worker_pids():
        if pid not in victims and pid not in known:
            victims.add(pid)
            os.kill(pid, signal.SIGKILL)
    fk.wait_until(degraded, timeout=10, interval=0.005, msg="/healthz 503 with a worker dead")
    assert "1 of 2 workers alive" in seen[-1][1], seen[-1]
    fk.wait_until(lambda: http_get(gw.metrics_port, "/healthz")[0] == 200, timeout=10,
                  msg="/healthz 200 again once the worker is replaced")
    assert not victims & set(gw.worker_pids())
    s = scrape(gw.metrics_port)
    assert value(s, "fooking_workers_alive") == 2


def test_router_link_and_bus_metrics(gateway, fake, router, redis_server):
    """With ROUTER_HOST and BUS set, the links' gauges show each worker's link."""
    srv = fake()
    r = router()
    port = fk.free_port()
    gw = gateway(BACKEND_SERVER=srv.addr, WORKER_NUM=2, METRICS_PORT=port,
                 ROUTER_HOST="127.0.0.1", ROUTER_PORT=r.port,
                 BUS="redis://127.0.0.1:%d" % redis_server.port)
    fk.wait_listening(port, gw.proc)

    def links_up():
        s = scrape(port)
        return value(s, "fooking_router_links_up") == 2 \
            and value(s, "fooking_bus_connected", '{connection="subscribe"}') == 2 \
            and value(s, "fooking_bus_connected", '{connection="command"}') == 2 and s
    s = fk.wait_until(links_up, timeout=10, msg="2 router links and 2+2 bus connections up")
    assert value(s, "fooking_router_link_reconnects_total") == 0
    assert value(s, "fooking_bus_reconnects_total") == 0
    promtool_check(http_get(port, "/metrics")[2])
    r.stop()
    fk.wait_until(lambda: value(scrape(port), "fooking_router_links_up") == 0, timeout=10,
                  msg="the router links down once the router stopped")
    r.start()
    fk.wait_until(lambda: value(scrape(port), "fooking_router_links_up") == 2, timeout=15,
                  msg="the router links up again")
    assert value(scrape(port), "fooking_router_link_reconnects_total") == 2


def test_prometheus_scrapes_gateway_and_router(metrics_gw, router, tmp_path):  # noqa: F811
    """A real Prometheus server scraping the gateway's METRICS_PORT and the
    router's HTTP_PORT answers fooking_clients and fooking_router_sessions."""
    if not PROMETHEUS:
        pytest.skip("prometheus not installed (Debian's prometheus package; scripts/deps.sh test)")
    gw, _ = metrics_gw
    import rproto as rp
    http_port = fk.free_port()
    r = router(HTTP_PORT=http_port, HTTP_HOST="127.0.0.1")
    fk.wait_listening(http_port, r.proc, what="router HTTP_PORT")
    link = rp.Gateway(r.port, 1, 0, nsids=5)
    clients = [gw.client() for _ in range(3)]
    for c in clients:
        assert c.request(b"hi") == b"hi"
    web = fk.free_port()
    conf = tmp_path / "prometheus.yml"
    conf.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: fooking\n    static_configs:\n"
        "      - targets: ['127.0.0.1:%d']\n"
        "  - job_name: fooking-router\n    static_configs:\n"
        "      - targets: ['127.0.0.1:%d']\n" % (gw.metrics_port, http_port))
    out = open(tmp_path / "prometheus.out", "wb")
    proc = subprocess.Popen([PROMETHEUS, "--config.file=%s" % conf,
                             "--storage.tsdb.path=%s" % (tmp_path / "data"),
                             "--web.listen-address=127.0.0.1:%d" % web],
                            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        fk.wait_listening(web, proc, timeout=30, what="prometheus", output=tmp_path / "prometheus.out")

        def answered():
            q = urllib.parse.urlencode({"query": 'sum(fooking_clients{job="fooking"})'})
            status, _, body = http_get(web, "/api/v1/query?" + q)
            if status != 200:
                return None
            res = json.loads(body)["data"]["result"]
            return res and float(res[0]["value"][1]) == 3 and res
        fk.wait_until(answered, timeout=30, interval=0.2,
                      msg="prometheus to answer sum(fooking_clients) == 3")
        q = urllib.parse.urlencode({"query": 'up{job="fooking"}'})
        res = json.loads(http_get(web, "/api/v1/query?" + q)[2])["data"]["result"]
        assert res and res[0]["value"][1] == "1"

        def router_answered():
            q = urllib.parse.urlencode({"query": 'fooking_router_sessions{job="fooking-router"}'})
            status, _, body = http_get(web, "/api/v1/query?" + q)
            res = json.loads(body)["data"]["result"] if status == 200 else None
            return res and float(res[0]["value"][1]) == 5 and res
        fk.wait_until(router_answered, timeout=30, interval=0.2,
                      msg="prometheus to answer fooking_router_sessions == 5")
    finally:
        link.close()
        fk.stop_pid(proc, timeout=10)
        out.close()
        for c in clients:
            c.close()


# ---------------------------------------------------------------- the router

def test_router_metrics(router, tmp_path):  # noqa: F811
    import rproto as rp
    http_port = fk.free_port()
    r = router(HTTP_PORT=http_port, HTTP_HOST="127.0.0.1")
    fk.wait_listening(http_port, r.proc, what="router HTTP_PORT")
    links = [rp.Gateway(r.port, s, w, nsids=3) for s in (1, 2) for w in (0, 1)]
    bk = rp.Backend(r.port)
    try:
        rp.wait_info(r.port, lambda i: i["clients"] == 12 and len(i["gateways"]) == 4)
        bk.send_all(b"hello")
        bk.ch_add([rp.sid(1, 0, 0)], b"room")
        bk.ch_pub(b"room", b"x")
        for g in links:
            assert g.recv()[2] == b"hello"

        def text():
            status, ctype, body = http_get(http_port, "/metrics")
            assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
            return body
        fk.wait_until(lambda: value(parse(text()), "fooking_router_commands_total",
                                    '{type="CH_PUB"}') == 1, msg="CH_PUB counted")
        body = text()
        promtool_check(body)
        s = parse(body)
        assert value(s, "fooking_router_links") == 4
        assert value(s, "fooking_router_sessions") == 12
        assert value(s, "fooking_router_commands_total", '{type="SEND_ALL"}') == 1
        assert value(s, "fooking_router_commands_total", '{type="AUTH"}') == 4
        assert value(s, "fooking_router_deliveries_total") >= 6  # 4 + CH_ADD + CH_PUB
        links.pop().close()
        fk.wait_until(lambda: value(parse(text()), "fooking_router_links") == 3,
                      msg="the closed link gone")
        s = parse(text())
        assert value(s, "fooking_router_links_dropped_total", '{reason="closed"}') == 1
    finally:
        bk.close()
        for g in links:
            g.close()


def test_metrics_port_survives_a_binary_upgrade(gateway, fake, tmp_path):
    """SIGUSR2: the new master binds METRICS_PORT while the old one still
    holds it (SO_REUSEPORT), and serves it once the old one is gone."""
    srv = fake()
    port = fk.free_port()
    pid_file = tmp_path / "gw.pid"
    gw = gateway(BACKEND_SERVER=srv.addr, WORKER_NUM=2, METRICS_PORT=port, PID_FILE=str(pid_file),
                 GRACEFUL_STOP_TIME=1)
    fk.wait_listening(port, gw.proc)
    old = gw.pid

    def pid_file_pid():
        try:
            return int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
    new = None
    try:
        os.kill(old, signal.SIGUSR2)
        fk.wait_until(lambda: pid_file_pid() not in (None, old), 15,
                      msg="PID_FILE naming the new master")
        new = pid_file_pid()
        gw.proc.wait(timeout=20)
        assert "cannot listen" not in gw.log()
        assert http_get(port, "/healthz")[0] == 200
        s = scrape(port)
        assert value(s, "fooking_workers_alive") == 2
        with gw.client() as c:
            assert c.request(b"after") == b"after"
    finally:
        if new:
            workers = fk.children_of(new)
            fk.stop_pid(new, timeout=15)
            for w in workers:
                if fk.pid_alive(w):
                    os.kill(w, signal.SIGKILL)


def test_websocket_clients_and_close_reasons(gateway, fake):
    """fooking_clients{protocol="websocket"}, and closes counted by reason: the
    peer's close frame, a protocol error and a handshake never finished."""
    import wsraw
    srv = fake()
    port = fk.free_port()
    gw = gateway(BACKEND_SERVER=srv.addr, WORKER_NUM=2, EVENT_CLOSE=0, METRICS_PORT=port,
                 PROTOCOL="websocket", ALLOWED_ORIGINS=["*"], HANDSHAKE_TIMEOUT=1)
    fk.wait_listening(port, gw.proc)
    socks = []
    for _ in range(3):
        ws = wsraw.RawWs(gw.port)
        ws.handshake()
        ws.send_text("hi")
        assert ws.recv_message()[1] == b"hi"
        socks.append(ws)
    s = scrape(port)
    assert value(s, "fooking_clients", '{protocol="websocket"}') == 3
    assert value(s, "fooking_clients", '{protocol="length"}') == 0
    socks[0].send_close(1000)
    socks[0].wait_eof()
    socks[1].send_frame(0x3)  # a reserved opcode: the gateway fails the connection
    socks[1].wait_eof()
    silent = wsraw.RawWs(gw.port)  # connects, never sends its handshake

    def counted():
        s = scrape(port)
        return value(s, "fooking_client_closed_total", '{reason="client"}') == 1 \
            and value(s, "fooking_client_closed_total", '{reason="protocol"}') == 1 \
            and value(s, "fooking_client_closed_total", '{reason="handshake_timeout"}') == 1 \
            and value(s, "fooking_clients", '{protocol="websocket"}') == 1 and s
    s = fk.wait_until(counted, timeout=10, msg="the three closes counted by reason")
    assert value(s, "fooking_client_connections_accepted_total") == 4
    assert value(s, "fooking_client_messages_received_total") == 3
    for ws in socks[2:] + [silent]:
        ws.close()


def test_backend_close_and_kick_reasons(gateway, fake, router):
    """A reply's X-Fooking-Close counts as reason="backend", a router KICK as
    reason="kicked"."""
    import rproto as rp
    srv = fake()
    r = router()
    port = fk.free_port()
    gw = gateway(BACKEND_SERVER=srv.addr, WORKER_NUM=1, EVENT_CLOSE=0, METRICS_PORT=port,
                 ROUTER_HOST="127.0.0.1", ROUTER_PORT=r.port)
    fk.wait_listening(port, gw.proc)
    fk.wait_until(lambda: value(scrape(port), "fooking_router_links_up") == 1, timeout=10,
                  msg="the router link up")
    closed = gw.client()
    closed.send(b"reply:" + json.dumps({"h": [["X-Fooking-Close", "4001 bye"]],
                                        "b": "bye"}).encode())
    assert closed.recv_closed()
    kicked = gw.client()
    assert kicked.request(b"kick me") == b"kick me"
    bk = rp.Backend(r.port)
    fk.wait_until(lambda: bk.info()["clients"] == 1, msg="the router to know the session")
    bk.kick([srv.sid_of(b"kick me").encode()])
    assert kicked.recv_closed()
    bk.close()

    def counted():
        s = scrape(port)
        return value(s, "fooking_client_closed_total", '{reason="backend"}') == 1 \
            and value(s, "fooking_client_closed_total", '{reason="kicked"}') == 1
    fk.wait_until(counted, msg="the backend's close and the kick counted")
    closed.close()
    kicked.close()


def test_bad_metrics_port_and_port_in_use(gateway, fake, tmp_path):
    conf = tmp_path / "bad.lua"
    fk.write_config(conf, {"PORT": fk.free_port(), "BACKEND_SERVER": "127.0.0.1:9",
                           "METRICS_PORT": 70000})
    r = fk.run_check(conf)
    assert r.returncode == 1
    assert "METRICS_PORT must be an integer from 0 to 65535, got 70000" in r.stdout + r.stderr
    # A port another process holds: the start fails at once, naming it.
    import socket
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        taken = holder.getsockname()[1]
        gw = gateway(start=False, BACKEND_SERVER=fake().addr, METRICS_PORT=taken)
        fk.write_config(gw.conf, gw.keys)
        p = subprocess.run([str(fk.FOOKING), str(gw.conf)], capture_output=True, text=True,
                           timeout=10, stdin=subprocess.DEVNULL)
        assert p.returncode == 1
        assert gw.log_lines("METRICS_HOST:METRICS_PORT 127.0.0.1:%d: cannot listen" % taken), \
            gw.log() + p.stdout + p.stderr
