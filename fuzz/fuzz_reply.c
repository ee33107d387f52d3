/*
 * fuzz_reply.c - libFuzzer harness for core/reply.c.
 *
 * Parsing: the input is cut at LF into lines fed to the parser (restarted
 * after each complete reply or error); a finished reply must have a valid
 * code, a bounded NUL-terminated text without controls other than '\n', and
 * at most REPLY_LINES_MAX lines.  Formatting: the first bytes choose a code,
 * an enhanced code and 'last'; the line must fit 512 octets, end in CRLF,
 * hold no other control, and parse back to the same code and enhanced code.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/line.h"
#include "core/reply.h"

static void check_reply(const struct reply *r)
{
    if (r->code < 200 || r->code > 599 || r->nlines == 0 || r->nlines > REPLY_LINES_MAX)
        abort();
    if (r->textlen >= REPLY_TEXT_MAX || strlen(r->text) != r->textlen)
        abort();
    for (size_t i = 0; i < r->textlen; i++) {
        unsigned char c = (unsigned char)r->text[i];
        if ((c < 0x20 && c != '\n') || c == 0x7f)
            abort();
    }
    size_t el = strlen(r->enh);
    if (el >= ENH_MAX ||
        (el > 0 && (enh_parse(r->enh, el) != el || r->enh[0] != '0' + r->code / 100)))
        abort();
}

static void fuzz_format(const uint8_t *data, size_t size)
{
    char text[700], buf[SMTP_REPLY_LINE_MAX + 8], enh[ENH_MAX];
    struct reply_parser p;

    if (size < 4)
        return;
    int code = (2 + data[0] % 4) * 100 + (data[1] % 6) * 10 + data[2] % 10;
    bool last = data[3] & 1, with_enh = data[3] & 2;
    if (with_enh && code / 100 != 3)
        snprintf(enh, sizeof(enh), "%d.%d.%d", code / 100, data[3] >> 2, data[0]);
    size_t tl = size - 4 < sizeof(text) - 1 ? size - 4 : sizeof(text) - 1;
    memcpy(text, data + 4, tl);
    text[tl] = '\0'; /* text stops at its first NUL, as a C string */
    const char *e = with_enh && code / 100 != 3 ? enh : NULL;

    size_t n = reply_format_line(buf, sizeof(buf), code, e, last, text);
    if (n > SMTP_REPLY_LINE_MAX || strlen(buf) != n || buf[n - 2] != '\r' || buf[n - 1] != '\n')
        abort();
    for (size_t i = 0; i + 2 < n; i++)
        if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
            abort();
    char small[6];
    if (reply_format_line(small, sizeof(small), code, e, last, text) != n ||
        memcmp(small, buf, sizeof(small) - 1) != 0)
        abort();

    reply_parser_init(&p);
    enum reply_status st = reply_parser_line(&p, buf, n - 2);
    if (e != NULL || enh_parse(buf + 4, n - 6) == 0) {
        if (st != (last ? REPLY_DONE : REPLY_MORE) || p.r.code != code)
            abort();
        if (e != NULL && strcmp(p.r.enh, e) != 0)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct reply_parser p;
    const char *s = (const char *)data;
    size_t off = 0;

    reply_parser_init(&p);
    while (off < size) {
        const char *lf = memchr(s + off, '\n', size - off);
        size_t n = lf != NULL ? (size_t)(lf - (s + off)) : size - off;
        size_t ln = n > 0 && s[off + n - 1] == '\r' ? n - 1 : n;
        enum reply_status st = reply_parser_line(&p, s + off, ln);
        if (st == REPLY_DONE) {
            check_reply(&p.r);
            reply_parser_init(&p);
        } else if (st == REPLY_ERROR) {
            if (p.error == NULL)
                abort();
            reply_parser_init(&p);
        } else if (p.r.nlines == 0 || p.r.nlines > REPLY_LINES_MAX) {
            abort();
        }
        off += n + (lf != NULL);
    }
    (void)enh_parse(s, size);
    fuzz_format(data, size);
    return 0;
}
