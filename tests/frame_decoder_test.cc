// FrameDecoder: every split point, byte at a time, every header and body error
// with its specific status and offset (docs/protocol.md §2, §3, §5).
#include "codec/frame_decoder.h"

#include <gtest/gtest.h>

#include <random>

#include "tests/support/wire.h"

namespace herald::codec {
namespace {

using testing::append;
using testing::Bytes;
using testing::bytes_of;
using testing::raw_frame;

constexpr uint16_t kPing = 0x030;
constexpr uint16_t kPong = 0x031;
constexpr uint16_t kPub = 0x020;

struct Event {
  bool error = false;
  Status status = Status::kOk;
  uint64_t offset = 0;
  FrameType type = FrameType::kPing;
  uint16_t flags = 0;
  uint32_t sequence = 0;
  Bytes payload;
  bool operator==(const Event&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Event& e) {
  if (e.error) return os << "error " << to_string(e.status) << " @" << e.offset;
  return os << to_string(e.type) << " flags=" << e.flags << " seq=" << e.sequence << " len=" << e.payload.size();
}

// Feeds `chunks` in order, collecting frames, the first error, and (with `eof`)
// the end-of-stream result.
class Collector {
 public:
  explicit Collector(const DecoderLimits& limits = {}) : decoder_(limits) {}

  void feed(std::span<const uint8_t> chunk) {
    while (!done_) {
      Frame f;
      DecodeResult r = decoder_.decode(chunk, f);
      EXPECT_LE(r.consumed, chunk.size());
      chunk = chunk.subspan(r.consumed);
      if (r.status == Status::kNeedMore) {
        EXPECT_TRUE(chunk.empty());
        return;
      }
      if (!ok(r.status)) {
        events_.push_back({true, r.status, decoder_.error_offset(), FrameType::kPing, 0, 0, {}});
        done_ = true;
        return;
      }
      events_.push_back({false, Status::kOk, 0, f.header.type, f.header.flags, f.header.sequence,
                         Bytes(f.payload.begin(), f.payload.end())});
      if (chunk.empty()) return;
    }
  }
  std::vector<Event> finish() {
    if (!done_) {
      Status s = decoder_.finish();
      if (!ok(s)) events_.push_back({true, s, decoder_.error_offset(), FrameType::kPing, 0, 0, {}});
    }
    return events_;
  }
  FrameDecoder& decoder() { return decoder_; }

