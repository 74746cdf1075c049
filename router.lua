-- fooking router configuration (Lua 5.3). Start with:  ./fooking router.lua
-- Anyone who can reach the router can message or kick every user: keep it on
-- loopback or a private network, and set ROUTER_SECRET when it is not on loopback.

ROUTER = 1

HOST = "127.0.0.1"          -- listen address for gateways and backends
PORT = 9010                 -- required

DAEMONIZE = 0
PID_FILE = nil              -- e.g. "/run/fooking-router.pid"
LOG_FILE = "stdout"         -- "" none, "stdout", "stderr" or a path (reopened on SIGUSR1)
LOG_LEVEL = 2               -- 1 errors, 2 + info, 3 + debug

-- ROUTER_SECRET = "change me"  -- when set, gateways (in AUTH) and backends (message 13)
                                -- must present it before any other command
ROUTER_OUTPUT_LIMIT = 67108864  -- bytes pending to one gateway link before it is dropped
                                -- (it reconnects and resyncs)
-- ROUTER_ANSWER_MAX = 16777216 -- largest answer to a backend's query; a bigger one is
                                -- answered ERROR (at most half of ROUTER_OUTPUT_LIMIT)
-- LINK_TIMEOUT = 15            -- PING each gateway link every LINK_TIMEOUT/3; drop one that
                                -- answered before and has been silent this long (0 = off).
                                -- A connection must present ROUTER_SECRET within 5 s.

-- The HTTP JSON API (POST /api/publish, /api/send, ...; GET /api/info, /api/online,
-- /api/channels, /api/channel) and GET /metrics, on a port of its own. With
-- ROUTER_SECRET set, every request needs "Authorization: Bearer <ROUTER_SECRET>".
-- HTTP_PORT = 9011             -- 0 = off (the default)
-- HTTP_HOST = "127.0.0.1"      -- default: HOST
-- HTTP_MAX_BODY = 1048576      -- largest request body, bytes (1024..64 MiB); past it 413

-- With BUS the router keeps no state: it publishes each backend command to the
-- Redis bus, and answers INFO and the backend API v2 queries from the keys the
-- gateways keep there (a query may not see yet a command sent just before it). Run
-- as many as you like; gateways must use the same BUS and BUS_PREFIX.
-- BUS = "redis://127.0.0.1:6379"   -- redis://[:password@]host:port[/db]
-- BUS_PREFIX = "fooking:"
