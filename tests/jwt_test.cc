// Token verifier (server/jwt.h): interop with PyJWT and RFC 7515's example, every
// rejection rule with its status and reason, bit flips at every position, grants.
// Crafted tokens are signed here with OpenSSL's one-shot HMAC() and a test-local
// base64url, independent of the code under test.
#include "server/jwt.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <atomic>
#include <ostream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace herald::codec {
// gtest prints statuses by name.
void PrintTo(Status s, std::ostream* os) { *os << to_string(s); }
}  // namespace herald::codec

namespace herald::server {
namespace {

using codec::Status;
using Json = nlohmann::json;

constexpr int64_t kNow = 1'700'000'000;
const std::string kSecret = "test-secret-0123456789abcdef0123";

// --- test-local base64url and HMAC ----------------------------------------------------

std::string b64(std::string_view s) {
  static const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : s) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += a[(acc >> bits) & 63];
    }
  }
  if (bits > 0) out += a[(acc << (6 - bits)) & 63];
  return out;
}

std::string unb64(std::string_view s) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    int v = c >= 'A' && c <= 'Z'   ? c - 'A'
            : c >= 'a' && c <= 'z' ? c - 'a' + 26
            : c >= '0' && c <= '9' ? c - '0' + 52
            : c == '-'             ? 62
            : c == '_'             ? 63
                                   : -1;
    if (v < 0) throw std::invalid_argument("unb64");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return out;
}

const EVP_MD* md_for(std::string_view alg) {
  if (alg == "HS384") return EVP_sha384();
  if (alg == "HS512") return EVP_sha512();
  return EVP_sha256();
}

