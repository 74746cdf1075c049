"""Backend API v2 end to end (DESIGN §13): a real router, two real gateways of two
workers each in front of php-fpm (tests/backends/echo.php), real length-protocol
clients on all four worker links, and a backend speaking the router protocol.

Each test asserts what the clients received, what the queries answered, and what
the backend saw in its FastCGI params (UID, SESSION) when a client spoke.
"""

import json
import struct
import subprocess
import threading
import time

import pytest

import fk
import peers
import rproto as rp
from swarm import assert_delivered, new_marker
from test_cluster import LINKS, PHP_CLIENT, Cluster, received


@pytest.fixture
def v2(php, tmp_path):
    made = []

    def make(name="c", **kw):
        c = Cluster(tmp_path / name, php, **kw)
        made.append(c)
        return c.start()
    yield make
    problems = []
    for c in made:
        p, _ = c.stop()
        problems += p
    if problems:
        pytest.fail("sanitizer reports from fooking:\n" + "\n".join(problems[:20]))


def ready(c, per_link):
    """Clients on every link, and every link past its HELLO: a SESSION_GET of a
    session of each is answered found only once the router asks that link."""
    links = c.ready(per_link=per_link)
    bk = c.backend()
    try:
        for l in LINKS:
            sid = links[l][0].sid
            wait_answer("link %r speaks v2" % (l,), lambda: bk.query(rp.SESSION_GET, sid)[:1],
                        b"\x01")
    finally:
        bk.close()
    return links


def ask_params(cluster, peer):
    """The client sends "params"; the backend answers with its $_SERVER as JSON."""
    n = len(peer.msgs)
    peer.sock.sendall(struct.pack(">I", 6) + b"params")
    cluster.swarm.wait(lambda: len(peer.msgs) > n, 10, "the params reply")
    return json.loads(peer.msgs.pop(n))


wait_answer = fk.wait_equal


def test_uids_reach_exactly_their_sessions(v2):
    c = v2()
    links = ready(c, 3)
    a1, a2 = links[(1, 0)][0], links[(2, 1)][0]   # user "alice": two gateways
    b1 = links[(1, 1)][0]                          # user "bob"
    bk = c.backend()
    bk.bind([a1.sid, a2.sid], b"alice")
    bk.bind([b1.sid], b"bob")
    # A query after the commands on the same connection sees them.
    assert bk.count(rp.UID_COUNT, b"alice") == 2
    assert sorted(rp.b(bk.query(rp.UID_SIDS, b"alice"))[i:i + 16]
                  for i in range(0, 32, 16)) == sorted([a1.sid, a2.sid])
    assert bk.query(rp.SID_UID, b1.sid) == b"bob"
    assert bk.query(rp.SID_UID, links[(2, 0)][0].sid) == b""
    marker = new_marker()
    bk.send_uid([b"alice"], b"to alice")
    bk.send_uid([b"bob", b"bob", b"nobody"], b"to bob once")
    bk.send_all(marker)
    assert_delivered(received(c, marker), {a1: [b"to alice"], a2: [b"to alice"],
                                           b1: [b"to bob once"]})
    # Rebinding moves a session from one user to the other.
    bk.bind([a2.sid], b"bob")
    assert bk.count(rp.UID_COUNT, b"alice") == 1
    assert bk.count(rp.UID_COUNT, b"bob") == 2
    marker = new_marker()
    bk.send_uid([b"bob"], b"to bob")
    bk.send_all(marker)
    assert_delivered(received(c, marker), {a2: [b"to bob"], b1: [b"to bob"]})
    # KICK_UID closes every session of the user, nobody else.
    bk.kick_uid([b"bob"])
    c.swarm.wait(lambda: a2.closed and b1.closed, 5, "bob's sessions closed")
    marker = new_marker()
    bk.send_all(marker)
    got = received(c, marker)
    assert a1 in got and a2 not in got and b1 not in got
    wait_answer("bob gone from the router", lambda: bk.count(rp.UID_COUNT, b"bob"), 0)
    assert bk.count(rp.UID_COUNT, b"alice") == 1
    assert c.info()["uids"] == 1
    bk.close()


