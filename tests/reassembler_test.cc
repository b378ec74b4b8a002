// Reassembler and fragment prefix: every rule fails at the fragment that breaks it, and
// memory is freed and capped. Frames are built by hand (no decoder involved).
#include "codec/reassembler.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <new>
#include <vector>

// Live heap bytes of this test program, so tests can check that what a Reassembler holds is
// what it reports (plain new/delete only; each block carries its size in a 16-byte header).
namespace {
std::atomic<size_t> g_live_heap{0};
// Allocations above this many bytes throw std::bad_alloc (to test out-of-memory handling).
std::atomic<size_t> g_fail_above{SIZE_MAX};
constexpr size_t kHeapHeader = 16;
}  // namespace

// noinline: inlined into callers, GCC's -Wmismatched-new-delete/-Warray-bounds misread the header.
[[gnu::noinline]] void* operator new(size_t n) {
  if (n > g_fail_above.load()) throw std::bad_alloc();
  void* p = std::malloc(n + kHeapHeader);
  if (p == nullptr) throw std::bad_alloc();
  *static_cast<size_t*>(p) = n;
  g_live_heap += n;
  return static_cast<char*>(p) + kHeapHeader;
}
[[gnu::noinline]] void operator delete(void* p) noexcept {
  if (p == nullptr) return;
  void* block = static_cast<char*>(p) - kHeapHeader;
  g_live_heap -= *static_cast<size_t*>(block);
  std::free(block);
}
[[gnu::noinline]] void operator delete(void* p, size_t) noexcept { operator delete(p); }

