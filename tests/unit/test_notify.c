/* Unit tests: the notify plugin against a local HTTP receiver and SMTP sink on loopback. */
#include "fakehost.h"

#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after setjmp.h, stdarg.h, stddef.h, stdint.h */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SEC SC_USEC_PER_SEC
#define MAX_RX 6

/* ---- the world a test runs in: one fake host and the receivers it started ---- */

struct rx {
    pid_t pid;
    int port;
    char dir[64];
    char log[96];
};

static fh_t *s_fh;
static struct rx s_rx[MAX_RX];
static int s_nrx;
static sc_time_t s_t0;

static const char *s_top(void)
{
    const char *top = getenv("SC_TOP");
    return top ? top : ".";
}

static char *s_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, n, m);
    fclose(m);
    fclose(f);
    return buf;
}

static json_t *s_fixture(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tests/fixtures/notify/%s", s_top(), name);
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    if (!j)
        fail_msg("fixture %s: %s", path, err.text);
    return j;
}

static void s_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/*
 * Starts tests/integration/<script> with args (NULL-terminated) and waits until
 * it listens; the port it took is in the returned entry. Killed by teardown.
 */
static struct rx *s_rx_start(const char *script, ...)
{
    assert_true(s_nrx < MAX_RX);
    struct rx *rx = &s_rx[s_nrx++];
    memset(rx, 0, sizeof *rx);
    char dir[] = "/tmp/notify-rx.XXXXXX";
    assert_non_null(mkdtemp(dir));
    snprintf(rx->dir, sizeof rx->dir, "%s", dir);
    snprintf(rx->log, sizeof rx->log, "%s/log", dir);
    char path[512], portfile[128];
    snprintf(path, sizeof path, "%s/tests/integration/%s", s_top(), script);
    snprintf(portfile, sizeof portfile, "%s/port", dir);

    const char *argv[32] = {"/usr/bin/python3", path, "--port-file", portfile, "--log", rx->log};
    int argc = 6;
    va_list ap;
    va_start(ap, script);
    for (const char *a; (a = va_arg(ap, const char *)) && argc < 31;)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;

    pid_t parent = getpid();
    rx->pid = fork();
    assert_true(rx->pid >= 0);
    if (rx->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the test */
        if (getppid() != parent)
            _exit(1);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        char *text = s_slurp(portfile);
        if (text) {
            rx->port = atoi(text);
            free(text);
            return rx;
        }
        int status;
        if (waitpid(rx->pid, &status, WNOHANG) == rx->pid) {
            rx->pid = 0;
            fail_msg("%s exited before listening", script);
        }
        s_sleep_ms(20);
    }
    fail_msg("%s did not start listening", script);
    return NULL;
}

static void s_rx_stop(struct rx *rx)
{
    if (rx->pid > 0) {
        kill(rx->pid, SIGTERM);
        waitpid(rx->pid, NULL, 0);
        rx->pid = 0;
    }
}

/* Every request or message a receiver recorded, oldest first (new reference). */
static json_t *s_rx_log(const struct rx *rx)
{
    json_t *out = json_array();
    FILE *f = fopen(rx->log, "r");
    char *line = NULL;
    size_t cap = 0;
    while (f && getline(&line, &cap, f) > 0) {
        json_t *rec = json_loads(line, 0, NULL);
        if (!rec)
            fail_msg("%s: not a JSON line: %s", rx->log, line);
        json_array_append_new(out, rec);
    }
    free(line);
    if (f)
        fclose(f);
    return out;
}

/* How many records carry idempotency key `key` and, unless status is 0, got that status. */
static size_t s_count_key(const json_t *log, const char *key, int status)
{
    size_t i, n = 0;
    const json_t *rec;
    json_array_foreach(log, i, rec)
    {
        const char *k = sc_json_str(json_object_get(rec, "headers"), "x-safecampus-notification");
        if (k && strcmp(k, key) == 0 && (!status || sc_json_int(rec, "status", -1) == status))
            n++;
    }
    return n;
}

static int s_setup(void **state)
{
    (void)state;
    assert_int_equal(sc_time_parse("2026-06-18T07:30:00+08:00", &s_t0), 0);
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    fh_destroy(&s_fh);
    for (int i = 0; i < s_nrx; i++) {
        s_rx_stop(&s_rx[i]);
        char path[128];
        snprintf(path, sizeof path, "%s/port", s_rx[i].dir);
        unlink(path);
        unlink(s_rx[i].log);
        rmdir(s_rx[i].dir);
    }
    s_nrx = 0;
    return 0;
}

/* A fake host with config_json, the fixture directory, p-1's webhook pointing at webhook_url. */
static fh_t *s_host(const char *config_json, const char *webhook_url)
{
    char so[512];
    const char *b = getenv("SC_BUILD");
    snprintf(so, sizeof so, "%s/plugins/notify.so", b ? b : "build");
    s_fh = fh_new(so, config_json, s_t0);
    assert_non_null(s_fh);
    json_t *dir = s_fixture("directory.json");
    char *school = json_dumps(json_object_get(dir, "school"), 0);
    fh_add_school(s_fh, school);
    free(school);
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(dir, "people"), i, p)
    {
        json_t *contacts = json_object_get(p, "contacts");
        if (json_object_get(contacts, "webhook") &&
            strcmp(sc_json_str(contacts, "webhook"), "@WEBHOOK@") == 0) {
            if (webhook_url)
                json_object_set_new(contacts, "webhook", json_string(webhook_url));
            else
                json_object_del(contacts, "webhook");
        }
        char *text = json_dumps(p, 0);
        fh_add_person(s_fh, text);
        free(text);
    }
    json_decref(dir);
    return s_fh;
}

