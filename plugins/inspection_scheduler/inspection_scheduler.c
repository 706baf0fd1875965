/* inspection_scheduler: scheduled and ad-hoc safety inspections that cannot be skipped silently. */
#include "insp.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const struct sc_migration inspection_scheduler_migrations[];

#define S_TITLE_MAX 200
#define S_TEXT_MAX 500
#define S_NOTE_MAX 1000
#define S_RRULE_MAX 512
#define S_MAX_ITEMS 200
#define S_MAX_RESULTS 500
#define S_MAX_SEASONS 16
#define S_MAX_DATES 400
#define S_DURATION_MAX (366 * 86400)

/* Integer µs since the epoch of a timestamptz column. */
#define S_US(col) "(extract(epoch FROM " col ") * 1000000)::bigint"

static const char *const s_kinds[] = {
    "typhoon",    "rainstorm",  "snow",         "cold_wave", "gale",  "sandstorm", "heat",
    "drought",    "lightning",  "thunderstorm", "hail",      "frost", "fog",       "haze",
    "road_icing", "earthquake", "flood",        "landslide", NULL,
};
static const char *const s_levels[] = {"blue", "yellow", "orange", "red", NULL};
static const char *const s_statuses[] = {"ok", "fail", "na", NULL};
static const char *const s_risks[] = {"general", "major", NULL};
static const char *const s_modes[] = {"replace", "add", NULL};
/* hazard_tracker's categories: a failed item's category becomes its hazard's. */
static const char *const s_categories[] = {"building",  "electrical",   "fire",
                                           "equipment", "surroundings", "food_water",
                                           "traffic",   "other",        NULL};

/* ---- small helpers ------------------------------------------------------ */

static uint64_t s_fnv(const char *s)
{
    uint64_t h = UINT64_C(14695981039346656037);
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= UINT64_C(1099511628211);
    }
    return h;
}

/*
 * Writes prefix + a + sep + b as a code when it fits SC_CODE_MAX characters; otherwise
 * prefix + a hash of the whole, so the code stays stable and short.
 */
static char *s_code(char *buf, size_t len, const char *prefix, const char *a, const char *sep,
                    const char *b)
{
    char full[512];
    snprintf(full, sizeof full, "%s%s%s%s", prefix, a, sep ? sep : "", b ? b : "");
    if (strlen(full) <= SC_CODE_MAX)
        snprintf(buf, len, "%s", full);
    else
        snprintf(buf, len, "%s%016llx", prefix, (unsigned long long)s_fnv(full));
    return buf;
}

/* Cuts s at most max bytes, never inside a UTF-8 sequence. */
static void s_cut_utf8(char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    s[max] = '\0';
}

/* A duration member: integer seconds or "2h"-style text; def when absent. -1 when invalid. */
static int64_t s_duration(const json_t *obj, const char *key, int64_t def)
{
    const json_t *v = json_object_get(obj, key);
    int64_t secs;
    if (!v || json_is_null(v))
        return def;
    if (json_is_integer(v))
        return json_integer_value(v) >= 0 ? json_integer_value(v) : -1;
    if (json_is_string(v) && sc_duration_parse(json_string_value(v), &secs) == 0)
        return secs;
    return -1;
}

static int s_check_duration(const json_t *obj, const char *prefix, const char *key, int64_t min,
                            char *detail, size_t dlen)
{
    int64_t v = s_duration(obj, key, min);
    if (v < 0)
        return sc_fail(detail, dlen,
                       "%s%s: expected a duration (seconds, or \"90s\", \"15m\", \"2h\", \"7d\")",
                       prefix, key);
    if (v < min || v > S_DURATION_MAX)
        return sc_fail(detail, dlen, "%s%s: must be between %lld seconds and 366 days", prefix, key,
                       (long long)min);
    return 0;
}

/* Parses a local date-time "YYYY-MM-DDTHH:MM[:SS]" (no offset). Returns 0 or -EINVAL. */
static int s_parse_local(const char *s, int *y, int *mo, int *d, int *h, int *mi, int *sec)
{
    int64_t day;
    char date[11];
    int used = 0;
    if (!s || strlen(s) < 16)
        return -EINVAL;
    memcpy(date, s, 10);
    date[10] = '\0';
    if (sc_date_parse(date, &day) < 0 || s[10] != 'T')
        return -EINVAL;
    *sec = 0;
    if (strlen(s) == 16) {
        if (sscanf(s + 11, "%2d:%2d%n", h, mi, &used) != 2 || used != 5)
            return -EINVAL;
    } else if (strlen(s) != 19 || sscanf(s + 11, "%2d:%2d:%2d%n", h, mi, sec, &used) != 3 ||
               used != 8) {
        return -EINVAL;
    }
    if (s[13] != ':' || *h < 0 || *h > 23 || *mi < 0 || *mi > 59 || *sec < 0 || *sec > 59)
        return -EINVAL;
    rr_civil(day, y, mo, d);
    return 0;
}

static int s_check_range(const json_t *obj, const char *prefix, char *detail, size_t dlen)
{
    const char *from = sc_json_str(obj, "from"), *to = sc_json_str(obj, "to");
    int f, t;
    struct rr_span span;
    bool span_ok;
    if (!from || !to)
        return sc_fail(detail, dlen, "%s%s: required", prefix, from ? "to" : "from");
    if (insp_parse_range(from, to, &f, &t, &span, &span_ok) < 0)
        return sc_fail(detail, dlen,
                       "%sfrom: from and to must both be MM-DD (every year) or both YYYY-MM-DD "
                       "(to not before from, at most 366 days apart)",
                       prefix);
    return 0;
}

/* ---- validators (pure, thread-safe) ------------------------------------- */

static int s_validate_template(const sc_event_t *ev, char *detail, size_t dlen)
{
    static const char *const known[] = {"template", "title",         "items", "area",
                                        "triggers", "assignee_role", NULL};
    static const char *const item_known[] = {"item", "text", "category", NULL};
    const json_t *d = ev->data, *items = json_object_get(d, "items");
    int rc;
    if ((rc = sc_check_known(d, "data.", known, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, "data.", "template", true, detail, dlen)) < 0 ||
        (rc = sc_check_string(d, "data.", "title", true, S_TITLE_MAX, detail, dlen)) < 0 ||
        (rc = sc_check_array(d, "data.", "items", true, S_MAX_ITEMS, detail, dlen)) < 0 ||
        (rc = sc_check_string(d, "data.", "area", false, S_TITLE_MAX, detail, dlen)) < 0 ||
        (rc = sc_check_enum_array(d, "data.", "triggers", false, s_kinds, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, "data.", "assignee_role", false, detail, dlen)) < 0)
        return rc;
    if (json_array_size(items) == 0)
        return sc_fail(detail, dlen, "data.items: must hold at least one item");
    size_t i;
    const json_t *it;
    json_array_foreach(items, i, it)
    {
        char prefix[48];
        snprintf(prefix, sizeof prefix, "data.items[%zu].", i);
        if (!json_is_object(it))
            return sc_fail(detail, dlen, "data.items[%zu]: expected an object", i);
        if ((rc = sc_check_known(it, prefix, item_known, detail, dlen)) < 0 ||
            (rc = sc_check_code(it, prefix, "item", true, detail, dlen)) < 0 ||
            (rc = sc_check_string(it, prefix, "text", true, S_TEXT_MAX, detail, dlen)) < 0 ||
            (rc = sc_check_enum(it, prefix, "category", false, s_categories, detail, dlen)) < 0)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(sc_json_str(json_array_get(items, j), "item"), sc_json_str(it, "item")) == 0)
                return sc_fail(detail, dlen, "data.items[%zu].item: \"%s\" appears twice", i,
                               sc_json_str(it, "item"));
    }
    return 0;
}

static int s_check_rrule(const json_t *obj, const char *prefix, char *detail, size_t dlen)
{
    char why[160];
    int rc = sc_check_string(obj, prefix, "rrule", true, S_RRULE_MAX, detail, dlen);
    if (rc < 0)
        return rc;
    if (rr_check(sc_json_str(obj, "rrule"), why, sizeof why) < 0)
        return sc_fail(detail, dlen, "%srrule: %s", prefix, why);
    return 0;
}

