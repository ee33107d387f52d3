/*
 * lmtp.c - the "lmtp" courier (see lmtp.h).
 *
 * The dialogue is the SMTP client's (smtp/client.c, .lmtp set): LHLO, MAIL,
 * RCPT..., DATA, then one reply per accepted recipient.  Here: the
 * per-thread connection and the courier glue (the endpoint syntax is
 * core/lmtpaddr.c, so that the configuration checks it too).  The endpoint
 * text comes from the configuration (checked when it is loaded) or a
 * queued target (checked again here: a bad one defers, 4.3.5).  Nothing of
 * the job is kept after a call.
 */
#include "deliver/lmtp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "deliver/remote.h"
#include "queue/envelope.h"

/* ---- the connection kept by each delivery thread ----------------------------------- */

/* The client keeps pointers to the strings of its configuration: they live here. */
static __thread struct {
    char key[LMTP_PATH_MAX + LMTP_HOST_MAX + 300];
    struct lmtp_endpoint ep;
    char helo[256];
    struct smtp_client *c;
    time_t last;
} lmtp_conn;

void lmtp_thread_cleanup(void)
{
    if (lmtp_conn.c)
        smtp_client_free(lmtp_conn.c); /* QUIT */
    lmtp_conn.c = NULL;
    lmtp_conn.key[0] = '\0';
}

void lmtp_deliver(const struct lmtp_endpoint *ep, const char *lhlo_name, unsigned timeout_ms,
                  const struct smtp_envelope *e, const char *msg, size_t len,
                  struct rcpt_result *res, char *info, size_t infosize)
{
    char where[LMTP_PATH_MAX + LMTP_HOST_MAX + 16], key[sizeof(lmtp_conn.key)];
    time_t now = time(NULL);

    lmtp_endpoint_format(ep, where, sizeof(where));
    if (info && infosize)
        snprintf(info, infosize, "%s", where);
    snprintf(key, sizeof(key), "%s|%s|%u", where, lhlo_name ? lhlo_name : "", timeout_ms);
    if (lmtp_conn.c && (now - lmtp_conn.last > LMTP_IDLE_S || strcmp(lmtp_conn.key, key) != 0))
        lmtp_thread_cleanup();
    if (!lmtp_conn.c) {
        const struct lmtp_endpoint *x = &lmtp_conn.ep;
        lmtp_conn.ep = *ep;
        snprintf(lmtp_conn.helo, sizeof(lmtp_conn.helo), "%s",
                 lhlo_name && lhlo_name[0] ? lhlo_name : "localhost");
        struct smtp_client_conf cc = {
            .host = x->is_unix ? x->path : x->addr,
            .port = x->is_unix ? "" : x->port,
            .helo_name = lmtp_conn.helo,
            .tls = SMTP_TLS_NONE,
            .lmtp = true,
            .unix_path = x->is_unix ? x->path : NULL,
            .connect_ms = 10000,
            .greeting_ms = timeout_ms,
            .command_ms = timeout_ms,
            .data_init_ms = timeout_ms,
            .data_block_ms = timeout_ms,
            .data_end_ms = timeout_ms,
            .reconnect_base_ms = 10,
            .reconnect_max_ms = 10,
            .give_up_ms = 60000,
            .max_connects = 2, /* a kept connection the server closed: one reconnect */
        };
        lmtp_conn.c = smtp_client_new(&cc);
        snprintf(lmtp_conn.key, sizeof(lmtp_conn.key), "%s", key);
    }
    lmtp_conn.last = now;
    smtp_client_send(lmtp_conn.c, e, msg, len, res);
}

/* ---- the lmtp courier ---------------------------------------------------------------- */

static void lmtp_courier(const struct courier_job *j, struct rcpt_result *res)
{
    struct lmtp_endpoint ep;
    char why[256];

    if (lmtp_endpoint_parse(j->arg, &ep, why, sizeof(why)) < 0) {
        for (size_t i = 0; i < j->n; i++)
            result_fail(&res[i], RESULT_TEMP, "4.3.5", "no usable LMTP endpoint: %s", why);
        if (j->info && j->infosize)
            snprintf(j->info, j->infosize, "lmtp=?");
        return;
    }
    struct smtp_rcpt *rcpts = calloc(j->n ? j->n : 1, sizeof(*rcpts));
    if (!rcpts)
        fatal("out of memory");
    for (size_t i = 0; i < j->n; i++)
        rcpts[i].addr = j->rcpts[i]->addr; /* no NOTIFY / ORCPT: this is the final delivery */
    struct smtp_envelope e = {.from = j->env->sender, .rcpts = rcpts, .nrcpt = j->n};
    lmtp_deliver(&ep, j->hostname, j->remote ? j->remote->timeout_ms : 0, &e, j->msg, j->len, res,
                 j->info, j->infosize);
    free(rcpts);
}

const struct courier_ops courier_lmtp = {
    .name = "lmtp", .deliver = lmtp_courier, .thread_exit = lmtp_thread_cleanup};
