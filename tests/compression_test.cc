// zstd compression: round trips, dictionaries, and every limit the decompressor enforces
// (bombs with and without a declared size, windows above the pin, corrupt and malformed
// frames), each asserting the specific Status.
#include "codec/compression.h"

#include <gtest/gtest.h>
#define ZSTD_STATIC_LINKING_ONLY  // ZSTD_getFrameHeader, to inspect what the compressor wrote
#include <zdict.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace herald::codec {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr size_t kMiB = 1024 * 1024;

Bytes random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  Bytes v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

Bytes repetitive_bytes(size_t n) {
  static const std::string kPattern = "{\"type\":\"order_filled\",\"volume\":10},";
  Bytes v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(kPattern[i % kPattern.size()]);
  return v;
}

// A notification-like JSON document: shared structure, varying values; what Herald's
// dictionaries are trained on.
std::string json_sample(std::mt19937& rng) {
  static const char* const kTypes[] = {"order_accepted", "order_filled", "trade_executed",
                                       "account_update", "position_update", "risk_alert"};
  static const char* const kInstruments[] = {"IF2412", "IC2412", "AU2502", "BTC-USD", "AAPL"};
  std::string s = "{\"message_type\":\"";
  s += kTypes[rng() % 6];
  s += "\",\"user_id\":\"u" + std::to_string(rng() % 100000);
  s += "\",\"order_id\":\"O" + std::to_string(100000000000ull + rng() % 900000000000ull);
  s += "\",\"instrument_id\":\"";
  s += kInstruments[rng() % 5];
  s += "\",\"direction\":\"";
  s += (rng() % 2) != 0 ? "BUY" : "SELL";
  s += "\",\"price\":" + std::to_string(rng() % 500000) + "." + std::to_string(rng() % 100);
  s += ",\"volume\":" + std::to_string(1 + rng() % 100);
  s += ",\"status\":\"FILLED\",\"ts\":" + std::to_string(1700000000000ull + rng() % 10000000);
  s += "}";
  return s;
}

Bytes to_bytes(const std::string& s) { return Bytes(s.begin(), s.end()); }

// Trains a dictionary in-process so the test needs no data files. Deterministic.
const Bytes& trained_dictionary() {
  static const Bytes dict = [] {
    std::mt19937 rng(42);
    std::string samples;
    std::vector<size_t> sizes;
    for (int i = 0; i < 4000; ++i) {
      const std::string s = json_sample(rng);
      samples += s;
      sizes.push_back(s.size());
    }
    Bytes d(16 * 1024);
    const size_t n = ZDICT_trainFromBuffer(d.data(), d.size(), samples.data(), sizes.data(),
                                           static_cast<unsigned>(sizes.size()));
    if (ZDICT_isError(n)) {
      ADD_FAILURE() << "ZDICT_trainFromBuffer: " << ZDICT_getErrorName(n);
      return Bytes{};
    }
    d.resize(n);
    return d;
  }();
  return dict;
}

// The same dictionary under another id: the id is plain bytes 4..7 (little-endian).
Bytes with_dictionary_id(Bytes dict, uint32_t id) {
  for (int i = 0; i < 4; ++i) dict[4 + i] = static_cast<uint8_t>(id >> (8 * i));
  return dict;
}

std::shared_ptr<const DictionarySet> make_set(std::initializer_list<Bytes> dicts) {
  auto set = std::make_shared<DictionarySet>();
  for (const Bytes& d : dicts) EXPECT_EQ(set->add(d), Status::kOk);
  return set;
}

ZSTD_frameHeader frame_header(const Bytes& frame) {
  ZSTD_frameHeader h{};
  EXPECT_EQ(ZSTD_getFrameHeader(&h, frame.data(), frame.size()), 0u);
  return h;
}

