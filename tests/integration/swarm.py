"""Many length-protocol clients read through one selector, and the marker
technique the cluster and bus tests use to prove a command reached exactly its
clients: after the command, send a marker to everyone; what a client got before
the marker is what the command gave it, and nothing may follow within QUIET."""

import os
import re
import selectors
import socket
import struct
import time

QUIET = 0.25  # after a marker, nothing more may arrive for this long


def sid_link(sid):
    """(server id, worker id) read out of a SID: 40 bits ms | 13 server | 5 worker | 6 seq."""
    if isinstance(sid, str):
        sid = sid.encode()
    assert re.fullmatch(rb"[0-9a-f]{16}", sid), sid
    v = int(sid, 16)
    return (v >> 11) & 0x1FFF, (v >> 6) & 0x1F


class Peer:
    """One length-protocol client: what it received, in order, and whether the
    gateway closed it."""
    __slots__ = ("sock", "buf", "msgs", "closed", "sid", "link", "port")

    def __init__(self, sock, port):
        self.sock = sock
        self.port = port
        self.buf = bytearray()
        self.msgs = []
        self.closed = False
        self.sid = None
        self.link = None

    def __repr__(self):
        return "Peer(%s %s)" % (self.sid and self.sid.decode(), self.link)


class Swarm:
    """Many non-blocking clients read through one selector."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.peers = []
        self.nmsgs = 0

    def connect(self, port, n, batch=1000, timeout=30.0):
        """Opens n clients to port, at most `batch` connects in flight; returns them."""
        out = []
        for start in range(0, n, batch):
            pending = {}
            wsel = selectors.DefaultSelector()
            for _ in range(min(batch, n - start)):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                err = s.connect_ex(("127.0.0.1", port))
                assert err in (0, 115), os.strerror(err)  # EINPROGRESS
                p = Peer(s, port)
                pending[s.fileno()] = p
                wsel.register(s, selectors.EVENT_WRITE, p)
            deadline = time.monotonic() + timeout
            while pending:
                left = deadline - time.monotonic()
                assert left > 0, "%d connects to port %d never completed" % (len(pending), port)
                for key, _ in wsel.select(min(left, 1.0)):
                    p = key.data
                    wsel.unregister(p.sock)
                    del pending[p.sock.fileno()]
                    err = p.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    assert err == 0, "connect to %d: %s" % (port, os.strerror(err))
                    self.sel.register(p.sock, selectors.EVENT_READ, p)
                    self.peers.append(p)
                    out.append(p)
            wsel.close()
        return out

    def pump(self, timeout):
        for key, _ in self.sel.select(timeout):
            p = key.data
            try:
                data = p.sock.recv(1 << 16)
            except BlockingIOError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if not data:
                p.closed = True
                self.sel.unregister(p.sock)
                continue
            p.buf += data
            while len(p.buf) >= 4:
                n = struct.unpack_from(">I", p.buf)[0]
                if len(p.buf) < 4 + n:
                    break
                p.msgs.append(bytes(p.buf[4:4 + n]))
                del p.buf[:4 + n]
                self.nmsgs += 1

    def wait(self, cond, timeout=5.0, msg="condition"):
        deadline = time.monotonic() + timeout
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, msg))
            self.pump(min(left, 0.05))

    def quiet(self, seconds=QUIET):
        """Reads whatever arrives during `seconds` (to catch late or duplicate messages)."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.pump(left)

    def open(self):
        return [p for p in self.peers if not p.closed]

    def hang_up(self, p):
        """The client closes its connection."""
        if not p.closed:
            self.sel.unregister(p.sock)
            p.closed = True
        p.sock.close()

    def close_all(self):
        for p in self.peers:
            self.hang_up(p)
        self.sel.close()


_marker_seq = [0]


def new_marker():
    _marker_seq[0] += 1
    return b"-- marker %d --" % _marker_seq[0]


