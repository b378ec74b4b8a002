// Event loop thread: posting, delivery to local subscribers, corked flush,
// timer heap, two-phase reaping.
#include "server/loop.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "server/connection.h"
#include "server/metrics.h"
#include "server/server_context.h"

namespace herald::server {
namespace {

constexpr size_t kReadBufferSize = 64 * 1024;  // one per loop, shared by its connections
constexpr int kPriorityIo = 0;
constexpr int kPriorityFlush = 1;  // runs after every I/O callback of the iteration
constexpr timeval kReportInterval{0, 500'000};  // how often loop counters reach /metrics

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
  codec_.inbound_tally = &inbound_tally_;
  event_priority_set(wakeup_ev_, kPriorityIo);
  event_priority_set(timer_ev_, kPriorityIo);
  event_priority_set(flush_ev_, kPriorityFlush);
  event_add(wakeup_ev_, nullptr);  // never fires by itself: only event_active() wakes it
  event_add(report_ev_, &kReportInterval);
}

Loop::~Loop() {
  join();
  for (auto& [id, c] : connections_) c->release();
  connections_.clear();
  report_counters();
  event_free(report_ev_);
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

void Loop::post_publication(PublicationPtr publication) {
  {
    std::lock_guard lock(post_mu_);
    posted_publications_.push_back(std::move(publication));
  }
  if (!wakeup_pending_.exchange(true)) event_active(wakeup_ev_, EV_READ, 0);
}

void Loop::post_connection(int fd, bool tls, std::string peer_ip, bool ws) {
  post([fd, tls, ws, ip = std::move(peer_ip)](Loop& loop) mutable {
    if (loop.shutting_down_) {
      ::close(fd);
      loop.context_->limiter->remove_connection(ip);
      return;
    }
    const ConnectionId id = (static_cast<uint64_t>(loop.index_) << 56) | loop.next_id_++;
    auto c = std::make_unique<Connection>(&loop, id, fd, tls, ip, ws);
    Connection* raw = c.get();
    loop.connections_.emplace(id, std::move(c));
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
    for (auto& [id, c] : loop.connections_) c->go_away(1000);
    timeval tv{static_cast<time_t>(deadline_ms / 1000), static_cast<suseconds_t>((deadline_ms % 1000) * 1000)};
    evtimer_add(loop.shutdown_ev_, &tv);
    loop.maybe_exit();
  });
}

void Loop::on_wakeup(evutil_socket_t, short, void* arg) { static_cast<Loop*>(arg)->drain_posts(); }

void Loop::drain_posts() {
  std::vector<std::function<void(Loop&)>> fns;
  std::vector<PublicationPtr> pubs;
  {
    std::lock_guard lock(post_mu_);
    fns.swap(posted_);
    pubs.swap(posted_publications_);
    wakeup_pending_.store(false);
  }
  // Publications first: one accepted before a shutdown (or any other post) was
  // queued must reach its subscribers before they are told GoAway. Publications
  // of one channel arrive in offset order (posted under the channel's lock).
  for (const auto& p : pubs) deliver(p);
  for (auto& fn : fns) fn(*this);
}

void Loop::deliver(const PublicationPtr& p) {
  auto it = subscribers_.find(p->channel());
  if (it == subscribers_.end()) return;
  bool any = false;
  // No copy of the list: delivering never edits it (a connection that closes leaves
  // it when it is reaped, after this callback), and `it` stays valid.
  const IdList& ids = it->second;
  for (size_t i = 0; i < ids.size(); ++i) {
    Connection* c = find(ids[i]);
    if (c == nullptr) continue;
    c->deliver(p);
    any = true;
  }
  if (any) delivered_accept_us_.push_back(p->accepted_us());
}

// ---------------------------------------------------------------- flush and reap

void Loop::schedule_flush(Connection* c) {
  pending_flush_.push_back(c->id());
  event_active(flush_ev_, EV_READ, 0);
}

void Loop::schedule_reap(Connection* c) {
  pending_reap_.push_back(c->id());
  event_active(flush_ev_, EV_READ, 0);
}

void Loop::on_flush(evutil_socket_t, short, void* arg) { static_cast<Loop*>(arg)->flush_and_reap(); }

void Loop::flush_and_reap() {
  std::vector<ConnectionId> flush;
  flush.swap(pending_flush_);
  std::sort(flush.begin(), flush.end());
  flush.erase(std::unique(flush.begin(), flush.end()), flush.end());
  for (ConnectionId id : flush) {
    if (Connection* c = find(id)) c->flush();
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
    auto it = connections_.find(id);
    if (it == connections_.end()) continue;
    it->second->release();
    context_->metrics->closed(it->second->close_reason());
    connections_.erase(it);
    connection_count_.fetch_sub(1, std::memory_order_relaxed);
  }
  if (!pending_flush_.empty() || !pending_reap_.empty()) event_active(flush_ev_, EV_READ, 0);
  maybe_exit();
}

void Loop::maybe_exit() {
  if (shutting_down_ && connections_.empty()) event_base_loopbreak(base_);
}

void Loop::on_shutdown_deadline(evutil_socket_t, short, void* arg) {
  auto* loop = static_cast<Loop*>(arg);
  spdlog::get("loop")->warn("loop {}: shutdown deadline passed with {} connections open", loop->index_,
                            loop->connections_.size());
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
  const uint64_t now = monotonic_ms();
  while (!loop->timers_.empty() && loop->timers_.top().first <= now) {
    const auto [deadline, id] = loop->timers_.top();
    loop->timers_.pop();
    Connection* c = loop->find(id);
    // Stale entries (the connection moved its deadline, or is gone) are skipped.
    if (c != nullptr && c->timer_deadline() == deadline) c->on_timer();
  }
  loop->arm_timer();
}

// ---------------------------------------------------------------- registries

Connection* Loop::find(ConnectionId id) const {
  auto it = connections_.find(id);
  return it == connections_.end() ? nullptr : it->second.get();
}

void Loop::add_subscriber(const std::string& channel, ConnectionId id) { subscribers_[channel].push_back(id); }

namespace {

void remove_id(std::unordered_map<std::string, IdList>& map, const std::string& key, ConnectionId id) {
  auto it = map.find(key);
  if (it == map.end()) return;
  it->second.remove(id);
  if (it->second.empty()) map.erase(it);
}

}  // namespace

void Loop::remove_subscriber(const std::string& channel, ConnectionId id) { remove_id(subscribers_, channel, id); }

void Loop::add_user(const std::string& user, ConnectionId id) { users_[user].push_back(id); }

void Loop::remove_user(const std::string& user, ConnectionId id) { remove_id(users_, user, id); }

std::vector<Connection*> Loop::connections_of(const std::string& user) const {
  std::vector<Connection*> out;
  auto it = users_.find(user);
  if (it == users_.end()) return out;
  for (size_t i = 0; i < it->second.size(); ++i) {
    if (Connection* c = find(it->second[i])) out.push_back(c);
  }
  return out;
}

}  // namespace herald::server
