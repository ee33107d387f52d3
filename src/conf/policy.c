/*
 * policy.c - local domains, their users and aliases, AUTH and sender rules
 * (see policy.h).
 *
 * policy_load() lists data_dir/domains/, loads each domain's users and
 * aliases files, and builds one sorted key index per domain (names
 * normalized as recipients are: case, drop characters), so that a lookup
 * is a binary search.  Two names that normalize to the same key, or a
 * name that contains a suffix separator (it could never be reached), are
 * reported at the line that defines them.  Everything a policy holds is
 * owned by it and released by policy_free(); after loading it is never
 * modified, so readers need no lock.
 */
#include "conf/policy.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/log.h"

int policy_file_path(const struct conf *c, const char *domain, const char *file, char *out,
                     size_t size)
{
    int n = snprintf(out, size, "%s/domains/%s/%s", c->data_dir, domain, file);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

static int policy_key_cmp(const void *a, const void *b)
{
    const struct policy_key *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c)
        return c;
    return (int)y->is_alias - (int)x->is_alias; /* aliases first */
}

static bool policy_domain_name_ok(const char *name)
{
    char tmp[ADDR_DOMAIN_MAX + 16];
    struct mailaddr a;
    int n = snprintf(tmp, sizeof(tmp), "postmaster@%s", name);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return false;
    return addr_parse_mailbox(tmp, (size_t)n, 0, &a) == ADDR_OK && !a.is_literal;
}

/* Build d->keys from its users and aliases, reporting collisions. */
static void policy_index(const struct policy *p, struct policy_domain *d, const char *users_path,
                         const char *aliases_path, struct conf_errors *e)
{
    size_t cap = d->users.n + d->aliases.n;
    d->keys = cap ? calloc(cap, sizeof(*d->keys)) : NULL;
    if (cap && !d->keys)
        fatal("out of memory");
    d->n_keys = 0;
    for (size_t i = 0; i < d->aliases.n; i++) {
        const struct alias_entry *x = &d->aliases.v[i];
        if (strcmp(x->name, "*") == 0) {
            d->catchall = x;
            continue;
        }
        const char *sep = strpbrk(x->name, p->suffix_separators);
        if (sep) {
            conf_error(e, aliases_path, x->line,
                       "alias '%s' can never be reached: '%c' is a suffix separator", x->name,
                       *sep);
            continue;
        }
        struct policy_key *k = &d->keys[d->n_keys++];
        alias_key(x->name, p->drop_chars, NULL, k->key);
        k->is_alias = true;
        k->idx = i;
    }
    for (size_t i = 0; i < d->users.n; i++) {
        const struct users_entry *u = &d->users.v[i];
        const char *sep = strpbrk(u->name, p->suffix_separators);
        if (sep) {
            conf_error(e, users_path, u->line,
                       "user '%s' can never receive mail: '%c' is a suffix separator", u->name,
                       *sep);
            continue;
        }
        struct policy_key *k = &d->keys[d->n_keys++];
        alias_key(u->name, p->drop_chars, NULL, k->key);
        k->is_alias = false;
        k->idx = i;
    }
    if (d->n_keys)
        qsort(d->keys, d->n_keys, sizeof(*d->keys), policy_key_cmp);
    for (size_t i = 1; i < d->n_keys; i++) {
        const struct policy_key *a = &d->keys[i - 1], *b = &d->keys[i];
        if (strcmp(a->key, b->key) != 0 || a->is_alias != b->is_alias)
            continue;
        if (a->is_alias) {
            const struct alias_entry *x = &d->aliases.v[a->idx], *y = &d->aliases.v[b->idx];
            const struct alias_entry *later = x->line > y->line ? x : y;
            conf_error(e, aliases_path, later->line,
                       "alias '%s' is the same address as '%s' (line %u) once '%s' are dropped",
                       later->name, later == x ? y->name : x->name, later == x ? y->line : x->line,
                       p->drop_chars);
        } else {
            const struct users_entry *x = &d->users.v[a->idx], *y = &d->users.v[b->idx];
            const struct users_entry *later = x->line > y->line ? x : y;
            conf_error(e, users_path, later->line,
                       "user '%s' is the same address as '%s' (line %u) once '%s' are dropped",
                       later->name, later == x ? y->name : x->name, later == x ? y->line : x->line,
                       p->drop_chars);
        }
    }
}

