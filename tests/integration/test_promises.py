"""Promises of the README that no other test checked, each asserted by what a
client, a backend or the log received:

  - replies: a non-2xx Status body is not delivered; "Content-Length: 0" is an
    empty message, an empty body without it is nothing; a reply over
    MAX_OUTPUT_SIZE and a CGI header over 64 KiB fail that request only
  - backends: a refused server is skipped for BACKEND_FAIL_TIMEOUT;
    BACKEND_CONNECT_TIMEOUT against a listener that never completes a handshake
  - SIGHUP: LOG_LEVEL, MAX_BUFF_SIZE for new clients, requests in flight finish
    on the old backend while new ones go only to the new one
  - operations: PID_FILE refuses a live pid and is removed at exit, a stale one
    is replaced; `fooking -s reopen`; TLS with a corrupt PEM or a key that does
    not match its cert; the crash-loop back-off; the master's kill grace
  - limits: IDLE_TIME posts EVENT=2; a MAX_CLIENT_NUM slot is freed when the
    worker holding the clients is killed

Processes on loopback only, stopped by pid; waits have deadlines; a fixed
sleep only where time itself is what is tested.
"""

import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest

import fk
import peers
from conftest import base_params

SID_TOKEN = re.compile(r"(?<![0-9a-zA-Z])[0-9a-f]{16}(?![0-9a-zA-Z])")


def fake_keys(f, **kw):
    keys = {"BACKEND_SERVER": f.addr, "FASTCGI_PARAMS": base_params(), "EVENT_CLOSE": 0}
    keys.update(kw)
    return keys


def sid_of(c):
    return json.loads(c.request(b"params"))["SESSIONID"]


def reload(gw, **changes):
    """Writes the changed config, SIGHUP, waits for every worker to say so."""
    before = len(gw.log_lines("configuration reloaded"))
    gw.keys.update(changes)
    fk.write_config(gw.conf, gw.keys)
    os.kill(gw.pid, signal.SIGHUP)
    fk.wait_until(lambda: len(gw.log_lines("configuration reloaded")) >= before + gw.worker_num,
                  10, msg="workers reloaded")


