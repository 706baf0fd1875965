/* ledger: applying each record event to the plugin's tables, refusing what cannot be applied. */
#include "ledger.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- statement parameters ---------------------------------------------------------------- */

#define S_MAXP 24

/* Text parameters of one statement; NULL entries are SQL NULL. */
typedef struct s_params {
    const char *v[S_MAXP];
    char *owned[S_MAXP];
    char buf[S_MAXP][SC_TIME_LEN];
    int n;
} s_params_t;

static void p_str(s_params_t *p, const char *s)
{
    p->v[p->n++] = s;
}

static void p_int(s_params_t *p, long long v)
{
    snprintf(p->buf[p->n], SC_TIME_LEN, "%lld", v);
    p->v[p->n] = p->buf[p->n];
    p->n++;
}

/* An integer member of data, or NULL when absent. */
static void p_data_int(s_params_t *p, const json_t *data, const char *key)
{
    const json_t *v = json_object_get(data, key);
    if (json_is_integer(v))
        p_int(p, json_integer_value(v));
    else
        p_str(p, NULL);
}

static void p_time(s_params_t *p, sc_time_t t)
{
    p->v[p->n] = sc_time_format(t, p->buf[p->n]);
    p->n++;
}

/* A JSON value as text (NULL when absent); def is used when v is absent and def is given. */
static void p_json(s_params_t *p, const json_t *v, const char *def)
{
    if (!v || json_is_null(v)) {
        p_str(p, def);
        return;
    }
    p->owned[p->n] = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    p->v[p->n] = p->owned[p->n];
    p->n++;
}

static void p_free(s_params_t *p)
{
    for (int i = 0; i < p->n; i++)
        free(p->owned[i]);
}

int lg_exec(sc_ctx_t *ctx, const char *sql, int n, const char *const *params)
{
    int rc;
    PGresult *res = sc_pq_exec(sc_db(ctx), sql, n, params, &rc);
    if (!res) {
        SC_LOG_ERR(ctx, "%s", PQerrorMessage(sc_db(ctx)));
        return rc;
    }
    PQclear(res);
    return 0;
}

/* Runs a statement and returns its result (caller PQclear()s), or NULL with *rc. */
static PGresult *s_query(sc_ctx_t *ctx, const char *sql, const s_params_t *p, int *rc)
{
    PGresult *res = sc_pq_exec(sc_db(ctx), sql, p->n, p->v, rc);
    if (!res)
        SC_LOG_ERR(ctx, "%s", PQerrorMessage(sc_db(ctx)));
    return res;
}

static int s_exec(sc_ctx_t *ctx, const char *sql, s_params_t *p)
{
    int rc = lg_exec(ctx, sql, p->n, p->v);
    p_free(p);
    return rc;
}

/* ---- refusals ---------------------------------------------------------------------------- */

int lg_reject(sc_ctx_t *ctx, const sc_event_t *ev, const char *type, const char *key_name,
              const char *key, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    json_t *data = json_pack("{s:I, s:s, s:s?, s:s}", "event", (json_int_t)ev->id, "type", ev->type,
                             key_name, key, "reason", reason);
    if (!data)
        return -ENOMEM;
    SC_LOG_INFO(ctx, "event %lld (%s) refused: %s", (long long)ev->id, ev->type, reason);
    int rc = sc_emit(
        ctx,
        &(sc_emit_t){.type = type, .school = ev->school, .district = ev->district, .data = data});
    json_decref(data);
    return rc;
}

/* ---- schools ----------------------------------------------------------------------------- */

static void s_school_fill(const PGresult *res, lg_school_t *out)
{
    out->id = atoi(PQgetvalue(res, 0, 0));
    snprintf(out->code, sizeof out->code, "%s", PQgetvalue(res, 0, 1));
    snprintf(out->district, sizeof out->district, "%s", PQgetvalue(res, 0, 2));
    snprintf(out->tz, sizeof out->tz, "%s", PQgetvalue(res, 0, 3));
}

int lg_school_find(sc_ctx_t *ctx, const char *code, lg_school_t *out)
{
    const char *p[1] = {code};
    int rc;
    PGresult *res = sc_pq_exec(sc_db(ctx),
                               "SELECT id, school, COALESCE(district, ''), timezone"
                               "  FROM ledger.schools WHERE school = $1",
                               1, p, &rc);
    if (!res)
        return rc;
    rc = -ENOENT;
    if (PQntuples(res) == 1) {
        s_school_fill(res, out);
        rc = 0;
    }
    PQclear(res);
    return rc;
}

int lg_drill_schedule(sc_ctx_t *ctx, lg_state_t *st, const lg_school_t *s, int64_t month_first)
{
    int64_t month, due_day;
    char id[16], m[16], d[16];
    snprintf(id, sizeof id, "%d", s->id);
    if (lg_next_checked_month(st, s->district[0] ? s->district : NULL, month_first, &month,
                              &due_day) < 0) {
        const char *p[1] = {id};
        return lg_exec(ctx,
                       "UPDATE ledger.schools SET drill_month = NULL, drill_due = NULL"
                       " WHERE id = $1",
                       1, p);
    }
    const char *p[3] = {id, sc_date_format(month, m), sc_date_format(due_day, d)};
    return lg_exec(ctx,
                   "UPDATE ledger.schools SET drill_month = $2::date,"
                   "       drill_due = $3::date::timestamp AT TIME ZONE timezone"
                   " WHERE id = $1",
                   3, p);
}

/*
 * Registers a school on first sight: its district and time zone from the directory (the
 * daemon's default zone when the directory does not know it), and its first drill check:
 * the month after the one it was registered in (or that month, from its first day).
 */
static int s_school_register(sc_ctx_t *ctx, lg_state_t *st, const char *code, const char *district,
                             const char *tz_given, sc_time_t seen_at, lg_school_t *out)
{
    json_t *info = ctx->host->school(ctx, code);
    const char *tz = tz_given ? tz_given : sc_json_str(info, "timezone");
    const char *dist = sc_json_str(info, "district") ? sc_json_str(info, "district") : district;
    char when[SC_TIME_LEN];
    int rc;
    if (!sc_tz_known(tz)) {
        if (tz)
            SC_LOG_WARN(ctx, "school %s: time zone \"%s\" is unknown, using the default", code, tz);
        tz = ctx->host->default_timezone(ctx);
    }
    const char *p[4] = {code, dist, tz, sc_time_format(seen_at, when)};
    PGresult *res =
        sc_pq_exec(sc_db(ctx),
                   "INSERT INTO ledger.schools (school, district, timezone, registered_on)"
                   " VALUES ($1, $2, $3, ($4::timestamptz AT TIME ZONE $3)::date)"
                   " ON CONFLICT (school) DO NOTHING"
                   " RETURNING id, school, COALESCE(district, ''), timezone,"
                   "           registered_on::text",
                   4, p, &rc);
    json_decref(info);
    if (!res) {
        SC_LOG_ERR(ctx, "%s", PQerrorMessage(sc_db(ctx)));
        return rc;
    }
    if (PQntuples(res) == 0) { /* registered meanwhile by another path of this transaction */
        PQclear(res);
        return lg_school_find(ctx, code, out);
    }
    s_school_fill(res, out);
    int64_t reg = 0;
    sc_date_parse(PQgetvalue(res, 0, 4), &reg);
    PQclear(res);
    int64_t first = lg_month_first(reg) == reg ? reg : lg_month_next(reg);
    SC_LOG_INFO(ctx, "school %s registered (time zone %s)", code, out->tz);
    return lg_drill_schedule(ctx, st, out, first);
}