// Streams `total` bytes produced by `chunk` through zstd without pledging a size, so the
// frame header has no content size and keeps the full window log.
Bytes compress_unknown_size(const Bytes& chunk, size_t repeat, int window_log, int level = 1) {
  std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> cctx(ZSTD_createCCtx(), &ZSTD_freeCCtx);
  EXPECT_FALSE(ZSTD_isError(ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, level)));
  EXPECT_FALSE(ZSTD_isError(ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_windowLog, window_log)));
  Bytes out;
  Bytes buf(ZSTD_CStreamOutSize());
  auto drain = [&](ZSTD_inBuffer& in, ZSTD_EndDirective mode) {
    for (;;) {
      ZSTD_outBuffer o{buf.data(), buf.size(), 0};
      const size_t left = ZSTD_compressStream2(cctx.get(), &o, &in, mode);
      EXPECT_FALSE(ZSTD_isError(left)) << ZSTD_getErrorName(left);
      out.insert(out.end(), buf.data(), buf.data() + o.pos);
      if (ZSTD_isError(left)) return;
      if (mode == ZSTD_e_end ? left == 0 : in.pos == in.size) return;
    }
  };
  for (size_t i = 0; i < repeat; ++i) {
    ZSTD_inBuffer in{chunk.data(), chunk.size(), 0};
    drain(in, ZSTD_e_continue);  // never e_end with input: that would pledge the size
  }
  ZSTD_inBuffer none{nullptr, 0, 0};
  drain(none, ZSTD_e_end);
  return out;
}

Bytes compress_ok(Compressor& c, const Bytes& in, const CompressOptions& options = {}) {
  Bytes out;
  EXPECT_EQ(c.compress(in, options, out), Status::kOk);
  return out;
}

// Everything a bit flip may legitimately turn into. kOk is included because Herald frames
// carry no zstd checksum: a flipped literal decodes to different bytes (the CRC32C of the
// Herald frame is what catches that on the wire).
const std::set<Status> kCorruptionResults = {Status::kOk, Status::kDecompressionFailed,
                                             Status::kDecompressedTooLarge,
                                             Status::kWindowTooLarge, Status::kUnknownDictionary};

// ---------------------------------------------------------------------------------------

TEST(Compression, RoundTripManySizesWithAndWithoutDictionary) {
  const Bytes& dict = trained_dictionary();
  ASSERT_FALSE(dict.empty());
  uint32_t dict_id = 0;
  auto set = std::make_shared<DictionarySet>();
  ASSERT_EQ(set->add(dict, 3, &dict_id), Status::kOk);
  ASSERT_NE(dict_id, 0u);
  Compressor compressor(set);
  Decompressor decompressor(set);

  for (size_t size : {size_t{0}, size_t{1}, size_t{255}, size_t{256}, size_t{4096}, kMiB}) {
    for (bool random : {true, false}) {
      for (uint32_t id : {0u, dict_id}) {
        SCOPED_TRACE(testing::Message() << "size " << size << (random ? " random" : " repetitive")
                                        << " dictionary " << id);
        const Bytes in = random ? random_bytes(size, static_cast<uint32_t>(size)) : repetitive_bytes(size);
        CompressOptions options;
        options.dictionary_id = id;
        const Bytes frame = compress_ok(compressor, in, options);

        // The header carries what the protocol requires: content size, dictionary id, no
        // checksum, and a window within the default.
        const ZSTD_frameHeader h = frame_header(frame);
        EXPECT_EQ(h.frameType, ZSTD_frame);
        EXPECT_EQ(h.frameContentSize, size);
        EXPECT_EQ(h.dictID, id);
        EXPECT_EQ(h.checksumFlag, 0u);
        EXPECT_LE(h.windowSize, uint64_t{1} << kDefaultCompressWindowLog);
        if (!random && size >= 4096) {
          EXPECT_LT(frame.size(), size / 10);
        }

        Bytes out = {1, 2, 3};  // replaced, not appended to
        ASSERT_EQ(decompressor.decompress(frame, {}, out), Status::kOk);
        EXPECT_TRUE(out == in);
      }
    }
  }
}

TEST(Compression, DictionaryMakesSmallMessagesSmaller) {
  uint32_t id = 0;
  auto set = std::make_shared<DictionarySet>();
  ASSERT_EQ(set->add(trained_dictionary(), 3, &id), Status::kOk);
  Compressor compressor(set);
  std::mt19937 rng(7);
  const Bytes in = to_bytes(json_sample(rng));
  const Bytes plain = compress_ok(compressor, in);
  const Bytes with_dict = compress_ok(compressor, in, {.dictionary_id = id});
  EXPECT_LT(with_dict.size(), plain.size());
  EXPECT_LT(with_dict.size(), in.size() / 2) << in.size();
}

