/* ledger: the types the plugin owns and their validators (pure, thread-safe, no database). */
#include "ledger.h"

#include <string.h>

#define D "data."
#define CHECK(expr)                                                                                \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ < 0)                                                                               \
            return rc_;                                                                            \
    } while (0)

static const char *const s_positions[] = {"leader", "deputy", "member", NULL};
static const char *const s_party_roles[] = {"head_teacher", "teacher", "staff",      "parent",
                                            "student",      "guard",   "department", NULL};
static const char *const s_drill_kinds[] = {"evacuation", "fire",  "earthquake", "lockdown",
                                            "flood",      "other", NULL};
static const char *const s_topics[] = {"traffic",       "cycling",  "drowning",     "electricity",
                                       "gas_poisoning", "fire",     "food_hygiene", "mental_health",
                                       "self_rescue",   "disaster", "bullying",     "epidemic",
                                       "internet",      "drugs",    "other",        NULL};
static const char *const s_gate_kinds[] = {"visitor", "pupil", NULL};

static bool s_is_code(const json_t *v)
{
    static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:";
    size_t n = json_string_length(v);
    return json_is_string(v) && n > 0 && n <= SC_CODE_MAX && strspn(json_string_value(v), ok) == n;
}

/* Each element of data[key] (already checked to be an array, or absent) a code. */
static int s_codes(const json_t *data, const char *key, char *detail, size_t dlen)
{
    const json_t *e;
    size_t i;
    json_array_foreach(json_object_get(data, key), i, e)
    {
        if (!s_is_code(e))
            return sc_fail(detail, dlen,
                           D "%s[%zu]: must be a code of 1 to %d letters, digits and - _ . :", key,
                           i, SC_CODE_MAX);
    }
    return 0;
}

/* Each element of data[key] a non-empty string of at most max bytes. */
static int s_strings(const json_t *data, const char *key, size_t max, char *detail, size_t dlen)
{
    const json_t *arr = json_object_get(data, key), *e;
    size_t i;
    json_array_foreach(arr, i, e)
    {
        if (!json_is_string(e) || json_string_length(e) == 0)
            return sc_fail(detail, dlen, D "%s[%zu]: expected a non-empty string", key, i);
        if (json_string_length(e) > max)
            return sc_fail(detail, dlen, D "%s[%zu]: longer than %zu bytes", key, i, max);
    }
    return 0;
}

/* end must not precede start when both are there. */
static int s_order(const json_t *data, const char *start, const char *end, char *detail,
                   size_t dlen)
{
    sc_time_t a = sc_json_time(data, start, 0), b = sc_json_time(data, end, 0);
    if (json_object_get(data, start) && json_object_get(data, end) && b < a)
        return sc_fail(detail, dlen, D "%s: must not be before %s", end, start);
    return 0;
}

static int s_leadership(const sc_event_t *ev, char *detail, size_t dlen)
{
    static const char *const known[] = {"member", "position", "duty",  "name",
                                        "title",  "active",   "since", NULL};
    const json_t *d = ev->data;
    CHECK(sc_check_known(d, D, known, detail, dlen));
    CHECK(sc_check_code(d, D, "member", true, detail, dlen));
    CHECK(sc_check_enum(d, D, "position", true, s_positions, detail, dlen));
    CHECK(sc_check_string(d, D, "duty", true, LG_TEXT_MAX, detail, dlen));
    CHECK(sc_check_string(d, D, "name", false, LG_SHORT_MAX, detail, dlen));
    CHECK(sc_check_string(d, D, "title", false, LG_SHORT_MAX, detail, dlen));
    CHECK(sc_check_bool(d, D, "active", false, detail, dlen));
    return sc_check_date(d, D, "since", false, detail, dlen);
}

static int s_rule(const sc_event_t *ev, char *detail, size_t dlen)
{
    static const char *const known[] = {"rule", "title",   "version",        "category",
                                        "url",  "summary", "effective_from", NULL};
    const json_t *d = ev->data;
    CHECK(sc_check_known(d, D, known, detail, dlen));
    CHECK(sc_check_code(d, D, "rule", true, detail, dlen));
    CHECK(sc_check_string(d, D, "title", true, LG_SHORT_MAX, detail, dlen));
    CHECK(sc_check_string(d, D, "version", true, 32, detail, dlen));
    CHECK(sc_check_string(d, D, "category", false, LG_SHORT_MAX, detail, dlen));
    CHECK(sc_check_string(d, D, "url", false, 1000, detail, dlen));
    CHECK(sc_check_string(d, D, "summary", false, LG_TEXT_MAX, detail, dlen));
    return sc_check_date(d, D, "effective_from", false, detail, dlen);
}

