/* router_api.c - HTTP API requests to router messages, answers to JSON
 * (router_api.h). Every field is checked here with a message that names it;
 * the shapes that rmsg_validate checks (a channel's length, a uid list) are
 * checked again by the router when the message runs, so the HTTP API can
 * never send what the binary protocol would refuse. */
#include "router_api.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

static const struct {
    const char *path;
    int get;
} router_api_eps[ROUTER_API_EP_MAX] = {
    [ROUTER_API_PUBLISH] = {"/api/publish", 0}, [ROUTER_API_BROADCAST] = {"/api/broadcast", 0},
    [ROUTER_API_SEND] = {"/api/send", 0},       [ROUTER_API_KICK] = {"/api/kick", 0},
    [ROUTER_API_JOIN] = {"/api/join", 0},       [ROUTER_API_LEAVE] = {"/api/leave", 0},
    [ROUTER_API_BIND] = {"/api/bind", 0},       [ROUTER_API_UNBIND] = {"/api/unbind", 0},
    [ROUTER_API_SESSION] = {"/api/session", 0}, [ROUTER_API_INFO] = {"/api/info", 1},
    [ROUTER_API_ONLINE] = {"/api/online", 1},   [ROUTER_API_CHANNELS] = {"/api/channels", 1},
    [ROUTER_API_CHANNEL] = {"/api/channel", 1},
};

int router_api_find(const char *path)
{
    for (int i = 0; i < ROUTER_API_EP_MAX; i++)
        if (strcmp(path, router_api_eps[i].path) == 0)
            return i;
    return -1;
}

int router_api_is_get(int ep)
{
    return ep >= 0 && ep < ROUTER_API_EP_MAX && router_api_eps[ep].get;
}

static int api_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

long router_api_b64_decode(const char *in, size_t n, unsigned char *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;

    if (n % 4 != 0)
        return -1;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            const char *p;
            if (in[i + k] == '=' && i + 4 == n && k >= 2) {
                pad++;
                v <<= 6;
                continue;
            }
            if (pad > 0 || in[i + k] == '\0' || (p = strchr(alphabet, in[i + k])) == NULL)
                return -1;
            v = v << 6 | (uint32_t)(p - alphabet);
        }
        /* The bits a padded quantum leaves over must be zero (RFC 4648 §3.5). */
        if ((pad == 1 && (v & 0xff) != 0) || (pad == 2 && (v & 0xffff) != 0))
            return -1;
        out[o++] = (unsigned char)(v >> 16);
        if (pad < 2)
            out[o++] = (unsigned char)(v >> 8);
        if (pad < 1)
            out[o++] = (unsigned char)v;
    }
    return (long)o;
}

/* ---- request fields ---- */

/* "data" (a string, its UTF-8 bytes) or "b64data" (base64): exactly one.
 * Allocates *out (freed by the caller). */
static int api_data(json_t *args, const char *key, unsigned char **out, size_t *len, char *err,
                    size_t errlen)
{
    char b64key[32];
    json_t *d = json_object_get(args, key), *b;

    snprintf(b64key, sizeof(b64key), "b64%s", key);
    b = json_object_get(args, b64key);
    if (d != NULL && b != NULL)
        return api_fail(err, errlen, "%s, %s: give one, not both", key, b64key);
    if (d == NULL && b == NULL)
        return api_fail(err, errlen, "%s: missing (a string, or %s in base64)", key, b64key);
    if (!json_is_string(d != NULL ? d : b))
        return api_fail(err, errlen, "%s: must be a string", d != NULL ? key : b64key);
    if (d != NULL) {
        *len = json_string_length(d);
        if ((*out = malloc(*len + 1)) == NULL)
            return api_fail(err, errlen, "out of memory");
        memcpy(*out, json_string_value(d), *len);
        return 0;
    }
    size_t n = json_string_length(b);
    long got;
    if ((*out = malloc(n / 4 * 3 + 1)) == NULL)
        return api_fail(err, errlen, "out of memory");
    if ((got = router_api_b64_decode(json_string_value(b), n, *out)) < 0) {
        free(*out);
        *out = NULL;
        return api_fail(err, errlen, "%s: not valid base64 (RFC 4648, padded, no whitespace)",
                        b64key);
    }
    *len = (size_t)got;
    return 0;
}

