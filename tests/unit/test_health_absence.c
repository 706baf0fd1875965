/* Unit tests: the health_absence plugin against the fake host and a scratch PostgreSQL database. */
#include "../../plugins/health_absence/health_absence.h"
#include "fakehost.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const char *s_so(void)
{
    static char path[1024];
    const char *b = getenv("SC_BUILD");
    snprintf(path, sizeof path, "%s/plugins/health_absence.so", b ? b : "build");
    return path;
}

static sc_time_t T(const char *s)
{
    sc_time_t t = 0;
    if (sc_time_parse(s, &t) < 0)
        fail_msg("bad time in test: %s", s);
    return t;
}

/* A plugin with two schools in district d-1 and five classes in sch-1. */
static fh_t *s_new(const char *config, const char *start)
{
    fh_t *fh = fh_new(s_so(), config, T(start));
    if (!fh)
        fail_msg("fh_new failed (config %s)", config ? config : "default");
    fh_add_school(fh, "{\"school\":\"sch-1\",\"name\":\"No. 1 Primary\",\"district\":\"d-1\","
                      "\"timezone\":\"Asia/Shanghai\"}");
    fh_add_school(fh, "{\"school\":\"sch-2\",\"name\":\"No. 2 Primary\",\"district\":\"d-1\","
                      "\"timezone\":\"Asia/Shanghai\"}");
    static const char *const classes[][2] = {
        {"c-1a", "1"}, {"c-1b", "1"}, {"c-2a", "2"}, {"c-2b", "2"}, {"c-3a", "3"}};
    for (size_t i = 0; i < N(classes); i++) {
        char buf[160];
        snprintf(
            buf, sizeof buf,
            "{\"school\":\"sch-1\",\"class\":\"%s\",\"grade\":\"%s\",\"head_teacher\":\"t-%zu\"}",
            classes[i][0], classes[i][1], i);
        fh_add_class(fh, buf);
    }
    return fh;
}

static int s_teardown(void **state)
{
    fh_t *fh = *state;
    fh_destroy(&fh);
    *state = NULL;
    return 0;
}

/* Sends one event of `type` to sch-1 with data given as JSON text. */
static int s_send(fh_t *fh, const char *type, const char *data)
{
    char env[4096];
    snprintf(env, sizeof env,
             "{\"type\":\"%s\",\"school\":\"sch-1\",\"source\":\"test\",\"actor\":\"doc-1\","
             "\"data\":%s}",
             type, data);
    return fh_handle(fh, env);
}

/* Registers an absence; `more` adds members (",\"symptoms\":[\"fever\"]") or is "". */
static void s_absent(fh_t *fh, const char *student, const char *klass, const char *date,
                     const char *reason, const char *more)
{
    char data[2048];
    snprintf(data, sizeof data,
             "{\"student\":\"%s\",\"class\":\"%s\",\"date\":\"%s\",\"reason\":\"%s\"%s}", student,
             klass, date, reason, more);
    assert_int_equal(s_send(fh, "health.absence.reported", data), 0);
}

static void s_traced(fh_t *fh, const char *student, const char *date, const char *more)
{
    char data[1024];
    snprintf(
        data, sizeof data,
        "{\"student\":\"%s\",\"date\":\"%s\",\"diagnosis\":\"common cold\",\"by\":\"doc-1\"%s}",
        student, date, more);
    assert_int_equal(s_send(fh, "health.absence.traced", data), 0);
}

/* One text value from the scratch database ("" for NULL); the caller frees it. */
static char *s_sql(fh_t *fh, const char *sql, const char *param)
{
    const char *p[] = {param};
    PGresult *res = PQexecParams(fh_db(fh), sql, param ? 1 : 0, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(fh_db(fh)));
    char *out = strdup(PQntuples(res) ? PQgetvalue(res, 0, 0) : "(no row)");
    PQclear(res);
    return out;
}

static void s_assert_sql(fh_t *fh, const char *sql, const char *param, const char *want)
{
    char *got = s_sql(fh, sql, param);
    if (strcmp(got, want) != 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s [%s]: got \"%s\", want \"%s\"", sql, param ? param : "", got,
                 want);
        free(got);
        fail_msg("%s", msg);
    }
    free(got);
}

static const char *s_str(const json_t *obj, const char *path)
{
    return sc_json_str(obj, path);
}

/* The emitted events of `type` (new reference). */
static json_t *s_of_type(const json_t *arr, const char *type)
{
    json_t *out = json_array();
    size_t i;
    const json_t *e;
    json_array_foreach(arr, i, e) if (strcmp(s_str(e, "type"), type) == 0)
        json_array_append(out, (json_t *)e);
    return out;
}

/* Day numbers: weekday 0 = Monday. */
static int s_weekday(int64_t days)
{
    return (int)(((days + 3) % 7 + 7) % 7);
}

static char *s_date(int64_t days, char *buf)
{
    return sc_date_format(days, buf);
}

/* ---- validation ------------------------------------------------------------ */

static void test_validation_fixture(void **state)
{
    fh_t *fh = *state = s_new(NULL, "2026-06-15T08:00:00+08:00");
    char path[1024];
    const char *top = getenv("SC_TOP");
    snprintf(path, sizeof path, "%s/tests/fixtures/health_absence/validation.json",
             top ? top : ".");
    json_error_t err;
    json_t *doc = json_load_file(path, 0, &err);
    if (!doc)
        fail_msg("%s: %s", path, err.text);
    size_t i;
    const json_t *c;
    size_t n = 0;
    json_array_foreach(json_object_get(doc, "cases"), i, c)
    {
        char *env = json_dumps(json_object_get(c, "envelope"), JSON_COMPACT);
        char detail[512] = "";
        int rc = fh_validate(fh, env, detail, sizeof detail);
        const char *want = s_str(c, "detail");
        if (want && (rc != -EINVAL || strcmp(detail, want) != 0))
            fail_msg("case %zu: rc %d detail \"%s\", want \"%s\"", i, rc, detail, want);
        if (!want && rc != 0)
            fail_msg("case %zu: refused: %s", i, detail);
        free(env);
        n++;
    }
    assert_true(n >= 20);
    json_decref(doc);
}

/* Emitted types cannot be sent; the catalogue's types are owned. */
static void test_types(void **state)
{
    fh_t *fh = *state = s_new(NULL, "2026-06-15T08:00:00+08:00");
    static const struct {
        const char *type;
        unsigned flags;
    } want[] = {
        {"health.morning_check", 0},
        {"health.absence.reported", 0},
        {"health.absence.traced", 0},
        {"health.absence.untraced", SC_TYPE_EMITTED},
        {"health.cluster.suspected", SC_TYPE_EMITTED},
        {"health.case.suspected", SC_TYPE_EMITTED},
        {"health.aberration", SC_TYPE_EMITTED},
        {"health.report.daily", SC_TYPE_EMITTED},
        {"health.report.district", SC_TYPE_EMITTED | SC_TYPE_DISTRICT},
        {"health.rejected", SC_TYPE_EMITTED},
    };
    for (size_t i = 0; i < N(want); i++) {
        const struct sc_type *t = fh_plugin(fh)->types;
        while (t->name && strcmp(t->name, want[i].type) != 0)
            t++;
        if (!t->name || t->flags != want[i].flags)
            fail_msg("%s: not owned with flags %u", want[i].type, want[i].flags);
    }
}

/* ---- syndromes -------------------------------------------------------------- */

/* Symptoms are grouped into syndromes; the primary one is the most specific. */
/* What a report says comes back as it was said: quotes, backslashes, control characters, CJK. */
static void test_text_kept_exactly(void **state)
{
    fh_t *fh = *state = s_new(NULL, "2026-06-15T08:00:00+08:00");
    s_absent(fh, "s-1", "c-1a", "2026-06-15", "illness",
             ",\"diagnosis\":\"\\\"cold\\\" \\\\ flu?\","
             "\"note\":\"家长电话告知\\n体温 38.5\\u2103\\t\\u0001 end\"");
    s_assert_sql(fh, "SELECT diagnosis FROM health.absences WHERE student = $1", "s-1",
                 "\"cold\" \\ flu?");
    s_assert_sql(fh, "SELECT note FROM health.absences WHERE student = $1", "s-1",
                 "家长电话告知\n体温 38.5\u2103\t\001 end");
}

