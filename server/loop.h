// One event loop thread: owns its connections (by id), the loop-local index of
// which connection subscribed to which channel, a timer heap shared by all its
// connections (no timer per connection), and the end-of-iteration flush that
// corks every connection's output into one write. Other threads talk to it only
// by posting (MPSC queue + wakeup).
#pragma once

#include <event2/event.h>
#include <sys/epoll.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <queue>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "codec/message_reader.h"
#include "server/batch_writer.h"
#include "server/delivery_lanes.h"
#include "server/id_list.h"
#include "server/metrics.h"
#include "server/publication.h"

namespace herald::server {

class Connection;
struct ServerContext;

// A connection's id: bits 56-63 its loop's index, bits 24-55 a serial number
// (per loop, wrapping after 2^32 connections), bits 0-23 its slot in the loop's table.
using ConnectionId = uint64_t;
inline constexpr uint64_t kConnectionSlotBits = 24;
inline constexpr uint64_t kConnectionSlotMask = (uint64_t{1} << kConnectionSlotBits) - 1;
inline uint32_t connection_serial(ConnectionId id) noexcept { return static_cast<uint32_t>(id >> kConnectionSlotBits); }
inline uint32_t connection_slot(ConnectionId id) noexcept { return static_cast<uint32_t>(id & kConnectionSlotMask); }

// Monotonic and wall clocks in the units the sans-IO modules take.
uint64_t monotonic_ms() noexcept;
uint64_t monotonic_us() noexcept;
int64_t unix_ms() noexcept;

class Loop {
 public:
  Loop(size_t index, ServerContext* context);
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  void start();  // runs the loop on its own thread
  void join();

  // ---- any thread ----
  void post(std::function<void(Loop&)> fn);
  // From the hub's sink, under the channel lock: cheap, ordered per channel.
  // `deliveries`: the channel's subscribers on this loop (added to backlog()).
  // Urgent ones (P0/P1) go ahead of every P2/P3 publication not yet delivered, even in
  // the middle of a long delivery: a risk alert does not wait behind a flood.
  void post_publication(PublicationPtr publication, uint32_t deliveries = 1);
  // Deliveries posted to this loop and not yet queued to its connections.
  uint64_t backlog() const noexcept { return backlog_.load(std::memory_order_relaxed); }
  // An accepted socket handed to this loop. `peer_ip`: the limiter's key from
  // ConnectionLimiter::add_connection (the connection keeps the pointer).
  void post_connection(int fd, bool tls, const std::string* peer_ip, bool ws = false);
  // Graceful stop: GoAway to every connection, flush, close; the loop thread
  // exits when all are gone or after `deadline_ms`.
  void post_shutdown(uint32_t deadline_ms);
  size_t connection_count() const noexcept { return connection_count_.load(std::memory_order_relaxed); }

  // ---- loop thread only ----
  size_t index() const noexcept { return index_; }
  event_base* base() const noexcept { return base_; }
  ServerContext& context() const noexcept { return *context_; }
  codec::CodecContext& codec() noexcept { return codec_; }
  std::span<uint8_t> read_buffer() noexcept { return read_buffer_; }
  // Counters every connection's DeliveryLanes of this loop share (folded into the
  // process Metrics twice a second, see report_counters).
  LaneCounters* lane_counters() noexcept { return &lane_counters_; }
  // P0 publish-to-socket latency, counted per subscriber by this loop's connections
  // (folded into Metrics::add_p0_latency with the counters above).
  LatencyCounts& p0_latency() noexcept { return p0_latency_; }
  // The monotonic time read once at the start of the current callback: a fan-out to
  // thousands of connections reads the clock once, not once per queued message.
  // Callbacks of this loop (its own and its connections') call refresh_clock() first.
  uint64_t now_ms() const noexcept { return now_ms_; }
  uint64_t refresh_clock() noexcept { return now_ms_ = monotonic_ms(); }

