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
enum { CGI_OTHER, CGI_STATUS, CGI_CONTENT_LENGTH, CGI_COMMAND };

/* Reply command names after "x-fooking-", in enum cgi_cmd order. */
static const char *const cgi_cmd_names[] = {
    [CGI_CMD_JOIN] = "join",           [CGI_CMD_LEAVE] = "leave",
    [CGI_CMD_BIND_UID] = "bind-uid",   [CGI_CMD_UNBIND_UID] = "unbind-uid",
    [CGI_CMD_SESSION] = "session",     [CGI_CMD_PUBLISH] = "publish",
    [CGI_CMD_BROADCAST] = "broadcast", [CGI_CMD_EXCLUDE_SELF] = "exclude-self",
    [CGI_CMD_CLOSE] = "close",
};
static const char *const cgi_cmd_titles[] = {
    [CGI_CMD_NONE] = "(none)",
    [CGI_CMD_JOIN] = "X-Fooking-Join",
    [CGI_CMD_LEAVE] = "X-Fooking-Leave",
    [CGI_CMD_BIND_UID] = "X-Fooking-Bind-Uid",
    [CGI_CMD_UNBIND_UID] = "X-Fooking-Unbind-Uid",
    [CGI_CMD_SESSION] = "X-Fooking-Session",
    [CGI_CMD_PUBLISH] = "X-Fooking-Publish",
    [CGI_CMD_BROADCAST] = "X-Fooking-Broadcast",
    [CGI_CMD_EXCLUDE_SELF] = "X-Fooking-Exclude-Self",
    [CGI_CMD_CLOSE] = "X-Fooking-Close",
    [CGI_CMD_UNKNOWN] = "X-Fooking-*",
};
#define CGI_CMD_PREFIX     "x-fooking-"
#define CGI_CMD_PREFIX_LEN 10

int cgi_cmd_lookup(const char *name, size_t n)
{
    if (n < CGI_CMD_PREFIX_LEN)
        return CGI_CMD_NONE;
    for (size_t i = 0; i < CGI_CMD_PREFIX_LEN; i++) {
        char c = name[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != CGI_CMD_PREFIX[i])
            return CGI_CMD_NONE;
    }
    for (int cmd = CGI_CMD_JOIN; cmd < CGI_CMD_UNKNOWN; cmd++)
        if (cgi_name_is(name + CGI_CMD_PREFIX_LEN, n - CGI_CMD_PREFIX_LEN, cgi_cmd_names[cmd]))
            return cmd;
    return CGI_CMD_UNKNOWN;
}

const char *cgi_cmd_name(int cmd)
{
    return cmd >= CGI_CMD_NONE && cmd <= CGI_CMD_UNKNOWN ? cgi_cmd_titles[cmd] : "?";
}

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

/* The ':' after a header name: which header it is. A reply command begins
 * here (only with a sink: without one it is a header like any other). */
static void cgi_name_end(struct cgi_parser *cp, struct cgi_line *l)
{
    l->state = CGI_IN_VALUE;
    if (cgi_name_is(l->name, l->ntrim, "status")) {
        l->which = CGI_STATUS;
    } else if (cgi_name_is(l->name, l->ntrim, "content-length")) {
        l->which = CGI_CONTENT_LENGTH;
    } else if (cp->sink != NULL) {
        /* The lookup reads no further than the longest command name, which
         * the kept part holds; a longer name is an unknown X-Fooking-* one
         * or none. */
        size_t kept = l->ntrim < CGI_NAME_MAX ? l->ntrim : CGI_NAME_MAX;
        int cmd = cgi_cmd_lookup(l->name, l->ntrim);
        if (cmd != CGI_CMD_NONE) {
            l->which = CGI_COMMAND;
            l->cmd = (uint8_t)cmd;
            cp->ncmds++;
            cp->sink->begin(cp->sink_arg, cmd);
            if (cmd == CGI_CMD_UNKNOWN)
                cp->sink->data(cp->sink_arg, (const uint8_t *)l->name, kept);
        }
    }
}

/* One byte of a line, LF and the CR of a CRLF excluded. The name is kept as
 * far as a name that matters can go; of the value only what Status and
 * Content-Length need, and a command's value goes to the sink. Lines that
 * are not "name: value" and headers we do not use are passed over: the
 * backend may send anything (X-Powered-By, Set-Cookie...) and only the body
 * goes to the client. */
