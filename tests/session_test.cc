// The server's session state machine (docs/protocol.md §9, §10, §11) driven by
// client frames and times; everything it sends is decoded back with a MessageReader.
#include "server/session.h"

#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>

#include "codec/frame_encoder.h"
#include "codec/message.h"
#include "codec/message_reader.h"
#include "tests/support/wire.h"

namespace herald::server {
namespace {

using codec::FrameType;
using codec::Status;
using herald::testing::Bytes;

constexpr uint64_t kAccepted = 5'000;
constexpr int64_t kUnixStart = 1'700'000'000'000;
const char* const kSecret = "session-test-secret";

// One frame the session sent, decoded.
struct Sent {
  FrameType type = FrameType::kPing;
  uint16_t version = 0;
  uint16_t flags = 0;
  std::unique_ptr<google::protobuf::Message> msg;

  template <class M>
  const M& as() const {
    return dynamic_cast<const M&>(*msg);
  }
};

// Records every call and decodes control frames as a client would.
class FakeHost : public SessionHost {
 public:
  FakeHost() {
    codec::ReaderLimits l;
    l.decoder.version = 0;  // Welcome is v1, later frames the negotiated version
    l.decoder.max_frame_size = codec::kMaxMaxFrameSize;
    l.max_message_size = 64 << 20;
    l.reassembly.max_message_size = 64 << 20;
    l.reassembly.max_buffered_bytes = 64 << 20;
    reader_ = std::make_unique<codec::MessageReader>(l, &client_ctx_);
  }

  Session* session = nullptr;
  bool sent_after_closed = false;
  std::vector<Sent> sent;  // decoded frames, in order
  std::vector<PublicationPtr> publications;
  std::vector<std::string> order;  // "frame:<type>" and "pub:<offset>" in call order
  std::vector<TokenClaims> authenticated;
  Status auth_status = Status::kOk;
  struct SubscribeCall {
    std::string channel;
    bool resume;
    std::string epoch;
    uint64_t offset;
  };
  std::vector<SubscribeCall> subscribes;
  SessionSubscribeResult subscribe_result{Status::kOk, "e1", 5, false, false};
  std::vector<PublicationPtr> replay;
  std::vector<std::string> unsubscribes;
  std::vector<SessionPublish> publishes;
  SessionPublishResult publish_result{Status::kOk, 42, "e1", false};
  std::vector<std::pair<std::string, uint64_t>> acks;
  std::function<void()> during_send;  // runs inside send(), e.g. to call back into the session

  std::string session_id() const override { return "sess-1"; }
  void send(codec::EncodedMessage&& frame) noexcept override {
    if (session != nullptr && session->state() == Session::State::kClosed) sent_after_closed = true;
    Bytes wire;
    uint32_t first = seq_;
    codec::append_frames(frame, seq_, wire);
    (void)first;
    Sent s;
    s.version = codec::get_u16(wire.data() + 4);
    std::span<const uint8_t> in(wire);
    codec::InboundMessage m;
    codec::DecodeResult r = reader_->read(in, 0, m);
    EXPECT_EQ(r.status, Status::kOk) << codec::to_string(r.status);
    EXPECT_EQ(r.consumed, wire.size());
    if (codec::ok(r.status)) {
      s.type = m.type;
      s.flags = m.flags;
      EXPECT_EQ(codec::decode_message(m.type, m.body, SIZE_MAX, s.msg), Status::kOk);
    }
    order.push_back("frame:" + std::string(codec::to_string(s.type)));
    sent.push_back(std::move(s));
    if (during_send) {
      auto f = std::move(during_send);
      during_send = nullptr;
      f();
    }
  }
  void send_publication(const PublicationPtr& p) noexcept override {
    if (session != nullptr && session->state() == Session::State::kClosed) sent_after_closed = true;
    order.push_back("pub:" + std::to_string(p->offset()));
    publications.push_back(p);
  }
  Status on_authenticated(const TokenClaims& claims) noexcept override {
    authenticated.push_back(claims);
    return auth_status;
  }
  SessionSubscribeResult subscribe(const std::string& channel, bool resume, const std::string& epoch, uint64_t offset,
                                   std::vector<PublicationPtr>& out) noexcept override {
    subscribes.push_back({channel, resume, epoch, offset});
    out = replay;
    return subscribe_result;
  }
  void unsubscribe(const std::string& channel) noexcept override { unsubscribes.push_back(channel); }
  SessionPublishResult publish(SessionPublish&& p) noexcept override {
    publishes.push_back(std::move(p));
    return publish_result;
  }
  void on_ack(const std::string& channel, const std::string&, uint64_t offset) noexcept override {
    acks.emplace_back(channel, offset);
  }

 private:
  codec::CodecContext client_ctx_;
  std::unique_ptr<codec::MessageReader> reader_;
  uint32_t seq_ = 0;
};

// Builds the client's frames with its own sequence numbers.
struct Client {
  uint32_t seq = 0;
  codec::EncodeOptions options = [] {
    codec::EncodeOptions o;
    o.checksum = false;
    o.max_frame_size = codec::kDefaultMaxFrameSize;
    o.max_message_size = SIZE_MAX;
    o.max_fragments = 1000;
    o.fragment_ref = 7;
    return o;
  }();

  Bytes frame(const google::protobuf::Message& m) {
    FrameType type;
    EXPECT_TRUE(codec::frame_type_for(m, type));
    return frame(type, m.SerializeAsString());
  }
  Bytes frame(FrameType type, const std::string& body) {
    codec::EncodedMessage e;
    std::span<const uint8_t> b(reinterpret_cast<const uint8_t*>(body.data()), body.size());
    EXPECT_EQ(codec::encode_message(type, b, options, nullptr, e), Status::kOk);
    Bytes out;
    codec::append_frames(e, seq, out);
    return out;
  }
};

PublicationPtr publication(const std::string& channel, uint64_t offset, const std::string& epoch = "e1",
                           size_t payload = 10, v1::Priority priority = v1::P3) {
  v1::Publication p;
  p.set_channel(channel);
  p.set_offset(offset);
  p.set_epoch(epoch);
  p.set_priority(priority);
  p.set_payload(std::string(payload, 'x'));
  return std::make_shared<const PublicationRecord>(std::move(p));
}

v1::Subscribe subscribe_msg(uint64_t rid, const std::string& channel) {
  v1::Subscribe s;
  s.set_request_id(rid);
  s.set_channel(channel);
  return s;
}

v1::Publish publish_msg(uint64_t rid, const std::string& channel, const std::string& payload = "hi") {
  v1::Publish p;
  p.set_request_id(rid);
  p.set_channel(channel);
  p.set_message_id("m1");
  p.set_type("note");
  p.set_payload(payload);
  return p;
}

v1::Ping ping_msg(uint64_t nonce) {
  v1::Ping p;
  p.set_nonce(nonce);
  return p;
}

class SessionTest : public ::testing::Test {
 protected:
  SessionTest() : verifier(jwt_settings()) {
    policies["news"].subscribe = NamespacePolicy::Subscribe::kAny;
    policies["news"].publish = NamespacePolicy::Publish::kAny;
    policies["trade"].subscribe = NamespacePolicy::Subscribe::kGrant;
    policies["trade"].publish = NamespacePolicy::Publish::kGrant;
    policies["internal"].subscribe = NamespacePolicy::Subscribe::kNone;
    policies["internal"].publish = NamespacePolicy::Publish::kNone;
    policies[""].subscribe = NamespacePolicy::Subscribe::kAny;
    policies[""].publish = NamespacePolicy::Publish::kNone;
    policies["user"].subscribe = NamespacePolicy::Subscribe::kNone;
    config.policy = [this](std::string_view channel) -> const NamespacePolicy& {
      auto it = policies.find(std::string(namespace_of(channel)));
      return it == policies.end() ? policies[""] : it->second;
    };
    config.max_subscriptions = 4;
    reset();
  }

