"""Backend API v2 in router mode (DESIGN §13) against fake gateway links
(rproto.Gateway) and the real router: commands reach exactly the links that
hold their sessions or uids, queries are answered exactly and in order (also
when one waits for gateways), gateways' reports are applied and never
forwarded, CLOSE and a dropped link take uids and memberships with them, and
bad messages are refused without losing the connection.

What a link received is read up to a fence (rproto.sync), so "nothing else
arrived" needs no sleep.
"""

import struct

import pytest

import fk
import rproto as rp
from peers import router  # noqa: F401 (router: the fixture)


@pytest.fixture
def cluster(router):
    """A router and four links: servers 1 and 2, workers 0 and 1, 3 sessions each."""
    r = router()
    links = [rp.Gateway(r.port, s, w, nsids=3) for s in (1, 2) for w in (0, 1)]
    rp.wait_info(r.port, lambda i: i["clients"] == 12 and len(i["gateways"]) == 4)
    bk = rp.Backend(r.port)
    yield r, links, bk
    bk.close()
    for g in links:
        g.close()


def u32(d):
    return struct.unpack(">I", d)[0]


def nothing_else(bk, links):
    got = rp.sync(bk, links)
    assert all(v == [] for v in got.values()), got


def test_v2_ping_right_after_auth(router):
    r = router()
    g = rp.Conn(r.port)
    g.send(rp.AUTH, b"", struct.pack(">II", 1, 0))
    assert g.recv() == (rp.PING, b"", rp.V2_TOKEN)
    g.send(rp.PONG, b"", rp.V2_TOKEN)  # taken like any PONG
    bk = rp.Backend(r.port)
    assert len(bk.info()["gateways"]) == 1
    # A backend is not a link: no PING for it, its own PING is answered.
    bk.send(rp.PING)
    assert bk.recv() == (rp.PONG, b"", b"")
    g.close()
    bk.close()


def test_gateway_from_before_v2_gets_no_v2_message(router):
    """A gateway from before v2 echoes the v2 PING like any other but drops its
    link on a type it does not know: only links that said HELLO get types
    16..34, and a query that asks gateways does not wait for the others."""
    r = router()
    old = rp.Gateway(r.port, 1, 0, nsids=2, v2=False)
    new = rp.Gateway(r.port, 1, 1, nsids=2)
    rp.wait_info(r.port, lambda i: i["clients"] == 4 and len(i["gateways"]) == 2)
    bk = rp.Backend(r.port)
    bk.bind([old.sids[0], new.sids[0]], b"u")
    bk.send_uid([b"u"], b"to u")
    bk.session_set(old.sids[1], b"data")
    bk.send_all_ex([new.sids[1]], b"to all but one")
    bk.send_all(b"plain")
    got = rp.sync(bk, [old, new])
    assert got[old] == [(rp.SEND_ALL, b"", b"plain")]
    assert got[new] == [(rp.BIND, new.sids[0], b"u"), (rp.SEND_UID, rp.uid_list([b"u"]), b"to u"),
                        (rp.SEND_ALL_EX, new.sids[1], b"to all but one"),
                        (rp.SEND_ALL, b"", b"plain")]
    # The router's index has both sessions; only the v2 link was told.
    assert u32(bk.query(rp.UID_COUNT, b"u")) == 2
    # SESSION_GET of the old link's session: nobody to ask, answered at once.
    assert bk.query(rp.SESSION_GET, old.sids[1]) == b"\x00"
    assert r.wait_log("gateway 1/0 has not said HELLO")
    assert len(bk.info()["gateways"]) == 2  # both links still up
    bk.close()
    old.close()
    new.close()


