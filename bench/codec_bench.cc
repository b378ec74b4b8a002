// Codec micro-benchmarks (Google Benchmark) for the foundation issue's targets: decode plus
// CRC32C of 1 KiB frames, header parse, encode once / per-recipient headers, CRC32C, zstd.
// A benchmark program, not codec code: it may run the notification generator and use the clock.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bench/notifications.h"
#include "codec/checksum.h"
#include "codec/compression.h"
#include "codec/frame_decoder.h"
#include "codec/frame_encoder.h"
#include "codec/frame_header.h"
#include "codec/message.h"
#include "codec/message_reader.h"
#include "herald.pb.h"

namespace {

namespace codec = herald::codec;
namespace v1 = herald::v1;
using Bytes = std::vector<uint8_t>;

// ---------------------------------------------------------------------------------------
// Realistic input: notifications from the shared generator (about 380 bytes of JSON each).

using herald::bench::generate_notifications;
using herald::bench::make_publication;
using herald::bench::shared_dir;
using herald::bench::train_dictionary;

Bytes serialize(const google::protobuf::Message& m) {
  Bytes out;
  if (!codec::ok(codec::serialize_message(m, codec::kDefaultMaxMessageSize, out))) std::abort();
  return out;
}

struct Corpus {
  std::string error;                  // non-empty: the generator could not be run
  std::vector<std::string> eval;      // seed 2: what is measured
  std::shared_ptr<codec::DictionarySet> dictionaries;
  uint32_t dictionary_id = 0;
};

// Built on first use: generator runs and dictionary training take about a second.
const Corpus& corpus() {
  static const Corpus c = [] {
    Corpus r;
    std::vector<std::string> train;
    std::string error;  // unused: the skip message below says what to fix
    if (!generate_notifications(1, 5000, train, error) || !generate_notifications(2, 2000, r.eval, error)) {
      r.error = "cannot run /usr/bin/python3 " + shared_dir() + "/data/gen_notifications.py (set HERALD_SHARED_DIR)";
      return r;
    }
    std::vector<uint8_t> dict;
    if (!train_dictionary({train.begin(), train.end()}, 16 * 1024, dict, r.error)) return r;
    r.dictionaries = std::make_shared<codec::DictionarySet>();
    if (!codec::ok(r.dictionaries->add(dict, 3, &r.dictionary_id))) {
      r.error = "DictionarySet::add rejected the trained dictionary";
      return r;
    }
    return r;
  }();
  return c;
}

// A serialized Publication of exactly `size` bytes (its payload is padded with real JSON).
Bytes publication_of_size(size_t size) {
  static const std::string kSample =
      R"({"message_id":"68134503-ea63-4c95-8b29-558fe29bd78f","message_type":"order_accepted",)"
      R"("user_id":"bce88796-64ed-4ce5-9b4a-18fca1390385","channel":"trade","priority":1,)"
      R"("timestamp":1760000000003692131,"source":"MatchingEngine","payload":{"order_id":)"
      R"("O097650079424","instrument_id":"SOL-USD","direction":"SELL","offset":"CLOSE",)"
      R"("price":1448.65,"volume":2,"status":"ACCEPTED"}})";
  v1::Publication p = make_publication(kSample, 1);
  std::string payload;
  while (payload.size() < size) payload += kSample;
  for (size_t n = size;; --n) {  // shrink the payload until the whole message fits exactly
    p.set_payload(payload.substr(0, n));
    if (p.ByteSizeLong() <= size) break;
  }
  Bytes out = serialize(p);
  if (out.size() != size) std::abort();  // a varint boundary skipped it: pick another size
  return out;
}

// ---------------------------------------------------------------------------------------
// 1. "Decode plus checksum verification of 1 KiB frames: at least 2 GB/s"

constexpr size_t kFrameBody = 1024;  // body bytes on the wire: protobuf plus 4-byte CRC32C
constexpr size_t kStreamFrames = 1024;  // ~1 MiB of back-to-back frames per iteration

const Bytes& stream_1kib() {
  static const Bytes stream = [] {
    codec::EncodedMessage m;
    codec::EncodeOptions o;
    o.checksum = true;
    if (!codec::ok(codec::encode_message(codec::FrameType::kPublication, publication_of_size(kFrameBody - codec::kChecksumSize),
                                         o, nullptr, m)) ||
        m.frame_count() != 1 || m.body(0).size() != kFrameBody) {
      std::abort();
    }
    Bytes s;
    uint32_t seq = 0;
    for (size_t i = 0; i < kStreamFrames; ++i) codec::append_frames(m, seq, s);
    return s;
  }();
  return stream;
}

// Frames only: FrameDecoder with CRC32C verification and sequence checks, fed the stream in
// `chunk`-byte reads as a socket would deliver them (frames straddle the read boundaries).
void BM_DecodeVerify1KiB(benchmark::State& state) {
  const Bytes& stream = stream_1kib();
  const size_t chunk = static_cast<size_t>(state.range(0));
  codec::DecoderLimits limits;
  limits.check_sequence = true;
  limits.require_checksum = true;
  for (auto _ : state) {
    codec::FrameDecoder decoder(limits);
    size_t frames = 0;
    for (size_t off = 0; off < stream.size(); off += chunk) {
      std::span<const uint8_t> in(stream.data() + off, std::min(chunk, stream.size() - off));
      while (!in.empty()) {
        codec::Frame frame;
        const codec::DecodeResult r = decoder.decode(in, frame);
        in = in.subspan(r.consumed);
        if (r.status == codec::Status::kOk) {
          benchmark::DoNotOptimize(frame.payload.data());
          ++frames;
        } else if (r.status != codec::Status::kNeedMore) {
          state.SkipWithError(std::string(codec::to_string(r.status)).c_str());
          return;
        }
      }
    }
    if (frames != kStreamFrames) {
      state.SkipWithError("wrong frame count");
      return;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * stream.size()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kStreamFrames));
}
BENCHMARK(BM_DecodeVerify1KiB)->Arg(64 * 1024)->ArgName("chunk");

// The whole inbound pipeline up to message bodies: MessageReader (decoder, reassembly
// check, decompression check), no protobuf parse. `parse` adds decode_message per body.
void decode_reader(benchmark::State& state, bool parse) {
  const Bytes& stream = stream_1kib();
  const size_t chunk = static_cast<size_t>(state.range(0));
  codec::ReaderLimits limits;
  limits.decoder.check_sequence = true;
  codec::CodecContext context;
  for (auto _ : state) {
    codec::MessageReader reader(limits, &context);
    size_t messages = 0;
    for (size_t off = 0; off < stream.size(); off += chunk) {
      std::span<const uint8_t> in(stream.data() + off, std::min(chunk, stream.size() - off));
      while (!in.empty()) {
        codec::InboundMessage m;
        const codec::DecodeResult r = reader.read(in, 0, m);
        in = in.subspan(r.consumed);
        if (r.status == codec::Status::kOk) {
          if (parse) {
            std::unique_ptr<google::protobuf::Message> msg;
            if (!codec::ok(codec::decode_message(m.type, m.body, codec::kDefaultMaxMessageSize, msg))) {
              state.SkipWithError("decode_message failed");
              return;
            }
            benchmark::DoNotOptimize(msg.get());
          } else {
            benchmark::DoNotOptimize(m.body.data());
          }
          ++messages;
        } else if (r.status != codec::Status::kNeedMore) {
          state.SkipWithError(std::string(codec::to_string(r.status)).c_str());
          return;
        }
      }
    }
    if (messages != kStreamFrames) {
      state.SkipWithError("wrong message count");
      return;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * stream.size()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kStreamFrames));
}
void BM_ReadMessages1KiB(benchmark::State& state) { decode_reader(state, false); }
void BM_ReadAndParse1KiB(benchmark::State& state) { decode_reader(state, true); }
BENCHMARK(BM_ReadMessages1KiB)->Arg(64 * 1024)->ArgName("chunk");
BENCHMARK(BM_ReadAndParse1KiB)->Arg(64 * 1024)->ArgName("chunk");

// ---------------------------------------------------------------------------------------
// 2. "Header parse: at most 10 ns"

void BM_HeaderParse(benchmark::State& state) {
  codec::FrameHeader h;
  h.type = codec::FrameType::kPublication;
  h.flags = codec::kFlagChecksummed | codec::kFlagCompressed;
  h.length = 412;
  h.sequence = 123456;
  uint8_t buf[codec::kHeaderSize];
  codec::encode_header(h, buf);
  for (auto _ : state) {
    benchmark::DoNotOptimize(buf);  // the compiler must re-read the bytes every time
    codec::FrameHeader out;
    const codec::Status s = codec::decode_header(std::span<const uint8_t, codec::kHeaderSize>(buf), out);
    benchmark::DoNotOptimize(s);
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_HeaderParse);

// ---------------------------------------------------------------------------------------
// 3. "Encode a publication once, then produce per-connection headers: at most 20 ns per
//    extra recipient"

// Serialize one Publication and encode it into a fresh shared EncodedMessage, as the server
// does once per published message. mode: 0 = plain, 1 = zstd, 2 = zstd with the dictionary.
void BM_EncodeOnce(benchmark::State& state) {
  const Corpus& c = corpus();
  if (!c.error.empty()) {
    state.SkipWithError(c.error.c_str());
    return;
  }
  const int mode = static_cast<int>(state.range(0));
  std::vector<v1::Publication> pubs;
  for (size_t i = 0; i < 256; ++i) pubs.push_back(make_publication(c.eval[i], i + 1));
  codec::Compressor compressor(c.dictionaries);
  codec::EncodeOptions o;
  o.checksum = true;
  o.compress = mode != 0;
  o.dictionary_id = mode == 2 ? c.dictionary_id : 0;
  size_t next = 0;
  uint64_t in_bytes = 0;
  uint64_t wire_bytes = 0;
  Bytes body;
  for (auto _ : state) {
    const v1::Publication& p = pubs[next];
    next = (next + 1) % pubs.size();
    if (!codec::ok(codec::serialize_message(p, codec::kDefaultMaxMessageSize, body))) {
      state.SkipWithError("serialize_message failed");
      return;
    }
    auto m = std::make_shared<codec::EncodedMessage>();
    if (!codec::ok(codec::encode_message(codec::FrameType::kPublication, body, o, &compressor, *m))) {
      state.SkipWithError("encode_message failed");
      return;
    }
    in_bytes += body.size();
    wire_bytes += m->wire_size();
    benchmark::DoNotOptimize(m.get());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(in_bytes));
  const double n = static_cast<double>(state.iterations());
  state.counters["publication_bytes"] = static_cast<double>(in_bytes) / n;
  state.counters["wire_bytes"] = static_cast<double>(wire_bytes) / n;
}
BENCHMARK(BM_EncodeOnce)->Arg(0)->Arg(1)->Arg(2)->ArgName("mode");

// What a plain-TCP connection keeps per queued frame: its own 16 header bytes and a
// reference to the shared body (the server passes both to evbuffer_add_reference). With
// kOwn it also holds a shared_ptr that keeps the body alive until it is written.
template <bool kOwn>
struct WriteQueue {
  static constexpr size_t kSlots = 8;
  uint32_t next_sequence = 0;
  uint32_t count = 0;
  std::array<std::array<uint8_t, codec::kHeaderSize>, kSlots> headers{};
  std::array<std::span<const uint8_t>, kSlots> bodies{};
};
template <>
struct WriteQueue<true> : WriteQueue<false> {
  std::array<std::shared_ptr<const codec::EncodedMessage>, kSlots> owners{};
};

// Per-recipient cost of one already-encoded message: the header with that connection's
// sequence number plus a body reference, appended to each of N connections' queues (which
// live in different cache lines, as connections do). kOwn adds the shared_ptr copy: an
// atomic increment and, when a slot is reused, a decrement.
template <bool kOwn>
void per_recipient(benchmark::State& state) {
  const size_t recipients = static_cast<size_t>(state.range(0));
  const Bytes body = publication_of_size(380);
  auto shared = std::make_shared<codec::EncodedMessage>();
  codec::EncodeOptions o;
  o.checksum = true;
  if (!codec::ok(codec::encode_message(codec::FrameType::kPublication, body, o, nullptr, *shared))) {
    state.SkipWithError("encode_message failed");
    return;
  }
  std::shared_ptr<const codec::EncodedMessage> message = shared;
  std::vector<WriteQueue<kOwn>> queues(recipients);
  for (auto _ : state) {
    for (WriteQueue<kOwn>& q : queues) {
      if (q.count == WriteQueue<kOwn>::kSlots) q.count = 0;  // the loop's write pass flushed it
      message->write_header(0, q.next_sequence++, q.headers[q.count].data());
      q.bodies[q.count] = message->body(0);
      if constexpr (kOwn) q.owners[q.count] = message;
      ++q.count;
    }
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * recipients));
  // Nanoseconds of CPU time per recipient. The console prints it with an "s" suffix (Google
  // Benchmark's unit for inverted rates); the number is nanoseconds.
  state.counters["ns_per_recipient"] = benchmark::Counter(
      static_cast<double>(recipients) * 1e-9, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
void BM_PerRecipientHeader(benchmark::State& state) { per_recipient<false>(state); }
void BM_PerRecipientHeaderShared(benchmark::State& state) { per_recipient<true>(state); }
BENCHMARK(BM_PerRecipientHeader)->Arg(1000)->Arg(10000)->ArgName("recipients");
BENCHMARK(BM_PerRecipientHeaderShared)->Arg(1000)->Arg(10000)->ArgName("recipients");

// ---------------------------------------------------------------------------------------
// 4. CRC32C: the CPU-instruction path (when crc32c_hardware()) and the portable one.

void crc_bench(benchmark::State& state, bool software) {
  Bytes data(static_cast<size_t>(state.range(0)));
  std::mt19937 rng(42);
  for (uint8_t& b : data) b = static_cast<uint8_t>(rng());
  for (auto _ : state) {
    const uint32_t crc = software ? codec::crc32c_software(data) : codec::crc32c(data);
    benchmark::DoNotOptimize(crc);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * data.size()));
  state.SetLabel(software || !codec::crc32c_hardware() ? "software" : "hardware");
}
void BM_Crc32c(benchmark::State& state) { crc_bench(state, false); }
void BM_Crc32cSoftware(benchmark::State& state) { crc_bench(state, true); }
BENCHMARK(BM_Crc32c)->Arg(64)->Arg(1024)->Arg(64 * 1024);
BENCHMARK(BM_Crc32cSoftware)->Arg(64)->Arg(1024)->Arg(64 * 1024);

// ---------------------------------------------------------------------------------------
// 5. zstd on single notifications (the JSON only), level 3, without (0) and with (1) the
//    dictionary trained on another seed's output. Bytes/s count the uncompressed JSON.

void BM_Compress(benchmark::State& state) {
  const Corpus& c = corpus();
  if (!c.error.empty()) {
    state.SkipWithError(c.error.c_str());
    return;
  }
  codec::Compressor compressor(c.dictionaries);
  codec::CompressOptions o;
  o.level = 3;
  o.dictionary_id = state.range(0) != 0 ? c.dictionary_id : 0;
  Bytes out;
  size_t next = 0;
  uint64_t raw = 0;
  uint64_t packed = 0;
  for (auto _ : state) {
    const std::string& s = c.eval[next];
    next = (next + 1) % c.eval.size();
    out.clear();
    if (!codec::ok(compressor.compress({reinterpret_cast<const uint8_t*>(s.data()), s.size()}, o, out))) {
      state.SkipWithError("compress failed");
      return;
    }
    raw += s.size();
    packed += out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(raw));
  state.counters["raw_bytes"] = static_cast<double>(raw) / static_cast<double>(state.iterations());
  state.counters["compressed_bytes"] = static_cast<double>(packed) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_Compress)->Arg(0)->Arg(1)->ArgName("dict");

void BM_Decompress(benchmark::State& state) {
  const Corpus& c = corpus();
  if (!c.error.empty()) {
    state.SkipWithError(c.error.c_str());
    return;
  }
  codec::Compressor compressor(c.dictionaries);
  codec::Decompressor decompressor(c.dictionaries);
  codec::CompressOptions o;
  o.level = 3;
  o.dictionary_id = state.range(0) != 0 ? c.dictionary_id : 0;
  std::vector<Bytes> packed(c.eval.size());
  for (size_t i = 0; i < c.eval.size(); ++i) {
    const std::string& s = c.eval[i];
    Bytes back;
    if (!codec::ok(compressor.compress({reinterpret_cast<const uint8_t*>(s.data()), s.size()}, o, packed[i])) ||
        !codec::ok(decompressor.decompress(packed[i], {}, back)) ||
        std::string_view(reinterpret_cast<const char*>(back.data()), back.size()) != s) {
      state.SkipWithError("round trip failed");
      return;
    }
  }
  Bytes out;
  size_t next = 0;
  uint64_t raw = 0;
  for (auto _ : state) {
    if (!codec::ok(decompressor.decompress(packed[next], {}, out))) {
      state.SkipWithError("decompress failed");
      return;
    }
    next = (next + 1) % packed.size();
    raw += out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(raw));
}
BENCHMARK(BM_Decompress)->Arg(0)->Arg(1)->ArgName("dict");

}  // namespace

BENCHMARK_MAIN();
