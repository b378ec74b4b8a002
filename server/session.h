// The server's protocol state machine for one connection (docs/protocol.md §10):
// Hello/Welcome, Auth, subscriptions, publish, acks, refresh, heartbeat, expiry.
// Sans-IO: fed bytes and times, answers through a SessionHost; no sockets, no clock, no timers, no logging.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "codec/compression.h"
#include "codec/frame_encoder.h"
#include "codec/message_reader.h"
#include "codec/negotiation.h"
#include "codec/status.h"
#include "herald.pb.h"
#include "server/jwt.h"
#include "server/policy.h"
#include "server/publication.h"

namespace herald::server {

// One per server, shared read-only by every session (they hold a const pointer).
struct SessionConfig {
  codec::ServerSettings negotiation;       // what Welcome offers (codec/negotiation.h)
  uint32_t handshake_timeout_ms = 10000;   // accept -> AuthOk, else kHandshakeTimeout
  uint32_t refresh_grace_ms = 30000;       // after the token's exp: kTokenExpired unless a Refresh arrives
  uint32_t max_subscriptions = 256;        // per connection (request-level kTooManySubscriptions)
  // The policy of a channel's namespace. Must be callable from every loop thread at
  // once; the returned reference must outlive the call. Empty: every channel gets a
  // default NamespacePolicy (subscribe by grant, no publishing).
  std::function<const NamespacePolicy&(std::string_view channel)> policy;
  std::shared_ptr<const codec::DictionarySet> dictionaries;  // may be null (the loop's CodecContext holds them)
  // SharedEncoding::dictionary_id: the dictionary shared publications are compressed
  // with. A session asks for the zstd wire variant only when its client can decode
  // that (it negotiated zstd and either this is 0 or the client negotiated this id).
  uint32_t publication_dictionary_id = 0;
};

// A client's Publish, checked (request_id, channel name, permission) and ready for the hub.
struct SessionPublish {
  uint64_t request_id = 0;  // for a deferred answer (Session::on_publish_done)
  std::string channel, message_id, type, content_type, collapse_key;
  int priority = 3;        // 0..3 (P0..P3); values outside that arrive as 3
  uint32_t ttl_s = 0;
  bool dismiss_on_read = false;
  std::string payload;
};

struct SessionPublishResult {
  codec::Status status = codec::Status::kOk;  // non-kOk: sent as a request-level Error
  uint64_t offset = 0;
  std::string epoch;
  bool duplicate = false;
  // true: durable publish waiting for its commit; the host later calls
  // Session::on_publish_done with the final result (nothing is sent now).
  bool pending = false;
};

struct SessionSubscribeResult {
  codec::Status status = codec::Status::kOk;  // non-kOk: sent as a request-level Error
  std::string epoch;
  uint64_t offset = 0;     // the channel's latest offset: live deliveries at or below it are dropped
  bool recovered = false;
  bool durable = false;    // SubscribeOk.durable
};

// The outside world of a session: the connection's output queue, the hub, the
// user registry. Every call is made on the session's loop thread from inside a
// Session call. A host may call back into the session (go_away, disconnect,
// wants, state queries); the session re-checks its state after every host call.
class SessionHost {
 public:
  virtual ~SessionHost() = default;
  // This connection's session id for Welcome (opaque to the client; unique while the
  // server runs). Computed on demand so that no session stores it.
  virtual std::string session_id() const = 0;
  // Queue a control frame (urgent lane). The host assigns the sequence number.
  virtual void send(codec::EncodedMessage&& frame) noexcept = 0;
  // Queue a replayed publication; the session already decided it is wanted and fits
  // the client's max message size. Encode it with Session::wire_variant().
  virtual void send_publication(const PublicationPtr& p) noexcept = 0;
  // Auth succeeded (per-user connection limit etc.); non-kOk -> Error with that code + close.
  // Called once per session (not again on Refresh).
  virtual codec::Status on_authenticated(const TokenClaims& claims) noexcept = 0;
  // Join `channel` (already validated and authorized). On kOk, `replay` holds the missed
  // publications to send after SubscribeOk, in offset order (resume with recovered = true).
  virtual SessionSubscribeResult subscribe(const std::string& channel, bool resume, const std::string& epoch,
                                           uint64_t offset, std::vector<PublicationPtr>& replay) noexcept = 0;
  // Leave a channel this session had joined; the host also drops publications of it that
  // are still queued (none may follow UnsubscribeOk, §10.5). Only called for joined channels.
  virtual void unsubscribe(const std::string& channel) noexcept = 0;
  virtual SessionPublishResult publish(SessionPublish&& p) noexcept = 0;
  // Only for subscribed channels, with the offset capped at the highest one sent (§10.6);
  // `epoch` is the subscription's epoch.
  virtual void on_ack(const std::string& channel, const std::string& epoch, uint64_t offset) noexcept = 0;
};

// What a session keeps of its token after Auth (and each Refresh): only the claims
// used later. TokenClaims' nbf, iat and jti are checked or logged once and dropped.
struct SessionClaims {
  std::string user_id;
  int64_t expires_at_s = 0;                   // 0 = never expires
  std::unique_ptr<std::string[]> channels;    // grants (token_grants); null when none
  uint32_t channel_count = 0;
  bool publish = false;
  std::span<const std::string> grants() const noexcept { return {channels.get(), channel_count}; }
};

// One connection's protocol state. Loop thread only; not copyable or movable
// (the host and the reader refer to it and to each other).
//
// Every entry point returns kOk to keep going, or the fatal Status: the session
// has then already queued its last frame (a connection-level Error with
// request_id 0, code, text and temporary; or GoAway), is CLOSING, and the caller
// flushes (deadline 1 s) and closes. After a fatal status every call returns it and
// no further frame is sent. After each call the caller re-reads next_deadline_ms().
class Session {
 public:
  enum class State : uint8_t { kAwaitHello, kAwaitAuth, kReady, kClosing, kClosed };

