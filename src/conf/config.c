/*
 * config.c - tern.conf through inih, with every problem reported by line.
 *
 * inih (Debian's build) calls its handler without a line number, and says
 * nothing about most malformed lines beyond "the first error was on line
 * N".  So the text is fed to ini_parse_stream() through our own reader,
 * which counts lines, refuses over-long lines and NUL bytes, tracks the
 * [section] itself, and notices afterwards every non-blank line the
 * handler was not called for (inih found no "key = value" in it).  The
 * handler then knows the exact line of every key.  inih's options are
 * process globals in this build: they are set before each parse (the
 * config is only ever parsed from one thread: start-up and SIGHUP).
 *
 * A key table maps (section, key) to a setter that validates the value;
 * cross-key rules (TLS for submission ports, mda_command for delivery =
 * mda, delay_warning < give_up...) run once the whole file is read.
 * Nothing is allocated in struct conf; errors are strings owned by the
 * struct conf_errors.  This file never opens anything but the config file
 * and the TLS files it names (to check they are readable).  conf_load()
 * also checks that [server] user exists and that the files it names are
 * protected: secrets (TLS key, smarthost password) readable by nobody
 * else, tern.conf writable by nobody else, each owned by root or the user.
 */
#include "conf/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include "core/address.h"
#include "core/lmtpaddr.h"
#include "core/log.h"
#include "core/netaddr.h"
#include "core/num.h"
#include "smtp/httpmetrics.h"

/* ---- errors ------------------------------------------------------------ */

void conf_error(struct conf_errors *e, const char *file, unsigned line, const char *fmt, ...)
{
    char what[1024], *s;
    va_list ap;
    int n;

    if (e->n >= CONF_ERRORS_MAX) {
        e->truncated = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    for (char *p = what; *p; p++) /* quoted input never moves a terminal's cursor */
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    if (line > 0)
        n = asprintf(&s, "%s:%u: %s", file && *file ? file : "-", line, what);
    else
        n = asprintf(&s, "%s: %s", file && *file ? file : "-", what);
    if (n < 0)
        fatal("out of memory");
    if (e->n % 16 == 0) {
        char **v = realloc(e->v, (e->n + 16) * sizeof(*v));
        if (!v)
            fatal("out of memory");
        e->v = v;
    }
    e->v[e->n++] = s;
}

void conf_warn(struct conf_errors *e, const char *file, const char *fmt, ...)
{
    char what[1024], *s;
    va_list ap;

    if (e->nw >= CONF_ERRORS_MAX)
        return;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    for (char *p = what; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    if (asprintf(&s, "%s: %s", file && *file ? file : "-", what) < 0)
        fatal("out of memory");
    if (e->nw % 16 == 0) {
        char **w = realloc(e->w, (e->nw + 16) * sizeof(*w));
        if (!w)
            fatal("out of memory");
        e->w = w;
    }
    e->w[e->nw++] = s;
}

void conf_errors_free(struct conf_errors *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->v[i]);
    free(e->v);
    for (size_t i = 0; i < e->nw; i++)
        free(e->w[i]);
    free(e->w);
    e->v = NULL;
    e->n = 0;
    e->w = NULL;
    e->nw = 0;
    e->truncated = false;
}

/* ---- value parsers --------------------------------------------------------- */

#define WHY_MAX 256

static int conf_copy(char *dst, size_t size, const char *v, char *why)
{
    size_t n = strlen(v);
    if (n >= size) {
        snprintf(why, WHY_MAX, "value longer than %zu characters", size - 1);
        return -1;
    }
    memcpy(dst, v, n + 1);
    return 0;
}

/* A host name: dot-separated labels, as in a mail domain (no literal). */
static int conf_hostname_ok(const char *v)
{
    char tmp[CONF_HOST_MAX + 16];
    struct mailaddr a;
    int n = snprintf(tmp, sizeof(tmp), "postmaster@%s", v);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -1;
    if (addr_parse_mailbox(tmp, (size_t)n, 0, &a) != ADDR_OK || a.is_literal)
        return -1;
    return 0;
}

static int set_hostname(struct conf *c, const char *v, char *why)
{
    if (!*v || conf_hostname_ok(v) < 0) {
        snprintf(why, WHY_MAX, "'%s' is not a valid host name", v);
        return -1;
    }
    return conf_copy(c->hostname, sizeof(c->hostname), v, why);
}

static int set_path(char *dst, const char *v, char *why)
{
    if (!*v) {
        snprintf(why, WHY_MAX, "empty path");
        return -1;
    }
    return conf_copy(dst, CONF_STR_MAX, v, why);
}

static int set_data_dir(struct conf *c, const char *v, char *why)
{
    return set_path(c->data_dir, v, why);
}

/* A user or group name: what useradd accepts, without a leading '-'. */
static int set_name(char *dst, size_t size, const char *v, char *why)
{
    size_t n = strlen(v);
    bool ok = n > 0 && n < size && v[0] != '-';
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)v[i]) || strchr("._-", v[i]) || (v[i] == '$' && i == n - 1);
    if (!ok) {
        snprintf(why, WHY_MAX, "'%.64s' is not a valid name", v);
        return -1;
    }
    memcpy(dst, v, n + 1);
    return 0;
}

static int set_user(struct conf *c, const char *v, char *why)
{
    return set_name(c->user, sizeof(c->user), v, why);
}

static int set_group(struct conf *c, const char *v, char *why)
{
    return set_name(c->group, sizeof(c->group), v, why);
}

static int set_size(uint64_t *dst, const char *v, uint64_t min, uint64_t max, char *why)
{
    uint64_t n;
    if (num_parse_size(v, max, &n) < 0 || n < min) {
        snprintf(why, WHY_MAX,
                 "'%s' is not a size from %llu to %llu octets (digits, optional K, M or G)", v,
                 (unsigned long long)min, (unsigned long long)max);
        return -1;
    }
    *dst = n;
    return 0;
}

static int set_count(uint64_t *dst, const char *v, uint64_t min, uint64_t max, char *why)
{
    uint64_t n;
    if (num_parse_u64(v, max, &n) < 0 || n < min) {
        snprintf(why, WHY_MAX, "'%s' is not a whole number from %llu to %llu", v,
                 (unsigned long long)min, (unsigned long long)max);
        return -1;
    }
    *dst = n;
    return 0;
}

#define MS_SECOND 1000ULL
#define MS_DAY (86400ULL * 1000)

static int set_duration(uint64_t *dst, const char *v, uint64_t min, uint64_t max, char *why)
{
    uint64_t ms;
    if (num_parse_duration_ms(v, &ms) < 0 || ms < min || ms > max) {
        snprintf(why, WHY_MAX,
                 "'%s' is not a duration from %llus to %llud (digits with ms, s, m, h or d)", v,
                 (unsigned long long)(min / 1000), (unsigned long long)(max / MS_DAY));
        return -1;
    }
    *dst = ms;
    return 0;
}

static int set_max_size(struct conf *c, const char *v, char *why)
{
    return set_size(&c->max_size, v, 1024, 2ULL << 30, why);
}

static int set_max_rcpts(struct conf *c, const char *v, char *why)
{
    uint64_t n;
    if (set_count(&n, v, 1, 100000, why) < 0)
        return -1;
    c->max_rcpts = (uint32_t)n;
    return 0;
}

/* Octets of a DATA line, CRLF excluded: RFC 5321's 998 up to 64 KiB. */
static int set_max_line_length(struct conf *c, const char *v, char *why)
{
    uint64_t n;
    if (set_size(&n, v, 998, 65536, why) < 0)
        return -1;
    c->max_line_length = (uint32_t)n;
    return 0;
}

static int set_max_errors(struct conf *c, const char *v, char *why)
{
    uint64_t n;
    if (set_count(&n, v, 1, 1000, why) < 0)
        return -1;
    c->max_errors = (uint32_t)n;
    return 0;
}

static int set_idle_timeout(struct conf *c, const char *v, char *why)
{
    return set_duration(&c->idle_timeout_ms, v, MS_SECOND, MS_DAY, why);
}

