/* ws.c - RFC 6455 WebSocket codec (see ws.h). Pure: every function works on the
 * caller's bytes and returns what they mean; the client module does the I/O. */
#include "ws.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ---- Handshake ---- */

static int ws_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static int ws_str_ieq(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    if (alen != blen)
        return 0;
    for (size_t i = 0; i < alen; i++)
        if (ws_lower((unsigned char)a[i]) != ws_lower((unsigned char)b[i]))
            return 0;
    return 1;
}

/* RFC 7230 tchar: the characters of a method or header name. */
static int ws_is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int ws_is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* 1 when the comma-separated list has `token` as an element (case-insensitive,
 * optional whitespace around elements, empty elements allowed, as in RFC 7230 #rule). */
static int ws_list_has_token(const char *p, size_t len, const char *token)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (ws_is_space(p[i]) || p[i] == ','))
            i++;
        size_t start = i;
        while (i < len && p[i] != ',')
            i++;
        size_t end = i;
        while (end > start && ws_is_space(p[end - 1]))
            end--;
        if (end > start && ws_str_ieq(p + start, end - start, token))
            return 1;
    }
    return 0;
}

/* Offset just past the "\r\n\r\n" that ends the head, searching buf[from, lim),
 * or 0 when it is not there. */
static size_t ws_find_head_end(const char *buf, size_t from, size_t lim)
{
    for (size_t i = from; i < lim; i++) {
        const char *nl = memchr(buf + i, '\n', lim - i);
        if (nl == NULL)
            return 0;
        i = (size_t)(nl - buf);
        if (i >= 1 && buf[i - 1] == '\r' && i + 2 < lim && buf[i + 1] == '\r' && buf[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

/* Parses the request line at p (ends at the CR at eol). 0 or WS_ERROR. */
static int ws_parse_request_line(const char *p, const char *eol, struct ws_request *req)
{
    const char *s = p;
    while (p < eol && ws_is_tchar((unsigned char)*p))
        p++;
    if (p == s || p == eol || *p != ' ')
        return WS_ERROR;
    req->method = (struct ws_str){s, (size_t)(p - s)};

    s = ++p;
    if (p == eol || *p != '/')
        return WS_ERROR; /* origin-form only: no proxy or asterisk forms */
    while (p < eol && (unsigned char)*p > ' ' && *p != 0x7f)
        p++;
    if (p == eol || *p != ' ')
        return WS_ERROR;
    req->target = (struct ws_str){s, (size_t)(p - s)};
    const char *q = memchr(s, '?', req->target.len);
    if (q != NULL) {
        req->path = (struct ws_str){s, (size_t)(q - s)};
        req->query = (struct ws_str){q + 1, (size_t)(p - q - 1)};
    } else {
        req->path = req->target;
        req->query = (struct ws_str){p, 0};
    }

    p++;
    if (eol - p != 8 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1'))
        return WS_ERROR;
    req->minor_version = p[7] - '0';
    return 0;
}

/* The single-valued headers the handshake decides on. A repeated Host, key or
 * version is ambiguous (which one did a proxy in front look at?), so it is counted
 * and refused; Origin and Sec-WebSocket-Protocol keep their first line. */
static const struct {
    const char *name;
    size_t offset;
    int unique;
} ws_known_headers[] = {
    {"host", offsetof(struct ws_request, host), 1},
    {"sec-websocket-key", offsetof(struct ws_request, key), 1},
    {"sec-websocket-version", offsetof(struct ws_request, version), 1},
    {"origin", offsetof(struct ws_request, origin), 0},
    {"sec-websocket-protocol", offsetof(struct ws_request, protocol), 0},
};

static void ws_note_header(struct ws_request *req, const struct ws_header *h)
{
    const char *n = h->name.p;
    size_t nl = h->name.len;

    if (ws_str_ieq(n, nl, "upgrade")) {
        if (ws_list_has_token(h->value.p, h->value.len, "websocket"))
            req->upgrade_websocket = 1;
        return;
    }
    if (ws_str_ieq(n, nl, "connection")) {
        if (ws_list_has_token(h->value.p, h->value.len, "upgrade"))
            req->connection_upgrade = 1;
        return;
    }
    for (size_t i = 0; i < sizeof(ws_known_headers) / sizeof(ws_known_headers[0]); i++) {
        if (!ws_str_ieq(n, nl, ws_known_headers[i].name))
            continue;
        struct ws_str *slot = (struct ws_str *)((char *)req + ws_known_headers[i].offset);
        if (slot->p == NULL)
            *slot = h->value;
        else if (ws_known_headers[i].unique)
            req->duplicates++;
        return;
    }
}

long ws_parse_request(const char *buf, size_t len, size_t last_len, struct ws_request *req)
{
    size_t lim = len < WS_MAX_HEAD ? len : WS_MAX_HEAD;
    /* The terminator may straddle what was seen before and what is new. */
    size_t from = last_len > 3 ? last_len - 3 : 0;
    size_t head_len = ws_find_head_end(buf, from, lim);
    if (head_len == 0)
        return len >= WS_MAX_HEAD ? WS_ERROR : WS_AGAIN;

    memset(req, 0, sizeof(*req));
    const char *p = buf;
    const char *end = buf + head_len - 2; /* the final CRLF */
    const char *eol = memchr(p, '\r', (size_t)(end - p));
    if (eol == NULL || eol[1] != '\n' || ws_parse_request_line(p, eol, req) < 0)
        return WS_ERROR;

    for (p = eol + 2; p < end; p = eol + 2) {
        /* A line starting with a space would be obsolete folding: refused, as
         * RFC 7230 §3.2.4 allows, so no header value ever spans lines. */
        const char *s = p;
        while (p < end && ws_is_tchar((unsigned char)*p))
            p++;
        if (p == s || p == end || *p != ':')
            return WS_ERROR;
        struct ws_header h = {.name = {s, (size_t)(p - s)}};
        p++;
        while (p < end && ws_is_space(*p))
            p++;
        s = p;
        while (p < end && (*p == '\t' || (unsigned char)*p >= ' ') && *p != 0x7f)
            p++;
        /* The value must end at CRLF: a bare CR, LF or other control byte is an
         * error rather than something a backend sees. */
        if (p == end || p[0] != '\r' || p[1] != '\n')
            return WS_ERROR;
        eol = p;
        while (p > s && ws_is_space(p[-1]))
            p--;
        h.value = (struct ws_str){s, (size_t)(p - s)};
        if (req->num_headers == WS_MAX_HEADERS)
            return WS_ERROR;
        req->headers[req->num_headers++] = h;
        ws_note_header(req, &h);
    }
    return (long)head_len;
}

/* A Sec-WebSocket-Key must be base64 of 16 bytes: 22 base64 characters and "==". */
static int ws_key_valid(const struct ws_str *key)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (key->len != 24 || key->p[22] != '=' || key->p[23] != '=')
        return 0;
    for (int i = 0; i < 22; i++)
        if (key->p[i] == 0 || strchr(b64, key->p[i]) == NULL)
            return 0;
    return 1;
}

enum ws_verdict ws_check_request(const struct ws_request *req)
{
    /* Methods are case-sensitive (RFC 7231 §4.1). */
    int get = req->method.len == 3 && memcmp(req->method.p, "GET", 3) == 0;
    int head = req->method.len == 4 && memcmp(req->method.p, "HEAD", 4) == 0;

    if (!get && !head)
        return WS_HS_METHOD_NOT_ALLOWED;
    /* RFC 7230 §5.4: an HTTP/1.1 request without exactly one Host is a 400. */
    if (req->duplicates || (req->minor_version == 1 && req->host.p == NULL))
        return WS_HS_BAD_REQUEST;
    if (!req->upgrade_websocket && req->key.p == NULL && req->version.p == NULL)
        return WS_HS_PLAIN;

    if (!get || req->minor_version != 1 || !req->upgrade_websocket || !req->connection_upgrade)
        return WS_HS_BAD_REQUEST;
    /* The version is checked before the key: a client of another version may
     * format its key differently, and 426 tells it to retry with 13. */
    if (req->version.p == NULL)
        return WS_HS_BAD_REQUEST;
    if (req->version.len != 2 || memcmp(req->version.p, "13", 2) != 0)
        return WS_HS_UPGRADE_REQUIRED;
    if (!ws_key_valid(&req->key))
        return WS_HS_BAD_REQUEST;
    return WS_HS_UPGRADE;
}

size_t ws_cgi_name(char *out, size_t size, const char *name, size_t nlen)
{
    if (size < nlen + 6 || memchr(name, '_', nlen) != NULL || ws_str_ieq(name, nlen, "proxy"))
        return 0;
    memcpy(out, "HTTP_", 5);
    for (size_t i = 0; i < nlen; i++) {
        char c = name[i];
        out[5 + i] = c == '-' ? '_' : (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
    }
    out[5 + nlen] = '\0';
    return nlen + 5;
}

/* Splits "host[:port]" (IPv6 literals in brackets); port -1 when absent,
 * -2 when malformed. */
static long ws_split_hostport(const char *p, size_t n, size_t *hostlen)
{
    size_t end = n;
    if (n > 0 && p[0] == '[') {
        const char *rb = memchr(p, ']', n);
        if (!rb)
            return -2;
        end = (size_t)(rb - p) + 1;
        if (end < n && p[end] != ':')
            return -2;
    } else {
        const char *colon = memchr(p, ':', n);
        if (colon)
            end = (size_t)(colon - p);
    }
    *hostlen = end;
    if (end == 0)
        return -2;
    if (end == n)
        return -1;
    long port = 0;
    if (end + 1 == n || n - end - 1 > 5)
        return -2;
    for (size_t i = end + 1; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -2;
        port = port * 10 + (p[i] - '0');
    }
    return port >= 1 && port <= 65535 ? port : -2;
}

int ws_origin_same_host(const char *origin, size_t olen, const char *host, size_t hlen)
{
    static const struct {
        const char *scheme;
        long port;
    } schemes[] = {{"http://", 80}, {"https://", 443}, {"ws://", 80}, {"wss://", 443}};
    long def = -1;
    size_t skip = 0;
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        size_t sl = strlen(schemes[i].scheme);
        if (olen > sl && ws_str_ieq(origin, sl, schemes[i].scheme)) {
            def = schemes[i].port;
            skip = sl;
            break;
        }
    }
    if (def < 0 || host == NULL || hlen == 0)
        return 0;
    const char *o = origin + skip;
    size_t on = olen - skip;
    if (on > 0 && o[on - 1] == '/') /* tolerate a trailing slash */
        on--;
    if (memchr(o, '/', on) || memchr(o, '@', on))
        return 0;
    size_t ohl, hhl;
    long op = ws_split_hostport(o, on, &ohl), hp = ws_split_hostport(host, hlen, &hhl);
    if (op == -2 || hp == -2)
        return 0;
    if (op == -1)
        op = def;
    if (hp == -1)
        hp = def;
    if (op != hp || ohl != hhl)
        return 0;
    for (size_t i = 0; i < ohl; i++)
        if (ws_lower((unsigned char)o[i]) != ws_lower((unsigned char)host[i]))
            return 0;
    return 1;
}

int ws_select_subprotocol(const char *offer, size_t len, char *const *supported)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (ws_is_space(offer[i]) || offer[i] == ','))
            i++;
        size_t start = i;
        while (i < len && offer[i] != ',')
            i++;
        size_t end = i;
        while (end > start && ws_is_space(offer[end - 1]))
            end--;
        if (end == start)
            continue;
        for (int k = 0; supported[k] != NULL; k++)
            if (strlen(supported[k]) == end - start
                && memcmp(supported[k], offer + start, end - start) == 0)
                return k;
    }
    return -1;
}

/* SHA-1 fetched from the provider once: the one-shot SHA1() looks it up on
 * every call, and its first call touches a few MB of the library, which a
 * process that calls ws_init() at start pays there, not at its first client. */
static EVP_MD *ws_sha1;

void ws_init(void)
{
    if (!ws_sha1)
        ws_sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
    char out[WS_ACCEPT_LEN + 1];
    ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out);
}

