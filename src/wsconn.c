/* wsconn.c - WebSocket connections (RFC 6455) on top of client.c.
 *
 * Handshake: the request head is bounded (WS_MAX_HEAD) and must complete before
 * an absolute deadline (HANDSHAKE_TIMEOUT), so a slowloris client trickling a
 * byte at a time cannot hold a connection. Plain GET/HEAD requests without
 * Upgrade are answered from STATIC_DIR (one file, then close).
 *
 * Data: a message is assembled from its frames in an evbuffer, unmasked and
 * UTF-8-checked piece by piece as it arrives, so a bad message fails before it
 * is whole. Control frames may come between fragments. Replies go out as text
 * frames (WS_BINARY = 0) unless they are not valid UTF-8, which a browser would
 * reject as text: those go out as binary frames.
 *
 * Liveness: every PING_INTERVAL the server pings; a client that sent nothing
 * during a whole interval (not even a pong) is closed. */
#include "wsconn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "client.h"
#include "conn.h"
#include "log.h"
#include "static.h"
#include "wctx.h"
#include "ws.h"

/* WSC_NONE: before wsconn_start and after wsconn_free (the state lives in the
 * client's block, zeroed with it). */
enum wsconn_state { WSC_NONE, WSC_HANDSHAKE, WSC_OPEN, WSC_CLOSING };

struct ws_conn {
    uint8_t state;             /* enum wsconn_state */
    uint8_t heard;             /* something arrived since the last ping */
    uint32_t seen;             /* head bytes already scanned (ws_parse_request's last_len) */
    struct event *timer;       /* handshake deadline, then the ping interval */
    struct ws_message msg;     /* fragmentation state */
    struct evbuffer *assembly; /* payload of the message being received */
};

/* The client's WebSocket state, NULL when it has none (or no more). */
static struct ws_conn *ws_of(struct client *c)
{
    struct ws_conn *ws = client_proto_state(c);
    return c->proto == &wsconn_proto && ws->state != WSC_NONE ? ws : NULL;
}

int wsconn_open(struct client *c)
{
    return ws_of(c) && ws_of(c)->state == WSC_OPEN;
}

/* The handshake deadline passed. */
static void wsconn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    (void)fd;
    (void)what;
    if (ws_of(c)->state == WSC_HANDSHAKE) {
        log_info("client %s %s:%d: handshake not completed in %d s", c->sid, c->addr, c->port,
                 c->w->cfg->handshake_timeout);
        client_close(c, "handshake timeout");
    }
}

void wsconn_ping(struct client *c)
{
    struct ws_conn *ws = ws_of(c);
    if (!ws || ws->state != WSC_OPEN || c->dead || c->closing || c->over_limit)
        return;
    if (c->paused) {
        /* Not read while paused: it cannot answer, so silence proves nothing. */
        ws->heard = 1;
        return;
    }
    if (!ws->heard) {
        wsconn_close_frame(c, WS_CLOSE_POLICY, "ping timeout");
        client_close_after_flush(c, "ping timeout");
        return;
    }
    ws->heard = 0;
    uint8_t hdr[WS_MAX_FRAME_HEADER];
    size_t n = ws_frame_header(hdr, WS_OP_PING, 1, 0);
    evbuffer_add(conn_output(c->conn), hdr, n);
}

int wsconn_start(struct client *c)
{
    struct ws_conn *ws = client_proto_state(c); /* zeroed, with the client */
    /* The message buffer comes with the first data frame; the timer lives
     * only until the handshake is done (pings are one sweep per worker):
     * an idle connection carries neither. */
    ws->timer = evtimer_new(c->w->base, wsconn_timer_cb, c);
    if (!ws->timer)
        return -1;
    ws_message_init(&ws->msg);
    ws->state = WSC_HANDSHAKE;
    struct timeval tv = {c->w->cfg->handshake_timeout, 0};
    evtimer_add(ws->timer, &tv);
    return 0;
}

