"""Backend API v2 on the Redis transports of the client libraries (PHP
FookingRedis, Go fooking.Redis): no router, the libraries publish and run the
stateless router's scripts themselves.

The cluster is test_bus_v2.py's: a real redis-server, two gateways (SERVER_ID
1 and 2, two workers each, BUS set) in front of php-fpm, and real
length-protocol clients on all four worker links. The libraries run through a
small interpreter (PHP_DRIVER, GO_DRIVER) that takes a list of calls as JSON
on stdin, every string hex-encoded (binary uids and data pass through), and
prints per call {"ok": result} or {"err": kind, "msg", "code"} (kind: the PHP
exception class; Go's errors map onto the same names, as in
test_clients_v2.py).

What a command delivered is checked exactly with a marker (a SEND_ALL
published right after it on the same connection reaches each worker after
it). The workers apply a command when its message reaches them and write the
change to Redis after that, so every query is asked again, with a deadline,
until it is exact (wait_answer). Argument errors are checked on a bare
redis-server: nothing published, no script run.
"""

import json
import re
import shutil
import subprocess
import time

import pytest

import fk
import godriver
import peers
import rproto as rp
from swarm import assert_delivered, new_marker
from test_bus import (LINKS, PREFIX, bare_redis, expected_info, make_sid,  # noqa: F401
                      received, sids)
from test_bus_v2 import APPLY_DEADLINE, v2bus  # noqa: F401 (the fixtures)

redis = pytest.importorskip("redis")

ROOT = fk.REPO
PHP_LIB = ROOT / "example" / "clients" / "php" / "FookingRedis.php"

# ---------------------------------------------------------------- the drivers

PHP_DRIVER = r"""<?php
require $argv[1];
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
$r = new FookingRedis();
$r->connect($argv[2], $argv[3]);
$out = [];
foreach ($ops as $o) {
    try {
        if ($o['op'] === 'maxAnswer') {
            $r->maxAnswer = $o['n'];
            $res = ['ok' => null];
        } else {
            $res = ['ok' => render($o['op'], $r->{$o['op']}(...dec($o['args'] ?? [])))];
        }
    } catch (Throwable $e) {
        $res = ['err' => get_class($e), 'msg' => $e->getMessage(), 'code' => $e->getCode()];
    }
    $out[] = $res;
}
$r->close();
echo json_encode($out, JSON_INVALID_UTF8_SUBSTITUTE | JSON_THROW_ON_ERROR), "\n";
"""

GO_DRIVER = godriver.program(r"""
func run(c *fooking.Redis, o op) (interface{}, error) {
	switch o.Op {
	case "maxAnswer":
		c.MaxAnswer = o.N
		return nil, nil
	case "scripts":
		return fooking.BusScripts(), nil
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
	r, err := fooking.ConnectRedis(os.Args[1], os.Args[2])
	if err != nil {
		panic(err)
	}
	defer r.Close()
	out := []map[string]interface{}{}
	for _, o := range ops {
		out = append(out, outcome(run(r, o)))
	}
	emit(out)
}
""")


@pytest.fixture(scope="module")
def go_driver(tmp_path_factory):
    return peers.go_build(tmp_path_factory.mktemp("redis-v2-godriver"), GO_DRIVER)


@pytest.fixture(scope="module")
def php_driver(tmp_path_factory):
    if not shutil.which("php"):
        pytest.skip("php-cli not installed")
    if subprocess.run(["php", "-r", "exit(class_exists('Redis') ? 0 : 1);"]).returncode != 0:
        pytest.skip("phpredis (php-redis) not installed")
    script = tmp_path_factory.mktemp("redis-v2-phpdriver") / "drive.php"
    script.write_text(PHP_DRIVER)
    return str(script)


