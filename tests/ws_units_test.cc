// Sans-IO parts of the WebSocket shim without a server: the upgrade parser at every
// split point, the herald.v1.json translation, and WsTransport's framing and its
// release of the wslay context when idle (what keeps idle connections small).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "codec/message.h"
#include "server/ws_handshake.h"
#include "server/ws_json.h"
#include "server/ws_transport.h"

namespace herald::server {
namespace {

const std::string kUpgrade =
    "GET /ws?x=1 HTTP/1.1\r\nHost: example.com:7690\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Protocol: chat, herald.v1.json\r\nOrigin: http://example.com:7690\r\n\r\n";

TEST(WsHandshake, NeedsMoreUntilTheBlankLineAtEverySplit) {
  WsHandshakeOptions o;
  for (size_t n = 0; n < kUpgrade.size(); ++n) {
    EXPECT_EQ(parse_ws_request(std::string_view(kUpgrade).substr(0, n), o).kind, WsRequestKind::kNeedMore) << n;
  }
  const WsRequest r = parse_ws_request(kUpgrade + "\x81\x80", o);  // a frame may follow the head
  ASSERT_EQ(r.kind, WsRequestKind::kUpgrade) << r.reason;
  EXPECT_TRUE(r.json);
  EXPECT_EQ(r.header_bytes, kUpgrade.size());
  EXPECT_NE(r.response.find("Sec-WebSocket-Protocol: herald.v1.json\r\n"), std::string::npos);
}

TEST(WsHandshake, OriginRules) {
  WsHandshakeOptions o;
  auto with_origin = [&](const std::string& origin) {
    std::string req = kUpgrade;
    req.replace(req.find("http://example.com:7690"), 23, origin);
    return parse_ws_request(req, o).status;
  };
  EXPECT_EQ(with_origin("http://EXAMPLE.com:7690"), 101);  // same host, case-insensitive
  EXPECT_EQ(with_origin("http://other.com:7690"), 403);
  EXPECT_EQ(with_origin("null"), 403);
  const std::vector<std::string> allowed = {"https://app.example.com"};
  o.origins = &allowed;
  EXPECT_EQ(with_origin("https://app.example.com"), 101);
  EXPECT_EQ(with_origin("http://example.com:7690"), 403);  // a list replaces the same-host rule
  const std::vector<std::string> any = {"*"};
  o.origins = &any;
  EXPECT_EQ(with_origin("https://anything.example"), 101);
}

TEST(WsHandshake, LimitsAndMalformedHeads) {
  WsHandshakeOptions o;
  o.max_header_bytes = 1024;
  EXPECT_EQ(parse_ws_request(std::string(1024, 'G'), o).status, 431);
  EXPECT_EQ(parse_ws_request("GET /ws HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", o).status, 400);
  EXPECT_EQ(parse_ws_request("GET /ws HTTP/1.1\r\n folded\r\n\r\n", o).status, 400);
  EXPECT_EQ(parse_ws_request("GET  /ws HTTP/1.1\r\nHost: a\r\n\r\n", o).status, 400);
  EXPECT_EQ(parse_ws_request("GET /ws HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n", o).status, 400);
  std::string many = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 70; ++i) many += "X-" + std::to_string(i) + ": 1\r\n";
  EXPECT_EQ(parse_ws_request(many + "\r\n", o).status, 431);
  EXPECT_EQ(parse_ws_request("GET / HTTP/1.1\r\nHost: a\r\n\r\n", o).kind, WsRequestKind::kPage);
  EXPECT_EQ(parse_ws_request("GET /herald.js HTTP/1.1\r\nHost: a\r\n\r\n", o).kind, WsRequestKind::kScript);
}

TEST(WsJson, RoundTripAndErrors) {
  codec::FrameType type;
  std::vector<uint8_t> body;
  ASSERT_EQ(json_to_message(R"( {"Subscribe": {"request_id": "7", "channel": "news", "resume": true,
                                "offset": 12, "futureField": [1, {"a": 2}]}} )",
                            4096, type, body),
            codec::Status::kOk);
  EXPECT_EQ(type, codec::FrameType::kSubscribe);
  v1::Subscribe s;
  ASSERT_TRUE(s.ParseFromArray(body.data(), static_cast<int>(body.size())));
  EXPECT_EQ(s.request_id(), 7u);
  EXPECT_EQ(s.offset(), 12u);
  std::string json;
  ASSERT_EQ(message_to_json(type, body, json), codec::Status::kOk);
  EXPECT_EQ(json.rfind("{\"Subscribe\":{", 0), 0u) << json;
  EXPECT_NE(json.find("\"offset\":\"12\""), std::string::npos) << json;  // 64-bit as a string
  EXPECT_NE(json.find("\"epoch\":\"\""), std::string::npos) << json;     // defaults are written

  EXPECT_EQ(json_to_message(R"({"Nope":{}})", 4096, type, body), codec::Status::kUnknownFrameType);
  // An unknown enum name is refused: protobuf would quietly make it P0, the most urgent.
  EXPECT_EQ(json_to_message(R"({"Publish":{"priority":"P9"}})", 4096, type, body), codec::Status::kMalformedMessage);
  EXPECT_EQ(json_to_message(R"({"Hello":{"compression":["COMPRESSION_LZ4"]}})", 4096, type, body),
            codec::Status::kMalformedMessage);
  ASSERT_EQ(json_to_message(R"({"Publish":{"priority":"P2","ttl_s":5}})", 4096, type, body), codec::Status::kOk);
  v1::Publish pub;
  ASSERT_TRUE(pub.ParseFromArray(body.data(), static_cast<int>(body.size())));
  EXPECT_EQ(pub.priority(), v1::P2);
  EXPECT_EQ(pub.ttl_s(), 5u);
  for (const char* bad : {"", "[]", "{}", R"({"Ping":{}} x)", R"({"Ping":{},"Pong":{}})", R"({"Ping":1})",
                          R"({"Ping":{"nonce":"abc"}})", R"({"Publication":{"offset":[1]}})", "{\"Ping\":{\"a\":\"",
                          R"({"Ping":{}})" "}"}) {
    EXPECT_EQ(json_to_message(bad, 4096, type, body), codec::Status::kMalformedMessage) << bad;
  }
  EXPECT_EQ(json_to_message("{\"Ping\":{\"x\":" + std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']') +
                                "}}",
                            4096, type, body),
            codec::Status::kMalformedMessage);
  EXPECT_EQ(json_to_message(R"({"Auth":{"token":")" + std::string(5000, 't') + "\"}}", 4096, type, body),
            codec::Status::kMessageTooLarge);
}

