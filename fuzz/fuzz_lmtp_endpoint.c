/*
 * fuzz_lmtp_endpoint.c - the LMTP endpoint syntax of core/lmtpaddr.c
 * ([local] lmtp, and "lmtp:ENDPOINT" targets read back from the queue) on
 * arbitrary strings.  Invariants: a parsed endpoint has a NUL-terminated
 * absolute path or a host and port 1..65535 with no control characters,
 * and it formats to a text that parses back to the same endpoint.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/lmtpaddr.h"

static void check_text(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char s[600], out[600], why[256];
    struct lmtp_endpoint ep, ep2;

    if (size >= sizeof(s))
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    if (lmtp_endpoint_parse(s, &ep, why, sizeof(why)) != 0)
        return 0;
    if (ep.is_unix) {
        if (ep.path[0] != '/' || strlen(ep.path) > LMTP_PATH_MAX)
            abort();
        check_text(ep.path);
    } else {
        long port = strtol(ep.port, NULL, 10);
        if (!ep.host[0] || !ep.addr[0] || port < 1 || port > 65535)
            abort();
        check_text(ep.host);
        if (strchr(ep.addr, '[') || strchr(ep.addr, ']'))
            abort();
    }
    lmtp_endpoint_format(&ep, out, sizeof(out));
    if (lmtp_endpoint_parse(out, &ep2, why, sizeof(why)) != 0 || ep2.is_unix != ep.is_unix ||
        strcmp(ep2.path, ep.path) != 0 || strcmp(ep2.host, ep.host) != 0 ||
        strcmp(ep2.addr, ep.addr) != 0 || strcmp(ep2.port, ep.port) != 0)
        abort();
    return 0;
}
