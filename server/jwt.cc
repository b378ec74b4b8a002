// HMAC-signed compact JWS verification and signing. Strict parsing on purpose: every
// part is checked against one canonical form, so no two different token strings verify
// with the same signature. Nothing here logs or reads a clock.
#include "server/jwt.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <array>
#include <cmath>
#include <limits>
#include <new>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <utility>

#include "server/policy.h"

namespace herald::server {

using codec::Status;
using Json = nlohmann::json;

struct detail::JwtMac {
  EVP_MAC* mac = nullptr;
  std::string digest;  // OpenSSL digest name: "SHA256", "SHA384", "SHA512"
  size_t size = 0;     // MAC length in bytes
  JwtMac() = default;
  JwtMac(const JwtMac&) = delete;
  JwtMac& operator=(const JwtMac&) = delete;
  ~JwtMac() { EVP_MAC_free(mac); }
};

namespace {

constexpr size_t kMaxSubBytes = 128;
constexpr int kMaxJsonDepth = 32;
// 9999-12-31T23:59:59Z: far enough for any real token, small enough that date ± leeway
// and date * 1000 (AuthOk.expires_at_ms) never overflow int64.
constexpr int64_t kMaxNumericDate = 253402300799;

// --- base64url (RFC 4648 §5), unpadded -------------------------------------------------

constexpr char kB64Alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

constexpr std::array<int8_t, 256> make_b64_table() {
  std::array<int8_t, 256> t{};
  for (auto& v : t) v = -1;
  for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(kB64Alphabet[i])] = static_cast<int8_t>(i);
  return t;
}
constexpr std::array<int8_t, 256> kB64Table = make_b64_table();

std::string b64url_encode(const unsigned char* p, size_t n) {
  std::string s;
  s.reserve((n * 4 + 2) / 3);
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    const uint32_t v = (uint32_t{p[i]} << 16) | (uint32_t{p[i + 1]} << 8) | p[i + 2];
    s += kB64Alphabet[(v >> 18) & 63];
    s += kB64Alphabet[(v >> 12) & 63];
    s += kB64Alphabet[(v >> 6) & 63];
    s += kB64Alphabet[v & 63];
  }
  if (n - i == 1) {
    const uint32_t v = uint32_t{p[i]} << 16;
    s += kB64Alphabet[(v >> 18) & 63];
    s += kB64Alphabet[(v >> 12) & 63];
  } else if (n - i == 2) {
    const uint32_t v = (uint32_t{p[i]} << 16) | (uint32_t{p[i + 1]} << 8);
    s += kB64Alphabet[(v >> 18) & 63];
    s += kB64Alphabet[(v >> 12) & 63];
    s += kB64Alphabet[(v >> 6) & 63];
  }
  return s;
}

std::string b64url_encode(std::string_view s) {
  return b64url_encode(reinterpret_cast<const unsigned char*>(s.data()), s.size());
}

