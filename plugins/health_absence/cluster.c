/* health_absence: cluster rules — raised once, grown by further cases, inhibited by wider ones. */
#include "health_absence.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The absence as the rules see it. */
struct s_case {
    char id[24];
    char school[SC_CODE_MAX + 1];
    char klass[SC_CODE_MAX + 1];
    char grade[HA_NAME_MAX];
    char date[11];
    char syndrome[HA_NAME_MAX]; /* primary, or "" */
    char disease[SC_CODE_MAX + 1];
    json_t *syndromes; /* all of them */
};

/* What a rule counts for this case: a match mode and value, and the family. */
struct s_key {
    const char *mode; /* "disease", "primary" or "any" */
    char value[HA_NAME_MAX + 8];
    char family[HA_NAME_MAX + 8];
    const char *syndrome; /* for the event, or NULL for a disease rule */
};

/* Decides whether rule r counts case c at all, and under which key. */
static bool s_key_of(const struct ha_rule *r, const struct s_case *c, struct s_key *k)
{
    if (r->disease[0]) {
        if (strcmp(r->disease, c->disease) != 0)
            return false;
        k->mode = "disease";
        snprintf(k->value, sizeof k->value, "%s", r->disease);
        snprintf(k->family, sizeof k->family, "disease:%s", r->disease);
        k->syndrome = NULL;
        return true;
    }
    if (strcmp(r->syndrome, "*") == 0) {
        if (!c->syndrome[0])
            return false;
        k->mode = "primary";
        snprintf(k->value, sizeof k->value, "%s", c->syndrome);
    } else {
        bool has = false;
        size_t i;
        const json_t *s;
        json_array_foreach(c->syndromes, i, s) has |=
            strcmp(json_string_value(s), r->syndrome) == 0;
        if (!has)
            return false;
        k->mode = "any";
        snprintf(k->value, sizeof k->value, "%s", r->syndrome);
    }
    snprintf(k->family, sizeof k->family, "%s", ha_family(k->value));
    k->syndrome = k->value;
    return true;
}

/* The cases (pupil codes) of a cluster, as a new array. */
static json_t *s_students(sc_ctx_t *ctx, const char *cluster, int *rc)
{
    const char *p[] = {cluster};
    PGresult *res =
        ha_exec(ctx,
                "SELECT coalesce(a.student, '(anonymised)') FROM health.cluster_cases cc"
                " JOIN health.absences a ON a.id = cc.absence"
                " WHERE cc.cluster = $1::bigint ORDER BY a.date, a.student",
                1, p, rc);
    if (!res)
        return NULL;
    json_t *out = json_array();
    for (int i = 0; i < PQntuples(res); i++)
        json_array_append_new(out, json_string(PQgetvalue(res, i, 0)));
    PQclear(res);
    return out;
}

/* Recounts a cluster after cases were added and moves its closing day. */
static int s_refresh(sc_ctx_t *ctx, struct ha_state *st, const char *cluster, const char *tz)
{
    char quiet[16];
    snprintf(quiet, sizeof quiet, "%d", st->quiet_days);
    const char *p[] = {cluster, quiet, tz};
    int rc;
    PGresult *res = ha_exec(
        ctx,
        "WITH agg AS (SELECT count(*) AS n, min(a.date) AS lo, max(a.date) AS hi"
        "  FROM health.cluster_cases cc JOIN health.absences a ON a.id = cc.absence"
        "  WHERE cc.cluster = $1::bigint)"
        " UPDATE health.clusters c SET cases = agg.n, first_date = agg.lo, last_date = agg.hi,"
        " close_at = ((agg.hi + $2::int + 1)::timestamp AT TIME ZONE $3)"
        " FROM agg WHERE c.id = $1::bigint",
        3, p, &rc);
    if (!res)
        return rc;
    PQclear(res);
    return 0;
}

/*
 * Raises a new cluster for rule r when the case's best window (any run of
 * window_days consecutive days containing its date) holds at least r->cases
 * matching cases. A school-wide open cluster of the same family (or, for a
 * class, one of its grade) inhibits the alert: the cluster is recorded, not
 * raised.
 */