 private:
  FrameDecoder decoder_;
  std::vector<Event> events_;
  bool done_ = false;
};

std::vector<Event> decode_whole(std::span<const uint8_t> stream, const DecoderLimits& limits = {}) {
  Collector c(limits);
  c.feed(stream);
  return c.finish();
}

Bytes three_frames() {
  Bytes s;
  append(s, raw_frame(kPing, bytes_of("\x08\x01"), 0));
  append(s, raw_frame(kPub | kFlagChecksummed, bytes_of("\x0a\x04news\x10\x07payload-bytes"), 1, true));
  append(s, raw_frame(kPong, {}, 2));
  return s;
}

TEST(FrameDecoder, DecodesBackToBackFrames) {
  const Bytes s = three_frames();
  auto events = decode_whole(s);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].type, FrameType::kPing);
  EXPECT_EQ(events[0].payload, bytes_of("\x08\x01"));
  EXPECT_EQ(events[1].type, FrameType::kPublication);
  EXPECT_EQ(events[1].flags, kFlagChecksummed);
  EXPECT_EQ(events[1].sequence, 1u);
  EXPECT_EQ(events[1].payload, bytes_of("\x0a\x04news\x10\x07payload-bytes"));  // trailer stripped
  EXPECT_EQ(events[2].type, FrameType::kPong);
  EXPECT_TRUE(events[2].payload.empty());
}

TEST(FrameDecoder, EverySplitPointDecodesIdentically) {
  const Bytes s = three_frames();
  const auto want = decode_whole(s);
  for (size_t i = 0; i <= s.size(); ++i) {
    Collector c;
    testing::feed_split(s, {i}, [&](auto chunk) { c.feed(chunk); });
    EXPECT_EQ(c.finish(), want) << "split at " << i;
  }
}

TEST(FrameDecoder, EveryPairOfSplitPointsDecodesIdentically) {
  const Bytes s = three_frames();
  const auto want = decode_whole(s);
  for (size_t i = 0; i <= s.size(); ++i) {
    for (size_t j = i; j <= s.size(); ++j) {
      Collector c;
      testing::feed_split(s, {i, j}, [&](auto chunk) { c.feed(chunk); });
      ASSERT_EQ(c.finish(), want) << "splits at " << i << "," << j;
    }
  }
}

TEST(FrameDecoder, ByteAtATimeAndRandomChunks) {
  const Bytes s = three_frames();
  const auto want = decode_whole(s);
  Collector one;
  for (uint8_t b : s) one.feed(std::span<const uint8_t>(&b, 1));
  EXPECT_EQ(one.finish(), want);

  std::mt19937 rng(42);
  for (int round = 0; round < 200; ++round) {
    Collector c;
    size_t pos = 0;
    while (pos < s.size()) {
      size_t n = std::min<size_t>(s.size() - pos, rng() % 20);
      c.feed(std::span<const uint8_t>(s).subspan(pos, n));
      pos += n;
    }
    EXPECT_EQ(c.finish(), want);
  }
}

TEST(FrameDecoder, WholeFrameInInputIsNotCopied) {
  const Bytes s = raw_frame(kPing, bytes_of("\x08\x05"), 0);
  FrameDecoder d;
  Frame f;
  auto r = d.decode(s, f);
  ASSERT_EQ(r.status, Status::kOk);
  EXPECT_EQ(r.consumed, s.size());
  EXPECT_EQ(f.payload.data(), s.data() + kHeaderSize);
  EXPECT_EQ(d.buffered_bytes(), 0u);
}

TEST(FrameDecoder, LargeBodyByteAtATimeStaysLinear) {
  // A quadratic decoder would take hours here and hit the test timeout.
  DecoderLimits limits;
  limits.max_frame_size = 4 * 1024 * 1024;
  Bytes body(limits.max_frame_size - 4);
  std::mt19937 rng(7);
  for (auto& b : body) b = static_cast<uint8_t>(rng());
  const Bytes s = raw_frame(kPub | kFlagChecksummed, body, 0, true);
  FrameDecoder d(limits);
  Frame f;
  size_t frames = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    auto r = d.decode(std::span<const uint8_t>(s).subspan(i, 1), f);
    ASSERT_EQ(r.consumed, 1u);
    if (r.status == Status::kOk) {
      ++frames;
      EXPECT_TRUE(std::equal(body.begin(), body.end(), f.payload.begin(), f.payload.end()));
    } else {
      ASSERT_EQ(r.status, Status::kNeedMore);
    }
  }
  EXPECT_EQ(frames, 1u);
  EXPECT_EQ(d.stream_offset(), s.size());
}

struct BadCase {
  const char* name;
  Bytes stream;
  DecoderLimits limits;
  Status want;
  uint64_t offset;
};

