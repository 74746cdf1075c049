"""Prometheus metrics: the gateway master's METRICS_PORT (GET /metrics and
/healthz) over a real 2-worker gateway in front of a FastCGI backend, checked
with promtool and scraped by a real Prometheus server; and the router's
/metrics, once the router serves it (HTTP_PORT)."""

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
