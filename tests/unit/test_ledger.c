/* Unit tests: the ledger plugin against the fake host, and the ledger export of safecampusctl. */
#include "fakehost.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* The export's writers and merge, driven below through a fake control socket. */
#include "../../ctl/ledger.c"

/* ---- helpers ----------------------------------------------------------------------------- */

static const char *s_so(void)
{
    static char path[1024];
    const char *b = getenv("SC_BUILD");
    snprintf(path, sizeof path, "%s/plugins/ledger.so", b ? b : "build");
    return path;
}

static const char *s_fixture(const char *name)
{
    static char path[1024];
    const char *top = getenv("SC_TOP");
    snprintf(path, sizeof path, "%s/tests/fixtures/ledger/%s", top ? top : ".", name);
    return path;
}

static sc_time_t T(const char *s)
{
    sc_time_t t = 0;
    if (sc_time_parse(s, &t) < 0)
        fail_msg("bad time in test: %s", s);
    return t;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* The fake host of the running test: destroyed by the teardown, also when the test fails. */
static fh_t *s_live;

static int s_teardown(void **state)
{
    (void)state;
    fh_destroy(&s_live);
    return 0;
}

/* A fake host with two schools of d-01, one of d-02, and their people. */
static fh_t *s_host(const char *config, const char *start)
{
    fh_t *fh = fh_new(s_so(), config, T(start));
    assert_non_null(fh);
    s_live = fh;
    fh_add_school(fh, "{\"school\":\"sch-001\",\"name\":\"新桥小学\",\"district\":\"d-01\","
                      "\"timezone\":\"Asia/Shanghai\"}");
    fh_add_school(fh, "{\"school\":\"sch-002\",\"name\":\"OTHER-SCHOOL\",\"district\":\"d-01\"}");
    fh_add_school(fh, "{\"school\":\"sch-003\",\"name\":\"Far school\",\"district\":\"d-02\"}");
    fh_add_person(fh, "{\"person\":\"p-001\",\"name\":\"王校长\",\"roles\":[\"principal\"],"
                      "\"school\":\"sch-001\"}");
    fh_add_person(fh, "{\"person\":\"t-1\",\"name\":\"张老师\",\"roles\":[\"head_teacher\","
                      "\"teacher\"],\"school\":\"sch-001\"}");
    fh_add_person(fh, "{\"person\":\"t-2\",\"name\":\"刘老师\",\"roles\":[\"teacher\"],"
                      "\"school\":\"sch-001\"}");
    fh_add_person(fh, "{\"person\":\"t-3\",\"name\":\"陈老师\",\"roles\":[\"teacher\"],"
                      "\"school\":\"sch-001\"}");
    return fh;
}

__attribute__((format(printf, 3, 4))) static int s_send_rc(fh_t *fh, const char *when,
                                                           const char *fmt, ...)
{
    char body[8192], env[9000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    fh_set_now(fh, T(when));
    snprintf(env, sizeof env, "%.*s,\"occurred_at\":\"%s\"}", (int)strlen(body) - 1, body, when);
    return fh_handle(fh, env);
}

/* Sends one envelope (its JSON without occurred_at) at `when`, the clock set there first. */
#define SEND(fh, when, ...) assert_int_equal(s_send_rc((fh), (when), __VA_ARGS__), 0)

__attribute__((format(printf, 2, 3))) static json_t *s_query(fh_t *fh, const char *fmt, ...)
{
    char req[4096];
    int rc = -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(req, sizeof req, fmt, ap);
    va_end(ap);
    json_t *reply = fh_query(fh, req, &rc);
    if (rc != 0) {
        char *text = reply ? json_dumps(reply, 0) : NULL;
        fail_msg("query %s failed: %d %s", req, rc, text ? text : "");
    }
    return reply;
}

static long s_sql_long(fh_t *fh, const char *sql)
{
    PGresult *res = PQexec(fh_db(fh), sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        fail_msg("%s: %s", sql, PQerrorMessage(fh_db(fh)));
    }
    long v = atol(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

static void s_sql(fh_t *fh, const char *sql)
{
    PGresult *res = PQexec(fh_db(fh), sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(fh_db(fh)));
    PQclear(res);
}

/* The emitted event of `type` whose data[key] is value (borrowed), or NULL. */
static const json_t *s_find_where(const json_t *arr, const char *type, const char *key,
                                  const char *value)
{
    size_t i;
    const json_t *e;
    json_array_foreach(arr, i, e)
    {
        const char *t = sc_json_str(e, "type"), *v = sc_json_str(json_object_get(e, "data"), key);
        if (t && strcmp(t, type) == 0 && v && strcmp(v, value) == 0)
            return e;
    }
    return NULL;
}

static const char *s_reason(const json_t *ev)
{
    return sc_json_str(json_object_get(ev, "data"), "reason");
}

static void s_assert_contains(const char *hay, const char *needle)
{
    if (!hay || !strstr(hay, needle))
        fail_msg("\"%s\" does not contain \"%s\"", hay ? hay : "(null)", needle);
}

/* Replays a fixture of envelopes (one a line), mirroring directory entries into the fake host. */
static void s_replay(fh_t *fh, const char *name)
{
    FILE *f = fopen(s_fixture(name), "r");
    char line[16384];
    assert_non_null(f);
    while (fgets(line, sizeof line, f)) {
        json_t *env = json_loads(line, 0, NULL);
        assert_non_null(env);
        const char *type = sc_json_str(env, "type");
        const json_t *d = json_object_get(env, "data");
        if (strcmp(type, "directory.person.upserted") == 0) {
            json_t *p = json_deep_copy(d);
            json_object_set(p, "school", json_object_get(env, "school"));
            char *text = json_dumps(p, 0);
            fh_add_person(fh, text);
            free(text);
            json_decref(p);
        }
        fh_set_now(fh, T(sc_json_str(env, "occurred_at")));
        int rc = fh_handle(fh, line);
        if (rc != 0)
            fail_msg("fixture line failed (%d): %s", rc, line);
        json_decref(env);
    }
    fclose(f);
}

/* A section of a ledger answer by key (borrowed), or NULL. */
static const json_t *s_section(const json_t *reply, const char *key)
{
    size_t i;
    const json_t *s;
    json_array_foreach(json_object_get(reply, "sections"), i, s)
    {
        if (strcmp(sc_json_str(s, "key"), key) == 0)
            return s;
    }
    return NULL;
}

/* ---- validators -------------------------------------------------------------------------- */

static void test_validators(void **state)
{
    (void)state;
    static const struct {
        const char *type, *data, *actor;
        const char *detail; /* NULL: accepted */
    } cases[] = {
        {"leadership.member.upserted",
         "{\"member\":\"p-1\",\"position\":\"leader\",\"duty\":\"all\"}", NULL, NULL},
        {"leadership.member.upserted",
         "{\"member\":\"p-1\",\"position\":\"boss\",\"duty\":\"all\"}", NULL,
         "data.position: must be one of leader, deputy, member"},
        {"leadership.member.upserted",
         "{\"member\":\"p 1\",\"position\":\"leader\",\"duty\":\"x\"}", NULL,
         "data.member: must be a code"},
        {"rule.published", "{\"rule\":\"r-1\",\"title\":\"Fire rules\"}", NULL,
         "data.version: required"},
        {"agreement.signed", "{\"agreement\":\"a-1\",\"party\":\"t-1\",\"party_role\":\"teacher\"}",
         NULL, "data.term: required"},
        {"agreement.signed",
         "{\"agreement\":\"a-1\",\"party\":\"t-1\",\"party_role\":\"janitor\",\"term\":\"t1\"}",
         NULL, "data.party_role: must be one of"},
        {"agreement.roster",
         "{\"term\":\"t1\",\"party_role\":\"parent\",\"parties\":[\"s-1\",\"s 2\"]}", NULL,
         "data.parties[1]: must be a code"},
        {"drill.scheduled",
         "{\"drill\":\"d-1\",\"kind\":\"evacuation\",\"starts_at\":\"2026-03-12T10:00:00+08:00\"}",
         NULL, "data.ends_at: required"},
        {"drill.scheduled",
         "{\"drill\":\"d-1\",\"kind\":\"evacuation\",\"starts_at\":\"2026-03-12T10:00:00+08:00\","
         "\"ends_at\":\"2026-03-12T09:00:00+08:00\"}",
         NULL, "data.ends_at: must not be before starts_at"},
        {"drill.started", "{\"drill\":\"d-1\",\"kind\":\"party\"}", NULL,
         "data.kind: must be one of evacuation, fire"},
        {"drill.started", "{\"drill\":\"d-1\",\"kind\":\"fire\",\"starts_at\":\"noon\"}", NULL,
         "data.starts_at: expected an RFC 3339 time"},
        {"drill.ended", "{\"drill\":\"d-1\",\"problems\":[\"\"]}", NULL,
         "data.problems[0]: expected a non-empty string"},
        {"drill.conducted",
         "{\"drill\":\"d-1\",\"kind\":\"fire\",\"starts_at\":\"2026-03-12T10:00:00+08:00\","
         "\"participants\":500,\"evacuation_seconds\":170}",
         NULL, NULL},
        {"drill.conducted", "{\"drill\":\"d-1\",\"kind\":\"fire\"}", NULL,
         "data.starts_at: required"},
        {"drill.cancelled", "{\"reason\":\"rain\"}", NULL, "data.drill: required"},
        {"education.session", "{\"session\":\"e-1\",\"topic\":\"cooking\",\"teacher\":\"t-1\"}",
         NULL, "data.topic: must be one of"},
        {"education.session", "{\"session\":\"e-1\",\"topic\":\"drowning\",\"teacher\":\"t-1\"}",
         NULL, NULL},
        {"meeting.held", "{\"meeting\":\"m-1\",\"attendees\":[],\"decisions\":[]}", NULL,
         "data.attendees: must not be empty"},
        {"meeting.held", "{\"meeting\":\"m-1\",\"attendees\":[\"p-1\"]}", NULL,
         "data.decisions: required"},
        /* an incomplete plan passes validation: the plugin refuses it with outing.rejected */
        {"outing.submitted", "{\"outing\":\"o-1\",\"headcount\":30}", NULL, NULL},
        {"outing.submitted", "{\"outing\":\"o-1\",\"headcount\":\"thirty\"}", NULL,
         "data.headcount: expected an integer"},
        {"outing.submitted", "{\"outing\":\"o-1\",\"securty_measures\":\"x\"}", NULL,
         "data.securty_measures: unknown field"},
        {"outing.approved", "{\"outing\":\"o-1\"}", NULL, "data.by: required"},
        {"outing.approved", "{\"outing\":\"o-1\"}", "p-001", NULL},
        {"outing.approved", "{\"outing\":\"o-1\",\"approved\":\"yes\",\"by\":\"p-1\"}", NULL,
         "data.approved: expected true or false"},
        {"outing.returned", "{\"outing\":\"o-1\",\"headcount\":-1}", NULL,
         "data.headcount: must be between 0 and"},
        {"gate.entry", "{\"visit\":\"v-1\"}", NULL, "data.name: required"},
        {"gate.entry", "{\"visit\":\"v-1\",\"name\":\"Zhao\",\"host\":\"t-1\"}", NULL, NULL},
        {"gate.entry", "{\"kind\":\"pupil\"}", NULL, "data.card: required"},
        {"gate.entry", "{\"kind\":\"pupil\",\"card\":\"c-1\",\"name\":\"Li\"}", NULL,
         "a pupil's card event has only card and gate"},
        {"gate.entry", "{\"kind\":\"pupil\",\"card\":\"c-1\",\"gate\":\"g-1\"}", NULL, NULL},
        {"gate.exit", "{\"visit\":\"v-1\"}", NULL, NULL},
        {"gate.exit", "{\"kind\":\"bus\",\"visit\":\"v-1\"}", NULL, "data.kind: must be one of"},
    };
    fh_t *fh = s_host(NULL, "2026-03-01T08:00:00+08:00");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char env[2048], detail[256] = "";
        snprintf(env, sizeof env,
                 "{\"type\":\"%s\",\"school\":\"sch-001\",\"source\":\"t\"%s%s%s,\"data\":%s}",
                 cases[i].type, cases[i].actor ? ",\"actor\":\"" : "",
                 cases[i].actor ? cases[i].actor : "", cases[i].actor ? "\"" : "", cases[i].data);
        int rc = fh_validate(fh, env, detail, sizeof detail);
        if (!cases[i].detail && rc != 0)
            fail_msg("case %zu (%s) refused: %s", i, cases[i].type, detail);
        if (cases[i].detail) {
            if (rc != -EINVAL)
                fail_msg("case %zu (%s) accepted", i, cases[i].type);
            s_assert_contains(detail, cases[i].detail);
        }
    }
    /* Types only the plugin raises are flagged so that ingest refuses them from senders. */
    for (const struct sc_type *t = fh_plugin(fh)->types; t->name; t++) {
        bool emitted =
            strcmp(t->name, "drill.overdue") == 0 || strcmp(t->name, "outing.rejected") == 0 ||
            strcmp(t->name, "outing.reminder") == 0 || strcmp(t->name, "gate.overstay") == 0 ||
            strcmp(t->name, "ledger.rejected") == 0;
        assert_int_equal(!!(t->flags & SC_TYPE_EMITTED), emitted);
    }
}

static void test_config_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"gate_closing_time\":\"6pm\"}",
        "{\"terms\":[{\"from\":\"09-01\"}]}",
        "{\"terms\":[{\"from\":\"13-01\",\"to\":\"01-20\"}]}",
        "{\"district_terms\":[{\"terms\":[]}]}",
        "{\"assessment_weights\":{\"drills\":-1}}",
        "{\"assessment_weights\":{\"parties\":10}}",
        "{\"page_limit\":0}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fh_t *fh = fh_new(s_so(), bad[i], T("2026-03-01T08:00:00+08:00"));
        if (fh) {
            fh_destroy(&fh);
            fail_msg("config accepted: %s", bad[i]);
        }
    }
}

/* ---- drills ------------------------------------------------------------------------------ */

static void test_drill_lifecycle(void **state)
{
    (void)state;
    fh_t *fh = s_host(NULL, "2026-03-01T08:00:00+08:00");
    const char *s = "\"school\":\"sch-001\",\"source\":\"t\"";
    SEND(fh, "2026-03-10T09:00:00+08:00",
         "{\"type\":\"drill.ended\",%s,\"data\":{\"drill\":\"d-0\"}}", s);
    SEND(fh, "2026-03-10T09:00:00+08:00",
         "{\"type\":\"drill.scheduled\",%s,\"data\":{\"drill\":\"d-1\",\"kind\":\"evacuation\","
         "\"starts_at\":\"2026-03-12T10:00:00+08:00\",\"ends_at\":\"2026-03-12T10:30:00+08:00\","
         "\"responsible\":\"t-1\"}}",
         s);
    SEND(fh, "2026-03-10T09:01:00+08:00",
         "{\"type\":\"drill.ended\",%s,\"data\":{\"drill\":\"d-1\"}}", s);
    SEND(fh, "2026-03-12T10:00:00+08:00",
         "{\"type\":\"drill.started\",%s,\"data\":{\"drill\":\"d-1\",\"kind\":\"evacuation\"}}", s);
    SEND(fh, "2026-03-12T10:01:00+08:00",
         "{\"type\":\"drill.started\",%s,\"data\":{\"drill\":\"d-1\",\"kind\":\"evacuation\"}}", s);
    SEND(fh, "2026-03-12T10:02:00+08:00",
         "{\"type\":\"drill.ended\",%s,\"data\":{\"drill\":\"d-1\","
         "\"ends_at\":\"2026-03-12T09:59:00+08:00\"}}",
         s);
    json_t *em = fh_take_emitted(fh);
    assert_int_equal(fh_count(em, "ledger.rejected"), 4);
    s_assert_contains(s_reason(json_array_get(em, 0)), "drill d-0 is unknown");
    s_assert_contains(s_reason(json_array_get(em, 1)), "drill d-1 has not started");
    s_assert_contains(s_reason(json_array_get(em, 2)), "drill d-1 has already started");
    s_assert_contains(s_reason(json_array_get(em, 3)), "cannot end before it started");
    /* The refusal names the event it refuses. */
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_array_get(em, 0), "data"), "event")) > 0,
                     1);
    json_decref(em);

    SEND(fh, "2026-03-12T10:25:00+08:00",
         "{\"type\":\"drill.ended\",%s,\"data\":{\"drill\":\"d-1\",\"participants\":612,"
         "\"evacuation_seconds\":190,\"problems\":[\"stair B congested\"]}}",
         s);
    SEND(fh, "2026-03-12T11:00:00+08:00",
         "{\"type\":\"drill.scheduled\",%s,\"data\":{\"drill\":\"d-1\",\"kind\":\"fire\","
         "\"starts_at\":\"2026-03-20T10:00:00+08:00\",\"ends_at\":\"2026-03-20T10:30:00+08:00\"}}",
         s);
    SEND(fh, "2026-03-12T11:00:00+08:00",
         "{\"type\":\"drill.conducted\",%s,\"data\":{\"drill\":\"d-1\",\"kind\":\"fire\","
         "\"starts_at\":\"2026-03-12T10:00:00+08:00\"}}",
         s);
    em = fh_take_emitted(fh);
    assert_int_equal(fh_count(em, "ledger.rejected"), 2);
    s_assert_contains(s_reason(json_array_get(em, 0)), "has already ended");
    s_assert_contains(s_reason(json_array_get(em, 1)), "is already recorded");
    json_decref(em);

    /* A scheduled drill may be cancelled; nothing else may, and a cancelled one does not run. */
    SEND(fh, "2026-03-13T09:00:00+08:00",
         "{\"type\":\"drill.scheduled\",%s,\"data\":{\"drill\":\"d-2\",\"kind\":\"earthquake\","
         "\"starts_at\":\"2026-03-20T10:00:00+08:00\",\"ends_at\":\"2026-03-20T10:30:00+08:00\"}}",
         s);
    SEND(fh, "2026-03-13T09:05:00+08:00",
         "{\"type\":\"drill.cancelled\",%s,\"data\":{\"drill\":\"d-2\",\"reason\":\"rain\"}}", s);
    SEND(fh, "2026-03-13T09:06:00+08:00",
         "{\"type\":\"drill.cancelled\",%s,\"data\":{\"drill\":\"d-2\"}}", s);
    SEND(fh, "2026-03-13T09:07:00+08:00",
         "{\"type\":\"drill.started\",%s,\"data\":{\"drill\":\"d-2\",\"kind\":\"earthquake\"}}", s);
    SEND(fh, "2026-03-13T09:08:00+08:00",
         "{\"type\":\"drill.cancelled\",%s,\"data\":{\"drill\":\"d-1\"}}", s);
    em = fh_take_emitted(fh);
    assert_int_equal(fh_count(em, "ledger.rejected"), 3);
    s_assert_contains(s_reason(json_array_get(em, 0)), "drill d-2 was already cancelled");
    s_assert_contains(s_reason(json_array_get(em, 1)), "drill d-2 was cancelled");
    s_assert_contains(s_reason(json_array_get(em, 2)), "drill d-1 has already ended");
    json_decref(em);
    assert_int_equal(s_sql_long(fh, "SELECT count(*) FROM ledger.drills WHERE drill = 'd-2'"
                                    " AND status = 'cancelled' AND note = 'rain'"
                                    " AND starts_at IS NULL"),
                     1);

    /* The drill kept its start, its scheduled responsible person and its results. */
    assert_int_equal(s_sql_long(fh, "SELECT count(*) FROM ledger.drills WHERE drill = 'd-1'"
                                    " AND status = 'ended' AND participants = 612"
                                    " AND evacuation_seconds = 190 AND responsible = 't-1'"
                                    " AND starts_at = '2026-03-12T02:00:00Z'"
                                    " AND ends_at = '2026-03-12T02:25:00Z'"
                                    " AND problems = '[\"stair B congested\"]'"),
                     1);
    json_t *r = s_query(fh, "{\"what\":\"drills\",\"school\":\"sch-001\"}");
    assert_int_equal(json_array_size(json_object_get(r, "rows")), 2);
    json_t *row = json_array_get(json_object_get(r, "rows"), 0);
    assert_string_equal(json_string_value(json_array_get(row, 3)), "2026-03-12T10:00:00+08:00");
    assert_string_equal(json_string_value(json_array_get(row, 4)), "2026-03-12T10:25:00+08:00");
    json_decref(r);
}

