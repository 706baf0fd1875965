/* Unit tests: inspection_scheduler against the fake host: expansion, tasks, hazards, queries. */
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

static const char *s_so(const char *plugin)
{
    static char path[1024];
    const char *b = getenv("SC_BUILD");
    snprintf(path, sizeof path, "%s/plugins/%s.so", b ? b : "build", plugin);
    return path;
}

/* JSON written with single quotes, for readable literals (no apostrophes in the data). */
static char *J(const char *s)
{
    static char bufs[4][8192];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "%s", s);
    for (char *p = b; *p; p++)
        if (*p == '\'')
            *p = '"';
    return b;
}

static char *s_fixture(const char *name)
{
    char path[1024];
    const char *top = getenv("SC_TOP");
    snprintf(path, sizeof path, "%s/tests/fixtures/inspection_scheduler/%s", top ? top : ".", name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("no fixture %s", path);
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* A Monday: 2026-06-15 07:00 in Shanghai. */
#define START "2026-06-15T07:00:00+08:00"

static fh_t *s_new_at(const char *config, const char *start)
{
    fh_t *fh = fh_new(s_so("inspection_scheduler"), config, T(start));
    assert_non_null(fh);
    fh_add_school(fh, J("{'school':'sch-001','name':'East Primary','district':'d-01',"
                        "'timezone':'Asia/Shanghai'}"));
    fh_add_school(fh, J("{'school':'sch-002','name':'West Primary','district':'d-01'}"));
    fh_add_school(fh, J("{'school':'sch-de','name':'Berlin School','district':'d-02',"
                        "'timezone':'Europe/Berlin'}"));
    fh_add_school(fh, J("{'school':'sch-ny','name':'NY School','district':'d-03',"
                        "'timezone':'America/New_York'}"));
    fh_add_person(fh, J("{'person':'t-1','name':'Wang','roles':['safety_officer'],"
                        "'school':'sch-001'}"));
    fh_add_person(fh, J("{'person':'t-2','name':'Li','roles':['teacher'],'school':'sch-001'}"));
    fh_add_person(fh, J("{'person':'t-3','name':'Zhao','roles':['safety_officer'],"
                        "'school':'sch-002'}"));
    return fh;
}

static fh_t *s_new(const char *config)
{
    return s_new_at(config, START);
}

/* A test's own host (other config or start), destroyed by the teardown even after a failure. */
static fh_t *s_own;
static fh_t *s_own_new(const char *config, const char *start)
{
    fh_destroy(&s_own);
    s_own = s_new_at(config, start ? start : START);
    return s_own;
}

/* Sends an event; scope is "school" or "district". Returns handle()'s value. */
static int s_send(fh_t *fh, const char *type, const char *scope, const char *code, const char *at,
                  const char *data)
{
    char env[8192];
    char when[96] = "";
    if (at)
        snprintf(when, sizeof when, ",\"occurred_at\":\"%s\"", at);
    snprintf(env, sizeof env,
             "{\"type\":\"%s\",\"%s\":\"%s\",\"source\":\"test\",\"actor\":\"t-1\"%s,"
             "\"data\":%s}",
             type, scope, code, when, data);
    return fh_handle(fh, env);
}

static int s_school(fh_t *fh, const char *type, const char *school, const char *data)
{
    return s_send(fh, type, "school", school, NULL, data);
}

/* The fixture templates at sch-001 (and the fire template at sch-002 too). */
static void s_templates(fh_t *fh)
{
    assert_int_equal(fh_handle(fh, s_fixture("template_fire.json")), 0);
    assert_int_equal(fh_handle(fh, s_fixture("template_typhoon.json")), 0);
    assert_int_equal(fh_handle(fh, s_fixture("template_classroom.json")), 0);
    char *t = s_fixture("template_typhoon.json");
    char *p = strstr(t, "sch-001");
    memcpy(p, "sch-002", 7);
    assert_int_equal(fh_handle(fh, t), 0);
}

static json_t *s_query(fh_t *fh, const char *req, int want_rc)
{
    int rc;
    json_t *r = fh_query(fh, req, &rc);
    if (rc != want_rc)
        fail_msg("query %s: rc %d, reply %s", req, rc, r ? json_dumps(r, 0) : "null");
    assert_non_null(r);
    return r;
}

/* The only event of `type` in arr; fails unless there is exactly one. */
static const json_t *s_one(const json_t *arr, const char *type)
{
    if (fh_count(arr, type) != 1)
        fail_msg("%zu events of %s in %s", fh_count(arr, type), type, json_dumps(arr, 0));
    return fh_find(arr, type);
}

static const char *s_data_str(const json_t *ev, const char *key)
{
    return sc_json_str(json_object_get(ev, "data"), key);
}

/* The i-th event of `type` in arr (borrowed), or NULL. */
static const json_t *s_nth(const json_t *arr, const char *type, size_t n)
{
    size_t i;
    const json_t *e;
    json_array_foreach(arr, i,
                       e) if (strcmp(sc_json_str(e, "type"), type) == 0 && n-- == 0) return e;
    return NULL;
}

/* A task's status from the table. */
static char *s_status(fh_t *fh, const char *school, const char *task)
{
    static char out[32];
    const char *p[2] = {school, task};
    PGresult *res =
        PQexecParams(fh_db(fh), "SELECT status FROM inspection.tasks WHERE school=$1 AND task=$2",
                     2, NULL, p, NULL, NULL, 0);
    snprintf(out, sizeof out, "%s", PQntuples(res) ? PQgetvalue(res, 0, 0) : "none");
    PQclear(res);
    return out;
}

static long s_count_sql(fh_t *fh, const char *sql)
{
    PGresult *res = PQexec(fh_db(fh), sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(fh_db(fh)));
    long n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return n;
}

/* ---- occurrence expansion (through the "next" query) -------------------- */

/*
 * Each case: a school (time zone), config, events sent first, a schedule, and the first
 * occurrences after `after`, checked by hand (weekday, DST rules of the zone).
 */
struct exp_case {
    const char *name;
    const char *config;
    const char *school;
    const char *pre[3]; /* whole envelopes */
    const char *schedule;
    const char *after;
    int count;
    const char *want[12]; /* local times with offset, then a NULL */
    const char *rules;    /* comma-separated rule labels, or NULL not to check */
};

static const struct exp_case s_exp_cases[] = {
    {"weekday rule",
     NULL,
     "sch-001",
     {NULL},
     "{'rrule':'FREQ=WEEKLY;BYDAY=MO,WE,FR;BYHOUR=7;BYMINUTE=30','start':'2026-06-15T00:00'}",
     "2026-06-15T00:00:00+08:00",
     4,
     {"2026-06-15T07:30:00+08:00", "2026-06-17T07:30:00+08:00", "2026-06-19T07:30:00+08:00",
      "2026-06-22T07:30:00+08:00"},
     "base,base,base,base"},
    {"first monday of the month",
     NULL,
     "sch-001",
     {NULL},
     "{'rrule':'FREQ=MONTHLY;BYDAY=1MO','start':'2026-01-01T09:00'}",
     "2026-05-15T00:00:00+08:00",
     3,
     {"2026-06-01T09:00:00+08:00", "2026-07-06T09:00:00+08:00", "2026-08-03T09:00:00+08:00"},
     NULL},
    {"fortnightly keeps its phase far from DTSTART",
     NULL,
     "sch-001",
     {NULL},
     "{'rrule':'FREQ=WEEKLY;INTERVAL=2;BYDAY=TU','start':'2026-01-06T09:00'}",
     "2026-06-01T00:00:00+08:00",
     3,
     {"2026-06-09T09:00:00+08:00", "2026-06-23T09:00:00+08:00", "2026-07-07T09:00:00+08:00"},
     NULL},
    {"every 5 hours on weekdays (no skip-ahead)",
     NULL,
     "sch-001",
     {NULL},
     "{'rrule':'FREQ=HOURLY;INTERVAL=5;BYDAY=MO,TU,WE,TH,FR','start':'2026-06-12T08:00'}",
     "2026-06-14T00:00:00+08:00",
     4,
     /* Fri 08 13 18 23, (Sat 04 09 14 19, Sun 00 05 10 15 20 filtered), Mon 01 06 11 16 */
     {"2026-06-15T01:00:00+08:00", "2026-06-15T06:00:00+08:00", "2026-06-15T11:00:00+08:00",
      "2026-06-15T16:00:00+08:00"},
     NULL},
    {"yearly on 1 September",
     NULL,
     "sch-001",
     {NULL},
     "{'rrule':'FREQ=YEARLY;BYMONTH=9;BYMONTHDAY=1','start':'2026-01-01T08:00'}",
     "2026-06-01T00:00:00+08:00",
     2,
     {"2026-09-01T08:00:00+08:00", "2027-09-01T08:00:00+08:00"},
     NULL},
    {"COUNT ends the rule",
     NULL,
     "sch-001",
     {NULL},
     "{'rrule':'FREQ=DAILY;COUNT=3','start':'2026-06-15T08:00'}",
     "2026-06-01T00:00:00+08:00",
     10,
     {"2026-06-15T08:00:00+08:00", "2026-06-16T08:00:00+08:00", "2026-06-17T08:00:00+08:00"},
     NULL},
    {"UNTIL in UTC against local occurrences",
     NULL,
     "sch-001",
     {NULL},
     "{'rrule':'FREQ=DAILY;UNTIL=20260617T000000Z','start':'2026-06-15T09:00'}",
     "2026-06-01T00:00:00+08:00",
     10,
     {"2026-06-15T09:00:00+08:00", "2026-06-16T09:00:00+08:00"},
     NULL},
    {"Berlin: daily 02:30 over the spring gap",
     NULL,
     "sch-de",
     {NULL},
     "{'rrule':'FREQ=DAILY','start':'2026-03-27T02:30'}",
     "2026-03-27T00:00:00+01:00",
     4,
     /* 2026-03-29 02:30 does not exist: the offset before the gap gives 01:30Z = 03:30 CEST */
     {"2026-03-27T02:30:00+01:00", "2026-03-28T02:30:00+01:00", "2026-03-29T03:30:00+02:00",
      "2026-03-30T02:30:00+02:00"},
     NULL},
    {"Berlin: daily 02:30 over the autumn overlap",
     NULL,
     "sch-de",
     {NULL},
     "{'rrule':'FREQ=DAILY','start':'2026-10-24T02:30'}",
     "2026-10-24T00:00:00+02:00",
     3,
     /* 2026-10-25 02:30 happens twice: the first (CEST) is taken */
     {"2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"},
     NULL},
    {"Berlin: hourly through the gap, no instant twice",
     NULL,
     "sch-de",
     {NULL},
     "{'rrule':'FREQ=HOURLY','start':'2026-03-29T00:30'}",
     "2026-03-29T00:00:00+01:00",
     4,
     {"2026-03-29T00:30:00+01:00", "2026-03-29T01:30:00+01:00", "2026-03-29T03:30:00+02:00",
      "2026-03-29T04:30:00+02:00"},
     NULL},
    {"New York: 08:00 stays 08:00 across DST",
     NULL,
     "sch-ny",
     {NULL},
     "{'rrule':'FREQ=WEEKLY;BYDAY=MO;BYHOUR=8;BYMINUTE=0','start':'2026-03-02T00:00'}",
     "2026-03-01T00:00:00-05:00",
     2,
     {"2026-03-02T08:00:00-05:00", "2026-03-09T08:00:00-04:00"},
     NULL},
    {"plum-rain season replaces weekly with daily",
     NULL,
     "sch-001",
     {NULL},
     "{'rrule':'FREQ=WEEKLY;BYDAY=MO','start':'2026-05-01T08:00',"
     "'seasons':[{'season':'plum_rain','rrule':'FREQ=DAILY'}]}",
     "2026-05-24T00:00:00+08:00",
     6,
     {"2026-05-25T08:00:00+08:00", "2026-06-01T08:00:00+08:00", "2026-06-02T08:00:00+08:00",
      "2026-06-03T08:00:00+08:00", "2026-06-04T08:00:00+08:00", "2026-06-05T08:00:00+08:00"},
     "base,plum_rain,plum_rain,plum_rain,plum_rain,plum_rain"},
    {"plum-rain season ends on 31 July",
     NULL,
     "sch-001",
     {NULL},
     "{'rrule':'FREQ=WEEKLY;BYDAY=MO','start':'2026-05-01T08:00',"
     "'seasons':[{'season':'plum_rain','rrule':'FREQ=DAILY'}]}",
     "2026-07-29T00:00:00+08:00",
     5,
     {"2026-07-29T08:00:00+08:00", "2026-07-30T08:00:00+08:00", "2026-07-31T08:00:00+08:00",
      "2026-08-03T08:00:00+08:00", "2026-08-10T08:00:00+08:00"},
     "plum_rain,plum_rain,plum_rain,base,base"},
    {"typhoon season adds Thursdays",
     NULL,
     "sch-001",
     {NULL},
     "{'rrule':'FREQ=WEEKLY;BYDAY=MO','start':'2026-05-01T08:00',"
     "'seasons':[{'season':'typhoon','rrule':'FREQ=WEEKLY;BYDAY=TH','mode':'add'}]}",
     "2026-06-24T00:00:00+08:00",
     5,
     {"2026-06-29T08:00:00+08:00", "2026-07-02T08:00:00+08:00", "2026-07-06T08:00:00+08:00",
      "2026-07-09T08:00:00+08:00", "2026-07-13T08:00:00+08:00"},
     "base,typhoon,base,typhoon,base"},
    {"dated season over the year end",
     NULL,
     "sch-001",
     {NULL},
     "{'rrule':'FREQ=WEEKLY;BYDAY=MO','start':'2026-05-01T08:00',"
     "'seasons':[{'from':'12-01','to':'02-28','rrule':'FREQ=WEEKLY;BYDAY=MO,TH'}]}",
     "2027-02-24T00:00:00+08:00",
     3,
     {"2027-02-25T08:00:00+08:00", "2027-03-01T08:00:00+08:00", "2027-03-08T08:00:00+08:00"},
     "season,base,base"},
    {"exception dates",
     NULL,
     "sch-001",
     {NULL},
     "{'rrule':'FREQ=WEEKLY;BYDAY=MO','start':'2026-06-01T08:00','exdates':['2026-06-22']}",
     "2026-06-14T00:00:00+08:00",
     2,
     {"2026-06-15T08:00:00+08:00", "2026-06-29T08:00:00+08:00"},
     NULL},
    {"district holidays close the school",
     NULL,
     "sch-001",
     {"{'type':'inspection.calendar.upserted','district':'d-01','source':'edu-bureau',"
      "'data':{'calendar':'2026-summer','closed':[{'from':'2026-07-01','to':'2026-08-31',"
      "'reason':'summer vacation'}]}}"},
     "{'rrule':'FREQ=DAILY','start':'2026-06-01T08:00'}",
     "2026-06-29T00:00:00+08:00",
     4,
     {"2026-06-29T08:00:00+08:00", "2026-06-30T08:00:00+08:00", "2026-09-01T08:00:00+08:00",
      "2026-09-02T08:00:00+08:00"},
     NULL},
    {"a schedule may run through holidays",
     NULL,
     "sch-001",
     {"{'type':'inspection.calendar.upserted','district':'d-01','source':'edu-bureau',"
      "'data':{'calendar':'2026-summer','closed':[{'from':'2026-07-01','to':'2026-08-31'}]}}"},
     "{'rrule':'FREQ=DAILY','start':'2026-06-01T08:00','skip_closed':false}",
     "2026-06-29T00:00:00+08:00",
     3,
     {"2026-06-29T08:00:00+08:00", "2026-06-30T08:00:00+08:00", "2026-07-01T08:00:00+08:00"},
     NULL},
    {"a school's own closed day",
     NULL,
     "sch-001",
     {"{'type':'inspection.calendar.upserted','school':'sch-001','source':'office',"
      "'data':{'calendar':'sports-day','closed':[{'from':'2026-06-16'}]}}"},
     "{'rrule':'FREQ=DAILY','start':'2026-06-01T08:00'}",
     "2026-06-15T00:00:00+08:00",
     2,
     {"2026-06-15T08:00:00+08:00", "2026-06-17T08:00:00+08:00"},
     NULL},
    {"district sets this year's plum-rain dates by event",
     NULL,
     "sch-001",
     {"{'type':'inspection.season.upserted','district':'d-01','source':'weather-bureau',"
      "'data':{'season':'plum_rain','from':'2026-06-10','to':'2026-06-20'}}"},
     "{'rrule':'FREQ=WEEKLY;BYDAY=MO','start':'2026-05-01T08:00',"
     "'seasons':[{'season':'plum_rain','rrule':'FREQ=DAILY'}]}",
     "2026-05-31T00:00:00+08:00",
     4,
     {"2026-06-01T08:00:00+08:00", "2026-06-08T08:00:00+08:00", "2026-06-10T08:00:00+08:00",
      "2026-06-11T08:00:00+08:00"},
     "base,base,plum_rain,plum_rain"},
    {"the event's dates are for their year only",
     NULL,
     "sch-001",
     {"{'type':'inspection.season.upserted','district':'d-01','source':'weather-bureau',"
      "'data':{'season':'plum_rain','from':'2026-06-10','to':'2026-06-20'}}"},
     "{'rrule':'FREQ=WEEKLY;BYDAY=MO','start':'2026-05-01T08:00',"
     "'seasons':[{'season':'plum_rain','rrule':'FREQ=DAILY'}]}",
     "2027-05-30T00:00:00+08:00",
     3,
     {"2027-05-31T08:00:00+08:00", "2027-06-01T08:00:00+08:00", "2027-06-02T08:00:00+08:00"},
     "base,plum_rain,plum_rain"},
    {"district season dates from config",
     "{'district_seasons':[{'district':'d-01',"
     "'season':'typhoon','from':'08-01','to':'08-31'}]}",
     "sch-001",
     {NULL},
     "{'rrule':'FREQ=WEEKLY;BYDAY=MO','start':'2026-05-01T08:00',"
     "'seasons':[{'season':'typhoon','rrule':'FREQ=DAILY'}]}",
     "2026-07-26T00:00:00+08:00",
     4,
     {"2026-07-27T08:00:00+08:00", "2026-08-01T08:00:00+08:00", "2026-08-02T08:00:00+08:00",
      "2026-08-03T08:00:00+08:00"},
     "base,typhoon,typhoon,typhoon"},
};

static void test_expansion(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof s_exp_cases / sizeof s_exp_cases[0]; c++) {
        const struct exp_case *k = &s_exp_cases[c];
        fh_t *fh = s_own_new(k->config ? J(k->config) : NULL, NULL);
        char buf[4096];
        s_templates(fh);
        if (strcmp(k->school, "sch-001") != 0) {
            snprintf(buf, sizeof buf,
                     "{\"template\":\"t\",\"title\":\"t\",\"items\":[{\"item\":\"a\","
                     "\"text\":\"a\"}]}");
            assert_int_equal(s_school(fh, "inspection.template.upserted", k->school, buf), 0);
        }
        for (int i = 0; i < 3 && k->pre[i]; i++)
            if (fh_handle(fh, J(k->pre[i])) != 0)
                fail_msg("%s: pre-event refused", k->name);
        /* The schedule: the case's fields plus code, template and role. */
        json_t *data = json_loads(J(k->schedule), 0, NULL);
        assert_non_null(data);
        json_object_set_new(data, "schedule", json_string("s1"));
        json_object_set_new(data, "template",
                            json_string(strcmp(k->school, "sch-001") ? "t" : "fire-monthly"));
        json_object_set_new(data, "assignee_role", json_string("safety_officer"));
        char *d = json_dumps(data, JSON_COMPACT);
        json_decref(data);
        assert_int_equal(s_school(fh, "inspection.schedule.upserted", k->school, d), 0);
        free(d);
        json_t *emitted = fh_take_emitted(fh);
        if (fh_count(emitted, "inspection.rejected"))
            fail_msg("%s: %s", k->name, json_dumps(emitted, 0));
        json_decref(emitted);

        snprintf(buf, sizeof buf,
                 "{\"what\":\"next\",\"school\":\"%s\",\"schedule\":\"s1\",\"after\":\"%s\","
                 "\"count\":%d}",
                 k->school, k->after, k->count);
        json_t *r = s_query(fh, buf, 0);
        const json_t *occ = json_object_get(r, "occurrences");
        size_t want = 0;
        while (want < 12 && k->want[want])
            want++;
        if (json_array_size(occ) != want)
            fail_msg("%s: %zu occurrences, want %zu: %s", k->name, json_array_size(occ), want,
                     json_dumps(occ, 0));
        char rules[512] = "";
        for (size_t i = 0; i < want; i++) {
            const json_t *o = json_array_get(occ, i);
            const char *local = sc_json_str(o, "local");
            if (strcmp(local, k->want[i]) != 0)
                fail_msg("%s: occurrence %zu is %s, want %s", k->name, i, local, k->want[i]);
            /* The UTC instant is the same moment as the local time. */
            assert_true(T(sc_json_str(o, "opens_at")) == T(local));
            snprintf(rules + strlen(rules), sizeof rules - strlen(rules), "%s%s", i ? "," : "",
                     sc_json_str(o, "rule"));
        }
        if (k->rules && strcmp(rules, k->rules) != 0)
            fail_msg("%s: rules %s, want %s", k->name, rules, k->rules);
        json_decref(r);
        fh_destroy(&s_own);
    }
}

/* ---- validation ------------------------------------------------------------ */

struct val_case {
    const char *type;
    const char *data;
    const char *detail; /* NULL: accepted */
};

static const struct val_case s_val_cases[] = {
    {"inspection.schedule.upserted",
     "{'schedule':'s','template':'t','rrule':'FREQ=WEEKLY;BYDAY=MO','assignee_role':'teacher'}",
     NULL},
    {"inspection.schedule.upserted",
     "{'schedule':'s','template':'t','rrule':'RRULE:FREQ=DAILY','assignee':'t-1',"
     "'due_within':'2h','grace':900,'start':'2026-06-01T07:30','exdates':['2026-10-01'],"
     "'seasons':[{'season':'typhoon','rrule':'FREQ=DAILY','mode':'add'},"
     "{'from':'2026-06-10','to':'2026-06-20','rrule':'FREQ=DAILY'}]}",
     NULL},
    {"inspection.schedule.upserted",
     "{'schedule':'s','template':'t','rrule':'FREQ=FOO','assignee_role':'teacher'}",
     "data.rrule: is not an RFC 5545 RRULE"},
    {"inspection.schedule.upserted",
     "{'schedule':'s','template':'t','rrule':'BYDAY=MO','assignee_role':'teacher'}",
     "data.rrule: is not an RFC 5545 RRULE"},
    {"inspection.schedule.upserted",
     "{'schedule':'s','template':'t','rrule':'FREQ=WEEKLY;BYDAY=XX','assignee_role':'teacher'}",
     "data.rrule: is not an RFC 5545 RRULE"},
    {"inspection.schedule.upserted",
     "{'schedule':'s','template':'t','rrule':'FREQ=MINUTELY','assignee_role':'teacher'}",
     "data.rrule: FREQ must be HOURLY or longer"},
    {"inspection.schedule.upserted", "{'schedule':'s','template':'t','rrule':'FREQ=DAILY'}",
     "data.assignee_role: required (or data.assignee)"},
    {"inspection.schedule.upserted", "{'template':'t','rrule':'FREQ=DAILY','assignee':'x'}",
     "data.schedule: required"},
    {"inspection.schedule.upserted",
     "{'schedule':'s','template':'t','rrule':'FREQ=DAILY','assignee':'x','due_within':'soon'}",
     "data.due_within: expected a duration"},
    {"inspection.schedule.upserted",
     "{'schedule':'s','template':'t','rrule':'FREQ=DAILY','assignee':'x','start':'2026-06-01 "
     "08:00'}",
     "data.start: expected a local date-time"},
    {"inspection.schedule.upserted",
     "{'schedule':'s','template':'t','rrule':'FREQ=DAILY','assignee':'x',"
     "'seasons':[{'season':'typhoon','from':'07-01','to':'09-30','rrule':'FREQ=DAILY'}]}",
     "data.seasons[0].season: give a season or from/to, not both"},
    {"inspection.schedule.upserted",
     "{'schedule':'s','template':'t','rrule':'FREQ=DAILY','assignee':'x',"
     "'seasons':[{'from':'06-01','to':'2026-07-01','rrule':'FREQ=DAILY'}]}",
     "data.seasons[0].from: from and to must both be MM-DD"},
    {"inspection.schedule.upserted",
     "{'schedule':'s','template':'t','rrule':'FREQ=DAILY','assignee':'x',"
     "'seasons':[{'season':'typhoon','rrule':'FREQ=SOMETIMES'}]}",
     "data.seasons[0].rrule: is not an RFC 5545 RRULE"},
    {"inspection.schedule.upserted",
     "{'schedule':'s','template':'t','rrule':'FREQ=DAILY','assignee':'x','exdates':['tomorrow']}",
     "data.exdates[0]: expected a date YYYY-MM-DD"},
    {"inspection.schedule.upserted",
     "{'schedule':'s','template':'t','rrule':'FREQ=DAILY','assignee':'x','grase':60}",
     "data.grase: unknown field"},
    {"inspection.template.upserted",
     "{'template':'t','title':'T','items':[{'item':'a','text':'A','category':'fire'}],"
     "'triggers':['typhoon','heat','snow','earthquake','rainstorm']}",
     NULL},
    {"inspection.template.upserted", "{'template':'t','title':'T','items':[]}",
     "data.items: must hold at least one item"},
    {"inspection.template.upserted",
     "{'template':'t','title':'T','items':[{'item':'a','text':'A'},{'item':'a','text':'B'}]}",
     "data.items[1].item: \"a\" appears twice"},
    {"inspection.template.upserted",
     "{'template':'t','title':'T','items':[{'item':'a','text':'A','category':'misc'}]}",
     "data.items[0].category: must be one of"},
    {"inspection.template.upserted",
     "{'template':'t','title':'T','items':[{'item':'a','text':'A'}],'triggers':['volcano']}",
     "data.triggers[0]: must be one of"},
    {"inspection.completed",
     "{'task':'x','inspector':'t-1','results':[{'item':'a','status':'ok'}]}", NULL},
    {"inspection.completed", "{'inspector':'t-1','results':[{'item':'a','status':'ok'}]}",
     "data.task: required (or data.template)"},
    {"inspection.completed", "{'task':'x','results':[{'item':'a','status':'ok'}]}",
     "data.inspector: required"},
    {"inspection.completed", "{'task':'x','inspector':'t-1','results':[]}",
     "data.results: must hold at least one result"},
    {"inspection.completed",
     "{'task':'x','inspector':'t-1','results':[{'item':'a','status':'broken'}]}",
     "data.results[0].status: must be one of ok, fail, na"},
    {"inspection.completed",
     "{'task':'x','inspector':'t-1','results':[{'item':'a','status':'ok'},"
     "{'item':'a','status':'fail'}]}",
     "data.results[1].item: \"a\" appears twice"},
    {"weather.alert", "{'kind':'typhoon','level':'orange','headline':'Typhoon No. 5'}", NULL},
    {"weather.alert", "{'kind':'volcano','level':'red'}", "data.kind: must be one of"},
    {"weather.alert", "{'kind':'typhoon','level':'purple'}",
     "data.level: must be one of blue, yellow, orange, red"},
    {"inspection.season.upserted", "{'season':'plum_rain','from':'06-12','to':'07-10'}", NULL},
    {"inspection.season.upserted", "{'season':'plum_rain','from':'06-31','to':'07-10'}",
     "data.from: from and to must both be MM-DD"},
    {"inspection.calendar.upserted",
     "{'calendar':'c','closed':[{'from':'2026-10-01','to':'2026-10-07','reason':'National Day'}]}",
     NULL},
    {"inspection.calendar.upserted",
     "{'calendar':'c','closed':[{'from':'2026-10-07','to':'2026-10-01'}]}",
     "data.closed[0].to: must not be before from"},
};

static void test_validation(void **state)
{
    fh_t *fh = *state;
    for (size_t i = 0; i < sizeof s_val_cases / sizeof s_val_cases[0]; i++) {
        const struct val_case *c = &s_val_cases[i];
        char env[4096], detail[512] = "";
        snprintf(env, sizeof env,
                 "{\"type\":\"%s\",\"school\":\"sch-001\",\"source\":\"test\",\"data\":%s}",
                 c->type, J(c->data));
        int rc = fh_validate(fh, env, detail, sizeof detail);
        if (!c->detail && rc != 0)
            fail_msg("case %zu refused: %s", i, detail);
        if (c->detail && (rc != -EINVAL || strncmp(detail, c->detail, strlen(c->detail)) != 0))
            fail_msg("case %zu: rc %d, detail \"%s\", want \"%s\"", i, rc, detail, c->detail);
    }
    /* Types only this plugin raises are not for senders. */
    const struct sc_type *t = fh_plugin(fh)->types;
    for (; t->name; t++)
        if (strcmp(t->name, "inspection.due") == 0 || strcmp(t->name, "inspection.missed") == 0 ||
            strcmp(t->name, "hazard.reported") == 0)
            assert_true(t->flags & SC_TYPE_EMITTED);
}

static void test_config_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{'default_time':'25:00'}",
        "{'alert_levels':['purple']}",
        "{'seasons':[{'season':'plum_rain','from':'06-01'}]}",
        "{'district_seasons':[{'season':'typhoon','from':'07-01','to':'09-30'}]}",
        "{'hazard_risk':'minor'}",
        "{'no_such_key':1}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fh_t *fh = fh_new(s_so("inspection_scheduler"), J(bad[i]), T(START));
        if (fh)
            fail_msg("config %s accepted", bad[i]);
    }
}