static int s_validate_schedule(const sc_event_t *ev, char *detail, size_t dlen)
{
    static const char *const known[] = {
        "schedule", "template", "rrule",   "assignee_role", "assignee", "due_within", "grace",
        "seasons",  "start",    "exdates", "skip_closed",   "active",   NULL,
    };
    static const char *const season_known[] = {"season", "from", "to", "rrule", "mode", NULL};
    const json_t *d = ev->data;
    int rc;
    if ((rc = sc_check_known(d, "data.", known, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, "data.", "schedule", true, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, "data.", "template", true, detail, dlen)) < 0 ||
        (rc = s_check_rrule(d, "data.", detail, dlen)) < 0 ||
        (rc = sc_check_code(d, "data.", "assignee_role", false, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, "data.", "assignee", false, detail, dlen)) < 0 ||
        (rc = s_check_duration(d, "data.", "due_within", 60, detail, dlen)) < 0 ||
        (rc = s_check_duration(d, "data.", "grace", 0, detail, dlen)) < 0 ||
        (rc = sc_check_array(d, "data.", "seasons", false, S_MAX_SEASONS, detail, dlen)) < 0 ||
        (rc = sc_check_array(d, "data.", "exdates", false, S_MAX_DATES, detail, dlen)) < 0 ||
        (rc = sc_check_bool(d, "data.", "skip_closed", false, detail, dlen)) < 0 ||
        (rc = sc_check_bool(d, "data.", "active", false, detail, dlen)) < 0 ||
        (rc = sc_check_string(d, "data.", "start", false, 19, detail, dlen)) < 0)
        return rc;
    if (!json_object_get(d, "assignee_role") && !json_object_get(d, "assignee"))
        return sc_fail(detail, dlen, "data.assignee_role: required (or data.assignee)");
    int y, mo, day, h, mi, s;
    const char *start = sc_json_str(d, "start");
    if (start && s_parse_local(start, &y, &mo, &day, &h, &mi, &s) < 0)
        return sc_fail(detail, dlen,
                       "data.start: expected a local date-time YYYY-MM-DDTHH:MM[:SS] without "
                       "offset (the school's time zone applies)");
    size_t i;
    const json_t *e;
    json_array_foreach(json_object_get(d, "exdates"), i, e)
    {
        int64_t dd;
        if (!json_is_string(e) || sc_date_parse(json_string_value(e), &dd) < 0)
            return sc_fail(detail, dlen, "data.exdates[%zu]: expected a date YYYY-MM-DD", i);
    }
    json_array_foreach(json_object_get(d, "seasons"), i, e)
    {
        char prefix[48];
        snprintf(prefix, sizeof prefix, "data.seasons[%zu].", i);
        if (!json_is_object(e))
            return sc_fail(detail, dlen, "data.seasons[%zu]: expected an object", i);
        if ((rc = sc_check_known(e, prefix, season_known, detail, dlen)) < 0 ||
            (rc = sc_check_code(e, prefix, "season", false, detail, dlen)) < 0 ||
            (rc = s_check_rrule(e, prefix, detail, dlen)) < 0 ||
            (rc = sc_check_enum(e, prefix, "mode", false, s_modes, detail, dlen)) < 0)
            return rc;
        bool named = json_object_get(e, "season") != NULL;
        bool dated = json_object_get(e, "from") || json_object_get(e, "to");
        if (named && dated)
            return sc_fail(detail, dlen, "%sseason: give a season or from/to, not both", prefix);
        if (!named && (rc = s_check_range(e, prefix, detail, dlen)) < 0)
            return rc;
    }
    return 0;
}

static int s_validate_completed(const sc_event_t *ev, char *detail, size_t dlen)
{
    static const char *const known[] = {"task", "template", "inspector", "results", NULL};
    static const char *const result_known[] = {"item", "status", "note", "photo", "risk", NULL};
    const json_t *d = ev->data, *results = json_object_get(d, "results");
    int rc;
    if ((rc = sc_check_known(d, "data.", known, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, "data.", "task", false, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, "data.", "template", false, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, "data.", "inspector", true, detail, dlen)) < 0 ||
        (rc = sc_check_array(d, "data.", "results", true, S_MAX_RESULTS, detail, dlen)) < 0)
        return rc;
    if (!json_object_get(d, "task") && !json_object_get(d, "template"))
        return sc_fail(detail, dlen, "data.task: required (or data.template)");
    if (json_array_size(results) == 0)
        return sc_fail(detail, dlen, "data.results: must hold at least one result");
    size_t i;
    const json_t *r;
    json_array_foreach(results, i, r)
    {
        char prefix[48];
        snprintf(prefix, sizeof prefix, "data.results[%zu].", i);
        if (!json_is_object(r))
            return sc_fail(detail, dlen, "data.results[%zu]: expected an object", i);
        if ((rc = sc_check_known(r, prefix, result_known, detail, dlen)) < 0 ||
            (rc = sc_check_code(r, prefix, "item", true, detail, dlen)) < 0 ||
            (rc = sc_check_enum(r, prefix, "status", true, s_statuses, detail, dlen)) < 0 ||
            (rc = sc_check_string(r, prefix, "note", false, S_NOTE_MAX, detail, dlen)) < 0 ||
            (rc = sc_check_string(r, prefix, "photo", false, S_TEXT_MAX, detail, dlen)) < 0 ||
            (rc = sc_check_enum(r, prefix, "risk", false, s_risks, detail, dlen)) < 0)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(sc_json_str(json_array_get(results, j), "item"), sc_json_str(r, "item")) ==
                0)
                return sc_fail(detail, dlen, "data.results[%zu].item: \"%s\" appears twice", i,
                               sc_json_str(r, "item"));
    }
    return 0;
}

/* Weather feeds carry more than we read: only the fields used are checked. */
static int s_validate_alert(const sc_event_t *ev, char *detail, size_t dlen)
{
    int rc;
    if ((rc = sc_check_enum(ev->data, "data.", "kind", true, s_kinds, detail, dlen)) < 0 ||
        (rc = sc_check_enum(ev->data, "data.", "level", true, s_levels, detail, dlen)) < 0)
        return rc;
    return 0;
}

static int s_validate_season(const sc_event_t *ev, char *detail, size_t dlen)
{
    static const char *const known[] = {"season", "from", "to", NULL};
    int rc;
    if ((rc = sc_check_known(ev->data, "data.", known, detail, dlen)) < 0 ||
        (rc = sc_check_code(ev->data, "data.", "season", true, detail, dlen)) < 0)
        return rc;
    return s_check_range(ev->data, "data.", detail, dlen);
}

static int s_validate_calendar(const sc_event_t *ev, char *detail, size_t dlen)
{
    static const char *const known[] = {"calendar", "closed", NULL};
    static const char *const range_known[] = {"from", "to", "reason", NULL};
    const json_t *d = ev->data;
    int rc;
    if ((rc = sc_check_known(d, "data.", known, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, "data.", "calendar", true, detail, dlen)) < 0 ||
        (rc = sc_check_array(d, "data.", "closed", true, S_MAX_DATES, detail, dlen)) < 0)
        return rc;
    size_t i;
    const json_t *r;
    json_array_foreach(json_object_get(d, "closed"), i, r)
    {
        char prefix[48];
        int64_t from, to;
        snprintf(prefix, sizeof prefix, "data.closed[%zu].", i);
        if (!json_is_object(r))
            return sc_fail(detail, dlen, "data.closed[%zu]: expected an object", i);
        if ((rc = sc_check_known(r, prefix, range_known, detail, dlen)) < 0 ||
            (rc = sc_check_date(r, prefix, "from", true, detail, dlen)) < 0 ||
            (rc = sc_check_date(r, prefix, "to", false, detail, dlen)) < 0 ||
            (rc = sc_check_string(r, prefix, "reason", false, S_TITLE_MAX, detail, dlen)) < 0)
            return rc;
        sc_date_parse(sc_json_str(r, "from"), &from);
        if (sc_json_str(r, "to") && sc_date_parse(sc_json_str(r, "to"), &to) == 0 && to < from)
            return sc_fail(detail, dlen, "%sto: must not be before from", prefix);
    }
    return 0;
}

