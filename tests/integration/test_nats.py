"""NATS as the bus: BUS = "nats://..." on gateways and routers (natsbus.py has the
cluster: three nats-servers, two gateways x 2 workers, two routers)."""

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
    import struct
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
        assert sorted(bk.query(rp.UID_SIDS, b"alice")[i:i + 16] for i in (0, 16)) == \
            sorted([A[0].sid, D[0].sid])
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
