// Fuzz target: the 16-byte header parser. Whatever parses must re-encode to
// the same bytes; whatever fails must name a header status.
#include <cstdlib>
#include <cstring>

#include "codec/frame_header.h"

using namespace herald::codec;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < kHeaderSize) return 0;
  FrameHeader h;
  size_t at = 99;
  Status s = decode_header(std::span<const uint8_t, kHeaderSize>(data, kHeaderSize), h, &at);
  if (ok(s)) {
    uint8_t again[kHeaderSize];
    encode_header(h, again);
    if (std::memcmp(again, data, kHeaderSize) != 0) std::abort();
    if (!is_known_frame_type(static_cast<uint16_t>(h.type))) std::abort();
  } else {
    if (s != Status::kBadMagic && s != Status::kUnsupportedVersion && s != Status::kUnknownFlag &&
        s != Status::kUnknownFrameType)
      std::abort();
    if (at >= kHeaderSize) std::abort();
  }
  return 0;
}
