/*
 * test_spf.c - SPF (mailauth/spf.c): the record parser and the macro
 * expander without DNS (RFC 7208 7.4's examples exactly), then check_host()
 * against a real dnsmasq started here (--no-daemon, own port, records from
 * the command line, killed by PID at the end): every result, include
 * chains, redirect, a/mx with dual CIDR, ip6, ptr, exists with macros,
 * loops, the 10-lookup and 2-void-lookup limits, two SPF records, an
 * oversized TXT record, garbage, exp= and DNS timeouts (a zone forwarded
 * to a UDP socket nobody reads).  dnsmasq is installed by
 * scripts/install-deps: without it the DNS tests fail.
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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../support/testutil.h"
#include "dns/dns.h"
#include "mailauth/spf.h"

#ifndef DNSMASQ
#define DNSMASQ "/usr/sbin/dnsmasq"
#endif

/* ---- the parser ---- */

static struct spf_record rec;
static char why[256];

static int parse(const char *s)
{
    return spf_record_parse(s, strlen(s), &rec, why, sizeof(why));
}

static void test_parse_good(void **state)
{
    (void)state;
    assert_int_equal(parse("v=spf1"), 0);
    assert_int_equal(rec.nterms, 0);
    assert_null(rec.redirect);
    assert_int_equal(parse("V=SPF1 A MX -ALL"), 0);
    assert_int_equal(rec.nterms, 3);
    assert_int_equal(rec.terms[2].mech, SPF_M_ALL);
    assert_int_equal(rec.terms[2].qualifier, '-');

    assert_int_equal(parse("v=spf1  +a:foo.example.com/24//64 ~mx:%{d}/27 ?ptr:%{d} "
                           "ip4:192.0.2.0/24 ip6:2001:db8::/32 exists:%{i}.x.example "
                           "-include:_spf.example.com a//96 mx:mail.example.org. "
                           "redirect=_spf.example.org exp=exp.%{d} foo.bar_9=%{l}%%  "),
                     0);
    assert_int_equal(rec.nterms, 9);
    const struct spf_term *t = rec.terms;
    assert_int_equal(t[0].mech, SPF_M_A);
    assert_int_equal(t[0].qualifier, '+');
    assert_string_equal(t[0].domain, "foo.example.com");
    assert_int_equal(t[0].cidr4, 24);
    assert_int_equal(t[0].cidr6, 64);
    assert_int_equal(t[1].mech, SPF_M_MX);
    assert_int_equal(t[1].qualifier, '~');
    assert_string_equal(t[1].domain, "%{d}");
    assert_int_equal(t[1].cidr4, 27);
    assert_int_equal(t[1].cidr6, -1);
    assert_int_equal(t[2].mech, SPF_M_PTR);
    assert_int_equal(t[2].qualifier, '?');
    assert_int_equal(t[3].mech, SPF_M_IP4);
    assert_int_equal(t[3].cidr4, 24);
    assert_memory_equal(t[3].addr, "\xc0\x00\x02\x00", 4);
    assert_int_equal(t[4].mech, SPF_M_IP6);
    assert_int_equal(t[4].cidr6, 32);
    assert_int_equal(t[4].addr[0], 0x20);
    assert_int_equal(t[4].addr[1], 0x01);
    assert_int_equal(t[5].mech, SPF_M_EXISTS);
    assert_string_equal(t[5].domain, "%{i}.x.example");
    assert_int_equal(t[6].mech, SPF_M_INCLUDE);
    assert_int_equal(t[6].qualifier, '-');
    assert_int_equal(t[7].mech, SPF_M_A);
    assert_null(t[7].domain);
    assert_int_equal(t[7].cidr4, -1);
    assert_int_equal(t[7].cidr6, 96);
    assert_string_equal(t[8].domain, "mail.example.org.");
    assert_string_equal(rec.redirect, "_spf.example.org");
    assert_string_equal(rec.exp, "exp.%{d}");

    /* a toplabel with a hyphen, all-digit labels before it, a macro at the end */
    assert_int_equal(parse("v=spf1 a:1.2.3.x-1 exists:%{ir}.%{v}._spf.%{d2} include:%{d}"), 0);
    assert_int_equal(parse("v=spf1 ip6:::ffff:192.0.2.1/128 ip4:0.0.0.0/0 ip6:::/0"), 0);
    assert_true(spf_is_record("v=spf1", 6));
    assert_true(spf_is_record("v=SPF1 -all", 11));
    assert_false(spf_is_record("v=spf10 -all", 12));
    assert_false(spf_is_record("v=spf", 5));
    assert_false(spf_is_record("spf2.0/pra -all", 15));
}