static int set_command_timeout(struct conf *c, const char *v, char *why)
{
    return set_duration(&c->command_timeout_ms, v, MS_SECOND, MS_DAY, why);
}

static int set_data_timeout(struct conf *c, const char *v, char *why)
{
    return set_duration(&c->data_timeout_ms, v, MS_SECOND, MS_DAY, why);
}

static int set_session_timeout(struct conf *c, const char *v, char *why)
{
    return set_duration(&c->session_timeout_ms, v, MS_SECOND, 7 * MS_DAY, why);
}

static int set_max_sessions(struct conf *c, const char *v, char *why)
{
    uint64_t n;
    if (set_count(&n, v, 1, 100000, why) < 0)
        return -1;
    c->max_sessions = (uint32_t)n;
    return 0;
}

static int set_max_sessions_per_ip(struct conf *c, const char *v, char *why)
{
    uint64_t n;
    if (set_count(&n, v, 0, 100000, why) < 0)
        return -1;
    c->max_sessions_per_ip = (uint32_t)n;
    return 0;
}

static int set_max_connect_rate_per_ip(struct conf *c, const char *v, char *why)
{
    uint64_t n;
    if (set_count(&n, v, 0, 1000000, why) < 0)
        return -1;
    c->max_connect_rate_per_ip = (uint32_t)n;
    return 0;
}

static int set_body_memory(struct conf *c, const char *v, char *why)
{
    return set_size(&c->body_memory, v, 0, 1ULL << 40, why);
}

static int set_auth_max_failures(struct conf *c, const char *v, char *why)
{
    uint64_t n;
    if (set_count(&n, v, 1, 1000, why) < 0)
        return -1;
    c->auth_max_failures = (uint32_t)n;
    return 0;
}

static int set_auth_lockout(struct conf *c, const char *v, char *why)
{
    return set_duration(&c->auth_lockout_ms, v, MS_SECOND, MS_DAY, why);
}

/* Space-separated words of v, each at most wmax-1 characters, at most max of them. */
static int conf_words(const char *v, char words[][64], size_t max, size_t *n, char *why)
{
    *n = 0;
    while (*v) {
        while (*v == ' ' || *v == '\t')
            v++;
        if (!*v)
            break;
        size_t len = strcspn(v, " \t");
        if (*n == max) {
            snprintf(why, WHY_MAX, "more than %zu entries", max);
            return -1;
        }
        if (len >= 64) {
            snprintf(why, WHY_MAX, "'%.20s...' is too long", v);
            return -1;
        }
        memcpy(words[*n], v, len);
        words[*n][len] = '\0';
        (*n)++;
        v += len;
    }
    return 0;
}

static int set_listen(struct conf_listeners *l, const char *v, char *why)
{
    char words[CONF_LISTEN_MAX][64];
    size_t n;

    l->n = 0;
    if (strcasecmp(v, "off") == 0 || strcasecmp(v, "none") == 0)
        return 0;
    if (conf_words(v, words, CONF_LISTEN_MAX, &n, why) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        struct conf_listen *x = &l->v[l->n];
        const char *reason = "bad address";
        if (netaddr_parse(words[i], &x->ss, &x->len, &reason) < 0) {
            snprintf(why, WHY_MAX, "'%s': %s (expected host:port, [v6]:port or off)", words[i],
                     reason);
            l->n = 0;
            return -1;
        }
        for (size_t j = 0; j < l->n; j++) {
            if (l->v[j].len == x->len && memcmp(&l->v[j].ss, &x->ss, x->len) == 0) {
                snprintf(why, WHY_MAX, "'%s' is listed twice", words[i]);
                l->n = 0;
                return -1;
            }
        }
        snprintf(x->text, sizeof(x->text), "%s", words[i]);
        l->n++;
    }
    return 0;
}

static int set_smtp(struct conf *c, const char *v, char *why)
{
    return set_listen(&c->smtp, v, why);
}

static int set_submission(struct conf *c, const char *v, char *why)
{
    return set_listen(&c->submission, v, why);
}

static int set_submissions(struct conf *c, const char *v, char *why)
{
    return set_listen(&c->submissions, v, why);
}

static int set_tls_cert(struct conf *c, const char *v, char *why)
{
    return set_path(c->tls_cert, v, why);
}

static int set_tls_key(struct conf *c, const char *v, char *why)
{
    return set_path(c->tls_key, v, why);
}

static int set_max_items(struct conf *c, const char *v, char *why)
{
    return set_count(&c->queue_max_items, v, 1, 100000000, why);
}

static int set_min_free(struct conf *c, const char *v, char *why)
{
    return set_size(&c->queue_min_free, v, 0, 1ULL << 50, why);
}

static int set_retry(struct conf *c, const char *v, char *why)
{
    char words[CONF_RETRY_MAX][64];
    uint64_t ms[CONF_RETRY_MAX];
    size_t n;

    if (conf_words(v, words, CONF_RETRY_MAX, &n, why) < 0)
        return -1;
    if (n == 0) {
        snprintf(why, WHY_MAX, "empty list (give at least one delay, e.g. \"5m 30m 1h\")");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (set_duration(&ms[i], words[i], MS_SECOND, 7 * MS_DAY, why) < 0)
            return -1;
        if (i > 0 && ms[i] < ms[i - 1]) {
            snprintf(why, WHY_MAX,
                     "'%s' is shorter than the delay before it (delays must not "
                     "decrease)",
                     words[i]);
            return -1;
        }
    }
    memcpy(c->retry_ms, ms, n * sizeof(ms[0]));
    c->n_retry = n;
    return 0;
}

static int set_give_up(struct conf *c, const char *v, char *why)
{
    return set_duration(&c->give_up_ms, v, MS_SECOND, 60 * MS_DAY, why);
}

static int set_delay_warning(struct conf *c, const char *v, char *why)
{
    if (strcasecmp(v, "off") == 0) {
        c->delay_warning_ms = 0;
        return 0;
    }
    return set_duration(&c->delay_warning_ms, v, MS_SECOND, 60 * MS_DAY, why);
}

static int set_delivery(struct conf *c, const char *v, char *why)
{
    if (strcasecmp(v, "maildir") == 0)
        c->delivery = CONF_DELIVERY_MAILDIR;
    else if (strcasecmp(v, "mda") == 0)
        c->delivery = CONF_DELIVERY_MDA;
    else if (strcasecmp(v, "lmtp") == 0)
        c->delivery = CONF_DELIVERY_LMTP;
    else {
        snprintf(why, WHY_MAX, "'%s' is not 'maildir', 'mda' or 'lmtp'", v);
        return -1;
    }
    return 0;
}

/*
 * Check that every %word% of a template is one of names (space-separated
 * list); a lone '%' is not allowed either ("%%" is a literal '%').
 */
static int conf_template_ok(const char *v, const char *names, char *why)
{
    for (const char *p = v; *p; p++) {
        if (*p != '%')
            continue;
        if (p[1] == '%') {
            p++;
            continue;
        }
        const char *end = strchr(p + 1, '%');
        size_t len = end ? (size_t)(end - p - 1) : 0;
        bool known = false;
        if (end && len > 0) {
            for (const char *q = names; *q;) {
                size_t ql = strcspn(q, " "); /* names are written "%name%" */
                if (ql == len + 2 && strncmp(q, p, len + 2) == 0)
                    known = true;
                q += ql;
                while (*q == ' ')
                    q++;
            }
        }
        if (!known) {
            if (end)
                snprintf(why, WHY_MAX, "unknown placeholder '%.*s' (known: %s)",
                         (int)(len + 2 > 40 ? 40 : len + 2), p, names);
            else
                snprintf(why, WHY_MAX, "'%%' without a closing '%%' (write %%%% for a '%%')");
            return -1;
        }
        p = end;
    }
    return 0;
}

