// The WebSocket shim against the real heraldd (TESTING.md "WebSocket shim"): bad
// handshakes get 400/403/404/405/426/431 without an upgrade; RFC 6455 violations close
// with 1002/1007/1009; pings between fragments are answered; Herald sessions run over
// both subprotocols; the upgrade timeout closes slow requests; the server keeps serving.
#include <gtest/gtest.h>

#include "server/ws_handshake.h"
#include "tests/support/heraldd_process.h"
#include "tests/support/ws_client.h"

namespace herald::testing {
namespace {

class WsShimTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.start({"--ws.max_message_bytes", "65536",
                               "--ws.handshake_timeout_ms", "1500", "--ws.origins", "https://app.example.com"}));
    port_ = server_.port("ws");
    ASSERT_NE(port_, 0);
  }

  // A full Herald session over herald.v1 up to AuthOk.
  void herald_handshake(WsClient& ws, const std::string& user) {
    ASSERT_EQ(ws.upgrade(), 101);
    v1::Hello hello;
    hello.add_versions(1);
    hello.add_compression(v1::COMPRESSION_ZSTD);
    ws.send_herald(hello);
    auto welcome = read_herald(ws);
    ASSERT_TRUE(welcome);
    ASSERT_EQ(welcome->type, codec::FrameType::kWelcome);
    // Browsers cannot decode zstd: the WebSocket listener never offers it.
    EXPECT_EQ(welcome->as<v1::Welcome>().compression(), v1::COMPRESSION_NONE);
    v1::Auth auth;
    auth.set_token(make_token(user));
    ws.send_herald(auth);
    auto ok = read_herald(ws);
    ASSERT_TRUE(ok);
    ASSERT_EQ(ok->type, codec::FrameType::kAuthOk);
  }

  // The next Herald message: the next binary WebSocket message must hold whole frames.
  std::optional<Received> read_herald(WsClient& ws, int timeout_ms = 3000) {
    auto f = ws.read_frame(timeout_ms);
    if (!f || f->opcode != 0x2) return std::nullopt;
    codec::ReaderLimits l;
    l.compression = false;
    l.decoder.check_sequence = false;  // one reader per message here
    codec::MessageReader reader(l);
    codec::InboundMessage m;
    const auto* data = reinterpret_cast<const uint8_t*>(f->payload.data());
    auto r = reader.read({data, f->payload.size()}, 0, m);
    EXPECT_EQ(r.status, codec::Status::kOk);
    if (r.status != codec::Status::kOk) return std::nullopt;
    Received out{m.type, nullptr};
    if (!codec::ok(codec::decode_message(m.type, m.body, SIZE_MAX, out.message))) return std::nullopt;
    return out;
  }

  // The server still completes a whole session for someone else.
  void expect_still_serving() {
    WsClient ws(port_);
    herald_handshake(ws, "bystander");
  }

  HeralddProcess server_;
  uint16_t port_ = 0;
};

// ---------------------------------------------------------------- handshake

TEST_F(WsShimTest, BadHandshakesAreRefusedWithoutUpgrade) {
  struct Case {
    const char* what;
    int status;
    std::function<int(WsClient&)> run;
  };
  const std::vector<Case> cases = {
      {"missing key", 400, [](WsClient& c) { return c.upgrade("herald.v1", "", "GET /ws HTTP/1.1", false); }},
      {"missing version", 426, [](WsClient& c) { return c.upgrade("herald.v1", "", "GET /ws HTTP/1.1", true, false); }},
      {"version 8", 426,
       [](WsClient& c) { return c.upgrade("herald.v1", "Sec-WebSocket-Version: 8\r\n", "GET /ws HTTP/1.1", true, false); }},
      {"not GET", 405, [](WsClient& c) { return c.upgrade("herald.v1", "", "POST /ws HTTP/1.1"); }},
      {"HTTP/1.0", 400, [](WsClient& c) { return c.upgrade("herald.v1", "", "GET /ws HTTP/1.0"); }},
      {"disallowed origin", 403, [](WsClient& c) { return c.upgrade("herald.v1", "Origin: https://evil.example\r\n"); }},
      {"unknown subprotocol", 400, [](WsClient& c) { return c.upgrade("mqtt"); }},
      {"other path", 404, [](WsClient& c) { return c.upgrade("herald.v1", "", "GET /chat HTTP/1.1"); }},
      {"no upgrade header", 426,
       [](WsClient& c) {
         c.send_raw("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n");
         return c.read_head();
       }},
      {"head too large", 431,
       [](WsClient& c) { return c.upgrade("herald.v1", "X-Junk: " + std::string(9000, 'a') + "\r\n"); }},
      {"garbage", 400,
       [](WsClient& c) {
         c.send_raw(std::string("\x16\x03\x01\x02\x00", 5));
         return c.read_head();
       }},
  };
  for (const auto& tc : cases) {
    WsClient c(port_);
    EXPECT_EQ(tc.run(c), tc.status) << tc.what << "\n" << c.head();
    EXPECT_EQ(c.head().find("Sec-WebSocket-Accept"), std::string::npos) << tc.what;
    EXPECT_TRUE(c.eof()) << tc.what << ": the server closes after the answer";
  }
  expect_still_serving();
}