static void test_parse_bad(void **state)
{
    (void)state;
    static const char *bad[] = {
        "v=spf10",
        "v=spf2 -all",
        "spf1 -all",
        "v=spf1 a:",
        "v=spf1 a:foo",            /* no top-level label */
        "v=spf1 a:foo.com:8080",   /* not a toplabel */
        "v=spf1 a:foo.123",        /* an all-digit toplabel */
        "v=spf1 a:foo.-com",       /* hyphen first */
        "v=spf1 a:%{d}.",          /* nothing after the final dot */
        "v=spf1 ip4:192.0.2.1/33", /* prefix too long */
        "v=spf1 ip6:2001:db8::/129",
        "v=spf1 ip4:192.0.2.1//64", /* no dual cidr on ip4 */
        "v=spf1 ip4:1.2.03.4",      /* leading zero */
        "v=spf1 ip4:1.2.3.444",
        "v=spf1 ip4:1.2.3",
        "v=spf1 ip6:2001:db8:ZZZZ::",
        "v=spf1 ip4",
        "v=spf1 ip4:",
        "v=spf1 a/33",
        "v=spf1 a//129",
        "v=spf1 a/024",
        "v=spf1 mx:foo.com/24/64",
        "v=spf1 foo",
        "v=spf1 allx",
        "v=spf1 all:foo.com",
        "v=spf1 all/24",
        "v=spf1 =a",
        "v=spf1 *all",
        "v=spf1 include",
        "v=spf1 include:",
        "v=spf1 exists",
        "v=spf1 ptr/24",
        "v=spf1 redirect=a.com redirect=b.com",
        "v=spf1 exp=a.com EXP=b.com",
        "v=spf1 redirect=",
        "v=spf1 exp=",
        "v=spf1 a:%{x}.com",   /* unknown macro letter */
        "v=spf1 a:%{d0}.com",  /* digits must be nonzero */
        "v=spf1 a:%{d}x.com%", /* % at the end */
        "v=spf1 a:%d.com",     /* % without {, %, _ or - */
        "v=spf1 a:%{d.com",    /* unclosed */
        "v=spf1 a:%{d*}.com",  /* not a delimiter */
        "v=spf1 a:%{c}.com",   /* c, r, t only in exp text */
        "v=spf1 exists:%{t}.com",
        "v=spf1 foo=%", /* an unknown modifier's macro-string must parse */
        "v=spf1 foo=%{q}",
        "v=spf1 a\tmx",          /* SP is the only separator */
        "v=spf1 a:\xc3\xa9.com", /* not ASCII */
        "v=spf1 -all,",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        if (parse(bad[i]) == 0)
            fail_msg("parsed but must not: \"%s\"", bad[i]);
        assert_true(why[0] != '\0');
        for (const char *p = why; *p; p++)
            assert_true(*p >= 0x20 && *p < 0x7f);
    }
    /* a NUL octet inside */
    assert_int_equal(spf_record_parse("v=spf1 a\0mx", 11, &rec, why, sizeof(why)), -1);

    /* too many terms, too long */
    char big[SPF_RECORD_MAX + 64];
    strcpy(big, "v=spf1");
    for (int i = 0; i < SPF_MAX_TERMS + 1; i++)
        strcat(big, " a");
    assert_int_equal(parse(big), -1);
    assert_non_null(strstr(why, "more than"));
    strcpy(big, "v=spf1");
    while (strlen(big) < SPF_RECORD_MAX + 10)
        strcat(big, " ip4:10.0.0.1");
    assert_int_equal(parse(big), -1);
    assert_non_null(strstr(why, "octets"));
    big[SPF_RECORD_MAX] = '\0';
    while (big[strlen(big) - 1] != ' ')
        big[strlen(big) - 1] = '\0';
    strcat(big, "-all");
    assert_int_equal(parse(big), -1); /* more than 64 terms */
}

/* ---- the macro expander: RFC 7208 7.4 ---- */

static const char *expand4(const char *spec, bool exp)
{
    static char out[512];
    char ip[80], cip[64];
    unsigned char a[4] = {192, 0, 2, 3};
    spf_macro_ip(AF_INET, a, ip, sizeof(ip), cip, sizeof(cip));
    struct spf_macro_ctx m = {.sender = "strong-bad@email.example.com",
                              .domain = "email.example.com",
                              .ip = ip,
                              .helo = "mx.example.org",
                              .v = "in-addr",
                              .validated = "mx.example.org",
                              .cip = cip,
                              .receiver = "mx.example.net",
                              .now = 1700000000};
    if (spf_macro_expand(spec, &m, exp, out, sizeof(out), why, sizeof(why)) < 0)
        return NULL;
    return out;
}

static const char *expand6(const char *spec, bool exp)
{
    static char out[512];
    char ip[80], cip[64];
    unsigned char a[16];
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::cb01", a), 1);
    spf_macro_ip(AF_INET6, a, ip, sizeof(ip), cip, sizeof(cip));
    struct spf_macro_ctx m = {.sender = "strong-bad@email.example.com",
                              .domain = "email.example.com",
                              .ip = ip,
                              .helo = "mx.example.org",
                              .v = "ip6",
                              .validated = "mx.example.org",
                              .cip = cip,
                              .receiver = "mx.example.net",
                              .now = 1700000000};
    if (spf_macro_expand(spec, &m, exp, out, sizeof(out), why, sizeof(why)) < 0)
        return NULL;
    return out;
}

static void test_macros_rfc_examples(void **state)
{
    (void)state;
    static const char *tab[][2] = {
        {"%{s}", "strong-bad@email.example.com"},
        {"%{o}", "email.example.com"},
        {"%{d}", "email.example.com"},
        {"%{d4}", "email.example.com"},
        {"%{d3}", "email.example.com"},
        {"%{d2}", "example.com"},
        {"%{d1}", "com"},
        {"%{dr}", "com.example.email"},
        {"%{d2r}", "example.email"},
        {"%{l}", "strong-bad"},
        {"%{l-}", "strong.bad"},
        {"%{lr}", "strong-bad"},
        {"%{lr-}", "bad.strong"},
        {"%{l1r-}", "strong"},
        {"%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"},
        {"%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"},
        {"%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"},
        {"%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com"},
        {"%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"},
    };
    for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
        const char *got = expand4(tab[i][0], false);
        if (!got || strcmp(got, tab[i][1]) != 0)
            fail_msg("%s: expected %s, got %s (%s)", tab[i][0], tab[i][1], got ? got : "error",
                     why);
    }
    assert_string_equal(expand6("%{ir}.%{v}._spf.%{d2}", false),
                        "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf."
                        "example.com");
    assert_string_equal(expand6("%{i}", false),
                        "2.0.0.1.0.d.b.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.c.b.0.1");
    assert_string_equal(expand6("%{c}", true), "2001:db8::cb01");
}