def test_bind_split_by_link_and_indexed(cluster):
    r, links, bk = cluster
    a, b, c, d = links
    unknown = rp.sid(9, 9, 9)
    bk.bind([a.sids[0], c.sids[1], unknown, a.sids[2]], "alice")
    # A query right behind the command sees it.
    assert bk.count(rp.UID_COUNT, "alice") == 3
    got = rp.sync(bk, links)
    assert got[a] == [(rp.BIND, a.sids[0] + a.sids[2], b"alice")]
    assert got[c] == [(rp.BIND, c.sids[1], b"alice")]
    assert got[b] == got[d] == []
    sids = bk.query(rp.UID_SIDS, "alice")
    assert sorted(sids[i:i + 16] for i in range(0, len(sids), 16)) == sorted(
        [a.sids[0], a.sids[2], c.sids[1]])
    assert bk.query(rp.SID_UID, a.sids[0]) == b"alice"
    assert bk.query(rp.SID_UID, b.sids[0]) == b""
    assert bk.query(rp.SID_UID, unknown) == b""
    assert bk.info()["uids"] == 1
    # Bind again elsewhere: replaces.
    bk.bind([a.sids[0]], "bob")
    assert bk.count(rp.UID_COUNT, "alice") == 2
    assert bk.count(rp.UID_COUNT, "bob") == 1
    assert bk.info()["uids"] == 2
    bk.unbind([a.sids[0], b.sids[0]])
    assert bk.count(rp.UID_COUNT, "bob") == 0
    assert bk.query(rp.UID_SIDS, "bob") == b""
    got = rp.sync(bk, links)
    assert got[a] == [(rp.BIND, a.sids[0], b"bob"), (rp.UNBIND, a.sids[0], b"")]
    assert got[b] == [(rp.UNBIND, b.sids[0], b"")]
    assert got[c] == got[d] == []


def test_send_uid_and_kick_uid_only_where_held(cluster):
    r, links, bk = cluster
    a, b, c, d = links
    bk.bind(a.sids[:2], "alice")
    bk.bind([c.sids[2]], "bob")
    bk.bind([a.sids[2]], "bob")
    rp.sync(bk, links)
    bk.send_uid(["alice", "bob", "carol"], b"hi \x00 there")
    got = rp.sync(bk, links)
    assert got[a] == [(rp.SEND_UID, rp.uid_list(["alice", "bob"]), b"hi \x00 there")]
    assert got[c] == [(rp.SEND_UID, rp.uid_list(["bob"]), b"hi \x00 there")]
    assert got[b] == got[d] == []
    bk.kick_uid(["bob"])
    got = rp.sync(bk, links)
    assert got[a] == [(rp.KICK_UID, rp.uid_list(["bob"]), b"")]
    assert got[c] == [(rp.KICK_UID, rp.uid_list(["bob"]), b"")]
    assert got[b] == got[d] == []
    # Nobody holds carol: nothing to anyone.
    bk.send_uid(["carol"], b"lost")
    nothing_else(bk, links)


def test_session_set_and_get(cluster):
    r, links, bk = cluster
    a, b, c, d = links
    bk.session_set(a.sids[1], b'{"name":"x"}')
    bk.session_set(rp.sid(9, 9, 9), b"nobody")
    got = rp.sync(bk, links)
    assert got[a] == [(rp.SESSION_SET, a.sids[1], b'{"name":"x"}')]
    assert got[b] == got[c] == got[d] == []
    bk.send(rp.SESSION_GET, a.sids[1])
    t, s, qd = a.recv()
    assert (t, s, len(qd)) == (rp.GW_QUERY, a.sids[1], 4)
    a.send(rp.GW_ANSWER, b"", rp.gw_answer(u32(qd), [(a.sids[1], b'{"name":"x"}')]))
    assert bk.answer(rp.SESSION_GET) == b'\x01{"name":"x"}'
    # Found with empty data; and a gateway that no longer has it.
    bk.send(rp.SESSION_GET, a.sids[0])
    t, s, qd = a.recv()
    a.send(rp.GW_ANSWER, b"", rp.gw_answer(u32(qd), [(a.sids[0], b"")]))
    assert bk.answer(rp.SESSION_GET) == b"\x01"
    bk.send(rp.SESSION_GET, a.sids[2])
    t, s, qd = a.recv()
    a.send(rp.GW_ANSWER, b"", rp.gw_answer(u32(qd), []))
    assert bk.answer(rp.SESSION_GET) == b"\x00"
    # Unknown session: answered at once, no gateway asked.
    assert bk.query(rp.SESSION_GET, rp.sid(9, 9, 9)) == b"\x00"
    nothing_else(bk, links)


