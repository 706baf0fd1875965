/* hazard_tracker validators: pure checks of the data of each hazard.* type a sender may send. */
#include "hazard_tracker.h"

#include <string.h>

#define P "data."
#define S_TEXT_SHORT 500 /* titles, locations (bytes: about 160 Chinese characters) */
#define S_TEXT_LONG 4000 /* descriptions, measures, plans */
#define S_REF_MAX 1024   /* one attachment reference: a URL or an id */
#define S_REFS_MAX 20    /* attachments or evidence per event */

static const char *const s_risks[] = {"general", "major", NULL};
static const char *const s_categories[] = {"building",  "electrical",   "fire",
                                           "equipment", "surroundings", "food_water",
                                           "traffic",   "other",        NULL};
static const char *const s_origin_kinds[] = {"person", "inspection", "external", NULL};

/* Text: like sc_check_string, but an empty string is refused even when the field is optional. */
static int s_check_text(const json_t *obj, const char *prefix, const char *key, bool required,
                        size_t max_len, char *detail, size_t dlen)
{
    int rc = sc_check_string(obj, prefix, key, required, max_len, detail, dlen);
    if (rc == 0 && json_is_string(json_object_get(obj, key)) &&
        json_string_length(json_object_get(obj, key)) == 0)
        return sc_fail(detail, dlen, "%s%s: must not be empty", prefix, key);
    return rc;
}

/* A deadline or time limit: an RFC 3339 time, or a date (the end of that day at the school). */
static int s_check_deadline(const json_t *data, const char *key, char *detail, size_t dlen)
{
    const json_t *v = json_object_get(data, key);
    sc_time_t t;
    int64_t d;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_string(v) && (sc_time_parse(json_string_value(v), &t) == 0 ||
                              sc_date_parse(json_string_value(v), &d) == 0))
        return 0;
    return sc_fail(detail, dlen, P "%s: expected a date YYYY-MM-DD or an RFC 3339 time", key);
}

/* An optional array of references (URLs or ids): non-empty strings of bounded length. */
static int s_check_refs(const json_t *data, const char *key, char *detail, size_t dlen)
{
    int rc = sc_check_array(data, P, key, false, S_REFS_MAX, detail, dlen);
    if (rc < 0)
        return rc;
    size_t i;
    const json_t *e;
    json_array_foreach(json_object_get(data, key), i, e)
    {
        if (!json_is_string(e) || json_string_length(e) == 0 || json_string_length(e) > S_REF_MAX)
            return sc_fail(detail, dlen,
                           P "%s[%zu]: expected a reference (URL or id) of 1 to %d bytes", key, i,
                           S_REF_MAX);
    }
    return 0;
}

/* The origin: a kind string, or an object {kind; task, item, template, system, ref}. */
static int s_check_origin(const json_t *data, char *detail, size_t dlen)
{
    const json_t *o = json_object_get(data, "origin");
    int rc;
    if (!o || json_is_null(o))
        return 0;
    if (json_is_string(o))
        return sc_check_enum(data, P, "origin", false, s_origin_kinds, detail, dlen);
    if (!json_is_object(o))
        return sc_fail(detail, dlen,
                       P "origin: expected one of person, inspection, external or an object");
    if ((rc = sc_check_enum(o, P "origin.", "kind", false, s_origin_kinds, detail, dlen)) < 0 ||
        (rc = sc_check_code(o, P "origin.", "task", false, detail, dlen)) < 0 ||
        (rc = sc_check_code(o, P "origin.", "item", false, detail, dlen)) < 0 ||
        (rc = sc_check_code(o, P "origin.", "template", false, detail, dlen)) < 0 ||
        (rc = s_check_text(o, P "origin.", "system", false, S_TEXT_SHORT, detail, dlen)) < 0 ||
        (rc = s_check_text(o, P "origin.", "ref", false, S_REF_MAX, detail, dlen)) < 0)
        return rc;
    return 0;
}

/* The 五落实 fields and interim measures, accepted on reported, assigned, rectified, commitments.
 */
static int s_check_commitments(const json_t *data, bool measures_required, char *detail,
                               size_t dlen)
{
    int rc;
    const json_t *funds = json_object_get(data, "funds");
    if ((rc = s_check_text(data, P, "measures", measures_required, S_TEXT_LONG, detail, dlen)) <
            0 ||
        (rc = sc_check_code(data, P, "responsible", false, detail, dlen)) < 0 ||
        (rc = s_check_deadline(data, "time_limit", detail, dlen)) < 0 ||
        (rc = s_check_text(data, P, "emergency_plan", false, S_TEXT_LONG, detail, dlen)) < 0 ||
        (rc = s_check_text(data, P, "interim_measures", false, S_TEXT_LONG, detail, dlen)) < 0)
        return rc;
    if (funds && !json_is_null(funds)) {
        if (json_is_number(funds) && json_number_value(funds) >= 0)
            return 0;
        if (!json_is_string(funds))
            return sc_fail(detail, dlen,
                           P "funds: expected an amount (a number >= 0) or a description");
        return s_check_text(data, P, "funds", true, S_TEXT_SHORT, detail, dlen);
    }
    return 0;
}

