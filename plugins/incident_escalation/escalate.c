/* The escalation machinery: levels told, notifications, acknowledgements, resolution, timers. */
#include "ie.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_USEC SC_USEC_PER_SEC

static bool s_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static const char *s_kind_zh(const char *kind)
{
    static const char *const map[][2] = {
        {"injury", "伤害"},
        {"fire", "火灾"},
        {"drowning", "溺水"},
        {"traffic", "交通事故"},
        {"food_poisoning", "食物中毒"},
        {"infectious_disease", "传染病"},
        {"violence", "暴力"},
        {"bullying", "欺凌"},
        {"intrusion", "非法闯入"},
        {"natural_disaster", "自然灾害"},
        {"building", "校舍安全"},
        {"other", "其他"},
    };
    for (size_t i = 0; kind && i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i][0], kind) == 0)
            return map[i][1];
    return "";
}

/* The level definition (borrowed) of an escalation's chain, or NULL. */
static const json_t *s_level_def(const json_t *esc, int level)
{
    const json_t *levels = json_object_get(json_object_get(esc, "chain"), "levels");
    return level >= 1 ? json_array_get(levels, (size_t)level - 1) : NULL;
}

static int s_nlevels(const json_t *esc)
{
    return (int)json_array_size(json_object_get(json_object_get(esc, "chain"), "levels"));
}

static bool s_grave(const json_t *esc)
{
    const char *sev = sc_json_str(esc, "severity");
    return s_eq(sev, "I") || s_eq(sev, "II") || sc_json_int(esc, "dead", 0) > 0 ||
           sc_json_int(esc, "injured", 0) > 0;
}

/* ---- people ---- */

/* Appends person p (borrowed) as {"person","role","contacts"} unless already in out. */
static void s_add_person(json_t *out, const json_t *p, const char *role)
{
    const char *code = sc_json_str(p, "person");
    size_t i;
    const json_t *have;
    if (!code)
        return;
    json_array_foreach(out, i, have) if (s_eq(sc_json_str(have, "person"), code)) return;
    const json_t *contacts = json_object_get(p, "contacts");
    json_array_append_new(out,
                          json_pack("{s:s, s:s, s:O}", "person", code, "role", role, "contacts",
                                    json_is_object(contacts) ? contacts : json_object()));
}

/*
 * Resolves role names to the people holding them for an escalation's school, district or
 * class: "person:<code>", "class_head_teacher", "district:<role>", "school:<role>", roles
 * starting with "district_" (district), anything else (school). Returns a new reference to an
 * array of {"person","role","contacts"}, or NULL on a directory (database) error.
 */
static json_t *s_resolve(sc_ctx_t *ctx, const json_t *esc, const json_t *roles)
{
    const char *school = sc_json_str(esc, "school"), *district = sc_json_str(esc, "district");
    const char *klass = sc_json_str(esc, "class");
    json_t *out = json_array();
    size_t i;
    const json_t *r;
    json_array_foreach(roles, i, r)
    {
        const char *role = json_string_value(r);
        json_t *found = NULL;
        if (!role)
            continue;
        if (strncmp(role, "person:", 7) == 0) {
            json_t *p = ctx->host->person(ctx, role + 7);
            found = json_array();
            if (p)
                json_array_append_new(found, p);
        } else if (s_eq(role, "class_head_teacher") || s_eq(role, "head_teacher_of_class")) {
            found = json_array();
            json_t *c = school && klass ? ctx->host->school_class(ctx, school, klass) : NULL;
            const char *ht = sc_json_str(c, "head_teacher");
            json_t *p = ht ? ctx->host->person(ctx, ht) : NULL;
            if (p)
                json_array_append_new(found, p);
            json_decref(c);
        } else if (strncmp(role, "district:", 9) == 0) {
            found = district ? ctx->host->people_with_role(ctx, NULL, district, role + 9)
                             : json_array();
        } else if (strncmp(role, "school:", 7) == 0) {
            found =
                school ? ctx->host->people_with_role(ctx, school, NULL, role + 7) : json_array();
        } else if (strncmp(role, "district_", 9) == 0) {
            found =
                district ? ctx->host->people_with_role(ctx, NULL, district, role) : json_array();
        } else {
            found = school ? ctx->host->people_with_role(ctx, school, NULL, role) : json_array();
        }
        if (!found) {
            json_decref(out);
            return NULL;
        }
        size_t j;
        const json_t *p;
        json_array_foreach(found, j, p) s_add_person(out, p, role);
        json_decref(found);
    }
    return out;
}

/* 1 when `person` is among people (an s_resolve result), else 0. */
static int s_among(const json_t *people, const char *person)
{
    size_t i;
    const json_t *p;
    json_array_foreach(people, i, p) if (s_eq(sc_json_str(p, "person"), person)) return 1;
    return 0;
}

/* The channels to use for a person's contacts, in preference order (new reference). */
static json_t *s_channels(const ie_state_t *st, const json_t *contacts)
{
    json_t *out = json_array();
    size_t i;
    const json_t *c;
    json_array_foreach(st->channels, i, c)
    {
        const char *ch = json_string_value(c);
        const char *field = s_eq(ch, "sms") ? "phone" : ch;
        const char *addr = field ? sc_json_str(contacts, field) : NULL;
        if (!addr || !*addr)
            continue;
        json_array_append_new(out, json_string(ch));
        if (!st->channel_all)
            break;
    }
    return out;
}

/* ---- messages ---- */

/*
 * Builds the subject and body of a notification about esc (new strings the caller frees).
 * purpose: "escalation", "repeat", "report" or "resolved". Returns 0 or -ENOMEM.
 */
