// Message layer: frame type <-> herald.v1 message, strict size-limited parsing.
#include "codec/message.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/unknown_field_set.h>

namespace herald::codec {
namespace {

const google::protobuf::Descriptor* descriptor_for(FrameType type) noexcept {
  switch (type) {
#define HERALD_DESCRIPTOR_CASE(name, number, control) \
  case FrameType::name:                              \
    return ::herald::v1::HERALD_STRIP_K_##name::descriptor();
    HERALD_FRAME_TYPE_LIST(HERALD_DESCRIPTOR_CASE)
#undef HERALD_DESCRIPTOR_CASE
  }
  return nullptr;
}

// Protobuf keeps a known field number that arrives with the wrong wire type
// among the unknown fields; a field number that the schema knows must never
// be there, so finding one means the body is not this message. Groups (wire
// types 3/4) are refused too (docs/protocol.md §4): proto3 cannot declare them,
// and refusing them spares other clients from writing group skipping.
bool has_forbidden_unknown_field(const google::protobuf::Message& m) {
  const auto* reflection = m.GetReflection();
  const auto& unknown = reflection->GetUnknownFields(m);
  const auto* descriptor = m.GetDescriptor();
  for (int i = 0; i < unknown.field_count(); ++i) {
    const auto& field = unknown.field(i);
    if (field.type() == google::protobuf::UnknownField::TYPE_GROUP) return true;
    if (descriptor->FindFieldByNumber(field.number()) != nullptr) return true;
  }
  return false;
}

}  // namespace

std::unique_ptr<google::protobuf::Message> new_message(FrameType type) {
  switch (type) {
#define HERALD_NEW_CASE(name, number, control) \
  case FrameType::name:                       \
    return std::make_unique<::herald::v1::HERALD_STRIP_K_##name>();
    HERALD_FRAME_TYPE_LIST(HERALD_NEW_CASE)
#undef HERALD_NEW_CASE
  }
  return nullptr;
}

Status parse_message(FrameType type, std::span<const uint8_t> body, size_t max_size,
                     google::protobuf::Message& out) noexcept {
  if (out.GetDescriptor() != descriptor_for(type)) return Status::kUnexpectedFrame;
  if (body.size() > max_size) return Status::kMessageTooLarge;
  out.Clear();
  if (body.size() > static_cast<size_t>(INT32_MAX)) return Status::kMessageTooLarge;
  if (!out.ParseFromArray(body.data(), static_cast<int>(body.size()))) return Status::kMalformedMessage;
  if (has_forbidden_unknown_field(out)) {
    out.Clear();
    return Status::kMalformedMessage;
  }
  return Status::kOk;
}

Status decode_message(FrameType type, std::span<const uint8_t> body, size_t max_size,
                      std::unique_ptr<google::protobuf::Message>& out) noexcept {
  out = new_message(type);
  if (!out) return Status::kUnknownFrameType;
  return parse_message(type, body, max_size, *out);
}

Status serialize_message(const google::protobuf::Message& message, size_t max_size,
                         std::vector<uint8_t>& out) noexcept {
  const size_t size = message.ByteSizeLong();
  if (size > max_size) return Status::kMessageTooLarge;
  out.resize(size);
  if (size > 0 && !message.SerializeToArray(out.data(), static_cast<int>(size))) {
    out.clear();
    return Status::kInvalidField;
  }
  return Status::kOk;
}

bool frame_type_for(const google::protobuf::Message& message, FrameType& out) noexcept {
  const auto* d = message.GetDescriptor();
#define HERALD_TYPE_FOR_CASE(name, number, control)              \
  if (d == ::herald::v1::HERALD_STRIP_K_##name::descriptor()) { \
    out = FrameType::name;                                      \
    return true;                                                \
  }
  HERALD_FRAME_TYPE_LIST(HERALD_TYPE_FOR_CASE)
#undef HERALD_TYPE_FOR_CASE
  return false;
}

}  // namespace herald::codec
