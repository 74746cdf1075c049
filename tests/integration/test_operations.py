"""Operating a gateway as one operates nginx, checked by what clients and
backends see:

  - standard CGI params by default: Go's net/http/fcgi and php-fpm need no
    FASTCGI_PARAMS beyond php's SCRIPT_FILENAME; FASTCGI_PARAMS still wins
  - SIGQUIT / -s quit: a graceful stop spreading the closes over
    GRACEFUL_STOP_TIME, WebSocket 1001, requests in flight answered, every
    close event posted
  - workers never outlive their master
  - SIGUSR2 / -s upgrade: a new binary takes over the listening socket with no
    connection refused, the old generation drains; a new binary that cannot
    start leaves the old one serving
"""

import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

import fk
import wsraw
from conftest import base_params


def test_go_backend_with_no_fastcgi_params(gateway, goecho):
    """The seed's setup: Go's net/http/fcgi behind the gateway, no FASTCGI_PARAMS
    and no FASTCGI_PREFIX (the backend reads SESSIONID with fcgi.ProcessEnv)."""
    gw = gateway(BACKEND_SERVER=goecho.addr, EVENT_CONNECT=1)
    with gw.client() as c:
        welcome = c.recv()
        assert welcome.startswith(b"welcome ") and len(welcome) == 8 + 16, welcome
        assert c.request(b"hello go") == b"hello go"
        p = json.loads(c.request(b"params"))
    assert p["REQUEST_METHOD"] == "POST"
    assert p["SESSIONID"] == welcome[8:].decode()
    assert not gw.log_lines("cgi: no REQUEST_METHOD")


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_default_cgi_params_as_sent(gateway, fake, host):
    """SERVER_ADDR is the address the client reached, also on a wildcard HOST."""
    f = fake()
    gw = gateway(BACKEND_SERVER=f.addr, HOST=host)
    with gw.client() as c:
        assert c.request(b"x") == b"x"
    p = f.messages()[0]["params"]
    assert p["REQUEST_METHOD"] == "POST"
    assert p["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert p["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert p["SERVER_SOFTWARE"].startswith("fooking/")
    assert p["SERVER_ADDR"] == "127.0.0.1" and p["SERVER_PORT"] == str(gw.port)
    assert p["CONTENT_TYPE"] == "application/octet-stream"


def test_php_with_only_script_filename_and_fastcgi_params_win(gateway, php):
    gw = gateway(BACKEND_SERVER=php.addr,
                 FASTCGI_PARAMS={"SCRIPT_FILENAME": str(fk.ECHO_PHP), "SERVER_SOFTWARE": "mine",
                                 "SERVER_PORT": "443"})
    with gw.client() as c:
        p = json.loads(c.request(b"params"))
    assert p["REQUEST_METHOD"] == "POST" and p["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert p["CONTENT_TYPE"] == "application/octet-stream"
    assert p["SERVER_SOFTWARE"] == "mine" and p["SERVER_PORT"] == "443"
    assert p["SERVER_ADDR"] == "127.0.0.1"


def _ws_close_times(port, n, results, t0):
    """n WebSocket clients; records (close code, seconds after t0) for each."""
    socks = []
    for _ in range(n):
        ws = wsraw.RawWs(port, timeout=20)
        ws.handshake()
        socks.append(ws)

    def wait(ws):
        try:
            code, _ = ws.recv_close(timeout=20)
        except Exception as e:  # noqa: BLE001 - recorded, asserted by the test
            code = repr(e)
        results.append((code, time.monotonic() - t0[0]))
        ws.close()
    ts = [threading.Thread(target=wait, args=(ws,), daemon=True) for ws in socks]
    return ts


@pytest.mark.parametrize("how", ["signal", "dash_s"])
def test_graceful_stop_spreads_closes(gateway, fake, tmp_path, how):
    n_ws, n_len = 30, 30
    f = fake(mode="sleep", delay=1.0)
    gw = gateway(BACKEND_SERVER=f.addr, FASTCGI_PARAMS=base_params(), PROTOCOL="websocket",
                 GRACEFUL_STOP_TIME=2, PID_FILE=str(tmp_path / "gw.pid"), WORKER_NUM=2)
    t0 = [0.0]
    results = []
    threads = _ws_close_times(gw.port, n_ws, results, t0)
    # One client with a request in flight when the stop begins: it gets its reply first.
    busy = wsraw.RawWs(gw.port, timeout=20)
    busy.handshake()
    busy.send_text("in flight")
    fk.wait_until(lambda: f.messages(), 5, msg="the request in flight")
    t0[0] = time.monotonic()
    for t in threads:
        t.start()
    if how == "signal":
        os.kill(gw.pid, signal.SIGQUIT)
    else:
        r = subprocess.run([str(fk.FOOKING), "-s", "quit", str(gw.conf)], capture_output=True,
                           text=True, timeout=10)
        assert r.returncode == 0, r.stderr
    assert busy.recv_message(timeout=10) == (wsraw.OP_TEXT, b"in flight")
    assert busy.recv_close(timeout=10)[0] == 1001
    busy.close()
    for t in threads:
        t.join(20)
    gw.proc.wait(timeout=20)
    codes = [c for c, _ in results]
    times = sorted(t for _, t in results)
    assert codes == [1001] * n_ws, codes
    # Spread over the 2 s window, not all at once (ticks of 0.1 s).
    assert times[-1] - times[0] >= 1.0, times
    assert times[-1] <= 2 + 1.5, times
    assert gw.log_lines("graceful stop: closing")
    # Every session got its close event.
    assert len(f.events(2)) == n_ws + 1, len(f.events(2))


def test_workers_stop_when_the_master_is_killed(gateway, fake):
    f = fake()
    gw = gateway(BACKEND_SERVER=f.addr, FASTCGI_PARAMS=base_params(), WORKER_NUM=2)
    workers = gw.worker_pids()
    clients = [gw.client() for _ in range(4)]
    for i, c in enumerate(clients):
        assert c.request(b"c%d" % i) == b"c%d" % i
    os.kill(gw.pid, signal.SIGKILL)
    gw.proc.wait(timeout=5)
    fk.wait_until(lambda: not any(fk.pid_alive(p) for p in workers), 5,
                  msg="workers gone after their master")
    for c in clients:
        assert c.recv_closed(timeout=5)
        c.close()
    # Their sessions' close events were posted on the way out.
    fk.wait_until(lambda: len(f.events(2)) == 4, 5, msg="4 close events")
    # The port is free: a new gateway binds and serves.
    gw2 = gateway(BACKEND_SERVER=f.addr, FASTCGI_PARAMS=base_params(), PORT=gw.port)
    with gw2.client() as c:
        assert c.request(b"new") == b"new"


# ---------------------------------------------------------------- binary upgrade


def _pid_file_pid(path):
    try:
        return int(open(path).read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class ConnectLoop(threading.Thread):
    """Connects, sends one message, reads the reply, closes: again and again,
    counting what went wrong. Bounded by `seconds`."""

    def __init__(self, port, seconds=30):
        super().__init__(daemon=True)
        self.port, self.deadline = port, time.monotonic() + seconds
        self.ok, self.errors, self.stop = 0, [], threading.Event()

    def run(self):
        n = 0
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            msg = b"loop %d" % n
            n += 1
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                    s.sendall(struct.pack(">I", len(msg)) + msg)
                    got = b""
                    while len(got) < 4 + len(msg):
                        chunk = s.recv(4 + len(msg) - len(got))
                        if not chunk:
                            break
                        got += chunk
                if got == struct.pack(">I", len(msg)) + msg:
                    self.ok += 1
                else:
                    self.errors.append("short reply %r" % got)
            except OSError as e:
                self.errors.append(repr(e))


def _stop_generation(pid):
    """Stops a master that this test started indirectly (the upgrade's), and
    its workers, by pid."""
    workers = fk.children_of(pid)
    fk.stop_pid(pid, timeout=15)
    for w in workers:
        if fk.pid_alive(w):
            os.kill(w, signal.SIGKILL)


def test_binary_upgrade_without_refusing_a_connection(gateway, fake, tmp_path):
    f = fake()
    pid_file = tmp_path / "gw.pid"
    gw = gateway(BACKEND_SERVER=f.addr, FASTCGI_PARAMS=base_params(), WORKER_NUM=2,
                 PID_FILE=str(pid_file), GRACEFUL_STOP_TIME=1)
    old = gw.pid
    old_workers = set(gw.worker_pids())
    held = [gw.client() for _ in range(3)]
    for i, c in enumerate(held):
        assert c.request(b"held %d" % i) == b"held %d" % i
    old_sids = {f.sid_of(b"held %d" % i) for i in range(3)}
    loop = ConnectLoop(gw.port)
    loop.start()
    new = None
    try:
        fk.wait_until(lambda: loop.ok >= 20, 10, msg="the connect loop running")
        r = subprocess.run([str(fk.FOOKING), "-s", "upgrade", str(gw.conf)],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
        fk.wait_until(lambda: _pid_file_pid(pid_file) not in (None, old), 10,
                      msg="PID_FILE naming the new master")
        new = _pid_file_pid(pid_file)
        # The old master drains and exits; its clients get a clean close.
        gw.proc.wait(timeout=20)
        for c in held:
            assert c.recv_closed(timeout=10)
            c.close()
        assert not any(fk.pid_alive(p) for p in old_workers)
        assert not os.path.exists(str(pid_file) + ".oldbin")
        ok_at_handover = loop.ok
        fk.wait_until(lambda: loop.ok >= ok_at_handover + 20, 10,
                      msg="the new generation serving the loop")
    finally:
        loop.stop.set()
        loop.join(10)
    try:
        print("\nupgrade: %d round trips through the connect loop, errors: %d" % (loop.ok, len(loop.errors)))
        assert loop.errors == [], loop.errors[:5]
        # Clients reconnect to the new binary; SIDs never repeat across generations.
        with fk.Client(gw.port) as c:
            assert c.request(b"after upgrade") == b"after upgrade"
        assert f.sid_of(b"after upgrade") not in old_sids
        # One message per connection: a SID seen twice was handed out twice.
        sids = [r["sid"] for r in f.messages()]
        assert len(sids) == len(set(sids)), "a SID was handed out twice"
        assert gw.log_lines("upgrade: new master %d serves" % new)
    finally:
        _stop_generation(new)


def test_failed_upgrade_keeps_the_old_master(gateway, fake, tmp_path):
    f = fake()
    pid_file = tmp_path / "gw.pid"
    gw = gateway(BACKEND_SERVER=f.addr, FASTCGI_PARAMS=base_params(), PID_FILE=str(pid_file))
    # The new master reads the config again: make it one that cannot start.
    gw.conf.write_text(gw.conf.read_text() + 'WORKER_NUM = "two"\n')
    os.kill(gw.pid, signal.SIGUSR2)
    gw.wait_log("upgrade failed", timeout=15)
    assert gw.alive()
    assert _pid_file_pid(pid_file) == gw.pid
    assert not os.path.exists(str(pid_file) + ".oldbin")
    with gw.client() as c:
        assert c.request(b"still the old one") == b"still the old one"


def test_router_binary_upgrade_gateways_resync(gateway, fake, tmp_path):
    import peers
    import rproto
    pid_file = tmp_path / "router.pid"
    router = peers.Router(tmp_path / "router", PID_FILE=str(pid_file)).start()
    old = router.pid
    f = fake()
    gw = gateway(BACKEND_SERVER=f.addr, FASTCGI_PARAMS=base_params(), ROUTER_HOST="127.0.0.1",
                 ROUTER_PORT=router.port, WORKER_NUM=2)
    clients = [gw.client() for _ in range(4)]
    for i, c in enumerate(clients):
        assert c.request(b"u%d" % i) == b"u%d" % i
    sids = [f.sid_of(b"u%d" % i) for i in range(4)]
    fk.wait_until(lambda: rproto.Backend(router.port).info()["clients"] == 4, 5,
                  msg="the router to know the 4 sessions")
    new = None
    try:
        os.kill(old, signal.SIGUSR2)
        fk.wait_until(lambda: _pid_file_pid(pid_file) not in (None, old), 10,
                      msg="PID_FILE naming the new router")
        new = _pid_file_pid(pid_file)
        router.proc.wait(timeout=10)
        assert not os.path.exists(str(pid_file) + ".oldbin")
        # The gateways reconnect to the new router and resync: INFO is whole again,
        # and a push reaches exactly its client.
        fk.wait_until(lambda: rproto.Backend(router.port).info()["clients"] == 4,
                      peers.RESYNC_DEADLINE, msg="sessions resynced to the new router")
        rproto.Backend(router.port).send_msg([sids[2].encode()], b"via the new router")
        assert clients[2].recv(timeout=5) == b"via the new router"
        for i, c in enumerate(clients):
            assert c.request(b"again %d" % i) == b"again %d" % i  # never disconnected
        assert router.log_lines("upgrade: new router %d serves" % new)
    finally:
        for c in clients:
            c.close()
        if new:
            fk.stop_pid(new, timeout=10)


def test_router_sigquit_stops_cleanly(tmp_path):
    import peers
    router = peers.Router(tmp_path / "router").start()
    os.kill(router.pid, signal.SIGQUIT)
    assert router.proc.wait(timeout=10) == 0