class Lib:
    """One library's Redis transport: run(ops) -> one result per op, all on one
    library object."""

    def __init__(self, request, kind, url, prefix=PREFIX):
        driver = request.getfixturevalue("%s_driver" % kind)
        self.kind = kind
        self.argv = (["php", driver, str(PHP_LIB)] if kind == "php" else [driver]) + [url, prefix]

    def run(self, ops):
        p = subprocess.run(self.argv, input=json.dumps(ops), capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0, "%s driver failed:\n%s%s" % (self.kind, p.stdout, p.stderr)
        out = json.loads(p.stdout)
        assert len(out) == len(ops), out
        return out

    def ok(self, *ops):
        """Runs the calls; each must succeed. Returns their results (decoded)."""
        out = self.run(list(ops))
        bad = [(o, r) for o, r in zip(ops, out) if "ok" not in r]
        assert not bad, "%s: calls failed: %r" % (self.kind, bad)
        return [r["ok"] for r in out]

    def one(self, *c):
        return self.ok(call(*c))[0]


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


def norm(op, v):
    """A result with the lists that come in no particular order sorted."""
    if op == "getSidsByUid" and isinstance(v, list):
        return sorted(v)
    if op == "info" and isinstance(v, dict):
        v = dict(v)
        v["gateways"] = sorted((g["server"], g["worker"], g["clients"], g["channels"])
                               for g in v["gateways"])
    return v


def wait_answer(lib, what, c, want, timeout=APPLY_DEADLINE):
    """Asks the query c until it answers want (encoded as the drivers speak),
    within timeout."""
    want = want if c[0] == "info" else norm(c[0], enc(want))
    last = [None]

    def ok():
        r = lib.run([call(*c)])[0]
        last[0] = norm(c[0], r.get("ok")) if "ok" in r else r
        return last[0] == want
    try:
        fk.wait_until(ok, timeout, interval=0.01, msg=what)
    except AssertionError:
        raise AssertionError("%s (%s): wanted %r, last %r" % (what, lib.kind, want, last[0]))


# ---------------------------------------------------------------- the scripts

TOKEN = re.compile(r'\s+|"((?:[^"\\]|\\.)*)"|([A-Za-z_][A-Za-z0-9_]*)|(;)|\\\n')


def c_expr(text, pos, macros, one_line=False):
    """The value of a C string expression (literals and macros, concatenated)
    starting at pos: up to a ';', or with one_line, to the end of a #define."""
    out = []
    while pos < len(text):
        m = TOKEN.match(text, pos)
        assert m, "cannot read C at %r" % text[pos:pos + 40]
        pos = m.end()
        if m.group(1) is not None:
            out.append(m.group(1).encode("latin-1").decode("unicode_escape"))
        elif m.group(2):
            out.append(macros[m.group(2)])
        elif m.group(3) or (one_line and "\n" in m.group(0) and m.group(0) != "\\\n"):
            break
    return "".join(out)


def router_scripts():
    """{name: Lua text} of the stateless router, read out of its C source:
    router_bus_<name>_lua in src/router_bus.c, with the macros of src/bus.h."""
    src = (ROOT / "src" / "bus.h").read_text() + "\n" + (ROOT / "src" / "router_bus.c").read_text()
    macros = {}
    for m in re.finditer(r"#define (BUS_LUA_WID|ROUTER_BUS_LUA_COMMON)[ \t]*", src):
        macros[m.group(1)] = c_expr(src, m.end(), macros, one_line=True)
    out = {m.group(1): c_expr(src, m.end(), macros)
           for m in re.finditer(r"static const char router_bus_(\w+)_lua\[\] =", src)}
    assert set(out) >= {"info", "uids", "is_online", "channels"}, sorted(out)
    return out


def test_scripts_are_the_routers(request, bare_redis):  # noqa: F811
    """Both libraries embed the stateless router's Lua scripts byte for byte
    (so Redis caches one copy of each, whoever runs it)."""
    want = router_scripts()
    if shutil.which("php"):
        php = subprocess.run(["php", "-r", "require $argv[1]; echo json_encode(FookingRedis::SCRIPTS);",
                              str(PHP_LIB)], capture_output=True, text=True, timeout=60)
        assert php.returncode == 0, php.stderr
        assert json.loads(php.stdout) == want
    go = Lib(request, "go", bare_redis.url).ok({"op": "scripts"})[0]
    assert go == want


# ---------------------------------------------------------------- arguments, bytes

def collect(srv, lib, ops, end=b"-- end --"):
    """Runs ops (then a SEND_ALL `end`) while a Python subscriber listens to every
    channel; returns ([(channel, message) before the end], results, scripts run)."""
    r = srv.client()
    ps = r.pubsub(ignore_subscribe_messages=True)
    ps.psubscribe("*")
    fk.wait_until(lambda: r.execute_command("PUBSUB", "NUMPAT") >= 1, 5, msg="psubscribe")

    def evals():
        st = r.info("commandstats")
        return sum(st.get("cmdstat_" + c, {}).get("calls", 0) for c in ("eval", "evalsha"))
    before = evals()
    results = lib.run(ops + [call("sendAll", end)])
    ran = evals() - before
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
    return got[:-1], results[:-1], ran


@pytest.mark.parametrize("kind", ["php", "go"])
def test_arguments_checked_before_anything_is_sent(bare_redis, request, kind):  # noqa: F811
    """Every v2 call with a bad argument fails (InvalidArgumentException /
    ErrInvalidArgument) and publishes nothing and runs no script; the good
    ones publish exactly the router's message on its channel."""
    lib = Lib(request, kind, bare_redis.url, "args-%s:" % kind)
    sid, sid2, other = make_sid(1, 0, 1), make_sid(1, 0, 2), make_sid(2, 1, 3)
    short, nothex = "0123456789abcde", "0123456789abcdeg"
    many = [make_sid(1, 0, 100 + i) for i in range(4096)]
    bad = [
        call("bindUid", short, "u"), call("bindUid", nothex, "u"), call("bindUid", sid, ""),
        call("bindUid", sid, "x" * 129), call("unbindUid", short), call("unbindUid", nothex),
        call("sendToUid", [], "m"), call("sendToUid", ["x" * 129], "m"),
        call("sendToUid", ["ok", ""], "m"), call("kickUid", []), call("kickUid", ["ok", "y" * 129]),
        call("setSession", sid, "d" * 16385), call("setSession", short, ""),
        call("setSession", nothex, "d"),
        call("sendAll", "m", [short]), call("sendAll", "m", many),
        call("chPub", "", "m", [sid]), call("chPub", "x" * 256, "m", [sid]),
        call("chPub", "x" * 255, "m", many[:4080]), call("chPub", "room", "m", [short]),
        call("isOnline", [sid, short]), call("isOnline", [nothex]),
        call("isUidOnline", ""), call("isUidOnline", "x" * 129),
        call("getSidsByUid", ""), call("getSidsByUid", "x" * 129),
        call("getUidBySid", short), call("getUidBySid", nothex),
        call("getSession", short), call("getSession", nothex),
        call("chCount", ""), call("chCount", "x" * 256), call("chMembers", ""),
        call("chMembers", "x" * 256), call("chSessions", ""), call("chSessions", "x" * 256),
    ]
    got, results, ran = collect(bare_redis, lib, bad)
    assert got == []
    assert ran == 0, "%d scripts ran for bad arguments" % ran
    wrong = [(c["op"], r) for c, r in zip(bad, results) if r.get("err") != "InvalidArgumentException"]
    assert not wrong, wrong

    # The good ones: the router's bytes on the router's channels.
    P = b"args-%s:" % kind.encode()
    gw = lambda s, w: P + b"gw:%d:%d" % (s, w)  # noqa: E731
    data = bytes(range(256)) * 64   # 16384 bytes, every byte value
    uid = b"u\x00\xff" + b"x" * 125
    good = [
        call("bindUid", sid, uid), call("bindUid", other, "bob"), call("unbindUid", sid2),
        call("setSession", other, data), call("setSession", sid, ""),
        call("sendAll", "to all", [sid, other, sid]), call("chPub", "room", "to room", [other]),
        call("chPub", "x" * 255, "long", many[:4079]), call("sendAll", "ex many", many[:4095]),
        call("sendToUid", ["nobody"], "m"), call("kickUid", "nobody"),
    ]
    got, results, ran = collect(bare_redis, lib, good)
    assert results == [{"ok": None}] * len(good)
    assert ran >= 2   # sendToUid and kickUid: the uids script (which found nobody)
    expect = [
        (gw(1, 0), rp.encode(rp.BIND, sid, uid)),
        (gw(2, 1), rp.encode(rp.BIND, other, b"bob")),
        (gw(1, 0), rp.encode(rp.UNBIND, sid2)),
        (gw(2, 1), rp.encode(rp.SESSION_SET, other, data)),
        (gw(1, 0), rp.encode(rp.SESSION_SET, sid, b"")),
        (P + b"all", rp.encode(rp.SEND_ALL_EX, sid + other, b"to all")),
        (P + b"ch:room", rp.encode(rp.CH_PUB_EX, b"\x04room" + other, b"to room")),
        (P + b"ch:" + b"x" * 255, rp.encode(rp.CH_PUB_EX, b"\xff" + b"x" * 255
                                            + b"".join(many[:4079]), b"long")),
        (P + b"all", rp.encode(rp.SEND_ALL_EX, b"".join(many[:4095]), b"ex many")),
    ]
    assert [c for c, _ in got] == [c for c, _ in expect]
    for i, (g, e) in enumerate(zip(got, expect)):
        assert g == e, "message %d: got %r..., expected %r..." % (i, g[1][:40], e[1][:40])


@pytest.mark.parametrize("kind", ["php", "go"])
def test_uid_scripts_and_answer_limit(bare_redis, request, kind):  # noqa: F811
    """On presence keys set by hand: SEND_UID / KICK_UID publish once per worker
    holding valid sessions of the uids, S cut to its uids (the router's
    script); the queries answer from the same keys (EVALSHA, EVAL after a
    SCRIPT FLUSH); an answer over maxAnswer is refused, the library goes on."""
    p = "uids-%s:" % kind
    r = bare_redis.client()
    a, a2, b1 = make_sid(1, 0, 1), make_sid(2, 1, 2), make_sid(2, 1, 3)
    stale, dead = make_sid(1, 0, 4), make_sid(3, 0, 5)
    for w in ("1:0", "2:1"):
        r.set(p + "hb:" + w, "2 0", ex=peers.HB_TTL)
        r.sadd(p + "workers", w)
    r.sadd(p + "workers", "3:0")   # no heartbeat: dead, leaves the registry
    r.sadd(p + "sids:1:0", a, stale)
    r.sadd(p + "sids:2:1", a2, b1)
    r.hset(p + "sidu:1:0", mapping={a: "alice", stale: "carol"})
    r.hset(p + "sidu:2:1", mapping={a2: "alice", b1: "bob"})
    r.hset(p + "sess:2:1", mapping={b1: b"\x00data"})
    r.sadd(p + "u:alice", a, a2, stale, dead)   # stale is carol's now, dead has no worker
    r.sadd(p + "u:bob", b1)
    lib = Lib(request, kind, bare_redis.url, p)
    r.script_flush()
    got, results, _ = collect(bare_redis, lib, [
        call("sendToUid", ["alice", "bob", "alice", "nobody"], "hi"),
        call("kickUid", ["bob"]),
    ])
    P = p.encode()
    assert results == [{"ok": None}] * 2
    # One script: the order of the workers follows Redis' set order.
    assert sorted(got[:2]) == [(P + b"gw:1:0", rp.encode(rp.SEND_UID, b"\x05alice", b"hi")),
                               (P + b"gw:2:1", rp.encode(rp.SEND_UID, b"\x05alice\x03bob", b"hi"))]
    assert got[2:] == [(P + b"gw:2:1", rp.encode(rp.KICK_UID, b"\x03bob"))]
    assert r.smembers(p + "u:alice") == {a, a2}   # the script cleaned up, as the router's does
    r.script_flush()
    out = lib.ok(call("getSidsByUid", "alice"), call("isUidOnline", "alice"),
                 call("getUidBySid", b1), call("getSession", b1), call("getSession", a),
                 call("getSession", dead), call("isOnline", [a, stale, dead, a2]),
                 call("info"))
    assert sorted(out[0]) == sorted(enc([a, a2]))
    assert out[1:6] == [2, enc("bob"), enc(b"\x00data"), "", None]
    assert out[6] == enc({a: True, stale: True, dead: False, a2: True})
    assert norm("info", out[7]) == {"clients": 4, "channels": 0, "uids": 3,
                                    "gateways": [(1, 0, 2, 0), (2, 1, 2, 0)]}
    assert r.smembers(p + "workers") == {b"1:0", b"2:1"}
    res = lib.run([{"op": "maxAnswer", "n": 31}, call("getSidsByUid", "alice"),
                   call("isUidOnline", "bob")])
    assert res[1]["err"] == "FookingRouterError" and res[1]["code"] == rp.UID_SIDS, res
    assert res[2] == {"ok": 1}
    r.close()


# ---------------------------------------------------------------- the cluster

@pytest.mark.parametrize("kind", ["php", "go"])
def test_every_v2_call_against_the_cluster(v2bus, request, kind):  # noqa: F811
    """Every v2 call through the library's Redis transport, on real gateways:
    each client receives exactly what the command sent it, and every query is
    exact once the workers have applied the commands."""
    b = v2bus()
    lib = Lib(request, kind, b.redis.url)
    links = b.open_clients(3)
    A, B, C, D = (links[l] for l in LINKS)
    a1, a2, b1, c1 = A[0], D[0], B[0], C[0]   # alice on two gateways, bob, a guest
    unknown = make_sid(1, 0, 7)
    tag = kind.encode()

    # BIND, then the uid queries.
    lib.ok(call("bindUid", a1.sid, "alice"), call("bindUid", a2.sid, "alice"),
           call("bindUid", b1.sid, "bob"))
    wait_answer(lib, "alice bound", ("isUidOnline", "alice"), 2)
    wait_answer(lib, "bob bound", ("isUidOnline", "bob"), 1)
    out = lib.ok(call("getSidsByUid", "alice"), call("getUidBySid", b1.sid),
                 call("getUidBySid", c1.sid), call("getUidBySid", unknown),
                 call("isUidOnline", "nobody"), call("getSidsByUid", "nobody"),
                 call("isOnline", [a1.sid, c1.sid, unknown, D[2].sid]))
    assert sorted(out[0]) == sorted(enc([a1.sid, a2.sid]))
    assert out[1:6] == [enc("bob"), None, None, 0, []]
    assert out[6] == enc({a1.sid: True, c1.sid: True, unknown: False, D[2].sid: True})

    # SEND_UID: exactly the sessions of the uids, once each.
    m = new_marker()
    lib.ok(call("sendToUid", ["alice"], b"to alice " + tag),
           call("sendToUid", ["bob", "bob", "nobody"], b"to bob " + tag),
           call("sendToUid", ["bob", "alice"], b"to both " + tag), call("sendAll", m))
    assert_delivered(received(b, m), {a1: [b"to alice " + tag, b"to both " + tag],
                                      a2: [b"to alice " + tag, b"to both " + tag],
                                      b1: [b"to bob " + tag, b"to both " + tag]})

    # SESSION_SET, SESSION_GET.
    data = b"\x00\xff session " + tag
    lib.ok(call("setSession", a1.sid, data), call("setSession", b1.sid, b"bob's"))
    wait_answer(lib, "a1's data", ("getSession", a1.sid), data)
    wait_answer(lib, "b1's data", ("getSession", b1.sid), b"bob's")
    assert lib.ok(call("getSession", c1.sid), call("getSession", unknown)) == ["", None]
    lib.ok(call("setSession", b1.sid, b""))
    wait_answer(lib, "b1's data cleared", ("getSession", b1.sid), b"")

    # Channels: count, members, sessions, channels.
    room = "room \xe9 " + kind
    members = [a1, b1, c1, C[1]]
    lib.ok(call("chAdd", sids(members), room))
    wait_answer(lib, "room members", ("chCount", room), 4)
    b.wait_channel(room, 3)
    assert lib.one("chMembers", room) == enc({a1.sid: "alice", b1.sid: "bob", c1.sid: None,
                                              C[1].sid: None})
    assert lib.one("chSessions", room) == enc({a1.sid: data, b1.sid: b"", c1.sid: b"",
                                               C[1].sid: b""})
    assert lib.one("channels") == enc({room: 4})
    assert lib.ok(call("chCount", "empty"), call("chMembers", "empty"),
                  call("chSessions", "empty")) == [0, {}, {}]

    # CH_PUB and SEND_ALL with exclusions.
    m = new_marker()
    lib.ok(call("chPub", room, b"room but b1 " + tag, [b1.sid, unknown]),
           call("chPub", room, b"room " + tag),
           call("sendAll", b"all but alice " + tag, [a1.sid, a2.sid]), call("sendAll", m))
    want = {p: [b"all but alice " + tag] for p in b.swarm.open() if p not in (a1, a2)}
    for p in members:
        want[p] = ([b"room but b1 " + tag] if p is not b1 else []) + [b"room " + tag] \
            + want.get(p, [])
    assert_delivered(received(b, m), want)

    # INFO with its uids count: the router's answer.
    gws, nclients = expected_info(b, {(1, 0): 1, (1, 1): 1, (2, 0): 1})
    wait_answer(lib, "info", ("info",), {"clients": nclients, "channels": 1, "uids": 2,
                                         "gateways": gws}, timeout=peers.HB_EVERY + 5)
    router_info = b.backend(0).info()
    assert norm("info", lib.one("info")) == dict(router_info, gateways=sorted(router_info["gateways"]))

    # Rebinding moves a session; KICK_UID closes every session of the uid.
    lib.ok(call("bindUid", a2.sid, "bob"))
    wait_answer(lib, "a2 is bob's", ("getSidsByUid", "bob"), sorted([a2.sid, b1.sid]))
    assert lib.one("isUidOnline", "alice") == 1
    lib.ok(call("kickUid", "bob"))
    b.swarm.wait(lambda: a2.closed and b1.closed, 5, "bob's sessions closed")
    m = new_marker()
    lib.ok(call("sendAll", m))
    got = received(b, m)
    assert a1 in got and a2 not in got and b1 not in got
    assert_delivered(got, {})
    wait_answer(lib, "bob gone", ("isUidOnline", "bob"), 0)
    wait_answer(lib, "room without b1", ("chCount", room), 3)

    # UNBIND: the uid goes with its last session.
    lib.ok(call("unbindUid", a1.sid))
    wait_answer(lib, "a1 unbound", ("getUidBySid", a1.sid), None)
    assert lib.ok(call("isUidOnline", "alice"), call("getSidsByUid", "alice")) == [0, []]
    gws, nclients = expected_info(b, {(1, 0): 1, (2, 0): 1})
    wait_answer(lib, "no uids", ("info",), {"clients": nclients, "channels": 1, "uids": 0,
                                            "gateways": gws}, timeout=peers.HB_EVERY + 5)
    lib.ok(call("chDel", sids([a1, c1, C[1]]), room))
    wait_answer(lib, "room empty", ("channels",), {})
    assert not b.rc.exists(PREFIX + "u:alice") and not b.rc.exists(PREFIX + "u:bob")
