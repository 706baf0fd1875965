/* Unit tests: incident_escalation against the fake host: levels, acknowledgement, resolution,
 * report deadlines, grouping, drills, silences, failed notifications, queries. */
#include "fakehost.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka needs the four above first. */
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------- */

static sc_time_t T(const char *s)
{
    sc_time_t t = 0;
    if (sc_time_parse(s, &t) < 0)
        fail_msg("bad time in test: %s", s);
    return t;
}

#define MIN(n) ((sc_time_t)(n)*60 * SC_USEC_PER_SEC)

/* 2026-06-15 is a Monday; 09:00 in Shanghai is 01:00 UTC. */
#define START "2026-06-15T09:00:00+08:00"

static const char *s_so(void)
{
    static char path[1024];
    const char *b = getenv("SC_BUILD");
    snprintf(path, sizeof path, "%s/plugins/incident_escalation.so", b ? b : "build");
    return path;
}

static json_t *s_fixture(const char *name)
{
    char path[1024];
    const char *top = getenv("SC_TOP");
    json_error_t err;
    snprintf(path, sizeof path, "%s/tests/fixtures/incident_escalation/%s", top ? top : ".", name);
    json_t *j = json_load_file(path, 0, &err);
    if (!j)
        fail_msg("fixture %s: %s", path, err.text);
    return j;
}

/* Adds the directory fixture: three schools, school and district people, one class. */
static void s_directory(fh_t *fh)
{
    json_t *dir = s_fixture("directory.json");
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(dir, "schools"), i, e)
    {
        char *s = json_dumps(e, 0);
        fh_add_school(fh, s);
        free(s);
    }
    json_array_foreach(json_object_get(dir, "people"), i, e)
    {
        char *s = json_dumps(e, 0);
        fh_add_person(fh, s);
        free(s);
    }
    json_array_foreach(json_object_get(dir, "classes"), i, e)
    {
        char *s = json_dumps(e, 0);
        fh_add_class(fh, s);
        free(s);
    }
    json_decref(dir);
}

static fh_t *s_new(const char *config)
{
    fh_t *fh = fh_new(s_so(), config, T(START));
    assert_non_null(fh);
    s_directory(fh);
    return fh;
}

static int s_setup(void **state)
{
    *state = s_new(NULL);
    return 0;
}

static int s_teardown(void **state)
{
    fh_t *fh = *state;
    fh_destroy(&fh);
    return 0;
}

static void s_send(fh_t *fh, const char *env)
{
    int rc = fh_handle(fh, env);
    if (rc != 0)
        fail_msg("handle returned %d for %s", rc, env);
}

/* Sends a fixture, with `patch` (JSON object text or NULL) merged into its data. */
static void s_send_fixture(fh_t *fh, const char *name, const char *patch)
{
    json_t *env = s_fixture(name);
    if (patch) {
        json_t *p = json_loads(patch, 0, NULL);
        assert_non_null(p);
        json_object_update(json_object_get(env, "data"), p);
        json_decref(p);
    }
    char *s = json_dumps(env, 0);
    s_send(fh, s);
    free(s);
    json_decref(env);
}

/* Sends {"type":type,"school":school,"source":"test","data":{data}}. */
static void s_event(fh_t *fh, const char *type, const char *school, const char *data)
{
    char env[4096];
    snprintf(env, sizeof env,
             "{\"type\":\"%s\",\"school\":\"%s\",\"source\":\"test\",\"data\":{%s}}", type, school,
             data);
    s_send(fh, env);
}

static void s_ack(fh_t *fh, const char *incident, const char *by)
{
    char d[256];
    snprintf(d, sizeof d, "\"incident\":\"%s\",\"by\":\"%s\"", incident, by);
    s_event(fh, "incident.acknowledged", "sch-001", d);
}

static void s_advance(fh_t *fh, sc_time_t to)
{
    assert_int_equal(fh_advance_to(fh, to), 0);
}

/* Events of `type` whose data.field is the string value (any when field is NULL). */
static size_t s_count(const json_t *em, const char *type, const char *field, const char *value)
{
    size_t i, n = 0;
    const json_t *e;
    json_array_foreach(em, i, e)
    {
        if (strcmp(sc_json_str(e, "type"), type) != 0)
            continue;
        const json_t *d = json_object_get(e, "data");
        n += !field || (sc_json_str(d, field) && strcmp(sc_json_str(d, field), value) == 0);
    }
    return n;
}

static size_t s_notified(const json_t *em, const char *person)
{
    return s_count(em, "notification.requested", "person", person);
}

/* The first incident.escalated at `level` with data.cause `cause` (NULL: any), or NULL. */
static const json_t *s_escalated(const json_t *em, int level, const char *cause)
{
    size_t i;
    const json_t *e;
    json_array_foreach(em, i, e)
    {
        const json_t *d = json_object_get(e, "data");
        if (strcmp(sc_json_str(e, "type"), "incident.escalated") == 0 &&
            sc_json_int(d, "level", 0) == level &&
            (!cause || strcmp(sc_json_str(d, "cause"), cause) == 0))
            return e;
    }
    return NULL;
}

/* True when the JSON array holds the string s. */
static bool s_has(const json_t *arr, const char *s)
{
    size_t i;
    const json_t *e;
    json_array_foreach(arr, i, e) if (json_is_string(e) &&
                                      strcmp(json_string_value(e), s) == 0) return true;
    return false;
}

