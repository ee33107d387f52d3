/*
 * data.h - the DATA phase: dot-unstuffing, end detection, size and line limits.
 *
 * Only CR LF "." CR LF ends the data; the first line of data counts as
 * following a CRLF (the one that ended the DATA command).  The reader emits
 * the message as received, less the stuffing dot at the start of a line and
 * less the final ".CRLF".  It never buffers more than a few octets itself.
 *
 * Bare line endings (a CR not followed by LF, or an LF not preceded by CR)
 * are never treated as line ends for the terminator or for dot-unstuffing;
 * they are recorded in flags (DATA_BARE_CR / DATA_BARE_LF) so that the
 * session can refuse the message after the real end (tern's anti-smuggling
 * policy: such a message is never accepted, so it can never be relayed with
 * a different reading of where it ends).  A NUL octet is recorded the same
 * way (DATA_NUL) and refused by the same rule: RFC 5321 2.3.8 forbids it, and
 * a NUL is where a C program downstream would cut the message short.
 *
 * Size counts the unstuffed octets; once over max_size the reader stops
 * emitting and sets DATA_TOO_BIG but keeps reading to the real end.  A line
 * longer than max_line (incl. CRLF; 0 = no limit) sets DATA_LINE_TOO_LONG.
 */
#ifndef TERN_CORE_DATA_H
#define TERN_CORE_DATA_H

#include <stddef.h>
#include <stdint.h>

enum data_flags {
    DATA_TOO_BIG = 1 << 0,
    DATA_BARE_CR = 1 << 1,
    DATA_BARE_LF = 1 << 2,
    DATA_LINE_TOO_LONG = 1 << 3,
    DATA_NUL = 1 << 4, /* a NUL octet before the end (the session refuses the message) */
};

typedef void (*data_emit_fn)(void *ctx, const char *p, size_t n);

struct data_reader {
    int state;         /* private */
    uint64_t size;     /* unstuffed octets of the message seen so far */
    uint64_t max_size; /* 0 = no limit */
    size_t max_line;   /* 0 = no limit */
    size_t line_len;   /* octets in the current line so far */
    unsigned flags;    /* enum data_flags */
};

void data_reader_init(struct data_reader *dr, uint64_t max_size, size_t max_line);

/*
 * Consume in[0..len).  Emits message octets through emit(ctx, ...) in as few
 * calls as possible.  Returns the number of octets consumed; when the end
 * marker is found, *done is set to 1 and the return value counts the octets up
 * to and including the final LF, so that anything after it (pipelined
 * commands) is left to the caller.
 */
size_t data_reader_feed(struct data_reader *dr, const char *in, size_t len, int *done,
                        data_emit_fn emit, void *ctx);

/*
 * Client side: write body[0..len) as DATA content: every line ending (CRLF, bare LF
 * or bare CR) becomes CRLF, a line starting with '.' gets another '.', and the
 * content ends with CRLF (added if missing).  The terminating ".CRLF" is NOT
 * added.  Emits through emit; returns the number of octets emitted.
 */
uint64_t data_stuff(const char *body, size_t len, data_emit_fn emit, void *ctx);

#endif