  // Output queued: write at the end of this loop iteration (one write per connection).
  void schedule_flush(Connection* c);
  // Free the connection after the current callback (two-phase close).
  void schedule_reap(Connection* c);
  // Call c->on_timer() at (or soon after) `deadline_ms`.
  void schedule_timer(Connection* c, uint64_t deadline_ms);

  // Publish admission (a publisher must not queue work faster than the loops hand it
  // out, or memory grows without bound and a P0 waits behind all of it): true when
  // a connection that just published (`urgent`: only P0/P1) must stop reading until
  // every loop's backlog is down again. Bulk (P2/P3) publishers stop once a loop is
  // more than `publish_backlog` (config delivery.publish_backlog) deliveries behind,
  // urgent ones only at kUrgentBacklogFactor times that.
  static constexpr uint64_t kUrgentBacklogFactor = 8;
  bool admission_closed(bool urgent) const noexcept;
  // True if some loop's backlog() is above `deliveries`.
  bool backlog_above(uint64_t deliveries) const noexcept;
  // The same for any thread (the HTTP API refuses publishes with kRateLimited then).
  static bool admission_closed(const std::vector<std::unique_ptr<Loop>>& loops, uint64_t publish_backlog,
                               bool urgent) noexcept;
  static bool backlog_above(const std::vector<std::unique_ptr<Loop>>& loops, uint64_t deliveries) noexcept;
  // Stop reading `c` (it published past admission_closed); it resumes when every
  // loop's backlog is below half of publish_backlog (checked every millisecond meanwhile).
  void pause_reader(Connection* c);

  Connection* find(ConnectionId id) const;
  // Plain-TCP sockets in the batch writer's fixed-file table, at their connection's slot
  // (see BatchWriter::open_files). register_file: true if `fd` is in the table now; a
  // registered socket must be unregistered before its descriptor is closed.
  bool register_file(ConnectionId id, int fd) noexcept;
  void unregister_file(ConnectionId id) noexcept;
  // Plain-TCP and WebSocket sockets are watched in the loop's own epoll set, which
  // libevent watches as one descriptor: a connection then costs one kernel epoll entry,
  // not a 128-byte libevent event and libevent's per-descriptor entry as well.
  // `events`: EPOLLIN and/or EPOLLOUT; `in_set`: the socket is in the set already;
  // events 0 removes it. False if the kernel refused.
  bool watch_socket(int fd, ConnectionId id, bool in_set, uint32_t events) noexcept;
  // Registries of this loop's connections by channel and by user. A personal channel
  // `user:<id>` is kept in its user's entry, not in a map entry of its own.
  void add_subscriber(const std::string& channel, ConnectionId id);
  void remove_subscriber(const std::string& channel, ConnectionId id);
  void add_user(const std::string& user, ConnectionId id);
  void remove_user(const std::string& user, ConnectionId id);
  std::vector<Connection*> connections_of(const std::string& user) const;
  bool shutting_down() const noexcept { return shutting_down_; }

 private:
  static void on_wakeup(evutil_socket_t, short, void* arg);
  static void on_sockets(evutil_socket_t, short, void* arg);
  static void on_flush(evutil_socket_t, short, void* arg);
  static void on_timer(evutil_socket_t, short, void* arg);
  static void on_shutdown_deadline(evutil_socket_t, short, void* arg);
  static void on_report(evutil_socket_t, short, void* arg);
  static void on_resume_readers(evutil_socket_t, short, void* arg);
  // Adds what this loop counted since the last call (frames and bytes per type,
  // publications queued and shed per priority, queued bytes) to the process Metrics:
  // the hot path counts in plain loop-local integers, never in shared atomics.
  void report_counters();
  void drain_posts();
  // Delivers the urgent publications posted so far; drain_posts calls it first, and
  // again between bulk publications whenever more have come.
  void deliver_urgent();
  void deliver(const PublicationPtr& p);
  void flush_and_reap();
  // Takes the iteration's flush list (its storage becomes the rounds' scratch).
  void flush_batched(std::vector<ConnectionId>&& flush);
  static constexpr unsigned kBatchEntries = 1024;  // submission slots; more sends take rounds
  // Fixed-file table size: connections in higher slots send by descriptor.
  static constexpr unsigned kFixedFiles = 32768;
  static unsigned fixed_file_slots() noexcept;  // kFixedFiles, at most the open-files limit
  void arm_timer();
  void maybe_exit();

