/*
 * aliases.c - aliases files and recipient resolution (see aliases.h).
 *
 * Parsing: one alias per line, split on the first ':'; targets split on
 * commas until a target starts with '|', which takes the rest of the line
 * whole (a command may contain commas).  Every bad line is reported with
 * its number and skipped as a whole, so a half-understood alias never
 * delivers anywhere.
 *
 * Memory: a struct aliases owns every string in it.  A pipe target is
 * only ever parsed here, never run.
 */
#include "conf/aliases.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"

/* ---- the file -------------------------------------------------------------- */

static const char *aliases_trim(const char *s, size_t *n)
{
    while (*n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        (*n)--;
    }
    while (*n > 0 && (s[*n - 1] == ' ' || s[*n - 1] == '\t' || s[*n - 1] == '\r'))
        (*n)--;
    return s;
}

static char *aliases_strndup(const char *s, size_t n)
{
    char *d = strndup(s, n);
    if (!d)
        fatal("out of memory");
    return d;
}

static void aliases_entry_free(struct alias_entry *x)
{
    for (size_t i = 0; i < x->n; i++) {
        free(x->t[i].s);
        free(x->t[i].domain);
    }
    free(x->t);
    x->t = NULL;
    x->n = 0;
}

static void aliases_add_target(struct alias_entry *x, enum alias_tkind kind, char *s, char *domain)
{
    if (x->n % 8 == 0) {
        struct alias_tgt *t = realloc(x->t, (x->n + 8) * sizeof(*t));
        if (!t)
            fatal("out of memory");
        x->t = t;
    }
    x->t[x->n++] = (struct alias_tgt){.kind = kind, .s = s, .domain = domain};
}

/* One target s[0..n) (trimmed, not a pipe) into x; 0 or -1 (reported). */
static int aliases_target(struct alias_entry *x, const char *s, size_t n, const char *name,
                          unsigned line, struct conf_errors *e)
{
    char tmp[ADDR_PATH_MAX + 1];
    struct mailaddr a;

    if (n == 0) {
        conf_error(e, name, line, "alias '%s': empty target (two commas, or a comma at the end)",
                   x->name);
        return -1;
    }
    if (n >= sizeof(tmp)) {
        conf_error(e, name, line, "alias '%s': target '%.40s...' is too long", x->name, s);
        return -1;
    }
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if (memchr(s, '@', n)) {
        int err = addr_parse_mailbox(tmp, n, ADDR_ALLOW_UTF8, &a);
        if (err != ADDR_OK) {
            conf_error(e, name, line, "alias '%s': target '%s': %s", x->name, tmp,
                       addr_strerror(err));
            return -1;
        }
        for (char *d = a.domain; *d; d++)
            *d = (char)tolower((unsigned char)*d);
        aliases_add_target(x, ALIAS_T_ADDR, aliases_strndup(a.local, strlen(a.local)),
                           aliases_strndup(a.domain, strlen(a.domain)));
        return 0;
    }
    if (!users_name_ok(tmp)) {
        conf_error(e, name, line,
                   "alias '%s': target '%s' is not a user name, an address or a '| command'",
                   x->name, tmp);
        return -1;
    }
    aliases_add_target(x, ALIAS_T_NAME, aliases_strndup(tmp, n), NULL);
    return 0;
}

/* One non-comment line s[0..n) into a new entry of *a; 0 or -1 (reported). */
static int aliases_line(struct aliases *a, const char *s, size_t n, const char *name, unsigned line,
                        struct conf_errors *e)
{
    struct alias_entry x = {.line = line};
    const char *colon = memchr(s, ':', n);
    int bad = 0;

    if (!colon) {
        conf_error(e, name, line, "expected 'name: target, target, ...'");
        return -1;
    }
    size_t nl = (size_t)(colon - s);
    const char *nm = aliases_trim(s, &nl);
    if (nl > USERS_NAME_MAX) {
        conf_error(e, name, line, "alias name '%.20s...' is longer than %d characters", nm,
                   USERS_NAME_MAX);
        return -1;
    }
    snprintf(x.name, sizeof(x.name), "%.*s", (int)nl, nm);
    if (nl == 0 || (strcmp(x.name, "*") != 0 && !users_name_ok(x.name))) {
        conf_error(e, name, line,
                   "'%s' is not a valid alias name (a local part without domain, "
                   "or '*')",
                   x.name);
        return -1;
    }
    for (size_t i = 0; i < a->n; i++) {
        if (strcasecmp(a->v[i].name, x.name) == 0) {
            conf_error(e, name, line, "alias '%s' is defined twice (first on line %u)", x.name,
                       a->v[i].line);
            return -1;
        }
    }