int ws_accept_key(const char *key, size_t keylen, char out[WS_ACCEPT_LEN + 1])
{
    unsigned char buf[64 + sizeof(WS_GUID)];
    unsigned char md[SHA_DIGEST_LENGTH];

    if (keylen > 64)
        return -1;
    memcpy(buf, key, keylen);
    memcpy(buf + keylen, WS_GUID, sizeof(WS_GUID) - 1);
    if (EVP_Digest(buf, keylen + sizeof(WS_GUID) - 1, md, NULL, ws_sha1 ? ws_sha1 : EVP_sha1(),
                   NULL)
        != 1)
        return -1;
    EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH);
    return 0;
}

long ws_build_accept(char *out, size_t size, const struct ws_request *req, const char *protocol)
{
    char accept[WS_ACCEPT_LEN + 1];
    if (req->key.p == NULL || ws_accept_key(req->key.p, req->key.len, accept) < 0)
        return -1;
    int n = snprintf(out, size,
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n"
                     "%s%s%s"
                     "\r\n",
                     accept, protocol ? "Sec-WebSocket-Protocol: " : "", protocol ? protocol : "",
                     protocol ? "\r\n" : "");
    return n < 0 || (size_t)n >= size ? -1 : n;
}

long ws_build_error(char *out, size_t size, int status)
{
    static const struct {
        int status;
        const char *reason;
        const char *headers; /* extra header lines the status calls for */
    } table[] = {
        {400, "Bad Request", ""},
        {403, "Forbidden", ""},
        {404, "Not Found", ""},
        {405, "Method Not Allowed", "Allow: GET, HEAD\r\n"},
        {414, "URI Too Long", ""},
        {426, "Upgrade Required", "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"},
        {500, "Internal Server Error", ""},
        {503, "Service Unavailable", ""},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (table[i].status != status)
            continue;
        /* body: "<status> <reason>\n" */
        size_t body = 4 + strlen(table[i].reason) + 1;
        int n = snprintf(out, size,
                         "HTTP/1.1 %d %s\r\n"
                         "Content-Type: text/plain; charset=utf-8\r\n"
                         "Content-Length: %zu\r\n"
                         "Connection: close\r\n"
                         "%s"
                         "\r\n"
                         "%d %s\n",
                         status, table[i].reason, body, table[i].headers, status, table[i].reason);
        return n < 0 || (size_t)n >= size ? -1 : n;
    }
    return -1;
}

