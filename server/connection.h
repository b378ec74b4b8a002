// One client connection on one loop: moves bytes between the socket (plain TCP
// with readv/writev, or TLS through a bufferevent_openssl) and its sans-IO
// Session, queues output in its DeliveryLanes, and closes in two phases. Holds
// no protocol logic. Loop thread only.
#pragma once

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include <cstdint>
#include <memory>
#include <string>

#include "server/delivery_lanes.h"
#include "server/loop.h"
#include "server/metrics.h"
#include "server/session.h"
#include "server/ws_connection.h"

namespace herald::server {

class Connection final : public SessionHost {
 public:
  // Every connection costs sizeof(Connection) rounded up to jemalloc's size class (heraldd
  // links jemalloc): at most 448 bytes keeps it in the 448-byte class instead of the
  // 512-byte one. Checked by a static_assert in connection.cc.
  static constexpr size_t kMaxSize = 448;

  // `ws`: a WebSocket listener's connection (HTTP upgrade first; ws_connection.h).
  // `peer_ip`: the limiter's copy (ConnectionLimiter::add_connection), valid until release().
  Connection(Loop* loop, ConnectionId id, int fd, bool tls, const std::string* peer_ip, bool ws = false);
  ~Connection() override;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Registers events (and the TLS handshake); false if setup failed (then reap it).
  bool start();

  ConnectionId id() const noexcept { return id_; }
  Session& session() noexcept { return session_; }
  const std::string& peer_ip() const noexcept { return *peer_ip_; }
  bool closing() const noexcept { return closing_; }
  CloseReason close_reason() const noexcept { return close_reason_; }

  // A live publication posted to this loop for a channel this connection joined.
  // `collapse`: its channel keeps only the latest value per collapse key (the loop
  // looks the channel's policy up once per publication, not once per subscriber).
  // `held`: the loop's hold of `p` for a fan-out (the queue entry holds it, not `p`), or null.
  void deliver(const PublicationPtr& p, bool collapse, HeldPublication* held = nullptr);
  // A deferred (durable) publish of this connection finished (posted to its loop).
  void publish_done(uint64_t request_id, const std::string& channel, const SessionPublishResult& r);
  // Another device of this user read a dismiss-on-read message.
  void send_dismiss(const std::string& channel, uint64_t offset, const std::string& message_id);
  // Writes what is queued (called by the loop's end-of-iteration flush).
  void flush();
  // The end-of-iteration flush through the loop's BatchWriter, in rounds. prepare_batch
  // fills iov with this connection's next write and returns the iovec count: -1 if, in the
  // first round, it was already flushed since it was listed (listed twice), 0 if it does
  // not write that way (TLS, WebSocket, blocked, nothing queued: call flush()).
  // batch_written takes the send's result (bytes, -errno, or BatchWriter::kNotSent) and
  // returns true if all of it was written and more is queued (it goes into the next round);
  // otherwise this connection's flush is complete.
  static constexpr size_t kMaxIov = 64;
  int prepare_batch(iovec* iov, size_t max, size_t& want, bool first_round);
  bool batch_written(long result, size_t want);
  int fd() const noexcept { return fd_; }
  // Its socket is in the loop's fixed-file table (Loop::register_file).
  bool fixed_file() const noexcept { return fixed_file_; }
  // The loop's timer heap popped an entry of this connection queued for `entry_ms`.
  void timer_fired(uint64_t entry_ms, uint64_t now_ms);
  // Server-side close paths.
  void go_away(uint32_t reconnect_after_ms);
  void disconnect(codec::Status code, const std::string& reason);
  // Releases hub subscriptions, user and IP counts; called once before destruction.
  void release();
  // Publish admission (Loop::pause_reader) let this connection read again.
  void resume_reading();
  // Plain TCP and WebSocket: the loop's epoll set reported `events` for this socket.
  void on_socket(uint32_t events);
  // A control frame or a P0 publication waits to be written (Loop::on_sockets serves
  // such sockets first).
  bool urgent_output() const noexcept { return lanes_.urgent(); }
  // Plain TCP whose last write found the socket full: one write of the urgent frames
  // alone (after the rest of a frame partly written), ahead of the kernel's word.
  void write_urgent();