void wsconn_free(struct client *c)
{
    struct ws_conn *ws = ws_of(c);
    if (!ws)
        return;
    if (ws->timer)
        event_free(ws->timer);
    if (ws->assembly)
        evbuffer_free(ws->assembly);
    ws->timer = NULL;
    ws->assembly = NULL;
    ws->state = WSC_NONE; /* its memory goes with the client's */
}

static void wsconn_http_error(struct client *c, int status, const char *why)
{
    char buf[512];
    long n = ws_build_error(buf, sizeof(buf), status);
    log_info("client %s %s:%d: HTTP %d: %s", c->sid, c->addr, c->port, status, why);
    if (n > 0)
        evbuffer_add(conn_output(c->conn), buf, (size_t)n);
    ws_of(c)->state = WSC_CLOSING;
    c->close_kind = STATS_CLOSE_PROTOCOL + 1;
    client_close_after_flush(c, why);
}

/* A plain GET/HEAD: one file from STATIC_DIR, then close. */
static void wsconn_static(struct client *c, const struct ws_request *req)
{
    struct worker *w = c->w;
    if (w->static_fd < 0) {
        wsconn_http_error(c, 426, "plain HTTP request and no STATIC_DIR");
        return;
    }
    char rel[STATIC_PATH_MAX];
    int st = static_resolve(req->target.p, req->target.len, rel, sizeof(rel));
    int fd = -1;
    struct stat sb;
    if (st == STATIC_OK)
        st = static_open(w->static_fd, rel, &fd, &sb);
    struct evbuffer *out = conn_output(c->conn);
    if (st == STATIC_MOVED) {
        /* one leading '/': "//host/" would be a protocol-relative URL */
        const char *lp = req->path.p;
        size_t ll = req->path.len;
        while (ll > 1 && lp[0] == '/' && lp[1] == '/') {
            lp++;
            ll--;
        }
        evbuffer_add_printf(out,
                            "HTTP/1.1 301 Moved Permanently\r\nLocation: %.*s/\r\n"
                            "Content-Length: 0\r\nConnection: close\r\n\r\n",
                            (int)ll, lp);
        ws_of(c)->state = WSC_CLOSING;
        client_close_after_flush(c, "static redirect");
        return;
    }
    if (st != STATIC_OK) {
        wsconn_http_error(c, st, "static file refused");
        return;
    }
    int head = req->method.len == 4 && memcmp(req->method.p, "HEAD", 4) == 0;
    evbuffer_add_printf(out,
                        "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %lld\r\n"
                        "X-Content-Type-Options: nosniff\r\nCache-Control: no-cache\r\n"
                        "Connection: close\r\n\r\n",
                        static_content_type(rel, strlen(rel)), (long long)sb.st_size);
    if (!head && sb.st_size > 0) {
        /* Takes the fd; when it fails, the fd may or may not have been
         * closed with the segment it failed to add. */
        if (evbuffer_add_file(out, fd, 0, sb.st_size) < 0) {
            if (fcntl(fd, F_GETFD) >= 0)
                close(fd);
            log_err("client %s %s:%d: static %s: cannot queue the file", c->sid, c->addr, c->port,
                    rel);
            ws_of(c)->state = WSC_CLOSING;
            client_close(c, "static file not sent");
            return;
        }
    } else {
        close(fd);
    }
    log_debug("client %s %s:%d: static %s (%lld bytes)", c->sid, c->addr, c->port, rel,
              (long long)sb.st_size);
    ws_of(c)->state = WSC_CLOSING;
    client_close_after_flush(c, "static file served");
}

/* ALLOWED_ORIGINS: unset, a browser's Origin must name this very host (a
 * page elsewhere would otherwise ride on the user's cookies: cross-site
 * WebSocket hijacking); a list allows exactly its entries, "*" any. Clients
 * that send no Origin are not browsers and are not affected by the default. */
static int wsconn_origin_ok(const struct client *c, const struct ws_request *req)
{
    char **list = c->w->cfg->allowed_origins;
    if (list == NULL)
        return req->origin.p == NULL
               || ws_origin_same_host(req->origin.p, req->origin.len, req->host.p, req->host.len);
    for (char **p = list; *p; p++)
        if (strcmp(*p, "*") == 0)
            return 1;
    if (req->origin.p == NULL)
        return 0;
    for (; *list; list++)
        if (strlen(*list) == req->origin.len && memcmp(*list, req->origin.p, req->origin.len) == 0)
            return 1;
    return 0;
}

