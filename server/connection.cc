// Connection: socket <-> Session, output through DeliveryLanes, two-phase close.
#include "server/connection.h"

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "server/batch_writer.h"
#include "server/durable_history.h"
#include "server/server_context.h"

namespace herald::server {
namespace {

size_t iov_bytes(const iovec* iov, size_t n) noexcept {
  size_t bytes = 0;
  for (size_t i = 0; i < n; ++i) bytes += iov[i].iov_len;
  return bytes;
}

constexpr int kReadsPerCallback = 4;   // fairness between connections of a loop
// A connection that publishes reads this much at a time while a loop is half way to
// closing the publish admission (Loop::admission_closed): it is then checked every
// ~100 publishes, not every ~400, so the backlog overshoots its limit by less.
constexpr size_t kPublisherReadBytes = 16 * 1024;
constexpr uint32_t kErrorFlushMs = 1000;  // docs/protocol.md §9.2: flush an Error for at most 1 s

CloseReason close_reason_for(codec::Status s) {
  switch (s) {
    case codec::Status::kAuthFailed:
    case codec::Status::kAuthRequired:
      return CloseReason::kAuthFailed;
    case codec::Status::kTokenExpired:
      return CloseReason::kTokenExpired;
    case codec::Status::kHandshakeTimeout:
      return CloseReason::kHandshakeTimeout;
    case codec::Status::kHeartbeatTimeout:
      return CloseReason::kHeartbeatTimeout;
    case codec::Status::kSlowConsumer:
      return CloseReason::kSlowConsumer;
    case codec::Status::kTooManyConnections:
      return CloseReason::kLimit;
    case codec::Status::kGoingAway:
      return CloseReason::kServerShutdown;
    default:
      return CloseReason::kProtocolError;
  }
}

}  // namespace

static_assert(sizeof(Connection) <= Connection::kMaxSize,
              "Connection grew past 448 bytes: jemalloc would give every connection a 512-byte block");

Connection::Connection(Loop* loop, ConnectionId id, int fd, bool tls, const std::string* peer_ip, bool ws)
    : loop_(loop),
      id_(id),
      fd_(fd),
      tls_(tls),
      peer_ip_(peer_ip),
      session_(ws ? &loop->context().ws_session_config : &loop->context().session_config,
               loop->context().verifier.get(), this, &loop->codec(), monotonic_ms()),
      lanes_(&loop->context().output_limits, loop->lane_counters()) {
  if (ws) ws_ = std::make_unique<WsConnection>(this, &loop->context().ws_settings, monotonic_ms());
}

Connection::~Connection() {
  if (watching_ != 0) loop_->watch_socket(fd_, id_, true, 0);
  if (fixed_file_) loop_->unregister_file(id_);  // before close(): the table holds the socket
  if (bev_ != nullptr) {
    bufferevent_free(bev_);  // closes the fd (BEV_OPT_CLOSE_ON_FREE)
  } else if (fd_ >= 0) {
    ::close(fd_);
  }
}

bool Connection::start() {
  if (tls_) {
    SSL* ssl = SSL_new(loop_->context().ssl_ctx);
    if (ssl == nullptr) return false;
    bev_ = bufferevent_openssl_socket_new(loop_->base(), fd_, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev_ == nullptr) {
      SSL_free(ssl);
      return false;
    }
    // OpenSSL 3 reports a peer that closes without close_notify as an error;
    // our frames detect truncation themselves, so treat it as EOF.
    bufferevent_openssl_set_allow_dirty_shutdown(bev_, 1);
    bufferevent_setcb(bev_, on_tls_read, on_tls_write, on_tls_event, this);
    // Refill the bufferevent from the lanes when it drains below one batch.
    bufferevent_setwatermark(bev_, EV_WRITE, loop_->context().output_limits.batch_bytes / 2, 0);
    bufferevent_enable(bev_, EV_READ | EV_WRITE);
  } else {
    if (!watch(true, false)) return false;
    if (ws_ == nullptr) fixed_file_ = loop_->register_file(id_, fd_);
  }
  update_timer();
  return true;
}

// ---------------------------------------------------------------- input

void Connection::on_read(evutil_socket_t fd, short, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  c->loop_->refresh_clock();
  auto buf = c->loop_->read_buffer();
  if ((c->publish_state_ & kPublisher) != 0 && buf.size() > kPublisherReadBytes &&
      c->loop_->backlog_above(c->loop_->context().publish_backlog / 2)) {
    buf = buf.first(kPublisherReadBytes);
  }
  for (int i = 0; i < kReadsPerCallback && !c->closing_; ++i) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n > 0) {
      c->handle_bytes(buf.first(static_cast<size_t>(n)));
      if (c->maybe_pause_reading()) break;
      if (static_cast<size_t>(n) < buf.size()) break;
      continue;
    }
    if (n == 0) {
      c->handle_status(c->session_.on_eof(c->loop_->now_ms()));
      if (!c->closing_) c->start_closing(CloseReason::kClientClosed);
      break;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
    c->start_closing(CloseReason::kIoError);
    break;
  }
  c->after_output();
}