static void cgi_line_byte(struct cgi_parser *cp, struct cgi_line *l, char c)
{
    if (l->state == CGI_IN_NAME) {
        if (c == ':') {
            cgi_name_end(cp, l);
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
    if (l->which == CGI_COMMAND) {
        if (l->cmd != CGI_CMD_UNKNOWN)
            cp->sink->data(cp->sink_arg, (const uint8_t *)&c, 1);
        l->vlen++;
        return;
    }
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
    if (l->which == CGI_COMMAND) {
        cp->sink->end(cp->sink_arg, 0);
        return FCGI_OK;
    }
    if (l->which == CGI_STATUS)
        return cgi_parse_status(cp, l);
    return cgi_parse_content_length(cp, l);
}

/* A run of a command's value in p[i..len): bytes up to a CR or LF, within
 * the line's and the header's bounds, told to the sink at once rather than
 * byte by byte. Returns how many it took (0: none, the byte loop goes on). */
static size_t cgi_command_run(struct cgi_parser *cp, struct cgi_line *l, const uint8_t *p, size_t i,
                              size_t len)
{
    if (l->state != CGI_IN_VALUE || l->which != CGI_COMMAND || l->vlen == 0 || l->cr
        || l->cmd == CGI_CMD_UNKNOWN)
        return 0;
    size_t room = CGI_MAX_CMD_LINE - l->len, hroom = CGI_MAX_HEADER - cp->total;
    size_t max = len - i;
    if (max > room)
        max = room;
    if (max > hroom)
        max = hroom;
    size_t n = 0;
    while (n < max && p[i + n] != '\n' && p[i + n] != '\r')
        n++;
    if (n == 0)
        return 0;
    cp->sink->data(cp->sink_arg, p + i, n);
    l->len = (uint16_t)(l->len + n);
    l->vlen = (uint16_t)(l->vlen + n);
    cp->total += n;
    return n;
}

long cgi_parser_feed(struct cgi_parser *cp, const uint8_t *p, size_t len)
{
    if (cp->done)
        return 0;
    struct cgi_line *l = &cp->line;
    for (size_t i = 0; i < len; i++) {
        size_t run = cgi_command_run(cp, l, p, i, len);
        if (run > 0) {
            i += run - 1;
            continue;
        }
        char c = (char)p[i];
        /* Checked before counting so total never passes the limit, even if a
         * caller keeps feeding after an error. */
        if (cp->total >= CGI_MAX_HEADER)
            return FCGI_ERROR;
        cp->total++;
        if (c != '\n') {
            if (l->state == CGI_SKIP_LINE)
                continue;
            int command = l->state == CGI_IN_VALUE && l->which == CGI_COMMAND;
            if (l->len >= (command ? CGI_MAX_CMD_LINE : CGI_MAX_LINE)) {
                /* Passing over the rest is harmless for a header we ignore,
                 * and a command is told it was cut, but a Status or
                 * Content-Length read in part would be a wrong value, so
                 * those fail instead. */
                if (l->state == CGI_IN_VALUE && l->which != CGI_OTHER && !command)
                    return FCGI_ERROR;
                if (command)
                    cp->sink->end(cp->sink_arg, 1);
                l->state = CGI_SKIP_LINE;
                continue;
            }
            l->len++;
            /* A CR is held back until the next byte: only the CR of a CRLF is
             * a line end, and that LF may come in the next call. */
            if (l->cr)
                cgi_line_byte(cp, l, '\r');
            l->cr = c == '\r';
            if (!l->cr)
                cgi_line_byte(cp, l, c);
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

/* ---- reply command values ---- */

const uint8_t *cgi_trim(const uint8_t *p, size_t *n)
{
    size_t len = *n;
    while (len > 0 && cgi_is_ows((char)p[0])) {
        p++;
        len--;
    }
    while (len > 0 && cgi_is_ows((char)p[len - 1]))
        len--;
    *n = len;
    return p;
}

int cgi_list_next(const uint8_t **p, const uint8_t *end, const uint8_t **item, size_t *n)
{
    const uint8_t *q = *p;
    while (q < end) {
        const uint8_t *comma = memchr(q, ',', (size_t)(end - q));
        const uint8_t *stop = comma ? comma : end;
        size_t len = (size_t)(stop - q);
        const uint8_t *it = cgi_trim(q, &len);
        q = comma ? comma + 1 : end;
        if (len > 0) {
            *p = q;
            *item = it;
            *n = len;
            return 1;
        }
    }
    *p = end;
    return 0;
}

int cgi_flag(const uint8_t *p, size_t n)
{
    p = cgi_trim(p, &n);
    const char *s = (const char *)p;
    if (cgi_name_is(s, n, "1") || cgi_name_is(s, n, "true") || cgi_name_is(s, n, "yes"))
        return 1;
    if (cgi_name_is(s, n, "0") || cgi_name_is(s, n, "false") || cgi_name_is(s, n, "no"))
        return 0;
    return -1;
}

int cgi_close_parse(const uint8_t *p, size_t n, int *code, const uint8_t **reason, size_t *rlen,
                    const char **why)
{
    p = cgi_trim(p, &n);
    size_t i = 0;
    int v = 0;
    while (i < n && i < 5 && cgi_is_digit((char)p[i]))
        v = v * 10 + (p[i++] - '0');
    if (i == 0 || (i < n && !cgi_is_ows((char)p[i]))) {
        *why = "a close code (digits) must come first";
        return FCGI_ERROR;
    }
    if (v != 1000 && (v < 3000 || v > 4999)) {
        *why = "the close code must be 1000 or 3000..4999";
        return FCGI_ERROR;
    }
    size_t left = n - i;
    const uint8_t *r = cgi_trim(p + i, &left);
    if (left > CGI_CLOSE_REASON_MAX) {
        *why = "the close reason is over 123 bytes";
        return FCGI_ERROR;
    }
    *code = v;
    *reason = r;
    *rlen = left;
    return FCGI_OK;
}