static int s_agreement(const sc_event_t *ev, char *detail, size_t dlen)
{
    static const char *const known[] = {"agreement", "party", "party_role",   "term",
                                        "signed_on", "title", "counterparty", NULL};
    const json_t *d = ev->data;
    CHECK(sc_check_known(d, D, known, detail, dlen));
    CHECK(sc_check_code(d, D, "agreement", true, detail, dlen));
    CHECK(sc_check_code(d, D, "party", true, detail, dlen));
    CHECK(sc_check_enum(d, D, "party_role", true, s_party_roles, detail, dlen));
    CHECK(sc_check_code(d, D, "term", true, detail, dlen));
    CHECK(sc_check_date(d, D, "signed_on", false, detail, dlen));
    CHECK(sc_check_string(d, D, "title", false, LG_SHORT_MAX, detail, dlen));
    return sc_check_code(d, D, "counterparty", false, detail, dlen);
}

static int s_roster(const sc_event_t *ev, char *detail, size_t dlen)
{
    static const char *const known[] = {"term", "party_role", "parties", "replace", NULL};
    const json_t *d = ev->data;
    CHECK(sc_check_known(d, D, known, detail, dlen));
    CHECK(sc_check_code(d, D, "term", true, detail, dlen));
    CHECK(sc_check_enum(d, D, "party_role", true, s_party_roles, detail, dlen));
    CHECK(sc_check_array(d, D, "parties", true, LG_ROSTER_MAX, detail, dlen));
    CHECK(s_codes(d, "parties", detail, dlen));
    return sc_check_bool(d, D, "replace", false, detail, dlen);
}

/* Fields shared by the drill types. */
static int s_drill_common(const json_t *d, char *detail, size_t dlen)
{
    CHECK(sc_check_code(d, D, "drill", true, detail, dlen));
    CHECK(sc_check_time(d, D, "starts_at", false, detail, dlen));
    CHECK(sc_check_time(d, D, "ends_at", false, detail, dlen));
    CHECK(s_order(d, "starts_at", "ends_at", detail, dlen));
    CHECK(sc_check_code(d, D, "responsible", false, detail, dlen));
    CHECK(sc_check_string(d, D, "note", false, LG_TEXT_MAX, detail, dlen));
    CHECK(sc_check_int(d, D, "participants", false, 0, 100000, detail, dlen));
    CHECK(sc_check_int(d, D, "evacuation_seconds", false, 0, 86400, detail, dlen));
    CHECK(sc_check_array(d, D, "problems", false, LG_ITEMS_MAX, detail, dlen));
    return s_strings(d, "problems", LG_TEXT_MAX, detail, dlen);
}

static const char *const s_drill_known[] = {
    "drill", "kind",         "starts_at",          "ends_at",  "responsible",
    "note",  "participants", "evacuation_seconds", "problems", NULL};

static int s_drill_scheduled(const sc_event_t *ev, char *detail, size_t dlen)
{
    const json_t *d = ev->data;
    CHECK(sc_check_known(d, D, s_drill_known, detail, dlen));
    CHECK(sc_check_enum(d, D, "kind", true, s_drill_kinds, detail, dlen));
    CHECK(sc_check_time(d, D, "starts_at", true, detail, dlen));
    CHECK(sc_check_time(d, D, "ends_at", true, detail, dlen));
    return s_drill_common(d, detail, dlen);
}

static int s_drill_started(const sc_event_t *ev, char *detail, size_t dlen)
{
    const json_t *d = ev->data;
    CHECK(sc_check_known(d, D, s_drill_known, detail, dlen));
    CHECK(sc_check_enum(d, D, "kind", true, s_drill_kinds, detail, dlen));
    return s_drill_common(d, detail, dlen);
}

static int s_drill_ended(const sc_event_t *ev, char *detail, size_t dlen)
{
    const json_t *d = ev->data;
    CHECK(sc_check_known(d, D, s_drill_known, detail, dlen));
    CHECK(sc_check_enum(d, D, "kind", false, s_drill_kinds, detail, dlen));
    return s_drill_common(d, detail, dlen);
}

static int s_drill_conducted(const sc_event_t *ev, char *detail, size_t dlen)
{
    const json_t *d = ev->data;
    CHECK(sc_check_known(d, D, s_drill_known, detail, dlen));
    CHECK(sc_check_enum(d, D, "kind", true, s_drill_kinds, detail, dlen));
    CHECK(sc_check_time(d, D, "starts_at", true, detail, dlen));
    return s_drill_common(d, detail, dlen);
}

