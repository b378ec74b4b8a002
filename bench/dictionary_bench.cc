// Dictionary benchmark for the foundation issue: generated notifications compressed one by
// one, without and with a zstd dictionary trained on another seed's output; sizes, wire bytes
// and speeds. Exits non-zero if the dictionary is not at least twice as good (a CI smoke check).
// A plain program (named *_bench.cc so the bench glob builds it); it may use popen and clocks.
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

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
using herald::bench::make_publication;

constexpr int kTrainSeed = 1;
constexpr int kTrainCount = 5000;
constexpr int kEvalSeed = 2;
constexpr int kEvalCount = 2000;
constexpr size_t kDictionaryCapacity = 16 * 1024;
constexpr int kLevel = 3;
constexpr int kRepeats = 5;
constexpr int kPasses = 5;
constexpr double kTargetRatio = 2.0;

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "dictionary_bench: FAILED: %s\n", why.c_str());
  std::exit(2);
}

// One JSON object per line from the shared generator; dies if it cannot be run.
std::vector<std::string> generate_or_die(int seed, int count) {
  std::vector<std::string> lines;
  std::string error;
  if (!herald::bench::generate_notifications(seed, count, lines, error)) die(error);
  return lines;
}

std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
std::string_view view_of(std::span<const uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

// Median over kRepeats runs of the CPU time of one pass of `fn`, in seconds. CPU time, like
// Google Benchmark's rates: on this shared 2-core machine wall time mostly measures the
// neighbours. Each run repeats `fn` kPasses times so that it lasts tens of milliseconds.
double median_seconds(const std::function<void()>& fn) {
  std::vector<double> t;
  for (int i = 0; i < kRepeats; ++i) {
    const double start = thread_cpu_seconds();
    for (int p = 0; p < kPasses; ++p) fn();
    t.push_back((thread_cpu_seconds() - start) / kPasses);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Speed {
  double msgs_per_s = 0;
  double mb_per_s = 0;  // 1e6 bytes of uncompressed JSON (or serialized Publication) per second
};
Speed speed(double seconds, size_t messages, uint64_t bytes) {
  return {static_cast<double>(messages) / seconds, static_cast<double>(bytes) / seconds / 1e6};
}

// kZstdPubDict is for information only (wire rows): a dictionary trained on serialized seed-1
// Publications, i.e. on what the wire actually compresses, instead of on the bare JSON.
enum Mode { kNone = 0, kZstd = 1, kZstdDict = 2, kZstdPubDict = 3 };
constexpr const char* kModeName[] = {"none", "zstd", "zstd+dict", "zstd+pubdict"};

// A dictionary trained on `samples`, capped at kDictionaryCapacity bytes; dies on error.
Bytes train_or_die(const std::vector<std::string_view>& samples) {
  Bytes dict;
  std::string error;
  if (!herald::bench::train_dictionary(samples, kDictionaryCapacity, dict, error)) die(error);
  return dict;
}

struct Row {
  double payload_bytes = 0;  // mean bytes of the JSON as it goes into the Publication
  double wire_bytes = 0;     // mean bytes on the wire: header + (compressed) protobuf + CRC32C
  Speed compress, decompress;        // payload only
  Speed encode, decode;              // whole framed Publication: serialize+encode / read+parse
};

}  // namespace

int main(int argc, char** argv) {
  std::string json_out;  // ./dev bench passes --benchmark_out=FILE to every *_bench program
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf(
          "usage: dictionary_bench [--benchmark_out=FILE]\n"
          "Compresses %d notifications (gen_notifications.py --seed %d) one by one with zstd level %d,\n"
          "without and with a %zu-byte dictionary trained on %d others (--seed %d); prints sizes,\n"
          "wire bytes and speeds (median of %d runs) and one JSON line. Exit 1 if the dictionary\n"
          "ratio is below %.1f. Other --benchmark_* flags are accepted and ignored.\n"
          "Env: HERALD_SHARED_DIR (default " HERALD_SOURCE_DIR "/../shared).\n",
          kEvalCount, kEvalSeed, kLevel, kDictionaryCapacity, kTrainCount, kTrainSeed, kRepeats, kTargetRatio);
      return 0;
    }
    if (arg.starts_with("--benchmark_out=")) {
      json_out = std::string(arg.substr(std::strlen("--benchmark_out=")));
    } else if (!arg.starts_with("--benchmark_")) {
      die("unknown argument " + std::string(arg) + " (try --help)");
    }
  }

  const std::vector<std::string> train = generate_or_die(kTrainSeed, kTrainCount);
  const std::vector<std::string> eval = generate_or_die(kEvalSeed, kEvalCount);

  // Train in-process, as an operator would with `zstd --train --maxdict=16384`.
  const auto train_start = std::chrono::steady_clock::now();
  const Bytes dict = train_or_die({train.begin(), train.end()});
  const double train_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - train_start).count();
  std::vector<Bytes> train_pubs(train.size());
  for (size_t i = 0; i < train.size(); ++i) {
    if (!codec::ok(codec::serialize_message(make_publication(train[i], i + 1), codec::kDefaultMaxMessageSize, train_pubs[i]))) {
      die("serialize_message");
    }
  }
  std::vector<std::string_view> pub_samples;
  for (const Bytes& b : train_pubs) pub_samples.push_back(view_of(b));
  const Bytes pub_dict = train_or_die(pub_samples);
  auto set = std::make_shared<codec::DictionarySet>();
  uint32_t dict_id = 0;
  uint32_t pub_dict_id = 0;
  for (auto [bytes, id] : {std::pair{&dict, &dict_id}, std::pair{&pub_dict, &pub_dict_id}}) {
    if (const codec::Status s = set->add(*bytes, kLevel, id); !codec::ok(s)) {
      die("DictionarySet::add: " + std::string(codec::to_string(s)));
    }
  }
  const std::shared_ptr<const codec::DictionarySet> dictionaries = set;
  codec::Compressor compressor(dictionaries);
  codec::Decompressor decompressor(dictionaries);

  const size_t n = eval.size();
  uint64_t raw_total = 0;
  for (const std::string& s : eval) raw_total += s.size();
  std::vector<v1::Publication> pubs;
  std::vector<Bytes> serialized(n);
  uint64_t serialized_total = 0;
  for (size_t i = 0; i < n; ++i) {
    pubs.push_back(make_publication(eval[i], i + 1));
    if (!codec::ok(codec::serialize_message(pubs[i], codec::kDefaultMaxMessageSize, serialized[i]))) die("serialize_message");
    serialized_total += serialized[i].size();
  }

  Row rows[4];
  rows[kNone].payload_bytes = static_cast<double>(raw_total) / static_cast<double>(n);

  // Payload only: sizes and a full round-trip check, then timing.
  std::vector<Bytes> packed[4];
  for (Mode mode : {kZstd, kZstdDict}) {
    codec::CompressOptions co;
    co.level = kLevel;
    co.dictionary_id = mode == kZstdDict ? dict_id : 0;
    packed[mode].resize(n);
    uint64_t total = 0;
    Bytes back;
    for (size_t i = 0; i < n; ++i) {
      if (const codec::Status s = compressor.compress(bytes_of(eval[i]), co, packed[mode][i]); !codec::ok(s)) {
        die("compress: " + std::string(codec::to_string(s)));
      }
      if (const codec::Status s = decompressor.decompress(packed[mode][i], {}, back); !codec::ok(s)) {
        die("decompress: " + std::string(codec::to_string(s)));
      }
      if (view_of(back) != eval[i]) {
        std::fprintf(stderr, "dictionary_bench: round trip mismatch (%s) for notification %zu\n", kModeName[mode], i);
        std::abort();
      }
      total += packed[mode][i].size();
    }
    rows[mode].payload_bytes = static_cast<double>(total) / static_cast<double>(n);
    Bytes out;
    rows[mode].compress = speed(median_seconds([&] {
                                  for (size_t i = 0; i < n; ++i) {
                                    out.clear();
                                    if (!codec::ok(compressor.compress(bytes_of(eval[i]), co, out))) die("compress");
                                  }
                                }),
                                n, raw_total);
    rows[mode].decompress = speed(median_seconds([&] {
                                    for (size_t i = 0; i < n; ++i) {
                                      if (!codec::ok(decompressor.decompress(packed[mode][i], {}, out))) die("decompress");
                                    }
                                  }),
                                  n, raw_total);
  }

  // Whole frames: serialize + encode_message (checksummed; compressed per mode), and back
  // through MessageReader + parse_message, checking every payload.
  for (Mode mode : {kNone, kZstd, kZstdDict, kZstdPubDict}) {
    codec::EncodeOptions eo;
    eo.checksum = true;
    eo.compress = mode != kNone;
    eo.dictionary_id = mode == kZstdDict ? dict_id : mode == kZstdPubDict ? pub_dict_id : 0;
    eo.level = kLevel;
    Bytes stream;
    uint32_t seq = 0;
    for (size_t i = 0; i < n; ++i) {
      codec::EncodedMessage m;
      if (const codec::Status s = codec::encode_message(codec::FrameType::kPublication, serialized[i], eo, &compressor, m);
          !codec::ok(s)) {
        die("encode_message: " + std::string(codec::to_string(s)));
      }
      codec::append_frames(m, seq, stream);
    }
    rows[mode].wire_bytes = static_cast<double>(stream.size()) / static_cast<double>(n);

    codec::CodecContext context(dictionaries);
    v1::Publication parsed;
    auto read_all = [&](bool check) {
      codec::MessageReader reader({}, &context);
      std::span<const uint8_t> in(stream);
      size_t got = 0;
      while (!in.empty()) {
        codec::InboundMessage msg;
        const codec::DecodeResult r = reader.read(in, 0, msg);
        in = in.subspan(r.consumed);
        if (r.status == codec::Status::kNeedMore) break;
        if (!codec::ok(r.status)) die("MessageReader: " + std::string(codec::to_string(r.status)));
        if (!codec::ok(codec::parse_message(msg.type, msg.body, codec::kDefaultMaxMessageSize, parsed))) die("parse_message");
        if (check && (parsed.payload() != eval[got] || parsed.offset() != got + 1)) {
          std::fprintf(stderr, "dictionary_bench: framed round trip mismatch (%s) at message %zu\n", kModeName[mode], got);
          std::abort();
        }
        ++got;
      }
      if (got != n || !codec::ok(reader.finish())) die("MessageReader read the wrong number of messages");
    };
    read_all(true);
    rows[mode].encode = speed(median_seconds([&] {
                                Bytes body;
                                for (size_t i = 0; i < n; ++i) {
                                  codec::EncodedMessage m;
                                  if (!codec::ok(codec::serialize_message(pubs[i], codec::kDefaultMaxMessageSize, body)) ||
                                      !codec::ok(codec::encode_message(codec::FrameType::kPublication, body, eo, &compressor, m))) {
                                    die("encode");
                                  }
                                }
                              }),
                              n, serialized_total);
    rows[mode].decode = speed(median_seconds([&] { read_all(false); }), n, serialized_total);
  }

  const double ratio = rows[kZstd].payload_bytes / rows[kZstdDict].payload_bytes;
  const double wire_ratio = rows[kZstd].wire_bytes / rows[kZstdDict].wire_bytes;
  const double wire_ratio_pub = rows[kZstd].wire_bytes / rows[kZstdPubDict].wire_bytes;
  const bool pass = ratio >= kTargetRatio;
  const double raw_mean = rows[kNone].payload_bytes;

  std::printf("dictionary_bench: %zu notifications (seed %d) compressed one by one, zstd level %d\n", n, kEvalSeed, kLevel);
  std::printf("dictionary: %zu bytes, id %u, trained on %d notifications' JSON (seed %d) in %.2f s\n", dict.size(), dict_id,
              kTrainCount, kTrainSeed, train_s);
  std::printf("pubdict:    %zu bytes, id %u, trained on the same notifications as serialized Publications\n", pub_dict.size(),
              pub_dict_id);
  std::printf("mean serialized Publication (uncompressed): %.1f bytes\n\n", static_cast<double>(serialized_total) / static_cast<double>(n));
  std::printf("%-13s %8s %7s | %12s %8s | %12s %8s\n", "payload", "mean B", "vs raw", "compress/s", "MB/s", "decompress/s", "MB/s");
  for (Mode mode : {kNone, kZstd, kZstdDict}) {
    const Row& r = rows[mode];
    if (mode == kNone) {
      std::printf("%-13s %8.1f %7.3f | %12s %8s | %12s %8s\n", kModeName[mode], r.payload_bytes, 1.0, "-", "-", "-", "-");
    } else {
      std::printf("%-13s %8.1f %7.3f | %12.0f %8.1f | %12.0f %8.1f\n", kModeName[mode], r.payload_bytes,
                  r.payload_bytes / raw_mean, r.compress.msgs_per_s, r.compress.mb_per_s, r.decompress.msgs_per_s,
                  r.decompress.mb_per_s);
    }
  }
  std::printf("\n%-13s %8s %7s | %12s %8s | %12s %8s\n", "wire", "mean B", "vs raw", "encode/s", "MB/s", "read+parse/s", "MB/s");
  for (Mode mode : {kNone, kZstd, kZstdDict, kZstdPubDict}) {
    const Row& r = rows[mode];
    std::printf("%-13s %8.1f %7.3f | %12.0f %8.1f | %12.0f %8.1f\n", kModeName[mode], r.wire_bytes, r.wire_bytes / raw_mean,
                r.encode.msgs_per_s, r.encode.mb_per_s, r.decode.msgs_per_s, r.decode.mb_per_s);
  }
  std::printf("\n(payload = the notification JSON alone, as Publication.payload. wire = 16-byte header + protobuf\n"
              " Publication, compressed as a whole, + 4-byte CRC32C. \"vs raw\" is relative to the JSON alone.\n"
              " Speeds: median of %d runs of thread CPU time; MB = 1e6 bytes of uncompressed JSON for payload\n"
              " rows, of serialized Publication for wire rows.)\n\n", kRepeats);
  std::printf("ratio no-dict/dict: payload %.2f (target >= %.1f: %s); wire %.2f, wire with pubdict %.2f\n", ratio,
              kTargetRatio, pass ? "PASS" : "FAIL", wire_ratio, wire_ratio_pub);

  std::string json = "{\"benchmark\":\"dictionary\"";
  auto field = [&json](const char* key, double value, const char* format = "%.2f") {
    char buf[64];
    std::snprintf(buf, sizeof buf, format, value);
    json.append(",\"").append(key).append("\":").append(buf);
  };
  field("messages", static_cast<double>(n), "%.0f");
  field("level", kLevel, "%.0f");
  field("dictionary_bytes", static_cast<double>(dict.size()), "%.0f");
  field("raw_bytes_mean", raw_mean);
  field("zstd_bytes_mean", rows[kZstd].payload_bytes);
  field("zstd_dict_bytes_mean", rows[kZstdDict].payload_bytes);
  field("ratio_nodict_over_dict", ratio, "%.4f");
  field("target_ratio", kTargetRatio, "%.1f");
  json.append(",\"pass\":").append(pass ? "true" : "false");
  field("compress_zstd_msgs_per_s", rows[kZstd].compress.msgs_per_s, "%.0f");
  field("compress_zstd_mb_per_s", rows[kZstd].compress.mb_per_s);
  field("compress_zstd_dict_msgs_per_s", rows[kZstdDict].compress.msgs_per_s, "%.0f");
  field("compress_zstd_dict_mb_per_s", rows[kZstdDict].compress.mb_per_s);
  field("decompress_zstd_msgs_per_s", rows[kZstd].decompress.msgs_per_s, "%.0f");
  field("decompress_zstd_mb_per_s", rows[kZstd].decompress.mb_per_s);
  field("decompress_zstd_dict_msgs_per_s", rows[kZstdDict].decompress.msgs_per_s, "%.0f");
  field("decompress_zstd_dict_mb_per_s", rows[kZstdDict].decompress.mb_per_s);
  const char* wire_keys[] = {"none", "zstd", "zstd_dict", "zstd_pubdict"};
  for (Mode mode : {kNone, kZstd, kZstdDict, kZstdPubDict}) {
    field(("wire_bytes_mean_" + std::string(wire_keys[mode])).c_str(), rows[mode].wire_bytes);
    field(("wire_encode_msgs_per_s_" + std::string(wire_keys[mode])).c_str(), rows[mode].encode.msgs_per_s, "%.0f");
    field(("wire_read_parse_msgs_per_s_" + std::string(wire_keys[mode])).c_str(), rows[mode].decode.msgs_per_s, "%.0f");
  }
  field("wire_ratio_nodict_over_dict", wire_ratio, "%.4f");
  field("wire_ratio_nodict_over_pubdict", wire_ratio_pub, "%.4f");
  field("repeats", kRepeats, "%.0f");
  json += "}";
  std::printf("%s\n", json.c_str());
  if (!json_out.empty()) {
    FILE* f = std::fopen(json_out.c_str(), "w");
    if (f == nullptr || std::fprintf(f, "%s\n", json.c_str()) < 0 || std::fclose(f) != 0) die("cannot write " + json_out);
  }

  if (!pass) {
    std::fprintf(stderr,
                 "dictionary_bench: FAILED: with the dictionary a notification compresses to %.1f bytes, without to %.1f:\n"
                 "  ratio %.2f is below the target %.1f (the dictionary must make messages at least twice as small)\n",
                 rows[kZstdDict].payload_bytes, rows[kZstd].payload_bytes, ratio, kTargetRatio);
    return 1;
  }
  return 0;
}
