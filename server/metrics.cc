// Metrics: recording is inline in metrics.h; this file holds the readers
// (snapshot, Prometheus text, JSON) and the label names.
#include "server/metrics.h"

#include <algorithm>
#include <initializer_list>
#include <utility>

namespace herald::server {

std::string_view to_string(CloseReason r) noexcept {
  switch (r) {
    case CloseReason::kClientClosed: return "client_closed";
    case CloseReason::kProtocolError: return "protocol_error";
    case CloseReason::kAuthFailed: return "auth_failed";
    case CloseReason::kTokenExpired: return "token_expired";
    case CloseReason::kHandshakeTimeout: return "handshake_timeout";
    case CloseReason::kHeartbeatTimeout: return "heartbeat_timeout";
    case CloseReason::kSlowConsumer: return "slow_consumer";
    case CloseReason::kServerShutdown: return "server_shutdown";
    case CloseReason::kDisconnectedByApi: return "disconnected_by_api";
    case CloseReason::kLimit: return "limit";
    case CloseReason::kIoError: return "io_error";
    case CloseReason::kCount: break;
  }
  return "unknown";
}

std::string_view to_string(RejectReason r) noexcept {
  switch (r) {
    case RejectReason::kLimitTotal: return "limit_total";
    case RejectReason::kLimitIp: return "limit_ip";
    case RejectReason::kLimitUser: return "limit_user";
    case RejectReason::kAcceptRate: return "accept_rate";
    case RejectReason::kCount: break;
  }
  return "unknown";
}

std::string_view to_string(PublishSource s) noexcept {
  switch (s) {
    case PublishSource::kApi: return "api";
    case PublishSource::kClient: return "client";
    case PublishSource::kCount: break;
  }
  return "unknown";
}

std::string_view to_string(AuthFailure a) noexcept {
  switch (a) {
    case AuthFailure::kBadToken: return "bad_token";
    case AuthFailure::kExpired: return "expired";
    case AuthFailure::kLimit: return "limit";
    case AuthFailure::kCount: break;
  }
  return "unknown";
}

std::string_view to_string(ApiRoute r) noexcept {
  switch (r) {
    case ApiRoute::kPublish: return "publish";
    case ApiRoute::kPublishBatch: return "publish_batch";
    case ApiRoute::kUserInfo: return "user_info";
    case ApiRoute::kUserDisconnect: return "user_disconnect";
    case ApiRoute::kStats: return "stats";
    case ApiRoute::kHealthz: return "healthz";
    case ApiRoute::kMetrics: return "metrics";
    case ApiRoute::kOther: return "other";
    case ApiRoute::kCount: break;
  }
  return "unknown";
}

void Metrics::Histogram::observe(uint64_t us) noexcept {
  add(buckets[latency_bucket(us)]);
  add(sum_us, us);
}

void Metrics::add_p0_latency(const LatencyCounts& counted) noexcept {
  for (size_t i = 0; i < kLatencyBucketCount; ++i) {
    if (counted.buckets[i] != 0) add(p0_latency_.buckets[i], counted.buckets[i]);
  }
  add(p0_latency_.sum_us, counted.sum_us);
}

LatencyCounts Metrics::Histogram::read() const noexcept {
  // The count is the sum of the buckets, so the +Inf bucket always equals it.
  LatencyCounts c;
  for (size_t i = 0; i < kLatencyBucketCount; ++i) {
    c.buckets[i] = buckets[i].load(std::memory_order_relaxed);
    c.count += c.buckets[i];
  }
  c.sum_us = sum_us.load(std::memory_order_relaxed);
  return c;
}

void Metrics::api_request(ApiRoute r, int http_status) noexcept {
  const size_t cls = http_status >= 100 && http_status <= 599 ? static_cast<size_t>(http_status / 100 - 1) : 4;
  add(api_requests_[index(r)][cls]);
}

MetricsSnapshot Metrics::snapshot() const {
  constexpr auto relaxed = std::memory_order_relaxed;
  MetricsSnapshot s;
  s.connections_accepted = connections_accepted_.load(relaxed);
  s.connections_current = connections_current_.load(relaxed);
  for (size_t i = 0; i < s.connections_rejected.size(); ++i) s.connections_rejected[i] = rejected_[i].load(relaxed);
  for (size_t i = 0; i < s.closes.size(); ++i) s.closes[i] = closes_[i].load(relaxed);
  for (size_t i = 0; i < kKnownFrameTypeCount; ++i) {
    const auto t = kKnownFrameTypes[i];
    const size_t k = type_index(t);
    s.frames[i] = {t, frames_in_[k].load(relaxed), frames_out_[k].load(relaxed), frame_bytes_in_[k].load(relaxed),
                   frame_bytes_out_[k].load(relaxed)};
  }
  s.bytes_in = bytes_in_.load(relaxed);
  s.bytes_out = bytes_out_.load(relaxed);
  for (size_t i = 0; i < s.publishes.size(); ++i) s.publishes[i] = publishes_[i].load(relaxed);
  s.publish_errors = publish_errors_.load(relaxed);
  s.dedup_hits = dedup_hits_.load(relaxed);
  s.publish_pauses = publish_pauses_.load(relaxed);
  for (size_t i = 0; i < kPriorityCount; ++i) {
    s.deliveries[i] = deliveries_[i].load(relaxed);
    s.shed[i] = shed_[i].load(relaxed);
    s.collapsed[i] = collapsed_[i].load(relaxed);
  }
  for (size_t i = 0; i < s.auth_failures.size(); ++i) s.auth_failures[i] = auth_failures_[i].load(relaxed);
  s.subscriptions_current = subscriptions_current_.load(relaxed);
  s.queued_bytes = queued_bytes_.load(relaxed);
  s.history_bytes = history_bytes_.load(relaxed);
  s.history_publications = history_publications_.load(relaxed);
  s.history_trimmed = history_trimmed_.load(relaxed);
  for (size_t r = 0; r < s.api_requests.size(); ++r)
    for (size_t c = 0; c < kStatusClasses; ++c) s.api_requests[r][c] = api_requests_[r][c].load(relaxed);
  s.latency = latency_.read();
  s.p0_latency = p0_latency_.read();
  return s;
}

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (const char c : v) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

std::string escape_help(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (const char c : v) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

namespace {

constexpr std::string_view kPriorityNames[kPriorityCount] = {"P0", "P1", "P2", "P3"};
constexpr std::string_view kStatusClassNames[kStatusClasses] = {"1xx", "2xx", "3xx", "4xx", "5xx"};

// Microseconds as an exact decimal number of seconds: 25 -> "0.000025", 2500000 -> "2.5".
std::string us_as_seconds(uint64_t us) {
  std::string out = std::to_string(us / 1000000);
  uint64_t frac = us % 1000000;
  if (frac == 0) return out;
  char digits[7];
  for (int i = 5; i >= 0; --i) {
    digits[i] = static_cast<char>('0' + frac % 10);
    frac /= 10;
  }
  size_t n = 6;
  while (n > 0 && digits[n - 1] == '0') --n;
  out += '.';
  out.append(digits, n);
  return out;
}

using Labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

class PromWriter {
 public:
  explicit PromWriter(std::string& out) : out_(out) {}

  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += escape_help(help);
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }

  void sample(std::string_view name, Labels labels, std::string_view value) {
    out_ += name;
    if (labels.size() > 0) {
      out_ += '{';
      bool first = true;
      for (const auto& [k, v] : labels) {
        if (!first) out_ += ',';
        first = false;
        out_ += k;
        out_ += "=\"";
        out_ += escape_label_value(v);
        out_ += '"';
      }
      out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }
  void sample(std::string_view name, Labels labels, uint64_t value) { sample(name, labels, std::to_string(value)); }
  void sample_signed(std::string_view name, int64_t value) { sample(name, {}, std::to_string(value)); }

 private:
  std::string& out_;
};

// A histogram family: cumulative buckets with bounds in seconds, sum and count.
void histogram(PromWriter& w, const std::string& name, std::string_view help, const LatencyCounts& c) {
  w.family(name, "histogram", help);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kLatencyBucketsUs.size(); ++i) {
    cumulative += c.buckets[i];
    w.sample(name + "_bucket", {{"le", us_as_seconds(kLatencyBucketsUs[i])}}, cumulative);
  }
  w.sample(name + "_bucket", {{"le", "+Inf"}}, c.count);
  w.sample(name + "_sum", {}, us_as_seconds(c.sum_us));
  w.sample(name + "_count", {}, c.count);
}

// The same for /v1/stats: bounds in microseconds.
nlohmann::json histogram_json(const LatencyCounts& c) {
  using nlohmann::json;
  json buckets = json::array();
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kLatencyBucketsUs.size(); ++i) {
    cumulative += c.buckets[i];
    buckets.push_back({{"le", kLatencyBucketsUs[i]}, {"count", cumulative}});
  }
  buckets.push_back({{"le", "+Inf"}, {"count", c.count}});
  return json{{"count", c.count}, {"sum", c.sum_us}, {"buckets", std::move(buckets)}};
}

}  // namespace