static int set_mda_command(struct conf *c, const char *v, char *why)
{
    if (!*v) {
        snprintf(why, WHY_MAX, "empty command");
        return -1;
    }
    if (conf_template_ok(v, "%from% %to% %to_user% %to_domain%", why) < 0)
        return -1;
    return conf_copy(c->mda_command, sizeof(c->mda_command), v, why);
}

static int set_mda_timeout(struct conf *c, const char *v, char *why)
{
    return set_duration(&c->mda_timeout_ms, v, MS_SECOND, MS_DAY, why);
}

static int set_lmtp(struct conf *c, const char *v, char *why)
{
    struct lmtp_endpoint ep;
    if (lmtp_endpoint_parse(v, &ep, why, WHY_MAX) < 0)
        return -1;
    return conf_copy(c->lmtp, sizeof(c->lmtp), v, why);
}

static int set_maildir_path(struct conf *c, const char *v, char *why)
{
    if (!*v) {
        snprintf(why, WHY_MAX, "empty path");
        return -1;
    }
    if (conf_template_ok(v, "%user% %domain%", why) < 0)
        return -1;
    if (!strstr(v, "%user%")) {
        snprintf(why, WHY_MAX, "must contain %%user%% (one Maildir per user)");
        return -1;
    }
    return conf_copy(c->maildir_path, sizeof(c->maildir_path), v, why);
}

static int set_chars(char *dst, const char *v, char *why)
{
    for (const char *p = v; *p; p++) {
        if (!ispunct((unsigned char)*p) || *p == '@' || *p == '"' || *p == '\\' || *p == '%' ||
            *p == '|' || *p == ':' || *p == ',') {
            snprintf(why, WHY_MAX,
                     "'%c' cannot be used here (punctuation only, not @ \" \\ %% | : ,)",
                     isprint((unsigned char)*p) ? *p : '?');
            return -1;
        }
        if (strchr(p + 1, *p)) {
            snprintf(why, WHY_MAX, "'%c' is listed twice", *p);
            return -1;
        }
    }
    return conf_copy(dst, CONF_CHARS_MAX + 1, v, why);
}

static int set_drop_chars(struct conf *c, const char *v, char *why)
{
    return set_chars(c->drop_chars, v, why);
}

static int set_suffix_separators(struct conf *c, const char *v, char *why)
{
    return set_chars(c->suffix_separators, v, why);
}

static int set_default_domain(struct conf *c, const char *v, char *why)
{
    if (!*v || conf_hostname_ok(v) < 0) {
        snprintf(why, WHY_MAX, "'%s' is not a valid domain name", v);
        return -1;
    }
    return conf_copy(c->default_domain, sizeof(c->default_domain), v, why);
}

static int set_senders_must_match(struct conf *c, const char *v, char *why)
{
    if (strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0 || strcmp(v, "1") == 0 ||
        strcasecmp(v, "on") == 0)
        c->senders_must_match = true;
    else if (strcasecmp(v, "false") == 0 || strcasecmp(v, "no") == 0 || strcmp(v, "0") == 0 ||
             strcasecmp(v, "off") == 0)
        c->senders_must_match = false;
    else {
        snprintf(why, WHY_MAX, "'%s' is not true or false", v);
        return -1;
    }
    return 0;
}

/* ---- [admin] ------------------------------------------------------------------ */

static int set_admin_listen(struct conf *c, const char *v, char *why)
{
    return set_listen(&c->admin, v, why);
}

static int set_admin_allow_remote(struct conf *c, const char *v, char *why)
{
    if (strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0 || strcmp(v, "1") == 0 ||
        strcasecmp(v, "on") == 0) {
        c->admin_allow_remote = true;
    } else if (strcasecmp(v, "false") == 0 || strcasecmp(v, "no") == 0 || strcmp(v, "0") == 0 ||
               strcasecmp(v, "off") == 0) {
        c->admin_allow_remote = false;
    } else {
        snprintf(why, WHY_MAX, "'%s' is not true or false", v);
        return -1;
    }
    return 0;
}

/* ---- [mta_sts] ---------------------------------------------------------------- */

static int set_mta_sts_enabled(struct conf *c, const char *v, char *why)
{
    if (strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0 || strcmp(v, "1") == 0 ||
        strcasecmp(v, "on") == 0) {
        c->mta_sts = true;
    } else if (strcasecmp(v, "false") == 0 || strcasecmp(v, "no") == 0 || strcmp(v, "0") == 0 ||
               strcasecmp(v, "off") == 0) {
        c->mta_sts = false;
    } else {
        snprintf(why, WHY_MAX, "'%s' is not yes or no", v);
        return -1;
    }
    return 0;
}

static int set_mta_sts_ca(struct conf *c, const char *v, char *why)
{
    return set_path(c->mta_sts_ca, v, why);
}

static int set_mta_sts_port(struct conf *c, const char *v, char *why)
{
    uint64_t p;
    if (num_parse_u64(v, 65535, &p) < 0 || p == 0) {
        snprintf(why, WHY_MAX, "'%s' is not a port from 1 to 65535", v);
        return -1;
    }
    c->mta_sts_port = (uint32_t)p;
    return 0;
}

/* ---- [dkim] ------------------------------------------------------------------- */

static int set_dkim_sign(struct conf *c, const char *v, char *why)
{
    if (strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0 || strcmp(v, "1") == 0 ||
        strcasecmp(v, "on") == 0) {
        c->dkim_sign = true;
    } else if (strcasecmp(v, "false") == 0 || strcasecmp(v, "no") == 0 || strcmp(v, "0") == 0 ||
               strcasecmp(v, "off") == 0) {
        c->dkim_sign = false;
    } else {
        snprintf(why, WHY_MAX, "'%s' is not yes or no", v);
        return -1;
    }
    return 0;
}

static int set_dkim_keys_dir(struct conf *c, const char *v, char *why)
{
    return set_path(c->dkim_keys_dir, v, why);
}

/* ---- [checks] ------------------------------------------------------------------ */

static int conf_check_word(const char *v, bool honor_ok, int *out, char *why)
{
    static const char *const w[] = {"none", "tag", "reject", "honor"};
    for (int i = 0; i < (honor_ok ? 4 : 3); i++)
        if (strcasecmp(v, w[i]) == 0) {
            *out = i;
            return 0;
        }
    snprintf(why, WHY_MAX, "'%s' is not %s", v,
             honor_ok ? "none, tag, reject or honor" : "none, tag or reject");
    return -1;
}

static int set_check_spf(struct conf *c, const char *v, char *why)
{
    return conf_check_word(v, false, &c->check_spf, why);
}

static int set_check_dkim(struct conf *c, const char *v, char *why)
{
    return conf_check_word(v, false, &c->check_dkim, why);
}

static int set_check_dmarc(struct conf *c, const char *v, char *why)
{
    return conf_check_word(v, true, &c->check_dmarc, why);
}

/* A Maildir++ folder name: letters, digits, '-', '_' and inner dots (sub-folders). */
static int set_quarantine_folder(struct conf *c, const char *v, char *why)
{
    size_t n = strlen(v);
    bool ok = n > 0 && n < sizeof(c->quarantine_folder) && v[0] != '.' && v[n - 1] != '.' &&
              !strstr(v, "..");
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)v[i]) || v[i] == '-' || v[i] == '_' || v[i] == '.';
    if (!ok) {
        snprintf(why, WHY_MAX,
                 "'%.60s' is not a folder name (letters, digits, '-', '_', inner dots; at most 63)",
                 v);
        return -1;
    }
    memcpy(c->quarantine_folder, v, n + 1);
    return 0;
}

static int set_authserv_id(struct conf *c, const char *v, char *why)
{
    size_t n = strlen(v);
    bool ok = n > 0 && n < sizeof(c->authserv_id);
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)v[i]) || v[i] == '-' || v[i] == '_' || v[i] == '.';
    if (!ok) {
        snprintf(why, WHY_MAX, "'%.60s' is not a host name (letters, digits, '-', '_', '.')", v);
        return -1;
    }
    memcpy(c->authserv_id, v, n + 1);
    return 0;
}

/* ---- the key table ------------------------------------------------------ */