/* A string field of 1..max bytes: *p into args (alive as long as it). */
static int api_string(json_t *args, const char *key, size_t max, const char **p, size_t *len,
                      char *err, size_t errlen)
{
    json_t *v = json_object_get(args, key);

    if (v == NULL)
        return api_fail(err, errlen, "%s: missing", key);
    if (!json_is_string(v))
        return api_fail(err, errlen, "%s: must be a string", key);
    *p = json_string_value(v);
    *len = json_string_length(v);
    if (*len == 0 || *len > max)
        return api_fail(err, errlen, "%s: must be 1 to %zu bytes, got %zu", key, max, *len);
    return 0;
}

/* An array of strings (absent: *arr NULL, 0). At most max entries. */
static int api_array(json_t *args, const char *key, size_t max, json_t **arr, char *err,
                     size_t errlen)
{
    json_t *v = json_object_get(args, key);
    size_t i;
    json_t *e;

    *arr = NULL;
    if (v == NULL)
        return 0;
    if (!json_is_array(v))
        return api_fail(err, errlen, "%s: must be an array of strings", key);
    if (json_array_size(v) > max)
        return api_fail(err, errlen, "%s: at most %zu entries, got %zu", key, max,
                        json_array_size(v));
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e))
            return api_fail(err, errlen, "%s[%zu]: must be a string", key, i);
    }
    *arr = v;
    return 0;
}

/* One SID (a JSON string of 16 hex characters) into out, in lowercase as
 * the gateways make them. */
static int api_sid(json_t *v, unsigned char out[RMSG_SID_LEN])
{
    const char *s = json_string_value(v);

    if (s == NULL || json_string_length(v) != RMSG_SID_LEN)
        return -1;
    for (size_t k = 0; k < RMSG_SID_LEN; k++) {
        char ch = s[k];
        if (ch >= 'A' && ch <= 'F')
            ch = (char)(ch - 'A' + 'a');
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            return -1;
        out[k] = (unsigned char)ch;
    }
    return 0;
}

/* A SID array into out (16 bytes each). */
static int api_sids(json_t *args, const char *key, size_t max, unsigned char *out, size_t *n,
                    char *err, size_t errlen)
{
    json_t *arr, *e;
    size_t i;

    *n = 0;
    if (api_array(args, key, max, &arr, err, errlen) < 0)
        return -1;
    json_array_foreach(arr, i, e)
    {
        if (api_sid(e, out + i * RMSG_SID_LEN) < 0)
            return api_fail(err, errlen, "%s[%zu]: a SID is 16 hex characters", key, i);
    }
    *n = arr != NULL ? json_array_size(arr) : 0;
    return 0;
}

/* A uid list (u8 len | uid, repeated) into out, at most UINT16_MAX bytes. */
static int api_uids(json_t *args, const char *key, unsigned char *out, size_t *len, char *err,
                    size_t errlen)
{
    json_t *arr, *e;
    size_t i, off = 0;

    *len = 0;
    if (api_array(args, key, UINT16_MAX / 2, &arr, err, errlen) < 0)
        return -1;
    json_array_foreach(arr, i, e)
    {
        size_t n = json_string_length(e);
        if (n == 0 || n > RMSG_MAX_UID)
            return api_fail(err, errlen, "%s[%zu]: a uid is 1 to %d bytes, got %zu", key, i,
                            RMSG_MAX_UID, n);
        if (off + 1 + n > UINT16_MAX)
            return api_fail(err, errlen, "%s: more than %d bytes of uids in one request", key,
                            UINT16_MAX);
        out[off++] = (unsigned char)n;
        memcpy(out + off, json_string_value(e), n);
        off += n;
    }
    *len = off;
    return 0;
}

