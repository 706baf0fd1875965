/* Unit tests: hazard_tracker against the fake host: state machine, deadlines, queries. */
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

#define N(a) (sizeof(a) / sizeof((a)[0]))

static sc_time_t T(const char *s)
{
    sc_time_t t = 0;
    if (sc_time_parse(s, &t) < 0)
        fail_msg("bad time in test: %s", s);
    return t;
}

static const char *s_so(void)
{
    static char path[1024];
    const char *b = getenv("SC_BUILD");
    snprintf(path, sizeof path, "%s/plugins/hazard_tracker.so", b ? b : "build");
    return path;
}

static const char *s_fixture_path(const char *name)
{
    static char path[1024];
    const char *top = getenv("SC_TOP");
    snprintf(path, sizeof path, "%s/tests/fixtures/hazard_tracker/%s", top ? top : ".", name);
    return path;
}

/* 2026-06-15 is a Monday; 09:00 in Shanghai is 01:00 UTC. */
#define START "2026-06-15T09:00:00+08:00"

/* A fake host with three schools of one district and one school elsewhere. */
static fh_t *s_new(const char *config)
{
    fh_t *fh = fh_new(s_so(), config, T(START));
    assert_non_null(fh);
    fh_add_school(fh, "{\"school\":\"sch-001\",\"name\":\"East Primary\",\"district\":\"d-01\","
                      "\"timezone\":\"Asia/Shanghai\"}");
    fh_add_school(fh, "{\"school\":\"sch-002\",\"name\":\"West Primary\",\"district\":\"d-01\"}");
    fh_add_school(fh, "{\"school\":\"sch-003\",\"name\":\"North Primary\",\"district\":\"d-01\"}");
    fh_add_school(fh, "{\"school\":\"sch-uk\",\"name\":\"London School\",\"district\":\"d-09\","
                      "\"timezone\":\"Europe/London\"}");
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

/*
 * Sends one hazard event: type "hazard.<kind>" at `school`, data {"hazard": code, <extra>}.
 * Returns handle()'s return value.
 */
static int s_send_at(fh_t *fh, const char *school, const char *kind, const char *code,
                     const char *extra)
{
    char env[4096];
    snprintf(env, sizeof env,
             "{\"type\":\"hazard.%s\",\"school\":\"%s\",\"source\":\"test\",\"actor\":\"t-9\","
             "\"data\":{\"hazard\":\"%s\"%s%s}}",
             kind, school, code, extra && *extra ? "," : "", extra ? extra : "");
    return fh_handle(fh, env);
}

static void s_send(fh_t *fh, const char *kind, const char *code, const char *extra)
{
    assert_int_equal(s_send_at(fh, "sch-001", kind, code, extra), 0);
}

#define REPORT "\"title\":\"loose handrail\",\"risk\":\"general\",\"location\":\"stair B\""
#define REPORT_MAJOR "\"title\":\"cracked wall\",\"risk\":\"major\",\"category\":\"building\""
#define ASSIGN "\"assignee\":\"t-2\""
#define RECTIFY "\"by\":\"t-2\",\"measures\":\"bolted\""
#define PASS "\"by\":\"t-3\",\"passed\":true"
#define FAIL "\"by\":\"t-3\",\"passed\":false"
#define SELF "\"by\":\"t-2\",\"passed\":true"
#define WITHDRAW "\"by\":\"t-1\",\"reason\":\"reported twice\""
#define COMMIT "\"responsible\":\"p-1\""

/* One SQL value as text into a static buffer ("" for NULL or no row). */
static const char *s_sql(fh_t *fh, const char *sql, const char *school, const char *code)
{
    static char buf[8192];
    const char *p[] = {school, code};
    int rc;
    PGresult *res = sc_pq_exec(fh_db(fh), sql, 2, p, &rc);
    if (!res)
        fail_msg("%s: %s", sql, PQerrorMessage(fh_db(fh)));
    snprintf(buf, sizeof buf, "%s", PQntuples(res) ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    return buf;
}

static const char *s_state(fh_t *fh, const char *code)
{
    return s_sql(fh, "SELECT state FROM hazard.hazards WHERE school = $1 AND hazard = $2",
                 "sch-001", code);
}

/* The row and its history, to show a refused event left the ledger as it was. */
static char *s_snapshot(fh_t *fh, const char *code)
{
    return strdup(s_sql(fh,
                        "SELECT coalesce((SELECT to_jsonb(h)::text FROM hazard.hazards h"
                        "   WHERE school = $1 AND hazard = $2), 'none') || '/' ||"
                        " (SELECT count(*) FROM hazard.history WHERE school = $1 AND hazard = $2)",
                        "sch-001", code));
}

static int s_history_count(fh_t *fh, const char *code)
{
    return atoi(s_sql(fh, "SELECT count(*) FROM hazard.history WHERE school = $1 AND hazard = $2",
                      "sch-001", code));
}

/* The rule of the only hazard.rejected in `emitted`, NULL when there is none. */
static const char *s_rule(const json_t *emitted)
{
    const json_t *r = fh_find(emitted, "hazard.rejected");
    if (fh_count(emitted, "hazard.rejected") > 1)
        fail_msg("more than one hazard.rejected");
    return r ? sc_json_str(json_object_get(r, "data"), "rule") : NULL;
}

static json_t *s_query(fh_t *fh, const char *req, int want_rc)
{
    int rc;
    json_t *reply = fh_query(fh, req, &rc);
    if (rc != want_rc) {
        char *s = reply ? json_dumps(reply, 0) : NULL;
        fail_msg("query %s: rc %d (want %d): %s", req, rc, want_rc, s ? s : "(no reply)");
    }
    assert_non_null(reply);
    return reply;
}

/* ---- validators ----------------------------------------------------------- */

static void test_validators_refuse(void **state)
{
    fh_t *fh = *state;
    json_error_t jerr;
    json_t *cases = json_load_file(s_fixture_path("invalid.json"), 0, &jerr);
    if (!cases)
        fail_msg("invalid.json: %s", jerr.text);
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c)
    {
        json_t *env =
            json_pack("{s:O, s:s, s:s, s:O}", "type", json_object_get(c, "type"), "school",
                      "sch-001", "source", "test", "data", json_object_get(c, "data"));
        char *text = json_dumps(env, 0), detail[512] = "";
        int rc = fh_validate(fh, text, detail, sizeof detail);
        if (rc != -EINVAL || strcmp(detail, sc_json_str(c, "detail")) != 0)
            fail_msg("case %zu (%s): rc %d, detail \"%s\", want \"%s\"", i, text, rc, detail,
                     sc_json_str(c, "detail"));
        free(text);
        json_decref(env);
    }
    json_decref(cases);
}

static void test_validators_accept(void **state)
{
    fh_t *fh = *state;
    json_error_t jerr;
    json_t *cases = json_load_file(s_fixture_path("valid.json"), 0, &jerr);
    if (!cases)
        fail_msg("valid.json: %s", jerr.text);
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c)
    {
        json_t *env =
            json_pack("{s:O, s:s, s:s, s:O}", "type", json_object_get(c, "type"), "school",
                      "sch-001", "source", "test", "data", json_object_get(c, "data"));
        char *text = json_dumps(env, 0), detail[512] = "";
        if (fh_validate(fh, text, detail, sizeof detail) != 0)
            fail_msg("case %zu refused: %s", i, detail);
        free(text);
        json_decref(env);
    }
    json_decref(cases);
}

static void test_emitted_types_refused_from_senders(void **state)
{
    const struct sc_plugin *p = fh_plugin(*state);
    static const char *const emitted[] = {"hazard.overdue", "hazard.reminder", "hazard.rejected",
                                          "hazard.major.reported", "hazard.closed"};
    for (size_t i = 0; i < sizeof emitted / sizeof emitted[0]; i++) {
        bool found = false;
        for (const struct sc_type *t = p->types; t->name; t++)
            if (strcmp(t->name, emitted[i]) == 0) {
                found = true;
                if (!(t->flags & SC_TYPE_EMITTED))
                    fail_msg("%s is not marked SC_TYPE_EMITTED", emitted[i]);
            }
        if (!found)
            fail_msg("%s is not among the owned types", emitted[i]);
    }
}