void policy_init(struct policy *p, const struct conf *c)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->drop_chars, sizeof(p->drop_chars), "%s", c->drop_chars);
    snprintf(p->suffix_separators, sizeof(p->suffix_separators), "%s", c->suffix_separators);
    p->senders_must_match = c->senders_must_match;
}

int policy_add(struct policy *p, const char *name, const char *dir, struct users *users,
               struct aliases *aliases, const char *users_path, const char *aliases_path,
               struct conf_errors *e)
{
    char lower[ADDR_DOMAIN_MAX + 1];
    size_t i, at;

    for (i = 0; name[i] && i < ADDR_DOMAIN_MAX; i++)
        lower[i] = (char)tolower((unsigned char)name[i]);
    lower[i] = '\0';
    if (name[i] || !policy_domain_name_ok(lower) || p->n >= POLICY_MAX_DOMAINS ||
        policy_domain(p, lower)) {
        conf_error(e, dir, 0, "'%.80s' is not a valid domain name, or is there twice", name);
        users_free(users);
        aliases_free(aliases);
        return -1;
    }
    if (p->n % 16 == 0) {
        struct policy_domain *v = realloc(p->v, (p->n + 16) * sizeof(*v));
        if (!v)
            fatal("out of memory");
        p->v = v;
    }
    for (at = 0; at < p->n && strcmp(p->v[at].name, lower) < 0; at++)
        ;
    memmove(&p->v[at + 1], &p->v[at], (p->n - at) * sizeof(*p->v));
    p->n++;
    struct policy_domain *d = &p->v[at];
    memset(d, 0, sizeof(*d));
    memcpy(d->name, lower, i + 1);
    snprintf(d->dir, sizeof(d->dir), "%s", dir);
    d->users = *users;
    d->aliases = *aliases;
    memset(users, 0, sizeof(*users));
    memset(aliases, 0, sizeof(*aliases));
    policy_index(p, d, users_path, aliases_path, e);
    return 0;
}

static void policy_load_domain(struct policy *p, const struct conf *c, const char *dir,
                               const char *name, struct conf_errors *e)
{
    char upath[CONF_STR_MAX], apath[CONF_STR_MAX];
    struct users u;
    struct aliases a;

    if (policy_file_path(c, name, "users", upath, sizeof(upath)) < 0 ||
        policy_file_path(c, name, "aliases", apath, sizeof(apath)) < 0) {
        conf_error(e, dir, 0, "path too long");
        return;
    }
    users_load(upath, &u, e);
    aliases_load(apath, &a, e);
    policy_add(p, name, dir, &u, &a, upath, apath, e);
}

int policy_load(const struct conf *c, struct policy *p, struct conf_errors *e)
{
    char dir[CONF_STR_MAX];
    size_t before = e->n;

    policy_init(p, c);
    int n = snprintf(dir, sizeof(dir), "%s/domains", c->data_dir);
    if (n < 0 || (size_t)n >= sizeof(dir)) {
        conf_error(e, c->data_dir, 0, "path too long");
        return -1;
    }
    DIR *dh = opendir(dir);
    if (!dh) {
        if (errno == ENOENT)
            return 0; /* no local domain (yet) */
        conf_error(e, dir, 0, "cannot read: %s", strerror(errno));
        return -1;
    }
    struct dirent *de;
    errno = 0;
    while ((de = readdir(dh)) != NULL) {
        char path[CONF_STR_MAX];
        struct stat st;
        if (de->d_name[0] == '.')
            continue;
        n = snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (n < 0 || (size_t)n >= sizeof(path)) {
            conf_error(e, dir, 0, "'%.40s...': path too long", de->d_name);
            continue;
        }
        if (stat(path, &st) < 0) {
            conf_error(e, path, 0, "%s", strerror(errno));
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            conf_error(e, path, 0, "not a folder (every entry of %s is a local domain)", dir);
            continue;
        }
        if (strlen(de->d_name) > ADDR_DOMAIN_MAX || !policy_domain_name_ok(de->d_name)) {
            conf_error(e, path, 0, "'%.80s' is not a valid domain name", de->d_name);
            continue;
        }
        if (p->n >= POLICY_MAX_DOMAINS) {
            conf_error(e, dir, 0, "more than %d domains", POLICY_MAX_DOMAINS);
            break;
        }
        if (policy_domain(p, de->d_name)) {
            conf_error(e, path, 0, "domain '%s' has two folders (names differ in case)",
                       de->d_name);
            continue;
        }
        policy_load_domain(p, c, path, de->d_name, e);
        errno = 0;
    }
    if (errno != 0)
        conf_error(e, dir, 0, "cannot read: %s", strerror(errno));
    if (closedir(dh) < 0)
        conf_error(e, dir, 0, "cannot close: %s", strerror(errno));
    return e->n > before ? -1 : 0;
}

