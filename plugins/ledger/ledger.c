/* ledger plugin: the school's safety records outside hazards, inspections, incidents and health. */
#include "ledger.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

extern const struct sc_migration ledger_migrations[];

/* Exact types (a prefix that is a whole type matches only it): never our own emitted events. */
static const char *const s_subscribe[] = {
    "leadership.member.upserted",
    "rule.published",
    "agreement.signed",
    "agreement.roster",
    "drill.scheduled",
    "drill.started",
    "drill.ended",
    "drill.conducted",
    "drill.cancelled",
    "education.session",
    "meeting.held",
    "outing.submitted",
    "outing.approved",
    "outing.returned",
    "gate.entry",
    "gate.exit",
    "directory.school.upserted",
    NULL,
};

static const struct sc_config_key s_config_keys[] = {
    {"terms", SC_CFG_LIST,
     "[{\"from\":\"09-01\",\"to\":\"01-20\"},{\"from\":\"02-20\",\"to\":\"07-10\"}]",
     "terms of the school year, {from, to} as \"MM-DD\" (every year) or \"YYYY-MM-DD\""},
    {"district_terms", SC_CFG_LIST, "[]",
     "per district calendars: [{district = \"…\"; terms = ( {from, to}, … )}]"},
    {"drill_check", SC_CFG_BOOL, "true", "check the monthly drill minimum and raise drill.overdue"},
    {"drill_kinds", SC_CFG_LIST, "[\"evacuation\",\"fire\",\"earthquake\"]",
     "drill kinds that count as evacuation drills for the monthly minimum"},
    {"drill_min_per_month", SC_CFG_INT, "1", "evacuation drills required per month in term"},
    {"drill_min_term_days", SC_CFG_INT, "14",
     "a month with fewer in-term days than this is not checked"},
    {"outing_notice_days", SC_CFG_INT, "15",
     "an outing plan must reach the principal this many days before it starts"},
    {"outing_approver_roles", SC_CFG_LIST, "[\"principal\"]",
     "roles that may approve an outing (empty: anyone)"},
    {"outing_return_grace", SC_CFG_DURATION, "\"2h\"",
     "time after an approved outing's end before outing.reminder if no return was reported"},
    {"outing_reminder_interval", SC_CFG_DURATION, "\"1d\"", "interval between outing reminders"},
    {"outing_reminder_max", SC_CFG_INT, "3", "reminders per outing"},
    {"gate_closing_time", SC_CFG_STRING, "\"18:00\"",
     "local time by which visitors must have left (gate.overstay)"},
    {"gate_late_visit_grace", SC_CFG_DURATION, "\"1h\"",
     "for a visitor entering after closing time: time allowed before gate.overstay"},
    {"agreement_directory_roles", SC_CFG_LIST, "[\"head_teacher\",\"teacher\"]",
     "agreement roles whose signers default to the directory's people with that role"},
    {"education_per_month", SC_CFG_INT, "1",
     "safety education sessions expected per month in term (assessment)"},
    {"assessment_weights", SC_CFG_GROUP,
     "{\"inspections\":25,\"hazards\":25,\"drills\":20,\"education\":15,\"agreements\":15}",
     "weights of the year-end assessment's components"},
    {"assessment_incident_penalty", SC_CFG_GROUP, "{\"I\":40,\"II\":20,\"III\":10,\"IV\":5}",
     "points taken off the assessment per incident of each severity"},
    {"page_limit", SC_CFG_INT, "500", "default rows per page of a ledger answer"},
    {NULL, 0, NULL, NULL},
};

static void s_fini(sc_ctx_t *ctx, void *state)
{
    (void)ctx;
    lg_state_t *st = state;
    if (!st)
        return;
    lg_terms_free(st);
    for (int i = 0; i < 4; i++)
        sc_pqbuf_free(&st->card_cols[i]);
    json_decref(st->card_schools);
    json_decref(st->visits);
    json_decref(st->visit_keys);
    free(st->drill_kinds);
    json_decref(st->approver_roles);
    json_decref(st->agreement_directory_roles);
    json_decref(st->weights);
    json_decref(st->penalties);
    free(st);
}

/* A list of strings from the config, or NULL (logged). New reference. */
static json_t *s_string_list(sc_ctx_t *ctx, const json_t *cfg, const char *key)
{
    const json_t *v = json_object_get(cfg, key), *e;
    size_t i;
    json_array_foreach(v, i, e) if (!json_is_string(e))
    {
        SC_LOG_ERR(ctx, "ledger.%s[%zu]: expected a string", key, i);
        return NULL;
    }
    return json_is_array(v) ? json_incref((json_t *)v) : NULL;
}

/* A group of numbers ≥ 0 from the config, or NULL (logged). New reference. */
static json_t *s_number_group(sc_ctx_t *ctx, const json_t *cfg, const char *key,
                              const char *const *allowed)
{
    const json_t *v = json_object_get(cfg, key), *e;
    const char *k;
    json_object_foreach((json_t *)v, k, e)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i]; i++)
            ok |= strcmp(allowed[i], k) == 0;
        if (!ok || !json_is_number(e) || json_number_value(e) < 0) {
            SC_LOG_ERR(ctx, "ledger.%s.%s: %s", key, k,
                       ok ? "expected a number of at least 0" : "unknown key");
            return NULL;
        }
    }
    return json_is_object(v) ? json_incref((json_t *)v) : NULL;
}