  const size_t index_;
  ServerContext* context_;
  event_base* base_ = nullptr;
  event* wakeup_ev_ = nullptr;
  event* flush_ev_ = nullptr;
  event* timer_ev_ = nullptr;
  event* shutdown_ev_ = nullptr;
  event* report_ev_ = nullptr;
  event* resume_ev_ = nullptr;
  int sockets_fd_ = -1;             // the epoll set of watch_socket()
  event* sockets_ev_ = nullptr;     // libevent's watch on it
  static constexpr size_t kSocketEvents = 4096;  // per callback (as libevent's own epoll at most); more wait for the next iteration
  std::array<epoll_event, kSocketEvents> socket_events_{};
  static constexpr int kUrgentCheckEvery = 32;  // socket events between looks at posted urgent publications
  static constexpr ConnectionId kServed = 0;     // marks a handled event; no connection has id 0 (serials start at 1)
  std::thread thread_;
  codec::CodecContext codec_;
  std::vector<uint8_t> read_buffer_;
  LaneCounters lane_counters_;
  codec::FrameTally inbound_tally_;
  LaneCounters reported_lanes_;       // lane_counters_ as of the last report
  LatencyCounts p0_latency_;          // see p0_latency(); cleared at each report
  codec::FrameTally reported_inbound_;  // inbound_tally_ as of the last report

  std::mutex post_mu_;
  std::vector<std::function<void(Loop&)>> posted_;
  std::vector<PublicationPtr> posted_publications_;
  std::vector<PublicationPtr> posted_urgent_;  // P0/P1: delivered before posted_publications_
  std::atomic<bool> wakeup_pending_{false};
  std::atomic<bool> urgent_pending_{false};  // posted_urgent_ is not empty
  uint64_t posted_deliveries_ = 0;     // under post_mu_: what posted_publications_ adds to backlog_
  uint64_t posted_urgent_deliveries_ = 0;  // under post_mu_: the same for posted_urgent_
  std::atomic<uint64_t> backlog_{0};  // see backlog()
  std::vector<ConnectionId> paused_readers_;

  // The loop's connections by slot (the low bits of their ids): a vector, not a map,
  // so that a connection costs one pointer here. Freed slots are reused.
  std::vector<std::unique_ptr<Connection>> slots_;
  std::vector<uint32_t> free_slots_;
  size_t live_ = 0;  // non-null slots
  std::atomic<size_t> connection_count_{0};
  uint32_t next_serial_ = 1;
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  struct UserEntry {
    IdList connections;  // the user's authenticated connections on this loop
    IdList personal;     // those subscribed to user:<id>
  };
  // Subscribers of `channel` on this loop; null if none.
  const IdList* subscribers_of(std::string_view channel) const;
  std::unordered_map<std::string, IdList, StringHash, std::equal_to<>> subscribers_;  // channel -> local subscribers (not user:)
  std::unordered_map<std::string, UserEntry, StringHash, std::equal_to<>> users_;     // user -> local connections
  std::vector<ConnectionId> pending_flush_;
  BatchWriter writer_;  // delivery.io_uring: the flush's writes in one submission
  struct BatchSend {
    ConnectionId id;
    size_t want;
  };
  std::vector<BatchSend> batch_;
  std::vector<ConnectionId> next_round_;  // flush_batched: kept to reuse its capacity
  std::vector<ConnectionId> pending_reap_;
  using TimerEntry = std::pair<uint64_t, ConnectionId>;
  std::priority_queue<TimerEntry, std::vector<TimerEntry>, std::greater<>> timers_;
  uint64_t armed_deadline_ = UINT64_MAX;
  uint64_t now_ms_ = 0;  // see now_ms()
  std::vector<uint64_t> delivered_accept_us_;  // publish-to-write latency samples of this iteration
  bool shutting_down_ = false;
};

}  // namespace herald::server
