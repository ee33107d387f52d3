/*
 * address.c - RFC 5321 paths and mailboxes (with RFC 6531 UTF-8).
 *
 * A recursive-descent reader over s[0..len): path = "<" [route ":"] mailbox
 * ">", mailbox = local "@" (domain / address-literal).  Local part and domain
 * are copied into struct mailaddr exactly as written; every length limit is
 * checked before a copy, so the fixed buffers can never overflow.
 *
 * Error priority: the first offending octet decides (a control is ECTRL, a
 * non-ASCII octet without ADDR_ALLOW_UTF8 or in invalid UTF-8 is EUTF8); the
 * length limits are checked per component as it ends (local, then domain,
 * then the whole path).  Address literals are only [IPv4] and [IPv6:...],
 * checked with inet_pton; general literals ("[tag:...]") are refused.
 *
 * Never: allocates, reads past len, accepts a control octet (CR, LF, NUL,
 * TAB, DEL...) anywhere, or writes to *out anything but a parsed address
 * (on error *out is zeroed).
 */
#include "core/address.h"

#include <arpa/inet.h>
#include <string.h>

#include "core/utf8.h"

bool utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        size_t n = utf8_seq_len(p + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

static bool addr_is_ctrl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

static bool addr_is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* RFC 5322 atext, ASCII part. */
static bool addr_is_atext(unsigned char c)
{
    return addr_is_alnum(c) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* The error for an octet that cannot appear where it is. */
static int addr_bad_octet(unsigned char c, int flags, int fallback)
{
    if (addr_is_ctrl(c))
        return ADDR_ECTRL;
    if (c >= 0x80 && !(flags & ADDR_ALLOW_UTF8))
        return ADDR_EUTF8;
    return fallback;
}

/*
 * Accept a non-ASCII sequence at s[i] if permitted.  Returns its length, or 0
 * with *err set.
 */
static size_t addr_take_utf8(const unsigned char *s, size_t len, size_t i, int flags, int *err)
{
    size_t n;

    if (!(flags & ADDR_ALLOW_UTF8)) {
        *err = ADDR_EUTF8;
        return 0;
    }
    n = utf8_seq_len(s + i, len - i);
    if (n == 0)
        *err = ADDR_EUTF8;
    return n;
}

/*
 * Local part at s[0..len): a dot-string or a quoted string.  Stops at the
 * first octet that cannot continue it; *end is that index.
 */
static int addr_local(const unsigned char *s, size_t len, int flags, size_t *end, bool *quoted)
{
    size_t i = 0;
    int err = ADDR_OK;

    *quoted = false;
    if (len > 0 && s[0] == '"') {
        *quoted = true;
        i = 1;
        for (;;) {
            if (i >= len)
                return ADDR_ESYNTAX; /* unterminated */
            unsigned char c = s[i];
            if (c == '"') {
                i++;
                break;
            }
            if (c == '\\') {
                if (i + 1 >= len)
                    return ADDR_ESYNTAX;
                c = s[i + 1];
                if (addr_is_ctrl(c) || c >= 0x80)
                    return addr_bad_octet(c, flags, ADDR_ESYNTAX);
                i += 2;
                continue;
            }
            if (addr_is_ctrl(c))
                return ADDR_ECTRL;
            if (c >= 0x80) {
                size_t n = addr_take_utf8(s, len, i, flags, &err);
                if (n == 0)
                    return err;
                i += n;
                continue;
            }
            i++; /* qtextSMTP: printable ASCII and space, less '"' and '\\' */
        }
        *end = i;
        return ADDR_OK;
    }

    /* Dot-string = Atom *("." Atom) */
    bool need_atext = true;
    while (i < len) {
        unsigned char c = s[i];
        if (c == '.') {
            if (need_atext)
                return ADDR_ESYNTAX; /* leading or doubled dot */
            need_atext = true;
            i++;
        } else if (addr_is_atext(c)) {
            need_atext = false;
            i++;
        } else if (c >= 0x80) {
            size_t n = addr_take_utf8(s, len, i, flags, &err);
            if (n == 0)
                return err;
            need_atext = false;
            i += n;
        } else {
            break;
        }
    }
    if (need_atext) {
        /* empty, or a trailing dot; report the octet that stopped us if bad */
        if (i < len && addr_is_ctrl(s[i]))
            return ADDR_ECTRL;
        return ADDR_ESYNTAX;
    }
    *end = i;
    return ADDR_OK;
}

/* An address literal s[0..len), brackets included, nothing after. */
static int addr_literal(const unsigned char *s, size_t len)
{
    char buf[64];
    unsigned char addr[16];
    int af = AF_INET;
    size_t off = 1;

    for (size_t i = 0; i < len; i++)
        if (addr_is_ctrl(s[i]))
            return ADDR_ECTRL;
    if (len < 2 || s[0] != '[' || s[len - 1] != ']')
        return ADDR_ELITERAL;
    if (len - 2 >= 5 && strncasecmp((const char *)s + 1, "IPv6:", 5) == 0) {
        af = AF_INET6;
        off = 6;
    }
    size_t n = len - 1 - off;
    if (n == 0 || n >= sizeof(buf))
        return ADDR_ELITERAL;
    memcpy(buf, s + off, n);
    buf[n] = '\0';
    if (inet_pton(af, buf, addr) != 1)
        return ADDR_ELITERAL;
    return ADDR_OK;
}

/*
 * Domain at s[0..len), which must be consumed entirely: labels of letters,
 * digits and hyphens (and UTF-8 with the flag), or an address literal.
 */
static int addr_domain(const unsigned char *s, size_t len, int flags, bool *literal)
{
    size_t i = 0, label = 0;
    int err = ADDR_OK;

    *literal = false;
    if (len > 0 && s[0] == '[') {
        *literal = true;
        err = addr_literal(s, len);
        if (err == ADDR_OK && len > ADDR_DOMAIN_MAX)
            err = ADDR_EDOMAIN_LONG;
        return err;
    }
    while (i < len) {
        unsigned char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return ADDR_EDOMAIN; /* empty label, or trailing hyphen */
            label = 0;
            i++;
            continue;
        }
        size_t n = 1;
        if (c == '-') {
            if (label == 0)
                return ADDR_EDOMAIN; /* leading hyphen */
        } else if (c >= 0x80) {
            n = addr_take_utf8(s, len, i, flags, &err);
            if (n == 0)
                return err;
        } else if (!addr_is_alnum(c)) {
            return addr_bad_octet(c, flags, ADDR_EDOMAIN);
        }
        label += n;
        if (label > 63)
            return ADDR_EDOMAIN;
        i += n;
    }
    if (label == 0 || s[len - 1] == '-')
        return ADDR_EDOMAIN; /* empty domain, trailing dot or hyphen */
    if (len > ADDR_DOMAIN_MAX)
        return ADDR_EDOMAIN_LONG;
    return ADDR_OK;
}

static bool addr_any_high(const unsigned char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] >= 0x80)
            return true;
    return false;
}

