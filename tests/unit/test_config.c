/*
 * test_config.c - tern.conf parsing (conf/config.c): defaults, every key,
 * every kind of problem reported at its line, all of them collected, and
 * the file-level checks of conf_load().
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../support/testutil.h"
#include "conf/config.h"

/* True if some error is exactly want. */
static bool has_error(const struct conf_errors *e, const char *want)
{
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->v[i], want) == 0)
            return true;
    return false;
}

/* True if some error starts with prefix and contains part. */
static bool has_error_like(const struct conf_errors *e, const char *prefix, const char *part)
{
    for (size_t i = 0; i < e->n; i++)
        if (strncmp(e->v[i], prefix, strlen(prefix)) == 0 && strstr(e->v[i], part))
            return true;
    return false;
}

static void dump(const struct conf_errors *e)
{
    for (size_t i = 0; i < e->n; i++)
        fprintf(stderr, "  error: %s\n", e->v[i]);
}

static int parse(const char *text, struct conf *c, struct conf_errors *e)
{
    return conf_parse_string(text, strlen(text), "t.conf", "/base", c, e);
}

static void test_defaults(void **state)
{
    (void)state;
    struct conf c;
    struct conf_errors e = {0};
    char host[256] = "";

    /* every key has a default: an empty file (with a host name given) is valid */
    assert_int_equal(parse("[server]\nhostname = mx.example.org\n", &c, &e), 0);
    assert_int_equal(e.n, 0);
    assert_string_equal(c.hostname, "mx.example.org");
    assert_string_equal(c.data_dir, "/var/lib/tern");
    assert_true(c.max_size == 25ULL << 20);
    assert_int_equal(c.max_rcpts, 100);
    assert_int_equal(c.max_errors, 10);
    assert_true(c.idle_timeout_ms == 300000);
    assert_true(c.command_timeout_ms == 60000 && c.data_timeout_ms == 600000 &&
                c.session_timeout_ms == 3600000);
    assert_int_equal(c.max_sessions, 0); /* derived at start */
    assert_int_equal(c.max_sessions_per_ip, 20);
    assert_int_equal(c.max_connect_rate_per_ip, 60);
    assert_true(c.body_memory == 256ULL << 20);
    assert_int_equal(c.smtp.n, 1);
    assert_string_equal(c.smtp.v[0].text, "127.0.0.1:25");
    assert_int_equal(c.submission.n, 0);
    assert_int_equal(c.submissions.n, 0);
    assert_string_equal(c.tls_cert, "");
    assert_true(c.queue_max_items == 10000);
    assert_true(c.queue_min_free == 100ULL << 20);
    assert_int_equal(c.n_retry, 7);
    assert_true(c.retry_ms[0] == 60000 && c.retry_ms[6] == 4 * 3600000ULL);
    assert_true(c.give_up_ms == 5 * 86400000ULL);
    assert_true(c.delay_warning_ms == 4 * 3600000ULL);
    assert_int_equal(c.delivery, CONF_DELIVERY_MAILDIR);
    assert_string_equal(c.maildir_path, "/var/lib/tern/mail/%domain%/%user%/Maildir");
    assert_string_equal(c.drop_chars, ".");
    assert_string_equal(c.suffix_separators, "+");
    assert_true(c.senders_must_match);

    /* the empty file itself: valid when the system host name is usable */
    int r = parse("", &c, &e);
    if (gethostname(host, sizeof(host)) == 0 && strchr(host, '.') == NULL && host[0] &&
        strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") ==
            strlen(host)) {
        assert_int_equal(r, 0);
        assert_string_equal(c.hostname, host);
    }
    conf_errors_free(&e);
}

