/* fcgi.c - FastCGI 1.0 record codec and the CGI response-header parser.
 * Everything here works on caller-owned bytes: no sockets, no allocation, no
 * logging, so backend.c can drive it and the fuzzer can hammer it alone. The
 * backend is not trusted: every length it sends is checked against what is
 * actually there before it is used. */
#include "fcgi.h"

#include <limits.h>
#include <string.h>

/* Longest name or value a pair can carry: the 4-byte length has 31 bits. */
#define FCGI_NV_MAX 0x7fffffffUL

int fcgi_header_decode(const uint8_t *p, size_t len, struct fcgi_header *h)
{
    if (len < FCGI_HEADER_LEN)
        return FCGI_AGAIN;
    /* Only the version is checked: an unknown type is the caller's to skip
     * (it knows the lengths), and the reserved byte means nothing. */
    if (p[0] != FCGI_VERSION_1)
        return FCGI_ERROR;
    h->version = p[0];
    h->type = p[1];
    h->request_id = (uint16_t)(p[2] << 8 | p[3]);
    h->content_length = (uint16_t)(p[4] << 8 | p[5]);
    h->padding_length = p[6];
    return FCGI_OK;
}

void fcgi_header_encode(uint8_t out[FCGI_HEADER_LEN], int type, uint16_t request_id,
                        uint16_t content_length, uint8_t padding_length)
{
    out[0] = FCGI_VERSION_1;
    out[1] = (uint8_t)type;
    out[2] = (uint8_t)(request_id >> 8);
    out[3] = (uint8_t)request_id;
    out[4] = (uint8_t)(content_length >> 8);
    out[5] = (uint8_t)content_length;
    out[6] = padding_length;
    out[7] = 0;
}

void fcgi_begin_request_encode(uint8_t out[16], uint16_t request_id, int keep_conn)
{
    fcgi_header_encode(out, FCGI_BEGIN_REQUEST, request_id, 8, 0);
    out[8] = 0;
    out[9] = FCGI_RESPONDER;
    out[10] = keep_conn ? FCGI_KEEP_CONN : 0;
    memset(out + 11, 0, 5);
}

int fcgi_end_request_decode(const uint8_t *body, size_t len, uint32_t *app_status,
                            uint8_t *protocol_status)
{
    /* Shorter is malformed; a longer body is tolerated since the fields we use
     * are all in the first eight bytes. */
    if (len < 8)
        return FCGI_ERROR;
    *app_status = (uint32_t)body[0] << 24 | (uint32_t)body[1] << 16 | (uint32_t)body[2] << 8
                  | (uint32_t)body[3];
    *protocol_status = body[4];
    return FCGI_OK;
}

static size_t fcgi_nv_lensize(size_t n)
{
    return n < 128 ? 1 : 4;
}

size_t fcgi_nv_size(size_t nlen, size_t vlen)
{
    if (nlen > FCGI_NV_MAX || vlen > FCGI_NV_MAX)
        return 0;
    /* Two maximal lengths overflow a 32-bit size_t. */
    if (nlen + 8 > SIZE_MAX - vlen)
        return 0;
    return fcgi_nv_lensize(nlen) + fcgi_nv_lensize(vlen) + nlen + vlen;
}

static uint8_t *fcgi_nv_putlen(uint8_t *out, size_t n)
{
    if (n < 128) {
        *out++ = (uint8_t)n;
        return out;
    }
    *out++ = (uint8_t)(n >> 24 | 0x80);
    *out++ = (uint8_t)(n >> 16);
    *out++ = (uint8_t)(n >> 8);
    *out++ = (uint8_t)n;
    return out;
}

size_t fcgi_nv_encode(uint8_t *out, const char *name, size_t nlen, const char *value, size_t vlen)
{
    size_t size = fcgi_nv_size(nlen, vlen);
    if (size == 0)
        return 0;
    uint8_t *q = fcgi_nv_putlen(out, nlen);
    q = fcgi_nv_putlen(q, vlen);
    /* memcpy from NULL is undefined even for zero bytes, and an empty value
     * is commonly passed as NULL. */
    if (nlen > 0)
        memcpy(q, name, nlen);
    if (vlen > 0)
        memcpy(q + nlen, value, vlen);
    return size;
}

/* Reads one length at p[*off]; FCGI_AGAIN if its bytes are not all there. */
static int fcgi_nv_getlen(const uint8_t *p, size_t len, size_t *off, size_t *n)
{
    if (*off >= len)
        return FCGI_AGAIN;
    if (p[*off] < 128) {
        *n = p[(*off)++];
        return FCGI_OK;
    }
    if (len - *off < 4)
        return FCGI_AGAIN;
    const uint8_t *b = p + *off;
    *n = (size_t)((uint32_t)(b[0] & 0x7f) << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8
                  | (uint32_t)b[3]);
    *off += 4;
    return FCGI_OK;
}

long fcgi_nv_decode(const uint8_t *p, size_t len, const uint8_t **name, size_t *nlen,
                    const uint8_t **value, size_t *vlen)
{
    size_t off = 0, nl, vl;
    int rc = fcgi_nv_getlen(p, len, &off, &nl);
    if (rc != FCGI_OK)
        return rc;
    rc = fcgi_nv_getlen(p, len, &off, &vl);
    if (rc != FCGI_OK)
        return rc;
    /* Each length is at most 2^31-1, so this only trips where long or size_t
     * is 32 bits; a pair whose size we cannot return is malformed to us. */
    if (nl > (size_t)LONG_MAX - off || vl > (size_t)LONG_MAX - off - nl)
        return FCGI_ERROR;
    /* Compare without adding so a huge claimed length cannot wrap. */
    if (nl > len - off || vl > len - off - nl)
        return FCGI_AGAIN;
    *name = p + off;
    *nlen = nl;
    *value = p + off + nl;
    *vlen = vl;
    return (long)(off + nl + vl);
}

