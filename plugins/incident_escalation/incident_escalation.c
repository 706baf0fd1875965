/* incident_escalation: incidents and other plugins' alerts, escalated level by level until
 * acknowledged; the plugin's entry, owned types, validators, config and callbacks. */
#include "ie.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const struct sc_migration incident_escalation_migrations[];

static const char *const s_kinds[] = {
    "injury",   "fire",     "drowning",  "traffic",          "food_poisoning", "infectious_disease",
    "violence", "bullying", "intrusion", "natural_disaster", "building",       "other",
    NULL};
static const char *const s_severities[] = {"I", "II", "III", "IV", NULL};
static const char *const s_fire_kinds[] = {"alarm", "fault", "test", NULL};

/* ---- validators (pure) ---- */

static int s_check_casualties(const json_t *d, char *detail, size_t dlen)
{
    int rc = sc_check_object(d, "data.", "casualties", false, detail, dlen);
    const json_t *c = json_object_get(d, "casualties");
    if (rc < 0 || !json_is_object(c))
        return rc;
    if ((rc = sc_check_int(c, "data.casualties.", "dead", false, 0, 100000, detail, dlen)) < 0)
        return rc;
    return sc_check_int(c, "data.casualties.", "injured", false, 0, 100000, detail, dlen);
}

/* Fields incident.reported and incident.updated share (optional ones). */
static int s_check_incident_fields(const json_t *d, char *detail, size_t dlen)
{
    int rc;
    if ((rc = s_check_casualties(d, detail, dlen)) < 0 ||
        (rc = sc_check_string(d, "data.", "location", false, 500, detail, dlen)) < 0 ||
        (rc = sc_check_string(d, "data.", "summary", false, 4000, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, "data.", "reporter", false, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, "data.", "class", false, detail, dlen)) < 0)
        return rc;
    return 0;
}

static int s_v_reported(const sc_event_t *ev, char *detail, size_t dlen)
{
    const json_t *d = ev->data;
    int rc;
    if ((rc = sc_check_code(d, "data.", "incident", true, detail, dlen)) < 0 ||
        (rc = sc_check_enum(d, "data.", "kind", true, s_kinds, detail, dlen)) < 0 ||
        (rc = sc_check_enum(d, "data.", "severity", true, s_severities, detail, dlen)) < 0)
        return rc;
    return s_check_incident_fields(d, detail, dlen);
}

static int s_v_updated(const sc_event_t *ev, char *detail, size_t dlen)
{
    const json_t *d = ev->data;
    int rc;
    if ((rc = sc_check_code(d, "data.", "incident", true, detail, dlen)) < 0 ||
        (rc = sc_check_enum(d, "data.", "kind", false, s_kinds, detail, dlen)) < 0 ||
        (rc = sc_check_enum(d, "data.", "severity", false, s_severities, detail, dlen)) < 0 ||
        (rc = sc_check_string(d, "data.", "note", false, 4000, detail, dlen)) < 0)
        return rc;
    return s_check_incident_fields(d, detail, dlen);
}

static int s_v_ack(const sc_event_t *ev, char *detail, size_t dlen)
{
    const json_t *d = ev->data;
    int rc;
    if ((rc = sc_check_code(d, "data.", "incident", true, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, "data.", "by", true, detail, dlen)) < 0)
        return rc;
    return sc_check_string(d, "data.", "note", false, 4000, detail, dlen);
}

static int s_v_resolved(const sc_event_t *ev, char *detail, size_t dlen)
{
    const json_t *d = ev->data;
    int rc;
    if ((rc = sc_check_code(d, "data.", "incident", true, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, "data.", "by", true, detail, dlen)) < 0)
        return rc;
    return sc_check_string(d, "data.", "summary", false, 4000, detail, dlen);
}