static void test_all_keys(void **state)
{
    (void)state;
    struct conf c;
    struct conf_errors e = {0};
    const char *text = "\xEF\xBB\xBF; a comment\r\n"
                       "# another\n"
                       "[Server]\n"
                       "  Hostname = MX.example.org ; inline comment\n"
                       "data_dir = spool\n"
                       "max_size: 10M\n"
                       "max_rcpts = 50\n"
                       "max_errors = 3\n"
                       "idle_timeout = 90s\n"
                       "command_timeout = 10s\n"
                       "data_timeout = 2m\n"
                       "session_timeout = 30m\n"
                       "max_sessions = 500\n"
                       "max_sessions_per_ip = 0\n"
                       "max_connect_rate_per_ip = 120\n"
                       "body_memory = 64M\n"
                       "[listen]\n"
                       "smtp = 127.0.0.1:2525 [::1]:2525\n"
                       "submission = 127.0.0.1:2587\n"
                       "submissions = off\n"
                       "[tls]\n"
                       "cert = /etc/tern/cert.pem\n"
                       "key = /etc/tern/key.pem\n"
                       "[queue]\n"
                       "max_items = 500\n"
                       "min_free_space = 1G\n"
                       "retry = 30s 2m 2m 10m\n"
                       "give_up = 2d\n"
                       "delay_warning = off\n"
                       "[local]\n"
                       "delivery = mda\n"
                       "mda_command = /usr/bin/procmail -f %from% -a %to_user%\n"
                       "mda_timeout = 1m\n"
                       "maildir_path = /home/%user%/Maildir\n"
                       "drop_chars = .-\n"
                       "suffix_separators = +_\n"
                       "[relay]\n"
                       "senders_must_match = no\n";
    int r = parse(text, &c, &e);
    dump(&e);
    assert_int_equal(r, 0);
    assert_string_equal(c.hostname, "MX.example.org");
    assert_string_equal(c.data_dir, "/base/spool");
    assert_true(c.max_size == 10ULL << 20);
    assert_int_equal(c.max_rcpts, 50);
    assert_int_equal(c.max_errors, 3);
    assert_true(c.idle_timeout_ms == 90000);
    assert_true(c.command_timeout_ms == 10000 && c.data_timeout_ms == 120000 &&
                c.session_timeout_ms == 1800000);
    assert_int_equal(c.max_sessions, 500);
    assert_int_equal(c.max_sessions_per_ip, 0);
    assert_int_equal(c.max_connect_rate_per_ip, 120);
    assert_true(c.body_memory == 64ULL << 20);
    assert_int_equal(c.smtp.n, 2);
    assert_string_equal(c.smtp.v[1].text, "[::1]:2525");
    assert_int_equal(c.smtp.v[1].ss.ss_family, AF_INET6);
    assert_int_equal(c.submission.n, 1);
    assert_int_equal(c.submissions.n, 0);
    assert_string_equal(c.tls_key, "/etc/tern/key.pem");
    assert_true(c.queue_max_items == 500);
    assert_true(c.queue_min_free == 1ULL << 30);
    assert_int_equal(c.n_retry, 4);
    assert_true(c.retry_ms[0] == 30000 && c.retry_ms[3] == 600000);
    assert_true(c.give_up_ms == 2 * 86400000ULL);
    assert_true(c.delay_warning_ms == 0);
    assert_int_equal(c.delivery, CONF_DELIVERY_MDA);
    assert_string_equal(c.mda_command, "/usr/bin/procmail -f %from% -a %to_user%");
    assert_true(c.mda_timeout_ms == 60000);
    assert_string_equal(c.maildir_path, "/home/%user%/Maildir");
    assert_string_equal(c.drop_chars, ".-");
    assert_string_equal(c.suffix_separators, "+_");
    assert_false(c.senders_must_match);
    conf_errors_free(&e);
}