  static JwtSettings jwt_settings() {
    JwtSettings s;
    s.secret = kSecret;
    return s;
  }

  void reset() {
    host = std::make_unique<FakeHost>();
    session = std::make_unique<Session>(&config, &verifier, host.get(), &ctx, kAccepted);
    host->session = session.get();
    client = Client{};
    now = kAccepted;
    unix_ms = kUnixStart;
  }

  std::string token(nlohmann::json claims, const std::string& secret = kSecret) {
    JwtSettings s;
    s.secret = secret;
    return sign_token(claims, s);
  }
  nlohmann::json claims_for(const std::string& user, int64_t exp_in_s = 3600) {
    nlohmann::json c;
    c["sub"] = user;
    c["exp"] = unix_ms / 1000 + exp_in_s;
    c["channels"] = nlohmann::json::array({"trade:BTC-USD", "trade:eth*"});
    c["publish"] = true;
    return c;
  }
  v1::Auth auth_msg(const std::string& tok) {
    v1::Auth a;
    a.set_token(tok);
    return a;
  }

  Status feed(const Bytes& b) { return session->on_bytes(b, now, unix_ms); }
  Status feed(const google::protobuf::Message& m) { return feed(client.frame(m)); }

  // The frames sent since the last call.
  std::vector<Sent> take() {
    std::vector<Sent> out;
    for (size_t i = taken; i < host->sent.size(); ++i) out.push_back(std::move(host->sent[i]));
    taken = host->sent.size();
    return out;
  }

  void hello(v1::Hello h = {}) {
    ASSERT_EQ(feed(h), Status::kOk);
    auto out = take();
    ASSERT_EQ(out.size(), 1u);
    ASSERT_EQ(out[0].type, FrameType::kWelcome);
    EXPECT_EQ(out[0].version, 1);
    EXPECT_EQ(out[0].as<v1::Welcome>().session_id(), "sess-1");
    EXPECT_EQ(session->state(), Session::State::kAwaitAuth);
  }
  void handshake(const nlohmann::json& c, v1::Hello h = {}) {
    hello(h);
    ASSERT_EQ(feed(auth_msg(token(c))), Status::kOk);
    auto out = take();
    ASSERT_EQ(out.size(), 1u);
    ASSERT_EQ(out[0].type, FrameType::kAuthOk);
    EXPECT_EQ(out[0].as<v1::AuthOk>().user_id(), c["sub"].get<std::string>());
    ASSERT_EQ(session->state(), Session::State::kReady);
  }
  void handshake(const std::string& user = "alice") { handshake(claims_for(user)); }

  // Expects exactly one frame: a connection-level Error with `code`, and the session fatal.
  void expect_fatal(Status got, Status code, uint16_t version = 1) {
    EXPECT_EQ(got, code) << codec::to_string(got);
    EXPECT_EQ(session->fatal(), code);
    EXPECT_EQ(session->state(), Session::State::kClosing);
    auto out = take();
    ASSERT_EQ(out.size(), 1u);
    ASSERT_EQ(out[0].type, FrameType::kError);
    EXPECT_EQ(out[0].version, version);
    const auto& e = out[0].as<v1::Error>();
    EXPECT_EQ(e.code(), static_cast<uint32_t>(code));
    EXPECT_EQ(e.request_id(), 0u);
    EXPECT_EQ(e.temporary(), codec::is_temporary(code));
    EXPECT_LE(e.text().size(), 256u);
    // Sticky: nothing else is processed or sent.
    EXPECT_EQ(feed(client.frame(ping_msg(1))), code);
    EXPECT_EQ(session->on_timer(now + 1'000'000, unix_ms + 1'000'000), code);
    EXPECT_EQ(session->next_deadline_ms(), UINT64_MAX);
    EXPECT_TRUE(take().empty());
  }
  // Expects exactly one request-level Error.
  void expect_rejected(uint64_t rid, Status code) {
    auto out = take();
    ASSERT_EQ(out.size(), 1u);
    ASSERT_EQ(out[0].type, FrameType::kError);
    const auto& e = out[0].as<v1::Error>();
    EXPECT_EQ(e.code(), static_cast<uint32_t>(code)) << codec::to_string(static_cast<Status>(e.code()));
    EXPECT_EQ(e.request_id(), rid);
    EXPECT_EQ(e.temporary(), codec::is_temporary(code));
    EXPECT_EQ(session->fatal(), Status::kOk);
    EXPECT_EQ(session->state(), Session::State::kReady);
  }
  // The session still answers Pings.
  void expect_alive() {
    ASSERT_EQ(feed(ping_msg(99)), Status::kOk);
    auto out = take();
    ASSERT_EQ(out.size(), 1u);
    ASSERT_EQ(out[0].type, FrameType::kPong);
    EXPECT_EQ(out[0].as<v1::Pong>().nonce(), 99u);
  }

  std::map<std::string, NamespacePolicy> policies;
  JwtVerifier verifier;
  SessionConfig config;
  codec::CodecContext ctx;
  std::unique_ptr<FakeHost> host;
  std::unique_ptr<Session> session;
  Client client;
  size_t taken = 0;
  uint64_t now = kAccepted;
  int64_t unix_ms = kUnixStart;

  void TearDown() override { EXPECT_FALSE(host->sent_after_closed); }
};

// ---- happy path ---------------------------------------------------------------------

TEST_F(SessionTest, HappyPath) {
  v1::Hello h;
  h.add_versions(1);
  h.set_device_id("phone-1");
  h.set_heartbeat_ms(20'000);
  hello(h);
  EXPECT_EQ(session->device_id(), "phone-1");
  EXPECT_EQ(session->params().heartbeat_ms, 20'000u);
  EXPECT_EQ(session->claims(), nullptr);

  auto c = claims_for("alice");
  ASSERT_EQ(feed(auth_msg(token(c))), Status::kOk);
  auto out = take();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].type, FrameType::kAuthOk);
  EXPECT_EQ(out[0].as<v1::AuthOk>().user_id(), "alice");
  EXPECT_EQ(out[0].as<v1::AuthOk>().expires_at_ms(), (unix_ms / 1000 + 3600) * 1000);
  ASSERT_EQ(host->authenticated.size(), 1u);
  EXPECT_EQ(host->authenticated[0].user_id, "alice");
  ASSERT_NE(session->claims(), nullptr);
  EXPECT_EQ(session->user_id(), "alice");

  // Subscribe with resume: SubscribeOk, then the replay in order.
  host->subscribe_result = {Status::kOk, "e1", 5, true, true};
  host->replay = {publication("news", 4), publication("news", 5)};
  v1::Subscribe sub = subscribe_msg(1, "news");
  sub.set_resume(true);
  sub.set_epoch("e1");
  sub.set_offset(3);
  ASSERT_EQ(feed(sub), Status::kOk);
  out = take();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].type, FrameType::kSubscribeOk);
  const auto& ok = out[0].as<v1::SubscribeOk>();
  EXPECT_EQ(ok.request_id(), 1u);
  EXPECT_EQ(ok.channel(), "news");
  EXPECT_EQ(ok.epoch(), "e1");
  EXPECT_EQ(ok.offset(), 5u);
  EXPECT_TRUE(ok.recovered());
  EXPECT_TRUE(ok.durable());
  ASSERT_EQ(host->subscribes.size(), 1u);
  EXPECT_TRUE(host->subscribes[0].resume);
  EXPECT_EQ(host->subscribes[0].epoch, "e1");
  EXPECT_EQ(host->subscribes[0].offset, 3u);
  EXPECT_EQ(host->order, (std::vector<std::string>{"frame:Welcome", "frame:AuthOk", "frame:SubscribeOk", "pub:4",
                                                   "pub:5"}));
  EXPECT_EQ(session->subscriptions(), std::vector<std::string>{"news"});
  EXPECT_FALSE(session->wants(*publication("news", 5)));
  EXPECT_TRUE(session->wants(*publication("news", 6)));

