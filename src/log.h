/* log.h - leveled log lines "time [pid] LEVEL message" to stdout, stderr or a file.
 * The file is reopened on SIGUSR1 (log_reopen) so logrotate can move it. */
#ifndef FOOKING_LOG_H
#define FOOKING_LOG_H

enum { LOG_ERR = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* target: "" (no log), "stdout", "stderr" or a path. Returns 0, or -1 with errno. */
int log_open(const char *target, int level);
int log_reopen(void);
void log_set_level(int level);
int log_get_level(void);
void log_close(void);
void log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...) log_write(LOG_ERR, __VA_ARGS__)
#define log_info(...)                                                                              \
    do {                                                                                           \
        if (log_get_level() >= LOG_INFO)                                                           \
            log_write(LOG_INFO, __VA_ARGS__);                                                      \
    } while (0)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_get_level() >= LOG_DEBUG)                                                          \
            log_write(LOG_DEBUG, __VA_ARGS__);                                                     \
    } while (0)

#endif