/* ---- tasks: due, missed, completed ---------------------------------------- */

/* The daily classroom patrol at 08:00, due within 2h, 1h grace. */
static void s_daily(fh_t *fh, const char *extra)
{
    char data[1024];
    snprintf(data, sizeof data,
             "{\"schedule\":\"patrol\",\"template\":\"classroom-daily\","
             "\"rrule\":\"FREQ=DAILY;BYHOUR=8;BYMINUTE=0\",\"assignee_role\":\"safety_officer\","
             "\"due_within\":\"2h\",\"grace\":\"1h\"%s}",
             extra ? extra : "");
    assert_int_equal(s_school(fh, "inspection.schedule.upserted", "sch-001", data), 0);
}

static void test_due_then_missed(void **state)
{
    fh_t *fh = *state;
    sc_time_t next;
    s_templates(fh);
    s_daily(fh, NULL);
    assert_int_equal(fh_tick(fh, &next), 0);
    assert_true(next == T("2026-06-15T08:00:00+08:00"));

    assert_int_equal(fh_advance_to(fh, T("2026-06-15T08:00:00+08:00")), 0);
    json_t *e = fh_take_emitted(fh);
    const json_t *due = s_one(e, "inspection.due");
    assert_string_equal(s_data_str(due, "task"), "patrol-20260615T0800");
    assert_string_equal(s_data_str(due, "schedule"), "patrol");
    assert_string_equal(s_data_str(due, "template"), "classroom-daily");
    assert_string_equal(s_data_str(due, "due_at"), "2026-06-15T02:00:00Z");
    assert_string_equal(s_data_str(due, "deadline"), "2026-06-15T03:00:00Z");
    assert_string_equal(sc_json_str(due, "occurred_at"), "2026-06-15T00:00:00Z");
    assert_string_equal(sc_json_str(due, "school"), "sch-001");
    const json_t *who = json_object_get(json_object_get(due, "data"), "assignees");
    assert_int_equal(json_array_size(who), 1);
    assert_string_equal(json_string_value(json_array_get(who, 0)), "t-1");
    json_decref(e);

    /* Past due (10:00) but within grace: nothing yet. */
    assert_int_equal(fh_advance_to(fh, T("2026-06-15T10:30:00+08:00")), 0);
    e = fh_take_emitted(fh);
    assert_int_equal(fh_count(e, "inspection.missed"), 0);
    json_decref(e);
    assert_string_equal(s_status(fh, "sch-001", "patrol-20260615T0800"), "open");

    assert_int_equal(fh_advance_to(fh, T("2026-06-15T11:00:00+08:00")), 0);
    e = fh_take_emitted(fh);
    const json_t *missed = s_one(e, "inspection.missed");
    assert_string_equal(s_data_str(missed, "task"), "patrol-20260615T0800");
    assert_string_equal(s_data_str(missed, "schedule"), "patrol");
    assert_string_equal(s_data_str(missed, "due_at"), "2026-06-15T02:00:00Z");
    assert_string_equal(sc_json_str(missed, "occurred_at"), "2026-06-15T03:00:00Z");
    json_decref(e);
    assert_string_equal(s_status(fh, "sch-001", "patrol-20260615T0800"), "missed");

    /* Missed once, whatever happens next. */
    assert_int_equal(fh_advance_to(fh, T("2026-06-15T23:00:00+08:00")), 0);
    e = fh_take_emitted(fh);
    assert_int_equal(json_array_size(e), 0);
    json_decref(e);
}

