/*
 * snapshot.c - the immutable, reference-counted configuration (see
 * snapshot.h).
 *
 * Invariant: once snapshot_load() returns, no member changes until the
 * last snapshot_put() frees it; the password is wiped before it is freed.
 * A snapshot is only built from files nobody else can change: the users
 * and aliases files and their folders are checked like tern.conf.
 */
#include "conf/snapshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

void snapshot_check_files(const struct conf *c, const struct policy *p, struct conf_errors *e)
{
    char path[CONF_STR_MAX + 16];
    snprintf(path, sizeof(path), "%s/domains", c->data_dir);
    conf_check_file(c, path, CONF_FILE_RULES, e);
    for (size_t i = 0; i < p->n; i++) {
        const struct policy_domain *d = &p->v[i];
        conf_check_file(c, d->dir, CONF_FILE_RULES, e);
        if (policy_file_path(c, d->name, "users", path, sizeof(path)) == 0)
            conf_check_file(c, path, CONF_FILE_USERS, e);
        if (policy_file_path(c, d->name, "aliases", path, sizeof(path)) == 0)
            conf_check_file(c, path, CONF_FILE_RULES, e);
    }
}

struct snapshot *snapshot_from_conf(const struct conf *c, struct conf_errors *e)
{
    struct snapshot *s = calloc(1, sizeof(*s));
    char why[256];
    if (!s)
        fatal("out of memory");
    s->conf = *c;
    atomic_init(&s->refs, 1);
    s->generation = 1;
    if (policy_load(&s->conf, &s->policy, e) == 0)
        snapshot_check_files(&s->conf, &s->policy, e);
    if (e->n == 0)
        dkimkeys_load(&s->conf, &s->policy, &s->dkim, e);
    if (e->n) {
        snapshot_put(s);
        return NULL;
    }
    if (s->conf.smarthost_password_file[0]) {
        size_t len = 0;
        if (conf_read_file(s->conf.smarthost_password_file, 4096, &s->smarthost_pass, &len, why,
                           sizeof(why)) < 0) {
            conf_error(e, s->conf.smarthost_password_file, 0, "smarthost_password_file: %s", why);
            snapshot_put(s);
            return NULL;
        }
        s->smarthost_pass[strcspn(s->smarthost_pass, "\r\n")] = '\0';
    }
    return s;
}

struct snapshot *snapshot_load(const char *path, struct conf_errors *e)
{
    struct conf *c = malloc(sizeof(*c)); /* a struct conf is large: not on the stack */
    if (!c)
        fatal("out of memory");
    struct snapshot *s = NULL;
    if (conf_load(path, c, e) == 0 && e->n == 0)
        s = snapshot_from_conf(c, e);
    free(c);
    return s;
}

struct snapshot *snapshot_ref(struct snapshot *s)
{
    atomic_fetch_add(&s->refs, 1);
    return s;
}

void snapshot_put(struct snapshot *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    policy_free(&s->policy);
    dkimkeys_free(&s->dkim);
    if (s->smarthost_pass) {
        explicit_bzero(s->smarthost_pass, strlen(s->smarthost_pass));
        free(s->smarthost_pass);
    }
    free(s);
}
