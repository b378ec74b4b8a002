// WebSocket shim of a Connection: upgrade, wslay framing, herald.v1 / herald.v1.json.
#include "server/ws_connection.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>

#include "codec/frame_encoder.h"
#include "server/connection.h"
#include "server/server_context.h"
#include "server/ws_assets.h"
#include "server/ws_handshake.h"
#include "server/ws_json.h"

namespace herald::server {
namespace {

constexpr size_t kMaxIov = 64;

// One loop thread's scratch for gathering lane output into one message.
std::vector<uint8_t>& scratch() {
  thread_local std::vector<uint8_t> s;
  return s;
}

// True if `bytes` is one or more whole Herald frames (docs/protocol.md §1.4).
bool whole_frames(std::span<const uint8_t> bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    if (bytes.size() - off < codec::kHeaderSize) return false;
    const uint64_t length = codec::get_u32(bytes.data() + off + 8);
    if (length > bytes.size() - off - codec::kHeaderSize) return false;
    off += codec::kHeaderSize + length;
  }
  return true;
}

}  // namespace

WsConnection::WsConnection(Connection* c, const WsSettings* settings, uint64_t accepted_ms)
    : c_(c), settings_(settings), upgrade_deadline_ms_(accepted_ms + settings->handshake_timeout_ms) {}

WsConnection::~WsConnection() = default;

uint64_t WsConnection::deadline_ms() const noexcept {
  return phase_ == Phase::kHttp && !c_->closing_ ? upgrade_deadline_ms_ : UINT64_MAX;
}

bool WsConnection::on_timer(uint64_t now_ms) {
  if (phase_ != Phase::kHttp || c_->closing_ || now_ms < upgrade_deadline_ms_) return false;
  // Slow or silent upgrade request (slowloris): close without an answer.
  c_->lanes_.clear();
  http_out_.clear();
  c_->session_.on_closed();
  c_->start_closing(CloseReason::kHandshakeTimeout);
  return true;
}

bool WsConnection::output_pending() const noexcept {
  switch (phase_) {
    case Phase::kHttp:
      return http_out_off_ < http_out_.size();
    case Phase::kOpen:
      return transport_->want_write() || (c_->closing_ && !transport_->close_queued());
    case Phase::kDead:
      return false;
  }
  return false;
}

// ---------------------------------------------------------------- input

void WsConnection::on_bytes(std::span<const uint8_t> bytes) {
  if (phase_ == Phase::kOpen) {
    if (!transport_->feed(bytes) && !c_->closing_) {
      // wslay queued a close: the echo of the peer's, or its own 1002/1007/1009.
      c_->lanes_.clear();
      c_->session_.on_closed();
      c_->start_closing(transport_->peer_closed() ? CloseReason::kClientClosed : CloseReason::kProtocolError);
    }
    return;
  }
  if (phase_ != Phase::kHttp) return;
  const size_t room = settings_->max_header_bytes + 1 - std::min(http_in_.size(), settings_->max_header_bytes + 1);
  const size_t before = http_in_.size();
  http_in_.append(reinterpret_cast<const char*>(bytes.data()), std::min(bytes.size(), room));
  // Parse only when something can have changed: the first bytes (is it HTTP at all?),
  // a blank line among the new bytes, or the size limit; so a head trickling in byte
  // by byte costs linear time, not quadratic.
  const bool head_done = http_in_.find("\r\n\r\n", before >= 3 ? before - 3 : 0) != std::string::npos;
  if (before < 16 || head_done || http_in_.size() >= settings_->max_header_bytes) on_request();
  if (phase_ == Phase::kOpen && bytes.size() > room) {
    // Frames sent right behind the request head: hand them to the transport too.
    on_bytes(bytes.subspan(room));
  }
}

