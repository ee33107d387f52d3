/*
 * fuzz_taglist.c - libFuzzer harness for core/taglist.c.
 *
 * Invariants: on success every tag lies inside the input, its name starts
 * with a letter and holds only letters, digits and '_', no two names are
 * equal, a value neither starts nor ends with a blank and holds no ';',
 * and taglist_get() finds each tag; on failure why is a non-empty line of
 * printable text.  The input is copied into an exact-size heap block, so
 * ASan catches any read past its end.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/taglist.h"

static int blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1);
    struct taglist tl;
    char why[128];

    if (!text)
        return 0;
    if (size)
        memcpy(text, data, size);
    if (taglist_parse(text, size, &tl, why, sizeof(why)) < 0) {
        size_t n = strlen(why);
        if (n == 0 || n >= sizeof(why))
            abort();
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)why[i] < 0x20 || (unsigned char)why[i] > 0x7e)
                abort();
        free(text);
        return 0;
    }
    if (tl.n > TAGLIST_MAX)
        abort();
    for (size_t i = 0; i < tl.n; i++) {
        const struct tag *t = &tl.tags[i];
        char name[300];
        if (t->name < text || t->name + t->namelen > text + size || t->namelen == 0)
            abort();
        if (t->value < text || t->value + t->valuelen > text + size)
            abort();
        if (!((t->name[0] >= 'a' && t->name[0] <= 'z') || (t->name[0] >= 'A' && t->name[0] <= 'Z')))
            abort();
        if (t->valuelen && (blank(t->value[0]) || blank(t->value[t->valuelen - 1])))
            abort();
        if (memchr(t->value, ';', t->valuelen))
            abort();
        for (size_t j = 0; j < i; j++)
            if (tl.tags[j].namelen == t->namelen && !memcmp(tl.tags[j].name, t->name, t->namelen))
                abort();
        if (t->namelen < sizeof(name)) {
            memcpy(name, t->name, t->namelen);
            name[t->namelen] = '\0';
            if (taglist_get(&tl, name) != t)
                abort();
        }
    }
    free(text);
    return 0;
}
