/* A fake host for plugin unit tests: the real .so, a real scratch database, a hand-set clock. */
#include "fakehost.h"

#include "../../daemon/internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fh {
    struct sc_ctx base; /* must be first: plugins reach the host through it */
    const struct sc_plugin *plugin;
    void *dl;
    void *state;
    bool inited;
    PGconn *conn;
    char dbname[64];
    char *admin_conninfo;
    sc_time_t now;
    json_t *config;
    json_t *schools;   /* array of school objects */
    json_t *people;    /* array of person objects */
    json_t *classes;   /* array of class objects, each with its "school" */
    json_t *pending;   /* emitted in the running callback */
    json_t *committed; /* emitted and committed, not yet taken */
    int64_t next_id;
    char **subs; /* what init asked for (sc_host.subscribe), narrowed; NULL: the plugin's own */
};

static int s_vlog_enabled(sc_ctx_t *ctx, int level)
{
    (void)ctx;
    return level <= (getenv("FH_DEBUG") ? SC_LOG_DEBUG : SC_LOG_WARNING);
}

static void s_vlog(sc_ctx_t *ctx, int level, const char *fmt, va_list ap)
{
    fh_t *self = (fh_t *)ctx;
    sc__vlog(level, self->plugin->name, fmt, ap);
}

static sc_time_t s_now(sc_ctx_t *ctx)
{
    return ((fh_t *)ctx)->now;
}
static PGconn *s_db(sc_ctx_t *ctx)
{
    return ((fh_t *)ctx)->conn;
}
static const json_t *s_config(sc_ctx_t *ctx)
{
    return ((fh_t *)ctx)->config;
}

static int s_emit(sc_ctx_t *ctx, const sc_emit_t *ev)
{
    fh_t *self = (fh_t *)ctx;
    char when[SC_TIME_LEN];
    bool owned = false;
    for (const struct sc_type *t = self->plugin->types; t && t->name; t++)
        owned |= strcmp(t->name, ev->type) == 0;
    if (!owned) {
        fprintf(stderr, "fakehost: %s emitted %s, a type it does not own\n", self->plugin->name,
                ev->type);
        return -EINVAL;
    }
    if (!json_is_object(ev->data))
        return -EINVAL;
    json_t *env = json_pack("{s:s, s:s, s:s?, s:s?, s:s?, s:s?, s:s, s:O}", "type", ev->type,
                            "source", self->plugin->name, "school", ev->school, "district",
                            ev->district, "id", ev->id, "actor", ev->actor, "occurred_at",
                            sc_time_format(ev->occurred_at ? ev->occurred_at : self->now, when),
                            "data", ev->data);
    if (!env)
        return -ENOMEM;
    json_array_append_new(self->pending, env);
    return 0;
}

static bool s_has_role(const json_t *p, const char *role)
{
    size_t i;
    const json_t *r;
    json_array_foreach(json_object_get(p, "roles"), i,
                       r) if (json_is_string(r) &&
                              strcmp(json_string_value(r), role) == 0) return true;
    return false;
}

static bool s_streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static json_t *s_people_with_role(sc_ctx_t *ctx, const char *school, const char *district,
                                  const char *role)
{
    fh_t *self = (fh_t *)ctx;
    json_t *out = json_array();
    size_t i;
    const json_t *p;
    json_array_foreach(self->people, i, p)
    {
        if (!s_has_role(p, role))
            continue;
        const char *ps = sc_json_str(p, "school"), *pd = sc_json_str(p, "district");
        if ((school && s_streq(ps, school)) ||
            (!school && district && !ps && s_streq(pd, district)))
            json_array_append(out, (json_t *)p);
    }
    return out;
}

