/*
 * fuzz_bounce.c - libFuzzer harness for send/bounce.c.
 *
 * Invariants: the parser returns for any input; at most BOUNCE_MAX_RCPTS
 * recipients and BOUNCE_MAX_HINTS hints; every string it copies out is
 * NUL-terminated inside its field, holds no control character, and every
 * address has an '@' that is neither first nor last; a status is "" or an
 * enhanced code starting with 2, 4 or 5; the kind agrees with
 * bounce_classify() of what was kept for a delivery-status recipient.  The
 * input is copied into an exact-size heap block, so ASan catches any read
 * past its end.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "send/bounce.h"

static void check_str(const char *s, size_t size)
{
    size_t n = strnlen(s, size);
    if (n == size)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
            abort();
}

static void check_addr(const char *a, size_t size)
{
    check_str(a, size);
    const char *at = strrchr(a, '@');
    if (!at || at == a || at[1] == '\0')
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct bounce_report r;
    char *text = malloc(size ? size : 1);
    if (!text)
        return 0;
    if (size)
        memcpy(text, data, size);
    bounce_parse(text, size, &r);
    if (r.nrcpts > BOUNCE_MAX_RCPTS || r.nhints > BOUNCE_MAX_HINTS)
        abort();
    check_str(r.envid, sizeof(r.envid));
    for (size_t i = 0; i < r.nhints; i++)
        check_addr(r.hints[i], sizeof(r.hints[i]));
    for (size_t i = 0; i < r.nrcpts; i++) {
        const struct bounce_rcpt *b = &r.rcpts[i];
        check_addr(b->addr, sizeof(b->addr));
        check_str(b->action, sizeof(b->action));
        check_str(b->status, sizeof(b->status));
        check_str(b->diag, sizeof(b->diag));
        if (b->status[0] && b->status[0] != '2' && b->status[0] != '4' && b->status[0] != '5')
            abort();
        if (b->kind != BOUNCE_NONE && b->kind != BOUNCE_SOFT && b->kind != BOUNCE_HARD)
            abort();
        if (b->action[0] && b->kind != bounce_classify(b->action, b->status, b->diag))
            abort();
    }
    free(text);
    return 0;
}
