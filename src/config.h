/* config.h - the one struct every module reads its settings from.
 * Filled once by config_load() from a Lua 5.3 file; nothing else touches Lua config. */
#ifndef FOOKING_CONFIG_H
#define FOOKING_CONFIG_H

#include <stddef.h>

#define FOOKING_VERSION "1.0.0"

/* BACKEND_SERVER entries (the pool keeps a bit per server per request). */
#define CONFIG_MAX_BACKENDS 64
/* ROUTER_SECRET bytes: what AUTH and SECRET may carry before a peer is trusted. */
#define CONFIG_MAX_SECRET 256

enum proto { PROTO_LENGTH = 0, PROTO_WEBSOCKET = 1 };

struct cfg_backend {
    char *addr; /* "host:port" or "unix:/path" */
    int weight; /* >= 1 */
};

struct cfg_param {
    char *name;
    char *value;
};

struct config {
    char *file;         /* path of the config file, for messages */
    int router;         /* ROUTER: 1 router mode, 0 gateway */
    char *host;         /* HOST */
    int port;           /* PORT */
    int daemonize;      /* DAEMONIZE */
    char *pid_file;     /* PID_FILE */
    char *log_file;     /* LOG_FILE */
    int log_level;      /* LOG_LEVEL */
    char *user, *group; /* USER, GROUP: drop privileges after bind */

    /* router link (gateway) and router secret (both modes) */
    char *router_host;
    int router_port;
    char *router_secret;
    int link_timeout; /* LINK_TIMEOUT seconds: a silent router/bus link is dead (0 = off) */

    /* gateway */
    int server_id;
    int worker_num;
    int max_client_num;
    size_t max_buff_size;
    size_t max_output_size; /* MAX_OUTPUT_SIZE: slow-consumer limit per client */
    int idle_time;
    int ssl;
    char *ssl_cert, *ssl_pkey;
    char *script_file;
    enum proto protocol;     /* PROTOCOL: "length" | "websocket" */
    char *static_dir;        /* STATIC_DIR */
    int ping_interval;       /* PING_INTERVAL (websocket), seconds, 0 = off */
    int handshake_timeout;   /* HANDSHAKE_TIMEOUT, seconds */
    char **allowed_origins;  /* ALLOWED_ORIGINS, NULL-terminated; NULL = same origin, "*" = any */
    int max_conn_per_ip;     /* MAX_CONN_PER_IP: connections from one address (0 = no limit) */
    int session_max_size;    /* SESSION_MAX_SIZE: bytes of data a backend may keep per session */
    int channels_per_client; /* CHANNELS_PER_CLIENT: channels one session may be in */
    int ws_binary;           /* WS_BINARY: 1 = replies as binary frames */
    char **ws_subprotocols;  /* WS_SUBPROTOCOLS, NULL-terminated */
    char *metrics_host;      /* METRICS_HOST: the master's /metrics and /healthz */
    int metrics_port;        /* METRICS_PORT (0 = off) */

    struct cfg_backend *backends;
    int nbackends;
    double backend_connect_timeout;
    double backend_read_timeout;
    int backend_keepalive;
    int backend_max_conns;        /* BACKEND_MAX_CONNS per backend server per worker */
    int backend_queue_size;       /* BACKEND_QUEUE_SIZE per worker */
    int backend_multiplex;        /* BACKEND_MULTIPLEX */
    int graceful_stop_time;       /* GRACEFUL_STOP_TIME: SIGQUIT spreads the closes over it */
    double backend_queue_timeout; /* BACKEND_QUEUE_TIMEOUT: a queued request expires */
    int backend_max_fails;        /* BACKEND_MAX_FAILS in a row mark a server down (0 = never) */
    double backend_fail_timeout;  /* BACKEND_FAIL_TIMEOUT: ... for this many seconds */
    int event_connect, event_close;
    char *fastcgi_prefix;
    struct cfg_param *fastcgi_params;
    int nparams;

    /* router mode */
    size_t router_output_limit; /* ROUTER_OUTPUT_LIMIT bytes pending per link */
    size_t router_answer_max;   /* ROUTER_ANSWER_MAX: largest answer D to a query */
    char *bus;                  /* BUS redis://... */
    char *bus_prefix;           /* BUS_PREFIX */
    int http_port;              /* HTTP_PORT: the JSON API and /metrics (0 = off) */
    char *http_host;            /* HTTP_HOST (default HOST) */
    size_t http_max_body;       /* HTTP_MAX_BODY: largest request body, bytes */
};

/* Loads `path` into *cfg. On error writes one line "path: KEY ..." into err and
 * returns -1. Warnings (unknown keys) are written to stderr. */
int config_load(struct config *cfg, const char *path, char *err, size_t errlen);
void config_free(struct config *cfg);
/* Whether FASTCGI_PARAMS sets `name` (then the gateway's default gives way). */
int config_has_param(const struct config *cfg, const char *name);

#endif
