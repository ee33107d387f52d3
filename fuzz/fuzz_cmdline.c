/*
 * fuzz_cmdline.c - command line splitting and substitution
 * (deliver/cmdline.c) on arbitrary input.  The input is a template, then
 * optionally a NUL and up to five envelope values separated by NULs.
 * Invariants: a split never yields a control character, never more than
 * the word and length limits, and quoting each word back ('...' with '\''
 * for quotes) splits to the same words; substitution never changes the
 * number of words, never puts a control character in one, and a word
 * starts with '-' only where the template put a '-' in it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "deliver/cmdline.h"

static void check_words(const struct cmdline *c)
{
    size_t total = 0;
    if (c->argc < 1 || c->argc > CMDLINE_MAX_WORDS || c->argv[c->argc] != NULL)
        abort();
    for (int i = 0; i < c->argc; i++) {
        for (const char *p = c->argv[i]; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                abort();
        total += strlen(c->argv[i]);
    }
    if (total > CMDLINE_MAX_LEN)
        abort();
}

static struct cmdline tmpl, again, out;
static char quoted[4 * CMDLINE_MAX_LEN + 4 * CMDLINE_MAX_WORDS];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *nul = memchr(s, '\0', size);
    size_t tlen = nul ? (size_t)(nul - s) : size;
    struct cmdline_error err;
    char msg[128];

    if (cmdline_split(s, tlen, &tmpl, &err) != 0) {
        if (err.code == CMDLINE_OK || err.pos > tlen || !err.what || tmpl.argc != 0)
            abort();
        cmdline_error_format(&err, msg, sizeof(msg));
        return 0;
    }
    check_words(&tmpl);

    /* round trip through single quotes */
    size_t q = 0;
    for (int i = 0; i < tmpl.argc; i++) {
        quoted[q++] = '\'';
        for (const char *p = tmpl.argv[i]; *p; p++) {
            if (*p == '\'') {
                memcpy(quoted + q, "'\\''", 4);
                q += 4;
            } else {
                quoted[q++] = *p;
            }
        }
        quoted[q++] = '\'';
        quoted[q++] = ' ';
    }
    if (q <= CMDLINE_MAX_LEN) {
        if (cmdline_split(quoted, q, &again, &err) != 0 || again.argc != tmpl.argc)
            abort();
        for (int i = 0; i < tmpl.argc; i++)
            if (strcmp(again.argv[i], tmpl.argv[i]) != 0)
                abort();
    }

    /* substitution with values from the rest of the input */
    const char *vals[5] = {"", "", "", "", ""};
    if (nul) {
        const char *p = nul + 1, *end = s + size;
        char *copy = malloc((size_t)(end - p) + 1);
        if (!copy)
            return 0;
        memcpy(copy, p, (size_t)(end - p));
        copy[end - p] = '\0';
        char *v = copy;
        for (int k = 0; k < 5 && v <= copy + (end - p); k++) {
            vals[k] = v;
            v += strlen(v) + 1;
        }
        struct courier_vars cv = {vals[0], vals[1], vals[2], vals[3], vals[4]};
        if (cmdline_expand(&tmpl, &cv, &out, &err) == 0) {
            check_words(&out);
            if (out.argc != tmpl.argc || strcmp(out.argv[0], tmpl.argv[0]) != 0)
                abort();
            for (int i = 0; i < out.argc; i++)
                if (out.argv[i][0] == '-' && !strchr(tmpl.argv[i], '-'))
                    abort();
        } else {
            if (out.argc != 0 || err.code == CMDLINE_OK || err.code == CMDLINE_ESYNTAX)
                abort();
            cmdline_error_format(&err, msg, sizeof(msg));
        }
        free(copy);
    }
    return 0;
}
