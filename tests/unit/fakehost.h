/* A fake host for plugin unit tests: loads the real .so, gives it a real database and a hand-set
 * clock. */
#ifndef SC_TEST_FAKEHOST_H
#define SC_TEST_FAKEHOST_H

#include <safecampus/plugin.h>
#include <safecampus/util.h>

typedef struct fh fh_t;

/*
 * Loads the plugin at so_path (e.g. "build/plugins/hazard_tracker.so"),
 * creates a scratch database on the cluster named by $SC_TEST_CONNINFO
 * (dropped again by fh_destroy), applies the plugin's migrations, fills its
 * config from config_json (NULL: all defaults; refused keys fail the call)
 * and runs init. The clock starts at start. Returns NULL (with a message on
 * stderr) on failure.
 */
fh_t *fh_new(const char *so_path, const char *config_json, sc_time_t start);
void fh_destroy(fh_t **self);

const struct sc_plugin *fh_plugin(fh_t *self);
PGconn *fh_db(fh_t *self);
void fh_set_now(fh_t *self, sc_time_t now);
sc_time_t fh_now(fh_t *self);

/*
 * Adds a directory entry as the core would from directory.*.upserted:
 * schools {"school","name","district","timezone"} and people
 * {"person","name","roles":[…],"contacts":{…},"school" or "district"}.
 */
void fh_add_school(fh_t *self, const char *json);
void fh_add_person(fh_t *self, const char *json);
/* Classes {"school","class","grade","head_teacher"}. */
void fh_add_class(fh_t *self, const char *json);

/*
 * Runs the owning plugin's validator for envelope_json's type, as ingest
 * would. Returns 0, or -EINVAL with the detail written.
 */
int fh_validate(fh_t *self, const char *envelope_json, char *detail, size_t dlen);

/*
 * Hands one event to handle() inside a transaction committed on success and
 * rolled back on failure, as the daemon does. envelope_json is an envelope
 * as sent on the wire; occurred_at defaults to the clock. Returns handle()'s
 * return value (or -EIO when the transaction itself failed).
 */
int fh_handle(fh_t *self, const char *envelope_json);

/*
 * Hands n events to handle() in one transaction and then calls end_batch, as
 * the daemon's runner does with a batch; keep = false rolls the batch back
 * after its last event (end_batch told to drop) and returns -ECANCELED.
 */
int fh_handle_batch(fh_t *self, const char *const *envelopes, size_t n, bool keep);

/*
 * Whether the daemon would hand events of `type` to the plugin: its subscribe
 * list, or what its init asked for (sc_host.subscribe) within that list.
 */
bool fh_subscribed(fh_t *self, const char *type);

/* Runs tick() at the clock's time in a transaction; *next gets the plugin's next instant. */
int fh_tick(fh_t *self, sc_time_t *next);

/*
 * Moves the clock to `to` the way the daemon's manual clock does: tick at each
 * instant the plugin asked for up to `to`, then at `to`. Returns 0 or the
 * first failing tick's return value.
 */
int fh_advance_to(fh_t *self, sc_time_t to);

/* Runs query() in a read-only transaction; returns the reply (new reference) and sets *rc. */
json_t *fh_query(fh_t *self, const char *request_json, int *rc);

/*
 * Events emitted and committed since the last call, as an array of envelopes
 * {"type","school","district","source","id","actor","occurred_at","data"}.
 * New reference; the list is emptied.
 */
json_t *fh_take_emitted(fh_t *self);

/* The first taken-or-pending emitted event of `type` in arr, or NULL (borrowed). */
const json_t *fh_find(const json_t *arr, const char *type);
/* How many events of `type` are in arr. */
size_t fh_count(const json_t *arr, const char *type);

#endif