static int s_v_report(const sc_event_t *ev, char *detail, size_t dlen)
{
    const json_t *d = ev->data;
    int rc;
    if ((rc = sc_check_code(d, "data.", "incident", true, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, "data.", "by", true, detail, dlen)) < 0 ||
        (rc = sc_check_string(d, "data.", "summary", false, 8000, detail, dlen)) < 0)
        return rc;
    return sc_check_string(d, "data.", "document", false, 1000, detail, dlen);
}

static int s_v_fire(const sc_event_t *ev, char *detail, size_t dlen)
{
    const json_t *d = ev->data, *zone = json_object_get(d, "zone");
    int rc;
    if ((rc = sc_check_code(d, "data.", "panel", true, detail, dlen)) < 0)
        return rc;
    if (json_is_integer(zone)) {
        if (json_integer_value(zone) < 0)
            return sc_fail(detail, dlen, "data.zone: must not be negative");
    } else if ((rc = sc_check_string(d, "data.", "zone", true, 64, detail, dlen)) < 0) {
        return rc;
    }
    return sc_check_enum(d, "data.", "kind", true, s_fire_kinds, detail, dlen);
}

static int s_v_silence(const sc_event_t *ev, char *detail, size_t dlen)
{
    const json_t *d = ev->data;
    int rc;
    if ((rc = sc_check_code(d, "data.", "silence", true, detail, dlen)) < 0 ||
        (rc = sc_check_time(d, "data.", "ends_at", true, detail, dlen)) < 0 ||
        (rc = sc_check_time(d, "data.", "starts_at", false, detail, dlen)) < 0 ||
        (rc = sc_check_string(d, "data.", "reason", true, 1000, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, "data.", "by", false, detail, dlen)) < 0)
        return rc;
    if (!json_object_get(d, "matcher"))
        return sc_fail(detail, dlen, "data.matcher: required");
    if ((rc = ie_matcher_check(json_object_get(d, "matcher"), "data.matcher", false, detail,
                               dlen)) < 0)
        return rc;
    if (json_object_size(json_object_get(d, "matcher")) == 0)
        return sc_fail(detail, dlen, "data.matcher: must name at least one key");
    sc_time_t s = sc_json_time(d, "starts_at", 0), e = sc_json_time(d, "ends_at", 0);
    if (s && e <= s)
        return sc_fail(detail, dlen, "data.ends_at: must be after data.starts_at");
    return 0;
}

static int s_v_silence_cancelled(const sc_event_t *ev, char *detail, size_t dlen)
{
    int rc = sc_check_code(ev->data, "data.", "silence", true, detail, dlen);
    return rc < 0 ? rc : sc_check_code(ev->data, "data.", "by", false, detail, dlen);
}

static const struct sc_type s_types[] = {
    {"incident.reported", 0, s_v_reported},
    {"incident.updated", 0, s_v_updated},
    {"incident.acknowledged", SC_TYPE_DISTRICT, s_v_ack},
    {"incident.resolved", SC_TYPE_DISTRICT, s_v_resolved},
    {"incident.report.submitted", 0, s_v_report},
    {"fire.alarm", 0, s_v_fire},
    {"silence.created", SC_TYPE_DISTRICT, s_v_silence},
    {"silence.cancelled", SC_TYPE_DISTRICT, s_v_silence_cancelled},
    {"incident.escalated", SC_TYPE_EMITTED, NULL},
    {"incident.rejected", SC_TYPE_EMITTED, NULL},
    {"incident.report.overdue", SC_TYPE_EMITTED, NULL},
    {"notification.requested", SC_TYPE_EMITTED, NULL},
    {"silence.expired", SC_TYPE_EMITTED, NULL},
    {NULL, 0, NULL},
};

static const char *const s_subscribe[] = {
    "incident.", "fire.",       "drill.",  "silence.", "notification.failed",
    "hazard.",   "inspection.", "health.", "gate.",    "outing.",
    "weather.",  NULL};

