"""NATS as the bus: BUS = "nats://..." on gateways and routers, shown to behave as
the Redis bus does (test_bus.py, test_bus_v2.py).

natsbus.py has the cluster: three clustered nats-servers, two gateways (SERVER_ID 1
and 2, two workers each) in front of php-fpm and two stateless routers, the
processes connected to different servers so that every message crosses the
cluster's routes. Most tests share one such cluster (the module fixture `nb`);
those about credentials start their own.

What a command delivered is checked with a marker, as on Redis: a SEND_ALL sent
after the command through the same router is published after it on the router's
one NATS connection, and NATS delivers one publisher's messages to one subscriber
connection in order (each worker has one connection, and one delivery thread for
all its subscriptions, see nbus.c), so what a client got before the marker is what
the command did. A subscription a command made (a channel's ch.<name>, a uid's
u.<uid>) must have reached every server before a publish can find it: a query
answered through the router the test then publishes with is that barrier (each
worker's answer leaves after its SUB, along the same routes), so a command that
depends on one is sent after a query shows it (wait_answer), never after a sleep.
"""

import os
import signal
import struct
import time

import pytest

import fk
import peers
import rproto as rp
from conftest import base_params
from natsbus import LINKS, PREFIX, NatsBus, NatsClient, received, sids, subject
from natsbus import natsbus  # noqa: F401  (the fixture)
from v2util import ask_params, info, make_sid, uid_sids, wait_answer
from peers import NATS_SERVER, worker_pid
from swarm import assert_delivered, new_marker

# How long a command may take to show in the answers (publish, apply, answer).
# The router's query deadline (router_nats.c ROUTER_NATS_QUERY_MS), and how long
# after a worker's death its replacement answers for its slot.
QUERY_DEADLINE = 2.0
RESTART_DEADLINE = 8.0




def backend(bus, i=0):
    return rp.Backend(bus.routers[i].port)










def empty_info():
    return {"clients": 0, "channels": 0, "uids": 0,
            "gateways": [(s, w, 0, 0) for s, w in LINKS]}


def fresh(bus):
    """Every client of earlier tests hung up, and the answers say so: the cluster
    holds no session, channel or uid (what INFO and CHANNELS must then add up)."""
    for p in bus.swarm.open():
        bus.swarm.hang_up(p)
    bk = backend(bus)
    try:
        wait_answer("an empty cluster", lambda: info(bk), empty_info())
    finally:
        bk.close()


def expected_info(bus, channels, uids):
    """INFO as it must be: clients per link from our open clients, channels per
    link from `channels` ({link: [names]}), distinct channels and uids in all."""
    links = bus.by_link()
    gws = sorted((l[0], l[1], len(links[l]), len(channels.get(l, ()))) for l in LINKS)
    names = {n for v in channels.values() for n in v}
    return {"clients": sum(len(v) for v in links.values()), "channels": len(names),
            "uids": uids, "gateways": gws}


def ch_subjects(bus):
    """{subject: subscriptions} of every channel subject on the cluster."""
    return {s: n for s, n in bus.nats.subscriptions().items() if s.startswith(PREFIX + "ch.")}


@pytest.fixture(scope="module")
def nb(php, tmp_path_factory):
    """One NATS cluster for the module's tests (SESSION_MAX_SIZE 16384: the
    ROUTER_ANSWER_MAX test sets 10000 bytes of data per session)."""
    if not os.path.exists(NATS_SERVER):
        pytest.skip("nats-server not installed")
    b = NatsBus(tmp_path_factory.mktemp("nats"), php, SESSION_MAX_SIZE=16384)
    try:
        b.start()
        yield b
    finally:
        problems, rcs = b.stop()
    if problems:
        pytest.fail("sanitizer reports from fooking:\n" + "\n".join(problems[:20]))
    assert all(rc == 0 for rc in rcs), "a router did not exit cleanly on SIGTERM: %r" % rcs


# ---------------------------------------------------------------- commands

