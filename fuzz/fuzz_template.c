/*
 * fuzz_template.c - libFuzzer harness for send/template.c (and the CSV
 * reader under it).
 *
 * The input is split at its first NUL: the template text before it, one CSV
 * document after it.  When both parse, every row is rendered (whether or
 * not template_check passes).  A rendered message must use CRLF only (no
 * bare CR or LF), have a header section ending in an empty line, and no
 * header line longer than 998 octets.  A refusal must say why.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "send/template.h"

static void check_message(const char *m, size_t len)
{
    size_t col = 0, hdr_end = 0;

    if (strlen(m) != len)
        abort();
    for (size_t i = 0; i < len; i++) {
        if (m[i] == '\r' && (i + 1 == len || m[i + 1] != '\n'))
            abort();
        if (m[i] == '\n' && (i == 0 || m[i - 1] != '\r'))
            abort();
    }
    for (size_t i = 0; i + 1 < len; i++) { /* the header section */
        if (m[i] == '\r') {
            if (col == 0) {
                hdr_end = i + 2;
                break;
            }
            col = 0;
            i++;
            continue;
        }
        if (++col > 998)
            abort();
    }
    if (hdr_end == 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *nul = memchr(text, '\0', size);
    size_t tlen = nul ? (size_t)(nul - text) : size;
    const char *list = nul ? nul + 1 : "email\nx@y\n";
    size_t llen = nul ? size - tlen - 1 : strlen(list);
    char why[512];
    struct csv_table t;

    struct template *tp = template_parse("t.eml", text, tlen, why, sizeof(why));
    if (tp == NULL) {
        if (why[0] == '\0')
            abort();
        return 0;
    }
    if (csv_table_parse("l.csv", list, llen, &t, why, sizeof(why)) != 0) {
        template_free(tp);
        return 0;
    }
    int ok = template_check(tp, &t, why, sizeof(why)) == 0;
    struct render_opts o = {.from = "sender@example.org", .now = 1796119200, .msgid_seed = "f"};
    for (size_t r = 0; r < t.nrows && r < 64; r++) {
        char *out = NULL;
        size_t outlen = 0;
        int e = csv_col(&t, "email");
        o.to = e >= 0 ? t.rows[r].fields[e] : NULL;
        if (template_render(tp, &t, &t.rows[r], &o, &out, &outlen, why, sizeof(why)) != 0) {
            if (why[0] == '\0' || out != NULL)
                abort();
            continue;
        }
        if (!ok)
            abort(); /* rendered although a column is missing */
        check_message(out, outlen);
        free(out);
    }
    csv_table_free(&t);
    template_free(tp);
    return 0;
}
