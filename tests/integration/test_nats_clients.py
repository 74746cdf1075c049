"""The Go library's NATS transport (example/clients/go: fooking.NATS), for
gateways with BUS = "nats://...": commands published straight on the subjects
the gateway workers subscribe to (natslink.h), queries as NATS requests on
<prefix>api, which a router on the bus answers (router_nats.c).

The Go side runs through a small interpreter (GO_DRIVER) that takes a list of
calls as JSON on stdin, every string hex-encoded, and prints per call {"ok":
result} or {"err": kind, "msg", "code"} (kind as in test_redis_clients_v2.py,
plus NoRouter and MaxPayload).

First, with a bare nats-server and a test subscriber on "<prefix>>": the exact
subjects and bytes of every command (grouping by worker, escaping of names,
4095 SIDs a message, one message per uid), bad arguments publishing nothing,
the URL forms, and every query's request bytes and answer decoding against a
fake router played by the test. Then, on natsbus.py's cluster (three
nats-servers, two gateways x 2 workers, routers): every call end to end, with
the marker technique of swarm.py for what the commands delivered, an ERROR
answer, and queries failing clearly while commands still work with no router.
"""

import json
import os
import struct
import subprocess
import time

import pytest

import fk
import godriver
import peers
import rproto as rp
from natsbus import LINKS, NatsClient, natsbus, received, sids  # noqa: F401
from natsbus import PREFIX as BUS_PREFIX
from peers import NATS_SERVER, NatsCluster
from swarm import assert_delivered, new_marker

GO_DRIVER = godriver.program(r"""
func run(c *fooking.NATS, o op) (interface{}, error) {
	a := o.Args
	switch o.Op {
	case "maxAnswer":
		c.MaxAnswer = o.N
		return nil, nil
	case "timeout":
		c.Timeout = time.Duration(o.N) * time.Millisecond
		return nil, nil
	case "flush":
		return nil, c.Flush()
	case "sleep":
		time.Sleep(time.Duration(o.N) * time.Millisecond)
		return nil, nil
	case "name":
		return fooking.NATSName(str(a[0])), nil
	case "parseURL":
		s, u, p, t, err := fooking.ParseNATSURL(str(a[0]))
		return map[string]interface{}{"servers": s, "user": u, "pass": p, "token": t}, err
	case "online":
		return c.Online(str(a[0]))
	}
	if v, ok, err := v2(c, o); ok {
		return v, err
	}
	panic("unknown op " + o.Op)
}

func main() {
	var ops []op
	if err := json.NewDecoder(os.Stdin).Decode(&ops); err != nil {
		panic(err)
	}
	r, err := fooking.ConnectNATS(os.Args[1], os.Args[2])
	if err != nil {
		emit(map[string]interface{}{"connect": err.Error(),
			"invalid": errors.Is(err, fooking.ErrInvalidArgument)})
		return
	}
	defer r.Close()
	out := []map[string]interface{}{}
	for _, o := range ops {
		v, err := run(r, o)
		res := outcome(v, err)
		var re *fooking.RouterError
		switch {
		case errors.As(err, &re):
			res["text"] = re.Text
		case errors.Is(err, fooking.ErrNoRouter):
			res["err"], res["msg"], res["code"] = "NoRouter", err.Error(), 0
			res["noResponders"] = errors.Is(err, nats.ErrNoResponders)
			res["timeout"] = errors.Is(err, nats.ErrTimeout)
		case errors.Is(err, nats.ErrMaxPayload):
			res["err"], res["msg"], res["code"] = "MaxPayload", err.Error(), 0
		}
		out = append(out, res)
	}
	emit(out)
}
""", imports="\t\"time\"\n\n\t\"github.com/nats-io/nats.go\"\n\n")


def make_sid(server, worker, n):
    """A well-formed SID of (server, worker) that no gateway handed out."""
    v = ((n + 1) << 24) | (server << 11) | (worker << 6) | (n & 63)
    return b"%016x" % v


def enc(x):
    """A call argument or an expected result, as the driver speaks them."""
    if isinstance(x, (bytes, str)):
        return rp.b(x).hex()
    if isinstance(x, (list, tuple)):
        return [enc(v) for v in x]
    if isinstance(x, dict):
        return {enc(k): enc(v) for k, v in x.items()}
    return x  # None, bool, int


def call(op, *args, n=None):
    c = {"op": op, "args": [enc(a) for a in args]}
    if n is not None:
        c["N"] = n
    return c


def escaped(name):
    """A name in a subject, as nbus.c writes it."""
    name = rp.b(name)
    if not name:
        return "%"
    return "".join(chr(c) if chr(c).isascii() and (chr(c).isalnum() or chr(c) in "_-")
                   else "%%%02X" % c for c in name)


@pytest.fixture(scope="module")
def go_driver(tmp_path_factory):
    return peers.go_build(tmp_path_factory.mktemp("nats-godriver"), GO_DRIVER)


class Lib:
    """The Go NATS transport: run(ops) -> one result per op, all on one
    fooking.NATS (one connection)."""

    def __init__(self, driver, url, prefix):
        self.argv = [driver, url, prefix]

    def start(self, ops):
        p = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        p.stdin.write(json.dumps(ops))   # the driver reads it all before it starts
        p.stdin.close()
        p.stdin = None
        return p

    def finish(self, p, n):
        try:
            out, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        assert p.returncode == 0, "go driver failed:\n%s%s" % (out, err)
        res = json.loads(out)
        if n is not None:
            assert isinstance(res, list) and len(res) == n, res
        return res

    def run(self, ops):
        return self.finish(self.start(ops), len(ops))

    def ok(self, *ops):
        out = self.run(list(ops))
        bad = [(o, r) for o, r in zip(ops, out) if "ok" not in r]
        assert not bad, "calls failed: %r" % bad
        return [r["ok"] for r in out]

    def one(self, *c):
        return self.ok(call(*c))[0]


