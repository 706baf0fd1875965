/* health_absence: validators of the owned types and the symptom-to-syndrome grouping (pure). */
#include "health_absence.h"

#include <string.h>

const char *const ha_reasons[] = {"illness", "personal", "unknown", NULL};

const char *const ha_symptoms[] = {"fever",    "cough",    "sore_throat", "rash",
                                   "diarrhea", "vomiting", "jaundice",    "conjunctivitis",
                                   "headache", "other",    NULL};

const char *const ha_syndrome_names[] = {
    "respiratory", "ili", "gastrointestinal", "rash", "jaundice", "eye", "fever", NULL};

#define S_MAX_PUPILS 100000
#define S_MAX_SYMPTOMS 10
#define S_DIAGNOSIS_MAX 200
#define S_NOTE_MAX 500

static const char *const s_morning_fields[] = {"date",        "class", "present", "absent",
                                               "symptomatic", "note",  NULL};
static const char *const s_reported_fields[] = {
    "student",           "class", "date", "reason", "symptoms", "onset", "seen_doctor", "diagnosis",
    "suspected_disease", "note",  NULL};
static const char *const s_traced_fields[] = {"student",     "date",   "diagnosis",
                                              "by",          "reason", "suspected_disease",
                                              "seen_doctor", "note",   NULL};

/*
 * Health data names pupils by code only. A member that looks like it carries a
 * name or an identity number is refused by name, before the generic
 * unknown-field check, so the sender learns why.
 */
static int s_no_names(const json_t *data, char *detail, size_t dlen)
{
    static const char *const exact[] = {
        "name",      "student_name", "full_name", "id_card", "national_id",
        "real_name", "pupil_name",   "id_number", "idcard",  NULL};
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)data, key, v)
    {
        bool bad = false;
        for (size_t i = 0; exact[i] && !bad; i++)
            bad = strcmp(key, exact[i]) == 0;
        size_t n = strlen(key);
        bad = bad || (n > 5 && strcmp(key + n - 5, "_name") == 0) || strstr(key, "id_card") ||
              strstr(key, "national_id");
        if (bad)
            return sc_fail(detail, dlen,
                           "data.%s: pupils are codes only; names and identity numbers are "
                           "not accepted",
                           key);
    }
    return 0;
}

/* data.onset must not be after data.date (both already checked as dates). */
static int s_onset_not_after(const json_t *data, char *detail, size_t dlen)
{
    int64_t date, onset;
    const char *o = sc_json_str(data, "onset");
    if (!o || sc_date_parse(o, &onset) < 0 || sc_date_parse(sc_json_str(data, "date"), &date) < 0)
        return 0;
    return onset > date ? sc_fail(detail, dlen, "data.onset: must not be after data.date") : 0;
}

int ha_validate_morning_check(const sc_event_t *ev, char *detail, size_t dlen)
{
    const json_t *d = ev->data;
    int rc;
    if ((rc = s_no_names(d, detail, dlen)) < 0 ||
        (rc = sc_check_known(d, "data.", s_morning_fields, detail, dlen)) < 0 ||
        (rc = sc_check_date(d, "data.", "date", true, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, "data.", "class", true, detail, dlen)) < 0 ||
        (rc = sc_check_int(d, "data.", "present", true, 0, S_MAX_PUPILS, detail, dlen)) < 0 ||
        (rc = sc_check_int(d, "data.", "absent", true, 0, S_MAX_PUPILS, detail, dlen)) < 0 ||
        (rc = sc_check_int(d, "data.", "symptomatic", false, 0, S_MAX_PUPILS, detail, dlen)) < 0 ||
        (rc = sc_check_string(d, "data.", "note", false, S_NOTE_MAX, detail, dlen)) < 0)
        return rc;
    json_int_t all = sc_json_int(d, "present", 0) + sc_json_int(d, "absent", 0);
    if (sc_json_int(d, "symptomatic", 0) > all)
        return sc_fail(detail, dlen, "data.symptomatic: must not exceed present + absent");
    return 0;
}

