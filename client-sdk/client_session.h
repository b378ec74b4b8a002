// The client's protocol state machine (docs/protocol.md §10, §15.3): Hello/Welcome, Auth,
// subscriptions with resume, dedup by (channel, epoch, offset), contiguous acks, heartbeat,
// token refresh, GoAway, and the reconnect policy. Sans-IO: fed bytes and times, answers
// through a ClientSessionHost; no sockets, no clock, no timers, no threads, no logging.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "client-sdk/offset_window.h"
#include "codec/message_reader.h"
#include "codec/negotiation.h"
#include "codec/status.h"
#include "herald.pb.h"

namespace herald::client {

struct SessionOptions {
  std::string client_name = "herald-cpp/0.1";
  std::string device_id;
  bool compression = true;          // offer zstd (decompression context comes from the CodecContext)
  bool checksum = false;            // ask for CRC32C on every frame
  uint32_t max_frame_size = 0;      // what the client accepts (0 = protocol default, 64 KiB)
  uint32_t max_message_size = 0;    // what the client accepts (0 = protocol default, 1 MiB)
  uint32_t heartbeat_ms = 0;        // asked of the server (0 = server default)
  // Silence after which the connection is dead (kHeartbeatTimeout). 0 = the server's
  // heartbeat_ms + pong_timeout_ms (§10.8). The client pings after half of it idle.
  uint32_t heartbeat_timeout_ms = 0;
  uint32_t handshake_timeout_ms = 10'000;  // connection opened -> AuthOk
  bool manual_ack = false;          // false: a publication counts as processed when the handler returns
  // An offset gap (early publications waiting for a lower one) older than this is
  // filled by unsubscribing and subscribing again with resume (§10.6). 0 = never.
  uint32_t gap_timeout_ms = 5'000;
  uint32_t refresh_percent = 80;    // refresh the token at this % of its lifetime
};

// A publication as the app sees it. Views into the session's buffers: valid only for
// the duration of the handler call.
struct PublicationView {
  std::string_view channel, epoch, message_id, type, content_type, collapse_key, payload;
  uint64_t offset = 0;
  int priority = 3;
  int64_t created_at_ms = 0;
  uint32_t ttl_s = 0;
  bool dismiss_on_read = false;
};

struct SubscribedInfo {
  std::string_view channel, epoch;
  uint64_t offset = 0;       // the channel's latest offset at subscribe time
  bool resumed = false;      // the client asked to resume from a stored position
  bool recovered = false;    // resumed and every missed publication follows
  bool durable = false;
};

// Where the session's output and events go. Every call is made from inside a session
// call, on the thread that drives the session. A host must not call back into the
// session from these calls except through the methods documented as safe (none are
// needed: the transport acts after the session call returns).
class ClientSessionHost {
 public:
  virtual ~ClientSessionHost() = default;
  // Bytes to write to the transport, in order.
  virtual void write(std::span<const uint8_t> bytes) noexcept = 0;
  // The token for Auth (start of each connection) and Refresh. Empty: none available
  // (Auth is sent with an empty token and the server answers kAuthFailed).
  virtual std::string token() noexcept = 0;
  // AuthOk after Auth: the connection is READY.
  virtual void on_ready(std::string_view user_id, std::string_view session_id) noexcept = 0;
  // SubscribeOk. With resumed && !recovered the app must reload its state: missed
  // publications are gone (history lost, e.g. a new epoch).
  virtual void on_subscribed(const SubscribedInfo& info) noexcept = 0;
  // A request-level Error for a Subscribe. The channel is removed from the session
  // unless the code is temporary (then it is retried on the next connection).
  virtual void on_subscribe_failed(std::string_view channel, codec::Status code, std::string_view text) noexcept = 0;
  // A new publication (never one already delivered in this process). With automatic
  // acks it counts as processed when this returns.
  virtual void on_publication(const PublicationView& p) noexcept = 0;
  // The processed position of a channel advanced (for position stores).
  virtual void on_position(std::string_view channel, std::string_view epoch, uint64_t offset) noexcept = 0;
  virtual void on_dismiss(std::string_view channel, uint64_t offset, std::string_view message_id) noexcept = 0;
  virtual void on_pong(uint64_t nonce) noexcept = 0;
};

// One client's protocol state across connections: the subscription table and positions
// survive reconnects; everything else is per connection. Not thread-safe: one thread
// drives it. Not copyable or movable (the host refers to it).
//
// Entry points that return a Status return kOk to keep going, or the fatal status of the
// connection: the session has then queued its last frame if any (an Error for a protocol
// violation by the server; nothing for a server Error/GoAway or a heartbeat timeout) and
// the caller flushes, closes the transport, calls connection_closed() and reconnects after
// reconnect_delay_ms() if should_reconnect(status) says so.
class ClientSession {
 public:
  enum class State : uint8_t { kDisconnected, kAwaitWelcome, kAwaitAuthOk, kReady, kClosing };

