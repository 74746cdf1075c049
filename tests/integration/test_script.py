"""Integration tests of Lua protocol scripts (DESIGN §5.3, SCRIPT_FILE), with
php-fpm + tests/backends/echo.php as the backend (it echoes the body; "params"
answers the request's params as JSON).

Scripts: example/scripts/ndjson.lua (the shipped example) and, in tests/scripts/,
ws_original.lua (a WebSocket server in Lua; sha1.lua and base64.lua are loaded with
require), fallback.lua (onRead returning 0), write_zero.lua (onWrite returning 0 / -1)
and faults.lua (misbehaves on command).
"""

import asyncio
import json
import os
import re
import time

import pytest

import fk
from conftest import base_params

SCRIPTS = fk.REPO / "tests" / "scripts"
NDJSON = fk.REPO / "example" / "scripts" / "ndjson.lua"
SID_RE = re.compile(r"^[0-9a-f]{16}$")


class LineClient(fk.Client):
    """A raw TCP client reading "\\n"-terminated lines."""

    def recv_line(self, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            self._fill(deadline)

    def ask(self, line):
        self.send_raw(line + b"\n")
        return self.recv_line()

    def read_to_eof(self, timeout=5.0):
        """Everything until the gateway closes the connection."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._fill(deadline)
            except fk.Closed:
                return bytes(self.buf)


def script_gateway(gateway, php, script, **keys):
    return gateway(BACKEND_SERVER=php.addr, FASTCGI_PARAMS=base_params(),
                   SCRIPT_FILE=str(script), **keys)


def line_client(gw):
    return LineClient(gw.port)


def sid_of(c):
    """The session id the backend sees for this line-protocol client."""
    sid = json.loads(c.ask(b"params"))["SESSIONID"]
    assert SID_RE.match(sid), sid
    return sid


# ---------------------------------------------------------------- WebSocket in Lua

async def ws_conversation(port, messages):
    import websockets
    async with websockets.connect("ws://127.0.0.1:%d/chat?x=1" % port, compression=None,
                                  max_size=1 << 20, open_timeout=5,
                                  close_timeout=3) as ws:
        script_sid = ws.response_headers["X-Fooking-Session"]
        # pipelined: all messages first, then the replies in order
        for m in messages:
            await ws.send(m)
        echoes = [await asyncio.wait_for(ws.recv(), 10) for _ in messages]
        # a fragmented message (continuation frames) and a ping
        await ws.send(["frag", "ment", "ed ✓"])
        fragmented = await asyncio.wait_for(ws.recv(), 5)
        await asyncio.wait_for(await ws.ping(b"are you there"), 5)
        await ws.send("params")
        params = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return script_sid, echoes, fragmented, params, ws.close_code


def test_ws_original_script(gateway, php):
    pytest.importorskip("websockets")
    gw = script_gateway(gateway, php, SCRIPTS / "ws_original.lua", MAX_BUFF_SIZE=200000)
    big = "".join(chr(0x61 + i % 26) for i in range(70000))
    messages = ["hello", "héllo wörld ✓ 你好 🎉", "ünïcödé " * 40, big, "last"]
    script_sid, echoes, fragmented, params, close_code = asyncio.run(
        asyncio.wait_for(ws_conversation(gw.port, messages), 30))
    assert echoes == messages
    assert fragmented == "fragmented ✓"
    # fc.id(conn) in the script is the SESSIONID the backend gets
    assert SID_RE.match(script_sid), script_sid
    assert params["SESSIONID"] == script_sid
    assert params["CONTENT_LENGTH"] == "6"
    # the script answered the close frame and closed the connection
    assert close_code == 1000
    gw.wait_log("client %s" % script_sid, "closed by script")


def test_ws_original_bad_handshake(gateway, php):
    gw = script_gateway(gateway, php, SCRIPTS / "ws_original.lua")
    with LineClient(gw.port) as c:
        c.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
        assert c.read_to_eof().startswith(b"HTTP/1.1 400 ")


# ---------------------------------------------------------------- ndjson example

def test_ndjson_several_lines_in_one_send(gateway, php):
    gw = gateway(start=False, BACKEND_SERVER=php.addr, FASTCGI_PARAMS=base_params())
    # SCRIPT_FILE is relative to the config file's directory
    gw.keys["SCRIPT_FILE"] = os.path.relpath(NDJSON, gw.dir)
    gw.start()
    with line_client(gw) as c:
        c.send_raw("one\ntwo\r\n\nthree ✓\nfour\r\n".encode())
        got = [c.recv_line() for _ in range(4)]
        assert got == [b"one\n", b"two\n", "three ✓\n".encode(), b"four\n"]
        assert sid_of(c)  # JSON replies are one line too


def test_ndjson_line_split_across_sends(gateway, php):
    gw = script_gateway(gateway, php, NDJSON)
    with line_client(gw) as c:
        # the gateway has read "first\nsec" once the reply to "first" is back
        c.send_raw(b"first\nsec")
        assert c.recv_line() == b"first\n"
        for part in (b"o", b"nd li", b"ne\r", b"\nthird\n"):
            c.send_raw(part)
        assert c.recv_line() == b"second line\n"
        assert c.recv_line() == b"third\n"


def test_onread_zero_falls_back_to_length_protocol(gateway, php):
    gw = script_gateway(gateway, php, SCRIPTS / "fallback.lua")
    with gw.client() as c:
        c.send_raw(c.frame(b"framed one") + b"!a line\n" + c.frame(b"framed\ntwo"))
        # no onWrite: the replies are length-prefixed, in order
        assert [c.recv() for _ in range(3)] == [b"framed one", b"a line", b"framed\ntwo"]
        # a frame split across sends
        frame = c.frame(b"x" * 1000)
        c.send_raw(frame[:2])
        c.send_raw(frame[2:500])
        c.send_raw(frame[500:])
        assert c.recv() == b"x" * 1000


def test_onwrite_zero_falls_back_to_length_protocol(gateway, php):
    gw = script_gateway(gateway, php, SCRIPTS / "write_zero.lua")
    with gw.client() as c:
        c.send(b"drop this", b"keep this", b"drop that too", b"and this")
        # onWrite < 0 writes nothing; 0 writes the reply length-prefixed
        assert c.recv() == b"keep this"
        assert c.recv() == b"and this"


# ---------------------------------------------------------------- misbehaving scripts

def test_onread_error_closes_only_that_client(gateway, php):
    gw = script_gateway(gateway, php, SCRIPTS / "faults.lua")
    workers = gw.worker_pids()
    with line_client(gw) as bad, line_client(gw) as other:
        assert other.ask(b"before") == b"before\n"
        sid = sid_of(bad)
        bad.send_raw(b"boom\n")
        assert bad.recv_closed()
        line = gw.wait_log("onRead", sid, "boom requested")[0]
        assert "ERROR" in line
        gw.wait_log("client %s" % sid, "closed: script error in onRead")
        assert other.ask(b"after") == b"after\n"
    with line_client(gw) as fresh:
        assert fresh.ask(b"fresh") == b"fresh\n"
    assert gw.alive() and gw.worker_pids() == workers


def test_fc_close_after_goodbye(gateway, php):
    gw = script_gateway(gateway, php, SCRIPTS / "faults.lua")
    with line_client(gw) as c:
        assert c.ask(b"hi") == b"hi\n"
        c.send_raw(b"bye\nnever read\n")
        assert c.read_to_eof() == b"goodbye\n"
    gw.wait_log("closed: closed by script")
    with line_client(gw) as c:
        assert c.ask(b"next") == b"next\n"


def test_endless_loop_is_stopped(gateway, php):
    gw = script_gateway(gateway, php, SCRIPTS / "faults.lua")
    workers = gw.worker_pids()
    with line_client(gw) as spinner, line_client(gw) as other:
        assert other.ask(b"before") == b"before\n"
        sid = sid_of(spinner)
        spinner.send_raw(b"spin\n")
        assert spinner.recv_closed(timeout=10)
        # the error is raised inside the loop, and says why and where
        line = gw.wait_log("onRead failed for client %s" % sid, "faults.lua:")[0]
        assert "handler ran longer than 1.0 s" in line, line
        gw.wait_log("client %s" % sid, "closed: script error in onRead")
        assert other.ask(b"after") == b"after\n"
    with line_client(gw) as fresh:
        assert fresh.ask(b"fresh") == b"fresh\n"
    assert gw.alive() and gw.worker_pids() == workers


@pytest.mark.parametrize("use", [b"use-output", b"use-input", b"use-conn"])
def test_buffer_kept_from_another_call(gateway, php, use):
    """A buffer or connection kept in a global from an earlier call (here: of another,
    still connected client) is refused with a Lua error: that client is closed, the
    worker does not crash and the keeper is unaffected."""
    gw = script_gateway(gateway, php, SCRIPTS / "faults.lua")
    workers = gw.worker_pids()
    with line_client(gw) as keeper, line_client(gw) as user:
        assert keeper.ask(b"keep") == b"kept\n"
        sid = sid_of(user)
        user.send_raw(use + b"\n")
        assert user.recv_closed()
        gw.wait_log("onRead", sid, "not ")
        assert keeper.ask(b"still fine") == b"still fine\n"
    assert gw.alive() and gw.worker_pids() == workers


def test_output_buffer_kept_for_a_later_call(gateway, php):
    gw = script_gateway(gateway, php, SCRIPTS / "faults.lua")
    workers = gw.worker_pids()
    with line_client(gw) as c, line_client(gw) as other:
        assert c.ask(b"keep") == b"kept\n"
        sid = sid_of(c)
        c.send_raw(b"use-output\n")
        assert c.recv_closed()
        gw.wait_log("onRead", sid, "not a buffer of the current call")
        # kept by a client that is gone now
        other.send_raw(b"use-output\n")
        assert other.recv_closed()
    with line_client(gw) as fresh:
        assert fresh.ask(b"fresh") == b"fresh\n"
    assert gw.alive() and gw.worker_pids() == workers


def test_requestid_counts_messages_from_zero(gateway, php):
    gw = script_gateway(gateway, php, SCRIPTS / "faults.lua")
    with line_client(gw) as c, line_client(gw) as c2:
        c.send_raw(b"rid a\nrid b\nrid c\n")
        assert [c.recv_line() for _ in range(3)] == [b"a#0\n", b"b#1\n", b"c#2\n"]
        assert c.ask(b"plain") == b"plain\n"
        assert c.ask(b"rid d") == b"d#4\n"
        # every connection counts on its own
        assert c2.ask(b"rid e") == b"e#0\n"