/* ---- the state machine ------------------------------------------------------ */

/* How to bring a fresh hazard to each state. */
static void s_reach(fh_t *fh, const char *code, const char *st)
{
    if (strcmp(st, "none") == 0)
        return;
    s_send(fh, "reported", code, REPORT);
    if (strcmp(st, "withdrawn") == 0) {
        s_send(fh, "withdrawn", code, WITHDRAW);
        return;
    }
    if (strcmp(st, "reported") == 0)
        return;
    s_send(fh, "assigned", code, ASSIGN);
    if (strcmp(st, "assigned") == 0)
        return;
    s_send(fh, "rectified", code, RECTIFY);
    if (strcmp(st, "rectified") == 0)
        return;
    s_send(fh, "verified", code, PASS);
    assert_string_equal(s_state(fh, code), "closed");
}

static const struct {
    const char *kind;
    const char *extra;
} s_events[] = {
    ['a'] = {"assigned", ASSIGN},
    ['r'] = {"rectified", RECTIFY},
    ['p'] = {"verified", PASS},
    ['f'] = {"verified", FAIL},
    ['s'] = {"verified", SELF},
    ['w'] = {"withdrawn", WITHDRAW},
    ['c'] = {"commitments", COMMIT},
    ['R'] = {"reported", REPORT},
    ['D'] = {"reported", "\"title\":\"another thing\",\"risk\":\"general\""},
};

/*
 * Every event in every state. `then` is the state the hazard must be in
 * afterwards with no rejection ("same" for a no-op that leaves the ledger as
 * it was); `rule` the rejection that must answer it instead.
 */
static const struct {
    const char *from;
    char event;
    const char *then;
    const char *rule;
} s_transitions[] = {
    {"none", 'R', "reported", NULL},         {"none", 'a', NULL, "unknown_hazard"},
    {"none", 'r', NULL, "unknown_hazard"},   {"none", 'p', NULL, "unknown_hazard"},
    {"none", 'f', NULL, "unknown_hazard"},   {"none", 'w', NULL, "unknown_hazard"},
    {"none", 'c', NULL, "unknown_hazard"},

    {"reported", 'R', "same", NULL},         {"reported", 'D', NULL, "duplicate"},
    {"reported", 'a', "assigned", NULL},     {"reported", 'r', NULL, "wrong_state"},
    {"reported", 'p', NULL, "wrong_state"},  {"reported", 'f', NULL, "wrong_state"},
    {"reported", 's', NULL, "wrong_state"},  {"reported", 'w', "withdrawn", NULL},
    {"reported", 'c', "reported", NULL},

    {"assigned", 'R', "same", NULL},         {"assigned", 'D', NULL, "duplicate"},
    {"assigned", 'a', "assigned", NULL},     {"assigned", 'r', "rectified", NULL},
    {"assigned", 'p', NULL, "wrong_state"},  {"assigned", 'f', NULL, "wrong_state"},
    {"assigned", 'w', "withdrawn", NULL},    {"assigned", 'c', "assigned", NULL},

    {"rectified", 'R', "same", NULL},        {"rectified", 'D', NULL, "duplicate"},
    {"rectified", 'a', NULL, "wrong_state"}, {"rectified", 'r', NULL, "wrong_state"},
    {"rectified", 'p', "closed", NULL},      {"rectified", 'f', "assigned", NULL},
    {"rectified", 's', NULL, "same_person"}, {"rectified", 'w', "withdrawn", NULL},
    {"rectified", 'c', "rectified", NULL},

    {"closed", 'R', "same", NULL},           {"closed", 'D', NULL, "duplicate"},
    {"closed", 'a', NULL, "wrong_state"},    {"closed", 'r', NULL, "wrong_state"},
    {"closed", 'p', NULL, "wrong_state"},    {"closed", 'f', NULL, "wrong_state"},
    {"closed", 'w', NULL, "wrong_state"},    {"closed", 'c', NULL, "wrong_state"},

    {"withdrawn", 'R', "same", NULL},        {"withdrawn", 'D', NULL, "duplicate"},
    {"withdrawn", 'a', NULL, "wrong_state"}, {"withdrawn", 'r', NULL, "wrong_state"},
    {"withdrawn", 'p', NULL, "wrong_state"}, {"withdrawn", 'f', NULL, "wrong_state"},
    {"withdrawn", 'w', NULL, "wrong_state"}, {"withdrawn", 'c', NULL, "wrong_state"},
};

static void test_state_machine(void **state)
{
    fh_t *fh = *state;
    for (size_t i = 0; i < sizeof s_transitions / sizeof s_transitions[0]; i++) {
        char code[32];
        snprintf(code, sizeof code, "hz-%zu", i);
        s_reach(fh, code, s_transitions[i].from);
        json_decref(fh_take_emitted(fh));
        char *before = s_snapshot(fh, code);
        int hist = s_history_count(fh, code);

        char e = s_transitions[i].event;
        int rc = s_send_at(fh, "sch-001", s_events[(int)e].kind, code, s_events[(int)e].extra);
        json_t *emitted = fh_take_emitted(fh);
        const char *rule = s_rule(emitted);
        char *after = s_snapshot(fh, code);
        const char *then = s_transitions[i].then;

        if (rc != 0)
            fail_msg("%s + %c: handle returned %d", s_transitions[i].from, e, rc);
        if (s_transitions[i].rule) {
            if (!rule || strcmp(rule, s_transitions[i].rule) != 0)
                fail_msg("%s + %c: want rejection %s, got %s", s_transitions[i].from, e,
                         s_transitions[i].rule, rule ? rule : "none");
            const json_t *d = json_object_get(fh_find(emitted, "hazard.rejected"), "data");
            assert_string_equal(sc_json_str(d, "hazard"), code);
            assert_true(json_integer_value(json_object_get(d, "event")) > 0);
            assert_true(strlen(sc_json_str(d, "reason")) > 0);
            if (strcmp(before, after) != 0)
                fail_msg("%s + %c: refused, yet the ledger changed", s_transitions[i].from, e);
        } else if (strcmp(then, "same") == 0) {
            if (rule)
                fail_msg("%s + %c: identical re-report refused (%s)", s_transitions[i].from, e,
                         rule);
            if (strcmp(before, after) != 0)
                fail_msg("%s + %c: identical re-report changed the ledger", s_transitions[i].from,
                         e);
        } else {
            if (rule)
                fail_msg("%s + %c: refused (%s), want %s", s_transitions[i].from, e, rule, then);
            if (strcmp(s_state(fh, code), then) != 0)
                fail_msg("%s + %c: state %s, want %s", s_transitions[i].from, e, s_state(fh, code),
                         then);
            if (s_history_count(fh, code) != hist + 1)
                fail_msg("%s + %c: %d history rows, want %d", s_transitions[i].from, e,
                         s_history_count(fh, code), hist + 1);
        }
        free(before);
        free(after);
        json_decref(emitted);
    }
}

