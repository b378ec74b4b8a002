// Process-wide counters, gauges and one latency histogram of heraldd, exported as
// Prometheus text (GET /metrics) and as JSON (GET /v1/stats).
// Lock-free and allocation-free on the event path; knows nothing of sockets or libevent.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "codec/frame_header.h"

namespace herald::server {

// Why a connection ended. Label values are to_string() ("slow_consumer").
enum class CloseReason : uint8_t {
  kClientClosed,      // peer closed (EOF) or sent a connection-level Error
  kProtocolError,     // a codec/session status closed it (bad frame, bad state, ...)
  kAuthFailed,        // Auth or Refresh rejected
  kTokenExpired,      // token expired without a refresh
  kHandshakeTimeout,  // Hello/Auth not done in time
  kHeartbeatTimeout,  // no Pong in time
  kSlowConsumer,      // output above the hard limit (or soft limit for too long)
  kServerShutdown,    // GoAway at shutdown
  kDisconnectedByApi, // POST /v1/users/{id}/disconnect
  kLimit,             // refused by a connection limit (see connection_rejected)
  kIoError,           // socket or TLS error
  kCount
};
// Snake-case label value, e.g. "slow_consumer"; "unknown" for out-of-range values.
std::string_view to_string(CloseReason r) noexcept;

// Which connection limit refused a connection.
enum class RejectReason : uint8_t { kLimitTotal, kLimitIp, kLimitUser, kAcceptRate, kCount };
// "limit_total", "limit_ip", "limit_user", "accept_rate"
std::string_view to_string(RejectReason r) noexcept;

// Who published: a backend through the HTTP API, or a client connection (Publish frame).
enum class PublishSource : uint8_t { kApi, kClient, kCount };
std::string_view to_string(PublishSource s) noexcept;  // "api", "client"

// Why an Auth/Refresh failed.
enum class AuthFailure : uint8_t { kBadToken, kExpired, kLimit, kCount };
std::string_view to_string(AuthFailure a) noexcept;  // "bad_token", "expired", "limit"

// Routes of the HTTP API (http_api.h), for api_requests{route, status}.
enum class ApiRoute : uint8_t {
  kPublish,         // POST /v1/publish
  kPublishBatch,    // POST /v1/publish/batch
  kUserInfo,        // GET /v1/users/{id}
  kUserDisconnect,  // POST /v1/users/{id}/disconnect
  kStats,           // GET /v1/stats
  kHealthz,         // GET /healthz
  kMetrics,         // GET /metrics
  kOther,           // anything else (404, 405, libevent-level errors we see)
  kCount
};
std::string_view to_string(ApiRoute r) noexcept;  // "publish", "publish_batch", ...

inline constexpr size_t kPriorityCount = 4;           // P0..P3
inline constexpr size_t kFrameTypeSlots = codec::kTypeMask + 1;  // every 12-bit frame type
inline constexpr size_t kStatusClasses = 5;           // 1xx..5xx
// Upper bounds (inclusive, microseconds) of the delivery latency buckets; a last
// +Inf bucket follows.
inline constexpr std::array<uint64_t, 12> kLatencyBucketsUs = {
    25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000};
inline constexpr size_t kLatencyBucketCount = kLatencyBucketsUs.size() + 1;

// The bucket of `us`: the first bound at or above it, or the last (+Inf) bucket.
inline size_t latency_bucket(uint64_t us) noexcept {
  // 12 bounds: a linear scan is as fast as a binary search and branch-predicts
  // well, since most observations fall in the same few buckets.
  size_t i = 0;
  while (i < kLatencyBucketsUs.size() && us > kLatencyBucketsUs[i]) ++i;
  return i;
}

// A latency histogram in plain integers: non-cumulative per-bucket counts (last =
// above the largest bound); count is their sum. Also what an event loop counts in its
// own memory before adding it to the process Metrics (Metrics::add_p0_latency).
struct LatencyCounts {
  std::array<uint64_t, kLatencyBucketCount> buckets{};
  uint64_t sum_us = 0;
  uint64_t count = 0;
  void observe(uint64_t us) noexcept {
    ++buckets[latency_bucket(us)];
    sum_us += us;
    ++count;
  }
};

// Every frame type the codec defines, in its list order (the exported ones).
inline constexpr codec::FrameType kKnownFrameTypes[] = {
#define HERALD_METRICS_FRAME_TYPE(name, number, control) codec::FrameType::name,
    HERALD_FRAME_TYPE_LIST(HERALD_METRICS_FRAME_TYPE)
#undef HERALD_METRICS_FRAME_TYPE
};
inline constexpr size_t kKnownFrameTypeCount = sizeof(kKnownFrameTypes) / sizeof(kKnownFrameTypes[0]);

// A plain copy of every value, read counter by counter (not one atomic cut:
// numbers may be mid-update relative to each other by a few events).
struct MetricsSnapshot {
  struct FrameCount {
    codec::FrameType type;
    uint64_t in = 0;
    uint64_t out = 0;
    uint64_t bytes_in = 0;
    uint64_t bytes_out = 0;
  };
  uint64_t connections_accepted = 0;
  int64_t connections_current = 0;
  std::array<uint64_t, static_cast<size_t>(RejectReason::kCount)> connections_rejected{};
  std::array<uint64_t, static_cast<size_t>(CloseReason::kCount)> closes{};
  std::array<FrameCount, kKnownFrameTypeCount> frames{};  // kKnownFrameTypes order
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  std::array<uint64_t, static_cast<size_t>(PublishSource::kCount)> publishes{};
  uint64_t publish_errors = 0;
  uint64_t dedup_hits = 0;
  uint64_t publish_pauses = 0;
  std::array<uint64_t, kPriorityCount> deliveries{};
  std::array<uint64_t, kPriorityCount> shed{};
  std::array<uint64_t, kPriorityCount> collapsed{};
  std::array<uint64_t, static_cast<size_t>(AuthFailure::kCount)> auth_failures{};
  int64_t subscriptions_current = 0;
  int64_t queued_bytes = 0;
  uint64_t history_bytes = 0;         // live channels' kept publications (MemoryHistory::memory_bytes)
  uint64_t history_publications = 0;  // how many they are
  uint64_t history_trimmed = 0;       // dropped for limits.history_memory_bytes
  std::array<std::array<uint64_t, kStatusClasses>, static_cast<size_t>(ApiRoute::kCount)> api_requests{};
  LatencyCounts latency;         // observe_delivery_latency_us
  LatencyCounts p0_latency;      // add_p0_latency
};

// One instance per process, created at start-up and outliving every loop,
// listener and HttpApi that records into it. Every recording method is
// thread-safe, noexcept and costs one relaxed atomic add (two where a gauge
// moves with a counter, and for the histogram: bucket + sum). Readers
// (snapshot, prometheus_text, stats_json) may run on any thread at any time.
//
// Later optimisation: per-loop shards (one Metrics-like block per event loop,
// summed by the readers) would remove cross-core cache-line traffic on the hot
// counters (frames, bytes, deliveries); the recording API would not change.
//
// Who records what (so nothing is counted twice):
//   connection_accepted / closed / connection_rejected: listener and connection owner.
//     Every accepted connection is closed() exactly once; a connection refused by a
//     limit after accept is connection_rejected(r) AND closed(kLimit).
//   frame_in/out, frame_bytes_in/out: the event loop, from its own plain counters
//     (codec::FrameTally, LaneCounters) twice a second (Loop::report_counters);
//     bytes_in/out: the connection (per socket read or write).
//   published / dedup_hit / publish_error: the front end that received the publish
//     (HttpApi for kApi, the session for kClient), not the hub.
//   delivered / shed / queued_bytes: the event loop, from LaneCounters (delivered =
//     queued on a connection's lane; shed = refused or dropped for the output limit).
//   observe_delivery_latency_us: the loop, when a publication's writes were made.
//   add_p0_latency: the event loop, from what its connections timed when a P0
//     publication's last byte was written to their sockets (Loop::report_counters).
//   auth_failure: the connection (from the session's fatal status). subscriptions: the session.
//   set_history / history_trimmed: the server's history timer (ChannelHub::trim_history).
//   api_request: HttpApi.
class Metrics {
 public:
  Metrics() = default;
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // --- connections
  void connection_accepted() noexcept {
    add(connections_accepted_);
    connections_current_.fetch_add(1, std::memory_order_relaxed);
  }
  void connection_rejected(RejectReason r) noexcept { add(rejected_[index(r)]); }
  // Counts the close and lowers connections_current.
  void closed(CloseReason r) noexcept {
    add(closes_[index(r)]);
    connections_current_.fetch_sub(1, std::memory_order_relaxed);
  }