static int s_message(sc_ctx_t *ctx, const json_t *esc, const char *purpose, int level, int n,
                     const char *reason, char **subject, char **body)
{
    const char *code = sc_json_str(esc, "code"), *school = sc_json_str(esc, "school");
    bool incident = s_eq(sc_json_str(esc, "sort"), "incident");
    json_t *s = school ? ctx->host->school(ctx, school) : NULL;
    const char *sname = sc_json_str(s, "name");
    char where[200];
    snprintf(where, sizeof where, "%s%s%s%s", sname ? sname : "", sname ? " (" : "",
             school                         ? school
             : sc_json_str(esc, "district") ? sc_json_str(esc, "district")
                                            : "-",
             sname ? ")" : "");
    size_t slen = 0, blen = 0;
    FILE *fs = open_memstream(subject, &slen), *fb = open_memstream(body, &blen);
    if (!fs || !fb) {
        if (fs)
            fclose(fs), free(*subject);
        if (fb)
            fclose(fb), free(*body);
        json_decref(s);
        return -ENOMEM;
    }

    const char *tag = s_eq(purpose, "report")     ? "[书面报告逾期 report overdue] "
                      : s_eq(purpose, "resolved") ? "[已处置 resolved] "
                      : incident                  ? "[事故上报 incident] "
                                                  : "[预警 alert] ";
    if (incident)
        fprintf(fs, "%s%s at %s: %s %s, severity %s", tag, code, where,
                s_kind_zh(sc_json_str(esc, "kind")),
                sc_json_str(esc, "kind") ? sc_json_str(esc, "kind") : "",
                sc_json_str(esc, "severity") ? sc_json_str(esc, "severity") : "-");
    else
        fprintf(fs, "%s%s at %s: %s %s", tag, sc_json_str(esc, "origin"), where,
                sc_json_str(esc, "subject") ? sc_json_str(esc, "subject") : "", code);
    if (s_eq(purpose, "escalation") || s_eq(purpose, "repeat"))
        fprintf(fs, " - level %d", level);
    if (n > 0)
        fprintf(fs, " (%s %d)", s_eq(purpose, "report") ? "chase" : "repeat", n);

    fprintf(fb, "%s %s\nSchool 学校: %s\n", incident ? "Incident 事故" : "Alert 预警", code, where);
    if (incident) {
        fprintf(fb, "Kind 类别: %s %s\nSeverity 等级: %s\n", s_kind_zh(sc_json_str(esc, "kind")),
                sc_json_str(esc, "kind") ? sc_json_str(esc, "kind") : "-",
                sc_json_str(esc, "severity") ? sc_json_str(esc, "severity") : "-");
        fprintf(fb,
                "Casualties 伤亡: dead %" JSON_INTEGER_FORMAT ", injured %" JSON_INTEGER_FORMAT
                "\n",
                sc_json_int(esc, "dead", 0), sc_json_int(esc, "injured", 0));
        if (sc_json_str(esc, "location"))
            fprintf(fb, "Location 地点: %s\n", sc_json_str(esc, "location"));
        if (sc_json_str(esc, "summary"))
            fprintf(fb, "Summary 概况: %s\n", sc_json_str(esc, "summary"));
    } else {
        char *d = json_dumps(json_object_get(esc, "data"), JSON_COMPACT | JSON_SORT_KEYS);
        fprintf(fb, "Type 类型: %s\nSubject 对象: %s\nCount 次数: %" JSON_INTEGER_FORMAT "\n",
                sc_json_str(esc, "origin"),
                sc_json_str(esc, "subject") ? sc_json_str(esc, "subject") : "-",
                sc_json_int(esc, "count", 1));
        if (d)
            fprintf(fb, "Details 详情: %s\n", d);
        free(d);
    }
    fprintf(fb, "Occurred 时间: %s\n",
            sc_json_str(esc, "occurred_at") ? sc_json_str(esc, "occurred_at") : "-");
    if (reason)
        fprintf(fb, "Why you 通知原因: %s\n", reason);
    if (s_eq(purpose, "escalation") || s_eq(purpose, "repeat"))
        fprintf(fb,
                "Please acknowledge 请确认收到: incident.acknowledged {\"incident\": \"%s\", "
                "\"by\": <your code>}\n",
                code);
    else if (s_eq(purpose, "report"))
        fprintf(fb,
                "Submit the written report 请提交书面报告: incident.report.submitted "
                "{\"incident\": \"%s\", \"by\": <your code>}\n",
                code);
    fclose(fs);
    fclose(fb);
    json_decref(s);
    return 0;
}

/* ---- notifications ---- */

/*
 * Requests one notification per usable channel of `person` (an s_resolve entry): a row in
 * incident.notifications (code "n-" + md5 of escalation/level/person/channel/purpose/n, so a
 * replay asks for the same one), notification.requested, a timeline entry. *sent counts them.
 */
