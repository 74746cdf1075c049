/* test_static.c - static path resolution (pure) and confined opening (a real
 * temporary tree with symlinks pointing out of and into the root). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "static.h"

/* Resolves and returns the status; *out holds the path on STATIC_OK. */
static int resolve(const char *target, char *out)
{
    memset(out, '#', STATIC_PATH_MAX);
    return static_resolve(target, strlen(target), out, STATIC_PATH_MAX);
}

static void expect_path(const char *target, const char *want)
{
    char out[STATIC_PATH_MAX];
    int st = resolve(target, out);
    if (st != STATIC_OK)
        fail_msg("%s: status %d, want %s", target, st, want);
    assert_string_equal(out, want);
}

static void expect_status(const char *target, int want)
{
    char out[STATIC_PATH_MAX];
    assert_int_equal(resolve(target, out), want);
}

static void test_resolve_paths(void **state)
{
    (void)state;
    expect_path("/", "index.html");
    expect_path("/?x=1", "index.html");
    expect_path("/a/b.js", "a/b.js");
    expect_path("/a/b.js?v=2&x=/../..", "a/b.js");
    expect_path("/dir/", "dir/index.html");
    expect_path("/dir/?q", "dir/index.html");
    expect_path("//etc/passwd", "etc/passwd");
    expect_path("/a//b///c", "a/b/c");
    expect_path("/a/./b/.", "a/b/index.html");
    expect_path("/./", "index.html");
    expect_path("/a%20b.txt", "a b.txt");
    expect_path("/%61%2Fb", "a/b"); /* %2F is a separator */
    expect_path("/a%2f", "a/index.html");
    expect_path("/caf%C3%A9.html", "caf\xc3\xa9.html");
    expect_path("/a%3Fb", "a?b");         /* an escaped '?' is part of the name */
    expect_path("/a..b/c..", "a..b/c.."); /* dots inside names are fine */
}

static void test_resolve_refused(void **state)
{
    (void)state;
    /* "..", however it is spelled */
    expect_status("/%2e%2e/etc/passwd", STATIC_FORBIDDEN);
    expect_status("/%2E%2E/etc/passwd", STATIC_FORBIDDEN);
    expect_status("/.%2e/x", STATIC_FORBIDDEN);
    expect_status("/../x", STATIC_FORBIDDEN);
    expect_status("/..", STATIC_FORBIDDEN);
    expect_status("/a/../../x", STATIC_FORBIDDEN);
    expect_status("/a/../b", STATIC_FORBIDDEN);
    expect_status("/a%2f..%2fb", STATIC_FORBIDDEN);
    expect_status("//..//x", STATIC_FORBIDDEN);
    /* NUL and malformed escapes */
    expect_status("%00", STATIC_BAD_REQUEST);
    expect_status("/%00", STATIC_BAD_REQUEST);
    expect_status("/a%00.html", STATIC_BAD_REQUEST);
    expect_status("/%", STATIC_BAD_REQUEST);
    expect_status("/%4", STATIC_BAD_REQUEST);
    expect_status("/%zz", STATIC_BAD_REQUEST);
    expect_status("/%4g", STATIC_BAD_REQUEST);
    expect_status("/%%41", STATIC_BAD_REQUEST);
    /* not an absolute path */
    expect_status("", STATIC_BAD_REQUEST);
    expect_status("a/b", STATIC_BAD_REQUEST);
    expect_status("?x", STATIC_BAD_REQUEST);
    /* hidden names */
    expect_status("/.git/config", STATIC_NOT_FOUND);
    expect_status("/a/.env", STATIC_NOT_FOUND);
    expect_status("/%2ehtaccess", STATIC_NOT_FOUND);
    /* a raw NUL inside the given length */
    char out[STATIC_PATH_MAX];
    assert_int_equal(static_resolve("/a\0b", 4, out, sizeof(out)), STATIC_BAD_REQUEST);
}

