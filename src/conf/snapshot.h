/*
 * snapshot.h - the configuration of `tern serve` as one immutable value.
 *
 * A snapshot holds everything read from the configuration files: tern.conf
 * (struct conf), the local domains with their users and aliases (struct
 * policy) and the smarthost password.  It is built whole by
 * snapshot_load(), never changed afterwards, and shared by reference count:
 * every session and every delivery attempt takes a reference to the
 * snapshot in force when it began and drops it when it ends.  SIGHUP loads
 * a new snapshot and swaps it in whole; the old one is freed by whoever
 * drops the last reference, on any thread.  Nobody changes a live
 * configuration in place.
 */
#ifndef TERN_CONF_SNAPSHOT_H
#define TERN_CONF_SNAPSHOT_H

#include <stdatomic.h>

#include "conf/config.h"
#include "conf/dkimkeys.h"
#include "conf/policy.h"

struct snapshot {
    struct conf conf;
    struct policy policy;
    char *smarthost_pass; /* from [remote] smarthost_password_file, NULL if none */
    struct dkimkeys dkim; /* [dkim]: the signing keys of the local domains */
    atomic_uint refs;
    unsigned long generation; /* 1 for the first, +1 per reload (logs) */
};

/*
 * Read tern.conf at path, the users and aliases of every local domain and
 * the smarthost password file.  Returns a snapshot with one reference, or
 * NULL with every problem in *e (FILE:LINE: what).
 */
struct snapshot *snapshot_load(const char *path, struct conf_errors *e);

/* The same from a parsed configuration (tests, tools); c is copied. */
struct snapshot *snapshot_from_conf(const struct conf *c, struct conf_errors *e);

/*
 * Check the owner and mode of data_dir/domains, each domain's folder and
 * its users and aliases files (conf_check_file): errors and warnings to *e.
 */
void snapshot_check_files(const struct conf *c, const struct policy *p, struct conf_errors *e);

/* Take another reference (returns s); drop one, freeing on the last. */
struct snapshot *snapshot_ref(struct snapshot *s);
void snapshot_put(struct snapshot *s);

#endif
