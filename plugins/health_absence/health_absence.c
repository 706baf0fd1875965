/* health_absence: morning checks, illness absences, same-day tracing, clusters, EARS, reports. */
#include "health_absence.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const struct sc_migration health_absence_migrations[];

const char *const ha_scope_names[] = {"school", "grade", "class", NULL};

/* ---- shared helpers ------------------------------------------------------ */

PGresult *ha_exec(sc_ctx_t *ctx, const char *sql, int n, const char *const *params, int *rc)
{
    PGresult *res = sc_pq_exec(sc_db(ctx), sql, n, params, rc);
    if (!res)
        SC_LOG_ERR(ctx, "query failed: %s", PQerrorMessage(sc_db(ctx)));
    return res;
}

PGresult *ha_run(sc_ctx_t *ctx, const char *name, int n, const char *const *params, int *rc)
{
    PGconn *conn = sc_db(ctx);
    PGresult *res = PQexecPrepared(conn, name, n, params, NULL, NULL, 0);
    ExecStatusType status = PQresultStatus(res);
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
        *rc = 0;
        return res;
    }
    *rc = sc_pq_error(conn, res);
    SC_LOG_ERR(ctx, "%s failed: %s", name, PQerrorMessage(conn));
    PQclear(res);
    return NULL;
}

int ha_prepare(sc_ctx_t *ctx, const struct ha_stmt *stmts)
{
    PGconn *conn = sc_db(ctx);
    int rc;
    PGresult *have = ha_exec(ctx, "SELECT name FROM pg_prepared_statements", 0, NULL, &rc);
    if (!have)
        return rc;
    for (size_t i = 0; stmts[i].name && rc == 0; i++) {
        /* A statement of ours already there is this very text: the names are the
         * plugin's own and only this build of it runs on the connection. */
        bool there = false;
        for (int r = 0; r < PQntuples(have) && !there; r++)
            there = strcmp(PQgetvalue(have, r, 0), stmts[i].name) == 0;
        if (there)
            continue;
        PGresult *res = PQprepare(conn, stmts[i].name, stmts[i].sql, 0, NULL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            rc = sc_pq_error(conn, res);
            SC_LOG_ERR(ctx, "could not prepare %s: %s", stmts[i].name, PQerrorMessage(conn));
        }
        PQclear(res);
    }
    PQclear(have);
    return rc;
}

void ha_school_tz(sc_ctx_t *ctx, const char *school, char *tz)
{
    json_t *s = school ? ctx->host->school(ctx, school) : NULL;
    const char *z = sc_json_str(s, "timezone");
    if (!z || !*z)
        z = ctx->host->default_timezone(ctx);
    snprintf(tz, HA_TZ_MAX, "%s", z ? z : "UTC");
    json_decref(s);
}