/* Appends a message of type with S = s[0..slen), D = d[0..dlen) (copied). */
static int api_add(struct router_api_req *r, uint16_t type, const void *s, size_t slen,
                   const void *d, size_t dlen, char *err, size_t errlen)
{
    struct router_api_msg *v = realloc(r->msgs, (r->n + 1) * sizeof(*v));
    unsigned char *buf;

    if (v == NULL)
        return api_fail(err, errlen, "out of memory");
    r->msgs = v;
    if ((buf = malloc(slen + dlen + 1)) == NULL)
        return api_fail(err, errlen, "out of memory");
    if (slen > 0)
        memcpy(buf, s, slen);
    if (dlen > 0)
        memcpy(buf + slen, d, dlen);
    v[r->n].buf = buf;
    v[r->n].m = (struct rmsg){
        .type = type, .slen = (uint16_t)slen, .len = (uint32_t)dlen, .s = buf, .d = buf + slen};
    r->n++;
    if (rmsg_is_query(type) || type == RMSG_INFO)
        r->nanswers++;
    return 0;
}

/* The first of a GET parameter's values (args: name -> array of strings). */
static json_t *api_param(json_t *args, const char *key)
{
    json_t *v = json_object_get(args, key);

    return json_is_array(v) ? json_array_get(v, 0) : v;
}

