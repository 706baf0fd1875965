/* inspection_scheduler: read requests — tasks, next occurrences, figures, the ledger section. */
#include "insp.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_US(col) "(extract(epoch FROM " col ") * 1000000)::bigint"
#define S_LEDGER_LIMIT 500
#define S_LEDGER_MAX 5000

__attribute__((format(printf, 2, 3))) static int s_bad(json_t **reply, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    *reply = json_pack("{s:s}", "error", msg);
    return -EINVAL;
}

/* A required code member of the request; writes the error reply when it is missing. */
static const char *s_code_arg(const json_t *req, const char *key, json_t **reply)
{
    char detail[128];
    if (sc_check_code(req, "", key, true, detail, sizeof detail) < 0) {
        s_bad(reply, "%s", detail);
        return NULL;
    }
    return sc_json_str(req, key);
}

/* from/to dates of the request, checked. */
static int s_period(const json_t *req, const char **from, const char **to, json_t **reply)
{
    int64_t f, t;
    *from = sc_json_str(req, "from");
    *to = sc_json_str(req, "to");
    if (!*from || sc_date_parse(*from, &f) < 0)
        return s_bad(reply, "from: expected a date YYYY-MM-DD");
    if (!*to || sc_date_parse(*to, &t) < 0)
        return s_bad(reply, "to: expected a date YYYY-MM-DD");
    if (t < f)
        return s_bad(reply, "to: must not be before from");
    return 0;
}

#define S_TASK_COLS                                                                                \
    "task, kind, schedule, template, title, area, assignee_role, assignee,"                        \
    " " INSP_TS(                                                                                   \
        "opens_at") " AS opens_at, local_date::text AS date,"                                      \
                    " " INSP_TS("due_at") " AS due_at, " INSP_TS(                                  \
                        "deadline") " AS deadline, status,"                                        \
                                    " " INSP_TS(                                                   \
                                        "completed_at") " AS completed_at, inspector,"             \
                                                        " " INSP_TS(                               \
                                                            "missed_at") " AS missed_at, "         \
                                                                         "alert_kind, alert_level"

/* Today's tasks and the overdue ones of a school, or of one person there. */
static int s_tasks(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    const char *school = sc_json_str(req, "school"), *person = sc_json_str(req, "person");
    json_t *who = NULL, *roles = NULL;
    char *roles_s = NULL, day[12], now_s[SC_TIME_LEN];
    PGresult *today = NULL, *overdue = NULL;
    struct insp_school info;
    int rc;

    if (person) {
        if (!(who = ctx->host->person(ctx, person))) {
            rc = s_bad(reply, "person: unknown person \"%s\"", person);
            goto out;
        }
        if (!school)
            school = sc_json_str(who, "school");
        roles = json_incref(json_object_get(who, "roles"));
    }
    if (!school) {
        rc = s_bad(reply, "school: required (or a person of a school)");
        goto out;
    }
    insp_school(ctx, school, &info);
    sc_time_t now = sc_now(ctx);
    const char *date = sc_json_str(req, "date");
    int64_t d;
    if (date && sc_date_parse(date, &d) < 0) {
        rc = s_bad(reply, "date: expected a date YYYY-MM-DD");
        goto out;
    }
    if (!date)
        date = sc_date_format(insp_local_day(info.tz, now), day);
    rc = -ENOMEM;
    if (!(roles_s = roles ? json_dumps(roles, JSON_COMPACT) : strdup("[]")))
        goto out;
    const char *p_today[4] = {school, date, person, roles_s};
    const char *p_overdue[4] = {school, sc_time_format(now, now_s), person, roles_s};
#define S_FOR_PERSON                                                                               \
    " AND ($3::text IS NULL OR assignee = $3 OR (assignee IS NULL AND assignee_role IN"            \
    "      (SELECT jsonb_array_elements_text($4::jsonb))))"
    today = sc_pq_exec(sc_db(ctx),
                       "SELECT " S_TASK_COLS " FROM inspection.tasks"
                       " WHERE school = $1 AND local_date = $2::date" S_FOR_PERSON
                       " ORDER BY opens_at, id",
                       4, p_today, &rc);
    if (!today)
        goto out;
    overdue = sc_pq_exec(sc_db(ctx),
                         "SELECT " S_TASK_COLS " FROM inspection.tasks"
                         " WHERE school = $1 AND status = 'open' AND due_at < $2" S_FOR_PERSON
                         " ORDER BY due_at, id",
                         4, p_overdue, &rc);
    if (!overdue)
        goto out;
    *reply =
        json_pack("{s:s, s:s, s:s, s:s?, s:o, s:o}", "school", school, "date", date, "now", now_s,
                  "person", person, "today", sc_pq_rows(today), "overdue", sc_pq_rows(overdue));
    rc = *reply ? 0 : -ENOMEM;
out:
    PQclear(today);
    PQclear(overdue);
    free(roles_s);
    json_decref(roles);
    json_decref(who);
    return rc;
}

