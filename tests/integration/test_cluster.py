"""A whole cluster (DESIGN §2, §4, §7, §8): a real router, two real gateways
(SERVER_ID 1 and 2, two workers each, length protocol) in front of php-fpm running
tests/backends/echo.php, and many real clients spread over the four gateway links.

EVENT_CONNECT = 1 makes every client receive "welcome <SID>" first: that is how a
test learns its clients' SIDs, and from each SID which (server, worker) link holds
it. Commands are sent by a backend client (rproto.Backend, or the PHP and Go
libraries of example/clients driven by a list of operations on stdin), and the
tests assert what each client actually received. "Nothing else arrived" is asserted
with a marker: a SEND_ALL sent after the command on the same backend connection
reaches each client after everything the command delivered, so the messages before
the marker are exactly what the command did; a short quiet period after the marker
catches late duplicates.
"""

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

import fk
import peers
import rproto as rp
import swarm
from peers import norm_info, ops_json, worker_pid
from swarm import Swarm, assert_delivered, new_marker
from conftest import base_params

ROOT = fk.REPO
PHP_CLIENT = ROOT / "example" / "clients" / "php" / "FookingRouter.php"

SERVERS = (1, 2)
WORKERS = 2
LINKS = [(s, w) for s in SERVERS for w in range(WORKERS)]
BURST = 100  # connects in flight at once in the 10,000-client test


# ---------------------------------------------------------------- clients

class Cluster:
    def __init__(self, tmp, php, secret=None, **gw_keys):
        self.tmp = Path(tmp)
        self.secret = secret
        self.event_log = self.tmp / "events.log"
        rkeys = {"ROUTER_SECRET": secret} if secret else {}
        self.router = peers.Router(self.tmp / "router", **rkeys)
        self.gws = {}
        self.extra_gws = []
        self.swarm = Swarm()
        self.php = php
        self.gw_keys = gw_keys
        self.routers = [self.router]

    def gateway_keys(self, server, **over):
        p = base_params()
        p["EVENT_LOG"] = str(self.event_log)
        keys = {"SERVER_ID": server, "WORKER_NUM": WORKERS, "ROUTER_HOST": "127.0.0.1",
                "ROUTER_PORT": self.router.port, "BACKEND_SERVER": self.php.addr,
                "FASTCGI_PREFIX": "", "FASTCGI_PARAMS": p, "EVENT_CONNECT": 1,
                "ROUTER_SECRET": self.secret}
        keys.update(self.gw_keys)
        keys.update(over)
        return keys

    def start(self):
        self.router.start()
        for s in SERVERS:
            gw = peers.Gateway(self.tmp / ("gw%d" % s), name="gw%d" % s,
                            **self.gateway_keys(s))
            self.gws[s] = gw
            gw.start()
        self.wait_info(lambda i: sorted(g[:2] for g in i["gateways"]) == LINKS,
                       "the four gateway links")
        return self

    def restart_router(self):
        """A new router process on the same port (after the old one died)."""
        rkeys = {"ROUTER_SECRET": self.secret} if self.secret else {}
        self.router = peers.Router(self.tmp / ("router%d" % len(self.routers)),
                                   port=self.router.port, **rkeys).start()
        self.routers.append(self.router)
        return self.router

    def start_extra_gateway(self, server, **over):
        gw = peers.Gateway(self.tmp / ("gw%d" % server), name="gw%d" % server,
                        **self.gateway_keys(server, **over))
        self.extra_gws.append(gw)
        return gw.start()

    def stop(self):
        self.swarm.close_all()
        problems = []
        for gw in list(self.gws.values()) + self.extra_gws:
            gw.stop()
            problems += gw.sanitizer_report()
        rcs = [r.stop() for r in self.routers]
        return problems, rcs[-1]

    def events(self):
        """Lines of EVENT_LOG: "<SID> closed" per close event the backend received."""
        try:
            return [l for l in self.event_log.read_bytes().split(b"\n") if l]
        except OSError:
            return []

    # -- backend side

    def backend(self):
        return rp.Backend(self.router.port, secret=self.secret)

    def info(self):
        bk = self.backend()
        try:
            return bk.info()
        finally:
            bk.close()

    def wait_info(self, expect, what="INFO", timeout=10.0):
        last = [None]

        def check():
            last[0] = self.info()
            return expect(last[0])
        try:
            fk.wait_until(check, timeout, msg=what)
        except AssertionError:
            raise AssertionError("INFO never showed %s; last: %r" % (what, last[0]))
        return last[0]

    def expected_links(self, channels=None):
        """{(server, worker): (clients, channels)} from the open clients we hold."""
        counts = {l: 0 for l in LINKS}
        for p in self.swarm.open():
            if p.link in counts:
                counts[p.link] += 1
        channels = channels or {}
        return {l: (counts[l], channels.get(l, 0)) for l in LINKS}

    def wait_links(self, channels=None, total_channels=None, what="INFO counts",
                   timeout=10.0):
        """Waits until INFO shows exactly our open clients per link (and these channel
        counts per link, and this total of channels)."""
        want = self.expected_links(channels)
        nclients = sum(c for c, _ in want.values())

        def ok(i):
            got = {(g[0], g[1]): (g[2], g[3]) for g in i["gateways"]}
            return (got == want and i["clients"] == nclients
                    and (total_channels is None or i["channels"] == total_channels))
        return self.wait_info(ok, "%s %r (total clients %d, channels %s)"
                              % (what, want, nclients, total_channels), timeout)

    # -- clients

    def open_clients(self, per_link=3, max_clients=400):
        """Opens clients on both gateways until every (server, worker) link holds at
        least per_link of them (bounded), learning each SID from its welcome."""
        return swarm.open_welcomed(self.swarm, self.gws, LINKS, per_link, max_clients)

    def by_link(self):
        return swarm.links_of(self.swarm, LINKS)

    def ready(self, per_link=3):
        links = self.open_clients(per_link)
        self.wait_links()
        assert len({p.sid for p in self.swarm.peers}) == len(self.swarm.peers), "SIDs not unique"
        return links