@pytest.mark.parametrize("via", [0, 1])
def test_commands_reach_exactly_their_clients(nb, via):
    """Every command through either router reaches exactly the clients it names on
    all four worker links: no miss, no duplicate, nothing to anyone else."""
    bk = backend(nb, via)
    links = nb.open_clients(3)
    A, B, C, D = (links[l] for l in LINKS)
    tag = b"router%d" % via
    room = "room-%d" % via

    # SEND_MSG over all four links (two SIDs on one), plus SIDs nobody holds: one
    # on a live worker, one on a gateway that does not exist (gw.9.9: no one).
    msg = b"to some \x00\xff\r\n " + tag
    targets = [A[0], A[1], B[0], C[2], D[1]]
    unknown = [make_sid(1, 0, 7), make_sid(9, 9, 9)]
    m = new_marker()
    bk.send_msg(sids(targets) + unknown, msg)
    bk.send_all(m)
    assert_delivered(received(nb, m), {p: [msg] for p in targets})

    # SEND_ALL: everyone once.
    msg = b"to all " + tag
    m = new_marker()
    bk.send_all(msg)
    bk.send_all(m)
    assert_delivered(received(nb, m), {p: [msg] for p in nb.swarm.open()})

    # Channels: members on three of the four links.
    members = [A[0], B[1], D[0], D[2]]
    bk.ch_add(sids(members), room)
    nb.wait_channel(room, 3)
    wait_answer("the room's members", lambda: bk.count(rp.CH_COUNT, room), 4)
    msg = b"to the room " + tag
    m = new_marker()
    bk.ch_pub(room, msg)
    bk.send_all(m)
    assert_delivered(received(nb, m), {p: [msg] for p in members})

    # CH_PUB_EX: the room but two of its members (one alone on its link).
    msg = b"to the room but two " + tag
    m = new_marker()
    bk.ch_pub_ex(room, [B[1].sid, D[0].sid], msg)
    bk.send_all(m)
    assert_delivered(received(nb, m), {A[0]: [msg], D[2]: [msg]})

    # SEND_ALL_EX: everyone but three, on three links.
    msg = b"to all but three " + tag
    out = [A[2], C[0], D[1]]
    m = new_marker()
    bk.send_all_ex(sids(out) + [make_sid(2, 0, 3)], msg)
    bk.send_all(m)
    assert_delivered(received(nb, m), {p: [msg] for p in nb.swarm.open() if p not in out})

    # CH_DEL then CH_PUB at once: the worker sees them in that order.
    gone = [A[0], D[0]]
    msg = b"fewer " + tag
    m = new_marker()
    bk.ch_del(sids(gone), room)
    bk.ch_pub(room, msg)
    bk.send_all(m)
    assert_delivered(received(nb, m), {B[1]: [msg], D[2]: [msg]})
    nb.wait_channel(room, 2)
    bk.ch_del(sids([B[1], D[2]]), room)
    nb.wait_channel(room, 0)
    wait_answer("the room empty", lambda: bk.count(rp.CH_COUNT, room), 0)

    # More than 4095 SIDs in one call (split by the backend): still once per client.
    many = [make_sid(1, 0, 1000 + i) for i in range(5000)]
    lucky = [A[2], C[0], D[1]]
    m = new_marker()
    bk.send_msg(many[:10] + sids(lucky) + many[10:], b"bulk " + tag)
    bk.send_all(m)
    assert_delivered(received(nb, m), {p: [b"bulk " + tag] for p in lucky})

    # BIND, then SEND_UID: each session of the uids once; a uid repeated or
    # unknown changes nothing.
    alice, bob = b"alice-" + tag, b"bob-" + tag
    bk.bind([A[2].sid, C[0].sid], alice)
    bk.bind([B[2].sid], bob)
    wait_answer("bound", lambda: (bk.count(rp.UID_COUNT, alice), bk.count(rp.UID_COUNT, bob)),
                (2, 1))
    m = new_marker()
    bk.send_uid([alice], b"to alice")
    bk.send_uid([bob, bob, b"nobody-" + tag], b"to bob once")
    bk.send_uid([b"nobody at all"], b"to nobody")
    bk.send_all(m)
    assert_delivered(received(nb, m), {A[2]: [b"to alice"], C[0]: [b"to alice"],
                                       B[2]: [b"to bob once"]})
    m = new_marker()
    bk.send_uid([bob, alice, bob], b"to both")
    bk.send_all(m)
    assert_delivered(received(nb, m), {p: [b"to both"] for p in (A[2], C[0], B[2])})
    # UNBIND: that session is no longer alice's.
    bk.unbind([C[0].sid])
    wait_answer("C0 unbound", lambda: bk.count(rp.UID_COUNT, alice), 1)
    m = new_marker()
    bk.send_uid([alice], b"alice alone")
    bk.send_all(m)
    assert_delivered(received(nb, m), {A[2]: [b"alice alone"]})

    # SESSION_SET: the backend sees UID and SESSION in the session's next requests.
    p = D[1]
    assert "SESSION" not in ask_params(nb, p)
    bk.bind([p.sid], b"u-" + tag)
    bk.session_set(p.sid, b'{"via":"' + tag + b'"}')
    wait_answer("the data", lambda: bk.query(rp.SESSION_GET, p.sid), b'\x01{"via":"' + tag + b'"}')
    got = ask_params(nb, p)
    assert got["UID"] == "u-" + tag.decode() and got["SESSION"] == '{"via":"%s"}' % tag.decode()
    bk.session_set(p.sid, b"")
    bk.unbind([p.sid])
    wait_answer("cleared", lambda: (bk.query(rp.SESSION_GET, p.sid),
                                    bk.query(rp.SID_UID, p.sid)), (b"\x01", b""))
    got = ask_params(nb, p)
    assert "UID" not in got and "SESSION" not in got

    # KICK_UID: every session of the uid closed, nobody else.
    bk.kick_uid([alice, b"nobody"])
    nb.swarm.wait(lambda: A[2].closed, 5, "alice's session closed")
    m = new_marker()
    bk.send_all(m)
    got = received(nb, m)
    assert A[2] not in got and C[0] in got and B[2] in got
    assert_delivered(got, {})
    wait_answer("alice gone", lambda: bk.count(rp.UID_COUNT, alice), 0)

    # KICK on two links: those two are cut, nobody else.
    kicked = [A[1], C[1]]
    bk.kick(sids(kicked))
    nb.swarm.wait(lambda: all(q.closed for q in kicked), 5, "the kicked clients to be cut")
    m = new_marker()
    bk.send_all(m)
    got = received(nb, m)
    assert not set(got) & set(kicked)
    assert_delivered(got, {})
    wait_answer("the kicked offline", lambda: bk.query(rp.IS_ONLINE, b"".join(sids(kicked))),
                b"\x00\x00")
    bk.kick_uid([bob])
    nb.swarm.wait(lambda: B[2].closed, 5, "bob's session closed")
    bk.close()


# ---------------------------------------------------------------- channel names

NAMES = [b"a.b", b"*", b">", b"a.*.>", b"two words", b" ", b"%", b"%25", b"\x00",
         "salle \u00e9".encode(), b"\xff\xfe\x80", b"n" * 255, b"." * 255]


