// Fuzz target: a whole server Session fed bytes. A valid Hello + Auth stream comes
// first so the input is interpreted in READY; the first input byte picks the chunk
// size (0: all at once) and time advances 100 ms per chunk, running due timers.
// Aborts if a fatal status is not sticky, if anything is sent after the session
// closed or after its last frame, or if a frame it sent does not decode.
#include <google/protobuf/stubs/logging.h>

#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "codec/frame_encoder.h"
#include "codec/message.h"
#include "codec/message_reader.h"
#include "server/jwt.h"
#include "server/policy.h"
#include "server/session.h"

using namespace herald;
using codec::FrameType;
using codec::Status;

namespace {

constexpr int64_t kUnixStart = 1'700'000'000'000;

void check(bool condition) {
  if (!condition) std::abort();
}

void append_message(const google::protobuf::Message& m, uint32_t& seq, std::vector<uint8_t>& out) {
  FrameType type;
  check(codec::frame_type_for(m, type));
  const std::string body = m.SerializeAsString();
  codec::EncodeOptions o;
  o.checksum = false;
  codec::EncodedMessage e;
  check(codec::ok(codec::encode_message(
      type, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(body.data()), body.size()), o, nullptr, e)));
  codec::append_frames(e, seq, out);
}

struct Env {
  Env() : verifier(settings()) {
    // libprotobuf logs invalid UTF-8 in parsed strings at ERROR level: noise here.
    google::protobuf::SetLogHandler([](google::protobuf::LogLevel, const char*, int, const std::string&) {});
    any.subscribe = server::NamespacePolicy::Subscribe::kAny;
    any.publish = server::NamespacePolicy::Publish::kAny;
    grant.subscribe = server::NamespacePolicy::Subscribe::kGrant;
    grant.publish = server::NamespacePolicy::Publish::kGrant;
    none.subscribe = server::NamespacePolicy::Subscribe::kNone;
    none.publish = server::NamespacePolicy::Publish::kNone;
    config.negotiation.heartbeat_ms = 5'000;
    config.negotiation.pong_timeout_ms = 2'000;
    config.max_subscriptions = 8;
    config.refresh_grace_ms = 1'000;
    config.policy = [this](std::string_view channel) -> const server::NamespacePolicy& {
      const std::string_view ns = server::namespace_of(channel);
      if (ns == "news") return any;
      if (ns == "trade") return grant;
      return none;
    };

    nlohmann::json claims;
    claims["sub"] = "fuzz";
    claims["exp"] = kUnixStart / 1000 + 60;  // expires during long inputs: refresh paths
    claims["channels"] = nlohmann::json::array({"trade:btc*", "news:x"});
    claims["publish"] = true;
    token = server::sign_token(claims, settings());

    uint32_t seq = 0;
    v1::Hello hello;
    hello.add_versions(1);
    hello.add_compression(v1::COMPRESSION_ZSTD);
    hello.set_max_message_size(64 * 1024);
    append_message(hello, seq, prefix);
    v1::Auth auth;
    auth.set_token(token);
    append_message(auth, seq, prefix);
  }
  static server::JwtSettings settings() {
    server::JwtSettings s;
    s.secret = "fuzz-session-secret";
    return s;
  }

  server::JwtVerifier verifier;
  server::SessionConfig config;
  codec::CodecContext ctx;         // the server loop's
  codec::CodecContext client_ctx;  // decodes what the session sends
  server::NamespacePolicy any, grant, none;
  std::string token;
  std::vector<uint8_t> prefix;
};

Env& env() {
  static Env* e = new Env();
  return *e;
}

server::PublicationPtr make_publication(const std::string& channel, uint64_t offset, size_t payload) {
  v1::Publication p;
  p.set_channel(channel);
  p.set_offset(offset);
  p.set_epoch("e1");
  p.set_payload(std::string(payload, 'p'));
  return std::make_shared<const server::PublicationRecord>(std::move(p));
}

class Host : public server::SessionHost {
 public:
  explicit Host(codec::CodecContext* client_ctx) {
    codec::ReaderLimits l;
    l.decoder.version = 0;
    l.decoder.max_frame_size = codec::kMaxMaxFrameSize;
    reader_ = std::make_unique<codec::MessageReader>(l, client_ctx);
  }

  server::Session* session = nullptr;
  bool last_frame_sent = false;  // a connection-level Error or GoAway went out
  std::vector<server::PublicationPtr> live;  // published, to be offered through wants()
  uint64_t next_offset = 1;

