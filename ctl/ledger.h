/* safecampusctl ledger: the school's (or district's) safety ledger gathered from every plugin. */
#ifndef SC_CTL_LEDGER_H
#define SC_CTL_LEDGER_H

#include <jansson.h>

/*
 * Sends one control request to the daemon and returns its reply (new reference), or NULL when
 * the daemon cannot be reached. `request` is borrowed: the caller still owns it.
 */
typedef json_t *(*sc_ctl_query_fn)(void *ctl, json_t *request);

/*
 * Runs `safecampusctl ledger …`. argv[0] is the command's name ("ledger"); the options follow:
 *
 *   --school CODE | --district CODE   whose ledger (a district: its summary by school)
 *   --from YYYY-MM-DD --to YYYY-MM-DD the period, inclusive, in the school's local dates
 *   --format html|csv|json            default html
 *   --out DIR                         where the files go (html/json: one file; csv: one file per
 *                                     section and index.csv); html and json go to stdout without it
 *   --page N                          rows asked of a plugin per request (1–1000, default 500)
 *
 * It asks the daemon for its plugins ({"cmd":"plugins"}) and pages through each one's
 * {"cmd":"query","plugin":…,"what":"ledger",…} answer, merging their sections into the order of
 * the school safety plan and writing each page's rows as they arrive: no more than one page per
 * plugin is held at a time. A plugin that refuses `what:"ledger"` as unknown is left out (with a
 * message); any other refusal fails the run. Messages go to stderr. Returns the process's exit
 * status: 0, 1 when the ledger could not be made (daemon unreachable, a plugin refusing or
 * failing mid-way, a write error), 2 for a usage error. Runs on the calling thread; `query` is
 * called from it only.
 */
int sc__ctl_ledger(int argc, char **argv, sc_ctl_query_fn query, void *ctl);

#endif
