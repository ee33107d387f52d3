/*
 * envelope.c - the queued message's envelope and its text format (see
 * envelope.h).
 *
 * Format, one field per line, LF line ends:
 *
 *   tern-envelope 2             (1 when msg-size and msg-crc32c are absent)
 *   id 1712345678-0000002a-9f3a0c1d2e3b4a5f
 *   created 1712345678          next-attempt 1712345678
 *   msg-size 2345               msg-crc32c 0a1b2c3d  (version 2 only, both required)
 *   sender <alice@example.org>  (sender <> for the null sender)
 *   ret hdrs  envid ...  smtputf8 no  8bitmime yes  delay-warned no
 *   helo ...  peer ...  auth-user ...
 *   rcpt bob@example.net        (starts a recipient; its fields follow)
 *   orig ...  orcpt ...  notify failure,delay  target maildir:/home/bob/Maildir
 *   status pending  attempts 0  last-attempt 0  error 451 4.2.0 busy
 *   end
 *
 * Invariants: the parser accepts exactly what the formatter can write plus
 * harmless variations (optional fields omitted, any %XX escape, fields in any
 * order within their section); each key at most once per section; message
 * fields never after the first "rcpt".  It allocates only through
 * envelope_set() and never reads past len.  A value never holds NUL.
 */
#include "queue/envelope.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/num.h"

#define S(x) ((x) ? (x) : "")

/* ---- memory ---------------------------------------------------------- */

static char *env_strdup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p)
        fatal("out of memory (envelope string of %zu octets)", n);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static void env_setn(char **slot, const char *s, size_t n)
{
    char *p = env_strdup(s, n);
    free(*slot);
    *slot = p;
}

void envelope_set(char **slot, const char *s)
{
    s = S(s);
    env_setn(slot, s, strlen(s));
}

void envelope_init(struct envelope *env)
{
    memset(env, 0, sizeof(*env));
    envelope_set(&env->sender, "");
    envelope_set(&env->envid, "");
    envelope_set(&env->helo, "");
    envelope_set(&env->peer, "");
    envelope_set(&env->auth_user, "");
}

static void rcpt_free(struct env_rcpt *r)
{
    free(r->addr);
    free(r->orig);
    free(r->orcpt);
    free(r->error);
    free(r->target);
}

void envelope_free(struct envelope *env)
{
    for (size_t i = 0; i < env->nrcpt; i++)
        rcpt_free(&env->rcpts[i]);
    free(env->rcpts);
    free(env->sender);
    free(env->envid);
    free(env->helo);
    free(env->peer);
    free(env->auth_user);
    memset(env, 0, sizeof(*env));
}

struct env_rcpt *envelope_add_rcpt(struct envelope *env, const char *addr, const char *orig,
                                   const char *target)
{
    if (env->nrcpt == env->rcpt_cap) {
        size_t cap = env->rcpt_cap ? env->rcpt_cap * 2 : 4;
        struct env_rcpt *n = realloc(env->rcpts, cap * sizeof(*n));
        if (!n)
            fatal("out of memory (%zu recipients)", cap);
        env->rcpts = n;
        env->rcpt_cap = cap;
    }
    struct env_rcpt *r = &env->rcpts[env->nrcpt++];
    memset(r, 0, sizeof(*r));
    envelope_set(&r->addr, addr);
    envelope_set(&r->orig, orig);
    envelope_set(&r->orcpt, "");
    envelope_set(&r->error, "");
    envelope_set(&r->target, target);
    return r;
}

void envelope_rcpt_result(struct env_rcpt *r, enum env_rcpt_status status, int64_t now,
                          const char *error)
{
    const char *e = S(error);
    size_t n = strlen(e);
    if (n > ENV_VALUE_MAX) {
        n = ENV_VALUE_MAX;
        while (n > 0 && ((unsigned char)e[n] & 0xC0) == 0x80)
            n--; /* do not cut a UTF-8 sequence in two */
    }
    env_setn(&r->error, e, n);
    r->status = status;
    r->last_attempt = now;
    if (r->attempts < ENV_ATTEMPTS_MAX)
        r->attempts++;
}

size_t envelope_count(const struct envelope *env, enum env_rcpt_status status)
{
    size_t n = 0;
    for (size_t i = 0; i < env->nrcpt; i++)
        n += env->rcpts[i].status == status;
    return n;
}

bool envelope_id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > ENV_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!alnum && (i == 0 || (c != '-' && c != '_')))
            return false;
    }
    return true;
}

