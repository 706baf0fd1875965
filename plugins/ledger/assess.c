/*
 * ledger: the year-end safety assessment. It is computed here, as a query of this plugin, from
 * its own tables and from the journal core.events (the other plugins' events: inspections due
 * and missed, hazards reported, overdue and verified, incidents) — plugins never call each
 * other, and the journal is the record every plugin's events share.
 */
#include "ledger.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *lg_directory_parties(sc_ctx_t *ctx, lg_state_t *st, const char *school)
{
    json_t *out = json_array(), *seen = json_object();
    const json_t *role;
    size_t i;
    json_array_foreach(st->agreement_directory_roles, i, role)
    {
        json_t *people = ctx->host->people_with_role(ctx, school, NULL, json_string_value(role));
        const json_t *p;
        size_t j;
        if (!people) {
            json_decref(out);
            json_decref(seen);
            return NULL;
        }
        json_array_foreach(people, j, p)
        {
            const char *code = sc_json_str(p, "person");
            /* Someone holding two of the roles signs for the first one listed only. */
            if (!code || json_object_get(seen, code))
                continue;
            json_object_set_new(seen, code, json_true());
            json_array_append_new(out, json_pack("{s:O, s:s, s:s?}", "role", role, "party", code,
                                                 "name", sc_json_str(p, "name")));
        }
        json_decref(people);
    }
    char *text = json_dumps(out, JSON_COMPACT);
    json_decref(out);
    json_decref(seen);
    return text;
}

/* The school's local date today, by the daemon's clock. */
static int s_today(sc_ctx_t *ctx, const char *tz, int64_t *today)
{
    char now[SC_TIME_LEN];
    int rc;
    const char *p[2] = {sc_time_format(sc_now(ctx), now), tz};
    PGresult *res =
        lg_pq_text(ctx, "SELECT (($1::timestamptz) AT TIME ZONE $2)::date::text", 2, p, &rc);
    if (!res)
        return rc;
    rc = sc_date_parse(PQgetvalue(res, 0, 0), today);
    PQclear(res);
    return rc;
}

/*
 * The months of [from, to] the drill minimum applies to — those with enough in-term days whose
 * last in-term day falls in the period and has passed (or whose minimum is already met) — and
 * how many of them had at least the minimum of evacuation drills.
 */
int lg_drill_months(sc_ctx_t *ctx, lg_state_t *st, const lg_school_t *s, int64_t from, int64_t to,
                    int *required, int *met)
{
    char id[16], lo[16], hi[16];
    int64_t today = 0;
    int rc;
    *required = *met = 0;
    if ((rc = s_today(ctx, s->tz, &today)) < 0)
        return rc;
    snprintf(id, sizeof id, "%d", s->id);
    int64_t first = lg_month_first(from);
    const char *p[5] = {id, s->tz, sc_date_format(first, lo), sc_date_format(lg_month_next(to), hi),
                        st->drill_kinds};
    PGresult *res = lg_pq_text(ctx,
                               "SELECT to_char(date_trunc('month', starts_at AT TIME ZONE $2),"
                               "               'YYYY-MM-DD'), count(*)"
                               "  FROM ledger.drills WHERE school_id = $1::int"
                               "   AND status IN ('running', 'ended')"
                               "   AND kind IN (SELECT jsonb_array_elements_text($5::jsonb))"
                               "   AND starts_at >= $3::date::timestamp AT TIME ZONE $2"
                               "   AND starts_at < $4::date::timestamp AT TIME ZONE $2"
                               " GROUP BY 1",
                               5, p, &rc);
    if (!res)
        return rc;
    const char *district = s->district[0] ? s->district : NULL;
    int64_t end = to < today + 31 ? to : today + 31; /* later months cannot be over yet */
    for (int64_t m = first; m <= end; m = lg_month_next(m)) {
        int64_t last = m;
        int n = lg_month_term_days(st, district, m, &last);
        if (n == 0 || n < st->drill_min_term_days || last < from || last > to)
            continue;
        char key[16];
        long held = 0;
        sc_date_format(m, key);
        for (int r = 0; r < PQntuples(res); r++)
            if (strcmp(PQgetvalue(res, r, 0), key) == 0)
                held = atol(PQgetvalue(res, r, 1));
        bool ok = held >= st->drill_min_per_month;
        if (last >= today && !ok)
            continue; /* the month is not over yet */
        (*required)++;
        *met += ok;
    }
    PQclear(res);
    return 0;
}

