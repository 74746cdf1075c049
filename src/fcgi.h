/* fcgi.h - FastCGI 1.0 record codec and CGI response-header parser.
 * Pure functions over bytes: no sockets, no allocation, no logging. The backend
 * module (backend.c) owns the connections and calls these. */
#ifndef FOOKING_FCGI_H
#define FOOKING_FCGI_H

#include <stddef.h>
#include <stdint.h>

#define FCGI_VERSION_1   1
#define FCGI_HEADER_LEN  8
#define FCGI_MAX_CONTENT 65535

enum fcgi_type {
    FCGI_BEGIN_REQUEST = 1,
    FCGI_ABORT_REQUEST = 2,
    FCGI_END_REQUEST = 3,
    FCGI_PARAMS = 4,
    FCGI_STDIN = 5,
    FCGI_STDOUT = 6,
    FCGI_STDERR = 7,
    FCGI_DATA = 8,
    FCGI_GET_VALUES = 9,
    FCGI_GET_VALUES_RESULT = 10,
    FCGI_UNKNOWN_TYPE = 11,
};

enum { FCGI_RESPONDER = 1 };
enum { FCGI_KEEP_CONN = 1 };

struct fcgi_header {
    uint8_t version;
    uint8_t type;
    uint16_t request_id;
    uint16_t content_length;
    uint8_t padding_length;
};

/* Result codes of the parsers. */
enum { FCGI_OK = 0, FCGI_AGAIN = -1, FCGI_ERROR = -2 };

/* Decodes the 8-byte header at p (len bytes available).
 * FCGI_OK, FCGI_AGAIN (len < 8) or FCGI_ERROR (version != 1). */
int fcgi_header_decode(const uint8_t *p, size_t len, struct fcgi_header *h);
void fcgi_header_encode(uint8_t out[FCGI_HEADER_LEN], int type, uint16_t request_id,
                        uint16_t content_length, uint8_t padding_length);

/* BEGIN_REQUEST record (header + body), role RESPONDER. */
void fcgi_begin_request_encode(uint8_t out[16], uint16_t request_id, int keep_conn);

/* END_REQUEST body (8 bytes): app status and protocol status. FCGI_OK / FCGI_ERROR. */
int fcgi_end_request_decode(const uint8_t *body, size_t len, uint32_t *app_status,
                            uint8_t *protocol_status);

/* Name-value pair: size it takes encoded, and the encoding (lengths < 128 use one
 * byte, others four with the high bit set). out must hold fcgi_nv_size() bytes.
 * Names and values longer than 0x7fffffff are not representable (size returns 0). */
size_t fcgi_nv_size(size_t nlen, size_t vlen);
size_t fcgi_nv_encode(uint8_t *out, const char *name, size_t nlen, const char *value, size_t vlen);
/* Decodes one pair at p. Returns bytes consumed (> 0), FCGI_AGAIN if truncated,
 * FCGI_ERROR if malformed. Pointers point into p. */
long fcgi_nv_decode(const uint8_t *p, size_t len, const uint8_t **name, size_t *nlen,
                    const uint8_t **value, size_t *vlen);

/* Incremental CGI response-header parser (the head of STDOUT). Feed it STDOUT
 * bytes as they arrive, across record boundaries; it parses them in place and
 * keeps only a few bytes of state between calls (the start of the header name
 * and of the Status value, the Content-Length so far), never the line itself:
 * the values of reply commands (below) are handed to a sink as they arrive.
 * Accepts CRLF and bare LF line ends. */
/* The whole header: room for an X-Fooking-Session of the largest
 * SESSION_MAX_SIZE (16384) with every other command beside it. */
#define CGI_MAX_HEADER 65536
/* Longest header line (its CR included) that is read: a longer Status or
 * Content-Length line is refused, a longer line of any other header is passed
 * over unread (the backend may send a huge Set-Cookie; only the body counts). */
#define CGI_MAX_LINE 1024
/* Longest reply command line: longer, the command is cut (the sink is told)
 * and the rest of the line passed over. */
#define CGI_MAX_CMD_LINE 32768
/* Longest header name that is kept ("x-fooking-exclude-self" and room). */
#define CGI_NAME_MAX 32

/* Reply commands (DESIGN §13): response headers "X-Fooking-<name>" with which
 * a backend acts for the session its reply goes to. Header names are matched
 * without regard to case. CGI_CMD_UNKNOWN is any other X-Fooking-* header. */
