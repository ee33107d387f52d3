/*
 * crc32c.h - CRC-32C (Castagnoli, the iSCSI / ext4 / SCTP checksum).
 *
 * Used by the queue to notice a message file that changed after it was
 * committed (a cut or a flipped bit): an integrity check, not a defence
 * against anyone who can write the spool.  crc32c_update() chains: start
 * with 0, feed the data in pieces of any size, the result is the same as
 * for one piece.  It uses the SSE4.2 crc32 instruction when the CPU has
 * it (checked once at run time) and a slicing-by-8 table otherwise; both
 * give the same values (test vector: "123456789" -> 0xE3069283).
 * Pure, thread-safe, allocates nothing.
 */
#ifndef TERN_CORE_CRC32C_H
#define TERN_CORE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t crc32c_update(uint32_t crc, const void *data, size_t len);

/* The portable table version alone (tests compare both). */
uint32_t crc32c_update_sw(uint32_t crc, const void *data, size_t len);

#endif