TEST(Compression, CompressAppendsToExistingOutput) {
  Compressor compressor;
  Decompressor decompressor;
  const Bytes in = repetitive_bytes(1000);
  Bytes out = {0xAA, 0xBB};
  ASSERT_EQ(compressor.compress(in, {}, out), Status::kOk);
  ASSERT_GT(out.size(), 2u);
  EXPECT_EQ(out[0], 0xAA);
  EXPECT_EQ(out[1], 0xBB);
  Bytes decoded;
  ASSERT_EQ(decompressor.decompress(std::span(out).subspan(2), {}, decoded), Status::kOk);
  EXPECT_TRUE(decoded == in);
}

TEST(Compression, ContextsReusedAcrossThousandMessages) {
  uint32_t id = 0;
  auto set = std::make_shared<DictionarySet>();
  ASSERT_EQ(set->add(trained_dictionary(), 3, &id), Status::kOk);
  Compressor compressor(set);
  Decompressor decompressor(set);
  std::mt19937 rng(8);
  Bytes frame;
  Bytes out;
  for (int i = 0; i < 1000; ++i) {
    std::string text;
    const int parts = 1 + static_cast<int>(rng() % 8);
    for (int p = 0; p < parts; ++p) text += json_sample(rng);
    const Bytes in = to_bytes(text);
    CompressOptions options;
    options.level = 1 + i % 5;
    options.dictionary_id = (i % 3 == 0) ? 0 : id;  // switch dictionaries on one context
    frame.clear();
    ASSERT_EQ(compressor.compress(in, options, frame), Status::kOk) << i;
    ASSERT_EQ(frame_header(frame).dictID, options.dictionary_id) << i;
    ASSERT_EQ(decompressor.decompress(frame, {}, out), Status::kOk) << i;
    ASSERT_TRUE(out == in) << i;
  }
}

TEST(Compression, WindowLogIsClampedToTheProtocolMaximum) {
  Compressor compressor;
  Decompressor decompressor;
  // 16 MiB: big enough that zstd keeps the requested window instead of shrinking it to
  // the content size. A repeated random block keeps compression fast.
  const Bytes block = random_bytes(64 * 1024, 9);
  Bytes in;
  for (int i = 0; i < 256; ++i) in.insert(in.end(), block.begin(), block.end());

  CompressOptions big;
  big.window_log = 30;
  const Bytes frame = compress_ok(compressor, in, big);
  EXPECT_EQ(frame_header(frame).windowSize, uint64_t{1} << kMaxWindowLog);
  Bytes out;
  ASSERT_EQ(decompressor.decompress(frame, {.max_output = in.size()}, out), Status::kOk);
  EXPECT_TRUE(out == in);

  const Bytes default_frame = compress_ok(compressor, in);
  EXPECT_EQ(frame_header(default_frame).windowSize, uint64_t{1} << kDefaultCompressWindowLog);

  CompressOptions tiny;
  tiny.window_log = 1;  // below zstd's minimum: clamped up, not an error
  const Bytes tiny_frame = compress_ok(compressor, in, tiny);
  EXPECT_EQ(frame_header(tiny_frame).windowSize, uint64_t{1} << 10);
  ASSERT_EQ(decompressor.decompress(tiny_frame, {.max_output = in.size()}, out), Status::kOk);
  EXPECT_TRUE(out == in);
}

TEST(Compression, WindowLogIsKeptWithADictionary) {
  uint32_t id = 0;
  auto set = std::make_shared<DictionarySet>();
  ASSERT_EQ(set->add(trained_dictionary(), 3, &id), Status::kOk);
  Compressor compressor(set);
  const Bytes in = repetitive_bytes(32 * kMiB);
  const Bytes frame = compress_ok(compressor, in, {.window_log = 30, .dictionary_id = id});
  EXPECT_LE(frame_header(frame).windowSize, uint64_t{1} << kMaxWindowLog);
}

