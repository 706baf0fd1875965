/*
 * Who may send, and for which schools: CURVE keys checked by a ZAP handler,
 * each event checked against its connection's source and that source's grants.
 * Without CURVE, ingest stays on loopback unless the operator says insecure.
 */
#include "internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#define S_ZAP_ENDPOINT "inproc://zeromq.zap.01"

/* What the ZAP handler and the ingest thread read, the main thread replaces. */
static struct {
    pthread_rwlock_t lock;
    bool curve;
    char public_key[41]; /* the ingest socket's, for status */
    json_t *sources;     /* name → {public_key, schools[], districts[], enabled} */
    json_t *keys;        /* Z85 public key → name, enabled sources only */
    json_t *districts;   /* school → district, for grants given by district */
    json_t *subscribers; /* Z85 keys allowed on the publish socket */
} s_sec = {.lock = PTHREAD_RWLOCK_INITIALIZER};

static const char *const s_reason_names[] = {"source_mismatch", "revoked", "not_granted",
                                             "plugin_only"};
atomic_uint_fast64_t sc__forbidden_by[SC__FORBID_COUNT];

const char *sc__forbid_reason(int r)
{
    return r >= 0 && r < SC__FORBID_COUNT ? s_reason_names[r] : "?";
}

/* True for endpoints only this machine can reach. */
static bool s_local_endpoint(const char *endpoint)
{
    static const char *const local[] = {"ipc://",           "inproc://",    "tcp://127.",
                                        "tcp://localhost:", "tcp://[::1]:", NULL};
    for (size_t i = 0; local[i]; i++)
        if (strncmp(endpoint, local[i], strlen(local[i])) == 0)
            return true;
    return false;
}

/* Reads a Z85 secret key from a file only its owner can read. */
static int s_read_key(const char *key, const char *path, char secret[41], char *err, size_t errlen)
{
    struct stat st;
    char cred[4096];
    /* Under systemd, a bare name is a credential: LoadCredential=ingest.key:/etc/… */
    const char *dir = getenv("CREDENTIALS_DIRECTORY");
    if (path && path[0] != '/' && dir) {
        snprintf(cred, sizeof cred, "%s/%s", dir, path);
        path = cred;
    }
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0) {
        snprintf(err, errlen, "%s: could not open \"%s\": %s", key, path ? path : "(not set)",
                 path ? strerror(errno) : "a key file is required with CURVE");
        return -EINVAL;
    }
    /* systemd's LoadCredential hands over a file in a private, read-only folder: fine too. */
    if (fstat(fd, &st) == 0 && (st.st_mode & 077)) {
        snprintf(err, errlen, "%s: \"%s\" is readable by others (mode %04o): chmod 600 it", key,
                 path, (unsigned)(st.st_mode & 07777));
        close(fd);
        return -EPERM;
    }
    char buf[128];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0)
        n = 0;
    buf[n] = '\0';
    size_t len = strcspn(buf, " \t\r\n");
    uint8_t raw[32];
    if (len != 40 || (buf[len] = '\0', !zmq_z85_decode(raw, buf))) {
        snprintf(err, errlen, "%s: \"%s\" does not hold a 40-character Z85 key", key, path);
        return -EINVAL;
    }
    memcpy(secret, buf, 41);
    return 0;
}

/* The ZAP handler: accepts known, enabled keys and names the connection after its source. */
static void *s_zap_main(void *arg)
{
    void *rep = arg;
    pthread_setname_np(pthread_self(), "sc-zap");
    for (;;) {
        zmq_msg_t f[8];
        int n = 0, more = 1;
        while (more && n < 8) {
            zmq_msg_init(&f[n]);
            if (zmq_msg_recv(&f[n], rep, 0) < 0) {
                zmq_msg_close(&f[n]);
                if (zmq_errno() == ETERM)
                    goto out;
                break;
            }
            more = zmq_msg_more(&f[n]);
            n++;
        }
        /* version, request id, domain, address, identity, mechanism, credentials… */
        const char *status = "400", *text = "unknown key";
        char user[SC_CODE_MAX + 1] = "";
        if (n >= 7 && zmq_msg_size(&f[5]) == 5 && memcmp(zmq_msg_data(&f[5]), "CURVE", 5) == 0 &&
            zmq_msg_size(&f[6]) == 32) {
            char key[41];
            zmq_z85_encode(key, zmq_msg_data(&f[6]), 32);
            bool publish =
                zmq_msg_size(&f[2]) == 7 && memcmp(zmq_msg_data(&f[2]), "publish", 7) == 0;
            pthread_rwlock_rdlock(&s_sec.lock);
            if (publish) {
                size_t i;
                const json_t *k;
                json_array_foreach(s_sec.subscribers, i,
                                   k) if (strcmp(json_string_value(k), key) == 0)
                {
                    status = "200";
                    text = "OK";
                    snprintf(user, sizeof user, "subscriber-%zu", i);
                }
            } else {
                const char *name = json_string_value(json_object_get(s_sec.keys, key));
                if (name) {
                    status = "200";
                    text = "OK";
                    snprintf(user, sizeof user, "%s", name);
                }
            }
            pthread_rwlock_unlock(&s_sec.lock);
            if (status[0] != '2')
                sc__log(SC_LOG_WARNING, "ingest",
                        "refused %s connection: unknown or revoked key %s",
                        publish ? "a publish" : "an ingest", key);
        }
        if (n >= 2) {
            zmq_send(rep, "1.0", 3, ZMQ_SNDMORE);
            zmq_send(rep, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE);
            zmq_send(rep, status, 3, ZMQ_SNDMORE);
            zmq_send(rep, text, strlen(text), ZMQ_SNDMORE);
            zmq_send(rep, user, strlen(user), ZMQ_SNDMORE);
            zmq_send(rep, "", 0, 0);
        }
        for (int i = 0; i < n; i++)
            zmq_msg_close(&f[i]);
    }
out:
    zmq_close(rep);
    return NULL;
}

