// Inbound pipeline of one connection: bytes -> frames (header checks, CRC32C)
// -> reassembly of fragments -> zstd decompression -> whole message bodies.
// Sans-IO: the caller passes bytes and the time; no sockets, clock or logging.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "codec/compression.h"
#include "codec/frame_decoder.h"
#include "codec/reassembler.h"
#include "codec/status.h"

namespace herald::codec {

struct ReaderLimits {
  DecoderLimits decoder;
  ReassemblyLimits reassembly;
  size_t max_message_size = kDefaultMaxMessageSize;  // decompressed and reassembled body
  bool compression = true;  // zstd negotiated; false: compressed frames fail with kUnsupportedCompression
};

// Per event loop, shared by every reader and writer on that loop: the zstd
// contexts and the scratch buffer that decompressed bodies land in. Not
// thread-safe; one per loop thread.
struct CodecContext {
  explicit CodecContext(std::shared_ptr<const DictionarySet> dictionaries = nullptr)
      : compressor(dictionaries), decompressor(std::move(dictionaries)) {}
  Compressor compressor;
  Decompressor decompressor;
  std::vector<uint8_t> scratch;
  // Optional: every frame a reader using this context decodes is counted here
  // (fragments one by one, before reassembly; null = not counted).
  FrameTally* inbound_tally = nullptr;
};

// One whole inbound message. `body` is the protobuf bytes (decompressed,
// reassembled). It points into the caller's input, the reader's buffers or the
// CodecContext scratch, and is valid until the next call on this reader or on
// any reader sharing the same CodecContext.
struct InboundMessage {
  FrameType type = FrameType::kPing;
  uint16_t flags = 0;             // flags of the (last) frame
  uint32_t sequence = 0;          // sequence of the (last) frame
  uint64_t frame_offset = 0;      // stream offset of the frame that completed it
  std::span<const uint8_t> body;
};

class MessageReader {
 public:
  // `context` may be null only if limits.compression is false.
  explicit MessageReader(const ReaderLimits& limits = {}, CodecContext* context = nullptr) noexcept;

  // Reads at most one message from `in`. kOk: `out` holds it and `consumed` says
  // how far to advance; kNeedMore: everything was consumed; otherwise a sticky
  // error whose stream offset is error_offset(). Errors: every FrameDecoder and
  // Reassembler error, kUnsupportedCompression, every Decompressor error,
  // kMessageTooLarge (uncompressed body above max_message_size).
  DecodeResult read(std::span<const uint8_t> in, uint64_t now_ms, InboundMessage& out) noexcept;

  // End of stream: kOk or kTruncatedFrame (or the earlier sticky error).
  Status finish() noexcept;
  // From the owner's timer: kReassemblyTimeout when a partial message is too old.
  Status expire(uint64_t now_ms) noexcept;
  uint64_t next_deadline_ms() const noexcept {
    return reassembly_ != nullptr ? reassembly_->reassembler.next_deadline_ms() : UINT64_MAX;
  }

  void set_limits(const ReaderLimits& limits) noexcept;
  // The limits in force (a copy: each part is kept only once, by the part that checks it).
  ReaderLimits limits() const noexcept;
  size_t max_message_size() const noexcept { return max_message_size_; }
  CodecContext* context() const noexcept { return context_; }
  Status error() const noexcept { return error_; }
  uint64_t error_offset() const noexcept { return error_offset_; }
  uint64_t stream_offset() const noexcept { return decoder_.stream_offset(); }
  // Bytes this connection holds for incomplete input (frame and reassembly buffers).
  size_t buffered_bytes() const noexcept {
    return decoder_.buffered_bytes() + (reassembly_ != nullptr ? reassembly_->reassembler.buffered_bytes() : 0);
  }

 private:
  Status fail(Status s, uint64_t at) noexcept;
  Status finish_message(FrameType type, uint16_t flags, std::span<const uint8_t> body, InboundMessage& out) noexcept;

  // Fragments are rare: the reassembler and the message it completes exist only from
  // a connection's first fragment until the next read() after its last partial
  // message completed (a completed body is valid until then).
  struct Reassembly {
    explicit Reassembly(const ReassemblyLimits& limits) noexcept : reassembler(limits) {}
    Reassembler reassembler;
    ReassembledMessage message;
  };

  // Per connection: the decoder keeps its own limits; the reassembler's are kept here
  // while it does not exist.
  CodecContext* context_;
  FrameDecoder decoder_;
  ReassemblyLimits reassembly_limits_;
  std::unique_ptr<Reassembly> reassembly_;
  uint64_t error_offset_ = 0;
  uint32_t max_message_size_;  // limits.max_message_size, at most 4 GiB - 1 (wire sizes are 32-bit)
  Status error_ = Status::kOk;
  bool compression_;
};

}  // namespace herald::codec
