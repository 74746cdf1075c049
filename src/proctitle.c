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
/* The copies of the environment, kept for the life of the process: unsetenv
 * (of the upgrade's descriptors, proc.c) drops entries from environ, and
 * they must stay owned (and freed with the process), not lost. */
static char **title_env;

void proctitle_init(int argc, char **argv)
{
    if (argc == 0 || argv[0] == NULL)
        return;
    char *end = argv[0] + strlen(argv[0]) + 1;
    for (int i = 1; i < argc; i++)
        if (argv[i] == end)
            end = argv[i] + strlen(argv[i]) + 1;
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = malloc((n + 1) * sizeof(char *));
    if (env == NULL || (title_env = malloc((n + 1) * sizeof(char *))) == NULL) {
        free(env);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (environ[i] == end)
            end = environ[i] + strlen(environ[i]) + 1;
        env[i] = title_env[i] = strdup(environ[i]);
    }
    env[n] = title_env[n] = NULL;
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
