/*
 * test_engine.c - the delivery engine (deliver/engine.c, deliver/attempt.c)
 * with a fake clock, fake couriers and an executor the test drives, over a
 * real queue in a temporary folder.
 *
 * Nothing here waits on the wall clock: time moves only when the test moves
 * it (run_until), or when a fake courier "takes" some time.  Jobs submitted
 * by the engine wait in a FIFO until the test runs them, so concurrency
 * limits can be read off the FIFO.  The fake smtp courier answers by
 * destination domain: down.test 451, bad.test 550, dsn.test accepts and
 * takes the DSN request, anything else accepts; every call is recorded.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../support/testutil.h"
#include "conf/snapshot.h"
#include "core/log.h"
#include "deliver/engine.h"
#include "deliver/remote.h"
#include "deliver/route.h"
#include "queue/dsn.h"
#include "queue/envelope.h"
#include "queue/store.h"

#define HASH "$y$j9T$vHWZ5pvAKAXJDIjJdjR0Y0$X1mxaEAkl8MVZv00M6miHuaUMV0XE1TbqMRtElz/en2"
#define T0 1900000000000LL /* the fake clock starts here (ms) */
#define MAX_JOBS 4096
#define MAX_CALLS 4096

struct call {
    int kind;     /* enum courier_kind */
    char to[320]; /* first recipient */
    char domain[256];
    size_t n;
    bool dsn; /* from the null sender */
    int64_t start, end;
};

struct job {
    engine_fn run, done;
    void *arg;
};

static struct fake {
    int64_t now, armed;
    struct job q[MAX_JOBS];
    size_t qh, qt;
    struct call calls[MAX_CALLS];
    size_t ncalls;
    int64_t cost_ms;      /* every courier call "takes" this long */
    int crash_at_call;    /* 0: never; else _exit(9) right after that many maildir calls */
    char crash_log[512];  /* the child appends each delivery here before it dies */
    char last_dsn[65536]; /* the newest message from <> */
    size_t ndsn;
    char dir[256];
    struct snapshot *snap;
    struct qstore *store, *pickup;
    struct engine *e;
} F;

/* ---- the fakes ------------------------------------------------------------------- */

static int64_t fake_now(void *ctx)
{
    (void)ctx;
    return F.now;
}

static void fake_arm(void *ctx, int64_t at)
{
    (void)ctx;
    F.armed = at;
}

static void fake_submit(void *ctx, engine_fn run, engine_fn done, void *arg)
{
    (void)ctx;
    assert_true(F.qt - F.qh < MAX_JOBS);
    F.q[F.qt++ % MAX_JOBS] = (struct job){run, done, arg};
}

static struct call *fake_record(int kind, const struct courier_job *j)
{
    assert_true(F.ncalls < MAX_CALLS);
    struct call *c = &F.calls[F.ncalls++];
    memset(c, 0, sizeof(*c));
    c->kind = kind;
    snprintf(c->to, sizeof(c->to), "%s", j->rcpts[0]->addr);
    c->n = j->n;
    c->dsn = j->env->sender[0] == '\0';
    c->start = F.now;
    F.now += F.cost_ms;
    c->end = F.now;
    if (c->dsn) {
        size_t n = j->len < sizeof(F.last_dsn) - 1 ? j->len : sizeof(F.last_dsn) - 1;
        memcpy(F.last_dsn, j->msg, n);
        F.last_dsn[n] = '\0';
        F.ndsn++;
    }
    return c;
}

static void fake_local(const struct courier_job *j, struct rcpt_result *res)
{
    fake_record(COURIER_MAILDIR, j);
    result_clear(&res[0]);
    if (F.crash_at_call) {
        FILE *f = fopen(F.crash_log, "a");
        if (f) {
            fprintf(f, "%s\n", j->env->id);
            fclose(f);
        }
        if (--F.crash_at_call == 0)
            _exit(9); /* kill -9 in the middle of the attempt, after the delivery */
    }
}

