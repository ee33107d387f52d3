/*
 * config.h - tern.conf, the one INI file of `tern serve`, and the list of
 * problems found while reading it (or any other file of the server's
 * configuration: users, aliases).
 *
 * Sections and keys (defaults in brackets; docs/CONFIG.md has the details):
 *
 *   [server]  hostname     [the system host name]   name used in greetings and Received:
 *             data_dir     [/var/lib/tern]          queue, mail, domains/ (relative: to the file)
 *             max_size     [25M]                    message size limit (K, M, G suffixes)
 *             max_rcpts    [100]                    recipients per message
 *             max_line_length [998]                 octets of a DATA line, CRLF excluded
 *                                                   (up to 64K; relayed lines broken at 998)
 *             max_errors   [10]                     protocol errors before a session is closed
 *             idle_timeout [5m]                     waiting for a command
 *             command_timeout [1m], data_timeout [10m], session_timeout [1h]  a command line,
 *                                                   the DATA phase, a whole session
 *             max_sessions [from RLIMIT_NOFILE], max_sessions_per_ip [20],
 *             max_connect_rate_per_ip [60/minute]   then 421 (per address and per /24, /64)
 *             body_memory  [256M]                   message bodies being received, all sessions
 *             auth_max_failures [10], auth_lockout [15m]  failed AUTH per network or user
 *                                                   within auth_lockout, then 454 that long
 *             user, group  [none]                   run as this user (required when started as
 * root) [listen]  smtp         [127.0.0.1:25]           space-separated host:port list, "off"
 *             submission   [off]                    port 587 style: STARTTLS, AUTH required
 *             submissions  [off]                    port 465 style: implicit TLS, AUTH required
 *   [tls]     cert, key    [none]                   PEM files; both or neither
 *   [queue]   max_items    [10000]                  items in the queue (then 452)
 *             min_free_space [100M]                 free disk space kept (then 452)
 *             retry        [1m 5m 15m 30m 1h 2h 4h] delays between attempts (last repeats)
 *             give_up      [5d]                     then the remaining recipients fail
 *             delay_warning [4h]                    "delayed" DSN after this long, or "off"
 *   [local]   delivery     [maildir]                maildir | mda | lmtp
 *             lmtp         [none]                   unix:/path | [inet:]host[:port] (port 24)
 *             mda_command  [none]                   argv template, %from% %to% %to_user%
 * %to_domain% mda_timeout  [5m] maildir_path [DATA_DIR/mail/%domain%/%user%/Maildir] drop_chars [.]
 * removed from local parts before lookup suffix_separators [+]                 "user+tag" is "user"
 *             default_domain [see sendmail.c]      domain added to bare names by sendmail
 *   [relay]   senders_must_match [true]             authenticated users send only as their domain
 *   [admin]   listen       [off]                    HTTP GET /metrics (Prometheus), host:port list
 *             allow_remote [false]                  allow a listen address that is not loopback
 *   [dkim]    sign         [yes]                    DKIM-sign mail of local domains with keys
 *             keys_dir     [DATA_DIR/domains/D/dkim] DIR/DOMAIN/SELECTOR.key instead
 *   [mta_sts] enabled      [yes]                    RFC 8461 policies for delivery by MX
 *             ca           [the system's store]     CA file for fetching policies over HTTPS
 *             port         [443]                    HTTPS port of mta-sts.DOMAIN (tests only)
 *   [checks]  spf, dkim    [tag]                    none|tag|reject (unauthenticated smtp listener)
 *             dmarc        [tag]                    none|tag|reject|honor (p= of the domain)
 *             quarantine_folder [Junk]              Maildir++ folder of DMARC quarantine
 *             authserv_id  [hostname]               id of our Authentication-Results
 *
 * Invariants: a struct conf is plain data with fixed-size fields (it can be
 * copied and swapped on reload, nothing to free); after a successful load
 * every field holds a valid value.  Errors are collected, never printed
 * here: every problem of the file, each as "FILE:LINE: what" ("FILE: what"
 * when no line applies), up to CONF_ERRORS_MAX.
 */
#ifndef TERN_CONF_CONFIG_H
#define TERN_CONF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define CONF_DEFAULT_PATH "/etc/tern/tern.conf"
#define CONF_FILE_MAX (1024 * 1024) /* tern.conf larger than this is refused */
#define CONF_LINE_MAX 1024          /* characters per line, newline excluded */
#define CONF_STR_MAX 1024           /* paths, commands */
#define CONF_HOST_MAX 255
#define CONF_LISTEN_MAX 8 /* addresses per [listen] key */
#define CONF_RETRY_MAX 32 /* entries of [queue] retry */
#define CONF_CHARS_MAX 16 /* drop_chars, suffix_separators */
#define CONF_ERRORS_MAX 1000
#define CONF_NAME_MAX 64 /* [server] user and group names */

