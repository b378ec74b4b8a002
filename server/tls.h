// TLS server context: OpenSSL 3, TLS 1.2 and 1.3 only, Mozilla "intermediate"
// cipher list, certificate and key from the config. Start-up only.
#pragma once

#include <openssl/ssl.h>

#include <string>

namespace herald::server {

// Builds the SSL_CTX; returns null and sets `error` (naming the file or the
// OpenSSL reason) on failure. The caller frees it with SSL_CTX_free.
SSL_CTX* make_tls_context(const std::string& cert_file, const std::string& key_file, std::string& error);

// The command that makes a development certificate for localhost (docs and --help).
inline constexpr const char* kDevCertCommand =
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 "
    "-keyout dev-key.pem -out dev-cert.pem -subj /CN=localhost "
    "-addext subjectAltName=DNS:localhost,IP:127.0.0.1";

}  // namespace herald::server
