/*
 * users.h - the users file of one local domain (data_dir/domains/D/users):
 * one "name:HASH" per line, '#' comments and blank lines kept as they are.
 * HASH is a crypt(3) hash; new ones are yescrypt ("$y$...", libxcrypt).
 *
 * Names are ASCII: letters, digits, - _ = + ~ ' & and inner dots (a safe
 * part of RFC 5322's dot-atom), at most 64 characters, compared without regard to case; users_add()
 * writes them in lower case.  users_add()/users_remove() rewrite the file atomically (a temporary
 * file, fsync, rename, fsync of the folder) under an flock(2) of the folder, so concurrent edits
 * neither lose nor tear the file.
 */
#ifndef TERN_CONF_USERS_H
#define TERN_CONF_USERS_H

#include <stdbool.h>
#include <stddef.h>

#include "conf/config.h"

#define USERS_FILE_MAX (64 * 1024 * 1024)
#define USERS_NAME_MAX 64
#define USERS_PASSWORD_MAX 1024
#define USERS_LINE_MAX 4096

struct users_entry {
    char name[USERS_NAME_MAX + 1]; /* as written */
    char *hash;                    /* owned */
    unsigned line;
};

struct users {
    struct users_entry *v;
    size_t n;
};

/* True if name can be a user (or alias) name (see above). */
bool users_name_ok(const char *name);

/*
 * Parse users text; problems go to *e as "NAME:LINE: what" and the bad
 * lines are skipped.  Returns 0, or -1 if any problem was found.
 */
int users_parse(const char *text, size_t len, const char *name, struct users *u,
                struct conf_errors *e);

/* Read and parse the file; a missing file is an empty set (returns 0). */
int users_load(const char *path, struct users *u, struct conf_errors *e);

void users_free(struct users *u);

/* The entry named user (case-insensitive), or NULL. */
const struct users_entry *users_find(const struct users *u, const char *user);

/*
 * True if user exists and password matches its hash.  The work done does
 * not depend on whether the user exists (an unknown user is checked
 * against a dummy yescrypt hash) and the final comparison takes the same
 * time wherever the hashes differ.
 */
bool users_check(const struct users *u, const char *user, const char *password);

/* A fresh yescrypt hash of password into out (size >= CRYPT_OUTPUT_SIZE). Returns 0 or -1. */
int users_hash(const char *password, char *out, size_t size);

/*
 * Add user with password to the file at path (created with mode 0640 if
 * missing; its folder must exist).  An existing user is an error unless
 * replace is true (then its hash is replaced in place).  A file with
 * problems is not modified.  Returns 0, or -1 with a reason in why.
 */
int users_add(const char *path, const char *user, const char *password, bool replace, char *why,
              size_t whylen);

/* Remove user from the file at path.  Returns 0, or -1 with a reason in why. */
int users_remove(const char *path, const char *user, char *why, size_t whylen);

#endif
