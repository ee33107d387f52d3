/*
 * dkim.h - DKIM signatures (RFC 6376) with RSA-SHA256 and Ed25519-SHA256
 * (RFC 8463): signing for tern serve and tern send, verification for the
 * inbound checks.
 *
 * tern's own implementation on OpenSSL 3's EVP API, not libopendkim: tern
 * needs key records through its own c-ares resolver (dns_resolver_txt: the
 * configured or test DNS servers, deadlines, NXDOMAIN / temporary failure
 * told apart), a bounded pure parser it can fuzz, and Ed25519-SHA256
 * (RFC 8463) beside RSA-SHA256 in one code path.
 *
 * Bounds: a message's header section at most DKIM_MAX_FIELDS fields of at
 * most DKIM_MAX_FIELD_LEN octets each (more: the message is not signed, a
 * signature is PERMERROR); h= at most DKIM_MAX_H names; at most
 * DKIM_MAX_VERIFY signatures are checked, later ones are ignored.
 *
 * Memory: a struct dkim_key owns its OpenSSL key (dkim_key_free); the
 * verdicts are plain values.  Messages are CRLF-terminated, as queued.
 */
#ifndef TERN_MAILAUTH_DKIM_H
#define TERN_MAILAUTH_DKIM_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "core/buf.h"
#include "dns/dns.h"

#define DKIM_MAX_FIELDS 1000     /* header fields of a message looked at */
#define DKIM_MAX_FIELD_LEN 65536 /* octets of one header field, folding included */
#define DKIM_MAX_H 64            /* names in h= */
#define DKIM_MAX_VERIFY 5        /* signatures checked per message */
#define DKIM_MIN_RSA_BITS 1024   /* smaller RSA keys fail (RFC 8301) */
#define DKIM_MAX_RSA_BITS 8192   /* larger keys are refused (verification cost) */
#define DKIM_SELECTOR_MAX 63     /* octets of a selector */

enum dkim_status {
    DKIM_NONE,
    DKIM_PASS,
    DKIM_FAIL,
    DKIM_NEUTRAL,
    DKIM_POLICY,
    DKIM_TEMPERROR,
    DKIM_PERMERROR
};

struct dkim_verdict {
    enum dkim_status status;
    char domain[256];  /* d= (lower case), "" if the signature could not be parsed */
    char selector[64]; /* s= */
    char algo[32];     /* "rsa-sha256", "ed25519-sha256", or as written */
    char b8[9];        /* first 8 chars of b=, for header.b */
    char why[200];     /* printable, e.g. "body hash mismatch", "key revoked" */
};

/* "pass", "fail", "neutral", "policy", "temperror", "permerror", "none"
 * (RFC 8601 words). */
const char *dkim_status_name(enum dkim_status s);

/* ---- keys and signing ---------------------------------------------------- */

enum dkim_algo { DKIM_ALGO_RSA_SHA256, DKIM_ALGO_ED25519_SHA256 };

struct evp_pkey_st; /* OpenSSL's EVP_PKEY */

struct dkim_key {
    enum dkim_algo algo;
    struct evp_pkey_st *pkey; /* private key, owned */
    unsigned bits;            /* RSA modulus bits; 256 for Ed25519 */
    char domain[256];         /* d= (lower case) */
    char selector[DKIM_SELECTOR_MAX + 1];
};

/*
 * Load a PEM private key (RSA of DKIM_MIN_RSA_BITS..DKIM_MAX_RSA_BITS bits,
 * or Ed25519) from path for domain and selector.  No permission check here:
 * the caller (conf/snapshot.c) decides who may read it.  NULL with a reason
 * in why ("FILE: not a PEM private key", "FILE: RSA key of 512 bits").
 */
struct dkim_key *dkim_key_load(const char *path, const char *domain, const char *selector,
                               char *why, size_t whylen);
/* The same from PEM text in memory (tests, fuzzers); label names it in why. */
struct dkim_key *dkim_key_from_pem(const char *pem, size_t len, const char *label,
                                   const char *domain, const char *selector, char *why,
                                   size_t whylen);
void dkim_key_free(struct dkim_key *k);

/*
 * Generate a new key: RSA of bits bits (1024..8192) or Ed25519 (bits
 * ignored).  Writes the PEM (PKCS#8) private key to pem_out.  0 or -1.
 */
int dkim_keygen(enum dkim_algo algo, unsigned bits, struct buf *pem_out, char *why, size_t whylen);

/*
 * The key record to publish: "v=DKIM1; k=rsa; p=BASE64" (p= the
 * SubjectPublicKeyInfo DER for RSA, the raw 32-octet key for Ed25519).
 * Appends to out, NUL-terminated (the NUL not counted in out->len).
 */
int dkim_key_record(const struct dkim_key *k, struct buf *out, char *why, size_t whylen);

/*
 * Sign msg[0..len) (header, empty line, body; CRLF) with k, relaxed/relaxed,
 * t=now, the header set of dkim_sign_headers below present in the message,
 * each field signed once more than it appears (oversigning: no copy can be
 * added later).  Appends the whole field "DKIM-Signature: ...\r\n", folded
 * at < 78 columns, to header_out: prepend it to the message.  Several keys
 * may sign the same message (RSA and Ed25519); each signature covers the
 * message without the others.  0, or -1 with a reason in why (no From:,
 * header bounds, an OpenSSL failure).
 */
int dkim_sign(const struct dkim_key *k, const char *msg, size_t len, time_t now,
              struct buf *header_out, char *why, size_t whylen);

/* The fields signed when present, NULL-terminated (From first). */
extern const char *const dkim_sign_headers[];

