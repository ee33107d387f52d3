/*
 * fuzz_num.c - the number parsers of core/num.c and core/netaddr.c on
 * arbitrary strings.  Invariants: results respect their stated bounds and a
 * parsed endpoint formats and parses back to the same address.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/netaddr.h"
#include "core/num.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char s[128], buf[128];
    uint64_t v;
    double pct;
    struct sockaddr_storage ss, ss2;
    socklen_t len, len2;
    const char *why;

    if (size >= sizeof(s))
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    if (num_parse_u64(s, 1000, &v) == 0 && v > 1000)
        abort();
    if (num_parse_percent(s, &pct) == 0 && (pct < 0 || pct > 100))
        abort();
    if (num_parse_size(s, 1ULL << 40, &v) == 0 && v > (1ULL << 40))
        abort();
    num_parse_duration_ms(s, &v);
    if (netaddr_parse(s, &ss, &len, &why) == 0) {
        netaddr_format((struct sockaddr *)&ss, buf, sizeof(buf));
        if (netaddr_parse(buf, &ss2, &len2, &why) != 0 || len != len2 ||
            memcmp(&ss, &ss2, len) != 0)
            abort();
    }
    return 0;
}