enum conf_section {
    SEC_SERVER,
    SEC_LISTEN,
    SEC_TLS,
    SEC_QUEUE,
    SEC_LOCAL,
    SEC_RELAY,
    SEC_REMOTE,
    SEC_ADMIN,
    SEC_MTA_STS,
    SEC_DKIM,
    SEC_CHECKS,
    SEC_N
};

static const char *const conf_sections[SEC_N] = {"server",  "listen", "tls",    "queue",
                                                 "local",   "relay",  "remote", "admin",
                                                 "mta_sts", "dkim",   "checks"};

/* ---- [remote] ---------------------------------------------------------------- */

static int conf_tls_word(const char *v, bool implicit_ok, int *out, char *why)
{
    static const char *const names[] = {"none", "may", "verify", "implicit"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, names[i]) == 0 && (i != CONF_TLS_IMPLICIT || implicit_ok)) {
            *out = i;
            return 0;
        }
    }
    snprintf(why, WHY_MAX, "'%s' is not %s", v,
             implicit_ok ? "none, may, verify or implicit" : "none, may or verify");
    return -1;
}

/* "host:port" or "[addr]:port" (port required) into host / port. */
static int conf_hostport(const char *v, char *host, size_t hsize, char *port, char *why)
{
    const char *colon = strrchr(v, ':');
    uint64_t p;
    if (!colon || colon == v || (size_t)(colon - v) >= hsize ||
        num_parse_u64(colon + 1, 65535, &p) < 0 || p == 0) {
        snprintf(why, WHY_MAX, "'%s' is not host:port", v);
        return -1;
    }
    memcpy(host, v, (size_t)(colon - v));
    host[colon - v] = '\0';
    if (host[0] != '[' && conf_hostname_ok(host) < 0) {
        snprintf(why, WHY_MAX, "'%s': '%s' is not a host name or [address]", v, host);
        return -1;
    }
    snprintf(port, 8, "%u", (unsigned)p);
    return 0;
}

static int set_smarthost(struct conf *c, const char *v, char *why)
{
    if (strcasecmp(v, "off") == 0 || strcasecmp(v, "none") == 0) {
        c->smarthost_host[0] = '\0';
        return 0;
    }
    return conf_hostport(v, c->smarthost_host, sizeof(c->smarthost_host), c->smarthost_port, why);
}

static int set_smarthost_user(struct conf *c, const char *v, char *why)
{
    return conf_copy(c->smarthost_user, sizeof(c->smarthost_user), v, why);
}

static int set_smarthost_password_file(struct conf *c, const char *v, char *why)
{
    return set_path(c->smarthost_password_file, v, why);
}

static int set_smarthost_tls(struct conf *c, const char *v, char *why)
{
    return conf_tls_word(v, true, &c->smarthost_tls, why);
}

static int set_remote_tls(struct conf *c, const char *v, char *why)
{
    return conf_tls_word(v, false, &c->remote_tls, why);
}

static int set_tls_ca(struct conf *c, const char *v, char *why)
{
    return set_path(c->tls_ca, v, why);
}

static int set_dns_servers(struct conf *c, const char *v, char *why)
{
    char words[CONF_LISTEN_MAX][64];
    size_t n;
    c->dns_servers[0] = '\0';
    if (conf_words(v, words, CONF_LISTEN_MAX, &n, why) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        struct sockaddr_storage ss;
        socklen_t len;
        const char *reason;
        char tmp[80];
        /* a bare address means port 53 */
        if (strchr(words[i], ':') &&
            (words[i][0] == '[' || strchr(words[i], ':') == strrchr(words[i], ':')))
            snprintf(tmp, sizeof(tmp), "%.63s", words[i]);
        else
            snprintf(tmp, sizeof(tmp),
                     words[i][0] == '[' || !strchr(words[i], ':') ? "%.63s:53" : "[%.63s]:53",
                     words[i]);
        if (netaddr_parse(tmp, &ss, &len, &reason) < 0) {
            snprintf(why, WHY_MAX, "'%.63s': %s (numeric addresses, optionally with :port)",
                     words[i], reason);
            return -1;
        }
        size_t l = strlen(c->dns_servers);
        snprintf(c->dns_servers + l, sizeof(c->dns_servers) - l, "%s%s", l ? "," : "", tmp);
    }
    return 0;
}

static int set_remote_port(struct conf *c, const char *v, char *why)
{
    uint64_t p;
    if (num_parse_u64(v, 65535, &p) < 0 || p == 0) {
        snprintf(why, WHY_MAX, "'%s' is not a port from 1 to 65535", v);
        return -1;
    }
    snprintf(c->remote_port, sizeof(c->remote_port), "%u", (unsigned)p);
    return 0;
}

static int set_u32(uint32_t *dst, const char *v, uint64_t min, uint64_t max, char *why)
{
    uint64_t n;
    if (set_count(&n, v, min, max, why) < 0)
        return -1;
    *dst = (uint32_t)n;
    return 0;
}

static int set_max_hosts(struct conf *c, const char *v, char *why)
{
    return set_u32(&c->max_hosts, v, 1, 20, why);
}

static int set_concurrency(struct conf *c, const char *v, char *why)
{
    return set_u32(&c->concurrency, v, 1, 64, why);
}

static int set_per_destination(struct conf *c, const char *v, char *why)
{
    return set_u32(&c->per_destination, v, 1, 64, why);
}

static int set_remote_timeout(struct conf *c, const char *v, char *why)
{
    return set_duration(&c->remote_timeout_ms, v, MS_SECOND, 3600 * MS_SECOND, why);
}

/* The override entry of domain, created (no next hop, default TLS) if new. */
static struct conf_route *conf_route_get(struct conf *c, const char *domain, char *why)
{
    for (size_t k = 0; k < c->n_routes; k++)
        if (strcasecmp(c->routes[k].domain, domain) == 0)
            return &c->routes[k];
    if (c->n_routes == CONF_ROUTES_MAX) {
        snprintf(why, WHY_MAX, "more than %d domains", CONF_ROUTES_MAX);
        return NULL;
    }
    struct conf_route *r = &c->routes[c->n_routes++];
    memset(r, 0, sizeof(*r));
    r->tls = -1;
    snprintf(r->domain, sizeof(r->domain), "%.63s", domain);
    for (char *q = r->domain; *q; q++)
        *q = (char)tolower((unsigned char)*q);
    return r;
}

/* "example.com=mx.example.net:25 other.org=[192.0.2.1]:2525" */
static int set_routes(struct conf *c, const char *v, char *why)
{
    char words[CONF_ROUTES_MAX][64];
    size_t n;
    for (size_t i = 0; i < c->n_routes; i++)
        c->routes[i].host[0] = '\0';
    if (conf_words(v, words, CONF_ROUTES_MAX, &n, why) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char *eq = strchr(words[i], '=');
        if (!eq || eq == words[i]) {
            snprintf(why, WHY_MAX, "'%.63s' is not domain=host:port", words[i]);
            return -1;
        }
        *eq = '\0';
        struct conf_route *r = conf_route_get(c, words[i], why);
        if (!r)
            return -1;
        if (conf_hostport(eq + 1, r->host, sizeof(r->host), r->port, why) < 0)
            return -1;
    }
    return 0;
}

/* "example.com=verify legacy.org=none" */
static int set_tls_policy(struct conf *c, const char *v, char *why)
{
    char words[CONF_ROUTES_MAX][64];
    size_t n;
    if (conf_words(v, words, CONF_ROUTES_MAX, &n, why) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char *eq = strchr(words[i], '=');
        int pol;
        if (!eq || eq == words[i]) {
            snprintf(why, WHY_MAX, "'%.63s' is not domain=none|may|verify", words[i]);
            return -1;
        }
        *eq = '\0';
        if (conf_tls_word(eq + 1, false, &pol, why) < 0)
            return -1;
        struct conf_route *r = conf_route_get(c, words[i], why);
        if (!r)
            return -1;
        r->tls = pol;
    }
    return 0;
}

