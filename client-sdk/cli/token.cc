// mint_token: JSON claims with nlohmann::json, HMAC-SHA256 with OpenSSL.
#include "client-sdk/cli/token.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

namespace herald::cli {

std::string base64url(const std::string& bytes, bool standard) {
  const char* kAlphabet = standard ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                                   : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  const auto b = [&](size_t k) { return static_cast<uint32_t>(static_cast<uint8_t>(bytes[k])); };
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = (b(i) << 16) | (b(i + 1) << 8) | b(i + 2);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (bytes.size() - i == 1) {
    const uint32_t v = b(i) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    if (standard) out += "==";
  } else if (bytes.size() - i == 2) {
    const uint32_t v = (b(i) << 16) | (b(i + 1) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    if (standard) out += '=';
  }
  return out;
}

std::string mint_token(const TokenRequest& r, const std::string& secret, int64_t now_s) {
  if (secret.empty()) throw std::runtime_error("the secret is empty");
  nlohmann::json claims = {{"sub", r.user}, {"iat", now_s}};
  if (r.ttl_s > 0) claims["exp"] = now_s + r.ttl_s;
  if (!r.channels.empty()) claims["channels"] = r.channels;
  if (r.publish) claims["publish"] = true;
  const std::string signing_input =
      base64url(R"({"alg":"HS256","typ":"JWT"})") + "." + base64url(claims.dump());
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(), mac, &len) == nullptr) {
    throw std::runtime_error("HMAC-SHA256 failed");
  }
  return signing_input + "." + base64url(std::string(reinterpret_cast<const char*>(mac), len));
}

}  // namespace herald::cli