static void test_rejection_reasons(void **state)
{
    fh_t *fh = *state;
    s_send(fh, "verified", "hz-ghost", PASS);
    json_t *em = fh_take_emitted(fh);
    const json_t *d = json_object_get(fh_find(em, "hazard.rejected"), "data");
    assert_non_null(d);
    assert_string_equal(sc_json_str(d, "reason"), "no hazard hz-ghost at school sch-001");
    assert_string_equal(sc_json_str(d, "type"), "hazard.verified");
    assert_string_equal(sc_json_str(fh_find(em, "hazard.rejected"), "school"), "sch-001");
    json_decref(em);

    s_send(fh, "reported", "hz-1", REPORT);
    s_send(fh, "verified", "hz-1", PASS);
    em = fh_take_emitted(fh);
    d = json_object_get(fh_find(em, "hazard.rejected"), "data");
    assert_string_equal(sc_json_str(d, "reason"),
                        "hazard hz-1 is reported: hazard.verified applies to a hazard that is "
                        "rectified");
    json_decref(em);

    s_send(fh, "assigned", "hz-1", ASSIGN);
    s_send(fh, "rectified", "hz-1", RECTIFY);
    s_send(fh, "verified", "hz-1", SELF);
    em = fh_take_emitted(fh);
    d = json_object_get(fh_find(em, "hazard.rejected"), "data");
    assert_string_equal(sc_json_str(d, "reason"),
                        "hazard hz-1 was rectified by t-2, who cannot also verify it");
    json_decref(em);

    /* A deadline before the event that sets it is refused. */
    s_send(fh, "reported", "hz-2", REPORT);
    s_send(fh, "assigned", "hz-2", ASSIGN ",\"deadline\":\"2026-06-01\"");
    em = fh_take_emitted(fh);
    assert_string_equal(s_rule(em), "deadline_past");
    assert_string_equal(s_state(fh, "hz-2"), "reported");
    json_decref(em);

    /* Data that skipped ingest's validator is refused, not half-applied. */
    s_send(fh, "reported", "hz-3", "\"title\":\"no risk given\"");
    em = fh_take_emitted(fh);
    assert_string_equal(s_rule(em), "invalid");
    assert_string_equal(
        sc_json_str(json_object_get(fh_find(em, "hazard.rejected"), "data"), "reason"),
        "data.risk: required");
    assert_string_equal(s_state(fh, "hz-3"), "");
    json_decref(em);

    /* The same code at another school is another hazard. */
    assert_int_equal(s_send_at(fh, "sch-002", "reported", "hz-1", REPORT), 0);
    em = fh_take_emitted(fh);
    assert_null(s_rule(em));
    json_decref(em);
}

static void test_verifier_may_be_rectifier_when_configured(void **state)
{
    (void)state;
    fh_t *fh = s_new("{\"verifier_must_differ\": false}");
    s_send(fh, "reported", "hz-1", REPORT);
    s_send(fh, "assigned", "hz-1", ASSIGN);
    s_send(fh, "rectified", "hz-1", RECTIFY);
    s_send(fh, "verified", "hz-1", SELF);
    assert_string_equal(s_state(fh, "hz-1"), "closed");
    fh_destroy(&fh);
}

static void test_rereport_same_origin_is_a_noop(void **state)
{
    fh_t *fh = *state;
#define ORIGIN "\"origin\":{\"kind\":\"inspection\",\"task\":\"tk-12\",\"item\":\"item-3\"}"
    s_send(fh, "reported", "insp:tk-12:item-3",
           "\"title\":\"exit chained\",\"risk\":\"general\"," ORIGIN);
    /* The scheduler resends its completion; the note changed, the origin did not. */
    s_send(fh, "reported", "insp:tk-12:item-3",
           "\"title\":\"exit chained (again)\",\"risk\":\"general\"," ORIGIN);
    json_t *em = fh_take_emitted(fh);
    assert_null(s_rule(em));
    json_decref(em);
    assert_int_equal(s_history_count(fh, "insp:tk-12:item-3"), 1);
    assert_string_equal(s_sql(fh, "SELECT title FROM hazard.hazards WHERE school=$1 AND hazard=$2",
                              "sch-001", "insp:tk-12:item-3"),
                        "exit chained");
    /* Another item under the same code is a different report. */
    s_send(fh, "reported", "insp:tk-12:item-3",
           "\"title\":\"exit chained\",\"risk\":\"general\","
           "\"origin\":{\"kind\":\"inspection\",\"task\":\"tk-12\",\"item\":\"item-4\"}");
    em = fh_take_emitted(fh);
    assert_string_equal(s_rule(em), "duplicate");
    json_decref(em);
}

/*
 * What a report records: the hazard's fields from its data (category "other" when not
 * given, no attachments), the data itself, and a history row with what was reported (a
 * location not given as null), the 五落实 given (as text) and the deadline.
 */
static void test_report_records_what_was_reported(void **state)
{
    fh_t *fh = *state;
    s_send(fh, "reported", "hz-1",
           "\"title\":\"cracked wall\",\"risk\":\"major\",\"description\":\"east side\","
           "\"category\":\"building\",\"location\":\"block A\",\"measures\":\"prop it\","
           "\"funds\":1500,\"attachments\":[\"photo-1\"],\"reporter\":\"p-7\","
           "\"deadline\":\"2026-06-20\",\"origin\":{\"task\":\"tk-1\"}");
    s_send(fh, "reported", "hz-2", "\"title\":\"loose tile\",\"risk\":\"general\"");
    assert_string_equal(
        s_sql(fh,
              "SELECT concat_ws('|', title, description, location, category, risk, reporter,"
              " origin, attachments, report_data, deadline_given, c_measures, c_funds)"
              " FROM hazard.hazards WHERE school = $1 AND hazard = $2",
              "sch-001", "hz-1"),
        "cracked wall|east side|block A|building|major|p-7|"
        "{\"kind\": \"inspection\", \"task\": \"tk-1\"}|[\"photo-1\"]|"
        "{\"risk\": \"major\", \"funds\": 1500, \"title\": \"cracked wall\", "
        "\"hazard\": \"hz-1\", \"origin\": {\"task\": \"tk-1\"}, \"category\": \"building\", "
        "\"deadline\": \"2026-06-20\", \"location\": \"block A\", \"measures\": \"prop it\", "
        "\"reporter\": \"p-7\", \"attachments\": [\"photo-1\"], "
        "\"description\": \"east side\"}|t|prop it|1500");
    assert_string_equal(
        s_sql(fh, "SELECT data FROM hazard.history WHERE school = $1 AND hazard = $2", "sch-001",
              "hz-1"),
        "{\"risk\": \"major\", \"funds\": \"1500\", \"title\": \"cracked wall\", \"origin\": "
        "{\"kind\": \"inspection\", \"task\": \"tk-1\"}, \"category\": \"building\", "
        "\"deadline\": \"2026-06-20T15:59:59Z\", \"location\": \"block A\", \"measures\": "
        "\"prop it\", \"deadline_given\": true}");
    assert_string_equal(
        s_sql(fh,
              "SELECT concat_ws('|', category, reporter, attachments, description IS NULL,"
              " location IS NULL, deadline_given) FROM hazard.hazards"
              " WHERE school = $1 AND hazard = $2",
              "sch-001", "hz-2"),
        "other|t-9|[]|t|t|f");
    assert_string_equal(
        s_sql(fh, "SELECT data FROM hazard.history WHERE school = $1 AND hazard = $2", "sch-001",
              "hz-2"),
        "{\"risk\": \"general\", \"title\": \"loose tile\", \"origin\": {\"kind\": "
        "\"person\"}, \"category\": \"other\", \"deadline\": \"2026-06-22T15:59:59Z\", "
        "\"location\": null, \"deadline_given\": false}");
    /* Text comes back as it was said: quotes, backslashes, control characters, CJK. */
    s_send(fh, "reported", "hz-3",
           "\"title\":\"\\\"松动\\\" 扶手\\t(东)\",\"risk\":\"general\","
           "\"measures\":\"用支架\\\\顶住\\n再报\"");
    assert_string_equal(s_sql(fh,
                              "SELECT title || '|' || c_measures FROM hazard.hazards"
                              " WHERE school = $1 AND hazard = $2",
                              "sch-001", "hz-3"),
                        "\"松动\" 扶手\t(东)|用支架\\顶住\n再报");
}

static void test_history_is_append_only(void **state)
{
    fh_t *fh = *state;
    s_send(fh, "reported", "hz-1", REPORT);
    PGresult *r = PQexec(fh_db(fh), "UPDATE hazard.history SET actor = 'someone-else'");
    assert_int_not_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    r = PQexec(fh_db(fh), "DELETE FROM hazard.history");
    assert_int_not_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    r = PQexec(fh_db(fh), "DELETE FROM hazard.hazards");
    assert_int_not_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    assert_int_equal(s_history_count(fh, "hz-1"), 1);
}

