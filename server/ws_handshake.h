// The HTTP side of the WebSocket listener: parses one HTTP/1.1 request (the
// RFC 6455 upgrade at /ws, the demo page at /, the JS client at /herald.js)
// and builds the response bytes. Sans-IO: no sockets, no clock, no logging.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace herald::server {

// The two subprotocols of docs/protocol.md §16.
inline constexpr std::string_view kWsProtocolBinary = "herald.v1";
inline constexpr std::string_view kWsProtocolJson = "herald.v1.json";

struct WsHandshakeOptions {
  size_t max_header_bytes = 8192;     // request line + headers + the blank line
  size_t max_headers = 64;
  // Allowed Origin values ("https://app.example.com", compared without regard to
  // case). Empty: only requests without Origin (non-browser clients) and
  // same-host requests (Origin's host:port equals the Host header). "*": any.
  const std::vector<std::string>* origins = nullptr;
};

enum class WsRequestKind : uint8_t {
  kNeedMore,  // no complete request yet (and still under the size limit)
  kUpgrade,   // a valid WebSocket upgrade: answer `response` (101), then frames
  kPage,      // GET /: the demo page
  kScript,    // GET /herald.js: the browser client module
  kReject,    // answer `response` (an error status) and close
};

struct WsRequest {
  WsRequestKind kind = WsRequestKind::kNeedMore;
  int status = 0;              // HTTP status of the answer (101, 200, 400, 403, 404, 405, 426, 431)
  std::string reason;          // why it was rejected (also the response body)
  bool json = false;           // kUpgrade: herald.v1.json chosen (else herald.v1)
  size_t header_bytes = 0;     // length of the request head including the blank line
  std::string response;        // kUpgrade / kReject: the complete HTTP response
};

// Looks at the bytes received so far (the whole buffer each time; the caller
// stops calling once the result is not kNeedMore). Never throws; any input gives
// one of the kinds above. A head longer than max_header_bytes without its blank
// line is rejected with 431 as soon as that many bytes are buffered.
WsRequest parse_ws_request(std::string_view buffered, const WsHandshakeOptions& options) noexcept;

// Sec-WebSocket-Accept for a client's Sec-WebSocket-Key (RFC 6455 §4.2.2).
std::string ws_accept_key(std::string_view key);

// A complete response with Connection: close, `content_type` and `body`.
std::string http_response(int status, std::string_view content_type, std::string_view body);

}  // namespace herald::server