const char *envelope_status_name(enum env_rcpt_status s)
{
    switch (s) {
    case ENV_RCPT_PENDING:
        return "pending";
    case ENV_RCPT_SENT:
        return "sent";
    case ENV_RCPT_FAILED:
        return "failed";
    }
    return "?";
}

/* ---- formatting ------------------------------------------------------ */

static bool needs_escape(unsigned char c)
{
    return c < 0x20 || c == 0x7f || c == '%';
}

static void put_value(struct buf *b, const char *v)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(v);
    size_t run = 0; /* start of the pending run of literal octets */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        /* a space at either end is escaped so that an editor cannot lose it */
        if (needs_escape(c) || (c == ' ' && (i == 0 || i == n - 1))) {
            buf_append(b, v + run, i - run);
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            buf_append(b, e, 3);
            run = i + 1;
        }
    }
    buf_append(b, v + run, n - run);
}

static void put(struct buf *b, const char *key, const char *val)
{
    buf_append(b, key, strlen(key));
    buf_append(b, " ", 1);
    put_value(b, val);
    buf_append(b, "\n", 1);
}

static void put_opt(struct buf *b, const char *key, const char *val)
{
    if (val && *val)
        put(b, key, val);
}

static void put_num(struct buf *b, const char *key, uint64_t v)
{
    char s[24];
    snprintf(s, sizeof(s), "%llu", (unsigned long long)v);
    put(b, key, s);
}

static void put_bool(struct buf *b, const char *key, bool v)
{
    put(b, key, v ? "yes" : "no");
}

static const unsigned notify_known = NOTIFY_NEVER | NOTIFY_SUCCESS | NOTIFY_FAILURE | NOTIFY_DELAY;

static bool notify_valid(unsigned n)
{
    return (n & ~notify_known) == 0 && (!(n & NOTIFY_NEVER) || n == NOTIFY_NEVER);
}

static void put_notify(struct buf *b, unsigned n)
{
    char s[32] = "";
    if (n == 0)
        return;
    if (n & NOTIFY_NEVER)
        strcpy(s, "never");
    if (n & NOTIFY_SUCCESS)
        strcat(s, "success,");
    if (n & NOTIFY_FAILURE)
        strcat(s, "failure,");
    if (n & NOTIFY_DELAY)
        strcat(s, "delay,");
    size_t l = strlen(s);
    if (l > 0 && s[l - 1] == ',')
        s[l - 1] = '\0';
    put(b, "notify", s);
}

static bool str_ok(const char *s)
{
    return strlen(S(s)) <= ENV_VALUE_MAX;
}

static bool time_ok(int64_t t)
{
    return t >= 0 && t <= ENV_TIME_MAX;
}

static bool format_check(const struct envelope *env)
{
    if (!envelope_id_valid(env->id) || env->nrcpt == 0 || env->nrcpt > ENV_RCPT_MAX)
        return false;
    /* the sender is written inside <>: two octets of the budget */
    if (strlen(S(env->sender)) + 2 > ENV_VALUE_MAX)
        return false;
    if (!str_ok(env->envid) || !str_ok(env->helo) || !str_ok(env->peer) || !str_ok(env->auth_user))
        return false;
    if (!time_ok(env->created) || !time_ok(env->next_attempt))
        return false;
    if (env->msg_sum && env->msg_size > ENV_MSG_SIZE_MAX)
        return false;
    if (env->ret != RET_NONE && env->ret != RET_FULL && env->ret != RET_HDRS)
        return false;
    for (size_t i = 0; i < env->nrcpt; i++) {
        const struct env_rcpt *r = &env->rcpts[i];
        if (!r->addr || !*r->addr || !str_ok(r->addr) || !str_ok(r->orig) || !str_ok(r->orcpt) ||
            !str_ok(r->error) || !str_ok(r->target))
            return false;
        if (!notify_valid(r->notify) || !time_ok(r->last_attempt) || r->attempts > ENV_ATTEMPTS_MAX)
            return false;
        if (r->status != ENV_RCPT_PENDING && r->status != ENV_RCPT_SENT &&
            r->status != ENV_RCPT_FAILED)
            return false;
    }
    return true;
}