/* ---- emitting ------------------------------------------------------------ */

/*
 * Emits inspection.rejected {event, type, reason, …extra} for an event that cannot be
 * applied. `extra` (may be NULL) is stolen. Returns sc_emit's result.
 */
__attribute__((format(printf, 4, 5))) static int s_reject(sc_ctx_t *ctx, const sc_event_t *ev,
                                                          json_t *extra, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    json_t *data = extra ? extra : json_object();
    json_object_set_new(data, "event", json_integer(ev->id));
    json_object_set_new(data, "type", json_string(ev->type));
    json_object_set_new(data, "reason", json_string(reason));
    SC_LOG_INFO(ctx, "event %lld (%s) rejected: %s", (long long)ev->id, ev->type, reason);
    int rc = sc_emit(ctx, &(sc_emit_t){.type = "inspection.rejected",
                                       .school = ev->school,
                                       .district = ev->district,
                                       .actor = ev->actor,
                                       .data = data});
    json_decref(data);
    return rc;
}

/* What a task is opened with. */
struct s_open {
    const char *school, *task, *kind, *schedule, *template;
    const char *assignee_role, *assignee;
    sc_time_t opens_at, due_at, deadline;
    int64_t local_day;
    const char *alert_kind, *alert_level;
    int64_t source_event;
};

/* Person codes a task is for: its person, or the people holding its role at the school. */
static json_t *s_assignees(sc_ctx_t *ctx, const char *school, const char *role, const char *person)
{
    json_t *out = json_array();
    if (person) {
        json_array_append_new(out, json_string(person));
        return out;
    }
    json_t *people = role ? ctx->host->people_with_role(ctx, school, NULL, role) : json_array();
    if (!people) {
        json_decref(out);
        return NULL;
    }
    size_t i;
    const json_t *p;
    json_array_foreach(people, i, p) if (sc_json_str(p, "person"))
        json_array_append_new(out, json_string(sc_json_str(p, "person")));
    json_decref(people);
    return out;
}

/*
 * Creates a task from its template (title, area and items copied) unless it exists, and
 * emits inspection.due for it with occurred_at = opens_at. *opened tells whether it was new.
 * Returns 0 or -errno.
 */
static int s_task_open(sc_ctx_t *ctx, const struct s_open *o, bool *opened)
{
    char opens[SC_TIME_LEN], due[SC_TIME_LEN], deadline[SC_TIME_LEN], day[12], src[24];
    char id[SC_CODE_MAX + 1];
    json_t *data = NULL, *assignees = NULL;
    int rc;

    *opened = false;
    snprintf(src, sizeof src, "%lld", (long long)o->source_event);
    const char *p[14] = {o->school,
                         o->task,
                         o->kind,
                         o->schedule,
                         o->template,
                         o->assignee_role,
                         o->assignee,
                         sc_time_format(o->opens_at, opens),
                         sc_date_format(o->local_day, day),
                         sc_time_format(o->due_at, due),
                         sc_time_format(o->deadline, deadline),
                         o->alert_kind,
                         o->alert_level,
                         o->source_event ? src : NULL};
    PGresult *res = sc_pq_exec(
        sc_db(ctx),
        "INSERT INTO inspection.tasks (school, task, kind, schedule, template, title, area,"
        "   items, assignee_role, assignee, opens_at, local_date, due_at, deadline, status,"
        "   alert_kind, alert_level, source_event)"
        " SELECT $1, $2, $3, $4, t.template, t.title, t.area, t.items, $6, $7, $8, $9, $10,"
        "        $11, 'open', $12, $13, $14"
        "   FROM inspection.templates t WHERE t.school = $1 AND t.template = $5"
        " ON CONFLICT DO NOTHING"
        " RETURNING title, area",
        14, p, &rc);
    if (!res)
        return rc;
    if (PQntuples(res) == 0) {
        /* Already open (a repeated tick) — or its template is gone, which must not be silent. */
        PQclear(res);
        const char *q[2] = {o->school, o->template};
        res = sc_pq_exec(sc_db(ctx),
                         "SELECT 1 FROM inspection.templates WHERE school = $1 AND template = $2",
                         2, q, &rc);
        if (res && PQntuples(res) == 0)
            SC_LOG_ERR(ctx, "task %s/%s not opened: template %s is unknown", o->school, o->task,
                       o->template);
        goto out;
    }
    *opened = true;
    rc = -EAGAIN;
    if (!(assignees = s_assignees(ctx, o->school, o->assignee_role, o->assignee)))
        goto out;
    rc = -ENOMEM;
    data = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "task", o->task, "template",
                     o->template, "title", PQgetvalue(res, 0, 0), "kind", o->kind, "opens_at",
                     opens, "due_at", due, "deadline", deadline, "assignees", assignees);
    assignees = NULL;
    if (!data)
        goto out;
    if (o->schedule)
        json_object_set_new(data, "schedule", json_string(o->schedule));
    if (!PQgetisnull(res, 0, 1))
        json_object_set_new(data, "area", json_string(PQgetvalue(res, 0, 1)));
    if (o->assignee_role)
        json_object_set_new(data, "assignee_role", json_string(o->assignee_role));
    if (o->assignee)
        json_object_set_new(data, "assignee", json_string(o->assignee));
    if (o->alert_kind)
        json_object_set_new(
            data, "alert",
            json_pack("{s:s, s:s?}", "kind", o->alert_kind, "level", o->alert_level));
    rc = sc_emit(ctx, &(sc_emit_t){.type = "inspection.due",
                                   .school = o->school,
                                   .id = s_code(id, sizeof id, "due:", o->school, ":", o->task),
                                   .occurred_at = o->opens_at,
                                   .data = data});
out:
    json_decref(assignees);
    json_decref(data);
    PQclear(res);
    return rc;
}

/* ---- handlers ------------------------------------------------------------ */

static int s_template_upserted(sc_ctx_t *ctx, struct insp *st, const sc_event_t *ev)
{
    const json_t *d = ev->data;
    char evid[24], when[SC_TIME_LEN];
    char *items = NULL, *triggers = NULL;
    int rc = -ENOMEM;

    if (!ev->school)
        return s_reject(ctx, ev, NULL, "a template belongs to a school: school is required");
    (void)st;
    snprintf(evid, sizeof evid, "%lld", (long long)ev->id);
    const json_t *trig = json_object_get(d, "triggers");
    items = json_dumps(json_object_get(d, "items"), JSON_COMPACT);
    triggers = trig ? json_dumps(trig, JSON_COMPACT) : strdup("[]");
    if (!items || !triggers)
        goto out;
    const char *p[9] = {ev->school,
                        sc_json_str(d, "template"),
                        sc_json_str(d, "title"),
                        sc_json_str(d, "area"),
                        items,
                        triggers,
                        sc_json_str(d, "assignee_role"),
                        evid,
                        sc_time_format(ev->occurred_at, when)};
    PGresult *res = sc_pq_exec(
        sc_db(ctx),
        "INSERT INTO inspection.templates (school, template, title, area, items, triggers,"
        "   assignee_role, event, updated_at)"
        " VALUES ($1, $2, $3, $4, $5::jsonb,"
        "   ARRAY(SELECT jsonb_array_elements_text($6::jsonb)), $7, $8, $9)"
        " ON CONFLICT (school, template) DO UPDATE SET title = EXCLUDED.title,"
        "   area = EXCLUDED.area, items = EXCLUDED.items, triggers = EXCLUDED.triggers,"
        "   assignee_role = EXCLUDED.assignee_role, event = EXCLUDED.event,"
        "   updated_at = EXCLUDED.updated_at",
        9, p, &rc);
    PQclear(res);
out:
    free(items);
    free(triggers);
    return rc;
}

