// Hello/Welcome negotiation (docs/protocol.md §11): choices, clamps, errors,
// and the limits both sides derive from them.
#include "codec/negotiation.h"

#include <gtest/gtest.h>

namespace herald::codec {
namespace {

v1::Hello hello_with(std::initializer_list<uint32_t> versions) {
  v1::Hello h;
  for (uint32_t v : versions) h.add_versions(v);
  return h;
}

TEST(Negotiation, DefaultsFromAnEmptyHello) {
  v1::Hello hello;
  v1::Welcome welcome;
  ConnectionParams server;
  ASSERT_EQ(negotiate_hello(hello, {}, welcome, server), Status::kOk);
  EXPECT_EQ(welcome.version(), 1u);
  EXPECT_EQ(welcome.compression(), v1::COMPRESSION_NONE);
  EXPECT_EQ(welcome.dictionary_id(), 0u);
  EXPECT_EQ(welcome.max_frame_size(), kDefaultMaxFrameSize);
  EXPECT_EQ(welcome.max_message_size(), kDefaultMaxMessageSize);
  EXPECT_EQ(welcome.heartbeat_ms(), kDefaultHeartbeatMs);
  EXPECT_EQ(welcome.pong_timeout_ms(), kDefaultPongTimeoutMs);
  EXPECT_EQ(welcome.max_fragments(), kDefaultMaxFragments);
  EXPECT_FALSE(welcome.checksum());
  ConnectionParams client;
  ASSERT_EQ(accept_welcome(hello, welcome, client), Status::kOk);
  EXPECT_EQ(client.send_max_frame_size, server.recv_max_frame_size);
  EXPECT_EQ(server.send_max_frame_size, client.recv_max_frame_size);
}

TEST(Negotiation, HighestCommonVersionOrNone) {
  v1::Welcome w;
  ConnectionParams p;
  ServerSettings s;
  s.versions = {1, 2};
  ASSERT_EQ(negotiate_hello(hello_with({1, 2, 3}), s, w, p), Status::kOk);
  EXPECT_EQ(w.version(), 2u);
  EXPECT_EQ(p.reader_limits().decoder.version, 2);
  s.versions = {1};
  ASSERT_EQ(negotiate_hello(hello_with({1, 2}), s, w, p), Status::kOk);
  EXPECT_EQ(w.version(), 1u);
  s.versions = {2};
  EXPECT_EQ(negotiate_hello(hello_with({1}), s, w, p), Status::kNoCommonVersion);
  EXPECT_EQ(negotiate_hello(v1::Hello(), s, w, p), Status::kNoCommonVersion);  // empty = [1]
}

TEST(Negotiation, CompressionAndDictionary) {
  v1::Hello h;
  h.add_compression(static_cast<v1::Compression>(7));  // unknown: skipped
  h.add_compression(v1::COMPRESSION_ZSTD);
  h.add_dictionary_ids(11);
  h.add_dictionary_ids(22);
  ServerSettings s;
  s.dictionary_ids = {22, 11};
  v1::Welcome w;
  ConnectionParams p;
  ASSERT_EQ(negotiate_hello(h, s, w, p), Status::kOk);
  EXPECT_EQ(w.compression(), v1::COMPRESSION_ZSTD);
  EXPECT_EQ(w.dictionary_id(), 11u);  // the client's preference wins
  EXPECT_TRUE(p.encode_options().compress);
  EXPECT_EQ(p.encode_options().dictionary_id, 11u);
  EXPECT_TRUE(p.reader_limits().compression);
  s.zstd = false;
  ASSERT_EQ(negotiate_hello(h, s, w, p), Status::kOk);
  EXPECT_EQ(w.compression(), v1::COMPRESSION_NONE);
  EXPECT_EQ(w.dictionary_id(), 0u);  // never a dictionary without a codec
  EXPECT_FALSE(p.reader_limits().compression);
}

TEST(Negotiation, SizesDefaultsClampsAndErrors) {
  v1::Welcome w;
  ConnectionParams p;
  v1::Hello h;
  h.set_max_frame_size(kMinMaxFrameSize - 1);
  EXPECT_EQ(negotiate_hello(h, {}, w, p), Status::kInvalidField);
  h.set_max_frame_size(64 * 1024 * 1024);
  ASSERT_EQ(negotiate_hello(h, {}, w, p), Status::kOk);
  EXPECT_EQ(p.send_max_frame_size, kMaxMaxFrameSize);
  h.set_max_frame_size(0);
  h.set_max_message_size(1000);
  EXPECT_EQ(negotiate_hello(h, {}, w, p), Status::kInvalidField);
  // More than 128 fragments of 16 KiB frames can carry.
  h.set_max_frame_size(kMinMaxFrameSize);
  h.set_max_message_size(128 * (kMinMaxFrameSize - 12) + 1);
  EXPECT_EQ(negotiate_hello(h, {}, w, p), Status::kInvalidField);
  h.set_max_message_size(128 * (kMinMaxFrameSize - 12));
  ASSERT_EQ(negotiate_hello(h, {}, w, p), Status::kOk);
  EXPECT_EQ(p.encode_options().max_frame_size, kMinMaxFrameSize);
  EXPECT_GE(p.reader_limits().reassembly.max_buffered_bytes, p.recv_max_message_size);
}

TEST(Negotiation, HeartbeatIsClamped) {
  v1::Welcome w;
  ConnectionParams p;
  v1::Hello h;
  h.set_heartbeat_ms(1);
  ASSERT_EQ(negotiate_hello(h, {}, w, p), Status::kOk);
  EXPECT_EQ(w.heartbeat_ms(), kMinHeartbeatMs);
  h.set_heartbeat_ms(10'000'000);
  ASSERT_EQ(negotiate_hello(h, {}, w, p), Status::kOk);
  EXPECT_EQ(w.heartbeat_ms(), kMaxHeartbeatMs);
}

TEST(Negotiation, ChecksumAskedOrConfiguredIsRequiredBothWays) {
  v1::Welcome w;
  ConnectionParams p;
  v1::Hello h;
  h.set_checksum(true);
  ASSERT_EQ(negotiate_hello(h, {}, w, p), Status::kOk);
  EXPECT_TRUE(w.checksum());
  EXPECT_TRUE(p.reader_limits().decoder.require_checksum);
  EXPECT_TRUE(p.encode_options().checksum);
  ServerSettings s;
  s.checksum = true;
  ASSERT_EQ(negotiate_hello(v1::Hello(), s, w, p), Status::kOk);
  EXPECT_TRUE(w.checksum());
  ConnectionParams c;
  ASSERT_EQ(accept_welcome(v1::Hello(), w, c), Status::kOk);
  EXPECT_TRUE(c.reader_limits().decoder.require_checksum);
}

TEST(Negotiation, ClientRejectsAWelcomeThatDoesNotAnswerItsHello) {
  v1::Hello h = hello_with({1});
  v1::Welcome w;
  ConnectionParams p;
  ASSERT_EQ(negotiate_hello(h, {}, w, p), Status::kOk);
  ConnectionParams c;
  v1::Welcome bad = w;
  bad.set_version(2);
  EXPECT_EQ(accept_welcome(h, bad, c), Status::kNoCommonVersion);
  bad = w;
  bad.set_compression(v1::COMPRESSION_ZSTD);  // not offered
  EXPECT_EQ(accept_welcome(h, bad, c), Status::kInvalidField);
  bad = w;
  bad.set_dictionary_id(5);
  EXPECT_EQ(accept_welcome(h, bad, c), Status::kInvalidField);
  bad = w;
  bad.set_max_frame_size(100);
  EXPECT_EQ(accept_welcome(h, bad, c), Status::kInvalidField);
  bad = w;
  bad.set_heartbeat_ms(1);
  EXPECT_EQ(accept_welcome(h, bad, c), Status::kInvalidField);
  EXPECT_EQ(accept_welcome(h, w, c), Status::kOk);
}

TEST(Negotiation, HandshakeLimits) {
  const ReaderLimits l = handshake_reader_limits();
  EXPECT_EQ(l.decoder.max_frame_size, kHandshakeMaxFrameSize);
  EXPECT_EQ(l.decoder.version, kVersion1);
  EXPECT_FALSE(l.compression);
}

}  // namespace
}  // namespace herald::codec
