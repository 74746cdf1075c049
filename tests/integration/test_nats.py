"""NATS as the bus: BUS = "nats://..." on gateways and routers (natsbus.py has the
cluster: three nats-servers, two gateways x 2 workers, two routers)."""

import os
import struct

import pytest

import rproto as rp
from natsbus import LINKS, natsbus, received, sids  # noqa: F401
from swarm import assert_delivered, new_marker


def test_smoke_send_all_and_info(natsbus):
    b = natsbus()
    links = b.open_clients(2)
    bk = b.routers[0].backend() if hasattr(b.routers[0], "backend") else rp.Backend(b.routers[0].port)
    m = new_marker()
    bk.send_all(b"hello")
    bk.send_all(m)
    assert_delivered(received(b, m), {p: [b"hello"] for p in b.swarm.open()})
    i = bk.info()
    assert sorted(i["gateways"])[0][:2] == (1, 0)
    assert i["clients"] == len(b.swarm.open())


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