std::string hmac(std::string_view alg, std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(md_for(alg), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), out, &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

// Signs already-encoded parts exactly as given (padding, odd characters and all).
std::string sign_raw(std::string_view h_enc, std::string_view p_enc, std::string_view alg = "HS256",
                     std::string_view key = kSecret) {
  std::string input = std::string(h_enc) + "." + std::string(p_enc);
  return input + "." + b64(hmac(alg, key, input));
}

std::string craft(std::string_view header_json, std::string_view payload_json, std::string_view alg = "HS256",
                  std::string_view key = kSecret) {
  return sign_raw(b64(header_json), b64(payload_json), alg, key);
}

struct Parts {
  std::string h, p, s;
};
Parts split(const std::string& t) {
  const size_t a = t.find('.');
  const size_t b = t.find('.', a + 1);
  return {t.substr(0, a), t.substr(a + 1, b - a - 1), t.substr(b + 1)};
}
std::string join(const Parts& p) { return p.h + "." + p.p + "." + p.s; }

// --- fixture ---------------------------------------------------------------------------

JwtSettings test_settings(std::string alg = "HS256") {
  JwtSettings s;
  s.secret = kSecret;
  s.algorithm = std::move(alg);
  s.issuer = "herald-test";
  s.audience = "heraldd";
  return s;
}

Json good_claims() {
  return Json{{"sub", "alice"},  {"exp", kNow + 3600},        {"iat", kNow - 10},
              {"iss", "herald-test"}, {"aud", "heraldd"}, {"channels", Json::array({"news", "trade:*"})},
              {"publish", true}, {"jti", "tok-1"}};
}

const char* kHeader256 = R"({"alg":"HS256","typ":"JWT"})";

class Jwt : public ::testing::Test {
 protected:
  JwtVerifier v_{test_settings()};

  Status check(std::string_view token, std::string* reason = nullptr, int64_t now = kNow) {
    TokenClaims c;
    return v_.verify(token, now, c, reason);
  }
  // Expects kAuthFailed with `why` (or any reason when empty).
  void expect_fail(std::string_view token, std::string_view why, int64_t now = kNow) {
    std::string reason;
    EXPECT_EQ(check(token, &reason, now), Status::kAuthFailed) << "reason: " << reason;
    if (!why.empty()) {
      EXPECT_EQ(reason, why);
    }
  }
  // A token with the standard header and good_claims() patched by `patch`.
  std::string with_claims(const Json& patch) {
    Json c = good_claims();
    for (auto it = patch.begin(); it != patch.end(); ++it) {
      if (it->is_null() && it.key().rfind("-", 0) == 0) {
        c.erase(it.key().substr(1));  // "-name": null removes a claim
      } else {
        c[it.key()] = *it;
      }
    }
    return craft(kHeader256, c.dump());
  }
};

// --- valid tokens ----------------------------------------------------------------------

TEST_F(Jwt, PyJwtTokensVerifyForAllThreeAlgorithms) {
  // /usr/bin/python3: jwt.encode(claims, "py-secret-0123456789abcdef0123456789abcdef", algorithm=a), PyJWT 2.6.0.
  const struct {
    const char* alg;
    const char* token;
  } cases[] = {
      {"HS256",
       "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MjAwMDAwMDAwMCwiaWF0IjoxNzAwMDAwMDAwLCJjaGFubm"
       "VscyI6WyJuZXdzIiwidHJhZGU6KiJdLCJwdWJsaXNoIjp0cnVlLCJqdGkiOiJ0LTEiLCJpc3MiOiJoZXJhbGQtdGVzdCIsImF1ZCI6ImhlcmFs"
       "ZGQifQ.wDO88NPslK72BBVMhFsdnTkBnU4t7HRpcXiNDK41YJ8"},
      {"HS384",
       "eyJhbGciOiJIUzM4NCIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MjAwMDAwMDAwMCwiaWF0IjoxNzAwMDAwMDAwLCJjaGFubm"
       "VscyI6WyJuZXdzIiwidHJhZGU6KiJdLCJwdWJsaXNoIjp0cnVlLCJqdGkiOiJ0LTEiLCJpc3MiOiJoZXJhbGQtdGVzdCIsImF1ZCI6ImhlcmFs"
       "ZGQifQ.5L8KgtYtULKU2sOXI2Ro5rdS2dvrZSzUokdl0qnMCSjUHnckwFdhfUufp6P1pAzT"},
      {"HS512",
       "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MjAwMDAwMDAwMCwiaWF0IjoxNzAwMDAwMDAwLCJjaGFubm"
       "VscyI6WyJuZXdzIiwidHJhZGU6KiJdLCJwdWJsaXNoIjp0cnVlLCJqdGkiOiJ0LTEiLCJpc3MiOiJoZXJhbGQtdGVzdCIsImF1ZCI6ImhlcmFs"
       "ZGQifQ.bruUO4kXkF6RkA9H7nRyKjmCowBRuYjfxXnjbwIsj6eYbmLBuQBLTb6oWYnTYisHLKYPo0geBRSmCSlLbI-Oqw"},
  };
  for (const auto& tc : cases) {
    SCOPED_TRACE(tc.alg);
    JwtSettings s = test_settings(tc.alg);
    s.secret = "py-secret-0123456789abcdef0123456789abcdef";
    const JwtVerifier v(s);
    TokenClaims c;
    std::string reason;
    ASSERT_EQ(v.verify(tc.token, kNow, c, &reason), Status::kOk) << reason;
    EXPECT_EQ(c.user_id, "alice");
    EXPECT_EQ(c.expires_at_s, 2000000000);
    EXPECT_EQ(c.issued_at_s, 1700000000);
    EXPECT_EQ(c.not_before_s, 0);
    EXPECT_EQ(c.channels, (std::vector<std::string>{"news", "trade:*"}));
    EXPECT_TRUE(c.publish);
    EXPECT_EQ(c.token_id, "t-1");
    // The same token under a verifier for another algorithm is refused.
    const JwtVerifier other(test_settings(std::string_view(tc.alg) == "HS256" ? "HS512" : "HS256"));
    EXPECT_EQ(other.verify(tc.token, kNow, c, &reason), Status::kAuthFailed);
    EXPECT_EQ(reason, "algorithm not allowed");
  }
}

TEST_F(Jwt, Rfc7515ExampleSignatureVerifies) {
  // RFC 7515 A.1 (HS256, JWK key below, CRLFs inside the JSON). It has no "sub", so the
  // verifier must get past the signature and stop at the claims.
  const std::string key(
      "\x03\x23\x35\x4b\x2b\x0f\xa5\xbc\x83\x7e\x06\x65\x77\x7b\xa6\x8f\x5a\xb3\x28\xe6\xf0\x54\xc9\x28\xa9\x0f\x84\xb2"
      "\xd2\x50\x2e\xbf\xd3\xfb\x5a\x92\xd2\x06\x47\xef\x96\x8a\xb4\xc3\x77\x62\x3d\x22\x3d\x2e\x21\x72\x05\x2e\x4f\x08"
      "\xc0\xcd\x9a\xf5\x67\xd0\x80\xa3",
      64);
  const std::string token =
      "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLm"
      "NvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
  JwtSettings s;
  s.secret = key;
  s.issuer = "joe";
  const JwtVerifier v(s);
  TokenClaims c;
  std::string reason;
  EXPECT_EQ(v.verify(token, 1300819000, c, &reason), Status::kAuthFailed);
  EXPECT_EQ(reason, "sub missing");
  // With one key bit different it is the signature that fails.
  s.secret[0] ^= 1;
  EXPECT_EQ(JwtVerifier(s).verify(token, 1300819000, c, &reason), Status::kAuthFailed);
  EXPECT_EQ(reason, "bad signature");
}

TEST_F(Jwt, SignVerifyRoundTripAllAlgorithms) {
  for (const char* alg : {"HS256", "HS384", "HS512"}) {
    SCOPED_TRACE(alg);
    const JwtSettings s = test_settings(alg);
    const std::string token = sign_token(good_claims(), s);
    // Header as documented, and the MAC agrees with the independent HMAC().
    const Parts p = split(token);
    EXPECT_EQ(Json::parse(unb64(p.h)), (Json{{"alg", alg}, {"typ", "JWT"}}));
    EXPECT_EQ(unb64(p.s), hmac(alg, kSecret, p.h + "." + p.p));
    TokenClaims c;
    std::string reason;
    ASSERT_EQ(JwtVerifier(s).verify(token, kNow, c, &reason), Status::kOk) << reason;
    EXPECT_EQ(c.user_id, "alice");
    EXPECT_EQ(c.expires_at_s, kNow + 3600);
    EXPECT_EQ(c.issued_at_s, kNow - 10);
    EXPECT_EQ(c.channels, (std::vector<std::string>{"news", "trade:*"}));
    EXPECT_TRUE(c.publish);
    EXPECT_EQ(c.token_id, "tok-1");
  }
}

TEST_F(Jwt, MinimalTokenAndDefaults) {
  JwtSettings s;
  s.secret = kSecret;
  const JwtVerifier v(s);
  TokenClaims c;
  c.publish = true;
  c.channels = {"stale"};
  ASSERT_EQ(v.verify(sign_token(Json{{"sub", "bob"}}, s), kNow, c), Status::kOk);
  EXPECT_EQ(c.user_id, "bob");
  EXPECT_EQ(c.expires_at_s, 0);  // no exp: never expires
  EXPECT_EQ(c.not_before_s, 0);
  EXPECT_EQ(c.issued_at_s, 0);
  EXPECT_TRUE(c.channels.empty());
  EXPECT_FALSE(c.publish);
  EXPECT_TRUE(c.token_id.empty());
}

TEST_F(Jwt, UnknownHeaderParametersAndClaimsAreIgnored) {
  Json c = good_claims();
  c["role"] = "admin";
  c["nested"] = {{"a", {1, 2, {{"b", nullptr}}}}};
  EXPECT_EQ(check(craft(R"({"alg":"HS256","typ":"JWT","kid":"k1","x":[1,{}]})", c.dump())), Status::kOk);
  EXPECT_EQ(check(craft(R"({"alg":"HS256"})", c.dump())), Status::kOk);               // no typ
  EXPECT_EQ(check(craft(R"({"typ":"jwt","alg":"HS256"})", c.dump())), Status::kOk);  // typ any case
  EXPECT_EQ(check(craft(" {\"alg\" : \"HS256\"}\r\n", c.dump(2))), Status::kOk);      // JSON whitespace
}

// --- algorithm ---------------------------------------------------------------------------

TEST_F(Jwt, AlgNoneRejectedInAnyCaseWithOrWithoutSignature) {
  const std::string payload = b64(good_claims().dump());
  for (const char* none : {"none", "None", "NONE", "nOnE"}) {
    SCOPED_TRACE(none);
    const std::string header = b64(Json{{"alg", none}, {"typ", "JWT"}}.dump());
    expect_fail(header + "." + payload + ".", "alg none rejected");
    // A "signature" that is even the correct HMAC of the content does not help.
    expect_fail(sign_raw(header, payload), "alg none rejected");
    expect_fail(header + "." + payload + ".c2lnbmF0dXJl", "alg none rejected");
  }
}

TEST_F(Jwt, AlgorithmIsNeverChosenByTheToken) {
  const std::string claims = good_claims().dump();
  // Signed with HS512 and the very same secret: still refused by an HS256 verifier.
  expect_fail(craft(R"({"alg":"HS512","typ":"JWT"})", claims, "HS512"), "algorithm not allowed");
  expect_fail(craft(R"({"alg":"HS384","typ":"JWT"})", claims, "HS384"), "algorithm not allowed");
  // Claims HS512 but carries an HS256 MAC.
  expect_fail(craft(R"({"alg":"HS512","typ":"JWT"})", claims, "HS256"), "algorithm not allowed");
  // Asymmetric algorithms (the classic "RS256 with the HMAC secret as public key" confusion).
  expect_fail(craft(R"({"alg":"RS256","typ":"JWT"})", claims), "algorithm not allowed");
  expect_fail(b64(R"({"alg":"RS256"})") + "." + b64(claims) + "." + b64(std::string(256, 'x')),
              "algorithm not allowed");
  expect_fail(craft(R"({"alg":"ES256"})", claims), "algorithm not allowed");
  // Only the exact spelling.
  expect_fail(craft(R"({"alg":"hs256"})", claims), "algorithm not allowed");
  expect_fail(craft(R"({"alg":"HS256 "})", claims), "algorithm not allowed");
  expect_fail(craft(R"({"alg":""})", claims), "algorithm not allowed");
  // Missing or not a string.
  expect_fail(craft(R"({"typ":"JWT"})", claims), "alg missing");
  expect_fail(craft(R"({"alg":null})", claims), "alg is not a string");
  expect_fail(craft(R"({"alg":["HS256"]})", claims), "alg is not a string");
  // Duplicate "alg" (a parser that keeps the first would see "none").
  expect_fail(craft(R"({"alg":"none","alg":"HS256"})", claims), "header is not a JSON object");
  expect_fail(craft(R"({"alg":"HS256","alg":"HS256"})", claims), "header is not a JSON object");
}

TEST_F(Jwt, HeaderTypAndCrit) {
  const std::string claims = good_claims().dump();
  expect_fail(craft(R"({"alg":"HS256","typ":"JWS"})", claims), "typ is not JWT");
  expect_fail(craft(R"({"alg":"HS256","typ":"at+jwt"})", claims), "typ is not JWT");
  expect_fail(craft(R"({"alg":"HS256","typ":""})", claims), "typ is not JWT");
  expect_fail(craft(R"({"alg":"HS256","typ":1})", claims), "typ is not JWT");
  expect_fail(craft(R"({"alg":"HS256","crit":["exp"]})", claims), "crit not supported");
  expect_fail(craft(R"({"alg":"HS256","crit":[]})", claims), "crit not supported");
  expect_fail(craft(R"({"alg":"HS256","b64":false,"crit":["b64"]})", claims), "crit not supported");
}

TEST_F(Jwt, HeaderMustBeOneJsonObject) {
  const std::string claims = good_claims().dump();
  for (const char* h : {"not json", "", "[]", R"(["alg","HS256"])", "\"HS256\"", "null", "42",
                        R"({"alg":"HS256"} {})", R"({"alg":"HS256"}x)", R"({"alg":"HS256",})", R"({'alg':'HS256'})",
                        R"({"alg":"HS256" /* c */})", "{\"alg\":\"HS256\",\"k\":\"\xff\"}"}) {
    SCOPED_TRACE(h);
    expect_fail(craft(h, claims), "header is not a JSON object");
  }
}

// --- signature ---------------------------------------------------------------------------

TEST_F(Jwt, FlippedBitAnywhereIsRejected) {
  const std::string token = sign_token(good_claims(), test_settings());
  const Parts orig = split(token);
  ASSERT_EQ(check(token), Status::kOk);
  const std::string header = unb64(orig.h), payload = unb64(orig.p), sig = unb64(orig.s);
  ASSERT_EQ(sig.size(), 32u);
  for (size_t i = 0; i < header.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string h = header;
      h[i] = static_cast<char>(h[i] ^ (1 << bit));
      Parts p = orig;
      p.h = b64(h);
      std::string reason;
      EXPECT_EQ(check(join(p), &reason), Status::kAuthFailed) << "header byte " << i << " bit " << bit;
    }
  }
  for (size_t i = 0; i < payload.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string pl = payload;
      pl[i] = static_cast<char>(pl[i] ^ (1 << bit));
      Parts p = orig;
      p.p = b64(pl);
      std::string reason;
      EXPECT_EQ(check(join(p), &reason), Status::kAuthFailed) << "payload byte " << i << " bit " << bit;
      EXPECT_EQ(reason, "bad signature");
    }
  }
  for (size_t i = 0; i < sig.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string s = sig;
      s[i] = static_cast<char>(s[i] ^ (1 << bit));
      Parts p = orig;
      p.s = b64(s);
      std::string reason;
      EXPECT_EQ(check(join(p), &reason), Status::kAuthFailed) << "signature byte " << i << " bit " << bit;
      EXPECT_EQ(reason, "bad signature");
    }
  }
  // And at the text level: every character of the encoded token replaced by every other
  // byte value is refused (or, at most, is the same token).
  for (size_t i = 0; i < token.size(); ++i) {
    for (int c = 0; c < 256; ++c) {
      if (static_cast<char>(c) == token[i]) continue;
      std::string t = token;
      t[i] = static_cast<char>(c);
      ASSERT_NE(check(t), Status::kOk) << "position " << i << " value " << c;
    }
  }
}