int ha_validate_reported(const sc_event_t *ev, char *detail, size_t dlen)
{
    const json_t *d = ev->data;
    int rc;
    if ((rc = s_no_names(d, detail, dlen)) < 0 ||
        (rc = sc_check_known(d, "data.", s_reported_fields, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, "data.", "student", true, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, "data.", "class", true, detail, dlen)) < 0 ||
        (rc = sc_check_date(d, "data.", "date", true, detail, dlen)) < 0 ||
        (rc = sc_check_enum(d, "data.", "reason", true, ha_reasons, detail, dlen)) < 0 ||
        (rc = sc_check_array(d, "data.", "symptoms", false, S_MAX_SYMPTOMS, detail, dlen)) < 0 ||
        (rc = sc_check_enum_array(d, "data.", "symptoms", false, ha_symptoms, detail, dlen)) < 0 ||
        (rc = sc_check_date(d, "data.", "onset", false, detail, dlen)) < 0 ||
        (rc = sc_check_bool(d, "data.", "seen_doctor", false, detail, dlen)) < 0 ||
        (rc = sc_check_string(d, "data.", "diagnosis", false, S_DIAGNOSIS_MAX, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, "data.", "suspected_disease", false, detail, dlen)) < 0 ||
        (rc = sc_check_string(d, "data.", "note", false, S_NOTE_MAX, detail, dlen)) < 0)
        return rc;
    return s_onset_not_after(d, detail, dlen);
}

int ha_validate_traced(const sc_event_t *ev, char *detail, size_t dlen)
{
    const json_t *d = ev->data;
    int rc;
    if ((rc = s_no_names(d, detail, dlen)) < 0 ||
        (rc = sc_check_known(d, "data.", s_traced_fields, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, "data.", "student", true, detail, dlen)) < 0 ||
        (rc = sc_check_date(d, "data.", "date", true, detail, dlen)) < 0 ||
        (rc = sc_check_string(d, "data.", "diagnosis", true, S_DIAGNOSIS_MAX, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, "data.", "by", true, detail, dlen)) < 0 ||
        (rc = sc_check_enum(d, "data.", "reason", false, ha_reasons, detail, dlen)) < 0 ||
        (rc = sc_check_code(d, "data.", "suspected_disease", false, detail, dlen)) < 0 ||
        (rc = sc_check_bool(d, "data.", "seen_doctor", false, detail, dlen)) < 0 ||
        (rc = sc_check_string(d, "data.", "note", false, S_NOTE_MAX, detail, dlen)) < 0)
        return rc;
    return 0;
}

enum {
    S_FEVER = 1 << 0,
    S_COUGH = 1 << 1,
    S_SORE_THROAT = 1 << 2,
    S_RASH = 1 << 3,
    S_DIARRHEA = 1 << 4,
    S_VOMITING = 1 << 5,
    S_JAUNDICE = 1 << 6,
    S_CONJUNCTIVITIS = 1 << 7,
};

/*
 * The syndromes follow the groups school-based syndromic surveillance uses:
 * influenza-like illness is fever with cough or sore throat and is also
 * respiratory; fever is kept as its own group because "fever" clusters are
 * what the 2006 reporting rules name first. A case belongs to every group it
 * fits; the primary one (for "similar symptoms" rules, so one case is not
 * counted in two such clusters) is the most specific.
 */
size_t ha_syndromes(const json_t *symptoms, const char **out, const char **primary)
{
    unsigned bits = 0;
    size_t i, n = 0;
    const json_t *s;
    json_array_foreach(symptoms, i, s)
    {
        for (size_t k = 0; ha_symptoms[k]; k++)
            if (json_is_string(s) && k < 8 && strcmp(json_string_value(s), ha_symptoms[k]) == 0)
                bits |= 1u << k;
    }
    bool resp = bits & (S_COUGH | S_SORE_THROAT);
    bool gi = bits & (S_DIARRHEA | S_VOMITING);
    *primary = NULL;
    /* Listed from the most specific down; the first one found is the primary. */
    if (bits & S_JAUNDICE)
        out[n++] = "jaundice";
    if (bits & S_RASH)
        out[n++] = "rash";
    if (bits & S_CONJUNCTIVITIS)
        out[n++] = "eye";
    if (gi)
        out[n++] = "gastrointestinal";
    if (resp)
        out[n++] = "respiratory";
    if (n > 0)
        *primary = out[0];
    if (resp && (bits & S_FEVER))
        out[n++] = "ili";
    if (bits & S_FEVER) {
        if (!*primary)
            *primary = "fever";
        out[n++] = "fever";
    }
    return n;
}

const char *ha_family(const char *syndrome)
{
    return strcmp(syndrome, "ili") == 0 ? "respiratory" : syndrome;
}