static int api_build(int ep, json_t *args, struct router_api_req *r, unsigned char *s, size_t uoff,
                     char *err, size_t errlen)
{
    unsigned char *data = NULL;
    size_t n = 0, dlen = 0, nu = 0, slen;
    const char *str;
    int rc = -1;

    switch (ep) {
    case ROUTER_API_PUBLISH:
    case ROUTER_API_BROADCAST: {
        size_t chlen = 0;
        if (ep == ROUTER_API_PUBLISH
            && api_string(args, "channel", RMSG_MAX_CHANNEL, &str, &chlen, err, errlen) < 0)
            break;
        /* The SIDs to exclude follow the channel in S, which is a u16. */
        size_t room = (UINT16_MAX - (ep == ROUTER_API_PUBLISH ? 1 + chlen : 0)) / RMSG_SID_LEN;
        unsigned char *sids = s + (ep == ROUTER_API_PUBLISH ? 1 + chlen : 0);
        if (api_sids(args, "exclude", room, sids, &n, err, errlen) < 0
            || api_data(args, "data", &data, &dlen, err, errlen) < 0)
            break;
        if (ep == ROUTER_API_BROADCAST)
            rc = api_add(r, n > 0 ? RMSG_SEND_ALL_EX : RMSG_SEND_ALL, s, n * RMSG_SID_LEN, data,
                         dlen, err, errlen);
        else if (n == 0)
            rc = api_add(r, RMSG_CH_PUB, str, chlen, data, dlen, err, errlen);
        else {
            s[0] = (unsigned char)chlen;
            memcpy(s + 1, str, chlen);
            rc = api_add(r, RMSG_CH_PUB_EX, s, 1 + chlen + n * RMSG_SID_LEN, data, dlen, err,
                         errlen);
        }
        break;
    }
    case ROUTER_API_SEND:
    case ROUTER_API_KICK:
        if (api_sids(args, "sids", RMSG_MAX_SIDS, s, &n, err, errlen) < 0
            || api_uids(args, "uids", s + uoff, &nu, err, errlen) < 0)
            break;
        if (n == 0 && nu == 0) {
            api_fail(err, errlen, "sids, uids: give at least one SID or uid");
            break;
        }
        if (ep == ROUTER_API_SEND && api_data(args, "data", &data, &dlen, err, errlen) < 0)
            break;
        rc = 0;
        if (n > 0)
            rc = api_add(r, ep == ROUTER_API_SEND ? RMSG_SEND_MSG : RMSG_KICK, s, n * RMSG_SID_LEN,
                         data, dlen, err, errlen);
        if (rc == 0 && nu > 0)
            rc = api_add(r, ep == ROUTER_API_SEND ? RMSG_SEND_UID : RMSG_KICK_UID, s + uoff, nu,
                         data, dlen, err, errlen);
        break;
    case ROUTER_API_JOIN:
    case ROUTER_API_LEAVE:
    case ROUTER_API_BIND:
    case ROUTER_API_UNBIND: {
        const char *key = ep == ROUTER_API_BIND ? "uid" : "channel";
        size_t max = ep == ROUTER_API_BIND ? RMSG_MAX_UID : RMSG_MAX_CHANNEL;
        static const uint16_t types[] = {RMSG_CH_ADD, RMSG_CH_DEL, RMSG_BIND, RMSG_UNBIND};
        if (api_sids(args, "sids", RMSG_MAX_SIDS, s, &n, err, errlen) < 0)
            break;
        if (n == 0) {
            api_fail(err, errlen, "sids: missing (an array of at least one SID)");
            break;
        }
        if (ep != ROUTER_API_UNBIND && api_string(args, key, max, &str, &slen, err, errlen) < 0)
            break;
        rc = api_add(r, types[ep - ROUTER_API_JOIN], s, n * RMSG_SID_LEN, str,
                     ep != ROUTER_API_UNBIND ? slen : 0, err, errlen);
        break;
    }
    case ROUTER_API_SESSION: {
        json_t *sid = json_object_get(args, "sid");
        if (sid == NULL) {
            api_fail(err, errlen, "sid: missing");
        } else if (api_sid(sid, s) < 0) {
            api_fail(err, errlen, "sid: a SID is 16 hex characters");
        } else if (api_data(args, "data", &data, &dlen, err, errlen) == 0) {
            if (dlen > RMSG_MAX_SESSION)
                api_fail(err, errlen, "data: at most %d bytes of session data, got %zu",
                         RMSG_MAX_SESSION, dlen);
            else
                rc = api_add(r, RMSG_SESSION_SET, s, RMSG_SID_LEN, data, dlen, err, errlen);
        }
        break;
    }
    case ROUTER_API_INFO:
        rc = api_add(r, RMSG_INFO, NULL, 0, NULL, 0, err, errlen);
        break;
    case ROUTER_API_CHANNELS:
        rc = api_add(r, RMSG_CHANNELS, NULL, 0, NULL, 0, err, errlen);
        break;
    case ROUTER_API_ONLINE: {
        json_t *uids, *e;
        size_t i;
        if (api_sids(args, "sid", RMSG_MAX_SIDS, s, &n, err, errlen) < 0
            || api_array(args, "uid", ROUTER_API_MAX_UIDS, &uids, err, errlen) < 0)
            break;
        if (n == 0 && uids == NULL) {
            api_fail(err, errlen, "sid, uid: give at least one sid= or uid=");
            break;
        }
        rc = n > 0 ? api_add(r, RMSG_IS_ONLINE, s, n * RMSG_SID_LEN, NULL, 0, err, errlen) : 0;
        json_array_foreach(uids, i, e)
        {
            size_t ulen = json_string_length(e);
            if (rc < 0)
                break;
            if (ulen == 0 || ulen > RMSG_MAX_UID)
                rc = api_fail(err, errlen, "uid[%zu]: a uid is 1 to %d bytes, got %zu", i,
                              RMSG_MAX_UID, ulen);
            else
                rc = api_add(r, RMSG_UID_SIDS, json_string_value(e), ulen, NULL, 0, err, errlen);
        }
        break;
    }
    case ROUTER_API_CHANNEL: {
        json_t *name = api_param(args, "name"), *sess = api_param(args, "sessions");
        json_t *wrap = name != NULL ? json_pack("{sO}", "name", name) : json_object();
        if (wrap == NULL
            || api_string(wrap, "name", RMSG_MAX_CHANNEL, &str, &slen, err, errlen) < 0) {
            json_decref(wrap);
            break;
        }
        if (sess != NULL
            && !(json_is_string(sess)
                 && (strcmp(json_string_value(sess), "1") == 0
                     || strcmp(json_string_value(sess), "0") == 0))) {
            api_fail(err, errlen, "sessions: must be 1 or 0");
            json_decref(wrap);
            break;
        }
        r->sessions = sess != NULL && strcmp(json_string_value(sess), "1") == 0;
        rc = api_add(r, RMSG_CH_MEMBERS, str, slen, NULL, 0, err, errlen);
        if (rc == 0 && r->sessions)
            rc = api_add(r, RMSG_CH_SESSIONS, str, slen, NULL, 0, err, errlen);
        json_decref(wrap);
        break;
    }
    default:
        api_fail(err, errlen, "no such endpoint");
    }
    free(data);
    return rc;
}

/* Room for the S the request can make: a channel, its SID lists (their
 * checks stop at RMSG_MAX_SIDS before writing), then a uid list (at most
 * UINT16_MAX bytes). Sized to the request, so a small one stays small. */