static int s_schedule_upserted(sc_ctx_t *ctx, struct insp *st, const sc_event_t *ev)
{
    const json_t *d = ev->data;
    const char *schedule = sc_json_str(d, "schedule"), *template = sc_json_str(d, "template");
    PGresult *res = NULL;
    struct insp_school info;
    char dtstart[24], evid[24], due[24], grace[24], watermark[SC_TIME_LEN], when[SC_TIME_LEN];
    char *seasons = NULL, *exdates = NULL;
    int rc;

    if (!ev->school)
        return s_reject(ctx, ev, NULL, "a schedule belongs to a school: school is required");
    const char *key[3] = {ev->school, template, schedule};
    res = sc_pq_exec(sc_db(ctx),
                     "SELECT (SELECT count(*) FROM inspection.templates"
                     "          WHERE school = $1 AND template = $2),"
                     "       s.dtstart, s.active, " S_US(
                         "s.expanded_until") "  FROM (SELECT 1) one"
                                             "  LEFT JOIN inspection.schedules s ON s.school = $1 "
                                             "AND s.schedule = $3",
                     3, key, &rc);
    if (!res)
        return rc;
    if (strcmp(PQgetvalue(res, 0, 0), "0") == 0) {
        rc = s_reject(ctx, ev, json_pack("{s:s, s:s}", "schedule", schedule, "template", template),
                      "unknown template \"%s\" at school %s", template, ev->school);
        goto out;
    }
    bool exists = !PQgetisnull(res, 0, 1);
    bool was_active = exists && PQgetvalue(res, 0, 2)[0] == 't';
    sc_time_t old_mark = exists ? strtoll(PQgetvalue(res, 0, 3), NULL, 10) : 0;

    insp_school(ctx, ev->school, &info);

    /* Named seasons must be known for the school's district now. */
    size_t i;
    const json_t *s;
    json_array_foreach(json_object_get(d, "seasons"), i, s)
    {
        const char *name = sc_json_str(s, "season");
        int mf, mt;
        struct rr_span *spans = NULL;
        size_t n = 0;
        if (!name)
            continue;
        rc = insp_season_resolve(ctx, st, info.district, name, &mf, &mt, &spans, &n);
        free(spans);
        if (rc == -ENOENT) {
            rc = s_reject(ctx, ev, json_pack("{s:s}", "schedule", schedule),
                          "seasons[%zu].season: unknown season \"%s\" (not in config nor set "
                          "for district %s)",
                          i, name, info.district[0] ? info.district : "-");
            goto out;
        }
        if (rc < 0)
            goto out;
    }

    /* DTSTART: as given; else as stored (keeps INTERVAL's phase); else today at default_time. */
    int y, mo, dd, h, mi, sec;
    if (sc_json_str(d, "start")) {
        s_parse_local(sc_json_str(d, "start"), &y, &mo, &dd, &h, &mi, &sec);
        snprintf(dtstart, sizeof dtstart, "%04d-%02d-%02dT%02d:%02d:%02d", y, mo, dd, h, mi, sec);
    } else if (exists) {
        snprintf(dtstart, sizeof dtstart, "%s", PQgetvalue(res, 0, 1));
    } else {
        rr_civil(insp_local_day(info.tz, ev->occurred_at), &y, &mo, &dd);
        snprintf(dtstart, sizeof dtstart, "%04d-%02d-%02dT%02d:%02d:00", y, mo, dd,
                 st->default_hour, st->default_minute);
    }

    /*
     * Occurrences are created from the moment the schedule was set (not before), and a
     * schedule switched back on does not make up for the time it was off.
     */
    sc_time_t now = sc_now(ctx), set_at = ev->occurred_at < now ? ev->occurred_at : now;
    sc_time_t mark = old_mark;
    if (!exists || (!was_active && set_at > old_mark))
        mark = set_at;

    bool active = sc_json_bool(d, "active", true);
    const json_t *sea = json_object_get(d, "seasons"), *exd = json_object_get(d, "exdates");
    seasons = sea ? json_dumps(sea, JSON_COMPACT) : strdup("[]");
    exdates = exd ? json_dumps(exd, JSON_COMPACT) : strdup("[]");
    rc = -ENOMEM;
    if (!seasons || !exdates)
        goto out;
    snprintf(evid, sizeof evid, "%lld", (long long)ev->id);
    snprintf(due, sizeof due, "%lld", (long long)s_duration(d, "due_within", st->due_within));
    snprintf(grace, sizeof grace, "%lld", (long long)s_duration(d, "grace", st->grace));
    const char *p[16] = {ev->school,
                         schedule,
                         template,
                         sc_json_str(d, "rrule"),
                         dtstart,
                         sc_json_str(d, "assignee_role"),
                         sc_json_str(d, "assignee"),
                         due,
                         grace,
                         seasons,
                         exdates,
                         sc_json_bool(d, "skip_closed", true) ? "t" : "f",
                         active ? "t" : "f",
                         sc_time_format(mark, watermark),
                         evid,
                         sc_time_format(ev->occurred_at, when)};
    PQclear(res);
    res = sc_pq_exec(
        sc_db(ctx),
        "INSERT INTO inspection.schedules (school, schedule, template, rrule, dtstart,"
        "   assignee_role, assignee, due_within, grace, seasons, exdates, skip_closed, active,"
        "   expanded_until, next_at, event, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11::jsonb, $12, $13, $14,"
        "   NULL, $15, $16)"
        " ON CONFLICT (school, schedule) DO UPDATE SET template = EXCLUDED.template,"
        "   rrule = EXCLUDED.rrule, dtstart = EXCLUDED.dtstart,"
        "   assignee_role = EXCLUDED.assignee_role, assignee = EXCLUDED.assignee,"
        "   due_within = EXCLUDED.due_within, grace = EXCLUDED.grace,"
        "   seasons = EXCLUDED.seasons, exdates = EXCLUDED.exdates,"
        "   skip_closed = EXCLUDED.skip_closed, active = EXCLUDED.active,"
        "   expanded_until = EXCLUDED.expanded_until, next_at = NULL,"
        "   event = EXCLUDED.event, updated_at = EXCLUDED.updated_at",
        16, p, &rc);
out:
    PQclear(res);
    free(seasons);
    free(exdates);
    return rc;
}

/* Season dates and closed days change expansions: every schedule recomputes its next. */
static int s_recompute_all(sc_ctx_t *ctx)
{
    int rc;
    PGresult *res = sc_pq_exec(
        sc_db(ctx), "UPDATE inspection.schedules SET next_at = NULL WHERE active", 0, NULL, &rc);
    PQclear(res);
    return rc;
}

static int s_season_upserted(sc_ctx_t *ctx, struct insp *st, const sc_event_t *ev)
{
    const json_t *d = ev->data;
    int mf, mt, rc;
    struct rr_span span;
    bool span_ok;
    char year[8], evid[24];
    (void)st;

    if (!ev->district)
        return s_reject(ctx, ev, json_pack("{s:s}", "season", sc_json_str(d, "season")),
                        "season dates are set per district: the school has no district");
    insp_parse_range(sc_json_str(d, "from"), sc_json_str(d, "to"), &mf, &mt, &span, &span_ok);
    int y = 0, m, dd;
    if (span_ok)
        rr_civil(span.from, &y, &m, &dd);
    snprintf(year, sizeof year, "%d", y);
    snprintf(evid, sizeof evid, "%lld", (long long)ev->id);
    const char *p[6] = {ev->district,           sc_json_str(d, "season"), year,
                        sc_json_str(d, "from"), sc_json_str(d, "to"),     evid};
    PGresult *res =
        sc_pq_exec(sc_db(ctx),
                   "INSERT INTO inspection.seasons (district, season, year, date_from, date_to,"
                   "   event) VALUES ($1, $2, $3, $4, $5, $6)"
                   " ON CONFLICT (district, season, year) DO UPDATE SET"
                   "   date_from = EXCLUDED.date_from, date_to = EXCLUDED.date_to,"
                   "   event = EXCLUDED.event",
                   6, p, &rc);
    if (!res)
        return rc;
    PQclear(res);
    return s_recompute_all(ctx);
}