/*
 * Mailbox at s[0..len) where the domain runs to len exactly.  Fills out.
 */
static int addr_mailbox(const unsigned char *s, size_t len, int flags, struct mailaddr *out)
{
    size_t lend = 0;
    bool quoted, literal;
    int err;

    err = addr_local(s, len, flags, &lend, &quoted);
    if (err != ADDR_OK)
        return err;
    if (lend > ADDR_LOCAL_MAX)
        return ADDR_ELOCAL_LONG;
    if (lend >= len || s[lend] != '@')
        return lend < len ? addr_bad_octet(s[lend], flags, ADDR_ESYNTAX) : ADDR_ESYNTAX;
    err = addr_domain(s + lend + 1, len - lend - 1, flags, &literal);
    if (err != ADDR_OK)
        return err;
    memcpy(out->local, s, lend);
    out->local[lend] = '\0';
    memcpy(out->domain, s + lend + 1, len - lend - 1);
    out->domain[len - lend - 1] = '\0';
    out->is_quoted = quoted;
    out->is_literal = literal;
    out->has_utf8 = addr_any_high(s, len);
    return ADDR_OK;
}

/*
 * Where the domain of a bracketed mailbox starting at s[0] ends: at the first
 * '>' after the local part's '@'.  Returns the index of '>' or len.
 */
static size_t addr_find_close(const unsigned char *s, size_t len, int flags)
{
    size_t lend = 0;
    bool quoted;

    if (addr_local(s, len, flags, &lend, &quoted) != ADDR_OK)
        return len;
    const unsigned char *gt = memchr(s + lend, '>', len - lend);
    return gt != NULL ? (size_t)(gt - s) : len;
}

