// ChaCha20-Poly1305 (RFC 8439) for the Noise transport, through the system's OpenSSL.
//
// Why: the OpenSSL inside Node 20's binary runs this cipher at ~1.0 GB/s per 64 KiB message
// on the lab's CPU, the system's libcrypto at ~2.1 GB/s with the same instructions (AVX2),
// and every relay decrypts and re-encrypts all it forwards (docs/PERFORMANCE.md).
//
// How: libcrypto is opened at run time with RTLD_DEEPBIND, so that it binds its own symbols
// and never Node's copies of the same OpenSSL functions (Node exports them for addons). Only
// the few EVP calls below are used, declared here: no OpenSSL headers are needed to build,
// and on a machine without libcrypto `available()` says why, and Node's own cipher is used.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>
#include <node_api.h>

typedef struct evp_cipher_st EVP_CIPHER;
typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;

#define CTRL_AEAD_GET_TAG 0x10
#define CTRL_AEAD_SET_TAG 0x11
#define TAG_BYTES 16
#define KEY_BYTES 32
#define NONCE_BYTES 12

static EVP_CIPHER_CTX *(*ctx_new)(void);
static const EVP_CIPHER *(*chacha20_poly1305)(void);
static int (*cipher_init_ex)(EVP_CIPHER_CTX *, const EVP_CIPHER *, void *, const unsigned char *, const unsigned char *, int);
static int (*cipher_update)(EVP_CIPHER_CTX *, unsigned char *, int *, const unsigned char *, int);
static int (*cipher_final_ex)(EVP_CIPHER_CTX *, unsigned char *, int *);
static int (*ctx_ctrl)(EVP_CIPHER_CTX *, int, int, void *);
static const char *(*openssl_version)(int);

static const EVP_CIPHER *cipher;
static const char *load_error = "not loaded";

static void load (void) {
  static const char *names[] = { "libcrypto.so.3", "libcrypto.so.1.1", NULL };
  void *lib = NULL;
  for (int i = 0; names[i] != NULL && lib == NULL; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
  if (lib == NULL) { load_error = "no libcrypto.so.3 or libcrypto.so.1.1"; return; }
  ctx_new = (EVP_CIPHER_CTX *(*)(void))dlsym(lib, "EVP_CIPHER_CTX_new");
  chacha20_poly1305 = (const EVP_CIPHER *(*)(void))dlsym(lib, "EVP_chacha20_poly1305");
  cipher_init_ex = (int (*)(EVP_CIPHER_CTX *, const EVP_CIPHER *, void *, const unsigned char *, const unsigned char *, int))dlsym(lib, "EVP_CipherInit_ex");
  cipher_update = (int (*)(EVP_CIPHER_CTX *, unsigned char *, int *, const unsigned char *, int))dlsym(lib, "EVP_CipherUpdate");
  cipher_final_ex = (int (*)(EVP_CIPHER_CTX *, unsigned char *, int *))dlsym(lib, "EVP_CipherFinal_ex");
  ctx_ctrl = (int (*)(EVP_CIPHER_CTX *, int, int, void *))dlsym(lib, "EVP_CIPHER_CTX_ctrl");
  openssl_version = (const char *(*)(int))dlsym(lib, "OpenSSL_version");
  if (!ctx_new || !chacha20_poly1305 || !cipher_init_ex || !cipher_update || !cipher_final_ex || !ctx_ctrl) { load_error = "libcrypto lacks an EVP call"; return; }
  cipher = chacha20_poly1305();
  if (cipher == NULL) { load_error = "libcrypto has no ChaCha20-Poly1305"; return; }
  load_error = NULL;
}

// one context per thread, reused: a fresh one per message costs more than a small message
static __thread EVP_CIPHER_CTX *thread_ctx;

static EVP_CIPHER_CTX *ctx (void) {
  if (thread_ctx == NULL) thread_ctx = ctx_new();
  return thread_ctx;
}

typedef struct { unsigned char *data; size_t len; } bytes;

// a Uint8Array's bytes; null or undefined (no bytes) only where `nullable`
static int get_bytes (napi_env env, napi_value v, bytes *out, const char *what, int nullable) {
  napi_valuetype t;
  if (nullable && napi_typeof(env, v, &t) == napi_ok && (t == napi_null || t == napi_undefined)) { out->data = NULL; out->len = 0; return 1; }
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) { napi_throw_type_error(env, NULL, what); return 0; }
  napi_typedarray_type type; size_t length; void *data; napi_value ab; size_t offset;
  if (napi_get_typedarray_info(env, v, &type, &length, &data, &ab, &offset) != napi_ok || type != napi_uint8_array) { napi_throw_type_error(env, NULL, what); return 0; }
  out->data = (unsigned char *)data; out->len = length;
  return 1;
}

// in place (the same first byte) or apart: OpenSSL handles nothing in between
static int overlaps_partly (const unsigned char *a, size_t alen, const unsigned char *b, size_t blen) {
  if (a == b || alen == 0 || blen == 0) return 0;
  return a < b + blen && b < a + alen;
}

