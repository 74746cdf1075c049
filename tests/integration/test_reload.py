"""Reloads and log rotation as an operator does them, checked by what the
backends and the log receive afterwards:

  - a worker respawned after SIGHUP runs the reloaded configuration
  - with USER/GROUP, workers keep logging after a rotation and SIGUSR1
  - SCRIPT_FILE removed or changed by SIGHUP: connected clients keep the
    protocol they were accepted with, new clients get the new one
"""

import grp
import os
import pwd
import signal
import socket
import tempfile
import time

import pytest

import fk
from conftest import base_params

HERE = os.path.dirname(os.path.abspath(__file__))
NDJSON = os.path.join(HERE, "..", "..", "example", "scripts", "ndjson.lua")


def keys_for(f, **extra):
    k = dict(BACKEND_SERVER=f.addr, FASTCGI_PARAMS=base_params(), EVENT_CLOSE=0)
    k.update(extra)
    return k


def reload(gw, **changes):
    """Writes the changed config, sends SIGHUP, waits for every worker to say so."""
    before = len(gw.log_lines("configuration reloaded"))
    gw.keys.update(changes)
    for k in [k for k, v in gw.keys.items() if v is None]:
        del gw.keys[k]
    fk.write_config(gw.conf, gw.keys)
    os.kill(gw.pid, signal.SIGHUP)
    fk.wait_until(lambda: len(gw.log_lines("configuration reloaded")) >= before + gw.worker_num,
                  5, msg="workers reloaded")


def test_worker_respawned_after_reload_runs_the_new_config(fake, gateway):
    a, b = fake(), fake()
    gw = gateway(**keys_for(a))
    with gw.client() as c:
        assert c.request(b"before") == b"before"
    reload(gw, BACKEND_SERVER=b.addr)
    old = gw.worker_pids()[0]
    os.kill(old, signal.SIGKILL)
    # one look per poll: two calls could see [old] and then [] (old reaped,
    # the new one not yet forked) and fail with an IndexError, not a verdict
    fk.wait_until(lambda: [p for p in gw.worker_pids() if p != old], 5, msg="a new worker")
    fk.wait_listening(gw.port)
    on_a = len(a.messages())
    with gw.client() as c:
        assert c.request(b"after respawn") == b"after respawn"
    assert [m["body"] for m in b.messages()] == [b"after respawn"]
    assert len(a.messages()) == on_a, "the respawned worker used the old backend"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")
def test_workers_running_as_user_keep_logging_after_rotation(fake, gateway):
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid).gr_name
    logdir = tempfile.mkdtemp(prefix="fooking-log-")
    os.chmod(logdir, 0o755)  # the workers (nobody) must reach the file
    log = os.path.join(logdir, "gw.log")
    try:
        f = fake()
        gw = gateway(**keys_for(f, USER="nobody", GROUP=group, WORKER_NUM=2, LOG_FILE=log,
                                LOG_LEVEL=3))
        gw.log_file = fk.Path(log)
        workers = set(gw.worker_pids())
        os.rename(log, log + ".1")
        os.kill(gw.pid, signal.SIGUSR1)
        fk.wait_until(lambda: os.path.exists(log), 5, msg="the master's new log file")
        st = os.stat(log)
        assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)

        def worker_lines():
            with gw.client() as c:  # a worker logs the connect (debug) and the close
                c.request(b"x")
            text = open(log).read()
            return any("[%d]" % p in text for p in workers)
        fk.wait_until(worker_lines, 5, interval=0.2, msg="worker lines in the reopened log")
        assert "cannot reopen" not in open(log + ".1").read()
    finally:
        for name in ("gw.log", "gw.log.1"):
            try:
                os.unlink(os.path.join(logdir, name))
            except OSError:
                pass
        os.rmdir(logdir)


def ndjson_client(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    return s, s.makefile("rb")


@pytest.mark.parametrize("change", ["removed", "replaced"])
def test_script_clients_keep_their_protocol_across_reload(fake, gateway, tmp_path, change):
    f = fake()
    gw = gateway(**keys_for(f, SCRIPT_FILE=os.path.abspath(NDJSON)))
    s, r = ndjson_client(gw.port)
    try:
        s.sendall(b"one\n")
        assert r.readline() == b"one\n"
        if change == "removed":
            reload(gw, SCRIPT_FILE=None)
        else:
            other = tmp_path / "upper.lua"
            other.write_text(open(NDJSON).read().replace(
                "fb.append(output, line)", "fb.append(output, line:upper())"))
            reload(gw, SCRIPT_FILE=str(other))
        # The connected client still speaks the script it was accepted with.
        s.sendall(b"two\n")
        assert r.readline() == b"two\n"
        # A new client gets the new protocol.
        if change == "removed":
            with gw.client() as c:
                assert c.request(b"framed") == b"framed"
        else:
            s2, r2 = ndjson_client(gw.port)
            s2.sendall(b"three\n")
            assert r2.readline() == b"THREE\n"
            s2.close()
        s.sendall(b"four\n")
        assert r.readline() == b"four\n"
    finally:
        s.close()


def test_sighup_at_a_new_worker_does_not_kill_it(fake, gateway):
    """The master forks with its signals blocked; a worker unblocked them before
    its handlers existed, so a SIGHUP in that window (a reload right after a
    respawn) killed it with the default action."""
    f = fake()
    gw = gateway(**keys_for(f))
    children = "/proc/%d/task/%d/children" % (gw.pid, gw.pid)
    for _ in range(5):
        old = gw.worker_pids()[0]
        time.sleep(1.05)  # not a crash loop: the master respawns at once
        os.kill(old, signal.SIGKILL)
        new = None
        deadline = time.monotonic() + 5
        while new is None and time.monotonic() < deadline:
            with open(children) as fh:
                pids = [int(p) for p in fh.read().split() if int(p) != old]
            new = pids[0] if pids else None
        assert new, "no new worker"
        until = time.monotonic() + 0.05
        while time.monotonic() < until:  # SIGHUPs from its first instant on
            try:
                os.kill(new, signal.SIGHUP)
            except ProcessLookupError:
                break
        fk.wait_until(lambda: gw.log_lines("worker 0 started (pid %d)" % new), 5,
                      msg="worker %d started" % new)
        with gw.client() as c:
            assert c.request(b"alive") == b"alive"
        assert fk.pid_alive(new)
    assert not gw.log_lines("killed by signal 1,")