/* Whether a CGI name is one the gateway itself sets (or FASTCGI_PARAMS does):
 * a handshake header turned into it would let a client choose its own
 * SESSIONID, EVENT or REMOTE_ADDR. Backends differ in which of two equal
 * params they keep (Go keeps the last), so the header is not passed at all,
 * as nginx does for a header that a fastcgi_param HTTP_* line sets. */
static int wsconn_reserved(const struct config *cfg, const char *name)
{
    /* Header params all start with HTTP_, so of the gateway's own params only
     * the prefixed ones can collide (FASTCGI_PREFIX = "HTTP_", as Go needs);
     * REMOTE_ADDR, CONTENT_LENGTH, HTTPS and the like never can. HTTP_SESSIONID
     * and its kin are kept out under any prefix: a backend moved from "HTTP_"
     * to "" that still reads the Sessionid header must not read a client's. */
    static const char *const own[] = {"SESSIONID", "EVENT", "UID", "SESSION"};
    size_t pl = strlen(cfg->fastcgi_prefix);
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
        if ((strncmp(name, cfg->fastcgi_prefix, pl) == 0 && strcmp(name + pl, own[i]) == 0)
            || strcmp(name + 5, own[i]) == 0) /* name starts with "HTTP_" */
            return 1;
    for (int i = 0; i < cfg->nparams; i++)
        if (strcasecmp(name, cfg->fastcgi_params[i].name) == 0)
            return 1;
    return 0;
}

/* Headers that only run the WebSocket handshake itself: they say nothing
 * about the session, and each would cost every connection its bytes for as
 * long as it lives, so they are not passed. */
static int wsconn_handshake_only(const char *name)
{
    static const char *const names[] = {"HTTP_UPGRADE", "HTTP_CONNECTION", "HTTP_SEC_WEBSOCKET_KEY",
                                        "HTTP_SEC_WEBSOCKET_VERSION",
                                        "HTTP_SEC_WEBSOCKET_EXTENSIONS"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(name, names[i]) == 0)
            return 1;
    return 0;
}

/* The handshake's URI, query string and headers go to the backend with every
 * request of the session, so it can authenticate on connect (all but the
 * handshake's own: wsconn_handshake_only). A header sent
 * more than once becomes one param, its values joined as HTTP does (", ";
 * "; " for Cookie), so no backend has to pick one. */
static void wsconn_params(struct client *c, const struct ws_request *req)
{
    char name[WS_MAX_HEAD + 8], other[WS_MAX_HEAD + 8];
    char value[WS_MAX_HEAD + 2 * WS_MAX_HEADERS];
    const struct config *cfg = c->w->cfg;
    fcgi_params_add(&c->params, "REQUEST_URI", req->target.p, req->target.len);
    fcgi_params_add(&c->params, "QUERY_STRING", req->query.p ? req->query.p : "", req->query.len);
    if (c->w->ssl_ctx)
        fcgi_params_add(&c->params, "HTTPS", "on", 2);
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct ws_header *h = &req->headers[i];
        if (ws_cgi_name(name, sizeof(name), h->name.p, h->name.len) == 0
            || wsconn_handshake_only(name))
            continue;
        if (wsconn_reserved(cfg, name)) {
            log_info("client %s %s:%d: handshake header %.*s not passed: %s is set by the gateway",
                     c->sid, c->addr, c->port, (int)h->name.len, h->name.p, name);
            continue;
        }
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen =
                ws_cgi_name(other, sizeof(other), req->headers[j].name.p, req->headers[j].name.len)
                && strcmp(other, name) == 0;
        if (seen)
            continue; /* joined into the first one */
        const char *sep = strcmp(name, "HTTP_COOKIE") == 0 ? "; " : ", ";
        size_t vl = 0;
        for (size_t j = i; j < req->num_headers; j++) {
            const struct ws_header *o = &req->headers[j];
            if (j > i
                && (!ws_cgi_name(other, sizeof(other), o->name.p, o->name.len)
                    || strcmp(other, name) != 0))
                continue;
            if (vl > 0) {
                memcpy(value + vl, sep, 2);
                vl += 2;
            }
            memcpy(value + vl, o->value.p, o->value.len); /* the head is <= WS_MAX_HEAD */
            vl += o->value.len;
        }
        fcgi_params_add(&c->params, name, value, vl);
    }
}