/* Who must sign this period's agreements, how many of them did, and how many signed at all. */
static int s_agreement_totals(sc_ctx_t *ctx, lg_state_t *st, const lg_school_t *s, const char *from,
                              const char *to, long *required, long *ok)
{
    char id[16];
    int rc;
    char *parties = lg_directory_parties(ctx, st, s->code);
    if (!parties)
        return -EAGAIN;
    snprintf(id, sizeof id, "%d", s->id);
    const char *p[7] = {id, NULL, from, to, NULL, NULL, parties};
    PGresult *res = lg_pq_text(ctx,
                               LG_AGREEMENT_CTE
                               "SELECT (SELECT count(*) FROM req),"
                               "       (SELECT count(*) FROM req JOIN sig"
                               "                              USING (term, party_role, party))",
                               7, p, &rc);
    free(parties);
    if (!res)
        return rc;
    *required = atol(PQgetvalue(res, 0, 0));
    *ok = atol(PQgetvalue(res, 0, 1));
    PQclear(res);
    return 0;
}

static int s_has_journal(sc_ctx_t *ctx, bool *has)
{
    int rc;
    PGresult *res = lg_pq_text(ctx, "SELECT to_regclass('core.events') IS NOT NULL", 0, NULL, &rc);
    if (!res)
        return rc;
    *has = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    return 0;
}

/* What the other plugins' events say about the school over the period. */
static const char s_journal_sql[] =
    "WITH b AS (SELECT $3::date::timestamp AT TIME ZONE $2 AS lo,"
    "                  ($4::date + 1)::timestamp AT TIME ZONE $2 AS hi)"
    " SELECT count(*) FILTER (WHERE e.type = 'inspection.due'),"
    "        count(*) FILTER (WHERE e.type = 'inspection.missed'),"
    "        count(*) FILTER (WHERE e.type = 'inspection.completed'),"
    "        count(DISTINCT e.data->>'hazard') FILTER (WHERE e.type = 'hazard.reported'),"
    "        count(DISTINCT e.data->>'hazard') FILTER (WHERE e.type = 'hazard.verified'"
    "                                                  AND e.data->>'passed' = 'true'),"
    "        count(*) FILTER (WHERE e.type = 'incident.reported'"
    "                           AND upper(e.data->>'severity') = 'I'),"
    "        count(*) FILTER (WHERE e.type = 'incident.reported'"
    "                           AND upper(e.data->>'severity') = 'II'),"
    "        count(*) FILTER (WHERE e.type = 'incident.reported'"
    "                           AND upper(e.data->>'severity') = 'III'),"
    "        count(*) FILTER (WHERE e.type = 'incident.reported'"
    "                           AND upper(e.data->>'severity') = 'IV'),"
    "        (SELECT count(DISTINCT r.data->>'hazard') FROM core.events r, b"
    "          WHERE r.school = $1 AND r.type = 'hazard.reported'"
    "            AND r.occurred_at >= b.lo AND r.occurred_at < b.hi"
    "            AND EXISTS (SELECT 1 FROM core.events o WHERE o.school = $1"
    "                          AND o.type = 'hazard.overdue'"
    "                          AND o.data->>'hazard' = r.data->>'hazard'))"
    "   FROM core.events e, b"
    "  WHERE e.school = $1 AND e.occurred_at >= b.lo AND e.occurred_at < b.hi"
    "    AND e.type IN ('inspection.due', 'inspection.missed', 'inspection.completed',"
    "                   'hazard.reported', 'hazard.verified', 'incident.reported')";

enum {
    J_DUE,
    J_MISSED,
    J_DONE,
    J_HZ_REPORTED,
    J_HZ_CLOSED,
    J_I,
    J_II,
    J_III,
    J_IV,
    J_HZ_OVERDUE,
    J_COUNT
};

static double s_round(double v, double unit)
{
    return round(v / unit) * unit;
}

