/*
 * fuzz_aliases.c - an aliases file through aliases_parse() (conf/aliases.c, deliver/route.c),
 * then the resolution of its own names and a few fixed addresses against
 * a policy built in memory (two users, the fuzzed aliases, plus a second
 * domain whose aliases are the same text).
 * Invariants: problems carry existing line numbers; resolution ends (the
 * depth and step limits hold), its status agrees with its targets, and
 * every target is well formed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/aliases.h"
#include "conf/config.h"
#include "conf/policy.h"
#include "conf/users.h"
#include "deliver/route.h"

#define HASH "$y$j9T$vHWZ5pvAKAXJDIjJdjR0Y0$X1mxaEAkl8MVZv00M6miHuaUMV0XE1TbqMRtElz/en2"

static void check(const struct policy *p, const char *addr)
{
    struct route_result r;
    int st = route_resolve_str(p, addr, &r);
    if (st == ROUTE_OK && r.n == 0)
        abort();
    if ((st == ROUTE_UNKNOWN || st == ROUTE_ELOOP || st == ROUTE_EUNSAFE || st == ROUTE_EINVALID) &&
        r.n != 0)
        abort();
    if (st == ROUTE_NOT_LOCAL && (r.n != 1 || r.v[0].kind != ROUTE_REMOTE))
        abort();
    if (r.n > ROUTE_MAX_TARGETS || r.n_notes > ROUTE_MAX_NOTES)
        abort();
    for (size_t i = 0; i < r.n; i++) {
        const struct route_target *t = &r.v[i];
        if (!t->value[0] || !t->chain[0])
            abort();
        if (t->kind != ROUTE_PIPE && !strchr(t->value, '@'))
            abort();
        if (t->kind == ROUTE_LOCAL && !policy_domain(p, t->domain))
            abort();
        if (t->kind == ROUTE_PIPE && t->value[0] != '/')
            abort();
    }
    route_result_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct conf c;
    static int ready;
    struct conf_errors e = {0};
    struct aliases a, a2;
    struct users u, u2;
    struct policy p;
    size_t lines = 1;
    char addr[512];

    if (size > 64 * 1024)
        return 0;
    if (!ready) {
        const char *t = "[server]\nhostname = h.example\n";
        if (conf_parse_string(t, strlen(t), "c", "/", &c, &e) < 0)
            abort();
        ready = 1;
    }
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    aliases_parse((const char *)data, size, "aliases", &a, &e);
    aliases_parse((const char *)data, size, "aliases", &a2, &e);
    for (size_t i = 0; i < e.n; i++) {
        unsigned long line = strtoul(e.v[i] + strlen("aliases:"), NULL, 10);
        if (strncmp(e.v[i], "aliases:", 8) != 0 || line == 0 || line > lines)
            abort();
    }
    const char *ut = "bob:" HASH "\nalice:" HASH "\n";
    users_parse(ut, strlen(ut), "users", &u, &e);
    users_parse(ut, strlen(ut), "users", &u2, &e);
    policy_init(&p, &c);
    policy_add(&p, "example.org", "/d1", &u, &a, "users", "aliases", &e);
    policy_add(&p, "other.org", "/d2", &u2, &a2, "users", "aliases", &e);

    const struct policy_domain *d = policy_domain(&p, "example.org");
    for (size_t i = 0; d && i < d->aliases.n && i < 64; i++) {
        snprintf(addr, sizeof(addr), "%s+x@example.org", d->aliases.v[i].name);
        check(&p, addr);
    }
    check(&p, "bob@example.org");
    check(&p, "nobody@other.org");
    check(&p, "x@remote.example");
    policy_free(&p);
    conf_errors_free(&e);
    return 0;
}
