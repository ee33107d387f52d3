/*
 * test_metrics.c - the metrics registry and exposition (core/metrics.c),
 * the /metrics HTTP listener (smtp/httpmetrics.c) and the [admin] keys of
 * tern.conf (loopback only unless allow_remote).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conf/config.h"
#include "core/metrics.h"
#include "smtp/httpmetrics.h"

static char *expose(unsigned programs)
{
    struct buf b = {0};
    metrics_expose(programs, &b);
    buf_append(&b, "", 1);
    return b.p;
}

static int setup(void **state)
{
    (void)state;
    metrics_reset();
    return 0;
}

static void test_counters_and_labels(void **state)
{
    (void)state;
    metrics_inc(M_SMTP_CONNECTIONS, "smtp", NULL);
    metrics_inc(M_SMTP_CONNECTIONS, "smtp", NULL);
    metrics_add(M_SMTP_CONNECTIONS, 5, "submission", NULL);
    metrics_inc(M_SMTP_MESSAGES, "smtp", metrics_reply_class(250));
    metrics_inc(M_SMTP_MESSAGES, "smtp", metrics_reply_class(451));
    metrics_inc(M_SMTP_MESSAGES, "smtp", metrics_reply_class(554));
    metrics_inc(M_SMTP_AUTH, "submission", "failure");
    char *t = expose(METRICS_SERVE);
    assert_non_null(strstr(t, "# TYPE tern_smtp_connections_total counter\n"));
    assert_non_null(strstr(t, "tern_smtp_connections_total{listener=\"smtp\"} 2\n"));
    assert_non_null(strstr(t, "tern_smtp_connections_total{listener=\"submission\"} 5\n"));
    assert_non_null(strstr(t, "tern_smtp_messages_total{listener=\"smtp\",class=\"2xx\"} 1\n"));
    assert_non_null(strstr(t, "tern_smtp_messages_total{listener=\"smtp\",class=\"4xx\"} 1\n"));
    assert_non_null(strstr(t, "tern_smtp_messages_total{listener=\"smtp\",class=\"5xx\"} 1\n"));
    assert_non_null(
        strstr(t, "tern_smtp_auth_total{listener=\"submission\",result=\"failure\"} 1"));
    /* families without labels are always there, at 0 */
    assert_non_null(strstr(t, "tern_smtp_client_connect_failures_total 0\n"));
    /* program selection: sink families are not serve's */
    assert_null(strstr(t, "tern_sink_messages_total"));
    assert_null(strstr(t, "tern_send_messages_total"));
    free(t);
    t = expose(METRICS_SEND);
    assert_null(strstr(t, "tern_smtp_connections_total"));
    assert_non_null(strstr(t, "tern_send_retries_total 0\n"));
    free(t);
    assert_string_equal(metrics_reply_class(199), "other");
    assert_string_equal(metrics_reply_class(600), "other");
    assert_string_equal(metrics_result_class(0), "ok");
    assert_string_equal(metrics_result_class(1), "temp");
    assert_string_equal(metrics_result_class(2), "perm");
}

static void test_gauges(void **state)
{
    (void)state;
    metrics_gauge_add(M_SMTP_SESSIONS_ACTIVE, 3, "smtp", NULL);
    metrics_gauge_add(M_SMTP_SESSIONS_ACTIVE, -1, "smtp", NULL);
    metrics_gauge_set(M_QUEUE_OLDEST_AGE, 12.5, NULL, NULL);
    char *t = expose(METRICS_SERVE);
    assert_non_null(strstr(t, "tern_smtp_sessions_active{listener=\"smtp\"} 2\n"));
    assert_non_null(strstr(t, "tern_queue_oldest_item_age_seconds 12.5\n"));
    assert_non_null(strstr(t, "# TYPE tern_queue_items gauge\n"));
    free(t);
}