static void test_macros_more(void **state)
{
    (void)state;
    /* upper case: URL-escaped; %% %_ %- */
    assert_string_equal(expand4("%{S}", false), "strong-bad%40email.example.com");
    assert_string_equal(expand4("a%%b%_c%-d.example.com", false), "a%b c%20d.example.com");
    assert_string_equal(expand4("%{h}.%{p}.%{v}", false), "mx.example.org.mx.example.org.in-addr");
    /* more digits than parts, several delimiters, reverse with digits */
    assert_string_equal(expand4("%{d9}", false), "email.example.com");
    assert_string_equal(expand4("%{s.-}", false), "strong.bad@email.example.com");
    assert_string_equal(expand4("%{s2r.-}", false), "bad@email.strong"); /* r, then keep 2 */
    assert_null(expand4("%{s@}", false)); /* '@' is not a delimiter */
    /* a trailing dot of a domain-spec is dropped */
    assert_string_equal(expand4("%{d}.", false), "email.example.com");
    /* exp text: c r t and spaces */
    assert_string_equal(expand4("%{i} is not one of %{d}'s designated mail servers.", true),
                        "192.0.2.3 is not one of email.example.com's designated mail servers.");
    assert_string_equal(expand4("%{c} %{r} %{t}", true), "192.0.2.3 mx.example.net 1700000000");
    assert_null(expand4("%{c}", false));
    assert_null(expand4("%{t}", false));
    assert_null(expand4("%{i}%", false));
    assert_null(expand4("%{d0}", false));
    assert_null(expand4("%{z}", false));
    assert_null(expand4("a b", false)); /* no spaces outside exp text */

    /* 7.3: more than 253 octets: left-hand labels dropped */
    char spec[400], label[64];
    memset(label, 'x', 60);
    label[60] = '\0';
    snprintf(spec, sizeof(spec), "%s.%s.%s.%s.%s.%%{d}", label, label, label, label, label);
    const char *got = expand4(spec, false);
    assert_non_null(got);
    assert_true(strlen(got) <= SPF_EXPANDED_MAX);
    assert_string_equal(got + strlen(got) - 17, "email.example.com");
    assert_int_equal(got[0], 'x');
    assert_true(strlen(got) == 3 * 61 + 17); /* 5 labels would be 322: two dropped */
    /* one label longer than 253: nothing left to drop */
    char huge[400];
    memset(huge, 'y', 300);
    huge[300] = '\0';
    assert_null(expand4(huge, false));

    /* an oversized local part is cut, not overrun */
    char longs[700], ip[80];
    memset(longs, 'a', 650);
    strcpy(longs + 650, "@example.com");
    unsigned char a[4] = {192, 0, 2, 3};
    spf_macro_ip(AF_INET, a, ip, sizeof(ip), NULL, 0);
    struct spf_macro_ctx m = {.sender = longs, .domain = "example.com", .ip = ip, .v = "in-addr"};
    char out[600];
    assert_int_equal(spf_macro_expand("%{l}.%{d}", &m, false, out, sizeof(out), why, sizeof(why)),
                     0);
    assert_true(strlen(out) <= SPF_EXPANDED_MAX);
    assert_int_equal(spf_macro_expand("%{L}%{L}%{L}%{L}%{L}%{L}%{L}%{L}%{L}%{L}", &m, true, out,
                                      sizeof(out), why, sizeof(why)),
                     -1);
}

static void test_result_names(void **state)
{
    (void)state;
    assert_string_equal(spf_result_name(SPF_NONE), "none");
    assert_string_equal(spf_result_name(SPF_NEUTRAL), "neutral");
    assert_string_equal(spf_result_name(SPF_PASS), "pass");
    assert_string_equal(spf_result_name(SPF_FAIL), "fail");
    assert_string_equal(spf_result_name(SPF_SOFTFAIL), "softfail");
    assert_string_equal(spf_result_name(SPF_TEMPERROR), "temperror");
    assert_string_equal(spf_result_name(SPF_PERMERROR), "permerror");
}

/* ---- check_host() against dnsmasq ---- */

static char dir[64];
static pid_t dm_pid = -1;
static unsigned dm_port;
static int silent_fd = -1; /* a UDP socket nobody reads: queries time out */
static unsigned silent_port;
static char dm_servers[64];
static struct dns_resolver *res;

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

