/*
 * dkimkeys.c - the server's DKIM keys and signing (see dkimkeys.h).
 *
 * Immutable once loaded (part of a snapshot): signing only reads the keys,
 * so any thread may sign with them at once (OpenSSL 3 keys are safe to
 * share for signing with a context each).
 */
#include "conf/dkimkeys.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/header.h"
#include "core/log.h"

static int key_cmp(const void *a, const void *b)
{
    const struct dkim_key *x = *(const struct dkim_key *const *)a;
    const struct dkim_key *y = *(const struct dkim_key *const *)b;
    int r = strcmp(x->domain, y->domain);
    return r ? r : strcmp(x->selector, y->selector);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void load_domain(const struct conf *c, const char *domain, const char *dir,
                        struct dkimkeys *out, struct conf_errors *e)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char *names[256];
    size_t nn = 0;

    if (!d) {
        if (errno != ENOENT)
            conf_error(e, dir, 0, "[dkim] keys: %s", strerror(errno));
        return;
    }
    conf_check_file(c, dir, CONF_FILE_RULES, e);
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n <= 4 || de->d_name[0] == '.' || strcmp(de->d_name + n - 4, ".key") != 0)
            continue;
        if (nn == sizeof(names) / sizeof(names[0])) {
            conf_error(e, dir, 0, "[dkim] more than %zu keys", nn);
            break;
        }
        names[nn] = strdup(de->d_name);
        if (!names[nn])
            fatal("out of memory");
        nn++;
    }
    closedir(d);
    qsort(names, nn, sizeof(names[0]), name_cmp);
    for (size_t i = 0; i < nn; i++) {
        char path[CONF_STR_MAX + 600], selector[DKIM_SELECTOR_MAX + 1], why[512];
        size_t sl = strlen(names[i]) - 4;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (sl > DKIM_SELECTOR_MAX) {
            conf_error(e, path, 0, "[dkim] selector longer than %d octets", DKIM_SELECTOR_MAX);
            continue;
        }
        memcpy(selector, names[i], sl);
        selector[sl] = '\0';
        unsigned before = (unsigned)e->n;
        conf_check_file(c, path, CONF_FILE_SECRET, e);
        if (e->n != before)
            continue;
        struct dkim_key *k = dkim_key_load(path, domain, selector, why, sizeof(why));
        if (!k) {
            conf_error(e, path, 0, "[dkim] %s", why);
            continue;
        }
        if (out->n == DKIMKEYS_MAX) {
            dkim_key_free(k);
            conf_error(e, path, 0, "[dkim] more than %d keys in all", DKIMKEYS_MAX);
            continue;
        }
        out->v[out->n++] = k;
    }
    for (size_t i = 0; i < nn; i++)
        free(names[i]);
}

int dkimkeys_load(const struct conf *c, const struct policy *p, struct dkimkeys *out,
                  struct conf_errors *e)
{
    size_t before = e->n;

    out->v = NULL;
    out->n = 0;
    if (!c->dkim_sign)
        return 0;
    out->v = calloc(DKIMKEYS_MAX, sizeof(out->v[0]));
    if (!out->v)
        fatal("out of memory");
    for (size_t i = 0; i < p->n; i++) {
        char dir[CONF_STR_MAX + 300];
        if (c->dkim_keys_dir[0])
            snprintf(dir, sizeof(dir), "%s/%s", c->dkim_keys_dir, p->v[i].name);
        else
            snprintf(dir, sizeof(dir), "%s/dkim", p->v[i].dir);
        load_domain(c, p->v[i].name, dir, out, e);
    }
    qsort(out->v, out->n, sizeof(out->v[0]), key_cmp);
    return e->n > before ? -1 : 0;
}

void dkimkeys_free(struct dkimkeys *k)
{
    for (size_t i = 0; i < k->n; i++)
        dkim_key_free(k->v[i]);
    free(k->v);
    k->v = NULL;
    k->n = 0;
}

size_t dkimkeys_for(const struct dkimkeys *k, const char *domain, const struct dkim_key **out,
                    size_t max)
{
    const char *d = domain;
    while (d && *d) {
        size_t n = 0;
        for (size_t i = 0; i < k->n && n < max; i++) /* few keys: a scan is enough */
            if (strcasecmp(k->v[i]->domain, d) == 0)
                out[n++] = k->v[i];
        if (n)
            return n;
        d = strchr(d, '.');
        if (d)
            d++;
        if (d && !strchr(d, '.'))
            break; /* never a top-level domain */
    }
    return 0;
}

/* The domain of the first address of a From: value, lower case: "" if none. */
static void from_domain(const char *v, char *out, size_t size)
{
    const char *lt = strchr(v, '<'), *s = lt ? lt + 1 : v, *at = NULL, *p;
    size_t n = 0;
    for (p = s; *p && *p != '>' && *p != ',' && *p != ' ' && *p != ';'; p++)
        if (*p == '@')
            at = p;
    out[0] = '\0';
    if (!at)
        return;
    for (const char *q = at + 1; q < p && n + 1 < size; q++)
        out[n++] = (char)((*q >= 'A' && *q <= 'Z') ? *q + 32 : *q);
    out[n] = '\0';
}

int dkimkeys_sign(const struct dkimkeys *k, const char *sender, struct buf *msg, const char *what)
{
    const struct dkim_key *keys[DKIMKEYS_PER_DOMAIN];
    char from[1024], dom[256];
    size_t nk = 0;
    struct buf hdr = {0};
    int signed_n = 0;

    if (!k || k->n == 0 || msg->len == 0)
        return 0;
    if (header_get(msg->p, msg->len, "From", from, sizeof(from)) >= 0) {
        from_domain(from, dom, sizeof(dom));
        if (dom[0])
            nk = dkimkeys_for(k, dom, keys, DKIMKEYS_PER_DOMAIN);
    }
    if (nk == 0 && sender && strchr(sender, '@')) {
        snprintf(dom, sizeof(dom), "%s", strrchr(sender, '@') + 1);
        for (char *q = dom; *q; q++)
            *q = (char)((*q >= 'A' && *q <= 'Z') ? *q + 32 : *q);
        nk = dkimkeys_for(k, dom, keys, DKIMKEYS_PER_DOMAIN);
    }
    if (nk == 0)
        return 0;
    time_t now = time(NULL);
    for (size_t i = 0; i < nk; i++) {
        char why[256];
        if (dkim_sign(keys[i], msg->p, msg->len, now, &hdr, why, sizeof(why)) < 0) {
            log_warn("%s: not signed with DKIM key %s._domainkey.%s: %s", what, keys[i]->selector,
                     keys[i]->domain, why);
            continue;
        }
        signed_n++;
    }
    if (signed_n) {
        buf_append(&hdr, msg->p, msg->len);
        buf_free(msg);
        *msg = hdr;
    } else {
        buf_free(&hdr);
    }
    return signed_n;
}