const struct conf_route *conf_route_for(const struct conf *c, const char *domain)
{
    for (size_t i = 0; i < c->n_routes; i++)
        if (strcasecmp(c->routes[i].domain, domain) == 0)
            return &c->routes[i];
    return NULL;
}

struct conf_key {
    enum conf_section section;
    const char *name;
    int (*set)(struct conf *c, const char *v, char *why);
};

enum {
    K_HOSTNAME,
    K_DATA_DIR,
    K_MAX_SIZE,
    K_MAX_RCPTS,
    K_MAX_LINE_LENGTH,
    K_MAX_ERRORS,
    K_IDLE_TIMEOUT,
    K_COMMAND_TIMEOUT,
    K_DATA_TIMEOUT,
    K_SESSION_TIMEOUT,
    K_MAX_SESSIONS,
    K_MAX_SESSIONS_PER_IP,
    K_MAX_CONNECT_RATE_PER_IP,
    K_BODY_MEMORY,
    K_AUTH_MAX_FAILURES,
    K_AUTH_LOCKOUT,
    K_USER,
    K_GROUP,
    K_SMTP,
    K_SUBMISSION,
    K_SUBMISSIONS,
    K_CERT,
    K_KEY,
    K_MAX_ITEMS,
    K_MIN_FREE,
    K_RETRY,
    K_GIVE_UP,
    K_DELAY_WARNING,
    K_DELIVERY,
    K_MDA_COMMAND,
    K_MDA_TIMEOUT,
    K_LMTP,
    K_MAILDIR_PATH,
    K_DROP_CHARS,
    K_SUFFIX_SEPARATORS,
    K_DEFAULT_DOMAIN,
    K_SENDERS_MUST_MATCH,
    K_SMARTHOST,
    K_SMARTHOST_USER,
    K_SMARTHOST_PASSWORD_FILE,
    K_SMARTHOST_TLS,
    K_REMOTE_TLS,
    K_TLS_CA,
    K_DNS_SERVERS,
    K_REMOTE_PORT,
    K_MAX_HOSTS,
    K_CONCURRENCY,
    K_PER_DESTINATION,
    K_REMOTE_TIMEOUT,
    K_ROUTES,
    K_TLS_POLICY,
    K_ADMIN_LISTEN,
    K_ADMIN_ALLOW_REMOTE,
    K_MTA_STS_ENABLED,
    K_MTA_STS_CA,
    K_MTA_STS_PORT,
    K_DKIM_SIGN,
    K_DKIM_KEYS_DIR,
    K_CHECK_SPF,
    K_CHECK_DKIM,
    K_CHECK_DMARC,
    K_QUARANTINE_FOLDER,
    K_AUTHSERV_ID,
    K_N
};

static const struct conf_key conf_keys[K_N] = {
    [K_HOSTNAME] = {SEC_SERVER, "hostname", set_hostname},
    [K_DATA_DIR] = {SEC_SERVER, "data_dir", set_data_dir},
    [K_MAX_SIZE] = {SEC_SERVER, "max_size", set_max_size},
    [K_MAX_RCPTS] = {SEC_SERVER, "max_rcpts", set_max_rcpts},
    [K_MAX_LINE_LENGTH] = {SEC_SERVER, "max_line_length", set_max_line_length},
    [K_MAX_ERRORS] = {SEC_SERVER, "max_errors", set_max_errors},
    [K_IDLE_TIMEOUT] = {SEC_SERVER, "idle_timeout", set_idle_timeout},
    [K_COMMAND_TIMEOUT] = {SEC_SERVER, "command_timeout", set_command_timeout},
    [K_DATA_TIMEOUT] = {SEC_SERVER, "data_timeout", set_data_timeout},
    [K_SESSION_TIMEOUT] = {SEC_SERVER, "session_timeout", set_session_timeout},
    [K_MAX_SESSIONS] = {SEC_SERVER, "max_sessions", set_max_sessions},
    [K_MAX_SESSIONS_PER_IP] = {SEC_SERVER, "max_sessions_per_ip", set_max_sessions_per_ip},
    [K_MAX_CONNECT_RATE_PER_IP] = {SEC_SERVER, "max_connect_rate_per_ip",
                                   set_max_connect_rate_per_ip},
    [K_BODY_MEMORY] = {SEC_SERVER, "body_memory", set_body_memory},
    [K_AUTH_MAX_FAILURES] = {SEC_SERVER, "auth_max_failures", set_auth_max_failures},
    [K_AUTH_LOCKOUT] = {SEC_SERVER, "auth_lockout", set_auth_lockout},
    [K_USER] = {SEC_SERVER, "user", set_user},
    [K_GROUP] = {SEC_SERVER, "group", set_group},
    [K_SMTP] = {SEC_LISTEN, "smtp", set_smtp},
    [K_SUBMISSION] = {SEC_LISTEN, "submission", set_submission},
    [K_SUBMISSIONS] = {SEC_LISTEN, "submissions", set_submissions},
    [K_CERT] = {SEC_TLS, "cert", set_tls_cert},
    [K_KEY] = {SEC_TLS, "key", set_tls_key},
    [K_MAX_ITEMS] = {SEC_QUEUE, "max_items", set_max_items},
    [K_MIN_FREE] = {SEC_QUEUE, "min_free_space", set_min_free},
    [K_RETRY] = {SEC_QUEUE, "retry", set_retry},
    [K_GIVE_UP] = {SEC_QUEUE, "give_up", set_give_up},
    [K_DELAY_WARNING] = {SEC_QUEUE, "delay_warning", set_delay_warning},
    [K_DELIVERY] = {SEC_LOCAL, "delivery", set_delivery},
    [K_MDA_COMMAND] = {SEC_LOCAL, "mda_command", set_mda_command},
    [K_MDA_TIMEOUT] = {SEC_LOCAL, "mda_timeout", set_mda_timeout},
    [K_LMTP] = {SEC_LOCAL, "lmtp", set_lmtp},
    [K_MAILDIR_PATH] = {SEC_LOCAL, "maildir_path", set_maildir_path},
    [K_DROP_CHARS] = {SEC_LOCAL, "drop_chars", set_drop_chars},
    [K_SUFFIX_SEPARATORS] = {SEC_LOCAL, "suffix_separators", set_suffix_separators},
    [K_DEFAULT_DOMAIN] = {SEC_LOCAL, "default_domain", set_default_domain},
    [K_SENDERS_MUST_MATCH] = {SEC_RELAY, "senders_must_match", set_senders_must_match},
    [K_SMARTHOST] = {SEC_REMOTE, "smarthost", set_smarthost},
    [K_SMARTHOST_USER] = {SEC_REMOTE, "smarthost_user", set_smarthost_user},
    [K_SMARTHOST_PASSWORD_FILE] = {SEC_REMOTE, "smarthost_password_file",
                                   set_smarthost_password_file},
    [K_SMARTHOST_TLS] = {SEC_REMOTE, "smarthost_tls", set_smarthost_tls},
    [K_REMOTE_TLS] = {SEC_REMOTE, "tls", set_remote_tls},
    [K_TLS_CA] = {SEC_REMOTE, "tls_ca", set_tls_ca},
    [K_DNS_SERVERS] = {SEC_REMOTE, "dns_servers", set_dns_servers},
    [K_REMOTE_PORT] = {SEC_REMOTE, "port", set_remote_port},
    [K_MAX_HOSTS] = {SEC_REMOTE, "max_hosts", set_max_hosts},
    [K_CONCURRENCY] = {SEC_REMOTE, "concurrency", set_concurrency},
    [K_PER_DESTINATION] = {SEC_REMOTE, "per_destination", set_per_destination},
    [K_REMOTE_TIMEOUT] = {SEC_REMOTE, "timeout", set_remote_timeout},
    [K_ROUTES] = {SEC_REMOTE, "routes", set_routes},
    [K_TLS_POLICY] = {SEC_REMOTE, "tls_policy", set_tls_policy},
    [K_ADMIN_LISTEN] = {SEC_ADMIN, "listen", set_admin_listen},
    [K_ADMIN_ALLOW_REMOTE] = {SEC_ADMIN, "allow_remote", set_admin_allow_remote},
    [K_MTA_STS_ENABLED] = {SEC_MTA_STS, "enabled", set_mta_sts_enabled},
    [K_MTA_STS_CA] = {SEC_MTA_STS, "ca", set_mta_sts_ca},
    [K_MTA_STS_PORT] = {SEC_MTA_STS, "port", set_mta_sts_port},
    [K_DKIM_SIGN] = {SEC_DKIM, "sign", set_dkim_sign},
    [K_DKIM_KEYS_DIR] = {SEC_DKIM, "keys_dir", set_dkim_keys_dir},
    [K_CHECK_SPF] = {SEC_CHECKS, "spf", set_check_spf},
    [K_CHECK_DKIM] = {SEC_CHECKS, "dkim", set_check_dkim},
    [K_CHECK_DMARC] = {SEC_CHECKS, "dmarc", set_check_dmarc},
    [K_QUARANTINE_FOLDER] = {SEC_CHECKS, "quarantine_folder", set_quarantine_folder},
    [K_AUTHSERV_ID] = {SEC_CHECKS, "authserv_id", set_authserv_id},
};

