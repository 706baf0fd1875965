/* Escalation policies: the built-in defaults, config parsing, matchers and alert subjects. */
#include "ie.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/*
 * The built-in policies, matched after the configured ones. "levels":"default" and "grave" are
 * the `chain` and `grave_chain` config keys; "report_within":"default" is `report_within`.
 * Where they come from: DESIGN.md "Rules the defaults come from" (incidents: casualty or grave
 * to the district at once, written report within 2 h; illness clusters and suspected cases to
 * the district CDC liaison, report within 24 h; absences traced the same day).
 */
static const char s_builtin[] =
    "["
    "{\"name\":\"incident-grave\","
    " \"match\":[{\"sort\":\"incident\",\"severity\":[\"I\",\"II\"]},"
    "            {\"sort\":\"incident\",\"casualties\":true}],"
    " \"levels\":\"grave\",\"immediate\":[2],\"report_within\":\"default\"},"
    "{\"name\":\"fire-alarm\",\"match\":{\"sort\":\"incident\",\"type\":\"fire.alarm\"},"
    " \"levels\":[{\"roles\":[\"safety_officer\",\"principal\"],\"ack_within\":\"5m\","
    "             \"repeat_every\":\"2m\"},"
    "            {\"roles\":[\"district_safety_office\"],\"ack_within\":\"15m\","
    "             \"repeat_every\":\"5m\"},"
    "            {\"roles\":[\"district_director\"],\"ack_within\":\"30m\","
    "             \"repeat_every\":\"15m\"}],"
    " \"subject\":[\"panel\"]},"
    "{\"name\":\"incident\",\"match\":{\"sort\":\"incident\"},\"levels\":\"default\"},"
    "{\"name\":\"hazard-major\",\"match\":{\"type\":\"hazard.major.reported\"},"
    " \"levels\":\"default\",\"immediate\":[2],\"subject\":[\"hazard\"],"
    " \"resolve_on\":[{\"type\":\"hazard.verified\",\"data\":{\"passed\":true}},"
    "                 \"hazard.closed\"]},"
    "{\"name\":\"hazard-overdue-major\","
    " \"match\":[{\"type\":[\"hazard.overdue\",\"hazard.reminder\"],\"risk\":\"major\"},"
    "            {\"type\":[\"hazard.overdue\",\"hazard.reminder\"],"
    "             \"data\":{\"escalate_to\":\"district\"}}],"
    " \"levels\":\"default\",\"immediate\":[2],\"subject\":[\"hazard\"],"
    " \"group\":\"hazard-overdue\","
    " \"resolve_on\":[\"hazard.rectified\",\"hazard.closed\","
    "                 {\"type\":\"hazard.verified\",\"data\":{\"passed\":true}}]},"
    "{\"name\":\"hazard-overdue\",\"match\":{\"type\":[\"hazard.overdue\",\"hazard.reminder\"]},"
    " \"levels\":\"default\",\"subject\":[\"hazard\"],\"group\":\"hazard-overdue\","
    " \"resolve_on\":[\"hazard.rectified\",\"hazard.closed\","
    "                 {\"type\":\"hazard.verified\",\"data\":{\"passed\":true}}]},"
    "{\"name\":\"inspection-missed\",\"match\":{\"type\":\"inspection.missed\"},"
    " \"levels\":[{\"roles\":[\"safety_officer\"],\"ack_within\":\"2h\",\"repeat_every\":\"1h\","
    "              \"repeat_max\":2},"
    "            {\"roles\":[\"principal\"],\"ack_within\":\"4h\",\"repeat_every\":0}],"
    " \"subject\":[\"task\"],\"resolve_on\":[\"inspection.completed\"]},"
    "{\"name\":\"health-cluster\",\"match\":{\"type\":\"health.cluster.suspected\"},"
    " \"levels\":[{\"roles\":[\"school_doctor\",\"principal\"],\"ack_within\":\"30m\","
    "             \"repeat_every\":\"15m\"},"
    "            {\"roles\":[\"district_cdc_liaison\"],\"ack_within\":\"1h\","
    "             \"repeat_every\":\"30m\"},"
    "            {\"roles\":[\"district_safety_office\"],\"ack_within\":\"2h\","
    "             \"repeat_every\":\"1h\"}],"
    " \"immediate\":[2],\"report_within\":\"24h\",\"subject\":[\"cluster\",\"class\",\"syndrome\"]}"
    ","
    "{\"name\":\"health-suspected-case\","
    " \"match\":{\"type\":[\"health.suspected_case\",\"health.case.suspected\"]},"
    " \"levels\":[{\"roles\":[\"school_doctor\",\"principal\"],\"ack_within\":\"30m\","
    "             \"repeat_every\":\"15m\"},"
    "            {\"roles\":[\"district_cdc_liaison\"],\"ack_within\":\"1h\","
    "             \"repeat_every\":\"30m\"}],"
    " \"immediate\":[2],\"report_within\":\"24h\",\"subject\":[\"student\",\"disease\"]},"
    "{\"name\":\"health-untraced\",\"match\":{\"type\":\"health.absence.untraced\"},"
    " \"levels\":[{\"roles\":[\"class_head_teacher\"],\"ack_within\":\"2h\","
    "             \"repeat_every\":\"1h\",\"repeat_max\":2},"
    "            {\"roles\":[\"school_doctor\"],\"ack_within\":\"4h\",\"repeat_every\":0}],"
    " \"subject\":[\"student\",\"date\"],\"resolve_on\":[\"health.absence.traced\"]},"
    "{\"name\":\"drill-overdue\",\"match\":{\"type\":\"drill.overdue\"},"
    " \"levels\":[{\"roles\":[\"safety_officer\",\"principal\"],\"ack_within\":\"1d\","
    "              \"repeat_every\":0},"
    "            {\"roles\":[\"district_safety_office\"],\"ack_within\":\"2d\","
    "             \"repeat_every\":0}],"
    " \"subject\":[\"month\"]},"
    "{\"name\":\"gate-overstay\",\"match\":{\"type\":\"gate.overstay\"},"
    " \"levels\":[{\"roles\":[\"safety_officer\"],\"ack_within\":\"15m\","
    "              \"repeat_every\":\"15m\",\"repeat_max\":2},"
    "            {\"roles\":[\"principal\"],\"ack_within\":\"30m\",\"repeat_every\":0}],"
    " \"subject\":[\"visit\"],\"resolve_on\":[\"gate.exit\"]},"
    "{\"name\":\"fire-fault\",\"match\":{\"sort\":\"alert\",\"type\":\"fire.alarm\","
    "  \"data\":{\"kind\":\"fault\"}},"
    " \"levels\":[{\"roles\":[\"safety_officer\"],\"ack_within\":\"1h\","
    "             \"repeat_every\":\"30m\",\"repeat_max\":4},"
    "            {\"roles\":[\"principal\"],\"ack_within\":\"4h\",\"repeat_every\":0}],"
    " \"subject\":[\"panel\"]}"
    "]";