void Connection::on_tls_read(bufferevent* bev, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  c->loop_->refresh_clock();
  evbuffer* in = bufferevent_get_input(bev);
  while (!c->closing_ && evbuffer_get_length(in) > 0) {
    evbuffer_iovec vec[8];
    const int n = evbuffer_peek(in, -1, nullptr, vec, 8);
    size_t used = 0;
    for (int i = 0; i < n && i < 8 && !c->closing_; ++i) {
      c->handle_bytes({static_cast<const uint8_t*>(vec[i].iov_base), vec[i].iov_len});
      used += vec[i].iov_len;
    }
    evbuffer_drain(in, used);
    // Paused: the rest stays in the bufferevent until resume_reading().
    if (c->maybe_pause_reading()) break;
  }
  if (c->closing_) evbuffer_drain(in, evbuffer_get_length(in));
  c->after_output();
}

void Connection::handle_bytes(std::span<const uint8_t> bytes) {
  loop_->context().metrics->bytes_in(bytes.size());
  if (ws_ != nullptr) {
    ws_->on_bytes(bytes);
    return;
  }
  handle_status(session_.on_bytes(bytes, loop_->now_ms(), unix_ms()));
}

bool Connection::maybe_pause_reading() {
  const uint8_t published = publish_state_ & (kPublishedUrgent | kPublishedBulk);
  if (published == 0 || closing_) return false;
  publish_state_ &= static_cast<uint8_t>(~(kPublishedUrgent | kPublishedBulk));
  if (!loop_->admission_closed(published == kPublishedUrgent)) return false;
  publish_state_ |= kReadPaused;
  if (bev_ != nullptr) {
    bufferevent_disable(bev_, EV_READ);
  } else {
    watch(false, write_blocked_);
  }
  loop_->pause_reader(this);
  return true;
}

void Connection::resume_reading() {
  if ((publish_state_ & kReadPaused) == 0) return;
  publish_state_ &= static_cast<uint8_t>(~kReadPaused);
  if (!reading()) return;  // closing or going away meanwhile
  if (bev_ != nullptr) {
    bufferevent_enable(bev_, EV_READ);
    // Input read before the pause is still buffered: no event would announce it.
    if (evbuffer_get_length(bufferevent_get_input(bev_)) > 0) on_tls_read(bev_, this);
  } else {
    watch(true, write_blocked_);
  }
}

void Connection::handle_status(codec::Status s) {
  if (codec::ok(s) || closing_) return;
  if (s == codec::Status::kAuthFailed) loop_->context().metrics->auth_failure(AuthFailure::kBadToken);
  if (s == codec::Status::kTokenExpired) loop_->context().metrics->auth_failure(AuthFailure::kExpired);
  // The session already queued its Error frame; flush it, then close.
  start_closing(close_reason_for(s));
}

void Connection::on_tls_event(bufferevent*, short what, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  c->loop_->refresh_clock();
  if (what & BEV_EVENT_CONNECTED) return;
  if (what & BEV_EVENT_EOF) {
    c->handle_status(c->session_.on_eof(c->loop_->now_ms()));
    if (!c->closing_) c->start_closing(CloseReason::kClientClosed);
  } else if (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
    while (unsigned long e = bufferevent_get_openssl_error(c->bev_)) {
      spdlog::get("tls")->debug("connection {}: {}", c->id_, ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "?");
    }
    c->lanes_.clear();  // the socket is gone: nothing more can be written
    c->start_closing(CloseReason::kIoError);
  }
  c->after_output();
}