  // ---- SessionHost ----
  void send(codec::EncodedMessage&& frame) noexcept override;
  void send_publication(const PublicationPtr& p) noexcept override;
  std::string session_id() const override;
  codec::Status on_authenticated(const TokenClaims& claims) noexcept override;
  SessionSubscribeResult subscribe(const std::string& channel, bool resume, const std::string& epoch, uint64_t offset,
                                   std::vector<PublicationPtr>& replay) noexcept override;
  void unsubscribe(const std::string& channel) noexcept override;
  SessionPublishResult publish(SessionPublish&& p) noexcept override;
  void on_ack(const std::string& channel, const std::string& epoch, uint64_t offset) noexcept override;

 private:
  friend class WsConnection;
  static void on_read(evutil_socket_t fd, short what, void* arg);
  static void on_tls_read(bufferevent* bev, void* arg);
  static void on_tls_write(bufferevent* bev, void* arg);
  static void on_tls_event(bufferevent* bev, short what, void* arg);

  void handle_bytes(std::span<const uint8_t> bytes);
  void handle_status(codec::Status s);
  void queue_publication(const PublicationPtr& p, bool collapse, HeldPublication* held = nullptr);
  // A publication's last byte was written (handed to TLS or WebSocket framing on those
  // listeners): a P0's latency is counted, and a durable personal-channel one is
  // "sent" to this device (receipts).
  static void note_written(void* self, const PublicationRecord& p) noexcept;
  // For lanes_.consumed(): note_written.
  WrittenHook written_hook() noexcept;
  // Receipts are kept per user and device; a client without Hello.device_id is "default".
  const std::string& device_key() const noexcept;
  void after_output();
  void start_closing(CloseReason reason);
  void finish_if_flushed();
  void maybe_send_go_away();
  void on_timer();
  void update_timer();
  void flush_plain();
  // After a write of `want` bytes on plain TCP returned `w` (errno in `err` when negative):
  // accounts what was written; true if everything was and writing may go on.
  bool after_write(ssize_t w, int err, size_t want);
  // Plain TCP: which directions the loop's epoll set watches; false if the kernel refused.
  bool watch(bool read, bool write);
  bool reading() const noexcept { return !closing_ && !go_away_pending_ && (publish_state_ & kReadPaused) == 0; }
  // After input was handled: stop reading if what this connection published since the
  // last check must wait for the loops' backlog (Loop::admission_closed). True if paused.
  bool maybe_pause_reading();
  void flush_tls();

  Loop* loop_;
  const ConnectionId id_;
  int fd_;
  CloseReason close_reason_ = CloseReason::kClientClosed;
  // Publish admission, bits: published P0/P1, published P2/P3 (both since the last
  // check), has ever published (reads are then smaller), reading paused.
  static constexpr uint8_t kPublishedUrgent = 1, kPublishedBulk = 2, kPublisher = 4, kReadPaused = 8;
  uint8_t publish_state_ = 0;
  // The flags, as bit-fields: with fd_, close_reason_ and publish_state_ they fill one
  // 8-byte word (see kMaxSize). Bit-fields share a memory location, so two threads must
  // never write them at once: like every member here, they are read and written on the
  // connection's loop thread only.
  const bool tls_ : 1;
  uint8_t watching_ : 2 = 0;            // 1 = read, 2 = write in the loop's epoll set; 0 = not in it
  bool user_counted_ : 1 = false;       // session_.user_id() is counted in the limiter and the loop
  bool closing_ : 1 = false;
  bool reaped_ : 1 = false;
  bool released_ : 1 = false;
  bool write_blocked_ : 1 = false;
  bool go_away_pending_ : 1 = false;    // shutting down: GoAway once queued output is written
  bool flush_scheduled_ : 1 = false;    // listed in the loop's end-of-iteration flush
  bool fixed_file_ : 1 = false;         // see fixed_file()
  const std::string* peer_ip_;  // the limiter's key, uncounted in release()
  bufferevent* bev_ = nullptr;
  Session session_;
  DeliveryLanes lanes_;
  uint64_t timer_deadline_ = UINT64_MAX;  // when on_timer must run next
  // The earliest entry this connection has in the loop's timer heap. A later deadline
  // queues nothing: that entry fires first and queues the deadline then, so an idle
  // connection holds one heap entry however often its deadline moves.
  uint64_t timer_queued_ = UINT64_MAX;
  // While closing: when to stop flushing. Before that, while a GoAway is pending (never
  // at the same time): the reconnect delay the GoAway will carry.
  uint64_t close_deadline_ms_ = UINT64_MAX;
  std::unique_ptr<WsConnection> ws_;  // WebSocket listener only
};

}  // namespace herald::server