#define S_CHAIN                                                                                    \
    "[{\"roles\":[\"safety_officer\",\"principal\"],\"ack_within\":\"15m\","                       \
    "\"repeat_every\":\"5m\"},"                                                                    \
    "{\"roles\":[\"district_safety_office\"],\"ack_within\":\"30m\",\"repeat_every\":\"10m\"},"    \
    "{\"roles\":[\"district_director\"],\"ack_within\":\"30m\",\"repeat_every\":\"15m\"}]"
#define S_GRAVE_CHAIN                                                                              \
    "[{\"roles\":[\"safety_officer\",\"principal\"],\"ack_within\":\"10m\","                       \
    "\"repeat_every\":\"5m\"},"                                                                    \
    "{\"roles\":[\"district_safety_office\"],\"ack_within\":\"15m\",\"repeat_every\":\"5m\"},"     \
    "{\"roles\":[\"district_director\"],\"ack_within\":\"15m\",\"repeat_every\":\"10m\"}]"

static const struct sc_config_key s_config_keys[] = {
    {"policies", SC_CFG_LIST, "[]",
     "escalation policies matched before the built-in ones: {name, match, levels, immediate, "
     "report_within, report_chase_every, report_chase_max, report_roles, subject, group, "
     "resolve_on}"},
    {"default_policies", SC_CFG_BOOL, "true", "also match the built-in policies"},
    {"chain", SC_CFG_LIST, S_CHAIN,
     "the default chain: level 1 school safety officer and principal, level 2 district safety "
     "office, level 3 district director"},
    {"grave_chain", SC_CFG_LIST, S_GRAVE_CHAIN,
     "the chain of casualty and severity I-II incidents (the district is also told at once)"},
    {"report_within", SC_CFG_DURATION, "\"2h\"", "written report deadline of grave incidents"},
    {"report_chase_every", SC_CFG_DURATION, "\"30m\"", "how often a late report is chased"},
    {"report_chase_max", SC_CFG_INT, "8", "how many times a late report is chased"},
    {"repeat_max", SC_CFG_INT, "12", "repeats per level while unacknowledged, unless a level says"},
    {"channels", SC_CFG_LIST, "[\"webhook\",\"email\",\"sms\"]",
     "notification channels in preference order (sms uses contacts.phone)"},
    {"channel_mode", SC_CFG_STRING, "\"all\"",
     "all: one notification per available channel; first: only the first available"},
    {"group_window", SC_CFG_DURATION, "\"1h\"",
     "alerts about the same thing within this window of the last one join its escalation"},
    {"drill_max_duration", SC_CFG_DURATION, "\"2h\"",
     "a drill started without drill.ended inhibits fire alarms at most this long"},
    {"silence_max", SC_CFG_DURATION, "\"7d\"", "longest silence accepted"},
    {"fire_alarm_severity", SC_CFG_STRING, "\"III\"", "severity of an incident from a fire alarm"},
    {"notify_resolved", SC_CFG_BOOL, "true", "tell everyone told when an escalation is resolved"},
    {NULL, 0, NULL, NULL},
};

/* What the plugin acts on whatever its policies say (see s_handle). */
static const char *const s_own[] = {"incident.",           "fire.", "drill.", "silence.",
                                    "notification.failed", NULL};

/*
 * Adds the types one matcher names to `types`. False when it names none and may match an
 * event of any type: one whose sort admits an alert or a resolving event. (The sort
 * "incident" is only ever that of incident and fire panel events, read anyway.)
 */
static bool s_matcher_types(const json_t *m, json_t *types)
{
    const json_t *t = json_object_get(m, "type"), *sort = json_object_get(m, "sort");
    if (!t) {
        if (!sort)
            return false;
        json_t *only = json_pack("{s:O}", "sort", sort);
        json_t *alert = json_pack("{s:s}", "sort", "alert"),
               *event = json_pack("{s:s}", "sort", "event");
        bool any = !only || !alert || !event || ie_match(only, alert) || ie_match(only, event);
        json_decref(only);
        json_decref(alert);
        json_decref(event);
        return !any;
    }
    size_t i;
    const json_t *e;
    json_t *one = json_is_string(t) ? json_pack("[O]", t) : json_incref((json_t *)t);
    json_array_foreach(one, i, e)
    {
        /* "health.*" reads as the prefix "health."; an exact type is its own prefix. */
        const char *pat = json_string_value(e);
        size_t n = strlen(pat);
        json_array_append_new(types, json_stringn(pat, n && pat[n - 1] == '*' ? n - 1 : n));
    }
    json_decref(one);
    return true;
}

