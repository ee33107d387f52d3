/*
 * privsep.h - `tern serve` started as root runs as [server] user.
 *
 * Started as root, the server needs [server] user (it refuses to start
 * without one: deliveries never run as root).  Still as root it binds the
 * listeners, reads the TLS key, and prepares data_dir: queue/, pickup/
 * and mail/ owned by the user (0700, their files 0600) and the pid file.
 * Then privsep_drop() leaves root for good: supplementary groups, gid and
 * uid (real, effective and saved) all become the user's, and it checks
 * that root cannot be regained.  Started as any other user, nothing
 * changes (a [server] user naming someone else is logged and ignored).
 */
#ifndef TERN_SERVER_PRIVSEP_H
#define TERN_SERVER_PRIVSEP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "conf/config.h"

struct privsep {
    bool drop; /* started as root: privsep_drop() switches to uid/gid */
    uid_t uid;
    gid_t gid;
    char user[CONF_NAME_MAX + 1];
};

/* Decide from c and our own ids.  Returns 0, or -1 with why (root without user). */
int privsep_plan(const struct conf *c, struct privsep *ps, char *why, size_t whylen);

/*
 * As root (ps->drop): create data_dir's queue/, pickup/ and mail/ when
 * missing, give them (and what queue/ and pickup/ hold) to the user, mode
 * 0700.  Otherwise nothing.  Returns 0, or -1 with why.
 */
int privsep_prepare(const struct conf *c, const struct privsep *ps, char *why, size_t whylen);

/* Write our pid to path (0644, owned by the user); returns the open fd or -1. */
int privsep_pidfile(const char *path, const struct privsep *ps);

/* Become the user for good (see above).  Returns 0, or -1 with why. */
int privsep_drop(const struct privsep *ps, char *why, size_t whylen);

/*
 * `tern sendmail` run as root: become the owner of dir (the pickup
 * folder) so that what it writes there is the server's to read.  Nothing
 * if we are not root or dir is root's.  Returns 0, or -1 with why.
 */
int privsep_become_owner(const char *dir, char *why, size_t whylen);

#endif