/* One SQL value as text ("" for NULL or no row). */
static const char *s_sql(fh_t *fh, const char *sql, const char *arg)
{
    static char buf[8192];
    const char *p[] = {arg};
    int rc;
    PGresult *res = sc_pq_exec(fh_db(fh), sql, arg ? 1 : 0, p, &rc);
    if (!res)
        fail_msg("%s: %s", sql, PQerrorMessage(fh_db(fh)));
    snprintf(buf, sizeof buf, "%s", PQntuples(res) ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    return buf;
}

static json_t *s_query(fh_t *fh, const char *req, int want_rc)
{
    int rc = 0;
    json_t *r = fh_query(fh, req, &rc);
    if (rc != want_rc) {
        char *s = r ? json_dumps(r, 0) : NULL;
        fail_msg("query %s: rc %d (wanted %d): %s", req, rc, want_rc, s ? s : "-");
    }
    assert_non_null(r);
    return r;
}

/* The open escalation (from query open) with the given code, borrowed from `open`, or NULL. */
static const json_t *s_open_one(const json_t *open, const char *code)
{
    size_t i;
    const json_t *e;
    json_array_foreach(json_object_get(open, "open"), i,
                       e) if (strcmp(sc_json_str(e, "code"), code) == 0) return e;
    return NULL;
}

/* The code of the escalation opened by the last emitted incident.escalated in em. */
static const char *s_code_of(const json_t *em)
{
    const json_t *e = fh_find(em, "incident.escalated");
    assert_non_null(e);
    return sc_json_str(json_object_get(e, "data"), "incident");
}

/* ---- validators ---------------------------------------------------------- */

static void test_validators(void **state)
{
    fh_t *fh = *state;
    static const struct {
        const char *env;
        const char *detail; /* NULL: accepted */
    } cases[] = {
        {"{\"type\":\"incident.reported\",\"school\":\"sch-001\",\"source\":\"a\",\"data\":"
         "{\"incident\":\"I-1\",\"severity\":\"II\"}}",
         "data.kind: required"},
        {"{\"type\":\"incident.reported\",\"school\":\"sch-001\",\"source\":\"a\",\"data\":"
         "{\"incident\":\"I-1\",\"kind\":\"drowning\",\"severity\":\"V\"}}",
         "data.severity: must be one of I, II, III, IV"},
        {"{\"type\":\"incident.reported\",\"school\":\"sch-001\",\"source\":\"a\",\"data\":"
         "{\"incident\":\"I-1\",\"kind\":\"flood\",\"severity\":\"II\"}}",
         "data.kind: must be one of injury"},
        {"{\"type\":\"incident.reported\",\"school\":\"sch-001\",\"source\":\"a\",\"data\":"
         "{\"incident\":\"I 1\",\"kind\":\"fire\",\"severity\":\"II\"}}",
         "data.incident: must be a code"},
        {"{\"type\":\"incident.reported\",\"school\":\"sch-001\",\"source\":\"a\",\"data\":"
         "{\"incident\":\"I-1\",\"kind\":\"fire\",\"severity\":\"II\","
         "\"casualties\":{\"dead\":-1}}}",
         "data.casualties.dead: must be between 0 and 100000"},
        {"{\"type\":\"incident.reported\",\"school\":\"sch-001\",\"source\":\"a\",\"data\":"
         "{\"incident\":\"I-1\",\"kind\":\"fire\",\"severity\":\"II\",\"casualties\":3}}",
         "data.casualties: expected an object"},
        {"{\"type\":\"incident.updated\",\"school\":\"sch-001\",\"source\":\"a\",\"data\":"
         "{\"incident\":\"I-1\",\"severity\":\"0\"}}",
         "data.severity: must be one of"},
        {"{\"type\":\"incident.acknowledged\",\"school\":\"sch-001\",\"source\":\"a\",\"data\":"
         "{\"incident\":\"I-1\"}}",
         "data.by: required"},
        {"{\"type\":\"incident.resolved\",\"school\":\"sch-001\",\"source\":\"a\",\"data\":"
         "{\"by\":\"pr-1\"}}",
         "data.incident: required"},
        {"{\"type\":\"incident.report.submitted\",\"school\":\"sch-001\",\"source\":\"a\","
         "\"data\":{\"incident\":\"I-1\",\"by\":\"pr-1\",\"summary\":7}}",
         "data.summary: expected a string"},
        {"{\"type\":\"fire.alarm\",\"school\":\"sch-001\",\"source\":\"a\",\"data\":"
         "{\"panel\":\"fp-1\",\"zone\":\"A1\",\"kind\":\"smoke\"}}",
         "data.kind: must be one of alarm, fault, test"},
        {"{\"type\":\"fire.alarm\",\"school\":\"sch-001\",\"source\":\"a\",\"data\":"
         "{\"panel\":\"fp-1\",\"kind\":\"alarm\"}}",
         "data.zone: required"},
        {"{\"type\":\"silence.created\",\"school\":\"sch-001\",\"source\":\"a\",\"data\":"
         "{\"silence\":\"s-1\",\"ends_at\":\"2026-06-15T10:00:00+08:00\","
         "\"matcher\":{\"type\":\"hazard.overdue\"}}}",
         "data.reason: required"},
        {"{\"type\":\"silence.created\",\"school\":\"sch-001\",\"source\":\"a\",\"data\":"
         "{\"silence\":\"s-1\",\"ends_at\":\"tomorrow\",\"reason\":\"x\","
         "\"matcher\":{\"type\":\"hazard.overdue\"}}}",
         "data.ends_at: expected an RFC 3339 time"},
        {"{\"type\":\"silence.created\",\"school\":\"sch-001\",\"source\":\"a\",\"data\":"
         "{\"silence\":\"s-1\",\"ends_at\":\"2026-06-15T10:00:00+08:00\",\"reason\":\"x\","
         "\"matcher\":{\"colour\":\"red\"}}}",
         "data.matcher.colour: unknown matcher key"},
        {"{\"type\":\"silence.created\",\"school\":\"sch-001\",\"source\":\"a\",\"data\":"
         "{\"silence\":\"s-1\",\"ends_at\":\"2026-06-15T10:00:00+08:00\",\"reason\":\"x\","
         "\"matcher\":{}}}",
         "data.matcher: must name at least one key"},
        {"{\"type\":\"silence.created\",\"school\":\"sch-001\",\"source\":\"a\",\"data\":"
         "{\"silence\":\"s-1\",\"starts_at\":\"2026-06-15T11:00:00+08:00\","
         "\"ends_at\":\"2026-06-15T10:00:00+08:00\",\"reason\":\"x\","
         "\"matcher\":{\"type\":\"hazard.overdue\"}}}",
         "data.ends_at: must be after data.starts_at"},
        /* accepted */
        {"{\"type\":\"fire.alarm\",\"school\":\"sch-001\",\"source\":\"a\",\"data\":"
         "{\"panel\":\"fp-1\",\"zone\":3,\"kind\":\"alarm\"}}",
         NULL},
        {"{\"type\":\"incident.reported\",\"school\":\"sch-001\",\"source\":\"a\",\"data\":"
         "{\"incident\":\"I-1\",\"kind\":\"bullying\",\"severity\":\"III\"}}",
         NULL},
        {"{\"type\":\"silence.created\",\"district\":\"d-01\",\"source\":\"a\",\"data\":"
         "{\"silence\":\"s-1\",\"ends_at\":\"2026-06-15T10:00:00+08:00\",\"reason\":\"x\","
         "\"matcher\":{\"type\":[\"hazard.*\"],\"data\":{\"risk\":\"general\"}}}}",
         NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char detail[512] = "";
        int rc = fh_validate(fh, cases[i].env, detail, sizeof detail);
        if (!cases[i].detail) {
            if (rc != 0)
                fail_msg("case %zu refused: %s", i, detail);
            continue;
        }
        if (rc != -EINVAL || !strstr(detail, cases[i].detail))
            fail_msg("case %zu: rc %d, detail \"%s\", wanted \"%s\"", i, rc, detail,
                     cases[i].detail);
    }
    /* The fixtures are valid events. */
    static const char *const good[] = {"drowning.json", "sprain.json", "fire_alarm.json"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        json_t *env = s_fixture(good[i]);
        char *s = json_dumps(env, 0), detail[512] = "";
        int rc = fh_validate(fh, s, detail, sizeof detail);
        if (rc != 0)
            fail_msg("%s refused: %s", good[i], detail);
        free(s);
        json_decref(env);
    }
}

/* ---- escalation paths ---------------------------------------------------- */

static void test_school_level(void **state)
{
    fh_t *fh = *state;
    s_send_fixture(fh, "sprain.json", NULL);
    json_t *em = fh_take_emitted(fh);
    const json_t *esc = s_escalated(em, 1, "start");
    assert_non_null(esc);
    const json_t *d = json_object_get(esc, "data");
    assert_string_equal(sc_json_str(d, "incident"), "INC-2026-002");
    assert_true(s_has(json_object_get(d, "targets"), "so-1"));
    assert_true(s_has(json_object_get(d, "targets"), "pr-1"));
    assert_int_equal(json_array_size(json_object_get(d, "targets")), 2);
    assert_int_equal(s_count(em, "incident.escalated", NULL, NULL), 1);
    /* One notification per target and channel: the safety officer has e-mail and phone. */
    assert_int_equal(s_notified(em, "so-1"), 2);
    assert_int_equal(s_notified(em, "pr-1"), 1);
    assert_int_equal(s_notified(em, "dso-1"), 0);
    assert_int_equal(s_count(em, "notification.requested", "channel", "sms"), 1);
    assert_int_equal(s_count(em, "notification.requested", "channel", "email"), 2);
    /* Notification codes are distinct, code-shaped, and name the incident in ref. */
    size_t i;
    const json_t *e;
    const char *first = NULL;
    json_array_foreach(em, i, e)
    {
        if (strcmp(sc_json_str(e, "type"), "notification.requested") != 0)
            continue;
        const json_t *nd = json_object_get(e, "data");
        const char *code = sc_json_str(nd, "notification");
        assert_true(strncmp(code, "n-", 2) == 0 && strlen(code) <= 64);
        assert_string_equal(sc_json_str(nd, "ref"), "INC-2026-002");
        assert_non_null(strstr(sc_json_str(nd, "subject"), "INC-2026-002"));
        assert_non_null(strstr(sc_json_str(nd, "body"), "sprained ankle"));
        if (first)
            assert_string_not_equal(first, code);
        first = code;
    }
    json_decref(em);

    json_t *open = s_query(fh, "{\"what\":\"open\",\"school\":\"sch-001\"}", 0);
    const json_t *one = s_open_one(open, "INC-2026-002");
    assert_non_null(one);
    assert_int_equal(sc_json_int(one, "level", 0), 1);
    assert_string_equal(sc_json_str(one, "status"), "open");
    assert_true(s_has(json_object_get(one, "unacknowledged"), "so-1"));
    assert_true(s_has(json_object_get(one, "unacknowledged"), "pr-1"));
    json_decref(open);
    open = s_query(fh, "{\"what\":\"open\",\"district\":\"d-01\"}", 0);
    assert_int_equal(json_array_size(json_object_get(open, "open")), 1);
    json_decref(open);
    open = s_query(fh, "{\"what\":\"open\",\"school\":\"sch-002\"}", 0);
    assert_int_equal(json_array_size(json_object_get(open, "open")), 0);
    json_decref(open);
}

static void test_climb_to_district(void **state)
{
    fh_t *fh = *state;
    s_send_fixture(fh, "sprain.json", NULL);
    json_decref(fh_take_emitted(fh));

    /* Repeats to level 1 every 5 minutes; nobody else yet. */
    s_advance(fh, T(START) + MIN(14));
    json_t *em = fh_take_emitted(fh);
    assert_int_equal(s_count(em, "incident.escalated", "cause", "repeat"), 2);
    assert_int_equal(s_notified(em, "pr-1"), 2);
    assert_int_equal(s_notified(em, "dso-1"), 0);
    json_decref(em);

    /* 15 minutes unacknowledged: the district safety office is told. */
    s_advance(fh, T(START) + MIN(15));
    em = fh_take_emitted(fh);
    const json_t *esc = s_escalated(em, 2, "timeout");
    assert_non_null(esc);
    assert_string_equal(sc_json_str(esc, "occurred_at"), "2026-06-15T01:15:00Z");
    const json_t *d = json_object_get(esc, "data");
    assert_true(s_has(json_object_get(d, "targets"), "dso-1"));
    assert_non_null(strstr(sc_json_str(d, "reason"), "did not acknowledge within 15m"));
    assert_int_equal(s_notified(em, "dso-1"), 2); /* webhook and e-mail */
    assert_int_equal(s_notified(em, "dir-1"), 0);
    json_decref(em);

    /* Another 30 minutes: the director. */
    s_advance(fh, T(START) + MIN(45));
    em = fh_take_emitted(fh);
    assert_non_null(s_escalated(em, 3, "timeout"));
    assert_int_equal(s_notified(em, "dir-1"), 1);
    json_decref(em);

    /* Repeats stop at repeat_max (12) per level, however long nobody answers. */
    s_advance(fh, T(START) + MIN(24 * 60));
    json_decref(fh_take_emitted(fh));
    assert_string_equal(s_sql(fh,
                              "SELECT string_agg(level || ':' || repeats, ',' ORDER BY level) "
                              "FROM incident.levels WHERE code = $1",
                              "INC-2026-002"),
                        "1:12,2:12,3:12");
    json_t *open = s_query(fh, "{\"what\":\"open\",\"school\":\"sch-001\"}", 0);
    const json_t *one = s_open_one(open, "INC-2026-002");
    assert_int_equal(sc_json_int(one, "level", 0), 3);
    assert_true(s_has(json_object_get(one, "unacknowledged"), "dir-1"));
    json_decref(open);
}

static void test_immediate_district_for_grave(void **state)
{
    fh_t *fh = *state;
    static const struct {
        const char *data;
        bool district;
    } cases[] = {
        {"\"incident\":\"G-1\",\"kind\":\"injury\",\"severity\":\"III\","
         "\"casualties\":{\"injured\":1}",
         true},
        {"\"incident\":\"G-2\",\"kind\":\"traffic\",\"severity\":\"II\"", true},
        {"\"incident\":\"G-3\",\"kind\":\"fire\",\"severity\":\"I\"", true},
        {"\"incident\":\"G-4\",\"kind\":\"violence\",\"severity\":\"III\","
         "\"casualties\":{\"dead\":1,\"injured\":0}",
         true},
        {"\"incident\":\"G-5\",\"kind\":\"intrusion\",\"severity\":\"III\"", false},
        {"\"incident\":\"G-6\",\"kind\":\"other\",\"severity\":\"IV\","
         "\"casualties\":{\"dead\":0,\"injured\":0}",
         false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s_event(fh, "incident.reported", "sch-001", cases[i].data);
        json_t *em = fh_take_emitted(fh);
        assert_non_null(s_escalated(em, 1, "start"));
        if (cases[i].district) {
            const json_t *esc = s_escalated(em, 2, "immediate");
            if (!esc)
                fail_msg("case %zu: the district was not told at once", i);
            assert_non_null(
                strstr(sc_json_str(json_object_get(esc, "data"), "reason"), "in parallel"));
            assert_int_equal(s_notified(em, "dso-1"), 2);
        } else if (s_escalated(em, 2, NULL) || s_notified(em, "dso-1")) {
            fail_msg("case %zu: the district was told", i);
        }
        assert_int_equal(s_notified(em, "dir-1"), 0);
        json_decref(em);
    }
    /* Grave ones owe a written report within 2 h. */
    json_t *r = s_query(fh, "{\"what\":\"reports\",\"school\":\"sch-001\"}", 0);
    assert_int_equal(json_array_size(json_object_get(r, "reports")), 4);
    assert_string_equal(
        sc_json_str(json_array_get(json_object_get(r, "reports"), 0), "report_due_at"),
        "2026-06-15T11:00:00+08:00");
    json_decref(r);
}

static void test_ack_stops_climb(void **state)
{
    fh_t *fh = *state;
    s_send_fixture(fh, "sprain.json", NULL);
    s_advance(fh, T(START) + MIN(5));
    json_decref(fh_take_emitted(fh));

    /* A teacher holds no role of level 1; the district office has not been told yet. */
    s_ack(fh, "INC-2026-002", "t-9");
    s_ack(fh, "INC-2026-002", "dso-1");
    json_t *em = fh_take_emitted(fh);
    assert_int_equal(s_count(em, "incident.rejected", "incident", "INC-2026-002"), 2);
    assert_non_null(
        strstr(sc_json_str(json_object_get(fh_find(em, "incident.rejected"), "data"), "reason"),
               "holds no role of a notified level"));
    json_decref(em);

    s_advance(fh, T(START) + MIN(7));
    s_ack(fh, "INC-2026-002", "pr-1");
    em = fh_take_emitted(fh);
    assert_int_equal(s_count(em, "incident.rejected", NULL, NULL), 0);
    json_decref(em);

    /* Nothing more: no repeats, no district, ever. */
    s_advance(fh, T(START) + MIN(180));
    em = fh_take_emitted(fh);
    assert_int_equal(json_array_size(em), 0);
    json_decref(em);

    json_t *open = s_query(fh, "{\"what\":\"open\",\"school\":\"sch-001\"}", 0);
    const json_t *one = s_open_one(open, "INC-2026-002");
    assert_string_equal(sc_json_str(one, "status"), "acknowledged");
    assert_int_equal(json_array_size(json_object_get(one, "unacknowledged")), 0);
    const json_t *l1 = json_array_get(json_object_get(one, "levels"), 0);
    assert_string_equal(sc_json_str(l1, "acknowledged_by"), "pr-1");
    assert_string_equal(sc_json_str(l1, "acknowledged_at"), "2026-06-15T09:07:00+08:00");
    json_decref(open);
}

static void test_grave_every_level_acknowledges(void **state)
{
    fh_t *fh = *state;
    s_send_fixture(fh, "drowning.json", NULL);
    json_decref(fh_take_emitted(fh));
    s_advance(fh, T(START) + MIN(3));
    s_ack(fh, "INC-2026-001", "pr-1"); /* the school knows; the district must answer too */
    json_decref(fh_take_emitted(fh));

    s_advance(fh, T(START) + MIN(14));
    json_t *em = fh_take_emitted(fh);
    assert_int_equal(s_notified(em, "pr-1"), 0);  /* level 1 acknowledged: no repeats */
    assert_int_equal(s_notified(em, "dso-1"), 4); /* level 2 repeats at 5 and 10 min */
    assert_int_equal(s_notified(em, "dir-1"), 0);
    json_decref(em);

    /* The district office did not acknowledge within 15 min: the director is told. */
    s_advance(fh, T(START) + MIN(15));
    em = fh_take_emitted(fh);
    assert_non_null(s_escalated(em, 3, "timeout"));
    assert_int_equal(s_notified(em, "dir-1"), 1);
    json_decref(em);

    /* The director's acknowledgement covers every level below. */
    s_ack(fh, "INC-2026-001", "dir-1");
    s_advance(fh, T(START) + MIN(90));
    em = fh_take_emitted(fh);
    assert_int_equal(s_count(em, "notification.requested", NULL, NULL), 0);
    json_decref(em);
    assert_string_equal(
        s_sql(fh, "SELECT status FROM incident.escalations WHERE code = $1", "INC-2026-001"),
        "acknowledged");
}

static void test_resolution_ends_escalation(void **state)
{
    fh_t *fh = *state;
    s_send_fixture(fh, "sprain.json", NULL);
    s_advance(fh, T(START) + MIN(2));
    json_decref(fh_take_emitted(fh));

    /* A teacher cannot resolve it; the principal can, without acknowledging first. */
    s_event(fh, "incident.resolved", "sch-001", "\"incident\":\"INC-2026-002\",\"by\":\"t-9\"");
    json_t *em = fh_take_emitted(fh);
    assert_int_equal(s_count(em, "incident.rejected", NULL, NULL), 1);
    json_decref(em);
    s_event(fh, "incident.resolved", "sch-001",
            "\"incident\":\"INC-2026-002\",\"by\":\"pr-1\",\"summary\":\"first aid, parents "
            "informed\"");
    em = fh_take_emitted(fh);
    assert_int_equal(s_count(em, "notification.requested", "purpose", "resolved"), 3);
    assert_int_equal(s_count(em, "notification.requested", NULL, NULL), 3);
    json_decref(em);

    s_advance(fh, T(START) + MIN(300));
    em = fh_take_emitted(fh);
    assert_int_equal(json_array_size(em), 0);
    json_decref(em);

    s_ack(fh, "INC-2026-002", "pr-1");
    em = fh_take_emitted(fh);
    assert_non_null(
        strstr(sc_json_str(json_object_get(fh_find(em, "incident.rejected"), "data"), "reason"),
               "already resolved"));
    json_decref(em);
    json_t *open = s_query(fh, "{\"what\":\"open\",\"school\":\"sch-001\"}", 0);
    assert_int_equal(json_array_size(json_object_get(open, "open")), 0);
    json_decref(open);

    /* Unknown incidents are refused, not errors. */
    s_ack(fh, "INC-NOPE", "pr-1");
    em = fh_take_emitted(fh);
    assert_non_null(
        strstr(sc_json_str(json_object_get(fh_find(em, "incident.rejected"), "data"), "reason"),
               "unknown"));
    json_decref(em);
}

static void test_report_deadline_chase(void **state)
{
    fh_t *fh = *state;
    s_send_fixture(fh, "drowning.json", NULL); /* grave: report due 11:00 */
    s_send_fixture(fh, "drowning.json", "{\"incident\":\"INC-2026-010\"}");
    s_send_fixture(fh, "drowning.json", "{\"incident\":\"INC-2026-011\"}");
    json_decref(fh_take_emitted(fh));
    /* 010 is reported on time; 011 is resolved but its report is still owed. */
    s_advance(fh, T(START) + MIN(60));
    s_event(fh, "incident.report.submitted", "sch-001",
            "\"incident\":\"INC-2026-010\",\"by\":\"pr-1\",\"summary\":\"written report\"");
    s_event(fh, "incident.resolved", "sch-001",
            "\"incident\":\"INC-2026-011\",\"by\":\"pr-1\",\"summary\":\"false report\"");
    json_decref(fh_take_emitted(fh));

    /* At the deadline itself the report is not late yet; a second after, it is. */
    s_advance(fh, T(START) + MIN(120));
    json_t *em = fh_take_emitted(fh);
    assert_int_equal(s_count(em, "incident.report.overdue", NULL, NULL), 0);
    json_decref(em);

    s_advance(fh, T(START) + MIN(120) + SC_USEC_PER_SEC);
    em = fh_take_emitted(fh);
    assert_int_equal(s_count(em, "incident.report.overdue", NULL, NULL), 2);
    assert_int_equal(s_count(em, "incident.report.overdue", "incident", "INC-2026-001"), 1);
    assert_int_equal(s_count(em, "incident.report.overdue", "incident", "INC-2026-011"), 1);
    const json_t *ov = fh_find(em, "incident.report.overdue");
    assert_string_equal(sc_json_str(ov, "occurred_at"), "2026-06-15T03:00:01Z");
    assert_int_equal(sc_json_int(json_object_get(ov, "data"), "chase", 0), 1);
    /* The school and the district office are chased. */
    assert_int_equal(s_count(em, "notification.requested", "purpose", "report"), 2 * (2 + 1 + 2));
    json_decref(em);

    s_advance(fh, T(START) + MIN(150) + SC_USEC_PER_SEC);
    em = fh_take_emitted(fh);
    assert_int_equal(s_count(em, "incident.report.overdue", NULL, NULL), 2);
    json_decref(em);

    s_event(fh, "incident.report.submitted", "sch-001",
            "\"incident\":\"INC-2026-001\",\"by\":\"so-1\",\"summary\":\"late report\"");
    s_advance(fh, T(START) + MIN(600));
    em = fh_take_emitted(fh);
    assert_int_equal(s_count(em, "incident.report.overdue", "incident", "INC-2026-001"), 0);
    /* 011 is chased at most report_chase_max (8) times. */
    assert_int_equal(s_count(em, "incident.report.overdue", "incident", "INC-2026-011"), 6);
    json_decref(em);

    json_t *tl = s_query(fh, "{\"what\":\"timeline\",\"incident\":\"INC-2026-001\"}", 0);
    size_t i;
    const json_t *e;
    int submitted = 0;
    json_array_foreach(json_object_get(tl, "timeline"), i, e)
    {
        if (strcmp(sc_json_str(e, "what"), "report_submitted") == 0) {
            submitted++;
            assert_false(sc_json_bool(json_object_get(e, "detail"), "on_time", true));
        }
    }
    assert_int_equal(submitted, 1);
    json_decref(tl);
}

static void test_grouping(void **state)
{
    fh_t *fh = *state;
    s_send_fixture(fh, "hazard_overdue.json", NULL);
    json_t *em = fh_take_emitted(fh);
    assert_non_null(s_escalated(em, 1, "start"));
    char code[64];
    snprintf(code, sizeof code, "%s", s_code_of(em));
    json_decref(em);

    /* The same hazard again (a reminder, an overdue resent): one escalation with a count. */
    s_advance(fh, T(START) + MIN(3));
    s_send_fixture(fh, "hazard_overdue.json", NULL);
    s_event(fh, "hazard.reminder", "sch-001", "\"hazard\":\"hz-77\",\"days_overdue\":1");
    em = fh_take_emitted(fh);
    assert_int_equal(s_count(em, "incident.escalated", NULL, NULL), 0);
    assert_int_equal(s_count(em, "notification.requested", NULL, NULL), 0);
    json_decref(em);

    /* Another hazard is another escalation. */
    s_send_fixture(fh, "hazard_overdue.json", "{\"hazard\":\"hz-78\"}");
    em = fh_take_emitted(fh);
    assert_non_null(s_escalated(em, 1, "start"));
    char code78[64];
    snprintf(code78, sizeof code78, "%s", s_code_of(em));
    json_decref(em);

    json_t *open = s_query(fh, "{\"what\":\"open\",\"sort\":\"alert\"}", 0);
    assert_int_equal(json_array_size(json_object_get(open, "open")), 2);
    assert_int_equal(sc_json_int(s_open_one(open, code), "count", 0), 3);
    assert_string_equal(sc_json_str(s_open_one(open, code), "subject"), "hz-77");
    json_decref(open);

    /* Rectifying the hazard resolves its alert; a new overdue opens a new one. */
    s_event(fh, "hazard.rectified", "sch-001",
            "\"hazard\":\"hz-77\",\"by\":\"t-2\",\"measures\":\"bolted\"");
    em = fh_take_emitted(fh);
    assert_int_equal(s_count(em, "notification.requested", "purpose", "resolved"), 3);
    json_decref(em);
    assert_string_equal(s_sql(fh, "SELECT status FROM incident.escalations WHERE code = $1", code),
                        "resolved");
    s_send_fixture(fh, "hazard_overdue.json", NULL);
    em = fh_take_emitted(fh);
    assert_non_null(s_escalated(em, 1, "start"));
    assert_string_not_equal(s_code_of(em), code);
    json_decref(em);

    /* Acknowledged: repeats within the window still join; after it, a new escalation. */
    s_ack(fh, code78, "so-1");
    s_advance(fh, T(START) + MIN(40));
    s_send_fixture(fh, "hazard_overdue.json", "{\"hazard\":\"hz-78\"}");
    em = fh_take_emitted(fh);
    assert_int_equal(s_count(em, "incident.escalated", "cause", "start"), 0);
    json_decref(em);
    assert_string_equal(s_sql(fh, "SELECT count FROM incident.escalations WHERE code = $1", code78),
                        "2");
    s_advance(fh, T(START) + MIN(40 + 61));
    json_decref(fh_take_emitted(fh));
    s_send_fixture(fh, "hazard_overdue.json", "{\"hazard\":\"hz-78\"}");
    em = fh_take_emitted(fh);
    assert_non_null(s_escalated(em, 1, "start"));
    json_decref(em);
}

static void test_drill_inhibits_fire_alarms(void **state)
{
    fh_t *fh = *state;
    s_event(fh, "drill.started", "sch-001", "\"drill\":\"dr-1\",\"kind\":\"fire\"");
    s_send_fixture(fh, "fire_alarm.json", NULL);
    json_t *em = fh_take_emitted(fh);
    assert_int_equal(json_array_size(em), 0);
    json_decref(em);
    assert_string_equal(s_sql(fh, "SELECT cause || ':' || ref FROM incident.suppressed", NULL),
                        "drill:dr-1");

    /* Another school's alarm is not the drill. */
    s_event(fh, "fire.alarm", "sch-002", "\"panel\":\"fp-w\",\"zone\":\"1\",\"kind\":\"alarm\"");
    em = fh_take_emitted(fh);
    assert_int_equal(s_notified(em, "so-2"), 1);
    json_decref(em);

    /* After the drill, an alarm is an incident; the next ones from that panel join it. */
    s_advance(fh, T(START) + MIN(20));
    s_event(fh, "drill.ended", "sch-001", "\"drill\":\"dr-1\"");
    s_send_fixture(fh, "fire_alarm.json", NULL);
    em = fh_take_emitted(fh);
    const json_t *esc = s_escalated(em, 1, "start");
    assert_non_null(esc);
    char code[64];
    snprintf(code, sizeof code, "%s", sc_json_str(json_object_get(esc, "data"), "incident"));
    assert_true(strncmp(code, "fire-", 5) == 0);
    assert_int_equal(s_notified(em, "so-1"), 2);
    assert_int_equal(s_notified(em, "pr-1"), 1);
    json_decref(em);
    assert_string_equal(
        s_sql(fh,
              "SELECT kind || '/' || severity || '/' || location FROM incident.escalations "
              "WHERE code = $1",
              code),
        "fire/III/fire panel fp-main, zone B2-03");
    s_send_fixture(fh, "fire_alarm.json", "{\"zone\":\"B2-04\"}");
    em = fh_take_emitted(fh);
    assert_int_equal(s_count(em, "incident.escalated", NULL, NULL), 0);
    json_decref(em);
    assert_string_equal(s_sql(fh, "SELECT count FROM incident.escalations WHERE code = $1", code),
                        "2");

    /* A scheduled drill window inhibits without drill.started. */
    s_event(
        fh, "drill.scheduled", "sch-001",
        "\"drill\":\"dr-2\",\"kind\":\"evacuation\",\"starts_at\":\"2026-06-15T10:00:00+08:00\","
        "\"ends_at\":\"2026-06-15T10:30:00+08:00\"");
    s_advance(fh, T("2026-06-15T10:10:00+08:00"));
    json_decref(fh_take_emitted(fh));
    s_event(fh, "fire.alarm", "sch-001", "\"panel\":\"fp-lab\",\"zone\":\"L1\",\"kind\":\"alarm\"");
    em = fh_take_emitted(fh);
    assert_int_equal(s_count(em, "incident.escalated", NULL, NULL), 0);
    json_decref(em);
    s_advance(fh, T("2026-06-15T10:31:00+08:00"));
    json_decref(fh_take_emitted(fh));
    s_event(fh, "fire.alarm", "sch-001", "\"panel\":\"fp-lab\",\"zone\":\"L1\",\"kind\":\"alarm\"");
    em = fh_take_emitted(fh);
    assert_non_null(s_escalated(em, 1, "start"));
    json_decref(em);

    /* A drill nobody ended inhibits at most drill_max_duration (2 h). */
    s_event(fh, "drill.started", "sch-001", "\"drill\":\"dr-3\"");
    s_advance(fh, T("2026-06-15T12:20:00+08:00"));
    json_decref(fh_take_emitted(fh));
    s_event(fh, "fire.alarm", "sch-001", "\"panel\":\"fp-gym\",\"zone\":\"G\",\"kind\":\"alarm\"");
    em = fh_take_emitted(fh);
    assert_int_equal(s_count(em, "incident.escalated", NULL, NULL), 0);
    json_decref(em);
    s_advance(fh, T("2026-06-15T12:32:00+08:00"));
    json_decref(fh_take_emitted(fh));
    s_event(fh, "fire.alarm", "sch-001", "\"panel\":\"fp-gym\",\"zone\":\"G\",\"kind\":\"alarm\"");
    em = fh_take_emitted(fh);
    assert_non_null(s_escalated(em, 1, "start"));
    json_decref(em);

    /* Panel tests are recorded; faults go to the safety officer as an alert. */
    s_event(fh, "fire.alarm", "sch-001", "\"panel\":\"fp-main\",\"zone\":\"A\",\"kind\":\"test\"");
    s_event(fh, "fire.alarm", "sch-001", "\"panel\":\"fp-main\",\"zone\":\"A\",\"kind\":\"fault\"");
    em = fh_take_emitted(fh);
    assert_int_equal(s_count(em, "incident.escalated", "sort", "alert"), 1);
    assert_int_equal(s_notified(em, "so-1"), 2);
    assert_int_equal(s_notified(em, "pr-1"), 0);
    json_decref(em);
    assert_string_equal(
        s_sql(fh, "SELECT string_agg(cause, ',' ORDER BY seq) FROM incident.suppressed", NULL),
        "drill,drill,drill,test");
}

static void test_silence_and_expiry(void **state)
{
    fh_t *fh = *state;
    s_event(fh, "silence.created", "sch-001",
            "\"silence\":\"s-1\",\"ends_at\":\"2026-06-15T10:00:00+08:00\","
            "\"matcher\":{\"type\":\"hazard.overdue\"},\"reason\":\"hazard data being migrated\","
            "\"by\":\"pr-1\"");
    s_send_fixture(fh, "hazard_overdue.json", NULL);
    json_t *em = fh_take_emitted(fh);
    assert_int_equal(json_array_size(em), 0);
    json_decref(em);
    /* Only what the matcher names is silenced. */
    s_send_fixture(fh, "untraced.json", NULL);
    em = fh_take_emitted(fh);
    assert_int_equal(s_notified(em, "ht-1"), 1);
    json_decref(em);

    json_t *r = s_query(fh, "{\"what\":\"silences\",\"school\":\"sch-001\"}", 0);
    assert_int_equal(
        sc_json_int(json_array_get(json_object_get(r, "silences"), 0), "suppressed", 0), 1);
    json_decref(r);

    /* The silence expires by itself at its end. */
    s_advance(fh, T("2026-06-15T10:00:00+08:00"));
    em = fh_take_emitted(fh);
    const json_t *ex = fh_find(em, "silence.expired");
    assert_non_null(ex);
    assert_string_equal(sc_json_str(ex, "occurred_at"), "2026-06-15T02:00:00Z");
    assert_string_equal(sc_json_str(json_object_get(ex, "data"), "silence"), "s-1");
    json_decref(em);
    s_send_fixture(fh, "hazard_overdue.json", NULL);
    em = fh_take_emitted(fh);
    assert_non_null(s_escalated(em, 1, "start"));
    json_decref(em);

    /* A district-wide silence: reported incidents are never silenced, alarms are. */
    s_send(fh, "{\"type\":\"silence.created\",\"district\":\"d-01\",\"source\":\"test\","
               "\"data\":{\"silence\":\"s-2\",\"ends_at\":\"2026-06-15T12:00:00+08:00\","
               "\"matcher\":{\"sort\":\"incident\"},\"reason\":\"panel maintenance\"}}");
    s_event(fh, "fire.alarm", "sch-002", "\"panel\":\"fp-w\",\"zone\":\"1\",\"kind\":\"alarm\"");
    em = fh_take_emitted(fh);
    assert_int_equal(s_count(em, "incident.escalated", NULL, NULL), 0);
    json_decref(em);
    s_send_fixture(fh, "sprain.json", NULL);
    em = fh_take_emitted(fh);
    assert_non_null(s_escalated(em, 1, "start"));
    json_decref(em);

    /* Cancelled early, it stops muting; an end in the past is refused. */
    s_send(fh, "{\"type\":\"silence.cancelled\",\"district\":\"d-01\",\"source\":\"test\","
               "\"data\":{\"silence\":\"s-2\",\"by\":\"dso-1\"}}");
    s_event(fh, "fire.alarm", "sch-002", "\"panel\":\"fp-w\",\"zone\":\"1\",\"kind\":\"alarm\"");
    em = fh_take_emitted(fh);
    assert_non_null(s_escalated(em, 1, "start"));
    json_decref(em);
    s_event(fh, "silence.created", "sch-001",
            "\"silence\":\"s-3\",\"ends_at\":\"2026-06-15T09:30:00+08:00\","
            "\"matcher\":{\"type\":\"hazard.*\"},\"reason\":\"too late\"");
    em = fh_take_emitted(fh);
    assert_non_null(
        strstr(sc_json_str(json_object_get(fh_find(em, "incident.rejected"), "data"), "reason"),
               "already past"));
    json_decref(em);
}

/* The first notification.requested code for person in em (static buffer). */
static const char *s_notification_of(const json_t *em, const char *person, const char *channel)
{
    static char buf[80];
    size_t i;
    const json_t *e;
    json_array_foreach(em, i, e)
    {
        const json_t *d = json_object_get(e, "data");
        if (strcmp(sc_json_str(e, "type"), "notification.requested") == 0 &&
            strcmp(sc_json_str(d, "person"), person) == 0 &&
            (!channel || strcmp(sc_json_str(d, "channel"), channel) == 0)) {
            snprintf(buf, sizeof buf, "%s", sc_json_str(d, "notification"));
            return buf;
        }
    }
    fail_msg("no notification for %s", person);
    return NULL;
}

static void s_failed(fh_t *fh, const char *notification, const char *person)
{
    char d[300];
    snprintf(d, sizeof d,
             "\"notification\":\"%s\",\"person\":\"%s\",\"reason\":\"no usable contact\"",
             notification, person);
    s_send(fh, "{\"type\":\"notification.failed\",\"school\":\"sch-001\",\"source\":\"notify\","
               "\"data\":{\"notification\":\"n-unknown\",\"person\":\"x\"}}");
    s_event(fh, "notification.failed", "sch-001", d);
}

static void test_failed_notification_tells_level_above(void **state)
{
    fh_t *fh = *state;
    s_send_fixture(fh, "sprain.json", NULL);
    json_t *em = fh_take_emitted(fh);
    char so_email[80], so_sms[80], pr[80];
    snprintf(so_email, sizeof so_email, "%s", s_notification_of(em, "so-1", "email"));
    snprintf(so_sms, sizeof so_sms, "%s", s_notification_of(em, "so-1", "sms"));
    snprintf(pr, sizeof pr, "%s", s_notification_of(em, "pr-1", NULL));
    json_decref(em);

    /* One of the safety officer's two channels failing still leaves the other. */
    s_failed(fh, so_email, "so-1");
    em = fh_take_emitted(fh);
    assert_int_equal(s_count(em, "incident.escalated", NULL, NULL), 0);
    json_decref(em);

    /* The principal cannot be reached at all: the district is told at once. */
    s_advance(fh, T(START) + MIN(1));
    s_failed(fh, pr, "pr-1");
    em = fh_take_emitted(fh);
    const json_t *esc = s_escalated(em, 2, "failover");
    assert_non_null(esc);
    assert_non_null(strstr(sc_json_str(json_object_get(esc, "data"), "reason"), "pr-1"));
    assert_int_equal(s_notified(em, "dso-1"), 2);
    json_decref(em);
    /* The same failure reported again changes nothing. */
    s_failed(fh, pr, "pr-1");
    em = fh_take_emitted(fh);
    assert_int_equal(s_count(em, "incident.escalated", NULL, NULL), 0);
    json_decref(em);
    json_t *tl = s_query(fh, "{\"what\":\"timeline\",\"incident\":\"INC-2026-002\"}", 0);
    size_t i, unreachable = 0;
    const json_t *e;
    json_array_foreach(json_object_get(tl, "timeline"), i, e) unreachable +=
        strcmp(sc_json_str(e, "what"), "unreachable") == 0;
    assert_int_equal(unreachable, 1);
    json_decref(tl);

    /* The level above was told by failover: the climb at 15 min does not tell it twice. */
    s_advance(fh, T(START) + MIN(15));
    em = fh_take_emitted(fh);
    assert_null(s_escalated(em, 2, "timeout"));
    json_decref(em);
    (void)so_sms;
}

static void test_unreachable_levels_fail_over(void **state)
{
    fh_t *fh = *state;
    /* sch-003 has nobody in the school roles: the district is told at once. */
    s_event(fh, "incident.reported", "sch-003",
            "\"incident\":\"N-1\",\"kind\":\"building\",\"severity\":\"III\"");
    json_t *em = fh_take_emitted(fh);
    assert_non_null(s_escalated(em, 1, "start"));
    assert_non_null(s_escalated(em, 2, "failover"));
    assert_int_equal(s_notified(em, "dso-1"), 2);
    json_decref(em);

    /* sch-002's principal has no contact at all: same. */
    s_event(fh, "incident.reported", "sch-002",
            "\"incident\":\"W-1\",\"kind\":\"building\",\"severity\":\"IV\"");
    em = fh_take_emitted(fh);
    assert_int_equal(s_notified(em, "so-2"), 1);
    assert_int_equal(s_notified(em, "pr-2"), 0);
    assert_non_null(s_escalated(em, 2, "failover"));
    json_decref(em);
}

static void test_alerts_from_other_plugins(void **state)
{
    fh_t *fh = *state;
    static const struct {
        const char *fixture; /* or NULL: type/data below */
        const char *type;
        const char *data;
        const char *told;     /* comma-separated people notified at once */
        const char *not_told; /* comma-separated */
        bool report;
    } cases[] = {
        {"cluster.json", NULL, NULL, "doc-1,pr-1,cdc-1", "so-1,dso-1", true},
        {"untraced.json", NULL, NULL, "ht-1", "doc-1,so-1,pr-1", false},
        {NULL, "inspection.missed",
         "\"task\":\"tk-9\",\"schedule\":\"daily-patrol\",\"due_at\":\"2026-06-15T08:00:00+08:00\"",
         "so-1", "pr-1,dso-1", false},
        {NULL, "hazard.overdue",
         "\"hazard\":\"hz-90\",\"deadline\":\"2026-06-14T00:00:00Z\",\"risk\":\"major\"",
         "so-1,pr-1,dso-1", "dir-1", false},
        {NULL, "hazard.major.reported",
         "\"hazard\":\"hz-91\",\"title\":\"cracked beam\",\"risk\":\"major\"", "so-1,pr-1,dso-1",
         "dir-1", false},
        {NULL, "health.case.suspected",
         "\"student\":\"st-1\",\"class\":\"3A\",\"date\":\"2026-06-15\",\"disease\":\"measles\"",
         "doc-1,pr-1,cdc-1", "so-1", true},
        {NULL, "drill.overdue", "\"month\":\"2026-05\",\"required\":1,\"held\":0", "so-1,pr-1",
         "dso-1", false},
        {NULL, "gate.overstay", "\"visit\":\"v-7\",\"name\":\"delivery\"", "so-1", "pr-1", false},
        {NULL, "hazard.reported", "\"hazard\":\"hz-92\",\"title\":\"x\",\"risk\":\"general\"", "",
         "so-1,pr-1,dso-1", false},
        {NULL, "weather.alert", "\"kind\":\"typhoon\",\"level\":\"red\"", "", "so-1,pr-1", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (cases[i].fixture)
            s_send_fixture(fh, cases[i].fixture, NULL);
        else
            s_event(fh, cases[i].type, "sch-001", cases[i].data);
        json_t *em = fh_take_emitted(fh);
        char list[200], *save = NULL;
        snprintf(list, sizeof list, "%s", cases[i].told);
        for (char *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save))
            if (!s_notified(em, p))
                fail_msg("case %zu: %s was not told", i, p);
        snprintf(list, sizeof list, "%s", cases[i].not_told);
        for (char *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save))
            if (s_notified(em, p))
                fail_msg("case %zu: %s was told", i, p);
        if (!cases[i].told[0] && json_array_size(em))
            fail_msg("case %zu: not an alert, yet %zu events", i, json_array_size(em));
        if (cases[i].told[0]) {
            const char *code = s_code_of(em);
            char due[8];
            snprintf(due, sizeof due, "%s", cases[i].report ? "t" : "f");
            assert_string_equal(s_sql(fh,
                                      "SELECT report_due_at IS NOT NULL FROM "
                                      "incident.escalations WHERE code = $1",
                                      code),
                                due);
        }
        json_decref(em);
    }
    /* The visitor leaving resolves the overstay; the untraced alert is resolved by tracing. */
    s_event(fh, "gate.exit", "sch-001", "\"visit\":\"v-7\"");
    assert_string_equal(
        s_sql(fh, "SELECT status FROM incident.escalations WHERE origin = $1", "gate.overstay"),
        "resolved");
    s_event(
        fh, "health.absence.traced", "sch-001",
        "\"student\":\"st-0311\",\"date\":\"2026-06-15\",\"diagnosis\":\"cold\",\"by\":\"ht-1\"");
    assert_string_equal(s_sql(fh, "SELECT status FROM incident.escalations WHERE origin = $1",
                              "health.absence.untraced"),
                        "resolved");
}

static void test_update_upgrades_escalation(void **state)
{
    fh_t *fh = *state;
    s_send_fixture(fh, "sprain.json", NULL);
    json_decref(fh_take_emitted(fh));
    s_advance(fh, T(START) + MIN(4));
    s_event(fh, "incident.updated", "sch-001",
            "\"incident\":\"INC-2026-002\",\"severity\":\"II\",\"casualties\":{\"injured\":2},"
            "\"note\":\"it was a fall from the stairs, two pupils hurt\"");
    json_t *em = fh_take_emitted(fh);
    assert_non_null(s_escalated(em, 2, "upgrade"));
    assert_int_equal(s_notified(em, "dso-1"), 2);
    json_decref(em);
    assert_string_equal(
        s_sql(fh,
              "SELECT policy || '/' || severity || '/' || injured || '/' || "
              "(report_due_at - opened_at) FROM incident.escalations WHERE code = $1",
              "INC-2026-002"),
        "incident-grave/II/2/02:04:00");

    s_event(fh, "incident.updated", "sch-001", "\"incident\":\"INC-NOPE\",\"severity\":\"I\"");
    em = fh_take_emitted(fh);
    assert_int_equal(s_count(em, "incident.rejected", "incident", "INC-NOPE"), 1);
    json_decref(em);
    /* The same code reported twice is refused. */
    s_send_fixture(fh, "sprain.json", NULL);
    em = fh_take_emitted(fh);
    assert_non_null(
        strstr(sc_json_str(json_object_get(fh_find(em, "incident.rejected"), "data"), "reason"),
               "already reported"));
    json_decref(em);
}

static void test_jump_catches_up_in_order(void **state)
{
    fh_t *fh = *state;
    s_send_fixture(fh, "sprain.json", NULL);
    json_decref(fh_take_emitted(fh));
    /* One tick a day later does everything due in between, each at its own instant. */
    fh_set_now(fh, T(START) + MIN(24 * 60));
    sc_time_t next = 0;
    assert_int_equal(fh_tick(fh, &next), 0);
    assert_true(next == SC_TIME_NEVER);
    json_t *em = fh_take_emitted(fh);
    const json_t *l2 = s_escalated(em, 2, "timeout"), *l3 = s_escalated(em, 3, "timeout");
    assert_non_null(l2);
    assert_non_null(l3);
    assert_string_equal(sc_json_str(l2, "occurred_at"), "2026-06-15T01:15:00Z");
    assert_string_equal(sc_json_str(l3, "occurred_at"), "2026-06-15T01:45:00Z");
    assert_int_equal(s_count(em, "incident.escalated", "cause", "repeat"), 36);
    json_decref(em);
}

static void test_config_policies(void **state)
{
    (void)state;
    fh_t *fh = s_new("{\"policies\":[{\"name\":\"gate-overstay\","
                     "\"match\":{\"type\":\"gate.overstay\"},"
                     "\"levels\":[{\"roles\":[\"safety_officer\"],\"ack_within\":\"10m\"},"
                     "{\"roles\":[\"person:dir-1\"],\"ack_within\":600}],"
                     "\"subject\":[\"visitor\"]}],"
                     "\"channel_mode\":\"first\",\"notify_resolved\":false}");
    s_event(fh, "gate.overstay", "sch-001", "\"visitor\":\"v-1\",\"since\":\"08:00\"");
    json_t *em = fh_take_emitted(fh);
    assert_int_equal(s_notified(em, "so-1"), 1); /* first channel only */
    json_decref(em);
    s_advance(fh, T(START) + MIN(10));
    em = fh_take_emitted(fh);
    assert_int_equal(s_notified(em, "dir-1"), 1);
    assert_int_equal(s_count(em, "incident.escalated", "cause", "repeat"), 0); /* none set */
    json_decref(em);
    fh_destroy(&fh);

    static const char *const bad[] = {
        "{\"policies\":[{\"name\":\"x\",\"match\":{\"colour\":\"red\"}}]}",
        "{\"policies\":[{\"match\":{\"type\":\"gate.overstay\"}}]}",
        "{\"policies\":[{\"name\":\"x\",\"match\":{\"type\":\"a\"},\"levels\":"
        "[{\"roles\":[\"principal\"],\"ack_within\":\"soon\"}]}]}",
        "{\"policies\":[{\"name\":\"x\",\"match\":{\"type\":\"a\"},\"immediate\":[4]}]}",
        "{\"chain\":[{\"roles\":[]}]}",
        "{\"channels\":[]}",
        "{\"channel_mode\":\"some\"}",
        "{\"fire_alarm_severity\":\"V\"}",
        "{\"escalate_faster\":true}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fh_t *b = fh_new(s_so(), bad[i], T(START));
        if (b) {
            fh_destroy(&b);
            fail_msg("config accepted: %s", bad[i]);
        }
    }
}

/*
 * The plugin reads only its own kinds and the types its policies match or resolve on
 * (sc_host.subscribe): a gate entry, an absence or a hazard report is no alert under the
 * built-in policies, and the daemon never hands it over.
 */
static void test_reads_only_what_policies_name(void **state)
{
    (void)state;
    fh_t *fh = s_new(NULL);
    static const char *const read[] = {"incident.reported",
                                       "fire.alarm",
                                       "drill.started",
                                       "silence.created",
                                       "notification.failed",
                                       "gate.overstay",
                                       "gate.exit",
                                       "hazard.major.reported",
                                       "hazard.overdue",
                                       "hazard.rectified",
                                       "health.case.suspected",
                                       "health.absence.traced",
                                       "health.cluster.suspected"};
    static const char *const skipped[] = {
        "gate.entry",           "health.absence.reported", "hazard.reported",
        "health.morning_check", "notification.delivered",  "leadership.member.upserted"};
    for (size_t i = 0; i < sizeof read / sizeof read[0]; i++)
        if (!fh_subscribed(fh, read[i]))
            fail_msg("%s is not read", read[i]);
    for (size_t i = 0; i < sizeof skipped / sizeof skipped[0]; i++)
        if (fh_subscribed(fh, skipped[i]))
            fail_msg("%s is read", skipped[i]);
    fh_destroy(&fh);

    /* A policy on every gate event reads them all, and alerts on a gate entry. */
    fh_t *g = s_new("{\"policies\":[{\"name\":\"gates\",\"match\":{\"type\":\"gate.*\"},"
                    "\"levels\":[{\"roles\":[\"safety_officer\"],\"ack_within\":600}]}]}");
    assert_true(fh_subscribed(g, "gate.entry"));
    assert_false(fh_subscribed(g, "health.absence.reported"));
    s_event(g, "gate.entry", "sch-001", "\"kind\":\"pupil\",\"card\":\"c-1\",\"gate\":\"g\"");
    json_t *em = fh_take_emitted(g);
    assert_true(s_notified(em, "so-1") >= 1);
    json_decref(em);
    fh_destroy(&g);

    /* A matcher naming no type may match anything the plugin subscribes to: all of it is
     * read, and nothing outside its list. */
    g = s_new("{\"policies\":[{\"name\":\"major\",\"match\":{\"risk\":\"major\"}}]}");
    assert_true(fh_subscribed(g, "gate.entry"));
    assert_true(fh_subscribed(g, "hazard.reported"));
    assert_false(fh_subscribed(g, "leadership.member.upserted"));
    fh_destroy(&g);
}

/* ---- queries ------------------------------------------------------------- */

static void test_queries(void **state)
{
    fh_t *fh = *state;
    s_event(fh, "drill.started", "sch-001", "\"drill\":\"dr-1\"");
    s_send_fixture(fh, "fire_alarm.json", NULL);
    s_event(fh, "drill.ended", "sch-001", "\"drill\":\"dr-1\"");
    s_send_fixture(fh, "sprain.json", NULL);
    s_advance(fh, T(START) + MIN(5));
    s_ack(fh, "INC-2026-002", "so-1");
    s_advance(fh, T(START) + MIN(35));
    s_event(fh, "incident.resolved", "sch-001",
            "\"incident\":\"INC-2026-002\",\"by\":\"pr-1\",\"summary\":\"treated\"");
    s_send_fixture(fh, "drowning.json", NULL);
    s_send_fixture(fh, "hazard_overdue.json", NULL);
    json_decref(fh_take_emitted(fh));

    /* One incident's timeline, in order. */
    json_t *tl = s_query(fh, "{\"what\":\"timeline\",\"incident\":\"INC-2026-002\"}", 0);
    const json_t *items = json_object_get(tl, "timeline");
    assert_string_equal(sc_json_str(json_array_get(items, 0), "what"), "reported");
    assert_string_equal(sc_json_str(json_array_get(items, 1), "what"), "escalated");
    assert_string_equal(sc_json_str(json_array_get(items, 2), "what"), "notified");
    int ack = -1, res = -1, notified = 0;
    size_t i;
    const json_t *e;
    json_array_foreach(items, i, e)
    {
        const char *w = sc_json_str(e, "what");
        if (strcmp(w, "acknowledged") == 0) {
            ack = (int)i;
            assert_string_equal(sc_json_str(e, "person"), "so-1");
            assert_string_equal(sc_json_str(e, "at"), "2026-06-15T09:05:00+08:00");
        }
        if (strcmp(w, "resolved") == 0)
            res = (int)i;
        notified += strcmp(w, "notified") == 0;
    }
    assert_true(ack > 2 && res > ack);
    assert_int_equal(notified, 3 + 3 + 3); /* told, one repeat, resolution */
    assert_string_equal(sc_json_str(json_object_get(tl, "incident"), "status"), "resolved");
    json_decref(tl);

    /* Figures for the day: kinds, severities, time to acknowledge and resolve. */
    json_t *f = s_query(fh,
                        "{\"what\":\"figures\",\"school\":\"sch-001\",\"from\":\"2026-06-15\","
                        "\"to\":\"2026-06-15\"}",
                        0);
    assert_int_equal(sc_json_int(f, "incidents", 0), 2); /* the alarm in the drill is not one */
    assert_int_equal(sc_json_int(json_object_get(f, "incidents_by_kind"), "injury", 0), 1);
    assert_int_equal(sc_json_int(json_object_get(f, "incidents_by_kind"), "drowning", 0), 1);
    assert_int_equal(sc_json_int(json_object_get(f, "incidents_by_kind"), "fire", 0), 0);
    assert_int_equal(sc_json_int(json_object_get(f, "incidents_by_severity"), "II", 0), 1);
    assert_int_equal(sc_json_int(f, "injured", 0), 1);
    assert_true(sc_json_num(json_object_get(f, "time_to_acknowledge_s"), "mean", 0) == 300.0);
    assert_true(sc_json_num(json_object_get(f, "time_to_resolve_s"), "max", 0) == 2100.0);
    assert_int_equal(sc_json_int(f, "alerts", 0), 1);
    assert_int_equal(sc_json_int(json_object_get(f, "suppressed"), "drill", 0), 1);
    assert_int_equal(sc_json_int(f, "reports_required", 0), 1);
    assert_int_equal(sc_json_int(f, "reports_missing", 0), 1);
    json_decref(f);
    f = s_query(fh,
                "{\"what\":\"figures\",\"district\":\"d-01\",\"from\":\"2026-06-16\","
                "\"to\":\"2026-06-30\"}",
                0);
    assert_int_equal(sc_json_int(f, "incidents", -1), 0);
    json_decref(f);

    /* The ledger: incidents, alerts and the alarm recorded during the drill; paged. */
    json_t *l = s_query(fh,
                        "{\"what\":\"ledger\",\"school\":\"sch-001\",\"from\":\"2026-06-01\","
                        "\"to\":\"2026-06-30\"}",
                        0);
    const json_t *secs = json_object_get(l, "sections");
    assert_int_equal(json_array_size(secs), 3);
    assert_string_equal(sc_json_str(json_array_get(secs, 0), "key"), "incidents");
    assert_int_equal(json_array_size(json_object_get(json_array_get(secs, 0), "rows")), 2);
    assert_int_equal(json_array_size(json_object_get(json_array_get(secs, 1), "rows")), 1);
    assert_int_equal(json_array_size(json_object_get(json_array_get(secs, 2), "rows")), 1);
    assert_int_equal(
        json_array_size(json_object_get(json_array_get(secs, 0), "columns")),
        json_array_size(json_array_get(json_object_get(json_array_get(secs, 0), "rows"), 0)));
    assert_true(json_is_null(json_object_get(l, "next")));
    json_decref(l);
    size_t total = 0, pages = 0;
    char req[300], after[40] = "null";
    for (;;) {
        snprintf(req, sizeof req,
                 "{\"what\":\"ledger\",\"school\":\"sch-001\",\"from\":\"2026-06-01\","
                 "\"to\":\"2026-06-30\",\"limit\":2,\"after\":%s}",
                 after);
        l = s_query(fh, req, 0);
        pages++;
        json_array_foreach(json_object_get(l, "sections"), i, e) total +=
            json_array_size(json_object_get(e, "rows"));
        const json_t *next = json_object_get(l, "next");
        if (json_is_null(next)) {
            json_decref(l);
            break;
        }
        snprintf(after, sizeof after, "\"%s\"", json_string_value(next));
        json_decref(l);
        assert_true(pages < 10);
    }
    assert_int_equal(total, 4);
    assert_int_equal(pages, 2);
    l = s_query(fh,
                "{\"what\":\"ledger\",\"school\":\"sch-002\",\"from\":\"2026-06-01\","
                "\"to\":\"2026-06-30\"}",
                0);
    assert_int_equal(
        json_array_size(json_object_get(json_array_get(json_object_get(l, "sections"), 0), "rows")),
        0);
    json_decref(l);

    /* Bad requests name the field. */
    static const struct {
        const char *req, *error;
    } bad[] = {
        {"{\"what\":\"everything\"}", "what: must be one of"},
        {"{\"what\":\"timeline\",\"incident\":\"INC-NOPE\"}", "incident: INC-NOPE is not known"},
        {"{\"what\":\"ledger\",\"school\":\"sch-001\",\"to\":\"2026-06-30\"}", "from:"},
        {"{\"what\":\"ledger\",\"school\":\"sch-001\",\"from\":\"2026-06-30\",\"to\":\"2026-06-"
         "01\"}",
         "to: must not be before from"},
        {"{\"what\":\"figures\",\"from\":\"2026-06-01\",\"to\":\"2026-06-30\"}", "school"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        json_t *r = s_query(fh, bad[k].req, -EINVAL);
        if (!strstr(sc_json_str(r, "error"), bad[k].error))
            fail_msg("%s: %s", bad[k].req, sc_json_str(r, "error"));
        json_decref(r);
    }
}

static void test_own_events_are_ignored(void **state)
{
    fh_t *fh = *state;
    s_event(fh, "incident.escalated", "sch-001",
            "\"incident\":\"X\",\"level\":1,\"targets\":[],\"reason\":\"r\"");
    s_event(fh, "notification.requested", "sch-001",
            "\"notification\":\"n-1\",\"person\":\"so-1\",\"channel\":\"email\"");
    s_event(fh, "incident.report.overdue", "sch-001", "\"incident\":\"X\"");
    json_t *em = fh_take_emitted(fh);
    assert_int_equal(json_array_size(em), 0);
    json_decref(em);
    assert_string_equal(s_sql(fh, "SELECT count(*) FROM incident.escalations", NULL), "0");
}

int main(void)
{
#define T_(fn) cmocka_unit_test_setup_teardown(fn, s_setup, s_teardown)
    const struct CMUnitTest tests[] = {
        T_(test_validators),
        T_(test_school_level),
        T_(test_climb_to_district),
        T_(test_immediate_district_for_grave),
        T_(test_ack_stops_climb),
        T_(test_grave_every_level_acknowledges),
        T_(test_resolution_ends_escalation),
        T_(test_report_deadline_chase),
        T_(test_grouping),
        T_(test_drill_inhibits_fire_alarms),
        T_(test_silence_and_expiry),
        T_(test_failed_notification_tells_level_above),
        T_(test_unreachable_levels_fail_over),
        T_(test_alerts_from_other_plugins),
        T_(test_update_upgrades_escalation),
        T_(test_jump_catches_up_in_order),
        cmocka_unit_test(test_config_policies),
        cmocka_unit_test(test_reads_only_what_policies_name),
        T_(test_queries),
        T_(test_own_events_are_ignored),
    };
    return cmocka_run_group_tests_name("incident_escalation", tests, NULL, NULL);
}