/* A schedule's next occurrences, in UTC and in the school's local time. */
static int s_next(sc_ctx_t *ctx, void *state, const json_t *req, json_t **reply)
{
    const char *school, *schedule;
    struct insp_school info;
    struct insp_spec spec;
    struct rr_occ *occ = NULL;
    size_t n = 0;
    json_t *rows = NULL;
    PGresult *res = NULL;
    char err[160] = "";
    int rc;

    if (!(school = s_code_arg(req, "school", reply)) ||
        !(schedule = s_code_arg(req, "schedule", reply)))
        return -EINVAL;
    json_int_t count = sc_json_int(req, "count", 10);
    if (count < 1 || count > 500)
        return s_bad(reply, "count: must be between 1 and 500");
    sc_time_t after = sc_now(ctx);
    if (json_object_get(req, "after") && sc_time_parse(sc_json_str(req, "after"), &after) < 0)
        return s_bad(reply, "after: expected an RFC 3339 time");
    const char *p[2] = {school, schedule};
    res = sc_pq_exec(sc_db(ctx),
                     "SELECT school, schedule, template, rrule, dtstart, seasons, exdates,"
                     "       skip_closed, due_within, grace, active"
                     "  FROM inspection.schedules WHERE school = $1 AND schedule = $2",
                     2, p, &rc);
    if (!res)
        return rc;
    rows = sc_pq_rows(res);
    PQclear(res);
    if (json_array_size(rows) == 0) {
        json_decref(rows);
        return s_bad(reply, "schedule: unknown schedule \"%s\" at school %s", schedule, school);
    }
    const json_t *sched = json_array_get(rows, 0);
    insp_school(ctx, school, &info);
    if ((rc = insp_spec_load(ctx, state, sched, &info, &spec, err, sizeof err)) < 0) {
        json_decref(rows);
        return rc == -EAGAIN ? rc : s_bad(reply, "schedule: %s", err);
    }
    rc = rr_expand(&spec.rr, after, after + 20 * INSP_HORIZON, (size_t)count, &occ, &n, NULL);
    if (rc < 0) {
        rc = s_bad(reply, "schedule: its rule does not parse");
        goto out;
    }
    json_t *list = json_array();
    int64_t due_within = sc_json_int(sched, "due_within", 0),
            grace = sc_json_int(sched, "grace", 0);
    for (size_t i = 0; i < n; i++) {
        char at[SC_TIME_LEN], local[40], due[SC_TIME_LEN], deadline[SC_TIME_LEN];
        sc_time_t d = occ[i].at + due_within * SC_USEC_PER_SEC;
        const json_t *season =
            occ[i].source >= 0
                ? json_array_get(json_object_get(sched, "seasons"), (size_t)occ[i].source)
                : NULL;
        json_t *o =
            json_pack("{s:s, s:s, s:s, s:s, s:s}", "opens_at", sc_time_format(occ[i].at, at),
                      "local", rr_format_local(occ[i].at, occ[i].offset, local, sizeof local),
                      "due_at", sc_time_format(d, due), "deadline",
                      sc_time_format(d + grace * SC_USEC_PER_SEC, deadline), "rule",
                      !season                         ? "base"
                      : sc_json_str(season, "season") ? sc_json_str(season, "season")
                                                      : "season");
        json_array_append_new(list, o);
    }
    *reply =
        json_pack("{s:s, s:s, s:s, s:O, s:o}", "school", school, "schedule", schedule, "timezone",
                  info.tz, "active", json_object_get(sched, "active"), "occurrences", list);
    rc = *reply ? 0 : -ENOMEM;
out:
    free(occ);
    insp_spec_free(&spec);
    json_decref(rows);
    return rc;
}