static const char *const s_matcher_strings[] = {"type",   "sort",     "kind",    "severity", "risk",
                                                "school", "district", "subject", NULL};

/* A string or an array of strings: the form of every string-valued matcher key. */
static bool s_strings(const json_t *v)
{
    if (json_is_string(v))
        return json_string_length(v) > 0;
    if (!json_is_array(v) || json_array_size(v) == 0)
        return false;
    size_t i;
    const json_t *e;
    json_array_foreach(v, i, e) if (!json_is_string(e) || json_string_length(e) == 0) return false;
    return true;
}

static bool s_in(const char *key, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(key, list[i]) == 0)
            return true;
    return false;
}

int ie_matcher_check(const json_t *m, const char *prefix, bool allow_array, char *detail,
                     size_t dlen)
{
    if (allow_array && json_is_array(m)) {
        if (json_array_size(m) == 0)
            return sc_fail(detail, dlen, "%s: must not be empty", prefix);
        size_t i;
        const json_t *e;
        json_array_foreach(m, i, e)
        {
            char p[160];
            snprintf(p, sizeof p, "%s[%zu]", prefix, i);
            int rc = ie_matcher_check(e, p, false, detail, dlen);
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    if (!json_is_object(m))
        return sc_fail(detail, dlen, "%s: expected an object%s", prefix,
                       allow_array ? " or an array of objects" : "");
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)m, key, v)
    {
        if (s_in(key, s_matcher_strings)) {
            if (!s_strings(v))
                return sc_fail(detail, dlen, "%s.%s: expected a string or an array of strings",
                               prefix, key);
        } else if (strcmp(key, "casualties") == 0) {
            if (!json_is_boolean(v))
                return sc_fail(detail, dlen, "%s.%s: expected true or false", prefix, key);
        } else if (strcmp(key, "data") == 0) {
            if (!json_is_object(v))
                return sc_fail(detail, dlen, "%s.data: expected an object", prefix);
            const char *f;
            const json_t *fv;
            json_object_foreach((json_t *)v, f, fv)
            {
                if (json_is_object(fv) || json_is_null(fv))
                    return sc_fail(detail, dlen, "%s.data.%s: expected a value or a list of values",
                                   prefix, f);
            }
        } else {
            return sc_fail(detail, dlen,
                           "%s.%s: unknown matcher key (type, sort, kind, severity, risk, school, "
                           "district, subject, casualties, data)",
                           prefix, key);
        }
    }
    return 0;
}

