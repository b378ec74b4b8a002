// ClientSession (client-sdk/client_session.h) fed bytes and times, no sockets: handshake,
// subscribe/resume, dedup, contiguous acks, heartbeat, refresh, gap refill, GoAway,
// reconnect policy, and every malformed or misplaced server frame (protocol §10.2).
#include "client-sdk/client_session.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <functional>
#include <fstream>

#include "client-sdk/offset_window.h"
#include "client-sdk/position_store.h"
#include "codec/checksum.h"
#include "tests/client_support/session_driver.h"

namespace herald::testing {
namespace {

using client::ClientSession;
using codec::FrameType;
using codec::Status;

class Harness {
 public:
  explicit Harness(client::SessionOptions o = {}) : session(std::move(o), &host, &ctx) {}

  // Opens a connection and returns the client's frames (Hello).
  std::vector<ClientFrame> open(uint64_t now = 0) {
    server.reset();
    frames.reset();
    session.connection_opened(now);
    return take();
  }
  Status feed(const std::vector<uint8_t>& bytes, uint64_t now = 0, int64_t unix_ms = 1'000'000) {
    return session.on_bytes(bytes, now, unix_ms);
  }
  Status send(const google::protobuf::Message& m, uint64_t now = 0, int64_t unix_ms = 1'000'000) {
    return feed(server.frame(m), now, unix_ms);
  }
  std::vector<ClientFrame> take() {
    std::vector<ClientFrame> f;
    EXPECT_TRUE(frames.take(host.out, f));
    return f;
  }
  // Hello -> Welcome -> Auth -> AuthOk; returns frames sent after AuthOk (Subscribes).
  std::vector<ClientFrame> ready(uint64_t now = 0, int64_t expires_at_ms = 0) {
    open(now);
    EXPECT_EQ(send(make_welcome(), now), Status::kOk);
    auto auth = take();
    EXPECT_EQ(auth.size(), 1u);
    if (!auth.empty()) {
      EXPECT_EQ(auth[0].type, FrameType::kAuth);
    }
    v1::AuthOk ok;
    ok.set_user_id("alice");
    ok.set_expires_at_ms(expires_at_ms);
    EXPECT_EQ(send(ok, now), Status::kOk);
    return take();
  }
  // Answers the Subscribe in `f` with SubscribeOk.
  // Channels are durable unless `durable` says otherwise (the client acks only those).
  Status subscribe_ok(const ClientFrame& f, const std::string& epoch, uint64_t offset, bool recovered = false,
                      bool durable = true) {
    const auto& s = f.as<v1::Subscribe>();
    v1::SubscribeOk ok;
    ok.set_durable(durable);
    ok.set_request_id(s.request_id());
    ok.set_channel(s.channel());
    ok.set_epoch(epoch);
    ok.set_offset(offset);
    ok.set_recovered(recovered);
    return send(ok);
  }

  RecordingHost host;
  codec::CodecContext ctx;
  ClientSession session;
  FakeServer server;
  ClientFrames frames;
};

TEST(ClientSession, HandshakeSendsHelloAuthAndPendingSubscribes) {
  client::SessionOptions o;
  o.device_id = "dev-1";
  Harness h(o);
  ASSERT_TRUE(h.session.subscribe("news"));
  auto hello = h.open();
  ASSERT_EQ(hello.size(), 1u);
  ASSERT_EQ(hello[0].type, FrameType::kHello);
  const auto& he = hello[0].as<v1::Hello>();
  EXPECT_EQ(he.versions_size(), 1);
  EXPECT_EQ(he.device_id(), "dev-1");
  ASSERT_EQ(he.compression_size(), 1);
  EXPECT_EQ(he.compression(0), v1::COMPRESSION_ZSTD);
  EXPECT_EQ(h.session.state(), ClientSession::State::kAwaitWelcome);

  ASSERT_EQ(h.send(make_welcome("sess-9")), Status::kOk);
  auto auth = h.take();
  ASSERT_EQ(auth.size(), 1u);
  EXPECT_EQ(auth[0].as<v1::Auth>().token(), "tok");
  EXPECT_EQ(h.session.state(), ClientSession::State::kAwaitAuthOk);

  v1::AuthOk ok;
  ok.set_user_id("alice");
  ASSERT_EQ(h.send(ok), Status::kOk);
  EXPECT_EQ(h.host.ready, 1);
  EXPECT_EQ(h.host.user_id, "alice");
  EXPECT_EQ(h.host.session_id, "sess-9");
  auto subs = h.take();
  ASSERT_EQ(subs.size(), 1u);
  ASSERT_EQ(subs[0].type, FrameType::kSubscribe);
  EXPECT_EQ(subs[0].as<v1::Subscribe>().channel(), "news");
  EXPECT_FALSE(subs[0].as<v1::Subscribe>().resume());
  EXPECT_NE(subs[0].as<v1::Subscribe>().request_id(), 0u);
}

TEST(ClientSession, DeliversOnceAcksContiguousOffsets) {
  Harness h;
  h.session.subscribe("news");
  auto subs = h.ready();
  ASSERT_EQ(subs.size(), 1u);
  ASSERT_EQ(h.subscribe_ok(subs[0], "E1", 10), Status::kOk);
  ASSERT_EQ(h.host.subscribed.size(), 1u);
  EXPECT_FALSE(h.host.subscribed[0].resumed);

  // 11, 13 (early: a P0 overtook), 11 again (duplicate), 10 (announced by SubscribeOk).
  std::vector<uint8_t> batch;
  append(batch, h.server.frame(make_pub("news", "E1", 11)));
  append(batch, h.server.frame(make_pub("news", "E1", 13)));
  append(batch, h.server.frame(make_pub("news", "E1", 11)));
  append(batch, h.server.frame(make_pub("news", "E1", 10)));
  ASSERT_EQ(h.feed(batch), Status::kOk);
  ASSERT_EQ(h.host.pubs.size(), 2u);
  EXPECT_EQ(h.host.pubs[0].offset, 11u);
  EXPECT_EQ(h.host.pubs[1].offset, 13u);
  EXPECT_EQ(h.session.duplicates(), 2u);
  // One Ack for the batch, at the highest contiguous offset (11, not 13).
  auto acks = h.take();
  ASSERT_EQ(acks.size(), 1u);
  ASSERT_EQ(acks[0].type, FrameType::kAck);
  EXPECT_EQ(acks[0].as<v1::Ack>().offset(), 11u);

  ASSERT_EQ(h.send(make_pub("news", "E1", 12)), Status::kOk);
  acks = h.take();
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].as<v1::Ack>().offset(), 13u);
  std::string epoch;
  uint64_t offset = 0;
  ASSERT_TRUE(h.session.position("news", epoch, offset));
  EXPECT_EQ(epoch, "E1");
  EXPECT_EQ(offset, 13u);
  ASSERT_FALSE(h.host.positions.empty());
  EXPECT_EQ(h.host.positions.back().offset, 13u);
}

