/* main.c - command line: one binary, two modes chosen by the config file. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <lua.h>
#include <openssl/opensslv.h>

#include "config.h"
#include "log.h"
#include "loop.h"
#include "master.h"
#include "proctitle.h"
#include "router.h"
#include "router_http.h"
#include "script.h"
#include "tls.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: fooking [options] CONFIG.lua\n"
               "  CONFIG.lua      gateway (ROUTER = 0) or router (ROUTER = 1) configuration\n"
               "  -t              check the configuration and exit (status 0 if valid)\n"
               "  -f              stay in the foreground whatever DAEMONIZE says (systemd)\n"
               "  -s SIGNAL       signal the running instance (needs PID_FILE in the config):\n"
               "                  stop (SIGTERM), quit (SIGQUIT, graceful), reload (SIGHUP),\n"
               "                  reopen (SIGUSR1, the log file), upgrade (SIGUSR2: start the\n"
               "                  binary again on the same sockets, then stop this one)\n"
               "  -v              print the version and exit\n"
               "  -h              print this help and exit\n");
}

static int send_signal(const struct config *cfg, const char *what)
{
    int sig = strcmp(what, "stop") == 0      ? SIGTERM
              : strcmp(what, "quit") == 0    ? SIGQUIT
              : strcmp(what, "reload") == 0  ? SIGHUP
              : strcmp(what, "reopen") == 0  ? SIGUSR1
              : strcmp(what, "upgrade") == 0 ? SIGUSR2
                                             : 0;
    if (sig == 0) {
        fprintf(stderr, "fooking: -s takes stop, quit, reload, reopen or upgrade, got \"%s\"\n",
                what);
        return 1;
    }
    if (cfg->pid_file == NULL) {
        fprintf(stderr, "%s: PID_FILE is not set, cannot find the running instance\n", cfg->file);
        return 1;
    }
    FILE *f = fopen(cfg->pid_file, "r");
    int pid = 0;
    if (f == NULL || fscanf(f, "%d", &pid) != 1 || pid <= 0) {
        fprintf(stderr, "fooking: cannot read pid file %s\n", cfg->pid_file);
        if (f)
            fclose(f);
        return 1;
    }
    fclose(f);
    if (kill(pid, sig) != 0) {
        fprintf(stderr, "fooking: signal pid %d: %s\n", pid, strerror(errno));
        return 1;
    }
    return 0;
}

/* -t goes beyond the Lua: the files a gateway opens at start must open. */
static int check_files(const struct config *cfg)
{
    char err[1024];
    if (cfg->router)
        return 0;
    if (cfg->ssl) {
        void *ctx = tls_ctx_new(cfg->ssl_cert, cfg->ssl_pkey, err, sizeof(err));
        if (!ctx) {
            fprintf(stderr, "%s: %s\n", cfg->file, err);
            return 1;
        }
        tls_ctx_free(ctx);
    }
    if (cfg->static_dir) {
        int fd = open(cfg->static_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "%s: STATIC_DIR %s: %s\n", cfg->file, cfg->static_dir, strerror(errno));
            return 1;
        }
        close(fd);
    }
    if (cfg->script_file) {
        struct script *sc = script_load(cfg->script_file, err, sizeof(err));
        if (!sc) {
            fprintf(stderr, "%s: %s\n", cfg->file, err);
            return 1;
        }
        script_unref(sc);
    }
    return 0;
}

int main(int argc, char **argv)
{
    int test = 0, opt;
    const char *sig = NULL;
    int foreground = 0;
    loop_mem_init();
    while ((opt = getopt(argc, argv, "tfs:vh")) != -1) {
        switch (opt) {
        case 'f':
            foreground = 1;
            break;
        case 't':
            test = 1;
            break;
        case 's':
            sig = optarg;
            break;
        case 'v':
            printf("fooking %s (libevent %s, %s, %s)\n", FOOKING_VERSION, event_get_version(),
                   LUA_RELEASE, OPENSSL_VERSION_TEXT);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 1;
    }
    const char *file = argv[optind];
    struct config cfg;
    char err[1024];
    if (config_load(&cfg, file, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (test) {
        int rc = check_files(&cfg);
        if (rc == 0)
            printf("%s: configuration is valid (%s mode)\n", file,
                   cfg.router ? "router" : "gateway");
        config_free(&cfg);
        return rc;
    }
    if (sig) {
        int rc = send_signal(&cfg, sig);
        config_free(&cfg);
        return rc;
    }
    if (foreground)
        cfg.daemonize = 0;
    proctitle_init(argc, argv);
    if (log_open(cfg.log_file, cfg.log_level) < 0) {
        fprintf(stderr, "%s: LOG_FILE %s: %s\n", file, cfg.log_file, strerror(errno));
        config_free(&cfg);
        return 1;
    }
    int rc = cfg.router ? router_run(&cfg, &router_http_service) : master_run(&cfg);
    config_free(&cfg);
    log_close();
    return rc;
}