static void fake_smtp(const struct courier_job *j, struct rcpt_result *res)
{
    struct call *c = fake_record(COURIER_SMTP, j);
    snprintf(c->domain, sizeof(c->domain), "%s", j->dest->domain);
    for (size_t i = 0; i < j->n; i++) {
        result_clear(&res[i]);
        if (strcmp(j->dest->domain, "down.test") == 0) {
            result_fail(&res[i], RESULT_TEMP, "4.4.1", "451 4.4.1 connection refused");
            res[i].code = 451;
        } else if (strcmp(j->dest->domain, "bad.test") == 0) {
            result_fail(&res[i], RESULT_PERM, "5.1.1", "550 5.1.1 no such user");
            res[i].code = 550;
        } else {
            res[i].code = 250;
            res[i].dsn_passed = strcmp(j->dest->domain, "dsn.test") == 0;
        }
    }
}

static const struct courier_ops fake_local_ops = {.name = "fake-local", .deliver = fake_local};
static const struct courier_ops fake_smtp_ops = {
    .name = "fake-smtp", .per_domain = true, .deliver = fake_smtp};
static const struct courier_ops *const fake_couriers[COURIER_KINDS] = {
    [COURIER_MAILDIR] = &fake_local_ops,
    [COURIER_MDA] = &fake_local_ops,
    [COURIER_PIPE] = &fake_local_ops,
    [COURIER_SMTP] = &fake_smtp_ops,
};

/* ---- the harness ----------------------------------------------------------------- */

static void start(const char *queue_conf)
{
    char text[2048], path[512];
    struct conf_errors e = {0};
    struct conf c;
    memset(&F, 0, sizeof(F));
    F.now = T0;
    F.armed = INT64_MAX;
    assert_non_null(tu_tmpdir(F.dir, sizeof(F.dir), "tern-engine"));
    assert_int_equal(mkdir(tu_join(path, sizeof(path), F.dir, "domains"), 0700), 0);
    assert_int_equal(mkdir(tu_join(path, sizeof(path), F.dir, "domains/a.test"), 0700), 0);
    tu_write_file(tu_join(path, sizeof(path), F.dir, "domains/a.test/users"), "bob:" HASH "\n",
                  0600);
    tu_write_file(tu_join(path, sizeof(path), F.dir, "domains/a.test/aliases"),
                  "fwd: x@bad.test\nboth: bob, y@up.test\n", 0600);
    snprintf(text, sizeof(text),
             "[server]\nhostname = mx.a.test\ndata_dir = %s\n[queue]\n%s\n"
             "[remote]\nconcurrency = 10\nper_destination = 2\n",
             F.dir, queue_conf);
    if (conf_parse_string(text, strlen(text), "t.conf", NULL, &c, &e) < 0) {
        for (size_t i = 0; i < e.n; i++)
            fprintf(stderr, "%s\n", e.v[i]);
        fail();
    }
    F.snap = snapshot_from_conf(&c, &e);
    assert_non_null(F.snap);
    char why[256];
    F.store = qstore_open(tu_join(path, sizeof(path), F.dir, "queue"), why, sizeof(why));
    assert_non_null(F.store);
    F.pickup = qstore_open(tu_join(path, sizeof(path), F.dir, "pickup"), why, sizeof(why));
    assert_non_null(F.pickup);
    struct engine_conf ec = {.store = F.store,
                             .pickup = F.pickup,
                             .submit = fake_submit,
                             .now_ms = fake_now,
                             .arm = fake_arm,
                             .couriers = fake_couriers,
                             .seed = 42};
    F.e = engine_new(&ec, F.snap);
    struct qstore_stats st;
    assert_int_equal(engine_recover(F.e, &st, why, sizeof(why)), 0);
}

static void stop(void)
{
    engine_free(F.e);
    snapshot_put(F.snap);
    qstore_close(F.store);
    qstore_close(F.pickup);
    assert_int_equal(tu_rmtree(F.dir), 0);
}

/* Run queued jobs in order (a done() may queue more), at most max of them. */
static size_t pump(size_t max)
{
    size_t n = 0;
    while (F.qh < F.qt && n < max) {
        struct job j = F.q[F.qh++ % MAX_JOBS];
        j.run(j.arg);
        j.done(j.arg);
        n++;
    }
    return n;
}

/* Let time pass until t, firing the engine's timer whenever it is due. */
static void run_until(int64_t t)
{
    for (;;) {
        pump(SIZE_MAX);
        if (F.armed == INT64_MAX || F.armed > t)
            break;
        if (F.now < F.armed)
            F.now = F.armed;
        engine_tick(F.e);
    }
    if (F.now < t)
        F.now = t;
}