TEST_F(Jwt, FullLengthMacComparison) {
  // The verifier compares the whole MAC (CRYPTO_memcmp over all of it): a signature that
  // is right in every byte but the last, or a truncated / extended one, is refused.
  const std::string token = sign_token(good_claims(), test_settings());
  Parts p = split(token);
  const std::string sig = unb64(p.s);
  std::string last = sig;
  last.back() = static_cast<char>(last.back() ^ 0x80);
  p.s = b64(last);
  expect_fail(join(p), "bad signature");
  for (size_t n : {size_t{0}, size_t{1}, size_t{16}, size_t{31}}) {
    p.s = b64(sig.substr(0, n));
    expect_fail(join(p), "bad signature");
  }
  p.s = b64(sig + '\0');
  expect_fail(join(p), "bad signature");
  p.s = b64(sig + sig);
  expect_fail(join(p), "bad signature");
  // Signed with a different secret.
  JwtSettings other = test_settings();
  other.secret = kSecret + "x";
  expect_fail(sign_token(good_claims(), other), "bad signature");
}

TEST_F(Jwt, ChangedPayloadWithOldSignature) {
  const Parts orig = split(sign_token(good_claims(), test_settings()));
  for (const Json& patch : {Json{{"sub", "mallory"}}, Json{{"publish", false}}, Json{{"exp", kNow + 7200}},
                            Json{{"channels", Json::array({"*"})}}}) {
    Json c = good_claims();
    c.update(patch);
    Parts p = orig;
    p.p = b64(c.dump());
    expect_fail(join(p), "bad signature");
  }
  // Same claims, different (but equivalent) JSON text: the MAC covers bytes, not meaning.
  Parts p = orig;
  p.p = b64(good_claims().dump(1));
  expect_fail(join(p), "bad signature");
  // Header re-encoded equivalently.
  p = orig;
  p.h = b64(R"({"typ":"JWT","alg":"HS256"})");
  expect_fail(join(p), "bad signature");
}