// A live channel (SubscribeOk.durable = false) keeps no per-device state on the server, so
// the client sends it no Ack; the processed position still moves and is reported. A durable
// channel on the same connection is acked as usual.
TEST(ClientSession, LiveChannelsAreNotAckedButTheirPositionMoves) {
  Harness h;
  h.session.subscribe("ticker");
  h.session.subscribe("news");
  auto subs = h.ready();
  ASSERT_EQ(subs.size(), 2u);
  ASSERT_EQ(h.subscribe_ok(subs[0], "T1", 0, false, /*durable=*/false), Status::kOk);
  ASSERT_EQ(h.subscribe_ok(subs[1], "E1", 0, false, /*durable=*/true), Status::kOk);
  ASSERT_EQ(h.host.subscribed.size(), 2u);
  EXPECT_FALSE(h.host.subscribed[0].durable);
  EXPECT_TRUE(h.host.subscribed[1].durable);
  std::vector<uint8_t> batch;
  for (uint64_t i = 1; i <= 3; ++i) append(batch, h.server.frame(make_pub("ticker", "T1", i)));
  ASSERT_EQ(h.feed(batch), Status::kOk);
  EXPECT_TRUE(h.take().empty());  // no Ack for the live channel
  ASSERT_EQ(h.host.pubs.size(), 3u);
  std::string epoch;
  uint64_t offset = 0;
  ASSERT_TRUE(h.session.position("ticker", epoch, offset));
  EXPECT_EQ(offset, 3u);
  ASSERT_FALSE(h.host.positions.empty());
  EXPECT_EQ(h.host.positions.back().channel, "ticker");
  EXPECT_EQ(h.host.positions.back().offset, 3u);
  // The durable channel next to it is acked.
  ASSERT_EQ(h.send(make_pub("news", "E1", 1)), Status::kOk);
  auto acks = h.take();
  ASSERT_EQ(acks.size(), 1u);
  ASSERT_EQ(acks[0].type, FrameType::kAck);
  EXPECT_EQ(acks[0].as<v1::Ack>().channel(), "news");
  EXPECT_EQ(acks[0].as<v1::Ack>().offset(), 1u);
  // A manual ack of the live channel is accepted (it moves the position) and sends nothing.
  EXPECT_TRUE(h.session.ack("ticker", "T1", 3));
  EXPECT_TRUE(h.take().empty());
}

TEST(ClientSession, PublicationsOfOtherChannelsAreIgnored) {
  Harness h;
  h.session.subscribe("news");
  auto subs = h.ready();
  ASSERT_EQ(h.send(make_pub("news", "E1", 1)), Status::kOk);  // before SubscribeOk
  ASSERT_EQ(h.subscribe_ok(subs[0], "E1", 0), Status::kOk);
  ASSERT_EQ(h.send(make_pub("other", "E1", 1)), Status::kOk);
  EXPECT_TRUE(h.host.pubs.empty());
}