/*
 * The minimum of one evacuation drill a month in term: March and May pass without one (April
 * has one; a lockdown drill in May does not count), February (9 days in term) and July
 * (10 days) are not checked, and each drill.overdue is dated when its month's term days ended.
 */
static void test_drill_minimum(void **state)
{
    (void)state;
    fh_t *fh = s_host("{\"district_terms\":[{\"district\":\"d-02\",\"terms\":"
                      "[{\"from\":\"2026-04-01\",\"to\":\"2026-04-30\"}]}]}",
                      "2026-02-25T10:00:00+08:00");
    SEND(fh, "2026-02-25T10:00:00+08:00",
         "{\"type\":\"directory.school.upserted\",\"school\":\"sch-001\",\"source\":\"core\","
         "\"data\":{\"name\":\"新桥小学\",\"district\":\"d-01\",\"timezone\":\"Asia/Shanghai\"}}");
    SEND(fh, "2026-02-25T10:00:00+08:00",
         "{\"type\":\"directory.school.upserted\",\"school\":\"sch-003\",\"source\":\"core\","
         "\"data\":{\"name\":\"Far\",\"district\":\"d-02\"}}");
    assert_int_equal(s_sql_long(fh, "SELECT count(*) FROM ledger.schools WHERE school = 'sch-001'"
                                    " AND drill_month = '2026-03-01'"
                                    " AND drill_due = '2026-03-31T16:00:00Z'"),
                     1);

    assert_int_equal(fh_advance_to(fh, T("2026-04-01T08:00:00+08:00")), 0);
    json_t *em = fh_take_emitted(fh);
    assert_int_equal(fh_count(em, "drill.overdue"), 1);
    const json_t *o = s_find_where(em, "drill.overdue", "month", "2026-03");
    assert_non_null(o);
    assert_string_equal(sc_json_str(o, "school"), "sch-001");
    assert_int_equal(sc_json_time(o, "occurred_at", 0), T("2026-04-01T00:00:00+08:00"));
    assert_int_equal(sc_json_int(json_object_get(o, "data"), "held", -1), 0);
    json_decref(em);

    const char *s = "\"school\":\"sch-001\",\"source\":\"t\"";
    SEND(fh, "2026-04-10T10:30:00+08:00",
         "{\"type\":\"drill.conducted\",%s,\"data\":{\"drill\":\"d-apr\",\"kind\":\"evacuation\","
         "\"starts_at\":\"2026-04-10T10:00:00+08:00\"}}",
         s);
    SEND(fh, "2026-05-10T10:30:00+08:00",
         "{\"type\":\"drill.conducted\",%s,\"data\":{\"drill\":\"d-may\",\"kind\":\"lockdown\","
         "\"starts_at\":\"2026-05-10T10:00:00+08:00\"}}",
         s);
    /* A drill at 00:30 local on June 1 is still May 31 in UTC: it counts for June. */
    SEND(fh, "2026-06-01T00:45:00+08:00",
         "{\"type\":\"drill.conducted\",%s,\"data\":{\"drill\":\"d-jun\",\"kind\":\"fire\","
         "\"starts_at\":\"2026-06-01T00:30:00+08:00\"}}",
         s);
    assert_int_equal(fh_advance_to(fh, T("2026-10-02T08:00:00+08:00")), 0);
    em = fh_take_emitted(fh);
    /* sch-001: April and June held one (June's at 00:30 local on June 1, May 31 in UTC), a
     * lockdown drill does not count for May, July and August are not checked; sch-003's
     * district has one term, April 2026, and only April is checked there. */
    char got[256] = "";
    size_t i;
    const json_t *e;
    json_array_foreach(em, i, e)
    {
        size_t off = strlen(got);
        snprintf(got + off, sizeof got - off, "%s%s:%s", off ? " " : "", sc_json_str(e, "school"),
                 sc_json_str(json_object_get(e, "data"), "month"));
    }
    assert_string_equal(got, "sch-003:2026-04 sch-001:2026-05 sch-001:2026-09");
    const json_t *sep = s_find_where(em, "drill.overdue", "month", "2026-09");
    assert_int_equal(sc_json_time(sep, "occurred_at", 0), T("2026-10-01T00:00:00+08:00"));
    json_decref(em);

    /* The ledger's monthly check shows every checked month of sch-001. */
    json_t *r = s_query(fh, "{\"what\":\"drill_months\",\"school\":\"sch-001\","
                            "\"from\":\"2026-03-01\",\"to\":\"2026-09-30\"}");
    json_t *rows = json_object_get(r, "rows");
    assert_int_equal(json_array_size(rows), 5); /* Mar, Apr, May, Jun, Sep */
    assert_string_equal(json_string_value(json_array_get(json_array_get(rows, 1), 0)), "2026-04");
    assert_true(json_is_true(json_array_get(json_array_get(rows, 1), 4)));  /* met */
    assert_true(json_is_false(json_array_get(json_array_get(rows, 2), 4))); /* May */
    json_decref(r);
}

