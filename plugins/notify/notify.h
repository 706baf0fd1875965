/* notify plugin internals shared by its files: settings, channels, one delivery job. */
#ifndef NOTIFY_NOTIFY_H
#define NOTIFY_NOTIFY_H

#include <safecampus/plugin.h>
#include <safecampus/util.h>

#include <curl/curl.h>
#include <stdbool.h>

/* How a channel delivers. */
enum notify_kind {
    NOTIFY_WEBHOOK = 1, /* JSON POST, HMAC signature */
    NOTIFY_EMAIL,       /* SMTP */
    NOTIFY_SMS,         /* an HTTP gateway described by URL and body templates */
    NOTIFY_ROBOT,       /* a chat robot: a JSON body from a template (DingTalk, WeCom …) */
};

/* The plugin's settings, read from its config section in init, and its curl multi handle. */
typedef struct notify_state {
    int attempts;       /* deliveries tried before giving up */
    int64_t retry_base; /* seconds before the 2nd attempt; doubled each time */
    int64_t retry_max;  /* longest wait between attempts, seconds */
    int batch;          /* deliveries per tick */
    int route_batch;    /* deliveries per destination server per tick */
    long timeout_ms;
    long connect_timeout_ms;
    char *secret;      /* HMAC key of X-Safecampus-Signature; "" for none */
    char *webhook_url; /* used when the person has no webhook of their own */
    char *smtp_url;
    char *smtp_from;
    char *smtp_user;
    char *smtp_password;
    long smtp_tls; /* CURLUSESSL_* */
    char *sms_url;
    char *sms_body;
    char *sms_content_type;
    json_t *sms_headers; /* array of "Name: value" */
    json_t *robots;      /* object: name → {"url","template","secret"} */
    CURLM *multi;        /* kept across ticks: its connection cache is reused */
} notify_state_t;

/*
 * One delivery to try. The strings are borrowed from the outbox row for the
 * duration of notify__deliver; the outcome fields are filled by it.
 */
typedef struct notify_job {
    const char *notification;
    const char *school;
    const char *person;
    const char *name;
    const char *channel;
    const char *address;
    const char *subject;
    const char *body;
    const char *ref_json; /* the request's ref as JSON text, or NULL */
    int attempt;          /* 1 for the first */
    sc_time_t now;
    /* outcome */
    bool ok;
    bool permanent; /* the receiver refused in a way a retry will not change */
    long code;      /* HTTP or SMTP reply code, 0 when none came */
    int64_t duration_us;
    char error[256];
} notify_job_t;

/*
 * The kind of a channel name ("webhook", "email", "sms", or a robot named in
 * st->robots), or 0 when the channel is unknown.
 */
enum notify_kind notify__kind(const notify_state_t *st, const char *channel);

/* The robot entry of a channel (borrowed), or NULL. */
const json_t *notify__robot(const notify_state_t *st, const char *channel);

/*
 * Tries every job at once (curl multi: a slow or dead receiver delays only its
 * own job, by at most the transfer timeout) and fills each job's outcome.
 * Returns 0, or -ENOMEM when the transfers could not be set up at all (the
 * jobs are then untouched).
 */
int notify__deliver(sc_ctx_t *ctx, notify_state_t *st, notify_job_t *jobs, size_t n);

/*
 * Substitutes {placeholders} of tmpl from vars (an object of strings), each
 * value escaped for where it lands: 'j' JSON string content, 'u' URL
 * component, 'f' form value. Unknown {names} and other braces stay as they
 * are. Returns a new malloc'd string or NULL.
 */
char *notify__render(const char *tmpl, const json_t *vars, char escape);

/* Lower-case hex HMAC-SHA256 of data under key into hex (65 bytes). Returns 0 or -EIO. */
int notify__hmac_hex(const char *key, const void *data, size_t len, char *hex);

#endif