static int s_complete(fh_t *fh, const char *task, const char *at, const char *results)
{
    char data[2048];
    snprintf(data, sizeof data, "{\"task\":\"%s\",\"inspector\":\"t-1\",\"results\":%s}", task,
             J(results));
    return s_send(fh, "inspection.completed", "school", "sch-001", at, data);
}

#define PATROL_OK "[{'item':'windows','status':'ok'},{'item':'sockets','status':'na'}]"

static void test_completed_on_time_and_late(void **state)
{
    fh_t *fh = *state;
    s_templates(fh);
    s_daily(fh, NULL);
    assert_int_equal(fh_advance_to(fh, T("2026-06-16T09:00:00+08:00")), 0);
    json_decref(fh_take_emitted(fh));
    /* 15th: done at 10:30 (late, in grace); 16th: done at 08:40 (on time). */
    assert_int_equal(s_complete(fh, "patrol-20260615T0800", "2026-06-15T10:30:00+08:00", PATROL_OK),
                     0);
    assert_int_equal(s_complete(fh, "patrol-20260616T0800", "2026-06-16T08:40:00+08:00", PATROL_OK),
                     0);
    json_t *e = fh_take_emitted(fh);
    assert_int_equal(json_array_size(e), 0); /* no hazard, no rejection */
    json_decref(e);
    /* The clock passed the 15th's deadline (11:00) before its completion arrived: it was
     * missed, then done late; it counts as late, and as completed after missed. */
    json_t *r = s_query(fh,
                        "{\"what\":\"figures\",\"school\":\"sch-001\",\"from\":\"2026-06-15\","
                        "\"to\":\"2026-06-16\"}",
                        0);
    assert_int_equal(sc_json_int(r, "tasks", -1), 2);
    assert_int_equal(sc_json_int(r, "on_time", -1), 1);
    assert_int_equal(sc_json_int(r, "late", -1), 1);
    assert_int_equal(sc_json_int(r, "missed", -1), 0);
    assert_int_equal(sc_json_int(r, "completed_after_missed", -1), 1);
    assert_true(sc_json_num(r, "completion_rate", 0) == 1.0);
    assert_true(sc_json_num(r, "on_time_rate", 0) == 0.5);
    const json_t *tpl = json_object_get(json_object_get(r, "by_template"), "classroom-daily");
    assert_int_equal(sc_json_int(tpl, "tasks", -1), 2);
    json_decref(r);

    /* Nothing is missed later for completed tasks. */
    assert_int_equal(fh_advance_to(fh, T("2026-06-16T12:00:00+08:00")), 0);
    e = fh_take_emitted(fh);
    assert_int_equal(fh_count(e, "inspection.missed"), 0);
    json_decref(e);
}