// --- structure and base64url ----------------------------------------------------------

TEST_F(Jwt, ExactlyThreeParts) {
  const std::string token = sign_token(good_claims(), test_settings());
  const Parts p = split(token);
  const char* why = "token is not three dot-separated parts";
  expect_fail("", why);
  expect_fail(".", why);
  expect_fail(p.h, why);
  expect_fail(p.h + "." + p.p, why);
  expect_fail(token + ".", why);
  expect_fail(token + "." + p.s, why);
  expect_fail(p.h + "." + p.p + "." + p.s + "." + p.s, why);
  expect_fail(p.h + ".." + p.p + "." + p.s, why);
  expect_fail("." + token, why);
  // Three parts but empty ones.
  expect_fail("..", "header is not a JSON object");
  expect_fail(p.h + ".." + p.s, "bad signature");
  expect_fail(p.h + "." + p.p + ".", "bad signature");
}

TEST_F(Jwt, PaddingRejectedInEveryPart) {
  // Parts whose unpadded length is 2 or 3 mod 4, so that '=' is exactly standard padding.
  const std::string h = b64(R"({"alg":"HS256","typ":"JWT"} )");
  ASSERT_EQ(h.size() % 4, 2u);
  Json c = good_claims();
  std::string pl = b64(c.dump());
  while (pl.size() % 4 == 0) {
    c["pad"] = c.value("pad", std::string()) + "x";
    pl = b64(c.dump());
  }
  const std::string token = sign_raw(h, pl);
  ASSERT_EQ(check(token), Status::kOk);
  expect_fail(sign_raw(h + "==", pl), "header is not base64url");
  expect_fail(sign_raw(h, pl + std::string(4 - pl.size() % 4, '=')), "payload is not base64url");
  expect_fail(token + "=", "bad signature");  // 43 chars of HS256 MAC + "=" = standard padding
  expect_fail(token + "==", "bad signature");
  expect_fail(sign_raw(h + "=", pl), "header is not base64url");
}