/* ---- defaults -------------------------------------------------------------- */

#define DEFAULT_DATA_DIR "/var/lib/tern"
#define DEFAULT_MAILDIR "mail/%domain%/%user%/Maildir" /* relative to data_dir */

void conf_defaults(struct conf *c)
{
    char why[WHY_MAX], host[CONF_HOST_MAX + 1];

    memset(c, 0, sizeof(*c));
    if (gethostname(host, sizeof(host)) == 0) {
        host[sizeof(host) - 1] = '\0';
        if (conf_hostname_ok(host) == 0)
            snprintf(c->hostname, sizeof(c->hostname), "%s", host);
    }
    snprintf(c->data_dir, sizeof(c->data_dir), "%s", DEFAULT_DATA_DIR);
    c->max_size = 25ULL << 20;
    c->max_rcpts = 100;
    c->max_line_length = 998;
    c->max_errors = 10;
    c->idle_timeout_ms = 5 * 60 * MS_SECOND;
    c->command_timeout_ms = 60 * MS_SECOND;
    c->data_timeout_ms = 10 * 60 * MS_SECOND;
    c->session_timeout_ms = 60 * 60 * MS_SECOND;
    c->max_sessions_per_ip = 20;
    c->max_connect_rate_per_ip = 60;
    c->body_memory = 256ULL << 20;
    c->auth_max_failures = 10;
    c->auth_lockout_ms = 15 * 60 * MS_SECOND;
    if (set_listen(&c->smtp, "127.0.0.1:25", why) < 0)
        fatal("default listen address: %s", why);
    c->queue_max_items = 10000;
    c->queue_min_free = 100ULL << 20;
    if (set_retry(c, "1m 5m 15m 30m 1h 2h 4h", why) < 0)
        fatal("default retry table: %s", why);
    c->give_up_ms = 5 * MS_DAY;
    c->delay_warning_ms = 4 * 3600 * MS_SECOND;
    c->delivery = CONF_DELIVERY_MAILDIR;
    c->mda_timeout_ms = 5 * 60 * MS_SECOND;
    c->maildir_path[0] = '\0'; /* filled from data_dir once it is known */
    c->smarthost_tls = CONF_TLS_VERIFY;
    c->remote_tls = CONF_TLS_MAY;
    snprintf(c->remote_port, sizeof(c->remote_port), "25");
    c->max_hosts = 5;
    c->concurrency = 16;
    c->per_destination = 4;
    snprintf(c->drop_chars, sizeof(c->drop_chars), ".");
    snprintf(c->suffix_separators, sizeof(c->suffix_separators), "+");
    c->senders_must_match = true;
    c->dkim_sign = true;
    c->mta_sts = true;
    c->mta_sts_port = 443;
    c->check_spf = c->check_dkim = c->check_dmarc = CONF_CHECK_TAG;
    snprintf(c->quarantine_folder, sizeof(c->quarantine_folder), "Junk");
}

/* ---- parsing ------------------------------------------------------------- */

struct conf_parse {
    const char *name; /* file name for messages */
    struct conf *c;
    struct conf_errors *e;
    /* the reader's view of the text */
    const char *text;
    size_t len, pos;
    unsigned line;     /* number of the line last handed to inih */
    bool line_plain;   /* that line is neither blank, comment nor section */
    bool line_handled; /* the handler was called for it */
    int section;       /* enum conf_section, -1 unknown (reported), -2 none yet */
    unsigned key_line[K_N];
    int nerr_before;
};

static bool conf_blank_or_comment(const char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    return *s == '\0' || *s == ';' || *s == '#';
}

/* The line just finished: was it a line inih could not make sense of? */
static void conf_line_done(struct conf_parse *p)
{
    if (p->line > 0 && p->line_plain && !p->line_handled)
        conf_error(p->e, p->name, p->line, "expected 'key = value', a [section] or a comment");
    p->line_plain = false;
}

/* A "[section]" line: look the section up (inih does the same, silently). */
static void conf_section_line(struct conf_parse *p, const char *s, size_t n)
{
    const char *end = memchr(s, ']', n);
    if (!end) {
        conf_error(p->e, p->name, p->line, "missing ']' in section header");
        p->section = -1;
        return;
    }
    const char *a = s + 1, *b = end;
    while (a < b && isspace((unsigned char)*a))
        a++;
    while (b > a && isspace((unsigned char)b[-1]))
        b--;
    char rest[CONF_LINE_MAX + 2];
    snprintf(rest, sizeof(rest), "%.*s", (int)(n - (size_t)(end + 1 - s)), end + 1);
    if (!conf_blank_or_comment(rest))
        conf_error(p->e, p->name, p->line, "text after ']' in section header");
    for (int i = 0; i < SEC_N; i++) {
        if ((size_t)(b - a) == strlen(conf_sections[i]) &&
            strncasecmp(a, conf_sections[i], (size_t)(b - a)) == 0) {
            p->section = i;
            return;
        }
    }
    conf_error(p->e, p->name, p->line,
               "unknown section [%.*s] (known: server, listen, tls, queue, local, relay, remote)",
               (int)(b - a > 60 ? 60 : b - a), a);
    p->section = -1;
}

/* ini_reader: the next line of p->text into str (at most num - 1 octets). */
static char *conf_reader(char *str, int num, void *stream)
{
    struct conf_parse *p = stream;

    conf_line_done(p);
    if (p->pos >= p->len || num < 3)
        return NULL;
    const char *s = p->text + p->pos;
    const char *nl = memchr(s, '\n', p->len - p->pos);
    size_t n = nl ? (size_t)(nl - s) + 1 : p->len - p->pos;
    p->pos += n;
    p->line++;
    p->line_plain = false;
    p->line_handled = false;

    size_t content = n - (nl ? 1 : 0);
    if (content > 0 && s[content - 1] == '\r')
        content--;
    if (memchr(s, '\0', n)) {
        conf_error(p->e, p->name, p->line, "NUL byte in line");
        goto skip;
    }
    if (content > CONF_LINE_MAX || n + 1 > (size_t)num) {
        conf_error(p->e, p->name, p->line, "line longer than %d characters", CONF_LINE_MAX);
        goto skip;
    }
    for (size_t i = 0; i < content; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
            conf_error(p->e, p->name, p->line, "control character 0x%02x in line", ch);
            goto skip;
        }
    }
    memcpy(str, s, n);
    str[n] = '\0';

    const char *t = str;
    if (p->line == 1 && (unsigned char)t[0] == 0xEF && (unsigned char)t[1] == 0xBB &&
        (unsigned char)t[2] == 0xBF)
        t += 3; /* inih skips a UTF-8 BOM too */
    while (*t == ' ' || *t == '\t')
        t++;
    if (conf_blank_or_comment(t))
        return str;
    if (*t == '[') {
        conf_section_line(p, t, content - (size_t)(t - str));
        return str;
    }
    p->line_plain = true;
    return str;
