// Fuzz target: the client SDK's ClientSession fed server bytes. Input: byte 0 = chunk
// size (0: all at once), byte 1 = mode (bit 0 manual acks, bits 1-2 how far a valid
// server prefix takes the session: none, Welcome, AuthOk, SubscribeOk for both
// channels), then the server's bytes. Time advances 100 ms per chunk with timers run; the
// stream is played on two connections in a row (reconnect and resume). Aborts if a fatal
// status is not sticky, anything is written after it, a client frame does not decode or
// is one a client may not send, or a publication is delivered twice in one epoch.
#include <google/protobuf/stubs/logging.h>

#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "client-sdk/client_session.h"
#include "codec/frame_encoder.h"
#include "codec/message.h"
#include "codec/message_reader.h"

using namespace herald;
using codec::FrameType;
using codec::Status;

namespace {

void check(bool condition) {
  if (!condition) std::abort();
}

class Host : public client::ClientSessionHost {
 public:
  void write(std::span<const uint8_t> b) noexcept override {
    check(!frozen);  // nothing after the fatal status's last frame
    out.insert(out.end(), b.begin(), b.end());
  }
  std::string token() noexcept override { return "token"; }
  void on_ready(std::string_view, std::string_view) noexcept override {}
  void on_subscribed(const client::SubscribedInfo& i) noexcept override { seen[std::string(i.channel)].clear(); }
  void on_subscribe_failed(std::string_view, Status, std::string_view) noexcept override {}
  void on_publication(const client::PublicationView& p) noexcept override {
    auto& s = seen[std::string(p.channel)];
    check(s.insert(std::string(p.epoch) + "/" + std::to_string(p.offset)).second);
    last_channel.assign(p.channel);
    last_epoch.assign(p.epoch);
    last_offset = p.offset;
  }
  void on_position(std::string_view, std::string_view, uint64_t) noexcept override {}
  void on_dismiss(std::string_view, uint64_t, std::string_view) noexcept override {}
  void on_pong(uint64_t) noexcept override {}

  std::vector<uint8_t> out;
  bool frozen = false;
  std::map<std::string, std::set<std::string>> seen;
  std::string last_channel, last_epoch;
  uint64_t last_offset = 0;
};

void append_message(const google::protobuf::Message& m, uint32_t& seq, std::vector<uint8_t>& out) {
  FrameType type;
  check(codec::frame_type_for(m, type));
  std::vector<uint8_t> body;
  check(codec::ok(codec::serialize_message(m, SIZE_MAX, body)));
  codec::EncodeOptions o;
  o.checksum = false;
  codec::EncodedMessage e;
  check(codec::ok(codec::encode_message(type, body, o, nullptr, e)));
  codec::append_frames(e, seq, out);
}

// Every frame the client wrote decodes, and is one a client may send.
void check_client_output(const std::vector<uint8_t>& out) {
  codec::ReaderLimits l;
  l.compression = false;
  l.decoder.max_frame_size = 16 * 1024 * 1024;
  l.max_message_size = 16 * 1024 * 1024;
  codec::MessageReader reader(l);
  std::span<const uint8_t> in(out);
  while (!in.empty()) {
    codec::InboundMessage m;
    const codec::DecodeResult r = reader.read(in, 0, m);
    check(r.status == Status::kOk);
    in = in.subspan(r.consumed);
    std::unique_ptr<google::protobuf::Message> msg;
    check(codec::ok(codec::decode_message(m.type, m.body, SIZE_MAX, msg)));
    switch (m.type) {
      case FrameType::kHello: case FrameType::kAuth: case FrameType::kRefresh: case FrameType::kSubscribe:
      case FrameType::kUnsubscribe: case FrameType::kAck: case FrameType::kPing: case FrameType::kPong:
      case FrameType::kError:
        break;
      default:
        check(false);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool quiet = [] {
    google::protobuf::SetLogHandler([](google::protobuf::LogLevel, const char*, int, const std::string&) {});
    return true;
  }();
  (void)quiet;
  if (size < 2) return 0;
  const size_t chunk = data[0];
  const uint8_t mode = data[1];
  const std::span<const uint8_t> rest(data + 2, size - 2);

  client::SessionOptions o;
  o.manual_ack = (mode & 1) != 0;
  o.heartbeat_timeout_ms = 3000;
  o.gap_timeout_ms = 1000;
  o.handshake_timeout_ms = 5000;
  Host host;
  static codec::CodecContext ctx;  // per thread in the SDK too, shared by its sessions
  client::ClientSession s(o, &host, &ctx);
  check(s.subscribe("news"));
  check(s.subscribe("user:alice"));
  uint64_t now = 0;

  for (int connection = 0; connection < 2; ++connection) {
    host.frozen = false;
    s.connection_opened(now);
    // A valid server prefix, so the fuzzed bytes land in the chosen state.
    std::vector<uint8_t> prefix;
    uint32_t seq = 0;
    const int depth = (mode >> 1) & 3;
    if (depth >= 1) {
      v1::Welcome w;
      w.set_version(1);
      w.set_session_id("s");
      append_message(w, seq, prefix);
    }
    if (depth >= 2) {
      v1::AuthOk ok;
      ok.set_user_id("alice");
      ok.set_expires_at_ms(1'700'000'010'000);
      append_message(ok, seq, prefix);
    }
    if (depth >= 3) {
      // Request ids grow per connection: 1, 2 on the first; 3, 4 on the second.
      for (uint64_t i = 0; i < 2; ++i) {
        v1::SubscribeOk ok;
        ok.set_request_id(connection * 2 + i + 1);
        ok.set_channel(i == 0 ? "news" : "user:alice");
        ok.set_epoch("E");
        append_message(ok, seq, prefix);
      }
    }
    check(s.on_bytes(prefix, now, 1'700'000'000'000) == Status::kOk);

    Status fatal = Status::kOk;
    size_t pos = 0;
    while (pos < rest.size()) {
      const size_t n = chunk == 0 ? rest.size() - pos : std::min(chunk, rest.size() - pos);
      const Status st = s.on_bytes(rest.subspan(pos, n), now, 1'700'000'000'000 + static_cast<int64_t>(now));
      pos += n;
      if (!codec::ok(fatal)) check(st == fatal);  // sticky
      if (!codec::ok(st) && codec::ok(fatal)) {
        fatal = st;
        host.frozen = true;
      }
      if (codec::ok(fatal) && o.manual_ack && !host.last_channel.empty()) {
        s.ack(host.last_channel, host.last_epoch, host.last_offset);
      }
      now += 100;
      const Status t = s.on_timer(now, 1'700'000'000'000 + static_cast<int64_t>(now));
      if (!codec::ok(fatal)) check(t == fatal);
      if (!codec::ok(t) && codec::ok(fatal)) {
        fatal = t;
        host.frozen = true;
      }
    }
    s.on_eof();
    host.frozen = false;
    s.connection_closed();
    check(s.state() == client::ClientSession::State::kDisconnected);
    check_client_output(host.out);
    host.out.clear();
    (void)s.reconnect_delay_ms(250, 30000, static_cast<uint32_t>(size));
  }
  return 0;
}