/* The zone: every record the DNS tests use. */
static const char *zone[] = {
    /* results */
    "--txt-record=pass.test,v=spf1 ip4:192.0.2.0/24 -all",
    "--txt-record=pass.test,some other text",
    "--txt-record=fail.test,v=spf1 -all",
    "--txt-record=soft.test,v=spf1 ~all",
    "--txt-record=neutral.test,v=spf1 ?all",
    "--txt-record=empty.test,v=spf1",
    "--txt-record=upper.test,V=SPF1 IP4:192.0.2.0/24 -ALL",
    "--txt-record=nospf.test,hello world",
    "--txt-record=split.test,v=spf1 ip4:192.0.2.3,/32 -all", /* strings joined: ".3/32" */
    /* include chains and redirect */
    "--txt-record=inc.test,v=spf1 include:pass.test -all",
    "--txt-record=chain1.test,v=spf1 include:chain2.test ~all",
    "--txt-record=chain2.test,v=spf1 -include:chain3.test ?all",
    "--txt-record=chain3.test,v=spf1 ip4:192.0.2.3 -all",
    "--txt-record=incnone.test,v=spf1 include:nospf.test -all",
    "--txt-record=incnx.test,v=spf1 include:missing.test -all",
    "--txt-record=incperm.test,v=spf1 include:garbage.test +all",
    "--txt-record=redirect.test,v=spf1 redirect=pass.test",
    "--txt-record=redirect2.test,v=spf1 ip4:198.51.100.0/24 redirect=fail.test",
    "--txt-record=redirnone.test,v=spf1 redirect=nospf.test",
    "--txt-record=redirall.test,v=spf1 ?all redirect=fail.test",
    /* a and mx with CIDR, ip6 */
    "--txt-record=a.test,v=spf1 a -all",
    "--host-record=a.test,192.0.2.10,2001:db8::10",
    "--txt-record=acidr.test,v=spf1 a:host.acidr.test/24//64 -all",
    "--host-record=host.acidr.test,192.0.2.200,2001:db8::1",
    "--txt-record=anarrow.test,v=spf1 a:host.acidr.test -all",
    "--txt-record=mx.test,v=spf1 mx/24 -all",
    "--txt-record=mxexact.test,v=spf1 mx:mx.test -all",
    "--mx-host=mx.test,mail.mx.test,10",
    "--mx-host=mx.test,mail2.mx.test,20",
    "--host-record=mail.mx.test,192.0.2.77",
    "--host-record=mail2.mx.test,198.51.100.9,2001:db8::cb01",
    "--txt-record=ip6.test,v=spf1 ip6:2001:db8::/32 -all",
    "--txt-record=ip6host.test,v=spf1 ip6:2001:db8::cb01 ip4:192.0.2.3/32 -all",
    "--txt-record=mxmany.test,v=spf1 mx ip4:192.0.2.3 -all",
    /* ptr: 192.0.2.99 is mail.ptr.test (forward-confirmed), 192.0.2.98 says
     * fake.ptr.test, which has no address */
    "--txt-record=ptr.test,v=spf1 ptr -all",
    "--txt-record=ptrother.test,v=spf1 ptr:other.test -all",
    "--host-record=mail.ptr.test,192.0.2.99",
    "--ptr-record=98.2.0.192.in-addr.arpa,fake.ptr.test",
    "--txt-record=ptr6.test,v=spf1 ptr:ptr6.test -all",
    "--host-record=mail.ptr6.test,2001:db8::99",
    /* a CNAME in front of the addresses */
    "--txt-record=cname.test,v=spf1 a:alias.cname.test -all",
    "--cname=alias.cname.test,target.cname.test",
    "--host-record=target.cname.test,192.0.2.55,2001:db8::55",
    /* exists with macros, %{p} */
    "--txt-record=exists.test,v=spf1 exists:%{ir}.%{l1+-}._spf.%{d} -all",
    "--host-record=3.2.0.192.alice._spf.exists.test,127.0.0.2",
    "--txt-record=pmacro.test,v=spf1 exists:%{p}.p.pmacro.test -all",
    "--host-record=mail.ptr.test.p.pmacro.test,127.0.0.2",
    "--txt-record=hmacro.test,v=spf1 exists:%{h}.h.hmacro.test -all",
    "--host-record=helo.example.h.hmacro.test,127.0.0.2",
    /* target names with any visible octet (7.1): a local part with '+', a ':' */
    "--txt-record=plus.test,v=spf1 exists:%{l}._spf.%{d} -all",
    "--host-record=first+tag._spf.plus.test,127.0.0.2",
    "--txt-record=colon.test,v=spf1 a:x:y.colon.test -all",
    "--address=/x:y.colon.test/192.0.2.3",
    /* loops */
    "--txt-record=self.test,v=spf1 include:self.test -all",
    "--txt-record=loopa.test,v=spf1 include:loopb.test -all",
    "--txt-record=loopb.test,v=spf1 include:loopa.test -all",
    "--txt-record=rloop.test,v=spf1 redirect=rloop.test",
    /* the lookup limit: 10 is fine, 11 is not */
    "--txt-record=ten.test,v=spf1 a:h1.many.test a:h2.many.test a:h3.many.test a:h4.many.test "
    "a:h5.many.test a:h6.many.test a:h7.many.test a:h8.many.test a:h9.many.test "
    "a:h10.many.test ip4:192.0.2.3 -all",
    "--txt-record=eleven.test,v=spf1 a:h1.many.test a:h2.many.test a:h3.many.test "
    "a:h4.many.test a:h5.many.test a:h6.many.test a:h7.many.test a:h8.many.test "
    "a:h9.many.test a:h10.many.test a:h11.many.test ip4:192.0.2.3 -all",
    "--txt-record=deep.test,v=spf1 include:ten.test",
    /* void lookups: 2 are fine, 3 are not */
    "--txt-record=void2.test,v=spf1 a:nx1.void.test mx:nx2.void.test ip4:192.0.2.3 -all",
    "--txt-record=void3.test,v=spf1 a:nx1.void.test mx:nx2.void.test exists:nx3.void.test "
    "ip4:192.0.2.3 -all",
    "--txt-record=voidnodata.test,v=spf1 a:nospf.test mx:nospf.test a:nospf.test ip4:192.0.2.3",
    /* two SPF records, garbage */
    "--txt-record=two.test,v=spf1 -all",
    "--txt-record=two.test,v=spf1 +all",
    "--txt-record=twocase.test,v=spf1 -all",
    "--txt-record=twocase.test,V=SPF1 ?all",
    "--txt-record=notspf.test,v=spf10 +all", /* not a record: none */
    "--txt-record=garbage.test,v=spf1 ip4:192.0.2.3 foo:bar -all",
    "--txt-record=garbage2.test,v=spf1 ip4:192.0.2.3 -all \001\002",
    "--txt-record=badip.test,v=spf1 ip4:192.0.2.300 -all",
    "--txt-record=badmacro.test,v=spf1 a:%{q}.badmacro.test ip4:192.0.2.3",
    /* exp= */
    "--txt-record=expfail.test,v=spf1 -all exp=explain.expfail.test",
    "--txt-record=explain.expfail.test,%{i} is not one of %{d}'s designated mail servers.",
    "--txt-record=expsoft.test,v=spf1 ~all exp=explain.expfail.test",
    "--txt-record=expredir.test,v=spf1 exp=nothing.test redirect=expfail.test",
    "--txt-record=expbad.test,v=spf1 -all exp=explainbad.expfail.test",
    "--txt-record=explainbad.expfail.test,bad %{z} macro",
    /* timeouts: dead.test is forwarded to a socket nobody reads */
    "--txt-record=incdead.test,v=spf1 include:spf.dead.test -all",
    "--txt-record=adead.test,v=spf1 a:host.dead.test -all",
    "--txt-record=deadafter.test,v=spf1 ip4:192.0.2.3 a:host.dead.test -all",
    "--txt-record=ptrdead.test,v=spf1 ptr ip4:203.0.113.5 -all",
    NULL,
};

