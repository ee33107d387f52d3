/*
 * fdio.h - whole writes to a file descriptor.
 */
#ifndef TERN_CORE_FDIO_H
#define TERN_CORE_FDIO_H

#include <stddef.h>

/*
 * Write all n octets of p to fd, again after EINTR and short writes.
 * Returns 0, or -1 with errno set (EIO when write(2) wrote nothing).
 */
int write_all(int fd, const void *p, size_t n);

#endif
