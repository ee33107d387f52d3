/*
 * limits.h - limits shared by every SMTP session of a program, whatever its
 * listener: sessions in all, sessions and connections per minute per client
 * (like Postfix's anvil), and a memory budget for message bodies being
 * received.
 *
 * Clients are counted per address and per network: an IPv4 address at the
 * limit and its /24 at four times the limit; an IPv6 /64 counts as one
 * address.  The table is fixed in size (chosen at creation); entries expire
 * once their client has no session and its rate has leaked away, and when
 * the table is full the oldest idle entry is forgotten (never one in use).
 * One instance per process, used from the event loop thread only.
 */
#ifndef TERN_SMTP_LIMITS_H
#define TERN_SMTP_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct smtp_limits_conf {
    unsigned max_sessions;            /* 0 = derived from RLIMIT_NOFILE */
    unsigned max_sessions_per_ip;     /* 0 = no limit */
    unsigned max_connect_rate_per_ip; /* connections per minute, 0 = no limit */
    uint64_t body_memory;             /* octets of bodies held at once, 0 = no limit */
};

/* What smtp_limits_connect() holds for a session until smtp_limits_disconnect(). */
struct smtp_limits_hold {
    uint32_t slot[2]; /* table entries (address, network); 0 = none */
};

enum smtp_limits_verdict {
    LIMITS_OK = 0,
    LIMITS_SESSIONS, /* max_sessions reached */
    LIMITS_CLIENT,   /* max_sessions_per_ip for the address or network */
    LIMITS_RATE,     /* max_connect_rate_per_ip for the address or network */
};

struct smtp_limits;

struct smtp_limits *smtp_limits_new(const struct smtp_limits_conf *conf);
void smtp_limits_free(struct smtp_limits *l);
/* The derived default of max_sessions for a file descriptor limit. */
unsigned smtp_limits_default_sessions(uint64_t nofile);
unsigned smtp_limits_max_sessions(const struct smtp_limits *l);

/* A new connection from peer at now_ms: on LIMITS_OK it is counted (h filled). */
enum smtp_limits_verdict smtp_limits_connect(struct smtp_limits *l, const struct sockaddr *peer,
                                             uint64_t now_ms, struct smtp_limits_hold *h);
void smtp_limits_disconnect(struct smtp_limits *l, struct smtp_limits_hold *h);
unsigned smtp_limits_sessions(const struct smtp_limits *l);

/* Body memory: take n more octets (false, nothing taken, when over the budget); give back. */
bool smtp_limits_body_take(struct smtp_limits *l, size_t n);
void smtp_limits_body_give(struct smtp_limits *l, size_t n);
uint64_t smtp_limits_body_used(const struct smtp_limits *l);

#endif
