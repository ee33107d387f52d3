/*
 * aliases.c - aliases files and recipient resolution (see aliases.h).
 *
 * Parsing: one alias per line, split on the first ':'; targets split on
 * commas until a target starts with '|', which takes the rest of the line
 * whole (a command may contain commas).  Every bad line is reported with
 * its number and skipped as a whole, so a half-understood alias never
 * delivers anywhere.
 *
 * Resolution walks the alias graph depth first with an explicit chain of
 * the addresses being expanded (at most ALIAS_MAX_DEPTH).  An address
 * already in the chain is a loop: it is not expanded again (a user of that
 * name still receives, which is how "bob: bob, bob@other" keeps a copy).
 * The number of addresses looked at is bounded too (a wide graph can be
 * exponential without being a loop).  Results are deduplicated.  Memory:
 * a struct alias_result owns every string in it; nothing here keeps a
 * pointer into the policy after returning.  Nothing is read from disk
 * during resolution, and a pipe target is only ever returned, never run.
 */
#include "server/aliases.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "server/policy.h"

/* ---- the file -------------------------------------------------------------- */

static const char *aliases_trim(const char *s, size_t *n)
{
    while (*n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        (*n)--;
    }
    while (*n > 0 && (s[*n - 1] == ' ' || s[*n - 1] == '\t' || s[*n - 1] == '\r'))
        (*n)--;
    return s;
}

static char *aliases_strndup(const char *s, size_t n)
{
    char *d = strndup(s, n);
    if (!d)
        fatal("out of memory");
    return d;
}

static void aliases_entry_free(struct alias_entry *x)
{
    for (size_t i = 0; i < x->n; i++) {
        free(x->t[i].s);
        free(x->t[i].domain);
    }
    free(x->t);
    x->t = NULL;
    x->n = 0;
}

static void aliases_add_target(struct alias_entry *x, enum alias_tkind kind, char *s, char *domain)
{
    if (x->n % 8 == 0) {
        struct alias_tgt *t = realloc(x->t, (x->n + 8) * sizeof(*t));
        if (!t)
            fatal("out of memory");
        x->t = t;
    }
    x->t[x->n++] = (struct alias_tgt){.kind = kind, .s = s, .domain = domain};
}

/* One target s[0..n) (trimmed, not a pipe) into x; 0 or -1 (reported). */
static int aliases_target(struct alias_entry *x, const char *s, size_t n, const char *name,
                          unsigned line, struct conf_errors *e)
{
    char tmp[ADDR_PATH_MAX + 1];
    struct mailaddr a;

    if (n == 0) {
        conf_error(e, name, line, "alias '%s': empty target (two commas, or a comma at the end)",
                   x->name);
        return -1;
    }
    if (n >= sizeof(tmp)) {
        conf_error(e, name, line, "alias '%s': target '%.40s...' is too long", x->name, s);
        return -1;
    }
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if (memchr(s, '@', n)) {
        int err = addr_parse_mailbox(tmp, n, ADDR_ALLOW_UTF8, &a);
        if (err != ADDR_OK) {
            conf_error(e, name, line, "alias '%s': target '%s': %s", x->name, tmp,
                       addr_strerror(err));
            return -1;
        }
        for (char *d = a.domain; *d; d++)
            *d = (char)tolower((unsigned char)*d);
        aliases_add_target(x, ALIAS_T_ADDR, aliases_strndup(a.local, strlen(a.local)),
                           aliases_strndup(a.domain, strlen(a.domain)));
        return 0;
    }
    if (!users_name_ok(tmp)) {
        conf_error(e, name, line,
                   "alias '%s': target '%s' is not a user name, an address or a '| command'",
                   x->name, tmp);
        return -1;
    }
    aliases_add_target(x, ALIAS_T_NAME, aliases_strndup(tmp, n), NULL);
    return 0;
}

/* One non-comment line s[0..n) into a new entry of *a; 0 or -1 (reported). */
static int aliases_line(struct aliases *a, const char *s, size_t n, const char *name, unsigned line,
                        struct conf_errors *e)
{
    struct alias_entry x = {.line = line};
    const char *colon = memchr(s, ':', n);
    int bad = 0;

