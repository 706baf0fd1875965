/* safecampusctl source: authenticated sending systems (needs ingest.curve). */
#include "../daemon/internal.h"
#include "ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sc__ctl_source(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        printf("usage: safecampusctl source add NAME --schools A,B [--districts D]\n"
               "       safecampusctl source list | revoke NAME | grant NAME … | ungrant NAME …\n");
        return argc < 2 ? 2 : 0;
    }
    char cmd[64];
    snprintf(cmd, sizeof cmd, "source.%s", argv[1]);
    json_t *req = json_pack("{s:s}", "cmd", cmd);
    for (int i = 2; i < argc; i++) {
        if ((strcmp(argv[i], "--schools") == 0 || strcmp(argv[i], "--districts") == 0) &&
            i + 1 < argc) {
            json_t *list = json_array();
            char *copy = strdup(argv[i + 1]), *save = NULL;
            for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
                json_array_append_new(list, json_string(t));
            free(copy);
            json_object_set_new(req, argv[i] + 2, list);
            i++;
        } else if (!json_object_get(req, "source")) {
            json_object_set_new(req, "source", json_string(argv[i]));
        } else {
            fprintf(stderr, "safecampusctl: source: unexpected \"%s\"\n", argv[i]);
            json_decref(req);
            return 2;
        }
    }
    json_t *reply = sc__ctl_request(req, 10000);
    json_decref(req);
    if (!reply)
        return 3;
    int rc = json_is_true(json_object_get(reply, "ok")) ? 0 : 1;
    /* The secret is shown this once; the reply is printed as the one record to keep. */
    if (strcmp(argv[1], "add") == 0 && rc == 0)
        json_object_del(reply, "ok");
    char *text = json_dumps(reply, JSON_COMPACT | JSON_PRESERVE_ORDER);
    puts(text);
    free(text);
    json_decref(reply);
    return rc;
}
