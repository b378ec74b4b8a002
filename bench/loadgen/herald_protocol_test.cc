// Tests of the load generator's Herald adapter (TCP and herald.v1 WebSocket) against the real
// heraldd, and of its latency histogram. The adapter is sans-IO: these tests own the sockets.
#include <algorithm>
#include <poll.h>
#include <sys/socket.h>

#include <random>

#include "bench/loadgen/herald_protocol.h"
#include "bench/loadgen/histogram.h"
#include "tests/support/heraldd_process.h"

namespace herald::bench {
namespace {

using herald::testing::HeralddProcess;

struct Events final : Sink {
  int ready = 0;
  int published = 0;
  std::vector<std::string> messages;
  std::vector<std::string> errors;
  void on_ready() override { ++ready; }
  void on_message(std::string_view p) override { messages.emplace_back(p); }
  void on_published() override { ++published; }
  void on_error(std::string what) override { errors.push_back(std::move(what)); }
};

// One adapter on one real socket; every byte received is kept in `raw` for replays.
struct Peer {
  Peer(uint16_t port, std::unique_ptr<Protocol> proto) : fd(herald::testing::connect_tcp(port)), p(std::move(proto)) {}
  ~Peer() {
    if (fd >= 0) ::close(fd);
  }
  bool send(const std::string& s) { return ::send(fd, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size()); }
  // Reads for up to `ms` (or until `done`), feeding the adapter and sending what it answers.
  template <class Done>
  bool pump(Done done, int ms = 5000) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      pollfd pf{fd, POLLIN, 0};
      if (::poll(&pf, 1, 20) <= 0) continue;
      uint8_t b[65536];
      const ssize_t n = ::recv(fd, b, sizeof b, 0);
      if (n <= 0) return false;
      raw.append(reinterpret_cast<const char*>(b), static_cast<size_t>(n));
      std::string out;
      if (!p->on_input(b, static_cast<size_t>(n), out, ev)) return false;
      answers += out;
      if (!out.empty() && !send(out)) return false;
    }
    return true;
  }
  int fd;
  std::unique_ptr<Protocol> p;
  Events ev;
  std::string raw;
  std::string answers;
};

std::string binary_payload(int i) {
  std::string s(128, '\0');
  for (size_t k = 0; k < s.size(); ++k) s[k] = static_cast<char>((k * 31 + static_cast<size_t>(i)) & 0xff);
  s[5] = '\r';
  s[6] = '\n';
  s[7] = '\xff';
  return s;
}

ConnParams params(const std::string& user, bool publish, uint16_t port) {
  ConnParams p;
  p.user_id = user;
  p.client_id = "dev-" + user;
  p.host = "127.0.0.1:" + std::to_string(port);
  nlohmann::json extra = nlohmann::json::object();
  if (publish) extra["publish"] = true;
  p.token = herald::testing::make_token(user, extra);
  return p;
}

// Frames of type `type` in a Herald byte stream (client to server: as the adapter wrote them).
std::vector<std::vector<uint8_t>> bodies_of(const std::string& stream, codec::FrameType type) {
  std::vector<std::vector<uint8_t>> out;
  codec::ReaderLimits l;
  l.compression = false;
  l.decoder.check_sequence = false;  // a slice of the stream (the answers only)
  codec::MessageReader r(l);
  std::span<const uint8_t> in(reinterpret_cast<const uint8_t*>(stream.data()), stream.size());
  for (;;) {
    codec::InboundMessage m;
    const codec::DecodeResult d = r.read(in, 0, m);
    in = in.subspan(d.consumed);
    if (d.status != codec::Status::kOk) break;
    if (m.type == type) out.emplace_back(m.body.begin(), m.body.end());
  }
  return out;
}

class HeraldAdapter : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.start({"--namespace", "name=bench,subscribe=any,publish=any", "--namespace",
                               "name=dur,subscribe=any,publish=any,durable=true"}));
    port_ = server_.port(GetParam() ? "ws" : "tcp");
  }
  std::unique_ptr<Protocol> make(const std::string& user, bool publish, int priority = 1) {
    return make_herald_protocol(params(user, publish, port_), GetParam(), priority);
  }
  HeralddProcess server_;
  uint16_t port_ = 0;
};