TEST_F(Jwt, NonAlphabetCharactersRejected) {
  const std::string h = b64(kHeader256);
  const std::string pl = b64(good_claims().dump());
  const Parts good = split(sign_raw(h, pl));
  ASSERT_EQ(check(join(good)), Status::kOk);
  for (const std::string b : {"+", "/", " ", "\n", "\t", "\r", "=", "\x80", "\xff", "~", "%", "*", "!"}) {
    SCOPED_TRACE(static_cast<int>(static_cast<unsigned char>(b[0])));
    std::string h2 = h, p2 = pl;
    h2[4] = b[0];
    p2[8] = b[0];
    expect_fail(sign_raw(h2, pl), "header is not base64url");
    expect_fail(sign_raw(h, p2), "payload is not base64url");
    Parts p = good;
    p.s[5] = b[0];
    expect_fail(join(p), "bad signature");
  }
  // A NUL in each part.
  for (int part = 0; part < 3; ++part) {
    Parts p = good;
    std::string& s = part == 0 ? p.h : part == 1 ? p.p : p.s;
    s[2] = '\0';
    EXPECT_EQ(check(join(p)), Status::kAuthFailed) << part;
  }
  // Standard base64 instead of base64url in the signature: find a MAC with '-' or '_'.
  for (int i = 0;; ++i) {
    Json c = good_claims();
    c["jti"] = std::to_string(i);
    const std::string t = craft(kHeader256, c.dump());
    Parts p = split(t);
    if (p.s.find_first_of("-_") == std::string::npos) continue;
    ASSERT_EQ(check(t), Status::kOk);
    for (char& ch : p.s) ch = ch == '-' ? '+' : ch == '_' ? '/' : ch;
    expect_fail(join(p), "bad signature");
    break;
  }
}

TEST_F(Jwt, NonCanonicalBase64urlRejected) {
  // Unused low bits of the last character must be zero; otherwise two strings decode to
  // the same bytes. The standard header is 27 bytes = 36 chars with no spare bits, so
  // pad it: 28 bytes = 38 chars (4 spare bits), 29 bytes = 39 chars (2 spare bits).
  for (const char* hj : {R"({"alg":"HS256","typ":"JWT"} )", R"({"alg":"HS256","typ":"JWT"}  )"}) {
    const std::string h = b64(hj);
    ASSERT_NE(h.size() % 4, 0u) << hj;
    std::string nc = h;
    nc.back() = static_cast<char>(nc.back() + 1);  // 'A'->'B', 'g'->'h', etc.: a low bit set
    ASSERT_EQ(unb64(nc), unb64(h));                // the lenient decoder sees the same bytes
    SCOPED_TRACE(hj);
    ASSERT_EQ(check(sign_raw(h, b64(good_claims().dump()))), Status::kOk);
    expect_fail(sign_raw(nc, b64(good_claims().dump())), "header is not base64url");
  }
  // Payload.
  Json c = good_claims();
  std::string pl = b64(c.dump());
  while (pl.size() % 4 == 0) {
    c["pad"] = c.value("pad", std::string()) + "x";
    pl = b64(c.dump());
  }
  std::string nc = pl;
  nc.back() = static_cast<char>(nc.back() + 1);
  ASSERT_EQ(unb64(nc), unb64(pl));
  const std::string h = b64(kHeader256);
  ASSERT_EQ(check(sign_raw(h, pl)), Status::kOk);
  expect_fail(sign_raw(h, nc), "payload is not base64url");
  // Signature: HS256 is 32 bytes = 43 chars with 2 spare bits.
  Parts p = split(sign_raw(h, pl));
  ASSERT_EQ(p.s.size(), 43u);
  std::string ns = p.s;
  ns.back() = static_cast<char>(ns.back() + 1);
  ASSERT_EQ(unb64(ns), unb64(p.s));
  p.s = ns;
  expect_fail(join(p), "bad signature");
  // Length 1 mod 4 is never valid.
  expect_fail(sign_raw(b64(kHeader256) + "A", pl), "header is not base64url");
}

TEST_F(Jwt, TooLongToken) {
  Json c = good_claims();
  c["pad"] = std::string(10 * 1024, 'x');
  const std::string token = craft(kHeader256, c.dump());
  ASSERT_GT(token.size(), 10000u);
  expect_fail(token, "token too long");
  expect_fail(std::string(10 * 1024, 'A'), "token too long");
  // The limit is inclusive and configurable; a big limit lets the same token through.
  JwtSettings s = test_settings();
  s.max_token_bytes = token.size();
  TokenClaims out;
  EXPECT_EQ(JwtVerifier(s).verify(token, kNow, out), Status::kOk);
  s.max_token_bytes = token.size() - 1;
  std::string reason;
  EXPECT_EQ(JwtVerifier(s).verify(token, kNow, out, &reason), Status::kAuthFailed);
  EXPECT_EQ(reason, "token too long");
}

// --- time --------------------------------------------------------------------------------

TEST_F(Jwt, ExpiryWithLeeway) {
  TokenClaims c;
  std::string reason;
  // Past beyond the 30 s leeway: kTokenExpired, and `out` still says whose it was.
  EXPECT_EQ(v_.verify(with_claims({{"exp", kNow - 31}}), kNow, c, &reason), Status::kTokenExpired);
  EXPECT_EQ(reason, "token expired");
  EXPECT_EQ(c.user_id, "alice");
  EXPECT_EQ(c.expires_at_s, kNow - 31);
  EXPECT_EQ(v_.verify(with_claims({{"exp", kNow - 3600}}), kNow, c, &reason), Status::kTokenExpired);
  EXPECT_EQ(v_.verify(with_claims({{"exp", 1}}), kNow, c, &reason), Status::kTokenExpired);
  // Boundary: exp + leeway <= now is expired.
  EXPECT_EQ(v_.verify(with_claims({{"exp", kNow - 30}}), kNow, c, &reason), Status::kTokenExpired);
  EXPECT_EQ(v_.verify(with_claims({{"exp", kNow - 29}}), kNow, c, &reason), Status::kOk) << reason;
  // Within leeway / in the future.
  EXPECT_EQ(v_.verify(with_claims({{"exp", kNow - 5}}), kNow, c, &reason), Status::kOk);
  EXPECT_EQ(v_.verify(with_claims({{"exp", kNow}}), kNow, c, &reason), Status::kOk);
  EXPECT_EQ(c.expires_at_s, kNow);
  // Leeway 0.
  JwtSettings s = test_settings();
  s.leeway_s = 0;
  const JwtVerifier strict(s);
  EXPECT_EQ(strict.verify(with_claims({{"exp", kNow}}), kNow, c), Status::kTokenExpired);
  EXPECT_EQ(strict.verify(with_claims({{"exp", kNow + 1}}), kNow, c), Status::kOk);
  // An expired token that is also wrong otherwise is kAuthFailed, not "just refresh".
  EXPECT_EQ(v_.verify(with_claims({{"exp", kNow - 100}, {"aud", "other"}}), kNow, c, &reason),
            Status::kAuthFailed);
  Parts p = split(with_claims({{"exp", kNow - 100}}));
  p.s = b64(std::string(32, 'x'));
  EXPECT_EQ(v_.verify(join(p), kNow, c, &reason), Status::kAuthFailed);
  EXPECT_EQ(reason, "bad signature");
}

