"""Redis as the message bus: BUS = "redis://..." on gateways and routers.

A real redis-server (started here on a free loopback port, no persistence, stopped
by pid), two gateways (SERVER_ID 1 and 2, two workers each, BUS set, no router)
in front of php-fpm running tests/backends/echo.php, and two stateless routers
(ROUTER = 1, BUS set) on the same bus. EVENT_CONNECT = 1 makes every client
receive "welcome <SID>" first: that is how a test learns its clients' SIDs, and
from each SID which (server, worker) holds it.

Commands go through either router (rproto), and straight onto Redis through the
Redis transports of the client libraries (example/clients: PHP FookingRedis,
Go fooking.Redis); the tests assert what every client received. "Nothing else
arrived" is asserted with a marker: a SEND_ALL published after the command by
the same connection reaches each worker after the command (Redis delivers one
subscriber's messages in publish order), so what a client got before the marker
is what the command did; a short quiet period after it catches late duplicates.

The first tests need no fooking at all: they check the bytes the libraries
publish (a Python subscriber on a bare redis-server) and what they read out of
presence keys set by hand.
"""

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

import fk
import peers
import rproto as rp
import swarm
from peers import (HB_EVERY, HB_TTL, REDIS_SERVER, RESYNC_DEADLINE, RedisServer, Router,
                   norm_info, ops_json, worker_pid)
from swarm import Swarm, assert_delivered, new_marker, sid_link
from conftest import base_params
from v2util import make_sid

redis = pytest.importorskip("redis")

ROOT = fk.REPO
PHP_REDIS_LIB = ROOT / "example" / "clients" / "php" / "FookingRedis.php"

PREFIX = "fkbus:"          # BUS_PREFIX of the cluster (not the default, to see it is used)
SERVERS = (1, 2)
WORKERS = 2
LINKS = [(s, w) for s in SERVERS for w in range(WORKERS)]




# ---------------------------------------------------------------- redis-server

@pytest.fixture(scope="module")
def bare_redis(tmp_path_factory):
    """A redis-server of its own for the library checks (no fooking)."""
    if not os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server not installed")
    srv = RedisServer(tmp_path_factory.mktemp("bare-redis")).start()
    yield srv
    srv.stop()


# ---------------------------------------------------------------- library drivers

PHP_DRIVER = r"""<?php
require $argv[1];
$r = new FookingRedis();
$r->connect($argv[2], $argv[3]);
$ops = json_decode(stream_get_contents(STDIN), true);
$out = [];
foreach ($ops as $o) {
    $msg = base64_decode($o['msg'] ?? '');
    try {
        switch ($o['op']) {
        case 'kick': $r->kick($o['sids']); $out[] = null; break;
        case 'send_msg': $r->sendMsg($o['sids'], $msg); $out[] = null; break;
        case 'send_all': $r->sendAll($msg); $out[] = null; break;
        case 'ch_add': $r->chAdd($o['sids'], $o['ch']); $out[] = null; break;
        case 'ch_del': $r->chDel($o['sids'], $o['ch']); $out[] = null; break;
        case 'ch_pub': $r->chPub($o['ch'], $msg); $out[] = null; break;
        case 'online': $out[] = $r->online($o['sid']); break;
        case 'info': $out[] = $r->info(); break;
        default: throw new Exception('unknown op ' . $o['op']);
        }
    } catch (InvalidArgumentException $e) {
        $out[] = ['error' => $e->getMessage()];
    }
}
$r->close();
echo json_encode($out), "\n";
"""

GO_DRIVER = r"""package main

import (
	"encoding/json"
	"fmt"
	"os"

	"fooking"
)

type op struct {
	Op   string
	Sids []string
	Sid  string
	Msg  []byte
	Ch   string
}

func main() {
	var ops []op
	if err := json.NewDecoder(os.Stdin).Decode(&ops); err != nil {
		panic(err)
	}
	r, err := fooking.ConnectRedis(os.Args[1], os.Args[2])
	if err != nil {
		panic(err)
	}
	defer r.Close()
	out := []interface{}{}
	for _, o := range ops {
		var res interface{}
		switch o.Op {
		case "kick":
			err = r.Kick(o.Sids)
		case "send_msg":
			err = r.SendMsg(o.Sids, o.Msg)
		case "send_all":
			err = r.SendAll(o.Msg)
		case "ch_add":
			err = r.ChAdd(o.Sids, o.Ch)
		case "ch_del":
			err = r.ChDel(o.Sids, o.Ch)
		case "ch_pub":
			err = r.ChPub(o.Ch, o.Msg)
		case "online":
			res, err = r.Online(o.Sid)
		case "info":
			var i *fooking.Info
			i, err = r.Info()
			if err == nil {
				gws := []map[string]int{}
				for _, g := range i.Gateways {
					gws = append(gws, map[string]int{"server": g.Server, "worker": g.Worker,
						"clients": g.Clients, "channels": g.Channels})
				}
				res = map[string]interface{}{"clients": i.Clients, "channels": i.Channels,
					"gateways": gws}
			}
		default:
			panic("unknown op " + o.Op)
		}
		if err != nil {
			// Argument errors are reported like PHP's InvalidArgumentException.
			res = map[string]string{"error": err.Error()}
			err = nil
		}
		out = append(out, res)
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}
"""