  // `config`, `verifier`, `host` and `ctx` (the loop's codec context) must outlive the
  // session. `accepted_ms` (monotonic) starts the handshake timeout.
  Session(const SessionConfig* config, const JwtVerifier* verifier, SessionHost* host, codec::CodecContext* ctx,
          uint64_t accepted_ms) noexcept;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Feeds received bytes (any chunking). `now_ms` is monotonic; `unix_ms` is wall-clock
  // time, used for token checks. Fatal statuses: every MessageReader error (framing,
  // fragments, compression, kMessageTooLarge), kMalformedMessage, kUnexpectedFrame,
  // kAuthRequired, kInvalidField (bad Hello limits, request_id 0), kNoCommonVersion,
  // kAuthFailed / kTokenExpired (Auth, Refresh; and a token past exp + grace), any
  // non-kOk status from host.on_authenticated, the code of an Error frame sent by the
  // client (kInvalidField if that code is 0, 1 or unknown; nothing is sent back), and
  // kMessageTooLarge for a replayed publication above the client's max message size.
  codec::Status on_bytes(std::span<const uint8_t> bytes, uint64_t now_ms, int64_t unix_ms) noexcept;

  // The peer closed its side. kTruncatedFrame if it stopped inside a frame, else kOk;
  // either way the session is CLOSED and sends nothing more (the peer is gone).
  codec::Status on_eof(uint64_t now_ms) noexcept;

  // Runs the timers that are due: handshake timeout (kHandshakeTimeout), heartbeat (a
  // Ping every heartbeat_ms after Welcome; at most one outstanding, the next is sent
  // once its Pong arrived), pong timeout (kHeartbeatTimeout), token expiry (at exp +
  // refresh_grace_ms of wall-clock time: kTokenExpired), reassembly age
  // (kReassemblyTimeout). Calling it early is harmless.
  codec::Status on_timer(uint64_t now_ms, int64_t unix_ms) noexcept;
  // The monotonic time at which on_timer must run next; UINT64_MAX: none (also once
  // fatal or closed).
  uint64_t next_deadline_ms() const noexcept;

  // A live publication from the hub: true if this session is READY, subscribed to its
  // channel and has not seen it yet (offset above the last one delivered or announced by
  // SubscribeOk in the same epoch; a new epoch is taken as is), and records it as seen.
  // A publication whose body is larger than the client's max message size returns false
  // and makes the session fatal with kMessageTooLarge (§10.7; its Error is queued).
  bool wants(const PublicationRecord& p) noexcept;

  // The final answer of a publish the host left pending: PublishOk, or a
  // request-level Error. Ignored once fatal or closed.
  void on_publish_done(uint64_t request_id, const std::string& channel, const SessionPublishResult& r) noexcept;
  // Queues Dismiss(channel, offset, message_id) (another device of the user read it).
  // Only while READY; ignored otherwise.
  void send_dismiss(const std::string& channel, uint64_t offset, const std::string& message_id) noexcept;

  // Server-initiated close: queues GoAway (after Welcome; before it an Error) with `code`
  // (kOk means kGoingAway) and moves to CLOSING; fatal() becomes `code`. No-op once
  // fatal or closed.
  void go_away(codec::Status code, std::string_view reason, uint32_t reconnect_after_ms) noexcept;
  // Queues a connection-level Error (kOk means kInternal) and moves to CLOSING.
  void disconnect(codec::Status code, std::string_view reason) noexcept;
  // The transport is closed: CLOSED, nothing is sent any more, input is ignored.
  void on_closed() noexcept;

