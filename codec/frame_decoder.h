// Incremental frame decoder: bytes in any chunking -> whole frames out.
// Sans-IO: no sockets, no clock, no logging. Checks every header field and the
// declared length against its limits before waiting for or allocating a body,
// verifies the CRC32C trailer, and never rescans bytes it already parsed (input
// fed one byte at a time is decoded in linear time).
//
// Ownership: the decoder never writes into its input. A returned Frame's payload
// points either into the caller's input span (when the whole frame was inside
// it) or into the decoder's own buffer; it stays valid until the next call to
// decode(), reset() or the decoder's destruction.
//
// Memory: between frames the decoder holds no buffer. A frame that arrives in more
// than one piece gets a small heap state (header bytes, the body so far) that is
// freed at the next call after the frame completed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "codec/frame_header.h"
#include "codec/status.h"

namespace herald::codec {

// Defaults of docs/protocol.md §8.
inline constexpr uint32_t kDefaultMaxFrameSize = 64 * 1024;
inline constexpr uint32_t kMinMaxFrameSize = 16 * 1024;   // nobody may negotiate less
inline constexpr uint32_t kHandshakeMaxFrameSize = 16 * 1024;  // until Welcome
inline constexpr uint32_t kDefaultMaxMessageSize = 1024 * 1024;

struct DecoderLimits {
  uint32_t max_frame_size = kDefaultMaxFrameSize;  // body bytes, prefix and trailer included
  bool require_checksum = false;   // frames without the K flag fail with kChecksumRequired
  bool check_sequence = true;      // sequence must be 0, 1, 2, ... (mod 2^32)
  uint16_t version = 0;            // 0: any supported version; else frames must carry it
};

// One decoded frame. `payload` is the body without the CRC32C trailer; for a
// fragment (header.fragment()) it still starts with the 8-byte fragment prefix.
// header.length is the length on the wire (trailer included).
struct Frame {
  FrameHeader header;
  std::span<const uint8_t> payload;
};

struct DecodeResult {
  size_t consumed = 0;  // bytes of `in` used by this call
  Status status = Status::kNeedMore;  // kOk: `out` holds a frame; kNeedMore; or an error
};

class FrameDecoder {
 public:
  explicit FrameDecoder(const DecoderLimits& limits = {}) noexcept : limits_(limits) {}

  // Decodes at most one frame from `in`. Returns kOk with the frame in `out`
  // and `consumed` up to the frame's end (call again with the rest), kNeedMore
  // after consuming all of `in`, or an error. Errors are sticky: once one is
  // returned every later call returns it with consumed = 0.
  // Errors: kBadMagic, kUnsupportedVersion, kUnknownFlag, kUnknownFrameType,
  // kVersionMismatch, kFragmentedControl, kFrameTooLarge, kBadSequence,
  // kBodyTooShort, kChecksumRequired, kChecksumMismatch.
  DecodeResult decode(std::span<const uint8_t> in, Frame& out) noexcept;

  // End of stream: kOk between frames, kTruncatedFrame in the middle of one
  // (sticky like any error), or the earlier sticky error.
  Status finish() noexcept;

  // Limits may change between frames (e.g. after Welcome).
  void set_limits(const DecoderLimits& limits) noexcept { limits_ = limits; }
  const DecoderLimits& limits() const noexcept { return limits_; }

  Status error() const noexcept { return error_; }
  // Stream offset of the byte at which the sticky error was detected.
  uint64_t error_offset() const noexcept { return error_offset_; }
  // Bytes consumed since construction or reset().
  uint64_t stream_offset() const noexcept { return stream_offset_; }
  uint32_t next_sequence() const noexcept { return next_sequence_; }
  // Stream offset of the first header byte of the frame being decoded or last returned.
  uint64_t frame_offset() const noexcept { return frame_start_; }
  // Bytes held for an incomplete frame (header bytes plus body so far).
  size_t buffered_bytes() const noexcept {
    return partial_ == nullptr || release_partial_ ? 0 : partial_->header_have + partial_->body.size();
  }

  void reset() noexcept;

 private:
  // The frame being decoded: on the stack while a frame arrives in one piece, on the
  // heap (partial_) while it is incomplete between calls.
  struct Partial {
    uint8_t header_buf[kHeaderSize] = {};
    size_t header_have = 0;
    bool header_done = false;
    FrameHeader header;
    std::vector<uint8_t> body;  // only used when a body arrives in pieces
  };

  DecodeResult decode_into(Partial& p, std::span<const uint8_t> in, Frame& out) noexcept;
  DecodeResult fail(Status s, uint64_t at, size_t consumed) noexcept;
  Status check_header(Partial& p, size_t* error_at) noexcept;
  Status finish_body(Partial& p, std::span<const uint8_t> body, size_t* error_at, Frame& out) noexcept;

  DecoderLimits limits_;
  uint64_t error_offset_ = 0;
  uint64_t stream_offset_ = 0;
  uint64_t frame_start_ = 0;
  std::unique_ptr<Partial> partial_;  // an incomplete frame, or the last frame returned from it
  uint32_t next_sequence_ = 0;
  Status error_ = Status::kOk;
  bool release_partial_ = false;  // partial_ held the last returned frame: free it on the next call
};

}  // namespace herald::codec
