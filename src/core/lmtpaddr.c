/*
 * lmtpaddr.c - the LMTP endpoint syntax (see lmtpaddr.h).  Pure: no I/O,
 * no allocation.
 */
#include "core/lmtpaddr.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/num.h"

__attribute__((format(printf, 3, 4))) static int lmtp_why(char *why, size_t size, const char *fmt,
                                                          ...);
static int lmtp_why(char *why, size_t size, const char *fmt, ...)
{
    if (why && size) {
        va_list ap;
        va_start(ap, fmt);
        if (vsnprintf(why, size, fmt, ap) < 0)
            why[0] = '\0';
        va_end(ap);
    }
    return -1;
}

/* A host name (letters, digits, '-', '.', '_') or "[address]" (hex, digits, ':', '.'). */
static bool lmtp_host_ok(const char *h, size_t n)
{
    if (n == 0 || n > LMTP_HOST_MAX)
        return false;
    if (h[0] == '[') {
        if (n < 3 || h[n - 1] != ']')
            return false;
        for (size_t i = 1; i + 1 < n; i++) {
            char c = h[i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                  c == ':' || c == '.'))
                return false;
        }
        return true;
    }
    if (n > 255 || h[0] == '.' || h[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '-' || c == '.' || c == '_'))
            return false;
    }
    return true;
}

int lmtp_endpoint_parse(const char *s, struct lmtp_endpoint *ep, char *why, size_t whysize)
{
    memset(ep, 0, sizeof(*ep));
    if (!s || !*s)
        return lmtp_why(why, whysize, "empty LMTP endpoint");
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return lmtp_why(why, whysize, "control character in the LMTP endpoint");
    if (strncmp(s, "unix:", 5) == 0) {
        const char *path = s + 5;
        size_t n = strlen(path);
        if (path[0] != '/')
            return lmtp_why(why, whysize, "'%.200s': the unix socket path must be absolute", s);
        if (n > LMTP_PATH_MAX)
            return lmtp_why(why, whysize, "unix socket path longer than %d octets", LMTP_PATH_MAX);
        ep->is_unix = true;
        memcpy(ep->path, path, n + 1);
        return 0;
    }
    if (strncmp(s, "inet:", 5) == 0)
        s += 5;
    size_t n = strlen(s), hl = n;
    const char *port = NULL;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close)
            return lmtp_why(why, whysize, "'%.200s': '[' without ']'", s);
        hl = (size_t)(close - s) + 1;
        if (close[1] == ':')
            port = close + 2;
        else if (close[1])
            return lmtp_why(why, whysize, "'%.200s' is not [address]:port", s);
    } else {
        const char *colon = strchr(s, ':');
        if (colon) {
            if (strchr(colon + 1, ':'))
                return lmtp_why(why, whysize,
                                "'%.200s': write an IPv6 address in brackets: [::1]:24", s);
            hl = (size_t)(colon - s);
            port = colon + 1;
        }
    }
    if (!lmtp_host_ok(s, hl))
        return lmtp_why(why, whysize, "'%.200s': '%.*s' is not a host name or [address]", s,
                        (int)(hl > 200 ? 200 : hl), s);
    uint64_t p = 24;
    if (port && (num_parse_u64(port, 65535, &p) < 0 || p == 0))
        return lmtp_why(why, whysize, "'%.200s': '%.20s' is not a port (1-65535)", s, port);
    memcpy(ep->host, s, hl);
    ep->host[hl] = '\0';
    if (s[0] == '[') {
        memcpy(ep->addr, s + 1, hl - 2);
        ep->addr[hl - 2] = '\0';
    } else {
        memcpy(ep->addr, s, hl + 1);
        ep->addr[hl] = '\0';
    }
    snprintf(ep->port, sizeof(ep->port), "%u", (unsigned)p);
    return 0;
}

void lmtp_endpoint_format(const struct lmtp_endpoint *ep, char *out, size_t size)
{
    if (ep->is_unix)
        snprintf(out, size, "unix:%s", ep->path);
    else if (strcmp(ep->host, "unix") == 0 || strcmp(ep->host, "inet") == 0)
        snprintf(out, size, "inet:%s:%s", ep->host, ep->port); /* else read as the prefix */
    else
        snprintf(out, size, "%s:%s", ep->host, ep->port);
}
