/* Checks on JSON members that name the field and the rule when they refuse. */
#include <safecampus/util.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int sc_fail(char *detail, size_t dlen, const char *fmt, ...)
{
    if (detail && dlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(detail, dlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

char *sc_utf8_clean(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        int n = *p < 0x80             ? 0
                : (*p & 0xe0) == 0xc0 ? 1
                : (*p & 0xf0) == 0xe0 ? 2
                : (*p & 0xf8) == 0xf0 ? 3
                                      : -1;
        int ok = n >= 0;
        for (int i = 1; ok && i <= n; i++)
            ok = (p[i] & 0xc0) == 0x80;
        /* Overlong forms, surrogates and code points past U+10FFFF are not UTF-8 either. */
        if (ok && n == 1 && *p < 0xc2)
            ok = 0;
        if (ok && n == 2 && ((*p == 0xe0 && p[1] < 0xa0) || (*p == 0xed && p[1] >= 0xa0)))
            ok = 0;
        if (ok && n == 3 &&
            ((*p == 0xf0 && p[1] < 0x90) || *p > 0xf4 || (*p == 0xf4 && p[1] >= 0x90)))
            ok = 0;
        if (ok) {
            p += n + 1;
            continue;
        }
        bool cut = true; /* only continuation bytes, then the end */
        for (unsigned char *q = p + 1; *q; q++)
            cut &= (*q & 0xc0) == 0x80 && q - p <= 3;
        if (cut && n > 0) {
            *p = '\0';
            break;
        }
        *p++ = '?';
    }
    return s;
}

/* Looks the member up; handles absence. Returns 1 when there is a value to check. */
static int s_member(const json_t *obj, const char *prefix, const char *key, bool required,
                    const json_t **out, char *detail, size_t dlen, int *rc)
{
    *out = json_object_get(obj, key);
    if (!*out || json_is_null(*out)) {
        *rc = required ? sc_fail(detail, dlen, "%s%s: required", prefix, key) : 0;
        return 0;
    }
    return 1;
}

int sc_check_string(const json_t *obj, const char *prefix, const char *key, bool required,
                    size_t max_len, char *detail, size_t dlen)
{
    const json_t *v;
    int rc;
    if (!s_member(obj, prefix, key, required, &v, detail, dlen, &rc))
        return rc;
    if (!json_is_string(v))
        return sc_fail(detail, dlen, "%s%s: expected a string", prefix, key);
    size_t n = json_string_length(v);
    if (n == 0 && required)
        return sc_fail(detail, dlen, "%s%s: must not be empty", prefix, key);
    if (n > max_len)
        return sc_fail(detail, dlen, "%s%s: longer than %zu bytes", prefix, key, max_len);
    if (memchr(json_string_value(v), '\0', n))
        return sc_fail(detail, dlen, "%s%s: must not contain NUL", prefix, key);
    return 0;
}

int sc_check_code(const json_t *obj, const char *prefix, const char *key, bool required,
                  char *detail, size_t dlen)
{
    const json_t *v;
    int rc;
    if (!s_member(obj, prefix, key, required, &v, detail, dlen, &rc))
        return rc;
    if (!json_is_string(v))
        return sc_fail(detail, dlen, "%s%s: expected a string", prefix, key);
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n == 0 || n > SC_CODE_MAX ||
        strspn(s, "abcdefghijklmnopqrstuvwxyz"
                  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:") != n)
        return sc_fail(detail, dlen,
                       "%s%s: must be a code of 1 to %d letters, digits and - _ . :", prefix, key,
                       SC_CODE_MAX);
    return 0;
}

static void s_join(const char *const *allowed, char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; allowed[i] && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? ", " : "", allowed[i]);
}

static bool s_in(const char *s, const char *const *allowed)
{
    for (size_t i = 0; allowed[i]; i++)
        if (strcmp(s, allowed[i]) == 0)
            return true;
    return false;
}

int sc_check_enum(const json_t *obj, const char *prefix, const char *key, bool required,
                  const char *const *allowed, char *detail, size_t dlen)
{
    const json_t *v;
    int rc;
    if (!s_member(obj, prefix, key, required, &v, detail, dlen, &rc))
        return rc;
    if (json_is_string(v) && s_in(json_string_value(v), allowed))
        return 0;
    char list[512];
    s_join(allowed, list, sizeof list);
    return sc_fail(detail, dlen, "%s%s: must be one of %s", prefix, key, list);
}

int sc_check_enum_array(const json_t *obj, const char *prefix, const char *key, bool required,
                        const char *const *allowed, char *detail, size_t dlen)
{
    const json_t *v;
    int rc;
    if (!s_member(obj, prefix, key, required, &v, detail, dlen, &rc))
        return rc;
    if (!json_is_array(v))
        return sc_fail(detail, dlen, "%s%s: expected an array", prefix, key);
    size_t i;
    const json_t *e;
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e) || !s_in(json_string_value(e), allowed)) {
            char list[512];
            s_join(allowed, list, sizeof list);
            return sc_fail(detail, dlen, "%s%s[%zu]: must be one of %s", prefix, key, i, list);
        }
    }
    return 0;
}

