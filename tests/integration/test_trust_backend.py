"""What the gateway believes of a backend, and for how long it waits on one:
queue deadlines (BACKEND_QUEUE_TIMEOUT), servers marked down after failures
(BACKEND_MAX_FAILS / BACKEND_FAIL_TIMEOUT, as nginx's max_fails), multiplexing
only when the pool asked for it, and names resolved off the loop on reload.

Every test asserts what a client or a backend received; waits have deadlines.
"""

import os
import re
import signal
import time

import fk
from conftest import base_params

SID_TOKEN = re.compile(r"(?<![0-9a-zA-Z])[0-9a-f]{16}(?![0-9a-zA-Z])")


def fake_keys(f, **kw):
    keys = {"BACKEND_SERVER": f.addr, "FASTCGI_PARAMS": base_params(), "EVENT_CLOSE": 0}
    keys.update(kw)
    return keys


# ---------------------------------------------------------------- multiplexing

def test_unsolicited_mpxs_ignored(fake, gateway):
    """A backend volunteers FCGI_MPXS_CONNS=1 but closes after each request:
    with BACKEND_MULTIPLEX = 0 the connection must stay one request at a time,
    so all 11 concurrent clients are served (before: 10 of 11 failed)."""
    f = fake(unsolicited_mpxs=True)
    gw = gateway(**fake_keys(f, BACKEND_MAX_CONNS=1, BACKEND_MULTIPLEX=0))
    clients = [gw.client(timeout=10) for _ in range(11)]
    try:
        for i, c in enumerate(clients):
            c.send(b"mpx %d" % i)
        for i, c in enumerate(clients):
            assert c.recv() == b"mpx %d" % i
    finally:
        for c in clients:
            c.close()
    assert len(f.messages()) == 11
    assert f.max_open <= 1
    assert not gw.log_lines("closed the connection before END_REQUEST")
