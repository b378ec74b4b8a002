// The WebSocket side of one Connection: the HTTP upgrade (or the demo page), then
// RFC 6455 messages through WsTransport, carrying herald.v1 frames (binary) or
// herald.v1.json (text) to and from the connection's Session and DeliveryLanes.
// No protocol logic of its own; loop thread only.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "codec/message_reader.h"
#include "server/ws_transport.h"

namespace herald::server {

class Connection;

// Settings of the WebSocket listener, shared read-only by every WS connection.
struct WsSettings {
  uint32_t handshake_timeout_ms = 5000;  // accept -> complete upgrade request
  size_t max_header_bytes = 8192;
  size_t max_message_bytes = 1048576 + 65536;
  std::vector<std::string> origins;      // see WsHandshakeOptions::origins
};

class WsConnection final : public WsTransportHost {
 public:
  WsConnection(Connection* c, const WsSettings* settings, uint64_t accepted_ms);
  ~WsConnection() override;

  // Bytes read from the socket (or TLS).
  void on_bytes(std::span<const uint8_t> bytes);
  // Moves what the lanes hold into WebSocket messages and writes them.
  void flush();
  // Monotonic deadline of the upgrade (UINT64_MAX once upgraded).
  uint64_t deadline_ms() const noexcept;
  // Runs the upgrade timeout; true if it closed the connection.
  bool on_timer(uint64_t now_ms);
  // True while bytes still have to be written before the socket may close.
  bool output_pending() const noexcept;
  bool upgraded() const noexcept { return phase_ == Phase::kOpen; }

  // ---- WsTransportHost ----
  ssize_t ws_write(const uint8_t* data, size_t n, bool more) noexcept override;
  void ws_message(bool text, std::span<const uint8_t> payload) noexcept override;

 private:
  enum class Phase : uint8_t { kHttp, kOpen, kDead };

  void on_request();
  void write_http();
  bool fill_from_lanes();
  bool translate_to_json(std::span<const uint8_t> bytes);
  void fail_transport();
  void close_with(uint16_t code, const char* reason);

  Connection* c_;
  const WsSettings* settings_;
  Phase phase_ = Phase::kHttp;
  bool json_ = false;
  uint64_t upgrade_deadline_ms_;
  std::string http_in_;
  std::string http_out_;
  size_t http_out_off_ = 0;
  uint8_t pending_header_[14];      // a WebSocket frame header waiting for its payload
  uint8_t pending_header_len_ = 0;
  uint32_t in_sequence_ = 0;  // herald.v1.json: sequence of frames built from text messages
  std::unique_ptr<WsTransport> transport_;
  std::unique_ptr<codec::MessageReader> json_out_;  // herald.v1.json: frames -> messages
};

}  // namespace herald::server
