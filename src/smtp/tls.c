/*
 * tls.c - server TLS contexts (see tls.h).
 *
 * The self-signed certificate is made in memory only: a new key each start,
 * CN and subjectAltName = the host name, valid from now for one year.
 * Nothing is written to disk.
 */
#include "smtp/tls.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

static void tls_why(char *why, size_t whysize, const char *what, const char *file)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(why, whysize, "%s%s%s: %s", file ? file : "", file ? ": " : "", what,
             r ? r : "unknown error");
    ERR_clear_error();
}

static int tls_self_signed(SSL_CTX *ctx, const char *hostname, char *why, size_t whysize)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_EXTENSION *ext = NULL;
    char san[300];
    int ok = -1;

    if (!key || !x) {
        tls_why(why, whysize, "cannot generate a key", NULL);
        goto out;
    }
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 365L * 24 * 3600);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)hostname, -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    snprintf(san, sizeof(san), "DNS:%s", hostname);
    ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
    if (!ext || !X509_add_ext(x, ext, -1) || !X509_sign(x, key, EVP_sha256())) {
        tls_why(why, whysize, "cannot make a self-signed certificate", NULL);
        goto out;
    }
    if (SSL_CTX_use_certificate(ctx, x) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1) {
        tls_why(why, whysize, "cannot use the self-signed certificate", NULL);
        goto out;
    }
    ok = 0;
out:
    X509_EXTENSION_free(ext);
    X509_free(x);
    EVP_PKEY_free(key);
    return ok;
}

SSL_CTX *tls_server_ctx(const char *cert_file, const char *key_file, const char *hostname,
                        char *why, size_t whysize)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        tls_why(why, whysize, "cannot create a TLS context", NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (cert_file || key_file) {
        if (!cert_file || !key_file) {
            snprintf(why, whysize, "a TLS certificate needs both a certificate and a key file");
            SSL_CTX_free(ctx);
            return NULL;
        }
        if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
            tls_why(why, whysize, "cannot load certificate", cert_file);
            SSL_CTX_free(ctx);
            return NULL;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
            tls_why(why, whysize, "cannot load private key", key_file);
            SSL_CTX_free(ctx);
            return NULL;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            tls_why(why, whysize, "private key does not match the certificate", key_file);
            SSL_CTX_free(ctx);
            return NULL;
        }
    } else if (tls_self_signed(ctx, hostname ? hostname : "localhost", why, whysize) < 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}
