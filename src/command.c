/* command.c - the router-protocol commands a worker's links deliver, carried
 * out on its clients (see command.h). A message for many recipients is shared
 * (one copy, reference counted) rather than copied per client. */
#include "command.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "channel.h"
#include "client.h"
#include "hmap.h"
#include "link.h"
#include "log.h"
#include "rmsg.h"
#include "user.h"
#include "wctx.h"

/* Longest frame header a client protocol puts before a message: WebSocket's
 * 2 + 8 bytes for 64-bit lengths, with room for a script's own framing. */
#define COMMAND_MAX_FRAME_HEADER 14

/* A push no client's output can ever hold would close every recipient as a
 * slow consumer: one message from the router would disconnect everyone. It is
 * dropped instead, logged once for the message, not once per client. */
static int command_push_fits(struct worker *w, const struct rmsg *m, const char *source)
{
    size_t limit = w->cfg->max_output_size;

    if ((size_t)m->len + COMMAND_MAX_FRAME_HEADER <= limit)
        return 1;
    log_err("%s: %s of %u bytes is over the largest push a client can take (%zu: "
            "MAX_OUTPUT_SIZE %zu minus a %d-byte frame header), dropped; no client was closed",
            source, rmsg_type_name(m->type), m->len, limit - COMMAND_MAX_FRAME_HEADER, limit,
            COMMAND_MAX_FRAME_HEADER);
    return 0;
}

static struct shared_msg *command_shared(const struct rmsg *m, const char *source)
{
    struct shared_msg *sm = shared_msg_new(m->d, m->len);

    if (sm == NULL)
        log_err("%s: out of memory for a %s of %u bytes, dropped", source, rmsg_type_name(m->type),
                m->len);
    return sm;
}

/* Consecutive SEND_ALLs from one read of a link go out together: each client
 * gets the run as one block of frames, one buffer addition and one chain for
 * the lot instead of one per message (client_send_shared_run). A run ends at
 * any other command (so the order between commands is kept), when it is full,
 * and when the link has read all it had (command_flush). One worker per
 * process: one run. */
#define COMMAND_RUN_MAX   64
#define COMMAND_RUN_BYTES (64 * 1024)
static struct {
    struct shared_msg *m[COMMAND_RUN_MAX];
    size_t n, bytes;
} command_run_q;

void command_flush(struct worker *w)
{
    size_t n = command_run_q.n;
    if (n == 0)
        return;
    struct shared_msg *blocks[2] = {NULL, NULL};
    struct client *c, *next;
    for (c = TAILQ_FIRST(&w->clients); c; c = next) {
        next = TAILQ_NEXT(c, entry);
        if (n == 1)
            client_send_shared(c, command_run_q.m[0]);
        else
            client_send_shared_run(c, command_run_q.m, n, blocks);
    }
    shared_msg_unref(blocks[0]);
    shared_msg_unref(blocks[1]);
    for (size_t i = 0; i < n; i++)
        shared_msg_unref(command_run_q.m[i]);
    command_run_q.n = command_run_q.bytes = 0;
}

static void command_send_all(struct worker *w, const struct rmsg *m, const char *source)
{
    struct shared_msg *sm;
    if (!command_push_fits(w, m, source))
        return;
    if (command_run_q.n == COMMAND_RUN_MAX || command_run_q.bytes + m->len > COMMAND_RUN_BYTES)
        command_flush(w);
    if ((sm = command_shared(m, source)) == NULL)
        return;
    command_run_q.m[command_run_q.n++] = sm;
    command_run_q.bytes += m->len;
}

static void command_each_sid(struct worker *w, struct link *from, const struct rmsg *m,
                             const char *source)
{
    struct shared_msg *sm = NULL;
    unsigned char refused[RMSG_MAX_SIDS * RMSG_SID_LEN]; /* CH_ADD over CHANNELS_PER_CLIENT */
    size_t nrefused = 0;
    if (m->type == RMSG_SEND_MSG && m->slen > RMSG_SID_LEN) { /* many recipients: share */
        if ((sm = command_shared(m, source)) == NULL)
            return;
    }
    for (size_t off = 0; off + RMSG_SID_LEN <= m->slen; off += RMSG_SID_LEN) {
        struct client *c = hmap_get(w->by_sid, m->s + off, RMSG_SID_LEN);
        if (!c || c->dead)
            continue;
        switch (m->type) {
        case RMSG_KICK:
            client_close_after_flush(c, "kicked");
            break;
        case RMSG_SEND_MSG:
            if (sm) {
                client_send_shared(c, sm);
            } else {
                struct evbuffer *b = evbuffer_new();
                if (b == NULL || evbuffer_add(b, m->d, m->len) < 0) {
                    log_err("%s: out of memory for a SEND_MSG of %u bytes to %s, dropped", source,
                            m->len, c->sid);
                } else {
                    client_send(c, b);
                }
                if (b != NULL)
                    evbuffer_free(b);
            }
            break;
        case RMSG_CH_ADD:
            /* The router counted the member when it forwarded the join: a
             * refused one is taken back. */
            if (channel_join(w, c, (const char *)m->d, m->len) == -2 && nrefused < RMSG_MAX_SIDS)
                memcpy(refused + RMSG_SID_LEN * nrefused++, c->sid, RMSG_SID_LEN);
            break;
        case RMSG_CH_DEL:
            channel_leave(w, c, (const char *)m->d, m->len);
            break;
        }
    }
    shared_msg_unref(sm);
    if (nrefused > 0) { /* one line and one take-back for the lot */
        char name[RMSG_ESCAPE_MAX];
        log_err("%s: CH_ADD \"%s\": %zu sessions (%.16s first) already in CHANNELS_PER_CLIENT "
                "(%d) channels, refused",
                source, rmsg_escape(m->d, m->len, name, sizeof(name)), nrefused,
                (const char *)refused, w->cfg->channels_per_client);
        worker_report(w, RMSG_CH_DEL, refused, nrefused * RMSG_SID_LEN, m->d, m->len);
    }
    /* The router subscribed the delivering link when it forwarded the CH_ADD;
     * if no session here joined after all, take that back. */
    if (m->type == RMSG_CH_ADD && m->len <= RMSG_MAX_CHANNEL && from->ops->ch_unwanted
        && !hmap_get(w->channels, m->d, m->len))
        from->ops->ch_unwanted(from, (const char *)m->d, m->len);
}