/* ---- deadlines ------------------------------------------------------------- */

static const char *s_deadline(fh_t *fh, const char *school, const char *code)
{
    return s_sql(fh,
                 "SELECT hazard.rfc3339(deadline) FROM hazard.hazards"
                 " WHERE school = $1 AND hazard = $2",
                 school, code);
}

static void test_deadlines(void **state)
{
    fh_t *fh = *state;
    /* Defaults: 7 and 30 days, to the end of that day at the school (Shanghai, +08). */
    s_send(fh, "reported", "hz-g", REPORT);
    assert_string_equal(s_deadline(fh, "sch-001", "hz-g"), "2026-06-22T15:59:59Z");
    s_send(fh, "reported", "hz-m", REPORT_MAJOR);
    assert_string_equal(s_deadline(fh, "sch-001", "hz-m"), "2026-07-15T15:59:59Z");
    /* A date is the end of that day in the school's zone; a time is taken as is. */
    s_send(fh, "reported", "hz-d", REPORT ",\"deadline\":\"2026-06-20\"");
    assert_string_equal(s_deadline(fh, "sch-001", "hz-d"), "2026-06-20T15:59:59Z");
    assert_int_equal(
        s_send_at(fh, "sch-uk", "reported", "hz-d", REPORT ",\"deadline\":\"2026-06-20\""), 0);
    assert_string_equal(s_deadline(fh, "sch-uk", "hz-d"), "2026-06-20T22:59:59Z");
    s_send(fh, "assigned", "hz-g", ASSIGN ",\"deadline\":\"2026-06-19T17:00:00+08:00\"");
    assert_string_equal(s_deadline(fh, "sch-001", "hz-g"), "2026-06-19T09:00:00Z");
    /* A new deadline is a new round. */
    assert_string_equal(s_sql(fh,
                              "SELECT round FROM hazard.hazards WHERE school = $1 AND hazard = $2",
                              "sch-001", "hz-g"),
                        "2");
    /* Assigning without a deadline keeps the one in force. */
    s_send(fh, "assigned", "hz-g", "\"assignee\":\"t-5\"");
    assert_string_equal(s_deadline(fh, "sch-001", "hz-g"), "2026-06-19T09:00:00Z");
    /* Both given: the deadline is the deadline, the time limit the committed one. */
    s_send(fh, "reported", "hz-both",
           REPORT ",\"deadline\":\"2026-06-20\",\"time_limit\":\"2026-06-25\"");
    assert_string_equal(s_deadline(fh, "sch-001", "hz-both"), "2026-06-20T15:59:59Z");
    assert_string_equal(s_sql(fh,
                              "SELECT hazard.rfc3339(c_time_limit) FROM hazard.hazards"
                              " WHERE school = $1 AND hazard = $2",
                              "sch-001", "hz-both"),
                        "2026-06-25T15:59:59Z");
    /* A default deadline is no commitment. */
    assert_string_equal(s_sql(fh,
                              "SELECT coalesce(c_time_limit::text, 'none') FROM hazard.hazards"
                              " WHERE school = $1 AND hazard = $2",
                              "sch-001", "hz-m"),
                        "none");
    /* Late at night local time the local date is what counts (23:30 +08 is 15:30 UTC). */
    fh_set_now(fh, T("2026-06-15T23:30:00+08:00"));
    s_send(fh, "reported", "hz-late", REPORT);
    assert_string_equal(s_deadline(fh, "sch-001", "hz-late"), "2026-06-22T15:59:59Z");
}

static void test_overdue_once_then_reminders(void **state)
{
    fh_t *fh = *state;
    s_send(fh, "reported", "hz-1", REPORT);
    s_send(fh, "assigned", "hz-1", ASSIGN);
    json_decref(fh_take_emitted(fh));

    sc_time_t next;
    assert_int_equal(fh_tick(fh, &next), 0);
    assert_int_equal(next, T("2026-06-22T16:00:00Z")); /* the second after the deadline */

    /* Just before: nothing. */
    assert_int_equal(fh_advance_to(fh, T("2026-06-22T15:59:59Z")), 0);
    json_t *em = fh_take_emitted(fh);
    assert_int_equal(json_array_size(em), 0);
    json_decref(em);

    /* A 30-day jump: the overdue once, then a reminder for each day that passed. */
    assert_int_equal(fh_advance_to(fh, T("2026-07-22T09:00:00+08:00")), 0);
    em = fh_take_emitted(fh);
    assert_int_equal(fh_count(em, "hazard.overdue"), 1);
    const json_t *o = fh_find(em, "hazard.overdue");
    assert_string_equal(sc_json_str(o, "occurred_at"), "2026-06-22T16:00:00Z");
    assert_string_equal(sc_json_str(o, "district"), "d-01");
    const json_t *od = json_object_get(o, "data");
    assert_string_equal(sc_json_str(od, "hazard"), "hz-1");
    assert_string_equal(sc_json_str(od, "deadline"), "2026-06-22T15:59:59Z");
    assert_string_equal(sc_json_str(od, "risk"), "general");
    assert_string_equal(sc_json_str(od, "escalate_to"), "school");
    assert_string_equal(sc_json_str(od, "assignee"), "t-2");
    /* Reminders at 06-23 16:00Z … 07-21 16:00Z: 29 of them, in order, days_overdue 1 … 29. */
    assert_int_equal(fh_count(em, "hazard.reminder"), 29);
    size_t i;
    const json_t *e;
    json_int_t want = 1;
    json_array_foreach(em, i, e)
    {
        if (strcmp(sc_json_str(e, "type"), "hazard.reminder") != 0)
            continue;
        const json_t *d = json_object_get(e, "data");
        assert_int_equal(sc_json_int(d, "days_overdue", -1), want);
        assert_int_equal(sc_json_int(d, "reminder", -1), want);
        assert_int_equal(sc_json_time(e, "occurred_at", 0),
                         T("2026-06-22T16:00:00Z") + want * 86400 * SC_USEC_PER_SEC);
        want++;
    }
    json_decref(em);

    /* Once rectified, nothing more, however long verification takes. */
    s_send(fh, "rectified", "hz-1", RECTIFY);
    assert_int_equal(fh_advance_to(fh, T("2026-08-30T09:00:00+08:00")), 0);
    em = fh_take_emitted(fh);
    assert_int_equal(fh_count(em, "hazard.overdue"), 0);
    assert_int_equal(fh_count(em, "hazard.reminder"), 0);
    json_decref(em);
    assert_int_equal(fh_tick(fh, &next), 0);
    assert_int_equal(next, SC_TIME_NEVER);

    /* The rectification was late, and the history says so. */
    assert_string_equal(s_sql(fh,
                              "SELECT data->>'on_time' FROM hazard.history"
                              " WHERE school = $1 AND hazard = $2 AND action = 'rectified'",
                              "sch-001", "hz-1"),
                        "false");
}

static void test_one_tick_after_a_jump_catches_up_in_order(void **state)
{
    fh_t *fh = *state;
    s_send(fh, "reported", "hz-a", REPORT);                                /* due 06-22 */
    s_send(fh, "reported", "hz-b", REPORT ",\"deadline\":\"2026-06-24\""); /* due 06-24 */
    json_decref(fh_take_emitted(fh));
    /* The system clock jumped (the machine was down): one tick sees five days at once. */
    fh_set_now(fh, T("2026-06-27T09:00:00+08:00"));
    sc_time_t next;
    assert_int_equal(fh_tick(fh, &next), 0);
    json_t *em = fh_take_emitted(fh);
    assert_int_equal(fh_count(em, "hazard.overdue"), 2);
    /* hz-a: reminders 06-23 … 06-26 16:00Z (4); hz-b: 06-25, 06-26 (2). */
    assert_int_equal(fh_count(em, "hazard.reminder"), 6);
    size_t i;
    const json_t *e;
    sc_time_t last = 0;
    json_array_foreach(em, i, e)
    {
        sc_time_t at = sc_json_time(e, "occurred_at", 0);
        assert_true(at >= last);
        assert_true(at <= fh_now(fh));
        last = at;
    }
    json_decref(em);
    assert_int_equal(next, T("2026-06-27T16:00:00Z"));
    /* Ticking again at the same instant raises nothing twice. */
    assert_int_equal(fh_tick(fh, &next), 0);
    em = fh_take_emitted(fh);
    assert_int_equal(json_array_size(em), 0);
    json_decref(em);
}