def test_answers_in_order_behind_a_waiting_one(cluster):
    r, links, bk = cluster
    a, b, c, d = links
    bk.bind([b.sids[0]], "bob")
    bk.send(rp.SESSION_GET, a.sids[0])
    bk.send(rp.UID_COUNT, b"bob")
    bk.send(rp.IS_ONLINE, a.sids[0] + rp.sid(9, 9, 9) + c.sids[2])
    bk.send(rp.INFO)
    bk.send(rp.UID_COUNT, b"")  # refused: its ERROR keeps its place too
    t, s, qd = a.recv()
    assert t == rp.GW_QUERY
    # Nothing may overtake the answer that waits for the gateway.
    assert bk.drain(0.3) == []
    a.send(rp.GW_ANSWER, b"", rp.gw_answer(u32(qd), [(a.sids[0], b"S")]))
    assert bk.answer(rp.SESSION_GET) == b"\x01S"
    assert u32(bk.answer(rp.UID_COUNT)) == 1
    assert bk.answer(rp.IS_ONLINE) == b"\x01\x00\x01"
    assert rp.parse_info(bk.answer(rp.INFO))["uids"] == 1
    with pytest.raises(rp.QueryError) as e:
        bk.answer(rp.UID_COUNT)
    assert e.value.qtype == rp.UID_COUNT


def test_ch_sessions_deadline_and_dropped_link(router):
    r = router(LINK_TIMEOUT=1)
    a = rp.Gateway(r.port, 1, 0, nsids=2)
    c = rp.Gateway(r.port, 2, 0, nsids=2)
    d = rp.Gateway(r.port, 2, 1, nsids=1)
    rp.wait_info(r.port, lambda i: i["clients"] == 5)
    bk = rp.Backend(r.port)
    bk.ch_add(a.sids + c.sids, "room")
    assert bk.count(rp.CH_COUNT, "room") == 4
    rp.sync(bk, [a, c, d])
    bk.send(rp.CH_SESSIONS, b"room")
    qa = a.recv()
    qc = c.recv()
    assert qa[0] == qc[0] == rp.GW_QUERY and qa[2] == qc[2]
    assert sorted(qa[1][i:i + 16] for i in range(0, 32, 16)) == sorted(a.sids)
    assert sorted(qc[1][i:i + 16] for i in range(0, 32, 16)) == sorted(c.sids)
    # a answers (and slips in a SID that is not its own: ignored); c never does.
    a.send(rp.GW_ANSWER, b"", rp.gw_answer(u32(qa[2]), [(a.sids[0], b"A0"), (a.sids[1], b""),
                                                          (c.sids[0], b"forged")]))
    got = rp.records(bk.answer(rp.CH_SESSIONS, timeout=5))
    assert sorted(got) == sorted([(a.sids[0], b"A0"), (a.sids[1], b"")])
    assert "did not answer GW_QUERY" in r.read_log()
    # c's answer after the deadline is dropped; the connection goes on.
    c.send(rp.GW_ANSWER, b"", rp.gw_answer(u32(qc[2]), [(c.sids[0], b"late")]))
    assert bk.count(rp.CH_COUNT, "room") == 4
    # A link that drops while asked: its sessions are left out, at once.
    bk.send(rp.SESSION_GET, d.sids[0])
    assert d.recv()[0] == rp.GW_QUERY
    d.close()
    assert bk.answer(rp.SESSION_GET, timeout=5) == b"\x00"
    # ... by the drop, not by the deadline (which would say "did not answer")
    r.wait_log("went before answering GW_QUERY")
    for g in (a, c, bk):
        g.close()