/* Every kind of line-level problem, each at its line, all in one file. */
static void test_errors_by_line(void **state)
{
    (void)state;
    struct conf c;
    struct conf_errors e = {0};
    char text[4096];
    char longline[CONF_LINE_MAX + 50];

    memset(longline, 'x', sizeof(longline) - 1);
    longline[sizeof(longline) - 1] = '\0';
    memcpy(longline, "hostname = ", 11);
    int n = snprintf(text, sizeof(text),
                     "stray = 1\n"                  /* 1: outside a section */
                     "[server]\n"                   /* 2 */
                     "hostname = bad_host!\n"       /* 3: bad host name */
                     "max_size = 10Q\n"             /* 4: bad size */
                     "max_rcpts = 0\n"              /* 5: out of range */
                     "colour = blue\n"              /* 6: unknown key */
                     "max_errors = 5\n"             /* 7 */
                     "max_errors = 6\n"             /* 8: set twice */
                     "just some words\n"            /* 9: no '=' */
                     "[serverr]\n"                  /* 10: unknown section */
                     "anything = goes\n"            /* 11: (inside it: not reported) */
                     "[queue\n"                     /* 12: missing ']' */
                     "[queue]\n"                    /* 13 */
                     "retry = 5m 1m\n"              /* 14: decreasing */
                     "give_up = soon\n"             /* 15: bad duration */
                     "%s\n"                         /* 16: too long */
                     "[listen]\n"                   /* 17 */
                     "smtp = 127.0.0.1:99999\n"     /* 18: bad address */
                     "= 3\n"                        /* 19: no key name */
                     "[local]\n"                    /* 20 */
                     "delivery = postfix\n"         /* 21: bad enum */
                     "maildir_path = /m/%%dom%%\n"  /* 22: bad placeholder */
                     "drop_chars = a\n"             /* 23: letters */
                     "[relay]\n"                    /* 24 */
                     "senders_must_match = maybe\n" /* 25: bad bool */
                     "[tls] junk\n"                 /* 26: text after ']' */
                     "cert = /x\tbell\x07\n",       /* 27: control character */
                     longline);
    assert_true(n > 0 && (size_t)n < sizeof(text));
    assert_int_equal(parse(text, &c, &e), -1);
    dump(&e);
    assert_true(has_error_like(&e, "t.conf:1: ", "outside any [section]"));
    assert_true(has_error_like(&e, "t.conf:3: ", "[server] hostname: 'bad_host!'"));
    assert_true(has_error_like(&e, "t.conf:4: ", "[server] max_size: '10Q' is not a size"));
    assert_true(has_error_like(&e, "t.conf:5: ", "[server] max_rcpts: '0'"));
    assert_true(has_error(&e, "t.conf:6: unknown key 'colour' in [server]"));
    assert_true(has_error(&e, "t.conf:8: [server] max_errors is set twice (first on line 7)"));
    assert_true(has_error_like(&e, "t.conf:9: ", "expected 'key = value'"));
    assert_true(has_error_like(&e, "t.conf:10: ", "unknown section [serverr]"));
    assert_false(has_error_like(&e, "t.conf:11: ", ""));
    assert_true(has_error(&e, "t.conf:12: missing ']' in section header"));
    assert_true(has_error_like(&e, "t.conf:14: ", "must not decrease"));
    assert_true(has_error_like(&e, "t.conf:15: ", "[queue] give_up: 'soon'"));
    assert_true(has_error_like(&e, "t.conf:16: ", "line longer than 1024"));
    assert_true(has_error_like(&e, "t.conf:18: ", "[listen] smtp: '127.0.0.1:99999'"));
    assert_true(has_error_like(&e, "t.conf:19: ", "missing key name"));
    assert_true(has_error_like(&e, "t.conf:21: ", "'postfix' is not 'maildir', 'mda' or 'lmtp'"));
    assert_true(has_error_like(&e, "t.conf:22: ", "unknown placeholder '%dom%'"));
    assert_true(has_error_like(&e, "t.conf:23: ", "[local] drop_chars"));
    assert_true(has_error_like(&e, "t.conf:25: ", "'maybe' is not true or false"));
    assert_true(has_error_like(&e, "t.conf:26: ", "text after ']'"));
    assert_true(has_error_like(&e, "t.conf:27: ", "control character 0x07"));
    assert_int_equal(e.n, 20);
    conf_errors_free(&e);
}

