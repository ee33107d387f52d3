/*
 * dkimsign.h - DKIM signing in `tern send` (--dkim-key, --dkim-selector,
 * --dkim-domain): the keys named on the command line, loaded once, and the
 * signing of each rendered message as the last step before it is sent (the
 * signature covers the final header: List-Unsubscribe included).
 *
 * Pairing: the i-th --dkim-selector (and --dkim-domain) goes with the i-th
 * --dkim-key; one --dkim-domain serves every key; without --dkim-domain the
 * domain of --from.  At most SEND_DKIM_MAX keys (RSA and Ed25519: dual
 * signing).  Keys are shared read-only by the worker threads.
 */
#ifndef TERN_SEND_DKIMSIGN_H
#define TERN_SEND_DKIMSIGN_H

#include <stddef.h>

#include "mailauth/dkim.h"

#define SEND_DKIM_MAX 4

enum send_dkim_opt { SEND_DKIM_KEY, SEND_DKIM_SELECTOR, SEND_DKIM_DOMAIN };

struct send_dkim {
    const char *keyfile[SEND_DKIM_MAX], *selector[SEND_DKIM_MAX], *domain[SEND_DKIM_MAX];
    size_t nkey, nsel, ndom;
    struct dkim_key *keys[SEND_DKIM_MAX];
    size_t n; /* keys loaded */
};

/* Record one option; -1 (message printed) when given too often. */
int send_dkim_option(struct send_dkim *d, enum send_dkim_opt which, const char *v);

/* Load the keys (from: the --from address, for the default domain).  0, or
 * -1 with the problem printed ("tern send: --dkim-key FILE: ..."). */
int send_dkim_load(struct send_dkim *d, const char *from);

/* Prepend a DKIM-Signature per key to *msg (malloc'd; replaced by a new
 * malloc'd message).  0 (also with no keys), or -1 with why. */
int send_dkim_sign(const struct send_dkim *d, char **msg, size_t *len, char *why, size_t whylen);

void send_dkim_free(struct send_dkim *d);

#endif
