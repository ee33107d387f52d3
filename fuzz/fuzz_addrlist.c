/*
 * fuzz_addrlist.c - header address lists on arbitrary input.  Invariant:
 * every address handed out re-parses as a valid mailbox.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/addrlist.h"
#include "core/address.h"

static void fz_check(void *ctx, const char *addr)
{
    struct mailaddr a;
    (void)ctx;
    if (addr_parse_mailbox(addr, strlen(addr), ADDR_ALLOW_UTF8, &a) != ADDR_OK)
        abort();
}

static void fz_bad(void *ctx, const char *what)
{
    (void)ctx;
    (void)what;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int n = addrlist_parse((const char *)data, size, fz_check, fz_bad, NULL);
    if (n > ADDRLIST_MAX + 1)
        abort();
    return 0;
}