TEST_F(Jwt, NotBeforeWithLeeway) {
  std::string reason;
  EXPECT_EQ(check(with_claims({{"nbf", kNow + 31}}), &reason), Status::kAuthFailed);
  EXPECT_EQ(reason, "nbf in the future");
  EXPECT_EQ(check(with_claims({{"nbf", kNow + 3600}}), &reason), Status::kAuthFailed);
  EXPECT_EQ(check(with_claims({{"nbf", kNow + 30}}), &reason), Status::kOk) << reason;
  EXPECT_EQ(check(with_claims({{"nbf", kNow + 5}})), Status::kOk);
  EXPECT_EQ(check(with_claims({{"nbf", kNow - 5}})), Status::kOk);
  EXPECT_EQ(check(with_claims({{"nbf", 0}})), Status::kOk);
  TokenClaims c;
  ASSERT_EQ(v_.verify(with_claims({{"nbf", kNow - 5}}), kNow, c), Status::kOk);
  EXPECT_EQ(c.not_before_s, kNow - 5);
}

TEST_F(Jwt, NumericDateRangeAndExtremeClocks) {
  expect_fail(with_claims({{"exp", 0}}), "invalid exp");
  expect_fail(with_claims({{"exp", -1}}), "invalid exp");
  expect_fail(with_claims({{"exp", 253402300800LL}}), "invalid exp");  // year 10000
  expect_fail(with_claims({{"exp", std::numeric_limits<int64_t>::max()}}), "invalid exp");
  expect_fail(with_claims({{"exp", std::numeric_limits<uint64_t>::max()}}), "invalid exp");
  expect_fail(with_claims({{"exp", 1e300}}), "invalid exp");
  expect_fail(with_claims({{"nbf", -1}}), "invalid nbf");
  expect_fail(with_claims({{"iat", -1}}), "invalid iat");
  EXPECT_EQ(check(with_claims({{"exp", 253402300799LL}})), Status::kOk);
  // Fractional NumericDates are allowed (RFC 7519 §2) and floored.
  TokenClaims c;
  ASSERT_EQ(v_.verify(with_claims({{"exp", static_cast<double>(kNow) + 100.75}}), kNow, c), Status::kOk);
  EXPECT_EQ(c.expires_at_s, kNow + 100);
  // Big exp +leeway and extreme clocks: no overflow, sensible answers.
  EXPECT_EQ(check(with_claims({{"exp", 253402300799LL}}), nullptr, std::numeric_limits<int64_t>::max()),
            Status::kTokenExpired);
  EXPECT_EQ(check(with_claims({}), nullptr, std::numeric_limits<int64_t>::min()), Status::kOk);
  EXPECT_EQ(check(with_claims({{"nbf", 0}}), nullptr, std::numeric_limits<int64_t>::min()), Status::kAuthFailed);
  EXPECT_EQ(check(with_claims({{"nbf", 0}, {"-exp", nullptr}}), nullptr, std::numeric_limits<int64_t>::max()),
            Status::kOk);
}

// --- issuer and audience ---------------------------------------------------------------

TEST_F(Jwt, IssuerAndAudience) {
  expect_fail(with_claims({{"iss", "someone-else"}}), "wrong issuer");
  expect_fail(with_claims({{"iss", "HERALD-TEST"}}), "wrong issuer");
  expect_fail(with_claims({{"-iss", nullptr}}), "wrong issuer");
  expect_fail(with_claims({{"iss", 1}}), "invalid iss");
  expect_fail(with_claims({{"aud", "other"}}), "wrong audience");
  expect_fail(with_claims({{"-aud", nullptr}}), "wrong audience");
  expect_fail(with_claims({{"aud", Json::array({"a", "b"})}}), "wrong audience");
  expect_fail(with_claims({{"aud", Json::array()}}), "wrong audience");
  expect_fail(with_claims({{"aud", Json::array({"heraldd", 1})}}), "invalid aud");
  expect_fail(with_claims({{"aud", 7}}), "invalid aud");
  expect_fail(with_claims({{"aud", Json::object({{"heraldd", true}})}}), "invalid aud");
  EXPECT_EQ(check(with_claims({{"aud", Json::array({"billing", "heraldd"})}})), Status::kOk);
  EXPECT_EQ(check(with_claims({{"aud", Json::array({"heraldd"})}})), Status::kOk);
  // A verifier without issuer/audience settings: iss is free (but typed), and a token
  // minted for some audience is refused, since we are not it (RFC 7519 §4.1.3).
  JwtSettings s;
  s.secret = kSecret;
  const JwtVerifier open(s);
  TokenClaims c;
  std::string reason;
  EXPECT_EQ(open.verify(with_claims({{"-aud", nullptr}, {"iss", "anyone"}}), kNow, c, &reason), Status::kOk);
  EXPECT_EQ(open.verify(with_claims({{"-aud", nullptr}, {"-iss", nullptr}}), kNow, c, &reason), Status::kOk);
  EXPECT_EQ(open.verify(with_claims({{"-aud", nullptr}, {"iss", 5}}), kNow, c, &reason), Status::kAuthFailed);
  EXPECT_EQ(reason, "invalid iss");
  EXPECT_EQ(open.verify(with_claims({}), kNow, c, &reason), Status::kAuthFailed);
  EXPECT_EQ(reason, "unexpected audience");
}

