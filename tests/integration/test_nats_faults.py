"""NATS faults on the real three-server cluster (natsbus.py: three clustered
nats-servers, gateways 1 and 2 with two workers each in front of php-fpm, two
stateless routers).

Who is where at the start: gateway 1's workers on server 0, gateway 2's on
server 1 (each fails over along its list: 1 -> 2 -> 0), router 0 on server 2
(then 0, 1), router 1 on server 0. So killing server 1 moves only gateway 2's
workers, killing server 2 only router 0.

The bus is at-most-once: what was published for a connection while it was away
is lost (and counted: fooking_bus_reconnects_total, the "connected to NATS ...
again after N ms" log line, fooking_bus_publishes_dropped_total). What these
tests hold fooking to: no client is ever closed; after failover every
subscription is back, exactly once; every command reaches exactly its clients
(the marker technique of swarm.py) and every query is exact again, through
both routers; a stream that was running through the fault never shows a
message twice or out of order. Every wait has a deadline.
"""

import http.client
import re
import struct
import threading
import time

import fk
import peers
import rproto as rp
import swarm
from natsbus import GW_ORDER, LINKS, PREFIX, SERVERS, metric, sids, subject
from natsbus import natsbus  # noqa: F401 (the fixture)
from swarm import assert_delivered, new_marker

# src/router_nats.c ROUTER_NATS_QUERY_MS.
QUERY_DEADLINE = 2.0
# libnats reconnects after 100 ms (nbus.c) along the list: a failover, and
# whatever must hold again after it, well within this.
FAILOVER = 5.0


# ---------------------------------------------------------------- probes

