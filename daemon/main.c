/* safecampusd: start-up, migrations, the threads, the control socket, signals and systemd. */
#include "internal.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

#ifndef SC_SYSCONFDIR
#define SC_SYSCONFDIR "/etc"
#endif

/* sd_notify(3)'s protocol: one datagram to $NOTIFY_SOCKET. Quiet when not under systemd. */
static void s_notify(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, path, strlen(path));
    if (sa.sun_path[0] == '@')
        sa.sun_path[0] = '\0'; /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
    ssize_t w = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
    (void)w;
    close(fd);
}

static void s_usage(FILE *f)
{
    fprintf(f,
            "usage: safecampusd [--config FILE] [--check-config] [--conninfo STR] "
            "[--no-migrate]\n"
            "\n"
            "  -c, --config FILE   config file (default %s/safecampus/safecampusd.conf)\n"
            "      --check-config  check the config and the plugins it names, then exit\n"
            "      --conninfo STR  use this PostgreSQL connection instead of database.conninfo\n"
            "      --no-migrate    do not apply pending migrations (refuse to start if any)\n"
            "  -h, --help          this text\n",
            SC_SYSCONFDIR);
}

/* Connects, waiting out a database that is not up yet, until a signal asks us to stop. */
static PGconn *s_connect_patiently(const char *conninfo, int sigfd)
{
    char err[1024];
    int64_t backoff = 0;
    for (;;) {
        PGconn *c = sc__db_connect(conninfo, "main", err, sizeof err);
        if (c)
            return c;
        backoff = sc__backoff_next(backoff, 200, 10000);
        sc__log(SC_LOG_WARNING, "core", "%s; retrying in %lld ms", err, (long long)backoff);
        zmq_pollitem_t pi = {NULL, sigfd, ZMQ_POLLIN, 0};
        if (zmq_poll(&pi, 1, (long)backoff) > 0)
            return NULL;
    }
}

static int s_migrate(PGconn *conn, const sc__registry_t *reg, bool apply)
{
    char err[2048];
    int rc = sc__migrate_lock(conn, true, err, sizeof err);
    if (rc == 0 && apply)
        rc = sc__migrate(conn, "core", sc__core_migrations, err, sizeof err);
    for (size_t i = 0; rc == 0 && apply && i < reg->nslots; i++)
        rc = sc__migrate(conn, reg->slots[i].p->name, reg->slots[i].p->migrations, err, sizeof err);
    if (rc == 0 && apply && (rc = sc__db_exec(conn, "SELECT core.apply_privileges()")) < 0)
        snprintf(err, sizeof err, "could not grant the daemon's and reporting roles: %s",
                 PQerrorMessage(conn));
    if (rc < 0)
        sc__log(SC_LOG_ERR, "core", "%s", err);
    char unlock_err[256];
    sc__migrate_lock(conn, false, unlock_err, sizeof unlock_err);
    return rc;
}

static sc_time_t s_manual_start(sc__daemon_t *d)
{
    PGresult *res = PQexec(d->conn, "SELECT now FROM core.clock WHERE id = 1");
    sc_time_t t = 0;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        t = sc_pq_time(res, 0, 0, 0);
    PQclear(res);
    if (t)
        return t;
    const char *start = sc__cfg_str(d->cfg->core, "clock", "start");
    if (start && sc_time_parse(start, &t) == 0)
        return t;
    sc__clock_init(false, 0);
    return sc__clock_now();
}

/* An ipc:// endpoint's folder is created, and the socket kept to the daemon's user and group. */
static int s_bind_control(sc__daemon_t *d, void *rep, char *err, size_t errlen)
{
    const char *endpoint = sc__cfg_str(d->cfg->core, "control", "endpoint");
    const char *path = strncmp(endpoint, "ipc://", 6) == 0 ? endpoint + 6 : NULL;
    if (path) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
            *slash = '\0';
            for (char *p = dir + 1; *p; p++)
                if (*p == '/') {
                    *p = '\0';
                    mkdir(dir, 0755);
                    *p = '/';
                }
            mkdir(dir, 0750);
        }
    }
    mode_t old = umask(0007);
    int rc = zmq_bind(rep, endpoint);
    umask(old);
    if (rc < 0) {
        snprintf(err, errlen, "control.endpoint: could not bind \"%s\": %s", endpoint,
                 zmq_strerror(zmq_errno()));
        return -EINVAL;
    }
    if (path)
        chmod(path, 0660);
    return 0;
}