enum { S_TASKS, S_ON_TIME, S_LATE, S_MISSED, S_OPEN, S_AFTER_MISSED, S_FAILED, S_NCOUNTS };
static const char *const s_count_names[S_NCOUNTS] = {
    "tasks", "on_time", "late", "missed", "open", "completed_after_missed", "failed_items",
};

/* Adds counts into obj[key] (created when absent); obj itself when key is NULL. */
static void s_add_counts(json_t *obj, const char *key, const json_int_t *c)
{
    json_t *t = obj;
    if (key) {
        t = json_object_get(obj, key);
        if (!t) {
            t = json_object();
            json_object_set_new(obj, key, t);
        }
    }
    for (int i = 0; i < S_NCOUNTS; i++)
        json_object_set_new(t, s_count_names[i],
                            json_integer(sc_json_int(t, s_count_names[i], 0) + c[i]));
}

/* Rates over the tasks whose fate is known (not open): null when there are none. */
static void s_rates(json_t *t)
{
    json_int_t closed = sc_json_int(t, "tasks", 0) - sc_json_int(t, "open", 0);
    json_int_t done = sc_json_int(t, "on_time", 0) + sc_json_int(t, "late", 0);
    json_object_set_new(t, "completion_rate",
                        closed > 0 ? json_real((double)done / (double)closed) : json_null());
    json_object_set_new(t, "on_time_rate",
                        closed > 0
                            ? json_real((double)sc_json_int(t, "on_time", 0) / (double)closed)
                            : json_null());
}

/*
 * Completion figures of a school or of a district's schools for a period of local dates:
 * totals, by template, by kind and (for a district) by school.
 */
