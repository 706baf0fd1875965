/* The envelope rules of the wire contract, then the owning plugin's validator for `data`. */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const s_codes[] = {
    [SC__OK] = "ok",
    [SC__E_MALFORMED] = "malformed_json",
    [SC__E_TOO_LARGE] = "too_large",
    [SC__E_INVALID] = "invalid_event",
    [SC__E_UNKNOWN_TYPE] = "unknown_type",
    [SC__E_FORBIDDEN] = "forbidden",
    [SC__E_UNAVAILABLE] = "unavailable",
};

const char *sc__error_code(int e)
{
    return e >= 0 && e < SC__E_COUNT ? s_codes[e] : "internal";
}

/*
 * Deepest nesting of arrays and objects, stopping early past `limit`. jansson's
 * own limit is far higher than the contract's, and counting here is cheaper
 * than building a tree only to throw it away.
 */
static int s_depth(const char *buf, size_t len, int limit)
{
    int depth = 0, max = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
            continue;
        }
        switch (c) {
        case '"':
            in_string = true;
            break;
        case '[':
        case '{':
            if (++depth > max && (max = depth) > limit)
                return max;
            break;
        case ']':
        case '}':
            depth--;
            break;
        default:
            break;
        }
    }
    return max;
}

/* A type name: lowercase dotted words, "hazard.reported". */
/*
 * Numbers the journal gives back as they were sent. jsonb keeps exact decimals: a real
 * written with an exponent, 1e+17 and up, comes back as a run of digits, which reads as an
 * integer or not at all, and -0.0 comes back as 0.0. So plugins see the same event taken
 * from memory or read back from the journal, such reals are refused and a negative zero
 * becomes zero. Returns -1 with `detail` naming the member.
 */
static int s_numbers(json_t *v, char *path, size_t used, size_t cap, char *detail, size_t dlen);

/* A member's numbers, its name appended to the path: ".key" or "[i]". */
static int s_member(json_t *m, char *path, size_t used, size_t cap, const char *sep,
                    const char *name, char *detail, size_t dlen)
{
    int n = snprintf(path + used, cap - used, "%s%s%s", sep, name, *sep == '[' ? "]" : "");
    size_t u = n < 0 || (size_t)n >= cap - used ? cap - 1 : used + (size_t)n;
    return s_numbers(m, path, u, cap, detail, dlen);
}

static int s_numbers(json_t *v, char *path, size_t used, size_t cap, char *detail, size_t dlen)
{
    if (json_is_real(v)) {
        double x = json_real_value(v);
        if (x == 0 && signbit(x))
            json_real_set(v, 0.0);
        if (fabs(x) < 1e17)
            return 0;
        snprintf(detail, dlen, "%.*s: a number must be smaller than 1e17 in magnitude", (int)used,
                 path);
        return -1;
    }
    const char *key;
    json_t *m;
    size_t i;
    if (json_is_object(v)) {
        json_object_foreach(v, key, m)
        {
            if (s_member(m, path, used, cap, ".", key, detail, dlen) < 0)
                return -1;
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, m)
        {
            char index[24];
            snprintf(index, sizeof index, "%zu", i);
            if (s_member(m, path, used, cap, "[", index, detail, dlen) < 0)
                return -1;
        }
    }
    return 0;
}

static bool s_type_name(const char *s)
{
    int words = 0;
    const char *p = s;
    while (*p) {
        if (!(*p >= 'a' && *p <= 'z'))
            return false;
        while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')
            p++;
        words++;
        if (*p == '.')
            p++;
        else if (*p)
            return false;
    }
    return words >= 2 && p[-1] != '.' && (size_t)(p - s) <= 64;
}

void sc__envelope_clear(sc__envelope_t *env)
{
    if (!env->in_arena) {
        json_decref(env->doc);
        free(env->data_text);
    }
    memset(env, 0, sizeof *env);
}

int sc__envelope_parse(const sc__registry_t *reg, const sc__limits_t *lim, const char *buf,
                       size_t len, sc_time_t now, sc__envelope_t *env, char *detail, size_t dlen)
{
    return sc__envelope_parse_as(reg, lim, buf, len, now, NULL, env, detail, dlen);
}

