/*
 * addrlist.h - the addresses in an RFC 5322 address-list header value
 * (To, Cc, Bcc), as `sendmail -t` needs them.
 *
 * Understands display names, quoted strings (with backslash escapes),
 * comments (nested), angle-bracketed addresses and groups ("team: a@x,
 * b@y;").  Each address found is handed to fn as "local@domain" after
 * checking it with addr_parse_mailbox(); an element that is not an address
 * is reported through bad.  At most ADDRLIST_MAX addresses; nothing is
 * allocated.
 */
#ifndef TERN_CORE_ADDRLIST_H
#define TERN_CORE_ADDRLIST_H

#include <stddef.h>

#define ADDRLIST_MAX 1000

typedef void (*addrlist_fn)(void *ctx, const char *addr);

/* Returns the number of addresses found, or -1 if the list is malformed
 * (unbalanced quotes, comments or brackets) or has too many addresses. */
int addrlist_parse(const char *s, size_t len, addrlist_fn fn, addrlist_fn bad, void *ctx);

#endif