std::vector<BadCase> bad_cases() {
  std::vector<BadCase> v;
  const Bytes ping = raw_frame(kPing, bytes_of("\x08\x01"), 0);
  {
    Bytes s = ping;
    s[2] = 'X';
    v.push_back({"bad magic", s, {}, Status::kBadMagic, 0});
  }
  v.push_back({"version 2", raw_frame(kPing, {}, 0, false, 2), {}, Status::kUnsupportedVersion, 4});
  v.push_back({"version 0", raw_frame(kPing, {}, 0, false, 0), {}, Status::kUnsupportedVersion, 4});
  v.push_back({"reserved flag", raw_frame(kPing | kFlagReserved, {}, 0), {}, Status::kUnknownFlag, 6});
  v.push_back({"unknown type", raw_frame(0x0FF, {}, 0), {}, Status::kUnknownFrameType, 6});
  v.push_back({"type zero", raw_frame(0x000, {}, 0), {}, Status::kUnknownFrameType, 6});
  {
    // A connection that negotiated a later version receives a version-1 frame.
    DecoderLimits l;
    l.version = 3;
    Bytes s = raw_frame(kPing, {}, 0);
    v.push_back({"version mismatch", s, l, Status::kVersionMismatch, 4});
  }
  v.push_back({"fragmented control", raw_frame(kPing | kFlagFragment, Bytes(8, 0), 0), {},
               Status::kFragmentedControl, 6});
  {
    Bytes s = raw_frame(kPub, {}, 0);
    put_u32(s.data() + 8, 0xFFFFFFFF);
    v.push_back({"length 0xFFFFFFFF", s, {}, Status::kFrameTooLarge, 8});
  }
  {
    Bytes s = raw_frame(kPub, {}, 0);
    put_u32(s.data() + 8, kDefaultMaxFrameSize + 1);
    v.push_back({"length max+1", s, {}, Status::kFrameTooLarge, 8});
  }
  {
    DecoderLimits l;
    l.max_frame_size = 10;
    v.push_back({"small limit", raw_frame(kPub, Bytes(11, 1), 0), l, Status::kFrameTooLarge, 8});
  }
  {
    Bytes s = ping;
    append(s, raw_frame(kPong, {}, 5));
    v.push_back({"bad sequence", s, {}, Status::kBadSequence, ping.size() + 12});
  }
  v.push_back({"first sequence not zero", raw_frame(kPing, {}, 1), {}, Status::kBadSequence, 12});
  v.push_back({"checksum body too short", raw_frame(kPing | kFlagChecksummed, Bytes(3, 0), 0), {},
               Status::kBodyTooShort, 8});
  v.push_back({"fragment body too short", raw_frame(kPub | kFlagFragment, Bytes(7, 0), 0), {},
               Status::kBodyTooShort, 8});
  v.push_back({"fragment+crc body too short",
               raw_frame(kPub | kFlagFragment | kFlagChecksummed, Bytes(11, 0), 0), {}, Status::kBodyTooShort, 8});
  {
    DecoderLimits l;
    l.require_checksum = true;
    v.push_back({"checksum required", ping, l, Status::kChecksumRequired, 6});
  }
  {
    Bytes s = raw_frame(kPing | kFlagChecksummed, bytes_of("\x08\x01"), 0, true);
    s[kHeaderSize] ^= 0x01;
    v.push_back({"flipped body bit", s, {}, Status::kChecksumMismatch, kHeaderSize + 2});
  }
  {
    Bytes s = ping;
    s.pop_back();
    v.push_back({"truncated at eof", s, {}, Status::kTruncatedFrame, s.size()});
  }
  v.push_back({"truncated header at eof", Bytes(ping.begin(), ping.begin() + 7), {}, Status::kTruncatedFrame, 7});
  return v;
}

TEST(FrameDecoder, MalformedInputGetsSpecificStatusAtEverySplit) {
  for (const auto& c : bad_cases()) {
    SCOPED_TRACE(c.name);
    for (size_t i = 0; i <= c.stream.size(); ++i) {
      Collector col(c.limits);
      testing::feed_split(c.stream, {i}, [&](auto chunk) { col.feed(chunk); });
      auto events = col.finish();
      ASSERT_FALSE(events.empty()) << "split " << i;
      EXPECT_TRUE(events.back().error) << "split " << i;
      EXPECT_EQ(events.back().status, c.want) << "split " << i << ": " << to_string(events.back().status);
      EXPECT_EQ(events.back().offset, c.offset) << "split " << i;
      EXPECT_EQ(col.decoder().buffered_bytes(), 0u);
    }
  }
}

