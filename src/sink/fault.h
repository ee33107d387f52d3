/*
 * fault.h - the sink's fault injection: what to break, how often, and the
 * decisions, drawn from one seeded generator so that a run is reproducible
 * with --seed (decisions are drawn in the order the commands arrive).
 *
 *   close_first N      the first N connections that send MAIL are cut there,
 *                      alternately with a clean close and with "421 4.4.2"
 *   close_chance P     P % of MAIL commands are cut the same way
 *   fail CMD:CODE:P    P % of CMD get CODE (CONNECT EHLO AUTH MAIL RCPT DATA EOD)
 *   delay CMD:MS       every reply to CMD waits MS milliseconds
 */
#ifndef TERN_SINK_FAULT_H
#define TERN_SINK_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum fault_point { FP_CONNECT, FP_EHLO, FP_AUTH, FP_MAIL, FP_RCPT, FP_DATA, FP_EOD, FP__COUNT };

#define FAULT_RULES_MAX 32
#define FAULT_DELAY_MAX 600000 /* 10 minutes */

struct fault_rule {
    enum fault_point point;
    int code; /* 400..599 */
    double percent;
};

struct fault_conf {
    unsigned close_first;
    double close_chance;
    struct fault_rule rules[FAULT_RULES_MAX];
    size_t nrules;
    unsigned delay_ms[FP__COUNT];
    uint64_t seed;
};

struct fault_stats {
    uint64_t cut_clean, cut_421; /* by close_first and close_chance together */
    uint64_t close_first, close_chance;
    uint64_t fail[FP__COUNT];
    uint64_t delay[FP__COUNT];
};

struct fault_state {
    struct fault_conf conf;
    uint64_t rng;
    unsigned close_first_done;
    uint64_t cuts; /* alternates 421 / clean */
    struct fault_stats stats;
};

enum fault_cut { CUT_NONE, CUT_CLEAN, CUT_421 };

/* Parsers: 0 or -1 with a reason in why. */
int fault_parse_point(const char *s, size_t n, enum fault_point *p);
int fault_parse_fail(const char *s, struct fault_rule *r, char *why, size_t whysize);
int fault_parse_delay(const char *s, enum fault_point *p, unsigned *ms, char *why, size_t whysize);
/* Add a rule to conf (a rule for the same point and code replaces the old one). */
int fault_conf_add_rule(struct fault_conf *c, const struct fault_rule *r, char *why,
                        size_t whysize);
const char *fault_point_name(enum fault_point p);

void fault_init(struct fault_state *st, const struct fault_conf *conf);
/* Replace the settings; keeps statistics, restarts close_first and the generator. */
void fault_configure(struct fault_state *st, const struct fault_conf *conf);

/* At MAIL: cut this connection? */
enum fault_cut fault_at_mail(struct fault_state *st);
/* A failure code to answer at point (0 = none). */
int fault_fail(struct fault_state *st, enum fault_point p);
/* Delay for replies at point (0 = none); counts it. */
unsigned fault_delay(struct fault_state *st, enum fault_point p);
/* The enhanced status code that fits an injected code at a point. */
const char *fault_enh(enum fault_point p, int code);

#endif
