/* natsq.c - the NATS bus's queries: answers and their sum (see natsq.h). */
#include "natsq.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmap.h"
#include "rmsg.h"

struct natsq_row {
    unsigned server, worker;
    uint32_t clients, channels;
};

struct natsq_merge {
    int type;
    size_t max;
    int over;
    uint64_t count;        /* UID_COUNT, CH_COUNT; INFO: clients */
    unsigned char *online; /* IS_ONLINE: one byte per SID */
    size_t nsids;
    struct evbuffer *joined;       /* UID_SIDS, CH_MEMBERS, CH_SESSIONS; SID_UID, SESSION_GET */
    int found;                     /* SID_UID, SESSION_GET: a worker had it */
    struct hmap *names;            /* CHANNELS: name -> members; INFO: channel names */
    struct hmap *uids;             /* INFO */
    uint64_t extra_ch, extra_uids; /* INFO: counts of workers that sent no names */
    struct natsq_row *rows;        /* INFO */
    size_t nrows, rowcap;
};

void natsq_answer_s(unsigned char out[NATSQ_ANSWER_S], unsigned server, unsigned worker, int status)
{
    out[0] = (unsigned char)(server >> 8);
    out[1] = (unsigned char)server;
    out[2] = (unsigned char)worker;
    out[3] = (unsigned char)status;
}

int natsq_answer_s_parse(const unsigned char *s, size_t slen, unsigned *server, unsigned *worker,
                         int *status)
{
    if (slen != NATSQ_ANSWER_S || s[3] > NATSQ_OVER)
        return -1;
    *server = (unsigned)s[0] << 8 | s[1];
    *worker = s[2];
    *status = s[3];
    return 0;
}

struct natsq_merge *natsq_merge_new(int type, size_t max, size_t nsids)
{
    struct natsq_merge *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->type = type;
    m->max = max;
    m->nsids = nsids;
    if ((m->joined = evbuffer_new()) == NULL)
        goto fail;
    if (type == RMSG_IS_ONLINE && (m->online = calloc(nsids ? nsids : 1, 1)) == NULL)
        goto fail;
    if ((type == RMSG_CHANNELS || type == RMSG_INFO) && (m->names = hmap_new(64)) == NULL)
        goto fail;
    if (type == RMSG_INFO && (m->uids = hmap_new(64)) == NULL)
        goto fail;
    return m;
fail:
    natsq_merge_free(m);
    return NULL;
}

void natsq_merge_free(struct natsq_merge *m)
{
    if (m == NULL)
        return;
    if (m->joined)
        evbuffer_free(m->joined);
    free(m->online);
    if (m->names)
        hmap_free(m->names, NULL);
    if (m->uids)
        hmap_free(m->uids, NULL);
    free(m->rows);
    free(m);
}

/* Walks u8 len | bytes names: 1 with the next, 0 at the end, -1 cut short. */
static int natsq_name_next(const unsigned char *d, size_t len, size_t *off,
                           const unsigned char **name, size_t *nlen)
{
    if (*off == len)
        return 0;
    size_t n = d[*off];
    if (n == 0 || *off + 1 + n > len)
        return -1;
    *name = d + *off + 1;
    *nlen = n;
    *off += 1 + n;
    return 1;
}

static int natsq_add_names(struct hmap *h, const unsigned char *d, size_t len, size_t *off,
                           uint32_t count)
{
    const unsigned char *name;
    size_t nlen;
    for (uint32_t i = 0; i < count; i++) {
        if (natsq_name_next(d, len, off, &name, &nlen) != 1)
            return -1;
        if (!hmap_has(h, name, nlen) && hmap_put(h, name, nlen, (void *)1, NULL) < 0)
            return -1;
    }
    return 0;
}

static int natsq_add_info(struct natsq_merge *m, unsigned server, unsigned worker,
                          const unsigned char *d, size_t len)
{
    if (len < NATSQ_INFO_HEAD)
        return -1;
    uint32_t clients = rmsg_get_u32(d), nch = rmsg_get_u32(d + 4), nu = rmsg_get_u32(d + 8);
    size_t off = NATSQ_INFO_HEAD;
    if (d[12]) {
        if (natsq_add_names(m->names, d, len, &off, nch) < 0
            || natsq_add_names(m->uids, d, len, &off, nu) < 0 || off != len)
            return -1;
    } else {
        m->extra_ch += nch;
        m->extra_uids += nu;
    }
    if (m->nrows == m->rowcap) {
        size_t cap = m->rowcap ? 2 * m->rowcap : 16;
        struct natsq_row *r = realloc(m->rows, cap * sizeof(*r));
        if (r == NULL)
            return -1;
        m->rows = r;
        m->rowcap = cap;
    }
    m->rows[m->nrows++] = (struct natsq_row){server, worker, clients, nch};
    m->count += clients;
    return 0;
}

