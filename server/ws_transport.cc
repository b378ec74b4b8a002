// wslay event context per WebSocket connection, created on demand and freed when idle.
#include "server/ws_transport.h"

#include <wslay/wslay.h>

#include <algorithm>
#include <cstring>

namespace herald::server {

uint16_t ws_close_code_for(codec::Status s) noexcept {
  switch (s) {
    case codec::Status::kOk:
      return kWsCloseNormal;
    case codec::Status::kGoingAway:
      return kWsCloseGoingAway;
    case codec::Status::kInternal:
      return kWsCloseInternal;
    case codec::Status::kMessageTooLarge:
      return kWsCloseTooBig;
    default:
      // The Error frame before the close says what happened in Herald's terms.
      return kWsClosePolicy;
  }
}

WsTransport::WsTransport(WsTransportHost* host, size_t max_message) noexcept
    : host_(host), max_message_(max_message) {}

WsTransport::~WsTransport() {
  if (ctx_ != nullptr) wslay_event_context_free(ctx_);
}

bool WsTransport::ensure_context() noexcept {
  if (ctx_ != nullptr) return true;
  wslay_event_callbacks cb{};
  cb.recv_callback = recv_cb;
  cb.send_callback = send_cb;
  cb.on_frame_recv_start_callback = frame_start_cb;
  cb.on_frame_recv_end_callback = frame_end_cb;
  cb.on_msg_recv_callback = msg_cb;
  if (wslay_event_context_server_init(&ctx_, &cb, this) != 0) {
    ctx_ = nullptr;
    return false;
  }
  wslay_event_config_set_max_recv_msg_length(ctx_, max_message_);
  bytes_fed_ = frame_bytes_ = current_frame_ = 0;
  return true;
}

void WsTransport::release_if_idle() noexcept {
  // Free the context only at a message boundary with nothing to write: every
  // byte given to wslay belongs to a finished frame, so a new context starts
  // exactly where this one stopped. (If the sizes never match, e.g. for an odd
  // length encoding, the context simply stays.)
  if (ctx_ == nullptr || read_closed_ || close_queued_ || in_fragmented_) return;
  if (frame_bytes_ != bytes_fed_ || wslay_event_want_write(ctx_) || wslay_event_get_queued_msg_count(ctx_) > 0) return;
  wslay_event_context_free(ctx_);
  ctx_ = nullptr;
}

ssize_t WsTransport::recv_cb(wslay_event_context* ctx, uint8_t* buf, size_t len, int, void* user) {
  auto* t = static_cast<WsTransport*>(user);
  if (t->input_.empty()) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  const size_t n = std::min(len, t->input_.size());
  std::memcpy(buf, t->input_.data(), n);
  t->input_ = t->input_.subspan(n);
  t->bytes_fed_ += n;
  return static_cast<ssize_t>(n);
}

ssize_t WsTransport::send_cb(wslay_event_context* ctx, const uint8_t* data, size_t len, int flags, void* user) {
  auto* t = static_cast<WsTransport*>(user);
  const ssize_t n = t->host_->ws_write(data, len, (flags & WSLAY_MSG_MORE) != 0);
  if (n >= 0) return n;
  if (n == kWsWouldBlock) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
  } else {
    t->write_error_ = true;
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
  }
  return -1;
}

void WsTransport::frame_start_cb(wslay_event_context*, const wslay_event_on_frame_recv_start_arg* arg, void* user) {
  auto* t = static_cast<WsTransport*>(user);
  // Client frames are masked (wslay closes on unmasked ones): 2 + length + 4 bytes of header.
  const uint64_t p = arg->payload_length;
  t->current_frame_ = 2 + (p < 126 ? 0 : p <= 0xFFFF ? 2 : 8) + 4 + p;
  if (!wslay_is_ctrl_frame(arg->opcode)) t->in_fragmented_ = arg->fin == 0;
}

void WsTransport::frame_end_cb(wslay_event_context*, void* user) {
  auto* t = static_cast<WsTransport*>(user);
  t->frame_bytes_ += t->current_frame_;
  t->current_frame_ = 0;
}

void WsTransport::msg_cb(wslay_event_context*, const wslay_event_on_msg_recv_arg* arg, void* user) {
  auto* t = static_cast<WsTransport*>(user);
  if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME) {
    t->host_->ws_message(arg->opcode == WSLAY_TEXT_FRAME, {arg->msg, arg->msg_length});
  } else if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
    t->peer_close_code_ = arg->status_code;
    t->peer_closed_ = true;
    t->bad_close_ = arg->msg_length == 1;  // a status code is 2 bytes (RFC 6455 §5.5.1)
  }
}

bool WsTransport::feed(std::span<const uint8_t> bytes) noexcept {
  if (read_closed_) return false;
  if (bytes.empty()) return true;
  if (!ensure_context()) {
    read_closed_ = true;
    return false;
  }
  input_ = bytes;
  const int r = wslay_event_recv(ctx_);
  input_ = {};
  if ((r == WSLAY_ERR_CALLBACK_FAILURE && !peer_closed_) || bad_close_) {
    // wslay's frame layer found a malformed frame (fragmented or oversized control
    // frame, ...) or the peer's close had a 1-byte payload, and wslay queued a close
    // without a status code.
    // RFC 6455 §7.4.1 has a code for that: send 1002 from a fresh context instead.
    wslay_event_context_free(ctx_);
    ctx_ = nullptr;
    read_closed_ = true;
    close_queued_ = true;
    if (ensure_context()) wslay_event_queue_close(ctx_, WSLAY_CODE_PROTOCOL_ERROR, nullptr, 0);
    return false;
  }
  if (r != 0 || !wslay_event_get_read_enabled(ctx_)) {
    // wslay queued a close (its own protocol error code, or the echo of the peer's).
    read_closed_ = true;
    close_queued_ = true;
    return false;
  }
  release_if_idle();
  return true;
}

bool WsTransport::queue(bool text, std::span<const uint8_t> payload) noexcept {
  if (close_queued_ || !ensure_context()) return false;
  wslay_event_msg m{static_cast<uint8_t>(text ? WSLAY_TEXT_FRAME : WSLAY_BINARY_FRAME), payload.data(), payload.size()};
  return wslay_event_queue_msg(ctx_, &m) == 0;
}

void WsTransport::queue_close(uint16_t code, std::string_view reason) noexcept {
  if (close_queued_) return;
  close_queued_ = true;
  if (!ensure_context()) return;
  reason = reason.substr(0, 123);
  wslay_event_queue_close(ctx_, code, reinterpret_cast<const uint8_t*>(reason.data()), reason.size());
}

bool WsTransport::send() noexcept {
  if (ctx_ == nullptr) return !write_error_;
  const int r = wslay_event_send(ctx_);
  if (r != 0 || write_error_) return false;
  release_if_idle();
  return true;
}

size_t WsTransport::queued_bytes() const noexcept {
  return ctx_ == nullptr ? 0 : wslay_event_get_queued_msg_length(ctx_);
}

bool WsTransport::want_write() const noexcept { return ctx_ != nullptr && wslay_event_want_write(ctx_); }

}  // namespace herald::server