/* Problems found in configuration files, in the order found. */
struct conf_errors {
    char **v; /* each "FILE:LINE: what", owned */
    size_t n;
    bool truncated; /* more than CONF_ERRORS_MAX: the rest were dropped */
    char **w;       /* warnings ("FILE: what"): reported, not fatal; owned */
    size_t nw;
};

/* Record one problem; line 0 means the file as a whole.  Never fails (OOM is fatal). */
__attribute__((format(printf, 4, 5))) void conf_error(struct conf_errors *e, const char *file,
                                                      unsigned line, const char *fmt, ...);
void conf_errors_free(struct conf_errors *e);
/* Record a warning (a risk that does not stop the server), up to CONF_ERRORS_MAX. */
__attribute__((format(printf, 3, 4))) void conf_warn(struct conf_errors *e, const char *file,
                                                     const char *fmt, ...);

struct conf_listen {
    char text[64]; /* as written, e.g. "[::1]:587" */
    struct sockaddr_storage ss;
    socklen_t len;
};

struct conf_listeners {
    struct conf_listen v[CONF_LISTEN_MAX];
    size_t n; /* 0: off */
};

enum conf_delivery { CONF_DELIVERY_MAILDIR = 0, CONF_DELIVERY_MDA, CONF_DELIVERY_LMTP };

/* TLS towards other servers: none (never), may (STARTTLS when offered, not
 * verified; a failed handshake retries in clear), verify (STARTTLS required and
 * the certificate verified, else defer), implicit (TLS from the start: port 465). */
enum conf_tls { CONF_TLS_NONE = 0, CONF_TLS_MAY, CONF_TLS_VERIFY, CONF_TLS_IMPLICIT };

#define CONF_ROUTES_MAX 64

/* [checks]: what a result does: nothing, an Authentication-Results entry, a
 * 550 on failure; honor (dmarc only): what the domain's p= asks. */
enum conf_check { CONF_CHECK_NONE = 0, CONF_CHECK_TAG, CONF_CHECK_REJECT, CONF_CHECK_HONOR };

/* A per-domain override: next hop and/or TLS policy. */
struct conf_route {
    char domain[CONF_HOST_MAX + 1]; /* lower case */
    char host[CONF_HOST_MAX + 3];   /* "" = by MX; a name or [address] */
    char port[8];
    int tls; /* enum conf_tls, -1 = the default */
};

struct conf {
    char path[CONF_STR_MAX]; /* the file read ("" when parsed from a string) */
    /* [server] */
    char hostname[CONF_HOST_MAX + 1];
    char data_dir[CONF_STR_MAX]; /* absolute when loaded from a file */
    uint64_t max_size;           /* octets */
    uint32_t max_rcpts;
    uint32_t max_line_length; /* octets of a DATA line, CRLF excluded (998..65536) */
    uint32_t max_errors;
    uint64_t idle_timeout_ms;
    uint64_t command_timeout_ms, data_timeout_ms, session_timeout_ms;
    uint32_t max_sessions;                                 /* 0 = derived from RLIMIT_NOFILE */
    uint32_t max_sessions_per_ip, max_connect_rate_per_ip; /* 0 = no limit */
    uint64_t body_memory;                                  /* octets, 0 = no limit */
    uint32_t auth_max_failures;    /* failed AUTH per client network or user name ... */
    uint64_t auth_lockout_ms;      /* ... within this long: then 454 for this long */
    char user[CONF_NAME_MAX + 1];  /* "" = none; exists (checked by conf_load) */
    char group[CONF_NAME_MAX + 1]; /* "" = the user's primary group */
    /* [listen] */
    struct conf_listeners smtp, submission, submissions;
    /* [tls] ("" when unset) */
    char tls_cert[CONF_STR_MAX];
    char tls_key[CONF_STR_MAX];
    /* [queue] */
    uint64_t queue_max_items;
    uint64_t queue_min_free; /* octets */
    uint64_t retry_ms[CONF_RETRY_MAX];
    size_t n_retry; /* >= 1, non-decreasing */
    uint64_t give_up_ms;
    uint64_t delay_warning_ms; /* 0: off; else < give_up_ms */
    /* [local] */
    enum conf_delivery delivery;
    char mda_command[CONF_STR_MAX]; /* "" unless delivery = mda */
    uint64_t mda_timeout_ms;
    char lmtp[CONF_STR_MAX];         /* LMTP endpoint (deliver/lmtp.h), "" unless delivery = lmtp */
    char maildir_path[CONF_STR_MAX]; /* template with %user% (and maybe %domain%) */
    char drop_chars[CONF_CHARS_MAX + 1];
    char suffix_separators[CONF_CHARS_MAX + 1];
    char default_domain[CONF_HOST_MAX + 1]; /* "" = chosen by sendmail (see sendmail.c) */
    /* [relay] */
    bool senders_must_match;
    /* [admin] */
    struct conf_listeners admin; /* GET /metrics; n 0 = off */
    bool admin_allow_remote;     /* a non-loopback admin address is refused without it */
    /* [dkim] */
    bool dkim_sign;                   /* sign mail of local domains that have a key */
    char dkim_keys_dir[CONF_STR_MAX]; /* "" = DATA_DIR/domains/DOMAIN/dkim; else DIR/DOMAIN */
    /* [remote] */
    char smarthost_host[CONF_HOST_MAX + 3]; /* "" = deliver by MX */
    char smarthost_port[8];
    char smarthost_user[CONF_HOST_MAX + 1];
    char smarthost_password_file[CONF_STR_MAX];
    int smarthost_tls;              /* enum conf_tls, default verify */
    int remote_tls;                 /* enum conf_tls for MX delivery, default may */
    char tls_ca[CONF_STR_MAX];      /* "" = the system's store */
    char dns_servers[CONF_STR_MAX]; /* "" = the system's resolvers */
    char remote_port[8];            /* port of MX hosts: 25 (change for tests only) */
    uint32_t max_hosts;             /* MX hosts tried per attempt */
    uint32_t concurrency;           /* deliveries at once */
    uint32_t per_destination;       /* deliveries at once to one domain */
    uint64_t remote_timeout_ms;     /* per SMTP command; 0 = RFC 5321's */
    struct conf_route routes[CONF_ROUTES_MAX];
    size_t n_routes;
    /* [mta_sts] (RFC 8461, deliver/sts.h) */
    bool mta_sts;                  /* enabled: look up and apply MTA-STS policies (default yes) */
    char mta_sts_ca[CONF_STR_MAX]; /* CA file for fetching policies; "" = the system's store */
    uint32_t mta_sts_port;         /* HTTPS port of mta-sts.DOMAIN: 443 (change for tests only) */
    /* [checks] (inbound SPF, DKIM, DMARC on the smtp listener, server/checks.h) */
    int check_spf, check_dkim, check_dmarc; /* enum conf_check */
    char quarantine_folder[64];             /* Maildir++ folder for DMARC quarantine: "Junk" */
    char authserv_id[CONF_HOST_MAX + 1];    /* of our Authentication-Results; "" = hostname */
};

