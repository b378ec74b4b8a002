// Token verifier for Auth/Refresh: compact JWS (RFC 7515/7519) signed with HMAC
// (HS256/HS384/HS512). Pure function of (token, time, settings): no I/O, no logging,
// no clock; one algorithm per verifier, never chosen by the token.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "codec/status.h"

namespace herald::server {

namespace detail {
struct JwtMac;  // jwt.cc: the fetched OpenSSL HMAC implementation and its digest
}  // namespace detail

struct JwtSettings {
  std::string secret;               // HMAC key (raw bytes); must not be empty
  std::string algorithm = "HS256";  // the ONLY accepted "alg": HS256, HS384 or HS512
  std::string issuer;               // when non-empty, "iss" must equal it
  // When non-empty, "aud" (a string or an array of strings) must contain it. When empty,
  // a token that carries "aud" at all is rejected (RFC 7519 §4.1.3: it was minted for
  // an audience this server does not claim to be).
  std::string audience;
  int64_t leeway_s = 30;            // clock-skew allowance for exp and nbf, >= 0
  size_t max_token_bytes = 8192;    // longer tokens are rejected before any parsing
};

// What a verified token says. Only filled by JwtVerifier::verify.
struct TokenClaims {
  // "sub": non-empty, at most 128 bytes, and "user:" + sub is a valid channel name
  // (policy.h valid_channel_name without patterns), so it never holds '*' or spaces.
  std::string user_id;
  // "exp" in Unix seconds; 0 = the token has no "exp" and never expires (such tokens
  // are accepted: whoever holds the secret decides lifetimes). A present "exp" is
  // always >= 1.
  int64_t expires_at_s = 0;
  int64_t not_before_s = 0;  // "nbf", 0 = absent
  int64_t issued_at_s = 0;   // "iat", 0 = absent (informative only, not checked)
  // "channels": grants, each an exact channel name or a prefix pattern ending in '*'
  // (valid_channel_name(grant, true)). Absent = no grants.
  std::vector<std::string> channels;
  bool publish = false;  // "publish": may send Publish frames (subject to namespace rules)
  std::string token_id;  // "jti", "" = absent
};

class JwtVerifier {
 public:
  // Throws std::invalid_argument (start-up only) when settings.algorithm is not one of
  // HS256/HS384/HS512, the secret is empty, or leeway_s is negative; throws
  // std::runtime_error if OpenSSL has no HMAC implementation.
  explicit JwtVerifier(JwtSettings settings);

  // Verifies a compact JWS token at wall-clock time `now_s` (Unix seconds).
  // kOk: signature valid and every claim acceptable; `out` is replaced.
  // kTokenExpired: signature and every other claim valid, but exp + leeway <= now_s;
  //   `out` is replaced too (so callers can log whose token it was).
  // kInternal: OpenSSL or memory failure, never caused by the token; `out` untouched.
  // kAuthFailed: anything else; `out` is left untouched. That covers: longer than
  //   max_token_bytes; not exactly three '.'-separated parts; a part that is not strict
  //   unpadded base64url ('=' padding, characters outside [A-Za-z0-9_-], a length of 1
  //   mod 4, non-zero unused trailing bits); header or payload not a JSON object (or
  //   with duplicate keys, invalid UTF-8, nesting deeper than 32); "alg" missing, not a
  //   string, "none" in any case, or not exactly settings.algorithm; "typ" present and
  //   not "JWT" (case-insensitive); "crit" present; a signature that is not the full
  //   HMAC of the received header.payload bytes (compared in constant time); a claim of
  //   the wrong JSON type; a NumericDate that is negative, not finite, above 9999-12-31
  //   or (exp) zero; nbf > now_s + leeway; iss or aud mismatch; sub missing, empty,
  //   longer than 128 bytes or not usable in a channel name; a grant that is not a
  //   valid channel pattern.
  // The signature is checked before any claim is read: until then only the header's
  // alg/typ/crit are looked at. Unknown header parameters and claims are ignored.
  // `reason` (optional) receives a short text ("alg none rejected", "bad signature",
  // "token expired", "nbf in the future", "wrong audience", ...) for logs and Error
  // texts; it never contains any part of the token. It is not touched on kOk.
  // Thread-safe: const, no shared mutable state; any thread may call concurrently.
  codec::Status verify(std::string_view token, int64_t now_s, TokenClaims& out,
                       std::string* reason = nullptr) const noexcept;

  const JwtSettings& settings() const noexcept { return settings_; }

 private:
  JwtSettings settings_;
  std::shared_ptr<const detail::JwtMac> mac_;  // immutable, shared by copies
};

// True if a grant in claims.channels equals `channel`, or is "prefix*" and `channel`
// starts with prefix ("*" alone grants every channel). It does not validate `channel`
// and does not apply the personal-channel rule ("user:<id>" is only ever readable by
// <id>): callers check both.
bool token_grants(const TokenClaims& claims, std::string_view channel) noexcept;
// The same for a list of grants kept apart from their token (a session keeps only these).
bool token_grants(std::span<const std::string> grants, std::string_view channel) noexcept;

// Signs `claims` (must be a JSON object) with settings.algorithm and settings.secret,
// header {"alg":...,"typ":"JWT"}: for tests, the `herald token` CLI and development.
// No claim is added or checked. Throws std::invalid_argument for a non-object, an
// unsupported algorithm or an empty secret; nlohmann::json::type_error for strings
// that are not valid UTF-8; std::runtime_error if OpenSSL fails.
std::string sign_token(const nlohmann::json& claims, const JwtSettings& settings);

}  // namespace herald::server
