#ifndef BOTRT_CCRYPTO_SHIM_H
#define BOTRT_CCRYPTO_SHIM_H
/* The low-level SHA256_* functions are deprecated in OpenSSL 3 but remain the only way to copy a hash state
   without an allocation; HMAC with precomputed pads uses them (below). */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/kdf.h>
#include <string.h>

/* Macros Swift cannot import, as typed functions. */
static inline int botrt_gcm_set_ivlen(EVP_CIPHER_CTX *c, int len) { return EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, len, NULL); }
static inline int botrt_gcm_get_tag(EVP_CIPHER_CTX *c, int len, void *tag) { return EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, len, tag); }
static inline int botrt_gcm_set_tag(EVP_CIPHER_CTX *c, int len, void *tag) { return EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, len, tag); }

/* HMAC-SHA256 with the key's inner and outer pad states computed once: one HMAC is then two state copies and
   the SHA-256 compressions of the message, without the per-call fetch, allocation and key setup of HMAC(). */
typedef struct { SHA256_CTX inner, outer; } botrt_hmac_sha256_key;
static inline void botrt_hmac_sha256_init(botrt_hmac_sha256_key *k, const unsigned char *key, size_t keylen) {
  unsigned char block[64] = {0}, ipad[64], opad[64];
  if (keylen > 64) { SHA256(key, keylen, block); } else if (keylen > 0) { memcpy(block, key, keylen); }
  for (int i = 0; i < 64; i++) { ipad[i] = block[i] ^ 0x36; opad[i] = block[i] ^ 0x5c; }
  SHA256_Init(&k->inner); SHA256_Update(&k->inner, ipad, 64);
  SHA256_Init(&k->outer); SHA256_Update(&k->outer, opad, 64);
  OPENSSL_cleanse(block, sizeof block); OPENSSL_cleanse(ipad, sizeof ipad); OPENSSL_cleanse(opad, sizeof opad);
}
static inline void botrt_hmac_sha256(const botrt_hmac_sha256_key *k, const void *data, size_t n, unsigned char *out) {
  SHA256_CTX c = k->inner;
  unsigned char ih[32];
  if (n > 0) SHA256_Update(&c, data, n);
  SHA256_Final(ih, &c);
  c = k->outer;
  SHA256_Update(&c, ih, 32);
  SHA256_Final(out, &c);
  OPENSSL_cleanse(&c, sizeof c);
}
#endif