  // --- frames and bytes. Frame types are indexed by their 12-bit number; only
  // known types are exported.
  void frame_in(codec::FrameType t, uint64_t n = 1) noexcept { add(frames_in_[type_index(t)], n); }
  void frame_out(codec::FrameType t, uint64_t n = 1) noexcept { add(frames_out_[type_index(t)], n); }
  // Wire bytes (headers and bodies) of those frames.
  void frame_bytes_in(codec::FrameType t, uint64_t n) noexcept { add(frame_bytes_in_[type_index(t)], n); }
  void frame_bytes_out(codec::FrameType t, uint64_t n) noexcept { add(frame_bytes_out_[type_index(t)], n); }
  void bytes_in(uint64_t n) noexcept { add(bytes_in_, n); }
  void bytes_out(uint64_t n) noexcept { add(bytes_out_, n); }

  // --- publishing. published(): the publish was accepted (kOk), duplicates
  // included; dedup_hit(): in addition, when the accepted publish was a
  // duplicate of an earlier message id (answered with the original offset, not
  // delivered again); publish_error(): rejected with a non-kOk status.
  void published(PublishSource s) noexcept { add(publishes_[index(s)]); }
  void publish_error() noexcept { add(publish_errors_); }
  void dedup_hit() noexcept { add(dedup_hits_); }
  // Publish admission (Loop::admission_closed): a publishing connection stopped being
  // read, or an API publish was refused with kRateLimited, because an event loop was
  // too far behind.
  void publish_paused() noexcept { add(publish_pauses_); }

