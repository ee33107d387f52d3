/*
 * dsn.c - the bounce builder (see dsn.h).
 *
 * The message is assembled from four pieces built separately (top header,
 * human part, delivery-status part, original), so that the MIME boundary can
 * be chosen last: a random one, regenerated until it occurs in none of the
 * pieces.  Everything that comes from outside (error texts, addresses, ENVID,
 * ORCPT, the host name) goes through dsn_clean(): no control character, single
 * spaces, at most DSN_ERROR_MAX octets, non-ASCII only where the report is an
 * RFC 6533 one and the text is valid UTF-8.  Long fields are folded at
 * spaces, so no line exceeds 998 octets except in the original message, which
 * is copied as it came (line ends made CRLF).  Nothing here does I/O or keeps
 * state; the caller owns out.
 */
#include "queue/dsn.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "core/address.h"
#include "core/command.h"
#include "core/header.h"

/* ---- small text helpers ---------------------------------------------- */

static void app(struct buf *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void appf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    buf_reserve(b, b->len + (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static bool is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return false;
    return true;
}

/* Clean s into out[size]: controls become spaces, runs of spaces one, no
 * space at either end, at most min(size-1, DSN_ERROR_MAX) octets; octets >=
 * 0x80 become '?' unless utf8 and s is valid UTF-8 (then never cut inside a
 * character). */
static void dsn_clean(const char *s, bool utf8, char *out, size_t size)
{
    size_t max = size - 1 < DSN_ERROR_MAX ? size - 1 : DSN_ERROR_MAX;
    if (!s)
        s = "";
    size_t n = 0;
    bool keep8 = utf8 && utf8_valid(s, strlen(s));
    bool space = false;
    for (; *s && n < max; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f || c == ' ') {
            space = n > 0;
            continue;
        }
        if (space) {
            out[n++] = ' ';
            space = false;
            if (n >= max)
                break;
        }
        out[n++] = (c >= 0x80 && !keep8) ? '?' : (char)c;
    }
    if (keep8) /* do not end inside a UTF-8 sequence */
        while (n > 0 && ((unsigned char)out[n - 1] & 0x80) && !utf8_valid(out, n))
            n--;
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

static void rfc5322_date(int64_t t, char out[64])
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t tt = (time_t)t;
    struct tm tm;
    if (t < 0 || t > ENV_TIME_MAX || !gmtime_r(&tt, &tm)) {
        tt = 0;
        gmtime_r(&tt, &tm);
    }
    snprintf(out, 64, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7], tm.tm_mday,
             months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* "Name: value" folded at spaces before column 78 (value already cleaned). */
static void put_field(struct buf *b, const char *name, const char *value)
{
    appf(b, "%s:", name);
    size_t col = strlen(name) + 1;
    const char *p = value;
    while (*p) {
        size_t wl = strcspn(p, " ");
        if (col > strlen(name) + 1 && col + 1 + wl > 78) {
            app(b, "\r\n");
            col = 0;
        }
        app(b, " ");
        buf_append(b, p, wl);
        col += 1 + wl;
        p += wl;
        while (*p == ' ')
            p++;
    }
    app(b, "\r\n");
}

/* Word-wrapped text, each line starting with indent, ending in CRLF. */
static void put_wrapped(struct buf *b, const char *indent, const char *text)
{
    size_t il = strlen(indent), col = 0;
    const char *p = text;
    while (*p == ' ')
        p++;
    while (*p) {
        size_t wl = strcspn(p, " ");
        if (col > 0 && col + 1 + wl > 76) {
            app(b, "\r\n");
            col = 0;
        }
        if (col == 0) {
            app(b, indent);
            col = il;
        } else {
            app(b, " ");
            col++;
        }
        buf_append(b, p, wl);
        col += wl;
        p += wl;
        while (*p == ' ')
            p++;
    }
    if (col > 0)
        app(b, "\r\n");
}

/* ---- status codes ---------------------------------------------------- */

static size_t digits(const char *s, size_t max)
{
    size_t n = 0;
    while (n < max && s[n] >= '0' && s[n] <= '9')
        n++;
    return n;
}

const char *dsn_status_code(const char *error, const char *dflt, char *out, size_t size)
{
    const char *p = error ? error : "";
    char basic = 0;
    while (*p == ' ')
        p++;
    if (digits(p, 3) == 3 && (p[3] == ' ' || p[3] == '-' || p[3] == '\0')) {
        if (p[0] == '2' || p[0] == '4' || p[0] == '5')
            basic = p[0];
        p += 3;
        while (*p == ' ' || *p == '-')
            p++;
    }
    /* class "." subject "." detail, RFC 3463: 1*3 digits each after the class */
    const char *q = p;
    bool ok = (q[0] == '2' || q[0] == '4' || q[0] == '5') && q[1] == '.';
    size_t sl = 0, dl = 0;
    if (ok) {
        sl = digits(q + 2, 4);
        ok = sl >= 1 && sl <= 3 && q[2 + sl] == '.';
    }
    if (ok) {
        dl = digits(q + 3 + sl, 4);
        char after = q[3 + sl + dl];
        /* ends at the end, white space or a control, or punctuation */
        ok = dl >= 1 && dl <= 3 &&
             ((unsigned char)after <= ' ' || after == ';' || after == ',' || after == ':');
    }
    if (ok && (!basic || basic == q[0]))
        snprintf(out, size, "%.*s", (int)(3 + sl + dl), q);
    else if (basic == '4' || basic == '5')
        snprintf(out, size, "%c.0.0", basic);
    else
        snprintf(out, size, "%s", dflt);
    return out;
}

/* ---- who is reported ------------------------------------------------- */

bool dsn_rcpt_listed(const struct dsn_info *info, const struct envelope *env,
                     const struct env_rcpt *r)
{
    if (!env->sender || !*env->sender)
        return false; /* never a DSN to the null sender */
    unsigned notify = r->notify ? r->notify : info->default_notify;
    if (!notify)
        notify = NOTIFY_FAILURE;
    if (notify & NOTIFY_NEVER)
        return false;
    if (info->kind == DSN_FAILED)
        return r->status == ENV_RCPT_FAILED && (notify & NOTIFY_FAILURE);
    if (info->kind == DSN_SUCCESS)
        return r->status == ENV_RCPT_SENT && (notify & NOTIFY_SUCCESS) && info->pick &&
               info->pick[r - env->rcpts];
    return r->status == ENV_RCPT_PENDING && r->attempts > 0 && (notify & NOTIFY_DELAY) &&
           !env->delay_warned;
}

bool dsn_wanted(const struct dsn_info *info, const struct envelope *env)
{
    for (size_t i = 0; i < env->nrcpt; i++)
        if (dsn_rcpt_listed(info, env, &env->rcpts[i]))
            return true;
    return false;
}

/* ---- the original message -------------------------------------------- */

/* Offset of the empty line that ends the header section, or len. */
static size_t header_end(const char *m, size_t len)
{
    size_t i = 0;
    while (i < len) {
        if (m[i] == '\n' || (m[i] == '\r' && i + 1 < len && m[i + 1] == '\n'))
            return i;
        const char *nl = memchr(m + i, '\n', len - i);
        if (!nl)
            return len;
        i = (size_t)(nl - m) + 1;
    }
    return len;
}

/* Copy m[0..len) with every line end (CRLF, bare LF, bare CR) as CRLF, and a
 * final CRLF if missing.  Returns whether an octet >= 0x80 was seen. */
static bool put_crlf(struct buf *b, const char *m, size_t len)
{
    bool eight = false;
    size_t run = 0;
    buf_reserve(b, b->len + len + len / 32 + 2);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)m[i];
        if (c >= 0x80)
            eight = true;
        if (c == '\r' && i + 1 < len && m[i + 1] == '\n') {
            i++;
            continue; /* already CRLF: copied with the run */
        }
        if (c == '\r' || c == '\n') {
            buf_append(b, m + run, i - run);
            app(b, "\r\n");
            run = i + 1;
        }
    }
    buf_append(b, m + run, len - run);
    if (len > 0 && !(b->len >= 2 && b->p[b->len - 2] == '\r' && b->p[b->len - 1] == '\n'))
        app(b, "\r\n");
    return eight;
}