static void test_no_reminders_when_interval_is_zero(void **state)
{
    (void)state;
    fh_t *fh = s_new("{\"reminder_interval\": 0}");
    s_send(fh, "reported", "hz-1", REPORT);
    assert_int_equal(fh_advance_to(fh, T("2026-07-30T00:00:00Z")), 0);
    json_t *em = fh_take_emitted(fh);
    assert_int_equal(fh_count(em, "hazard.overdue"), 1);
    assert_int_equal(fh_count(em, "hazard.reminder"), 0);
    json_decref(em);
    fh_destroy(&fh);
}

static void test_reminder_interval_from_config(void **state)
{
    (void)state;
    fh_t *fh = s_new("{\"reminder_interval\": \"12h\", \"deadline_days_general\": 1}");
    s_send(fh, "reported", "hz-1", REPORT);
    /* Deadline 06-16 23:59:59 +08; overdue 06-17 00:00 +08; reminders every 12 h. */
    assert_int_equal(fh_advance_to(fh, T("2026-06-18T00:00:00+08:00")), 0);
    json_t *em = fh_take_emitted(fh);
    assert_int_equal(fh_count(em, "hazard.overdue"), 1);
    assert_int_equal(fh_count(em, "hazard.reminder"), 2);
    json_decref(em);
    fh_destroy(&fh);
}

static void test_config_refused(void **state)
{
    (void)state;
    assert_null(fh_new(s_so(), "{\"reminder_interval\": \"30s\"}", T(START)));
    assert_null(fh_new(s_so(), "{\"deadline_days_major\": -1}", T(START)));
    assert_null(fh_new(s_so(), "{\"no_such_key\": 1}", T(START)));
}

static void test_reopen_starts_a_new_deadline(void **state)
{
    fh_t *fh = *state;
    s_send(fh, "reported", "hz-1", REPORT);
    s_send(fh, "assigned", "hz-1", ASSIGN);
    assert_int_equal(fh_advance_to(fh, T("2026-06-23T09:00:00+08:00")), 0); /* overdue */
    s_send(fh, "rectified", "hz-1", RECTIFY);
    fh_set_now(fh, T("2026-06-24T10:00:00+08:00"));
    s_send(fh, "verified", "hz-1", FAIL ",\"note\":\"still loose\"");
    assert_string_equal(s_state(fh, "hz-1"), "assigned");
    /* Seven days from the failed verification, a second round. */
    assert_string_equal(s_deadline(fh, "sch-001", "hz-1"), "2026-07-01T15:59:59Z");
    assert_string_equal(s_sql(fh,
                              "SELECT round FROM hazard.hazards WHERE school = $1 AND hazard = $2",
                              "sch-001", "hz-1"),
                        "2");
    json_decref(fh_take_emitted(fh));
    assert_int_equal(fh_advance_to(fh, T("2026-07-02T09:00:00+08:00")), 0);
    json_t *em = fh_take_emitted(fh);
    assert_int_equal(fh_count(em, "hazard.overdue"), 1);
    const json_t *d = json_object_get(fh_find(em, "hazard.overdue"), "data");
    assert_int_equal(sc_json_int(d, "round", 0), 2);
    json_decref(em);
    /* A failed verification may give the new deadline itself. */
    s_send(fh, "rectified", "hz-1", "\"by\":\"t-4\",\"measures\":\"welded\"");
    s_send(fh, "verified", "hz-1", FAIL ",\"deadline\":\"2026-07-10\"");
    assert_string_equal(s_deadline(fh, "sch-001", "hz-1"), "2026-07-10T15:59:59Z");
    /* And the next rectifier may be verified by the first: only the rectifier is excluded. */
    s_send(fh, "rectified", "hz-1", "\"by\":\"t-3\",\"measures\":\"replaced\"");
    s_send(fh, "verified", "hz-1", "\"by\":\"t-2\",\"passed\":true");
    assert_string_equal(s_state(fh, "hz-1"), "closed");
}

/* ---- major hazards ------------------------------------------------------- */

static void test_major_hazard_commitments(void **state)
{
    fh_t *fh = *state;
    s_send(fh, "reported", "hz-m", REPORT_MAJOR ",\"interim_measures\":\"area fenced off\"");
    json_t *em = fh_take_emitted(fh);
    const json_t *m = fh_find(em, "hazard.major.reported");
    assert_non_null(m);
    assert_string_equal(sc_json_str(m, "school"), "sch-001");
    assert_string_equal(sc_json_str(m, "district"), "d-01");
    const json_t *md = json_object_get(m, "data");
    assert_string_equal(sc_json_str(md, "district"), "d-01");
    assert_string_equal(sc_json_str(md, "school"), "sch-001");
    assert_string_equal(sc_json_str(md, "risk"), "major");
    assert_string_equal(sc_json_str(md, "interim_measures"), "area fenced off");
    assert_int_equal(json_array_size(json_object_get(md, "missing")), 5);
    json_decref(em);

    s_send(fh, "assigned", "hz-m", ASSIGN);
    s_send(fh, "rectified", "hz-m", RECTIFY);
    s_send(fh, "verified", "hz-m", PASS);
    em = fh_take_emitted(fh);
    assert_string_equal(s_rule(em), "commitments_missing");
    assert_string_equal(
        sc_json_str(json_object_get(fh_find(em, "hazard.rejected"), "data"), "reason"),
        "major hazard hz-m cannot be closed: 五落实 missing responsible, funds, time_limit, "
        "emergency_plan");
    json_decref(em);
    assert_string_equal(s_state(fh, "hz-m"), "rectified");

    /* A time limit given after rectification is recorded, and does not move the deadline. */
    const char *deadline = strdup(s_deadline(fh, "sch-001", "hz-m"));
    s_send(fh, "commitments", "hz-m",
           "\"by\":\"p-principal\",\"responsible\":\"p-principal\",\"funds\":20000,"
           "\"time_limit\":\"2026-07-01\"");
    assert_string_equal(s_deadline(fh, "sch-001", "hz-m"), deadline);
    free((void *)deadline);
    s_send(fh, "verified", "hz-m", PASS);
    em = fh_take_emitted(fh);
    assert_string_equal(s_rule(em), "commitments_missing");
    assert_string_equal(
        sc_json_str(json_object_get(fh_find(em, "hazard.rejected"), "data"), "reason"),
        "major hazard hz-m cannot be closed: 五落实 missing emergency_plan");
    json_decref(em);

    s_send(fh, "commitments", "hz-m", "\"emergency_plan\":\"ep-2026-03\"");
    s_send(fh, "verified", "hz-m", PASS);
    em = fh_take_emitted(fh);
    assert_null(s_rule(em));
    const json_t *c = fh_find(em, "hazard.closed");
    assert_non_null(c);
    assert_string_equal(sc_json_str(json_object_get(c, "data"), "outcome"), "closed");
    json_decref(em);
    assert_string_equal(s_state(fh, "hz-m"), "closed");
    assert_string_equal(s_sql(fh,
                              "SELECT c_funds || ' ' || c_measures FROM hazard.hazards"
                              " WHERE school = $1 AND hazard = $2",
                              "sch-001", "hz-m"),
                        "20000 bolted");
}

