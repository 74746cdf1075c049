"""The reply-command helpers of the client libraries (PHP FookingReply, Go
fooking.Join / Publish / SetSession / ...) driving a real gateway.

- test_go_reply_unit: the Go package's own tests (example/clients/go/src/fooking/
  reply_test.go: header generation and argument checks), `go test fooking` in
  GOPATH mode;
- test_php_reply_headers: FookingReply under php-fpm, without a gateway: the
  header lines each call adds, every refused argument (InvalidArgumentException,
  nothing added) and RuntimeException once the headers are sent;
- test_reply_commands_websocket (php-fpm running tests/backends/reply.php, and
  tests/backends/goreply): WebSocket clients of a gateway linked to a real
  router get what the commands imply: a channel publish (by the router, and by
  a reply) reaching a client that joined by header, Exclude-Self, Leave after
  the body, Broadcast, a router sendToUid reaching a client bound by header, the
  session data in the next request and in the close event, what the router's
  queries see, and a close code and reason received by the client; the commands
  of the connect event (EVENT=1) included;
- test_reply_commands_length_protocol: the same backends behind a
  length-prefixed gateway: join + publish, and Close closing the connection.

Every wait has a deadline; everything started is stopped by pid.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

import fk
import peers
import rproto as rp
import wsraw
from conftest import base_params
from fcgifake import fcgi_request
from peers import router  # noqa: F401 (the fixture)

REPLY_PHP = fk.BACKENDS / "reply.php"
GOREPLY_SRC = fk.BACKENDS / "goreply" / "main.go"
PHP_LIB = fk.REPO / "example" / "clients" / "php" / "FookingReply.php"


# ---------------------------------------------------------------- unit checks

def test_go_reply_unit(tmp_path):
    """reply_test.go, as `GO111MODULE=off GOPATH=/usr/share/gocode:example/clients/go
    go test fooking` runs it."""
    if not os.path.exists(peers.GO):
        pytest.skip("go not installed (scripts/deps.sh test)")
    peers.skip_without_go_deps()
    env = dict(os.environ, GO111MODULE="off", GOFLAGS="", CGO_ENABLED="0",
               GOPATH="/usr/share/gocode:%s" % (fk.REPO / "example" / "clients" / "go"))
    home = env.get("HOME")
    if not env.get("GOCACHE") and (not home or not os.access(home, os.W_OK)):
        env["GOCACHE"] = str(tmp_path / "gocache")
    r = subprocess.run([peers.GO, "test", "-count=1", "-v", "-run", "Reply", "fooking"],
                       cwd=str(fk.REPO), env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, "go test fooking failed:\n" + r.stdout + r.stderr
    for name in ("TestReplyHeaders", "TestReplyLimits", "TestReplyBadArguments"):
        assert "--- PASS: %s" % name in r.stdout, r.stdout


# Each call: [method, args...] ("echo": output starts); the body answers, per
# call, "ok" or [exception class, message]; the reply's headers are what the
# calls added.
PHP_DRIVER = r"""<?php
declare(strict_types=1);
require %(lib)s;
$calls = json_decode(file_get_contents('php://input'), true, 16, JSON_THROW_ON_ERROR);
$out = [];
foreach ($calls as $c) {
    $m = array_shift($c);
    if ($m === 'echo') {        // output: the headers are sent from here on
        echo "\n";
        flush();
        $out[] = 'ok';
        continue;
    }
    try {
        FookingReply::$m(...$c);
        $out[] = 'ok';
    } catch (Throwable $e) {
        $out[] = [get_class($e), $e->getMessage()];
    }
}
echo json_encode($out);
"""


def php_calls(php, script, calls):
    """(results, [(name, value)] of the X-Fooking-* header lines in order)."""
    body = json.dumps(calls).encode()
    r = fcgi_request(php.addr, {"SCRIPT_FILENAME": str(script), "REQUEST_METHOD": "POST",
                                "SERVER_PROTOCOL": "HTTP/1.1", "CONTENT_LENGTH": str(len(body))},
                     body)
    head = r.stdout.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = []
    for line in head.split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower().startswith("x-fooking-"):
            lines.append((name, value.strip()))
    return json.loads(r.body), lines


def test_php_reply_headers(php, tmp_path):
    script = tmp_path / "driver.php"
    script.write_text(PHP_DRIVER % {"lib": json.dumps(str(PHP_LIB))})
    ok = [["join", "a", "b c"], ["join", "d"], ["leave", "a"], ["bindUid", "42"],
          ["unbindUid"], ["session", '{"name":"Ann"}'], ["session", ""],
          ["publish", "room", "other"], ["broadcast"], ["excludeSelf"],
          ["close", 4001, "bye now"], ["close"], ["close", 3000],
          ["join", "c" * 255], ["bindUid", "u" * 128], ["session", "s" * 16384],
          ["close", 4999, "r" * 123], ["close", 4000, "ferm\u00e9"]]
    results, lines = php_calls(php, script, ok)
    assert results == ["ok"] * len(ok), results
    assert lines == [
        ("X-Fooking-Join", "a, b c"), ("X-Fooking-Join", "d"), ("X-Fooking-Leave", "a"),
        ("X-Fooking-Bind-Uid", "42"), ("X-Fooking-Unbind-Uid", "1"),
        ("X-Fooking-Session", '{"name":"Ann"}'), ("X-Fooking-Session", ""),
        ("X-Fooking-Publish", "room, other"), ("X-Fooking-Broadcast", "1"),
        ("X-Fooking-Exclude-Self", "1"), ("X-Fooking-Close", "4001 bye now"),
        ("X-Fooking-Close", "1000"), ("X-Fooking-Close", "3000"),
        ("X-Fooking-Join", "c" * 255), ("X-Fooking-Bind-Uid", "u" * 128),
        ("X-Fooking-Session", "s" * 16384), ("X-Fooking-Close", "4999 " + "r" * 123),
        ("X-Fooking-Close", "4000 ferm\u00e9".encode().decode("latin-1"))], lines

    bad = [  # (call, what the message says)
        (["join"], "join needs at least one channel"),
        (["leave"], "leave needs at least one channel"),
        (["publish"], "publish needs at least one channel"),
        (["join", "a", ""], "1 to 255 bytes, got 0"),
        (["join", "x" * 256], "1 to 255 bytes, got 256"),
        (["join", "a,b"], "no comma"),
        (["leave", "a\rb"], "no comma, CR, LF or NUL"),
        (["publish", "a\nb"], "no comma, CR, LF or NUL"),
        (["join", "a\x00"], "no comma, CR, LF or NUL"),
        (["join", " a"], "does not begin or end with a blank"),
        (["publish", "a\t"], "does not begin or end with a blank"),
        (["bindUid", ""], "1 to 128 bytes, got 0"),
        (["bindUid", "u" * 129], "1 to 128 bytes, got 129"),
        (["bindUid", "a\nb"], "no CR, LF or NUL"),
        (["bindUid", "a\x00"], "no CR, LF or NUL"),
        (["bindUid", "42 "], "blank"),
        (["session", "{\r}"], "no CR, LF or NUL"),
        (["session", "{\n}"], "no CR, LF or NUL"),
        (["session", "\x00"], "no CR, LF or NUL"),
        (["session", " {}"], "blank"),
        (["session", "s" * 16385], "at most 16384 bytes, got 16385"),
        (["close", 999], "1000 or 3000 to 4999, got 999"),
        (["close", 1001], "1000 or 3000 to 4999"),
        (["close", 2999], "1000 or 3000 to 4999"),
        (["close", 5000], "1000 or 3000 to 4999"),
        (["close", 4000, "r" * 124], "at most 123 bytes, got 124"),
        (["close", 4000, "a\rb"], "no CR, LF or NUL"),
        (["close", 4000, "a\n"], "no CR, LF or NUL"),
        (["close", 4000, " a"], "blank"),
    ]
    results, lines = php_calls(php, script, [c for c, _ in bad])
    assert lines == [], "a refused call added a header: %r" % lines
    for (call, says), got in zip(bad, results):
        assert got != "ok", "%r was accepted" % (call,)
        assert got[0] == "InvalidArgumentException" and says in got[1], (call, got)
        assert got[1].startswith("fooking reply: "), got

    # A close reason that is not UTF-8 (JSON cannot carry the byte: a script of its own).
    bad_utf8 = tmp_path / "bad_utf8.php"
    bad_utf8.write_text("<?php require %s;\n"
                        "try { FookingReply::close(4000, \"\\xff\"); echo 'ok'; }"
                        " catch (InvalidArgumentException $e) { echo $e->getMessage(); }\n"
                        % json.dumps(str(PHP_LIB)))
    r = fcgi_request(php.addr, {"SCRIPT_FILENAME": str(bad_utf8), "REQUEST_METHOD": "POST",
                                "SERVER_PROTOCOL": "HTTP/1.1"})
    assert r.body == b"fooking reply: a close reason is UTF-8 text", r.stdout

    # Once output has started, the headers are gone: RuntimeException, nothing added.
    results, lines = php_calls(php, script, [["join", "early"], ["echo"], ["join", "late"]])
    assert results[0] == "ok" and results[1] == "ok", results
    assert results[2][0] == "RuntimeException" and "already sent" in results[2][1], results
    assert lines == [("X-Fooking-Join", "early")], lines


# ---------------------------------------------------------------- through a gateway

@pytest.fixture(scope="module")
def goreply_bin(tmp_path_factory):
    return peers.go_build(tmp_path_factory.mktemp("goreply"), GOREPLY_SRC.read_text(),
                          name="goreply")


class GoReply:
    """tests/backends/goreply on a loopback port."""

    def __init__(self, binary, tmpdir):
        self.dir = Path(tmpdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = fk.free_port()
        self.addr = "127.0.0.1:%d" % self.port
        self.out_file = self.dir / "goreply.out"
        self.proc = None
        self.binary = binary

    def start(self):
        self._out = open(self.out_file, "ab")
        self.proc = subprocess.Popen([str(self.binary), self.addr], stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=subprocess.STDOUT)
        fk.wait_listening(self.port, self.proc, 10, "goreply", self.out_file)
        return self

    def stop(self):
        if self.proc:
            fk.stop_pid(self.proc, 5)
            self._out.close()


@pytest.fixture(params=["php", "go"])
def reply_backend(request, tmp_path):
    """(name, gateway keys reaching the backend); EVENT_LOG is tmp_path/events."""
    events = tmp_path / "events"
    params = base_params()
    params["EVENT_LOG"] = str(events)
    if request.param == "php":
        srv = request.getfixturevalue("php")
        params["SCRIPT_FILENAME"] = str(REPLY_PHP)
        yield request.param, events, {"BACKEND_SERVER": srv.addr, "FASTCGI_PREFIX": "",
                                      "FASTCGI_PARAMS": params}
        return
    srv = GoReply(request.getfixturevalue("goreply_bin"), tmp_path / "goreply").start()
    try:
        yield request.param, events, {"BACKEND_SERVER": srv.addr, "FASTCGI_PREFIX": "HTTP_",
                                      "FASTCGI_PARAMS": params}
    finally:
        srv.stop()


def ws_client(gw):
    """A WebSocket client of gw, .sid read from its welcome (EVENT=1)."""
    ws = wsraw.RawWs(gw.port, timeout=10)
    ws.handshake("/")
    op, msg = ws.recv_message()
    assert msg.startswith(b"welcome "), msg
    ws.sid = msg[len(b"welcome "):]
    return ws


def say(ws, **cmds):
    ws.send_text(json.dumps(cmds))


def recv(ws):
    return ws.recv_message()[1]


def fence(ws, token):
    """A request answered to ws alone: everything delivered to ws before its
    answer has arrived once it is read; returns what came before it."""
    say(ws, body=token)
    before = []
    while True:
        m = recv(ws)
        if m == token.encode():
            return before
        before.append(m)


def params_of(ws):
    say(ws, params=True)
    return json.loads(recv(ws))


def eventually(what, fn, want, timeout=10.0):
    """Until fn() == want. The router learns what a reply did from the gateway's
    reports on its own link, so a query on another connection may come first."""
    fk.wait_equal(what, fn, want, timeout)


def test_reply_commands_websocket(router, gateway, reply_backend, tmp_path):  # noqa: F811
    kind, events, keys = reply_backend
    r = router()
    gw = gateway(PROTOCOL="websocket", ROUTER_HOST="127.0.0.1", ROUTER_PORT=r.port,
                 EVENT_CONNECT=1, EVENT_CLOSE=1, **keys)
    a, b = ws_client(gw), ws_client(gw)
    bk = rp.Backend(r.port)
    try:
        # The connect event's reply joined "connected" and set the data: once the
        # router knows both sessions, a publish there reaches them.
        fk.wait_until(lambda: bk.count(rp.CH_COUNT, b"connected") == 2, 10,
                      msg="both sessions in the channel their connect reply joined")
        bk.ch_pub(b"connected", b"hi connected")
        assert recv(a) == b"hi connected" and recv(b) == b"hi connected"
        assert params_of(a) == {"SESSIONID": a.sid.decode(), "SESSION": "connected", "UID": None}

        # Join + Session + Bind-Uid + Publish in one reply (the helpers called in
        # another order): the new member gets its own publish.
        say(a, publish=["room"], bind="u-ann", session='{"name":"Ann"}', join=["room"],
            body="ann joined")
        assert recv(a) == b"ann joined"
        assert fence(b, "b1") == [], "b got a publish to a channel it is not in"
        assert params_of(a) == {"SESSIONID": a.sid.decode(), "SESSION": '{"name":"Ann"}',
                                "UID": "u-ann"}
        # What the router's queries see, as if the backend had sent the commands.
        eventually("room's members", lambda: rp.members(bk.query(rp.CH_MEMBERS, b"room")),
                   [(a.sid, b"u-ann")])
        eventually("a's uid", lambda: bk.query(rp.SID_UID, a.sid), b"u-ann")
        assert bk.query(rp.SESSION_GET, a.sid) == b'\x01{"name":"Ann"}'
        eventually("the sessions of room", lambda: rp.records(bk.query(rp.CH_SESSIONS, b"room")),
                   [(a.sid, b'{"name":"Ann"}')])
        # A router publish reaches the member that joined by header, a uid send
        # the session bound by header.
        bk.ch_pub(b"room", b"router to room")
        bk.send_uid([b"u-ann"], b"router to u-ann")
        assert recv(a) == b"router to room" and recv(a) == b"router to u-ann"
        assert fence(b, "b2") == []

        # Exclude-Self: b joins and tells the room, not itself.
        say(b, join=["room"], publish=["room"], exclude_self=True, body="bob joined")
        assert fence(b, "b3") == [], "Exclude-Self: the requester got its own publish"
        assert recv(a) == b"bob joined"

        # Publish + Leave: the leaver still gets it; after, a router publish does not.
        say(a, leave=["room"], publish=["room"], body="ann leaves")
        assert recv(a) == b"ann leaves" and recv(b) == b"ann leaves"
        bk.ch_pub(b"room", b"after ann left")
        assert recv(b) == b"after ann left"
        assert fence(a, "a1") == [], "a left the room but got its publish"
        eventually("room's members", lambda: rp.members(bk.query(rp.CH_MEMBERS, b"room")),
                   [(b.sid, b"")])

        # Broadcast, with and without Exclude-Self.
        say(a, broadcast=True, body="to everyone")
        assert recv(a) == b"to everyone" and recv(b) == b"to everyone"
        say(b, broadcast=True, exclude_self=True, body="to the others")
        assert recv(a) == b"to the others"
        assert fence(b, "b4") == []

        # Unbind and an empty session: the next request has neither.
        say(a, unbind=True, session="", body="cleared")
        assert recv(a) == b"cleared"
        assert params_of(a) == {"SESSIONID": a.sid.decode(), "SESSION": None, "UID": None}
        eventually("u-ann's sessions", lambda: bk.count(rp.UID_COUNT, b"u-ann"), 0)
        assert bk.query(rp.SESSION_GET, a.sid) == b"\x01"

        # The close event carries the session data of the last reply.
        say(a, session="bye-data", body="set")
        assert recv(a) == b"set"
        a.send_close(1000)
        assert a.wait_eof(10)
        fk.wait_until(lambda: events.exists() and (a.sid + b" bye-data\n") in events.read_bytes(),
                      10, msg="the close event of a with its session data")

        # Close: the body first, then the close frame with the code and reason.
        say(b, close=[4001, "bye now"], body="last words")
        assert recv(b) == b"last words"
        assert b.recv_close(10) == (4001, b"bye now")
        b.send_close(4001)
        assert b.wait_eof(10)
        fk.wait_until(lambda: (b.sid + b" connected\n") in events.read_bytes(), 10,
                      msg="the close event of b")
    except BaseException:
        print("--- gateway log:\n" + gw.log()[-4000:])
        raise
    finally:
        bk.close()
        a.close()
        b.close()


def test_reply_commands_length_protocol(router, gateway, reply_backend):  # noqa: F811
    kind, events, keys = reply_backend
    r = router()
    gw = gateway(ROUTER_HOST="127.0.0.1", ROUTER_PORT=r.port, EVENT_CONNECT=1, **keys)
    a, b = peers.welcomed_clients(gw, 2)
    bk = rp.Backend(r.port)
    try:
        for c in (a, b):
            c.send(json.dumps({"join": ["lp"], "bind": "u-%s" % c.sid.decode(),
                               "body": "in"}).encode())
            assert c.recv(10) == b"in"
        a.send(json.dumps({"publish": ["lp"], "body": "to lp"}).encode())
        assert a.recv(10) == b"to lp" and b.recv(10) == b"to lp"
        eventually("b's uid", lambda: bk.count(rp.UID_COUNT, b"u-" + b.sid), 1)
        bk.send_uid([b"u-" + b.sid], b"to b's uid")
        assert b.recv(10) == b"to b's uid"
        # Close on a protocol without close frames: the body, then the connection ends.
        a.send(json.dumps({"close": [1000], "body": "goodbye"}).encode())
        assert a.recv(10) == b"goodbye"
        assert a.recv_closed(10), "Close did not close the length-protocol client"
        fk.wait_until(lambda: bk.count(rp.CH_COUNT, b"lp") == 1, 10,
                      msg="the closed client gone from the channel")
    except BaseException:
        print("--- gateway log:\n" + gw.log()[-4000:])
        raise
    finally:
        bk.close()
        a.close()
        b.close()