static int s_figures(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    const char *school = sc_json_str(req, "school"), *district = sc_json_str(req, "district");
    const char *from, *to;
    json_t *codes = NULL, *out = NULL;
    char *codes_s = NULL;
    PGresult *res = NULL;
    int rc;

    if ((rc = s_period(req, &from, &to, reply)) < 0)
        return rc;
    if (!school == !district)
        return s_bad(reply, "school: give a school or a district");
    codes = json_array();
    if (school) {
        json_array_append_new(codes, json_string(school));
    } else {
        json_t *schools = ctx->host->district_schools(ctx, district);
        if (!schools) {
            json_decref(codes);
            return -EAGAIN;
        }
        size_t i;
        const json_t *s;
        json_array_foreach(schools, i, s) if (sc_json_str(s, "school"))
            json_array_append_new(codes, json_string(sc_json_str(s, "school")));
        json_decref(schools);
    }
    rc = -ENOMEM;
    if (!(codes_s = json_dumps(codes, JSON_COMPACT)))
        goto out;
    const char *p[3] = {codes_s, from, to};
    res = sc_pq_exec(
        sc_db(ctx),
        "SELECT t.school, t.template, t.kind, count(*),"
        "  count(*) FILTER (WHERE t.status = 'completed' AND t.completed_at <= t.due_at),"
        "  count(*) FILTER (WHERE t.status = 'completed' AND t.completed_at > t.due_at),"
        "  count(*) FILTER (WHERE t.status = 'missed'),"
        "  count(*) FILTER (WHERE t.status = 'open'),"
        "  count(*) FILTER (WHERE t.status = 'completed' AND t.missed_at IS NOT NULL),"
        "  COALESCE(sum(f.n), 0)::bigint"
        "  FROM inspection.tasks t"
        "  LEFT JOIN (SELECT school, task, count(*) AS n FROM inspection.results"
        "              WHERE status = 'fail' GROUP BY school, task) f USING (school, task)"
        " WHERE t.school IN (SELECT jsonb_array_elements_text($1::jsonb))"
        "   AND t.local_date BETWEEN $2::date AND $3::date"
        " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        3, p, &rc);
    if (!res)
        goto out;
    out = json_object();
    json_t *by_template = json_object(), *by_kind = json_object(), *by_school = json_object();
    json_int_t zero[S_NCOUNTS] = {0};
    s_add_counts(out, NULL, zero);
    for (int r = 0; r < PQntuples(res); r++) {
        json_int_t c[S_NCOUNTS];
        for (int i = 0; i < S_NCOUNTS; i++)
            c[i] = strtoll(PQgetvalue(res, r, 3 + i), NULL, 10);
        s_add_counts(out, NULL, c);
        s_add_counts(by_template, PQgetvalue(res, r, 1), c);
        s_add_counts(by_kind, PQgetvalue(res, r, 2), c);
        s_add_counts(by_school, PQgetvalue(res, r, 0), c);
    }
    s_rates(out);
    const char *k;
    json_t *v;
    json_object_foreach(by_template, k, v) s_rates(v);
    json_object_foreach(by_school, k, v) s_rates(v);
    json_object_set_new(out, "by_template", by_template);
    json_object_set_new(out, "by_kind", by_kind);
    if (district) {
        /* Schools with no task at all show as zeros: a gap a district must see. */
        size_t i;
        const json_t *c;
        json_array_foreach(codes, i, c) if (!json_object_get(by_school, json_string_value(c)))
        {
            s_add_counts(by_school, json_string_value(c), zero);
            s_rates(json_object_get(by_school, json_string_value(c)));
        }
        json_object_set_new(out, "schools", by_school);
        json_object_set_new(out, "district", json_string(district));
    } else {
        json_decref(by_school);
        json_object_set_new(out, "school", json_string(school));
    }
    json_object_set_new(out, "from", json_string(from));
    json_object_set_new(out, "to", json_string(to));
    *reply = out;
    out = NULL;
    rc = 0;
out:
    PQclear(res);
    free(codes_s);
    json_decref(codes);
    json_decref(out);
    return rc;
}

/* The inspection records of a school for a period, one row per task, paged by (opens_at, id). */
static int s_ledger(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    const char *school, *from, *to, *after = sc_json_str(req, "after");
    char limit_s[16], after_at[SC_TIME_LEN] = "-infinity", after_id[24] = "0";
    PGresult *res = NULL;
    int rc;

    if (!(school = s_code_arg(req, "school", reply)))
        return -EINVAL;
    if ((rc = s_period(req, &from, &to, reply)) < 0)
        return rc;
    json_int_t limit = sc_json_int(req, "limit", S_LEDGER_LIMIT);
    if (limit < 1 || limit > S_LEDGER_MAX)
        return s_bad(reply, "limit: must be between 1 and %d", S_LEDGER_MAX);
    if (after) {
        long long us, id;
        int used = 0;
        if (sscanf(after, "%lld:%lld%n", &us, &id, &used) != 2 || after[used])
            return s_bad(reply, "after: not a cursor this plugin returned");
        sc_time_format(us, after_at);
        snprintf(after_id, sizeof after_id, "%lld", id);
    }
    snprintf(limit_s, sizeof limit_s, "%lld", (long long)limit + 1);
    const char *p[6] = {school, from, to, after_at, after_id, limit_s};
    res = sc_pq_exec(
        sc_db(ctx),
        "SELECT t.task, t.kind, t.template, t.title, t.area, " INSP_TS(
            "t.opens_at") ","
                          "       " INSP_TS("t.due_at") ", t.status, " INSP_TS(
                              "t.completed_at") ", t.inspector,"
                                                "       count(r.item) FILTER (WHERE r.status = "
                                                "'ok'),"
                                                "       count(r.item) FILTER (WHERE r.status = "
                                                "'fail'),"
                                                "       count(r.item) FILTER (WHERE r.status = "
                                                "'na'),"
                                                "       string_agg(CASE WHEN r.status = 'fail' "
                                                "THEN r.item ||"
                                                "                  COALESCE(': ' || NULLIF(r.note, "
                                                "''), '') END, '; ' ORDER BY r.item),"
                                                "       string_agg(r.hazard, ', ' ORDER BY r.item),"
                                                "       " S_US(
                                                    "t.opens_at") ", t.id"
                                                                  "  FROM inspection.tasks t"
                                                                  "  LEFT JOIN inspection.results "
                                                                  "r ON r.school = t.school AND "
                                                                  "r.task = t.task"
                                                                  " WHERE t.school = $1 AND "
                                                                  "t.local_date BETWEEN $2::date "
                                                                  "AND $3::date"
                                                                  "   AND (t.opens_at, t.id) > "
                                                                  "($4::timestamptz, $5::bigint)"
                                                                  " GROUP BY t.school, t.task "
                                                                  "ORDER BY t.opens_at, t.id LIMIT "
                                                                  "$6",
        6, p, &rc);
    if (!res)
        return rc;
    int n = PQntuples(res);
    bool more = n > limit;
    if (more)
        n = (int)limit;
    json_t *rows = json_array();
    for (int r = 0; r < n; r++) {
        json_t *row = json_array();
        for (int c = 0; c < 15; c++)
            json_array_append_new(row, sc_pq_value(res, r, c));
        json_array_append_new(rows, row);
    }
    json_t *next = json_null();
    if (more) {
        char cursor[64];
        snprintf(cursor, sizeof cursor, "%s:%s", PQgetvalue(res, n - 1, 15),
                 PQgetvalue(res, n - 1, 16));
        json_decref(next);
        next = json_string(cursor);
    }
    *reply = json_pack("{s:[{s:s, s:s, s:s, s:[s,s,s,s,s,s,s,s,s,s,s,s,s,s,s], s:o}], s:o}",
                       "sections", "key", "inspections", "title_zh", "安全检查记录", "title_en",
                       "Inspection records", "columns", "task", "kind", "template", "title", "area",
                       "opened_at", "due_at", "status", "completed_at", "inspector", "ok", "fail",
                       "na", "findings", "hazards", "rows", rows, "next", next);
    PQclear(res);
    return *reply ? 0 : -ENOMEM;
}

static int s_list(sc_ctx_t *ctx, const json_t *req, json_t **reply, const char *sql,
                  const char *key)
{
    const char *school;
    int rc;
    if (!(school = s_code_arg(req, "school", reply)))
        return -EINVAL;
    const char *p[1] = {school};
    PGresult *res = sc_pq_exec(sc_db(ctx), sql, 1, p, &rc);
    if (!res)
        return rc;
    *reply = json_pack("{s:s, s:o}", "school", school, key, sc_pq_rows(res));
    PQclear(res);
    return *reply ? 0 : -ENOMEM;
}

/* One task with its results. */
static int s_task(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    const char *school, *task;
    int rc;
    if (!(school = s_code_arg(req, "school", reply)) || !(task = s_code_arg(req, "task", reply)))
        return -EINVAL;
    const char *p[2] = {school, task};
    PGresult *res = sc_pq_exec(sc_db(ctx),
                               "SELECT " S_TASK_COLS ", items FROM inspection.tasks"
                               " WHERE school = $1 AND task = $2",
                               2, p, &rc);
    if (!res)
        return rc;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return s_bad(reply, "task: unknown task \"%s\" at school %s", task, school);
    }
    json_t *rows = sc_pq_rows(res);
    PQclear(res);
    res = sc_pq_exec(sc_db(ctx),
                     "SELECT item, status, note, photo, hazard FROM inspection.results"
                     " WHERE school = $1 AND task = $2 ORDER BY item",
                     2, p, &rc);
    if (!res) {
        json_decref(rows);
        return rc;
    }
    *reply = json_incref(json_array_get(rows, 0));
    json_object_set_new(*reply, "school", json_string(school));
    json_object_set_new(*reply, "results", sc_pq_rows(res));
    json_decref(rows);
    PQclear(res);
    return 0;
}

