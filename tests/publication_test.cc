// PublicationRecord: each wire variant is encoded once, on first use, and every caller
// (every loop, every connection) gets that same encoding, also when loops ask at once.
#include "server/publication.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "codec/message_reader.h"

namespace herald::server {
namespace {

v1::Publication draft(size_t payload_bytes) {
  v1::Publication p;
  p.set_channel("news");
  p.set_offset(7);
  p.set_epoch("e1");
  p.set_payload(std::string(payload_bytes, 'x'));
  return p;
}

// The frames of `m` as one client stream, decoded back to the publication they carry.
v1::Publication decode(const codec::EncodedMessage& m, bool zstd, bool checksum) {
  std::vector<uint8_t> wire;
  for (size_t i = 0; i < m.frame_count(); ++i) {
    uint8_t header[codec::kHeaderSize];
    m.write_header(i, static_cast<uint32_t>(i), header);
    wire.insert(wire.end(), header, header + codec::kHeaderSize);
    const auto body = m.body(i);
    wire.insert(wire.end(), body.begin(), body.end());
  }
  codec::CodecContext ctx;
  codec::ReaderLimits rl;
  rl.compression = zstd;
  rl.decoder.require_checksum = checksum;
  codec::MessageReader reader(rl, &ctx);
  std::span<const uint8_t> in(wire);
  codec::InboundMessage got;
  const codec::DecodeResult r = reader.read(in, 0, got);
  EXPECT_EQ(r.status, codec::Status::kOk) << codec::to_string(r.status);
  EXPECT_EQ(r.consumed, wire.size());
  v1::Publication p;
  EXPECT_EQ(got.type, codec::FrameType::kPublication);
  EXPECT_TRUE(p.ParseFromArray(got.body.data(), static_cast<int>(got.body.size())));
  return p;
}

TEST(PublicationRecord, EachVariantIsEncodedOnceAndDecodesToThePublication) {
  const PublicationRecord record(draft(4000));  // above the compression threshold
  codec::CodecContext ctx;
  SharedEncoding enc;
  for (bool zstd : {false, true}) {
    for (bool checksum : {false, true}) {
      const WireVariant v{zstd, checksum};
      const codec::EncodedMessage& first = record.encoded(v, enc, ctx);
      EXPECT_EQ(&record.encoded(v, enc, ctx), &first) << "a second use must share the first encoding";
      EXPECT_EQ(first.compressed(), zstd);
      const v1::Publication p = decode(first, zstd, checksum);
      EXPECT_EQ(p.channel(), "news");
      EXPECT_EQ(p.offset(), 7u);
      EXPECT_EQ(p.payload(), std::string(4000, 'x'));
    }
  }
  EXPECT_NE(&record.encoded({false, false}, enc, ctx), &record.encoded({true, false}, enc, ctx));
}

TEST(PublicationRecord, LoopsAskingAtOnceShareOneEncoding) {
  constexpr int kThreads = 4;
  constexpr int kRecords = 2000;
  std::vector<std::shared_ptr<const PublicationRecord>> records;
  for (int i = 0; i < kRecords; ++i) records.push_back(std::make_shared<const PublicationRecord>(draft(100)));
  std::vector<std::vector<const codec::EncodedMessage*>> seen(kThreads);
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      codec::CodecContext ctx;  // one per loop, as in heraldd
      SharedEncoding enc;
      ready.fetch_add(1);
      while (ready.load() < kThreads) {
      }
      for (const auto& r : records) seen[t].push_back(&r->encoded({false, true}, enc, ctx));
    });
  }
  for (auto& th : threads) th.join();
  for (int i = 0; i < kRecords; ++i) {
    for (int t = 1; t < kThreads; ++t) ASSERT_EQ(seen[t][i], seen[0][i]) << "record " << i << ", thread " << t;
    EXPECT_EQ(decode(*seen[0][i], false, true).payload(), std::string(100, 'x'));
  }
}

}  // namespace
}  // namespace herald::server
