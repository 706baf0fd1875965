/* Who may send: loopback-only unless CURVE is on or the operator says insecure. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

/* True for endpoints only this machine can reach. */
static bool s_local_endpoint(const char *endpoint)
{
    static const char *const local[] = {"ipc://", "inproc://", "tcp://127.", "tcp://localhost:",
                                        "tcp://[::1]:", NULL};
    for (size_t i = 0; local[i]; i++)
        if (strncmp(endpoint, local[i], strlen(local[i])) == 0)
            return true;
    return false;
}

int sc__security_setup(sc__daemon_t *d, void *router, char *err, size_t errlen)
{
    (void)router;
    const json_t *core = d->cfg->core;
    const char *endpoint = sc__cfg_str(core, "ingest", "endpoint");
    bool curve = sc__cfg_bool(core, "ingest", "curve");
    bool insecure = sc__cfg_bool(core, "ingest", "insecure");
    if (curve) {
        snprintf(err, errlen, "ingest.curve: CURVE authentication is not available in this build");
        return -ENOTSUP;
    }
    if (!s_local_endpoint(endpoint)) {
        if (!insecure) {
            snprintf(err, errlen,
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

json_t *sc__security_control(sc__daemon_t *d, const char *cmd, const json_t *req)
{
    (void)d;
    (void)req;
    return json_pack("{s:b, s:s, s:s+}", "ok", 0, "error", "unknown_command", "detail", cmd,
                     ": sources need ingest.curve, which this build does not offer");
}
