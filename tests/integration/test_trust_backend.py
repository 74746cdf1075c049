"""What the gateway believes of a backend, and for how long it waits on one:
queue deadlines (BACKEND_QUEUE_TIMEOUT), servers marked down after failures
(BACKEND_MAX_FAILS / BACKEND_FAIL_TIMEOUT, as nginx's max_fails), multiplexing
only when the pool asked for it, and names resolved off the loop on reload.

Every test asserts what a client or a backend received; waits have deadlines.
"""

import json
import os
import re
import signal
import time

import fk
from conftest import base_params

SID_TOKEN = re.compile(r"(?<![0-9a-zA-Z])[0-9a-f]{16}(?![0-9a-zA-Z])")


def fake_keys(f, **kw):
    keys = {"BACKEND_SERVER": f.addr, "FASTCGI_PARAMS": base_params(), "EVENT_CLOSE": 0}
    keys.update(kw)
    return keys


# ---------------------------------------------------------------- multiplexing

def test_unsolicited_mpxs_ignored(fake, gateway):
    """A backend volunteers FCGI_MPXS_CONNS=1 but closes after each request:
    with BACKEND_MULTIPLEX = 0 the connection must stay one request at a time,
    so all 11 concurrent clients are served (before: 10 of 11 failed)."""
    f = fake(unsolicited_mpxs=True)
    gw = gateway(**fake_keys(f, BACKEND_MAX_CONNS=1, BACKEND_MULTIPLEX=0))
    clients = [gw.client(timeout=10) for _ in range(11)]
    try:
        for i, c in enumerate(clients):
            c.send(b"mpx %d" % i)
        for i, c in enumerate(clients):
            assert c.recv() == b"mpx %d" % i
    finally:
        for c in clients:
            c.close()
    assert len(f.messages()) == 11
    assert f.max_open <= 1
    assert not gw.log_lines("closed the connection before END_REQUEST")


# ---------------------------------------------------------------- max_fails / fail_timeout

def ask_one(c, bad, payload, timeout=5.0):
    """Sends payload; "bad" once it reached the bad fake, "good" once its echo
    came back (from the healthy backend)."""
    n = len(bad.messages())
    c.send(payload)
    deadline = time.monotonic() + timeout
    while True:
        if len(bad.messages()) > n:
            return "bad"
        try:
            assert c.recv(timeout=0.02) == payload
            return "good"
        except TimeoutError:
            pass
        assert time.monotonic() < deadline, "no reply and nothing at the bad backend"


def test_timeout_marks_server_down_for_fail_timeout(fake, php, gateway):
    """A server that times out once (BACKEND_MAX_FAILS = 1) gets no request for
    BACKEND_FAIL_TIMEOUT while the healthy one serves all; then it is tried again
    and, failing again, marked down again at once (before: only refusals marked
    a server down, so every other request went to the hanging one)."""
    fail_timeout = 3.0
    bad = fake(mode="hang")
    gw = gateway(BACKEND_SERVER={bad.addr: 1, php.addr: 1}, FASTCGI_PARAMS=base_params(),
                 BACKEND_READ_TIMEOUT=1, BACKEND_FAIL_TIMEOUT=fail_timeout, EVENT_CLOSE=0)
    with gw.client(timeout=5) as c:
        for i in range(3):
            if ask_one(c, bad, b"warm %d" % i) == "bad":
                break
        else:
            raise AssertionError("no request reached the bad backend")
        sid = bad.messages()[0]["sid"]
        gw.wait_log("backend", bad.addr, "read timeout", sid, timeout=5)
        gw.wait_log("backend", bad.addr, "not used for", timeout=2)
        t_fail = time.monotonic()
        good = 0
        deadline = t_fail + fail_timeout + 5
        i = 0
        while len(bad.messages()) < 2:
            assert time.monotonic() < deadline, "the bad backend was never tried again"
            if ask_one(c, bad, b"during %d" % i) == "good":
                good += 1
            i += 1
            time.sleep(0.05)  # pace: about 20 requests a second, not a wait for a result
        t_retry = time.monotonic()
        assert t_retry - t_fail >= fail_timeout - 0.2, \
            "bad backend tried again after %.2fs" % (t_retry - t_fail)
        assert good >= 10, "only %d requests served while the bad one was down" % good
        # the retry fails too: marked down again without waiting for more failures
        fk.wait_until(lambda: len(gw.log_lines(bad.addr, "not used for")) >= 2, timeout=5,
                      msg="the second down mark")
        assert not c.recv_closed(0.05), "client closed after backend failures"
    bad.stop()