def test_channel_names_escaped_in_subjects(nb):
    """Names with '.', '*', '>', spaces, '%', NUL, non-ASCII bytes and 255 bytes
    work (joined, published, queried), each on its escaped subject only: '.' is
    no token separator, '*' and '>' no wildcards, "%" and "%25" two subjects. A
    channel's subscription goes with its last member on that worker."""
    fresh(nb)
    links = nb.open_clients(2)
    A, B, C, D = (links[l] for l in LINKS)
    bk = backend(nb, 1)
    base = [A[0], B[0], C[0]]
    want = {n: list(base) for n in NAMES}
    want[b"%"].append(D[0])        # "%" has a member "%25" lacks
    want[b"*"].append(A[1])        # two on one link: one subscription there
    for n in NAMES:
        bk.ch_add(sids(want[n]), n)
    for n in NAMES:
        nb.wait_channel(n, len({p.link for p in want[n]}))
    counts = {n: len(v) for n, v in want.items()}
    wait_answer("CHANNELS", lambda: rp.channels(bk.query(rp.CHANNELS)), counts)
    # The channel subjects are exactly the escaped ones.
    assert ch_subjects(nb) == {subject("ch.", n): len({p.link for p in want[n]})
                               for n in NAMES}
    assert subject("ch.", b"a.*.>") == PREFIX + "ch.a%2E%2A%2E%3E"
    assert subject("ch.", b"%") == PREFIX + "ch.%25"
    assert len(subject("ch.", b"." * 255)) == len(PREFIX) + 3 + 3 * 255
    # Each publish reaches its channel's members only.
    m = new_marker()
    for n in NAMES:
        bk.ch_pub(n, b"to " + n)
    bk.send_all(m)
    expect = {}
    for n in NAMES:
        for p in want[n]:
            expect.setdefault(p, []).append(b"to " + n)
    assert_delivered(received(nb, m), expect)
    # And through the other router (another server of the cluster).
    other = backend(nb, 0)
    wait_answer("CHANNELS via router0", lambda: rp.channels(other.query(rp.CHANNELS)), counts)
    m = new_marker()
    other.ch_pub_ex(b"a.*.>", [B[0].sid], b"ex")
    other.ch_pub(b"%25", b"to %25 only")
    other.send_all(m)
    assert_delivered(received(nb, m), {A[0]: [b"ex", b"to %25 only"], C[0]: [b"ex",
                                                                             b"to %25 only"],
                                       B[0]: [b"to %25 only"]})
    for n in NAMES:
        assert other.count(rp.CH_COUNT, n) == counts[n], n
        assert dict(rp.members(other.query(rp.CH_MEMBERS, n))) == \
            {p.sid: b"" for p in want[n]}, n
        assert dict(rp.records(other.query(rp.CH_SESSIONS, n))) == \
            {p.sid: b"" for p in want[n]}, n
    assert other.count(rp.CH_COUNT, b"a") == 0       # a token of "a.b", not a channel
    assert other.count(rp.CH_COUNT, b"%2E") == 0
    # Leaving: a worker's subscription goes with its last member there.
    bk.ch_del([A[1].sid], b"*")
    wait_answer("A1 left *", lambda: bk.count(rp.CH_COUNT, b"*"), 3)
    assert nb.numsub(subject("ch.", b"*")) == 3       # A0 still holds it on (1, 0)
    for n in NAMES:
        bk.ch_del([A[0].sid, B[0].sid], n)
    for n in NAMES:
        nb.wait_channel(n, 2 if n == b"%" else 1)
    nb.swarm.hang_up(C[0])                            # closing leaves every channel
    for n in NAMES:
        nb.wait_channel(n, 1 if n == b"%" else 0)
    wait_answer("only % left", lambda: rp.channels(bk.query(rp.CHANNELS)), {b"%": 1})
    bk.ch_del([D[0].sid], b"%")
    nb.wait_channel(b"%", 0)
    wait_answer("no channel left", lambda: rp.channels(bk.query(rp.CHANNELS)), {})
    assert ch_subjects(nb) == {}
    bk.close()
    other.close()


# ---------------------------------------------------------------- queries

def test_queries_exact_through_both_routers(nb):
    """Every query adds up the four workers' parts exactly, through either router
    and through the router's api subject on the bus."""
    fresh(nb)
    links = nb.open_clients(2)
    A, B, C, D = (links[l] for l in LINKS)
    bk = backend(nb, 0)
    bk.bind([A[0].sid, C[0].sid], b"alice")
    bk.bind([B[0].sid], b"bob")
    room = b"room \x00\xff"
    bk.ch_add(sids([A[0], B[0], C[1], D[0], D[1]]), room)
    bk.ch_add([A[1].sid], b"small")
    bk.session_set(C[0].sid, b"data of c0")
    bk.session_set(D[1].sid, b"\x00bin\xff")
    nobody = make_sid(1, 0, 5)
    ghost = make_sid(9, 9, 9)
    channels = {(1, 0): [room, b"small"], (1, 1): [room], (2, 0): [room], (2, 1): [room]}
    want_members = {A[0].sid: b"alice", B[0].sid: b"bob", C[1].sid: b"", D[0].sid: b"",
                    D[1].sid: b""}
    want_sessions = {A[0].sid: b"", B[0].sid: b"", C[1].sid: b"", D[0].sid: b"",
                     D[1].sid: b"\x00bin\xff"}

    def answers(c):
        return {
            "IS_ONLINE": c.query(rp.IS_ONLINE, A[0].sid + B[1].sid + nobody + ghost + C[0].sid
                                 + b"zz" * 8),
            "UID_COUNT": [c.count(rp.UID_COUNT, u) for u in (b"alice", b"bob", b"nobody")],
            "UID_SIDS": [uid_sids(c, b"alice"), uid_sids(c, b"bob"), uid_sids(c, b"nobody")],
            "SID_UID": [c.query(rp.SID_UID, s) for s in (C[0].sid, B[0].sid, B[1].sid,
                                                         nobody, ghost)],
            "SESSION_GET": [c.query(rp.SESSION_GET, s) for s in (C[0].sid, D[1].sid, A[0].sid,
                                                                 nobody, ghost)],
            "CH_COUNT": [c.count(rp.CH_COUNT, n) for n in (room, b"small", b"none")],
            "CH_MEMBERS": dict(rp.members(c.query(rp.CH_MEMBERS, room))),
            "CH_SESSIONS": dict(rp.records(c.query(rp.CH_SESSIONS, room))),
            "CH_MEMBERS none": c.query(rp.CH_MEMBERS, b"none"),
            "CHANNELS": rp.channels(c.query(rp.CHANNELS)),
            "INFO": info(c),
        }
    want = {
        "IS_ONLINE": b"\x01\x01\x00\x00\x01\x00",
        "UID_COUNT": [2, 1, 0],
        "UID_SIDS": [sorted([A[0].sid, C[0].sid]), [B[0].sid], []],
        "SID_UID": [b"alice", b"bob", b"", b"", b""],
        "SESSION_GET": [b"\x01data of c0", b"\x01\x00bin\xff", b"\x01", b"\x00", b"\x00"],
        "CH_COUNT": [5, 1, 0],
        "CH_MEMBERS": want_members,
        "CH_SESSIONS": want_sessions,
        "CH_MEMBERS none": b"",
        "CHANNELS": {room: 5, b"small": 1},
        "INFO": expected_info(nb, channels, 2),
    }
    wait_answer("every answer via router0", lambda: answers(bk), want)
    other = backend(nb, 1)
    assert answers(other) == want
    # Answers come in the order of the queries, through one connection, whatever
    # each costs (each waits for all four workers).
    qs = [(rp.CH_SESSIONS, room), (rp.CH_COUNT, b"small"), (rp.SID_UID, A[0].sid),
          (rp.CHANNELS, b""), (rp.IS_ONLINE, C[1].sid), (rp.UID_COUNT, b"alice")]
    for t, s in qs:
        other.send(t, s)
    other.send(rp.INFO)
    got = [other.answer(t) for t, _ in qs] + [rp.parse_info(other.answer(rp.INFO))]
    assert dict(rp.records(got[0])) == want_sessions
    assert got[1:3] == [struct.pack(">I", 1), b"alice"]
    assert rp.channels(got[3]) == {room: 5, b"small": 1}
    assert got[4:6] == [b"\x01", struct.pack(">I", 2)]
    assert got[6]["uids"] == 2 and got[6]["clients"] == want["INFO"]["clients"]

    # The router's api subject: a router-protocol message with a reply subject,
    # answered with the router's answer message (one router of the queue group).
    nc = nb.client(1)
    try:
        for t, s, d in [(rp.UID_COUNT, b"alice", struct.pack(">I", 2)),
                        (rp.SID_UID, B[0].sid, b"bob"),
                        (rp.IS_ONLINE, A[0].sid + nobody, b"\x01\x00"),
                        (rp.CH_COUNT, room, struct.pack(">I", 5))]:
            ans = nc.request(PREFIX + "api", rp.encode(t, s))
            assert ans is not None, "no answer to %s on %sapi" % (rp.NAMES[t], PREFIX)
            assert rp.decode(ans) == ((t, b"", d), b""), rp.NAMES[t]
        ans = nc.request(PREFIX + "api", rp.encode(rp.CH_MEMBERS, room))
        (t, s, d), rest = rp.decode(ans)
        assert (t, s, rest) == (rp.CH_MEMBERS, b"", b"") and dict(rp.members(d)) == want_members
        ans = nc.request(PREFIX + "api", rp.encode(rp.INFO))
        (t, s, d), rest = rp.decode(ans)
        i = rp.parse_info(d)
        i["gateways"] = sorted(i["gateways"])
        assert (t, s, rest) == (rp.INFO, b"", b"") and i == want["INFO"]
        # A refused query is answered ERROR there too.
        ans = nc.request(PREFIX + "api", rp.encode(rp.UID_COUNT, b"u" * 129))
        (t, s, d), rest = rp.decode(ans)
        assert t == rp.ERROR and struct.unpack(">H", d[:2])[0] == rp.UID_COUNT, (t, d)
        # A command on the api subject is run like a backend's.
        nc.publish(PREFIX + "api", rp.encode(rp.SEND_UID, rp.uid_list([b"alice"]), b"via api"))
        nc.flush()
        nb.swarm.wait(lambda: all(b"via api" in p.msgs for p in (A[0], C[0])), 5,
                      "SEND_UID through the api subject")
        m = new_marker()
        bk.send_all(m)
        assert_delivered(received(nb, m), {A[0]: [b"via api"], C[0]: [b"via api"]})
    finally:
        nc.close()
    bk.close()
    other.close()


