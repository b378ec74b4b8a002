// W7 (issue 7): bytes per delivered notification. The notifications of
// shared/data/gen_notifications.py as the Herald Publication frames heraldd sends (plain, zstd,
// zstd with a dictionary) against the same content as JSON (plain, zstd, zstd with a dictionary)
// and against the bare notification JSON the peers carry. Sizes only: no timing, no sockets.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <zstd.h>

#include "bench/notifications.h"
#include "codec/compression.h"
#include "codec/frame_encoder.h"
#include "codec/message.h"
#include "codec/message_reader.h"
#include "herald.pb.h"

namespace {

namespace codec = herald::codec;
namespace v1 = herald::v1;
using Bytes = std::vector<uint8_t>;

// As bench/train_dictionary.sh and heraldd use them (docs/benchmarks.md).
constexpr size_t kDictionaryCapacity = 16 * 1024;
constexpr int kLevel = 3;
// heraldd compresses bodies of at least 256 bytes, 64 once a dictionary is loaded
// (server/server.cc, Server::load_dictionary).
constexpr size_t kThreshold = codec::kDefaultCompressThreshold;
constexpr size_t kThresholdWithDictionary = 64;

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "w7_bytes: FAILED: %s\n", why.c_str());
  std::exit(2);
}

std::span<const uint8_t> bytes_of(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }
std::string_view view_of(std::span<const uint8_t> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

// The same fields as the Publication heraldd delivers (herald::bench::make_publication), as one
// compact JSON object; the notification itself is embedded as it is (an object, not a string).
std::string json_envelope(const v1::Publication& p, const std::string& notification) {
  std::string out = "{\"channel\":" + nlohmann::json(p.channel()).dump();
  out += ",\"offset\":" + std::to_string(p.offset());
  out += ",\"epoch\":" + nlohmann::json(p.epoch()).dump();
  out += ",\"message_id\":" + nlohmann::json(p.message_id()).dump();
  out += ",\"type\":" + nlohmann::json(p.type()).dump();
  out += ",\"priority\":" + std::to_string(static_cast<int>(p.priority()));
  out += ",\"created_at_ms\":" + std::to_string(p.created_at_ms());
  out += ",\"content_type\":" + nlohmann::json(p.content_type()).dump();
  out += ",\"payload\":" + notification + "}";
  return out;
}

Bytes train_or_die(const std::vector<std::string_view>& samples) {
  Bytes dict;
  std::string error;
  if (!herald::bench::train_dictionary(samples, kDictionaryCapacity, dict, error)) die(error);
  return dict;
}

struct Result {
  std::string system;   // "herald" or "json"
  std::string variant;  // e.g. "zstd+dict"
  std::string config;   // what exactly was measured
  std::vector<size_t> sizes;
};

// Nearest-rank percentile of sorted sizes.
size_t percentile(const std::vector<size_t>& sorted, double p) {
  size_t rank = static_cast<size_t>(p / 100.0 * static_cast<double>(sorted.size()) + 0.999999);
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

std::string iso_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void usage(FILE* to) {
  std::fprintf(to,
               "usage: w7_bytes [--count N] [--seed S] [--train-count N] [--train-seed S] [--run R] [--out FILE]\n"
               "Encodes N notifications (gen_notifications.py --seed S; default 2000, seed 2) as heraldd's\n"
               "Publication frames and as JSON, plain, with zstd (level %d) and with a %zu-byte dictionary\n"
               "trained on --train-count others (default 5000, seed 1), and prints one JSON line per\n"
               "variant (schema of bench/run.sh, workload W7) on stdout, appended to FILE if given, and a\n"
               "table on stderr. Env: HERALD_SHARED_DIR (default " HERALD_SOURCE_DIR "/../shared).\n",
               kLevel, kDictionaryCapacity);
}

}  // namespace

int main(int argc, char** argv) {
  int count = 2000, seed = 2, train_count = 5000, train_seed = 1, run = 1;
  std::string out_path;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&](int& target) {
      if (i + 1 >= argc) die(std::string(a) + " needs a value");
      char* end = nullptr;
      long v = std::strtol(argv[++i], &end, 10);
      if (*end != '\0' || v < 1 || v > 10'000'000) die(std::string(a) + ": bad value " + argv[i]);
      target = static_cast<int>(v);
    };
    if (a == "--help" || a == "-h") {
      usage(stdout);
      return 0;
    } else if (a == "--count") {
      value(count);
    } else if (a == "--seed") {
      value(seed);
    } else if (a == "--train-count") {
      value(train_count);
    } else if (a == "--train-seed") {
      value(train_seed);
    } else if (a == "--run") {
      value(run);
    } else if (a == "--out") {
      if (i + 1 >= argc) die("--out needs a file");
      out_path = argv[++i];
    } else {
      usage(stderr);
      die("unknown argument " + std::string(a));
    }
  }
  if (seed == train_seed) die("--seed and --train-seed must differ (a dictionary is never tested on its own samples)");

  std::vector<std::string> train, eval;
  std::string error;
  if (!herald::bench::generate_notifications(train_seed, train_count, train, error)) die(error);
  if (!herald::bench::generate_notifications(seed, count, eval, error)) die(error);

  // Training sets: the notification JSON (what bench/train_dictionary.sh feeds `zstd --train`,
  // i.e. the dictionary an operator deploys), the serialized Publications, and the JSON
  // envelopes (so JSON gets a dictionary made for it too).
  std::vector<std::string> train_pubs(train.size()), train_env(train.size());
  for (size_t i = 0; i < train.size(); ++i) {
    v1::Publication p = herald::bench::make_publication(train[i], i + 1);
    train_pubs[i] = p.SerializeAsString();
    train_env[i] = json_envelope(p, train[i]);
  }
  const Bytes dict_json = train_or_die({train.begin(), train.end()});
  const Bytes dict_pub = train_or_die({train_pubs.begin(), train_pubs.end()});
  const Bytes dict_env = train_or_die({train_env.begin(), train_env.end()});
  auto set = std::make_shared<codec::DictionarySet>();
  uint32_t id_json = 0, id_pub = 0, id_env = 0;
  for (auto [bytes, id] : {std::pair{&dict_json, &id_json}, std::pair{&dict_pub, &id_pub}, std::pair{&dict_env, &id_env}}) {
    if (const codec::Status s = set->add(*bytes, kLevel, id); !codec::ok(s)) {
      die("DictionarySet::add: " + std::string(codec::to_string(s)));
    }
  }
  const std::shared_ptr<const codec::DictionarySet> dictionaries = set;
  codec::CodecContext ctx(dictionaries);

  const size_t n = eval.size();
  std::vector<v1::Publication> pubs(n);
  std::vector<Bytes> bodies(n);
  std::vector<std::string> envelopes(n);
  for (size_t i = 0; i < n; ++i) {
    pubs[i] = herald::bench::make_publication(eval[i], i + 1);
    if (!codec::ok(codec::serialize_message(pubs[i], codec::kDefaultMaxMessageSize, bodies[i]))) die("serialize_message");
    envelopes[i] = json_envelope(pubs[i], eval[i]);
  }
  const std::string train_desc = std::to_string(train_count) + " notifications of seed " + std::to_string(train_seed);
  const std::string eval_desc = std::to_string(n) + " notifications of gen_notifications.py seed " + std::to_string(seed);

  std::vector<Result> results;

  // Herald: the frames heraldd writes for one Publication (16-byte header + body; no CRC32C
  // trailer, heraldd's default protocol.checksum = false), decoded back and checked.
  struct HeraldMode {
    const char* variant;
    bool compress;
    uint32_t dictionary_id;
    size_t threshold;
    std::string config;
  };
  const HeraldMode modes[] = {
      {"plain", false, 0, kThreshold, "no compression"},
      {"zstd", true, 0, kThreshold, "zstd level 3, bodies >= 256 B compressed (heraldd without a dictionary)"},
      {"zstd+dict", true, id_json, kThresholdWithDictionary,
       "zstd level 3 + 16 KiB dictionary trained on the JSON of " + train_desc +
           " (as bench/train_dictionary.sh), bodies >= 64 B compressed (heraldd with protocol.dictionary_file)"},
      {"zstd+pubdict", true, id_pub, kThresholdWithDictionary,
       "zstd level 3 + 16 KiB dictionary trained on the serialized Publications of " + train_desc +
           ", bodies >= 64 B compressed"},
  };
  for (const HeraldMode& m : modes) {
    codec::EncodeOptions o;
    o.checksum = false;
    o.compress = m.compress;
    o.dictionary_id = m.dictionary_id;
    o.level = kLevel;
    o.compress_threshold = m.threshold;
    Result r{"herald", m.variant, m.config + "; " + eval_desc + "; frame header included, no checksum", {}};
    Bytes stream;
    uint32_t seq = 0;
    for (size_t i = 0; i < n; ++i) {
      codec::EncodedMessage msg;
      if (const codec::Status s = codec::encode_message(codec::FrameType::kPublication, bodies[i], o,
                                                        m.compress ? &ctx.compressor : nullptr, msg);
          !codec::ok(s)) {
        die("encode_message: " + std::string(codec::to_string(s)));
      }
      r.sizes.push_back(msg.wire_size());
      codec::append_frames(msg, seq, stream);
    }
    // Round trip: what a client reads back is every notification, intact.
    codec::MessageReader reader({}, &ctx);
    std::span<const uint8_t> in(stream);
    size_t got = 0;
    v1::Publication parsed;
    while (!in.empty()) {
      codec::InboundMessage msg;
      const codec::DecodeResult d = reader.read(in, 0, msg);
      in = in.subspan(d.consumed);
      if (d.status == codec::Status::kNeedMore) break;
      if (!codec::ok(d.status)) die("MessageReader: " + std::string(codec::to_string(d.status)));
      if (!codec::ok(codec::parse_message(msg.type, msg.body, codec::kDefaultMaxMessageSize, parsed)) || got >= n ||
          parsed.payload() != eval[got] || parsed.message_id() != pubs[got].message_id()) {
        die(std::string("round trip mismatch (herald ") + m.variant + ") at message " + std::to_string(got));
      }
      ++got;
    }
    if (got != n) die("round trip read " + std::to_string(got) + " of " + std::to_string(n) + " messages");
    results.push_back(std::move(r));
  }

  // JSON: the envelope with the same fields, and the bare notification the peers carry.
  struct JsonMode {
    const char* variant;
    bool envelope;
    bool compress;
    uint32_t dictionary_id;
    std::string config;
  };
  const JsonMode jmodes[] = {
      {"envelope", true, false, 0, "the Publication's fields as one JSON object, notification embedded"},
      {"envelope+zstd", true, true, 0, "the JSON envelope, zstd level 3 per message"},
      {"envelope+zstd+dict", true, true, id_env,
       "the JSON envelope, zstd level 3 per message + 16 KiB dictionary trained on the envelopes of " + train_desc},
      {"bare", false, false, 0, "the notification JSON alone, without delivery metadata (the peers' payload)"},
      {"bare+zstd", false, true, 0, "the notification JSON alone, zstd level 3 per message"},
      {"bare+zstd+dict", false, true, id_json,
       "the notification JSON alone, zstd level 3 per message + 16 KiB dictionary trained on the JSON of " +
           train_desc},
  };
  for (const JsonMode& m : jmodes) {
    Result r{"json", m.variant, m.config + "; " + eval_desc + "; no transport framing", {}};
    codec::CompressOptions co;
    co.level = kLevel;
    co.dictionary_id = m.dictionary_id;
    Bytes packed, back;
    for (size_t i = 0; i < n; ++i) {
      std::string_view text = m.envelope ? std::string_view(envelopes[i]) : std::string_view(eval[i]);
      if (!m.compress) {
        r.sizes.push_back(text.size());
        continue;
      }
      packed.clear();
      if (const codec::Status s = ctx.compressor.compress(bytes_of(text), co, packed); !codec::ok(s)) {
        die("compress: " + std::string(codec::to_string(s)));
      }
      if (const codec::Status s = ctx.decompressor.decompress(packed, {}, back); !codec::ok(s) || view_of(back) != text) {
        die(std::string("round trip mismatch (json ") + m.variant + ") at message " + std::to_string(i));
      }
      r.sizes.push_back(packed.size());
    }
    results.push_back(std::move(r));
  }

  const std::string version = std::string("herald ") + HERALD_VERSION + ", zstd " + ZSTD_versionString();
  const std::string ts = iso_now();
  FILE* out_file = nullptr;
  if (!out_path.empty() && (out_file = std::fopen(out_path.c_str(), "a")) == nullptr) die("cannot open " + out_path);

  struct Stats {
    double mean;
    size_t p50, p99;
    uint64_t total;
  };
  std::vector<Stats> stats;
  double json_mean = 0;
  for (const Result& r : results) {
    std::vector<size_t> sorted = r.sizes;
    std::sort(sorted.begin(), sorted.end());
    uint64_t total = 0;
    for (size_t v : sorted) total += v;
    stats.push_back({static_cast<double>(total) / static_cast<double>(n), percentile(sorted, 50), percentile(sorted, 99), total});
    if (r.system == "json" && r.variant == "envelope") json_mean = stats.back().mean;
  }
  std::fprintf(stderr, "W7: %zu notifications (seed %d); bytes per message\n", n, seed);
  std::fprintf(stderr, "%-8s %-20s %9s %7s %7s %11s %9s\n", "system", "variant", "mean", "p50", "p99", "total", "vs json");
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    const Stats& st = stats[i];
    nlohmann::json line = {{"workload", "W7"},
                           {"system", r.system},
                           {"variant", r.variant},
                           {"run", run},
                           {"published", n},
                           {"bytes",
                            {{"mean", std::round(st.mean * 100) / 100},
                             {"p50", st.p50},
                             {"p99", st.p99},
                             {"total", st.total}}},
                           {"config", r.config},
                           {"version", version},
                           {"ts", ts}};
    const std::string text = line.dump();
    std::printf("%s\n", text.c_str());
    if (out_file != nullptr) std::fprintf(out_file, "%s\n", text.c_str());
    std::fprintf(stderr, "%-8s %-20s %9.1f %7zu %7zu %11llu %8.1f%%\n", r.system.c_str(), r.variant.c_str(), st.mean,
                 st.p50, st.p99, static_cast<unsigned long long>(st.total), 100.0 * (st.mean / json_mean - 1.0));
  }
  std::fprintf(stderr, "(vs json: relative to the JSON envelope with the same fields; negative = smaller)\n");
  if (out_file != nullptr && std::fclose(out_file) != 0) die("cannot write " + out_path);
  std::fflush(stdout);
  return 0;
}