static void test_histogram(void **state)
{
    (void)state;
    metrics_observe(M_DELIVERY_DURATION, 0.0005, "maildir", NULL);
    metrics_observe(M_DELIVERY_DURATION, 0.2, "maildir", NULL);
    metrics_observe(M_DELIVERY_DURATION, 1000, "maildir", NULL); /* over the last bound */
    char *t = expose(METRICS_SERVE);
    assert_non_null(strstr(
        t, "tern_delivery_attempt_duration_seconds_bucket{courier=\"maildir\",le=\"0.001\"} 1\n"));
    assert_non_null(strstr(
        t, "tern_delivery_attempt_duration_seconds_bucket{courier=\"maildir\",le=\"0.25\"} 2\n"));
    assert_non_null(strstr(
        t, "tern_delivery_attempt_duration_seconds_bucket{courier=\"maildir\",le=\"300\"} 2\n"));
    assert_non_null(strstr(
        t, "tern_delivery_attempt_duration_seconds_bucket{courier=\"maildir\",le=\"+Inf\"} 3\n"));
    assert_non_null(
        strstr(t, "tern_delivery_attempt_duration_seconds_count{courier=\"maildir\"} 3\n"));
    assert_non_null(
        strstr(t, "tern_delivery_attempt_duration_seconds_sum{courier=\"maildir\"} 1000.2005"));
    assert_non_null(strstr(t, "# TYPE tern_delivery_latency_seconds histogram\n"));
    free(t);
}

static void test_escaping_and_bounds(void **state)
{
    (void)state;
    char out[64];
    assert_string_equal(metrics_escape_label("a\"b\\c\nd", out, sizeof(out)), "a\\\"b\\\\c\\nd");
    assert_string_equal(metrics_escape_label("\x01\xff", out, sizeof(out)), "??");
    assert_string_equal(metrics_escape_label("abcdef", out, 4), "a"); /* never cut an escape */
    metrics_inc(M_SINK_FAULTS, "we\"ird\n", NULL);
    /* a long value is cut to METRICS_LABEL_MAX octets: both spellings are one series */
    metrics_inc(M_SINK_FAULTS, "0123456789012345678901234567890123456789", NULL);
    metrics_inc(M_SINK_FAULTS, "0123456789012345678901234567890XYZ", NULL);
    char *t = expose(METRICS_SINK);
    assert_non_null(strstr(t, "tern_sink_faults_total{kind=\"we\\\"ird\\n\"} 1\n"));
    assert_non_null(
        strstr(t, "tern_sink_faults_total{kind=\"0123456789012345678901234567890\"} 2\n"));
    free(t);
    /* more label combinations than a family holds (2 + 53 > 48): dropped and counted */
    char v[32];
    for (int i = 0; i < METRICS_SERIES_MAX + 5; i++) {
        snprintf(v, sizeof(v), "k%d", i);
        metrics_inc(M_SINK_FAULTS, v, NULL);
    }
    t = expose(METRICS_SINK);
    assert_non_null(strstr(t, "tern_metrics_series_dropped_total 7\n"));
    free(t);
}

static void *test_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100000; i++)
        metrics_inc(M_DELIVERY_ATTEMPTS, i % 2 ? "maildir" : "smtp", "ok");
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, test_thread, NULL), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    char *t = expose(METRICS_SERVE);
    assert_non_null(
        strstr(t, "tern_delivery_attempts_total{courier=\"maildir\",class=\"ok\"} 200000\n"));
    assert_non_null(
        strstr(t, "tern_delivery_attempts_total{courier=\"smtp\",class=\"ok\"} 200000\n"));
    free(t);
}

static int collected;
static void collect(void *ctx)
{
    (void)ctx;
    collected++;
    metrics_gauge_set(M_QUEUE_ITEMS, 7, "waiting", NULL);
}

