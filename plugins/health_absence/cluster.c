/* health_absence: cluster rules — raised once, grown by further cases, inhibited by wider ones. */
#include "health_absence.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The absences a rule counts, given SQL for its scope, scope key, match mode and
 * value ($1 is the school): non-personal ones of the class, the grade or the
 * school, with the disease, the primary syndrome or any syndrome named.
 */
#define S_MATCH(scope, key, mode, value)                                                           \
    " a.school = $1::text AND a.reason <> 'personal'"                                              \
    " AND CASE " scope " WHEN 'class' THEN a.class = " key " WHEN 'grade' THEN a.grade = " key     \
    "     ELSE true END"                                                                           \
    " AND CASE " mode " WHEN 'disease' THEN a.disease = " value                                    \
    "     WHEN 'primary' THEN a.syndrome = " value " ELSE " value " = ANY (a.syndromes) END"
#define S_MATCH_RULE S_MATCH("r.scope", "r.scope_key", "r.mode", "r.value")

const struct ha_stmt ha_cluster_stmts[] = {
    /*
     * What the rules that count a case find, one row per rule in the order given:
     * the open cluster of the rule's scope and family and whether the case's day is
     * recent enough to join it; without one, the best window (window_days consecutive
     * days containing the day) and how many cases it holds. $1 school, $2 the case's
     * day, $3 quiet days, $4 the rules as JSON [{scope, scope_key, family, mode, value,
     * window_days}]. The date range on the absences is implied by the windows; said
     * outright, it keeps the count an index range scan whatever plan is chosen.
     */
    {"ha_cluster_look",
     "SELECT o.id, o.recent, w.until, coalesce(w.cases, 0)"
     " FROM ROWS FROM (json_to_recordset($4::json) AS (scope text, scope_key text, family text,"
     "                 mode text, value text, window_days int))"
     "      WITH ORDINALITY AS r(scope, scope_key, family, mode, value, window_days, n)"
     " LEFT JOIN LATERAL (SELECT c.id, $2::date >= c.first_date - $3::int AS recent"
     "   FROM health.clusters c WHERE c.school = $1::text AND c.scope = r.scope"
     "   AND c.scope_key = r.scope_key AND c.family = r.family AND c.closed_at IS NULL"
     "   ORDER BY c.id LIMIT 1 FOR UPDATE) o ON true"
     " LEFT JOIN LATERAL (SELECT health.ymd(e::date) AS until, count(a.id) AS cases"
     "   FROM generate_series($2::date::timestamp, ($2::date + (r.window_days - 1))::timestamp,"
     "                        interval '1 day') e"
     "   JOIN health.absences a ON a.date BETWEEN e::date - (r.window_days - 1) AND e::date"
     "   AND a.date BETWEEN $2::date - (r.window_days - 1) AND $2::date + (r.window_days - 1)"
     "   AND" S_MATCH_RULE " WHERE o.id IS NULL"
     "   GROUP BY e ORDER BY count(a.id) DESC, e LIMIT 1) w ON true"
     " ORDER BY r.n"},
    /* A wider open cluster of the same family. $1 school, $2 family, $3 the class's grade. */
    {"ha_cluster_inhibitor", "SELECT id FROM health.clusters WHERE school = $1 AND family = $2"
                             " AND closed_at IS NULL AND (scope = 'school'"
                             "      OR (scope = 'grade' AND $3 <> '' AND scope_key = $3))"
                             " ORDER BY scope = 'school' DESC, id LIMIT 1"},
    {"ha_cluster_insert",
     "INSERT INTO health.clusters (school, district, scope, scope_key, rule, syndrome,"
     " disease, family, window_days, threshold, cases, first_date, last_date,"
     " raised_at, alerted, inhibited_by, close_at)"
     " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::int, $10::int, 0, $11::date,"
     " $11::date, $15::timestamptz, $14::bigint IS NULL, $14::bigint,"
     " (($11::date + $12::int + 1)::timestamp AT TIME ZONE $13)) RETURNING id"},
    /* The cases of the window that raised cluster $8: $1 school, $2 scope, $3 scope key,
     * $4 the window's last day, $5 its length, $6 mode, $7 value. */
    {"ha_cluster_add_window", "INSERT INTO health.cluster_cases (cluster, absence)"
                              " SELECT $8::bigint, a.id FROM health.absences a"
                              " WHERE a.date BETWEEN $4::date - ($5::int - 1) AND $4::date"
                              " AND" S_MATCH("$2::text", "$3::text", "$6::text", "$7::text")},
    {"ha_cluster_add_case", "INSERT INTO health.cluster_cases (cluster, absence)"
                            " VALUES ($1::bigint, $2::bigint) ON CONFLICT DO NOTHING"},
    /* Recounts a cluster and moves its closing day. $1 cluster, $2 quiet days, $3 zone. */
    {"ha_cluster_refresh",
     "WITH agg AS (SELECT count(*) AS n, min(a.date) AS lo, max(a.date) AS hi"
     "  FROM health.cluster_cases cc JOIN health.absences a ON a.id = cc.absence"
     "  WHERE cc.cluster = $1::bigint)"
     " UPDATE health.clusters c SET cases = agg.n, first_date = agg.lo, last_date = agg.hi,"
     " close_at = ((agg.hi + $2::int + 1)::timestamp AT TIME ZONE $3)"
     " FROM agg WHERE c.id = $1::bigint"},
    {"ha_cluster_get", "SELECT cases, health.ymd(first_date), health.ymd(last_date)"
                       " FROM health.clusters WHERE id = $1::bigint"},
    {"ha_cluster_students",
     "SELECT coalesce(a.student, '(anonymised)') FROM health.cluster_cases cc"
     " JOIN health.absences a ON a.id = cc.absence"
     " WHERE cc.cluster = $1::bigint ORDER BY a.date, a.student"},
    {NULL, NULL},
};
#undef S_MATCH_RULE
#undef S_MATCH