/* Fill *c with every default (hostname from gethostname(2), "" if unusable). */
void conf_defaults(struct conf *c);

/*
 * Parse tern.conf text (len octets, NUL bytes are reported, not trusted).
 * name is the file name used in messages; base_dir (may be NULL) is what a
 * relative data_dir is relative to.  Touches no file.  Returns 0, or -1
 * when at least one problem was added to *e (then *c holds defaults for
 * what was wrong).
 */
int conf_parse_string(const char *text, size_t len, const char *name, const char *base_dir,
                      struct conf *c, struct conf_errors *e);

/*
 * Read and parse the file at path (relative data_dir: relative to the
 * file's folder), then check the files it names (TLS certificate and key
 * readable).  Returns 0, or -1 with every problem in *e.
 */
int conf_load(const char *path, struct conf *c, struct conf_errors *e);

/*
 * The Maildir of user@domain: maildir_path with %user% and %domain%
 * replaced.  user and domain must be non-empty, without '/', and not start
 * with '.'.  Returns 0, or -1 (bad value, or does not fit in size).
 */
int conf_maildir_path(const struct conf *c, const char *user, const char *domain, char *out,
                      size_t size);

/*
 * Read a whole regular file of at most max octets into *out (malloc'd,
 * NUL-terminated; *len excludes the NUL).  Returns 0, or -1 with errno set
 * (ENOENT for a missing file) and a short reason in why.
 */
int conf_read_file(const char *path, size_t max, char **out, size_t *len, char *why, size_t whylen);

/*
 * The uid and gid of [server] user (and group): 0, or -1 when no user is
 * set or it does not exist (any more).
 */
int conf_user_ids(const struct conf *c, uid_t *uid, gid_t *gid);

/* How a configuration file must be protected (conf_check_file). */
enum conf_file_kind {
    CONF_FILE_SECRET, /* TLS key, passwords: nobody else may read it */
    CONF_FILE_RULES,  /* tern.conf, aliases, their folders: nobody else may change it */
    CONF_FILE_USERS,  /* users: as RULES, and a warning when others may read the hashes */
};

/*
 * Check the owner and mode of path: owned by root, by the caller's
 * effective user or by c's [server] user, and not open to others as kind
 * says.  Problems go to *e as "PATH: what"; a missing file is not one
 * (whoever reads it reports that).
 */
void conf_check_file(const struct conf *c, const char *path, enum conf_file_kind kind,
                     struct conf_errors *e);

/* The config path to use: --config value if given, else $TERN_CONFIG, else the default. */
const char *conf_default_path(const char *from_option);

/* The override for domain (lower case), or NULL. */
const struct conf_route *conf_route_for(const struct conf *c, const char *domain);

#endif
