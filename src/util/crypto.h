/* crypto.h - hashing and random identifiers (OpenSSL libcrypto underneath). */
#ifndef RAGD_UTIL_CRYPTO_H
#define RAGD_UTIL_CRYPTO_H

#include <stddef.h>

/* Writes the lower-case hex SHA-256 of p[0..n) and a NUL into out. */
void crypto_sha256_hex(const void *p, size_t n, char out[65]);
/* Writes 2*nbytes random hex digits and a NUL into out (out holds 2*nbytes+1).
 * Returns 0 on success, -1 when the random source failed. */
int crypto_random_hex(char *out, size_t nbytes);
/* Writes nbytes (at most 64) random bytes from OpenSSL's CSPRNG encoded as
 * unpadded base64url (RFC 4648 section 5: A-Z a-z 0-9 - _) and a NUL into
 * out, which holds at least (4 * nbytes + 2) / 3 + 1 bytes. Returns 0, or -1
 * when the random source failed (out is then the empty string). */
int crypto_random_base64url(char *out, size_t nbytes);
/* Nonzero when a[0..n) equals b[0..n). Takes the same time whatever the
 * contents (OpenSSL's CRYPTO_memcmp): use it for secrets and their hashes. */
int crypto_equal(const void *a, const void *b, size_t n);
/* Decodes base64 or base64url text in[0..n) (padding optional, no
 * whitespace; OpenSSL's EVP_DecodeBlock) into out, which holds at least
 * 3 * ((n + 3) / 4) bytes. Returns the decoded length, or -1 when in is not
 * base64 (or longer than 1 MiB). Any thread. */
long crypto_base64_decode(const char *in, size_t n, unsigned char *out);

#endif