static int s_calendar_upserted(sc_ctx_t *ctx, struct insp *st, const sc_event_t *ev)
{
    const json_t *d = ev->data;
    const char *scope = ev->school ? ev->school : ev->district;
    const char *is_district = ev->school ? "f" : "t";
    char evid[24];
    int rc;
    (void)st;

    if (!scope)
        return s_reject(ctx, ev, NULL, "a calendar needs a school or a district");
    snprintf(evid, sizeof evid, "%lld", (long long)ev->id);
    const char *p[3] = {scope, is_district, sc_json_str(d, "calendar")};
    PGresult *res = sc_pq_exec(sc_db(ctx),
                               "DELETE FROM inspection.closed_days"
                               " WHERE scope = $1 AND is_district = $2 AND calendar = $3",
                               3, p, &rc);
    if (!res)
        return rc;
    PQclear(res);
    size_t i;
    const json_t *r;
    json_array_foreach(json_object_get(d, "closed"), i, r)
    {
        const char *from = sc_json_str(r, "from");
        const char *to = sc_json_str(r, "to") ? sc_json_str(r, "to") : from;
        const char *q[7] = {scope, is_district, sc_json_str(d, "calendar"),
                            from,  to,          sc_json_str(r, "reason"),
                            evid};
        res = sc_pq_exec(sc_db(ctx),
                         "INSERT INTO inspection.closed_days (scope, is_district, calendar,"
                         "   date_from, date_to, reason, event)"
                         " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                         7, q, &rc);
        if (!res)
            return rc;
        PQclear(res);
    }
    return s_recompute_all(ctx);
}

static bool s_level_on(const struct insp *st, const char *level)
{
    size_t i;
    const json_t *l;
    json_array_foreach(st->alert_levels, i,
                       l) if (strcmp(json_string_value(l), level) == 0) return true;
    return false;
}

/*
 * Opens an ad-hoc task at one school for each template the alert's kind triggers, unless
 * an alert task of that template is still open there.
 */
static int s_alert_school(sc_ctx_t *ctx, struct insp *st, const sc_event_t *ev, const char *school)
{
    const char *kind = sc_json_str(ev->data, "kind"), *level = sc_json_str(ev->data, "level");
    struct insp_school info;
    int rc;
    const char *p[2] = {school, kind};
    PGresult *res = sc_pq_exec(sc_db(ctx),
                               "SELECT t.template, t.assignee_role FROM inspection.templates t"
                               " WHERE t.school = $1 AND $2 = ANY (t.triggers)"
                               "   AND NOT EXISTS (SELECT 1 FROM inspection.tasks k"
                               "     WHERE k.school = t.school AND k.template = t.template"
                               "       AND k.kind = 'alert' AND k.status = 'open')"
                               " ORDER BY t.template",
                               2, p, &rc);
    if (!res)
        return rc;
    insp_school(ctx, school, &info);
    char evid[24];
    snprintf(evid, sizeof evid, "%lld", (long long)ev->id);
    for (int i = 0; i < PQntuples(res); i++) {
        char task[SC_CODE_MAX + 1];
        const char *template = PQgetvalue(res, i, 0);
        bool opened;
        sc_time_t due = ev->occurred_at + st->adhoc_due_within * SC_USEC_PER_SEC;
        struct s_open o = {
            .school = school,
            .task = s_code(task, sizeof task, "wx-", evid, "-", template),
            .kind = "alert",
            .template = template,
            .assignee_role = PQgetisnull(res, i, 1) ? st->adhoc_role : PQgetvalue(res, i, 1),
            .opens_at = ev->occurred_at,
            .due_at = due,
            .deadline = due + st->adhoc_grace * SC_USEC_PER_SEC,
            .local_day = insp_local_day(info.tz, ev->occurred_at),
            .alert_kind = kind,
            .alert_level = level,
            .source_event = ev->id,
        };
        if ((rc = s_task_open(ctx, &o, &opened)) < 0)
            break;
    }
    PQclear(res);
    return rc;
}

static int s_weather_alert(sc_ctx_t *ctx, struct insp *st, const sc_event_t *ev)
{
    const char *level = sc_json_str(ev->data, "level");
    int rc = 0;
    if (!s_level_on(st, level)) {
        SC_LOG_DEBUG(ctx, "alert %lld: level %s calls up no inspection", (long long)ev->id, level);
        return 0;
    }
    if (ev->school)
        return s_alert_school(ctx, st, ev, ev->school);
    if (!ev->district)
        return 0;
    json_t *schools = ctx->host->district_schools(ctx, ev->district);
    if (!schools)
        return -EAGAIN;
    size_t i;
    const json_t *s;
    json_array_foreach(schools, i, s)
    {
        const char *code = sc_json_str(s, "school");
        if (code && (rc = s_alert_school(ctx, st, ev, code)) < 0)
            break;
    }
    json_decref(schools);
    return rc;
}

/* The task a completion names, or the earliest open task of its template; NULL if none. */
static PGresult *s_find_task(sc_ctx_t *ctx, const sc_event_t *ev, int *rc)
{
    const char *task = sc_json_str(ev->data, "task");
    const char *p[2] = {ev->school, task ? task : sc_json_str(ev->data, "template")};
#define S_TASK_COLS                                                                                \
    "task, status, template, title, area, items, " S_US("due_at") ", " INSP_TS(                    \
        "completed_at") ", " INSP_TS("missed_at")
    if (task)
        return sc_pq_exec(sc_db(ctx),
                          "SELECT " S_TASK_COLS " FROM inspection.tasks"
                          " WHERE school = $1 AND task = $2 FOR UPDATE",
                          2, p, rc);
    return sc_pq_exec(sc_db(ctx),
                      "SELECT " S_TASK_COLS " FROM inspection.tasks"
                      " WHERE school = $1 AND template = $2 AND status = 'open'"
                      " ORDER BY opens_at, id LIMIT 1 FOR UPDATE",
                      2, p, rc);
}

/* Creates the record of an ad-hoc inspection of a template nothing had asked for. */
static int s_adhoc_task(sc_ctx_t *ctx, const sc_event_t *ev, char *task, size_t len, bool *created)
{
    char evid[24], when[SC_TIME_LEN], day[12];
    struct insp_school info;
    int rc;
    snprintf(evid, sizeof evid, "%lld", (long long)ev->id);
    s_code(task, len, "adhoc-", evid, NULL, NULL);
    insp_school(ctx, ev->school, &info);
    const char *p[6] = {ev->school,
                        task,
                        sc_json_str(ev->data, "template"),
                        sc_time_format(ev->occurred_at, when),
                        sc_date_format(insp_local_day(info.tz, ev->occurred_at), day),
                        evid};
    PGresult *res =
        sc_pq_exec(sc_db(ctx),
                   "INSERT INTO inspection.tasks (school, task, kind, template, title, area, items,"
                   "   opens_at, local_date, due_at, deadline, status, source_event)"
                   " SELECT $1, $2, 'adhoc', t.template, t.title, t.area, t.items, $4, $5, $4, $4,"
                   "        'open', $6"
                   "   FROM inspection.templates t WHERE t.school = $1 AND t.template = $3",
                   6, p, &rc);
    if (!res)
        return rc;
    *created = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    return 0;
}

/*
 * Emits hazard.reported for one failed item in the form hazard_tracker validates: the item's
 * text as title, the note as description, the template's area as location, origin
 * {kind: inspection, task, item, template}. Its code and id are stable for (school, task, item).
 */
static int s_hazard(sc_ctx_t *ctx, struct insp *st, const sc_event_t *ev, const char *task,
                    const char *template, const char *area, const json_t *item,
                    const json_t *result, const char *hazard)
{
    char title[S_TEXT_MAX + 1], id[SC_CODE_MAX + 1], when[SC_TIME_LEN];
    const char *note = sc_json_str(result, "note"), *risk = sc_json_str(result, "risk");
    snprintf(title, sizeof title, "%s", sc_json_str(item, "text"));
    s_cut_utf8(title, S_TITLE_MAX);
    json_t *data = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s, s:s, s:s}}", "hazard", hazard, "title", title,
        "risk", risk ? risk : st->hazard_risk, "reporter", sc_json_str(ev->data, "inspector"),
        "found_at", sc_time_format(ev->occurred_at, when), "origin", "kind", "inspection", "task",
        task, "item", sc_json_str(result, "item"), "template", template, "system", INSP_NAME);
    if (!data)
        return -ENOMEM;
    if (area)
        json_object_set_new(data, "location", json_string(area));
    if (sc_json_str(item, "category"))
        json_object_set_new(data, "category", json_string(sc_json_str(item, "category")));
    if (note && *note)
        json_object_set_new(data, "description", json_string(note));
    int rc = sc_emit(ctx, &(sc_emit_t){.type = "hazard.reported",
                                       .school = ev->school,
                                       .id = s_code(id, sizeof id, "hz:", ev->school, ":", hazard),
                                       .actor = sc_json_str(ev->data, "inspector"),
                                       .occurred_at = ev->occurred_at,
                                       .data = data});
    json_decref(data);
    return rc;
}

