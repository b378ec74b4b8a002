// RFC 6455 framing of one WebSocket connection through wslay's event API: bytes
// in -> whole messages out, messages in -> bytes to the host's writer. Holds no
// socket and no Herald protocol logic; the connection owns the I/O.
// The wslay context (about 9 KiB) exists only while a frame is being read or
// written: an idle connection holds none (docs/benchmarks.md, idle memory).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "codec/status.h"

struct wslay_event_context;
struct wslay_event_on_frame_recv_start_arg;
struct wslay_event_on_msg_recv_arg;

namespace herald::server {

// What the transport needs from its connection. Called from inside feed()/send().
class WsTransportHost {
 public:
  virtual ~WsTransportHost() = default;
  // Write up to `n` bytes; `more`: more bytes follow at once (MSG_MORE). Returns the
  // bytes taken (may be fewer), kWsWouldBlock, or kWsWriteError.
  virtual ssize_t ws_write(const uint8_t* data, size_t n, bool more) noexcept = 0;
  // One whole data message (text or binary).
  virtual void ws_message(bool text, std::span<const uint8_t> payload) noexcept = 0;
};

inline constexpr ssize_t kWsWouldBlock = -1;
inline constexpr ssize_t kWsWriteError = -2;

// RFC 6455 close codes used by the shim.
inline constexpr uint16_t kWsCloseNormal = 1000;
inline constexpr uint16_t kWsCloseGoingAway = 1001;
inline constexpr uint16_t kWsCloseProtocolError = 1002;
inline constexpr uint16_t kWsCloseUnsupportedData = 1003;
inline constexpr uint16_t kWsCloseInvalidPayload = 1007;
inline constexpr uint16_t kWsClosePolicy = 1008;
inline constexpr uint16_t kWsCloseTooBig = 1009;
inline constexpr uint16_t kWsCloseInternal = 1011;

// The close code that goes with a Herald status ending the connection.
uint16_t ws_close_code_for(codec::Status s) noexcept;

class WsTransport {
 public:
  // `max_message` caps one received message (larger: close 1009). `host` must outlive this.
  WsTransport(WsTransportHost* host, size_t max_message) noexcept;
  ~WsTransport();
  WsTransport(const WsTransport&) = delete;
  WsTransport& operator=(const WsTransport&) = delete;

  // Feeds received bytes; whole messages go to host->ws_message. False when the
  // connection must end: wslay queued a close (protocol error 1002, invalid UTF-8
  // 1007, too big 1009), the peer sent its close (echoed), or memory ran out.
  // Afterwards read_closed() is true and input is ignored.
  bool feed(std::span<const uint8_t> bytes) noexcept;

  // Queues one data message (copied). False if no more messages may be sent (a close
  // was queued) or memory ran out.
  bool queue(bool text, std::span<const uint8_t> payload) noexcept;
  // Queues the close frame (once); later queue() calls fail.
  void queue_close(uint16_t code, std::string_view reason) noexcept;

  // Writes queued frames through host->ws_write until done or it would block.
  // False on a write error.
  bool send() noexcept;

  // Bytes of queued data messages not yet handed to ws_write.
  size_t queued_bytes() const noexcept;
  // True while frames wait to be written (ws_write would block, or not sent yet).
  bool want_write() const noexcept;
  bool read_closed() const noexcept { return read_closed_; }
  bool close_queued() const noexcept { return close_queued_; }
  // The peer's close code (0 if none was received or it carried none).
  uint16_t peer_close_code() const noexcept { return peer_close_code_; }
  // True once the peer's close frame arrived.
  bool peer_closed() const noexcept { return peer_closed_; }
  // Whether a wslay context is allocated now (for tests of idle memory).
  bool has_context() const noexcept { return ctx_ != nullptr; }

 private:
  static ssize_t recv_cb(wslay_event_context* ctx, uint8_t* buf, size_t len, int flags, void* user);
  static ssize_t send_cb(wslay_event_context* ctx, const uint8_t* data, size_t len, int flags, void* user);
  static void frame_start_cb(wslay_event_context* ctx, const wslay_event_on_frame_recv_start_arg* arg, void* user);
  static void frame_end_cb(wslay_event_context* ctx, void* user);
  static void msg_cb(wslay_event_context* ctx, const wslay_event_on_msg_recv_arg* arg, void* user);
  bool ensure_context() noexcept;
  void release_if_idle() noexcept;

  WsTransportHost* host_;
  wslay_event_context* ctx_ = nullptr;
  std::span<const uint8_t> input_;
  size_t max_message_;
  uint64_t bytes_fed_ = 0;     // given to wslay since the context was made
  uint64_t frame_bytes_ = 0;   // of those, bytes of whole frames wslay finished
  uint64_t current_frame_ = 0; // header + payload size of the frame being read
  uint16_t peer_close_code_ = 0;
  bool peer_closed_ = false;
  bool bad_close_ = false;
  bool in_fragmented_ = false; // a fragmented data message is incomplete
  bool read_closed_ = false;
  bool close_queued_ = false;
  bool write_error_ = false;
};

}  // namespace herald::server