def test_bad_messages_refused_and_answer_max(nb):
    """Out-of-bound messages are refused by the router (a command logged, a query
    answered ERROR) and the connection goes on; an answer over ROUTER_ANSWER_MAX
    is ERROR, whether the sum passes it or one worker's part does."""
    fresh(nb)
    links = nb.open_clients(2)
    p = links[(1, 0)][0]
    bk = backend(nb, 0)
    bk.send(rp.BIND, p.sid, b"u" * 129)              # uid over 128 bytes
    bk.send(rp.SEND_UID, b"\x00", b"bad uid list")   # an empty uid
    with pytest.raises(rp.QueryError):
        bk.query(rp.UID_COUNT, b"u" * 129)
    with pytest.raises(rp.QueryError):
        bk.query(rp.SESSION_GET, p.sid + p.sid)      # exactly one SID
    with pytest.raises(rp.QueryError):
        bk.query(rp.CH_COUNT, b"c" * 256)
    nb.routers[0].wait_log("BIND", "refused")
    nb.routers[0].wait_log("SEND_UID", "refused")
    assert bk.query(rp.SID_UID, p.sid) == b""
    bk.bind([p.sid], b"fine")
    wait_answer("a good BIND after the bad", lambda: bk.query(rp.SID_UID, p.sid), b"fine")

    # A router with the smallest ROUTER_ANSWER_MAX (64 KiB): eight sessions of
    # 10000 bytes, two per worker, are more than it takes in one CH_SESSIONS
    # answer (each worker's part is not).
    r = nb.start_router(ROUTER_ANSWER_MAX=65536)
    small = rp.Backend(r.port)
    members = [links[l][i] for l in LINKS for i in range(2)]
    small.ch_add(sids(members), b"big")
    for i, q in enumerate(members):
        small.session_set(q.sid, bytes([65 + i]) * 10000)
    small.bind(sids(members), b"many")
    wait_answer("members", lambda: (small.count(rp.CH_COUNT, b"big"),
                                    small.count(rp.UID_COUNT, b"many")),
                (len(members), len(members)))
    wait_answer("their data", lambda: len(bk.query(rp.CH_SESSIONS, b"big")),
                len(members) * (20 + 10000))
    with pytest.raises(rp.QueryError) as e:
        small.query(rp.CH_SESSIONS, b"big")
    assert e.value.qtype == rp.CH_SESSIONS and b"ROUTER_ANSWER_MAX" in e.value.text
    # Still in step: the next answer is the next query's.
    assert len(rp.members(small.query(rp.CH_MEMBERS, b"big"))) == len(members)
    r.wait_log("CH_SESSIONS answer over ROUTER_ANSWER_MAX")
    # One worker's part over it: seven sessions of 10000 bytes on (2, 1).
    links = nb.open_clients(7)
    crowd = links[(2, 1)][:7]
    small.ch_add(sids(crowd), b"crowd")
    for q in crowd:
        small.session_set(q.sid, b"c" * 10000)
    wait_answer("the crowd's data", lambda: len(bk.query(rp.CH_SESSIONS, b"crowd")),
                len(crowd) * (20 + 10000))
    with pytest.raises(rp.QueryError) as e:
        small.query(rp.CH_SESSIONS, b"crowd")
    assert e.value.qtype == rp.CH_SESSIONS and b"ROUTER_ANSWER_MAX" in e.value.text
    assert small.count(rp.CH_COUNT, b"crowd") == len(crowd)
    small.close()
    bk.close()


# ---------------------------------------------------------------- straight onto the bus

