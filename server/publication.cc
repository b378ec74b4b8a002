// PublicationRecord: serialized once, encoded once per wire variant.
#include "server/publication.h"

#include <chrono>
#include <mutex>

namespace herald::server {

namespace {
std::atomic<uint32_t> g_fragment_ref{1};
// Taken only for a record's first encoding of a variant, chosen by the record's address.
std::array<std::mutex, 64> g_encode_locks;
}  // namespace

uint32_t next_fragment_ref() noexcept { return g_fragment_ref.fetch_add(1, std::memory_order_relaxed); }

PublicationRecord::PublicationRecord(v1::Publication publication) : publication_(std::move(publication)) {
  body_ = publication_.SerializeAsString();
  // Released, not cleared: a cleared protobuf string keeps its buffer.
  std::unique_ptr<std::string>(publication_.release_payload());
  accepted_us_ = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                           std::chrono::steady_clock::now().time_since_epoch())
                                           .count());
}

std::string PublicationRecord::payload() const {
  v1::Publication p;
  if (!p.ParseFromString(body_)) return {};
  return std::move(*p.mutable_payload());
}

int64_t PublicationRecord::expires_at_ms() const noexcept {
  if (publication_.ttl_s() == 0) return 0;
  return publication_.created_at_ms() + int64_t{publication_.ttl_s()} * 1000;
}

size_t PublicationRecord::memory_bytes() const noexcept {
  // A set string field of the protobuf is a std::string of its own on the heap,
  // with its characters in a second block once they do not fit inside it.
  const auto field = [](const std::string& s) -> size_t {
    if (s.empty()) return 0;
    return sizeof(std::string) + (s.capacity() > 15 ? s.capacity() + 1 : 0);
  };
  const v1::Publication& p = publication_;
  constexpr size_t kSharedBlock = 16;  // make_shared's reference counts
  // One encoding: the plain one, one frame, points at the body instead of copying
  // it, so it is the EncodedMessage alone. A compressed or checksummed variant
  // holds its own frames as well, and is not counted.
  const size_t encoding = sizeof(codec::EncodedMessage);
  return sizeof(*this) + kSharedBlock + field(p.channel()) + field(p.epoch()) + field(p.message_id()) +
         field(p.type()) + field(p.collapse_key()) + field(p.content_type()) + body_.capacity() + encoding;
}

PublicationRecord::~PublicationRecord() {
  for (auto& e : encoded_) delete e.load(std::memory_order_relaxed);
}

const codec::EncodedMessage& PublicationRecord::encoded(WireVariant variant, const SharedEncoding& enc,
                                                        codec::CodecContext& ctx) const {
  const size_t i = variant.index();
  if (const codec::EncodedMessage* e = encoded_[i].load(std::memory_order_acquire)) return *e;
  // First use of this variant: the record's stripe lock makes a second loop asking at
  // the same moment wait for this encoding instead of building its own.
  std::lock_guard lock(g_encode_locks[(reinterpret_cast<uintptr_t>(this) / alignof(PublicationRecord)) %
                                      g_encode_locks.size()]);
  if (const codec::EncodedMessage* e = encoded_[i].load(std::memory_order_relaxed)) return *e;
  codec::EncodeOptions o;
  o.checksum = variant.checksum;
  o.compress = variant.zstd;
  o.dictionary_id = variant.zstd ? enc.dictionary_id : 0;
  o.compress_threshold = enc.compress_threshold;
  o.max_frame_size = enc.fragment_size;
  o.max_message_size = SIZE_MAX;  // checked against the receiver when queued
  o.max_fragments = UINT32_MAX;
  o.fragment_ref = next_fragment_ref();
  o.borrow_payload = true;  // body_ lives as long as the record, and never changes
  std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(body_.data()), body_.size());
  auto m = std::make_unique<codec::EncodedMessage>();
  codec::Status s = codec::encode_message(codec::FrameType::kPublication, bytes, o, &ctx.compressor, *m);
  if (!codec::ok(s)) {
    o.compress = false;  // e.g. an unknown dictionary: send it plain rather than not at all
    (void)codec::encode_message(codec::FrameType::kPublication, bytes, o, nullptr, *m);
  }
  encoded_[i].store(m.get(), std::memory_order_release);
  return *m.release();
}

}  // namespace herald::server
