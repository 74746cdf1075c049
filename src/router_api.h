/* router_api.h - the router's HTTP API as router messages (DESIGN §14):
 * pure functions, no I/O. A request's JSON (a POST body, or a GET's query
 * string as an object of string arrays) becomes the router messages the
 * binary protocol would carry for it; the answers to those messages (whole
 * rmsg-encoded messages) become the JSON reply. router_http.c does the HTTP
 * and runs the messages through the router's own command handling. */
#ifndef FOOKING_ROUTER_API_H
#define FOOKING_ROUTER_API_H

#include <stddef.h>

#include <jansson.h>

#include "rmsg.h"

/* uids one GET /api/online may ask about (one UID_SIDS query each). */
#define ROUTER_API_MAX_UIDS 1024

enum router_api_ep {
    ROUTER_API_PUBLISH,
    ROUTER_API_BROADCAST,
    ROUTER_API_SEND,
    ROUTER_API_KICK,
    ROUTER_API_JOIN,
    ROUTER_API_LEAVE,
    ROUTER_API_BIND,
    ROUTER_API_UNBIND,
    ROUTER_API_SESSION,
    ROUTER_API_INFO,
    ROUTER_API_ONLINE,
    ROUTER_API_CHANNELS,
    ROUTER_API_CHANNEL,
    ROUTER_API_EP_MAX
};

/* One router message; S and D live in buf, which it owns. */
struct router_api_msg {
    struct rmsg m;
    unsigned char *buf;
};

struct router_api_req {
    enum router_api_ep ep;
    size_t n; /* messages, run in this order */
    struct router_api_msg *msgs;
    size_t nanswers; /* answers they get (the queries among them) */
    json_t *args;    /* the request, kept to name what the answers are about */
    int sessions;    /* GET /api/channel&sessions=1 */
};

/* The endpoint of a path ("/api/send"), or -1. */
int router_api_find(const char *path);
/* 1 for the endpoints that are GET (queries), 0 for the POST ones. */
int router_api_is_get(int ep);

/* Builds the messages of endpoint ep from args (an object; its reference is
 * taken). 0, or -1 with err naming the field that is wrong. */
int router_api_build(int ep, json_t *args, struct router_api_req *out, char *err, size_t errlen);
void router_api_req_free(struct router_api_req *r);

/* The reply to r from its answers: ans[i] (len[i] bytes) is the whole i-th
 * answer message, for i < r->nanswers. A new object, or NULL with *status
 * (an HTTP status) and err: an ERROR answer's text, or a malformed answer. */
json_t *router_api_render(const struct router_api_req *r, const unsigned char *const *ans,
                          const size_t *len, int *status, char *err, size_t errlen);

/* The HTTP status for a router's refusal of a message (an rmsg_status) or
 * for an ERROR answer's text. */
int router_api_error_status(const char *text);

/* Strict base64 (RFC 4648, padding required, no whitespace): decodes
 * in[0..n) into out (room for n / 4 * 3 bytes); the length, or -1. */
long router_api_b64_decode(const char *in, size_t n, unsigned char *out);

#endif
