/* ledger: what falls due with time — the monthly drill check, outing reminders, gate overstays. */
#include "ledger.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows taken per statement; the loops repeat until nothing due is left. */
#define S_BATCH 100

static int s_emit(sc_ctx_t *ctx, const char *type, const char *school, const char *district,
                  sc_time_t at, json_t *data)
{
    if (!data)
        return -ENOMEM;
    int rc = sc_emit(ctx, &(sc_emit_t){.type = type,
                                       .school = school,
                                       .district = district && *district ? district : NULL,
                                       .occurred_at = at,
                                       .data = data});
    json_decref(data);
    return rc;
}

/* A column as a string or NULL when SQL NULL (borrowed from res). */
static const char *s_col(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

/*
 * One school's drill check for one month: counts the evacuation drills (the configured kinds)
 * that started in the calendar month, records the outcome and raises drill.overdue, dated at
 * the check's due instant, when fewer than the minimum were held. Then schedules the next one.
 */
static int s_drill_month(sc_ctx_t *ctx, lg_state_t *st, const PGresult *row_res, int row)
{
    lg_school_t s = {0};
    s.id = atoi(PQgetvalue(row_res, row, 0));
    snprintf(s.code, sizeof s.code, "%s", PQgetvalue(row_res, row, 1));
    snprintf(s.district, sizeof s.district, "%s", PQgetvalue(row_res, row, 2));
    snprintf(s.tz, sizeof s.tz, "%s", PQgetvalue(row_res, row, 3));
    const char *month_text = PQgetvalue(row_res, row, 4);
    sc_time_t due = sc_pq_time(row_res, row, 5, 0);
    int64_t month = 0;
    int rc = 0;
    PGresult *res = NULL;
    if (sc_date_parse(month_text, &month) < 0)
        return -EIO;

    if (st->drill_check) {
        int in_term = lg_month_term_days(st, s.district[0] ? s.district : NULL, month, NULL);
        char id[16], days[16], req[16], when[SC_TIME_LEN];
        snprintf(id, sizeof id, "%d", s.id);
        snprintf(days, sizeof days, "%d", in_term);
        snprintf(req, sizeof req, "%d", st->drill_min_per_month);
        const char *p[7] = {
            id, month_text, s.tz, st->drill_kinds, days, req, sc_time_format(due, when)};
        res =
            sc_pq_exec(sc_db(ctx),
                       "WITH d AS (SELECT count(*) FILTER (WHERE x.starts_at >= m.lo"
                       "                                    AND x.starts_at < m.hi) AS held,"
                       "                  max(x.starts_at) FILTER (WHERE x.starts_at < $7) AS last"
                       "             FROM (SELECT $2::date::timestamp AT TIME ZONE $3 AS lo,"
                       "                          ($2::date + interval '1 month')::timestamp"
                       "                              AT TIME ZONE $3 AS hi) m"
                       "             LEFT JOIN ledger.drills x ON x.school_id = $1"
                       "              AND x.status IN ('running', 'ended')"
                       "              AND x.kind IN (SELECT jsonb_array_elements_text($4::jsonb))),"
                       "      i AS (INSERT INTO ledger.drill_months (school_id, month,"
                       "                   in_term_days, required, held, checked_at)"
                       "            SELECT $1, $2::date, $5::int, $6::int, d.held, $7 FROM d"
                       "            ON CONFLICT (school_id, month) DO UPDATE SET"
                       "              in_term_days = EXCLUDED.in_term_days,"
                       "              required = EXCLUDED.required, held = EXCLUDED.held,"
                       "              checked_at = EXCLUDED.checked_at)"
                       " SELECT d.held, ledger.local_time(d.last, $3) FROM d",
                       7, p, &rc);
        if (!res) {
            SC_LOG_ERR(ctx, "drill check of %s: %s", s.code, PQerrorMessage(sc_db(ctx)));
            return rc;
        }
        long held = atol(PQgetvalue(res, 0, 0));
        if (held < st->drill_min_per_month) {
            char month_label[8];
            snprintf(month_label, sizeof month_label, "%.7s", month_text);
            SC_LOG_INFO(ctx, "%s held %ld evacuation drills in %s (%d required)", s.code, held,
                        month_label, st->drill_min_per_month);
            json_t *kinds = json_loads(st->drill_kinds, 0, NULL);
            rc = s_emit(ctx, "drill.overdue", s.code, s.district, due,
                        json_pack("{s:s, s:s, s:I, s:I, s:o, s:s?, s:i}", "school", s.code, "month",
                                  month_label, "required", (json_int_t)st->drill_min_per_month,
                                  "held", (json_int_t)held, "kinds", kinds ? kinds : json_array(),
                                  "last_drill", s_col(res, 0, 1), "in_term_days", in_term));
            if (rc < 0)
                goto out;
        }
    }
    rc = lg_drill_schedule(ctx, st, &s, lg_month_next(month));
out:
    PQclear(res);
    return rc;
}

static int s_drill_checks(sc_ctx_t *ctx, lg_state_t *st, const char *now)
{
    const char *p[1] = {now};
    for (;;) {
        int rc;
        PGresult *res = sc_pq_exec(sc_db(ctx),
                                   "SELECT id, school, COALESCE(district, ''), timezone,"
                                   "       drill_month::text, drill_due"
                                   "  FROM ledger.schools WHERE drill_due <= $1"
                                   " ORDER BY drill_due, id LIMIT 100 FOR UPDATE",
                                   1, p, &rc);
        if (!res)
            return rc;
        int n = PQntuples(res);
        for (int i = 0; i < n && rc == 0; i++)
            rc = s_drill_month(ctx, st, res, i);
        PQclear(res);
        if (rc < 0 || n == 0)
            return rc;
    }
}

/* An approved outing with no return report: remind, again at intervals, up to the maximum. */
static int s_outing_reminders(sc_ctx_t *ctx, lg_state_t *st, const char *now)
{
    char max[16], every[24];
    snprintf(max, sizeof max, "%d", st->outing_reminder_max);
    snprintf(every, sizeof every, "%lld", (long long)st->outing_reminder_interval);
    const char *p[1] = {now};
    for (;;) {
        int rc;
        PGresult *res = sc_pq_exec(
            sc_db(ctx),
            "SELECT o.id, s.school, COALESCE(s.district, ''), o.outing, o.title,"
            "       ledger.local_time(o.starts_at, s.timezone),"
            "       ledger.local_time(o.ends_at, s.timezone), o.responsible, o.headcount,"
            "       o.reminders + 1, o.reminder_due"
            "  FROM ledger.outings o JOIN ledger.schools s ON s.id = o.school_id"
            " WHERE o.reminder_due <= $1 ORDER BY o.reminder_due, o.id LIMIT 100 FOR UPDATE OF o",
            1, p, &rc);
        if (!res)
            return rc;
        int n = PQntuples(res);
        for (int i = 0; i < n && rc == 0; i++) {
            int count = atoi(PQgetvalue(res, i, 9));
            json_t *data =
                json_pack("{s:s, s:s?, s:s?, s:s?, s:s?, s:i}", "outing", PQgetvalue(res, i, 3),
                          "title", s_col(res, i, 4), "starts_at", s_col(res, i, 5), "ends_at",
                          s_col(res, i, 6), "responsible", s_col(res, i, 7), "reminder", count);
            if (data && s_col(res, i, 8))
                json_object_set_new(data, "headcount", json_integer(atoi(s_col(res, i, 8))));
            rc = s_emit(ctx, "outing.reminder", PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
                        sc_pq_time(res, i, 10, 0), data);
            if (rc < 0)
                break;
            const char *u[4] = {PQgetvalue(res, i, 0), PQgetvalue(res, i, 9), max, every};
            rc = lg_exec(ctx,
                         "UPDATE ledger.outings SET reminders = $2::int,"
                         "   reminder_due = CASE WHEN $2::int < $3::int"
                         "       THEN reminder_due + $4::bigint * interval '1 second' END"
                         " WHERE id = $1",
                         4, u);
        }
        PQclear(res);
        if (rc < 0 || n == 0)
            return rc;
    }
}

/* A visitor still inside at closing time (or past the grace for a late entry). */
static int s_overstays(sc_ctx_t *ctx, const char *now)
{
    const char *p[1] = {now};
    for (;;) {
        int rc;
        PGresult *res = sc_pq_exec(
            sc_db(ctx),
            "SELECT v.id, s.school, COALESCE(s.district, ''), v.visit, v.name, v.organisation,"
            "       v.host, ledger.local_time(v.entered_at, s.timezone),"
            "       ledger.local_time(v.overstay_due, s.timezone), v.overstay_due"
            "  FROM ledger.visits v JOIN ledger.schools s ON s.id = v.school_id"
            " WHERE v.overstay_due <= $1 ORDER BY v.overstay_due, v.id LIMIT 100 FOR UPDATE OF v",
            1, p, &rc);
        if (!res)
            return rc;
        int n = PQntuples(res);
        for (int i = 0; i < n && rc == 0; i++) {
            json_t *data = json_pack("{s:s, s:s?, s:s?, s:s?, s:s?, s:s?}", "visit",
                                     PQgetvalue(res, i, 3), "name", s_col(res, i, 4),
                                     "organisation", s_col(res, i, 5), "host", s_col(res, i, 6),
                                     "entered_at", s_col(res, i, 7), "due_at", s_col(res, i, 8));
            rc = s_emit(ctx, "gate.overstay", PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
                        sc_pq_time(res, i, 9, 0), data);
            if (rc < 0)
                break;
            const char *u[1] = {PQgetvalue(res, i, 0)};
            rc = lg_exec(ctx,
                         "UPDATE ledger.visits SET overstayed = true, overstay_due = NULL"
                         " WHERE id = $1",
                         1, u);
        }
        PQclear(res);
        if (rc < 0 || n == 0)
            return rc;
    }
}

/*
 * Once after each start: a school whose calendar had no more month to check (absolute term
 * dates run out) is scheduled again from the current month, so that terms added to the config
 * take effect.
 */
static int s_reschedule(sc_ctx_t *ctx, lg_state_t *st, const char *now)
{
    const char *p[1] = {now};
    int rc;
    PGresult *res = sc_pq_exec(sc_db(ctx),
                               "SELECT id, school, COALESCE(district, ''), timezone,"
                               "       date_trunc('month', $1::timestamptz AT TIME ZONE timezone)"
                               "           ::date::text"
                               "  FROM ledger.schools WHERE drill_due IS NULL",
                               1, p, &rc);
    if (!res)
        return rc;
    for (int i = 0; i < PQntuples(res) && rc == 0; i++) {
        lg_school_t s = {0};
        int64_t month = 0;
        s.id = atoi(PQgetvalue(res, i, 0));
        snprintf(s.code, sizeof s.code, "%s", PQgetvalue(res, i, 1));
        snprintf(s.district, sizeof s.district, "%s", PQgetvalue(res, i, 2));
        snprintf(s.tz, sizeof s.tz, "%s", PQgetvalue(res, i, 3));
        if (sc_date_parse(PQgetvalue(res, i, 4), &month) == 0)
            rc = lg_drill_schedule(ctx, st, &s, month);
    }
    PQclear(res);
    return rc;
}

int lg_tick(sc_ctx_t *ctx, lg_state_t *st, sc_time_t now, sc_time_t *next)
{
    char when[SC_TIME_LEN];
    int rc;
    sc_time_format(now, when);
    *next = SC_TIME_NEVER;
    if (!st->rescheduled) {
        if ((rc = s_reschedule(ctx, st, when)) < 0)
            return rc;
        st->rescheduled = true;
    }
    if ((rc = s_drill_checks(ctx, st, when)) < 0 || (rc = s_outing_reminders(ctx, st, when)) < 0 ||
        (rc = s_overstays(ctx, when)) < 0)
        return rc;
    PGresult *res = sc_pq_exec(sc_db(ctx),
                               "SELECT LEAST((SELECT min(drill_due) FROM ledger.schools),"
                               "             (SELECT min(reminder_due) FROM ledger.outings),"
                               "             (SELECT min(overstay_due) FROM ledger.visits))",
                               0, NULL, &rc);
    if (!res)
        return rc;
    *next = sc_pq_time(res, 0, 0, SC_TIME_NEVER);
    PQclear(res);
    return 0;
}