  State state() const noexcept { return state_; }
  // The authenticated user: set once host.on_authenticated accepted it ("" before).
  const std::string& user_id() const noexcept { return claims_.user_id; }
  // What is kept of the current token's claims (updated by Refresh); null before AuthOk.
  const SessionClaims* claims() const noexcept { return authenticated_ ? &claims_ : nullptr; }
  // Hello.device_id (at most its first 128 bytes; receipts are per user and device).
  const std::string& device_id() const noexcept { return device_id_; }
  // How shared publications are encoded for this client (meaningful after Welcome).
  WireVariant wire_variant() const noexcept;
  // The negotiated parameters (defaults before Welcome).
  const codec::ConnectionParams& params() const noexcept { return params_; }
  // Channels currently subscribed, in no particular order.
  std::vector<std::string> subscriptions() const;
  // kOk, or the status the session failed with.
  codec::Status fatal() const noexcept { return fatal_; }
  // Text of the fatal status, for logs: what was sent to the client, or the client's
  // own Error text. Empty while kOk.
  const std::string& close_reason() const noexcept;

 private:
  struct Subscription {
    std::string channel;
    std::string epoch;
    uint64_t last_offset = 0;  // highest offset announced (SubscribeOk) or delivered
    // The same without the urgent (P0/P1) ones delivered, which may overtake lower
    // offsets still on their way (see wants()).
    uint64_t bulk_offset = 0;
  };

  bool stopped() const noexcept { return !codec::ok(fatal_) || state_ == State::kClosed; }
  codec::Status handle(const codec::InboundMessage& m, uint64_t now_ms, int64_t unix_ms) noexcept;
  template <class M>
  bool parse(const codec::InboundMessage& m, M& out) noexcept;
  codec::Status on_hello(const codec::InboundMessage& m, uint64_t now_ms) noexcept;
  codec::Status on_auth(const codec::InboundMessage& m, uint64_t now_ms, int64_t unix_ms) noexcept;
  codec::Status on_refresh(const codec::InboundMessage& m, uint64_t now_ms, int64_t unix_ms) noexcept;
  codec::Status on_subscribe(const codec::InboundMessage& m) noexcept;
  codec::Status on_unsubscribe(const codec::InboundMessage& m) noexcept;
  codec::Status on_publish(const codec::InboundMessage& m) noexcept;
  codec::Status on_ack(const codec::InboundMessage& m) noexcept;
  codec::Status on_ping(const codec::InboundMessage& m) noexcept;
  codec::Status on_pong(const codec::InboundMessage& m) noexcept;
  codec::Status on_peer_error(const codec::InboundMessage& m) noexcept;

  codec::Status may_subscribe(const std::string& channel) const noexcept;
  codec::Status may_publish(const std::string& channel) const noexcept;
  const NamespacePolicy& policy_of(std::string_view channel) const noexcept;
  Subscription* find(std::string_view channel) noexcept;
  void set_token_deadline(uint64_t now_ms, int64_t unix_ms) noexcept;
  codec::Status check_token(uint64_t now_ms, int64_t unix_ms) noexcept;
  // Wall-clock time at which the current token stops being accepted: its exp +
  // refresh_grace_ms; 0 = never (a token without exp). Computed from claims_ and the
  // config each time rather than stored: it is only read while READY, and every change
  // of claims_ then (Refresh) is followed at once by set_token_deadline.
  int64_t token_close_unix_ms() const noexcept;

  // Encodes and queues one control frame; false if it could not be encoded.
  bool send(const google::protobuf::Message& message, codec::FrameType type) noexcept;
  void reject(uint64_t request_id, codec::Status code, std::string_view text) noexcept;
  template <class Request>
  bool check_request(const Request& req, std::string_view what) noexcept;
  // Makes the session fatal with `code`, queues the connection-level Error, CLOSING.
  codec::Status fail(codec::Status code, std::string_view text) noexcept;
  // Records close_reason(); returns it.
  const std::string& set_close_reason(std::string text) noexcept;

  const SessionConfig* config_;
  const JwtVerifier* verifier_;
  SessionHost* host_;
  codec::MessageReader reader_;
  codec::ConnectionParams params_;
  SessionClaims claims_;
  std::string device_id_;
  std::vector<Subscription> subs_;
  std::unique_ptr<std::string> close_reason_;  // allocated only once the session fails or closes

  // Before AuthOk: the handshake deadline. READY: the monotonic time at which to look
  // at the token's expiry again (UINT64_MAX: never). One field, one meaning per state.
  uint64_t deadline_ms_;
  uint64_t next_ping_ms_ = UINT64_MAX;    // after Welcome
  uint64_t pong_deadline_ms_ = UINT64_MAX;  // while a Ping is outstanding

  // The last 8 bytes, packed: every session is part of a connection's memory (see
  // Connection::kMaxSize). Loop thread only, so the bit-fields are never written by two
  // threads at once.
  State state_ = State::kAwaitHello;
  bool welcome_sent_ : 1 = false;
  bool authenticated_ : 1 = false;
  bool ping_outstanding_ : 1 = false;
  codec::Status fatal_ = codec::Status::kOk;
  // Nonce of the last Ping sent: 1, 2, 3, ... A Pong must carry exactly this value (the
  // 64-bit wire value is compared, so one 2^32 higher does not match). 32 bits wrap only
  // after 2^32 Pings, more than 600 years at the shortest heartbeat (5 s).
  uint32_t ping_nonce_ = 0;
};

}  // namespace herald::server
