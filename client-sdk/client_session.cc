// ClientSession: the client side of docs/protocol.md §10 as a sans-IO state machine.
#include "client-sdk/client_session.h"

#include <algorithm>

#include "codec/frame_encoder.h"
#include "codec/message.h"

namespace herald::client {

using codec::FrameType;
using codec::Status;

namespace {

constexpr size_t kMaxFatalText = 256;

// Channel names as the server accepts them (protocol §10.5: 1..255 bytes of
// A-Z a-z 0-9 _ . : @ / -).
bool valid_channel(std::string_view c) noexcept {
  if (c.empty() || c.size() > 255) return false;
  for (const char ch : c) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
                    ch == '.' || ch == ':' || ch == '@' || ch == '/' || ch == '-';
    if (!ok) return false;
  }
  return true;
}

// Per thread, shared by every session the thread drives: a parsed Publication (its
// strings keep their capacity) and the serialization buffer. Nothing of either outlives
// the session call that fills it.
v1::Publication& thread_publication() {
  thread_local v1::Publication p;
  return p;
}
std::vector<uint8_t>& thread_scratch() {
  thread_local std::vector<uint8_t> v;
  return v;
}

uint64_t add_sat(uint64_t a, uint64_t b) noexcept { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

// A server-sent code as a Status. §9.2: an unknown code (0 and 1 included) is a fatal,
// non-temporary error of unknown kind; it is reported as `fallback`.
Status peer_code(uint32_t code, Status fallback) noexcept {
  if (code <= 1 || !codec::is_known_status(code)) return fallback;
  return static_cast<Status>(code);
}

}  // namespace

ClientSession::ClientSession(SessionOptions options, ClientSessionHost* host, codec::CodecContext* ctx) noexcept
    : options_(std::move(options)), host_(host), ctx_(ctx) {
  if (ctx_ == nullptr) options_.compression = false;
}

v1::Hello ClientSession::make_hello() const {
  v1::Hello h;
  h.add_versions(codec::kVersion1);
  if (options_.compression) h.add_compression(v1::COMPRESSION_ZSTD);
  h.set_max_frame_size(options_.max_frame_size);
  h.set_max_message_size(options_.max_message_size);
  h.set_heartbeat_ms(options_.heartbeat_ms);
  h.set_checksum(options_.checksum);
  h.set_client_name(options_.client_name);
  h.set_device_id(options_.device_id);
  h.set_resume_session_id(session_id_);
  return h;
}

// ---- connection lifecycle ----------------------------------------------------------------

void ClientSession::connection_opened(uint64_t now_ms) noexcept {
  reader_ = codec::MessageReader(codec::handshake_reader_limits(), ctx_);
  params_ = codec::ConnectionParams{};
  state_ = State::kAwaitWelcome;
  fatal_ = Status::kOk;
  fatal_text_.clear();
  send_sequence_ = 0;
  go_away_ = false;
  go_away_after_ms_ = 0;
  refresh_at_ms_ = UINT64_MAX;
  last_rx_ms_ = now_ms;
  last_ping_ms_ = now_ms;
  dead_after_ms_ = 0;
  handshake_deadline_ms_ = add_sat(now_ms, options_.handshake_timeout_ms);
  for (Sub& s : subs_) {
    s.request_id = 0;
    s.phase = Sub::Phase::kIdle;
    s.acked = 0;
    s.gap_since_ms = UINT64_MAX;
  }
  send(make_hello(), FrameType::kHello);
}

bool ClientSession::valid_channel_name(std::string_view channel) noexcept { return valid_channel(channel); }

void ClientSession::connection_closed() noexcept {
  // Every closed or failed connection counts as an attempt; READY resets the count, so
  // the first reconnect after a good connection waits the initial delay.
  ++attempts_;
  state_ = State::kDisconnected;
  handshake_deadline_ms_ = UINT64_MAX;
  refresh_at_ms_ = UINT64_MAX;
  for (Sub& s : subs_) {
    s.request_id = 0;
    s.phase = Sub::Phase::kIdle;
  }
}

Status ClientSession::on_eof() noexcept {
  if (state_ == State::kDisconnected) return Status::kOk;
  const Status s = reader_.finish();
  if (state_ != State::kClosing) state_ = State::kClosing;
  if (codec::ok(fatal_)) {
    fatal_ = codec::ok(s) ? Status::kOk : s;
    if (!codec::ok(s)) fatal_text_ = "server closed the connection inside a frame";
  }
  return s;
}

void ClientSession::close() noexcept {
  if (state_ == State::kDisconnected) return;
  state_ = State::kClosing;
}

bool ClientSession::should_reconnect(Status s, bool token_can_change) noexcept {
  switch (s) {
    case Status::kAuthFailed:
    case Status::kTokenExpired:
      return token_can_change;  // a token source may hand out a good one next time
    case Status::kOk:
    case Status::kTruncatedFrame:  // the server went away mid-frame: a lost connection
      return true;
    default:
      // §9.2: reconnect only after a temporary code; report the others.
      return codec::is_temporary(s);
  }
}

uint64_t ClientSession::reconnect_delay_ms(uint32_t initial_ms, uint32_t max_ms, uint32_t random) const noexcept {
  if (go_away_) {
    const uint64_t spread = std::max<uint64_t>(go_away_after_ms_, 1000);
    return uint64_t{go_away_after_ms_} + random % (spread + 1);
  }
  if (initial_ms == 0) initial_ms = 1;
  max_ms = std::max(max_ms, initial_ms);
  uint64_t base = initial_ms;
  for (uint32_t i = 1; i < attempts_ && base < max_ms; ++i) base *= 2;
  base = std::min<uint64_t>(base, max_ms);
  const uint64_t half = base / 2;
  return half + random % (base - half + 1);
}

// ---- input -------------------------------------------------------------------------------

Status ClientSession::on_bytes(std::span<const uint8_t> bytes, uint64_t now_ms, int64_t unix_ms) noexcept {
  if (state_ == State::kDisconnected || state_ == State::kClosing) return fatal_;
  if (!bytes.empty()) last_rx_ms_ = now_ms;
  while (!bytes.empty()) {
    codec::InboundMessage m;
    const codec::DecodeResult r = reader_.read(bytes, now_ms, m);
    bytes = bytes.subspan(r.consumed);
    if (r.status == Status::kNeedMore) break;
    if (!codec::ok(r.status)) {
      fail(r.status, codec::describe(r.status), true);
      break;
    }
    if (!codec::ok(handle(m, now_ms, unix_ms))) break;
  }
  // One Ack per channel per batch of input, not one per publication.
  if (state_ == State::kReady) flush_acks();
  return fatal_;
}

template <class M>
bool ClientSession::parse(const codec::InboundMessage& m, M& out) noexcept {
  const Status s = codec::parse_message(m.type, m.body, reader_.limits().max_message_size, out);
  if (codec::ok(s)) return true;
  fail(s, std::string("malformed ") + std::string(codec::to_string(m.type)) + " from the server", true);
  return false;
}

Status ClientSession::handle(const codec::InboundMessage& m, uint64_t now_ms, int64_t unix_ms) noexcept {
  // §10.2, client side: what the server may send in each state.
  if (m.type == FrameType::kError) return on_error(m);
  switch (state_) {
    case State::kAwaitWelcome:
      if (m.type == FrameType::kWelcome) return on_welcome(m, now_ms);
      return fail(Status::kUnexpectedFrame, "expected Welcome", true);
    case State::kAwaitAuthOk:
    case State::kReady:
      break;
    default:
      return fatal_;
  }
  switch (m.type) {
    case FrameType::kPing: {
      v1::Ping ping;
      if (!parse(m, ping)) return fatal_;
      v1::Pong pong;
      pong.set_nonce(ping.nonce());
      send(pong, FrameType::kPong);
      return fatal_;
    }
    case FrameType::kPong: {
      v1::Pong pong;
      if (!parse(m, pong)) return fatal_;
      host_->on_pong(pong.nonce());
      return fatal_;
    }
    case FrameType::kGoAway:
      return on_go_away(m);
    case FrameType::kAuthOk:
      return on_auth_ok(m, now_ms, unix_ms);
    default:
      break;
  }
  if (state_ != State::kReady) {
    return fail(Status::kUnexpectedFrame, std::string(codec::to_string(m.type)) + " before AuthOk", true);
  }
  switch (m.type) {
    case FrameType::kSubscribeOk:
      return on_subscribe_ok(m, now_ms);
    case FrameType::kUnsubscribeOk:
      return on_unsubscribe_ok(m);
    case FrameType::kPublication:
      return on_publication(m, now_ms);
    case FrameType::kPublishOk: {
      // This client never publishes; a PublishOk answers nothing but is harmless.
      v1::PublishOk ok;
      parse(m, ok);
      return fatal_;
    }
    case FrameType::kDismiss: {
      v1::Dismiss d;
      if (!parse(m, d)) return fatal_;
      if (find(d.channel()) != nullptr) host_->on_dismiss(d.channel(), d.offset(), d.message_id());
      return fatal_;
    }
    default:
      return fail(Status::kUnexpectedFrame,
                  std::string(codec::to_string(m.type)) + " is never sent by a server", true);
  }
}

Status ClientSession::on_welcome(const codec::InboundMessage& m, uint64_t now_ms) noexcept {
  v1::Welcome w;
  if (!parse(m, w)) return fatal_;
  const Status s = codec::accept_welcome(make_hello(), w, params_);
  if (!codec::ok(s)) return fail(s, "Welcome does not answer our Hello", true);
  reader_.set_limits(params_.reader_limits());
  session_id_ = w.session_id();
  state_ = State::kAwaitAuthOk;
  start_heartbeat(now_ms);
  v1::Auth auth;
  auth.set_token(host_->token());
  send(auth, FrameType::kAuth);
  return fatal_;
}

void ClientSession::start_heartbeat(uint64_t now_ms) noexcept {
  dead_after_ms_ = options_.heartbeat_timeout_ms != 0
                       ? options_.heartbeat_timeout_ms
                       : static_cast<uint32_t>(std::min<uint64_t>(
                             uint64_t{params_.heartbeat_ms} + params_.pong_timeout_ms, UINT32_MAX));
  if (dead_after_ms_ < 2) dead_after_ms_ = 2;
  last_rx_ms_ = now_ms;
  last_ping_ms_ = now_ms;
}

Status ClientSession::on_auth_ok(const codec::InboundMessage& m, uint64_t now_ms, int64_t unix_ms) noexcept {
  v1::AuthOk ok;
  if (!parse(m, ok)) return fatal_;
  // Refresh at refresh_percent of the remaining lifetime (§10.4).
  refresh_at_ms_ = UINT64_MAX;
  if (ok.expires_at_ms() > 0) {
    const int64_t left = ok.expires_at_ms() - unix_ms;
    const uint64_t wait = left <= 0 ? 0 : static_cast<uint64_t>(left) * std::min(options_.refresh_percent, 100u) / 100;
    refresh_at_ms_ = add_sat(now_ms, wait);
  }
  if (state_ == State::kReady) return fatal_;  // the answer to a Refresh
  state_ = State::kReady;
  handshake_deadline_ms_ = UINT64_MAX;
  attempts_ = 0;
  reconnect_to_.clear();
  user_id_ = ok.user_id();
  host_->on_ready(user_id_, session_id_);
  if (state_ != State::kReady) return fatal_;
  for (Sub& s : subs_) {
    if (s.phase == Sub::Phase::kIdle) send_subscribe(s);
  }
  return fatal_;
}

Status ClientSession::on_subscribe_ok(const codec::InboundMessage& m, uint64_t now_ms) noexcept {
  v1::SubscribeOk ok;
  if (!parse(m, ok)) return fatal_;
  Sub* s = find_request(ok.request_id());
  if (s == nullptr || ok.channel() != s->channel) return fatal_;  // answers a request we dropped
  // An empty epoch: the channel has no history yet; its first Publication names the epoch.
  s->request_id = 0;
  s->phase = Sub::Phase::kActive;
  s->gap_since_ms = UINT64_MAX;
  const bool resumed = s->resuming;
  s->resuming = false;
  if (resumed && ok.recovered() && s->epoch.empty()) {
    s->epoch = ok.epoch();  // we had seen nothing of a channel without history; it now has one
  }
  s->known = true;
  s->durable = ok.durable();
  if (!(resumed && ok.recovered() && ok.epoch() == s->epoch)) {
    // A fresh start, or history lost: continue after the channel's latest offset.
    s->epoch = ok.epoch();
    s->delivered.reset(ok.offset());
    s->processed.reset(ok.offset());
    s->acked = 0;
  } else if (s->delivered.has_gap()) {
    s->gap_since_ms = now_ms;
  }
  SubscribedInfo info;
  info.channel = s->channel;
  info.epoch = s->epoch;
  info.offset = ok.offset();
  info.resumed = resumed;
  info.recovered = resumed && ok.recovered();
  info.durable = ok.durable();
  const std::string channel = s->channel;  // the host may unsubscribe (not re-entrant, but be safe)
  host_->on_subscribed(info);
  if (Sub* again = find(channel); again != nullptr && !(resumed && ok.recovered())) {
    host_->on_position(again->channel, again->epoch, again->processed.contiguous());
  }
  return fatal_;
}

Status ClientSession::on_unsubscribe_ok(const codec::InboundMessage& m) noexcept {
  v1::UnsubscribeOk ok;
  if (!parse(m, ok)) return fatal_;
  Sub* s = find_request(ok.request_id());
  if (s == nullptr || s->phase != Sub::Phase::kRefilling) return fatal_;
  // Filling a gap: subscribe again with resume from the contiguous position.
  s->phase = Sub::Phase::kIdle;
  s->request_id = 0;
  send_subscribe(*s);
  return fatal_;
}

Status ClientSession::on_publication(const codec::InboundMessage& m, uint64_t now_ms) noexcept {
  v1::Publication& publication = thread_publication();
  if (!parse(m, publication)) return fatal_;
  const v1::Publication& p = publication;
  Sub* s = find(p.channel());
  // §10.5: publications of channels not (yet) subscribed are ignored.
  if (s == nullptr || (s->phase != Sub::Phase::kActive && s->phase != Sub::Phase::kRefilling)) return fatal_;
  if (p.epoch().empty()) return fail(Status::kInvalidField, "Publication without an epoch", true);
  if (s->epoch.empty()) {
    s->epoch = p.epoch();  // the channel had no history at subscribe time
  } else if (p.epoch() != s->epoch) {
    // The channel's history was reset while subscribed: offsets start again. Reported
    // like a resume that could not recover.
    s->epoch = p.epoch();
    const uint64_t base = p.offset() == 0 ? 0 : p.offset() - 1;
    s->delivered.reset(base);
    s->processed.reset(base);
    s->acked = 0;
    SubscribedInfo info;
    info.channel = s->channel;
    info.epoch = s->epoch;
    info.offset = base;
    info.resumed = true;
    info.recovered = false;
    const std::string channel = s->channel;
    host_->on_subscribed(info);
    s = find(channel);
    if (s == nullptr) return fatal_;
  }
  if (!s->delivered.add(p.offset())) {
    ++duplicates_;
    return fatal_;
  }
  if (s->delivered.has_gap()) {
    if (s->gap_since_ms == UINT64_MAX) s->gap_since_ms = now_ms;
  } else {
    s->gap_since_ms = UINT64_MAX;
  }
  PublicationView v;
  v.channel = p.channel();
  v.epoch = p.epoch();
  v.message_id = p.message_id();
  v.type = p.type();
  v.content_type = p.content_type();
  v.collapse_key = p.collapse_key();
  v.payload = p.payload();
  v.offset = p.offset();
  v.priority = p.priority();
  v.created_at_ms = p.created_at_ms();
  v.ttl_s = p.ttl_s();
  v.dismiss_on_read = p.dismiss_on_read();
  const uint64_t offset = p.offset();
  host_->on_publication(v);
  if (!options_.manual_ack) {
    // Looked up again: the handler may not change the table, but a host could.
    if (Sub* again = find(publication.channel()); again != nullptr) processed(*again, offset);
  }
  return fatal_;
}

Status ClientSession::on_error(const codec::InboundMessage& m) noexcept {
  v1::Error e;
  if (!parse(m, e)) return fatal_;
  if (e.request_id() != 0) {
    Sub* s = find_request(e.request_id());
    if (s == nullptr) return fatal_;
    const Status code = peer_code(e.code(), Status::kInvalidField);
    const std::string channel = s->channel;
    if (codec::is_temporary(code)) {
      s->phase = Sub::Phase::kIdle;  // retried on the next connection
      s->request_id = 0;
    } else {
      subs_.erase(subs_.begin() + (s - subs_.data()));
    }
    host_->on_subscribe_failed(channel, code, e.text());
    return fatal_;
  }
  // Connection-level: the server closes after it; never answered with an Error (§9.2).
  const Status code = peer_code(e.code(), Status::kInvalidField);
  if (code == Status::kInvalidField && e.code() != static_cast<uint32_t>(Status::kInvalidField)) {
    return fail(code, "server error with unknown code " + std::to_string(e.code()) + ": " + e.text(), false);
  }
  return fail(code, e.text(), false);
}

Status ClientSession::on_go_away(const codec::InboundMessage& m) noexcept {
  v1::GoAway g;
  if (!parse(m, g)) return fatal_;
  go_away_ = true;
  go_away_after_ms_ = g.reconnect_after_ms();
  reconnect_to_ = g.reconnect_to();
  return fail(peer_code(g.code(), Status::kGoingAway), g.reason().empty() ? "server going away" : g.reason(), false);
}

// ---- timers ------------------------------------------------------------------------------

Status ClientSession::on_timer(uint64_t now_ms, int64_t unix_ms) noexcept {
  (void)unix_ms;
  if (state_ == State::kDisconnected || state_ == State::kClosing) return fatal_;
  if (state_ != State::kReady && now_ms >= handshake_deadline_ms_) {
    return fail(Status::kHandshakeTimeout, "Welcome and AuthOk not received in time", false);
  }
  const Status r = reader_.expire(now_ms);
  if (!codec::ok(r)) return fail(r, codec::describe(r), true);
  if (dead_after_ms_ != 0) {
    if (now_ms - last_rx_ms_ >= dead_after_ms_) {
      return fail(Status::kHeartbeatTimeout, "no data from the server in time", false);
    }
    // Idle for half the timeout: ask the server for a sign of life.
    const uint64_t half = dead_after_ms_ / 2;
    if (now_ms - last_rx_ms_ >= half && now_ms - last_ping_ms_ >= half) {
      last_ping_ms_ = now_ms;
      ping();
    }
  }
  if (state_ == State::kReady && now_ms >= refresh_at_ms_) {
    refresh_at_ms_ = UINT64_MAX;
    v1::Refresh refresh;
    refresh.set_token(host_->token());
    if (!refresh.token().empty()) send(refresh, FrameType::kRefresh);
  }
  if (state_ == State::kReady && options_.gap_timeout_ms != 0) {
    for (Sub& s : subs_) {
      if (s.phase == Sub::Phase::kActive && s.gap_since_ms != UINT64_MAX &&
          now_ms - s.gap_since_ms >= options_.gap_timeout_ms) {
        // §10.6: a gap that stays open is filled by subscribing again with resume.
        ++gap_resubscribes_;
        s.gap_since_ms = UINT64_MAX;
        s.phase = Sub::Phase::kRefilling;
        s.request_id = ++next_request_id_;
        v1::Unsubscribe u;
        u.set_request_id(s.request_id);
        u.set_channel(s.channel);
        send(u, FrameType::kUnsubscribe);
      }
    }
  }
  return fatal_;
}

uint64_t ClientSession::next_deadline_ms() const noexcept {
  if (state_ == State::kDisconnected || state_ == State::kClosing) return UINT64_MAX;
  uint64_t d = reader_.next_deadline_ms();
  if (state_ != State::kReady) d = std::min(d, handshake_deadline_ms_);
  if (dead_after_ms_ != 0) {
    const uint64_t half = dead_after_ms_ / 2;
    d = std::min(d, add_sat(last_rx_ms_, dead_after_ms_));
    d = std::min(d, std::max(add_sat(last_rx_ms_, half), add_sat(last_ping_ms_, half)));
  }
  if (state_ == State::kReady) {
    d = std::min(d, refresh_at_ms_);
    if (options_.gap_timeout_ms != 0) {
      for (const Sub& s : subs_) {
        if (s.phase == Sub::Phase::kActive && s.gap_since_ms != UINT64_MAX) {
          d = std::min(d, add_sat(s.gap_since_ms, options_.gap_timeout_ms));
        }
      }
    }
  }
  return d;
}

// ---- app commands ------------------------------------------------------------------------

bool ClientSession::subscribe(std::string_view channel, std::string_view epoch, uint64_t offset) noexcept {
  if (!valid_channel(channel)) return false;
  if (find(channel) != nullptr) return true;
  Sub s;
  s.channel = channel;
  if (!epoch.empty()) {
    s.known = true;
    s.epoch = epoch;
    s.delivered.reset(offset);
    s.processed.reset(offset);
  }
  subs_.push_back(std::move(s));
  if (state_ == State::kReady) send_subscribe(subs_.back());
  return true;
}

void ClientSession::unsubscribe(std::string_view channel) noexcept {
  Sub* s = find(channel);
  if (s == nullptr) return;
  if (state_ == State::kReady && s->phase != Sub::Phase::kIdle) {
    v1::Unsubscribe u;
    u.set_request_id(++next_request_id_);
    u.set_channel(s->channel);
    send(u, FrameType::kUnsubscribe);
  }
  subs_.erase(subs_.begin() + (s - subs_.data()));
}

bool ClientSession::ack(std::string_view channel, std::string_view epoch, uint64_t offset) noexcept {
  Sub* s = find(channel);
  if (s == nullptr || s->epoch != epoch || !s->delivered.contains(offset)) return false;
  processed(*s, offset);
  if (state_ == State::kReady) flush_acks();
  return true;
}

uint64_t ClientSession::ping() noexcept {
  if (state_ != State::kReady && state_ != State::kAwaitAuthOk) return 0;
  v1::Ping p;
  p.set_nonce(++ping_nonce_);
  send(p, FrameType::kPing);
  return ping_nonce_;
}

bool ClientSession::position(std::string_view channel, std::string& epoch, uint64_t& offset) const {
  for (const Sub& s : subs_) {
    if (s.channel == channel) {
      if (!s.known) return false;
      epoch = s.epoch;
      offset = s.delivered.contiguous();
      return true;
    }
  }
  return false;
}

// ---- helpers -----------------------------------------------------------------------------

ClientSession::Sub* ClientSession::find(std::string_view channel) noexcept {
  for (Sub& s : subs_) {
    if (s.channel == channel) return &s;
  }
  return nullptr;
}

ClientSession::Sub* ClientSession::find_request(uint64_t request_id) noexcept {
  if (request_id == 0) return nullptr;
  for (Sub& s : subs_) {
    if (s.request_id == request_id) return &s;
  }
  return nullptr;
}

void ClientSession::send_subscribe(Sub& s) noexcept {
  v1::Subscribe req;
  s.request_id = ++next_request_id_;
  s.phase = Sub::Phase::kSubscribing;
  s.resuming = s.known;
  req.set_request_id(s.request_id);
  req.set_channel(s.channel);
  if (s.resuming) {
    req.set_resume(true);
    req.set_epoch(s.epoch);
    req.set_offset(s.delivered.contiguous());
  }
  send(req, FrameType::kSubscribe);
}

void ClientSession::processed(Sub& s, uint64_t offset) noexcept {
  const uint64_t before = s.processed.contiguous();
  s.processed.add(offset);
  if (s.processed.contiguous() != before) {
    acks_dirty_ = true;
    host_->on_position(s.channel, s.epoch, s.processed.contiguous());
  }
}

void ClientSession::flush_acks() noexcept {
  if (!acks_dirty_) return;
  acks_dirty_ = false;
  for (Sub& s : subs_) {
    if (s.phase != Sub::Phase::kActive && s.phase != Sub::Phase::kRefilling) continue;
    // §10.6: the server keeps no per-device state for a live channel, so its acks would
    // only cost a frame each way through both event loops.
    if (!s.durable) continue;
    const uint64_t c = s.processed.contiguous();
    if (c <= s.acked) continue;
    s.acked = c;
    v1::Ack a;
    a.set_channel(s.channel);
    a.set_offset(c);
    send(a, FrameType::kAck);
  }
}

bool ClientSession::send(const google::protobuf::Message& message, FrameType type) noexcept {
  std::vector<uint8_t>& scratch = thread_scratch();
  if (!codec::ok(codec::serialize_message(message, SIZE_MAX, scratch))) return false;
  codec::EncodeOptions o;
  if (state_ == State::kAwaitWelcome || type == FrameType::kHello) {
    // §10.1: before Welcome, version 1, no compression, 16 KiB frames.
    o.version = codec::kVersion1;
    o.checksum = false;
    o.compress = false;
    o.max_frame_size = codec::kHandshakeMaxFrameSize;
  } else {
    o = params_.encode_options();
    o.compress = false;  // client frames are small; the server may still compress towards us
  }
  codec::EncodedMessage frame;
  if (!codec::ok(codec::encode_message(type, scratch, o, nullptr, frame))) return false;
  // Header and body straight into the transport: no per-frame buffer kept.
  for (size_t i = 0; i < frame.frame_count(); ++i) {
    uint8_t header[codec::kHeaderSize];
    frame.write_header(i, send_sequence_++, header);
    host_->write(header);
    host_->write(frame.body(i));
  }
  return true;
}

Status ClientSession::fail(Status code, std::string_view text, bool tell_server) noexcept {
  if (!codec::ok(fatal_)) return fatal_;
  if (codec::ok(code) || code == Status::kNeedMore) code = Status::kInternal;
  fatal_ = code;
  fatal_text_.assign(text.substr(0, kMaxFatalText));
  if (tell_server && state_ != State::kClosing && state_ != State::kDisconnected) {
    // §9.2: a connection-level Error, then close. Texts of our own are ASCII.
    v1::Error e;
    e.set_code(static_cast<uint32_t>(code));
    e.set_text(std::string(codec::describe(code)));
    e.set_temporary(codec::is_temporary(code));
    send(e, FrameType::kError);
  }
  state_ = State::kClosing;
  return fatal_;
}

}  // namespace herald::client
