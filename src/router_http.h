/* router_http.h - the router's HTTP JSON API and GET /metrics (HTTP_PORT,
 * DESIGN §14), served by evhttp on the router's own loop. */
#ifndef FOOKING_ROUTER_HTTP_H
#define FOOKING_ROUTER_HTTP_H

struct router;
struct router_http;

/* Listens on HTTP_HOST:HTTP_PORT (router_config(r)). NULL when it cannot
 * (logged). */
struct router_http *router_http_new(struct router *r);
/* Ends every request in flight (their connections go without a reply) and
 * stops listening. NULL is fine. */
void router_http_free(struct router_http *h);

/* The API as a router service (router.h), wanted when HTTP_PORT is set. */
extern const struct router_service router_http_service;

#endif
