// Frame encoder: a message's frame bodies are built once (compressed, split into
// fragments, checksummed) and shared by every recipient; each recipient adds only
// 16 header bytes carrying its own sequence number. Sans-IO: no sockets, clock or
// logging.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "codec/compression.h"
#include "codec/frame_decoder.h"
#include "codec/frame_header.h"
#include "codec/status.h"

namespace herald::codec {

struct EncodeOptions {
  uint16_t version = kVersion1;
  bool checksum = true;                // add the CRC32C trailer (K flag) to every frame
  bool compress = false;               // zstd was negotiated with the receiver(s)
  uint32_t dictionary_id = 0;          // negotiated dictionary, 0 = none
  int level = 3;                       // zstd level
  size_t compress_threshold = kDefaultCompressThreshold;  // smaller bodies go uncompressed
  uint32_t max_frame_size = kDefaultMaxFrameSize;      // receiver's limit: larger bodies are fragmented
  size_t max_message_size = kDefaultMaxMessageSize;    // receiver's limit on the whole message
  uint32_t max_fragments = 128;        // receiver's fragments-per-message limit
  uint32_t fragment_ref = 0;           // ref for the fragment prefix; unique among the sender's
                                       // in-progress messages (a global counter works)
  // A message sent as one frame, without checksum and uncompressed, has the payload
  // itself as its body: with borrow_payload the encoding then points at `payload`
  // instead of copying it, and the caller must keep those bytes alive and unchanged
  // for as long as the encoding (a shared publication keeps both).
  bool borrow_payload = false;
};

// One message ready for the wire. Immutable once built, so one instance may be
// shared (std::shared_ptr<const EncodedMessage>) by connections on any thread.
class EncodedMessage {
 public:
  EncodedMessage() = default;
  EncodedMessage(const EncodedMessage&) = default;
  EncodedMessage& operator=(const EncodedMessage&) = default;
  // A moved-from message is empty (no frames), as it was when frames lived in a vector only.
  EncodedMessage(EncodedMessage&& o) noexcept { *this = std::move(o); }
  EncodedMessage& operator=(EncodedMessage&& o) noexcept {
    type_ = o.type_;
    compressed_ = o.compressed_;
    count_ = std::exchange(o.count_, 0);
    first_ = o.first_;
    more_ = std::move(o.more_);
    bytes_ = std::move(o.bytes_);
    borrowed_ = std::exchange(o.borrowed_, nullptr);
    return *this;
  }
  FrameType type() const noexcept { return type_; }
  bool compressed() const noexcept { return compressed_; }
  size_t frame_count() const noexcept { return count_; }
  // Body bytes of frame i (prefix, payload piece and trailer), shared by all recipients.
  std::span<const uint8_t> body(size_t i) const noexcept {
    const FrameInfo& f = frame(i);
    return {(borrowed_ != nullptr ? borrowed_ : bytes_.data()) + f.body_offset, f.body_length};
  }
  // Writes frame i's 16-byte header with the recipient's sequence number: the only
  // per-connection work (12 precomputed bytes plus the sequence).
  void write_header(size_t i, uint32_t sequence, uint8_t out[kHeaderSize]) const noexcept {
    const FrameInfo& f = frame(i);
    for (size_t k = 0; k < 12; ++k) out[k] = f.header[k];
    put_u32(out + 12, sequence);
  }
  // Bytes on the wire for one recipient: headers plus bodies.
  size_t wire_size() const noexcept {
    return count_ * kHeaderSize + (borrowed_ != nullptr ? first_.body_length : bytes_.size());
  }

 private:
  friend Status encode_message(FrameType, std::span<const uint8_t>, const EncodeOptions&, Compressor*,
                               EncodedMessage&) noexcept;
  struct FrameInfo {
    uint8_t header[12];  // magic, version, type field, length
    uint32_t body_offset;
    uint32_t body_length;
  };
  const FrameInfo& frame(size_t i) const noexcept { return i == 0 ? first_ : more_[i - 1]; }
  void add_frame(const FrameInfo& f) {
    if (count_ == 0) {
      first_ = f;
    } else {
      more_.push_back(f);
    }
    ++count_;
  }
  FrameType type_ = FrameType::kPing;
  bool compressed_ = false;
  uint32_t count_ = 0;
  FrameInfo first_{};             // inline: most messages are one frame, and need no allocation for it
  std::vector<FrameInfo> more_;   // frames 1.. of a fragmented message
  std::vector<uint8_t> bytes_;
  const uint8_t* borrowed_ = nullptr;  // EncodeOptions::borrow_payload: the one frame's body, not in bytes_
};

// Encodes `payload` (a serialized protobuf message of `type`) for the wire.
// Compresses with `compressor` when options.compress is set, the payload is at
// least compress_threshold bytes and the result is smaller; splits data frames
// whose body exceeds options.max_frame_size into fragments. `compressor` may be
// null when options.compress is false.
// Errors: kMessageTooLarge (payload above max_message_size, a control frame that
// would need fragmenting, or more fragments than max_fragments),
// kUnsupportedCompression (compress set without a compressor), kUnknownDictionary,
// kCompressionFailed. On error `out` is left empty.
Status encode_message(FrameType type, std::span<const uint8_t> payload, const EncodeOptions& options,
                      Compressor* compressor, EncodedMessage& out) noexcept;

// Appends every frame of `message` to `out` with consecutive sequence numbers
// starting at `next_sequence`, which is advanced. For building a write buffer.
void append_frames(const EncodedMessage& message, uint32_t& next_sequence, std::vector<uint8_t>& out);

}  // namespace herald::codec
