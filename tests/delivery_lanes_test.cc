// DeliveryLanes: lane order, interleaving between fragments, round robin without
// starvation, partial writes, shedding and limits, timing, and memory. The socket is
// simulated: prepared iovecs are concatenated (whole or partially) into a byte stream
// that a real MessageReader decodes, which also checks sequence numbers (0, 1, 2, ...)
// and the partial-message rules of docs/protocol.md §7.
#include "server/delivery_lanes.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "codec/frame_decoder.h"
#include "codec/message_reader.h"
#include "codec/reassembler.h"
#include "herald.pb.h"

// Live heap bytes and allocation count of this test program, so tests can check that
// empty lanes allocate nothing and that everything queued is freed. Every form of
// new/delete the lanes (and the sanitizer runtime) may route through is replaced, so
// the counts are complete and blocks never cross allocators.
namespace {
std::atomic<size_t> g_live_heap{0};
std::atomic<size_t> g_allocations{0};
std::atomic<bool> g_fail_allocations{false};  // every allocation fails while set
constexpr size_t kHeapHeader = 16;

void* counted_alloc(size_t n) noexcept {
  if (g_fail_allocations.load()) return nullptr;
  void* p = std::malloc(n + kHeapHeader);
  if (p == nullptr) return nullptr;
  *static_cast<size_t*>(p) = n;
  g_live_heap += n;
  ++g_allocations;
  return static_cast<char*>(p) + kHeapHeader;
}
void counted_free(void* p) noexcept {
  if (p == nullptr) return;
  void* block = static_cast<char*>(p) - kHeapHeader;
  g_live_heap -= *static_cast<size_t*>(block);
  std::free(block);
}
}  // namespace

// noinline: inlined into callers, GCC's -Wmismatched-new-delete/-Warray-bounds misread the header.
[[gnu::noinline]] void* operator new(size_t n) {
  void* p = counted_alloc(n);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
[[gnu::noinline]] void* operator new[](size_t n) {
  void* p = counted_alloc(n);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
[[gnu::noinline]] void* operator new(size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n); }
[[gnu::noinline]] void* operator new[](size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n); }
[[gnu::noinline]] void operator delete(void* p) noexcept { counted_free(p); }
[[gnu::noinline]] void operator delete[](void* p) noexcept { counted_free(p); }
[[gnu::noinline]] void operator delete(void* p, size_t) noexcept { counted_free(p); }
[[gnu::noinline]] void operator delete[](void* p, size_t) noexcept { counted_free(p); }
[[gnu::noinline]] void operator delete(void* p, const std::nothrow_t&) noexcept { counted_free(p); }
[[gnu::noinline]] void operator delete[](void* p, const std::nothrow_t&) noexcept { counted_free(p); }

namespace herald::server {
namespace {

using Bytes = std::vector<uint8_t>;

static_assert(sizeof(DeliveryLanes) <= DeliveryLanes::kMaxSize);
static_assert(sizeof(DeliveryLanes) <= 160, "the brief's per-connection bound");

size_t live_heap() { return g_live_heap.load(); }
size_t allocations() { return g_allocations.load(); }

uint8_t payload_byte(uint64_t key, size_t i) { return static_cast<uint8_t>(key * 31 + i * 7 + 1); }

// One message as the client sees it.
struct Received {
  codec::FrameType type = codec::FrameType::kPing;
  uint64_t key = 0;  // Publication offset or Pong nonce
  int priority = -1;
  bool intact = false;
};

// One frame as the client sees it.
struct FrameSeen {
  codec::FrameType type = codec::FrameType::kPing;
  uint32_t sequence = 0;
  bool fragment = false;
  uint32_t ref = 0;
  uint16_t index = 0;
  uint64_t key = 0;  // for unfragmented Publications and Pongs
};

// Decodes a stream as a client would (sequence from `first_sequence`), checking every
// payload. Fails the test on any decoding error, and on a partial last frame unless
// `partial_end` (a stream still being written).
std::vector<Received> decode_messages(const Bytes& stream, bool partial_end = false) {
  codec::ReaderLimits rl;
  rl.compression = false;
  codec::MessageReader reader(rl);
  std::vector<Received> out;
  std::span<const uint8_t> in(stream);
  for (;;) {
    codec::InboundMessage m;
    const codec::DecodeResult r = reader.read(in, 0, m);
    in = in.subspan(r.consumed);
    if (r.status == codec::Status::kNeedMore) break;
    EXPECT_EQ(r.status, codec::Status::kOk) << codec::to_string(r.status) << " at " << reader.error_offset();
    if (r.status != codec::Status::kOk) break;
    Received got;
    got.type = m.type;
    if (m.type == codec::FrameType::kPublication) {
      v1::Publication p;
      EXPECT_TRUE(p.ParseFromArray(m.body.data(), static_cast<int>(m.body.size())));
      got.key = p.offset();
      got.priority = p.priority();
      got.intact = p.channel() == "news";
      for (size_t i = 0; i < p.payload().size(); ++i) {
        got.intact = got.intact && static_cast<uint8_t>(p.payload()[i]) == payload_byte(p.offset(), i);
      }
    } else if (m.type == codec::FrameType::kPong) {
      v1::Pong p;
      EXPECT_TRUE(p.ParseFromArray(m.body.data(), static_cast<int>(m.body.size())));
      got.key = p.nonce();
      got.intact = true;
    }
    out.push_back(got);
  }
  if (!partial_end) {
    EXPECT_EQ(reader.finish(), codec::Status::kOk);
  }
  return out;
}

std::vector<FrameSeen> decode_frames(const Bytes& stream, bool check_sequence = true) {
  codec::DecoderLimits dl;
  dl.check_sequence = check_sequence;
  codec::FrameDecoder decoder(dl);
  std::vector<FrameSeen> out;
  std::span<const uint8_t> in(stream);
  for (;;) {
    codec::Frame f;
    const codec::DecodeResult r = decoder.decode(in, f);
    in = in.subspan(r.consumed);
    if (r.status == codec::Status::kNeedMore) break;
    EXPECT_EQ(r.status, codec::Status::kOk) << codec::to_string(r.status);
    if (r.status != codec::Status::kOk) break;
    FrameSeen s;
    s.type = f.header.type;
    s.sequence = f.header.sequence;
    s.fragment = f.header.fragment();
    std::span<const uint8_t> body = f.payload;
    if (s.fragment) {
      codec::FragmentPrefix prefix;
      EXPECT_EQ(codec::parse_fragment_prefix(body, prefix), codec::Status::kOk);
      s.ref = prefix.ref;
      s.index = prefix.index;
    } else if (s.type == codec::FrameType::kPublication) {
      v1::Publication p;
      EXPECT_TRUE(p.ParseFromArray(body.data(), static_cast<int>(body.size())));
      s.key = p.offset();
    } else if (s.type == codec::FrameType::kPong) {
      v1::Pong p;
      EXPECT_TRUE(p.ParseFromArray(body.data(), static_cast<int>(body.size())));
      s.key = p.nonce();
    }
    out.push_back(s);
  }
  EXPECT_EQ(decoder.finish(), codec::Status::kOk);
  return out;
}

// A simulated socket: each write accepts `write(total)` bytes (clamped to 1..total) of
// what prepare() described.
using WriteFn = std::function<size_t(size_t)>;

// One prepare/write/consumed round. Returns the bytes written.
size_t write_once(DeliveryLanes& lanes, Bytes& out, size_t max_iov = 64, const WriteFn& write = nullptr,
                  uint64_t now = 0, bool urgent_only = false) {
  std::vector<iovec> iov(std::max<size_t>(max_iov, 1));
  const size_t n = lanes.prepare(iov.data(), max_iov, urgent_only);
  size_t total = 0;
  for (size_t i = 0; i < n; ++i) total += iov[i].iov_len;
  size_t w = write && total > 0 ? std::clamp<size_t>(write(total), 1, total) : total;
  const size_t done = w;
  for (size_t i = 0; i < n && w > 0; ++i) {
    const size_t take = std::min(w, iov[i].iov_len);
    const auto* p = static_cast<const uint8_t*>(iov[i].iov_base);
    out.insert(out.end(), p, p + take);
    w -= take;
  }
  lanes.consumed(done, now);
  return done;
}

// Writes until the lanes are empty. Returns the number of writes.
size_t drain(DeliveryLanes& lanes, Bytes& out, size_t max_iov = 64, const WriteFn& write = nullptr) {
  size_t writes = 0;
  while (!lanes.empty()) {
    const size_t w = write_once(lanes, out, max_iov, write);
    EXPECT_GT(w, 0u);
    if (w == 0) break;
    ++writes;
  }
  return writes;
}

class DeliveryLanesTest : public ::testing::Test {
 protected:
  // Small fragments so that a few KiB make a many-fragment message.
  void SetUp() override { enc_.fragment_size = 512; }

