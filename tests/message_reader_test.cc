// Encoder -> MessageReader round trips (checksum, zstd, fragments, interleaving)
// at every split, shared bodies with per-recipient headers, and the message
// layer's strict parsing (docs/protocol.md §4, §6, §7).
#include "codec/message_reader.h"

#include <gtest/gtest.h>

#include <random>

#include "codec/frame_encoder.h"
#include "codec/message.h"
#include "tests/support/wire.h"

namespace herald::codec {
namespace {

using testing::Bytes;

v1::Publication sample_publication(size_t payload_size, uint32_t seed = 1) {
  v1::Publication p;
  p.set_channel("user:42");
  p.set_offset(1000 + seed);
  p.set_epoch("e1");
  p.set_message_id("m-" + std::to_string(seed));
  p.set_type("order_filled");
  p.set_priority(v1::P1);
  p.set_created_at_ms(1700000000000);
  p.set_content_type("application/json");
  std::string payload;
  std::mt19937 rng(seed);
  // JSON-like, compressible but not trivially.
  while (payload.size() < payload_size) {
    payload += "{\"order_id\":\"O" + std::to_string(rng() % 100000) + "\",\"price\":" + std::to_string(rng() % 5000) + "},";
  }
  payload.resize(payload_size);
  p.set_payload(payload);
  return p;
}

Bytes serialize(const google::protobuf::Message& m) {
  Bytes out;
  EXPECT_EQ(serialize_message(m, SIZE_MAX, out), Status::kOk);
  return out;
}

struct Decoded {
  FrameType type;
  Bytes body;
};

// Reads every message of `stream` fed in the given chunks; returns messages and
// the final status (kOk if the stream ended cleanly).
Status read_all(MessageReader& reader, std::span<const uint8_t> stream, const std::vector<size_t>& splits,
                std::vector<Decoded>& out) {
  Status final = Status::kOk;
  testing::feed_split(stream, splits, [&](std::span<const uint8_t> chunk) {
    while (ok(final)) {
      InboundMessage m;
      DecodeResult r = reader.read(chunk, 0, m);
      chunk = chunk.subspan(r.consumed);
      if (r.status == Status::kNeedMore) return;
      if (!ok(r.status)) {
        final = r.status;
        return;
      }
      out.push_back({m.type, Bytes(m.body.begin(), m.body.end())});
      if (chunk.empty()) return;
    }
  });
  if (ok(final)) final = reader.finish();
  return final;
}

TEST(MessageReader, RoundTripPlainChecksummedCompressedFragmented) {
  CodecContext ctx;
  struct Case {
    const char* name;
    size_t payload;
    bool compress;
    bool checksum;
    uint32_t max_frame;
  };
  const Case cases[] = {
      {"tiny plain", 10, false, false, kDefaultMaxFrameSize},
      {"checksummed", 300, false, true, kDefaultMaxFrameSize},
      {"compressed", 4000, true, true, kDefaultMaxFrameSize},
      {"below threshold stays plain", 100, true, true, kDefaultMaxFrameSize},
      {"fragmented", 200000, false, true, kMinMaxFrameSize},
      {"compressed and fragmented", 900000, true, false, kMinMaxFrameSize},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const v1::Publication pub = sample_publication(c.payload);
    const Bytes payload = serialize(pub);
    EncodeOptions eo;
    eo.compress = c.compress;
    eo.checksum = c.checksum;
    eo.max_frame_size = c.max_frame;
    eo.fragment_ref = 9;
    EncodedMessage em;
    ASSERT_EQ(encode_message(FrameType::kPublication, payload, eo, &ctx.compressor, em), Status::kOk);
    EXPECT_EQ(em.compressed(), c.compress && c.payload >= kDefaultCompressThreshold);
    Bytes stream;
    uint32_t seq = 0;
    append_frames(em, seq, stream);
    EXPECT_EQ(seq, em.frame_count());

    ReaderLimits rl;
    rl.decoder.max_frame_size = c.max_frame;
    MessageReader reader(rl, &ctx);
    std::vector<Decoded> got;
    ASSERT_EQ(read_all(reader, stream, {}, got), Status::kOk);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].type, FrameType::kPublication);
    EXPECT_EQ(got[0].body, payload);
    v1::Publication back;
    ASSERT_EQ(parse_message(FrameType::kPublication, got[0].body, kDefaultMaxMessageSize, back), Status::kOk);
    EXPECT_EQ(back.SerializeAsString(), pub.SerializeAsString());

