"""Checks the test backends themselves (no gateway): php-fpm + echo.php, goecho and
the fault-injecting fakes, driven by the tiny FastCGI client in fcgifake.py."""

import socket
import struct

import pytest

import fk
from conftest import STATIC_PARAM, base_params
from fcgifake import (FCGI_END_REQUEST, FCGI_STDOUT, decode_params, encode_params,
                      fcgi_request, read_record, record)

SID = "0123456789abcdef"
ALL_BYTES = bytes(range(256))


def params_for(kind, event="0", body=b"", sid=SID, **extra):
    pre = "HTTP_" if kind == "go" else ""
    p = base_params()
    p.update({pre + "SESSIONID": sid, pre + "EVENT": event, "REMOTE_ADDR": "127.0.0.1",
              "REMOTE_PORT": "40000", "CONTENT_LENGTH": str(len(body))})
    p.update(extra)
    return p


@pytest.fixture(params=["php", "go"])
def real(request):
    if request.param == "php":
        return "php", request.getfixturevalue("php")
    return "go", request.getfixturevalue("goecho")


def ask(real, body, event="0", **extra):
    kind, srv = real
    return fcgi_request(srv.addr, params_for(kind, event, body, **extra), body)


def test_params_codec_roundtrip():
    p = {"A": "1", "LONG" * 40: "v" * 300, "EMPTY": ""}
    assert decode_params(encode_params(p)) == p