/* Rules between keys are reported at the line of the key concerned. */
static void test_cross_key_errors(void **state)
{
    (void)state;
    struct conf c;
    struct conf_errors e = {0};
    const char *text = "[server]\n"                          /* 1 */
                       "hostname = mx.example.org\n"         /* 2 */
                       "[listen]\n"                          /* 3 */
                       "smtp = 127.0.0.1:25 127.0.0.1:587\n" /* 4 */
                       "submission = 127.0.0.1:587\n"        /* 5: no TLS, overlap */
                       "[tls]\n"                             /* 6 */
                       "cert = /etc/c.pem\n"                 /* 7: no key */
                       "[queue]\n"                           /* 8 */
                       "give_up = 1h\n"                      /* 9 */
                       "delay_warning = 2h\n"                /* 10: >= give_up */
                       "[local]\n"                           /* 11 */
                       "delivery = mda\n"                    /* 12: no command */
                       "drop_chars = +\n";                   /* 13 */
    assert_int_equal(parse(text, &c, &e), -1);
    dump(&e);
    assert_true(has_error_like(&e, "t.conf:5: ", "submission needs [tls] cert and key"));
    assert_true(has_error_like(&e, "t.conf:5: ", "127.0.0.1:587 is also in [listen] smtp"));
    assert_true(has_error_like(&e, "t.conf:7: ", "cert is set but key is not"));
    assert_true(has_error_like(&e, "t.conf:10: ", "delay_warning must be shorter than give_up"));
    assert_true(has_error_like(&e, "t.conf:12: ", "delivery = mda needs [local] mda_command"));
    /* suffix_separators was defaulted: reported against the file */
    assert_true(has_error_like(&e, "t.conf: ", "'+' is both in drop_chars and"));
    assert_int_equal(e.n, 6);
    conf_errors_free(&e);
}

/* [local] delivery = lmtp and its endpoint (deliver/lmtp.h). */
static void test_lmtp_keys(void **state)
{
    (void)state;
    struct conf c;
    struct conf_errors e = {0};
    assert_int_equal(parse("[local]\ndelivery = lmtp\nlmtp = unix:/run/dovecot/lmtp\n", &c, &e), 0);
    assert_int_equal(c.delivery, CONF_DELIVERY_LMTP);
    assert_string_equal(c.lmtp, "unix:/run/dovecot/lmtp");
    assert_int_equal(parse("[local]\ndelivery = LMTP\nlmtp = inet:[::1]:24\n", &c, &e), 0);
    assert_string_equal(c.lmtp, "inet:[::1]:24");

    assert_int_equal(parse("[local]\ndelivery = lmtp\n", &c, &e), -1);
    assert_true(has_error_like(&e, "t.conf:2: ", "delivery = lmtp needs [local] lmtp"));
    conf_errors_free(&e);
    assert_int_equal(parse("[local]\nlmtp = 127.0.0.1:24\n", &c, &e), -1);
    assert_true(has_error_like(&e, "t.conf:2: ", "lmtp is set but delivery is not lmtp"));
    conf_errors_free(&e);
    assert_int_equal(parse("[local]\ndelivery = lmtp\nlmtp = unix:run/lmtp\n", &c, &e), -1);
    assert_true(has_error_like(&e, "t.conf:3: ", "must be absolute"));
    conf_errors_free(&e);
    assert_int_equal(parse("[local]\ndelivery = lmtp\nlmtp = ::1:24\n", &c, &e), -1);
    assert_true(has_error_like(&e, "t.conf:3: ", "in brackets"));
    conf_errors_free(&e);
}

static void test_nul_and_limits(void **state)
{
    (void)state;
    struct conf c;
    struct conf_errors e = {0};
    const char text[] = "[server]\nhostname = a\0b\nmax_size = 1M\nmax_size = 2M\n";
    assert_int_equal(conf_parse_string(text, sizeof(text) - 1, "n.conf", NULL, &c, &e), -1);
    assert_true(has_error(&e, "n.conf:2: NUL byte in line"));
    assert_true(has_error_like(&e, "n.conf:4: ", "set twice (first on line 3)"));
    conf_errors_free(&e);

    /* thousands of problems: the first CONF_ERRORS_MAX are kept, then truncated */
    size_t lines = CONF_ERRORS_MAX + 500;
    char *big = malloc(lines * 8 + 16);
    assert_non_null(big);
    size_t o = 0;
    for (size_t i = 0; i < lines; i++)
        o += (size_t)sprintf(big + o, "bad\n");
    assert_int_equal(conf_parse_string(big, o, "b.conf", NULL, &c, &e), -1);
    assert_int_equal(e.n, CONF_ERRORS_MAX);
    assert_true(e.truncated);
    assert_true(has_error_like(&e, "b.conf:1000: ", "expected"));
    free(big);
    conf_errors_free(&e);
}

