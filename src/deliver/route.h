/*
 * route.h - routing: a recipient address, through the aliases of the
 * local domains, to typed delivery targets.
 *
 * Resolution (route_resolve): the domain is lower-cased; the local part is
 * compared without case, after cutting what follows a suffix separator
 * ("first.last+tag" -> "first.last") and removing drop characters
 * ("firstlast").  An alias is expanded before a user of the same name (an
 * alias that names itself delivers to the user: "bob: bob, bob@other").
 * Expansion is recursive up to ROUTE_MAX_DEPTH levels; an address already
 * in the chain is not expanded again (a loop, reported in the notes).
 * Everything is bounded: depth, steps, targets, notes.
 *
 * Targets (route_target, route_expand): a local user becomes a Maildir path
 * or the MDA, a pipe alias its command, another domain the smtp courier.
 * The envelope stores a target as text ("maildir:PATH", "mda",
 * "pipe:COMMAND", "smtp", "lmtp" - the configured endpoint - or
 * "lmtp:ENDPOINT"); route_parse_target() reads it back typed.  The
 * receiving session, bounces and `tern sendmail`'s pickup all expand
 * recipients through route_expand() with the configuration snapshot they
 * hold.  Pure lookups: nothing here reads the disk.
 */
#ifndef TERN_DELIVER_ROUTE_H
#define TERN_DELIVER_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "conf/aliases.h"
#include "conf/policy.h"
#include "core/address.h"
#include "deliver/courier.h"

#define ROUTE_MAX_DEPTH 10     /* nested expansions */
#define ROUTE_MAX_STEPS 10000  /* addresses looked at per resolution */
#define ROUTE_MAX_TARGETS 1000 /* final targets per resolution */
#define ROUTE_MAX_NOTES 32     /* loop / unknown reports kept per resolution */

enum route_kind {
    ROUTE_LOCAL,  /* a user of a local domain: deliver to its mailbox */
    ROUTE_REMOTE, /* an address of another domain: relay */
    ROUTE_PIPE,   /* run a command (value), message on its standard input */
};

struct route_target {
    enum route_kind kind;
    char *value;  /* LOCAL/REMOTE: "user@domain" (LOCAL: the user's name as in its
                     users file); PIPE: the command line */
    char *user;   /* LOCAL/REMOTE: the local part; PIPE: the alias name */
    char *domain; /* LOCAL/REMOTE: the domain; PIPE: the domain of the alias file */
    char *chain;  /* how it was reached: "list@a.org -> bob@a.org" */
};

struct route_result {
    char original[ADDR_LOCAL_MAX + ADDR_DOMAIN_MAX + 2]; /* the address resolved, "local@domain" */
    struct route_target *v;
    size_t n;
    char *notes[ROUTE_MAX_NOTES]; /* loops, unknown names, limits: one line each */
    size_t n_notes;
};

enum route_status {
    ROUTE_OK = 0,    /* local address: r->n >= 1 targets (some branches may be in notes) */
    ROUTE_NOT_LOCAL, /* not a local domain: one ROUTE_REMOTE target, the address itself */
    ROUTE_UNKNOWN,   /* local domain, no such user or alias and no catch-all (550 5.1.1) */
    ROUTE_ELOOP,     /* local, but every branch ended in a loop or a limit */
    ROUTE_EUNSAFE,   /* not local and relay-unsafe ('%', '!', source route, quoted '@') */
    ROUTE_EINVALID,  /* not an address (syntax, or the null path) */
};

/*
 * Resolve the recipient a against the local domains of p into *r (always
 * initialized; free it with route_result_free()).  Returns an enum
 * alias_status.  Pure lookup: reads nothing from disk.
 */
int route_resolve(const struct policy *p, const struct mailaddr *a, struct route_result *r);

/* The same for an address written "local@domain" or "<local@domain>". */
int route_resolve_str(const struct policy *p, const char *address, struct route_result *r);

void route_result_free(struct route_result *r);

/* A short text for an enum route_status. */
const char *route_status_str(int status);

/*
 * True if a may be relayed to another domain: its local part has no '%'
 * or '!', it had no source route, and a quoted local part has no '@'.
 * The forms that open relays have fallen for are refused at RCPT.
 */
bool route_relay_safe(const struct mailaddr *a);

/*
 * True if a may be relayed to another domain: its local part has no '%'
 * or '!', it had no source route, and a quoted local part has no '@'.
 * The forms that open relays have fallen for are refused at RCPT.
 */
bool route_relay_safe(const struct mailaddr *a);

struct conf;
struct envelope;

/*
 * The delivery target text of one resolved recipient: "maildir:PATH", "mda",
 * "pipe:CMD", "smtp".  Returns 0 or -1 (bad maildir path, too long).
 */
int route_target(const struct conf *c, const struct route_target *t, char *out, size_t size);

/* The courier of a stored target text, and its argument (the Maildir path,
 * the pipe command, the LMTP endpoint, or ""); -1 for a text that names no courier. */
int route_parse_target(const char *target, enum courier_kind *kind, const char **arg);

/*
 * Resolve rcpt (an address) and append its targets to env's recipients,
 * each with orig as the address the client gave and the DSN parameters
 * notify and orcpt; a target already in env is not added twice.  Problems
 * (loops, unusable paths) are logged.  Returns the number added.
 */
int route_expand(const struct conf *c, const struct policy *p, struct envelope *env,
                 const char *rcpt, const char *orig, unsigned notify, const char *orcpt);

struct snapshot;
struct remote_dest;

/* The next hop for the remote domain (lower case): its per-domain route,
 * else the smarthost (with AUTH), else its MX hosts (d->host NULL), with the
 * TLS policy that applies.  d's strings point into snap. */
void route_next_hop(const struct snapshot *snap, const char *domain, struct remote_dest *d);

/* The remote domain an envelope waits for (its first pending smtp
 * recipient's, lower case) into out, "" when it has only local work: the
 * scheduler's per-destination key. */
void route_dest(const struct envelope *env, char *out, size_t size);

#endif