static void test_syndromes_stored(void **state)
{
    fh_t *fh = *state = s_new(NULL, "2026-06-15T08:00:00+08:00");
    static const struct {
        const char *symptoms;
        const char *want; /* syndromes|primary */
    } cases[] = {
        {"[\"fever\"]", "fever|fever"},
        {"[\"fever\",\"cough\"]", "respiratory,ili,fever|respiratory"},
        {"[\"sore_throat\",\"fever\"]", "respiratory,ili,fever|respiratory"},
        {"[\"cough\"]", "respiratory|respiratory"},
        {"[\"diarrhea\"]", "gastrointestinal|gastrointestinal"},
        {"[\"vomiting\",\"fever\"]", "gastrointestinal,fever|gastrointestinal"},
        {"[\"rash\",\"fever\"]", "rash,fever|rash"},
        {"[\"jaundice\",\"vomiting\"]", "jaundice,gastrointestinal|jaundice"},
        {"[\"conjunctivitis\"]", "eye|eye"},
        {"[\"rash\",\"cough\",\"fever\"]", "rash,respiratory,ili,fever|rash"},
        {"[\"headache\"]", "|"},
        {"[\"other\"]", "|"},
        {"[]", "|"},
        {"[\"fever\",\"fever\"]", "fever|fever"},
    };
    for (size_t i = 0; i < N(cases); i++) {
        char student[16], more[256];
        snprintf(student, sizeof student, "s-%zu", i);
        snprintf(more, sizeof more, ",\"symptoms\":%s,\"diagnosis\":\"x\"", cases[i].symptoms);
        /* One class each, so no cluster rule is met. */
        s_absent(fh, student, i % 2 ? "c-1a" : "c-2a", "2026-06-15", "illness", more);
        s_assert_sql(fh,
                     "SELECT array_to_string(syndromes, ',') || '|' || coalesce(syndrome, '')"
                     " FROM health.absences WHERE student = $1",
                     student, cases[i].want);
    }
    /* A repeated symptom is kept once. */
    s_assert_sql(fh,
                 "SELECT array_to_string(symptoms, ',') FROM health.absences WHERE student = $1",
                 "s-13", "fever");
}

/* ---- bad input handled at apply time ---------------------------------------- */

static void test_future_dates_rejected(void **state)
{
    /* 23:30 in Shanghai is 15:30 UTC: the 16th is still the future there. */
    fh_t *fh = *state = s_new(NULL, "2026-06-15T23:30:00+08:00");
    s_absent(fh, "s-1", "c-1a", "2026-06-16", "illness", "");
    assert_int_equal(s_send(fh, "health.morning_check",
                            "{\"date\":\"2026-06-16\",\"class\":\"c-1a\",\"present\":30,"
                            "\"absent\":1}"),
                     0);
    assert_int_equal(s_send(fh, "health.absence.traced",
                            "{\"student\":\"s-1\",\"date\":\"2026-06-17\",\"diagnosis\":\"x\","
                            "\"by\":\"doc-1\"}"),
                     0);
    json_t *ev = fh_take_emitted(fh);
    assert_int_equal(fh_count(ev, "health.rejected"), 3);
    const json_t *r = fh_find(ev, "health.rejected");
    assert_string_equal(s_str(json_object_get(r, "data"), "student"), "s-1");
    assert_non_null(strstr(s_str(json_object_get(r, "data"), "reason"), "in the future"));
    assert_true(json_integer_value(json_object_get(json_object_get(r, "data"), "event")) > 0);
    json_decref(ev);
    s_assert_sql(fh, "SELECT count(*)::text FROM health.absences", NULL, "0");
    s_assert_sql(fh, "SELECT count(*)::text FROM health.morning_checks", NULL, "0");

    /* Half past midnight in Shanghai (still the 15th in UTC): the 16th is today. */
    fh_set_now(fh, T("2026-06-16T00:30:00+08:00"));
    s_absent(fh, "s-1", "c-1a", "2026-06-16", "illness", "");
    ev = fh_take_emitted(fh);
    assert_int_equal(fh_count(ev, "health.rejected"), 0);
    json_decref(ev);
    s_assert_sql(fh, "SELECT count(*)::text FROM health.absences", NULL, "1");
}

static void test_traced_unknown_absence_rejected(void **state)
{
    fh_t *fh = *state = s_new(NULL, "2026-06-15T09:00:00+08:00");
    s_absent(fh, "s-1", "c-1a", "2026-06-15", "illness", "");
    s_traced(fh, "s-404", "2026-06-15", "");
    s_traced(fh, "s-1", "2026-06-12", ""); /* right pupil, wrong day */
    json_t *ev = fh_take_emitted(fh);
    json_t *rej = s_of_type(ev, "health.rejected");
    assert_int_equal(json_array_size(rej), 2);
    assert_string_equal(s_str(json_object_get(json_array_get(rej, 0), "data"), "reason"),
                        "no absence of s-404 on 2026-06-15 is registered");
    json_decref(rej);
    json_decref(ev);
    s_assert_sql(fh, "SELECT coalesce(diagnosis, '-') FROM health.absences WHERE student = $1",
                 "s-1", "-");
}

/* ---- tracing ------------------------------------------------------------------ */

static void test_tracing_deadlines(void **state)
{
    fh_t *fh = *state = s_new(NULL, "2026-06-15T07:00:00+08:00");
    static const struct {
        const char *at; /* when it is reported */
        const char *student;
        const char *date;
        const char *reason;
        const char *more;
        const char *due; /* trace_due in UTC, or "" for none */
    } cases[] = {
        /* Monday morning: due Monday 17:00 (09:00Z). */
        {"2026-06-15T08:00:00+08:00", "s-ill", "2026-06-15", "illness", "", "2026-06-15T09:00:00Z"},
        {"2026-06-15T08:05:00+08:00", "s-unknown", "2026-06-15", "unknown", "",
         "2026-06-15T09:00:00Z"},
        {"2026-06-15T08:10:00+08:00", "s-diag", "2026-06-15", "illness",
         ",\"diagnosis\":\"otitis\"", ""},
        {"2026-06-15T08:15:00+08:00", "s-personal", "2026-06-15", "personal", "", ""},
        {"2026-06-15T08:20:00+08:00", "s-traced", "2026-06-15", "illness", "",
         "2026-06-15T09:00:00Z"},
        /* After the cut-off: due the next school day. */
        {"2026-06-15T17:30:00+08:00", "s-late", "2026-06-15", "illness", "",
         "2026-06-16T09:00:00Z"},
        /* Friday after the cut-off: due Monday. */
        {"2026-06-19T17:30:00+08:00", "s-friday", "2026-06-19", "illness", "",
         "2026-06-22T09:00:00Z"},
    };
    for (size_t i = 0; i < N(cases); i++) {
        assert_int_equal(fh_advance_to(fh, T(cases[i].at)), 0);
        s_absent(fh, cases[i].student, "c-1a", cases[i].date, cases[i].reason, cases[i].more);
        s_assert_sql(fh,
                     "SELECT coalesce(to_char(trace_due AT TIME ZONE 'UTC',"
                     " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '') FROM health.absences"
                     " WHERE student = $1",
                     cases[i].student, cases[i].due);
        if (strcmp(cases[i].student, "s-traced") == 0) {
            assert_int_equal(fh_advance_to(fh, T("2026-06-15T12:00:00+08:00")), 0);
            s_traced(fh, "s-traced", "2026-06-15", "");
            assert_int_equal(fh_advance_to(fh, T("2026-06-15T16:59:59+08:00")), 0);
            json_t *ev = fh_take_emitted(fh);
            assert_int_equal(fh_count(ev, "health.absence.untraced"), 0);
            json_decref(ev);
            assert_int_equal(fh_advance_to(fh, T("2026-06-15T17:00:00+08:00")), 0);
            ev = fh_take_emitted(fh);
            json_t *u = s_of_type(ev, "health.absence.untraced");
            /* s-ill and s-unknown, once each, dated the deadline. */
            assert_int_equal(json_array_size(u), 2);
            assert_string_equal(s_str(json_array_get(u, 0), "occurred_at"), "2026-06-15T09:00:00Z");
            const json_t *d = json_object_get(json_array_get(u, 0), "data");
            assert_string_equal(s_str(d, "student"), "s-ill");
            assert_string_equal(s_str(d, "class"), "c-1a");
            assert_string_equal(s_str(d, "date"), "2026-06-15");
            assert_string_equal(s_str(json_object_get(json_array_get(u, 1), "data"), "student"),
                                "s-unknown");
            json_decref(u);
            json_decref(ev);
        }
    }
    /* Through to the next Tuesday: s-late on Tuesday, s-friday on Monday, nobody twice. */
    assert_int_equal(fh_advance_to(fh, T("2026-06-23T20:00:00+08:00")), 0);
    json_t *ev = fh_take_emitted(fh);
    json_t *u = s_of_type(ev, "health.absence.untraced");
    assert_int_equal(json_array_size(u), 2);
    assert_string_equal(s_str(json_object_get(json_array_get(u, 0), "data"), "student"), "s-late");
    assert_string_equal(s_str(json_array_get(u, 0), "occurred_at"), "2026-06-16T09:00:00Z");
    assert_string_equal(s_str(json_object_get(json_array_get(u, 1), "data"), "student"),
                        "s-friday");
    assert_string_equal(s_str(json_array_get(u, 1), "occurred_at"), "2026-06-22T09:00:00Z");
    json_decref(u);
    json_decref(ev);
    s_assert_sql(fh, "SELECT traced_by FROM health.absences WHERE student = $1", "s-traced",
                 "doc-1");
}