skip:
    str[0] = '\n';
    str[1] = '\0';
    return str;
}

static int conf_handler(void *user, const char *section, const char *name, const char *value)
{
    struct conf_parse *p = user;
    char why[WHY_MAX];
    (void)section; /* ours is exact and not truncated; inih's is neither */

    p->line_handled = true;
    if (p->section == -1)
        return 1; /* the section header was reported already */
    if (!*name) {
        conf_error(p->e, p->name, p->line, "missing key name before '='");
        return 1;
    }
    if (p->section == -2) {
        conf_error(p->e, p->name, p->line, "key '%.60s' outside any [section]", name);
        return 1;
    }
    int k;
    for (k = 0; k < K_N; k++)
        if ((int)conf_keys[k].section == p->section && strcasecmp(conf_keys[k].name, name) == 0)
            break;
    if (k == K_N) {
        conf_error(p->e, p->name, p->line, "unknown key '%.60s' in [%s]", name,
                   conf_sections[p->section]);
        return 1;
    }
    if (p->key_line[k]) {
        conf_error(p->e, p->name, p->line, "[%s] %s is set twice (first on line %u)",
                   conf_sections[p->section], conf_keys[k].name, p->key_line[k]);
        return 1;
    }
    p->key_line[k] = p->line;
    why[0] = '\0';
    if (conf_keys[k].set(p->c, value, why) < 0)
        conf_error(p->e, p->name, p->line, "[%s] %s: %s", conf_sections[p->section],
                   conf_keys[k].name, why);
    return 1;
}

/* Report a cross-key problem at the line of key k (or the file if it was defaulted). */
#define KEY_ERROR(p, k, ...) conf_error((p)->e, (p)->name, (p)->key_line[k], __VA_ARGS__)

static bool conf_listen_any_port(const struct conf_listen *l)
{
    if (l->ss.ss_family == AF_INET6)
        return ((const struct sockaddr_in6 *)&l->ss)->sin6_port == 0;
    return ((const struct sockaddr_in *)&l->ss)->sin_port == 0;
}

static bool conf_listen_overlap(const struct conf_listeners *a, const struct conf_listeners *b,
                                const char **which)
{
    for (size_t i = 0; i < a->n; i++)
        for (size_t j = 0; j < b->n; j++)
            if (a->v[i].len == b->v[j].len && memcmp(&a->v[i].ss, &b->v[j].ss, a->v[i].len) == 0 &&
                !conf_listen_any_port(&a->v[i])) { /* port 0: each gets its own */
                *which = a->v[i].text;
                return true;
            }
    return false;
}

static void conf_join(char *out, size_t size, const char *dir, const char *rel, bool *too_long)
{
    int n = snprintf(out, size, "%s/%s", dir, rel);
    *too_long = n < 0 || (size_t)n >= size;
}

/* Rules between keys, and the values derived from others. */
static void conf_finish(struct conf_parse *p, const char *base_dir)
{
    struct conf *c = p->c;
    const char *which;
    bool too_long = false;

    if (c->group[0] && !c->user[0])
        KEY_ERROR(p, K_GROUP, "[server] group is set but user is not");
    if (!c->hostname[0])
        conf_error(p->e, p->name, 0,
                   "[server] hostname is required: the system host name is not usable");
    if (c->data_dir[0] != '/' && base_dir && *base_dir) {
        char abs[CONF_STR_MAX];
        conf_join(abs, sizeof(abs), base_dir, c->data_dir, &too_long);
        if (too_long)
            KEY_ERROR(p, K_DATA_DIR, "[server] data_dir: path too long");
        else
            memcpy(c->data_dir, abs, sizeof(abs));
    }
    if (!c->maildir_path[0]) {
        conf_join(c->maildir_path, sizeof(c->maildir_path), c->data_dir, DEFAULT_MAILDIR,
                  &too_long);
        if (too_long)
            KEY_ERROR(p, K_DATA_DIR, "[server] data_dir: path too long");
    } else if (c->maildir_path[0] != '/') {
        char abs[CONF_STR_MAX];
        conf_join(abs, sizeof(abs), c->data_dir, c->maildir_path, &too_long);
        if (too_long)
            KEY_ERROR(p, K_MAILDIR_PATH, "[local] maildir_path: path too long");
        else
            memcpy(c->maildir_path, abs, sizeof(abs));
    }

    if (!!c->tls_cert[0] != !!c->tls_key[0]) {
        if (c->tls_cert[0])
            KEY_ERROR(p, K_CERT, "[tls] cert is set but key is not (both or neither)");
        else
            KEY_ERROR(p, K_KEY, "[tls] key is set but cert is not (both or neither)");
    }
    if (!c->tls_cert[0] || !c->tls_key[0]) {
        if (c->submission.n)
            KEY_ERROR(p, K_SUBMISSION,
                      "[listen] submission needs [tls] cert and key (AUTH is only offered over "
                      "TLS)");
        if (c->submissions.n)
            KEY_ERROR(p, K_SUBMISSIONS, "[listen] submissions needs [tls] cert and key");
    }
    if (conf_listen_overlap(&c->smtp, &c->submission, &which))
        KEY_ERROR(p, K_SUBMISSION, "[listen] submission: %s is also in [listen] smtp", which);
    if (conf_listen_overlap(&c->smtp, &c->submissions, &which))
        KEY_ERROR(p, K_SUBMISSIONS, "[listen] submissions: %s is also in [listen] smtp", which);
    if (conf_listen_overlap(&c->submission, &c->submissions, &which))
        KEY_ERROR(p, K_SUBMISSIONS, "[listen] submissions: %s is also in [listen] submission",
                  which);
    for (size_t i = 0; i < c->admin.n && !c->admin_allow_remote; i++)
        if (!httpmetrics_loopback((const struct sockaddr *)&c->admin.v[i].ss))
            KEY_ERROR(p, K_ADMIN_LISTEN,
                      "[admin] listen: %s is not a loopback address (metrics show traffic; set "
                      "[admin] allow_remote = yes to serve them beyond this host)",
                      c->admin.v[i].text);

    if (c->delay_warning_ms && c->delay_warning_ms >= c->give_up_ms)
        KEY_ERROR(p, K_DELAY_WARNING,
                  "[queue] delay_warning must be shorter than give_up (or \"off\")");
    if (c->retry_ms[0] >= c->give_up_ms)
        KEY_ERROR(p, K_RETRY, "[queue] retry: the first delay is not shorter than give_up");

    if (c->delivery == CONF_DELIVERY_MDA && !c->mda_command[0])
        KEY_ERROR(p, K_DELIVERY, "[local] delivery = mda needs [local] mda_command");
    if (c->delivery != CONF_DELIVERY_MDA && c->mda_command[0])
        KEY_ERROR(p, K_MDA_COMMAND, "[local] mda_command is set but delivery is not mda");
    if (c->delivery == CONF_DELIVERY_LMTP && !c->lmtp[0])
        KEY_ERROR(p, K_DELIVERY,
                  "[local] delivery = lmtp needs [local] lmtp (unix:/path, host:port)");
    if (c->delivery != CONF_DELIVERY_LMTP && c->lmtp[0])
        KEY_ERROR(p, K_LMTP, "[local] lmtp is set but delivery is not lmtp");
    for (const char *d = c->drop_chars; *d; d++)
        if (strchr(c->suffix_separators, *d))
            KEY_ERROR(p, K_SUFFIX_SEPARATORS,
                      "[local] '%c' is both in drop_chars and in suffix_separators", *d);
}

static void conf_parse_setup(void)
{
    /* inih's options are process globals in Debian's build: state ours each time */
    ini_allow_multiline = false; /* an indented line is a line, not a continuation */
    ini_allow_bom = true;
    ini_allow_inline_comments = true; /* "key = value ; comment" */
    ini_use_stack = true;             /* a VLA of ini_max_line octets */
    ini_max_line = CONF_LINE_MAX + 3; /* room for "\r\n\0" */
    ini_stop_on_first_error = false;
    ini_allow_no_value = false;
}