static int s_notify(sc_ctx_t *ctx, ie_state_t *st, const json_t *esc, int level,
                    const char *purpose, int n, sc_time_t at, const json_t *person,
                    const char *subject, const char *body, int *sent)
{
    const char *code = sc_json_str(esc, "code"), *who = sc_json_str(person, "person");
    json_t *channels = s_channels(st, json_object_get(person, "contacts"));
    char when[SC_TIME_LEN], lv[16], ns[16];
    int rc = 0;
    size_t i;
    const json_t *c;
    *sent = 0;
    sc_time_format(at, when);
    snprintf(lv, sizeof lv, "%d", level);
    snprintf(ns, sizeof ns, "%d", n);
    json_array_foreach(channels, i, c)
    {
        const char *ch = json_string_value(c);
        char key[512];
        snprintf(key, sizeof key, "%s/%d/%s/%s/%s/%d", code, level, who, ch, purpose, n);
        const char *p[] = {key, code, lv, who, ch, purpose, ns, when};
        PGresult *res = ie_sql(
            ctx,
            "INSERT INTO incident.notifications (notification, code, level, person, channel, "
            "purpose, n, requested_at) VALUES ('n-' || md5($1), $2, $3, $4, $5, $6, $7, $8) "
            "ON CONFLICT (notification) DO NOTHING RETURNING notification",
            8, p, &rc);
        if (!res)
            goto out;
        if (PQntuples(res) == 0) {
            PQclear(res);
            (*sent)++; /* asked for before: it still counts as a way to reach them */
            continue;
        }
        char notif[64];
        snprintf(notif, sizeof notif, "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
        json_t *data = json_pack(
            "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:s}", "notification", notif, "person",
            who, "channel", ch, "subject", subject, "body", body, "ref", code, "incident", code,
            "level", level, "purpose", purpose, "priority", s_grave(esc) ? "urgent" : "normal");
        if (!data) {
            rc = -ENOMEM;
            goto out;
        }
        rc = sc_emit(ctx, &(sc_emit_t){.type = "notification.requested",
                                       .school = sc_json_str(esc, "school"),
                                       .district = sc_json_str(esc, "district"),
                                       .id = notif,
                                       .occurred_at = at,
                                       .data = data});
        json_decref(data);
        if (rc < 0)
            goto out;
        json_t *detail = json_pack("{s:s, s:s, s:s, s:i}", "notification", notif, "channel", ch,
                                   "purpose", purpose, "n", n);
        rc = ie_timeline(ctx, code, at, "notified", level, who, detail, 0);
        json_decref(detail);
        if (rc < 0)
            goto out;
        (*sent)++;
    }
out:
    json_decref(channels);
    return rc;
}

/* Sets status from the levels: open while a told level is unacknowledged (or none told). */
static int s_refresh_status(sc_ctx_t *ctx, const char *code)
{
    const char *p[] = {code};
    return ie_exec(ctx,
                   "UPDATE incident.escalations e SET status = CASE "
                   "WHEN NOT EXISTS (SELECT 1 FROM incident.levels l WHERE l.code = e.code) "
                   "  THEN 'open' "
                   "WHEN EXISTS (SELECT 1 FROM incident.levels l WHERE l.code = e.code "
                   "  AND l.acked_at IS NULL) THEN 'open' ELSE 'acknowledged' END "
                   "WHERE code = $1 AND status <> 'resolved'",
                   1, p);
}

/* Emits incident.escalated for one step. */
static int s_escalated(sc_ctx_t *ctx, const json_t *esc, int level, const json_t *targets,
                       const char *cause, const char *reason, int repeat, sc_time_t at)
{
    const char *code = sc_json_str(esc, "code");
    json_t *data =
        json_pack("{s:s, s:s, s:i, s:O, s:s, s:s, s:i, s:s}", "incident", code, "sort",
                  sc_json_str(esc, "sort"), "level", level, "targets", targets, "reason", reason,
                  "cause", cause, "repeat", repeat, "policy", sc_json_str(esc, "policy"));
    if (!data)
        return -ENOMEM;
    if (s_eq(sc_json_str(esc, "sort"), "alert")) {
        json_object_set_new(data, "alert", json_string(code));
        json_object_set_new(data, "type", json_string(sc_json_str(esc, "origin")));
    }
    int rc = sc_emit(ctx, &(sc_emit_t){.type = "incident.escalated",
                                       .school = sc_json_str(esc, "school"),
                                       .district = sc_json_str(esc, "district"),
                                       .occurred_at = at,
                                       .data = data});
    json_decref(data);
    return rc;
}

/* Person codes of an s_resolve result (new reference). */
static json_t *s_codes(const json_t *people)
{
    json_t *out = json_array();
    size_t i;
    const json_t *p;
    json_array_foreach(people, i, p)
        json_array_append_new(out, json_string(sc_json_str(p, "person")));
    return out;
}

static void s_fmt_duration(int64_t secs, char *buf, size_t len)
{
    if (secs % 3600 == 0 && secs >= 3600)
        snprintf(buf, len, "%" PRId64 "h", secs / 3600);
    else if (secs % 60 == 0 && secs >= 60)
        snprintf(buf, len, "%" PRId64 "m", secs / 60);
    else
        snprintf(buf, len, "%" PRId64 "s", secs);
}

int ie_tell(sc_ctx_t *ctx, ie_state_t *st, const char *code, int level, sc_time_t at,
            const char *cause, const char *reason, int64_t event)
{
    json_t *esc = NULL, *people = NULL, *codes = NULL, *unreachable = NULL;
    char *subject = NULL, *body = NULL;
    PGresult *res = NULL;
    int rc = ie_load(ctx, code, &esc);
    if (rc < 0 || !esc || s_eq(sc_json_str(esc, "status"), "resolved"))
        goto out;
    const json_t *def = s_level_def(esc, level);
    if (!def)
        goto out;

    int64_t ack = sc_json_int(def, "ack_within", 900), every = sc_json_int(def, "repeat_every", 0);
    int64_t max = sc_json_int(def, "repeat_max", 0);
    char when[SC_TIME_LEN], due[SC_TIME_LEN], rep[SC_TIME_LEN], lv[16];
    char *roles = json_dumps(json_object_get(def, "roles"), JSON_COMPACT);
    snprintf(lv, sizeof lv, "%d", level);
    sc_time_format(at, when);
    sc_time_format(at + ack * S_USEC, due);
    sc_time_format(at + every * S_USEC, rep);
    const char *p[] = {code, lv, roles, cause, when, due, every > 0 && max > 0 ? rep : NULL};
    res = ie_sql(ctx,
                 "INSERT INTO incident.levels (code, level, roles, cause, told_at, ack_due, "
                 "next_repeat_at) VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7) "
                 "ON CONFLICT (code, level) DO NOTHING RETURNING level",
                 7, p, &rc);
    free(roles);
    if (!res || PQntuples(res) == 0)
        goto out; /* told before: nothing to do */

    if (!(people = s_resolve(ctx, esc, json_object_get(def, "roles")))) {
        rc = -EAGAIN;
        goto out;
    }
    codes = s_codes(people);
    size_t i;
    const json_t *person;
    json_array_foreach(people, i, person)
    {
        const char *tp[] = {code, lv, sc_json_str(person, "person"), sc_json_str(person, "role"),
                            when};
        if ((rc = ie_exec(ctx,
                          "INSERT INTO incident.targets (code, level, person, role, told_at) "
                          "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                          5, tp)) < 0)
            goto out;
    }
    if ((rc = s_escalated(ctx, esc, level, codes, cause, reason, 0, at)) < 0)
        goto out;
    json_t *detail = json_pack("{s:O, s:s, s:s, s:O}", "targets", codes, "cause", cause, "reason",
                               reason, "roles", json_object_get(def, "roles"));
    rc = ie_timeline(ctx, code, at, "escalated", level, NULL, detail, event);
    json_decref(detail);
    if (rc < 0)
        goto out;
    if ((rc = s_message(ctx, esc, "escalation", level, 0, reason, &subject, &body)) < 0)
        goto out;

    unreachable = json_array();
    json_array_foreach(people, i, person)
    {
        int sent = 0;
        const char *who = sc_json_str(person, "person");
        if ((rc = s_notify(ctx, st, esc, level, "escalation", 0, at, person, subject, body,
                           &sent)) < 0)
            goto out;
        if (sent)
            continue;
        json_array_append_new(unreachable, json_string(who));
        const char *up[] = {code, lv, who, when};
        if ((rc = ie_exec(ctx,
                          "UPDATE incident.targets SET unreachable_at = $4, unreachable = "
                          "'no usable contact' WHERE code = $1 AND level = $2 AND person = $3",
                          4, up)) < 0)
            goto out;
        json_t *ud = json_pack("{s:s}", "reason", "no usable contact");
        rc = ie_timeline(ctx, code, at, "unreachable", level, who, ud, 0);
        json_decref(ud);
        if (rc < 0)
            goto out;
    }
    if ((rc = s_refresh_status(ctx, code)) < 0)
        goto out;

    /* Nobody at this level can be reached: the level above is told at once. */
    if (json_array_size(people) == 0 || json_array_size(unreachable) > 0) {
        char why[300];
        if (json_array_size(people) == 0) {
            json_t *nd = json_pack("{s:s, s:O}", "reason", "nobody holds these roles", "roles",
                                   json_object_get(def, "roles"));
            rc = ie_timeline(ctx, code, at, "unreachable", level, NULL, nd, 0);
            json_decref(nd);
            if (rc < 0)
                goto out;
            snprintf(why, sizeof why, "nobody holds the roles of level %d", level);
        } else {
            snprintf(why, sizeof why, "%s at level %d cannot be reached (no usable contact)",
                     json_string_value(json_array_get(unreachable, 0)), level);
        }
        if (level < s_nlevels(esc))
            rc = ie_tell(ctx, st, code, level + 1, at, "failover", why, event);
    }
out:
    PQclear(res);
    free(subject);
    free(body);
    json_decref(esc);
    json_decref(people);
    json_decref(codes);
    json_decref(unreachable);
    return rc;
}

/* ---- timers ---- */

/* A level's acknowledgement deadline passed: the level above is told (once). */
static int s_ack_timeout(sc_ctx_t *ctx, ie_state_t *st, const char *code, int level, sc_time_t due)
{
    json_t *esc = NULL;
    char lv[16], nx[16];
    snprintf(lv, sizeof lv, "%d", level);
    snprintf(nx, sizeof nx, "%d", level + 1);
    const char *p[] = {code, lv};
    int rc = ie_exec(
        ctx, "UPDATE incident.levels SET deadline_done = true WHERE code = $1 AND level = $2", 2,
        p);
    if (rc < 0 || (rc = ie_load(ctx, code, &esc)) < 0 || !esc)
        goto out;
    const json_t *def = s_level_def(esc, level);
    char within[32], why[160];
    s_fmt_duration(sc_json_int(def, "ack_within", 0), within, sizeof within);
    snprintf(why, sizeof why, "level %d did not acknowledge within %s", level, within);

    const char *np[] = {code, nx};
    int told_above = 0;
    if (level < s_nlevels(esc)) {
        PGresult *res =
            ie_sql(ctx, "SELECT 1 FROM incident.levels WHERE code = $1 AND level = $2", 2, np, &rc);
        if (!res)
            goto out;
        told_above = PQntuples(res) > 0;
        PQclear(res);
    }
    json_t *detail = json_pack("{s:s, s:b, s:b}", "reason", why, "top_level",
                               level >= s_nlevels(esc), "next_already_told", told_above);
    rc = ie_timeline(ctx, code, due, "ack_timeout", level, NULL, detail, 0);
    json_decref(detail);
    if (rc < 0)
        goto out;
    if (level < s_nlevels(esc) && !told_above)
        rc = ie_tell(ctx, st, code, level + 1, due, "timeout", why, 0);
out:
    json_decref(esc);
    return rc;
}

/* A level is still unacknowledged at its repeat instant: its people are told again. */
static int s_repeat(sc_ctx_t *ctx, ie_state_t *st, const char *code, int level, sc_time_t due)
{
    json_t *esc = NULL, *codes = json_array();
    char *subject = NULL, *body = NULL;
    PGresult *res = NULL;
    char lv[16], when[SC_TIME_LEN], nextt[SC_TIME_LEN], maxs[16];
    int rc = ie_load(ctx, code, &esc);
    if (rc < 0 || !esc)
        goto out;
    const json_t *def = s_level_def(esc, level);
    int64_t every = sc_json_int(def, "repeat_every", 0), max = sc_json_int(def, "repeat_max", 0);
    snprintf(lv, sizeof lv, "%d", level);
    snprintf(maxs, sizeof maxs, "%" PRId64, def ? max : 0);
    sc_time_format(due, when);
    sc_time_format(due + every * S_USEC, nextt);
    const char *p[] = {code, lv, every > 0 ? nextt : NULL, maxs};
    res = ie_sql(
        ctx,
        "UPDATE incident.levels SET repeats = repeats + 1, next_repeat_at = "
        "CASE WHEN $3::timestamptz IS NOT NULL AND repeats + 1 < $4::int THEN $3::timestamptz END "
        "WHERE code = $1 AND level = $2 RETURNING repeats",
        4, p, &rc);
    if (!res || PQntuples(res) == 0)
        goto out;
    int n = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    res = NULL;
    if (!def || n > max)
        goto out; /* the chain changed under it: stop repeating */

    const char *tp[] = {code, lv};
    res = ie_sql(ctx,
                 "SELECT person FROM incident.targets WHERE code = $1 AND level = $2 "
                 "AND unreachable_at IS NULL ORDER BY person",
                 2, tp, &rc);
    if (!res)
        goto out;
    for (int i = 0; i < PQntuples(res); i++)
        json_array_append_new(codes, json_string(PQgetvalue(res, i, 0)));
    PQclear(res);
    res = NULL;

    char why[160];
    snprintf(why, sizeof why, "repeat %d: level %d has not acknowledged", n, level);
    if ((rc = s_escalated(ctx, esc, level, codes, "repeat", why, n, due)) < 0)
        goto out;
    json_t *detail = json_pack("{s:i, s:O}", "repeat", n, "targets", codes);
    rc = ie_timeline(ctx, code, due, "repeated", level, NULL, detail, 0);
    json_decref(detail);
    if (rc < 0 || (rc = s_message(ctx, esc, "repeat", level, n, why, &subject, &body)) < 0)
        goto out;
    size_t i;
    const json_t *c;
    json_array_foreach(codes, i, c)
    {
        json_t *person = ctx->host->person(ctx, json_string_value(c));
        json_t *entry = json_array();
        int sent = 0;
        if (person)
            s_add_person(entry, person, "");
        if (json_array_size(entry))
            rc = s_notify(ctx, st, esc, level, "repeat", n, due, json_array_get(entry, 0), subject,
                          body, &sent);
        json_decref(person);
        json_decref(entry);
        if (rc < 0)
            goto out;
    }
out:
    PQclear(res);
    free(subject);
    free(body);
    json_decref(esc);
    json_decref(codes);
    return rc;
}

/* The written report is late: incident.report.overdue and a chase to the report roles. */
static int s_report_chase(sc_ctx_t *ctx, ie_state_t *st, const char *code, sc_time_t due)
{
    json_t *esc = NULL, *people = NULL, *data = NULL;
    char *subject = NULL, *body = NULL;
    PGresult *res = NULL;
    char nextt[SC_TIME_LEN], maxs[16];
    int rc = ie_load(ctx, code, &esc);
    if (rc < 0 || !esc)
        goto out;
    const json_t *chain = json_object_get(esc, "chain");
    int64_t every = sc_json_int(chain, "report_chase_every", 1800);
    snprintf(maxs, sizeof maxs, "%" JSON_INTEGER_FORMAT, sc_json_int(chain, "report_chase_max", 8));
    sc_time_format(due + (every > 0 ? every : 1800) * S_USEC, nextt);
    const char *p[] = {code, nextt, maxs};
    res = ie_sql(ctx,
                 "UPDATE incident.escalations SET report_chases = report_chases + 1, "
                 "report_next_at = CASE WHEN report_chases + 1 < $3::int THEN $2::timestamptz END "
                 "WHERE code = $1 RETURNING report_chases, incident.rfc3339(report_due_at, tz), "
                 "report_due_at",
                 3, p, &rc);
    if (!res || PQntuples(res) == 0)
        goto out;
    int n = atoi(PQgetvalue(res, 0, 0));
    sc_time_t due_at = sc_pq_time(res, 0, 2, due);
    data = json_pack("{s:s, s:s, s:i, s:I}", "incident", code, "due_at", PQgetvalue(res, 0, 1),
                     "chase", n, "overdue_seconds", (json_int_t)((due - due_at) / S_USEC));
    PQclear(res);
    res = NULL;
    if (!data) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = sc_emit(ctx, &(sc_emit_t){.type = "incident.report.overdue",
                                        .school = sc_json_str(esc, "school"),
                                        .district = sc_json_str(esc, "district"),
                                        .occurred_at = due,
                                        .data = data})) < 0)
        goto out;
    if (!(people = s_resolve(ctx, esc, json_object_get(chain, "report_roles")))) {
        rc = -EAGAIN;
        goto out;
    }
    json_t *codes = s_codes(people);
    json_object_set_new(data, "targets", codes);
    if ((rc = ie_timeline(ctx, code, due, "report_overdue", 0, NULL, data, 0)) < 0)
        goto out;
    char why[120];
    snprintf(why, sizeof why, "the written report was due at %s", sc_json_str(data, "due_at"));
    if ((rc = s_message(ctx, esc, "report", 0, n, why, &subject, &body)) < 0)
        goto out;
    size_t i;
    const json_t *person;
    json_array_foreach(people, i, person)
    {
        int sent;
        if ((rc = s_notify(ctx, st, esc, 0, "report", n, due, person, subject, body, &sent)) < 0)
            goto out;
    }
out:
    PQclear(res);
    free(subject);
    free(body);
    json_decref(esc);
    json_decref(people);
    json_decref(data);
    return rc;
}

/* A silence reached its end: silence.expired. */
static int s_silence_expired(sc_ctx_t *ctx, const char *silence, sc_time_t due)
{
    char when[SC_TIME_LEN];
    const char *p[] = {silence, sc_time_format(due, when)};
    int rc;
    PGresult *res = ie_sql(ctx,
                           "UPDATE incident.silences SET status = 'expired', closed_at = $2 "
                           "WHERE silence = $1 AND status = 'active' "
                           "RETURNING school, district, reason, suppressed, matcher",
                           2, p, &rc);
    if (!res || PQntuples(res) == 0)
        goto out;
    json_t *matcher = sc_pq_value(res, 0, 4);
    json_t *data = json_pack("{s:s, s:s, s:s, s:i, s:o}", "silence", silence, "ends_at", when,
                             "reason", PQgetvalue(res, 0, 2), "suppressed",
                             atoi(PQgetvalue(res, 0, 3)), "matcher", matcher);
    if (!data) {
        rc = -ENOMEM;
        goto out;
    }
    rc =
        sc_emit(ctx, &(sc_emit_t){.type = "silence.expired",
                                  .school = PQgetisnull(res, 0, 0) ? NULL : PQgetvalue(res, 0, 0),
                                  .district = PQgetisnull(res, 0, 1) ? NULL : PQgetvalue(res, 0, 1),
                                  .occurred_at = due,
                                  .data = data});
    json_decref(data);
    SC_LOG_INFO(ctx, "silence %s expired", silence);
out:
    PQclear(res);
    return rc;
}

int ie_tick(sc_ctx_t *ctx, ie_state_t *st, sc_time_t now, sc_time_t *next)
{
    static const char due_sql[] =
        "SELECT kind, code, level, due FROM ("
        " SELECT 'ack'::text AS kind, l.code, l.level, l.ack_due AS due"
        "   FROM incident.levels l JOIN incident.escalations e USING (code)"
        "  WHERE e.status <> 'resolved' AND l.acked_at IS NULL AND NOT l.deadline_done"
        " UNION ALL"
        " SELECT 'repeat', l.code, l.level, l.next_repeat_at"
        "   FROM incident.levels l JOIN incident.escalations e USING (code)"
        "  WHERE e.status <> 'resolved' AND l.acked_at IS NULL AND l.next_repeat_at IS NOT NULL"
        " UNION ALL"
        " SELECT 'report', code, 0, report_next_at FROM incident.escalations"
        "  WHERE report_submitted_at IS NULL AND report_next_at IS NOT NULL"
        " UNION ALL"
        " SELECT 'silence', silence, 0, ends_at FROM incident.silences WHERE status = 'active'"
        ") d ORDER BY due, kind, code, level LIMIT 1";
    int rc = 0;
    *next = SC_TIME_NEVER;
    /* One item at a time, earliest first: handling one may create others due before now. */
    for (int guard = 0; guard < 100000; guard++) {
        PGresult *res = ie_sql(ctx, due_sql, 0, NULL, &rc);
        if (!res)
            return rc;
        if (PQntuples(res) == 0) {
            PQclear(res);
            return 0;
        }
        sc_time_t due = sc_pq_time(res, 0, 3, SC_TIME_NEVER);
        if (due > now) {
            *next = due;
            PQclear(res);
            return 0;
        }
        char kind[16], code[256];
        snprintf(kind, sizeof kind, "%s", PQgetvalue(res, 0, 0));
        snprintf(code, sizeof code, "%s", PQgetvalue(res, 0, 1));
        int level = atoi(PQgetvalue(res, 0, 2));
        PQclear(res);
        if (s_eq(kind, "ack"))
            rc = s_ack_timeout(ctx, st, code, level, due);
        else if (s_eq(kind, "repeat"))
            rc = s_repeat(ctx, st, code, level, due);
        else if (s_eq(kind, "report"))
            rc = s_report_chase(ctx, st, code, due);
        else
            rc = s_silence_expired(ctx, code, due);
        if (rc < 0)
            return rc;
    }
    SC_LOG_WARN(ctx, "tick: more than 100000 items due; continuing at the next tick");
    *next = now;
    return 0;
}

/* ---- acknowledgement, resolution, updates, reports, failed notifications ---- */

/*
 * The highest told level whose people (recorded targets, or current holders of its roles)
 * include `by`: *out_level, 0 when none. Returns 0 or -errno.
 */
static int s_authority(sc_ctx_t *ctx, const json_t *esc, const char *by, bool told_only,
                       int *out_level)
{
    const char *code = sc_json_str(esc, "code");
    const char *p[] = {code, by};
    int rc;
    *out_level = 0;
    PGresult *res = ie_sql(ctx,
                           "SELECT l.level, l.roles, EXISTS (SELECT 1 FROM incident.targets t "
                           "WHERE t.code = l.code AND t.level = l.level AND t.person = $2) "
                           "FROM incident.levels l WHERE l.code = $1 ORDER BY l.level DESC",
                           2, p, &rc);
    if (!res)
        return rc;
    for (int i = 0; i < PQntuples(res) && !*out_level; i++) {
        int level = atoi(PQgetvalue(res, i, 0));
        if (PQgetvalue(res, i, 2)[0] == 't') {
            *out_level = level;
            break;
        }
        json_t *roles = sc_pq_value(res, i, 1);
        json_t *people = s_resolve(ctx, esc, roles);
        json_decref(roles);
        if (!people) {
            PQclear(res);
            return -EAGAIN;
        }
        if (s_among(people, by))
            *out_level = level;
        json_decref(people);
    }
    PQclear(res);
    if (*out_level || told_only)
        return 0;
    /* Any role of the chain, told or not, and the report roles. */
    const json_t *chain = json_object_get(esc, "chain");
    int n = s_nlevels(esc);
    for (int l = n; l >= 0 && !*out_level; l--) {
        const json_t *roles = l > 0 ? json_object_get(s_level_def(esc, l), "roles")
                                    : json_object_get(chain, "report_roles");
        json_t *people = s_resolve(ctx, esc, roles);
        if (!people)
            return -EAGAIN;
        if (s_among(people, by))
            *out_level = l > 0 ? l : 1;
        json_decref(people);
    }
    return 0;
}

int ie_on_ack(sc_ctx_t *ctx, ie_state_t *st, const sc_event_t *ev)
{
    (void)st;
    const char *code = sc_json_str(ev->data, "incident"), *by = sc_json_str(ev->data, "by");
    json_t *esc = NULL, *covered = json_array();
    PGresult *res = NULL;
    sc_time_t now = sc_now(ctx);
    char when[SC_TIME_LEN], lv[16], why[200];
    int level = 0;
    int rc = ie_load(ctx, code, &esc);
    if (rc < 0)
        goto out;
    if (!esc) {
        rc = ie_reject(ctx, ev, "incident", code, "incident: unknown");
        goto out;
    }
    if (s_eq(sc_json_str(esc, "status"), "resolved")) {
        rc = ie_reject(ctx, ev, "incident", code, "incident: already resolved");
        goto out;
    }
    if ((rc = s_authority(ctx, esc, by, true, &level)) < 0)
        goto out;
    if (!level) {
        snprintf(why, sizeof why, "by: %s holds no role of a notified level", by);
        json_t *d = json_pack("{s:s}", "reason", why);
        rc = ie_timeline(ctx, code, now, "ack_rejected", 0, by, d, ev->id);
        json_decref(d);
        if (rc == 0)
            rc = ie_reject(ctx, ev, "incident", code, why);
        goto out;
    }
    snprintf(lv, sizeof lv, "%d", level);
    const char *p[] = {code, lv, sc_time_format(now, when), by};
    res = ie_sql(ctx,
                 "UPDATE incident.levels SET acked_at = $3, acked_by = $4, next_repeat_at = NULL "
                 "WHERE code = $1 AND level <= $2 AND acked_at IS NULL RETURNING level",
                 4, p, &rc);
    if (!res)
        goto out;
    for (int i = 0; i < PQntuples(res); i++)
        json_array_append_new(covered, json_integer(atoi(PQgetvalue(res, i, 0))));
    PQclear(res);
    res = NULL;
    const char *tp[] = {code, by, when}, *ep[] = {code, when};
    if ((rc = ie_exec(ctx,
                      "UPDATE incident.targets SET acked_at = $3 WHERE code = $1 AND person = $2 "
                      "AND acked_at IS NULL",
                      3, tp)) < 0 ||
        (rc = ie_exec(ctx,
                      "UPDATE incident.escalations SET first_ack_at = coalesce(first_ack_at, $2) "
                      "WHERE code = $1",
                      2, ep)) < 0 ||
        (rc = s_refresh_status(ctx, code)) < 0)
        goto out;
    json_t *d = json_pack("{s:O}", "levels", covered);
    if (sc_json_str(ev->data, "note"))
        json_object_set_new(d, "note", json_string(sc_json_str(ev->data, "note")));
    rc = ie_timeline(ctx, code, now, "acknowledged", level, by, d, ev->id);
    json_decref(d);
out:
    PQclear(res);
    json_decref(esc);
    json_decref(covered);
    return rc;
}

int ie_resolve(sc_ctx_t *ctx, ie_state_t *st, const char *code, sc_time_t at, const char *by,
               const char *summary, int64_t event)
{
    json_t *esc = NULL;
    char *subject = NULL, *body = NULL;
    PGresult *res = NULL;
    char when[SC_TIME_LEN];
    const char *p[] = {code, sc_time_format(at, when), by, summary};
    int rc;
    res = ie_sql(ctx,
                 "UPDATE incident.escalations SET status = 'resolved', resolved_at = $2, "
                 "resolved_by = $3, resolution = $4 WHERE code = $1 AND status <> 'resolved' "
                 "RETURNING code",
                 4, p, &rc);
    if (!res || PQntuples(res) == 0)
        goto out;
    PQclear(res);
    res = NULL;
    if ((rc = ie_exec(ctx, "UPDATE incident.levels SET next_repeat_at = NULL WHERE code = $1", 1,
                      p)) < 0)
        goto out;
    json_t *d = json_pack("{s:s?}", "summary", summary);
    rc = ie_timeline(ctx, code, at, "resolved", 0, by, d, event);
    json_decref(d);
    if (rc < 0 || !st->notify_resolved)
        goto out;
    if ((rc = ie_load(ctx, code, &esc)) < 0 || !esc)
        goto out;
    res = ie_sql(ctx,
                 "SELECT DISTINCT person FROM incident.targets WHERE code = $1 "
                 "AND unreachable_at IS NULL ORDER BY person",
                 1, p, &rc);
    if (!res)
        goto out;
    char why[300];
    snprintf(why, sizeof why, "resolved by %s%s%s", by ? by : "-", summary ? ": " : "",
             summary ? summary : "");
    if ((rc = s_message(ctx, esc, "resolved", 0, 0, why, &subject, &body)) < 0)
        goto out;
    for (int i = 0; i < PQntuples(res); i++) {
        json_t *person = ctx->host->person(ctx, PQgetvalue(res, i, 0));
        json_t *entry = json_array();
        int sent;
        if (person)
            s_add_person(entry, person, "");
        if (json_array_size(entry))
            rc = s_notify(ctx, st, esc, 0, "resolved", 0, at, json_array_get(entry, 0), subject,
                          body, &sent);
        json_decref(person);
        json_decref(entry);
        if (rc < 0)
            goto out;
    }
out:
    PQclear(res);
    free(subject);
    free(body);
    json_decref(esc);
    return rc;
}

int ie_on_resolved(sc_ctx_t *ctx, ie_state_t *st, const sc_event_t *ev)
{
    const char *code = sc_json_str(ev->data, "incident"), *by = sc_json_str(ev->data, "by");
    json_t *esc = NULL;
    int level = 0;
    int rc = ie_load(ctx, code, &esc);
    if (rc < 0)
        goto out;
    if (!esc) {
        rc = ie_reject(ctx, ev, "incident", code, "incident: unknown");
        goto out;
    }
    if (s_eq(sc_json_str(esc, "status"), "resolved")) {
        rc = ie_reject(ctx, ev, "incident", code, "incident: already resolved");
        goto out;
    }
    if ((rc = s_authority(ctx, esc, by, false, &level)) < 0)
        goto out;
    if (!level) {
        char why[200];
        snprintf(why, sizeof why, "by: %s holds no role of this escalation's chain", by);
        rc = ie_reject(ctx, ev, "incident", code, why);
        goto out;
    }
    rc = ie_resolve(ctx, st, code, sc_now(ctx), by, sc_json_str(ev->data, "summary"), ev->id);
out:
    json_decref(esc);
    return rc;
}

/* Facts of a stored escalation, for matching policies again after an update (new reference). */
static json_t *s_facts_of(const json_t *esc)
{
    json_t *f =
        json_pack("{s:s, s:s, s:I, s:I, s:O}", "sort", sc_json_str(esc, "sort"), "type",
                  sc_json_str(esc, "origin"), "dead", sc_json_int(esc, "dead", 0), "injured",
                  sc_json_int(esc, "injured", 0), "data", json_object_get(esc, "data"));
    static const char *const keys[] = {"kind", "severity", "school", "district", "subject"};
    for (size_t i = 0; f && i < sizeof keys / sizeof keys[0]; i++)
        if (sc_json_str(esc, keys[i]))
            json_object_set_new(f, keys[i], json_string(sc_json_str(esc, keys[i])));
    return f;
}

int ie_on_updated(sc_ctx_t *ctx, ie_state_t *st, const sc_event_t *ev)
{
    const json_t *d = ev->data, *cas = json_object_get(ev->data, "casualties");
    const char *code = sc_json_str(d, "incident");
    json_t *esc = NULL, *facts = NULL;
    sc_time_t now = sc_now(ctx);
    char when[SC_TIME_LEN], dead[24], injured[24];
    int rc = ie_load(ctx, code, &esc);
    if (rc < 0)
        goto out;
    if (!esc) {
        rc = ie_reject(ctx, ev, "incident", code, "incident: unknown");
        goto out;
    }
    if (s_eq(sc_json_str(esc, "status"), "resolved")) {
        rc = ie_reject(ctx, ev, "incident", code, "incident: already resolved");
        goto out;
    }
    snprintf(dead, sizeof dead, "%" JSON_INTEGER_FORMAT, sc_json_int(cas, "dead", 0));
    snprintf(injured, sizeof injured, "%" JSON_INTEGER_FORMAT, sc_json_int(cas, "injured", 0));
    const char *p[] = {code,
                       sc_json_str(d, "kind"),
                       sc_json_str(d, "severity"),
                       json_object_get(cas, "dead") ? dead : NULL,
                       json_object_get(cas, "injured") ? injured : NULL,
                       sc_json_str(d, "location"),
                       sc_json_str(d, "summary"),
                       sc_json_str(d, "class"),
                       sc_time_format(now, when)};
    if ((rc = ie_exec(ctx,
                      "UPDATE incident.escalations SET kind = coalesce($2, kind), "
                      "severity = coalesce($3, severity), dead = coalesce($4::int, dead), "
                      "injured = coalesce($5::int, injured), location = coalesce($6, location), "
                      "summary = coalesce($7, summary), class = coalesce($8, class), last_at = $9 "
                      "WHERE code = $1",
                      9, p)) < 0)
        goto out;
    if ((rc = ie_timeline(ctx, code, now, "updated", 0, ev->actor, d, ev->id)) < 0)
        goto out;
    json_decref(esc);
    esc = NULL;
    if ((rc = ie_load(ctx, code, &esc)) < 0 || !esc)
        goto out;

    /* Graver now? The new policy's chain governs the steps still to come. */
    facts = s_facts_of(esc);
    const json_t *policy = ie_policy_for(st, facts);
    if (!policy || s_eq(sc_json_str(policy, "name"), sc_json_str(esc, "policy")))
        goto out;
    char *chain = json_dumps(policy, JSON_COMPACT);
    const char *pp[] = {code, sc_json_str(policy, "name"), chain};
    rc = ie_exec(ctx,
                 "UPDATE incident.escalations SET policy = $2, chain = $3::jsonb WHERE code = $1",
                 3, pp);
    free(chain);
    if (rc < 0)
        goto out;
    json_t *pd = json_pack("{s:s, s:s}", "from", sc_json_str(esc, "policy"), "to",
                           sc_json_str(policy, "name"));
    rc = ie_timeline(ctx, code, now, "policy_changed", 0, NULL, pd, ev->id);
    json_decref(pd);
    if (rc < 0)
        goto out;
    int64_t within = sc_json_int(policy, "report_within", 0);
    if (within > 0 && !sc_json_bool(esc, "report_required", false)) {
        char due[SC_TIME_LEN];
        const char *rp[] = {code, sc_time_format(now + within * S_USEC, due)};
        if ((rc = ie_exec(ctx,
                          "UPDATE incident.escalations SET report_due_at = $2, report_next_at = "
                          "$2::timestamptz + interval '1 second' "
                          "WHERE code = $1",
                          2, rp)) < 0)
            goto out;
        json_t *rd = json_pack("{s:s}", "due_at", due);
        rc = ie_timeline(ctx, code, now, "report_due", 0, NULL, rd, ev->id);
        json_decref(rd);
        if (rc < 0)
            goto out;
    }
    char why[200];
    snprintf(why, sizeof why, "updated to policy %s: told at once", sc_json_str(policy, "name"));
    if ((rc = ie_tell(ctx, st, code, 1, now, "start", "incident reported", ev->id)) < 0)
        goto out;
    size_t i;
    const json_t *l;
    json_array_foreach(json_object_get(policy, "immediate"), i, l)
    {
        if ((rc = ie_tell(ctx, st, code, (int)json_integer_value(l), now, "upgrade", why, ev->id)) <
            0)
            goto out;
    }
out:
    json_decref(esc);
    json_decref(facts);
    return rc;
}

int ie_on_report(sc_ctx_t *ctx, ie_state_t *st, const sc_event_t *ev)
{
    (void)st;
    const char *code = sc_json_str(ev->data, "incident"), *by = sc_json_str(ev->data, "by");
    char when[SC_TIME_LEN];
    sc_time_t now = sc_now(ctx);
    const char *p[] = {code, sc_time_format(now, when), by, sc_json_str(ev->data, "summary")};
    int rc;
    PGresult *res = ie_sql(
        ctx,
        "UPDATE incident.escalations SET report_submitted_at = coalesce(report_submitted_at, $2), "
        "report_by = $3, report_summary = coalesce($4, report_summary), report_next_at = NULL "
        "WHERE code = $1 RETURNING report_due_at IS NULL OR report_submitted_at <= report_due_at, "
        "incident.rfc3339(report_due_at, tz), report_submitted_at < $2",
        4, p, &rc);
    if (!res)
        return rc;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return ie_reject(ctx, ev, "incident", code, "incident: unknown");
    }
    json_t *d =
        json_pack("{s:b, s:s?, s:s?, s:s?}", "on_time", PQgetvalue(res, 0, 0)[0] == 't', "due_at",
                  PQgetisnull(res, 0, 1) ? NULL : PQgetvalue(res, 0, 1), "summary",
                  sc_json_str(ev->data, "summary"), "document", sc_json_str(ev->data, "document"));
    bool amended = PQgetvalue(res, 0, 2)[0] == 't';
    PQclear(res);
    rc = ie_timeline(ctx, code, now, amended ? "report_amended" : "report_submitted", 0, by, d,
                     ev->id);
    json_decref(d);
    return rc;
}

int ie_on_notification_failed(sc_ctx_t *ctx, ie_state_t *st, const sc_event_t *ev)
{
    const char *notif = sc_json_str(ev->data, "notification");
    const char *reason = sc_json_str(ev->data, "reason");
    char when[SC_TIME_LEN];
    sc_time_t now = sc_now(ctx);
    int rc;
    if (!notif)
        return 0;
    const char *p[] = {notif, sc_time_format(now, when), reason ? reason : "delivery failed"};
    PGresult *res = ie_sql(
        ctx,
        "UPDATE incident.notifications n SET failed_at = coalesce(failed_at, $2), reason = $3 "
        "WHERE notification = $1 RETURNING code, level, person, channel, purpose, "
        "(SELECT count(*) FROM incident.notifications o WHERE o.code = n.code AND o.level = "
        "n.level AND o.person = n.person AND o.purpose = n.purpose AND o.n = n.n AND "
        "o.notification <> n.notification AND o.failed_at IS NULL)",
        3, p, &rc);
    if (!res)
        return rc;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return 0; /* not one of ours */
    }
    char code[256], person[128], purpose[16];
    snprintf(code, sizeof code, "%s", PQgetvalue(res, 0, 0));
    int level = atoi(PQgetvalue(res, 0, 1));
    snprintf(person, sizeof person, "%s", PQgetvalue(res, 0, 2));
    json_t *d = json_pack("{s:s, s:s, s:s}", "notification", notif, "channel",
                          PQgetvalue(res, 0, 3), "reason", p[2]);
    snprintf(purpose, sizeof purpose, "%s", PQgetvalue(res, 0, 4));
    long others = atol(PQgetvalue(res, 0, 5));
    PQclear(res);
    rc = ie_timeline(ctx, code, now, "notification_failed", level, person, d, ev->id);
    json_decref(d);
    if (rc < 0 || level < 1 || others > 0 ||
        !(s_eq(purpose, "escalation") || s_eq(purpose, "repeat")))
        return rc;

    /* Every channel to this person failed: they cannot be reached; the level above is told. */
    char lv[16];
    snprintf(lv, sizeof lv, "%d", level);
    const char *up[] = {code, lv, person, when, p[2]};
    res = ie_sql(ctx,
                 "UPDATE incident.targets SET unreachable_at = $4, unreachable = $5 "
                 "WHERE code = $1 AND level = $2 AND person = $3 AND unreachable_at IS NULL "
                 "RETURNING person",
                 5, up, &rc);
    if (!res)
        return rc;
    int first = PQntuples(res) > 0;
    PQclear(res);
    if (!first)
        return 0;
    json_t *ud = json_pack("{s:s}", "reason", p[2]);
    rc = ie_timeline(ctx, code, now, "unreachable", level, person, ud, ev->id);
    json_decref(ud);
    if (rc < 0)
        return rc;
    char why[300];
    snprintf(why, sizeof why, "%s at level %d cannot be reached: %s", person, level, p[2]);
    return ie_tell(ctx, st, code, level + 1, now, "failover", why, ev->id);
}
