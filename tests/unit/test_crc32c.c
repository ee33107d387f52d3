/*
 * test_crc32c.c - core/crc32c.c: the standard check value ("123456789" ->
 * 0xE3069283) and RFC 3720's test patterns, the same result from the
 * hardware and the table paths for every length and alignment up to a few
 * hundred octets, and chaining (pieces give the CRC of the whole).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/crc32c.h"

static void test_vectors(void **state)
{
    (void)state;
    unsigned char buf[32];
    assert_int_equal(crc32c_update(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(crc32c_update_sw(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(crc32c_update(0, "", 0), 0);
    /* RFC 3720 appendix B.4 */
    memset(buf, 0, sizeof(buf));
    assert_int_equal(crc32c_update(0, buf, 32), 0x8A9136AAu);
    memset(buf, 0xff, sizeof(buf));
    assert_int_equal(crc32c_update(0, buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (unsigned char)i;
    assert_int_equal(crc32c_update(0, buf, 32), 0x46DD794Eu);
    assert_int_equal(crc32c_update_sw(0, buf, 32), 0x46DD794Eu);
}

static void test_paths_agree_and_chain(void **state)
{
    (void)state;
    unsigned char data[600];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof(data); i++) {
        x = x * 1103515245u + 12345u;
        data[i] = (unsigned char)(x >> 16);
    }
    for (size_t off = 0; off < 9; off++) {
        for (size_t len = 0; len + off <= 300; len++) {
            uint32_t hw = crc32c_update(0, data + off, len);
            assert_int_equal(hw, crc32c_update_sw(0, data + off, len));
            size_t cut = len / 3;
            assert_int_equal(
                hw, crc32c_update(crc32c_update(0, data + off, cut), data + off + cut, len - cut));
            assert_int_equal(hw, crc32c_update_sw(crc32c_update(0, data + off, cut),
                                                  data + off + cut, len - cut));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_paths_agree_and_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
