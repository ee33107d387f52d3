/*
 * fuzz_command.c - libFuzzer harness for core/command.c.
 *
 * The first two bytes pick the offered extensions, SMTPUTF8 for RCPT and a
 * SIZE limit; the rest is a command line.  It goes through cmd_parse() and,
 * for MAIL / RCPT, cmd_parse_mail() / cmd_parse_rcpt(); both are also run on
 * the raw input.  Invariants: refusals carry one of the documented codes;
 * the argument lies inside the line; accepted parameters respect their
 * limits (ENVID, ORCPT, SIZE <= limit, UTF-8 only with SMTPUTF8).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/command.h"

static void check_err(const struct cmd_error *e)
{
    static const int codes[] = {500, 501, 552, 553, 555};
    int ok = 0;
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        ok |= e->code == codes[i];
    if (!ok || e->enh == NULL || e->text == NULL || e->text[0] == '\0')
        abort();
    if (e->enh[0] != '0' + e->code / 100)
        abort();
}

static void run_mail(const char *arg, size_t len, unsigned ext, uint64_t max)
{
    struct mail_params m;
    struct cmd_error err;
    char tmp[ENVID_MAX + 1];

    if (cmd_parse_mail(arg, len, ext, max, &m, &err) != 0) {
        check_err(&err);
        return;
    }
    if (max != 0 && m.size > max)
        abort();
    if (m.size_given && !(ext & EXT_SIZE))
        abort();
    if (m.smtputf8 && !(ext & EXT_SMTPUTF8))
        abort();
    if (m.from.has_utf8 && !m.smtputf8)
        abort();
    if (strlen(m.envid) > ENVID_MAX || strlen(m.auth) > ADDR_PATH_MAX)
        abort();
    if (m.envid[0] && xtext_decode(m.envid, strlen(m.envid), tmp, sizeof(tmp)) < 0)
        abort();
    if (m.body != BODY_NONE && !(ext & EXT_8BITMIME))
        abort();
    if ((m.ret != RET_NONE || m.envid[0]) && !(ext & EXT_DSN))
        abort();
}

static void run_rcpt(const char *arg, size_t len, unsigned ext, bool utf8)
{
    struct rcpt_params r;
    struct cmd_error err;

    if (cmd_parse_rcpt(arg, len, ext, utf8, &r, &err) != 0) {
        check_err(&err);
        return;
    }
    if (r.to.is_null || (r.to.has_utf8 && !utf8))
        abort();
    if (strlen(r.orcpt) > ORCPT_MAX)
        abort();
    if ((r.notify || r.orcpt[0]) && !(ext & EXT_DSN))
        abort();
    if ((r.notify & NOTIFY_NEVER) && r.notify != NOTIFY_NEVER)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct smtp_command c;
    struct cmd_error err;

    if (size < 2)
        return 0;
    unsigned ext = data[0] & 0x1f;
    bool utf8 = data[0] & 0x20;
    uint64_t max = (data[0] & 0x40) ? (uint64_t)data[1] * 1000 : 0;
    const char *line = (const char *)data + 2;
    size_t len = size - 2;

    if (cmd_parse(line, len, &c, &err) == 0) {
        if (c.verb <= CMD_UNKNOWN || c.verb >= CMD__COUNT)
            abort();
        if (c.arg < line || c.arg + c.arglen != line + len)
            abort();
        const char *name = cmd_verb_name(c.verb);
        if (strncasecmp(name, line, strlen(name)) != 0)
            abort();
        if (c.verb == CMD_MAIL)
            run_mail(c.arg, c.arglen, ext, max);
        else if (c.verb == CMD_RCPT)
            run_rcpt(c.arg, c.arglen, ext, utf8);
    } else {
        check_err(&err);
        if ((err.code == 500) != (c.verb == CMD_UNKNOWN))
            abort();
    }
    run_mail(line, len, ext, max);
    run_rcpt(line, len, ext, utf8);

    char out[16];
    int n = xtext_decode(line, len, out, sizeof(out));
    if (n >= (int)sizeof(out) || (n >= 0 && out[n] != '\0'))
        abort();
    return 0;
}
