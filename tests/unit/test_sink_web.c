/*
 * test_sink_web.c - the web inbox's embedded files (src/sink/web/ through
 * embed.cmake, src/sink/web.h) and the event hub without clients
 * (src/sink/events.c).  The page itself is tested in a browser:
 * tests/integration/test_sink_web.py.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <string.h>

#include "sink/events.h"
#include "sink/web.h"

static const struct web_asset *find(const char *path)
{
    for (size_t i = 0; i < web_nassets; i++)
        if (strcmp(web_assets[i].path, path) == 0)
            return &web_assets[i];
    return NULL;
}

static bool contains(const struct web_asset *a, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i + n <= a->len; i++)
        if (memcmp(a->data + i, s, n) == 0)
            return true;
    return false;
}

static void test_assets(void **state)
{
    (void)state;
    const struct web_asset *html = find("/index.html"), *js = find("/app.js"),
                           *css = find("/app.css");
    assert_non_null(html);
    assert_non_null(js);
    assert_non_null(css);
    assert_string_equal(html->type, "text/html; charset=utf-8");
    assert_string_equal(js->type, "text/javascript; charset=utf-8");
    assert_string_equal(css->type, "text/css; charset=utf-8");
    /* whole files, NUL-terminated after their length */
    assert_true(html->len > 100 && html->data[html->len] == 0);
    assert_memory_equal(html->data, "<!doctype html>", 15);
    assert_true(contains(html, "src=\"/app.js\""));
    /* the CSP allows no inline script: the page must not have any */
    assert_false(contains(html, "<script>"));
    assert_false(contains(js, "innerHTML"));
    assert_false(contains(js, "document.write"));
}

static void test_events_without_clients(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    assert_non_null(base);
    struct sink_events *ev = events_new(base);
    assert_non_null(ev);
    assert_int_equal(events_clients(ev), 0);
    events_publish(ev, "new", 1); /* nobody listens: nothing happens */
    events_publish(NULL, "new", 1);
    assert_int_equal(events_clients(NULL), 0);
    events_free(ev);
    events_free(NULL);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_assets),
        cmocka_unit_test(test_events_without_clients),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
