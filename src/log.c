/* log.c - one line per event, written with a single write(2) so lines from the
 * master and the workers sharing one file never interleave mid-line. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_fd = 1;
static int log_level = LOG_INFO;
static char *log_path;

static int log_open_path(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    return fd;
}

int log_open(const char *target, int level)
{
    log_level = level;
    free(log_path);
    log_path = NULL;
    if (log_fd > 2)
        close(log_fd);
    if (target == NULL || strcmp(target, "stdout") == 0) {
        log_fd = 1;
    } else if (strcmp(target, "stderr") == 0) {
        log_fd = 2;
    } else if (target[0] == '\0') {
        log_fd = -1;
    } else {
        int fd = log_open_path(target);
        if (fd < 0) {
            log_fd = 2;
            return -1;
        }
        log_fd = fd;
        log_path = strdup(target);
    }
    return 0;
}

int log_reopen(void)
{
    if (log_path == NULL)
        return 0;
    int fd = log_open_path(log_path);
    if (fd < 0)
        return -1;
    close(log_fd);
    log_fd = fd;
    return 0;
}

void log_set_level(int level)
{
    log_level = level;
}
int log_get_level(void)
{
    return log_level;
}

void log_close(void)
{
    if (log_fd > 2)
        close(log_fd);
    log_fd = 1;
    free(log_path);
    log_path = NULL;
}

void log_write(int level, const char *fmt, ...)
{
    static const char *names[] = {"", "ERROR", "INFO", "DEBUG"};
    if (log_fd < 0 || level > log_level)
        return;
    int saved = errno;
    char line[4096];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02d %02d:%02d:%02d.%03d [%d] %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(tv.tv_usec / 1000), (int)getpid(),
                     names[level < 1 || level > 3 ? 1 : level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    ssize_t w = write(log_fd, line, len);
    (void)w;
    errno = saved;
}