static void wsconn_handshake(struct client *c)
{
    struct ws_conn *ws = ws_of(c);
    struct evbuffer *in = conn_input(c->conn);
    size_t len = evbuffer_get_length(in);
    size_t want = len < WS_MAX_HEAD ? len : WS_MAX_HEAD;
    const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)want);
    struct ws_request req;
    long n = ws_parse_request(buf, want, ws->seen, &req);
    if (n == WS_AGAIN) {
        ws->seen = (uint32_t)want; /* <= WS_MAX_HEAD */
        if (want >= WS_MAX_HEAD)
            wsconn_http_error(c, 400, "request head too long");
        return;
    }
    if (n == WS_ERROR) {
        wsconn_http_error(c, 400, "malformed request head");
        return;
    }
    int verdict = ws_check_request(&req);
    if (verdict == WS_HS_PLAIN) {
        wsconn_static(c, &req);
        return;
    }
    if (verdict != WS_HS_UPGRADE) {
        wsconn_http_error(c, verdict, "invalid WebSocket handshake");
        return;
    }
    if (!wsconn_origin_ok(c, &req)) {
        wsconn_http_error(c, 403, "Origin not in ALLOWED_ORIGINS");
        return;
    }
    const char *proto = NULL;
    if (req.protocol.p && c->w->cfg->ws_subprotocols) {
        int i = ws_select_subprotocol(req.protocol.p, req.protocol.len, c->w->cfg->ws_subprotocols);
        if (i >= 0)
            proto = c->w->cfg->ws_subprotocols[i];
    }
    char answer[512];
    long alen = ws_build_accept(answer, sizeof(answer), &req, proto);
    if (alen < 0) {
        wsconn_http_error(c, 500, "cannot build the handshake answer");
        return;
    }
    wsconn_params(c, &req);
    fcgi_params_fit(&c->params);
    evbuffer_drain(in, (size_t)n);
    evbuffer_add(conn_output(c->conn), answer, (size_t)alen);
    ws->state = WSC_OPEN;
    ws->heard = 1;
    event_free(ws->timer);
    ws->timer = NULL;
    log_debug("client %s %s:%d: WebSocket open", c->sid, c->addr, c->port);
    client_session_start(c);
    /* Idle until the first message, usually: no buffers meanwhile. */
    if (!c->dead && !c->closing)
        conn_shrink_after_flush(c->conn);
}

/* Fails the connection: a close frame with the code, then close. */
static void wsconn_fail(struct client *c, int code, const char *why)
{
    log_info("client %s %s:%d: WebSocket error %d: %s", c->sid, c->addr, c->port, code, why);
    wsconn_close_frame(c, code, why);
    c->close_kind = STATS_CLOSE_PROTOCOL + 1;
    client_close_after_flush(c, why);
}

void wsconn_close_frame(struct client *c, int code, const char *reason)
{
    struct ws_conn *ws = ws_of(c);
    if (!ws || ws->state != WSC_OPEN || c->dead)
        return;
    ws->state = WSC_CLOSING;
    uint8_t hdr[WS_MAX_FRAME_HEADER], payload[WS_MAX_CONTROL_PAYLOAD];
    size_t plen = ws_close_payload(payload, code, reason, reason ? strlen(reason) : 0);
    size_t hlen = ws_frame_header(hdr, WS_OP_CLOSE, 1, plen);
    struct evbuffer *out = conn_output(c->conn);
    evbuffer_add(out, hdr, hlen);
    evbuffer_add(out, payload, plen);
}