TEST(Compression, UnknownContentSizeRoundTripsAtManySizes) {
  // Not what Herald sends, but a peer may; exercises the growing output buffer.
  Decompressor decompressor;
  for (size_t size : {size_t{0}, size_t{1}, size_t{4095}, size_t{4096}, size_t{4097},
                      size_t{100000}, kMiB}) {
    const Bytes in = random_bytes(size, 10);
    const Bytes frame = compress_unknown_size(in, 1, 20);
    ASSERT_EQ(frame_header(frame).frameContentSize, ZSTD_CONTENTSIZE_UNKNOWN);
    Bytes out;
    ASSERT_EQ(decompressor.decompress(frame, {}, out), Status::kOk) << size;
    EXPECT_TRUE(out == in) << size;
    EXPECT_LE(out.capacity(), kMiB) << size;
  }
}

TEST(Compression, ContentSizeCanBeRequired) {
  // The wire protocol requires it (docs/protocol.md §6.2); the check comes before
  // the window check, so an unsized frame with a huge window still names the size.
  Decompressor decompressor;
  const Bytes in = random_bytes(1000, 11);
  const Bytes unknown = compress_unknown_size(in, 1, 20);
  Bytes out;
  EXPECT_EQ(decompressor.decompress(unknown, {.require_content_size = true}, out), Status::kDecompressionFailed);
  EXPECT_TRUE(out.empty());
  const Bytes big_window = compress_unknown_size(in, 1, 27);
  EXPECT_EQ(decompressor.decompress(big_window, {.require_content_size = true}, out), Status::kDecompressionFailed);
  EXPECT_EQ(decompressor.decompress(big_window, {}, out), Status::kWindowTooLarge);
  Compressor compressor;
  const Bytes known = compress_ok(compressor, in);
  EXPECT_EQ(decompressor.decompress(known, {.require_content_size = true}, out), Status::kOk);
  EXPECT_TRUE(out == in);
}

TEST(Compression, OutputExactlyAtTheLimit) {
  Compressor compressor;
  Decompressor decompressor;
  const Bytes in = repetitive_bytes(10000);
  const Bytes known = compress_ok(compressor, in);
  const Bytes unknown = compress_unknown_size(in, 1, 20);
  for (const Bytes* frame : {&known, &unknown}) {
    Bytes out;
    EXPECT_EQ(decompressor.decompress(*frame, {.max_output = 10000}, out), Status::kOk);
    EXPECT_TRUE(out == in);
    EXPECT_EQ(decompressor.decompress(*frame, {.max_output = 9999}, out),
              Status::kDecompressedTooLarge);
    EXPECT_TRUE(out.empty());
    EXPECT_LE(out.capacity(), 10000u);
  }
  // The empty message at a zero limit.
  const Bytes empty = compress_ok(compressor, {});
  Bytes out;
  EXPECT_EQ(decompressor.decompress(empty, {.max_output = 0}, out), Status::kOk);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(decompressor.decompress(compress_ok(compressor, Bytes{1}), {.max_output = 0}, out),
            Status::kDecompressedTooLarge);
}

// ---------------------------------------------------------------------------------------
// Bombs: 1 GiB of zeros, compressed once for the whole suite (about 32 KiB each).

class ZstdBomb : public testing::Test {
 protected:
  static constexpr size_t kBombSize = size_t{1} << 30;

  static void SetUpTestSuite() {
    const Bytes zeros(kMiB);
    // Declared size: pledge 1 GiB, then stream it.
    std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> cctx(ZSTD_createCCtx(), &ZSTD_freeCCtx);
    ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, 1);
    ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_windowLog, 20);
    ZSTD_CCtx_setPledgedSrcSize(cctx.get(), kBombSize);
    declared_ = new Bytes;
    Bytes buf(ZSTD_CStreamOutSize());
    for (size_t i = 0; i < kBombSize / kMiB; ++i) {
      ZSTD_inBuffer in{zeros.data(), zeros.size(), 0};
      const ZSTD_EndDirective mode = i + 1 == kBombSize / kMiB ? ZSTD_e_end : ZSTD_e_continue;
      for (;;) {
        ZSTD_outBuffer o{buf.data(), buf.size(), 0};
        const size_t left = ZSTD_compressStream2(cctx.get(), &o, &in, mode);
        ASSERT_FALSE(ZSTD_isError(left)) << ZSTD_getErrorName(left);
        declared_->insert(declared_->end(), buf.data(), buf.data() + o.pos);
        if (mode == ZSTD_e_end ? left == 0 : in.pos == in.size) break;
      }
    }
    unknown_ = new Bytes(compress_unknown_size(zeros, kBombSize / kMiB, 20));
  }
  static void TearDownTestSuite() {
    delete declared_;
    delete unknown_;
    declared_ = unknown_ = nullptr;
  }

  static Bytes* declared_;
  static Bytes* unknown_;
};
Bytes* ZstdBomb::declared_ = nullptr;
Bytes* ZstdBomb::unknown_ = nullptr;

