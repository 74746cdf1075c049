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
