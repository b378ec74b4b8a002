// One publication on a channel, immutable once built and shared (shared_ptr)
// by the hub's history, every event loop and every connection's delivery lanes.
// Its wire encodings are built at most once per wire variant, on first use.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "codec/frame_encoder.h"
#include "codec/message_reader.h"
#include "herald.pb.h"

namespace herald::server {

// The four ways a connection may want a publication on the wire: zstd or not
// (negotiated), CRC32C or not (negotiated). Dictionary and fragment size are
// server-wide, so they are not part of the variant.
struct WireVariant {
  bool zstd = false;
  bool checksum = false;
  size_t index() const noexcept { return (zstd ? 1 : 0) | (checksum ? 2 : 0); }
};

// Server-wide encoding settings for shared publications.
struct SharedEncoding {
  uint32_t dictionary_id = 0;            // used when a connection negotiated zstd with it
  size_t compress_threshold = codec::kDefaultCompressThreshold;
  // Shared bodies are fragmented at the smallest frame size every peer accepts,
  // so one encoding serves every connection.
  uint32_t fragment_size = codec::kMinMaxFrameSize;
};

class PublicationRecord {
 public:
  explicit PublicationRecord(v1::Publication publication);

  // Every field but the payload, which is kept once, in body() (payload() decodes it).
  const v1::Publication& publication() const noexcept { return publication_; }
  // The payload, decoded from body(): for tests and tools (delivery sends body()).
  std::string payload() const;
  const std::string& channel() const noexcept { return publication_.channel(); }
  uint64_t offset() const noexcept { return publication_.offset(); }
  const std::string& epoch() const noexcept { return publication_.epoch(); }
  int priority() const noexcept { return publication_.priority(); }
  // P0 and P1 (risk alerts, margin calls): each loop delivers them ahead of the P2/P3
  // publications posted to it, so they may reach a connection before publications of
  // the same channel with lower offsets (protocol.md §13 allows it).
  bool urgent() const noexcept { return priority() <= 1; }
  // Unix milliseconds after which it must not be delivered; 0 = never expires.
  int64_t expires_at_ms() const noexcept;
  // Monotonic microseconds when the record was built (publish accepted): the
  // start of the publish-to-socket-write latency.
  uint64_t accepted_us() const noexcept { return accepted_us_; }
  // Serialized herald.v1.Publication (the uncompressed message body).
  const std::string& body() const noexcept { return body_; }
  // What a history counts for keeping this record: the record and its shared
  // pointer's block, its fields, its body and the plain wire encoding (built at the
  // first delivery, counted from the start; a compressed or checksummed encoding is
  // not counted). An estimate from fixed sizes: the same for the record's whole
  // life, so what a history adds and later takes away agree.
  size_t memory_bytes() const noexcept;

  // The frames for `variant`, encoded on first use with `ctx` (the calling
  // loop's CodecContext) and shared afterwards. Thread-safe: two loops asking at once
  // get the same encoding, built once. Never null; if compression fails the plain
  // encoding is used for that variant.
  const codec::EncodedMessage& encoded(WireVariant variant, const SharedEncoding& enc,
                                       codec::CodecContext& ctx) const;

  ~PublicationRecord();
  PublicationRecord(const PublicationRecord&) = delete;
  PublicationRecord& operator=(const PublicationRecord&) = delete;

 private:
  v1::Publication publication_;  // payload cleared: it is in body_
  std::string body_;
  uint64_t accepted_us_ = 0;
  // One encoding per wire variant, built when a connection first needs it and owned
  // here. Most publications are only ever sent in one variant, and a channel's history
  // may keep thousands of them, so the unused ones cost a null pointer each. Not
  // std::call_once: glibc's makes a futex system call after every first use, which is
  // every record's (2.7 % of heraldd's time in W3); the first use takes one of a few
  // process-wide mutexes instead.
  mutable std::array<std::atomic<const codec::EncodedMessage*>, 4> encoded_{};
};

using PublicationPtr = std::shared_ptr<const PublicationRecord>;

// A publication held by one thread for many queue entries at once (a loop's fan-out of a
// broadcast): the entries count their holds here with plain integers, and the one
// PublicationPtr inside keeps the record alive until the last hold is released.
// Copying a PublicationPtr per entry instead would be an atomic operation per delivery on
// a counter every loop delivering the same record writes to at the same moment.
// Not thread-safe: made, held and released on one thread only.
class HeldPublication {
 public:
  // The caller holds the new object once; release() that hold when done.
  static HeldPublication* make(PublicationPtr p) { return new HeldPublication(std::move(p)); }
  const PublicationRecord* get() const noexcept { return ptr_.get(); }
  void hold() noexcept { ++holds_; }
  void release() noexcept {
    if (--holds_ == 0) delete this;
  }

 private:
  explicit HeldPublication(PublicationPtr p) noexcept : ptr_(std::move(p)) {}
  ~HeldPublication() = default;
  PublicationPtr ptr_;
  size_t holds_ = 1;
};

// A process-wide counter for fragment refs of shared messages (docs/protocol.md
// §7.3: unique among in-progress messages; a global counter is).
uint32_t next_fragment_ref() noexcept;

}  // namespace herald::server