int sc__security_reload(sc__daemon_t *d)
{
    int rc;
    PGresult *res = sc_pq_exec(d->conn,
                               "SELECT source, public_key, to_jsonb(schools) AS schools,"
                               "       to_jsonb(districts) AS districts, enabled"
                               "  FROM core.sources",
                               0, NULL, &rc);
    if (!res) {
        sc__log(SC_LOG_ERR, "core", "could not read core.sources: %s", PQerrorMessage(d->conn));
        return rc;
    }
    json_t *rows = sc_pq_rows(res);
    PQclear(res);
    res = sc_pq_exec(d->conn, "SELECT school, district FROM core.schools", 0, NULL, &rc);
    if (!res) {
        json_decref(rows);
        return rc;
    }
    json_t *districts = json_object();
    for (int i = 0; i < PQntuples(res); i++)
        json_object_set_new(districts, PQgetvalue(res, i, 0), json_string(PQgetvalue(res, i, 1)));
    PQclear(res);
    json_t *sources = json_object(), *keys = json_object();
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        const char *name = sc_json_str(row, "source");
        json_object_set(sources, name, row);
        if (json_is_true(json_object_get(row, "enabled")))
            json_object_set_new(keys, sc_json_str(row, "public_key"), json_string(name));
    }
    json_decref(rows);
    pthread_rwlock_wrlock(&s_sec.lock);
    json_decref(s_sec.sources);
    json_decref(s_sec.keys);
    json_decref(s_sec.districts);
    s_sec.sources = sources;
    s_sec.keys = keys;
    s_sec.districts = districts;
    pthread_rwlock_unlock(&s_sec.lock);
    return 0;
}

void sc__security_school(const char *school, const char *district)
{
    if (!s_sec.curve || !school || !district)
        return;
    pthread_rwlock_wrlock(&s_sec.lock);
    json_object_set_new(s_sec.districts, school, json_string(district));
    pthread_rwlock_unlock(&s_sec.lock);
}

bool sc__security_curve(void)
{
    return s_sec.curve;
}

const char *sc__security_public_key(void)
{
    return s_sec.public_key[0] ? s_sec.public_key : NULL;
}

static bool s_listed(const json_t *list, const char *code)
{
    size_t i;
    const json_t *e;
    json_array_foreach(list, i, e) if (code && strcmp(json_string_value(e), code) == 0) return true;
    return false;
}

int sc__security_check(const char *user, const sc_event_t *ev, char *detail, size_t dlen)
{
    int reason = -1;
    pthread_rwlock_rdlock(&s_sec.lock);
    const json_t *src = json_object_get(s_sec.sources, user);
    if (!src || !json_is_true(json_object_get(src, "enabled"))) {
        reason = SC__FORBID_REVOKED;
        snprintf(detail, dlen, "source: %s has been revoked", user);
    } else if (strcmp(ev->source, user) != 0) {
        reason = SC__FORBID_SOURCE;
        snprintf(detail, dlen, "source: this connection is authenticated as %s, not %s", user,
                 ev->source);
    } else if (ev->school) {
        /* The school's district as the directory knows it; a new school's, as declared. */
        const char *district = json_string_value(json_object_get(s_sec.districts, ev->school));
        if (!district && strcmp(ev->type, "directory.school.upserted") == 0)
            district = sc_json_str(ev->data, "district");
        if (!s_listed(json_object_get(src, "schools"), ev->school) &&
            !s_listed(json_object_get(src, "districts"), district)) {
            reason = SC__FORBID_GRANT;
            snprintf(detail, dlen, "school: source %s may not write for %s", user, ev->school);
        }
    } else if (!s_listed(json_object_get(src, "districts"), ev->district)) {
        reason = SC__FORBID_GRANT;
        snprintf(detail, dlen, "district: source %s may not write for %s", user,
                 ev->district ? ev->district : "(none)");
    }
    pthread_rwlock_unlock(&s_sec.lock);
    if (reason < 0)
        return 0;
    atomic_fetch_add(&sc__forbidden_by[reason], 1);
    return -EPERM;
}

