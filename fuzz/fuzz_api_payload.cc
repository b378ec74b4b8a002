// Fuzz target for extract_payloads (server/http_api_payload.h), the HTTP API's scanner
// that keeps publish payloads as text. The input is a request body. Aborts if the scanner
// rewrites a body that nlohmann's parser refuses, if the rewritten body does not parse,
// or if any payload text it kept is not the same JSON value the parser finds there.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "server/http_api_payload.h"

namespace {

using Json = nlohmann::json;

void collect(const Json& obj, std::vector<Json>& out) {
  if (!obj.is_object()) return;
  const auto it = obj.find("payload");
  if (it != obj.end() && !it->is_null()) out.push_back(*it);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  // Nesting is bounded by the API before the scanner runs (64 levels).
  if (!herald::server::nesting_within(body, 64)) return 0;
  std::string out;
  std::vector<std::string> payloads;
  if (herald::server::extract_payloads(body, out, payloads) != herald::server::PayloadScan::kRewritten) return 0;
  const Json original = Json::parse(body, nullptr, false);
  if (original.is_discarded()) std::abort();  // accepted what the parser refuses
  if (Json::parse(out, nullptr, false).is_discarded()) std::abort();
  // The payloads the parser sees where the scanner looks: depth 1 and depth 3 objects.
  // Duplicate "payload" keys make the two disagree on purpose (the parser keeps the
  // last, the scanner extracts each); skip those inputs.
  std::vector<Json> expected;
  collect(original, expected);
  auto walk = [&](const Json& container) {
    for (const auto& v : container) {
      if (!v.is_array()) continue;
      for (const auto& m : v) collect(m, expected);
    }
  };
  if (original.is_object() || original.is_array()) walk(original);
  if (payloads.size() != expected.size()) return 0;
  for (size_t i = 0; i < payloads.size(); ++i) {
    const Json got = Json::parse(payloads[i], nullptr, false);
    if (got.is_discarded() || got != expected[i]) std::abort();
  }
  return 0;
}
