/*
 * test_dns.c - MX routing (dns/dns.c) against real DNS servers on
 * 127.0.0.1: a dnsmasq started here (--no-daemon, own port, no system
 * config, records from the command line, killed by PID at the end) and a
 * small responder thread that answers every MX query with SERVFAIL and
 * every A query with an address, to prove there is no A fallback.
 * Checked: order by preference, shuffling of equal preferences, the host
 * limit, AAAA before A, implicit MX, null MX, NXDOMAIN, NODATA, hosts that
 * do not resolve, REFUSED, SERVFAIL, timeouts (a silent socket) and an
 * unreachable server, server failover, address literals without DNS, name
 * checks, the servers-string parser and the RFC 5321 loop check.  Tests
 * that need dnsmasq are skipped when /usr/sbin/dnsmasq is missing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../support/testutil.h"
#include "dns/dns.h"

#ifndef DNSMASQ
#define DNSMASQ "/usr/sbin/dnsmasq"
#endif

static char dir[64];
static pid_t dm_pid = -1;
static unsigned dm_port;     /* dnsmasq */
static int silent_fd = -1;   /* a UDP socket nobody reads: queries time out */
static unsigned silent_port; /* its port */
static unsigned dead_port;   /* nothing listens: ICMP port unreachable */
static int sf_fd = -1;       /* the SERVFAIL responder */
static unsigned sf_port;
static pthread_t sf_thread;
static atomic_int sf_stop, sf_mx_queries, sf_a_queries;
static char dm_servers[64];

/* Bind a UDP socket on 127.0.0.1 with a kernel-chosen port. */
static int udp_socket(unsigned *port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(sin.sin_port);
    return fd;
}

/* A port free for both UDP and TCP right now (dnsmasq binds both). */
static unsigned free_port(void)
{
    for (int tries = 0; tries < 20; tries++) {
        unsigned port;
        int u = udp_socket(&port);
        if (u < 0)
            return 0;
        int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int ok = t >= 0 && bind(t, (struct sockaddr *)&sin, sizeof(sin)) == 0;
        if (t >= 0)
            close(t);
        close(u);
        if (ok)
            return port;
    }
    return 0;
}

/* ---- the SERVFAIL responder ---- */