def received(cluster, marker, peers=None, timeout=10.0):
    return swarm.received(cluster.swarm, marker, peers, timeout)


# ---------------------------------------------------------------- backend clients

PHP_DRIVER = r"""<?php
require $argv[1];
$ops = json_decode(stream_get_contents(STDIN), true);
$r = new FookingRouter();
$r->connect('127.0.0.1', (int)$argv[2], $argv[3] === '' ? null : $argv[3]);
$out = [];
foreach ($ops as $o) {
    $msg = base64_decode($o['msg'] ?? '');
    switch ($o['op']) {
    case 'kick': $r->kick($o['sids']); break;
    case 'send_msg': $r->sendMsg($o['sids'], $msg); break;
    case 'send_all': $r->sendAll($msg); break;
    case 'ch_add': $r->chAdd($o['sids'], $o['ch']); break;
    case 'ch_del': $r->chDel($o['sids'], $o['ch']); break;
    case 'ch_pub': $r->chPub($o['ch'], $msg); break;
    case 'info': $out[] = $r->info(); break;
    default: throw new Exception('unknown op ' . $o['op']);
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
	"strconv"

	"fooking"
)

type op struct {
	Op   string
	Sids []string
	Msg  []byte
	Ch   string
}

func main() {
	port, _ := strconv.Atoi(os.Args[1])
	var ops []op
	if err := json.NewDecoder(os.Stdin).Decode(&ops); err != nil {
		panic(err)
	}
	r, err := fooking.Connect("127.0.0.1", port, os.Args[2])
	if err != nil {
		panic(err)
	}
	out := []map[string]interface{}{}
	for _, o := range ops {
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
		case "info":
			var i *fooking.Info
			i, err = r.Info()
			if err == nil {
				gws := []map[string]int{}
				for _, g := range i.Gateways {
					gws = append(gws, map[string]int{"server": g.Server, "worker": g.Worker,
						"clients": g.Clients, "channels": g.Channels})
				}
				out = append(out, map[string]interface{}{"clients": i.Clients,
					"channels": i.Channels, "gateways": gws})
			}
		default:
			err = fmt.Errorf("unknown op %q", o.Op)
		}
		if err != nil {
			panic(err)
		}
	}
	r.Close()
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}
"""