# ---------------------------------------------------------------- a bare nats-server

@pytest.fixture(scope="module")
def bare_nats(tmp_path_factory):
    if not os.path.exists(NATS_SERVER):
        pytest.skip("nats-server not installed")
    c = NatsCluster(tmp_path_factory.mktemp("bare-nats"), n=1).start()
    yield c
    c.stop()


END = b"-- end --"


def collect(nats, lib, prefix, ops, answer=None):
    """Runs ops (then a SEND_ALL END) while a test subscriber listens on
    "<prefix>>"; answer(type, S, D) -> the reply payload (or None: no reply) plays
    the router for the requests on <prefix>api. Returns ([(subject, payload)]
    before END, [(reply subject, payload)] of the api requests, results)."""
    sub = NatsClient(nats.ports[0])
    try:
        sub.subscribe(prefix + ">")
        sub.flush()
        p = lib.start(ops + [call("sendAll", END)])
        got, requests = [], []
        deadline = time.monotonic() + 30
        while True:
            m = sub.next_msg(max(0.0, deadline - time.monotonic()))
            assert m is not None, "END never published; got %r" % [g[0] for g in got]
            subj, reply, data = m
            if subj == prefix + "api":
                requests.append((reply, data))
                msg, rest = rp.decode(data)
                assert msg is not None and rest == b"", data
                a = answer(*msg) if answer else None
                if a is not None:
                    sub.publish(reply, a)
                continue
            assert reply is None, (subj, reply)
            if data == rp.encode(rp.SEND_ALL, b"", END):
                break
            got.append((subj, data))
        results = lib.finish(p, len(ops) + 1)
        assert sub.next_msg(0.2) is None   # nothing after END
    finally:
        sub.close()
    assert results[-1] == {"ok": None}
    return got, requests, results[:-1]


def assert_published(got, expect):
    assert [s for s, _ in got] == [s for s, _ in expect]
    for i, (g, e) in enumerate(zip(got, expect)):
        assert g == e, "message %d on %s: got %r..., expected %r..." % (i, g[0], g[1][:40],
                                                                      e[1][:40])


NAMES = ["a.b", "*", ">", "with space", "100%", "salle \xe9", "\u6f22\u5b57", "a.*.>",
         "%41", "x" * 255, "_-AZaz09"]


def test_names_are_escaped_as_the_gateways_do(bare_nats, go_driver):
    """NATSName is nbus.c's escaping: %XX (uppercase hex) for every byte outside
    [A-Za-z0-9_-], "%" for the empty name."""
    lib = Lib(go_driver, bare_nats.url(), "n.")
    names = NAMES + ["", "\x00\xff\x7f", "\t\r\n"]
    out = lib.ok(*[call("name", n) for n in names])
    assert out == [escaped(n) for n in names]
    assert out[:5] == ["a%2Eb", "%2A", "%3E", "with%20space", "100%25"]
    assert out[5] == "salle%20%C3%A9" and out[-3] == "%"


