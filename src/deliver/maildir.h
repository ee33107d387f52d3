/*
 * maildir.h - the built-in courier: deliver one message into a Maildir
 * (https://cr.yp.to/proto/maildir.html), the default, no program needed.
 *
 * The message is written to tmp/NAME (O_CREAT|O_EXCL|O_NOFOLLOW), fsynced,
 * closed, renamed to new/NAME without replacing anything (renameat2
 * RENAME_NOREPLACE; link + unlink where the file system lacks it), and
 * new/ is fsynced, one fsync shared by the deliveries into that Maildir
 * running at the same time: OK is returned only once the message is
 * durable in new/.  NAME is "SECONDS.MusecPpidQcounterRrandom.host" (the
 * Maildir spec's unique name, as Dovecot writes it).
 *
 * Line ends: the file is stored with LF line ends (every CRLF of the queued
 * message and of the prefix becomes LF), which is what Maildir readers
 * (Dovecot, mutt, Python's mailbox) and Unix tools expect; they accept
 * CRLF too, but LF files are what every other MTA writes and what IMAP
 * servers count sizes on.
 *
 * Exactly once across crashes (with struct maildir_once, which the courier
 * always passes for a queued item): NAME is "TIME.UNIQ.host", TIME the
 * item's arrival and UNIQ "QUEUEID_RCPTINDEX" (the queue id is unique on
 * the host: time, counter and 64 random bits; the index tells apart two
 * recipients of one item that share a Maildir).  Before writing, new/NAME
 * and every cur/ entry whose unique part is UNIQ (a reader may have moved
 * it and added ":2,FLAGS") are looked for; if one exists the delivery is
 * OK without a second copy.  So a delivery repeated because tern was killed
 * after the link into new/ but before the envelope said "sent" writes
 * nothing.  Limits: a copy the user already deleted, or one a reader
 * renamed beyond adding flags, or (in new/) one written under another
 * hostname, is delivered again; cur/ is scanned only when its mtime is not
 * older than the item's arrival (a clock stepped back can hide a copy).
 *
 * What stays at-least-once, and why: the MDA and pipe couriers hand the
 * message to a program, which tern cannot ask "did you already take item X
 * for recipient Y?" -- a kill between the program's exit 0 and the
 * envelope update runs it again (procmail, maildrop, a script); remote SMTP
 * likewise: a kill after the next hop's 250 and before the envelope update
 * sends the message again (RFC 5321 section 6.1 accepts duplicates over
 * losses; the receiver may dedupe on Message-ID).  Closing those windows
 * would need a write + fsync of the envelope before and after every
 * delivery, and would still leave the window inside the program.
 *
 * Safety: the Maildir and its tmp/, new/ and cur/ may not be symbolic links
 * (PERM 5.2.0); all are created (mode 0700) when absent, but not the
 * Maildir's parent (the courier makes the folders above only when the
 * Maildir cannot be made for want of them, and then retries once).  Disk
 * full (4.3.1), quota (4.2.2), I/O errors (4.3.0), permission problems and
 * a missing parent directory (4.3.5, the administrator can fix them) are
 * TEMP.
 */
#ifndef TERN_DELIVER_MAILDIR_H
#define TERN_DELIVER_MAILDIR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "deliver/courier.h"

/* What names one delivery, so that it is made at most once (see above). */
struct maildir_once {
    int64_t time;     /* the file name's time part: the queued item's arrival */
    const char *uniq; /* [A-Za-z0-9_-], no '.': "QUEUEID_RCPTINDEX" */
};

/*
 * Deliver prefix (may be NULL; e.g. "Return-Path: <a@b>\r\nDelivered-To:
 * c@d\r\n") followed by msg[0..len) into the Maildir at path.  hostname
 * goes into the file name ('/' and ':' escaped as the spec says).  once
 * NULL: a fresh unique name; else the delivery is made at most once (OK
 * without writing when the copy is there already).
 * Blocking (several fsyncs): call it from a delivery worker thread.
 */
enum result_class maildir_deliver(const char *path, const char *prefix, const char *msg, size_t len,
                                  const char *hostname, const struct maildir_once *once,
                                  struct rcpt_result *err);

/*
 * For tests only: system calls to use instead of the real ones (NULL: the
 * real one).  fsync covers the message file and the folders; mkdir the
 * folders above a Maildir.  Set them before any delivery runs.
 */
struct maildir_testio {
    int (*renameat2)(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
                     unsigned flags);
    int (*fsync)(int fd);
    int (*mkdir)(const char *path, mode_t mode);
};
extern struct maildir_testio maildir_testio;

#endif
