/*
 * aliases.h - the aliases file of one local domain.
 *
 * File format (data_dir/domains/D/aliases), one alias per line:
 *     name: target, target, ...
 *     *: target                      catch-all: any unknown local part of D
 * A target is a local name of D ("bob"), a full address ("bob@other.org",
 * local or not), or a pipe "| /absolute/command args": the rest of the line,
 * commas included.  '#' starts a comment line.
 *
 * This file only reads the files; resolving an address through them is
 * routing (deliver/route.h).  alias_key() is shared by both: the lookup key
 * of a local part.
 */
#ifndef TERN_CONF_ALIASES_H
#define TERN_CONF_ALIASES_H

#include <stdbool.h>
#include <stddef.h>

#include "core/address.h"
#include "conf/config.h"
#include "conf/users.h"

#define ALIAS_FILE_MAX (64 * 1024 * 1024)
#define ALIAS_LINE_MAX 8192

/* ---- the file ------------------------------------------------------------ */

enum alias_tkind {
    ALIAS_T_NAME, /* a local name of the same domain: s */
    ALIAS_T_ADDR, /* s@domain */
    ALIAS_T_PIPE, /* s is the command line, without the '|' */
};

struct alias_tgt {
    enum alias_tkind kind;
    char *s;      /* owned */
    char *domain; /* ALIAS_T_ADDR only: lower case, owned */
};

struct alias_entry {
    char name[USERS_NAME_MAX + 1]; /* as written, or "*" */
    struct alias_tgt *t;           /* owned */
    size_t n;
    unsigned line;
};

struct aliases {
    struct alias_entry *v;
    size_t n;
};

/* Parse aliases text; bad lines are reported as "NAME:LINE: what" and skipped. 0 or -1. */
int aliases_parse(const char *text, size_t len, const char *name, struct aliases *a,
                  struct conf_errors *e);

/* Read and parse the file; a missing file is an empty set (returns 0). */
int aliases_load(const char *path, struct aliases *a, struct conf_errors *e);

void aliases_free(struct aliases *a);

/*
 * The lookup key of a local part: cut at the first suffix separator (unless
 * nothing would be left), drop characters removed, lower case.  out has
 * room for USERS_NAME_MAX + 1 octets; a longer key is cut.
 */
void alias_key(const char *local, const char *drop_chars, const char *suffix_separators, char *out);

#endif
