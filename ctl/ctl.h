/* safecampusctl's commands, one file each. */
#ifndef SC_CTL_H
#define SC_CTL_H

#include <jansson.h>

/*
 * Sends one control request and waits up to timeout_ms. Returns the reply (new
 * reference) or NULL after printing why the daemon could not be reached.
 */
json_t *sc__ctl_request(const json_t *req, int timeout_ms);

/* safecampusctl send …: argv[0] is "send". Returns the exit status. */
int sc__ctl_send(void *zctx, const char *endpoint, int argc, char **argv);

/* safecampusctl source …: argv[0] is "source". */
int sc__ctl_source(int argc, char **argv);

/* safecampusctl ledger … is declared in ledger.h. */
#include "ledger.h"

#endif