int lg_school_get(sc_ctx_t *ctx, lg_state_t *st, const char *code, const char *district,
                  sc_time_t seen_at, lg_school_t *out)
{
    if (!code)
        return -ENOENT;
    int rc = lg_school_find(ctx, code, out);
    if (rc != -ENOENT)
        return rc;
    return s_school_register(ctx, st, code, district, NULL, seen_at, out);
}

/* directory.school.upserted: know the school from the start, so that its drill months count. */
static int s_directory_school(sc_ctx_t *ctx, lg_state_t *st, const sc_event_t *ev)
{
    const char *code = ev->school ? ev->school : sc_json_str(ev->data, "school");
    const char *tz = sc_json_str(ev->data, "timezone");
    const char *district = sc_json_str(ev->data, "district");
    lg_school_t s;
    if (!code)
        return 0;
    int rc = lg_school_find(ctx, code, &s);
    if (rc == -ENOENT)
        return s_school_register(ctx, st, code, district ? district : ev->district, tz,
                                 ev->occurred_at, &s);
    if (rc < 0)
        return rc;
    if (tz && !sc_tz_known(tz))
        tz = NULL;
    char id[16];
    snprintf(id, sizeof id, "%d", s.id);
    const char *p[3] = {id, district, tz};
    return lg_exec(ctx,
                   "UPDATE ledger.schools SET district = COALESCE($2, district),"
                   "       timezone = COALESCE($3, timezone) WHERE id = $1",
                   3, p);
}

static int s_visits_write(sc_ctx_t *ctx, lg_state_t *st);

int lg_end_batch(sc_ctx_t *ctx, void *state, bool keep)
{
    lg_state_t *st = state;
    int rc = keep ? s_visits_write(ctx, st) : 0;
    json_array_clear(st->visits);
    json_object_clear(st->visit_keys);
    size_t n = st->ncards;
    if (keep && rc == 0 && n > 0) {
        const char *p[4];
        for (int i = 0; i < 4 && rc == 0; i++) {
            if (sc_pqbuf_put(&st->card_cols[i], "}", 2) < 0) /* with its NUL */
                rc = -ENOMEM;
            p[i] = st->card_cols[i].p;
        }
        PGresult *res = NULL;
        if (rc == 0 &&
            !(res = sc_pq_exec(sc_db(ctx),
                               "INSERT INTO ledger.card_events (ts, school_id, direction, card)"
                               " SELECT r.ts, s.id, r.dir, r.card"
                               "   FROM unnest($1::timestamptz[], $2::text[], $3::smallint[],"
                               "               $4::text[]) AS r(ts, school, dir, card)"
                               "   JOIN ledger.schools s ON s.school = r.school",
                               4, p, &rc)))
            SC_LOG_ERR(ctx, "%s", PQerrorMessage(sc_db(ctx)));
        else if (res && (size_t)atoll(PQcmdTuples(res)) != n)
            rc = -EIO; /* a school's row is not there (a batch that registered it was lost) */
        PQclear(res);
    }
    for (int i = 0; i < 4; i++)
        st->card_cols[i].len = 0;
    st->ncards = 0;
    if (!keep || rc < 0) /* a school registered meanwhile may be gone with the transaction */
        json_object_clear(st->card_schools);
    return rc;
}

/* Adds a value to one of the card columns: a code or an RFC 3339 time, quoted as it is. */
static int s_card_col(sc_pqbuf_t *b, bool first, const char *v)
{
    return sc_pqbuf_put(b, first ? "{\"" : ",\"", 2) < 0 || sc_pqbuf_put(b, v, strlen(v)) < 0 ||
                   sc_pqbuf_put(b, "\"", 1) < 0
               ? -ENOMEM
               : 0;
}

/*
 * Writes the visitors' entries waiting in st->visits with one statement, then refuses, in
 * their order, those whose visit was registered already. Returns 0 or -errno; nothing waits
 * after.
 */
static int s_visits_write(sc_ctx_t *ctx, lg_state_t *st)
{
    size_t n = json_array_size(st->visits);
    char grace[24], *rows = NULL;
    PGresult *res = NULL;
    int rc = -ENOMEM;
    if (n == 0)
        return 0;
    snprintf(grace, sizeof grace, "%" PRId64, st->late_visit_grace);
    if (!(rows = json_dumps(st->visits, JSON_COMPACT)))
        goto out;
    const char *p[] = {rows, st->closing_time, grace};
    /* As s_gate_entry, for many: due at closing time on the day of entry; entering after it,
     * grace from the entry. Each row comes back, in order, saying whether it was written. */
    if (!(res = sc_pq_exec(
              sc_db(ctx),
              "WITH r AS (SELECT * FROM json_to_recordset($1::json) AS r(ord int, school text,"
              "   visit text, name text, organisation text, purpose text, host text, gate text,"
              "   vehicle text, at timestamptz, event bigint)),"
              " ins AS (INSERT INTO ledger.visits (school_id, visit, name, organisation,"
              "   purpose, host, gate, vehicle, entered_at, overstay_due, event_id)"
              "   SELECT s.id, r.visit, r.name, r.organisation, r.purpose, r.host, r.gate,"
              "          r.vehicle, r.at, CASE WHEN r.at < c.closing THEN c.closing"
              "                           ELSE r.at + $3::bigint * interval '1 second' END,"
              "          r.event"
              "     FROM r JOIN ledger.schools s ON s.school = r.school"
              "     CROSS JOIN LATERAL (SELECT ((r.at AT TIME ZONE s.timezone)::date + $2::time)"
              "                                AT TIME ZONE s.timezone AS closing) c"
              "    ORDER BY r.ord"
              "   ON CONFLICT (school_id, visit) DO NOTHING RETURNING school_id, visit)"
              " SELECT EXISTS (SELECT 1 FROM ins WHERE ins.school_id = s.id"
              "                 AND ins.visit = r.visit)"
              "   FROM r JOIN ledger.schools s ON s.school = r.school ORDER BY r.ord",
              3, p, &rc))) {
        SC_LOG_ERR(ctx, "%s", PQerrorMessage(sc_db(ctx)));
        goto out;
    }
    if ((size_t)PQntuples(res) != n) { /* a school's row is not there after all */
        rc = -EIO;
        goto out;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (PQgetvalue(res, (int)i, 0)[0] == 't')
            continue;
        const json_t *row = json_array_get(st->visits, i);
        const char *visit = sc_json_str(row, "visit");
        const sc_event_t ev = {.id = sc_json_int(row, "event", 0),
                               .type = "gate.entry",
                               .school = sc_json_str(row, "school"),
                               .district = sc_json_str(row, "district")};
        rc = lg_reject(ctx, &ev, "ledger.rejected", "visit", visit,
                       "visit %s is already registered", visit);
    }
out:
    free(rows);
    PQclear(res);
    json_array_clear(st->visits);
    json_object_clear(st->visit_keys);
    return rc;
}

