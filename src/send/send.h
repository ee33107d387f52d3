/*
 * send.h - `tern send`: one templated message per recipient row, sent
 * through the SMTP client by parallel workers, rate-limited, with every
 * outcome recorded in a ledger so that a re-run resumes and never sends
 * twice.  Reminder mode sends at most one message per row and window.
 */
#ifndef TERN_SEND_SEND_H
#define TERN_SEND_SEND_H

int send_main(int argc, char **argv);

#endif
