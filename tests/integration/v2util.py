"""What the bus tests (test_bus*.py on Redis, test_nats*.py on NATS) share to
ask the cluster: made-up SIDs, queries waited for until exact, a client's
params as the backend saw them."""

import json
import struct
import time

import fk
import rproto as rp

# How long a command may take to show in the answers (publish, apply, and on
# Redis the write behind it).
APPLY_DEADLINE = 5.0


def make_sid(server, worker, n):
    """A well-formed SID of (server, worker) that no gateway handed out (its clock
    field is tiny), distinct for every n."""
    v = ((n + 1) << 24) | (server << 11) | (worker << 6) | (n & 63)
    return b"%016x" % v


def wait_answer(what, fn, want, timeout=APPLY_DEADLINE):
    """Asks fn() until it answers want, within timeout; returns how long it took."""
    last = [None]
    t0 = time.monotonic()

    def ok():
        try:
            last[0] = fn()
        except rp.QueryError as e:
            last[0] = e
        return last[0] == want
    try:
        fk.wait_until(ok, timeout, interval=0.01, msg=what)
    except AssertionError:
        raise AssertionError("%s: wanted %r, last %r" % (what, want, last[0]))
    return time.monotonic() - t0


def uid_sids(bk, uid):
    d = bk.query(rp.UID_SIDS, uid)
    return sorted(d[i:i + 16] for i in range(0, len(d), 16))


def info(bk):
    i = bk.info()
    i["gateways"] = sorted(i["gateways"])
    return i


def ask_params(bus, peer):
    """The client sends "params"; the backend answers with its $_SERVER as JSON."""
    n = len(peer.msgs)
    peer.sock.sendall(struct.pack(">I", 6) + b"params")
    bus.swarm.wait(lambda: len(peer.msgs) > n, 10, "the params reply")
    return json.loads(peer.msgs.pop(n))
