/*
 * fuzz_mime.c - libFuzzer harness for sink/mime.c.
 *
 * Parses the input, then asks mime_part_data() for every part.  Invariants:
 * every string is valid UTF-8 of its stated length, at most MIME_MAX_PARTS
 * parts with strictly increasing indexes, each part's data has the size the
 * parse reported, no decoded size exceeds the input's, and a part number
 * that is no entity gives -2.  The input is copied into an exact-size heap
 * block, so ASan catches any read past its end.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sink/mime.h"

static void check(const char *s)
{
    if (!s || !mime_utf8_valid(s, strlen(s)))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *raw = malloc(size ? size : 1);
    struct mime_msg m;

    if (!raw)
        return 0;
    if (size)
        memcpy(raw, data, size);
    if (mime_parse(raw, size, &m) < 0) {
        free(raw);
        return 0;
    }
    check(m.subject);
    check(m.date);
    check(m.message_id);
    check(m.snippet);
    check(m.charset_fallback);
    check(m.text);
    check(m.html);
    if (strlen(m.text) != m.text_len || strlen(m.html) != m.html_len)
        abort();
    const struct mime_addr *lists[] = {m.from, m.to, m.cc, m.reply_to, m.bcc};
    size_t counts[] = {m.nfrom, m.nto, m.ncc, m.nreply_to, m.nbcc};
    for (int l = 0; l < 5; l++)
        for (size_t i = 0; i < counts[l]; i++) {
            check(lists[l][i].name);
            check(lists[l][i].address);
        }
    for (size_t i = 0; i < m.nheaders; i++) {
        check(m.hnames[i]);
        check(m.hvalues[i]);
    }
    if (m.nparts > MIME_MAX_PARTS)
        abort();
    for (size_t i = 0; i < m.nparts; i++) {
        const struct mime_part *p = &m.parts[i];
        check(p->content_type);
        check(p->charset);
        check(p->filename);
        check(p->content_id);
        check(p->disposition);
        if (p->size > size || p->index >= MIME_MAX_PARTS || (i && p->index <= m.parts[i - 1].index))
            abort();
        char *d;
        size_t dl;
        int r = mime_part_data(raw, size, p->index, &d, &dl);
        if (r == -1)
            continue;
        if (r != 0 || dl != p->size)
            abort();
        free(d);
    }
    char *d;
    size_t dl;
    if (mime_part_data(raw, size, MIME_MAX_PARTS, &d, &dl) != -2)
        abort();
    mime_free(&m);
    free(raw);
    return 0;
}