// Strict decode: only [A-Za-z0-9_-], no '=' padding, no whitespace, and the unused low
// bits of the last character must be zero. Without that last rule "xQ" and "xR" would
// both decode to the same byte, and a token could be altered without touching its MAC.
bool b64url_decode(std::string_view in, std::string& out) {
  if (in.size() % 4 == 1) return false;  // 6 bits cannot end a byte
  out.clear();
  out.reserve(in.size() / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (const char c : in) {
    const int8_t v = kB64Table[static_cast<unsigned char>(c)];
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  // 2 or 4 bits left over (length 2 or 3 mod 4) must be zero to be canonical.
  return (acc & ((1u << bits) - 1)) == 0;
}

// --- JSON --------------------------------------------------------------------------------

// Validating SAX pass run before building the DOM: rejects duplicate member names
// (RFC 7515 §5.2 allows "reject or last wins"; a verifier and the service that minted
// the token could disagree on which one wins, so we reject) and nesting deeper than
// kMaxJsonDepth. Builds nothing.
class JsonShapeCheck final : public nlohmann::json_sax<Json> {
 public:
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return false; }  // never produced by the JSON parser
  bool start_object(std::size_t) override {
    keys_.emplace_back();
    return ++depth_ <= kMaxJsonDepth;
  }
  // A key always belongs to the innermost open object: arrays have no keys.
  bool key(string_t& k) override { return !keys_.empty() && keys_.back().insert(k).second; }
  bool end_object() override {
    keys_.pop_back();
    --depth_;
    return true;
  }
  bool start_array(std::size_t) override { return ++depth_ <= kMaxJsonDepth; }
  bool end_array() override {
    --depth_;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

 private:
  std::vector<std::set<std::string>> keys_;
  int depth_ = 0;
};

// Parses `text` as one JSON object (strict RFC 8259, UTF-8, nothing after it).
bool parse_object(std::string_view text, Json& out) {
  JsonShapeCheck check;
  if (!Json::sax_parse(text.begin(), text.end(), &check, Json::input_format_t::json, true)) {
    return false;
  }
  out = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  return out.is_object();
}

bool iequals_ascii(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

enum class Claim { kAbsent, kOk, kBad };

// A NumericDate (RFC 7519 §2): integer or finite float (floored) in [0, kMaxNumericDate].
Claim read_date(const Json& obj, const char* name, int64_t& out) {
  const auto it = obj.find(name);
  if (it == obj.end()) return Claim::kAbsent;
  if (it->is_number_unsigned()) {
    const auto v = it->get<uint64_t>();
    if (v > static_cast<uint64_t>(kMaxNumericDate)) return Claim::kBad;
    out = static_cast<int64_t>(v);
    return Claim::kOk;
  }
  if (it->is_number_integer()) {  // signed: only negative values get here
    const auto v = it->get<int64_t>();
    if (v < 0 || v > kMaxNumericDate) return Claim::kBad;
    out = v;
    return Claim::kOk;
  }
  if (it->is_number_float()) {
    const double d = it->get<double>();
    if (!std::isfinite(d) || d < 0 || d > static_cast<double>(kMaxNumericDate)) return Claim::kBad;
    out = static_cast<int64_t>(std::floor(d));
    return Claim::kOk;
  }
  return Claim::kBad;
}

Claim read_string(const Json& obj, const char* name, std::string& out) {
  const auto it = obj.find(name);
  if (it == obj.end()) return Claim::kAbsent;
  if (!it->is_string()) return Claim::kBad;
  out = it->get<std::string>();
  return Claim::kOk;
}

int64_t sat_add(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
  return r;
}

// --- HMAC --------------------------------------------------------------------------------

// "HS256" -> ("SHA256", 32), ...; false for anything else.
bool hmac_digest(std::string_view alg, std::string& digest, size_t& size) {
  if (alg == "HS256") {
    digest = "SHA256";
    size = 32;
  } else if (alg == "HS384") {
    digest = "SHA384";
    size = 48;
  } else if (alg == "HS512") {
    digest = "SHA512";
    size = 64;
  } else {
    return false;
  }
  return true;
}

// MAC of `data` into `out` (exactly mac.size bytes). False on an OpenSSL failure; the
// thread's OpenSSL error queue is cleared then, so a later SSL_get_error() on this
// thread (the TLS code shares it) does not see our leftovers.
bool compute_mac(const detail::JwtMac& mac, std::string_view key, std::string_view data,
                 unsigned char* out) {
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac.mac);
  bool ok = ctx != nullptr;
  if (ok) {
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>(mac.digest.c_str()), 0),
        OSSL_PARAM_construct_end()};
    size_t len = 0;
    ok = EVP_MAC_init(ctx, reinterpret_cast<const unsigned char*>(key.data()), key.size(), params) == 1 &&
         EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1 &&
         EVP_MAC_final(ctx, out, &len, mac.size) == 1 && len == mac.size;
  }
  EVP_MAC_CTX_free(ctx);
  if (!ok) ERR_clear_error();
  return ok;
}

std::shared_ptr<const detail::JwtMac> make_mac(const JwtSettings& s) {
  auto mac = std::make_shared<detail::JwtMac>();
  if (!hmac_digest(s.algorithm, mac->digest, mac->size)) {
    throw std::invalid_argument("jwt: algorithm must be HS256, HS384 or HS512, not \"" + s.algorithm + "\"");
  }
  if (s.secret.empty()) throw std::invalid_argument("jwt: the HMAC secret is empty");
  // Fetched once: EVP_MAC objects are immutable and may be shared by threads, and a
  // fetch per token would take OpenSSL's method-store lock on every Auth.
  mac->mac = EVP_MAC_fetch(nullptr, OSSL_MAC_NAME_HMAC, nullptr);
  if (mac->mac == nullptr) {
    ERR_clear_error();
    throw std::runtime_error("jwt: OpenSSL has no HMAC implementation");
  }
  return mac;
}

