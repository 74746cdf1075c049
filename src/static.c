/* static.c - request path resolution and confined opening for STATIC_DIR (see
 * static.h). static_resolve() is pure; static_open() is the one function here that
 * touches the file system. */
/* openat, O_NOFOLLOW and NAME_MAX are POSIX.1-2008, hidden by a strict -std=c11. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include "static.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

static int static_hex(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Ends the segment out[start, *n): drops it if empty or ".", refuses "..", and
 * otherwise keeps it followed by '/'. Returns STATIC_OK or the status. */
static int static_end_segment(char *out, size_t size, size_t start, size_t *n)
{
    size_t seglen = *n - start;
    if (seglen == 0 || (seglen == 1 && out[start] == '.')) {
        *n = start;
        return STATIC_OK;
    }
    if (seglen == 2 && out[start] == '.' && out[start + 1] == '.')
        return STATIC_FORBIDDEN;
    if (out[start] == '.')
        return STATIC_NOT_FOUND;
    /* The slash takes the place the NUL will have if this is the last segment. */
    if (*n >= size)
        return STATIC_URI_TOO_LONG;
    out[(*n)++] = '/';
    return STATIC_OK;
}

int static_resolve(const char *target, size_t len, char *out, size_t size)
{
    size_t n = 0, start = 0;
    int st;

    if (len == 0 || target[0] != '/' || size == 0)
        return STATIC_BAD_REQUEST;
    /* The query string is cut before decoding: an escaped "%3F" is part of a name. */
    const char *q = memchr(target, '?', len);
    if (q != NULL)
        len = (size_t)(q - target);

    for (size_t i = 1; i < len; i++) {
        int c = (unsigned char)target[i];
        if (c == '%') {
            int hi = i + 2 < len ? static_hex((unsigned char)target[i + 1]) : -1;
            int lo = i + 2 < len ? static_hex((unsigned char)target[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return STATIC_BAD_REQUEST;
            c = hi << 4 | lo;
            i += 2;
        }
        /* A NUL would cut the name short in the kernel's eyes. */
        if (c == 0)
            return STATIC_BAD_REQUEST;
        if (c == '/') {
            if ((st = static_end_segment(out, size, start, &n)) != STATIC_OK)
                return st;
            start = n;
            continue;
        }
        if (n + 1 >= size)
            return STATIC_URI_TOO_LONG;
        out[n++] = (char)c;
    }
    if ((st = static_end_segment(out, size, start, &n)) != STATIC_OK)
        return st;
    /* Every kept segment now ends in '/'. If the last one was kept, the request
     * named a file: drop its slash. Otherwise it ended in '/' (or "/."): a
     * directory, served by its index.html. */
    if (n != start) {
        out[n - 1] = '\0';
        return STATIC_OK;
    }
    if (n + sizeof("index.html") > size)
        return STATIC_URI_TOO_LONG;
    memcpy(out + n, "index.html", sizeof("index.html"));
    return STATIC_OK;
}

static int static_errno_status(int err)
{
    switch (err) {
    case EACCES:
    case EPERM:
        return STATIC_FORBIDDEN;
    case ENOENT:
    case ENOTDIR:
    case ELOOP: /* O_NOFOLLOW met a symlink */
    case ENAMETOOLONG:
    case ENXIO:
        return STATIC_NOT_FOUND;
    default:
        return STATIC_INTERNAL;
    }
}

int static_open(int rootfd, const char *relpath, int *fd, struct stat *st)
{
    int dirfd = rootfd, err;
    const char *p = relpath;
    char name[NAME_MAX + 1];

    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash != NULL ? (size_t)(slash - p) : strlen(p);
        /* Trust no caller: re-check what static_resolve() guarantees. */
        if (n == 0 || n > NAME_MAX || p[0] == '.') {
            errno = ENOENT;
            goto fail;
        }
        memcpy(name, p, n);
        name[n] = '\0';
        int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (slash != NULL ? O_DIRECTORY : O_NONBLOCK);
        int next = openat(dirfd, name, flags);
        if (next < 0)
            goto fail;
        if (dirfd != rootfd)
            close(dirfd);
        dirfd = next;
        if (slash == NULL)
            break;
        p = slash + 1;
    }

    if (fstat(dirfd, st) < 0)
        goto fail;
    if (!S_ISREG(st->st_mode)) {
        int status = S_ISDIR(st->st_mode) ? STATIC_MOVED : STATIC_NOT_FOUND;
        close(dirfd);
        errno = S_ISDIR(st->st_mode) ? EISDIR : ENOENT;
        return status;
    }
    *fd = dirfd;
    return STATIC_OK;

fail:
    err = errno;
    if (dirfd != rootfd)
        close(dirfd);
    errno = err;
    return static_errno_status(err);
}

const char *static_content_type(const char *path, size_t len)
{
    static const struct {
        const char *ext;
        const char *type;
    } types[] = {
        {"html", "text/html; charset=utf-8"},
        {"htm", "text/html; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"json", "application/json"},
        {"png", "image/png"},
        {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},
        {"svg", "image/svg+xml"},
        {"ico", "image/x-icon"},
        {"txt", "text/plain; charset=utf-8"},
        {"wasm", "application/wasm"},
    };
    size_t dot = len;
    while (dot > 0 && path[dot - 1] != '.' && path[dot - 1] != '/')
        dot--;
    if (dot > 0 && path[dot - 1] == '.') {
        const char *ext = path + dot;
        size_t elen = len - dot;
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
            if (strlen(types[i].ext) != elen)
                continue;
            size_t k = 0;
            while (k < elen && (ext[k] | 0x20) == types[i].ext[k])
                k++;
            if (k == elen)
                return types[i].type;
        }
    }
    return "application/octet-stream";
}
