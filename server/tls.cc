// TLS context with Mozilla's "intermediate" configuration (TLS 1.2 + 1.3).
#include "server/tls.h"

#include <openssl/err.h>

namespace herald::server {
namespace {

// Mozilla intermediate (v5.7) TLS 1.2 suites: ECDHE/DHE with AES-GCM or
// ChaCha20-Poly1305 only; no CBC, no SHA-1 MACs, no RSA key exchange.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";
constexpr const char* kTls13Suites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
// Mozilla intermediate key exchange groups (OpenSSL would also offer X448 and ffdhe*).
constexpr const char* kGroups = "X25519:prime256v1:secp384r1";

std::string openssl_error() {
  unsigned long e = ERR_get_error();
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

}  // namespace

SSL_CTX* make_tls_context(const std::string& cert_file, const std::string& key_file, std::string& error) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) {
    error = "SSL_CTX_new: " + openssl_error();
    return nullptr;
  }
  auto fail = [&](const std::string& what) {
    error = what + ": " + openssl_error();
    SSL_CTX_free(ctx);
    return nullptr;
  };
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) return fail("min protocol");
  if (SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) return fail("max protocol");
  if (SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1) return fail("cipher list");
  if (SSL_CTX_set_ciphersuites(ctx, kTls13Suites) != 1) return fail("TLS 1.3 suites");
  if (SSL_CTX_set1_groups_list(ctx, kGroups) != 1) return fail("key exchange groups");
  // No renegotiation; a peer closing without close_notify is EOF (frames
  // detect truncation themselves); no session tickets kept per connection.
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) return fail("tls.cert_file " + cert_file);
  if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1) return fail("tls.key_file " + key_file);
  if (SSL_CTX_check_private_key(ctx) != 1) return fail("tls.key_file does not match tls.cert_file");
  return ctx;
}

}  // namespace herald::server
