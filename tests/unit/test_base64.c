/*
 * test_base64.c - unit tests for core/base64.c: RFC 4648 test vectors, the
 * output size boundary, strict decoding (padding, alphabet, white space,
 * non-canonical pad bits) and round trips over every short binary input.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/base64.h"

static const struct {
    const char *plain, *enc;
} vectors[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

static void test_encode_vectors(void **state)
{
    (void)state;
    char out[64];
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        size_t n = strlen(vectors[i].plain);
        assert_int_equal(base64_encode(vectors[i].plain, n, out, sizeof(out)),
                         strlen(vectors[i].enc));
        assert_string_equal(out, vectors[i].enc);
        assert_int_equal(BASE64_ENCODED_LEN(n), strlen(vectors[i].enc));
    }
}

static void test_decode_vectors(void **state)
{
    (void)state;
    unsigned char out[64];
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        size_t n = strlen(vectors[i].enc);
        assert_int_equal(base64_decode(vectors[i].enc, n, out, sizeof(out)),
                         strlen(vectors[i].plain));
        assert_string_equal((char *)out, vectors[i].plain);
    }
    /* AUTH PLAIN: "\0user\0pass" */
    long n = base64_decode("AHVzZXIAcGFzcw==", 16, out, sizeof(out));
    assert_int_equal(n, 10);
    assert_memory_equal(out, "\0user\0pass", 10);
}

static void test_sizes(void **state)
{
    (void)state;
    char enc[16];
    unsigned char dec[16];

    /* "foobar" needs 8 + NUL */
    assert_int_equal(base64_encode("foobar", 6, enc, 9), 8);
    assert_int_equal(base64_encode("foobar", 6, enc, 8), -1);
    assert_int_equal(base64_encode("", 0, enc, 1), 0);
    assert_int_equal(base64_encode("", 0, enc, 0), -1);
    /* decoding "Zm9vYmFy" needs 6 + NUL */
    assert_int_equal(base64_decode("Zm9vYmFy", 8, dec, 7), 6);
    assert_int_equal(base64_decode("Zm9vYmFy", 8, dec, 6), -1);
    assert_int_equal(base64_decode("Zg==", 4, dec, 2), 1);
    assert_int_equal(base64_decode("Zg==", 4, dec, 1), -1);
    assert_int_equal(base64_decode("", 0, dec, 1), 0);
    assert_int_equal(base64_decode("", 0, dec, 0), -1);
}

static void test_strict(void **state)
{
    (void)state;
    unsigned char out[64];
    const char *bad[] = {
        "Zg",        /* no padding */
        "Zg=",       /* short padding */
        "Zm9",       /* not a multiple of 4 */
        "Z===",      /* three pad characters */
        "====",      /* only padding */
        "Zg==Zg==",  /* data after padding */
        "Zm=v",      /* padding inside */
        "Zm9v\r\n",  /* white space */
        "Zm 9v",     /* white space */
        "Zm9v YmFy", /* white space */
        "Zm9-",      /* URL-safe alphabet */
        "Zm9_",      /* URL-safe alphabet */
        "Zh==",      /* non-zero pad bits */
        "Zm9=",      /* non-zero pad bits */
        "Zm8=Zm8=",  /* padding in the middle */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(base64_decode(bad[i], strlen(bad[i]), out, sizeof(out)), -1);
    static const char nul[] = "Zm\0v";
    assert_int_equal(base64_decode(nul, 4, out, sizeof(out)), -1);
    assert_int_equal(base64_decode("Zm9v\x80\x80\x80\x80", 8, out, sizeof(out)), -1);
}

static void test_round_trip(void **state)
{
    (void)state;
    unsigned char in[8], dec[16];
    char enc[16];

    /* every input of length 0..2 and a sample of longer ones */
    for (unsigned v = 0; v < 65536 + 256 + 1; v++) {
        size_t n = v == 0 ? 0 : v <= 256 ? 1 : 2;
        unsigned x = v == 0 ? 0 : v <= 256 ? v - 1 : v - 257;
        in[0] = (unsigned char)(x & 0xff);
        in[1] = (unsigned char)(x >> 8);
        long e = base64_encode(in, n, enc, sizeof(enc));
        assert_int_equal(e, BASE64_ENCODED_LEN(n));
        assert_int_equal(base64_decode(enc, (size_t)e, dec, sizeof(dec)), (long)n);
        assert_memory_equal(dec, in, n);
    }
    for (unsigned seed = 1; seed < 2000; seed++) {
        size_t n = seed % 8 + 1;
        for (size_t k = 0; k < n; k++)
            in[k] = (unsigned char)(seed * 131 + k * 17);
        long e = base64_encode(in, n, enc, sizeof(enc));
        assert_true(e > 0);
        assert_int_equal(base64_decode(enc, (size_t)e, dec, sizeof(dec)), (long)n);
        assert_memory_equal(dec, in, n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_vectors), cmocka_unit_test(test_decode_vectors),
        cmocka_unit_test(test_sizes),          cmocka_unit_test(test_strict),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