static int dm_start(void)
{
    char portarg[32], dead[64], deadptr[80], log[128];
    static char big1[6000], big2[6000], many[12][64];
    const char *args[200];
    int n = 0;

    dm_port = free_port();
    if (dm_port == 0)
        return -1;
    snprintf(portarg, sizeof(portarg), "--port=%u", dm_port);
    snprintf(dead, sizeof(dead), "--server=/dead.test/127.0.0.1#%u", silent_port);
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
    args[n++] = "--local=/test/";
    args[n++] = "--local=/in-addr.arpa/";
    args[n++] = dead;
    snprintf(deadptr, sizeof(deadptr), "--server=/113.0.203.in-addr.arpa/127.0.0.1#%u",
             silent_port);
    args[n++] = deadptr;
    for (const char **z = zone; *z; z++)
        args[n++] = *z;
    /* an oversized SPF record: 20 strings of 250 octets, one record of 5000 */
    size_t k = (size_t)snprintf(big1, sizeof(big1), "--txt-record=big.test,v=spf1");
    for (int i = 0; i < 20; i++) {
        size_t start = k;
        while (k - start < 230)
            k += (size_t)snprintf(big1 + k, sizeof(big1) - k, " ip4:10.%d.%d.1", i,
                                  (int)(k - start));
        big1[k++] = ',';
    }
    big1[k - 1] = '\0';
    args[n++] = big1;
    /* a big non-SPF record beside a good SPF record */
    k = (size_t)snprintf(big2, sizeof(big2), "--txt-record=bigother.test,");
    for (int i = 0; i < 20; i++) {
        memset(big2 + k, 'a' + i, 250);
        k += 250;
        big2[k++] = ',';
    }
    big2[k - 1] = '\0';
    args[n++] = big2;
    args[n++] = "--txt-record=bigother.test,v=spf1 ip4:192.0.2.3 -all";
    for (int i = 0; i < 11; i++) {
        snprintf(many[i], sizeof(many[i]), "--host-record=h%d.many.test,198.51.100.%d", i + 1,
                 i + 1);
        args[n++] = many[i];
    }
    static char mxs[12][64];
    for (int i = 0; i < 11; i++) {
        snprintf(mxs[i], sizeof(mxs[i]), "--mx-host=mxmany.test,h%d.many.test,%d", i + 1, i + 1);
        args[n++] = mxs[i];
    }
    args[n] = NULL;

    dm_pid = fork();
    if (dm_pid < 0)
        return -1;
    if (dm_pid == 0) {
        /* dies with this test, even when a crash skips the teardown */
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() == 1)
            _exit(127);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        execv(DNSMASQ, (char *const *)args);
        _exit(127);
    }
    snprintf(dm_servers, sizeof(dm_servers), "127.0.0.1:%u", dm_port);
    struct dns_conf c = {.servers = dm_servers, .timeout_ms = 100, .tries = 1};
    struct dns_resolver *r = dns_resolver_new(&c, why, sizeof(why));
    if (!r)
        return -1;
    for (int i = 0; i < 50; i++) {
        struct dns_txt t;
        int st;
        if (dns_resolver_txt(r, "fail.test", &t, why, sizeof(why)) == DNS_Q_OK) {
            dns_txt_free(&t);
            dns_resolver_free(r);
            return 0;
        }
        if (waitpid(dm_pid, &st, WNOHANG) == dm_pid) {
            dm_pid = -1;
            break;
        }
        usleep(50 * 1000);
    }
    dns_resolver_free(r);
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
    if (!tu_tmpdir(dir, sizeof(dir), "tern-spf"))
        return -1;
    silent_fd = udp_socket(&silent_port);
    if (silent_fd < 0)
        return -1;
    if (access(DNSMASQ, X_OK) != 0) {
        fprintf(stderr, "test_spf: %s is missing (scripts/install-deps installs it)\n", DNSMASQ);
        return -1;
    }
    for (int i = 0; i < 3 && dm_pid < 0; i++)
        if (dm_start() < 0)
            dm_stop();
    if (dm_pid < 0) {
        fprintf(stderr, "test_spf: dnsmasq did not start (see %s/dnsmasq.log)\n", dir);
        return -1;
    }
    struct dns_conf c = {.servers = dm_servers, .timeout_ms = 300, .tries = 1};
    res = dns_resolver_new(&c, why, sizeof(why));
    return res ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    dns_resolver_free(res);
    dm_stop();
    close(silent_fd);
    return tu_rmtree(dir) == 0 ? 0 : -1;
}