int ht__validate_reported(const sc_event_t *ev, char *detail, size_t dlen)
{
    const json_t *d = ev->data;
    int rc;
    if ((rc = sc_check_code(d, P, "hazard", true, detail, dlen)) < 0 ||
        (rc = s_check_text(d, P, "title", true, S_TEXT_SHORT, detail, dlen)) < 0 ||
        (rc = sc_check_enum(d, P, "risk", true, s_risks, detail, dlen)) < 0 ||
        (rc = s_check_text(d, P, "location", false, S_TEXT_SHORT, detail, dlen)) < 0 ||
        (rc = sc_check_enum(d, P, "category", false, s_categories, detail, dlen)) < 0 ||
        (rc = s_check_origin(d, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, P, "reporter", false, detail, dlen)) < 0 ||
        (rc = sc_check_time(d, P, "found_at", false, detail, dlen)) < 0 ||
        (rc = s_check_text(d, P, "description", false, S_TEXT_LONG, detail, dlen)) < 0 ||
        (rc = s_check_refs(d, "attachments", detail, dlen)) < 0 ||
        (rc = s_check_deadline(d, "deadline", detail, dlen)) < 0)
        return rc;
    return s_check_commitments(d, false, detail, dlen);
}

int ht__validate_assigned(const sc_event_t *ev, char *detail, size_t dlen)
{
    const json_t *d = ev->data;
    int rc;
    if ((rc = sc_check_code(d, P, "hazard", true, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, P, "assignee", true, detail, dlen)) < 0 ||
        (rc = s_check_deadline(d, "deadline", detail, dlen)) < 0 ||
        (rc = s_check_text(d, P, "note", false, S_TEXT_LONG, detail, dlen)) < 0)
        return rc;
    return s_check_commitments(d, false, detail, dlen);
}

int ht__validate_rectified(const sc_event_t *ev, char *detail, size_t dlen)
{
    const json_t *d = ev->data;
    int rc;
    if ((rc = sc_check_code(d, P, "hazard", true, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, P, "by", true, detail, dlen)) < 0 ||
        (rc = s_check_refs(d, "evidence", detail, dlen)) < 0 ||
        (rc = s_check_text(d, P, "note", false, S_TEXT_LONG, detail, dlen)) < 0)
        return rc;
    return s_check_commitments(d, true, detail, dlen);
}

int ht__validate_verified(const sc_event_t *ev, char *detail, size_t dlen)
{
    const json_t *d = ev->data;
    int rc;
    if ((rc = sc_check_code(d, P, "hazard", true, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, P, "by", true, detail, dlen)) < 0 ||
        (rc = sc_check_bool(d, P, "passed", true, detail, dlen)) < 0 ||
        (rc = s_check_text(d, P, "note", false, S_TEXT_LONG, detail, dlen)) < 0 ||
        (rc = s_check_deadline(d, "deadline", detail, dlen)) < 0)
        return rc;
    return 0;
}

int ht__validate_withdrawn(const sc_event_t *ev, char *detail, size_t dlen)
{
    const json_t *d = ev->data;
    int rc;
    if ((rc = sc_check_code(d, P, "hazard", true, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, P, "by", true, detail, dlen)) < 0 ||
        (rc = s_check_text(d, P, "reason", true, S_TEXT_LONG, detail, dlen)) < 0)
        return rc;
    return 0;
}

int ht__validate_commitments(const sc_event_t *ev, char *detail, size_t dlen)
{
    static const char *const fields[] = {"measures",   "responsible",    "funds",
                                         "time_limit", "emergency_plan", "interim_measures",
                                         NULL};
    const json_t *d = ev->data;
    int rc;
    if ((rc = sc_check_code(d, P, "hazard", true, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, P, "by", false, detail, dlen)) < 0 ||
        (rc = s_check_commitments(d, false, detail, dlen)) < 0)
        return rc;
    for (size_t i = 0; fields[i]; i++) {
        const json_t *v = json_object_get(d, fields[i]);
        if (v && !json_is_null(v))
            return 0;
    }
    return sc_fail(detail, dlen,
                   "data: at least one of measures, responsible, funds, time_limit, "
                   "emergency_plan, interim_measures is required");
}

json_t *ht__origin_normal(const json_t *origin)
{
    json_t *o;
    if (json_is_object(origin)) {
        o = json_deep_copy(origin);
        if (o && !sc_json_str(o, "kind")) {
            const char *kind = json_object_get(o, "task")     ? "inspection"
                               : json_object_get(o, "system") ? "external"
                                                              : "person";
            json_object_set_new(o, "kind", json_string(kind));
        }
        return o;
    }
    return json_pack("{s:s}", "kind",
                     json_is_string(origin) ? json_string_value(origin) : "person");
}
