// Development tokens for `herald token`: HS256 JWTs with the claims heraldd reads
// (server/jwt.h: sub, exp, iat, channels, publish). Owns signing only; never verifies.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace herald::cli {

struct TokenRequest {
  std::string user;                   // "sub"
  int64_t ttl_s = 3600;               // "exp" = now + ttl_s; 0 = no "exp" (never expires)
  std::vector<std::string> channels;  // "channels" grants (exact names or "prefix*")
  bool publish = false;               // "publish"
};

// The compact JWS (header.payload.signature). Throws std::runtime_error if OpenSSL fails
// or the secret is empty.
std::string mint_token(const TokenRequest& request, const std::string& secret, int64_t now_s);

// base64url without padding (RFC 7515 §2); with `standard`, the RFC 4648 alphabet (+/)
// with padding, as the HTTP API's payload_base64 takes.
std::string base64url(const std::string& bytes, bool standard = false);

}  // namespace herald::cli