int sc__envelope_parse_as(const sc__registry_t *reg, const sc__limits_t *lim, const char *buf,
                          size_t len, sc_time_t now, const char *source, sc__envelope_t *env,
                          char *detail, size_t dlen)
{
    memset(env, 0, sizeof *env);
    detail[0] = '\0';
    if (len > lim->max_bytes) {
        snprintf(detail, dlen, "frame: %zu bytes, more than the limit of %zu", len, lim->max_bytes);
        return SC__E_TOO_LARGE;
    }
    if (s_depth(buf, len, lim->max_depth) > lim->max_depth) {
        snprintf(detail, dlen, "frame: nested deeper than %d levels", lim->max_depth);
        return SC__E_TOO_LARGE;
    }
    json_error_t jerr;
    env->doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!env->doc) {
        if (json_error_code(&jerr) == json_error_invalid_utf8)
            snprintf(detail, dlen, "frame: invalid UTF-8 at byte %d", jerr.position);
        else
            snprintf(detail, dlen, "frame: %s at byte %d", jerr.text, jerr.position);
        return SC__E_MALFORMED;
    }
    if (!json_is_object(env->doc)) {
        snprintf(detail, dlen, "frame: expected a JSON object (an event envelope)");
        return SC__E_INVALID;
    }
    const json_t *idv = json_object_get(env->doc, "id");
    if (json_is_string(idv))
        env->id = json_string_value(idv);

    static const char *const known[] = {"type",  "school",      "district", "source", "id",
                                        "actor", "occurred_at", "data",     NULL};
    json_t *doc = env->doc;
    int rc;
    if (source && !json_object_get(doc, "source")) {
        json_object_set_new(doc, "source", json_string(source));
        env->source_filled = true;
    }
    if (sc_check_known(doc, "", known, detail, dlen) < 0)
        return SC__E_INVALID;
    if (sc_check_string(doc, "", "type", true, 64, detail, dlen) < 0)
        return SC__E_INVALID;
    const char *type = sc_json_str(doc, "type");
    if (!s_type_name(type)) {
        snprintf(detail, dlen, "type: must be lowercase dotted words, like hazard.reported");
        return SC__E_INVALID;
    }
    if (sc_check_code(doc, "", "school", false, detail, dlen) < 0 ||
        sc_check_code(doc, "", "district", false, detail, dlen) < 0 ||
        sc_check_code(doc, "", "source", true, detail, dlen) < 0 ||
        sc_check_string(doc, "", "id", false, 128, detail, dlen) < 0 ||
        sc_check_code(doc, "", "actor", false, detail, dlen) < 0 ||
        sc_check_time(doc, "", "occurred_at", false, detail, dlen) < 0 ||
        sc_check_object(doc, "", "data", true, detail, dlen) < 0)
        return SC__E_INVALID;
    if (idv && json_string_length(idv) == 0) {
        snprintf(detail, dlen, "id: must not be empty");
        return SC__E_INVALID;
    }

    env->type = sc__registry_type(reg, type);
    if (!env->type) {
        snprintf(detail, dlen, "type: %s is not a known event type", type);
        return SC__E_UNKNOWN_TYPE;
    }
    if (env->type->owner == SC__NO_OWNER || (env->type->flags & SC_TYPE_EMITTED)) {
        atomic_fetch_add(&sc__forbidden_by[SC__FORBID_PLUGIN_ONLY], 1);
        snprintf(detail, dlen,
                 "type: %s is raised by the daemon's plugins, not accepted from senders", type);
        return SC__E_FORBIDDEN;
    }

    sc_event_t *ev = &env->ev;
    ev->type = type;
    ev->school = sc_json_str(doc, "school");
    ev->district = sc_json_str(doc, "district");
    ev->source = sc_json_str(doc, "source");
    ev->source_id = env->id;
    ev->actor = sc_json_str(doc, "actor");
    ev->received_at = now;
    ev->occurred_at = sc_json_time(doc, "occurred_at", now);
    ev->data = json_object_get(doc, "data");
    env->has_occurred = json_object_get(doc, "occurred_at") != NULL;

    if (!ev->school) {
        if (!(env->type->flags & SC_TYPE_DISTRICT)) {
            snprintf(detail, dlen, "school: required for %s", type);
            return SC__E_INVALID;
        }
        if (!ev->district) {
            snprintf(detail, dlen, "school: required (or district, for %s addressed to a district)",
                     type);
            return SC__E_INVALID;
        }
    }
    char path[256] = "data";
    if (s_numbers(json_object_get(doc, "data"), path, 4, sizeof path, detail, dlen) < 0)
        return SC__E_INVALID;
    if (env->type->validate && (rc = env->type->validate(ev, detail, dlen)) < 0) {
        if (!detail[0])
            snprintf(detail, dlen, "data: refused by the %s validator", type);
        return SC__E_INVALID;
    }
    return SC__OK;
}