/* ---- outings ----------------------------------------------------------------------------- */

#define PLAN                                                                                       \
    "\"headcount\":40,\"route\":\"bus 12\",\"place\":\"Science museum\","                          \
    "\"security_measures\":\"one teacher per ten pupils\",\"responsible\":\"t-2\","                \
    "\"emergency_plan\":\"first-aid kit, phone tree\""

static void test_outings(void **state)
{
    (void)state;
    fh_t *fh = s_host(NULL, "2026-03-01T07:00:00+08:00");
    const char *s = "\"school\":\"sch-001\",\"source\":\"t\",\"actor\":\"t-2\"";
    const char *now = "2026-03-01T07:00:00+08:00"; /* 2026-02-28 in UTC */
    /* 9 days ahead. */
    SEND(fh, now,
         "{\"type\":\"outing.submitted\",%s,\"data\":{\"outing\":\"o-1\","
         "\"starts_at\":\"2026-03-10T08:00:00+08:00\",\"ends_at\":\"2026-03-10T15:00:00+08:"
         "00\"," PLAN "}}",
         s);
    /* 14 days ahead in local dates, although 15 in UTC dates. */
    SEND(fh, now,
         "{\"type\":\"outing.submitted\",%s,\"data\":{\"outing\":\"o-2\","
         "\"starts_at\":\"2026-03-15T09:00:00+08:00\",\"ends_at\":\"2026-03-15T15:00:00+08:"
         "00\"," PLAN "}}",
         s);
    /* Exactly 15 days: accepted. */
    SEND(fh, now,
         "{\"type\":\"outing.submitted\",%s,\"data\":{\"outing\":\"o-3\",\"title\":\"Museum\","
         "\"starts_at\":\"2026-03-16T08:00:00+08:00\",\"ends_at\":\"2026-03-16T15:00:00+08:"
         "00\"," PLAN "}}",
         s);
    /* Fields missing. */
    SEND(
        fh, now,
        "{\"type\":\"outing.submitted\",%s,\"data\":{\"outing\":\"o-4\","
        "\"starts_at\":\"2026-05-16T08:00:00+08:00\",\"ends_at\":\"2026-05-16T15:00:00+08:00\","
        "\"headcount\":40,\"place\":\"park\",\"security_measures\":\"x\",\"responsible\":\"t-2\"}}",
        s);
    json_t *em = fh_take_emitted(fh);
    assert_int_equal(fh_count(em, "outing.rejected"), 3);
    const json_t *r1 = s_find_where(em, "outing.rejected", "outing", "o-1");
    s_assert_contains(s_reason(r1), "submitted 9 days before the outing; at least 15");
    assert_int_equal(sc_json_int(json_object_get(r1, "data"), "days_ahead", -1), 9);
    assert_string_equal(sc_json_str(json_object_get(r1, "data"), "submitted_by"), "t-2");
    const json_t *r2 = s_find_where(em, "outing.rejected", "outing", "o-2");
    assert_int_equal(sc_json_int(json_object_get(r2, "data"), "days_ahead", -1), 14);
    assert_null(s_find_where(em, "outing.rejected", "outing", "o-3"));
    const json_t *r4 = s_find_where(em, "outing.rejected", "outing", "o-4");
    s_assert_contains(s_reason(r4), "the plan lacks route, emergency_plan");
    json_t *missing = json_object_get(json_object_get(r4, "data"), "missing");
    assert_int_equal(json_array_size(missing), 2);
    assert_string_equal(json_string_value(json_array_get(missing, 0)), "route");
    json_decref(em);
    /* Refused plans are kept: the ledger shows them with the reason. */
    assert_int_equal(s_sql_long(fh, "SELECT count(*) FROM ledger.outings WHERE status = 'refused'"),
                     3);

    const char *p = "\"school\":\"sch-001\",\"source\":\"t\"";
    SEND(fh, "2026-03-02T09:00:00+08:00",
         "{\"type\":\"outing.approved\",%s,\"actor\":\"p-001\",\"data\":{\"outing\":\"o-1\"}}", p);
    SEND(fh, "2026-03-02T09:00:00+08:00",
         "{\"type\":\"outing.approved\",%s,\"data\":{\"outing\":\"o-3\",\"by\":\"t-1\"}}", p);
    SEND(fh, "2026-03-02T09:00:00+08:00",
         "{\"type\":\"outing.returned\",%s,\"data\":{\"outing\":\"o-3\"}}", p);
    SEND(fh, "2026-03-02T09:00:00+08:00",
         "{\"type\":\"outing.approved\",%s,\"data\":{\"outing\":\"o-9\",\"by\":\"p-001\"}}", p);
    em = fh_take_emitted(fh);
    assert_int_equal(fh_count(em, "outing.rejected"), 4);
    s_assert_contains(s_reason(json_array_get(em, 0)), "was refused when submitted");
    s_assert_contains(s_reason(json_array_get(em, 1)), "t-1 may not decide");
    s_assert_contains(s_reason(json_array_get(em, 2)), "was not approved");
    s_assert_contains(s_reason(json_array_get(em, 3)), "o-9 is unknown");
    json_decref(em);

    SEND(fh, "2026-03-02T10:00:00+08:00",
         "{\"type\":\"outing.approved\",%s,\"actor\":\"p-001\",\"data\":{\"outing\":\"o-3\","
         "\"note\":\"ok\"}}",
         p);
    SEND(fh, "2026-03-02T10:05:00+08:00",
         "{\"type\":\"outing.approved\",%s,\"actor\":\"p-001\",\"data\":{\"outing\":\"o-3\"}}", p);
    em = fh_take_emitted(fh);
    assert_int_equal(fh_count(em, "outing.rejected"), 1);
    s_assert_contains(s_reason(json_array_get(em, 0)), "was already approved");
    json_decref(em);
    assert_int_equal(s_sql_long(fh, "SELECT count(*) FROM ledger.outings WHERE outing = 'o-3'"
                                    " AND status = 'approved' AND decided_by = 'p-001'"
                                    " AND reminder_due = '2026-03-16T09:00:00Z'"),
                     1);

    /* No return report: reminded 2 h after the end, then daily, three times at most. */
    assert_int_equal(fh_advance_to(fh, T("2026-03-16T16:59:00+08:00")), 0);
    em = fh_take_emitted(fh);
    assert_int_equal(fh_count(em, "outing.reminder"), 0);
    json_decref(em);
    assert_int_equal(fh_advance_to(fh, T("2026-03-17T18:00:00+08:00")), 0);
    em = fh_take_emitted(fh);
    assert_int_equal(fh_count(em, "outing.reminder"), 2);
    const json_t *rem = fh_find(em, "outing.reminder");
    assert_int_equal(sc_json_time(rem, "occurred_at", 0), T("2026-03-16T17:00:00+08:00"));
    assert_string_equal(sc_json_str(json_object_get(rem, "data"), "responsible"), "t-2");
    assert_string_equal(sc_json_str(json_object_get(rem, "data"), "ends_at"),
                        "2026-03-16T15:00:00+08:00");
    json_decref(em);
    SEND(fh, "2026-03-17T18:30:00+08:00",
         "{\"type\":\"outing.returned\",%s,\"data\":{\"outing\":\"o-3\",\"headcount\":40,"
         "\"returned_at\":\"2026-03-16T15:10:00+08:00\"}}",
         p);
    assert_int_equal(fh_advance_to(fh, T("2026-03-25T00:00:00+08:00")), 0);
    em = fh_take_emitted(fh);
    assert_int_equal(fh_count(em, "outing.reminder"), 0);
    assert_int_equal(fh_count(em, "outing.rejected"), 0);
    json_decref(em);

    /* A refused plan may be submitted again in time. */
    SEND(fh, "2026-03-25T09:00:00+08:00",
         "{\"type\":\"outing.submitted\",%s,\"data\":{\"outing\":\"o-1\","
         "\"starts_at\":\"2026-04-20T08:00:00+08:00\",\"ends_at\":\"2026-04-20T15:00:00+08:"
         "00\"," PLAN "}}",
         s);
    em = fh_take_emitted(fh);
    assert_int_equal(json_array_size(em), 0);
    json_decref(em);
    json_t *r = s_query(fh, "{\"what\":\"outings\",\"school\":\"sch-001\"}");
    assert_int_equal(json_array_size(json_object_get(r, "rows")), 4);
    json_decref(r);
    assert_int_equal(s_sql_long(fh, "SELECT count(*) FROM ledger.outings WHERE outing = 'o-1'"
                                    " AND status = 'pending' AND refusal IS NULL"),
                     1);
}

