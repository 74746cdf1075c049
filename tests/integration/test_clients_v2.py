"""The backend API v2 calls of the PHP (FookingRouter) and Go (fooking.Router)
clients, against the real router and fake gateway links, and against a fake
router that answers wrong.

Both clients run the same scripts through a small interpreter (PHP_DRIVER,
GO_DRIVER): the test sends it a list of calls as JSON on stdin (every string
hex-encoded, so binary uids and data pass through) and reads back, per call,
{"ok": result} or {"err": kind, "msg", "code"}, where kind is the PHP
exception class; Go's errors map onto the same names (ErrInvalidArgument ->
InvalidArgumentException, *RouterError -> FookingRouterError, anything else
RuntimeException). Go's "" for "no uid" and found = false map to null, so
one expectation serves both.

The fake gateways are v2 gateways: they announce their sessions and report
their bindings and memberships only after the router's v2 PING, keep the
session data the router forwards (SESSION_SET) and answer GW_QUERY from it.
While a client runs, one thread (Serve) plays their gateway side and records,
per link, everything the router sent; after it, a fence (rproto.sync) shows
nothing else arrived. Every wait has a deadline.
"""

import json
import os
import select
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

import fk
import godriver
import peers
import rproto as rp
from peers import ROOT, router  # noqa: F401 (router: the fixture)

PHP_CLIENT = os.path.join(ROOT, "example", "clients", "php", "FookingRouter.php")

# ---------------------------------------------------------------- the drivers

PHP_DRIVER = r"""<?php
require %(lib)s;
const MAPS = ['isOnline', 'chMembers', 'chSessions', 'channels'];
function dec($a) { return is_array($a) ? array_map('dec', $a) : hex2bin($a); }
function render(string $op, $v) {
    if ($op === 'info') {
        return $v;
    }
    if (in_array($op, MAPS, true)) {
        $o = [];
        foreach ($v as $k => $x) {
            $o[bin2hex((string)$k)] = is_string($x) ? bin2hex($x) : $x;
        }
        return (object)$o;
    }
    if (is_array($v)) {
        return array_map('bin2hex', $v);
    }
    return is_string($v) ? bin2hex($v) : $v;
}
$ops = json_decode(stream_get_contents(STDIN), true, 512, JSON_THROW_ON_ERROR);
$r = null;
$out = [];
foreach ($ops as $o) {
    $t = microtime(true);
    try {
        if ($o['op'] === 'connect') {
            $r = new FookingRouter();
            $r->connect('127.0.0.1', $o['port'], $o['secret'] ?? null, $o['timeout'] ?? 5.0);
            $res = ['ok' => null];
        } else {
            $res = ['ok' => render($o['op'], $r->{$o['op']}(...dec($o['args'] ?? [])))];
        }
    } catch (Throwable $e) {
        $res = ['err' => get_class($e), 'msg' => $e->getMessage(), 'code' => $e->getCode()];
    }
    $res['ms'] = (int)round((microtime(true) - $t) * 1000);
    $out[] = $res;
}
echo json_encode($out, JSON_INVALID_UTF8_SUBSTITUTE | JSON_THROW_ON_ERROR), "\n";
"""

GO_DRIVER = godriver.program(r"""
func run(r **fooking.Router, o op) (interface{}, error) {
	switch o.Op {
	case "connect":
		if *r != nil {
			(*r).Close()
		}
		c, err := fooking.Connect("127.0.0.1", o.Port, o.Secret)
		if err != nil {
			return nil, err
		}
		if o.Timeout > 0 {
			c.Timeout = time.Duration(o.Timeout * float64(time.Second))
		}
		*r = c
		return nil, nil
	case "close":
		return nil, (*r).Close()
	}
	if v, ok, err := v2(*r, o); ok {
		return v, err
	}
	panic("unknown op " + o.Op)
}

func main() {
	var ops []op
	if err := json.NewDecoder(os.Stdin).Decode(&ops); err != nil {
		panic(err)
	}
	var r *fooking.Router
	out := []map[string]interface{}{}
	for _, o := range ops {
		t := time.Now()
		res := outcome(run(&r, o))
		res["ms"] = time.Since(t).Milliseconds()
		out = append(out, res)
	}
	emit(out)
}
""", imports="\t\"time\"\n")


@pytest.fixture(scope="module")
def go_driver(tmp_path_factory):
    return peers.go_build(tmp_path_factory.mktemp("godriver_v2"), GO_DRIVER)


