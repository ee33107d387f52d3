/*
 * fuzz_search.c - libFuzzer harness for sink/search.c.
 *
 * The input is split at its first NUL: the part before is the query, the
 * part after the message text (also read as HTML and as a date).
 * Invariants: search_parse() gives 0 or -2 with a non-empty printable why,
 * never more than SEARCH_MAX_TERMS terms; every term's value other than a
 * subject's is clean (lower case, no separator, no leading, trailing or
 * double space); cleaning never grows the text and is idempotent; matching
 * any message never crashes; a query always matches a message when it has
 * no terms.  Inputs are copied into exact-size heap blocks for ASan.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sink/search.h"

static void check_clean(const char *s)
{
    size_t n = strlen(s);
    if (n && (s[0] == ' ' || s[n - 1] == ' '))
        abort();
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || strchr("\t\r\n<>\",;()", c) ||
            (c == ' ' && i && s[i - 1] == ' '))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t qlen = nul ? (size_t)(nul - data) : size;
    size_t tlen = nul ? size - qlen - 1 : 0;
    char *query = malloc(qlen ? qlen : 1);
    char *text = malloc(tlen + 1);
    char *clean = malloc(tlen + 1), *clean2 = malloc(tlen + 1);
    struct search_query q;
    char why[128];
    int64_t ms;

    if (!query || !text || !clean || !clean2)
        goto out;
    memcpy(query, data, qlen);
    memcpy(text, data + qlen + (nul ? 1 : 0), tlen);
    text[tlen] = '\0';

    int rc = search_parse(query, qlen, &q, why, sizeof(why));
    if (rc == -2) {
        size_t n = strlen(why);
        if (n == 0 || n >= sizeof(why))
            abort();
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)why[i] < 0x20 || (unsigned char)why[i] > 0x7e)
                abort();
    } else if (rc == 0) {
        if (q.nterms > SEARCH_MAX_TERMS)
            abort();
        for (size_t i = 0; i < q.nterms; i++)
            if (q.terms[i].field != SF_SUBJECT)
                check_clean(q.terms[i].value);
        struct search_doc d = {.from = text,
                               .to = text,
                               .subject = text,
                               .text = text,
                               .html = text,
                               .size = tlen,
                               .received_ms = (int64_t)tlen * 1000};
        bool hit = search_match(&q, &d);
        if (q.nterms == 0 && !hit)
            abort();
        search_free(&q);
    } else if (rc != -1) {
        abort();
    }

    size_t n = search_clean(text, tlen, clean);
    if (n > tlen || strlen(clean) != n)
        abort();
    check_clean(clean);
    if (search_clean(clean, n, clean2) != n || memcmp(clean, clean2, n) != 0)
        abort();
    char *h = search_html_text(text, tlen);
    if (h) {
        check_clean(h);
        free(h);
    }
    if (search_parse_date(text, tlen, &ms) == 0 &&
        (ms < -62167219200000LL * 2 || ms > 253402300800000LL * 2))
        abort();
    (void)search_size(text);
out:
    free(query);
    free(text);
    free(clean);
    free(clean2);
    return 0;
}
