"""Router protocol (DESIGN §7) for the integration tests: encode/decode, a backend
client, and a fake gateway link that announces sessions and channels and records
what the router sends it.

Every wait has a deadline; nothing sleeps and hopes.
"""

import select
import socket
import struct
import time

AUTH, CONN, CLOSE, KICK, SEND_MSG, SEND_ALL = 1, 2, 3, 4, 5, 6
CH_ADD, CH_DEL, CH_PUB, CH_SUB, CH_UNSUB, INFO, SECRET = 7, 8, 9, 10, 11, 12, 13
PING, PONG = 14, 15
# backend API v2
BIND, UNBIND, SEND_UID, KICK_UID, SESSION_SET, SEND_ALL_EX, CH_PUB_EX = range(16, 23)
IS_ONLINE, UID_COUNT, UID_SIDS, SID_UID, SESSION_GET = range(23, 28)
CH_COUNT, CH_MEMBERS, CH_SESSIONS, CHANNELS, ERROR, GW_QUERY, GW_ANSWER = range(28, 35)
HELLO = 35
V2_TOKEN = b"fooking/2"
NAMES = {1: "AUTH", 2: "CONN", 3: "CLOSE", 4: "KICK", 5: "SEND_MSG", 6: "SEND_ALL",
         7: "CH_ADD", 8: "CH_DEL", 9: "CH_PUB", 10: "CH_SUB", 11: "CH_UNSUB",
         12: "INFO", 13: "SECRET", 14: "PING", 15: "PONG",
         16: "BIND", 17: "UNBIND", 18: "SEND_UID", 19: "KICK_UID", 20: "SESSION_SET",
         21: "SEND_ALL_EX", 22: "CH_PUB_EX", 23: "IS_ONLINE", 24: "UID_COUNT",
         25: "UID_SIDS", 26: "SID_UID", 27: "SESSION_GET", 28: "CH_COUNT",
         29: "CH_MEMBERS", 30: "CH_SESSIONS", 31: "CHANNELS", 32: "ERROR",
         33: "GW_QUERY", 34: "GW_ANSWER", 35: "HELLO"}
HEADER = struct.Struct(">HHI")
SID_LEN = 16
MAX_SIDS = 4095
TIMEOUT = 10.0


def b(x):
    return x.encode() if isinstance(x, str) else bytes(x)


def encode(mtype, s=b"", d=b""):
    s, d = b(s), b(d)
    return HEADER.pack(mtype, len(s), len(d)) + s + d


def decode(buf):
    """Returns (msg, rest) where msg is (type, S, D), or (None, buf) if incomplete."""
    if len(buf) < HEADER.size:
        return None, buf
    t, slen, dlen = HEADER.unpack_from(buf)
    end = HEADER.size + slen + dlen
    if len(buf) < end:
        return None, buf
    return (t, bytes(buf[8:8 + slen]), bytes(buf[8 + slen:end])), buf[end:]


def sid(server, worker, n):
    """A 16-hex-char SID that says which fake gateway holds it (readable in failures)."""
    return ("%04x%02x%010x" % (server, worker, n)).encode()


def split_sids(sids):
    sids = list(sids)
    return [sids[i:i + MAX_SIDS] for i in range(0, len(sids), MAX_SIDS)] or [[]]


def uid_list(uids):
    """S of SEND_UID / KICK_UID: repeated u8 len | uid."""
    return b"".join(bytes([len(b(u))]) + b(u) for u in uids)


def ch_ex(channel, exclude=()):
    """S of CH_PUB_EX: u8 n | channel | SIDs to exclude."""
    channel = b(channel)
    return bytes([len(channel)]) + channel + b"".join(exclude)


def records(d):
    """`SID | u32 len | data` records -> [(sid, data)]."""
    out, i = [], 0
    while i < len(d):
        n = struct.unpack_from(">I", d, i + 16)[0]
        out.append((d[i:i + 16], d[i + 20:i + 20 + n]))
        i += 20 + n
    assert i == len(d), "records cut short"
    return out


def members(d):
    """CH_MEMBERS answer -> [(sid, uid)]."""
    out, i = [], 0
    while i < len(d):
        n = d[i + 16]
        out.append((d[i:i + 16], d[i + 17:i + 17 + n]))
        i += 17 + n
    assert i == len(d), "members cut short"
    return out


def channels(d):
    """CHANNELS answer -> {name: members}."""
    out, i = {}, 0
    while i < len(d):
        n = d[i]
        out[d[i + 1:i + 1 + n]] = struct.unpack_from(">I", d, i + 1 + n)[0]
        i += 5 + n
    assert i == len(d), "channels cut short"
    return out


