/*
 * spf.h - `tern spf check`: RFC 7208 check_host() for one client address,
 * sender and HELO name, printed (an operator's and the tests' tool).
 */
#ifndef TERN_CLI_SPF_H
#define TERN_CLI_SPF_H

int cli_spf(int argc, char **argv);

#endif