  // --- delivery. Priorities outside 0..3 count as P3 (server convention).
  void delivered(int priority, uint64_t n = 1) noexcept { add(deliveries_[priority_index(priority)], n); }
  void shed(int priority, uint64_t n = 1) noexcept { add(shed_[priority_index(priority)], n); }
  // Queued state-channel publications replaced by a newer one with the same collapse key.
  void collapsed(int priority, uint64_t n = 1) noexcept { add(collapsed_[priority_index(priority)], n); }
  // Publish accepted -> publication written to a subscriber's socket, in microseconds:
  // once per publication and loop, at the end of the iteration that wrote it to its
  // subscribers (a socket that was full still holds part of it).
  void observe_delivery_latency_us(uint64_t us) noexcept { latency_.observe(us); }
  // Publish accepted -> the last byte of a P0 publication written to one subscriber's
  // socket: once per subscriber, however long the socket had no room. An event loop
  // counts these in its own memory and adds what it counted since the last time.
  void add_p0_latency(const LatencyCounts& counted) noexcept;

  // --- auth
  void auth_failure(AuthFailure a) noexcept { add(auth_failures_[index(a)]); }

  // --- gauges
  void subscriptions_add(int64_t delta) noexcept { subscriptions_current_.fetch_add(delta, std::memory_order_relaxed); }
  void queued_bytes_add(uint64_t n) noexcept { queued_bytes_.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed); }
  void queued_bytes_sub(uint64_t n) noexcept { queued_bytes_.fetch_sub(static_cast<int64_t>(n), std::memory_order_relaxed); }
  // What the live channels' histories keep now (read from MemoryHistory by a timer).
  void set_history(uint64_t bytes, uint64_t publications) noexcept {
    history_bytes_.store(bytes, std::memory_order_relaxed);
    history_publications_.store(publications, std::memory_order_relaxed);
  }
  // Kept publications dropped because the histories were above limits.history_memory_bytes.
  void history_trimmed(uint64_t n) noexcept { add(history_trimmed_, n); }