static struct spf_verdict v;

static enum spf_result check(const char *ip, const char *from, const char *helo)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
    }
    enum spf_result r = spf_check(res, (struct sockaddr *)&ss, helo, from, "mx.receiver.test", &v);
    assert_int_equal(r, v.result);
    for (const char *p = v.why; *p; p++)
        assert_true(*p >= 0x20 && *p < 0x7f);
    return r;
}

#define EXPECT(want, ip, from, helo)                                                               \
    do {                                                                                           \
        enum spf_result got_ = check(ip, from, helo);                                              \
        if (got_ != (want))                                                                        \
            fail_msg("%s from %s helo %s: expected %s, got %s (%s)", ip, from ? from : "<>",       \
                     helo ? helo : "-", spf_result_name(want), spf_result_name(got_), v.why);      \
    } while (0)

static void test_results(void **state)
{
    (void)state;
    EXPECT(SPF_PASS, "192.0.2.3", "alice@pass.test", "helo.example");
    assert_string_equal(v.domain, "pass.test");
    assert_int_equal(v.lookups, 0);
    EXPECT(SPF_FAIL, "198.51.100.1", "alice@pass.test", "helo.example");
    assert_string_equal(v.explanation, "");
    EXPECT(SPF_FAIL, "192.0.2.3", "alice@fail.test", "helo.example");
    EXPECT(SPF_SOFTFAIL, "192.0.2.3", "alice@soft.test", "helo.example");
    EXPECT(SPF_NEUTRAL, "192.0.2.3", "alice@neutral.test", "helo.example");
    EXPECT(SPF_NEUTRAL, "192.0.2.3", "alice@empty.test", "helo.example");
    EXPECT(SPF_PASS, "192.0.2.3", "alice@upper.test", "helo.example");
    EXPECT(SPF_NONE, "192.0.2.3", "alice@nospf.test", "helo.example");
    EXPECT(SPF_NONE, "192.0.2.3", "alice@missing.test", "helo.example");
    EXPECT(SPF_NONE, "192.0.2.3", "alice@notspf.test", "helo.example");
    EXPECT(SPF_NONE, "192.0.2.3", "alice@localhost", "helo.example"); /* single label */
    EXPECT(SPF_NONE, "192.0.2.3", "alice@[192.0.2.1]", "helo.example");
    EXPECT(SPF_PASS, "192.0.2.3", "alice@split.test", "helo.example");
    EXPECT(SPF_FAIL, "192.0.2.4", "alice@split.test", "helo.example");
    /* null sender: postmaster@HELO; a v4-mapped client is IPv4 */
    EXPECT(SPF_PASS, "192.0.2.3", "", "pass.test");
    assert_string_equal(v.domain, "pass.test");
    EXPECT(SPF_FAIL, "198.51.100.1", NULL, "pass.test");
    EXPECT(SPF_PASS, "::ffff:192.0.2.3", "bob@pass.test", "helo.example");
    EXPECT(SPF_NONE, "192.0.2.3", "", "");
    EXPECT(SPF_NONE, "192.0.2.3", "", "[192.0.2.1]");  /* an address literal as HELO */
    EXPECT(SPF_NONE, "192.0.2.3", "", "A2345678");     /* a single label */
    EXPECT(SPF_PASS, "192.0.2.3", "@pass.test", NULL); /* no local part */
    EXPECT(SPF_PASS, "192.0.2.3", "pass.test", NULL);  /* no @ at all */
}

static void test_include_redirect(void **state)
{
    (void)state;
    EXPECT(SPF_PASS, "192.0.2.3", "a@inc.test", "h.example");
    assert_int_equal(v.lookups, 1);
    EXPECT(SPF_FAIL, "198.51.100.1", "a@inc.test", "h.example");
    /* chain1 -> -include:chain3 via chain2: pass inside gives chain2's "-" */
    EXPECT(SPF_SOFTFAIL, "192.0.2.3", "a@chain1.test", "h.example");
    assert_int_equal(v.lookups, 2);
    EXPECT(SPF_SOFTFAIL, "198.51.100.1", "a@chain1.test", "h.example");
    EXPECT(SPF_PERMERROR, "192.0.2.3", "a@incnone.test", "h.example");
    EXPECT(SPF_PERMERROR, "192.0.2.3", "a@incnx.test", "h.example");
    EXPECT(SPF_PERMERROR, "192.0.2.3", "a@incperm.test", "h.example");
    EXPECT(SPF_PASS, "192.0.2.3", "a@redirect.test", "h.example");
    EXPECT(SPF_FAIL, "198.51.100.1", "a@redirect.test", "h.example");
    EXPECT(SPF_PASS, "198.51.100.7", "a@redirect2.test", "h.example");
    EXPECT(SPF_FAIL, "192.0.2.3", "a@redirect2.test", "h.example");
    EXPECT(SPF_PERMERROR, "192.0.2.3", "a@redirnone.test", "h.example");
    EXPECT(SPF_NEUTRAL, "192.0.2.3", "a@redirall.test", "h.example"); /* all first */
}