/* ---- backend API v2 ---- */

/* A fresh stamp for client.mark and uid_group.mark (never 0). */
static unsigned command_next_mark(struct worker *w)
{
    if (++w->mark == 0) { /* wrapped: no client may keep an old stamp */
        struct client *c;
        struct hmap_iter it;
        void *g;
        TAILQ_FOREACH(c, &w->clients, entry)
        c->mark = 0;
        hmap_iter_init(&it);
        while (hmap_next(w->by_uid, &it, NULL, NULL, &g))
            ((struct uid_group *)g)->mark = 0;
        w->mark = 1;
    }
    return w->mark;
}

/* The live session of a SID, or NULL. */
static struct client *command_client(struct worker *w, const unsigned char *sid)
{
    struct client *c = hmap_get(w->by_sid, sid, RMSG_SID_LEN);
    return c && !c->dead ? c : NULL;
}

/* BIND, UNBIND (S = SIDs), SESSION_SET (S = one SID). */
static void command_user(struct worker *w, const struct rmsg *m, const char *source)
{
    if (m->type == RMSG_SESSION_SET && m->len > (uint32_t)w->cfg->session_max_size) {
        log_err("%s: SESSION_SET of %u bytes for %.16s is over SESSION_MAX_SIZE (%d), refused",
                source, m->len, (const char *)m->s, w->cfg->session_max_size);
        return;
    }
    for (size_t off = 0; off + RMSG_SID_LEN <= m->slen; off += RMSG_SID_LEN) {
        struct client *c = command_client(w, m->s + off);
        if (!c)
            continue;
        int rc = 0;
        if (m->type == RMSG_BIND)
            rc = user_bind(w, c, m->d, m->len);
        else if (m->type == RMSG_UNBIND)
            user_unbind(w, c);
        else
            rc = user_set_session(w, c, m->d, m->len);
        if (rc < 0)
            log_err("%s: out of memory for %s of %s", source, rmsg_type_name(m->type), c->sid);
    }
}

/* SEND_UID, KICK_UID: every local session of the uids in S, each once. The
 * sessions are gathered first and served after the walk: sending can close
 * a client (a script's onWrite), and closing frees its place in the group,
 * and the group with its last member. A uid listed twice is walked once. */
static void command_uids(struct worker *w, const struct rmsg *m, const char *source)
{
    struct shared_msg *sm = NULL;
    struct client **to = NULL;
    size_t n = 0, cap = 0, off = 0, len;
    const unsigned char *uid;
    if (m->type == RMSG_SEND_UID
        && (!command_push_fits(w, m, source) || (sm = command_shared(m, source)) == NULL))
        return;
    unsigned mark = command_next_mark(w);
    while (rmsg_uids_next(m->s, m->slen, &off, &uid, &len) == 1) {
        struct uid_group *g = user_group(w, uid, len);
        struct client_user *u;
        if (!g || g->mark == mark)
            continue;
        g->mark = mark;
        if (n + g->n > cap) {
            size_t ncap = cap ? cap : 16;
            while (ncap < n + g->n)
                ncap *= 2;
            struct client **grown = realloc(to, ncap * sizeof(*grown));
            if (!grown) {
                log_err("%s: out of memory for %s", source, rmsg_type_name(m->type));
                break;
            }
            to = grown;
            cap = ncap;
        }
        LIST_FOREACH(u, &g->members, in_group)
        {
            if (u->c->mark != mark && !u->c->dead) {
                u->c->mark = mark;
                to[n++] = u->c;
            }
        }
    }
    /* A closed client stays allocated until the loop's next turn: the
     * pointers stay good, and c->dead says who is gone meanwhile. */
    for (size_t i = 0; i < n; i++) {
        if (to[i]->dead)
            continue;
        if (sm)
            client_send_shared(to[i], sm);
        else
            client_close_after_flush(to[i], "kicked");
    }
    free(to);
    shared_msg_unref(sm);
}