  // Publish.
  ASSERT_EQ(feed(publish_msg(2, "news:all", "payload")), Status::kOk);
  out = take();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].type, FrameType::kPublishOk);
  EXPECT_EQ(out[0].as<v1::PublishOk>().request_id(), 2u);
  EXPECT_EQ(out[0].as<v1::PublishOk>().channel(), "news:all");
  EXPECT_EQ(out[0].as<v1::PublishOk>().offset(), 42u);
  EXPECT_EQ(out[0].as<v1::PublishOk>().epoch(), "e1");
  ASSERT_EQ(host->publishes.size(), 1u);
  EXPECT_EQ(host->publishes[0].channel, "news:all");
  EXPECT_EQ(host->publishes[0].payload, "payload");
  EXPECT_EQ(host->publishes[0].message_id, "m1");
  EXPECT_EQ(host->publishes[0].priority, 0);

  // Ping from the client, and the server's own ping answered.
  expect_alive();
  now += 20'000;
  ASSERT_EQ(session->on_timer(now, unix_ms), Status::kOk);
  out = take();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].type, FrameType::kPing);
  v1::Pong pong;
  pong.set_nonce(out[0].as<v1::Ping>().nonce());
  ASSERT_EQ(feed(pong), Status::kOk);
  EXPECT_TRUE(take().empty());

  // Ack, capped at the highest offset sent.
  v1::Ack ack;
  ack.set_channel("news");
  ack.set_offset(100);
  ASSERT_EQ(feed(ack), Status::kOk);
  ASSERT_EQ(host->acks.size(), 1u);
  EXPECT_EQ(host->acks[0], (std::pair<std::string, uint64_t>("news", 6)));

  // Unsubscribe.
  v1::Unsubscribe unsub;
  unsub.set_request_id(3);
  unsub.set_channel("news");
  ASSERT_EQ(feed(unsub), Status::kOk);
  out = take();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].type, FrameType::kUnsubscribeOk);
  EXPECT_EQ(out[0].as<v1::UnsubscribeOk>().request_id(), 3u);
  EXPECT_EQ(host->unsubscribes, std::vector<std::string>{"news"});
  EXPECT_TRUE(session->subscriptions().empty());
  EXPECT_FALSE(session->wants(*publication("news", 7)));
  // Unsubscribing again still answers, without bothering the host.
  unsub.set_request_id(4);
  ASSERT_EQ(feed(unsub), Status::kOk);
  out = take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].type, FrameType::kUnsubscribeOk);
  EXPECT_EQ(host->unsubscribes.size(), 1u);

  // Clean close.
  EXPECT_EQ(session->on_eof(now), Status::kOk);
  EXPECT_EQ(session->state(), Session::State::kClosed);
  EXPECT_FALSE(session->wants(*publication("news", 8)));
  session->go_away(Status::kGoingAway, "bye", 0);
  EXPECT_TRUE(take().empty());
}