/* An update that brings the diagnosis traces the absence; updates keep what they leave out. */
static void test_update_traces(void **state)
{
    fh_t *fh = *state = s_new(NULL, "2026-06-15T08:00:00+08:00");
    s_absent(fh, "s-1", "c-1a", "2026-06-15", "unknown", ",\"note\":\"parent called\"");
    s_absent(fh, "s-1", "c-1a", "2026-06-15", "illness",
             ",\"symptoms\":[\"fever\"],\"diagnosis\":\"tonsillitis\",\"seen_doctor\":true");
    s_assert_sql(fh,
                 "SELECT reason || '|' || array_to_string(symptoms, ',') || '|' || diagnosis || '|'"
                 " || seen_doctor::text || '|' || note || '|' || (traced_at IS NOT NULL)::text"
                 " FROM health.absences WHERE student = $1",
                 "s-1", "illness|fever|tonsillitis|true|parent called|true");
    assert_int_equal(fh_advance_to(fh, T("2026-06-15T20:00:00+08:00")), 0);
    json_t *ev = fh_take_emitted(fh);
    assert_int_equal(fh_count(ev, "health.absence.untraced"), 0);
    json_decref(ev);
}

/* ---- clusters ------------------------------------------------------------------ */

struct s_case {
    const char *student, *klass, *date, *more;
};

/* A fresh plugin at `now`, the cases in order; returns the emitted events (new reference). */
static json_t *s_run_cases(fh_t **fh, const char *config, const char *now,
                           const struct s_case *cases, size_t n)
{
    *fh = s_new(config, now);
    for (size_t i = 0; i < n; i++)
        s_absent(*fh, cases[i].student, cases[i].klass, cases[i].date, "illness", cases[i].more);
    return fh_take_emitted(*fh);
}

#define FEVER ",\"symptoms\":[\"fever\"],\"diagnosis\":\"x\""
#define ILI ",\"symptoms\":[\"fever\",\"cough\"],\"diagnosis\":\"x\""
#define HFMD ",\"symptoms\":[\"rash\",\"fever\"],\"suspected_disease\":\"hfmd\",\"diagnosis\":\"x\""
#define GI ",\"symptoms\":[\"diarrhea\"],\"diagnosis\":\"x\""

/*
 * Every default rule at its threshold and one below, plus windows that just
 * miss. Each row runs on a fresh database.
 */
static void test_cluster_rules(void **state)
{
    static const struct s_case class_day_3[] = {{"s-1", "c-1a", "2026-06-17", FEVER},
                                                {"s-2", "c-1a", "2026-06-17", FEVER},
                                                {"s-3", "c-1a", "2026-06-17", FEVER}};
    static const struct s_case class_day_3_two_classes[] = {{"s-1", "c-1a", "2026-06-17", FEVER},
                                                            {"s-2", "c-1a", "2026-06-17", FEVER},
                                                            {"s-3", "c-1b", "2026-06-17", FEVER}};
    static const struct s_case class_day_3_unlike[] = {{"s-1", "c-1a", "2026-06-17", FEVER},
                                                       {"s-2", "c-1a", "2026-06-17", FEVER},
                                                       {"s-3", "c-1a", "2026-06-17", GI}};
    static const struct s_case class_3days_5[] = {{"s-1", "c-1a", "2026-06-15", FEVER},
                                                  {"s-2", "c-1a", "2026-06-15", FEVER},
                                                  {"s-3", "c-1a", "2026-06-16", FEVER},
                                                  {"s-4", "c-1a", "2026-06-16", FEVER},
                                                  {"s-5", "c-1a", "2026-06-17", FEVER}};
    static const struct s_case class_3days_spread[] = {{"s-1", "c-1a", "2026-06-15", FEVER},
                                                       {"s-2", "c-1a", "2026-06-15", FEVER},
                                                       {"s-3", "c-1a", "2026-06-16", FEVER},
                                                       {"s-4", "c-1a", "2026-06-16", FEVER},
                                                       {"s-5", "c-1a", "2026-06-18", FEVER}};
    static const struct s_case hfmd_7days[] = {{"s-1", "c-2a", "2026-06-12", HFMD},
                                               {"s-2", "c-2a", "2026-06-18", HFMD}};
    static const struct s_case hfmd_8days[] = {{"s-1", "c-2a", "2026-06-11", HFMD},
                                               {"s-2", "c-2a", "2026-06-18", HFMD}};
    static const struct s_case ili_10[] = {
        {"s-1", "c-1a", "2026-06-12", ILI}, {"s-2", "c-1b", "2026-06-12", ILI},
        {"s-3", "c-2a", "2026-06-15", ILI}, {"s-4", "c-2b", "2026-06-15", ILI},
        {"s-5", "c-3a", "2026-06-16", ILI}, {"s-6", "c-1a", "2026-06-16", ILI},
        {"s-7", "c-1b", "2026-06-17", ILI}, {"s-8", "c-2a", "2026-06-17", ILI},
        {"s-9", "c-2b", "2026-06-18", ILI}, {"s-10", "c-3a", "2026-06-18", ILI}};
    static const struct s_case ili_10_over_8days[] = {
        {"s-1", "c-1a", "2026-06-11", ILI}, {"s-2", "c-1b", "2026-06-12", ILI},
        {"s-3", "c-2a", "2026-06-15", ILI}, {"s-4", "c-2b", "2026-06-15", ILI},
        {"s-5", "c-3a", "2026-06-16", ILI}, {"s-6", "c-1a", "2026-06-16", ILI},
        {"s-7", "c-1b", "2026-06-17", ILI}, {"s-8", "c-2a", "2026-06-17", ILI},
        {"s-9", "c-2b", "2026-06-18", ILI}, {"s-10", "c-3a", "2026-06-18", ILI}};
    static const struct {
        const char *name;
        const struct s_case *cases;
        size_t n;              /* cases used: the full row, or one fewer for "one below" */
        const char *rule;      /* the rule expected to raise, or NULL for none */
        const char *scope_key; /* class or school of the raised cluster */
        const char *syndrome;  /* or NULL */
        const char *disease;   /* or NULL */
        int window;
    } rows[] = {
        {"class_day at 3", class_day_3, 3, "class_day", "c-1a", "fever", NULL, 1},
        {"class_day at 2", class_day_3, 2, NULL, NULL, NULL, NULL, 0},
        {"class_day across two classes", class_day_3_two_classes, 3, NULL, NULL, NULL, NULL, 0},
        {"class_day unlike symptoms", class_day_3_unlike, 3, NULL, NULL, NULL, NULL, 0},
        {"class_3days at 5", class_3days_5, 5, "class_3days", "c-1a", "fever", NULL, 3},
        {"class_3days at 4", class_3days_5, 4, NULL, NULL, NULL, NULL, 0},
        {"class_3days over 4 days", class_3days_spread, 5, NULL, NULL, NULL, NULL, 0},
        {"hfmd at 2 in 7 days", hfmd_7days, 2, "hfmd_class", "c-2a", NULL, "hfmd", 7},
        {"hfmd at 1", hfmd_7days, 1, NULL, NULL, NULL, NULL, 0},
        {"hfmd 8 days apart", hfmd_8days, 2, NULL, NULL, NULL, NULL, 0},
        {"ili_school at 10", ili_10, 10, "ili_school", "sch-1", "ili", NULL, 7},
        {"ili_school at 9", ili_10, 9, NULL, NULL, NULL, NULL, 0},
        {"ili_school over 8 days", ili_10_over_8days, 10, NULL, NULL, NULL, NULL, 0},
    };
    for (size_t r = 0; r < N(rows); r++) {
        fh_t **fh = (fh_t **)state; /* the teardown frees it if a check fails */
        json_t *ev = s_run_cases(fh, NULL, "2026-06-18T12:00:00+08:00", rows[r].cases, rows[r].n);
        json_t *cl = s_of_type(ev, "health.cluster.suspected");
        if (!rows[r].rule) {
            if (json_array_size(cl) != 0)
                fail_msg("%s: raised %s", rows[r].name,
                         s_str(json_object_get(json_array_get(cl, 0), "data"), "rule"));
        } else {
            if (json_array_size(cl) != 1)
                fail_msg("%s: %zu clusters raised, want 1", rows[r].name, json_array_size(cl));
            const json_t *d = json_object_get(json_array_get(cl, 0), "data");
            assert_string_equal(s_str(d, "rule"), rows[r].rule);
            const char *scope = strcmp(rows[r].rule, "ili_school") == 0 ? "school" : "class";
            assert_string_equal(s_str(d, "scope"), scope);
            assert_string_equal(s_str(d, scope), rows[r].scope_key);
            assert_int_equal(sc_json_int(d, "cases", 0), (json_int_t)rows[r].n);
            assert_int_equal(sc_json_int(d, "window_days", 0), rows[r].window);
            assert_int_equal(json_array_size(json_object_get(d, "students")), rows[r].n);
            if (rows[r].syndrome)
                assert_string_equal(s_str(d, "syndrome"), rows[r].syndrome);
            if (rows[r].disease)
                assert_string_equal(s_str(d, "disease"), rows[r].disease);
            assert_string_equal(s_str(json_array_get(cl, 0), "school"), "sch-1");
        }
        json_decref(cl);
        json_decref(ev);
        fh_destroy(fh);
    }
}

