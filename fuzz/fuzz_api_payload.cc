// Fuzz target for extract_payloads (server/http_api_payload.h), the HTTP API's scanner
// that keeps publish payloads as text. The input is a request body. Aborts if the scanner
// rewrites a body that nlohmann's parser refuses, if the rewritten body does not parse,
// or if any payload text it kept is not the same JSON value the parser finds there (found
// through the index the rewrite left in its place).
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

// One object of the original body against the same object of the rewritten body: its
// "payload" (the last one, if the key repeats: the parser keeps the last in both
// documents) must be the value the scanner kept under the index the rewrite put there.
void check_object(const Json& original, const Json& rewritten, const std::vector<std::string>& payloads) {
  if (!original.is_object()) return;
  if (!rewritten.is_object()) std::abort();
  const std::string raw_key(herald::server::kRawPayloadKey);
  const auto it = original.find("payload");
  const auto at = rewritten.find(raw_key);
  if (it == original.end() || it->is_null()) {
    if (at != rewritten.end()) std::abort();  // nothing (or null) was there to take out
    return;
  }
  if (at == rewritten.end() || !at->is_number_unsigned()) std::abort();
  const auto index = at->get<size_t>();
  if (index >= payloads.size()) std::abort();
  const Json got = Json::parse(payloads[index], nullptr, false);
  if (got.is_discarded() || got != *it) std::abort();
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
  const Json rewritten = Json::parse(out, nullptr, false);
  if (rewritten.is_discarded()) std::abort();
  // The scanner looks at the body object (depth 1) and at the objects in arrays that are
  // its members (depth 3, the messages of a batch). Keys repeat in fuzzed bodies: both
  // documents keep the last of each, so the objects compared are the same ones.
  if (!original.is_object()) return 0;
  check_object(original, rewritten, payloads);
  for (auto it = original.begin(); it != original.end(); ++it) {
    if (it.key() == "payload") continue;  // the body's own, renamed and checked above
    const Json& r = rewritten.at(it.key());
    if (it->is_array()) {
      if (!r.is_array() || r.size() != it->size()) std::abort();
      for (size_t i = 0; i < it->size(); ++i) check_object((*it)[i], r[i], payloads);
    } else if (it->is_object()) {  // {"a":{"b":{...}}}: the inner object is at depth 3 too
      if (!r.is_object()) std::abort();
      for (auto m = it->begin(); m != it->end(); ++m) check_object(*m, r.at(m.key()), payloads);
    }
  }
  return 0;
}
