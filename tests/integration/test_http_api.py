"""The router's HTTP JSON API (HTTP_PORT, DESIGN §14) end to end: a real router,
a real gateway of two workers in front of php-fpm (tests/backends/echo.php,
EVENT_CONNECT = 1 so every client is greeted with its SID) and real
length-protocol clients. Every endpoint is checked by what the clients receive
or what the query answers, in router mode and on the Redis bus; then auth, the
errors (each naming its field), HTTP_MAX_BODY, and requests whose client goes
while the router waits for gateways.
"""

import base64
import http.client
import json
import os
import signal
import socket

import pytest

import fk
import peers
from peers import gateway_keys, gateways, redis_server, router, welcomed_clients  # noqa: F401

NOBODY = "00000000000000ff"  # a well-formed SID no gateway holds


def call(port, method, path, body=None, secret=None, raw=None, timeout=10):
    """One request on a connection of its own: (status, headers, JSON or bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {}
    if secret is not None:
        headers["Authorization"] = "Bearer " + secret
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if data is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        out = resp.read()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    if hdrs.get("content-type") == "application/json":
        out = json.loads(out)
    return resp.status, hdrs, out


def ok(port, method, path, body=None, **kw):
    status, _, out = call(port, method, path, body, **kw)
    assert status == 200, (path, body, status, out)
    return out


def start_router(router, **keys):
    port = fk.free_port()
    r = router(HTTP_PORT=port, **keys)
    fk.wait_until(lambda: fk.port_listening(port), 5, msg="the HTTP API listening")
    r.http = port
    return r


def sids(clients):
    return [c.sid.decode() for c in clients]


def next_msgs(clients, n=1):
    return [c.recv(5) for c in clients for _ in range(n)]


def marker_first(port, clients, marker=b"-marker-"):
    """Broadcasts a marker: each client's next message must be it (nothing
    else was queued for it before)."""
    ok(port, "POST", "/api/broadcast", {"b64data": base64.b64encode(marker).decode()})
    for c in clients:
        assert c.recv(5) == marker, c.sid


@pytest.fixture
def cluster(router, gateways, php):
    r = start_router(router)
    gw = gateways(**gateway_keys(php, router_port=r.port, WORKER_NUM=2, SESSION_MAX_SIZE=256))
    clients = welcomed_clients(gw, 4)
    fk.wait_until(lambda: (lambda i: i["clients"] == 4 and len(i["gateways"]) == 2)(
        ok(r.http, "GET", "/api/info")), 5, msg="4 sessions and 2 links in INFO")
    yield r, gw, clients
    for c in clients:
        c.close()


def test_every_endpoint_router_mode(cluster):
    r, gw, (a, b, c, d) = cluster
    port = r.http
    info = ok(port, "GET", "/api/info")
    assert info["clients"] == 4 and info["channels"] == 0 and info["uids"] == 0
    assert sorted((g["server_id"], g["worker_id"]) for g in info["gateways"]) == [(1, 0), (1, 1)]
    assert sum(g["clients"] for g in info["gateways"]) == 4

    # broadcast: text, then base64 with an exclusion
    assert ok(port, "POST", "/api/broadcast", {"data": "hi all \u00e9"}) == {"ok": True}
    assert next_msgs([a, b, c, d]) == ["hi all \u00e9".encode()] * 4
    ok(port, "POST", "/api/broadcast", {"b64data": base64.b64encode(b"\x00\xff").decode(),
                                        "exclude": [a.sid.decode()]})
    assert next_msgs([b, c, d]) == [b"\x00\xff"] * 3
    marker_first(port, [a, b, c, d])

    # join, publish, channel queries
    ok(port, "POST", "/api/join", {"sids": sids([a, b]), "channel": "room"})
    ch = ok(port, "GET", "/api/channel?name=room")
    assert ch["name"] == "room" and ch["count"] == 2
    assert sorted(m["sid"] for m in ch["members"]) == sorted(sids([a, b]))
    assert all(m["uid"] is None for m in ch["members"])
    assert ok(port, "GET", "/api/channels") == {"channels": {"room": 2}}
    ok(port, "POST", "/api/publish", {"channel": "room", "data": "to room"})
    assert next_msgs([a, b]) == [b"to room"] * 2
    ok(port, "POST", "/api/publish", {"channel": "room", "data": "not a", "exclude": sids([a])})
    assert b.recv(5) == b"not a"
    marker_first(port, [a, b, c, d])
    ok(port, "POST", "/api/leave", {"sids": sids([b]), "channel": "room"})
    assert ok(port, "GET", "/api/channel?name=room")["count"] == 1
    assert ok(port, "GET", "/api/channel?name=nothing") == {"name": "nothing", "count": 0,
                                                          "members": []}

    # bind, online, send by uid and sid
    ok(port, "POST", "/api/bind", {"sids": sids([c, d]), "uid": "alice"})
    on = ok(port, "GET", "/api/online?sid=%s&sid=%s&uid=alice&uid=bob" % (a.sid.decode(), NOBODY))
    assert on["sids"] == {a.sid.decode(): True, NOBODY: False}
    assert on["uids"]["alice"]["count"] == 2
    assert sorted(on["uids"]["alice"]["sids"]) == sorted(sids([c, d]))
    assert on["uids"]["bob"] == {"count": 0, "sids": []}
    ok(port, "POST", "/api/send", {"uids": ["alice"], "sids": sids([a]), "data": "direct"})
    assert next_msgs([a, c, d]) == [b"direct"] * 3
    marker_first(port, [a, b, c, d])
    ok(port, "POST", "/api/join", {"sids": sids([c]), "channel": "room"})
    members = {m["sid"]: m for m in ok(port, "GET", "/api/channel?name=room")["members"]}
    assert members[c.sid.decode()]["uid"] == "alice"

    # session data, seen by the channel query with sessions=1
    ok(port, "POST", "/api/session", {"sid": a.sid.decode(), "data": '{"n":1}'})
    ok(port, "POST", "/api/session", {"sid": c.sid.decode(),
                                      "b64data": base64.b64encode(b"\xff\x01").decode()})
    got = ok(port, "GET", "/api/channel?name=room&sessions=1")
    members = {m["sid"]: m for m in got["members"]}
    assert members[a.sid.decode()]["session"] == '{"n":1}'
    assert base64.b64decode(members[c.sid.decode()]["b64session"]) == b"\xff\x01"

    # unbind, kick by uid and by sid
    ok(port, "POST", "/api/unbind", {"sids": sids([c])})
    assert ok(port, "GET", "/api/online?uid=alice")["uids"]["alice"]["sids"] == sids([d])
    ok(port, "POST", "/api/kick", {"uids": ["alice"]})
    assert d.recv_closed(5)
    ok(port, "POST", "/api/kick", {"sids": sids([b])})
    assert b.recv_closed(5)
    fk.wait_until(lambda: ok(port, "GET", "/api/info")["clients"] == 2, 5, msg="2 sessions left")
    assert ok(port, "GET", "/api/online?uid=alice")["uids"]["alice"]["count"] == 0

    # /metrics on the same server
    status, hdrs, body = call(port, "GET", "/metrics")
    assert status == 200 and hdrs["content-type"].startswith("text/plain; version=0.0.4")
    assert b"\nfooking_router_links 2\n" in body and b"# TYPE fooking_router_sessions gauge" in body


def test_keepalive_and_http_matches_binary(cluster):
    """Many requests on one kept-alive connection; what a binary backend sees
    (INFO) is what the HTTP API answers."""
    import rproto as rp
    r, gw, clients = cluster
    conn = http.client.HTTPConnection("127.0.0.1", r.http, timeout=10)
    for i in range(50):
        conn.request("POST", "/api/broadcast", body=json.dumps({"data": "n%d" % i}),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read()) == {"ok": True}
    conn.close()
    for c in clients:
        assert [c.recv(5) for _ in range(50)] == [b"n%d" % i for i in range(50)]
    bk = rp.Backend(r.port)
    try:
        binfo = bk.info()
    finally:
        bk.close()
    hinfo = ok(r.http, "GET", "/api/info")
    assert binfo["clients"] == hinfo["clients"] == 4


def test_auth(router):
    r = start_router(router, ROUTER_SECRET="s3cret")
    for path in ("/api/info", "/metrics"):
        status, hdrs, body = call(r.http, "GET", path)
        assert status == 401 and hdrs["www-authenticate"] == "Bearer"
        assert "Bearer" in body["error"]
        status, hdrs, body = call(r.http, "GET", path, secret="wrong")
        assert status == 401 and hdrs["www-authenticate"] == "Bearer"
        status, _, body = call(r.http, "GET", path, secret="s3cret")
        assert status == 200, body
    status, _, _ = call(r.http, "POST", "/api/broadcast", {"data": "x"}, secret="s3cret2")
    assert status == 401
    assert ok(r.http, "POST", "/api/broadcast", {"data": "x"}, secret="s3cret") == {"ok": True}
    r.wait_log("refused (401)")


SID = "0123456789abcdef"

MALFORMED = [
    ("/api/publish", b"{", "body: not JSON"),
    ("/api/publish", b"[]", "the body must be a JSON object"),
    ("/api/publish", b'{"data":"x"}', "channel: missing"),
    ("/api/publish", {"channel": 5, "data": "x"}, "channel: must be a string"),
    ("/api/publish", {"channel": "r"}, "data: missing"),
    ("/api/publish", {"channel": "r", "data": 1}, "data: must be a string"),
    ("/api/publish", {"channel": "r", "b64data": "!!!!"}, "b64data: not valid base64"),
    ("/api/publish", {"channel": "r", "b64data": "eA="}, "b64data: not valid base64"),
    ("/api/publish", {"channel": "r", "b64data": "eA= ="}, "b64data: not valid base64"),
    ("/api/publish", {"channel": "r", "data": "x", "b64data": "eA=="}, "give one, not both"),
    ("/api/publish", {"channel": "r" * 256, "data": "x"}, "channel: must be 1 to 255 bytes"),
    ("/api/publish", {"channel": "", "data": "x"}, "channel: must be 1 to 255 bytes"),
    ("/api/publish", {"channel": "r", "data": "x", "exclude": "a"}, "exclude: must be an array"),
    ("/api/publish", {"channel": "r", "data": "x", "exclude": ["xyz"]}, "exclude[0]: a SID"),
    ("/api/broadcast", {"data": "x", "exclude": [SID, 7]}, "exclude[1]: must be a string"),
    ("/api/send", {"data": "x"}, "sids, uids: give at least one"),
    ("/api/send", {"sids": [SID[:-1] + "g"], "data": "x"}, "sids[0]: a SID is 16 hex"),
    ("/api/send", {"sids": [SID]}, "data: missing"),
    ("/api/send", {"sids": [SID] * 4096, "data": "x"}, "sids: at most 4095 entries"),
    ("/api/send", {"uids": [""], "data": "x"}, "uids[0]: a uid is 1 to 128 bytes"),
    ("/api/kick", {"uids": ["u" * 129]}, "uids[0]: a uid is 1 to 128 bytes"),
    ("/api/join", {"sids": [], "channel": "x"}, "sids: missing"),
    ("/api/join", {"sids": [SID]}, "channel: missing"),
    ("/api/leave", {"sids": SID, "channel": "x"}, "sids: must be an array"),
    ("/api/bind", {"sids": [SID], "uid": "u" * 129}, "uid: must be 1 to 128 bytes"),
    ("/api/bind", {"sids": [SID], "uid": 42}, "uid: must be a string"),
    ("/api/unbind", {}, "sids: missing"),
    ("/api/session", {"data": ""}, "sid: missing"),
    ("/api/session", {"sid": "x", "data": ""}, "sid: a SID is 16 hex"),
    ("/api/session", {"sid": SID}, "data: missing"),
    ("/api/session", {"sid": SID, "data": "x" * 16385}, "data: at most 16384 bytes"),
]


def test_malformed_requests_name_the_field(router):
    r = start_router(router, HTTP_MAX_BODY=1 << 20)
    for path, body, want in MALFORMED:
        raw = body if isinstance(body, bytes) else None
        status, hdrs, out = call(r.http, "POST", path, None if raw else body, raw=raw)
        assert status == 400 and hdrs["content-type"] == "application/json", (path, body, out)
        assert want in out["error"], (path, body, out)
    for path, want in [("/api/channel", "name: missing"),
                       ("/api/channel?name=", "name: must be 1 to 255 bytes"),
                       ("/api/channel?name=a&sessions=yes", "sessions: must be 1 or 0"),
                       ("/api/online", "sid, uid: give at least one"),
                       ("/api/online?sid=zz", "sid[0]: a SID is 16 hex"),
                       ("/api/online?uid=" + "u" * 129, "uid[0]: a uid is 1 to 128 bytes")]:
        status, _, out = call(r.http, "GET", path)
        assert status == 400 and want in out["error"], (path, out)
    status, _, out = call(r.http, "GET", "/api/nothing")
    assert status == 404 and "/api/nothing" in out["error"]
    status, hdrs, out = call(r.http, "GET", "/api/publish")
    assert status == 405 and hdrs["allow"] == "POST" and "POST only" in out["error"]
    status, hdrs, out = call(r.http, "POST", "/api/info", {})
    assert status == 405 and hdrs["allow"] == "GET"
    status, hdrs, out = call(r.http, "DELETE", "/metrics")
    assert status == 405 and hdrs["allow"] == "GET"
    # Refusals are logged, at most ten in a row.
    assert len(r.log_lines("router: http", "refused (")) == 10
    assert r.alive()


def test_body_over_http_max_body(router):
    r = start_router(router, HTTP_MAX_BODY=2048)
    body = {"data": "x" * 1900}
    assert ok(r.http, "POST", "/api/broadcast", body) == {"ok": True}
    status, _, out = call(r.http, "POST", "/api/broadcast", {"data": "x" * 2100})
    assert status == 413 and "over HTTP_MAX_BODY (2048)" in out["error"], out
    # Far past it, libevent refuses before reading the body: still 413.
    status, _, _ = call(r.http, "POST", "/api/broadcast", {"data": "x" * 100000})
    assert status == 413
    assert ok(r.http, "GET", "/api/info")["clients"] == 0


def test_client_gone_while_the_router_waits_for_gateways(router, gateways, php):
    """A query with sessions=1 waits for GW_QUERY answers; the gateway's workers
    are stopped (SIGSTOP) so it waits until the deadline (2 s with
    LINK_TIMEOUT = 0: no PING drops the links meanwhile). A client that goes
    meanwhile takes its request with it; one that waits gets what the router
    has at the deadline; and a router stopped with requests waiting exits
    cleanly (the fixture checks status 0; ASan checks the memory)."""
    r = start_router(router, LINK_TIMEOUT=0)
    gw = gateways(**gateway_keys(php, router_port=r.port, WORKER_NUM=2, LINK_TIMEOUT=30))
    a, b = welcomed_clients(gw, 2)
    ok(r.http, "POST", "/api/join", {"sids": sids([a, b]), "channel": "room"})
    ok(r.http, "POST", "/api/session", {"sid": a.sid.decode(), "data": "A"})
    fk.wait_until(lambda: ok(r.http, "GET", "/api/channel?name=room&sessions=1")["members"]
                  and any(m["session"] == "A" for m in
                          ok(r.http, "GET", "/api/channel?name=room&sessions=1")["members"]),
                  5, msg="the session data through GW_QUERY")
    workers = gw.worker_pids()
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        # Gone mid-query: three clients send and close at once.
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", r.http))
            s.sendall(b"GET /api/channel?name=room&sessions=1 HTTP/1.1\r\nHost: x\r\n\r\n")
            s.close()
        # One waits: the answer comes at the deadline, without the session data.
        status, _, out = call(r.http, "GET", "/api/channel?name=room&sessions=1", timeout=10)
        assert status == 200 and out["count"] == 2
        assert all(m["session"] is None for m in out["members"])
        r.wait_log("did not answer GW_QUERY within the deadline")
        # Stopping with a request waiting.
        s = socket.create_connection(("127.0.0.1", r.http))
        s.sendall(b"GET /api/channel?name=room&sessions=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        # Read by the router before this one (sent earlier, one loop).
        assert ok(r.http, "GET", "/api/info")["clients"] == 2
        assert r.stop() == 0
        s.close()
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
    for c in (a, b):
        c.close()


def test_bus_mode(router, gateways, php, redis_server):
    r = start_router(router, BUS=redis_server.url)
    gw = gateways(**gateway_keys(php, bus=redis_server.url, WORKER_NUM=2))
    clients = welcomed_clients(gw, 3)
    a, b, c = clients
    port = r.http
    fk.wait_until(lambda: all(ok(port, "GET", "/api/online?" + "&".join(
        "sid=" + s for s in sids(clients)))["sids"].values()), 5, msg="3 sessions online")
    fk.wait_until(lambda: ok(port, "GET", "/api/info")["clients"] == 3, 5, msg="INFO")

    # broadcast and publish
    ok(port, "POST", "/api/broadcast", {"data": "all"})
    assert next_msgs(clients) == [b"all"] * 3
    ok(port, "POST", "/api/join", {"sids": sids([a, b]), "channel": "room"})
    fk.wait_until(lambda: ok(port, "GET", "/api/channel?name=room")["count"] == 2, 5,
                  msg="2 members on the bus")
    ok(port, "POST", "/api/publish", {"channel": "room", "data": "to room", "exclude": sids([b])})
    assert a.recv(5) == b"to room"
    ok(port, "POST", "/api/publish", {"channel": "room", "data": "to both"})
    assert next_msgs([a, b]) == [b"to both"] * 2
    marker_first(port, clients)

    # send by uid, and the uid query
    ok(port, "POST", "/api/bind", {"sids": sids([b, c]), "uid": "bob"})
    fk.wait_until(lambda: ok(port, "GET", "/api/online?uid=bob")["uids"]["bob"]["count"] == 2,
                  5, msg="bob's 2 sessions on the bus")
    ok(port, "POST", "/api/send", {"uids": ["bob"], "data": "to bob"})
    assert next_msgs([b, c]) == [b"to bob"] * 2
    marker_first(port, clients)
    assert ok(port, "GET", "/api/channels") == {"channels": {"room": 2}}

    # session data from Redis
    ok(port, "POST", "/api/session", {"sid": a.sid.decode(), "data": "A"})
    fk.wait_until(lambda: {m["sid"]: m["session"] for m in ok(
        port, "GET", "/api/channel?name=room&sessions=1")["members"]}.get(a.sid.decode()) == "A",
        5, msg="a's session data on the bus")

    # The bus down: 503, named.
    redis_server.stop()
    fk.wait_until(lambda: call(port, "POST", "/api/broadcast", {"data": "x"})[0] == 503, 10,
                  msg="503 with the bus down")
    status, _, out = call(port, "GET", "/api/info")
    assert status == 503 and "bus" in out["error"]
    for cl in clients:
        cl.close()


def test_binary_upgrade_keeps_the_http_api(tmp_path):
    """SIGUSR2: the new router binds HTTP_PORT while the old one still listens
    on it (SO_REUSEPORT), so the upgrade goes through and the API answers from
    the new router."""
    pid_file = tmp_path / "router.pid"
    port = fk.free_port()
    r = peers.Router(tmp_path / "router", PID_FILE=str(pid_file), HTTP_PORT=port).start()
    old = r.pid
    new = None
    fk.wait_until(lambda: fk.port_listening(port), 5, msg="the HTTP API listening")

    def pid():
        try:
            return int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
    try:
        assert ok(port, "GET", "/api/info")["clients"] == 0
        os.kill(old, signal.SIGUSR2)
        fk.wait_until(lambda: pid() not in (None, old), 10, msg="PID_FILE naming the new router")
        new = pid()
        r.proc.wait(timeout=10)
        assert r.proc.returncode == 0
        assert ok(port, "GET", "/api/info")["clients"] == 0
        assert ok(port, "POST", "/api/broadcast", {"data": "x"}) == {"ok": True}
        assert r.log_lines("upgrade: new router %d serves" % new)
    finally:
        if new:
            assert fk.stop_pid(new, timeout=10), "the new router did not stop on SIGTERM"
        elif r.alive():
            r.stop()