/* A grade rule from config, at its threshold and one below. */
static void test_cluster_grade_rule(void **state)
{
    static const char *config =
        "{\"cluster_rules\":[{\"rule\":\"grade_gi\",\"scope\":\"grade\","
        "\"syndrome\":\"gastrointestinal\",\"cases\":4,\"window_days\":2}]}";
    static const struct s_case gi[] = {{"s-1", "c-1a", "2026-06-17", GI},
                                       {"s-2", "c-1b", "2026-06-17", GI},
                                       {"s-3", "c-1a", "2026-06-18", GI},
                                       {"s-4", "c-1b", "2026-06-18", GI},
                                       {"s-5", "c-2a", "2026-06-18", GI}};
    for (size_t n = 3; n <= 4; n++) {
        fh_t **fh = (fh_t **)state;
        /* The grade-2 case never counts for grade 1. */
        struct s_case cases[5];
        memcpy(cases, gi, sizeof gi);
        cases[n] = gi[4];
        json_t *ev = s_run_cases(fh, config, "2026-06-18T12:00:00+08:00", cases, n + 1);
        json_t *cl = s_of_type(ev, "health.cluster.suspected");
        assert_int_equal(json_array_size(cl), n == 4 ? 1 : 0);
        if (n == 4) {
            const json_t *d = json_object_get(json_array_get(cl, 0), "data");
            assert_string_equal(s_str(d, "scope"), "grade");
            assert_string_equal(s_str(d, "grade"), "1");
            assert_int_equal(sc_json_int(d, "cases", 0), 4);
        }
        json_decref(cl);
        json_decref(ev);
        fh_destroy(fh);
    }
}

/* Further cases grow an open cluster; they never raise it again, under any rule of its family. */
static void test_cluster_raised_once(void **state)
{
    fh_t *fh = *state = s_new(NULL, "2026-06-16T12:00:00+08:00");
    for (int i = 1; i <= 3; i++) {
        char s[16];
        snprintf(s, sizeof s, "s-%d", i);
        s_absent(fh, s, "c-1a", "2026-06-15", "illness", FEVER);
    }
    json_t *ev = fh_take_emitted(fh);
    assert_int_equal(fh_count(ev, "health.cluster.suspected"), 1);
    json_decref(ev);
    /* Two more the next day: 5 in 3 days (class_3days) and 2 that day — still one cluster. */
    s_absent(fh, "s-4", "c-1a", "2026-06-16", "illness", FEVER);
    s_absent(fh, "s-5", "c-1a", "2026-06-16", "illness", FEVER);
    /* An update of a counted case counts it once. */
    s_absent(fh, "s-5", "c-1a", "2026-06-16", "illness", FEVER ",\"note\":\"again\"");
    ev = fh_take_emitted(fh);
    assert_int_equal(fh_count(ev, "health.cluster.suspected"), 0);
    json_decref(ev);
    int rc;
    json_t *q = fh_query(fh, "{\"cmd\":\"query\",\"what\":\"clusters\",\"school\":\"sch-1\"}", &rc);
    assert_int_equal(rc, 0);
    json_t *cls = json_object_get(q, "clusters");
    assert_int_equal(json_array_size(cls), 1);
    const json_t *c = json_array_get(cls, 0);
    assert_int_equal(sc_json_int(c, "cases", 0), 5);
    assert_string_equal(s_str(c, "first_date"), "2026-06-15");
    assert_string_equal(s_str(c, "last_date"), "2026-06-16");
    assert_int_equal(json_array_size(json_object_get(c, "students")), 5);
    json_decref(q);

    /* Quiet for 7 days after its last case, it closes; a new outbreak is a new alert. */
    assert_int_equal(fh_advance_to(fh, T("2026-06-24T00:00:00+08:00")), 0);
    s_assert_sql(fh, "SELECT (closed_at IS NOT NULL)::text FROM health.clusters", NULL, "true");
    for (int i = 6; i <= 8; i++) {
        char s[16];
        snprintf(s, sizeof s, "s-%d", i);
        s_absent(fh, s, "c-1a", "2026-06-24", "illness", FEVER);
    }
    ev = fh_take_emitted(fh);
    assert_int_equal(fh_count(ev, "health.cluster.suspected"), 1);
    json_decref(ev);
}

/* A school-wide cluster inhibits the class-level alerts of its family inside it. */
static void test_cluster_inhibition(void **state)
{
    fh_t *fh = *state = s_new(NULL, "2026-06-18T12:00:00+08:00");
    static const struct s_case ili[] = {
        {"s-1", "c-1a", "2026-06-12", ILI}, {"s-2", "c-1b", "2026-06-12", ILI},
        {"s-3", "c-2a", "2026-06-15", ILI}, {"s-4", "c-2b", "2026-06-15", ILI},
        {"s-5", "c-3a", "2026-06-16", ILI}, {"s-6", "c-1a", "2026-06-16", ILI},
        {"s-7", "c-1b", "2026-06-17", ILI}, {"s-8", "c-2a", "2026-06-17", ILI},
        {"s-9", "c-2b", "2026-06-18", ILI}, {"s-10", "c-3a", "2026-06-18", ILI}};
    for (size_t i = 0; i < N(ili); i++)
        s_absent(fh, ili[i].student, ili[i].klass, ili[i].date, "illness", ili[i].more);
    json_t *ev = fh_take_emitted(fh);
    assert_int_equal(fh_count(ev, "health.cluster.suspected"), 1);
    json_decref(ev);
    /* Three ILI cases in one class the same day: class_day is met but inhibited. */
    s_absent(fh, "s-11", "c-2b", "2026-06-18", "illness", ILI);
    s_absent(fh, "s-12", "c-2b", "2026-06-18", "illness", ILI);
    ev = fh_take_emitted(fh);
    assert_int_equal(fh_count(ev, "health.cluster.suspected"), 0);
    json_decref(ev);
    s_assert_sql(fh,
                 "SELECT c.rule || '|' || c.alerted::text || '|' || c.cases || '|' || s.rule"
                 " FROM health.clusters c JOIN health.clusters s ON s.id = c.inhibited_by"
                 " WHERE c.scope = 'class'",
                 NULL, "class_day|false|3|ili_school");
    /* The school cluster took the new cases too. */
    s_assert_sql(fh, "SELECT cases::text FROM health.clusters WHERE scope = 'school'", NULL, "12");
    /* A different family in the same class is not inhibited. */
    s_absent(fh, "s-13", "c-2b", "2026-06-18", "illness", GI);
    s_absent(fh, "s-14", "c-2b", "2026-06-18", "illness", GI);
    s_absent(fh, "s-15", "c-2b", "2026-06-18", "illness", GI);
    ev = fh_take_emitted(fh);
    json_t *cl = s_of_type(ev, "health.cluster.suspected");
    assert_int_equal(json_array_size(cl), 1);
    assert_string_equal(s_str(json_object_get(json_array_get(cl, 0), "data"), "syndrome"),
                        "gastrointestinal");
    json_decref(cl);
    json_decref(ev);
}

/* A suspected infectious case is raised at once, once per disease. */
static void test_suspected_case(void **state)
{
    fh_t *fh = *state = s_new(NULL, "2026-06-15T09:00:00+08:00");
    s_absent(fh, "s-1", "c-1a", "2026-06-15", "illness",
             ",\"symptoms\":[\"rash\",\"fever\"],\"suspected_disease\":\"measles\"");
    json_t *ev = fh_take_emitted(fh);
    json_t *c = s_of_type(ev, "health.case.suspected");
    assert_int_equal(json_array_size(c), 1);
    const json_t *d = json_object_get(json_array_get(c, 0), "data");
    assert_string_equal(s_str(d, "student"), "s-1");
    assert_string_equal(s_str(d, "class"), "c-1a");
    assert_string_equal(s_str(d, "date"), "2026-06-15");
    assert_string_equal(s_str(d, "disease"), "measles");
    json_decref(c);
    json_decref(ev);
    /* The same report again, then an update without the disease: nothing new. */
    s_absent(fh, "s-1", "c-1a", "2026-06-15", "illness",
             ",\"symptoms\":[\"rash\",\"fever\"],\"suspected_disease\":\"measles\"");
    s_absent(fh, "s-1", "c-1a", "2026-06-15", "illness", ",\"onset\":\"2026-06-14\"");
    ev = fh_take_emitted(fh);
    assert_int_equal(fh_count(ev, "health.case.suspected"), 0);
    json_decref(ev);
    /* Tracing finds another disease: that is a new alert. */
    s_traced(fh, "s-1", "2026-06-15", ",\"suspected_disease\":\"rubella\"");
    ev = fh_take_emitted(fh);
    assert_int_equal(fh_count(ev, "health.case.suspected"), 1);
    json_decref(ev);
    /* Personal absences never are cases of anything. */
    s_absent(fh, "s-2", "c-1a", "2026-06-15", "personal", "");
    ev = fh_take_emitted(fh);
    assert_int_equal(json_array_size(ev), 0);
    json_decref(ev);
}

/* ---- EARS through the plugin ---------------------------------------------------- */

/*
 * Backfills 12 school days ending Monday 2026-06-15 with the first 12 values
 * of the reference series of test_health_ears (…, 4, last), 400 pupils a day,
 * and returns the health.aberration events of Monday's 18:00 report.
 */