/* ---- Frames ---- */

static int ws_frame_fail(struct ws_frame *f, int code)
{
    f->close_code = code;
    return WS_ERROR;
}

int ws_parse_frame(const uint8_t *p, size_t len, int from_client, uint64_t max_payload,
                   struct ws_frame *f)
{
    memset(f, 0, sizeof(*f));
    if (len < 1)
        return WS_AGAIN;
    f->fin = p[0] >> 7;
    f->opcode = p[0] & 0x0f;
    if (p[0] & 0x70)
        return ws_frame_fail(f, WS_CLOSE_PROTOCOL);
    switch (f->opcode) {
    case WS_OP_CONT:
    case WS_OP_TEXT:
    case WS_OP_BINARY:
    case WS_OP_CLOSE:
    case WS_OP_PING:
    case WS_OP_PONG:
        break;
    default:
        return ws_frame_fail(f, WS_CLOSE_PROTOCOL);
    }
    int control = ws_opcode_is_control(f->opcode);
    if (control && !f->fin)
        return ws_frame_fail(f, WS_CLOSE_PROTOCOL);
    if (len < 2)
        return WS_AGAIN;

    f->masked = p[1] >> 7;
    unsigned len7 = p[1] & 0x7f;
    /* §5.1: a server must close on an unmasked client frame, a client on a masked
     * server frame. */
    if (f->masked != (from_client != 0))
        return ws_frame_fail(f, WS_CLOSE_PROTOCOL);
    if (control && len7 > WS_MAX_CONTROL_PAYLOAD)
        return ws_frame_fail(f, WS_CLOSE_PROTOCOL);