/* Adds one component: its rate (null without data) and the weight it carries. */
static void s_component(json_t *list, const json_t *weights, const char *name, const char *measure,
                        long done, long expected, bool known)
{
    bool rated = known && expected > 0;
    double exact = rated ? (double)done / (double)expected : 0;
    json_array_append_new(
        list, json_pack("{s:s, s:s, s:o, s:o, s:o, s:f, s:f}", "component", name, "measure",
                        measure, "done", known ? json_integer(done) : json_null(), "expected",
                        known ? json_integer(expected) : json_null(), "rate",
                        rated ? json_real(s_round(exact, 0.0001)) : json_null(), "weight",
                        sc_json_num(weights, name, 0.0), "exact", exact));
}

/*
 * The assessment's score: the weighted mean of the components that have data, as 0..100
 * points shared out by weight, less the incident penalties, never below 0.
 */
static void s_score(json_t *a, const json_t *penalties, const long incidents[4])
{
    static const char *const sev[] = {"I", "II", "III", "IV"};
    json_t *list = json_object_get(a, "components"), *c;
    double wsum = 0, total = 0, penalty = 0;
    size_t i;
    json_array_foreach(list, i, c) if (json_is_number(json_object_get(c, "rate"))) wsum +=
        sc_json_num(c, "weight", 0);
    json_array_foreach(list, i, c)
    {
        json_t *rate = json_object_get(c, "rate");
        if (!json_is_number(rate) || wsum <= 0) {
            json_object_set_new(c, "points", json_null());
            continue;
        }
        double pts = 100.0 * sc_json_num(c, "weight", 0) * sc_json_num(c, "exact", 0) / wsum;
        json_object_set_new(c, "points", json_real(s_round(pts, 0.01)));
        total += pts;
    }
    json_t *inc = json_object();
    long n = 0;
    for (int k = 0; k < 4; k++) {
        json_object_set_new(inc, sev[k], json_integer(incidents[k]));
        penalty += (double)incidents[k] * sc_json_num(penalties, sev[k], 0);
        n += incidents[k];
    }
    json_object_set_new(a, "incidents", inc);
    json_object_set_new(a, "incidents_total", json_integer(n));
    json_array_foreach(list, i, c) json_object_del(c, "exact");
    json_object_set_new(a, "penalty", json_real(s_round(penalty, 0.01)));
    json_object_set_new(
        a, "score", wsum > 0 ? json_real(s_round(fmax(0.0, total - penalty), 0.01)) : json_null());
}

json_t *lg_assess(sc_ctx_t *ctx, lg_state_t *st, const lg_school_t *s, const char *from,
                  const char *to, int *rc)
{
    long j[J_COUNT] = {0}, sessions = 0, agreements_required = 0, agreements_ok = 0;
    int months = 0, met = 0;
    int64_t from_day, to_day;
    bool journal = false;
    char id[16];
    PGresult *res = NULL;
    json_t *a = NULL;
    if (sc_date_parse(from, &from_day) < 0 || sc_date_parse(to, &to_day) < 0) {
        *rc = -EINVAL;
        return NULL;
    }
    if ((*rc = s_has_journal(ctx, &journal)) < 0)
        return NULL;
    if (journal) {
        const char *p[4] = {s->code, s->tz, from, to};
        if (!(res = lg_pq_text(ctx, s_journal_sql, 4, p, rc)))
            return NULL;
        for (int k = 0; k < J_COUNT; k++)
            j[k] = atol(PQgetvalue(res, 0, k));
        PQclear(res);
    }
    snprintf(id, sizeof id, "%d", s->id);
    const char *p[4] = {id, s->tz, from, to};
    if (!(res = lg_pq_text(ctx,
                           "SELECT count(*) FROM ledger.education WHERE school_id = $1::int"
                           "   AND held_at >= $3::date::timestamp AT TIME ZONE $2"
                           "   AND held_at < ($4::date + 1)::timestamp AT TIME ZONE $2",
                           4, p, rc)))
        return NULL;
    sessions = atol(PQgetvalue(res, 0, 0));
    PQclear(res);
    if ((*rc = lg_drill_months(ctx, st, s, from_day, to_day, &months, &met)) < 0 ||
        (*rc = s_agreement_totals(ctx, st, s, from, to, &agreements_required, &agreements_ok)) < 0)
        return NULL;

    long target = (long)st->education_per_month * months;
    json_t *list = json_array();
    s_component(list, st->weights, "inspections",
                "按时检查/应检查 inspections done (due − missed) / due",
                j[J_DUE] > j[J_MISSED] ? j[J_DUE] - j[J_MISSED] : 0, j[J_DUE], journal);
    s_component(list, st->weights, "hazards",
                "未逾期隐患/发现隐患 hazards never overdue / reported",
                j[J_HZ_REPORTED] - j[J_HZ_OVERDUE], j[J_HZ_REPORTED], journal);
    s_component(list, st->weights, "drills",
                "达标月份/应演练月份 months with the drill minimum / months checked", met, months,
                true);
    s_component(list, st->weights, "education",
                "安全教育次数/应开展 sessions held / expected (at most expected)",
                sessions < target ? sessions : target, target, true);
    s_component(list, st->weights, "agreements", "已签责任书/应签 agreements signed / required",
                agreements_ok, agreements_required, true);
    a = json_pack("{s:s, s:s, s:s, s:b, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I}}", "school",
                  s->code, "from", from, "to", to, "journal", journal, "components", list,
                  "figures", "inspections_completed", (json_int_t)j[J_DONE], "hazards_reported",
                  (json_int_t)j[J_HZ_REPORTED], "hazards_overdue", (json_int_t)j[J_HZ_OVERDUE],
                  "hazards_closed", (json_int_t)j[J_HZ_CLOSED], "education_sessions",
                  (json_int_t)sessions, "drill_months_checked", (json_int_t)months,
                  "drill_months_met", (json_int_t)met);
    if (!a) {
        *rc = -ENOMEM;
        return NULL;
    }
    long incidents[4] = {j[J_I], j[J_II], j[J_III], j[J_IV]};
    s_score(a, st->penalties, incidents);
    *rc = 0;
    return a;
}