// seal(out, plaintext, ad, nonce, key): out (plaintext length + 16) gets ciphertext then tag;
// out may be the plaintext's own bytes
static napi_value seal (napi_env env, napi_callback_info info) {
  size_t argc = 5; napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  bytes out, m, ad, nonce, key;
  if (argc != 5) { napi_throw_type_error(env, NULL, "seal takes 5 arguments"); return NULL; }
  if (!get_bytes(env, argv[0], &out, "out: Uint8Array", 0) || !get_bytes(env, argv[1], &m, "plaintext: Uint8Array", 0) ||
      !get_bytes(env, argv[2], &ad, "ad: Uint8Array or null", 1) || !get_bytes(env, argv[3], &nonce, "nonce: Uint8Array", 0) || !get_bytes(env, argv[4], &key, "key: Uint8Array", 0)) return NULL;
  if (load_error != NULL) { napi_throw_error(env, NULL, load_error); return NULL; }
  if (out.len != m.len + TAG_BYTES || nonce.len != NONCE_BYTES || key.len != KEY_BYTES || m.len > 0x7fffffff || ad.len > 0x7fffffff) { napi_throw_range_error(env, NULL, "seal: wrong lengths"); return NULL; }
  if (overlaps_partly(out.data, out.len, m.data, m.len)) { napi_throw_range_error(env, NULL, "seal: out overlaps the plaintext without starting with it"); return NULL; }
  EVP_CIPHER_CTX *c = ctx();
  int n = 0;
  if (c == NULL || cipher_init_ex(c, cipher, NULL, key.data, nonce.data, 1) != 1 ||
      (ad.len > 0 && cipher_update(c, NULL, &n, ad.data, (int)ad.len) != 1) ||
      (m.len > 0 && cipher_update(c, out.data, &n, m.data, (int)m.len) != 1) ||
      cipher_final_ex(c, out.data + m.len, &n) != 1 ||
      ctx_ctrl(c, CTRL_AEAD_GET_TAG, TAG_BYTES, out.data + m.len) != 1) {
    napi_throw_error(env, NULL, "ChaCha20-Poly1305 encryption failed");
    return NULL;
  }
  return NULL;
}

// open(out, ciphertext, tag, ad, nonce, key) → whether the tag matched. out (as long as the
// ciphertext, without its tag) may be the ciphertext's own bytes; on a mismatch it is wiped
static napi_value open_ (napi_env env, napi_callback_info info) {
  size_t argc = 6; napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  bytes out, ct, tag, ad, nonce, key;
  if (argc != 6) { napi_throw_type_error(env, NULL, "open takes 6 arguments"); return NULL; }
  if (!get_bytes(env, argv[0], &out, "out: Uint8Array", 0) || !get_bytes(env, argv[1], &ct, "ciphertext: Uint8Array", 0) || !get_bytes(env, argv[2], &tag, "tag: Uint8Array", 0) ||
      !get_bytes(env, argv[3], &ad, "ad: Uint8Array or null", 1) || !get_bytes(env, argv[4], &nonce, "nonce: Uint8Array", 0) || !get_bytes(env, argv[5], &key, "key: Uint8Array", 0)) return NULL;
  if (load_error != NULL) { napi_throw_error(env, NULL, load_error); return NULL; }
  if (out.len != ct.len || tag.len != TAG_BYTES || nonce.len != NONCE_BYTES || key.len != KEY_BYTES || ct.len > 0x7fffffff || ad.len > 0x7fffffff) { napi_throw_range_error(env, NULL, "open: wrong lengths"); return NULL; }
  if (overlaps_partly(out.data, out.len, ct.data, ct.len)) { napi_throw_range_error(env, NULL, "open: out overlaps the ciphertext without starting with it"); return NULL; }
  unsigned char expected[TAG_BYTES];
  // (the tag may sit in the bytes being decrypted in place: keep it apart first)
  memcpy(expected, tag.data, TAG_BYTES);
  EVP_CIPHER_CTX *c = ctx();
  int n = 0;
  int ok = c != NULL && cipher_init_ex(c, cipher, NULL, key.data, nonce.data, 0) == 1 &&
      (ad.len == 0 || cipher_update(c, NULL, &n, ad.data, (int)ad.len) == 1) &&
      (ct.len == 0 || cipher_update(c, out.data, &n, ct.data, (int)ct.len) == 1) &&
      ctx_ctrl(c, CTRL_AEAD_SET_TAG, TAG_BYTES, expected) == 1 &&
      cipher_final_ex(c, out.data + ct.len, &n) == 1;
  // nothing unauthenticated is left behind
  if (!ok) memset(out.data, 0, out.len);
  napi_value result;
  napi_get_boolean(env, ok, &result);
  return result;
}

// available() → true, or the reason the system's cipher cannot be used
static napi_value available (napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  if (load_error == NULL) napi_get_boolean(env, true, &result);
  else napi_create_string_utf8(env, load_error, NAPI_AUTO_LENGTH, &result);
  return result;
}

// version() → the system libcrypto's version text
static napi_value version (napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  napi_create_string_utf8(env, openssl_version != NULL ? openssl_version(0) : "unknown", NAPI_AUTO_LENGTH, &result);
  return result;
}

NAPI_MODULE_INIT (/* napi_env env, napi_value exports */) {
  // once per process, whichever thread loads the module first
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, load);
  napi_property_descriptor props[] = {
    { "seal", NULL, seal, NULL, NULL, NULL, napi_default, NULL },
    { "open", NULL, open_, NULL, NULL, NULL, napi_default, NULL },
    { "available", NULL, available, NULL, NULL, NULL, napi_default, NULL },
    { "version", NULL, version, NULL, NULL, NULL, napi_default, NULL }
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