/* ---- gate -------------------------------------------------------------------------------- */

static void test_gate(void **state)
{
    (void)state;
    fh_t *fh = s_host(NULL, "2026-03-02T09:00:00+08:00");
    const char *s = "\"school\":\"sch-001\",\"source\":\"gate\"";
    SEND(fh, "2026-03-02T10:00:00+08:00",
         "{\"type\":\"gate.entry\",%s,\"data\":{\"visit\":\"v-1\",\"name\":\"Zhao\","
         "\"purpose\":\"repairs\",\"host\":\"t-1\"}}",
         s);
    SEND(fh, "2026-03-02T11:00:00+08:00",
         "{\"type\":\"gate.entry\",%s,\"data\":{\"visit\":\"v-2\",\"name\":\"Qian\"}}", s);
    SEND(fh, "2026-03-02T12:00:00+08:00",
         "{\"type\":\"gate.exit\",%s,\"data\":{\"visit\":\"v-2\"}}", s);
    SEND(fh, "2026-03-02T12:01:00+08:00",
         "{\"type\":\"gate.exit\",%s,\"data\":{\"visit\":\"v-2\"}}", s);
    SEND(fh, "2026-03-02T12:02:00+08:00",
         "{\"type\":\"gate.exit\",%s,\"data\":{\"visit\":\"v-9\"}}", s);
    SEND(fh, "2026-03-02T12:03:00+08:00",
         "{\"type\":\"gate.entry\",%s,\"data\":{\"visit\":\"v-1\",\"name\":\"Zhao\"}}", s);
    json_t *em = fh_take_emitted(fh);
    assert_int_equal(fh_count(em, "ledger.rejected"), 3);
    s_assert_contains(s_reason(json_array_get(em, 0)), "visit v-2 has already left");
    s_assert_contains(s_reason(json_array_get(em, 1)), "visit v-9 is unknown");
    s_assert_contains(s_reason(json_array_get(em, 2)), "visit v-1 is already registered");
    json_decref(em);

    json_t *r = s_query(fh, "{\"what\":\"on_site\",\"school\":\"sch-001\"}");
    assert_int_equal(json_array_size(json_object_get(r, "visitors")), 1);
    json_decref(r);

    assert_int_equal(fh_advance_to(fh, T("2026-03-02T17:59:00+08:00")), 0);
    em = fh_take_emitted(fh);
    assert_int_equal(fh_count(em, "gate.overstay"), 0);
    json_decref(em);
    /* Entering after closing time: an hour's grace. */
    SEND(fh, "2026-03-02T19:30:00+08:00",
         "{\"type\":\"gate.entry\",%s,\"data\":{\"visit\":\"v-3\",\"name\":\"Sun\"}}", s);
    assert_int_equal(fh_advance_to(fh, T("2026-03-02T21:00:00+08:00")), 0);
    em = fh_take_emitted(fh);
    assert_int_equal(fh_count(em, "gate.overstay"), 2);
    const json_t *o1 = s_find_where(em, "gate.overstay", "visit", "v-1");
    assert_int_equal(sc_json_time(o1, "occurred_at", 0), T("2026-03-02T18:00:00+08:00"));
    assert_string_equal(sc_json_str(json_object_get(o1, "data"), "host"), "t-1");
    const json_t *o3 = s_find_where(em, "gate.overstay", "visit", "v-3");
    assert_int_equal(sc_json_time(o3, "occurred_at", 0), T("2026-03-02T20:30:00+08:00"));
    json_decref(em);

    /* Pupil cards: one narrow row each, no JSON. */
    const char *c = "\"school\":\"sch-001\",\"source\":\"cards\"";
    for (int i = 1; i <= 3; i++)
        SEND(fh, "2026-03-03T07:30:00+08:00",
             "{\"type\":\"gate.entry\",%s,\"data\":{\"kind\":\"pupil\",\"card\":\"c-%d\"}}", c, i);
    for (int i = 1; i <= 2; i++)
        SEND(fh, "2026-03-03T16:30:00+08:00",
             "{\"type\":\"gate.exit\",%s,\"data\":{\"kind\":\"pupil\",\"card\":\"c-%d\"}}", c, i);
    SEND(fh, "2026-03-04T07:31:00+08:00",
         "{\"type\":\"gate.entry\",%s,\"data\":{\"kind\":\"pupil\",\"card\":\"c-1\"}}", c);
    /* A card event from a school not seen before registers it on the way. */
    SEND(fh, "2026-03-04T07:32:00+08:00",
         "{\"type\":\"gate.entry\",\"school\":\"sch-002\",\"source\":\"cards\",\"data\":"
         "{\"kind\":\"pupil\",\"card\":\"c-1\"}}");
    assert_int_equal(s_sql_long(fh, "SELECT count(*) FROM ledger.card_events"), 7);
    assert_int_equal(s_sql_long(fh, "SELECT count(*) FROM information_schema.columns"
                                    " WHERE table_schema = 'ledger' AND table_name = 'card_events'"
                                    "   AND data_type IN ('json', 'jsonb')"),
                     0);
    em = fh_take_emitted(fh);
    assert_int_equal(json_array_size(em), 0);
    json_decref(em);

    r = s_query(fh, "{\"what\":\"gate_cards\",\"school\":\"sch-001\",\"from\":\"2026-03-01\","
                    "\"to\":\"2026-03-31\"}");
    json_t *rows = json_object_get(r, "rows");
    assert_int_equal(json_array_size(rows), 2);
    json_t *want = json_loads("[[\"2026-03-03\",3,2,3],[\"2026-03-04\",1,0,1]]", 0, NULL);
    assert_true(json_equal(rows, want));
    json_decref(want);
    json_decref(r);
    /* The same summary paged one day at a time. */
    r = s_query(fh, "{\"what\":\"gate_cards\",\"school\":\"sch-001\",\"from\":\"2026-03-01\","
                    "\"to\":\"2026-03-31\",\"limit\":1}");
    assert_int_equal(json_array_size(json_object_get(r, "rows")), 1);
    const char *next = sc_json_str(r, "next");
    assert_non_null(next);
    char req[512];
    snprintf(req, sizeof req,
             "{\"what\":\"gate_cards\",\"school\":\"sch-001\",\"from\":\"2026-03-01\","
             "\"to\":\"2026-03-31\",\"limit\":1,\"after\":\"%s\"}",
             next);
    json_t *r2 = s_query(fh, "%s", req);
    assert_string_equal(
        json_string_value(json_array_get(json_array_get(json_object_get(r2, "rows"), 0), 0)),
        "2026-03-04");
    assert_true(json_is_null(json_object_get(r2, "next")));
    json_decref(r2);
    json_decref(r);
    /* The raw card log, paged. */
    r = s_query(fh, "{\"what\":\"card_events\",\"school\":\"sch-001\",\"limit\":4}");
    assert_int_equal(json_array_size(json_object_get(r, "rows")), 4);
    snprintf(req, sizeof req,
             "{\"what\":\"card_events\",\"school\":\"sch-001\",\"limit\":4,"
             "\"after\":\"%s\"}",
             sc_json_str(r, "next"));
    r2 = s_query(fh, "%s", req);
    assert_int_equal(json_array_size(json_object_get(r2, "rows")), 2);
    json_decref(r2);
    json_decref(r);
}