namespace herald::codec {
namespace {

size_t live_heap() { return g_live_heap.load(); }

// A fragment frame whose payload lives in `bytes` (keep the Fragment alive while using frame()).
struct Fragment {
  FrameHeader header;
  std::vector<uint8_t> bytes;
  Frame frame() const { return Frame{header, bytes}; }
};

Fragment make_fragment(uint32_t ref, uint16_t index, bool last, const std::vector<uint8_t>& piece,
                       FrameType type = FrameType::kPublication, uint16_t flags = 0) {
  Fragment f;
  f.header.type = type;
  f.header.flags = static_cast<uint16_t>(flags | kFlagFragment);
  f.bytes.resize(kFragmentPrefixSize);
  encode_fragment_prefix(FragmentPrefix{ref, index, last}, f.bytes.data());
  f.bytes.insert(f.bytes.end(), piece.begin(), piece.end());
  f.header.length = static_cast<uint32_t>(f.bytes.size());
  return f;
}

// Distinct, position-dependent bytes so a swapped or dropped piece shows up.
std::vector<uint8_t> piece_of(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed * 31 + i * 7 + 1);
  return v;
}

Status add(Reassembler& r, const Fragment& f, uint64_t now, ReassembledMessage& out) {
  return r.add(f.frame(), now, out);
}

// After an error: sticky, and nothing held.
void expect_failed(const Reassembler& r, Status s) {
  EXPECT_EQ(r.error(), s);
  EXPECT_EQ(r.buffered_bytes(), 0u);
  EXPECT_EQ(r.partial_messages(), 0u);
  EXPECT_EQ(r.next_deadline_ms(), std::numeric_limits<uint64_t>::max());
}

// ---- prefix ----

TEST(FragmentPrefix, EncodeIsBigEndian) {
  uint8_t b[kFragmentPrefixSize];
  encode_fragment_prefix(FragmentPrefix{0x01020304, 0x0506, true}, b);
  EXPECT_EQ(std::vector<uint8_t>(b, b + 8), (std::vector<uint8_t>{1, 2, 3, 4, 5, 6, 0, 1}));
  encode_fragment_prefix(FragmentPrefix{0xFFFFFFFF, 0xFFFF, false}, b);
  EXPECT_EQ(std::vector<uint8_t>(b, b + 8), (std::vector<uint8_t>{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0}));
}

TEST(FragmentPrefix, RoundTrip) {
  for (uint32_t ref : {0u, 1u, 0x80000000u, 0xFFFFFFFFu}) {
    for (uint16_t index : {uint16_t{0}, uint16_t{1}, uint16_t{127}, uint16_t{0xFFFF}}) {
      for (bool last : {false, true}) {
        uint8_t b[kFragmentPrefixSize + 3] = {};
        encode_fragment_prefix(FragmentPrefix{ref, index, last}, b);
        FragmentPrefix p;
        ASSERT_EQ(parse_fragment_prefix(b, p), Status::kOk);  // trailing bytes are ignored
        EXPECT_EQ(p.ref, ref);
        EXPECT_EQ(p.index, index);
        EXPECT_EQ(p.last, last);
      }
    }
  }
}

TEST(FragmentPrefix, ReservedBitsAreRejected) {
  for (int bit = 1; bit < 16; ++bit) {
    uint8_t b[kFragmentPrefixSize];
    encode_fragment_prefix(FragmentPrefix{7, 0, bit % 2 == 0}, b);
    put_u16(b + 6, static_cast<uint16_t>(get_u16(b + 6) | (1u << bit)));
    FragmentPrefix p{99, 99, true};
    EXPECT_EQ(parse_fragment_prefix(b, p), Status::kBadFragmentHeader) << "bit " << bit;
    EXPECT_EQ(p.ref, 99u);  // untouched on error
  }
}

TEST(FragmentPrefix, ShortPayload) {
  const uint8_t b[kFragmentPrefixSize] = {};
  for (size_t n = 0; n < kFragmentPrefixSize; ++n) {
    FragmentPrefix p;
    EXPECT_EQ(parse_fragment_prefix(std::span<const uint8_t>(b, n), p), Status::kBodyTooShort) << n;
  }
}

TEST(Reassembler, BadPrefixFailsAdd) {
  Reassembler r;
  ReassembledMessage out;
  ASSERT_EQ(add(r, make_fragment(1, 0, false, piece_of(10, 1)), 0, out), Status::kNeedMore);
  Fragment f = make_fragment(1, 1, false, piece_of(10, 2));
  f.bytes[7] |= 0x02;
  EXPECT_EQ(add(r, f, 0, out), Status::kBadFragmentHeader);
  expect_failed(r, Status::kBadFragmentHeader);
}

TEST(Reassembler, ShortPayloadFailsAdd) {
  for (size_t n = 0; n < kFragmentPrefixSize; ++n) {
    Reassembler r;
    ReassembledMessage out;
    ASSERT_EQ(add(r, make_fragment(1, 0, false, piece_of(10, 1)), 0, out), Status::kNeedMore);
    Fragment f = make_fragment(1, 1, true, {});
    f.bytes.resize(n);
    EXPECT_EQ(add(r, f, 0, out), Status::kBodyTooShort) << n;
    expect_failed(r, Status::kBodyTooShort);
  }
}

// ---- in order ----

void check_in_order(size_t n, uint16_t flags, FrameType type) {
  SCOPED_TRACE(testing::Message() << "fragments=" << n << " flags=" << flags);
  Reassembler r;
  ReassembledMessage out;
  std::vector<uint8_t> expected;
  for (size_t i = 0; i < n; ++i) {
    const bool last = i + 1 == n;
    const std::vector<uint8_t> piece = piece_of(1 + (i * 13) % 50, static_cast<uint8_t>(i));
    // The K flag is per frame: alternate it to show it doesn't matter.
    const uint16_t f = static_cast<uint16_t>(flags | (i % 2 ? kFlagChecksummed : 0));
    const Status s = add(r, make_fragment(42, static_cast<uint16_t>(i), last, piece, type, f), 1000 + i, out);
    expected.insert(expected.end(), piece.begin(), piece.end());
    if (last) {
      ASSERT_EQ(s, Status::kOk);
    } else {
      ASSERT_EQ(s, Status::kNeedMore);
      EXPECT_EQ(r.partial_messages(), 1u);
      EXPECT_EQ(r.buffered_bytes(), expected.size());
      EXPECT_EQ(r.next_deadline_ms(), 1000u + 10'000u + 1u);  // from the first fragment
    }
  }
  EXPECT_EQ(out.body, expected);
  EXPECT_EQ(out.type, type);
  EXPECT_EQ(out.flags, flags & kFlagCompressed);
  EXPECT_EQ(r.partial_messages(), 0u);
  EXPECT_EQ(r.buffered_bytes(), 0u);
  EXPECT_EQ(r.error(), Status::kOk);
  EXPECT_EQ(r.next_deadline_ms(), std::numeric_limits<uint64_t>::max());
}

TEST(Reassembler, InOrder) {
  for (size_t n : {1, 2, 3, 128}) {
    check_in_order(n, 0, FrameType::kPublication);
    check_in_order(n, kFlagCompressed, FrameType::kPublication);
    check_in_order(n, kFlagCompressed, FrameType::kPublish);
    check_in_order(n, kFlagChecksummed, FrameType::kPublish);
  }
}

TEST(Reassembler, EmptySingleFragmentIsAnEmptyMessage) {
  Reassembler r;
  ReassembledMessage out;
  out.body = {1, 2, 3};
  ASSERT_EQ(add(r, make_fragment(5, 0, true, {}, FrameType::kPublish, kFlagCompressed), 0, out), Status::kOk);
  EXPECT_TRUE(out.body.empty());
  EXPECT_EQ(out.type, FrameType::kPublish);
  EXPECT_EQ(out.flags, kFlagCompressed);
}

TEST(Reassembler, OutIsUntouchedUntilComplete) {
  Reassembler r;
  ReassembledMessage out;
  out.body = {9};
  ASSERT_EQ(add(r, make_fragment(1, 0, false, {1}), 0, out), Status::kNeedMore);
  EXPECT_EQ(out.body, std::vector<uint8_t>{9});
}

TEST(Reassembler, InterleavedByRef) {
  Reassembler r;
  ReassembledMessage out;
  const auto a0 = piece_of(5, 1), a1 = piece_of(6, 2), a2 = piece_of(7, 3);
  const auto b0 = piece_of(8, 4), b1 = piece_of(9, 5), b2 = piece_of(3, 6);
  ASSERT_EQ(add(r, make_fragment(0xA, 0, false, a0), 0, out), Status::kNeedMore);
  ASSERT_EQ(add(r, make_fragment(0xB, 0, false, b0, FrameType::kPublish, kFlagCompressed), 1, out),
            Status::kNeedMore);
  ASSERT_EQ(add(r, make_fragment(0xA, 1, false, a1), 2, out), Status::kNeedMore);
  ASSERT_EQ(add(r, make_fragment(0xB, 1, false, b1, FrameType::kPublish, kFlagCompressed), 3, out),
            Status::kNeedMore);
  EXPECT_EQ(r.partial_messages(), 2u);
  EXPECT_EQ(r.buffered_bytes(), a0.size() + a1.size() + b0.size() + b1.size());
  ASSERT_EQ(add(r, make_fragment(0xA, 2, true, a2), 4, out), Status::kOk);
  std::vector<uint8_t> a = a0;
  a.insert(a.end(), a1.begin(), a1.end());
  a.insert(a.end(), a2.begin(), a2.end());
  EXPECT_EQ(out.body, a);
  EXPECT_EQ(out.type, FrameType::kPublication);
  EXPECT_EQ(out.flags, 0);
  EXPECT_EQ(r.partial_messages(), 1u);
  EXPECT_EQ(r.buffered_bytes(), b0.size() + b1.size());
  EXPECT_EQ(r.next_deadline_ms(), 1u + 10'000u + 1u);  // B's start is now the earliest
  ASSERT_EQ(add(r, make_fragment(0xB, 2, true, b2, FrameType::kPublish, kFlagCompressed), 5, out), Status::kOk);
  std::vector<uint8_t> b = b0;
  b.insert(b.end(), b1.begin(), b1.end());
  b.insert(b.end(), b2.begin(), b2.end());
  EXPECT_EQ(out.body, b);
  EXPECT_EQ(out.type, FrameType::kPublish);
  EXPECT_EQ(out.flags, kFlagCompressed);
  EXPECT_EQ(r.partial_messages(), 0u);
  EXPECT_EQ(r.buffered_bytes(), 0u);
}

TEST(Reassembler, RefCanBeReusedAfterCompletion) {
  Reassembler r;
  ReassembledMessage out;
  ASSERT_EQ(add(r, make_fragment(3, 0, false, {1}), 0, out), Status::kNeedMore);
  ASSERT_EQ(add(r, make_fragment(3, 1, true, {2}), 0, out), Status::kOk);
  ASSERT_EQ(add(r, make_fragment(3, 0, false, {3}), 0, out), Status::kNeedMore);
  ASSERT_EQ(add(r, make_fragment(3, 1, true, {4}), 0, out), Status::kOk);
  EXPECT_EQ(out.body, (std::vector<uint8_t>{3, 4}));
}

// ---- order and mismatch ----

struct Step {
  uint32_t ref;
  uint16_t index;
  bool last;
  FrameType type = FrameType::kPublication;
  uint16_t flags = 0;
};

// Feeds steps; all but the final one must be accepted; the final one must fail with `s`.
void expect_fails_at_last_step(const std::vector<Step>& steps, Status s) {
  Reassembler r;
  ReassembledMessage out;
  for (size_t i = 0; i < steps.size(); ++i) {
    const Step& st = steps[i];
    const Status got = add(r, make_fragment(st.ref, st.index, st.last, piece_of(4, static_cast<uint8_t>(i)),
                                            st.type, st.flags),
                           0, out);
    if (i + 1 < steps.size()) {
      ASSERT_TRUE(got == Status::kNeedMore || got == Status::kOk) << "step " << i << ": " << to_string(got);
    } else {
      EXPECT_EQ(got, s) << to_string(got);
    }
  }
  expect_failed(r, s);
}

TEST(Reassembler, DuplicateFragment) {
  expect_fails_at_last_step({{1, 0, false}, {1, 1, false}, {1, 1, false}}, Status::kFragmentOutOfOrder);
  expect_fails_at_last_step({{1, 0, false}, {1, 1, false}, {1, 1, true}}, Status::kFragmentOutOfOrder);
  expect_fails_at_last_step({{1, 0, false}, {1, 1, false}, {1, 0, false}}, Status::kFragmentOutOfOrder);
}

TEST(Reassembler, MissingFragment) {
  expect_fails_at_last_step({{1, 0, false}, {1, 2, false}}, Status::kFragmentOutOfOrder);
  expect_fails_at_last_step({{1, 0, false}, {1, 1, false}, {1, 3, true}}, Status::kFragmentOutOfOrder);
}

TEST(Reassembler, DuplicateStart) {
  expect_fails_at_last_step({{1, 0, false}, {1, 0, false}}, Status::kFragmentOutOfOrder);
  expect_fails_at_last_step({{1, 0, false}, {2, 0, false}, {1, 0, true}}, Status::kFragmentOutOfOrder);
}

TEST(Reassembler, ContinuationWithUnknownRef) {
  expect_fails_at_last_step({{1, 1, false}}, Status::kFragmentOutOfOrder);
  expect_fails_at_last_step({{1, 0, false}, {2, 1, true}}, Status::kFragmentOutOfOrder);
  // After completion the ref is unknown again.
  expect_fails_at_last_step({{1, 0, false}, {1, 1, true}, {1, 2, true}}, Status::kFragmentOutOfOrder);
}

TEST(Reassembler, MismatchedType) {
  expect_fails_at_last_step({{1, 0, false, FrameType::kPublication}, {1, 1, true, FrameType::kPublish}},
                            Status::kFragmentMismatch);
  expect_fails_at_last_step({{1, 0, false, FrameType::kPublish}, {1, 1, false, FrameType::kPublication}},
                            Status::kFragmentMismatch);
}

TEST(Reassembler, MismatchedCompressedFlag) {
  expect_fails_at_last_step({{1, 0, false, FrameType::kPublication, kFlagCompressed},
                             {1, 1, true, FrameType::kPublication, 0}},
                            Status::kFragmentMismatch);
  expect_fails_at_last_step({{1, 0, false, FrameType::kPublication, 0},
                             {1, 1, false, FrameType::kPublication, kFlagCompressed | kFlagChecksummed}},
                            Status::kFragmentMismatch);
}

TEST(Reassembler, ChecksumFlagMayDiffer) {
  Reassembler r;
  ReassembledMessage out;
  ASSERT_EQ(add(r, make_fragment(1, 0, false, {1}, FrameType::kPublish, kFlagChecksummed | kFlagCompressed), 0, out),
            Status::kNeedMore);
  ASSERT_EQ(add(r, make_fragment(1, 1, false, {2}, FrameType::kPublish, kFlagCompressed), 0, out), Status::kNeedMore);
  ASSERT_EQ(add(r, make_fragment(1, 2, true, {3}, FrameType::kPublish, kFlagChecksummed | kFlagCompressed), 0, out),
            Status::kOk);
  EXPECT_EQ(out.body, (std::vector<uint8_t>{1, 2, 3}));
  EXPECT_EQ(out.flags, kFlagCompressed);  // neither K nor F leaks into the message
}

TEST(Reassembler, ControlTypeIsRejected) {
  // Defensive: the frame decoder already refuses fragmented control frames.
  expect_fails_at_last_step({{1, 0, false, FrameType::kPing}}, Status::kFragmentedControl);
  expect_fails_at_last_step({{1, 0, false}, {1, 1, true, FrameType::kAck}}, Status::kFragmentedControl);
  expect_fails_at_last_step({{1, 0, true, static_cast<FrameType>(0x0FFF)}}, Status::kFragmentedControl);
}

TEST(Reassembler, NonFragmentFrameIsACallerBug) {
  Reassembler r;
  ReassembledMessage out;
  ASSERT_EQ(add(r, make_fragment(1, 0, false, {1}), 0, out), Status::kNeedMore);
  Fragment f = make_fragment(1, 1, true, {2});
  f.header.flags = 0;
  EXPECT_EQ(add(r, f, 0, out), Status::kInternal);
  expect_failed(r, Status::kInternal);
}

// ---- empty fragments ----

TEST(Reassembler, FloodOfEmptyFragments) {
  Reassembler r;
  ReassembledMessage out;
  ASSERT_EQ(add(r, make_fragment(1, 0, false, {1, 2}), 0, out), Status::kNeedMore);
  // The first empty non-last fragment ends it; the flood behind it never gets in.
  EXPECT_EQ(add(r, make_fragment(1, 1, false, {}), 0, out), Status::kEmptyFragment);
  expect_failed(r, Status::kEmptyFragment);
  for (uint16_t i = 2; i < 1000; ++i) {
    ASSERT_EQ(add(r, make_fragment(1, i, false, {}), 0, out), Status::kEmptyFragment);
  }
  expect_failed(r, Status::kEmptyFragment);
}

TEST(Reassembler, EmptyFirstFragment) {
  Reassembler r;
  ReassembledMessage out;
  EXPECT_EQ(add(r, make_fragment(1, 0, false, {}), 0, out), Status::kEmptyFragment);
  expect_failed(r, Status::kEmptyFragment);
}

TEST(Reassembler, EmptyLastFragmentIsFine) {
  Reassembler r;
  ReassembledMessage out;
  ASSERT_EQ(add(r, make_fragment(1, 0, false, {7}), 0, out), Status::kNeedMore);
  ASSERT_EQ(add(r, make_fragment(1, 1, true, {}), 0, out), Status::kOk);
  EXPECT_EQ(out.body, std::vector<uint8_t>{7});
  EXPECT_EQ(r.buffered_bytes(), 0u);
}

// ---- counts ----

TEST(Reassembler, TooManyFragments) {
  for (bool last : {false, true}) {
    Reassembler r;
    ReassembledMessage out;
    for (uint16_t i = 0; i < 128; ++i) {
      ASSERT_EQ(add(r, make_fragment(9, i, false, {static_cast<uint8_t>(i)}), 0, out), Status::kNeedMore) << i;
    }
    EXPECT_EQ(r.buffered_bytes(), 128u);
    EXPECT_EQ(add(r, make_fragment(9, 128, last, {1}), 0, out), Status::kTooManyFragments);
    expect_failed(r, Status::kTooManyFragments);
  }
}

TEST(Reassembler, TooManyFragmentsHonoursTheLimit) {
  ReassemblyLimits lim;
  lim.max_fragments = 2;
  Reassembler r(lim);
  ReassembledMessage out;
  ASSERT_EQ(add(r, make_fragment(1, 0, false, {1}), 0, out), Status::kNeedMore);
  ASSERT_EQ(add(r, make_fragment(1, 1, true, {1}), 0, out), Status::kOk);  // exactly 2
  ASSERT_EQ(add(r, make_fragment(1, 0, false, {1}), 0, out), Status::kNeedMore);
  ASSERT_EQ(add(r, make_fragment(1, 1, false, {1}), 0, out), Status::kNeedMore);
  EXPECT_EQ(add(r, make_fragment(1, 2, true, {1}), 0, out), Status::kTooManyFragments);
  expect_failed(r, Status::kTooManyFragments);
}

TEST(Reassembler, FifthConcurrentMessage) {
  Reassembler r;
  ReassembledMessage out;
  for (uint32_t ref = 0; ref < 4; ++ref) {
    ASSERT_EQ(add(r, make_fragment(ref, 0, false, {1}), 0, out), Status::kNeedMore);
  }
  // A one-fragment message needs no slot, so it is still fine with four in progress.
  ASSERT_EQ(add(r, make_fragment(100, 0, true, {5}), 0, out), Status::kOk);
  EXPECT_EQ(r.partial_messages(), 4u);
  EXPECT_EQ(add(r, make_fragment(4, 0, false, {1}), 0, out), Status::kTooManyPartialMessages);
  expect_failed(r, Status::kTooManyPartialMessages);
}

TEST(Reassembler, FinishingOneFreesASlot) {
  Reassembler r;
  ReassembledMessage out;
  for (uint32_t ref = 0; ref < 4; ++ref) {
    ASSERT_EQ(add(r, make_fragment(ref, 0, false, {static_cast<uint8_t>(ref)}), 0, out), Status::kNeedMore);
  }
  ASSERT_EQ(add(r, make_fragment(1, 1, true, {}), 0, out), Status::kOk);
  EXPECT_EQ(out.body, std::vector<uint8_t>{1});
  ASSERT_EQ(add(r, make_fragment(4, 0, false, {4}), 0, out), Status::kNeedMore);
  // The remaining slots were moved around; each ref still finds its own bytes.
  for (uint32_t ref : {0u, 2u, 3u, 4u}) {
    ASSERT_EQ(add(r, make_fragment(ref, 1, true, {0xEE}), 0, out), Status::kOk);
    EXPECT_EQ(out.body, (std::vector<uint8_t>{static_cast<uint8_t>(ref), 0xEE}));
  }
  EXPECT_EQ(r.partial_messages(), 0u);
  EXPECT_EQ(r.buffered_bytes(), 0u);
}

// ---- sizes ----

TEST(Reassembler, MessageExactlyAtTheLimit) {
  ReassemblyLimits lim;
  lim.max_message_size = 100;
  Reassembler r(lim);
  ReassembledMessage out;
  ASSERT_EQ(add(r, make_fragment(1, 0, false, piece_of(40, 1)), 0, out), Status::kNeedMore);
  ASSERT_EQ(add(r, make_fragment(1, 1, false, piece_of(40, 2)), 0, out), Status::kNeedMore);
  ASSERT_EQ(add(r, make_fragment(1, 2, true, piece_of(20, 3)), 0, out), Status::kOk);
  EXPECT_EQ(out.body.size(), 100u);
  ASSERT_EQ(add(r, make_fragment(2, 0, true, piece_of(100, 3)), 0, out), Status::kOk);
}

TEST(Reassembler, MessageTooLargeAtTheCrossingFragment) {
  ReassemblyLimits lim;
  lim.max_message_size = 100;
  for (bool last : {false, true}) {
    Reassembler r(lim);
    ReassembledMessage out;
    ASSERT_EQ(add(r, make_fragment(1, 0, false, piece_of(40, 1)), 0, out), Status::kNeedMore);
    ASSERT_EQ(add(r, make_fragment(1, 1, false, piece_of(40, 2)), 0, out), Status::kNeedMore);
    EXPECT_EQ(add(r, make_fragment(1, 2, last, piece_of(21, 3)), 0, out), Status::kReassemblyTooLarge);
    expect_failed(r, Status::kReassemblyTooLarge);
  }
  Reassembler single(lim);
  ReassembledMessage out;
  EXPECT_EQ(add(single, make_fragment(1, 0, true, piece_of(101, 3)), 0, out), Status::kReassemblyTooLarge);
  expect_failed(single, Status::kReassemblyTooLarge);
}

TEST(Reassembler, MemoryCapAcrossPartials) {
  ReassemblyLimits lim;
  lim.max_message_size = 80;
  lim.max_buffered_bytes = 100;
  {
    Reassembler r(lim);
    ReassembledMessage out;
    ASSERT_EQ(add(r, make_fragment(1, 0, false, piece_of(50, 1)), 0, out), Status::kNeedMore);
    ASSERT_EQ(add(r, make_fragment(2, 0, false, piece_of(40, 2)), 0, out), Status::kNeedMore);
    ASSERT_EQ(add(r, make_fragment(3, 0, false, piece_of(10, 3)), 0, out), Status::kNeedMore);  // exactly 100
    EXPECT_EQ(r.buffered_bytes(), 100u);
    EXPECT_EQ(add(r, make_fragment(2, 1, false, piece_of(1, 4)), 0, out), Status::kReassemblyMemoryExceeded);
    expect_failed(r, Status::kReassemblyMemoryExceeded);
  }
  {
    // The completing piece counts too, and so does a one-fragment message while others wait.
    Reassembler r(lim);
    ReassembledMessage out;
    ASSERT_EQ(add(r, make_fragment(1, 0, false, piece_of(70, 1)), 0, out), Status::kNeedMore);
    ASSERT_EQ(add(r, make_fragment(2, 0, true, piece_of(30, 2)), 0, out), Status::kOk);
    EXPECT_EQ(add(r, make_fragment(3, 0, true, piece_of(31, 2)), 0, out), Status::kReassemblyMemoryExceeded);
    expect_failed(r, Status::kReassemblyMemoryExceeded);
  }
}

// What buffered_bytes() reports is what the heap holds, plus small bookkeeping: per slot
// (sizeof(Slot) < 128) and per piece (a 24-byte vector in a list that at most doubles).
constexpr size_t kSlotOverhead = 128;
constexpr size_t kPieceOverhead = 48;

TEST(Reassembler, HeapHeldIsWhatIsReported) {
  ReassemblyLimits lim;
  lim.max_message_size = 100'000;
  lim.max_buffered_bytes = 150'000;
  Reassembler r(lim);
  ReassembledMessage out;
  const size_t base = live_heap();
  EXPECT_EQ(live_heap() - base, 0u);  // nothing allocated up front
  size_t pieces = 0;
  for (uint16_t i = 0; i < 100; ++i) {
    for (uint32_t ref = 0; ref < 3; ++ref) {
      const Fragment f = make_fragment(ref, i, false, piece_of(i % 2 ? 1 : 499, static_cast<uint8_t>(ref)));
      const size_t before = live_heap();
      ASSERT_EQ(r.add(f.frame(), 0, out), Status::kNeedMore);
      ++pieces;
      // No slack: each piece costs its bytes plus bookkeeping, never a re-grown buffer.
      const size_t held = live_heap() - base - f.bytes.capacity();  // f is the test's
      EXPECT_GE(held, r.buffered_bytes());
      EXPECT_LE(held, r.buffered_bytes() + 4 * kSlotOverhead + pieces * kPieceOverhead) << i;
      EXPECT_LE(live_heap() - before, f.bytes.size() + kSlotOverhead + 100 * kPieceOverhead);
    }
  }
  EXPECT_EQ(r.buffered_bytes(), 3u * 50 * 500);
  // Completing moves the joined bytes out; the slot's pieces are freed.
  ASSERT_EQ(r.add(make_fragment(1, 100, true, piece_of(3, 9)).frame(), 0, out), Status::kOk);
  EXPECT_EQ(out.body.size(), 50u * 500 + 3);
  EXPECT_EQ(out.body.capacity(), out.body.size());
  {
    ReassembledMessage gone = std::move(out);
  }
  EXPECT_EQ(r.buffered_bytes(), 2u * 50 * 500);
  EXPECT_LE(live_heap() - base, r.buffered_bytes() + 4 * kSlotOverhead + 200 * kPieceOverhead);
  // An error frees everything, slot array included.
  ASSERT_EQ(r.add(make_fragment(0, 0, false, {1}).frame(), 0, out), Status::kFragmentOutOfOrder);
  EXPECT_EQ(live_heap(), base);
}

TEST(Reassembler, OnePieceAboveTheMemoryCap) {
  ReassemblyLimits lim;
  lim.max_message_size = 1000;
  lim.max_buffered_bytes = 100;
  Reassembler r(lim);
  ReassembledMessage out;
  ASSERT_EQ(add(r, make_fragment(1, 0, true, piece_of(100, 1)), 0, out), Status::kOk);
  EXPECT_EQ(add(r, make_fragment(1, 0, false, piece_of(101, 1)), 0, out), Status::kReassemblyMemoryExceeded);
  expect_failed(r, Status::kReassemblyMemoryExceeded);
}

// Out of memory is an error like any other: reported, sticky, and everything freed.
TEST(Reassembler, AllocationFailure) {
  struct FailAbove {
    explicit FailAbove(size_t n) { g_fail_above = n; }
    ~FailAbove() { g_fail_above = SIZE_MAX; }
  };
  const Fragment big = make_fragment(2, 0, false, piece_of(5000, 1));
  const Fragment big_single = make_fragment(2, 0, true, piece_of(5000, 1));
  const Fragment last = make_fragment(1, 1, true, piece_of(3000, 2));
  const size_t base = live_heap();
  for (int where = 0; where < 3; ++where) {
    Reassembler r;
    ReassembledMessage out;
    ASSERT_EQ(add(r, make_fragment(1, 0, false, piece_of(3000, 1)), 0, out), Status::kNeedMore);
    Status s;
    {
      FailAbove guard(4000);
      const Fragment& f = where == 0 ? big : where == 1 ? big_single : last;  // copy, copy, join (6000)
      s = add(r, f, 0, out);
    }
    EXPECT_EQ(s, Status::kReassemblyMemoryExceeded) << where;
    expect_failed(r, Status::kReassemblyMemoryExceeded);
    EXPECT_EQ(live_heap(), base) << where;
  }
}

// ---- time ----

TEST(Reassembler, NeverFinishedTimesOut) {
  ReassemblyLimits lim;
  lim.timeout_ms = 1000;
  Reassembler r(lim);
  ReassembledMessage out;
  EXPECT_EQ(r.next_deadline_ms(), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(r.expire(5'000'000), Status::kOk);  // nothing partial, nothing to expire
  ASSERT_EQ(add(r, make_fragment(1, 0, false, piece_of(30, 1)), 5000, out), Status::kNeedMore);
  ASSERT_EQ(add(r, make_fragment(1, 1, false, piece_of(30, 2)), 5900, out), Status::kNeedMore);
  EXPECT_EQ(r.next_deadline_ms(), 6001u);  // from the first fragment, not the latest
  EXPECT_EQ(r.expire(5999), Status::kOk);
  EXPECT_EQ(r.expire(6000), Status::kOk);  // exactly timeout_ms old is still fine
  EXPECT_EQ(r.buffered_bytes(), 60u);
  EXPECT_EQ(r.expire(6001), Status::kReassemblyTimeout);
  expect_failed(r, Status::kReassemblyTimeout);
  // Its next fragment (or anything else) fails too.
  EXPECT_EQ(add(r, make_fragment(1, 2, true, piece_of(1, 3)), 6002, out), Status::kReassemblyTimeout);
  EXPECT_EQ(add(r, make_fragment(2, 0, true, piece_of(1, 3)), 6002, out), Status::kReassemblyTimeout);
  EXPECT_EQ(r.expire(0), Status::kReassemblyTimeout);
}

TEST(Reassembler, LateFragmentTimesOutWithoutATimer) {
  ReassemblyLimits lim;
  lim.timeout_ms = 1000;
  Reassembler r(lim);
  ReassembledMessage out;
  ASSERT_EQ(add(r, make_fragment(1, 0, false, piece_of(30, 1)), 0, out), Status::kNeedMore);
  EXPECT_EQ(add(r, make_fragment(1, 1, true, piece_of(30, 2)), 1001, out), Status::kReassemblyTimeout);
  expect_failed(r, Status::kReassemblyTimeout);
}

TEST(Reassembler, AnyOldPartialFailsTheNextFragment) {
  ReassemblyLimits lim;
  lim.timeout_ms = 1000;
  Reassembler r(lim);
  ReassembledMessage out;
  ASSERT_EQ(add(r, make_fragment(1, 0, false, {1}), 0, out), Status::kNeedMore);
  ASSERT_EQ(add(r, make_fragment(2, 0, false, {2}), 500, out), Status::kNeedMore);
  EXPECT_EQ(r.next_deadline_ms(), 1001u);
  ASSERT_EQ(add(r, make_fragment(1, 1, true, {1}), 1000, out), Status::kOk);
  EXPECT_EQ(r.next_deadline_ms(), 1501u);
  ASSERT_EQ(add(r, make_fragment(3, 0, false, {3}), 1400, out), Status::kNeedMore);
  // Ref 3 is young, but ref 2 is too old at 1501.
  EXPECT_EQ(add(r, make_fragment(3, 1, true, {3}), 1501, out), Status::kReassemblyTimeout);
  expect_failed(r, Status::kReassemblyTimeout);
}

TEST(Reassembler, ClockSteppingBackIsNoTimePassing) {
  ReassemblyLimits lim;
  lim.timeout_ms = 1000;
  Reassembler r(lim);
  ReassembledMessage out;
  ASSERT_EQ(add(r, make_fragment(1, 0, false, {1}), 10'000, out), Status::kNeedMore);
  EXPECT_EQ(r.expire(0), Status::kOk);
  ASSERT_EQ(add(r, make_fragment(1, 1, true, {2}), 5, out), Status::kOk);
}

TEST(Reassembler, DeadlineSaturates) {
  ReassemblyLimits lim;
  lim.timeout_ms = std::numeric_limits<uint64_t>::max();
  Reassembler r(lim);
  ReassembledMessage out;
  ASSERT_EQ(add(r, make_fragment(1, 0, false, {1}), 7, out), Status::kNeedMore);
  EXPECT_EQ(r.next_deadline_ms(), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(r.expire(std::numeric_limits<uint64_t>::max()), Status::kOk);
  lim.timeout_ms = 10;
  r.set_limits(lim);
  EXPECT_EQ(r.next_deadline_ms(), 18u);
  EXPECT_EQ(r.expire(18), Status::kReassemblyTimeout);
}

// ---- many connections under attack ----

TEST(Reassembler, ThousandConnectionsStayUnderTheirCaps) {
  constexpr size_t kConnections = 1000;
  constexpr size_t kMaxFrame = 1024;  // the adversary's fragments are full frames
  ReassemblyLimits lim;
  lim.max_fragments = 16;
  lim.max_partial_messages = 4;
  lim.max_message_size = 4096;
  lim.max_buffered_bytes = 8192;
  std::vector<Reassembler> conns(kConnections, Reassembler(lim));
  std::vector<Status> failed(kConnections, Status::kOk);
  Fragment f = make_fragment(0, 0, false, piece_of(kMaxFrame, 1));
  ReassembledMessage out;
  const size_t base = live_heap();
  size_t peak = 0;
  // Each connection opens as many messages as it may and feeds them full frames without
  // ever finishing one, with its own mix of refs, so connections fail at different points.
  for (uint16_t round = 0; round < 8; ++round) {
    size_t total = 0;
    for (size_t c = 0; c < kConnections; ++c) {
      const uint32_t refs = 1 + c % 4;
      for (uint32_t ref = 0; ref < refs; ++ref) {
        encode_fragment_prefix(FragmentPrefix{ref, round, false}, f.bytes.data());
        const Status s = conns[c].add(f.frame(), round, out);
        if (failed[c] == Status::kOk && s != Status::kNeedMore) failed[c] = s;
        if (failed[c] != Status::kOk) {
          ASSERT_EQ(s, failed[c]);  // sticky
          ASSERT_EQ(conns[c].buffered_bytes(), 0u);
          ASSERT_EQ(conns[c].partial_messages(), 0u);
        }
        ASSERT_LE(conns[c].buffered_bytes(), lim.max_buffered_bytes);
      }
      total += conns[c].buffered_bytes();
    }
    ASSERT_LE(total, kConnections * lim.max_buffered_bytes);
    // The heap agrees: at most 4 slots and 16 pieces per connection of bookkeeping on top.
    ASSERT_LE(live_heap() - base, total + kConnections * (4 * kSlotOverhead + 16 * kPieceOverhead));
    peak = std::max(peak, live_heap() - base);
  }
  EXPECT_LE(peak, kConnections * (lim.max_buffered_bytes + 4 * kSlotOverhead + 16 * kPieceOverhead));
  EXPECT_GT(peak, kConnections * lim.max_buffered_bytes / 2);
  for (size_t c = 0; c < kConnections; ++c) {
    // One or two refs: 4 frames fill a message's limit, the 5th crosses it (two refs hold
    // exactly the connection's cap then). Three or four refs: the 9th frame crosses the cap.
    const Status want = c % 4 < 2 ? Status::kReassemblyTooLarge : Status::kReassemblyMemoryExceeded;
    EXPECT_EQ(failed[c], want) << c << ": " << to_string(failed[c]);
  }
}

TEST(Reassembler, ThousandConnectionsHittingTheMemoryCap) {
  constexpr size_t kConnections = 1000;
  ReassemblyLimits lim;
  lim.max_fragments = 16;
  lim.max_partial_messages = 4;
  lim.max_message_size = 4096;
  lim.max_buffered_bytes = 8192;
  std::vector<Reassembler> conns(kConnections, Reassembler(lim));
  Fragment f = make_fragment(0, 0, false, piece_of(1024, 1));
  ReassembledMessage out;
  const size_t base = live_heap();
  size_t peak = 0;
  for (uint16_t round = 0; round < 4; ++round) {
    for (uint32_t ref = 0; ref < 4; ++ref) {
      encode_fragment_prefix(FragmentPrefix{ref, round, false}, f.bytes.data());
      size_t total = 0;
      for (size_t c = 0; c < kConnections; ++c) {
        const Status s = conns[c].add(f.frame(), 0, out);
        const size_t sent = size_t{round} * 4 + ref + 1;  // frames of 1 KiB sent to this connection
        if (sent <= 8) {
          ASSERT_EQ(s, Status::kNeedMore);
          ASSERT_EQ(conns[c].buffered_bytes(), sent * 1024);
        } else {
          ASSERT_EQ(s, Status::kReassemblyMemoryExceeded);
          ASSERT_EQ(conns[c].buffered_bytes(), 0u);
        }
        total += conns[c].buffered_bytes();
      }
      ASSERT_LE(total, kConnections * lim.max_buffered_bytes);
      ASSERT_LE(live_heap() - base, total + kConnections * (kSlotOverhead * 4 + 8 * kPieceOverhead));
      peak = std::max(peak, total);
    }
  }
  EXPECT_EQ(peak, kConnections * lim.max_buffered_bytes);  // right up to the cap, not beyond
  for (const Reassembler& r : conns) expect_failed(r, Status::kReassemblyMemoryExceeded);
  EXPECT_EQ(live_heap(), base);  // every connection freed everything
}

// ---- sticky errors and limits ----

TEST(Reassembler, ErrorsAreSticky) {
  Reassembler r;
  ReassembledMessage out;
  ASSERT_EQ(add(r, make_fragment(1, 0, false, {1}), 0, out), Status::kNeedMore);
  ASSERT_EQ(add(r, make_fragment(2, 0, false, {2}), 0, out), Status::kNeedMore);
  ASSERT_EQ(add(r, make_fragment(1, 2, false, {1}), 0, out), Status::kFragmentOutOfOrder);
  expect_failed(r, Status::kFragmentOutOfOrder);
  out.body = {42};
  EXPECT_EQ(add(r, make_fragment(3, 0, true, {3}), 0, out), Status::kFragmentOutOfOrder);
  EXPECT_EQ(add(r, make_fragment(2, 1, true, {2}), 0, out), Status::kFragmentOutOfOrder);
  EXPECT_EQ(out.body, std::vector<uint8_t>{42});
  EXPECT_EQ(r.expire(1), Status::kFragmentOutOfOrder);
  r.set_limits(ReassemblyLimits{});
  EXPECT_EQ(add(r, make_fragment(4, 0, true, {3}), 0, out), Status::kFragmentOutOfOrder);
  expect_failed(r, Status::kFragmentOutOfOrder);
}

TEST(Reassembler, SetLimitsAppliesToTheNextFragment) {
  ReassemblyLimits lim;
  lim.max_partial_messages = 1;
  Reassembler r(lim);
  ReassembledMessage out;
  ASSERT_EQ(add(r, make_fragment(1, 0, false, piece_of(10, 1)), 0, out), Status::kNeedMore);
  lim.max_partial_messages = 2;
  r.set_limits(lim);
  EXPECT_EQ(r.limits().max_partial_messages, 2u);
  ASSERT_EQ(add(r, make_fragment(2, 0, false, piece_of(10, 2)), 0, out), Status::kNeedMore);
  // Lowering the memory cap below what is held: the next piece that needs room fails.
  lim.max_buffered_bytes = 15;
  r.set_limits(lim);
  EXPECT_EQ(r.buffered_bytes(), 20u);
  EXPECT_EQ(add(r, make_fragment(1, 1, true, {1}), 0, out), Status::kReassemblyMemoryExceeded);
  expect_failed(r, Status::kReassemblyMemoryExceeded);
}

}  // namespace
}  // namespace herald::codec
