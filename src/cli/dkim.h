/*
 * dkim.h - `tern dkim`: keygen (a key pair and its DNS record), sign and
 * verify (a message on standard input).
 */
#ifndef TERN_CLI_DKIM_H
#define TERN_CLI_DKIM_H

int cli_dkim(int argc, char **argv);

#endif