// The happy-path stream fed whole, at every split point, and byte by byte gives the
// same frames and host calls.
TEST_F(SessionTest, HappyPathAtEverySplit) {
  Bytes stream;
  v1::Hello h;
  h.set_checksum(true);
  h.add_compression(v1::COMPRESSION_ZSTD);
  herald::testing::append(stream, client.frame(h));
  client.options.checksum = true;
  herald::testing::append(stream, client.frame(auth_msg(token(claims_for("alice")))));
  herald::testing::append(stream, client.frame(subscribe_msg(1, "news")));
  herald::testing::append(stream, client.frame(subscribe_msg(2, "user:alice")));
  client.options.max_frame_size = codec::kMinMaxFrameSize;
  herald::testing::append(stream, client.frame(publish_msg(3, "news:all", std::string(20'000, 'p'))));  // 2 fragments
  herald::testing::append(stream, client.frame(ping_msg(5)));
  v1::Unsubscribe unsub;
  unsub.set_request_id(4);
  unsub.set_channel("news");
  herald::testing::append(stream, client.frame(unsub));

  auto run = [&](const std::vector<size_t>& splits) {
    reset();
    taken = 0;
    herald::testing::feed_split(stream, splits, [&](std::span<const uint8_t> chunk) {
      EXPECT_EQ(session->on_bytes(chunk, now, unix_ms), Status::kOk);
    });
    std::vector<std::string> summary = host->order;
    for (const Sent& s : host->sent) {
      summary.push_back(s.msg ? s.msg->ShortDebugString() : "?");
      EXPECT_TRUE(s.flags & codec::kFlagChecksummed);
    }
    EXPECT_EQ(host->publishes.size(), 1u);
    if (!host->publishes.empty()) {
      EXPECT_EQ(host->publishes[0].payload.size(), 20'000u);
    }
    return summary;
  };
  const auto whole = run({});
  ASSERT_EQ(whole.size(), 14u);  // 7 frames, each in order and decoded
  EXPECT_EQ(whole[0], "frame:Welcome");
  EXPECT_EQ(whole[6], "frame:UnsubscribeOk");
  EXPECT_TRUE(session->wire_variant().zstd);
  EXPECT_TRUE(session->wire_variant().checksum);
  for (size_t cut = 1; cut < stream.size(); ++cut) {
    ASSERT_EQ(run({cut}), whole) << "split at " << cut;
  }
  std::vector<size_t> every(stream.size() - 1);
  for (size_t i = 0; i + 1 < stream.size(); ++i) every[i] = i + 1;
  EXPECT_EQ(run(every), whole);
}

// ---- §10.2 violations -----------------------------------------------------------------

TEST_F(SessionTest, FrameBeforeHelloIsUnexpected) {
  for (FrameType t : {FrameType::kPing, FrameType::kAuth, FrameType::kSubscribe, FrameType::kWelcome}) {
    reset();
    taken = 0;
    expect_fatal(feed(client.frame(t, "")), Status::kUnexpectedFrame);
  }
}

TEST_F(SessionTest, CommandsBeforeAuthNeedAuth) {
  v1::Refresh refresh;
  refresh.set_token("x");
  v1::Unsubscribe unsub;
  unsub.set_request_id(1);
  unsub.set_channel("news");
  v1::Ack ack;
  ack.set_channel("news");
  std::vector<const google::protobuf::Message*> commands = {&refresh, nullptr, &unsub, nullptr, &ack};
  v1::Subscribe sub = subscribe_msg(1, "news");
  v1::Publish pub = publish_msg(1, "news:all");
  commands[1] = &sub;
  commands[3] = &pub;
  for (const auto* m : commands) {
    reset();
    taken = 0;
    hello();
    expect_fatal(feed(*m), Status::kAuthRequired);
    EXPECT_TRUE(host->subscribes.empty());
    EXPECT_TRUE(host->publishes.empty());
  }
}

TEST_F(SessionTest, SecondHelloOrAuthIsUnexpected) {
  hello();
  expect_fatal(feed(v1::Hello()), Status::kUnexpectedFrame);
  reset();
  taken = 0;
  handshake();
  expect_fatal(feed(auth_msg(token(claims_for("alice")))), Status::kUnexpectedFrame);
  EXPECT_EQ(host->authenticated.size(), 1u);
}

TEST_F(SessionTest, ServerFramesFromTheClientAreUnexpected) {
  for (FrameType t : {FrameType::kPublication, FrameType::kWelcome, FrameType::kAuthOk, FrameType::kSubscribeOk,
                      FrameType::kUnsubscribeOk, FrameType::kPublishOk, FrameType::kDismiss, FrameType::kGoAway}) {
    reset();
    taken = 0;
    handshake();
    expect_fatal(feed(client.frame(t, "")), Status::kUnexpectedFrame);
  }
  // Also before auth.
  reset();
  taken = 0;
  hello();
  expect_fatal(feed(client.frame(FrameType::kPublication, "")), Status::kUnexpectedFrame);
}

TEST_F(SessionTest, PingAndPongAllowedBeforeAuth) {
  hello();
  ASSERT_EQ(feed(ping_msg(3)), Status::kOk);
  auto out = take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].as<v1::Pong>().nonce(), 3u);
  v1::Pong pong;
  pong.set_nonce(12345);  // not ours: ignored
  ASSERT_EQ(feed(pong), Status::kOk);
  EXPECT_TRUE(take().empty());
}

// ---- auth --------------------------------------------------------------------------------

TEST_F(SessionTest, BadTokens) {
  struct Case {
    std::string token;
    Status code;
  };
  auto expired = claims_for("alice", -3600);
  auto future = claims_for("alice");
  future["nbf"] = unix_ms / 1000 + 3600;
  const std::vector<Case> cases = {
      {"", Status::kAuthFailed},
      {"not.a.jwt", Status::kAuthFailed},
      {token(claims_for("alice"), "another-secret"), Status::kAuthFailed},
      {token(expired), Status::kTokenExpired},
      {token(future), Status::kAuthFailed},
  };
  for (const Case& c : cases) {
    reset();
    taken = 0;
    hello();
    const Status s = feed(auth_msg(c.token));
    EXPECT_EQ(s, c.code);
    auto out = take();
    ASSERT_EQ(out.size(), 1u);
    const auto& e = out[0].as<v1::Error>();
    EXPECT_EQ(e.code(), static_cast<uint32_t>(c.code));
    EXPECT_FALSE(e.text().empty());
    if (!c.token.empty()) {
      EXPECT_EQ(e.text().find(c.token), std::string::npos) << "token echoed";
    }
    if (c.token.size() > 20) {
      EXPECT_EQ(e.text().find(c.token.substr(c.token.size() - 20)), std::string::npos);
    }
    EXPECT_TRUE(host->authenticated.empty());
    EXPECT_EQ(session->claims(), nullptr);
  }
}

TEST_F(SessionTest, HostRefusesTheUser) {
  host->auth_status = Status::kTooManyConnections;
  hello();
  expect_fatal(feed(auth_msg(token(claims_for("alice")))), Status::kTooManyConnections);
  EXPECT_EQ(session->claims(), nullptr);
}

TEST_F(SessionTest, TokenExpiryAndRefreshWithinGrace) {
  config.refresh_grace_ms = 30'000;
  handshake(claims_for("alice", 60));
  const int64_t exp_ms = (kUnixStart / 1000 + 60) * 1000;
  const uint64_t close_at = now + static_cast<uint64_t>(exp_ms + 30'000 - unix_ms);
  EXPECT_LE(session->next_deadline_ms(), close_at);
  // At exp: nothing.
  now += static_cast<uint64_t>(exp_ms - unix_ms);
  unix_ms = exp_ms;
  // Answer pings along the way so the heartbeat does not interfere.
  auto keep_alive = [&] {
    for (const Sent& s : take()) {
      if (s.type != FrameType::kPing) continue;
      v1::Pong p;
      p.set_nonce(s.as<v1::Ping>().nonce());
      ASSERT_EQ(feed(p), Status::kOk);
    }
  };
  ASSERT_EQ(session->on_timer(now, unix_ms), Status::kOk);
  keep_alive();
  // Refresh within the grace period with a later token.
  now += 10'000;
  unix_ms += 10'000;
  v1::Refresh r;
  auto fresh = claims_for("alice", 120);
  fresh["publish"] = false;
  r.set_token(token(fresh));
  ASSERT_EQ(feed(r), Status::kOk);
  auto out = take();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].type, FrameType::kAuthOk);
  const int64_t new_exp_ms = (unix_ms / 1000 + 120) * 1000;
  EXPECT_EQ(out[0].as<v1::AuthOk>().expires_at_ms(), new_exp_ms);
  EXPECT_FALSE(session->claims()->publish);  // the new token's claims apply
  EXPECT_EQ(host->authenticated.size(), 1u);
  // Past the old exp + grace: still alive.
  while (unix_ms + 5'000 < new_exp_ms + 30'000) {
    now += 5'000;
    unix_ms += 5'000;
    ASSERT_EQ(session->on_timer(now, unix_ms), Status::kOk);
    keep_alive();
  }
  expect_alive();
  // The refreshed token's exp + grace closes it; the deadline says when.
  const uint64_t token_deadline = now + static_cast<uint64_t>(new_exp_ms + 30'000 - unix_ms);
  EXPECT_LE(session->next_deadline_ms(), token_deadline);
  ASSERT_EQ(session->on_timer(token_deadline - 1, new_exp_ms + 29'999), Status::kOk);
  keep_alive();
  now = token_deadline;
  unix_ms = new_exp_ms + 30'000;
  EXPECT_EQ(session->on_timer(now, unix_ms), Status::kTokenExpired);
  out = take();
  ASSERT_FALSE(out.empty());  // a Ping may have been due at the same time
  ASSERT_EQ(out.back().type, FrameType::kError);
  EXPECT_EQ(out.back().as<v1::Error>().code(), static_cast<uint32_t>(Status::kTokenExpired));
  EXPECT_EQ(out.back().as<v1::Error>().request_id(), 0u);
  EXPECT_EQ(session->next_deadline_ms(), UINT64_MAX);
}

TEST_F(SessionTest, TokenExpiresWithoutRefresh) {
  config.refresh_grace_ms = 1'000;
  handshake(claims_for("alice", 3));
  const int64_t close_unix = (kUnixStart / 1000 + 3) * 1000 + 1'000;
  const uint64_t deadline = session->next_deadline_ms();
  EXPECT_EQ(deadline, now + static_cast<uint64_t>(close_unix - unix_ms));
  ASSERT_EQ(session->on_timer(deadline - 1, close_unix - 1), Status::kOk);
  // The monotonic deadline passed but the wall clock lags: checked again later.
  ASSERT_EQ(session->on_timer(deadline, close_unix - 500), Status::kOk);
  EXPECT_EQ(session->next_deadline_ms(), deadline + 500);
  expect_fatal(session->on_timer(deadline + 500, close_unix), Status::kTokenExpired);
}

TEST_F(SessionTest, ExpiredSessionRefusesCommandsEvenIfTheTimerIsLate) {
  config.refresh_grace_ms = 0;
  handshake(claims_for("alice", 1));
  unix_ms += 1'000;
  expect_fatal(feed(subscribe_msg(1, "news")), Status::kTokenExpired);
  EXPECT_TRUE(host->subscribes.empty());
}

TEST_F(SessionTest, TokenWithoutExpiryNeverExpires) {
  auto c = claims_for("alice");
  c.erase("exp");
  handshake(c);
  EXPECT_EQ(session->claims()->expires_at_s, 0);
}

TEST_F(SessionTest, RefreshWithAnotherUsersTokenIsFatal) {
  handshake();
  v1::Refresh r;
  r.set_token(token(claims_for("bob")));
  expect_fatal(feed(r), Status::kAuthFailed);
  EXPECT_EQ(session->user_id(), "alice");
}

TEST_F(SessionTest, RefreshWithBadTokenIsFatal) {
  handshake();
  v1::Refresh r;
  r.set_token(token(claims_for("alice"), "wrong"));
  expect_fatal(feed(r), Status::kAuthFailed);
}

// ---- subscribe / publish rules -------------------------------------------------------------

TEST_F(SessionTest, OtherUsersChannelIsDeniedAndTheSessionContinues) {
  handshake();
  ASSERT_EQ(feed(subscribe_msg(7, "user:bob")), Status::kOk);
  expect_rejected(7, Status::kPermissionDenied);
  ASSERT_EQ(feed(subscribe_msg(8, "user:alice:x")), Status::kOk);
  expect_rejected(8, Status::kPermissionDenied);
  ASSERT_EQ(feed(subscribe_msg(9, "user:")), Status::kOk);
  expect_rejected(9, Status::kPermissionDenied);
  EXPECT_TRUE(host->subscribes.empty());
  EXPECT_FALSE(session->wants(*publication("user:bob", 100)));
  expect_alive();
  // The personal channel is allowed whatever the "user" namespace policy says.
  ASSERT_EQ(feed(subscribe_msg(10, "user:alice")), Status::kOk);
  auto out = take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].type, FrameType::kSubscribeOk);
}

TEST_F(SessionTest, NamespaceAndGrantRulesForSubscribe) {
  handshake();
  struct Case {
    std::string channel;
    bool allowed;
  };
  const std::vector<Case> cases = {
      {"news:eu", true},           // kAny
      {"plain", true},             // default namespace: kAny here
      {"trade:BTC-USD", true},     // kGrant, exact grant
      {"trade:eth-usd", true},     // kGrant, prefix grant "trade:eth*"
      {"trade:SOL-USD", false},    // kGrant, not granted
      {"internal:audit", false},   // kNone
  };
  uint64_t rid = 1;
  for (const Case& c : cases) {
    ASSERT_EQ(feed(subscribe_msg(rid, c.channel)), Status::kOk);
    if (c.allowed) {
      auto out = take();
      ASSERT_EQ(out.size(), 1u) << c.channel;
      EXPECT_EQ(out[0].type, FrameType::kSubscribeOk) << c.channel;
      v1::Unsubscribe u;
      u.set_request_id(1000 + rid);
      u.set_channel(c.channel);
      ASSERT_EQ(feed(u), Status::kOk);
      take();
    } else {
      expect_rejected(rid, Status::kPermissionDenied);
    }
    ++rid;
  }
}

TEST_F(SessionTest, NamespaceAndGrantRulesForPublish) {
  auto c = claims_for("alice");
  handshake(c);
  struct Case {
    std::string channel;
    bool allowed;
  };
  const std::vector<Case> cases = {
      {"news:eu", true},          // kAny with publish
      {"trade:BTC-USD", true},    // kGrant and granted
      {"trade:SOL-USD", false},   // kGrant, not granted
      {"internal:audit", false},  // kNone
      {"plain", false},           // default: kNone
  };
  uint64_t rid = 1;
  for (const Case& k : cases) {
    ASSERT_EQ(feed(publish_msg(rid, k.channel)), Status::kOk);
    if (k.allowed) {
      auto out = take();
      ASSERT_EQ(out.size(), 1u) << k.channel;
      EXPECT_EQ(out[0].type, FrameType::kPublishOk) << k.channel;
    } else {
      expect_rejected(rid, Status::kPermissionDenied);
    }
    ++rid;
  }
  EXPECT_EQ(host->publishes.size(), 2u);
  // A token without "publish" may not publish anywhere.
  reset();
  taken = 0;
  c["publish"] = false;
  handshake(c);
  ASSERT_EQ(feed(publish_msg(1, "news:eu")), Status::kOk);
  expect_rejected(1, Status::kPermissionDenied);
  EXPECT_TRUE(host->publishes.empty());
}

TEST_F(SessionTest, PublishPriorityAndHostErrors) {
  handshake();
  v1::Publish p = publish_msg(1, "news:all");
  p.set_priority(static_cast<v1::Priority>(9));  // unknown: P3
  p.set_ttl_s(60);
  p.set_dismiss_on_read(true);
  p.set_collapse_key("k");
  p.set_content_type("application/json");
  ASSERT_EQ(feed(p), Status::kOk);
  ASSERT_EQ(host->publishes.size(), 1u);
  EXPECT_EQ(host->publishes[0].priority, 3);
  EXPECT_EQ(host->publishes[0].ttl_s, 60u);
  EXPECT_TRUE(host->publishes[0].dismiss_on_read);
  EXPECT_EQ(host->publishes[0].collapse_key, "k");
  EXPECT_EQ(host->publishes[0].content_type, "application/json");
  EXPECT_EQ(host->publishes[0].type, "note");
  take();
  host->publish_result = {Status::kOk, 7, "e2", true};
  ASSERT_EQ(feed(publish_msg(2, "news:all")), Status::kOk);
  auto out = take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].as<v1::PublishOk>().duplicate());
  EXPECT_EQ(out[0].as<v1::PublishOk>().offset(), 7u);
  host->publish_result = {Status::kStorageUnavailable, 0, "", false};
  ASSERT_EQ(feed(publish_msg(3, "news:all")), Status::kOk);
  expect_rejected(3, Status::kStorageUnavailable);
  host->subscribe_result.status = Status::kStorageUnavailable;
  ASSERT_EQ(feed(subscribe_msg(4, "news")), Status::kOk);
  expect_rejected(4, Status::kStorageUnavailable);
  EXPECT_TRUE(session->subscriptions().empty());
  expect_alive();
}

TEST_F(SessionTest, DeferredPublishIsAnsweredWhenTheHostFinishesIt) {
  handshake();
  take();
  host->publish_result = {Status::kOk, 0, "", false, /*pending=*/true};
  ASSERT_EQ(feed(publish_msg(5, "news:all")), Status::kOk);
  EXPECT_TRUE(take().empty());  // nothing until the store committed it
  ASSERT_EQ(host->publishes.size(), 1u);
  EXPECT_EQ(host->publishes[0].request_id, 5u);
  session->on_publish_done(5, "news:all", {Status::kOk, 12, "ep", false});
  auto out = take();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].type, FrameType::kPublishOk);
  EXPECT_EQ(out[0].as<v1::PublishOk>().request_id(), 5u);
  EXPECT_EQ(out[0].as<v1::PublishOk>().offset(), 12u);
  EXPECT_EQ(out[0].as<v1::PublishOk>().channel(), "news:all");
  ASSERT_EQ(feed(publish_msg(6, "news:all")), Status::kOk);
  session->on_publish_done(6, "news:all", {Status::kStorageUnavailable, 0, "", false});
  expect_rejected(6, Status::kStorageUnavailable);
  session->send_dismiss("user:u", 3, "m3");
  out = take();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].type, FrameType::kDismiss);
  EXPECT_EQ(out[0].as<v1::Dismiss>().offset(), 3u);
  EXPECT_EQ(out[0].as<v1::Dismiss>().message_id(), "m3");
  expect_alive();
  // After the session closed, late answers send nothing.
  session->on_closed();
  session->on_publish_done(7, "news:all", {Status::kOk, 13, "ep", false});
  session->send_dismiss("user:u", 4, "m4");
  EXPECT_TRUE(take().empty());
}