static json_t *s_ears_run(fh_t **fh, int last)
{
    static const int y[] = {3, 5, 2, 4, 6, 3, 4, 5, 2, 3, 4, 0};
    *fh = s_new(NULL, "2026-06-15T07:00:00+08:00");
    int64_t day;
    sc_date_parse("2026-06-15", &day);
    int64_t days[12];
    for (int k = 11; k >= 0; k--) {
        while (s_weekday(day) > 4)
            day--;
        days[k] = day--;
    }
    for (int k = 0; k < 12; k++) {
        char date[11], student[32], check[160];
        s_date(days[k], date);
        int n = k == 11 ? last : y[k];
        for (int i = 0; i < n; i++) {
            static const char *const classes[] = {"c-1a", "c-1b", "c-2a", "c-2b", "c-3a"};
            snprintf(student, sizeof student, "s-%d-%d", k, i);
            s_absent(*fh, student, classes[i % 5], date, "illness", ",\"diagnosis\":\"x\"");
        }
        snprintf(check, sizeof check,
                 "{\"date\":\"%s\",\"class\":\"c-1a\",\"present\":%d,\"absent\":%d}", date, 400 - n,
                 n);
        assert_int_equal(s_send(*fh, "health.morning_check", check), 0);
    }
    json_decref(fh_take_emitted(*fh));
    assert_int_equal(fh_advance_to(*fh, T("2026-06-15T18:00:00+08:00")), 0);
    json_t *ev = fh_take_emitted(*fh);
    json_t *ab = s_of_type(ev, "health.aberration");
    assert_int_equal(fh_count(ev, "health.report.daily"), 1);
    json_decref(ev);
    return ab;
}

static const json_t *s_find_ab(const json_t *ab, const char *measure, const char *alg)
{
    size_t i;
    const json_t *e;
    json_array_foreach(ab, i, e)
    {
        const json_t *d = json_object_get(e, "data");
        if (strcmp(s_str(d, "measure"), measure) == 0 && strcmp(s_str(d, "algorithm"), alg) == 0)
            return d;
    }
    return NULL;
}

static void test_ears_aberration(void **state)
{
    fh_t **fh = (fh_t **)state;
    /* 9 breaks every bound (earsC: C1 8.014, C2 8.337; C3 statistic 2.53 > 1.96). */
    json_t *ab = s_ears_run(fh, 9);
    static const char *const algs[] = {"C1", "C2", "C3"};
    for (size_t a = 0; a < 3; a++)
        for (int m = 0; m < 2; m++)
            if (!s_find_ab(ab, m ? "rate" : "count", algs[a]))
                fail_msg("no %s aberration for %s", algs[a], m ? "rate" : "count");
    assert_int_equal(json_array_size(ab), 6);
    const json_t *c1 = s_find_ab(ab, "count", "C1");
    assert_string_equal(s_str(c1, "date"), "2026-06-15");
    assert_true(sc_json_num(c1, "observed", 0) == 9.0);
    assert_true(fabs(sc_json_num(c1, "expected", 0) - 27.0 / 7.0) < 1e-9);
    assert_true(fabs(sc_json_num(c1, "upper", 0) - 8.014078294464) < 1e-9);
    const json_t *c2 = s_find_ab(ab, "count", "C2");
    assert_true(fabs(sc_json_num(c2, "upper", 0) - 8.337355083201) < 1e-9);
    const json_t *c3 = s_find_ab(ab, "count", "C3");
    assert_true(fabs(sc_json_num(c3, "statistic", 0) - 2.533168928140) < 1e-9);
    const json_t *r1 = s_find_ab(ab, "rate", "C1");
    assert_true(fabs(sc_json_num(r1, "observed", 0) - 9.0 / 400.0) < 1e-12);
    assert_true(fabs(sc_json_num(r1, "upper", 0) - 8.014078294464 / 400.0) < 1e-9);
    json_decref(ab);
    s_assert_sql(*fh, "SELECT count(*)::text FROM health.ears WHERE alarm", NULL, "6");
    fh_destroy(fh);

    /* 8 breaks none of them (C3: 1.86 < 1.96); the results are still kept. */
    ab = s_ears_run(fh, 8);
    assert_int_equal(json_array_size(ab), 0);
    json_decref(ab);
    s_assert_sql(*fh,
                 "SELECT count(*)::text || '/' || count(*) FILTER (WHERE alarm)::text"
                 " FROM health.ears WHERE date = '2026-06-15'",
                 NULL, "6/0");
}

/* ---- reports -------------------------------------------------------------------- */

static void test_daily_report(void **state)
{
    fh_t *fh = *state = s_new(NULL, "2026-06-15T07:30:00+08:00");
    assert_int_equal(s_send(fh, "health.morning_check",
                            "{\"date\":\"2026-06-15\",\"class\":\"c-1a\",\"present\":38,"
                            "\"absent\":3,\"symptomatic\":1}"),
                     0);
    s_absent(fh, "s-1", "c-1a", "2026-06-15", "illness", ",\"symptoms\":[\"fever\",\"cough\"]");
    s_absent(fh, "s-2", "c-1a", "2026-06-15", "personal", "");
    s_absent(fh, "s-3", "c-2a", "2026-06-15", "illness",
             ",\"symptoms\":[\"diarrhea\"],\"diagnosis\":\"gastroenteritis\"");
    json_decref(fh_take_emitted(fh));

    assert_int_equal(fh_advance_to(fh, T("2026-06-15T17:59:59+08:00")), 0);
    json_t *ev = fh_take_emitted(fh);
    assert_int_equal(fh_count(ev, "health.report.daily"), 0);
    json_decref(ev);

    assert_int_equal(fh_advance_to(fh, T("2026-06-15T18:00:00+08:00")), 0);
    ev = fh_take_emitted(fh);
    json_t *rep = s_of_type(ev, "health.report.daily");
    assert_int_equal(json_array_size(rep), 1);
    const json_t *r = json_array_get(rep, 0);
    assert_string_equal(s_str(r, "occurred_at"), "2026-06-15T10:00:00Z");
    assert_string_equal(s_str(r, "school"), "sch-1");
    const json_t *d = json_object_get(r, "data");
    assert_string_equal(s_str(d, "date"), "2026-06-15");
    assert_int_equal(sc_json_int(d, "absences", 0), 3);
    assert_int_equal(sc_json_int(json_object_get(d, "by_reason"), "illness", 0), 2);
    assert_int_equal(sc_json_int(json_object_get(d, "by_reason"), "personal", 0), 1);
    assert_int_equal(sc_json_int(json_object_get(d, "by_syndrome"), "respiratory", 0), 1);
    assert_int_equal(sc_json_int(json_object_get(d, "by_syndrome"), "gastrointestinal", 0), 1);
    const json_t *un = json_object_get(d, "untraced");
    assert_int_equal(json_array_size(un), 1);
    assert_string_equal(s_str(json_array_get(un, 0), "student"), "s-1");
    assert_true(json_is_true(json_object_get(json_array_get(un, 0), "overdue")));
    const json_t *bc = json_object_get(d, "by_class");
    assert_int_equal(json_array_size(bc), 2);
    const json_t *c1a = json_array_get(bc, 0);
    assert_string_equal(s_str(c1a, "class"), "c-1a");
    assert_int_equal(sc_json_int(c1a, "absences", 0), 2);
    assert_int_equal(sc_json_int(json_object_get(c1a, "morning_check"), "present", 0), 38);
    assert_int_equal(sc_json_int(json_object_get(d, "morning_checks"), "unregistered", 0), 0);
    /* The report does not carry every pupil's details; the day query does. */
    assert_null(json_object_get(d, "absent"));
    json_decref(rep);

    /* The district roll-up, with the school that sent nothing. */
    json_t *dr = s_of_type(ev, "health.report.district");
    assert_int_equal(json_array_size(dr), 1);
    assert_string_equal(s_str(json_array_get(dr, 0), "district"), "d-1");
    const json_t *schools =
        json_object_get(json_object_get(json_array_get(dr, 0), "data"), "schools");
    assert_int_equal(json_array_size(schools), 2);
    assert_string_equal(s_str(json_array_get(schools, 0), "school"), "sch-1");
    assert_int_equal(sc_json_int(json_array_get(schools, 0), "absences", 0), 3);
    assert_int_equal(sc_json_int(json_array_get(schools, 0), "untraced", 0), 1);
    assert_string_equal(s_str(json_array_get(schools, 1), "school"), "sch-2");
    assert_true(json_is_false(json_object_get(json_array_get(schools, 1), "checked")));
    json_decref(dr);
    json_decref(ev);

    /* A jump to Sunday night: Tuesday to Friday reported, the weekend not. */
    assert_int_equal(fh_advance_to(fh, T("2026-06-21T23:00:00+08:00")), 0);
    ev = fh_take_emitted(fh);
    rep = s_of_type(ev, "health.report.daily");
    assert_int_equal(json_array_size(rep), 4);
    static const char *const dates[] = {"2026-06-16", "2026-06-17", "2026-06-18", "2026-06-19"};
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(s_str(json_object_get(json_array_get(rep, i), "data"), "date"),
                            dates[i]);
    assert_int_equal(fh_count(ev, "health.report.district"), 4);
    json_decref(rep);
    json_decref(ev);
}

static void test_report_time_config(void **state)
{
    fh_t *fh = *state = s_new("{\"report_time\":\"16:30\",\"school_days\":[1,2,3,4,5,6]}",
                              "2026-06-20T07:30:00+08:00"); /* a Saturday */
    s_absent(fh, "s-1", "c-1a", "2026-06-20", "illness", ",\"diagnosis\":\"x\"");
    assert_int_equal(fh_advance_to(fh, T("2026-06-20T16:30:00+08:00")), 0);
    json_t *ev = fh_take_emitted(fh);
    assert_int_equal(fh_count(ev, "health.report.daily"), 1);
    json_decref(ev);
}