/*
 * Asks the core for only the events the plugin can act on: its own kinds and the
 * types the policies match or resolve on. Gate entries, absences and hazard
 * reports are most of a district's traffic and none of them is an alert under
 * the built-in policies: read for nothing, they had cost this plugin a pass over
 * every event journaled. A matcher that names no type may match anything: then
 * the plugin's whole list stays.
 */
static int s_subscribe_policies(sc_ctx_t *ctx, const json_t *policies)
{
    json_t *types = json_array();
    const char **list = NULL;
    bool any = false;
    int rc = -ENOMEM;
    size_t i, k;
    const json_t *p, *m;
    if (!types)
        return rc;
    for (i = 0; s_own[i]; i++)
        json_array_append_new(types, json_string(s_own[i]));
    json_array_foreach(policies, i, p)
    {
        const json_t *match = json_object_get(p, "match");
        if (json_is_object(match))
            any |= !s_matcher_types(match, types);
        else
            json_array_foreach(match, k, m) any |= !s_matcher_types(m, types);
        json_array_foreach(json_object_get(p, "resolve_on"), k, m) any |=
            !s_matcher_types(m, types);
    }
    if (any) {
        rc = 0;
        goto out;
    }
    if (!(list = calloc(json_array_size(types) + 1, sizeof *list)))
        goto out;
    json_array_foreach(types, i, m) list[i] = json_string_value(m);
    rc = sc_subscribe(ctx, list);
    rc = rc == -ENOSYS ? 0 : rc; /* an older daemon: everything subscribed is read */
out:
    free(list);
    json_decref(types);
    return rc;
}

/* ---- callbacks ---- */

static void s_fini(sc_ctx_t *ctx, void *state)
{
    (void)ctx;
    ie_state_t *st = state;
    if (!st)
        return;
    json_decref(st->policies);
    json_decref(st->channels);
    free(st);
}

static int s_init(sc_ctx_t *ctx, void **state)
{
    const json_t *cfg = sc_config(ctx);
    ie_state_t *st = calloc(1, sizeof *st);
    char err[512];
    int rc = -EINVAL;
    if (!st)
        return -ENOMEM;
    *state = st;
    /* webhook, email, sms (contacts.phone), or a channel notify knows by another name (a chat
     * robot), used when the person has a contact of that name. */
    const json_t *chans = json_object_get(cfg, "channels");
    size_t i;
    const json_t *c;
    if (!json_array_size(chans)) {
        snprintf(err, sizeof err, "incident_escalation.channels: must not be empty");
        goto fail;
    }
    json_array_foreach(chans, i, c)
    {
        json_t *wrap = json_pack("{s:O}", "channel", c);
        int bad =
            sc_check_code(wrap, "incident_escalation.channels.", "channel", true, err, sizeof err);
        json_decref(wrap);
        if (bad < 0) {
            snprintf(err, sizeof err, "incident_escalation.channels[%zu]: must be a channel name",
                     i);
            goto fail;
        }
    }
    st->channels = json_incref((json_t *)chans);
    const char *mode = sc_json_str(cfg, "channel_mode");
    if (!mode || (strcmp(mode, "all") != 0 && strcmp(mode, "first") != 0)) {
        snprintf(err, sizeof err, "incident_escalation.channel_mode: must be one of all, first");
        goto fail;
    }
    st->channel_all = strcmp(mode, "all") == 0;
    const char *sev = sc_json_str(cfg, "fire_alarm_severity");
    bool sev_ok = false;
    for (i = 0; sev && s_severities[i]; i++)
        sev_ok |= strcmp(sev, s_severities[i]) == 0;
    if (!sev_ok) {
        snprintf(err, sizeof err,
                 "incident_escalation.fire_alarm_severity: must be one of I, II, III, IV");
        goto fail;
    }
    snprintf(st->fire_severity, sizeof st->fire_severity, "%s", sev);
    st->notify_resolved = sc_json_bool(cfg, "notify_resolved", true);
    st->group_window = sc_json_int(cfg, "group_window", 3600);
    st->drill_max = sc_json_int(cfg, "drill_max_duration", 7200);
    st->silence_max = sc_json_int(cfg, "silence_max", 7 * 86400);
    if (sc_json_int(cfg, "repeat_max", 0) < 0 || sc_json_int(cfg, "report_chase_max", 0) < 0) {
        snprintf(err, sizeof err, "incident_escalation.repeat_max, report_chase_max: must be >= 0");
        goto fail;
    }
    char perr[400];
    if (ie_policies_load(cfg, &st->policies, perr, sizeof perr) < 0) {
        snprintf(err, sizeof err, "incident_escalation.%s", perr);
        goto fail;
    }
    SC_LOG_INFO(ctx, "%zu escalation policies", json_array_size(st->policies));
    if ((rc = s_subscribe_policies(ctx, st->policies)) < 0) {
        snprintf(err, sizeof err, "incident_escalation: could not subscribe: %s", strerror(-rc));
        goto fail;
    }
    return 0;
fail:
    SC_LOG_ERR(ctx, "%s", err);
    return rc;
}

