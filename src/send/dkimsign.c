/*
 * dkimsign.c - DKIM signing for `tern send` (see dkimsign.h).
 */
#include "send/dkimsign.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"

static const char *const opt_names[] = {"dkim-key", "dkim-selector", "dkim-domain"};

int send_dkim_option(struct send_dkim *d, enum send_dkim_opt which, const char *v)
{
    size_t *n = which == SEND_DKIM_KEY        ? &d->nkey
                : which == SEND_DKIM_SELECTOR ? &d->nsel
                                              : &d->ndom;
    const char **a = which == SEND_DKIM_KEY        ? d->keyfile
                     : which == SEND_DKIM_SELECTOR ? d->selector
                                                   : d->domain;
    if (*n == SEND_DKIM_MAX) {
        fprintf(stderr, "tern send: --%s given more than %d times\n", opt_names[which],
                SEND_DKIM_MAX);
        return -1;
    }
    a[(*n)++] = v;
    return 0;
}

int send_dkim_load(struct send_dkim *d, const char *from)
{
    char why[512], fromdom[256] = "";

    if (d->nkey == 0) {
        if (d->nsel || d->ndom) {
            fprintf(stderr, "tern send: --dkim-selector and --dkim-domain need --dkim-key\n");
            return -1;
        }
        return 0;
    }
    if (d->nsel != d->nkey) {
        fprintf(stderr, "tern send: %zu --dkim-key but %zu --dkim-selector: one selector per key\n",
                d->nkey, d->nsel);
        return -1;
    }
    if (d->ndom > 1 && d->ndom != d->nkey) {
        fprintf(stderr,
                "tern send: %zu --dkim-key but %zu --dkim-domain: one domain, or one per key\n",
                d->nkey, d->ndom);
        return -1;
    }
    if (d->ndom == 0) {
        const char *at = from ? strrchr(from, '@') : NULL;
        if (!at || !at[1]) {
            fprintf(stderr,
                    "tern send: --dkim-key without --dkim-domain needs --from with a domain\n");
            return -1;
        }
        snprintf(fromdom, sizeof(fromdom), "%s", at + 1);
        fromdom[strcspn(fromdom, ">")] = '\0';
    }
    for (size_t i = 0; i < d->nkey; i++) {
        const char *dom = d->ndom == 0 ? fromdom : d->domain[d->ndom == 1 ? 0 : i];
        d->keys[i] = dkim_key_load(d->keyfile[i], dom, d->selector[i], why, sizeof(why));
        if (!d->keys[i]) {
            fprintf(stderr, "tern send: --dkim-key %s\n", why);
            send_dkim_free(d);
            return -1;
        }
        d->n = i + 1;
    }
    return 0;
}

int send_dkim_sign(const struct send_dkim *d, char **msg, size_t *len, char *why, size_t whylen)
{
    struct buf hdr = {0};
    time_t now = time(NULL);

    if (d->n == 0)
        return 0;
    for (size_t i = 0; i < d->n; i++) {
        char w[256];
        if (dkim_sign(d->keys[i], *msg, *len, now, &hdr, w, sizeof(w)) < 0) {
            snprintf(why, whylen, "DKIM signing with %s._domainkey.%s: %s", d->keys[i]->selector,
                     d->keys[i]->domain, w);
            buf_free(&hdr);
            return -1;
        }
    }
    buf_append(&hdr, *msg, *len);
    free(*msg);
    *msg = hdr.p;
    *len = hdr.len;
    return 0;
}

void send_dkim_free(struct send_dkim *d)
{
    for (size_t i = 0; i < d->n; i++)
        dkim_key_free(d->keys[i]);
    d->n = 0;
}