  PublicationPtr record(uint64_t offset, int priority, size_t payload_size, const std::string& channel = "news") {
    v1::Publication p;
    p.set_channel(channel);
    p.set_offset(offset);
    p.set_priority(static_cast<v1::Priority>(priority));
    std::string payload(payload_size, '\0');
    for (size_t i = 0; i < payload_size; ++i) payload[i] = static_cast<char>(payload_byte(offset, i));
    p.set_payload(payload);
    auto r = std::make_shared<const PublicationRecord>(std::move(p));
    (void)frames(r);  // encode now, so later heap measurements see only the lanes
    return r;
  }
  const codec::EncodedMessage& frames(const PublicationPtr& r) {
    return r->encoded(WireVariant{false, true}, enc_, ctx_);
  }
  EnqueueOutcome pub(DeliveryLanes& lanes, const PublicationPtr& r, uint64_t now = 0) {
    return lanes.enqueue(r, &frames(r), r->priority(), now);
  }
  EnqueueOutcome pub(DeliveryLanes& lanes, uint64_t offset, int priority, size_t payload_size, uint64_t now = 0) {
    return pub(lanes, record(offset, priority, payload_size), now);
  }
  static codec::EncodedMessage pong(uint64_t nonce, size_t padding = 0) {
    v1::Pong p;
    p.set_nonce(nonce);
    std::string body = p.SerializeAsString();
    // Unknown fields are ignored by the receiver: a way to make a big control frame.
    if (padding > 0) {
      body += std::string("\x9a\x06", 2);  // field 99, length-delimited
      for (uint64_t v = padding;; v >>= 7) {
        body += static_cast<char>((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
        if (v < 0x80) break;
      }
      body += std::string(padding, 'x');
    }
    codec::EncodeOptions o;
    o.checksum = true;
    codec::EncodedMessage m;
    EXPECT_EQ(codec::encode_message(codec::FrameType::kPong,
                                    std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(body.data()), body.size()),
                                    o, nullptr, m),
              codec::Status::kOk);
    return m;
  }

  SharedEncoding enc_;
  codec::CodecContext ctx_;
  OutputLimits limits_;
  LaneCounters counters_;
};

// ------------------------------------------------------------------ order

TEST_F(DeliveryLanesTest, ControlThenP0ThenP1ToP3) {
  DeliveryLanes lanes(&limits_, &counters_);
  ASSERT_EQ(pub(lanes, 30, 3, 40), EnqueueOutcome::kQueued);
  ASSERT_EQ(pub(lanes, 20, 2, 40), EnqueueOutcome::kQueued);
  ASSERT_EQ(pub(lanes, 10, 1, 40), EnqueueOutcome::kQueued);
  ASSERT_EQ(pub(lanes, 1, 0, 40), EnqueueOutcome::kQueued);
  ASSERT_EQ(lanes.enqueue_control(pong(7), 0), EnqueueOutcome::kQueued);
  ASSERT_EQ(pub(lanes, 2, 0, 40), EnqueueOutcome::kQueued);
  EXPECT_EQ(lanes.queued_frames(-1), 1u);
  EXPECT_EQ(lanes.queued_frames(0), 2u);
  EXPECT_EQ(lanes.queued_frames(3), 1u);

  Bytes wire;
  drain(lanes, wire);
  const auto got = decode_messages(wire);
  ASSERT_EQ(got.size(), 6u);
  EXPECT_EQ(got[0].type, codec::FrameType::kPong);
  const std::vector<uint64_t> offsets = {1, 2, 10, 20, 30};
  for (size_t i = 0; i < offsets.size(); ++i) {
    EXPECT_EQ(got[i + 1].key, offsets[i]);
    EXPECT_TRUE(got[i + 1].intact);
  }
  EXPECT_EQ(counters_.frames_out, 6u);
  EXPECT_EQ(counters_.bytes_out, wire.size());
  EXPECT_EQ(lanes.next_sequence(), 6u);
  // The same per frame type, for the metrics.
  EXPECT_EQ(counters_.out.frames[static_cast<size_t>(codec::FrameType::kPublication)], 5u);
  EXPECT_EQ(counters_.out.frames[static_cast<size_t>(codec::FrameType::kPong)], 1u);
  EXPECT_EQ(counters_.out.bytes[static_cast<size_t>(codec::FrameType::kPublication)] +
                counters_.out.bytes[static_cast<size_t>(codec::FrameType::kPong)],
            wire.size());
  EXPECT_EQ(counters_.queued_bytes, 0);
}

// Receipts' "sent": the hook hears of a publication once its last byte is written, in
// the order written, never of control frames, half-written, shed or discarded ones.
TEST_F(DeliveryLanesTest, WrittenHookHearsOfEachPublicationOnceItsLastByteIsWritten) {
  limits_.soft_bytes = 6000;
  DeliveryLanes lanes(&limits_, &counters_);
  ASSERT_EQ(pub(lanes, 1, 1, 40), EnqueueOutcome::kQueued);
  ASSERT_EQ(pub(lanes, 2, 1, 3000), EnqueueOutcome::kQueued);  // fragmented (512-byte frames)
  ASSERT_EQ(lanes.enqueue_control(pong(9), 0), EnqueueOutcome::kQueued);
  ASSERT_EQ(pub(lanes, 3, 0, 40), EnqueueOutcome::kQueued);
  std::vector<uint64_t> written;
  const WrittenHook hook{[](void* ctx, const PublicationRecord& p) noexcept {
                           static_cast<std::vector<uint64_t>*>(ctx)->push_back(p.offset());
                         },
                         &written};
  // Seven bytes at a time: every frame is written in several pieces.
  Bytes wire;
  size_t rounds = 0;
  while (!lanes.empty() && rounds < 100000) {
    iovec iov[64];
    const size_t n = lanes.prepare(iov, 64);
    size_t total = 0;
    for (size_t i = 0; i < n; ++i) total += iov[i].iov_len;
    const size_t w = std::min<size_t>(7, total);
    size_t left = w;
    for (size_t i = 0; i < n && left > 0; ++i) {
      const size_t take = std::min(left, iov[i].iov_len);
      const auto* b = static_cast<const uint8_t*>(iov[i].iov_base);
      wire.insert(wire.end(), b, b + take);
      left -= take;
    }
    lanes.consumed(w, 0, hook);
    // Told exactly when the client has every byte of it: a reader given what was
    // written so far has decoded the same publications, no more, no fewer.
    std::vector<uint64_t> whole;
    for (const Received& m : decode_messages(wire, true)) {
      if (m.type == codec::FrameType::kPublication) whole.push_back(m.key);
    }
    ASSERT_EQ(written, whole) << "after " << wire.size() << " bytes";
    ++rounds;
  }
  EXPECT_EQ(written, (std::vector<uint64_t>{3, 1, 2}));  // P0 first, then P1 in order

  // Shed, discarded and cleared publications are never reported.
  written.clear();
  ASSERT_EQ(pub(lanes, 10, 3, 5000), EnqueueOutcome::kQueued);
  ASSERT_EQ(pub(lanes, 11, 3, 5000), EnqueueOutcome::kShed);
  write_once(lanes, wire, 1);  // a header of 10 only: it stays in flight
  ASSERT_EQ(pub(lanes, 12, 2, 40), EnqueueOutcome::kQueued);
  lanes.discard_queued();  // 12 goes; 10's prepared frames stay
  lanes.consumed(0, 0, hook);
  EXPECT_TRUE(written.empty());
  lanes.clear();
  EXPECT_TRUE(written.empty());
}

TEST_F(DeliveryLanesTest, QueuedBytesGaugeIsTheSumOverTheLoopsLanes) {
  DeliveryLanes a(&limits_, &counters_);
  DeliveryLanes b(&limits_, &counters_);
  ASSERT_EQ(pub(a, 1, 2, 300), EnqueueOutcome::kQueued);
  ASSERT_EQ(pub(b, 2, 0, 700), EnqueueOutcome::kQueued);
  ASSERT_EQ(b.enqueue_control(pong(1), 0), EnqueueOutcome::kQueued);
  EXPECT_EQ(counters_.queued_bytes, static_cast<int64_t>(a.queued_bytes() + b.queued_bytes()));
  Bytes wire;
  write_once(a, wire, 1);  // a header only: the rest stays queued
  EXPECT_EQ(counters_.queued_bytes, static_cast<int64_t>(a.queued_bytes() + b.queued_bytes()));
  b.clear();
  EXPECT_EQ(counters_.queued_bytes, static_cast<int64_t>(a.queued_bytes()));
  {
    DeliveryLanes c(&limits_, &counters_);
    ASSERT_EQ(pub(c, 3, 3, 100), EnqueueOutcome::kQueued);
  }  // destroyed with something queued
  EXPECT_EQ(counters_.queued_bytes, static_cast<int64_t>(a.queued_bytes()));
  drain(a, wire);
  EXPECT_EQ(counters_.queued_bytes, 0);
}

TEST_F(DeliveryLanesTest, DiscardChannelDropsItsQueuedPublicationsButFinishesAStartedOne) {
  limits_.batch_bytes = 2048;
  DeliveryLanes lanes(&limits_, &counters_);
  const PublicationPtr big = record(100, 3, 20 * 1024);  // many fragments of channel "news"
  ASSERT_EQ(pub(lanes, big), EnqueueOutcome::kQueued);
  // Start it: one batch prepared and half written.
  Bytes wire;
  write_once(lanes, wire, 64, [](size_t total) { return total / 2 + 3; });
  ASSERT_GT(lanes.queued_frames(3), 10u);
  ASSERT_EQ(pub(lanes, record(101, 2, 50)), EnqueueOutcome::kQueued);
  ASSERT_EQ(pub(lanes, record(102, 0, 50)), EnqueueOutcome::kQueued);
  ASSERT_EQ(pub(lanes, record(103, 3, 50)), EnqueueOutcome::kQueued);
  ASSERT_EQ(pub(lanes, record(200, 2, 50, "other")), EnqueueOutcome::kQueued);
  const LaneCounters before = counters_;

  EXPECT_EQ(lanes.discard_channel("news"), 3u);  // 101, 102, 103; the started one stays
  EXPECT_EQ(lanes.discard_channel("nobody"), 0u);
  EXPECT_EQ(counters_.queued_bytes, static_cast<int64_t>(lanes.queued_bytes()));
  ASSERT_EQ(lanes.enqueue_control(pong(9), 0), EnqueueOutcome::kQueued);  // the UnsubscribeOk's place
  drain(lanes, wire);

  const auto got = decode_messages(wire);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].type, codec::FrameType::kPublication);
  EXPECT_EQ(got[0].key, 100u);  // completed, before the control frame
  EXPECT_TRUE(got[0].intact);
  EXPECT_EQ(got[1].type, codec::FrameType::kPong);
  EXPECT_EQ(got[1].key, 9u);
  EXPECT_EQ(got[2].type, codec::FrameType::kPublication);
  EXPECT_EQ(got[2].key, 200u);  // another channel's publication is untouched
  for (int p = 0; p < 4; ++p) EXPECT_EQ(counters_.shed[p], before.shed[p]) << "an unsubscribe is not a shed";
  EXPECT_EQ(counters_.queued_bytes, 0);
  EXPECT_TRUE(lanes.empty());
}

TEST_F(DeliveryLanesTest, ABatchTheSocketRefusedGoesBackSoAP0QueuedNextGoesFirst) {
  DeliveryLanes lanes(&limits_, &counters_);
  for (uint64_t i = 1; i <= 20; ++i) ASSERT_EQ(pub(lanes, i, 3, 200), EnqueueOutcome::kQueued);
  std::vector<iovec> iov(64);
  ASSERT_GT(lanes.prepare(iov.data(), iov.size()), 0u);
  ASSERT_EQ(lanes.next_sequence(), 20u);  // the whole backlog fits one batch
  lanes.consumed(0, 0);  // the socket took nothing (EAGAIN)
  // More bulk leaves them prepared.
  ASSERT_EQ(pub(lanes, 21, 3, 200), EnqueueOutcome::kQueued);
  EXPECT_EQ(lanes.next_sequence(), 20u);
  EXPECT_FALSE(lanes.urgent());
  // A P0: every frame goes back, with its sequence number, and the ring is freed.
  const PublicationPtr p0 = record(1000, 0, 200);
  const size_t heap_before_p0 = live_heap();
  ASSERT_EQ(pub(lanes, p0), EnqueueOutcome::kQueued);
  EXPECT_EQ(lanes.next_sequence(), 0u);
  EXPECT_EQ(lanes.queued_frames(3), 21u);
  EXPECT_LT(live_heap(), heap_before_p0);  // the ring went, the P0's entry came
  EXPECT_TRUE(lanes.urgent());
  Bytes wire;
  drain(lanes, wire);
  const auto got = decode_messages(wire);  // also checks the sequence numbers 0, 1, 2 ...
  ASSERT_EQ(got.size(), 22u);
  EXPECT_EQ(got[0].key, 1000u);
  for (size_t i = 1; i < got.size(); ++i) {
    EXPECT_EQ(got[i].key, i);
    EXPECT_TRUE(got[i].intact);
  }
  EXPECT_EQ(counters_.queued[3], 21u);
  EXPECT_EQ(counters_.shed[3], 0u);
  EXPECT_EQ(counters_.frames_out, 22u);
}

TEST_F(DeliveryLanesTest, MessagesGivenBackCanBeShedLikeAnyUnstartedOne) {
  const size_t w = frames(record(1, 3, 200)).wire_size();
  limits_.soft_bytes = 10 * w;
  limits_.hard_bytes = 20 * w;
  DeliveryLanes lanes(&limits_, &counters_);
  for (uint64_t i = 1; i <= 10; ++i) ASSERT_EQ(pub(lanes, i, 3, 200), EnqueueOutcome::kQueued);
  // All ten prepared, and the first one partly written.
  Bytes wire;
  write_once(lanes, wire, 64, [](size_t) { return 5; });
  EXPECT_EQ(lanes.next_sequence(), 10u);
  // A P0 that needs room: the nine not started go back, and the oldest of them (the
  // second message) is dropped.
  ASSERT_EQ(pub(lanes, 100, 0, 200), EnqueueOutcome::kQueued);
  EXPECT_EQ(lanes.next_sequence(), 1u);
  EXPECT_EQ(counters_.shed[3], 1u);
  drain(lanes, wire);
  const auto got = decode_messages(wire);
  ASSERT_EQ(got.size(), 10u);
  EXPECT_EQ(got[0].key, 1u);    // the one already on the wire is finished first
  EXPECT_EQ(got[1].key, 100u);  // then the P0
  for (size_t i = 2; i < got.size(); ++i) EXPECT_EQ(got[i].key, i + 1);  // 3 .. 10: 2 was shed
  EXPECT_EQ(counters_.queued_bytes, 0);
}

TEST_F(DeliveryLanesTest, DiscardChannelAlsoDropsWhatWasPreparedButNotWritten) {
  DeliveryLanes lanes(&limits_, &counters_);
  for (uint64_t i = 1; i <= 5; ++i) ASSERT_EQ(pub(lanes, i, 2, 100), EnqueueOutcome::kQueued);
  ASSERT_EQ(pub(lanes, record(50, 2, 100, "other")), EnqueueOutcome::kQueued);
  // Prepared in one batch; the socket took part of the first frame only.
  Bytes wire;
  ASSERT_EQ(write_once(lanes, wire, 64, [](size_t) { return 3; }), 3u);
  ASSERT_EQ(lanes.next_sequence(), 6u);
  EXPECT_EQ(lanes.discard_channel("news"), 4u);  // 2 .. 5: 1 has started
  ASSERT_EQ(lanes.enqueue_control(pong(9), 0), EnqueueOutcome::kQueued);
  drain(lanes, wire);
  const auto got = decode_messages(wire);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].key, 1u);
  EXPECT_TRUE(got[0].intact);
  EXPECT_EQ(got[1].type, codec::FrameType::kPong);
  EXPECT_EQ(got[2].key, 50u);
  EXPECT_EQ(counters_.queued_bytes, 0);
}

