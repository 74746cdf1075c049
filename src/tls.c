/* tls.c - OpenSSL server context and TLS bufferevents for clients.
 * The context is built by the master before it forks, so a bad certificate is
 * a clear error at start and every worker shares the loaded keys. */
#include "tls.h"

#include <stdio.h>

#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

static void tls_error(char *err, size_t errlen, const char *what, const char *path)
{
    unsigned long e = ERR_get_error();
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    snprintf(err, errlen, "%s %s: %s", what, path, e ? buf : "cannot load");
    ERR_clear_error();
}

void *tls_ctx_new(const char *cert, const char *key, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "TLS: cannot create a context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Long-lived, mostly idle connections: keep per-connection buffers small. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        tls_error(err, errlen, "SSL_CERT", cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        tls_error(err, errlen, "SSL_PKEY", key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        tls_error(err, errlen, "SSL_PKEY does not match SSL_CERT:", key);
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

void tls_ctx_free(void *ctx)
{
    SSL_CTX_free(ctx);
}

struct bufferevent *tls_bufferevent_new(struct event_base *base, void *ctx, evutil_socket_t fd)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return NULL;
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev)
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

int tls_error_string(struct bufferevent *bev, char *out, size_t len)
{
    unsigned long e = bufferevent_get_openssl_error(bev);
    if (e == 0)
        return 0;
    char buf[120];
    ERR_error_string_n(e, buf, sizeof(buf));
    snprintf(out, len, "TLS: %s", buf);
    return 1;
}