/* Commit a message from sender to the recipients (routed like a received one). */
static void queue_msg(const char *sender, unsigned notify, ...)
{
    struct envelope env;
    char why[256];
    va_list ap;
    envelope_init(&env);
    envelope_set(&env.sender, sender);
    env.created = env.next_attempt = F.now / 1000;
    envelope_set(&env.helo, "client.test");
    envelope_set(&env.peer, "[127.0.0.1]:1");
    va_start(ap, notify);
    for (const char *to; (to = va_arg(ap, const char *));)
        assert_true(route_expand(&F.snap->conf, &F.snap->policy, &env, to, to, notify, "") > 0);
    va_end(ap);
    const char *msg = "Subject: test\r\nMessage-ID: <m@client.test>\r\n\r\nhello\r\n";
    assert_int_equal(qstore_commit(F.store, &env, msg, strlen(msg), why, sizeof(why)), 0);
    engine_add(F.e, &env);
    envelope_free(&env);
}

static size_t calls_to(const char *domain, bool dsn)
{
    size_t n = 0;
    for (size_t i = 0; i < F.ncalls; i++)
        n += strcmp(F.calls[i].domain, domain) == 0 && F.calls[i].dsn == dsn;
    return n;
}

static size_t queued(void)
{
    struct engine_stats st;
    engine_stats(F.e, &st);
    return st.queued;
}

/* ---- the tests ------------------------------------------------------------------- */

/* The delays follow the table (last entry repeating) within +-10 % jitter. */
static void test_retry_table_and_jitter(void **state)
{
    (void)state;
    start("retry = 1m 5m 15m\ngive_up = 5d\ndelay_warning = off");
    queue_msg("alice@sender.test", 0, "x@down.test", NULL);
    run_until(T0 + 3 * 3600 * 1000LL);
    int64_t t[64];
    size_t n = 0;
    for (size_t i = 0; i < F.ncalls && n < 64; i++)
        if (strcmp(F.calls[i].domain, "down.test") == 0)
            t[n++] = F.calls[i].start;
    assert_true(n >= 12); /* 1 + 1m + 5m + 15m every 15m for 3 hours */
    const int64_t table[] = {60000, 300000, 900000};
    for (size_t k = 1; k < n; k++) {
        int64_t want = table[k - 1 < 2 ? k - 1 : 2], gap = t[k] - t[k - 1];
        assert_true(gap >= want * 9 / 10 - 1000 && gap <= want * 11 / 10 + 1000);
    }
    assert_int_equal(queued(), 1);
    stop();
}

/* A retry waits its delay after the attempt ENDED: a courier that hangs 30 s
 * with retry = 10s is not run again at once (the delay counted from the start
 * would already be over when it returns). */
static void test_retry_counts_from_attempt_end(void **state)
{
    (void)state;
    start("retry = 10s\ngive_up = 5d\ndelay_warning = off");
    F.cost_ms = 30000;
    queue_msg("alice@sender.test", 0, "x@down.test", NULL);
    run_until(T0 + 300000);
    assert_true(F.ncalls >= 3);
    for (size_t k = 1; k < F.ncalls; k++)
        assert_true(F.calls[k].start - F.calls[k - 1].end >= 9000);
    stop();
}

/* Past give_up the remaining recipients fail with 4.4.7 and the sender gets one DSN. */
static void test_give_up_with_dsn(void **state)
{
    (void)state;
    start("retry = 1m\ngive_up = 10m\ndelay_warning = off");
    queue_msg("alice@sender.test", 0, "x@down.test", NULL);
    run_until(T0 + 12 * 60000);
    assert_int_equal(calls_to("sender.test", true), 1);
    assert_non_null(strstr(F.last_dsn, "Action: failed"));
    assert_non_null(strstr(F.last_dsn, "Status: 4.4.7"));
    assert_non_null(strstr(F.last_dsn, "Final-Recipient: rfc822;x@down.test"));
    assert_int_equal(queued(), 0);
    size_t tries = calls_to("down.test", false);
    assert_true(tries >= 9 && tries <= 13);
    stop();
}