int envelope_format(const struct envelope *env, struct buf *b)
{
    if (!format_check(env))
        return -1;
    char line[32];
    snprintf(line, sizeof(line), "%s %d\n", ENV_MAGIC, env->msg_sum ? ENV_VERSION : 1);
    buf_append(b, line, strlen(line));
    put(b, "id", env->id);
    put_num(b, "created", (uint64_t)env->created);
    put_num(b, "next-attempt", (uint64_t)env->next_attempt);
    if (env->msg_sum) {
        put_num(b, "msg-size", env->msg_size);
        snprintf(line, sizeof(line), "%08x", (unsigned)env->msg_crc);
        put(b, "msg-crc32c", line);
    }
    /* the sender inside <>, so that the null sender reads as itself */
    buf_append(b, "sender <", 8);
    put_value(b, S(env->sender));
    buf_append(b, ">\n", 2);
    if (env->ret != RET_NONE)
        put(b, "ret", env->ret == RET_HDRS ? "hdrs" : "full");
    put_opt(b, "envid", env->envid);
    put_bool(b, "smtputf8", env->smtputf8);
    put_bool(b, "8bitmime", env->eightbitmime);
    put_bool(b, "delay-warned", env->delay_warned);
    put_opt(b, "helo", env->helo);
    put_opt(b, "peer", env->peer);
    put_opt(b, "auth-user", env->auth_user);
    for (size_t i = 0; i < env->nrcpt; i++) {
        const struct env_rcpt *r = &env->rcpts[i];
        put(b, "rcpt", r->addr);
        put_opt(b, "orig", r->orig);
        put_opt(b, "orcpt", r->orcpt);
        put_notify(b, r->notify);
        put_opt(b, "target", r->target);
        put(b, "status", envelope_status_name(r->status));
        put_num(b, "attempts", r->attempts);
        put_num(b, "last-attempt", (uint64_t)r->last_attempt);
        put_opt(b, "error", r->error);
    }
    buf_append(b, "end\n", 4);
    return 0;
}

/* ---- parsing --------------------------------------------------------- */

enum env_key {
    /* message section */
    K_ID,
    K_CREATED,
    K_NEXT,
    K_SENDER,
    K_RET,
    K_ENVID,
    K_UTF8,
    K_8BIT,
    K_WARNED,
    K_HELO,
    K_PEER,
    K_AUTH,
    K_MSGSIZE,
    K_MSGCRC,
    /* recipient section */
    K_RCPT,
    K_ORIG,
    K_ORCPT,
    K_NOTIFY,
    K_TARGET,
    K_STATUS,
    K_ATTEMPTS,
    K_LAST,
    K_ERROR,
    K__COUNT
};

static const char *const key_names[K__COUNT] = {
    [K_ID] = "id",
    [K_CREATED] = "created",
    [K_NEXT] = "next-attempt",
    [K_SENDER] = "sender",
    [K_RET] = "ret",
    [K_ENVID] = "envid",
    [K_UTF8] = "smtputf8",
    [K_8BIT] = "8bitmime",
    [K_WARNED] = "delay-warned",
    [K_HELO] = "helo",
    [K_PEER] = "peer",
    [K_AUTH] = "auth-user",
    [K_MSGSIZE] = "msg-size",
    [K_MSGCRC] = "msg-crc32c",
    [K_RCPT] = "rcpt",
    [K_ORIG] = "orig",
    [K_ORCPT] = "orcpt",
    [K_NOTIFY] = "notify",
    [K_TARGET] = "target",
    [K_STATUS] = "status",
    [K_ATTEMPTS] = "attempts",
    [K_LAST] = "last-attempt",
    [K_ERROR] = "error",
};

struct parser {
    struct envelope *env;
    char *why;
    size_t whylen;
    unsigned line;
    uint32_t seen; /* keys seen in the current section (bit per enum env_key) */
    char val[ENV_VALUE_MAX + 1];
    size_t vlen;
};