TEST_F(DeliveryLanesTest, DiscardQueuedKeepsOnlyTheFramePartlyWritten) {
  DeliveryLanes lanes(&limits_, &counters_);
  for (uint64_t i = 1; i <= 5; ++i) ASSERT_EQ(pub(lanes, i, 3, 100), EnqueueOutcome::kQueued);
  Bytes wire;
  write_once(lanes, wire, 64, [](size_t) { return 3; });
  lanes.discard_queued();
  EXPECT_EQ(lanes.queued_frames(3), 1u);
  ASSERT_EQ(lanes.enqueue_control(pong(7), 0), EnqueueOutcome::kQueued);  // the Error's place
  drain(lanes, wire);
  const auto got = decode_messages(wire);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].key, 1u);
  EXPECT_TRUE(got[0].intact);
  EXPECT_EQ(got[1].type, codec::FrameType::kPong);
  EXPECT_TRUE(lanes.empty());
  EXPECT_EQ(counters_.queued_bytes, 0);
}

TEST_F(DeliveryLanesTest, AnUrgentOnlyWriteCarriesTheRestOfAStartedFrameThenControlAndP0Only) {
  DeliveryLanes lanes(&limits_, &counters_);
  for (uint64_t i = 1; i <= 5; ++i) ASSERT_EQ(pub(lanes, i, 3, 300), EnqueueOutcome::kQueued);
  Bytes wire;
  EXPECT_EQ(write_once(lanes, wire, 64, nullptr, 0, true), 0u);  // nothing urgent yet
  write_once(lanes, wire, 64, [](size_t) { return 7; });  // the first P3 frame started
  ASSERT_EQ(pub(lanes, 100, 0, 50), EnqueueOutcome::kQueued);
  ASSERT_EQ(pub(lanes, 50, 1, 50), EnqueueOutcome::kQueued);
  ASSERT_EQ(lanes.enqueue_control(pong(8), 0), EnqueueOutcome::kQueued);
  ASSERT_GT(write_once(lanes, wire, 64, nullptr, 0, true), 0u);  // urgent only, all of it taken
  EXPECT_FALSE(lanes.urgent());
  const auto first = decode_messages(wire, true);
  ASSERT_EQ(first.size(), 3u);  // the started P3, the Pong, the P0; not the P1
  EXPECT_EQ(first[0].key, 1u);
  EXPECT_EQ(first[1].type, codec::FrameType::kPong);
  EXPECT_EQ(first[2].key, 100u);
  drain(lanes, wire);
  const auto all = decode_messages(wire);
  ASSERT_EQ(all.size(), 8u);
  std::vector<uint64_t> rest;  // then the P1 and the other P3s, by the round robin
  for (size_t i = 3; i < all.size(); ++i) {
    if (all[i].key != 50u) rest.push_back(all[i].key);
  }
  EXPECT_EQ(rest, (std::vector<uint64_t>{2, 3, 4, 5}));
  EXPECT_EQ(counters_.queued_bytes, 0);
}

TEST_F(DeliveryLanesTest, P0GoesBetweenFragmentsOfAHalfWrittenP3Message) {
  limits_.batch_bytes = 2048;
  DeliveryLanes lanes(&limits_, &counters_);
  const PublicationPtr big = record(100, 3, 20 * 1024);  // about 42 fragments of 512 bytes
  ASSERT_GT(frames(big).frame_count(), 30u);
  ASSERT_EQ(pub(lanes, big), EnqueueOutcome::kQueued);

  // First write: one batch prepared, about half of it written.
  Bytes wire;
  std::vector<iovec> iov(64);
  size_t n = lanes.prepare(iov.data(), iov.size());
  size_t total = 0;
  for (size_t i = 0; i < n; ++i) total += iov[i].iov_len;
  const size_t prepared_frames = lanes.next_sequence();
  ASSERT_GE(prepared_frames, 3u);
  const size_t half = total / 2 + 3;  // in the middle of a frame
  for (size_t i = 0, left = half; i < n && left > 0; ++i) {
    const size_t take = std::min(left, iov[i].iov_len);
    const auto* p = static_cast<const uint8_t*>(iov[i].iov_base);
    wire.insert(wire.end(), p, p + take);
    left -= take;
  }
  lanes.consumed(half, 0);

  // Now urgent work arrives.
  EXPECT_FALSE(lanes.urgent());
  ASSERT_EQ(pub(lanes, 1, 0, 100), EnqueueOutcome::kQueued);
  EXPECT_TRUE(lanes.urgent());
  // The frames not written at all went back to the lane with their sequence numbers:
  // only the frames written, the last of them partly, keep theirs.
  const size_t kept = lanes.next_sequence();
  ASSERT_GE(kept, 1u);
  ASSERT_LT(kept, prepared_frames);
  ASSERT_EQ(lanes.enqueue_control(pong(5), 0), EnqueueOutcome::kQueued);
  ASSERT_EQ(pub(lanes, 2, 0, 100), EnqueueOutcome::kQueued);
  drain(lanes, wire);

  const auto seen = decode_frames(wire);
  // The frame partly written is finished first (its sequence number was fixed), then
  // the Pong and the two P0 messages, then the rest of the P3 message: the prepared
  // frames that had not started did not hold them up.
  ASSERT_GT(seen.size(), kept + 3);
  for (size_t i = 0; i < kept; ++i) EXPECT_TRUE(seen[i].fragment) << i;
  EXPECT_EQ(seen[kept].type, codec::FrameType::kPong);
  EXPECT_FALSE(seen[kept + 1].fragment);
  EXPECT_EQ(seen[kept + 1].key, 1u);
  EXPECT_EQ(seen[kept + 2].key, 2u);
  EXPECT_TRUE(seen[kept + 3].fragment);
  EXPECT_EQ(seen[kept + 3].index, kept);

  const auto got = decode_messages(wire);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].type, codec::FrameType::kPong);
  EXPECT_EQ(got[1].key, 1u);
  EXPECT_EQ(got[2].key, 2u);
  EXPECT_EQ(got[3].key, 100u);  // reassembled last, intact
  EXPECT_TRUE(got[3].intact);
}

TEST_F(DeliveryLanesTest, FragmentedMessagesInEveryLaneStayWithinFourInProgress) {
  limits_.batch_bytes = 700;
  DeliveryLanes lanes(&limits_, &counters_);
  uint64_t offset = 1;
  for (int round = 0; round < 3; ++round) {
    for (int prio = 0; prio <= 3; ++prio) {
      ASSERT_EQ(pub(lanes, offset++, prio, 3000), EnqueueOutcome::kQueued);
      ASSERT_EQ(pub(lanes, offset++, prio, 50), EnqueueOutcome::kQueued);
    }
  }
  ASSERT_EQ(lanes.enqueue_control(pong(1), 0), EnqueueOutcome::kQueued);
  Bytes wire;
  drain(lanes, wire, 64, [](size_t total) { return total / 3 + 1; });
  // The reader allows at most 4 partial messages (§7.5) and decodes all of them.
  const auto got = decode_messages(wire);
  ASSERT_EQ(got.size(), 25u);
  std::map<int, std::vector<uint64_t>> per_lane;
  for (const auto& m : got) {
    EXPECT_TRUE(m.intact);
    if (m.type == codec::FrameType::kPublication) per_lane[m.priority].push_back(m.key);
  }
  for (auto& [prio, keys] : per_lane) {
    EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end())) << "lane " << prio << " out of order";
    EXPECT_EQ(keys.size(), 6u);
  }
}

