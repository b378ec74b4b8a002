// The raw JSON text of publish payloads: finds the "payload" members of an HTTP API
// publish body, validates them as strictly as the JSON parser would and keeps their
// text (whitespace between tokens removed), so the API never parses and re-serialises
// a payload it only passes on. Pure function of its input: no I/O, no allocation limits
// of its own (the body size is already bounded by the API).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace herald::server {

// The key a rewritten body holds instead of "payload" (a NUL byte cannot appear in a
// JSON key without an escape, and bodies with escaped keys are never rewritten).
inline constexpr std::string_view kRawPayloadKey{"\0payload", 8};

enum class PayloadScan {
  kRewritten,  // `out` is the body with payloads replaced, `payloads` their texts
  kUnchanged,  // nothing to take out, or a case left to the JSON parser: use the body as it is
};

// Scans `body`, a publish (`{...}`) or batch (`{"messages": [{...}, ...]}`) request. For
// every member named "payload" (spelled without escapes) of an object at nesting depth 1
// or 3 whose value is not null, the value is checked to be valid JSON (RFC 8259: UTF-8,
// escapes and surrogate pairs, number grammar, literals) and appended to `payloads` as
// its text with the whitespace between tokens removed (strings, numbers and the order
// of keys exactly as sent); in `out` the member becomes `"\u0000payload":<index>`.
// Returns kUnchanged, leaving `out` and `payloads` empty, when there is no such member,
// when any key of those objects is written with escapes, when one of those objects has
// "payload" more than once (null included), when the body starts with a
// byte-order mark, or when anything in the body is not valid JSON (the caller's parser
// then reports it). `body` must already be known to nest at most 64 levels deep.
PayloadScan extract_payloads(std::string_view body, std::string& out, std::vector<std::string>& payloads);

// True if no array or object in `s` (JSON text, valid or not) opens more than `max_depth`
// levels deep; brackets inside strings do not count. One pass, no allocation: the API
// checks it before any parser recurses into the body.
bool nesting_within(std::string_view s, size_t max_depth) noexcept;

}  // namespace herald::server