TEST(ClientSession, ReconnectResumesFromLastPositionAndDropsReplayedDuplicates) {
  Harness h;
  h.session.subscribe("news");
  auto subs = h.ready();
  ASSERT_EQ(h.subscribe_ok(subs[0], "E1", 0), Status::kOk);
  for (uint64_t i = 1; i <= 3; ++i) ASSERT_EQ(h.send(make_pub("news", "E1", i)), Status::kOk);
  ASSERT_EQ(h.send(make_pub("news", "E1", 5)), Status::kOk);  // 4 still missing
  h.take();
  h.session.connection_closed();
  EXPECT_EQ(h.session.state(), ClientSession::State::kDisconnected);

  auto hello = h.open(100);
  ASSERT_EQ(hello.size(), 1u);
  EXPECT_EQ(hello[0].as<v1::Hello>().resume_session_id(), "s1");
  ASSERT_EQ(h.send(make_welcome("s2"), 100), Status::kOk);
  h.take();
  ASSERT_EQ(h.send(v1::AuthOk(), 100), Status::kOk);
  subs = h.take();
  ASSERT_EQ(subs.size(), 1u);
  const auto& s = subs[0].as<v1::Subscribe>();
  EXPECT_TRUE(s.resume());
  EXPECT_EQ(s.epoch(), "E1");
  EXPECT_EQ(s.offset(), 3u);
  ASSERT_EQ(h.subscribe_ok(subs[0], "E1", 6, true), Status::kOk);
  ASSERT_EQ(h.host.subscribed.size(), 2u);
  EXPECT_TRUE(h.host.subscribed[1].resumed);
  EXPECT_TRUE(h.host.subscribed[1].recovered);
  for (uint64_t i = 4; i <= 6; ++i) ASSERT_EQ(h.send(make_pub("news", "E1", i)), Status::kOk);
  std::vector<uint64_t> got;
  for (const auto& p : h.host.pubs) got.push_back(p.offset);
  EXPECT_EQ(got, (std::vector<uint64_t>{1, 2, 3, 5, 4, 6}));  // 5 only once
}

TEST(ClientSession, LostHistoryIsReportedAndTheNewEpochStartsClean) {
  Harness h;
  ASSERT_TRUE(h.session.subscribe("news", "OLD", 7));  // restored from a position store
  auto subs = h.ready();
  ASSERT_EQ(subs.size(), 1u);
  EXPECT_TRUE(subs[0].as<v1::Subscribe>().resume());
  EXPECT_EQ(subs[0].as<v1::Subscribe>().offset(), 7u);
  ASSERT_EQ(h.subscribe_ok(subs[0], "NEW", 2, false), Status::kOk);
  ASSERT_EQ(h.host.subscribed.size(), 1u);
  EXPECT_TRUE(h.host.subscribed[0].resumed);
  EXPECT_FALSE(h.host.subscribed[0].recovered);
  EXPECT_EQ(h.host.subscribed[0].epoch, "NEW");
  ASSERT_EQ(h.send(make_pub("news", "NEW", 2)), Status::kOk);  // announced: not new
  ASSERT_EQ(h.send(make_pub("news", "NEW", 3)), Status::kOk);
  ASSERT_EQ(h.host.pubs.size(), 1u);
  EXPECT_EQ(h.host.pubs[0].offset, 3u);
  EXPECT_EQ(h.host.positions.back().epoch, "NEW");
}

TEST(ClientSession, EpochChangeWhileSubscribedIsReportedAsLostHistory) {
  Harness h;
  h.session.subscribe("news");
  auto subs = h.ready();
  ASSERT_EQ(h.subscribe_ok(subs[0], "E1", 4), Status::kOk);
  ASSERT_EQ(h.send(make_pub("news", "E2", 1)), Status::kOk);
  ASSERT_EQ(h.host.subscribed.size(), 2u);
  EXPECT_FALSE(h.host.subscribed[1].recovered);
  ASSERT_EQ(h.host.pubs.size(), 1u);
  EXPECT_EQ(h.host.pubs[0].epoch, "E2");
}

TEST(ClientSession, ChannelWithoutHistoryResumesFromNothingSeen) {
  Harness h;
  h.session.subscribe("news");
  auto subs = h.ready();
  ASSERT_EQ(h.subscribe_ok(subs[0], "", 0), Status::kOk);  // no history yet
  h.session.connection_closed();
  h.open();
  h.send(make_welcome());
  h.take();
  h.send(v1::AuthOk());
  subs = h.take();
  ASSERT_EQ(subs.size(), 1u);
  EXPECT_TRUE(subs[0].as<v1::Subscribe>().resume());  // (epoch "", offset 0): replay everything
  EXPECT_EQ(subs[0].as<v1::Subscribe>().epoch(), "");
  ASSERT_EQ(h.subscribe_ok(subs[0], "E1", 2, true), Status::kOk);
  ASSERT_EQ(h.send(make_pub("news", "E1", 1)), Status::kOk);
  ASSERT_EQ(h.send(make_pub("news", "E1", 2)), Status::kOk);
  EXPECT_EQ(h.host.pubs.size(), 2u);
  EXPECT_TRUE(h.host.subscribed.back().recovered);
}