    const char *p = colon + 1, *end = s + n;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (p == end)
            break;
        if (*p == '|') {
            size_t cl = (size_t)(end - p - 1);
            const char *cmd = aliases_trim(p + 1, &cl);
            if (cl == 0) {
                conf_error(e, name, line, "alias '%s': empty pipe command", x.name);
                bad = 1;
            } else if (cmd[0] != '/') {
                conf_error(e, name, line,
                           "alias '%s': pipe command must start with an absolute path", x.name);
                bad = 1;
            } else {
                aliases_add_target(&x, ALIAS_T_PIPE, aliases_strndup(cmd, cl), NULL);
            }
            break;
        }
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t tl = (size_t)((comma ? comma : end) - p);
        const char *t = aliases_trim(p, &tl);
        if (aliases_target(&x, t, tl, name, line, e) < 0)
            bad = 1;
        if (!comma)
            break;
        p = comma + 1;
        size_t rest = (size_t)(end - p);
        aliases_trim(p, &rest);
        if (rest == 0) {
            conf_error(e, name, line, "alias '%s': comma at the end of the line", x.name);
            bad = 1;
        }
    }
    if (!bad && x.n == 0) {
        conf_error(e, name, line, "alias '%s' has no target", x.name);
        bad = 1;
    }
    if (bad) {
        aliases_entry_free(&x);
        return -1;
    }
    if (a->n % 64 == 0) {
        struct alias_entry *v = realloc(a->v, (a->n + 64) * sizeof(*v));
        if (!v)
            fatal("out of memory");
        a->v = v;
    }
    a->v[a->n++] = x;
    return 0;
}

int aliases_parse(const char *text, size_t len, const char *name, struct aliases *a,
                  struct conf_errors *e)
{
    size_t before = e->n, pos = 0;
    unsigned line = 0;

    memset(a, 0, sizeof(*a));
    while (pos < len) {
        const char *s = text + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + (nl ? 1 : 0);
        line++;
        if (memchr(s, '\0', n)) {
            conf_error(e, name, line, "NUL byte in line");
            continue;
        }
        if (n > ALIAS_LINE_MAX) {
            conf_error(e, name, line, "line longer than %d characters", ALIAS_LINE_MAX);
            continue;
        }
        s = aliases_trim(s, &n);
        if (n == 0 || s[0] == '#')
            continue;
        bool ctl = false;
        for (size_t i = 0; i < n; i++)
            if (((unsigned char)s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f)
                ctl = true;
        if (ctl) {
            conf_error(e, name, line, "control character in line");
            continue;
        }
        aliases_line(a, s, n, name, line, e);
    }
    return e->n > before ? -1 : 0;
}

int aliases_load(const char *path, struct aliases *a, struct conf_errors *e)
{
    char why[256], *text;
    size_t len;

    memset(a, 0, sizeof(*a));
    if (conf_read_file(path, ALIAS_FILE_MAX, &text, &len, why, sizeof(why)) < 0) {
        if (errno == ENOENT)
            return 0;
        conf_error(e, path, 0, "%s", why);
        return -1;
    }
    int r = aliases_parse(text, len, path, a, e);
    free(text);
    return r;
}

void aliases_free(struct aliases *a)
{
    for (size_t i = 0; i < a->n; i++)
        aliases_entry_free(&a->v[i]);
    free(a->v);
    a->v = NULL;
    a->n = 0;
}

/* ---- resolution ------------------------------------------------------------ */

void alias_key(const char *local, const char *drop_chars, const char *suffix_separators, char *out)
{
    size_t n = strlen(local), cut = strcspn(local, suffix_separators ? suffix_separators : "");
    size_t o = 0;
    if (cut > 0)
        n = cut;
    for (size_t i = 0; i < n && o < USERS_NAME_MAX; i++) {
        if (drop_chars && local[i] && strchr(drop_chars, local[i]))
            continue;
        out[o++] = (char)tolower((unsigned char)local[i]);
    }
    out[o] = '\0';
}