def test_malformed_bus_messages_logged_and_ignored(nb):
    """Garbage published straight onto gw.<s>.<w>, all, ch.<name>, u.<uid> and q
    is logged by the workers that got it and ignored: the clients stay, later
    commands and queries work. A message the worker cannot use (a CH_ADD without
    a channel, a type not for it) is logged and ignored too."""
    links = nb.open_clients(1)
    p = links[(1, 0)][0]
    bk = backend(nb, 0)
    bk.ch_add([p.sid], b"bad.room")
    bk.bind([p.sid], b"bad-uid")
    wait_answer("joined", lambda: (bk.count(rp.CH_COUNT, b"bad.room"),
                                   bk.count(rp.UID_COUNT, b"bad-uid")), (1, 1))
    before = nb.swarm.open()
    nc = nb.client(2)
    cut = rp.encode(rp.SEND_ALL, b"", b"cut short")[:-3]
    trailing = rp.encode(rp.SEND_ALL, b"", b"x") + b"junk"
    shots = [(PREFIX + "all", b"\x01"), (PREFIX + "all", cut), (PREFIX + "all", trailing),
             (PREFIX + "gw.1.0", b"garbage on gw"),
             (subject("ch.", b"bad.room"), b"\xff" * 12),
             (subject("u.", b"bad-uid"), b"\x00\x09"),
             (PREFIX + "gw.1.0", rp.encode(rp.CH_ADD, p.sid, b"")),
             (PREFIX + "gw.1.0", rp.encode(rp.PONG, b"", b""))]
    for subj, data in shots:
        nc.publish(subj, data)
    # Queries on q: without a reply subject, too short, not a query, cut short.
    nc.publish(PREFIX + "q", struct.pack(">I", 1 << 20) + rp.encode(rp.UID_COUNT, b"bad-uid"))
    assert nc.request(PREFIX + "q", b"\x00\x01", timeout=0.5) is None
    assert nc.request(PREFIX + "q", struct.pack(">I", 1 << 20) + rp.encode(rp.SEND_ALL, b"",
                                                                           b"x"),
                      timeout=0.5) is None
    assert nc.request(PREFIX + "q", struct.pack(">I", 1 << 20)
                      + rp.encode(rp.UID_COUNT, b"bad-uid")[:-2], timeout=0.5) is None
    # Garbage for the routers: on hb (ignored) and on api (logged).
    nc.publish(PREFIX + "hb", b"up lots of nonsense")
    nc.publish(PREFIX + "api", b"\x00\x05\x00")
    nc.flush()
    gw1, gw2 = nb.gws[1], nb.gws[2]
    for gw in (gw1, gw2):
        gw.wait_log('malformed message on NATS subject "%sall" (1 bytes)' % PREFIX)
        gw.wait_log('malformed message on NATS subject "%sall" (%d bytes)'
                    % (PREFIX, len(cut)))
        gw.wait_log('malformed message on NATS subject "%sall" (%d bytes)'
                    % (PREFIX, len(trailing)), "trailing bytes")
        for n in (4 + 8 + 7, 2, 4 + 8 + 1, 4 + 8 + 5):
            gw.wait_log("malformed query on NATS (%d bytes), ignored" % n)
    gw1.wait_log('malformed message on NATS subject "%sgw.1.0" (13 bytes)' % PREFIX)
    gw1.wait_log('malformed message on NATS subject "%s"' % subject("ch.", b"bad.room"))
    gw1.wait_log('malformed message on NATS subject "%s"' % subject("u.", b"bad-uid"))
    gw1.wait_log('malformed message on NATS subject "%sgw.1.0" (24 bytes)' % PREFIX,
                 "channel name empty or over 255 bytes")
    gw1.wait_log("unexpected PONG message, ignored")
    assert not gw2.log_lines('malformed message on NATS subject "%sgw.1.0"' % PREFIX)
    fk.wait_until(lambda: any(r.log_lines("malformed message on the bus's api subject")
                              for r in nb.routers), 5, msg="a router to log the bad api message")
    # All well: nobody was cut, commands and queries work as before.
    assert all(gw.alive() and len(gw.worker_pids()) == 2 for gw in (gw1, gw2))
    m = new_marker()
    bk.ch_pub(b"bad.room", b"room ok")
    bk.send_uid([b"bad-uid"], b"uid ok")
    bk.send_all(m)
    got = received(nb, m)
    assert set(got) == set(before)
    assert_delivered(got, {p: [b"room ok", b"uid ok"]})
    assert bk.count(rp.CH_COUNT, b"bad.room") == 1
    assert [g[:2] for g in info(bk)["gateways"]] == LINKS
    # A well-formed request straight on q: each of the four workers answers with
    # its part, S = u16 server | u8 worker | u8 status.
    sub = nc.subscribe("_INBOX.rawq")
    nc.publish(PREFIX + "q", struct.pack(">I", 1 << 20) + rp.encode(rp.UID_COUNT, b"bad-uid"),
               reply="_INBOX.rawq")
    parts = {}
    for _ in LINKS:
        msg = nc.next_msg(5)
        assert msg is not None, "answers from %r only" % sorted(parts)
        (t, s, d), rest = rp.decode(msg[2])
        assert (t, rest, len(s)) == (rp.UID_COUNT, b"", 4) and s[3] == 0, (t, s, rest)
        parts[struct.unpack(">HB", s[:3])] = struct.unpack(">I", d)[0]
    assert parts == {l: (1 if l == (1, 0) else 0) for l in LINKS}
    nc.unsubscribe(sub)
    nc.close()
    bk.ch_del([p.sid], b"bad.room")
    bk.unbind([p.sid])
    bk.close()


# ---------------------------------------------------------------- a worker killed