def test_reports_applied_never_forwarded(cluster):
    r, links, bk = cluster
    a, b, c, d = links
    # a reports its own sessions (and one of b's, which it cannot speak for).
    a.report(rp.BIND, [a.sids[0], a.sids[1], b.sids[0]], "zed")
    a.report(rp.CH_ADD, [a.sids[0], a.sids[2], b.sids[1]], "room")
    rp.wait_for(lambda: bk.count(rp.CH_COUNT, "room") == 2, what="reports applied")
    assert bk.count(rp.UID_COUNT, "zed") == 2
    assert bk.query(rp.SID_UID, b.sids[0]) == b""
    assert sorted(rp.members(bk.query(rp.CH_MEMBERS, "room"))) == sorted(
        [(a.sids[0], b"zed"), (a.sids[2], b"")])
    a.report(rp.UNBIND, [a.sids[1], b.sids[0]])
    a.report(rp.CH_DEL, [a.sids[2]], "room")
    rp.wait_for(lambda: bk.count(rp.CH_COUNT, "room") == 1, what="CH_DEL report")
    assert bk.count(rp.UID_COUNT, "zed") == 1
    # Never forwarded: no link got any of it.
    nothing_else(bk, links)


def test_close_and_link_drop_clear_uids_and_members(cluster):
    r, links, bk = cluster
    a, b, c, d = links
    bk.bind([a.sids[0], c.sids[0]], "alice")
    bk.ch_add([a.sids[0], a.sids[1], c.sids[0], c.sids[1]], "room")
    bk.ch_add([c.sids[2]], "hall")
    assert bk.count(rp.CH_COUNT, "room") == 4
    assert rp.channels(bk.query(rp.CHANNELS)) == {b"room": 4, b"hall": 1}
    s0, s1 = a.sids[0], a.sids[1]
    a.del_sids([s0])
    rp.wait_for(lambda: bk.count(rp.UID_COUNT, "alice") == 1, what="CLOSE drops the uid")
    assert bk.count(rp.CH_COUNT, "room") == 3
    assert bk.query(rp.IS_ONLINE, s0 + s1) == b"\x00\x01"
    # A session that moves to another link starts over there.
    b.add_sids([s1])
    rp.wait_for(lambda: bk.count(rp.CH_COUNT, "room") == 2, what="move drops memberships")
    c.close()
    rp.wait_for(lambda: bk.count(rp.UID_COUNT, "alice") == 0, what="link drop drops uids")
    assert bk.count(rp.CH_COUNT, "room") == 0
    assert bk.query(rp.CHANNELS) == b""
    assert bk.query(rp.CH_MEMBERS, "room") == b""
    assert bk.info()["uids"] == 0


def test_queries_exact(cluster):
    r, links, bk = cluster
    a, b, c, d = links
    bk.bind([a.sids[0]], "u" * 128)
    bk.ch_add([a.sids[0], b.sids[1], d.sids[2]], "r" * 255)
    bk.ch_add([b.sids[1]], "x")
    assert bk.count(rp.UID_COUNT, "u" * 128) == 1
    assert bk.count(rp.CH_COUNT, "r" * 255) == 3
    assert bk.count(rp.CH_COUNT, "nope") == 0
    assert sorted(rp.members(bk.query(rp.CH_MEMBERS, "r" * 255))) == sorted(
        [(a.sids[0], b"u" * 128), (b.sids[1], b""), (d.sids[2], b"")])
    assert rp.channels(bk.query(rp.CHANNELS)) == {b"r" * 255: 3, b"x": 1}
    allsids = [s for g in links for s in g.sids]
    assert bk.query(rp.IS_ONLINE, b"".join(allsids)) == b"\x01" * 12
    assert bk.query(rp.IS_ONLINE, b"") == b""
    assert bk.query(rp.CH_SESSIONS, "nope") == b""
    # CH_ADD from a backend is forwarded as before (and subscribes the link).
    got = rp.sync(bk, links)
    assert got[a] == [(rp.BIND, a.sids[0], b"u" * 128), (rp.CH_ADD, a.sids[0], b"r" * 255)]
    assert got[b] == [(rp.CH_ADD, b.sids[1], b"r" * 255), (rp.CH_ADD, b.sids[1], b"x")]