void WsConnection::on_request() {
  WsHandshakeOptions o;
  o.max_header_bytes = settings_->max_header_bytes;
  o.origins = &settings_->origins;
  WsRequest r = parse_ws_request(http_in_, o);
  switch (r.kind) {
    case WsRequestKind::kNeedMore:
      return;
    case WsRequestKind::kPage:
    case WsRequestKind::kScript: {
      const bool page = r.kind == WsRequestKind::kPage;
      http_out_ = http_response(200, page ? "text/html; charset=utf-8" : "text/javascript; charset=utf-8",
                                page ? ws_demo_page() : ws_client_script());
      c_->session_.on_closed();
      c_->start_closing(CloseReason::kClientClosed);
      break;
    }
    case WsRequestKind::kReject:
      http_out_ = std::move(r.response);
      c_->session_.on_closed();
      c_->start_closing(CloseReason::kProtocolError);
      break;
    case WsRequestKind::kUpgrade: {
      http_out_ = std::move(r.response);
      json_ = r.json;
      phase_ = Phase::kOpen;
      transport_ = std::make_unique<WsTransport>(this, settings_->max_message_bytes);
      if (json_) {
        codec::ReaderLimits l;
        l.decoder.max_frame_size = 16 * 1024 * 1024;
        l.decoder.check_sequence = false;
        l.max_message_size = 16 * 1024 * 1024;
        l.reassembly.max_message_size = 16 * 1024 * 1024;
        l.reassembly.max_buffered_bytes = 16 * 1024 * 1024;
        l.compression = false;  // WebSocket sessions never negotiate zstd
        json_out_ = std::make_unique<codec::MessageReader>(l);
      }
      std::string rest = http_in_.substr(r.header_bytes);
      std::string().swap(http_in_);
      write_http();
      if (!rest.empty()) on_bytes({reinterpret_cast<const uint8_t*>(rest.data()), rest.size()});
      return;
    }
  }
  std::string().swap(http_in_);
  c_->lanes_.clear();
  write_http();
}

void WsConnection::ws_message(bool text, std::span<const uint8_t> payload) noexcept {
  if (c_->closing_) return;
  if (text != json_) {
    close_with(kWsCloseUnsupportedData,
               json_ ? "herald.v1.json carries text messages" : "herald.v1 carries binary messages");
    return;
  }
  const uint64_t now = monotonic_ms();
  if (!json_) {
    c_->handle_status(c_->session_.on_bytes(payload, now, unix_ms()));
    if (!c_->closing_ && !whole_frames(payload)) {
      c_->session_.disconnect(codec::Status::kTruncatedFrame, "WebSocket message ended inside a frame");
      c_->start_closing(CloseReason::kProtocolError);
    }
    return;
  }
  codec::FrameType type;
  std::vector<uint8_t> body;
  const std::string_view t(reinterpret_cast<const char*>(payload.data()), payload.size());
  const codec::Status s = json_to_message(t, c_->loop_->context().config->max_message_size, type, body);
  if (!codec::ok(s)) {
    c_->session_.disconnect(s, s == codec::Status::kUnknownFrameType ? "unknown message name in JSON"
                                                                      : "JSON message does not fit herald.v1");
    c_->start_closing(CloseReason::kProtocolError);
    return;
  }
  codec::EncodedMessage m;
  codec::EncodeOptions eo;
  eo.checksum = false;
  if (!codec::ok(codec::encode_message(type, body, eo, nullptr, m))) {
    c_->session_.disconnect(codec::Status::kMessageTooLarge, "JSON message too large");
    c_->start_closing(CloseReason::kProtocolError);
    return;
  }
  std::vector<uint8_t>& wire = scratch();
  wire.clear();
  codec::append_frames(m, in_sequence_, wire);
  c_->handle_status(c_->session_.on_bytes(wire, now, unix_ms()));
}

// ---------------------------------------------------------------- output

ssize_t WsConnection::ws_write(const uint8_t* data, size_t n, bool more) noexcept {
  if (c_->tls_) {
    if (evbuffer_add(bufferevent_get_output(c_->bev_), data, n) != 0) return kWsWriteError;
    c_->loop_->context().metrics->bytes_out(n);
    return static_cast<ssize_t>(n);
  }
  if (c_->write_blocked_) return kWsWouldBlock;
  if (more && pending_header_len_ == 0 && n <= sizeof pending_header_) {
    // wslay writes a frame header, then its payload: keep the header and write both
    // with one writev (one syscall and one TCP segment per message, like TCP's writev).
    std::memcpy(pending_header_, data, n);
    pending_header_len_ = static_cast<uint8_t>(n);
    return static_cast<ssize_t>(n);
  }
  iovec iov[2];
  int count = 0;
  if (pending_header_len_ > 0) iov[count++] = {pending_header_, pending_header_len_};
  iov[count++] = {const_cast<uint8_t*>(data), n};
  const ssize_t w = ::writev(c_->fd_, iov, count);
  if (w < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
      c_->write_blocked_ = true;
      c_->watch(c_->reading(), true);
      return kWsWouldBlock;
    }
    return kWsWriteError;
  }
  c_->loop_->context().metrics->bytes_out(static_cast<size_t>(w));
  size_t taken = static_cast<size_t>(w);
  if (pending_header_len_ > 0) {
    const size_t h = std::min<size_t>(taken, pending_header_len_);
    std::memmove(pending_header_, pending_header_ + h, pending_header_len_ - h);
    pending_header_len_ = static_cast<uint8_t>(pending_header_len_ - h);
    taken -= h;
  }
  if (pending_header_len_ > 0 || taken < n) {
    c_->write_blocked_ = true;
    c_->watch(c_->reading(), true);
    if (taken == 0) return kWsWouldBlock;  // the rest of the header goes first next time
  }
  return static_cast<ssize_t>(taken);
}

