/*
 * command.c - SMTP command lines, MAIL/RCPT arguments and ESMTP parameters.
 *
 * cmd_parse() only splits a line into a verb and its argument; the MAIL and
 * RCPT parsers then read "<path> *(SP keyword[=value])" strictly, with the
 * path delegated to address.c.  Every refusal carries the exact reply
 * (static strings, nothing allocated):
 *   500 5.5.2  unknown verb                 501 5.5.4  malformed MAIL/RCPT, bad value
 *   553 5.1.7  bad sender address (MAIL)    553 5.1.3  bad recipient address (RCPT)
 *   553 5.6.7  non-ASCII address without SMTPUTF8 (RFC 6531 3.6.1)
 *   555 5.5.4  unknown, unoffered or repeated parameter
 *   552 5.3.4  SIZE= above the server's maximum (RFC 1870)
 * The address texts come from addr_strerror().  Separators between
 * parameters may be runs of spaces and trailing spaces are tolerated; a TAB
 * or any other control inside a parameter is a 501.  RCPT TO:<Postmaster>
 * (no domain, RFC 5321 4.1.1.3) is accepted with an empty to.domain.
 *
 * Never: allocates, reads past len, or leaves *out partly filled from a
 * previous call (it is zeroed first).
 */
#include "core/command.h"

#include <string.h>

static const struct {
    const char *name;
    enum smtp_verb verb;
} cmd_verbs[] = {
    {"HELO", CMD_HELO}, {"EHLO", CMD_EHLO}, {"MAIL", CMD_MAIL},         {"RCPT", CMD_RCPT},
    {"DATA", CMD_DATA}, {"RSET", CMD_RSET}, {"NOOP", CMD_NOOP},         {"QUIT", CMD_QUIT},
    {"VRFY", CMD_VRFY}, {"HELP", CMD_HELP}, {"STARTTLS", CMD_STARTTLS}, {"AUTH", CMD_AUTH},
    {"EXPN", CMD_EXPN},
};

static int cmd_fail(struct cmd_error *err, int code, const char *enh, const char *text)
{
    err->code = code;
    err->enh = enh;
    err->text = text;
    return -1;
}

static unsigned char cmd_upper(unsigned char c)
{
    return (c >= 'a' && c <= 'z') ? (unsigned char)(c - 'a' + 'A') : c;
}