TEST(ClientSession, ManualAcksAckOnlyWhatTheAppProcessed) {
  client::SessionOptions o;
  o.manual_ack = true;
  Harness h(o);
  h.session.subscribe("news");
  auto subs = h.ready();
  ASSERT_EQ(h.subscribe_ok(subs[0], "E1", 0), Status::kOk);
  for (uint64_t i = 1; i <= 3; ++i) ASSERT_EQ(h.send(make_pub("news", "E1", i)), Status::kOk);
  EXPECT_TRUE(h.take().empty());  // nothing acked yet
  EXPECT_TRUE(h.session.ack("news", "E1", 2));
  EXPECT_TRUE(h.take().empty());  // 1 is not processed: no contiguous progress
  EXPECT_FALSE(h.session.ack("news", "E0", 1));  // other epoch
  EXPECT_FALSE(h.session.ack("news", "E1", 9));  // never delivered
  EXPECT_TRUE(h.session.ack("news", "E1", 1));
  auto acks = h.take();
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].as<v1::Ack>().offset(), 2u);
}

TEST(ClientSession, AnswersPingsAndDetectsSilence) {
  client::SessionOptions o;
  o.heartbeat_timeout_ms = 1000;
  Harness h(o);
  h.ready(0);
  v1::Ping ping;
  ping.set_nonce(77);
  ASSERT_EQ(h.send(ping, 10), Status::kOk);
  auto pong = h.take();
  ASSERT_EQ(pong.size(), 1u);
  ASSERT_EQ(pong[0].type, FrameType::kPong);
  EXPECT_EQ(pong[0].as<v1::Pong>().nonce(), 77u);

  // Half the timeout idle: the client pings; the Pong counts as life.
  EXPECT_LE(h.session.next_deadline_ms(), 510u);
  ASSERT_EQ(h.session.on_timer(510, 0), Status::kOk);
  auto ping2 = h.take();
  ASSERT_EQ(ping2.size(), 1u);
  ASSERT_EQ(ping2[0].type, FrameType::kPing);
  v1::Pong answer;
  answer.set_nonce(ping2[0].as<v1::Ping>().nonce());
  ASSERT_EQ(h.send(answer, 600), Status::kOk);
  ASSERT_EQ(h.host.pongs.size(), 1u);
  ASSERT_EQ(h.session.on_timer(1500, 0), Status::kOk);  // 900 ms since the Pong
  h.take();
  // Then silence: dead at 1000 ms after the last byte, no Error sent (the peer is gone).
  EXPECT_EQ(h.session.on_timer(1600, 0), Status::kHeartbeatTimeout);
  EXPECT_TRUE(h.take().empty());
  EXPECT_EQ(h.session.state(), ClientSession::State::kClosing);
  EXPECT_TRUE(ClientSession::should_reconnect(Status::kHeartbeatTimeout, false));
}

TEST(ClientSession, HandshakeTimeout) {
  client::SessionOptions o;
  o.handshake_timeout_ms = 500;
  Harness h(o);
  h.open(0);
  EXPECT_EQ(h.session.next_deadline_ms(), 500u);
  EXPECT_EQ(h.session.on_timer(499, 0), Status::kOk);
  EXPECT_EQ(h.session.on_timer(500, 0), Status::kHandshakeTimeout);
}