// ---------------------------------------------------------------- output

void Connection::send(codec::EncodedMessage&& frame) noexcept {
  if (closing_ && reaped_) return;
  if (lanes_.enqueue_control(std::move(frame), loop_->now_ms()) == EnqueueOutcome::kSlowConsumer) {
    lanes_.discard_queued();
    start_closing(CloseReason::kSlowConsumer);
  }
}

void Connection::queue_publication(const PublicationPtr& p, bool collapse, HeldPublication* held) {
  ServerContext& ctx = loop_->context();
  const auto& frames = p->encoded(session_.wire_variant(), ctx.shared_encoding, loop_->codec());
  const int prio = p->priority() >= 0 && p->priority() <= 3 ? p->priority() : 3;
  // Queued and shed messages are counted by the lanes (LaneCounters, reported by the loop).
  // State channels: a newer value replaces a queued older one with the same collapse key.
  const uint64_t now = loop_->now_ms();
  switch (held != nullptr ? lanes_.enqueue(held, &frames, prio, now, collapse)
                          : lanes_.enqueue(p, &frames, prio, now, collapse)) {
    case EnqueueOutcome::kQueued:
    case EnqueueOutcome::kShed:
      break;
    case EnqueueOutcome::kSlowConsumer:
      // Never drop P0/P1 silently: tell the client why and close; it resumes from its offset.
      // discard_queued keeps a half-written frame, so the Error follows a whole frame.
      lanes_.discard_queued();
      session_.disconnect(codec::Status::kSlowConsumer, "slow consumer: output limit exceeded");
      start_closing(CloseReason::kSlowConsumer);
      break;
  }
}

void Connection::note_written(void* self, const PublicationRecord& p) noexcept {
  auto* c = static_cast<Connection*>(self);
  ServerContext& ctx = c->loop_->context();
  if (p.priority() == 0) {
    const uint64_t now = monotonic_us();
    c->loop_->p0_latency().observe(now > p.accepted_us() ? now - p.accepted_us() : 0);
  }
  if (ctx.durable == nullptr || namespace_of(p.channel()) != kUserNamespace ||
      !ctx.config->policy_for(p.channel()).durable) {
    return;
  }
  try {
    ctx.durable->note_sent(p.channel(), p.offset(), c->device_key(), unix_ms());
  } catch (const std::bad_alloc&) {
    // The receipt stays "pending"; the message itself was written.
  }
}

WrittenHook Connection::written_hook() noexcept {
  return {&Connection::note_written, this};
}

void Connection::send_publication(const PublicationPtr& p) noexcept {
  // Replays and snapshots: one subscriber each, so the policy is looked up here.
  queue_publication(p, loop_->context().config->policy_for(p->channel()).latest_value);
  // A replay (a durable inbox can hold a thousand messages) is queued in one callback:
  // write as it grows, so the socket takes what it can before the output limits count it.
  if (!closing_ && !reaped_ && lanes_.queued_bytes() >= loop_->context().output_limits.batch_bytes) flush();
}

const std::string& Connection::device_key() const noexcept {
  static const std::string kDefault = "default";
  return session_.device_id().empty() ? kDefault : session_.device_id();
}

void Connection::deliver(const PublicationPtr& p, bool collapse, HeldPublication* held) {
  if (closing_) return;
  if (!session_.wants(*p)) {
    if (!codec::ok(session_.fatal())) start_closing(close_reason_for(session_.fatal()));
    return;
  }
  queue_publication(p, collapse, held);
  after_output();
}

void Connection::after_output() {
  if (reaped_) return;
  if (ws_ != nullptr && ws_->output_pending()) {
    flush();  // an HTTP answer, a WebSocket pong or close
  } else if (!lanes_.empty()) {
    if (lanes_.urgent()) {
      // Control frames and P0 wait neither for the end of the iteration nor for the
      // kernel to report room: a socket found full a moment ago has often been read
      // since, and its room is reported only in the loop's next round of socket events.
      // Such a socket gets the urgent frames alone; the bulk waits for its turn.
      if (write_blocked_ && bev_ == nullptr && ws_ == nullptr) {
        write_urgent();
      } else {
        flush();
      }
    } else if (!flush_scheduled_) {
      flush_scheduled_ = true;
      loop_->schedule_flush(this);
    }
  }
  update_timer();
  finish_if_flushed();
}

