/*
 * checks.h - inbound mail authentication for `tern serve`: SPF at MAIL FROM,
 * DKIM and DMARC at end of data, our Authentication-Results header, and the
 * policy of [checks] (none / tag / reject, DMARC honor and quarantine).
 *
 * Only the smtp listener's unauthenticated sessions are checked: a session
 * that authenticated, everything on the submission ports, and the host
 * itself (a client at 127.0.0.1 or ::1: local programs, a content filter
 * that reinjects) are not.
 * DNS blocks, so every check runs on a pool of its own (CHECKS_THREADS
 * threads, one c-ares resolver per thread, `[remote] dns_servers`); the
 * session waits (SMTP_V_PENDING) and the results come back on the loop
 * thread.  A temporary DNS failure never refuses mail: the result is
 * temperror in the header and the message is accepted.
 *
 * Per session, smtp_session_data() holds a struct receive_session: the
 * snapshot the session started with and its checks state (the SPF result
 * of the current transaction), which a job in flight holds a reference on
 * (loop thread only: no locks).
 */
#ifndef TERN_SERVER_CHECKS_H
#define TERN_SERVER_CHECKS_H

#include <stdbool.h>

#include "core/buf.h"
#include "core/command.h"

struct envelope;
struct serve;
struct smtp_session;
struct smtp_verdict;
struct snapshot;
struct checks_state;

#define CHECKS_THREADS 8 /* DNS waits, not CPU */
#define CHECKS_DNS_TIMEOUT_MS 2000
#define CHECKS_DNS_TRIES 2

/* What a session of tern serve carries (smtp_session_data). */
struct receive_session {
    struct snapshot *snap;       /* a reference, dropped at close */
    struct checks_state *checks; /* NULL until a check ran; see checks_session_close() */
};

/* Start / stop the pool and load the Public Suffix List (receive_init / receive_free). */
void checks_init(struct serve *sv);
void checks_free(struct serve *sv);

/* The session closes: forget its state (a job in flight keeps it until it is done). */
void checks_session_close(struct receive_session *rs);

/*
 * MAIL FROM accepted by the server's own policy (v->code < 400): for a
 * checked session, start SPF (v->action becomes SMTP_V_PENDING; the reply
 * comes through smtp_server_resume: 250, or 550 5.7.23 with spf = reject).
 */
void checks_mail(struct serve *sv, struct smtp_session *s, struct receive_session *rs,
                 const struct mail_params *p, struct smtp_verdict *v);

/*
 * End of data, with msg the message as it will be queued (our Received:
 * first) and env its envelope.  For a checked session: returns true and
 * later, on the loop thread, calls go(arg, NULL) once msg has our
 * Authentication-Results (forged ones removed) and env the quarantine
 * targets, or go(arg, refusal) when the message is refused (550 5.7.x).
 * Returns false when nothing is checked (go is never called); an
 * authenticated session's message then only loses the Authentication-Results
 * fields that bear our authserv-id (when a check is on).
 */
typedef void (*checks_go_fn)(void *arg, const struct smtp_verdict *refuse);
bool checks_message(struct serve *sv, struct smtp_session *s, struct receive_session *rs,
                    struct envelope *env, struct buf *msg, checks_go_fn go, void *arg);

#endif