/* One "delayed" DSN once delay_warning has passed; the item stays queued. */
static void test_delay_warning(void **state)
{
    (void)state;
    start("retry = 1m\ngive_up = 1h\ndelay_warning = 5m");
    queue_msg("alice@sender.test", 0, "x@down.test", NULL);
    run_until(T0 + 20 * 60000);
    assert_int_equal(calls_to("sender.test", true), 1);
    assert_non_null(strstr(F.last_dsn, "Action: delayed"));
    assert_non_null(strstr(F.last_dsn, "Will-Retry-Until:"));
    assert_int_equal(queued(), 1);
    stop();
}

/* per_destination = 2: ten items for one domain start two at a time; local
 * mail does not wait for them. */
static void test_per_destination_limit(void **state)
{
    (void)state;
    start("retry = 1m");
    for (int i = 0; i < 10; i++)
        queue_msg("alice@sender.test", 0, "x@slow.test", NULL);
    for (int i = 0; i < 3; i++)
        queue_msg("alice@sender.test", 0, "bob@a.test", NULL);
    assert_int_equal(F.qt - F.qh, 2 + 3);
    pump(1); /* one slow.test attempt ends: the next one starts */
    assert_int_equal(F.qt - F.qh, 2 + 3);
    run_until(F.now);
    assert_int_equal(calls_to("slow.test", false), 10);
    assert_int_equal(queued(), 0);
    stop();
}

/* A destination that is down keeps being retried while the others flow. */
static void test_failing_destination_others_flow(void **state)
{
    (void)state;
    start("retry = 1m");
    for (int i = 0; i < 20; i++) {
        queue_msg("alice@sender.test", 0, "x@down.test", NULL);
        queue_msg("alice@sender.test", 0, "y@up.test", NULL);
    }
    queue_msg("alice@sender.test", 0, "bob@a.test", NULL);
    run_until(T0 + 30000);
    assert_int_equal(calls_to("up.test", false), 20);
    assert_int_equal(calls_to("down.test", false), 20);
    assert_int_equal(queued(), 20);
    run_until(T0 + 30 * 60000);
    assert_true(calls_to("down.test", false) >= 20 * 4);
    assert_int_equal(calls_to("up.test", false), 20);
    assert_int_equal(queued(), 20);
    stop();
}

/* kill -9 in the middle of an attempt: the item is recovered and delivered
 * again (a duplicate, never a loss); what finished stays finished. */
static void test_crash_recovery_inflight(void **state)
{
    (void)state;
    start("retry = 1m");
    tu_join(F.crash_log, sizeof(F.crash_log), F.dir, "delivered.log");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        F.crash_at_call = 2;
        for (int i = 0; i < 3; i++)
            queue_msg("alice@sender.test", 0, "bob@a.test", NULL);
        run_until(F.now);
        _exit(0); /* not reached */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 9);
    size_t len;
    char *log = tu_slurp(F.crash_log, &len);
    assert_non_null(log);
    char first[ENV_ID_MAX + 2], second[ENV_ID_MAX + 2];
    assert_int_equal(sscanf(log, "%65s %65s", first, second), 2);
    free(log);
    /* a new engine over the same queue, as after a restart */
    engine_free(F.e);
    struct engine_conf ec = {.store = F.store,
                             .submit = fake_submit,
                             .now_ms = fake_now,
                             .arm = fake_arm,
                             .couriers = fake_couriers,
                             .seed = 7};
    F.e = engine_new(&ec, F.snap);
    struct qstore_stats st;
    char why[256];
    assert_int_equal(engine_recover(F.e, &st, why, sizeof(why)), 0);
    assert_int_equal(st.recovered, 2); /* the one in flight and the one not yet tried */
    F.ncalls = 0;
    run_until(F.now + 1000);
    assert_int_equal(F.ncalls, 2);
    bool again =
        strcmp(F.calls[0].to, "bob@a.test") == 0 && strcmp(F.calls[1].to, "bob@a.test") == 0;
    assert_true(again);
    assert_int_equal(queued(), 0);
    stop();
}

/* NOTIFY=SUCCESS: "delivered" for a mailbox, "relayed" for a next hop without
 * DSN, nothing for a next hop that took the DSN request. */