void Connection::flush() {
  flush_scheduled_ = false;
  if (reaped_) return;
  if (ws_ != nullptr) {
    ws_->flush();
  } else if (tls_) {
    flush_tls();
  } else {
    flush_plain();
  }
  maybe_send_go_away();
  finish_if_flushed();
}

void Connection::flush_plain() {
  if (write_blocked_) return;
  while (!lanes_.empty()) {
    iovec iov[kMaxIov];
    const size_t n = lanes_.prepare(iov, kMaxIov);
    if (n == 0) break;
    const size_t want = iov_bytes(iov, n);
    const ssize_t w = ::writev(fd_, iov, static_cast<int>(n));
    if (!after_write(w, w < 0 ? errno : 0, want)) return;
  }
}

void Connection::write_urgent() {
  iovec iov[kMaxIov];
  const size_t n = lanes_.prepare(iov, kMaxIov, true);
  if (n == 0) return;
  const size_t want = iov_bytes(iov, n);
  const ssize_t w = ::writev(fd_, iov, static_cast<int>(n));
  after_write(w, w < 0 ? errno : 0, want);
  // However much went, the bulk still waits for the kernel to report room (the socket
  // stays watched for it).
  write_blocked_ = true;
}

bool Connection::after_write(ssize_t w, int err, size_t want) {
  if (w < 0) {
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) {
      lanes_.consumed(0, loop_->now_ms());
      write_blocked_ = true;
      watch(reading(), true);
      return false;
    }
    lanes_.clear();
    start_closing(CloseReason::kIoError);
    return false;
  }
  loop_->context().metrics->bytes_out(static_cast<size_t>(w));
  lanes_.consumed(static_cast<size_t>(w), loop_->now_ms(), written_hook());
  if (static_cast<size_t>(w) < want) {
    write_blocked_ = true;
    watch(reading(), true);
    return false;
  }
  return true;
}

int Connection::prepare_batch(iovec* iov, size_t max, size_t& want, bool first_round) {
  if (first_round && !flush_scheduled_) return -1;
  if (reaped_ || ws_ != nullptr || tls_ || write_blocked_ || lanes_.empty()) return 0;
  const size_t n = lanes_.prepare(iov, max);
  if (n == 0) return 0;
  flush_scheduled_ = false;
  want = iov_bytes(iov, n);
  return static_cast<int>(n);
}

bool Connection::batch_written(long result, size_t want) {
  if (result == BatchWriter::kNotSent) {
    // The ring failed before the kernel took this send: write it the usual way.
    lanes_.consumed(0, loop_->now_ms());
    flush();
    return false;
  }
  const ssize_t w = result < 0 ? -1 : static_cast<ssize_t>(result);
  if (after_write(w, result < 0 ? static_cast<int>(-result) : 0, want) && !lanes_.empty()) return true;
  maybe_send_go_away();
  finish_if_flushed();
  return false;
}

void Connection::flush_tls() {
  evbuffer* out = bufferevent_get_output(bev_);
  const size_t batch = loop_->context().output_limits.batch_bytes;
  Metrics* m = loop_->context().metrics;
  // One contiguous block per write: libevent's TLS bufferevent makes one TLS
  // record per buffer segment, so small frames are copied together.
  while (!lanes_.empty() && evbuffer_get_length(out) < batch) {
    iovec iov[kMaxIov];
    const size_t n = lanes_.prepare(iov, kMaxIov);
    if (n == 0) break;
    size_t total = 0;
    for (size_t i = 0; i < n; ++i) total += iov[i].iov_len;
    evbuffer_iovec space;
    if (evbuffer_reserve_space(out, static_cast<ev_ssize_t>(total), &space, 1) < 1 || space.iov_len < total) {
      lanes_.consumed(0, loop_->now_ms());
      break;
    }
    auto* dst = static_cast<uint8_t*>(space.iov_base);
    for (size_t i = 0; i < n; ++i) {
      std::memcpy(dst, iov[i].iov_base, iov[i].iov_len);
      dst += iov[i].iov_len;
    }
    space.iov_len = total;
    evbuffer_commit_space(out, &space, 1);
    m->bytes_out(total);
    lanes_.consumed(total, loop_->now_ms(), written_hook());
  }
}

