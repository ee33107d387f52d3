/*
 * route.c - routing: alias resolution and delivery targets (see route.h).
 *
 * Invariants: a resolution never reads the disk and is bounded in depth,
 * steps, targets and notes; every string of a struct route_result is a
 * heap copy owned by it (route_result_free()).
 */
#include "deliver/route.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/config.h"
#include "conf/snapshot.h"
#include "core/log.h"
#include "deliver/remote.h"
#include "queue/envelope.h"

static char *route_strdup(const char *s)
{
    char *d = strdup(s);
    if (!d)
        fatal("out of memory");
    return d;
}

bool route_relay_safe(const struct mailaddr *a)
{
    if (a->had_route || strchr(a->local, '%') || strchr(a->local, '!'))
        return false;
    if (a->is_quoted && strchr(a->local, '@'))
        return false;
    return true;
}

const char *route_status_str(int status)
{
    switch (status) {
    case ROUTE_OK:
        return "local";
    case ROUTE_NOT_LOCAL:
        return "not a local domain";
    case ROUTE_UNKNOWN:
        return "unknown user";
    case ROUTE_ELOOP:
        return "alias loop or expansion limit";
    case ROUTE_EUNSAFE:
        return "address form never relayed ('%', '!', source route or quoted '@')";
    case ROUTE_EINVALID:
        return "not a valid address";
    }
    return "?";
}

#define CHAIN_ADDR (ADDR_LOCAL_MAX + 1 + ADDR_DOMAIN_MAX + 1)

struct route_walk {
    const struct policy *p;
    struct route_result *r;
    char show[ROUTE_MAX_DEPTH + 1][CHAIN_ADDR]; /* the chain, as written */
    char seen[ROUTE_MAX_DEPTH + 1][CHAIN_ADDR]; /* the chain, as keys */
    int depth;
    unsigned steps;
    bool unknown, looped, full;
};

__attribute__((format(printf, 2, 3))) static void route_note(struct route_walk *w, const char *fmt,
                                                             ...)
{
    char s[1024 + 64 * ROUTE_MAX_DEPTH], *d;
    va_list ap;
    if (w->r->n_notes >= ROUTE_MAX_NOTES)
        return;
    va_start(ap, fmt);
    vsnprintf(s, sizeof(s), fmt, ap);
    va_end(ap);
    d = strdup(s);
    if (!d)
        fatal("out of memory");
    w->r->notes[w->r->n_notes++] = d;
}

/* The chain so far, then last (if not NULL), joined with " -> ". */
static char *route_chain(const struct route_walk *w, const char *last)
{
    size_t cap = (size_t)(w->depth + 1) * (CHAIN_ADDR + 4) + 1, o = 0;
    char *s = malloc(cap);
    if (!s)
        fatal("out of memory");
    s[0] = '\0';
    for (int i = 0; i < w->depth; i++)
        o += (size_t)snprintf(s + o, cap - o, "%s%s", i ? " -> " : "", w->show[i]);
    if (last && (w->depth == 0 || strcmp(w->show[w->depth - 1], last) != 0))
        snprintf(s + o, cap - o, "%s%s", w->depth ? " -> " : "", last);
    return s;
}

static void route_emit(struct route_walk *w, enum route_kind kind, const char *user,
                       const char *domain, const char *pipe)
{
    char value[CHAIN_ADDR] = "";
    struct route_result *r = w->r;

    if (!pipe)
        snprintf(value, sizeof(value), "%s@%s", user, domain);
    const char *v = pipe ? pipe : value;
    for (size_t i = 0; i < r->n; i++)
        if (r->v[i].kind == kind && strcmp(r->v[i].value, v) == 0)
            return; /* reached twice: deliver once */
    if (r->n >= ROUTE_MAX_TARGETS) {
        if (!w->full)
            route_note(w, "more than %d targets: the rest are dropped", ROUTE_MAX_TARGETS);
        w->full = true;
        return;
    }
    if (r->n % 16 == 0) {
        struct route_target *nv = realloc(r->v, (r->n + 16) * sizeof(*nv));
        if (!nv)
            fatal("out of memory");
        r->v = nv;
    }
    struct route_target *t = &r->v[r->n++];
    t->kind = kind;
    t->value = route_strdup(v);
    t->user = route_strdup(user);
    t->domain = route_strdup(domain);
    t->chain = route_chain(w, pipe ? NULL : value);
}

static void route_walk_addr(struct route_walk *w, const char *local, const char *domain);