    // Borrowing the payload changes nothing on the wire; only a plain single frame
    // borrows (its body is the payload itself), every other kind still copies.
    EncodeOptions bo = eo;
    bo.borrow_payload = true;
    EncodedMessage borrowed;
    ASSERT_EQ(encode_message(FrameType::kPublication, payload, bo, &ctx.compressor, borrowed), Status::kOk);
    Bytes same;
    seq = 0;
    append_frames(borrowed, seq, same);
    EXPECT_EQ(same, stream);
    EXPECT_EQ(borrowed.wire_size(), stream.size());
    const bool plain_single = !em.compressed() && !c.checksum && em.frame_count() == 1;
    EXPECT_EQ(borrowed.body(0).data() == payload.data(), plain_single);
  }
}

TEST(MessageReader, CountsEveryDecodedFrameByTypeInTheContextsTally) {
  CodecContext ctx;
  FrameTally tally;
  ctx.inbound_tally = &tally;
  const Bytes payload = serialize(sample_publication(100000));
  EncodeOptions eo;
  eo.checksum = true;
  eo.max_frame_size = kMinMaxFrameSize;
  eo.fragment_ref = 3;
  EncodedMessage pub, ping;
  ASSERT_EQ(encode_message(FrameType::kPublication, payload, eo, &ctx.compressor, pub), Status::kOk);
  ASSERT_GT(pub.frame_count(), 3u);
  v1::Ping p;
  p.set_nonce(5);
  ASSERT_EQ(encode_message(FrameType::kPing, serialize(p), EncodeOptions{}, nullptr, ping), Status::kOk);
  Bytes stream;
  uint32_t seq = 0;
  append_frames(ping, seq, stream);
  append_frames(pub, seq, stream);

  ReaderLimits rl;
  rl.decoder.max_frame_size = kMinMaxFrameSize;
  MessageReader reader(rl, &ctx);
  std::vector<Decoded> got;
  ASSERT_EQ(read_all(reader, stream, {7, 20000, 20001}, got), Status::kOk);
  ASSERT_EQ(got.size(), 2u);
  // Fragments count one by one, with their wire bytes (header and body).
  EXPECT_EQ(tally.frames[static_cast<size_t>(FrameType::kPublication)], pub.frame_count());
  EXPECT_EQ(tally.frames[static_cast<size_t>(FrameType::kPing)], 1u);
  EXPECT_EQ(tally.bytes[static_cast<size_t>(FrameType::kPublication)], pub.wire_size());
  EXPECT_EQ(tally.bytes[static_cast<size_t>(FrameType::kPing)], ping.wire_size());
  uint64_t all = 0;
  for (uint64_t b : tally.bytes) all += b;
  EXPECT_EQ(all, stream.size());
}