/* ASCII case-insensitive: s[0..n) equals the upper-case word w (strlen(w) == n). */
static bool cmd_ieq(const char *s, size_t n, const char *w)
{
    if (strlen(w) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (cmd_upper((unsigned char)s[i]) != (unsigned char)w[i])
            return false;
    return true;
}

/* s[0..n) starts with the upper-case word w, case-insensitively. */
static bool cmd_iprefix(const char *s, size_t n, const char *w)
{
    size_t wl = strlen(w);
    return n >= wl && cmd_ieq(s, wl, w);
}

int cmd_parse(const char *line, size_t len, struct smtp_command *out, struct cmd_error *err)
{
    size_t vlen = 0, p;

    out->verb = CMD_UNKNOWN;
    out->arg = line + len;
    out->arglen = 0;
    while (vlen < len && line[vlen] != ' ')
        vlen++;
    for (size_t k = 0; k < sizeof(cmd_verbs) / sizeof(cmd_verbs[0]); k++) {
        if (cmd_ieq(line, vlen, cmd_verbs[k].name)) {
            out->verb = cmd_verbs[k].verb;
            break;
        }
    }
    if (out->verb == CMD_UNKNOWN)
        return cmd_fail(err, 500, "5.5.2", "Command unrecognized");
    p = vlen < len ? vlen + 1 : len;
    if (out->verb == CMD_MAIL || out->verb == CMD_RCPT) {
        bool mail = out->verb == CMD_MAIL;
        const char *pre = mail ? "FROM:" : "TO:";
        if (vlen >= len || !cmd_iprefix(line + p, len - p, pre))
            return cmd_fail(err, 501, "5.5.4",
                            mail ? "Syntax: MAIL FROM:<address>" : "Syntax: RCPT TO:<address>");
        p += strlen(pre);
        if (p < len && line[p] == ' ')
            p++;
    }
    out->arg = line + p;
    out->arglen = len - p;
    return 0;
}

static int cmd_hexval(char c)
{
    /* RFC 3461: "+" and two upper-case hexadecimal digits */
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int xtext_encode(const char *s, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    if (size == 0)
        return -1;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        bool plain = ch >= '!' && ch <= '~' && ch != '+' && ch != '=';
        if (o + (plain ? 1 : 3) >= size) {
            out[0] = '\0';
            return -1;
        }
        if (plain) {
            out[o++] = (char)ch;
        } else {
            out[o++] = '+';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = '\0';
    return (int)o;
}

int xtext_decode(const char *s, size_t len, char *out, size_t size)
{
    size_t n = 0;

    if (size == 0 || len > (size_t)0x7fffffff)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (n + 1 >= size)
            return -1;
        if (c == '+') {
            if (len - i < 3)
                return -1;
            int h = cmd_hexval(s[i + 1]), l = cmd_hexval(s[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            out[n++] = (char)((h << 4) | l);
            i += 2;
        } else if (c >= 33 && c <= 126 && c != '=') {
            out[n++] = (char)c;
        } else {
            return -1;
        }
    }
    out[n] = '\0';
    return (int)n;
}

/* xtext syntax check, with UTF-8 allowed when utf8 (RFC 6531 esmtp-value). */
static bool cmd_xtext_ok(const char *s, size_t len, bool utf8)
{
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            size_t j = i;
            while (j < len && (unsigned char)s[j] >= 0x80)
                j++;
            if (!utf8 || !utf8_valid(s + i, j - i))
                return false;
            i = j;
        } else if (c == '+') {
            char tmp[2];
            if (len - i < 3 || xtext_decode(s + i, 3, tmp, sizeof(tmp)) != 1)
                return false;
            i += 3;
        } else if (c >= 33 && c <= 126 && c != '=') {
            i++;
        } else {
            return false;
        }
    }
    return true;
}

static bool cmd_is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

enum cmd_param {
    P_SIZE,
    P_BODY,
    P_SMTPUTF8,
    P_AUTH,
    P_RET,
    P_ENVID,
    P_NOTIFY,
    P_ORCPT,
};

static const struct {
    const char *name;
    enum cmd_param id;
    unsigned ext;
    bool mail; /* MAIL parameter (else RCPT) */
} cmd_params[] = {
    {"SIZE", P_SIZE, EXT_SIZE, true},
    {"BODY", P_BODY, EXT_8BITMIME, true},
    {"SMTPUTF8", P_SMTPUTF8, EXT_SMTPUTF8, true},
    {"AUTH", P_AUTH, EXT_AUTH, true},
    {"RET", P_RET, EXT_DSN, true},
    {"ENVID", P_ENVID, EXT_DSN, true},
    {"NOTIFY", P_NOTIFY, EXT_DSN, false},
    {"ORCPT", P_ORCPT, EXT_DSN, false},
};

/* One parameter token, split. */
struct cmd_token {
    const char *key;
    size_t keylen;
    const char *val; /* NULL when there is no '=' */
    size_t vallen;
};

/*
 * Walk the parameters after the path: calls step for each.  Returns 0, or -1
 * with *err (501 for syntax, 555 for unknown/unoffered/duplicate).
 */
static int cmd_next_param(const char *s, size_t len, size_t *pos, bool mail, unsigned ext,
                          unsigned *seen, struct cmd_token *t, enum cmd_param *id,
                          struct cmd_error *err)
{
    size_t i = *pos, start, eq;

    while (i < len && s[i] == ' ')
        i++;
    if (i >= len) {
        *pos = i;
        return 1; /* no more */
    }
    start = i;
    while (i < len && s[i] != ' ')
        i++;
    *pos = i;
    eq = start;
    while (eq < i && s[eq] != '=')
        eq++;
    t->key = s + start;
    t->keylen = eq - start;
    t->val = eq < i ? s + eq + 1 : NULL;
    t->vallen = eq < i ? i - eq - 1 : 0;

    if (t->keylen == 0 || !cmd_is_alnum((unsigned char)t->key[0]))
        return cmd_fail(err, 501, "5.5.4", "Malformed parameter");
    for (size_t k = 1; k < t->keylen; k++)
        if (!cmd_is_alnum((unsigned char)t->key[k]) && t->key[k] != '-')
            return cmd_fail(err, 501, "5.5.4", "Malformed parameter");
    if (t->val != NULL) {
        if (t->vallen == 0)
            return cmd_fail(err, 501, "5.5.4", "Malformed parameter value");
        for (size_t k = 0; k < t->vallen; k++) {
            unsigned char c = (unsigned char)t->val[k];
            if (c < 33 || c == '=' || c == 127)
                return cmd_fail(err, 501, "5.5.4", "Malformed parameter value");
        }
    }
    for (size_t k = 0; k < sizeof(cmd_params) / sizeof(cmd_params[0]); k++) {
        if (cmd_params[k].mail != mail || !cmd_ieq(t->key, t->keylen, cmd_params[k].name))
            continue;
        if (!(ext & cmd_params[k].ext))
            break;
        if (*seen & (1u << cmd_params[k].id))
            return cmd_fail(err, 555, "5.5.4", "Duplicate parameter");
        *seen |= 1u << cmd_params[k].id;
        *id = cmd_params[k].id;
        return 0;
    }
    return cmd_fail(err, 555, "5.5.4", "Unsupported parameter");
}

static int cmd_addr_fail(struct cmd_error *err, int e, bool utf8_allowed, bool sender)
{
    if (e == ADDR_EUTF8 && !utf8_allowed)
        return cmd_fail(err, 553, "5.6.7", "Non-ASCII address requires SMTPUTF8");
    return cmd_fail(err, 553, sender ? "5.1.7" : "5.1.3", addr_strerror(e));
}

static int cmd_parse_size(const struct cmd_token *t, uint64_t max_size, uint64_t *size,
                          struct cmd_error *err)
{
    uint64_t v = 0;

    if (t->val == NULL || t->vallen > 20)
        return cmd_fail(err, 501, "5.5.4", "Invalid SIZE value");
    for (size_t k = 0; k < t->vallen; k++) {
        unsigned d = (unsigned char)t->val[k] - '0';
        if (d > 9)
            return cmd_fail(err, 501, "5.5.4", "Invalid SIZE value");
        v = (v > (UINT64_MAX - d) / 10) ? UINT64_MAX : v * 10 + d; /* saturate */
    }
    if (max_size != 0 && v > max_size)
        return cmd_fail(err, 552, "5.3.4", "Message size exceeds fixed maximum message size");
    *size = v;
    return 0;
}

int cmd_parse_mail(const char *arg, size_t len, unsigned ext, uint64_t max_size,
                   struct mail_params *out, struct cmd_error *err)
{
    int flags = ADDR_ALLOW_NULL | ((ext & EXT_SMTPUTF8) ? ADDR_ALLOW_UTF8 : 0);
    size_t used, pos;
    unsigned seen = 0;
    struct cmd_token t;
    enum cmd_param id = P_SIZE;
    int e, r;

    memset(out, 0, sizeof(*out));
    if (len == 0 || arg[0] != '<')
        return cmd_fail(err, 501, "5.5.4", "Syntax: MAIL FROM:<address>");
    e = addr_parse_path(arg, len, flags, &out->from, &used);
    if (e != ADDR_OK)
        return cmd_addr_fail(err, e, (flags & ADDR_ALLOW_UTF8) != 0, true);
    if (used < len && arg[used] != ' ')
        return cmd_fail(err, 501, "5.5.4", "Syntax: MAIL FROM:<address> [parameters]");
    pos = used;
    while ((r = cmd_next_param(arg, len, &pos, true, ext, &seen, &t, &id, err)) == 0) {
        switch (id) {
        case P_SIZE:
            if (cmd_parse_size(&t, max_size, &out->size, err) != 0)
                return -1;
            out->size_given = true;
            break;
        case P_BODY:
            if (t.val != NULL && cmd_ieq(t.val, t.vallen, "7BIT"))
                out->body = BODY_7BIT;
            else if (t.val != NULL && cmd_ieq(t.val, t.vallen, "8BITMIME"))
                out->body = BODY_8BITMIME;
            else
                return cmd_fail(err, 501, "5.5.4", "Invalid BODY value");
            break;
        case P_SMTPUTF8:
            if (t.val != NULL)
                return cmd_fail(err, 501, "5.5.4", "SMTPUTF8 takes no value");
            out->smtputf8 = true;
            break;
        case P_AUTH:
            if (t.val == NULL)
                return cmd_fail(err, 501, "5.5.4", "Invalid AUTH value");
            if (t.vallen == 2 && t.val[0] == '<' && t.val[1] == '>') {
                out->auth[0] = '\0';
            } else {
                int n = xtext_decode(t.val, t.vallen, out->auth, sizeof(out->auth));
                if (n <= 0)
                    return cmd_fail(err, 501, "5.5.4", "Invalid AUTH value");
                for (int k = 0; k < n; k++) {
                    unsigned char c = (unsigned char)out->auth[k];
                    if (c < 0x20 || c == 0x7f)
                        return cmd_fail(err, 501, "5.5.4", "Invalid AUTH value");
                }
            }
            out->auth_given = true;
            break;
        case P_RET:
            if (t.val != NULL && cmd_ieq(t.val, t.vallen, "FULL"))
                out->ret = RET_FULL;
            else if (t.val != NULL && cmd_ieq(t.val, t.vallen, "HDRS"))
                out->ret = RET_HDRS;
            else
                return cmd_fail(err, 501, "5.5.4", "Invalid RET value");
            break;
        case P_ENVID:
            if (t.val == NULL || t.vallen > ENVID_MAX || !cmd_xtext_ok(t.val, t.vallen, false))
                return cmd_fail(err, 501, "5.5.4", "Invalid ENVID value");
            memcpy(out->envid, t.val, t.vallen);
            out->envid[t.vallen] = '\0';
            break;
        default:
            return cmd_fail(err, 555, "5.5.4", "Unsupported parameter");
        }
    }
    if (r < 0)
        return -1;
    if (out->from.has_utf8 && !out->smtputf8)
        return cmd_fail(err, 553, "5.6.7", "Non-ASCII address requires SMTPUTF8");
    return 0;
}

/* NOTIFY=NEVER / 1#(SUCCESS / FAILURE / DELAY) */
static int cmd_parse_notify(const struct cmd_token *t, unsigned *bits)
{
    size_t i = 0;

    *bits = 0;
    if (t->val == NULL)
        return -1;
    if (cmd_ieq(t->val, t->vallen, "NEVER")) {
        *bits = NOTIFY_NEVER;
        return 0;
    }
    while (i <= t->vallen) {
        size_t j = i;
        unsigned b;
        while (j < t->vallen && t->val[j] != ',')
            j++;
        if (cmd_ieq(t->val + i, j - i, "SUCCESS"))
            b = NOTIFY_SUCCESS;
        else if (cmd_ieq(t->val + i, j - i, "FAILURE"))
            b = NOTIFY_FAILURE;
        else if (cmd_ieq(t->val + i, j - i, "DELAY"))
            b = NOTIFY_DELAY;
        else
            return -1; /* unknown, empty, or NEVER in a list */
        if (*bits & b)
            return -1;
        *bits |= b;
        i = j + 1;
    }
    return 0;
}

/* ORCPT=addr-type ";" xtext, at most ORCPT_MAX octets as written. */
static bool cmd_orcpt_ok(const struct cmd_token *t, bool smtputf8)
{
    size_t i = 0;

    if (t->val == NULL || t->vallen > ORCPT_MAX)
        return false;
    while (i < t->vallen && (cmd_is_alnum((unsigned char)t->val[i]) || t->val[i] == '-'))
        i++;
    if (i == 0 || i >= t->vallen || t->val[i] != ';' || i + 1 >= t->vallen)
        return false;
    return cmd_xtext_ok(t->val + i + 1, t->vallen - i - 1, smtputf8);
}

int cmd_parse_rcpt(const char *arg, size_t len, unsigned ext, bool smtputf8,
                   struct rcpt_params *out, struct cmd_error *err)
{
    int flags = smtputf8 ? ADDR_ALLOW_UTF8 : 0;
    size_t used, pos;
    unsigned seen = 0;
    struct cmd_token t;
    enum cmd_param id = P_NOTIFY;
    int e, r;

    memset(out, 0, sizeof(*out));
    if (len == 0 || arg[0] != '<')
        return cmd_fail(err, 501, "5.5.4", "Syntax: RCPT TO:<address>");
    if (len >= 12 && cmd_ieq(arg, 12, "<POSTMASTER>")) {
        /* RFC 5321 4.1.1.3: the domain-less postmaster must be accepted */
        memcpy(out->to.local, arg + 1, 10);
        out->to.local[10] = '\0';
        used = 12;
    } else {
        e = addr_parse_path(arg, len, flags, &out->to, &used);
        if (e != ADDR_OK)
            return cmd_addr_fail(err, e, smtputf8, false);
    }
    if (used < len && arg[used] != ' ')
        return cmd_fail(err, 501, "5.5.4", "Syntax: RCPT TO:<address> [parameters]");
    pos = used;
    while ((r = cmd_next_param(arg, len, &pos, false, ext, &seen, &t, &id, err)) == 0) {
        switch (id) {
        case P_NOTIFY:
            if (cmd_parse_notify(&t, &out->notify) != 0)
                return cmd_fail(err, 501, "5.5.4", "Invalid NOTIFY value");
            break;
        case P_ORCPT:
            if (!cmd_orcpt_ok(&t, smtputf8))
                return cmd_fail(err, 501, "5.5.4", "Invalid ORCPT value");
            memcpy(out->orcpt, t.val, t.vallen);
            out->orcpt[t.vallen] = '\0';
            break;
        default:
            return cmd_fail(err, 555, "5.5.4", "Unsupported parameter");
        }
    }
    return r < 0 ? -1 : 0;
}

const char *cmd_verb_name(enum smtp_verb v)
{
    for (size_t k = 0; k < sizeof(cmd_verbs) / sizeof(cmd_verbs[0]); k++)
        if (cmd_verbs[k].verb == v)
            return cmd_verbs[k].name;
    return "UNKNOWN";
}