TEST_F(SessionTest, AlreadySubscribedAndTooManySubscriptions) {
  config.max_subscriptions = 2;
  handshake();
  ASSERT_EQ(feed(subscribe_msg(1, "news:a")), Status::kOk);
  take();
  ASSERT_EQ(feed(subscribe_msg(2, "news:a")), Status::kOk);
  expect_rejected(2, Status::kInvalidField);
  ASSERT_EQ(feed(subscribe_msg(3, "news:b")), Status::kOk);
  take();
  ASSERT_EQ(feed(subscribe_msg(4, "news:c")), Status::kOk);
  expect_rejected(4, Status::kTooManySubscriptions);
  EXPECT_EQ(host->subscribes.size(), 2u);
  // Room again after an unsubscribe.
  v1::Unsubscribe u;
  u.set_request_id(5);
  u.set_channel("news:a");
  ASSERT_EQ(feed(u), Status::kOk);
  take();
  ASSERT_EQ(feed(subscribe_msg(6, "news:c")), Status::kOk);
  auto out = take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].type, FrameType::kSubscribeOk);
}

TEST_F(SessionTest, RequestIdZeroIsFatal) {
  handshake();
  expect_fatal(feed(subscribe_msg(0, "news")), Status::kInvalidField);
  reset();
  taken = 0;
  handshake();
  expect_fatal(feed(publish_msg(0, "news:all")), Status::kInvalidField);
  reset();
  taken = 0;
  handshake();
  v1::Unsubscribe u;
  u.set_channel("news");
  expect_fatal(feed(u), Status::kInvalidField);
  EXPECT_TRUE(host->publishes.empty());
}