Status fail(std::string* reason, const char* text, Status s = Status::kAuthFailed) {
  if (reason != nullptr) *reason = text;
  return s;
}

Status verify_token(const JwtSettings& settings, const detail::JwtMac& mac, std::string_view token,
                    int64_t now_s, TokenClaims& out, std::string* reason) {
  if (token.size() > settings.max_token_bytes) return fail(reason, "token too long");

  const size_t dot1 = token.find('.');
  const size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return fail(reason, "token is not three dot-separated parts");
  }
  const std::string_view header_b64 = token.substr(0, dot1);
  const std::string_view payload_b64 = token.substr(dot1 + 1, dot2 - dot1 - 1);
  const std::string_view sig_b64 = token.substr(dot2 + 1);

  // 1. Header: only alg/typ/crit are looked at before the signature is checked.
  std::string buf;
  Json header;
  if (!b64url_decode(header_b64, buf)) return fail(reason, "header is not base64url");
  if (!parse_object(buf, header)) return fail(reason, "header is not a JSON object");
  const auto alg = header.find("alg");
  if (alg == header.end()) return fail(reason, "alg missing");
  if (!alg->is_string()) return fail(reason, "alg is not a string");
  const auto& alg_name = alg->get_ref<const std::string&>();
  if (iequals_ascii(alg_name, "none")) return fail(reason, "alg none rejected");
  // Exact match with the configured algorithm: the token never chooses the algorithm.
  if (alg_name != settings.algorithm) return fail(reason, "algorithm not allowed");
  if (const auto typ = header.find("typ"); typ != header.end()) {
    if (!typ->is_string() || !iequals_ascii(typ->get_ref<const std::string&>(), "JWT")) {
      return fail(reason, "typ is not JWT");
    }
  }
  // We implement no extensions, so any critical one is one we do not understand (RFC 7515 §4.1.11).
  if (header.contains("crit")) return fail(reason, "crit not supported");

  // 2. Signature over the exact received bytes "header.payload", never a re-encoding.
  if (!b64url_decode(sig_b64, buf) || buf.size() != mac.size) return fail(reason, "bad signature");
  std::array<unsigned char, EVP_MAX_MD_SIZE> expected{};
  if (!compute_mac(mac, settings.secret, token.substr(0, dot2), expected.data())) {
    return fail(reason, "MAC computation failed", Status::kInternal);
  }
  // CRYPTO_memcmp: constant time over the full MAC length, so timing does not reveal how
  // many leading bytes of a forged signature were right.
  if (CRYPTO_memcmp(expected.data(), buf.data(), mac.size) != 0) return fail(reason, "bad signature");

  // 3. Claims, now that they are authentic.
  Json payload;
  if (!b64url_decode(payload_b64, buf)) return fail(reason, "payload is not base64url");
  if (!parse_object(buf, payload)) return fail(reason, "payload is not a JSON object");

  TokenClaims c;
  bool has_exp = false;
  switch (read_date(payload, "exp", c.expires_at_s)) {
    case Claim::kBad: return fail(reason, "invalid exp");
    case Claim::kOk:
      if (c.expires_at_s == 0) return fail(reason, "invalid exp");  // 0 means "no exp" in TokenClaims
      has_exp = true;
      break;
    case Claim::kAbsent: break;
  }
  const Claim nbf_state = read_date(payload, "nbf", c.not_before_s);
  if (nbf_state == Claim::kBad) return fail(reason, "invalid nbf");
  if (read_date(payload, "iat", c.issued_at_s) == Claim::kBad) return fail(reason, "invalid iat");

  std::string iss;
  const Claim iss_state = read_string(payload, "iss", iss);
  if (iss_state == Claim::kBad) return fail(reason, "invalid iss");
  if (!settings.issuer.empty() && (iss_state != Claim::kOk || iss != settings.issuer)) {
    return fail(reason, "wrong issuer");
  }

  if (const auto aud = payload.find("aud"); aud != payload.end()) {
    bool found = false;
    if (aud->is_string()) {
      found = aud->get_ref<const std::string&>() == settings.audience;
    } else if (aud->is_array()) {
      for (const auto& a : *aud) {
        if (!a.is_string()) return fail(reason, "invalid aud");
        found = found || a.get_ref<const std::string&>() == settings.audience;
      }
    } else {
      return fail(reason, "invalid aud");
    }
    if (settings.audience.empty()) return fail(reason, "unexpected audience");
    if (!found) return fail(reason, "wrong audience");
  } else if (!settings.audience.empty()) {
    return fail(reason, "wrong audience");
  }

  switch (read_string(payload, "sub", c.user_id)) {
    case Claim::kAbsent: return fail(reason, "sub missing");
    case Claim::kBad: return fail(reason, "invalid sub");
    case Claim::kOk: break;
  }
  if (c.user_id.empty()) return fail(reason, "sub missing");
  if (c.user_id.size() > kMaxSubBytes) return fail(reason, "invalid sub");
  std::string personal;
  personal.reserve(kUserNamespace.size() + 1 + c.user_id.size());
  personal.append(kUserNamespace).append(":").append(c.user_id);
  if (!valid_channel_name(personal)) return fail(reason, "invalid sub");

  if (const auto ch = payload.find("channels"); ch != payload.end()) {
    if (!ch->is_array()) return fail(reason, "invalid channels");
    c.channels.reserve(ch->size());
    for (const auto& g : *ch) {
      if (!g.is_string() || !valid_channel_name(g.get_ref<const std::string&>(), true)) {
        return fail(reason, "invalid channel grant");
      }
      c.channels.push_back(g.get<std::string>());
    }
  }
  if (const auto pub = payload.find("publish"); pub != payload.end()) {
    if (!pub->is_boolean()) return fail(reason, "invalid publish");
    c.publish = pub->get<bool>();
  }
  if (read_string(payload, "jti", c.token_id) == Claim::kBad) return fail(reason, "invalid jti");

  if (nbf_state == Claim::kOk && c.not_before_s > sat_add(now_s, settings.leeway_s)) {
    return fail(reason, "nbf in the future");
  }
  // Expiry last: kTokenExpired promises that nothing but the time is wrong with the token.
  if (has_exp && sat_add(c.expires_at_s, settings.leeway_s) <= now_s) {
    out = std::move(c);
    return fail(reason, "token expired", Status::kTokenExpired);
  }
  out = std::move(c);
  return Status::kOk;
}

}  // namespace