static void test_major_commitments_at_report_and_overdue_to_district(void **state)
{
    fh_t *fh = *state;
    s_send(fh, "reported", "hz-m",
           REPORT_MAJOR ",\"measures\":\"rebuild wall\",\"responsible\":\"p-1\","
                        "\"funds\":\"district repair fund\",\"emergency_plan\":\"ep-7\","
                        "\"time_limit\":\"2026-06-30\"");
    json_t *em = fh_take_emitted(fh);
    const json_t *md = json_object_get(fh_find(em, "hazard.major.reported"), "data");
    assert_int_equal(json_array_size(json_object_get(md, "missing")), 0);
    /* The time limit is the deadline. */
    assert_string_equal(sc_json_str(md, "deadline"), "2026-06-30T15:59:59Z");
    json_decref(em);
    assert_int_equal(fh_advance_to(fh, T("2026-07-01T09:00:00+08:00")), 0);
    em = fh_take_emitted(fh);
    const json_t *o = fh_find(em, "hazard.overdue");
    assert_non_null(o);
    assert_string_equal(sc_json_str(json_object_get(o, "data"), "risk"), "major");
    assert_string_equal(sc_json_str(json_object_get(o, "data"), "escalate_to"), "district");
    assert_string_equal(sc_json_str(o, "district"), "d-01");
    json_decref(em);
}

static void test_major_not_reported_when_configured_off(void **state)
{
    (void)state;
    fh_t *fh = s_new("{\"report_major_to_district\": false, \"require_commitments\": false}");
    s_send(fh, "reported", "hz-m", REPORT_MAJOR);
    s_send(fh, "assigned", "hz-m", ASSIGN);
    s_send(fh, "rectified", "hz-m", RECTIFY);
    s_send(fh, "verified", "hz-m", PASS);
    json_t *em = fh_take_emitted(fh);
    assert_int_equal(fh_count(em, "hazard.major.reported"), 0);
    assert_null(s_rule(em));
    json_decref(em);
    assert_string_equal(s_state(fh, "hz-m"), "closed");
    fh_destroy(&fh);
}

/* ---- queries -------------------------------------------------------------- */

static void test_query_open(void **state)
{
    fh_t *fh = *state;
    s_send(fh, "reported", "hz-1", REPORT);       /* due 06-22 */
    s_send(fh, "reported", "hz-2", REPORT_MAJOR); /* due 07-15 */
    s_send(fh, "reported", "hz-3", REPORT ",\"category\":\"electrical\"");
    s_send(fh, "withdrawn", "hz-3", WITHDRAW);
    assert_int_equal(s_send_at(fh, "sch-002", "reported", "hz-9", REPORT), 0);
    fh_set_now(fh, T("2026-06-25T09:00:00+08:00"));

    json_t *r = s_query(fh, "{\"what\":\"open\",\"school\":\"sch-001\"}", 0);
    json_t *hz = json_object_get(r, "hazards");
    assert_int_equal(json_array_size(hz), 2);
    const json_t *first = json_array_get(hz, 0);
    assert_string_equal(sc_json_str(first, "hazard"), "hz-1"); /* soonest deadline first */
    assert_int_equal(sc_json_int(first, "age_days", -99), 10);
    assert_int_equal(sc_json_int(first, "days_to_deadline", -99), -3);
    assert_true(sc_json_bool(first, "overdue", false));
    const json_t *second = json_array_get(hz, 1);
    assert_false(sc_json_bool(second, "overdue", true));
    assert_int_equal(json_array_size(json_object_get(second, "missing")), 5);
    assert_true(json_is_null(json_object_get(r, "next")));
    json_decref(r);

    r = s_query(fh, "{\"what\":\"open\",\"district\":\"d-01\"}", 0);
    assert_int_equal(json_array_size(json_object_get(r, "hazards")), 3);
    json_decref(r);
    r = s_query(fh, "{\"what\":\"open\",\"district\":\"d-01\",\"risk\":\"major\"}", 0);
    assert_int_equal(json_array_size(json_object_get(r, "hazards")), 1);
    json_decref(r);
    r = s_query(fh, "{\"what\":\"open\",\"school\":\"sch-001\",\"overdue\":false}", 0);
    assert_int_equal(json_array_size(json_object_get(r, "hazards")), 1);
    json_decref(r);
    r = s_query(fh, "{\"what\":\"open\",\"category\":\"electrical\"}", 0);
    assert_int_equal(json_array_size(json_object_get(r, "hazards")), 0);
    json_decref(r);

    /* Paging: one at a time, following `next`, sees each hazard once. */
    char req[512];
    const char *after = NULL;
    int seen = 0;
    json_t *page = NULL;
    for (;;) {
        snprintf(req, sizeof req, "{\"what\":\"open\",\"district\":\"d-01\",\"limit\":1%s%s%s}",
                 after ? ",\"after\":\"" : "", after ? after : "", after ? "\"" : "");
        json_t *p = s_query(fh, req, 0);
        seen += (int)json_array_size(json_object_get(p, "hazards"));
        json_decref(page);
        page = p;
        after = sc_json_str(p, "next");
        if (!after)
            break;
        assert_true(seen < 10);
    }
    json_decref(page);
    assert_int_equal(seen, 3);

    /* Reported before the directory knew its school: still the district's once it does. */
    assert_int_equal(s_send_at(fh, "sch-new", "reported", "hz-n", REPORT), 0);
    assert_string_equal(s_sql(fh,
                              "SELECT coalesce(district, 'none') FROM hazard.hazards"
                              " WHERE school = $1 AND hazard = $2",
                              "sch-new", "hz-n"),
                        "none");
    fh_add_school(fh, "{\"school\":\"sch-new\",\"name\":\"New School\",\"district\":\"d-01\"}");
    r = s_query(fh, "{\"what\":\"open\",\"district\":\"d-01\"}", 0);
    assert_int_equal(json_array_size(json_object_get(r, "hazards")), 4);
    json_decref(r);
    r = s_query(fh,
                "{\"what\":\"figures\",\"district\":\"d-01\",\"from\":\"2026-06-01\","
                "\"to\":\"2026-06-30\"}",
                0);
    assert_int_equal(
        sc_json_int(json_object_get(json_object_get(r, "schools"), "sch-new"), "found", -1), 1);
    json_decref(r);

    r = s_query(fh, "{\"what\":\"open\",\"risk\":\"high\"}", -EINVAL);
    assert_string_equal(sc_json_str(r, "error"), "risk: must be one of general, major");
    json_decref(r);
    r = s_query(fh, "{\"what\":\"open\",\"after\":\"garbage\"}", -EINVAL);
    assert_string_equal(sc_json_str(r, "error"), "after: not a cursor this query returned");
    json_decref(r);
}

static void test_query_hazard_with_history(void **state)
{
    fh_t *fh = *state;
    s_send(fh, "reported", "hz-1", REPORT ",\"attachments\":[\"photo-1\"]");
    s_send(fh, "assigned", "hz-1", ASSIGN);
    s_send(fh, "rectified", "hz-1", RECTIFY ",\"evidence\":[\"photo-2\"]");
    s_send(fh, "verified", "hz-1", FAIL);
    s_send(fh, "rectified", "hz-1", "\"by\":\"t-2\",\"measures\":\"welded\"");
    s_send(fh, "verified", "hz-1", PASS);
    json_t *r = s_query(fh, "{\"what\":\"hazard\",\"school\":\"sch-001\",\"hazard\":\"hz-1\"}", 0);
    const json_t *h = json_object_get(r, "hazard");
    assert_string_equal(sc_json_str(h, "state"), "closed");
    assert_string_equal(sc_json_str(h, "verified_by"), "t-3");
    assert_string_equal(sc_json_str(h, "measures"), "welded");
    assert_string_equal(json_string_value(json_array_get(json_object_get(h, "attachments"), 0)),
                        "photo-1");
    assert_string_equal(sc_json_str(json_object_get(h, "origin"), "kind"), "person");
    const json_t *hist = json_object_get(r, "history");
    static const char *const actions[] = {"reported", "assigned",  "rectified",
                                          "reopened", "rectified", "verified"};
    assert_int_equal(json_array_size(hist), 6);
    for (size_t i = 0; i < 6; i++) {
        const json_t *row = json_array_get(hist, i);
        assert_string_equal(sc_json_str(row, "action"), actions[i]);
        assert_non_null(sc_json_str(row, "at"));
        assert_true(json_integer_value(json_object_get(row, "event")) > 0);
    }
    assert_string_equal(sc_json_str(json_array_get(hist, 2), "actor"), "t-2");
    assert_string_equal(sc_json_str(json_array_get(hist, 5), "to"), "closed");
    json_decref(r);

    r = s_query(fh, "{\"what\":\"hazard\",\"school\":\"sch-001\",\"hazard\":\"hz-404\"}", -EINVAL);
    assert_string_equal(sc_json_str(r, "error"), "hazard: no hazard hz-404 at school sch-001");
    json_decref(r);
    r = s_query(fh, "{\"what\":\"nonsense\"}", -EINVAL);
    assert_string_equal(sc_json_str(r, "error"),
                        "what: must be one of open, hazard, figures, ledger");
    json_decref(r);
}