TEST_F(WsShimTest, AllowedOriginAndAcceptKey) {
  WsClient c(port_);
  ASSERT_EQ(c.upgrade("herald.v1.json, herald.v1", "Origin: https://app.example.com\r\n"), 101) << c.head();
  // RFC 6455 §1.3's example key and answer.
  EXPECT_NE(c.head().find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), std::string::npos) << c.head();
  EXPECT_NE(c.head().find("Sec-WebSocket-Protocol: herald.v1.json\r\n"), std::string::npos) << c.head();
  EXPECT_EQ(server::ws_accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST_F(WsShimTest, UpgradeArrivingOneByteAtATimeWithAFrameBehindIt) {
  WsClient c(port_);
  const std::string head = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                           "Sec-WebSocket-Protocol: herald.v1.json\r\n\r\n";
  for (char ch : head) ASSERT_TRUE(c.send_raw(std::string(1, ch)));
  // A client may send its first frame right behind the head, before the 101 arrives.
  c.send_frame(0x9, "early");
  ASSERT_EQ(c.read_head(), 101) << c.head();
  auto pong = c.read_frame();
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->opcode, 0xA);
  EXPECT_EQ(pong->payload, "early");
}

TEST_F(WsShimTest, ServesTheDemoPageAndTheClient) {
  WsClient page(port_);
  page.send_raw("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(page.read_head(), 200);
  EXPECT_NE(page.head().find("text/html"), std::string::npos);
  EXPECT_NE(page.read_to_eof().find("Herald demo"), std::string::npos);
  WsClient js(port_);
  js.send_raw("GET /herald.js HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(js.read_head(), 200);
  EXPECT_NE(js.head().find("text/javascript"), std::string::npos);
  EXPECT_NE(js.read_to_eof().find("export class HeraldClient"), std::string::npos);
}

TEST_F(WsShimTest, SlowUpgradeIsClosedAtTheHandshakeTimeout) {
  WsClient c(port_);
  const auto start = std::chrono::steady_clock::now();
  // One header line every 400 ms: never complete within the 1.5 s timeout.
  c.send_raw("GET /ws HTTP/1.1\r\n");
  bool closed = false;
  for (int i = 0; i < 10 && !closed; ++i) {
    c.send_raw("X-Slow-" + std::to_string(i) + ": 1\r\n");
    closed = c.eof(400);
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  EXPECT_TRUE(closed);
  EXPECT_GE(ms, 1400);
  EXPECT_LT(ms, 2600);
  expect_still_serving();
}

// ---------------------------------------------------------------- RFC 6455 frames

TEST_F(WsShimTest, ProtocolViolationsClose1002) {
  struct Case {
    const char* what;
    std::function<void(WsClient&)> send;
    int code;
  };
  const std::vector<Case> cases = {
      {"RSV1 without extension", [](WsClient& c) { c.send_frame(0x2, "x", true, 4); }, 1002},
      {"RSV3", [](WsClient& c) { c.send_frame(0x2, "x", true, 1); }, 1002},
      {"reserved data opcode 3", [](WsClient& c) { c.send_frame(0x3, "x"); }, 1002},
      {"reserved control opcode B", [](WsClient& c) { c.send_frame(0xB, "x"); }, 1002},
      {"fragmented ping", [](WsClient& c) { c.send_frame(0x9, "x", false); }, 1002},
      {"continuation without start", [](WsClient& c) { c.send_frame(0x0, "x"); }, 1002},
      {"unmasked client frame", [](WsClient& c) { c.send_frame(0x2, "x", true, 0, false); }, 1002},
      {"close code 999", [](WsClient& c) { c.send_close(999); }, 1002},
      {"close code 1005 (reserved)", [](WsClient& c) { c.send_close(1005); }, 1002},
      {"close code 5000", [](WsClient& c) { c.send_close(5000); }, 1002},
      {"close payload of one byte", [](WsClient& c) { c.send_frame(0x8, "x"); }, 1002},
      {"new message inside a fragmented one", [](WsClient& c) {
         c.send_frame(0x2, "ab", false);
         c.send_frame(0x2, "cd");
       }, 1002},
      {"ping payload above 125 bytes", [](WsClient& c) { c.send_frame(0x9, std::string(126, 'p')); }, 1002},
  };
  for (const auto& tc : cases) {
    WsClient c(port_);
    ASSERT_EQ(c.upgrade(), 101);
    const auto start = std::chrono::steady_clock::now();
    tc.send(c);
    EXPECT_EQ(c.wait_close(), tc.code) << tc.what;
    EXPECT_TRUE(c.eof(1000)) << tc.what;
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1)) << tc.what;
  }
  expect_still_serving();
}

TEST_F(WsShimTest, InvalidUtf8InTextCloses1007FailFast) {
  WsClient c(port_);
  ASSERT_EQ(c.upgrade("herald.v1.json"), 101);
  // The first fragment is already invalid: closed before the message is finished.
  c.send_frame(0x1, "{\"Hello\":\xC3\x28", false);
  EXPECT_EQ(c.wait_close(), 1007);
  WsClient c2(port_);
  ASSERT_EQ(c2.upgrade("herald.v1.json"), 101);
  c2.send_close(1000, "\xFF\xFE");  // a close reason must be UTF-8 too
  EXPECT_EQ(c2.wait_close(), 1007);
}

TEST_F(WsShimTest, TooLargeMessageCloses1009) {
  WsClient c(port_);
  ASSERT_EQ(c.upgrade(), 101);
  c.send_frame(0x2, std::string(65537, 'x'));
  EXPECT_EQ(c.wait_close(), 1009);
  // Also when the size only adds up over fragments.
  WsClient c2(port_);
  ASSERT_EQ(c2.upgrade(), 101);
  c2.send_frame(0x2, std::string(40000, 'x'), false);
  c2.send_frame(0x0, std::string(40000, 'x'));
  EXPECT_EQ(c2.wait_close(), 1009);
}

TEST_F(WsShimTest, PingBetweenFragmentsIsAnsweredAndTheMessageStillArrives) {
  WsClient c(port_);
  ASSERT_EQ(c.upgrade("herald.v1.json"), 101);
  const std::string hello = R"({"Hello":{"versions":[1]}})";
  c.send_frame(0x1, hello.substr(0, 10), false);
  c.send_frame(0x9, "are you there");
  auto pong = c.read_frame();
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->opcode, 0xA);
  EXPECT_EQ(pong->payload, "are you there");
  c.send_frame(0x0, hello.substr(10));
  auto welcome = c.read_frame();
  ASSERT_TRUE(welcome);
  EXPECT_EQ(welcome->opcode, 0x1);
  EXPECT_EQ(welcome->payload.rfind("{\"Welcome\":", 0), 0u) << welcome->payload;
}

