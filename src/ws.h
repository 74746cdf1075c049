/* ws.h - RFC 6455 WebSocket codec: opening handshake, frames, fragmentation,
 * UTF-8 and close codes.
 * Pure functions over caller buffers: no sockets, no allocation, no logging, no
 * globals. The client module owns the connection, its buffers and its timers; it
 * calls these to decide what the bytes mean and what to answer. The client-side
 * (masked) frame builder is for bench/'s load generator.
 *
 * Conventions: parsers return "need more bytes" (WS_AGAIN), "malformed"
 * (WS_ERROR) or a byte count; failures a peer must be told about come back as the
 * HTTP status or the WebSocket close code to send. Pointers in results point into
 * the caller's buffer and live as long as it does. */
#ifndef FOOKING_WS_H
#define FOOKING_WS_H

#include <stddef.h>
#include <stdint.h>

enum { WS_AGAIN = -1, WS_ERROR = -2 };

/* ---- Opening handshake (RFC 6455 §4.2) ---- */

/* Longest request head (request line + headers + blank line) we buffer. Browsers
 * send well under 2 KB; the bound keeps a slow client from holding memory. */
#define WS_MAX_HEAD 8192
/* Header lines kept per request; more is answered 400. */
#define WS_MAX_HEADERS 64

struct ws_str {
    const char *p; /* into the caller's buffer; NULL when absent */
    size_t len;
};

struct ws_header {
    struct ws_str name;  /* as sent (case preserved) */
    struct ws_str value; /* leading and trailing spaces/tabs removed */
};

/* A parsed request head. Everything points into the buffer given to
 * ws_parse_request(). To keep the headers for the life of a session, copy the
 * first `consumed` bytes once and parse the copy again: parsing is deterministic
 * and cheap, and then nothing points into a buffer that will be reused. */
struct ws_request {
    struct ws_str method;
    struct ws_str target; /* request-target as sent: REQUEST_URI */
    struct ws_str path;   /* target up to the first '?' (still percent-encoded) */
    struct ws_str query;  /* after the first '?', without it: QUERY_STRING ("" if none) */
    int minor_version;    /* HTTP/1.<minor_version>, 0 or 1 */
    size_t num_headers;
    struct ws_header headers[WS_MAX_HEADERS];

    /* The headers the handshake needs, picked out while parsing (first occurrence;
     * a repeated Host, Sec-WebSocket-Key or Sec-WebSocket-Version is counted in
     * `duplicates` and answered 400). Upgrade and Connection are token lists that
     * may be split across several lines, so only the tokens we look for are kept. */
    struct ws_str host;
    struct ws_str origin;   /* for the caller's allow-list (answer 403 on mismatch) */
    struct ws_str key;      /* Sec-WebSocket-Key */
    struct ws_str version;  /* Sec-WebSocket-Version */
    struct ws_str protocol; /* Sec-WebSocket-Protocol: the client's offer (first line) */
    int upgrade_websocket;  /* ... and lists the token "websocket" */
    int connection_upgrade; /* Connection lists the token "upgrade" */
    int duplicates;
};

/* Parses the request head at buf (len bytes available). last_len is how many of
 * these bytes an earlier call already saw and answered WS_AGAIN for (0 on the first
 * call), so a head arriving a byte at a time is scanned once, not once per byte.
 * Returns the head length in bytes (> 0, including the blank line; anything after
 * it is not part of the handshake), WS_AGAIN when the blank line has not arrived
 * yet, or WS_ERROR when the head is malformed or longer than WS_MAX_HEAD: answer
 * 400 and close. Accepts CRLF line ends only, origin-form targets ("/...") only,
 * HTTP/1.0 and HTTP/1.1. Every header line is checked (token name, no space before
 * the colon, no control bytes in the value, no obsolete line folding), so a header
 * passed on to a backend is always well-formed. */
long ws_parse_request(const char *buf, size_t len, size_t last_len, struct ws_request *req);

/* What to do with a parsed request. The values are the HTTP status to answer, so
 * any value other than WS_HS_UPGRADE and WS_HS_PLAIN can go to ws_build_error(). */
enum ws_verdict {
    WS_HS_UPGRADE = 101,            /* valid version-13 handshake: ws_build_accept() */
    WS_HS_PLAIN = 200,              /* GET/HEAD with no WebSocket headers: static file */
    WS_HS_BAD_REQUEST = 400,        /* missing/invalid key, Upgrade or Connection token
                                       or Host; an HTTP/1.0 or HEAD upgrade; a
                                       duplicate Host/key/version */
    WS_HS_METHOD_NOT_ALLOWED = 405, /* neither GET nor HEAD */
    WS_HS_UPGRADE_REQUIRED = 426,   /* Sec-WebSocket-Version present but not 13 */
};