// ------------------------------------------------------------------ fairness

TEST_F(DeliveryLanesTest, LowerLanesProgressByWeightWhileP1IsRefilled) {
  limits_.soft_bytes = limits_.hard_bytes = 64 * 1024 * 1024;
  limits_.batch_bytes = 4096;
  DeliveryLanes lanes(&limits_, &counters_);
  // Equal-sized messages (same priority field length for P1..P3), so bytes ~ messages.
  std::vector<PublicationPtr> pool[4];
  for (int prio = 1; prio <= 3; ++prio) {
    for (int i = 0; i < 8; ++i) pool[prio].push_back(record(1000 * prio + i, prio, 300));
  }
  const size_t w1 = frames(pool[1][0]).wire_size();
  ASSERT_EQ(frames(pool[3][0]).wire_size(), w1);
  size_t next[4] = {};
  auto top_up = [&] {
    for (int prio = 1; prio <= 3; ++prio) {
      while (lanes.queued_frames(prio) < 20) {
        ASSERT_EQ(pub(lanes, pool[prio][next[prio]++ % pool[prio].size()]), EnqueueOutcome::kQueued);
      }
    }
  };
  Bytes wire;
  for (int i = 0; i < 400; ++i) {
    top_up();
    write_once(lanes, wire);
  }
  lanes.clear();
  // Frames are whole here (full writes), so the stream decodes frame by frame.
  size_t per_prio[4] = {};
  for (const auto& f : decode_frames(wire)) per_prio[f.key / 1000]++;
  const double total = static_cast<double>(per_prio[1] + per_prio[2] + per_prio[3]);
  ASSERT_GT(total, 1000);
  EXPECT_NEAR(per_prio[1] / total, 8.0 / 13, 0.02);
  EXPECT_NEAR(per_prio[2] / total, 4.0 / 13, 0.02);
  EXPECT_NEAR(per_prio[3] / total, 1.0 / 13, 0.02);
}

TEST_F(DeliveryLanesTest, FixedP2AndP3BacklogsFinishWhileP1NeverEmpties) {
  limits_.soft_bytes = limits_.hard_bytes = 64 * 1024 * 1024;
  limits_.batch_bytes = 8192;
  DeliveryLanes lanes(&limits_, &counters_);
  const PublicationPtr p1 = record(1, 1, 500);
  for (uint64_t i = 0; i < 20; ++i) ASSERT_EQ(pub(lanes, 2000 + i, 2, 500), EnqueueOutcome::kQueued);
  ASSERT_EQ(pub(lanes, 3000, 3, 5000), EnqueueOutcome::kQueued);  // fragmented, 10 frames
  for (uint64_t i = 1; i < 20; ++i) ASSERT_EQ(pub(lanes, 3000 + i, 3, 500), EnqueueOutcome::kQueued);
  const size_t backlog = 20 * frames(record(2000, 2, 500)).wire_size() * 2 + 5000;
  size_t p1_bytes = 0;
  int writes = 0;
  Bytes wire;
  while (lanes.queued_frames(2) + lanes.queued_frames(3) > 0) {
    while (lanes.queued_frames(1) < 30) {
      ASSERT_EQ(pub(lanes, p1), EnqueueOutcome::kQueued);
    }
    write_once(lanes, wire);
    ++writes;
    ASSERT_LT(writes, 10000);
  }
  for (const auto& f : decode_frames(wire)) {
    if (!f.fragment && f.key == 1) p1_bytes += frames(p1).wire_size();
  }
  // P3 (weight 1 of 13) needed about 13 times its own bytes: P1 got no more than its
  // 8 shares per P3 share, and nothing waited for P1 to run dry.
  const size_t p3_bytes = counters_.bytes_out - p1_bytes - 20 * frames(record(2000, 2, 500)).wire_size();
  EXPECT_LT(p1_bytes, 8 * p3_bytes + 16 * 1024);
  EXPECT_LT(counters_.bytes_out, 13 * backlog);
  lanes.clear();
  const auto got = decode_messages(wire);
  size_t low = 0;
  for (const auto& m : got) {
    EXPECT_TRUE(m.intact);
    low += m.priority >= 2 ? 1 : 0;
  }
  EXPECT_EQ(low, 40u);
}

// ------------------------------------------------------------------ partial writes

class PartialWrites : public DeliveryLanesTest {
 protected:
  // A mixed queue: control, every lane, fragmented messages in P1 and P3.
  void fill(DeliveryLanes& lanes) {
    for (const auto& r : records_) ASSERT_EQ(pub(lanes, r), EnqueueOutcome::kQueued);
    ASSERT_EQ(lanes.enqueue_control(pong(1), 0), EnqueueOutcome::kQueued);
    ASSERT_EQ(lanes.enqueue_control(pong(2), 0), EnqueueOutcome::kQueued);
  }
  void SetUp() override {
    DeliveryLanesTest::SetUp();
    uint64_t offset = 1;
    for (int prio = 3; prio >= 0; --prio) {
      records_.push_back(record(offset++, prio, 30));
      records_.push_back(record(offset++, prio, prio % 2 == 1 ? 1500 : 200));
      records_.push_back(record(offset++, prio, 1));
    }
  }
  Bytes reference() {
    DeliveryLanes lanes(&limits_);
    fill(lanes);
    Bytes wire;
    drain(lanes, wire);
    return wire;
  }
  std::vector<PublicationPtr> records_;
};

TEST_F(PartialWrites, EveryWriteSizeGivesTheSameStream) {
  const Bytes ref = reference();
  const auto got = decode_messages(ref);
  ASSERT_EQ(got.size(), records_.size() + 2);
  for (const auto& m : got) EXPECT_TRUE(m.intact);
  ASSERT_GT(ref.size(), 4000u);

  for (size_t k = 1; k <= 700; ++k) {
    DeliveryLanes lanes(&limits_);
    fill(lanes);
    Bytes wire;
    drain(lanes, wire, 64, [k](size_t) { return k; });
    ASSERT_EQ(wire, ref) << "write size " << k;
  }
}

TEST_F(PartialWrites, RandomWritesIovLimitsAndBatchSizesGiveTheSameStream) {
  const Bytes ref = reference();
  std::mt19937 rng(12345);
  const size_t iov_limits[] = {1, 2, 3, 5, 64, 1024};
  const size_t batches[] = {0, 1, 100, 600, 4096, 1 << 20};
  for (size_t max_iov : iov_limits) {
    for (size_t batch : batches) {
      for (int trial = 0; trial < 5; ++trial) {
        limits_.batch_bytes = batch;
        DeliveryLanes lanes(&limits_);
        fill(lanes);
        Bytes wire;
        drain(lanes, wire, max_iov, [&](size_t total) { return std::uniform_int_distribution<size_t>(1, total)(rng); });
        ASSERT_EQ(wire, ref) << "max_iov " << max_iov << " batch " << batch;
      }
    }
  }
}

TEST_F(DeliveryLanesTest, BatchLimitAndFirstFrameAlwaysTaken) {
  limits_.batch_bytes = 1000;
  DeliveryLanes lanes(&limits_);
  for (uint64_t i = 1; i <= 10; ++i) ASSERT_EQ(pub(lanes, i, 1, 200), EnqueueOutcome::kQueued);
  const size_t w = frames(record(1, 1, 200)).wire_size();
  std::vector<iovec> iov(64);
  size_t n = lanes.prepare(iov.data(), iov.size());
  size_t total = 0;
  for (size_t i = 0; i < n; ++i) total += iov[i].iov_len;
  EXPECT_EQ(total, (1000 / w) * w);
  EXPECT_EQ(n, 2 * (1000 / w));
  lanes.consumed(total, 0);

  // A frame bigger than the batch still goes, alone.
  limits_.batch_bytes = 10;
  n = lanes.prepare(iov.data(), iov.size());
  EXPECT_EQ(n, 2u);
  EXPECT_EQ(iov[0].iov_len + iov[1].iov_len, w);
  lanes.consumed(0, 0);
  // The unwritten frame is described again, and nothing is added to it past the batch.
  n = lanes.prepare(iov.data(), iov.size());
  EXPECT_EQ(n, 2u);
  lanes.consumed(3, 0);
  n = lanes.prepare(iov.data(), iov.size());
  ASSERT_EQ(n, 2u);
  EXPECT_EQ(iov[0].iov_len, codec::kHeaderSize - 3);
  // With one iovec, a new frame is started with its header alone.
  lanes.consumed(w - 3, 0);
  n = lanes.prepare(iov.data(), 1);
  ASSERT_EQ(n, 1u);
  EXPECT_EQ(iov[0].iov_len, codec::kHeaderSize);
  lanes.consumed(codec::kHeaderSize, 0);
  n = lanes.prepare(iov.data(), 1);
  ASSERT_EQ(n, 1u);
  EXPECT_EQ(iov[0].iov_len, w - codec::kHeaderSize);
  lanes.consumed(iov[0].iov_len, 0);
  EXPECT_EQ(lanes.prepare(iov.data(), 0), 0u);
}

TEST_F(DeliveryLanesTest, ManyTinyFramesGrowTheHeaderRing) {
  limits_.batch_bytes = 1 << 20;
  DeliveryLanes lanes(&limits_, &counters_);
  for (uint64_t i = 0; i < 600; ++i) ASSERT_EQ(lanes.enqueue_control(pong(i), 0), EnqueueOutcome::kQueued);
  for (uint64_t i = 1; i <= 600; ++i) ASSERT_EQ(pub(lanes, i, static_cast<int>(i % 4), 1), EnqueueOutcome::kQueued);
  Bytes wire;
  // Large iovec arrays and partial writes: headers prepared before the ring grew stay valid.
  drain(lanes, wire, 1024, [](size_t total) { return total - total / 3; });
  const auto got = decode_messages(wire);
  ASSERT_EQ(got.size(), 1200u);
  for (size_t i = 0; i < 600; ++i) {
    EXPECT_EQ(got[i].type, codec::FrameType::kPong);
    EXPECT_EQ(got[i].key, i);
  }
  EXPECT_EQ(counters_.frames_out, 1200u);
}

