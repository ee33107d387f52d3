/*
 * policy.h - the local policy of `tern serve`: the set of local domains
 * (the folders of data_dir/domains/), each with its users and aliases, and
 * the rules built on them: who may log in, who may send as whom.
 *
 * A struct policy is built whole by policy_load() and then only read (any
 * number of threads may read it).  Reload builds a new one and swaps it in;
 * nothing points into an old policy from outside except while a lookup
 * runs.  Lookups never touch the disk.
 */
#ifndef TERN_CONF_POLICY_H
#define TERN_CONF_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "core/address.h"
#include "conf/aliases.h"
#include "conf/config.h"
#include "conf/users.h"

#define POLICY_MAX_DOMAINS 10000

/* One lookup key of a domain: a user or an alias, by its normalized name. */
struct policy_key {
    char key[USERS_NAME_MAX + 1];
    bool is_alias; /* else a user */
    size_t idx;    /* into users.v or aliases.v */
};

struct policy_domain {
    char name[ADDR_DOMAIN_MAX + 1]; /* lower case */
    char dir[CONF_STR_MAX];         /* data_dir/domains/name */
    struct users users;
    struct aliases aliases;
    struct policy_key *keys; /* sorted by key, aliases first */
    size_t n_keys;
    const struct alias_entry *catchall; /* the "*" alias, or NULL */
};

struct policy {
    struct policy_domain *v; /* sorted by name */
    size_t n;
    char drop_chars[CONF_CHARS_MAX + 1];
    char suffix_separators[CONF_CHARS_MAX + 1];
    bool senders_must_match;
};

/*
 * Read every domain folder with its users and aliases files (missing files
 * are empty sets; a missing domains/ folder means no local domain).  Every
 * problem goes to *e with its file and line; the domains are loaded
 * anyway, without the bad lines.  Returns 0, or -1 if any problem was
 * found.  *p must be freed with policy_free() either way.
 */
int policy_load(const struct conf *c, struct policy *p, struct conf_errors *e);

void policy_free(struct policy *p);

/*
 * Building a policy by hand (policy_load() uses these; so do tests):
 * policy_init() copies the rules of c into an empty *p; policy_add() adds
 * the domain name with its parsed users and aliases, taking them over
 * (*users and *aliases are left empty), indexes them and reports name
 * collisions against users_path / aliases_path.  Returns 0, or -1 (bad or
 * repeated domain name: reported, and the sets are freed).
 */
void policy_init(struct policy *p, const struct conf *c);
int policy_add(struct policy *p, const char *name, const char *dir, struct users *users,
               struct aliases *aliases, const char *users_path, const char *aliases_path,
               struct conf_errors *e);

/* The local domain named domain (any case), or NULL. */
const struct policy_domain *policy_domain(const struct policy *p, const char *domain);

/* The user or alias of d for a normalized key; NULL if none. */
const struct users_entry *policy_find_user(const struct policy_domain *d, const char *key);
const struct alias_entry *policy_find_alias(const struct policy_domain *d, const char *key);

/*
 * AUTH: login is "user@domain" (the local part normalized like a
 * recipient: case, drop characters; no suffix).  True if the password
 * matches.  Unknown users and domains cost one hash too.
 */
bool policy_auth(const struct policy *p, const char *login, const char *password);

/*
 * MAIL FROM of an authenticated session: with senders_must_match, the
 * sender's domain must be the login's domain (the null sender is allowed:
 * bounces).  login is what policy_auth() accepted.
 */
bool policy_sender_allowed(const struct policy *p, const char *login, const struct mailaddr *from);

/* data_dir/domains/DOMAIN/users (or aliases) into out.  Returns 0, or -1 if too long. */
int policy_file_path(const struct conf *c, const char *domain, const char *file, char *out,
                     size_t size);

#endif