/* Decides from the fields ws_parse_request() filled in. A request counts as a
 * WebSocket attempt (and must then be complete and correct) when it has an
 * "Upgrade: websocket" token, a Sec-WebSocket-Key or a Sec-WebSocket-Version;
 * other Upgrade values (h2c, ...) are ignored as HTTP allows. The Origin check is
 * the caller's: it knows the allow-list. */
enum ws_verdict ws_check_request(const struct ws_request *req);

/* Writes the CGI name of a request header: "HTTP_" + upper case, '-' as '_'
 * ("User-Agent" -> "HTTP_USER_AGENT"), NUL-terminated. Returns its length, or 0
 * when the header must not be passed on or out (size >= nlen + 6 is always enough):
 * - names containing '_': "X_Real_IP" would become the same param as the
 *   "X-Real-IP" a proxy in front sets, so a client could forge it (nginx drops
 *   these by default for the same reason);
 * - "Proxy": HTTP_PROXY is read as the outgoing proxy by many HTTP libraries in
 *   the backend (the "httpoxy" hole). */
size_t ws_cgi_name(char *out, size_t size, const char *name, size_t nlen);

/* Whether a browser's Origin ("scheme://host[:port]") names the same host and
 * port as the Host header: the default ALLOWED_ORIGINS policy, which stops a
 * page of another site from opening a socket with the user's cookies. Host
 * names compare case-insensitively; a port left out is the scheme's default
 * (80 for http/ws, 443 for https/wss). "null" and anything unparsable: 0. */
int ws_origin_same_host(const char *origin, size_t olen, const char *host, size_t hlen);

/* Picks the subprotocol to answer: the first token of the client's comma-separated
 * offer (in the client's order of preference) that is in `supported` (a
 * NULL-terminated list, as config.h's ws_subprotocols). Names compare case-sensitively, as RFC 6455
 * requires. Returns its index in `supported`, or -1 when none matches (then answer without a
 * Sec-WebSocket-Protocol header; the client decides whether to go on). */
int ws_select_subprotocol(const char *offer, size_t len, char *const *supported);

/* Length of a Sec-WebSocket-Accept value, without a terminating NUL. */
#define WS_ACCEPT_LEN 28

/* Computes base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")) into out
 * (NUL-terminated). The key is hashed as sent; validate it first (a valid key is
 * 24 bytes). Returns 0, or -1 for a key over 64 bytes. */
int ws_accept_key(const char *key, size_t keylen, char out[WS_ACCEPT_LEN + 1]);

/* Writes the "101 Switching Protocols" response for req (which must have been
 * judged WS_HS_UPGRADE) into out. protocol is the chosen subprotocol or NULL.
 * Returns the response length, or -1 when it does not fit in size bytes
 * (256 + strlen(protocol) is always enough). */
/* Optional, once per process before the first handshake: looks SHA-1 up in
 * the crypto library once instead of at every handshake. */
void ws_init(void);
long ws_build_accept(char *out, size_t size, const struct ws_request *req, const char *protocol);

/* Writes a complete error response with a short text body and "Connection: close"
 * for status 400, 403, 404, 405 (with Allow), 414, 426 (with Upgrade and
 * Sec-WebSocket-Version: 13), 500 or 503. Returns its length, or -1 for another
 * status or when it does not fit (256 bytes is always enough). */
long ws_build_error(char *out, size_t size, int status);

/* ---- Frames (RFC 6455 §5) ---- */

enum ws_opcode {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

/* Close codes (RFC 6455 §7.4.1) we send or must recognise. */
enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_NO_STATUS = 1005, /* never on the wire: "the close frame had no code" */
    WS_CLOSE_ABNORMAL = 1006,  /* never on the wire: "no close frame at all" */
    WS_CLOSE_INVALID_DATA = 1007,
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_EXTENSION = 1010,
    WS_CLOSE_INTERNAL = 1011,
    WS_CLOSE_TLS = 1015, /* never on the wire */
};

/* Largest frame header: 2 + 8 (64-bit length) + 4 (mask). */
#define WS_MAX_FRAME_HEADER 14
/* Largest control frame payload (§5.5), so a close or ping fits one small buffer. */
#define WS_MAX_CONTROL_PAYLOAD 125

struct ws_frame {
    int fin;
    int opcode; /* enum ws_opcode */
    int masked;
    uint8_t mask[4];   /* valid when masked */
    size_t header_len; /* 2 to 14: the payload starts here */
    uint64_t payload_len;
    int close_code; /* set when ws_parse_frame() returns WS_ERROR */
};

/* Control frames (close, ping, pong) are the opcodes with the high bit set. */
static inline int ws_opcode_is_control(int opcode)
{
    return (opcode & 0x8) != 0;
}