TEST_F(WsShimTest, CloseHandshakeIsEchoed) {
  WsClient c(port_);
  ASSERT_EQ(c.upgrade(), 101);
  c.send_close(1000, "bye");
  EXPECT_EQ(c.wait_close(), 1000);
  EXPECT_TRUE(c.eof());
}

TEST_F(WsShimTest, WrongMessageKindForTheSubprotocolCloses1003) {
  WsClient bin(port_);
  ASSERT_EQ(bin.upgrade("herald.v1"), 101);
  bin.send_frame(0x1, "{}");
  EXPECT_EQ(bin.wait_close(), 1003);
  WsClient text(port_);
  ASSERT_EQ(text.upgrade("herald.v1.json"), 101);
  text.send_frame(0x2, "\x01");
  EXPECT_EQ(text.wait_close(), 1003);
}

// ---------------------------------------------------------------- Herald over WebSocket

TEST_F(WsShimTest, BinarySessionDeliversPublications) {
  WsClient ws(port_);
  herald_handshake(ws, "wsuser");
  v1::Subscribe s;
  s.set_request_id(1);
  s.set_channel("user:wsuser");
  ws.send_herald(s);
  auto ok = read_herald(ws);
  ASSERT_TRUE(ok);
  ASSERT_EQ(ok->type, codec::FrameType::kSubscribeOk);
  auto r = http(server_.port("api"), "POST", "/v1/publish",
                R"({"channel":"user:wsuser","type":"t","priority":"P0","payload":{"a":1}})");
  ASSERT_EQ(r.status, 200) << r.body;
  auto p = read_herald(ws);
  ASSERT_TRUE(p);
  ASSERT_EQ(p->type, codec::FrameType::kPublication);
  EXPECT_EQ(p->as<v1::Publication>().payload(), R"({"a":1})");
  EXPECT_EQ(p->as<v1::Publication>().priority(), v1::P0);
}

