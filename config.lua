-- fooking gateway configuration (Lua 5.3). Every key is optional unless marked
-- required; the value shown is the default. Relative paths are relative to the
-- directory of this file. Check a config with:  ./fooking -t config.lua

ROUTER = 0                  -- 0 = gateway (this file), 1 = router (see router.lua)

-- Listening address for clients.
HOST = "0.0.0.0"
PORT = 9005                 -- required

-- Processes.
DAEMONIZE = 0               -- 1 = run in the background
PID_FILE = nil              -- e.g. "/run/fooking.pid"; needed for "fooking -s stop|reload"
WORKER_NUM = 1              -- worker processes, 1..32
-- USER = "www-data"        -- started as root: workers run as this user (and GROUP)
-- GROUP = "www-data"

-- Logging.
LOG_FILE = "stdout"         -- "" none, "stdout", "stderr" or a path (reopened on SIGUSR1)
LOG_LEVEL = 2               -- 1 errors, 2 + info, 3 + debug

-- Identity of this gateway in the cluster: 0..8191, unique per gateway machine.
-- It is part of every session id, so commands find their gateway without a lookup.
SERVER_ID = 0

-- Limits on clients.
MAX_CLIENT_NUM = 0          -- concurrent clients over all workers; 0 = no limit
MAX_BUFF_SIZE = 65536       -- largest client message in bytes; larger closes that client
MAX_OUTPUT_SIZE = 4194304   -- unsent bytes per client (every byte: replies, pushes, pongs)
                            -- before it counts as a slow consumer and is disconnected
MAX_CONN_PER_IP = 0         -- connections from one address over all workers; 0 = no limit
IDLE_TIME = 0               -- close a client silent this many seconds; 0 = never
-- SESSION_MAX_SIZE = 4096  -- bytes of data a backend may keep per session (setSession),
                            -- sent back as the SESSION param; at most 16384
-- CHANNELS_PER_CLIENT = 128 -- channels one session may be in; a further join is refused

-- Client protocol.
PROTOCOL = "length"         -- "length": 4-byte big-endian length + message, both ways
                            -- "websocket": RFC 6455 (browsers)
-- STATIC_DIR = "example/chat"   -- websocket: plain GETs on PORT serve files from here
-- PING_INTERVAL = 30            -- websocket: server ping every N seconds; 0 = off
-- HANDSHAKE_TIMEOUT = 10        -- seconds to complete the WebSocket or TLS handshake, or a
                                 -- first message once its first bytes came
-- ALLOWED_ORIGINS = {"https://example.com"}  -- websocket: accepted Origin values;
                                 -- "*" = any; nil = the page's own host and port only
                                 -- (stops other sites' pages riding on your cookies)
-- WS_SUBPROTOCOLS = {"chat"}    -- websocket: subprotocols offered to clients
-- WS_BINARY = 0                 -- websocket: 1 = replies and pushes as binary frames
-- SCRIPT_FILE = "example/scripts/ndjson.lua"  -- Lua protocol script (replaces PROTOCOL)

-- TLS for client connections.
SSL = 0
-- SSL_CERT = "cert.pem"
-- SSL_PKEY = "key.pem"

-- The router (fan-out to sessions, channels, everyone). No router: no fan-out.
-- ROUTER_HOST = "127.0.0.1"
-- ROUTER_PORT = 9010
-- ROUTER_SECRET = "change me"   -- must match the router's ROUTER_SECRET (at most 256 bytes)
-- LINK_TIMEOUT = 15   -- seconds of silence after which a router link that has been
                       -- pinged, or a Redis connection, is dead: dropped and reconnected;
                       -- a NATS connection is pinged every third of it (0 = off)

-- Message bus instead of (or beside) the router: gateways subscribe to commands
-- published on it. Redis (README, "the Redis bus"): presence kept in Redis.
-- BUS = "redis://127.0.0.1:6379"   -- redis://[:password@]host:port[/db]
-- NATS (README, "Beyond one Redis: NATS"): up to 16 servers, tried in this order;
-- queries are asked of the workers themselves.
-- BUS = "nats://127.0.0.1:4222,127.0.0.1:4223"  -- also nats://user:pass@... or nats://token@...
-- BUS_PREFIX = "fooking:"          -- namespace of the bus channels, keys and subjects
                                    -- (with NATS: no space, '*', '>', leading '.' or "..")

-- FastCGI backends: "host:port", "unix:/path", or a table of address = weight.
BACKEND_SERVER = "127.0.0.1:9000"   -- required
-- BACKEND_SERVER = {["127.0.0.1:9000"] = 3, ["unix:/run/php/php8.2-fpm.sock"] = 1}
BACKEND_CONNECT_TIMEOUT = 5 -- seconds
BACKEND_READ_TIMEOUT = 10   -- seconds without a byte from the backend while a request runs
BACKEND_KEEPALIVE = 0       -- idle FastCGI connections kept per worker; 0 = close after each
BACKEND_MAX_CONNS = 64      -- connections per backend server per worker
BACKEND_QUEUE_SIZE = 4096   -- requests waiting for a connection, per worker; beyond, dropped
BACKEND_MULTIPLEX = 0       -- 1 = several requests per connection when the backend allows it
BACKEND_QUEUE_TIMEOUT = 10  -- seconds a request may wait for a connection, then it fails
BACKEND_MAX_FAILS = 1       -- failures in a row (refused, timeout, broken reply) mark a server down; 0 = never
BACKEND_FAIL_TIMEOUT = 10   -- seconds a server marked down is skipped (tried anyway if all are down)
                            -- (FCGI_MPXS_CONNS: Go's net/http/fcgi yes, php-fpm no)

GRACEFUL_STOP_TIME = 10     -- SIGQUIT (fooking -s quit): close clients spread over this many
                            -- seconds, after their requests in flight are answered

-- Monitoring: the master serves GET /metrics (Prometheus) and GET /healthz.
METRICS_PORT = 0            -- 0 = off; e.g. 9101 (a change needs a restart)
METRICS_HOST = "127.0.0.1"  -- "0.0.0.0" to be scraped from other machines

-- Events posted to the backend (param EVENT): 0 message, 1 connect, 2 close.
EVENT_CONNECT = 0           -- 1 = post EVENT=1 when a client connects; its reply goes to it
EVENT_CLOSE = 1             -- 1 = post EVENT=2 when a client goes away

-- FastCGI params.
FASTCGI_PREFIX = ""         -- put before SESSIONID and EVENT; Go's net/http/fcgi needs "HTTP_"
FASTCGI_PARAMS = {          -- sent with every request
    SCRIPT_FILENAME = "/var/www/gateway.php",
    REQUEST_METHOD = "POST",
}
