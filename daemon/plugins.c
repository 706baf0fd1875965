/* The plugin loader and the type registry: which plugin owns and validates each event type. */
#include "internal.h"

#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The smallest struct sc_plugin this daemon can use: one that reaches fini. */
#define S_PLUGIN_MIN_SIZE (offsetof(struct sc_plugin, fini) + sizeof(void (*)(void)))

static bool s_in_list(const json_t *list, const char *name)
{
    size_t i;
    const json_t *e;
    json_array_foreach(list, i, e) if (strcmp(json_string_value(e), name) == 0) return true;
    return false;
}

int sc__plugin_open(const char *path, const char *expect_name, sc__slot_t *slot, char *err,
                    size_t errlen)
{
    memset(slot, 0, sizeof *slot);
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        snprintf(err, errlen, "could not load \"%s\": %s", path, dlerror());
        return -ENOENT;
    }
    sc_plugin_entry_fn entry = (sc_plugin_entry_fn)dlsym(dl, SC_PLUGIN_ENTRY);
    const struct sc_plugin *p = entry ? entry() : NULL;
    if (!p) {
        snprintf(err, errlen, "\"%s\" is not a safecampus plugin: no %s()", path, SC_PLUGIN_ENTRY);
        goto fail;
    }
    if (p->abi != SC_PLUGIN_ABI) {
        snprintf(err, errlen,
                 "plugin \"%s\" was built for plugin ABI %u, this daemon speaks ABI %u: rebuild "
                 "it against this daemon's include/safecampus/plugin.h",
                 path, p->abi, SC_PLUGIN_ABI);
        goto fail;
    }
    if (p->size < S_PLUGIN_MIN_SIZE) {
        snprintf(err, errlen, "plugin \"%s\": struct sc_plugin of %u bytes, at least %zu expected",
                 path, p->size, (size_t)S_PLUGIN_MIN_SIZE);
        goto fail;
    }
    if (!p->name || (expect_name && strcmp(p->name, expect_name) != 0)) {
        snprintf(err, errlen, "plugin \"%s\" calls itself \"%s\": file and plugin names must match",
                 path, p->name ? p->name : "(null)");
        goto fail;
    }
    slot->p = p;
    slot->dl = dl;
    slot->path = strdup(path);
    return 0;
fail:
    dlclose(dl);
    return -EINVAL;
}

static int s_cmp_type(const void *a, const void *b)
{
    return strcmp(((const sc__type_t *)a)->name, ((const sc__type_t *)b)->name);
}

const sc__type_t *sc__registry_type(const sc__registry_t *reg, const char *name)
{
    sc__type_t key = {.name = name};
    return bsearch(&key, reg->types, reg->ntypes, sizeof key, s_cmp_type);
}

/*
 * Adds one declaration of a type. A plugin that only emits a type (another
 * plugin's, or one nobody else declares) holds it until a plugin declares it
 * as its own; two owners of one type are refused.
 */
static int s_add_type(sc__registry_t *reg, size_t cap, const char *name, int plugin,
                      const struct sc_type *t, char *err, size_t errlen)
{
    bool owns = !(t->flags & SC_TYPE_EMITTED);
    for (size_t i = 0; i < reg->ntypes; i++) {
        sc__type_t *e = &reg->types[i];
        if (strcmp(e->name, name) != 0)
            continue;
        if (!owns)
            return 0;
        if (e->owner == SC__CORE || (e->owner >= 0 && !(e->flags & SC_TYPE_EMITTED))) {
            snprintf(err, errlen, "type %s is owned by both %s and %s", name,
                     e->owner == SC__CORE ? "the core" : reg->slots[e->owner].p->name,
                     reg->slots[plugin].p->name);
            return -EINVAL;
        }
        *e =
            (sc__type_t){.name = name, .owner = plugin, .flags = t->flags, .validate = t->validate};
        return 0;
    }
    if (reg->ntypes == cap)
        return -ENOMEM;
    reg->types[reg->ntypes++] =
        (sc__type_t){.name = name, .owner = plugin, .flags = t->flags, .validate = t->validate};
    return 0;
}

