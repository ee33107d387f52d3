/*
 * mtasts.h - SMTP MTA Strict Transport Security (RFC 8461): the
 * "_mta-sts.DOMAIN" TXT record, the policy fetched over HTTPS, its parser,
 * MX pattern matching and a policy cache (memory + files).
 *
 * Pure parts (no I/O, no allocation): mtasts_txt_parse(),
 * mtasts_policy_parse(), mtasts_mx_match(), mtasts_policy_match().
 *
 * Network parts: mtasts_txt_lookup() (through a dns_resolver) and
 * mtasts_fetch() (libcurl: HTTPS only, certificate verified, no redirects,
 * 200 and text/plain required, at most MTASTS_POLICY_MAX octets, connect
 * and total timeouts; the host "mta-sts.DOMAIN" is resolved through the
 * same dns_resolver and handed to libcurl with CURLOPT_RESOLVE, so that
 * one resolver, the one of [remote] dns_servers, answers every question).
 *
 * The cache (mtasts_cache_get) implements RFC 8461 5.1: a policy is
 * refetched when the TXT id differs from the cached one or the cached one
 * is older than its max_age; a failed fetch keeps a cached policy until
 * its max_age has passed; with nothing cached, a failed fetch means "no
 * policy".  It is shared by threads (one mutex, never held during DNS or
 * HTTP) and written to DIR/DOMAIN atomically (tmp + fsync + rename + fsync
 * of DIR) so that a restart keeps it.  Where the TXT id and the policy come
 * from is a struct mtasts_source: the network, or a unit test's fakes.
 */
#ifndef TERN_MAILAUTH_MTASTS_H
#define TERN_MAILAUTH_MTASTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "dns/dns.h"

#define MTASTS_ID_MAX 32                /* alphanumerics of a TXT id */
#define MTASTS_MX_MAX 32                /* mx patterns in a policy (more: invalid) */
#define MTASTS_POLICY_MAX 65536         /* octets of a policy file (more: refused) */
#define MTASTS_MAX_AGE_MAX 31557600     /* RFC 8461 3.2: about one year */
#define MTASTS_CACHE_MAX 4096           /* domains kept in memory (then the oldest goes) */
#define MTASTS_CONNECT_MS_DEFAULT 10000 /* HTTPS connect timeout */
#define MTASTS_TOTAL_MS_DEFAULT 60000   /* HTTPS whole-fetch timeout */

enum mtasts_mode { MTASTS_MODE_NONE = 0, MTASTS_MODE_TESTING, MTASTS_MODE_ENFORCE };

struct mtasts_policy {
    enum mtasts_mode mode;
    uint32_t max_age;                         /* seconds, 0..MTASTS_MAX_AGE_MAX */
    char mx[MTASTS_MX_MAX][DNS_NAME_MAX + 1]; /* lower case, "*.example.net" allowed */
    size_t nmx;                               /* >= 1 unless mode is none */
    char id[MTASTS_ID_MAX + 1];               /* the TXT id it was fetched under ("" unknown) */
};

/* "none", "testing", "enforce". */
const char *mtasts_mode_name(enum mtasts_mode m);

/*
 * One TXT record rec[0..len): "v=STSv1; id=...;" (RFC 8461 3.1), a
 * tag=value list (core/taglist) whose first tag is v=STSv1 and that has an
 * id of 1..32 letters and digits; other tags are ignored.  Returns 0 with
 * the id, or -1 with a reason.
 */
int mtasts_txt_parse(const char *rec, size_t len, char id[MTASTS_ID_MAX + 1], char *why,
                     size_t whylen);

/*
 * Parse a policy file text[0..len) (RFC 8461 3.2): "key: value" lines ended
 * by LF or CRLF; version (STSv1), mode (enforce|testing|none) and max_age
 * (at most 31557600) are required, and at least one mx unless mode is none;
 * unknown keys are ignored, a repeated key other than mx keeps its first
 * value.  A line without ':', a control or non-ASCII octet, a bad value or
 * a bad mx pattern makes the whole policy invalid.  Returns 0, or -1 with a
 * reason ("line 3: mode 'strict' is not enforce, testing or none").
 */