/* SEND_ALL_EX, CH_PUB_EX: a push to everyone or a channel, but the SIDs listed. */
static void command_excluding(struct worker *w, const struct rmsg *m, const char *source)
{
    struct rmsg_ch_ex ex = {NULL, 0, m->s, m->slen / RMSG_SID_LEN};
    struct shared_msg *sm;
    if (m->type == RMSG_CH_PUB_EX && rmsg_ch_ex_parse(m->s, m->slen, &ex) != RMSG_OK) {
        log_err("%s: malformed CH_PUB_EX, ignored", source); /* the codec checked it already */
        return;
    }
    if (!command_push_fits(w, m, source) || (sm = command_shared(m, source)) == NULL)
        return;
    unsigned mark = command_next_mark(w);
    for (size_t i = 0; i < ex.nsids; i++) {
        struct client *c = command_client(w, ex.sids + i * RMSG_SID_LEN);
        if (c)
            c->mark = mark;
    }
    if (m->type == RMSG_CH_PUB_EX) {
        channel_publish(w, (const char *)ex.channel, ex.chlen, sm, mark);
    } else {
        struct client *c, *next;
        for (c = TAILQ_FIRST(&w->clients); c; c = next) {
            next = TAILQ_NEXT(c, entry);
            if (c->mark != mark)
                client_send_shared(c, sm);
        }
    }
    shared_msg_unref(sm);
}

/* GW_QUERY: the session data of the SIDs asked for that live here, one
 * record each (data empty when none), answered on the asking link. */
static void command_gw_query(struct worker *w, struct link *from, const struct rmsg *m,
                             const char *source)
{
    if (!from->ops->reply || m->len != RMSG_QID_LEN)
        return;
    size_t total = RMSG_QID_LEN, n = m->slen / RMSG_SID_LEN, dl;
    for (size_t i = 0; i < n; i++) {
        struct client *c = command_client(w, m->s + i * RMSG_SID_LEN);
        if (c) {
            user_session(c, &dl);
            total += RMSG_RECORD_HEAD + dl;
        }
    }
    unsigned char *d = malloc(total), *p = d;
    if (!d) {
        log_err("%s: out of memory for a GW_ANSWER of %zu bytes", source, total);
        return; /* the router's deadline leaves these sessions out */
    }
    memcpy(p, m->d, RMSG_QID_LEN);
    p += RMSG_QID_LEN;
    for (size_t i = 0; i < n; i++) {
        struct client *c = command_client(w, m->s + i * RMSG_SID_LEN);
        if (!c)
            continue;
        const unsigned char *data = user_session(c, &dl);
        memcpy(p, c->sid, RMSG_SID_LEN);
        rmsg_put_u32(p + RMSG_SID_LEN, (uint32_t)dl);
        p += RMSG_RECORD_HEAD;
        if (dl)
            memcpy(p, data, dl);
        p += dl;
    }
    from->ops->reply(from, RMSG_GW_ANSWER, NULL, 0, d, total);
    free(d);
}

void command_run(struct worker *w, struct link *from, const struct rmsg *m)
{
    const char *source = from->name;

    log_debug("%s: %s (%u bytes of SIDs/channel, %u bytes)", source, rmsg_type_name(m->type),
              m->slen, m->len);
    if (m->type != RMSG_SEND_ALL)
        command_flush(w); /* what came before goes first */
    switch (m->type) {
    case RMSG_KICK:
    case RMSG_SEND_MSG:
    case RMSG_CH_ADD:
    case RMSG_CH_DEL:
        if ((m->type == RMSG_CH_ADD || m->type == RMSG_CH_DEL)
            && (m->len == 0 || m->len > RMSG_MAX_CHANNEL)) {
            log_err("%s: %s with a bad channel name length %u, ignored", source,
                    rmsg_type_name(m->type), m->len);
            return;
        }
        if (m->type == RMSG_SEND_MSG && !command_push_fits(w, m, source))
            return;
        command_each_sid(w, from, m, source);
        break;
    case RMSG_SEND_ALL:
        command_send_all(w, m, source);
        break;
    case RMSG_CH_PUB: {
        struct shared_msg *sm;
        if (!command_push_fits(w, m, source) || (sm = command_shared(m, source)) == NULL)
            return;
        channel_publish(w, (const char *)m->s, m->slen, sm, 0);
        shared_msg_unref(sm);
        break;
    }
    case RMSG_BIND:
    case RMSG_UNBIND:
    case RMSG_SESSION_SET:
        command_user(w, m, source);
        break;
    case RMSG_SEND_UID:
    case RMSG_KICK_UID:
        command_uids(w, m, source);
        break;
    case RMSG_SEND_ALL_EX:
    case RMSG_CH_PUB_EX:
        command_excluding(w, m, source);
        break;
    case RMSG_GW_QUERY:
        command_gw_query(w, from, m, source);
        break;
    default:
        log_info("%s: unexpected %s message, ignored", source, rmsg_type_name(m->type));
        break;
    }
}
