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
/* Where a member sits, for a refusal's detail: "data.a[2].b". Written only when needed. */
typedef struct s_path {
    const struct s_path *up;
    const char *key; /* NULL: an array's element */
    size_t index;
} s_path_t;

static size_t s_path_format(const s_path_t *p, char *out, size_t cap)
{
    size_t n = p->up ? s_path_format(p->up, out, cap) : 0;
    int w = !p->up   ? snprintf(out + n, cap - n, "%s", p->key)
            : p->key ? snprintf(out + n, cap - n, ".%s", p->key)
                     : snprintf(out + n, cap - n, "[%zu]", p->index);
    return w < 0 || (size_t)w >= cap - n ? cap - 1 : n + (size_t)w;
}

/*
 * Numbers the journal gives back as they were sent. jsonb keeps exact decimals: a real
 * written with an exponent, 1e+17 and up, comes back as a run of digits, which reads as an
 * integer or not at all, and -0.0 comes back as 0.0. So plugins see the same event taken
 * from memory or read back from the journal, such reals are refused and a negative zero
 * becomes zero (*changed is then set). Returns -1 with `detail` naming the member.
 */
static int s_numbers(json_t *v, const s_path_t *path, bool *changed, char *detail, size_t dlen)
{
    if (json_is_real(v)) {
        double x = json_real_value(v);
        if (x == 0 && signbit(x)) {
            json_real_set(v, 0.0);
            *changed = true;
        }
        if (fabs(x) < 1e17)
            return 0;
        size_t n = s_path_format(path, detail, dlen);
        snprintf(detail + n, dlen - n, ": a number must be smaller than 1e17 in magnitude");
        return -1;
    }
    s_path_t member = {.up = path};
    json_t *m;
    if (json_is_object(v)) {
        json_object_foreach(v, member.key, m)
        {
            if (s_numbers(m, &member, changed, detail, dlen) < 0)
                return -1;
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, member.index, m)
        {
            if (s_numbers(m, &member, changed, detail, dlen) < 0)
                return -1;
        }
    }
    return 0;
}

static bool s_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* An exponent's letter: after a digit or a point, outside strings (not true's or false's e). */
static bool s_exponent(const char *buf, size_t k)
{
    return (buf[k] == 'e' || buf[k] == 'E') && k > 0 &&
           ((buf[k - 1] >= '0' && buf[k - 1] <= '9') || buf[k - 1] == '.');
}

/*
 * The end of the JSON value starting at buf[i] (the frame is known to be valid JSON); sets
 * *exponent when a number in it is written with one.
 */
static size_t s_skip_value(const char *buf, size_t len, size_t i, bool *exponent)
{
    int depth = 0;
    bool in_string = false;
    for (; i < len; i++) {
        char c = buf[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"' && (in_string = false, depth == 0))
                return i + 1;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return i; /* a number, true, false or null ended with its container */
            if (--depth == 0)
                return i + 1;
        } else if (depth == 0 && (c == ',' || s_space(c))) {
            return i;
        } else {
            *exponent |= s_exponent(buf, i);
        }
    }
    return i;
}

static size_t s_skip_space(const char *buf, size_t len, size_t i)
{
    while (i < len && s_space(buf[i]))
        i++;
    return i;
}

/*
 * The frame's own text of its top-level "data" member, when the journal would keep it as
 * the parsed value: its key written without escapes, and no number in it with an exponent
 * (jsonb keeps 1e2 as 100, an integer, where jansson reads a real). The frame was parsed:
 * its members' keys are unique.
 */
static bool s_data_span(const char *buf, size_t len, const char **text, size_t *n)
{
    size_t i = s_skip_space(buf, len, 0);
    if (i >= len || buf[i] != '{')
        return false;
    for (i++;;) {
        i = s_skip_space(buf, len, i);
        if (i >= len || buf[i] != '"')
            return false;
        size_t key = ++i;
        while (i < len && buf[i] != '"' && buf[i] != '\\')
            i++;
        if (i >= len || buf[i] != '"')
            return false; /* an escape in a key: left to jansson */
        bool is_data = i - key == 4 && memcmp(buf + key, "data", 4) == 0;
        i = s_skip_space(buf, len, i + 1);
        if (i >= len || buf[i] != ':')
            return false;
        bool exponent = false;
        size_t from = s_skip_space(buf, len, i + 1), to = s_skip_value(buf, len, from, &exponent);
        if (is_data) {
            *text = buf + from;
            *n = to - from;
            return !exponent;
        }
        i = s_skip_space(buf, len, to);
        if (i >= len || buf[i] != ',')
            return false;
        i++;
    }
}

int sc__envelope_data_text(sc__envelope_t *env, const char *buf, size_t len)
{
    if (!env->numbers_changed && s_data_span(buf, len, &env->data_text, &env->data_len))
        return 0;
    char *text = json_dumps(env->ev.data, JSON_COMPACT);
    if (!text)
        return -ENOMEM;
    env->data_text = text;
    env->data_len = strlen(text);
    env->data_owned = true;
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
        if (env->data_owned)
            free((char *)env->data_text);
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
    const s_path_t root = {.key = "data"};
    if (s_numbers(json_object_get(doc, "data"), &root, &env->numbers_changed, detail, dlen) < 0)
        return SC__E_INVALID;
    if (env->type->validate && (rc = env->type->validate(ev, detail, dlen)) < 0) {
        if (!detail[0])
            snprintf(detail, dlen, "data: refused by the %s validator", type);
        return SC__E_INVALID;
    }
    return SC__OK;
}
