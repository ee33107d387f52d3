/*
 * fuzz_config.c - tern.conf text through conf_parse_string() (conf/config.c).
 * Invariants: success means no problem was recorded, and then every value
 * is within its documented range; every problem names the file and, when
 * it has one, a line that exists in the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct conf c;
    struct conf_errors e = {0};
    size_t lines = 1;
    char out[CONF_STR_MAX];

    if (size > 64 * 1024)
        return 0;
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    int r = conf_parse_string((const char *)data, size, "f.conf", "/base", &c, &e);
    if (r == 0 && (e.n != 0 || e.truncated))
        abort();
    if (r < 0 && e.n == 0)
        abort();
    for (size_t i = 0; i < e.n; i++) {
        if (strncmp(e.v[i], "f.conf", 6) != 0)
            abort();
        if (e.v[i][6] == ':' && e.v[i][7] != ' ') {
            unsigned long line = strtoul(e.v[i] + 7, NULL, 10);
            if (line == 0 || line > lines)
                abort();
        }
    }
    if (r == 0) {
        if (!c.hostname[0] || c.data_dir[0] != '/' || c.n_retry < 1 || c.n_retry > CONF_RETRY_MAX ||
            c.max_rcpts < 1 || c.max_errors < 1 || c.smtp.n > CONF_LISTEN_MAX ||
            c.retry_ms[0] >= c.give_up_ms ||
            (c.delay_warning_ms && c.delay_warning_ms >= c.give_up_ms) ||
            (c.delivery == CONF_DELIVERY_MDA && !c.mda_command[0]) ||
            !strstr(c.maildir_path, "%user%"))
            abort();
        for (size_t i = 1; i < c.n_retry; i++)
            if (c.retry_ms[i] < c.retry_ms[i - 1])
                abort();
        if (conf_maildir_path(&c, "bob", "example.org", out, sizeof(out)) == 0 &&
            !strstr(out, "bob"))
            abort();
    }
    conf_errors_free(&e);
    return 0;
}
