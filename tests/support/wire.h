// Test helpers: build frames and streams by hand and feed decoders in chunks.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "codec/checksum.h"
#include "codec/frame_header.h"

namespace herald::testing {

using Bytes = std::vector<uint8_t>;

inline Bytes bytes_of(std::string_view s) { return Bytes(s.begin(), s.end()); }

// A raw frame: header fields as given (type field includes flags), body as given;
// with `add_crc` the CRC32C trailer is appended and counted in `length`.
inline Bytes raw_frame(uint16_t type_field, std::span<const uint8_t> body, uint32_t sequence,
                       bool add_crc = false, uint16_t version = 1, uint32_t magic = codec::kMagic) {
  Bytes out(codec::kHeaderSize);
  const uint32_t len = static_cast<uint32_t>(body.size() + (add_crc ? 4 : 0));
  codec::put_u32(out.data(), magic);
  codec::put_u16(out.data() + 4, version);
  codec::put_u16(out.data() + 6, type_field);
  codec::put_u32(out.data() + 8, len);
  codec::put_u32(out.data() + 12, sequence);
  // resize + memcpy rather than insert: gcc 12 reports a false -Warray-bounds
  // for vector::insert of a span inlined here.
  out.resize(codec::kHeaderSize + body.size());
  if (!body.empty()) std::memcpy(out.data() + codec::kHeaderSize, body.data(), body.size());
  if (add_crc) {
    uint8_t t[4];
    codec::put_u32(t, codec::crc32c(body));
    out.insert(out.end(), t, t + 4);
  }
  return out;
}

inline void append(Bytes& to, const Bytes& from) { to.insert(to.end(), from.begin(), from.end()); }

// Calls feed(chunk) for the stream cut at the given split points (sorted).
inline void feed_split(std::span<const uint8_t> stream, const std::vector<size_t>& splits,
                       const std::function<void(std::span<const uint8_t>)>& feed) {
  size_t start = 0;
  for (size_t cut : splits) {
    feed(stream.subspan(start, cut - start));
    start = cut;
  }
  feed(stream.subspan(start));
}

}  // namespace herald::testing