TEST_F(DeliveryLanesTest, SequenceStartsWhereTheConnectionLeftOffAndWraps) {
  DeliveryLanes lanes(&limits_);
  lanes.set_next_sequence(0xFFFFFFFEu);
  for (uint64_t i = 0; i < 4; ++i) ASSERT_EQ(lanes.enqueue_control(pong(i), 0), EnqueueOutcome::kQueued);
  Bytes wire;
  drain(lanes, wire);
  const auto seen = decode_frames(wire, false);
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0].sequence, 0xFFFFFFFEu);
  EXPECT_EQ(seen[1].sequence, 0xFFFFFFFFu);
  EXPECT_EQ(seen[2].sequence, 0u);
  EXPECT_EQ(seen[3].sequence, 1u);
  EXPECT_EQ(lanes.next_sequence(), 2u);
}

// ------------------------------------------------------------------ shedding and limits

TEST_F(DeliveryLanesTest, ShedsP3ThenP2NeverP0OrP1AndCountsExactly) {
  // P1..P3 messages of this payload and 2-byte offsets all have this size.
  const size_t w = frames(record(3001, 3, 200)).wire_size();
  ASSERT_EQ(frames(record(1001, 1, 200)).wire_size(), w);
  limits_.soft_bytes = 10 * w;
  limits_.hard_bytes = 20 * w;
  DeliveryLanes lanes(&limits_, &counters_);

  // Ten P3 fill the soft limit exactly; the eleventh is shed itself.
  for (uint64_t i = 1; i <= 10; ++i) ASSERT_EQ(pub(lanes, 3000 + i, 3, 200), EnqueueOutcome::kQueued);
  EXPECT_EQ(lanes.queued_bytes(), 10 * w);
  EXPECT_EQ(pub(lanes, 3011, 3, 200), EnqueueOutcome::kShed);
  EXPECT_EQ(counters_.shed[3], 1u);

  // Each P2 drops the oldest P3.
  for (uint64_t i = 1; i <= 4; ++i) ASSERT_EQ(pub(lanes, 2000 + i, 2, 200), EnqueueOutcome::kQueued);
  EXPECT_EQ(counters_.shed[3], 5u);
  EXPECT_EQ(lanes.queued_frames(3), 6u);
  EXPECT_EQ(lanes.queued_bytes(), 10 * w);

  // A P1 drops the oldest P3s first ...
  for (uint64_t i = 1; i <= 6; ++i) ASSERT_EQ(pub(lanes, 1000 + i, 1, 200), EnqueueOutcome::kQueued);
  EXPECT_EQ(counters_.shed[3], 11u);
  EXPECT_EQ(lanes.queued_frames(3), 0u);
  // ... then the oldest P2s.
  ASSERT_EQ(pub(lanes, 1007, 1, 200), EnqueueOutcome::kQueued);
  EXPECT_EQ(counters_.shed[2], 1u);
  // A P2 with no P3 left to drop is shed itself; the P2s ahead of it stay.
  EXPECT_EQ(pub(lanes, 2005, 2, 200), EnqueueOutcome::kShed);
  EXPECT_EQ(counters_.shed[2], 2u);
  EXPECT_EQ(lanes.queued_frames(2), 3u);
  for (uint64_t i = 8; i <= 10; ++i) ASSERT_EQ(pub(lanes, 1000 + i, 1, 200), EnqueueOutcome::kQueued);
  EXPECT_EQ(counters_.shed[2], 5u);  // the four queued P2s and the one refused
  EXPECT_EQ(lanes.queued_frames(2), 0u);
  EXPECT_EQ(lanes.queued_bytes(), 10 * w);

  // Nothing left to drop: P1 (and P0) go above the soft limit up to the hard limit.
  for (uint64_t i = 11; i <= 20; ++i) ASSERT_EQ(pub(lanes, 1000 + i, 1, 200), EnqueueOutcome::kQueued);
  EXPECT_EQ(lanes.queued_bytes(), 20 * w);
  EXPECT_EQ(pub(lanes, 1021, 1, 200), EnqueueOutcome::kSlowConsumer);
  EXPECT_EQ(pub(lanes, 1, 0, 200), EnqueueOutcome::kSlowConsumer);
  EXPECT_EQ(pub(lanes, 3012, 3, 200), EnqueueOutcome::kShed);

  EXPECT_EQ(counters_.queued[3], 10u);
  EXPECT_EQ(counters_.queued[2], 4u);
  EXPECT_EQ(counters_.queued[1], 20u);
  EXPECT_EQ(counters_.queued[0], 0u);
  EXPECT_EQ(counters_.shed[3], 12u);
  EXPECT_EQ(counters_.shed[2], 5u);
  EXPECT_EQ(counters_.shed[1], 0u);
  EXPECT_EQ(counters_.shed[0], 0u);

  Bytes wire;
  drain(lanes, wire);
  const auto got = decode_messages(wire);
  ASSERT_EQ(got.size(), 20u);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].key, 1001 + i);
    EXPECT_TRUE(got[i].intact);
  }
}

TEST_F(DeliveryLanesTest, P0AndP1DropLowerLanesOnlyAsFarAsNeeded) {
  const size_t w = frames(record(3001, 3, 200)).wire_size();
  limits_.soft_bytes = 10 * w;
  limits_.hard_bytes = 20 * w;
  DeliveryLanes lanes(&limits_, &counters_);
  for (uint64_t i = 1; i <= 5; ++i) ASSERT_EQ(pub(lanes, 2000 + i, 2, 200), EnqueueOutcome::kQueued);
  for (uint64_t i = 1; i <= 5; ++i) ASSERT_EQ(pub(lanes, 3000 + i, 3, 200), EnqueueOutcome::kQueued);
  ASSERT_EQ(lanes.queued_bytes(), 10 * w);
  // A P0 of almost three messages' worth: three P3s go, oldest first; no P2.
  size_t payload = 3 * w;
  while (frames(record(1, 0, payload)).wire_size() > 3 * w) payload -= 4;
  const PublicationPtr big = record(1, 0, payload);
  const size_t wb = frames(big).wire_size();
  ASSERT_GT(wb, 2 * w);
  ASSERT_LE(wb, 3 * w);
  ASSERT_EQ(pub(lanes, big), EnqueueOutcome::kQueued);
  EXPECT_EQ(counters_.shed[3], 3u);
  EXPECT_EQ(counters_.shed[2], 0u);
  EXPECT_EQ(lanes.queued_bytes(), 7 * w + wb);
  // A P0 bigger than what could ever be made room for: slow consumer, nothing dropped.
  const PublicationPtr huge = record(2, 0, 18 * w);
  EXPECT_EQ(pub(lanes, huge), EnqueueOutcome::kSlowConsumer);
  EXPECT_EQ(counters_.shed[3], 3u);
  EXPECT_EQ(lanes.queued_bytes(), 7 * w + wb);
  // One that fits under hard once every P2/P3 is gone: all of them are dropped.
  const PublicationPtr large = record(3, 1, 12 * w);
  ASSERT_EQ(pub(lanes, large), EnqueueOutcome::kQueued);
  EXPECT_EQ(counters_.shed[3], 5u);
  EXPECT_EQ(counters_.shed[2], 5u);
  Bytes wire;
  drain(lanes, wire);
  const auto got = decode_messages(wire);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].key, 1u);
  EXPECT_EQ(got[1].key, 3u);
}

TEST_F(DeliveryLanesTest, AStartedMessageIsNeverDropped) {
  const size_t w = frames(record(1, 1, 200)).wire_size();
  limits_.soft_bytes = 20 * w;
  limits_.hard_bytes = 40 * w;
  limits_.batch_bytes = 1;  // one frame per prepare
  DeliveryLanes lanes(&limits_, &counters_);
  const PublicationPtr started = record(300, 3, 3000);  // 6+ fragments
  ASSERT_EQ(pub(lanes, started), EnqueueOutcome::kQueued);
  for (uint64_t i = 1; i <= 3; ++i) ASSERT_EQ(pub(lanes, 3000 + i, 3, 200), EnqueueOutcome::kQueued);
  // Its first fragment starts: one byte of it is written.
  std::vector<iovec> iov(8);
  ASSERT_EQ(lanes.prepare(iov.data(), iov.size()), 2u);
  Bytes wire(static_cast<const uint8_t*>(iov[0].iov_base), static_cast<const uint8_t*>(iov[0].iov_base) + 1);
  lanes.consumed(1, 0);
  EXPECT_EQ(lanes.queued_frames(3), frames(started).frame_count() + 3);
  // P1s push everything droppable out: the three small P3s, not the started one.
  for (uint64_t i = 1; i <= 30; ++i) {
    const EnqueueOutcome o = pub(lanes, 100 + i, 1, 200);
    if (o != EnqueueOutcome::kQueued) {
      EXPECT_EQ(o, EnqueueOutcome::kSlowConsumer);
      break;
    }
  }
  EXPECT_EQ(counters_.shed[3], 3u);
  EXPECT_EQ(lanes.queued_frames(3), frames(started).frame_count());
  // The unstarted message ahead of nothing: a new P3 is shed, the started one stays.
  EXPECT_EQ(pub(lanes, 399, 3, 10), EnqueueOutcome::kShed);
  limits_.batch_bytes = 4096;
  drain(lanes, wire);
  const auto got = decode_messages(wire);
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.back().key, 300u);
  EXPECT_TRUE(got.back().intact);
  EXPECT_EQ(got.size(), counters_.queued[1] + 1);
}

TEST_F(DeliveryLanesTest, LargeMessageIntoEmptyQueueIsAccepted) {
  limits_.soft_bytes = 1000;
  limits_.hard_bytes = 2000;
  DeliveryLanes lanes(&limits_, &counters_);
  // Larger than hard: still goes when nothing else is queued ...
  EXPECT_EQ(pub(lanes, 1, 1, 5000), EnqueueOutcome::kQueued);
  // ... but nothing can join it: a P1 cannot be dropped to make room.
  EXPECT_EQ(pub(lanes, 2, 0, 10), EnqueueOutcome::kSlowConsumer);
  Bytes wire;
  drain(lanes, wire);
  // A large P3 alone is accepted too, and dropped for a P2 (it had not started).
  EXPECT_EQ(pub(lanes, 3, 3, 5000), EnqueueOutcome::kQueued);
  EXPECT_EQ(pub(lanes, 4, 2, 10), EnqueueOutcome::kQueued);
  EXPECT_EQ(counters_.shed[3], 1u);
  drain(lanes, wire);
  const auto got = decode_messages(wire);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].key, 1u);
  EXPECT_EQ(got[1].key, 4u);
  EXPECT_TRUE(got[0].intact && got[1].intact);
}