TEST_F(SessionTest, BadChannelIsRequestLevel) {
  handshake();
  uint64_t rid = 1;
  for (const std::string& ch : {std::string(""), std::string("news*"), std::string("has space"),
                                std::string(256, 'a'), std::string("caf\xc3\xa9")}) {
    ASSERT_EQ(feed(subscribe_msg(rid, ch)), Status::kOk);
    expect_rejected(rid++, Status::kBadChannel);
    ASSERT_EQ(feed(publish_msg(rid, ch)), Status::kOk);
    expect_rejected(rid++, Status::kBadChannel);
    v1::Unsubscribe u;
    u.set_request_id(rid);
    u.set_channel(ch);
    ASSERT_EQ(feed(u), Status::kOk);
    expect_rejected(rid++, Status::kBadChannel);
  }
  EXPECT_TRUE(host->subscribes.empty());
  expect_alive();
}

TEST_F(SessionTest, AcksOnlyForSubscribedChannelsAndCapped) {
  handshake();
  host->subscribe_result = {Status::kOk, "e1", 10, false, false};
  ASSERT_EQ(feed(subscribe_msg(1, "news")), Status::kOk);
  take();
  v1::Ack ack;
  ack.set_channel("other");
  ack.set_offset(5);
  ASSERT_EQ(feed(ack), Status::kOk);
  EXPECT_TRUE(host->acks.empty());
  ack.set_channel("news");
  ack.set_offset(8);
  ASSERT_EQ(feed(ack), Status::kOk);
  ack.set_offset(11);
  ASSERT_EQ(feed(ack), Status::kOk);
  ASSERT_EQ(host->acks.size(), 2u);
  EXPECT_EQ(host->acks[0].second, 8u);
  EXPECT_EQ(host->acks[1].second, 10u);
  EXPECT_TRUE(take().empty());  // acks are never answered
}

// ---- delivery -------------------------------------------------------------------------------

TEST_F(SessionTest, WantsSkipsSeenOffsetsAndUnsubscribedChannels) {
  EXPECT_FALSE(session->wants(*publication("news", 1)));  // not READY
  handshake();
  EXPECT_FALSE(session->wants(*publication("news", 1)));  // not subscribed
  host->subscribe_result = {Status::kOk, "e1", 10, false, false};
  ASSERT_EQ(feed(subscribe_msg(1, "news")), Status::kOk);
  EXPECT_FALSE(session->wants(*publication("news", 9)));
  EXPECT_FALSE(session->wants(*publication("news", 10)));
  EXPECT_TRUE(session->wants(*publication("news", 11)));
  EXPECT_FALSE(session->wants(*publication("news", 11)));
  EXPECT_TRUE(session->wants(*publication("news", 13)));
  EXPECT_FALSE(session->wants(*publication("news", 12)));
  EXPECT_FALSE(session->wants(*publication("sports", 14)));
  // The channel's history was reset: a new epoch starts again from its offsets.
  EXPECT_TRUE(session->wants(*publication("news", 1, "e2")));
  EXPECT_FALSE(session->wants(*publication("news", 1, "e2")));
  EXPECT_TRUE(session->wants(*publication("news", 2, "e2")));
  EXPECT_TRUE(host->publications.empty());  // wants() only decides; the host queues
}

TEST_F(SessionTest, AnUrgentPublicationMayOvertakeLowerOffsetsWithoutDroppingThem) {
  handshake();
  host->subscribe_result = {Status::kOk, "e1", 10, false, false};
  ASSERT_EQ(feed(subscribe_msg(1, "news")), Status::kOk);
  // A P0 (offset 14) is delivered before the P3s posted ahead of it (11 .. 13).
  EXPECT_TRUE(session->wants(*publication("news", 14, "e1", 10, v1::P0)));
  EXPECT_TRUE(session->wants(*publication("news", 11)));
  EXPECT_TRUE(session->wants(*publication("news", 12)));
  EXPECT_TRUE(session->wants(*publication("news", 13)));
  EXPECT_TRUE(session->wants(*publication("news", 15, "e1", 10, v1::P1)));
  EXPECT_TRUE(session->wants(*publication("news", 16)));
  // What SubscribeOk announced, and bulk offsets already delivered, are still dropped,
  // urgent or not.
  EXPECT_FALSE(session->wants(*publication("news", 10, "e1", 10, v1::P0)));
  EXPECT_FALSE(session->wants(*publication("news", 16, "e1", 10, v1::P0)));
  EXPECT_FALSE(session->wants(*publication("news", 12)));
  // Acks count up to the highest offset delivered, the P0's included.
  v1::Ack ack;
  ack.set_channel("news");
  ack.set_offset(14);
  ASSERT_EQ(feed(ack), Status::kOk);
  ASSERT_EQ(host->acks.size(), 1u);
  EXPECT_EQ(host->acks[0].second, 14u);
  // A new epoch starts both marks again.
  EXPECT_TRUE(session->wants(*publication("news", 3, "e2", 10, v1::P0)));
  EXPECT_TRUE(session->wants(*publication("news", 1, "e2")));
  EXPECT_TRUE(session->wants(*publication("news", 2, "e2")));
  EXPECT_FALSE(session->wants(*publication("news", 2, "e2")));
}

TEST_F(SessionTest, PublicationAboveTheClientsMaxMessageSizeIsFatal) {
  v1::Hello h;
  h.set_max_message_size(16 * 1024);
  h.set_max_frame_size(16 * 1024);
  handshake(claims_for("alice"), h);
  ASSERT_EQ(feed(subscribe_msg(1, "news")), Status::kOk);
  take();
  EXPECT_TRUE(session->wants(*publication("news", 6, "e1", 16 * 1024 - 100)));
  EXPECT_FALSE(session->wants(*publication("news", 7, "e1", 16 * 1024 + 1)));
  expect_fatal(session->fatal(), Status::kMessageTooLarge);
  EXPECT_FALSE(session->wants(*publication("news", 8)));
}

TEST_F(SessionTest, ReplayAboveTheClientsMaxMessageSizeIsFatal) {
  v1::Hello h;
  h.set_max_message_size(16 * 1024);
  handshake(claims_for("alice"), h);
  host->replay = {publication("news", 4), publication("news", 5, "e1", 20'000)};
  host->subscribe_result = {Status::kOk, "e1", 5, true, false};
  const Status s = feed(subscribe_msg(1, "news"));
  auto out = take();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].type, FrameType::kSubscribeOk);
  EXPECT_EQ(out[1].type, FrameType::kError);
  EXPECT_EQ(s, Status::kMessageTooLarge);
  ASSERT_EQ(host->publications.size(), 1u);
  EXPECT_EQ(host->publications[0]->offset(), 4u);
}