/*
 * A visitor's entry at a school whose row this batch has seen: it waits in st->visits and
 * the batch's entries are written together (s_visits_write) — before anything else of the
 * batch but pupils' cards is applied, and before a second entry of the same visit, so every
 * event still finds what those before it left, and refusals come in their order.
 */
static int s_visit_wait(sc_ctx_t *ctx, lg_state_t *st, const sc_event_t *ev)
{
    const json_t *d = ev->data;
    char key[2 * SC_CODE_MAX + 8], when[SC_TIME_LEN];
    int rc;
    snprintf(key, sizeof key, "%s\x1f%s", ev->school, sc_json_str(d, "visit"));
    if (json_object_get(st->visit_keys, key) && (rc = s_visits_write(ctx, st)) < 0)
        return rc;
    json_t *row =
        json_pack("{s:I, s:s, s:s*, s:s, s:s*, s:s*, s:s*, s:s*, s:s*, s:s*, s:s, s:I}", "ord",
                  (json_int_t)json_array_size(st->visits), "school", ev->school, "district",
                  ev->district, "visit", sc_json_str(d, "visit"), "name", sc_json_str(d, "name"),
                  "organisation", sc_json_str(d, "organisation"), "purpose",
                  sc_json_str(d, "purpose"), "host", sc_json_str(d, "host"), "gate",
                  sc_json_str(d, "gate"), "vehicle", sc_json_str(d, "vehicle"), "at",
                  sc_time_format(ev->occurred_at, when), "event", (json_int_t)ev->id);
    if (!row || json_array_append_new(st->visits, row) < 0 ||
        json_object_set_new(st->visit_keys, key, json_true()) < 0)
        return -ENOMEM;
    return 0;
}

/* ---- the records ------------------------------------------------------------------------- */

typedef int (*s_apply_fn)(sc_ctx_t *ctx, lg_state_t *st, const sc_event_t *ev,
                          const lg_school_t *s);

/* The first parameters of most statements: $1 school id, $2 event id, $3 occurred_at. */
static void p_common(s_params_t *p, const sc_event_t *ev, const lg_school_t *s)
{
    p_int(p, s->id);
    p_int(p, ev->id);
    p_time(p, ev->occurred_at);
}

static int s_leadership(sc_ctx_t *ctx, lg_state_t *st, const sc_event_t *ev, const lg_school_t *s)
{
    (void)st;
    const json_t *d = ev->data;
    const char *name = sc_json_str(d, "name");
    json_t *person = name ? NULL : ctx->host->person(ctx, sc_json_str(d, "member"));
    s_params_t p = {0};
    p_common(&p, ev, s);
    p_str(&p, sc_json_str(d, "member"));
    p_str(&p, name ? name : sc_json_str(person, "name"));
    p_str(&p, sc_json_str(d, "position"));
    p_str(&p, sc_json_str(d, "duty"));
    p_str(&p, sc_json_bool(d, "active", true) ? "true" : "false");
    p_str(&p, sc_json_str(d, "since"));
    int rc = s_exec(ctx,
                    "INSERT INTO ledger.leadership AS l (school_id, member, name, position, duty,"
                    "       active, since, updated_at, event_id)"
                    " VALUES ($1, $4, $5, $6, $7, $8::boolean, $9::date, $3, $2)"
                    " ON CONFLICT (school_id, member) DO UPDATE SET"
                    "   name = COALESCE(EXCLUDED.name, l.name), position = EXCLUDED.position,"
                    "   duty = EXCLUDED.duty, active = EXCLUDED.active,"
                    "   since = COALESCE(EXCLUDED.since, l.since),"
                    "   updated_at = EXCLUDED.updated_at, event_id = EXCLUDED.event_id",
                    &p);
    json_decref(person);
    return rc;
}

static int s_rule(sc_ctx_t *ctx, lg_state_t *st, const sc_event_t *ev, const lg_school_t *s)
{
    (void)st;
    const json_t *d = ev->data;
    s_params_t p = {0};
    p_common(&p, ev, s);
    p_str(&p, sc_json_str(d, "rule"));
    p_str(&p, sc_json_str(d, "version"));
    p_str(&p, sc_json_str(d, "title"));
    p_str(&p, sc_json_str(d, "category"));
    p_str(&p, sc_json_str(d, "effective_from"));
    p_str(&p, sc_json_str(d, "url"));
    p_str(&p, sc_json_str(d, "summary"));
    return s_exec(ctx,
                  "INSERT INTO ledger.rules (school_id, rule, version, title, category,"
                  "       effective_from, url, summary, published_at, event_id)"
                  " VALUES ($1, $4, $5, $6, $7, $8::date, $9, $10, $3, $2)"
                  " ON CONFLICT (school_id, rule, version) DO UPDATE SET"
                  "   title = EXCLUDED.title, category = EXCLUDED.category,"
                  "   effective_from = EXCLUDED.effective_from, url = EXCLUDED.url,"
                  "   summary = EXCLUDED.summary, published_at = EXCLUDED.published_at,"
                  "   event_id = EXCLUDED.event_id",
                  &p);
}

static int s_agreement(sc_ctx_t *ctx, lg_state_t *st, const sc_event_t *ev, const lg_school_t *s)
{
    (void)st;
    const json_t *d = ev->data;
    s_params_t p = {0};
    p_common(&p, ev, s);
    p_str(&p, s->tz);
    p_str(&p, sc_json_str(d, "agreement"));
    p_str(&p, sc_json_str(d, "party"));
    p_str(&p, sc_json_str(d, "party_role"));
    p_str(&p, sc_json_str(d, "term"));
    p_str(&p, sc_json_str(d, "signed_on"));
    p_str(&p, sc_json_str(d, "title"));
    p_str(&p, sc_json_str(d, "counterparty"));
    return s_exec(ctx,
                  "INSERT INTO ledger.agreements (school_id, agreement, party, party_role, term,"
                  "       signed_on, title, counterparty, event_id)"
                  " VALUES ($1, $5, $6, $7, $8,"
                  "         COALESCE($9::date, ($3::timestamptz AT TIME ZONE $4)::date),"
                  "         $10, $11, $2)"
                  " ON CONFLICT (school_id, agreement) DO UPDATE SET"
                  "   party = EXCLUDED.party, party_role = EXCLUDED.party_role,"
                  "   term = EXCLUDED.term, signed_on = EXCLUDED.signed_on,"
                  "   title = EXCLUDED.title, counterparty = EXCLUDED.counterparty,"
                  "   event_id = EXCLUDED.event_id",
                  &p);
}