/* ---- retention ------------------------------------------------------------------- */

static void test_retention(void **state)
{
    static const struct {
        const char *config;
        const char *old_row; /* what is left of the old absence */
        const char *checks;  /* morning checks left */
    } rows[] = {
        {"{\"retention\":\"30d\"}", "1|(null)|(null)|c-1a|fever", "2"},
        {"{\"retention\":\"30d\",\"retention_mode\":\"delete\"}", "(no row)", "1"},
    };
    for (size_t r = 0; r < N(rows); r++) {
        fh_t *fh = *state = s_new(rows[r].config, "2026-06-15T07:00:00+08:00");
        s_absent(fh, "s-old", "c-1a", "2026-05-01", "illness",
                 ",\"symptoms\":[\"fever\"],\"diagnosis\":\"flu\",\"note\":\"x\"");
        s_absent(fh, "s-new", "c-1a", "2026-06-10", "illness", ",\"diagnosis\":\"flu\"");
        assert_int_equal(s_send(fh, "health.morning_check",
                                "{\"date\":\"2026-05-01\",\"class\":\"c-1a\",\"present\":30,"
                                "\"absent\":1,\"note\":\"t-1 on duty\"}"),
                         0);
        assert_int_equal(s_send(fh, "health.morning_check",
                                "{\"date\":\"2026-06-10\",\"class\":\"c-1a\",\"present\":30,"
                                "\"absent\":1}"),
                         0);
        /* Nothing before the job's time (03:00 the next night). */
        assert_int_equal(fh_advance_to(fh, T("2026-06-16T02:59:00+08:00")), 0);
        s_assert_sql(fh, "SELECT count(*)::text FROM health.retention_runs", NULL, "0");
        assert_int_equal(fh_advance_to(fh, T("2026-06-16T03:00:00+08:00")), 0);
        s_assert_sql(fh,
                     "SELECT mode || '|' || absences || '|' || cutoff::text"
                     " FROM health.retention_runs",
                     NULL, r == 0 ? "anonymise|1|2026-05-17" : "delete|1|2026-05-17");
        s_assert_sql(fh,
                     "SELECT count(*)::text || '|' || coalesce(min(student), '(null)') || '|'"
                     " || coalesce(min(diagnosis), '(null)') || '|' || min(class) || '|'"
                     " || min(array_to_string(symptoms, ','))"
                     " FROM health.absences WHERE date = '2026-05-01' HAVING count(*) > 0",
                     NULL, rows[r].old_row);
        s_assert_sql(fh,
                     "SELECT student || '|' || diagnosis FROM health.absences"
                     " WHERE date = '2026-06-10'",
                     NULL, "s-new|flu");
        s_assert_sql(fh, "SELECT count(*)::text FROM health.morning_checks", NULL, rows[r].checks);
        s_assert_sql(fh, "SELECT count(*)::text FROM health.morning_checks WHERE note IS NOT NULL",
                     NULL, "0");
        /* Run again the next night: nothing more to do, and it says so. */
        assert_int_equal(fh_advance_to(fh, T("2026-06-17T03:00:00+08:00")), 0);
        s_assert_sql(fh,
                     "SELECT count(*)::text || '|' || min(absences) FROM health.retention_runs"
                     " WHERE ran_at > '2026-06-16T12:00:00Z'",
                     NULL, "1|0");
        fh_destroy((fh_t **)state);
    }
}

/* ---- queries ---------------------------------------------------------------------- */

static json_t *s_query(fh_t *fh, const char *req, int want_rc)
{
    int rc;
    json_t *q = fh_query(fh, req, &rc);
    if (rc != want_rc)
        fail_msg("%s: rc %d, want %d", req, rc, want_rc);
    assert_non_null(q);
    return q;
}

static void test_queries(void **state)
{
    fh_t *fh = *state = s_new(NULL, "2026-06-16T09:00:00+08:00");
    assert_int_equal(s_send(fh, "health.morning_check",
                            "{\"date\":\"2026-06-16\",\"class\":\"c-1a\",\"present\":38,"
                            "\"absent\":2}"),
                     0);
    s_absent(fh, "s-1", "c-1a", "2026-06-16", "illness", ",\"symptoms\":[\"fever\"]");
    s_absent(fh, "s-2", "c-1a", "2026-06-16", "personal", "");
    s_absent(fh, "s-3", "c-1a", "2026-06-10", "illness", ",\"diagnosis\":\"flu\"");
    s_absent(fh, "s-4", "c-1b", "2026-06-16", "illness", ",\"diagnosis\":\"flu\"");

    /* A school's day: who, why, untraced (today by default). */
    json_t *q = s_query(fh, "{\"cmd\":\"query\",\"what\":\"day\",\"school\":\"sch-1\"}", 0);
    assert_string_equal(s_str(q, "date"), "2026-06-16");
    assert_int_equal(json_array_size(json_object_get(q, "absent")), 3);
    const json_t *a0 = json_array_get(json_object_get(q, "absent"), 0);
    assert_string_equal(s_str(a0, "student"), "s-1");
    assert_string_equal(s_str(a0, "reason"), "illness");
    assert_int_equal(json_array_size(json_object_get(q, "untraced")), 1);
    json_decref(q);

    /* A class's last 14 days. */
    q = s_query(
        fh, "{\"cmd\":\"query\",\"what\":\"class\",\"school\":\"sch-1\",\"class\":\"c-1a\"}", 0);
    assert_string_equal(s_str(q, "from"), "2026-06-03");
    assert_string_equal(s_str(q, "to"), "2026-06-16");
    const json_t *days = json_object_get(q, "days");
    assert_int_equal(json_array_size(days), 14);
    assert_int_equal(json_array_size(json_object_get(json_array_get(days, 7), "absences")), 1);
    assert_string_equal(s_str(json_array_get(days, 7), "date"), "2026-06-10");
    assert_int_equal(json_array_size(json_object_get(json_array_get(days, 13), "absences")), 2);
    assert_int_equal(
        sc_json_int(json_object_get(json_array_get(days, 13), "morning_check"), "present", 0), 38);
    json_decref(q);

    /* The district's day, school by school. */
    q = s_query(fh, "{\"cmd\":\"query\",\"what\":\"district_day\",\"district\":\"d-1\"}", 0);
    assert_int_equal(json_array_size(json_object_get(q, "schools")), 2);
    assert_int_equal(sc_json_int(json_object_get(q, "totals"), "absences", 0), 3);
    json_decref(q);

    /* The ledger, in pages of two rows across sections. */
    const char *next = NULL;
    char req[512];
    int pages = 0;
    size_t rows = 0, absences = 0;
    json_t *prev = NULL;
    do {
        snprintf(req, sizeof req,
                 "{\"cmd\":\"query\",\"what\":\"ledger\",\"school\":\"sch-1\","
                 "\"from\":\"2026-06-01\",\"to\":\"2026-06-30\",\"limit\":2%s%s%s}",
                 next ? ",\"after\":\"" : "", next ? next : "", next ? "\"" : "");
        json_decref(prev);
        prev = q = s_query(fh, req, 0);
        size_t i;
        const json_t *s;
        size_t page_rows = 0;
        json_array_foreach(json_object_get(q, "sections"), i, s)
        {
            assert_non_null(s_str(s, "title_zh"));
            page_rows += json_array_size(json_object_get(s, "rows"));
            if (strcmp(s_str(s, "key"), "health_absences") == 0)
                absences += json_array_size(json_object_get(s, "rows"));
        }
        assert_true(page_rows <= 2);
        rows += page_rows;
        next = s_str(q, "next");
        pages++;
    } while (next && pages < 10);
    json_decref(prev);
    assert_int_equal(absences, 4);
    assert_int_equal(rows, 5); /* 1 morning check + 4 absences */
    assert_int_equal(pages, 3);

    /* Year-end figures. */
    q = s_query(fh,
                "{\"cmd\":\"query\",\"what\":\"figures\",\"school\":\"sch-1\","
                "\"from\":\"2026-01-01\",\"to\":\"2026-12-31\"}",
                0);
    assert_int_equal(sc_json_int(q, "absences", -1), 4);
    assert_int_equal(sc_json_int(q, "illness_absences", -1), 3);
    assert_int_equal(sc_json_int(q, "to_trace", -1), 1);
    assert_int_equal(sc_json_int(q, "morning_checks", -1), 1);
    json_decref(q);

    /* Bad requests. */
    q = s_query(fh, "{\"cmd\":\"query\",\"what\":\"gossip\"}", -EINVAL);
    assert_non_null(strstr(s_str(q, "error"), "what: must be one of"));
    json_decref(q);
    q = s_query(fh, "{\"cmd\":\"query\",\"what\":\"ledger\",\"school\":\"sch-1\"}", -EINVAL);
    assert_string_equal(s_str(q, "error"), "from: required");
    json_decref(q);
    q = s_query(
        fh,
        "{\"cmd\":\"query\",\"what\":\"ledger\",\"school\":\"sch-1\",\"from\":\"2026-06-01\","
        "\"to\":\"2026-06-30\",\"after\":\"garbage\"}",
        -EINVAL);
    json_decref(q);
}