/* Loads every plugin config asks for and builds the registry. */
int sc__registry_load(const sc__config_t *cfg, sc__registry_t **out, char *err, size_t errlen)
{
    const json_t *pcfg = json_object_get(cfg->core, "plugins");
    const char *dir = json_string_value(json_object_get(pcfg, "dir"));
    const json_t *load = json_object_get(pcfg, "load");
    const json_t *optional = json_object_get(pcfg, "optional");
    sc__registry_t *reg = calloc(1, sizeof *reg);
    struct dirent **names = NULL;
    int n = 0, rc = -EINVAL;

    n = scandir(dir, &names, NULL, alphasort);
    if (n < 0) {
        snprintf(err, errlen, "plugins.dir: could not read \"%s\": %s", dir, strerror(errno));
        n = 0;
        goto out;
    }
    reg->slots = calloc((size_t)n + 1, sizeof *reg->slots);
    for (int i = 0; i < n; i++) {
        const char *f = names[i]->d_name;
        size_t len = strlen(f);
        if (len < 4 || strcmp(f + len - 3, ".so") != 0)
            continue;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(len - 3), f);
        if (json_is_array(load) && !s_in_list(load, name))
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, f);
        sc__slot_t *slot = &reg->slots[reg->nslots];
        char perr[1024];
        if (sc__plugin_open(path, name, slot, perr, sizeof perr) < 0) {
            if (s_in_list(optional, name)) {
                sc__log(SC_LOG_WARNING, "core", "%s; going on without it (plugins.optional)", perr);
                continue;
            }
            snprintf(err, errlen, "%s", perr);
            goto out;
        }
        const json_t *given = sc__config_section(cfg, name);
        json_t *empty = json_object();
        rc = sc__pconfig_fill(slot->p->config, name, given ? given : empty, &slot->config, err,
                              errlen);
        json_decref(empty);
        if (rc < 0)
            goto out;
        rc = -EINVAL;
        slot->optional = s_in_list(optional, name);
        reg->nslots++;
    }
    size_t idx;
    const json_t *e;
    json_array_foreach(load, idx, e)
    {
        bool found = false;
        for (size_t i = 0; i < reg->nslots; i++)
            found |= strcmp(reg->slots[i].p->name, json_string_value(e)) == 0;
        if (!found && !s_in_list(optional, json_string_value(e))) {
            snprintf(err, errlen, "plugins.load: no plugin \"%s\" in \"%s\"", json_string_value(e),
                     dir);
            goto out;
        }
    }

    /* Every top-level group is the core's or a plugin's. */
    const char *key;
    json_t *v;
    json_object_foreach(cfg->doc, key, v)
    {
        if (!json_is_object(v) || sc__config_is_core_group(key))
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.so", dir, key);
        bool loaded = false;
        for (size_t i = 0; i < reg->nslots; i++)
            loaded |= strcmp(reg->slots[i].p->name, key) == 0;
        if (!loaded && access(path, F_OK) != 0) {
            snprintf(err, errlen, "%s: unknown section (no plugin of that name in \"%s\")", key,
                     dir);
            goto out;
        }
    }

    size_t cap = sc__directory_ntypes();
    for (size_t i = 0; i < reg->nslots; i++)
        for (const struct sc_type *t = reg->slots[i].p->types; t && t->name; t++)
            cap++;
    reg->types = calloc(cap + 1, sizeof *reg->types);
    for (size_t i = 0; i < sc__directory_ntypes(); i++) {
        const struct sc_type *t = sc__directory_type(i);
        reg->types[reg->ntypes++] = (sc__type_t){
            .name = t->name, .owner = SC__CORE, .flags = t->flags, .validate = t->validate};
    }
    for (size_t i = 0; i < reg->nslots; i++) {
        for (const struct sc_type *t = reg->slots[i].p->types; t && t->name; t++) {
            if (strncmp(t->name, "directory.", 10) == 0) {
                snprintf(err, errlen, "plugin %s declares %s: directory types are the core's",
                         reg->slots[i].p->name, t->name);
                goto out;
            }
            if ((rc = s_add_type(reg, cap, t->name, (int)i, t, err, errlen)) < 0)
                goto out;
        }
    }
    qsort(reg->types, reg->ntypes, sizeof *reg->types, s_cmp_type);
    *out = reg;
    reg = NULL;
    rc = 0;
out:
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    sc__registry_free(&reg);
    return rc;
}

void sc__registry_free(sc__registry_t **preg)
{
    sc__registry_t *reg = *preg;
    if (!reg)
        return;
    for (size_t i = 0; reg->slots && i < reg->nslots + 1; i++) {
        json_decref(reg->slots[i].config);
        free(reg->slots[i].path);
        /* The .so stays mapped: names, type names and validators point into it. */
    }
    free(reg->slots);
    free(reg->types);
    free(reg);
    *preg = NULL;
}

int sc__registry_slot(const sc__registry_t *reg, const char *name)
{
    for (size_t i = 0; i < reg->nslots; i++)
        if (strcmp(reg->slots[i].p->name, name) == 0)
            return (int)i;
    return -1;
}

bool sc__plugin_declares(const struct sc_plugin *p, const char *type)
{
    for (const struct sc_type *t = p->types; t && t->name; t++)
        if (strcmp(t->name, type) == 0)
            return true;
    return false;
}

/* Whether `s` starts with `prefix`. */
static bool s_starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

char **sc__subscribe_narrow(const char *const *outer, const char *const *wanted)
{
    size_t cap = 1, n = 0;
    for (const char *const *o = outer; o && *o; o++)
        for (const char *const *w = wanted; w && *w; w++)
            cap++;
    char **out = calloc(cap, sizeof *out);
    if (!out)
        return NULL;
    /* Each pair gives the longer of the two when one starts with the other. */
    for (const char *const *o = outer; o && *o; o++) {
        for (const char *const *w = wanted; w && *w; w++) {
            const char *p = s_starts(*w, *o) ? *w : s_starts(*o, *w) ? *o : NULL;
            bool covered = !p;
            for (size_t i = 0; i < n && !covered; i++)
                covered = s_starts(p, out[i]);
            if (covered)
                continue;
            /* It covers any kept so far that start with it. */
            size_t k = 0;
            for (size_t i = 0; i < n; i++) {
                if (s_starts(out[i], p))
                    free(out[i]);
                else
                    out[k++] = out[i];
            }
            n = k;
            if (!(out[n] = strdup(p))) {
                sc__strv_free(out);
                return NULL;
            }
            out[++n] = NULL;
        }
    }
    for (size_t i = n; i < cap; i++)
        out[i] = NULL;
    return out;
}

void sc__strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}