/* Decodes one frame header at p (len bytes available). from_client is 1 on the
 * server side (frames must be masked) and 0 on the client side (frames must not
 * be). max_payload bounds one frame's payload (the message bound is
 * ws_message_frame()'s). Returns the header length (f->header_len) with f filled,
 * WS_AGAIN when the header is not complete, or WS_ERROR with f->close_code:
 * 1002 for RSV bits (no extension is negotiated), an unknown opcode, wrong
 * masking, a control frame that is fragmented or longer than 125 bytes, or a
 * 64-bit length with the top bit set; 1009 for a payload over max_payload.
 * Errors are reported as soon as the bytes that prove them are there, before the
 * rest of the header. Non-minimal length encodings are accepted. */
int ws_parse_frame(const uint8_t *p, size_t len, int from_client, uint64_t max_payload,
                   struct ws_frame *f);

/* XORs n payload bytes at p with the masking key, in place. offset is how many
 * bytes of this frame's payload came before p, so a payload can be unmasked piece
 * by piece as it arrives. Masking and unmasking are the same operation. */
void ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset);

/* Writes a server frame header (unmasked) for a payload of len bytes that the
 * caller sends separately, so a payload is never copied to be framed (and one
 * broadcast header serves every recipient). Returns its length: 2, 4 or 10. */
size_t ws_frame_header(uint8_t out[WS_MAX_FRAME_HEADER], int opcode, int fin, uint64_t len);

/* The same for a client (the load generator): masked with `mask`, which per §10.3
 * should be unpredictable. Returns 6, 8 or 14. Mask the payload with ws_unmask(). */
size_t ws_client_frame_header(uint8_t out[WS_MAX_FRAME_HEADER], int opcode, int fin, uint64_t len,
                              const uint8_t mask[4]);

/* Writes a close frame payload: code (big-endian) then reason, cut to fit the
 * 125-byte control frame limit at a UTF-8 character boundary (a cut inside a
 * character would make the peer fail us with 1007). code 0 writes an empty
 * payload. Returns the payload length. */
size_t ws_close_payload(uint8_t out[WS_MAX_CONTROL_PAYLOAD], int code, const char *reason,
                        size_t reason_len);

/* 1 when a peer may send this code in a close frame (1000-1003, 1007-1011,
 * 3000-4999), else 0. 1005, 1006 and 1015 are for reporting, never the wire. */
int ws_close_code_valid(int code);

/* Reads a received close payload: *code is the code, or 1005 when the payload is
 * empty; *reason and *reason_len the rest. Returns 0, 1002 (one-byte payload or a
 * code a peer may not send) or 1007 (reason not UTF-8): the code to close with. */
int ws_close_parse(const uint8_t *p, size_t n, int *code, const uint8_t **reason,
                   size_t *reason_len);

/* ---- UTF-8 (RFC 3629, Unicode table 3-7) ---- */

/* Incremental validator state: zero it to start. Characters may be split across
 * calls (frames or socket reads). */
struct ws_utf8 {
    uint8_t need;   /* continuation bytes still expected; 0xff after an error */
    uint8_t lo, hi; /* allowed range of the next continuation byte */
};

enum { WS_UTF8_ACCEPT = 0, WS_UTF8_INCOMPLETE = 1, WS_UTF8_INVALID = -1 };

/* Validates n more bytes. Returns WS_UTF8_INVALID (overlong form, surrogate, code
 * point over U+10FFFF, stray or missing continuation byte; it sticks),
 * WS_UTF8_INCOMPLETE (valid so far but ends inside a character: fine between
 * chunks, invalid at the end of a message), or WS_UTF8_ACCEPT. */
int ws_utf8_feed(struct ws_utf8 *u, const uint8_t *p, size_t n);

/* ---- Message assembly (RFC 6455 §5.4) ---- */

/* Fragmentation state of one connection's incoming data messages. Zero it (or
 * ws_message_init) at the start. Control frames go around it: they may come
 * between fragments and never touch it. */
struct ws_message {
    int opcode;          /* TEXT or BINARY of the message being received, 0 if none */
    int fin;             /* the current frame is the message's last */
    uint64_t size;       /* payload bytes announced so far by its frames */
    struct ws_utf8 utf8; /* text messages only */
};

void ws_message_init(struct ws_message *m);

/* Call for every data frame header, before its payload. Returns 0, or the close
 * code: 1002 for a continuation with no message started or a new TEXT/BINARY
 * frame while one is unfinished, 1009 when the message would exceed max_size. */
int ws_message_frame(struct ws_message *m, const struct ws_frame *f, uint64_t max_size);

/* Call with each piece of unmasked data-frame payload. Text is validated as it
 * comes so a bad message fails before it is all buffered. Returns 0 or 1007. */
int ws_message_data(struct ws_message *m, const uint8_t *p, size_t n);

/* Call after the last payload byte of the frame that had FIN (read m->opcode
 * first if needed). Returns 0, or 1007 when a text message ends inside a UTF-8
 * character. Either way the state is reset for the next message. */
int ws_message_end(struct ws_message *m);

#endif
