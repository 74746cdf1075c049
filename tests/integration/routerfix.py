"""Starts and stops a fooking router for the router tests, independent of the
gateway fixtures in conftest.py: writes a router.lua with ROUTER = 1 on a free
loopback port, runs the binary, waits until the port accepts, stops it by pid."""

import os
import signal
import socket
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FOOKING = os.environ.get("FOOKING_BIN") or os.environ.get("FOOKING") or os.path.join(ROOT, "fooking")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def lua_value(v):
    if isinstance(v, str):
        return '"%s"' % v.replace("\\", "\\\\").replace('"', '\\"')
    return str(v)


class Router:
    def __init__(self, tmpdir, **keys):
        self.dir = str(tmpdir)
        self.port = free_port()
        self.log = os.path.join(self.dir, "router.log")
        self.conf = os.path.join(self.dir, "router.lua")
        k = {"ROUTER": 1, "HOST": "127.0.0.1", "PORT": self.port, "LOG_FILE": self.log,
             "LOG_LEVEL": 3}
        k.update(keys)
        with open(self.conf, "w") as f:
            for key, v in k.items():
                f.write("%s = %s\n" % (key, lua_value(v)))
        self.proc = None

    def start(self, timeout=10.0):
        self.proc = subprocess.Popen([FOOKING, self.conf], stdin=subprocess.DEVNULL,
                                     stdout=open(os.path.join(self.dir, "stdout"), "w"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("router exited with %s: %s" % (self.proc.returncode,
                                                                   self.read_log()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("router not listening on %d" % self.port)
                time.sleep(0.02)

    @property
    def pid(self):
        return self.proc.pid

    def read_log(self):
        out = ""
        for p in (self.log, os.path.join(self.dir, "stdout")):
            try:
                with open(p, errors="replace") as f:
                    out += f.read()
            except OSError:
                pass
        return out

    def nfds(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def rss_kb(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def sanitized(self):
        """True if the binary is built with AddressSanitizer."""
        with open("/proc/%d/maps" % self.pid) as f:
            if "libasan" in f.read():
                return True
        with open(FOOKING, "rb") as f:
            return b"AddressSanitizer" in f.read()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10.0):
        """SIGTERM, wait; returns the exit status (kills by pid if it hangs)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError("router did not stop on SIGTERM within %ss" % timeout)