// A host that records what the transport writes and delivers; `blocked` makes writes fail.
class Recorder final : public WsTransportHost {
 public:
  ssize_t ws_write(const uint8_t* data, size_t n, bool) noexcept override {
    if (blocked) return kWsWouldBlock;
    out.append(reinterpret_cast<const char*>(data), n);
    return static_cast<ssize_t>(n);
  }
  void ws_message(bool text, std::span<const uint8_t> payload) noexcept override {
    messages.emplace_back(text ? "T:" : "B:");
    messages.back().append(reinterpret_cast<const char*>(payload.data()), payload.size());
  }
  bool blocked = false;
  std::string out;
  std::vector<std::string> messages;
};

std::string masked(uint8_t first, const std::string& payload) {
  std::string f(1, static_cast<char>(first));
  f += static_cast<char>(0x80 | payload.size());
  f += std::string("\x0a\x0b\x0c\x0d", 4);
  for (size_t i = 0; i < payload.size(); ++i) f += static_cast<char>(payload[i] ^ "\x0a\x0b\x0c\x0d"[i % 4]);
  return f;
}

std::span<const uint8_t> bytes(const std::string& s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

TEST(WsTransport, ContextExistsOnlyWhileAFrameOrMessageIsOpen) {
  Recorder host;
  WsTransport t(&host, 1024);
  EXPECT_FALSE(t.has_context());
  const std::string frame = masked(0x82, "hello");
  ASSERT_TRUE(t.feed(bytes(frame.substr(0, 4))));
  EXPECT_TRUE(t.has_context());  // inside a frame: the context holds its state
  ASSERT_TRUE(t.feed(bytes(frame.substr(4))));
  EXPECT_FALSE(t.has_context());
  ASSERT_EQ(host.messages, std::vector<std::string>{"B:hello"});
  // A fragmented message keeps it until its last fragment.
  ASSERT_TRUE(t.feed(bytes(masked(0x01, "ab"))));
  EXPECT_TRUE(t.has_context());
  ASSERT_TRUE(t.feed(bytes(masked(0x80, "cd"))));
  EXPECT_FALSE(t.has_context());
  EXPECT_EQ(host.messages.back(), "T:abcd");
  // Output: kept while the writer is blocked, released once written.
  host.blocked = true;
  ASSERT_TRUE(t.queue(false, bytes(std::string("xyz"))));
  ASSERT_TRUE(t.send());
  EXPECT_TRUE(t.want_write());
  EXPECT_TRUE(t.has_context());
  host.blocked = false;
  ASSERT_TRUE(t.send());
  EXPECT_FALSE(t.want_write());
  EXPECT_FALSE(t.has_context());
  EXPECT_EQ(host.out, std::string("\x82\x03xyz"));  // unmasked server frame
  // A ping in between is answered, and the following frames still parse.
  ASSERT_TRUE(t.feed(bytes(masked(0x89, "p") + masked(0x82, "after"))));
  EXPECT_EQ(host.messages.back(), "B:after");
  ASSERT_TRUE(t.send());
  EXPECT_EQ(host.out.substr(5), std::string("\x8a\x01p"));
}

TEST(WsTransport, ViolationsQueueTheRightCloseCode) {
  struct Case {
    std::string input;
    uint16_t code;
  };
  const std::vector<Case> cases = {
      {masked(0xC2, "x"), 1002},                       // RSV1
      {masked(0x83, "x"), 1002},                       // reserved opcode
      {masked(0x09, "x"), 1002},                       // fragmented ping
      {masked(0x80, "x"), 1002},                       // continuation without start
      {std::string("\x82\x01x", 3), 1002},            // unmasked
      {masked(0x88, "x"), 1002},                       // 1-byte close payload
      {masked(0x88, std::string("\x03\xed", 2)), 1002},  // close code 1005
      {masked(0x81, "\xc3\x28"), 1007},                // invalid UTF-8
      {masked(0x82, std::string(100, 'x')), 1009},     // above the 64-byte limit
  };
  for (const auto& c : cases) {
    Recorder host;
    WsTransport t(&host, 64);
    EXPECT_FALSE(t.feed(bytes(c.input)));
    EXPECT_TRUE(t.read_closed());
    ASSERT_TRUE(t.send());
    ASSERT_GE(host.out.size(), 4u);
    EXPECT_EQ(static_cast<uint8_t>(host.out[0]), 0x88);
    EXPECT_EQ((static_cast<uint8_t>(host.out[2]) << 8) | static_cast<uint8_t>(host.out[3]), c.code);
    EXPECT_FALSE(t.queue(false, bytes(std::string("late"))));  // nothing after the close
  }
}

TEST(WsTransport, PeerCloseIsEchoed) {
  Recorder host;
  WsTransport t(&host, 64);
  EXPECT_FALSE(t.feed(bytes(masked(0x88, std::string("\x03\xe8", 2) + "bye"))));
  EXPECT_TRUE(t.peer_closed());
  EXPECT_EQ(t.peer_close_code(), 1000);
  ASSERT_TRUE(t.send());
  EXPECT_EQ(host.out, std::string("\x88\x05\x03\xe8" "bye", 7));
}

TEST(WsTransport, CloseCodeForStatuses) {
  EXPECT_EQ(ws_close_code_for(codec::Status::kGoingAway), kWsCloseGoingAway);
  EXPECT_EQ(ws_close_code_for(codec::Status::kAuthFailed), kWsClosePolicy);
  EXPECT_EQ(ws_close_code_for(codec::Status::kMessageTooLarge), kWsCloseTooBig);
  EXPECT_EQ(ws_close_code_for(codec::Status::kInternal), kWsCloseInternal);
}

}  // namespace
}  // namespace herald::server