TEST_F(DeliveryLanesTest, ControlFramesCountTowardHardAndOneAlwaysGetsThrough) {
  limits_.soft_bytes = 1000;
  limits_.hard_bytes = 2000;
  DeliveryLanes lanes(&limits_, &counters_);
  // A control frame bigger than hard into an empty queue: accepted.
  EXPECT_EQ(lanes.enqueue_control(pong(1, 3000), 0), EnqueueOutcome::kQueued);
  EXPECT_EQ(lanes.enqueue_control(pong(2), 0), EnqueueOutcome::kSlowConsumer);
  Bytes wire;
  drain(lanes, wire);
  // Control frames are never shed, but count: below hard they pass, above they do not.
  for (uint64_t n = 3;; ++n) {
    const EnqueueOutcome o = lanes.enqueue_control(pong(n, 100), 0);
    if (o == EnqueueOutcome::kSlowConsumer) break;
    ASSERT_EQ(o, EnqueueOutcome::kQueued);
    ASSERT_LE(lanes.queued_bytes(), limits_.hard_bytes);
  }
  EXPECT_EQ(pub(lanes, 1, 3, 10), EnqueueOutcome::kShed);  // above soft
  // Slow consumer: keep what was prepared (half written), drop the rest, send an Error.
  std::vector<iovec> iov(4);
  const size_t n = lanes.prepare(iov.data(), 2);
  ASSERT_EQ(n, 2u);
  const size_t half = (iov[0].iov_len + iov[1].iov_len) / 2;
  {
    size_t left = half;
    for (size_t i = 0; i < n && left > 0; ++i) {
      const size_t take = std::min(left, iov[i].iov_len);
      wire.insert(wire.end(), static_cast<const uint8_t*>(iov[i].iov_base),
                  static_cast<const uint8_t*>(iov[i].iov_base) + take);
      left -= take;
    }
  }
  lanes.consumed(half, 0);
  lanes.discard_queued();
  EXPECT_FALSE(lanes.empty());  // the half-written frame
  EXPECT_EQ(lanes.enqueue_control(pong(999, 5000), 0), EnqueueOutcome::kQueued);
  drain(lanes, wire);
  const auto got = decode_messages(wire);
  ASSERT_GE(got.size(), 3u);
  EXPECT_EQ(got[got.size() - 2].key, 3u);  // the frame that was half written
  EXPECT_EQ(got.back().key, 999u);
}

TEST_F(DeliveryLanesTest, DiscardKeepsOnlyPreparedFramesOfAStartedMessage) {
  limits_.batch_bytes = 1200;
  DeliveryLanes lanes(&limits_, &counters_);
  const PublicationPtr big = record(7, 2, 6000);
  ASSERT_EQ(pub(lanes, big), EnqueueOutcome::kQueued);
  ASSERT_EQ(pub(lanes, 8, 1, 100), EnqueueOutcome::kQueued);
  ASSERT_EQ(lanes.enqueue_control(pong(1), 0), EnqueueOutcome::kQueued);
  Bytes wire;
  ASSERT_GT(write_once(lanes, wire, 64, [](size_t t) { return t - 5; }), 0u);
  const uint32_t prepared = lanes.next_sequence();
  lanes.discard_queued();
  EXPECT_EQ(lanes.queued_bytes(), 5u);
  EXPECT_EQ(lanes.next_sequence(), prepared);
  ASSERT_EQ(lanes.enqueue_control(pong(2), 0), EnqueueOutcome::kQueued);
  drain(lanes, wire);
  // The stream is well-formed: the cut-short fragmented message is simply never completed.
  const auto got = decode_messages(wire);
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.back().type, codec::FrameType::kPong);
  EXPECT_EQ(got.back().key, 2u);
  for (const auto& m : got) EXPECT_NE(m.key, 7u);
}

// ------------------------------------------------------------------ timing, urgency