int sc_check_int(const json_t *obj, const char *prefix, const char *key, bool required,
                 json_int_t min, json_int_t max, char *detail, size_t dlen)
{
    const json_t *v;
    int rc;
    if (!s_member(obj, prefix, key, required, &v, detail, dlen, &rc))
        return rc;
    if (!json_is_integer(v))
        return sc_fail(detail, dlen, "%s%s: expected an integer", prefix, key);
    json_int_t n = json_integer_value(v);
    if (n < min || n > max)
        return sc_fail(detail, dlen,
                       "%s%s: must be between %" JSON_INTEGER_FORMAT " and %" JSON_INTEGER_FORMAT,
                       prefix, key, min, max);
    return 0;
}

int sc_check_bool(const json_t *obj, const char *prefix, const char *key, bool required,
                  char *detail, size_t dlen)
{
    const json_t *v;
    int rc;
    if (!s_member(obj, prefix, key, required, &v, detail, dlen, &rc))
        return rc;
    return json_is_boolean(v) ? 0
                              : sc_fail(detail, dlen, "%s%s: expected true or false", prefix, key);
}

int sc_check_time(const json_t *obj, const char *prefix, const char *key, bool required,
                  char *detail, size_t dlen)
{
    const json_t *v;
    int rc;
    sc_time_t t;
    if (!s_member(obj, prefix, key, required, &v, detail, dlen, &rc))
        return rc;
    if (!json_is_string(v) || sc_time_parse(json_string_value(v), &t) < 0)
        return sc_fail(detail, dlen, "%s%s: expected an RFC 3339 time", prefix, key);
    return 0;
}

int sc_check_date(const json_t *obj, const char *prefix, const char *key, bool required,
                  char *detail, size_t dlen)
{
    const json_t *v;
    int rc;
    int64_t d;
    if (!s_member(obj, prefix, key, required, &v, detail, dlen, &rc))
        return rc;
    if (!json_is_string(v) || sc_date_parse(json_string_value(v), &d) < 0)
        return sc_fail(detail, dlen, "%s%s: expected a date YYYY-MM-DD", prefix, key);
    return 0;
}

int sc_check_object(const json_t *obj, const char *prefix, const char *key, bool required,
                    char *detail, size_t dlen)
{
    const json_t *v;
    int rc;
    if (!s_member(obj, prefix, key, required, &v, detail, dlen, &rc))
        return rc;
    return json_is_object(v) ? 0 : sc_fail(detail, dlen, "%s%s: expected an object", prefix, key);
}

int sc_check_array(const json_t *obj, const char *prefix, const char *key, bool required,
                   size_t max_items, char *detail, size_t dlen)
{
    const json_t *v;
    int rc;
    if (!s_member(obj, prefix, key, required, &v, detail, dlen, &rc))
        return rc;
    if (!json_is_array(v))
        return sc_fail(detail, dlen, "%s%s: expected an array", prefix, key);
    if (json_array_size(v) > max_items)
        return sc_fail(detail, dlen, "%s%s: more than %zu items", prefix, key, max_items);
    return 0;
}

int sc_check_known(const json_t *obj, const char *prefix, const char *const *known, char *detail,
                   size_t dlen)
{
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        if (!s_in(key, known))
            return sc_fail(detail, dlen, "%s%s: unknown field", prefix, key);
    }
    return 0;
}

const char *sc_json_str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

json_int_t sc_json_int(const json_t *obj, const char *key, json_int_t def)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? json_integer_value(v) : def;
}

bool sc_json_bool(const json_t *obj, const char *key, bool def)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

double sc_json_num(const json_t *obj, const char *key, double def)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_number(v) ? json_number_value(v) : def;
}

sc_time_t sc_json_time(const json_t *obj, const char *key, sc_time_t def)
{
    sc_time_t t;
    const char *s = sc_json_str(obj, key);
    return s && sc_time_parse(s, &t) == 0 ? t : def;
}