static int s_completed(sc_ctx_t *ctx, struct insp *st, const sc_event_t *ev)
{
    const json_t *d = ev->data, *results = json_object_get(d, "results");
    const char *named = sc_json_str(d, "task"), *tpl = sc_json_str(d, "template");
    char task[SC_CODE_MAX + 1], evid[24], when[SC_TIME_LEN];
    json_t *items = NULL, *missing = NULL;
    PGresult *res = NULL;
    int rc;

    if (!ev->school)
        return s_reject(ctx, ev, NULL, "a completion belongs to a school: school is required");
    if (!(res = s_find_task(ctx, ev, &rc)))
        return rc;
    if (PQntuples(res) == 0) {
        bool created = false;
        if (named) {
            rc = s_reject(ctx, ev, json_pack("{s:s}", "task", named), "unknown task \"%s\"", named);
            goto out;
        }
        if ((rc = s_adhoc_task(ctx, ev, task, sizeof task, &created)) < 0)
            goto out;
        if (!created) {
            rc = s_reject(ctx, ev, json_pack("{s:s}", "template", tpl),
                          "unknown template \"%s\" at school %s", tpl, ev->school);
            goto out;
        }
        PQclear(res);
        const char *p[2] = {ev->school, task};
        if (!(res = sc_pq_exec(sc_db(ctx),
                               "SELECT " S_TASK_COLS " FROM inspection.tasks"
                               " WHERE school = $1 AND task = $2",
                               2, p, &rc)))
            goto out;
    }
    snprintf(task, sizeof task, "%s", PQgetvalue(res, 0, 0));
    const char *status = PQgetvalue(res, 0, 1), *template = PQgetvalue(res, 0, 2);
    const char *area = PQgetisnull(res, 0, 4) ? NULL : PQgetvalue(res, 0, 4);
    if (strcmp(status, "completed") == 0) {
        rc = s_reject(ctx, ev, json_pack("{s:s}", "task", task),
                      "task \"%s\" was already completed at %s", task, PQgetvalue(res, 0, 7));
        goto out;
    }
    rc = -EIO;
    if (!(items = json_loads(PQgetvalue(res, 0, 5), 0, NULL)))
        goto out;

    /* Every result names an item of the checklist; every item has a result. */
    size_t i, j;
    const json_t *r, *it;
    json_array_foreach(results, i, r)
    {
        bool found = false;
        json_array_foreach(items, j, it) found |=
            strcmp(sc_json_str(it, "item"), sc_json_str(r, "item")) == 0;
        if (!found) {
            rc = s_reject(ctx, ev,
                          json_pack("{s:s, s:s}", "task", task, "item", sc_json_str(r, "item")),
                          "results[%zu].item: \"%s\" is not an item of template %s", i,
                          sc_json_str(r, "item"), template);
            goto out;
        }
    }
    missing = json_array();
    json_array_foreach(items, j, it)
    {
        bool found = false;
        json_array_foreach(results, i, r) found |=
            strcmp(sc_json_str(it, "item"), sc_json_str(r, "item")) == 0;
        if (!found)
            json_array_append_new(missing, json_string(sc_json_str(it, "item")));
    }
    if (st->require_all_items && json_array_size(missing) > 0) {
        char list[256] = "";
        size_t off = 0;
        json_array_foreach(missing, i, r) if (off < sizeof list) off += (size_t)snprintf(
            list + off, sizeof list - off, "%s%s", i ? ", " : "", json_string_value(r));
        rc = s_reject(ctx, ev, json_pack("{s:s, s:O}", "task", task, "missing", missing),
                      "results: no result for %s (mark items not checked as \"na\")", list);
        goto out;
    }

    snprintf(evid, sizeof evid, "%lld", (long long)ev->id);
    json_array_foreach(results, i, r)
    {
        char hazard[SC_CODE_MAX + 1];
        const char *rstatus = sc_json_str(r, "status");
        bool fail = strcmp(rstatus, "fail") == 0;
        if (fail)
            s_code(hazard, sizeof hazard, "insp-", task, "-", sc_json_str(r, "item"));
        const char *p[7] = {ev->school,
                            task,
                            sc_json_str(r, "item"),
                            rstatus,
                            sc_json_str(r, "note"),
                            sc_json_str(r, "photo"),
                            fail ? hazard : NULL};
        PGresult *ins = sc_pq_exec(sc_db(ctx),
                                   "INSERT INTO inspection.results (school, task, item, status,"
                                   "   note, photo, hazard) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                                   " ON CONFLICT (school, task, item) DO UPDATE SET"
                                   "   status = EXCLUDED.status, note = EXCLUDED.note,"
                                   "   photo = EXCLUDED.photo, hazard = EXCLUDED.hazard",
                                   7, p, &rc);
        if (!ins)
            goto out;
        PQclear(ins);
        if (!fail)
            continue;
        const json_t *item = NULL;
        json_array_foreach(items, j, it) if (strcmp(sc_json_str(it, "item"),
                                                    sc_json_str(r, "item")) == 0) item = it;
        if ((rc = s_hazard(ctx, st, ev, task, template, area, item, r, hazard)) < 0)
            goto out;
    }
    const char *p[5] = {ev->school, task, sc_time_format(ev->occurred_at, when),
                        sc_json_str(d, "inspector"), evid};
    PGresult *upd = sc_pq_exec(sc_db(ctx),
                               "UPDATE inspection.tasks SET status = 'completed',"
                               "   completed_at = $3, inspector = $4, completion_event = $5"
                               " WHERE school = $1 AND task = $2",
                               5, p, &rc);
    PQclear(upd);
out:
    json_decref(items);
    json_decref(missing);
    PQclear(res);
    return rc;
}

static int s_handle(sc_ctx_t *ctx, void *state, const sc_event_t *ev)
{
    struct insp *st = state;
    static const struct {
        const char *type;
        int (*fn)(sc_ctx_t *, struct insp *, const sc_event_t *);
    } handlers[] = {
        {"inspection.template.upserted", s_template_upserted},
        {"inspection.schedule.upserted", s_schedule_upserted},
        {"inspection.season.upserted", s_season_upserted},
        {"inspection.calendar.upserted", s_calendar_upserted},
        {"inspection.completed", s_completed},
        {"weather.alert", s_weather_alert},
    };
    for (size_t i = 0; i < sizeof handlers / sizeof handlers[0]; i++)
        if (strcmp(ev->type, handlers[i].type) == 0)
            return handlers[i].fn(ctx, st, ev);
    return 0;
}

/* ---- tick ---------------------------------------------------------------- */