static void test_a_mx_ip6(void **state)
{
    (void)state;
    EXPECT(SPF_PASS, "192.0.2.10", "a@a.test", "h.example");
    EXPECT(SPF_FAIL, "192.0.2.11", "a@a.test", "h.example");
    EXPECT(SPF_PASS, "2001:db8::10", "a@a.test", "h.example");
    EXPECT(SPF_FAIL, "2001:db8::11", "a@a.test", "h.example");
    EXPECT(SPF_PASS, "192.0.2.3", "a@acidr.test", "h.example"); /* /24 */
    EXPECT(SPF_FAIL, "192.0.3.3", "a@acidr.test", "h.example");
    EXPECT(SPF_PASS, "2001:db8::cb01", "a@acidr.test", "h.example"); /* //64 */
    EXPECT(SPF_FAIL, "2001:db8:1::1", "a@acidr.test", "h.example");
    EXPECT(SPF_FAIL, "192.0.2.3", "a@anarrow.test", "h.example");
    EXPECT(SPF_PASS, "192.0.2.200", "a@anarrow.test", "h.example");
    EXPECT(SPF_PASS, "192.0.2.3", "a@mx.test", "h.example"); /* 192.0.2.77/24 */
    EXPECT(SPF_PASS, "198.51.100.200", "a@mx.test", "h.example");
    EXPECT(SPF_FAIL, "203.0.113.1", "a@mx.test", "h.example");
    EXPECT(SPF_FAIL, "192.0.2.3", "a@mxexact.test", "h.example");
    EXPECT(SPF_PASS, "192.0.2.77", "a@mxexact.test", "h.example");
    EXPECT(SPF_PASS, "2001:db8::cb01", "a@mxexact.test", "h.example");
    EXPECT(SPF_PASS, "2001:db8::cb01", "a@ip6.test", "h.example");
    EXPECT(SPF_FAIL, "2001:db9::1", "a@ip6.test", "h.example");
    EXPECT(SPF_FAIL, "192.0.2.3", "a@ip6.test", "h.example");
    EXPECT(SPF_PASS, "2001:db8::cb01", "a@ip6host.test", "h.example");
    EXPECT(SPF_FAIL, "2001:db8::cb02", "a@ip6host.test", "h.example");
    EXPECT(SPF_PASS, "192.0.2.3", "a@ip6host.test", "h.example");
    EXPECT(SPF_PASS, "192.0.2.55", "a@cname.test", "h.example");
    EXPECT(SPF_PASS, "2001:db8::55", "a@cname.test", "h.example");
    EXPECT(SPF_FAIL, "192.0.2.56", "a@cname.test", "h.example");
    /* 11 MX names: permerror, even though ip4 would match after */
    EXPECT(SPF_PERMERROR, "192.0.2.3", "a@mxmany.test", "h.example");
    assert_non_null(strstr(v.why, "MX"));
}

static void test_ptr_exists_macros(void **state)
{
    (void)state;
    EXPECT(SPF_PASS, "192.0.2.99", "a@ptr.test", "h.example");
    EXPECT(SPF_FAIL, "192.0.2.98", "a@ptr.test", "h.example"); /* not forward-confirmed */
    EXPECT(SPF_FAIL, "192.0.2.97", "a@ptr.test", "h.example"); /* no PTR */
    EXPECT(SPF_FAIL, "192.0.2.99", "a@ptrother.test", "h.example");
    EXPECT(SPF_PASS, "2001:db8::99", "a@ptr6.test", "h.example"); /* ip6.arpa nibbles */
    EXPECT(SPF_FAIL, "2001:db8::98", "a@ptr6.test", "h.example");
    EXPECT(SPF_PASS, "192.0.2.3", "alice@exists.test", "h.example");
    EXPECT(SPF_FAIL, "192.0.2.3", "bob@exists.test", "h.example");
    EXPECT(SPF_PASS, "192.0.2.3", "x+alice@exists.test", "h.example"); /* %{l1+-} */
    EXPECT(SPF_FAIL, "192.0.2.4", "alice@exists.test", "h.example");
    EXPECT(SPF_PASS, "192.0.2.99", "a@pmacro.test", "h.example");
    EXPECT(SPF_FAIL, "192.0.2.98", "a@pmacro.test", "h.example"); /* %{p}: unknown */
    EXPECT(SPF_PASS, "192.0.2.3", "a@hmacro.test", "helo.example");
    EXPECT(SPF_FAIL, "192.0.2.3", "a@hmacro.test", "other.example");
    EXPECT(SPF_PASS, "192.0.2.3", "first+tag@plus.test", "h.example");
    EXPECT(SPF_FAIL, "192.0.2.3", "other+tag@plus.test", "h.example");
    EXPECT(SPF_PASS, "192.0.2.3", "a@colon.test", "h.example");
    EXPECT(SPF_FAIL, "192.0.2.4", "a@colon.test", "h.example");
}

