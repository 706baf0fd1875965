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
    /* Start no earlier than the day before `after`'s local date: a week and a
     * day further always hold a school day when any weekday is one. */
    PGresult *res =
        ha_exec(ctx,
                "WITH start AS (SELECT greatest($1::date,"
                "                               ($5::timestamptz AT TIME ZONE $3)::date - 1) AS d)"
                " SELECT min(x) FROM (SELECT ((g::date + $2::time) AT TIME ZONE $3) AS x"
                "   FROM start, generate_series(start.d::timestamp, (start.d + 15)::timestamp,"
                "                               interval '1 day') g"
                "   WHERE extract(isodow FROM g)::int = ANY ($4::int[])) s"
                " WHERE x > $5::timestamptz",
                5, p, &rc);
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
 * Makes sure the school (and its district) are known, with a first report
 * instant, and moves history_from back to `date` when data is older.
 */
static int s_touch_school(sc_ctx_t *ctx, struct ha_state *st, const sc_event_t *ev, const char *tz,
                          const char *today, const char *date)
{
    int rc;
    PGresult *res = NULL;
    const char *from = strcmp(date, today) < 0 ? date : today;
    const char *p1[] = {ev->school, from, tz, ev->district};
    res = ha_exec(ctx,
                  "UPDATE health.schools SET history_from = least(history_from, $2::date),"
                  " timezone = $3, district = coalesce($4, district) WHERE school = $1",
                  4, p1, &rc);
    if (!res)
        return rc;
    bool known = strcmp(PQcmdTuples(res), "0") != 0;
    PQclear(res);
    char when[SC_TIME_LEN];
    sc_time_t next;
    if (!known) {
        if ((rc = ha_next_local(ctx, today, st->report_time, tz, st->school_days, sc_now(ctx),
                                &next)) < 0)
            return rc;
        const char *p2[] = {ev->school, ev->district, tz, from, sc_time_format(next, when)};
        res = ha_exec(ctx,
                      "INSERT INTO health.schools (school, district, timezone, history_from,"
                      " next_report_at) VALUES ($1, $2, $3, $4::date, $5::timestamptz)",
                      5, p2, &rc);
        if (!res)
            return rc;
        PQclear(res);
    }
    if (!ev->district)
        return 0;
    const char *p3[] = {ev->district};
    res = ha_exec(ctx, "SELECT 1 FROM health.districts WHERE district = $1", 1, p3, &rc);
    if (!res)
        return rc;
    known = PQntuples(res) > 0;
    PQclear(res);
    if (known)
        return 0;
    if ((rc = ha_next_local(ctx, today, st->report_time, tz, st->school_days, sc_now(ctx), &next)) <
        0)
        return rc;
    const char *p4[] = {ev->district, tz, sc_time_format(next, when)};
    res = ha_exec(ctx,
                  "INSERT INTO health.districts (district, timezone, next_report_at)"
                  " VALUES ($1, $2, $3::timestamptz) ON CONFLICT (district) DO NOTHING",
                  3, p4, &rc);
    if (!res)
        return rc;
    PQclear(res);
    return 0;
}

/*
 * The part every health event shares: the school's zone and today's local
 * date, and the refusal of dates after today. Validators cannot read the
 * clock, so "in the future" is judged here, against sc_now() in the school's
 * time zone. Returns 1 when the event was rejected, 0 to go on, or -errno.
 */
static int s_prologue(sc_ctx_t *ctx, const sc_event_t *ev, char *tz, char *today)
{
    int rc;
    if (!ev->school) {
        rc = s_reject(ctx, ev, "health events must name a school");
        return rc < 0 ? rc : 1;
    }
    ha_school_tz(ctx, ev->school, tz);
    if ((rc = ha_local_date(ctx, sc_now(ctx), tz, today)) < 0)
        return rc;
    const char *date = sc_json_str(ev->data, "date");
    if (date && strcmp(date, today) > 0) {
        rc = s_reject(ctx, ev, "data.date: %s is in the future (today is %s in %s)", date, today,
                      tz);
        return rc < 0 ? rc : 1;
    }
    return 0;
}

