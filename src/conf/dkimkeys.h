/*
 * dkimkeys.h - the DKIM signing keys of `tern serve`, part of the
 * configuration snapshot (loaded with it, so SIGHUP reloads them), and the
 * one signing call every path of the server uses: authenticated
 * submissions (server/receive.c), sendmail pickup (deliver/engine.c) and
 * DSNs (deliver/attempt.c).
 *
 * Where the keys are: for each local domain, every DIR/SELECTOR.key, DIR
 * being [dkim] keys_dir/DOMAIN when set, else DATA_DIR/domains/DOMAIN/dkim.
 * A key readable or writable by others refuses the snapshot (like the TLS
 * key: conf_check_file CONF_FILE_SECRET), so does a key that does not load.
 * Keys are read by whoever builds the snapshot: root at start, [server]
 * user on SIGHUP; so they must be the tern user's (tern dkim keygen does
 * this as root).
 *
 * Which keys sign: those of the From: domain, else of the envelope
 * sender's; a domain without keys uses its nearest parent domain's (so
 * MAILER-DAEMON@mail.example.org is signed with example.org's keys, which
 * DMARC's relaxed alignment accepts).  All keys of that domain sign (RSA
 * and Ed25519: dual signing).
 */
#ifndef TERN_CONF_DKIMKEYS_H
#define TERN_CONF_DKIMKEYS_H

#include <stddef.h>

#include "conf/config.h"
#include "conf/policy.h"
#include "core/buf.h"
#include "mailauth/dkim.h"

#define DKIMKEYS_PER_DOMAIN 8 /* keys of one domain that sign */
#define DKIMKEYS_MAX 4096     /* keys in all */

struct dkimkeys {
    struct dkim_key **v; /* sorted by domain, then selector */
    size_t n;
};

/*
 * Load the keys of every domain of p (nothing when [dkim] sign = no).
 * Problems go to *e ("PATH: what").  Returns 0, or -1 when e got one.
 */
int dkimkeys_load(const struct conf *c, const struct policy *p, struct dkimkeys *out,
                  struct conf_errors *e);
void dkimkeys_free(struct dkimkeys *k);

/* The keys that sign for domain (or its nearest parent with keys): count
 * written to out (at most max). */
size_t dkimkeys_for(const struct dkimkeys *k, const char *domain, const struct dkim_key **out,
                    size_t max);

/*
 * Sign the message in *msg (whole, CRLF) when its From: domain or else the
 * sender's domain has keys: the DKIM-Signature fields are put in front of
 * it.  what names the message in logs ("id=..."); a failure is logged and
 * the message left unsigned.  Returns the number of signatures added.
 */
int dkimkeys_sign(const struct dkimkeys *k, const char *sender, struct buf *msg, const char *what);

#endif