json_t *lg_assess_rows(const json_t *a, const json_t *penalties)
{
    static const char *const sev[] = {"I", "II", "III", "IV"};
    json_t *rows = json_array();
    const json_t *c;
    size_t i;
    json_array_foreach(json_object_get(a, "components"), i, c) json_array_append_new(
        rows, json_pack("[s, s, O, O, O, O, O]", sc_json_str(c, "component"),
                        sc_json_str(c, "measure"), json_object_get(c, "done"),
                        json_object_get(c, "expected"), json_object_get(c, "rate"),
                        json_object_get(c, "weight"), json_object_get(c, "points")));
    const json_t *inc = json_object_get(a, "incidents");
    for (int k = 0; k < 4; k++) {
        char name[32], measure[128];
        json_int_t n = sc_json_int(inc, sev[k], 0);
        double each = sc_json_num(penalties, sev[k], 0);
        if (n == 0)
            continue;
        snprintf(name, sizeof name, "incidents_%s", sev[k]);
        snprintf(measure, sizeof measure,
                 "%s级事件（每起扣分）incidents of grade %s (points off each)", sev[k], sev[k]);
        json_array_append_new(rows, json_pack("[s, s, I, n, n, f, f]", name, measure, n, each,
                                              s_round(-each * (double)n, 0.01)));
    }
    json_array_append_new(rows, json_pack("[s, s, n, n, n, n, O]", "score",
                                          "总分 total: component points less incident penalties",
                                          json_object_get(a, "score")));
    return rows;
}

/* Per person: the parts each responsible person had, from the journal and from this plugin. */
#define S_PEOPLE_HEAD                                                                              \
    "WITH b AS (SELECT $3::date::timestamp AT TIME ZONE $2 AS lo,"                                 \
    "                  ($4::date + 1)::timestamp AT TIME ZONE $2 AS hi),"                          \
    " j (person, insp, hz_a, hz_o, hz_c, dr, ed, ou, ag) AS ("
#define S_PEOPLE_JOURNAL                                                                           \
    " SELECT COALESCE(e.data->>'inspector', e.actor), 1, 0, 0, 0, 0, 0, 0, 0"                      \
    "   FROM core.events e, b WHERE e.school = $7 AND e.type = 'inspection.completed'"             \
    "    AND e.occurred_at >= b.lo AND e.occurred_at < b.hi"                                       \
    " UNION ALL"                                                                                   \
    " SELECT a.person, 0, 1,"                                                                      \
    "        (EXISTS (SELECT 1 FROM core.events o WHERE o.school = $7"                             \
    "                   AND o.type = 'hazard.overdue' AND o.data->>'hazard' = a.hazard))::int,"    \
    "        (EXISTS (SELECT 1 FROM core.events v WHERE v.school = $7"                             \
    "                   AND v.type = 'hazard.verified' AND v.data->>'hazard' = a.hazard"           \
    "                   AND v.data->>'passed' = 'true'))::int, 0, 0, 0, 0"                         \
    "   FROM (SELECT DISTINCT ON (e.data->>'hazard') e.data->>'hazard' AS hazard,"                 \
    "                e.data->>'assignee' AS person"                                                \
    "           FROM core.events e, b WHERE e.school = $7 AND e.type = 'hazard.assigned'"          \
    "            AND e.occurred_at >= b.lo AND e.occurred_at < b.hi"                               \
    "          ORDER BY e.data->>'hazard', e.id DESC) a"                                           \
    " UNION ALL"