/* ---- config ------------------------------------------------------------------------ */

/* ---- a batch is handled as its events one by one ---------------------------------------- */

/* Everything the plugin keeps, as text, for comparing two runs (new string). */
static char *s_tables(fh_t *fh)
{
    return s_sql(fh,
                 "SELECT concat_ws(E'\\n',"
                 " (SELECT json_agg(a ORDER BY a.id)::text FROM health.absences a),"
                 " (SELECT json_agg(s ORDER BY s.school)::text FROM health.schools s),"
                 " (SELECT json_agg(d ORDER BY d.district)::text FROM health.districts d),"
                 " (SELECT json_agg(m ORDER BY m.school, m.class)::text"
                 "    FROM health.morning_checks m),"
                 " (SELECT json_agg(c ORDER BY c.id)::text FROM health.clusters c),"
                 " (SELECT json_agg(k ORDER BY k.cluster, k.absence)::text"
                 "    FROM health.cluster_cases k))",
                 NULL);
}

/*
 * The daemon hands the plugin many events in one transaction, and personal absences wait
 * to be written together: the tables and the events raised must be those of the same
 * events handled one at a time, in the same order — a cluster counted by the absence that
 * completes it, a pupil's second report of a day merged with the first, a rejection and
 * the morning check and tracing in between.
 */
/*
 * A batch left what its events one by one left: the same events raised and the same tables.
 * Frees all four.
 */
