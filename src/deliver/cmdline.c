/*
 * cmdline.c - command lines split without a shell, then filled in with
 * envelope values (see cmdline.h for the syntax).
 *
 * Invariants: every word lives in the struct's own buffer (no allocation);
 * splitting never produces a word with a control character; expanding
 * never changes the number of words, never lets an envelope value start a
 * word with '-' on its own account, and never touches the program word.
 * The input is read only within [0, len): it need not be NUL-terminated.
 * Nothing here runs anything: run.c does that with the argv built here.
 */
#include "deliver/cmdline.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name; /* without the '%' */
    size_t len;
    size_t off; /* offset in struct courier_vars */
    const char *label;
} cmdline_vars[] = {
    {"from", 4, offsetof(struct courier_vars, from), "%from%"},
    {"to", 2, offsetof(struct courier_vars, to), "%to%"},
    {"to_user", 7, offsetof(struct courier_vars, to_user), "%to_user%"},
    {"to_domain", 9, offsetof(struct courier_vars, to_domain), "%to_domain%"},
    {"orig_to", 7, offsetof(struct courier_vars, orig_to), "%orig_to%"},
};
#define CMDLINE_NVARS (sizeof(cmdline_vars) / sizeof(cmdline_vars[0]))

static int cmdline_fail(struct cmdline_error *err, enum cmdline_code code, size_t pos, int word,
                        const char *what, const char *var)
{
    if (err) {
        err->code = code;
        err->pos = pos;
        err->word = word;
        err->what = what;
        err->var = var;
    }
    return -1;
}

static int cmdline_is_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

int cmdline_split(const char *s, size_t len, struct cmdline *out, struct cmdline_error *err)
{
    enum { SP, WORD, SQ, DQ } st = SP;
    size_t o = 0, qpos = 0;

    out->argc = 0;
    out->argv[0] = NULL;
    if (err)
        cmdline_fail(err, CMDLINE_OK, 0, -1, "", NULL);
    if (len > CMDLINE_MAX_LEN)
        return cmdline_fail(err, CMDLINE_ELIMIT, CMDLINE_MAX_LEN, -1,
                            "command longer than 4096 octets", NULL);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (cmdline_is_ctl(c) && !(c == '\t' && (st == SP || st == WORD)))
            goto ctl;
        if (st == SP) {
            if (c == ' ' || c == '\t')
                continue;
            if (out->argc == CMDLINE_MAX_WORDS)
                goto words;
            out->argv[out->argc++] = out->buf + o;
            st = WORD;
        }
        if (st == WORD) {
            if (c == ' ' || c == '\t') {
                out->buf[o++] = '\0';
                st = SP;
            } else if (c == '\'') {
                st = SQ;
                qpos = i;
            } else if (c == '"') {
                st = DQ;
                qpos = i;
            } else if (c == '\\') {
                if (i + 1 == len)
                    goto backslash;
                c = (unsigned char)s[++i];
                if (cmdline_is_ctl(c))
                    goto ctl;
                out->buf[o++] = (char)c;
            } else {
                out->buf[o++] = (char)c;
            }
        } else if (st == SQ) {
            if (c == '\'')
                st = WORD;
            else
                out->buf[o++] = (char)c;
        } else { /* DQ */
            if (c == '"') {
                st = WORD;
            } else if (c == '\\') {
                if (i + 1 == len)
                    goto backslash;
                c = (unsigned char)s[++i];
                if (cmdline_is_ctl(c))
                    goto ctl;
                out->buf[o++] = (char)c;
            } else {
                out->buf[o++] = (char)c;
            }
        }
        continue;
    ctl:
        out->argc = 0;
        out->argv[0] = NULL;
        return cmdline_fail(err, CMDLINE_ESYNTAX, i, -1, "control character", NULL);
    backslash:
        out->argc = 0;
        out->argv[0] = NULL;
        return cmdline_fail(err, CMDLINE_ESYNTAX, i, -1, "backslash at the end of the line", NULL);
    words:
        out->argc = 0;
        out->argv[0] = NULL;
        return cmdline_fail(err, CMDLINE_ELIMIT, i, -1, "more than 64 words", NULL);
    }
    if (st == SQ || st == DQ) {
        out->argc = 0;
        out->argv[0] = NULL;
        return cmdline_fail(err, CMDLINE_ESYNTAX, qpos, -1,
                            st == SQ ? "unterminated single quote" : "unterminated double quote",
                            NULL);
    }
    if (st == WORD)
        out->buf[o++] = '\0';
    if (out->argc == 0)
        return cmdline_fail(err, CMDLINE_ESYNTAX, 0, -1, "empty command", NULL);
    out->argv[out->argc] = NULL;
    return 0;
}

