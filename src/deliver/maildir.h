/*
 * maildir.h - the built-in courier: deliver one message into a Maildir
 * (https://cr.yp.to/proto/maildir.html), the default, no program needed.
 *
 * The message is written to tmp/NAME (O_CREAT|O_EXCL|O_NOFOLLOW), fsynced,
 * closed, checked (a regular file with one link), linked to new/NAME,
 * unlinked from tmp/, and new/ is fsynced: OK is returned only once the
 * message is durable in new/.  NAME is "SECONDS.MusecPpidQcounterRrandom.
 * host" (the Maildir spec's unique name, as Dovecot writes it).
 *
 * Line ends: the file is stored with LF line ends (every CRLF of the queued
 * message and of the prefix becomes LF), which is what Maildir readers
 * (Dovecot, mutt, Python's mailbox) and Unix tools expect; they accept
 * CRLF too, but LF files are what every other MTA writes and what IMAP
 * servers count sizes on.
 *
 * Safety: the Maildir and its tmp/, new/ and cur/ may not be symbolic links
 * (PERM 5.2.0); all are created (mode 0700) when absent, but not the
 * Maildir's parent.  Disk full (4.3.1), quota (4.2.2), I/O errors (4.3.0),
 * permission problems and a missing parent directory (4.3.5, the
 * administrator can fix them) are TEMP.
 */
#ifndef TERN_DELIVER_MAILDIR_H
#define TERN_DELIVER_MAILDIR_H

#include <stddef.h>

#include "deliver/courier.h"

/*
 * Deliver prefix (may be NULL; e.g. "Return-Path: <a@b>\r\nDelivered-To:
 * c@d\r\n") followed by msg[0..len) into the Maildir at path.  hostname
 * goes into the file name ('/' and ':' escaped as the spec says).
 * Blocking (several fsyncs): call it from a delivery worker thread.
 */
enum result_class maildir_deliver(const char *path, const char *prefix, const char *msg, size_t len,
                                  const char *hostname, struct rcpt_result *err);

#endif