/*
 * June at sch-001: hz-1 closed on time after 2 days, hz-2 never rectified,
 * hz-3 withdrawn, hz-4 major and open, hz-7 rectified late (not yet verified);
 * sch-002 has one overdue hazard, sch-003 found nothing. In July hz-4 is
 * assigned, while hz-2 only collects reminders.
 */
static void s_figures_ledger(fh_t *fh)
{
    s_send(fh, "reported", "hz-1", REPORT);
    s_send(fh, "assigned", "hz-1", ASSIGN);
    fh_set_now(fh, T("2026-06-16T09:00:00+08:00"));
    s_send(fh, "rectified", "hz-1", RECTIFY);
    fh_set_now(fh, T("2026-06-17T09:00:00+08:00"));
    s_send(fh, "verified", "hz-1", PASS);
    s_send(fh, "reported", "hz-2", REPORT); /* due 06-24 */
    s_send(fh, "reported", "hz-3", REPORT);
    s_send(fh, "withdrawn", "hz-3", WITHDRAW);
    s_send(fh, "reported", "hz-4", REPORT_MAJOR);
    s_send(fh, "reported", "hz-7", REPORT);
    s_send(fh, "assigned", "hz-7", ASSIGN);
    assert_int_equal(s_send_at(fh, "sch-002", "reported", "hz-5", REPORT), 0);
    assert_int_equal(fh_advance_to(fh, T("2026-06-28T09:00:00+08:00")), 0);
    s_send(fh, "rectified", "hz-7", RECTIFY);
    assert_int_equal(fh_advance_to(fh, T("2026-07-01T09:00:00+08:00")), 0);
    s_send(fh, "assigned", "hz-4", ASSIGN);
}

static void test_query_figures(void **state)
{
    fh_t *fh = *state;
    s_figures_ledger(fh);
    json_t *r = s_query(fh,
                        "{\"what\":\"figures\",\"school\":\"sch-001\",\"from\":\"2026-06-01\","
                        "\"to\":\"2026-06-30\"}",
                        0);
    assert_int_equal(sc_json_int(r, "found", -1), 4);
    assert_int_equal(sc_json_int(r, "major", -1), 1);
    assert_int_equal(sc_json_int(r, "rectified_on_time", -1), 1);
    assert_int_equal(sc_json_int(r, "overdue", -1), 2);
    assert_int_equal(sc_json_int(r, "closed", -1), 1);
    assert_int_equal(sc_json_int(r, "still_open", -1), 3);
    assert_int_equal(sc_json_int(r, "withdrawn", -1), 1);
    assert_true(sc_json_num(r, "mean_days_to_close", -1) == 2.0);
    json_decref(r);

    /* As the period stood at its end: nothing was overdue yet on 06-20. */
    r = s_query(fh,
                "{\"what\":\"figures\",\"school\":\"sch-001\",\"from\":\"2026-06-01\",\"to\":"
                "\"2026-06-20\"}",
                0);
    assert_int_equal(sc_json_int(r, "overdue", -1), 0);
    assert_int_equal(sc_json_int(r, "rectified_on_time", -1), 1);
    assert_int_equal(sc_json_int(r, "still_open", -1), 3);
    json_decref(r);

    r = s_query(fh,
                "{\"what\":\"figures\",\"district\":\"d-01\",\"from\":\"2026-06-01\",\"to\":\"2026-"
                "06-30\"}",
                0);
    assert_int_equal(sc_json_int(r, "found", -1), 5);
    assert_int_equal(sc_json_int(r, "overdue", -1), 3);
    const json_t *schools = json_object_get(r, "schools");
    assert_int_equal(json_object_size(schools), 3);
    assert_int_equal(sc_json_int(json_object_get(schools, "sch-002"), "found", -1), 1);
    assert_int_equal(sc_json_int(json_object_get(schools, "sch-003"), "found", -1), 0);
    assert_true(
        json_is_null(json_object_get(json_object_get(schools, "sch-003"), "mean_days_to_close")));
    json_decref(r);

    r = s_query(fh, "{\"what\":\"figures\",\"from\":\"2026-06-01\",\"to\":\"2026-06-30\"}",
                -EINVAL);
    assert_string_equal(sc_json_str(r, "error"), "school or district: one is required");
    json_decref(r);
    r = s_query(fh,
                "{\"what\":\"figures\",\"school\":\"sch-001\",\"from\":\"2026-06-30\","
                "\"to\":\"2026-06-01\"}",
                -EINVAL);
    assert_string_equal(sc_json_str(r, "error"), "to: must not be before from");
    json_decref(r);
}

static void test_query_ledger(void **state)
{
    fh_t *fh = *state;
    s_figures_ledger(fh);
    json_t *r = s_query(fh,
                        "{\"what\":\"ledger\",\"school\":\"sch-001\",\"from\":\"2026-06-01\","
                        "\"to\":\"2026-06-30\"}",
                        0);
    const json_t *sec = json_array_get(json_object_get(r, "sections"), 0);
    assert_string_equal(sc_json_str(sec, "key"), "hazards");
    assert_string_equal(sc_json_str(sec, "title_zh"), "隐患排查与整改");
    assert_string_equal(sc_json_str(sec, "title_en"), "Hazards and rectification");
    const json_t *cols = json_object_get(sec, "columns");
    const json_t *rows = json_object_get(sec, "rows");
    assert_int_equal(json_array_size(rows), 5);
    const json_t *row = json_array_get(rows, 0);
    assert_int_equal(json_array_size(row), json_array_size(cols));
    assert_string_equal(json_string_value(json_array_get(cols, 0)), "hazard");
    assert_string_equal(json_string_value(json_array_get(row, 0)), "hz-1");
    assert_string_equal(json_string_value(json_array_get(row, 1)), "2026-06-15 09:00");
    assert_string_equal(json_string_value(json_array_get(cols, 15)), "status");
    assert_string_equal(json_string_value(json_array_get(row, 15)), "closed");
    assert_string_equal(json_string_value(json_array_get(cols, 17)), "overdue");
    assert_true(json_is_false(json_array_get(row, 17)));
    /* hz-7, last, was rectified late. */
    assert_string_equal(json_string_value(json_array_get(json_array_get(rows, 4), 0)), "hz-7");
    assert_true(json_is_true(json_array_get(json_array_get(rows, 4), 17)));
    assert_true(json_is_null(json_object_get(r, "next")));
    json_decref(r);

    /* Paging with after/limit returns the same rows in order. */
    r = s_query(fh,
                "{\"what\":\"ledger\",\"school\":\"sch-001\",\"from\":\"2026-06-01\","
                "\"to\":\"2026-06-30\",\"limit\":3}",
                0);
    assert_int_equal(
        json_array_size(json_object_get(json_array_get(json_object_get(r, "sections"), 0), "rows")),
        3);
    char req[512];
    snprintf(req, sizeof req,
             "{\"what\":\"ledger\",\"school\":\"sch-001\",\"from\":\"2026-06-01\","
             "\"to\":\"2026-06-30\",\"limit\":3,\"after\":\"%s\"}",
             sc_json_str(r, "next"));
    json_decref(r);
    r = s_query(fh, req, 0);
    rows = json_object_get(json_array_get(json_object_get(r, "sections"), 0), "rows");
    assert_int_equal(json_array_size(rows), 2);
    assert_string_equal(json_string_value(json_array_get(json_array_get(rows, 0), 0)), "hz-4");
    assert_string_equal(json_string_value(json_array_get(json_array_get(rows, 1), 0)), "hz-7");
    assert_true(json_is_null(json_object_get(r, "next")));
    json_decref(r);

    /* July: hz-4 was assigned; hz-2's reminders alone do not put it in July's ledger. */
    r = s_query(fh,
                "{\"what\":\"ledger\",\"school\":\"sch-001\",\"from\":\"2026-07-01\","
                "\"to\":\"2026-07-31\"}",
                0);
    rows = json_object_get(json_array_get(json_object_get(r, "sections"), 0), "rows");
    assert_int_equal(json_array_size(rows), 1);
    assert_string_equal(json_string_value(json_array_get(json_array_get(rows, 0), 0)), "hz-4");
    assert_string_equal(json_string_value(json_array_get(json_array_get(rows, 0), 8)), "t-2");
    json_decref(r);

    r = s_query(
        fh, "{\"what\":\"ledger\",\"school\":\"sch-001\",\"from\":\"June\",\"to\":\"2026-07-31\"}",
        -EINVAL);
    assert_string_equal(sc_json_str(r, "error"), "from: expected a date YYYY-MM-DD");
    json_decref(r);
}