// Two subscribers of a live and a durable channel, and a publisher: every payload (binary
// bytes included) arrives exactly once, intact and in order per channel, each publish is
// confirmed, and the subscribers ack the durable channel's highest offset and never the live
// channel (the SDK does the same: the server keeps no ack state for live channels).
TEST_P(HeraldAdapter, DeliversPayloadsIntactAndAcksDurableChannelsOnly) {
  const std::string channels[2] = {"bench:t", "dur:t"};
  std::vector<std::unique_ptr<Peer>> subs;
  for (int i = 0; i < 2; ++i) {
    subs.push_back(std::make_unique<Peer>(port_, make("s" + std::to_string(i), false)));
    std::string out;
    subs.back()->p->start_subscriber(out, channels, 2);
    ASSERT_TRUE(subs.back()->send(out));
    ASSERT_TRUE(subs.back()->pump([&] { return subs.back()->ev.ready == 1; })) << ::testing::PrintToString(subs.back()->ev.errors);
  }
  Peer pub(port_, make("p", true));
  std::string out;
  pub.p->start_publisher(out);
  ASSERT_TRUE(pub.send(out));
  ASSERT_TRUE(pub.pump([&] { return pub.ev.ready == 1; }));
  out.clear();
  std::vector<std::string> live, durable;
  for (int i = 0; i < 5; ++i) {
    live.push_back(binary_payload(i));
    durable.push_back(binary_payload(100 + i));
    pub.p->publish(out, channels[0], live.back());
    pub.p->publish(out, channels[1], durable.back());
  }
  ASSERT_TRUE(pub.send(out));
  ASSERT_TRUE(pub.pump([&] { return pub.ev.published == 10; }));
  for (auto& s : subs) {
    ASSERT_TRUE(s->pump([&] { return s->ev.messages.size() >= 10; }));
    ASSERT_EQ(s->ev.messages.size(), 10u);
    // Split by channel (durable deliveries wait for the store, so the channels interleave).
    std::vector<std::string> got_live, got_durable;
    for (const auto& m : s->ev.messages) {
      (std::find(live.begin(), live.end(), m) != live.end() ? got_live : got_durable).push_back(m);
    }
    EXPECT_EQ(got_live, live);
    EXPECT_EQ(got_durable, durable);
    EXPECT_TRUE(s->ev.errors.empty());
    if (!GetParam()) {
      // Acks name only the durable channel; the last names its highest offset (offsets
      // start at 1 on a new channel).
      const auto acks = bodies_of(s->answers, codec::FrameType::kAck);
      ASSERT_FALSE(acks.empty());
      for (const auto& body : acks) {
        v1::Ack a;
        ASSERT_TRUE(a.ParseFromArray(body.data(), static_cast<int>(body.size())));
        EXPECT_EQ(a.channel(), channels[1]);
      }
      v1::Ack last;
      ASSERT_TRUE(last.ParseFromArray(acks.back().data(), static_cast<int>(acks.back().size())));
      EXPECT_EQ(last.offset(), 5u);
    }
  }
  // The same server bytes fed one at a time to a fresh adapter give the same events.
  auto replay = make("s0", false);
  std::string ignored;
  replay->start_subscriber(ignored, channels, 2);
  Events ev;
  for (char c : subs[0]->raw) {
    const uint8_t b = static_cast<uint8_t>(c);
    std::string o;
    ASSERT_TRUE(replay->on_input(&b, 1, o, ev));
  }
  EXPECT_EQ(ev.ready, 1);
  EXPECT_EQ(ev.messages, subs[0]->ev.messages);
}

// A subscription the server refuses (another user's personal channel) ends in on_error with
// the server's code, and on_input returns false from then on.
TEST_P(HeraldAdapter, RefusedSubscriptionIsAnError) {
  Peer s(port_, make("mallory", false));
  const std::string channel = "user:alice";
  std::string out;
  s.p->start_subscriber(out, &channel, 1);
  ASSERT_TRUE(s.send(out));
  s.pump([&] { return !s.ev.errors.empty(); });
  ASSERT_EQ(s.ev.errors.size(), 1u);
  EXPECT_NE(s.ev.errors[0].find("server error " + std::to_string(static_cast<int>(codec::Status::kPermissionDenied))),
            std::string::npos)
      << s.ev.errors[0];
  EXPECT_EQ(s.ev.ready, 0);
  const uint8_t junk = 0;
  std::string o;
  EXPECT_FALSE(s.p->on_input(&junk, 1, o, s.ev));
}