TEST(ClientSession, RefreshesTheTokenBeforeExpiry) {
  client::SessionOptions o;
  o.heartbeat_timeout_ms = 10'000'000;  // keep the heartbeat out of the way
  Harness h(o);
  // AuthOk at unix 1,000,000 ms says the token expires 100 s later: refresh at 80 %.
  h.ready(0, 1'000'000 + 100'000);
  EXPECT_EQ(h.session.next_deadline_ms(), 80'000u);
  h.host.token_value = "fresh";
  ASSERT_EQ(h.session.on_timer(80'000, 1'080'000), Status::kOk);
  auto f = h.take();
  ASSERT_EQ(f.size(), 1u);
  ASSERT_EQ(f[0].type, FrameType::kRefresh);
  EXPECT_EQ(f[0].as<v1::Refresh>().token(), "fresh");
  v1::AuthOk ok;
  ok.set_user_id("alice");
  ok.set_expires_at_ms(1'080'000 + 100'000);
  ASSERT_EQ(h.send(ok, 80'000, 1'080'000), Status::kOk);
  EXPECT_EQ(h.host.ready, 1);  // a refresh, not a new connection
  EXPECT_EQ(h.session.next_deadline_ms(), 160'000u);
}

TEST(ClientSession, AGapThatStaysOpenIsRefilledByResubscribing) {
  client::SessionOptions o;
  o.gap_timeout_ms = 1000;
  Harness h(o);
  h.session.subscribe("news");
  auto subs = h.ready();
  ASSERT_EQ(h.subscribe_ok(subs[0], "E1", 0), Status::kOk);
  ASSERT_EQ(h.send(make_pub("news", "E1", 1), 0), Status::kOk);
  ASSERT_EQ(h.send(make_pub("news", "E1", 3), 100), Status::kOk);  // 2 was shed
  h.take();
  ASSERT_EQ(h.session.on_timer(1100, 0), Status::kOk);
  auto f = h.take();
  ASSERT_EQ(f.size(), 1u);
  ASSERT_EQ(f[0].type, FrameType::kUnsubscribe);
  v1::UnsubscribeOk uok;
  uok.set_request_id(f[0].as<v1::Unsubscribe>().request_id());
  uok.set_channel("news");
  ASSERT_EQ(h.send(uok), Status::kOk);
  f = h.take();
  ASSERT_EQ(f.size(), 1u);
  ASSERT_EQ(f[0].type, FrameType::kSubscribe);
  EXPECT_TRUE(f[0].as<v1::Subscribe>().resume());
  EXPECT_EQ(f[0].as<v1::Subscribe>().offset(), 1u);
  ASSERT_EQ(h.subscribe_ok(f[0], "E1", 3, true), Status::kOk);
  ASSERT_EQ(h.send(make_pub("news", "E1", 2)), Status::kOk);
  ASSERT_EQ(h.send(make_pub("news", "E1", 3)), Status::kOk);  // replayed again: dropped
  std::vector<uint64_t> got;
  for (const auto& p : h.host.pubs) got.push_back(p.offset);
  EXPECT_EQ(got, (std::vector<uint64_t>{1, 3, 2}));
  EXPECT_EQ(h.session.gap_resubscribes(), 1u);
}

TEST(ClientSession, RefusedSubscriptionIsReportedAndRemoved) {
  Harness h;
  h.session.subscribe("secret");
  h.session.subscribe("busy");
  auto subs = h.ready();
  ASSERT_EQ(subs.size(), 2u);
  v1::Error e;
  e.set_code(static_cast<uint32_t>(Status::kPermissionDenied));
  e.set_request_id(subs[0].as<v1::Subscribe>().request_id());
  ASSERT_EQ(h.send(e), Status::kOk);  // request-level: the connection stays
  e.set_code(static_cast<uint32_t>(Status::kStorageUnavailable));
  e.set_request_id(subs[1].as<v1::Subscribe>().request_id());
  ASSERT_EQ(h.send(e), Status::kOk);
  ASSERT_EQ(h.host.failed.size(), 2u);
  EXPECT_EQ(h.host.failed[0].second, Status::kPermissionDenied);
  EXPECT_EQ(h.session.subscription_count(), 1u);  // the temporary one is kept for later
  EXPECT_EQ(h.session.state(), ClientSession::State::kReady);
}

TEST(ClientSession, GoAwayClosesAndSetsTheReconnectDelay) {
  Harness h;
  h.ready();
  v1::GoAway g;
  g.set_code(static_cast<uint32_t>(Status::kGoingAway));
  g.set_reconnect_after_ms(2000);
  g.set_reconnect_to("10.0.0.2:7600");
  EXPECT_EQ(h.send(g), Status::kGoingAway);
  EXPECT_TRUE(h.take().empty());  // never answered
  EXPECT_EQ(h.session.reconnect_to(), "10.0.0.2:7600");
  h.session.connection_closed();
  for (uint32_t r : {0u, 1u, 999u, 1999u, 2000u, 123456u}) {
    const uint64_t d = h.session.reconnect_delay_ms(250, 30000, r);
    EXPECT_GE(d, 2000u);
    EXPECT_LE(d, 4000u);
  }
}

TEST(ClientSession, BackoffGrowsWithJitterUpToTheCap) {
  Harness h;
  uint64_t last_max = 0;
  for (int attempt = 1; attempt <= 12; ++attempt) {
    h.open();
    h.session.connection_closed();  // failed before READY
    ASSERT_EQ(h.session.attempts(), static_cast<uint32_t>(attempt));
    const uint64_t base = std::min<uint64_t>(30000, 250ull << (attempt - 1));
    const uint64_t lo = h.session.reconnect_delay_ms(250, 30000, 0);
    const uint64_t hi = h.session.reconnect_delay_ms(250, 30000, UINT32_MAX - 1);
    EXPECT_GE(lo, base / 2);
    EXPECT_LE(hi, base);
    for (uint32_t r = 0; r < 50; ++r) {
      const uint64_t d = h.session.reconnect_delay_ms(250, 30000, r * 7919u);
      EXPECT_GE(d, base / 2);
      EXPECT_LE(d, base);
    }
    EXPECT_GE(base, last_max);
    last_max = base;
  }
  EXPECT_EQ(last_max, 30000u);
  // READY resets the count.
  h.ready();
  EXPECT_EQ(h.session.attempts(), 0u);
}

TEST(ClientSession, ReconnectPolicyFollowsTemporaryFlags) {
  EXPECT_TRUE(ClientSession::should_reconnect(Status::kConnectionLost, false));
  EXPECT_TRUE(ClientSession::should_reconnect(Status::kConnectFailed, false));
  EXPECT_TRUE(ClientSession::should_reconnect(Status::kSlowConsumer, false));
  EXPECT_TRUE(ClientSession::should_reconnect(Status::kTruncatedFrame, false));
  EXPECT_FALSE(ClientSession::should_reconnect(Status::kAuthFailed, false));
  EXPECT_TRUE(ClientSession::should_reconnect(Status::kAuthFailed, true));
  EXPECT_FALSE(ClientSession::should_reconnect(Status::kTokenExpired, false));
  EXPECT_FALSE(ClientSession::should_reconnect(Status::kCertificateVerifyFailed, true));
  EXPECT_FALSE(ClientSession::should_reconnect(Status::kMessageTooLarge, true));
  EXPECT_FALSE(ClientSession::should_reconnect(Status::kBadMagic, true));
}

// ---- every malformed or misplaced server frame -------------------------------------------

struct BadInput {
  const char* name;
  bool after_auth;                                   // READY first, else right after Hello
  std::function<std::vector<uint8_t>(FakeServer&)> bytes;
  Status expected;
  bool error_sent;                                   // the client answers with Error(expected)
};

std::vector<uint8_t> raw_header(uint32_t magic, uint16_t version, uint16_t type_field, uint32_t length, uint32_t seq) {
  std::vector<uint8_t> h(16);
  codec::put_u32(h.data(), magic);
  codec::put_u16(h.data() + 4, version);
  codec::put_u16(h.data() + 6, type_field);
  codec::put_u32(h.data() + 8, length);
  codec::put_u32(h.data() + 12, seq);
  return h;
}

void PrintTo(const BadInput& b, std::ostream* os) { *os << b.name; }

class ClientSessionBadInput : public ::testing::TestWithParam<BadInput> {};

TEST_P(ClientSessionBadInput, FailsWithTheSpecificCodeAndStops) {
  const BadInput& c = GetParam();
  Harness h;
  h.session.subscribe("news");
  if (c.after_auth) {
    auto subs = h.ready();
    ASSERT_EQ(h.subscribe_ok(subs[0], "E1", 0), Status::kOk);
    ASSERT_EQ(h.send(make_pub("news", "E1", 1)), Status::kOk);
    h.take();
  } else {
    h.open();
  }
  const size_t pubs_before = h.host.pubs.size();
  const auto positions_before = h.host.positions.size();
  const Status s = h.feed(c.bytes(h.server));
  EXPECT_EQ(s, c.expected) << codec::to_string(s);
  EXPECT_EQ(h.session.fatal(), c.expected);
  EXPECT_EQ(h.session.state(), ClientSession::State::kClosing);
  auto out = h.take();
  if (c.error_sent) {
    ASSERT_EQ(out.size(), 1u);
    ASSERT_EQ(out[0].type, FrameType::kError);
    EXPECT_EQ(out[0].as<v1::Error>().code(), static_cast<uint32_t>(c.expected));
    EXPECT_EQ(out[0].as<v1::Error>().request_id(), 0u);
  } else {
    EXPECT_TRUE(out.empty());
  }
  // Nothing after the failure is processed, and nothing was lost or invented.
  EXPECT_EQ(h.feed(h.server.frame(make_pub("news", "E1", 2))), c.expected);
  EXPECT_EQ(h.host.pubs.size(), pubs_before);
  EXPECT_EQ(h.host.positions.size(), positions_before);
  EXPECT_TRUE(h.take().empty());
  std::string epoch;
  uint64_t offset = 0;
  if (c.after_auth) {
    ASSERT_TRUE(h.session.position("news", epoch, offset));
    EXPECT_EQ(offset, 1u);  // kept for the resume after reconnecting
  }
}

template <class M>
std::function<std::vector<uint8_t>(FakeServer&)> frame_of(M m) {
  return [m](FakeServer& s) { return s.frame(m); };
}

v1::Subscribe server_subscribe() {
  v1::Subscribe s;
  s.set_request_id(1);
  s.set_channel("x");
  return s;
}

v1::Error conn_error(uint32_t code) {
  v1::Error e;
  e.set_code(code);
  e.set_text("bye");
  return e;
}

INSTANTIATE_TEST_SUITE_P(
    AllCases, ClientSessionBadInput,
    ::testing::Values(
        BadInput{"BadMagic", false, [](FakeServer&) { return raw_header(0x48524C45, 1, 0x002, 0, 0); },
                 Status::kBadMagic, true},
        BadInput{"UnsupportedVersion", true, [](FakeServer& s) { return raw_header(codec::kMagic, 9, 0x030, 0, s.sequence()); },
                 Status::kUnsupportedVersion, true},
        BadInput{"UnknownType", true, [](FakeServer& s) { return raw_header(codec::kMagic, 1, 0x0FF, 0, s.sequence()); },
                 Status::kUnknownFrameType, true},
        BadInput{"ReservedFlag", true,
                 [](FakeServer& s) { return raw_header(codec::kMagic, 1, 0x1000 | 0x030, 0, s.sequence()); },
                 Status::kUnknownFlag, true},
        BadInput{"FrameTooLarge", true,
                 [](FakeServer& s) { return raw_header(codec::kMagic, 1, 0x020, 0xFFFFFFFF, s.sequence()); },
                 Status::kFrameTooLarge, true},
        BadInput{"HandshakeFrameTooLarge", false,
                 [](FakeServer&) { return raw_header(codec::kMagic, 1, 0x002, 20000, 0); }, Status::kFrameTooLarge,
                 true},
        BadInput{"BadSequence", true, [](FakeServer& s) { return raw_header(codec::kMagic, 1, 0x030, 0, s.sequence() + 5); },
                 Status::kBadSequence, true},
        BadInput{"FragmentedControl", true,
                 [](FakeServer& s) {
                   auto h = raw_header(codec::kMagic, 1, 0x2000 | 0x030, 8, s.sequence());
                   h.resize(24, 0);
                   return h;
                 },
                 Status::kFragmentedControl, true},
        BadInput{"CompressedWithoutZstd", true,
                 [](FakeServer& s) {
                   auto h = raw_header(codec::kMagic, 1, 0x8000 | 0x020, 4, s.sequence());
                   h.resize(20, 0);
                   return h;
                 },
                 Status::kUnsupportedCompression, true},
        BadInput{"MalformedWelcome", false,
                 [](FakeServer&) {
                   auto h = raw_header(codec::kMagic, 1, 0x002, 3, 0);
                   h.push_back(0x0A);  // field 1, length-delimited: wrong wire type for a uint32
                   h.push_back(0x05);
                   h.push_back(0x01);
                   return h;
                 },
                 Status::kMalformedMessage, true},
        BadInput{"MalformedPublication", true,
                 [](FakeServer& s) {
                   auto h = raw_header(codec::kMagic, 1, 0x020, 2, s.sequence());
                   h.push_back(0x0A);  // channel, length 9 but 0 bytes follow
                   h.push_back(0x09);
                   return h;
                 },
                 Status::kMalformedMessage, true},
        BadInput{"PingBeforeWelcome", false, frame_of(v1::Ping()), Status::kUnexpectedFrame, true},
        BadInput{"SecondWelcome", true, frame_of(make_welcome()), Status::kUnexpectedFrame, true},
        BadInput{"ServerSendsSubscribe", true, frame_of(server_subscribe()), Status::kUnexpectedFrame, true},
        BadInput{"ServerSendsHello", true, frame_of(v1::Hello()), Status::kUnexpectedFrame, true},
        BadInput{"ServerSendsAck", true, frame_of(v1::Ack()), Status::kUnexpectedFrame, true},
        BadInput{"ServerSendsAuth", true, frame_of(v1::Auth()), Status::kUnexpectedFrame, true},
        BadInput{"ServerSendsRefresh", true, frame_of(v1::Refresh()), Status::kUnexpectedFrame, true},
        BadInput{"ServerSendsPublish", true, frame_of(v1::Publish()), Status::kUnexpectedFrame, true},
        BadInput{"ServerSendsUnsubscribe", true, frame_of(v1::Unsubscribe()), Status::kUnexpectedFrame, true},
        BadInput{"PublicationWithoutEpoch", true, frame_of(make_pub("news", "", 2)), Status::kInvalidField, true},
        BadInput{"WelcomeWithUnofferedVersion", false,
                 [](FakeServer& s) {
                   auto w = make_welcome();
                   w.set_version(2);
                   return s.frame(w);
                 },
                 Status::kNoCommonVersion, true},
        BadInput{"WelcomeWithTinyFrameSize", false,
                 [](FakeServer& s) {
                   auto w = make_welcome();
                   w.set_max_frame_size(100);
                   return s.frame(w);
                 },
                 Status::kInvalidField, true},
        BadInput{"ConnectionErrorAuthFailed", false, frame_of(conn_error(503)), Status::kAuthFailed, false},
        BadInput{"ConnectionErrorSlowConsumer", true, frame_of(conn_error(600)), Status::kSlowConsumer, false},
        BadInput{"ConnectionErrorUnknownCode", true, frame_of(conn_error(4242)), Status::kInvalidField, false},
        BadInput{"ConnectionErrorCodeZero", true, frame_of(conn_error(0)), Status::kInvalidField, false},
        BadInput{"GoAwayWithoutCode", true, frame_of(v1::GoAway()), Status::kGoingAway, false}),
    [](const ::testing::TestParamInfo<BadInput>& i) { return std::string(i.param.name); });

TEST(ClientSession, ChecksumMismatchIsCaughtWhenChecksumsWereNegotiated) {
  client::SessionOptions o;
  o.checksum = true;
  Harness h(o);
  h.open();
  auto w = make_welcome();
  w.set_checksum(true);
  ASSERT_EQ(h.send(w), Status::kOk);
  v1::AuthOk ok;
  ok.set_user_id("alice");
  auto bytes = h.server.frame(ok, true);
  bytes[bytes.size() - 5] ^= 0x01;  // a body bit
  EXPECT_EQ(h.feed(bytes), Status::kChecksumMismatch);
  EXPECT_EQ(h.host.ready, 0);
}

TEST(ClientSession, TruncatedFrameAtEndOfStream) {
  Harness h;
  h.ready();
  auto bytes = h.server.frame(make_pub("news", "E1", 1));
  bytes.resize(bytes.size() - 3);
  ASSERT_EQ(h.feed(bytes), Status::kOk);
  EXPECT_EQ(h.session.on_eof(), Status::kTruncatedFrame);
  EXPECT_TRUE(ClientSession::should_reconnect(Status::kTruncatedFrame, false));
}

// The same server stream at every split point and byte by byte: identical events.
TEST(ClientSession, AnyChunkingGivesTheSameEvents) {
  FakeServer server;
  std::vector<uint8_t> stream;
  append(stream, server.frame(make_welcome()));
  v1::AuthOk ok;
  ok.set_user_id("alice");
  append(stream, server.frame(ok));
  v1::SubscribeOk sok;
  sok.set_request_id(1);
  sok.set_channel("news");
  sok.set_epoch("E1");
  sok.set_durable(true);
  append(stream, server.frame(sok));
  for (uint64_t i = 1; i <= 3; ++i) append(stream, server.frame(make_pub("news", "E1", i, std::string(i * 50, 'x'))));
  v1::Ping ping;
  ping.set_nonce(5);
  append(stream, server.frame(ping));

  auto run = [&](const std::vector<size_t>& cuts) {
    Harness h;
    h.session.subscribe("news");
    h.open();
    size_t from = 0;
    for (size_t cut : cuts) {
      std::vector<uint8_t> part(stream.begin() + static_cast<ptrdiff_t>(from), stream.begin() + static_cast<ptrdiff_t>(cut));
      EXPECT_EQ(h.feed(part), Status::kOk);
      from = cut;
    }
    std::vector<uint8_t> rest(stream.begin() + static_cast<ptrdiff_t>(from), stream.end());
    EXPECT_EQ(h.feed(rest), Status::kOk);
    std::string summary = std::to_string(h.host.ready) + "/" + std::to_string(h.host.subscribed.size());
    for (const auto& p : h.host.pubs) summary += "," + std::to_string(p.offset) + ":" + std::to_string(p.payload.size());
    // Acks are coalesced per read, so their number depends on the chunking; the last
    // one must cover everything.
    uint64_t acked = 0;
    for (const auto& f : h.take()) {
      if (f.type == FrameType::kAck) {
        acked = f.as<v1::Ack>().offset();
      } else {
        summary += ";" + std::string(codec::to_string(f.type));
      }
    }
    return summary + ";acked " + std::to_string(acked);
  };
  const std::string whole = run({});
  EXPECT_EQ(whole, "1/1,1:50,2:100,3:150;Auth;Subscribe;Pong;acked 3");
  for (size_t cut = 1; cut < stream.size(); ++cut) ASSERT_EQ(run({cut}), whole) << "split at " << cut;
  std::vector<size_t> bytes;
  for (size_t i = 1; i < stream.size(); ++i) bytes.push_back(i);
  EXPECT_EQ(run(bytes), whole);
}

TEST(OffsetWindow, TracksContiguousAndEarlyOffsets) {
  client::OffsetWindow w;
  w.reset(5);
  EXPECT_TRUE(w.contains(5));
  EXPECT_FALSE(w.add(3));
  EXPECT_TRUE(w.add(7));
  EXPECT_TRUE(w.has_gap());
  EXPECT_EQ(w.contiguous(), 5u);
  EXPECT_FALSE(w.add(7));
  EXPECT_TRUE(w.add(6));
  EXPECT_EQ(w.contiguous(), 7u);
  EXPECT_FALSE(w.has_gap());
  // Past the cap of early offsets the lowest gap is given up.
  for (uint64_t i = 10; i < 14; ++i) w.add(i, 3);
  EXPECT_EQ(w.give_ups(), 1u);
  EXPECT_EQ(w.contiguous(), 13u);
}

TEST(PositionFileStore, SavesAtomicallyAndLoadsBack) {
  const std::string dir = ::testing::TempDir() + "/herald-pos-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/positions";
  {
    client::PositionFileStore s(path);
    ASSERT_TRUE(s.load());
    s.set("news", "E1", 42);
    s.set("trade:BTC", "E2", 7);
    s.set("bad", "has space", 1);  // not storable: ignored
    ASSERT_TRUE(s.save());
    EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  }
  client::PositionFileStore s(path);
  ASSERT_TRUE(s.load());
  std::string epoch;
  uint64_t offset = 0;
  ASSERT_TRUE(s.get("news", epoch, offset));
  EXPECT_EQ(epoch, "E1");
  EXPECT_EQ(offset, 42u);
  ASSERT_TRUE(s.get("trade:BTC", epoch, offset));
  EXPECT_FALSE(s.get("bad", epoch, offset));
  {
    std::ofstream(path) << "something else\n";
  }
  std::string error;
  EXPECT_FALSE(s.load(&error));
  EXPECT_NE(error.find("not a Herald position file"), std::string::npos);
  client::PositionFileStore unwritable("/proc/herald-no-such-dir/positions");
  unwritable.set("news", "E1", 1);
  EXPECT_FALSE(unwritable.save(&error));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace herald::testing