JwtVerifier::JwtVerifier(JwtSettings settings) : settings_(std::move(settings)), mac_(make_mac(settings_)) {
  if (settings_.leeway_s < 0) throw std::invalid_argument("jwt: leeway must not be negative");
}

Status JwtVerifier::verify(std::string_view token, int64_t now_s, TokenClaims& out,
                           std::string* reason) const noexcept {
  try {
    return verify_token(settings_, *mac_, token, now_s, out, reason);
  } catch (...) {
    // Only allocation failures can get here (JSON parsing runs without exceptions).
    return Status::kInternal;
  }
}

bool token_grants(const TokenClaims& claims, std::string_view channel) noexcept {
  return token_grants(claims.channels, channel);
}

bool token_grants(std::span<const std::string> grants, std::string_view channel) noexcept {
  for (const auto& g : grants) {
    if (!g.empty() && g.back() == '*') {
      if (channel.starts_with(std::string_view(g).substr(0, g.size() - 1))) return true;
    } else if (g == channel) {
      return true;
    }
  }
  return false;
}

std::string sign_token(const Json& claims, const JwtSettings& settings) {
  if (!claims.is_object()) throw std::invalid_argument("jwt: claims must be a JSON object");
  const auto mac = make_mac(settings);
  const Json header = {{"alg", settings.algorithm}, {"typ", "JWT"}};
  std::string token = b64url_encode(header.dump());
  token += '.';
  token += b64url_encode(claims.dump());
  std::array<unsigned char, EVP_MAX_MD_SIZE> sig{};
  if (!compute_mac(*mac, settings.secret, token, sig.data())) throw std::runtime_error("jwt: HMAC failed");
  token += '.';
  token += b64url_encode(sig.data(), mac->size);
  return token;
}

}  // namespace herald::server
