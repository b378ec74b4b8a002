// Event loop thread: posting, delivery to local subscribers, corked flush,
// timer heap, two-phase reaping.
#include "server/loop.h"

#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <stdexcept>

#include "server/connection.h"
#include "server/metrics.h"
#include "server/policy.h"
#include "server/server_context.h"

namespace herald::server {
namespace {

constexpr size_t kReadBufferSize = 64 * 1024;  // one per loop, shared by its connections
// libevent runs only the most urgent non-empty priority queue per iteration. Wake-ups
// and timers come first. Socket events share the flush's queue: a socket callback that
// queues output activates the flush behind itself, so the flush runs after the socket
// callbacks of the same iteration, and busy sockets cannot put it off to a later one.
constexpr int kPriorityIo = 0;
constexpr int kPriorityFlush = 1;
constexpr int kPrioritySockets = kPriorityFlush;
constexpr timeval kReportInterval{0, 500'000};  // how often loop counters reach /metrics
constexpr timeval kResumeRecheck{0, 1000};  // paused publishers: how often the backlog is checked

}  // namespace

uint64_t monotonic_ms() noexcept {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

uint64_t monotonic_us() noexcept {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

int64_t unix_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Loop::Loop(size_t index, ServerContext* context)
    : index_(index), context_(context), codec_(context->session_config.dictionaries), read_buffer_(kReadBufferSize) {
  base_ = event_base_new();
  if (base_ == nullptr) throw std::runtime_error("event_base_new failed");
  event_base_priority_init(base_, 2);
  wakeup_ev_ = event_new(base_, -1, EV_PERSIST | EV_READ, on_wakeup, this);
  flush_ev_ = event_new(base_, -1, 0, on_flush, this);
  timer_ev_ = evtimer_new(base_, on_timer, this);
  shutdown_ev_ = evtimer_new(base_, on_shutdown_deadline, this);
  report_ev_ = event_new(base_, -1, EV_PERSIST, on_report, this);
  resume_ev_ = evtimer_new(base_, on_resume_readers, this);
  sockets_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (sockets_fd_ < 0) throw std::runtime_error(std::string("epoll_create1 failed: ") + std::strerror(errno));
  sockets_ev_ = event_new(base_, sockets_fd_, EV_READ | EV_PERSIST, on_sockets, this);
  event_priority_set(sockets_ev_, kPrioritySockets);
  event_add(sockets_ev_, nullptr);
  codec_.inbound_tally = &inbound_tally_;
  event_priority_set(wakeup_ev_, kPriorityIo);
  event_priority_set(timer_ev_, kPriorityIo);
  event_priority_set(flush_ev_, kPriorityFlush);
  event_add(wakeup_ev_, nullptr);  // never fires by itself: only event_active() wakes it
  event_add(report_ev_, &kReportInterval);
  if (context->config == nullptr || context->config->io_uring) {
    std::string error;
    if (!writer_.open(kBatchEntries, &error)) {
      spdlog::get("loop")->warn("loop {}: io_uring refused ({}); writing with writev", index_, error);
    } else if (!writer_.open_files(fixed_file_slots())) {
      spdlog::get("loop")->info("loop {}: no fixed-file table; sends name their sockets", index_);
    }
  }
}

Loop::~Loop() {
  join();
  for (auto& c : slots_) {
    if (c != nullptr) c->release();
  }
  slots_.clear();
  report_counters();
  event_free(sockets_ev_);
  ::close(sockets_fd_);
  event_free(report_ev_);
  event_free(resume_ev_);
  event_free(wakeup_ev_);
  event_free(flush_ev_);
  event_free(timer_ev_);
  event_free(shutdown_ev_);
  event_base_free(base_);
}

void Loop::start() {
  thread_ = std::thread([this] {
    event_base_loop(base_, EVLOOP_NO_EXIT_ON_EMPTY);
  });
}

void Loop::join() {
  if (thread_.joinable()) thread_.join();
}

// ---------------------------------------------------------------- posting

void Loop::post(std::function<void(Loop&)> fn) {
  {
    std::lock_guard lock(post_mu_);
    posted_.push_back(std::move(fn));
  }
  if (!wakeup_pending_.exchange(true)) event_active(wakeup_ev_, EV_READ, 0);
}

void Loop::post_publication(PublicationPtr publication, uint32_t deliveries) {
  const bool urgent = publication->urgent();
  {
    std::lock_guard lock(post_mu_);
    if (urgent) {
      posted_urgent_.push_back(std::move(publication));
      posted_urgent_deliveries_ += deliveries;
      urgent_pending_.store(true, std::memory_order_relaxed);
    } else {
      posted_publications_.push_back(std::move(publication));
      posted_deliveries_ += deliveries;
    }
  }
  backlog_.fetch_add(deliveries, std::memory_order_relaxed);
  if (!wakeup_pending_.exchange(true)) event_active(wakeup_ev_, EV_READ, 0);
}

void Loop::post_connection(int fd, bool tls, const std::string* peer_ip, bool ws) {
  post([fd, tls, ws, peer_ip](Loop& loop) {
    const std::string& ip = *peer_ip;
    if (loop.shutting_down_) {
      ::close(fd);
      loop.context_->limiter->remove_connection(ip);
      return;
    }
    uint64_t slot;
    if (!loop.free_slots_.empty()) {
      slot = loop.free_slots_.back();
      loop.free_slots_.pop_back();
    } else if (loop.slots_.size() <= kConnectionSlotMask) {
      slot = loop.slots_.size();
      loop.slots_.emplace_back();
    } else {
      spdlog::get("loop")->warn("loop {}: {} connections, no free slot for one from {}", loop.index_, loop.live_, ip);
      ::close(fd);
      loop.context_->limiter->remove_connection(ip);
      return;
    }
    const uint32_t serial = loop.next_serial_++;
    if (loop.next_serial_ == 0) loop.next_serial_ = 1;  // no id is ever kServed (0)
    const ConnectionId id = (static_cast<uint64_t>(loop.index_) << 56) | (uint64_t{serial} << kConnectionSlotBits) | slot;
    loop.slots_[slot] = std::make_unique<Connection>(&loop, id, fd, tls, peer_ip, ws);
    Connection* raw = loop.slots_[slot].get();
    ++loop.live_;
    loop.connection_count_.fetch_add(1, std::memory_order_relaxed);
    loop.context_->metrics->connection_accepted();
    if (!raw->start()) {
      spdlog::get("loop")->warn("loop {}: cannot set up connection from {}", loop.index_, ip);
      loop.schedule_reap(raw);
    }
  });
}

void Loop::post_shutdown(uint32_t deadline_ms) {
  post([deadline_ms](Loop& loop) {
    loop.shutting_down_ = true;
    for (auto& c : loop.slots_) {
      if (c != nullptr) c->go_away(1000);
    }
    timeval tv{static_cast<time_t>(deadline_ms / 1000), static_cast<suseconds_t>((deadline_ms % 1000) * 1000)};
    evtimer_add(loop.shutdown_ev_, &tv);
    loop.maybe_exit();
  });
}

void Loop::on_wakeup(evutil_socket_t, short, void* arg) {
  auto* loop = static_cast<Loop*>(arg);
  loop->refresh_clock();
  loop->drain_posts();
}

void Loop::drain_posts() {
  std::vector<std::function<void(Loop&)>> fns;
  std::vector<PublicationPtr> pubs;
  uint64_t deliveries;
  {
    std::lock_guard lock(post_mu_);
    fns.swap(posted_);
    pubs.swap(posted_publications_);
    deliveries = posted_deliveries_;
    posted_deliveries_ = 0;
    wakeup_pending_.store(false);
  }
  // Publications first: one accepted before a shutdown (or any other post) was
  // queued must reach its subscribers before they are told GoAway. Publications
  // of one channel arrive in offset order (posted under the channel's lock) within
  // each class; an urgent one goes before every bulk one posted after it, and before
  // the bulk ones taken with it, which it may overtake (Session::wants).
  deliver_urgent();
  for (const auto& p : pubs) {
    deliver(p);
    if (urgent_pending_.load(std::memory_order_relaxed)) deliver_urgent();
  }
  backlog_.fetch_sub(deliveries, std::memory_order_relaxed);
  for (auto& fn : fns) fn(*this);
}

void Loop::deliver_urgent() {
  std::vector<PublicationPtr> pubs;
  uint64_t deliveries;
  {
    std::lock_guard lock(post_mu_);
    pubs.swap(posted_urgent_);
    deliveries = posted_urgent_deliveries_;
    posted_urgent_deliveries_ = 0;
    urgent_pending_.store(false, std::memory_order_relaxed);
  }
  for (const auto& p : pubs) deliver(p);
  backlog_.fetch_sub(deliveries, std::memory_order_relaxed);
}

void Loop::deliver(const PublicationPtr& p) {
  const IdList* list = subscribers_of(p->channel());
  if (list == nullptr) return;
  const bool collapse = context_->config->policy_for(p->channel()).latest_value;
  bool any = false;
  // No copy of the list: delivering never edits it (a connection that closes leaves
  // it when it is reaped, after this callback), and the entry stays.
  const IdList& ids = *list;
  // A fan-out's queue entries hold the record through one loop-local counter, not one
  // atomic PublicationPtr copy each (see HeldPublication).
  struct Release {
    void operator()(HeldPublication* h) const noexcept { h->release(); }
  };
  std::unique_ptr<HeldPublication, Release> held(ids.size() > 1 ? HeldPublication::make(p) : nullptr);
  for (size_t i = 0; i < ids.size(); ++i) {
    Connection* c = find(ids[i]);
    if (c == nullptr) continue;
    c->deliver(p, collapse, held.get());
    any = true;
  }
  if (any) delivered_accept_us_.push_back(p->accepted_us());
}

// ---------------------------------------------------------------- publish admission

bool Loop::admission_closed(bool urgent) const noexcept {
  return context_->loops != nullptr && admission_closed(*context_->loops, context_->publish_backlog, urgent);
}

bool Loop::backlog_above(uint64_t deliveries) const noexcept {
  return context_->loops != nullptr && backlog_above(*context_->loops, deliveries);
}

bool Loop::admission_closed(const std::vector<std::unique_ptr<Loop>>& loops, uint64_t publish_backlog,
                            bool urgent) noexcept {
  return backlog_above(loops, urgent ? kUrgentBacklogFactor * publish_backlog : publish_backlog);
}

bool Loop::backlog_above(const std::vector<std::unique_ptr<Loop>>& loops, uint64_t deliveries) noexcept {
  for (const auto& loop : loops) {
    if (loop->backlog() > deliveries) return true;
  }
  return false;
}

void Loop::pause_reader(Connection* c) {
  context_->metrics->publish_paused();
  if (paused_readers_.empty()) evtimer_add(resume_ev_, &kResumeRecheck);
  paused_readers_.push_back(c->id());
}

void Loop::on_resume_readers(evutil_socket_t, short, void* arg) {
  auto* loop = static_cast<Loop*>(arg);
  loop->refresh_clock();
  if (loop->backlog_above(loop->context_->publish_backlog / 2)) {
    evtimer_add(loop->resume_ev_, &kResumeRecheck);
    return;
  }
  std::vector<ConnectionId> ids;
  ids.swap(loop->paused_readers_);
  for (ConnectionId id : ids) {
    if (Connection* c = loop->find(id)) c->resume_reading();
  }
}

// ---------------------------------------------------------------- flush and reap

void Loop::schedule_flush(Connection* c) {
  // event_active takes the base's lock: once per iteration, not once per connection.
  if (pending_flush_.empty() && pending_reap_.empty()) event_active(flush_ev_, EV_READ, 0);
  pending_flush_.push_back(c->id());
}

void Loop::schedule_reap(Connection* c) {
  if (pending_flush_.empty() && pending_reap_.empty()) event_active(flush_ev_, EV_READ, 0);
  pending_reap_.push_back(c->id());
}

void Loop::on_flush(evutil_socket_t, short, void* arg) {
  auto* loop = static_cast<Loop*>(arg);
  loop->refresh_clock();
  loop->flush_and_reap();
}

void Loop::flush_and_reap() {
  // A connection is listed once per iteration (Connection::after_output keeps a flag),
  // or again if it wrote early (urgent output) and queued more afterwards: flushing it
  // twice is harmless, so the list is neither sorted nor deduplicated.
  std::vector<ConnectionId> flush;
  flush.swap(pending_flush_);
  if (writer_.is_open() && flush.size() > 1) {
    flush_batched(std::move(flush));
  } else {
    for (ConnectionId id : flush) {
      if (Connection* c = find(id)) c->flush();
    }
  }
  if (!delivered_accept_us_.empty()) {
    const uint64_t now = monotonic_us();
    for (uint64_t t : delivered_accept_us_) context_->metrics->observe_delivery_latency_us(now > t ? now - t : 0);
    delivered_accept_us_.clear();
  }
  // Phase two of closing: free connections after the callbacks that closed them returned.
  std::vector<ConnectionId> reap;
  reap.swap(pending_reap_);
  for (ConnectionId id : reap) {
    Connection* c = find(id);
    if (c == nullptr) continue;
    c->release();
    context_->metrics->closed(c->close_reason());
    slots_[connection_slot(id)].reset();
    free_slots_.push_back(connection_slot(id));
    --live_;
    connection_count_.fetch_sub(1, std::memory_order_relaxed);
  }
  // Listed during this call while the other list was not empty: nobody activated the event.
  if (!pending_flush_.empty() || !pending_reap_.empty()) event_active(flush_ev_, EV_READ, 0);
  maybe_exit();
}

void Loop::flush_batched(std::vector<ConnectionId>&& flush) {
  // One send per connection per round, all of a round in one submission. A connection
  // whose send went through whole and that has more queued (more than batch_bytes or 64
  // pieces) is in the next round, until every connection is written out or blocked.
  // Connections the writer cannot serve (TLS, WebSocket) flush as usual.
  std::vector<ConnectionId>& round = flush;
  std::vector<ConnectionId>& next = next_round_;
  for (bool first = true; !round.empty(); first = false) {
    if (!writer_.is_open()) {  // it failed in the last round: the rest the usual way
      for (ConnectionId id : round) {
        if (Connection* c = find(id)) c->flush();
      }
      break;
    }
    batch_.clear();
    for (ConnectionId id : round) {
      Connection* c = find(id);
      if (c == nullptr) continue;
      iovec iov[Connection::kMaxIov];
      size_t want = 0;
      const int n = c->prepare_batch(iov, Connection::kMaxIov, want, first);
      if (n < 0) continue;  // listed twice: already in this round
      if (n == 0) {
        c->flush();
        continue;
      }
      writer_.add(c->fd(), iov, static_cast<size_t>(n), batch_.size(),
                  c->fixed_file() ? static_cast<int>(connection_slot(id)) : -1);
      batch_.push_back({id, want});
    }
    next.clear();
    writer_.run([this, &next](uint64_t tag, long result) {
      const BatchSend& b = batch_[tag];
      Connection* c = find(b.id);
      if (c != nullptr && c->batch_written(result, b.want)) next.push_back(b.id);
    });
    if (!writer_.is_open()) {
      spdlog::get("loop")->error("loop {}: io_uring failed; writing with writev from now on", index_);
    }
    round.swap(next);
    if (urgent_pending_.load(std::memory_order_relaxed)) deliver_urgent();
  }
}

void Loop::maybe_exit() {
  if (shutting_down_ && live_ == 0) event_base_loopbreak(base_);
}

void Loop::on_shutdown_deadline(evutil_socket_t, short, void* arg) {
  auto* loop = static_cast<Loop*>(arg);
  spdlog::get("loop")->warn("loop {}: shutdown deadline passed with {} connections open", loop->index_,
                            loop->live_);
  event_base_loopbreak(loop->base_);
}

// ---------------------------------------------------------------- counters

void Loop::on_report(evutil_socket_t, short, void* arg) { static_cast<Loop*>(arg)->report_counters(); }

void Loop::report_counters() {
  Metrics* m = context_->metrics;
  if (m == nullptr) return;
  const LaneCounters& now = lane_counters_;
  LaneCounters& was = reported_lanes_;
  for (int p = 0; p < 4; ++p) {
    if (now.queued[p] != was.queued[p]) m->delivered(p, now.queued[p] - was.queued[p]);
    if (now.shed[p] != was.shed[p]) m->shed(p, now.shed[p] - was.shed[p]);
    if (now.collapsed[p] != was.collapsed[p]) m->collapsed(p, now.collapsed[p] - was.collapsed[p]);
  }
  for (size_t t = 0; t < codec::FrameTally::kSlots; ++t) {
    const auto type = static_cast<codec::FrameType>(t);
    if (now.out.frames[t] != was.out.frames[t]) {
      m->frame_out(type, now.out.frames[t] - was.out.frames[t]);
      m->frame_bytes_out(type, now.out.bytes[t] - was.out.bytes[t]);
    }
    if (inbound_tally_.frames[t] != reported_inbound_.frames[t]) {
      m->frame_in(type, inbound_tally_.frames[t] - reported_inbound_.frames[t]);
      m->frame_bytes_in(type, inbound_tally_.bytes[t] - reported_inbound_.bytes[t]);
    }
  }
  if (p0_latency_.count != 0) {
    m->add_p0_latency(p0_latency_);
    p0_latency_ = LatencyCounts{};
  }
  const int64_t queued_delta = now.queued_bytes - was.queued_bytes;
  if (queued_delta > 0) m->queued_bytes_add(static_cast<uint64_t>(queued_delta));
  if (queued_delta < 0) m->queued_bytes_sub(static_cast<uint64_t>(-queued_delta));
  was = now;
  reported_inbound_ = inbound_tally_;
}

// ---------------------------------------------------------------- timers

void Loop::schedule_timer(Connection* c, uint64_t deadline_ms) {
  timers_.emplace(deadline_ms, c->id());
  if (deadline_ms < armed_deadline_) arm_timer();
}

void Loop::arm_timer() {
  if (timers_.empty()) {
    armed_deadline_ = UINT64_MAX;
    evtimer_del(timer_ev_);
    return;
  }
  const uint64_t deadline = timers_.top().first;
  const uint64_t now = monotonic_ms();
  const uint64_t wait = deadline > now ? deadline - now : 0;
  timeval tv{static_cast<time_t>(wait / 1000), static_cast<suseconds_t>((wait % 1000) * 1000)};
  armed_deadline_ = deadline;
  evtimer_add(timer_ev_, &tv);
}

void Loop::on_timer(evutil_socket_t, short, void* arg) {
  auto* loop = static_cast<Loop*>(arg);
  loop->armed_deadline_ = UINT64_MAX;
  const uint64_t now = loop->refresh_clock();
  while (!loop->timers_.empty() && loop->timers_.top().first <= now) {
    const auto [deadline, id] = loop->timers_.top();
    loop->timers_.pop();
    Connection* c = loop->find(id);
    // Entries of connections that are gone are dropped; the connection decides about the rest.
    if (c != nullptr) c->timer_fired(deadline, now);
  }
  loop->arm_timer();
}

// ---------------------------------------------------------------- registries

unsigned Loop::fixed_file_slots() noexcept {
  // The kernel refuses a table larger than the open-files limit.
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  return static_cast<unsigned>(std::min<rlim_t>(kFixedFiles, lim.rlim_cur));
}

bool Loop::register_file(ConnectionId id, int fd) noexcept {
  return connection_slot(id) < writer_.file_slots() && writer_.set_file(connection_slot(id), fd);
}

void Loop::unregister_file(ConnectionId id) noexcept {
  if (!writer_.set_file(connection_slot(id), -1) && writer_.is_open()) {
    // The table would keep the socket open after close(): stop using the ring.
    spdlog::get("loop")->error("loop {}: cannot take a socket out of the fixed-file table; writing with writev",
                               index_);
    writer_.close();
  }
}

bool Loop::watch_socket(int fd, ConnectionId id, bool in_set, uint32_t events) noexcept {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  const int op = events == 0 ? EPOLL_CTL_DEL : in_set ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  return epoll_ctl(sockets_fd_, op, fd, &ev) == 0;
}

void Loop::on_sockets(evutil_socket_t, short, void* arg) {
  auto* loop = static_cast<Loop*>(arg);
  // Level-triggered: a socket not read to the end is reported again, and if more than
  // kSocketEvents are ready, libevent sees the set still readable in its next iteration.
  const int n = epoll_wait(loop->sockets_fd_, loop->socket_events_.data(), static_cast<int>(kSocketEvents), 0);
  // Served in two passes: first the sockets with room again and a P0 or control frame
  // waiting (on a saturated connection the P0 waited for the client to make room, and
  // must not also wait for the bulk writes to every other socket), then the rest in
  // the kernel's order. (Serving every readable socket before the writable ones was
  // tried: it admits more of a flood first, and W5's P0 p99 got 1.6 times worse.)
  // A thousand busy sockets take milliseconds: urgent publications posted meanwhile are
  // delivered between them, not after.
  int served = 0;
  for (int pass = 0; pass < 2; ++pass) {
    for (int i = 0; i < n; ++i) {
      epoll_event& e = loop->socket_events_[static_cast<size_t>(i)];
      if (e.data.u64 == kServed) continue;
      if (pass == 0 && (e.events & EPOLLOUT) == 0) continue;
      // Connections are freed only in the flush callback, after this one; an event of a
      // connection that stopped watching meanwhile is ignored by on_socket.
      Connection* c = loop->find(e.data.u64);
      if (c != nullptr && pass == 0 && !c->urgent_output()) continue;
      e.data.u64 = kServed;
      if (c == nullptr) continue;
      if (++served % kUrgentCheckEvery == 0 && loop->urgent_pending_.load(std::memory_order_relaxed)) {
        loop->deliver_urgent();
      }
      c->on_socket(e.events);
    }
  }
}

Connection* Loop::find(ConnectionId id) const {
  const uint64_t slot = connection_slot(id);
  if (slot >= slots_.size()) return nullptr;
  Connection* c = slots_[slot].get();
  // A slot reused by a newer connection holds another id: the old one is gone.
  return c != nullptr && c->id() == id ? c : nullptr;
}

namespace {

// The <id> of "user:<id>", or nullopt for any other channel.
std::optional<std::string_view> personal_user(std::string_view channel) noexcept {
  if (namespace_of(channel) != kUserNamespace) return std::nullopt;
  return channel.substr(kUserNamespace.size() + 1);
}

}  // namespace

const IdList* Loop::subscribers_of(std::string_view channel) const {
  if (auto user = personal_user(channel)) {
    auto it = users_.find(*user);
    return it == users_.end() || it->second.personal.empty() ? nullptr : &it->second.personal;
  }
  auto it = subscribers_.find(channel);
  return it == subscribers_.end() ? nullptr : &it->second;
}

void Loop::add_subscriber(const std::string& channel, ConnectionId id) {
  if (auto user = personal_user(channel)) {
    // Only the user's own connections may subscribe, so the entry usually exists already.
    auto it = users_.find(*user);
    if (it == users_.end()) it = users_.try_emplace(std::string(*user)).first;
    it->second.personal.push_back(id);
    return;
  }
  auto it = subscribers_.find(std::string_view(channel));
  if (it == subscribers_.end()) it = subscribers_.try_emplace(channel).first;
  it->second.push_back(id);
}

void Loop::remove_subscriber(const std::string& channel, ConnectionId id) {
  if (auto user = personal_user(channel)) {
    auto it = users_.find(*user);
    if (it == users_.end()) return;
    it->second.personal.remove(id);
    if (it->second.personal.empty() && it->second.connections.empty()) users_.erase(it);
    return;
  }
  auto it = subscribers_.find(std::string_view(channel));
  if (it == subscribers_.end()) return;
  it->second.remove(id);
  if (it->second.empty()) subscribers_.erase(it);
}

void Loop::add_user(const std::string& user, ConnectionId id) {
  auto it = users_.find(std::string_view(user));
  if (it == users_.end()) it = users_.try_emplace(user).first;
  it->second.connections.push_back(id);
}

void Loop::remove_user(const std::string& user, ConnectionId id) {
  auto it = users_.find(std::string_view(user));
  if (it == users_.end()) return;
  it->second.connections.remove(id);
  if (it->second.personal.empty() && it->second.connections.empty()) users_.erase(it);
}

std::vector<Connection*> Loop::connections_of(const std::string& user) const {
  std::vector<Connection*> out;
  auto it = users_.find(std::string_view(user));
  if (it == users_.end()) return out;
  const IdList& ids = it->second.connections;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (Connection* c = find(ids[i])) out.push_back(c);
  }
  return out;
}

}  // namespace herald::server
