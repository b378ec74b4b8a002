// The client SDK's own cost per received message on one core: a recorded server byte
// stream (realistic notifications from shared/data/gen_notifications.py) fed into a
// ClientSession in 64 KiB reads, as the transport does: frame decode, checksum, protobuf
// parse, dedup, the app's handler, ack bookkeeping. No sockets, no server.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/notifications.h"
#include "client-sdk/client_session.h"
#include "codec/frame_encoder.h"
#include "codec/message.h"

namespace {

using namespace herald;

class CountingHost : public client::ClientSessionHost {
 public:
  void write(std::span<const uint8_t> b) noexcept override { written += b.size(); }
  std::string token() noexcept override { return "t"; }
  void on_ready(std::string_view, std::string_view) noexcept override {}
  void on_subscribed(const client::SubscribedInfo&) noexcept override {}
  void on_subscribe_failed(std::string_view, codec::Status, std::string_view) noexcept override {}
  void on_publication(const client::PublicationView& p) noexcept override {
    ++messages;
    bytes += p.payload.size();  // what an app touches at least
  }
  void on_position(std::string_view, std::string_view, uint64_t) noexcept override {}
  void on_dismiss(std::string_view, uint64_t, std::string_view) noexcept override {}
  void on_pong(uint64_t) noexcept override {}
  uint64_t messages = 0, bytes = 0, written = 0;
};

void append(const google::protobuf::Message& m, bool checksum, uint32_t& seq, std::vector<uint8_t>& out) {
  codec::FrameType type;
  codec::frame_type_for(m, type);
  std::vector<uint8_t> body;
  codec::serialize_message(m, SIZE_MAX, body);
  codec::EncodeOptions o;
  o.checksum = checksum;
  codec::EncodedMessage e;
  if (!codec::ok(codec::encode_message(type, body, o, nullptr, e))) std::abort();
  // Through a small buffer: append_frames reserves exactly, so appending to the big stream
  // directly would reallocate it every time.
  std::vector<uint8_t> frames;
  codec::append_frames(e, seq, frames);
  out.insert(out.end(), frames.begin(), frames.end());
}

constexpr int kMessages = 20000;

// Handshake prefix and the publication stream, as heraldd would send them.
struct Stream {
  std::vector<uint8_t> prefix, pubs;
  size_t payload_bytes = 0;
};

const Stream& stream(bool checksum) {
  static Stream streams[2];
  Stream& s = streams[checksum ? 1 : 0];
  if (!s.prefix.empty()) return s;
  std::vector<std::string> json;
  std::string error;
  if (!bench::generate_notifications(5, 1000, json, error)) {
    std::fprintf(stderr, "client_session_bench: %s\n", error.c_str());
    std::exit(1);
  }
  uint32_t seq = 0;
  v1::Welcome w;
  w.set_version(1);
  w.set_checksum(checksum);
  append(w, false, seq, s.prefix);
  v1::AuthOk ok;
  ok.set_user_id("alice");
  append(ok, checksum, seq, s.prefix);
  v1::SubscribeOk sok;
  sok.set_request_id(1);
  sok.set_channel("bench");
  sok.set_epoch("7f3a9c21");
  append(sok, checksum, seq, s.prefix);
  for (int i = 0; i < kMessages; ++i) {
    v1::Publication p = bench::make_publication(json[static_cast<size_t>(i) % json.size()], static_cast<uint64_t>(i + 1));
    p.set_channel("bench");
    s.payload_bytes += p.payload().size();
    append(p, checksum, seq, s.pubs);
  }
  return s;
}

void BM_ClientReceive(benchmark::State& state) {
  const bool checksum = state.range(0) != 0;
  const Stream& s = stream(checksum);
  codec::CodecContext ctx;
  uint64_t total = 0;
  for (auto _ : state) {
    state.PauseTiming();
    CountingHost host;
    client::SessionOptions o;
    o.checksum = checksum;
    client::ClientSession session(o, &host, &ctx);
    session.subscribe("bench");
    session.connection_opened(0);
    if (!codec::ok(session.on_bytes(s.prefix, 0, 0))) std::abort();
    state.ResumeTiming();
    const size_t kRead = 64 * 1024;  // one socket read
    for (size_t off = 0; off < s.pubs.size(); off += kRead) {
      const size_t n = std::min(kRead, s.pubs.size() - off);
      if (!codec::ok(session.on_bytes({s.pubs.data() + off, n}, 1, 1))) std::abort();
    }
    if (host.messages != kMessages) std::abort();
    total += host.messages;
  }
  state.SetItemsProcessed(static_cast<int64_t>(total));
  state.SetBytesProcessed(static_cast<int64_t>(s.pubs.size()) * state.iterations());
  state.counters["avg_payload_B"] = static_cast<double>(s.payload_bytes) / kMessages;
}
BENCHMARK(BM_ClientReceive)->Arg(0)->Arg(1)->ArgName("checksum")->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