TEST_F(ZstdBomb, FramesAreWhatTheTestNeeds) {
  ASSERT_LT(declared_->size(), 256u * 1024);
  ASSERT_LT(unknown_->size(), 256u * 1024);
  EXPECT_EQ(frame_header(*declared_).frameContentSize, kBombSize);
  EXPECT_EQ(frame_header(*unknown_).frameContentSize, ZSTD_CONTENTSIZE_UNKNOWN);
  EXPECT_EQ(frame_header(*unknown_).windowSize, kMiB);
}

TEST_F(ZstdBomb, DeclaredSizeIsRejectedBeforeAllocating) {
  Decompressor decompressor;
  Bytes out;
  EXPECT_EQ(decompressor.decompress(*declared_, {}, out), Status::kDecompressedTooLarge);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(out.capacity(), 0u);  // nothing was allocated for output at all
}

TEST_F(ZstdBomb, UnknownSizeStopsAtTheLimit) {
  Decompressor decompressor;
  for (size_t max_output : {size_t{0}, size_t{1}, size_t{64} * 1024, kMiB, 3 * kMiB + 17}) {
    Bytes out;
    EXPECT_EQ(decompressor.decompress(*unknown_, {.max_output = max_output}, out),
              Status::kDecompressedTooLarge)
        << max_output;
    EXPECT_TRUE(out.empty());
    EXPECT_LE(out.capacity(), max_output);  // grown in steps, never past the limit
  }
}

TEST_F(ZstdBomb, DecompressorWorksAfterABomb) {
  Compressor compressor;
  Decompressor decompressor;
  const Bytes in = repetitive_bytes(5000);
  const Bytes good = compress_ok(compressor, in);
  Bytes out;
  for (const Bytes* bomb : {unknown_, declared_}) {
    ASSERT_EQ(decompressor.decompress(*bomb, {}, out), Status::kDecompressedTooLarge);
    ASSERT_EQ(decompressor.decompress(good, {}, out), Status::kOk);
    EXPECT_TRUE(out == in);
  }
}

// ---------------------------------------------------------------------------------------
// Windows

TEST(Compression, WindowAboveTheLimitIsRejectedBeforeAllocating) {
  Decompressor decompressor;
  const Bytes in = repetitive_bytes(1000);
  // Unknown content size, so zstd records the requested window instead of shrinking it.
  const Bytes w27 = compress_unknown_size(in, 1, 27);
  ASSERT_EQ(frame_header(w27).windowSize, uint64_t{1} << 27);
  Bytes out;
  EXPECT_EQ(decompressor.decompress(w27, {}, out), Status::kWindowTooLarge);
  EXPECT_EQ(out.capacity(), 0u);

  const Bytes w24 = compress_unknown_size(in, 1, 24);
  EXPECT_EQ(decompressor.decompress(w24, {}, out), Status::kWindowTooLarge);
  EXPECT_EQ(out.capacity(), 0u);

  // Exactly the pinned maximum is allowed.
  const Bytes w23 = compress_unknown_size(in, 1, 23);
  ASSERT_EQ(frame_header(w23).windowSize, uint64_t{1} << 23);
  EXPECT_EQ(decompressor.decompress(w23, {}, out), Status::kOk);
  EXPECT_TRUE(out == in);

  // A tighter limit from the caller.
  const Bytes w21 = compress_unknown_size(in, 1, 21);
  EXPECT_EQ(decompressor.decompress(w21, {.max_output = kMiB, .max_window_log = 20}, out),
            Status::kWindowTooLarge);
  EXPECT_EQ(decompressor.decompress(w21, {.max_output = kMiB, .max_window_log = 21}, out),
            Status::kOk);
  EXPECT_TRUE(out == in);
}