/* Index into cmdline_vars if p starts with "%name%", else -1. */
static int cmdline_match(const char *p)
{
    if (p[0] != '%')
        return -1;
    for (size_t k = 0; k < CMDLINE_NVARS; k++) {
        size_t n = cmdline_vars[k].len;
        if (strncmp(p + 1, cmdline_vars[k].name, n) == 0 && p[1 + n] == '%')
            return (int)k;
    }
    return -1;
}

int cmdline_check_program(const struct cmdline *tmpl, struct cmdline_error *err)
{
    const char *prog = tmpl->argc > 0 ? tmpl->argv[0] : NULL;

    if (!prog || prog[0] == '\0')
        return cmdline_fail(err, CMDLINE_EPROGRAM, 0, 0, "empty program name", NULL);
    for (const char *p = prog; *p; p++)
        if (cmdline_match(p) >= 0)
            return cmdline_fail(err, CMDLINE_EPROGRAM, 0, 0,
                                "the program name may not contain a placeholder", NULL);
    if (prog[0] != '/' && strchr(prog, '/'))
        return cmdline_fail(err, CMDLINE_EPROGRAM, 0, 0,
                            "the program must be an absolute path or a bare name", NULL);
    return 0;
}

int cmdline_expand(const struct cmdline *tmpl, const struct courier_vars *vars, struct cmdline *out,
                   struct cmdline_error *err)
{
    static const struct courier_vars none;
    size_t o = 0, content = 0;

    out->argc = 0;
    out->argv[0] = NULL;
    if (err)
        cmdline_fail(err, CMDLINE_OK, 0, -1, "", NULL);
    if (cmdline_check_program(tmpl, err) != 0)
        return -1;
    if (!vars)
        vars = &none;
    for (int w = 0; w < tmpl->argc; w++) {
        const char *p = tmpl->argv[w];
        out->argv[w] = out->buf + o;
        while (*p) {
            const char *add = p;
            size_t n = 1;
            int k = cmdline_match(p);
            if (k >= 0) {
                const char *v = *(const char *const *)((const char *)vars + cmdline_vars[k].off);
                if (!v)
                    v = "";
                if (v[0] == '-')
                    goto value_dash;
                for (const char *q = v; *q; q++)
                    if (cmdline_is_ctl((unsigned char)*q))
                        goto value_ctl;
                add = v;
                n = strlen(v);
                p += cmdline_vars[k].len + 2;
            } else {
                p++;
            }
            if (n > CMDLINE_MAX_LEN - content)
                goto too_long;
            memcpy(out->buf + o, add, n);
            o += n;
            content += n;
            continue;
        value_dash:
            out->argc = 0;
            out->argv[0] = NULL;
            return cmdline_fail(err, CMDLINE_EVALUE, 0, w, "the value starts with '-'",
                                cmdline_vars[k].label);
        value_ctl:
            out->argc = 0;
            out->argv[0] = NULL;
            return cmdline_fail(err, CMDLINE_EVALUE, 0, w, "the value has a control character",
                                cmdline_vars[k].label);
        }
        out->buf[o++] = '\0';
    }
    out->argc = tmpl->argc;
    out->argv[out->argc] = NULL;
    return 0;
too_long:
    out->argc = 0;
    out->argv[0] = NULL;
    return cmdline_fail(err, CMDLINE_ELIMIT, 0, -1,
                        "command longer than 4096 octets once filled in", NULL);
}

void cmdline_error_format(const struct cmdline_error *err, char *buf, size_t size)
{
    if (size == 0)
        return;
    switch (err->code) {
    case CMDLINE_OK:
        snprintf(buf, size, "no error");
        break;
    case CMDLINE_ESYNTAX:
        snprintf(buf, size, "column %zu: %s", err->pos + 1, err->what);
        break;
    case CMDLINE_ELIMIT:
        if (err->word >= 0 || err->pos == 0)
            snprintf(buf, size, "%s", err->what);
        else
            snprintf(buf, size, "column %zu: %s", err->pos + 1, err->what);
        break;
    case CMDLINE_EPROGRAM:
        snprintf(buf, size, "%s", err->what);
        break;
    case CMDLINE_EVALUE:
        snprintf(buf, size, "%s in word %d: %s", err->var ? err->var : "value", err->word + 1,
                 err->what);
        break;
    }
}
