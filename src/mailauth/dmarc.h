/*
 * dmarc.h - DMARC (RFC 7489): does the RFC5322.From domain's owner vouch
 * for this message, and what does it ask a receiver to do when it does not.
 *
 *   dmarc_record_parse()  a "v=DMARC1; p=...; ..." TXT record (pure; core/taglist)
 *   dmarc_from_domain()   the domain of the one From: address (pure)
 *   psl_*                 the Public Suffix List: organizational domains (pure once
 *                         loaded; psl_load() reads the file once, bounded)
 *   dmarc_aligned()       relaxed / strict identifier alignment (pure)
 *   dmarc_check()         record discovery by DNS (_dmarc.FROM, then
 *                         _dmarc.ORGDOMAIN), alignment of the SPF and DKIM
 *                         results handed in, the result and the policy to apply
 *
 * rua= and ruf= are parsed and kept, but no aggregate or failure report is
 * ever sent.  Nothing here allocates except psl_load*() (one block, freed by
 * psl_free()); a struct psl is read-only once loaded and may be shared by
 * threads.  Every input (records from DNS, header fields) is hostile:
 * lengths are bounded and nothing is trusted to be NUL-free.
 */
#ifndef TERN_MAILAUTH_DMARC_H
#define TERN_MAILAUTH_DMARC_H

#include <stdbool.h>
#include <stddef.h>

struct dns_resolver;

#define DMARC_DOMAIN_MAX 255
#define DMARC_URI_MAX 256
#define PSL_FILE_DEFAULT "/usr/share/publicsuffix/public_suffix_list.dat"
#define PSL_FILE_MAX (8u << 20) /* octets read at most */
#define PSL_RULES_MAX 100000

enum dmarc_policy { DMARC_P_NONE = 0, DMARC_P_QUARANTINE, DMARC_P_REJECT };

enum dmarc_result { DMARC_NONE = 0, DMARC_PASS, DMARC_FAIL, DMARC_TEMPERROR, DMARC_PERMERROR };

struct dmarc_record {
    enum dmarc_policy p;  /* p= (a record with rua= but no valid p= is p=none, 6.6.3) */
    enum dmarc_policy sp; /* sp=, or p when absent */
    bool adkim_strict, aspf_strict;
    unsigned pct;                                /* 0..100, default 100 */
    char rua[DMARC_URI_MAX], ruf[DMARC_URI_MAX]; /* kept, never used to send reports */
};

/*
 * Parse a DMARC record.  Returns 0, or -1 with a reason in why when it is not
 * a DMARC record at all or is unusable ("v=DMARC1" not the first tag, a
 * broken tag list, no valid p= and no rua=): discovery then goes on as if
 * there were no record.  Bad values of optional tags fall back to their
 * defaults (RFC 7489 6.3); unknown tags are ignored.
 */
int dmarc_record_parse(const char *txt, size_t len, struct dmarc_record *out, char *why,
                       size_t whylen);

/*
 * The RFC5322.From domain of a whole message (header section, CRLF or LF):
 * exactly one From field holding exactly one address.  Writes the domain in
 * lower case.  Returns 0, or -1 with a reason (no From, several From fields,
 * no or several addresses, unparsable) in why.
 */
int dmarc_from_domain(const char *msg, size_t len, char *domain, size_t size, char *why,
                      size_t whylen);

/* ---- Public Suffix List (https://publicsuffix.org/list/) ---- */

struct psl;

/* Load the list from text / from a file (NULL: PSL_FILE_DEFAULT).  NULL with a
 * reason on failure (unreadable, too big, too many rules). */
struct psl *psl_load_text(const char *text, size_t len, char *why, size_t whylen);
struct psl *psl_load(const char *path, char *why, size_t whylen);
void psl_free(struct psl *p);
size_t psl_rules(const struct psl *p);

/*
 * The organizational domain of domain (RFC 7489 3.2): its public suffix
 * (the longest matching rule, exception rules winning, "*" by default) plus
 * one label, in lower case without a final dot.  A domain that is itself a
 * public suffix is its own organizational domain.  p may be NULL (then only
 * the default rule "*" applies).  Returns 0, or -1 (bad name, too long).
 */
int psl_org_domain(const struct psl *p, const char *domain, char *out, size_t size);

/* Identifier alignment: strict = same name (no case); relaxed = same
 * organizational domain. */
bool dmarc_aligned(const struct psl *p, const char *a, const char *b, bool strict);

/* ---- evaluation ---- */

/* What SPF and DKIM found, handed in (mailauth's SPF and DKIM are not called here). */
struct dmarc_auth {
    const char *spf_domain; /* the MAIL FROM domain (or HELO when MAIL FROM was <>) */
    bool spf_pass;
    const char *const *dkim_domains; /* d= of every signature that passed */
    size_t ndkim;
};

struct dmarc_verdict {
    enum dmarc_result result;
    bool have_record;
    struct dmarc_record rec;
    enum dmarc_policy policy; /* the record's p= or sp= for this From domain */
    enum dmarc_policy apply;  /* what to do: none on pass/none/errors; policy, or the next
                                 lower one when pct sampling left this message out */
    bool spf_aligned, dkim_aligned;
    char from_domain[DMARC_DOMAIN_MAX + 1];
    char org_domain[DMARC_DOMAIN_MAX + 1];
    char why[200];
};

/*
 * Evaluate DMARC for from_domain (from dmarc_from_domain()).  sample is a
 * random number in 0..99 (pct: the policy applies when sample < pct).
 * DNS failures give DMARC_TEMPERROR; a From domain that is not a valid name
 * DMARC_PERMERROR; no record at either name DMARC_NONE.  Returns out->result.
 */
enum dmarc_result dmarc_check(struct dns_resolver *r, const struct psl *p, const char *from_domain,
                              const struct dmarc_auth *auth, unsigned sample,
                              struct dmarc_verdict *out);

/* The result and policy decided on a record already found (the pure part of dmarc_check). */
void dmarc_decide(const struct psl *p, const struct dmarc_record *rec, bool subdomain,
                  const char *from_domain, const struct dmarc_auth *auth, unsigned sample,
                  struct dmarc_verdict *out);

/* "none", "pass", "fail", "temperror", "permerror" (RFC 8601 words). */
const char *dmarc_result_name(enum dmarc_result r);
/* "none", "quarantine", "reject". */
const char *dmarc_policy_name(enum dmarc_policy p);

#endif
