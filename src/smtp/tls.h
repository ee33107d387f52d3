/*
 * tls.h - OpenSSL contexts for tern's servers.
 *
 * tls_server_ctx() loads a certificate chain and key (checked to match), or,
 * with no files given, generates a fresh self-signed P-256 certificate for
 * the host name (for tests and for `tern sink --tls`).  TLS 1.2 is the
 * minimum.  Errors name the file and OpenSSL's reason.
 */
#ifndef TERN_SMTP_TLS_H
#define TERN_SMTP_TLS_H

#include <stddef.h>

typedef struct ssl_ctx_st SSL_CTX;

SSL_CTX *tls_server_ctx(const char *cert_file, const char *key_file, const char *hostname,
                        char *why, size_t whysize);

#endif