bool Connection::watch(bool read, bool write) {
  const uint8_t want = static_cast<uint8_t>((read ? 1 : 0) | (write ? 2 : 0));
  if (want == watching_) return true;
  // One registration for both directions, changed only when the set changes (a write
  // blocks or unblocks, reading stops).
  const uint32_t events = (read ? uint32_t{EPOLLIN} : 0) | (write ? uint32_t{EPOLLOUT} : 0);
  if (!loop_->watch_socket(fd_, id_, watching_ != 0, events)) {
    if (watching_ != 0) loop_->watch_socket(fd_, id_, true, 0);
    watching_ = 0;
    return false;
  }
  watching_ = want;
  return true;
}

void Connection::on_socket(uint32_t events) {
  // An error or hang-up is reported to whichever direction is watched: the next read
  // or write sees it (as libevent does with EPOLLERR and EPOLLHUP).
  const bool failed = (events & (EPOLLERR | EPOLLHUP)) != 0;
  const bool writable = (watching_ & 2) != 0 && (failed || (events & EPOLLOUT) != 0);
  const bool readable = (watching_ & 1) != 0 && (failed || (events & EPOLLIN) != 0);
  if (!writable && !readable) return;  // stopped watching since the kernel reported it
  loop_->refresh_clock();
  if (writable) {
    write_blocked_ = false;
    // Written at once, not in the end-of-iteration submission: a P0 waiting for room
    // must not wait for the whole loop iteration (deferring these writes made W5's P0
    // p99 3-4 times worse, docs/benchmarks.md, fourth round).
    flush();
    // A socket that took part and blocked again stays watched as it was; only one
    // written out stops watching for room (one epoll_ctl, not two per turn).
    if (!write_blocked_) watch(reading(), false);
    update_timer();
  }
  if (readable && reading()) on_read(fd_, EV_READ, this);
}

void Connection::on_tls_write(bufferevent*, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  c->loop_->refresh_clock();
  c->flush();
  c->update_timer();
}

// ---------------------------------------------------------------- timers and closing

void Connection::update_timer() {
  if (reaped_) return;
  uint64_t deadline = closing_ ? close_deadline_ms_ : session_.next_deadline_ms();
  if (!closing_ && !lanes_.empty()) {
    // While output is above the soft limit, check again when T could have passed.
    deadline = std::min(deadline, loop_->now_ms() + loop_->context().output_limits.soft_ms / 4 + 1);
  }
  if (ws_ != nullptr) deadline = std::min(deadline, ws_->deadline_ms());
  timer_deadline_ = deadline;
  if (deadline < timer_queued_) {
    timer_queued_ = deadline;
    loop_->schedule_timer(this, deadline);
  }
}

void Connection::timer_fired(uint64_t entry_ms, uint64_t now_ms) {
  if (entry_ms != timer_queued_) return;  // an older entry, superseded by an earlier one
  timer_queued_ = UINT64_MAX;
  if (timer_deadline_ <= now_ms) {
    on_timer();
  } else {
    update_timer();  // the deadline moved later since this entry was queued
  }
}

void Connection::on_timer() {
  timer_deadline_ = UINT64_MAX;
  const uint64_t now = loop_->now_ms();
  if (closing_) {
    if (now >= close_deadline_ms_) {
      lanes_.clear();  // the Error flush deadline passed: give up on the rest
      finish_if_flushed();
    }
    update_timer();
    return;
  }
  if (ws_ != nullptr && ws_->on_timer(now)) {
    // the WebSocket upgrade did not arrive in time
  } else if (lanes_.soft_limit_exceeded_too_long(now)) {
    lanes_.discard_queued();
    session_.disconnect(codec::Status::kSlowConsumer, "slow consumer: output above the soft limit too long");
    start_closing(CloseReason::kSlowConsumer);
  } else {
    handle_status(session_.on_timer(now, unix_ms()));
  }
  after_output();
}