static bool s_clock_time(const char *s)
{
    return s && strlen(s) == 5 && isdigit((unsigned char)s[0]) && isdigit((unsigned char)s[1]) &&
           s[2] == ':' && isdigit((unsigned char)s[3]) && isdigit((unsigned char)s[4]) &&
           atoi(s) < 24 && atoi(s + 3) < 60;
}

/* Reads and checks the config section; the plugin keeps no other state. */
static int s_init(sc_ctx_t *ctx, void **state)
{
    static const char *const components[] = {"inspections", "hazards",    "drills",
                                             "education",   "agreements", NULL};
    static const char *const severities[] = {"I", "II", "III", "IV", NULL};
    const json_t *cfg = sc_config(ctx);
    lg_state_t *st = calloc(1, sizeof *st);
    int rc = -ENOMEM;
    if (!st)
        return rc;
    *state = st;
    if (!(st->card_schools = json_object()) || !(st->visits = json_array()) ||
        !(st->visit_keys = json_object()))
        return rc;
    rc = -EINVAL;
    if (lg_terms_load(ctx, st, json_object_get(cfg, "terms"),
                      json_object_get(cfg, "district_terms")) < 0)
        return rc;
    json_t *kinds = s_string_list(ctx, cfg, "drill_kinds");
    if (!kinds)
        return rc;
    st->drill_kinds = json_dumps(kinds, JSON_COMPACT);
    json_decref(kinds);
    if (!(st->approver_roles = s_string_list(ctx, cfg, "outing_approver_roles")) ||
        !(st->agreement_directory_roles = s_string_list(ctx, cfg, "agreement_directory_roles")) ||
        !(st->weights = s_number_group(ctx, cfg, "assessment_weights", components)) ||
        !(st->penalties = s_number_group(ctx, cfg, "assessment_incident_penalty", severities)))
        return rc;
    st->drill_check = sc_json_bool(cfg, "drill_check", true);
    st->drill_min_per_month = (int)sc_json_int(cfg, "drill_min_per_month", 1);
    st->drill_min_term_days = (int)sc_json_int(cfg, "drill_min_term_days", 14);
    st->outing_notice_days = (int)sc_json_int(cfg, "outing_notice_days", 15);
    st->outing_return_grace = sc_json_int(cfg, "outing_return_grace", 7200);
    st->outing_reminder_interval = sc_json_int(cfg, "outing_reminder_interval", 86400);
    st->outing_reminder_max = (int)sc_json_int(cfg, "outing_reminder_max", 3);
    st->late_visit_grace = sc_json_int(cfg, "gate_late_visit_grace", 3600);
    st->education_per_month = (int)sc_json_int(cfg, "education_per_month", 1);
    st->page_limit = (int)sc_json_int(cfg, "page_limit", 500);
    const char *closing = sc_json_str(cfg, "gate_closing_time");
    if (!s_clock_time(closing)) {
        SC_LOG_ERR(ctx, "ledger.gate_closing_time: expected \"HH:MM\"");
        return rc;
    }
    snprintf(st->closing_time, sizeof st->closing_time, "%s", closing);
    if (st->drill_min_per_month < 0 || st->drill_min_term_days < 0 || st->outing_notice_days < 0 ||
        st->outing_reminder_max < 0 || st->education_per_month < 0 || st->page_limit < 1 ||
        st->page_limit > 5000 || st->outing_reminder_interval <= 0) {
        SC_LOG_ERR(ctx, "ledger: counts must be at least 0, outing_reminder_interval above 0, "
                        "page_limit between 1 and 5000");
        return rc;
    }
    return 0;
}

static int s_handle(sc_ctx_t *ctx, void *state, const sc_event_t *ev)
{
    return lg_handle(ctx, state, ev);
}

static int s_tick(sc_ctx_t *ctx, void *state, sc_time_t now, sc_time_t *next)
{
    return lg_tick(ctx, state, now, next);
}

static int s_query(sc_ctx_t *ctx, void *state, const json_t *req, json_t **reply)
{
    return lg_query(ctx, state, req, reply);
}

static const struct sc_plugin s_plugin = {
    .abi = SC_PLUGIN_ABI,
    .size = sizeof(struct sc_plugin),
    .name = LG_NAME,
    .version = "1.0.0",
    .description = "safety ledger: leadership, agreements, rules, drills, education, meetings, "
                   "outings, gate register; year-end assessment; the ledger export's sections",
    .subscribe = s_subscribe,
    .types = lg_types,
    .config = s_config_keys,
    .migrations = ledger_migrations,
    .init = s_init,
    .handle = s_handle,
    .tick = s_tick,
    .query = s_query,
    .fini = s_fini,
    .end_batch = lg_end_batch,
};

SC_PLUGIN_DEFINE(s_plugin)