static int conf_parse_text(struct conf_parse *p, const char *base_dir)
{
    size_t before = p->e->n;

    conf_defaults(p->c);
    p->section = -2;
    conf_parse_setup();
    /* The result is ignored on purpose: inih only knows the first bad line,
       and conf_reader() has reported every one of them already. */
    (void)ini_parse_stream(conf_reader, p, conf_handler, p);
    conf_line_done(p);
    p->line = 0;
    conf_finish(p, base_dir);
    return p->e->n > before || p->e->truncated ? -1 : 0;
}

int conf_parse_string(const char *text, size_t len, const char *name, const char *base_dir,
                      struct conf *c, struct conf_errors *e)
{
    struct conf_parse p = {.name = name, .c = c, .e = e, .text = text, .len = len};
    return conf_parse_text(&p, base_dir);
}

/* ---- files -------------------------------------------------------------- */

int conf_read_file(const char *path, size_t max, char **out, size_t *len, char *why, size_t whylen)
{
    struct stat st;
    int err;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err = errno;
        snprintf(why, whylen, "cannot open: %s", strerror(err));
        errno = err;
        return -1;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, whylen, "not a regular file");
        close(fd);
        errno = EINVAL;
        return -1;
    }
    if ((uint64_t)st.st_size > max) {
        snprintf(why, whylen, "larger than %zu octets", max);
        close(fd);
        errno = EFBIG;
        return -1;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf)
        fatal("out of memory");
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            err = r < 0 ? errno : EIO;
            snprintf(why, whylen, "cannot read: %s", r < 0 ? strerror(err) : "file shrank");
            free(buf);
            close(fd);
            errno = err;
            return -1;
        }
        got += (size_t)r;
    }
    if (close(fd) < 0) {
        err = errno;
        snprintf(why, whylen, "cannot read: %s", strerror(err));
        free(buf);
        errno = err;
        return -1;
    }
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}

static void conf_check_readable(struct conf_parse *p, int k, const char *what, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        KEY_ERROR(p, k, "%s: cannot read %s: %s", what, path, strerror(errno));
        return;
    }
    if (close(fd) < 0)
        KEY_ERROR(p, k, "%s: cannot read %s: %s", what, path, strerror(errno));
}

int conf_user_ids(const struct conf *c, uid_t *uid, gid_t *gid)
{
    if (!c->user[0])
        return -1;
    struct passwd pw, *pp = NULL;
    char buf[4096];
    if (getpwnam_r(c->user, &pw, buf, sizeof(buf), &pp) != 0 || !pp)
        return -1;
    *uid = pp->pw_uid;
    *gid = pp->pw_gid;
    if (c->group[0]) {
        struct group gr, *gp = NULL;
        if (getgrnam_r(c->group, &gr, buf, sizeof(buf), &gp) != 0 || !gp)
            return -1;
        *gid = gp->gr_gid;
    }
    return 0;
}

void conf_check_file(const struct conf *c, const char *path, enum conf_file_kind kind,
                     struct conf_errors *e)
{
    struct stat st;
    uid_t uid = 0;
    gid_t gid = 0;
    if (stat(path, &st) < 0)
        return;
    unsigned mode = (unsigned)st.st_mode & 07777;
    bool user_ok = conf_user_ids(c, &uid, &gid) == 0 && st.st_uid == uid;
    if (st.st_uid != 0 && st.st_uid != geteuid() && !user_ok)
        conf_error(e, path, 0, "owned by uid %u: must be owned by root%s%s", (unsigned)st.st_uid,
                   c->user[0] ? " or " : "", c->user);
    if (kind == CONF_FILE_SECRET && (mode & 077))
        conf_error(e, path, 0, "mode %04o lets other users read this secret; chmod 600", mode);
    else if (kind != CONF_FILE_SECRET && (mode & 022))
        conf_error(e, path, 0,
                   "mode %04o lets other users change it (anyone could add `x: | /cmd`); "
                   "chmod go-w",
                   mode);
    if (kind == CONF_FILE_USERS && (mode & 004))
        conf_warn(e, path, "mode %04o lets every user read the password hashes; chmod 640", mode);
}

int conf_load(const char *path, struct conf *c, struct conf_errors *e)
{
    char why[256], dir[CONF_STR_MAX], *text;
    size_t len, before = e->n;

    conf_defaults(c);
    if (strlen(path) >= sizeof(c->path)) {
        conf_error(e, path, 0, "path too long");
        return -1;
    }
    if (conf_read_file(path, CONF_FILE_MAX, &text, &len, why, sizeof(why)) < 0) {
        conf_error(e, path, 0, "%s", why);
        return -1;
    }
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else if (!getcwd(dir, sizeof(dir)))
        snprintf(dir, sizeof(dir), ".");
    if (dir[0] != '/') { /* "sub/tern.conf": data_dir must not depend on the working folder */
        char absdir[PATH_MAX];
        if (realpath(dir, absdir) && strlen(absdir) < sizeof(dir))
            snprintf(dir, sizeof(dir), "%s", absdir);
    }

    struct conf_parse p = {.name = path, .c = c, .e = e, .text = text, .len = len};
    conf_parse_text(&p, dir);
    free(text);
    snprintf(c->path, sizeof(c->path), "%s", path);
    uid_t uid;
    gid_t gid;
    /* the server after leaving root (a reload): it read TLS files as root at
       start-up, and changing them needs a restart anyway */
    bool dropped = conf_user_ids(c, &uid, &gid) == 0 && uid != 0 && uid == geteuid();
    if (c->tls_cert[0] && !dropped)
        conf_check_readable(&p, K_CERT, "[tls] cert", c->tls_cert);
    if (c->tls_key[0] && !dropped)
        conf_check_readable(&p, K_KEY, "[tls] key", c->tls_key);
    if (c->user[0] && !getpwnam(c->user))
        KEY_ERROR(&p, K_USER, "[server] user: no such user '%s'", c->user);
    else if (c->group[0] && !getgrnam(c->group))
        KEY_ERROR(&p, K_GROUP, "[server] group: no such group '%s'", c->group);
    else if (c->user[0] && conf_user_ids(c, &uid, &gid) == 0 && uid == 0)
        KEY_ERROR(&p, K_USER, "[server] user: '%s' is root (deliveries never run as root)",
                  c->user);
    conf_check_file(c, path, CONF_FILE_RULES, e);
    if (c->tls_key[0])
        conf_check_file(c, c->tls_key, CONF_FILE_SECRET, e);
    if (c->smarthost_password_file[0])
        conf_check_file(c, c->smarthost_password_file, CONF_FILE_SECRET, e);
    return e->n > before || e->truncated ? -1 : 0;
}

/* ---- helpers for the server ---------------------------------------------- */

static bool conf_path_part_ok(const char *s)
{
    return s && *s && *s != '.' && !strchr(s, '/');
}

int conf_maildir_path(const struct conf *c, const char *user, const char *domain, char *out,
                      size_t size)
{
    size_t o = 0;
    if (!conf_path_part_ok(user) || !conf_path_part_ok(domain) || size == 0)
        return -1;
    for (const char *p = c->maildir_path; *p;) {
        const char *add = p;
        size_t n = 1;
        if (strncmp(p, "%user%", 6) == 0) {
            add = user;
            n = strlen(user);
            p += 6;
        } else if (strncmp(p, "%domain%", 8) == 0) {
            add = domain;
            n = strlen(domain);
            p += 8;
        } else if (strncmp(p, "%%", 2) == 0) {
            p += 2;
        } else {
            p++;
        }
        if (o + n >= size)
            return -1;
        memcpy(out + o, add, n);
        o += n;
    }
    out[o] = '\0';
    return 0;
}

const char *conf_default_path(const char *from_option)
{
    if (from_option && *from_option)
        return from_option;
    const char *env = getenv("TERN_CONFIG");
    if (env && *env)
        return env;
    return CONF_DEFAULT_PATH;
}