/*
 * Pupils' cards and visitors' entries wait and are written together: the ledger and the
 * refusals must be those of the same events handled one at a time, in the same order — a
 * visit left or entered twice in the same batch, a school's time zone changed between two
 * entries, an entry after closing time, another school's visitors in between.
 */
static void test_gate_batch_as_one_by_one(void **state)
{
    (void)state;
    static const char *const evs[][3] = {
        {"sch-001", "10:00",
         "\"type\":\"gate.entry\",\"data\":{\"visit\":\"v-1\",\"name\":\"Zhao\"}"},
        {"sch-001", "10:01",
         "\"type\":\"gate.entry\",\"data\":{\"kind\":\"pupil\",\"card\":\"c-1\"}"},
        {"sch-001", "10:02",
         "\"type\":\"gate.entry\",\"data\":{\"visit\":\"v-2\",\"name\":\"Qian\","
         "\"purpose\":\"repairs\",\"host\":\"t-1\",\"vehicle\":\"A-123\"}"},
        {"sch-002", "10:03",
         "\"type\":\"gate.entry\",\"data\":{\"visit\":\"v-2\",\"name\":\"Sun\"}"},
        {"sch-002", "10:04",
         "\"type\":\"gate.entry\",\"data\":{\"visit\":\"v-3\",\"name\":\"Li\"}"},
        /* v-2 waits: it is written before it leaves; then it enters again, refused. */
        {"sch-001", "10:05", "\"type\":\"gate.exit\",\"data\":{\"visit\":\"v-2\"}"},
        {"sch-001", "10:06",
         "\"type\":\"gate.entry\",\"data\":{\"visit\":\"v-3\",\"name\":\"Zhou\"}"},
        {"sch-001", "10:07",
         "\"type\":\"gate.entry\",\"data\":{\"visit\":\"v-3\",\"name\":\"Zhou\"}"},
        {"sch-001", "10:08",
         "\"type\":\"gate.entry\",\"data\":{\"visit\":\"v-1\",\"name\":\"Zhao\"}"},
        /* The zone changes: the entries before it were due at closing time in the old one. */
        {"sch-001", "10:09",
         "\"type\":\"gate.entry\",\"data\":{\"visit\":\"v-4\",\"name\":\"Wu\"}"},
        {"sch-001", "10:10",
         "\"type\":\"directory.school.upserted\",\"data\":{\"name\":\"新桥小学\","
         "\"district\":\"d-01\",\"timezone\":\"Europe/London\"}"},
        {"sch-001", "10:11",
         "\"type\":\"gate.entry\",\"data\":{\"visit\":\"v-5\",\"name\":\"Wang\"}"},
        {"sch-001", "23:30",
         "\"type\":\"gate.entry\",\"data\":{\"visit\":\"v-6\",\"name\":\"Late\"}"},
        {"sch-001", "23:31",
         "\"type\":\"gate.exit\",\"data\":{\"kind\":\"pupil\",\"card\":\"c-1\"}"},
    };
    char envs[N(evs)][512];
    const char *p[N(evs)];
    for (size_t i = 0; i < N(evs); i++) {
        snprintf(envs[i], sizeof envs[i],
                 "{\"school\":\"%s\",\"source\":\"gate\",\"id\":\"g-%zu\","
                 "\"occurred_at\":\"2026-03-02T%s:00+08:00\",%s}",
                 evs[i][0], i, evs[i][1], evs[i][2]);
        p[i] = envs[i];
    }
    static const char ledger[] =
        "SELECT concat_ws(E'\\n',"
        " (SELECT json_agg(v ORDER BY v.id)::text FROM ledger.visits v),"
        " (SELECT json_agg(c ORDER BY c.ts, c.card)::text FROM ledger.card_events c),"
        " (SELECT json_agg(s ORDER BY s.id)::text FROM ledger.schools s))";

    fh_t *fh = s_host(NULL, "2026-03-02T09:00:00+08:00");
    for (size_t i = 0; i < N(evs); i++)
        assert_int_equal(fh_handle(fh, p[i]), 0);
    json_t *refused_one = fh_take_emitted(fh);
    PGresult *res = PQexec(fh_db(fh), ledger);
    char *one = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    fh_destroy(&s_live);

    fh = s_host(NULL, "2026-03-02T09:00:00+08:00");
    assert_int_equal(fh_handle_batch(fh, p, N(evs), true), 0);
    json_t *refused_batch = fh_take_emitted(fh);
    res = PQexec(fh_db(fh), ledger);
    char *batch = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);

    /* Not an empty comparison: two refusals, eight visits, both cards. */
    assert_int_equal(fh_count(refused_one, "ledger.rejected"), 2);
    assert_int_equal(s_sql_long(fh, "SELECT count(*) FROM ledger.visits"), 8);
    assert_int_equal(s_sql_long(fh, "SELECT count(*) FROM ledger.card_events"), 2);
    char *a = json_dumps(refused_one, JSON_COMPACT | JSON_SORT_KEYS);
    char *b = json_dumps(refused_batch, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(a, b);
    assert_string_equal(one, batch);
    free(a);
    free(b);
    free(one);
    free(batch);
    json_decref(refused_one);
    json_decref(refused_batch);

    /* A batch rolled back leaves nothing waiting for the next. */
    assert_int_equal(fh_handle_batch(fh, p, 3, false), -ECANCELED);
    assert_int_equal(fh_handle_batch(fh, p + 3, 1, true), 0);
    assert_int_equal(s_sql_long(fh, "SELECT count(*) FROM ledger.visits"), 8);
}

/* ---- agreements -------------------------------------------------------------------------- */

/* Pupils' cards handed over as the daemon does, several to a transaction. */
static void test_card_batches(void **state)
{
    (void)state;
    fh_t *fh = s_host(NULL, "2026-03-02T07:00:00+08:00");
    char envs[8][256];
    const char *p[8];
    for (int i = 0; i < 8; i++) {
        /* sch-001 and sch-004, the latter unknown to the ledger until its first card. */
        snprintf(envs[i], sizeof envs[i],
                 "{\"type\":\"gate.entry\",\"school\":\"%s\",\"source\":\"cards\","
                 "\"occurred_at\":\"2026-03-02T07:%02d:00+08:00\","
                 "\"data\":{\"kind\":\"pupil\",\"card\":\"c-%d\"}}",
                 i % 3 ? "sch-001" : "sch-004", 10 + i, i);
        p[i] = envs[i];
    }
    /* The first card of each school goes at once, the rest at the batch's end: all 8 rows. */
    assert_int_equal(fh_handle_batch(fh, p, 8, true), 0);
    assert_int_equal(s_sql_long(fh, "SELECT count(*) FROM ledger.card_events"), 8);
    assert_int_equal(s_sql_long(fh, "SELECT count(*) FROM ledger.card_events c JOIN ledger.schools"
                                    " s ON s.id = c.school_id WHERE s.school = 'sch-004'"),
                     3);
    assert_int_equal(s_sql_long(fh, "SELECT count(DISTINCT card) FROM ledger.card_events"), 8);
    /* A batch rolled back leaves nothing behind, neither in the table nor for the next one. */
    assert_int_equal(fh_handle_batch(fh, p, 5, false), -ECANCELED);
    assert_int_equal(s_sql_long(fh, "SELECT count(*) FROM ledger.card_events"), 8);
    assert_int_equal(fh_handle_batch(fh, p + 5, 3, true), 0);
    assert_int_equal(s_sql_long(fh, "SELECT count(*) FROM ledger.card_events"), 11);
    /* One at a time, as a trickle arrives. */
    assert_int_equal(fh_handle(fh, p[1]), 0);
    assert_int_equal(fh_handle(fh, p[2]), 0);
    assert_int_equal(s_sql_long(fh, "SELECT count(*) FROM ledger.card_events"), 13);
    /* The schools are remembered from batch to batch: every card of the next one waits for its
     * end. Were a school's row gone all the same (the transaction that registered it lost after
     * its batch's end), the batch finds it missing and fails; the plugin forgets what it knew,
     * and the same batch again registers the school on the way. */
    s_sql(fh, "DELETE FROM ledger.card_events WHERE school_id ="
              " (SELECT id FROM ledger.schools WHERE school = 'sch-004')");
    s_sql(fh, "DELETE FROM ledger.schools WHERE school = 'sch-004'");
    assert_int_equal(fh_handle_batch(fh, p, 8, true), -EIO);
    assert_int_equal(s_sql_long(fh, "SELECT count(*) FROM ledger.card_events"), 9);
    assert_int_equal(fh_handle_batch(fh, p, 8, true), 0);
    assert_int_equal(s_sql_long(fh, "SELECT count(*) FROM ledger.card_events"), 17);
    assert_int_equal(s_sql_long(fh, "SELECT count(*) FROM ledger.card_events c JOIN ledger.schools"
                                    " s ON s.id = c.school_id WHERE s.school = 'sch-004'"),
                     3);
}

static void test_agreements(void **state)
{
    (void)state;
    fh_t *fh = s_host(NULL, "2026-03-01T08:00:00+08:00");
    s_replay(fh, "term.jsonl");
    json_t *r = s_query(fh, "{\"what\":\"agreement_shares\",\"school\":\"sch-001\","
                            "\"from\":\"2026-03-01\",\"to\":\"2026-03-31\"}");
    /* head teachers and teachers from the directory (t-1 once, as head teacher); parents from
     * the roster */
    json_t *want = json_loads("[[\"2025-2026-2\",\"head_teacher\",1,1,0,1.0],"
                              " [\"2025-2026-2\",\"parent\",4,2,2,0.5],"
                              " [\"2025-2026-2\",\"teacher\",2,1,1,0.5]]",
                              0, NULL);
    json_t *rows = json_object_get(r, "rows");
    if (!json_equal(rows, want)) {
        char *got = json_dumps(rows, 0);
        fail_msg("shares: %s", got);
    }
    json_decref(want);
    json_decref(r);
    r = s_query(fh, "{\"what\":\"agreements_unsigned\",\"school\":\"sch-001\","
                    "\"from\":\"2026-03-01\",\"to\":\"2026-03-31\"}");
    want = json_loads("[[\"2025-2026-2\",\"parent\",\"s-3\",null],"
                      " [\"2025-2026-2\",\"parent\",\"s-4\",null],"
                      " [\"2025-2026-2\",\"teacher\",\"t-3\",\"陈老师\"]]",
                      0, NULL);
    rows = json_object_get(r, "rows");
    if (!json_equal(rows, want)) {
        char *got = json_dumps(rows, 0);
        fail_msg("unsigned: %s", got);
    }
    json_decref(want);
    json_decref(r);
}

