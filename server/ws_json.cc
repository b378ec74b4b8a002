// JSON <-> protobuf for herald.v1.json (protobuf's JSON mapping does the fields).
#include "server/ws_json.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "codec/message.h"

namespace herald::server {
namespace {

struct NamedType {
  std::string_view name;
  codec::FrameType type;
};

constexpr NamedType kNames[] = {
#define HERALD_JSON_NAME(name, number, control) {std::string_view(#name).substr(1), codec::FrameType::name},
    HERALD_FRAME_TYPE_LIST(HERALD_JSON_NAME)
#undef HERALD_JSON_NAME
};

bool skip_ws(std::string_view s, size_t& i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  return i < s.size();
}

// Scans a JSON string starting at s[i] == '"'; leaves i after the closing quote.
bool scan_string(std::string_view s, size_t& i, std::string_view* out) {
  const size_t start = ++i;
  while (i < s.size()) {
    if (s[i] == '\\') {
      i += 2;
      continue;
    }
    if (s[i] == '"') {
      if (out != nullptr) *out = s.substr(start, i - start);
      ++i;
      return true;
    }
    ++i;
  }
  return false;
}

// Nesting depth of the whole text, outside strings (before protobuf's parser
// sees it, so deep input cannot exhaust the stack).
bool depth_ok(std::string_view s) {
  size_t depth = 0;
  for (size_t i = 0; i < s.size();) {
    const char c = s[i];
    if (c == '"') {
      if (!scan_string(s, i, nullptr)) return false;
      continue;
    }
    if (c == '{' || c == '[') {
      if (++depth > kMaxJsonDepth) return false;
    } else if (c == '}' || c == ']') {
      if (depth == 0) return false;
      --depth;
    }
    ++i;
  }
  return depth == 0;
}

// protobuf's parser, told to ignore unknown fields, also drops unknown enum names and
// leaves the field at its default (for `priority` that is P0, the most urgent): a typo
// must not raise a message's priority, so every enum value must be a known name or a number.
bool enums_known(const google::protobuf::Descriptor* d, std::string_view inner) {
  const nlohmann::json j = nlohmann::json::parse(inner, nullptr, false);
  if (!j.is_object()) return false;
  for (const auto& [key, value] : j.items()) {
    const google::protobuf::FieldDescriptor* f = d->FindFieldByName(key);
    for (int i = 0; f == nullptr && i < d->field_count(); ++i) {
      if (d->field(i)->json_name() == key) f = d->field(i);  // lowerCamelCase spelling
    }
    if (f == nullptr || f->enum_type() == nullptr) continue;
    const auto known = [&](const nlohmann::json& v) {
      return !v.is_string() || f->enum_type()->FindValueByName(v.get<std::string>()) != nullptr;
    };
    if (value.is_array()) {
      for (const auto& v : value) {
        if (!known(v)) return false;
      }
    } else if (!known(value)) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string_view json_message_name(codec::FrameType type) noexcept {
  for (const auto& n : kNames) {
    if (n.type == type) return n.name;
  }
  return {};
}

codec::Status json_to_message(std::string_view text, size_t max_body, codec::FrameType& type,
                              std::vector<uint8_t>& body) noexcept {
  if (!depth_ok(text)) return codec::Status::kMalformedMessage;
  // The outer object: {"Name": <object>} with nothing after it.
  size_t i = 0;
  if (!skip_ws(text, i) || text[i] != '{') return codec::Status::kMalformedMessage;
  ++i;
  std::string_view name;
  if (!skip_ws(text, i) || text[i] != '"' || !scan_string(text, i, &name)) return codec::Status::kMalformedMessage;
  if (!skip_ws(text, i) || text[i] != ':') return codec::Status::kMalformedMessage;
  ++i;
  if (!skip_ws(text, i) || text[i] != '{') return codec::Status::kMalformedMessage;
  const size_t inner_start = i;
  // Find the end of the inner object (depth_ok proved the brackets balance).
  size_t depth = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c == '"') {
      if (!scan_string(text, i, nullptr)) return codec::Status::kMalformedMessage;
      continue;
    }
    ++i;
    if (c == '{' || c == '[') ++depth;
    if ((c == '}' || c == ']') && --depth == 0) break;
  }
  const std::string_view inner = text.substr(inner_start, i - inner_start);
  if (!skip_ws(text, i) || text[i] != '}') return codec::Status::kMalformedMessage;
  ++i;
  if (skip_ws(text, i)) return codec::Status::kMalformedMessage;  // trailing bytes

  const NamedType* found = nullptr;
  for (const auto& n : kNames) {
    if (n.name == name) found = &n;
  }
  if (found == nullptr) return codec::Status::kUnknownFrameType;
  std::unique_ptr<google::protobuf::Message> m = codec::new_message(found->type);
  if (!enums_known(m->GetDescriptor(), inner)) return codec::Status::kMalformedMessage;
  google::protobuf::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(std::string(inner), m.get(), opts).ok()) {
    return codec::Status::kMalformedMessage;
  }
  std::vector<uint8_t> out;
  const codec::Status s = codec::serialize_message(*m, max_body, out);
  if (!codec::ok(s)) return s;
  type = found->type;
  body.swap(out);
  return codec::Status::kOk;
}

codec::Status message_to_json(codec::FrameType type, std::span<const uint8_t> body, std::string& out) noexcept {
  const std::string_view name = json_message_name(type);
  if (name.empty()) return codec::Status::kMalformedMessage;
  std::unique_ptr<google::protobuf::Message> m;
  if (!codec::ok(codec::decode_message(type, body, SIZE_MAX, m))) return codec::Status::kMalformedMessage;
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  opts.always_print_primitive_fields = true;
  std::string fields;
  if (!google::protobuf::util::MessageToJsonString(*m, &fields, opts).ok()) return codec::Status::kMalformedMessage;
  out = "{\"";
  out += name;
  out += "\":";
  out += fields;
  out += "}";
  return codec::Status::kOk;
}

}  // namespace herald::server