  std::string session_id() const override { return "fuzz-session"; }
  void send(codec::EncodedMessage&& frame) noexcept override {
    check(session->state() != server::Session::State::kClosed);
    check(!last_frame_sent);
    std::vector<uint8_t> wire;
    codec::append_frames(frame, seq_, wire);
    codec::InboundMessage m;
    const codec::DecodeResult r = reader_->read(wire, 0, m);
    check(codec::ok(r.status) && r.consumed == wire.size());
    std::unique_ptr<google::protobuf::Message> msg;
    check(codec::ok(codec::decode_message(m.type, m.body, SIZE_MAX, msg)));
    if (m.type == FrameType::kGoAway) last_frame_sent = true;
    if (m.type == FrameType::kError) {
      const auto& e = static_cast<const v1::Error&>(*msg);
      check(e.code() >= 100 && codec::is_known_status(e.code()));
      check(e.text().size() <= 256);
      if (e.request_id() == 0) last_frame_sent = true;
    }
  }
  void send_publication(const server::PublicationPtr& p) noexcept override {
    check(session->state() != server::Session::State::kClosed);
    check(!last_frame_sent);
    check(p->body().size() <= session->params().send_max_message_size);
  }
  Status on_authenticated(const server::TokenClaims& claims) noexcept override {
    check(claims.user_id == "fuzz");
    return Status::kOk;
  }
  server::SessionSubscribeResult subscribe(const std::string& channel, bool resume, const std::string&, uint64_t offset,
                                           std::vector<server::PublicationPtr>& replay) noexcept override {
    check(server::valid_channel_name(channel));
    // The channel name decides the outcome, so the fuzzer can reach each.
    const size_t h = std::hash<std::string>{}(channel);
    if (h % 7 == 0) return {Status::kStorageUnavailable, "", 0, false, false};
    server::SessionSubscribeResult r{Status::kOk, "e1", next_offset, false, h % 3 == 0};
    if (resume && offset < next_offset) {
      r.recovered = true;
      for (uint64_t o = offset + 1; o <= next_offset && replay.size() < 3; ++o) {
        replay.push_back(make_publication(channel, o, h % 5 == 0 ? 70'000 : 10));
      }
    }
    return r;
  }
  void unsubscribe(const std::string& channel) noexcept override { check(server::valid_channel_name(channel)); }
  server::SessionPublishResult publish(server::SessionPublish&& p) noexcept override {
    check(server::valid_channel_name(p.channel));
    check(p.priority >= 0 && p.priority <= 3);
    if (p.payload.size() % 11 == 10) return {Status::kRateLimited, 0, "", false};
    const uint64_t offset = ++next_offset;
    if (live.size() < 16) live.push_back(make_publication(p.channel, offset, p.payload.size()));
    return {Status::kOk, offset, "e1", p.message_id == "dup"};
  }
  void on_ack(const std::string& channel, const std::string&, uint64_t) noexcept override {
    check(server::valid_channel_name(channel));
  }

 private:
  std::unique_ptr<codec::MessageReader> reader_;
  uint32_t seq_ = 0;
};

// The status contract: once non-kOk, every later call returns the same status.
struct Sticky {
  Status seen = Status::kOk;
  void operator()(Status s, const server::Session& session) {
    if (!codec::ok(seen)) check(s == seen);
    if (!codec::ok(s)) seen = s;
    check(session.fatal() == seen);
    if (!codec::ok(s)) check(session.next_deadline_ms() == UINT64_MAX);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Env& e = env();
  Host host(&e.client_ctx);
  uint64_t now = 1'000;
  int64_t unix_ms = kUnixStart;
  server::Session session(&e.config, &e.verifier, &host, &e.ctx, now);
  host.session = &session;
  Sticky sticky;

  sticky(session.on_bytes(e.prefix, now, unix_ms), session);
  check(session.state() == server::Session::State::kReady);

  const size_t chunk = size == 0 ? 0 : data[0];
  std::span<const uint8_t> in = size == 0 ? std::span<const uint8_t>() : std::span<const uint8_t>(data + 1, size - 1);
  while (!in.empty()) {
    const size_t n = chunk == 0 ? in.size() : std::min(in.size(), chunk);
    sticky(session.on_bytes(in.first(n), now, unix_ms), session);
    in = in.subspan(n);
    // Live deliveries of what was published, then the timers that are due.
    for (const auto& p : host.live) {
      if (session.wants(*p)) check(p->body().size() <= session.params().send_max_message_size);
      sticky(session.fatal(), session);
    }
    host.live.clear();
    now += 100;
    unix_ms += 100;
    if (session.next_deadline_ms() <= now) sticky(session.on_timer(now, unix_ms), session);
  }
  // Run the clock out: heartbeat, pong timeout or token expiry end every session.
  for (int i = 0; i < 4 && codec::ok(session.fatal()); ++i) {
    const uint64_t d = session.next_deadline_ms();
    if (d == UINT64_MAX) break;
    unix_ms += static_cast<int64_t>(d - now);
    now = d;
    sticky(session.on_timer(now, unix_ms), session);
  }
  // Server-side close paths, then EOF and the transport closing.
  session.go_away(Status::kGoingAway, "fuzz", 10);
  if (codec::ok(sticky.seen)) sticky.seen = session.fatal();
  sticky(session.fatal(), session);
  session.disconnect(Status::kInternal, "again");
  sticky(session.on_eof(now), session);
  session.on_closed();
  check(session.state() == server::Session::State::kClosed);
  sticky(session.on_bytes(e.prefix, now, unix_ms), session);
  sticky(session.on_timer(now + 1'000'000, unix_ms + 1'000'000), session);
  check(!session.wants(*make_publication("news:x", 1'000'000, 1)));
  return 0;
}
