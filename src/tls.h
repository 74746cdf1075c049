/* tls.h - TLS for client connections (SSL = 1), through bufferevent_openssl. */
#ifndef FOOKING_TLS_H
#define FOOKING_TLS_H

#include <stddef.h>
#include <event2/bufferevent.h>

/* Builds the server context from SSL_CERT / SSL_PKEY; NULL with a message in err. */
void *tls_ctx_new(const char *cert, const char *key, char *err, size_t errlen);
void tls_ctx_free(void *ctx);
/* A bufferevent that does the server side of the TLS handshake on fd. */
struct bufferevent *tls_bufferevent_new(struct event_base *base, void *ctx, evutil_socket_t fd);

/* The TLS error behind a BEV_EVENT_ERROR, as "TLS: ..."; 0 if there is none. */
int tls_error_string(struct bufferevent *bev, char *out, size_t len);

#endif
