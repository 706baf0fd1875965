/* safecampusctl: send events, ask the daemon how it is, query plugins, move the manual clock. */
#include "../daemon/internal.h"
#include "ctl.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#ifndef SC_SYSCONFDIR
#define SC_SYSCONFDIR "/etc"
#endif

static struct {
    const char *config;
    char *control, *ingest, *publish;
    void *zctx;
    int timeout_ms;
} s_opt = {.timeout_ms = 10000};

static int s_die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("safecampusctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

/* Endpoints from --config (the daemon's own file and rules), else the defaults. */
static int s_endpoints(void)
{
    const char *path = s_opt.config;
    struct stat st;
    if (!path && stat(SC_SYSCONFDIR "/safecampus/safecampusd.conf", &st) == 0)
        path = SC_SYSCONFDIR "/safecampus/safecampusd.conf";
    const char *control = "ipc:///run/safecampus/control", *ingest = "tcp://127.0.0.1:7600",
               *publish = "tcp://127.0.0.1:7601";
    sc__config_t *cfg = NULL;
    if (path) {
        char err[1024];
        if (sc__config_load(path, &cfg, err, sizeof err) < 0)
            return s_die(2, "%s", err);
        control = sc__cfg_str(cfg->core, "control", "endpoint");
        ingest = sc__cfg_str(cfg->core, "ingest", "endpoint");
        publish = sc__cfg_str(cfg->core, "publish", "endpoint");
    }
    if (!s_opt.control)
        s_opt.control = strdup(control);
    if (!s_opt.ingest)
        s_opt.ingest = strdup(ingest);
    if (!s_opt.publish)
        s_opt.publish = strdup(publish);
    sc__config_free(&cfg);
    return 0;
}

json_t *sc__ctl_request(const json_t *req, int timeout_ms)
{
    const char *ep = s_opt.control;
    if (strncmp(ep, "ipc://", 6) == 0 && access(ep + 6, F_OK) != 0) {
        s_die(3,
              "the daemon is not there: no control socket at %s (is safecampusd running? "
              "give --config or --control)",
              ep + 6);
        return NULL;
    }
    void *s = zmq_socket(s_opt.zctx, ZMQ_REQ);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    json_t *reply = NULL;
    if (zmq_connect(s, ep) < 0) {
        s_die(3, "could not connect to %s: %s", ep, zmq_strerror(zmq_errno()));
        goto out;
    }
    char *text = json_dumps(req, JSON_COMPACT);
    zmq_send(s, text, strlen(text), 0);
    free(text);
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, s, 0) < 0) {
        s_die(3, "no answer from the daemon at %s within %d s: is safecampusd running?", ep,
              timeout_ms / 1000);
        zmq_msg_close(&m);
        goto out;
    }
    reply = json_loadb(zmq_msg_data(&m), zmq_msg_size(&m), 0, NULL);
    zmq_msg_close(&m);
out:
    zmq_close(s);
    return reply;
}

static json_t *s_ledger_query(void *ctl, json_t *req)
{
    (void)ctl;
    return sc__ctl_request(req, 120000);
}

/* Prints a reply; exit status 0 when it says ok. */
static int s_print(json_t *reply, bool pretty)
{
    if (!reply)
        return 3;
    char *text = json_dumps(reply, pretty ? JSON_INDENT(2) | JSON_PRESERVE_ORDER : JSON_COMPACT);
    puts(text);
    free(text);
    int rc = json_is_true(json_object_get(reply, "ok")) ? 0 : 1;
    json_decref(reply);
    return rc;
}

/* "key=value": the value as JSON when it parses (numbers, true, arrays …), else a string. */
static int s_kv(json_t *obj, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg)
        return s_die(2, "\"%s\": expected key=value", arg);
    char *key = strndup(arg, (size_t)(eq - arg));
    json_t *v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
    json_object_set_new(obj, key, v ? v : json_string(eq + 1));
    free(key);
    return 0;
}

/*
 * status, plugins, stats. A person reading `stats` wants the latency percentiles, not the
 * histograms' buckets (a few hundred lines): those are for programs subtracting two replies,
 * and stay with --buckets.
 */
static int s_simple(const char *cmd, int argc, char **argv)
{
    bool stats = strcmp(cmd, "stats") == 0, buckets = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            printf("usage: safecampusctl %s%s\n", cmd, stats ? " [--buckets]" : "");
            return 0;
        }
        if (stats && strcmp(argv[i], "--buckets") == 0)
            buckets = true;
        else
            return s_die(2, "%s: unknown argument \"%s\" (try --help)", cmd, argv[i]);
    }
    json_t *req = json_pack("{s:s}", "cmd", cmd);
    json_t *reply = sc__ctl_request(req, s_opt.timeout_ms);
    const char *name;
    json_t *h;
    json_object_foreach(stats && !buckets ? json_object_get(reply, "latency") : NULL, name, h)
        json_object_del(h, "buckets");
    int rc = s_print(reply, true);
    json_decref(req);
    return rc;
}

static int s_query(int argc, char **argv)
{
    if (argc < 3 || strcmp(argv[1], "--help") == 0) {
        printf("usage: safecampusctl query PLUGIN WHAT [key=value …]\n"
               "  e.g. safecampusctl query hazard_tracker open school=sch-001\n");
        return argc < 3 ? 2 : 0;
    }
    json_t *req = json_pack("{s:s, s:s, s:s}", "cmd", "query", "plugin", argv[1], "what", argv[2]);
    for (int i = 3; i < argc; i++)
        if (s_kv(req, argv[i]) != 0) {
            json_decref(req);
            return 2;
        }
    int rc = s_print(sc__ctl_request(req, 120000), true);
    json_decref(req);
    return rc;
}