TEST(MessageReader, InterleavedControlFramesAndTwoFragmentedMessagesAtEverySplit) {
  CodecContext ctx;
  const Bytes a = serialize(sample_publication(40, 1));
  const Bytes b = serialize(sample_publication(50, 2));
  // Tiny frames force fragmentation of small messages so every split of the
  // whole stream stays cheap to test.
  EncodeOptions eo;
  eo.max_frame_size = 8 + 4 + 16;
  EncodedMessage ea, eb, ping;
  eo.fragment_ref = 1;
  ASSERT_EQ(encode_message(FrameType::kPublication, a, eo, nullptr, ea), Status::kOk);
  eo.fragment_ref = 2;
  ASSERT_EQ(encode_message(FrameType::kPublication, b, eo, nullptr, eb), Status::kOk);
  ASSERT_GE(ea.frame_count(), 3u);
  v1::Ping p;
  p.set_nonce(77);
  const Bytes ping_body = serialize(p);
  ASSERT_EQ(encode_message(FrameType::kPing, ping_body, eo, nullptr, ping), Status::kOk);

  // a0 b0 ping a1 b1 ... : fragments of both messages and a control frame interleave.
  Bytes stream;
  uint32_t seq = 0;
  auto put = [&](const EncodedMessage& m, size_t i) {
    uint8_t h[kHeaderSize];
    m.write_header(i, seq++, h);
    stream.insert(stream.end(), h, h + kHeaderSize);
    auto body = m.body(i);
    stream.insert(stream.end(), body.begin(), body.end());
  };
  const size_t n = std::max(ea.frame_count(), eb.frame_count());
  for (size_t i = 0; i < n; ++i) {
    if (i < ea.frame_count()) put(ea, i);
    if (i < eb.frame_count()) put(eb, i);
    if (i == 0) put(ping, 0);
  }
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    ReaderLimits rl;
    rl.decoder.max_frame_size = kDefaultMaxFrameSize;
    MessageReader reader(rl, &ctx);
    std::vector<Decoded> got;
    ASSERT_EQ(read_all(reader, stream, {cut}, got), Status::kOk) << cut;
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[0].type, FrameType::kPing);
    EXPECT_EQ(got[0].body, ping_body);
    // Whichever message's last fragment came first completes first.
    const bool a_first = ea.frame_count() <= eb.frame_count();
    EXPECT_EQ(got[1].body, a_first ? a : b);
    EXPECT_EQ(got[2].body, a_first ? b : a);
  }
}

TEST(MessageReader, SharedBodyWithPerRecipientSequences) {
  const Bytes payload = serialize(sample_publication(500));
  EncodeOptions eo;
  EncodedMessage em;
  ASSERT_EQ(encode_message(FrameType::kPublication, payload, eo, nullptr, em), Status::kOk);
  // Three recipients at different points of their own streams.
  for (uint32_t start : {0u, 5u, 1000u}) {
    Bytes stream;
    uint32_t seq = 0;
    // Fill the recipient's stream with pings up to its sequence.
    EncodedMessage ping;
    ASSERT_EQ(encode_message(FrameType::kPing, {}, eo, nullptr, ping), Status::kOk);
    while (seq < start) append_frames(ping, seq, stream);
    append_frames(em, seq, stream);
    MessageReader reader;
    std::vector<Decoded> got;
    ASSERT_EQ(read_all(reader, stream, {}, got), Status::kOk);
    ASSERT_EQ(got.size(), start + 1);
    EXPECT_EQ(got.back().body, payload);
  }
}

TEST(MessageReader, CompressedFrameWithoutNegotiationIsRejected) {
  CodecContext ctx;
  const Bytes payload = serialize(sample_publication(4000));
  EncodeOptions eo;
  eo.compress = true;
  EncodedMessage em;
  ASSERT_EQ(encode_message(FrameType::kPublication, payload, eo, &ctx.compressor, em), Status::kOk);
  ASSERT_TRUE(em.compressed());
  Bytes stream;
  uint32_t seq = 0;
  append_frames(em, seq, stream);
  ReaderLimits rl;
  rl.compression = false;
  MessageReader reader(rl, &ctx);
  std::vector<Decoded> got;
  EXPECT_EQ(read_all(reader, stream, {}, got), Status::kUnsupportedCompression);
  EXPECT_EQ(reader.error_offset(), 0u);
  EXPECT_TRUE(got.empty());
}

TEST(MessageReader, MessageSizeLimitsPlainAndCompressed) {
  CodecContext ctx;
  const Bytes payload = serialize(sample_publication(3000));
  for (bool compress : {false, true}) {
    SCOPED_TRACE(compress);
    EncodeOptions eo;
    eo.compress = compress;
    EncodedMessage em;
    ASSERT_EQ(encode_message(FrameType::kPublication, payload, eo, &ctx.compressor, em), Status::kOk);
    Bytes stream;
    uint32_t seq = 0;
    append_frames(em, seq, stream);
    ReaderLimits rl;
    rl.max_message_size = 1000;
    MessageReader reader(rl, &ctx);
    std::vector<Decoded> got;
    EXPECT_EQ(read_all(reader, stream, {}, got), compress ? Status::kDecompressedTooLarge : Status::kMessageTooLarge);
    EXPECT_TRUE(got.empty());
  }
}

