#include "util/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>

static void to_hex(const unsigned char *in, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * n] = '\0';
}

void crypto_sha256_hex(const void *p, size_t n, char out[65]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  EVP_Digest(p, n, md, &md_len, EVP_sha256(), NULL);
  to_hex(md, md_len, out);
}

int crypto_random_hex(char *out, size_t nbytes) {
  unsigned char raw[64];
  if (nbytes > sizeof raw) return -1;
  if (RAND_bytes(raw, (int)nbytes) != 1) return -1;
  to_hex(raw, nbytes, out);
  return 0;
}

int crypto_random_base64url(char *out, size_t nbytes) {
  static const char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  unsigned char raw[64];
  size_t o = 0;
  out[0] = '\0';
  if (nbytes > sizeof raw) return -1;
  if (RAND_bytes(raw, (int)nbytes) != 1) return -1;
  for (size_t i = 0; i < nbytes; i += 3) {
    unsigned v = (unsigned)raw[i] << 16;
    size_t left = nbytes - i;
    if (left > 1) v |= (unsigned)raw[i + 1] << 8;
    if (left > 2) v |= raw[i + 2];
    out[o++] = alphabet[(v >> 18) & 63];
    out[o++] = alphabet[(v >> 12) & 63];
    if (left > 1) out[o++] = alphabet[(v >> 6) & 63];
    if (left > 2) out[o++] = alphabet[v & 63];
  }
  out[o] = '\0';
  OPENSSL_cleanse(raw, sizeof raw);
  return 0;
}

int crypto_equal(const void *a, const void *b, size_t n) { return CRYPTO_memcmp(a, b, n) == 0; }

long crypto_base64_decode(const char *in, size_t n, unsigned char *out) {
  size_t padded = (n + 3) / 4 * 4, pad = 0;
  unsigned char *tmp;
  int got;
  if (n == 0 || n > (1u << 20)) return -1;
  tmp = malloc(padded + 1);
  if (!tmp) return -1;
  for (size_t i = 0; i < n; i++) tmp[i] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : (unsigned char)in[i];
  for (size_t i = n; i < padded; i++) tmp[i] = '=';
  tmp[padded] = '\0';
  /* EVP_DecodeBlock counts each '=' of padding as a zero byte. */
  for (size_t i = padded; i > 0 && tmp[i - 1] == '=' && pad < 2; i--) pad++;
  got = EVP_DecodeBlock(out, tmp, (int)padded);
  free(tmp);
  if (got < 0 || (size_t)got < pad) return -1;
  return (long)((size_t)got - pad);
}