/* agreement.roster: who is expected to sign a term's agreements of one role. */
static int s_roster(sc_ctx_t *ctx, lg_state_t *st, const sc_event_t *ev, const lg_school_t *s)
{
    (void)st;
    const json_t *d = ev->data;
    int rc = 0;
    s_params_t p = {0};
    p_int(&p, s->id);
    p_str(&p, sc_json_str(d, "term"));
    p_str(&p, sc_json_str(d, "party_role"));
    if (sc_json_bool(d, "replace", false) &&
        (rc = lg_exec(ctx,
                      "DELETE FROM ledger.agreement_roster"
                      " WHERE school_id = $1 AND term = $2 AND party_role = $3",
                      3, p.v)) < 0)
        goto out;
    p_json(&p, json_object_get(d, "parties"), "[]");
    p_time(&p, ev->occurred_at);
    p_str(&p, s->tz);
    rc = lg_exec(ctx,
                 "INSERT INTO ledger.agreement_roster (school_id, term, party_role, party,"
                 "       declared_on)"
                 " SELECT $1, $2, $3, x, ($5::timestamptz AT TIME ZONE $6)::date"
                 "   FROM jsonb_array_elements_text($4::jsonb) x"
                 " ON CONFLICT DO NOTHING",
                 p.n, p.v);
out:
    p_free(&p);
    return rc;
}

/* ---- drills ------------------------------------------------------------------------------ */

