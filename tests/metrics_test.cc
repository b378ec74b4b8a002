// Metrics: counters and gauges, histogram buckets, the Prometheus text format
// (HELP/TYPE lines, escaping, every sample line parseable) and the JSON view.
#include "server/metrics.h"

#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace herald::server {
namespace {

using codec::FrameType;

size_t idx(auto e) { return static_cast<size_t>(e); }

TEST(MetricsTest, StartsAtZero) {
  Metrics m;
  const MetricsSnapshot s = m.snapshot();
  EXPECT_EQ(s.connections_accepted, 0u);
  EXPECT_EQ(s.connections_current, 0);
  EXPECT_EQ(s.latency.count, 0u);
  for (const auto& f : s.frames) {
    EXPECT_EQ(f.in, 0u);
    EXPECT_EQ(f.out, 0u);
  }
}

TEST(MetricsTest, ConnectionsAndCloses) {
  Metrics m;
  for (int i = 0; i < 5; ++i) m.connection_accepted();
  m.closed(CloseReason::kSlowConsumer);
  m.closed(CloseReason::kClientClosed);
  m.closed(CloseReason::kClientClosed);
  m.connection_rejected(RejectReason::kLimitIp);
  m.closed(CloseReason::kLimit);
  const MetricsSnapshot s = m.snapshot();
  EXPECT_EQ(s.connections_accepted, 5u);
  EXPECT_EQ(s.connections_current, 1);
  EXPECT_EQ(s.closes[idx(CloseReason::kSlowConsumer)], 1u);
  EXPECT_EQ(s.closes[idx(CloseReason::kClientClosed)], 2u);
  EXPECT_EQ(s.closes[idx(CloseReason::kLimit)], 1u);
  EXPECT_EQ(s.closes[idx(CloseReason::kIoError)], 0u);
  EXPECT_EQ(s.connections_rejected[idx(RejectReason::kLimitIp)], 1u);
  EXPECT_EQ(s.connections_rejected[idx(RejectReason::kLimitTotal)], 0u);
}

TEST(MetricsTest, FramesByTypeOnlyKnownExported) {
  Metrics m;
  m.frame_in(FrameType::kHello);
  m.frame_in(FrameType::kSubscribe);
  m.frame_in(FrameType::kSubscribe);
  m.frame_out(FrameType::kPublication, 7);
  m.frame_out(FrameType::kPong);
  // An unknown 12-bit type and a value with flag bits set are counted in
  // range (masked) and never crash; unknown types are not exported.
  m.frame_in(static_cast<FrameType>(0x0FFF));
  m.frame_in(static_cast<FrameType>(0x8000 | 0x030));  // C flag + Ping -> Ping
  const MetricsSnapshot s = m.snapshot();
  std::map<std::string, std::pair<uint64_t, uint64_t>> by_name;
  for (const auto& f : s.frames) by_name[std::string(codec::to_string(f.type))] = {f.in, f.out};
  EXPECT_EQ(by_name.size(), kKnownFrameTypeCount);
  EXPECT_EQ(by_name["Hello"].first, 1u);
  EXPECT_EQ(by_name["Subscribe"].first, 2u);
  EXPECT_EQ(by_name["Publication"].second, 7u);
  EXPECT_EQ(by_name["Pong"].second, 1u);
  EXPECT_EQ(by_name["Ping"].first, 1u);
  const std::string text = m.prometheus_text();
  EXPECT_NE(text.find("herald_frames_in_total{type=\"Subscribe\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("herald_frames_out_total{type=\"Publication\"} 7\n"), std::string::npos);
  EXPECT_EQ(text.find("Unknown"), std::string::npos);
}

TEST(MetricsTest, BytesPublishesDeliveriesAuthGauges) {
  Metrics m;
  m.bytes_in(100);
  m.bytes_in(28);
  m.bytes_out(4096);
  m.published(PublishSource::kApi);
  m.published(PublishSource::kClient);
  m.published(PublishSource::kClient);
  m.dedup_hit();
  m.publish_paused();
  m.publish_paused();
  m.publish_error();
  m.delivered(0);
  m.delivered(1, 10);
  m.delivered(7);   // out of range -> P3
  m.delivered(-1);  // out of range -> P3
  m.shed(3, 4);
  m.shed(2);
  m.auth_failure(AuthFailure::kExpired);
  m.auth_failure(AuthFailure::kBadToken);
  m.auth_failure(AuthFailure::kBadToken);
  m.subscriptions_add(3);
  m.subscriptions_add(-1);
  m.queued_bytes_add(1000);
  m.queued_bytes_sub(400);
  const MetricsSnapshot s = m.snapshot();
  EXPECT_EQ(s.bytes_in, 128u);
  EXPECT_EQ(s.bytes_out, 4096u);
  EXPECT_EQ(s.publishes[idx(PublishSource::kApi)], 1u);
  EXPECT_EQ(s.publishes[idx(PublishSource::kClient)], 2u);
  EXPECT_EQ(s.dedup_hits, 1u);
  EXPECT_EQ(s.publish_pauses, 2u);
  EXPECT_NE(m.prometheus_text().find("\nherald_publish_pauses_total 2\n"), std::string::npos);
  EXPECT_EQ(s.publish_errors, 1u);
  EXPECT_EQ(s.deliveries[0], 1u);
  EXPECT_EQ(s.deliveries[1], 10u);
  EXPECT_EQ(s.deliveries[2], 0u);
  EXPECT_EQ(s.deliveries[3], 2u);
  EXPECT_EQ(s.shed[3], 4u);
  EXPECT_EQ(s.shed[2], 1u);
  EXPECT_EQ(s.auth_failures[idx(AuthFailure::kBadToken)], 2u);
  EXPECT_EQ(s.auth_failures[idx(AuthFailure::kExpired)], 1u);
  EXPECT_EQ(s.auth_failures[idx(AuthFailure::kLimit)], 0u);
  EXPECT_EQ(s.subscriptions_current, 2);
  EXPECT_EQ(s.queued_bytes, 600);
}

TEST(MetricsTest, GaugesMayGoNegativeAndExportSigned) {
  Metrics m;
  m.queued_bytes_sub(5);  // a bookkeeping bug must show, not wrap to 2^64
  EXPECT_EQ(m.snapshot().queued_bytes, -5);
  EXPECT_NE(m.prometheus_text().find("\nherald_queued_bytes -5\n"), std::string::npos);
}

TEST(MetricsTest, ApiRequestsByRouteAndStatusClass) {
  Metrics m;
  m.api_request(ApiRoute::kPublish, 200);
  m.api_request(ApiRoute::kPublish, 400);
  m.api_request(ApiRoute::kPublish, 401);
  m.api_request(ApiRoute::kPublish, 503);
  m.api_request(ApiRoute::kMetrics, 200);
  m.api_request(ApiRoute::kOther, 99);   // nonsense status -> 5xx
  m.api_request(ApiRoute::kOther, 600);  // nonsense status -> 5xx
  const MetricsSnapshot s = m.snapshot();
  EXPECT_EQ(s.api_requests[idx(ApiRoute::kPublish)][1], 1u);
  EXPECT_EQ(s.api_requests[idx(ApiRoute::kPublish)][3], 2u);
  EXPECT_EQ(s.api_requests[idx(ApiRoute::kPublish)][4], 1u);
  EXPECT_EQ(s.api_requests[idx(ApiRoute::kMetrics)][1], 1u);
  EXPECT_EQ(s.api_requests[idx(ApiRoute::kOther)][4], 2u);
  EXPECT_NE(m.prometheus_text().find("herald_api_requests_total{route=\"publish\",status=\"4xx\"} 2\n"),
            std::string::npos);
}

TEST(MetricsTest, HistogramBucketsAreInclusiveUpperBounds) {
  Metrics m;
  m.observe_delivery_latency_us(0);       // <= 25
  m.observe_delivery_latency_us(25);      // <= 25 (le is inclusive)
  m.observe_delivery_latency_us(26);      // <= 50
  m.observe_delivery_latency_us(999);     // <= 1000
  m.observe_delivery_latency_us(100000);  // <= 100000
  m.observe_delivery_latency_us(100001);  // +Inf
  m.observe_delivery_latency_us(5000000000ull);  // +Inf
  const MetricsSnapshot s = m.snapshot();
  EXPECT_EQ(s.latency.count, 7u);
  EXPECT_EQ(s.latency.sum_us, 0u + 25 + 26 + 999 + 100000 + 100001 + 5000000000ull);
  EXPECT_EQ(s.latency.buckets[0], 2u);   // 25
  EXPECT_EQ(s.latency.buckets[1], 1u);   // 50
  EXPECT_EQ(s.latency.buckets[5], 1u);   // 1000
  EXPECT_EQ(s.latency.buckets[11], 1u);  // 100000
  EXPECT_EQ(s.latency.buckets[12], 2u);  // +Inf
  uint64_t total = 0;
  for (uint64_t b : s.latency.buckets) total += b;
  EXPECT_EQ(total, s.latency.count);

  const std::string text = m.prometheus_text();
  // Cumulative buckets, bounds in seconds.
  EXPECT_NE(text.find("herald_delivery_latency_seconds_bucket{le=\"0.000025\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("herald_delivery_latency_seconds_bucket{le=\"0.00005\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("herald_delivery_latency_seconds_bucket{le=\"0.001\"} 4\n"), std::string::npos);
  EXPECT_NE(text.find("herald_delivery_latency_seconds_bucket{le=\"0.1\"} 5\n"), std::string::npos);
  EXPECT_NE(text.find("herald_delivery_latency_seconds_bucket{le=\"+Inf\"} 7\n"), std::string::npos);
  EXPECT_NE(text.find("herald_delivery_latency_seconds_count 7\n"), std::string::npos);
  EXPECT_NE(text.find("herald_delivery_latency_seconds_sum 5000.201051\n"), std::string::npos);

  const nlohmann::json j = m.stats_json()["delivery_latency_us"];
  EXPECT_EQ(j["count"], 7);
  EXPECT_EQ(j["sum"], 5000201051ull);
  ASSERT_EQ(j["buckets"].size(), kLatencyBucketCount);
  EXPECT_EQ(j["buckets"][0]["le"], 25);
  EXPECT_EQ(j["buckets"][0]["count"], 2);
  EXPECT_EQ(j["buckets"][12]["le"], "+Inf");
  EXPECT_EQ(j["buckets"][12]["count"], 7);
}

TEST(MetricsTest, P0LatencyIsAHistogramOfItsOwnAddedAsCounted) {
  Metrics m;
  m.observe_delivery_latency_us(30);
  LatencyCounts loop;  // as an event loop counts it
  loop.observe(700);    // <= 1000
  m.add_p0_latency(loop);
  loop = LatencyCounts{};
  loop.observe(40000);  // <= 50000
  m.add_p0_latency(loop);
  const MetricsSnapshot s = m.snapshot();
  EXPECT_EQ(s.latency.count, 1u);
  EXPECT_EQ(s.p0_latency.count, 2u);
  EXPECT_EQ(s.p0_latency.sum_us, 40700u);
  EXPECT_EQ(s.p0_latency.buckets[5], 1u);
  EXPECT_EQ(s.p0_latency.buckets[10], 1u);
  const std::string text = m.prometheus_text();
  EXPECT_NE(text.find("# TYPE herald_p0_delivery_latency_seconds histogram\n"), std::string::npos);
  EXPECT_NE(text.find("herald_p0_delivery_latency_seconds_bucket{le=\"0.0005\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("herald_p0_delivery_latency_seconds_bucket{le=\"0.001\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("herald_p0_delivery_latency_seconds_bucket{le=\"+Inf\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("herald_p0_delivery_latency_seconds_count 2\n"), std::string::npos);
  EXPECT_NE(text.find("herald_delivery_latency_seconds_count 1\n"), std::string::npos);
  const nlohmann::json j = m.stats_json()["p0_delivery_latency_us"];
  EXPECT_EQ(j["count"], 2);
  EXPECT_EQ(j["sum"], 40700);
  EXPECT_EQ(j["buckets"][5]["count"], 1);
}

TEST(MetricsTest, EscapingOfLabelValuesAndHelp) {
  EXPECT_EQ(escape_label_value("plain"), "plain");
  EXPECT_EQ(escape_label_value("a\\b"), "a\\\\b");
  EXPECT_EQ(escape_label_value("say \"hi\""), "say \\\"hi\\\"");
  EXPECT_EQ(escape_label_value("two\nlines"), "two\\nlines");
  EXPECT_EQ(escape_label_value("\\\"\n"), "\\\\\\\"\\n");
  EXPECT_EQ(escape_help("a \"quoted\" \\ help\nline"), "a \"quoted\" \\\\ help\\nline");
}

// A strict reader of the text format 0.0.4: returns an error text or "".
std::string check_exposition(const std::string& text, std::set<std::string>* families_out = nullptr) {
  static const std::regex kHelp(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$)");
  static const std::regex kType(R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$)");
  static const std::regex kSample(
      R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\[\\"n]|[^"\\\n])*")(,[a-zA-Z_][a-zA-Z0-9_]*="(\\[\\"n]|[^"\\\n])*")*\})? (-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|[-+]Inf|NaN)$)");
  if (text.empty() || text.back() != '\n') return "must end with a newline";
  std::istringstream in(text);
  std::string line;
  std::string family, type;
  std::set<std::string> helped, typed, series;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    std::smatch m;
    if (line.starts_with("#")) {
      if (std::regex_match(line, m, kHelp)) {
        family = m[1];
        if (!helped.insert(family).second) return "line " + std::to_string(n) + ": second HELP for " + family;
      } else if (std::regex_match(line, m, kType)) {
        if (m[1] != family) return "line " + std::to_string(n) + ": TYPE does not follow its HELP";
        if (!typed.insert(family).second) return "line " + std::to_string(n) + ": second TYPE";
        type = m[2];
      } else {
        return "line " + std::to_string(n) + ": bad comment: " + line;
      }
      continue;
    }
    if (!std::regex_match(line, m, kSample)) return "line " + std::to_string(n) + ": not `name{labels} value`: " + line;
    const std::string name = m[1];
    bool belongs = name == family;
    if (type == "histogram")
      belongs = name == family + "_bucket" || name == family + "_sum" || name == family + "_count";
    if (!belongs || !typed.count(family)) return "line " + std::to_string(n) + ": sample outside its family: " + name;
    if (type == "counter" && !name.ends_with("_total")) return "line " + std::to_string(n) + ": counter without _total";
    if (!name.starts_with("herald_")) return "line " + std::to_string(n) + ": name not herald_*";
    if (!series.insert(line.substr(0, line.rfind(' '))).second)
      return "line " + std::to_string(n) + ": duplicate series " + line;
  }
  if (helped != typed) return "a family has HELP without TYPE";
  if (families_out) *families_out = typed;
  return "";
}

TEST(MetricsTest, PrometheusTextIsWellFormed) {
  Metrics m;
  m.connection_accepted();
  m.frame_in(FrameType::kAuth);
  m.observe_delivery_latency_us(120);
  m.api_request(ApiRoute::kHealthz, 200);
  std::set<std::string> families;
  EXPECT_EQ(check_exposition(m.prometheus_text(), &families), "");
  for (const char* f :
       {"herald_connections_accepted_total", "herald_connections_current", "herald_connections_rejected_total",
        "herald_connections_closed_total", "herald_frames_in_total", "herald_frames_out_total", "herald_bytes_in_total",
        "herald_bytes_out_total", "herald_publishes_total", "herald_publish_errors_total", "herald_dedup_hits_total",
        "herald_deliveries_total", "herald_shed_total", "herald_collapsed_total", "herald_auth_failures_total", "herald_subscriptions_current",
        "herald_queued_bytes", "herald_api_requests_total", "herald_delivery_latency_seconds",
        "herald_p0_delivery_latency_seconds"}) {
    EXPECT_TRUE(families.count(f)) << f;
  }
  const std::string text = m.prometheus_text();
  EXPECT_NE(text.find("# TYPE herald_connections_current gauge\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE herald_delivery_latency_seconds histogram\n"), std::string::npos);
  EXPECT_NE(text.find("herald_connections_closed_total{reason=\"disconnected_by_api\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("herald_deliveries_total{priority=\"P0\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("herald_auth_failures_total{reason=\"bad_token\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("herald_connections_rejected_total{reason=\"limit_user\"} 0\n"), std::string::npos);
}

TEST(MetricsTest, ExpositionCheckerRejectsBadText) {
  // The checker itself must catch what it claims to catch.
  EXPECT_NE(check_exposition("herald_x_total 1\n"), "");  // no HELP/TYPE
  EXPECT_NE(check_exposition("# HELP herald_x_total x\n# TYPE herald_x_total counter\nherald_x_total{a=\"b} 1\n"), "");
  EXPECT_NE(check_exposition("# HELP herald_x_total x\n# TYPE herald_x_total counter\nherald_x_total one\n"), "");
  EXPECT_NE(check_exposition("# HELP herald_x x\n# TYPE herald_x counter\nherald_x 1\n"), "");
  EXPECT_EQ(check_exposition("# HELP herald_x_total x\n# TYPE herald_x_total counter\n"
                             "herald_x_total{a=\"q\\\"\\\\\\n\"} 1\n"),
            "");
}

TEST(MetricsTest, EveryEnumHasALabel) {
  for (size_t i = 0; i < idx(CloseReason::kCount); ++i)
    EXPECT_NE(to_string(static_cast<CloseReason>(i)), "unknown") << i;
  for (size_t i = 0; i < idx(ApiRoute::kCount); ++i) EXPECT_NE(to_string(static_cast<ApiRoute>(i)), "unknown") << i;
  EXPECT_EQ(to_string(static_cast<CloseReason>(200)), "unknown");
  // Out-of-range enum values are counted in range, not out of bounds.
  Metrics m;
  m.closed(static_cast<CloseReason>(200));
  m.auth_failure(static_cast<AuthFailure>(99));
  m.api_request(static_cast<ApiRoute>(99), 200);
  EXPECT_EQ(m.snapshot().closes[idx(CloseReason::kIoError)], 1u);
}

TEST(MetricsTest, StatsJsonMatchesSnapshot) {
  Metrics m;
  m.connection_accepted();
  m.connection_accepted();
  m.closed(CloseReason::kHeartbeatTimeout);
  m.frame_in(FrameType::kPing);
  m.frame_out(FrameType::kPong);
  m.published(PublishSource::kApi);
  m.dedup_hit();
  m.delivered(2, 3);
  m.shed(3);
  m.auth_failure(AuthFailure::kLimit);
  m.api_request(ApiRoute::kUserInfo, 200);
  m.bytes_out(10);
  const nlohmann::json j = m.stats_json();
  EXPECT_EQ(j["connections"]["accepted"], 2);
  EXPECT_EQ(j["connections"]["current"], 1);
  EXPECT_EQ(j["connections"]["closed"]["heartbeat_timeout"], 1);
  EXPECT_EQ(j["connections"]["rejected"]["limit_total"], 0);
  EXPECT_EQ(j["frames"]["in"]["Ping"], 1);
  EXPECT_EQ(j["frames"]["out"]["Pong"], 1);
  EXPECT_EQ(j["bytes"]["out"], 10);
  EXPECT_EQ(j["publishes"]["api"], 1);
  EXPECT_EQ(j["publishes"]["client"], 0);
  EXPECT_EQ(j["publishes"]["dedup_hits"], 1);
  EXPECT_EQ(j["deliveries"]["P2"], 3);
  EXPECT_EQ(j["shed"]["P3"], 1);
  EXPECT_EQ(j["auth_failures"]["limit"], 1);
  EXPECT_EQ(j["api_requests"]["user_info"]["2xx"], 1);
  EXPECT_EQ(j["subscriptions_current"], 0);
  EXPECT_EQ(j["queued_bytes"], 0);
}

TEST(MetricsTest, ConcurrentRecordingLosesNothing) {
  Metrics m;
  constexpr int kThreads = 4;
  constexpr int kEach = 50000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&m, t] {
      for (int i = 0; i < kEach; ++i) {
        m.frame_out(FrameType::kPublication);
        m.delivered(t % 4);
        m.observe_delivery_latency_us(static_cast<uint64_t>(i % 200));
        m.queued_bytes_add(3);
        m.queued_bytes_sub(3);
      }
    });
  }
  // Readers run concurrently with writers.
  for (int i = 0; i < 20; ++i) (void)m.prometheus_text();
  for (auto& th : threads) th.join();
  const MetricsSnapshot s = m.snapshot();
  uint64_t frames = 0;
  for (const auto& f : s.frames)
    if (f.type == FrameType::kPublication) frames = f.out;
  EXPECT_EQ(frames, uint64_t{kThreads} * kEach);
  EXPECT_EQ(s.deliveries[0] + s.deliveries[1] + s.deliveries[2] + s.deliveries[3], uint64_t{kThreads} * kEach);
  EXPECT_EQ(s.latency.count, uint64_t{kThreads} * kEach);
  EXPECT_EQ(s.queued_bytes, 0);
}

}  // namespace
}  // namespace herald::server