int mtasts_policy_parse(const char *text, size_t len, struct mtasts_policy *out, char *why,
                        size_t whylen);

/*
 * True if host (an MX host name, a final dot allowed, any case) matches
 * pattern: equal, or pattern "*.rest" and host is one label followed by
 * ".rest" (the wildcard stands for exactly one leftmost label).
 */
bool mtasts_mx_match(const char *pattern, const char *host);

/* True if host matches one of p's mx patterns. */
bool mtasts_policy_match(const struct mtasts_policy *p, const char *host);

/* ---- network ---- */

/* The result of looking for a policy's TXT record. */
enum mtasts_txt_status {
    MTASTS_TXT_OK = 0, /* exactly one valid STSv1 record: id filled */
    MTASTS_TXT_NONE,   /* no STSv1 record (NXDOMAIN, no TXT, none starts with v=STSv1) */
    MTASTS_TXT_BAD,    /* more than one STSv1 record, or an invalid one */
    MTASTS_TXT_TEMP,   /* DNS temporary failure */
};

/* Look up "_mta-sts.DOMAIN". */
enum mtasts_txt_status mtasts_txt_lookup(struct dns_resolver *r, const char *domain,
                                         char id[MTASTS_ID_MAX + 1], char *why, size_t whylen);

struct mtasts_fetch_conf {
    struct dns_resolver *resolver; /* resolves mta-sts.DOMAIN (A and AAAA) */
    const char *ca_file;           /* CA bundle for the HTTPS server; NULL: the system's */
    unsigned port;                 /* 0: 443 (another port is for tests) */
    unsigned connect_ms, total_ms; /* 0: the defaults above */
};

/*
 * Fetch https://mta-sts.DOMAIN/.well-known/mta-sts.txt.  Returns 0 with the
 * body in *body (malloc'ed, NUL-terminated, *len octets), or -1 with a
 * reason ("HTTP status 404", "content type 'text/html' is not text/plain",
 * "policy larger than 65536 octets", the TLS or connection error).
 */
int mtasts_fetch(const struct mtasts_fetch_conf *fc, const char *domain, char **body, size_t *len,
                 char *why, size_t whylen);

/* ---- cache ---- */

struct mtasts_source {
    /* the TXT record of domain (as mtasts_txt_lookup) */
    enum mtasts_txt_status (*txt)(void *ctx, const char *domain, char id[MTASTS_ID_MAX + 1],
                                  char *why, size_t whylen);
    /* the policy text of domain (as mtasts_fetch) */
    int (*fetch)(void *ctx, const char *domain, char **body, size_t *len, char *why, size_t whylen);
    void *ctx;
};

/* The network source: ctx is a struct mtasts_fetch_conf (its resolver used for both). */
extern const struct mtasts_source mtasts_net_source_ops;

struct mtasts_cache;

/* A cache kept in memory and in dir (created 0700 if missing; NULL: memory only). */
struct mtasts_cache *mtasts_cache_new(const char *dir);
void mtasts_cache_free(struct mtasts_cache *c);

/* What mtasts_cache_get() found. */
enum mtasts_outcome {
    MTASTS_NO_POLICY = 0, /* the domain has no (usable) policy: deliver as before */
    MTASTS_FETCHED,       /* a new policy was fetched and stored */
    MTASTS_CACHED,        /* the cached policy is current */
    MTASTS_STALE_KEPT,    /* a refresh failed: the cached policy (not expired) is kept */
    MTASTS_FAILED,        /* a bad TXT record or a failed fetch, nothing cached: no policy */
};

/*
 * The policy of domain (lower case, a valid host name) at time now.
 * Returns MTASTS_NO_POLICY or MTASTS_FAILED (deliver as without MTA-STS), or
 * another outcome with *out filled.  note
 * receives one printable line on what happened, for the log ("fetched
 * id=abc max_age=86400", "policy fetch failed: HTTP status 404", "TXT
 * record: ...").  Thread-safe.
 */
enum mtasts_outcome mtasts_cache_get(struct mtasts_cache *c, const struct mtasts_source *src,
                                     const char *domain, time_t now, struct mtasts_policy *out,
                                     char *note, size_t notelen);

#endif