static json_t *s_school(sc_ctx_t *ctx, const char *school)
{
    fh_t *self = (fh_t *)ctx;
    size_t i;
    const json_t *s;
    json_array_foreach(self->schools, i, s) if (s_streq(sc_json_str(s, "school"), school))
    {
        json_t *copy = json_deep_copy(s);
        if (!sc_json_str(copy, "timezone"))
            json_object_set_new(copy, "timezone", json_string("Asia/Shanghai"));
        return copy;
    }
    return NULL;
}

static json_t *s_person(sc_ctx_t *ctx, const char *person)
{
    fh_t *self = (fh_t *)ctx;
    size_t i;
    const json_t *p;
    json_array_foreach(self->people, i,
                       p) if (s_streq(sc_json_str(p, "person"), person)) return json_deep_copy(p);
    return NULL;
}

static const char *s_default_tz(sc_ctx_t *ctx)
{
    (void)ctx;
    return "Asia/Shanghai";
}

static json_t *s_school_class(sc_ctx_t *ctx, const char *school, const char *klass)
{
    fh_t *self = (fh_t *)ctx;
    size_t i;
    const json_t *c;
    json_array_foreach(self->classes, i,
                       c) if (s_streq(sc_json_str(c, "school"), school) &&
                              s_streq(sc_json_str(c, "class"), klass)) return json_deep_copy(c);
    return NULL;
}

static json_t *s_district_schools(sc_ctx_t *ctx, const char *district)
{
    fh_t *self = (fh_t *)ctx;
    json_t *out = json_array();
    size_t i;
    const json_t *s;
    json_array_foreach(self->schools, i, s) if (s_streq(sc_json_str(s, "district"), district))
        json_array_append_new(out, s_school(ctx, sc_json_str(s, "school")));
    return out;
}

static int s_subscribe(sc_ctx_t *ctx, const char *const *prefixes)
{
    fh_t *self = (fh_t *)ctx;
    char **subs = sc__subscribe_narrow(self->plugin->subscribe, prefixes);
    if (!subs)
        return -ENOMEM;
    sc__strv_free(self->subs);
    self->subs = subs;
    return 0;
}

static const struct sc_host s_host = {
    .abi = SC_PLUGIN_ABI,
    .size = sizeof(struct sc_host),
    .vlog = s_vlog,
    .log_enabled = s_vlog_enabled,
    .now = s_now,
    .db = s_db,
    .config = s_config,
    .emit = s_emit,
    .people_with_role = s_people_with_role,
    .school = s_school,
    .person = s_person,
    .default_timezone = s_default_tz,
    .school_class = s_school_class,
    .district_schools = s_district_schools,
    .subscribe = s_subscribe,
};

static int s_exec(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "fakehost: %s: %s", sql, PQerrorMessage(conn));
    PQclear(res);
    return ok ? 0 : -EIO;
}

