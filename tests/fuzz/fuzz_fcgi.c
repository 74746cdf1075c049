/* fuzz_fcgi.c - libFuzzer target for the FastCGI codec, read the way backend.c
 * reads a backend's reply: records one after another; PARAMS content walked as
 * name-value pairs, END_REQUEST bodies decoded, STDOUT content fed to the CGI
 * header parser. Each record's content is copied into an allocation of its
 * exact size so ASan catches any read past what the record holds.
 *
 * Beyond "does not crash", it checks properties and aborts when one fails:
 * decoded pairs lie inside their record and survive an encode/decode round
 * trip, and the CGI parser gives the same answer whether STDOUT arrives whole
 * per record or cut into pseudo-random pieces (seeded by the input), down to
 * the partial-line state it carries from one piece to the next, and the
 * reply commands (X-Fooking-*) its sink is told. Each command's value is then
 * run through the value parsers (lists, flags, close codes), whose results
 * must lie inside the value and obey their bounds. */
#include "fcgi.h"

#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static uint32_t fuzz_rand(uint32_t *s)
{
    /* xorshift32: any deterministic sequence will do, it only picks cut points. */
    uint32_t x = *s ? *s : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

static void fuzz_params(const uint8_t *p, size_t len)
{
    size_t off = 0;
    while (off < len) {
        const uint8_t *name, *value;
        size_t nlen, vlen;
        long rc = fcgi_nv_decode(p + off, len - off, &name, &nlen, &value, &vlen);
        if (rc == FCGI_AGAIN || rc == FCGI_ERROR)
            return;
        FUZZ_CHECK(rc > 0 && (size_t)rc <= len - off);
        FUZZ_CHECK(name >= p + off && name + nlen <= p + off + (size_t)rc);
        FUZZ_CHECK(value == name + nlen && value + vlen == p + off + (size_t)rc);

        /* Re-encoding may be shorter (a small length may have come in four
         * bytes) but must decode to the same pair. */
        size_t size = fcgi_nv_size(nlen, vlen);
        FUZZ_CHECK(size > 0 && size <= (size_t)rc);
        uint8_t *buf = malloc(size);
        FUZZ_CHECK(buf != NULL);
        FUZZ_CHECK(fcgi_nv_encode(buf, (const char *)name, nlen, (const char *)value, vlen)
                   == size);
        const uint8_t *n2, *v2;
        size_t nl2, vl2;
        FUZZ_CHECK(fcgi_nv_decode(buf, size, &n2, &nl2, &v2, &vl2) == (long)size);
        FUZZ_CHECK(nl2 == nlen && vl2 == vlen);
        FUZZ_CHECK(memcmp(n2, name, nlen) == 0 && memcmp(v2, value, vlen) == 0);
        free(buf);
        off += (size_t)rc;
    }
}

/* What a parser's sink is told, as backend.c keeps it: per command line
 * '@' + cmd | value | cut byte | LF. */
struct fuzz_cmds {
    uint8_t *buf;
    size_t len, cap;
    int open;
};
static void fuzz_put(struct fuzz_cmds *o, const void *p, size_t n)
{
    FUZZ_CHECK(o->len + n <= o->cap);
    memcpy(o->buf + o->len, p, n);
    o->len += n;
}
static void fuzz_cmd_begin(void *arg, int cmd)
{
    struct fuzz_cmds *o = arg;
    FUZZ_CHECK(!o->open && cmd > CGI_CMD_NONE && cmd <= CGI_CMD_UNKNOWN);
    o->open = 1;
    uint8_t b = (uint8_t)('@' + cmd);
    fuzz_put(o, &b, 1);
}
static void fuzz_cmd_data(void *arg, const uint8_t *p, size_t n)
{
    struct fuzz_cmds *o = arg;
    FUZZ_CHECK(o->open && n > 0 && memchr(p, '\n', n) == NULL);
    fuzz_put(o, p, n);
}
static void fuzz_cmd_end(void *arg, int cut)
{
    struct fuzz_cmds *o = arg;
    FUZZ_CHECK(o->open);
    o->open = 0;
    uint8_t b[2] = {(uint8_t)(cut != 0), '\n'};
    fuzz_put(o, b, 2);
}
static const struct cgi_sink fuzz_sink = {fuzz_cmd_begin, fuzz_cmd_data, fuzz_cmd_end};

/* The value parsers on one command's value. */
static void fuzz_value(int cmd, const uint8_t *v, size_t n)
{
    const uint8_t *p = v, *end = v + n, *item;
    size_t len;
    while (cgi_list_next(&p, end, &item, &len)) {
        FUZZ_CHECK(len > 0 && item >= v && item + len <= end && p <= end);
        FUZZ_CHECK(item[0] != ' ' && item[0] != '\t' && item[len - 1] != ' ');
        FUZZ_CHECK(item[len - 1] != '\t' && memchr(item, ',', len) == NULL);
    }
    int f = cgi_flag(v, n);
    FUZZ_CHECK(f >= -1 && f <= 1);
    int code;
    const uint8_t *reason;
    size_t rlen;
    const char *why = NULL;
    if (cgi_close_parse(v, n, &code, &reason, &rlen, &why) == FCGI_OK) {
        FUZZ_CHECK(code == 1000 || (code >= 3000 && code <= 4999));
        FUZZ_CHECK(rlen <= CGI_CLOSE_REASON_MAX && reason >= v && reason + rlen <= end);
    } else {
        FUZZ_CHECK(why != NULL);
    }
    size_t tn = n;
    const uint8_t *t = cgi_trim(v, &tn);
    FUZZ_CHECK(t >= v && t + tn <= end);
    (void)cmd;
}

static void fuzz_values(const struct fuzz_cmds *o)
{
    const uint8_t *p = o->buf, *end = o->buf + o->len;
    while (p < end) {
        const uint8_t *lf = memchr(p, '\n', (size_t)(end - p));
        if (lf == NULL)
            return; /* a line begun, never ended */
        FUZZ_CHECK(lf - p >= 2);
        fuzz_value(p[0] - '@', p + 1, (size_t)(lf - p) - 2);
        p = lf + 1;
    }
}

struct fuzz_stdout {
    struct cgi_parser whole; /* fed each record in one piece */
    struct cgi_parser split; /* fed the same bytes in random pieces */
    struct fuzz_cmds whole_cmds, split_cmds;
    int failed;
    uint32_t seed;
};

static void fuzz_stdout(struct fuzz_stdout *fs, const uint8_t *p, size_t len)
{
    if (fs->failed)
        return;
    long w = cgi_parser_feed(&fs->whole, p, len);
    long header = 0; /* bytes the split parser took as header */
    int split_failed = 0;
    size_t off = 0;
    do {
        size_t n = len - off == 0 ? 0 : fuzz_rand(&fs->seed) % (len - off) + 1;
        int was_done = fs->split.done;
        long rc = cgi_parser_feed(&fs->split, p + off, n);
        if (rc == FCGI_ERROR) {
            split_failed = 1;
            break;
        }
        FUZZ_CHECK(rc >= 0 && (size_t)rc <= n);
        FUZZ_CHECK(!was_done || rc == 0);
        FUZZ_CHECK(fs->split.done || (size_t)rc == n);
        header += rc;
        off += n;
    } while (off < len);

    if (w == FCGI_ERROR || split_failed) {
        FUZZ_CHECK(w == FCGI_ERROR && split_failed);
        fs->failed = 1;
        return;
    }
    FUZZ_CHECK(w == header);
    FUZZ_CHECK(fs->whole.done == fs->split.done);
    FUZZ_CHECK(fs->whole.status == fs->split.status);
    FUZZ_CHECK(fs->whole.content_length == fs->split.content_length);
    FUZZ_CHECK(fs->whole.total == fs->split.total);
    FUZZ_CHECK(memcmp(&fs->whole.line, &fs->split.line, sizeof(fs->whole.line)) == 0);
    FUZZ_CHECK(fs->whole.line.len <= CGI_MAX_CMD_LINE);
    FUZZ_CHECK(fs->whole.ncmds == fs->split.ncmds);
    FUZZ_CHECK(fs->whole_cmds.len == fs->split_cmds.len
               && fs->whole_cmds.open == fs->split_cmds.open);
    FUZZ_CHECK(memcmp(fs->whole_cmds.buf, fs->split_cmds.buf, fs->whole_cmds.len) == 0);
    FUZZ_CHECK(fs->whole.total <= CGI_MAX_HEADER);
    FUZZ_CHECK(fs->whole.status >= 100 && fs->whole.status <= 599);
    FUZZ_CHECK(fs->whole.content_length >= -1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fuzz_stdout fs;
    static uint8_t whole_buf[2 * CGI_MAX_HEADER], split_buf[2 * CGI_MAX_HEADER];
    cgi_parser_init(&fs.whole);
    cgi_parser_init(&fs.split);
    fs.whole_cmds = (struct fuzz_cmds){whole_buf, 0, sizeof(whole_buf), 0};
    fs.split_cmds = (struct fuzz_cmds){split_buf, 0, sizeof(split_buf), 0};
    fs.whole.sink = fs.split.sink = &fuzz_sink;
    fs.whole.sink_arg = &fs.whole_cmds;
    fs.split.sink_arg = &fs.split_cmds;
    fs.failed = 0;
    fs.seed = size > 0 ? (uint32_t)data[size - 1] * 0x01000193u + (uint32_t)size : 1;

    size_t off = 0;
    while (off < size) {
        struct fcgi_header h;
        int rc = fcgi_header_decode(data + off, size - off, &h);
        if (rc != FCGI_OK)
            break;
        FUZZ_CHECK(h.version == FCGI_VERSION_1);
        uint8_t again[FCGI_HEADER_LEN];
        fcgi_header_encode(again, h.type, h.request_id, h.content_length, h.padding_length);
        FUZZ_CHECK(memcmp(again, data + off, 7) == 0); /* byte 7 is reserved */
        off += FCGI_HEADER_LEN;

        /* A last record may claim more than is left: use what is there. */
        size_t clen = h.content_length;
        if (clen > size - off)
            clen = size - off;
        uint8_t *content = malloc(clen ? clen : 1);
        FUZZ_CHECK(content != NULL);
        memcpy(content, data + off, clen);
        switch (h.type) {
        case FCGI_PARAMS:
        case FCGI_GET_VALUES:
        case FCGI_GET_VALUES_RESULT:
            fuzz_params(content, clen);
            break;
        case FCGI_END_REQUEST: {
            uint32_t app;
            uint8_t proto;
            int erc = fcgi_end_request_decode(content, clen, &app, &proto);
            FUZZ_CHECK(erc == (clen < 8 ? FCGI_ERROR : FCGI_OK));
            break;
        }
        case FCGI_STDOUT:
            fuzz_stdout(&fs, content, clen);
            break;
        default:
            break;
        }
        free(content);
        off += clen;
        off += h.padding_length < size - off ? h.padding_length : size - off;
    }
    if (!fs.failed)
        fuzz_values(&fs.whole_cmds);
    return 0;
}