/* Completion within grace, before the clock reached the deadline: late, never missed. */
static void test_late_within_grace_is_not_missed(void **state)
{
    fh_t *fh = *state;
    s_templates(fh);
    s_daily(fh, NULL);
    assert_int_equal(fh_advance_to(fh, T("2026-06-15T10:20:00+08:00")), 0);
    assert_int_equal(s_complete(fh, "patrol-20260615T0800", "2026-06-15T10:15:00+08:00", PATROL_OK),
                     0);
    assert_int_equal(fh_advance_to(fh, T("2026-06-15T12:00:00+08:00")), 0);
    json_t *e = fh_take_emitted(fh);
    assert_int_equal(fh_count(e, "inspection.missed"), 0);
    json_decref(e);
    json_t *r = s_query(fh,
                        "{\"what\":\"figures\",\"school\":\"sch-001\",\"from\":\"2026-06-15\","
                        "\"to\":\"2026-06-15\"}",
                        0);
    assert_int_equal(sc_json_int(r, "late", -1), 1);
    assert_int_equal(sc_json_int(r, "completed_after_missed", -1), 0);
    json_decref(r);
}

/* Validates an emitted hazard.reported with hazard_tracker's own validator, when it is built. */
static void s_hazard_tracker_accepts(const json_t *ev)
{
    char path[1024];
    snprintf(path, sizeof path, "%s", s_so("hazard_tracker"));
    FILE *f = fopen(path, "rb");
    if (!f)
        return; /* not built here: the daemon's integration test covers it */
    fclose(f);
    fh_destroy(&s_own);
    s_own = fh_new(path, NULL, T(START));
    assert_non_null(s_own);
    char detail[512] = "";
    char *env = json_dumps(ev, JSON_COMPACT);
    int rc = fh_validate(s_own, env, detail, sizeof detail);
    if (rc != 0)
        fail_msg("hazard_tracker refuses %s: %s", env, detail);
    free(env);
    fh_destroy(&s_own);
}