int sc__security_start(sc__daemon_t *d, char *err, size_t errlen)
{
    const json_t *core = d->cfg->core;
    s_sec.curve = sc__cfg_bool(core, "ingest", "curve");
    bool pub_curve = sc__cfg_bool(core, "publish", "curve");
    json_decref(s_sec.subscribers);
    s_sec.subscribers =
        json_incref(json_object_get(json_object_get(core, "publish"), "subscribers"));
    if (!s_sec.curve && !pub_curve)
        return 0;
    if (!zmq_has("curve")) {
        snprintf(err, errlen, "ingest.curve: this libzmq was built without CURVE");
        return -ENOTSUP;
    }
    int rc = sc__security_reload(d);
    if (rc < 0) {
        snprintf(err, errlen, "could not read the sources: %s", PQerrorMessage(d->conn));
        return rc;
    }
    void *rep = zmq_socket(d->zctx, ZMQ_REP);
    if (zmq_bind(rep, S_ZAP_ENDPOINT) < 0) {
        snprintf(err, errlen, "could not start the ZAP handler: %s", zmq_strerror(zmq_errno()));
        zmq_close(rep);
        return -EINVAL;
    }
    pthread_t t;
    pthread_create(&t, NULL, s_zap_main, rep);
    pthread_detach(t);
    return 0;
}

/* Makes `sock` a CURVE server with the key in `key_file`, in ZAP domain `domain`. */
static int s_curve_server(void *sock, const char *cfg_key, const char *key_file, const char *domain,
                          char *err, size_t errlen)
{
    char secret[41];
    int rc = s_read_key(cfg_key, key_file, secret, err, errlen);
    if (rc < 0)
        return rc;
    if (strcmp(domain, "ingest") == 0)
        zmq_curve_public(s_sec.public_key, secret);
    int one = 1;
    zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret, 40);
    zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, domain, strlen(domain));
    memset(secret, 0, sizeof secret);
    return 0;
}

int sc__security_setup(sc__daemon_t *d, void *router, char *err, size_t errlen)
{
    const json_t *core = d->cfg->core;
    const char *endpoint = sc__cfg_str(core, "ingest", "endpoint");
    bool insecure = sc__cfg_bool(core, "ingest", "insecure");
    if (s_sec.curve)
        return s_curve_server(router, "ingest.secret_key_file",
                              sc__cfg_str(core, "ingest", "secret_key_file"), "ingest", err,
                              errlen);
    if (!s_local_endpoint(endpoint)) {
        if (!insecure) {
            snprintf(
                err, errlen,
                "ingest.endpoint: \"%s\" is reachable from other machines; turn on "
                "ingest.curve, or set ingest.insecure = true to accept anyone who can reach it",
                endpoint);
            return -EPERM;
        }
        sc__log(SC_LOG_WARNING, "ingest",
                "ingest.insecure: \"%s\" accepts events from anyone who can reach it", endpoint);
    }
    return 0;
}

int sc__security_publish(sc__daemon_t *d, void *pub, char *err, size_t errlen)
{
    const json_t *core = d->cfg->core;
    if (!sc__cfg_bool(core, "publish", "curve"))
        return 0;
    const char *file = sc__cfg_str(core, "publish", "secret_key_file");
    if (!file)
        file = sc__cfg_str(core, "ingest", "secret_key_file");
    return s_curve_server(pub, "publish.secret_key_file", file, "publish", err, errlen);
}

/* ---- control: source.add / list / revoke / grant / ungrant ---- */

static json_t *s_fail(const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return json_pack("{s:b, s:s, s:s}", "ok", 0, "error", "invalid_request", "detail", detail);
}

/* A text[] literal of req[key], a list of codes; NULL with detail written when one is not a code.
 */