TEST(FrameDecoder, HugeLengthRejectedBeforeJunkIsRead) {
  // Header declaring 4 GiB, then 100 MB of junk in 64 KiB writes: the decoder
  // fails on the header, consumes none of the junk and holds no buffer.
  Bytes s = raw_frame(kPub, {}, 0);
  put_u32(s.data() + 8, 0xFFFFFFFF);
  FrameDecoder d;
  Frame f;
  auto r = d.decode(s, f);
  EXPECT_EQ(r.status, Status::kFrameTooLarge);
  Bytes junk(64 * 1024, 0xAB);
  for (size_t sent = 0; sent < 100u * 1000 * 1000; sent += junk.size()) {
    auto r2 = d.decode(junk, f);
    ASSERT_EQ(r2.status, Status::kFrameTooLarge);
    ASSERT_EQ(r2.consumed, 0u);
  }
  EXPECT_EQ(d.buffered_bytes(), 0u);
}

TEST(FrameDecoder, BadMagicDetectedAtFirstWrongByte) {
  FrameDecoder d;
  Frame f;
  const uint8_t junk = 'G';  // "GET / HTTP/1.1" aimed at the binary port
  auto r = d.decode(std::span<const uint8_t>(&junk, 1), f);
  EXPECT_EQ(r.status, Status::kBadMagic);
  EXPECT_EQ(d.error_offset(), 0u);
}

TEST(FrameDecoder, EverySingleBitFlipInABodyIsCaught) {
  const Bytes body = bytes_of("\x0a\x04news\x10\x07\x5a\x0bhello world");
  const Bytes good = raw_frame(kPub | kFlagChecksummed, body, 0, true);
  for (size_t byte = kHeaderSize; byte < good.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      Bytes s = good;
      s[byte] ^= static_cast<uint8_t>(1u << bit);
      auto events = decode_whole(s);
      ASSERT_EQ(events.size(), 1u);
      EXPECT_EQ(events[0].status, Status::kChecksumMismatch) << byte << ":" << bit;
      EXPECT_EQ(events[0].offset, good.size() - 4);
    }
  }
}

TEST(FrameDecoder, ErrorsAreSticky) {
  FrameDecoder d;
  Frame f;
  Bytes s = raw_frame(kPing, {}, 0, false, 9);
  EXPECT_EQ(d.decode(s, f).status, Status::kUnsupportedVersion);
  const Bytes good = raw_frame(kPing, {}, 0);
  auto r = d.decode(good, f);
  EXPECT_EQ(r.status, Status::kUnsupportedVersion);
  EXPECT_EQ(r.consumed, 0u);
  EXPECT_EQ(d.finish(), Status::kUnsupportedVersion);
  d.reset();
  EXPECT_EQ(d.decode(good, f).status, Status::kOk);
}

TEST(FrameDecoder, SequenceCheckCanBeTurnedOff) {
  FrameDecoder d;
  Frame f;
  DecoderLimits off;
  off.check_sequence = false;
  d.set_limits(off);
  for (uint32_t i = 0; i < 3; ++i) ASSERT_EQ(d.decode(raw_frame(kPing, {}, 77), f).status, Status::kOk);
  d.set_limits({});
  EXPECT_EQ(d.decode(raw_frame(kPing, {}, 3), f).status, Status::kOk);
  EXPECT_EQ(d.next_sequence(), 4u);
}

TEST(FrameDecoder, EmptyInputNeedsMore) {
  FrameDecoder d;
  Frame f;
  auto r = d.decode({}, f);
  EXPECT_EQ(r.status, Status::kNeedMore);
  EXPECT_EQ(r.consumed, 0u);
  EXPECT_EQ(d.finish(), Status::kOk);
}

}  // namespace
}  // namespace herald::codec