static void test_load_files(void **state)
{
    (void)state;
    char dir[64], path[512], cert[512], text[1024];
    struct conf c;
    struct conf_errors e = {0};

    assert_non_null(tu_tmpdir(dir, sizeof(dir), "tern-conf"));
    /* a missing file */
    snprintf(path, sizeof(path), "%s/none.conf", dir);
    assert_int_equal(conf_load(path, &c, &e), -1);
    assert_int_equal(e.n, 1);
    assert_true(strstr(e.v[0], "none.conf: cannot open: No such file or directory") != NULL);
    conf_errors_free(&e);

    /* relative data_dir is relative to the file; unreadable TLS files are named at their line */
    snprintf(path, sizeof(path), "%s/tern.conf", dir);
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    tu_write_file(cert, "x", 0666);
    snprintf(text, sizeof(text),
             "[server]\nhostname = mx.example.org\ndata_dir = data\n[tls]\ncert = %s\n"
             "key = %s/missing-key.pem\n",
             cert, dir);
    tu_write_file(path, text, 0644);
    assert_int_equal(conf_load(path, &c, &e), -1);
    dump(&e);
    assert_int_equal(e.n, 1);
    char want[700];
    snprintf(want, sizeof(want), "%s:6: [tls] key: cannot read %s/missing-key.pem", path, dir);
    assert_true(strncmp(e.v[0], want, strlen(want)) == 0);
    char data[600];
    snprintf(data, sizeof(data), "%s/data", dir);
    assert_string_equal(c.data_dir, data);
    assert_string_equal(c.path, path);
    conf_errors_free(&e);

    assert_int_equal(unlink(path), 0);
    assert_int_equal(unlink(cert), 0);
    assert_int_equal(rmdir(dir), 0);
}

/* True if some warning is exactly want. */
static bool has_warning(const struct conf_errors *e, const char *want)
{
    for (size_t i = 0; i < e->nw; i++)
        if (strcmp(e->w[i], want) == 0)
            return true;
    return false;
}