__attribute__((format(printf, 2, 3))) static int fail(struct parser *p, const char *fmt, ...)
{
    if (p->why && p->whylen > 0) {
        int n = snprintf(p->why, p->whylen, "line %u: ", p->line);
        if (n >= 0 && (size_t)n < p->whylen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(p->why + n, p->whylen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return ENV_CORRUPT;
}

/* A printable copy of at most 32 octets of s for an error message. */
static void shown(const char *s, size_t n, char out[36])
{
    size_t k = n < 32 ? n : 32;
    for (size_t i = 0; i < k; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
    }
    strcpy(out + k, n > k ? "..." : "");
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decode an escaped value into p->val. */
static int decode(struct parser *p, const char *s, size_t n)
{
    p->vlen = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return fail(p, "raw control character 0x%02x in a value", c);
        if (c == '%') {
            if (n - i < 3 || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
                return fail(p, "malformed %%XX escape");
            c = (unsigned char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            if (c == 0)
                return fail(p, "NUL (%%00) in a value");
            i += 2;
        }
        if (p->vlen >= ENV_VALUE_MAX)
            return fail(p, "value longer than %d octets", ENV_VALUE_MAX);
        p->val[p->vlen++] = (char)c;
    }
    p->val[p->vlen] = '\0';
    return ENV_OK;
}

static int parse_time(struct parser *p, const char *key, int64_t *out)
{
    uint64_t v;
    if (num_parse_u64(p->val, ENV_TIME_MAX, &v) < 0)
        return fail(p, "%s: not a time (Unix seconds)", key);
    *out = (int64_t)v;
    return ENV_OK;
}

static int parse_bool(struct parser *p, const char *key, bool *out)
{
    if (strcmp(p->val, "yes") == 0)
        *out = true;
    else if (strcmp(p->val, "no") == 0)
        *out = false;
    else
        return fail(p, "%s: expected yes or no", key);
    return ENV_OK;
}

static int parse_notify(struct parser *p, unsigned *out)
{
    unsigned n = 0;
    const char *s = p->val;
    for (;;) {
        size_t l = strcspn(s, ",");
        unsigned bit = 0;
        if (l == 5 && strncmp(s, "never", 5) == 0)
            bit = NOTIFY_NEVER;
        else if (l == 7 && strncmp(s, "success", 7) == 0)
            bit = NOTIFY_SUCCESS;
        else if (l == 7 && strncmp(s, "failure", 7) == 0)
            bit = NOTIFY_FAILURE;
        else if (l == 5 && strncmp(s, "delay", 5) == 0)
            bit = NOTIFY_DELAY;
        if (bit == 0 || (n & bit))
            return fail(p, "notify: expected never or a list of success, failure, delay");
        n |= bit;
        if (s[l] == '\0')
            break;
        s += l + 1;
    }
    if (!notify_valid(n))
        return fail(p, "notify: never with other values");
    *out = n;
    return ENV_OK;
}

static int field(struct parser *p, enum env_key k)
{
    struct envelope *env = p->env;
    struct env_rcpt *r = env->nrcpt ? &env->rcpts[env->nrcpt - 1] : NULL;
    const char *name = key_names[k];
    uint64_t v;

    if (k < K_RCPT && env->nrcpt > 0)
        return fail(p, "%s after the first rcpt", name);
    if (k > K_RCPT && !r)
        return fail(p, "%s before any rcpt", name);
    if (k == K_RCPT)
        p->seen &= (1u << K_RCPT) - 1; /* a new recipient section */
    else if (p->seen & (1u << k))
        return fail(p, "%s given twice", name);
    p->seen |= 1u << k;

    switch (k) {
    case K_ID:
        if (!envelope_id_valid(p->val))
            return fail(p, "id: not a valid queue id");
        memcpy(env->id, p->val, p->vlen + 1);
        return ENV_OK;
    case K_CREATED:
        return parse_time(p, name, &env->created);
    case K_NEXT:
        return parse_time(p, name, &env->next_attempt);
    case K_SENDER:
        if (p->vlen < 2 || p->val[0] != '<' || p->val[p->vlen - 1] != '>')
            return fail(p, "sender: expected <address> or <>");
        env_setn(&env->sender, p->val + 1, p->vlen - 2);
        return ENV_OK;
    case K_RET:
        if (strcmp(p->val, "full") == 0)
            env->ret = RET_FULL;
        else if (strcmp(p->val, "hdrs") == 0)
            env->ret = RET_HDRS;
        else
            return fail(p, "ret: expected full or hdrs");
        return ENV_OK;
    case K_ENVID:
        env_setn(&env->envid, p->val, p->vlen);
        return ENV_OK;
    case K_UTF8:
        return parse_bool(p, name, &env->smtputf8);
    case K_8BIT:
        return parse_bool(p, name, &env->eightbitmime);
    case K_WARNED:
        return parse_bool(p, name, &env->delay_warned);
    case K_HELO:
        env_setn(&env->helo, p->val, p->vlen);
        return ENV_OK;
    case K_PEER:
        env_setn(&env->peer, p->val, p->vlen);
        return ENV_OK;
    case K_AUTH:
        env_setn(&env->auth_user, p->val, p->vlen);
        return ENV_OK;
    case K_MSGSIZE:
        if (env->version < 2)
            return fail(p, "msg-size in a version %d envelope", env->version);
        if (num_parse_u64(p->val, ENV_MSG_SIZE_MAX, &v) < 0)
            return fail(p, "msg-size: not a size up to %llu octets",
                        (unsigned long long)ENV_MSG_SIZE_MAX);
        env->msg_size = v;
        return ENV_OK;
    case K_MSGCRC: {
        uint32_t c = 0;
        if (env->version < 2)
            return fail(p, "msg-crc32c in a version %d envelope", env->version);
        if (p->vlen != 8)
            return fail(p, "msg-crc32c: expected 8 hexadecimal digits");
        for (size_t i = 0; i < 8; i++) {
            int h = hexval(p->val[i]);
            if (h < 0)
                return fail(p, "msg-crc32c: expected 8 hexadecimal digits");
            c = c << 4 | (uint32_t)h;
        }
        env->msg_crc = c;
        return ENV_OK;
    }
    case K_RCPT:
        if (p->vlen == 0)
            return fail(p, "rcpt: empty address");
        if (env->nrcpt >= ENV_RCPT_MAX)
            return fail(p, "more than %d recipients", ENV_RCPT_MAX);
        envelope_add_rcpt(env, p->val, NULL, NULL);
        return ENV_OK;
    case K_ORIG:
        env_setn(&r->orig, p->val, p->vlen);
        return ENV_OK;
    case K_ORCPT:
        env_setn(&r->orcpt, p->val, p->vlen);
        return ENV_OK;
    case K_NOTIFY:
        return parse_notify(p, &r->notify);
    case K_TARGET:
        env_setn(&r->target, p->val, p->vlen);
        return ENV_OK;
    case K_STATUS:
        if (strcmp(p->val, "pending") == 0)
            r->status = ENV_RCPT_PENDING;
        else if (strcmp(p->val, "sent") == 0)
            r->status = ENV_RCPT_SENT;
        else if (strcmp(p->val, "failed") == 0)
            r->status = ENV_RCPT_FAILED;
        else
            return fail(p, "status: expected pending, sent or failed");
        return ENV_OK;
    case K_ATTEMPTS:
        if (num_parse_u64(p->val, ENV_ATTEMPTS_MAX, &v) < 0)
            return fail(p, "attempts: not a number up to %u", ENV_ATTEMPTS_MAX);
        r->attempts = (unsigned)v;
        return ENV_OK;
    case K_LAST:
        return parse_time(p, name, &r->last_attempt);
    case K_ERROR:
        env_setn(&r->error, p->val, p->vlen);
        return ENV_OK;
    case K__COUNT:
        break;
    }
    return fail(p, "internal: unhandled key");
}

/* The first line: "tern-envelope VERSION". */
static int magic_line(struct parser *p, const char *s, size_t n)
{
    size_t ml = strlen(ENV_MAGIC);
    if (n < ml + 2 || memcmp(s, ENV_MAGIC, ml) != 0 || s[ml] != ' ')
        return fail(p, "not a tern envelope (expected \"%s %d\")", ENV_MAGIC, ENV_VERSION);
    char v[16];
    size_t vl = n - ml - 1;
    if (vl >= sizeof(v))
        return fail(p, "unsupported envelope version");
    memcpy(v, s + ml + 1, vl);
    v[vl] = '\0';
    uint64_t ver;
    if (num_parse_u64(v, 1000000, &ver) < 0)
        return fail(p, "malformed envelope version");
    if (ver < ENV_VERSION_MIN || ver > ENV_VERSION)
        return fail(p, "unsupported envelope version %llu (this tern reads %d to %d)",
                    (unsigned long long)ver, ENV_VERSION_MIN, ENV_VERSION);
    p->env->version = (int)ver;
    return ENV_OK;
}

/* Could s[0..n) be the start of a magic line?  (A file cut within its first line.) */
static bool magic_prefix(const char *s, size_t n)
{
    for (int v = ENV_VERSION_MIN; v <= ENV_VERSION; v++) {
        char m[32];
        snprintf(m, sizeof(m), "%s %d", ENV_MAGIC, v);
        if (n <= strlen(m) && memcmp(s, m, n) == 0)
            return true;
    }
    return false;
}

static int parse_line(struct parser *p, const char *s, size_t n)
{
    if (p->line == 1)
        return magic_line(p, s, n);
    size_t kl = 0;
    while (kl < n && s[kl] != ' ')
        kl++;
    enum env_key k = K__COUNT;
    for (int i = 0; i < K__COUNT; i++) {
        if (strlen(key_names[i]) == kl && memcmp(key_names[i], s, kl) == 0) {
            k = (enum env_key)i;
            break;
        }
    }
    if (k == K__COUNT) {
        char show[36];
        shown(s, kl, show);
        return fail(p, "unknown key \"%s\"", show);
    }
    size_t vs = kl < n ? kl + 1 : n;
    int rc = decode(p, s + vs, n - vs);
    if (rc != ENV_OK)
        return rc;
    return field(p, k);
}

int envelope_parse(const char *data, size_t len, struct envelope *env, char *why, size_t whylen)
{
    static struct parser zero;
    struct parser *p = malloc(sizeof(*p));
    if (!p)
        fatal("out of memory (envelope parser)");
    *p = zero;
    p->env = env;
    p->why = why;
    p->whylen = whylen;
    if (why && whylen)
        why[0] = '\0';
    envelope_init(env);

    int rc = ENV_OK;
    bool ended = false;
    size_t pos = 0;
    while (pos < len) {
        p->line++;
        const char *s = data + pos;
        const char *nl = memchr(s, '\n', len - pos);
        if (ended) {
            rc = fail(p, "data after the end line");
            goto out;
        }
        if (!nl) {
            /* the last line has no LF: cut short, unless it cannot be a start */
            if (p->line == 1 && !magic_prefix(s, len - pos)) {
                rc = fail(p, "not a tern envelope");
            } else {
                fail(p, "cut short (no end line)");
                rc = ENV_INCOMPLETE;
            }
            goto out;
        }
        size_t n = (size_t)(nl - s);
        pos += n + 1;
        if (p->line > 1 && n == 3 && memcmp(s, "end", 3) == 0) {
            ended = true;
            continue;
        }
        rc = parse_line(p, s, n);
        if (rc != ENV_OK)
            goto out;
    }
    if (!ended) {
        p->line++;
        fail(p, "cut short (no end line)");
        rc = ENV_INCOMPLETE;
        goto out;
    }
    static const enum env_key required[] = {K_ID, K_CREATED, K_SENDER};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        if (!(p->seen & (1u << required[i]))) {
            rc = fail(p, "no %s line", key_names[required[i]]);
            goto out;
        }
    }
    if (env->nrcpt == 0) {
        rc = fail(p, "no rcpt line");
        goto out;
    }
    if (env->version >= 2) {
        if (!(p->seen & (1u << K_MSGSIZE)) || !(p->seen & (1u << K_MSGCRC))) {
            rc = fail(p, "no msg-size or msg-crc32c line (required in version %d)", env->version);
            goto out;
        }
        env->msg_sum = true;
    }
out:
    free(p);
    return rc;
}

static bool streq(const char *a, const char *b)
{
    return strcmp(S(a), S(b)) == 0;
}

bool envelope_equal(const struct envelope *a, const struct envelope *b)
{
    if (strcmp(a->id, b->id) != 0 || !streq(a->sender, b->sender) || a->created != b->created ||
        a->next_attempt != b->next_attempt || a->ret != b->ret || !streq(a->envid, b->envid) ||
        a->smtputf8 != b->smtputf8 || a->eightbitmime != b->eightbitmime ||
        !streq(a->helo, b->helo) || !streq(a->peer, b->peer) ||
        !streq(a->auth_user, b->auth_user) || a->delay_warned != b->delay_warned ||
        a->nrcpt != b->nrcpt || a->msg_sum != b->msg_sum)
        return false;
    if (a->msg_sum && (a->msg_size != b->msg_size || a->msg_crc != b->msg_crc))
        return false;
    for (size_t i = 0; i < a->nrcpt; i++) {
        const struct env_rcpt *x = &a->rcpts[i], *y = &b->rcpts[i];
        if (!streq(x->addr, y->addr) || !streq(x->orig, y->orig) || !streq(x->orcpt, y->orcpt) ||
            x->notify != y->notify || x->status != y->status || x->attempts != y->attempts ||
            x->last_attempt != y->last_attempt || !streq(x->error, y->error) ||
            !streq(x->target, y->target))
            return false;
    }
    return true;
}