static size_t api_scratch(json_t *args, size_t *uoff)
{
    static const char *const lists[] = {"sids", "exclude", "sid"};
    json_t *uids = json_object_get(args, "uids"), *e;
    size_t nsids = 1, ubytes = 0, i;

    for (i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        json_t *v = json_object_get(args, lists[i]);
        if (json_is_array(v) && json_array_size(v) > nsids)
            nsids = json_array_size(v);
    }
    if (nsids > RMSG_MAX_SIDS)
        nsids = RMSG_MAX_SIDS;
    json_array_foreach(uids, i, e)
    {
        if (ubytes < UINT16_MAX)
            ubytes += 1 + json_string_length(e);
    }
    *uoff = 1 + RMSG_MAX_CHANNEL + nsids * RMSG_SID_LEN;
    return *uoff + (ubytes < UINT16_MAX ? ubytes : UINT16_MAX) + 1;
}

int router_api_build(int ep, json_t *args, struct router_api_req *out, char *err, size_t errlen)
{
    unsigned char *s;
    size_t uoff;
    int rc;

    memset(out, 0, sizeof(*out));
    out->ep = ep;
    if (!json_is_object(args))
        return api_fail(err, errlen, "the body must be a JSON object");
    if ((s = malloc(api_scratch(args, &uoff))) == NULL)
        return api_fail(err, errlen, "out of memory");
    out->args = json_incref(args);
    rc = api_build(ep, args, out, s, uoff, err, errlen);
    free(s);
    if (rc < 0)
        router_api_req_free(out);
    return rc;
}

void router_api_req_free(struct router_api_req *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->msgs[i].buf);
    free(r->msgs);
    json_decref(r->args);
    memset(r, 0, sizeof(*r));
}

/* ---- answers ---- */

int router_api_error_status(const char *text)
{
    if (strstr(text, "bus") != NULL || strstr(text, "too many") != NULL)
        return 503; /* for now: the bus is down, or the router is busy */
    if (strstr(text, "ROUTER_ANSWER_MAX") != NULL)
        return 413;
    return 400;
}

/* key = the bytes as a string when they are UTF-8, else b64key = base64. */
static int api_set_bytes(json_t *o, const char *key, const char *b64key, const void *p, size_t n)
{
    json_t *v = json_stringn(p, n);
    char *b;

    if (v != NULL)
        return json_object_set_new(o, key, v);
    if ((b = malloc(4 * ((n + 2) / 3) + 1)) == NULL)
        return -1;
    EVP_EncodeBlock((unsigned char *)b, p, (int)n);
    v = json_string(b);
    free(b);
    return json_object_set_new(o, b64key, v);
}

/* The D of a whole answer message of the expected type. */
static int api_answer(const unsigned char *msg, size_t len, uint16_t type, const unsigned char **d,
                      size_t *dlen, int *status, char *err, size_t errlen)
{
    uint16_t got;
    size_t slen;
    uint32_t n;

    if (len < RMSG_HEADER_LEN)
        goto bad;
    got = rmsg_get_u16(msg);
    slen = rmsg_get_u16(msg + 2);
    n = rmsg_get_u32(msg + 4);
    if (len != RMSG_HEADER_LEN + slen + n)
        goto bad;
    *d = msg + RMSG_HEADER_LEN + slen;
    *dlen = n;
    if (got == RMSG_ERROR && n >= 2) {
        snprintf(err, errlen, "%.*s", (int)(n - 2), (const char *)*d + 2);
        *status = router_api_error_status(err);
        return -1;
    }
    if (got == type)
        return 0;
bad:
    *status = 500;
    snprintf(err, errlen, "the router answered %s with something else", rmsg_type_name(type));
    return -1;
}

