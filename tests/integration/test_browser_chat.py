"""The chat example (example/chat) end to end, for both backends (php-fpm running
gateway.php, and gateway.go): the fooking router, the backend and a WebSocket
gateway serving index.html from STATIC_DIR, all on free loopback ports. No Redis:
the backends keep each user in its session data (reply commands) and ask the
router who is online.

- test_chat_protocol: the JSON protocol of README.md over python3-websockets,
  including HTML escaping and the checks on channels (both backends must answer
  alike), also with the router and the gateway on the Redis bus (BUS, as
  `make demo BUS=redis` runs them);
- test_browser_chat: tests/browser/chat.test.mjs in Debian's headless chromium
  (playwright-core from npm, installed here with `npm ci` into
  tests/browser/node_modules). It skips only when chromium cannot be installed;
  on failure, screenshots of the pages are kept and their path printed.
"""

import asyncio
import json
import os
import shutil
import socket
import struct
import subprocess
from pathlib import Path

import pytest

import fk
import peers

CHAT = fk.REPO / "example" / "chat"
BROWSER = fk.REPO / "tests" / "browser"
CHROMIUM = "/usr/bin/chromium"


# ---------------------------------------------------------------- services

class Proc:
    """A process of ours listening on a loopback port; stopped by pid."""

    def __init__(self, name, tmpdir, port):
        self.name = name
        self.dir = Path(tmpdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.out_file = self.dir / ("%s.out" % name)
        self.proc = None

    def start(self, cmd, env=None, timeout=10.0):
        self._out = open(self.out_file, "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT, cwd=str(self.dir), env=env)
        fk.wait_listening(self.port, self.proc, timeout, self.name, self.out_file)
        return self

    def output(self):
        try:
            return self.out_file.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None:
            fk.stop_pid(self.proc, 5)
            self._out.close()


def start_router(tmpdir, bus=None):
    r = Proc("router", tmpdir, fk.free_port())
    conf = r.dir / "router.lua"
    fk.write_config(conf, {"ROUTER": 1, "HOST": "127.0.0.1", "PORT": r.port,
                           "LOG_FILE": str(r.dir / "router.log"), "LOG_LEVEL": 2, "BUS": bus})
    return r.start([str(fk.FOOKING), str(conf)])


class ChatPhpFpm(fk.PhpFpm):
    """fk.PhpFpm (no php.ini, -n: gateway.php needs no extension) with an output()
    like Proc's."""

    def output(self):
        return self.log()


@pytest.fixture(scope="session")
def chat_go_bin(tmp_path_factory):
    go = shutil.which("go") or "/usr/lib/go/bin/go"
    if not os.access(go, os.X_OK):
        pytest.skip("go not installed (scripts/deps.sh test)")
    out = tmp_path_factory.mktemp("chat-go")
    env = dict(os.environ, GO111MODULE="off", CGO_ENABLED="0",
               GOPATH="/usr/share/gocode:%s" % (fk.REPO / "example" / "clients" / "go"))
    home = env.get("HOME")
    if not env.get("GOCACHE") and (not home or not os.access(home, os.W_OK)):
        env["GOCACHE"] = str(out / "gocache")
    binary = out / "chat-gateway"
    r = subprocess.run([go, "build", "-o", str(binary), str(CHAT / "gateway.go")],
                       cwd=str(fk.REPO), env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, "go build example/chat/gateway.go failed:\n" + r.stdout + r.stderr
    return binary


class Stack:
    def __init__(self, backend, gw, router, server):
        self.backend = backend
        self.gw = gw
        self.router = router
        self.server = server
        self.url = "http://127.0.0.1:%d/" % gw.port
        self.ws_url = "ws://127.0.0.1:%d/" % gw.port

    def logs(self):
        parts = []
        for name, text in (("gateway", self.gw.log() + self.gw.output()),
                           ("router", self.router.output() + _read(self.router.dir / "router.log")),
                           ("backend (%s)" % self.backend, self.server.output())):
            parts.append("--- %s:\n%s" % (name, text[-3000:]))
        return "\n".join(parts)


def _read(path):
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


@pytest.fixture(params=["php", "go"])
def chat(request, tmp_path, gateway):
    """The whole chat demo for one backend ("php", "go"; "php-bus", "go-bus": the
    router and the gateway on the Redis bus, as `make demo BUS=redis` runs them;
    "php-nats": on a nats-server, as `make demo BUS=nats`);
    everything stopped by pid at the end."""
    backend, _, bus = request.param.partition("-")
    started = []
    try:
        link = {}
        bus_url = None
        if bus == "nats":
            if not os.access(peers.NATS_SERVER, os.X_OK):
                pytest.skip("nats-server not installed (scripts/deps.sh test)")
            nats = peers.NatsCluster(tmp_path / "nats", 1).start()
            started.append(nats)
            bus_url = link["BUS"] = nats.url()
        elif bus:
            if not os.access(peers.REDIS_SERVER, os.X_OK):
                pytest.skip("redis-server not installed (scripts/deps.sh test)")
            redis = peers.RedisServer(tmp_path / "redis").start()
            started.append(redis)
            bus_url = link["BUS"] = redis.url
        router = start_router(tmp_path / "router", bus=bus_url)
        started.append(router)
        if not bus:
            link = {"ROUTER_HOST": "127.0.0.1", "ROUTER_PORT": router.port}
        params = {"REQUEST_METHOD": "POST", "SERVER_PROTOCOL": "HTTP/1.1",
                  "ROUTER_HOST": "127.0.0.1", "ROUTER_PORT": str(router.port)}
        if backend == "php":
            if not fk.find_php_fpm():
                pytest.skip("php-fpm not installed (scripts/deps.sh test)")
            server = ChatPhpFpm(tmp_path / "php-fpm").start()
            started.append(server)
            params["SCRIPT_FILENAME"] = str(CHAT / "gateway.php")
            prefix = ""
        else:
            binary = request.getfixturevalue("chat_go_bin")
            server = Proc("chat-go", tmp_path / "go", fk.free_port())
            server.start([str(binary), "-listen", "127.0.0.1:%d" % server.port,
                          "-router", "127.0.0.1:%d" % router.port])
            started.append(server)
            prefix = "HTTP_"
        gw = gateway(PROTOCOL="websocket", STATIC_DIR=str(CHAT), WORKER_NUM=2,
                     BACKEND_SERVER="127.0.0.1:%d" % server.port, FASTCGI_PREFIX=prefix,
                     FASTCGI_PARAMS=params, EVENT_CONNECT=1, EVENT_CLOSE=1, **link)
        # Every worker's router link (or bus link: the router's INFO lists the
        # workers registered in Redis) is up, else a push could miss a fresh client.
        fk.wait_until(lambda: len(router_gateways(router)) >= 2, 10,
                      msg="2 gateway workers connected to the router (or the bus)")
        yield Stack(request.param, gw, router, server)
    finally:
        for p in reversed(started):
            p.stop()


def router_gateways(router):
    """The "gateway:" lines of the router's INFO reply (DESIGN §7), one per worker link."""
    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as s:
        s.sendall(struct.pack(">HHI", 12, 0, 0))
        buf = b""
        while len(buf) < 8 or len(buf) < 8 + sum(struct.unpack(">HHI", buf[:8])[1:]):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    slen, dlen = struct.unpack(">HHI", buf[:8])[1:]
    text = buf[8 + slen:8 + slen + dlen].decode(errors="replace")
    return [l for l in text.split("\r\n") if l.startswith("gateway:")]


# ---------------------------------------------------------------- protocol

async def _recv_until(ws, pred, timeout=5.0):
    """The next message (JSON) for which pred is true; earlier ones are skipped."""
    async def loop():
        while True:
            m = json.loads(await ws.recv())
            if pred(m):
                return m
    return await asyncio.wait_for(loop(), timeout)


@pytest.mark.parametrize("chat", ["php", "go", "php-bus", "go-bus", "php-nats"], indirect=True)
def test_chat_protocol(chat):
    websockets = pytest.importorskip("websockets")

    async def scenario():
        a = await websockets.connect(chat.ws_url)
        hello = json.loads(await asyncio.wait_for(a.recv(), 5))
        assert hello["type"] == "hello" and len(hello["id"]) == 16 and hello["online"] == 0
        aid = hello["id"]

        # Not logged in yet: refused.
        await a.send(json.dumps({"type": "msg", "channel": 0, "text": "x"}))
        m = await _recv_until(a, lambda m: m["type"] == "error")
        assert "Log in" in m["text"]
        await a.send("not json")
        assert (await _recv_until(a, lambda m: m["type"] == "error"))["text"].startswith("Bad request")
        await a.send(json.dumps({"type": "login", "name": "  \t "}))
        assert "nickname" in (await _recv_until(a, lambda m: m["type"] == "error"))["text"]

        # Login: the reply lists us; everyone gets a login notice. Names are escaped.
        await a.send(json.dumps({"type": "login", "name": "<i>al</i> & 'co'"}))
        lst = await _recv_until(a, lambda m: m["type"] == "list")
        esc_name = "&lt;i&gt;al&lt;/i&gt; &amp; &#39;co&#39;"
        assert lst["id"] == aid and lst["name"] == esc_name
        assert [u["id"] for u in lst["list"]] == [aid] and lst["list"][0]["name"] == esc_name

        b = await websockets.connect(chat.ws_url)
        bid = json.loads(await asyncio.wait_for(b.recv(), 5))["id"]
        await b.send(json.dumps({"type": "login", "name": "bob"}))
        lst = await _recv_until(b, lambda m: m["type"] == "list")
        assert {u["id"]: u["name"] for u in lst["list"]} == {aid: esc_name, bid: "bob"}
        note = await _recv_until(a, lambda m: m["type"] == "login" and m["id"] == bid)
        assert note["name"] == "bob" and isinstance(note["ts"], int) and ":" in note["time"]

        # A global message: escaped text, sender, channel 0, to both.
        await a.send(json.dumps({"type": "msg", "channel": 0, "text": "<script>x</script> \"q\""}))
        for ws in (a, b):
            m = await _recv_until(ws, lambda m: m["type"] == "msg")
            assert m["id"] == aid and m["name"] == esc_name and m["channel"] == 0
            assert m["text"] == "&lt;script&gt;x&lt;/script&gt; &quot;q&quot;"

        # Channels: only members may post; members only receive.
        await b.send(json.dumps({"type": "msg", "channel": 2, "text": "early"}))
        m = await _recv_until(b, lambda m: m["type"] == "error")
        assert m["channel"] == 2 and "Join" in m["text"]
        await b.send(json.dumps({"type": "join", "channel": 9}))
        assert "channels 1 to 5" in (await _recv_until(b, lambda m: m["type"] == "error"))["text"]
        await b.send(json.dumps({"type": "join", "channel": "2"}))
        m = await _recv_until(b, lambda m: m["type"] == "join" and m["id"] == bid)
        assert m["channel"] == 2 and m["name"] == "bob"
        await b.send(json.dumps({"type": "msg", "channel": 2, "text": "in two"}))
        m = await _recv_until(b, lambda m: m["type"] == "msg")
        assert m["channel"] == 2 and m["text"] == "in two"
        await b.send(json.dumps({"type": "msg", "channel": 0, "text": "lobby"}))
        m = await _recv_until(a, lambda m: m["type"] == "msg")
        assert m["text"] == "lobby", "a non-member got a channel message: %r" % m

        # Leave: confirmed, then posting there is refused again.
        await b.send(json.dumps({"type": "leave", "channel": 2}))
        m = await _recv_until(b, lambda m: m["type"] == "leave" and m["id"] == bid)
        assert m["channel"] == 2
        await b.send(json.dumps({"type": "msg", "channel": 2, "text": "late"}))
        assert (await _recv_until(b, lambda m: m["type"] in ("error", "msg")))["type"] == "error"

        # Two joins sent together, as the page re-joins after a reconnect: each
        # request carries the session data as it was, yet both channels work.
        await b.send(json.dumps({"type": "join", "channel": 1}))
        await b.send(json.dumps({"type": "join", "channel": 3}))
        got = set()
        while got != {1, 3}:
            m = await _recv_until(b, lambda m: m["type"] == "join" and m["id"] == bid)
            got.add(m["channel"])
        for ch in (1, 3):
            await b.send(json.dumps({"type": "msg", "channel": ch, "text": "in %d" % ch}))
            m = await _recv_until(b, lambda m: m["type"] in ("msg", "error"))
            assert m["type"] == "msg" and m["channel"] == ch and m["text"] == "in %d" % ch, m
        # A rename keeps the channels; the others hear of it. (Not ASCII: the
        # session data the name lives in is a header.)
        renamed = "b\u00f8bby \U0001f389"
        await b.send(json.dumps({"type": "login", "name": renamed}))
        lst = await _recv_until(b, lambda m: m["type"] == "list")
        assert {u["id"]: u["name"] for u in lst["list"]} == {aid: esc_name, bid: renamed}
        assert (await _recv_until(a, lambda m: m["type"] == "login"))["name"] == renamed
        await b.send(json.dumps({"type": "msg", "channel": 3, "text": "renamed"}))
        m = await _recv_until(b, lambda m: m["type"] in ("msg", "error"))
        assert m["type"] == "msg" and m["name"] == renamed and m["channel"] == 3, m
        # Leaving a channel one is not in: the notice to this browser only.
        await b.send(json.dumps({"type": "leave", "channel": 4}))
        m = await _recv_until(b, lambda m: m["type"] == "leave")
        assert m["channel"] == 4 and m["id"] == bid
        # A new browser hears how many are logged in.
        c = await websockets.connect(chat.ws_url)
        hello = json.loads(await asyncio.wait_for(c.recv(), 5))
        assert hello["type"] == "hello" and hello["online"] == 2, hello
        await c.close()
        # Nothing of this reached a: its next message is its own.
        await a.send(json.dumps({"type": "msg", "channel": 0, "text": "fence"}))
        m = await _recv_until(a, lambda m: m["type"] in ("msg", "join", "leave"))
        assert m["text"] == "fence", "a got what was not meant for it: %r" % m

        # Close: the others get a leave notice; the user is gone from the list.
        await b.close()
        m = await _recv_until(a, lambda m: m["type"] == "close")
        assert m["id"] == bid and m["name"] == renamed
        await a.send(json.dumps({"type": "login", "name": "alice"}))
        lst = await _recv_until(a, lambda m: m["type"] == "list")
        assert [u["id"] for u in lst["list"]] == [aid] and lst["name"] == "alice"
        await a.close()

    try:
        asyncio.run(scenario())
    except BaseException:
        print(chat.logs())
        raise


# ---------------------------------------------------------------- browser

def _install_chromium():
    """Installs Debian's chromium if it is missing; returns why it could not."""
    if os.access(CHROMIUM, os.X_OK):
        return None
    if os.geteuid() == 0:
        prefix = []
    elif shutil.which("sudo"):
        prefix = ["sudo", "-n"]
    else:
        return "chromium is not installed and there is no root or sudo to install it"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log = ""
    for cmd in (["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
                ["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]):
        try:
            r = subprocess.run(prefix + cmd, env=env, capture_output=True, text=True,
                               timeout=900, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as e:
            log += "%s: %s\n" % (" ".join(cmd), e)
            continue
        log += r.stdout[-1000:] + r.stderr[-1000:]
        if os.access(CHROMIUM, os.X_OK):
            return None
    return "chromium (Debian package) cannot be installed:\n" + log[-2000:]


@pytest.fixture(scope="session")
def browser_env():
    why = _install_chromium()
    if why:
        pytest.skip(why)
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm (Node.js 20 or newer) are needed for tests/browser"
    want = json.loads((BROWSER / "package-lock.json").read_text())["packages"][
        "node_modules/playwright-core"]["version"]
    have = BROWSER / "node_modules" / "playwright-core" / "package.json"
    if not have.exists() or json.loads(have.read_text()).get("version") != want:
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=str(BROWSER),
                           capture_output=True, text=True, timeout=600,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 0, "npm ci in tests/browser failed:\n" + r.stdout + r.stderr
    return node


def test_browser_chat(chat, browser_env, tmp_path):
    shots = tmp_path / "screenshots"
    env = dict(os.environ, CHAT_URL=chat.url, ROUTER_PORT=str(chat.router.port),
               CHROMIUM=CHROMIUM, SCREENSHOT_DIR=str(shots))
    try:
        r = subprocess.run([browser_env, "--test", "--test-reporter=spec", "chat.test.mjs"],
                           cwd=str(BROWSER), env=env, capture_output=True, text=True,
                           timeout=240, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail("the browser test did not finish in 240 s (screenshots, if any: %s)\n%s"
                    % (shots, chat.logs()))
    if r.returncode != 0:
        pytest.fail("browser test failed (%s backend); screenshots in %s\n%s\n%s\n%s"
                    % (chat.backend, shots, r.stdout[-6000:], r.stderr[-3000:], chat.logs()))