static void test_notify_success(void **state)
{
    (void)state;
    start("retry = 1m");
    queue_msg("alice@sender.test", NOTIFY_SUCCESS | NOTIFY_FAILURE, "bob@a.test", NULL);
    run_until(F.now + 1000);
    assert_int_equal(F.ndsn, 1);
    assert_non_null(strstr(F.last_dsn, "Action: delivered"));
    assert_non_null(strstr(F.last_dsn, "Status: 2.0.0"));
    queue_msg("alice@sender.test", NOTIFY_SUCCESS, "y@up.test", NULL);
    run_until(F.now + 1000);
    assert_int_equal(F.ndsn, 2);
    assert_non_null(strstr(F.last_dsn, "Action: relayed"));
    queue_msg("alice@sender.test", NOTIFY_SUCCESS, "z@dsn.test", NULL);
    run_until(F.now + 1000);
    assert_int_equal(F.ndsn, 2);
    queue_msg("alice@sender.test", 0, "bob@a.test", NULL); /* no NOTIFY: no success report */
    run_until(F.now + 1000);
    assert_int_equal(F.ndsn, 2);
    assert_int_equal(queued(), 0);
    stop();
}

/* A bounce through an alias names the address that failed, and the alias as
 * the original recipient (RFC 3464 2.3.1, 2.3.2). */
static void test_dsn_final_and_original_recipient(void **state)
{
    (void)state;
    start("retry = 1m");
    queue_msg("alice@sender.test", 0, "fwd@a.test", NULL);
    run_until(F.now + 1000);
    assert_int_equal(F.ndsn, 1);
    assert_non_null(strstr(F.last_dsn, "Final-Recipient: rfc822;x@bad.test"));
    assert_non_null(strstr(F.last_dsn, "Original-Recipient: rfc822;fwd@a.test"));
    assert_non_null(strstr(F.last_dsn, "Action: failed"));
    assert_non_null(strstr(F.last_dsn, "550 5.1.1"));
    stop();
}

/* A bounce (from <>) to another server is delivered like any mail. */
static void test_null_sender_relay(void **state)
{
    (void)state;
    start("retry = 1m");
    queue_msg("", 0, "y@up.test", NULL);
    run_until(F.now + 1000);
    assert_int_equal(calls_to("up.test", true), 1);
    assert_int_equal(queued(), 0);
    stop();
}

/* `tern sendmail` leaves items in the pickup spool, recipients unrouted: the
 * engine routes them (aliases included), queues them and delivers them; an
 * unknown local recipient is bounced. */
static void test_pickup(void **state)
{
    (void)state;
    start("retry = 1m");
    struct envelope env;
    char why[256];
    envelope_init(&env);
    envelope_set(&env.sender, "alice@sender.test");
    env.created = env.next_attempt = F.now / 1000;
    envelope_add_rcpt(&env, "both@a.test", "both@a.test", "");
    envelope_add_rcpt(&env, "nobody@a.test", "nobody@a.test", "");
    const char *msg = "Subject: cron\r\n\r\nhi\r\n";
    assert_int_equal(qstore_commit(F.pickup, &env, msg, strlen(msg), why, sizeof(why)), 0);
    envelope_free(&env);
    engine_pickup(F.e);
    run_until(F.now + 1000);
    assert_int_equal(F.ncalls, 3); /* bob@a.test, y@up.test, and the bounce */
    assert_int_equal(F.ndsn, 1);
    assert_non_null(strstr(F.last_dsn, "Final-Recipient: rfc822;nobody@a.test"));
    assert_int_equal(queued(), 0);
    char dir[512];
    assert_int_equal(tu_count_entries(tu_join(dir, sizeof(dir), F.dir, "pickup/queue"), NULL, 0),
                     0);
    stop();
}

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_table_and_jitter),
        cmocka_unit_test(test_retry_counts_from_attempt_end),
        cmocka_unit_test(test_give_up_with_dsn),
        cmocka_unit_test(test_delay_warning),
        cmocka_unit_test(test_per_destination_limit),
        cmocka_unit_test(test_failing_destination_others_flow),
        cmocka_unit_test(test_crash_recovery_inflight),
        cmocka_unit_test(test_notify_success),
        cmocka_unit_test(test_dsn_final_and_original_recipient),
        cmocka_unit_test(test_null_sender_relay),
        cmocka_unit_test(test_pickup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
