// The 16-byte frame header: layout, frame types, flag bits, encode/decode.
// Sans-IO: pure functions over bytes; no sockets, no clock, no logging.
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +---------------------------------------------------------------+
//   |              magic = 0x48524C44 ("HRLD")                      |
//   +-------------------------------+-------+-----------------------+
//   |          version (u16)        |C|K|F|R|   frame type (12 bits)|
//   +-------------------------------+-------+-----------------------+
//   |                      length (u32): body bytes                 |
//   +---------------------------------------------------------------+
//   |                 sequence (u32): per connection and direction  |
//   +---------------------------------------------------------------+
//   |  body: [fragment prefix (8)] payload [CRC32C trailer (4)]     |
//
//   C = 0x8000 compressed (zstd)     K = 0x4000 checksummed (CRC32C trailer)
//   F = 0x2000 fragment (8-byte fragment prefix at the start of the body)
//   R = 0x1000 reserved: must be zero
// All integers are big-endian. docs/protocol.md §2 is the normative text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "codec/status.h"

namespace herald::codec {

inline constexpr uint32_t kMagic = 0x48524C44;  // "HRLD"
inline constexpr uint16_t kVersion1 = 1;
inline constexpr uint16_t kMinVersion = 1;
inline constexpr uint16_t kMaxVersion = 1;
inline constexpr size_t kHeaderSize = 16;
inline constexpr size_t kChecksumSize = 4;
inline constexpr size_t kFragmentPrefixSize = 8;

inline constexpr uint16_t kFlagCompressed = 0x8000;
inline constexpr uint16_t kFlagChecksummed = 0x4000;
inline constexpr uint16_t kFlagFragment = 0x2000;
inline constexpr uint16_t kFlagReserved = 0x1000;
inline constexpr uint16_t kFlagMask = 0xF000;
inline constexpr uint16_t kTypeMask = 0x0FFF;

// X(name, number, control): `control` frames may never be fragmented and may
// interleave between the fragments of a data frame.
#define HERALD_FRAME_TYPE_LIST(X) \
  X(kHello, 0x001, true)          \
  X(kWelcome, 0x002, true)        \
  X(kAuth, 0x003, true)           \
  X(kAuthOk, 0x004, true)         \
  X(kRefresh, 0x005, true)        \
  X(kSubscribe, 0x010, true)      \
  X(kSubscribeOk, 0x011, true)    \
  X(kUnsubscribe, 0x012, true)    \
  X(kUnsubscribeOk, 0x013, true)  \
  X(kPublication, 0x020, false)   \
  X(kPublish, 0x021, false)       \
  X(kPublishOk, 0x022, true)      \
  X(kAck, 0x023, true)            \
  X(kDismiss, 0x024, true)        \
  X(kPing, 0x030, true)           \
  X(kPong, 0x031, true)           \
  X(kError, 0x032, true)          \
  X(kGoAway, 0x033, true)

enum class FrameType : uint16_t {
#define HERALD_FRAME_TYPE_ENUM(name, number, control) name = number,
  HERALD_FRAME_TYPE_LIST(HERALD_FRAME_TYPE_ENUM)
#undef HERALD_FRAME_TYPE_ENUM
};

bool is_known_frame_type(uint16_t type) noexcept;
// Control frames: every known type except Publication and Publish.
bool is_control_frame(FrameType type) noexcept;
std::string_view to_string(FrameType type) noexcept;

struct FrameHeader {
  uint16_t version = kVersion1;
  FrameType type = FrameType::kPing;
  uint16_t flags = 0;  // only bits of kFlagMask
  uint32_t length = 0;
  uint32_t sequence = 0;

  bool compressed() const noexcept { return flags & kFlagCompressed; }
  bool checksummed() const noexcept { return flags & kFlagChecksummed; }
  bool fragment() const noexcept { return flags & kFlagFragment; }
  uint16_t type_field() const noexcept { return static_cast<uint16_t>(flags | static_cast<uint16_t>(type)); }
};

// Frames and wire bytes (header + body) per frame type, for metrics. Every frame
// type is below 0x040; anything else lands in the last slot. Plain counters: one
// instance per thread (an event loop), summed by whoever exports them.
struct FrameTally {
  static constexpr size_t kSlots = 64;
  uint64_t frames[kSlots] = {};
  uint64_t bytes[kSlots] = {};
  void add(FrameType t, uint64_t wire_bytes) noexcept {
    const size_t i = static_cast<uint16_t>(t) < kSlots ? static_cast<uint16_t>(t) : kSlots - 1;
    ++frames[i];
    bytes[i] += wire_bytes;
  }
};

// Writes the 16 header bytes to out. Never fails.
void encode_header(const FrameHeader& h, uint8_t out[kHeaderSize]) noexcept;

// Parses 16 bytes. Checks, in this order: magic (kBadMagic), version in
// [kMinVersion, kMaxVersion] (kUnsupportedVersion), reserved flag
// (kUnknownFlag), frame type (kUnknownFrameType). Length and sequence are not
// checked here: the decoder checks them against its limits and state.
// On error `*error_at` (if not null) is the offset inside the header of the
// offending field.
Status decode_header(std::span<const uint8_t, kHeaderSize> in, FrameHeader& out,
                     size_t* error_at = nullptr) noexcept;

// Big-endian helpers shared by the codec.
inline void put_u16(uint8_t* p, uint16_t v) noexcept {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void put_u32(uint8_t* p, uint32_t v) noexcept {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}
inline uint16_t get_u16(const uint8_t* p) noexcept { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint32_t get_u32(const uint8_t* p) noexcept {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

}  // namespace herald::codec
