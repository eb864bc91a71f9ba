#include "util/crypto.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

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