def test_session_data_and_uid_reach_the_backend(v2):
    c = v2(SESSION_MAX_SIZE=64)
    links = ready(c, 1)
    p = links[(2, 0)][0]
    first = ask_params(c, p)
    assert "UID" not in first and "SESSION" not in first
    bk = c.backend()
    bk.bind([p.sid], b"u-42")
    bk.session_set(p.sid, b'{"name":"Ann"}')
    # SESSION_SET went to the gateway before SESSION_GET: the answer sees it.
    assert bk.query(rp.SESSION_GET, p.sid) == b'\x01{"name":"Ann"}'
    got = ask_params(c, p)
    assert got["UID"] == "u-42" and got["SESSION"] == '{"name":"Ann"}'
    assert got["SESSIONID"] == p.sid.decode()
    # Over SESSION_MAX_SIZE: refused and logged; the data stays as it was.
    bk.session_set(p.sid, b"x" * 65)
    assert bk.query(rp.SESSION_GET, p.sid) == b'\x01{"name":"Ann"}'
    c.gws[2].wait_log("SESSION_SET of 65 bytes", "over SESSION_MAX_SIZE (64), refused")
    # Cleared and unbound: the params go back to what the session started with.
    bk.session_set(p.sid, b"")
    bk.unbind([p.sid])
    assert bk.query(rp.SESSION_GET, p.sid) == b"\x01"
    assert bk.query(rp.SID_UID, p.sid) == b""
    last = ask_params(c, p)
    assert "UID" not in last and "SESSION" not in last
    assert bk.query(rp.SESSION_GET, b"0" * 16) == b"\x00"
    bk.close()


def test_channel_queries_and_exclusions(v2):
    c = v2()
    links = ready(c, 3)
    room = [links[l][0] for l in LINKS] + [links[(1, 0)][1]]
    bk = c.backend()
    bk.ch_add([p.sid for p in room], b"room")
    bk.bind([room[0].sid], b"ann")
    bk.session_set(room[1].sid, b"data of 1")
    assert bk.count(rp.CH_COUNT, b"room") == 5
    assert dict(rp.members(bk.query(rp.CH_MEMBERS, b"room"))) == \
        {p.sid: (b"ann" if p is room[0] else b"") for p in room}
    assert dict(rp.records(bk.query(rp.CH_SESSIONS, b"room"))) == \
        {p.sid: (b"data of 1" if p is room[1] else b"") for p in room}
    assert rp.channels(bk.query(rp.CHANNELS)) == {b"room": 5}
    online = bk.query(rp.IS_ONLINE, b"".join(p.sid for p in room) + b"f" * 16)
    assert online == b"\x01" * 5 + b"\x00"
    # Exclusions: the sender is left out of its own broadcast and publish.
    marker = new_marker()
    bk.ch_pub_ex(b"room", [room[2].sid, room[4].sid], b"to the room")
    bk.send_all_ex([room[0].sid], b"to all but 0")
    bk.send_all(marker)
    everyone = c.swarm.open()
    expect = {p: [b"to all but 0"] for p in everyone if p is not room[0]}
    for p in room:
        if p not in (room[2], room[4]):
            expect.setdefault(p, []).insert(0, b"to the room")
    assert_delivered(received(c, marker), expect)
    bk.close()


def test_channels_per_client_is_a_bound(v2):
    c = v2(CHANNELS_PER_CLIENT=2)
    links = ready(c, 1)
    p, q = links[(1, 1)][0], links[(2, 0)][0]
    bk = c.backend()
    for ch in (b"a", b"b", b"c"):
        bk.ch_add([p.sid, q.sid], ch)
    # The third join was refused by both gateways, which told the router.
    wait_answer("the refused joins taken back", lambda: bk.count(rp.CH_COUNT, b"c"), 0)
    assert bk.count(rp.CH_COUNT, b"a") == 2
    marker = new_marker()
    bk.ch_pub(b"c", b"not for them")
    bk.ch_pub(b"b", b"for them")
    bk.send_all(marker)
    assert_delivered(received(c, marker), {p: [b"for them"], q: [b"for them"]})
    c.gws[1].wait_log(p.sid.decode(), "already in CHANNELS_PER_CLIENT (2) channels, refused")
    bk.close()