def test_send_all_ex_and_ch_pub_ex(cluster):
    r, links, bk = cluster
    a, b, c, d = links
    b.del_sids(list(b.sids))
    a.sub("room")
    d.sub("room")
    rp.wait_info(r.port, lambda i: i["clients"] == 9
                 and [g[3] for g in i["gateways"]] == [2, 1, 1, 2])
    bk.send_all_ex([a.sids[0], c.sids[1]], b"all but two")
    got = rp.sync(bk, links)
    for g in (a, c, d):
        assert got[g] == [(rp.SEND_ALL_EX, a.sids[0] + c.sids[1], b"all but two")]
    assert got[b] == []
    bk.ch_pub_ex("room", [d.sids[0]], b"to the room")
    got = rp.sync(bk, links)
    assert got[a] == got[d] == [(rp.CH_PUB_EX, rp.ch_ex("room", [d.sids[0]]), b"to the room")]
    assert got[b] == got[c] == []
    bk.ch_pub_ex("nobody", [], b"x")
    nothing_else(bk, links)


U129 = "u" * 129


@pytest.mark.parametrize("mtype,s,d,query", [
    pytest.param(rp.BIND, rp.sid(1, 0, 0), U129, False, id="bind-uid-129"),
    pytest.param(rp.BIND, rp.sid(1, 0, 0), b"", False, id="bind-uid-empty"),
    pytest.param(rp.BIND, b"x" * 15, b"u", False, id="bind-bad-sids"),
    pytest.param(rp.UNBIND, rp.sid(1, 0, 0), b"d", False, id="unbind-with-d"),
    pytest.param(rp.SEND_UID, b"\x05ab", b"m", False, id="send-uid-list-cut"),
    pytest.param(rp.SEND_UID, b"", b"m", False, id="send-uid-list-empty"),
    pytest.param(rp.KICK_UID, b"\x81" + b"u" * 129, b"", False, id="kick-uid-129"),
    pytest.param(rp.KICK_UID, b"\x00", b"", False, id="kick-uid-zero-entry"),
    pytest.param(rp.SESSION_SET, rp.sid(1, 0, 0) * 2, b"x", False, id="session-set-two-sids"),
    pytest.param(rp.SESSION_SET, rp.sid(1, 0, 0), b"x" * 16385, False, id="session-set-big"),
    pytest.param(rp.CH_PUB_EX, b"\x09room", b"m", False, id="ch-pub-ex-short"),
    pytest.param(rp.CH_PUB_EX, b"\x04room" + b"x" * 15, b"m", False, id="ch-pub-ex-sids"),
    pytest.param(rp.SEND_ALL_EX, b"x" * 17, b"m", False, id="send-all-ex-sids"),
    pytest.param(rp.UID_COUNT, U129, b"", True, id="uid-count-129"),
    pytest.param(rp.UID_SIDS, b"", b"", True, id="uid-sids-empty"),
    pytest.param(rp.SID_UID, b"x" * 17, b"", True, id="sid-uid-17"),
    pytest.param(rp.SESSION_GET, b"", b"", True, id="session-get-no-sid"),
    pytest.param(rp.CH_COUNT, b"c" * 256, b"", True, id="ch-count-256"),
    pytest.param(rp.CH_MEMBERS, b"", b"", True, id="ch-members-empty"),
    pytest.param(rp.CH_SESSIONS, b"c" * 256, b"", True, id="ch-sessions-256"),
    pytest.param(rp.IS_ONLINE, b"x" * 20, b"", True, id="is-online-sids"),
    pytest.param(rp.CHANNELS, b"", b"d", True, id="channels-with-d"),
])
def test_bounds_refused_connection_kept(cluster, mtype, s, d, query):
    r, links, bk = cluster
    a = links[0]
    bk.send(mtype, s, d)
    if query:
        with pytest.raises(rp.QueryError) as e:
            bk.answer(mtype)
        assert e.value.qtype == mtype and e.value.text
    else:
        rp.wait_for(lambda: "%s (" % rp.NAMES[mtype] in r.read_log()
                    and "refused" in r.read_log(), what="refusal logged")
    # The connection goes on, and nothing of the refused message went anywhere.
    assert bk.count(rp.UID_COUNT, "nobody") == 0
    bk.send_msg(a.sids[:1], b"after")
    got = rp.sync(bk, links)
    assert got[a] == [(rp.SEND_MSG, a.sids[0], b"after")]
    assert all(v == [] for g, v in got.items() if g is not a)


