/* user.c - uids and session data of a worker's sessions (see user.h). */
#include "user.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "client.h"
#include "fcgi.h"
#include "hmap.h"
#include "log.h"
#include "rmsg.h"
#include "wctx.h"

static struct client_user *user_get(struct client *c)
{
    if (!c->user) {
        struct client_user *u = calloc(1, sizeof(*u));
        if (!u)
            return NULL;
        u->c = c;
        u->base = fcgi_params_ref(c->params);
        c->user = u;
    }
    return c->user;
}

/* c->params := the base params, then UID and SESSION when set. Requests in
 * flight keep the block they were given (the blocks are refcounted). */
static int user_params(struct worker *w, struct client *c)
{
    struct client_user *u = c->user;
    const char *prefix = w->cfg->fastcgi_prefix;
    char name[96];
    struct fcgi_params *p;
    if (!u->group && !u->session) {
        p = fcgi_params_ref(u->base);
    } else {
        size_t extra = 0;
        if (u->group)
            extra += fcgi_nv_size(strlen(prefix) + 3, u->group->len);
        if (u->session)
            extra += fcgi_nv_size(strlen(prefix) + 7, u->session_len);
        p = fcgi_params_new(u->base, extra);
        if (u->group) {
            snprintf(name, sizeof(name), "%sUID", prefix);
            fcgi_params_add(&p, name, (const char *)u->group->uid, u->group->len);
        }
        if (u->session) {
            snprintf(name, sizeof(name), "%sSESSION", prefix);
            fcgi_params_add(&p, name, (const char *)u->session, u->session_len);
        }
    }
    fcgi_params_unref(c->params);
    c->params = p;
    return 0;
}

/* Frees the record once it holds nothing (c's params are its base again). */
static void user_maybe_drop(struct client *c)
{
    struct client_user *u = c->user;
    if (!u || u->group || u->session)
        return;
    fcgi_params_unref(u->base);
    free(u);
    c->user = NULL;
}

static void user_leave_group(struct worker *w, struct client_user *u)
{
    struct uid_group *g = u->group;
    if (!g)
        return;
    LIST_REMOVE(u, in_group);
    u->group = NULL;
    if (--g->n == 0) {
        hmap_del(w->by_uid, g->uid, g->len, NULL);
        free(g);
    }
}

int user_bind(struct worker *w, struct client *c, const void *uid, size_t len)
{
    struct client_user *u = user_get(c);
    if (!u)
        return -1;
    if (u->group && u->group->len == len && memcmp(u->group->uid, uid, len) == 0)
        return 0; /* already */
    struct uid_group *g = hmap_get(w->by_uid, uid, len);
    if (!g) {
        if (!(g = malloc(sizeof(*g) + len))) {
            user_maybe_drop(c);
            return -1;
        }
        g->n = 0;
        g->mark = 0;
        LIST_INIT(&g->members);
        g->len = len;
        memcpy(g->uid, uid, len);
        if (hmap_put(w->by_uid, g->uid, len, g, NULL) < 0) {
            free(g);
            user_maybe_drop(c);
            return -1;
        }
    }
    /* The group left may be freed: the links are told the old uid from a copy. */
    unsigned char was[RMSG_MAX_UID];
    size_t waslen = u->group ? u->group->len : 0;
    if (waslen)
        memcpy(was, u->group->uid, waslen);
    user_leave_group(w, u);
    u->group = g;
    g->n++;
    LIST_INSERT_HEAD(&g->members, u, in_group);
    user_params(w, c);
    worker_uid_changed(w, c, waslen ? was : NULL, waslen);
    return 0;
}

void user_unbind(struct worker *w, struct client *c)
{
    struct client_user *u = c->user;
    if (!u || !u->group)
        return;
    unsigned char was[RMSG_MAX_UID];
    size_t waslen = u->group->len;
    memcpy(was, u->group->uid, waslen);
    user_leave_group(w, u);
    user_params(w, c);
    user_maybe_drop(c);
    worker_uid_changed(w, c, was, waslen);
}

int user_set_session(struct worker *w, struct client *c, const void *data, size_t len)
{
    struct client_user *u = len > 0 ? user_get(c) : c->user;
    if (!u)
        return len > 0 ? -1 : 0;
    unsigned char *copy = NULL;
    if (len > 0) {
        if (!(copy = malloc(len))) {
            user_maybe_drop(c);
            return -1;
        }
        memcpy(copy, data, len);
    }
    free(u->session);
    u->session = copy;
    u->session_len = len;
    user_params(w, c);
    user_maybe_drop(c);
    worker_session_changed(w, c);
    return 0;
}

const unsigned char *user_uid(const struct client *c, size_t *len)
{
    if (!c->user || !c->user->group) {
        *len = 0;
        return NULL;
    }
    *len = c->user->group->len;
    return c->user->group->uid;
}

const unsigned char *user_session(const struct client *c, size_t *len)
{
    if (!c->user || !c->user->session) {
        *len = 0;
        return NULL;
    }
    *len = c->user->session_len;
    return c->user->session;
}

struct uid_group *user_group(struct worker *w, const void *uid, size_t len)
{
    return hmap_get(w->by_uid, uid, len);
}

void user_free(struct worker *w, struct client *c)
{
    struct client_user *u = c->user;
    if (!u)
        return;
    user_leave_group(w, u);
    free(u->session);
    fcgi_params_unref(u->base);
    free(u);
    c->user = NULL;
}

void user_free_all(struct worker *w)
{
    hmap_free(w->by_uid, free); /* the groups; the records go with their clients */
    w->by_uid = NULL;
}