/* ---- the ledger answer ------------------------------------------------------------------- */

/* Every row of every section, following the cursor, as {key: [rows…]} plus the keys in order. */
static json_t *s_ledger_all(fh_t *fh, const char *who, int limit, json_t *order, int *pages)
{
    json_t *all = json_object();
    char after[700] = "";
    *pages = 0;
    for (;;) {
        char req[1024];
        snprintf(req, sizeof req,
                 "{\"what\":\"ledger\",%s,\"from\":\"2026-03-01\",\"to\":\"2026-03-31\","
                 "\"limit\":%d%s%s%s}",
                 who, limit, *after ? ",\"after\":\"" : "", after, *after ? "\"" : "");
        json_t *r = s_query(fh, "%s", req);
        const json_t *sec;
        size_t i, placed = 0;
        (*pages)++;
        json_array_foreach(json_object_get(r, "sections"), i, sec)
        {
            const char *key = sc_json_str(sec, "key");
            json_t *rows = json_object_get(all, key);
            if (!rows) {
                json_object_set_new(all, key, rows = json_array());
                json_array_append_new(order, json_string(key));
            }
            json_array_extend(rows, json_object_get(sec, "rows"));
            placed += json_array_size(json_object_get(sec, "rows"));
        }
        assert_true(placed <= (size_t)limit);
        const char *next = sc_json_str(r, "next");
        if (!next) {
            json_decref(r);
            break;
        }
        snprintf(after, sizeof after, "%s", next);
        json_decref(r);
        assert_true(*pages < 1000);
    }
    return all;
}

static void test_ledger_sections(void **state)
{
    (void)state;
    fh_t *fh = s_host(NULL, "2026-02-20T08:00:00+08:00");
    s_replay(fh, "term.jsonl");
    /* A session just after the period (00:30 local on April 1, still March 31 in UTC). */
    SEND(fh, "2026-04-01T00:30:00+08:00",
         "{\"type\":\"education.session\",\"school\":\"sch-001\",\"source\":\"t\",\"data\":"
         "{\"session\":\"e-late\",\"topic\":\"fire\",\"teacher\":\"t-1\"}}");
    assert_int_equal(fh_advance_to(fh, T("2026-04-01T12:00:00+08:00")), 0);
    json_t *em = fh_take_emitted(fh);
    assert_non_null(s_find_where(em, "gate.overstay", "visit", "v-2"));
    assert_non_null(s_find_where(em, "outing.rejected", "outing", "o-2"));
    assert_int_equal(fh_count(em, "drill.overdue"), 0); /* both schools drilled in March */
    json_decref(em);

    json_t *order = json_array(), *order2 = json_array();
    int pages = 0, pages2 = 0;
    json_t *all = s_ledger_all(fh, "\"school\":\"sch-001\"", 5000, order, &pages);
    assert_int_equal(pages, 1);
    static const struct {
        const char *key;
        size_t rows;
    } want[] = {
        {"leadership", 3},
        {"agreements", 4},
        {"agreement_shares", 3},
        {"agreements_unsigned", 3},
        {"rules", 2},
        {"drills", 1},
        {"drill_months", 1},
        {"education", 3},
        {"meetings", 1},
        {"outings", 2},
        {"gate_visitors", 2},
        {"gate_cards", 1},
        {"assessment", 6},
        {"assessment_people", 4},
    };
    assert_int_equal(json_array_size(order), sizeof want / sizeof want[0]);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_string_equal(json_string_value(json_array_get(order, i)), want[i].key);
        size_t n = json_array_size(json_object_get(all, want[i].key));
        if (n != want[i].rows)
            fail_msg("section %s: %zu rows, expected %zu", want[i].key, n, want[i].rows);
    }
    /* Nothing of the other school. */
    char *text = json_dumps(all, 0);
    assert_null(strstr(text, "OTHER-SCHOOL"));
    assert_null(strstr(text, "e-late"));
    s_assert_contains(text, "stair B congested");
    s_assert_contains(text, "submitted 10 days before the outing");
    free(text);

    /* Paged two rows at a time, the same rows in the same order. */
    json_t *paged = s_ledger_all(fh, "\"school\":\"sch-001\"", 2, order2, &pages2);
    assert_true(pages2 > 10);
    assert_true(json_equal(order, order2));
    assert_true(json_equal(all, paged));
    json_decref(paged);
    json_decref(all);
    json_decref(order);
    json_decref(order2);

    /* The reply describes the school; a bad cursor or period is refused. */
    int rc;
    json_t *r = fh_query(fh,
                         "{\"what\":\"ledger\",\"school\":\"sch-001\",\"from\":\"2026-03-01\","
                         "\"to\":\"2026-03-31\",\"limit\":1}",
                         &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(sc_json_str(json_object_get(r, "school"), "name"), "新桥小学");
    const json_t *sec = json_array_get(json_object_get(r, "sections"), 0);
    assert_string_equal(sc_json_str(sec, "title_zh"), "安全工作领导小组");
    assert_string_equal(sc_json_str(sec, "title_en"), "Safety leadership group");
    json_decref(r);
    r = fh_query(fh,
                 "{\"what\":\"ledger\",\"school\":\"sch-001\",\"from\":\"2026-03-01\","
                 "\"to\":\"2026-03-31\",\"after\":\"99:x\"}",
                 &rc);
    assert_int_equal(rc, -EINVAL);
    s_assert_contains(sc_json_str(r, "error"), "after:");
    json_decref(r);
    r = fh_query(fh,
                 "{\"what\":\"ledger\",\"school\":\"sch-001\",\"from\":\"2026-04-01\","
                 "\"to\":\"2026-03-31\"}",
                 &rc);
    assert_int_equal(rc, -EINVAL);
    s_assert_contains(sc_json_str(r, "error"), "to: must not be before from");
    json_decref(r);
    r = fh_query(fh, "{\"what\":\"ledger\",\"from\":\"2026-03-01\",\"to\":\"2026-03-31\"}", &rc);
    assert_int_equal(rc, -EINVAL);
    s_assert_contains(sc_json_str(r, "error"), "school: required");
    json_decref(r);
    r = fh_query(fh, "{\"what\":\"binders\",\"school\":\"sch-001\"}", &rc);
    assert_int_equal(rc, -EINVAL);
    s_assert_contains(sc_json_str(r, "error"), "what: must be one of ledger, figures");
    json_decref(r);

    /* Figures for a school and for its district. */
    r = s_query(fh, "{\"what\":\"figures\",\"school\":\"sch-001\",\"from\":\"2026-03-01\","
                    "\"to\":\"2026-03-31\"}");
    assert_int_equal(sc_json_int(r, "education_sessions", -1), 3);
    assert_int_equal(sc_json_int(r, "evacuation_drills", -1), 1);
    assert_int_equal(sc_json_int(r, "outings_refused", -1), 1);
    assert_int_equal(sc_json_int(r, "overstays", -1), 1);
    assert_int_equal(sc_json_int(r, "card_events", -1), 5);
    assert_int_equal(sc_json_int(r, "drill_months_required", -1), 1);
    assert_int_equal(sc_json_int(r, "drill_months_met", -1), 1);
    json_decref(r);
    r = s_query(fh, "{\"what\":\"figures\",\"district\":\"d-01\",\"from\":\"2026-03-01\","
                    "\"to\":\"2026-03-31\"}");
    assert_int_equal(sc_json_int(r, "schools", -1), 2);
    assert_int_equal(sc_json_int(r, "education_sessions", -1), 4);
    assert_int_equal(sc_json_int(r, "drills_held", -1), 2);
    json_decref(r);
}

/* ---- assessment -------------------------------------------------------------------------- */