/* Expand entry x of domain d, reached as local@d. */
static void route_alias(struct route_walk *w, const struct policy_domain *d,
                        const struct alias_entry *x, const char *local, const char *seen)
{
    if (w->depth >= ROUTE_MAX_DEPTH) {
        char *c = route_chain(w, NULL);
        route_note(w, "alias expansion deeper than %d levels at %s@%s (%s)", ROUTE_MAX_DEPTH, local,
                   d->name, c);
        free(c);
        w->looped = true;
        return;
    }
    snprintf(w->show[w->depth], CHAIN_ADDR, "%s@%s", local, d->name);
    snprintf(w->seen[w->depth], CHAIN_ADDR, "%s", seen);
    w->depth++;
    for (size_t i = 0; i < x->n; i++) {
        const struct alias_tgt *t = &x->t[i];
        switch (t->kind) {
        case ALIAS_T_PIPE:
            route_emit(w, ROUTE_PIPE, x->name, d->name, t->s);
            break;
        case ALIAS_T_NAME:
            route_walk_addr(w, t->s, d->name);
            break;
        case ALIAS_T_ADDR:
            route_walk_addr(w, t->s, t->domain);
            break;
        }
    }
    w->depth--;
}

/* Resolve local@domain (domain in lower case) at the current depth. */
static void route_walk_addr(struct route_walk *w, const char *local, const char *domain)
{
    const struct policy *p = w->p;
    char key[USERS_NAME_MAX + 1], seen[CHAIN_ADDR];

    if (++w->steps > ROUTE_MAX_STEPS) {
        if (w->steps == ROUTE_MAX_STEPS + 1)
            route_note(w, "more than %d addresses looked at: expansion stopped", ROUTE_MAX_STEPS);
        w->looped = true;
        return;
    }
    const struct policy_domain *d = policy_domain(p, domain);
    if (!d) {
        route_emit(w, ROUTE_REMOTE, local, domain, NULL);
        return;
    }
    alias_key(local, p->drop_chars, p->suffix_separators, key);
    snprintf(seen, sizeof(seen), "%s@%s", key, d->name);
    const struct alias_entry *x = key[0] ? policy_find_alias(d, key) : NULL;
    const struct users_entry *u = key[0] ? policy_find_user(d, key) : NULL;

    for (int i = 0; i < w->depth; i++) {
        if (strcmp(w->seen[i], seen) != 0)
            continue;
        if (u) { /* "bob: bob, ..." - the user itself receives */
            route_emit(w, ROUTE_LOCAL, u->name, d->name, NULL);
            return;
        }
        char *c = route_chain(w, NULL);
        route_note(w, "alias loop: %s -> %s@%s", c, local, d->name);
        free(c);
        w->looped = true;
        return;
    }
    if (x)
        route_alias(w, d, x, local, seen);
    else if (u)
        route_emit(w, ROUTE_LOCAL, u->name, d->name, NULL);
    else if (d->catchall)
        route_alias(w, d, d->catchall, local, seen);
    else {
        if (w->depth > 0) {
            char *c = route_chain(w, NULL);
            route_note(w, "unknown user %s@%s (reached by %s)", local, d->name, c);
            free(c);
        }
        w->unknown = true;
    }
}

int route_resolve(const struct policy *p, const struct mailaddr *a, struct route_result *r)
{
    struct route_walk *w;
    char domain[ADDR_DOMAIN_MAX + 1];

    memset(r, 0, sizeof(*r));
    if (a->is_null || !a->local[0] || !a->domain[0])
        return ROUTE_EINVALID;
    size_t i;
    for (i = 0; a->domain[i] && i < ADDR_DOMAIN_MAX; i++)
        domain[i] = (char)tolower((unsigned char)a->domain[i]);
    domain[i] = '\0';
    snprintf(r->original, sizeof(r->original), "%s@%s", a->local, domain);

    if (a->is_literal || !policy_domain(p, domain)) {
        if (!route_relay_safe(a))
            return ROUTE_EUNSAFE;
        w = calloc(1, sizeof(*w));
        if (!w)
            fatal("out of memory");
        w->p = p;
        w->r = r;
        route_emit(w, ROUTE_REMOTE, a->local, domain, NULL);
        free(w);
        return ROUTE_NOT_LOCAL;
    }
    w = calloc(1, sizeof(*w)); /* ~6 KiB of chain: not on the stack */
    if (!w)
        fatal("out of memory");
    w->p = p;
    w->r = r;
    route_walk_addr(w, a->local, domain);
    int status = r->n > 0 ? ROUTE_OK : w->looped ? ROUTE_ELOOP : ROUTE_UNKNOWN;
    free(w);
    return status;
}

int route_resolve_str(const struct policy *p, const char *address, struct route_result *r)
{
    struct mailaddr a;
    size_t used, n = strlen(address);
    int err;

    memset(r, 0, sizeof(*r));
    if (n > 0 && address[0] == '<') {
        err = addr_parse_path(address, n, ADDR_ALLOW_UTF8, &a, &used);
        if (err == ADDR_OK && used != n)
            err = ADDR_ESYNTAX;
    } else {
        err = addr_parse_mailbox(address, n, ADDR_ALLOW_UTF8, &a);
    }
    if (err != ADDR_OK)
        return ROUTE_EINVALID;
    return route_resolve(p, &a, r);
}

void route_result_free(struct route_result *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].value);
        free(r->v[i].user);
        free(r->v[i].domain);
        free(r->v[i].chain);
    }
    free(r->v);
    for (size_t i = 0; i < r->n_notes; i++)
        free(r->notes[i]);
    memset(r, 0, sizeof(*r));
}