static int s_on_morning_check(sc_ctx_t *ctx, struct ha_state *st, const sc_event_t *ev)
{
    char tz[HA_TZ_MAX], today[11], when[SC_TIME_LEN], evid[24], present[24], absent[24],
        symptomatic[24];
    int rc = s_prologue(ctx, ev, tz, today);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    const json_t *d = ev->data;
    snprintf(evid, sizeof evid, "%" PRId64, ev->id);
    snprintf(present, sizeof present, "%" JSON_INTEGER_FORMAT, sc_json_int(d, "present", 0));
    snprintf(absent, sizeof absent, "%" JSON_INTEGER_FORMAT, sc_json_int(d, "absent", 0));
    snprintf(symptomatic, sizeof symptomatic, "%" JSON_INTEGER_FORMAT,
             sc_json_int(d, "symptomatic", 0));
    const char *p[] = {ev->school,
                       sc_json_str(d, "class"),
                       sc_json_str(d, "date"),
                       present,
                       absent,
                       json_object_get(d, "symptomatic") ? symptomatic : NULL,
                       sc_json_str(d, "note"),
                       evid,
                       sc_time_format(ev->occurred_at, when)};
    PGresult *res = ha_exec(
        ctx,
        "INSERT INTO health.morning_checks (school, class, date, present, absent, symptomatic,"
        " note, event, recorded_at) VALUES ($1, $2, $3::date, $4::int, $5::int, $6::int, $7,"
        " $8::bigint, $9::timestamptz)"
        " ON CONFLICT (school, class, date) DO UPDATE SET present = EXCLUDED.present,"
        " absent = EXCLUDED.absent, symptomatic = EXCLUDED.symptomatic, note = EXCLUDED.note,"
        " event = EXCLUDED.event, recorded_at = EXCLUDED.recorded_at",
        9, p, &rc);
    if (!res)
        return rc;
    PQclear(res);
    return s_touch_school(ctx, st, ev, tz, today, sc_json_str(d, "date"));
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

/* Raises health.case.suspected for an absence whose disease has not been raised yet. */
static int s_case_alert(sc_ctx_t *ctx, const sc_event_t *ev, const char *absence)
{
    int rc;
    const char *p[] = {absence};
    PGresult *res =
        ha_exec(ctx,
                "UPDATE health.absences SET case_alerted = disease WHERE id = $1::bigint"
                " AND disease IS NOT NULL AND case_alerted IS DISTINCT FROM disease"
                " RETURNING student, class, health.ymd(date), disease, diagnosis,"
                " array_to_json(symptoms), health.ymd(onset), seen_doctor",
                1, p, &rc);
    if (!res)
        return rc;
    if (PQntuples(res) == 1) {
        char id[96];
        snprintf(id, sizeof id, "case:%s:%s", absence, PQgetvalue(res, 0, 3));
        json_t *data = json_pack(
            "{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o}", "student", PQgetvalue(res, 0, 0), "class",
            PQgetvalue(res, 0, 1), "date", PQgetvalue(res, 0, 2), "disease", PQgetvalue(res, 0, 3),
            "diagnosis", sc_pq_value(res, 0, 4), "symptoms", sc_pq_value(res, 0, 5), "onset",
            sc_pq_value(res, 0, 6), "seen_doctor", sc_pq_value(res, 0, 7));
        rc = ha_emit(ctx, "health.case.suspected", ev->school, ev->district, id, ev->occurred_at,
                     data);
    }
    PQclear(res);
    return rc;
}

/* Picks the given member or, when the event leaves it out, the stored value. */
static const char *s_pick(const json_t *d, const char *key, const PGresult *old, int col)
{
    const json_t *v = json_object_get(d, key);
    if (v && !json_is_null(v))
        return json_string_value(v);
    if (old && PQntuples(old) == 1 && !PQgetisnull(old, 0, col))
        return PQgetvalue(old, 0, col);
    return NULL;
}

/*
 * health.absence.reported: registers or updates one pupil's absence on one
 * day. Members left out of an update keep their stored values. An illness or
 * unknown absence without a diagnosis gets a tracing deadline: the cut-off on
 * the first school day on or after its date that is still ahead of the
 * report; a diagnosis (here or later) marks it traced.
 */
static int s_on_reported(sc_ctx_t *ctx, struct ha_state *st, const sc_event_t *ev)
{
    char tz[HA_TZ_MAX], today[11], when[SC_TIME_LEN], grade[HA_NAME_MAX], evid[24],
        due[SC_TIME_LEN];
    PGresult *old = NULL, *res = NULL;
    json_t *syn_json = NULL, *sym_json = NULL;
    char *sym_text = NULL, *syn_text = NULL;
    int rc = s_prologue(ctx, ev, tz, today);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    const json_t *d = ev->data;
    const char *student = sc_json_str(d, "student"), *date = sc_json_str(d, "date");
    const char *klass = sc_json_str(d, "class"), *reason = sc_json_str(d, "reason");

    const char *pk[] = {ev->school, student, date};
    old = ha_exec(ctx,
                  "SELECT id, array_to_json(symptoms)::text, onset::text, seen_doctor::text,"
                  " diagnosis, disease, note, traced_at, trace_due, untraced_at, traced_by"
                  " FROM health.absences WHERE school = $1 AND student = $2 AND date = $3::date"
                  " FOR UPDATE",
                  3, pk, &rc);
    if (!old)
        goto out;
    bool exists = PQntuples(old) == 1;

    const json_t *symptoms = json_object_get(d, "symptoms");
    if (!symptoms && exists)
        symptoms = sym_json = json_loads(PQgetvalue(old, 0, 1), 0, NULL);
    if (!symptoms)
        symptoms = sym_json = json_array();
    /* Keep each symptom once. */
    json_t *uniq = json_array();
    size_t i;
    const json_t *s;
    json_array_foreach(symptoms, i, s)
    {
        bool dup = false;
        for (size_t k = 0; k < json_array_size(uniq) && !dup; k++)
            dup = json_equal(json_array_get(uniq, k), s);
        if (!dup)
            json_array_append(uniq, (json_t *)s);
    }
    json_decref(sym_json);
    sym_json = uniq;
    const char *names[HA_SYNDROMES_MAX], *primary;
    size_t nsyn = ha_syndromes(sym_json, names, &primary);
    syn_json = json_array();
    for (i = 0; i < nsyn; i++)
        json_array_append_new(syn_json, json_string(names[i]));
    sym_text = json_dumps(sym_json, JSON_COMPACT);
    syn_text = json_dumps(syn_json, JSON_COMPACT);
    rc = -ENOMEM;
    if (!sym_text || !syn_text)
        goto out;

    const char *onset = s_pick(d, "onset", old, 2);
    const char *seen = json_object_get(d, "seen_doctor")
                           ? (sc_json_bool(d, "seen_doctor", false) ? "true" : "false")
                           : s_pick(d, "seen_doctor", old, 3);
    const char *diagnosis = s_pick(d, "diagnosis", old, 4);
    const char *disease = s_pick(d, "suspected_disease", old, 5);
    const char *note = s_pick(d, "note", old, 6);
    if (diagnosis && !*diagnosis)
        diagnosis = NULL;

    bool needs_trace = strcmp(reason, "personal") != 0 && !diagnosis;
    const char *traced_at = exists && !PQgetisnull(old, 0, 7) ? PQgetvalue(old, 0, 7) : NULL;
    const char *traced_by = exists && !PQgetisnull(old, 0, 10) ? PQgetvalue(old, 0, 10) : NULL;
    const char *trace_due = exists && !PQgetisnull(old, 0, 8) ? PQgetvalue(old, 0, 8) : NULL;
    bool untraced = exists && !PQgetisnull(old, 0, 9);
    if (diagnosis && !traced_at) {
        traced_at = sc_time_format(ev->occurred_at, when);
        traced_by = ev->actor;
    }
    if (needs_trace && !trace_due && !traced_at) {
        sc_time_t t;
        if ((rc = ha_next_local(ctx, date, st->cutoff, tz, st->school_days, ev->occurred_at, &t)) <
            0)
            goto out;
        trace_due = sc_time_format(t, due);
    }
    /* A personal absence needs no tracing, unless it was already found overdue. */
    if (!needs_trace && !traced_at && !untraced)
        trace_due = NULL;

    s_grade(ctx, ev->school, klass, grade, sizeof grade);
    snprintf(evid, sizeof evid, "%" PRId64, ev->id);
    char now_s[SC_TIME_LEN];
    sc_time_format(ev->occurred_at, now_s);
    const char *p[] = {ev->school, student,   klass,    grade[0] ? grade : NULL,
                       date,       reason,    sym_text, syn_text,
                       primary,    onset,     seen,     diagnosis,
                       disease,    note,      evid,     now_s,
                       trace_due,  traced_at, traced_by};
    res = ha_exec(
        ctx,
        "INSERT INTO health.absences AS a (school, student, class, grade, date, reason, symptoms,"
        " syndromes, syndrome, onset, seen_doctor, diagnosis, disease, note, reported_event,"
        " reported_at, updated_at, trace_due, traced_at, traced_by)"
        " VALUES ($1, $2, $3, $4, $5::date, $6,"
        " ARRAY(SELECT json_array_elements_text($7::json)),"
        " ARRAY(SELECT json_array_elements_text($8::json)), $9, $10::date, $11::boolean, $12,"
        " lower($13), $14, $15::bigint, $16::timestamptz, $16::timestamptz, $17::timestamptz,"
        " $18::timestamptz, $19)"
        " ON CONFLICT (school, student, date) DO UPDATE SET class = EXCLUDED.class,"
        " grade = EXCLUDED.grade, reason = EXCLUDED.reason, symptoms = EXCLUDED.symptoms,"
        " syndromes = EXCLUDED.syndromes, syndrome = EXCLUDED.syndrome, onset = EXCLUDED.onset,"
        " seen_doctor = EXCLUDED.seen_doctor, diagnosis = EXCLUDED.diagnosis,"
        " disease = EXCLUDED.disease, note = EXCLUDED.note, updated_at = EXCLUDED.updated_at,"
        " trace_due = EXCLUDED.trace_due, traced_at = EXCLUDED.traced_at,"
        " traced_by = EXCLUDED.traced_by"
        " RETURNING id",
        19, p, &rc);
    if (!res)
        goto out;
    char absence[24];
    snprintf(absence, sizeof absence, "%s", PQgetvalue(res, 0, 0));
    if ((rc = s_case_alert(ctx, ev, absence)) < 0 ||
        (rc = ha_cluster_case(ctx, st, strtoll(absence, NULL, 10), tz, ev->district)) < 0 ||
        (rc = s_touch_school(ctx, st, ev, tz, today, date)) < 0)
        goto out;
    rc = 0;
out:
    free(sym_text);
    free(syn_text);
    PQclear(old);
    PQclear(res);
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
    int rc = s_prologue(ctx, ev, tz, today);
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
    PGresult *res =
        ha_exec(ctx,
                "UPDATE health.absences SET diagnosis = $4, traced_by = $5,"
                " traced_at = coalesce(traced_at, $6::timestamptz), updated_at = $6::timestamptz,"
                " reason = coalesce($7, reason), disease = coalesce(lower($8), disease),"
                " seen_doctor = coalesce($9::boolean, seen_doctor), note = coalesce($10, note)"
                " WHERE school = $1 AND student = $2 AND date = $3::date RETURNING id",
                10, p, &rc);
    if (!res)
        return rc;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return s_reject(ctx, ev, "no absence of %s on %s is registered", sc_json_str(d, "student"),
                        sc_json_str(d, "date"));
    }
    char absence[24];
    snprintf(absence, sizeof absence, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    if ((rc = s_case_alert(ctx, ev, absence)) < 0)
        return rc;
    return ha_cluster_case(ctx, st, strtoll(absence, NULL, 10), tz, ev->district);
}

static int s_handle(sc_ctx_t *ctx, void *state, const sc_event_t *ev)
{
    struct ha_state *st = state;
    if (strcmp(ev->type, "health.morning_check") == 0)
        return s_on_morning_check(ctx, st, ev);
    if (strcmp(ev->type, "health.absence.reported") == 0)
        return s_on_reported(ctx, st, ev);
    if (strcmp(ev->type, "health.absence.traced") == 0)
        return s_on_traced(ctx, st, ev);
    return 0; /* our own emitted events, or a type a newer sender knows */
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
    return s_configure(ctx, st);
}

static void s_fini(sc_ctx_t *ctx, void *state)
{
    (void)ctx;
    struct ha_state *st = state;
    if (!st)
        return;
    free(st->rules);
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
};

SC_PLUGIN_DEFINE(s_plugin)
