// Fuzz target for the WebSocket shim's input paths. The first byte picks:
//  0: the upgrade request parser (server/ws_handshake.h), whole or growing byte by byte;
//  1: the wslay frame path (server/ws_transport.h), input split into chunks the data
//     chooses, every text message also translated from JSON;
//  2: the herald.v1.json translation (server/ws_json.h), with a round trip.
// Aborts when a documented invariant breaks (a 101 without a key, a round trip that
// changes the body, a message above the size limit).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "server/ws_handshake.h"
#include "server/ws_json.h"
#include "server/ws_transport.h"

namespace {

using herald::server::WsRequestKind;

constexpr size_t kMaxMessage = 4096;

void check(bool ok) {
  if (!ok) std::abort();
}

void fuzz_request(std::string_view in, bool growing) {
  static const std::vector<std::string> origins = {"https://app.example.com"};
  herald::server::WsHandshakeOptions o;
  o.max_header_bytes = 1024;
  o.origins = (in.size() % 2) != 0 ? &origins : nullptr;
  size_t start = growing ? 1 : in.size();
  for (size_t n = start; n <= in.size(); ++n) {
    const auto r = herald::server::parse_ws_request(in.substr(0, n), o);
    if (r.kind == WsRequestKind::kNeedMore) {
      check(n < o.max_header_bytes);
      continue;
    }
    check(r.header_bytes <= n);
    if (r.kind == WsRequestKind::kUpgrade) {
      check(r.status == 101 && r.response.rfind("HTTP/1.1 101 ", 0) == 0);
      check(r.response.find("Sec-WebSocket-Accept: ") != std::string::npos);
    } else if (r.kind == WsRequestKind::kReject) {
      check(r.status >= 400 && r.status < 500 && r.response.rfind("HTTP/1.1 4", 0) == 0);
    } else {
      check(r.status == 200);
    }
    break;
  }
}

void fuzz_json(std::string_view text) {
  herald::codec::FrameType type;
  std::vector<uint8_t> body;
  if (!herald::codec::ok(herald::server::json_to_message(text, kMaxMessage, type, body))) return;
  check(body.size() <= kMaxMessage);
  std::string json;
  check(herald::codec::ok(herald::server::message_to_json(type, body, json)));
  herald::codec::FrameType type2;
  std::vector<uint8_t> body2;
  check(herald::codec::ok(herald::server::json_to_message(json, SIZE_MAX, type2, body2)));
  check(type2 == type);
  std::string json2;
  check(herald::codec::ok(herald::server::message_to_json(type2, body2, json2)));
  check(json2 == json);
}

class Host final : public herald::server::WsTransportHost {
 public:
  ssize_t ws_write(const uint8_t*, size_t n, bool) noexcept override {
    written += n;
    // Sometimes the socket is full.
    return (written % 7) == 3 ? herald::server::kWsWouldBlock : static_cast<ssize_t>(n);
  }
  void ws_message(bool text, std::span<const uint8_t> payload) noexcept override {
    check(payload.size() <= kMaxMessage);
    if (text) fuzz_json({reinterpret_cast<const char*>(payload.data()), payload.size()});
    ++messages;
  }
  size_t written = 0;
  size_t messages = 0;
};

void fuzz_frames(const uint8_t* data, size_t size) {
  if (size == 0) return;
  Host host;
  herald::server::WsTransport t(&host, kMaxMessage);
  const size_t chunk = 1 + data[0] % 64;
  ++data;
  --size;
  for (size_t off = 0; off < size; off += chunk) {
    const size_t n = std::min(chunk, size - off);
    const bool more = t.feed({data + off, n});
    t.send();
    if (!more) {
      check(t.read_closed() && t.close_queued());
      break;
    }
    if ((off / chunk) % 5 == 4) t.queue(false, {data, std::min<size_t>(size, 300)});
  }
  for (int i = 0; i < 4 && t.want_write(); ++i) t.send();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0] % 4;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (mode) {
    case 0:
      fuzz_request(rest, false);
      break;
    case 1:
      fuzz_request(rest.substr(0, 600), true);
      break;
    case 2:
      fuzz_frames(data + 1, size - 1);
      break;
    default:
      fuzz_json(rest);
      break;
  }
  return 0;
}