def run_fooking(args, timeout=15):
    return subprocess.run([str(fk.FOOKING)] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


# ---------------------------------------------------------------- replies

def test_non_2xx_status_body_not_delivered(fake, gateway):
    """README: a Status other than 2xx is logged and its body is not sent; the
    client stays and its next reply is its next message's."""
    f = fake()
    gw = gateway(**fake_keys(f))
    with gw.client() as c:
        sid = sid_of(c)
        for status in (500, 404, 302):
            c.send(b"fault:status:%d secret error page" % status, b"next %d" % status)
            assert c.recv() == b"next %d" % status
            gw.wait_log("reply status %d, body not delivered" % status, sid)
        # 2xx other than 200 is a reply
        assert c.request(b"fault:status:201 made") == b"fault:status:201 made"
        assert not c.recv_closed(0.05)


def test_explicit_empty_reply_is_a_message(fake, gateway):
    """README: an empty body sends nothing, unless the reply said
    Content-Length: 0 (then an empty message is sent)."""
    f = fake()
    gw = gateway(**fake_keys(f))
    with gw.client() as c:
        c.send(b"fault:empty one", b"after empty")
        assert c.recv() == b""
        assert c.recv() == b"after empty"
        c.send(b"fault:empty_nocl two", b"after nothing")
        assert c.recv() == b"after nothing"
        # pipelined requests run on parallel connections: arrival order is free
        assert sorted(m["body"] for m in f.messages()) == sorted(
            [b"fault:empty one", b"after empty", b"fault:empty_nocl two", b"after nothing"])


def test_reply_over_max_output_size_fails_that_request_only(fake, gateway):
    """README: reply size over MAX_OUTPUT_SIZE: the request fails, logged; the
    client stays, its later requests and other clients are served."""
    f = fake()
    gw = gateway(**fake_keys(f, MAX_OUTPUT_SIZE=100000))
    with gw.client() as c, gw.client() as other:
        sid = sid_of(c)
        c.send(b"big 200000", b"after big")
        assert c.recv() == b"after big"
        line = gw.wait_log("reply larger than MAX_OUTPUT_SIZE")[0]
        assert sid in line, line
        assert c.request(b"big 90000") == b"x" * 90000  # under the limit: a reply
        assert other.request(b"other") == b"other"
        assert not c.recv_closed(0.05)


def test_cgi_header_limit(fake, gateway):
    """README: a CGI response header over 64 KiB fails the request, logged; the
    client stays. 63 KiB of header is a normal reply."""
    f = fake()
    gw = gateway(**fake_keys(f, BACKEND_MAX_FAILS=0))
    with gw.client() as c:
        c.send(b"fault:hdr:66560 too long")
        gw.wait_log("malformed CGI response header")
        assert c.request(b"fault:hdr:64512 fits") == b"fault:hdr:64512 fits"
        assert c.request(b"plain") == b"plain"
    assert len(f.messages()) == 3


# ---------------------------------------------------------------- backends

def test_refused_server_is_skipped(fake, gateway):
    """A refusing server (BACKEND_MAX_FAILS = 1) is tried once, then skipped
    for BACKEND_FAIL_TIMEOUT: one refusal in the log for 20 requests, all of
    them served by the other server."""
    f = fake()
    dead = "127.0.0.1:%d" % fk.free_port()
    gw = gateway(**fake_keys(f, BACKEND_SERVER={dead: 1, f.addr: 1}, BACKEND_FAIL_TIMEOUT=30))
    with gw.client() as c:
        for i in range(20):
            assert c.request(b"r%d" % i) == b"r%d" % i
    assert len(f.messages()) == 20
    refusals = gw.log_lines("backend %s: connect" % dead)
    assert len(refusals) == 1, refusals
    assert len(gw.log_lines(dead, "not used for 30s")) == 1


def test_backend_connect_timeout(fake, gateway):
    """BACKEND_CONNECT_TIMEOUT = 1 against a listener whose accept queue is full
    (listen(0) and one connection queued: later SYNs are dropped, so the
    connect neither succeeds nor is refused): the request fails after about a
    second with a line naming the backend and the session; the client stays."""
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fillers = []
    try:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(0)
        addr = lsock.getsockname()
        for _ in range(2):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(addr)
            fillers.append(s)
        # the queue is full once a probe cannot complete its handshake
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.settimeout(0.5)
        with pytest.raises(socket.timeout):
            probe.connect(addr)
        probe.close()
        backend = "127.0.0.1:%d" % addr[1]
        gw = gateway(BACKEND_SERVER=backend, FASTCGI_PARAMS=base_params(), EVENT_CLOSE=0,
                     BACKEND_CONNECT_TIMEOUT=1)
        with gw.client() as c:
            t0 = time.monotonic()
            c.send(b"never sent")
            line = gw.wait_log("backend %s: connect timed out" % backend, timeout=6)[0]
            waited = time.monotonic() - t0
            assert 0.8 <= waited <= 2.5, "connect failed after %.2fs, timeout is 1s" % waited
            assert SID_TOKEN.search(line), line
            assert not c.recv_closed(0.2), "client closed after a backend connect timeout"
            with pytest.raises(TimeoutError):
                c.recv(timeout=0.2)  # no reply to that message
    finally:
        for s in fillers:
            s.close()
        lsock.close()


# ---------------------------------------------------------------- SIGHUP

def test_sighup_applies_log_level(fake, gateway):
    """LOG_LEVEL 2 -> 3 -> 2 by SIGHUP: the debug line of a client's connect
    appears only while the level is 3."""
    f = fake()
    gw = gateway(**fake_keys(f, LOG_LEVEL=2))
    with gw.client() as c:
        quiet = sid_of(c)
    reload(gw, LOG_LEVEL=3)
    with gw.client() as c:
        loud = sid_of(c)
    reload(gw, LOG_LEVEL=2)
    with gw.client() as c:
        quiet2 = sid_of(c)
    # a reply came back, so the connect (logged before the read) was written
    assert gw.log_lines("client %s" % loud, "connected")
    assert any(" DEBUG " in l for l in gw.log_lines("client %s" % loud, "connected"))
    assert not gw.log_lines("client %s" % quiet, "connected")
    assert not gw.log_lines("client %s" % quiet2, "connected")


def test_sighup_applies_max_buff_size_to_new_clients(fake, gateway):
    """MAX_BUFF_SIZE 1000 -> 200 by SIGHUP: a new client's 500-byte message is
    over the limit (closed, logged), its 150-byte one is served."""
    f = fake()
    gw = gateway(**fake_keys(f, MAX_BUFF_SIZE=1000))
    with gw.client() as c:
        assert c.request(b"m" * 500) == b"m" * 500
    reload(gw, MAX_BUFF_SIZE=200)
    with gw.client() as ok:
        assert ok.request(b"s" * 150) == b"s" * 150
    with gw.client() as big:
        big.send(b"b" * 500)
        assert big.recv_closed(5), "a message over the reloaded MAX_BUFF_SIZE was taken"
    gw.wait_log("message of 500 bytes over MAX_BUFF_SIZE (200)")
    assert b"b" * 500 not in [m["body"] for m in f.messages()]


def test_sighup_raised_max_buff_size_applies_to_connected_clients(fake, gateway):
    """README: on SIGHUP workers switch to the new limits without dropping a
    client. MAX_BUFF_SIZE 10000 -> 50000: a new client's 20000-byte message
    is served (this part passes), and so must be one from a client connected
    before the reload."""
    f = fake()
    gw = gateway(**fake_keys(f, MAX_BUFF_SIZE=10000))
    with gw.client(timeout=5) as old:
        assert old.request(b"a" * 9000) == b"a" * 9000
        reload(gw, MAX_BUFF_SIZE=50000)
        with gw.client() as new:
            assert new.request(b"n" * 20000) == b"n" * 20000
        assert old.request(b"o" * 20000) == b"o" * 20000


def test_sighup_in_flight_finish_on_old_backend(fake, gateway):
    """Requests in flight when SIGHUP switches backends finish on the old one
    (their replies arrive); everything sent afterwards goes to the new one
    only, even with kept-alive connections to the old one idle in the pool."""
    a, b = fake(), fake()
    gw = gateway(**fake_keys(a, BACKEND_KEEPALIVE=4))
    with gw.client(timeout=10) as slow, gw.client() as other:
        assert other.request(b"warm") == b"warm"  # leaves an idle keepalive connection to a
        slow.send(b"fault:sleep:1.5 in flight")
        fk.wait_until(lambda: a.sid_of(b"fault:sleep"), msg="the slow request at a")
        reload(gw, BACKEND_SERVER=b.addr)
        for i in range(5):
            assert other.request(b"new %d" % i) == b"new %d" % i
        assert slow.recv() == b"fault:sleep:1.5 in flight"
        assert slow.request(b"slow later") == b"slow later"
    assert [m["body"] for m in a.messages()] == [b"warm", b"fault:sleep:1.5 in flight"]
    assert [m["body"] for m in b.messages()] == [b"new %d" % i for i in range(5)] + [b"slow later"]


# ---------------------------------------------------------------- operations

def test_pid_file_refuses_live_pid_and_is_removed(fake, gateway, tmp_path):
    f = fake()
    pidf = tmp_path / "fooking.pid"
    gw = gateway(**fake_keys(f, PID_FILE=str(pidf)))
    fk.wait_until(lambda: pidf.exists() and pidf.read_text().strip() == str(gw.pid),
                  msg="the pid file")
    # a second gateway (another port) with the same pid file refuses to start
    conf = fk.write_config(tmp_path / "second.lua", dict(
        fake_keys(f, PID_FILE=str(pidf)), HOST="127.0.0.1", PORT=fk.free_port(),
        LOG_FILE="stderr", WORKER_NUM=1))
    r = run_fooking([conf])
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    errs = [l for l in (r.stdout + r.stderr).splitlines() if "ERROR" in l]
    assert len(errs) == 1 and "pid file %s: process %d is running" % (pidf, gw.pid) in errs[0], \
        r.stdout + r.stderr
    assert pidf.read_text().strip() == str(gw.pid)
    with gw.client() as c:
        assert c.request(b"still the first") == b"still the first"
    assert gw.stop()
    assert not pidf.exists(), "pid file left after the master stopped"


def test_pid_file_of_dead_process_is_replaced(fake, gateway, tmp_path):
    f = fake()
    pidf = tmp_path / "fooking.pid"
    p = subprocess.Popen(["true"])
    p.wait()  # reaped: its pid names no process (until reused, which is unlikely)
    pidf.write_text("%d\n" % p.pid)
    gw = gateway(**fake_keys(f, PID_FILE=str(pidf)))
    fk.wait_until(lambda: pidf.read_text().strip() == str(gw.pid), msg="the pid file rewritten")


def test_dash_s_reopen(fake, gateway, tmp_path):
    """`fooking -s reopen conf`: after the log was moved away, the master and
    the workers write to a new file at the configured path."""
    f = fake()
    pidf = tmp_path / "fooking.pid"
    gw = gateway(**fake_keys(f, PID_FILE=str(pidf)))
    fk.wait_until(pidf.exists, msg="the pid file")
    moved = str(gw.log_file) + ".1"
    os.rename(str(gw.log_file), moved)
    r = run_fooking(["-s", "reopen", gw.conf])
    assert r.returncode == 0, r.stdout + r.stderr
    fk.wait_until(gw.log_file.exists, msg="the reopened log file")
    with gw.client() as c:
        sid = sid_of(c)
    line = gw.wait_log("client %s" % sid, "closed")[0]  # the worker writes the new file
    assert "[%d]" % gw.worker_pids()[0] in line
    assert sid not in open(moved).read()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    for n in ("1", "2"):
        peers.make_cert(d, n)
    (d / "bad.pem").write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n"
                               "-----END CERTIFICATE-----\n")
    (d / "badkey.pem").write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n"
                                  "-----END PRIVATE KEY-----\n")
    return d