static void test_loops_and_limits(void **state)
{
    (void)state;
    EXPECT(SPF_PERMERROR, "192.0.2.3", "a@self.test", "h.example");
    assert_int_equal(v.lookups, SPF_MAX_LOOKUPS + 1);
    EXPECT(SPF_PERMERROR, "192.0.2.3", "a@loopa.test", "h.example");
    assert_non_null(strstr(v.why, "lookups"));
    EXPECT(SPF_PERMERROR, "192.0.2.3", "a@rloop.test", "h.example");
    EXPECT(SPF_PASS, "192.0.2.3", "a@ten.test", "h.example");
    assert_int_equal(v.lookups, 10);
    EXPECT(SPF_PERMERROR, "192.0.2.3", "a@eleven.test", "h.example");
    assert_non_null(strstr(v.why, "more than 10 DNS lookups"));
    EXPECT(SPF_PERMERROR, "192.0.2.3", "a@deep.test", "h.example"); /* 1 + 10 */
    EXPECT(SPF_PASS, "192.0.2.3", "a@void2.test", "h.example");
    assert_int_equal(v.void_lookups, 2);
    EXPECT(SPF_PERMERROR, "192.0.2.3", "a@void3.test", "h.example");
    assert_non_null(strstr(v.why, "void"));
    EXPECT(SPF_PERMERROR, "192.0.2.3", "a@voidnodata.test", "h.example"); /* NODATA counts */
}

static void test_bad_records(void **state)
{
    (void)state;
    EXPECT(SPF_PERMERROR, "192.0.2.3", "a@two.test", "h.example");
    assert_non_null(strstr(v.why, "2 SPF records"));
    EXPECT(SPF_PERMERROR, "192.0.2.3", "a@twocase.test", "h.example");
    EXPECT(SPF_PERMERROR, "192.0.2.3", "a@big.test", "h.example");
    assert_non_null(strstr(v.why, "longer than"));
    EXPECT(SPF_PASS, "192.0.2.3", "a@bigother.test", "h.example");
    EXPECT(SPF_PERMERROR, "192.0.2.3", "a@garbage.test", "h.example"); /* before the match */
    assert_non_null(strstr(v.why, "foo:bar"));
    EXPECT(SPF_PERMERROR, "192.0.2.3", "a@garbage2.test", "h.example");
    EXPECT(SPF_PERMERROR, "192.0.2.3", "a@badip.test", "h.example");
    EXPECT(SPF_PERMERROR, "192.0.2.3", "a@badmacro.test", "h.example");
}

static void test_explanation(void **state)
{
    (void)state;
    EXPECT(SPF_FAIL, "192.0.2.3", "a@expfail.test", "h.example");
    assert_string_equal(v.explanation,
                        "192.0.2.3 is not one of expfail.test's designated mail servers.");
    assert_int_equal(v.lookups, 0);
    EXPECT(SPF_SOFTFAIL, "192.0.2.3", "a@expsoft.test", "h.example");
    assert_string_equal(v.explanation, "");
    /* the redirect target's exp= is the one used */
    EXPECT(SPF_FAIL, "192.0.2.3", "a@expredir.test", "h.example");
    assert_string_equal(v.explanation,
                        "192.0.2.3 is not one of expfail.test's designated mail servers.");
    EXPECT(SPF_FAIL, "192.0.2.3", "a@expbad.test", "h.example"); /* bad text: ignored */
    assert_string_equal(v.explanation, "");
}

static void test_timeouts(void **state)
{
    (void)state;
    time_t t0 = time(NULL);
    EXPECT(SPF_TEMPERROR, "192.0.2.3", "a@incdead.test", "h.example");
    assert_non_null(strstr(v.why, "DNS"));
    EXPECT(SPF_TEMPERROR, "192.0.2.3", "a@adead.test", "h.example");
    EXPECT(SPF_TEMPERROR, "192.0.2.3", "a@spf.dead.test", "h.example");
    EXPECT(SPF_PASS, "192.0.2.3", "a@deadafter.test", "h.example"); /* matched before */
    /* a PTR error is no match, never temperror (5.5) */
    EXPECT(SPF_PASS, "203.0.113.5", "a@ptrdead.test", "h.example");
    assert_true(time(NULL) - t0 < 15);

    /* the overall budget: none left, no query at all */
    struct sockaddr_in a4 = {.sin_family = AF_INET};
    inet_pton(AF_INET, "192.0.2.3", &a4.sin_addr);
    assert_int_equal(
        spf_check_within(res, (struct sockaddr *)&a4, "h.example", "a@pass.test", NULL, 0, &v),
        SPF_TEMPERROR);
    assert_non_null(strstr(v.why, "time budget"));
    assert_int_equal(
        spf_check_within(res, (struct sockaddr *)&a4, "h.example", "a@pass.test", NULL, 5000, &v),
        SPF_PASS);

    /* a resolver pointed at nothing at all */
    char servers[32];
    snprintf(servers, sizeof(servers), "127.0.0.1:%u", silent_port);
    struct dns_conf c = {.servers = servers, .timeout_ms = 200, .tries = 1};
    struct dns_resolver *dead = dns_resolver_new(&c, why, sizeof(why));
    assert_non_null(dead);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    inet_pton(AF_INET, "192.0.2.3", &sin.sin_addr);
    assert_int_equal(spf_check(dead, (struct sockaddr *)&sin, "h.example", "a@pass.test", NULL, &v),
                     SPF_TEMPERROR);
    assert_int_equal(
        spf_check(dead, (struct sockaddr *)&sin, "h.example", "a@pass.test", NULL, NULL),
        SPF_TEMPERROR);
    dns_resolver_free(dead);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_macros_rfc_examples),
        cmocka_unit_test(test_macros_more),
        cmocka_unit_test(test_result_names),
        cmocka_unit_test(test_results),
        cmocka_unit_test(test_include_redirect),
        cmocka_unit_test(test_a_mx_ip6),
        cmocka_unit_test(test_ptr_exists_macros),
        cmocka_unit_test(test_loops_and_limits),
        cmocka_unit_test(test_bad_records),
        cmocka_unit_test(test_explanation),
        cmocka_unit_test(test_timeouts),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
