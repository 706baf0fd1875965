/* Events that open escalations (incidents, fire alarms, other plugins' alerts), group them,
 * inhibit them (drills), silence them, and events that resolve alerts. */
#include "ie.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool s_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/*
 * What policies and silences match on, for an event: {sort, type, school, district, kind,
 * severity, risk, dead, injured, data}. New reference.
 */
static json_t *s_facts(const char *sort, const sc_event_t *ev)
{
    json_t *f = json_pack("{s:s, s:s, s:O}", "sort", sort, "type", ev->type, "data", ev->data);
    if (!f)
        return NULL;
    if (ev->school)
        json_object_set_new(f, "school", json_string(ev->school));
    if (ev->district)
        json_object_set_new(f, "district", json_string(ev->district));
    static const char *const keys[] = {"kind", "severity", "risk"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (sc_json_str(ev->data, keys[i]))
            json_object_set_new(f, keys[i], json_string(sc_json_str(ev->data, keys[i])));
    const json_t *cas = json_object_get(ev->data, "casualties");
    json_object_set_new(f, "dead", json_integer(sc_json_int(cas, "dead", 0)));
    json_object_set_new(f, "injured", json_integer(sc_json_int(cas, "injured", 0)));
    return f;
}

/* A record-only policy for when nothing matches (only when the built-ins are switched off). */
static json_t *s_no_policy(void)
{
    return json_pack("{s:s, s:[], s:[], s:i, s:i, s:i, s:[], s:[], s:s, s:[]}", "name", "none",
                     "levels", "immediate", "report_within", 0, "report_chase_every", 1800,
                     "report_chase_max", 0, "report_roles", "subject", "group", "none",
                     "resolve_on");
}

int ie_open(sc_ctx_t *ctx, ie_state_t *st, const ie_open_t *o)
{
    (void)st;
    const sc_event_t *ev = o->ev;
    const json_t *d = ev->data;
    json_t *none = NULL;
    const json_t *policy = o->policy ? o->policy : (none = s_no_policy());
    char tz[64], now_s[SC_TIME_LEN], occ[SC_TIME_LEN], due[SC_TIME_LEN], dead[24], injured[24],
        evs[24];
    sc_time_t now = sc_now(ctx);
    int64_t within = sc_json_int(policy, "report_within", 0);
    char *chain = json_dumps(policy, JSON_COMPACT);
    char *data = json_dumps(d, JSON_COMPACT);
    int rc = -ENOMEM;
    if (!chain || !data)
        goto out;
    ie_school_tz(ctx, ev->school, tz, sizeof tz);
    sc_time_format(now, now_s);
    sc_time_format(ev->occurred_at ? ev->occurred_at : now, occ);
    sc_time_format(now + within * SC_USEC_PER_SEC, due);
    snprintf(dead, sizeof dead, "%" JSON_INTEGER_FORMAT, sc_json_int(o->facts, "dead", 0));
    snprintf(injured, sizeof injured, "%" JSON_INTEGER_FORMAT, sc_json_int(o->facts, "injured", 0));
    snprintf(evs, sizeof evs, "%" PRId64, ev->id);
    const char *reporter = sc_json_str(d, "reporter") ? sc_json_str(d, "reporter") : ev->actor;
    const char *p[] = {o->code,
                       o->sort,
                       o->origin,
                       ev->school,
                       ev->district,
                       tz,
                       sc_json_str(d, "class"),
                       sc_json_str(o->facts, "kind"),
                       sc_json_str(o->facts, "severity"),
                       dead,
                       injured,
                       o->location ? o->location : sc_json_str(d, "location"),
                       o->summary ? o->summary : sc_json_str(d, "summary"),
                       reporter,
                       o->subject,
                       o->group_key,
                       sc_json_str(policy, "name"),
                       chain,
                       data,
                       occ,
                       now_s,
                       within > 0 ? due : NULL,
                       evs};
    if ((rc =
             ie_exec(ctx,
                     "INSERT INTO incident.escalations (code, sort, origin, school, district, tz, "
                     "class, kind, severity, dead, injured, location, summary, reporter, subject, "
                     "group_key, policy, chain, data, occurred_at, opened_at, last_at, "
                     "report_due_at, report_next_at, opened_event) VALUES ($1, $2, $3, $4, $5, "
                     "$6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18::jsonb, "
                     "$19::jsonb, $20, $21, $21, $22, $22::timestamptz + interval '1 second', $23)",
                     23, p)) < 0)
        goto out;
    json_t *detail = json_pack("{s:s, s:s, s:O}", "type", ev->type, "policy",
                               sc_json_str(policy, "name"), "data", d);
    rc = ie_timeline(ctx, o->code, now, s_eq(o->sort, "incident") ? "reported" : "opened", 0,
                     reporter, detail, ev->id);
    json_decref(detail);
    if (rc < 0)
        goto out;
    if (within > 0) {
        json_t *rd = json_pack("{s:s}", "due_at", due);
        rc = ie_timeline(ctx, o->code, now, "report_due", 0, NULL, rd, ev->id);
        json_decref(rd);
        if (rc < 0)
            goto out;
    }
    if (json_array_size(json_object_get(policy, "levels")) == 0) {
        json_t *nd = json_pack("{s:s}", "reason", "the policy has no levels: recorded only");
        rc = ie_timeline(ctx, o->code, now, "recorded", 0, NULL, nd, ev->id);
        json_decref(nd);
        goto out;
    }
    SC_LOG_INFO(ctx, "%s %s opened under policy %s", o->sort, o->code, sc_json_str(policy, "name"));
    if ((rc = ie_tell(ctx, st, o->code, 1, now, "start", o->reason, ev->id)) < 0)
        goto out;
    char why[200];
    snprintf(why, sizeof why, "told at once, in parallel with level 1 (policy %s)",
             sc_json_str(policy, "name"));
    size_t i;
    const json_t *l;
    json_array_foreach(json_object_get(policy, "immediate"), i, l)
    {
        if ((rc = ie_tell(ctx, st, o->code, (int)json_integer_value(l), now, "immediate", why,
                          ev->id)) < 0)
            goto out;
    }
out:
    free(chain);
    free(data);
    json_decref(none);
    return rc;
}

int ie_group(sc_ctx_t *ctx, ie_state_t *st, const char *group_key, const sc_event_t *ev,
             bool *joined)
{
    char now_s[SC_TIME_LEN], win[24];
    char *data = json_dumps(ev->data, JSON_COMPACT);
    int rc = -ENOMEM;
    *joined = false;
    if (!data)
        return rc;
    snprintf(win, sizeof win, "%" PRId64, st->group_window);
    const char *p[] = {group_key, sc_time_format(sc_now(ctx), now_s), win, data};
    /* An escalation still climbing takes every repeat; an acknowledged one those in the window. */
    PGresult *res =
        ie_sql(ctx,
               "UPDATE incident.escalations SET count = count + 1, last_at = $2, data = $4::jsonb "
               "WHERE code = (SELECT code FROM incident.escalations WHERE group_key = $1 "
               "  AND status <> 'resolved' AND (status = 'open' "
               "  OR last_at >= $2::timestamptz - make_interval(secs => $3::bigint)) "
               "  ORDER BY opened_at DESC LIMIT 1) RETURNING code, count",
               4, p, &rc);
    free(data);
    if (!res)
        return rc;
    if (PQntuples(res) == 1) {
        *joined = true;
        json_t *d = json_pack("{s:i, s:s, s:O}", "count", atoi(PQgetvalue(res, 0, 1)), "type",
                              ev->type, "data", ev->data);
        rc = ie_timeline(ctx, PQgetvalue(res, 0, 0), sc_now(ctx), "grouped", 0, ev->actor, d,
                         ev->id);
        json_decref(d);
    }
    PQclear(res);
    return rc;
}

static int s_exists(sc_ctx_t *ctx, const char *code, bool *exists)
{
    const char *p[] = {code};
    int rc;
    PGresult *res = ie_sql(ctx, "SELECT 1 FROM incident.escalations WHERE code = $1", 1, p, &rc);
    if (!res)
        return rc;
    *exists = PQntuples(res) > 0;
    PQclear(res);
    return 0;
}

/* Records an alarm or alert that is not escalated (drill, silence, panel test). */
static int s_suppress(sc_ctx_t *ctx, const sc_event_t *ev, const char *cause, const char *ref)
{
    char tz[64], at[SC_TIME_LEN], evs[24];
    char *data = json_dumps(ev->data, JSON_COMPACT);
    if (!data)
        return -ENOMEM;
    ie_school_tz(ctx, ev->school, tz, sizeof tz);
    snprintf(evs, sizeof evs, "%" PRId64, ev->id);
    const char *p[] = {
        evs, sc_time_format(sc_now(ctx), at), ev->school, ev->district, tz, ev->type, cause, ref,
        data};
    int rc = ie_exec(ctx,
                     "INSERT INTO incident.suppressed (event, at, school, district, tz, origin, "
                     "cause, ref, data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)",
                     9, p);
    free(data);
    if (rc == 0)
        SC_LOG_INFO(ctx, "%s at %s recorded, not escalated (%s%s%s)", ev->type,
                    ev->school ? ev->school : "-", cause, ref ? " " : "", ref ? ref : "");
    return rc;
}

/* The drill running at `school` now, into buf ("" when none). */
static int s_drill(sc_ctx_t *ctx, ie_state_t *st, const char *school, char *buf, size_t len)
{
    char now_s[SC_TIME_LEN], max[24];
    snprintf(max, sizeof max, "%" PRId64, st->drill_max);
    const char *p[] = {school, sc_time_format(sc_now(ctx), now_s), max};
    int rc;
    buf[0] = '\0';
    if (!school)
        return 0;
    PGresult *res =
        ie_sql(ctx,
               "SELECT drill FROM incident.drills WHERE school = $1 AND NOT cancelled "
               "AND (ended_at IS NULL OR ended_at > $2) AND ("
               " (started_at IS NOT NULL AND started_at <= $2 "
               "  AND greatest(ends_at, started_at + make_interval(secs => $3::bigint)) > $2) "
               " OR (starts_at IS NOT NULL AND starts_at <= $2 AND ends_at > $2)) "
               "ORDER BY drill LIMIT 1",
               3, p, &rc);
    if (!res)
        return rc;
    if (PQntuples(res))
        snprintf(buf, len, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return 0;
}

/* The active silence whose matcher accepts facts, into buf ("" when none); counts the hit. */
static int s_silenced(sc_ctx_t *ctx, const json_t *facts, char *buf, size_t len)
{
    char now_s[SC_TIME_LEN];
    const char *p[] = {sc_time_format(sc_now(ctx), now_s), sc_json_str(facts, "school"),
                       sc_json_str(facts, "district")};
    int rc;
    buf[0] = '\0';
    PGresult *res = ie_sql(ctx,
                           "SELECT silence, matcher FROM incident.silences WHERE status = 'active' "
                           "AND starts_at <= $1 AND ends_at > $1 AND (school = $2 "
                           "OR (school IS NULL AND district = $3)) ORDER BY silence",
                           3, p, &rc);
    if (!res)
        return rc;
    for (int i = 0; i < PQntuples(res) && !buf[0]; i++) {
        json_t *m = sc_pq_value(res, i, 1);
        if (ie_match(m, facts))
            snprintf(buf, len, "%s", PQgetvalue(res, i, 0));
        json_decref(m);
    }
    PQclear(res);
    if (!buf[0])
        return 0;
    const char *up[] = {buf};
    return ie_exec(
        ctx, "UPDATE incident.silences SET suppressed = suppressed + 1 WHERE silence = $1", 1, up);
}

static void s_group_key(const json_t *policy, const char *school, const char *subject, char *buf,
                        size_t len)
{
    snprintf(buf, len, "%s|%s|%s", sc_json_str(policy, "group"), school ? school : "-", subject);
}

/* An event another plugin raised (or a fire panel fault): an alert if a policy matches. */
static int s_alert(sc_ctx_t *ctx, ie_state_t *st, const sc_event_t *ev, json_t *facts)
{
    const json_t *policy = ie_policy_for(st, facts);
    char subject[256], key[512], silence[128], code[48], reason[320];
    bool joined = false;
    int rc;
    if (!policy)
        return 0;
    ie_subject(policy, ev->data, subject, sizeof subject);
    json_object_set_new(facts, "subject", json_string(subject));
    if ((rc = s_silenced(ctx, facts, silence, sizeof silence)) < 0)
        return rc;
    if (silence[0])
        return s_suppress(ctx, ev, "silence", silence);
    s_group_key(policy, ev->school, subject, key, sizeof key);
    if ((rc = ie_group(ctx, st, key, ev, &joined)) < 0 || joined)
        return rc;
    snprintf(code, sizeof code, "alert-%" PRId64, ev->id);
    snprintf(reason, sizeof reason, "%s%s%s", ev->type, subject[0] ? " " : "", subject);
    return ie_open(ctx, st,
                   &(ie_open_t){.code = code,
                                .sort = "alert",
                                .origin = ev->type,
                                .facts = facts,
                                .policy = policy,
                                .subject = subject,
                                .group_key = key,
                                .reason = reason,
                                .ev = ev});
}

int ie_on_reported(sc_ctx_t *ctx, ie_state_t *st, const sc_event_t *ev)
{
    const char *code = sc_json_str(ev->data, "incident");
    bool exists = false;
    char reason[160];
    int rc = s_exists(ctx, code, &exists);
    if (rc < 0)
        return rc;
    if (exists)
        return ie_reject(ctx, ev, "incident", code, "incident: already reported");
    json_t *facts = s_facts("incident", ev);
    if (!facts)
        return -ENOMEM;
    snprintf(reason, sizeof reason, "incident reported: %s, severity %s",
             sc_json_str(ev->data, "kind"), sc_json_str(ev->data, "severity"));
    rc = ie_open(ctx, st,
                 &(ie_open_t){.code = code,
                              .sort = "incident",
                              .origin = ev->type,
                              .facts = facts,
                              .policy = ie_policy_for(st, facts),
                              .reason = reason,
                              .ev = ev});
    json_decref(facts);
    return rc;
}

/* A zone as text: panels send it as a string or a number. */
static void s_zone(const json_t *data, char *buf, size_t len)
{
    const json_t *z = json_object_get(data, "zone");
    if (json_is_string(z))
        snprintf(buf, len, "%s", json_string_value(z));
    else if (json_is_integer(z))
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(z));
    else
        snprintf(buf, len, "-");
}

int ie_on_fire(sc_ctx_t *ctx, ie_state_t *st, const sc_event_t *ev)
{
    const char *kind = sc_json_str(ev->data, "kind"), *panel = sc_json_str(ev->data, "panel");
    char drill[128], silence[128], subject[256], key[512], code[48], zone[80], where[200],
        summary[240];
    json_t *facts = NULL;
    bool joined = false;
    int rc = 0;
    if (s_eq(kind, "test"))
        return s_suppress(ctx, ev, "test", panel);
    if (!s_eq(kind, "alarm")) {
        if (!(facts = s_facts("alert", ev)))
            return -ENOMEM;
        rc = s_alert(ctx, st, ev, facts);
        json_decref(facts);
        return rc;
    }
    /* An alarm during a drill at that school is the drill: recorded, not escalated. */
    if ((rc = s_drill(ctx, st, ev->school, drill, sizeof drill)) < 0)
        return rc;
    if (drill[0])
        return s_suppress(ctx, ev, "drill", drill);

    if (!(facts = s_facts("incident", ev)))
        return -ENOMEM;
    json_object_set_new(facts, "kind", json_string("fire"));
    json_object_set_new(facts, "severity", json_string(st->fire_severity));
    const json_t *policy = ie_policy_for(st, facts);
    if (policy)
        ie_subject(policy, ev->data, subject, sizeof subject);
    else
        snprintf(subject, sizeof subject, "%s", panel ? panel : "");
    json_object_set_new(facts, "subject", json_string(subject));
    if ((rc = s_silenced(ctx, facts, silence, sizeof silence)) < 0)
        goto out;
    if (silence[0]) {
        rc = s_suppress(ctx, ev, "silence", silence);
        goto out;
    }
    snprintf(key, sizeof key, "%s|%s|%s", policy ? sc_json_str(policy, "group") : "fire.alarm",
             ev->school ? ev->school : "-", subject);
    if ((rc = ie_group(ctx, st, key, ev, &joined)) < 0 || joined)
        goto out;
    s_zone(ev->data, zone, sizeof zone);
    snprintf(code, sizeof code, "fire-%" PRId64, ev->id);
    snprintf(where, sizeof where, "fire panel %s, zone %s", panel ? panel : "-", zone);
    snprintf(summary, sizeof summary, "fire alarm 火灾报警: panel %s, zone %s", panel ? panel : "-",
             zone);
    rc = ie_open(ctx, st,
                 &(ie_open_t){.code = code,
                              .sort = "incident",
                              .origin = ev->type,
                              .facts = facts,
                              .policy = policy,
                              .subject = subject,
                              .group_key = key,
                              .location = where,
                              .summary = summary,
                              .reason = summary,
                              .ev = ev});
out:
    json_decref(facts);
    return rc;
}

int ie_on_drill(sc_ctx_t *ctx, ie_state_t *st, const sc_event_t *ev)
{
    (void)st;
    const json_t *d = ev->data;
    const char *drill = sc_json_str(d, "drill"), *kind = sc_json_str(d, "kind");
    const char *school = ev->school ? ev->school : "";
    char now_s[SC_TIME_LEN], gen[48], starts[SC_TIME_LEN], ends[SC_TIME_LEN];
    sc_time_t now = sc_now(ctx);
    sc_time_t s = sc_json_time(d, "starts_at", 0), e = sc_json_time(d, "ends_at", 0);
    sc_time_format(now, now_s);
    if (s)
        sc_time_format(s, starts);
    if (e)
        sc_time_format(e, ends);
    if (strcmp(ev->type, "drill.scheduled") == 0) {
        if (!drill || !s || !e || e <= s) {
            SC_LOG_WARN(ctx,
                        "drill.scheduled (event %" PRId64 ") needs drill, starts_at < ends_at: "
                        "ignored",
                        ev->id);
            return 0;
        }
        const char *p[] = {school, drill, kind, starts, ends};
        return ie_exec(ctx,
                       "INSERT INTO incident.drills (school, drill, kind, starts_at, ends_at) "
                       "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (school, drill) DO UPDATE SET "
                       "kind = coalesce(EXCLUDED.kind, drills.kind), starts_at = "
                       "EXCLUDED.starts_at, ends_at = EXCLUDED.ends_at, cancelled = false",
                       5, p);
    }
    if (strcmp(ev->type, "drill.started") == 0) {
        if (!drill) {
            snprintf(gen, sizeof gen, "drill-%" PRId64, ev->id);
            drill = gen;
        }
        /* A planned end in the event counts; a start in the future does not delay it. */
        const char *p[] = {school, drill, kind, s && s < now ? starts : now_s, e ? ends : NULL};
        return ie_exec(ctx,
                       "INSERT INTO incident.drills (school, drill, kind, started_at, ends_at) "
                       "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (school, drill) DO UPDATE SET "
                       "kind = coalesce(EXCLUDED.kind, drills.kind), started_at = "
                       "EXCLUDED.started_at, ends_at = coalesce(EXCLUDED.ends_at, drills.ends_at), "
                       "ended_at = NULL, cancelled = false",
                       5, p);
    }
    if (strcmp(ev->type, "drill.ended") == 0) {
        /* Without a code: every drill running at that school ends. */
        const char *p[] = {school, drill, now_s};
        return ie_exec(ctx,
                       "UPDATE incident.drills SET ended_at = $3 WHERE school = $1 AND "
                       "ended_at IS NULL AND ($2::text IS NULL OR drill = $2)",
                       3, p);
    }
    if (strcmp(ev->type, "drill.cancelled") == 0 && drill) {
        const char *p[] = {school, drill};
        return ie_exec(ctx,
                       "UPDATE incident.drills SET cancelled = true WHERE school = $1 AND "
                       "drill = $2",
                       2, p);
    }
    return 0; /* other drill records are the ledger plugin's business */
}

int ie_on_silence(sc_ctx_t *ctx, ie_state_t *st, const sc_event_t *ev)
{
    const char *code = sc_json_str(ev->data, "silence");
    char now_s[SC_TIME_LEN], starts[SC_TIME_LEN], ends[SC_TIME_LEN], evs[24];
    sc_time_t now = sc_now(ctx);
    int rc;
    sc_time_format(now, now_s);
    if (s_eq(ev->type, "silence.cancelled")) {
        const char *p[] = {code, now_s};
        PGresult *res = ie_sql(ctx,
                               "UPDATE incident.silences SET status = 'cancelled', closed_at = $2 "
                               "WHERE silence = $1 AND status = 'active' RETURNING silence",
                               2, p, &rc);
        if (!res)
            return rc;
        int n = PQntuples(res);
        PQclear(res);
        return n ? 0 : ie_reject(ctx, ev, "silence", code, "silence: unknown or no longer active");
    }
    if (!s_eq(ev->type, "silence.created"))
        return 0;
    sc_time_t s = sc_json_time(ev->data, "starts_at", now),
              e = sc_json_time(ev->data, "ends_at", 0);
    if (e <= now)
        return ie_reject(ctx, ev, "silence", code, "data.ends_at: already past");
    if ((e - s) / SC_USEC_PER_SEC > st->silence_max) {
        char why[120];
        snprintf(why, sizeof why, "data.ends_at: a silence may last at most %" PRId64 " s",
                 st->silence_max);
        return ie_reject(ctx, ev, "silence", code, why);
    }
    if (!ev->school && !ev->district)
        return ie_reject(ctx, ev, "silence", code, "school: a silence needs a school or district");
    char *matcher = json_dumps(json_object_get(ev->data, "matcher"), JSON_COMPACT);
    snprintf(evs, sizeof evs, "%" PRId64, ev->id);
    const char *p[] = {code,
                       ev->school,
                       ev->school ? NULL : ev->district,
                       sc_time_format(s, starts),
                       sc_time_format(e, ends),
                       matcher,
                       sc_json_str(ev->data, "reason"),
                       sc_json_str(ev->data, "by") ? sc_json_str(ev->data, "by") : ev->actor,
                       evs};
    PGresult *res = ie_sql(ctx,
                           "INSERT INTO incident.silences (silence, school, district, starts_at, "
                           "ends_at, matcher, reason, created_by, event) VALUES ($1, $2, $3, $4, "
                           "$5, $6::jsonb, $7, $8, $9) ON CONFLICT (silence) DO NOTHING "
                           "RETURNING silence",
                           9, p, &rc);
    free(matcher);
    if (!res)
        return rc;
    int n = PQntuples(res);
    PQclear(res);
    if (!n)
        return ie_reject(ctx, ev, "silence", code, "silence: already exists");
    SC_LOG_INFO(ctx, "silence %s until %s: %s", code, ends, sc_json_str(ev->data, "reason"));
    return 0;
}

/* Resolves the open alerts that `ev` resolves under some policy's resolve_on. */
static int s_resolvers(sc_ctx_t *ctx, ie_state_t *st, const sc_event_t *ev)
{
    json_t *facts = s_facts("event", ev);
    size_t i;
    const json_t *policy;
    int rc = 0;
    if (!facts)
        return -ENOMEM;
    json_array_foreach(st->policies, i, policy)
    {
        const json_t *on = json_object_get(policy, "resolve_on");
        char subject[256], key[512], summary[200];
        if (!json_array_size(on) || !ie_match(on, facts))
            continue;
        ie_subject(policy, ev->data, subject, sizeof subject);
        if (!subject[0])
            continue; /* never close a whole school's alerts on a subject-less event */
        s_group_key(policy, ev->school, subject, key, sizeof key);
        const char *p[] = {key};
        PGresult *res = ie_sql(ctx,
                               "SELECT code FROM incident.escalations WHERE group_key = $1 "
                               "AND status <> 'resolved' ORDER BY code",
                               1, p, &rc);
        if (!res)
            break;
        snprintf(summary, sizeof summary, "resolved by %s (event %" PRId64 ")", ev->type, ev->id);
        for (int r = 0; r < PQntuples(res) && rc == 0; r++)
            rc = ie_resolve(ctx, st, PQgetvalue(res, r, 0), sc_now(ctx),
                            ev->actor ? ev->actor : ev->source, summary, ev->id);
        PQclear(res);
        if (rc < 0)
            break;
    }
    json_decref(facts);
    return rc;
}

int ie_on_other(sc_ctx_t *ctx, ie_state_t *st, const sc_event_t *ev)
{
    int rc = s_resolvers(ctx, st, ev);
    if (rc < 0)
        return rc;
    json_t *facts = s_facts("alert", ev);
    if (!facts)
        return -ENOMEM;
    rc = s_alert(ctx, st, ev, facts);
    json_decref(facts);
    return rc;
}