def test_far_too_long_small_d_closes(cluster):
    """A v2 type whose D is small (a uid) but announced past 64 KiB is not read:
    that is a framing error, like any old type's, and closes the connection."""
    r, links, bk = cluster
    evil = rp.Conn(r.port)
    evil.send_raw(struct.pack(">HHI", rp.BIND, 16, 70000) + rp.sid(1, 0, 0))
    assert evil.wait_closed()
    assert bk.count(rp.UID_COUNT, "x") == 0


def test_router_answer_max(router):
    r = router(ROUTER_ANSWER_MAX=65536)
    g = rp.Gateway(r.port, 1, 0, nsids=0)
    many = [rp.sid(1, 0, i) for i in range(5000)]
    g.add_sids(many)
    rp.wait_info(r.port, lambda i: i["clients"] == 5000)
    bk = rp.Backend(r.port)
    bk.bind(many, "crowd")  # 5000 * 16 = 80000 bytes of SIDs: over the limit
    assert bk.count(rp.UID_COUNT, "crowd") == 5000
    with pytest.raises(rp.QueryError) as e:
        bk.query(rp.UID_SIDS, "crowd")
    assert e.value.qtype == rp.UID_SIDS and b"ROUTER_ANSWER_MAX" in e.value.text
    bk.ch_add(many, "big")
    with pytest.raises(rp.QueryError):
        bk.query(rp.CH_MEMBERS, "big")  # 5000 * 17 bytes
    # Under the limit: answered.
    bk.unbind(many[4000:])
    assert len(bk.query(rp.UID_SIDS, "crowd")) == 4000 * 16
    # CH_SESSIONS past the limit once the gateway's records come in.
    bk.ch_del(many[100:], "big")
    bk.send(rp.CH_SESSIONS, b"big")
    while True:
        t, s, qd = g.recv()
        if t == rp.GW_QUERY:
            break
    g.send(rp.GW_ANSWER, b"", rp.gw_answer(u32(qd), [(x, b"d" * 1000) for x in many[:100]]))
    with pytest.raises(rp.QueryError) as e:
        bk.answer(rp.CH_SESSIONS)
    assert e.value.qtype == rp.CH_SESSIONS
    assert bk.count(rp.CH_COUNT, "big") == 100
    g.close()
    bk.close()


def test_bus_mode_without_redis_answers_error_and_keeps_the_connection(router):
    """A bus router serves v2 from Redis (test_bus_v2.py); with Redis unreachable a
    query is answered ERROR and a command dropped (logged), and the connection goes on."""
    r = router(BUS="redis://127.0.0.1:%d" % fk.free_port())
    bk = rp.Backend(r.port)
    with pytest.raises(rp.QueryError) as e:
        bk.query(rp.UID_COUNT, "alice")
    assert e.value.qtype == rp.UID_COUNT and b"bus is not connected" in e.value.text
    bk.send_uid(["alice"], b"lost")
    bk.send(rp.PING)
    assert bk.recv() == (rp.PONG, b"", b"")
    r.wait_log("SEND_UID dropped: the bus is not connected")
    bk.close()