/* Matches one pattern: exact, or a prefix when it ends with '*' ("health.*"). */
static bool s_pattern(const char *pat, const char *value)
{
    size_t n = strlen(pat);
    if (n > 0 && pat[n - 1] == '*')
        return strncmp(pat, value, n - 1) == 0;
    return strcmp(pat, value) == 0;
}

static bool s_value_ok(const json_t *want, const char *have)
{
    if (!have)
        return false;
    if (json_is_string(want))
        return s_pattern(json_string_value(want), have);
    size_t i;
    const json_t *e;
    json_array_foreach(want, i, e) if (json_is_string(e) &&
                                       s_pattern(json_string_value(e), have)) return true;
    return false;
}

static bool s_data_ok(const json_t *want, const json_t *data)
{
    const char *f;
    const json_t *v;
    json_object_foreach((json_t *)want, f, v)
    {
        const json_t *have = json_object_get(data, f);
        if (!have)
            return false;
        if (json_is_array(v)) {
            bool any = false;
            size_t i;
            const json_t *e;
            json_array_foreach(v, i, e) any |= json_equal((json_t *)e, (json_t *)have);
            if (!any)
                return false;
        } else if (!json_equal((json_t *)v, (json_t *)have)) {
            return false;
        }
    }
    return true;
}

bool ie_match(const json_t *matcher, const json_t *facts)
{
    if (json_is_array(matcher)) {
        size_t i;
        const json_t *e;
        json_array_foreach(matcher, i, e) if (ie_match(e, facts)) return true;
        return false;
    }
    if (!json_is_object(matcher))
        return false;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)matcher, key, v)
    {
        if (strcmp(key, "casualties") == 0) {
            bool any = sc_json_int(facts, "dead", 0) + sc_json_int(facts, "injured", 0) > 0;
            if (any != json_is_true(v))
                return false;
        } else if (strcmp(key, "data") == 0) {
            if (!s_data_ok(v, json_object_get(facts, "data")))
                return false;
        } else if (!s_value_ok(v, sc_json_str(facts, key))) {
            return false;
        }
    }
    return true;
}

const json_t *ie_policy_for(const ie_state_t *st, const json_t *facts)
{
    size_t i;
    const json_t *p;
    json_array_foreach(st->policies, i,
                       p) if (ie_match(json_object_get(p, "match"), facts)) return p;
    return NULL;
}

