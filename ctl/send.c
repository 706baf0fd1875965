/* safecampusctl send: one event from arguments, or JSON lines pipelined over one DEALER socket. */
#include "../daemon/internal.h"
#include "ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define S_WINDOW 1024 /* events in flight before waiting for replies */

static void s_usage(FILE *f)
{
    fprintf(f,
            "usage: safecampusctl send TYPE [--school S | --district D] [--source SRC] [--id ID]\n"
            "                           [--actor P] [--at TIME] [--data JSON] [key=value …]\n"
            "       safecampusctl send --file FILE   (or -: JSON lines, one envelope each)\n"
            "  --as FILE         send as an authenticated source (ingest.curve): FILE holds what\n"
            "                    `safecampusctl source add` printed; --server-key KEY, or the\n"
            "                    daemon's key from its status\n"
            "Prints one reply line per event; exits 1 if any was refused.\n");
}

/* Takes --as FILE and --server-key KEY out of argv; sets the socket's CURVE keys. */
static int s_curve(void *dealer, int *argc, char **argv, const char **source)
{
    const char *as = NULL, *server = NULL;
    int w = 0;
    for (int i = 0; i < *argc; i++) {
        if (strcmp(argv[i], "--as") == 0 && i + 1 < *argc)
            as = argv[++i];
        else if (strcmp(argv[i], "--server-key") == 0 && i + 1 < *argc)
            server = argv[++i];
        else
            argv[w++] = argv[i];
    }
    *argc = w;
    if (!as)
        return 0;
    json_error_t jerr;
    json_t *keys = json_load_file(as, 0, &jerr);
    const char *pub = sc_json_str(keys, "public_key"), *sec = sc_json_str(keys, "secret_key");
    if (!pub || !sec || strlen(pub) != 40 || strlen(sec) != 40) {
        fprintf(stderr, "safecampusctl: --as %s: expected the JSON `source add` printed\n", as);
        json_decref(keys);
        return 2;
    }
    json_t *status = NULL;
    if (!server) {
        json_t *req = json_pack("{s:s}", "cmd", "status");
        status = sc__ctl_request(req, 10000);
        json_decref(req);
        server = sc_json_str(status, "ingest_public_key");
    }
    int rc = 0;
    if (!server || strlen(server) != 40) {
        fprintf(stderr, "safecampusctl: --server-key: give the daemon's ingest public key\n");
        rc = 2;
    } else {
        zmq_setsockopt(dealer, ZMQ_CURVE_PUBLICKEY, pub, 40);
        zmq_setsockopt(dealer, ZMQ_CURVE_SECRETKEY, sec, 40);
        zmq_setsockopt(dealer, ZMQ_CURVE_SERVERKEY, server, 40);
        static char name[SC_CODE_MAX + 1];
        snprintf(name, sizeof name, "%s",
                 sc_json_str(keys, "source") ? sc_json_str(keys, "source") : "safecampusctl");
        *source = name;
    }
    json_decref(status);
    json_decref(keys);
    return rc;
}

/* Builds the envelope of the one-event form. */
static json_t *s_from_args(int argc, char **argv, const char *source)
{
    json_t *env = json_pack("{s:s, s:s, s:{}}", "type", argv[1], "source", source, "data");
    json_t *data = json_object_get(env, "data");
    static const struct {
        const char *flag, *key;
    } flags[] = {{"--school", "school"}, {"--district", "district"}, {"--source", "source"},
                 {"--id", "id"},         {"--actor", "actor"},       {"--at", "occurred_at"}};
    for (int i = 2; i < argc; i++) {
        bool done = false;
        for (size_t f = 0; f < sizeof flags / sizeof flags[0] && !done; f++)
            if (strcmp(argv[i], flags[f].flag) == 0 && i + 1 < argc) {
                json_object_set_new(env, flags[f].key, json_string(argv[++i]));
                done = true;
            }
        if (done)
            continue;
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) {
            json_error_t jerr;
            json_t *d = json_loads(argv[++i], 0, &jerr);
            if (!json_is_object(d)) {
                fprintf(stderr, "safecampusctl: --data: expected a JSON object (%s)\n", jerr.text);
                json_decref(d);
                json_decref(env);
                return NULL;
            }
            json_object_update(data, d);
            json_decref(d);
            continue;
        }
        const char *eq = strchr(argv[i], '=');
        if (!eq || eq == argv[i]) {
            fprintf(stderr, "safecampusctl: \"%s\": expected key=value or a --flag\n", argv[i]);
            json_decref(env);
            return NULL;
        }
        char *key = strndup(argv[i], (size_t)(eq - argv[i]));
        json_t *v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
        json_object_set_new(data, key, v ? v : json_string(eq + 1));
        free(key);
    }
    return env;
}

