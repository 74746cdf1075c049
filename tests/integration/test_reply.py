"""Reply commands (DESIGN §13): X-Fooking-* headers in a backend's FastCGI reply,
carried out by the gateway for the session the reply is for.

The backend is fcgifake.FakeFcgi: a client message b"reply:" + JSON makes it
answer with exactly the header lines and body the JSON gives, and its
`event_reply` answers the connect event (EVENT=1) the same way. Every test
asserts what the clients received afterwards, what the router's queries say
(the gateway reported the joins and binds), and what the backend saw in the
next request's params.
"""

import json

import pytest

import fk
import rproto as rp
import wsraw
from peers import redis_server, router  # noqa: F401 (the fixtures)


def reply(headers, body="", tiny=False, sleep=None):
    """The client message that makes FakeFcgi answer with these headers."""
    spec = {"h": [list(h) for h in headers], "b": body}
    if tiny:
        spec["tiny"] = True
    if sleep:
        spec["sleep"] = sleep
    return b"reply:" + json.dumps(spec).encode()


class Setup:
    """A router, a 2-worker gateway linked to it, the fake backend; clients
    learn their SID from the connect event's reply ("sid <SID>")."""

    def __init__(self, router_port, gw, fake):
        self.router_port = router_port
        self.gw = gw
        self.fake = fake
        self.clients = []

    def client(self):
        c = fk.Client(self.gw.port)
        self.clients.append(c)
        first = c.recv()
        assert first.startswith(b"sid "), first
        c.sid = first[4:]
        return c

    def backend(self):
        return rp.Backend(self.router_port)

    def params(self, c):
        """The params of c's next request, as the backend saw them."""
        got = json.loads(c.request(b"params"))
        return got

    def close(self):
        for c in self.clients:
            c.close()


def connect_reply(extra=None):
    """event_reply for FakeFcgi: "sid <SID>" to every new client, with the
    header lines extra(req) gives (EVENT=1 only)."""
    def make(req):
        if req["event"] != "1":
            return None
        return (extra(req) if extra else []), b"sid " + req["sid"].encode()
    return make


@pytest.fixture
def setup(router, fake, gateway):  # noqa: F811 (router: the fixture)
    made = []

    def make(event_headers=None, with_router=True, bus=None, **keys):
        srv = fake(event_reply=connect_reply(event_headers))
        bus_keys = dict(BUS=bus, BUS_PREFIX="reply:") if bus else {}
        r = router(**bus_keys) if with_router else None
        conf = dict(BACKEND_SERVER=srv.addr, WORKER_NUM=2, EVENT_CONNECT=1, EVENT_CLOSE=1)
        if bus:
            conf.update(bus_keys)
        elif r is not None:
            conf.update(ROUTER_HOST="127.0.0.1", ROUTER_PORT=r.port)
        conf.update(keys)
        gw = gateway(**conf)
        s = Setup(r.port if r else None, gw, srv)
        if r is not None:
            # Both worker links up and past HELLO: a query answers for them.
            fk.wait_until(lambda: len(s.backend().info()["gateways"]) == 2, 10,
                          msg="2 gateway links")
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


def until_marker(c, marker, timeout=5.0):
    """What c receives up to the marker message (which is not included)."""
    got = []
    while True:
        m = c.recv(timeout)
        if m == marker:
            return got
        got.append(m)


def wait_count(bk, mtype, s, want):
    fk.wait_until(lambda: bk.count(mtype, s) == want, 5,
                  msg="%s %r == %d" % (rp.NAMES.get(mtype, mtype), s, want))


def test_join_by_header_then_a_channel_publish_reaches_it(setup):
    s = setup()
    a, b = s.client(), s.client()
    # The body comes back alone: no header of the reply reaches the client.
    assert a.request(reply([("X-Fooking-Join", "room, other ")], "joined")) == b"joined"
    bk = s.backend()
    wait_count(bk, rp.CH_COUNT, b"room", 1)
    wait_count(bk, rp.CH_COUNT, b"other", 1)
    assert [r[0] for r in rp.records(bk.query(rp.CH_SESSIONS, b"room"))] == [a.sid]
    bk.ch_pub(b"room", b"to room")
    bk.send_all(b"M1")
    assert until_marker(a, b"M1") == [b"to room"]
    assert until_marker(b, b"M1") == []
    # Header names are matched without regard to case; a leave is reported too.
    assert a.request(reply([("x-fooking-leave", "room")], "left")) == b"left"
    wait_count(bk, rp.CH_COUNT, b"room", 0)
    bk.ch_pub(b"room", b"to room again")
    bk.send_all(b"M2")
    assert until_marker(a, b"M2") == []
    bk.close()