// ---------------------------------------------------------------------------------------
// Dictionaries

TEST(DictionarySet, AddLooksUpAndListsDictionaries) {
  const Bytes& dict = trained_dictionary();
  const uint32_t trained_id = ZSTD_getDictID_fromDict(dict.data(), dict.size());
  ASSERT_NE(trained_id, 0u);
  DictionarySet set;
  EXPECT_TRUE(set.ids().empty());
  EXPECT_EQ(set.cdict(trained_id), nullptr);
  EXPECT_EQ(set.ddict(trained_id), nullptr);

  uint32_t id = 0;
  ASSERT_EQ(set.add(dict, 3, &id), Status::kOk);
  EXPECT_EQ(id, trained_id);
  uint32_t other = 0;
  ASSERT_EQ(set.add(with_dictionary_id(dict, 77), 5, &other), Status::kOk);
  EXPECT_EQ(other, 77u);
  EXPECT_EQ(set.ids(), (std::vector<uint32_t>{trained_id, 77}));
  EXPECT_TRUE(set.contains(77));
  EXPECT_FALSE(set.contains(78));
  EXPECT_NE(set.cdict(77), nullptr);
  EXPECT_NE(set.ddict(77), nullptr);
  EXPECT_EQ(set.cdict(78), nullptr);
  EXPECT_EQ(set.ddict(0), nullptr);
}

TEST(DictionarySet, RejectsBytesThatAreNotADictionaryWithAnId) {
  DictionarySet set;
  uint32_t id = 12345;
  // Raw content (what `zstd --train` never writes, but raw-content dictionaries exist).
  EXPECT_EQ(set.add(to_bytes("just some text that could be raw dictionary content"), 3, &id),
            Status::kUnknownDictionary);
  EXPECT_EQ(id, 12345u);  // untouched on error
  EXPECT_EQ(set.add({}, 3), Status::kUnknownDictionary);
  // A zstd frame is not a dictionary.
  Compressor compressor;
  EXPECT_EQ(set.add(compress_ok(compressor, repetitive_bytes(100))), Status::kUnknownDictionary);
  // Dictionary magic but id 0.
  EXPECT_EQ(set.add(with_dictionary_id(trained_dictionary(), 0)), Status::kUnknownDictionary);
  // Dictionary magic and id, garbage entropy tables.
  Bytes garbage = {0x37, 0xA4, 0x30, 0xEC, 1, 0, 0, 0};
  const Bytes noise = random_bytes(2000, 11);
  garbage.insert(garbage.end(), noise.begin(), noise.end());
  EXPECT_EQ(set.add(garbage), Status::kUnknownDictionary);
  // Truncated real dictionary.
  const Bytes& dict = trained_dictionary();
  EXPECT_EQ(set.add(std::span(dict).first(40)), Status::kUnknownDictionary);
  EXPECT_TRUE(set.ids().empty());
}

TEST(DictionarySet, DuplicateIdIsInvalid) {
  DictionarySet set;
  ASSERT_EQ(set.add(trained_dictionary()), Status::kOk);
  EXPECT_EQ(set.add(trained_dictionary()), Status::kInvalidField);
  ASSERT_EQ(set.add(with_dictionary_id(trained_dictionary(), 5)), Status::kOk);
  EXPECT_EQ(set.add(with_dictionary_id(trained_dictionary(), 5)), Status::kInvalidField);
  EXPECT_EQ(set.ids().size(), 2u);
}

TEST(Compression, UnknownDictionaryWhenCompressing) {
  const Bytes in = repetitive_bytes(1000);
  Bytes out = {9};
  Compressor no_set;
  EXPECT_EQ(no_set.compress(in, {.dictionary_id = 7}, out), Status::kUnknownDictionary);
  EXPECT_EQ(out, Bytes{9});
  Compressor other_set(make_set({with_dictionary_id(trained_dictionary(), 5)}));
  EXPECT_EQ(other_set.compress(in, {.dictionary_id = 7}, out), Status::kUnknownDictionary);
  EXPECT_EQ(out, Bytes{9});
  EXPECT_EQ(other_set.compress(in, {.dictionary_id = 5}, out), Status::kOk);
}