/* Reads one reply, prints it; returns 1 if it refused, 0 if ok, -1 on timeout. */
static int s_reply(void *dealer)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, dealer, 0) < 0) {
        zmq_msg_close(&m);
        return -1;
    }
    fwrite(zmq_msg_data(&m), 1, zmq_msg_size(&m), stdout);
    fputc('\n', stdout);
    json_t *r = json_loadb(zmq_msg_data(&m), zmq_msg_size(&m), 0, NULL);
    int refused = !json_is_true(json_object_get(r, "ok"));
    json_decref(r);
    zmq_msg_close(&m);
    return refused;
}

int sc__ctl_send(void *zctx, const char *endpoint, int argc, char **argv)
{
    void *dealer = zmq_socket(zctx, ZMQ_DEALER);
    const char *source = "safecampusctl";
    int crc = s_curve(dealer, &argc, argv, &source);
    if (crc != 0 || argc < 2 || strcmp(argv[1], "--help") == 0) {
        zmq_close(dealer);
        if (crc != 0)
            return crc;
        s_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    FILE *in = NULL;
    json_t *single = NULL;
    if (strcmp(argv[1], "-") == 0) {
        in = stdin;
    } else if (strcmp(argv[1], "--file") == 0) {
        if (argc < 3 || !(in = fopen(argv[2], "r"))) {
            fprintf(stderr, "safecampusctl: --file: could not open \"%s\"\n",
                    argc < 3 ? "" : argv[2]);
            zmq_close(dealer);
            return 2;
        }
    } else if (!(single = s_from_args(argc, argv, source))) {
        zmq_close(dealer);
        return 2;
    }

    int linger = 0, timeout = 30000;
    zmq_setsockopt(dealer, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(dealer, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    if (zmq_connect(dealer, endpoint) < 0) {
        fprintf(stderr, "safecampusctl: could not connect to %s: %s\n", endpoint,
                zmq_strerror(zmq_errno()));
        zmq_close(dealer);
        return 3;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    long sent = 0, answered = 0, refused = 0;
    int rc = 0;
    if (single) {
        char *text = json_dumps(single, JSON_COMPACT);
        zmq_send(dealer, text, strlen(text), 0);
        free(text);
        json_decref(single);
        sent = 1;
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        while ((n = getline(&line, &cap, in)) > 0) {
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                line[--n] = '\0';
            if (n == 0)
                continue;
            zmq_send(dealer, line, (size_t)n, 0);
            sent++;
            while (sent - answered >= S_WINDOW) {
                int r = s_reply(dealer);
                if (r < 0)
                    goto timeout;
                refused += r;
                answered++;
            }
        }
        free(line);
        if (in != stdin)
            fclose(in);
    }
    while (answered < sent) {
        int r = s_reply(dealer);
        if (r < 0)
            goto timeout;
        refused += r;
        answered++;
    }
    rc = refused ? 1 : 0;
    goto out;
timeout:
    fprintf(stderr,
            "safecampusctl: no reply from %s for 30 s (%ld of %ld answered): is safecampusd "
            "running?\n",
            endpoint, answered, sent);
    rc = 3;
out:
    zmq_close(dealer);
    return rc;
}
