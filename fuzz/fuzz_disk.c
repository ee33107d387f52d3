/*
 * fuzz_disk.c - libFuzzer harness for disk_msg_parse() (src/sink/disk.c),
 * which reads the .json envelope files of `tern sink --store DIR`.
 *
 * The input is split at its first NUL: the envelope before it, the raw
 * message after it (both copied into exact-size heap blocks, so ASan
 * catches any read past their ends).  Invariants: on success every string
 * of the message is non-NULL, the id is the one asked for, the raw message
 * is the one given, and nrcpt is bounded; on failure why is non-empty and
 * raw is still the caller's.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sink/disk.h"
#include "sink/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t jlen = nul ? (size_t)(nul - data) : size;
    size_t rlen = nul ? size - jlen - 1 : 0;
    char *json = malloc(jlen ? jlen : 1), *raw = malloc(rlen ? rlen : 1);
    const char *why = "";

    if (!json || !raw)
        abort();
    memcpy(json, data, jlen);
    if (rlen)
        memcpy(raw, nul + 1, rlen);
    struct sink_msg *m = disk_msg_parse(json, jlen, 7, raw, rlen, &why);
    free(json);
    if (!m) {
        if (!why || !*why)
            abort();
        free(raw);
        return 0;
    }
    if (m->id != 7 || m->raw != raw || m->size != rlen || !m->mail_from || !m->helo || !m->peer ||
        !m->auth_user || !m->subject || !m->hdr_from || !m->hdr_to || m->nrcpt > 100000)
        abort();
    for (size_t i = 0; i < m->nrcpt; i++)
        if (!m->rcpts[i])
            abort();
    store_msg_free(m);
    return 0;
}