/* Opens a task for each occurrence of a schedule in (after, until]. */
static int s_open_occurrences(sc_ctx_t *ctx, const json_t *sched, const struct rr_spec *rr,
                              sc_time_t after, sc_time_t until)
{
    const char *school = sc_json_str(sched, "school"), *schedule = sc_json_str(sched, "schedule");
    struct rr_occ *occ = NULL;
    size_t n = 0;
    int rc = rr_expand(rr, after, until, SIZE_MAX, &occ, &n, NULL);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char stamp[24], task[SC_CODE_MAX + 1];
        int y, mo, d;
        bool opened;
        /* The task's code names the local wall time of its occurrence. */
        rr_civil(occ[i].local_day, &y, &mo, &d);
        if (occ[i].second)
            snprintf(stamp, sizeof stamp, "%04d%02d%02dT%02d%02d%02d", y, mo, d, occ[i].hour,
                     occ[i].minute, occ[i].second);
        else
            snprintf(stamp, sizeof stamp, "%04d%02d%02dT%02d%02d", y, mo, d, occ[i].hour,
                     occ[i].minute);
        sc_time_t due = occ[i].at + sc_json_int(sched, "due_within", 0) * SC_USEC_PER_SEC;
        struct s_open o = {
            .school = school,
            .task = s_code(task, sizeof task, "", schedule, "-", stamp),
            .kind = "scheduled",
            .schedule = schedule,
            .template = sc_json_str(sched, "template"),
            .assignee_role = sc_json_str(sched, "assignee_role"),
            .assignee = sc_json_str(sched, "assignee"),
            .opens_at = occ[i].at,
            .due_at = due,
            .deadline = due + sc_json_int(sched, "grace", 0) * SC_USEC_PER_SEC,
            .local_day = occ[i].local_day,
        };
        rc = s_task_open(ctx, &o, &opened);
    }
    free(occ);
    return rc;
}

/*
 * The first occurrence after `after`; SC_TIME_NEVER when the rules have ended; the end of
 * the search horizon when none comes before it (the tick then looks again).
 */
static int s_next_occurrence(const struct rr_spec *rr, sc_time_t after, sc_time_t *next)
{
    struct rr_occ *occ = NULL;
    size_t n = 0;
    bool exhausted = false;
    int rc = rr_expand(rr, after, after + INSP_HORIZON, 1, &occ, &n, &exhausted);
    if (rc == 0)
        *next = n ? occ[0].at : exhausted ? SC_TIME_NEVER : after + INSP_HORIZON;
    free(occ);
    return rc;
}

/*
 * Creates the tasks of one schedule's occurrences after its watermark up to now, then
 * moves the watermark to now and stores the next occurrence.
 */
static int s_expand_schedule(sc_ctx_t *ctx, struct insp *st, const json_t *sched, sc_time_t now)
{
    const char *school = sc_json_str(sched, "school"), *schedule = sc_json_str(sched, "schedule");
    struct insp_school info;
    struct insp_spec spec;
    char err[160] = "", next_s[SC_TIME_LEN], mark_s[SC_TIME_LEN];
    sc_time_t mark = sc_json_int(sched, "expanded_until", 0), next_at = SC_TIME_NEVER;
    int rc;

    insp_school(ctx, school, &info);
    if ((rc = insp_spec_load(ctx, st, sched, &info, &spec, err, sizeof err)) < 0) {
        if (rc == -EAGAIN || rc == -EIO || rc == -ENOMEM)
            return rc;
        /* A season that became unknown (config changed): the base rule still runs. */
        SC_LOG_WARN(ctx, "schedule %s/%s: %s: its seasons are ignored", school, schedule, err);
        json_t *plain = json_deep_copy(sched);
        if (!plain)
            return -ENOMEM;
        json_object_set_new(plain, "seasons", json_array());
        rc = insp_spec_load(ctx, st, plain, &info, &spec, err, sizeof err);
        json_decref(plain);
        if (rc < 0)
            return rc;
    }

    if (now > mark && (rc = s_open_occurrences(ctx, sched, &spec.rr, mark, now)) == 0)
        mark = now;
    if (rc == 0)
        rc = s_next_occurrence(&spec.rr, mark, &next_at);
    if (rc == -EINVAL) {
        /* Rules are checked at ingest, so this does not happen; if it does, park it. */
        SC_LOG_ERR(ctx, "schedule %s/%s: its rule does not parse: no more tasks", school, schedule);
        rc = 0;
        next_at = SC_TIME_NEVER;
    }
    if (rc == 0) {
        const char *p[4] = {school, schedule, sc_time_format(mark, mark_s),
                            next_at == SC_TIME_NEVER ? NULL : sc_time_format(next_at, next_s)};
        PGresult *res = sc_pq_exec(sc_db(ctx),
                                   "UPDATE inspection.schedules"
                                   "   SET expanded_until = GREATEST(expanded_until, $3),"
                                   "       next_at = COALESCE($4::timestamptz, 'infinity')"
                                   " WHERE school = $1 AND schedule = $2",
                                   4, p, &rc);
        PQclear(res);
    }
    insp_spec_free(&spec);
    return rc;
}

static int s_miss(sc_ctx_t *ctx, sc_time_t now)
{
    char now_s[SC_TIME_LEN];
    const char *p[1] = {sc_time_format(now, now_s)};
    int rc;
    PGresult *res = sc_pq_exec(
        sc_db(ctx),
        "WITH m AS (UPDATE inspection.tasks SET status = 'missed', missed_at = deadline"
        "            WHERE status = 'open' AND deadline <= $1"
        "            RETURNING school, task, kind, schedule, template, due_at, deadline,"
        "                      assignee_role, assignee)"
        " SELECT school, task, kind, schedule, template, " INSP_TS("due_at") ", " INSP_TS(
            "deadline") ", " S_US("deadline") ", assignee_role, assignee"
                                              " FROM m ORDER BY deadline, school, task",
        1, p, &rc);
    if (!res)
        return rc;
    for (int i = 0; i < PQntuples(res) && rc == 0; i++) {
        char id[SC_CODE_MAX + 1];
        const char *school = PQgetvalue(res, i, 0), *task = PQgetvalue(res, i, 1);
        json_t *data = json_pack("{s:s, s:s, s:s, s:s, s:s}", "task", task, "kind",
                                 PQgetvalue(res, i, 2), "template", PQgetvalue(res, i, 4), "due_at",
                                 PQgetvalue(res, i, 5), "deadline", PQgetvalue(res, i, 6));
        if (!data) {
            rc = -ENOMEM;
            break;
        }
        if (!PQgetisnull(res, i, 3))
            json_object_set_new(data, "schedule", json_string(PQgetvalue(res, i, 3)));
        if (!PQgetisnull(res, i, 8))
            json_object_set_new(data, "assignee_role", json_string(PQgetvalue(res, i, 8)));
        if (!PQgetisnull(res, i, 9))
            json_object_set_new(data, "assignee", json_string(PQgetvalue(res, i, 9)));
        rc = sc_emit(ctx, &(sc_emit_t){.type = "inspection.missed",
                                       .school = school,
                                       .id = s_code(id, sizeof id, "missed:", school, ":", task),
                                       .occurred_at = strtoll(PQgetvalue(res, i, 7), NULL, 10),
                                       .data = data});
        json_decref(data);
    }
    PQclear(res);
    return rc;
}

static int s_tick(sc_ctx_t *ctx, void *state, sc_time_t now, sc_time_t *next)
{
    struct insp *st = state;
    char now_s[SC_TIME_LEN];
    const char *p[1] = {sc_time_format(now, now_s)};
    json_t *rows = NULL;
    int rc;

    *next = SC_TIME_NEVER;
    PGresult *res = sc_pq_exec(
        sc_db(ctx),
        "SELECT school, schedule, template, rrule, dtstart, seasons, exdates, skip_closed,"
        "       due_within, grace, assignee_role, assignee, " S_US(
            "expanded_until") " AS expanded_until"
                              "  FROM inspection.schedules"
                              " WHERE active AND (next_at IS NULL OR next_at <= $1)"
                              " ORDER BY school, schedule",
        1, p, &rc);
    if (!res)
        return rc;
    rows = sc_pq_rows(res);
    PQclear(res);
    size_t i;
    const json_t *row;
    json_array_foreach(rows, i, row) if ((rc = s_expand_schedule(ctx, st, row, now)) < 0) goto out;
    if ((rc = s_miss(ctx, now)) < 0)
        goto out;

    res = sc_pq_exec(sc_db(ctx),
                     "SELECT " S_US("LEAST((SELECT min(next_at) FROM inspection.schedules"
                                    "        WHERE active AND next_at < 'infinity'),"
                                    "       (SELECT min(deadline) FROM inspection.tasks"
                                    "         WHERE status = 'open'))"),
                     0, NULL, &rc);
    if (!res)
        goto out;
    if (!PQgetisnull(res, 0, 0))
        *next = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
out:
    json_decref(rows);
    return rc;
}