    if (!colon) {
        conf_error(e, name, line, "expected 'name: target, target, ...'");
        return -1;
    }
    size_t nl = (size_t)(colon - s);
    const char *nm = aliases_trim(s, &nl);
    if (nl > USERS_NAME_MAX) {
        conf_error(e, name, line, "alias name '%.20s...' is longer than %d characters", nm,
                   USERS_NAME_MAX);
        return -1;
    }
    snprintf(x.name, sizeof(x.name), "%.*s", (int)nl, nm);
    if (nl == 0 || (strcmp(x.name, "*") != 0 && !users_name_ok(x.name))) {
        conf_error(e, name, line,
                   "'%s' is not a valid alias name (a local part without domain, "
                   "or '*')",
                   x.name);
        return -1;
    }
    for (size_t i = 0; i < a->n; i++) {
        if (strcasecmp(a->v[i].name, x.name) == 0) {
            conf_error(e, name, line, "alias '%s' is defined twice (first on line %u)", x.name,
                       a->v[i].line);
            return -1;
        }
    }

    const char *p = colon + 1, *end = s + n;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (p == end)
            break;
        if (*p == '|') {
            size_t cl = (size_t)(end - p - 1);
            const char *cmd = aliases_trim(p + 1, &cl);
            if (cl == 0) {
                conf_error(e, name, line, "alias '%s': empty pipe command", x.name);
                bad = 1;
            } else if (cmd[0] != '/') {
                conf_error(e, name, line,
                           "alias '%s': pipe command must start with an absolute path", x.name);
                bad = 1;
            } else {
                aliases_add_target(&x, ALIAS_T_PIPE, aliases_strndup(cmd, cl), NULL);
            }
            break;
        }
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t tl = (size_t)((comma ? comma : end) - p);
        const char *t = aliases_trim(p, &tl);
        if (aliases_target(&x, t, tl, name, line, e) < 0)
            bad = 1;
        if (!comma)
            break;
        p = comma + 1;
        size_t rest = (size_t)(end - p);
        aliases_trim(p, &rest);
        if (rest == 0) {
            conf_error(e, name, line, "alias '%s': comma at the end of the line", x.name);
            bad = 1;
        }
    }
    if (!bad && x.n == 0) {
        conf_error(e, name, line, "alias '%s' has no target", x.name);
        bad = 1;
    }
    if (bad) {
        aliases_entry_free(&x);
        return -1;
    }
    if (a->n % 64 == 0) {
        struct alias_entry *v = realloc(a->v, (a->n + 64) * sizeof(*v));
        if (!v)
            fatal("out of memory");
        a->v = v;
    }
    a->v[a->n++] = x;
    return 0;
}

int aliases_parse(const char *text, size_t len, const char *name, struct aliases *a,
                  struct conf_errors *e)
{
    size_t before = e->n, pos = 0;
    unsigned line = 0;