void cgi_parser_init(struct cgi_parser *cp)
{
    memset(cp, 0, sizeof(*cp));
    cp->status = 200;
    cp->content_length = -1;
}

/* ASCII-only, case-insensitive match of a header name: header names are
 * tokens, and the C library's version depends on the locale. */
static int cgi_name_is(const char *s, size_t n, const char *want)
{
    size_t i;
    for (i = 0; i < n && want[i] != '\0'; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != want[i])
            return 0;
    }
    return i == n && want[i] == '\0';
}

static int cgi_is_ows(char c)
{
    return c == ' ' || c == '\t';
}
static int cgi_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Splits line[0..n) at its first colon: returns the name's length with
 * trailing blanks dropped and sets *colon, or returns -1 when there is none. */
static long cgi_line_name(const char *line, size_t n, const char **colon)
{
    const char *c = memchr(line, ':', n);
    if (c == NULL)
        return -1;
    size_t k = (size_t)(c - line);
    while (k > 0 && cgi_is_ows(line[k - 1]))
        k--;
    *colon = c;
    return (long)k;
}

static int cgi_name_matters(const char *s, size_t n)
{
    return cgi_name_is(s, n, "status") || cgi_name_is(s, n, "content-length");
}

/* "Status: NNN reason": exactly three digits, then the end or a blank. */
static int cgi_parse_status(struct cgi_parser *cp, const char *v, size_t n)
{
    if (n < 3 || !cgi_is_digit(v[0]) || !cgi_is_digit(v[1]) || !cgi_is_digit(v[2]))
        return FCGI_ERROR;
    if (n > 3 && !cgi_is_ows(v[3]))
        return FCGI_ERROR;
    int code = (v[0] - '0') * 100 + (v[1] - '0') * 10 + (v[2] - '0');
    if (code < 100 || code > 599)
        return FCGI_ERROR;
    cp->status = code;
    return FCGI_OK;
}

/* Digits only: no sign, no blanks inside. Two different values are refused, as
 * in HTTP, since the body length decides where this reply ends for the client. */
static int cgi_parse_content_length(struct cgi_parser *cp, const char *v, size_t n)
{
    long cl = 0;
    if (n == 0)
        return FCGI_ERROR;
    for (size_t i = 0; i < n; i++) {
        if (!cgi_is_digit(v[i]))
            return FCGI_ERROR;
        int d = v[i] - '0';
        if (cl > (LONG_MAX - d) / 10)
            return FCGI_ERROR;
        cl = cl * 10 + d;
    }
    if (cp->content_length >= 0 && cp->content_length != cl)
        return FCGI_ERROR;
    cp->content_length = cl;
    return FCGI_OK;
}

/* One complete header line without its line end. Lines that are not
 * "name: value" and headers we do not use are passed over: the backend may send
 * anything (X-Powered-By, Set-Cookie...) and only the body goes to the client. */
static int cgi_parse_line(struct cgi_parser *cp, size_t n)
{
    const char *line = cp->line;
    const char *colon;
    long k = cgi_line_name(line, n, &colon);
    if (k < 0)
        return FCGI_OK;
    const char *v = colon + 1;
    size_t vn = n - (size_t)(v - line);
    while (vn > 0 && cgi_is_ows(*v))
        v++, vn--;
    while (vn > 0 && cgi_is_ows(v[vn - 1]))
        vn--;
    if (cgi_name_is(line, (size_t)k, "status"))
        return cgi_parse_status(cp, v, vn);
    if (cgi_name_is(line, (size_t)k, "content-length"))
        return cgi_parse_content_length(cp, v, vn);
    return FCGI_OK;
}

long cgi_parser_feed(struct cgi_parser *cp, const uint8_t *p, size_t len)
{
    if (cp->done)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = (char)p[i];
        /* Checked before counting so total never passes the limit, even if a
         * caller keeps feeding after an error. */
        if (cp->total >= CGI_MAX_HEADER)
            return FCGI_ERROR;
        cp->total++;
        if (c != '\n') {
            if (cp->linelen < sizeof(cp->line)) {
                cp->line[cp->linelen++] = c;
                continue;
            }
            /* The line no longer fits. Skipping the rest is harmless for a
             * header we ignore, but a truncated Status or Content-Length would
             * be a wrong value, so those fail instead. */
            if (!cp->line_overflow) {
                const char *colon;
                long k = cgi_line_name(cp->line, cp->linelen, &colon);
                if (k >= 0 && cgi_name_matters(cp->line, (size_t)k))
                    return FCGI_ERROR;
                cp->line_overflow = 1;
            }
            continue;
        }
        size_t n = cp->linelen;
        int overflow = cp->line_overflow;
        cp->linelen = 0;
        cp->line_overflow = 0;
        if (overflow)
            continue;
        /* A CR kept at the end of the buffer is the CR of a CRLF: stripping it
         * here, not on arrival, is what lets a chunk end between CR and LF. */
        if (n > 0 && cp->line[n - 1] == '\r')
            n--;
        if (n == 0) {
            cp->done = 1;
            return (long)(i + 1);
        }
        if (cgi_parse_line(cp, n) != FCGI_OK)
            return FCGI_ERROR;
    }
    return (long)len;
}