// --- subject -----------------------------------------------------------------------------

TEST_F(Jwt, Subject) {
  expect_fail(with_claims({{"-sub", nullptr}}), "sub missing");
  expect_fail(with_claims({{"sub", ""}}), "sub missing");
  for (const char* bad : {"al ice", " alice", "alice\n", "*", "alice*", "a*b", "ali\xc3\xa9", "a#b", "a?b", "a\\b"}) {
    SCOPED_TRACE(bad);
    expect_fail(with_claims({{"sub", bad}}), "invalid sub");
  }
  expect_fail(with_claims({{"sub", std::string("a\0b", 3)}}), "invalid sub");
  expect_fail(with_claims({{"sub", 42}}), "invalid sub");
  expect_fail(with_claims({{"sub", nullptr}}), "invalid sub");
  expect_fail(with_claims({{"sub", Json::array({"alice"})}}), "invalid sub");
  expect_fail(with_claims({{"sub", std::string(129, 'a')}}), "invalid sub");
  TokenClaims c;
  ASSERT_EQ(v_.verify(with_claims({{"sub", std::string(128, 'a')}}), kNow, c), Status::kOk);
  EXPECT_EQ(c.user_id, std::string(128, 'a'));
  for (const char* ok : {"a", "user-42", "a.b@example.com", "team/x", "x:y", "A_Z-0.9"}) {
    SCOPED_TRACE(ok);
    ASSERT_EQ(v_.verify(with_claims({{"sub", ok}}), kNow, c), Status::kOk);
    EXPECT_EQ(c.user_id, ok);
  }
}

// --- claim types -------------------------------------------------------------------------

TEST_F(Jwt, ClaimsOfTheWrongJsonType) {
  expect_fail(with_claims({{"exp", std::to_string(kNow + 3600)}}), "invalid exp");
  expect_fail(with_claims({{"exp", true}}), "invalid exp");
  expect_fail(with_claims({{"exp", nullptr}}), "invalid exp");
  expect_fail(with_claims({{"exp", Json::array({kNow + 3600})}}), "invalid exp");
  expect_fail(with_claims({{"nbf", "0"}}), "invalid nbf");
  expect_fail(with_claims({{"iat", "now"}}), "invalid iat");
  expect_fail(with_claims({{"channels", "news"}}), "invalid channels");
  expect_fail(with_claims({{"channels", Json::object({{"news", true}})}}), "invalid channels");
  expect_fail(with_claims({{"channels", nullptr}}), "invalid channels");
  expect_fail(with_claims({{"channels", Json::array({"news", 1})}}), "invalid channel grant");
  expect_fail(with_claims({{"channels", Json::array({Json::array({"news"})})}}), "invalid channel grant");
  expect_fail(with_claims({{"publish", "true"}}), "invalid publish");
  expect_fail(with_claims({{"publish", 1}}), "invalid publish");
  expect_fail(with_claims({{"publish", nullptr}}), "invalid publish");
  expect_fail(with_claims({{"jti", 7}}), "invalid jti");
}

TEST_F(Jwt, ChannelGrantsMustBeValidPatterns) {
  for (const char* bad : {"", "news feed", "a*b", "**", "*news", "trade:*:x", "caf\xc3\xa9", "a\tb"}) {
    SCOPED_TRACE(bad);
    expect_fail(with_claims({{"channels", Json::array({"news", bad})}}), "invalid channel grant");
  }
  expect_fail(with_claims({{"channels", Json::array({std::string(256, 'c')})}}), "invalid channel grant");
  TokenClaims c;
  ASSERT_EQ(v_.verify(with_claims({{"channels", Json::array({"*", "a:*", std::string(255, 'c'), "user:alice"})}}),
                      kNow, c),
            Status::kOk);
  EXPECT_EQ(c.channels.size(), 4u);
  ASSERT_EQ(v_.verify(with_claims({{"channels", Json::array()}, {"publish", false}}), kNow, c), Status::kOk);
  EXPECT_TRUE(c.channels.empty());
  EXPECT_FALSE(c.publish);
}

TEST_F(Jwt, PayloadMustBeOneStrictJsonObject) {
  for (const char* p : {"", "[]", "\"alice\"", "null", "not json", R"({"sub":"alice"} x)", R"({"sub":"alice",})",
                        R"({"sub":"alice","sub":"mallory"})", "{\"sub\":\"alice\",\"x\":\"\xc0\xaf\"}",
                        "{\"sub\":\"alice\",\"x\":\"\xed\xa0\x80\"}", R"({"sub":"alice","x":NaN})"}) {
    SCOPED_TRACE(p);
    expect_fail(craft(kHeader256, p), "payload is not a JSON object");
  }
  // Duplicate keys in nested objects count too; the same key in sibling objects does not.
  const std::string base = R"({"sub":"alice","iss":"herald-test","aud":"heraldd",)";
  expect_fail(craft(kHeader256, base + R"("x":{"a":1,"a":2}})"), "payload is not a JSON object");
  EXPECT_EQ(check(craft(kHeader256, base + R"("x":[{"a":1},{"a":2}],"y":{"a":{"a":1}}})")), Status::kOk);
  // Nesting: 32 levels are fine, 33 are not.
  auto nested = [&](int levels) {
    return base + "\"x\":" + std::string(static_cast<size_t>(levels - 1), '[') +
           std::string(static_cast<size_t>(levels - 1), ']') + "}";
  };
  EXPECT_EQ(check(craft(kHeader256, nested(32))), Status::kOk);
  expect_fail(craft(kHeader256, nested(33)), "payload is not a JSON object");
  expect_fail(craft(kHeader256, base + "\"x\":" + std::string(3000, '[') + std::string(3000, ']') + "}"),
              "payload is not a JSON object");
}