static void test_failed_items_raise_hazards_once(void **state)
{
    fh_t *fh = *state;
    s_templates(fh);
    assert_int_equal(s_school(fh, "inspection.schedule.upserted", "sch-001",
                              J("{'schedule':'fire','template':'fire-monthly',"
                                "'rrule':'FREQ=MONTHLY;BYMONTHDAY=15;BYHOUR=9',"
                                "'assignee_role':'safety_officer'}")),
                     0);
    assert_int_equal(fh_advance_to(fh, T("2026-06-15T09:00:00+08:00")), 0);
    json_decref(fh_take_emitted(fh));

    char *c = s_fixture("completion_fail.json");
    char *p = strstr(c, "TASK");
    char env[8192];
    snprintf(env, sizeof env, "%.*sfire-20260615T0900%s", (int)(p - c), c, p + 4);
    assert_int_equal(fh_handle(fh, env), 0);
    json_t *e = fh_take_emitted(fh);
    assert_int_equal(fh_count(e, "hazard.reported"), 2);
    const json_t *h1 = s_nth(e, "hazard.reported", 0), *h2 = s_nth(e, "hazard.reported", 1);
    assert_string_equal(s_data_str(h1, "hazard"), "insp-fire-20260615T0900-extinguishers");
    assert_string_equal(sc_json_str(h1, "id"), "hz:sch-001:insp-fire-20260615T0900-extinguishers");
    assert_string_equal(s_data_str(h1, "risk"), "general");
    assert_string_equal(s_data_str(h1, "category"), "fire");
    assert_string_equal(s_data_str(h1, "location"), "Teaching building A");
    assert_string_equal(s_data_str(h1, "reporter"), "t-1");
    assert_non_null(strstr(s_data_str(h1, "description"), "pressure low"));
    const json_t *origin = json_object_get(json_object_get(h1, "data"), "origin");
    assert_string_equal(sc_json_str(origin, "kind"), "inspection");
    assert_string_equal(sc_json_str(origin, "task"), "fire-20260615T0900");
    assert_string_equal(sc_json_str(origin, "item"), "extinguishers");
    assert_string_equal(s_data_str(h2, "hazard"), "insp-fire-20260615T0900-wiring");
    assert_string_equal(s_data_str(h2, "risk"), "major");
    assert_string_equal(s_data_str(h2, "category"), "electrical");
    s_hazard_tracker_accepts(h1);
    s_hazard_tracker_accepts(h2);
    json_decref(e);
    assert_string_equal(s_status(fh, "sch-001", "fire-20260615T0900"), "completed");

    /* Resent (a new envelope for the same completion): refused, no second hazard. */
    assert_int_equal(fh_handle(fh, env), 0);
    e = fh_take_emitted(fh);
    assert_int_equal(fh_count(e, "hazard.reported"), 0);
    const json_t *rej = s_one(e, "inspection.rejected");
    assert_non_null(strstr(s_data_str(rej, "reason"), "already completed"));
    assert_string_equal(s_data_str(rej, "task"), "fire-20260615T0900");
    json_decref(e);
    assert_int_equal(s_count_sql(fh, "SELECT count(*) FROM inspection.results WHERE hazard IS "
                                     "NOT NULL"),
                     2);

    /* The task's record shows the results. */
    json_t *r = s_query(fh,
                        "{\"what\":\"task\",\"school\":\"sch-001\",\"task\":"
                        "\"fire-20260615T0900\"}",
                        0);
    assert_string_equal(sc_json_str(r, "inspector"), "t-1");
    assert_int_equal(json_array_size(json_object_get(r, "results")), 3);
    json_decref(r);
}

