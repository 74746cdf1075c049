/* user.h - what a backend says about a session (DESIGN §13): the user id it is
 * bound to (1..RMSG_MAX_UID bytes; a user may have many sessions) and a small
 * blob of session data (SESSION_MAX_SIZE). Both go back to the backend as the
 * params UID and SESSION (with FASTCGI_PREFIX) of every later request of the
 * session; the worker keeps an index from each uid to its local sessions, so
 * that SEND_UID and KICK_UID find them without a scan.
 *
 * A session that was never bound and never given data has no user record: an
 * idle client pays one pointer for all this. */
#ifndef FOOKING_USER_H
#define FOOKING_USER_H

#include <stddef.h>
#include <sys/queue.h>

struct client;
struct worker;
struct fcgi_params;

struct client_user {
    struct client *c;
    struct uid_group *group; /* NULL: not bound */
    LIST_ENTRY(client_user) in_group;
    struct fcgi_params *base; /* the session's params without UID and SESSION */
    unsigned char *session;   /* NULL: none */
    size_t session_len;
};

/* The sessions of one uid on this worker. */
struct uid_group {
    size_t n;
    unsigned mark; /* a command's stamp: already walked */
    LIST_HEAD(, client_user) members;
    size_t len;
    unsigned char uid[];
};

/* Binds c to uid (replacing its uid, if any). 0, or -1 out of memory (c is
 * left as it was). len is 1..RMSG_MAX_UID (the codec checked it). */
int user_bind(struct worker *w, struct client *c, const void *uid, size_t len);
void user_unbind(struct worker *w, struct client *c);
/* Replaces c's session data (len 0 clears it); len <= SESSION_MAX_SIZE. 0 or -1. */
int user_set_session(struct worker *w, struct client *c, const void *data, size_t len);
/* c's uid (NULL if unbound), and its session data (NULL if none). */
const unsigned char *user_uid(const struct client *c, size_t *len);
const unsigned char *user_session(const struct client *c, size_t *len);
/* The local sessions bound to uid, or NULL. */
struct uid_group *user_group(struct worker *w, const void *uid, size_t len);
/* At close: c forgets its uid and data (after its last request took its params). */
void user_free(struct worker *w, struct client *c);
/* At worker exit. */
void user_free_all(struct worker *w);

#endif
