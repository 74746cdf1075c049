"""NATS as the bus, for the tests: a minimal NATS client (the text protocol over a
socket: CONNECT, PUB, SUB, UNSUB, MSG, PING/PONG) and the cluster of
test_nats*.py: a three-server nats-server cluster (peers.NatsCluster), two
gateways (SERVER_ID 1 and 2, two workers each) in front of php-fpm
(tests/backends/echo.php) and two stateless routers, all with BUS = nats://.

The gateways list the servers in different orders (gateway 1: servers 0, 1, 2;
gateway 2: servers 1, 2, 0) and the routers prefer servers 2 and 0, so the
messages cross the cluster's routes: each process connects to the first server
of its list that answers (the list's order is kept, see nbus.c)."""

import os
import re
import socket
import time
from pathlib import Path

import pytest

import fk
import peers
import rproto as rp
import swarm
from conftest import base_params
from peers import NATS_SERVER, NatsCluster, Router
from swarm import Swarm

PREFIX = "fknats."         # BUS_PREFIX of the cluster: subjects fknats.all, fknats.gw.1.0, ...
SERVERS = (1, 2)
WORKERS = 2
LINKS = [(s, w) for s in SERVERS for w in range(WORKERS)]
GW_ORDER = {1: (0, 1, 2), 2: (1, 2, 0)}
ROUTER_ORDER = [(2, 0, 1), (0, 1, 2)]


def subject(kind, name=None):
    """The subject fooking uses: PREFIX + kind [+ name escaped as nbus.c does]."""
    if name is None:
        return PREFIX + kind
    if isinstance(name, str):
        name = name.encode()
    if not name:
        return PREFIX + kind + "%"
    out = []
    for b in name:
        c = chr(b)
        if c.isascii() and (c.isalnum() or c in "_-"):
            out.append(c)
        else:
            out.append("%%%02X" % b)
    return PREFIX + kind + "".join(out)