@pytest.mark.parametrize("size", [0, 1, 255, 65535, 65536, 1000000])
def test_echo_sizes(real, size):
    body = (ALL_BYTES * (size // 256 + 1))[:size]
    r = ask(real, body)
    assert r.status == 200
    assert int(r.headers["content-length"]) == size
    assert r.body == body


@pytest.mark.parametrize("body", [ALL_BYTES, b"\r\nstarts with CR", b"\nstarts with LF",
                                  b"  spaces  \n"])
def test_echo_binary(real, body):
    assert ask(real, body).body == body


def test_params_reply(real, tmp_path):
    r = ask(real, b"params please")
    j = r.json()
    assert j["SESSIONID"] == SID
    assert j["EVENT"] == "0"
    assert j["REMOTE_ADDR"] == "127.0.0.1"
    assert j["REMOTE_PORT"] == "40000"
    assert j["CONTENT_LENGTH"] == str(len(b"params please"))
    assert j[STATIC_PARAM[0]] == STATIC_PARAM[1]


def test_connect_event_welcome(real):
    assert ask(real, b"", event="1").body == b"welcome " + SID.encode()


def test_close_event_log(real, tmp_path):
    log = tmp_path / "events.log"
    r = ask(real, b"", event="2", EVENT_LOG=str(log))
    assert r.body == b""
    assert log.read_text() == SID + " closed\n"


def test_sleep(real):
    assert ask(real, b"sleep 0.2").body == b"sleep 0.2"


def test_big(real):
    assert ask(real, b"big 100000").body == b"x" * 100000


def test_php_stderr(php):
    r = fcgi_request(php.addr, params_for("php", body=b"stderr x"), b"stderr x")
    assert r.body == b"stderr x"
    assert b"echo.php stderr test message" in r.stderr


def test_go_stderr(goecho):
    r = fcgi_request(goecho.addr, params_for("go", body=b"stderr"), b"stderr")
    assert r.body == b"stderr"
    fk.wait_until(lambda: "goecho stderr test sid=" + SID in goecho.output())


def test_go_connection_count(new_goecho):
    g = new_goecho()
    for _ in range(3):
        ask(("go", g), b"hi")
    fk.wait_until(lambda: g.connections() == 3)
    assert ask(("go", g), b"conncount").body == b"4"
    # keep-alive: two requests on one connection
    s = socket.create_connection(("127.0.0.1", g.port))
    for i in (1, 2):
        r = fcgi_request(None, params_for("go", body=b"k"), b"k", req_id=i, keep_conn=True, sock=s)
        assert r.body == b"k"
    s.close()
    fk.wait_until(lambda: g.connections() == 5)


def test_php_keepalive(php):
    s = socket.create_connection(("127.0.0.1", php.port))
    for i in (1, 2, 3):
        r = fcgi_request(None, params_for("php", body=b"ka"), b"ka", req_id=i, keep_conn=True,
                         sock=s)
        assert r.body == b"ka"
    s.close()


# ---------------------------------------------------------------- the fakes

def test_fake_echo_counts(fake):
    f = fake()
    for i in range(3):
        assert fcgi_request(f.addr, params_for("php", body=b"m%d" % i), b"m%d" % i).body == b"m%d" % i
    assert f.connections == 3
    assert [r["body"] for r in f.messages()] == [b"m0", b"m1", b"m2"]
    assert f.requests[0]["params"]["SESSIONID"] == SID
    assert f.sid_of(b"m1") == SID
    j = fcgi_request(f.addr, params_for("go"), b"params").json()
    assert j["HTTP_SESSIONID"] == SID


def test_fake_events(fake):
    f = fake(welcome=True)
    assert fcgi_request(f.addr, params_for("php", event="1"), b"").body == b"welcome " + SID.encode()
    assert fcgi_request(f.addr, params_for("php", event="2"), b"").body == b""
    assert len(f.events(2, SID)) == 1


def test_fake_sleep_and_hang(fake):
    f = fake()
    assert fcgi_request(f.addr, params_for("php"), b"fault:sleep:0.2 x").body == b"fault:sleep:0.2 x"
    with pytest.raises(socket.timeout):
        fcgi_request(f.addr, params_for("php"), b"fault:hang", timeout=0.3)


def test_fake_slow_first(fake):
    f = fake(mode="slow_first", delay=0.3)
    assert fcgi_request(f.addr, params_for("php"), b"a").body == b"a"
    assert fcgi_request(f.addr, params_for("php"), b"b", timeout=0.2).body == b"b"


def raw_exchange(addr, body):
    """Sends one request and returns every record until EOF (or 1 s of silence)."""
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=1)
    p = encode_params(params_for("php"))
    s.sendall(record(1, 1, struct.pack(">HB5x", 1, 0)) + record(4, 1, p) + record(4, 1)
              + record(5, 1, body) + record(5, 1))
    out = []
    try:
        while True:
            rec = read_record(s)
            if rec is None:
                break
            out.append(rec)
    except (EOFError, socket.timeout) as e:
        out.append(("error", str(e)))
    s.close()
    return out


def test_fake_broken_variants(fake):
    f = fake()
    recs = raw_exchange(f.addr, b"fault:badversion")
    assert recs[0][0] == 2
    recs = raw_exchange(f.addr, b"fault:overlong")
    assert recs[-1][0] == "error"
    recs = raw_exchange(f.addr, b"fault:after_end")
    types = [r[1] for r in recs]
    assert types.index(FCGI_END_REQUEST) < len(types) - 1 and types[-1] == FCGI_STDOUT
    recs = raw_exchange(f.addr, b"fault:close_early")
    assert [r[1] for r in recs] == [FCGI_STDOUT]
    recs = raw_exchange(f.addr, b"fault:stderr")
    assert recs[0][1] == 7 and recs[0][3] == b"fake stderr message"


def test_fake_unix(fake, tmp_path):
    f = fake(unix=tmp_path / "fake.sock")
    assert fcgi_request(f.addr, params_for("php"), b"over unix").body == b"over unix"


@pytest.mark.parametrize("fault,expect", [("cl_short", b"fau"), ("lf", None), ("nocl", None),
                                          ("tiny", None), ("status:201", None)])
def test_fake_reply_shapes(fake, fault, expect):
    f = fake()
    body = b"fault:" + fault.encode() + b" payload"
    r = fcgi_request(f.addr, params_for("php"), body)
    if fault == "cl_short":
        assert r.headers["content-length"] == "3" and r.body == body
    else:
        assert r.body == body
    if fault.startswith("status"):
        assert r.status == 201