  // --- HTTP API: one per answered request. Statuses outside 100..599 count as 5xx.
  void api_request(ApiRoute r, int http_status) noexcept;

  // --- readers
  MetricsSnapshot snapshot() const;
  // Text exposition format 0.0.4: every family has # HELP and # TYPE lines;
  // names are herald_*; counters end in _total; the latency histograms are
  // exported in seconds (herald_delivery_latency_seconds and
  // herald_p0_delivery_latency_seconds, Prometheus base unit).
  std::string prometheus_text() const;
  // The same numbers as JSON for GET /v1/stats (latency in microseconds).
  nlohmann::json stats_json() const;

 private:
  static void add(std::atomic<uint64_t>& c, uint64_t n = 1) noexcept { c.fetch_add(n, std::memory_order_relaxed); }
  template <typename E>
  static size_t index(E e) noexcept {
    const auto i = static_cast<size_t>(e);
    // Out-of-range enum values land in the last slot rather than out of bounds.
    return i < static_cast<size_t>(E::kCount) ? i : static_cast<size_t>(E::kCount) - 1;
  }
  static size_t type_index(codec::FrameType t) noexcept { return static_cast<uint16_t>(t) & codec::kTypeMask; }
  static size_t priority_index(int p) noexcept { return p >= 0 && p < 4 ? static_cast<size_t>(p) : 3; }

  // Hot, frequently written groups start on their own cache lines.
  alignas(64) std::array<std::atomic<uint64_t>, kFrameTypeSlots> frames_in_{};
  alignas(64) std::array<std::atomic<uint64_t>, kFrameTypeSlots> frames_out_{};
  alignas(64) std::array<std::atomic<uint64_t>, kFrameTypeSlots> frame_bytes_in_{};
  alignas(64) std::array<std::atomic<uint64_t>, kFrameTypeSlots> frame_bytes_out_{};
  alignas(64) std::atomic<uint64_t> bytes_in_{0};
  alignas(64) std::atomic<uint64_t> bytes_out_{0};
  alignas(64) std::array<std::atomic<uint64_t>, kPriorityCount> deliveries_{};
  struct alignas(64) Histogram {
    std::array<std::atomic<uint64_t>, kLatencyBucketCount> buckets{};
    std::atomic<uint64_t> sum_us{0};
    void observe(uint64_t us) noexcept;
    LatencyCounts read() const noexcept;
  };
  Histogram latency_;
  Histogram p0_latency_;
  alignas(64) std::atomic<int64_t> queued_bytes_{0};

  alignas(64) std::atomic<uint64_t> connections_accepted_{0};
  std::atomic<int64_t> connections_current_{0};
  std::array<std::atomic<uint64_t>, static_cast<size_t>(RejectReason::kCount)> rejected_{};
  std::array<std::atomic<uint64_t>, static_cast<size_t>(CloseReason::kCount)> closes_{};
  std::array<std::atomic<uint64_t>, static_cast<size_t>(PublishSource::kCount)> publishes_{};
  std::atomic<uint64_t> publish_errors_{0};
  std::atomic<uint64_t> dedup_hits_{0};
  std::atomic<uint64_t> publish_pauses_{0};
  std::array<std::atomic<uint64_t>, kPriorityCount> shed_{};
  std::array<std::atomic<uint64_t>, kPriorityCount> collapsed_{};
  std::array<std::atomic<uint64_t>, static_cast<size_t>(AuthFailure::kCount)> auth_failures_{};
  std::atomic<int64_t> subscriptions_current_{0};
  std::atomic<uint64_t> history_bytes_{0};
  std::atomic<uint64_t> history_publications_{0};
  std::atomic<uint64_t> history_trimmed_{0};
  std::array<std::array<std::atomic<uint64_t>, kStatusClasses>, static_cast<size_t>(ApiRoute::kCount)> api_requests_{};
};

// Prometheus text-format escaping (exposed for tests and other exporters).
// Label values: backslash, double quote and line feed become \\ \" \n.
std::string escape_label_value(std::string_view v);
// HELP text: backslash and line feed become \\ and \n.
std::string escape_help(std::string_view v);

}  // namespace herald::server
