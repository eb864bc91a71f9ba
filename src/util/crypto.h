/* crypto.h - hashing and random identifiers (OpenSSL libcrypto underneath). */
#ifndef RAGD_UTIL_CRYPTO_H
#define RAGD_UTIL_CRYPTO_H

#include <stddef.h>

/* Writes the lower-case hex SHA-256 of p[0..n) and a NUL into out. */
void crypto_sha256_hex(const void *p, size_t n, char out[65]);
/* Writes 2*nbytes random hex digits and a NUL into out (out holds 2*nbytes+1).
 * Returns 0 on success, -1 when the random source failed. */
int crypto_random_hex(char *out, size_t nbytes);

#endif