/* INFO's text: "key: value" lines; gateway lines "server\tworker\tclients\tchannels". */
static json_t *api_render_info(const unsigned char *d, size_t n)
{
    json_t *o = json_object(), *gws = json_array();
    size_t off = 0;

    if (o == NULL || gws == NULL) {
        json_decref(o);
        json_decref(gws);
        return NULL;
    }
    json_object_set_new(o, "gateways", gws);
    while (off < n) {
        const unsigned char *nl = memchr(d + off, '\n', n - off);
        size_t end = nl ? (size_t)(nl - d) : n;
        char line[512];
        size_t ll = end - off;
        if (ll > 0 && d[off + ll - 1] == '\r')
            ll--;
        if (ll < sizeof(line)) {
            unsigned long long a, b, c, e;
            char key[64];
            memcpy(line, d + off, ll);
            line[ll] = '\0';
            if (sscanf(line, "gateway: %llu\t%llu\t%llu\t%llu", &a, &b, &c, &e) == 4)
                json_array_append_new(gws, json_pack("{sIsIsIsI}", "server_id", (json_int_t)a,
                                                     "worker_id", (json_int_t)b, "clients",
                                                     (json_int_t)c, "channels", (json_int_t)e));
            else if (sscanf(line, "%63[a-z_]: %llu", key, &a) == 2)
                json_object_set_new(o, key, json_integer((json_int_t)a));
        }
        off = end + 1;
    }
    return o;
}

static json_t *api_render_online(const struct router_api_req *r, const unsigned char *const *ans,
                                 const size_t *len, int *status, char *err, size_t errlen)
{
    json_t *o = json_pack("{s{}s{}}", "sids", "uids"), *sids, *uids, *e;
    const unsigned char *d;
    size_t dlen, i, k = 0;

    if (o == NULL)
        return NULL;
    sids = json_object_get(o, "sids");
    uids = json_object_get(o, "uids");
    if (r->n > 0 && r->msgs[0].m.type == RMSG_IS_ONLINE) {
        const struct rmsg *m = &r->msgs[0].m;
        if (api_answer(ans[0], len[0], RMSG_IS_ONLINE, &d, &dlen, status, err, errlen) < 0)
            goto fail;
        if (dlen != m->slen / RMSG_SID_LEN) {
            *status = 500;
            snprintf(err, errlen, "IS_ONLINE answered %zu SIDs for %u", dlen,
                     m->slen / RMSG_SID_LEN);
            goto fail;
        }
        for (i = 0; i < dlen; i++) {
            char sid[RMSG_SID_LEN + 1];
            memcpy(sid, m->s + i * RMSG_SID_LEN, RMSG_SID_LEN);
            sid[RMSG_SID_LEN] = '\0';
            json_object_set_new(sids, sid, json_boolean(d[i] != 0));
        }
        k = 1;
    }
    for (; k < r->n; k++) {
        const struct rmsg *m = &r->msgs[k].m;
        json_t *list = json_array();
        if (api_answer(ans[k], len[k], RMSG_UID_SIDS, &d, &dlen, status, err, errlen) < 0) {
            json_decref(list);
            goto fail;
        }
        for (i = 0; list != NULL && i + RMSG_SID_LEN <= dlen; i += RMSG_SID_LEN)
            json_array_append_new(list, json_stringn((const char *)d + i, RMSG_SID_LEN));
        e = json_pack("{sIso}", "count", (json_int_t)(dlen / RMSG_SID_LEN), "sids", list);
        /* A uid is a key: one that is not UTF-8 is named in base64 under b64uids. */
        json_t *u = json_stringn((const char *)m->s, m->slen);
        if (u != NULL) {
            json_object_set_new(uids, json_string_value(u), e);
            json_decref(u);
        } else {
            json_t *b = json_object_get(o, "b64uids");
            char key[4 * ((RMSG_MAX_UID + 2) / 3) + 1];
            if (b == NULL)
                json_object_set_new(o, "b64uids", b = json_object());
            EVP_EncodeBlock((unsigned char *)key, m->s, m->slen);
            json_object_set_new(b, key, e);
        }
    }
    return o;
fail:
    json_decref(o);
    return NULL;
}

static json_t *api_render_channels(const unsigned char *d, size_t n, int *status, char *err,
                                   size_t errlen)
{
    json_t *o = json_pack("{s{}}", "channels"), *ch = json_object_get(o, "channels"), *b64 = NULL;
    size_t off = 0;

    while (o != NULL && off < n) {
        size_t l = d[off];
        if (off + 1 + l + 4 > n) {
            *status = 500;
            snprintf(err, errlen, "CHANNELS answer cut short");
            json_decref(o);
            return NULL;
        }
        json_t *name = json_stringn((const char *)d + off + 1, l);
        json_t *count = json_integer(rmsg_get_u32(d + off + 1 + l));
        if (name != NULL) {
            json_object_set_new(ch, json_string_value(name), count);
            json_decref(name);
        } else {
            char key[4 * ((RMSG_MAX_CHANNEL + 2) / 3) + 1];
            if (b64 == NULL)
                json_object_set_new(o, "b64channels", b64 = json_object());
            EVP_EncodeBlock((unsigned char *)key, d + off + 1, (int)l);
            json_object_set_new(b64, key, count);
        }
        off += 1 + l + 4;
    }
    return o;
}