// --- misc --------------------------------------------------------------------------------

TEST_F(Jwt, OutIsUntouchedOnFailureAndReasonNeverQuotesTheToken) {
  TokenClaims c;
  c.user_id = "keep";
  c.channels = {"keep"};
  std::string reason;
  const std::vector<std::string> bad = {
      "", "a.b.c", with_claims({{"sub", "x y"}}), with_claims({{"aud", "zzz"}}), with_claims({{"nbf", kNow + 999}}),
      craft(R"({"alg":"none"})", good_claims().dump()), with_claims({{"channels", Json::array({"a b"})}})};
  for (const auto& t : bad) {
    EXPECT_EQ(v_.verify(t, kNow, c, &reason), Status::kAuthFailed);
    EXPECT_EQ(c.user_id, "keep");
    EXPECT_EQ(c.channels, std::vector<std::string>{"keep"});
    EXPECT_FALSE(reason.empty());
    EXPECT_LT(reason.size(), 40u);
    if (!t.empty()) {
      for (const auto& part : {split(t).h, split(t).p, split(t).s}) {
        if (part.size() > 3) {
          EXPECT_EQ(reason.find(part), std::string::npos);
        }
      }
    }
    EXPECT_EQ(reason.find("x y"), std::string::npos);
  }
}

TEST_F(Jwt, ConcurrentVerification) {
  const std::string good = sign_token(good_claims(), test_settings());
  const std::string bad = with_claims({{"aud", "nope"}});
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 500; ++i) {
        TokenClaims c;
        std::string r;
        if (v_.verify(good, kNow, c, &r) != Status::kOk || c.user_id != "alice") ++wrong;
        if (v_.verify(bad, kNow, c, &r) != Status::kAuthFailed || r != "wrong audience") ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  // Copies share the immutable MAC implementation and keep working after the original goes.
  auto heap = std::make_unique<JwtVerifier>(test_settings());
  const JwtVerifier copy = *heap;
  heap.reset();
  TokenClaims c;
  EXPECT_EQ(copy.verify(good, kNow, c), Status::kOk);
  EXPECT_EQ(copy.settings().audience, "heraldd");
}

TEST(JwtSetup, BadSettingsThrowAtStartUp) {
  JwtSettings s;
  s.secret = kSecret;
  for (const char* alg : {"none", "RS256", "hs256", "HS1", "", "HS256 "}) {
    s.algorithm = alg;
    EXPECT_THROW(JwtVerifier{s}, std::invalid_argument) << alg;
    EXPECT_THROW(sign_token(Json{{"sub", "a"}}, s), std::invalid_argument) << alg;
  }
  s.algorithm = "HS256";
  s.secret.clear();
  EXPECT_THROW(JwtVerifier{s}, std::invalid_argument);
  EXPECT_THROW(sign_token(Json{{"sub", "a"}}, s), std::invalid_argument);
  s.secret = kSecret;
  s.leeway_s = -1;
  EXPECT_THROW(JwtVerifier{s}, std::invalid_argument);
  s.leeway_s = 0;
  EXPECT_NO_THROW(JwtVerifier{s});
  EXPECT_THROW(sign_token(Json::array({1}), s), std::invalid_argument);
  EXPECT_THROW(sign_token(Json("sub"), s), std::invalid_argument);
}

TEST(JwtGrants, ExactAndPrefixGrants) {
  TokenClaims c;
  EXPECT_FALSE(token_grants(c, "news"));
  c.channels = {"news", "trade:*", "alerts:eu:*"};
  EXPECT_TRUE(token_grants(c, "news"));
  EXPECT_FALSE(token_grants(c, "news2"));
  EXPECT_FALSE(token_grants(c, "new"));
  EXPECT_FALSE(token_grants(c, "News"));
  EXPECT_FALSE(token_grants(c, "news:x"));
  EXPECT_TRUE(token_grants(c, "trade:BTC-USD"));
  EXPECT_TRUE(token_grants(c, "trade:"));
  EXPECT_FALSE(token_grants(c, "trade"));
  EXPECT_FALSE(token_grants(c, "trades:x"));
  EXPECT_TRUE(token_grants(c, "alerts:eu:fr"));
  EXPECT_FALSE(token_grants(c, "alerts:us:x"));
  EXPECT_FALSE(token_grants(c, ""));
  // A literal channel name equal to the pattern text is granted too (prefix "trade:").
  EXPECT_TRUE(token_grants(c, "trade:*"));
  c.channels = {"*"};
  EXPECT_TRUE(token_grants(c, "anything"));
  EXPECT_TRUE(token_grants(c, "user:bob"));  // the personal-channel rule is the caller's
  c.channels = {"a:b*"};
  EXPECT_TRUE(token_grants(c, "a:b"));
  EXPECT_TRUE(token_grants(c, "a:bc"));
  EXPECT_FALSE(token_grants(c, "a:"));
}

}  // namespace
}  // namespace herald::server