static PGconn *s_connect(const char *conninfo, const char *dbname)
{
    const char *keys[] = {"dbname", "dbname", NULL};
    const char *vals[] = {conninfo, dbname, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "fakehost: could not connect: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    PQclear(PQexec(c, "SET TimeZone = 'UTC'"));
    return c;
}

fh_t *fh_new(const char *so_path, const char *config_json, sc_time_t start)
{
    const char *conninfo = getenv("SC_TEST_CONNINFO");
    if (!conninfo) {
        fprintf(stderr, "fakehost: SC_TEST_CONNINFO is not set (run through make test)\n");
        return NULL;
    }
    fh_t *self = calloc(1, sizeof *self);
    self->base.host = &s_host;
    self->now = start;
    self->schools = json_array();
    self->people = json_array();
    self->classes = json_array();
    self->pending = json_array();
    self->committed = json_array();
    self->admin_conninfo = strdup(conninfo);

    /* Never unloaded, like in the daemon: libraries the plugin pulls in keep their caches. */
    self->dl = dlopen(so_path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!self->dl) {
        fprintf(stderr, "fakehost: %s\n", dlerror());
        goto fail;
    }
    sc_plugin_entry_fn entry = (sc_plugin_entry_fn)dlsym(self->dl, SC_PLUGIN_ENTRY);
    if (!entry || !(self->plugin = entry()) || self->plugin->abi != SC_PLUGIN_ABI) {
        fprintf(stderr, "fakehost: %s: no entry or wrong ABI\n", so_path);
        goto fail;
    }

    char err[512];
    json_t *given = config_json ? json_loads(config_json, 0, NULL) : json_object();
    if (!given || sc__pconfig_fill(self->plugin->config, self->plugin->name, given, &self->config,
                                   err, sizeof err) < 0) {
        fprintf(stderr, "fakehost: config: %s\n", given ? err : "not JSON");
        json_decref(given);
        goto fail;
    }
    json_decref(given);

    PGconn *admin = s_connect(conninfo, NULL);
    if (!admin)
        goto fail;
    snprintf(self->dbname, sizeof self->dbname, "fh_%s_%d", self->plugin->name, (int)getpid());
    char sql[160];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", self->dbname);
    s_exec(admin, sql);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", self->dbname);
    int rc = s_exec(admin, sql);
    PQfinish(admin);
    if (rc < 0) {
        self->dbname[0] = '\0';
        goto fail;
    }
    if (!(self->conn = s_connect(conninfo, self->dbname)))
        goto fail;
    if (sc__migrate_lock(self->conn, true, err, sizeof err) < 0 ||
        sc__migrate(self->conn, self->plugin->name, self->plugin->migrations, err, sizeof err) <
            0) {
        fprintf(stderr, "fakehost: %s\n", err);
        goto fail;
    }
    sc__migrate_lock(self->conn, false, err, sizeof err);
    if (self->plugin->init && self->plugin->init(&self->base, &self->state) < 0) {
        fprintf(stderr, "fakehost: %s: init failed\n", self->plugin->name);
        goto fail;
    }
    self->inited = true;
    return self;
fail:
    fh_destroy(&self);
    return NULL;
}

void fh_destroy(fh_t **pself)
{
    fh_t *self = *pself;
    if (!self)
        return;
    if (self->plugin && self->plugin->fini)
        self->plugin->fini(&self->base, self->state);
    PQfinish(self->conn);
    if (self->dbname[0] && !getenv("FH_KEEP_DB")) {
        PGconn *admin = s_connect(self->admin_conninfo, NULL);
        if (admin) {
            char sql[160];
            snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", self->dbname);
            s_exec(admin, sql);
            PQfinish(admin);
        }
    }
    json_decref(self->config);
    json_decref(self->schools);
    json_decref(self->people);
    json_decref(self->classes);
    json_decref(self->pending);
    json_decref(self->committed);
    free(self->admin_conninfo);
    sc__strv_free(self->subs);
    if (self->dl)
        dlclose(self->dl);
    free(self);
    *pself = NULL;
}

const struct sc_plugin *fh_plugin(fh_t *self)
{
    return self->plugin;
}
PGconn *fh_db(fh_t *self)
{
    return self->conn;
}
void fh_set_now(fh_t *self, sc_time_t now)
{
    self->now = now;
}
sc_time_t fh_now(fh_t *self)
{
    return self->now;
}

void fh_add_school(fh_t *self, const char *json)
{
    json_t *s = json_loads(json, 0, NULL);
    if (s)
        json_array_append_new(self->schools, s);
}

void fh_add_person(fh_t *self, const char *json)
{
    json_t *p = json_loads(json, 0, NULL);
    if (p)
        json_array_append_new(self->people, p);
}

void fh_add_class(fh_t *self, const char *json)
{
    json_t *c = json_loads(json, 0, NULL);
    if (c)
        json_array_append_new(self->classes, c);
}

/* Fills an sc_event_t that borrows from env; returns -EINVAL when env is not usable. */
static int s_event(fh_t *self, const json_t *env, sc_event_t *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->id = ++self->next_id;
    ev->type = sc_json_str(env, "type");
    ev->school = sc_json_str(env, "school");
    ev->district = sc_json_str(env, "district");
    ev->source = sc_json_str(env, "source") ? sc_json_str(env, "source") : "test";
    ev->source_id = sc_json_str(env, "id");
    ev->actor = sc_json_str(env, "actor");
    ev->occurred_at = sc_json_time(env, "occurred_at", self->now);
    ev->received_at = self->now;
    ev->data = json_object_get(env, "data");
    if (!ev->district && ev->school) {
        json_t *s = s_school(&self->base, ev->school);
        if (s) {
            /* Keep the string alive in env, which outlives the event. */
            json_object_set((json_t *)env, "district", json_object_get(s, "district"));
            ev->district = sc_json_str(env, "district");
            json_decref(s);
        }
    }
    return ev->type && json_is_object(ev->data) ? 0 : -EINVAL;
}

int fh_validate(fh_t *self, const char *envelope_json, char *detail, size_t dlen)
{
    json_t *env = json_loads(envelope_json, 0, NULL);
    sc_event_t ev;
    int rc = -EINVAL;
    if (!env || s_event(self, env, &ev) < 0) {
        snprintf(detail, dlen, "fakehost: not an envelope");
        goto out;
    }
    rc = -ENOENT;
    snprintf(detail, dlen, "type: %s is not owned by %s", ev.type, self->plugin->name);
    for (const struct sc_type *t = self->plugin->types; t && t->name; t++) {
        if (strcmp(t->name, ev.type) != 0)
            continue;
        detail[0] = '\0';
        rc = t->validate ? t->validate(&ev, detail, dlen) : 0;
        break;
    }
out:
    json_decref(env);
    return rc;
}

/* Runs fn inside BEGIN … COMMIT/ROLLBACK, moving emitted events to committed on success. */
static int s_in_tx(fh_t *self, int (*fn)(fh_t *, void *), void *arg)
{
    if (s_exec(self->conn, "BEGIN") < 0)
        return -EIO;
    json_array_clear(self->pending);
    int rc = fn(self, arg);
    if (rc == 0 && s_exec(self->conn, "COMMIT") == 0) {
        json_array_extend(self->committed, self->pending);
    } else {
        s_exec(self->conn, "ROLLBACK");
        if (rc == 0)
            rc = -EIO;
    }
    json_array_clear(self->pending);
    return rc;
}

static int s_end_batch(fh_t *self, bool keep)
{
    const struct sc_plugin *p = self->plugin;
    return SC_PLUGIN_HAS(p, end_batch) && p->end_batch
               ? p->end_batch(&self->base, self->state, keep)
               : 0;
}

/* One event is a batch of one: handle, then the batch's end, as the daemon runs them. */
static int s_do_handle(fh_t *self, void *arg)
{
    int rc = self->plugin->handle(&self->base, self->state, arg);
    int end = s_end_batch(self, rc == 0);
    return rc < 0 ? rc : end;
}

typedef struct s_batch {
    sc_event_t *evs;
    size_t n;
    bool keep;
} s_batch_t;

static int s_do_batch(fh_t *self, void *arg)
{
    s_batch_t *b = arg;
    int rc = 0;
    for (size_t i = 0; i < b->n && rc == 0; i++)
        rc = self->plugin->handle(&self->base, self->state, &b->evs[i]);
    bool keep = rc == 0 && b->keep;
    int end = s_end_batch(self, keep);
    if (rc == 0 && !b->keep)
        return -ECANCELED; /* rolled back on purpose */
    return rc < 0 ? rc : end;
}

int fh_handle_batch(fh_t *self, const char *const *envelopes, size_t n, bool keep)
{
    json_t *envs = json_array();
    sc_event_t *evs = calloc(n ? n : 1, sizeof *evs);
    int rc = -EINVAL;
    size_t taken = 0;
    for (size_t i = 0; i < n; i++) {
        json_error_t jerr;
        json_t *env = json_loads(envelopes[i], 0, &jerr);
        if (!env) {
            fprintf(stderr, "fakehost: fixture is not JSON: %s\n", jerr.text);
            goto out;
        }
        json_array_append_new(envs, env);
        if (s_event(self, env, &evs[taken]) < 0)
            goto out;
        taken += fh_subscribed(self, evs[taken].type); /* as the daemon: others never come */
    }
    s_batch_t b = {evs, taken, keep};
    rc = s_in_tx(self, s_do_batch, &b);
out:
    free(evs);
    json_decref(envs);
    return rc;
}

int fh_handle(fh_t *self, const char *envelope_json)
{
    json_error_t jerr;
    json_t *env = json_loads(envelope_json, 0, &jerr);
    sc_event_t ev;
    int rc = -EINVAL;
    if (!env) {
        fprintf(stderr, "fakehost: fixture is not JSON: %s\n", jerr.text);
        return rc;
    }
    if (s_event(self, env, &ev) == 0) /* as the daemon, only the types the plugin reads */
        rc = self->plugin->handle && fh_subscribed(self, ev.type) ? s_in_tx(self, s_do_handle, &ev)
                                                                  : 0;
    json_decref(env);
    return rc;
}

static int s_do_tick(fh_t *self, void *arg)
{
    return self->plugin->tick(&self->base, self->state, self->now, arg);
}

int fh_tick(fh_t *self, sc_time_t *next)
{
    sc_time_t n = SC_TIME_NEVER;
    int rc = self->plugin->tick ? s_in_tx(self, s_do_tick, &n) : 0;
    if (next)
        *next = n;
    return rc;
}

int fh_advance_to(fh_t *self, sc_time_t to)
{
    sc_time_t next;
    int rc = fh_tick(self, &next);
    for (int guard = 0; rc == 0 && next <= to && guard < 100000; guard++) {
        if (next > self->now)
            self->now = next;
        rc = fh_tick(self, &next);
        if (next <= self->now)
            break; /* the plugin has nothing further before `to` */
    }
    if (rc == 0 && self->now < to) {
        self->now = to;
        rc = fh_tick(self, NULL);
    }
    return rc;
}

struct s_query_args {
    const json_t *req;
    json_t *reply;
};

static int s_do_query(fh_t *self, void *arg)
{
    struct s_query_args *a = arg;
    return self->plugin->query(&self->base, self->state, a->req, &a->reply);
}

json_t *fh_query(fh_t *self, const char *request_json, int *rc)
{
    struct s_query_args a = {json_loads(request_json, 0, NULL), NULL};
    int r = -EINVAL;
    if (a.req && self->plugin->query) {
        s_exec(self->conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
        r = s_do_query(self, &a);
        s_exec(self->conn, "COMMIT");
    }
    json_decref((json_t *)a.req);
    if (rc)
        *rc = r;
    return a.reply;
}

json_t *fh_take_emitted(fh_t *self)
{
    json_t *out = self->committed;
    self->committed = json_array();
    return out;
}

const json_t *fh_find(const json_t *arr, const char *type)
{
    size_t i;
    const json_t *e;
    json_array_foreach(arr, i, e) if (s_streq(sc_json_str(e, "type"), type)) return e;
    return NULL;
}

size_t fh_count(const json_t *arr, const char *type)
{
    size_t i, n = 0;
    const json_t *e;
    json_array_foreach(arr, i, e) n += s_streq(sc_json_str(e, "type"), type);
    return n;
}

bool fh_subscribed(fh_t *self, const char *type)
{
    const char *const *list =
        self->subs ? (const char *const *)self->subs : self->plugin->subscribe;
    for (; list && *list; list++)
        if (strncmp(type, *list, strlen(*list)) == 0)
            return true;
    return false;
}