def http_get(port, path, timeout=5.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def scrape(port):
    status, body = http_get(port, "/metrics")
    assert status == 200, body
    return body


def bus_metrics(port):
    """(connected, reconnects, dropped) of a gateway's METRICS_PORT or a router's HTTP_PORT."""
    t = scrape(port)
    return (metric(t, "fooking_bus_connected", '{connection="subscribe"}'),
            metric(t, "fooking_bus_reconnects_total"),
            metric(t, "fooking_bus_publishes_dropped_total"))


def connz_names(nats, i):
    """Names of the client connections of running server i (NATS /connz)."""
    return sorted(c.get("name") or "" for c in
                  nats.monitor(i, "/connz?limit=10000")["connections"] or [])


def where(nats):
    """{connection name: [servers it is on]} over the running servers."""
    out = {}
    for i in range(nats.n):
        if nats.alive(i):
            try:
                names = connz_names(nats, i)
            except OSError:
                continue
            for n in names:
                out.setdefault(n, []).append(i)
    return out


def worker_name(link):
    return "fooking gateway %d worker %d" % link


def nats_url(b, i):
    return "nats://127.0.0.1:%d" % b.nats.ports[i]


def log_lines_of(gw, pid, *needles):
    return [l for l in gw.log_lines(*needles) if "[%d]" % pid in l]


NOT_CONNECTED = ("ERROR", b"the bus is not connected")


def drops_logged(proc):
    """Publishes a router's or a gateway's log says were dropped: the totals
    told on reconnect and the ones refused while it thought it was up."""
    n = sum(int(x) for l in proc.log_lines("publishes were dropped while NATS was away")
            for x in re.findall(r"bus: (\d+) publishes were dropped", l))
    return n + len(proc.log_lines("bus: publish on", "dropped ("))


def pump_wait(b, cond, timeout, msg):
    """fk.wait_until that keeps reading every client meanwhile (a load is running)."""
    b.swarm.wait(cond, timeout, msg)


def ask(bk, mtype, s=b""):
    """A query's answer D, or ("ERROR", text)."""
    try:
        return bk.query(mtype, s, timeout=QUERY_DEADLINE + 3)
    except rp.QueryError as e:
        return ("ERROR", e.text)


# ---------------------------------------------------------------- the cluster's state

class World:
    """Sessions on all four worker links, three clients each: c0 and c1 in
    "room", c2 in "side-<link index % 2>"; c0 bound to "solo-<s>-<w>", c1 to
    "shared". What every command and query must give is computed from it."""

    def __init__(self, b):
        self.b = b
        self.links = b.open_clients(3)
        self.peers = [p for l in LINKS for p in self.links[l][:3]]
        self.bks = [rp.Backend(r.port) for r in b.routers]
        bk = self.bks[0]
        self.room, self.side, self.solo, self.shared = [], {0: [], 1: []}, {}, []
        for i, l in enumerate(LINKS):
            c0, c1, c2 = self.links[l][:3]
            self.room += [c0, c1]
            self.side[i % 2].append(c2)
            self.solo[l] = c0
            self.shared.append(c1)
            bk.ch_add(sids([c0, c1]), b"room")
            bk.ch_add(sids([c2]), b"side-%d" % (i % 2))
            bk.bind(sids([c0]), b"solo-%d-%d" % l)
            bk.bind(sids([c1]), b"shared")
        # Only these clients: any other the swarm holds is closed.
        for p in b.swarm.open():
            if p not in self.peers:
                b.swarm.hang_up(p)
        self.wait_subs(timeout=10)
        for i in range(len(self.bks)):
            self.wait_queries(i, timeout=10)

    # -- NATS subscriptions

    def want_subs(self):
        w = {}

        def add(subj, n=1):
            w[subj] = w.get(subj, 0) + n
        for i, l in enumerate(LINKS):
            add(PREFIX + "all")
            add(PREFIX + "q")
            add(PREFIX + "who")
            add(PREFIX + "gw.%d.%d" % l)
            add(subject("ch.", "room"))
            add(subject("ch.", "side-%d" % (i % 2)))
            add(subject("u.", "solo-%d-%d" % l))
            add(subject("u.", "shared"))
        return w

    def subs(self):
        """The gateway workers' subscriptions now (the routers' hb, api and
        inboxes left out)."""
        got = self.b.nats.subscriptions()
        return {k: v for k, v in got.items() if k.startswith(PREFIX)
                and k not in (PREFIX + "hb", PREFIX + "api")}

    def wait_subs(self, timeout=FAILOVER):
        """Waits until the workers hold exactly their subscriptions, each once."""
        want = self.want_subs()
        last = [None]

        def ok():
            last[0] = self.subs()
            return last[0] == want
        try:
            pump_wait(self.b, ok, timeout, "the workers' subscriptions")
        except AssertionError:
            raise AssertionError("subscriptions: wanted %r\ngot %r\n%s"
                                 % (want, last[0], self.b.logs()))

    # -- commands

    def flush(self, timeout=10.0):
        """A SEND_ALL marker through every router, read by every client: what
        was sent before through any router has arrived. Returns {peer: what came
        before the markers} (the markers left out) and leaves the clients empty."""
        marks = [new_marker() for _ in self.bks]
        for bk, m in zip(self.bks, marks):
            bk.send_all(m)
        self.b.swarm.wait(lambda: all(m in p.msgs for p in self.peers for m in marks), timeout,
                          "the flush markers at every client")
        self.b.swarm.quiet()
        out = {}
        for p in self.peers:
            assert not p.closed, "%r closed" % p
            out[p] = [x for x in p.msgs if x not in marks]
            p.msgs.clear()
        return out

    def exact_commands(self, i):
        """One of every kind of command through router i: each reaches exactly
        its clients (marker technique)."""
        bk = self.bks[i]
        tag = b"r%d %s" % (i, new_marker())
        target = [self.links[l][2] for l in LINKS]
        solo = self.solo[(2, 1)]
        bk.send_msg(sids(target), b"msg " + tag)
        bk.ch_pub(b"room", b"room " + tag)
        bk.ch_pub(b"side-1", b"side " + tag)
        bk.send_uid([b"shared"], b"uid " + tag)
        bk.send_uid([b"solo-2-1"], b"solo " + tag)
        bk.send_all(b"all " + tag)
        want = {p: [] for p in self.peers}
        for p in target:
            want[p].append(b"msg " + tag)
        for p in self.room:
            want[p].append(b"room " + tag)
        for p in self.side[1]:
            want[p].append(b"side " + tag)
        for p in self.shared:
            want[p].append(b"uid " + tag)
        want[solo].append(b"solo " + tag)
        for p in self.peers:
            want[p].append(b"all " + tag)
        m = new_marker()
        bk.send_all(m)
        assert_delivered(swarm.received(self.b.swarm, m, peers=self.peers), want)

    # -- queries

    def want_info(self):
        return {"clients": 12, "channels": 3, "uids": 5,
                "gateways": sorted((s, w, 3, 2) for s, w in LINKS)}

    def queries(self, i):
        bk = self.bks[i]
        out = []
        d = ask(bk, rp.INFO)
        if isinstance(d, tuple):
            return d
        info = rp.parse_info(d)
        info["gateways"] = sorted(info["gateways"])
        out.append(info)
        for mtype, s in ((rp.CH_COUNT, b"room"), (rp.CH_COUNT, b"side-0"),
                         (rp.UID_COUNT, b"shared"), (rp.UID_COUNT, b"solo-1-1")):
            d = ask(bk, mtype, s)
            if isinstance(d, tuple):
                return d
            out.append(struct.unpack(">I", d)[0])
        return out

    def want_queries(self):
        return [self.want_info(), 8, 2, 4, 1]

    def wait_queries(self, i, timeout=FAILOVER):
        """Waits until router i answers every query exactly."""
        want, last = self.want_queries(), [None]

        def ok():
            last[0] = self.queries(i)
            return last[0] == want
        try:
            pump_wait(self.b, ok, timeout, "exact answers through router %d" % i)
        except AssertionError:
            raise AssertionError("router %d: wanted %r\nlast %r\n%s"
                                 % (i, want, last[0], self.b.logs()))

    def assert_queries_stay_exact(self, i, seconds):
        """Every answer of router i is exact for `seconds` (nothing left over
        from the fault spoils a later one)."""
        want = self.want_queries()
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end:
            got = self.queries(i)
            assert got == want, "router %d, %.1f s after being exact again, answered %r " \
                "(wanted %r)\n%s" % (i, seconds - (end - time.monotonic()), got, want,
                                     self.b.logs())
            n += 1
            self.b.swarm.pump(0.05)
        return n

    def all_exact(self):
        """Every command and query exact through every router, now."""
        self.flush()
        for i in range(len(self.bks)):
            self.exact_commands(i)
            self.wait_queries(i, timeout=1.0)

    def assert_all_connected(self):
        closed = [p for p in self.b.swarm.peers if p.closed and p in self.peers]
        assert not closed, "clients closed: %r" % closed

    def close(self):
        for bk in self.bks:
            bk.close()


# ---------------------------------------------------------------- a steady load

LOAD_RE = re.compile(rb"^L(\d) (all|room|msg) (\d+)$")


class Load:
    """In a thread, through each router's own backend connection, every `period`
    s: SEND_ALL, CH_PUB "room" and SEND_MSG to `targets`, each numbered
    ("L<router> <kind> <n>"); and in a second thread per router, INFO queries
    back to back (their answers kept with the time they were asked)."""

    def __init__(self, routers, targets, period=0.01, queries=True):
        self.bks = [rp.Backend(r.port) for r in routers]
        self.qbks = [rp.Backend(r.port) for r in routers] if queries else []
        self.targets = sids(targets)
        self.period = period
        self.sent = [0] * len(routers)
        self.answers = [[] for _ in routers]
        self.stopping = threading.Event()
        self.errors = []
        self.threads = [threading.Thread(target=self._commands, daemon=True)]
        self.threads += [threading.Thread(target=self._queries, args=(i,), daemon=True)
                         for i in range(len(self.qbks))]
        for t in self.threads:
            t.start()

    def _commands(self):
        try:
            while not self.stopping.is_set():
                for i, bk in enumerate(self.bks):
                    n = self.sent[i]
                    bk.send_all(b"L%d all %d" % (i, n))
                    bk.ch_pub(b"room", b"L%d room %d" % (i, n))
                    bk.send_msg(self.targets, b"L%d msg %d" % (i, n))
                    self.sent[i] = n + 1
                self.stopping.wait(self.period)
        except Exception as e:  # noqa: BLE001 (reported by stop)
            self.errors.append(repr(e))

    def _queries(self, i):
        bk = self.qbks[i]
        try:
            while not self.stopping.is_set():
                t = time.monotonic()
                d = ask(bk, rp.INFO)
                self.answers[i].append((t, time.monotonic(), d if isinstance(d, tuple)
                                        else rp.parse_info(d)))
        except Exception as e:  # noqa: BLE001
            self.errors.append("queries %d: %r" % (i, e))

    def snapshot(self):
        return list(self.sent)

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(QUERY_DEADLINE + 5)
        for bk in self.bks + self.qbks:
            bk.close()
        assert not self.errors, self.errors

    @staticmethod
    def parse(msgs):
        """{(router, kind): [n, ...]} of the load messages among msgs, in order."""
        out = {}
        for x in msgs:
            m = LOAD_RE.match(x)
            if m:
                out.setdefault((int(m.group(1)), m.group(2).decode()), []).append(int(m.group(3)))
        return out

    @staticmethod
    def kinds(p, room, targets):
        """The streams client p must get."""
        return ["all"] + (["room"] if p in room else []) + (["msg"] if p in targets else [])

    def check(self, got, room, targets):
        """got: {peer: messages}. Each client got only the streams meant for it,
        each in order and none twice; returns how many messages were lost."""
        lost = 0
        for p, msgs in got.items():
            streams = self.parse(msgs)
            for (r, kind), ns in streams.items():
                assert kind in self.kinds(p, room, targets), "%r got L%d %s" % (p, r, kind)
                assert all(a < b for a, b in zip(ns, ns[1:])), \
                    "%r: stream L%d %s out of order or twice: %r" % (p, r, kind, ns)
                assert ns[-1] < self.sent[r]
            for r in range(len(self.bks)):
                for kind in self.kinds(p, room, targets):
                    lost += self.sent[r] - len(streams.get((r, kind), []))
        return lost

    def reached_since(self, peers, snap, room, targets):
        """Every client has a message of each of its streams numbered >= snap."""
        def ok():
            for p in peers:
                streams = self.parse(p.msgs)
                for r in range(len(self.bks)):
                    for kind in self.kinds(p, room, targets):
                        ns = streams.get((r, kind))
                        if not ns or ns[-1] < snap[r]:
                            return False
            return True
        return ok


def start_load(w, rounds=30, **kw):
    """A Load through every router, running `rounds` rounds and reaching every
    client before it returns."""
    targets = [w.links[l][2] for l in LINKS]
    load = Load(w.b.routers, targets, **kw)
    pump_wait(w.b, lambda: min(load.sent) >= rounds, 10, "%d rounds of load" % rounds)
    pump_wait(w.b, load.reached_since(w.peers, [rounds - 1] * len(w.bks), w.room, targets), 10,
              "the load at every client")
    return load, targets


def hold(b, until):
    """Reads every client until the monotonic time `until` (a load keeps running)."""
    pump_wait(b, lambda: time.monotonic() >= until, until - time.monotonic() + 5, "time")


def check_answers(load, since, want_info):
    """Every INFO the load asked through any router after `since` was answered
    exactly; every one before, within the deadline. Returns (exact, all)."""
    n = exact = 0
    for i, answers in enumerate(load.answers):
        assert answers, "no query answered through router %d" % i
        for t, t1, got in answers:
            n += 1
            assert t1 - t <= QUERY_DEADLINE + 1, (i, t1 - t, got)
            if isinstance(got, dict):
                got["gateways"] = sorted(got["gateways"])
            if t >= since:
                assert got == want_info, "router %d, asked %.3f s after the failover, " \
                    "answered %r" % (i, t - since, got)
                exact += 1
    return exact, n


# ---------------------------------------------------------------- 1. a server under load

def test_server_killed_under_load(natsbus):
    """Server 1 (gateway 2's) killed while commands stream through both routers:
    gateway 2's workers fail over to server 2 (the next of their list), their
    subscriptions are back, nobody is closed, the streams go on without a
    duplicate, the gap is counted and logged, and commands and queries are exact
    again; server 1 back, still exact."""
    mports = {s: fk.free_port() for s in SERVERS}
    b = natsbus("kill1", per_gw={s: {"METRICS_PORT": mports[s]} for s in SERVERS})
    for s in SERVERS:
        fk.wait_listening(mports[s], b.gws[s].proc, what="gateway %d METRICS_PORT" % s)
    w = World(b)
    w.all_exact()
    assert bus_metrics(mports[2])[:2] == (2, 0)
    on = where(b.nats)
    for l in LINKS:
        assert on.get(worker_name(l)) == [GW_ORDER[l[0]][0]], on
    pids = peers.workers_by_index(b.gws[2])

    load, targets = start_load(w)
    t0 = time.monotonic()
    b.nats.kill(1)
    lost_re = "bus: lost NATS %s" % nats_url(b, 1)
    again_re = "bus: connected to NATS %s again after" % nats_url(b, 2)
    pump_wait(b, lambda: all(log_lines_of(b.gws[2], pid, again_re) for pid in pids.values()),
              FAILOVER, "gateway 2's workers connected to server 2 again\n" + b.logs())
    took = time.monotonic() - t0
    for pid in pids.values():
        assert log_lines_of(b.gws[2], pid, lost_re), b.gws[2].log()[-3000:]
    gaps = [int(m) for pid in pids.values() for l in log_lines_of(b.gws[2], pid, again_re)
            for m in re.findall(r"again after (\d+) ms", l)]
    assert len(gaps) == 2 and all(g < FAILOVER * 1000 for g in gaps), gaps
    for pid in pids.values():
        for l in log_lines_of(b.gws[2], pid, again_re):
            assert "what was published for this connection meanwhile is lost" in l
    # The monitoring of the servers left: gateway 2's workers on server 2,
    # the others where they were.
    pump_wait(b, lambda: all(where(b.nats).get(worker_name(l)) == [2] for l in LINKS
                             if l[0] == 2), FAILOVER, "gateway 2 on server 2 in /connz")
    on = where(b.nats)
    assert all(on.get(worker_name(l)) == [0] for l in LINKS if l[0] == 1), on
    assert sorted(on.get("fooking router")) == [0, 2], on
    w.wait_subs()
    snap = load.snapshot()
    pump_wait(b, load.reached_since(w.peers, snap, w.room, targets), FAILOVER,
              "every stream at every client again after the failover")
    back = time.monotonic()  # from here on every answer must be exact
    print("failover: workers back %.0f ms after the kill (gaps %r ms)" % (took * 1000, gaps))
    # The load goes on until the deadline of any query caught in the gap has passed.
    hold(b, t0 + QUERY_DEADLINE + 1.0)
    load.stop()
    got = w.flush()
    lost = load.check(got, w.room, targets)
    exact, n = check_answers(load, back, w.want_info())
    print("load: %r rounds sent per router, %d messages lost in the gap; %d of %d INFO "
          "answers asked after the failover, all exact" % (load.sent, lost, exact, n))
    w.assert_all_connected()

    connected, reconnects, dropped = bus_metrics(mports[2])
    assert (connected, reconnects) == (2, 2)
    assert dropped == drops_logged(b.gws[2])
    assert bus_metrics(mports[1]) == (2, 0, 0)
    for i in range(len(w.bks)):
        w.exact_commands(i)
        w.wait_queries(i)
        w.assert_queries_stay_exact(i, 0.5)

    # Server 1 back: nobody moves back, nothing doubles, all still exact.
    b.nats.start_one(1)
    b.nats.wait_routed()
    w.wait_subs()
    assert all(where(b.nats).get(worker_name(l)) == [2] for l in LINKS if l[0] == 2)
    w.all_exact()
    w.assert_all_connected()
    assert bus_metrics(mports[2])[:2] == (2, 2)
    w.close()


# ---------------------------------------------------------------- 2. a router's server

def test_router_server_killed(natsbus):
    """Server 2, router 0's, killed while both routers carry a load: router 0
    fails over to server 0, a query it takes while away is answered ERROR "the
    bus is not connected" (if one comes in the gap at all), and afterwards every
    command and query through it is exact; its /metrics count the reconnect and
    the publishes it dropped."""
    hp = fk.free_port()
    b = natsbus("kill2", per_router={0: {"HTTP_PORT": hp, "HTTP_HOST": "127.0.0.1"}})
    fk.wait_listening(hp, b.routers[0].proc, what="router 0 HTTP_PORT")
    w = World(b)
    w.all_exact()
    assert bus_metrics(hp) == (1, 0, 0)
    assert where(b.nats)["fooking router"] == [0, 2]
    r0 = b.routers[0]

    load, targets = start_load(w)
    t0 = time.monotonic()
    b.nats.kill(2)
    again = "bus: connected to NATS %s again after" % nats_url(b, 0)
    pump_wait(b, lambda: r0.log_lines(again), FAILOVER,
              "router 0 connected to server 0 again\n" + r0.read_log()[-3000:])
    assert r0.log_lines("bus: lost NATS %s" % nats_url(b, 2))
    assert "what was published for this connection meanwhile is lost" in r0.log_lines(again)[0]
    pump_wait(b, lambda: where(b.nats).get("fooking router") == [0, 0], FAILOVER,
              "both routers on server 0 in /connz")
    pump_wait(b, lambda: all(b.numsub(PREFIX + k) == 2 for k in ("hb", "api")), FAILOVER,
              "the routers' subscriptions")
    w.wait_subs()
    snap = load.snapshot()
    pump_wait(b, load.reached_since(w.peers, snap, w.room, targets), FAILOVER,
              "router 0's streams at every client again")
    back = time.monotonic()
    hold(b, t0 + QUERY_DEADLINE + 1.0)
    load.stop()
    got = w.flush()
    lost = load.check(got, w.room, targets)
    exact, n = check_answers(load, back, w.want_info())
    # Through router 0 each answer is exact or, in the gap, ERROR (a query out
    # when its connection went is answered so too: its answers cannot come);
    # router 1 saw nothing of it.
    refused = [a for a in load.answers[0] if a[2] == NOT_CONNECTED]
    wrong = [(round(t - t0, 3), round(t1 - t, 3), a) for t, t1, a in load.answers[0]
             if a not in (w.want_info(), NOT_CONNECTED)]
    assert not wrong, "router 0 answered INFO neither exactly nor ERROR: %r" % wrong[:5]
    assert all(a == w.want_info() for _, _, a in load.answers[1])
    assert all(t1 - t0 < FAILOVER for t, t1, a in refused)
    print("router failover %.0f ms; %d messages lost; %d of %d answers after it exact; %d "
          "answered ERROR in the gap" % ((back - t0) * 1000, lost, exact, n, len(refused)))
    w.assert_all_connected()
    for i in range(len(w.bks)):
        w.exact_commands(i)
        w.wait_queries(i)
    w.assert_queries_stay_exact(0, 0.5)

    connected, reconnects, dropped = bus_metrics(hp)
    assert (connected, reconnects) == (1, 1)
    assert dropped == drops_logged(r0), r0.read_log()[-3000:]
    w.close()


# ---------------------------------------------------------------- 3. the whole cluster

def echo(b, peers_, text=b"ping"):
    """Each client sends text and gets it back from php-fpm: served without NATS."""
    for p in peers_:
        p.sock.setblocking(True)
        p.sock.sendall(struct.pack(">I", len(text)) + text)
        p.sock.setblocking(False)
    b.swarm.wait(lambda: all(text in p.msgs for p in peers_), 10, "the echoes")
    for p in peers_:
        p.msgs.remove(text)


def wait_delivery(w, timeout):
    """Flushes (a marker through every router to every client) until one gets
    through whole: the bus carries everything again."""
    def ok():
        try:
            w.flush(timeout=0.5)
            return True
        except AssertionError:
            return False
    fk.wait_until(ok, timeout, interval=0.0, msg="delivery through both routers\n" + w.b.logs())
    w.b.swarm.quiet()
    for p in w.peers:
        p.msgs.clear()


def test_all_servers_down_and_back(natsbus):
    """Every NATS server killed, then started again: the clients stay (and are
    served by the backend meanwhile), queries are refused ERROR, the commands
    sent meanwhile are counted as dropped on the router; then the workers and
    routers reconnect and everything is exact."""
    mports = {s: fk.free_port() for s in SERVERS}
    hp = fk.free_port()
    b = natsbus("all", per_gw={s: {"METRICS_PORT": mports[s]} for s in SERVERS},
                per_router={0: {"HTTP_PORT": hp, "HTTP_HOST": "127.0.0.1"}})
    for s in SERVERS:
        fk.wait_listening(mports[s], b.gws[s].proc, what="gateway %d METRICS_PORT" % s)
    fk.wait_listening(hp, b.routers[0].proc, what="router 0 HTTP_PORT")
    w = World(b)
    w.all_exact()
    r0 = b.routers[0]

    # SIGKILL to all three first, then reap each: down together (a connection
    # may still hop to a server in its last moment: counted as a reconnect).
    for i in range(b.nats.n):
        b.nats.procs[i].kill()
    for i in range(b.nats.n):
        b.nats.kill(i)
    t0 = time.monotonic()
    fk.wait_until(lambda: all(bus_metrics(mports[s])[0] == 0 for s in SERVERS)
                  and bus_metrics(hp)[0] == 0
                  and b.routers[1].log_lines("bus: lost NATS"), FAILOVER,
                  msg="every bus connection down")
    echo(b, [w.links[l][0] for l in LINKS])
    for i in range(len(w.bks)):
        assert w.queries(i) == NOT_CONNECTED
    dropped = bus_metrics(hp)[2]
    for k in range(5):
        w.bks[0].send_all(b"lost %d" % k)
        w.bks[0].ch_pub(b"room", b"lost room %d" % k)
    fk.wait_until(lambda: bus_metrics(hp)[2] == dropped + 10, 5,
                  msg="the router counting its 10 commands dropped (from %d)" % dropped)
    w.assert_all_connected()

    for i in range(b.nats.n):
        b.nats.start_one(i)
    b.nats.wait_routed()
    t1 = time.monotonic()
    def reconnected(gw):
        """Each worker's last bus log line says it is connected again."""
        for pid in peers.workers_by_index(gw).values():
            bus = [l for l in gw.log_lines("[%d] " % pid, "bus: ")
                   if "lost NATS" in l or "connected to NATS" in l]
            if not bus or "connected to NATS" not in bus[-1]:
                return False
        return True
    fk.wait_until(lambda: all(bus_metrics(mports[s])[0] == 2 and reconnected(b.gws[s])
                              for s in SERVERS) and bus_metrics(hp)[0] == 1
                  and "connected to NATS" in [l for l in b.routers[1].log_lines("bus: ")
                                              if "lost NATS" in l or "connected to NATS" in l][-1],
                  FAILOVER, msg="every bus connection up again\n" + b.logs())
    # Each reconnect counted, and logged with its gap.
    for s in SERVERS:
        n = len(b.gws[s].log_lines("bus: connected to NATS", "again after"))
        assert bus_metrics(mports[s])[1:] == (n, drops_logged(b.gws[s])) and n >= 2, (s, n)
    assert bus_metrics(hp)[1] == len(r0.log_lines("bus: connected to NATS", "again after")) >= 1
    fk.wait_until(lambda: all(b.numsub(PREFIX + k) == 2 for k in ("hb", "api")), FAILOVER,
                  msg="the routers' subscriptions")
    w.wait_subs()
    wait_delivery(w, FAILOVER)
    print("all servers down %.2f s; everything delivered again %.2f s after they were "
          "routed" % (t1 - t0, time.monotonic() - t1))
    for i in range(len(w.bks)):
        w.exact_commands(i)
        w.wait_queries(i)
    w.assert_all_connected()
    # Told, and counted: what the router dropped while away.
    told = r0.log_lines("publishes were dropped while NATS was away")
    assert told and int(re.search(r"bus: (\d+) publishes", told[-1]).group(1)) >= 10, told
    assert bus_metrics(hp)[2] == drops_logged(r0) >= 10
    w.close()


# ---------------------------------------------------------------- 4. no server at the start

def test_gateway_started_without_nats(natsbus):
    """A gateway (and a router) started while no NATS server runs: the gateway
    takes clients and serves them from the backend, the router refuses queries
    ERROR; once the servers are up both connect by themselves (a first
    connection, not a reconnect) and commands and queries are exact."""
    mp = fk.free_port()
    b = natsbus("late", start=False, per_gw={1: {"METRICS_PORT": mp}})
    gw = b.start_gateway(1)
    fk.wait_listening(mp, gw.proc, what="gateway 1 METRICS_PORT")
    r = b.start_router()
    links = [l for l in LINKS if l[0] == 1]
    gw.wait_log("bus: NATS %s not reachable yet; retrying" % nats_url(b, 0))
    r.wait_log("bus: NATS %s not reachable yet; retrying" % nats_url(b, 2))
    assert bus_metrics(mp)[:2] == (0, 0)
    have = swarm.open_welcomed(b.swarm, b.gws, links, per_link=2)
    clients = [p for l in links for p in have[l]]
    echo(b, clients)
    bk = rp.Backend(r.port)
    assert ask(bk, rp.INFO) == NOT_CONNECTED

    b.nats.start()
    fk.wait_until(lambda: bus_metrics(mp)[:2] == (2, 0), FAILOVER,
                  msg="gateway 1's workers connected\n" + b.logs())
    # Each worker on whichever server its retry found up first.
    ups = gw.log_lines("bus: connected to NATS")
    assert sorted(re.search(r"\[(\d+)\]", l).group(1) for l in ups) == \
        sorted(str(p) for p in gw.worker_pids()), ups
    assert not gw.log_lines("again after")
    r.wait_log("bus: connected to NATS", timeout=FAILOVER)
    assert not r.log_lines("again after")

    def subscribed():
        subs = b.nats.subscriptions()
        return all(subs.get(PREFIX + k, 0) == 2 for k in ("all", "q", "who")) \
            and all(subs.get(PREFIX + "gw.%d.%d" % l, 0) == 1 for l in links) \
            and subs.get(PREFIX + "hb", 0) == 1
    fk.wait_until(subscribed, FAILOVER, msg="gateway 1 and the router subscribed")
    # More clients come, and commands reach exactly theirs.
    have = swarm.open_welcomed(b.swarm, b.gws, links, per_link=3)
    clients = b.swarm.open()
    targets = [have[l][0] for l in links]
    bk.ch_add(sids(targets), b"late")
    b.wait_channel("late", 2)
    m = new_marker()
    bk.ch_pub(b"late", b"to the late room")
    bk.send_all(m)
    assert_delivered(swarm.received(b.swarm, m), {p: [b"to the late room"] for p in targets})
    want = {"clients": len(clients), "channels": 1, "uids": 0,
            "gateways": sorted((s, wk, len(have[(s, wk)]), 1) for s, wk in links)}

    def info():
        d = ask(bk, rp.INFO)
        if isinstance(d, tuple):
            return d
        i = rp.parse_info(d)
        i["gateways"] = sorted(i["gateways"])
        return i
    fk.wait_equal("INFO through the router", info, want, timeout=FAILOVER)
    assert bk.count(rp.CH_COUNT, b"late") == 2
    bk.close()