def gw_answer(qid, recs):
    """D of GW_ANSWER: u32 id, then SID | u32 len | data per session."""
    return struct.pack(">I", qid) + b"".join(s + struct.pack(">I", len(d)) + b(d) for s, d in recs)


def parse_info(text):
    """INFO reply text -> {'clients', 'channels', 'gateways': [(server, worker, clients, channels)]}."""
    text = b(text).decode()
    lines = text.split("\r\n")
    assert lines[-1] == "", "INFO text must end with CRLF: %r" % text
    out = {"gateways": []}
    for line in lines[:-1]:
        key, _, val = line.partition(": ")
        if key == "gateway":
            out["gateways"].append(tuple(int(x) for x in val.split("\t")))
        else:
            out[key] = int(val)
    return out


class Conn:
    """A TCP connection speaking router messages, with deadline-bounded reads."""

    def __init__(self, port, host="127.0.0.1", rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect((host, port))
        self.buf = b""
        self.eof = False

    @classmethod
    def wrap(cls, sock):
        """A Conn over a socket this process accepted (a fake router's side of a
        real gateway's link)."""
        c = cls.__new__(cls)
        sock.settimeout(TIMEOUT)
        c.sock, c.buf, c.eof = sock, b"", False
        return c

    def send(self, mtype, s=b"", d=b""):
        self.sock.sendall(encode(mtype, s, d))

    def send_raw(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        # poll, not select: a test holding thousands of client sockets gives
        # this one a descriptor above FD_SETSIZE.
        p = select.poll()
        p.register(self.sock, select.POLLIN)
        if not p.poll(left * 1000):
            return False
        try:
            data = self.sock.recv(1 << 20)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def recv(self, timeout=TIMEOUT):
        """Next message (type, S, D); raises TimeoutError or EOFError."""
        deadline = time.monotonic() + timeout
        while True:
            msg, self.buf = decode(self.buf)
            if msg:
                return msg
            if self.eof:
                raise EOFError("connection closed by the router")
            if not self._fill(deadline) and not self.eof:
                raise TimeoutError("no complete message within %.1fs (%d bytes buffered)"
                                   % (timeout, len(self.buf)))

    def drain(self, quiet):
        """Every message that arrives until the peer has been silent `quiet` seconds."""
        out = []
        for _ in range(100000):
            try:
                out.append(self.recv(quiet))
            except (TimeoutError, EOFError):
                return out
        raise AssertionError("the peer never fell silent")

    def wait_closed(self, timeout=TIMEOUT):
        """True once the router has closed this connection (EOF or reset)."""
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self._fill(deadline)
        return self.eof

    def close(self):
        self.sock.close()


class QueryError(Exception):
    """An ERROR answer: the refused query's type and the router's words."""

    def __init__(self, qtype, text):
        super().__init__("%s refused: %s" % (NAMES.get(qtype, qtype), text.decode(errors="replace")))
        self.qtype, self.text = qtype, text


class Backend(Conn):
    """A backend client, like the PHP/Go libraries."""

    def __init__(self, port, secret=None, **kw):
        super().__init__(port, **kw)
        if secret is not None:
            self.send(SECRET, b"", secret)

    def _sids_cmd(self, mtype, sids, d=b""):
        for chunk in split_sids(sids):
            self.send(mtype, b"".join(chunk), d)

    def kick(self, sids):
        self._sids_cmd(KICK, sids)

    def send_msg(self, sids, msg):
        self._sids_cmd(SEND_MSG, sids, msg)

    def send_all(self, msg):
        self.send(SEND_ALL, b"", msg)

    def ch_add(self, sids, channel):
        self._sids_cmd(CH_ADD, sids, channel)

    def ch_del(self, sids, channel):
        self._sids_cmd(CH_DEL, sids, channel)

    def ch_pub(self, channel, msg):
        self.send(CH_PUB, channel, msg)

    def bind(self, sids, uid):
        self._sids_cmd(BIND, sids, uid)

    def unbind(self, sids):
        self._sids_cmd(UNBIND, sids)

    def send_uid(self, uids, msg):
        self.send(SEND_UID, uid_list(uids), msg)

    def kick_uid(self, uids):
        self.send(KICK_UID, uid_list(uids))

    def session_set(self, sid_, data):
        self.send(SESSION_SET, sid_, data)

    def send_all_ex(self, exclude, msg):
        self.send(SEND_ALL_EX, b"".join(exclude), msg)

    def ch_pub_ex(self, channel, exclude, msg):
        self.send(CH_PUB_EX, ch_ex(channel, exclude), msg)

    def query(self, mtype, s=b"", timeout=TIMEOUT):
        """Sends a query and returns its answer's D (asserting it is that
        query's answer, with S empty); an ERROR answer raises QueryError."""
        self.send(mtype, s)
        return self.answer(mtype, timeout)

    def answer(self, mtype, timeout=TIMEOUT):
        t, s, d = self.recv(timeout)
        if t == ERROR:
            raise QueryError(struct.unpack(">H", d[:2])[0], d[2:])
        assert (t, s) == (mtype, b""), (NAMES.get(t, t), s)
        return d

    def count(self, mtype, s):
        return struct.unpack(">I", self.query(mtype, s))[0]

    def info_text(self):
        self.send(INFO)
        t, s, d = self.recv()
        assert (t, s) == (INFO, b""), (t, s)
        return d

    def info(self):
        return parse_info(self.info_text())


class Gateway(Conn):
    """A fake gateway worker link: AUTH, then CONN/CLOSE/CH_SUB/CH_UNSUB, and it
    records what the router forwards. With fence=True it subscribes a private
    channel, so sync() can tell when everything sent before has arrived."""

    def __init__(self, port, server, worker, nsids=0, secret=None, fence=True, v2=True, **kw):
        super().__init__(port, **kw)
        self.server, self.worker = server, worker
        self.pings, self.pong = 0, False
        self.sids = []
        self.channels = set()
        d = struct.pack(">II", server, worker) + (b(secret) if secret is not None else b"")
        self.send(AUTH, b"", d)
        if v2:  # a v2 gateway (one from before v2, v2=False, never says HELLO)
            self.send(HELLO, b"", struct.pack(">I", 2))
        self.fence = ("fence-%d-%d" % (server, worker)).encode() if fence else None
        if self.fence:
            self.sub(self.fence)
        self.add_sids([sid(server, worker, i) for i in range(nsids)])

    def recv(self, timeout=TIMEOUT):
        """Like Conn.recv, but the router's PINGs (LINK_TIMEOUT) are counted in
        self.pings and, with self.pong set, answered; they are not commands."""
        while True:
            m = super().recv(timeout)
            if m[0] != PING:
                return m
            self.pings += 1
            if self.pong:
                self.send(PONG, b"", m[2])

    def add_sids(self, sids):
        sids = list(sids)
        for chunk in split_sids(sids):
            if chunk:
                self.send(CONN, b"".join(chunk))
        self.sids += sids

    def del_sids(self, sids):
        sids = list(sids)
        for chunk in split_sids(sids):
            if chunk:
                self.send(CLOSE, b"".join(chunk))
        self.sids = [x for x in self.sids if x not in set(sids)]

    def sub(self, channel):
        self.send(CH_SUB, channel)
        self.channels.add(b(channel))

    def unsub(self, channel):
        self.send(CH_UNSUB, channel)
        self.channels.discard(b(channel))

    def report(self, mtype, sids, d=b""):
        """A v2 gateway's report (BIND, UNBIND, CH_ADD, CH_DEL) of its sessions."""
        for chunk in split_sids(sids):
            self.send(mtype, b"".join(chunk), d)

    def nchannels(self):
        return len(self.channels)

    def until_fence(self, token, timeout=TIMEOUT):
        """Messages received before the fence CH_PUB carrying token."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            m = self.recv(max(0.0, deadline - time.monotonic()))
            if m == (CH_PUB, self.fence, token):
                return got
            got.append(m)


_fence_seq = [0]


def sync(backend, gateways):
    """Fences every gateway link: returns {gateway: [messages received before the
    fence]}. The router handles one connection's messages in order and writes each
    link's messages in order, so the fence arrives after everything sent before it."""
    _fence_seq[0] += 1
    token = b"fence %d" % _fence_seq[0]
    for g in gateways:
        backend.ch_pub(g.fence, token)
    return {g: g.until_fence(token) for g in gateways}


def wait_for(pred, timeout=TIMEOUT, what="condition"):
    """Polls pred() until it returns a true value; returns it, or fails at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s (last: %r)" % (what, v))
        time.sleep(0.01)


def wait_info(port, expect, secret=None, timeout=TIMEOUT):
    """Polls INFO (fresh connection each time) until expect(info) holds; returns info."""
    last = [None]

    def check():
        bk = Backend(port, secret=secret)
        try:
            last[0] = bk.info()
        finally:
            bk.close()
        return last[0] if expect(last[0]) else None

    try:
        return wait_for(check, timeout, "INFO")
    except AssertionError:
        raise AssertionError("INFO never matched; last was %r" % (last[0],))