static void wsconn_control(struct client *c, const struct ws_frame *f, uint8_t *p, size_t n)
{
    uint8_t hdr[WS_MAX_FRAME_HEADER];
    struct evbuffer *out = conn_output(c->conn);
    switch (f->opcode) {
    case WS_OP_PING: {
        size_t hl = ws_frame_header(hdr, WS_OP_PONG, 1, n);
        evbuffer_add(out, hdr, hl);
        evbuffer_add(out, p, n);
        break;
    }
    case WS_OP_PONG:
        break;
    case WS_OP_CLOSE: {
        int code;
        const uint8_t *reason;
        size_t rlen;
        int bad = ws_close_parse(p, n, &code, &reason, &rlen);
        if (bad) {
            wsconn_fail(c, bad, "bad close frame");
            return;
        }
        /* Answer with the peer's code (RFC 6455 §5.5.1), then close. */
        wsconn_close_frame(c, code == WS_CLOSE_NO_STATUS ? WS_CLOSE_NORMAL : code, NULL);
        client_close_after_flush(c, "closed by peer (close frame)");
        break;
    }
    }
}

/* Unmasks and validates the payload bytes appended at offset `from` of the
 * assembly buffer, in place, chain by chain. Returns 0 or a close code. */
static int wsconn_payload(struct ws_conn *ws, const struct ws_frame *f, size_t from)
{
    struct evbuffer_ptr pos;
    struct evbuffer_iovec vec[8];
    uint64_t done = 0;
    size_t total = evbuffer_get_length(ws->assembly) - from;
    if (evbuffer_ptr_set(ws->assembly, &pos, from, EVBUFFER_PTR_SET) < 0)
        return 0;
    while (done < total) {
        int nv = evbuffer_peek(ws->assembly, (ev_ssize_t)(total - done), &pos, vec, 8);
        if (nv <= 0)
            return 0;
        int got = nv < 8 ? nv : 8;
        size_t adv = 0;
        for (int i = 0; i < got; i++) {
            uint8_t *b = vec[i].iov_base;
            size_t n = vec[i].iov_len;
            if (n > total - done)
                n = total - done;
            ws_unmask(b, n, f->mask, done);
            done += n;
            adv += n;
            int rc = ws_message_data(&ws->msg, b, n);
            if (rc)
                return rc;
        }
        if (done < total && evbuffer_ptr_set(ws->assembly, &pos, adv, EVBUFFER_PTR_ADD) < 0)
            return 0;
    }
    return 0;
}

static void wsconn_frames(struct client *c)
{
    struct ws_conn *ws = ws_of(c);
    struct evbuffer *in = conn_input(c->conn);
    size_t max = c->w->cfg->max_buff_size;
    while (client_can_take(c) && ws->state == WSC_OPEN) {
        size_t len = evbuffer_get_length(in);
        if (len < 2)
            return;
        size_t hn = len < WS_MAX_FRAME_HEADER ? len : WS_MAX_FRAME_HEADER;
        const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)hn);
        struct ws_frame f;
        int rc = ws_parse_frame(p, hn, 1, max, &f);
        if (rc == WS_AGAIN)
            return;
        if (rc == WS_ERROR) {
            wsconn_fail(c, f.close_code,
                        f.close_code == WS_CLOSE_TOO_BIG ? "frame too big" : "protocol error");
            return;
        }
        if (len < f.header_len + f.payload_len)
            return; /* bounded: payload_len <= MAX_BUFF_SIZE was checked */
        ws->heard = 1;
        size_t plen = (size_t)f.payload_len;
        if (ws_opcode_is_control(f.opcode)) {
            uint8_t ctl[WS_MAX_CONTROL_PAYLOAD];
            evbuffer_drain(in, f.header_len);
            evbuffer_remove(in, ctl, plen);
            ws_unmask(ctl, plen, f.mask, 0);
            wsconn_control(c, &f, ctl, plen);
            continue;
        }
        int code = ws_message_frame(&ws->msg, &f, max);
        if (code) {
            wsconn_fail(c, code, code == WS_CLOSE_TOO_BIG ? "message too big" : "bad fragment");
            return;
        }
        evbuffer_drain(in, f.header_len);
        if (!ws->assembly && !(ws->assembly = evbuffer_new())) {
            client_close(c, "out of memory");
            return;
        }
        size_t from = evbuffer_get_length(ws->assembly);
        evbuffer_remove_buffer(in, ws->assembly, plen);
        code = wsconn_payload(ws, &f, from);
        if (!code && f.fin)
            code = ws_message_end(&ws->msg);
        if (code) {
            wsconn_fail(c, code, code == WS_CLOSE_INVALID_DATA ? "invalid UTF-8" : "bad message");
            return;
        }
        if (f.fin) { /* the assembly buffer stays, empty, for the next message */
            c->nrequest++;
            client_message(c, ws->assembly, evbuffer_get_length(ws->assembly));
        }
    }
}