void Connection::go_away(uint32_t reconnect_after_ms) {
  if (closing_ || go_away_pending_) return;
  // GoAway is the server's last frame: first write everything already queued
  // for this client (nothing accepted is lost), then say GoAway and close.
  go_away_pending_ = true;
  close_deadline_ms_ = reconnect_after_ms;  // not closing yet: holds the GoAway's delay
  if (bev_ == nullptr) watch(false, write_blocked_);
  if (bev_ != nullptr) bufferevent_disable(bev_, EV_READ);
  after_output();
  maybe_send_go_away();
}

void Connection::maybe_send_go_away() {
  if (!go_away_pending_ || closing_ || !lanes_.empty()) return;
  go_away_pending_ = false;
  session_.go_away(codec::Status::kGoingAway, "server shutting down", static_cast<uint32_t>(close_deadline_ms_));
  start_closing(CloseReason::kServerShutdown);
  after_output();
}

void Connection::disconnect(codec::Status code, const std::string& reason) {
  if (closing_) return;
  session_.disconnect(code, reason);
  start_closing(CloseReason::kDisconnectedByApi);
  after_output();
}

void Connection::start_closing(CloseReason reason) {
  if (closing_) return;
  closing_ = true;
  close_reason_ = reason;
  close_deadline_ms_ = loop_->now_ms() + kErrorFlushMs;
  // Phase one: stop reading now; what must be said is flushed (with a deadline).
  if (bev_ == nullptr) watch(false, write_blocked_);
  if (bev_ != nullptr) bufferevent_disable(bev_, EV_READ);
  timer_deadline_ = UINT64_MAX;
  update_timer();
}

void Connection::finish_if_flushed() {
  if (!closing_ || reaped_) return;
  const bool tls_pending = bev_ != nullptr && evbuffer_get_length(bufferevent_get_output(bev_)) > 0 &&
                           loop_->now_ms() < close_deadline_ms_;
  const bool ws_pending = ws_ != nullptr && ws_->output_pending() && loop_->now_ms() < close_deadline_ms_;
  if (!lanes_.empty() || tls_pending || ws_pending) return;
  reaped_ = true;
  loop_->schedule_reap(this);  // phase two: freed after the current callback
}

void Connection::release() {
  if (released_) return;
  released_ = true;
  ServerContext& ctx = loop_->context();
  for (const auto& channel : session_.subscriptions()) {
    ctx.hub->unsubscribe(loop_->index(), channel);
    loop_->remove_subscriber(channel, id_);
  }
  if (user_counted_) {
    ctx.limiter->remove_user(session_.user_id());
    loop_->remove_user(session_.user_id(), id_);
  }
  ctx.limiter->remove_connection(*peer_ip_);  // last use: the key may be freed by it
}

// ---------------------------------------------------------------- SessionHost

std::string Connection::session_id() const {
  return std::to_string(loop_->index()) + "-" + std::to_string(connection_serial(id_));
}

codec::Status Connection::on_authenticated(const TokenClaims& claims) noexcept {
  ServerContext& ctx = loop_->context();
  codec::Status s = ctx.limiter->add_user(claims.user_id);
  if (!codec::ok(s)) {
    ctx.metrics->auth_failure(AuthFailure::kLimit);
    return s;
  }
  user_counted_ = true;  // the session keeps claims.user_id from here on
  loop_->add_user(claims.user_id, id_);
  if (ctx.durable != nullptr) ctx.durable->note_device(claims.user_id, device_key(), unix_ms());
  return codec::Status::kOk;
}

