/* A plugin's config section: checked against its key table, defaults filled, as JSON. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* "group." before a key, or nothing for top-level keys. */
#define S_PATH(section) (section) ? (section) : "", (section) ? "." : ""

static const struct sc_config_key *s_key(const struct sc_config_key *keys, const char *name)
{
    for (; keys && keys->name; keys++)
        if (strcmp(keys->name, name) == 0)
            return keys;
    return NULL;
}

/* Checks one value against its kind; returns a new reference in normal form or NULL. */
static json_t *s_coerce(const struct sc_config_key *k, json_t *v, const char **rule)
{
    switch (k->kind) {
    case SC_CFG_BOOL:
        *rule = "expected true or false";
        return json_is_boolean(v) ? json_incref(v) : NULL;
    case SC_CFG_INT:
        *rule = "expected an integer";
        return json_is_integer(v) ? json_incref(v) : NULL;
    case SC_CFG_FLOAT:
        *rule = "expected a number";
        return json_is_number(v) ? json_real(json_number_value(v)) : NULL;
    case SC_CFG_STRING:
        *rule = "expected a string";
        return json_is_string(v) ? json_incref(v) : NULL;
    case SC_CFG_DURATION: {
        *rule = "expected a duration (seconds, or \"90s\", \"15m\", \"2h\", \"7d\")";
        int64_t secs;
        if (json_is_integer(v) && json_integer_value(v) >= 0)
            return json_incref(v);
        if (json_is_string(v) && sc_duration_parse(json_string_value(v), &secs) == 0)
            return json_integer(secs);
        return NULL;
    }
    case SC_CFG_LIST:
        *rule = "expected a list";
        return json_is_array(v) ? json_incref(v) : NULL;
    case SC_CFG_GROUP:
        *rule = "expected a group";
        return json_is_object(v) ? json_incref(v) : NULL;
    }
    *rule = "unsupported kind";
    return NULL;
}

int sc__pconfig_fill(const struct sc_config_key *keys, const char *section, const json_t *given,
                     json_t **out, char *err, size_t errlen)
{
    json_t *cfg = json_object();
    const char *name;
    json_t *v;
    int rc = -EINVAL;

    json_object_foreach((json_t *)given, name, v)
    {
        const struct sc_config_key *k = s_key(keys, name);
        const char *rule = NULL;
        if (!k) {
            snprintf(err, errlen, "%s%s%s: unknown key", S_PATH(section), name);
            goto out;
        }
        json_t *norm = s_coerce(k, v, &rule);
        if (!norm) {
            snprintf(err, errlen, "%s%s%s: %s", S_PATH(section), name, rule);
            goto out;
        }
        json_object_set_new(cfg, name, norm);
    }
    for (const struct sc_config_key *k = keys; k && k->name; k++) {
        if (json_object_get(cfg, k->name))
            continue;
        json_error_t jerr;
        json_t *def = json_loads(k->def ? k->def : "null", JSON_DECODE_ANY, &jerr);
        const char *rule = NULL;
        json_t *norm = def && !json_is_null(def) ? s_coerce(k, def, &rule) : NULL;
        json_decref(def);
        if (!norm && k->def && strcmp(k->def, "null") != 0) {
            snprintf(err, errlen, "%s%s%s: the default %s is invalid (%s)", S_PATH(section),
                     k->name, k->def, rule ? rule : jerr.text);
            goto out;
        }
        json_object_set_new(cfg, k->name, norm ? norm : json_null());
    }
    *out = cfg;
    cfg = NULL;
    rc = 0;
out:
    json_decref(cfg);
    return rc;
}