void wsconn_read(struct client *c)
{
    if (ws_of(c)->state == WSC_HANDSHAKE)
        wsconn_handshake(c);
    if (!c->dead && ws_of(c) && ws_of(c)->state == WSC_OPEN)
        wsconn_frames(c);
}

/* Text unless configured binary, or the bytes are not UTF-8. */
static int wsconn_opcode(const struct client *c, const uint8_t *p, size_t n, struct evbuffer *b)
{
    if (c->w->cfg->ws_binary)
        return WS_OP_BINARY;
    struct ws_utf8 u = {0};
    int rc = WS_UTF8_ACCEPT;
    if (p) {
        rc = ws_utf8_feed(&u, p, n);
    } else {
        struct evbuffer_iovec vec[16];
        int nv = evbuffer_peek(b, -1, NULL, NULL, 0);
        if (nv > 16) {
            const uint8_t *all = evbuffer_pullup(b, -1);
            rc = ws_utf8_feed(&u, all, evbuffer_get_length(b));
        } else {
            nv = evbuffer_peek(b, -1, NULL, vec, 16);
            for (int i = 0; i < nv && rc != WS_UTF8_INVALID; i++)
                rc = ws_utf8_feed(&u, vec[i].iov_base, vec[i].iov_len);
        }
    }
    return rc == WS_UTF8_ACCEPT ? WS_OP_TEXT : WS_OP_BINARY;
}

void wsconn_send(struct client *c, struct evbuffer *msg)
{
    if (!wsconn_open(c)) {
        evbuffer_drain(msg, evbuffer_get_length(msg));
        return;
    }
    uint8_t hdr[WS_MAX_FRAME_HEADER];
    size_t n = evbuffer_get_length(msg);
    size_t hl = ws_frame_header(hdr, wsconn_opcode(c, NULL, 0, msg), 1, n);
    client_output_add(conn_output(c->conn), hdr, hl, msg);
}

static int wsconn_shared_header(struct client *c, struct shared_msg *m)
{
    if (!wsconn_open(c))
        return 0; /* pushes start with the session, after the handshake */
    if (m->hdrlen[PROTO_WEBSOCKET] == 0)
        m->hdrlen[PROTO_WEBSOCKET] = (uint8_t)ws_frame_header(
            m->hdr[PROTO_WEBSOCKET], wsconn_opcode(c, m->data, m->len, NULL), 1, m->len);
    return 1;
}

static void wsconn_shrink(struct client *c)
{
    struct ws_conn *ws = ws_of(c);
    if (ws && ws->assembly && evbuffer_get_length(ws->assembly) == 0) {
        evbuffer_free(ws->assembly);
        ws->assembly = NULL;
    }
}

static void wsconn_read_input(struct client *c, struct evbuffer *in)
{
    (void)in; /* the handshake and the frame parser take it from the connection */
    wsconn_read(c);
}

const struct client_proto wsconn_proto = {
    .frame = PROTO_WEBSOCKET,
    .kind = STATS_PROTO_WEBSOCKET,
    .start = wsconn_start,
    .read = wsconn_read_input,
    .send = wsconn_send,
    .shared_header = wsconn_shared_header,
    .close_frame = wsconn_close_frame,
    .ping = wsconn_ping,
    .state_size = sizeof(struct ws_conn),
    .free = wsconn_free,
    .shrink = wsconn_shrink,
};