TEST_F(SessionTest, WireVariantFollowsNegotiation) {
  config.publication_dictionary_id = 0;
  v1::Hello h;
  h.add_compression(v1::COMPRESSION_ZSTD);
  hello(h);
  EXPECT_TRUE(session->wire_variant().zstd);
  EXPECT_FALSE(session->wire_variant().checksum);
  // Shared publications use a dictionary this client did not negotiate: plain.
  config.publication_dictionary_id = 1234;
  EXPECT_FALSE(session->wire_variant().zstd);
}

// ---- heartbeat and timeouts ---------------------------------------------------------------

TEST_F(SessionTest, HeartbeatScheduleAndPongTimeout) {
  config.negotiation.pong_timeout_ms = 4'000;
  v1::Hello h;
  h.set_heartbeat_ms(6'000);
  const uint64_t welcome_at = now + 100;
  now = welcome_at;
  handshake(claims_for("alice"), h);
  EXPECT_EQ(session->next_deadline_ms(), welcome_at + 6'000);
  ASSERT_EQ(session->on_timer(welcome_at + 5'999, unix_ms), Status::kOk);
  EXPECT_TRUE(take().empty());
  now = welcome_at + 6'000;
  ASSERT_EQ(session->on_timer(now, unix_ms), Status::kOk);
  auto out = take();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].type, FrameType::kPing);
  const uint64_t nonce = out[0].as<v1::Ping>().nonce();
  EXPECT_EQ(session->next_deadline_ms(), now + 4'000);  // the pong deadline
  // A wrong nonce proves nothing.
  v1::Pong pong;
  pong.set_nonce(nonce + 1);
  ASSERT_EQ(feed(pong), Status::kOk);
  EXPECT_EQ(session->next_deadline_ms(), now + 4'000);
  now += 1'000;
  pong.set_nonce(nonce);
  ASSERT_EQ(feed(pong), Status::kOk);
  EXPECT_EQ(session->next_deadline_ms(), welcome_at + 12'000);
  // No ping before it is due, one when it is.
  ASSERT_EQ(session->on_timer(welcome_at + 11'000, unix_ms), Status::kOk);
  EXPECT_TRUE(take().empty());
  now = welcome_at + 12'000;
  ASSERT_EQ(session->on_timer(now, unix_ms), Status::kOk);
  out = take();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].type, FrameType::kPing);
  EXPECT_NE(out[0].as<v1::Ping>().nonce(), nonce);
  // Silence: the pong timeout closes, temporary.
  ASSERT_EQ(session->on_timer(now + 3'999, unix_ms), Status::kOk);
  EXPECT_TRUE(take().empty());
  now += 4'000;
  expect_fatal(session->on_timer(now, unix_ms), Status::kHeartbeatTimeout);
}

TEST_F(SessionTest, PingNoncesCountFromOneAndOnlyTheExactValueAnswers) {
  // The server's Pings carry 1, 2, 3, ... (kept in 32 bits to save a connection 8 bytes).
  v1::Hello h;
  h.set_heartbeat_ms(5'000);
  handshake(claims_for("alice"), h);
  for (uint64_t expected = 1; expected <= 3; ++expected) {
    now += 5'000;
    ASSERT_EQ(session->on_timer(now, unix_ms), Status::kOk);
    auto out = take();
    ASSERT_EQ(out.size(), 1u);
    ASSERT_EQ(out[0].type, FrameType::kPing);
    ASSERT_EQ(out[0].as<v1::Ping>().nonce(), expected);
    const uint64_t pong_deadline = session->next_deadline_ms();
    // The same low 32 bits in a larger 64-bit value is another nonce: ignored.
    v1::Pong pong;
    pong.set_nonce(expected + (uint64_t{1} << 32));
    ASSERT_EQ(feed(pong), Status::kOk);
    EXPECT_EQ(session->next_deadline_ms(), pong_deadline);
    pong.set_nonce(expected);
    ASSERT_EQ(feed(pong), Status::kOk);
    EXPECT_EQ(session->next_deadline_ms(), now + 5'000);  // answered: the next Ping's time
  }
}

TEST_F(SessionTest, HeartbeatStartsAtWelcome) {
  v1::Hello h;
  h.set_heartbeat_ms(5'000);
  config.handshake_timeout_ms = 60'000;
  hello(h);
  EXPECT_EQ(session->next_deadline_ms(), kAccepted + 5'000);
  ASSERT_EQ(session->on_timer(kAccepted + 5'000, unix_ms), Status::kOk);
  auto out = take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].type, FrameType::kPing);
}

TEST_F(SessionTest, HandshakeTimeout) {
  EXPECT_EQ(session->next_deadline_ms(), kAccepted + 10'000);
  ASSERT_EQ(session->on_timer(kAccepted + 9'999, unix_ms), Status::kOk);
  EXPECT_TRUE(take().empty());
  now = kAccepted + 10'000;
  expect_fatal(session->on_timer(now, unix_ms), Status::kHandshakeTimeout);
  // Also after Welcome, before AuthOk (the heartbeat is slower than the timeout).
  reset();
  taken = 0;
  hello();
  EXPECT_EQ(session->next_deadline_ms(), kAccepted + 10'000);
  now = kAccepted + 10'000;
  expect_fatal(session->on_timer(now, unix_ms), Status::kHandshakeTimeout);
  // READY: no handshake deadline any more.
  reset();
  taken = 0;
  handshake();
  ASSERT_EQ(session->on_timer(kAccepted + 10'000, unix_ms), Status::kOk);
}

TEST_F(SessionTest, ReassemblyTimeoutFromTheTimer) {
  handshake();
  Bytes stream = client.frame(publish_msg(1, "news:all", std::string(100'000, 'z')));
  // Only the first fragment.
  const uint32_t first_len = codec::get_u32(stream.data() + 8);
  stream.resize(codec::kHeaderSize + first_len);
  ASSERT_EQ(feed(stream), Status::kOk);
  EXPECT_EQ(session->next_deadline_ms(), now + 10'001);  // more than 10 s old
  ASSERT_EQ(session->on_timer(now + 10'000, unix_ms), Status::kOk);
  expect_fatal(session->on_timer(now + 10'001, unix_ms), Status::kReassemblyTimeout);
  EXPECT_TRUE(host->publishes.empty());
}

// ---- malformed input --------------------------------------------------------------------------

TEST_F(SessionTest, FramingErrorsSendTheirCode) {
  // Bad magic before Hello: an Error with header version 1.
  Bytes garbage = herald::testing::bytes_of("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  expect_fatal(feed(garbage), Status::kBadMagic);
  // A Hello that is not a valid protobuf.
  reset();
  taken = 0;
  expect_fatal(feed(client.frame(FrameType::kHello, std::string("\x0a\x05\x01", 3))), Status::kMalformedMessage);
  // A frame above 16 KiB before Welcome.
  reset();
  taken = 0;
  v1::Hello big;
  big.set_client_name(std::string(20'000, 'n'));
  const std::string big_body = big.SerializeAsString();
  expect_fatal(feed(herald::testing::raw_frame(0x001, herald::testing::bytes_of(big_body), 0)), Status::kFrameTooLarge);
  // A sequence gap after Welcome.
  reset();
  taken = 0;
  hello();
  client.seq = 5;
  expect_fatal(feed(auth_msg("x")), Status::kBadSequence);
  // A compressed frame on a connection without zstd.
  reset();
  taken = 0;
  hello();
  Bytes ping = client.frame(ping_msg(1));
  codec::put_u16(ping.data() + 6, static_cast<uint16_t>(codec::kFlagCompressed | 0x030));
  expect_fatal(feed(ping), Status::kUnsupportedCompression);
}

TEST_F(SessionTest, BadHelloLimitsAndVersions) {
  v1::Hello h;
  h.set_max_frame_size(100);
  expect_fatal(feed(h), Status::kInvalidField);
  reset();
  taken = 0;
  v1::Hello v;
  v.add_versions(7);
  expect_fatal(feed(v), Status::kNoCommonVersion);
}

TEST_F(SessionTest, ChecksumNegotiatedIsRequired) {
  v1::Hello h;
  h.set_checksum(true);
  ASSERT_EQ(feed(h), Status::kOk);
  auto out = take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].version, 1);
  EXPECT_TRUE(out[0].flags & codec::kFlagChecksummed);  // §5.4: starting with Welcome
  EXPECT_TRUE(out[0].as<v1::Welcome>().checksum());
  // The client forgets K.
  expect_fatal(feed(auth_msg("x")), Status::kChecksumRequired);
  EXPECT_TRUE(host->sent.back().flags & codec::kFlagChecksummed);
}

TEST_F(SessionTest, LargePublishAfterWelcomeUsesTheNegotiatedLimits) {
  handshake();
  // 20 KiB in one frame: above the handshake limit, within the negotiated 64 KiB.
  ASSERT_EQ(feed(publish_msg(1, "news:all", std::string(20'000, 'q'))), Status::kOk);
  ASSERT_EQ(host->publishes.size(), 1u);
  EXPECT_EQ(host->publishes[0].payload.size(), 20'000u);
}

TEST_F(SessionTest, CompressedPublishIsAccepted) {
  v1::Hello h;
  h.add_compression(v1::COMPRESSION_ZSTD);
  handshake(claims_for("alice"), h);
  client.options.compress = true;
  codec::CodecContext cctx;
  v1::Publish p = publish_msg(1, "news:all", std::string(5'000, 'a'));
  std::string body = p.SerializeAsString();
  codec::EncodedMessage e;
  ASSERT_EQ(codec::encode_message(FrameType::kPublish,
                                  std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(body.data()), body.size()),
                                  client.options, &cctx.compressor, e),
            Status::kOk);
  ASSERT_TRUE(e.compressed());
  Bytes wire;
  codec::append_frames(e, client.seq, wire);
  ASSERT_EQ(feed(wire), Status::kOk);
  ASSERT_EQ(host->publishes.size(), 1u);
  EXPECT_EQ(host->publishes[0].payload, std::string(5'000, 'a'));
}

// ---- closing ------------------------------------------------------------------------------------

TEST_F(SessionTest, ClientErrorClosesWithItsCode) {
  handshake();
  v1::Error e;
  e.set_code(static_cast<uint32_t>(Status::kSlowConsumer));
  e.set_text("client is going away");
  EXPECT_EQ(feed(e), Status::kSlowConsumer);
  EXPECT_EQ(session->state(), Session::State::kClosing);
  EXPECT_TRUE(take().empty());  // an Error is never answered
  EXPECT_NE(session->close_reason().find("client is going away"), std::string::npos);
  EXPECT_EQ(feed(ping_msg(1)), Status::kSlowConsumer);
  EXPECT_TRUE(take().empty());
  // Unknown codes, 0 and 1, are fatal of unknown kind.
  for (uint32_t code : {0u, 1u, 999u}) {
    reset();
    taken = 0;
    hello();
    e.set_code(code);
    EXPECT_EQ(feed(e), Status::kInvalidField);
    EXPECT_TRUE(take().empty());
  }
  // Even as the first frame.
  reset();
  taken = 0;
  e.set_code(static_cast<uint32_t>(Status::kGoingAway));
  EXPECT_EQ(feed(e), Status::kGoingAway);
  EXPECT_TRUE(take().empty());
}

TEST_F(SessionTest, GoAwayAndDisconnect) {
  handshake();
  session->go_away(Status::kGoingAway, "restarting", 2'000);
  auto out = take();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].type, FrameType::kGoAway);
  EXPECT_EQ(out[0].as<v1::GoAway>().code(), static_cast<uint32_t>(Status::kGoingAway));
  EXPECT_EQ(out[0].as<v1::GoAway>().reason(), "restarting");
  EXPECT_EQ(out[0].as<v1::GoAway>().reconnect_after_ms(), 2'000u);
  EXPECT_EQ(session->state(), Session::State::kClosing);
  EXPECT_EQ(feed(ping_msg(1)), Status::kGoingAway);
  session->disconnect(Status::kInternal, "again");
  EXPECT_TRUE(take().empty());  // already closing
  // Before Welcome, GoAway is not allowed: an Error instead.
  reset();
  taken = 0;
  session->go_away(Status::kGoingAway, "restarting", 0);
  out = take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].type, FrameType::kError);
  // disconnect: connection-level Error; reasons are cleaned to valid UTF-8.
  reset();
  taken = 0;
  handshake();
  session->disconnect(Status::kSlowConsumer, std::string("slow \xff consumer") + std::string(400, 'x'));
  out = take();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].type, FrameType::kError);
  EXPECT_EQ(out[0].as<v1::Error>().code(), static_cast<uint32_t>(Status::kSlowConsumer));
  EXPECT_TRUE(out[0].as<v1::Error>().temporary());
  EXPECT_EQ(out[0].as<v1::Error>().text().substr(0, 8), "slow ? c");
  EXPECT_LE(out[0].as<v1::Error>().text().size(), 256u);
}

TEST_F(SessionTest, HostClosingFromInsideACallbackStopsTheSession) {
  handshake();
  // The host's output limit trips while SubscribeOk is queued.
  host->replay = {publication("news", 4)};
  host->subscribe_result = {Status::kOk, "e1", 4, true, false};
  host->during_send = [&] { session->disconnect(Status::kSlowConsumer, "slow consumer"); };
  Bytes two = client.frame(subscribe_msg(1, "news"));
  herald::testing::append(two, client.frame(publish_msg(2, "news:all")));
  EXPECT_EQ(feed(two), Status::kSlowConsumer);
  auto out = take();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].type, FrameType::kSubscribeOk);
  EXPECT_EQ(out[1].type, FrameType::kError);
  EXPECT_TRUE(host->publications.empty());  // the replay stopped
  EXPECT_TRUE(host->publishes.empty());     // the next frame was not processed
}

TEST_F(SessionTest, EofMidFrameIsTruncated) {
  hello();
  Bytes f = client.frame(auth_msg("abc"));
  f.resize(f.size() - 1);
  ASSERT_EQ(feed(f), Status::kOk);
  EXPECT_EQ(session->on_eof(now), Status::kTruncatedFrame);
  EXPECT_EQ(session->state(), Session::State::kClosed);
  EXPECT_TRUE(take().empty());  // the peer is gone
  EXPECT_EQ(feed(ping_msg(1)), Status::kTruncatedFrame);
  session->disconnect(Status::kInternal, "x");
  EXPECT_TRUE(take().empty());
}

TEST_F(SessionTest, ClosedSessionSendsNothing) {
  handshake();
  ASSERT_EQ(feed(subscribe_msg(1, "news")), Status::kOk);
  take();
  session->on_closed();
  EXPECT_EQ(session->state(), Session::State::kClosed);
  EXPECT_FALSE(session->wants(*publication("news", 100, "e1", 10 << 20)));
  session->go_away(Status::kGoingAway, "x", 0);
  EXPECT_EQ(session->on_timer(now + 1'000'000, unix_ms), Status::kOk);
  EXPECT_EQ(session->next_deadline_ms(), UINT64_MAX);
  EXPECT_TRUE(take().empty());
}

}  // namespace
}  // namespace herald::server
