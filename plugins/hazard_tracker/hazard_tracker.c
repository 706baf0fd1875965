/* hazard_tracker: the hazard-rectification ledger (隐患排查整改台帐): entry and config. */
#include "hazard_tracker.h"

#include <errno.h>
#include <stdlib.h>

extern const struct sc_migration hazard_tracker_migrations[];

static const char *const s_subscribe[] = {"hazard.", NULL};

static const struct sc_type s_types[] = {
    {"hazard.reported", 0, ht__validate_reported},
    {"hazard.assigned", 0, ht__validate_assigned},
    {"hazard.rectified", 0, ht__validate_rectified},
    {"hazard.verified", 0, ht__validate_verified},
    {"hazard.withdrawn", 0, ht__validate_withdrawn},
    {"hazard.commitments", 0, ht__validate_commitments},
    {"hazard.overdue", SC_TYPE_EMITTED, NULL},
    {"hazard.reminder", SC_TYPE_EMITTED, NULL},
    {"hazard.rejected", SC_TYPE_EMITTED, NULL},
    {"hazard.major.reported", SC_TYPE_EMITTED, NULL},
    {"hazard.closed", SC_TYPE_EMITTED, NULL},
    {NULL, 0, NULL},
};

static const struct sc_config_key s_config_keys[] = {
    {"deadline_days_general", SC_CFG_INT, "7",
     "days to rectify a general hazard when no deadline is given (to the end of that local day)"},
    {"deadline_days_major", SC_CFG_INT, "30",
     "days to rectify a major hazard when no deadline is given (interim measures meanwhile)"},
    {"reminder_interval", SC_CFG_DURATION, "\"1d\"",
     "hazard.reminder this often while an overdue hazard stays unrectified; 0: none"},
    {"verifier_must_differ", SC_CFG_BOOL, "true",
     "refuse a verification by the person who rectified the hazard"},
    {"require_commitments", SC_CFG_BOOL, "true",
     "a major hazard cannot be closed until its five commitments (五落实) are recorded"},
    {"report_major_to_district", SC_CFG_BOOL, "true",
     "raise hazard.major.reported for the district when a major hazard is reported"},
    {"overdue_major_to_district", SC_CFG_BOOL, "true",
     "overdue major hazards carry escalate_to \"district\" (general ones \"school\")"},
    {NULL, 0, NULL, NULL},
};

/* Reads the config (defaults already filled by the core) and refuses values out of range. */
static int s_init(sc_ctx_t *ctx, void **state)
{
    const json_t *c = sc_config(ctx);
    ht_state_t *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    *state = st;
    ht_config_t *cfg = &st->cfg;
    if (!(st->pending_keys = json_object()))
        return -ENOMEM;
    cfg->deadline_days_general = (int)sc_json_int(c, "deadline_days_general", 7);
    cfg->deadline_days_major = (int)sc_json_int(c, "deadline_days_major", 30);
    cfg->reminder_interval = sc_json_int(c, "reminder_interval", 86400);
    cfg->verifier_must_differ = sc_json_bool(c, "verifier_must_differ", true);
    cfg->require_commitments = sc_json_bool(c, "require_commitments", true);
    cfg->report_major_to_district = sc_json_bool(c, "report_major_to_district", true);
    cfg->overdue_major_to_district = sc_json_bool(c, "overdue_major_to_district", true);
    if (cfg->deadline_days_general < 0 || cfg->deadline_days_general > 3650 ||
        cfg->deadline_days_major < 0 || cfg->deadline_days_major > 3650) {
        SC_LOG_ERR(ctx, "deadline_days_general, deadline_days_major: must be between 0 and 3650");
        return -EINVAL;
    }
    if (cfg->reminder_interval != 0 && cfg->reminder_interval < 60) {
        SC_LOG_ERR(ctx, "reminder_interval: must be 0 (none) or at least 60 seconds");
        return -EINVAL;
    }
    return ht__prepare(ctx);
}

static int s_handle(sc_ctx_t *ctx, void *state, const sc_event_t *ev)
{
    return ht__handle(ctx, state, ev);
}

static int s_end_batch(sc_ctx_t *ctx, void *state, bool keep)
{
    return ht__end_batch(ctx, state, keep);
}

static int s_tick(sc_ctx_t *ctx, void *state, sc_time_t now, sc_time_t *next)
{
    return ht__tick(ctx, &((ht_state_t *)state)->cfg, now, next);
}

static int s_query(sc_ctx_t *ctx, void *state, const json_t *req, json_t **reply)
{
    return ht__query(ctx, &((ht_state_t *)state)->cfg, req, reply);
}

static void s_fini(sc_ctx_t *ctx, void *state)
{
    (void)ctx;
    ht_state_t *st = state;
    if (!st)
        return;
    ht__end_batch(NULL, st, false);
    sc_pqbuf_free(&st->rows);
    sc_pqbuf_free(&st->send);
    free(st->waiting);
    json_decref(st->pending_keys);
    free(st);
}

static const struct sc_plugin s_plugin = {
    .abi = SC_PLUGIN_ABI,
    .size = sizeof(struct sc_plugin),
    .name = HT_NAME,
    .version = "1.0.0",
    .description = "hazard-rectification ledger: report, assign, rectify, verify, close; "
                   "overdue and reminders",
    .subscribe = s_subscribe,
    .types = s_types,
    .config = s_config_keys,
    .migrations = hazard_tracker_migrations,
    .init = s_init,
    .handle = s_handle,
    .tick = s_tick,
    .query = s_query,
    .fini = s_fini,
    .end_batch = s_end_batch,
};

SC_PLUGIN_DEFINE(s_plugin)