static void test_user_and_file_modes(void **state)
{
    (void)state;
    char dir[64], path[512], text[1400], want[700];
    struct conf c;
    struct conf_errors e = {0};

    /* [server] user and group: names checked when parsed, existence when loaded */
    assert_int_equal(parse("[server]\nhostname = h.example\nuser = nobody\n", &c, &e), 0);
    assert_string_equal(c.user, "nobody");
    assert_int_equal(parse("[server]\nhostname = h.example\nuser = -rf\ngroup = nogroup\n", &c, &e),
                     -1);
    assert_true(has_error(&e, "t.conf:3: [server] user: '-rf' is not a valid name"));
    assert_true(has_error(&e, "t.conf:4: [server] group is set but user is not"));
    conf_errors_free(&e);

    assert_non_null(tu_tmpdir(dir, sizeof(dir), "tern-modes"));
    snprintf(path, sizeof(path), "%s/tern.conf", dir);
    tu_write_file(path, "[server]\nhostname = h.example\nuser = no-such-tern-user\n", 0600);
    assert_int_equal(conf_load(path, &c, &e), -1);
    snprintf(want, sizeof(want), "%s:3: [server] user: no such user 'no-such-tern-user'", path);
    assert_true(has_error(&e, want));
    conf_errors_free(&e);

    /* tern.conf writable by others; a secret readable by the group */
    char key[600];
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    tu_write_file(key, "x", 0600);
    snprintf(text, sizeof(text), "[server]\nhostname = h.example\n[tls]\ncert = %s\nkey = %s\n",
             key, key);
    tu_write_file(path, text, 0600);
    assert_int_equal(conf_load(path, &c, &e), 0);
    assert_int_equal(chmod(path, 0664), 0);
    assert_int_equal(chmod(key, 0640), 0);
    assert_int_equal(conf_load(path, &c, &e), -1);
    dump(&e);
    snprintf(want, sizeof(want),
             "%s: mode 0664 lets other users change it (anyone could add `x: | /cmd`); chmod go-w",
             path);
    assert_true(has_error(&e, want));
    snprintf(want, sizeof(want), "%s: mode 0640 lets other users read this secret; chmod 600", key);
    assert_true(has_error(&e, want));
    assert_int_equal(e.n, 2);
    conf_errors_free(&e);

    /* kinds one by one: a users file others may read is only a warning */
    conf_check_file(&c, key, CONF_FILE_USERS, &e); /* 0640 */
    assert_int_equal(e.n + e.nw, 0);
    assert_int_equal(chmod(key, 0644), 0);
    conf_check_file(&c, key, CONF_FILE_USERS, &e);
    assert_int_equal(e.n, 0);
    snprintf(want, sizeof(want),
             "%s: mode 0644 lets every user read the password hashes; chmod 640", key);
    assert_true(has_warning(&e, want));
    conf_check_file(&c, key, CONF_FILE_RULES, &e);
    assert_int_equal(e.n, 0);
    assert_int_equal(chmod(dir, 0777), 0);
    conf_check_file(&c, dir, CONF_FILE_RULES, &e);
    assert_int_equal(e.n, 1);
    assert_int_equal(chmod(dir, 0700), 0);
    snprintf(want, sizeof(want), "%s/none", dir);
    conf_check_file(&c, want, CONF_FILE_SECRET, &e); /* missing: reported by whoever reads it */
    assert_int_equal(e.n, 1);
    if (geteuid() == 0) { /* owned by someone else than root, us or [server] user */
        assert_int_equal(chown(key, 12345, 12345), 0);
        conf_check_file(&c, key, CONF_FILE_RULES, &e);
        assert_true(e.n == 2 && strstr(e.v[1], "owned by uid 12345: must be owned by root"));
    }
    conf_errors_free(&e);

    assert_int_equal(unlink(path), 0);
    assert_int_equal(unlink(key), 0);
    assert_int_equal(rmdir(dir), 0);
}

static void test_remote_section(void **state)
{
    (void)state;
    struct conf c;
    struct conf_errors e = {0};
    const char *ok = "[remote]\n"
                     "tls = verify\n"
                     "tls_policy = legacy.test=none Strict.test=verify\n"
                     "routes = lab.test=[127.0.0.9]:2600 strict.test=mx.strict.test:25\n"
                     "smarthost = relay.example.net:587\n"
                     "smarthost_tls = implicit\n"
                     "dns_servers = 127.0.0.1:5353 ::1\n"
                     "port = 2525\n"
                     "max_hosts = 3\n"
                     "per_destination = 2\n";
    assert_int_equal(parse(ok, &c, &e), 0);
    assert_int_equal(e.n, 0);
    assert_int_equal(c.remote_tls, CONF_TLS_VERIFY);
    assert_int_equal(c.smarthost_tls, CONF_TLS_IMPLICIT);
    assert_string_equal(c.smarthost_host, "relay.example.net");
    assert_string_equal(c.smarthost_port, "587");
    assert_string_equal(c.dns_servers, "127.0.0.1:5353,[::1]:53");
    assert_string_equal(c.remote_port, "2525");
    assert_int_equal(c.max_hosts, 3);
    const struct conf_route *r = conf_route_for(&c, "LAB.test");
    assert_non_null(r);
    assert_string_equal(r->host, "[127.0.0.9]");
    assert_string_equal(r->port, "2600");
    assert_int_equal(r->tls, -1);
    r = conf_route_for(&c, "strict.test");
    assert_non_null(r);
    assert_int_equal(r->tls, CONF_TLS_VERIFY);
    assert_string_equal(r->host, "mx.strict.test");
    assert_int_equal(conf_route_for(&c, "legacy.test")->tls, CONF_TLS_NONE);
    assert_null(conf_route_for(&c, "other.test"));
    conf_errors_free(&e);

    const char *bad = "[remote]\n"
                      "tls = implicit\n"
                      "routes = nohost\n"
                      "dns_servers = dns.example\n"
                      "port = 0\n";
    assert_int_equal(parse(bad, &c, &e), -1);
    assert_int_equal(e.n, 4);
    assert_non_null(strstr(e.v[0], "t.conf:2:"));
    assert_non_null(strstr(e.v[1], "t.conf:3:"));
    assert_non_null(strstr(e.v[2], "t.conf:4:"));
    assert_non_null(strstr(e.v[3], "t.conf:5:"));
    conf_errors_free(&e);
}