static int s_maybe_raise(sc_ctx_t *ctx, struct ha_state *st, const struct ha_rule *r,
                         const struct s_case *c, const struct s_key *k, const char *scope_key,
                         const char *tz, const char *district)
{
    char window[16], threshold[16], quiet[16], until[11], cluster[24], inhibitor[24] = "";
    int rc;
    PGresult *res = NULL;
    json_t *students = NULL;
    const char *scope = ha_scope_names[r->scope];
    snprintf(window, sizeof window, "%d", r->window_days);
    snprintf(threshold, sizeof threshold, "%d", r->cases);
    snprintf(quiet, sizeof quiet, "%d", st->quiet_days);

    /* $1 school, $2 scope, $3 scope key, $4 day, $5 window, $6 mode, $7 value */
#define S_MATCH                                                                                    \
    " a.school = $1 AND a.reason <> 'personal'"                                                    \
    " AND CASE $2 WHEN 'class' THEN a.class = $3 WHEN 'grade' THEN a.grade = $3 ELSE true END"     \
    " AND CASE $6 WHEN 'disease' THEN a.disease = $7 WHEN 'primary' THEN a.syndrome = $7"          \
    "             ELSE $7 = ANY (a.syndromes) END"
    const char *p[] = {c->school, scope, scope_key, c->date, window, k->mode, k->value};
    res = ha_exec(ctx,
                  "SELECT health.ymd(e::date), count(a.id)"
                  " FROM generate_series($4::date::timestamp,"
                  "        ($4::date + ($5::int - 1))::timestamp, interval '1 day') e"
                  " JOIN health.absences a"
                  "   ON a.date BETWEEN e::date - ($5::int - 1) AND e::date"
                  " AND" S_MATCH " GROUP BY e ORDER BY count(a.id) DESC, e LIMIT 1",
                  7, p, &rc);
    if (!res)
        goto out;
    if (PQntuples(res) == 0 || atoi(PQgetvalue(res, 0, 1)) < r->cases) {
        rc = 0;
        goto out;
    }
    snprintf(until, sizeof until, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);

    /* Inhibition: a wider open cluster of the same family at this school. */
    if (r->scope != HA_SCOPE_SCHOOL) {
        const char *pi[] = {c->school, k->family, r->scope == HA_SCOPE_CLASS ? c->grade : ""};
        res = ha_exec(ctx,
                      "SELECT id FROM health.clusters WHERE school = $1 AND family = $2"
                      " AND closed_at IS NULL AND (scope = 'school'"
                      "      OR (scope = 'grade' AND $3 <> '' AND scope_key = $3))"
                      " ORDER BY scope = 'school' DESC, id LIMIT 1",
                      3, pi, &rc);
        if (!res)
            goto out;
        if (PQntuples(res) == 1)
            snprintf(inhibitor, sizeof inhibitor, "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
    }

    char now_s[SC_TIME_LEN];
    const char *pc[] = {c->school,
                        district,
                        scope,
                        scope_key,
                        r->name,
                        k->syndrome,
                        r->disease[0] ? r->disease : NULL,
                        k->family,
                        window,
                        threshold,
                        until,
                        quiet,
                        tz,
                        inhibitor[0] ? inhibitor : NULL,
                        sc_time_format(sc_now(ctx), now_s)};
    res = ha_exec(ctx,
                  "INSERT INTO health.clusters (school, district, scope, scope_key, rule, syndrome,"
                  " disease, family, window_days, threshold, cases, first_date, last_date,"
                  " raised_at, alerted, inhibited_by, close_at)"
                  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::int, $10::int, 0, $11::date,"
                  " $11::date, $15::timestamptz, $14::bigint IS NULL, $14::bigint,"
                  " (($11::date + $12::int + 1)::timestamp AT TIME ZONE $13)) RETURNING id",
                  15, pc, &rc);
    if (!res)
        goto out;
    snprintf(cluster, sizeof cluster, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);

    const char *pa[] = {c->school, scope, scope_key, until, window, k->mode, k->value, cluster};
    res = ha_exec(ctx,
                  "INSERT INTO health.cluster_cases (cluster, absence)"
                  " SELECT $8::bigint, a.id FROM health.absences a"
                  " WHERE a.date BETWEEN $4::date - ($5::int - 1) AND $4::date AND" S_MATCH,
                  8, pa, &rc);
#undef S_MATCH
    if (!res)
        goto out;
    PQclear(res);
    res = NULL;
    if ((rc = s_refresh(ctx, st, cluster, tz)) < 0)
        goto out;

    if (inhibitor[0]) {
        SC_LOG_INFO(ctx, "cluster %s (%s, %s %s) inhibited by open cluster %s", cluster, r->name,
                    scope, scope_key, inhibitor);
        rc = 0;
        goto out;
    }
    const char *pr[] = {cluster};
    res = ha_exec(ctx,
                  "SELECT cases, health.ymd(first_date), health.ymd(last_date)"
                  " FROM health.clusters WHERE id = $1::bigint",
                  1, pr, &rc);
    if (!res || !(students = s_students(ctx, cluster, &rc)))
        goto out;
    json_t *data =
        json_pack("{s:I, s:s, s:s, s:i, s:i, s:s, s:i, s:s, s:s, s:O}", "cluster",
                  (json_int_t)strtoll(cluster, NULL, 10), "scope", scope, scope, scope_key, "cases",
                  atoi(PQgetvalue(res, 0, 0)), "window_days", r->window_days, "rule", r->name,
                  "threshold", r->cases, "first_date", PQgetvalue(res, 0, 1), "last_date",
                  PQgetvalue(res, 0, 2), "students", students);
    if (data && r->scope != HA_SCOPE_SCHOOL)
        json_object_set_new(data, "school", json_string(c->school));
    if (data && r->scope == HA_SCOPE_CLASS && c->grade[0])
        json_object_set_new(data, "grade", json_string(c->grade));
    if (data && k->syndrome)
        json_object_set_new(data, "syndrome", json_string(k->syndrome));
    if (data && r->disease[0])
        json_object_set_new(data, "disease", json_string(r->disease));
    char id[48];
    snprintf(id, sizeof id, "cluster:%s", cluster);
    rc = ha_emit(ctx, "health.cluster.suspected", c->school, district, id, 0, data);
out:
    PQclear(res);
    json_decref(students);
    return rc;
}

/*
 * One rule for one case: an open cluster of the same scope and family takes
 * the case (it is "further cases", not a new alert); otherwise the rule may
 * raise a new one.
 */
static int s_apply(sc_ctx_t *ctx, struct ha_state *st, const struct ha_rule *r,
                   const struct s_case *c, const char *tz, const char *district)
{
    struct s_key k;
    if (!s_key_of(r, c, &k))
        return 0;
    const char *scope_key = r->scope == HA_SCOPE_SCHOOL  ? c->school
                            : r->scope == HA_SCOPE_GRADE ? c->grade
                                                         : c->klass;
    if (!scope_key[0])
        return 0; /* a grade rule for a class whose grade the directory does not know */
    char quiet[16];
    snprintf(quiet, sizeof quiet, "%d", st->quiet_days);
    const char *p[] = {c->school, ha_scope_names[r->scope], scope_key, k.family, c->date, quiet};
    int rc;
    PGresult *res = ha_exec(ctx,
                            "SELECT id, $5::date >= first_date - $6::int FROM health.clusters"
                            " WHERE school = $1 AND scope = $2 AND scope_key = $3 AND family = $4"
                            " AND closed_at IS NULL ORDER BY id LIMIT 1 FOR UPDATE",
                            6, p, &rc);
    if (!res)
        return rc;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return s_maybe_raise(ctx, st, r, c, &k, scope_key, tz, district);
    }
    char cluster[24];
    bool recent = PQgetvalue(res, 0, 1)[0] == 't';
    snprintf(cluster, sizeof cluster, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    if (!recent)
        return 0; /* a late report of an old case does not grow today's cluster */
    const char *pa[] = {cluster, c->id};
    res = ha_exec(ctx,
                  "INSERT INTO health.cluster_cases (cluster, absence)"
                  " VALUES ($1::bigint, $2::bigint) ON CONFLICT DO NOTHING",
                  2, pa, &rc);
    if (!res)
        return rc;
    bool added = strcmp(PQcmdTuples(res), "0") != 0;
    PQclear(res);
    return added ? s_refresh(ctx, st, cluster, tz) : 0;
}

int ha_cluster_case(sc_ctx_t *ctx, struct ha_state *st, int64_t absence, const char *tz,
                    const char *district)
{
    char id[24];
    snprintf(id, sizeof id, "%" PRId64, absence);
    const char *p[] = {id};
    int rc;
    PGresult *res = ha_exec(ctx,
                            "SELECT school, class, coalesce(grade, ''), health.ymd(date),"
                            " coalesce(syndrome, ''), coalesce(disease, ''),"
                            " array_to_json(syndromes), reason"
                            " FROM health.absences WHERE id = $1::bigint",
                            1, p, &rc);
    if (!res)
        return rc;
    if (PQntuples(res) == 0 || strcmp(PQgetvalue(res, 0, 7), "personal") == 0) {
        PQclear(res);
        return 0;
    }
    struct s_case c;
    memset(&c, 0, sizeof c);
    snprintf(c.id, sizeof c.id, "%s", id);
    snprintf(c.school, sizeof c.school, "%s", PQgetvalue(res, 0, 0));
    snprintf(c.klass, sizeof c.klass, "%s", PQgetvalue(res, 0, 1));
    snprintf(c.grade, sizeof c.grade, "%s", PQgetvalue(res, 0, 2));
    snprintf(c.date, sizeof c.date, "%s", PQgetvalue(res, 0, 3));
    snprintf(c.syndrome, sizeof c.syndrome, "%s", PQgetvalue(res, 0, 4));
    snprintf(c.disease, sizeof c.disease, "%s", PQgetvalue(res, 0, 5));
    c.syndromes = json_loads(PQgetvalue(res, 0, 6), 0, NULL);
    PQclear(res);
    if (!c.syndromes)
        return -ENOMEM;
    rc = 0;
    for (size_t i = 0; i < st->n_rules && rc == 0; i++)
        rc = s_apply(ctx, st, &st->rules[i], &c, tz, district);
    json_decref(c.syndromes);
    return rc;
}

int ha_cluster_close_due(sc_ctx_t *ctx, sc_time_t now)
{
    char when[SC_TIME_LEN];
    const char *p[] = {sc_time_format(now, when)};
    int rc;
    PGresult *res = ha_exec(ctx,
                            "UPDATE health.clusters SET closed_at = close_at"
                            " WHERE closed_at IS NULL AND close_at <= $1::timestamptz",
                            1, p, &rc);
    if (!res)
        return rc;
    PQclear(res);
    return 0;
}
