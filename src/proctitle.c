/* proctitle.c - Linux has no setproctitle(3): the title ps shows is the memory
 * of argv, which is followed by environ. We move environ elsewhere so the
 * whole contiguous area can hold the title, as nginx and PostgreSQL do. */
#include "proctitle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

extern char **environ;

static char *title_start;
static size_t title_len;

void proctitle_init(int argc, char **argv)
{
    if (argc == 0 || argv[0] == NULL)
        return;
    char *end = argv[0] + strlen(argv[0]) + 1;
    for (int i = 1; i < argc; i++)
        if (argv[i] == end)
            end = argv[i] + strlen(argv[i]) + 1;
    size_t n = 0, bytes = 0;
    while (environ[n])
        bytes += strlen(environ[n++]) + 1;
    /* The strings in one block: an entry that unsetenv() takes out of
     * environ (an upgrade's FOOKING_* variables) stays part of the block the
     * others live in, not an allocation nothing points to any more. */
    char **env = malloc((n + 1) * sizeof(char *));
    char *strings = malloc(bytes ? bytes : 1);
    if (env == NULL || strings == NULL) {
        free(env);
        free(strings);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(environ[i]) + 1;
        if (environ[i] == end)
            end = environ[i] + len;
        env[i] = memcpy(strings, environ[i], len);
        strings += len;
    }
    env[n] = NULL;
    environ = env;
    title_start = argv[0];
    title_len = (size_t)(end - argv[0]);
}

void proctitle_set(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    prctl(PR_SET_NAME, buf[0] ? buf : "fooking", 0, 0, 0);
    if (title_start == NULL || title_len < 2)
        return;
    memset(title_start, 0, title_len);
    snprintf(title_start, title_len, "%s", buf);
}