    size_t extlen = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    if (extlen == 8 && len >= 3 && (p[2] & 0x80))
        return ws_frame_fail(f, WS_CLOSE_PROTOCOL);
    if (len < 2 + extlen)
        return WS_AGAIN;
    uint64_t plen = len7;
    if (extlen) {
        plen = 0;
        for (size_t i = 0; i < extlen; i++)
            plen = plen << 8 | p[2 + i];
    }
    f->payload_len = plen;
    if (plen > max_payload)
        return ws_frame_fail(f, WS_CLOSE_TOO_BIG);

    size_t hlen = 2 + extlen + (f->masked ? 4 : 0);
    if (len < hlen)
        return WS_AGAIN;
    if (f->masked)
        memcpy(f->mask, p + 2 + extlen, 4);
    f->header_len = hlen;
    return (int)hlen;
}

void ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset)
{
    uint8_t k[8];
    for (int i = 0; i < 8; i++)
        k[i] = mask[(offset + (unsigned)i) & 3];
    size_t i = 0;
    /* Eight bytes at a time: the key repeats every four bytes, so an eight-byte
     * word of it lines up at every multiple of eight. memcpy keeps it
     * alignment-safe and compiles to plain loads and stores. */
    if (n >= 8) {
        uint64_t kw;
        memcpy(&kw, k, 8);
        for (; i + 8 <= n; i += 8) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            w ^= kw;
            memcpy(p + i, &w, 8);
        }
    }
    for (; i < n; i++)
        p[i] ^= k[i & 3];
}