TEST_F(DeliveryLanesTest, SoftLimitTimingUsesTheGivenClock) {
  const size_t w = frames(record(1, 1, 200)).wire_size();
  limits_.soft_bytes = 4 * w;
  limits_.soft_ms = 10'000;
  DeliveryLanes lanes(&limits_);
  for (uint64_t i = 1; i <= 4; ++i) ASSERT_EQ(pub(lanes, i, 1, 200, 1000 + i), EnqueueOutcome::kQueued);
  EXPECT_FALSE(lanes.soft_limit_exceeded_too_long(100'000));  // at the limit is not above it
  ASSERT_EQ(pub(lanes, 5, 1, 200, 5000), EnqueueOutcome::kQueued);  // above from t = 5000
  ASSERT_EQ(pub(lanes, 6, 1, 200, 6000), EnqueueOutcome::kQueued);
  EXPECT_FALSE(lanes.soft_limit_exceeded_too_long(5000));
  EXPECT_FALSE(lanes.soft_limit_exceeded_too_long(14'999));
  EXPECT_TRUE(lanes.soft_limit_exceeded_too_long(15'000));
  // Writing some but staying above does not restart the clock.
  Bytes wire;
  std::vector<iovec> iov(2);
  ASSERT_EQ(lanes.prepare(iov.data(), 2), 2u);
  lanes.consumed(w, 12'000);
  EXPECT_GT(lanes.queued_bytes(), limits_.soft_bytes);
  EXPECT_TRUE(lanes.soft_limit_exceeded_too_long(15'000));
  // Back under the limit: the clock stops ...
  ASSERT_EQ(lanes.prepare(iov.data(), 2), 2u);
  lanes.consumed(w, 16'000);
  EXPECT_EQ(lanes.queued_bytes(), 4 * w);
  EXPECT_FALSE(lanes.soft_limit_exceeded_too_long(16'000));
  EXPECT_FALSE(lanes.soft_limit_exceeded_too_long(1'000'000));
  // ... and restarts from the next time it goes above.
  ASSERT_EQ(pub(lanes, 7, 1, 200, 20'000), EnqueueOutcome::kQueued);
  EXPECT_FALSE(lanes.soft_limit_exceeded_too_long(29'999));
  EXPECT_TRUE(lanes.soft_limit_exceeded_too_long(30'000));
  lanes.clear();
  EXPECT_FALSE(lanes.soft_limit_exceeded_too_long(1'000'000));
}

TEST_F(DeliveryLanesTest, UrgentWhileControlOrP0Waits) {
  DeliveryLanes lanes(&limits_);
  EXPECT_FALSE(lanes.urgent());
  ASSERT_EQ(pub(lanes, 1, 1, 10), EnqueueOutcome::kQueued);
  ASSERT_EQ(pub(lanes, 2, 3, 10), EnqueueOutcome::kQueued);
  EXPECT_FALSE(lanes.urgent());
  ASSERT_EQ(pub(lanes, 3, 0, 10), EnqueueOutcome::kQueued);
  EXPECT_TRUE(lanes.urgent());
  std::vector<iovec> iov(2);
  ASSERT_EQ(lanes.prepare(iov.data(), 2), 2u);  // the P0 frame is prepared
  EXPECT_FALSE(lanes.urgent());
  lanes.consumed(0, 0);
  ASSERT_EQ(lanes.enqueue_control(pong(1), 0), EnqueueOutcome::kQueued);
  EXPECT_TRUE(lanes.urgent());
  Bytes wire;
  drain(lanes, wire);
  EXPECT_FALSE(lanes.urgent());
  EXPECT_EQ(decode_messages(wire).size(), 4u);
}

// ------------------------------------------------------------------ memory

TEST_F(DeliveryLanesTest, EmptyLanesAllocateNothing) {
  const size_t before = allocations();
  const size_t live = live_heap();
  {
    DeliveryLanes lanes(&limits_, &counters_);
    iovec iov[4];
    EXPECT_EQ(lanes.prepare(iov, 4), 0u);
    lanes.consumed(0, 0);
    EXPECT_TRUE(lanes.empty());
    EXPECT_FALSE(lanes.urgent());
    EXPECT_FALSE(lanes.soft_limit_exceeded_too_long(1'000'000));
    EXPECT_EQ(lanes.queued_frames(-1), 0u);
    lanes.discard_queued();
    lanes.clear();
    EXPECT_EQ(allocations(), before);
  }
  EXPECT_EQ(allocations(), before);
  EXPECT_EQ(live_heap(), live);
  EXPECT_LE(sizeof(DeliveryLanes), 160u);
}

TEST_F(DeliveryLanesTest, EverythingIsFreedAfterConsumedClearAndDestruction) {
  std::vector<PublicationPtr> recs;
  for (uint64_t i = 1; i <= 40; ++i) recs.push_back(record(i, static_cast<int>(i % 4), i % 5 == 0 ? 2000 : 100));
  const size_t baseline = live_heap();

  // consumed(): nodes and the header ring go as the bytes are written.
  {
    DeliveryLanes lanes(&limits_, &counters_);
    for (const auto& r : recs) ASSERT_EQ(pub(lanes, r), EnqueueOutcome::kQueued);
    const size_t per_node = (live_heap() - baseline) / recs.size();
    EXPECT_LE(per_node, 64u) << "bytes per queued publication";
    Bytes wire;
    drain(lanes, wire, 16, [](size_t total) { return total / 2 + 1; });
    EXPECT_EQ(live_heap(), baseline + wire.capacity());
    EXPECT_TRUE(lanes.empty());
  }
  EXPECT_EQ(live_heap(), baseline);

  // clear() with frames half written, and a control frame owned by the lanes.
  {
    DeliveryLanes lanes(&limits_, &counters_);
    for (const auto& r : recs) ASSERT_EQ(pub(lanes, r), EnqueueOutcome::kQueued);
    ASSERT_EQ(lanes.enqueue_control(pong(1, 500), 0), EnqueueOutcome::kQueued);
    iovec iov[16];  // on the stack: the heap must hold only what the lanes own
    ASSERT_GT(lanes.prepare(iov, 16), 0u);
    lanes.consumed(21, 0);
    lanes.clear();
    EXPECT_TRUE(lanes.empty());
    EXPECT_EQ(live_heap(), baseline);
    // Usable again after clear().
    ASSERT_EQ(pub(lanes, recs[0]), EnqueueOutcome::kQueued);
    Bytes wire;
    drain(lanes, wire);
  }
  EXPECT_EQ(live_heap(), baseline);

  // The destructor with everything still queued, some of it in flight.
  {
    DeliveryLanes lanes(&limits_, &counters_);
    for (const auto& r : recs) ASSERT_EQ(pub(lanes, r), EnqueueOutcome::kQueued);
    iovec iov[16];  // on the stack: the heap must hold only what the lanes own
    ASSERT_GT(lanes.prepare(iov, 16), 0u);
    lanes.consumed(100, 0);
  }
  EXPECT_EQ(live_heap(), baseline);

  // discard_queued() then writing the rest.
  {
    DeliveryLanes lanes(&limits_, &counters_);
    for (const auto& r : recs) ASSERT_EQ(pub(lanes, r), EnqueueOutcome::kQueued);
    iovec iov[16];  // on the stack: the heap must hold only what the lanes own
    ASSERT_GT(lanes.prepare(iov, 16), 0u);
    lanes.consumed(100, 0);
    lanes.discard_queued();
    Bytes wire;
    drain(lanes, wire);
    wire = Bytes();
    EXPECT_EQ(live_heap(), baseline);
  }
  EXPECT_EQ(live_heap(), baseline);
}

// A broadcast queues dozens of messages per connection between two writes: after the
// first few, their entries come from one pool allocation, entries freed by writes are
// reused, past the pool they come from the heap again, and everything goes with the lanes.
TEST_F(DeliveryLanesTest, QueuedPublicationsShareOnePoolAllocation) {
  std::vector<PublicationPtr> recs;
  for (uint64_t i = 1; i <= 120; ++i) recs.push_back(record(i, 1, 100));
  {
    // Whatever the decoder allocates once for good is allocated before the baseline.
    DeliveryLanes warm(&limits_, &counters_);
    ASSERT_EQ(pub(warm, recs[0]), EnqueueOutcome::kQueued);
    Bytes wire;
    drain(warm, wire);
    ASSERT_EQ(decode_messages(wire).size(), 1u);
  }
  const size_t baseline = live_heap();
  {
    DeliveryLanes lanes(&limits_, &counters_);
    const size_t before = allocations();
    for (size_t i = 0; i < 36; ++i) ASSERT_EQ(pub(lanes, recs[i]), EnqueueOutcome::kQueued);
    // The lanes' state, four entries on the heap, then one pool for the other 32.
    EXPECT_EQ(allocations() - before, 6u);
    // Writes free entries while more are queued (pool entries are reused), then more
    // than the pool holds are queued at once.
    Bytes wire;
    for (int round = 0; round < 3; ++round) {
      write_once(lanes, wire, 16, [](size_t total) { return total / 2 + 1; });
    }
    for (size_t i = 36; i < recs.size(); ++i) ASSERT_EQ(pub(lanes, recs[i]), EnqueueOutcome::kQueued);
    drain(lanes, wire, 64, [](size_t total) { return total / 3 + 1; });
    EXPECT_EQ(live_heap(), baseline + wire.capacity());  // the pool went with the last entry
    const auto got = decode_messages(wire);
    ASSERT_EQ(got.size(), recs.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].key, i + 1);  // one lane: in order
      EXPECT_TRUE(got[i].intact);
    }
    // Queued again and destroyed unwritten: freed too.
    for (size_t i = 0; i < 50; ++i) ASSERT_EQ(pub(lanes, recs[i]), EnqueueOutcome::kQueued);
  }
  EXPECT_EQ(live_heap(), baseline);
  for (const auto& r : recs) EXPECT_EQ(r.use_count(), 1);
}

TEST_F(DeliveryLanesTest, AllocationFailureIsReportedNotFatal) {
  DeliveryLanes lanes(&limits_, &counters_);
  const PublicationPtr r = record(1, 1, 100);
  codec::EncodedMessage p = pong(1);
  g_fail_allocations = true;
  const EnqueueOutcome a = pub(lanes, r);
  const EnqueueOutcome b = lanes.enqueue_control(std::move(p), 0);
  g_fail_allocations = false;
  EXPECT_EQ(a, EnqueueOutcome::kSlowConsumer);
  EXPECT_EQ(b, EnqueueOutcome::kSlowConsumer);
  EXPECT_EQ(p.frame_count(), 1u);  // left untouched
  EXPECT_TRUE(lanes.empty());

  // More than the lanes' own room for two small frames: the header ring is allocated.
  const PublicationPtr big = record(2, 1, 400);
  ASSERT_EQ(pub(lanes, big), EnqueueOutcome::kQueued);
  iovec iov[4];
  g_fail_allocations = true;
  const size_t n = lanes.prepare(iov, 4);  // the header ring cannot be allocated
  g_fail_allocations = false;
  EXPECT_EQ(n, 0u);
  lanes.consumed(0, 0);
  Bytes wire;
  drain(lanes, wire);
  ASSERT_EQ(decode_messages(wire).size(), 1u);

  // One small publication needs one allocation (the lanes' state), none to be written.
  const size_t before = allocations();
  ASSERT_EQ(pub(lanes, r), EnqueueOutcome::kQueued);
  EXPECT_EQ(allocations() - before, 1u);
  g_fail_allocations = true;
  EXPECT_GT(lanes.prepare(iov, 4), 0u);
  g_fail_allocations = false;
  lanes.consumed(0, 0);
  drain(lanes, wire);
  ASSERT_EQ(decode_messages(wire).size(), 2u);
  EXPECT_TRUE(lanes.empty());
}

// ------------------------------------------------------------------ randomized

// Random enqueues, random partial writes, random limits: the stream always decodes,
// lanes keep their order, P0/P1/control are never lost, and the counters add up.
TEST_F(DeliveryLanesTest, RandomOperationsKeepEveryPromise) {
  std::vector<PublicationPtr> pool;
  std::mt19937 rng(777);
  for (uint64_t i = 0; i < 64; ++i) {
    const size_t size = std::uniform_int_distribution<size_t>(0, 5)(rng) == 0 ? 3000 : rng() % 400;
    pool.push_back(record(i, static_cast<int>(i % 4), size));
  }
  const size_t baseline = live_heap();
  int slow_runs = 0;
  uint64_t dropped_total = 0;
  uint64_t refused_total = 0;
  for (int seed = 0; seed < 30; ++seed) {
    rng.seed(static_cast<unsigned>(seed));
    limits_.soft_bytes = 2000 + rng() % 20000;
    limits_.hard_bytes = limits_.soft_bytes + rng() % 30000;
    limits_.batch_bytes = 1 + rng() % 9000;
    LaneCounters counters;
    uint64_t refused[4] = {};
    uint64_t pongs = 0;
    bool slow = false;
    Bytes wire;
    {
      DeliveryLanes lanes(&limits_, &counters);
      for (int step = 0; step < 400 && !slow; ++step) {
        const unsigned op = rng() % 10;
        if (op < 6) {
          const auto& r = pool[rng() % pool.size()];
          const EnqueueOutcome o = pub(lanes, r);
          if (o == EnqueueOutcome::kShed) {
            ASSERT_GE(r->priority(), 2);
            ++refused[r->priority()];
          }
          if (o == EnqueueOutcome::kSlowConsumer) {
            ASSERT_LE(r->priority(), 1);
            slow = true;
          }
        } else if (op < 7) {
          const EnqueueOutcome o = lanes.enqueue_control(pong(pongs), 0);
          if (o == EnqueueOutcome::kSlowConsumer) {
            slow = true;
          } else {
            ++pongs;
          }
        } else {
          // Partial writes; some of them as a full socket's write of its urgent frames alone.
          const size_t max_iov = 1 + rng() % 20;
          write_once(lanes, wire, max_iov, [&](size_t total) { return 1 + rng() % total; }, 0, op == 9);
        }
        ASSERT_LE(lanes.queued_bytes(), limits_.hard_bytes + 8000) << "seed " << seed;
      }
      if (slow) {
        lanes.discard_queued();
        ASSERT_EQ(lanes.enqueue_control(pong(pongs++), 0), EnqueueOutcome::kQueued);
      }
      drain(lanes, wire, 7, [&](size_t total) { return 1 + rng() % total; });
    }
    EXPECT_EQ(live_heap(), baseline + wire.capacity()) << "seed " << seed;

    const auto got = decode_messages(wire);
    uint64_t delivered[4] = {};
    std::vector<uint64_t> pong_keys;
    for (const auto& m : got) {
      ASSERT_TRUE(m.intact);
      if (m.type == codec::FrameType::kPong) {
        pong_keys.push_back(m.key);
      } else {
        ++delivered[m.priority];
      }
    }
    // Control frames keep their order; none is lost unless discarded for the close.
    EXPECT_TRUE(std::is_sorted(pong_keys.begin(), pong_keys.end()));
    if (!slow) {
      EXPECT_EQ(pong_keys.size(), pongs) << "seed " << seed;
    }
    for (int p = 0; p < 4; ++p) {
      const uint64_t dropped = counters.shed[p] - refused[p];
      if (slow) {
        // discard_queued() threw away the unsent rest: uncounted, but never more than was queued.
        EXPECT_LE(delivered[p] + dropped, counters.queued[p]) << "seed " << seed << " P" << p;
      } else {
        EXPECT_EQ(delivered[p] + dropped, counters.queued[p]) << "seed " << seed << " P" << p;
      }
      if (p <= 1) {
        EXPECT_EQ(counters.shed[p], 0u);
      }
    }
    EXPECT_EQ(counters.bytes_out, wire.size());
    slow_runs += slow ? 1 : 0;
    for (int p = 0; p < 4; ++p) {
      refused_total += refused[p];
      dropped_total += counters.shed[p] - refused[p];
    }
  }
  // The random limits really exercised every path.
  EXPECT_GT(slow_runs, 0);
  EXPECT_LT(slow_runs, 30);
  EXPECT_GT(dropped_total, 0u);
  EXPECT_GT(refused_total, 0u);
  std::printf("random runs: %d slow consumers, %llu dropped, %llu refused\n", slow_runs,
              static_cast<unsigned long long>(dropped_total), static_cast<unsigned long long>(refused_total));
}

// A loop's fan-out queues one record in many connections' lanes through one
// HeldPublication: the record lives while any entry holds it (written, shed, discarded
// or cleared, each entry releases its hold once), the PublicationPtr is copied once
// whatever the fan-out, and the entries behave as PublicationPtr ones do (hook, discard).
TEST_F(DeliveryLanesTest, AHeldPublicationLivesUntilItsLastEntryGoes) {
  limits_.soft_bytes = 1000;
  const PublicationPtr r = record(7, 3, 3000);  // fragmented (512-byte frames)
  const PublicationPtr small = record(8, 3, 40);
  const size_t heap_before = live_heap();
  {
    DeliveryLanes written(&limits_, &counters_), shed(&limits_, &counters_), discarded(&limits_, &counters_),
        cleared(&limits_, &counters_);
    HeldPublication* held = HeldPublication::make(r);
    ASSERT_EQ(pub(shed, small), EnqueueOutcome::kQueued);  // room for nothing more under soft
    EXPECT_EQ(shed.enqueue(held, &frames(r), 3, 0), EnqueueOutcome::kShed);
    for (DeliveryLanes* l : {&written, &discarded, &cleared}) {
      ASSERT_EQ(l->enqueue(held, &frames(r), 3, 0), EnqueueOutcome::kQueued);
    }
    held->release();  // the loop's own hold: the three entries keep it
    EXPECT_EQ(r.use_count(), 2);  // this test's and the hold's, however many entries
    // Written completely: the hook hears of the record itself.
    std::vector<uint64_t> heard;
    const WrittenHook hook{[](void* ctx, const PublicationRecord& p) noexcept {
                             static_cast<std::vector<uint64_t>*>(ctx)->push_back(p.offset());
                           },
                           &heard};
    Bytes wire;
    for (int i = 0; i < 100 && !written.empty(); ++i) {
      iovec iov[64];
      const size_t n = written.prepare(iov, 64);
      size_t total = 0;
      for (size_t k = 0; k < n; ++k) {
        const auto* b = static_cast<const uint8_t*>(iov[k].iov_base);
        wire.insert(wire.end(), b, b + iov[k].iov_len);
        total += iov[k].iov_len;
      }
      written.consumed(total, 0, hook);
    }
    EXPECT_EQ(heard, (std::vector<uint64_t>{7}));
    const auto got = decode_messages(wire);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_TRUE(got[0].intact);
    EXPECT_EQ(r.use_count(), 2);
    // Dropped by unsubscribing: found by its channel like any entry.
    EXPECT_EQ(discarded.discard_channel("news"), 1u);
    EXPECT_TRUE(discarded.empty());
    EXPECT_EQ(r.use_count(), 2);
    // Cleared half-written (a closing socket): the last hold goes, and the record's copy.
    iovec iov[4];
    ASSERT_GT(cleared.prepare(iov, 4), 0u);
    cleared.consumed(5, 0);
    cleared.clear();
    EXPECT_EQ(r.use_count(), 1);
  }
  EXPECT_EQ(live_heap(), heap_before);  // the hold and every entry are freed
}

// ------------------------------------------------------------------ state channels (collapse)

class CollapseTest : public DeliveryLanesTest {
 protected:
  PublicationPtr keyed(uint64_t offset, int priority, const std::string& key, size_t payload_size = 200,
                       const std::string& channel = "news") {
    v1::Publication p;
    p.set_channel(channel);
    p.set_offset(offset);
    p.set_priority(static_cast<v1::Priority>(priority));
    p.set_collapse_key(key);
    std::string payload(payload_size, '\0');
    for (size_t i = 0; i < payload_size; ++i) payload[i] = static_cast<char>(payload_byte(offset, i));
    p.set_payload(payload);
    auto r = std::make_shared<const PublicationRecord>(std::move(p));
    (void)frames(r);
    return r;
  }
  EnqueueOutcome put(DeliveryLanes& lanes, const PublicationPtr& r, bool collapse = true) {
    return lanes.enqueue(r, &frames(r), r->priority(), 0, collapse);
  }
  static std::vector<uint64_t> offsets(const Bytes& wire) {
    std::vector<uint64_t> out;
    for (const auto& f : decode_frames(wire)) out.push_back(f.key);
    return out;
  }
};

TEST_F(CollapseTest, ANewerValueReplacesTheQueuedOneOfItsKeyAndGoesLast) {
  DeliveryLanes lanes(&limits_, &counters_);
  ASSERT_EQ(put(lanes, keyed(1, 2, "A")), EnqueueOutcome::kQueued);
  ASSERT_EQ(put(lanes, keyed(2, 2, "B")), EnqueueOutcome::kQueued);
  const size_t two = lanes.queued_bytes();
  ASSERT_EQ(put(lanes, keyed(3, 2, "A")), EnqueueOutcome::kQueued);  // A@1 goes
  EXPECT_EQ(lanes.queued_bytes(), two);
  ASSERT_EQ(put(lanes, keyed(4, 2, "C")), EnqueueOutcome::kQueued);
  ASSERT_EQ(put(lanes, keyed(5, 2, "B")), EnqueueOutcome::kQueued);  // B@2 goes
  EXPECT_EQ(counters_.collapsed[2], 2u);
  EXPECT_EQ(counters_.queued[2], 5u);
  EXPECT_EQ(counters_.shed[2], 0u);
  EXPECT_EQ(lanes.queued_frames(2), 3u);
  Bytes wire;
  drain(lanes, wire);
  // The latest value of every key, offsets increasing: resuming from any offset seen
  // misses no key's latest value.
  EXPECT_EQ(offsets(wire), (std::vector<uint64_t>{3, 4, 5}));
  const auto got = decode_messages(wire);
  for (const auto& m : got) EXPECT_TRUE(m.intact);
}

TEST_F(CollapseTest, OnlySameChannelSameKeyCollapsibleAndUnstarted) {
  DeliveryLanes lanes(&limits_, &counters_);
  ASSERT_EQ(put(lanes, keyed(1, 2, "A")), EnqueueOutcome::kQueued);
  ASSERT_EQ(put(lanes, keyed(2, 2, "A", 200, "other")), EnqueueOutcome::kQueued);  // other channel
  ASSERT_EQ(put(lanes, keyed(3, 2, "")), EnqueueOutcome::kQueued);                  // no key
  ASSERT_EQ(put(lanes, keyed(4, 2, "")), EnqueueOutcome::kQueued);                  // no key: never collapses
  ASSERT_EQ(put(lanes, keyed(5, 2, "B"), false), EnqueueOutcome::kQueued);          // not a state channel
  ASSERT_EQ(put(lanes, keyed(6, 2, "B")), EnqueueOutcome::kQueued);  // B@5 was not queued as collapsible
  ASSERT_EQ(put(lanes, keyed(7, 2, "B"), false), EnqueueOutcome::kQueued);  // collapse off: B@6 stays
  EXPECT_EQ(counters_.collapsed[2], 0u);
  ASSERT_EQ(put(lanes, keyed(8, 2, "A")), EnqueueOutcome::kQueued);  // replaces A@1 of "news" only
  EXPECT_EQ(counters_.collapsed[2], 1u);
  Bytes wire;
  drain(lanes, wire);
  EXPECT_EQ(offsets(wire), (std::vector<uint64_t>{2, 3, 4, 5, 6, 7, 8}));
}

TEST_F(CollapseTest, AStartedMessageIsNotReplaced) {
  limits_.batch_bytes = 1;  // one frame per prepare
  DeliveryLanes lanes(&limits_, &counters_);
  const PublicationPtr big = keyed(1, 2, "A", 3000);  // several fragments
  ASSERT_GT(frames(big).frame_count(), 2u);
  ASSERT_EQ(put(lanes, big), EnqueueOutcome::kQueued);
  Bytes wire;
  write_once(lanes, wire);  // its first fragment is on the wire
  ASSERT_EQ(put(lanes, keyed(2, 2, "A")), EnqueueOutcome::kQueued);
  EXPECT_EQ(counters_.collapsed[2], 0u);
  ASSERT_EQ(put(lanes, keyed(3, 2, "A")), EnqueueOutcome::kQueued);  // A@2 had not started
  EXPECT_EQ(counters_.collapsed[2], 1u);
  drain(lanes, wire);
  const auto got = decode_messages(wire);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].key, 1u);
  EXPECT_EQ(got[1].key, 3u);
  EXPECT_TRUE(got[0].intact);
}

TEST_F(CollapseTest, AcrossPrioritiesTheNewOneGoesToItsOwnLane) {
  DeliveryLanes lanes(&limits_, &counters_);
  ASSERT_EQ(put(lanes, keyed(1, 3, "A")), EnqueueOutcome::kQueued);
  ASSERT_EQ(put(lanes, keyed(2, 3, "B")), EnqueueOutcome::kQueued);
  ASSERT_EQ(put(lanes, keyed(3, 1, "A")), EnqueueOutcome::kQueued);
  EXPECT_EQ(counters_.collapsed[3], 1u);
  EXPECT_EQ(lanes.queued_frames(3), 1u);
  EXPECT_EQ(lanes.queued_frames(1), 1u);
  Bytes wire;
  drain(lanes, wire);
  EXPECT_EQ(offsets(wire), (std::vector<uint64_t>{3, 2}));  // P1 first
}

TEST_F(CollapseTest, ASlowConsumerOfFewKeysStaysBoundedInsteadOfShedding) {
  const size_t w = frames(keyed(1001, 3, "k0")).wire_size();
  limits_.soft_bytes = 4 * w;
  limits_.hard_bytes = 8 * w;
  DeliveryLanes lanes(&limits_, &counters_);
  // Four keys fill the soft limit; a thousand more updates of them never shed (each
  // replaces its key's queued value) and the queue stays at four messages.
  uint64_t offset = 1000;
  for (int round = 0; round < 250; ++round) {
    for (int k = 0; k < 4; ++k) {
      ASSERT_EQ(put(lanes, keyed(++offset, 3, "k" + std::to_string(k))), EnqueueOutcome::kQueued);
    }
  }
  EXPECT_EQ(lanes.queued_bytes(), 4 * w);
  EXPECT_EQ(counters_.shed[3], 0u);
  EXPECT_EQ(counters_.collapsed[3], 996u);
  // A fifth key over the soft limit is shed as any P3 (nothing to replace).
  EXPECT_EQ(put(lanes, keyed(++offset, 3, "k4")), EnqueueOutcome::kShed);
  // A bigger value of a key that would still not fit is refused, and the older value stays.
  const PublicationPtr bigger = keyed(++offset, 3, "k0", 2 * 200 + 64);
  ASSERT_GT(frames(bigger).wire_size(), w);
  EXPECT_EQ(put(lanes, bigger), EnqueueOutcome::kShed);
  EXPECT_EQ(counters_.collapsed[3], 996u);
  EXPECT_EQ(lanes.queued_bytes(), 4 * w);
  Bytes wire;
  drain(lanes, wire);
  EXPECT_EQ(offsets(wire), (std::vector<uint64_t>{1997, 1998, 1999, 2000}));
  EXPECT_TRUE(lanes.empty());
}

TEST_F(CollapseTest, ReplacedMessagesAreFreedAndIdleLanesStaySmall) {
  static_assert(sizeof(DeliveryLanes) <= 40, "idle lanes stay 40 bytes");
  std::vector<PublicationPtr> recs;
  for (uint64_t i = 1; i <= 50; ++i) recs.push_back(keyed(i, 2, "k" + std::to_string(i % 3)));
  const size_t before = live_heap();
  {
    DeliveryLanes lanes(&limits_, &counters_);
    for (const auto& r : recs) ASSERT_EQ(put(lanes, r), EnqueueOutcome::kQueued);
    EXPECT_EQ(lanes.queued_frames(2), 3u);
    for (const auto& r : recs) EXPECT_LE(r.use_count(), r == recs[47] || r == recs[48] || r == recs[49] ? 2 : 1);
    Bytes wire;
    drain(lanes, wire);
    EXPECT_EQ(offsets(wire), (std::vector<uint64_t>{48, 49, 50}));
    EXPECT_EQ(live_heap(), before + wire.capacity());
  }
}

}  // namespace
}  // namespace herald::server