@pytest.mark.parametrize("cert,key", [("bad.pem", "k1.pem"), ("c1.pem", "badkey.pem"),
                                      ("c1.pem", "k2.pem")],
                         ids=["corrupt-cert", "corrupt-key", "key-of-another-cert"])
def test_tls_bad_pem_fails_check_and_start(certs, tmp_path, cert, key):
    """A corrupt PEM or a key that does not match its cert: `fooking -t` and a
    start both fail with status 1 and one error line naming the file, and
    nothing listens."""
    port = fk.free_port()
    conf = fk.write_config(tmp_path / "tls.lua", {
        "HOST": "127.0.0.1", "PORT": port, "LOG_FILE": "stderr", "BACKEND_SERVER": "127.0.0.1:1",
        "SSL": 1, "SSL_CERT": str(certs / cert), "SSL_PKEY": str(certs / key)})
    for args in (["-t", conf], [conf]):
        r = run_fooking(args)
        out = (r.stdout + r.stderr).strip().splitlines()
        assert r.returncode == 1, (args, r.returncode, out)
        errs = [l for l in out if "ERROR" in l or "tls.lua" in l]
        assert len(errs) == 1, out
        named = cert if cert == "bad.pem" else key
        assert "tls.lua" in errs[0] and (named in errs[0] or "match" in errs[0]), errs[0]
        assert not fk.port_listening(port)