  // `host` and `ctx` (decompression contexts, shared by the thread's sessions; may be
  // null only if options.compression is false) must outlive the session.
  ClientSession(SessionOptions options, ClientSessionHost* host, codec::CodecContext* ctx) noexcept;
  ClientSession(const ClientSession&) = delete;
  ClientSession& operator=(const ClientSession&) = delete;

  // The transport is connected: resets per-connection state and writes Hello.
  void connection_opened(uint64_t now_ms) noexcept;
  // Received bytes, any chunking. `now_ms` monotonic, `unix_ms` wall clock.
  // Fatal statuses: every MessageReader error (framing, checksum, fragments, compression,
  // sizes), kMalformedMessage, kUnexpectedFrame (a frame the server may not send now,
  // §10.2), kNoCommonVersion / kInvalidField (a Welcome that does not answer our Hello),
  // kInvalidField (a Publication with an empty epoch), the code of a
  // connection-level Error from the server (kInvalidField if it is 0, 1 or unknown), the code
  // of a GoAway (kGoingAway if 0, 1 or unknown).
  codec::Status on_bytes(std::span<const uint8_t> bytes, uint64_t now_ms, int64_t unix_ms) noexcept;
  // Timers: handshake timeout (kHandshakeTimeout), heartbeat (kHeartbeatTimeout after
  // silence; a Ping after half of it), token refresh, gap timeout, reassembly age.
  codec::Status on_timer(uint64_t now_ms, int64_t unix_ms) noexcept;
  // When on_timer must run next (monotonic); UINT64_MAX: nothing scheduled.
  uint64_t next_deadline_ms() const noexcept;
  // The peer closed: kTruncatedFrame if inside a frame, else kOk (the caller reports
  // kConnectionLost). Either way the connection is over.
  codec::Status on_eof() noexcept;
  // The transport is gone (after any of the above, or a transport error): DISCONNECTED.
  // Subscriptions stay and are resumed on the next connection_opened().
  void connection_closed() noexcept;

  // Adds a channel. With `epoch` non-empty the first Subscribe resumes after (epoch,
  // offset). Sent at once when READY, else after the next AuthOk. Subscribing to a channel
  // already in the table keeps its position. False for an invalid channel name
  // (kBadChannel is also what the server would say).
  bool subscribe(std::string_view channel, std::string_view epoch = {}, uint64_t offset = 0) noexcept;
  // Removes a channel (Unsubscribe is sent when READY); later publications of it are ignored.
  void unsubscribe(std::string_view channel) noexcept;
  // Manual acks: the app processed publication (channel, epoch, offset). Acks the highest
  // contiguous processed offset. Unknown channel or other epoch: ignored (false).
  bool ack(std::string_view channel, std::string_view epoch, uint64_t offset) noexcept;
  // Sends a Ping with a new nonce (returned) when READY or AWAIT_AUTH_OK; 0 otherwise.
  uint64_t ping() noexcept;
  // Closes on purpose: nothing is sent (the transport just closes), CLOSING.
  void close() noexcept;

  // Reconnect policy (§9.2): true for kOk (a plain close), kTruncatedFrame and every
  // temporary code (kConnectFailed, kConnectionLost, kHeartbeatTimeout, kGoingAway,
  // kSlowConsumer, ...); kAuthFailed and kTokenExpired only when `token_can_change` (a
  // token callback may give a new one); false for every other code, which the app must see.
  // Channel names the server accepts (§10.5): 1..255 bytes of A-Z a-z 0-9 _ . : @ / -.
  static bool valid_channel_name(std::string_view channel) noexcept;
  static bool should_reconnect(codec::Status s, bool token_can_change) noexcept;
  // Delay before the next attempt: after a GoAway, reconnect_after_ms + uniform jitter in
  // [0, max(reconnect_after_ms, 1000)] (§10.9); otherwise exponential backoff
  // min(max_ms, initial_ms * 2^attempts) with "equal jitter" (half fixed, half random).
  // `random` is any uniformly distributed value. attempts() counts failures since the
  // last READY.
  uint64_t reconnect_delay_ms(uint32_t initial_ms, uint32_t max_ms, uint32_t random) const noexcept;
  uint32_t attempts() const noexcept { return attempts_; }
  // GoAway.reconnect_to of the last GoAway ("" = same address). Cleared on READY.
  const std::string& reconnect_to() const noexcept { return reconnect_to_; }

