"""FastCGI helpers for fooking's integration tests.

- A tiny FastCGI *client* (`fcgi_request`) used to check the test backends
  (php-fpm + echo.php, goecho, the fakes here) without the gateway.
- `FakeFcgi`: a purpose-built FastCGI *server* for fault injection. It records
  every accepted connection and every request (params, body), and answers like
  an echo backend unless the message (or the server-wide `mode`) asks for a fault:

    b"params..."            JSON object of the request's params
    b"big N"                N bytes of "x"
    b"fault:sleep:N ..."    answer (echo) after N seconds
    b"fault:hang ..."       never answer (the connection stays open)
    b"fault:badversion ..." records with FastCGI version 2
    b"fault:overlong ..."   a STDOUT header announcing 1000 bytes, 10 bytes of data,
                            then the connection is closed
    b"fault:after_end ..."  a correct echo and END_REQUEST, then one more STDOUT
                            record "JUNK-AFTER-END" for the same request id
    b"fault:close_early ..." part of a reply ("Content-Length: 100", 5 body bytes),
                            then the connection is closed without END_REQUEST
    b"fault:stderr ..."     a STDERR record "fake stderr message", then the echo
    b"fault:cl_short ..."   "Content-Length: 3" but the whole message as body
    b"fault:lf ..."         the echo with bare-LF header lines
    b"fault:nocl ..."       the echo without a Content-Length header
    b"fault:tiny ..."       the echo (headers and body) in 1-byte STDOUT records
    b"fault:status:NNN ..." the echo with "Status: NNN"
    b"fault:empty ..."      "Content-Length: 0" and no body (an explicit empty reply)
    b"fault:empty_nocl ..." no Content-Length and no body (nothing to send)
    b"fault:hdr:N ..."      the echo after N bytes of header lines ("X-Pad-i: xxx...",
                            at most 1000 bytes a line, CRLF included)
    b"reply:" + JSON        {"h": [[name, value], ...], "b": body, "tiny": bool,
                            "sleep": seconds}: a reply with exactly those header
                            lines (strings, sent as latin-1 so any byte can be
                            written) and that body, in 1-byte STDOUT records when
                            "tiny", after "sleep" seconds when given
    anything else           echo, with an exact Content-Length

  A server-wide `mode` ("hang", "slow", "slow_first", "badversion", "overlong",
  "after_end", "close_early") applies to every message request (EVENT 0);
  connect/close events (EVENT 1/2) are always answered normally, with an empty
  body ("welcome <SID>" for EVENT=1 when `welcome=True`), or with what
  `event_reply(req)` returns when it is given and returns (headers, body).

  `unsolicited_mpxs=True`: every accepted connection first gets an
  FCGI_GET_VALUES_RESULT with FCGI_MPXS_CONNS=1 nobody asked for (the server
  still closes the connection after each request without KEEP_CONN).
"""

import json
import socket
import struct
import threading
import time

FCGI_VERSION_1 = 1
FCGI_BEGIN_REQUEST = 1
FCGI_ABORT_REQUEST = 2
FCGI_END_REQUEST = 3
FCGI_PARAMS = 4
FCGI_STDIN = 5
FCGI_STDOUT = 6
FCGI_STDERR = 7
FCGI_GET_VALUES = 9
FCGI_GET_VALUES_RESULT = 10
FCGI_UNKNOWN_TYPE = 11
FCGI_RESPONDER = 1
FCGI_KEEP_CONN = 1


# ---------------------------------------------------------------- codec

def record(rtype, req_id, content=b"", version=FCGI_VERSION_1, padding=None):
    """One record. Content over 65535 bytes is not split here (see records())."""
    assert len(content) <= 0xFFFF
    if padding is None:
        padding = (-len(content)) % 8
    return (struct.pack(">BBHHBx", version, rtype, req_id, len(content), padding)
            + content + b"\0" * padding)


