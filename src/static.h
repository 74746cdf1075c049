/* static.h - static files for plain HTTP GETs on the WebSocket port (STATIC_DIR).
 * Two steps, so the part that decides what may be served is pure and testable
 * alone: static_resolve() turns a request target into a clean path relative to
 * the root (no I/O); static_open() opens it under an open directory fd of the
 * root without ever leaving it. The client module owns the fds and the response. */
#ifndef FOOKING_STATIC_H
#define FOOKING_STATIC_H

#include <stddef.h>
#include <sys/stat.h>

/* Results. Except STATIC_OK, the values are the HTTP status to answer
 * (ws_build_error() writes all but 301). */
enum static_status {
    STATIC_OK = 0,
    STATIC_MOVED = 301,        /* a directory named without the trailing '/':
                                  redirect to the request path + "/" */
    STATIC_BAD_REQUEST = 400,  /* malformed or %00 escape, not starting with '/' */
    STATIC_FORBIDDEN = 403,    /* a ".." segment, or the OS says EACCES/EPERM */
    STATIC_NOT_FOUND = 404,    /* missing, hidden, a symlink, or not a regular file */
    STATIC_URI_TOO_LONG = 414, /* the resolved path does not fit the caller's buffer */
    STATIC_INTERNAL = 500,     /* out of fds and the like: errno says which */
};

/* A path buffer this long takes any request head ws_parse_request() accepts. */
#define STATIC_PATH_MAX 8192

/* Maps a request target ("/a/b.js?v=2") to a path relative to the static root
 * ("a/b.js"), NUL-terminated in out (size bytes). Drops the query string,
 * percent-decodes (%2F counts as a separator, since that is what a file system
 * would make of it), collapses empty and "." segments, and maps "/" and any path
 * ending in '/' to index.html below it. Refuses a ".." segment after decoding
 * (403) and names starting with '.' (404: hidden files such as .git or .env are
 * not published by accident). The result never starts with '/' and has no
 * empty, "." or ".." segment. Returns STATIC_OK or the status to answer. */
int static_resolve(const char *target, size_t len, char *out, size_t size);

/* Opens relpath (a static_resolve() result) read-only under the directory
 * rootfd, one component at a time with O_NOFOLLOW, so no symlink below the root
 * is followed: one pointing outside cannot leak a file, and one pointing inside is
 * refused too (404) - simple to reason about, and the root itself may still be a
 * symlink. Only regular files are opened (O_NONBLOCK, so a FIFO cannot block the
 * worker; it has no effect on regular files). On STATIC_OK, *fd is the file
 * (the caller closes it) and *st its fstat(); otherwise errno is left as the
 * failing call set it, for the caller's log line. */
int static_open(int rootfd, const char *relpath, int *fd, struct stat *st);

/* Content-Type for a path by its extension (case-insensitive): html, htm, js,
 * mjs, css, json, png, jpg, jpeg, gif, svg, ico, txt, wasm; anything else is
 * application/octet-stream. Text types carry "; charset=utf-8". */
const char *static_content_type(const char *path, size_t len);

#endif
