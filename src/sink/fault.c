/*
 * fault.c - fault injection decisions and their parsers (see fault.h).
 *
 * The generator is splitmix64: tiny, good enough for percentages, and the
 * same sequence for the same seed on every machine.  A percentage test
 * draws one number, so the count of draws (and with it reproducibility)
 * depends only on the order of commands.
 */
#include "sink/fault.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "core/num.h"

static const char *const fault_names[FP__COUNT] = {
    [FP_CONNECT] = "CONNECT", [FP_EHLO] = "EHLO", [FP_AUTH] = "AUTH", [FP_MAIL] = "MAIL",
    [FP_RCPT] = "RCPT",       [FP_DATA] = "DATA", [FP_EOD] = "EOD",
};

const char *fault_point_name(enum fault_point p)
{
    return p < FP__COUNT ? fault_names[p] : "?";
}

int fault_parse_point(const char *s, size_t n, enum fault_point *p)
{
    for (int i = 0; i < FP__COUNT; i++) {
        if (strlen(fault_names[i]) == n && strncasecmp(s, fault_names[i], n) == 0) {
            *p = (enum fault_point)i;
            return 0;
        }
    }
    if (n == 4 && strncasecmp(s, "HELO", 4) == 0) {
        *p = FP_EHLO;
        return 0;
    }
    return -1;
}

/* Split "A:B[:C]" into parts; returns the number of parts (up to max) or -1. */
static int fault_split(const char *s, char parts[][32], int max)
{
    int n = 0;
    const char *start = s;
    for (const char *p = s;; p++) {
        if (*p == ':' || *p == '\0') {
            size_t l = (size_t)(p - start);
            if (n == max || l == 0 || l >= 32)
                return -1;
            memcpy(parts[n], start, l);
            parts[n][l] = '\0';
            n++;
            if (*p == '\0')
                break;
            start = p + 1;
        }
    }
    return n;
}

int fault_parse_fail(const char *s, struct fault_rule *r, char *why, size_t whysize)
{
    char parts[3][32];
    uint64_t code;
    if (fault_split(s, parts, 3) != 3) {
        snprintf(why, whysize, "'%.64s': expected CMD:CODE:PERCENT, e.g. RCPT:451:10", s);
        return -1;
    }
    if (fault_parse_point(parts[0], strlen(parts[0]), &r->point) < 0) {
        snprintf(why, whysize,
                 "'%.64s': unknown command '%s' (CONNECT, EHLO, AUTH, MAIL, RCPT, DATA, EOD)", s,
                 parts[0]);
        return -1;
    }
    if (num_parse_u64(parts[1], 599, &code) < 0 || code < 400) {
        snprintf(why, whysize, "'%.64s': code must be from 400 to 599", s);
        return -1;
    }
    r->code = (int)code;
    if (num_parse_percent(parts[2], &r->percent) < 0) {
        snprintf(why, whysize, "'%.64s': percent must be a number from 0 to 100", s);
        return -1;
    }
    return 0;
}

int fault_parse_delay(const char *s, enum fault_point *p, unsigned *ms, char *why, size_t whysize)
{
    char parts[2][32];
    uint64_t v;
    if (fault_split(s, parts, 2) != 2) {
        snprintf(why, whysize, "'%.64s': expected CMD:MS, e.g. DATA:200", s);
        return -1;
    }
    if (fault_parse_point(parts[0], strlen(parts[0]), p) < 0) {
        snprintf(why, whysize, "'%.64s': unknown command '%s'", s, parts[0]);
        return -1;
    }
    if (num_parse_u64(parts[1], FAULT_DELAY_MAX, &v) < 0) {
        snprintf(why, whysize, "'%.64s': milliseconds must be a number from 0 to %d", s,
                 FAULT_DELAY_MAX);
        return -1;
    }
    *ms = (unsigned)v;
    return 0;
}

int fault_conf_add_rule(struct fault_conf *c, const struct fault_rule *r, char *why, size_t whysize)
{
    for (size_t i = 0; i < c->nrules; i++) {
        if (c->rules[i].point == r->point && c->rules[i].code == r->code) {
            c->rules[i] = *r;
            return 0;
        }
    }
    if (c->nrules == FAULT_RULES_MAX) {
        snprintf(why, whysize, "at most %d failure rules", FAULT_RULES_MAX);
        return -1;
    }
    c->rules[c->nrules++] = *r;
    return 0;
}

/* True with probability percent/100. */
static bool fault_draw(struct fault_state *st, double percent)
{
    if (percent <= 0)
        return false;
    if (percent >= 100)
        return true;
    double u = rand_u01(&st->rng) * 100.0;
    return u < percent;
}

void fault_configure(struct fault_state *st, const struct fault_conf *conf)
{
    st->conf = *conf;
    st->rng = conf->seed;
    st->close_first_done = 0;
    st->cuts = 0;
}

void fault_init(struct fault_state *st, const struct fault_conf *conf)
{
    memset(st, 0, sizeof(*st));
    fault_configure(st, conf);
}

enum fault_cut fault_at_mail(struct fault_state *st)
{
    bool cut = false;
    if (st->close_first_done < st->conf.close_first) {
        st->close_first_done++;
        st->stats.close_first++;
        cut = true;
    } else if (fault_draw(st, st->conf.close_chance)) {
        st->stats.close_chance++;
        cut = true;
    }
    if (!cut)
        return CUT_NONE;
    /* 421 first, then a clean close, as mail-test-srv cuts its odd and even connections */
    if (st->cuts++ % 2 == 1) {
        st->stats.cut_clean++;
        return CUT_CLEAN;
    }
    st->stats.cut_421++;
    return CUT_421;
}

int fault_fail(struct fault_state *st, enum fault_point p)
{
    for (size_t i = 0; i < st->conf.nrules; i++) {
        const struct fault_rule *r = &st->conf.rules[i];
        if (r->point == p && fault_draw(st, r->percent)) {
            st->stats.fail[p]++;
            return r->code;
        }
    }
    return 0;
}

unsigned fault_delay(struct fault_state *st, enum fault_point p)
{
    unsigned ms = st->conf.delay_ms[p];
    if (ms)
        st->stats.delay[p]++;
    return ms;
}

const char *fault_enh(enum fault_point p, int code)
{
    switch (code) {
    case 421:
        return "4.3.2";
    case 452:
        return "4.3.1";
    case 454:
        return "4.7.0";
    case 535:
        return "5.7.8";
    case 552:
        return "5.3.4";
    case 550:
        return p == FP_RCPT ? "5.1.1" : "5.7.1";
    default:
        return code < 500 ? "4.3.0" : "5.3.0";
    }
}