    memset(a, 0, sizeof(*a));
    while (pos < len) {
        const char *s = text + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + (nl ? 1 : 0);
        line++;
        if (memchr(s, '\0', n)) {
            conf_error(e, name, line, "NUL byte in line");
            continue;
        }
        if (n > ALIAS_LINE_MAX) {
            conf_error(e, name, line, "line longer than %d characters", ALIAS_LINE_MAX);
            continue;
        }
        s = aliases_trim(s, &n);
        if (n == 0 || s[0] == '#')
            continue;
        bool ctl = false;
        for (size_t i = 0; i < n; i++)
            if (((unsigned char)s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f)
                ctl = true;
        if (ctl) {
            conf_error(e, name, line, "control character in line");
            continue;
        }
        aliases_line(a, s, n, name, line, e);
    }
    return e->n > before ? -1 : 0;
}

int aliases_load(const char *path, struct aliases *a, struct conf_errors *e)
{
    char why[256], *text;
    size_t len;

    memset(a, 0, sizeof(*a));
    if (conf_read_file(path, ALIAS_FILE_MAX, &text, &len, why, sizeof(why)) < 0) {
        if (errno == ENOENT)
            return 0;
        conf_error(e, path, 0, "%s", why);
        return -1;
    }
    int r = aliases_parse(text, len, path, a, e);
    free(text);
    return r;
}

void aliases_free(struct aliases *a)
{
    for (size_t i = 0; i < a->n; i++)
        aliases_entry_free(&a->v[i]);
    free(a->v);
    a->v = NULL;
    a->n = 0;
}

/* ---- resolution ------------------------------------------------------------ */

void alias_key(const char *local, const char *drop_chars, const char *suffix_separators, char *out)
{
    size_t n = strlen(local), cut = strcspn(local, suffix_separators ? suffix_separators : "");
    size_t o = 0;
    if (cut > 0)
        n = cut;
    for (size_t i = 0; i < n && o < USERS_NAME_MAX; i++) {
        if (drop_chars && local[i] && strchr(drop_chars, local[i]))
            continue;
        out[o++] = (char)tolower((unsigned char)local[i]);
    }
    out[o] = '\0';
}

bool alias_relay_safe(const struct mailaddr *a)
{
    if (a->had_route || strchr(a->local, '%') || strchr(a->local, '!'))
        return false;
    if (a->is_quoted && strchr(a->local, '@'))
        return false;
    return true;
}

const char *alias_status_str(int status)
{
    switch (status) {
    case ALIAS_OK:
        return "local";
    case ALIAS_NOT_LOCAL:
        return "not a local domain";
    case ALIAS_UNKNOWN:
        return "unknown user";
    case ALIAS_ELOOP:
        return "alias loop or expansion limit";
    case ALIAS_EUNSAFE:
        return "address form never relayed ('%', '!', source route or quoted '@')";
    case ALIAS_EINVALID:
        return "not a valid address";
    }
    return "?";
}

#define CHAIN_ADDR (ADDR_LOCAL_MAX + 1 + ADDR_DOMAIN_MAX + 1)

struct alias_walk {
    const struct policy *p;
    struct alias_result *r;
    char show[ALIAS_MAX_DEPTH + 1][CHAIN_ADDR]; /* the chain, as written */
    char seen[ALIAS_MAX_DEPTH + 1][CHAIN_ADDR]; /* the chain, as keys */
    int depth;
    unsigned steps;
    bool unknown, looped, full;
};

__attribute__((format(printf, 2, 3))) static void alias_note(struct alias_walk *w, const char *fmt,
                                                             ...)
{
    char s[1024 + 64 * ALIAS_MAX_DEPTH], *d;
    va_list ap;
    if (w->r->n_notes >= ALIAS_MAX_NOTES)
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
static char *alias_chain(const struct alias_walk *w, const char *last)
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

static void alias_emit(struct alias_walk *w, enum alias_kind kind, const char *user,
                       const char *domain, const char *pipe)
{
    char value[CHAIN_ADDR] = "";
    struct alias_result *r = w->r;

    if (!pipe)
        snprintf(value, sizeof(value), "%s@%s", user, domain);
    const char *v = pipe ? pipe : value;
    for (size_t i = 0; i < r->n; i++)
        if (r->v[i].kind == kind && strcmp(r->v[i].value, v) == 0)
            return; /* reached twice: deliver once */
    if (r->n >= ALIAS_MAX_TARGETS) {
        if (!w->full)
            alias_note(w, "more than %d targets: the rest are dropped", ALIAS_MAX_TARGETS);
        w->full = true;
        return;
    }
    if (r->n % 16 == 0) {
        struct alias_target *nv = realloc(r->v, (r->n + 16) * sizeof(*nv));
        if (!nv)
            fatal("out of memory");
        r->v = nv;
    }
    struct alias_target *t = &r->v[r->n++];
    t->kind = kind;
    t->value = aliases_strndup(v, strlen(v));
    t->user = aliases_strndup(user, strlen(user));
    t->domain = aliases_strndup(domain, strlen(domain));
    t->chain = alias_chain(w, pipe ? NULL : value);
}

static void alias_walk_addr(struct alias_walk *w, const char *local, const char *domain);

/* Expand entry x of domain d, reached as local@d. */
static void alias_expand(struct alias_walk *w, const struct policy_domain *d,
                         const struct alias_entry *x, const char *local, const char *seen)
{
    if (w->depth >= ALIAS_MAX_DEPTH) {
        char *c = alias_chain(w, NULL);
        alias_note(w, "alias expansion deeper than %d levels at %s@%s (%s)", ALIAS_MAX_DEPTH, local,
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
            alias_emit(w, ALIAS_PIPE, x->name, d->name, t->s);
            break;
        case ALIAS_T_NAME:
            alias_walk_addr(w, t->s, d->name);
            break;
        case ALIAS_T_ADDR:
            alias_walk_addr(w, t->s, t->domain);
            break;
        }
    }
    w->depth--;
}

/* Resolve local@domain (domain in lower case) at the current depth. */
static void alias_walk_addr(struct alias_walk *w, const char *local, const char *domain)
{
    const struct policy *p = w->p;
    char key[USERS_NAME_MAX + 1], seen[CHAIN_ADDR];

    if (++w->steps > ALIAS_MAX_STEPS) {
        if (w->steps == ALIAS_MAX_STEPS + 1)
            alias_note(w, "more than %d addresses looked at: expansion stopped", ALIAS_MAX_STEPS);
        w->looped = true;
        return;
    }
    const struct policy_domain *d = policy_domain(p, domain);
    if (!d) {
        alias_emit(w, ALIAS_REMOTE, local, domain, NULL);
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
            alias_emit(w, ALIAS_LOCAL, u->name, d->name, NULL);
            return;
        }
        char *c = alias_chain(w, NULL);
        alias_note(w, "alias loop: %s -> %s@%s", c, local, d->name);
        free(c);
        w->looped = true;
        return;
    }
    if (x)
        alias_expand(w, d, x, local, seen);
    else if (u)
        alias_emit(w, ALIAS_LOCAL, u->name, d->name, NULL);
    else if (d->catchall)
        alias_expand(w, d, d->catchall, local, seen);
    else {
        if (w->depth > 0) {
            char *c = alias_chain(w, NULL);
            alias_note(w, "unknown user %s@%s (reached by %s)", local, d->name, c);
            free(c);
        }
        w->unknown = true;
    }
}

int alias_resolve(const struct policy *p, const struct mailaddr *a, struct alias_result *r)
{
    struct alias_walk *w;
    char domain[ADDR_DOMAIN_MAX + 1];

    memset(r, 0, sizeof(*r));
    if (a->is_null || !a->local[0] || !a->domain[0])
        return ALIAS_EINVALID;
    size_t i;
    for (i = 0; a->domain[i] && i < ADDR_DOMAIN_MAX; i++)
        domain[i] = (char)tolower((unsigned char)a->domain[i]);
    domain[i] = '\0';
    snprintf(r->original, sizeof(r->original), "%s@%s", a->local, domain);

    if (a->is_literal || !policy_domain(p, domain)) {
        if (!alias_relay_safe(a))
            return ALIAS_EUNSAFE;
        w = calloc(1, sizeof(*w));
        if (!w)
            fatal("out of memory");
        w->p = p;
        w->r = r;
        alias_emit(w, ALIAS_REMOTE, a->local, domain, NULL);
        free(w);
        return ALIAS_NOT_LOCAL;
    }
    w = calloc(1, sizeof(*w)); /* ~6 KiB of chain: not on the stack */
    if (!w)
        fatal("out of memory");
    w->p = p;
    w->r = r;
    alias_walk_addr(w, a->local, domain);
    int status = r->n > 0 ? ALIAS_OK : w->looped ? ALIAS_ELOOP : ALIAS_UNKNOWN;
    free(w);
    return status;
}

int alias_resolve_str(const struct policy *p, const char *address, struct alias_result *r)
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
        return ALIAS_EINVALID;
    return alias_resolve(p, &a, r);
}

void alias_result_free(struct alias_result *r)
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