/* ---- own events come back through the subscription ----------------------- */

static void test_own_events_are_ignored(void **state)
{
    fh_t *fh = *state;
    assert_int_equal(fh_handle(fh, "{\"type\":\"hazard.overdue\",\"school\":\"sch-001\","
                                   "\"source\":\"hazard_tracker\",\"data\":{\"hazard\":\"hz-1\","
                                   "\"deadline\":\"2026-06-22T15:59:59Z\",\"risk\":\"general\"}}"),
                     0);
    json_t *em = fh_take_emitted(fh);
    assert_int_equal(json_array_size(em), 0);
    json_decref(em);
}

/* ---- a batch is handled as its events one by one ---------------------------------------- */

/* The whole ledger as text, for comparing two runs (new string). */
static char *s_ledger(fh_t *fh)
{
    return strdup(s_sql(fh,
                        "SELECT $1 || $2 || concat_ws(E'\n',"
                        " (SELECT json_agg(h ORDER BY h.school, h.hazard)::text"
                        "    FROM hazard.hazards h),"
                        " (SELECT json_agg(x ORDER BY x.seq)::text FROM hazard.history x))",
                        "", ""));
}

/*
 * The daemon hands the plugin many events in one transaction, and reports wait to be
 * written together: the ledger and the events raised must be those of the same events
 * handled one at a time, in the same order — a report assigned in the same batch, a
 * resend, a second report of a taken code, a deadline already past, an event refused
 * between two reports, a major hazard told to the district.
 */
static void test_batch_as_one_by_one(void **state)
{
    (void)state;
    static const char *const evs[][4] = {
        {"sch-001", "reported", "hz-1", REPORT},
        {"sch-001", "reported", "hz-2", REPORT_MAJOR ",\"responsible\":\"p-1\""},
        {"sch-002", "reported", "hz-1", REPORT ",\"deadline\":\"2026-06-20\""},
        /* hz-1 of sch-001 is waiting: it is written before it is assigned. */
        {"sch-001", "assigned", "hz-1", ASSIGN},
        {"sch-001", "reported", "hz-3", REPORT ",\"deadline\":\"2026-06-01\""},
        /* Refused before it is looked at: what waits is written, and raised, first. */
        {"sch-001", "assigned", "hz-9", "\"assignee\":\"\""},
        {"sch-uk", "reported", "hz-4", REPORT_MAJOR},
        /* The same code again, as a resend and as another report. */
        {"sch-uk", "reported", "hz-4", REPORT_MAJOR},
        {"sch-uk", "reported", "hz-4", REPORT},
        {"sch-001", "rectified", "hz-1", RECTIFY},
        {"sch-003", "reported", "hz-5",
         REPORT ",\"origin\":{\"kind\":\"inspection\",\"task\":\"t-77\"},"
                "\"attachments\":[\"https://files.example/p.jpg\"]"},
    };
    char envs[N(evs)][1024];
    const char *p[N(evs)];
    for (size_t i = 0; i < N(evs); i++) {
        snprintf(envs[i], sizeof envs[i],
                 "{\"type\":\"hazard.%s\",\"school\":\"%s\",\"source\":\"test\",\"id\":\"e-%zu\","
                 "\"actor\":\"t-9\",\"data\":{\"hazard\":\"%s\",%s}}",
                 evs[i][1], evs[i][0], i, evs[i][2], evs[i][3]);
        p[i] = envs[i];
    }

    fh_t *fh = s_new(NULL);
    for (size_t i = 0; i < N(evs); i++)
        assert_int_equal(fh_handle(fh, p[i]), 0);
    json_t *raised_one = fh_take_emitted(fh);
    char *ledger_one = s_ledger(fh);
    fh_destroy(&fh);

    fh = s_new(NULL);
    assert_int_equal(fh_handle_batch(fh, p, N(evs), true), 0);
    json_t *raised_batch = fh_take_emitted(fh);
    char *ledger_batch = s_ledger(fh);

    /* Not an empty comparison: what each case calls for is there. */
    assert_int_equal(fh_count(raised_one, "hazard.major.reported"), 2);
    assert_int_equal(fh_count(raised_one, "hazard.rejected"), 3);
    assert_string_equal(s_state(fh, "hz-1"), "rectified");
    char *a = json_dumps(raised_one, JSON_COMPACT | JSON_SORT_KEYS);
    char *b = json_dumps(raised_batch, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(a, b);
    assert_string_equal(ledger_one, ledger_batch);
    free(a);
    free(b);
    free(ledger_one);
    free(ledger_batch);
    json_decref(raised_one);
    json_decref(raised_batch);

    /* A batch rolled back leaves nothing waiting for the next. */
    assert_int_equal(fh_handle_batch(fh, p, 2, false), -ECANCELED);
    fh_destroy(&fh);
    fh = s_new(NULL);
    assert_int_equal(fh_handle_batch(fh, p, 2, false), -ECANCELED);
    assert_int_equal(fh_handle_batch(fh, p + 2, 1, true), 0);
    assert_string_equal(s_sql(fh,
                              "SELECT string_agg(school || '/' || hazard, ',')"
                              " FROM hazard.hazards WHERE $1 = $2",
                              "", ""),
                        "sch-002/hz-1");
    fh_destroy(&fh);
}

int main(void)
{
#define T_(fn) cmocka_unit_test_setup_teardown(fn, s_setup, s_teardown)
    const struct CMUnitTest tests[] = {
        T_(test_validators_refuse),
        T_(test_validators_accept),
        T_(test_emitted_types_refused_from_senders),
        T_(test_state_machine),
        T_(test_rejection_reasons),
        cmocka_unit_test(test_verifier_may_be_rectifier_when_configured),
        T_(test_rereport_same_origin_is_a_noop),
        T_(test_report_records_what_was_reported),
        T_(test_history_is_append_only),
        T_(test_deadlines),
        T_(test_overdue_once_then_reminders),
        T_(test_one_tick_after_a_jump_catches_up_in_order),
        cmocka_unit_test(test_no_reminders_when_interval_is_zero),
        cmocka_unit_test(test_reminder_interval_from_config),
        cmocka_unit_test(test_config_refused),
        T_(test_reopen_starts_a_new_deadline),
        T_(test_major_hazard_commitments),
        T_(test_major_commitments_at_report_and_overdue_to_district),
        cmocka_unit_test(test_major_not_reported_when_configured_off),
        T_(test_query_open),
        T_(test_query_hazard_with_history),
        T_(test_query_figures),
        T_(test_query_ledger),
        T_(test_own_events_are_ignored),
        cmocka_unit_test(test_batch_as_one_by_one),
    };
    return cmocka_run_group_tests_name("hazard_tracker", tests, NULL, NULL);
}