static void test_maildir_path_and_default_path(void **state)
{
    (void)state;
    struct conf c;
    struct conf_errors e = {0};
    char out[256];

    assert_int_equal(parse("[server]\nhostname = h.example\ndata_dir = /srv/tern\n", &c, &e), 0);
    assert_int_equal(conf_maildir_path(&c, "bob", "example.org", out, sizeof(out)), 0);
    assert_string_equal(out, "/srv/tern/mail/example.org/bob/Maildir");
    assert_int_equal(conf_maildir_path(&c, "../x", "example.org", out, sizeof(out)), -1);
    assert_int_equal(conf_maildir_path(&c, ".x", "example.org", out, sizeof(out)), -1);
    assert_int_equal(conf_maildir_path(&c, "bob", "a/b", out, sizeof(out)), -1);
    assert_int_equal(conf_maildir_path(&c, "bob", "example.org", out, 10), -1);

    assert_int_equal(setenv("TERN_CONFIG", "/env/tern.conf", 1), 0);
    assert_string_equal(conf_default_path("/opt/t.conf"), "/opt/t.conf");
    assert_string_equal(conf_default_path(NULL), "/env/tern.conf");
    assert_int_equal(unsetenv("TERN_CONFIG"), 0);
    assert_string_equal(conf_default_path(NULL), "/etc/tern/tern.conf");
    conf_errors_free(&e);
}

/* "sub/tern.conf" given relative to the working folder: data_dir still comes out
 * absolute (a relative one made every Maildir target unusable). */
static void test_relative_config_path(void **state)
{
    (void)state;
    char dir[256], path[512], old[4096], want[PATH_MAX];
    struct conf c;
    struct conf_errors e = {0};
    assert_non_null(tu_tmpdir(dir, sizeof(dir), "tern-relconf"));
    assert_int_equal(mkdir(tu_join(path, sizeof(path), dir, "sub"), 0700), 0);
    tu_write_file(tu_join(path, sizeof(path), dir, "sub/tern.conf"),
                  "[server]\nhostname = mx.example.org\ndata_dir = data\n", 0600);
    assert_non_null(getcwd(old, sizeof(old)));
    assert_int_equal(chdir(dir), 0);
    int rc = conf_load("sub/tern.conf", &c, &e);
    assert_int_equal(chdir(old), 0);
    assert_int_equal(rc, 0);
    assert_non_null(realpath(dir, want));
    strcat(want, "/sub/data");
    assert_string_equal(c.data_dir, want);
    conf_errors_free(&e);
    assert_int_equal(tu_rmtree(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_remote_section),
        cmocka_unit_test(test_all_keys),
        cmocka_unit_test(test_errors_by_line),
        cmocka_unit_test(test_cross_key_errors),
        cmocka_unit_test(test_lmtp_keys),
        cmocka_unit_test(test_nul_and_limits),
        cmocka_unit_test(test_load_files),
        cmocka_unit_test(test_user_and_file_modes),
        cmocka_unit_test(test_maildir_path_and_default_path),
        cmocka_unit_test(test_relative_config_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
