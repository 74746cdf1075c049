"""Integration tests of WebSocket clients (PROTOCOL = "websocket", DESIGN §5.2, §8):
echo through php-fpm + echo.php, fragmentation and control frames, the close
handshake, handshake params passed to the backend, protocol errors and their
close codes, handshake validation and its deadline, Origin allow-list,
subprotocols, text/binary replies, server pings, TLS, and STATIC_DIR.

Well-behaved clients use python3-websockets (asyncio API); everything a
well-behaved client would never send goes through wsraw.RawWs.
"""

import asyncio
import json
import socket
import ssl
import struct
import subprocess
import time

import pytest
import websockets
import websockets.exceptions

import fk
import peers
import wsraw
from conftest import Backend, base_params
from wsraw import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawWs

BIG_MAX = 2 << 20          # MAX_BUFF_SIZE of the shared gateway: 1 MB messages fit
INVALID_UTF8 = bytes(range(255, -1, -1))  # starts with 0xff: never valid UTF-8


def run(coro, timeout=30):
    """Runs one asyncio test body with an overall deadline."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def php_keys(php, **extra):
    return Backend("php", php.addr, "", php).keys(PROTOCOL="websocket", **extra)


def ws_url(gw, path="/", scheme="ws", host="127.0.0.1"):
    return "%s://%s:%d%s" % (scheme, host, gw.port, path)


def connect(url, **kw):
    kw.setdefault("max_size", None)
    kw.setdefault("open_timeout", 5)
    kw.setdefault("close_timeout", 3)
    return websockets.connect(url, **kw)


def invalid_utf8(n):
    return (INVALID_UTF8 * (n // 256 + 1))[:n]


@pytest.fixture(scope="module")
def wsgw(php, tmp_path_factory):
    """One gateway for the tests that need nothing special: MAX_BUFF_SIZE 2 MB."""
    gw = fk.Gateway(tmp_path_factory.mktemp("wsgw"),
                    **php_keys(php, MAX_BUFF_SIZE=BIG_MAX)).start()
    yield gw
    gw.stop()
    problems = gw.sanitizer_report()
    assert not problems, "sanitizer reports from fooking:\n" + "\n".join(problems[:20])


# ---------------------------------------------------------------- echo

@pytest.mark.parametrize("size", [1, 125, 126, 65535, 65536, 1 << 20])
def test_echo_text_and_binary(wsgw, size):
    text = ("0123456789abcdef" * (size // 16 + 1))[:size]
    blob = invalid_utf8(size)

    async def body():
        async with connect(ws_url(wsgw)) as ws:
            await ws.send(text)
            got = await ws.recv()
            assert isinstance(got, str) and len(got) == size and got == text
            await ws.send(blob)
            got = await ws.recv()
            assert isinstance(got, bytes) and len(got) == size and got == blob
    run(body())


def test_echo_multibyte_utf8(wsgw):
    samples = ["héllo wörld", "日本語のテキスト", "emoji 🎉🚀 and 𝄞", "mixed ä€𐍈" * 5000]

    async def body():
        async with connect(ws_url(wsgw)) as ws:
            for s in samples:
                await ws.send(s)
                got = await ws.recv()
                assert got == s
    run(body())


def test_echo_empty_message(wsgw):
    async def body():
        async with connect(ws_url(wsgw)) as ws:
            await ws.send("")
            assert await ws.recv() == ""
            await ws.send("after")
            assert await ws.recv() == "after"
    run(body())


def test_client_close_with_websockets(wsgw):
    async def body():
        async with connect(ws_url(wsgw)) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            await ws.close(1000, "bye")
            assert ws.close_code == 1000
    run(body())


# ---------------------------------------------------------------- fragments, control frames

def test_fragmented_text_echoes_as_one(wsgw):
    with RawWs(wsgw.port) as ws:
        ws.handshake()
        ws.send_frame(OP_TEXT, b"first-", fin=False)
        ws.send_frame(OP_CONT, b"second-", fin=False)
        ws.send_frame(OP_CONT, b"third", fin=True)
        fin, op, payload = ws.recv_frame()
        assert (fin, op, payload) == (True, OP_TEXT, b"first-second-third")


def test_fragment_splits_utf8_character(wsgw):
    word = "ß€𝄞".encode()  # 2-, 3- and 4-byte characters, cut inside each
    with RawWs(wsgw.port) as ws:
        ws.handshake()
        ws.send_frame(OP_TEXT, word[:1], fin=False)
        ws.send_frame(OP_CONT, word[1:4], fin=False)
        ws.send_frame(OP_CONT, word[4:7], fin=False)
        ws.send_frame(OP_CONT, word[7:], fin=True)
        assert ws.recv_message() == (OP_TEXT, word)


def test_ping_between_fragments(wsgw):
    with RawWs(wsgw.port) as ws:
        ws.handshake()
        ws.send_frame(OP_TEXT, b"hello ", fin=False)
        ws.send_frame(OP_PING, b"ping-payload-\x00\xff")
        ws.send_frame(OP_CONT, b"fragmented ", fin=False)
        ws.send_frame(OP_PONG, b"unsolicited pong is ignored")
        ws.send_frame(OP_CONT, b"world", fin=True)
        assert ws.recv_frame() == (True, OP_PONG, b"ping-payload-\x00\xff")
        assert ws.recv_frame() == (True, OP_TEXT, b"hello fragmented world")


def test_ping_empty_and_max_payload(wsgw):
    with RawWs(wsgw.port) as ws:
        ws.handshake()
        ws.send_frame(OP_PING, b"")
        assert ws.recv_frame() == (True, OP_PONG, b"")
        ws.send_frame(OP_PING, b"p" * 125)
        assert ws.recv_frame() == (True, OP_PONG, b"p" * 125)


def test_fragmented_binary_echoes_as_one(wsgw):
    a, b = invalid_utf8(70000), invalid_utf8(300)
    with RawWs(wsgw.port) as ws:
        ws.handshake()
        ws.send_frame(OP_BINARY, a, fin=False)
        ws.send_frame(OP_CONT, b, fin=True)
        assert ws.recv_message() == (OP_BINARY, a + b)


# ---------------------------------------------------------------- close handshake

def test_close_handshake_and_close_event(gateway, php, tmp_path):
    log = tmp_path / "events.log"
    gw = gateway(**php_keys(php, EVENT_CONNECT=1, event_log=str(log)))
    with RawWs(gw.port) as ws:
        ws.handshake()
        op, welcome = ws.recv_message()
        assert op == OP_TEXT and welcome.startswith(b"welcome ")
        sid = welcome.split()[1].decode()
        assert len(sid) == 16
        ws.send_text("still here")
        assert ws.recv_message() == (OP_TEXT, b"still here")
        ws.send_close(1000, "bye")
        fin, op, payload = ws.recv_frame()
        assert op == OP_CLOSE and fin
        assert struct.unpack(">H", payload[:2])[0] == 1000
        assert ws.wait_eof(3), "server did not close TCP after the close handshake"
    fk.wait_until(lambda: log.exists() and ("%s closed" % sid) in log.read_text(), 5,
                  msg="EVENT=2 for %s in %s" % (sid, log))


def test_close_without_code_answered_1000(wsgw):
    with RawWs(wsgw.port) as ws:
        ws.handshake()
        ws.send_frame(OP_CLOSE, b"")
        code, _ = ws.recv_close()
        assert code == 1000
        assert ws.wait_eof(3)


def test_close_code_echoed(wsgw):
    with RawWs(wsgw.port) as ws:
        ws.handshake()
        ws.send_close(4001, "app code")
        code, _ = ws.recv_close()
        assert code == 4001
        assert ws.wait_eof(3)


# ---------------------------------------------------------------- handshake params

PARAM_PATH = "/chat/room?token=abc%20d&x=1"
COOKIE = "session=xyz123; theme=dark"
UA = "fk-test-agent/1.0 (integration)"


def assert_handshake_params(p):
    assert p["REQUEST_URI"] == PARAM_PATH
    assert p["QUERY_STRING"] == "token=abc%20d&x=1"
    assert p["HTTP_COOKIE"] == COOKIE
    assert p["HTTP_USER_AGENT"] == UA
    assert p["HTTP_X_CUSTOM_TOKEN"] == "t0k"
    # a name with '_' must not be able to impersonate X-Real-IP (ws_cgi_name)
    assert p.get("HTTP_X_REAL_IP") != "6.6.6.6"


def params_connect(gw):
    return connect(ws_url(gw, PARAM_PATH), user_agent_header=UA,
                   extra_headers=[("Cookie", COOKIE), ("X-Custom-Token", "t0k"),
                                  ("X_Real_IP", "6.6.6.6")])


def test_handshake_params_on_every_message_php(gateway, php):
    gw = gateway(**php_keys(php))

    async def body():
        async with params_connect(gw) as ws:
            for _ in range(2):
                await ws.send("params")
                p = json.loads(await ws.recv())
                assert_handshake_params(p)
                assert p["EVENT"] == "0"
                assert p["TEST_PARAM"] == "static value / 1"
    run(body())


def test_handshake_params_on_connect_and_close_events(gateway, fake):
    f = fake(welcome=True)
    gw = gateway(BACKEND_SERVER=f.addr, FASTCGI_PARAMS=base_params(), PROTOCOL="websocket",
                 EVENT_CONNECT=1)

    async def body():
        async with params_connect(gw) as ws:
            welcome = await ws.recv()
            assert welcome.startswith("welcome ")
            await ws.send("params")
            assert_handshake_params(json.loads(await ws.recv()))
            return welcome.split()[1]
    sid = run(body())
    connects = f.events(1, sid)
    assert len(connects) == 1
    assert_handshake_params(connects[0]["params"])
    closes = fk.wait_until(lambda: f.events(2, sid), 5, msg="EVENT=2 for %s" % sid)
    assert_handshake_params(closes[0]["params"])


# ---------------------------------------------------------------- protocol errors

ERROR_CASES = {
    "invalid_utf8_text": ([wsraw.frame(OP_TEXT, b"ok \xc3\x28 bad")], 1007),
    "overlong_utf8": ([wsraw.frame(OP_TEXT, b"\xc0\xaf")], 1007),
    "surrogate_utf8": ([wsraw.frame(OP_TEXT, b"\xed\xa0\x80")], 1007),
    "text_ends_inside_character": ([wsraw.frame(OP_TEXT, b"ok\xe6", fin=False),
                                    wsraw.frame(OP_CONT, b"\x97", fin=True)], 1007),
    "unmasked": ([wsraw.frame(OP_TEXT, b"hello", mask=False)], 1002),
    "frame_over_max": ([wsraw.frame(OP_BINARY, b"", length=BIG_MAX + 1)], 1009),
    "rsv1": ([wsraw.frame(OP_TEXT, b"x", rsv=4)], 1002),
    "rsv2": ([wsraw.frame(OP_TEXT, b"x", rsv=2)], 1002),
    "rsv3": ([wsraw.frame(OP_TEXT, b"x", rsv=1)], 1002),
    "opcode_3": ([wsraw.frame(0x3, b"x")], 1002),
    "opcode_B": ([wsraw.frame(0xB, b"x")], 1002),
    "continuation_without_start": ([wsraw.frame(OP_CONT, b"x")], 1002),
    "new_message_inside_fragmented": ([wsraw.frame(OP_TEXT, b"a", fin=False),
                                       wsraw.frame(OP_TEXT, b"b")], 1002),
    "ping_126_bytes": ([wsraw.frame(OP_PING, b"p" * 126)], 1002),
    "fragmented_ping": ([wsraw.frame(OP_PING, b"p", fin=False)], 1002),
    "close_one_byte_payload": ([wsraw.frame(OP_CLOSE, b"\x03")], 1002),
    "close_code_1005": ([wsraw.frame(OP_CLOSE, wsraw.close_payload(1005))], 1002),
    "close_code_999": ([wsraw.frame(OP_CLOSE, wsraw.close_payload(999))], 1002),
    "close_reason_bad_utf8": ([wsraw.frame(OP_CLOSE, wsraw.close_payload(1000, b"\xff"))],
                              1007),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_protocol_error_close_code(wsgw, case):
    frames, want = ERROR_CASES[case]
    with RawWs(wsgw.port) as ws:
        ws.handshake()
        ws.send(b"".join(frames))
        code, reason = ws.recv_close()
        assert code == want, "close code %s (%r), want %d" % (code, reason, want)
        assert ws.wait_eof(3), "server did not close TCP after failing the connection"


def test_invalid_utf8_at_end_of_large_text_frame(wsgw):
    """The whole payload is validated, not just its first buffer chains."""
    with RawWs(wsgw.port) as ws:
        ws.handshake()
        ws.send_frame(OP_TEXT, b"a" * 300000 + b"\xff\xfe")
        fin, op, payload = ws.recv_frame(10)
        assert op == OP_CLOSE, "got a %#x frame of %d bytes instead of close 1007" % (
            op, len(payload))
        assert struct.unpack(">H", payload[:2])[0] == 1007


def test_good_messages_before_error_are_answered(wsgw):
    with RawWs(wsgw.port) as ws:
        ws.handshake()
        ws.send(wsraw.frame(OP_TEXT, b"good one") + wsraw.frame(OP_TEXT, b"\xff"))
        # the server fails the connection at once; the echo of the good message
        # may or may not make it out first, but the close code must be 1007
        code, _ = ws.recv_close()
        assert code == 1007
        assert ws.wait_eof(3)


def test_fragmented_message_over_max(gateway, php):
    gw = gateway(**php_keys(php, MAX_BUFF_SIZE=1000))
    with RawWs(gw.port) as ws:
        ws.handshake()
        ws.send_frame(OP_TEXT, b"a" * 600, fin=False)
        ws.send_frame(OP_CONT, b"b" * 600, fin=True)
        code, _ = ws.recv_close()
        assert code == 1009
        assert ws.wait_eof(3)
    with RawWs(gw.port) as ws:  # exactly MAX_BUFF_SIZE in two frames is fine
        ws.handshake()
        ws.send_frame(OP_TEXT, b"a" * 500, fin=False)
        ws.send_frame(OP_CONT, b"b" * 500, fin=True)
        assert ws.recv_message() == (OP_TEXT, b"a" * 500 + b"b" * 500)


# ---------------------------------------------------------------- handshake validation

def test_missing_key_400(wsgw):
    with RawWs(wsgw.port) as ws:
        status, _ = ws.handshake(expect=None, omit=("sec-websocket-key",))
        assert status == 400
        ws.read_until_eof()


def test_bad_key_400(wsgw):
    with RawWs(wsgw.port) as ws:
        status, _ = ws.handshake(expect=None, key="too-short")
        assert status == 400
        ws.read_until_eof()


def test_version_8_426(wsgw):
    with RawWs(wsgw.port) as ws:
        status, headers = ws.handshake(expect=None, version="8")
        assert status == 426
        assert headers.get("sec-websocket-version") == "13"
        ws.read_until_eof()


def test_post_upgrade_405(wsgw):
    req = wsraw.upgrade_request("/").replace(b"GET ", b"POST ", 1)
    status, _, _ = wsraw.http_request(wsgw.port, raw=req)
    assert status == 405


def test_plain_get_without_static_dir(wsgw):
    status, _, _ = wsraw.http_request(wsgw.port, "/index.html")
    assert status == 426


def test_head_over_8k_400(wsgw):
    req = wsraw.upgrade_request("/", extra=[("X-Pad", "a" * 9000)])
    with RawWs(wsgw.port) as ws:
        ws.send(req)
        status, _ = ws.read_head()
        assert status == 400
        assert ws.wait_eof(3)


def test_head_over_8k_without_end_400(wsgw):
    """No blank line at all: the bound, not the end of the head, must trigger."""
    with RawWs(wsgw.port) as ws:
        ws.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 8300)
        status, _ = ws.read_head()
        assert status == 400
        assert ws.wait_eof(3)


def test_handshake_timeout_slowloris(gateway, php):
    gw = gateway(**php_keys(php, HANDSHAKE_TIMEOUT=1))
    with RawWs(gw.port) as ws:
        t0 = time.monotonic()
        ws.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        closed_at = None
        deadline = t0 + 5
        while time.monotonic() < deadline:
            try:
                ws.send(b"X")  # one more byte of a header line, never a blank line
            except OSError:
                closed_at = time.monotonic()
                break
            try:
                ws._fill(time.monotonic() + 0.1)  # waits up to 100 ms for the close
            except wsraw.Closed:
                closed_at = time.monotonic()
                break
            except TimeoutError:
                continue
        assert closed_at is not None, "half a handshake held the connection for 5 s"
        elapsed = closed_at - t0
        assert 0.8 <= elapsed <= 3.0, "closed after %.2f s" % elapsed


def test_handshake_timeout_spares_open_connections(gateway, php):
    gw = gateway(**php_keys(php, HANDSHAKE_TIMEOUT=1))

    async def body():
        async with connect(ws_url(gw), ping_interval=None) as ws:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.wait_closed(), 1.6)
            await ws.send("after the handshake deadline")
            assert await ws.recv() == "after the handshake deadline"
    run(body())


def test_handshake_and_frame_in_one_packet(wsgw):
    key = wsraw.new_key()
    with RawWs(wsgw.port) as ws:
        ws.send(wsraw.upgrade_request("/", key=key) + wsraw.frame(OP_TEXT, b"eager"))
        status, headers = ws.read_head()
        assert status == 101 and headers["sec-websocket-accept"] == wsraw.accept_of(key)
        assert ws.recv_message() == (OP_TEXT, b"eager")


# ---------------------------------------------------------------- Origin, subprotocols

def test_allowed_origins(gateway, php):
    gw = gateway(**php_keys(php, ALLOWED_ORIGINS=["http://good"]))

    async def body():
        async with connect(ws_url(gw), origin="http://good") as ws:
            await ws.send("from good")
            assert await ws.recv() == "from good"
        for origin in ("http://evil", None, "http://good.evil", "http://goo"):
            with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
                async with connect(ws_url(gw), origin=origin):
                    pass
            assert e.value.status_code == 403, origin
    run(body())


def test_subprotocols(gateway, php):
    gw = gateway(**php_keys(php, WS_SUBPROTOCOLS=["chat", "superchat"]))

    async def body():
        async with connect(ws_url(gw), subprotocols=["superchat"]) as ws:
            assert ws.subprotocol == "superchat"
            await ws.send("sp")
            assert await ws.recv() == "sp"
        async with connect(ws_url(gw), subprotocols=["nope", "chat", "superchat"]) as ws:
            assert ws.subprotocol == "chat"
        async with connect(ws_url(gw)) as ws:
            assert ws.subprotocol is None
    run(body())
    with RawWs(gw.port) as ws:  # no match: no Sec-WebSocket-Protocol at all
        _, headers = ws.handshake(extra=[("Sec-WebSocket-Protocol", "other, Chat")])
        assert "sec-websocket-protocol" not in headers


# ---------------------------------------------------------------- text/binary replies

def test_ws_binary_replies_are_binary(gateway, php):
    gw = gateway(**php_keys(php, WS_BINARY=1))

    async def body():
        async with connect(ws_url(gw)) as ws:
            await ws.send("héllo text")
            got = await ws.recv()
            assert isinstance(got, bytes) and got == "héllo text".encode()
    run(body())
    with RawWs(gw.port) as ws:
        ws.handshake()
        ws.send_text("plain ascii")
        assert ws.recv_message() == (OP_BINARY, b"plain ascii")


def test_text_mode_invalid_utf8_reply_goes_binary(wsgw):
    # "big N" answers N bytes of 'x' (valid UTF-8 -> text); an echo of bytes that
    # are not UTF-8 must come back as a binary frame, byte-exact.
    with RawWs(wsgw.port) as ws:
        ws.handshake()
        ws.send_frame(OP_BINARY, b"\xff\xfe\x00raw")
        assert ws.recv_message() == (OP_BINARY, b"\xff\xfe\x00raw")
        ws.send_frame(OP_BINARY, "ascii and ü".encode())
        assert ws.recv_message() == (OP_TEXT, "ascii and ü".encode())
        ws.send_text("big 70000")
        assert ws.recv_message() == (OP_TEXT, b"x" * 70000)


def test_large_reply_invalid_utf8_at_end_goes_binary(wsgw):
    """A long reply whose only bad byte is at its end is still no text frame (the
    whole reply is checked, not its first buffer chains). Sent in small fragments
    so the incoming side stays simple."""
    data = b"a" * 1000000 + b"\xff"
    chunks = [data[i:i + 4000] for i in range(0, len(data), 4000)]
    with RawWs(wsgw.port) as ws:
        ws.handshake()
        ws.send(b"".join(wsraw.frame(OP_BINARY if i == 0 else OP_CONT, c,
                                     fin=(i == len(chunks) - 1))
                         for i, c in enumerate(chunks)))
        op, got = ws.recv_message(10)
        assert got == data
        assert op == OP_BINARY, "a reply that is not UTF-8 was sent as a text frame"


# ---------------------------------------------------------------- server pings

def test_ping_interval_answering_client_stays(gateway, php):
    gw = gateway(**php_keys(php, PING_INTERVAL=1))

    async def body():
        # the client never pings itself: only its pongs keep it alive
        async with connect(ws_url(gw), ping_interval=None) as ws:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.wait_closed(), 3.2)
            await ws.send("alive")
            assert await ws.recv() == "alive"
    run(body())

    with RawWs(gw.port) as ws:  # the same by hand: count the pings
        ws.handshake()
        pings = 0
        deadline = time.monotonic() + 3.2
        while time.monotonic() < deadline:
            try:
                fin, op, payload = ws.recv_frame(deadline - time.monotonic())
            except TimeoutError:
                break
            assert op == OP_PING, "unexpected frame %#x %r" % (op, payload)
            pings += 1
            ws.send_frame(OP_PONG, payload)
        assert pings >= 2
        ws.send_text("still alive")
        assert ws.recv_message() == (OP_TEXT, b"still alive")


def test_ping_interval_silent_client_closed(gateway, php):
    gw = gateway(**php_keys(php, PING_INTERVAL=1))
    with RawWs(gw.port) as ws:
        ws.handshake()
        t0 = time.monotonic()
        ops, code = [], None
        try:
            while True:
                fin, op, payload = ws.recv_frame(4)
                ops.append(op)
                if op == OP_CLOSE:
                    code = struct.unpack(">H", payload[:2])[0]
                    break
        except wsraw.Closed:
            pass
        closed = ws.wait_eof(3)
        elapsed = time.monotonic() - t0
        assert OP_PING in ops, "no ping before the close: %r" % ops
        # README: "silent a whole interval: close 1008" -- the close frame is sent
        # (the client is closed after the flush), so exactly 1008, not just EOF
        assert code == 1008, "close code %r, want 1008 (policy violation)" % code
        assert closed and elapsed <= 3.5, "closed=%s after %.2f s" % (closed, elapsed)


# ---------------------------------------------------------------- TLS

@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return peers.make_cert(tmp_path_factory.mktemp("cert"))


def client_tls(cert_path):
    ctx = ssl.create_default_context(cafile=str(cert_path))
    ctx.check_hostname = False  # CN=localhost, no SAN; the chain is still verified
    return ctx


def test_wss_echo(gateway, php, cert):
    gw = gateway(**php_keys(php, SSL=1, SSL_CERT=str(cert[0]), SSL_PKEY=str(cert[1]),
                            MAX_BUFF_SIZE=BIG_MAX))
    big = "tls ü " * 40000

    async def body():
        async with connect(ws_url(gw, "/tls?q=1", "wss"), ssl=client_tls(cert[0])) as ws:
            await ws.send("over tls")
            assert await ws.recv() == "over tls"
            await ws.send(big)
            assert await ws.recv() == big
            await ws.send(invalid_utf8(5000))
            assert await ws.recv() == invalid_utf8(5000)
            await ws.send("params")
            p = json.loads(await ws.recv())
            assert p["HTTPS"] == "on"
            assert p["REQUEST_URI"] == "/tls?q=1"
    run(body())
    with RawWs(gw.port, tls=client_tls(cert[0])) as ws:  # raw frames over TLS too
        ws.handshake()
        ws.send_frame(OP_TEXT, b"frag-", fin=False)
        ws.send_frame(OP_PING, b"p")
        ws.send_frame(OP_CONT, b"ment")
        assert ws.recv_frame() == (True, OP_PONG, b"p")
        assert ws.recv_message() == (OP_TEXT, b"frag-ment")
        ws.send_close(1000)
        assert ws.recv_close()[0] == 1000


def test_wss_plain_tcp_client_refused(gateway, php, cert):
    gw = gateway(**php_keys(php, SSL=1, SSL_CERT=str(cert[0]), SSL_PKEY=str(cert[1])))
    with RawWs(gw.port) as ws:  # speaks HTTP to a TLS port: no 101 may come back
        ws.send(wsraw.upgrade_request("/"))
        data = ws.read_until_eof(5)
        assert b"101" not in data and b"Switching" not in data
    assert gw.alive()


def test_length_protocol_over_tls(gateway, php, cert):
    gw = gateway(**Backend("php", php.addr, "", php).keys(
        SSL=1, SSL_CERT=str(cert[0]), SSL_PKEY=str(cert[1])))
    ctx = client_tls(cert[0])
    raw = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        buf = bytearray()

        def recv_msg():
            deadline = time.monotonic() + 5
            while True:
                if len(buf) >= 4:
                    n = struct.unpack(">I", buf[:4])[0]
                    if len(buf) >= 4 + n:
                        msg = bytes(buf[4:4 + n])
                        del buf[:4 + n]
                        return msg
                s.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = s.recv(1 << 16)
                assert chunk, "TLS connection closed"
                buf.extend(chunk)

        for payload in (b"hello over tls", invalid_utf8(40000)):
            s.sendall(fk.Client.frame(payload))
            assert recv_msg() == payload


def start_expect_failure(gw, timeout=10):
    """Starts a configured (not started) Gateway that must fail: returns (rc, text)."""
    fk.write_config(gw.conf, gw.keys)
    gw._out = open(gw.out_file, "ab")
    gw.proc = subprocess.Popen([str(fk.FOOKING), str(gw.conf)], cwd=str(gw.dir),
                               stdin=subprocess.DEVNULL, stdout=gw._out,
                               stderr=subprocess.STDOUT)
    gw.known_pids.add(gw.proc.pid)
    try:
        rc = gw.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        rc = None
    return rc, gw.output() + gw.log()


@pytest.mark.parametrize("missing", ["SSL_CERT", "SSL_PKEY"])
def test_ssl_missing_file_fails_start(gateway, php, cert, tmp_path, missing):
    files = {"SSL_CERT": str(cert[0]), "SSL_PKEY": str(cert[1])}
    files[missing] = str(tmp_path / "does-not-exist.pem")
    gw = gateway(start=False, **php_keys(php, SSL=1, **files))
    rc, text = start_expect_failure(gw)
    assert rc is not None, "fooking kept running with a missing %s" % missing
    assert rc != 0
    assert missing in text, text[-2000:]
    assert not fk.port_listening(gw.port)


def test_ssl_without_cert_key_rejected_by_check(tmp_path):
    conf = fk.write_config(tmp_path / "c.lua", {"PORT": fk.free_port(), "SSL": 1,
                                                "BACKEND_SERVER": "127.0.0.1:9"})
    r = fk.run_check(conf)
    assert r.returncode != 0
    assert "SSL_CERT" in r.stdout + r.stderr


# ---------------------------------------------------------------- STATIC_DIR

SECRET = b"TOP-SECRET-OUTSIDE-CONTENT"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
STATIC_FILES = {
    "index.html": b"<!doctype html><title>root index</title>",
    "app.js": b"console.log('app');\n",
    "style.css": b"body { color: red }\n",
    "data.json": b'{"k": [1, 2, 3]}',
    "img.png": PNG,
    "icon.svg": b'<svg xmlns="http://www.w3.org/2000/svg"/>',
    "sub/index.html": b"<p>sub index</p>",
    "sub/page.txt": b"plain text page",
    ".env": b"HIDDEN=1",
}
CONTENT_TYPES = {
    "/app.js": "text/javascript",
    "/style.css": "text/css",
    "/data.json": "application/json",
    "/img.png": "image/png",
    "/icon.svg": "image/svg+xml",
    "/index.html": "text/html",
}


@pytest.fixture(scope="module")
def static_gw(php, tmp_path_factory):
    base = tmp_path_factory.mktemp("static")
    root = base / "www"
    for name, data in STATIC_FILES.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (base / "secret").write_bytes(SECRET)
    (root / "link.txt").symlink_to(base / "secret")
    (root / "sub" / "uplink").symlink_to(base)
    gw = fk.Gateway(base / "gw", **php_keys(php, STATIC_DIR=str(root))).start()
    gw.root = root
    yield gw
    gw.stop()
    problems = gw.sanitizer_report()
    assert not problems, "sanitizer reports from fooking:\n" + "\n".join(problems[:20])


def test_static_root_index(static_gw):
    status, headers, body = wsraw.http_request(static_gw.port, "/")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert body == STATIC_FILES["index.html"]
    assert int(headers["content-length"]) == len(body)


@pytest.mark.parametrize("path", sorted(CONTENT_TYPES))
def test_static_content_types(static_gw, path):
    status, headers, body = wsraw.http_request(static_gw.port, path + "?v=2")
    assert status == 200
    assert headers["content-type"].split(";")[0] == CONTENT_TYPES[path]
    assert body == STATIC_FILES[path[1:]]
    assert int(headers["content-length"]) == len(body)


def test_static_head(static_gw):
    status, headers, body = wsraw.http_request(static_gw.port, "/img.png", method="HEAD")
    assert status == 200
    assert int(headers["content-length"]) == len(PNG)
    assert headers["content-type"] == "image/png"
    assert body == b""


def test_static_subdir(static_gw):
    status, _, body = wsraw.http_request(static_gw.port, "/sub/")
    assert (status, body) == (200, STATIC_FILES["sub/index.html"])
    status, headers, body = wsraw.http_request(static_gw.port, "/sub")
    assert status == 301
    assert headers["location"] == "/sub/"
    status, _, body = wsraw.http_request(static_gw.port, "/sub/page.txt")
    assert (status, body) == (200, STATIC_FILES["sub/page.txt"])


@pytest.mark.parametrize("path", ["//sub", "///sub", "/.//sub"])
def test_static_redirect_not_protocol_relative(static_gw, path):
    """A Location of "//sub/" is a protocol-relative URL: the browser would go to
    the host "sub" (an open redirect to any host named like a directory)."""
    status, headers, _ = wsraw.http_request(static_gw.port, path)
    assert status in (301, 404), status
    if status == 301:
        loc = headers["location"]
        assert loc.startswith("/") and not loc.startswith("//"), loc


@pytest.mark.parametrize("path", ["/missing.html", "/sub/missing", "/.env", "/sub/index.htm"])
def test_static_404(static_gw, path):
    status, _, body = wsraw.http_request(static_gw.port, path)
    assert status == 404
    assert b"HIDDEN" not in body


@pytest.mark.parametrize("path", [
    "/../secret", "/%2e%2e/secret", "//etc/passwd", "/sub/../../secret", "/%2e%2e%2fsecret",
    "/link.txt", "/sub/uplink/secret", "/sub/%2e%2e/%2e%2e/secret", "/%2E%2E/secret",
    "/sub%2f..%2f..%2fsecret", "/..%5csecret", "/%00index.html", "/./../secret",
])
def test_static_traversal_refused(static_gw, path):
    status, _, body = wsraw.http_request(static_gw.port, path)
    assert status in (400, 403, 404), (path, status)
    assert SECRET not in body
    assert b"root:" not in body


def test_static_post_refused(static_gw):
    status, _, body = wsraw.http_request(static_gw.port, "/index.html", method="POST",
                                         headers=[("Content-Length", "0")])
    assert status == 405
    assert STATIC_FILES["index.html"] not in body


def test_static_port_still_upgrades(static_gw):
    async def body():
        async with connect(ws_url(static_gw, "/")) as ws:
            await ws.send("static port ws")
            assert await ws.recv() == "static port ws"
    run(body())