TEST(Compression, UnknownDictionaryWhenDecompressing) {
  const Bytes dict5 = with_dictionary_id(trained_dictionary(), 5);
  const Bytes dict6 = with_dictionary_id(trained_dictionary(), 6);
  Compressor compressor(make_set({dict5, dict6}));
  std::mt19937 rng(12);
  const Bytes in = to_bytes(json_sample(rng));
  const Bytes frame = compress_ok(compressor, in, {.dictionary_id = 5});
  ASSERT_EQ(frame_header(frame).dictID, 5u);

  Bytes out = {1};
  Decompressor no_set;
  EXPECT_EQ(no_set.decompress(frame, {}, out), Status::kUnknownDictionary);
  EXPECT_TRUE(out.empty());
  Decompressor only6(make_set({dict6}));
  EXPECT_EQ(only6.decompress(frame, {}, out), Status::kUnknownDictionary);
  Decompressor both(make_set({dict6, dict5}));
  ASSERT_EQ(both.decompress(frame, {}, out), Status::kOk);
  EXPECT_TRUE(out == in);
  // A frame without a dictionary still decodes on a decompressor that has some.
  const Bytes plain = compress_ok(compressor, in);
  ASSERT_EQ(only6.decompress(plain, {}, out), Status::kOk);
  EXPECT_TRUE(out == in);
}

// ---------------------------------------------------------------------------------------
// Corrupt and malformed input