static char *s_codes(const json_t *req, const char *key, char *detail, size_t dlen)
{
    json_t *wrap = json_object();
    const json_t *list = json_object_get(req, key);
    json_t *codes = json_array();
    size_t i;
    const json_t *e;
    char *out = NULL;
    if (list && !json_is_array(list)) {
        snprintf(detail, dlen, "%s: expected a list of codes", key);
        goto out;
    }
    json_array_foreach(list, i, e)
    {
        json_object_set(wrap, "c", (json_t *)e);
        if (sc_check_code(wrap, "", "c", true, detail, dlen) < 0) {
            snprintf(detail, dlen, "%s[%zu]: must be a code", key, i);
            goto out;
        }
        json_array_append(codes, (json_t *)e);
    }
    out = sc__pg_text_array(codes);
out:
    json_decref(codes);
    json_decref(wrap);
    return out;
}

json_t *sc__security_control(sc__daemon_t *d, const char *cmd, const json_t *req)
{
    char detail[256];
    const char *name = sc_json_str(req, "source");
    json_t *reply = NULL;
    int rc;
    if (strcmp(cmd, "source.list") == 0) {
        PGresult *res = sc_pq_exec(d->conn,
                                   "SELECT source, public_key, to_jsonb(schools) AS schools,"
                                   "       to_jsonb(districts) AS districts, enabled, created_at,"
                                   "       revoked_at FROM core.sources ORDER BY source",
                                   0, NULL, &rc);
        if (!res)
            return s_fail("database: %s", PQerrorMessage(d->conn));
        reply = json_pack("{s:b, s:o}", "ok", 1, "sources", sc_pq_rows(res));
        PQclear(res);
        return reply;
    }
    if (sc_check_code(req, "", "source", true, detail, sizeof detail) < 0)
        return s_fail("%s", detail);
    char *schools = s_codes(req, "schools", detail, sizeof detail);
    char *districts = schools ? s_codes(req, "districts", detail, sizeof detail) : NULL;
    if (!schools || !districts) {
        free(schools);
        return s_fail("%s", detail);
    }
    PGresult *res = NULL;
    if (strcmp(cmd, "source.add") == 0) {
        if (strcmp(schools, "{}") == 0 && strcmp(districts, "{}") == 0) {
            reply = s_fail("schools: give the schools (or districts) the source may write for");
            goto out;
        }
        char pub[41], secret[41];
        zmq_curve_keypair(pub, secret);
        const char *p[4] = {name, pub, schools, districts};
        res = sc_pq_exec(d->conn,
                         "INSERT INTO core.sources (source, public_key, schools, districts)"
                         " VALUES ($1, $2, $3, $4) ON CONFLICT (source) DO NOTHING RETURNING 1",
                         4, p, &rc);
        if (res && PQntuples(res) == 1)
            reply = json_pack("{s:b, s:s, s:s, s:s}", "ok", 1, "source", name, "public_key", pub,
                              "secret_key", secret);
        else if (res)
            reply = s_fail("source: %s already exists (revoke it, or grant it more)", name);
        memset(secret, 0, sizeof secret);
    } else if (strcmp(cmd, "source.revoke") == 0) {
        const char *p[1] = {name};
        res = sc_pq_exec(d->conn,
                         "UPDATE core.sources SET enabled = false, revoked_at = now()"
                         " WHERE source = $1 AND enabled RETURNING 1",
                         1, p, &rc);
        if (res)
            reply = PQntuples(res) ? json_pack("{s:b, s:s}", "ok", 1, "source", name)
                                   : s_fail("source: no enabled source %s", name);
    } else if (strcmp(cmd, "source.grant") == 0 || strcmp(cmd, "source.ungrant") == 0) {
        bool grant = strcmp(cmd, "source.grant") == 0;
        const char *p[3] = {name, schools, districts};
        res = sc_pq_exec(
            d->conn,
            grant ? "UPDATE core.sources SET"
                    "  schools = ARRAY(SELECT DISTINCT unnest(schools || $2::text[])),"
                    "  districts = ARRAY(SELECT DISTINCT unnest(districts || $3::text[]))"
                    " WHERE source = $1 RETURNING 1"
                  : "UPDATE core.sources SET"
                    "  schools = ARRAY(SELECT unnest(schools) EXCEPT SELECT unnest($2::text[])),"
                    "  districts = ARRAY(SELECT unnest(districts) EXCEPT SELECT unnest($3::text[]))"
                    " WHERE source = $1 RETURNING 1",
            3, p, &rc);
        if (res)
            reply = PQntuples(res) ? json_pack("{s:b, s:s}", "ok", 1, "source", name)
                                   : s_fail("source: no source %s", name);
    } else {
        reply = json_pack("{s:b, s:s, s:s}", "ok", 0, "error", "unknown_command", "detail",
                          "cmd: source commands are add, list, revoke, grant, ungrant");
    }
    if (!res && !reply)
        reply = s_fail("database: %s", PQerrorMessage(d->conn));
    if (res)
        sc__security_reload(d); /* a revocation holds from the next message on */
out:
    PQclear(res);
    free(schools);
    free(districts);
    return reply;
}