  State state() const noexcept { return state_; }
  codec::Status fatal() const noexcept { return fatal_; }
  // Text of the fatal status (the server's Error text, or what the client found wrong).
  const std::string& fatal_text() const noexcept { return fatal_text_; }
  const std::string& session_id() const noexcept { return session_id_; }
  const std::string& user_id() const noexcept { return user_id_; }
  const codec::ConnectionParams& params() const noexcept { return params_; }
  size_t subscription_count() const noexcept { return subs_.size(); }
  // The resume position of a channel (highest contiguous delivered offset); false if unknown.
  bool position(std::string_view channel, std::string& epoch, uint64_t& offset) const;
  // Publications ignored as duplicates, and gaps refilled by resubscribing.
  uint64_t duplicates() const noexcept { return duplicates_; }
  uint64_t gap_resubscribes() const noexcept { return gap_resubscribes_; }

 private:
  struct Sub {
    std::string channel;
    std::string epoch;         // empty: the channel had no history yet
    bool known = false;        // a position (epoch may be empty) exists: resume from it
    OffsetWindow delivered;    // dedup and resume
    OffsetWindow processed;    // acks and persistence
    uint64_t request_id = 0;   // Subscribe or Unsubscribe in flight on this connection
    uint64_t acked = 0;        // last offset acked on this connection
    uint64_t gap_since_ms = UINT64_MAX;
    enum class Phase : uint8_t { kIdle, kSubscribing, kActive, kRefilling } phase = Phase::kIdle;
    bool resuming = false;     // the Subscribe in flight asked to resume
    bool durable = false;      // SubscribeOk.durable: only durable channels are acked
  };

  codec::Status handle(const codec::InboundMessage& m, uint64_t now_ms, int64_t unix_ms) noexcept;
  codec::Status on_welcome(const codec::InboundMessage& m, uint64_t now_ms) noexcept;
  codec::Status on_auth_ok(const codec::InboundMessage& m, uint64_t now_ms, int64_t unix_ms) noexcept;
  codec::Status on_subscribe_ok(const codec::InboundMessage& m, uint64_t now_ms) noexcept;
  codec::Status on_unsubscribe_ok(const codec::InboundMessage& m) noexcept;
  codec::Status on_publication(const codec::InboundMessage& m, uint64_t now_ms) noexcept;
  codec::Status on_error(const codec::InboundMessage& m) noexcept;
  codec::Status on_go_away(const codec::InboundMessage& m) noexcept;
  template <class M>
  bool parse(const codec::InboundMessage& m, M& out) noexcept;

  Sub* find(std::string_view channel) noexcept;
  Sub* find_request(uint64_t request_id) noexcept;
  void send_subscribe(Sub& s) noexcept;
  void processed(Sub& s, uint64_t offset) noexcept;
  void flush_acks() noexcept;
  bool send(const google::protobuf::Message& message, codec::FrameType type) noexcept;
  // The Hello of this client (built when needed: per-connection memory is the product).
  v1::Hello make_hello() const;
  codec::Status fail(codec::Status code, std::string_view text, bool tell_server) noexcept;
  void start_heartbeat(uint64_t now_ms) noexcept;

  SessionOptions options_;
  ClientSessionHost* host_;
  codec::CodecContext* ctx_;
  codec::MessageReader reader_;
  codec::ConnectionParams params_;
  std::vector<Sub> subs_;
  std::string session_id_, user_id_, fatal_text_, reconnect_to_;

  State state_ = State::kDisconnected;
  codec::Status fatal_ = codec::Status::kOk;
  uint32_t send_sequence_ = 0;
  uint64_t next_request_id_ = 0;
  uint64_t ping_nonce_ = 0;
  uint64_t handshake_deadline_ms_ = UINT64_MAX;
  uint64_t last_rx_ms_ = 0;
  uint64_t last_ping_ms_ = 0;
  uint32_t dead_after_ms_ = 0;
  uint64_t refresh_at_ms_ = UINT64_MAX;
  uint32_t attempts_ = 0;
  uint32_t go_away_after_ms_ = 0;
  bool go_away_ = false;
  bool acks_dirty_ = false;
  uint64_t duplicates_ = 0;
  uint64_t gap_resubscribes_ = 0;
};

}  // namespace herald::client