/* SIGHUP: what can change without a restart is applied; the rest is named. */
static void s_reload(sc__daemon_t *d)
{
    char err[1024];
    sc__config_t *fresh = NULL;
    s_notify("RELOADING=1");
    if (sc__config_load(d->cfg->path, &fresh, err, sizeof err) < 0) {
        sc__log(SC_LOG_ERR, "core", "reload: %s; keeping the running settings", err);
        s_notify("READY=1");
        return;
    }
    static const char *const fixed[] = {"database", "ingest",  "publish", "control",
                                        "clock",    "plugins", "timezone"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (!json_equal(json_object_get(fresh->core, fixed[i]),
                        json_object_get(d->cfg->core, fixed[i])))
            sc__log(SC_LOG_WARNING, "core", "reload: %s changed; that needs a restart", fixed[i]);
    int level = sc__log_level_parse(sc__cfg_str(fresh->core, "log", "level"));
    if (level != sc__log_level) {
        sc__log_level = level;
        sc__log(SC_LOG_NOTICE, "core", "reload: log.level is now %s",
                sc__cfg_str(fresh->core, "log", "level"));
    }
    sc__registry_t *reg = NULL;
    if (sc__registry_load(fresh, &reg, err, sizeof err) < 0) {
        sc__log(SC_LOG_ERR, "core", "reload: %s; plugin settings unchanged", err);
    } else {
        sc__runners_reload(d, reg);
        sc__registry_free(&reg);
    }
    /* The file's plugin sections are read from d->cfg->doc from now on. */
    json_t *doc = d->cfg->doc;
    d->cfg->doc = json_incref(fresh->doc);
    json_decref(doc);
    sc__config_free(&fresh);
    s_notify("READY=1");
}

int main(int argc, char **argv)
{
    const char *config_path = SC_SYSCONFDIR "/safecampus/safecampusd.conf";
    const char *conninfo = NULL;
    bool check_only = false, migrate = true;
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},   {"check-config", no_argument, NULL, 'k'},
        {"conninfo", required_argument, NULL, 'd'}, {"no-migrate", no_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 'k':
            check_only = true;
            break;
        case 'd':
            conninfo = optarg;
            break;
        case 'n':
            migrate = false;
            break;
        case 'h':
            s_usage(stdout);
            return 0;
        default:
            s_usage(stderr);
            return 2;
        }
    }
    sc__arena_json_hooks();
    sc__log_init();

    char err[2048];
    sc__daemon_t d = {0};
    if (sc__config_load(config_path, &d.cfg, err, sizeof err) < 0) {
        fprintf(stderr, "safecampusd: %s\n", err);
        return 2;
    }
    sc__log_level = sc__log_level_parse(sc__cfg_str(d.cfg->core, "log", "level"));
    if (sc__registry_load(d.cfg, &d.reg, err, sizeof err) < 0) {
        fprintf(stderr, "safecampusd: %s\n", err);
        sc__config_free(&d.cfg);
        return 2;
    }
    if (check_only) {
        printf("%s: configuration OK; plugins:", config_path);
        for (size_t i = 0; i < d.reg->nslots; i++)
            printf(" %s", d.reg->slots[i].p->name);
        printf("\n");
        sc__registry_free(&d.reg);
        sc__config_free(&d.cfg);
        return 0;
    }
    d.conninfo = conninfo ? conninfo : sc__cfg_str(d.cfg->core, "database", "conninfo");
    d.timezone = sc__cfg_str(d.cfg->core, NULL, "timezone");

    /* Signals arrive through a descriptor the main loop polls; every thread blocks them. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sigfd = signalfd(-1, &mask, SFD_CLOEXEC);

    int exit_code = 1;
    void *rep = NULL;
    /* Migrations as the schema's owner; everything else as the daemon's own role. */
    const char *owner = sc__cfg_str(d.cfg->core, "database", "migrate_conninfo");
    if (owner && !conninfo) {
        PGconn *oc = s_connect_patiently(owner, sigfd);
        if (!oc) {
            exit_code = 0;
            goto out;
        }
        int mrc = s_migrate(oc, d.reg, migrate);
        PQfinish(oc);
        if (mrc < 0)
            goto out;
    }
    d.conn = s_connect_patiently(d.conninfo, sigfd);
    if (!d.conn) {
        exit_code = 0;
        goto out;
    }
    if ((!owner || conninfo) && s_migrate(d.conn, d.reg, migrate) < 0)
        goto out;
    PGresult *res = PQexec(d.conn, "SELECT coalesce(max(id), 0) FROM core.events");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        sc__log(SC_LOG_ERR, "core", "the journal is not readable: %s%s", PQerrorMessage(d.conn),
                migrate ? "" : " (started with --no-migrate: are migrations pending?)");
        PQclear(res);
        goto out;
    }
    atomic_store(&sc__stats.head, strtoll(PQgetvalue(res, 0, 0), NULL, 10));
    PQclear(res);

    bool manual = strcmp(sc__cfg_str(d.cfg->core, "clock", "mode"), "manual") == 0;
    sc__clock_init(false, 0);
    d.started_at = sc__clock_now();
    if (manual) {
        sc_time_t start = s_manual_start(&d);
        sc__clock_init(true, start);
    }

    d.zctx = zmq_ctx_new();
    if (sc__security_start(&d, err, sizeof err) < 0) {
        sc__log(SC_LOG_ERR, "core", "%s", err);
        goto out_zmq;
    }
    if (sc__publish_start(&d, err, sizeof err) < 0) {
        sc__log(SC_LOG_ERR, "core", "%s", err);
        goto out_zmq;
    }
    sc__tail_init((size_t)sc__cfg_int(d.cfg->core, "plugins", "tail"));
    if (sc__runners_start(&d, err, sizeof err) < 0) {
        sc__log(SC_LOG_ERR, "core", "%s", err);
        goto out_runners;
    }
    if (sc__ingest_start(&d, err, sizeof err) < 0) {
        sc__log(SC_LOG_ERR, "core", "%s", err);
        goto out_runners;
    }
    rep = zmq_socket(d.zctx, ZMQ_REP);
    if (s_bind_control(&d, rep, err, sizeof err) < 0) {
        sc__log(SC_LOG_ERR, "core", "%s", err);
        goto out_ingest;
    }

    char *watchdog = getenv("WATCHDOG_USEC");
    int64_t watchdog_ms = watchdog ? strtoll(watchdog, NULL, 10) / 2000 : 0;
    int64_t last_watchdog = sc__mono_ms();
    sc__log(
        SC_LOG_NOTICE, "core", "ready: ingest %s, publish %s, control %s, %zu plugins, clock %s",
        sc__cfg_str(d.cfg->core, "ingest", "endpoint"),
        sc__cfg_str(d.cfg->core, "publish", "endpoint"),
        sc__cfg_str(d.cfg->core, "control", "endpoint"), d.nrunners, manual ? "manual" : "system");
    s_notify("READY=1\nSTATUS=taking events");

    for (;;) {
        zmq_pollitem_t pi[2] = {{rep, 0, ZMQ_POLLIN, 0}, {NULL, sigfd, ZMQ_POLLIN, 0}};
        long timeout = watchdog_ms > 0 ? (long)watchdog_ms : 1000;
        if (zmq_poll(pi, 2, timeout) < 0 && zmq_errno() != EINTR)
            break;
        if (watchdog_ms > 0 && sc__mono_ms() - last_watchdog >= watchdog_ms) {
            s_notify("WATCHDOG=1");
            last_watchdog = sc__mono_ms();
        }
        if (pi[1].revents & ZMQ_POLLIN) {
            struct signalfd_siginfo si;
            if (read(sigfd, &si, sizeof si) == sizeof si) {
                if (si.ssi_signo == SIGHUP) {
                    sc__log(SC_LOG_NOTICE, "core", "SIGHUP: reloading %s", d.cfg->path);
                    s_reload(&d);
                    continue;
                }
                sc__log(SC_LOG_NOTICE, "core", "%s: finishing the batch in flight, then stopping",
                        si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
                break;
            }
        }
        if (pi[0].revents & ZMQ_POLLIN) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, rep, 0) < 0) {
                zmq_msg_close(&m);
                continue;
            }
            json_error_t jerr;
            json_t *req = json_loadb(zmq_msg_data(&m), zmq_msg_size(&m), 0, &jerr);
            zmq_msg_close(&m);
            json_t *reply = req ? sc__control_handle(&d, req)
                                : json_pack("{s:b, s:s, s:s}", "ok", 0, "error", "malformed_json",
                                            "detail", jerr.text);
            char *text = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
            if (!text)
                text = strdup("{\"ok\":false,\"error\":\"internal\","
                              "\"detail\":\"the answer could not be written as JSON\"}");
            zmq_send(rep, text, strlen(text), 0);
            free(text);
            json_decref(reply);
            json_decref(req);
        }
    }
    exit_code = 0;
    s_notify("STOPPING=1");
out_ingest:
    sc__ingest_stop(&d);
out_runners:
    sc__runners_stop(&d);
    sc__tail_free();
    sc__publish_stop(&d);
    sc__ingest_spare_free();
out_zmq:
    if (rep)
        zmq_close(rep);
    zmq_ctx_term(d.zctx);
out:
    PQfinish(d.conn);
    sc__registry_free(&d.reg);
    sc__config_free(&d.cfg);
    close(sigfd);
    if (exit_code == 0)
        sc__log(SC_LOG_NOTICE, "core", "stopped");
    return exit_code;
}