static void *sf_main(void *arg)
{
    (void)arg;
    unsigned char q[512], a[600];
    while (!atomic_load(&sf_stop)) {
        struct pollfd p = {.fd = sf_fd, .events = POLLIN};
        struct sockaddr_storage from;
        socklen_t fl = sizeof(from);
        if (poll(&p, 1, 50) <= 0)
            continue;
        ssize_t n = recvfrom(sf_fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
        if (n < 17)
            continue;
        size_t i = 12;
        while (i < (size_t)n && q[i] != 0 && q[i] < 64)
            i += (size_t)q[i] + 1;
        if (i + 5 > (size_t)n || q[i] != 0)
            continue;
        size_t qend = i + 5; /* root label, type, class */
        unsigned type = (unsigned)q[i + 1] << 8 | q[i + 2];
        memcpy(a, q, qend);
        a[2] = 0x81; /* QR, RD */
        a[3] = 0x80; /* RA, rcode 0 */
        memset(a + 6, 0, 6);
        size_t len = qend;
        if (type == 15) {
            atomic_fetch_add(&sf_mx_queries, 1);
            a[3] = 0x82; /* SERVFAIL */
        } else if (type == 1) {
            static const unsigned char rr[] = {0xc0, 12, 0, 1, 0,   1, 0, 0,
                                               0,    60, 0, 4, 192, 0, 2, 77};
            atomic_fetch_add(&sf_a_queries, 1);
            a[7] = 1;
            memcpy(a + len, rr, sizeof(rr));
            len += sizeof(rr);
        }
        if (sendto(sf_fd, a, len, 0, (struct sockaddr *)&from, fl) < 0)
            continue; /* the client went away: nothing to do */
    }
    return NULL;
}

/* ---- dnsmasq ---- */

static int dm_start(void)
{
    char portarg[32], dead[64], log[128];
    const char *args[80];
    int n = 0;

    dm_port = free_port();
    if (dm_port == 0)
        return -1;
    snprintf(portarg, sizeof(portarg), "--port=%u", dm_port);
    snprintf(dead, sizeof(dead), "--server=/dead.example/127.0.0.1#%u", silent_port);
    snprintf(log, sizeof(log), "%s/dnsmasq.log", dir);
    args[n++] = DNSMASQ;
    args[n++] = "--no-daemon";
    args[n++] = "--conf-file=/dev/null";
    args[n++] = "--pid-file=";
    args[n++] = "--no-resolv";
    args[n++] = "--no-hosts";
    args[n++] = "--no-poll";
    args[n++] = portarg;
    args[n++] = "--listen-address=127.0.0.1";
    args[n++] = "--bind-interfaces";
    args[n++] = "--cache-size=0";
    args[n++] = "--local=/test/"; /* names under test. that are not here: NXDOMAIN */
    args[n++] = dead;             /* forwarded to a socket that never answers */
    /* order and shuffling */
    args[n++] = "--mx-host=pref.test,mx1.pref.test,10";
    args[n++] = "--mx-host=pref.test,mxa.pref.test,20";
    args[n++] = "--mx-host=pref.test,mxb.pref.test,20";
    args[n++] = "--mx-host=pref.test,mxc.pref.test,20";
    args[n++] = "--mx-host=pref.test,mx9.pref.test,30";
    args[n++] = "--host-record=mx1.pref.test,192.0.2.1,2001:db8::1";
    args[n++] = "--host-record=mxa.pref.test,192.0.2.11";
    args[n++] = "--host-record=mxb.pref.test,2001:db8::12";
    args[n++] = "--host-record=mxc.pref.test,192.0.2.13,2001:db8::13";
    args[n++] = "--host-record=mx9.pref.test,192.0.2.19";
    /* implicit MX, NODATA, null MX */
    args[n++] = "--host-record=implicit.test,192.0.2.9,2001:db8::9";
    args[n++] = "--txt-record=nodata.test,hello";
    args[n++] = "--mx-host=nullmx.test,.,0";
    args[n++] = "--mx-host=nullplus.test,.,0";
    args[n++] = "--mx-host=nullplus.test,mx.nullplus.test,10";
    args[n++] = "--host-record=mx.nullplus.test,192.0.2.50";
    /* hosts that do not resolve */
    args[n++] = "--mx-host=partial.test,missing.partial.test,10";
    args[n++] = "--mx-host=partial.test,ok.partial.test,20";
    args[n++] = "--host-record=ok.partial.test,192.0.2.30";
    args[n++] = "--mx-host=nohost.test,gone.nohost.test,10";
    args[n++] = "--mx-host=halfdead.test,mx.dead.example,10";
    args[n++] = "--mx-host=halfdead.test,ok.halfdead.test,20";
    args[n++] = "--host-record=ok.halfdead.test,192.0.2.40";
    args[n++] = "--mx-host=onlydead.test,mx.dead.example,10";
    /* duplicates and the host limit */
    args[n++] = "--mx-host=dup.test,a.dup.test,10";
    args[n++] = "--mx-host=dup.test,A.dup.test,20";
    args[n++] = "--mx-host=dup.test,b.dup.test,30";
    args[n++] = "--host-record=a.dup.test,192.0.2.60";
    args[n++] = "--host-record=b.dup.test,192.0.2.61";
    /* TXT: several strings in one record, two records, underscores, a long record */
    args[n++] = "--txt-record=_dmarc.txt.test,v=DMARC1; p=,reject";
    args[n++] = "--txt-record=sel._domainkey.txt.test,v=DKIM1; k=ed25519; p=abc";
    args[n++] = "--txt-record=sel._domainkey.txt.test,second";
    static char longtxt[1100];
    memcpy(longtxt, "--txt-record=long.txt.test,", 27);
    for (int i = 0; i < 4; i++) { /* 4 strings of 250 octets: one record of 1000 */
        memset(longtxt + 27 + i * 251, 'a' + i, 250);
        longtxt[27 + i * 251 + 250] = ',';
    }
    longtxt[27 + 4 * 251 - 1] = '\0';
    args[n++] = longtxt;
    static char many[2][12][64];
    for (int i = 0; i < 12; i++) {
        snprintf(many[0][i], sizeof(many[0][i]), "--mx-host=many.test,h%d.many.test,%d", i + 1,
                 i + 1);
        snprintf(many[1][i], sizeof(many[1][i]), "--host-record=h%d.many.test,192.0.2.%d", i + 1,
                 100 + i);
        args[n++] = many[0][i];
        args[n++] = many[1][i];
    }
    args[n] = NULL;

    dm_pid = fork();
    if (dm_pid < 0)
        return -1;
    if (dm_pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        execv(DNSMASQ, (char *const *)args);
        _exit(127);
    }
    snprintf(dm_servers, sizeof(dm_servers), "127.0.0.1:%u", dm_port);

    /* ready when it answers */
    struct dns_conf c = {.servers = dm_servers, .timeout_ms = 100, .tries = 1};
    for (int i = 0; i < 50; i++) {
        static struct dns_route r;
        char why[256];
        int st;
        if (dns_route(&c, "implicit.test", &r, why, sizeof(why)) == DNS_OK)
            return 0;
        if (waitpid(dm_pid, &st, WNOHANG) == dm_pid) { /* died: port taken? */
            dm_pid = -1;
            return -1;
        }
        usleep(50 * 1000);
    }
    return -1;
}

static void dm_stop(void)
{
    if (dm_pid > 0) {
        int st;
        if (kill(dm_pid, SIGTERM) == 0)
            while (waitpid(dm_pid, &st, 0) < 0 && errno == EINTR)
                ;
        dm_pid = -1;
    }
}

static int group_setup(void **state)
{
    (void)state;
    if (!tu_tmpdir(dir, sizeof(dir), "tern-dns"))
        return -1;
    silent_fd = udp_socket(&silent_port);
    sf_fd = udp_socket(&sf_port);
    int d = udp_socket(&dead_port);
    if (silent_fd < 0 || sf_fd < 0 || d < 0)
        return -1;
    close(d); /* nothing listens there now */
    if (pthread_create(&sf_thread, NULL, sf_main, NULL) != 0)
        return -1;
    if (access(DNSMASQ, X_OK) == 0) {
        for (int i = 0; i < 3 && dm_pid < 0; i++)
            if (dm_start() < 0)
                dm_stop();
        if (dm_pid < 0) {
            fprintf(stderr, "test_dns: dnsmasq did not start (see %s/dnsmasq.log)\n", dir);
            return -1;
        }
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    dm_stop();
    atomic_store(&sf_stop, 1);
    pthread_join(sf_thread, NULL);
    close(sf_fd);
    close(silent_fd);
    return tu_rmtree(dir) == 0 ? 0 : -1;
}

#define NEED_DNSMASQ()                                                                             \
    do {                                                                                           \
        if (dm_pid < 0) {                                                                          \
            fprintf(stderr, "dnsmasq is not installed (scripts/install-deps): skipped\n");         \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

static struct dns_route route;
static char why[512];

static int route_dm(const char *domain)
{
    struct dns_conf c = {.servers = dm_servers, .timeout_ms = 300, .tries = 1};
    return dns_route(&c, domain, &route, why, sizeof(why));
}

static void assert_addr(const struct dns_addr *a, int family, const char *text)
{
    char buf[INET6_ADDRSTRLEN];
    assert_int_equal(a->ss.ss_family, family);
    if (family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;
        assert_int_equal(a->len, sizeof(*s6));
        assert_int_equal(s6->sin6_port, 0);
        assert_non_null(inet_ntop(AF_INET6, &s6->sin6_addr, buf, sizeof(buf)));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->ss;
        assert_int_equal(a->len, sizeof(*s4));
        assert_int_equal(s4->sin_port, 0);
        assert_non_null(inet_ntop(AF_INET, &s4->sin_addr, buf, sizeof(buf)));
    }
    assert_string_equal(buf, text);
}

/* ---- tests with dnsmasq ---- */

static void test_preference_order(void **state)
{
    (void)state;
    NEED_DNSMASQ();
    assert_int_equal(route_dm("pref.test"), DNS_OK);
    assert_string_equal(why, "");
    assert_false(route.implicit_mx);
    assert_int_equal(route.nhosts, 5);
    assert_string_equal(route.hosts[0].name, "mx1.pref.test");
    assert_int_equal(route.hosts[0].preference, 10);
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(route.hosts[i].preference, 20);
        assert_int_equal(strncmp(route.hosts[i].name, "mx", 2), 0);
    }
    assert_string_equal(route.hosts[4].name, "mx9.pref.test");
    assert_int_equal(route.hosts[4].preference, 30);
    /* AAAA first, then A */
    assert_int_equal(route.hosts[0].naddrs, 2);
    assert_addr(&route.hosts[0].addrs[0], AF_INET6, "2001:db8::1");
    assert_addr(&route.hosts[0].addrs[1], AF_INET, "192.0.2.1");
    assert_int_equal(route.hosts[4].naddrs, 1);
    assert_addr(&route.hosts[4].addrs[0], AF_INET, "192.0.2.19");
    /* a trailing dot is the same domain */
    assert_int_equal(route_dm("pref.test."), DNS_OK);
    assert_int_equal(route.nhosts, 5);
}

static void test_shuffle_equal_preferences(void **state)
{
    (void)state;
    NEED_DNSMASQ();
    struct dns_conf c = {.servers = dm_servers, .timeout_ms = 300, .tries = 1};
    struct dns_resolver *r = dns_resolver_new(&c, why, sizeof(why));
    int first[3] = {0, 0, 0};
    assert_non_null(r);
    for (int i = 0; i < 60; i++) {
        assert_int_equal(dns_resolver_route(r, "pref.test", &route, why, sizeof(why)), DNS_OK);
        assert_int_equal(route.nhosts, 5);
        assert_string_equal(route.hosts[0].name, "mx1.pref.test");
        assert_string_equal(route.hosts[4].name, "mx9.pref.test");
        char c2 = route.hosts[1].name[2];
        assert_true(c2 >= 'a' && c2 <= 'c');
        first[c2 - 'a']++;
        /* each of the three exactly once among positions 1..3 */
        assert_int_not_equal(route.hosts[1].name[2], route.hosts[2].name[2]);
        assert_int_not_equal(route.hosts[1].name[2], route.hosts[3].name[2]);
        assert_int_not_equal(route.hosts[2].name[2], route.hosts[3].name[2]);
        for (int h = 1; h <= 3; h++) {
            const struct dns_host *x = &route.hosts[h];
            if (strcmp(x->name, "mxa.pref.test") == 0) {
                assert_int_equal(x->naddrs, 1);
                assert_addr(&x->addrs[0], AF_INET, "192.0.2.11");
            } else if (strcmp(x->name, "mxb.pref.test") == 0) {
                assert_int_equal(x->naddrs, 1);
                assert_addr(&x->addrs[0], AF_INET6, "2001:db8::12");
            } else {
                assert_int_equal(x->naddrs, 2);
                assert_addr(&x->addrs[0], AF_INET6, "2001:db8::13");
                assert_addr(&x->addrs[1], AF_INET, "192.0.2.13");
            }
        }
    }
    dns_resolver_free(r);
    /* 60 draws: a host never first has probability 3 * (2/3)^60 ~ 1e-10 */
    assert_true(first[0] > 0 && first[1] > 0 && first[2] > 0);
}

static void test_implicit_mx(void **state)
{
    (void)state;
    NEED_DNSMASQ();
    assert_int_equal(route_dm("implicit.test"), DNS_OK);
    assert_true(route.implicit_mx);
    assert_int_equal(route.nhosts, 1);
    assert_string_equal(route.hosts[0].name, "implicit.test");
    assert_int_equal(route.hosts[0].preference, 0);
    assert_int_equal(route.hosts[0].naddrs, 2);
    assert_addr(&route.hosts[0].addrs[0], AF_INET6, "2001:db8::9");
    assert_addr(&route.hosts[0].addrs[1], AF_INET, "192.0.2.9");
}

static void test_nodata_everywhere_is_permanent(void **state)
{
    (void)state;
    NEED_DNSMASQ();
    assert_int_equal(route_dm("nodata.test"), DNS_PERMANENT);
    assert_int_equal(route.nhosts, 0);
    assert_non_null(strstr(why, "no MX and no address"));
}

static void test_null_mx(void **state)
{
    (void)state;
    NEED_DNSMASQ();
    assert_int_equal(route_dm("nullmx.test"), DNS_PERMANENT);
    assert_int_equal(route.nhosts, 0);
    assert_non_null(strstr(why, "accepts no mail"));
    /* "." beside real MX records is not a null MX: that entry is skipped */
    assert_int_equal(route_dm("nullplus.test"), DNS_OK);
    assert_int_equal(route.nhosts, 1);
    assert_string_equal(route.hosts[0].name, "mx.nullplus.test");
    assert_non_null(strstr(route.notes, "not a valid host name"));
}

static void test_nxdomain(void **state)
{
    (void)state;
    NEED_DNSMASQ();
    assert_int_equal(route_dm("nx.test"), DNS_PERMANENT);
    assert_int_equal(route.nhosts, 0);
    assert_non_null(strstr(why, "does not exist"));
}

static void test_unresolvable_hosts(void **state)
{
    (void)state;
    NEED_DNSMASQ();
    /* one of two hosts has no address: skipped with a note */
    assert_int_equal(route_dm("partial.test"), DNS_OK);
    assert_int_equal(route.nhosts, 1);
    assert_string_equal(route.hosts[0].name, "ok.partial.test");
    assert_int_equal(route.hosts[0].preference, 20);
    assert_non_null(strstr(route.notes, "missing.partial.test: no address"));
    /* the only host has no address: retry later */
    assert_int_equal(route_dm("nohost.test"), DNS_TRANSIENT);
    assert_int_equal(route.nhosts, 0);
    assert_non_null(strstr(why, "gone.nohost.test"));
    /* a host whose lookup times out is skipped, the other one used */
    assert_int_equal(route_dm("halfdead.test"), DNS_OK);
    assert_int_equal(route.nhosts, 1);
    assert_string_equal(route.hosts[0].name, "ok.halfdead.test");
    assert_non_null(strstr(route.notes, "mx.dead.example"));
    assert_int_equal(route_dm("onlydead.test"), DNS_TRANSIENT);
}

static void test_duplicates_and_limit(void **state)
{
    (void)state;
    NEED_DNSMASQ();
    assert_int_equal(route_dm("dup.test"), DNS_OK);
    assert_int_equal(route.nhosts, 2);
    assert_int_equal(route.hosts[0].preference, 10);
    assert_string_equal(route.hosts[1].name, "b.dup.test");

    assert_int_equal(route_dm("many.test"), DNS_OK);
    assert_int_equal(route.nhosts, DNS_MAX_HOSTS);
    for (int i = 0; i < DNS_MAX_HOSTS; i++) {
        char name[32], addr[32];
        snprintf(name, sizeof(name), "h%d.many.test", i + 1);
        snprintf(addr, sizeof(addr), "192.0.2.%d", 100 + i);
        assert_string_equal(route.hosts[i].name, name);
        assert_int_equal(route.hosts[i].preference, i + 1);
        assert_addr(&route.hosts[i].addrs[0], AF_INET, addr);
    }
    assert_non_null(strstr(route.notes, "2 more MX records ignored"));

    /* a configured limit below the maximum */
    struct dns_conf c = {.servers = dm_servers, .timeout_ms = 300, .tries = 1, .max_hosts = 3};
    assert_int_equal(dns_route(&c, "many.test", &route, why, sizeof(why)), DNS_OK);
    assert_int_equal(route.nhosts, 3);
    assert_string_equal(route.hosts[2].name, "h3.many.test");
    assert_non_null(strstr(route.notes, "9 more MX records ignored (limit 3 hosts)"));
}

static void test_refused(void **state)
{
    (void)state;
    NEED_DNSMASQ();
    /* dnsmasq has no upstream for this name */
    assert_int_equal(route_dm("elsewhere.example"), DNS_TRANSIENT);
    assert_int_equal(route.nhosts, 0);
    assert_non_null(strstr(why, "MX lookup failed"));
}

static void test_upstream_timeout(void **state)
{
    (void)state;
    NEED_DNSMASQ();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(route_dm("dead.example"), DNS_TRANSIENT);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_non_null(strstr(why, "timeout"));
    assert_true(t1.tv_sec - t0.tv_sec < 3);
}

static void test_failover_to_second_server(void **state)
{
    (void)state;
    NEED_DNSMASQ();
    char servers[96];
    snprintf(servers, sizeof(servers), " 127.0.0.1:%u , 127.0.0.1:%u", dead_port, dm_port);
    struct dns_conf c = {.servers = servers, .timeout_ms = 300, .tries = 1};
    assert_int_equal(dns_route(&c, "implicit.test", &route, why, sizeof(why)), DNS_OK);
    assert_int_equal(route.nhosts, 1);
}

static void *thread_main(void *arg)
{
    struct dns_conf c = {.servers = dm_servers, .timeout_ms = 300, .tries = 1};
    struct dns_resolver *r = dns_resolver_new(&c, NULL, 0);
    struct dns_route *rt = malloc(sizeof(*rt));
    char w[256];
    intptr_t bad = r == NULL || rt == NULL;
    for (int i = 0; i < 25 && !bad; i++) {
        const char *d = (i + (int)(intptr_t)arg) % 2 ? "pref.test" : "implicit.test";
        bad = dns_resolver_route(r, d, rt, w, sizeof(w)) != DNS_OK ||
              rt->nhosts != (d[0] == 'p' ? 5u : 1u);
        /* and one call that builds its own resolver */
        bad = bad || dns_route(&c, "nx.test", rt, w, sizeof(w)) != DNS_PERMANENT;
    }
    dns_resolver_free(r);
    free(rt);
    return (void *)bad;
}

static void test_threads(void **state)
{
    (void)state;
    NEED_DNSMASQ();
    pthread_t t[4];
    for (intptr_t i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, thread_main, (void *)i), 0);
    for (int i = 0; i < 4; i++) {
        void *bad;
        assert_int_equal(pthread_join(t[i], &bad), 0);
        assert_null(bad);
    }
}

/* ---- tests without dnsmasq ---- */

static void test_servfail_never_falls_back(void **state)
{
    (void)state;
    char servers[32];
    snprintf(servers, sizeof(servers), "127.0.0.1:%u", sf_port);
    struct dns_conf c = {.servers = servers, .timeout_ms = 300, .tries = 2};
    atomic_store(&sf_a_queries, 0);
    atomic_store(&sf_mx_queries, 0);
    assert_int_equal(dns_route(&c, "sf.example", &route, why, sizeof(why)), DNS_TRANSIENT);
    assert_int_equal(route.nhosts, 0);
    assert_non_null(strstr(why, "MX lookup failed"));
    assert_true(atomic_load(&sf_mx_queries) >= 1);
    assert_int_equal(atomic_load(&sf_a_queries), 0); /* the A answer was never asked for */
}

static void test_silent_server_times_out(void **state)
{
    (void)state;
    char servers[32];
    struct timespec t0, t1;
    snprintf(servers, sizeof(servers), "127.0.0.1:%u", silent_port);
    struct dns_conf c = {.servers = servers, .timeout_ms = 200, .tries = 2}; /* 200 + 400 ms */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(dns_route(&c, "example.org", &route, why, sizeof(why)), DNS_TRANSIENT);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms >= 500 && ms < 2500);
    assert_non_null(strstr(why, "timeout"));
}

static void test_unreachable_server(void **state)
{
    (void)state;
    char servers[32];
    snprintf(servers, sizeof(servers), "127.0.0.1:%u", dead_port);
    struct dns_conf c = {.servers = servers, .timeout_ms = 300, .tries = 1};
    assert_int_equal(dns_route(&c, "example.org", &route, why, sizeof(why)), DNS_TRANSIENT);
    assert_int_equal(route.nhosts, 0);
    assert_non_null(strstr(why, "example.org: MX lookup failed"));
}

static void test_literals(void **state)
{
    (void)state;
    char servers[32];
    /* an unreachable server: a literal must not need it */
    snprintf(servers, sizeof(servers), "127.0.0.1:%u", dead_port);
    struct dns_conf c = {.servers = servers, .timeout_ms = 300, .tries = 1};
    assert_int_equal(dns_route(&c, "[192.0.2.5]", &route, why, sizeof(why)), DNS_OK);
    assert_true(route.literal);
    assert_int_equal(route.nhosts, 1);
    assert_string_equal(route.hosts[0].name, "[192.0.2.5]");
    assert_int_equal(route.hosts[0].naddrs, 1);
    assert_addr(&route.hosts[0].addrs[0], AF_INET, "192.0.2.5");
    assert_int_equal(dns_route(&c, "[IPv6:2001:db8::7]", &route, why, sizeof(why)), DNS_OK);
    assert_addr(&route.hosts[0].addrs[0], AF_INET6, "2001:db8::7");
    assert_int_equal(dns_route(&c, "[ipv6:::1]", &route, why, sizeof(why)), DNS_OK);
    assert_addr(&route.hosts[0].addrs[0], AF_INET6, "::1");

    static const char *bad[] = {
        "[192.0.2.300]", "[IPv6:192.0.2.1]", "[2001:db8::1]", "[tag:foo]",   "[]",
        "[192.0.2.1",    "[IPv6:]",          "[ 192.0.2.1]",  "[192.0.2.1]x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(dns_route(&c, bad[i], &route, why, sizeof(why)), DNS_PERMANENT);
        assert_int_equal(route.nhosts, 0);
        assert_non_null(strstr(why, "address literal"));
    }
}

static void test_txt(void **state)
{
    (void)state;
    NEED_DNSMASQ();
    struct dns_conf c = {.servers = dm_servers, .timeout_ms = 500, .tries = 1};
    struct dns_resolver *r = dns_resolver_new(&c, why, sizeof(why));
    struct dns_txt t;
    assert_non_null(r);

    /* the strings of one record are joined with nothing between them */
    assert_int_equal(dns_resolver_txt(r, "_dmarc.txt.test", &t, why, sizeof(why)), DNS_Q_OK);
    assert_int_equal(t.n, 1);
    assert_string_equal(t.rec[0], "v=DMARC1; p=reject");
    assert_int_equal(t.len[0], 18);
    dns_txt_free(&t);

    assert_int_equal(dns_resolver_txt(r, "sel._domainkey.txt.test.", &t, why, sizeof(why)),
                     DNS_Q_OK);
    assert_int_equal(t.n, 2);
    assert_false(t.truncated);
    bool saw_key = false, saw_second = false;
    for (size_t i = 0; i < t.n; i++) {
        saw_key |= strcmp(t.rec[i], "v=DKIM1; k=ed25519; p=abc") == 0;
        saw_second |= strcmp(t.rec[i], "second") == 0;
    }
    assert_true(saw_key && saw_second);
    dns_txt_free(&t);

    assert_int_equal(dns_resolver_txt(r, "long.txt.test", &t, why, sizeof(why)), DNS_Q_OK);
    assert_int_equal(t.n, 1);
    assert_int_equal(t.len[0], 1000);
    assert_int_equal(t.rec[0][0], 'a');
    assert_int_equal(t.rec[0][250], 'b');
    assert_int_equal(t.rec[0][999], 'd');
    dns_txt_free(&t);

    /* NXDOMAIN, NODATA (the name has an A record), a failing upstream, a bad name */
    assert_int_equal(dns_resolver_txt(r, "nx.txt.test", &t, why, sizeof(why)), DNS_Q_NXDOMAIN);
    assert_int_equal(t.n, 0);
    assert_int_equal(dns_resolver_txt(r, "implicit.test", &t, why, sizeof(why)), DNS_Q_NODATA);
    assert_int_equal(t.n, 0);
    assert_int_equal(dns_resolver_txt(r, "x.dead.example", &t, why, sizeof(why)), DNS_Q_TEMP);
    assert_non_null(strstr(why, "x.dead.example"));
    assert_int_equal(dns_resolver_txt(r, "bad name.test", &t, why, sizeof(why)), DNS_Q_BADNAME);
    assert_int_equal(dns_resolver_txt(r, "a..test", &t, why, sizeof(why)), DNS_Q_BADNAME);
    assert_string_equal(dns_qstatus_name(DNS_Q_NXDOMAIN), "NXDOMAIN");
    dns_resolver_free(r);
}

static void test_qname_valid(void **state)
{
    (void)state;
    assert_true(dns_qname_valid("_dmarc.example.org", 18));
    assert_true(dns_qname_valid("s._domainkey.example.org.", 25));
    assert_false(dns_qname_valid("", 0));
    assert_false(dns_qname_valid(".", 1));
    assert_false(dns_qname_valid("a..b", 4));
    assert_false(dns_qname_valid("a b", 3));
    assert_false(dns_qname_valid("a@b", 3));
    char label[70];
    memset(label, 'x', 64);
    assert_false(dns_qname_valid(label, 64));
    assert_true(dns_qname_valid(label, 63));
}

static void test_bad_names_are_not_queried(void **state)
{
    (void)state;
    char servers[32], long_label[80], long_name[300];
    snprintf(servers, sizeof(servers), "127.0.0.1:%u", sf_port);
    struct dns_conf c = {.servers = servers, .timeout_ms = 300, .tries = 1};
    memset(long_label, 'a', 64);
    strcpy(long_label + 64, ".test");
    memset(long_name, 'a', 254); /* 254 octets in labels of 63 */
    for (int i = 63; i < 254; i += 64)
        long_name[i] = '.';
    long_name[254] = '\0';
    const char *bad[] = {"",         ".",        "a..b",      "-a.test",         "a-.test",
                         "a.test-",  "a_b.test", "a b.test",  "ex\xc3\xa9.test", "a.test..",
                         long_label, long_name,  "a\r\n.test"};
    atomic_store(&sf_mx_queries, 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(dns_route(&c, bad[i], &route, why, sizeof(why)), DNS_PERMANENT);
        assert_non_null(strstr(why, "not a valid domain name"));
        for (const char *p = why; *p; p++)
            assert_true(*p >= 0x20 && *p < 0x7f);
    }
    assert_int_equal(atomic_load(&sf_mx_queries), 0);
}

static void test_name_valid(void **state)
{
    (void)state;
    char name[300];
    assert_true(dns_name_valid("example.org", 11));
    assert_true(dns_name_valid("example.org.", 12));
    assert_true(dns_name_valid("localhost", 9));
    assert_true(dns_name_valid("xn--bcher-kva.example", 21));
    assert_true(dns_name_valid("1.2.3", 5));
    assert_false(dns_name_valid("", 0));
    assert_false(dns_name_valid(".", 1));
    assert_false(dns_name_valid("a..", 3));
    assert_false(dns_name_valid(".a", 2));
    assert_false(dns_name_valid("a-", 2));
    /* 63-octet labels yes, 64 no; 253 octets yes, 254 no */
    memset(name, 'a', 63);
    assert_true(dns_name_valid(name, 63));
    memset(name, 'a', 64);
    assert_false(dns_name_valid(name, 64));
    for (int i = 0; i < 4; i++) {
        memset(name + i * 64, 'b', 63);
        name[i * 64 + 63] = '.';
    }
    name[253] = '.';
    assert_true(dns_name_valid(name, 253)); /* 4 * 64 - 3: "b{63}.b{63}.b{63}.b{61}" */
    assert_true(dns_name_valid(name, 254)); /* plus the final dot */
    name[253] = 'b';
    assert_false(dns_name_valid(name, 254));
}

static void test_null_mx_detection(void **state)
{
    (void)state;
    assert_true(dns_is_null_mx(1, ""));
    assert_true(dns_is_null_mx(1, "."));
    assert_false(dns_is_null_mx(2, ""));
    assert_false(dns_is_null_mx(1, "mx.example.org"));
    assert_false(dns_is_null_mx(0, NULL));
}

static void test_servers_parse(void **state)
{
    (void)state;
    struct dns_addr a[DNS_MAX_SERVERS];
    char buf[64];
    assert_int_equal(dns_servers_parse("127.0.0.1:5353,[::1]:53, 192.0.2.53 ,::2,[::3]", a,
                                       DNS_MAX_SERVERS, why, sizeof(why)),
                     5);
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a[0].ss;
    assert_int_equal(s4->sin_family, AF_INET);
    assert_int_equal(ntohs(s4->sin_port), 5353);
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a[1].ss;
    assert_int_equal(s6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(s6->sin6_port), 53);
    assert_string_equal(inet_ntop(AF_INET6, &s6->sin6_addr, buf, sizeof(buf)), "::1");
    s4 = (const struct sockaddr_in *)&a[2].ss;
    assert_int_equal(ntohs(s4->sin_port), 53);
    assert_string_equal(inet_ntop(AF_INET, &s4->sin_addr, buf, sizeof(buf)), "192.0.2.53");
    s6 = (const struct sockaddr_in6 *)&a[3].ss;
    assert_int_equal(ntohs(s6->sin6_port), 53);
    assert_string_equal(inet_ntop(AF_INET6, &s6->sin6_addr, buf, sizeof(buf)), "::2");
    s6 = (const struct sockaddr_in6 *)&a[4].ss;
    assert_string_equal(inet_ntop(AF_INET6, &s6->sin6_addr, buf, sizeof(buf)), "::3");

    static const char *bad[] = {"",
                                ",",
                                "127.0.0.1,",
                                "127.0.0.1:0",
                                "127.0.0.1:65536",
                                "127.0.0.1:53x",
                                "127.0.0.1:",
                                "ns.example.org",
                                "ns.example.org:53",
                                "[::1",
                                "[::1]53",
                                "[127.0.0.1]:53",
                                "300.0.0.1",
                                ("1.1.1.1,2.2.2.2,3.3.3.3,4.4.4.4,5.5.5.5,6.6.6.6,7.7.7.7,8.8.8.8,"
                                 "9.9.9.9")};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        assert_int_equal(dns_servers_parse(bad[i], a, DNS_MAX_SERVERS, why, sizeof(why)), -1);
        assert_int_equal(strncmp(why, "DNS servers: ", 13), 0);
    }
    /* a bad list makes no resolver */
    struct dns_conf c = {.servers = "127.0.0.1:0", .timeout_ms = 100, .tries = 1};
    assert_null(dns_resolver_new(&c, why, sizeof(why)));
    assert_int_equal(dns_route(&c, "example.org", &route, why, sizeof(why)), DNS_TRANSIENT);
    assert_non_null(strstr(why, "port"));
}