void policy_free(struct policy *p)
{
    for (size_t i = 0; i < p->n; i++) {
        users_free(&p->v[i].users);
        aliases_free(&p->v[i].aliases);
        free(p->v[i].keys);
    }
    free(p->v);
    memset(p, 0, sizeof(*p));
}

const struct policy_domain *policy_domain(const struct policy *p, const char *domain)
{
    char key[ADDR_DOMAIN_MAX + 1];
    size_t i, lo = 0, hi = p->n;

    for (i = 0; domain[i] && i < ADDR_DOMAIN_MAX; i++)
        key[i] = (char)tolower((unsigned char)domain[i]);
    if (domain[i])
        return NULL;
    key[i] = '\0';
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key, p->v[mid].name);
        if (c == 0)
            return &p->v[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* The first index entry of kind is_alias with this key, or NULL. */
static const struct policy_key *policy_find_key(const struct policy_domain *d, const char *key,
                                                bool is_alias)
{
    size_t lo = 0, hi = d->n_keys;
    struct policy_key probe = {.is_alias = is_alias};
    snprintf(probe.key, sizeof(probe.key), "%s", key);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = policy_key_cmp(&probe, &d->keys[mid]);
        if (c == 0)
            return &d->keys[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const struct users_entry *policy_find_user(const struct policy_domain *d, const char *key)
{
    const struct policy_key *k = policy_find_key(d, key, false);
    return k ? &d->users.v[k->idx] : NULL;
}

const struct alias_entry *policy_find_alias(const struct policy_domain *d, const char *key)
{
    const struct policy_key *k = policy_find_key(d, key, true);
    return k ? &d->aliases.v[k->idx] : NULL;
}

/* Split "user@domain" at the last '@'. */
static bool policy_split_login(const char *login, char *user, char *domain)
{
    const char *at = strrchr(login, '@');
    if (!at || at == login || !at[1] || (size_t)(at - login) > USERS_NAME_MAX ||
        strlen(at + 1) > ADDR_DOMAIN_MAX)
        return false;
    memcpy(user, login, (size_t)(at - login));
    user[at - login] = '\0';
    snprintf(domain, ADDR_DOMAIN_MAX + 1, "%s", at + 1);
    return true;
}

bool policy_auth(const struct policy *p, const char *login, const char *password)
{
    static const struct users none = {0};
    char user[USERS_NAME_MAX + 1] = "", domain[ADDR_DOMAIN_MAX + 1] = "", key[USERS_NAME_MAX + 1];
    const struct policy_domain *d = NULL;
    const struct users_entry *u = NULL;

    if (policy_split_login(login, user, domain)) {
        d = policy_domain(p, domain);
        alias_key(user, p->drop_chars, NULL, key);
        if (d)
            u = policy_find_user(d, key);
    }
    /* always one hash, whether or not the user exists */
    if (!u) {
        (void)users_check(&none, "", password);
        return false;
    }
    return users_check(&d->users, u->name, password);
}

bool policy_sender_allowed(const struct policy *p, const char *login, const struct mailaddr *from)
{
    char user[USERS_NAME_MAX + 1], domain[ADDR_DOMAIN_MAX + 1];

    if (!p->senders_must_match || from->is_null)
        return true;
    if (!policy_split_login(login, user, domain))
        return false;
    return strcasecmp(domain, from->domain) == 0;
}