def test_every_command_publishes_the_routers_bytes(bare_nats, go_driver):
    """Each command is the message a router with this BUS would publish, on the
    subject the gateway workers subscribe to: SIDs grouped by the worker in
    them (first appearance order, at most 4095 a message) on gw.<s>.<w>,
    SEND_ALL(_EX) on all, CH_PUB(_EX) on ch.<escaped name>, SEND_UID and
    KICK_UID once per distinct uid on u.<escaped uid> with S = that uid."""
    prefix = "cmd."
    lib = Lib(go_driver, bare_nats.url(), prefix)
    a, a2, c = make_sid(1, 0, 1), make_sid(1, 0, 2), make_sid(2, 1, 3)
    top = make_sid(8191, 31, 4)
    msg = b"m\x00\xff\r\n"
    many = [make_sid(1, 0, 1000 + i) for i in range(5000)]
    few = [make_sid(2, 1, 9000 + i) for i in range(3)]
    data = bytes(range(256)) * 64   # 16384 bytes, every byte value
    uid = b"u\x00\xff" + b"x" * 125
    uids = ["alice", "a.b", "alice", "*", ">", " ", "%", "\xe9", uid, "a.b"]
    ops = [
        call("kick", [a, c]),
        call("sendMsg", [a, c, top, a2], msg),
        call("sendAll", msg),
        call("chAdd", [c, a], "room"),
        call("chDel", [a], "room"),
        call("sendMsg", few[:1] + many + few[1:], b"bulk"),
        call("sendMsg", [], b"nobody"),
        call("kick", []),
        call("bindUid", a, uid), call("bindUid", c, "bob"), call("unbindUid", a2),
        call("setSession", c, data), call("setSession", a, ""),
        call("sendAll", "to all", [a, c, a]),
        call("sendAll", "ex many", many[:4095]),
        call("chPub", "room", "to room", [c]),
        call("chPub", "x" * 255, "long", many[:4079]),
        call("sendToUid", uids, msg),
        call("kickUid", ["bob", "bob", "a.b"]),
        call("kickUid", "solo"),
    ] + [call("chPub", n, msg) for n in NAMES] + [call("chAdd", [a, c], n) for n in NAMES[:3]]
    got, requests, results = collect(bare_nats, lib, prefix, ops)
    assert results == [{"ok": None}] * len(ops)
    assert requests == []
    gw = lambda s, w: prefix + "gw.%d.%d" % (s, w)  # noqa: E731
    ch = lambda n: prefix + "ch." + escaped(n)  # noqa: E731
    u = lambda n: prefix + "u." + escaped(n)  # noqa: E731
    expect = [
        (gw(1, 0), rp.encode(rp.KICK, a)),
        (gw(2, 1), rp.encode(rp.KICK, c)),
        (gw(1, 0), rp.encode(rp.SEND_MSG, a + a2, msg)),
        (gw(2, 1), rp.encode(rp.SEND_MSG, c, msg)),
        (gw(8191, 31), rp.encode(rp.SEND_MSG, top, msg)),
        (prefix + "all", rp.encode(rp.SEND_ALL, b"", msg)),
        (gw(2, 1), rp.encode(rp.CH_ADD, c, b"room")),
        (gw(1, 0), rp.encode(rp.CH_ADD, a, b"room")),
        (gw(1, 0), rp.encode(rp.CH_DEL, a, b"room")),
        (gw(2, 1), rp.encode(rp.SEND_MSG, b"".join(few), b"bulk")),
        (gw(1, 0), rp.encode(rp.SEND_MSG, b"".join(many[:4095]), b"bulk")),
        (gw(1, 0), rp.encode(rp.SEND_MSG, b"".join(many[4095:]), b"bulk")),
        (gw(1, 0), rp.encode(rp.BIND, a, uid)),
        (gw(2, 1), rp.encode(rp.BIND, c, b"bob")),
        (gw(1, 0), rp.encode(rp.UNBIND, a2)),
        (gw(2, 1), rp.encode(rp.SESSION_SET, c, data)),
        (gw(1, 0), rp.encode(rp.SESSION_SET, a, b"")),
        (prefix + "all", rp.encode(rp.SEND_ALL_EX, a + c, b"to all")),
        (prefix + "all", rp.encode(rp.SEND_ALL_EX, b"".join(many[:4095]), b"ex many")),
        (ch("room"), rp.encode(rp.CH_PUB_EX, b"\x04room" + c, b"to room")),
        (ch("x" * 255), rp.encode(rp.CH_PUB_EX, b"\xff" + b"x" * 255 + b"".join(many[:4079]),
                                  b"long")),
    ]
    seen = []
    for n in uids:
        if n not in seen:
            seen.append(n)
            expect.append((u(n), rp.encode(rp.SEND_UID, rp.uid_list([n]), msg)))
    expect += [(u("bob"), rp.encode(rp.KICK_UID, b"\x03bob")),
               (u("a.b"), rp.encode(rp.KICK_UID, b"\x03a.b")),
               (u("solo"), rp.encode(rp.KICK_UID, b"\x04solo"))]
    expect += [(ch(n), rp.encode(rp.CH_PUB, rp.b(n), msg)) for n in NAMES]
    for n in NAMES[:3]:
        expect += [(gw(1, 0), rp.encode(rp.CH_ADD, a, rp.b(n))),
                   (gw(2, 1), rp.encode(rp.CH_ADD, c, rp.b(n)))]
    assert_published(got, expect)
    # The subjects are NATS subjects without wildcards: one token per '.'.
    assert ch("a.*.>") == prefix + "ch.a%2E%2A%2E%3E"
    assert u(" ") == prefix + "u.%20"


def test_bad_arguments_publish_nothing(bare_nats, go_driver):
    """Every call with a bad argument fails (ErrInvalidArgument) before anything
    is published or asked; a message over the server's max_payload fails the
    whole call (nats.ErrMaxPayload) with nothing of it published."""
    prefix = "args."
    lib = Lib(go_driver, bare_nats.url(), prefix)
    sid, other = make_sid(1, 0, 1), make_sid(2, 1, 3)
    short, nothex = "0123456789abcde", "0123456789abcdeg"
    many = [make_sid(1, 0, 100 + i) for i in range(4096)]
    bad = [
        call("kick", [sid, short]), call("kick", [nothex]), call("sendMsg", [short], "m"),
        call("sendMsg", [sid, nothex], "m"), call("chAdd", [sid], ""),
        call("chAdd", [sid], "x" * 256), call("chAdd", [short], "room"), call("chDel", [sid], ""),
        call("chDel", [nothex], "room"), call("chPub", "", "m"), call("chPub", "x" * 256, "m"),
        call("bindUid", short, "u"), call("bindUid", nothex, "u"), call("bindUid", sid, ""),
        call("bindUid", sid, "x" * 129), call("unbindUid", short), call("unbindUid", nothex),
        call("sendToUid", [], "m"), call("sendToUid", ["x" * 129], "m"),
        call("sendToUid", ["ok", ""], "m"), call("kickUid", []), call("kickUid", ["ok", "y" * 129]),
        call("setSession", sid, "d" * 16385), call("setSession", short, ""),
        call("setSession", nothex, "d"),
        call("sendAll", "m", [short]), call("sendAll", "m", many),
        call("chPub", "", "m", [sid]), call("chPub", "x" * 256, "m", [sid]),
        call("chPub", "x" * 255, "m", many[:4080]), call("chPub", "room", "m", [short]),
        call("isOnline", [sid, short]), call("isOnline", [nothex]), call("online", short),
        call("isUidOnline", ""), call("isUidOnline", "x" * 129),
        call("getSidsByUid", ""), call("getSidsByUid", "x" * 129),
        call("getUidBySid", short), call("getUidBySid", nothex),
        call("getSession", short), call("getSession", nothex),
        call("chCount", ""), call("chCount", "x" * 256), call("chMembers", ""),
        call("chMembers", "x" * 256), call("chSessions", ""), call("chSessions", "x" * 256),
    ]
    huge = b"h" * (1 << 20)   # the server's max_payload (1 MiB) with the header on top
    # Where only the first message of a call is over, nothing goes either.
    over = [call("sendMsg", [sid, other], huge), call("sendAll", huge),
            call("chPub", "room", huge), call("sendToUid", ["b" * 128, "a"], huge[:-10]),
            call("sendMsg", many, huge[:-8 - 16])]
    got, requests, results = collect(bare_nats, lib, prefix, bad + over)
    assert got == [] and requests == []
    wrong = [(c["op"], r) for c, r in zip(bad, results)
             if r.get("err") != "InvalidArgumentException"]
    assert not wrong, wrong
    assert [r["err"] for r in results[len(bad):]] == ["MaxPayload"] * len(over), results[len(bad):]
    assert "nothing was published" in results[-1]["msg"]
    # Just under the limit goes.
    fits = b"f" * ((1 << 20) - 8 - 16)
    got, _, results = collect(bare_nats, lib, prefix, [call("sendMsg", [sid], fits)])
    assert results == [{"ok": None}]
    assert got == [(prefix + "gw.1.0", rp.encode(rp.SEND_MSG, sid, fits))]