def test_crash_loop_back_off(fake, gateway):
    """A worker that keeps dying young (here: killed within 1 s of its start)
    is restarted after 0.1, 0.2, 0.4, 0.8, 1.6 s (logged, and kept: the
    replacement does not come sooner); one that lived over a second is
    replaced at once."""
    f = fake()
    gw = gateway(**fake_keys(f))
    gaps = []
    pid = gw.worker_pids()[0]
    for _ in range(5):
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        new = fk.wait_until(lambda: [p for p in gw.worker_pids() if p != pid], 10,
                            interval=0.005, msg="a replacement worker")
        gaps.append(time.monotonic() - t0)
        pid = new[0]
    delays = [float(m) for m in re.findall(r"worker 0 is crash-looping; restarting in ([0-9.]+) s",
                                           gw.log())]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6], delays
    for want, got in zip(delays, gaps):
        assert got >= want * 0.9, "restarted after %.3fs, back-off said %.1fs (%r)" % (got, want,
                                                                                       gaps)
    assert gaps[-1] < 1.6 + 1.0, gaps
    # a worker that lived over a second is not crash-looping
    time.sleep(1.2)  # the age of the worker is what is tested
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    fk.wait_until(lambda: [p for p in gw.worker_pids() if p != pid], 5, interval=0.005,
                  msg="a replacement worker")
    assert time.monotonic() - t0 < 0.5
    assert len(gw.log_lines("crash-looping")) == 5
    with gw.client() as c:
        assert c.request(b"served") == b"served"