/* One HTTP/1.0 request to addr; the whole answer into out. */
static void http(const char *bound, const char *req, char *out, size_t size)
{
    const char *colon = strrchr(bound, ':');
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    size_t n = 0;
    ssize_t r;
    while (n + 1 < size && (r = read(fd, out + n, size - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(fd);
}

static void test_http(void **state)
{
    (void)state;
    char bound[80], why[256];
    static char out[65536];
    metrics_set_collector(collect, NULL);
    struct httpmetrics *hm = httpmetrics_start(NULL, "127.0.0.1:0", METRICS_SERVE, bound,
                                               sizeof(bound), why, sizeof(why));
    assert_non_null(hm);
    http(bound, "GET /metrics HTTP/1.0\r\n\r\n", out, sizeof(out));
    assert_non_null(strstr(out, "HTTP/1.0 200"));
    assert_non_null(strstr(out, "Content-Type: text/plain; version=0.0.4; charset=utf-8"));
    assert_non_null(strstr(out, "tern_queue_items{state=\"waiting\"} 7\n"));
    assert_int_equal(collected, 1);
    http(bound, "GET /other HTTP/1.0\r\n\r\n", out, sizeof(out));
    assert_non_null(strstr(out, " 404 "));
    http(bound, "DELETE /metrics HTTP/1.0\r\n\r\n", out, sizeof(out));
    assert_non_null(strstr(out, " 405 "));
    http(bound, "HEAD /metrics HTTP/1.0\r\n\r\n", out, sizeof(out));
    assert_non_null(strstr(out, " 200 "));
    assert_null(strstr(out, "tern_queue_items"));
    httpmetrics_free(hm);
    /* a port in use */
    hm = httpmetrics_start(NULL, "127.0.0.1:0", METRICS_SERVE, bound, sizeof(bound), why,
                           sizeof(why));
    assert_non_null(hm);
    assert_null(httpmetrics_start(NULL, bound, METRICS_SERVE, out, 80, why, sizeof(why)));
    httpmetrics_free(hm);
}

static void test_loopback(void **state)
{
    (void)state;
    struct sockaddr_in a = {.sin_family = AF_INET};
    struct sockaddr_in6 b = {.sin6_family = AF_INET6};
    inet_pton(AF_INET, "127.3.4.5", &a.sin_addr);
    assert_int_equal(httpmetrics_loopback((struct sockaddr *)&a), 1);
    inet_pton(AF_INET, "10.0.0.1", &a.sin_addr);
    assert_int_equal(httpmetrics_loopback((struct sockaddr *)&a), 0);
    inet_pton(AF_INET, "0.0.0.0", &a.sin_addr);
    assert_int_equal(httpmetrics_loopback((struct sockaddr *)&a), 0);
    inet_pton(AF_INET6, "::1", &b.sin6_addr);
    assert_int_equal(httpmetrics_loopback((struct sockaddr *)&b), 1);
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &b.sin6_addr);
    assert_int_equal(httpmetrics_loopback((struct sockaddr *)&b), 1);
    inet_pton(AF_INET6, "::", &b.sin6_addr);
    assert_int_equal(httpmetrics_loopback((struct sockaddr *)&b), 0);
}

static int parse(const char *text, struct conf *c, struct conf_errors *e)
{
    return conf_parse_string(text, strlen(text), "t.conf", "/base", c, e);
}

static void test_config(void **state)
{
    (void)state;
    struct conf c;
    struct conf_errors e = {0};
    assert_int_equal(parse("[server]\nhostname = mx.example\n", &c, &e), 0);
    assert_int_equal(c.admin.n, 0); /* off by default */
    assert_int_equal(parse("[admin]\nlisten = 127.0.0.1:9425 [::1]:9425\n", &c, &e), 0);
    assert_int_equal(c.admin.n, 2);
    assert_string_equal(c.admin.v[0].text, "127.0.0.1:9425");
    assert_int_equal(parse("[admin]\nlisten = 0.0.0.0:9425\n", &c, &e), -1);
    assert_non_null(strstr(e.v[0], "t.conf:2: [admin] listen: 0.0.0.0:9425 is not a loopback"));
    conf_errors_free(&e);
    memset(&e, 0, sizeof(e));
    assert_int_equal(parse("[admin]\nlisten = 192.0.2.1:9425\nallow_remote = yes\n", &c, &e), 0);
    assert_true(c.admin_allow_remote);
    assert_int_equal(parse("[admin]\nlisten = off\n", &c, &e), 0);
    assert_int_equal(c.admin.n, 0);
    assert_int_equal(parse("[admin]\nallow_remote = maybe\n", &c, &e), -1);
    conf_errors_free(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_counters_and_labels, setup),
        cmocka_unit_test_setup(test_gauges, setup),
        cmocka_unit_test_setup(test_histogram, setup),
        cmocka_unit_test_setup(test_escaping_and_bounds, setup),
        cmocka_unit_test_setup(test_threads, setup),
        cmocka_unit_test_setup(test_http, setup),
        cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