static size_t ws_put_header(uint8_t *out, int opcode, int fin, uint64_t len, uint8_t maskbit)
{
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
    if (len < 126) {
        out[1] = (uint8_t)(maskbit | len);
        return 2;
    }
    if (len <= 0xffff) {
        out[1] = maskbit | 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = maskbit | 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

size_t ws_frame_header(uint8_t out[WS_MAX_FRAME_HEADER], int opcode, int fin, uint64_t len)
{
    return ws_put_header(out, opcode, fin, len, 0);
}

size_t ws_client_frame_header(uint8_t out[WS_MAX_FRAME_HEADER], int opcode, int fin, uint64_t len,
                              const uint8_t mask[4])
{
    size_t n = ws_put_header(out, opcode, fin, len, 0x80);
    memcpy(out + n, mask, 4);
    return n + 4;
}

size_t ws_close_payload(uint8_t out[WS_MAX_CONTROL_PAYLOAD], int code, const char *reason,
                        size_t reason_len)
{
    if (code == 0)
        return 0;
    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)code;
    if (reason_len > WS_MAX_CONTROL_PAYLOAD - 2) {
        reason_len = WS_MAX_CONTROL_PAYLOAD - 2;
        /* Back up to the lead byte of a character the cut would split. */
        while (reason_len > 0 && ((unsigned char)reason[reason_len] & 0xc0) == 0x80)
            reason_len--;
    }
    if (reason_len)
        memcpy(out + 2, reason, reason_len);
    return 2 + reason_len;
}

int ws_close_code_valid(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011)
           || (code >= 3000 && code <= 4999);
}