/* The drill's status ("" when unknown), row locked for this transaction. */
static int s_drill_status(sc_ctx_t *ctx, const lg_school_t *s, const char *drill, char *status,
                          size_t len)
{
    char id[16];
    int rc;
    snprintf(id, sizeof id, "%d", s->id);
    const char *p[2] = {id, drill};
    PGresult *res = sc_pq_exec(sc_db(ctx),
                               "SELECT status FROM ledger.drills"
                               " WHERE school_id = $1 AND drill = $2 FOR UPDATE",
                               2, p, &rc);
    if (!res)
        return rc;
    snprintf(status, len, "%s", PQntuples(res) ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    return 0;
}

/* Refuses a drill event in the wrong state; 1 when refused, 0 when it may go on, or -errno. */
static int s_drill_refuse(sc_ctx_t *ctx, const sc_event_t *ev, const char *drill, const char *why)
{
    int rc = lg_reject(ctx, ev, "ledger.rejected", "drill", drill, "drill %s %s", drill, why);
    return rc < 0 ? rc : 1;
}

/* Checks the drill's state for the event; 1 when it was refused, 0 to go on, or -errno. */
static int s_drill_check(sc_ctx_t *ctx, const sc_event_t *ev, const lg_school_t *s,
                         const char *drill)
{
    char status[16];
    int rc = s_drill_status(ctx, s, drill, status, sizeof status);
    if (rc < 0)
        return rc;
    bool running = strcmp(status, "running") == 0, ended = strcmp(status, "ended") == 0;
    const char *type = ev->type + strlen("drill.");
    if (strcmp(type, "ended") == 0) {
        if (!*status)
            return s_drill_refuse(ctx, ev, drill, "is unknown");
        if (!running)
            return s_drill_refuse(ctx, ev, drill, ended ? "has already ended" : "has not started");
        return 0;
    }
    if (strcmp(type, "cancelled") == 0) {
        if (!*status)
            return s_drill_refuse(ctx, ev, drill, "is unknown");
        if (strcmp(status, "scheduled") != 0)
            return s_drill_refuse(ctx, ev, drill,
                                  running ? "has already started: end it with drill.ended"
                                  : ended ? "has already ended"
                                          : "was already cancelled");
        return 0;
    }
    if (strcmp(status, "cancelled") == 0 && strcmp(type, "scheduled") != 0)
        return s_drill_refuse(ctx, ev, drill, "was cancelled: schedule it again first");
    if (strcmp(type, "conducted") == 0 && (running || ended))
        return s_drill_refuse(ctx, ev, drill, "is already recorded");
    if (running || ended)
        return s_drill_refuse(ctx, ev, drill,
                              running ? "has already started" : "has already ended");
    return 0;
}

static int s_drill_scheduled(sc_ctx_t *ctx, lg_state_t *st, const sc_event_t *ev,
                             const lg_school_t *s)
{
    (void)st;
    const json_t *d = ev->data;
    int rc = s_drill_check(ctx, ev, s, sc_json_str(d, "drill"));
    if (rc != 0)
        return rc < 0 ? rc : 0;
    s_params_t p = {0};
    p_int(&p, s->id);
    p_int(&p, ev->id);
    p_str(&p, sc_json_str(d, "drill"));
    p_str(&p, sc_json_str(d, "kind"));
    p_str(&p, sc_json_str(d, "starts_at"));
    p_str(&p, sc_json_str(d, "ends_at"));
    p_str(&p, sc_json_str(d, "responsible"));
    p_str(&p, sc_json_str(d, "note"));
    return s_exec(ctx,
                  "INSERT INTO ledger.drills AS x (school_id, drill, kind, status,"
                  "       scheduled_start, scheduled_end, responsible, note, event_id)"
                  " VALUES ($1, $3, $4, 'scheduled', $5, $6, $7, $8, $2)"
                  " ON CONFLICT (school_id, drill) DO UPDATE SET"
                  "   kind = EXCLUDED.kind, status = 'scheduled',"
                  "   scheduled_start = EXCLUDED.scheduled_start,"
                  "   scheduled_end = EXCLUDED.scheduled_end,"
                  "   responsible = COALESCE(EXCLUDED.responsible, x.responsible),"
                  "   note = COALESCE(EXCLUDED.note, x.note), event_id = EXCLUDED.event_id",
                  &p);
}

static int s_drill_started(sc_ctx_t *ctx, lg_state_t *st, const sc_event_t *ev,
                           const lg_school_t *s)
{
    (void)st;
    const json_t *d = ev->data;
    int rc = s_drill_check(ctx, ev, s, sc_json_str(d, "drill"));
    if (rc != 0)
        return rc < 0 ? rc : 0;
    s_params_t p = {0};
    p_common(&p, ev, s);
    p_str(&p, sc_json_str(d, "drill"));
    p_str(&p, sc_json_str(d, "kind"));
    p_str(&p, sc_json_str(d, "starts_at"));
    p_str(&p, sc_json_str(d, "ends_at"));
    p_str(&p, sc_json_str(d, "responsible"));
    p_str(&p, sc_json_str(d, "note"));
    p_data_int(&p, d, "participants");
    return s_exec(ctx,
                  "INSERT INTO ledger.drills AS x (school_id, drill, kind, status, starts_at,"
                  "       scheduled_end, responsible, note, participants, event_id)"
                  " VALUES ($1, $4, $5, 'running', COALESCE($6::timestamptz, $3::timestamptz),"
                  "         $7::timestamptz, $8, $9, $10::int, $2)"
                  " ON CONFLICT (school_id, drill) DO UPDATE SET"
                  "   kind = EXCLUDED.kind, status = 'running', starts_at = EXCLUDED.starts_at,"
                  "   scheduled_end = COALESCE(EXCLUDED.scheduled_end, x.scheduled_end),"
                  "   responsible = COALESCE(EXCLUDED.responsible, x.responsible),"
                  "   note = COALESCE(EXCLUDED.note, x.note),"
                  "   participants = COALESCE(EXCLUDED.participants, x.participants),"
                  "   event_id = EXCLUDED.event_id",
                  &p);
}

static int s_drill_ended(sc_ctx_t *ctx, lg_state_t *st, const sc_event_t *ev, const lg_school_t *s)
{
    (void)st;
    const json_t *d = ev->data;
    const char *drill = sc_json_str(d, "drill");
    int rc = s_drill_check(ctx, ev, s, drill);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    s_params_t p = {0};
    p_common(&p, ev, s);
    p_str(&p, drill);
    p_str(&p, sc_json_str(d, "kind"));
    p_str(&p, sc_json_str(d, "ends_at"));
    p_str(&p, sc_json_str(d, "responsible"));
    p_str(&p, sc_json_str(d, "note"));
    p_data_int(&p, d, "participants");
    p_data_int(&p, d, "evacuation_seconds");
    p_json(&p, json_object_get(d, "problems"), NULL);
    PGresult *res = s_query(ctx,
                            "UPDATE ledger.drills SET status = 'ended',"
                            "   ends_at = COALESCE($6::timestamptz, $3::timestamptz),"
                            "   kind = COALESCE($5, kind),"
                            "   responsible = COALESCE($7, responsible),"
                            "   note = COALESCE($8, note),"
                            "   participants = COALESCE($9::int, participants),"
                            "   evacuation_seconds = COALESCE($10::int, evacuation_seconds),"
                            "   problems = COALESCE($11::jsonb, problems), event_id = $2"
                            " WHERE school_id = $1 AND drill = $4"
                            "   AND starts_at <= COALESCE($6::timestamptz, $3::timestamptz)",
                            &p, &rc);
    p_free(&p);
    if (!res)
        return rc;
    bool done = atoi(PQcmdTuples(res)) > 0;
    PQclear(res);
    return done ? 0
                : lg_reject(ctx, ev, "ledger.rejected", "drill", drill,
                            "drill %s cannot end before it started", drill);
}

static int s_drill_conducted(sc_ctx_t *ctx, lg_state_t *st, const sc_event_t *ev,
                             const lg_school_t *s)
{
    (void)st;
    const json_t *d = ev->data;
    int rc = s_drill_check(ctx, ev, s, sc_json_str(d, "drill"));
    if (rc != 0)
        return rc < 0 ? rc : 0;
    s_params_t p = {0};
    p_int(&p, s->id);
    p_int(&p, ev->id);
    p_str(&p, sc_json_str(d, "drill"));
    p_str(&p, sc_json_str(d, "kind"));
    p_str(&p, sc_json_str(d, "starts_at"));
    p_str(&p, sc_json_str(d, "ends_at"));
    p_str(&p, sc_json_str(d, "responsible"));
    p_str(&p, sc_json_str(d, "note"));
    p_data_int(&p, d, "participants");
    p_data_int(&p, d, "evacuation_seconds");
    p_json(&p, json_object_get(d, "problems"), NULL);
    return s_exec(ctx,
                  "INSERT INTO ledger.drills AS x (school_id, drill, kind, status, starts_at,"
                  "       ends_at, responsible, note, participants, evacuation_seconds, problems,"
                  "       event_id)"
                  " VALUES ($1, $3, $4, 'ended', $5, $6, $7, $8, $9::int, $10::int, $11::jsonb,"
                  "         $2)"
                  " ON CONFLICT (school_id, drill) DO UPDATE SET"
                  "   kind = EXCLUDED.kind, status = 'ended', starts_at = EXCLUDED.starts_at,"
                  "   ends_at = EXCLUDED.ends_at,"
                  "   responsible = COALESCE(EXCLUDED.responsible, x.responsible),"
                  "   note = COALESCE(EXCLUDED.note, x.note),"
                  "   participants = EXCLUDED.participants,"
                  "   evacuation_seconds = EXCLUDED.evacuation_seconds,"
                  "   problems = EXCLUDED.problems, event_id = EXCLUDED.event_id",
                  &p);
}

static int s_drill_cancelled(sc_ctx_t *ctx, lg_state_t *st, const sc_event_t *ev,
                             const lg_school_t *s)
{
    (void)st;
    const json_t *d = ev->data;
    int rc = s_drill_check(ctx, ev, s, sc_json_str(d, "drill"));
    if (rc != 0)
        return rc < 0 ? rc : 0;
    s_params_t p = {0};
    p_int(&p, s->id);
    p_int(&p, ev->id);
    p_str(&p, sc_json_str(d, "drill"));
    p_str(&p, sc_json_str(d, "reason"));
    return s_exec(ctx,
                  "UPDATE ledger.drills SET status = 'cancelled', note = COALESCE($4, note),"
                  "       event_id = $2"
                  " WHERE school_id = $1 AND drill = $3",
                  &p);
}

/* ---- education and meetings -------------------------------------------------------------- */

static int s_education(sc_ctx_t *ctx, lg_state_t *st, const sc_event_t *ev, const lg_school_t *s)
{
    (void)st;
    const json_t *d = ev->data;
    s_params_t p = {0};
    p_common(&p, ev, s);
    p_str(&p, sc_json_str(d, "session"));
    p_str(&p, sc_json_str(d, "topic"));
    p_str(&p, sc_json_str(d, "title"));
    p_json(&p, json_object_get(d, "classes"), "[]");
    p_str(&p, sc_json_str(d, "teacher"));
    p_str(&p, sc_json_str(d, "held_at"));
    p_data_int(&p, d, "participants");
    p_data_int(&p, d, "duration_minutes");
    return s_exec(ctx,
                  "INSERT INTO ledger.education (school_id, session, topic, title, classes,"
                  "       teacher, held_at, participants, duration_minutes, event_id)"
                  " VALUES ($1, $4, $5, $6, $7::jsonb, $8,"
                  "         COALESCE($9::timestamptz, $3::timestamptz), $10::int, $11::int, $2)"
                  " ON CONFLICT (school_id, session) DO UPDATE SET"
                  "   topic = EXCLUDED.topic, title = EXCLUDED.title,"
                  "   classes = EXCLUDED.classes, teacher = EXCLUDED.teacher,"
                  "   held_at = EXCLUDED.held_at, participants = EXCLUDED.participants,"
                  "   duration_minutes = EXCLUDED.duration_minutes, event_id = EXCLUDED.event_id",
                  &p);
}

static int s_meeting(sc_ctx_t *ctx, lg_state_t *st, const sc_event_t *ev, const lg_school_t *s)
{
    (void)st;
    const json_t *d = ev->data;
    s_params_t p = {0};
    p_common(&p, ev, s);
    p_str(&p, sc_json_str(d, "meeting"));
    p_str(&p, sc_json_str(d, "title"));
    p_str(&p, sc_json_str(d, "held_at"));
    p_str(&p, sc_json_str(d, "chair"));
    p_json(&p, json_object_get(d, "attendees"), "[]");
    p_json(&p, json_object_get(d, "decisions"), "[]");
    p_str(&p, sc_json_str(d, "minutes"));
    return s_exec(ctx,
                  "INSERT INTO ledger.meetings (school_id, meeting, title, held_at, chair,"
                  "       attendees, decisions, minutes, event_id)"
                  " VALUES ($1, $4, $5, COALESCE($6::timestamptz, $3::timestamptz), $7,"
                  "         $8::jsonb, $9::jsonb, $10, $2)"
                  " ON CONFLICT (school_id, meeting) DO UPDATE SET"
                  "   title = EXCLUDED.title, held_at = EXCLUDED.held_at,"
                  "   chair = EXCLUDED.chair, attendees = EXCLUDED.attendees,"
                  "   decisions = EXCLUDED.decisions, minutes = EXCLUDED.minutes,"
                  "   event_id = EXCLUDED.event_id",
                  &p);
}

/* ---- outings ----------------------------------------------------------------------------- */

/* The outing's row (status, starts_at, refusal, responsible), locked; NULL with *rc on error. */
static PGresult *s_outing_row(sc_ctx_t *ctx, const lg_school_t *s, const char *outing, int *rc)
{
    char id[16];
    snprintf(id, sizeof id, "%d", s->id);
    const char *p[2] = {id, outing};
    return sc_pq_exec(sc_db(ctx),
                      "SELECT status, starts_at, COALESCE(refusal, ''), responsible"
                      "  FROM ledger.outings WHERE school_id = $1 AND outing = $2 FOR UPDATE",
                      2, p, rc);
}

/* The whole days between the school-local dates of two instants (b − a). */
static int s_local_days(sc_ctx_t *ctx, sc_time_t a, sc_time_t b, const char *tz, long *days)
{
    char ta[SC_TIME_LEN], tb[SC_TIME_LEN];
    int rc;
    const char *p[3] = {sc_time_format(a, ta), sc_time_format(b, tb), tz};
    PGresult *res = sc_pq_exec(sc_db(ctx),
                               "SELECT ($2::timestamptz AT TIME ZONE $3)::date"
                               "     - ($1::timestamptz AT TIME ZONE $3)::date",
                               3, p, &rc);
    if (!res)
        return rc;
    *days = atol(PQgetvalue(res, 0, 0));
    PQclear(res);
    return 0;
}

/*
 * outing.submitted. The plan is kept whatever happens, so the ledger shows refusals too;
 * it is refused (outing.rejected) when a field the regulation asks for is missing or when it
 * reaches the school less than outing_notice_days before the outing: the start's local date
 * minus the local date of the event's occurred_at (the moment the plan was handed in).
 */
static int s_outing_submitted(sc_ctx_t *ctx, lg_state_t *st, const sc_event_t *ev,
                              const lg_school_t *s)
{
    static const char *const required[] = {"starts_at",   "ends_at",        "headcount",
                                           "route",       "place",          "security_measures",
                                           "responsible", "emergency_plan", NULL};
    const json_t *d = ev->data;
    const char *outing = sc_json_str(d, "outing");
    char reason[512] = "";
    json_t *missing = json_array();
    long days = 0;
    int rc;
    PGresult *res = s_outing_row(ctx, s, outing, &rc);
    s_params_t p = {0};
    if (!res || !missing)
        goto out;
    const char *status = PQntuples(res) ? PQgetvalue(res, 0, 0) : "";
    if (strcmp(status, "returned") == 0 ||
        (strcmp(status, "approved") == 0 &&
         sc_pq_time(res, 0, 1, SC_TIME_NEVER) <= ev->occurred_at)) {
        rc = lg_reject(ctx, ev, "outing.rejected", "outing", outing,
                       "outing %s has already %s: it cannot be changed", outing,
                       *status == 'r' ? "returned" : "started");
        goto out;
    }
    for (size_t i = 0; required[i]; i++)
        if (!json_object_get(d, required[i]) || json_is_null(json_object_get(d, required[i])))
            json_array_append_new(missing, json_string(required[i]));
    if (json_array_size(missing)) {
        size_t off = (size_t)snprintf(reason, sizeof reason, "the plan lacks");
        const json_t *m;
        size_t i;
        json_array_foreach(missing, i, m) if (off < sizeof reason) off += (size_t)snprintf(
            reason + off, sizeof reason - off, "%s %s", i ? "," : "", json_string_value(m));
    } else {
        if ((rc = s_local_days(ctx, ev->occurred_at, sc_json_time(d, "starts_at", 0), s->tz,
                               &days)) < 0)
            goto out;
        if (days < st->outing_notice_days)
            snprintf(reason, sizeof reason,
                     "submitted %ld days before the outing; at least %d are required", days,
                     st->outing_notice_days);
    }

    p_common(&p, ev, s);
    p_str(&p, outing);
    p_str(&p, sc_json_str(d, "title"));
    p_str(&p, sc_json_str(d, "starts_at"));
    p_str(&p, sc_json_str(d, "ends_at"));
    p_data_int(&p, d, "headcount");
    p_str(&p, sc_json_str(d, "route"));
    p_str(&p, sc_json_str(d, "place"));
    p_str(&p, sc_json_str(d, "security_measures"));
    p_str(&p, sc_json_str(d, "responsible"));
    p_str(&p, sc_json_str(d, "emergency_plan"));
    p_json(&p, json_object_get(d, "classes"), NULL);
    p_str(&p, ev->actor);
    p_str(&p, *reason ? "refused" : "pending");
    p_str(&p, *reason ? reason : NULL);
    if ((rc = lg_exec(ctx,
                      "INSERT INTO ledger.outings AS o (school_id, outing, title, starts_at,"
                      "       ends_at, headcount, route, place, security_measures, responsible,"
                      "       emergency_plan, classes, submitted_at, submitted_by, status,"
                      "       refusal, event_id)"
                      " VALUES ($1, $4, $5, $6::timestamptz, $7::timestamptz, $8::int, $9, $10,"
                      "         $11, $12, $13, $14::jsonb, $3::timestamptz, $15, $16, $17, $2)"
                      " ON CONFLICT (school_id, outing) DO UPDATE SET"
                      "   title = EXCLUDED.title, starts_at = EXCLUDED.starts_at,"
                      "   ends_at = EXCLUDED.ends_at, headcount = EXCLUDED.headcount,"
                      "   route = EXCLUDED.route, place = EXCLUDED.place,"
                      "   security_measures = EXCLUDED.security_measures,"
                      "   responsible = EXCLUDED.responsible,"
                      "   emergency_plan = EXCLUDED.emergency_plan, classes = EXCLUDED.classes,"
                      "   submitted_at = EXCLUDED.submitted_at,"
                      "   submitted_by = EXCLUDED.submitted_by, status = EXCLUDED.status,"
                      "   refusal = EXCLUDED.refusal, decided_by = NULL, decided_at = NULL,"
                      "   decision_note = NULL, reminder_due = NULL, reminders = 0,"
                      "   event_id = EXCLUDED.event_id",
                      p.n, p.v)) < 0)
        goto out;
    if (*reason) {
        json_t *data =
            json_pack("{s:I, s:s, s:s, s:s, s:s?, s:s?, s:O}", "event", (json_int_t)ev->id, "type",
                      ev->type, "outing", outing, "reason", reason, "submitted_by", ev->actor,
                      "responsible", sc_json_str(d, "responsible"), "missing", missing);
        if (!data) {
            rc = -ENOMEM;
            goto out;
        }
        if (!json_array_size(missing))
            json_object_set_new(data, "days_ahead", json_integer(days));
        SC_LOG_INFO(ctx, "outing %s of %s refused: %s", outing, s->code, reason);
        rc = sc_emit(ctx, &(sc_emit_t){.type = "outing.rejected",
                                       .school = s->code,
                                       .district = ev->district,
                                       .data = data});
        json_decref(data);
    }
out:
    p_free(&p);
    PQclear(res);
    json_decref(missing);
    return rc;
}

/* Whether person holds one of the approver roles at the school (no roles configured: anyone). */
static int s_may_approve(sc_ctx_t *ctx, lg_state_t *st, const lg_school_t *s, const char *person,
                         bool *ok)
{
    const json_t *role;
    size_t i;
    *ok = json_array_size(st->approver_roles) == 0;
    json_array_foreach(st->approver_roles, i, role)
    {
        json_t *people = ctx->host->people_with_role(ctx, s->code, NULL, json_string_value(role));
        const json_t *pp;
        size_t j;
        if (!people)
            return -EAGAIN;
        json_array_foreach(people, j, pp)
        {
            const char *code = sc_json_str(pp, "person");
            *ok |= code && strcmp(code, person) == 0;
        }
        json_decref(people);
    }
    return 0;
}

static int s_outing_approved(sc_ctx_t *ctx, lg_state_t *st, const sc_event_t *ev,
                             const lg_school_t *s)
{
    const json_t *d = ev->data;
    const char *outing = sc_json_str(d, "outing");
    const char *by = sc_json_str(d, "by") ? sc_json_str(d, "by") : ev->actor;
    bool approved = sc_json_bool(d, "approved", true), may = false;
    int rc;
    PGresult *res = s_outing_row(ctx, s, outing, &rc);
    s_params_t p = {0};
    if (!res)
        return rc;
    const char *status = PQntuples(res) ? PQgetvalue(res, 0, 0) : "";
    if (!*status)
        rc =
            lg_reject(ctx, ev, "outing.rejected", "outing", outing, "outing %s is unknown", outing);
    else if (strcmp(status, "refused") == 0)
        rc = lg_reject(ctx, ev, "outing.rejected", "outing", outing,
                       "outing %s was refused when submitted (%s): submit it again", outing,
                       PQgetvalue(res, 0, 2));
    else if (strcmp(status, "pending") != 0)
        rc = lg_reject(ctx, ev, "outing.rejected", "outing", outing, "outing %s was already %s",
                       outing, status);
    else if ((rc = s_may_approve(ctx, st, s, by, &may)) < 0)
        ;
    else if (!may)
        rc = lg_reject(ctx, ev, "outing.rejected", "outing", outing,
                       "%s may not decide on outings of %s (a principal must)", by, s->code);
    else if (approved && sc_pq_time(res, 0, 1, SC_TIME_NEVER) <= ev->occurred_at)
        rc = lg_reject(ctx, ev, "outing.rejected", "outing", outing,
                       "outing %s has already started: it can no longer be approved", outing);
    else {
        p_common(&p, ev, s);
        p_str(&p, outing);
        p_str(&p, approved ? "approved" : "declined");
        p_str(&p, by);
        p_str(&p, sc_json_str(d, "note"));
        p_int(&p, st->outing_return_grace);
        rc = lg_exec(ctx,
                     "UPDATE ledger.outings SET status = $5, decided_by = $6,"
                     "   decided_at = $3::timestamptz, decision_note = $7, event_id = $2,"
                     "   reminder_due = CASE WHEN $5 = 'approved'"
                     "                       THEN ends_at + $8::bigint * interval '1 second' END"
                     " WHERE school_id = $1 AND outing = $4",
                     p.n, p.v);
    }
    p_free(&p);
    PQclear(res);
    return rc;
}

static int s_outing_returned(sc_ctx_t *ctx, lg_state_t *st, const sc_event_t *ev,
                             const lg_school_t *s)
{
    (void)st;
    const json_t *d = ev->data;
    const char *outing = sc_json_str(d, "outing");
    int rc;
    PGresult *res = s_outing_row(ctx, s, outing, &rc);
    if (!res)
        return rc;
    const char *status = PQntuples(res) ? PQgetvalue(res, 0, 0) : "";
    if (strcmp(status, "approved") != 0) {
        rc = lg_reject(ctx, ev, "outing.rejected", "outing", outing, "outing %s %s", outing,
                       !*status                          ? "is unknown"
                       : strcmp(status, "returned") == 0 ? "has already returned"
                                                         : "was not approved");
        PQclear(res);
        return rc;
    }
    PQclear(res);
    s_params_t p = {0};
    p_common(&p, ev, s);
    p_str(&p, outing);
    p_str(&p, sc_json_str(d, "returned_at"));
    p_data_int(&p, d, "headcount");
    p_str(&p, sc_json_str(d, "note"));
    return s_exec(ctx,
                  "UPDATE ledger.outings SET status = 'returned',"
                  "   returned_at = COALESCE($5::timestamptz, $3::timestamptz),"
                  "   returned_headcount = $6::int, return_note = $7, reminder_due = NULL,"
                  "   event_id = $2"
                  " WHERE school_id = $1 AND outing = $4",
                  &p);
}

/* ---- gate -------------------------------------------------------------------------------- */

static bool s_pupil(const json_t *d)
{
    const char *kind = sc_json_str(d, "kind");
    return kind && strcmp(kind, "pupil") == 0;
}

/*
 * A pupil's card event: one narrow row. The first of a school the plugin does not know yet is
 * written at once, the school found (or registered) by the same statement; the others wait for
 * the batch's end and go in one statement, since the school's row is known to be there.
 */
static int s_card(sc_ctx_t *ctx, lg_state_t *st, const sc_event_t *ev, int direction)
{
    char when[SC_TIME_LEN], dir[4];
    int rc;
    snprintf(dir, sizeof dir, "%d", direction);
    sc_time_format(ev->occurred_at, when);
    if (json_object_get(st->card_schools, ev->school)) {
        const char *v[4] = {when, ev->school, dir, sc_json_str(ev->data, "card")};
        for (int i = 0; i < 4; i++)
            if (s_card_col(&st->card_cols[i], st->ncards == 0, v[i]) < 0)
                return -ENOMEM;
        st->ncards++;
        return 0;
    }
    const char *p[4] = {when, ev->school, dir, sc_json_str(ev->data, "card")};
    for (int attempt = 0; attempt < 2; attempt++) {
        PGresult *res = sc_pq_exec(sc_db(ctx),
                                   "INSERT INTO ledger.card_events (ts, school_id, direction, card)"
                                   " SELECT $1, id, $3, $4 FROM ledger.schools WHERE school = $2",
                                   4, p, &rc);
        if (!res) {
            SC_LOG_ERR(ctx, "%s", PQerrorMessage(sc_db(ctx)));
            return rc;
        }
        bool done = atoi(PQcmdTuples(res)) > 0;
        PQclear(res);
        if (done)
            return json_object_set_new(st->card_schools, ev->school, json_true()) == 0 ? 0
                                                                                       : -ENOMEM;
        lg_school_t s;
        if ((rc = lg_school_get(ctx, st, ev->school, ev->district, ev->occurred_at, &s)) < 0)
            return rc;
    }
    return -EIO;
}

static int s_gate_entry(sc_ctx_t *ctx, lg_state_t *st, const sc_event_t *ev, const lg_school_t *s)
{
    const json_t *d = ev->data;
    const char *visit = sc_json_str(d, "visit");
    int rc;
    s_params_t p = {0};
    p_common(&p, ev, s);
    p_str(&p, s->tz);
    p_str(&p, visit);
    p_str(&p, sc_json_str(d, "name"));
    p_str(&p, sc_json_str(d, "organisation"));
    p_str(&p, sc_json_str(d, "purpose"));
    p_str(&p, sc_json_str(d, "host"));
    p_str(&p, sc_json_str(d, "gate"));
    p_str(&p, sc_json_str(d, "vehicle"));
    p_str(&p, st->closing_time);
    p_int(&p, st->late_visit_grace);
    /* Due at closing time on the day of entry; entering after it, grace from the entry. */
    PGresult *res = s_query(ctx,
                            "INSERT INTO ledger.visits (school_id, visit, name, organisation,"
                            "       purpose, host, gate, vehicle, entered_at, overstay_due,"
                            "       event_id)"
                            " SELECT $1, $5, $6, $7, $8, $9, $10, $11, $3::timestamptz,"
                            "        CASE WHEN $3::timestamptz < c.closing THEN c.closing"
                            "             ELSE $3::timestamptz + $13::bigint * interval '1 second'"
                            "        END, $2"
                            "   FROM (SELECT (($3::timestamptz AT TIME ZONE $4)::date + $12::time)"
                            "                AT TIME ZONE $4 AS closing) c"
                            " ON CONFLICT (school_id, visit) DO NOTHING RETURNING id",
                            &p, &rc);
    p_free(&p);
    if (!res)
        return rc;
    int n = PQntuples(res);
    PQclear(res);
    return n ? 0
             : lg_reject(ctx, ev, "ledger.rejected", "visit", visit,
                         "visit %s is already registered", visit);
}

static int s_gate_exit(sc_ctx_t *ctx, lg_state_t *st, const sc_event_t *ev, const lg_school_t *s)
{
    (void)st;
    const char *visit = sc_json_str(ev->data, "visit");
    int rc;
    s_params_t p = {0};
    p_int(&p, s->id);
    p_time(&p, ev->occurred_at);
    p_str(&p, visit);
    /* The row as it was, and whether this exit applied to it. */
    PGresult *res = s_query(ctx,
                            "WITH v AS (SELECT id, exited_at, entered_at FROM ledger.visits"
                            "            WHERE school_id = $1 AND visit = $3 FOR UPDATE),"
                            " u AS (UPDATE ledger.visits x SET exited_at = $2::timestamptz,"
                            "              overstay_due = NULL"
                            "         FROM v WHERE x.id = v.id AND v.exited_at IS NULL"
                            "          AND v.entered_at <= $2::timestamptz RETURNING x.id)"
                            " SELECT v.exited_at IS NOT NULL, EXISTS (SELECT 1 FROM u) FROM v",
                            &p, &rc);
    p_free(&p);
    if (!res)
        return rc;
    const char *why = !PQntuples(res)                   ? "is unknown"
                      : PQgetvalue(res, 0, 1)[0] == 't' ? NULL
                      : PQgetvalue(res, 0, 0)[0] == 't' ? "has already left"
                                                        : "cannot leave before entering";
    PQclear(res);
    return why ? lg_reject(ctx, ev, "ledger.rejected", "visit", visit, "visit %s %s", visit, why)
               : 0;
}

/* ---- dispatch ---------------------------------------------------------------------------- */

static const struct {
    const char *type;
    s_apply_fn apply;
} s_handlers[] = {
    {"leadership.member.upserted", s_leadership},
    {"rule.published", s_rule},
    {"agreement.signed", s_agreement},
    {"agreement.roster", s_roster},
    {"drill.scheduled", s_drill_scheduled},
    {"drill.started", s_drill_started},
    {"drill.ended", s_drill_ended},
    {"drill.conducted", s_drill_conducted},
    {"drill.cancelled", s_drill_cancelled},
    {"education.session", s_education},
    {"meeting.held", s_meeting},
    {"outing.submitted", s_outing_submitted},
    {"outing.approved", s_outing_approved},
    {"outing.returned", s_outing_returned},
    {"gate.entry", s_gate_entry},
    {"gate.exit", s_gate_exit},
};

int lg_handle(sc_ctx_t *ctx, lg_state_t *st, const sc_event_t *ev)
{
    bool own = ev->source && strcmp(ev->source, LG_NAME) == 0; /* our own emitted events */
    bool gate = !own && strncmp(ev->type, "gate.", 5) == 0;
    bool entry = gate && strcmp(ev->type, "gate.entry") == 0;
    if (gate && s_pupil(ev->data))
        return s_card(ctx, st, ev, entry ? 1 : 2);
    if (entry && ev->school && json_object_get(st->card_schools, ev->school))
        return s_visit_wait(ctx, st, ev);
    int rc = s_visits_write(ctx, st); /* what comes next finds the entries before it */
    if (rc < 0)
        return rc;
    if (strcmp(ev->type, "directory.school.upserted") == 0)
        return s_directory_school(ctx, st, ev);
    if (own)
        return 0;
    for (size_t i = 0; i < sizeof s_handlers / sizeof s_handlers[0]; i++) {
        if (strcmp(s_handlers[i].type, ev->type) != 0)
            continue;
        if (!ev->school)
            return lg_reject(ctx, ev, "ledger.rejected", "school", NULL, "%s needs a school",
                             ev->type);
        lg_school_t s;
        if ((rc = lg_school_get(ctx, st, ev->school, ev->district, ev->occurred_at, &s)) < 0 ||
            (rc = s_handlers[i].apply(ctx, st, ev, &s)) < 0)
            return rc;
        /* The school's row is there: its next visitors of the batch may wait. */
        if (entry && json_object_set_new(st->card_schools, ev->school, json_true()) < 0)
            return -ENOMEM;
        return rc;
    }
    return 0;
}
