// Frame header encode/decode and the frame type table.
#include "codec/frame_header.h"

namespace herald::codec {

bool is_known_frame_type(uint16_t type) noexcept {
  switch (type) {
#define HERALD_FRAME_TYPE_CASE(name, number, control) case number:
    HERALD_FRAME_TYPE_LIST(HERALD_FRAME_TYPE_CASE)
#undef HERALD_FRAME_TYPE_CASE
    return true;
    default:
      return false;
  }
}

bool is_control_frame(FrameType type) noexcept {
  switch (type) {
#define HERALD_FRAME_TYPE_CONTROL(name, number, control) \
  case FrameType::name:                                  \
    return control;
    HERALD_FRAME_TYPE_LIST(HERALD_FRAME_TYPE_CONTROL)
#undef HERALD_FRAME_TYPE_CONTROL
  }
  return true;
}

std::string_view to_string(FrameType type) noexcept {
  switch (type) {
#define HERALD_FRAME_TYPE_NAME(name, number, control) \
  case FrameType::name:                              \
    return std::string_view(#name).substr(1);
    HERALD_FRAME_TYPE_LIST(HERALD_FRAME_TYPE_NAME)
#undef HERALD_FRAME_TYPE_NAME
  }
  return "Unknown";
}

void encode_header(const FrameHeader& h, uint8_t out[kHeaderSize]) noexcept {
  put_u32(out, kMagic);
  put_u16(out + 4, h.version);
  put_u16(out + 6, h.type_field());
  put_u32(out + 8, h.length);
  put_u32(out + 12, h.sequence);
}

Status decode_header(std::span<const uint8_t, kHeaderSize> in, FrameHeader& out,
                     size_t* error_at) noexcept {
  const uint8_t* p = in.data();
  auto fail = [error_at](Status s, size_t at) {
    if (error_at != nullptr) *error_at = at;
    return s;
  };
  if (get_u32(p) != kMagic) return fail(Status::kBadMagic, 0);
  const uint16_t version = get_u16(p + 4);
  if (version < kMinVersion || version > kMaxVersion) return fail(Status::kUnsupportedVersion, 4);
  const uint16_t type_field = get_u16(p + 6);
  if (type_field & kFlagReserved) return fail(Status::kUnknownFlag, 6);
  const uint16_t type = type_field & kTypeMask;
  if (!is_known_frame_type(type)) return fail(Status::kUnknownFrameType, 6);
  out.version = version;
  out.type = static_cast<FrameType>(type);
  out.flags = type_field & kFlagMask;
  out.length = get_u32(p + 8);
  out.sequence = get_u32(p + 12);
  return Status::kOk;
}

}  // namespace herald::codec