def received(sw, marker, peers=None, timeout=10.0, closed_ok=False):
    """Waits until every open client (or each of `peers`) has the marker; returns
    {peer: [messages before it]} and asserts nothing came after it within QUIET.
    A client closed meanwhile fails the check, or maps to None with closed_ok."""
    peers = peers if peers is not None else sw.open()
    sw.wait(lambda: all(marker in p.msgs or p.closed for p in peers), timeout,
            "the marker %r at every client; missing at %r"
            % (marker, [p for p in peers if marker not in p.msgs and not p.closed][:8]))
    sw.quiet()
    out = {}
    for p in peers:
        if p.closed:
            assert closed_ok, "%r closed" % p
            out[p] = None
            continue
        i = p.msgs.index(marker)
        assert p.msgs[i + 1:] == [], "%r received after the marker: %r" % (p, p.msgs[i + 1:])
        out[p] = p.msgs[:i]
        p.msgs.clear()
    return out


def assert_delivered(got, expect):
    """got: {peer: messages}; expect: {peer: messages} (absent peers: nothing)."""
    bad = {p: (msgs, expect.get(p, [])) for p, msgs in got.items() if msgs != expect.get(p, [])}
    assert not bad, "clients that received the wrong messages (got, expected): %r" % bad


def links_of(sw, links):
    """{(server, worker): [open peers there]} for the given links."""
    out = {l: [] for l in links}
    for p in sw.open():
        if p.link in out:
            out[p.link].append(p)
    return out


def open_welcomed(sw, gws, links, per_link=3, max_clients=400):
    """Opens clients on the gateways gws ({server id: fk.Gateway}, EVENT_CONNECT = 1)
    until every (server, worker) link of `links` holds at least per_link open
    clients (bounded by max_clients in all), learning each SID (and from it the
    link) from its welcome message; returns links_of(sw, links)."""
    while True:
        have = links_of(sw, links)
        need = sorted({l[0] for l in links if len(have[l]) < per_link})
        if not need:
            return have
        assert len(sw.peers) < max_clients, "after %d clients some links still have too " \
            "few: %r" % (len(sw.peers), {l: len(v) for l, v in have.items()})
        fresh = []
        for s in need:
            fresh += sw.connect(gws[s].port, 4)
        sw.wait(lambda: all(p.msgs or p.closed for p in fresh), 10, "welcome messages")
        for p in fresh:
            assert not p.closed, "gateway closed a new client"
            w = p.msgs.pop(0)
            assert w.startswith(b"welcome "), w
            p.sid = w[len(b"welcome "):]
            p.link = sid_link(p.sid)
            server = [s for s, g in gws.items() if g.port == p.port][0]
            assert p.link[0] == server and p.link in links, (p.sid, p.link, server)


class BusCluster:
    """What the bus test clusters share (test_bus.Bus on Redis, natsbus.NatsBus
    on NATS): gateways in self.gws, routers in self.routers, clients in
    self.swarm, on the (server, worker) links in self.links. A subclass stops
    its bus after stop_fooking()."""

    links = ()

    def stop_fooking(self):
        """Closes the clients and stops the gateways and routers: (sanitizer
        reports, each router's exit status or why it failed)."""
        self.swarm.close_all()
        problems = []
        for gw in self.gws.values():
            gw.stop()
            problems += gw.sanitizer_report()
        rcs = []
        for r in self.routers:
            try:
                rcs.append(r.stop())
            except AssertionError as e:
                rcs.append(str(e))
        return problems, rcs

    def logs(self):
        out = []
        for s, gw in self.gws.items():
            out.append("--- gw%d log:\n%s" % (s, (gw.log() + gw.output())[-2500:]))
        for i, r in enumerate(self.routers):
            out.append("--- router %d log:\n%s" % (i, r.read_log()[-1500:]))
        return "\n".join(out)

    def open_clients(self, per_link=3, max_clients=300):
        """Opens clients on the gateways until every (server, worker) holds at least
        per_link of them, learning each SID from its welcome; returns them by link."""
        return open_welcomed(self.swarm, self.gws, self.links, per_link, max_clients)

    def by_link(self):
        return links_of(self.swarm, self.links)