static int s_handle(sc_ctx_t *ctx, void *state, const sc_event_t *ev)
{
    ie_state_t *st = state;
    const char *t = ev->type;
    if (strcmp(t, "incident.reported") == 0)
        return ie_on_reported(ctx, st, ev);
    if (strcmp(t, "incident.updated") == 0)
        return ie_on_updated(ctx, st, ev);
    if (strcmp(t, "incident.acknowledged") == 0)
        return ie_on_ack(ctx, st, ev);
    if (strcmp(t, "incident.resolved") == 0)
        return ie_on_resolved(ctx, st, ev);
    if (strcmp(t, "incident.report.submitted") == 0)
        return ie_on_report(ctx, st, ev);
    if (strcmp(t, "fire.alarm") == 0)
        return ie_on_fire(ctx, st, ev);
    if (strcmp(t, "drill.scheduled") == 0 || strcmp(t, "drill.started") == 0 ||
        strcmp(t, "drill.ended") == 0 || strcmp(t, "drill.cancelled") == 0)
        return ie_on_drill(ctx, st, ev);
    if (strncmp(t, "silence.", 8) == 0)
        return ie_on_silence(ctx, st, ev);
    if (strcmp(t, "notification.failed") == 0)
        return ie_on_notification_failed(ctx, st, ev);
    /* Our own emitted events and other incident.* or notification.* come back: never alerts. */
    if (strncmp(t, "incident.", 9) == 0 || strncmp(t, "notification.", 13) == 0)
        return 0;
    return ie_on_other(ctx, st, ev);
}

static int s_tick(sc_ctx_t *ctx, void *state, sc_time_t now, sc_time_t *next)
{
    return ie_tick(ctx, state, now, next);
}

static int s_query(sc_ctx_t *ctx, void *state, const json_t *req, json_t **reply)
{
    return ie_query(ctx, state, req, reply);
}

static const struct sc_plugin s_plugin = {
    .abi = SC_PLUGIN_ABI,
    .size = sizeof(struct sc_plugin),
    .name = "incident_escalation",
    .version = "1.0.0",
    .description = "incidents and alerts escalated level by level until acknowledged",
    .subscribe = s_subscribe,
    .types = s_types,
    .config = s_config_keys,
    .migrations = incident_escalation_migrations,
    .init = s_init,
    .handle = s_handle,
    .tick = s_tick,
    .query = s_query,
    .fini = s_fini,
};

SC_PLUGIN_DEFINE(s_plugin)