/* ---- verification --------------------------------------------------------- */

/*
 * Verify up to max (at most DKIM_MAX_VERIFY) signatures of msg (whole
 * message, CRLF), keys by DNS through r; returns the number of verdicts
 * written (0: no DKIM-Signature).
 */
size_t dkim_verify(struct dns_resolver *r, const char *msg, size_t len, time_t now,
                   struct dkim_verdict *out, size_t max);

/*
 * Key lookup used by dkim_verify_with(): the TXT records of qname
 * ("sel._domainkey.example.org") into out (as dns_resolver_txt does; the
 * caller frees out with dns_txt_free).  Returns an enum dns_qstatus.
 */
typedef enum dns_qstatus (*dkim_lookup_fn)(void *ctx, const char *qname, struct dns_txt *out,
                                           char *why, size_t whylen);

/* dkim_verify() with an injected key lookup (tests, the fuzzer). */
size_t dkim_verify_with(dkim_lookup_fn lookup, void *ctx, const char *msg, size_t len, time_t now,
                        struct dkim_verdict *out, size_t max);

/* ---- pure parts (exposed for tests and the fuzzer) ------------------------ */

enum dkim_canon { DKIM_CANON_SIMPLE, DKIM_CANON_RELAXED };

/* One header field of a message: the raw octets from its name to its CRLF
 * (included). */
struct dkim_field {
    const char *p;
    size_t len;     /* with the final CRLF (or LF / nothing at the end of data) */
    size_t namelen; /* the name, without blanks before ':' */
};

/*
 * Split the header section of msg into fields (at most max), *body_off set
 * to the first octet of the body (after the empty line; len if none).
 * Returns the count, or -1 with why: more than max fields, a field over
 * DKIM_MAX_FIELD_LEN, a line that is not a field.
 */
long dkim_split_header(const char *msg, size_t len, struct dkim_field *f, size_t max,
                       size_t *body_off, char *why, size_t whylen);

/* A parsed DKIM-Signature value (pointers into the caller's text). */
struct dkim_sig {
    enum dkim_algo algo;
    enum dkim_canon hcanon, bcanon;
    char domain[256];                     /* d=, lower case */
    char selector[DKIM_SELECTOR_MAX + 1]; /* s= */
    char auid[320];                       /* i= ("" when absent: @d) */
    const char *h[DKIM_MAX_H];            /* h= names (into the text), trimmed */
    size_t hlen[DKIM_MAX_H];
    size_t nh;
    unsigned char bh[64]; /* bh= decoded */
    size_t bhlen;
    unsigned char b[1024]; /* b= decoded */
    size_t blen;
    char b8[9];         /* first 8 chars of b= as written (blanks dropped) */
    char algo_name[32]; /* a= as written (cut) */
    bool has_l;
    unsigned long long l; /* l= body length */
    bool has_t, has_x;
    long long t, x; /* t=, x= */
};

/*
 * Parse the value of a DKIM-Signature field (after the ':'): tags through
 * core/taglist, required v=1, a=, b=, bh=, d=, h= (with From), s=; c=, i=
 * (within d=), l=, q= (dns/txt), t=, x= (x >= t).  0, or -1 with why
 * ("unsupported algorithm 'rsa-sha1'", "h= does not sign From").  Partial
 * fields (d=, s=, algo_name, b8) are filled in as far as they were read.
 */
int dkim_sig_parse(const char *value, size_t len, struct dkim_sig *out, char *why, size_t whylen);

/* A parsed key record. */
struct dkim_keyrec {
    enum dkim_algo algo;   /* k= (rsa when absent) */
    unsigned char p[2048]; /* p= decoded */
    size_t plen;           /* 0: revoked */
    bool testing;          /* t=y */
    bool strict;           /* t=s: i= must be exactly d= */
    bool sha256_ok;        /* h= absent or lists sha256 */
    bool email_service;    /* s= absent, "*" or lists "email" */
};

/* Parse a key record ("v=DKIM1; k=ed25519; p=..."). 0, or -1 with why. */
int dkim_keyrec_parse(const char *txt, size_t len, struct dkim_keyrec *out, char *why,
                      size_t whylen);

/*
 * Canonicalise one header field (raw, as in struct dkim_field) and append it
 * to out: simple = as is; relaxed = name in lower case, unfolded, runs of
 * WSP to one SP, no WSP at the ends of the value or before/after ':', CRLF.
 * When drop_b, the value of the b= tag is emptied (the signature's own
 * field, RFC 6376 3.7) and no CRLF is appended.
 */
void dkim_canon_header(enum dkim_canon c, const char *field, size_t len, bool drop_b,
                       struct buf *out);

/*
 * Canonicalise a body, emitting it piecewise to emit(ctx, p, n): simple =
 * trailing empty lines removed, "" becomes CRLF; relaxed = WSP runs to one
 * SP, WSP at line ends removed, trailing empty lines removed (an empty body
 * stays empty).  Bare LF counts as a line end.  Returns the octets emitted.
 */
size_t dkim_canon_body(enum dkim_canon c, const char *body, size_t len,
                       void (*emit)(void *ctx, const char *p, size_t n), void *ctx);

/*
 * Header selection of RFC 6376 5.4.2: for each name of h= (in order) take
 * the last not-yet-used field of that name (bottom-up), none if all are
 * used (an oversigned name then contributes nothing).  sel[i] receives the
 * index into f[] or -1.  Pure.
 */
void dkim_select_fields(const struct dkim_field *f, size_t nf, const char *const *names,
                        const size_t *namelens, size_t nnames, long *sel);

#endif