static void s_journal(fh_t *fh, const char *type, const char *school, const char *at,
                      const char *actor, const char *data)
{
    const char *p[5] = {type, school, at, actor, data};
    PGresult *res = PQexecParams(fh_db(fh),
                                 "INSERT INTO core.events (type, school, source, occurred_at,"
                                 "       received_at, actor, data)"
                                 " VALUES ($1, $2, 'test', $3, $3, $4, $5::jsonb)",
                                 5, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        fail_msg("journal: %s", PQerrorMessage(fh_db(fh)));
    PQclear(res);
}

/*
 * A small known history: inspections 3 of 4 on time, hazards 1 of 2 never overdue, drills in
 * March but not April (1 of 2 months), 3 sessions against 2 expected, 1 of 2 agreements, one
 * grade IV incident. Default weights 25/25/20/15/15 give 18.75 + 12.5 + 10 + 15 + 7.5 = 63.75,
 * less 5 for the incident: 58.75.
 */
static void test_assessment(void **state)
{
    (void)state;
    fh_t *fh = s_host("{\"agreement_directory_roles\":[]}", "2026-02-20T08:00:00+08:00");
    const char *s = "\"school\":\"sch-001\",\"source\":\"t\"";
    SEND(fh, "2026-02-20T08:00:00+08:00",
         "{\"type\":\"directory.school.upserted\",%s,\"data\":{\"name\":\"x\",\"district\":\"d-"
         "01\"}}",
         s);
    SEND(fh, "2026-03-01T09:00:00+08:00",
         "{\"type\":\"agreement.roster\",%s,\"data\":{\"term\":\"t2\",\"party_role\":\"teacher\","
         "\"parties\":[\"t-1\",\"t-2\"]}}",
         s);
    SEND(fh, "2026-03-02T09:00:00+08:00",
         "{\"type\":\"agreement.signed\",%s,\"data\":{\"agreement\":\"a-1\",\"party\":\"t-1\","
         "\"party_role\":\"teacher\",\"term\":\"t2\"}}",
         s);
    SEND(fh, "2026-03-12T10:30:00+08:00",
         "{\"type\":\"drill.conducted\",%s,\"data\":{\"drill\":\"d-1\",\"kind\":\"evacuation\","
         "\"starts_at\":\"2026-03-12T10:00:00+08:00\",\"responsible\":\"t-2\"}}",
         s);
    for (int i = 1; i <= 3; i++)
        SEND(fh, "2026-03-20T14:00:00+08:00",
             "{\"type\":\"education.session\",%s,\"data\":{\"session\":\"e-%d\",\"topic\":\"fire\","
             "\"teacher\":\"t-1\"}}",
             s, i);
    fh_set_now(fh, T("2026-05-15T12:00:00+08:00"));

    /* Without the journal, only this plugin's components count. */
    json_t *a = s_query(fh, "{\"what\":\"assessment\",\"school\":\"sch-001\","
                            "\"from\":\"2026-03-01\",\"to\":\"2026-04-30\"}");
    assert_true(json_is_false(json_object_get(a, "journal")));
    json_t *c0 = json_array_get(json_object_get(a, "components"), 0);
    assert_string_equal(sc_json_str(c0, "component"), "inspections");
    assert_true(json_is_null(json_object_get(c0, "rate")));
    /* (20 × 0.5 + 15 × 1 + 15 × 0.5) / 50 = 65 */
    assert_float_equal(sc_json_num(a, "score", -1), 65.0, 0.001);
    json_decref(a);

    s_sql(fh, "CREATE TABLE core.events (id bigserial PRIMARY KEY, type text NOT NULL,"
              " school text, district text, source text NOT NULL, source_id text,"
              " occurred_at timestamptz NOT NULL, received_at timestamptz NOT NULL, actor text,"
              " data jsonb NOT NULL)");
    for (int i = 0; i < 4; i++)
        s_journal(fh, "inspection.due", "sch-001", "2026-03-10T00:00:00Z", NULL, "{}");
    s_journal(fh, "inspection.missed", "sch-001", "2026-03-11T00:00:00Z", NULL, "{}");
    s_journal(fh, "inspection.completed", "sch-001", "2026-03-10T02:00:00Z", "t-1", "{}");
    s_journal(fh, "inspection.completed", "sch-001", "2026-03-17T02:00:00Z", NULL,
              "{\"inspector\":\"t-1\"}");
    s_journal(fh, "inspection.completed", "sch-001", "2026-03-24T02:00:00Z", "t-2", "{}");
    s_journal(fh, "hazard.reported", "sch-001", "2026-03-10T02:00:00Z", "t-1",
              "{\"hazard\":\"hz-1\",\"title\":\"handrail\",\"risk\":\"general\"}");
    s_journal(fh, "hazard.reported", "sch-001", "2026-03-11T02:00:00Z", "t-1",
              "{\"hazard\":\"hz-2\",\"title\":\"socket\",\"risk\":\"general\"}");
    s_journal(fh, "hazard.assigned", "sch-001", "2026-03-10T03:00:00Z", NULL,
              "{\"hazard\":\"hz-1\",\"assignee\":\"t-2\"}");
    s_journal(fh, "hazard.assigned", "sch-001", "2026-03-10T04:00:00Z", NULL,
              "{\"hazard\":\"hz-1\",\"assignee\":\"t-1\"}");
    s_journal(fh, "hazard.assigned", "sch-001", "2026-03-11T03:00:00Z", NULL,
              "{\"hazard\":\"hz-2\",\"assignee\":\"t-2\"}");
    s_journal(fh, "hazard.overdue", "sch-001", "2026-03-20T00:00:00Z", NULL,
              "{\"hazard\":\"hz-2\"}");
    s_journal(fh, "hazard.verified", "sch-001", "2026-03-15T00:00:00Z", NULL,
              "{\"hazard\":\"hz-1\",\"by\":\"p-001\",\"passed\":true}");
    s_journal(fh, "incident.reported", "sch-001", "2026-04-02T00:00:00Z", NULL,
              "{\"incident\":\"i-1\",\"kind\":\"injury\",\"severity\":\"IV\"}");
    /* Other schools and other periods do not count. */
    s_journal(fh, "incident.reported", "sch-002", "2026-04-02T00:00:00Z", NULL,
              "{\"incident\":\"i-2\",\"kind\":\"fire\",\"severity\":\"I\"}");
    s_journal(fh, "inspection.missed", "sch-002", "2026-03-11T00:00:00Z", NULL, "{}");
    s_journal(fh, "incident.reported", "sch-001", "2026-05-02T00:00:00Z", NULL,
              "{\"incident\":\"i-3\",\"kind\":\"fire\",\"severity\":\"I\"}");

    a = s_query(fh, "{\"what\":\"assessment\",\"school\":\"sch-001\","
                    "\"from\":\"2026-03-01\",\"to\":\"2026-04-30\"}");
    assert_true(json_is_true(json_object_get(a, "journal")));
    static const struct {
        const char *name;
        long done, expected;
        double rate, points;
    } want[] = {
        {"inspections", 3, 4, 0.75, 18.75}, {"hazards", 1, 2, 0.5, 12.5},
        {"drills", 1, 2, 0.5, 10.0},        {"education", 2, 2, 1.0, 15.0},
        {"agreements", 1, 2, 0.5, 7.5},
    };
    json_t *list = json_object_get(a, "components");
    assert_int_equal(json_array_size(list), 5);
    for (size_t i = 0; i < 5; i++) {
        json_t *c = json_array_get(list, i);
        assert_string_equal(sc_json_str(c, "component"), want[i].name);
        assert_int_equal(sc_json_int(c, "done", -1), want[i].done);
        assert_int_equal(sc_json_int(c, "expected", -1), want[i].expected);
        assert_float_equal(sc_json_num(c, "rate", -1), want[i].rate, 0.0001);
        assert_float_equal(sc_json_num(c, "points", -1), want[i].points, 0.0001);
    }
    assert_int_equal(sc_json_int(json_object_get(a, "incidents"), "IV", -1), 1);
    assert_int_equal(sc_json_int(json_object_get(a, "incidents"), "I", -1), 0);
    assert_float_equal(sc_json_num(a, "penalty", -1), 5.0, 0.0001);
    assert_float_equal(sc_json_num(a, "score", -1), 58.75, 0.0001);

    /* Per person: t-1 holds hz-1 (reassigned from t-2), closed in time; t-2 holds hz-2, overdue. */
    json_t *want_people = json_loads("[[\"t-1\",\"张老师\",2,1,0,1,0,3,0,1],"
                                     " [\"t-2\",\"刘老师\",1,1,1,0,1,0,0,0]]",
                                     0, NULL);
    if (!json_equal(json_object_get(a, "people"), want_people)) {
        char *got = json_dumps(json_object_get(a, "people"), 0);
        fail_msg("people: %s", got);
    }
    json_decref(want_people);
    json_decref(a);

    /* The district summary: a row per school of d-01, this one's score among them. */
    a = s_query(fh, "{\"what\":\"ledger\",\"district\":\"d-01\",\"from\":\"2026-03-01\","
                    "\"to\":\"2026-04-30\"}");
    const json_t *rows = json_object_get(s_section(a, "district_summary"), "rows");
    assert_int_equal(json_array_size(rows), 2);
    assert_string_equal(json_string_value(json_array_get(json_array_get(rows, 0), 0)), "sch-001");
    assert_float_equal(json_number_value(json_array_get(json_array_get(rows, 0), 2)), 58.75,
                       0.0001);
    assert_string_equal(json_string_value(json_array_get(json_array_get(rows, 1), 0)), "sch-002");
    /* sch-002: its grade I incident and its missed inspection (no due) */
    assert_int_equal(json_integer_value(json_array_get(json_array_get(rows, 1), 8)), 1);
    json_decref(a);
}

/* ---- the export (ctl/ledger.c) ----------------------------------------------------------- */

/* A fake daemon: the ledger plugin through the fake host, a canned hazard_tracker. */
typedef struct fake_ctl {
    fh_t *fh;
    int calls;
    int wrong_limit;
    bool down;
    bool hazards_fail;
} fake_ctl_t;

/* hazard_tracker's answer: two sections, paged over a flat list with cursor "i:j". */
static json_t *s_hazard_page(const json_t *req)
{
    static const char *const hazards[][4] = {
        {"hz-1", "2026-03-03T09:00:00+08:00", "loose handrail, stair B", "closed"},
        {"hz-2", "2026-03-05T09:00:00+08:00", "socket without cover", "open"},
        {"hz-3", "2026-03-09T09:00:00+08:00", "blocked exit", "closed"},
    };
    static const char *const history[][3] = {
        {"hz-2", "2026-03-05T09:00:00+08:00", "reported"},
        {"hz-2", "2026-03-05T11:00:00+08:00", "assigned to t-2"},
        {"hz-2", "2026-03-12T09:00:00+08:00", "overdue"},
    };
    int limit = (int)sc_json_int(req, "limit", 100), sec = 0, row = 0;
    const char *after = sc_json_str(req, "after");
    if (after)
        sscanf(after, "%d:%d", &sec, &row);
    json_t *out = json_pack("{s:[], s:n}", "sections", "next");
    json_t *sections = json_object_get(out, "sections");
    for (; sec < 2 && limit > 0; sec++, row = 0) {
        json_t *rows = json_array();
        json_array_append_new(
            sections,
            json_pack("{s:s, s:s, s:s, s:o, s:o}", "key", sec ? "hazard_history" : "hazards",
                      "title_zh", sec ? "隐患整改过程" : "隐患排查与整改", "title_en",
                      sec ? "Hazard history" : "Hazards and rectification", "columns",
                      sec ? json_pack("[sss]", "hazard", "at", "step")
                          : json_pack("[ssss]", "hazard", "found_at", "title", "status"),
                      "rows", rows));
        int n = 3;
        for (; row < n && limit > 0; row++, limit--)
            json_array_append_new(
                rows, sec ? json_pack("[sss]", history[row][0], history[row][1], history[row][2])
                          : json_pack("[ssss]", hazards[row][0], hazards[row][1], hazards[row][2],
                                      hazards[row][3]));
        if (limit == 0 && (row < n || sec == 0)) {
            char cur[32];
            snprintf(cur, sizeof cur, "%d:%d", row < n ? sec : sec + 1, row < n ? row : 0);
            json_object_set_new(out, "next", json_string(cur));
            break;
        }
    }
    return out;
}

static json_t *s_fake_query(void *ctl, json_t *req)
{
    fake_ctl_t *f = ctl;
    f->calls++;
    if (f->down)
        return NULL;
    const char *cmd = sc_json_str(req, "cmd");
    if (strcmp(cmd, "plugins") == 0)
        return json_loads("{\"ok\":true,\"plugins\":[{\"name\":\"hazard_tracker\"},"
                          "{\"name\":\"notify\"},{\"name\":\"ledger\"}]}",
                          0, NULL);
    const char *plugin = sc_json_str(req, "plugin");
    if (sc_json_int(req, "limit", 0) != 2)
        f->wrong_limit++;
    if (strcmp(plugin, "notify") == 0)
        return json_loads("{\"ok\":false,\"error\":\"query_failed\",\"detail\":\"what: must be one "
                          "of deliveries\"}",
                          0, NULL);
    if (strcmp(plugin, "hazard_tracker") == 0)
        return f->hazards_fail
                   ? json_loads("{\"ok\":false,\"error\":\"database unavailable\"}", 0, NULL)
                   : s_hazard_page(req);
    char *text = json_dumps(req, 0);
    int rc;
    json_t *reply = fh_query(f->fh, text, &rc);
    free(text);
    /* The ledger's answers come wrapped, the way a daemon may wrap them. */
    json_t *wrapped = json_pack("{s:b, s:o}", "ok", rc == 0, "reply", reply);
    return wrapped;
}

static char *s_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = calloc(1, (size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

static void s_rmdir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[2048];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

static int s_export(fake_ctl_t *f, const char *format, const char *dir)
{
    char *argv[] = {"ledger",     "--school", "sch-001",      "--from", "2026-03-01", "--to",
                    "2026-03-31", "--format", (char *)format, "--out",  (char *)dir,  "--page",
                    "2",          NULL};
    return sc__ctl_ledger(13, argv, s_fake_query, f);
}

static size_t s_count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void test_export(void **state)
{
    (void)state;
    fake_ctl_t f = {.fh = s_host(NULL, "2026-02-20T08:00:00+08:00")};
    char dir[] = "/tmp/sc-ledger-XXXXXX", path[2100];
    assert_non_null(mkdtemp(dir));
    s_replay(f.fh, "term.jsonl");
    assert_int_equal(fh_advance_to(f.fh, T("2026-04-01T12:00:00+08:00")), 0);
    json_decref(fh_take_emitted(f.fh));

    /* JSON: one document, sections in the plan's order, hazards between rules and drills. */
    assert_int_equal(s_export(&f, "json", dir), 0);
    assert_int_equal(f.wrong_limit, 0);
    snprintf(path, sizeof path, "%s/ledger-sch-001-2026-03-01-2026-03-31.json", dir);
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    if (!doc)
        fail_msg("%s: %s (line %d)", path, jerr.text, jerr.line);
    assert_string_equal(sc_json_str(doc, "school"), "sch-001");
    assert_string_equal(sc_json_str(json_object_get(doc, "school_info"), "name"), "新桥小学");
    static const struct {
        const char *key, *plugin;
        size_t rows;
    } want[] = {
        {"leadership", "ledger", 3},
        {"agreements", "ledger", 4},
        {"agreement_shares", "ledger", 3},
        {"agreements_unsigned", "ledger", 3},
        {"rules", "ledger", 2},
        {"hazards", "hazard_tracker", 3},
        {"hazard_history", "hazard_tracker", 3},
        {"drills", "ledger", 1},
        {"drill_months", "ledger", 1},
        {"education", "ledger", 3},
        {"meetings", "ledger", 1},
        {"outings", "ledger", 2},
        {"gate_visitors", "ledger", 2},
        {"gate_cards", "ledger", 1},
        {"assessment", "ledger", 6},
        {"assessment_people", "ledger", 4},
    };
    json_t *sections = json_object_get(doc, "sections");
    assert_int_equal(json_array_size(sections), sizeof want / sizeof want[0]);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        json_t *s = json_array_get(sections, i);
        assert_string_equal(sc_json_str(s, "key"), want[i].key);
        assert_string_equal(sc_json_str(s, "plugin"), want[i].plugin);
        assert_int_equal(json_array_size(json_object_get(s, "rows")), want[i].rows);
        assert_int_equal(sc_json_int(s, "count", -1), want[i].rows);
    }
    /* The known hazard's history, whole, across pages. */
    json_t *hist = json_object_get(json_array_get(sections, 6), "rows");
    assert_string_equal(json_string_value(json_array_get(json_array_get(hist, 2), 2)), "overdue");
    char *text = json_dumps(doc, 0);
    assert_null(strstr(text, "OTHER-SCHOOL"));
    free(text);
    json_decref(doc);

    /* HTML: printable on A4, headings in Chinese and English, escaped, in order. */
    assert_int_equal(s_export(&f, "html", dir), 0);
    snprintf(path, sizeof path, "%s/ledger-sch-001-2026-03-01-2026-03-31.html", dir);
    char *html = s_read_file(path);
    assert_non_null(html);
    s_assert_contains(html, "<!DOCTYPE html>");
    s_assert_contains(html, "@page{size:A4");
    s_assert_contains(html, "新桥小学");
    s_assert_contains(html, "隐患排查与整改<span class=\"en\">Hazards and rectification</span>");
    s_assert_contains(html, "消防与疏散演练<span class=\"en\">Fire and evacuation drills</span>");
    s_assert_contains(html, "Fire safety, &lt;b&gt;&amp; escape&lt;/b&gt;");
    s_assert_contains(html, "2026-03-12 10:00"); /* local times, readable */
    assert_null(strstr(html, "<b>&"));
    assert_null(strstr(html, "OTHER-SCHOOL"));
    assert_true(strstr(html, "安全工作领导小组") < strstr(html, "隐患排查与整改"));
    assert_true(strstr(html, "隐患排查与整改") < strstr(html, "消防与疏散演练"));
    assert_true(strstr(html, "消防与疏散演练") < strstr(html, "年度安全考核"));
    assert_int_equal(s_count(html, "<section id=\"s"), 16);
    s_assert_contains(html, "</html>");
    free(html);

    /* CSV: one file per section, and an index with the row counts. */
    assert_int_equal(s_export(&f, "csv", dir), 0);
    snprintf(path, sizeof path, "%s/index.csv", dir);
    char *index = s_read_file(path);
    assert_non_null(index);
    assert_int_equal(s_count(index, "\r\n"), 17);
    s_assert_contains(index, "06_hazards.csv,hazards,隐患排查与整改,Hazards and rectification,"
                             "hazard_tracker,3\r\n");
    free(index);
    snprintf(path, sizeof path, "%s/10_education.csv", dir);
    char *csv = s_read_file(path);
    assert_non_null(csv);
    assert_int_equal(memcmp(csv,
                            "\xEF\xBB\xBF"
                            "session,held_at,topic,",
                            25),
                     0);
    assert_int_equal(s_count(csv, "\r\n"), 4);
    s_assert_contains(csv, "\"Fire safety, <b>& escape</b>\"");
    s_assert_contains(csv, "\"防溺水 Drowning, \"\"never swim alone\"\"\"");
    s_assert_contains(csv, "c3-1; c3-2");
    free(csv);

    /* District summary. */
    char *dargv[] = {"ledger", "--district", "d-01",     "--from", "2026-03-01",
                     "--to",   "2026-03-31", "--format", "json",   "--out",
                     dir,      "--page",     "2",        NULL};
    assert_int_equal(sc__ctl_ledger(13, dargv, s_fake_query, &f), 0);
    snprintf(path, sizeof path, "%s/ledger-d-01-2026-03-01-2026-03-31.json", dir);
    doc = json_load_file(path, 0, &jerr);
    assert_non_null(doc);
    json_t *only = json_array_get(json_object_get(doc, "sections"), 0);
    assert_int_equal(json_array_size(json_object_get(doc, "sections")), 1);
    assert_string_equal(sc_json_str(only, "key"), "district_summary");
    assert_int_equal(json_array_size(json_object_get(only, "rows")), 2);
    json_decref(doc);

    /* Usage errors and an unreachable daemon. */
    char *bad1[] = {"ledger", "--school", "sch-001", "--from", "2026-03-01", NULL};
    assert_int_equal(sc__ctl_ledger(5, bad1, s_fake_query, &f), 2);
    char *bad2[] = {"ledger", "--school",   "sch-001",  "--from", "2026-03-01",
                    "--to",   "2026-03-31", "--format", "csv",    NULL};
    assert_int_equal(sc__ctl_ledger(9, bad2, s_fake_query, &f), 2);
    char *bad3[] = {"ledger",     "--school", "../etc",     "--from",
                    "2026-03-01", "--to",     "2026-02-01", NULL};
    assert_int_equal(sc__ctl_ledger(7, bad3, s_fake_query, &f), 2);
    /* A plugin that keeps a ledger but cannot answer fails the run: no silent gaps. */
    f.hazards_fail = true;
    assert_int_equal(s_export(&f, "json", dir), 1);
    f.hazards_fail = false;
    f.down = true;
    assert_int_equal(s_export(&f, "json", dir), 1);

    if (getenv("LEDGER_KEEP_EXPORT"))
        fprintf(stderr, "export kept in %s\n", dir);
    else
        s_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_validators, s_teardown),
        cmocka_unit_test_teardown(test_config_refused, s_teardown),
        cmocka_unit_test_teardown(test_drill_lifecycle, s_teardown),
        cmocka_unit_test_teardown(test_drill_minimum, s_teardown),
        cmocka_unit_test_teardown(test_outings, s_teardown),
        cmocka_unit_test_teardown(test_gate, s_teardown),
        cmocka_unit_test_teardown(test_card_batches, s_teardown),
        cmocka_unit_test_teardown(test_gate_batch_as_one_by_one, s_teardown),
        cmocka_unit_test_teardown(test_agreements, s_teardown),
        cmocka_unit_test_teardown(test_ledger_sections, s_teardown),
        cmocka_unit_test_teardown(test_assessment, s_teardown),
        cmocka_unit_test_teardown(test_export, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