static int s_drill_cancelled(const sc_event_t *ev, char *detail, size_t dlen)
{
    static const char *const known[] = {"drill", "reason", NULL};
    const json_t *d = ev->data;
    CHECK(sc_check_known(d, D, known, detail, dlen));
    CHECK(sc_check_code(d, D, "drill", true, detail, dlen));
    return sc_check_string(d, D, "reason", false, LG_TEXT_MAX, detail, dlen);
}

static int s_education(const sc_event_t *ev, char *detail, size_t dlen)
{
    static const char *const known[] = {"session", "topic",   "teacher",      "held_at",
                                        "title",   "classes", "participants", "duration_minutes",
                                        NULL};
    const json_t *d = ev->data;
    CHECK(sc_check_known(d, D, known, detail, dlen));
    CHECK(sc_check_code(d, D, "session", true, detail, dlen));
    CHECK(sc_check_enum(d, D, "topic", true, s_topics, detail, dlen));
    CHECK(sc_check_code(d, D, "teacher", true, detail, dlen));
    CHECK(sc_check_time(d, D, "held_at", false, detail, dlen));
    CHECK(sc_check_string(d, D, "title", false, LG_SHORT_MAX, detail, dlen));
    CHECK(sc_check_array(d, D, "classes", false, LG_ITEMS_MAX, detail, dlen));
    CHECK(s_codes(d, "classes", detail, dlen));
    CHECK(sc_check_int(d, D, "participants", false, 0, 100000, detail, dlen));
    return sc_check_int(d, D, "duration_minutes", false, 1, 24 * 60, detail, dlen);
}

static int s_meeting(const sc_event_t *ev, char *detail, size_t dlen)
{
    static const char *const known[] = {"meeting", "attendees", "decisions", "title",
                                        "held_at", "chair",     "minutes",   NULL};
    const json_t *d = ev->data;
    CHECK(sc_check_known(d, D, known, detail, dlen));
    CHECK(sc_check_code(d, D, "meeting", true, detail, dlen));
    CHECK(sc_check_array(d, D, "attendees", true, LG_ITEMS_MAX, detail, dlen));
    if (json_array_size(json_object_get(d, "attendees")) == 0)
        return sc_fail(detail, dlen, D "attendees: must not be empty");
    CHECK(s_strings(d, "attendees", 128, detail, dlen));
    CHECK(sc_check_array(d, D, "decisions", true, LG_ITEMS_MAX, detail, dlen));
    CHECK(s_strings(d, "decisions", LG_TEXT_MAX, detail, dlen));
    CHECK(sc_check_string(d, D, "title", false, LG_SHORT_MAX, detail, dlen));
    CHECK(sc_check_time(d, D, "held_at", false, detail, dlen));
    CHECK(sc_check_code(d, D, "chair", false, detail, dlen));
    return sc_check_string(d, D, "minutes", false, 16000, detail, dlen);
}

/*
 * The plan's fields are checked for type only: a plan missing one is kept and refused with
 * outing.rejected by the plugin, so the refusal is part of the school's ledger.
 */
static int s_outing_submitted(const sc_event_t *ev, char *detail, size_t dlen)
{
    static const char *const known[] = {
        "outing",      "title",          "starts_at", "ends_at",
        "headcount",   "route",          "place",     "security_measures",
        "responsible", "emergency_plan", "classes",   "transport",
        NULL};
    const json_t *d = ev->data;
    CHECK(sc_check_known(d, D, known, detail, dlen));
    CHECK(sc_check_code(d, D, "outing", true, detail, dlen));
    CHECK(sc_check_string(d, D, "title", false, LG_SHORT_MAX, detail, dlen));
    CHECK(sc_check_time(d, D, "starts_at", false, detail, dlen));
    CHECK(sc_check_time(d, D, "ends_at", false, detail, dlen));
    CHECK(s_order(d, "starts_at", "ends_at", detail, dlen));
    CHECK(sc_check_int(d, D, "headcount", false, 1, 100000, detail, dlen));
    CHECK(sc_check_string(d, D, "route", false, LG_TEXT_MAX, detail, dlen));
    CHECK(sc_check_string(d, D, "place", false, LG_TEXT_MAX, detail, dlen));
    CHECK(sc_check_string(d, D, "security_measures", false, LG_TEXT_MAX, detail, dlen));
    CHECK(sc_check_code(d, D, "responsible", false, detail, dlen));
    CHECK(sc_check_string(d, D, "emergency_plan", false, LG_TEXT_MAX, detail, dlen));
    CHECK(sc_check_string(d, D, "transport", false, LG_TEXT_MAX, detail, dlen));
    CHECK(sc_check_array(d, D, "classes", false, LG_ITEMS_MAX, detail, dlen));
    return s_codes(d, "classes", detail, dlen);
}