static void set_host(struct dns_host *h, const char *name, unsigned pref)
{
    memset(h, 0, sizeof(*h));
    snprintf(h->name, sizeof(h->name), "%s", name);
    h->preference = pref;
    h->naddrs = 1;
}

static void test_drop_self(void **state)
{
    (void)state;
    memset(&route, 0, sizeof(route));
    set_host(&route.hosts[0], "mx1.example.org", 10);
    set_host(&route.hosts[1], "mx2.example.org", 20);
    set_host(&route.hosts[2], "me.example.org", 20);
    set_host(&route.hosts[3], "mx3.example.org", 30);
    route.nhosts = 4;
    assert_int_equal(dns_route_drop_self(&route, "nobody.example.org"), 0);
    assert_int_equal(route.nhosts, 4);
    /* we are a backup MX at 20: only the better ones remain */
    assert_int_equal(dns_route_drop_self(&route, "ME.example.org."), 0);
    assert_int_equal(route.nhosts, 1);
    assert_string_equal(route.hosts[0].name, "mx1.example.org");
    assert_string_equal(route.hosts[1].name, "");
    /* we are the best MX: nothing left, 5.4.6 */
    assert_int_equal(dns_route_drop_self(&route, "mx1.example.org"), -1);
    assert_int_equal(route.nhosts, 0);
    /* implicit MX is left to the caller */
    set_host(&route.hosts[0], "me.example.org", 0);
    route.nhosts = 1;
    route.implicit_mx = true;
    assert_int_equal(dns_route_drop_self(&route, "me.example.org"), 0);
    assert_int_equal(route.nhosts, 1);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_preference_order),
        cmocka_unit_test(test_shuffle_equal_preferences),
        cmocka_unit_test(test_implicit_mx),
        cmocka_unit_test(test_nodata_everywhere_is_permanent),
        cmocka_unit_test(test_null_mx),
        cmocka_unit_test(test_nxdomain),
        cmocka_unit_test(test_unresolvable_hosts),
        cmocka_unit_test(test_duplicates_and_limit),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_upstream_timeout),
        cmocka_unit_test(test_failover_to_second_server),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_servfail_never_falls_back),
        cmocka_unit_test(test_silent_server_times_out),
        cmocka_unit_test(test_unreachable_server),
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_bad_names_are_not_queried),
        cmocka_unit_test(test_txt),
        cmocka_unit_test(test_qname_valid),
        cmocka_unit_test(test_name_valid),
        cmocka_unit_test(test_null_mx_detection),
        cmocka_unit_test(test_servers_parse),
        cmocka_unit_test(test_drop_self),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
