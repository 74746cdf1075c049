/* reply.c - reply commands, carried out for the session a reply is for (see
 * reply.h). Joins and binds change the worker's tables as the router's
 * CH_ADD and BIND would, and are reported to the links (the router keeps its
 * index from the reports, the bus its presence keys from the worker's hooks);
 * a Publish or Broadcast goes out through the first link as the command a
 * backend would have sent, excluding the requester, whose own copy (when it
 * is one of the recipients) is written here at once, in its reply order. */
#include "reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "backend.h"
#include "channel.h"
#include "client.h"
#include "fcgi.h"
#include "log.h"
#include "rmsg.h"
#include "user.h"
#include "wctx.h"
#include "ws.h"

/* What the first pass gathers for the body and the end of the reply. */
struct reply_plan {
    int publish;      /* X-Fooking-Publish lines seen */
    int broadcast;    /* X-Fooking-Broadcast: 1 */
    int exclude_self; /* X-Fooking-Exclude-Self: 1 */
    int close_code;   /* X-Fooking-Close, the last valid one; 0: none */
    char close_reason[CGI_CLOSE_REASON_MAX + 1];
};

/* Logs a skipped command with the session and the reason. */
static void reply_skip(const struct client *c, int cmd, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reply_skip(const struct client *c, int cmd, const char *fmt, ...)
{
    char why[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    log_err("client %s %s:%d: reply command %s skipped: %s", c->sid, c->addr, c->port,
            cgi_cmd_name(cmd), why);
}

/* A name or value from the backend, printable in a log line (escaped, and
 * cut with "..." past what the buffer holds). */
#define REPLY_SHOW_MAX 64
static const char *reply_show(const uint8_t *p, size_t n, char out[4 * REPLY_SHOW_MAX + 4])
{
    return rmsg_escape(p, n, out, 4 * REPLY_SHOW_MAX + 4);
}

static int reply_channel_ok(const struct client *c, int cmd, size_t len)
{
    if (len <= RMSG_MAX_CHANNEL)
        return 1;
    reply_skip(c, cmd, "a channel name of %zu bytes (at most %d)", len, RMSG_MAX_CHANNEL);
    return 0;
}

static void reply_join(struct worker *w, struct client *c, const uint8_t *v, size_t n)
{
    const uint8_t *p = v, *end = v + n, *name;
    size_t len;
    while (cgi_list_next(&p, end, &name, &len)) {
        if (!reply_channel_ok(c, CGI_CMD_JOIN, len))
            continue;
        char show[4 * REPLY_SHOW_MAX + 4];
        int rc = channel_join(w, c, (const char *)name, len);
        if (rc == 1)
            worker_report(w, RMSG_CH_ADD, c->sid, SID_LEN, name, len);
        else if (rc == -2)
            reply_skip(c, CGI_CMD_JOIN, "channel %s: the session is in CHANNELS_PER_CLIENT (%d)",
                       reply_show(name, len, show), w->cfg->channels_per_client);
        else if (rc < 0)
            reply_skip(c, CGI_CMD_JOIN, "channel %s: out of memory", reply_show(name, len, show));
    }
}

static void reply_leave(struct worker *w, struct client *c, const uint8_t *v, size_t n)
{
    const uint8_t *p = v, *end = v + n, *name;
    size_t len;
    while (cgi_list_next(&p, end, &name, &len)) {
        if (!reply_channel_ok(c, CGI_CMD_LEAVE, len) || c->dead)
            continue;
        if (!channel_has(w, c, (const char *)name, len))
            continue;
        channel_leave(w, c, (const char *)name, len);
        worker_report(w, RMSG_CH_DEL, c->sid, SID_LEN, name, len);
    }
}

static void reply_bind(struct worker *w, struct client *c, const uint8_t *v, size_t n)
{
    v = cgi_trim(v, &n);
    if (n == 0 || n > RMSG_MAX_UID) {
        reply_skip(c, CGI_CMD_BIND_UID, "a uid of %zu bytes (1 to %d)", n, RMSG_MAX_UID);
        return;
    }
    if (user_bind(w, c, v, n) < 0) {
        reply_skip(c, CGI_CMD_BIND_UID, "out of memory");
        return;
    }
    worker_report(w, RMSG_BIND, c->sid, SID_LEN, v, n);
}

/* A flag command's value: 1 or 0, or -1 (logged). */
static int reply_flag(const struct client *c, int cmd, const uint8_t *v, size_t n)
{
    int f = cgi_flag(v, n);
    if (f < 0) {
        char show[4 * REPLY_SHOW_MAX + 4];
        reply_skip(c, cmd, "\"%s\" is not 1 or 0", reply_show(v, n, show));
    }
    return f;
}

static void reply_session(struct worker *w, struct client *c, const uint8_t *v, size_t n)
{
    cgi_trim(v, &n); /* the parser skipped the blanks before it; those after go too */
    if (n > (size_t)w->cfg->session_max_size) {
        reply_skip(c, CGI_CMD_SESSION, "%zu bytes of data, over SESSION_MAX_SIZE (%d)", n,
                   w->cfg->session_max_size);
        return;
    }
    if (user_set_session(w, c, v, n) < 0)
        reply_skip(c, CGI_CMD_SESSION, "out of memory");
}

static void reply_close(struct client *c, const uint8_t *v, size_t n, struct reply_plan *plan)
{
    int code;
    const uint8_t *reason;
    size_t rlen;
    const char *why;
    if (cgi_close_parse(v, n, &code, &reason, &rlen, &why) != FCGI_OK) {
        reply_skip(c, CGI_CMD_CLOSE, "%s", why);
        return;
    }
    struct ws_utf8 u = {0};
    if (ws_utf8_feed(&u, reason, rlen) != WS_UTF8_ACCEPT) {
        reply_skip(c, CGI_CMD_CLOSE, "the reason is not UTF-8");
        return;
    }
    plan->close_code = code;
    memcpy(plan->close_reason, reason, rlen);
    plan->close_reason[rlen] = '\0';
}

/* Pass one: every command but the leaves, in order; the body's fate and the
 * close are gathered in plan. */
static void reply_first(struct worker *w, struct client *c, const uint8_t *p, const uint8_t *end,
                        struct reply_plan *plan)
{
    int cmd, cut;
    const uint8_t *v;
    size_t n;
    while (request_cmd_next(&p, end, &cmd, &v, &n, &cut)) {
        if (c->dead)
            return;
        if (cut) {
            reply_skip(c, cmd, "its line is over %d bytes", CGI_MAX_CMD_LINE);
            continue;
        }
        switch (cmd) {
        case CGI_CMD_JOIN:
            reply_join(w, c, v, n);
            break;
        case CGI_CMD_BIND_UID:
            reply_bind(w, c, v, n);
            break;
        case CGI_CMD_UNBIND_UID:
            if (reply_flag(c, cmd, v, n) == 1 && user_uid(c, &n) != NULL) {
                user_unbind(w, c);
                worker_report(w, RMSG_UNBIND, c->sid, SID_LEN, NULL, 0);
            }
            break;
        case CGI_CMD_SESSION:
            reply_session(w, c, v, n);
            break;
        case CGI_CMD_PUBLISH:
            plan->publish++;
            break;
        case CGI_CMD_BROADCAST: {
            int f = reply_flag(c, cmd, v, n);
            if (f >= 0)
                plan->broadcast = f;
            break;
        }
        case CGI_CMD_EXCLUDE_SELF: {
            int f = reply_flag(c, cmd, v, n);
            if (f >= 0)
                plan->exclude_self = f;
            break;
        }
        case CGI_CMD_CLOSE:
            reply_close(c, v, n, plan);
            break;
        case CGI_CMD_LEAVE:
            break; /* after the body */
        default: {
            char show[4 * REPLY_SHOW_MAX + 4];
            log_err("client %s %s:%d: unknown reply command header %s, skipped", c->sid, c->addr,
                    c->port, reply_show(v, n, show));
            break;
        }
        }
    }
}

/* The body to the channels of every Publish line, or to everyone: through
 * the links, without c; c's copy is returned as "send it to c too". */
static int reply_publish(struct worker *w, struct client *c, const uint8_t *p, const uint8_t *end,
                         const struct reply_plan *plan, struct evbuffer *body)
{
    size_t blen = evbuffer_get_length(body);
    const unsigned char *d = blen ? evbuffer_pullup(body, -1) : NULL;
    if (blen > 0 && d == NULL) {
        log_err("client %s: out of memory for a reply's publish of %zu bytes, dropped", c->sid,
                blen);
        return 0;
    }
    if (plan->broadcast) {
        if (plan->publish)
            log_info("client %s: reply has X-Fooking-Broadcast and X-Fooking-Publish: broadcast "
                     "only",
                     c->sid);
        if (worker_publish(w, RMSG_SEND_ALL_EX, c->sid, SID_LEN, d, blen) < 0)
            log_err("client %s: X-Fooking-Broadcast of %zu bytes not sent: no link can take it "
                    "now",
                    c->sid, blen);
        return !plan->exclude_self;
    }
    int self = 0, cmd, cut;
    const uint8_t *v;
    size_t n;
    unsigned char s[1 + RMSG_MAX_CHANNEL + SID_LEN];
    while (request_cmd_next(&p, end, &cmd, &v, &n, &cut)) {
        if (cmd != CGI_CMD_PUBLISH || cut)
            continue;
        const uint8_t *q = v, *qend = v + n, *name;
        size_t len;
        while (cgi_list_next(&q, qend, &name, &len)) {
            if (!reply_channel_ok(c, CGI_CMD_PUBLISH, len))
                continue;
            s[0] = (unsigned char)len;
            memcpy(s + 1, name, len);
            memcpy(s + 1 + len, c->sid, SID_LEN);
            if (worker_publish(w, RMSG_CH_PUB_EX, s, 1 + len + SID_LEN, d, blen) < 0) {
                char show[4 * REPLY_SHOW_MAX + 4];
                log_err("client %s: X-Fooking-Publish of %zu bytes to %s not sent: no link can "
                        "take it now",
                        c->sid, blen, reply_show(name, len, show));
            }
            if (!self && !c->dead && channel_has(w, c, (const char *)name, len))
                self = 1;
        }
    }
    return self && !plan->exclude_self;
}

/* Pass three: the leaves, after the body. */
static void reply_leaves(struct worker *w, struct client *c, const uint8_t *p, const uint8_t *end)
{
    int cmd, cut;
    const uint8_t *v;
    size_t n;
    while (!c->dead && request_cmd_next(&p, end, &cmd, &v, &n, &cut))
        if (cmd == CGI_CMD_LEAVE && !cut)
            reply_leave(w, c, v, n);
}

void reply_deliver(struct worker *w, struct client *c, struct request *r)
{
    struct evbuffer *body = r->reply;
    int to_self = evbuffer_get_length(body) > 0 || r->explicit_empty;
    size_t n = r->cmds != NULL ? evbuffer_get_length(r->cmds) : 0;
    const uint8_t *p = r->cmds_lost || n == 0 ? NULL : evbuffer_pullup(r->cmds, -1);
    if (p == NULL) {
        if (r->cmds_lost || n > 0)
            log_err("client %s: out of memory for a reply's commands: none applied", c->sid);
        if (to_self)
            client_send(c, body);
        return;
    }
    const uint8_t *end = p + n;
    struct reply_plan plan = {0};
    reply_first(w, c, p, end, &plan);
    if (c->dead)
        return;
    if ((plan.publish || plan.broadcast) && to_self)
        to_self = reply_publish(w, c, p, end, &plan, body);
    if (to_self && !c->dead)
        client_send(c, body);
    reply_leaves(w, c, p, end);
    if (plan.close_code && !c->dead)
        client_close_code(c, plan.close_code, plan.close_reason, "closed by the backend");
}