TEST(MessageReader, ReassemblyTimeoutThroughExpire) {
  const Bytes payload = serialize(sample_publication(100));
  EncodeOptions eo;
  eo.max_frame_size = 40;
  EncodedMessage em;
  ASSERT_EQ(encode_message(FrameType::kPublication, payload, eo, nullptr, em), Status::kOk);
  Bytes first;
  uint8_t h[kHeaderSize];
  em.write_header(0, 0, h);
  first.insert(first.end(), h, h + kHeaderSize);
  first.insert(first.end(), em.body(0).begin(), em.body(0).end());
  MessageReader reader;
  InboundMessage m;
  EXPECT_EQ(reader.read(first, 1000, m).status, Status::kNeedMore);
  EXPECT_GT(reader.buffered_bytes(), 0u);
  EXPECT_EQ(reader.expire(1000 + 10'000), Status::kOk);
  EXPECT_EQ(reader.expire(1000 + 10'001), Status::kReassemblyTimeout);
  EXPECT_EQ(reader.buffered_bytes(), 0u);
}

// The reassembler exists only while a message is partial: its deadline goes with it,
// a later fragmented message gets a new one, and limits set while none existed apply.
TEST(MessageReader, ReassemblyStateOnlyWhileAMessageIsPartial) {
  const Bytes payload = serialize(sample_publication(100));
  EncodeOptions eo;
  eo.max_frame_size = 40;
  Bytes stream;
  for (uint32_t seq = 0; seq < 2; ++seq) {
    EncodedMessage em;
    ASSERT_EQ(encode_message(FrameType::kPublication, payload, eo, nullptr, em), Status::kOk);
    ASSERT_GT(em.frame_count(), 2u);
    for (size_t i = 0; i < em.frame_count(); ++i) {
      uint8_t h[kHeaderSize];
      em.write_header(i, static_cast<uint32_t>(seq * em.frame_count() + i), h);
      stream.insert(stream.end(), h, h + kHeaderSize);
      stream.insert(stream.end(), em.body(i).begin(), em.body(i).end());
    }
  }
  MessageReader reader;
  EXPECT_EQ(reader.next_deadline_ms(), UINT64_MAX);
  std::span<const uint8_t> in(stream);
  InboundMessage m;
  // First fragment only: a partial message with its deadline.
  DecodeResult r = reader.read(in.first(kHeaderSize + 1), 1000, m);
  EXPECT_EQ(r.status, Status::kNeedMore);
  r = reader.read(in.subspan(kHeaderSize + 1, 40), 1000, m);
  EXPECT_EQ(r.status, Status::kNeedMore);
  EXPECT_EQ(reader.next_deadline_ms(), 1000u + 10'001u);  // expire() fails after 10 s
  size_t at = kHeaderSize + 1 + 40;
  for (int message = 0; message < 2; ++message) {
    r = reader.read(in.subspan(at), 1000, m);
    ASSERT_EQ(r.status, Status::kOk);
    at += r.consumed;
    EXPECT_EQ(Bytes(m.body.begin(), m.body.end()), payload);
    EXPECT_EQ(reader.next_deadline_ms(), UINT64_MAX);  // nothing partial any more
    EXPECT_EQ(reader.buffered_bytes(), 0u);
  }
  EXPECT_EQ(at, stream.size());

  // Limits set before any fragment arrived reach the reassembler made for it.
  MessageReader limited;
  ReaderLimits l = limited.limits();
  l.reassembly.max_fragments = 2;
  limited.set_limits(l);
  EXPECT_EQ(limited.limits().reassembly.max_fragments, 2u);
  r = limited.read(in, 1000, m);
  EXPECT_EQ(r.status, Status::kTooManyFragments);
}

TEST(Encoder, Errors) {
  CodecContext ctx;
  EncodedMessage em;
  EncodeOptions eo;
  eo.max_message_size = 10;
  EXPECT_EQ(encode_message(FrameType::kPublication, Bytes(11), eo, nullptr, em), Status::kMessageTooLarge);
  eo = {};
  eo.max_frame_size = 100;
  EXPECT_EQ(encode_message(FrameType::kError, Bytes(200), eo, nullptr, em), Status::kMessageTooLarge);
  eo.max_fragments = 2;
  EXPECT_EQ(encode_message(FrameType::kPublication, Bytes(300), eo, nullptr, em), Status::kMessageTooLarge);
  eo = {};
  eo.compress = true;
  EXPECT_EQ(encode_message(FrameType::kPublication, Bytes(1000, 'a'), eo, nullptr, em),
            Status::kUnsupportedCompression);
  eo.dictionary_id = 12345;
  EXPECT_EQ(encode_message(FrameType::kPublication, Bytes(1000, 'a'), eo, &ctx.compressor, em),
            Status::kUnknownDictionary);
  EXPECT_EQ(em.frame_count(), 0u);
}

TEST(Encoder, IncompressibleBodyIsSentPlain) {
  CodecContext ctx;
  Bytes noise(2000);
  std::mt19937 rng(3);
  for (auto& b : noise) b = static_cast<uint8_t>(rng());
  EncodeOptions eo;
  eo.compress = true;
  EncodedMessage em;
  ASSERT_EQ(encode_message(FrameType::kPublication, noise, eo, &ctx.compressor, em), Status::kOk);
  EXPECT_FALSE(em.compressed());
}

TEST(MessageLayer, StrictParsing) {
  v1::Ping ping;
  // Unknown field 15 (varint) is ignored.
  const Bytes unknown = {0x08, 0x05, 0x78, 0x01};
  EXPECT_EQ(parse_message(FrameType::kPing, unknown, 100, ping), Status::kOk);
  EXPECT_EQ(ping.nonce(), 5u);
  // Field 1 with wire type 2 (length-delimited) instead of varint.
  const Bytes wrong_type = {0x0a, 0x01, 0x05};
  EXPECT_EQ(parse_message(FrameType::kPing, wrong_type, 100, ping), Status::kMalformedMessage);
  // Truncated varint.
  const Bytes truncated = {0x08, 0x80};
  EXPECT_EQ(parse_message(FrameType::kPing, truncated, 100, ping), Status::kMalformedMessage);
  // Invalid UTF-8 in a string field.
  v1::Subscribe sub;
  const Bytes bad_utf8 = {0x12, 0x02, 0xC3, 0x28};
  EXPECT_EQ(parse_message(FrameType::kSubscribe, bad_utf8, 100, sub), Status::kMalformedMessage);
  // Above the size limit: rejected before parsing.
  EXPECT_EQ(parse_message(FrameType::kPing, unknown, 3, ping), Status::kMessageTooLarge);
  // Wrong class for the frame type.
  EXPECT_EQ(parse_message(FrameType::kPong, unknown, 100, ping), Status::kUnexpectedFrame);
  // Empty body is a message with defaults.
  EXPECT_EQ(parse_message(FrameType::kPing, {}, 100, ping), Status::kOk);
  EXPECT_EQ(ping.nonce(), 0u);
}

TEST(MessageLayer, EveryFrameTypeHasAClass) {
  for (uint16_t t = 0; t <= kTypeMask; ++t) {
    if (!is_known_frame_type(t)) continue;
    const auto type = static_cast<FrameType>(t);
    auto m = new_message(type);
    ASSERT_NE(m, nullptr) << t;
    FrameType back;
    ASSERT_TRUE(frame_type_for(*m, back));
    EXPECT_EQ(back, type);
    EXPECT_EQ(std::string(m->GetDescriptor()->name()), std::string(to_string(type)));
  }
  static_assert(frame_type_of<v1::Publication>() == FrameType::kPublication);
  static_assert(frame_type_of<v1::GoAway>() == FrameType::kGoAway);
}

}  // namespace
}  // namespace herald::codec