static int s_outing_approved(const sc_event_t *ev, char *detail, size_t dlen)
{
    static const char *const known[] = {"outing", "approved", "by", "note", NULL};
    const json_t *d = ev->data;
    CHECK(sc_check_known(d, D, known, detail, dlen));
    CHECK(sc_check_code(d, D, "outing", true, detail, dlen));
    CHECK(sc_check_bool(d, D, "approved", false, detail, dlen));
    CHECK(sc_check_code(d, D, "by", !ev->actor, detail, dlen));
    return sc_check_string(d, D, "note", false, LG_TEXT_MAX, detail, dlen);
}

static int s_outing_returned(const sc_event_t *ev, char *detail, size_t dlen)
{
    static const char *const known[] = {"outing", "returned_at", "headcount", "note", NULL};
    const json_t *d = ev->data;
    CHECK(sc_check_known(d, D, known, detail, dlen));
    CHECK(sc_check_code(d, D, "outing", true, detail, dlen));
    CHECK(sc_check_time(d, D, "returned_at", false, detail, dlen));
    CHECK(sc_check_int(d, D, "headcount", false, 0, 100000, detail, dlen));
    return sc_check_string(d, D, "note", false, LG_TEXT_MAX, detail, dlen);
}

/* gate.entry and gate.exit: a visitor (by visit code) or a pupil's card. */
static int s_gate(const sc_event_t *ev, bool entry, char *detail, size_t dlen)
{
    static const char *const known_entry[] = {"kind",    "visit", "card", "name",    "organisation",
                                              "purpose", "host",  "gate", "vehicle", NULL};
    static const char *const known_exit[] = {"kind", "visit", "card", "gate", NULL};
    const json_t *d = ev->data;
    CHECK(sc_check_known(d, D, entry ? known_entry : known_exit, detail, dlen));
    CHECK(sc_check_enum(d, D, "kind", false, s_gate_kinds, detail, dlen));
    bool pupil = sc_json_str(d, "kind") && strcmp(sc_json_str(d, "kind"), "pupil") == 0;
    CHECK(sc_check_code(d, D, "gate", false, detail, dlen));
    if (pupil) {
        CHECK(sc_check_code(d, D, "card", true, detail, dlen));
        if (json_object_get(d, "visit"))
            return sc_fail(detail, dlen, D "visit: not allowed for a pupil's card");
        if (entry && json_object_size(d) > (size_t)(2 + !!json_object_get(d, "gate")))
            return sc_fail(detail, dlen, D "kind: a pupil's card event has only card and gate");
        return 0;
    }
    CHECK(sc_check_code(d, D, "visit", true, detail, dlen));
    if (json_object_get(d, "card"))
        return sc_fail(detail, dlen, D "card: only for kind pupil");
    if (!entry)
        return 0;
    CHECK(sc_check_string(d, D, "name", true, LG_SHORT_MAX, detail, dlen));
    CHECK(sc_check_string(d, D, "organisation", false, LG_SHORT_MAX, detail, dlen));
    CHECK(sc_check_string(d, D, "purpose", false, LG_TEXT_MAX, detail, dlen));
    CHECK(sc_check_code(d, D, "host", false, detail, dlen));
    return sc_check_string(d, D, "vehicle", false, 32, detail, dlen);
}

static int s_gate_entry(const sc_event_t *ev, char *detail, size_t dlen)
{
    return s_gate(ev, true, detail, dlen);
}

static int s_gate_exit(const sc_event_t *ev, char *detail, size_t dlen)
{
    return s_gate(ev, false, detail, dlen);
}

const struct sc_type lg_types[] = {
    {"leadership.member.upserted", 0, s_leadership},
    {"rule.published", 0, s_rule},
    {"agreement.signed", 0, s_agreement},
    {"agreement.roster", 0, s_roster},
    {"drill.scheduled", 0, s_drill_scheduled},
    {"drill.started", 0, s_drill_started},
    {"drill.ended", 0, s_drill_ended},
    {"drill.conducted", 0, s_drill_conducted},
    {"drill.cancelled", 0, s_drill_cancelled},
    {"education.session", 0, s_education},
    {"meeting.held", 0, s_meeting},
    {"outing.submitted", 0, s_outing_submitted},
    {"outing.approved", 0, s_outing_approved},
    {"outing.returned", 0, s_outing_returned},
    {"gate.entry", 0, s_gate_entry},
    {"gate.exit", 0, s_gate_exit},
    {"drill.overdue", SC_TYPE_EMITTED, NULL},
    {"outing.rejected", SC_TYPE_EMITTED, NULL},
    {"outing.reminder", SC_TYPE_EMITTED, NULL},
    {"gate.overstay", SC_TYPE_EMITTED, NULL},
    {"ledger.rejected", SC_TYPE_EMITTED, NULL},
    {NULL, 0, NULL},
};