def test_url_forms(tmp_path, go_driver):
    """The gateways' BUS forms: servers in order (each may repeat nats://), user
    and password or a token before the first '@'; connecting with them to
    servers that require them works, a wrong one or a bad URL fails."""
    if not os.path.exists(NATS_SERVER):
        pytest.skip("nats-server not installed")
    forms = {
        "nats://127.0.0.1:4222": (["nats://127.0.0.1:4222"], "", "", ""),
        "nats://a:1,b:2,nats://c:3": (["nats://a:1", "nats://b:2", "nats://c:3"], "", "", ""),
        "nats://u:p:w@h:1,h2:2": (["nats://h:1", "nats://h2:2"], "u", "p:w", ""),
        "nats://tok@[::1]:4222": (["nats://[::1]:4222"], "", "", "tok"),
        "nats://:pw@h:1": (["nats://h:1"], "", "pw", ""),
    }
    bad = ["redis://h:1", "nats://", "nats://h", "nats://h:0", "nats://h:65536", "nats://h:x",
           "nats://@h:1", "nats://h:1,", "nats://h:1/db", "nats://:1", "nats://h: 1",
           "nats://h:1?x", "nats://h:1,,h:2", "nats://h:1,nats://",
           "nats://" + ",".join("h:%d" % (i + 1) for i in range(17)),
           "nats://" + "u" * 256 + "@h:1"]
    srv = NatsCluster(tmp_path / "plain", n=1).start()
    users = NatsCluster(tmp_path / "users", n=1, args=["--user", "fk", "--pass", "s3cret"]).start()
    token = NatsCluster(tmp_path / "token", n=1, args=["--auth", "t0ken"]).start()
    try:
        lib = Lib(go_driver, srv.url(), "p.")
        out = lib.run([call("parseURL", f) for f in forms] + [call("parseURL", f) for f in bad])
        for (f, want), r in zip(forms.items(), out):
            assert r == {"ok": dict(zip(("servers", "user", "pass", "token"), want))}, (f, r)
        wrong = [(f, r) for f, r in zip(bad, out[len(forms):])
                 if r.get("err") != "InvalidArgumentException"]
        assert not wrong, wrong
        # The gateways take and refuse the same (fooking -t).
        keys = {"HOST": "127.0.0.1", "PORT": peers.free_port(), "LOG_FILE": "", "WORKER_NUM": 1,
                "BACKEND_SERVER": "127.0.0.1:9000"}
        for i, f in enumerate(list(forms) + bad[1:]):   # bad[0] is a Redis BUS
            conf = fk.write_config(tmp_path / ("check%d.lua" % i), dict(keys, BUS=f))
            r = fk.run_check(conf)
            assert (r.returncode == 0) == (f in forms), (f, r.stdout + r.stderr)
        dead = "127.0.0.1:%d" % peers.free_port()
        for url in [users.url(auth="fk:s3cret"), token.url(auth="t0ken"),
                    "nats://fk:s3cret@%s,nats://127.0.0.1:%d" % (dead, users.ports[0]),
                    "nats://%s,%s" % (dead, srv.url()[len("nats://"):])]:
            res = Lib(go_driver, url, "p.").run([call("flush"), call("sendAll", "x")])
            assert res == [{"ok": None}] * 2, (url, res)
        for url in [users.url(auth="fk:wrong"), users.url(), token.url(auth="nope"),
                    "nats://%s" % dead]:
            res = Lib(go_driver, url, "p.").finish(Lib(go_driver, url, "p.").start([]), None)
            assert "connect" in res and not res["invalid"], (url, res)
        for url, prefix in [("nats:/h:1", "p."), (srv.url(), "a b"), (srv.url(), "a.*."),
                            (srv.url(), ".a"), (srv.url(), "a..b"), (srv.url(), "x" * 128)]:
            res = Lib(go_driver, url, prefix).finish(Lib(go_driver, url, prefix).start([]), None)
            assert "connect" in res and res["invalid"], (url, prefix, res)
    finally:
        for c in (srv, users, token):
            c.stop()


def error_answer(typ, text):
    return rp.encode(rp.ERROR, b"", struct.pack(">H", typ) + rp.b(text))