TEST_F(WsShimTest, MessageEndingInsideAFrameIsTruncatedFrame) {
  WsClient ws(port_);
  ASSERT_EQ(ws.upgrade(), 101);
  // A Hello frame whose last 3 body bytes are missing from the message.
  v1::Hello hello;
  hello.add_versions(1);
  hello.set_client_name("a client name long enough");
  std::vector<uint8_t> body;
  codec::serialize_message(hello, SIZE_MAX, body);
  codec::EncodedMessage em;
  codec::EncodeOptions o;
  o.checksum = false;
  ASSERT_TRUE(codec::ok(codec::encode_message(codec::FrameType::kHello, body, o, nullptr, em)));
  std::vector<uint8_t> wire;
  uint32_t seq = 0;
  codec::append_frames(em, seq, wire);
  ws.send_frame(0x2, std::string(wire.begin(), wire.end() - 3));
  auto err = read_herald(ws);
  ASSERT_TRUE(err);
  ASSERT_EQ(err->type, codec::FrameType::kError);
  EXPECT_EQ(err->as<v1::Error>().code(), static_cast<uint32_t>(codec::Status::kTruncatedFrame));
  EXPECT_EQ(ws.wait_close(), 1008);
}

TEST_F(WsShimTest, JsonErrorsAreReportedThenClosed) {
  WsClient c(port_);
  ASSERT_EQ(c.upgrade("herald.v1.json"), 101);
  c.send_frame(0x1, R"({"Hello":{"versions":"one"}})");
  std::vector<WsFrame> data;
  EXPECT_EQ(c.wait_close(2000, &data), 1008);
  ASSERT_EQ(data.size(), 1u);
  EXPECT_NE(data[0].payload.find("\"code\":400"), std::string::npos) << data[0].payload;  // kMalformedMessage
  // Deep nesting is refused before protobuf's parser sees it.
  WsClient d(port_);
  ASSERT_EQ(d.upgrade("herald.v1.json"), 101);
  d.send_frame(0x1, "{\"Hello\":" + std::string(5000, '[') + std::string(5000, ']') + "}");
  EXPECT_EQ(d.wait_close(), 1008);
  expect_still_serving();
}

TEST_F(WsShimTest, CommandBeforeAuthIsRejected) {
  WsClient c(port_);
  ASSERT_EQ(c.upgrade("herald.v1.json"), 101);
  c.send_frame(0x1, R"({"Hello":{"versions":[1]}})");
  ASSERT_TRUE(c.read_frame());
  c.send_frame(0x1, R"({"Subscribe":{"request_id":1,"channel":"news"}})");
  std::vector<WsFrame> data;
  EXPECT_EQ(c.wait_close(2000, &data), 1008);
  ASSERT_EQ(data.size(), 1u);
  EXPECT_NE(data[0].payload.find("\"code\":502"), std::string::npos) << data[0].payload;  // kAuthRequired
}