SessionSubscribeResult Connection::subscribe(const std::string& channel, bool resume, const std::string& epoch,
                                             uint64_t offset, std::vector<PublicationPtr>& replay) noexcept {
  ServerContext& ctx = loop_->context();
  const NamespacePolicy& policy = ctx.config->policy_for(channel);
  std::string from_epoch = epoch;
  uint64_t from = offset;
  bool implicit = false;
  if (!resume && policy.durable && ctx.durable != nullptr) {
    if (namespace_of(channel) == kUserNamespace) {
      // The offline inbox: a device that does not resume gets what it has not acked
      // (everything kept, the first time).
      if (!ctx.durable->ack_cursor(channel, device_key(), from_epoch, from)) {
        from_epoch.clear();
        from = 0;
      }
      implicit = true;
    } else if (policy.latest_value) {
      // A state channel: the snapshot (latest value per key) first, then updates.
      from_epoch.clear();
      from = 0;
      implicit = true;
    }
  }
  const int64_t now = unix_ms();
  SubscribeOutcome o = ctx.hub->subscribe(loop_->index(), channel, resume || implicit, from_epoch, from, now, replay);
  if (implicit && codec::ok(o.status) && !o.recovered && o.durable) {
    // The acked position belongs to a lost history (new epoch): everything kept is unread.
    std::vector<PublicationPtr> all;
    if (ctx.durable->read_since(channel, "", 0, now, all)) {
      for (PublicationPtr& p : all) {
        if (p->offset() <= o.position.offset) replay.push_back(std::move(p));
      }
      o.recovered = true;
    }
  }
  SessionSubscribeResult r;
  r.status = o.status;
  r.epoch = o.position.epoch;
  r.offset = o.position.offset;
  r.recovered = o.recovered;
  r.durable = o.durable;
  if (codec::ok(o.status)) loop_->add_subscriber(channel, id_);
  return r;
}

void Connection::unsubscribe(const std::string& channel) noexcept {
  loop_->context().hub->unsubscribe(loop_->index(), channel);
  loop_->remove_subscriber(channel, id_);
  // No Publication of the channel may follow the UnsubscribeOk the session queues next.
  lanes_.discard_channel(channel);
}

SessionPublishResult Connection::publish(SessionPublish&& p) noexcept {
  ServerContext& ctx = loop_->context();
  PublishDraft d;
  d.channel = std::move(p.channel);
  d.message_id = std::move(p.message_id);
  d.type = std::move(p.type);
  d.content_type = std::move(p.content_type);
  d.collapse_key = std::move(p.collapse_key);
  d.priority = p.priority;
  d.ttl_s = p.ttl_s;
  d.dismiss_on_read = p.dismiss_on_read;
  d.payload = std::move(p.payload);
  publish_state_ |= static_cast<uint8_t>(kPublisher | (p.priority <= 1 ? kPublishedUrgent : kPublishedBulk));
  const auto to_result = [](const PublishOutcome& o, Metrics* m) {
    if (codec::ok(o.status)) {
      m->published(PublishSource::kClient);
      if (o.duplicate) m->dedup_hit();
    } else {
      m->publish_error();
    }
    SessionPublishResult r;
    r.status = o.status;
    r.offset = o.offset;
    r.epoch = o.epoch;
    r.duplicate = o.duplicate;
    return r;
  };
  // Durable: answered once the store committed it, on this loop (the connection may
  // be gone by then). Every other publish is answered at once and needs no callback.
  PublishDone done;
  if (ctx.hub->may_defer(d.channel)) {
    done = [loop = loop_, id = id_, rid = p.request_id, channel = d.channel, to_result](const PublishOutcome& out) {
      loop->post([id, rid, channel, out, to_result](Loop& l) {
        SessionPublishResult r = to_result(out, l.context().metrics);
        if (Connection* c = l.find(id)) c->publish_done(rid, channel, r);
      });
    };
  }
  PublishOutcome o;
  const bool now = ctx.hub->publish(std::move(d), unix_ms(), loop_->now_ms(), std::move(done), o);
  if (!now) {
    SessionPublishResult r;
    r.pending = true;
    return r;
  }
  return to_result(o, ctx.metrics);
}

void Connection::publish_done(uint64_t request_id, const std::string& channel, const SessionPublishResult& r) {
  if (closing_) return;
  session_.on_publish_done(request_id, channel, r);
  after_output();
}

void Connection::send_dismiss(const std::string& channel, uint64_t offset, const std::string& message_id) {
  if (closing_) return;
  session_.send_dismiss(channel, offset, message_id);
  after_output();
}

void Connection::on_ack(const std::string& channel, const std::string& epoch, uint64_t offset) noexcept {
  // Live channels keep no per-device state; durable ones record receipts and the device's cursor.
  ServerContext& ctx = loop_->context();
  if (ctx.durable == nullptr || !user_counted_ || !ctx.config->policy_for(channel).durable) return;
  ctx.durable->note_ack(session_.user_id(), device_key(), channel, epoch, offset, unix_ms());
}

}  // namespace herald::server