int insp_query(sc_ctx_t *ctx, void *state, const json_t *req, json_t **reply)
{
    const char *what = sc_json_str(req, "what");
    if (!what)
        what = "";
    if (strcmp(what, "tasks") == 0)
        return s_tasks(ctx, req, reply);
    if (strcmp(what, "next") == 0)
        return s_next(ctx, state, req, reply);
    if (strcmp(what, "figures") == 0)
        return s_figures(ctx, req, reply);
    if (strcmp(what, "ledger") == 0)
        return s_ledger(ctx, req, reply);
    if (strcmp(what, "task") == 0)
        return s_task(ctx, req, reply);
    if (strcmp(what, "schedules") == 0)
        return s_list(ctx, req, reply,
                      "SELECT schedule, template, rrule, dtstart, assignee_role, assignee,"
                      "       due_within, grace, seasons, exdates, skip_closed, active,"
                      "       " INSP_TS(
                          "expanded_until") " AS expanded_until,"
                                            "       CASE WHEN next_at < 'infinity' THEN " INSP_TS(
                                                "next_at") "       END AS next_at"
                                                           "  FROM inspection.schedules WHERE "
                                                           "school = $1 ORDER BY schedule",
                      "schedules");
    if (strcmp(what, "templates") == 0)
        return s_list(ctx, req, reply,
                      "SELECT template, title, area, items, to_jsonb(triggers) AS triggers,"
                      "       assignee_role"
                      "  FROM inspection.templates WHERE school = $1 ORDER BY template",
                      "templates");
    return s_bad(reply, "what: must be one of tasks, next, figures, ledger, task, schedules, "
                        "templates");
}