/* What a rule counts for this case: a match mode and value, and the family. */
struct s_key {
    const char *mode; /* "disease", "primary" or "any" */
    char value[HA_NAME_MAX + 8];
    char family[HA_NAME_MAX + 8];
    const char *syndrome; /* for the event, or NULL for a disease rule */
};

/* Decides whether rule r counts case c at all, and under which key. */
static bool s_key_of(const struct ha_rule *r, const struct ha_case *c, struct s_key *k)
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
    PGresult *res = ha_run(ctx, "ha_cluster_students", 1, p, rc);
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
    PGresult *res = ha_run(ctx, "ha_cluster_refresh", 3, p, &rc);
    if (!res)
        return rc;
    PQclear(res);
    return 0;
}

/*
 * Raises a new cluster for rule r: the case's best window, ending on `until`,
 * holds at least r->cases matching cases. A school-wide open cluster of the
 * same family (or, for a class, one of its grade) inhibits the alert: the
 * cluster is recorded, not raised.
 */
static int s_raise(sc_ctx_t *ctx, struct ha_state *st, const struct ha_rule *r,
                   const struct ha_case *c, const struct s_key *k, const char *scope_key,
                   const char *until, const char *tz, const char *district)
{
    char window[16], threshold[16], quiet[16], cluster[24], inhibitor[24] = "";
    int rc;
    PGresult *res = NULL;
    json_t *students = NULL;
    const char *scope = ha_scope_names[r->scope];
    snprintf(window, sizeof window, "%d", r->window_days);
    snprintf(threshold, sizeof threshold, "%d", r->cases);
    snprintf(quiet, sizeof quiet, "%d", st->quiet_days);

    /* Inhibition: a wider open cluster of the same family at this school. */
    if (r->scope != HA_SCOPE_SCHOOL) {
        const char *pi[] = {c->school, k->family, r->scope == HA_SCOPE_CLASS ? c->grade : ""};
        res = ha_run(ctx, "ha_cluster_inhibitor", 3, pi, &rc);
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
    res = ha_run(ctx, "ha_cluster_insert", 15, pc, &rc);
    if (!res)
        goto out;
    snprintf(cluster, sizeof cluster, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);

    const char *pa[] = {c->school, scope, scope_key, until, window, k->mode, k->value, cluster};
    res = ha_run(ctx, "ha_cluster_add_window", 8, pa, &rc);
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
    res = ha_run(ctx, "ha_cluster_get", 1, pr, &rc);
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

/* The class, the grade or the school a rule counts a case in ("" for an unknown grade). */
static const char *s_scope_key(const struct ha_rule *r, const struct ha_case *c)
{
    return r->scope == HA_SCOPE_SCHOOL  ? c->school
           : r->scope == HA_SCOPE_GRADE ? c->grade
                                        : c->klass;
}

/*
 * One rule for one case, given what ha_cluster_look found for it (row `row` of
 * look): an open cluster of the same scope and family takes the case (it is
 * "further cases", not a new alert); otherwise the rule may raise a new one,
 * and *raised says so.
 */
static int s_apply(sc_ctx_t *ctx, struct ha_state *st, const struct ha_rule *r,
                   const struct ha_case *c, const struct s_key *k, const PGresult *look, int row,
                   const char *tz, const char *district, bool *raised)
{
    int rc;
    *raised = false;
    if (PQgetisnull(look, row, 0)) {
        if (atoi(PQgetvalue(look, row, 3)) < r->cases)
            return 0;
        *raised = true;
        return s_raise(ctx, st, r, c, k, s_scope_key(r, c), PQgetvalue(look, row, 2), tz, district);
    }
    if (PQgetvalue(look, row, 1)[0] != 't')
        return 0; /* a late report of an old case does not grow today's cluster */
    const char *pa[] = {PQgetvalue(look, row, 0), c->id};
    PGresult *res = ha_run(ctx, "ha_cluster_add_case", 2, pa, &rc);
    if (!res)
        return rc;
    bool added = strcmp(PQcmdTuples(res), "0") != 0;
    PQclear(res);
    return added ? s_refresh(ctx, st, pa[0], tz) : 0;
}

/*
 * Runs ha_cluster_look for the rules which[from..n-1] (indexes into st->rules,
 * keys[] their keys). The result goes to *out (the caller clears it); returns
 * 0 or -errno.
 */
static int s_look(sc_ctx_t *ctx, struct ha_state *st, const struct ha_case *c, const size_t *which,
                  const struct s_key *keys, size_t from, size_t n, PGresult **out)
{
    int rc = -ENOMEM;
    char quiet[16], *text = NULL;
    json_t *rules = json_array();
    for (size_t i = from; rules && i < n; i++) {
        const struct ha_rule *r = &st->rules[which[i]];
        if (json_array_append_new(rules, json_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "scope",
                                                   ha_scope_names[r->scope], "scope_key",
                                                   s_scope_key(r, c), "family", keys[i].family,
                                                   "mode", keys[i].mode, "value", keys[i].value,
                                                   "window_days", r->window_days)) < 0)
            goto out;
    }
    if (!rules || !(text = json_dumps(rules, JSON_COMPACT)))
        goto out;
    snprintf(quiet, sizeof quiet, "%d", st->quiet_days);
    const char *p[] = {c->school, c->date, quiet, text};
    *out = ha_run(ctx, "ha_cluster_look", 4, p, &rc);
out:
    free(text);
    json_decref(rules);
    return rc;
}

/*
 * The rules are applied one after another, widest scope first, and one rule's
 * new cluster changes what the next ones find (it may be theirs, or inhibit
 * them). What they find is read for all of them in one statement, and read
 * again for the rest only after a rule raised a cluster: adding the case to an
 * open cluster changes no other rule's finding (that cluster stays open, and
 * the case's day stays recent for it).
 */
int ha_cluster_case(sc_ctx_t *ctx, struct ha_state *st, const struct ha_case *c, const char *tz,
                    const char *district)
{
    if (c->personal || st->n_rules == 0)
        return 0;
    int rc = -ENOMEM;
    PGresult *look = NULL;
    size_t *which = calloc(st->n_rules, sizeof *which), n = 0;
    struct s_key *keys = calloc(st->n_rules, sizeof *keys);
    if (!which || !keys)
        goto out;
    for (size_t i = 0; i < st->n_rules; i++) {
        /* A grade rule for a class whose grade the directory does not know counts nothing. */
        if (s_key_of(&st->rules[i], c, &keys[n]) && s_scope_key(&st->rules[i], c)[0])
            which[n++] = i;
    }
    rc = 0;
    for (size_t from = 0; from < n && rc == 0;) {
        PQclear(look);
        look = NULL;
        if ((rc = s_look(ctx, st, c, which, keys, from, n, &look)) < 0)
            break;
        bool raised = false;
        for (size_t first = from; from < n && rc == 0 && !raised; from++)
            rc = s_apply(ctx, st, &st->rules[which[from]], c, &keys[from], look,
                         (int)(from - first), tz, district, &raised);
    }
out:
    PQclear(look);
    free(which);
    free(keys);
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