def test_publish_broadcast_and_exclude_self(setup):
    s = setup()
    a, b, c = s.client(), s.client(), s.client()
    for x in (a, b):
        assert x.request(reply([("X-Fooking-Join", "r")], "in")) == b"in"
    bk = s.backend()
    wait_count(bk, rp.CH_COUNT, b"r", 2)
    cases = [
        (a, [("X-Fooking-Publish", "r")], {a: 1, b: 1, c: 0}),
        (a, [("X-Fooking-Publish", "r"), ("X-Fooking-Exclude-Self", "1")], {a: 0, b: 1, c: 0}),
        (a, [("X-Fooking-Broadcast", "1")], {a: 1, b: 1, c: 1}),
        (a, [("X-Fooking-Broadcast", "true"), ("X-Fooking-Exclude-Self", "yes")],
         {a: 0, b: 1, c: 1}),
        # c is no member: its publish reaches the members, not c.
        (c, [("X-Fooking-Publish", "r")], {a: 1, b: 1, c: 0}),
        # Two channels a member is in once: its own copy comes once.
        (a, [("X-Fooking-Publish", "r, r")], {a: 1, b: 2, c: 0}),
    ]
    for i, (sender, headers, want) in enumerate(cases):
        body = ("case %d" % i).encode()
        marker = b"end %d" % i
        # The marker goes out the same way, through the same router link,
        # right behind: whoever gets it has had what came before.
        sender.send(reply(headers, body.decode()),
                    reply([("X-Fooking-Broadcast", "1")], marker.decode()))
        for x in (a, b, c):
            got = until_marker(x, marker)
            assert got == [body] * want[x], (i, x.sid, got)
    bk.close()


def test_join_comes_before_the_body_and_leave_after_it(setup):
    s = setup()
    a, b = s.client(), s.client()
    assert b.request(reply([("X-Fooking-Join", "room")], "in")) == b"in"
    # Join + Publish: the new member gets its own announcement.
    a.send(reply([("X-Fooking-Publish", "room"), ("X-Fooking-Join", "room")], "a joined"))
    assert a.recv() == b"a joined"
    assert b.recv() == b"a joined"
    # Leave + Publish: the leaver still gets the notice, then is out.
    a.send(reply([("X-Fooking-Leave", "room"), ("X-Fooking-Publish", "room")], "a left"))
    assert a.recv() == b"a left"
    assert b.recv() == b"a left"
    bk = s.backend()
    wait_count(bk, rp.CH_COUNT, b"room", 1)
    bk.ch_pub(b"room", b"after")
    bk.send_all(b"M")
    assert until_marker(a, b"M") == []
    assert until_marker(b, b"M") == [b"after"]
    bk.close()


def test_bind_and_unbind_uid_by_header(setup):
    s = setup()
    a, b = s.client(), s.client()
    assert a.request(reply([("X-Fooking-Bind-Uid", " alice ")], "bound")) == b"bound"
    bk = s.backend()
    wait_count(bk, rp.UID_COUNT, b"alice", 1)
    assert bk.query(rp.SID_UID, a.sid) == b"alice"
    bk.send_uid([b"alice"], b"to alice")
    bk.send_all(b"M1")
    assert until_marker(a, b"M1") == [b"to alice"]
    assert until_marker(b, b"M1") == []
    assert s.params(a)["UID"] == "alice"
    # Unbind-Uid: 0 does nothing; 1 unbinds.
    assert a.request(reply([("X-Fooking-Unbind-Uid", "0")], "kept")) == b"kept"
    wait_count(bk, rp.UID_COUNT, b"alice", 1)
    assert a.request(reply([("X-Fooking-Unbind-Uid", "1")], "unbound")) == b"unbound"
    wait_count(bk, rp.UID_COUNT, b"alice", 0)
    bk.send_uid([b"alice"], b"nobody")
    bk.send_all(b"M2")
    assert until_marker(a, b"M2") == []
    assert "UID" not in s.params(a)
    bk.close()


