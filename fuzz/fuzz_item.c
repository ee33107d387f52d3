/*
 * fuzz_item.c - libFuzzer harness for qstore_item_parse() (queue/store.c):
 * the whole file of a one-file queue item (envelope through its end line,
 * then the message).
 *
 * Invariants: one of the four results, with a reason for every failure;
 * ENV_OK means the envelope has the item's id and a checksum, the message
 * starts right after the envelope's end line and is exactly msg-size octets
 * whose CRC-32C matches; an item rebuilt from the parsed envelope and that
 * message parses again to an equal envelope.  The input is copied into an
 * exact-size heap block, so a read past len is caught by ASan.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/crc32c.h"
#include "queue/store.h"

#define ITEM_ID "1000000000-00000001-aaaaaaaaaaaaaaaa"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size ? size : 1);
    if (!copy)
        abort();
    memcpy(copy, data, size);

    struct envelope env;
    size_t off = 0;
    char why[300] = "";
    int rc = qstore_item_parse(copy, size, ITEM_ID, &env, &off, why, sizeof(why));
    if (rc != ENV_OK && rc != ENV_INCOMPLETE && rc != ENV_CORRUPT && rc != QSTORE_DAMAGED)
        abort();
    if (rc != ENV_OK && why[0] == '\0')
        abort();
    if (rc == ENV_OK) {
        if (strcmp(env.id, ITEM_ID) != 0 || !env.msg_sum || off < 5 || off > size ||
            memcmp(copy + off - 4, "end\n", 4) != 0 || size - off != env.msg_size ||
            crc32c_update(0, copy + off, size - off) != env.msg_crc)
            abort();
        struct buf item = {0};
        if (envelope_format(&env, &item) != 0)
            abort();
        buf_append(&item, copy + off, size - off);
        struct envelope again;
        size_t off2;
        if (qstore_item_parse(item.p, item.len, ITEM_ID, &again, &off2, why, sizeof(why)) !=
                ENV_OK ||
            !envelope_equal(&env, &again) || item.len - off2 != size - off)
            abort();
        envelope_free(&again);
        buf_free(&item);
    }
    envelope_free(&env);
    free(copy);
    return 0;
}