/* Source route "@d1,@d2:" at s[0..len); *end is the index after ':'. */
static int addr_route(const unsigned char *s, size_t len, int flags, size_t *end)
{
    size_t i = 0;
    bool literal;

    for (;;) {
        if (i >= len || s[i] != '@')
            return i < len ? addr_bad_octet(s[i], flags, ADDR_ESYNTAX) : ADDR_ESYNTAX;
        i++;
        size_t start = i;
        while (i < len && s[i] != ',' && s[i] != ':' && s[i] != '>')
            i++;
        int err = addr_domain(s + start, i - start, flags, &literal);
        if (err != ADDR_OK)
            return err;
        if (i >= len || s[i] == '>')
            return ADDR_ESYNTAX;
        if (s[i++] == ':')
            break;
    }
    *end = i;
    return ADDR_OK;
}

int addr_parse_path(const char *str, size_t len, int flags, struct mailaddr *out, size_t *used)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 1, close;
    int err;

    memset(out, 0, sizeof(*out));
    *used = 0;
    if (len == 0 || s[0] != '<')
        return len > 0 ? addr_bad_octet(s[0], flags, ADDR_ESYNTAX) : ADDR_ESYNTAX;
    if (len >= 2 && s[1] == '>') {
        if (!(flags & ADDR_ALLOW_NULL))
            return ADDR_ENULL;
        out->is_null = true;
        *used = 2;
        return ADDR_OK;
    }
    if (len > 1 && s[1] == '@') {
        size_t rend;
        err = addr_route(s + 1, len - 1, flags, &rend);
        if (err != ADDR_OK)
            return err;
        out->had_route = true;
        i = 1 + rend;
    }
    close = i + addr_find_close(s + i, len - i, flags);
    err = addr_mailbox(s + i, close - i, flags, out);
    if (err == ADDR_OK && close >= len)
        err = ADDR_ESYNTAX; /* no '>' */
    if (err == ADDR_OK && close + 1 > ADDR_PATH_MAX)
        err = ADDR_EPATH_LONG;
    if (err != ADDR_OK) {
        memset(out, 0, sizeof(*out));
        return err;
    }
    *used = close + 1;
    return ADDR_OK;
}

int addr_parse_mailbox(const char *str, size_t len, int flags, struct mailaddr *out)
{
    int err;

    memset(out, 0, sizeof(*out));
    err = addr_mailbox((const unsigned char *)str, len, flags, out);
    if (err == ADDR_OK && len + 2 > ADDR_PATH_MAX)
        err = ADDR_EPATH_LONG; /* would not fit as a path */
    if (err != ADDR_OK)
        memset(out, 0, sizeof(*out));
    return err;
}

size_t addr_format(const struct mailaddr *a, char *buf, size_t size)
{
    size_t ll, dl, need;

    if (a->is_null) {
        if (size > 0)
            buf[0] = '\0';
        return 0;
    }
    ll = strlen(a->local);
    dl = strlen(a->domain);
    need = dl ? ll + 1 + dl : ll; /* "Postmaster" has no domain */
    if (size == 0)
        return need;
    size_t n = 0;
    for (size_t k = 0; k < need && n + 1 < size; k++, n++)
        buf[n] = k < ll ? a->local[k] : k == ll ? '@' : a->domain[k - ll - 1];
    buf[n] = '\0';
    return need;
}

const char *addr_strerror(int err)
{
    switch (err) {
    case ADDR_OK:
        return "ok";
    case ADDR_ESYNTAX:
        return "address syntax error";
    case ADDR_ELOCAL_LONG:
        return "local part longer than 64 octets";
    case ADDR_EDOMAIN_LONG:
        return "domain longer than 255 octets";
    case ADDR_EPATH_LONG:
        return "path longer than 256 octets";
    case ADDR_ECTRL:
        return "control character in address";
    case ADDR_EUTF8:
        return "non-ASCII or invalid UTF-8 in address";
    case ADDR_ENULL:
        return "null address not allowed here";
    case ADDR_EDOMAIN:
        return "invalid domain";
    case ADDR_ELITERAL:
        return "invalid address literal";
    default:
        return "unknown address error";
    }
}