static void test_resolve_buffer_bounds(void **state)
{
    (void)state;
    char out[16];
    /* "index.html" needs 11 bytes */
    assert_int_equal(static_resolve("/", 1, out, 11), STATIC_OK);
    assert_string_equal(out, "index.html");
    assert_int_equal(static_resolve("/", 1, out, 10), STATIC_URI_TOO_LONG);
    assert_int_equal(static_resolve("/abcdefghijklmn", 15, out, 15), STATIC_OK);
    assert_string_equal(out, "abcdefghijklmn");
    assert_int_equal(static_resolve("/abcdefghijklmno", 16, out, 15), STATIC_URI_TOO_LONG);
    assert_int_equal(static_resolve("/abcd/", 6, out, 15), STATIC_URI_TOO_LONG);
    assert_int_equal(static_resolve("/abc/", 5, out, 15), STATIC_OK);
    assert_string_equal(out, "abc/index.html");
    assert_int_equal(static_resolve("/", 1, out, 0), STATIC_BAD_REQUEST);
}

static void test_content_type(void **state)
{
    (void)state;
    static const struct {
        const char *path, *type;
    } cases[] = {
        {"index.html", "text/html; charset=utf-8"},
        {"a/b.HTM", "text/html; charset=utf-8"},
        {"app.js", "text/javascript; charset=utf-8"},
        {"mod.mjs", "text/javascript; charset=utf-8"},
        {"s.css", "text/css; charset=utf-8"},
        {"d.json", "application/json"},
        {"i.png", "image/png"},
        {"i.jpg", "image/jpeg"},
        {"i.JPEG", "image/jpeg"},
        {"i.gif", "image/gif"},
        {"i.svg", "image/svg+xml"},
        {"favicon.ico", "image/x-icon"},
        {"r.txt", "text/plain; charset=utf-8"},
        {"m.wasm", "application/wasm"},
        {"archive.tar.gz", "application/octet-stream"},
        {"noext", "application/octet-stream"},
        {"dir.html/file", "application/octet-stream"},
        {"trailingdot.", "application/octet-stream"},
        {"x.htmlx", "application/octet-stream"},
        {"", "application/octet-stream"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_equal(static_content_type(cases[i].path, strlen(cases[i].path)),
                            cases[i].type);
}

/* ---- opening under a real root ---- */

struct tree {
    char base[64]; /* temp dir: holds secret.txt (outside) and root/ */
    int rootfd;
};

static void put_file(const char *path, const char *content)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
}

static int tree_setup(void **state)
{
    static struct tree t;
    char p[256], q[256];
    snprintf(t.base, sizeof(t.base), "/tmp/test_static.XXXXXX");
    if (mkdtemp(t.base) == NULL)
        return -1;
#define AT(buf, rel) (snprintf(buf, sizeof(buf), "%s/%s", t.base, rel), buf)
    put_file(AT(p, "secret.txt"), "secret\n");
    mkdir(AT(p, "root"), 0755);
    mkdir(AT(p, "root/sub"), 0755);
    put_file(AT(p, "root/index.html"), "<h1>hi</h1>\n");
    put_file(AT(p, "root/sub/page.js"), "x=1\n");
    put_file(AT(p, "root/sub/index.html"), "sub\n");
    if (symlink("../secret.txt", AT(p, "root/evil")) < 0
        || symlink(AT(q, "secret.txt"), AT(p, "root/evil_abs")) < 0
        || symlink("../../secret.txt", AT(p, "root/sub/evil")) < 0
        || symlink("..", AT(p, "root/evildir")) < 0 || symlink("index.html", AT(p, "root/good")) < 0
        || symlink("sub", AT(p, "root/gooddir")) < 0 || symlink("root", AT(p, "rootlink")) < 0
        || mkfifo(AT(p, "root/fifo"), 0644) < 0)
        return -1;
    t.rootfd = open(AT(p, "root"), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
#undef AT
    *state = &t;
    return t.rootfd < 0 ? -1 : 0;
}

static int tree_teardown(void **state)
{
    struct tree *t = *state;
    char cmd[128];
    close(t->rootfd);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->base);
    return system(cmd) == 0 ? 0 : -1;
}

/* Opens relpath under rootfd; on success checks the content and closes. */
static int open_status(int rootfd, const char *relpath, const char *want_content)
{
    int fd = -1;
    struct stat st;
    int status = static_open(rootfd, relpath, &fd, &st);
    if (status == STATIC_OK) {
        char buf[64] = {0};
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        assert_true(n >= 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(st.st_size, n);
        if (want_content != NULL)
            assert_string_equal(buf, want_content);
        close(fd);
    }
    return status;
}

static void test_open_inside(void **state)
{
    struct tree *t = *state;
    assert_int_equal(open_status(t->rootfd, "index.html", "<h1>hi</h1>\n"), STATIC_OK);
    assert_int_equal(open_status(t->rootfd, "sub/page.js", "x=1\n"), STATIC_OK);
    assert_int_equal(open_status(t->rootfd, "sub/index.html", "sub\n"), STATIC_OK);

    /* resolve + open, the way the client module will do it */
    char rel[STATIC_PATH_MAX];
    assert_int_equal(static_resolve("/sub/?x", 7, rel, sizeof(rel)), STATIC_OK);
    assert_int_equal(open_status(t->rootfd, rel, "sub\n"), STATIC_OK);

    /* the root itself may be reached through a symlink */
    char p[128];
    snprintf(p, sizeof(p), "%s/rootlink", t->base);
    int linkfd = open(p, O_RDONLY | O_DIRECTORY);
    assert_true(linkfd >= 0);
    assert_int_equal(open_status(linkfd, "index.html", "<h1>hi</h1>\n"), STATIC_OK);
    close(linkfd);
}

static void test_open_refused(void **state)
{
    struct tree *t = *state;
    /* symlinks out of the root: refused, as a file and as a directory */
    assert_int_equal(open_status(t->rootfd, "evil", NULL), STATIC_NOT_FOUND);
    assert_int_equal(open_status(t->rootfd, "evil_abs", NULL), STATIC_NOT_FOUND);
    assert_int_equal(open_status(t->rootfd, "sub/evil", NULL), STATIC_NOT_FOUND);
    assert_int_equal(open_status(t->rootfd, "evildir/secret.txt", NULL), STATIC_NOT_FOUND);
    /* symlinks that stay inside: refused too (documented: no symlink is followed) */
    assert_int_equal(open_status(t->rootfd, "good", NULL), STATIC_NOT_FOUND);
    assert_int_equal(open_status(t->rootfd, "gooddir/page.js", NULL), STATIC_NOT_FOUND);
    /* what static_resolve() never produces is refused anyway */
    assert_int_equal(open_status(t->rootfd, "../secret.txt", NULL), STATIC_NOT_FOUND);
    assert_int_equal(open_status(t->rootfd, "sub/../index.html", NULL), STATIC_NOT_FOUND);
    assert_int_equal(open_status(t->rootfd, "", NULL), STATIC_NOT_FOUND);
    assert_int_equal(open_status(t->rootfd, "/etc/passwd", NULL), STATIC_NOT_FOUND);
    /* not there, not a regular file (and a FIFO must not block) */
    assert_int_equal(open_status(t->rootfd, "missing.html", NULL), STATIC_NOT_FOUND);
    assert_int_equal(open_status(t->rootfd, "index.html/x", NULL), STATIC_NOT_FOUND);
    assert_int_equal(open_status(t->rootfd, "fifo", NULL), STATIC_NOT_FOUND);
    /* a directory without its slash: the caller redirects */
    assert_int_equal(open_status(t->rootfd, "sub", NULL), STATIC_MOVED);

    /* no fd leaks through the failure paths */
    int probe = dup(0);
    assert_true(probe >= 0);
    close(probe);
    for (int i = 0; i < 50; i++)
        assert_int_equal(open_status(t->rootfd, "sub/evil", NULL), STATIC_NOT_FOUND);
    int probe2 = dup(0);
    assert_int_equal(probe2, probe);
    close(probe2);
}

static void test_open_permission(void **state)
{
    struct tree *t = *state;
    if (geteuid() == 0)
        skip(); /* root reads mode-000 files */
    char p[128];
    snprintf(p, sizeof(p), "%s/root/private.html", t->base);
    put_file(p, "no\n");
    chmod(p, 0);
    assert_int_equal(open_status(t->rootfd, "private.html", NULL), STATIC_FORBIDDEN);
    assert_int_equal(errno, EACCES);
}

int main(void)
{
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_resolve_paths),
        cmocka_unit_test(test_resolve_refused),
        cmocka_unit_test(test_resolve_buffer_bounds),
        cmocka_unit_test(test_content_type),
    };
    const struct CMUnitTest fs[] = {
        cmocka_unit_test(test_open_inside),
        cmocka_unit_test(test_open_refused),
        cmocka_unit_test(test_open_permission),
    };
    int failed = cmocka_run_group_tests_name("static_resolve", pure, NULL, NULL);
    failed += cmocka_run_group_tests_name("static_open", fs, tree_setup, tree_teardown);
    return failed;
}