void ie_subject(const json_t *policy, const json_t *data, char *buf, size_t len)
{
    size_t off = 0, i;
    const json_t *f;
    buf[0] = '\0';
    json_array_foreach(json_object_get(policy, "subject"), i, f)
    {
        const json_t *v = json_object_get(data, json_string_value(f));
        char tmp[80];
        const char *s = NULL;
        if (json_is_string(v))
            s = json_string_value(v);
        else if (json_is_integer(v))
            snprintf(tmp, sizeof tmp, "%" JSON_INTEGER_FORMAT, json_integer_value(v)), s = tmp;
        if (!s || !*s)
            continue;
        int n = snprintf(buf + off, len - off, "%s%s", off ? "/" : "", s);
        if (n < 0 || (size_t)n >= len - off) {
            buf[len - 1] = '\0';
            return;
        }
        off += (size_t)n;
    }
}

/* ---- loading ---- */

/* A duration: integer seconds (>= 0) or "90s", "15m", "2h", "7d". */
static int s_duration(const json_t *v, int64_t *out)
{
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = json_integer_value(v);
        return 0;
    }
    if (json_is_string(v) && sc_duration_parse(json_string_value(v), out) == 0 && *out >= 0)
        return 0;
    return -EINVAL;
}

/* Normalises one level into a new object. */
static int s_level(const json_t *in, const json_t *cfg, const char *prefix, json_t **out, char *err,
                   size_t errlen)
{
    static const char *const known[] = {"roles", "ack_within", "repeat_every", "repeat_max", NULL};
    if (!json_is_object(in))
        return sc_fail(err, errlen, "%s: expected an object", prefix);
    if (sc_check_known(in, "", known, err, errlen) < 0) {
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%s", err);
        return sc_fail(err, errlen, "%s.%s", prefix, tmp);
    }
    const json_t *roles = json_object_get(in, "roles");
    if (!s_strings(roles) || !json_is_array(roles))
        return sc_fail(err, errlen, "%s.roles: expected a non-empty array of role names", prefix);
    int64_t ack = 900, rep = 0;
    const json_t *v;
    if ((v = json_object_get(in, "ack_within")) && s_duration(v, &ack) < 0)
        return sc_fail(err, errlen, "%s.ack_within: expected a duration", prefix);
    if ((v = json_object_get(in, "repeat_every")) && s_duration(v, &rep) < 0)
        return sc_fail(err, errlen, "%s.repeat_every: expected a duration", prefix);
    json_int_t max = sc_json_int(cfg, "repeat_max", 12);
    if ((v = json_object_get(in, "repeat_max"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return sc_fail(err, errlen, "%s.repeat_max: expected an integer >= 0", prefix);
        max = json_integer_value(v);
    }
    if (ack <= 0)
        return sc_fail(err, errlen, "%s.ack_within: must be positive", prefix);
    *out = json_pack("{s:O, s:I, s:I, s:I}", "roles", roles, "ack_within", (json_int_t)ack,
                     "repeat_every", (json_int_t)rep, "repeat_max", max);
    return *out ? 0 : -ENOMEM;
}

static int s_levels(const json_t *in, const json_t *cfg, const char *prefix, json_t **out,
                    char *err, size_t errlen)
{
    if (json_is_string(in)) {
        const char *name = json_string_value(in);
        const char *key = strcmp(name, "default") == 0 ? "chain"
                          : strcmp(name, "grave") == 0 ? "grave_chain"
                                                       : NULL;
        if (!key)
            return sc_fail(err, errlen, "%s: expected a list of levels, \"default\" or \"grave\"",
                           prefix);
        in = json_object_get(cfg, key);
        prefix = key;
    }
    if (!json_is_array(in))
        return sc_fail(err, errlen, "%s: expected a list of levels", prefix);
    json_t *arr = json_array();
    size_t i;
    const json_t *l;
    json_array_foreach(in, i, l)
    {
        char p[200];
        json_t *lv = NULL;
        snprintf(p, sizeof p, "%s[%zu]", prefix, i);
        int rc = s_level(l, cfg, p, &lv, err, errlen);
        if (rc < 0) {
            json_decref(arr);
            return rc;
        }
        json_array_append_new(arr, lv);
    }
    *out = arr;
    return 0;
}

/* Collects the distinct role names of levels 1 and 2: who is chased for a late report. */
static json_t *s_report_roles(const json_t *levels)
{
    json_t *out = json_array();
    for (size_t l = 0; l < 2 && l < json_array_size(levels); l++) {
        size_t i, j;
        const json_t *r, *have;
        json_array_foreach(json_object_get(json_array_get(levels, l), "roles"), i, r)
        {
            bool dup = false;
            json_array_foreach(out, j, have) dup |= json_equal((json_t *)have, (json_t *)r);
            if (!dup)
                json_array_append((json_t *)out, (json_t *)r);
        }
    }
    return out;
}

/* Normalises one policy into a new object. */
static int s_policy(const json_t *in, const json_t *cfg, const char *prefix, json_t **out,
                    char *err, size_t errlen)
{
    static const char *const known[] = {"name",
                                        "match",
                                        "levels",
                                        "immediate",
                                        "report_within",
                                        "report_chase_every",
                                        "report_chase_max",
                                        "report_roles",
                                        "subject",
                                        "group",
                                        "resolve_on",
                                        NULL};
    json_t *p = NULL, *levels = NULL;
    const json_t *v;
    int rc = -EINVAL;

    if (!json_is_object(in)) {
        sc_fail(err, errlen, "%s: expected a group", prefix);
        goto out;
    }
    if (sc_check_known(in, "", known, err, errlen) < 0) {
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%s", err);
        sc_fail(err, errlen, "%s.%s", prefix, tmp);
        goto out;
    }
    const char *name = sc_json_str(in, "name");
    if (!name || !*name) {
        sc_fail(err, errlen, "%s.name: required", prefix);
        goto out;
    }
    char mp[200];
    snprintf(mp, sizeof mp, "%s.match", prefix);
    if (!json_object_get(in, "match")) {
        sc_fail(err, errlen, "%s: required", mp);
        goto out;
    }
    if (ie_matcher_check(json_object_get(in, "match"), mp, true, err, errlen) < 0)
        goto out;
    char lp[200];
    snprintf(lp, sizeof lp, "%s.levels", prefix);
    v = json_object_get(in, "levels");
    json_t *def = json_string("default");
    rc = s_levels(v ? v : def, cfg, lp, &levels, err, errlen);
    json_decref(def);
    if (rc < 0)
        goto out;
    rc = -EINVAL;
    size_t nlevels = json_array_size(levels);

    json_t *imm = json_array();
    p = json_pack("{s:s, s:O, s:O, s:o}", "name", name, "match", json_object_get(in, "match"),
                  "levels", levels, "immediate", imm);
    if (!p) {
        rc = -ENOMEM;
        goto out;
    }
    if ((v = json_object_get(in, "immediate"))) {
        size_t i;
        const json_t *e;
        if (!json_is_array(v)) {
            sc_fail(err, errlen, "%s.immediate: expected a list of level numbers", prefix);
            goto out;
        }
        json_array_foreach(v, i, e)
        {
            if (!json_is_integer(e) || json_integer_value(e) < 1 ||
                (size_t)json_integer_value(e) > nlevels) {
                sc_fail(err, errlen, "%s.immediate[%zu]: must be a level number between 1 and %zu",
                        prefix, i, nlevels);
                goto out;
            }
            json_array_append(imm, (json_t *)e);
        }
    }
    int64_t within = 0, chase = sc_json_int(cfg, "report_chase_every", 1800);
    if ((v = json_object_get(in, "report_within"))) {
        if (json_is_string(v) && strcmp(json_string_value(v), "default") == 0)
            within = sc_json_int(cfg, "report_within", 7200);
        else if (s_duration(v, &within) < 0) {
            sc_fail(err, errlen, "%s.report_within: expected a duration or \"default\"", prefix);
            goto out;
        }
    }
    if ((v = json_object_get(in, "report_chase_every")) && (s_duration(v, &chase) < 0 || !chase)) {
        sc_fail(err, errlen, "%s.report_chase_every: expected a positive duration", prefix);
        goto out;
    }
    json_int_t chase_max = sc_json_int(cfg, "report_chase_max", 8);
    if ((v = json_object_get(in, "report_chase_max"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            sc_fail(err, errlen, "%s.report_chase_max: expected an integer >= 0", prefix);
            goto out;
        }
        chase_max = json_integer_value(v);
    }
    json_object_set_new(p, "report_within", json_integer(within));
    json_object_set_new(p, "report_chase_every", json_integer(chase ? chase : 1800));
    json_object_set_new(p, "report_chase_max", json_integer(chase_max));
    if ((v = json_object_get(in, "report_roles"))) {
        if (!json_is_array(v) || !s_strings(v)) {
            sc_fail(err, errlen, "%s.report_roles: expected a non-empty array of role names",
                    prefix);
            goto out;
        }
        json_object_set(p, "report_roles", (json_t *)v);
    } else {
        json_object_set_new(p, "report_roles", s_report_roles(levels));
    }
    if ((v = json_object_get(in, "subject"))) {
        if (!json_is_array(v) || (json_array_size(v) && !s_strings(v))) {
            sc_fail(err, errlen, "%s.subject: expected an array of data field names", prefix);
            goto out;
        }
        json_object_set(p, "subject", (json_t *)v);
    } else {
        json_object_set_new(p, "subject", json_array());
    }
    if ((v = json_object_get(in, "group")) && (!json_is_string(v) || !json_string_length(v))) {
        sc_fail(err, errlen, "%s.group: expected a string", prefix);
        goto out;
    }
    json_object_set_new(p, "group", json_string(v ? json_string_value(v) : name));
    json_t *resolvers = json_array();
    json_object_set_new(p, "resolve_on", resolvers);
    if ((v = json_object_get(in, "resolve_on"))) {
        size_t i;
        const json_t *e;
        if (!json_is_array(v)) {
            sc_fail(err, errlen, "%s.resolve_on: expected a list of types or matchers", prefix);
            goto out;
        }
        json_array_foreach(v, i, e)
        {
            char rp[220];
            snprintf(rp, sizeof rp, "%s.resolve_on[%zu]", prefix, i);
            if (json_is_string(e)) {
                json_array_append_new(resolvers, json_pack("{s:O}", "type", e));
            } else if (ie_matcher_check(e, rp, false, err, errlen) == 0) {
                json_array_append(resolvers, (json_t *)e);
            } else {
                goto out;
            }
        }
    }
    *out = p;
    p = NULL;
    rc = 0;
out:
    json_decref(p);
    json_decref(levels);
    return rc;
}

int ie_policies_load(const json_t *cfg, json_t **out, char *err, size_t errlen)
{
    json_t *all = json_array(), *builtin = NULL;
    int rc = -EINVAL;
    size_t i;
    const json_t *in;
    json_t *p = NULL;

    /* The chains themselves must be valid even when no policy names them. */
    json_t *tmp = NULL;
    if (s_levels(json_object_get(cfg, "chain"), cfg, "chain", &tmp, err, errlen) < 0)
        goto out;
    json_decref(tmp);
    if (s_levels(json_object_get(cfg, "grave_chain"), cfg, "grave_chain", &tmp, err, errlen) < 0)
        goto out;
    json_decref(tmp);

    json_array_foreach(json_object_get(cfg, "policies"), i, in)
    {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "policies[%zu]", i);
        if (s_policy(in, cfg, prefix, &p, err, errlen) < 0)
            goto out;
        json_array_append_new(all, p);
    }
    if (sc_json_bool(cfg, "default_policies", true)) {
        json_error_t jerr;
        builtin = json_loads(s_builtin, 0, &jerr);
        if (!builtin) {
            sc_fail(err, errlen, "built-in policies: %s", jerr.text);
            goto out;
        }
        json_array_foreach(builtin, i, in)
        {
            char prefix[96];
            snprintf(prefix, sizeof prefix, "built-in policy %s", sc_json_str(in, "name"));
            if (s_policy(in, cfg, prefix, &p, err, errlen) < 0)
                goto out;
            json_array_append_new(all, p);
        }
    }
    *out = all;
    all = NULL;
    rc = 0;
out:
    json_decref(all);
    json_decref(builtin);
    return rc;
}
