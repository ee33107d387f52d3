/*
 * command.h - SMTP command lines and ESMTP parameters (RFC 5321, 1870,
 * 6152, 6531, 3461, 4954).
 *
 * cmd_parse() splits a command line (CRLF already removed) into a verb and
 * its argument.  cmd_parse_mail() / cmd_parse_rcpt() parse the argument of
 * MAIL and RCPT strictly: the path, then space-separated keyword[=value]
 * parameters, each known one at most once and only if the server offers
 * the extension it belongs to.  On failure they fill a struct cmd_error with
 * the exact reply to send (code, enhanced code, text); nothing is allocated.
 *
 * Parameters: SIZE=digits (RFC 1870), BODY=7BIT|8BITMIME (RFC 6152),
 * SMTPUTF8 (RFC 6531, no value), AUTH=xtext-mailbox or <> (RFC 4954),
 * RET=FULL|HDRS and ENVID=xtext (RFC 3461, MAIL), NOTIFY=NEVER or a list of
 * SUCCESS,FAILURE,DELAY and ORCPT=addr-type;xtext (RFC 3461, RCPT).
 * An unknown, unoffered or repeated parameter gets 555 5.5.4.  An address
 * refused by address.c gets 553 5.1.7 (MAIL) or 553 5.1.3 (RCPT) with the
 * addr_strerror() text; a non-ASCII address without SMTPUTF8 gets 553 5.6.7.
 */
#ifndef TERN_CORE_COMMAND_H
#define TERN_CORE_COMMAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "address.h"

enum smtp_verb {
    CMD_UNKNOWN = 0,
    CMD_HELO,
    CMD_EHLO,
    CMD_MAIL,
    CMD_RCPT,
    CMD_DATA,
    CMD_RSET,
    CMD_NOOP,
    CMD_QUIT,
    CMD_VRFY,
    CMD_HELP,
    CMD_STARTTLS,
    CMD_AUTH,
    CMD_EXPN,
    CMD__COUNT
};

struct smtp_command {
    enum smtp_verb verb;
    const char *arg; /* after the verb and one space (or after "MAIL FROM:" / "RCPT TO:") */
    size_t arglen;
};

/* What the reply for a refused command is. */
struct cmd_error {
    int code;
    const char *enh;
    const char *text;
};

/* Extensions this server offers (what EHLO advertised). */
enum esmtp_ext {
    EXT_SIZE = 1 << 0,
    EXT_8BITMIME = 1 << 1,
    EXT_SMTPUTF8 = 1 << 2,
    EXT_AUTH = 1 << 3,
    EXT_DSN = 1 << 4,
};

enum body_type { BODY_NONE = 0, BODY_7BIT, BODY_8BITMIME };
enum dsn_ret { RET_NONE = 0, RET_FULL, RET_HDRS };
enum dsn_notify {
    NOTIFY_NEVER = 1 << 0,
    NOTIFY_SUCCESS = 1 << 1,
    NOTIFY_FAILURE = 1 << 2,
    NOTIFY_DELAY = 1 << 3,
};

#define ENVID_MAX 100 /* RFC 3461 4.4 */
#define ORCPT_MAX 500 /* RFC 3461 4.2 */

struct mail_params {
    struct mailaddr from;
    uint64_t size; /* SIZE= value, 0 if absent */
    bool size_given;
    enum body_type body;
    bool smtputf8;
    bool auth_given;
    char auth[ADDR_PATH_MAX + 1]; /* AUTH= decoded ("" for <>) */
    enum dsn_ret ret;
    char envid[ENVID_MAX + 1]; /* as written (xtext) */
};

struct rcpt_params {
    struct mailaddr to;
    unsigned notify;           /* enum dsn_notify bits, 0 if absent */
    char orcpt[ORCPT_MAX + 1]; /* "addr-type;xtext" as written, "" if absent */
};

/*
 * Split a line into verb and argument.  The verb is matched case-insensitively;
 * for MAIL and RCPT "FROM:" / "TO:" is matched too and arg starts after the colon
 * (one optional space after the colon is tolerated).  Returns 0, or -1 with *err
 * set: 500 5.5.2 for an unknown verb, 501 5.5.4 for a malformed MAIL/RCPT prefix.
 */
int cmd_parse(const char *line, size_t len, struct smtp_command *out, struct cmd_error *err);

/* ext: enum esmtp_ext bits offered; max_size: SIZE limit (0 = none), a larger
 * SIZE= gets 552 5.3.4.  Returns 0 or -1 with *err. */
int cmd_parse_mail(const char *arg, size_t len, unsigned ext, uint64_t max_size,
                   struct mail_params *out, struct cmd_error *err);

/* smtputf8: whether MAIL had SMTPUTF8 (permits UTF-8 in the address).
 * "<Postmaster>" (any case, RFC 5321 4.1.1.3) is accepted with to.domain "". */
int cmd_parse_rcpt(const char *arg, size_t len, unsigned ext, bool smtputf8,
                   struct rcpt_params *out, struct cmd_error *err);

/* Decode RFC 3461 xtext ("+XX" escapes); returns decoded length or -1 if malformed
 * or longer than size-1.  Output is NUL-terminated. */
int xtext_decode(const char *s, size_t len, char *out, size_t size);

/* Encode s as RFC 3461 xtext into out ("+XX" for '+', '=' and octets outside
 * '!'..'~'); returns the length, or -1 (out holds "") if it does not fit. */
int xtext_encode(const char *s, char *out, size_t size);

const char *cmd_verb_name(enum smtp_verb v);

#endif
