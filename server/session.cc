// Session: the per-connection protocol state machine of docs/protocol.md §10.
#include "server/session.h"

#include <algorithm>
#include <limits>

#include "codec/message.h"

namespace herald::server {

using codec::FrameType;
using codec::Status;

namespace {

constexpr size_t kMaxErrorText = 256;  // §9.2: Error.text SHOULD be at most 256 bytes
constexpr size_t kMaxDeviceId = 128;

// Length of the valid UTF-8 sequence (RFC 3629) starting at s[i], or 0.
size_t utf8_length(std::string_view s, size_t i) noexcept {
  const auto at = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t b = at(i);
  if (b < 0x80) return 1;
  size_t n;
  uint8_t lo = 0x80, hi = 0xBF;  // bounds of the second byte
  if (b >= 0xC2 && b <= 0xDF) {
    n = 2;
  } else if (b >= 0xE0 && b <= 0xEF) {
    n = 3;
    if (b == 0xE0) lo = 0xA0;  // overlong
    if (b == 0xED) hi = 0x9F;  // surrogates
  } else if (b >= 0xF0 && b <= 0xF4) {
    n = 4;
    if (b == 0xF0) lo = 0x90;  // overlong
    if (b == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (at(i + 1) < lo || at(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if ((at(i + k) & 0xC0) != 0x80) return 0;
  }
  return n;
}

// At most `limit` bytes of valid UTF-8: invalid bytes become '?', a sequence that
// would cross the limit is dropped. Protobuf refuses to parse invalid UTF-8 in a
// string field, so texts of our own frames must never carry any.
std::string clean_text(std::string_view in, size_t limit) {
  std::string out;
  out.reserve(std::min(in.size(), limit));
  for (size_t i = 0; i < in.size();) {
    size_t n = utf8_length(in, i);
    const bool valid = n != 0;
    if (!valid) n = 1;
    if (out.size() + n > limit) break;
    if (valid) {
      out.append(in.substr(i, n));
    } else {
      out.push_back('?');
    }
    i += n;
  }
  return out;
}

std::string cat(std::string_view a, std::string_view b = {}, std::string_view c = {}) {
  std::string s;
  s.reserve(a.size() + b.size() + c.size());
  s.append(a).append(b).append(c);
  return s;
}

uint64_t add_sat(uint64_t a, uint64_t b) noexcept { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

int64_t add_sat(int64_t a, int64_t b) noexcept {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
  return r;
}

int64_t seconds_to_ms(int64_t s) noexcept {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max() / 1000;
  if (s > kMax) return std::numeric_limits<int64_t>::max();
  if (s < -kMax) return std::numeric_limits<int64_t>::min();
  return s * 1000;
}

// The Error code for an Error frame the client sent: its own code when this build
// knows it (0 and 1 are never sent), else kInvalidField (§9.2: unknown kind, fatal).
Status peer_code(uint32_t code) noexcept {
  if (code >= 100 && codec::is_known_status(code)) return static_cast<Status>(code);
  return Status::kInvalidField;
}

// Keeps what later requests use (user, expiry, grants, publish right) of a verified token.
void keep_claims(SessionClaims& kept, TokenClaims&& claims) {
  kept.user_id = std::move(claims.user_id);
  kept.expires_at_s = claims.expires_at_s;
  kept.channels.reset();
  kept.channel_count = 0;
  if (!claims.channels.empty()) {
    kept.channels = std::make_unique<std::string[]>(claims.channels.size());
    for (size_t i = 0; i < claims.channels.size(); ++i) kept.channels[i] = std::move(claims.channels[i]);
    kept.channel_count = static_cast<uint32_t>(claims.channels.size());
  }
  kept.publish = claims.publish;
}

}  // namespace

Session::Session(const SessionConfig* config, const JwtVerifier* verifier, SessionHost* host,
                 codec::CodecContext* ctx, uint64_t accepted_ms) noexcept
    : config_(config),
      verifier_(verifier),
      host_(host),
      reader_(codec::handshake_reader_limits(), ctx),
      deadline_ms_(add_sat(accepted_ms, uint64_t{config->handshake_timeout_ms})) {}

// ---- input ----------------------------------------------------------------------------

Status Session::on_bytes(std::span<const uint8_t> bytes, uint64_t now_ms, int64_t unix_ms) noexcept {
  if (stopped()) return fatal_;
  // A token past its grace must not be used for one more command, even if the
  // caller's timer is late.
  if (state_ == State::kReady) {
    const int64_t close_unix_ms = token_close_unix_ms();
    if (close_unix_ms != 0 && unix_ms >= close_unix_ms) {
      return fail(Status::kTokenExpired, "token expired and was not refreshed");
    }
  }
  while (!bytes.empty()) {
    codec::InboundMessage m;
    const codec::DecodeResult r = reader_.read(bytes, now_ms, m);
    bytes = bytes.subspan(r.consumed);
    if (r.status == Status::kNeedMore) break;
    if (!codec::ok(r.status)) {
      return fail(r.status, cat(codec::describe(r.status), " at byte ", std::to_string(reader_.error_offset())));
    }
    handle(m, now_ms, unix_ms);
    // The host may have closed the session from inside a callback.
    if (stopped()) return fatal_;
  }
  return fatal_;
}

Status Session::on_eof(uint64_t /*now_ms*/) noexcept {
  if (stopped()) return fatal_;
  const Status s = reader_.finish();
  state_ = State::kClosed;  // the peer is gone: nothing more is sent
  if (!codec::ok(s)) {
    fatal_ = s;
    set_close_reason(cat(codec::describe(s), " (connection closed by the client)"));
  }
  return fatal_;
}

void Session::on_closed() noexcept { state_ = State::kClosed; }

template <class M>
bool Session::parse(const codec::InboundMessage& m, M& out) noexcept {
  const Status s = codec::parse_message(m.type, m.body, reader_.max_message_size(), out);
  if (codec::ok(s)) return true;
  fail(s, cat(codec::describe(s), ": ", codec::to_string(m.type)));
  return false;
}

Status Session::handle(const codec::InboundMessage& m, uint64_t now_ms, int64_t unix_ms) noexcept {
  if (m.type == FrameType::kError) return on_peer_error(m);  // any state (§10.2)
  if (state_ == State::kAwaitHello) {
    if (m.type != FrameType::kHello) {
      return fail(Status::kUnexpectedFrame, cat("expected Hello, got ", codec::to_string(m.type)));
    }
    return on_hello(m, now_ms);
  }
  switch (m.type) {
    case FrameType::kHello:
      return fail(Status::kUnexpectedFrame, "second Hello");
    case FrameType::kAuth:
      if (state_ != State::kAwaitAuth) return fail(Status::kUnexpectedFrame, "second Auth");
      return on_auth(m, now_ms, unix_ms);
    case FrameType::kPing:
      return on_ping(m);
    case FrameType::kPong:
      return on_pong(m);
    case FrameType::kRefresh:
    case FrameType::kSubscribe:
    case FrameType::kUnsubscribe:
    case FrameType::kPublish:
    case FrameType::kAck:
      if (state_ != State::kReady) return fail(Status::kAuthRequired, cat(codec::to_string(m.type), " before AuthOk"));
      switch (m.type) {
        case FrameType::kRefresh:
          return on_refresh(m, now_ms, unix_ms);
        case FrameType::kSubscribe:
          return on_subscribe(m);
        case FrameType::kUnsubscribe:
          return on_unsubscribe(m);
        case FrameType::kPublish:
          return on_publish(m);
        default:
          return on_ack(m);
      }
    default:
      // Welcome, AuthOk, SubscribeOk, Publication, GoAway, ...: server frames.
      return fail(Status::kUnexpectedFrame, cat(codec::to_string(m.type), " may only be sent by the server"));
  }
}

Status Session::on_hello(const codec::InboundMessage& m, uint64_t now_ms) noexcept {
  v1::Hello hello;
  if (!parse(m, hello)) return fatal_;
  v1::Welcome welcome;
  const Status s = codec::negotiate_hello(hello, config_->negotiation, welcome, params_);
  if (!codec::ok(s)) {
    params_ = {};
    return fail(s, s == Status::kNoCommonVersion ? "no common protocol version" : "invalid size limits in Hello");
  }
  welcome.set_session_id(host_->session_id());
  device_id_ = clean_text(hello.device_id(), kMaxDeviceId);

  // Welcome always carries header version 1 (§12), is never compressed, and is the
  // first frame with K when checksums were negotiated (§5.4). It is tiny: the 16 KiB
  // frame limit before Welcome holds.
  codec::EncodeOptions o = params_.encode_options();
  o.version = codec::kVersion1;
  o.compress = false;
  o.max_frame_size = std::min<uint32_t>(o.max_frame_size, codec::kHandshakeMaxFrameSize);
  thread_local std::vector<uint8_t> body;
  codec::EncodedMessage frame;
  if (!codec::ok(codec::serialize_message(welcome, SIZE_MAX, body)) ||
      !codec::ok(codec::encode_message(FrameType::kWelcome, body, o, nullptr, frame))) {
    params_ = {};
    return fail(Status::kInternal, "cannot encode Welcome");
  }
  // Switch before handing the frame over: whatever follows Welcome (including a close
  // the host starts from inside send) uses the negotiated parameters.
  welcome_sent_ = true;
  state_ = State::kAwaitAuth;
  reader_.set_limits(params_.reader_limits());
  next_ping_ms_ = add_sat(now_ms, uint64_t{params_.heartbeat_ms});
  host_->send(std::move(frame));
  return fatal_;
}

Status Session::on_auth(const codec::InboundMessage& m, uint64_t now_ms, int64_t unix_ms) noexcept {
  v1::Auth auth;
  if (!parse(m, auth)) return fatal_;
  TokenClaims claims;
  std::string reason;
  Status s = verifier_->verify(auth.token(), unix_ms / 1000, claims, &reason);
  if (!codec::ok(s)) return fail(s, reason.empty() ? codec::describe(s) : std::string_view(reason));
  s = host_->on_authenticated(claims);
  // Kept even if the host closed the session meanwhile: it counted this user.
  if (codec::ok(s)) keep_claims(claims_, std::move(claims));
  if (stopped()) return fatal_;
  if (!codec::ok(s)) return fail(s, codec::describe(s));
  authenticated_ = true;
  state_ = State::kReady;
  set_token_deadline(now_ms, unix_ms);
  v1::AuthOk ok;
  ok.set_user_id(claims_.user_id);
  ok.set_expires_at_ms(claims_.expires_at_s == 0 ? 0 : seconds_to_ms(claims_.expires_at_s));
  send(ok, FrameType::kAuthOk);
  return fatal_;
}

Status Session::on_refresh(const codec::InboundMessage& m, uint64_t now_ms, int64_t unix_ms) noexcept {
  v1::Refresh refresh;
  if (!parse(m, refresh)) return fatal_;
  TokenClaims claims;
  std::string reason;
  const Status s = verifier_->verify(refresh.token(), unix_ms / 1000, claims, &reason);
  if (!codec::ok(s)) return fail(s, cat("refresh: ", reason.empty() ? codec::describe(s) : std::string_view(reason)));
  if (claims.user_id != claims_.user_id) return fail(Status::kAuthFailed, "refresh token belongs to another user");
  // The new token's grants and publish flag apply to later requests; existing
  // subscriptions stay (the protocol has no server-side unsubscribe).
  keep_claims(claims_, std::move(claims));
  set_token_deadline(now_ms, unix_ms);
  v1::AuthOk ok;
  ok.set_user_id(claims_.user_id);
  ok.set_expires_at_ms(claims_.expires_at_s == 0 ? 0 : seconds_to_ms(claims_.expires_at_s));
  send(ok, FrameType::kAuthOk);
  return fatal_;
}

// The checks every channel request starts with: a non-zero request_id (else the
// connection fails, kInvalidField) and a valid channel name (else the request
// fails, kBadChannel). True when the request may go on.
template <class Request>
bool Session::check_request(const Request& req, std::string_view what) noexcept {
  if (req.request_id() == 0) {
    fail(Status::kInvalidField, cat(what, " with request_id 0"));
    return false;
  }
  if (!valid_channel_name(req.channel())) {
    reject(req.request_id(), Status::kBadChannel, "invalid channel name");
    return false;
  }
  return true;
}

Status Session::on_subscribe(const codec::InboundMessage& m) noexcept {
  v1::Subscribe req;
  if (!parse(m, req)) return fatal_;
  if (!check_request(req, "Subscribe")) return fatal_;
  const uint64_t rid = req.request_id();
  const std::string& channel = req.channel();
  Status s = may_subscribe(channel);
  if (!codec::ok(s)) {
    reject(rid, s, cat("not allowed to subscribe to ", channel));
    return fatal_;
  }
  if (find(channel) != nullptr) {
    reject(rid, Status::kInvalidField, cat("already subscribed to ", channel));
    return fatal_;
  }
  if (subs_.size() >= config_->max_subscriptions) {
    reject(rid, Status::kTooManySubscriptions, "subscription limit reached");
    return fatal_;
  }
  std::vector<PublicationPtr> replay;
  SessionSubscribeResult r = host_->subscribe(channel, req.resume(), req.epoch(), req.offset(), replay);
  if (stopped()) return fatal_;
  if (!codec::ok(r.status)) {
    reject(rid, r.status, codec::describe(r.status));
    return fatal_;
  }
  // Recorded before SubscribeOk goes out: live deliveries at or below r.offset are
  // duplicates of what SubscribeOk announces or of the replay.
  uint64_t last = r.offset;
  for (const PublicationPtr& p : replay) last = std::max(last, p->offset());
  subs_.push_back({channel, r.epoch, last, last});

  v1::SubscribeOk ok;
  ok.set_request_id(rid);
  ok.set_channel(channel);
  ok.set_epoch(r.epoch);
  ok.set_offset(r.offset);
  ok.set_recovered(r.recovered);
  ok.set_durable(r.durable);
  if (!send(ok, FrameType::kSubscribeOk) || stopped()) return fatal_;
  for (const PublicationPtr& p : replay) {
    if (p->body().size() > params_.send_max_message_size) {
      return fail(Status::kMessageTooLarge, cat("publication on ", channel, " is above the client's max message size"));
    }
    host_->send_publication(p);
    if (stopped()) return fatal_;
  }
  return fatal_;
}

Status Session::on_unsubscribe(const codec::InboundMessage& m) noexcept {
  v1::Unsubscribe req;
  if (!parse(m, req)) return fatal_;
  if (!check_request(req, "Unsubscribe")) return fatal_;
  const uint64_t rid = req.request_id();
  if (Subscription* sub = find(req.channel())) {
    // Swap-remove: the order of subscriptions means nothing.
    if (sub != &subs_.back()) std::swap(*sub, subs_.back());
    subs_.pop_back();
    host_->unsubscribe(req.channel());  // drops queued publications before UnsubscribeOk
    if (stopped()) return fatal_;
  }
  v1::UnsubscribeOk ok;
  ok.set_request_id(rid);
  ok.set_channel(req.channel());
  send(ok, FrameType::kUnsubscribeOk);
  return fatal_;
}

Status Session::on_publish(const codec::InboundMessage& m) noexcept {
  v1::Publish req;
  if (!parse(m, req)) return fatal_;
  if (!check_request(req, "Publish")) return fatal_;
  const uint64_t rid = req.request_id();
  const Status s = may_publish(req.channel());
  if (!codec::ok(s)) {
    reject(rid, s, cat("not allowed to publish to ", req.channel()));
    return fatal_;
  }
  SessionPublish p;
  p.request_id = rid;
  p.channel = req.channel();  // copied: PublishOk echoes it
  p.message_id = std::move(*req.mutable_message_id());
  p.type = std::move(*req.mutable_type());
  p.content_type = std::move(*req.mutable_content_type());
  p.collapse_key = std::move(*req.mutable_collapse_key());
  const int priority = req.priority();
  p.priority = priority >= 0 && priority <= 3 ? priority : 3;  // unknown enum values are P3 (§4.2)
  p.ttl_s = req.ttl_s();
  p.dismiss_on_read = req.dismiss_on_read();
  p.payload = std::move(*req.mutable_payload());
  SessionPublishResult r = host_->publish(std::move(p));
  if (stopped() || r.pending) return fatal_;
  on_publish_done(rid, req.channel(), r);
  return fatal_;
}

void Session::on_publish_done(uint64_t request_id, const std::string& channel, const SessionPublishResult& r) noexcept {
  if (stopped() || state_ != State::kReady) return;
  if (!codec::ok(r.status)) {
    reject(request_id, r.status, codec::describe(r.status));
    return;
  }
  // Per loop thread, reused: a cleared message keeps its strings' buffers, so the
  // answer to every publish does not allocate the channel and epoch again.
  thread_local v1::PublishOk ok;
  ok.Clear();
  ok.set_request_id(request_id);
  ok.set_channel(channel);
  ok.set_offset(r.offset);
  ok.set_epoch(r.epoch);
  ok.set_duplicate(r.duplicate);
  send(ok, FrameType::kPublishOk);
}

void Session::send_dismiss(const std::string& channel, uint64_t offset, const std::string& message_id) noexcept {
  if (stopped() || state_ != State::kReady) return;
  v1::Dismiss d;
  d.set_channel(channel);
  d.set_offset(offset);
  d.set_message_id(message_id);
  send(d, FrameType::kDismiss);
}

Status Session::on_ack(const codec::InboundMessage& m) noexcept {
  v1::Ack ack;
  if (!parse(m, ack)) return fatal_;
  // §10.6: acks for channels not subscribed are ignored, and so is the part above
  // the highest offset sent.
  Subscription* sub = find(ack.channel());
  if (sub == nullptr) return fatal_;
  host_->on_ack(sub->channel, sub->epoch, std::min(ack.offset(), sub->last_offset));
  return fatal_;
}

Status Session::on_ping(const codec::InboundMessage& m) noexcept {
  v1::Ping ping;
  if (!parse(m, ping)) return fatal_;
  v1::Pong pong;
  pong.set_nonce(ping.nonce());
  send(pong, FrameType::kPong);
  return fatal_;
}

Status Session::on_pong(const codec::InboundMessage& m) noexcept {
  v1::Pong pong;
  if (!parse(m, pong)) return fatal_;
  // A Pong for an older Ping, or one never sent, proves nothing: ignored.
  if (ping_outstanding_ && pong.nonce() == ping_nonce_) {
    ping_outstanding_ = false;
    pong_deadline_ms_ = UINT64_MAX;
  }
  return fatal_;
}

Status Session::on_peer_error(const codec::InboundMessage& m) noexcept {
  // §9.2: the client is closing; an Error is never answered with an Error.
  v1::Error error;
  const Status s = codec::parse_message(m.type, m.body, reader_.max_message_size(), error);
  if (codec::ok(s)) {
    fatal_ = peer_code(error.code());
    set_close_reason(clean_text(cat("client error ", std::to_string(error.code()), ": ") + error.text(), kMaxErrorText));
  } else {
    fatal_ = s;
    set_close_reason("malformed Error frame from the client");
  }
  state_ = State::kClosing;
  return fatal_;
}

// ---- authorization --------------------------------------------------------------------

const NamespacePolicy& Session::policy_of(std::string_view channel) const noexcept {
  static const NamespacePolicy kDefault;  // subscribe by grant, no publishing
  return config_->policy ? config_->policy(channel) : kDefault;
}

Status Session::may_subscribe(const std::string& channel) const noexcept {
  // "user:<id>" belongs to <id> alone, whatever the namespace rules or grants say.
  if (namespace_of(channel) == kUserNamespace) {
    return std::string_view(channel).substr(kUserNamespace.size() + 1) == claims_.user_id
               ? Status::kOk
               : Status::kPermissionDenied;
  }
  switch (policy_of(channel).subscribe) {
    case NamespacePolicy::Subscribe::kAny:
      return Status::kOk;
    case NamespacePolicy::Subscribe::kGrant:
      return token_grants(claims_.grants(), channel) ? Status::kOk : Status::kPermissionDenied;
    case NamespacePolicy::Subscribe::kNone:
      break;
  }
  return Status::kPermissionDenied;
}

Status Session::may_publish(const std::string& channel) const noexcept {
  if (!claims_.publish) return Status::kPermissionDenied;
  switch (policy_of(channel).publish) {
    case NamespacePolicy::Publish::kAny:
      return Status::kOk;
    case NamespacePolicy::Publish::kGrant:
      return token_grants(claims_.grants(), channel) ? Status::kOk : Status::kPermissionDenied;
    case NamespacePolicy::Publish::kNone:
      break;
  }
  return Status::kPermissionDenied;
}

Session::Subscription* Session::find(std::string_view channel) noexcept {
  for (Subscription& s : subs_) {
    if (s.channel == channel) return &s;
  }
  return nullptr;
}

std::vector<std::string> Session::subscriptions() const {
  std::vector<std::string> out;
  out.reserve(subs_.size());
  for (const Subscription& s : subs_) out.push_back(s.channel);
  return out;
}

// ---- delivery -------------------------------------------------------------------------

bool Session::wants(const PublicationRecord& p) noexcept {
  if (state_ != State::kReady || stopped()) return false;
  Subscription* sub = find(p.channel());
  if (sub == nullptr) return false;
  const bool same_epoch = p.epoch() == sub->epoch;
  if (same_epoch && p.offset() <= sub->bulk_offset) return false;
  if (p.body().size() > params_.send_max_message_size) {
    // §10.7: skipping it would leave a gap the client cannot see.
    fail(Status::kMessageTooLarge, cat("publication on ", p.channel(), " is above the client's max message size"));
    return false;
  }
  if (!same_epoch) {
    sub->epoch = p.epoch();  // the channel's history was reset: offsets start again
    sub->last_offset = sub->bulk_offset = 0;
  }
  // An urgent publication overtakes the bulk ones posted before it (Loop::drain_posts),
  // so it does not move the mark they are checked against: the lower offsets still on
  // their way pass. Bulk ones come in offset order, and an urgent one comes before
  // every bulk one posted after it, so the mark still drops what a replay sent.
  sub->last_offset = std::max(sub->last_offset, p.offset());
  if (!p.urgent()) sub->bulk_offset = p.offset();
  return true;
}

WireVariant Session::wire_variant() const noexcept {
  WireVariant v;
  const uint32_t shared = config_->publication_dictionary_id;
  v.zstd = params_.zstd && (shared == 0 || params_.dictionary_id == shared);
  v.checksum = params_.checksum;
  return v;
}

// ---- time -----------------------------------------------------------------------------

int64_t Session::token_close_unix_ms() const noexcept {
  if (claims_.expires_at_s == 0) return 0;
  const int64_t close_unix_ms = add_sat(seconds_to_ms(claims_.expires_at_s), int64_t{config_->refresh_grace_ms});
  return close_unix_ms == 0 ? 1 : close_unix_ms;  // 0 means "never"
}

void Session::set_token_deadline(uint64_t now_ms, int64_t unix_ms) noexcept {
  const int64_t close_unix_ms = token_close_unix_ms();
  if (close_unix_ms == 0) {
    deadline_ms_ = UINT64_MAX;
    return;
  }
  // Expiry is wall-clock time; the timer runs on the monotonic clock (check_token
  // looks again if the two disagree when it fires).
  deadline_ms_ = close_unix_ms <= unix_ms
                     ? now_ms
                     : add_sat(now_ms, static_cast<uint64_t>(close_unix_ms) - static_cast<uint64_t>(unix_ms));
}

Status Session::check_token(uint64_t now_ms, int64_t unix_ms) noexcept {
  const int64_t close_unix_ms = token_close_unix_ms();
  if (close_unix_ms == 0) return Status::kOk;
  if (unix_ms >= close_unix_ms) return fail(Status::kTokenExpired, "token expired and was not refreshed");
  if (now_ms >= deadline_ms_) {
    // The monotonic deadline passed but the wall clock disagrees: look again when the
    // remaining wall-clock time has passed.
    const uint64_t remaining = static_cast<uint64_t>(close_unix_ms) - static_cast<uint64_t>(unix_ms);
    deadline_ms_ = add_sat(now_ms, remaining);
  }
  return Status::kOk;
}

Status Session::on_timer(uint64_t now_ms, int64_t unix_ms) noexcept {
  if (stopped() || state_ == State::kClosing) return fatal_;
  if (state_ != State::kReady && now_ms >= deadline_ms_) {
    return fail(Status::kHandshakeTimeout, "Hello and Auth not done in time");
  }
  const Status s = reader_.expire(now_ms);
  if (!codec::ok(s)) return fail(s, codec::describe(s));
  if (welcome_sent_) {
    if (ping_outstanding_) {
      if (now_ms >= pong_deadline_ms_) return fail(Status::kHeartbeatTimeout, "no Pong in time");
    } else if (now_ms >= next_ping_ms_) {
      v1::Ping ping;
      ping.set_nonce(++ping_nonce_);
      ping_outstanding_ = true;
      pong_deadline_ms_ = add_sat(now_ms, uint64_t{params_.pong_timeout_ms});
      next_ping_ms_ = add_sat(now_ms, uint64_t{params_.heartbeat_ms});
      if (!send(ping, FrameType::kPing) || stopped()) return fatal_;
    }
  }
  if (state_ == State::kReady) return check_token(now_ms, unix_ms);
  return fatal_;
}

uint64_t Session::next_deadline_ms() const noexcept {
  if (stopped() || state_ == State::kClosing) return UINT64_MAX;
  uint64_t d = reader_.next_deadline_ms();
  if (state_ != State::kReady) d = std::min(d, deadline_ms_);
  if (welcome_sent_) d = std::min(d, ping_outstanding_ ? pong_deadline_ms_ : next_ping_ms_);
  if (state_ == State::kReady && token_close_unix_ms() != 0) d = std::min(d, deadline_ms_);
  return d;
}

// ---- output ---------------------------------------------------------------------------

bool Session::send(const google::protobuf::Message& message, FrameType type) noexcept {
  // Per loop thread, reused: serialized bodies are copied into the EncodedMessage.
  thread_local std::vector<uint8_t> body;
  if (!codec::ok(codec::serialize_message(message, SIZE_MAX, body))) return false;
  codec::EncodeOptions o;
  if (welcome_sent_) {
    o = params_.encode_options();
  } else {
    // §9.2: before Welcome, version 1, no compression, no checksum required.
    o.version = codec::kVersion1;
    o.checksum = false;
    o.compress = false;
    o.max_frame_size = codec::kHandshakeMaxFrameSize;
  }
  codec::EncodedMessage frame;
  Status s = codec::encode_message(type, body, o, o.compress ? &reader_.context()->compressor : nullptr, frame);
  if (!codec::ok(s) && o.compress) {
    o.compress = false;  // §6.4: a compressor failure falls back to plain
    s = codec::encode_message(type, body, o, nullptr, frame);
  }
  if (!codec::ok(s)) return false;
  host_->send(std::move(frame));
  return true;
}

void Session::reject(uint64_t request_id, Status code, std::string_view text) noexcept {
  v1::Error error;
  error.set_code(static_cast<uint32_t>(code));
  error.set_text(clean_text(text, kMaxErrorText));
  error.set_temporary(codec::is_temporary(code));
  error.set_request_id(request_id);
  send(error, FrameType::kError);
}

Status Session::fail(Status code, std::string_view text) noexcept {
  if (stopped()) return fatal_;
  if (codec::ok(code) || code == Status::kNeedMore) code = Status::kInternal;  // never "keep going"
  fatal_ = code;
  const std::string& reason = set_close_reason(clean_text(text, kMaxErrorText));
  state_ = State::kClosing;  // before send: a host calling back finds the session closing
  v1::Error error;
  error.set_code(static_cast<uint32_t>(code));
  error.set_text(reason);
  error.set_temporary(codec::is_temporary(code));
  send(error, FrameType::kError);
  return fatal_;
}

void Session::go_away(Status code, std::string_view reason, uint32_t reconnect_after_ms) noexcept {
  if (stopped()) return;
  if (codec::ok(code) || code == Status::kNeedMore) code = Status::kGoingAway;
  if (!welcome_sent_) {
    fail(code, reason);  // §10.2: no GoAway before Welcome
    return;
  }
  fatal_ = code;
  const std::string& text = set_close_reason(clean_text(reason, kMaxErrorText));
  state_ = State::kClosing;
  v1::GoAway g;
  g.set_code(static_cast<uint32_t>(code));
  g.set_reason(text);
  g.set_reconnect_after_ms(reconnect_after_ms);
  send(g, FrameType::kGoAway);
}

void Session::disconnect(Status code, std::string_view reason) noexcept { fail(code, reason); }

const std::string& Session::close_reason() const noexcept {
  static const std::string kNone;
  return close_reason_ != nullptr ? *close_reason_ : kNone;
}

const std::string& Session::set_close_reason(std::string text) noexcept {
  // Allocation failure here would end the process anyway (std::string already allocated).
  if (close_reason_ == nullptr) close_reason_ = std::make_unique<std::string>();
  *close_reason_ = std::move(text);
  return *close_reason_;
}

}  // namespace herald::server