static json_t *api_render_channel(const struct router_api_req *r, const unsigned char *const *ans,
                                  const size_t *len, int *status, char *err, size_t errlen)
{
    json_t *o = NULL, *members = json_array(), *bysid = json_object();
    const unsigned char *d;
    size_t dlen, off = 0, count = 0;

    if (members == NULL || bysid == NULL)
        goto fail;
    if (api_answer(ans[0], len[0], RMSG_CH_MEMBERS, &d, &dlen, status, err, errlen) < 0)
        goto fail;
    while (off < dlen) {
        char sid[RMSG_SID_LEN + 1];
        json_t *mem;
        size_t ul;
        if (off + RMSG_SID_LEN + 1 > dlen
            || off + RMSG_SID_LEN + 1 + d[off + RMSG_SID_LEN] > dlen) {
            *status = 500;
            snprintf(err, errlen, "CH_MEMBERS answer cut short");
            goto fail;
        }
        memcpy(sid, d + off, RMSG_SID_LEN);
        sid[RMSG_SID_LEN] = '\0';
        ul = d[off + RMSG_SID_LEN];
        mem = json_pack("{ss}", "sid", sid);
        if (ul == 0)
            json_object_set_new(mem, "uid", json_null());
        else
            api_set_bytes(mem, "uid", "b64uid", d + off + RMSG_SID_LEN + 1, ul);
        if (r->sessions)
            json_object_set_new(mem, "session", json_null());
        json_array_append(members, mem);
        json_object_set_new(bysid, sid, mem);
        off += RMSG_SID_LEN + 1 + ul;
        count++;
    }
    if (r->sessions) {
        const unsigned char *sid, *data;
        uint32_t l;
        off = 0;
        if (api_answer(ans[1], len[1], RMSG_CH_SESSIONS, &d, &dlen, status, err, errlen) < 0)
            goto fail;
        while (rmsg_records_next(d, dlen, &off, &sid, &data, &l) == 1) {
            char key[RMSG_SID_LEN + 1];
            json_t *mem;
            memcpy(key, sid, RMSG_SID_LEN);
            key[RMSG_SID_LEN] = '\0';
            if ((mem = json_object_get(bysid, key)) != NULL) {
                json_object_del(mem, "session");
                api_set_bytes(mem, "session", "b64session", data, l);
            }
        }
    }
    o = json_pack("{sIsO}", "count", (json_int_t)count, "members", members);
    if (o != NULL)
        api_set_bytes(o, "name", "b64name", r->msgs[0].m.s, r->msgs[0].m.slen);
fail:
    json_decref(members);
    json_decref(bysid);
    return o;
}

json_t *router_api_render(const struct router_api_req *r, const unsigned char *const *ans,
                          const size_t *len, int *status, char *err, size_t errlen)
{
    const unsigned char *d;
    size_t dlen;
    json_t *o = NULL;

    *status = 500;
    snprintf(err, errlen, "out of memory");
    switch (r->ep) {
    case ROUTER_API_INFO:
        if (api_answer(ans[0], len[0], RMSG_INFO, &d, &dlen, status, err, errlen) < 0)
            return NULL;
        o = api_render_info(d, dlen);
        break;
    case ROUTER_API_ONLINE:
        return api_render_online(r, ans, len, status, err, errlen);
    case ROUTER_API_CHANNELS:
        if (api_answer(ans[0], len[0], RMSG_CHANNELS, &d, &dlen, status, err, errlen) < 0)
            return NULL;
        return api_render_channels(d, dlen, status, err, errlen);
    case ROUTER_API_CHANNEL:
        return api_render_channel(r, ans, len, status, err, errlen);
    default:
        o = json_pack("{sb}", "ok", 1);
    }
    return o;
}