class Commands:
    """Sends a list of operations through one backend connection of the chosen
    client: ("kick", sids), ("send_msg", sids, msg), ("send_all", msg),
    ("ch_add", sids, channel), ("ch_del", sids, channel), ("ch_pub", channel, msg),
    ("info",). run() returns the INFO results, parsed by that client."""

    def __init__(self, kind, cluster, go_driver=None, tmp=None):
        self.kind = kind
        self.cluster = cluster
        self.go_driver = go_driver
        self.tmp = Path(tmp) if tmp else None

    def run(self, ops):
        c = self.cluster
        secret = c.secret or ""
        if self.kind == "py":
            bk = c.backend()
            infos = []
            try:
                for o in ops:
                    name, args = o[0], o[1:]
                    if name == "info":
                        infos.append(bk.info())
                    else:
                        getattr(bk, name)(*args)
            finally:
                bk.close()
            return infos
        if self.kind == "php":
            script = self.tmp / "drive.php"
            script.write_text(PHP_DRIVER)
            cmd = ["php", str(script), str(PHP_CLIENT), str(c.router.port), secret]
        else:
            cmd = [self.go_driver, str(c.router.port), secret]
        p = subprocess.run(cmd, input=ops_json(ops), capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        return [norm_info(i) for i in json.loads(p.stdout)]


@pytest.fixture(scope="module")
def go_driver(tmp_path_factory):
    return peers.go_build(tmp_path_factory.mktemp("cluster-godriver"), GO_DRIVER)


@pytest.fixture
def cluster_factory(php, tmp_path):
    started = []

    def make(name="c", **kw):
        c = Cluster(tmp_path / name, php, **kw)
        started.append(c)
        return c.start()
    yield make
    problems, bad = [], []
    for c in started:
        p, rc = c.stop()
        problems += p
        if rc is not None and rc != 0:
            bad.append((rc, c.router.read_log()[-3000:]))
    if problems:
        pytest.fail("sanitizer reports from fooking:\n" + "\n".join(problems[:20]))
    assert not bad, "router did not exit cleanly on SIGTERM: %r" % bad


@pytest.fixture
def cluster(cluster_factory):
    return cluster_factory()


def commands(request, kind, cluster, tmp_path):
    if kind == "php" and not shutil.which("php"):
        pytest.skip("php-cli not installed")
    drv = request.getfixturevalue("go_driver") if kind == "go" else None
    return Commands(kind, cluster, drv, tmp_path)


# ---------------------------------------------------------------- tests

@pytest.mark.parametrize("kind", ["py", "php", "go"])
def test_send_msg_reaches_exactly_the_targets(request, cluster, tmp_path, kind):
    cmd = commands(request, kind, cluster, tmp_path)
    links = cluster.ready(per_link=3)
    # Two targets on every link, plus a SID nobody holds.
    targets = [p for l in LINKS for p in links[l][:2]]
    single = links[(2, 1)][2]
    unknown = b"%04x%012x" % (0, 12345)
    multi_msg, single_msg = b"to many \x00\xff\r\n", b"to one"
    marker = new_marker()
    infos = cmd.run([("send_msg", [p.sid for p in targets] + [unknown], multi_msg),
                     ("send_msg", [single.sid], single_msg),
                     ("send_all", marker),
                     ("info",)])
    got = received(cluster, marker)
    expect = {p: [multi_msg] for p in targets}
    expect[single] = [single_msg]
    assert_delivered(got, expect)
    # The library's INFO parse agrees with what we hold.
    want = cluster.expected_links()
    assert {g[:2]: tuple(g[2:]) for g in infos[0]["gateways"]} == want
    assert infos[0]["clients"] == len(cluster.swarm.open())


def test_kick_closes_exactly_those_clients(cluster):
    links = cluster.ready(per_link=3)
    kicked = [links[(1, 0)][0], links[(1, 1)][1], links[(2, 0)][0], links[(2, 0)][2],
              links[(2, 1)][2]]
    bk = cluster.backend()
    bk.kick([p.sid for p in kicked])
    marker = new_marker()
    bk.send_all(marker)
    sw = cluster.swarm
    sw.wait(lambda: all(p.closed for p in kicked), 5, "kicked clients to be closed")
    assert all(p.msgs == [] for p in kicked), [p.msgs for p in kicked]
    survivors = [p for p in sw.peers if p not in kicked]
    got = received(cluster, marker, survivors)
    assert_delivered(got, {})
    cluster.wait_links(what="kicked clients gone from INFO")
    # Each kicked session posted its close event; nobody else's did.
    fk.wait_until(lambda: len(cluster.events()) >= len(kicked), 5,
                  msg="close events of the kicked")
    assert sorted(cluster.events()) == sorted(p.sid + b" closed" for p in kicked)
    bk.close()


@pytest.mark.parametrize("kind", ["py", "php"])
def test_channels_members_only(request, cluster, tmp_path, kind):
    cmd = commands(request, kind, cluster, tmp_path)
    links = cluster.ready(per_link=3)
    sw = cluster.swarm
    l10, l11, l20, l21 = (links[l] for l in LINKS)
    members = l10[:2] + l11[:1] + l20[:2]          # "room" on three links
    other = l21[:1]                                 # "other" on the fourth
    # Adding a member twice does not make it receive twice.
    cmd.run([("ch_add", [p.sid for p in members], "room"),
             ("ch_add", [members[0].sid, members[4].sid], "room"),
             ("ch_add", [p.sid for p in other], "other")])
    both = {(1, 0): 1, (1, 1): 1, (2, 0): 1, (2, 1): 1}
    cluster.wait_links(both, total_channels=2, what="channel subscriptions")

    def pub(msg, expect_members):
        marker = new_marker()
        cmd.run([("ch_pub", "room", msg), ("send_all", marker)])
        assert_delivered(received(cluster, marker), {p: [msg] for p in expect_members})

    pub(b"room 1", members)
    # CH_DEL: l20[0] leaves (l20[1] stays), l11[0] leaves: the last member of (1, 1).
    cmd.run([("ch_del", [l20[0].sid, l11[0].sid], "room")])
    cluster.wait_links({(1, 0): 1, (1, 1): 0, (2, 0): 1, (2, 1): 1}, total_channels=2,
                       what="CH_DEL of the last member of (1, 1)")
    pub(b"room 2", [l10[0], l10[1], l20[1]])
    # A member disconnects: it leaves the channel; its link keeps the channel
    # while another member remains there.
    sw.hang_up(l10[0])
    cluster.wait_links({(1, 0): 1, (1, 1): 0, (2, 0): 1, (2, 1): 1}, total_channels=2,
                       what="a disconnected member gone")
    pub(b"room 3", [l10[1], l20[1]])
    # The last member of (1, 0) disconnects: that link's channel count drops.
    sw.hang_up(l10[1])
    cluster.wait_links({(1, 0): 0, (1, 1): 0, (2, 0): 1, (2, 1): 1}, total_channels=2,
                       what="last member of (1, 0) gone")
    pub(b"room 4", [l20[1]])
    # The last member anywhere leaves: the channel is gone from the router.
    sw.hang_up(l20[1])
    cluster.wait_links({(2, 1): 1}, total_channels=1, what="room gone")
    pub(b"room 5", [])
    # "other" was never touched by any of this.
    marker = new_marker()
    cmd.run([("ch_pub", "other", b"other 1"), ("send_all", marker)])
    assert_delivered(received(cluster, marker), {other[0]: [b"other 1"]})


def test_send_all_reaches_every_client_once(cluster):
    cluster.ready(per_link=4)
    bk = cluster.backend()
    marker = new_marker()
    bk.send_all(b"everyone 1")
    bk.send_all(b"everyone 2")
    bk.send_all(marker)
    got = received(cluster, marker)
    assert len(got) == len(cluster.swarm.peers) >= 16
    assert_delivered(got, {p: [b"everyone 1", b"everyone 2"] for p in got})
    assert {p.link for p in got} == set(LINKS)
    bk.close()


def test_burst_of_commands_keeps_its_order_at_every_client(cluster):
    """Many commands in one write reach each gateway worker in few reads; runs
    of SEND_ALL there go out together, and each client still gets exactly its
    messages in the order they were sent, broadcasts interleaved with messages
    to some SIDs and channel publishes (small ones copied, large ones shared)."""
    links = cluster.ready(per_link=3)
    sw = cluster.swarm
    some = [links[l][0] for l in LINKS]
    room = [links[l][1] for l in LINKS[:2]]
    bk = cluster.backend()
    bk.ch_add([p.sid for p in room], "room")
    cluster.wait_links({(1, 0): 1, (1, 1): 1, (2, 0): 0, (2, 1): 0}, total_channels=1,
                       what="room joined")
    burst, expect = [], {p: [] for p in sw.open()}
    for i in range(400):
        if i % 50 == 49:
            msg = b"to some %d" % i
            burst.append(rp.encode(rp.SEND_MSG, b"".join(p.sid for p in some), msg))
            for p in some:
                expect[p].append(msg)
        elif i % 70 == 69:
            msg = b"room %d" % i
            burst.append(rp.encode(rp.CH_PUB, b"room", msg))
            for p in room:
                expect[p].append(msg)
        else:
            msg = b"all %d " % i + (b"x" * (300 if i % 7 == 0 else 0))
            burst.append(rp.encode(rp.SEND_ALL, b"", msg))
            for p in expect:
                expect[p].append(msg)
    marker = new_marker()
    burst.append(rp.encode(rp.SEND_ALL, b"", marker))
    bk.send_raw(b"".join(burst))
    assert_delivered(received(cluster, marker), expect)
    bk.close()


def test_info_counts_clients_channels_and_links(cluster):
    links = cluster.ready(per_link=2)
    bk = cluster.backend()
    text = bk.info_text().decode()
    lines = text.split("\r\n")
    assert lines[-1] == ""
    total = len(cluster.swarm.open())
    assert lines[0] == "clients: %d" % total
    assert lines[1] == "channels: 0"
    assert lines[2] == "uids: 0"
    gw_lines = lines[3:-1]
    assert len(gw_lines) == 4
    for l in gw_lines:
        assert re.fullmatch(r"gateway: \d+\t\d+\t\d+\t\d+", l), repr(l)
    want = cluster.expected_links()
    got = {}
    for l in gw_lines:
        s, w, c, ch = (int(x) for x in l[len("gateway: "):].split("\t"))
        got[(s, w)] = (c, ch)
    assert got == want
    # Channels: "a" on (1, 0) and (2, 1); "b" on (2, 1) only.
    bk.ch_add([links[(1, 0)][0].sid, links[(2, 1)][0].sid, links[(2, 1)][1].sid], "a")
    bk.ch_add([links[(2, 1)][0].sid], "b")
    cluster.wait_links({(1, 0): 1, (2, 1): 2}, total_channels=2, what="two channels")
    # One more client on each gateway shows up in the counts.
    cluster.open_clients(per_link=3)
    cluster.wait_links({(1, 0): 1, (2, 1): 2}, total_channels=2, what="more clients")
    bk.close()


def test_send_all_to_10000_clients(php, tmp_path):
    n = 10000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = n + 1000
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip("RLIMIT_NOFILE hard limit %d < %d" % (hard, need))
    want = need * 2 if hard == resource.RLIM_INFINITY else min(hard, need * 2)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    # The gateways inherit the raised limit. No connect/close events: 20,000
    # php-fpm requests would only measure php-fpm.
    c = Cluster(tmp_path / "big", php, EVENT_CONNECT=0, EVENT_CLOSE=0, LOG_LEVEL=1)
    try:
        c.start()
        t0 = time.monotonic()
        sw = c.swarm
        bk = c.backend()
        # Paced: at most BURST connects wait in a gateway's accept queue, whose
        # backlog is 128 (see test_listen_backlog): a larger burst overflows it,
        # and the kernel then retries the lost handshakes for up to a minute.
        for i in range(0, n, BURST):
            sw.connect(c.gws[SERVERS[(i // BURST) % 2]].port, min(BURST, n - i))
            rp.wait_for(lambda: bk.info()["clients"] == min(n, i + BURST), 10,
                        "%d clients in INFO" % min(n, i + BURST))
        info = c.wait_info(lambda i: i["clients"] == n, "%d clients" % n, timeout=30)
        assert sorted(g[:2] for g in info["gateways"]) == LINKS
        assert sum(g[2] for g in info["gateways"]) == n
        t1 = time.monotonic()
        payload = b"broadcast to ten thousand"
        bk.send_all(payload)
        sw.wait(lambda: sw.nmsgs >= n, 30, "%d deliveries (have %d)" % (n, sw.nmsgs))
        marker = new_marker()
        bk.send_all(marker)
        sw.wait(lambda: sw.nmsgs >= 2 * n, 30, "%d markers" % n)
        sw.quiet()
        t2 = time.monotonic()
        bad = [p for p in sw.peers if p.msgs != [payload, marker] or p.closed]
        assert not bad, "%d clients got the wrong messages, e.g. %r" % (
            len(bad), [(p.msgs, p.closed) for p in bad[:5]])
        assert sw.nmsgs == 2 * n
        print("10k: connect+register %.1fs, two broadcasts %.1fs" % (t1 - t0, t2 - t1))
        bk.close()
    finally:
        problems, rc = c.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert not problems, problems
    assert rc == 0, c.router.read_log()[-3000:]


def test_router_restart_resyncs_sessions_and_channels(cluster):
    links = cluster.ready(per_link=3)
    members = [p for l in LINKS for p in links[l][:2]]
    bk = cluster.backend()
    bk.ch_add([p.sid for p in members], "room")
    ch = {l: 1 for l in LINKS}
    cluster.wait_links(ch, total_channels=1, what="room on every link")
    bk.close()
    before = cluster.info()

    cluster.router.kill9()
    cluster.restart_router()
    t0 = time.monotonic()
    # README: "gateways reconnect and resync within the back-off (at most 5 s)".
    after = cluster.wait_links(ch, total_channels=1, what="resync after the restart",
                               timeout=peers.RESYNC_DEADLINE)
    print("resynced in %.2fs" % (time.monotonic() - t0))
    assert after["clients"] == before["clients"]
    # Every member again, exactly once; nobody else.
    bk = cluster.backend()
    marker = new_marker()
    bk.ch_pub("room", b"after restart")
    bk.send_msg([links[(2, 0)][2].sid], b"direct")
    bk.send_all(marker)
    expect = {p: [b"after restart"] for p in members}
    expect[links[(2, 0)][2]] = [b"direct"]
    assert_delivered(received(cluster, marker), expect)
    # No close event was invented for the live sessions: kick one client per link
    # and wait for exactly those four close events.
    kicked = [links[l][-1] for l in LINKS]
    bk.kick([p.sid for p in kicked])
    cluster.swarm.wait(lambda: all(p.closed for p in kicked), 5, "kicked clients closed")
    fk.wait_until(lambda: len(cluster.events()) >= len(kicked), 5,
                  msg="close events of the kicked")
    cluster.swarm.quiet()
    assert sorted(cluster.events()) == sorted(p.sid + b" closed" for p in kicked)
    bk.close()


def test_worker_killed_sessions_leave_and_close_events_posted(cluster):
    links = cluster.ready(per_link=3)
    sw = cluster.swarm
    gw = cluster.gws[1]
    dead_link = (1, 0)
    dead = list(links[dead_link])
    bk = cluster.backend()
    bk.ch_add([dead[0].sid, links[(1, 1)][0].sid], "room")
    cluster.wait_links({(1, 0): 1, (1, 1): 1}, total_channels=1, what="room")
    pid = worker_pid(gw, 0)
    assert pid, "no worker 0 among %r" % gw.worker_pids()
    os.kill(pid, signal.SIGKILL)
    sw.wait(lambda: all(p.closed for p in dead), 5, "the dead worker's clients to be cut")
    # The master starts a new worker 0; the router forgets the dead link's
    # sessions (and its channel), the new link has none.
    fk.wait_until(lambda: worker_pid(gw, 0) not in (None, pid), 5, msg="a new worker 0")
    cluster.wait_links({(1, 1): 1}, total_channels=1, what="dead sessions gone")

    def closed():
        return set(cluster.events())
    want = {p.sid + b" closed" for p in dead}
    fk.wait_until(lambda: closed() >= want, 10, msg="close events of the dead worker's "
                  "%d sessions (got %r)" % (len(dead), closed()))
    sw.quiet()
    assert closed() == want, "close events for sessions that are alive"
    assert "posted close events" in gw.log()
    # The cluster still works: the survivors (and the room's last member) get
    # exactly what is sent to them.
    marker = new_marker()
    bk.ch_pub("room", b"room")
    bk.send_all(marker)
    assert_delivered(received(cluster, marker), {links[(1, 1)][0]: [b"room"]})
    # The new worker takes clients and reports them.
    cluster.open_clients(per_link=3)
    cluster.wait_links({(1, 1): 1}, total_channels=1, what="new clients on the new worker")
    bk.close()


def test_secret_cluster_and_wrong_secret_refused(cluster_factory, tmp_path):
    if not shutil.which("php"):
        pytest.skip("php-cli not installed")
    c = cluster_factory(secret="cluster secret \u00e9")
    links = c.ready(per_link=2)
    cmd = Commands("php", c, tmp=tmp_path)
    members = [links[(1, 0)][0], links[(2, 1)][1]]
    target = links[(1, 1)][0]
    cmd.run([("ch_add", [p.sid for p in members], "room")])
    c.wait_links({(1, 0): 1, (2, 1): 1}, total_channels=1, what="room with the secret")
    marker = new_marker()
    cmd.run([("ch_pub", "room", b"pub"), ("send_msg", [target.sid], b"msg"),
             ("send_all", b"all"), ("send_all", marker)])
    expect = {p: [b"all"] for p in c.swarm.open()}
    for p in members:
        expect[p] = [b"pub", b"all"]
    expect[target] = [b"msg", b"all"]
    assert_delivered(received(c, marker), expect)
    # A backend without the secret is closed and delivers nothing.
    nosecret = rp.Backend(c.router.port)
    nosecret.send_all(b"no secret")
    assert nosecret.wait_closed()
    nosecret.close()
    # A gateway with the wrong secret is refused: logged, never listed.
    bad = c.start_extra_gateway(3, ROUTER_SECRET="wrong", WORKER_NUM=1)
    fk.wait_until(lambda: [l for l in c.router.read_log().splitlines()
                           if "wrong ROUTER_SECRET" in l and "server 3" in l],
                  10, msg="the router to log the wrong secret")
    info = c.info()
    assert all(g[0] != 3 for g in info["gateways"]), info
    # Its clients are served by it, but no command reaches them.
    extra = c.swarm.connect(bad.port, 1)[0]
    c.swarm.wait(lambda: extra.msgs, 5, "welcome from the refused gateway")
    extra.msgs.clear()
    marker = new_marker()
    cmd.run([("send_all", marker)])
    others = [p for p in c.swarm.open() if p is not extra]
    assert_delivered(received(c, marker, others), {})
    c.swarm.quiet()
    assert extra.msgs == []
    # A gateway with no secret at all is refused too.
    c.start_extra_gateway(4, ROUTER_SECRET=None, WORKER_NUM=1)
    fk.wait_until(lambda: [l for l in c.router.read_log().splitlines()
                           if "wrong ROUTER_SECRET" in l and "server 4" in l],
                  10, msg="the router to log the missing secret")
    assert all(g[0] not in (3, 4) for g in c.info()["gateways"])
    assert sorted(g[:2] for g in c.info()["gateways"]) == LINKS


def listen_backlog(port):
    """The backlog of the socket listening on port, as the kernel reports it."""
    ss = shutil.which("ss") or "/usr/bin/ss"
    out = subprocess.run([ss, "-Hltn", "sport = :%d" % port], capture_output=True, text=True,
                         timeout=10).stdout.split()
    return int(out[2])  # State Recv-Q Send-Q(= backlog) Local Peer


def test_listen_backlog(cluster):
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    if somaxconn <= 128 or not (shutil.which("ss") or os.path.exists("/usr/bin/ss")):
        pytest.skip("somaxconn %d, or no ss" % somaxconn)
    want = min(4096, somaxconn)
    got = {name: listen_backlog(port) for name, port in
           [("router", cluster.router.port)] + [("gateway %d" % s, g.port)
                                                for s, g in cluster.gws.items()]}
    assert got == {name: want for name in got}