/* ---- typed targets ------------------------------------------------------------ */

int route_target(const struct conf *c, const struct route_target *t, char *out, size_t size)
{
    char path[CONF_STR_MAX];
    switch (t->kind) {
    case ROUTE_LOCAL:
        if (c->delivery == CONF_DELIVERY_MDA)
            return snprintf(out, size, "mda") < (int)size ? 0 : -1;
        if (c->delivery == CONF_DELIVERY_LMTP) /* the endpoint configured when it is delivered */
            return snprintf(out, size, "lmtp") < (int)size ? 0 : -1;
        if (conf_maildir_path(c, t->user, t->domain, path, sizeof(path)) < 0)
            return -1;
        return snprintf(out, size, "maildir:%s", path) < (int)size ? 0 : -1;
    case ROUTE_PIPE:
        return snprintf(out, size, "pipe:%s", t->value) < (int)size ? 0 : -1;
    case ROUTE_REMOTE:
        break;
    }
    return snprintf(out, size, "smtp") < (int)size ? 0 : -1;
}

int route_parse_target(const char *target, enum courier_kind *kind, const char **arg)
{
    *arg = "";
    if (strncmp(target, "maildir:", 8) == 0 && target[8] == '/') {
        *kind = COURIER_MAILDIR;
        *arg = target + 8;
    } else if (strncmp(target, "pipe:", 5) == 0 && target[5]) {
        *kind = COURIER_PIPE;
        *arg = target + 5;
    } else if (strcmp(target, "mda") == 0) {
        *kind = COURIER_MDA;
    } else if (strcmp(target, "smtp") == 0) {
        *kind = COURIER_SMTP;
    } else if (strcmp(target, "lmtp") == 0) {
        *kind = COURIER_LMTP;
    } else if (strncmp(target, "lmtp:", 5) == 0 && target[5]) {
        *kind = COURIER_LMTP;
        *arg = target + 5;
    } else {
        return -1;
    }
    return 0;
}

int route_expand(const struct conf *c, const struct policy *p, struct envelope *env,
                 const char *rcpt, const char *orig, unsigned notify, const char *orcpt)
{
    struct route_result r;
    char target[CONF_STR_MAX + 16];
    int st = route_resolve_str(p, rcpt, &r);
    int added = 0;

    if (st == ROUTE_OK || st == ROUTE_NOT_LOCAL) {
        for (size_t i = 0; i < r.n; i++) {
            const struct route_target *t = &r.v[i];
            if (route_target(c, t, target, sizeof(target)) < 0) {
                log_warn("%s: no usable mailbox path for %s", rcpt, t->value);
                continue;
            }
            const char *addr = t->kind == ROUTE_PIPE ? rcpt : t->value;
            bool dup = false;
            for (size_t k = 0; k < env->nrcpt && !dup; k++)
                dup = strcmp(env->rcpts[k].addr, addr) == 0 &&
                      strcmp(env->rcpts[k].target, target) == 0;
            if (dup)
                continue;
            struct env_rcpt *er = envelope_add_rcpt(env, addr, orig, target);
            er->notify = notify;
            if (orcpt && *orcpt)
                envelope_set(&er->orcpt, orcpt);
            added++;
        }
        for (size_t i = 0; i < r.n_notes; i++)
            log_warn("%s: %s", rcpt, r.notes[i]);
    }
    route_result_free(&r);
    return added;
}

void route_dest(const struct envelope *env, char *out, size_t size)
{
    out[0] = '\0';
    for (size_t i = 0; i < env->nrcpt; i++) {
        const struct env_rcpt *r = &env->rcpts[i];
        const char *at = strrchr(r->addr, '@');
        if (r->status != ENV_RCPT_PENDING || strcmp(r->target, "smtp") != 0 || !at)
            continue;
        size_t k = 0;
        for (const char *d = at + 1; *d && k + 1 < size; d++)
            out[k++] = (char)tolower((unsigned char)*d);
        out[k] = '\0';
        return;
    }
}

void route_next_hop(const struct snapshot *snap, const char *domain, struct remote_dest *d)
{
    const struct conf *c = &snap->conf;
    const struct conf_route *route = conf_route_for(c, domain);
    *d = (struct remote_dest){.domain = domain, .tls = (enum remote_tls)c->remote_tls};
    if (c->smarthost_host[0]) {
        d->host = c->smarthost_host;
        d->port = c->smarthost_port;
        d->tls = (enum remote_tls)c->smarthost_tls;
        d->auth_user = c->smarthost_user[0] ? c->smarthost_user : NULL;
        d->auth_pass = snap->smarthost_pass;
    }
    if (route && route->host[0]) {
        d->host = route->host;
        d->port = route->port;
        d->auth_user = d->auth_pass = NULL;
    }
    if (route && route->tls >= 0) {
        d->tls = (enum remote_tls)route->tls;
        d->tls_explicit = true; /* the domain's own tls_policy: MTA-STS does not apply */
    }
}