def records(rtype, req_id, data):
    """A stream (STDIN, STDOUT, PARAMS) split into records of at most 65535 bytes,
    without the terminating empty record."""
    out = []
    for i in range(0, len(data), 0xFFFF):
        out.append(record(rtype, req_id, data[i:i + 0xFFFF]))
    return b"".join(out)


def _nv_len(n):
    return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)


def encode_params(params):
    out = []
    for k, v in params.items():
        k = k.encode() if isinstance(k, str) else k
        v = v.encode() if isinstance(v, str) else v
        out.append(_nv_len(len(k)) + _nv_len(len(v)) + k + v)
    return b"".join(out)


def decode_params(data):
    params = {}
    i = 0
    while i < len(data):
        lens = []
        for _ in range(2):
            if data[i] & 0x80:
                lens.append(struct.unpack(">I", data[i:i + 4])[0] & 0x7FFFFFFF)
                i += 4
            else:
                lens.append(data[i])
                i += 1
        k = data[i:i + lens[0]]
        i += lens[0]
        v = data[i:i + lens[1]]
        i += lens[1]
        params[k.decode("latin-1")] = v.decode("latin-1")
    return params


def recv_exact(sock, n):
    """n bytes, or None on EOF before the first byte; raises EOFError on EOF mid-way."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            if not buf:
                return None
            raise EOFError("EOF after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def read_record(sock):
    """(version, type, request_id, content) or None on a clean EOF."""
    head = recv_exact(sock, 8)
    if head is None:
        return None
    version, rtype, req_id, clen, plen = struct.unpack(">BBHHBx", head)
    body = recv_exact(sock, clen + plen) if clen + plen else b""
    if body is None:
        raise EOFError("EOF inside a record")
    return version, rtype, req_id, body[:clen]


def parse_cgi(stdout):
    """(status, headers {lower-name: value}, body) of a CGI response."""
    sep = stdout.find(b"\r\n\r\n")
    seplen = 4
    lf = stdout.find(b"\n\n")
    if sep < 0 or (0 <= lf < sep):
        sep, seplen = lf, 2
    if sep < 0:
        raise ValueError("no end of CGI headers in %r" % stdout[:200])
    headers = {}
    for line in stdout[:sep].replace(b"\r\n", b"\n").split(b"\n"):
        if b":" in line:
            k, v = line.split(b":", 1)
            headers[k.strip().lower().decode()] = v.strip().decode("latin-1")
    status = int(headers.get("status", "200").split()[0])
    return status, headers, stdout[sep + seplen:]


class Response:
    def __init__(self, stdout, stderr, app_status, protocol_status):
        self.stdout = stdout
        self.stderr = stderr
        self.app_status = app_status
        self.protocol_status = protocol_status
        self.status, self.headers, self.body = parse_cgi(stdout)

    def json(self):
        return json.loads(self.body)


def fcgi_request(addr, params, body=b"", req_id=1, keep_conn=False, timeout=10, sock=None):
    """One RESPONDER request to addr ("host:port" or (host, port)); returns a Response.
    With sock given, the request goes over that (keep-alive) connection."""
    own = sock is None
    if own:
        if isinstance(addr, str) and addr.startswith("unix:"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(addr[5:])
        else:
            if isinstance(addr, str):
                host, port = addr.rsplit(":", 1)
                addr = (host, int(port))
            sock = socket.create_connection(addr, timeout=timeout)
    sock.settimeout(timeout)
    try:
        msg = [record(FCGI_BEGIN_REQUEST, req_id,
                      struct.pack(">HB5x", FCGI_RESPONDER, FCGI_KEEP_CONN if keep_conn else 0))]
        msg.append(records(FCGI_PARAMS, req_id, encode_params(params)))
        msg.append(record(FCGI_PARAMS, req_id))
        msg.append(records(FCGI_STDIN, req_id, body))
        msg.append(record(FCGI_STDIN, req_id))
        sock.sendall(b"".join(msg))
        out, err = bytearray(), bytearray()
        while True:
            rec = read_record(sock)
            if rec is None:
                raise EOFError("backend closed before END_REQUEST")
            _, rtype, rid, content = rec
            if rid != req_id:
                continue
            if rtype == FCGI_STDOUT:
                out += content
            elif rtype == FCGI_STDERR:
                err += content
            elif rtype == FCGI_END_REQUEST:
                app_status, proto = struct.unpack(">IB3x", content)
                return Response(bytes(out), bytes(err), app_status, proto)
    finally:
        if own:
            sock.close()


# ---------------------------------------------------------------- fake server

class _Conn:
    def __init__(self, sock, index):
        self.sock = sock
        self.index = index
        self.wlock = threading.Lock()
        self.closed = False
        self.released = False
        self.on_close = None

    def release(self):
        """Counts the connection as closed now (it is about to be closed)."""
        with self.wlock:
            if not self.released:
                self.released = True
                if self.on_close:
                    self.on_close()

    def send(self, data):
        with self.wlock:
            if self.closed:
                return
            try:
                self.sock.sendall(data)
            except OSError:
                pass

    def close(self):
        with self.wlock:
            if not self.closed:
                self.closed = True
                if self.on_close and not self.released:
                    self.released = True
                    self.on_close()
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self.sock.close()


class FakeFcgi:
    """A threaded FastCGI server on 127.0.0.1 or a unix socket (see the module doc).
    `addr` is the BACKEND_SERVER string that reaches it."""

    def __init__(self, mode="echo", delay=1.0, welcome=False, port=0, unix=None,
                 unsolicited_mpxs=False, event_reply=None):
        self.mode = mode
        self.event_reply = event_reply
        self.unsolicited_mpxs = unsolicited_mpxs
        self.delay = delay
        self.welcome = welcome
        self.lock = threading.Lock()
        self.connections = 0        # TCP connections accepted
        self.open = 0               # connections open right now
        self.max_open = 0           # most connections open at once
        self.requests = []          # dicts: conn, id, keep, params, body, event, sid, t
        self.answered = 0           # requests answered (END_REQUEST sent or fault done)
        self._conns = []
        self._stop = threading.Event()
        self._first_done = False
        if unix:
            self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.lsock.bind(str(unix))
            self.port = None
            self.addr = "unix:%s" % unix
        else:
            self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.lsock.bind(("127.0.0.1", port))
            self.port = self.lsock.getsockname()[1]
            self.addr = "127.0.0.1:%d" % self.port
        self.lsock.listen(512)
        self._threads = []
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)

    # ---- inspection helpers
    def snapshot(self):
        with self.lock:
            return list(self.requests)

    def messages(self):
        """Requests with EVENT 0 (client messages)."""
        return [r for r in self.snapshot() if r["event"] in ("", "0")]

    def sid_of(self, body_prefix):
        for r in self.snapshot():
            if r["body"].startswith(body_prefix):
                return r["sid"]
        return None

    def events(self, event, sid=None):
        return [r for r in self.snapshot()
                if r["event"] == str(event) and (sid is None or r["sid"] == sid)]

    # ---- server
    def stop(self):
        self._stop.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self._conns)
        for c in conns:
            c.close()

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.open += 1
                self.max_open = max(self.max_open, self.open)
                c = _Conn(s, self.connections)
                c.on_close = self._closed_one
                self._conns.append(c)
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()

    def _closed_one(self):
        with self.lock:
            self.open -= 1

    def _serve(self, c):
        pending = {}
        if self.unsolicited_mpxs:
            c.send(record(FCGI_GET_VALUES_RESULT, 0, encode_params({"FCGI_MPXS_CONNS": "1"})))
        try:
            while not self._stop.is_set():
                try:
                    rec = read_record(c.sock)
                except (EOFError, OSError):
                    return
                if rec is None:
                    return
                version, rtype, rid, content = rec
                if rtype == FCGI_BEGIN_REQUEST:
                    role, flags = struct.unpack(">HB5x", content)
                    pending[rid] = {"conn": c.index, "id": rid, "keep": bool(flags & FCGI_KEEP_CONN),
                                    "role": role, "rawparams": bytearray(), "body": bytearray(),
                                    "version": version}
                elif rtype == FCGI_PARAMS and rid in pending:
                    pending[rid]["rawparams"] += content
                elif rtype == FCGI_STDIN and rid in pending:
                    if content:
                        pending[rid]["body"] += content
                    else:
                        req = pending.pop(rid)
                        req["params"] = decode_params(bytes(req.pop("rawparams")))
                        req["body"] = bytes(req["body"])
                        p = req["params"]
                        req["event"] = p.get("EVENT", p.get("HTTP_EVENT", ""))
                        req["sid"] = p.get("SESSIONID", p.get("HTTP_SESSIONID", ""))
                        req["t"] = time.monotonic()
                        with self.lock:
                            self.requests.append(req)
                        threading.Thread(target=self._answer, args=(c, req), daemon=True).start()
                elif rtype == FCGI_ABORT_REQUEST:
                    pending.pop(rid, None)
                    c.send(record(FCGI_END_REQUEST, rid, struct.pack(">IB3x", 0, 0)))
                elif rtype == FCGI_GET_VALUES:
                    c.send(record(FCGI_GET_VALUES_RESULT, 0,
                                  encode_params({"FCGI_MPXS_CONNS": "1"})))
        finally:
            # answers still in flight then write to a closed socket, harmlessly
            c.close()

    def _fault_of(self, req):
        body = req["body"]
        if req["event"] not in ("", "0"):
            return "event", None
        if body.startswith(b"fault:"):
            parts = body[6:].split(b" ", 1)[0].split(b":")
            name = parts[0].decode("latin-1")
            arg = parts[1].decode("latin-1") if len(parts) > 1 else None
            return name, arg
        if self.mode != "echo":
            if self.mode == "slow_first":
                with self.lock:
                    first = not self._first_done
                    self._first_done = True
                return ("sleep", str(self.delay)) if first else ("echo", None)
            if self.mode == "slow":
                return "sleep", str(self.delay)
            return self.mode, None
        return "echo", None

    @staticmethod
    def _lines(headers):
        return b"".join(("%s: %s\r\n" % (n, v)).encode("latin-1") for n, v in headers)

    @staticmethod
    def _cgi(body, extra=b""):
        return (b"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n%s\r\n"
                % (len(body), extra)) + body

    def _reply(self, c, req, payload, version=FCGI_VERSION_1):
        rid = req["id"]
        out = []
        for i in range(0, len(payload), 0xFFFF):
            out.append(record(FCGI_STDOUT, rid, payload[i:i + 0xFFFF], version=version))
        out.append(record(FCGI_STDOUT, rid, b"", version=version))
        out.append(record(FCGI_END_REQUEST, rid, struct.pack(">IB3x", 0, 0), version=version))
        if not req["keep"]:
            c.release()  # the peer may connect again as soon as it reads END_REQUEST
        req["t_done"] = time.monotonic()
        c.send(b"".join(out))

    def _mark(self, req):
        with self.lock:
            self.answered += 1
            req["answered"] = True
            req.setdefault("t_done", time.monotonic())

    def answered_for(self, sid, body_prefix=b""):
        """How many message requests of sid with a body starting with body_prefix
        have been answered (or their fault carried out)."""
        return sum(1 for r in self.snapshot()
                   if r["sid"] == sid and r.get("answered") and r["body"].startswith(body_prefix))

    def _done(self, c, req):
        self._mark(req)
        if not req["keep"]:
            c.close()

    def _answer(self, c, req):
        fault, arg = self._fault_of(req)
        body = req["body"]
        rid = req["id"]
        if fault == "event":
            out = b""
            if req["event"] == "1" and self.welcome:
                out = b"welcome " + req["sid"].encode()
            made = self.event_reply(req) if self.event_reply else None
            if made is not None:
                headers, out = made
                self._reply(c, req, self._cgi(out, self._lines(headers)))
            else:
                self._reply(c, req, self._cgi(out))
            return self._done(c, req)
        if body.startswith(b"reply:"):
            spec = json.loads(body[6:])
            if spec.get("sleep") and self._stop.wait(float(spec["sleep"])):
                return
            payload = self._cgi(spec.get("b", "").encode("latin-1"), self._lines(spec.get("h", [])))
            if spec.get("tiny"):
                c.send(b"".join(record(FCGI_STDOUT, rid, payload[i:i + 1])
                                for i in range(len(payload))))
                payload = b""
            self._reply(c, req, payload)
            return self._done(c, req)
        if fault == "hang":
            self._stop.wait()
            return
        if fault == "sleep":
            if self._stop.wait(float(arg or self.delay)):
                return
            fault = "echo"
        if fault == "stderr":
            c.send(record(FCGI_STDERR, rid, b"fake stderr message"))
            fault = "echo"
        if fault == "badversion":
            self._reply(c, req, self._cgi(body), version=2)
            return self._done(c, req)
        if fault == "overlong":
            head = struct.pack(">BBHHBx", FCGI_VERSION_1, FCGI_STDOUT, rid, 1000, 0)
            c.send(head + b"Status: 2")
            self._mark(req)
            c.close()
            return
        if fault == "close_early":
            c.send(record(FCGI_STDOUT, rid, b"Content-Length: 100\r\n\r\nabcde"))
            self._mark(req)
            c.close()
            return
        if fault == "after_end":
            self._reply(c, req, self._cgi(body))
            c.send(record(FCGI_STDOUT, rid, b"JUNK-AFTER-END"))
            return self._done(c, req)
        if fault == "cl_short":
            self._reply(c, req, b"Content-Length: 3\r\n\r\n" + body)
            return self._done(c, req)
        if fault == "lf":
            self._reply(c, req, b"Content-Type: text/plain\nContent-Length: %d\n\n%s"
                        % (len(body), body))
            return self._done(c, req)
        if fault == "nocl":
            self._reply(c, req, b"Content-Type: text/plain\r\n\r\n" + body)
            return self._done(c, req)
        if fault == "status":
            self._reply(c, req, self._cgi(body, b"Status: %s Whatever\r\n" % arg.encode()))
            return self._done(c, req)
        if fault == "empty":
            self._reply(c, req, b"Content-Type: text/plain\r\nContent-Length: 0\r\n\r\n")
            return self._done(c, req)
        if fault == "empty_nocl":
            self._reply(c, req, b"Content-Type: text/plain\r\n\r\n")
            return self._done(c, req)
        if fault == "hdr":
            want, pad, i = int(arg), [], 0
            while want > 0:
                name = b"X-Pad-%d: " % i
                n = min(1000, want)
                assert n >= len(name) + 3, "hdr:N: N too small for a header line"
                pad.append(name + b"x" * (n - len(name) - 2) + b"\r\n")
                want -= n
                i += 1
            self._reply(c, req, self._cgi(body, b"".join(pad)))
            return self._done(c, req)
        if fault == "tiny":
            payload = self._cgi(body)
            c.send(b"".join(record(FCGI_STDOUT, rid, payload[i:i + 1])
                            for i in range(len(payload))))
            self._reply(c, req, b"")
            return self._done(c, req)
        if body.startswith(b"params"):
            out = json.dumps(req["params"]).encode()
        elif body.startswith(b"big "):
            out = b"x" * int(body[4:].split()[0])
        else:
            out = body
        self._reply(c, req, self._cgi(out))
        self._done(c, req)