static int s_clock(int argc, char **argv)
{
    if (argc < 3 || strcmp(argv[1], "--help") == 0) {
        printf("usage: safecampusctl clock set TIME      (RFC 3339)\n"
               "       safecampusctl clock advance DURATION  (seconds, or 30m, 2h, 7d …)\n"
               "Only with clock.mode = \"manual\"; answers once every plugin has ticked.\n");
        return argc < 3 ? 2 : 0;
    }
    json_t *req;
    if (strcmp(argv[1], "set") == 0) {
        req = json_pack("{s:s, s:s}", "cmd", "clock.set", "time", argv[2]);
    } else if (strcmp(argv[1], "advance") == 0) {
        int64_t secs;
        if (sc_duration_parse(argv[2], &secs) < 0)
            return s_die(2, "\"%s\": expected a duration (seconds, or 30m, 2h, 7d)", argv[2]);
        req = json_pack("{s:s, s:I}", "cmd", "clock.advance", "seconds", (json_int_t)secs);
    } else {
        return s_die(2, "clock: expected set or advance");
    }
    int rc = s_print(sc__ctl_request(req, 600000), false);
    json_decref(req);
    return rc;
}

static int s_tail(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--help") == 0) {
        printf("usage: safecampusctl tail [TYPE-PREFIX …]\n"
               "Prints every published event (one JSON line each) until interrupted.\n");
        return 0;
    }
    void *sub = zmq_socket(s_opt.zctx, ZMQ_SUB);
    if (zmq_connect(sub, s_opt.publish) < 0)
        return s_die(3, "could not connect to %s: %s", s_opt.publish, zmq_strerror(zmq_errno()));
    if (argc < 2)
        zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    for (int i = 1; i < argc; i++)
        zmq_setsockopt(sub, ZMQ_SUBSCRIBE, argv[i], strlen(argv[i]));
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sub, 0) < 0) {
            zmq_msg_close(&m);
            break;
        }
        if (!zmq_msg_more(&m)) { /* the envelope frame */
            fwrite(zmq_msg_data(&m), 1, zmq_msg_size(&m), stdout);
            fputc('\n', stdout);
        }
        zmq_msg_close(&m);
    }
    zmq_close(sub);
    return 0;
}

int main(int argc, char **argv)
{
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            s_opt.config = argv[++i];
        else if (strcmp(argv[i], "--control") == 0 && i + 1 < argc)
            s_opt.control = strdup(argv[++i]);
        else if (strcmp(argv[i], "--ingest") == 0 && i + 1 < argc)
            s_opt.ingest = strdup(argv[++i]);
        else if (strcmp(argv[i], "--publish") == 0 && i + 1 < argc)
            s_opt.publish = strdup(argv[++i]);
        else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
            s_opt.timeout_ms = atoi(argv[++i]) * 1000;
        else
            break;
    }
    if (i >= argc || strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 ||
        strcmp(argv[i], "help") == 0) {
        FILE *f = i >= argc ? stderr : stdout;
        fprintf(
            f, "usage: safecampusctl [--config FILE | --control EP] [--ingest EP] "
               "[--publish EP] COMMAND …\n"
               "\n"
               "  send TYPE key=value …  one event (or: send --file F | send -  JSON lines)\n"
               "  status                 the daemon, its clock and database\n"
               "  plugins                each plugin: cursor, lag, handled, retried, dead letters\n"
               "  stats                  events received, acked, duplicates, refused by code;\n"
               "                         latency in the daemon and the journal\n"
               "  query PLUGIN WHAT [k=v …]  ask a plugin (open hazards, a day's absences …)\n"
               "  tail [PREFIX …]        published events as JSON lines\n"
               "  clock set|advance …    move the manual clock\n"
               "  ledger …               the school's safety ledger export\n"
               "  source add|list|revoke|grant|ungrant …  authenticated sending systems\n"
               "\n"
               "COMMAND --help tells more.\n");
        return i >= argc ? 2 : 0;
    }
    signal(SIGPIPE, SIG_IGN);
    int rc = s_endpoints();
    if (rc != 0)
        return rc;
    s_opt.zctx = zmq_ctx_new();
    const char *cmd = argv[i];
    int sub_argc = argc - i;
    char **sub_argv = argv + i;
    if (strcmp(cmd, "send") == 0)
        rc = sc__ctl_send(s_opt.zctx, s_opt.ingest, sub_argc, sub_argv);
    else if (strcmp(cmd, "status") == 0 || strcmp(cmd, "plugins") == 0 || strcmp(cmd, "stats") == 0)
        rc = s_simple(cmd, sub_argc, sub_argv);
    else if (strcmp(cmd, "query") == 0)
        rc = s_query(sub_argc, sub_argv);
    else if (strcmp(cmd, "clock") == 0)
        rc = s_clock(sub_argc, sub_argv);
    else if (strcmp(cmd, "tail") == 0)
        rc = s_tail(sub_argc, sub_argv);
    else if (strcmp(cmd, "ledger") == 0)
        rc = sc__ctl_ledger(sub_argc, sub_argv, s_ledger_query, NULL);
    else if (strcmp(cmd, "source") == 0)
        rc = sc__ctl_source(sub_argc, sub_argv);
    else
        rc = s_die(2, "unknown command \"%s\" (try --help)", cmd);
    zmq_ctx_destroy(s_opt.zctx);
    free(s_opt.control);
    free(s_opt.ingest);
    free(s_opt.publish);
    return rc;
}
