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

enum { CGI_IN_NAME, CGI_IN_VALUE, CGI_SKIP_LINE };
enum { CGI_OTHER, CGI_STATUS, CGI_CONTENT_LENGTH };

/* "Status: NNN reason": exactly three digits, then the end or a blank. */
static int cgi_parse_status(struct cgi_parser *cp, const struct cgi_line *l)
{
    const char *v = l->vhead;
    size_t n = l->vtrim;
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

/* One byte of a Content-Length value (leading blanks already skipped):
 * digits only, no sign, no blank inside, no overflow. */
static void cgi_content_length_byte(struct cgi_line *l, char c)
{
    if (cgi_is_ows(c))
        return;
    if (l->vtrim + 1 != l->vlen || !cgi_is_digit(c)) { /* a blank before it, or not a digit */
        l->bad = 1;
        return;
    }
    int d = c - '0';
    if (l->cl > (LONG_MAX - d) / 10)
        l->bad = 1;
    else
        l->cl = l->cl * 10 + d;
}

/* Two different values are refused, as in HTTP, since the body length decides
 * where this reply ends for the client. */
static int cgi_parse_content_length(struct cgi_parser *cp, const struct cgi_line *l)
{
    if (l->bad || l->vtrim == 0)
        return FCGI_ERROR;
    if (cp->content_length >= 0 && cp->content_length != l->cl)
        return FCGI_ERROR;
    cp->content_length = l->cl;
    return FCGI_OK;
}

/* One byte of a line, LF and the CR of a CRLF excluded. The name is kept as
 * far as a name that matters can go; of the value only what Status and
 * Content-Length need. Lines that are not "name: value" and headers we do not
 * use are passed over: the backend may send anything (X-Powered-By,
 * Set-Cookie...) and only the body goes to the client. */
static void cgi_line_byte(struct cgi_line *l, char c)
{
    if (l->state == CGI_IN_NAME) {
        if (c == ':') {
            l->state = CGI_IN_VALUE;
            if (cgi_name_is(l->name, l->ntrim, "status"))
                l->which = CGI_STATUS;
            else if (cgi_name_is(l->name, l->ntrim, "content-length"))
                l->which = CGI_CONTENT_LENGTH;
            return;
        }
        if (l->nlen < CGI_NAME_MAX)
            l->name[l->nlen] = c;
        l->nlen++;
        if (!cgi_is_ows(c))
            l->ntrim = l->nlen;
        return;
    }
    if (l->which == CGI_OTHER || (l->vlen == 0 && cgi_is_ows(c)))
        return;
    if (l->vlen < sizeof(l->vhead))
        l->vhead[l->vlen] = c;
    l->vlen++;
    if (l->which == CGI_CONTENT_LENGTH)
        cgi_content_length_byte(l, c);
    if (!cgi_is_ows(c))
        l->vtrim = l->vlen;
}

/* The end of a complete, non-blank line: its header takes effect. */
static int cgi_line_end(struct cgi_parser *cp, const struct cgi_line *l)
{
    if (l->state != CGI_IN_VALUE || l->which == CGI_OTHER)
        return FCGI_OK;
    if (l->which == CGI_STATUS)
        return cgi_parse_status(cp, l);
    return cgi_parse_content_length(cp, l);
}

long cgi_parser_feed(struct cgi_parser *cp, const uint8_t *p, size_t len)
{
    if (cp->done)
        return 0;
    struct cgi_line *l = &cp->line;
    for (size_t i = 0; i < len; i++) {
        char c = (char)p[i];
        /* Checked before counting so total never passes the limit, even if a
         * caller keeps feeding after an error. */
        if (cp->total >= CGI_MAX_HEADER)
            return FCGI_ERROR;
        cp->total++;
        if (c != '\n') {
            if (l->state == CGI_SKIP_LINE)
                continue;
            if (l->len >= CGI_MAX_LINE) {
                /* Passing over the rest is harmless for a header we ignore,
                 * but a Status or Content-Length read in part would be a
                 * wrong value, so those fail instead. */
                if (l->state == CGI_IN_VALUE && l->which != CGI_OTHER)
                    return FCGI_ERROR;
                l->state = CGI_SKIP_LINE;
                continue;
            }
            l->len++;
            /* A CR is held back until the next byte: only the CR of a CRLF is
             * a line end, and that LF may come in the next call. */
            if (l->cr)
                cgi_line_byte(l, '\r');
            l->cr = c == '\r';
            if (!l->cr)
                cgi_line_byte(l, c);
            continue;
        }
        struct cgi_line ended = *l;
        memset(l, 0, sizeof(*l));
        if (ended.state == CGI_SKIP_LINE)
            continue;
        if (ended.len == ended.cr) { /* nothing before the line end */
            cp->done = 1;
            return (long)(i + 1);
        }
        if (cgi_line_end(cp, &ended) != FCGI_OK)
            return FCGI_ERROR;
    }
    return (long)len;
}
