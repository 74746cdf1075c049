/* conn.h - one stream socket with an input and an output evbuffer: the
 * transport under client and backend connections.
 *
 * A plain socket is a raw libevent event, registered with epoll once, in the
 * pattern of Redis's write-before-sleep: output added during a loop turn puts
 * the connection on a pending list, and the list is written once, after the
 * turn's callbacks (one writev per connection however many replies were
 * queued); EV_WRITE is armed only when the socket did not take everything.
 * Reads go straight into the input buffer's free space (one recv, no
 * FIONREAD). A TLS socket is a bufferevent_openssl behind the same functions.
 *
 * Callbacks may free the connection (conn_free) from inside: the struct and
 * its buffers go when the callback returns. */
#ifndef FOOKING_CONN_H
#define FOOKING_CONN_H

#include <stddef.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "counter.h"

struct conn;

/* Event flags (the same bits as libevent's BEV_EVENT_*). */
#define CONN_READING   0x01
#define CONN_WRITING   0x02
#define CONN_EOF       0x10
#define CONN_ERROR     0x20 /* errno (EVUTIL_SOCKET_ERROR) says which */
#define CONN_TIMEOUT   0x40
#define CONN_CONNECTED 0x80 /* connect done, or TLS handshake done */

typedef void (*conn_data_cb)(struct conn *c, void *arg);
typedef void (*conn_event_cb)(struct conn *c, short what, void *arg);

/* Over an accepted (or, with fd = -1, a not yet connected) socket, which the
 * connection then owns. With tls_ctx (an SSL_CTX) the server side of a TLS
 * session. NULL when out of memory (fd is not closed then). */
struct conn *conn_new(struct event_base *base, evutil_socket_t fd, void *tls_ctx);
/* The same, with ext bytes (zeroed) for the owner in the same allocation: an
 * owner that lives as long as its connection (a client) then costs no block
 * of its own. conn_ext gives the area. The memory is freed when both
 * conn_free (with its callbacks over) and conn_ext_free have been called;
 * conn_ext_free alone does both. */
struct conn *conn_new_ext(struct event_base *base, evutil_socket_t fd, void *tls_ctx, size_t ext);
void *conn_ext(struct conn *c);
void conn_ext_free(void *ext);
/* Connects a plain conn made with fd = -1: CONN_CONNECTED or CONN_ERROR /
 * CONN_TIMEOUT (the write timeout) later. -1 with errno when it failed at once. */
int conn_connect(struct conn *c, const struct sockaddr *sa, socklen_t len);
/* read: new input; drained: the output was written out (after a write, never
 * from inside conn_output's additions); event: CONN_* flags. Any may be NULL. */
void conn_setcb(struct conn *c, conn_data_cb read, conn_data_cb drained, conn_event_cb event,
                void *arg);
/* The buffers (made when missing). A pointer to them is good until the
 * owner's callback or call returns: conn_shrink may free them after. */
struct evbuffer *conn_input(struct conn *c);
struct evbuffer *conn_output(struct conn *c);
evutil_socket_t conn_fd(const struct conn *c);
/* Reading on (1) or off (0). Off at first. */
void conn_read(struct conn *c, int on);
/* Read: no input for this long while reading (NULL: none). Write: output
 * waiting this long without progress, or the connect (NULL: none). Copied. */
void conn_set_timeouts(struct conn *c, const struct timeval *rd, const struct timeval *wr);
/* Input is not read past this many bytes until some is consumed (0: no limit). */
void conn_set_read_limit(struct conn *c, size_t max);
/* over is called after an addition that leaves more than max bytes waiting in
 * the output (MAX_OUTPUT_SIZE); 0: no limit. */
void conn_set_output_limit(struct conn *c, size_t max, conn_data_cb over);
/* Bytes waiting in the input / output (without making the buffers). */
size_t conn_input_length(const struct conn *c);
size_t conn_output_length(const struct conn *c);
/* Frees the buffers while they are empty: an idle connection holds none. The
 * next read or addition makes them again. Not for TLS connections. */
void conn_shrink(struct conn *c);
/* conn_shrink once the output queued so far is written: for a connection
 * that has just become idle (a WebSocket after its handshake), so that its
 * buffers are given back at once, before the next connections allocate. */
void conn_shrink_after_flush(struct conn *c);
/* Drops what is queued and not written yet: nothing more goes out (a
 * connection being closed). Reading and the socket are left as they are. */
void conn_discard_output(struct conn *c);
/* Closes the socket; output not yet written is dropped. */
void conn_free(struct conn *c);
/* From now on the bytes c reads and writes are added to the process's byte
 * counters (conn_count_bytes_to): a client's connection, not a backend's.
 * For TLS they are the bytes before encryption. */
void conn_count_bytes(struct conn *c);
void conn_count_bytes_to(counter_t *in, counter_t *out);
/* The OpenSSL error behind a CONN_ERROR of a TLS conn: 1 and text in out. */
int conn_tls_error(struct conn *c, char *out, size_t len);

#endif