static bool has8(const char *m, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)m[i] >= 0x80)
            return true;
    return false;
}

/* ---- building -------------------------------------------------------- */

static uint64_t dsn_random(void)
{
    static _Thread_local uint64_t x;
    uint64_t r;
    if (getrandom(&r, sizeof(r), 0) == (ssize_t)sizeof(r))
        return r;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    x += 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_nsec;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* "rfc822;addr" or "utf-8;addr" for an address (cleaned into out). */
static void typed_addr(const char *addr, bool global, char *out, size_t size)
{
    char c[DSN_ERROR_MAX + 1];
    dsn_clean(addr, global, c, sizeof(c));
    snprintf(out, size, "%s;%s", is_ascii(c) ? "rfc822" : "utf-8", c);
}

/* Original-Recipient: from ORCPT (xtext-decoded) if given, else the address
 * before alias expansion; false if neither is known. */
static bool original_recipient(const struct env_rcpt *r, bool global, char *out, size_t size)
{
    const char *semi = r->orcpt ? strchr(r->orcpt, ';') : NULL;
    if (semi && semi > r->orcpt) {
        char dec[ENV_VALUE_MAX + 1], type[32], ct[DSN_ERROR_MAX + 1];
        size_t tl = (size_t)(semi - r->orcpt);
        if (tl < sizeof(type) && xtext_decode(semi + 1, strlen(semi + 1), dec, sizeof(dec)) > 0) {
            memcpy(type, r->orcpt, tl);
            type[tl] = '\0';
            for (size_t i = 0; i < tl; i++) {
                char ch = type[i];
                bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                          (ch >= '0' && ch <= '9') || ch == '-';
                if (!ok)
                    type[i] = '-';
            }
            dsn_clean(dec, global, ct, sizeof(ct));
            if (*ct) {
                snprintf(out, size, "%s;%s", type, ct);
                return true;
            }
        }
    }
    if (r->orig && *r->orig) {
        typed_addr(r->orig, global, out, size);
        return true;
    }
    return false;
}

/* Handed to another server (Action: relayed) rather than put in a mailbox. */
static bool dsn_relayed(const struct env_rcpt *r)
{
    return r->target && strcmp(r->target, "smtp") == 0;
}

static void human_part(const struct dsn_info *info, const struct envelope *env, const char *host,
                       bool global, struct buf *b)
{
    char date[64], addr[DSN_ERROR_MAX + 1], orig[DSN_ERROR_MAX + 1], err[DSN_ERROR_MAX + 1];
    appf(b,
         "Content-Description: Notification\r\n"
         "Content-Type: text/plain; charset=%s\r\n",
         global ? "utf-8" : "us-ascii");
    if (global)
        app(b, "Content-Transfer-Encoding: 8bit\r\n");
    app(b, "\r\n");
    appf(b, "This is the mail system at %s.\r\n\r\n", host);
    if (info->kind == DSN_FAILED) {
        put_wrapped(b, "",
                    "Your message could not be delivered to one or more of its recipients. The "
                    "reason is given below for each of them. The message itself, or its header, "
                    "is attached.");
    } else if (info->kind == DSN_SUCCESS) {
        put_wrapped(b, "",
                    "Your message was delivered to the recipients below, as you asked to be "
                    "told. \"Relayed\" means it was handed to a mail system that sends no such "
                    "reports, so this is the last news of it. Its header is attached.");
    } else {
        put_wrapped(b, "",
                    "Your message has not yet been delivered to one or more of its recipients; "
                    "the reason is given below for each of them. This is only a warning: the "
                    "mail system keeps trying, and you do not need to send the message again.");
        if (info->retry_until > 0) {
            rfc5322_date(info->retry_until, date);
            appf(b, "\r\nIt will keep trying until %s.\r\n", date);
        }
    }
    app(b, "\r\nThis notice was sent automatically; replies to it are not read.\r\n");
    for (size_t i = 0; i < env->nrcpt; i++) {
        const struct env_rcpt *r = &env->rcpts[i];
        if (!dsn_rcpt_listed(info, env, r))
            continue;
        dsn_clean(r->addr, global, addr, sizeof(addr));
        dsn_clean(r->orig, global, orig, sizeof(orig));
        dsn_clean(r->error, global, err, sizeof(err));
        char who[2 * DSN_ERROR_MAX + 32];
        if (*orig && strcmp(orig, addr) != 0)
            snprintf(who, sizeof(who), "<%s> (sent to <%s>):", addr, orig);
        else
            snprintf(who, sizeof(who), "<%s>:", addr);
        app(b, "\r\n");
        put_wrapped(b, "", who); /* two long addresses stay on separate lines */
        if (info->kind == DSN_SUCCESS)
            put_wrapped(b, "    ", dsn_relayed(r) ? "relayed" : "delivered");
        else
            put_wrapped(b, "    ", *err ? err : "(no reason was recorded)");
    }
}

static void status_part(const struct dsn_info *info, const struct envelope *env, const char *host,
                        bool global, struct buf *b)
{
    char date[64], val[DSN_ERROR_MAX + 64], err[DSN_ERROR_MAX + 1], code[16];
    appf(b,
         "Content-Description: Delivery report\r\n"
         "Content-Type: message/%sdelivery-status\r\n",
         global ? "global-" : "");
    if (global)
        app(b, "Content-Transfer-Encoding: 8bit\r\n");
    app(b, "\r\n");

    snprintf(val, sizeof(val), "dns; %s", host);
    put_field(b, "Reporting-MTA", val);
    if (env->envid && *env->envid) {
        char dec[ENV_VALUE_MAX + 1];
        const char *e = env->envid;
        if (xtext_decode(env->envid, strlen(env->envid), dec, sizeof(dec)) > 0)
            e = dec;
        dsn_clean(e, false, val, sizeof(val));
        if (*val)
            put_field(b, "Original-Envelope-Id", val);
    }
    rfc5322_date(env->created, date);
    put_field(b, "Arrival-Date", date);

    for (size_t i = 0; i < env->nrcpt; i++) {
        const struct env_rcpt *r = &env->rcpts[i];
        if (!dsn_rcpt_listed(info, env, r))
            continue;
        app(b, "\r\n");
        if (original_recipient(r, global, val, sizeof(val)))
            put_field(b, "Original-Recipient", val);
        typed_addr(r->addr, global, val, sizeof(val));
        put_field(b, "Final-Recipient", val);
        bool failed = info->kind == DSN_FAILED;
        if (info->kind == DSN_SUCCESS) {
            put_field(b, "Action", dsn_relayed(r) ? "relayed" : "delivered");
            put_field(b, "Status", "2.0.0");
            if (r->last_attempt > 0) {
                rfc5322_date(r->last_attempt, date);
                put_field(b, "Last-Attempt-Date", date);
            }
            continue;
        }
        put_field(b, "Action", failed ? "failed" : "delayed");
        dsn_status_code(r->error, failed ? "5.0.0" : "4.0.0", code, sizeof(code));
        if (failed ? code[0] == '2' : code[0] != '4')
            snprintf(code, sizeof(code), "%s", failed ? "5.0.0" : "4.0.0");
        put_field(b, "Status", code);
        dsn_clean(r->error, global, err, sizeof(err));
        if (*err) {
            bool reply = digits(err, 3) == 3 && (err[3] == ' ' || err[3] == '-' || err[3] == '\0');
            snprintf(val, sizeof(val), "%s; %s", reply ? "smtp" : "x-tern", err);
            put_field(b, "Diagnostic-Code", val);
        }
        if (r->last_attempt > 0) {
            rfc5322_date(r->last_attempt, date);
            put_field(b, "Last-Attempt-Date", date);
        }
        if (!failed && info->retry_until > 0) {
            rfc5322_date(info->retry_until, date);
            put_field(b, "Will-Retry-Until", date);
        }
    }
}

static void original_part(const struct dsn_info *info, const struct envelope *env, const char *orig,
                          size_t len, bool global, struct buf *b)
{
    size_t max_full = info->max_full ? info->max_full : DSN_MAX_FULL_DEFAULT;
    bool headers = env->ret == RET_HDRS || len > max_full || info->kind == DSN_SUCCESS;
    size_t n = len;
    if (headers) {
        n = header_end(orig, len);
        if (n > max_full) { /* a monstrous header section: cut at a line end */
            const char *p = orig + max_full;
            while (p > orig && p[-1] != '\n')
                p--;
            n = p > orig ? (size_t)(p - orig) : max_full;
        }
    }
    const char *what = info->kind == DSN_FAILED    ? "Undelivered"
                       : info->kind == DSN_SUCCESS ? "Delivered"
                                                   : "Delayed";
    if (headers)
        appf(b, "Content-Description: %s Message Headers\r\nContent-Type: %s\r\n", what,
             global ? "message/global-headers" : "text/rfc822-headers");
    else
        appf(b, "Content-Description: %s Message\r\nContent-Type: %s\r\n", what,
             global ? "message/global" : "message/rfc822");
    if (has8(orig, n))
        app(b, "Content-Transfer-Encoding: 8bit\r\n");
    app(b, "\r\n");
    put_crlf(b, orig, n);
}

static bool contains(const struct buf *b, const char *s)
{
    return b->len > 0 && memmem(b->p, b->len, s, strlen(s)) != NULL;
}

size_t dsn_build(const struct dsn_info *info, const struct envelope *env, const char *orig,
                 size_t len, struct buf *out)
{
    size_t count = 0;
    for (size_t i = 0; i < env->nrcpt; i++)
        count += dsn_rcpt_listed(info, env, &env->rcpts[i]);
    if (count == 0)
        return 0;
    if (!orig) {
        orig = "";
        len = 0;
    }

    char host[256], sender[DSN_ERROR_MAX + 1], date[64], bnd[80], mid[600];
    int64_t now = info->now > 0 ? info->now : (int64_t)time(NULL);

    /* RFC 6533 if an address is not ASCII, or UTF-8 headers are returned */
    bool global = !is_ascii(env->sender);
    for (size_t i = 0; i < env->nrcpt && !global; i++) {
        const struct env_rcpt *r = &env->rcpts[i];
        if (dsn_rcpt_listed(info, env, r))
            global = !is_ascii(r->addr) || !is_ascii(r->orig ? r->orig : "");
    }
    if (!global && env->smtputf8)
        global = has8(orig, header_end(orig, len));

    dsn_clean(info->hostname && *info->hostname ? info->hostname : "localhost", false, host,
              sizeof(host));
    for (char *p = host; *p; p++)
        if (*p == ' ' || *p == '<' || *p == '>' || *p == '@')
            *p = '-';
    dsn_clean(env->sender, global, sender, sizeof(sender));

    struct buf human = {0}, status = {0}, original = {0}, top = {0};
    human_part(info, env, host, global, &human);
    status_part(info, env, host, global, &status);
    original_part(info, env, orig, len, global, &original);

    uint64_t rnd;
    do {
        rnd = dsn_random();
        snprintf(bnd, sizeof(bnd), "=_tern-dsn-%016llx", (unsigned long long)rnd);
    } while (contains(&human, bnd) || contains(&status, bnd) || contains(&original, bnd));

    rfc5322_date(now, date);
    app(&top, "From: Mail Delivery System <MAILER-DAEMON@");
    app(&top, host);
    app(&top, ">\r\n");
    appf(&top, "To: <%s>\r\n", sender);
    appf(&top, "Subject: %s\r\n",
         info->kind == DSN_FAILED    ? "Undelivered Mail Returned to Sender"
         : info->kind == DSN_SUCCESS ? "Successful Mail Delivery Report"
                                     : "Delayed Mail (still being retried)");
    appf(&top, "Date: %s\r\n", date);
    appf(&top, "Message-ID: <dsn-%016llx.%s@%s>\r\n", (unsigned long long)rnd,
         env->id[0] ? env->id : "x", host);
    long ml = header_get(orig, len, "Message-ID", mid, sizeof(mid));
    if (ml > 2 && mid[0] == '<' && mid[ml - 1] == '>' && !strchr(mid, ' ') && is_ascii(mid)) {
        appf(&top, "In-Reply-To: %s\r\n", mid);
        appf(&top, "References: %s\r\n", mid);
    }
    app(&top, "Auto-Submitted: auto-replied\r\n"
              "MIME-Version: 1.0\r\n");
    appf(&top,
         "Content-Type: multipart/report; report-type=%sdelivery-status;\r\n"
         "\tboundary=\"%s\"\r\n",
         global ? "global-" : "", bnd);
    app(&top, "\r\nThis is a MIME-formatted delivery status notification.\r\n");

    buf_append(out, top.p, top.len);
    struct buf *parts[] = {&human, &status, &original};
    for (int i = 0; i < 3; i++) {
        appf(out, "\r\n--%s\r\n", bnd);
        buf_append(out, parts[i]->p, parts[i]->len);
    }
    appf(out, "\r\n--%s--\r\n", bnd);

    buf_free(&top);
    buf_free(&human);
    buf_free(&status);
    buf_free(&original);
    return count;
}