def test_killed_worker_leaves_the_answers(nb):
    """kill -9 of a worker: its sessions are gone from the answers once the master
    restarted it (the replacement answers for its slot, holding nothing), the
    router answers meanwhile within its deadline, the other workers' stay exact,
    and the replacement's own sessions count."""
    fresh(nb)
    links = nb.open_clients(2)
    dead = links[(1, 0)]
    keep = [links[l][0] for l in LINKS if l != (1, 0)]
    bk = backend(nb, 0)
    other = backend(nb, 1)
    bk.bind(sids(dead), b"doomed")
    bk.bind(sids(keep[:1]) + sids(dead[:1]), b"mixed")   # dead[0] rebound to "mixed"
    bk.ch_add(sids(dead) + sids(keep), b"room")
    bk.session_set(dead[1].sid, b"dead data")
    want_room = len(dead) + len(keep)
    wait_answer("before", lambda: (bk.count(rp.UID_COUNT, b"doomed"),
                                   bk.count(rp.UID_COUNT, b"mixed"),
                                   bk.count(rp.CH_COUNT, b"room")),
                (len(dead) - 1, 2, want_room))
    gw = nb.gws[1]
    pid = worker_pid(gw, 0)
    assert pid, "no worker 0 among %r" % gw.worker_pids()
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    nb.swarm.wait(lambda: all(p.closed for p in dead), 5, "the dead worker's clients cut")
    # Meanwhile a query is answered, without the dead worker's sessions, within
    # the router's deadline (the replacement answers sooner once it is up).
    t1 = time.monotonic()
    assert bk.count(rp.CH_COUNT, b"room") == len(keep)
    took = time.monotonic() - t1
    assert took < QUERY_DEADLINE + 1, took
    fk.wait_until(lambda: worker_pid(gw, 0) not in (None, pid), 5, msg="a new worker 0")
    gone = (0, sids(keep[:1]), {b"room": len(keep)}, b"\x00", b"\x00", 1)
    for c in (bk, other):
        wait_answer("the dead worker's state gone",
                    lambda: (c.count(rp.UID_COUNT, b"doomed"),
                             uid_sids(c, b"mixed"),
                             rp.channels(c.query(rp.CHANNELS)),
                             c.query(rp.SESSION_GET, dead[1].sid),
                             c.query(rp.IS_ONLINE, dead[0].sid),
                             info(c)["uids"]),
                    gone, timeout=RESTART_DEADLINE)
    print("killed worker gone from the answers %.2f s after kill -9" % (time.monotonic() - t0))
    assert dict(rp.members(bk.query(rp.CH_MEMBERS, b"room"))) == \
        {p.sid: (b"mixed" if p is keep[0] else b"") for p in keep}
    # The replacement answers for its slot: INFO lists it with nothing.
    wait_answer("INFO with the replacement", lambda: info(other),
                expected_info(nb, {l: [b"room"] for l in LINKS if l != (1, 0)}, 1))
    # The replacement takes new sessions, which count and are reached.
    nb.wait_subscribed()
    fresh_p = nb.open_clients(1)[(1, 0)][0]
    bk.bind([fresh_p.sid], b"doomed")
    bk.ch_add([fresh_p.sid], b"room")
    wait_answer("the replacement's session", lambda: (uid_sids(bk, b"doomed"),
                                                      bk.count(rp.CH_COUNT, b"room")),
                ([fresh_p.sid], len(keep) + 1))
    m = new_marker()
    bk.send_uid([b"doomed", b"mixed"], b"hi")
    bk.ch_pub(b"room", b"room hi")
    bk.send_all(m)
    got = received(nb, m)
    expect = {fresh_p: [b"hi", b"room hi"], keep[0]: [b"hi", b"room hi"]}
    for p in keep[1:]:
        expect[p] = [b"room hi"]
    assert_delivered(got, expect)
    bk.close()
    other.close()


# ---------------------------------------------------------------- credentials

@pytest.mark.parametrize("kind", ["userpass", "token"])
def test_credentials_end_to_end(natsbus, php, kind):  # noqa: F811
    """A cluster that wants credentials: user and password, or a token, in the
    BUS URLs of gateways and routers; everything works end to end. A gateway
    with wrong ones logs the refusal and keeps trying, without crashing; the
    routers do not count it."""
    if kind == "userpass":
        args, auth, bad = ["--user", "fk", "--pass", "pw"], "fk:pw", "fk:wrong"
    else:
        args, auth, bad = ["--auth", "tok"], "tok", "wrong-token"
    b = natsbus(kind, nats_args=args, auth=auth)
    with pytest.raises(ConnectionError):
        NatsClient(b.nats.ports[0]).close()        # the servers do want them
    links = b.open_clients(1)
    everyone = [links[l][0] for l in LINKS]
    bk0, bk1 = backend(b, 0), backend(b, 1)
    m = new_marker()
    bk0.send_msg(sids(everyone[1:]), b"with " + kind.encode())
    bk0.send_all(m)
    assert_delivered(received(b, m), {p: [b"with " + kind.encode()] for p in everyone[1:]})
    bk1.bind(sids(everyone[:3]), b"cred")
    wait_answer("bound", lambda: uid_sids(bk0, b"cred"), sorted(sids(everyone[:3])))
    m = new_marker()
    bk0.send_uid([b"cred"], b"uid")
    bk0.send_all(m)
    assert_delivered(received(b, m), {p: [b"uid"] for p in everyone[:3]})
    assert info(bk1) == expected_info(b, {}, 1)

    # A gateway with the wrong credentials.
    p = base_params()
    gw = peers.Gateway(b.tmp / "gw-bad", name="gw-bad", SERVER_ID=3, WORKER_NUM=1,
                       BUS=b.nats.url(0, 1, auth=bad), BUS_PREFIX=PREFIX,
                       BACKEND_SERVER=php.addr, FASTCGI_PREFIX="", FASTCGI_PARAMS=p,
                       EVENT_CONNECT=1, LOG_LEVEL=3)
    try:
        gw.start()
        wpid = gw.worker_pids()
        refused = ("bus: NATS", "refused the connection or gave it up",
                   "are the credentials in BUS right?")
        gw.wait_log(*refused, timeout=10)

        def attempts():
            return sum(b.nats.log(i).count('fooking gateway 3 worker 0" - '
                                           "authentication error") for i in range(3))
        # Still trying, with a back-off: more refusals logged on both sides.
        n, seen = len(gw.log_lines(*refused)), attempts()
        fk.wait_until(lambda: len(gw.log_lines(*refused)) > n + 1 and attempts() > seen + 1,
                      10, msg="further attempts\n" + gw.log()[-2000:])
        # The worker is the same process, the master alive.
        assert gw.alive() and gw.worker_pids() == wpid, gw.log()[-2000:]
        # Its own clients are still served (FastCGI), and it is not on the bus.
        c = peers.welcomed_clients(gw, 1)[0]
        c.send(b"echo me")
        assert c.recv(5) == b"echo me"
        c.close()
        assert [g[:2] for g in info(bk0)["gateways"]] == LINKS
        assert not gw.sanitizer_report()
    finally:
        gw.stop()
    bk0.close()
    bk1.close()


NATS_CONF = """listen: 127.0.0.1:%d
http: 127.0.0.1:%d
authorization {
  users: [
%s  ]
}
"""