static void test_completion_refusals(void **state)
{
    fh_t *fh = *state;
    s_templates(fh);
    s_daily(fh, NULL);
    assert_int_equal(fh_advance_to(fh, T("2026-06-15T08:30:00+08:00")), 0);
    json_decref(fh_take_emitted(fh));
    static const struct {
        const char *task, *results, *reason;
    } cases[] = {
        {"no-such-task", PATROL_OK, "unknown task \"no-such-task\""},
        {"patrol-20260615T0800",
         "[{'item':'windows','status':'ok'},{'item':'sockets','status':'ok'},"
         "{'item':'roof','status':'fail'}]",
         "results[2].item: \"roof\" is not an item of template classroom-daily"},
        {"patrol-20260615T0800", "[{'item':'windows','status':'fail'}]",
         "results: no result for sockets"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(s_complete(fh, cases[i].task, NULL, cases[i].results), 0);
        json_t *e = fh_take_emitted(fh);
        const json_t *rej = s_one(e, "inspection.rejected");
        if (!strstr(s_data_str(rej, "reason"), cases[i].reason))
            fail_msg("case %zu: reason %s", i, s_data_str(rej, "reason"));
        assert_int_equal(fh_count(e, "hazard.reported"), 0);
        json_decref(e);
    }
    /* Nothing was recorded: the task is still open and can be completed properly. */
    assert_string_equal(s_status(fh, "sch-001", "patrol-20260615T0800"), "open");
    assert_int_equal(s_count_sql(fh, "SELECT count(*) FROM inspection.results"), 0);
    assert_int_equal(s_complete(fh, "patrol-20260615T0800", NULL, PATROL_OK), 0);
    assert_string_equal(s_status(fh, "sch-001", "patrol-20260615T0800"), "completed");
}

/* With require_all_items off, a partial checklist is accepted. */
static void test_partial_checklist_when_configured(void **state)
{
    (void)state;
    fh_t *lax = s_own_new("{\"require_all_items\":false}", NULL);
    s_templates(lax);
    s_daily(lax, NULL);
    assert_int_equal(fh_advance_to(lax, T("2026-06-15T08:30:00+08:00")), 0);
    assert_int_equal(
        s_complete(lax, "patrol-20260615T0800", NULL, "[{'item':'windows','status':'ok'}]"), 0);
    assert_string_equal(s_status(lax, "sch-001", "patrol-20260615T0800"), "completed");
}

static void test_template_completion(void **state)
{
    fh_t *fh = *state;
    s_templates(fh);
    s_daily(fh, NULL);
    assert_int_equal(fh_advance_to(fh, T("2026-06-15T08:30:00+08:00")), 0);
    json_decref(fh_take_emitted(fh));
    /* Naming the template completes the open task of it. */
    assert_int_equal(
        s_send(fh, "inspection.completed", "school", "sch-001", NULL,
               J("{'template':'classroom-daily','inspector':'t-2','results':"
                 "[{'item':'windows','status':'ok'},{'item':'sockets','status':'ok'}]}")),
        0);
    assert_string_equal(s_status(fh, "sch-001", "patrol-20260615T0800"), "completed");
    /* No open task left: an ad-hoc inspection is recorded as its own task. */
    assert_int_equal(s_send(fh, "inspection.completed", "school", "sch-001", NULL,
                            J("{'template':'classroom-daily','inspector':'t-2','results':"
                              "[{'item':'windows','status':'fail','note':'cracked pane'},"
                              "{'item':'sockets','status':'ok'}]}")),
                     0);
    json_t *e = fh_take_emitted(fh);
    const json_t *h = s_one(e, "hazard.reported");
    assert_true(strncmp(s_data_str(h, "hazard"), "insp-adhoc-", 11) == 0);
    json_decref(e);
    assert_int_equal(s_count_sql(fh, "SELECT count(*) FROM inspection.tasks WHERE kind='adhoc' "
                                     "AND status='completed'"),
                     1);
    /* An unknown template is refused. */
    assert_int_equal(s_send(fh, "inspection.completed", "school", "sch-001", NULL,
                            J("{'template':'nope','inspector':'t-2','results':"
                              "[{'item':'a','status':'ok'}]}")),
                     0);
    e = fh_take_emitted(fh);
    assert_non_null(
        strstr(s_data_str(s_one(e, "inspection.rejected"), "reason"), "unknown template \"nope\""));
    json_decref(e);
}

static void test_schedule_refusals(void **state)
{
    fh_t *fh = *state;
    s_templates(fh);
    assert_int_equal(s_school(fh, "inspection.schedule.upserted", "sch-001",
                              J("{'schedule':'s','template':'nope','rrule':'FREQ=DAILY',"
                                "'assignee_role':'teacher'}")),
                     0);
    json_t *e = fh_take_emitted(fh);
    assert_non_null(
        strstr(s_data_str(s_one(e, "inspection.rejected"), "reason"), "unknown template \"nope\""));
    json_decref(e);
    assert_int_equal(s_school(fh, "inspection.schedule.upserted", "sch-001",
                              J("{'schedule':'s','template':'fire-monthly','rrule':'FREQ=DAILY',"
                                "'assignee_role':'teacher',"
                                "'seasons':[{'season':'monsoon','rrule':'FREQ=DAILY'}]}")),
                     0);
    e = fh_take_emitted(fh);
    assert_non_null(strstr(s_data_str(s_one(e, "inspection.rejected"), "reason"),
                           "unknown season \"monsoon\""));
    json_decref(e);
    assert_int_equal(s_count_sql(fh, "SELECT count(*) FROM inspection.schedules"), 0);
}

/* The plum-rain season turns the weekly check into a daily one, through the clock. */
static void test_seasonal_intensification(void **state)
{
    (void)state;
    fh_t *fh = s_own_new(NULL, "2026-05-20T12:00:00+08:00");
    s_templates(fh);
    assert_int_equal(
        s_school(fh, "inspection.schedule.upserted", "sch-001",
                 J("{'schedule':'roof','template':'storm-check',"
                   "'rrule':'FREQ=WEEKLY;BYDAY=MO;BYHOUR=8;BYMINUTE=0',"
                   "'assignee_role':'safety_officer',"
                   "'seasons':[{'season':'plum_rain','rrule':'FREQ=DAILY;BYHOUR=8'}]}")),
        0);
    assert_int_equal(fh_advance_to(fh, T("2026-06-07T23:00:00+08:00")), 0);
    json_t *e = fh_take_emitted(fh);
    /* May 25 (Monday), then June 1 … 7 every day. */
    assert_int_equal(fh_count(e, "inspection.due"), 8);
    static const char *const want[] = {
        "roof-20260525T0800", "roof-20260601T0800", "roof-20260602T0800", "roof-20260603T0800",
        "roof-20260604T0800", "roof-20260605T0800", "roof-20260606T0800", "roof-20260607T0800",
    };
    for (size_t i = 0; i < 8; i++)
        assert_string_equal(s_data_str(s_nth(e, "inspection.due", i), "task"), want[i]);
    json_decref(e);
}

static void test_weather_alerts(void **state)
{
    fh_t *fh = *state;
    s_templates(fh);
    /* A school's alert: one task per template whose triggers match. */
    assert_int_equal(s_send(fh, "weather.alert", "school", "sch-001", "2026-06-15T07:00:00+08:00",
                            J("{'kind':'typhoon','level':'orange'}")),
                     0);
    json_t *e = fh_take_emitted(fh);
    const json_t *due = s_one(e, "inspection.due");
    assert_string_equal(s_data_str(due, "template"), "storm-check");
    assert_string_equal(s_data_str(due, "kind"), "alert");
    assert_string_equal(s_data_str(due, "due_at"), "2026-06-15T03:00:00Z"); /* 4h */
    assert_string_equal(sc_json_str(json_object_get(json_object_get(due, "data"), "alert"), "kind"),
                        "typhoon");
    const char *task = s_data_str(due, "task");
    char task_code[80];
    snprintf(task_code, sizeof task_code, "%s", task);
    json_decref(e);

    /* An upgrade while that task is open adds nothing. */
    assert_int_equal(s_send(fh, "weather.alert", "school", "sch-001", NULL,
                            J("{'kind':'rainstorm','level':'red'}")),
                     0);
    e = fh_take_emitted(fh);
    assert_int_equal(fh_count(e, "inspection.due"), 0);
    json_decref(e);

    /* Kinds no template names call up nothing. */
    assert_int_equal(
        s_send(fh, "weather.alert", "school", "sch-001", NULL, J("{'kind':'heat','level':'red'}")),
        0);
    e = fh_take_emitted(fh);
    assert_int_equal(json_array_size(e), 0);
    json_decref(e);

    /* Not done in 4h + 1h grace: missed. */
    assert_int_equal(fh_advance_to(fh, T("2026-06-15T12:00:00+08:00")), 0);
    e = fh_take_emitted(fh);
    assert_string_equal(s_data_str(s_one(e, "inspection.missed"), "task"), task_code);
    json_decref(e);

    /* A district's alert: every school of the district with a matching template. */
    assert_int_equal(s_send(fh, "weather.alert", "district", "d-01", NULL,
                            J("{'kind':'rainstorm','level':'yellow'}")),
                     0);
    e = fh_take_emitted(fh);
    assert_int_equal(fh_count(e, "inspection.due"), 2);
    const json_t *a = s_nth(e, "inspection.due", 0), *b = s_nth(e, "inspection.due", 1);
    assert_string_equal(sc_json_str(a, "school"), "sch-001");
    assert_string_equal(sc_json_str(b, "school"), "sch-002");
    const json_t *assignees = json_object_get(json_object_get(b, "data"), "assignees");
    assert_string_equal(json_string_value(json_array_get(assignees, 0)), "t-3");
    json_decref(e);
}

static void test_alert_levels_from_config(void **state)
{
    (void)state;
    fh_t *fh = s_own_new("{\"alert_levels\":[\"orange\",\"red\"]}", NULL);
    s_templates(fh);
    assert_int_equal(s_send(fh, "weather.alert", "school", "sch-001", NULL,
                            J("{'kind':'typhoon','level':'blue'}")),
                     0);
    json_t *e = fh_take_emitted(fh);
    assert_int_equal(fh_count(e, "inspection.due"), 0);
    json_decref(e);
    assert_int_equal(s_send(fh, "weather.alert", "school", "sch-001", NULL,
                            J("{'kind':'typhoon','level':'red'}")),
                     0);
    e = fh_take_emitted(fh);
    assert_int_equal(fh_count(e, "inspection.due"), 1);
    json_decref(e);
}

/*
 * The daemon was down for three days: one tick at the new time creates every occurrence
 * in between with its own time, and misses those that can no longer be done.
 */
static void test_multi_day_jump(void **state)
{
    fh_t *fh = *state;
    s_templates(fh);
    s_daily(fh, NULL);
    fh_set_now(fh, T("2026-06-18T09:00:00+08:00"));
    assert_int_equal(fh_tick(fh, NULL), 0);
    json_t *e = fh_take_emitted(fh);
    assert_int_equal(fh_count(e, "inspection.due"), 4);    /* 15, 16, 17, 18 */
    assert_int_equal(fh_count(e, "inspection.missed"), 3); /* 15, 16, 17 */
    static const char *const days[] = {"15", "16", "17", "18"};
    for (size_t i = 0; i < 4; i++) {
        const json_t *d = s_nth(e, "inspection.due", i);
        char want[40];
        snprintf(want, sizeof want, "2026-06-%02dT00:00:00Z", atoi(days[i]));
        assert_string_equal(sc_json_str(d, "occurred_at"), want);
    }
    for (size_t i = 0; i < 3; i++) {
        const json_t *m = s_nth(e, "inspection.missed", i);
        char want[40];
        snprintf(want, sizeof want, "2026-06-%02dT03:00:00Z", atoi(days[i]));
        assert_string_equal(sc_json_str(m, "occurred_at"), want);
    }
    json_decref(e);
    assert_string_equal(s_status(fh, "sch-001", "patrol-20260618T0800"), "open");

    /* Again at the same time, and after the clock went back: nothing twice. */
    assert_int_equal(fh_tick(fh, NULL), 0);
    fh_set_now(fh, T("2026-06-16T09:00:00+08:00"));
    assert_int_equal(fh_tick(fh, NULL), 0);
    fh_set_now(fh, T("2026-06-18T09:30:00+08:00"));
    assert_int_equal(fh_tick(fh, NULL), 0);
    e = fh_take_emitted(fh);
    assert_int_equal(json_array_size(e), 0);
    json_decref(e);
    assert_int_equal(s_count_sql(fh, "SELECT count(*) FROM inspection.tasks"), 4);
}

/* Stepping through a long jump (the manual clock) gives the same tasks, in time order. */
static void test_stepped_jump(void **state)
{
    fh_t *fh = *state;
    s_templates(fh);
    s_daily(fh, NULL);
    assert_int_equal(fh_advance_to(fh, T("2026-06-25T09:00:00+08:00")), 0);
    json_t *e = fh_take_emitted(fh);
    assert_int_equal(fh_count(e, "inspection.due"), 11);
    assert_int_equal(fh_count(e, "inspection.missed"), 10);
    sc_time_t last = 0;
    size_t i;
    const json_t *ev;
    json_array_foreach(e, i, ev)
    {
        sc_time_t t = T(sc_json_str(ev, "occurred_at"));
        assert_true(t >= last);
        last = t;
    }
    json_decref(e);
}

static void test_closed_days_through_tick(void **state)
{
    fh_t *fh = *state;
    s_templates(fh);
    assert_int_equal(s_send(fh, "inspection.calendar.upserted", "district", "d-01", NULL,
                            J("{'calendar':'dragon-boat','closed':[{'from':'2026-06-19',"
                              "'to':'2026-06-21','reason':'Dragon Boat Festival'}]}")),
                     0);
    s_daily(fh, NULL);
    assert_int_equal(fh_advance_to(fh, T("2026-06-22T09:00:00+08:00")), 0);
    json_t *e = fh_take_emitted(fh);
    assert_int_equal(fh_count(e, "inspection.due"), 5); /* 15-18, 22 */
    json_decref(e);
    assert_string_equal(s_status(fh, "sch-001", "patrol-20260619T0800"), "none");
    assert_string_equal(s_status(fh, "sch-001", "patrol-20260622T0800"), "open");

    /* The holiday is moved: the schedule follows from now on. */
    assert_int_equal(s_send(fh, "inspection.calendar.upserted", "district", "d-01", NULL,
                            J("{'calendar':'dragon-boat','closed':[{'from':'2026-06-23'}]}")),
                     0);
    assert_int_equal(fh_advance_to(fh, T("2026-06-24T09:00:00+08:00")), 0);
    e = fh_take_emitted(fh);
    assert_int_equal(fh_count(e, "inspection.due"), 1);
    assert_string_equal(s_data_str(fh_find(e, "inspection.due"), "task"), "patrol-20260624T0800");
    json_decref(e);
}

/* A paused schedule creates nothing, and switched on again does not make up for the pause. */
static void test_pause_does_not_backfill(void **state)
{
    fh_t *fh = *state;
    s_templates(fh);
    s_daily(fh, NULL);
    assert_int_equal(fh_advance_to(fh, T("2026-06-15T09:00:00+08:00")), 0);
    s_daily(fh, ",\"active\":false");
    assert_int_equal(fh_advance_to(fh, T("2026-06-18T09:00:00+08:00")), 0);
    s_daily(fh, ",\"active\":true");
    assert_int_equal(fh_advance_to(fh, T("2026-06-19T09:00:00+08:00")), 0);
    json_t *e = fh_take_emitted(fh);
    assert_int_equal(fh_count(e, "inspection.due"), 2); /* the 15th and the 19th */
    json_decref(e);
}

static void test_next_instant(void **state)
{
    fh_t *fh = *state;
    sc_time_t next;
    s_templates(fh);
    assert_int_equal(fh_tick(fh, &next), 0);
    assert_true(next == SC_TIME_NEVER);
    s_daily(fh, NULL);
    assert_int_equal(fh_advance_to(fh, T("2026-06-15T08:00:00+08:00")), 0);
    /* Next: the open task's deadline (11:00), before tomorrow's 08:00. */
    assert_int_equal(fh_tick(fh, &next), 0);
    assert_true(next == T("2026-06-15T11:00:00+08:00"));
    assert_int_equal(s_complete(fh, "patrol-20260615T0800", NULL, PATROL_OK), 0);
    assert_int_equal(fh_tick(fh, &next), 0);
    assert_true(next == T("2026-06-16T08:00:00+08:00"));

    /* A finished rule asks for nothing more. */
    assert_int_equal(s_school(fh, "inspection.schedule.upserted", "sch-001",
                              J("{'schedule':'patrol','template':'classroom-daily',"
                                "'rrule':'FREQ=DAILY;COUNT=1','start':'2026-06-15T08:00',"
                                "'assignee_role':'safety_officer'}")),
                     0);
    assert_int_equal(fh_tick(fh, &next), 0);
    assert_true(next == SC_TIME_NEVER);
}

/* ---- queries ---------------------------------------------------------------- */

static void test_tasks_query(void **state)
{
    fh_t *fh = *state;
    s_templates(fh);
    s_daily(fh, NULL);
    assert_int_equal(s_school(fh, "inspection.schedule.upserted", "sch-001",
                              J("{'schedule':'fire','template':'fire-monthly',"
                                "'rrule':'FREQ=DAILY;BYHOUR=9','assignee':'t-2',"
                                "'due_within':'1h','grace':'12h'}")),
                     0);
    assert_int_equal(fh_advance_to(fh, T("2026-06-16T10:30:00+08:00")), 0);
    json_t *r = s_query(fh, "{\"what\":\"tasks\",\"person\":\"t-1\"}", 0);
    assert_string_equal(sc_json_str(r, "date"), "2026-06-16");
    const json_t *today = json_object_get(r, "today");
    assert_int_equal(json_array_size(today), 1);
    assert_string_equal(sc_json_str(json_array_get(today, 0), "task"), "patrol-20260616T0800");
    /* The patrol is past due (10:00) and still open: overdue. */
    const json_t *overdue = json_object_get(r, "overdue");
    assert_int_equal(json_array_size(overdue), 1);
    json_decref(r);

    r = s_query(fh, "{\"what\":\"tasks\",\"person\":\"t-2\"}", 0);
    assert_int_equal(json_array_size(json_object_get(r, "today")), 1);
    assert_string_equal(sc_json_str(json_array_get(json_object_get(r, "today"), 0), "task"),
                        "fire-20260616T0900");
    json_decref(r);

    r = s_query(fh, "{\"what\":\"tasks\",\"school\":\"sch-001\",\"date\":\"2026-06-15\"}", 0);
    assert_int_equal(json_array_size(json_object_get(r, "today")), 2);
    json_decref(r);

    r = s_query(fh, "{\"what\":\"tasks\",\"person\":\"nobody\"}", -EINVAL);
    assert_non_null(sc_json_str(r, "error"));
    json_decref(r);
}

static void test_ledger_query(void **state)
{
    fh_t *fh = *state;
    s_templates(fh);
    assert_int_equal(s_school(fh, "inspection.schedule.upserted", "sch-001",
                              J("{'schedule':'fire','template':'fire-monthly',"
                                "'rrule':'FREQ=DAILY;BYHOUR=9','assignee_role':'safety_officer'}")),
                     0);
    assert_int_equal(fh_advance_to(fh, T("2026-06-17T10:00:00+08:00")), 0);
    char *c = s_fixture("completion_fail.json");
    char *p = strstr(c, "TASK");
    char env[8192];
    snprintf(env, sizeof env, "%.*sfire-20260616T0900%s", (int)(p - c), c, p + 4);
    assert_int_equal(fh_handle(fh, env), 0);

    json_t *r = s_query(fh,
                        "{\"what\":\"ledger\",\"school\":\"sch-001\",\"from\":\"2026-06-15\","
                        "\"to\":\"2026-06-17\",\"limit\":2}",
                        0);
    const json_t *sec = json_array_get(json_object_get(r, "sections"), 0);
    assert_string_equal(sc_json_str(sec, "key"), "inspections");
    assert_string_equal(sc_json_str(sec, "title_zh"), "安全检查记录");
    const json_t *cols = json_object_get(sec, "columns");
    const json_t *rows = json_object_get(sec, "rows");
    assert_int_equal(json_array_size(rows), 2);
    assert_int_equal(json_array_size(json_array_get(rows, 0)), json_array_size(cols));
    /* Row 2 is the 16th: completed with two failed items and their hazards. */
    const json_t *row = json_array_get(rows, 1);
    assert_string_equal(json_string_value(json_array_get(row, 0)), "fire-20260616T0900");
    assert_string_equal(json_string_value(json_array_get(row, 7)), "completed");
    assert_int_equal(json_integer_value(json_array_get(row, 11)), 2);
    assert_non_null(strstr(json_string_value(json_array_get(row, 13)), "extinguishers"));
    assert_non_null(
        strstr(json_string_value(json_array_get(row, 14)), "insp-fire-20260616T0900-wiring"));
    const char *next = sc_json_str(r, "next");
    assert_non_null(next);
    char req[512];
    snprintf(req, sizeof req,
             "{\"what\":\"ledger\",\"school\":\"sch-001\",\"from\":\"2026-06-15\","
             "\"to\":\"2026-06-17\",\"limit\":2,\"after\":\"%s\"}",
             next);
    json_t *r2 = s_query(fh, req, 0);
    const json_t *rows2 =
        json_object_get(json_array_get(json_object_get(r2, "sections"), 0), "rows");
    assert_int_equal(json_array_size(rows2), 1);
    assert_string_equal(json_string_value(json_array_get(json_array_get(rows2, 0), 0)),
                        "fire-20260617T0900");
    assert_true(json_is_null(json_object_get(r2, "next")));
    json_decref(r2);
    json_decref(r);

    r = s_query(fh, "{\"what\":\"ledger\",\"school\":\"sch-001\",\"from\":\"2026-06-15\"}",
                -EINVAL);
    assert_string_equal(sc_json_str(r, "error"), "to: expected a date YYYY-MM-DD");
    json_decref(r);
}

static void test_district_figures(void **state)
{
    fh_t *fh = *state;
    s_templates(fh);
    s_daily(fh, NULL);
    assert_int_equal(fh_advance_to(fh, T("2026-06-17T12:00:00+08:00")), 0);
    assert_int_equal(s_complete(fh, "patrol-20260616T0800", "2026-06-16T09:00:00+08:00", PATROL_OK),
                     0);
    assert_int_equal(s_send(fh, "weather.alert", "school", "sch-002", NULL,
                            J("{'kind':'typhoon','level':'red'}")),
                     0);
    json_t *r = s_query(fh,
                        "{\"what\":\"figures\",\"district\":\"d-01\",\"from\":\"2026-06-01\","
                        "\"to\":\"2026-06-30\"}",
                        0);
    assert_int_equal(sc_json_int(r, "tasks", -1), 4);
    const json_t *s1 = json_object_get(json_object_get(r, "schools"), "sch-001");
    const json_t *s2 = json_object_get(json_object_get(r, "schools"), "sch-002");
    assert_int_equal(sc_json_int(s1, "tasks", -1), 3);
    assert_int_equal(sc_json_int(s1, "on_time", -1), 1);
    assert_int_equal(sc_json_int(s1, "missed", -1), 2);
    assert_int_equal(sc_json_int(s2, "tasks", -1), 1);
    assert_int_equal(sc_json_int(s2, "open", -1), 1);
    assert_true(json_is_null(json_object_get(s2, "completion_rate")));
    assert_int_equal(
        sc_json_int(json_object_get(json_object_get(r, "by_kind"), "alert"), "tasks", -1), 1);
    json_decref(r);

    r = s_query(fh, "{\"what\":\"figures\",\"from\":\"2026-06-01\",\"to\":\"2026-06-30\"}",
                -EINVAL);
    json_decref(r);
    r = s_query(fh, "{\"what\":\"sideways\"}", -EINVAL);
    assert_non_null(strstr(sc_json_str(r, "error"), "what: must be one of"));
    json_decref(r);
    r = s_query(fh, "{\"what\":\"next\",\"school\":\"sch-001\",\"schedule\":\"nope\"}", -EINVAL);
    json_decref(r);
    r = s_query(fh, "{\"what\":\"schedules\",\"school\":\"sch-001\"}", 0);
    assert_int_equal(json_array_size(json_object_get(r, "schedules")), 1);
    assert_string_equal(sc_json_str(json_array_get(json_object_get(r, "schedules"), 0), "next_at"),
                        "2026-06-18T00:00:00Z");
    json_decref(r);
}

/* ---- runner ------------------------------------------------------------------ */

static int s_setup(void **state)
{
    *state = s_new(NULL);
    return 0;
}

static int s_teardown(void **state)
{
    fh_t *fh = *state;
    fh_destroy(&fh);
    fh_destroy(&s_own);
    return 0;
}

static int s_setup_none(void **state)
{
    *state = NULL;
    return 0;
}

#define T_(f) cmocka_unit_test_setup_teardown(f, s_setup, s_teardown)
/* Tests that make their own hosts. */
#define O_(f) cmocka_unit_test_setup_teardown(f, s_setup_none, s_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        O_(test_expansion),
        T_(test_validation),
        O_(test_config_refused),
        T_(test_due_then_missed),
        T_(test_completed_on_time_and_late),
        T_(test_late_within_grace_is_not_missed),
        T_(test_failed_items_raise_hazards_once),
        T_(test_completion_refusals),
        O_(test_partial_checklist_when_configured),
        T_(test_template_completion),
        T_(test_schedule_refusals),
        O_(test_seasonal_intensification),
        T_(test_weather_alerts),
        O_(test_alert_levels_from_config),
        T_(test_multi_day_jump),
        T_(test_stepped_jump),
        T_(test_closed_days_through_tick),
        T_(test_pause_does_not_backfill),
        T_(test_next_instant),
        T_(test_tasks_query),
        T_(test_ledger_query),
        T_(test_district_figures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