def test_max_fails_counts_in_a_row(fake, gateway):
    """BACKEND_MAX_FAILS = 2: one failure does not mark the server down (its
    next request still goes to it), the second one in a row does."""
    bad = fake()
    gw = gateway(**fake_keys(bad, BACKEND_MAX_FAILS=2, BACKEND_FAIL_TIMEOUT=30,
                             BACKEND_READ_TIMEOUT=3))
    with gw.client() as c:
        c.send(b"fault:close_early 1")
        gw.wait_log("closed the connection before END_REQUEST", timeout=5)
        assert c.request(b"ok 1") == b"ok 1"  # a success resets the count
        c.send(b"fault:close_early 2")
        fk.wait_until(lambda: len(gw.log_lines("before END_REQUEST")) >= 2, msg="second failure")
        assert not gw.log_lines("not used for"), "marked down after one failure in a row"
        c.send(b"fault:close_early 3")
        gw.wait_log(bad.addr, "2 failures in a row, not used for 30s", timeout=5)
        # the only server is down: it is tried anyway (the mark is a hint)
        assert c.request(b"still served") == b"still served"


# ---------------------------------------------------------------- queue deadlines

def test_queued_request_expires_client_stays(fake, gateway):
    """BACKEND_MAX_CONNS = 1 and the one connection busy (2.5 s): a request
    queued behind it fails after BACKEND_QUEUE_TIMEOUT, logged with its SID; its
    client stays connected and is served once the backend is free. A close event
    (EVENT=2) queued as long does not expire: it reaches the backend."""
    f = fake()
    gw = gateway(**fake_keys(f, BACKEND_MAX_CONNS=1, BACKEND_QUEUE_TIMEOUT=1,
                             BACKEND_READ_TIMEOUT=30, EVENT_CLOSE=1))
    with gw.client(timeout=10) as a, gw.client(timeout=10) as b:
        closer = gw.client()
        sid_b = json.loads(b.request(b"params"))["SESSIONID"]
        sid_c = json.loads(closer.request(b"params"))["SESSIONID"]
        a.send(b"fault:sleep:2.5 busy")
        fk.wait_until(lambda: f.sid_of(b"fault:sleep"), msg="the slow request at the backend")
        t0 = time.monotonic()
        b.send(b"queued")
        closer.close()  # its close event queues behind the slow request too
        line = gw.wait_log("BACKEND_QUEUE_TIMEOUT", sid_b, timeout=5)[0]
        waited = time.monotonic() - t0
        assert 0.8 <= waited < 2.4, "expired after %.2fs, BACKEND_QUEUE_TIMEOUT is 1" % waited
        assert "backend" in line
        assert not b.recv_closed(0.05), "client closed after its request expired"
        assert a.recv() == b"fault:sleep:2.5 busy"
        assert b.request(b"later") == b"later"
        fk.wait_until(lambda: f.events(2, sid_c), timeout=5, msg="the queued close event")
    assert [r["body"] for r in f.messages() if r["sid"] == sid_b] == [b"params", b"later"]
    assert not gw.log_lines("BACKEND_QUEUE_TIMEOUT", sid_c)


# ---------------------------------------------------------------- reload: names off the loop

def test_reload_to_named_backend(fake, gateway):
    """SIGHUP with BACKEND_SERVER = "localhost:PORT": the name is resolved (with
    evdns, while the worker keeps serving) and the new backend takes over."""
    a, b = fake(), fake()
    gw = gateway(**fake_keys(a))
    with gw.client() as c:
        assert c.request(b"before") == b"before"
        gw.keys.update(BACKEND_SERVER="localhost:%d" % b.port)
        fk.write_config(gw.conf, gw.keys)
        os.kill(gw.pid, signal.SIGHUP)
        gw.wait_log("configuration reloaded", timeout=10)
        fk.wait_until(lambda: c.request(b"after") == b"after" and b.messages(), timeout=5,
                      msg="a request at the new backend")
    assert [r["body"] for r in a.messages()] == [b"before"]


def test_reload_unresolvable_name_refused(fake, gateway):
    """SIGHUP with a name that does not resolve: the reload is refused with a
    line naming the server, and the old backend keeps serving."""
    a = fake()
    gw = gateway(**fake_keys(a))
    bad = "no-such-host.invalid:9000"
    with gw.client() as c:
        assert c.request(b"before") == b"before"
        gw.keys.update(BACKEND_SERVER={a.addr: 1, bad: 1})
        fk.write_config(gw.conf, gw.keys)
        os.kill(gw.pid, signal.SIGHUP)
        line = gw.wait_log("reload", bad, "resolve", timeout=60)[0]  # evdns retries
        assert "refused" in line or "failed" in line, line
        for i in range(5):
            assert c.request(b"still %d" % i) == b"still %d" % i
    assert len(a.messages()) == 6
    assert not gw.log_lines("configuration reloaded")