def test_router_restart_gets_uids_and_memberships_back(v2):
    c = v2()
    links = ready(c, 3)
    sids = {l: [p.sid for p in links[l][:3]] for l in LINKS}
    bk = c.backend()
    for i, l in enumerate(LINKS):
        bk.bind(sids[l][:2], b"user-%d" % i)
        bk.ch_add(sids[l], b"all-%d" % (i % 2))
        bk.session_set(sids[l][0], b"s-%d" % i)
    want_channels = {b"all-0": 6, b"all-1": 6}
    assert rp.channels(bk.query(rp.CHANNELS)) == want_channels
    bk.close()
    # Under a steady stream of broadcasts, the router dies hard and comes back.
    stop = threading.Event()

    def load():
        while not stop.is_set():
            try:
                lb = c.backend()
                while not stop.is_set():
                    lb.send_all(b"load")
                    time.sleep(0.002)
            except OSError:
                time.sleep(0.01)
    t = threading.Thread(target=load, daemon=True)
    t.start()
    try:
        c.swarm.wait(lambda: all(b"load" in p.msgs for p in c.swarm.open()), 10, "the load")
        t0 = time.monotonic()
        c.router.kill9()
        c.restart_router()

        def exact():
            try:
                b2 = c.backend()
            except OSError:
                return False
            try:
                ok = rp.channels(b2.query(rp.CHANNELS)) == want_channels
                for i, l in enumerate(LINKS):
                    ok = ok and b2.count(rp.UID_COUNT, b"user-%d" % i) == 2
                    ok = ok and b2.query(rp.SESSION_GET, sids[l][0]) == b"\x01s-%d" % i
                return ok and b2.info()["uids"] == 4
            except (OSError, AssertionError, rp.QueryError):
                return False
            finally:
                b2.close()
        fk.wait_until(exact, 10, msg="every query exact after the router restart")
        # Reported, not asserted: the gateways reconnect after 0.1 s (doubling
        # on failures) and resend everything at once.
        print("queries exact %.2f s after kill -9 of the router" % (time.monotonic() - t0))
    finally:
        stop.set()
        t.join(10)
    # What the load left in flight is read out past a first marker.
    first = new_marker()
    b3 = c.backend()
    b3.send_all(first)
    c.swarm.wait(lambda: all(first in p.msgs for p in c.swarm.open()), 10, "the first marker")
    for p in c.swarm.open():
        del p.msgs[:p.msgs.index(first) + 1]
    marker = new_marker()
    b3.send_uid([b"user-3"], b"back")
    b3.send_all(marker)
    assert_delivered(received(c, marker), {p: [b"back"] for p in links[LINKS[3]][:2]})
    b3.close()


def test_newer_router_types_and_bad_v2_messages_are_skipped(gateway, fake):
    """A router newer than this gateway may send types it does not know, and a
    v2 message can be out of shape: each such message is skipped (logged) and
    the link goes on, so what follows it still arrives."""
    from test_trust import FakeRouter
    router = FakeRouter()
    f = fake()
    gw = gateway(BACKEND_SERVER=f.addr, WORKER_NUM=1, ROUTER_HOST="127.0.0.1",
                 ROUTER_PORT=router.port)
    cl = fk.Client(gw.port)
    try:
        fk.wait_until(lambda: router.sids, 5, msg="the client's CONN")
        sid = router.sids[-1].encode()
        router.send(99, b"future", b"x" * 1000)               # a type from the future
        router.send(rp.BIND, sid, b"u" * 129)                 # a uid over 128 bytes
        router.send(rp.SEND_UID, b"\x00", b"bad uid list")    # an empty uid
        router.send(rp.SEND_MSG, sid, b"still here")
        assert cl.recv() == b"still here"
        gw.wait_log("unknown type 99 skipped")
        gw.wait_log("BIND refused")
        gw.wait_log("SEND_UID refused")
        assert not gw.log_lines("link lost")
    finally:
        cl.close()
        router.stop()


# ------------------------------------------------ the PHP and Go client libraries

V2_PHP = r"""<?php
require $argv[1];
$ops = json_decode(stream_get_contents(STDIN), true);
$r = new FookingRouter();
$r->connect('127.0.0.1', (int)$argv[2], null);
$out = [];
foreach ($ops as $o) {
    $a = $o['args'];
    switch ($o['op']) {
    case 'bind': $r->bindUid($a[0], $a[1]); break;
    case 'unbind': $r->unbindUid($a[0]); break;
    case 'send_to_uid': $r->sendToUid($a[0], $a[1]); break;
    case 'kick_uid': $r->kickUid($a[0]); break;
    case 'set_session': $r->setSession($a[0], $a[1]); break;
    case 'send_all': $r->sendAll($a[0], $a[1]); break;
    case 'ch_add': $r->chAdd($a[0], $a[1]); break;
    case 'ch_pub': $r->chPub($a[0], $a[1], $a[2]); break;
    case 'is_online': $out[] = $r->isOnline($a[0]); break;
    case 'is_uid_online': $out[] = $r->isUidOnline($a[0]); break;
    case 'sids_by_uid': $s = $r->getSidsByUid($a[0]); sort($s, SORT_STRING); $out[] = $s; break;
    case 'uid_by_sid': $out[] = $r->getUidBySid($a[0]); break;
    case 'get_session': $out[] = $r->getSession($a[0]); break;
    case 'ch_count': $out[] = $r->chCount($a[0]); break;
    case 'ch_members': $out[] = $r->chMembers($a[0]); break;
    case 'ch_sessions': $out[] = $r->chSessions($a[0]); break;
    case 'channels': $out[] = $r->channels(); break;
    case 'info': $i = $r->info(); $out[] = ['clients' => $i['clients'], 'uids' => $i['uids']]; break;
    default: throw new Exception('unknown op ' . $o['op']);
    }
}
$r->close();
echo json_encode($out), "\n";
"""