std::string Metrics::prometheus_text() const {
  const MetricsSnapshot s = snapshot();
  std::string out;
  out.reserve(12 * 1024);
  PromWriter w(out);

  w.family("herald_connections_accepted_total", "counter", "Connections accepted on the public listeners.");
  w.sample("herald_connections_accepted_total", {}, s.connections_accepted);
  w.family("herald_connections_current", "gauge", "Connections open now.");
  w.sample_signed("herald_connections_current", s.connections_current);

  w.family("herald_connections_rejected_total", "counter", "Connections refused by a connection limit.");
  for (size_t i = 0; i < s.connections_rejected.size(); ++i)
    w.sample("herald_connections_rejected_total", {{"reason", to_string(static_cast<RejectReason>(i))}},
             s.connections_rejected[i]);

  w.family("herald_connections_closed_total", "counter", "Connections closed, by reason.");
  for (size_t i = 0; i < s.closes.size(); ++i)
    w.sample("herald_connections_closed_total", {{"reason", to_string(static_cast<CloseReason>(i))}}, s.closes[i]);

  w.family("herald_frames_in_total", "counter", "Frames received from clients, by frame type.");
  for (const auto& f : s.frames) w.sample("herald_frames_in_total", {{"type", codec::to_string(f.type)}}, f.in);
  w.family("herald_frames_out_total", "counter", "Frames sent to clients, by frame type.");
  for (const auto& f : s.frames) w.sample("herald_frames_out_total", {{"type", codec::to_string(f.type)}}, f.out);
  w.family("herald_frame_bytes_in_total", "counter",
           "Wire bytes (headers and bodies) of the frames received from clients, by frame type.");
  for (const auto& f : s.frames)
    w.sample("herald_frame_bytes_in_total", {{"type", codec::to_string(f.type)}}, f.bytes_in);
  w.family("herald_frame_bytes_out_total", "counter",
           "Wire bytes (headers and bodies) of the frames written to clients, by frame type.");
  for (const auto& f : s.frames)
    w.sample("herald_frame_bytes_out_total", {{"type", codec::to_string(f.type)}}, f.bytes_out);

  w.family("herald_bytes_in_total", "counter", "Bytes read from client sockets.");
  w.sample("herald_bytes_in_total", {}, s.bytes_in);
  w.family("herald_bytes_out_total", "counter", "Bytes written to client sockets.");
  w.sample("herald_bytes_out_total", {}, s.bytes_out);

  w.family("herald_publishes_total", "counter", "Publish requests accepted (duplicates included), by source.");
  for (size_t i = 0; i < s.publishes.size(); ++i)
    w.sample("herald_publishes_total", {{"source", to_string(static_cast<PublishSource>(i))}}, s.publishes[i]);
  w.family("herald_publish_errors_total", "counter", "Publish requests rejected with an error status.");
  w.sample("herald_publish_errors_total", {}, s.publish_errors);
  w.family("herald_dedup_hits_total", "counter", "Publishes answered as duplicates of an earlier message id.");
  w.sample("herald_dedup_hits_total", {}, s.dedup_hits);
  w.family("herald_publish_pauses_total", "counter",
           "Times a publishing connection stopped being read, or an API publish was refused (429), "
           "while an event loop was too far behind.");
  w.sample("herald_publish_pauses_total", {}, s.publish_pauses);

  w.family("herald_deliveries_total", "counter", "Publications written to subscriber connections, by priority.");
  for (size_t i = 0; i < kPriorityCount; ++i)
    w.sample("herald_deliveries_total", {{"priority", kPriorityNames[i]}}, s.deliveries[i]);
  w.family("herald_shed_total", "counter", "Publications dropped for slow consumers, by priority.");
  for (size_t i = 0; i < kPriorityCount; ++i) w.sample("herald_shed_total", {{"priority", kPriorityNames[i]}}, s.shed[i]);
  w.family("herald_collapsed_total", "counter",
           "Queued state-channel publications replaced by a newer one with the same collapse key, by priority.");
  for (size_t i = 0; i < kPriorityCount; ++i)
    w.sample("herald_collapsed_total", {{"priority", kPriorityNames[i]}}, s.collapsed[i]);

  w.family("herald_auth_failures_total", "counter", "Failed Auth or Refresh attempts, by reason.");
  for (size_t i = 0; i < s.auth_failures.size(); ++i)
    w.sample("herald_auth_failures_total", {{"reason", to_string(static_cast<AuthFailure>(i))}}, s.auth_failures[i]);

  w.family("herald_subscriptions_current", "gauge", "Channel subscriptions held by connections now.");
  w.sample_signed("herald_subscriptions_current", s.subscriptions_current);
  w.family("herald_queued_bytes", "gauge", "Bytes queued for writing to client sockets now.");
  w.sample_signed("herald_queued_bytes", s.queued_bytes);
  w.family("herald_history_bytes", "gauge",
           "Memory held by the publications live channels keep for resume (limits.history_memory_bytes).");
  w.sample("herald_history_bytes", {}, s.history_bytes);
  w.family("herald_history_publications", "gauge", "Publications live channels keep for resume.");
  w.sample("herald_history_publications", {}, s.history_publications);
  w.family("herald_history_trimmed_total", "counter",
           "Kept publications dropped, oldest first, because the live histories were above "
           "limits.history_memory_bytes.");
  w.sample("herald_history_trimmed_total", {}, s.history_trimmed);

  w.family("herald_api_requests_total", "counter", "HTTP API requests answered, by route and status class.");
  for (size_t r = 0; r < s.api_requests.size(); ++r)
    for (size_t c = 0; c < kStatusClasses; ++c)
      w.sample("herald_api_requests_total",
               {{"route", to_string(static_cast<ApiRoute>(r))}, {"status", kStatusClassNames[c]}},
               s.api_requests[r][c]);

  histogram(w, "herald_delivery_latency_seconds",
            "Time from publish accepted to publication written to its subscribers' sockets, once per loop.",
            s.latency);
  histogram(w, "herald_p0_delivery_latency_seconds",
            "Time from publish accepted to a P0 publication's last byte written to a subscriber's socket, once per "
            "subscriber.",
            s.p0_latency);
  return out;
}