#define S_PEOPLE_OWN                                                                               \
    " SELECT x.responsible, 0, 0, 0, 0, 1, 0, 0, 0 FROM ledger.drills x, b"                        \
    "  WHERE x.school_id = $1::int AND x.status IN ('running', 'ended')"                           \
    "    AND x.starts_at >= b.lo AND x.starts_at < b.hi"                                           \
    " UNION ALL"                                                                                   \
    " SELECT x.teacher, 0, 0, 0, 0, 0, 1, 0, 0 FROM ledger.education x, b"                         \
    "  WHERE x.school_id = $1::int AND x.held_at >= b.lo AND x.held_at < b.hi"                     \
    " UNION ALL"                                                                                   \
    " SELECT x.responsible, 0, 0, 0, 0, 0, 0, 1, 0 FROM ledger.outings x, b"                       \
    "  WHERE x.school_id = $1::int AND x.status IN ('approved', 'returned')"                       \
    "    AND x.starts_at >= b.lo AND x.starts_at < b.hi"                                           \
    " UNION ALL"                                                                                   \
    " SELECT x.party, 0, 0, 0, 0, 0, 0, 0, 1 FROM ledger.agreements x"                             \
    "  WHERE x.school_id = $1::int AND x.party_role IN ('head_teacher', 'teacher', 'staff',"       \
    "                                                  'guard', 'department')"                     \
    "    AND x.signed_on BETWEEN $3::date AND $4::date)"
#define S_PEOPLE_TAIL                                                                              \
    " SELECT person, json_build_array(person, sum(insp), sum(hz_a), sum(hz_o), sum(hz_c),"         \
    "                                 sum(dr), sum(ed), sum(ou), sum(ag))"                         \
    "   FROM j WHERE person IS NOT NULL"                                                           \
    "    AND ($5::text IS NULL OR person COLLATE \"C\" > $5::text)"                                \
    "  GROUP BY person ORDER BY person COLLATE \"C\" LIMIT $6::int"

static const char s_people_journal_sql[] =
    S_PEOPLE_HEAD S_PEOPLE_JOURNAL S_PEOPLE_OWN S_PEOPLE_TAIL;
static const char s_people_own_sql[] = S_PEOPLE_HEAD S_PEOPLE_OWN S_PEOPLE_TAIL;

int lg_assess_people(sc_ctx_t *ctx, lg_state_t *st, const lg_school_t *s, const char *from,
                     const char *to, const char *after, int limit, json_t *rows, json_t *keys)
{
    (void)st;
    bool journal = false;
    char id[16], lim[16];
    int rc;
    if ((rc = s_has_journal(ctx, &journal)) < 0)
        return rc;
    snprintf(id, sizeof id, "%d", s->id);
    snprintf(lim, sizeof lim, "%d", limit);
    const char *p[7] = {id, s->tz, from, to, after, lim, s->code};
    PGresult *res = lg_pq_text(ctx, journal ? s_people_journal_sql : s_people_own_sql, 7, p, &rc);
    if (!res)
        return rc;
    int n = PQntuples(res);
    for (int i = 0; i < n; i++) {
        const char *code = PQgetvalue(res, i, 0);
        json_t *row = sc_pq_value(res, i, 1);
        json_t *person = ctx->host->person(ctx, code);
        json_array_insert_new(row, 1,
                              sc_json_str(person, "name") ? json_string(sc_json_str(person, "name"))
                                                          : json_null());
        json_decref(person);
        json_array_append_new(keys, json_string(code));
        json_array_append_new(rows, row);
    }
    PQclear(res);
    return n;
}