@pytest.fixture(scope="module")
def php_driver(tmp_path_factory):
    if not shutil.which("php"):
        pytest.skip("php-cli not installed")
    p = subprocess.run(["php", "-r", "exit(class_exists('Redis') ? 0 : 1);"])
    if p.returncode != 0:
        pytest.skip("phpredis (php-redis) not installed")
    d = tmp_path_factory.mktemp("bus-phpdriver")
    script = d / "drive.php"
    script.write_text(PHP_DRIVER)
    return str(script)


@pytest.fixture(scope="module")
def go_driver(tmp_path_factory):
    return peers.go_build(tmp_path_factory.mktemp("bus-godriver"), GO_DRIVER)


class Lib:
    """The Redis transport of one client library, driven by a list of operations:
    ("kick", sids), ("send_msg", sids, msg), ("send_all", msg), ("ch_add", sids, ch),
    ("ch_del", sids, ch), ("ch_pub", ch, msg), ("online", sid), ("info",).
    All operations of one run() use one library object (one connection); run()
    returns one result per operation (None for commands, {'error': ...} for an
    argument error, bool for online, a normalized dict for info)."""

    def __init__(self, kind, driver, url, prefix):
        self.kind, self.driver, self.url, self.prefix = kind, driver, url, prefix
        self.name = kind

    def run(self, ops):
        if self.kind == "php":
            cmd = ["php", self.driver, str(PHP_REDIS_LIB), self.url, self.prefix]
        else:
            cmd = [self.driver, self.url, self.prefix]
        p = subprocess.run(cmd, input=ops_json(ops), capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0, "%s driver failed:\n%s%s" % (self.kind, p.stdout, p.stderr)
        out = json.loads(p.stdout)
        assert len(out) == len(ops), out
        return [norm_info(r) if o[0] == "info" and isinstance(r, dict) and "error" not in r
                else r for o, r in zip(ops, out)]


class RouterT:
    """The router transport (rproto.Backend, one connection per run()); same
    operations as Lib except online."""

    def __init__(self, router, name):
        self.router, self.name = router, name

    def run(self, ops):
        bk = rp.Backend(self.router.port)
        out = []
        try:
            for o in ops:
                name, args = o[0], o[1:]
                if name == "info":
                    i = bk.info()
                    i["gateways"] = sorted(i["gateways"])
                    # Bus routers say "uids:" too (test_bus_v2.py checks it);
                    # the libraries' info() has no such count.
                    assert isinstance(i.pop("uids"), int), i
                    out.append(i)
                else:
                    assert name != "online", "the router protocol has no online"
                    getattr(bk, name)(*args)
                    out.append(None)
        finally:
            bk.close()
        return out


# ---------------------------------------------------------------- library checks

def collect_published(srv, run, ops, end=b"-- end --"):
    """Runs ops (with a SEND_ALL `end` appended) while a Python subscriber listens to
    every channel; returns ([(channel, message), ...] before the end marker, results)."""
    r = srv.client()
    ps = r.pubsub(ignore_subscribe_messages=True)
    ps.psubscribe("*")
    fk.wait_until(lambda: r.execute_command("PUBSUB", "NUMPAT") >= 1, 5, msg="psubscribe")
    results = run(ops + [("send_all", end)])
    got = []
    deadline = time.monotonic() + 10
    while True:
        m = ps.get_message(timeout=max(0.0, deadline - time.monotonic()))
        if m is None:
            assert time.monotonic() < deadline, "end marker never published; got %r" % got
            continue
        got.append((m["channel"], m["data"]))
        if m["data"] == rp.encode(rp.SEND_ALL, b"", end):
            break
    ps.close()
    r.close()
    return got[:-1], results[:-1]


@pytest.mark.parametrize("kind", ["php", "go"])
def test_library_publishes_router_messages(bare_redis, request, kind):
    """Each command becomes the router-protocol message a router would get, on the
    channel of its destination: SIDs grouped by the gateway worker in them (first
    appearance order, at most 4095 per message), SEND_ALL on <prefix>all, CH_PUB on
    <prefix>ch:<name>; bad arguments publish nothing."""
    driver = request.getfixturevalue("%s_driver" % kind)
    prefix = "lib-%s:" % kind
    lib = Lib(kind, driver, bare_redis.url, prefix)
    a, a2, c = make_sid(1, 0, 1), make_sid(1, 0, 2), make_sid(2, 1, 3)
    top = make_sid(8191, 31, 4)
    msg = b"m\x00\xff\r\n"
    many = [make_sid(1, 0, 1000 + i) for i in range(5000)]
    few = [make_sid(2, 1, 9000 + i) for i in range(3)]
    ops = [
        ("kick", [a, c]),
        ("send_msg", [a, c, top, a2], msg),
        ("send_all", msg),
        ("ch_add", [c, a], "room"),
        ("ch_del", [a], "room"),
        ("ch_pub", "salle \xe9", msg),
        ("send_msg", few[:1] + many + few[1:], b"bulk"),
        ("send_msg", [], b"nobody"),
        ("send_msg", ["0123456789abcdeg"], b"not hex"),
        ("send_msg", ["0123456789abcde"], b"short"),
        ("ch_add", [a], ""),
        ("ch_pub", "x" * 256, b"long channel"),
    ]
    got, results = collect_published(bare_redis, lib.run, ops)
    P = prefix.encode()
    gw = lambda s, w: P + b"gw:%d:%d" % (s, w)  # noqa: E731
    expect = [
        (gw(1, 0), rp.encode(rp.KICK, a)),
        (gw(2, 1), rp.encode(rp.KICK, c)),
        (gw(1, 0), rp.encode(rp.SEND_MSG, a + a2, msg)),
        (gw(2, 1), rp.encode(rp.SEND_MSG, c, msg)),
        (gw(8191, 31), rp.encode(rp.SEND_MSG, top, msg)),
        (P + b"all", rp.encode(rp.SEND_ALL, b"", msg)),
        (gw(2, 1), rp.encode(rp.CH_ADD, c, b"room")),
        (gw(1, 0), rp.encode(rp.CH_ADD, a, b"room")),
        (gw(1, 0), rp.encode(rp.CH_DEL, a, b"room")),
        (P + "ch:salle \xe9".encode(), rp.encode(rp.CH_PUB, "salle \xe9".encode(), msg)),
        (gw(2, 1), rp.encode(rp.SEND_MSG, b"".join(few), b"bulk")),
        (gw(1, 0), rp.encode(rp.SEND_MSG, b"".join(many[:4095]), b"bulk")),
        (gw(1, 0), rp.encode(rp.SEND_MSG, b"".join(many[4095:]), b"bulk")),
    ]
    assert [c for c, _ in got] == [c for c, _ in expect]
    for i, (g, e) in enumerate(zip(got, expect)):
        assert g == e, "message %d: got %r..., expected %r..." % (i, g[1][:40], e[1][:40])
    assert results[:8] == [None] * 8
    assert all(isinstance(r, dict) and "error" in r for r in results[8:]), results[8:]


@pytest.mark.parametrize("kind", ["php", "go"])
def test_library_presence(bare_redis, request, kind):
    """online() and info() read the presence keys: online = SID in the set of the
    worker named by the SID and that worker's heartbeat alive; info() = the
    registered workers with a heartbeat (the router's INFO script), distinct
    channels over their channel sets. Glob characters in the prefix are plain
    bytes."""
    driver = request.getfixturevalue("%s_driver" % kind)
    prefix = "p[1]*%s:" % kind
    r = bare_redis.client()
    on, off, orphan = make_sid(1, 0, 1), make_sid(1, 0, 2), make_sid(5, 5, 3)
    late = make_sid(8191, 31, 4)
    r.set(prefix + "hb:1:0", "3 2", ex=HB_TTL)
    r.set(prefix + "hb:2:1", "1 1", ex=HB_TTL)
    r.set(prefix + "hb:8191:31", "0 0", ex=HB_TTL)
    r.sadd(prefix + "sids:1:0", on)
    r.sadd(prefix + "sids:5:5", orphan)           # a gateway gone without a heartbeat
    r.sadd(prefix + "chans:1:0", "room", "x")
    r.sadd(prefix + "chans:2:1", "room")
    r.sadd(prefix + "chans:5:5", "ghost")         # not counted: no heartbeat
    r.sadd(prefix + "workers", "1:0", "2:1", "8191:31", "5:5")
    # Keys an unescaped pattern would match ("p1...:hb:*"), and unrelated ones.
    r.set("p1zz%s:hb:7:7" % kind, "100 100")
    r.set(prefix + "hbx:3:3", "100 100")
    lib = Lib(kind, driver, bare_redis.url, prefix)
    res = lib.run([("online", on), ("online", off), ("online", orphan), ("online", late),
                   ("online", "zz"), ("info",)])
    assert res[:4] == [True, False, False, False]
    assert isinstance(res[4], dict) and "error" in res[4]
    assert res[5] == {"clients": 4, "channels": 2,
                      "gateways": [(1, 0, 3, 2), (2, 1, 1, 1), (8191, 31, 0, 0)]}
    # No gateway at all.
    empty = Lib(kind, driver, bare_redis.url, "nothing-here:").run([("info",)])
    assert empty == [{"clients": 0, "channels": 0, "gateways": []}]
    r.close()


def test_library_password_and_db(request, tmp_path):
    """redis://:password@host:port/db: AUTH and SELECT (keys are read from that db;
    pub/sub is server-wide)."""
    srv = RedisServer(tmp_path / "auth-redis")
    srv.start()
    try:
        r = srv.client()
        r.config_set("requirepass", "s3cr:t")
        r.close()
        r = redis.Redis(host="127.0.0.1", port=srv.port, password="s3cr:t", db=3)
        r.set("fooking:hb:4:2", "7 0", ex=HB_TTL)
        r.sadd("fooking:workers", "4:2")
        url = "redis://:%s@127.0.0.1:%d/3" % ("s3cr%3At", srv.port)
        for kind in ("php", "go"):
            driver = request.getfixturevalue("%s_driver" % kind)
            got = Lib(kind, driver, url, "fooking:").run([("info",)])
            assert got == [{"clients": 7, "channels": 0, "gateways": [(4, 2, 7, 0)]}], kind
            bad = [driver] if kind == "go" else ["php", driver, str(PHP_REDIS_LIB)]
            p = subprocess.run(bad + ["redis://:wrong@127.0.0.1:%d" % srv.port, "fooking:"],
                               input="[]", capture_output=True, text=True, timeout=30)
            assert p.returncode != 0, kind
        r.close()
    finally:
        srv.stop()


# ---------------------------------------------------------------- clients

# ---------------------------------------------------------------- the cluster

class Bus(swarm.BusCluster):
    """redis-server, two gateways and two routers on one bus."""

    def __init__(self, tmp, php):
        self.tmp = Path(tmp)
        self.php = php
        self.redis = RedisServer(self.tmp / "redis")
        self.gws = {}
        self.routers = []
        self.dead_routers = []
        self.swarm = Swarm()
        self.rc = None

    def start(self):
        self.redis.start()
        self.rc = self.redis.client()
        for s in SERVERS:
            p = base_params()
            p["EVENT_LOG"] = str(self.tmp / "events.log")
            gw = peers.Gateway(self.tmp / ("gw%d" % s), name="gw%d" % s, SERVER_ID=s,
                            WORKER_NUM=WORKERS, BUS=self.redis.url, BUS_PREFIX=PREFIX,
                            BACKEND_SERVER=self.php.addr, FASTCGI_PREFIX="",
                            FASTCGI_PARAMS=p, EVENT_CONNECT=1, LOG_LEVEL=3)
            self.gws[s] = gw
            gw.start()
        for i in range(2):
            self.start_router()
        self.wait_subscribed()
        return self

    def start_router(self):
        d = self.tmp / ("router%d" % (len(self.routers) + len(self.dead_routers)))
        d.mkdir()
        r = Router(d, BUS=self.redis.url, BUS_PREFIX=PREFIX).start()
        self.routers.append(r)
        return r

    links = LINKS

    def stop(self):
        problems, rcs = self.stop_fooking()
        if self.rc is not None:
            self.rc.close()
        self.redis.stop()
        return problems, rcs

    # -- redis side

    def numsub(self, name):
        return self.rc.execute_command("PUBSUB", "NUMSUB", PREFIX + name)[1]

    def wait_subscribed(self, timeout=10.0):
        """Every gateway worker listens on <prefix>all and on its own channel."""
        def ok():
            chans = {c.decode() for c in self.rc.execute_command("PUBSUB", "CHANNELS",
                                                                 PREFIX + "gw:*")}
            return (self.numsub("all") == len(LINKS)
                    and chans >= {PREFIX + "gw:%d:%d" % l for l in LINKS})
        fk.wait_until(ok, timeout, msg="the four gateway workers to subscribe\n" + self.logs())

    def wait_channel(self, channel, links, timeout=5.0):
        """Waits until exactly `links` worker subscriptions exist for the channel."""
        fk.wait_until(lambda: self.numsub("ch:" + channel) == links, timeout,
                      msg="%d subscriber(s) of channel %r (have %d)"
                      % (links, channel, self.numsub("ch:" + channel)))

    def members(self, key):
        return {m for m in self.rc.smembers(PREFIX + key)}

    def publish(self, mtype, s=b"", d=b"", name="all"):
        """Publishes one message straight onto the bus, as a library would."""
        return self.rc.publish(PREFIX + name, rp.encode(mtype, s, d))


def received(bus, marker, timeout=10.0):
    return swarm.received(bus.swarm, marker, timeout=timeout, closed_ok=True)


def sids(peers):
    return [p.sid for p in peers]


@pytest.fixture(scope="module")
def bus(php, tmp_path_factory):
    if not os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server not installed")
    b = Bus(tmp_path_factory.mktemp("bus"), php)
    try:
        b.start()
        yield b
    finally:
        problems, rcs = b.stop()
    if problems:
        pytest.fail("sanitizer reports from fooking:\n" + "\n".join(problems[:20]))
    assert all(rc == 0 for rc in rcs), "a router did not exit cleanly on SIGTERM: %r" % rcs


def transport(request, bus, kind):
    if kind.startswith("router"):
        i = int(kind[-1])
        return RouterT(bus.routers[i], kind)
    driver = request.getfixturevalue("%s_driver" % kind)
    return Lib(kind, driver, bus.redis.url, PREFIX)


# ---------------------------------------------------------------- the cluster tests

@pytest.mark.parametrize("kind", ["router0", "router1", "php", "go"])
def test_commands_reach_exactly_their_clients(bus, request, kind):
    """Every command, sent through either router or straight onto Redis by a library,
    reaches exactly the clients it names on all four worker links: no miss, no
    duplicate, nothing to anyone else."""
    t = transport(request, bus, kind)
    links = bus.open_clients(3)
    A, B, C, D = (links[l] for l in LINKS)
    tag = kind.encode()
    room = "room-" + kind

    # SEND_MSG over all four links (two SIDs on one), plus SIDs nobody holds: one on a
    # live worker, one on a gateway that does not exist.
    msg = b"to some \x00\xff\r\n " + tag
    targets = [A[0], A[1], B[0], C[2], D[1]]
    unknown = [make_sid(1, 0, 7), make_sid(9, 9, 9)]
    m = new_marker()
    t.run([("send_msg", sids(targets) + unknown, msg), ("send_all", m)])
    assert_delivered(received(bus, m), {p: [msg] for p in targets})

    # SEND_ALL: everyone once.
    msg = b"to all " + tag
    m = new_marker()
    t.run([("send_all", msg), ("send_all", m)])
    assert_delivered(received(bus, m), {p: [msg] for p in bus.swarm.open()})

    # Channels: members on three of the four links.
    members = [A[0], B[1], D[0], D[2]]
    t.run([("ch_add", sids(members), room)])
    bus.wait_channel(room, 3)
    fk.wait_until(lambda: room.encode() in bus.members("chans:2:1"), 5,
                  msg="%r in chans:2:1" % room)
    msg = b"to the room " + tag
    m = new_marker()
    t.run([("ch_pub", room, msg), ("send_all", m)])
    assert_delivered(received(bus, m), {p: [msg] for p in members})

    # CH_DEL then CH_PUB at once: the worker sees them in that order.
    gone = [A[0], D[0]]
    msg = b"fewer " + tag
    m = new_marker()
    t.run([("ch_del", sids(gone), room), ("ch_pub", room, msg), ("send_all", m)])
    assert_delivered(received(bus, m), {B[1]: [msg], D[2]: [msg]})
    bus.wait_channel(room, 2)
    fk.wait_until(lambda: room.encode() not in bus.members("chans:1:0"), 5,
                  msg="%r gone from chans:1:0" % room)
    assert room.encode() in bus.members("chans:2:1")
    t.run([("ch_del", sids([B[1], D[2]]), room)])
    bus.wait_channel(room, 0)

    # More than 4095 SIDs in one call: split, and still once per client.
    many = [make_sid(1, 0, 1000 + i) for i in range(5000)]
    lucky = [A[2], C[0], D[1]]
    m = new_marker()
    t.run([("send_msg", many[:10] + sids(lucky) + many[10:], b"bulk " + tag),
           ("send_all", m)])
    assert_delivered(received(bus, m), {p: [b"bulk " + tag] for p in lucky})

    # KICK on two links: those two are cut, nobody else.
    kicked = [A[1], C[1]]
    m = new_marker()
    t.run([("kick", sids(kicked)), ("send_all", m)])
    bus.swarm.wait(lambda: all(p.closed for p in kicked), 5, "the kicked clients to be cut")
    got = received(bus, m)
    assert not set(got) & set(kicked)
    assert_delivered(got, {})
    for p in kicked:
        fk.wait_until(lambda: p.sid not in bus.members("sids:%d:%d" % p.link), 5,
                      msg="kicked %r to leave its sids set" % p)

    if isinstance(t, Lib):
        assert t.run([("online", A[0].sid), ("online", kicked[0].sid),
                      ("online", make_sid(1, 0, 7))]) == [True, False, False]


def expected_info(bus, channels):
    """INFO as it must be: clients per link from our open clients, channels per link
    from `channels` ({link: n}), total = distinct channels."""
    links = bus.by_link()
    gws = sorted((l[0], l[1], len(links[l]), channels.get(l, 0)) for l in LINKS)
    return gws, sum(len(v) for v in links.values())


def test_info_through_either_router_and_the_libraries(bus, request):
    """INFO through either router counts every client and lists the four gateway
    workers with their clients and channels; the libraries' info() says the same."""
    links = bus.open_clients(3)
    A, B, C, D = (links[l] for l in LINKS)
    r0 = RouterT(bus.routers[0], "router0")
    r0.run([("ch_add", sids([A[0], C[0]]), "info-a"), ("ch_add", sids([A[1]]), "info-b")])
    gws, nclients = expected_info(bus, {(1, 0): 2, (2, 0): 1})
    want = {"clients": nclients, "channels": 2, "gateways": gws}
    ts = [RouterT(r, "router%d" % i) for i, r in enumerate(bus.routers)]
    ts += [transport(request, bus, k) for k in ("php", "go")]
    for t in ts:
        last = [None]

        def check():
            last[0] = t.run([("info",)])[0]
            return last[0] == want
        try:
            fk.wait_until(check, HB_EVERY + 5, interval=0.2, msg="INFO via %s" % t.name)
        except AssertionError:
            raise AssertionError("INFO via %s never was %r; last %r" % (t.name, want, last[0]))
    r0.run([("ch_del", sids([A[0], C[0]]), "info-a"), ("ch_del", sids([A[1]]), "info-b")])


def test_presence_follows_connects_and_closes(bus, request):
    """sids:<s>:<w> holds exactly the live SIDs of that worker, hb:<s>:<w> says
    "<clients> <channels>" with a TTL of at most 10 s, chans:<s>:<w> its channels."""
    php = transport(request, bus, "php")
    links = bus.open_clients(3)
    for l in LINKS:
        want = {p.sid for p in links[l]}
        fk.wait_until(lambda: bus.members("sids:%d:%d" % l) == want, 5,
                      msg="sids:%d:%d == our open clients there" % l)
    new = bus.swarm.connect(bus.gws[2].port, 1)[0]
    bus.swarm.wait(lambda: new.msgs or new.closed, 5, "welcome")
    new.sid = new.msgs.pop(0)[len(b"welcome "):]
    new.link = sid_link(new.sid)
    key = "sids:%d:%d" % new.link
    fk.wait_until(lambda: new.sid in bus.members(key), 5, msg="new SID in " + key)
    assert php.run([("online", new.sid)]) == [True]

    def hb_is(link, clients, channels):
        v = bus.rc.get(PREFIX + "hb:%d:%d" % link)
        ttl = bus.rc.ttl(PREFIX + "hb:%d:%d" % link)
        return v is not None and v.split() == [b"%d" % clients, b"%d" % channels] \
            and 0 < ttl <= HB_TTL

    n = len(bus.by_link()[new.link])
    fk.wait_until(lambda: hb_is(new.link, n, 0), HB_EVERY + 2, interval=0.1,
                  msg="hb:%d:%d == '%d 0'" % (new.link + (n,)))
    RouterT(bus.routers[0], "router0").run([("ch_add", [new.sid], "presence")])
    chans = "chans:%d:%d" % new.link
    fk.wait_until(lambda: bus.members(chans) == {b"presence"}, 5, msg=chans)
    fk.wait_until(lambda: hb_is(new.link, n, 1), HB_EVERY + 2, interval=0.1,
                  msg="hb:%d:%d == '%d 1'" % (new.link + (n,)))
    # The client goes: its SID leaves the set, its channel the channel set.
    bus.swarm.hang_up(new)
    fk.wait_until(lambda: new.sid not in bus.members(key), 5, msg="closed SID to leave " + key)
    fk.wait_until(lambda: bus.members(chans) == set(), 5, msg=chans + " empty")
    assert php.run([("online", new.sid)]) == [False]
    fk.wait_until(lambda: hb_is(new.link, n - 1, 0), HB_EVERY + 2, interval=0.1,
                  msg="hb:%d:%d == '%d 0'" % (new.link + (n - 1,)))
    bus.wait_channel("presence", 0)


def test_big_broadcast_and_secret_router(bus, request):
    """A 1 MB SEND_ALL through a router and through a library reaches everyone whole;
    a bus router with ROUTER_SECRET wants it from backends as usual."""
    bus.open_clients(2)
    payload = bytes(range(256)) * 4096
    for t in (RouterT(bus.routers[0], "router0"), transport(request, bus, "go")):
        m = new_marker()
        t.run([("send_all", payload), ("send_all", m)])
        got = received(bus, m)
        assert all(v == [payload] for v in got.values()), \
            "%s: %r" % (t.name, {p: [len(x) for x in v] for p, v in got.items() if v != [payload]})
    d = bus.tmp / "router-secret"
    d.mkdir()
    r = Router(d, BUS=bus.redis.url, BUS_PREFIX=PREFIX, ROUTER_SECRET="bus-s3cret").start()
    try:
        bk = rp.Backend(r.port)
        bk.send_all(b"no secret")
        assert bk.wait_closed(), "a bus router took a command before ROUTER_SECRET"
        bk.close()
        bk = rp.Backend(r.port, secret=b"bus-s3cret")
        m = new_marker()
        bk.send_all(m)
        info = bk.info()
        bk.close()
        assert [g[:2] for g in sorted(info["gateways"])] == LINKS
        got = received(bus, m)
        assert all(v == [] for v in got.values())
    finally:
        assert r.stop() == 0, r.read_log()[-3000:]


def test_router_killed_other_keeps_serving(bus):
    """Routers are stateless: one killed, the other serves commands and INFO alone."""
    links = bus.open_clients(3)
    victim = bus.routers.pop(1)
    bus.dead_routers.append(victim)
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(10)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", victim.port), timeout=2).close()
    t = RouterT(bus.routers[0], "router0")
    targets = [links[l][0] for l in LINKS]
    m = new_marker()
    t.run([("send_msg", sids(targets), b"still here"), ("send_all", m)])
    assert_delivered(received(bus, m), {p: [b"still here"] for p in targets})
    info = t.run([("info",)])[0]
    assert [g[:2] for g in info["gateways"]] == LINKS
    assert info["clients"] == len(bus.swarm.open())
    bus.start_router()  # keep two for whatever runs next


def test_redis_restart_gateways_resubscribe(bus):
    """redis-server stopped and started again on the same port: within the back-off
    (README: "reconnect with back-off (0.1 s doubling to 5 s)", peers.RESYNC_DEADLINE)
    broadcasts and channel messages reach every member again, commands through a
    router flow, and the presence keys (gone with the old server) are written again."""
    links = bus.open_clients(2)
    members = [links[l][0] for l in LINKS]
    t = RouterT(bus.routers[0], "router0")
    t.run([("ch_add", sids(members), "survivors")])
    bus.wait_channel("survivors", 4)

    bus.rc.close()
    bus.redis.stop()
    # Without Redis the gateways keep serving their clients (FastCGI round trips).
    p = members[0]
    p.sock.setblocking(True)
    p.sock.sendall(struct.pack(">I", 4) + b"ping")
    p.sock.setblocking(False)
    bus.swarm.wait(lambda: b"ping" in p.msgs, 5, "an echo while Redis is down")
    p.msgs.clear()
    assert all(gw.alive() and len(gw.worker_pids()) == WORKERS for gw in bus.gws.values())

    bus.redis.start()
    t0 = time.monotonic()
    bus.rc = bus.redis.client()
    # Publish numbered markers until every client got a broadcast and every member a
    # channel message; each marker at most once per client.
    seq = [0]
    everyone = bus.swarm.open()

    def got_all():
        seq[0] += 1
        bus.publish(rp.SEND_ALL, b"", b"back %d" % seq[0])
        bus.publish(rp.CH_PUB, b"survivors", b"room back %d" % seq[0], name="ch:survivors")
        bus.swarm.pump(0.05)
        return (all(any(x.startswith(b"back ") for x in q.msgs) for q in everyone)
                and all(any(x.startswith(b"room back ") for x in q.msgs) for q in members))
    try:
        fk.wait_until(got_all, RESYNC_DEADLINE, interval=0.05,
                      msg="broadcast and channel message")
    except AssertionError:
        raise AssertionError("%.0f s after the restart: NUMSUB all=%d survivors=%d; clients "
                             "without a broadcast %r\n%s"
                             % (RESYNC_DEADLINE, bus.numsub("all"), bus.numsub("ch:survivors"),
                                [q for q in everyone if not any(
                                    x.startswith(b"back ") for x in q.msgs)][:8], bus.logs()))
    print("delivery again %.2f s after redis-server listened" % (time.monotonic() - t0))
    m = new_marker()
    bus.publish(rp.SEND_ALL, b"", m)
    got = received(bus, m)
    for q, msgs in got.items():
        assert len(msgs) == len(set(msgs)), "duplicates at %r: %r" % (q, msgs)
        assert all(x.startswith(b"back ") or (q in members and x.startswith(b"room back "))
                   for x in msgs), (q, msgs)

    # The router reconnects too.
    def via_router():
        mk = new_marker()
        t.run([("send_msg", sids(members), b"router back"), ("send_all", mk)])
        try:
            bus.swarm.wait(lambda: all(mk in q.msgs for q in everyone), 1.0, "router marker")
            return mk
        except AssertionError:
            return None
    fk.wait_until(via_router, RESYNC_DEADLINE, interval=0.1,
                  msg="commands through the router again")
    bus.swarm.quiet()
    for q in everyone:
        q.msgs.clear()
    m = new_marker()
    t.run([("send_msg", sids(members), b"router ok"), ("send_all", m)])
    assert_delivered(received(bus, m), {q: [b"router ok"] for q in members})

    # Presence written again.
    def presence_back():
        by = bus.by_link()
        return all(bus.members("sids:%d:%d" % l) == {q.sid for q in by[l]}
                   and bus.rc.get(PREFIX + "hb:%d:%d" % l) is not None for l in LINKS) \
            and all(bus.members("chans:%d:%d" % l) == {b"survivors"} for l in LINKS)
    fk.wait_until(presence_back, HB_EVERY + 3, interval=0.1, msg="presence keys rewritten")
    t.run([("ch_del", sids(members), "survivors")])
    bus.wait_channel("survivors", 0)


def test_killed_worker_presence_replaced(bus):
    """A worker killed with SIGKILL: its clients are cut; the replacement removes the
    dead one's SIDs and channels from the presence sets, refreshes hb for it, and
    takes commands for its own new clients."""
    link = (1, 0)
    links = bus.open_clients(2)
    dead = links[link]
    t = RouterT(bus.routers[0], "router0")
    t.run([("ch_add", sids(dead[:1]), "doomed")])
    key, chans, hb = "sids:%d:%d" % link, "chans:%d:%d" % link, PREFIX + "hb:%d:%d" % link
    fk.wait_until(lambda: bus.members(key) >= {p.sid for p in dead}
                  and b"doomed" in bus.members(chans), 5, msg="presence before the kill")
    fk.wait_until(lambda: (bus.rc.get(hb) or b"0").split()[0] == b"%d" % len(dead),
                  HB_EVERY + 2, interval=0.1, msg="hb counts the doomed clients")
    gw = bus.gws[1]
    pid = worker_pid(gw, 0)
    assert pid, "no worker 0 among %r" % gw.worker_pids()
    os.kill(pid, signal.SIGKILL)
    bus.swarm.wait(lambda: all(p.closed for p in dead), 5, "the dead worker's clients to be cut")
    fk.wait_until(lambda: worker_pid(gw, 0) not in (None, pid), 5, msg="a new worker 0")
    fk.wait_until(lambda: not (bus.members(key) & {p.sid for p in dead}), 5,
                  msg="the dead worker's SIDs to leave %s (left: %r)" % (key, bus.members(key)))
    fk.wait_until(lambda: b"doomed" not in bus.members(chans), 5,
                  msg="the dead worker's channel to leave " + chans)
    # hb is the replacement's: it counts no client, and it is kept alive.
    fk.wait_until(lambda: (bus.rc.get(hb) or b"").split() == [b"0", b"0"], HB_EVERY + 2,
                  interval=0.1, msg="hb:1:0 refreshed by the replacement as '0 0'")
    ttl0 = bus.rc.pttl(hb)
    assert 0 < ttl0 <= HB_TTL * 1000
    low = [ttl0]

    def refreshed():  # the TTL goes down, then jumps back up
        ttl = bus.rc.pttl(hb)
        low[0] = min(low[0], ttl)
        return ttl > low[0] + 300
    fk.wait_until(refreshed, HB_EVERY + 2, interval=0.1, msg="hb:1:0 TTL refreshed again")
    bus.wait_channel("doomed", 0)
    # The replacement's own clients are reached through its channel.
    links = bus.open_clients(2)
    fresh = links[link]
    fk.wait_until(lambda: bus.members(key) == {p.sid for p in fresh}, 5,
                  msg="%s == the new worker's clients" % key)
    m = new_marker()
    t.run([("send_msg", sids(fresh), b"new worker"), ("send_all", m)])
    assert_delivered(received(bus, m), {p: [b"new worker"] for p in fresh})
    fk.wait_until(lambda: (bus.rc.get(hb) or b"").split()[:1] == [b"%d" % len(fresh)],
                  HB_EVERY + 2, interval=0.1, msg="hb:1:0 counts the new worker's clients")