def test_session_data_arrives_in_the_next_request(setup):
    s = setup(SESSION_MAX_SIZE=16384)
    a = s.client()
    data = json.dumps({"name": "alice", "since": 1700000000})
    assert a.request(reply([("X-Fooking-Session", data)], "ok")) == b"ok"
    assert s.params(a)["SESSION"] == data
    bk = s.backend()
    assert bk.query(rp.SESSION_GET, a.sid) == b"\x01" + data.encode()
    # A value far over the old 1 KB line limit, up to SESSION_MAX_SIZE.
    big = "x" * 16384
    assert a.request(reply([("X-Fooking-Session", big)], "big")) == b"big"
    assert s.params(a)["SESSION"] == big
    # Over SESSION_MAX_SIZE: logged with the SID and skipped; the body still comes.
    assert a.request(reply([("X-Fooking-Session", big + "y")], "too big")) == b"too big"
    s.gw.wait_log("client %s" % a.sid.decode(), "X-Fooking-Session skipped",
                  "over SESSION_MAX_SIZE")
    assert s.params(a)["SESSION"] == big
    # An empty value clears it.
    assert a.request(reply([("X-Fooking-Session", "")], "cleared")) == b"cleared"
    assert "SESSION" not in s.params(a)
    assert bk.query(rp.SESSION_GET, a.sid) == b"\x01"
    bk.close()


def test_the_close_event_carries_what_the_replies_set(setup):
    s = setup()
    a = s.client()
    assert a.request(reply([("X-Fooking-Session", "bye-data"), ("X-Fooking-Bind-Uid", "u1")],
                           "set")) == b"set"
    a.close()
    fk.wait_until(lambda: s.fake.events(2, a.sid.decode()), 5, msg="close event")
    p = s.fake.events(2, a.sid.decode())[0]["params"]
    assert p["SESSION"] == "bye-data" and p["UID"] == "u1"


def test_connect_event_reply_authenticates_and_joins(setup):
    def on_connect(req):
        sid = req["sid"]
        return [("X-Fooking-Join", "lobby"), ("X-Fooking-Bind-Uid", "user-" + sid),
                ("X-Fooking-Session", '{"who":"%s"}' % sid)]
    s = setup(event_headers=on_connect)
    a, b = s.client(), s.client()
    bk = s.backend()
    wait_count(bk, rp.CH_COUNT, b"lobby", 2)
    bk.send_uid([b"user-" + a.sid], b"to a")
    bk.ch_pub(b"lobby", b"to lobby")
    bk.send_all(b"M")
    assert until_marker(a, b"M") == [b"to a", b"to lobby"]
    assert until_marker(b, b"M") == [b"to lobby"]
    assert s.params(b)["SESSION"] == '{"who":"%s"}' % b.sid.decode()
    bk.close()


def test_malformed_commands_are_logged_and_skipped(setup):
    s = setup()
    a, b = s.client(), s.client()
    sid = a.sid.decode()
    headers = [
        ("X-Fooking-Join", "c" * 256 + ", good"),      # one name too long, one fine
        ("X-Fooking-Bind-Uid", "u" * 129),
        ("X-Fooking-Broadcast", "banana"),
        ("X-Fooking-Close", "999 nope"),
        ("X-Fooking-Close", "4000 " + "r" * 124),
        ("X-Fooking-Jion", "typo"),
        ("X-Fooking-Leave", "x" * 40000),              # over CGI_MAX_CMD_LINE: cut
    ]
    assert a.request(reply(headers, "still delivered")) == b"still delivered"
    for needle in ("a channel name of 256 bytes", "a uid of 129 bytes",
                   "\"banana\" is not 1 or 0", "the close code must be 1000 or 3000..4999",
                   "the close reason is over 123 bytes", "unknown reply command header "
                   "X-Fooking-Jion", "X-Fooking-Leave skipped: its line is over 32768 bytes"):
        s.gw.wait_log("client %s" % sid, needle)
    bk = s.backend()
    wait_count(bk, rp.CH_COUNT, b"good", 1)
    assert bk.query(rp.SID_UID, a.sid) == b""
    # Not closed, not broadcast: the connection goes on, b got nothing.
    assert a.request(b"echo") == b"echo"
    bk.send_all(b"M")
    assert until_marker(b, b"M") == []
    bk.close()


def test_channels_per_client_bounds_joins_by_header(setup):
    s = setup(CHANNELS_PER_CLIENT=2)
    a = s.client()
    assert a.request(reply([("X-Fooking-Join", "c1, c2, c3")], "j")) == b"j"
    s.gw.wait_log("client %s" % a.sid.decode(), "channel c3",
                  "CHANNELS_PER_CLIENT (2)")
    bk = s.backend()
    wait_count(bk, rp.CH_COUNT, b"c2", 1)
    assert [bk.count(rp.CH_COUNT, ch) for ch in (b"c1", b"c2", b"c3")] == [1, 1, 0]
    bk.close()