class NatsClient:
    """One NATS connection. publish(subject, payload); subscribe(subject) -> sid;
    next_msg(timeout) -> (subject, reply, payload) or None."""

    def __init__(self, port, user=None, password=None, token=None, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.buf = b""
        self.sid = 0
        self.msgs = []
        line = self._line()
        assert line.startswith(b"INFO "), line
        opts = '{"verbose":false,"pedantic":false,"name":"test","headers":false'
        if user is not None:
            opts += ',"user":"%s","pass":"%s"' % (user, password)
        if token is not None:
            opts += ',"auth_token":"%s"' % token
        self.sock.sendall(("CONNECT " + opts + "}\r\nPING\r\n").encode())
        while True:
            line = self._line()
            if line == b"PONG":
                break
            if line.startswith(b"-ERR"):
                raise ConnectionError(line.decode())

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        d = self.sock.recv(65536)
        if not d:
            raise ConnectionError("NATS closed the connection")
        self.buf += d

    def _line(self, timeout=10):
        while b"\r\n" not in self.buf:
            self._fill(timeout)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def publish(self, subj, payload=b"", reply=None):
        head = "PUB %s %s%d\r\n" % (subj, reply + " " if reply else "", len(payload))
        self.sock.sendall(head.encode() + payload + b"\r\n")

    def subscribe(self, subj, queue=None):
        self.sid += 1
        self.sock.sendall(("SUB %s %s%d\r\n" % (subj, queue + " " if queue else "",
                                                self.sid)).encode())
        return self.sid

    def unsubscribe(self, sid):
        self.sock.sendall(b"UNSUB %d\r\n" % sid)

    def flush(self):
        """Round trip: what was sent before is processed by the server."""
        self.sock.sendall(b"PING\r\n")
        while True:
            m = self._read_one(10)
            if m == "PONG":
                return
            if m is not None:
                self.msgs.append(m)

    def _read_one(self, timeout):
        line = self._line(timeout)
        if line == b"PING":
            self.sock.sendall(b"PONG\r\n")
            return None
        if line == b"PONG":
            return "PONG"
        if line.startswith(b"-ERR"):
            raise ConnectionError(line.decode())
        if line.startswith(b"+OK") or line.startswith(b"INFO"):
            return None
        assert line.startswith(b"MSG "), line
        parts = line.split(b" ")
        n = int(parts[-1])
        reply = parts[3].decode() if len(parts) == 5 else None
        while len(self.buf) < n + 2:
            self._fill(timeout)
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return (parts[1].decode(), reply, data)

    def next_msg(self, timeout=5.0):
        if self.msgs:
            return self.msgs.pop(0)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                m = self._read_one(left)
            except (socket.timeout, TimeoutError):
                return None
            if m is not None and m != "PONG":
                return m

    def request(self, subj, payload, timeout=5.0):
        """One request, its first answer's payload (None at the deadline)."""
        inbox = "_INBOX.test%d.%d" % (os.getpid(), self.sid + 1)
        sid = self.subscribe(inbox)
        self.publish(subj, payload, reply=inbox)
        try:
            m = self.next_msg(timeout)
            return None if m is None else m[2]
        finally:
            self.unsubscribe(sid)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class NatsBus(swarm.BusCluster):
    """The NATS cluster, two gateways and two routers; the same methods as
    test_bus.Bus where the tests share them (open_clients, wait_channel, publish,
    routers, gws, swarm, logs, stop)."""

    def __init__(self, tmp, php, nats_args=(), auth="", per_gw=None, per_router=None,
                 **gw_keys):
        """gw_keys: extra keys of both gateways; per_gw: {server id: keys} of one
        gateway (METRICS_PORT, which must differ); per_router: {router number:
        keys} of the routers start() starts (HTTP_PORT)."""
        self.tmp = Path(tmp)
        self.php = php
        self.nats = NatsCluster(self.tmp / "nats", 3, args=nats_args)
        self.auth = auth
        self.gw_keys = gw_keys
        self.per_gw = per_gw or {}
        self.per_router = per_router or {}
        self.gws = {}
        self.routers = []
        self.dead_routers = []
        self.swarm = Swarm()
        self.nc = None

    def url(self, order):
        return self.nats.url(*order, auth=self.auth)

    def start(self):
        self.nats.start()
        for s in SERVERS:
            self.start_gateway(s)
        for i in range(2):
            self.start_router(**self.per_router.get(i, {}))
        self.wait_subscribed()
        return self

    def start_gateway(self, s):
        """Starts gateway SERVER_ID s (it need not find a NATS server up)."""
        p = base_params()
        p["EVENT_LOG"] = str(self.tmp / "events.log")
        keys = dict(SERVER_ID=s, WORKER_NUM=WORKERS, BUS=self.url(GW_ORDER[s]),
                    BUS_PREFIX=PREFIX, BACKEND_SERVER=self.php.addr, FASTCGI_PREFIX="",
                    FASTCGI_PARAMS=p, EVENT_CONNECT=1, LOG_LEVEL=3)
        keys.update(self.gw_keys)
        keys.update(self.per_gw.get(s, {}))
        gw = peers.Gateway(self.tmp / ("gw%d" % s), name="gw%d" % s, **keys)
        self.gws[s] = gw
        gw.start()
        return gw

    def start_router(self, **keys):
        n = len(self.routers) + len(self.dead_routers)
        d = self.tmp / ("router%d" % n)
        d.mkdir()
        order = ROUTER_ORDER[n % len(ROUTER_ORDER)]
        r = Router(d, BUS=self.url(order), BUS_PREFIX=PREFIX, **keys).start()
        self.routers.append(r)
        return r

    def client(self, server=0):
        """A NATS connection of the test's own (closed by stop)."""
        user = password = token = None
        if ":" in self.auth:
            user, password = self.auth.split(":", 1)
        elif self.auth:
            token = self.auth
        c = NatsClient(self.nats.ports[server], user=user, password=password, token=token)
        return c

    def bus_client(self):
        if self.nc is None:
            self.nc = self.client(0)
        return self.nc

    links = LINKS

    def stop(self):
        problems, rcs = self.stop_fooking()
        if self.nc is not None:
            self.nc.close()
        self.nats.stop()
        return problems, rcs

    # -- the NATS side

    def numsub(self, subj):
        return self.nats.subscriptions().get(subj, 0)

    def wait_subscribed(self, timeout=15.0):
        """Every gateway worker listens on <prefix>all, q, who and its own subject,
        and each router on hb and api."""
        def ok():
            subs = self.nats.subscriptions()
            return (subs.get(PREFIX + "all", 0) == len(LINKS)
                    and subs.get(PREFIX + "q", 0) == len(LINKS)
                    and subs.get(PREFIX + "hb", 0) == len(self.routers)
                    and all(subs.get(PREFIX + "gw.%d.%d" % l, 0) == 1 for l in LINKS))
        fk.wait_until(ok, timeout, msg="the four gateway workers to subscribe\n" + self.logs())

    def wait_channel(self, channel, links, timeout=5.0):
        """Waits until exactly `links` worker subscriptions exist for the channel."""
        subj = subject("ch.", channel)
        fk.wait_until(lambda: self.numsub(subj) == links, timeout,
                      msg="%d subscriber(s) of %s (have %d)" % (links, subj, self.numsub(subj)))

    def publish(self, mtype, s=b"", d=b"", subj=None):
        """Publishes one message straight onto the bus, as a library would."""
        c = self.bus_client()
        c.publish(subj or PREFIX + "all", rp.encode(mtype, s, d))
        c.flush()


def received(bus, marker, timeout=10.0):
    return swarm.received(bus.swarm, marker, timeout=timeout, closed_ok=True)


def sids(peers_):
    return [p.sid for p in peers_]


def metric(text, name, labels=""):
    """The value of one sample in Prometheus text (labels: the exact '{...}' part)."""
    m = re.search(r"^%s%s (\S+)$" % (re.escape(name), re.escape(labels)), text, re.M)
    return None if m is None else float(m.group(1))


@pytest.fixture
def natsbus(php, tmp_path):
    if not os.path.exists(NATS_SERVER):
        pytest.skip("nats-server not installed")
    made = []

    def make(name="n", start=True, **kw):
        b = NatsBus(tmp_path / name, php, **kw)
        made.append(b)
        return b.start() if start else b
    yield make
    problems = []
    for b in made:
        p, rcs = b.stop()
        problems += p
        assert all(rc == 0 for rc in rcs), "a router did not exit cleanly: %r" % rcs
    if problems:
        pytest.fail("sanitizer reports from fooking:\n" + "\n".join(problems[:20]))