static void s_assert_same(json_t *raised_one, char *tables_one, json_t *raised_batch,
                          char *tables_batch)
{
    char *a = json_dumps(raised_one, JSON_COMPACT | JSON_SORT_KEYS);
    char *b = json_dumps(raised_batch, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(a, b);
    assert_string_equal(tables_one, tables_batch);
    free(a);
    free(b);
    free(tables_one);
    free(tables_batch);
    json_decref(raised_one);
    json_decref(raised_batch);
}

static void test_batch_as_one_by_one(void **state)
{
    static const char *const data[][3] = {
        {"health.absence.reported", "sch-1",
         "{\"student\":\"st-2\",\"class\":\"c-1a\",\"date\":\"2026-03-02\","
         "\"reason\":\"illness\",\"symptoms\":[\"fever\",\"headache\"]}"},
        {"health.absence.reported", "sch-1",
         "{\"student\":\"st-3\",\"class\":\"c-1a\",\"date\":\"2026-02-27\","
         "\"reason\":\"personal\",\"suspected_disease\":\"influenza\",\"note\":\"away\"}"},
        /* A rejection: st-3's case is raised before it. */
        {"health.absence.reported", "sch-1",
         "{\"student\":\"st-5\",\"class\":\"c-1b\",\"date\":\"2026-03-09\","
         "\"reason\":\"personal\"}"},
        {"health.absence.reported", "sch-1",
         "{\"student\":\"st-4\",\"class\":\"c-1a\",\"date\":\"2026-03-02\","
         "\"reason\":\"illness\",\"symptoms\":[\"fever\"]}"},
        /* Cases of another school wait with it; a second one of that school does not. */
        {"health.absence.reported", "sch-2",
         "{\"student\":\"st-20\",\"class\":\"c-9\",\"date\":\"2026-03-02\","
         "\"reason\":\"illness\",\"symptoms\":[\"fever\"]}"},
        {"health.absence.reported", "sch-2",
         "{\"student\":\"st-21\",\"class\":\"c-9\",\"date\":\"2026-03-02\","
         "\"reason\":\"unknown\",\"symptoms\":[\"fever\",\"other\"]}"},
        /* st-1 waits, then turns illness: the third fever case of the class that day. */
        {"health.absence.reported", "sch-1",
         "{\"student\":\"st-1\",\"class\":\"c-1a\",\"date\":\"2026-03-02\","
         "\"reason\":\"personal\"}"},
        {"health.absence.reported", "sch-1",
         "{\"student\":\"st-1\",\"class\":\"c-1a\",\"date\":\"2026-03-02\","
         "\"reason\":\"illness\",\"symptoms\":[\"fever\"],\"onset\":\"2026-03-01\"}"},
        /* st-2 turns personal: counted after the cluster st-1 completes, not before. */
        {"health.absence.reported", "sch-1",
         "{\"student\":\"st-2\",\"class\":\"c-1a\",\"date\":\"2026-03-02\","
         "\"reason\":\"personal\"}"},
        /* st-6 twice, both personal: the second waits for the first. */
        {"health.absence.reported", "sch-1",
         "{\"student\":\"st-6\",\"class\":\"c-1b\",\"date\":\"2026-03-02\","
         "\"reason\":\"personal\"}"},
        {"health.absence.reported", "sch-1",
         "{\"student\":\"st-6\",\"class\":\"c-1b\",\"date\":\"2026-03-02\","
         "\"reason\":\"personal\",\"note\":\"family visit\",\"seen_doctor\":false}"},
        {"health.absence.reported", "sch-2",
         "{\"student\":\"st-7\",\"class\":\"c-2a\",\"date\":\"2026-03-02\","
         "\"reason\":\"personal\"}"},
        {"health.morning_check", "sch-1",
         "{\"date\":\"2026-03-02\",\"class\":\"c-1a\",\"present\":30,\"absent\":3}"},
        {"health.absence.reported", "sch-1",
         "{\"student\":\"st-8\",\"class\":\"c-1a\",\"date\":\"2026-03-02\","
         "\"reason\":\"personal\",\"symptoms\":null,\"suspected_disease\":\"measles\"}"},
        /* Tracing finds the absence still waiting before it. */
        {"health.absence.traced", "sch-1",
         "{\"student\":\"st-8\",\"date\":\"2026-03-02\",\"diagnosis\":\"measles\","
         "\"by\":\"doc-1\"}"},
        {"health.absence.reported", "sch-1",
         "{\"student\":\"st-9\",\"class\":\"c-1a\",\"date\":\"2026-03-02\","
         "\"reason\":\"personal\"}"},
        /* The third fever case of sch-2's class: counted at the batch's end. */
        {"health.absence.reported", "sch-2",
         "{\"student\":\"st-22\",\"class\":\"c-9\",\"date\":\"2026-03-02\","
         "\"reason\":\"illness\",\"symptoms\":[\"fever\"]}"},
    };
    char envs[N(data)][1024];
    const char *p[N(data)];
    for (size_t i = 0; i < N(data); i++) {
        snprintf(envs[i], sizeof envs[i],
                 "{\"type\":\"%s\",\"school\":\"%s\",\"district\":\"d-1\",\"source\":\"test\","
                 "\"id\":\"e-%zu\",\"actor\":\"doc-1\",\"data\":%s}",
                 data[i][0], data[i][1], i, data[i][2]);
        p[i] = envs[i];
    }
    (void)state;

    fh_t *fh = s_new(NULL, "2026-03-02T09:00:00+08:00");
    for (size_t i = 0; i < N(data); i++)
        assert_int_equal(fh_handle(fh, p[i]), 0);
    json_t *raised_one = fh_take_emitted(fh);
    char *tables_one = s_tables(fh);
    fh_destroy(&fh);

    fh = s_new(NULL, "2026-03-02T09:00:00+08:00");
    assert_int_equal(fh_handle_batch(fh, p, N(data), true), 0);
    json_t *raised_batch = fh_take_emitted(fh);
    char *tables_batch = s_tables(fh);
    fh_destroy(&fh);

    /* Not an empty comparison: the cluster, the case, the rejection are all there. */
    assert_int_equal(fh_count(raised_one, "health.cluster.suspected"), 2);
    assert_int_equal(fh_count(raised_one, "health.case.suspected"), 2);
    assert_int_equal(fh_count(raised_one, "health.rejected"), 1);
    assert_non_null(strstr(tables_one, "\"student\":\"st-8\""));
    assert_non_null(strstr(tables_one, "\"note\":\"family visit\""));
    s_assert_same(raised_one, tables_one, raised_batch, tables_batch);

    /* A batch rolled back leaves nothing waiting for the next. */
    fh = s_new(NULL, "2026-03-02T09:00:00+08:00");
    assert_int_equal(fh_handle_batch(fh, p, 1, false), -ECANCELED);
    assert_int_equal(fh_handle_batch(fh, p + 9, 1, true), 0);
    s_assert_sql(fh, "SELECT string_agg(student, ',' ORDER BY student) FROM health.absences", NULL,
                 "st-6");
    fh_destroy(&fh);
}

/*
 * Which absences of a batch go in one statement (rows one statement writes share its command
 * id, cmin): personal ones and cases no rule counts ("other" fits no syndrome) all wait
 * together; a case a rule counts ("fever") waits with them, and the next absence of its
 * school that a rule counts is written after that case's clusters were looked for.
 */
static void test_batch_splits_only_where_a_count_depends_on_it(void **state)
{
    (void)state;
    static const char *const data[] = {
        "\"student\":\"st-1\",\"reason\":\"illness\",\"symptoms\":[\"other\"],"
        "\"diagnosis\":\"cold\"",
        "\"student\":\"st-2\",\"reason\":\"personal\"",
        "\"student\":\"st-3\",\"reason\":\"illness\",\"symptoms\":[\"other\"]",
        "\"student\":\"st-4\",\"reason\":\"illness\",\"symptoms\":[\"fever\"]",
        "\"student\":\"st-5\",\"reason\":\"personal\"",
        "\"student\":\"st-6\",\"reason\":\"illness\",\"symptoms\":[\"fever\"]",
    };
    char envs[N(data)][512];
    const char *p[N(data)];
    for (size_t i = 0; i < N(data); i++) {
        snprintf(envs[i], sizeof envs[i],
                 "{\"type\":\"health.absence.reported\",\"school\":\"sch-1\",\"source\":"
                 "\"test\",\"id\":\"e-%zu\",\"actor\":\"doc-1\",\"data\":{\"class\":\"c-1a\","
                 "\"date\":\"2026-03-02\",%s}}",
                 i, data[i]);
        p[i] = envs[i];
    }
    fh_t *fh = s_new(NULL, "2026-03-02T09:00:00+08:00");
    assert_int_equal(fh_handle_batch(fh, p, N(data), true), 0);
    s_assert_sql(fh,
                 "SELECT string_agg(student, ',' ORDER BY student)"
                 " FROM health.absences GROUP BY cmin::text ORDER BY min(student) LIMIT 1",
                 NULL, "st-1,st-2,st-3,st-4,st-5");
    s_assert_sql(fh, "SELECT count(DISTINCT cmin::text) FROM health.absences", NULL, "2");
    fh_destroy(&fh);
}

/*
 * How many absences each ha_reported statement is given (ha_flush_window), for a batch of n
 * whose statements stop early every `every` rows (1: every row is a counted case of one
 * school; 0: never). Returns the rows given in all; *statements counts the statements.
 */
static size_t s_given_total(size_t n, size_t every, size_t *statements)
{
    size_t done = 0, given = 0, written = 0, total = 0;
    *statements = 0;
    while (done < n) {
        given = ha_flush_window(given, written, n - done);
        assert_true(given >= 1 && given <= n - done);
        /* The statement writes up to the next row that must wait for those before it. */
        size_t next_cut = every ? (done / every + 1) * every : n;
        written = next_cut - done < given ? next_cut - done : given;
        done += written;
        total += given;
        ++*statements;
    }
    return total;
}

/* Every row is sent a bounded number of times, however the batch's statements stop. */
static void test_flush_window(void **state)
{
    (void)state;
    size_t statements;
    /* Nothing to wait for: one statement, every row once. */
    assert_int_equal(s_given_total(1000, 0, &statements), 1000);
    assert_int_equal(statements, 1);
    /* An outbreak: a statement per case, as before, but each given a handful of rows after
     * the first, not all the rest (500 500 rows for 1000 cases). */
    assert_true(s_given_total(1000, 1, &statements) <= 1000 + 999 * HA_FLUSH_WINDOW_MIN);
    assert_int_equal(statements, 1000);
    /* Cases every 50 rows: each row given about three times. */
    assert_true(s_given_total(1000, 50, &statements) <= 3 * 1000);
    assert_int_equal(statements, 20);
    /* A dense stretch and then none: the window grows back, a few statements more. */
    assert_int_equal(ha_flush_window(0, 0, 40), 40);
    assert_int_equal(ha_flush_window(40, 1, 39), HA_FLUSH_WINDOW_MIN);
    assert_int_equal(ha_flush_window(HA_FLUSH_WINDOW_MIN, HA_FLUSH_WINDOW_MIN, 1000),
                     2 * HA_FLUSH_WINDOW_MIN);
    assert_int_equal(ha_flush_window(100, 30, 1000), 60);
    assert_int_equal(ha_flush_window(100, 30, 7), 7);
}

/*
 * An outbreak's morning in one batch: 40 fever cases of one school's class (each waits for
 * the one before it, so 40 statements) among personal absences, then one of another school.
 * The batch leaves what one event at a time leaves, and raises the same.
 */
static void test_outbreak_batch_as_one_by_one(void **state)
{
    (void)state;
    enum { S_CASES = 40, S_ROWS = 3 * S_CASES + 1 };
    char envs[S_ROWS][512];
    const char *p[S_ROWS];
    for (size_t i = 0; i < S_ROWS; i++) {
        const char *school = i == S_ROWS - 1 ? "sch-2" : "sch-1";
        const char *what = i % 3 == 0 || i == S_ROWS - 1
                               ? "\"reason\":\"illness\",\"symptoms\":[\"fever\"]"
                               : "\"reason\":\"personal\"";
        snprintf(envs[i], sizeof envs[i],
                 "{\"type\":\"health.absence.reported\",\"school\":\"%s\",\"district\":\"d-1\","
                 "\"source\":\"test\",\"id\":\"e-%zu\",\"actor\":\"doc-1\",\"data\":{"
                 "\"student\":\"st-%03zu\",\"class\":\"c-1a\",\"date\":\"2026-03-02\",%s}}",
                 school, i, i, what);
        p[i] = envs[i];
    }
    fh_t *fh = s_new(NULL, "2026-03-02T09:00:00+08:00");
    for (size_t i = 0; i < S_ROWS; i++)
        assert_int_equal(fh_handle(fh, p[i]), 0);
    json_t *raised_one = fh_take_emitted(fh);
    char *tables_one = s_tables(fh);
    fh_destroy(&fh);

    fh = s_new(NULL, "2026-03-02T09:00:00+08:00");
    assert_int_equal(fh_handle_batch(fh, p, S_ROWS, true), 0);
    json_t *raised_batch = fh_take_emitted(fh);
    char *tables_batch = s_tables(fh);
    s_assert_sql(fh, "SELECT count(*) FROM health.absences", NULL, "121");
    s_assert_sql(fh, "SELECT count(DISTINCT cmin::text) FROM health.absences", NULL, "40");
    fh_destroy(&fh);

    assert_true(fh_count(raised_one, "health.cluster.suspected") >= 1);
    s_assert_same(raised_one, tables_one, raised_batch, tables_batch);
}

static void test_config_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"trace_cutoff\":\"25:00\"}",
        "{\"report_time\":\"6pm\"}",
        "{\"school_days\":[0]}",
        "{\"school_days\":[]}",
        "{\"school_days\":[1,1]}",
        "{\"cluster_rules\":[{\"rule\":\"x\",\"scope\":\"class\",\"syndrome\":\"flu\","
        "\"cases\":3,\"window_days\":1}]}",
        "{\"cluster_rules\":[{\"rule\":\"x\",\"scope\":\"room\",\"syndrome\":\"*\","
        "\"cases\":3,\"window_days\":1}]}",
        "{\"cluster_rules\":[{\"rule\":\"x\",\"scope\":\"class\",\"cases\":3,\"window_days\":1}]}",
        "{\"cluster_rules\":[{\"rule\":\"x\",\"scope\":\"class\",\"syndrome\":\"*\","
        "\"cases\":0,\"window_days\":1}]}",
        "{\"ears_methods\":[\"C4\"]}",
        "{\"ears_alpha\":0}",
        "{\"ears_baseline\":2}",
        "{\"retention_mode\":\"shred\"}",
        "{\"retention\":\"1h\"}",
        "{\"no_such_key\":1}",
    };
    for (size_t i = 0; i < N(bad); i++) {
        fh_t *fh = fh_new(s_so(), bad[i], T("2026-06-15T08:00:00+08:00"));
        if (fh) {
            fh_destroy(&fh);
            fail_msg("accepted config %s", bad[i]);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_validation_fixture, s_teardown),
        cmocka_unit_test(test_batch_as_one_by_one),
        cmocka_unit_test(test_batch_splits_only_where_a_count_depends_on_it),
        cmocka_unit_test(test_flush_window),
        cmocka_unit_test(test_outbreak_batch_as_one_by_one),
        cmocka_unit_test_teardown(test_types, s_teardown),
        cmocka_unit_test_teardown(test_text_kept_exactly, s_teardown),
        cmocka_unit_test_teardown(test_syndromes_stored, s_teardown),
        cmocka_unit_test_teardown(test_future_dates_rejected, s_teardown),
        cmocka_unit_test_teardown(test_traced_unknown_absence_rejected, s_teardown),
        cmocka_unit_test_teardown(test_tracing_deadlines, s_teardown),
        cmocka_unit_test_teardown(test_update_traces, s_teardown),
        cmocka_unit_test_teardown(test_cluster_rules, s_teardown),
        cmocka_unit_test_teardown(test_cluster_grade_rule, s_teardown),
        cmocka_unit_test_teardown(test_cluster_raised_once, s_teardown),
        cmocka_unit_test_teardown(test_cluster_inhibition, s_teardown),
        cmocka_unit_test_teardown(test_suspected_case, s_teardown),
        cmocka_unit_test_teardown(test_ears_aberration, s_teardown),
        cmocka_unit_test_teardown(test_daily_report, s_teardown),
        cmocka_unit_test_teardown(test_report_time_config, s_teardown),
        cmocka_unit_test_teardown(test_retention, s_teardown),
        cmocka_unit_test_teardown(test_queries, s_teardown),
        cmocka_unit_test(test_config_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
