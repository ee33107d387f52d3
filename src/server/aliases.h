/*
 * aliases.h - the aliases file of one local domain and the resolution of a
 * recipient address into final targets.
 *
 * File format (data_dir/domains/D/aliases), one alias per line:
 *     name: target, target, ...
 *     *: target                      catch-all: any unknown local part of D
 * A target is a local name of D ("bob"), a full address ("bob@other.org",
 * local or not), or a pipe "| /absolute/command args": the rest of the line,
 * commas included.  '#' starts a comment line.
 *
 * Resolution (alias_resolve): the domain is lower-cased; the local part is
 * compared without case, after cutting what follows a suffix separator
 * ("first.last+tag" -> "first.last") and removing drop characters
 * ("firstlast").  An alias is expanded before a user of the same name (an
 * alias that names itself delivers to the user: "bob: bob, bob@other").
 * Expansion is recursive up to ALIAS_MAX_DEPTH levels; an address already
 * in the chain is not expanded again (a loop, reported in the notes).
 * Everything is bounded: depth, steps, targets, notes.
 */
#ifndef TERN_SERVER_ALIASES_H
#define TERN_SERVER_ALIASES_H

#include <stdbool.h>
#include <stddef.h>

#include "core/address.h"
#include "server/config.h"
#include "server/users.h"

#define ALIAS_MAX_DEPTH 10     /* nested expansions */
#define ALIAS_MAX_STEPS 10000  /* addresses looked at per resolution */
#define ALIAS_MAX_TARGETS 1000 /* final targets per resolution */
#define ALIAS_MAX_NOTES 32     /* loop / unknown reports kept per resolution */
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

/* ---- resolution ------------------------------------------------------------ */

struct policy; /* server/policy.h: the local domains with their users and aliases */

enum alias_kind {
    ALIAS_LOCAL,  /* a user of a local domain: deliver to its mailbox */
    ALIAS_REMOTE, /* an address of another domain: relay */
    ALIAS_PIPE,   /* run a command (value), message on its standard input */
};

struct alias_target {
    enum alias_kind kind;
    char *value;  /* LOCAL/REMOTE: "user@domain" (LOCAL: the user's name as in its
                     users file); PIPE: the command line */
    char *user;   /* LOCAL/REMOTE: the local part; PIPE: the alias name */
    char *domain; /* LOCAL/REMOTE: the domain; PIPE: the domain of the alias file */
    char *chain;  /* how it was reached: "list@a.org -> bob@a.org" */
};

struct alias_result {
    char original[ADDR_LOCAL_MAX + ADDR_DOMAIN_MAX + 2]; /* the address resolved, "local@domain" */
    struct alias_target *v;
    size_t n;
    char *notes[ALIAS_MAX_NOTES]; /* loops, unknown names, limits: one line each */
    size_t n_notes;
};

enum alias_status {
    ALIAS_OK = 0,    /* local address: r->n >= 1 targets (some branches may be in notes) */
    ALIAS_NOT_LOCAL, /* not a local domain: one ALIAS_REMOTE target, the address itself */
    ALIAS_UNKNOWN,   /* local domain, no such user or alias and no catch-all (550 5.1.1) */
    ALIAS_ELOOP,     /* local, but every branch ended in a loop or a limit */
    ALIAS_EUNSAFE,   /* not local and relay-unsafe ('%', '!', source route, quoted '@') */
    ALIAS_EINVALID,  /* not an address (syntax, or the null path) */
};

/*
 * Resolve the recipient a against the local domains of p into *r (always
 * initialized; free it with alias_result_free()).  Returns an enum
 * alias_status.  Pure lookup: reads nothing from disk.
 */
int alias_resolve(const struct policy *p, const struct mailaddr *a, struct alias_result *r);

/* The same for an address written "local@domain" or "<local@domain>". */
int alias_resolve_str(const struct policy *p, const char *address, struct alias_result *r);

void alias_result_free(struct alias_result *r);

/* A short text for an enum alias_status. */
const char *alias_status_str(int status);

/*
 * True if a may be relayed to another domain: its local part has no '%'
 * or '!', it had no source route, and a quoted local part has no '@'.
 * The forms that open relays have fallen for are refused at RCPT.
 */
bool alias_relay_safe(const struct mailaddr *a);

/*
 * The lookup key of a local part: cut at the first suffix separator (unless
 * nothing would be left), drop characters removed, lower case.  out has
 * room for USERS_NAME_MAX + 1 octets; a longer key is cut.
 */
void alias_key(const char *local, const char *drop_chars, const char *suffix_separators, char *out);

#endif