V2_GO = r"""package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"

	"fooking"
)

type op struct {
	Op   string
	Args []json.RawMessage
}

func str(m json.RawMessage) string   { var s string; must(json.Unmarshal(m, &s)); return s }
func strs(m json.RawMessage) []string { var s []string; must(json.Unmarshal(m, &s)); return s }
func must(err error) {
	if err != nil {
		panic(err)
	}
}

func main() {
	port, _ := strconv.Atoi(os.Args[1])
	var ops []op
	must(json.NewDecoder(os.Stdin).Decode(&ops))
	r, err := fooking.Connect("127.0.0.1", port, "")
	must(err)
	out := []interface{}{}
	for _, o := range ops {
		a := o.Args
		switch o.Op {
		case "bind":
			err = r.BindUid(str(a[0]), str(a[1]))
		case "unbind":
			err = r.UnbindUid(str(a[0]))
		case "send_to_uid":
			err = r.SendToUid(strs(a[0]), []byte(str(a[1])))
		case "kick_uid":
			err = r.KickUid(str(a[0]))
		case "set_session":
			err = r.SetSession(str(a[0]), []byte(str(a[1])))
		case "send_all":
			err = r.SendAll([]byte(str(a[0])), strs(a[1])...)
		case "ch_add":
			err = r.ChAdd(strs(a[0]), str(a[1]))
		case "ch_pub":
			err = r.ChPub(str(a[0]), []byte(str(a[1])), strs(a[2])...)
		case "is_online":
			var m map[string]bool
			m, err = r.IsOnline(strs(a[0]))
			out = append(out, m)
		case "is_uid_online":
			var n int
			n, err = r.IsUidOnline(str(a[0]))
			out = append(out, n)
		case "sids_by_uid":
			var s []string
			s, err = r.GetSidsByUid(str(a[0]))
			sort.Strings(s)
			out = append(out, s)
		case "uid_by_sid":
			var u string
			u, err = r.GetUidBySid(str(a[0]))
			if u == "" {
				out = append(out, nil)
			} else {
				out = append(out, u)
			}
		case "get_session":
			d, found, e := r.GetSession(str(a[0]))
			err = e
			if found {
				out = append(out, string(d))
			} else {
				out = append(out, nil)
			}
		case "ch_count":
			var n int
			n, err = r.ChCount(str(a[0]))
			out = append(out, n)
		case "ch_members":
			var m map[string]string
			m, err = r.ChMembers(str(a[0]))
			mm := map[string]interface{}{}
			for k, v := range m {
				if v == "" {
					mm[k] = nil
				} else {
					mm[k] = v
				}
			}
			out = append(out, mm)
		case "ch_sessions":
			var m map[string][]byte
			m, err = r.ChSessions(str(a[0]))
			mm := map[string]string{}
			for k, v := range m {
				mm[k] = string(v)
			}
			out = append(out, mm)
		case "channels":
			var m map[string]int
			m, err = r.Channels()
			out = append(out, m)
		case "info":
			var i *fooking.Info
			i, err = r.Info()
			if err == nil {
				out = append(out, map[string]int{"clients": i.Clients, "uids": i.Uids})
			}
		default:
			err = fmt.Errorf("unknown op %q", o.Op)
		}
		must(err)
	}
	r.Close()
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}
"""


@pytest.fixture(scope="module")
def v2_go(tmp_path_factory):
    return peers.go_build(tmp_path_factory.mktemp("api-v2-go"), V2_GO)