// A bad token: the server's Error arrives as on_error, never on_ready.
TEST_P(HeraldAdapter, BadTokenIsAnError) {
  ConnParams p = params("eve", false, port_);
  p.token = "not-a-token";
  Peer s(port_, make_herald_protocol(p, GetParam(), 1));
  const std::string channel = "bench:t";
  std::string out;
  s.p->start_subscriber(out, &channel, 1);
  ASSERT_TRUE(s.send(out));
  s.pump([&] { return !s.ev.errors.empty(); });
  ASSERT_EQ(s.ev.errors.size(), 1u);
  EXPECT_EQ(s.ev.ready, 0);
}

INSTANTIATE_TEST_SUITE_P(Transports, HeraldAdapter, ::testing::Values(false, true),
                         [](const auto& p) { return p.param ? std::string("WebSocket") : std::string("Tcp"); });

// Ping is answered with a Pong carrying its nonce; undecodable input is an error.
TEST(HeraldAdapterSansIo, PingGetsPongAndGarbageIsAnError) {
  ConnParams p;
  p.client_id = "x";
  auto a = make_herald_protocol(p, false, 1);
  std::string ignored;
  a->start_publisher(ignored);
  v1::Ping ping;
  ping.set_nonce(77);
  std::vector<uint8_t> body;
  codec::serialize_message(ping, SIZE_MAX, body);
  codec::EncodedMessage em;
  codec::EncodeOptions o;
  o.checksum = false;
  ASSERT_TRUE(codec::ok(codec::encode_message(codec::FrameType::kPing, body, o, nullptr, em)));
  std::vector<uint8_t> wire;
  uint32_t seq = 0;
  codec::append_frames(em, seq, wire);
  Events ev;
  std::string out;
  ASSERT_TRUE(a->on_input(wire.data(), wire.size(), out, ev));
  const auto pongs = bodies_of(ignored + out, codec::FrameType::kPong);
  ASSERT_EQ(pongs.size(), 1u);
  v1::Pong pong;
  ASSERT_TRUE(pong.ParseFromArray(pongs[0].data(), static_cast<int>(pongs[0].size())));
  EXPECT_EQ(pong.nonce(), 77u);
  const uint8_t garbage[16] = {'G', 'A', 'R', 'B', 'A', 'G', 'E'};
  EXPECT_FALSE(a->on_input(garbage, sizeof garbage, out, ev));
  ASSERT_EQ(ev.errors.size(), 1u);
  EXPECT_NE(ev.errors[0].find("undecodable"), std::string::npos);
}

// The histogram's quantiles stay within 1 % of the exact value over 1 us .. 60 s, merge adds
// counts, and the text form round-trips.
TEST(LoadgenHistogram, QuantilesWithinOnePercentAndMergeable) {
  std::mt19937_64 rng(1);
  std::vector<uint64_t> values;
  Histogram a, b;
  for (int i = 0; i < 20000; ++i) {
    const double e = std::uniform_real_distribution<double>(3, 10.78)(rng);  // 1 us .. 60 s
    const uint64_t v = static_cast<uint64_t>(std::pow(10.0, e));
    values.push_back(v);
    (i % 2 ? a : b).record(v);
  }
  a.merge(b);
  Histogram c;
  ASSERT_TRUE(c.parse(a.serialize()));
  std::sort(values.begin(), values.end());
  EXPECT_EQ(c.count(), values.size());
  EXPECT_EQ(c.max(), values.back());
  for (double q : {0.5, 0.9, 0.99, 0.999}) {
    const double exact = static_cast<double>(values[static_cast<size_t>(q * static_cast<double>(values.size()))]);
    EXPECT_NEAR(static_cast<double>(c.quantile(q)), exact, exact * 0.01) << q;
  }
  for (uint64_t v : {uint64_t{1000}, uint64_t{123456}, uint64_t{60'000'000'000}}) {
    const size_t i = Histogram::index(v);
    EXPECT_LE(Histogram::lowest(i), v);
    EXPECT_GT(Histogram::lowest(i + 1), v);
  }
  Histogram bad;
  EXPECT_FALSE(bad.parse("3 10 99999:1"));
}

}  // namespace
}  // namespace herald::bench