@pytest.fixture(params=["php", "go"])
def client(request, tmp_path):
    """run(ops) -> the driver's results, one per op."""
    if request.param == "php":
        if not shutil.which("php"):
            pytest.skip("php-cli not installed")
        script = tmp_path / "drive.php"
        script.write_text(PHP_DRIVER % {"lib": "'%s'" % PHP_CLIENT})
        argv = ["php", str(script)]
    else:
        argv = [request.getfixturevalue("go_driver")]

    def run(ops):
        p = subprocess.run(argv, input=json.dumps(ops), capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        out = json.loads(p.stdout)
        assert len(out) == len(ops)
        return out

    run.lang = request.param
    return run


def enc(x):
    """A call argument or an expected result, as the drivers speak them."""
    if isinstance(x, (bytes, str)):
        return rp.b(x).hex()
    if isinstance(x, (list, tuple)):
        return [enc(v) for v in x]
    if isinstance(x, dict):
        return {enc(k): enc(v) for k, v in x.items()}
    return x  # None, bool, int


def call(op, *args):
    return {"op": op, "args": [enc(a) for a in args]}


def connect(port, secret=None, timeout=None):
    o = {"op": "connect", "port": port}
    if secret:
        o["secret"] = secret
    if timeout:
        o["timeout"] = timeout
    return o


OK, BAD, REFUSED, FAILED = "ok", "InvalidArgumentException", "FookingRouterError", "RuntimeException"


def check(results, script):
    """script: [(op, outcome, expected result or None)]; outcome OK compares the
    result (lists of SIDs compared sorted), anything else names the error kind."""
    assert len(results) == len(script)
    for i, (res, (op, outcome, want)) in enumerate(zip(results, script)):
        what = "step %d %s: %r" % (i, op["op"], res)
        if outcome != OK:
            assert res.get("err") == outcome, what
            continue
        assert "err" not in res, what
        got = res["ok"]
        if isinstance(want, list):
            got, want = sorted(got), sorted(enc(want))
        elif op["op"] in ("isOnline", "chMembers", "chSessions", "channels") and got == []:
            got, want = {}, enc(want)  # PHP's empty object
        elif op["op"] == "info":
            # PHP's info() has always kept every "key: n" line, known or not.
            got = {k: v for k, v in got.items() if k in want}
        else:
            want = enc(want)
        assert got == want, what


# ---------------------------------------------------------------- fake v2 gateways

def split16(s):
    return [s[i:i + 16] for i in range(0, len(s), 16)]


class V2Gateway(rp.Gateway):
    """A v2 gateway worker link: AUTH, then, once the router's v2 PING is in
    (answered PONG), its fence channel, CONN of its sessions, and reports of
    what it already holds: BIND per uid, CH_SUB + CH_ADD per channel. It keeps
    session data (self.data) for GW_QUERY."""

    def __init__(self, port, server, worker, nsids=0, binds=(), members=(), data=None):
        rp.Conn.__init__(self, port)
        self.server, self.worker = server, worker
        self.pings, self.pong = 0, True
        self.sids, self.channels = [], set()
        self.data = dict(data or {})
        self.send(rp.AUTH, b"", struct.pack(">II", server, worker))
        assert rp.Conn.recv(self) == (rp.PING, b"", rp.V2_TOKEN), "no v2 PING after AUTH"
        self.send(rp.PONG, b"", rp.V2_TOKEN)
        self.send(rp.HELLO, b"", struct.pack(">I", 2))
        self.fence = ("fence-%d-%d" % (server, worker)).encode()
        self.sub(self.fence)
        self.add_sids([rp.sid(server, worker, i) for i in range(nsids)])
        for uid, sids in binds:
            self.report(rp.BIND, sids, uid)
        for channel, sids in members:
            self.sub(channel)
            self.report(rp.CH_ADD, sids, channel)


class Serve:
    """The links' gateway side while a client runs: GW_QUERY is answered with
    the records of the SIDs the link holds (its data, b"" when none),
    SESSION_SET updates the data, PING is answered; every message but PING is
    recorded per link in order (GW_QUERY as (GW_QUERY, its SIDs sorted, b""),
    since the id and the order of the SIDs are the router's)."""

    def __init__(self, links):
        self.links = links
        self.got = {g: [] for g in links}
        self.error = None
        self.rfd, self.wfd = os.pipe()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def handle(self, g, m):
        t, s, d = m
        if t == rp.PING:
            g.send(rp.PONG, b"", d)
            return
        if t == rp.SESSION_SET:
            g.data[s] = d
        if t == rp.GW_QUERY:
            held = set(g.sids)
            recs = [(x, g.data.get(x, b"")) for x in split16(s) if x in held]
            g.send(rp.GW_ANSWER, b"", rp.gw_answer(struct.unpack(">I", d)[0], recs))
            m = (t, b"".join(sorted(split16(s))), b"")
        self.got[g].append(m)

    def run(self):
        p = select.poll()
        p.register(self.rfd, select.POLLIN)
        byfd = {}
        for g in self.links:
            byfd[g.sock.fileno()] = g
            p.register(g.sock, select.POLLIN)
        try:
            while True:
                for g in self.links:
                    while True:
                        m, g.buf = rp.decode(g.buf)
                        if m is None:
                            break
                        self.handle(g, m)
                for fd, ev in p.poll(60000):
                    if fd == self.rfd:
                        return
                    g = byfd[fd]
                    data = g.sock.recv(1 << 20)
                    if not data:
                        g.eof = True
                        p.unregister(fd)
                    g.buf += data
        except Exception as e:  # reported by stop()
            self.error = e

    def stop(self):
        os.write(self.wfd, b"x")
        self.thread.join(10)
        os.close(self.rfd)
        os.close(self.wfd)
        assert not self.thread.is_alive(), "Serve thread did not stop"
        if self.error:
            raise self.error
        return self.got


def run_with_links(client, bk, links, ops):
    """Runs the client while Serve plays the links; returns (results, what
    each link received, up to a fence)."""
    serve = Serve(links)
    try:
        results = client(ops)
    finally:
        got = serve.stop()
    rest = rp.sync(bk, links)
    return results, {g: got[g] + rest[g] for g in links}


# ---------------------------------------------------------------- against the router

M, M2 = b"m\x00\xff\r\n", b"second"
BIN_UID = b"u\x00\xff"
U = rp.sid(9, 9, 9)  # a session nobody holds


@pytest.fixture
def cluster(router):
    """A router and four v2 links, servers 1 and 2, workers 0 and 1, 3 sessions
    each; a (1/0) also holds 4100 more, and reports a1 bound to "pre" and a
    member of "hall"; d (2/1) holds data for d2."""
    r = router()
    many = [rp.sid(1, 0, 2000 + i) for i in range(4100)]
    a = V2Gateway(r.port, 1, 0, nsids=3, binds=[("pre", [rp.sid(1, 0, 1)])],
                  members=[("hall", [rp.sid(1, 0, 1)])])
    a.add_sids(many)
    b = V2Gateway(r.port, 1, 1, nsids=3)
    c = V2Gateway(r.port, 2, 0, nsids=3)
    d = V2Gateway(r.port, 2, 1, nsids=3, data={rp.sid(2, 1, 2): b"d2\x00data"})
    links = [a, b, c, d]
    bk = rp.Backend(r.port)
    rp.wait_for(lambda: bk.info()["clients"] == 12 + 4100 and bk.count(rp.CH_COUNT, "hall") == 1
                and bk.count(rp.UID_COUNT, "pre") == 1, what="links and reports in")
    yield r, links, bk, many
    bk.close()
    for g in links:
        g.close()


def test_every_v2_call(cluster, client):
    r, links, bk, many = cluster
    a, b, c, d = links
    a0, a1, a2 = a.sids[:3]
    b0, b1, b2 = b.sids
    c0, c1, c2 = c.sids
    d0, d1, d2 = d.sids
    big = [("%03d" % i).encode() + b"x" * 125 for i in range(600)]  # 600 uids of 128 bytes
    ch255 = b"c" * 255
    session16k = bytes(range(256)) * 64
    T = rp.uid_list
    script = [
        (connect(r.port), OK, None),
        # bind, and queries right behind see it
        (call("bindUid", a0, "alice"), OK, None),
        (call("bindUid", c1, "alice"), OK, None),
        (call("bindUid", a2, BIN_UID), OK, None),
        (call("bindUid", b1, "u" * 128), OK, None),
        (call("isUidOnline", "alice"), OK, 2),
        (call("getSidsByUid", "alice"), OK, [a0, c1]),
        (call("getSidsByUid", "nobody"), OK, []),
        (call("getUidBySid", a0), OK, b"alice"),
        (call("getUidBySid", a1), OK, b"pre"),  # the gateway's report
        (call("getUidBySid", a2), OK, BIN_UID),
        (call("getUidBySid", b0), OK, None),
        (call("getUidBySid", U), OK, None),
        (call("unbindUid", c1), OK, None),
        (call("unbindUid", b1), OK, None),
        (call("isUidOnline", "alice"), OK, 1),
        (call("isUidOnline", "u" * 128), OK, 0),
        # uids: listed twice is sent once; a string is a list of one
        (call("sendToUid", ["alice", BIN_UID, "nobody", "alice"], M), OK, None),
        (call("sendToUid", "pre", M2), OK, None),
        (call("kickUid", BIN_UID), OK, None),
        (call("kickUid", ["pre", "nobody"]), OK, None),
        # session data: set, then read back through the gateway
        (call("setSession", a0, b"data\x00\xff"), OK, None),
        (call("getSession", a0), OK, b"data\x00\xff"),
        (call("getSession", b0), OK, b""),
        (call("getSession", U), OK, None),
        (call("setSession", a0, b""), OK, None),
        (call("getSession", a0), OK, b""),
        (call("setSession", a1, session16k), OK, None),
        # channels
        (call("chAdd", [a0, b1, d2], "room"), OK, None),
        (call("chCount", "room"), OK, 3),
        (call("chCount", "none"), OK, 0),
        (call("chMembers", "room"), OK, {a0: b"alice", b1: None, d2: None}),
        (call("chMembers", "none"), OK, {}),
        (call("chSessions", "room"), OK, {a0: b"", b1: b"", d2: b"d2\x00data"}),
        (call("chSessions", "hall"), OK, {a1: session16k}),
        (call("chSessions", "none"), OK, {}),
        (call("channels"), OK, {"room": 3, "hall": 1}),
        # broadcasts, with and without exclusions
        (call("sendAll", M), OK, None),
        (call("sendAll", M, []), OK, None),
        (call("sendAll", M, [a0, c1, a0]), OK, None),
        (call("sendAll", M2, many[:4095]), OK, None),
        (call("chPub", "room", M), OK, None),
        (call("chPub", "room", M, [b1]), OK, None),
        (call("chPub", "hall", M2, [a1]), OK, None),
        (call("chPub", ch255, M, many[:4079]), OK, None),  # all S holds; nobody subscribed
        # online
        (call("isOnline", [a0, U, d2]), OK, {a0: True, U: False, d2: True}),
        (call("isOnline", a1), OK, {a1: True}),
        (call("isOnline", many + [U]), OK, dict([(x, True) for x in many] + [(U, False)])),
        # a uid list over 65535 bytes of S: two messages (508 + 92 uids)
        (call("bindUid", b0, big[0]), OK, None),
        (call("bindUid", b2, big[599]), OK, None),
        (call("sendToUid", big, b"big"), OK, None),
        (call("kickUid", big), OK, None),
        # argument errors: nothing sent
        (call("bindUid", "short", "x"), BAD, None),
        (call("bindUid", a0, ""), BAD, None),
        (call("bindUid", a0, "u" * 129), BAD, None),
        (call("unbindUid", a0 + b"0"), BAD, None),
        (call("sendToUid", [], M), BAD, None),
        (call("sendToUid", ["ok", ""], M), BAD, None),
        (call("sendToUid", ["alice", "u" * 129], M), BAD, None),
        (call("kickUid", ""), BAD, None),
        (call("kickUid", []), BAD, None),
        (call("setSession", "bad", "x"), BAD, None),
        (call("setSession", a0, b"x" * 16385), BAD, None),
        (call("sendAll", M, ["bad"]), BAD, None),
        (call("sendAll", M, many[:4095] + [U]), BAD, None),
        (call("chPub", "", M, [a0]), BAD, None),
        (call("chPub", "c" * 256, M), BAD, None),
        (call("chPub", "room", M, [a0, "bad"]), BAD, None),
        (call("chPub", ch255, M, many[:4080]), BAD, None),
        (call("isOnline", [a0, "bad"]), BAD, None),
        (call("isUidOnline", ""), BAD, None),
        (call("getSidsByUid", "u" * 129), BAD, None),
        (call("getUidBySid", "bad"), BAD, None),
        (call("getSession", ""), BAD, None),
        (call("chCount", ""), BAD, None),
        (call("chMembers", "c" * 256), BAD, None),
        (call("chSessions", ""), BAD, None),
        # still in step: nothing of the above reached the router
        (call("isUidOnline", "alice"), OK, 1),
        (call("info"), OK, {"clients": 12 + 4100, "channels": 4 + 2, "uids": 5, "gateways": [
            {"server": 1, "worker": 0, "clients": 3 + 4100, "channels": 3},
            {"server": 1, "worker": 1, "clients": 3, "channels": 2},
            {"server": 2, "worker": 0, "clients": 3, "channels": 1},
            {"server": 2, "worker": 1, "clients": 3, "channels": 2}]}),
    ]
    results, got = run_with_links(client, bk, links, [s[0] for s in script])
    check(results, script)
    Q = rp.GW_QUERY
    ex = a0 + c1
    ex4095 = b"".join(many[:4095])
    assert got[a] == [
        (rp.BIND, a0, b"alice"),
        (rp.BIND, a2, BIN_UID),
        (rp.SEND_UID, T(["alice", BIN_UID]), M),
        (rp.SEND_UID, T(["pre"]), M2),
        (rp.KICK_UID, T([BIN_UID]), b""),
        (rp.KICK_UID, T(["pre"]), b""),
        (rp.SESSION_SET, a0, b"data\x00\xff"),
        (Q, a0, b""),
        (rp.SESSION_SET, a0, b""),
        (Q, a0, b""),
        (rp.SESSION_SET, a1, session16k),
        (rp.CH_ADD, a0, b"room"),
        (Q, a0, b""),
        (Q, a1, b""),
        (rp.SEND_ALL, b"", M),
        (rp.SEND_ALL, b"", M),
        (rp.SEND_ALL_EX, ex, M),
        (rp.SEND_ALL_EX, ex4095, M2),
        (rp.CH_PUB, b"room", M),
        (rp.CH_PUB_EX, rp.ch_ex("room", [b1]), M),
        (rp.CH_PUB_EX, rp.ch_ex("hall", [a1]), M2),
    ]
    assert got[b] == [
        (rp.BIND, b1, b"u" * 128),
        (rp.UNBIND, b1, b""),
        (Q, b0, b""),
        (rp.CH_ADD, b1, b"room"),
        (Q, b1, b""),
        (rp.SEND_ALL, b"", M),
        (rp.SEND_ALL, b"", M),
        (rp.SEND_ALL_EX, ex, M),
        (rp.SEND_ALL_EX, ex4095, M2),
        (rp.CH_PUB, b"room", M),
        (rp.CH_PUB_EX, rp.ch_ex("room", [b1]), M),
        (rp.BIND, b0, big[0]),
        (rp.BIND, b2, big[599]),
        # the client split the list after 508 uids (508 * 129 = 65532 bytes)
        (rp.SEND_UID, T([big[0]]), b"big"),
        (rp.SEND_UID, T([big[599]]), b"big"),
        (rp.KICK_UID, T([big[0]]), b""),
        (rp.KICK_UID, T([big[599]]), b""),
    ]
    assert got[c] == [
        (rp.BIND, c1, b"alice"),
        (rp.UNBIND, c1, b""),
        (rp.SEND_ALL, b"", M),
        (rp.SEND_ALL, b"", M),
        (rp.SEND_ALL_EX, ex, M),
        (rp.SEND_ALL_EX, ex4095, M2),
    ]
    assert got[d] == [
        (rp.CH_ADD, d2, b"room"),
        (Q, d2, b""),
        (rp.SEND_ALL, b"", M),
        (rp.SEND_ALL, b"", M),
        (rp.SEND_ALL_EX, ex, M),
        (rp.SEND_ALL_EX, ex4095, M2),
        (rp.CH_PUB, b"room", M),
        (rp.CH_PUB_EX, rp.ch_ex("room", [b1]), M),
    ]
    # The client split the big list where S would pass 65535 bytes, not the router.
    assert "refused" not in r.read_log()


def test_split_points(cluster, client):
    """Where the clients cut: IS_ONLINE after 4095 SIDs, a uid list before S
    passes 65535 bytes. Watched on a backend-side proxy: the router sees
    exactly these messages."""
    r, links, bk, many = cluster
    proxy = Proxy(r.port)
    try:
        big = [("%03d" % i).encode() + b"x" * 125 for i in range(600)]
        script = [
            (connect(proxy.port), OK, None),
            (call("isOnline", many), OK, dict((x, True) for x in many)),
            (call("sendToUid", big + [big[0]], b"big"), OK, None),
            (call("isUidOnline", "nobody"), OK, 0),
        ]
        check(client([s[0] for s in script]), script)
        sent = proxy.messages(5)
    finally:
        proxy.close()
    assert [(t, len(s)) for t, s, d in sent] == [
        (rp.IS_ONLINE, 4095 * 16), (rp.IS_ONLINE, 5 * 16),
        (rp.SEND_UID, 508 * 129), (rp.SEND_UID, 92 * 129), (rp.UID_COUNT, 6)]
    assert sent[2][1] + sent[3][1] == rp.uid_list(big)


class Proxy:
    """A loopback TCP proxy in front of the router that records the messages
    the client sends (and passes the router's answers back)."""

    def __init__(self, port):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.port = self.lsock.getsockname()[1]
        self.upstream = port
        self.buf = b""
        self.lock = threading.Condition()
        self.done = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        self.lsock.settimeout(30)
        try:
            down, _ = self.lsock.accept()
        except OSError:
            return
        up = socket.create_connection(("127.0.0.1", self.upstream))
        socks = {down: up, up: down}
        try:
            while not self.done:
                ready, _, _ = select.select(list(socks), [], [], 0.2)
                for s in ready:
                    data = s.recv(1 << 20)
                    if not data:
                        return
                    socks[s].sendall(data)
                    if s is down:
                        with self.lock:
                            self.buf += data
                            self.lock.notify_all()
        finally:
            down.close()
            up.close()

    def messages(self, n, timeout=10):
        out, buf = [], None
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                out, buf = [], self.buf
                while True:
                    m, buf = rp.decode(buf)
                    if m is None:
                        break
                    out.append(m)
                if len(out) >= n or time.monotonic() > deadline:
                    return out
                self.lock.wait(max(0.0, deadline - time.monotonic()))

    def close(self):
        self.done = True
        self.lsock.close()
        self.thread.join(10)


def test_error_answers_raised_connection_kept(router, client):
    """ERROR answers (an answer over ROUTER_ANSWER_MAX) are FookingRouterError /
    *RouterError naming the router's text and the query's type; the connection
    goes on."""
    r = router(ROUTER_ANSWER_MAX=65536)
    crowd = [rp.sid(1, 0, i) for i in range(5000)]
    g = V2Gateway(r.port, 1, 0)
    g.add_sids(crowd)
    g.report(rp.BIND, crowd, "crowd")
    g.sub("big")
    g.report(rp.CH_ADD, crowd, "big")
    bk = rp.Backend(r.port)
    rp.wait_for(lambda: bk.count(rp.CH_COUNT, "big") == 5000, what="reports in")
    script = [
        (connect(r.port), OK, None),
        (call("getSidsByUid", "crowd"), REFUSED, None),  # 80000 bytes
        (call("isUidOnline", "crowd"), OK, 5000),
        (call("chMembers", "big"), REFUSED, None),  # 85000 bytes
        (call("chSessions", "big"), REFUSED, None),  # 100000 bytes of records
        (call("chCount", "big"), OK, 5000),
    ]
    results, got = run_with_links(client, bk, [g], [s[0] for s in script])
    check(results, script)
    for i, qtype in ((1, rp.UID_SIDS), (3, rp.CH_MEMBERS), (4, rp.CH_SESSIONS)):
        assert results[i]["code"] == qtype
        assert "ROUTER_ANSWER_MAX" in results[i]["msg"], results[i]
    # CH_SESSIONS asked the gateway, in two GW_QUERY (its answers must fit a message).
    assert [m[0] for m in got[g]] == [rp.GW_QUERY] * len(got[g])
    assert sorted(x for m in got[g] for x in split16(m[1])) == sorted(crowd)
    g.close()
    bk.close()


def test_bus_mode_router_without_redis_refuses_every_query(router, client):
    """A bus router whose Redis is unreachable answers every query ERROR; the
    libraries raise it as a refusal and go on."""
    r = router(BUS="redis://127.0.0.1:%d" % fk.free_port())
    sid = rp.sid(1, 0, 0).decode()
    queries = [("isOnline", [sid]), ("isUidOnline", "alice"), ("getSidsByUid", "alice"),
               ("getUidBySid", sid), ("getSession", sid), ("chCount", "room"),
               ("chMembers", "room"), ("chSessions", "room"), ("channels",)]
    types = [rp.IS_ONLINE, rp.UID_COUNT, rp.UID_SIDS, rp.SID_UID, rp.SESSION_GET,
             rp.CH_COUNT, rp.CH_MEMBERS, rp.CH_SESSIONS, rp.CHANNELS]
    results = client([connect(r.port)] + [call(*q) for q in queries])
    assert results[0] == {"ok": None, "ms": results[0]["ms"]}
    for res, qtype in zip(results[1:], types):
        assert res["err"] == REFUSED and res["code"] == qtype, res
        assert "bus is not connected" in res["msg"], res


def test_secret_then_v2(router, client):
    r = router(ROUTER_SECRET="v2-secret")
    g = rp.Gateway(r.port, 1, 0, nsids=2, secret=b"v2-secret")
    bk = rp.Backend(r.port, secret=b"v2-secret")
    rp.wait_info(r.port, lambda i: i["clients"] == 2, secret=b"v2-secret")
    s0 = g.sids[0]
    script = [
        (connect(r.port, secret="v2-secret"), OK, None),
        (call("bindUid", s0, "alice"), OK, None),
        (call("getSidsByUid", "alice"), OK, [s0]),
    ]
    check(client([s[0] for s in script]), script)
    assert rp.sync(bk, [g])[g] == [(rp.BIND, s0, b"alice")]
    g.close()
    bk.close()


# ---------------------------------------------------------------- against a fake router

def msg(t, s=b"", d=b""):
    return rp.encode(t, s, d)


SID = rp.sid(1, 0, 0)
CLOSE, SILENT = "close", "silent"


class FakeRouter:
    """Serves one connection per case, in order: reads each request (its type
    must be the expected one), answers with the given bytes (or closes, or
    says nothing), then records what the client did: "closed" (EOF) or
    "sent more"."""

    def __init__(self, cases):
        self.cases = cases
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        self.seen = []
        self.error = None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            self.lsock.settimeout(30)
            for steps in self.cases:
                s, _ = self.lsock.accept()
                c = rp.Conn.wrap(s)
                closed = False
                for qtype, reply in steps:
                    t, _, _ = c.recv()
                    assert t == qtype, "client sent %s, expected %s" % (t, qtype)
                    if reply == CLOSE:
                        closed = True
                        break
                    if reply != SILENT:
                        c.send_raw(reply)
                if closed:
                    c.close()
                    self.seen.append("closed")
                    continue
                # Then the client must close (after a failure) or move on.
                try:
                    c.recv(timeout=15)
                    self.seen.append("sent more")
                except EOFError:
                    self.seen.append("closed")
                except TimeoutError:
                    self.seen.append("kept open")
                c.close()
        except Exception as e:  # reported by stop()
            self.error = e

    def stop(self):
        self.thread.join(30)
        self.lsock.close()
        assert not self.thread.is_alive()
        if self.error:
            raise self.error
        return self.seen


REC = rp.sid(1, 0, 5)

# (call, reply): every reply here is wrong; the call must fail, the client
# close the connection, and a second call on it fail without sending.
MALFORMED = [
    (("isUidOnline", "x"), msg(rp.UID_COUNT, d=b"\x00\x00\x01")),
    (("isUidOnline", "x"), msg(rp.UID_COUNT, d=b"\x00\x00\x00\x01\x00")),
    (("isUidOnline", "x"), msg(rp.CH_COUNT, d=b"\x00\x00\x00\x01")),
    (("isUidOnline", "x"), msg(rp.UID_COUNT, s=b"x", d=b"\x00\x00\x00\x01")),
    (("isUidOnline", "x"), msg(rp.ERROR, d=struct.pack(">H", rp.CH_COUNT) + b"not yours")),
    (("isUidOnline", "x"), msg(rp.ERROR, d=b"\x00")),
    (("isUidOnline", "x"), struct.pack(">HHI", rp.UID_COUNT, 0, 0xFFFFFFFF)),
    (("isOnline", [SID, REC]), msg(rp.IS_ONLINE, d=b"\x01")),
    (("isOnline", [SID, REC]), msg(rp.IS_ONLINE, d=b"\x01\x02")),
    (("getSidsByUid", "x"), msg(rp.UID_SIDS, d=SID + b"x")),
    (("getUidBySid", SID), msg(rp.SID_UID, d=b"u" * 129)),
    (("getSession", SID), msg(rp.SESSION_GET)),
    (("getSession", SID), msg(rp.SESSION_GET, d=b"\x02")),
    (("getSession", SID), msg(rp.SESSION_GET, d=b"\x00x")),
    (("getSession", SID), msg(rp.SESSION_GET, d=b"\x01" + b"x" * 16385)),
    (("chCount", "room"), msg(rp.CH_COUNT, d=b"")),
    (("chMembers", "room"), msg(rp.CH_MEMBERS, d=REC)),
    (("chMembers", "room"), msg(rp.CH_MEMBERS, d=REC + b"\x05ab")),
    (("chMembers", "room"), msg(rp.CH_MEMBERS, d=REC + b"\xc8" + b"u" * 200)),
    (("chSessions", "room"), msg(rp.CH_SESSIONS, d=REC + b"\x00\x00")),
    (("chSessions", "room"), msg(rp.CH_SESSIONS, d=REC + struct.pack(">I", 9) + b"short")),
    (("chSessions", "room"), msg(rp.CH_SESSIONS, d=REC + struct.pack(">I", 16385)
                                 + b"x" * 16385)),
    (("channels",), msg(rp.CHANNELS, d=b"\x00\x00\x00\x00\x01")),
    (("channels",), msg(rp.CHANNELS, d=b"\x04room\x00\x00")),
    (("info",), msg(rp.UID_COUNT, d=b"\x00\x00\x00\x01")),
    # a header that promises more than comes: a timeout, not a hang
    (("isUidOnline", "x"), struct.pack(">HHI", rp.UID_COUNT, 0, 1000) + b"\x00" * 10),
    (("isUidOnline", "x"), SILENT),
    (("isUidOnline", "x"), CLOSE),
]
QTYPE = {"isUidOnline": rp.UID_COUNT, "isOnline": rp.IS_ONLINE, "getSidsByUid": rp.UID_SIDS,
         "getUidBySid": rp.SID_UID, "getSession": rp.SESSION_GET, "chCount": rp.CH_COUNT,
         "chMembers": rp.CH_MEMBERS, "chSessions": rp.CH_SESSIONS, "channels": rp.CHANNELS,
         "info": rp.INFO}


def test_malformed_answers_timeouts_and_eof_are_errors(client):
    fake = FakeRouter([[(QTYPE[c[0]], reply)] for c, reply in MALFORMED])
    ops = []
    for c, reply in MALFORMED:
        ops += [connect(fake.port, timeout=0.5), call(*c), call(*c)]
    results = client(ops)
    seen = fake.stop()
    for i, (c, reply) in enumerate(MALFORMED):
        first, second = results[3 * i + 1], results[3 * i + 2]
        what = "case %d %r: %r / %r" % (i, c, first, second)
        assert first.get("err") == FAILED, what
        assert first["ms"] < 5000, what  # the 0.5 s timeout, never a hang
        assert second.get("err") == FAILED, what
        assert seen[i] == "closed", what


# Well-formed answers, and an ERROR that keeps the connection.
GOOD = [
    ([("isUidOnline", "x")], [msg(rp.UID_COUNT, d=b"\x00\x01\x00\x00")], [65536]),
    ([("isOnline", [SID, REC])], [msg(rp.IS_ONLINE, d=b"\x00\x01")], [{SID: False, REC: True}]),
    ([("getSession", SID)], [msg(rp.SESSION_GET, d=b"\x01" + b"x" * 16384)], [b"x" * 16384]),
    ([("getSession", SID)], [msg(rp.SESSION_GET, d=b"\x00")], [None]),
    ([("getUidBySid", SID)], [msg(rp.SID_UID, d=b"u" * 128)], [b"u" * 128]),
    ([("chMembers", "room")], [msg(rp.CH_MEMBERS, d=REC + b"\x00" + SID + b"\x02ab")],
     [{REC: None, SID: b"ab"}]),
    ([("chSessions", "room")], [msg(rp.CH_SESSIONS, d=REC + b"\x00" * 4 + SID
                                    + struct.pack(">I", 2) + b"\x00\xff")],
     [{REC: b"", SID: b"\x00\xff"}]),
    ([("channels",)], [msg(rp.CHANNELS, d=b"\x01a\x00\x00\x00\x02" + b"\x02bc\xff\xff\xff\xff")],
     [{"a": 2, "bc": 0xFFFFFFFF}]),
    # An old router: no uids line (0); a newer one: a key nobody knows yet.
    ([("info",)], [msg(rp.INFO, d=b"clients: 1\r\nchannels: 0\r\ngateway: 1\t0\t1\t0\r\n")],
     [{"clients": 1, "channels": 0, "uids": 0,
       "gateways": [{"server": 1, "worker": 0, "clients": 1, "channels": 0}]}]),
    ([("info",)], [msg(rp.INFO, d=b"clients: 0\r\nchannels: 0\r\nuids: 7\r\nfuture: 9\r\n")],
     [{"clients": 0, "channels": 0, "uids": 7, "gateways": []}]),
    # ERROR: raised, and the next answer on the connection is read as usual.
    ([("isUidOnline", "x"), ("isUidOnline", "x")],
     [msg(rp.ERROR, d=struct.pack(">H", rp.UID_COUNT) + b"no such thing"),
      msg(rp.UID_COUNT, d=b"\x00\x00\x00\x07")], [REFUSED, 7]),
]


def test_well_formed_answers_decoded(client):
    fake = FakeRouter([[(QTYPE[c[0]], rep) for c, rep in zip(calls, replies)]
                       for calls, replies, _ in GOOD])
    ops, script = [], []
    for calls, replies, wants in GOOD:
        ops.append(connect(fake.port, timeout=5))
        script.append((ops[-1], OK, None))
        for c, want in zip(calls, wants):
            ops.append(call(*c))
            script.append((ops[-1], want, None) if want == REFUSED else (ops[-1], OK, want))
    ops.append({"op": "close"})  # so the last case sees its connection go
    script.append((ops[-1], OK, None))
    results = client(ops)
    check(results, script)
    refused = [r for r in results if r.get("err") == REFUSED]
    assert len(refused) == 1 and refused[0]["code"] == rp.UID_COUNT
    assert "no such thing" in refused[0]["msg"]
    assert fake.stop() == ["closed"] * len(GOOD)