TEST(Compression, BitFlipsNeverCrashAndGiveAKnownStatus) {
  uint32_t id = 0;
  auto set = std::make_shared<DictionarySet>();
  ASSERT_EQ(set->add(trained_dictionary(), 3, &id), Status::kOk);
  Compressor compressor(set);
  Decompressor decompressor(set);
  std::mt19937 rng(13);
  std::string text;
  for (int i = 0; i < 12; ++i) text += json_sample(rng);
  const Bytes in = to_bytes(text);
  const DecompressLimits limits{.max_output = 64 * 1024};

  for (uint32_t dict : {0u, id}) {
    const Bytes frame = compress_ok(compressor, in, {.dictionary_id = dict});
    size_t failed = 0;
    for (size_t bit = 0; bit < frame.size() * 8; ++bit) {
      Bytes bad = frame;
      bad[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
      Bytes out;
      const Status s = decompressor.decompress(bad, limits, out);
      ASSERT_TRUE(kCorruptionResults.count(s) == 1) << "bit " << bit << ": " << to_string(s);
      if (s == Status::kOk) {
        EXPECT_LE(out.size(), limits.max_output);
      } else {
        EXPECT_TRUE(out.empty()) << "bit " << bit;
      }
      if (s == Status::kDecompressionFailed) ++failed;
      // The context was reset: the intact frame decodes right after.
      ASSERT_EQ(decompressor.decompress(frame, limits, out), Status::kOk) << "bit " << bit;
      ASSERT_TRUE(out == in);
    }
    EXPECT_GT(failed, frame.size());  // most flips are detected as corruption
  }
}

TEST(Compression, MalformedFramesFail) {
  Compressor compressor;
  Decompressor decompressor;
  const Bytes in = repetitive_bytes(3000);
  const Bytes frame = compress_ok(compressor, in);
  Bytes out;
  auto expect_failed = [&](const Bytes& bytes, const char* what) {
    out = {7, 7};
    EXPECT_EQ(decompressor.decompress(bytes, {}, out), Status::kDecompressionFailed) << what;
    EXPECT_TRUE(out.empty()) << what;
    // ...and the next valid frame works.
    ASSERT_EQ(decompressor.decompress(frame, {}, out), Status::kOk) << what;
    EXPECT_TRUE(out == in) << what;
  };

  expect_failed({}, "empty input");
  expect_failed({0x28, 0xB5, 0x2F}, "partial magic");
  expect_failed({0x28, 0xB5, 0x2F, 0xFD}, "magic only");
  expect_failed(to_bytes("not zstd at all, just text"), "not a zstd frame");

  Bytes trailing = frame;
  trailing.push_back(0);
  expect_failed(trailing, "one trailing byte");
  Bytes garbage = frame;
  garbage.insert(garbage.end(), {'j', 'u', 'n', 'k'});
  expect_failed(garbage, "trailing garbage");
  Bytes two = frame;
  two.insert(two.end(), frame.begin(), frame.end());
  expect_failed(two, "two concatenated frames");

  // Skippable frame: magic 0x184D2A5? little-endian, u32 size, payload.
  const Bytes skippable = {0x50, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, 'a', 'b', 'c', 'd'};
  expect_failed(skippable, "skippable frame");
  Bytes skippable_then_frame = skippable;
  skippable_then_frame.insert(skippable_then_frame.end(), frame.begin(), frame.end());
  expect_failed(skippable_then_frame, "skippable frame before a real one");
  Bytes frame_then_skippable = frame;
  frame_then_skippable.insert(frame_then_skippable.end(), skippable.begin(), skippable.end());
  expect_failed(frame_then_skippable, "skippable frame after a real one");

  // Reserved bit of the frame header descriptor.
  Bytes reserved = frame;
  reserved[4] |= 0x08;
  expect_failed(reserved, "reserved header bit");

  for (size_t n = 0; n < frame.size(); ++n) {
    expect_failed(Bytes(frame.begin(), frame.begin() + static_cast<std::ptrdiff_t>(n)),
                  "truncated frame");
  }
  // Truncated unknown-size frame: no declared size to compare with, so only the missing
  // end of frame tells.
  const Bytes unknown = compress_unknown_size(random_bytes(20000, 14), 1, 20);
  for (size_t n : {unknown.size() - 1, unknown.size() - 3, unknown.size() / 2}) {
    expect_failed(Bytes(unknown.begin(), unknown.begin() + static_cast<std::ptrdiff_t>(n)),
                  "truncated unknown-size frame");
  }
}

TEST(Compression, DeclaredContentSizeMustMatch) {
  Compressor compressor;
  Decompressor decompressor;
  const Bytes in = repetitive_bytes(100000);
  const Bytes frame = compress_ok(compressor, in);
  const ZSTD_frameHeader h = frame_header(frame);
  ASSERT_EQ(h.frameContentSize, in.size());
  // The content size is the last header field; 100000 needs the 4-byte form.
  ASSERT_EQ(frame[4] >> 6, 2) << "expected a 4-byte content size field";
  const size_t at = h.headerSize - 4;
  for (uint32_t declared : {99999u, 100001u, 1u, 65536u}) {
    Bytes bad = frame;
    for (int i = 0; i < 4; ++i) bad[at + i] = static_cast<uint8_t>(declared >> (8 * i));
    ASSERT_EQ(frame_header(bad).frameContentSize, declared);
    Bytes out;
    EXPECT_EQ(decompressor.decompress(bad, {}, out), Status::kDecompressionFailed) << declared;
    EXPECT_TRUE(out.empty());
    EXPECT_LE(out.capacity(), std::max<size_t>(declared, 100000));
  }
}

TEST(Compression, MovedFromObjectsFailCleanly) {
  Compressor a;
  Compressor b(std::move(a));
  Decompressor c;
  Decompressor d(std::move(c));
  const Bytes in = repetitive_bytes(500);
  Bytes frame;
  EXPECT_EQ(b.compress(in, {}, frame), Status::kOk);
  Bytes out;
  EXPECT_EQ(d.decompress(frame, {}, out), Status::kOk);
  EXPECT_TRUE(out == in);
  Bytes untouched = {1};
  // NOLINTNEXTLINE(bugprone-use-after-move): documented behaviour
  EXPECT_EQ(a.compress(in, {}, untouched), Status::kCompressionFailed);
  EXPECT_EQ(untouched, Bytes{1});
  EXPECT_EQ(c.decompress(frame, {}, out), Status::kInternal);  // NOLINT(bugprone-use-after-move)
  EXPECT_TRUE(out.empty());
}

}  // namespace
}  // namespace herald::codec