int ws_close_parse(const uint8_t *p, size_t n, int *code, const uint8_t **reason,
                   size_t *reason_len)
{
    *reason = p;
    *reason_len = 0;
    if (n == 0) {
        *code = WS_CLOSE_NO_STATUS;
        return 0;
    }
    if (n == 1)
        return WS_CLOSE_PROTOCOL;
    *code = p[0] << 8 | p[1];
    *reason = p + 2;
    *reason_len = n - 2;
    if (!ws_close_code_valid(*code))
        return WS_CLOSE_PROTOCOL;
    struct ws_utf8 u = {0};
    if (ws_utf8_feed(&u, p + 2, n - 2) != WS_UTF8_ACCEPT)
        return WS_CLOSE_INVALID_DATA;
    return 0;
}

/* ---- UTF-8 ---- */

int ws_utf8_feed(struct ws_utf8 *u, const uint8_t *p, size_t n)
{
    size_t i = 0;
    if (u->need == 0xff)
        return WS_UTF8_INVALID;
    while (i < n) {
        uint8_t c;
        if (u->need == 0) {
            /* Most chat text is ASCII: skip it a word at a time. */
            for (; i + 8 <= n; i += 8) {
                uint64_t w;
                memcpy(&w, p + i, 8);
                if (w & 0x8080808080808080ull)
                    break;
            }
            if (i == n)
                break;
            c = p[i++];
            if (c < 0x80)
                continue;
            /* Lead bytes and the range of the byte after them, from Unicode table
             * 3-7: C0/C1 and E0 80-9F / F0 80-8F would be overlong, ED A0-BF a
             * surrogate, F4 90+ and F5-FF beyond U+10FFFF. */
            if (c < 0xc2)
                goto bad;
            u->lo = 0x80;
            u->hi = 0xbf;
            if (c < 0xe0) {
                u->need = 1;
            } else if (c < 0xf0) {
                u->need = 2;
                if (c == 0xe0)
                    u->lo = 0xa0;
                else if (c == 0xed)
                    u->hi = 0x9f;
            } else if (c < 0xf5) {
                u->need = 3;
                if (c == 0xf0)
                    u->lo = 0x90;
                else if (c == 0xf4)
                    u->hi = 0x8f;
            } else {
                goto bad;
            }
        } else {
            c = p[i++];
            if (c < u->lo || c > u->hi)
                goto bad;
            u->need--;
            u->lo = 0x80;
            u->hi = 0xbf;
        }
    }
    return u->need ? WS_UTF8_INCOMPLETE : WS_UTF8_ACCEPT;
bad:
    u->need = 0xff;
    return WS_UTF8_INVALID;
}

/* ---- Message assembly ---- */

void ws_message_init(struct ws_message *m)
{
    memset(m, 0, sizeof(*m));
}

int ws_message_frame(struct ws_message *m, const struct ws_frame *f, uint64_t max_size)
{
    if (ws_opcode_is_control(f->opcode))
        return 0;
    if (f->opcode == WS_OP_CONT) {
        if (m->opcode == 0)
            return WS_CLOSE_PROTOCOL;
    } else {
        if (m->opcode != 0)
            return WS_CLOSE_PROTOCOL;
        ws_message_init(m);
        m->opcode = f->opcode;
    }
    /* m->size <= max_size always holds here, so this cannot wrap. */
    if (f->payload_len > max_size - m->size)
        return WS_CLOSE_TOO_BIG;
    m->size += f->payload_len;
    m->fin = f->fin;
    return 0;
}

int ws_message_data(struct ws_message *m, const uint8_t *p, size_t n)
{
    if (m->opcode == WS_OP_TEXT && ws_utf8_feed(&m->utf8, p, n) == WS_UTF8_INVALID)
        return WS_CLOSE_INVALID_DATA;
    return 0;
}

int ws_message_end(struct ws_message *m)
{
    int code = m->opcode == WS_OP_TEXT && m->utf8.need != 0 ? WS_CLOSE_INVALID_DATA : 0;
    ws_message_init(m);
    return code;
}