def test_queries_ask_on_api_and_decode_the_answers(bare_nats, go_driver):
    """Each query is one request on <prefix>api: the router-protocol query
    message (IS_ONLINE split at 4095 SIDs); the answer is decoded as Router
    decodes it: an ERROR answer is the *RouterError, an answer over MaxAnswer
    too, a malformed one an error, no answer within Timeout an ErrNoRouter
    (nats.ErrTimeout), and no router subscribed an ErrNoRouter at once
    (nats.ErrNoResponders)."""
    prefix = "q."
    lib = Lib(go_driver, bare_nats.url(), prefix)
    a, b, c = make_sid(1, 0, 1), make_sid(2, 1, 2), make_sid(1, 1, 3)
    many = [make_sid(1, 0, 100 + i) for i in range(5000)]
    info = b"clients: 3\r\nchannels: 1\r\nuids: 2\r\ngateway: 1\t0\t2\t1\r\ngateway: 2\t1\t1\t0\r\n"
    rec = lambda s, d: s + struct.pack(">I", len(d)) + d  # noqa: E731
    # (call, the request's type and S, the answer, the expected result)
    script = [
        (call("isOnline", [a, b, c]), (rp.IS_ONLINE, a + b + c),
         rp.encode(rp.IS_ONLINE, b"", b"\x01\x00\x01"), {"ok": enc({a: True, b: False, c: True})}),
        (call("online", b), (rp.IS_ONLINE, b), rp.encode(rp.IS_ONLINE, b"", b"\x01"), {"ok": True}),
        (call("isUidOnline", "a.b"), (rp.UID_COUNT, b"a.b"),
         rp.encode(rp.UID_COUNT, b"", struct.pack(">I", 3)), {"ok": 3}),
        (call("getSidsByUid", "alice"), (rp.UID_SIDS, b"alice"),
         rp.encode(rp.UID_SIDS, b"", a + b), {"ok": enc([a, b])}),
        (call("getSidsByUid", "nobody"), (rp.UID_SIDS, b"nobody"),
         rp.encode(rp.UID_SIDS), {"ok": []}),
        (call("getUidBySid", a), (rp.SID_UID, a), rp.encode(rp.SID_UID, b"", b"al\x00ce"),
         {"ok": enc("al\x00ce")}),
        (call("getUidBySid", b), (rp.SID_UID, b), rp.encode(rp.SID_UID), {"ok": None}),
        (call("getSession", a), (rp.SESSION_GET, a), rp.encode(rp.SESSION_GET, b"", b"\x01\x00d"),
         {"ok": enc(b"\x00d")}),
        (call("getSession", c), (rp.SESSION_GET, c), rp.encode(rp.SESSION_GET, b"", b"\x01"),
         {"ok": ""}),
        (call("getSession", b), (rp.SESSION_GET, b), rp.encode(rp.SESSION_GET, b"", b"\x00"),
         {"ok": None}),
        (call("chCount", "r.1"), (rp.CH_COUNT, b"r.1"),
         rp.encode(rp.CH_COUNT, b"", struct.pack(">I", 70000)), {"ok": 70000}),
        (call("chMembers", "r.1"), (rp.CH_MEMBERS, b"r.1"),
         rp.encode(rp.CH_MEMBERS, b"", a + b"\x05alice" + b + b"\x00"),
         {"ok": enc({a: "alice", b: None})}),
        (call("chSessions", "r.1"), (rp.CH_SESSIONS, b"r.1"),
         rp.encode(rp.CH_SESSIONS, b"", rec(a, b"x\x00") + rec(b, b"")),
         {"ok": enc({a: b"x\x00", b: b""})}),
        (call("channels"), (rp.CHANNELS, b""),
         rp.encode(rp.CHANNELS, b"", b"\x03r.1" + struct.pack(">I", 2) + b"\x01*"
                   + struct.pack(">I", 1)), {"ok": enc({"r.1": 2, "*": 1})}),
        (call("info"), (rp.INFO, b""), rp.encode(rp.INFO, b"", info),
         {"ok": {"clients": 3, "channels": 1, "uids": 2, "gateways": [
             {"server": 1, "worker": 0, "clients": 2, "channels": 1},
             {"server": 2, "worker": 1, "clients": 1, "channels": 0}]}}),
        # ERROR: the router's refusal, as Router returns it.
        (call("chSessions", "big"), (rp.CH_SESSIONS, b"big"),
         error_answer(rp.CH_SESSIONS, "answer over ROUTER_ANSWER_MAX"),
         {"err": "FookingRouterError", "code": rp.CH_SESSIONS,
          "text": "answer over ROUTER_ANSWER_MAX"}),
        (call("info"), (rp.INFO, b""), error_answer(rp.INFO, "x"), {"err": "RuntimeException"}),
        # Malformed: another type, cut short, an S, an ERROR about another query.
        (call("chCount", "r"), (rp.CH_COUNT, b"r"), rp.encode(rp.UID_COUNT, b"", b"\0\0\0\1"),
         {"err": "RuntimeException"}),
        (call("chCount", "r"), (rp.CH_COUNT, b"r"), rp.encode(rp.CH_COUNT, b"", b"\0\0\0\1")[:-1],
         {"err": "RuntimeException"}),
        (call("chCount", "r"), (rp.CH_COUNT, b"r"), rp.encode(rp.CH_COUNT, b"s", b"\0\0\0\1"),
         {"err": "RuntimeException"}),
        (call("chCount", "r"), (rp.CH_COUNT, b"r"), rp.encode(rp.CH_COUNT, b"", b"\0\0\1"),
         {"err": "RuntimeException"}),
        (call("chCount", "r"), (rp.CH_COUNT, b"r"), error_answer(rp.UID_COUNT, "no"),
         {"err": "RuntimeException"}),
        (call("chCount", "r"), (rp.CH_COUNT, b"r"), b"\0\x1c", {"err": "RuntimeException"}),
        # ... and the next query is fine: there is no stream to fall out of step.
        (call("chCount", "r"), (rp.CH_COUNT, b"r"), rp.encode(rp.CH_COUNT, b"", b"\0\0\0\7"),
         {"ok": 7}),
        # MaxAnswer: over it, the *RouterError (as the Redis transport's).
        ({"op": "maxAnswer", "N": 31}, None, None, {"ok": None}),
        (call("getSidsByUid", "alice"), (rp.UID_SIDS, b"alice"),
         rp.encode(rp.UID_SIDS, b"", a + b), {"err": "FookingRouterError", "code": rp.UID_SIDS}),
        (call("getSidsByUid", "bob"), (rp.UID_SIDS, b"bob"), rp.encode(rp.UID_SIDS, b"", a),
         {"ok": enc([a])}),
        ({"op": "maxAnswer", "N": 0}, None, None, {"ok": None}),
        # No answer within Timeout.
        ({"op": "timeout", "N": 300}, None, None, {"ok": None}),
        (call("getUidBySid", c), (rp.SID_UID, c), None, {"err": "NoRouter", "timeout": True,
                                                          "noResponders": False}),
        ({"op": "timeout", "N": 5000}, None, None, {"ok": None}),
    ]
    # IS_ONLINE of 5000 SIDs: two requests, 4095 + 905 SIDs.
    alternate = bytes(i % 2 == 0 for i in range(5000))
    script.append((call("isOnline", many), (rp.IS_ONLINE, b"".join(many[:4095])),
                   rp.encode(rp.IS_ONLINE, b"", alternate[:4095]),
                   {"ok": enc({s: i % 2 == 0 for i, s in enumerate(many)})}))
    second = (rp.IS_ONLINE, b"".join(many[4095:]))
    answers = [s[2] for s in script if s[1] is not None]
    answers.append(rp.encode(rp.IS_ONLINE, b"", alternate[4095:]))
    asked = []

    def answer(t, s, d):
        asked.append((t, s, d))
        return answers[len(asked) - 1]
    got, requests, results = collect(bare_nats, lib, prefix, [s[0] for s in script], answer)
    assert got == []
    want = [s[1] for s in script if s[1] is not None] + [second]
    assert [(t, s) for t, s, _ in asked] == want, results[-3:]
    assert all(d == b"" for _, _, d in asked)
    assert all(r is not None and r.startswith("_INBOX.") for r, _ in requests)
    for (c_, _, _, want_), r in zip(script, results):
        if "err" in want_:
            assert {k: r.get(k) for k in want_} == want_, (c_, r)
        else:
            assert r == want_, (c_, r)
    late = results[[i for i, x in enumerate(script) if x[1] == (rp.SID_UID, c)][0]]
    assert "no router answered" in late["msg"] and "q.api" in late["msg"], late

    # No router subscribed to <prefix>api: at once, nats.ErrNoResponders;
    # commands still go.
    lone = Lib(go_driver, bare_nats.url(), "lone.")
    t0 = time.monotonic()
    out = lone.run([call("chCount", "r"), call("info"), call("isOnline", [a]),
                    call("sendAll", "m"), call("flush")])
    assert time.monotonic() - t0 < 3
    for r in out[:3]:
        assert r["err"] == "NoRouter" and r["noResponders"] and not r["timeout"], r
        assert "no router is subscribed to lone.api" in r["msg"], r
        assert "queries need a router" in r["msg"], r
    assert out[3:] == [{"ok": None}] * 2