def test_reply_cut_into_one_byte_records(setup):
    s = setup()
    a = s.client()
    assert a.request(reply([("X-Fooking-Join", "tiny"), ("X-Fooking-Session", "s" * 2000)],
                           "tiny body", tiny=True)) == b"tiny body"
    bk = s.backend()
    wait_count(bk, rp.CH_COUNT, b"tiny", 1)
    assert s.params(a)["SESSION"] == "s" * 2000
    bk.close()


def test_replies_apply_in_request_order(setup):
    """Pipelined requests: each reply's commands are applied when that reply is
    delivered, in request order, whatever order the backend answers in."""
    s = setup()
    a = s.client()
    # The first is answered half a second after the second.
    a.send(reply([("X-Fooking-Join", "first")], "one", sleep=0.5),
           reply([("X-Fooking-Leave", "first"), ("X-Fooking-Join", "second")], "two"))
    assert a.recv() == b"one"
    assert a.recv() == b"two"
    bk = s.backend()
    wait_count(bk, rp.CH_COUNT, b"second", 1)
    wait_count(bk, rp.CH_COUNT, b"first", 0)
    bk.close()


def test_close_by_header_sends_the_code_after_the_body(setup):
    s = setup(PROTOCOL="websocket")
    with wsraw.RawWs(s.gw.port) as ws:
        ws.handshake()
        _, first = ws.recv_message()
        assert first.startswith(b"sid ")
        ws.send_text(reply([("X-Fooking-Close", "4001 see you")], "last words"))
        assert ws.recv_message()[1] == b"last words"
        code, reason = ws.recv_close()
        assert (code, reason) == (4001, b"see you")
        ws.wait_eof()
    with wsraw.RawWs(s.gw.port) as ws:
        ws.handshake()
        ws.recv_message()
        # A code alone; 1000 is allowed too.
        ws.send_text(reply([("X-Fooking-Close", "1000")], ""))
        assert ws.recv_close() == (1000, b"")


def test_close_by_header_on_the_length_protocol(setup):
    s = setup()
    a = s.client()
    a.send(reply([("X-Fooking-Close", "4002 go")], "bye"))
    assert a.recv() == b"bye"
    assert a.recv_closed(5)
    s.gw.wait_log("client %s" % a.sid.decode(), "closed by the backend")


def test_without_a_router_publishes_stay_in_the_gateway(setup):
    s = setup(with_router=False, WORKER_NUM=1)
    a, b, c = s.client(), s.client(), s.client()
    for x in (a, b):
        assert x.request(reply([("X-Fooking-Join", "r")], "in")) == b"in"
    a.send(reply([("X-Fooking-Publish", "r")], "to r"))
    assert a.recv() == b"to r"
    assert b.recv() == b"to r"
    c.send(reply([("X-Fooking-Broadcast", "1"), ("X-Fooking-Exclude-Self", "1")], "all"))
    assert a.recv() == b"all"
    assert b.recv() == b"all"
    assert c.request(b"echo") == b"echo"


def test_reply_commands_on_the_redis_bus(setup, redis_server):  # noqa: F811
    """With BUS: joins and binds land in the workers' presence keys (the
    stateless router answers from them), publishes go over Redis."""
    s = setup(bus=redis_server.url)
    a, b, c = s.client(), s.client(), s.client()
    for x in (a, b):
        assert x.request(reply([("X-Fooking-Join", "room"), ("X-Fooking-Bind-Uid", "u-" +
                                                          x.sid.decode())], "in")) == b"in"
    bk = s.backend()
    wait_count(bk, rp.CH_COUNT, b"room", 2)
    wait_count(bk, rp.UID_COUNT, b"u-" + a.sid, 1)
    # Published through Redis, the requester's copy at once; the marker the
    # same way behind it.
    a.send(reply([("X-Fooking-Publish", "room")], "to room"),
           reply([("X-Fooking-Broadcast", "1")], "M"))
    assert until_marker(a, b"M") == [b"to room"]
    assert until_marker(b, b"M") == [b"to room"]
    assert until_marker(c, b"M") == []
    assert b.request(reply([("X-Fooking-Leave", "room")], "out")) == b"out"
    wait_count(bk, rp.CH_COUNT, b"room", 1)
    bk.close()


def test_a_failed_reply_applies_nothing(setup):
    s = setup()
    a = s.client()
    a.send(reply([("Status", "403 Forbidden"), ("X-Fooking-Join", "nope"),
                  ("X-Fooking-Close", "4003 no")], "refused"))
    # Nothing delivered, nothing applied, not closed: the next request is answered.
    assert a.request(b"echo") == b"echo"
    bk = s.backend()
    assert bk.count(rp.CH_COUNT, b"nope") == 0
    bk.close()
    s.gw.wait_log("reply status 403, body not delivered (sid %s)" % a.sid.decode())