int ha_local_date(sc_ctx_t *ctx, sc_time_t t, const char *tz, char *date)
{
    char when[SC_TIME_LEN];
    const char *p[] = {sc_time_format(t, when), tz};
    int rc;
    PGresult *res =
        ha_exec(ctx, "SELECT health.ymd(($1::timestamptz AT TIME ZONE $2)::date)", 2, p, &rc);
    if (!res)
        return rc;
    snprintf(date, 11, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return 0;
}

int ha_next_local(sc_ctx_t *ctx, const char *from, const char *hhmm, const char *tz,
                  const char *days, sc_time_t after, sc_time_t *out)
{
    char when[SC_TIME_LEN];
    const char *p[] = {from, hhmm, tz, days, sc_time_format(after, when)};
    int rc;
    PGresult *res = ha_run(ctx, "ha_next_local", 5, p, &rc);
    if (!res)
        return rc;
    *out = sc_pq_time(res, 0, 0, SC_TIME_NEVER);
    PQclear(res);
    return *out == SC_TIME_NEVER ? -EINVAL : 0;
}

int ha_emit(sc_ctx_t *ctx, const char *type, const char *school, const char *district,
            const char *id, sc_time_t at, json_t *data)
{
    if (!data)
        return -ENOMEM;
    int rc = sc_emit(ctx, &(sc_emit_t){.type = type,
                                       .school = school,
                                       .district = district,
                                       .id = id,
                                       .occurred_at = at,
                                       .data = data});
    json_decref(data);
    if (rc < 0)
        SC_LOG_ERR(ctx, "could not emit %s: %s", type, strerror(-rc));
    return rc;
}

/* Answers an event the plugin cannot apply with health.rejected; the tables stay as they were. */
static int s_reject(sc_ctx_t *ctx, const sc_event_t *ev, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int s_reject(sc_ctx_t *ctx, const sc_event_t *ev, const char *fmt, ...)
{
    char reason[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    const char *student = sc_json_str(ev->data, "student");
    json_t *data =
        json_pack("{s:I, s:s, s:s?, s:s?, s:s}", "event", (json_int_t)ev->id, "type", ev->type,
                  "student", student, "date", sc_json_str(ev->data, "date"), "reason", reason);
    SC_LOG_INFO(ctx, "rejected event %" PRId64 " (%s): %s", ev->id, ev->type, reason);
    return ha_emit(ctx, "health.rejected", ev->school, ev->district, NULL, 0, data);
}

/* ---- config -------------------------------------------------------------- */

/* "HH:MM", 00:00 to 23:59, copied into out (8 bytes). */
static int s_hhmm(const json_t *cfg, const char *key, char *out)
{
    const char *s = sc_json_str(cfg, key);
    if (!s || strlen(s) != 5 || s[2] != ':' || strspn(s, "0123456789:") != 5)
        return -EINVAL;
    int h = atoi(s), m = atoi(s + 3);
    if (h > 23 || m > 59)
        return -EINVAL;
    snprintf(out, 8, "%s", s);
    return 0;
}

static int s_copy_name(char *dst, const char *src)
{
    if (!src)
        return -EINVAL;
    if (strlen(src) >= HA_NAME_MAX)
        return -EINVAL;
    strcpy(dst, src);
    return 0;
}

static bool s_in(const char *s, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

/* One entry of cluster_rules; writes what is wrong into why. */
static int s_parse_rule(const json_t *r, struct ha_rule *out, char *why, size_t wlen)
{
    static const char *const known[] = {"rule",  "scope",       "syndrome", "disease",
                                        "cases", "window_days", NULL};
    if (!json_is_object(r))
        return sc_fail(why, wlen, "expected a group");
    if (sc_check_known(r, "", known, why, wlen) < 0)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    if (s_copy_name(out->name, sc_json_str(r, "rule")) < 0 || !out->name[0])
        return sc_fail(why, wlen, "rule: a name is required");
    const char *scope = sc_json_str(r, "scope");
    if (!scope || !s_in(scope, ha_scope_names))
        return sc_fail(why, wlen, "scope: must be one of school, grade, class");
    out->scope = strcmp(scope, "school") == 0  ? HA_SCOPE_SCHOOL
                 : strcmp(scope, "grade") == 0 ? HA_SCOPE_GRADE
                                               : HA_SCOPE_CLASS;
    const char *syn = sc_json_str(r, "syndrome"), *dis = sc_json_str(r, "disease");
    if (!!syn == !!dis)
        return sc_fail(why, wlen, "give one of syndrome or disease");
    if (syn && strcmp(syn, "*") != 0 && !s_in(syn, ha_syndrome_names))
        return sc_fail(why, wlen,
                       "syndrome: must be \"*\" or one of respiratory, ili, gastrointestinal, "
                       "rash, jaundice, eye, fever");
    if ((syn && s_copy_name(out->syndrome, syn) < 0) ||
        (dis && (s_copy_name(out->disease, dis) < 0 || !*dis)))
        return sc_fail(why, wlen, "disease: must be a short code");
    /* Disease codes compare without case: events' codes are stored lower-case. */
    for (char *p = out->disease; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    out->cases = (int)sc_json_int(r, "cases", 0);
    out->window_days = (int)sc_json_int(r, "window_days", 0);
    if (out->cases < 1 || out->cases > 100000)
        return sc_fail(why, wlen, "cases: must be an integer from 1");
    if (out->window_days < 1 || out->window_days > 60)
        return sc_fail(why, wlen, "window_days: must be an integer from 1 to 60");
    return 0;
}

static int s_alpha_z(const json_t *cfg, const char *key, double *z)
{
    double a = sc_json_num(cfg, key, -1.0);
    if (!(a > 0.0 && a < 0.5))
        return -EINVAL;
    *z = ha_qnorm(1.0 - a);
    return 0;
}

/*
 * Reads the config section (defaults already filled by the host) into st.
 * Refusals are logged naming the key and the rule.
 */
static int s_configure(sc_ctx_t *ctx, struct ha_state *st)
{
    const json_t *cfg = sc_config(ctx);
    char why[200];
    size_t i;
    const json_t *v;

    if (s_hhmm(cfg, "trace_cutoff", st->cutoff) < 0 ||
        s_hhmm(cfg, "report_time", st->report_time) < 0 ||
        s_hhmm(cfg, "retention_time", st->retention_time) < 0) {
        SC_LOG_ERR(ctx, "trace_cutoff, report_time and retention_time must be \"HH:MM\"");
        return -EINVAL;
    }

    const json_t *days = json_object_get(cfg, "school_days");
    size_t off = 0;
    bool seen[8] = {false};
    st->n_school_days = 0;
    off += (size_t)snprintf(st->school_days + off, sizeof st->school_days - off, "{");
    json_array_foreach(days, i, v)
    {
        json_int_t d = json_is_integer(v) ? json_integer_value(v) : 0;
        if (d < 1 || d > 7 || seen[d]) {
            SC_LOG_ERR(ctx, "school_days[%zu]: must be distinct ISO weekdays 1 (Monday) to 7", i);
            return -EINVAL;
        }
        seen[d] = true;
        off += (size_t)snprintf(st->school_days + off, sizeof st->school_days - off, "%s%d",
                                st->n_school_days ? "," : "", (int)d);
        st->n_school_days++;
    }
    snprintf(st->school_days + off, sizeof st->school_days - off, "}");
    if (st->n_school_days == 0) {
        SC_LOG_ERR(ctx, "school_days: must name at least one weekday");
        return -EINVAL;
    }

    const json_t *rules = json_object_get(cfg, "cluster_rules");
    st->n_rules = json_array_size(rules);
    st->rules = calloc(st->n_rules ? st->n_rules : 1, sizeof *st->rules);
    if (!st->rules)
        return -ENOMEM;
    /* Widest scope first, so a school-wide cluster exists before the class
     * rules look for one that inhibits them; config order otherwise. */
    size_t n = 0;
    for (int scope = HA_SCOPE_SCHOOL; scope <= HA_SCOPE_CLASS; scope++) {
        json_array_foreach(rules, i, v)
        {
            struct ha_rule r;
            if (s_parse_rule(v, &r, why, sizeof why) < 0) {
                SC_LOG_ERR(ctx, "cluster_rules[%zu]: %s", i, why);
                return -EINVAL;
            }
            if ((int)r.scope == scope)
                st->rules[n++] = r;
        }
    }
    for (size_t a = 0; a < n; a++)
        for (size_t b = a + 1; b < n; b++)
            if (strcmp(st->rules[a].name, st->rules[b].name) == 0) {
                SC_LOG_ERR(ctx, "cluster_rules: rule \"%s\" is named twice", st->rules[a].name);
                return -EINVAL;
            }

    json_t *diseases = json_array(), *syndromes = json_array();
    st->rule_similar = "false";
    for (size_t k = 0; k < n; k++) {
        const struct ha_rule *r = &st->rules[k];
        if (r->disease[0])
            json_array_append_new(diseases, json_string(r->disease));
        else if (strcmp(r->syndrome, "*") == 0)
            st->rule_similar = "true";
        else
            json_array_append_new(syndromes, json_string(r->syndrome));
    }
    st->rule_diseases = json_dumps(diseases, JSON_COMPACT);
    st->rule_syndromes = json_dumps(syndromes, JSON_COMPACT);
    json_decref(diseases);
    json_decref(syndromes);
    if (!st->rule_diseases || !st->rule_syndromes)
        return -ENOMEM;

    st->quiet_days = (int)sc_json_int(cfg, "cluster_quiet_days", 7);
    if (st->quiet_days < 1 || st->quiet_days > 90) {
        SC_LOG_ERR(ctx, "cluster_quiet_days: must be between 1 and 90");
        return -EINVAL;
    }

    json_array_foreach(json_object_get(cfg, "ears_methods"), i, v)
    {
        const char *m = json_string_value(v);
        int k = -1;
        for (int a = 0; m && a < HA_EARS_N; a++)
            if (strcmp(m, ha_ears_names[a]) == 0)
                k = a;
        if (k < 0) {
            SC_LOG_ERR(ctx, "ears_methods[%zu]: must be one of C1, C2, C3", i);
            return -EINVAL;
        }
        st->ears_on[k] = true;
    }
    st->ears_baseline = (int)sc_json_int(cfg, "ears_baseline", 7);
    if (st->ears_baseline < 3 || st->ears_baseline > 28) {
        SC_LOG_ERR(ctx, "ears_baseline: must be between 3 and 28");
        return -EINVAL;
    }
    double z12, z3;
    if (s_alpha_z(cfg, "ears_alpha", &z12) < 0 || s_alpha_z(cfg, "ears_c3_alpha", &z3) < 0) {
        SC_LOG_ERR(ctx, "ears_alpha, ears_c3_alpha: must be between 0 and 0.5");
        return -EINVAL;
    }
    st->ears_z[HA_EARS_C1] = st->ears_z[HA_EARS_C2] = z12;
    st->ears_z[HA_EARS_C3] = z3;
    st->ears_min_sigma = sc_json_num(cfg, "ears_min_sigma", 1.0);
    if (!(st->ears_min_sigma >= 0.0) || !isfinite(st->ears_min_sigma)) {
        SC_LOG_ERR(ctx, "ears_min_sigma: must not be negative");
        return -EINVAL;
    }
    st->ears_rate = sc_json_bool(cfg, "ears_rate", true);

    st->retention_secs = sc_json_int(cfg, "retention", 0);
    if (st->retention_secs < 86400) {
        SC_LOG_ERR(ctx, "retention: must be at least one day");
        return -EINVAL;
    }
    const char *mode = sc_json_str(cfg, "retention_mode");
    if (!mode || (strcmp(mode, "anonymise") != 0 && strcmp(mode, "delete") != 0)) {
        SC_LOG_ERR(ctx, "retention_mode: must be one of anonymise, delete");
        return -EINVAL;
    }
    st->anonymise = strcmp(mode, "anonymise") == 0;
    return 0;
}

/* ---- handling events ----------------------------------------------------- */

/*
 * Each event is applied with as few statements as it can be: a round trip costs more
 * than the work of any one of them. The statements that register something also make
 * sure the school (and its district) are known, with a first report instant, and move
 * history_from back when data is older (S_TOUCH, or its form for many rows in
 * ha_reported); the school's row is rewritten only when something in it changes, not
 * once per event. S_TOUCH's parameters: $1 school, $2 district, $3 time zone, $4 today,
 * $5 the event's date, $6 report_time, $7 school_days, $8 the daemon's clock.
 */
#define S_TOUCH                                                                                    \
    " school_seen AS (UPDATE health.schools"                                                       \
    "   SET history_from = least(history_from, $5::date, $4::date), timezone = $3::text,"          \
    "   district = coalesce($2::text, district)"                                                   \
    "   WHERE school = $1::text AND (history_from > least($5::date, $4::date)"                     \
    "   OR timezone <> $3::text OR district IS DISTINCT FROM coalesce($2::text, district))),"      \
    " school_new AS (INSERT INTO health.schools (school, district, timezone, history_from,"        \
    "   next_report_at) SELECT $1::text, $2::text, $3::text, least($5::date, $4::date),"           \
    "   health.next_local($4::date, $6::time, $3::text, $7::int[], $8::timestamptz)"               \
    "   WHERE NOT EXISTS (SELECT 1 FROM health.schools WHERE school = $1::text)),"                 \
    " district_new AS (INSERT INTO health.districts (district, timezone, next_report_at)"          \
    "   SELECT $2::text, $3::text,"                                                                \
    "   health.next_local($4::date, $6::time, $3::text, $7::int[], $8::timestamptz)"               \
    "   WHERE $2::text IS NOT NULL"                                                                \
    "   AND NOT EXISTS (SELECT 1 FROM health.districts WHERE district = $2::text)"                 \
    "   ON CONFLICT (district) DO NOTHING)"

/*
 * In ha_reported, over the merged rows (m): whether a cluster rule counts an absence
 * as it is now (S_COUNTS) and as it was stored (S_COUNTED): not personal, and of a
 * disease a disease rule names ($5, a JSON array), with a primary syndrome when a rule
 * counts similar symptoms ($6), or with a syndrome a syndrome rule names ($7, a JSON
 * array). As s_key_of in cluster.c decides.
 */
#define S_COUNTS_IF(reason, disease, syndrome, syndromes)                                          \
    "coalesce(" reason " <> 'personal' AND (" disease                                              \
    " IN (SELECT json_array_elements_text($5::json)) OR ($6::boolean AND " syndrome " <> '')"      \
    " OR " syndromes " && ARRAY(SELECT json_array_elements_text($7::json))), false)"
#define S_COUNTS S_COUNTS_IF("m.reason", "m.disease", "m.syndrome", "m.syndromes")
#define S_COUNTED S_COUNTS_IF("m.reason_was", "m.disease_was", "m.syndrome_was", "m.syndromes_was")

/* What the statements that write an absence return of it, in the order of enum s_col. */
#define S_CASE_COLUMNS                                                                             \
    " a.id, a.student, a.class, coalesce(a.grade, '') AS grade, health.ymd(a.date) AS date,"       \
    " a.reason, a.disease, a.diagnosis, array_to_json(a.symptoms) AS symptoms,"                    \
    " health.ymd(a.onset) AS onset, a.seen_doctor, coalesce(a.syndrome, '') AS syndrome,"          \
    " array_to_json(a.syndromes) AS syndromes"

enum s_col {
    S_COL_ID,
    S_COL_STUDENT,
    S_COL_CLASS,
    S_COL_GRADE,
    S_COL_DATE,
    S_COL_REASON,
    S_COL_DISEASE,
    S_COL_DIAGNOSIS,
    S_COL_SYMPTOMS,
    S_COL_ONSET,
    S_COL_SEEN,
    S_COL_SYNDROME,
    S_COL_SYNDROMES,
    S_COL_ALERT, /* the disease is one not raised yet as health.case.suspected */
};

static const struct ha_stmt s_stmts[] = {
    {"ha_next_local", "SELECT health.next_local($1::date, $2::time, $3::text, $4::int[],"
                      " $5::timestamptz)"},
    /* A local date and the instants of its two midnights. $1 an instant, $2 a zone. */
    {"ha_today", "SELECT health.ymd(d), d::timestamp AT TIME ZONE $2::text,"
                 " (d + 1)::timestamp AT TIME ZONE $2::text"
                 " FROM (SELECT ($1::timestamptz AT TIME ZONE $2::text)::date AS d) s"},
    /* $9 class, $10 present, $11 absent, $12 symptomatic, $13 note, $14 event, $15 recorded. */
    {"ha_morning_check",
     "WITH mc AS (INSERT INTO health.morning_checks (school, class, date, present, absent,"
     " symptomatic, note, event, recorded_at) VALUES ($1::text, $9, $5::date, $10::int, $11::int,"
     " $12::int, $13, $14::bigint, $15::timestamptz)"
     " ON CONFLICT (school, class, date) DO UPDATE SET present = EXCLUDED.present,"
     " absent = EXCLUDED.absent, symptomatic = EXCLUDED.symptomatic, note = EXCLUDED.note,"
     " event = EXCLUDED.event, recorded_at = EXCLUDED.recorded_at)," S_TOUCH " SELECT 1"},
    /*
     * Pupils' absences, one a day each, merged with what is stored: members an event
     * leaves out keep their stored values. $1 the absences as JSON rows (see s_on_reported; no
     * two of one pupil and day), $2 report_time, $3 school_days, $4 trace_cutoff, $5 $6 $7
     * what the cluster rules count (S_COUNTS). A row's symptoms (JSON; absent: keep the
     * stored ones and their syndromes) come with their syndromes and primary syndrome.
     *
     * Only the rows before the first one that must wait are written, and come back: a
     * case some rule counts has its clusters looked for once written (ha_cluster_case),
     * and must not find a later row of its school already there — one a rule counts now,
     * or counted as it was stored. The caller sends the rest again.
     *
     * An illness or unknown absence without a diagnosis gets a tracing deadline: the
     * cut-off on the first school day on or after its date that is still ahead of the
     * report. A diagnosis marks it traced. A personal absence needs no tracing, unless it
     * was already found overdue. case_alerted takes the disease at once; the last column
     * says whether health.case.suspected is still to be raised for it. The schools (and
     * districts) of the rows are known afterwards as S_TOUCH leaves them after each of
     * the rows in turn. Rows come back in the order given.
     */
    {"ha_reported",
     "WITH i AS (SELECT * FROM json_to_recordset($1::json) AS r(ord int, school text,"
     "   district text, tz text, today date, date date, now timestamptz, student text,"
     "   class text, grade text, reason text, symptoms json, syndromes json, syndrome text,"
     "   onset date, seen_doctor boolean, diagnosis text, disease text, note text,"
     "   event bigint, occurred_at timestamptz, actor text)),"
     /* Looked up row by row (LATERAL): the plan is kept for the connection's life, and a
      * join planned while the table was small would read all of it at every batch. */
     " old AS (SELECT i.ord, a.* FROM i CROSS JOIN LATERAL (SELECT symptoms, syndromes,"
     "   syndrome, onset, seen_doctor, diagnosis, disease, note, trace_due, traced_at,"
     "   traced_by, untraced_at, case_alerted, reason FROM health.absences"
     "   WHERE school = i.school AND student = i.student AND date = i.date FOR UPDATE) a),"
     " m AS (SELECT i.ord, i.school, i.student, i.class, i.grade, i.date, i.reason, i.tz,"
     "   i.event, i.occurred_at, i.actor,"
     "   o.trace_due, o.traced_at, o.traced_by, o.untraced_at, o.case_alerted,"
     "   nullif(coalesce(i.diagnosis, o.diagnosis), '') AS diagnosis,"
     "   lower(coalesce(i.disease, o.disease)) AS disease,"
     "   coalesce(i.onset, o.onset) AS onset,"
     "   coalesce(i.seen_doctor, o.seen_doctor) AS seen_doctor,"
     "   coalesce(i.note, o.note) AS note,"
     "   CASE WHEN i.symptoms IS NULL THEN coalesce(o.symptoms, '{}')"
     "        ELSE ARRAY(SELECT json_array_elements_text(i.symptoms)) END AS symptoms,"
     "   CASE WHEN i.symptoms IS NULL THEN coalesce(o.syndromes, '{}')"
     "        ELSE ARRAY(SELECT json_array_elements_text(i.syndromes)) END AS syndromes,"
     "   CASE WHEN i.symptoms IS NULL THEN o.syndrome ELSE i.syndrome END AS syndrome,"
     "   o.reason AS reason_was, o.disease AS disease_was, o.syndrome AS syndrome_was,"
     "   o.syndromes AS syndromes_was"
     "   FROM i LEFT JOIN old o ON o.ord = i.ord),"
     " c AS (SELECT m.ord, m.school, " S_COUNTS " AS counts, " S_COUNTED " AS counted FROM m),"
     " cut AS (SELECT coalesce(min(r.ord), 2147483647) AS ord FROM c r"
     "   WHERE (r.counts OR r.counted) AND EXISTS (SELECT 1 FROM c a"
     "   WHERE a.school = r.school AND a.ord < r.ord AND a.counts)),"
     " v AS (SELECT m.*, m.reason <> 'personal' AND m.diagnosis IS NULL AS needs_trace,"
     "   CASE WHEN m.diagnosis IS NOT NULL AND m.traced_at IS NULL THEN m.occurred_at"
     "        ELSE m.traced_at END AS now_traced_at,"
     "   CASE WHEN m.diagnosis IS NOT NULL AND m.traced_at IS NULL THEN m.actor"
     "        ELSE m.traced_by END AS now_traced_by"
     "   FROM m WHERE m.ord < (SELECT ord FROM cut)),"
     " saved AS (INSERT INTO health.absences AS a (school, student, class, grade, date, reason,"
     "   symptoms, syndromes, syndrome, onset, seen_doctor, diagnosis, disease, note,"
     "   reported_event, reported_at, updated_at, trace_due, traced_at, traced_by, case_alerted)"
     "   SELECT v.school, v.student, v.class, v.grade, v.date, v.reason, v.symptoms,"
     "   v.syndromes, v.syndrome, v.onset, v.seen_doctor, v.diagnosis, v.disease, v.note,"
     "   v.event, v.occurred_at, v.occurred_at,"
     "   CASE WHEN v.needs_trace AND v.trace_due IS NULL AND v.now_traced_at IS NULL"
     "        THEN health.next_local(v.date, $4::time, v.tz, $3::int[], v.occurred_at)"
     "        WHEN NOT v.needs_trace AND v.now_traced_at IS NULL AND v.untraced_at IS NULL"
     "        THEN NULL ELSE v.trace_due END,"
     "   v.now_traced_at, v.now_traced_by, coalesce(v.disease, v.case_alerted)"
     "   FROM v ORDER BY v.ord"
     "   ON CONFLICT (school, student, date) DO UPDATE SET class = EXCLUDED.class,"
     "   grade = EXCLUDED.grade, reason = EXCLUDED.reason, symptoms = EXCLUDED.symptoms,"
     "   syndromes = EXCLUDED.syndromes, syndrome = EXCLUDED.syndrome, onset = EXCLUDED.onset,"
     "   seen_doctor = EXCLUDED.seen_doctor, diagnosis = EXCLUDED.diagnosis,"
     "   disease = EXCLUDED.disease, note = EXCLUDED.note, updated_at = EXCLUDED.updated_at,"
     "   trace_due = EXCLUDED.trace_due, traced_at = EXCLUDED.traced_at,"
     "   traced_by = EXCLUDED.traced_by, case_alerted = EXCLUDED.case_alerted"
     "   RETURNING" S_CASE_COLUMNS ", a.school AS k_school, a.date AS k_date),"
     /* S_TOUCH for all the rows at once: after them all, a school's zone is its last
      * row's, its district the last one given, its history back to the earliest day; a
      * school or district new to the plugin is registered as its first row would have. */
     " ts AS (SELECT school, min(least(date, today)) AS lo,"
     "   (array_agg(tz ORDER BY ord DESC))[1] AS tz,"
     "   (array_agg(district ORDER BY ord DESC) FILTER (WHERE district IS NOT NULL))[1]"
     "     AS district,"
     "   (array_agg(tz ORDER BY ord))[1] AS first_tz,"
     "   (array_agg(today ORDER BY ord))[1] AS first_today,"
     "   (array_agg(now ORDER BY ord))[1] AS first_now"
     "   FROM i WHERE ord < (SELECT ord FROM cut) GROUP BY school),"
     " school_seen AS (UPDATE health.schools s SET history_from = least(s.history_from, ts.lo),"
     "   timezone = ts.tz, district = coalesce(ts.district, s.district)"
     "   FROM ts WHERE s.school = ts.school AND (s.history_from > ts.lo"
     "   OR s.timezone <> ts.tz OR s.district IS DISTINCT FROM coalesce(ts.district, s.district))),"
     " school_new AS (INSERT INTO health.schools (school, district, timezone, history_from,"
     "   next_report_at) SELECT ts.school, ts.district, ts.tz, ts.lo,"
     "   health.next_local(ts.first_today, $2::time, ts.first_tz, $3::int[], ts.first_now)"
     "   FROM ts WHERE NOT EXISTS (SELECT 1 FROM health.schools s WHERE s.school = ts.school)),"
     " district_new AS (INSERT INTO health.districts (district, timezone, next_report_at)"
     "   SELECT DISTINCT ON (i.district) i.district, i.tz,"
     "   health.next_local(i.today, $2::time, i.tz, $3::int[], i.now)"
     "   FROM i WHERE i.district IS NOT NULL AND i.ord < (SELECT ord FROM cut)"
     "   AND NOT EXISTS (SELECT 1 FROM health.districts d WHERE d.district = i.district)"
     "   ORDER BY i.district, i.ord ON CONFLICT (district) DO NOTHING)"
     " SELECT s.id, s.student, s.class, s.grade, s.date, s.reason, s.disease, s.diagnosis,"
     "   s.symptoms, s.onset, s.seen_doctor, s.syndrome, s.syndromes,"
     "   v.disease IS NOT NULL AND v.case_alerted IS DISTINCT FROM v.disease"
     " FROM saved s JOIN v ON v.school = s.k_school AND v.student = s.student"
     "   AND v.date = s.k_date ORDER BY v.ord"},
    /*
     * The cause of a registered absence. $1 school, $2 student, $3 date, $4 diagnosis,
     * $5 by, $6 occurred_at, $7 reason, $8 disease, $9 seen_doctor, $10 note. The second
     * scan of the row (o) still shows the disease last raised.
     */
    {"ha_traced",
     "UPDATE health.absences a SET diagnosis = $4::text, traced_by = $5::text,"
     " traced_at = coalesce(a.traced_at, $6::timestamptz), updated_at = $6::timestamptz,"
     " reason = coalesce($7::text, a.reason), disease = coalesce(lower($8::text), a.disease),"
     " seen_doctor = coalesce($9::boolean, a.seen_doctor), note = coalesce($10::text, a.note),"
     " case_alerted = coalesce(lower($8::text), a.disease, a.case_alerted)"
     " FROM health.absences o"
     " WHERE a.school = $1::text AND a.student = $2::text AND a.date = $3::date AND o.id = a.id"
     " RETURNING" S_CASE_COLUMNS
     ", a.disease IS NOT NULL AND o.case_alerted IS DISTINCT FROM a.disease"},
    {NULL, NULL},
};

/*
 * Today's local date in tz (11 bytes) by the daemon's clock. A date holds from one
 * local midnight to the next, so it is asked of the database once per zone and day,
 * not once per event.
 */
static int s_today(sc_ctx_t *ctx, struct ha_state *st, const char *tz, char *today)
{
    sc_time_t now = sc_now(ctx);
    struct ha_today *slot = NULL;
    for (size_t i = 0; i < HA_TODAY_CACHED; i++) {
        struct ha_today *t = &st->today[i];
        if (strcmp(t->tz, tz) != 0)
            continue;
        if (t->from <= now && now < t->until) {
            memcpy(today, t->date, sizeof t->date);
            return 0;
        }
        slot = t;
    }
    char when[SC_TIME_LEN];
    const char *p[] = {sc_time_format(now, when), tz};
    int rc;
    PGresult *res = ha_run(ctx, "ha_today", 2, p, &rc);
    if (!res)
        return rc;
    snprintf(today, 11, "%s", PQgetvalue(res, 0, 0));
    sc_time_t from = sc_pq_time(res, 0, 1, SC_TIME_NEVER), until = sc_pq_time(res, 0, 2, 0);
    PQclear(res);
    if (from <= now && now < until) {
        if (!slot)
            slot = &st->today[st->today_next++ % HA_TODAY_CACHED];
        snprintf(slot->tz, sizeof slot->tz, "%s", tz);
        memcpy(slot->date, today, sizeof slot->date);
        slot->from = from;
        slot->until = until;
    }
    return 0;
}

static int s_flush(sc_ctx_t *ctx, struct ha_state *st);

/*
 * The part every health event shares: the school's zone and today's local
 * date, and the refusal of dates after today. Validators cannot read the
 * clock, so "in the future" is judged here, against sc_now() in the school's
 * time zone. Returns 1 when the event was rejected, 0 to go on, or -errno.
 */
static int s_prologue(sc_ctx_t *ctx, struct ha_state *st, const sc_event_t *ev, char *tz,
                      char *today)
{
    int rc;
    if (!ev->school) {
        if ((rc = s_flush(ctx, st)) == 0)
            rc = s_reject(ctx, ev, "health events must name a school");
        return rc < 0 ? rc : 1;
    }
    ha_school_tz(ctx, ev->school, tz);
    if ((rc = s_today(ctx, st, tz, today)) < 0)
        return rc;
    const char *date = sc_json_str(ev->data, "date");
    if (date && strcmp(date, today) > 0) {
        if ((rc = s_flush(ctx, st)) == 0)
            rc = s_reject(ctx, ev, "data.date: %s is in the future (today is %s in %s)", date,
                          today, tz);
        return rc < 0 ? rc : 1;
    }
    return 0;
}

static int s_on_morning_check(sc_ctx_t *ctx, struct ha_state *st, const sc_event_t *ev)
{
    char tz[HA_TZ_MAX], today[11], now_s[SC_TIME_LEN], when[SC_TIME_LEN], evid[24], present[24],
        absent[24], symptomatic[24];
    int rc = s_prologue(ctx, st, ev, tz, today);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    const json_t *d = ev->data;
    snprintf(evid, sizeof evid, "%" PRId64, ev->id);
    snprintf(present, sizeof present, "%" JSON_INTEGER_FORMAT, sc_json_int(d, "present", 0));
    snprintf(absent, sizeof absent, "%" JSON_INTEGER_FORMAT, sc_json_int(d, "absent", 0));
    snprintf(symptomatic, sizeof symptomatic, "%" JSON_INTEGER_FORMAT,
             sc_json_int(d, "symptomatic", 0));
    const char *p[] = {ev->school,
                       ev->district,
                       tz,
                       today,
                       sc_json_str(d, "date"),
                       st->report_time,
                       st->school_days,
                       sc_time_format(sc_now(ctx), now_s),
                       sc_json_str(d, "class"),
                       present,
                       absent,
                       json_object_get(d, "symptomatic") ? symptomatic : NULL,
                       sc_json_str(d, "note"),
                       evid,
                       sc_time_format(ev->occurred_at, when)};
    PGresult *res = ha_run(ctx, "ha_morning_check", 15, p, &rc);
    PQclear(res);
    return rc;
}

/* A grade from the directory as text (it may be stored as a number), or "" when unknown. */
static void s_grade(sc_ctx_t *ctx, const char *school, const char *klass, char *out, size_t len)
{
    json_t *c = ctx->host->school_class(ctx, school, klass);
    const json_t *g = json_object_get(c, "grade");
    out[0] = '\0';
    if (json_is_string(g))
        snprintf(out, len, "%s", json_string_value(g));
    else if (json_is_integer(g))
        snprintf(out, len, "%" JSON_INTEGER_FORMAT, json_integer_value(g));
    json_decref(c);
}

/*
 * Raises health.case.suspected for the absence a statement wrote (row r of res, columns
 * of enum s_col) when its disease has not been raised yet.
 */
static int s_case_alert(sc_ctx_t *ctx, const sc_event_t *ev, const PGresult *res, int r)
{
    if (PQgetvalue(res, r, S_COL_ALERT)[0] != 't')
        return 0;
    char id[96];
    snprintf(id, sizeof id, "case:%s:%s", PQgetvalue(res, r, S_COL_ID),
             PQgetvalue(res, r, S_COL_DISEASE));
    json_t *data = json_pack(
        "{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o}", "student", PQgetvalue(res, r, S_COL_STUDENT),
        "class", PQgetvalue(res, r, S_COL_CLASS), "date", PQgetvalue(res, r, S_COL_DATE), "disease",
        PQgetvalue(res, r, S_COL_DISEASE), "diagnosis", sc_pq_value(res, r, S_COL_DIAGNOSIS),
        "symptoms", sc_pq_value(res, r, S_COL_SYMPTOMS), "onset", sc_pq_value(res, r, S_COL_ONSET),
        "seen_doctor", sc_pq_value(res, r, S_COL_SEEN));
    return ha_emit(ctx, "health.case.suspected", ev->school, ev->district, id, ev->occurred_at,
                   data);
}

/*
 * The case alert and the cluster rules for the absence a statement wrote (row r of res,
 * columns of enum s_col), in that order.
 */
static int s_after_write(sc_ctx_t *ctx, struct ha_state *st, const sc_event_t *ev,
                         const PGresult *res, int r, const char *tz)
{
    int rc = s_case_alert(ctx, ev, res, r);
    if (rc < 0)
        return rc;
    struct ha_case c = {.personal = strcmp(PQgetvalue(res, r, S_COL_REASON), "personal") == 0};
    if (c.personal)
        return 0;
    snprintf(c.id, sizeof c.id, "%s", PQgetvalue(res, r, S_COL_ID));
    snprintf(c.school, sizeof c.school, "%s", ev->school);
    snprintf(c.klass, sizeof c.klass, "%s", PQgetvalue(res, r, S_COL_CLASS));
    snprintf(c.grade, sizeof c.grade, "%s", PQgetvalue(res, r, S_COL_GRADE));
    snprintf(c.date, sizeof c.date, "%s", PQgetvalue(res, r, S_COL_DATE));
    snprintf(c.syndrome, sizeof c.syndrome, "%s", PQgetvalue(res, r, S_COL_SYNDROME));
    snprintf(c.disease, sizeof c.disease, "%s", PQgetvalue(res, r, S_COL_DISEASE));
    if (!(c.syndromes = json_loads(PQgetvalue(res, r, S_COL_SYNDROMES), 0, NULL)))
        return -ENOMEM;
    rc = ha_cluster_case(ctx, st, &c, tz, ev->district);
    json_decref(c.syndromes);
    return rc;
}

/* Most absences a batch keeps waiting before it writes them. */
#define S_PENDING_MAX 1024

static void s_pending_drop(struct ha_state *st)
{
    st->rows.len = 0;
    st->nwaiting = 0;
    json_object_clear(st->pending_keys);
}

/*
 * Writes the absences waiting in the batch, then raises what each calls for, in
 * the order they came: one statement, or more when a case a cluster rule counts
 * is followed by a row of its school that must wait for its clusters (see
 * ha_reported); ha_flush_window says how many of the rest each is given. Returns 0
 * or -errno; nothing waits after.
 */
static int s_flush(sc_ctx_t *ctx, struct ha_state *st)
{
    PGresult *res = NULL;
    int rc = 0;
    size_t done = 0, n = st->nwaiting, given = 0, k = 0;
    while (done < n && rc == 0) {
        given = ha_flush_window(given, k, n - done);
        /* The rows [done, done + given), one after another in st->rows. */
        size_t from = st->waiting[done].at,
               to = done + given < n ? st->waiting[done + given].at : st->rows.len;
        if ((rc = sc_pqbuf_json_rows(&st->send, st->rows.p + from, to - from)) < 0)
            break;
        const char *p[] = {st->send.p,        st->report_time,  st->school_days,   st->cutoff,
                           st->rule_diseases, st->rule_similar, st->rule_syndromes};
        if (!(res = ha_run(ctx, "ha_reported", 7, p, &rc)))
            break;
        k = (size_t)PQntuples(res);
        if (k == 0 || k > given) { /* the first row is always written: cannot happen */
            SC_LOG_ERR(ctx, "ha_reported answered %zu rows for %zu absences", k, given);
            rc = -EIO;
            break;
        }
        for (size_t i = 0; i < k && rc == 0; i++) {
            const struct ha_waiting *w = &st->waiting[done + i];
            const sc_event_t ev = {.id = w->event,
                                   .type = "health.absence.reported",
                                   .school = w->school,
                                   .district = w->district[0] ? w->district : NULL,
                                   .occurred_at = w->occurred_at};
            rc = s_after_write(ctx, st, &ev, res, (int)i, w->tz);
        }
        done += k;
        PQclear(res);
        res = NULL;
    }
    PQclear(res);
    s_pending_drop(st);
    return rc;
}

/* A member the event gives (not null), or NULL: the statement then keeps the stored value. */
static const char *s_given(const json_t *d, const char *key)
{
    const json_t *v = json_object_get(d, key);
    return v && !json_is_null(v) ? json_string_value(v) : NULL;
}

/* Room for one more absence waiting in the batch. */
static int s_waiting_grow(struct ha_state *st)
{
    if (st->nwaiting < st->cap_waiting)
        return 0;
    size_t cap = st->cap_waiting ? 2 * st->cap_waiting : 64;
    struct ha_waiting *w = realloc(st->waiting, cap * sizeof *w);
    if (!w)
        return -ENOMEM;
    st->waiting = w;
    st->cap_waiting = cap;
    return 0;
}

/*
 * health.absence.reported: registers or updates one pupil's absence on one
 * day (see ha_reported for how it merges with what is stored and when it must
 * be traced), then raises what it calls for.
 *
 * Absences wait in the batch as the rows ha_reported reads, written as JSON
 * text (building jansson values and dumping them had cost more than the rest
 * of the plugin's thread), and go with the batch's others in one statement
 * (s_flush) — before anything else of the batch is written or emitted (a
 * rejection, another health event, the batch's end), and before a second
 * absence of the same pupil and day, so every event still finds what those
 * before it left. A cluster rule counts the absences of one school: a case it
 * counts has its clusters looked for once it is written, before any later
 * absence of its school that would change the count is written; the statement
 * writes the waiting ones only up to such an absence, and s_flush sends the
 * rest again.
 */
static int s_on_reported(sc_ctx_t *ctx, struct ha_state *st, const sc_event_t *ev)
{
    char tz[HA_TZ_MAX], today[11], now_s[SC_TIME_LEN], when[SC_TIME_LEN], grade[HA_NAME_MAX],
        key[3 * SC_CODE_MAX + 16], ord[24], evid[24];
    json_t *sym_json = NULL, *syn_json = NULL;
    const char *primary = NULL;
    int rc = s_prologue(ctx, st, ev, tz, today);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    const json_t *d = ev->data;

    /* Symptoms the event gives replace the stored ones, each kept once, and so do their
     * syndromes; a null list clears them. Without the member the stored ones stay. */
    const json_t *symptoms = json_object_get(d, "symptoms");
    rc = -ENOMEM;
    if (symptoms) {
        if (!(sym_json = json_array()) || !(syn_json = json_array()))
            goto out;
        size_t i;
        const json_t *s;
        json_array_foreach(symptoms, i, s)
        {
            bool dup = false;
            for (size_t k = 0; k < json_array_size(sym_json) && !dup; k++)
                dup = json_equal(json_array_get(sym_json, k), s);
            if (!dup)
                json_array_append(sym_json, (json_t *)s);
        }
        const char *names[HA_SYNDROMES_MAX];
        size_t nsyn = ha_syndromes(sym_json, names, &primary);
        for (i = 0; i < nsyn; i++)
            json_array_append_new(syn_json, json_string(names[i]));
    }
    const char *seen = json_object_get(d, "seen_doctor")
                           ? (sc_json_bool(d, "seen_doctor", false) ? "true" : "false")
                           : "null";
    s_grade(ctx, ev->school, sc_json_str(d, "class"), grade, sizeof grade);
    const char *student = sc_json_str(d, "student"), *date = sc_json_str(d, "date");
    snprintf(key, sizeof key, "%s\x1f%s\x1f%s", ev->school, student, date);
    if (json_object_get(st->pending_keys, key) && (rc = s_flush(ctx, st)) < 0)
        goto out;
    rc = -ENOMEM;
    if (s_waiting_grow(st) < 0)
        goto out;
    struct ha_waiting *w = &st->waiting[st->nwaiting];
    *w = (struct ha_waiting){.at = st->rows.len, .event = ev->id, .occurred_at = ev->occurred_at};
    snprintf(w->school, sizeof w->school, "%s", ev->school);
    snprintf(w->district, sizeof w->district, "%s", ev->district ? ev->district : "");
    snprintf(w->tz, sizeof w->tz, "%s", tz);
    sc_pqbuf_t *b = &st->rows;
    snprintf(ord, sizeof ord, "%zu", st->nwaiting);
    snprintf(evid, sizeof evid, "%" PRId64, ev->id);
    if (sc_pqbuf_put(b, "{", 1) < 0 || sc_pqbuf_json_member_raw(b, "ord", ord) < 0 ||
        sc_pqbuf_json_member(b, "school", ev->school) < 0 ||
        sc_pqbuf_json_member(b, "district", ev->district) < 0 ||
        sc_pqbuf_json_member(b, "tz", tz) < 0 || sc_pqbuf_json_member(b, "today", today) < 0 ||
        sc_pqbuf_json_member(b, "date", date) < 0 ||
        sc_pqbuf_json_member(b, "now", sc_time_format(sc_now(ctx), now_s)) < 0 ||
        sc_pqbuf_json_member(b, "student", student) < 0 ||
        sc_pqbuf_json_member(b, "class", sc_json_str(d, "class")) < 0 ||
        sc_pqbuf_json_member(b, "grade", grade[0] ? grade : NULL) < 0 ||
        sc_pqbuf_json_member(b, "reason", sc_json_str(d, "reason")) < 0 ||
        sc_pqbuf_json_member_value(b, "symptoms", sym_json) < 0 ||
        sc_pqbuf_json_member_value(b, "syndromes", syn_json) < 0 ||
        sc_pqbuf_json_member(b, "syndrome", primary) < 0 ||
        sc_pqbuf_json_member(b, "onset", s_given(d, "onset")) < 0 ||
        sc_pqbuf_json_member_raw(b, "seen_doctor", seen) < 0 ||
        sc_pqbuf_json_member(b, "diagnosis", s_given(d, "diagnosis")) < 0 ||
        sc_pqbuf_json_member(b, "disease", s_given(d, "suspected_disease")) < 0 ||
        sc_pqbuf_json_member(b, "note", s_given(d, "note")) < 0 ||
        sc_pqbuf_json_member_raw(b, "event", evid) < 0 ||
        sc_pqbuf_json_member(b, "occurred_at", sc_time_format(ev->occurred_at, when)) < 0 ||
        sc_pqbuf_json_member(b, "actor", ev->actor) < 0 || sc_pqbuf_json_row_end(b) < 0 ||
        json_object_set_new(st->pending_keys, key, json_true()) < 0) {
        b->len = w->at; /* nothing of it waits */
        goto out;
    }
    st->nwaiting++;
    rc = st->nwaiting >= S_PENDING_MAX ? s_flush(ctx, st) : 0;
out:
    json_decref(sym_json);
    json_decref(syn_json);
    return rc;
}

/*
 * health.absence.traced: the cause of a registered absence is known. Refused
 * (health.rejected) when no such absence is registered.
 */
static int s_on_traced(sc_ctx_t *ctx, struct ha_state *st, const sc_event_t *ev)
{
    char tz[HA_TZ_MAX], today[11], when[SC_TIME_LEN];
    int rc = s_prologue(ctx, st, ev, tz, today);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    const json_t *d = ev->data;
    const char *seen = json_object_get(d, "seen_doctor")
                           ? (sc_json_bool(d, "seen_doctor", false) ? "true" : "false")
                           : NULL;
    const char *p[] = {ev->school,
                       sc_json_str(d, "student"),
                       sc_json_str(d, "date"),
                       sc_json_str(d, "diagnosis"),
                       sc_json_str(d, "by"),
                       sc_time_format(ev->occurred_at, when),
                       sc_json_str(d, "reason"),
                       sc_json_str(d, "suspected_disease"),
                       seen,
                       sc_json_str(d, "note")};
    PGresult *res = ha_run(ctx, "ha_traced", 10, p, &rc);
    if (!res)
        return rc;
    if (PQntuples(res) == 0)
        rc = s_reject(ctx, ev, "no absence of %s on %s is registered", sc_json_str(d, "student"),
                      sc_json_str(d, "date"));
    else
        rc = s_after_write(ctx, st, ev, res, 0, tz);
    PQclear(res);
    return rc;
}

static int s_handle(sc_ctx_t *ctx, void *state, const sc_event_t *ev)
{
    struct ha_state *st = state;
    if (strcmp(ev->type, "health.absence.reported") == 0)
        return s_on_reported(ctx, st, ev);
    bool morning = strcmp(ev->type, "health.morning_check") == 0;
    if (!morning && strcmp(ev->type, "health.absence.traced") != 0)
        return 0;              /* our own emitted events, or a type a newer sender knows */
    int rc = s_flush(ctx, st); /* the absences before it, written before it is handled */
    if (rc < 0)
        return rc;
    return morning ? s_on_morning_check(ctx, st, ev) : s_on_traced(ctx, st, ev);
}

/* The batch's end: the absences still waiting are written, or dropped with the batch. */
static int s_end_batch(sc_ctx_t *ctx, void *state, bool keep)
{
    struct ha_state *st = state;
    if (keep)
        return s_flush(ctx, st);
    s_pending_drop(st);
    return 0;
}

/* ---- tick ------------------------------------------------------------------ */

/* Raises health.absence.untraced, once, for every tracing deadline passed by now, in deadline
 * order. */
static int s_untraced_due(sc_ctx_t *ctx, sc_time_t now)
{
    char when[SC_TIME_LEN];
    const char *p[] = {sc_time_format(now, when)};
    int rc;
    PGresult *res = ha_exec(
        ctx,
        "WITH u AS (UPDATE health.absences SET untraced_at = trace_due"
        "           WHERE trace_due <= $1::timestamptz AND traced_at IS NULL"
        "             AND untraced_at IS NULL AND trace_due IS NOT NULL"
        "           RETURNING id, school, student, class, date, reason, trace_due, symptoms)"
        " SELECT u.id, u.school, u.student, u.class, health.ymd(u.date), u.reason,"
        "        u.trace_due, s.district, array_to_json(u.symptoms)"
        " FROM u LEFT JOIN health.schools s ON s.school = u.school"
        " ORDER BY u.trace_due, u.id",
        1, p, &rc);
    if (!res)
        return rc;
    for (int i = 0; i < PQntuples(res) && rc == 0; i++) {
        char id[48], due[SC_TIME_LEN];
        sc_time_t at = sc_pq_time(res, i, 6, now);
        snprintf(id, sizeof id, "untraced:%s", PQgetvalue(res, i, 0));
        json_t *data = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "student", PQgetvalue(res, i, 2),
                                 "class", PQgetvalue(res, i, 3), "date", PQgetvalue(res, i, 4),
                                 "reason", PQgetvalue(res, i, 5), "due_at", sc_time_format(at, due),
                                 "symptoms", sc_pq_value(res, i, 8));
        rc = ha_emit(ctx, "health.absence.untraced", PQgetvalue(res, i, 1),
                     PQgetisnull(res, i, 7) ? NULL : PQgetvalue(res, i, 7), id, at, data);
    }
    PQclear(res);
    return rc;
}

/*
 * Retention: once a day at retention_time (daemon time zone), health records
 * dated before now - retention are anonymised (pupil code, onset, diagnosis,
 * notes and tracer removed; counts kept for the EARS baselines and the
 * ledger's totals) or deleted, and the count is logged and recorded.
 */
static int s_retention(sc_ctx_t *ctx, struct ha_state *st, sc_time_t now)
{
    const char *tz = ctx->host->default_timezone(ctx);
    char when[SC_TIME_LEN], cutoff[11], next_s[SC_TIME_LEN];
    int rc;
    PGresult *res = ha_exec(
        ctx, "SELECT next_at FROM health.jobs WHERE job = 'retention' FOR UPDATE", 0, NULL, &rc);
    if (!res)
        return rc;
    sc_time_t due = PQntuples(res) ? sc_pq_time(res, 0, 0, SC_TIME_NEVER) : SC_TIME_NEVER;
    bool exists = PQntuples(res) > 0;
    PQclear(res);
    if (exists && due > now)
        return 0;
    if (exists) {
        if ((rc = ha_local_date(ctx, now - st->retention_secs * SC_USEC_PER_SEC, tz, cutoff)) < 0)
            return rc;
        const char *p[] = {cutoff, sc_time_format(now, when)};
        res = st->anonymise
                  ? ha_exec(ctx,
                            "UPDATE health.absences SET student = NULL, onset = NULL,"
                            " diagnosis = NULL, note = NULL, traced_by = NULL,"
                            " anonymised_at = $2::timestamptz"
                            " WHERE date < $1::date AND anonymised_at IS NULL",
                            2, p, &rc)
                  : ha_exec(ctx, "DELETE FROM health.absences WHERE date < $1::date", 1, p, &rc);
        if (!res)
            return rc;
        int absences = atoi(PQcmdTuples(res));
        PQclear(res);
        res = ha_exec(ctx,
                      st->anonymise ? "UPDATE health.morning_checks SET note = NULL"
                                      " WHERE date < $1::date AND note IS NOT NULL"
                                    : "DELETE FROM health.morning_checks WHERE date < $1::date",
                      1, p, &rc);
        if (!res)
            return rc;
        int checks = atoi(PQcmdTuples(res));
        PQclear(res);
        if (!st->anonymise) {
            res = ha_exec(ctx,
                          "WITH c AS (DELETE FROM health.clusters WHERE last_date < $1::date"
                          " AND closed_at IS NOT NULL RETURNING 1)"
                          " DELETE FROM health.ears WHERE date < $1::date",
                          1, p, &rc);
            if (!res)
                return rc;
            PQclear(res);
        }
        char na[16], nc[16];
        snprintf(na, sizeof na, "%d", absences);
        snprintf(nc, sizeof nc, "%d", checks);
        const char *p3[] = {p[1], cutoff, st->anonymise ? "anonymise" : "delete", na, nc};
        res = ha_exec(ctx,
                      "INSERT INTO health.retention_runs (ran_at, cutoff, mode, absences,"
                      " morning_checks) VALUES ($1::timestamptz, $2::date, $3, $4::int, $5::int)",
                      5, p3, &rc);
        if (!res)
            return rc;
        PQclear(res);
        SC_LOG_NOTICE(ctx, "retention: %s records dated before %s: %d absences, %d morning checks",
                      st->anonymise ? "anonymised" : "deleted", cutoff, absences, checks);
    }
    char today[11];
    sc_time_t next;
    if ((rc = ha_local_date(ctx, now, tz, today)) < 0 ||
        (rc = ha_next_local(ctx, today, st->retention_time, tz, "{1,2,3,4,5,6,7}", now, &next)) < 0)
        return rc;
    const char *p4[] = {sc_time_format(next, next_s)};
    res = ha_exec(ctx,
                  "INSERT INTO health.jobs (job, next_at) VALUES ('retention', $1::timestamptz)"
                  " ON CONFLICT (job) DO UPDATE SET next_at = EXCLUDED.next_at",
                  1, p4, &rc);
    if (!res)
        return rc;
    PQclear(res);
    return 0;
}

static int s_tick(sc_ctx_t *ctx, void *state, sc_time_t now, sc_time_t *next)
{
    struct ha_state *st = state;
    int rc;
    if ((rc = s_untraced_due(ctx, now)) < 0 || (rc = ha_cluster_close_due(ctx, now)) < 0 ||
        (rc = ha_reports_due(ctx, st, now)) < 0 || (rc = s_retention(ctx, st, now)) < 0)
        return rc;
    PGresult *res =
        ha_exec(ctx,
                "SELECT least((SELECT min(trace_due) FROM health.absences WHERE traced_at IS NULL"
                "              AND untraced_at IS NULL AND trace_due IS NOT NULL),"
                "             (SELECT min(close_at) FROM health.clusters WHERE closed_at IS NULL),"
                "             (SELECT min(next_report_at) FROM health.schools),"
                "             (SELECT min(next_report_at) FROM health.districts),"
                "             (SELECT min(next_at) FROM health.jobs))",
                0, NULL, &rc);
    if (!res)
        return rc;
    *next = sc_pq_time(res, 0, 0, SC_TIME_NEVER);
    PQclear(res);
    return 0;
}

/* ---- the rest of the contract ---------------------------------------------- */

static int s_init(sc_ctx_t *ctx, void **state)
{
    struct ha_state *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    *state = st;
    int rc;
    if (!(st->pending_keys = json_object()))
        return -ENOMEM;
    if ((rc = s_configure(ctx, st)) < 0 || (rc = ha_prepare(ctx, s_stmts)) < 0 ||
        (rc = ha_prepare(ctx, ha_cluster_stmts)) < 0)
        return rc;
    return 0;
}

static void s_fini(sc_ctx_t *ctx, void *state)
{
    (void)ctx;
    struct ha_state *st = state;
    if (!st)
        return;
    free(st->rules);
    sc_pqbuf_free(&st->rows);
    sc_pqbuf_free(&st->send);
    free(st->waiting);
    json_decref(st->pending_keys);
    free(st->rule_diseases);
    free(st->rule_syndromes);
    free(st);
}

static int s_query(sc_ctx_t *ctx, void *state, const json_t *req, json_t **reply)
{
    (void)state;
    return ha_query(ctx, req, reply);
}

static const char *const s_subscribe[] = {"health.morning_check", "health.absence.reported",
                                          "health.absence.traced", NULL};

static const struct sc_type s_types[] = {
    {"health.morning_check", 0, ha_validate_morning_check},
    {"health.absence.reported", 0, ha_validate_reported},
    {"health.absence.traced", 0, ha_validate_traced},
    {"health.absence.untraced", SC_TYPE_EMITTED, NULL},
    {"health.case.suspected", SC_TYPE_EMITTED, NULL},
    {"health.cluster.suspected", SC_TYPE_EMITTED, NULL},
    {"health.aberration", SC_TYPE_EMITTED, NULL},
    {"health.report.daily", SC_TYPE_EMITTED, NULL},
    {"health.report.district", SC_TYPE_EMITTED | SC_TYPE_DISTRICT, NULL},
    {"health.rejected", SC_TYPE_EMITTED, NULL},
    {NULL, 0, NULL},
};

/* Defaults: 学校和托幼机构传染病疫情报告工作规范 (2006) and the extra disease rules of DESIGN.md.
 */
#define S_DEFAULT_RULES                                                                            \
    "[{\"rule\": \"class_day\", \"scope\": \"class\", \"syndrome\": \"*\", \"cases\": 3,"          \
    "  \"window_days\": 1},"                                                                       \
    " {\"rule\": \"class_3days\", \"scope\": \"class\", \"syndrome\": \"*\", \"cases\": 5,"        \
    "  \"window_days\": 3},"                                                                       \
    " {\"rule\": \"hfmd_class\", \"scope\": \"class\", \"disease\": \"hfmd\", \"cases\": 2,"       \
    "  \"window_days\": 7},"                                                                       \
    " {\"rule\": \"ili_school\", \"scope\": \"school\", \"syndrome\": \"ili\", \"cases\": 10,"     \
    "  \"window_days\": 7}]"

static const struct sc_config_key s_config[] = {
    {"trace_cutoff", SC_CFG_STRING, "\"17:00\"",
     "local time (HH:MM) on the school day by which an illness or unknown absence without a "
     "diagnosis must be traced (WS/T 772-2020: the same school day)"},
    {"report_time", SC_CFG_STRING, "\"18:00\"",
     "local time (HH:MM) of each school day's daily report and the district roll-up"},
    {"school_days", SC_CFG_LIST, "[1, 2, 3, 4, 5]",
     "ISO weekdays (1 = Monday) that are school days: tracing deadlines, reports and the EARS "
     "series use only these"},
    {"cluster_rules", SC_CFG_LIST, S_DEFAULT_RULES,
     "cluster rules: {rule, scope (class/grade/school), syndrome (\"*\" = similar symptoms) or "
     "disease, cases, window_days}; raised at cases >= the threshold within window_days "
     "consecutive days"},
    {"cluster_quiet_days", SC_CFG_INT, "7",
     "an open cluster closes after this many days without a further case"},
    {"ears_methods", SC_CFG_LIST, "[\"C1\", \"C2\", \"C3\"]",
     "EARS algorithms run on each school day's illness-absence count"},
    {"ears_baseline", SC_CFG_INT, "7", "EARS baseline length in school days (3 to 28)"},
    {"ears_alpha", SC_CFG_FLOAT, "0.001",
     "C1 and C2 alarm when the value exceeds mean + z*sd, z = qnorm(1 - alpha)"},
    {"ears_c3_alpha", SC_CFG_FLOAT, "0.025",
     "C3 alarms when its statistic exceeds qnorm(1 - alpha) (CDC's choice, as in R surveillance)"},
    {"ears_min_sigma", SC_CFG_FLOAT, "1.0",
     "floor on the baseline standard deviation, in absences (Burkom: 0.5 or 1 for sparse "
     "data); for the rate it is divided by the day's enrolment"},
    {"ears_rate", SC_CFG_BOOL, "true",
     "also run EARS on the illness-absence rate when morning checks give every day's enrolment"},
    {"retention", SC_CFG_DURATION, "\"1095d\"",
     "health records dated longer ago than this are anonymised or deleted (default 3 years)"},
    {"retention_mode", SC_CFG_STRING, "\"anonymise\"", "anonymise or delete"},
    {"retention_time", SC_CFG_STRING, "\"03:00\"",
     "local time (daemon time zone) of the daily retention job"},
    {NULL, 0, NULL, NULL},
};

static const struct sc_plugin s_plugin = {
    .abi = SC_PLUGIN_ABI,
    .size = sizeof(struct sc_plugin),
    .name = "health_absence",
    .version = "1.0.0",
    .description = "illness-absence registration, same-day tracing, cluster rules, EARS "
                   "aberration detection and daily reports",
    .subscribe = s_subscribe,
    .types = s_types,
    .config = s_config,
    .migrations = health_absence_migrations,
    .init = s_init,
    .handle = s_handle,
    .tick = s_tick,
    .query = s_query,
    .fini = s_fini,
    .end_batch = s_end_batch,
};

SC_PLUGIN_DEFINE(s_plugin)