def test_go_unit(tmp_path):
    """`go vet fooking` and all of `go test fooking` in GOPATH mode, the NATS
    transport in the package (nats_test.go: NATSName, ParseNATSURL, the prefix
    and answer checks, and that NATS and Redis have one method set)."""
    if not os.path.exists(peers.GO):
        pytest.skip("go not installed (scripts/deps.sh test)")
    peers.skip_without_go_deps()
    env = dict(os.environ, GO111MODULE="off", GOFLAGS="", CGO_ENABLED="0",
               GOPATH="/usr/share/gocode:%s" % (fk.REPO / "example" / "clients" / "go"))
    home = env.get("HOME")
    if not env.get("GOCACHE") and (not home or not os.access(home, os.W_OK)):
        env["GOCACHE"] = str(tmp_path / "gocache")
    for cmd in (["vet", "fooking"], ["test", "-count=1", "fooking"]):
        r = subprocess.run([peers.GO] + cmd, cwd=str(fk.REPO), env=env, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, "go %s failed:\n%s%s" % (cmd[0], r.stdout, r.stderr)


# ---------------------------------------------------------------- the cluster

def subject(kind, name):
    return BUS_PREFIX + kind + escaped(name)


def wait_interest(b, subj, timeout=5.0):
    """Until server 0 (where the driver connects) knows of subj's subscribers on
    the other servers (their routes list it), so that a publish reaches them all."""
    def ok():
        holders, local = 0, False
        for i in range(b.nats.n):
            conns = b.nats.monitor(i, "/connz?subs=1&limit=10000")["connections"] or []
            if any(subj in (c.get("subscriptions_list") or []) for c in conns):
                local |= i == 0
                holders += i != 0
        routes = b.nats.monitor(0, "/routez?subs=1")["routes"] or []
        known = sum(subj in (r.get("subscriptions_list") or []) for r in routes)
        return (holders or local) and known >= holders
    fk.wait_until(ok, timeout, msg="the interest in %s at server 0" % subj)


def norm(op, v):
    if op == "getSidsByUid" and isinstance(v, list):
        return sorted(v)
    if op == "info" and isinstance(v, dict):
        v = dict(v)
        v["gateways"] = sorted((g["server"], g["worker"], g["clients"], g["channels"])
                               for g in v["gateways"])
    return v


APPLY_DEADLINE = 5.0


def wait_answer(lib, what, c, want, timeout=APPLY_DEADLINE):
    """Asks the query c until it answers want: the workers apply a command when
    it reaches them, and the router's question may overtake it."""
    want = want if c[0] == "info" else norm(c[0], enc(want))
    last = [None]

    def ok():
        r = lib.run([call(*c)])[0]
        last[0] = norm(c[0], r.get("ok")) if "ok" in r else r
        return last[0] == want
    try:
        fk.wait_until(ok, timeout, interval=0.01, msg=what)
    except AssertionError:
        raise AssertionError("%s: wanted %r, last %r" % (what, want, last[0]))


def expected_info(b, channels):
    links = b.by_link()
    gws = sorted((l[0], l[1], len(links[l]), channels.get(l, 0)) for l in LINKS)
    return gws, sum(len(v) for v in links.values())


def test_every_call_end_to_end(natsbus, go_driver):
    """Every call of the NATS transport on real gateways: each client receives
    exactly what the command sent it (the driver's own SEND_ALL marker after
    it), every query through the routers' api subject is exact once the
    workers have applied the commands; with no router on the bus the queries
    fail at once and clearly, the commands still work; a router with a small
    ROUTER_ANSWER_MAX refuses a big answer, which is the *RouterError."""
    b = natsbus(SESSION_MAX_SIZE=16384)
    lib = Lib(go_driver, b.url((0, 1, 2)), BUS_PREFIX)
    links = b.open_clients(3)
    A, B, C, D = (links[l] for l in LINKS)
    a1, a2, b1, c1 = A[0], D[0], B[0], C[0]   # alice on two gateways, bob, a guest
    unknown = make_sid(1, 0, 7)

    # SEND_MSG, grouped by worker; a SID no gateway holds is nobody.
    m = new_marker()
    lib.ok(call("sendMsg", [A[1].sid, C[1].sid, unknown, A[2].sid], "direct"),
           call("sendAll", m))
    assert_delivered(received(b, m), {A[1]: [b"direct"], C[1]: [b"direct"], A[2]: [b"direct"]})

    # BIND, then the uid queries.
    lib.ok(call("bindUid", a1.sid, "alice"), call("bindUid", a2.sid, "alice"),
           call("bindUid", b1.sid, "bob"), call("bindUid", C[2].sid, "a.b *>%\xe9"))
    wait_answer(lib, "alice bound", ("isUidOnline", "alice"), 2)
    wait_answer(lib, "bob bound", ("isUidOnline", "bob"), 1)
    wait_answer(lib, "a.b bound", ("isUidOnline", "a.b *>%\xe9"), 1)
    out = lib.ok(call("getSidsByUid", "alice"), call("getUidBySid", b1.sid),
                 call("getUidBySid", c1.sid), call("getUidBySid", unknown),
                 call("isUidOnline", "nobody"), call("getSidsByUid", "nobody"),
                 call("isOnline", [a1.sid, c1.sid, unknown, D[2].sid]),
                 call("online", a2.sid), call("online", unknown),
                 call("getUidBySid", C[2].sid))
    assert sorted(out[0]) == sorted(enc([a1.sid, a2.sid]))
    assert out[1:6] == [enc("bob"), None, None, 0, []]
    assert out[6] == enc({a1.sid: True, c1.sid: True, unknown: False, D[2].sid: True})
    assert out[7:] == [True, False, enc("a.b *>%\xe9")]

    # SEND_UID: exactly the sessions of the uids, once each.
    for u in ("alice", "bob", "a.b *>%\xe9"):
        wait_interest(b, subject("u.", u))
    m = new_marker()
    lib.ok(call("sendToUid", ["alice"], b"to alice"),
           call("sendToUid", ["bob", "bob", "nobody"], b"to bob"),
           call("sendToUid", ["bob", "alice", "a.b *>%\xe9"], b"to all three"),
           call("sendAll", m))
    assert_delivered(received(b, m), {a1: [b"to alice", b"to all three"],
                                      a2: [b"to alice", b"to all three"],
                                      b1: [b"to bob", b"to all three"],
                                      C[2]: [b"to all three"]})

    # SESSION_SET, SESSION_GET.
    data = b"\x00\xff session"
    lib.ok(call("setSession", a1.sid, data), call("setSession", b1.sid, b"bob's"))
    wait_answer(lib, "a1's data", ("getSession", a1.sid), data)
    wait_answer(lib, "b1's data", ("getSession", b1.sid), b"bob's")
    assert lib.ok(call("getSession", c1.sid), call("getSession", unknown)) == ["", None]
    lib.ok(call("setSession", b1.sid, b""))
    wait_answer(lib, "b1's data cleared", ("getSession", b1.sid), b"")

    # Channels: a name that needs escaping.
    room = "room.\xe9 *>"
    members = [a1, b1, c1, C[1]]
    lib.ok(call("chAdd", sids(members), room))
    wait_answer(lib, "room members", ("chCount", room), 4)
    wait_interest(b, subject("ch.", room))
    assert lib.ok(call("chMembers", room), call("chSessions", room), call("channels")) == [
        enc({a1.sid: "alice", b1.sid: "bob", c1.sid: None, C[1].sid: None}),
        enc({a1.sid: data, b1.sid: b"", c1.sid: b"", C[1].sid: b""}), enc({room: 4})]
    assert lib.ok(call("chCount", "empty"), call("chMembers", "empty"),
                  call("chSessions", "empty")) == [0, {}, {}]

    # CH_PUB and SEND_ALL, with and without exclusions.
    m = new_marker()
    lib.ok(call("chPub", room, b"room but b1", [b1.sid, unknown]), call("chPub", room, b"room"),
           call("sendAll", b"all but alice", [a1.sid, a2.sid]), call("sendAll", m))
    want = {p: [b"all but alice"] for p in b.swarm.open() if p not in (a1, a2)}
    for p in members:
        want[p] = ([b"room but b1"] if p is not b1 else []) + [b"room"] + want.get(p, [])
    assert_delivered(received(b, m), want)

    # INFO: the routers' answer, the same through the api subject as over TCP.
    gws, nclients = expected_info(b, {(1, 0): 1, (1, 1): 1, (2, 0): 1})
    wait_answer(lib, "info", ("info",), {"clients": nclients, "channels": 1, "uids": 3,
                                         "gateways": gws})
    bk = rp.Backend(b.routers[0].port)
    try:
        router_info = bk.info()
    finally:
        bk.close()
    assert norm("info", lib.one("info")) == dict(router_info,
                                                 gateways=sorted(router_info["gateways"]))

    # CH_DEL, then CH_PUB reaches the rest.
    lib.ok(call("chDel", [c1.sid, C[1].sid], room))
    wait_answer(lib, "room without C", ("chCount", room), 2)
    m = new_marker()
    lib.ok(call("chPub", room, b"after chDel"), call("sendAll", m))
    assert_delivered(received(b, m), {a1: [b"after chDel"], b1: [b"after chDel"]})

    # Rebinding moves a session; KICK_UID closes every session of the uid; KICK.
    lib.ok(call("bindUid", a2.sid, "bob"))
    wait_answer(lib, "a2 is bob's", ("getSidsByUid", "bob"), sorted([a2.sid, b1.sid]))
    assert lib.one("isUidOnline", "alice") == 1
    wait_interest(b, subject("u.", "bob"))
    lib.ok(call("kickUid", "bob"), call("kick", [c1.sid, unknown]))
    b.swarm.wait(lambda: a2.closed and b1.closed and c1.closed, 5, "bob's sessions and c1 closed")
    m = new_marker()
    lib.ok(call("sendAll", m))
    got = received(b, m)
    assert a1 in got and a2 not in got and b1 not in got and c1 not in got
    assert_delivered(got, {})
    wait_answer(lib, "bob gone", ("isUidOnline", "bob"), 0)
    wait_answer(lib, "room without b1", ("chCount", room), 1)

    # UNBIND: the uid goes with its last session.
    lib.ok(call("unbindUid", a1.sid))
    wait_answer(lib, "a1 unbound", ("getUidBySid", a1.sid), None)
    assert lib.ok(call("isUidOnline", "alice"), call("getSidsByUid", "alice")) == [0, []]

    # No router on the bus: queries fail at once, naming the reason; commands go on.
    for r in b.routers:
        assert r.stop() == 0

    def no_router():
        r = lib.run([{"op": "timeout", "N": 300}, call("chCount", room)])[1]
        return r.get("err") == "NoRouter" and r["noResponders"] and r
    r = fk.wait_until(no_router, 5, msg="queries to find no router")
    assert "no router is subscribed to %sapi" % BUS_PREFIX in r["msg"], r
    t0 = time.monotonic()
    out = lib.run([call(*c) for c in [("isOnline", [a1.sid]), ("isUidOnline", "alice"),
                                       ("getSidsByUid", "x"), ("getUidBySid", a1.sid),
                                       ("getSession", a1.sid), ("chCount", room),
                                       ("chMembers", room), ("chSessions", room), ("channels",),
                                       ("online", a1.sid), ("info",)]])
    assert time.monotonic() - t0 < 3
    assert all(r.get("err") == "NoRouter" and r["noResponders"] for r in out), out
    wait_interest(b, subject("u.", "a.b *>%\xe9"))
    m = new_marker()
    lib.ok(call("sendMsg", [a1.sid, D[1].sid], b"no router"), call("chPub", room, b"room alone"),
           call("sendToUid", ["a.b *>%\xe9"], b"dotted"), call("sendAll", m))
    assert_delivered(received(b, m), {a1: [b"no router", b"room alone"], D[1]: [b"no router"],
                                      C[2]: [b"dotted"]})

    # A router refusing an answer over its ROUTER_ANSWER_MAX: the *RouterError.
    b.start_router(ROUTER_ANSWER_MAX=65536)
    big = [p for p in b.swarm.open()][:5]
    lib.ok(call("chAdd", sids(big), "big"),
           *[call("setSession", p.sid, bytes([65 + i]) * 16000) for i, p in enumerate(big)])
    wait_answer(lib, "the new router answers", ("chCount", "big"), 5, timeout=10)
    for p in big:
        wait_answer(lib, "big data", ("getSession", p.sid), bytes([65 + big.index(p)]) * 16000)
    out = lib.run([call("chSessions", "big"), call("chMembers", "big")])
    assert out[0]["err"] == "FookingRouterError" and out[0]["code"] == rp.CH_SESSIONS, out[0]
    assert out[0]["text"] == "answer over ROUTER_ANSWER_MAX", out[0]
    assert len(out[1]["ok"]) == 5, out[1]
