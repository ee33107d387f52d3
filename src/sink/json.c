/*
 * json.c - strings into JSON for the sink's APIs (see json.h).
 */
#include "sink/json.h"

#include <stdlib.h>
#include <string.h>

#include "core/address.h" /* utf8_valid() */

json_t *sink_json_str(const char *s)
{
    if (!s)
        s = "";
    size_t n = strlen(s);
    if (utf8_valid(s, n))
        return json_stringn(s, n);
    char *c = malloc(n + 1);
    if (!c)
        return NULL;
    for (size_t i = 0; i <= n; i++)
        c[i] = (unsigned char)s[i] >= 0x80 ? '?' : s[i];
    json_t *j = json_stringn(c, n);
    free(c);
    return j;
}