def drive(kind, c, ops, tmp, go=None):
    """Runs ops [(name, args...)] through the PHP or Go library; the answers of
    the queries, in order, as JSON values."""
    body = json.dumps([{"op": o[0], "args": list(o[1:])} for o in ops])
    if kind == "php":
        script = tmp / "v2.php"
        script.write_text(V2_PHP)
        cmd = ["php", str(script), str(PHP_CLIENT), str(c.router.port)]
    else:
        cmd = [go, str(c.router.port)]
    p = subprocess.run(cmd, input=body, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout)


@pytest.mark.parametrize("kind", ["php", "go"])
def test_every_call_from_the_libraries(request, v2, tmp_path, kind):
    go = request.getfixturevalue("v2_go") if kind == "go" else None
    c = v2()
    links = ready(c, 2)
    s = {l: [p.sid.decode() for p in links[l][:2]] for l in LINKS}
    peer = {p.sid.decode(): p for l in LINKS for p in links[l]}
    u1 = [s[(1, 0)][0], s[(2, 1)][0]]   # "ann", on two gateways
    u2 = s[(1, 1)][0]                   # "bob"
    room = [s[l][1] for l in LINKS]     # one per link
    answers = drive(kind, c, [
        ("bind", u1[0], "ann"), ("bind", u1[1], "ann"), ("bind", u2, "bob"),
        ("set_session", u1[0], '{"n":"Ann"}'),
        ("ch_add", room, "room"),
        ("send_to_uid", ["ann"], "to ann"),
        ("send_all", "to all but bob", [u2]),
        ("ch_pub", "room", "to the room", [room[0]]),
        ("is_online", [u1[0], "0" * 16]),
        ("is_uid_online", "ann"),
        ("sids_by_uid", "ann"),
        ("uid_by_sid", u2), ("uid_by_sid", room[0]),
        ("get_session", u1[0]), ("get_session", "0" * 16),
        ("ch_count", "room"),
        ("ch_members", "room"),
        ("ch_sessions", "room"),
        ("channels",),
        ("info",),
    ], tmp_path, go)
    nclients = len(c.swarm.open())
    assert answers == [
        {u1[0]: True, "0" * 16: False},
        2,
        sorted(u1),
        "bob", None,
        '{"n":"Ann"}', None,
        4,
        {sid: None for sid in room},
        {sid: "" for sid in room},
        {"room": 4},
        {"clients": nclients, "uids": 2},
    ]
    marker = new_marker()
    bk = c.backend()
    bk.send_all(marker)
    expect = {p: [b"to all but bob"] for p in c.swarm.open() if p.sid.decode() != u2}
    for sid in u1:
        expect[peer[sid]].insert(0, b"to ann")
    for sid in room[1:]:
        expect[peer[sid]].append(b"to the room")
    assert_delivered(received(c, marker), expect)
    # unbind and kick_uid
    drive(kind, c, [("unbind", u1[1]), ("kick_uid", "ann")], tmp_path, go)
    c.swarm.wait(lambda: peer[u1[0]].closed, 5, "ann's remaining session kicked")
    assert not peer[u1[1]].closed and not peer[u2].closed
    assert bk.query(rp.SID_UID, u1[1].encode()) == b""
    bk.close()


def test_a_script_closing_clients_during_a_uid_push(gateway, fake):
    """A push to a user's sessions goes through each client's script, which may
    close that client on the spot (fc.close in onWrite): the sessions are
    gathered before any is served, so the walk never touches a freed one (the
    ASan run checks), and the other commands still work after."""
    from test_trust import FakeRouter
    router = FakeRouter()
    f = fake()
    gw = gateway(BACKEND_SERVER=f.addr, WORKER_NUM=1, ROUTER_HOST="127.0.0.1",
                 ROUTER_PORT=router.port, SCRIPT_FILE=str(fk.REPO / "tests/scripts/close_on_push.lua"))
    conns = []
    try:
        for i in range(4):  # one at a time: router.sids[i] is conns[i]'s
            conns.append(fk.Client(gw.port))
            fk.wait_until(lambda: len(router.sids) == i + 1, 5, msg="the client's CONN")
        clients, other = conns[:3], conns[3]
        sids = [s.encode() for s in router.sids]
        router.send(rp.BIND, b"".join(sids[:3]), b"u")
        router.send(rp.SEND_UID, rp.uid_list([b"u", b"u"]), b"close me")
        router.send(rp.SEND_MSG, b"".join(sids), b"after")
        for c in clients:
            c.recv_closed()
        assert other.recv() == b"after"
        assert gw.alive() and not gw.log_lines("link lost")
    finally:
        for c in conns:
            c.close()
        router.stop()