def test_master_kills_a_stuck_worker_after_grace(fake, gateway):
    """A worker that cannot stop (SIGSTOP): SIGTERM to the master; after
    MASTER_STOP_GRACE_SECONDS (12 s) the master logs that it kills it, does,
    and exits."""
    f = fake()
    gw = gateway(**fake_keys(f))
    worker = gw.worker_pids()[0]
    os.kill(worker, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        os.kill(gw.pid, signal.SIGTERM)
        gw.proc.wait(20)
        elapsed = time.monotonic() - t0
    finally:
        try:
            os.kill(worker, signal.SIGCONT)
        except ProcessLookupError:
            pass
    line = gw.wait_log("worker 0 (pid %d) did not stop in time; killing it" % worker)[0]
    assert "ERROR" in line
    assert 11.5 <= elapsed <= 14, "master exited %.1fs after SIGTERM, grace is 12s" % elapsed
    assert gw.proc.returncode == 0
    fk.wait_until(lambda: not fk.pid_alive(worker), 5, msg="the stuck worker gone")
    assert gw.log_lines("master: stopped")


# ---------------------------------------------------------------- limits

def test_idle_time_posts_close_event(fake, gateway):
    """IDLE_TIME closes a silent client and posts its EVENT=2, exactly once."""
    f = fake()
    gw = gateway(**fake_keys(f, IDLE_TIME=1, EVENT_CLOSE=1))
    with gw.client() as c:
        sid = sid_of(c)
        t0 = time.monotonic()
        assert c.recv_closed(5), "silent client not closed with IDLE_TIME=1"
        assert time.monotonic() - t0 >= 0.8
    fk.wait_until(lambda: f.events(2, sid), 5, msg="the close event of the idle client")
    gw.wait_log("client %s" % sid, "idle timeout")
    time.sleep(0.3)  # a duplicate close event, if any, would come now
    assert len(f.events(2, sid)) == 1


def test_max_client_num_slot_freed_after_worker_killed(fake, gateway):
    """MAX_CLIENT_NUM = 3: a 4th client is refused; kill -9 the worker holding
    the 3: the new worker admits 3 new clients again, and refuses a 4th."""
    f = fake()
    gw = gateway(**fake_keys(f, MAX_CLIENT_NUM=3))

    def fill():
        held = [gw.client() for _ in range(3)]
        for i, c in enumerate(held):
            assert c.request(b"in %d" % i) == b"in %d" % i
        with gw.client() as extra:
            assert extra.recv_closed(3), "a 4th client was admitted"
        return held

    held = fill()
    before = len(gw.log_lines("MAX_CLIENT_NUM (3) reached"))
    assert before >= 1
    old = gw.worker_pids()[0]
    os.kill(old, signal.SIGKILL)
    for c in held:
        assert c.recv_closed(5)
        c.close()
    fk.wait_until(lambda: [p for p in gw.worker_pids() if p != old], 5, msg="a new worker")
    held = fill()
    assert len(gw.log_lines("MAX_CLIENT_NUM (3) reached")) == before + 1
    for c in held:
        c.close()