/* Hands notify a notification.requested built from the fixture with these fields changed. */
static int s_request(const char *code, const char *person, const char *channel)
{
    json_t *env = s_fixture("requested.json");
    json_t *data = json_object_get(env, "data");
    json_object_set_new(data, "notification", json_string(code));
    json_object_set_new(data, "person", json_string(person));
    json_object_set_new(data, "channel", json_string(channel));
    char *text = json_dumps(env, 0);
    json_decref(env);
    int rc = fh_handle(s_fh, text);
    free(text);
    return rc;
}

/* The outbox column `col` of notification `code`, as text ("" when NULL; caller frees). */
static char *s_outbox(const char *code, const char *col)
{
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT %s FROM notify.outbox WHERE notification = $1", col);
    const char *params[] = {code};
    PGresult *res = PQexecParams(fh_db(s_fh), sql, 1, NULL, params, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(res), 1);
    char *v = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

static void s_assert_outbox(const char *code, const char *col, const char *want)
{
    char *v = s_outbox(code, col);
    if (strcmp(v, want) != 0)
        fail_msg("outbox %s.%s is \"%s\", expected \"%s\"", code, col, v, want);
    free(v);
}

/* The instants of a notification's attempts, in order (new array of seconds since s_t0). */
static json_t *s_attempt_offsets(const char *code)
{
    const char *params[] = {code};
    PGresult *res = PQexecParams(fh_db(s_fh),
                                 "SELECT extract(epoch FROM at)::bigint FROM notify.attempts"
                                 " WHERE notification = $1 ORDER BY attempt",
                                 1, NULL, params, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    json_t *out = json_array();
    for (int i = 0; i < PQntuples(res); i++)
        json_array_append_new(out,
                              json_integer(strtoll(PQgetvalue(res, i, 0), NULL, 10) - s_t0 / SEC));
    PQclear(res);
    return out;
}

static json_t *s_query(const char *req, int want_rc)
{
    int rc = 1;
    json_t *reply = fh_query(s_fh, req, &rc);
    if (rc != want_rc)
        fail_msg("query %s returned %d, expected %d", req, rc, want_rc);
    assert_non_null(reply);
    return reply;
}

/* ---- tests ----------------------------------------------------------------- */

static void test_validators(void **state)
{
    (void)state;
    s_host(NULL, NULL);
    static const struct {
        const char *env;
        int rc;
        const char *detail;
    } cases[] = {
        {"{\"type\":\"notification.delivered\",\"school\":\"sch-001\",\"data\":{\"notification\":"
         "\"n-1\",\"person\":\"p-1\",\"channel\":\"email\",\"attempts\":1}}",
         0, ""},
        {"{\"type\":\"notification.delivered\",\"school\":\"sch-001\",\"data\":{\"notification\":"
         "\"n-1\",\"person\":\"p-1\",\"channel\":\"email\",\"attempts\":0}}",
         -EINVAL, "data.attempts"},
        {"{\"type\":\"notification.delivered\",\"school\":\"sch-001\",\"data\":{\"person\":"
         "\"p-1\",\"channel\":\"email\",\"attempts\":1}}",
         -EINVAL, "data.notification: required"},
        {"{\"type\":\"notification.failed\",\"school\":\"sch-001\",\"data\":{\"notification\":"
         "\"n-1\",\"person\":\"p-1\",\"channel\":\"sms\",\"attempts\":0,\"reason\":\"no usable "
         "contact\",\"detail\":\"person p-1 has no usable phone contact\"}}",
         0, ""},
        {"{\"type\":\"notification.failed\",\"school\":\"sch-001\",\"data\":{\"notification\":"
         "\"n-1\",\"person\":\"p 1\",\"channel\":\"sms\",\"attempts\":0,\"reason\":\"x\"}}",
         -EINVAL, "data.person"},
        {"{\"type\":\"notification.failed\",\"school\":\"sch-001\",\"data\":{\"notification\":"
         "\"n-1\",\"person\":\"p-1\",\"channel\":\"sms\",\"attempts\":2}}",
         -EINVAL, "data.reason: required"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char detail[256] = "";
        int rc = fh_validate(s_fh, cases[i].env, detail, sizeof detail);
        if (rc != cases[i].rc || !strstr(detail, cases[i].detail))
            fail_msg("case %zu: rc %d detail \"%s\"", i, rc, detail);
    }
}

/* A webhook: JSON body, signature, idempotency key; sent from tick, never from handle. */
static void test_webhook_delivered(void **state)
{
    (void)state;
    struct rx *rx = s_rx_start("notify_http_receiver.py", "--secret", "s3cret", NULL);
    char url[128], cfg[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hook/p-1", rx->port);
    snprintf(cfg, sizeof cfg, "{\"secret\":\"s3cret\"}");
    s_host(cfg, url);

    assert_int_equal(s_request("n-1", "p-1", "webhook"), 0);
    json_t *log = s_rx_log(rx);
    assert_int_equal(json_array_size(log), 0); /* handle only fills the outbox */
    json_decref(log);
    json_t *ev = fh_take_emitted(s_fh);
    assert_int_equal(json_array_size(ev), 0);
    json_decref(ev);
    s_assert_outbox("n-1", "status", "pending");
    s_assert_outbox("n-1", "requested_on", "2026-06-18"); /* local date; UTC says the 17th */

    sc_time_t next = 0;
    assert_int_equal(fh_tick(s_fh, &next), 0);
    assert_true(next == SC_TIME_NEVER);
    log = s_rx_log(rx);
    assert_int_equal(json_array_size(log), 1);
    const json_t *rec = json_array_get(log, 0);
    const json_t *h = json_object_get(rec, "headers");
    assert_string_equal(sc_json_str(rec, "method"), "POST");
    assert_string_equal(sc_json_str(rec, "path"), "/hook/p-1");
    assert_string_equal(sc_json_str(h, "x-safecampus-notification"), "n-1");
    assert_string_equal(sc_json_str(h, "idempotency-key"), "n-1");
    assert_string_equal(sc_json_str(h, "content-type"), "application/json");
    assert_true(json_is_true(json_object_get(rec, "signature_ok")));
    json_t *body = json_loads(sc_json_str(rec, "body"), 0, NULL);
    assert_non_null(body);
    json_t *req = s_fixture("requested.json");
    const json_t *rd = json_object_get(req, "data");
    assert_string_equal(sc_json_str(body, "notification"), "n-1");
    assert_string_equal(sc_json_str(body, "person"), "p-1");
    assert_string_equal(sc_json_str(body, "subject"), sc_json_str(rd, "subject"));
    assert_string_equal(sc_json_str(body, "body"), sc_json_str(rd, "body"));
    assert_string_equal(sc_json_str(body, "school"), "sch-001");
    assert_string_equal(sc_json_str(body, "sent_at"), "2026-06-17T23:30:00Z");
    assert_true(json_equal(json_object_get(body, "ref"), json_object_get(rd, "ref")));
    json_decref(body);

    ev = fh_take_emitted(s_fh);
    assert_int_equal(json_array_size(ev), 1);
    const json_t *d = fh_find(ev, "notification.delivered");
    assert_non_null(d);
    assert_string_equal(sc_json_str(d, "school"), "sch-001");
    assert_string_equal(sc_json_str(d, "source"), "notify");
    const json_t *dd = json_object_get(d, "data");
    assert_string_equal(sc_json_str(dd, "notification"), "n-1");
    assert_string_equal(sc_json_str(dd, "person"), "p-1");
    assert_string_equal(sc_json_str(dd, "channel"), "webhook");
    assert_int_equal(sc_json_int(dd, "attempts", 0), 1);
    assert_true(json_equal(json_object_get(dd, "ref"), json_object_get(rd, "ref")));
    char detail[256];
    char *text = json_dumps(d, 0);
    assert_int_equal(fh_validate(s_fh, text, detail, sizeof detail), 0);
    free(text);

    json_t *q = s_query("{\"cmd\":\"query\",\"what\":\"log\",\"notification\":\"n-1\"}", 0);
    assert_string_equal(sc_json_str(json_object_get(q, "notification"), "status"), "delivered");
    const json_t *at = json_object_get(q, "attempts");
    assert_int_equal(json_array_size(at), 1);
    assert_true(json_is_true(json_object_get(json_array_get(at, 0), "ok")));
    assert_int_equal(sc_json_int(json_array_get(at, 0), "status", 0), 200);
    json_decref(q);
    json_decref(req);
    json_decref(ev);
    json_decref(log);
}

/* A repeated request is a no-op, before and after delivery; the config's webhook stands in. */
static void test_duplicate_and_default_webhook(void **state)
{
    (void)state;
    struct rx *rx = s_rx_start("notify_http_receiver.py", NULL);
    char cfg[160];
    snprintf(cfg, sizeof cfg, "{\"webhook_url\":\"http://127.0.0.1:%d/district-hook\"}", rx->port);
    s_host(cfg, NULL); /* p-1 has no webhook of their own */

    assert_int_equal(s_request("n-dup", "p-1", "webhook"), 0);
    assert_int_equal(s_request("n-dup", "p-1", "webhook"), 0);
    assert_int_equal(fh_tick(s_fh, NULL), 0);
    assert_int_equal(s_request("n-dup", "p-1", "webhook"), 0);
    assert_int_equal(fh_advance_to(s_fh, s_t0 + 3600 * SEC), 0);

    json_t *log = s_rx_log(rx);
    assert_int_equal(json_array_size(log), 1);
    assert_string_equal(sc_json_str(json_array_get(log, 0), "path"), "/district-hook");
    json_t *ev = fh_take_emitted(s_fh);
    assert_int_equal(fh_count(ev, "notification.delivered"), 1);
    assert_int_equal(json_array_size(ev), 1);
    json_decref(ev);
    json_decref(log);
}

/* Nobody to deliver to: notification.failed at once with the reason, nothing sent. */
static void test_no_usable_contact(void **state)
{
    (void)state;
    struct rx *rx = s_rx_start("notify_http_receiver.py", NULL);
    char cfg[160];
    snprintf(cfg, sizeof cfg, "{\"smtp_url\":\"smtp://127.0.0.1:%d\"}", rx->port);
    s_host(cfg, NULL);
    static const struct {
        const char *person, *channel, *reason, *detail;
    } cases[] = {
        {"p-404", "email", "no usable contact", "person p-404 is not in the directory"},
        {"p-3", "email", "no usable contact", "person p-3 has no usable e-mail contact"},
        {"p-4", "email", "no usable contact", "e-mail"},
        {"p-3", "webhook", "no usable contact", "webhook"},
        {"p-4", "webhook", "no usable contact", "webhook"},
        {"p-3", "dingtalk", "no usable contact", "dingtalk"},
        {"p-1", "sms", "channel not configured", "notify.sms_url is not set"},
        {"p-1", "fax", "unknown channel", "must be one of webhook, email, sms, dingtalk, wecom"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char code[32];
        snprintf(code, sizeof code, "n-nc-%zu", i);
        assert_int_equal(s_request(code, cases[i].person, cases[i].channel), 0);
        json_t *ev = fh_take_emitted(s_fh);
        const json_t *f = fh_find(ev, "notification.failed");
        if (json_array_size(ev) != 1 || !f)
            fail_msg("case %zu: expected one notification.failed", i);
        const json_t *d = json_object_get(f, "data");
        assert_string_equal(sc_json_str(d, "notification"), code);
        assert_string_equal(sc_json_str(d, "person"), cases[i].person);
        assert_string_equal(sc_json_str(d, "channel"), cases[i].channel);
        assert_string_equal(sc_json_str(d, "reason"), cases[i].reason);
        assert_int_equal(sc_json_int(d, "attempts", -1), 0);
        if (!strstr(sc_json_str(d, "detail"), cases[i].detail))
            fail_msg("case %zu: detail \"%s\"", i, sc_json_str(d, "detail"));
        char detail[256];
        char *text = json_dumps(f, 0);
        assert_int_equal(fh_validate(s_fh, text, detail, sizeof detail), 0);
        free(text);
        s_assert_outbox(code, "status", "failed");
        json_decref(ev);
    }
    sc_time_t next = 0;
    assert_int_equal(fh_tick(s_fh, &next), 0);
    assert_true(next == SC_TIME_NEVER);
    json_t *log = s_rx_log(rx);
    assert_int_equal(json_array_size(log), 0);
    json_decref(log);
    json_t *ev = fh_take_emitted(s_fh);
    assert_int_equal(json_array_size(ev), 0);
    json_decref(ev);
}

/* E-mail through the SMTP sink: encoded subject, base64 text, the key in the headers. */
static void test_email_delivered(void **state)
{
    (void)state;
    struct rx *sink = s_rx_start("notify_smtp_sink.py", "--fail-first", "1", NULL);
    char cfg[200];
    snprintf(cfg, sizeof cfg,
             "{\"smtp_url\":\"smtp://127.0.0.1:%d\",\"smtp_from\":\"safety@riverside.example\"}",
             sink->port);
    s_host(cfg, NULL);

    json_t *env = s_fixture("requested.json");
    json_t *data = json_object_get(env, "data");
    const char *subject =
        "【事故】一级：操场学生受伤，请校长、安全办主任立即到现场处置并在三十分钟内确认";
    const char *body = "第一行\n.以点开头的一行\n最后一行 with ASCII";
    json_object_set_new(data, "notification", json_string("inc-7:l1:p-1:email"));
    json_object_set_new(data, "channel", json_string("email"));
    json_object_set_new(data, "subject", json_string(subject));
    json_object_set_new(data, "body", json_string(body));
    char *text = json_dumps(env, 0);
    assert_int_equal(fh_handle(s_fh, text), 0);
    free(text);
    json_decref(env);

    /* The sink answers 451 the first time: a retry after retry_base, same message. */
    sc_time_t next = 0;
    assert_int_equal(fh_tick(s_fh, &next), 0);
    assert_true(next == s_t0 + 30 * SEC);
    s_assert_outbox("inc-7:l1:p-1:email", "status", "pending");
    s_assert_outbox("inc-7:l1:p-1:email", "attempts", "1");
    assert_int_equal(fh_advance_to(s_fh, s_t0 + 60 * SEC), 0);
    s_assert_outbox("inc-7:l1:p-1:email", "status", "delivered");
    s_assert_outbox("inc-7:l1:p-1:email", "attempts", "2");

    json_t *log = s_rx_log(sink);
    assert_int_equal(json_array_size(log), 2);
    assert_int_equal(s_count_key(log, "inc-7:l1:p-1:email", 250), 1);
    assert_int_equal(s_count_key(log, "inc-7:l1:p-1:email", 451), 1);
    const json_t *m = json_array_get(log, 1);
    const json_t *h = json_object_get(m, "headers");
    assert_string_equal(sc_json_str(m, "mail_from"), "safety@riverside.example");
    assert_string_equal(json_string_value(json_array_get(json_object_get(m, "rcpt"), 0)),
                        "wang@riverside.example");
    assert_string_equal(sc_json_str(m, "subject"), subject);
    assert_string_equal(sc_json_str(m, "body"), body);
    assert_string_equal(sc_json_str(h, "idempotency-key"), "inc-7:l1:p-1:email");
    assert_string_equal(sc_json_str(h, "message-id"), "<inc-7=l1=p-1=email@riverside.example>");
    assert_string_equal(sc_json_str(h, "to"), "王校长 <wang@riverside.example>");
    assert_string_equal(sc_json_str(h, "date"), "Wed, 17 Jun 2026 23:30:30 +0000");
    assert_string_equal(sc_json_str(json_array_get(log, 0), "subject"), subject);

    json_t *ev = fh_take_emitted(s_fh);
    assert_int_equal(fh_count(ev, "notification.delivered"), 1);
    assert_int_equal(
        sc_json_int(json_object_get(fh_find(ev, "notification.delivered"), "data"), "attempts", 0),
        2);
    json_decref(ev);
    json_decref(log);
}

/* A refusal retrying cannot change ends the notification at once. */
static void test_refused(void **state)
{
    (void)state;
    struct rx *web =
        s_rx_start("notify_http_receiver.py", "--fail-first", "-1", "--fail-status", "404", NULL);
    struct rx *sink =
        s_rx_start("notify_smtp_sink.py", "--fail-first", "-1", "--fail-code", "550", NULL);
    char url[128], cfg[200];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/gone", web->port);
    snprintf(cfg, sizeof cfg, "{\"smtp_url\":\"smtp://127.0.0.1:%d\"}", sink->port);
    s_host(cfg, url);
    assert_int_equal(s_request("n-404", "p-1", "webhook"), 0);
    assert_int_equal(s_request("n-550", "p-2", "email"), 0);
    sc_time_t next = 0;
    assert_int_equal(fh_tick(s_fh, &next), 0);
    assert_true(next == SC_TIME_NEVER);
    json_t *ev = fh_take_emitted(s_fh);
    assert_int_equal(fh_count(ev, "notification.failed"), 2);
    size_t i;
    const json_t *e;
    json_array_foreach(ev, i, e)
    {
        const json_t *d = json_object_get(e, "data");
        assert_string_equal(sc_json_str(d, "reason"), "refused by receiver");
        assert_int_equal(sc_json_int(d, "attempts", 0), 1);
    }
    s_assert_outbox("n-404", "last_error", "HTTP 404");
    s_assert_outbox("n-550", "status", "failed");
    char *err = s_outbox("n-550", "last_error");
    if (strncmp(err, "SMTP 550", 8) != 0)
        fail_msg("last_error \"%s\"", err);
    free(err);
    json_decref(ev);
}

/* The SMS gateway: the URL and body templates filled in, each value escaped for its place. */
static void test_sms_gateway(void **state)
{
    (void)state;
    struct rx *rx = s_rx_start("notify_http_receiver.py", NULL);
    char cfg[512];
    snprintf(cfg, sizeof cfg,
             "{\"sms_url\":\"http://127.0.0.1:%d/sms/send?to={phone}&ref={notification}\","
             "\"sms_body\":\"{\\\"to\\\":\\\"{phone}\\\",\\\"text\\\":\\\"{subject}: {body}\\\"}\","
             "\"sms_headers\":[\"Authorization: Bearer t0k\"]}",
             rx->port);
    s_host(cfg, NULL);
    json_t *env = s_fixture("requested.json");
    json_t *data = json_object_get(env, "data");
    json_object_set_new(data, "notification", json_string("n-sms"));
    json_object_set_new(data, "channel", json_string("sms"));
    json_object_set_new(data, "subject", json_string("Fire \"drill\""));
    json_object_set_new(data, "body", json_string("Gate B {closed}\\now"));
    char *text = json_dumps(env, 0);
    assert_int_equal(fh_handle(s_fh, text), 0);
    free(text);
    json_decref(env);
    assert_int_equal(fh_tick(s_fh, NULL), 0);

    json_t *log = s_rx_log(rx);
    assert_int_equal(json_array_size(log), 1);
    const json_t *rec = json_array_get(log, 0);
    assert_string_equal(sc_json_str(rec, "path"), "/sms/send?to=%2B86%20138-0000-0001&ref=n-sms");
    const json_t *h = json_object_get(rec, "headers");
    assert_string_equal(sc_json_str(h, "authorization"), "Bearer t0k");
    assert_string_equal(sc_json_str(h, "idempotency-key"), "n-sms");
    json_t *body = json_loads(sc_json_str(rec, "body"), 0, NULL);
    assert_non_null(body);
    assert_string_equal(sc_json_str(body, "to"), "+86 138-0000-0001");
    assert_string_equal(sc_json_str(body, "text"), "Fire \"drill\": Gate B {closed}\\now");
    json_decref(body);
    json_t *ev = fh_take_emitted(s_fh);
    assert_int_equal(fh_count(ev, "notification.delivered"), 1);
    json_decref(ev);
    json_decref(log);
}

/* Chat robots: the text message body, DingTalk signing, an errcode reply counts as a failure. */
static void test_robots(void **state)
{
    (void)state;
    struct rx *rx =
        s_rx_start("notify_http_receiver.py", "--fail-first", "1", "--fail-mode", "errcode", NULL);
    char cfg[400];
    snprintf(
        cfg, sizeof cfg,
        "{\"robots\":{\"dingtalk\":{\"url\":\"http://127.0.0.1:%d/robot/send?access_token=abc\","
        "\"secret\":\"SECxyz\"},\"duty\":{\"template\":\"{\\\"msg\\\":\\\"{name}: "
        "{subject}\\\"}\"}}}",
        rx->port);
    s_host(cfg, NULL);
    char duty[128];
    snprintf(duty, sizeof duty,
             "{\"person\":\"p-9\",\"name\":\"值班室\",\"roles\":[],\"school\":\"sch-001\","
             "\"contacts\":{\"duty\":\"http://127.0.0.1:%d/duty\"}}",
             rx->port);
    fh_add_person(s_fh, duty);
    assert_int_equal(s_request("n-ding", "p-3", "dingtalk"), 0); /* the group robot's URL */
    assert_int_equal(fh_advance_to(s_fh, s_t0 + 60 * SEC), 0);
    assert_int_equal(s_request("n-duty", "p-9", "duty"), 0); /* the person's own robot */
    assert_int_equal(fh_tick(s_fh, NULL), 0);

    json_t *log = s_rx_log(rx);
    assert_int_equal(json_array_size(log), 3);
    assert_int_equal(s_count_key(log, "n-ding", 0), 2); /* errcode, then ok */
    const json_t *rec = json_array_get(log, 1);
    char want[128];
    snprintf(want, sizeof want, "/robot/send?access_token=abc&timestamp=%lld&sign=",
             (long long)((s_t0 + 30 * SEC) / 1000));
    if (strncmp(sc_json_str(rec, "path"), want, strlen(want)) != 0)
        fail_msg("robot path %s, expected %s…", sc_json_str(rec, "path"), want);
    json_t *body = json_loads(sc_json_str(rec, "body"), 0, NULL);
    json_t *req = s_fixture("requested.json");
    char content[1024];
    snprintf(content, sizeof content, "%s\n%s",
             sc_json_str(json_object_get(req, "data"), "subject"),
             sc_json_str(json_object_get(req, "data"), "body"));
    assert_string_equal(sc_json_str(body, "msgtype"), "text");
    assert_string_equal(sc_json_str(json_object_get(body, "text"), "content"), content);
    json_decref(body);
    rec = json_array_get(log, 2);
    assert_string_equal(sc_json_str(rec, "path"), "/duty");
    body = json_loads(sc_json_str(rec, "body"), 0, NULL);
    snprintf(content, sizeof content, "值班室: %s",
             sc_json_str(json_object_get(req, "data"), "subject"));
    assert_string_equal(sc_json_str(body, "msg"), content);
    json_decref(body);
    json_decref(req);

    json_t *q = s_query("{\"cmd\":\"query\",\"what\":\"log\",\"notification\":\"n-ding\"}", 0);
    const json_t *first = json_array_get(json_object_get(q, "attempts"), 0);
    assert_true(json_is_false(json_object_get(first, "ok")));
    assert_string_equal(sc_json_str(first, "error"), "errcode 310000: keywords not in content");
    json_decref(q);
    json_t *ev = fh_take_emitted(s_fh);
    assert_int_equal(fh_count(ev, "notification.delivered"), 2);
    json_decref(ev);
    json_decref(log);
}

/* A receiver that fails for a while and recovers: every notification delivered exactly once. */
static void test_recovers_exactly_once(void **state)
{
    (void)state;
    struct rx *rx = s_rx_start("notify_http_receiver.py", "--fail-first", "7", NULL);
    char cfg[160];
    snprintf(cfg, sizeof cfg, "{\"webhook_url\":\"http://127.0.0.1:%d/hook\"}", rx->port);
    s_host(cfg, NULL);
    const char *codes[] = {"n-r1", "n-r2", "n-r3", "n-r4"};
    const char *people[] = {"p-1", "p-2", "p-3", "p-4"};
    for (int i = 0; i < 4; i++)
        assert_int_equal(s_request(codes[i], people[i], "webhook"), 0);
    assert_int_equal(fh_advance_to(s_fh, s_t0 + 2 * 3600 * SEC), 0);

    json_t *log = s_rx_log(rx);
    assert_int_equal(json_array_size(log), 4 + 7);
    json_t *ev = fh_take_emitted(s_fh);
    assert_int_equal(fh_count(ev, "notification.delivered"), 4);
    assert_int_equal(fh_count(ev, "notification.failed"), 0);
    for (int i = 0; i < 4; i++) {
        if (s_count_key(log, codes[i], 200) != 1)
            fail_msg("%s delivered %zu times", codes[i], s_count_key(log, codes[i], 200));
        s_assert_outbox(codes[i], "status", "delivered");
        /* Every attempt is in the log, at the back-off instants: 0, 30 s, then 60 s later. */
        json_t *at = s_attempt_offsets(codes[i]);
        size_t n = json_array_size(at);
        assert_int_equal(n, s_count_key(log, codes[i], 0));
        static const int64_t when[] = {0, 30, 90, 210};
        for (size_t k = 0; k < n; k++)
            assert_int_equal(json_integer_value(json_array_get(at, k)), when[k]);
        json_decref(at);
    }
    json_decref(ev);
    json_decref(log);
}

/* A receiver that stays down: retried with back-off, then notification.failed; visible in queries.
 */
static void test_gives_up(void **state)
{
    (void)state;
    struct rx *rx = s_rx_start("notify_http_receiver.py", "--fail-first", "-1", NULL);
    char cfg[200];
    snprintf(cfg, sizeof cfg,
             "{\"webhook_url\":\"http://127.0.0.1:%d/hook\",\"attempts\":3,\"retry_base\":\"10s\"}",
             rx->port);
    s_host(cfg, NULL);
    assert_int_equal(s_request("n-down", "p-2", "webhook"), 0);
    sc_time_t next = 0;
    assert_int_equal(fh_tick(s_fh, &next), 0);
    assert_true(next == s_t0 + 10 * SEC);

    json_t *q = s_query("{\"cmd\":\"query\",\"what\":\"outbox\",\"status\":\"pending\"}", 0);
    assert_int_equal(json_array_size(json_object_get(q, "notifications")), 1);
    assert_int_equal(
        sc_json_int(json_object_get(json_object_get(q, "counts"), "webhook"), "pending", 0), 1);
    json_decref(q);

    assert_int_equal(fh_advance_to(s_fh, s_t0 + 3600 * SEC), 0);
    json_t *log = s_rx_log(rx);
    assert_int_equal(s_count_key(log, "n-down", 503), 3);
    json_t *at = s_attempt_offsets("n-down");
    assert_int_equal(json_array_size(at), 3);
    assert_int_equal(json_integer_value(json_array_get(at, 1)), 10);
    assert_int_equal(json_integer_value(json_array_get(at, 2)), 30);
    json_decref(at);
    json_t *ev = fh_take_emitted(s_fh);
    assert_int_equal(json_array_size(ev), 1);
    const json_t *f = fh_find(ev, "notification.failed");
    assert_non_null(f);
    const json_t *d = json_object_get(f, "data");
    assert_string_equal(sc_json_str(d, "reason"), "gave up after retries");
    assert_string_equal(sc_json_str(d, "detail"), "HTTP 503");
    assert_int_equal(sc_json_int(d, "attempts", 0), 3);
    assert_string_equal(sc_json_str(f, "occurred_at"), "2026-06-17T23:30:30Z");

    q = s_query("{\"cmd\":\"query\",\"what\":\"outbox\",\"status\":\"failed\",\"channel\":"
                "\"webhook\"}",
                0);
    assert_int_equal(json_array_size(json_object_get(q, "notifications")), 1);
    assert_string_equal(
        sc_json_str(json_array_get(json_object_get(q, "notifications"), 0), "reason"),
        "gave up after retries");
    assert_int_equal(
        sc_json_int(json_object_get(json_object_get(q, "counts"), "webhook"), "failed", 0), 1);
    assert_int_equal(
        sc_json_int(json_object_get(json_object_get(q, "counts"), "webhook"), "pending", -1), 0);
    json_decref(q);
    json_decref(ev);
    json_decref(log);
}

/* A hanging receiver, a dead mail server and a dead route do not hold up the working channel. */
static void test_down_channel_does_not_block(void **state)
{
    (void)state;
    struct rx *hang =
        s_rx_start("notify_http_receiver.py", "--fail-first", "-1", "--fail-mode", "hang", NULL);
    struct rx *ok = s_rx_start("notify_http_receiver.py", NULL);
    struct rx *dead = s_rx_start("notify_smtp_sink.py", NULL);
    s_rx_stop(dead); /* its port now refuses connections */
    char cfg[300];
    snprintf(cfg, sizeof cfg,
             "{\"smtp_url\":\"smtp://127.0.0.1:%d\",\"webhook_url\":\"http://127.0.0.1:%d/dead\","
             "\"timeout\":\"1s\",\"connect_timeout\":\"1s\",\"route_batch\":2}",
             dead->port, dead->port);
    s_host(cfg, NULL);
    char person[200];
    snprintf(person, sizeof person,
             "{\"person\":\"p-hang\",\"name\":\"h\",\"roles\":[],\"school\":\"sch-001\","
             "\"contacts\":{\"webhook\":\"http://127.0.0.1:%d/slow\"}}",
             hang->port);
    fh_add_person(s_fh, person);
    snprintf(person, sizeof person,
             "{\"person\":\"p-ok\",\"name\":\"o\",\"roles\":[],\"school\":\"sch-001\","
             "\"contacts\":{\"webhook\":\"http://127.0.0.1:%d/fine\"}}",
             ok->port);
    fh_add_person(s_fh, person);

    assert_int_equal(s_request("n-slow", "p-hang", "webhook"), 0);
    assert_int_equal(s_request("n-mail", "p-2", "email"), 0);
    const char *dead_codes[] = {"n-dead1", "n-dead2", "n-dead3", "n-dead4"};
    for (int i = 0; i < 4; i++) /* p-3 has no webhook: the dead default one */
        assert_int_equal(s_request(dead_codes[i], "p-3", "webhook"), 0);
    assert_int_equal(s_request("n-fine", "p-ok", "webhook"), 0);

    sc_time_t next = 0;
    assert_int_equal(fh_tick(s_fh, &next), 0);
    s_assert_outbox("n-fine", "status", "delivered");
    s_assert_outbox("n-slow", "status", "pending");
    s_assert_outbox("n-slow", "attempts", "1");
    s_assert_outbox("n-mail", "status", "pending");
    s_assert_outbox("n-mail", "attempts", "1");
    /* Only route_batch of the dead route's four were tried; the others are still due. */
    int tried = 0;
    for (int i = 0; i < 4; i++) {
        char *a = s_outbox(dead_codes[i], "attempts");
        tried += atoi(a);
        free(a);
    }
    assert_int_equal(tried, 2);
    assert_true(next == s_t0);
    json_t *log = s_rx_log(ok);
    assert_int_equal(json_array_size(log), 1);
    json_decref(log);
    log = s_rx_log(hang);
    assert_int_equal(json_array_size(log), 1);
    json_decref(log);
    json_t *ev = fh_take_emitted(s_fh);
    assert_int_equal(json_array_size(ev), 1);
    assert_non_null(fh_find(ev, "notification.delivered"));
    json_decref(ev);

    assert_int_equal(fh_tick(s_fh, &next), 0); /* the remaining two of the dead route */
    assert_true(next == s_t0 + 30 * SEC);
}

/* At most `batch` deliveries a tick; the tick says more is due now. */
static void test_batch_limit(void **state)
{
    (void)state;
    struct rx *rx = s_rx_start("notify_http_receiver.py", NULL);
    char cfg[160];
    snprintf(cfg, sizeof cfg, "{\"webhook_url\":\"http://127.0.0.1:%d/hook\",\"batch\":2}",
             rx->port);
    s_host(cfg, NULL);
    const char *codes[] = {"n-b1", "n-b2", "n-b3", "n-b4", "n-b5"};
    for (int i = 0; i < 5; i++)
        assert_int_equal(s_request(codes[i], "p-3", "webhook"), 0);
    sc_time_t next = 0;
    assert_int_equal(fh_tick(s_fh, &next), 0);
    assert_true(next == s_t0);
    json_t *log = s_rx_log(rx);
    assert_int_equal(json_array_size(log), 2);
    json_decref(log);
    for (int guard = 0; next <= fh_now(s_fh) && guard < 10; guard++)
        assert_int_equal(fh_tick(s_fh, &next), 0);
    assert_true(next == SC_TIME_NEVER);
    log = s_rx_log(rx);
    assert_int_equal(json_array_size(log), 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(s_count_key(log, codes[i], 200), 1);
    json_decref(log);
}

/* The ledger section, figures, paging, and refusals of bad requests. */
static void test_queries(void **state)
{
    (void)state;
    struct rx *rx = s_rx_start("notify_http_receiver.py", NULL);
    char cfg[160];
    snprintf(cfg, sizeof cfg, "{\"webhook_url\":\"http://127.0.0.1:%d/hook\"}", rx->port);
    s_host(cfg, NULL);
    assert_int_equal(s_request("n-q1", "p-1", "webhook"), 0);
    assert_int_equal(s_request("n-q2", "p-3", "email"), 0); /* not configured: failed */
    assert_int_equal(fh_tick(s_fh, NULL), 0);
    assert_int_equal(s_request("n-q3", "p-2", "webhook"), 0); /* pending */

    json_t *q = s_query("{\"cmd\":\"query\",\"what\":\"ledger\",\"school\":\"sch-001\","
                        "\"from\":\"2026-06-18\",\"to\":\"2026-06-18\"}",
                        0);
    const json_t *sec = json_array_get(json_object_get(q, "sections"), 0);
    assert_string_equal(sc_json_str(sec, "key"), "notifications");
    assert_string_equal(sc_json_str(sec, "title_zh"), "通知送达记录");
    const json_t *cols = json_object_get(sec, "columns");
    const json_t *rows = json_object_get(sec, "rows");
    assert_int_equal(json_array_size(rows), 3);
    assert_int_equal(json_array_size(json_array_get(rows, 0)), json_array_size(cols));
    assert_string_equal(json_string_value(json_array_get(json_array_get(rows, 0), 0)), "n-q1");
    assert_string_equal(json_string_value(json_array_get(json_array_get(rows, 0), 5)), "delivered");
    assert_string_equal(json_string_value(json_array_get(json_array_get(rows, 1), 8)),
                        "channel not configured");
    assert_true(json_is_null(json_object_get(q, "next")));
    json_decref(q);

    /* The 17th in UTC is the 18th in Shanghai: nothing on the 17th. */
    q = s_query("{\"cmd\":\"query\",\"what\":\"ledger\",\"school\":\"sch-001\","
                "\"from\":\"2026-06-17\",\"to\":\"2026-06-17\"}",
                0);
    assert_int_equal(
        json_array_size(json_object_get(json_array_get(json_object_get(q, "sections"), 0), "rows")),
        0);
    json_decref(q);

    /* Paging: two pages of two and one. */
    q = s_query("{\"cmd\":\"query\",\"what\":\"ledger\",\"school\":\"sch-001\","
                "\"from\":\"2026-06-01\",\"to\":\"2026-06-30\",\"limit\":2}",
                0);
    assert_int_equal(
        json_array_size(json_object_get(json_array_get(json_object_get(q, "sections"), 0), "rows")),
        2);
    const char *cursor = sc_json_str(q, "next");
    assert_non_null(cursor);
    char req[256];
    snprintf(req, sizeof req,
             "{\"cmd\":\"query\",\"what\":\"ledger\",\"school\":\"sch-001\",\"from\":"
             "\"2026-06-01\",\"to\":\"2026-06-30\",\"limit\":2,\"after\":\"%s\"}",
             cursor);
    json_decref(q);
    q = s_query(req, 0);
    rows = json_object_get(json_array_get(json_object_get(q, "sections"), 0), "rows");
    assert_int_equal(json_array_size(rows), 1);
    assert_string_equal(json_string_value(json_array_get(json_array_get(rows, 0), 0)), "n-q3");
    assert_true(json_is_null(json_object_get(q, "next")));
    json_decref(q);

    static const char *const figure_reqs[] = {
        "{\"cmd\":\"query\",\"what\":\"figures\",\"school\":\"sch-001\",\"from\":\"2026-01-01\","
        "\"to\":\"2026-12-31\"}",
        "{\"cmd\":\"query\",\"what\":\"figures\",\"district\":\"d-01\",\"from\":\"2026-01-01\","
        "\"to\":\"2026-12-31\"}",
    };
    for (size_t i = 0; i < 2; i++) {
        q = s_query(figure_reqs[i], 0);
        assert_int_equal(sc_json_int(q, "notifications", -1), 3);
        assert_int_equal(sc_json_int(q, "delivered", -1), 1);
        assert_int_equal(sc_json_int(q, "delivered_first_attempt", -1), 1);
        assert_int_equal(sc_json_int(q, "failed", -1), 1);
        assert_int_equal(sc_json_int(q, "pending", -1), 1);
        assert_int_equal(sc_json_int(q, "no_contact", -1), 0);
        json_decref(q);
    }

    q = s_query("{\"cmd\":\"query\",\"what\":\"log\",\"notification\":\"n-none\"}", 0);
    assert_true(json_is_null(json_object_get(q, "notification")));
    assert_int_equal(json_array_size(json_object_get(q, "attempts")), 0);
    json_decref(q);

    static const struct {
        const char *req, *error;
    } bad[] = {
        {"{\"cmd\":\"query\",\"what\":\"nonsense\"}",
         "what: must be one of log, outbox, ledger, figures"},
        {"{\"cmd\":\"query\"}", "what: must be one of log, outbox, ledger, figures"},
        {"{\"cmd\":\"query\",\"what\":\"log\"}", "notification: required"},
        {"{\"cmd\":\"query\",\"what\":\"ledger\",\"from\":\"2026-06-01\",\"to\":\"2026-06-30\"}",
         "school: required"},
        {"{\"cmd\":\"query\",\"what\":\"ledger\",\"school\":\"sch-001\",\"from\":\"2026-06-30\","
         "\"to\":\"2026-06-01\"}",
         "to: must not be before from"},
        {"{\"cmd\":\"query\",\"what\":\"ledger\",\"school\":\"sch-001\",\"from\":\"2026-06-01\","
         "\"to\":\"2026-06-30\",\"after\":\"x\"}",
         "after: must be a cursor from a previous reply"},
        {"{\"cmd\":\"query\",\"what\":\"figures\",\"from\":\"2026-06-01\",\"to\":\"2026-06-30\"}",
         "school: give either school or district"},
        {"{\"cmd\":\"query\",\"what\":\"outbox\",\"status\":\"lost\"}", "status: must be one of"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        q = s_query(bad[i].req, -EINVAL);
        if (!sc_json_str(q, "error") || !strstr(sc_json_str(q, "error"), bad[i].error))
            fail_msg("%s: error \"%s\"", bad[i].req, sc_json_str(q, "error"));
        json_decref(q);
    }
}

/* Settings that cannot work are refused at start, naming the key. */
static void test_bad_config(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"attempts\":0}",
        "{\"retry_base\":\"1h\",\"retry_max\":\"10m\"}",
        "{\"smtp_tls\":\"maybe\"}",
        "{\"smtp_url\":\"http://mail\"}",
        "{\"smtp_from\":\"no-at-sign\"}",
        "{\"webhook_url\":\"ftp://example/x\"}",
        "{\"sms_headers\":[\"no colon\"]}",
        "{\"robots\":{\"email\":{}}}",
        "{\"robots\":{\"x\":{\"template\":\"not json {body}\"}}}",
        "{\"robots\":{\"x\":{\"colour\":\"red\"}}}",
        "{\"no_such_key\":1}",
    };
    char so[512];
    const char *b = getenv("SC_BUILD");
    snprintf(so, sizeof so, "%s/plugins/notify.so", b ? b : "build");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fh_t *fh = fh_new(so, bad[i], s_t0);
        if (fh) {
            fh_destroy(&fh);
            fail_msg("config %s was accepted", bad[i]);
        }
    }
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_validators, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_webhook_delivered, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_and_default_webhook, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_no_usable_contact, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_email_delivered, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_refused, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_sms_gateway, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_robots, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_recovers_exactly_once, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_gives_up, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_down_channel_does_not_block, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_batch_limit, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_queries, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_bad_config, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