static int natsq_add_channels(struct natsq_merge *m, const unsigned char *d, size_t len)
{
    size_t off = 0;
    const unsigned char *name;
    size_t nlen;
    int rc;
    while ((rc = natsq_name_next(d, len, &off, &name, &nlen)) == 1) {
        if (off + 4 > len)
            return -1;
        uintptr_t n = rmsg_get_u32(d + off), had = (uintptr_t)hmap_get(m->names, name, nlen);
        off += 4;
        if (n == 0)
            continue;
        if (hmap_put(m->names, name, nlen, (void *)(had + n), NULL) < 0)
            return -1;
    }
    return rc;
}

int natsq_merge_add(struct natsq_merge *m, unsigned server, unsigned worker, int status,
                    const unsigned char *d, size_t len)
{
    if (status == NATSQ_OVER) {
        m->over = 1;
        return 0;
    }
    switch (m->type) {
    case RMSG_IS_ONLINE:
        if (len != m->nsids)
            return -1;
        for (size_t i = 0; i < len; i++)
            m->online[i] |= d[i] != 0;
        return 0;
    case RMSG_UID_COUNT:
    case RMSG_CH_COUNT:
        if (len != 4)
            return -1;
        m->count += rmsg_get_u32(d);
        return 0;
    case RMSG_UID_SIDS:
    case RMSG_CH_MEMBERS:
    case RMSG_CH_SESSIONS:
        if (m->type == RMSG_UID_SIDS && len % RMSG_SID_LEN != 0)
            return -1;
        if (evbuffer_get_length(m->joined) + len > m->max) {
            m->over = 1;
            return 0;
        }
        return evbuffer_add(m->joined, d, len);
    case RMSG_SID_UID:
        if (len > RMSG_MAX_UID)
            return -1;
        if (len == 0 || m->found)
            return 0;
        m->found = 1;
        return evbuffer_add(m->joined, d, len);
    case RMSG_SESSION_GET:
        if (len < 1 || len > 1 + RMSG_MAX_SESSION || (d[0] == 0 && len != 1))
            return -1;
        if (d[0] == 0 || m->found)
            return 0;
        m->found = 1;
        return evbuffer_add(m->joined, d + 1, len - 1);
    case RMSG_CHANNELS:
        return natsq_add_channels(m, d, len);
    case RMSG_INFO:
        return natsq_add_info(m, server, worker, d, len);
    default:
        return -1;
    }
}

static int natsq_row_cmp(const void *a, const void *b)
{
    const struct natsq_row *x = a, *y = b;
    if (x->server != y->server)
        return x->server < y->server ? -1 : 1;
    return x->worker < y->worker ? -1 : x->worker > y->worker;
}

int natsq_merge_result(struct natsq_merge *m, struct evbuffer *out)
{
    unsigned char b[RMSG_CHANNEL_REC_MAX];
    struct hmap_iter it;
    const void *k;
    size_t klen;
    void *v;
    int rc = 0;

    if (m->over)
        return 1;
    switch (m->type) {
    case RMSG_IS_ONLINE:
        rc = evbuffer_add(out, m->online, m->nsids);
        break;
    case RMSG_UID_COUNT:
    case RMSG_CH_COUNT:
        rmsg_put_u32(b, m->count > UINT32_MAX ? UINT32_MAX : (uint32_t)m->count);
        rc = evbuffer_add(out, b, 4);
        break;
    case RMSG_SESSION_GET:
        b[0] = (unsigned char)m->found;
        rc = evbuffer_add(out, b, 1);
        /* then the data */
        __attribute__((fallthrough));
    case RMSG_UID_SIDS:
    case RMSG_CH_MEMBERS:
    case RMSG_CH_SESSIONS:
    case RMSG_SID_UID:
        if (rc == 0)
            rc = evbuffer_add_buffer(out, m->joined);
        break;
    case RMSG_CHANNELS:
        hmap_iter_init(&it);
        while (rc == 0 && hmap_next(m->names, &it, &k, &klen, &v)) {
            uintptr_t n = (uintptr_t)v;
            size_t r =
                rmsg_encode_channel_count(b, k, klen, n > UINT32_MAX ? UINT32_MAX : (uint32_t)n);
            if (evbuffer_get_length(out) + r > m->max)
                return 1;
            rc = evbuffer_add(out, b, r);
        }
        break;
    case RMSG_INFO:
        if (m->nrows) /* rows is NULL while no worker answered */
            qsort(m->rows, m->nrows, sizeof(*m->rows), natsq_row_cmp);
        rc = evbuffer_add_printf(out, "clients: %llu\r\nchannels: %llu\r\nuids: %llu\r\n",
                                 (unsigned long long)m->count,
                                 (unsigned long long)(hmap_count(m->names) + m->extra_ch),
                                 (unsigned long long)(hmap_count(m->uids) + m->extra_uids))
             < 0;
        for (size_t i = 0; rc == 0 && i < m->nrows; i++)
            rc = evbuffer_add_printf(out, "gateway: %u\t%u\t%u\t%u\r\n", m->rows[i].server,
                                     m->rows[i].worker, m->rows[i].clients, m->rows[i].channels)
                 < 0;
        break;
    default:
        return -1;
    }
    if (rc != 0)
        return -1;
    return evbuffer_get_length(out) > m->max ? 1 : 0;
}