enum cgi_cmd {
    CGI_CMD_NONE = 0,
    CGI_CMD_JOIN,         /* X-Fooking-Join: a, b */
    CGI_CMD_LEAVE,        /* X-Fooking-Leave: a, b */
    CGI_CMD_BIND_UID,     /* X-Fooking-Bind-Uid: 42 */
    CGI_CMD_UNBIND_UID,   /* X-Fooking-Unbind-Uid: 1 */
    CGI_CMD_SESSION,      /* X-Fooking-Session: <data> */
    CGI_CMD_PUBLISH,      /* X-Fooking-Publish: room, room2 */
    CGI_CMD_BROADCAST,    /* X-Fooking-Broadcast: 1 */
    CGI_CMD_EXCLUDE_SELF, /* X-Fooking-Exclude-Self: 1 */
    CGI_CMD_CLOSE,        /* X-Fooking-Close: 4001 reason */
    CGI_CMD_UNKNOWN,
};
/* The command a header name (n bytes, as received) is, CGI_CMD_NONE when the
 * name does not start with "X-Fooking-". */
int cgi_cmd_lookup(const char *name, size_t n);
/* "X-Fooking-Join" and so on, for logs. */
const char *cgi_cmd_name(int cmd);

/* Where the parser hands reply commands, one line at a time: begin, then the
 * value in pieces as it arrives (blanks before it skipped, those after it
 * kept, the CR of a CRLF left out; n > 0), then end. cut = 1 when the line was
 * longer than CGI_MAX_CMD_LINE: what came is all that is told, the rest of the
 * line is passed over. For CGI_CMD_UNKNOWN the value told is the header name
 * (its first CGI_NAME_MAX bytes). A header cut off by the end of the reply or
 * refused (FCGI_ERROR) leaves a line begun and never ended. */
struct cgi_sink {
    void (*begin)(void *arg, int cmd);
    void (*data)(void *arg, const uint8_t *p, size_t n);
    void (*end)(void *arg, int cut);
};

/* Where the parser is in the current line, and what it keeps of it. */
struct cgi_line {
    uint16_t len;  /* bytes so far, LF excluded */
    uint8_t state; /* in the name, in the value, or passing over the line */
    uint8_t cr;    /* the last byte was a CR: a line end if LF follows */
    uint8_t which; /* the header it is (Status, Content-Length, a command), once ':' is seen */
    uint8_t bad;   /* a Content-Length value that is not digits: refused at LF */
    uint8_t cmd;   /* which command, when it is one */
    uint16_t nlen, ntrim; /* name bytes, and those up to its last non-blank */
    uint16_t vlen, vtrim; /* value bytes after leading blanks, and up to the last non-blank */
    char name[CGI_NAME_MAX];
    char vhead[4]; /* the first value bytes: a Status code and what follows it */
    long cl;       /* Content-Length digits so far */
};
struct cgi_parser {
    int done;            /* blank line seen: the rest of STDOUT is body */
    int status;          /* from "Status: NNN ...", default 200 */
    long content_length; /* from "Content-Length", -1 when absent */
    size_t total;        /* header bytes consumed so far (bounded by CGI_MAX_HEADER) */
    unsigned ncmds;      /* reply command lines begun */
    struct cgi_line line;
    const struct cgi_sink *sink; /* NULL: reply commands are passed over like other headers */
    void *sink_arg;
};
void cgi_parser_init(struct cgi_parser *cp);
/* Consumes header bytes from p. Returns the number of bytes consumed as header
 * (the remaining len - ret bytes, if cp->done, are body), or FCGI_ERROR when the
 * header is over CGI_MAX_HEADER or a Status / Content-Length value is malformed. */
long cgi_parser_feed(struct cgi_parser *cp, const uint8_t *p, size_t len);

/* ---- reply command values ---- */

/* Blanks (space, tab) off both ends of p[0..*n). */
const uint8_t *cgi_trim(const uint8_t *p, size_t *n);
/* The next item of a comma-separated list at *p (up to end), blanks around it
 * trimmed; empty items are skipped. 1 with *item, *n set and *p moved past it,
 * or 0 when no item is left. */
int cgi_list_next(const uint8_t **p, const uint8_t *end, const uint8_t **item, size_t *n);
/* A flag: 1, true, yes -> 1; 0, false, no -> 0 (any case, blanks trimmed);
 * anything else -1. */
int cgi_flag(const uint8_t *p, size_t n);
/* "CODE[ reason]": a WebSocket close code a backend may send (1000, or 3000
 * to 4999) and a reason of at most CGI_CLOSE_REASON_MAX bytes (blanks
 * trimmed). FCGI_OK, or FCGI_ERROR with *why saying what is wrong. The reason
 * is not checked for UTF-8 here. */
#define CGI_CLOSE_REASON_MAX 123
int cgi_close_parse(const uint8_t *p, size_t n, int *code, const uint8_t **reason, size_t *rlen,
                    const char **why);

#endif
