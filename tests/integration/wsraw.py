"""Raw WebSocket (RFC 6455) and HTTP/1.1 helpers for test_websocket.py.

The websockets library is a well-behaved client; these helpers send what a
well-behaved client never would (unmasked frames, reserved bits, bad UTF-8, half
a handshake) and read exactly what the server put on the wire.

    ws = RawWs(port)                   # TCP (or TLS: tls=ssl_context)
    ws.handshake("/?a=1")              # asserts 101 and the Sec-WebSocket-Accept
    ws.send_frame(OP_TEXT, b"hi", fin=False)
    fin, op, payload = ws.recv_frame()
    code, reason = ws.recv_close()     # the next close frame (skips other frames)
    ws.wait_eof()                      # True once the server closed TCP

Every read has a deadline; nothing sleeps blindly.
"""

import base64
import hashlib
import os
import socket
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA


class Closed(Exception):
    """The server closed the TCP connection (EOF or reset)."""


def accept_of(key):
    """The Sec-WebSocket-Accept value for a Sec-WebSocket-Key."""
    if isinstance(key, str):
        key = key.encode()
    return base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()


def new_key():
    return base64.b64encode(os.urandom(16)).decode()


def mask_bytes(payload, key):
    """XOR payload with the 4-byte masking key (fast for megabytes)."""
    n = len(payload)
    if n == 0:
        return b""
    rep = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(rep, "big")).to_bytes(n, "big")


def frame(opcode, payload=b"", fin=True, mask=True, rsv=0, length=None, key=None):
    """One client frame. rsv is the 3-bit RSV1..3 field (4 = RSV1); length overrides
    the announced payload length (to announce more than is sent)."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    m = 0x80 if mask else 0
    if n < 126:
        hdr = bytes([b0, m | n])
    elif n < 65536:
        hdr = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        hdr = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if mask:
        key = key or os.urandom(4)
        return hdr + key + mask_bytes(payload, key)
    return hdr + payload


def close_payload(code, reason=b""):
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack(">H", code) + reason


def parse_head(head):
    """b"HTTP/1.1 101 ...\\r\\nA: b\\r\\n" -> (status, {lower name: value}, raw lines)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    assert parts[0].startswith("HTTP/1."), "not an HTTP response: %r" % lines[0]
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, lines


def upgrade_request(path="/", key=None, version="13", host="127.0.0.1", extra=None,
                    omit=()):
    """The bytes of a WebSocket upgrade request. extra: list of (name, value);
    omit: names (lower case) of the standard headers to leave out."""
    std = [("Host", host), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
           ("Sec-WebSocket-Key", key or new_key()), ("Sec-WebSocket-Version", version)]
    lines = ["GET %s HTTP/1.1" % path]
    for name, value in std + list(extra or []):
        if name.lower() in omit:
            continue
        lines.append("%s: %s" % (name, value))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class RawWs:
    def __init__(self, port, host="127.0.0.1", tls=None, timeout=5.0):
        sock = socket.create_connection((host, port), timeout=timeout)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self.buf = bytearray()
        self.timeout = timeout
        self.eof = False
        self.status = None
        self.headers = None

    # ---- bytes

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("nothing more from the server (have %d bytes)" % len(self.buf))
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            raise TimeoutError("nothing more from the server (have %d bytes)" % len(self.buf))
        except (ConnectionResetError, BrokenPipeError) as e:
            self.eof = True
            raise Closed("connection reset: %s" % e)
        except OSError as e:  # ssl.SSLError on an unclean TLS close, ...
            self.eof = True
            raise Closed("connection error: %s" % e)
        if not chunk:
            self.eof = True
            raise Closed("connection closed by the server (%d bytes pending)" % len(self.buf))
        self.buf += chunk

    def _take(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_until_eof(self, timeout=None):
        """Everything until the server closes (Closed is the expected end)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        try:
            while True:
                self._fill(deadline)
        except Closed:
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def wait_eof(self, timeout=5.0):
        """True once the server closed the connection within timeout (data that
        arrives meanwhile is discarded), False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._fill(deadline)
                self.buf.clear()
            except Closed:
                return True
            except TimeoutError:
                return False

    # ---- HTTP

    def read_head(self, timeout=None):
        """Reads a response head -> (status, headers); the rest stays buffered."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        i = self.buf.index(b"\r\n\r\n")
        head = bytes(self.buf[:i])
        del self.buf[:i + 4]
        self.status, self.headers, _ = parse_head(head)
        return self.status, self.headers

    def handshake(self, path="/", expect=101, **kw):
        """Sends an upgrade request (see upgrade_request) and reads the answer head.
        With expect=101 also checks Sec-WebSocket-Accept."""
        key = kw.pop("key", None) or new_key()
        self.send(upgrade_request(path, key=key, **kw))
        status, headers = self.read_head()
        if expect is not None:
            assert status == expect, "handshake answered %d, want %d: %r" % (status, expect,
                                                                              headers)
        if status == 101:
            assert headers.get("sec-websocket-accept") == accept_of(key)
            assert headers.get("upgrade", "").lower() == "websocket"
        return status, headers

    # ---- frames

    def send_frame(self, opcode, payload=b"", **kw):
        self.send(frame(opcode, payload, **kw))

    def send_text(self, text):
        self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text)

    def send_close(self, code=1000, reason=b""):
        self.send_frame(OP_CLOSE, close_payload(code, reason))

    def recv_frame(self, timeout=None):
        """The next server frame -> (fin, opcode, payload). Asserts what RFC 6455
        requires of a server frame: no mask, no RSV bits."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        b0, b1 = self._take(2, deadline)
        assert b0 & 0x70 == 0, "server frame with RSV bits: %#x" % b0
        assert b1 & 0x80 == 0, "server frame is masked"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._take(2, deadline))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._take(8, deadline))[0]
        return bool(b0 & 0x80), b0 & 0x0F, self._take(n, deadline)

    def recv_message(self, timeout=None, on_ping="pong"):
        """The next data message (fragments joined) -> (opcode, payload). Pings are
        answered (on_ping="pong") or ignored; a close frame raises Closed."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        op, parts = None, []
        while True:
            fin, opcode, payload = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if opcode == OP_PING:
                if on_ping == "pong":
                    self.send_frame(OP_PONG, payload)
                continue
            if opcode == OP_PONG:
                continue
            if opcode == OP_CLOSE:
                raise Closed("close frame %r" % (payload,))
            if op is None:
                op = opcode
            parts.append(payload)
            if fin:
                return op, b"".join(parts)

    def recv_close(self, timeout=None):
        """Skips frames up to the next close frame -> (code or None, reason bytes)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            _, opcode, payload = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if opcode == OP_CLOSE:
                if len(payload) >= 2:
                    return struct.unpack(">H", payload[:2])[0], payload[2:]
                return None, payload

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def http_request(port, target="/", method="GET", headers=None, raw=None, tls=None,
                 timeout=5.0):
    """One HTTP/1.1 request on a fresh connection, read to EOF (the server closes
    after every answer) -> (status, headers, body)."""
    if raw is None:
        lines = ["%s %s HTTP/1.1" % (method, target), "Host: 127.0.0.1"]
        lines += ["%s: %s" % kv for kv in (headers or [])]
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    with RawWs(port, tls=tls, timeout=timeout) as c:
        c.send(raw)
        status, hdrs = c.read_head()
        body = c.read_until_eof()
    return status, hdrs, body