TEST_F(WsShimTest, ShutdownDeliversWhatWasQueuedThenGoAwayAndClose1001) {
  WsClient c(port_);
  ASSERT_EQ(c.upgrade("herald.v1.json"), 101);
  c.send_frame(0x1, R"({"Hello":{"versions":[1]}})");
  ASSERT_TRUE(c.read_frame());
  c.send_frame(0x1, "{\"Auth\":{\"token\":\"" + make_token("leaving") + "\"}}");
  ASSERT_TRUE(c.read_frame());
  c.send_frame(0x1, R"({"Subscribe":{"request_id":1,"channel":"user:leaving"}})");
  ASSERT_TRUE(c.read_frame());
  for (int i = 1; i <= 3; ++i) {
    ASSERT_EQ(http(server_.port("api"), "POST", "/v1/publish",
                   R"({"channel":"user:leaving","payload":)" + std::to_string(i) + "}")
                  .status,
              200);
  }
  ASSERT_EQ(::kill(server_.pid(), SIGTERM), 0);
  std::vector<WsFrame> data;
  EXPECT_EQ(c.wait_close(5000, &data), 1001);
  ASSERT_EQ(data.size(), 4u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_NE(data[i].payload.find("\"offset\":\"" + std::to_string(i + 1) + "\""), std::string::npos) << data[i].payload;
  }
  EXPECT_EQ(data[3].payload.rfind("{\"GoAway\":", 0), 0u) << data[3].payload;
  EXPECT_EQ(server_.stop(SIGTERM, 10000), 0);
}

TEST_F(WsShimTest, SlowConsumerOverWebSocketIsClosedLikeTcp) {
  HeralddProcess s;
  ASSERT_TRUE(s.start({"--delivery.hard_limit_bytes", "262144",
                       "--delivery.soft_limit_bytes", "65536", "--delivery.soft_limit_ms", "500",
                       "--limits.api_max_body_bytes", "4194304"}));
  WsClient ws(s.port("ws"));
  int rcv = 4096;
  ::setsockopt(ws.fd(), SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  ASSERT_EQ(ws.upgrade("herald.v1.json"), 101);
  ws.send_frame(0x1, R"({"Hello":{"versions":[1]}})");
  ASSERT_TRUE(ws.read_frame());
  ws.send_frame(0x1, "{\"Auth\":{\"token\":\"" + make_token("slow") + "\"}}");
  ASSERT_TRUE(ws.read_frame());
  ws.send_frame(0x1, R"({"Subscribe":{"request_id":1,"channel":"user:slow"}})");
  ASSERT_TRUE(ws.read_frame());
  // 6 MB of P1 (never shed) against a 256 KiB hard limit, never read: the same
  // policy as TCP closes the connection as a slow consumer.
  nlohmann::json batch = {{"messages", nlohmann::json::array()}};
  for (int i = 0; i < 1000; ++i) {
    batch["messages"].push_back({{"channel", "user:slow"}, {"priority", 1}, {"payload", std::string(2000, 'z')}});
  }
  bool closed_by_server = false;
  for (int round = 0; round < 3 && !closed_by_server; ++round) {
    ASSERT_EQ(http(s.port("api"), "POST", "/v1/publish/batch", batch.dump()).status, 200);
    for (int i = 0; i < 50 && !closed_by_server; ++i) {
      closed_by_server = http(s.port("api"), "GET", "/v1/stats").json()["connections_open"] == 0;
      if (!closed_by_server) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  EXPECT_TRUE(closed_by_server);
  auto metrics = http(s.port("api"), "GET", "/metrics");
  EXPECT_NE(metrics.body.find("herald_connections_closed_total{reason=\"slow_consumer\"} 1"), std::string::npos)
      << metrics.body;
}

}  // namespace
}  // namespace herald::testing