def test_credentials_accepted_later_then_on_the_bus(php, tmp_path):
    """A gateway refused for its credentials keeps trying; once the server takes
    them (its configuration reloaded with the user added), the gateway's worker
    is on the bus with everything it subscribed to before: it answers queries
    (q, who), and SEND_MSG (gw.<s>.<w>) and SEND_ALL (all) reach its client."""
    if not os.path.exists(NATS_SERVER):
        pytest.skip("nats-server not installed")
    import subprocess
    port, mport = fk.free_port(), fk.free_port()
    conf = tmp_path / "nats.conf"
    router_user = '    {user: "router", password: "r-pw"}\n'
    conf.write_text(NATS_CONF % (port, mport, router_user))
    out = open(tmp_path / "nats.log", "ab")
    srv = subprocess.Popen([NATS_SERVER, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=out,
                           stderr=subprocess.STDOUT)
    gw = r = None
    try:
        peers.wait_own_listen(srv, port, 10, "nats-server",
                              lambda: peers.read_text(tmp_path / "nats.log"))
        url = "nats://%s@127.0.0.1:%d"
        r = peers.Router(tmp_path / "router", BUS=url % ("router:r-pw", port),
                         BUS_PREFIX=PREFIX).start()
        p = base_params()
        gw = peers.Gateway(tmp_path / "gw", name="gw", SERVER_ID=5, WORKER_NUM=1,
                           BUS=url % ("late:l-pw", port), BUS_PREFIX=PREFIX,
                           BACKEND_SERVER=php.addr, FASTCGI_PREFIX="", FASTCGI_PARAMS=p,
                           EVENT_CONNECT=1, LOG_LEVEL=3).start()
        gw.wait_log("refused the connection or gave it up", timeout=10)
        c = peers.welcomed_clients(gw, 1)[0]
        bk = rp.Backend(r.port)
        assert info(bk) == {"clients": 0, "channels": 0, "uids": 0, "gateways": []}
        assert bk.count(rp.UID_COUNT, b"nobody") == 0
        # The server takes the gateway's credentials now.
        conf.write_text(NATS_CONF % (port, mport, router_user
                                     + '    {user: "late", password: "l-pw"}\n'))
        os.kill(srv.pid, signal.SIGHUP)
        wait_answer("the gateway on the bus", lambda: info(bk)["gateways"], [(5, 0, 1, 0)],
                    timeout=10)
        gw.wait_log("bus: connected to NATS")
        bk.send_msg([c.sid], b"direct")
        bk.send_all(b"to all")
        assert c.recv(5) == b"direct" and c.recv(5) == b"to all"
        assert bk.query(rp.IS_ONLINE, c.sid) == b"\x01"
        c.close()
        bk.close()
        assert gw.alive() and not gw.sanitizer_report()
        # No worker on q at first: the server's "no responders" answers are no
        # malformed answers.
        assert not r.log_lines("malformed"), r.read_log()[-2000:]
    finally:
        rc = None
        try:
            if gw is not None:
                gw.stop()
            if r is not None:
                rc = r.stop()
        finally:
            fk.stop_pid(srv, 10)
            out.close()
    assert rc == 0, "the router did not exit cleanly:\n" + r.read_log()[-2000:]


# ---------------------------------------------------------------- configuration

BAD_BUS = [
    ("nats://127.0.0.1", 'each server must be host:port, got "127.0.0.1"'),
    ("nats://127.0.0.1:", 'bad port in "127.0.0.1:"'),
    ("nats://127.0.0.1:0", 'bad port in "127.0.0.1:0"'),
    ("nats://127.0.0.1:65536", 'bad port in "127.0.0.1:65536"'),
    ("nats://127.0.0.1:42x", 'bad port in "127.0.0.1:42x"'),
    ("nats://" + ",".join("127.0.0.1:%d" % (4000 + i) for i in range(17)), "at most 16 servers"),
    ("nats://127.0.0.1:4222,,127.0.0.1:4223", 'each server must be host:port, got ""'),
    ("nats://127.0.0.1:4222,", 'each server must be host:port, got ""'),
    ("nats://", 'each server must be host:port, got ""'),
    ("nats://@127.0.0.1:4222", "the credentials before '@' must be 1..255 bytes"),
]
BAD_PREFIX = ["fk nats.", "fk*.", "fk.>", ".fk", "fk..x", "x" * 128, "tab\tx", "\u00e9."]


def check_config(tmp_path, bus, prefix="fknats."):
    conf = tmp_path / "check.lua"
    fk.write_config(conf, {"PORT": fk.free_port(), "BACKEND_SERVER": "127.0.0.1:9",
                           "BUS": bus, "BUS_PREFIX": prefix})
    r = fk.run_check(conf)
    return r.returncode, r.stdout + r.stderr


def test_bad_nats_bus_refused(tmp_path):
    """`fooking -t`: a BUS or, with a NATS BUS, a BUS_PREFIX that cannot work is
    refused, the message naming the key, its form and the value."""
    for bus, why in BAD_BUS:
        rc, out = check_config(tmp_path, bus)
        assert rc == 1, (bus, out)
        assert ('BUS must be "nats://[user:password@|token@]host:port[,host:port...]": %s'
                % why) in out, (bus, out)
        assert ('got "%s"' % bus) in out, out
    for prefix in BAD_PREFIX:
        rc, out = check_config(tmp_path, "nats://127.0.0.1:4222", prefix)
        assert rc == 1, (prefix, out)
        assert "BUS_PREFIX with a NATS BUS, must be up to 127 printable bytes without spaces, " \
            "'*', '>', a leading '.' or \"..\"" in out, (prefix, out)
    # What is fine: 16 servers, credentials, "nats://" on each server, a prefix
    # with dots (and none), and on Redis a prefix NATS would refuse.
    good = [("nats://" + ",".join("127.0.0.1:%d" % (4000 + i) for i in range(16)), "fk."),
            ("nats://u:p@127.0.0.1:4222,nats://127.0.0.1:4223", "a.b.c."),
            ("nats://tok@[::1]:4222", ""),
            ("redis://127.0.0.1:6379", "fk *>..")]
    for bus, prefix in good:
        rc, out = check_config(tmp_path, bus, prefix)
        assert rc == 0 and "configuration is valid" in out, (bus, prefix, out)


def test_queries_through_a_router_sum_the_workers(natsbus):
    """The v2 queries through a router on the bus: the router asks every worker
    on q and adds up their answers (each is a message of the query's type, S =
    server | worker | status, D = that worker's part), exactly."""
    import fk
    b = natsbus()
    links = b.open_clients(2)
    A, B, C, D = (links[l] for l in LINKS)
    bk = rp.Backend(b.routers[0].port)
    try:
        bk.bind([A[0].sid, D[0].sid], b"alice")
        bk.session_set(D[0].sid, b"\x00data")
        bk.ch_add([A[1].sid, C[0].sid, C[1].sid], b"room")

        def exact():
            return (bk.count(rp.UID_COUNT, b"alice") == 2 and bk.count(rp.CH_COUNT, b"room") == 3
                    and bk.query(rp.SESSION_GET, D[0].sid) == b"\x01\x00data")
        fk.wait_until(exact, 5, msg="the commands applied")
        got = bk.query(rp.UID_SIDS, b"alice")
        assert sorted(got[i:i + 16] for i in range(0, len(got), 16)) == \
            sorted([A[0].sid, D[0].sid]), (got, A[0].sid, D[0].sid, b.logs())
        assert bk.query(rp.SID_UID, D[0].sid) == b"alice"
        assert bk.query(rp.SID_UID, B[0].sid) == b""
        assert bk.query(rp.IS_ONLINE, A[0].sid + b"0" * 16 + D[1].sid) == b"\x01\x00\x01"
        assert sorted(rp.members(bk.query(rp.CH_MEMBERS, b"room"))) == \
            sorted((p.sid, b"") for p in (A[1], C[0], C[1]))
        assert sorted(rp.records(bk.query(rp.CH_SESSIONS, b"room"))) == \
            sorted((p.sid, b"") for p in (A[1], C[0], C[1]))
        assert rp.channels(bk.query(rp.CHANNELS)) == {b"room": 3}
        assert struct.unpack(">I", bk.query(rp.UID_COUNT, b"nobody"))[0] == 0
    finally:
        bk.close()
    assert "malformed" not in "".join(r.read_log() for r in b.routers)


def test_api_answer_over_max_payload_is_an_error(natsbus, tmp_path):
    """A router's answer on the api subject that the NATS server would not take
    (over its max_payload, though within ROUTER_ANSWER_MAX) is answered ERROR
    at once instead of being dropped; over TCP the same answer goes whole."""
    import fk
    from natsbus import PREFIX
    conf = tmp_path / "max_payload.conf"
    conf.write_text("max_payload: 65536\n")
    b = natsbus(SESSION_MAX_SIZE=16384, nats_args=["-c", str(conf)])
    b.open_clients(2)
    big = b.swarm.open()[:5]
    bk = rp.Backend(b.routers[0].port)
    try:
        bk.ch_add(sids(big), b"big")
        for i, p in enumerate(big):
            bk.session_set(p.sid, bytes([65 + i]) * 16000)
        fk.wait_until(lambda: len(bk.query(rp.CH_SESSIONS, b"big")) == 5 * (16 + 4 + 16000), 5,
                      msg="the sessions' data applied")
    finally:
        bk.close()
    nc = b.bus_client()
    t, s, d = rp.decode(nc.request(PREFIX + "api", rp.encode(rp.CH_SESSIONS, b"big"), 3))[0]
    assert (t, s, d) == (rp.ERROR, b"", struct.pack(">H", rp.CH_SESSIONS)
                         + b"answer over the NATS server's max_payload")
    t, s, d = rp.decode(nc.request(PREFIX + "api", rp.encode(rp.CH_COUNT, b"big"), 3))[0]
    assert (t, d) == (rp.CH_COUNT, struct.pack(">I", 5))


def test_a_workers_answer_delivered_twice_counts_once(tmp_path):
    """A router adds up one answer per worker and query: the same worker's
    answer arriving twice (NATS may deliver a message twice while routes
    between servers form) is not counted again. Two fake workers (9/0, 9/1)
    on a bare nats-server; 9/0 answers each query twice."""
    import fk
    import peers
    from natsbus import NatsClient
    if not os.path.exists(peers.NATS_SERVER):
        pytest.skip("nats-server not installed")
    nats = peers.NatsCluster(tmp_path / "nats", n=1).start()
    router = None
    fake = bk = None
    try:
        router = peers.Router(tmp_path / "router", BUS=nats.url(), BUS_PREFIX="dup.").start()
        fk.wait_until(lambda: nats.subscriptions().get("dup.hb", 0) == 1, 10, msg="router on hb")
        fake = NatsClient(nats.ports[0])
        fake.subscribe("dup.q")
        fake.flush()
        bk = rp.Backend(router.port)

        def ask():
            for w in (0, 1):
                fake.publish("dup.hb", b"up 9 %d 1 0" % w)
            fake.flush()
            bk.send(rp.UID_COUNT, b"alice")
            m = fake.next_msg(3)
            if m is not None:
                _, reply, _ = m
                for w in (0, 0, 1):
                    fake.publish(reply, rp.encode(rp.UID_COUNT, struct.pack(">HBB", 9, w, 0),
                                                  struct.pack(">I", 1)))
                fake.flush()
            return struct.unpack(">I", bk.answer(rp.UID_COUNT))[0]
        n = fk.wait_until(ask, 10, msg="the router to wait for the fake workers")
        assert n == 2
        assert ask() == 2
    finally:
        if bk:
            bk.close()
        if fake:
            fake.close()
        if router:
            assert router.stop() == 0
        nats.stop()


def test_query_with_no_gateway_on_the_bus(tmp_path):
    """A router alone on the bus answers a query at once with nothing held
    anywhere, and logs no answer it did not get (no "no responders" status
    message from the server taken for a worker's answer)."""
    if not os.path.exists(NATS_SERVER):
        pytest.skip("nats-server not installed")
    nats = peers.NatsCluster(tmp_path / "nats", n=1).start()
    router = bk = None
    try:
        router = peers.Router(tmp_path / "router", BUS=nats.url(), BUS_PREFIX="alone.").start()
        fk.wait_until(lambda: nats.subscriptions().get("alone.hb", 0) == 1, 10, msg="router on hb")
        bk = rp.Backend(router.port)
        for _ in range(3):
            assert struct.unpack(">I", bk.query(rp.UID_COUNT, b"alice"))[0] == 0
        assert info(bk) == {"clients": 0, "channels": 0, "uids": 0, "gateways": []}
        assert "malformed" not in router.read_log()
    finally:
        if bk:
            bk.close()
        if router:
            assert router.stop() == 0
        nats.stop()