/* ---- life cycle ---------------------------------------------------------- */

static int s_check_seasons(sc_ctx_t *ctx, const json_t *list, const char *key, bool district)
{
    size_t i;
    const json_t *e;
    json_array_foreach(list, i, e)
    {
        int f, t;
        struct rr_span span;
        bool span_ok;
        if (!json_is_object(e) || !sc_json_str(e, "season") ||
            (district && !sc_json_str(e, "district")) ||
            insp_parse_range(sc_json_str(e, "from"), sc_json_str(e, "to"), &f, &t, &span,
                             &span_ok) < 0) {
            SC_LOG_ERR(ctx,
                       "%s[%zu]: expected {%sseason, from, to} with from/to both MM-DD or both "
                       "YYYY-MM-DD",
                       key, i, district ? "district, " : "");
            return -EINVAL;
        }
    }
    return 0;
}

static void s_fini(sc_ctx_t *ctx, void *state)
{
    struct insp *st = state;
    (void)ctx;
    if (!st)
        return;
    free(st->adhoc_role);
    free(st->hazard_risk);
    json_decref(st->seasons);
    json_decref(st->district_seasons);
    json_decref(st->alert_levels);
    free(st);
    rr_fini();
}

static int s_init(sc_ctx_t *ctx, void **state)
{
    const json_t *cfg = sc_config(ctx);
    struct insp *st = calloc(1, sizeof *st);
    int used = 0;
    if (!st)
        return -ENOMEM;
    *state = st;
    rr_init();
    st->due_within = sc_json_int(cfg, "due_within", 86400);
    st->grace = sc_json_int(cfg, "grace", 7200);
    st->adhoc_due_within = sc_json_int(cfg, "adhoc_due_within", 4 * 3600);
    st->adhoc_grace = sc_json_int(cfg, "adhoc_grace", 3600);
    st->require_all_items = sc_json_bool(cfg, "require_all_items", true);
    st->adhoc_role =
        strdup(sc_json_str(cfg, "adhoc_assignee_role") ? sc_json_str(cfg, "adhoc_assignee_role")
                                                       : "safety_officer");
    const char *risk = sc_json_str(cfg, "hazard_risk");
    st->hazard_risk = strdup(risk ? risk : "general");
    st->seasons = json_deep_copy(json_object_get(cfg, "seasons"));
    st->district_seasons = json_deep_copy(json_object_get(cfg, "district_seasons"));
    st->alert_levels = json_deep_copy(json_object_get(cfg, "alert_levels"));
    if (!st->adhoc_role || !st->hazard_risk)
        return -ENOMEM;
    if (!st->seasons)
        st->seasons = json_array();
    if (!st->district_seasons)
        st->district_seasons = json_array();
    if (!st->alert_levels)
        st->alert_levels = json_array();

    const char *tod = sc_json_str(cfg, "default_time");
    if (!tod || sscanf(tod, "%2d:%2d%n", &st->default_hour, &st->default_minute, &used) != 2 ||
        used != 5 || tod[used] || st->default_hour > 23 || st->default_minute > 59 ||
        st->default_hour < 0 || st->default_minute < 0) {
        SC_LOG_ERR(ctx, "default_time: expected HH:MM");
        return -EINVAL;
    }
    if (st->due_within < 60 || st->adhoc_due_within < 60) {
        SC_LOG_ERR(ctx, "due_within and adhoc_due_within: must be at least a minute");
        return -EINVAL;
    }
    bool risk_ok = false;
    for (size_t i = 0; s_risks[i]; i++)
        risk_ok |= strcmp(s_risks[i], st->hazard_risk) == 0;
    if (!risk_ok) {
        SC_LOG_ERR(ctx, "hazard_risk: must be one of general, major");
        return -EINVAL;
    }
    size_t i;
    const json_t *l;
    json_array_foreach(st->alert_levels, i, l)
    {
        bool ok = false;
        for (size_t k = 0; json_is_string(l) && s_levels[k]; k++)
            ok |= strcmp(s_levels[k], json_string_value(l)) == 0;
        if (!ok) {
            SC_LOG_ERR(ctx, "alert_levels[%zu]: must be one of blue, yellow, orange, red", i);
            return -EINVAL;
        }
    }
    if (s_check_seasons(ctx, st->seasons, "seasons", false) < 0 ||
        s_check_seasons(ctx, st->district_seasons, "district_seasons", true) < 0)
        return -EINVAL;
    return 0;
}

/* ---- the plugin ---------------------------------------------------------- */

static const char *const s_subscribe[] = {
    "inspection.template.upserted",
    "inspection.schedule.upserted",
    "inspection.season.upserted",
    "inspection.calendar.upserted",
    "inspection.completed",
    "weather.alert",
    NULL,
};

static const struct sc_type s_types[] = {
    {"inspection.template.upserted", 0, s_validate_template},
    {"inspection.schedule.upserted", 0, s_validate_schedule},
    {"inspection.season.upserted", SC_TYPE_DISTRICT, s_validate_season},
    {"inspection.calendar.upserted", SC_TYPE_DISTRICT, s_validate_calendar},
    {"inspection.completed", 0, s_validate_completed},
    {"weather.alert", SC_TYPE_DISTRICT, s_validate_alert},
    {"inspection.due", SC_TYPE_EMITTED, NULL},
    {"inspection.missed", SC_TYPE_EMITTED, NULL},
    {"inspection.rejected", SC_TYPE_EMITTED, NULL},
    /* Owned (and validated) by hazard_tracker; listed because this plugin raises it. */
    {"hazard.reported", SC_TYPE_EMITTED, NULL},
    {NULL, 0, NULL},
};

static const struct sc_config_key s_config_keys[] = {
    {"due_within", SC_CFG_DURATION, "\"1d\"",
     "how long a scheduled task stays open when its schedule names no due_within"},
    {"grace", SC_CFG_DURATION, "\"2h\"",
     "time after due_within before an undone task is missed, when the schedule names none"},
    {"default_time", SC_CFG_STRING, "\"08:00\"",
     "local time of day of DTSTART for a schedule that gives no start"},
    {"adhoc_due_within", SC_CFG_DURATION, "\"4h\"",
     "how long an inspection called up by a weather alert stays open"},
    {"adhoc_grace", SC_CFG_DURATION, "\"1h\"", "grace after adhoc_due_within before it is missed"},
    {"adhoc_assignee_role", SC_CFG_STRING, "\"safety_officer\"",
     "role an alert inspection is for when its template names none"},
    {"alert_levels", SC_CFG_LIST, "[\"blue\", \"yellow\", \"orange\", \"red\"]",
     "warning levels that call up ad-hoc inspections"},
    {"seasons", SC_CFG_LIST,
     "[{\"season\": \"plum_rain\", \"from\": \"06-01\", \"to\": \"07-31\"},"
     " {\"season\": \"typhoon\", \"from\": \"07-01\", \"to\": \"09-30\"}]",
     "named seasons {season, from, to}: MM-DD every year or YYYY-MM-DD for one year"},
    {"district_seasons", SC_CFG_LIST, "[]",
     "a district's own season dates {district, season, from, to}; override seasons"},
    {"require_all_items", SC_CFG_BOOL, "true",
     "refuse a completion that has no result for some item of the checklist"},
    {"hazard_risk", SC_CFG_STRING, "\"general\"",
     "risk of the hazard raised for a failed item whose result names none"},
    {NULL, 0, NULL, NULL},
};

static const struct sc_plugin s_plugin = {
    .abi = SC_PLUGIN_ABI,
    .size = sizeof(struct sc_plugin),
    .name = INSP_NAME,
    .version = "0.1.0",
    .description = "scheduled (RFC 5545, seasons) and weather-alert safety inspections",
    .subscribe = s_subscribe,
    .types = s_types,
    .config = s_config_keys,
    .migrations = inspection_scheduler_migrations,
    .init = s_init,
    .handle = s_handle,
    .tick = s_tick,
    .query = insp_query,
    .fini = s_fini,
};

SC_PLUGIN_DEFINE(s_plugin)