void WsConnection::write_http() {
  if (c_->tls_) {
    evbuffer_add(bufferevent_get_output(c_->bev_), http_out_.data() + http_out_off_, http_out_.size() - http_out_off_);
    http_out_off_ = http_out_.size();
  } else {
    while (http_out_off_ < http_out_.size() && !c_->write_blocked_) {
      const ssize_t w = ws_write(reinterpret_cast<const uint8_t*>(http_out_.data()) + http_out_off_,
                                 http_out_.size() - http_out_off_, false);
      if (w == kWsWouldBlock) break;
      if (w < 0) {
        http_out_off_ = http_out_.size();
        break;
      }
      http_out_off_ += static_cast<size_t>(w);
    }
  }
  if (http_out_off_ == http_out_.size()) {
    std::string().swap(http_out_);
    http_out_off_ = 0;
  }
}

bool WsConnection::fill_from_lanes() {
  // Takes one batch from the lanes into one binary message (or the JSON messages of
  // its frames). Called only when wslay has nothing left to write, so apart from the
  // message in flight every byte stays in the lanes: output limits, shedding and
  // priorities are the lanes', exactly as on TCP.
  DeliveryLanes& lanes = c_->lanes_;
  iovec iov[kMaxIov];
  const size_t n = lanes.prepare(iov, kMaxIov);
  if (n == 0) return false;
  std::vector<uint8_t>& buf = scratch();
  buf.clear();
  for (size_t i = 0; i < n; ++i) {
    const auto* p = static_cast<const uint8_t*>(iov[i].iov_base);
    buf.insert(buf.end(), p, p + iov[i].iov_len);
  }
  const size_t total = buf.size();
  if (json_) {
    if (!translate_to_json(buf)) return false;
  } else if (!transport_->queue(false, buf)) {
    fail_transport();
    return false;
  }
  lanes.consumed(total, c_->loop_->now_ms(), c_->written_hook());
  return true;
}

bool WsConnection::translate_to_json(std::span<const uint8_t> bytes) {
  std::string text;
  while (!bytes.empty()) {
    codec::InboundMessage m;
    const codec::DecodeResult r = json_out_->read(bytes, 0, m);
    bytes = bytes.subspan(r.consumed);
    if (r.status == codec::Status::kNeedMore) break;
    if (r.status != codec::Status::kOk || !codec::ok(message_to_json(m.type, m.body, text)) ||
        !transport_->queue(true, {reinterpret_cast<const uint8_t*>(text.data()), text.size()})) {
      fail_transport();
      return false;
    }
  }
  return true;
}

void WsConnection::flush() {
  if (phase_ == Phase::kHttp) {
    c_->lanes_.clear();  // nothing Herald-level can be said before the upgrade
    write_http();
    return;
  }
  if (phase_ != Phase::kOpen) {
    c_->lanes_.clear();
    return;
  }
  if (http_out_off_ < http_out_.size()) {
    write_http();
    if (http_out_off_ < http_out_.size()) return;
  }
  const size_t batch = c_->loop_->context().output_limits.batch_bytes;
  for (;;) {
    if (!transport_->send()) {
      fail_transport();
      return;
    }
    if (transport_->want_write() || c_->lanes_.empty() || transport_->close_queued()) break;
    if (c_->tls_ && evbuffer_get_length(bufferevent_get_output(c_->bev_)) >= batch) break;
    if (!fill_from_lanes() || phase_ != Phase::kOpen) break;
  }
  if (phase_ != Phase::kOpen) return;
  // wslay sends control frames ahead of queued data messages, so the close is
  // queued only once the last data message (e.g. the Error) was written.
  if (c_->closing_ && c_->lanes_.empty() && !transport_->close_queued() && !transport_->want_write()) {
    const codec::Status fatal = c_->session_.fatal();
    transport_->queue_close(ws_close_code_for(fatal), codec::ok(fatal) ? "" : std::string(codec::to_string(fatal)));
    if (!transport_->send()) fail_transport();
  }
}

void WsConnection::close_with(uint16_t code, const char* reason) {
  c_->lanes_.discard_queued();
  transport_->queue_close(code, reason);
  c_->session_.on_closed();
  c_->start_closing(CloseReason::kProtocolError);
}

void WsConnection::fail_transport() {
  phase_ = Phase::kDead;
  c_->lanes_.clear();
  c_->session_.on_closed();
  c_->start_closing(CloseReason::kIoError);
}

}  // namespace herald::server