nlohmann::json Metrics::stats_json() const {
  using nlohmann::json;
  const MetricsSnapshot s = snapshot();
  auto by = [](const auto& values, auto name_of) {
    json o = json::object();
    for (size_t i = 0; i < values.size(); ++i) o[std::string(name_of(i))] = values[i];
    return o;
  };

  json frames_in = json::object();
  json frames_out = json::object();
  json frame_bytes_in = json::object();
  json frame_bytes_out = json::object();
  for (const auto& f : s.frames) {
    const std::string name(codec::to_string(f.type));
    frames_in[name] = f.in;
    frames_out[name] = f.out;
    frame_bytes_in[name] = f.bytes_in;
    frame_bytes_out[name] = f.bytes_out;
  }
  json api = json::object();
  for (size_t r = 0; r < s.api_requests.size(); ++r)
    api[std::string(to_string(static_cast<ApiRoute>(r)))] =
        by(s.api_requests[r], [](size_t c) { return kStatusClassNames[c]; });

  return json{
      {"connections",
       {{"accepted", s.connections_accepted},
        {"current", s.connections_current},
        {"rejected", by(s.connections_rejected, [](size_t i) { return to_string(static_cast<RejectReason>(i)); })},
        {"closed", by(s.closes, [](size_t i) { return to_string(static_cast<CloseReason>(i)); })}}},
      {"frames", {{"in", std::move(frames_in)}, {"out", std::move(frames_out)}}},
      {"frame_bytes", {{"in", std::move(frame_bytes_in)}, {"out", std::move(frame_bytes_out)}}},
      {"bytes", {{"in", s.bytes_in}, {"out", s.bytes_out}}},
      {"publishes",
       {{"api", s.publishes[static_cast<size_t>(PublishSource::kApi)]},
        {"client", s.publishes[static_cast<size_t>(PublishSource::kClient)]},
        {"errors", s.publish_errors},
        {"dedup_hits", s.dedup_hits},
        {"pauses", s.publish_pauses}}},
      {"deliveries", by(s.deliveries, [](size_t i) { return kPriorityNames[i]; })},
      {"shed", by(s.shed, [](size_t i) { return kPriorityNames[i]; })},
      {"collapsed", by(s.collapsed, [](size_t i) { return kPriorityNames[i]; })},
      {"auth_failures", by(s.auth_failures, [](size_t i) { return to_string(static_cast<AuthFailure>(i)); })},
      {"subscriptions_current", s.subscriptions_current},
      {"queued_bytes", s.queued_bytes},
      {"history", {{"bytes", s.history_bytes}, {"publications", s.history_publications}, {"trimmed", s.history_trimmed}}},
      {"api_requests", std::move(api)},
      {"delivery_latency_us", histogram_json(s.latency)},
      {"p0_delivery_latency_us", histogram_json(s.p0_latency)},
  };
}

}  // namespace herald::server
