// Fuzz target: capped zstd decompression of arbitrary bytes (with one dictionary loaded),
// then a compress/decompress round trip of the input itself. Aborts when a limit or an
// error contract of codec/compression.h is broken.
#include <zdict.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "codec/compression.h"

namespace {

using herald::codec::CompressOptions;
using herald::codec::Compressor;
using herald::codec::DecompressLimits;
using herald::codec::Decompressor;
using herald::codec::DictionarySet;
using herald::codec::Status;

// Fixed so that corpus files compressed with the dictionary keep naming it.
constexpr uint32_t kDictionaryId = 0x48524C44;  // "HRLD"
constexpr size_t kMaxOutput = 256 * 1024;
constexpr size_t kMaxRoundTripInput = 64 * 1024;

// A small dictionary built deterministically from notification-like JSON, with a fixed id.
std::shared_ptr<const DictionarySet> make_dictionaries() {
  std::mt19937 rng(1);
  std::string samples;
  std::vector<size_t> sizes;
  for (int i = 0; i < 600; ++i) {
    std::string s = "{\"message_type\":\"order_filled\",\"order_id\":\"O" +
                    std::to_string(rng() % 1000000000) + "\",\"price\":" +
                    std::to_string(rng() % 100000) + ",\"volume\":" + std::to_string(rng() % 100) +
                    ",\"instrument_id\":\"" + (rng() % 2 != 0 ? "IF2412" : "BTC-USD") + "\"}";
    samples += s;
    sizes.push_back(s.size());
  }
  std::vector<uint8_t> dict(8 * 1024);
  ZDICT_params_t params{};
  params.compressionLevel = 3;
  params.dictID = kDictionaryId;
  const size_t n = ZDICT_finalizeDictionary(dict.data(), dict.size(), samples.data(), 4096,
                                            samples.data(), sizes.data(),
                                            static_cast<unsigned>(sizes.size()), params);
  auto set = std::make_shared<DictionarySet>();
  if (ZDICT_isError(n)) std::abort();
  dict.resize(n);
  if (set->add(dict) != Status::kOk) std::abort();
  return set;
}

bool is_expected_error(Status s) {
  return s == Status::kDecompressionFailed || s == Status::kDecompressedTooLarge ||
         s == Status::kWindowTooLarge || s == Status::kUnknownDictionary;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // One context pair for the whole run, as one event loop would hold: errors in one input
  // must not leak into the next.
  static const std::shared_ptr<const DictionarySet> dictionaries = make_dictionaries();
  static Compressor compressor(dictionaries);
  static Decompressor decompressor(dictionaries);
  const std::span<const uint8_t> in(data, size);

  std::vector<uint8_t> out;
  const Status s = decompressor.decompress(in, DecompressLimits{.max_output = kMaxOutput}, out);
  if (s == Status::kOk) {
    if (out.size() > kMaxOutput) std::abort();
  } else {
    if (!out.empty() || !is_expected_error(s)) std::abort();
  }
  if (out.capacity() > kMaxOutput) std::abort();  // never allocated past the cap

  if (size <= kMaxRoundTripInput) {
    CompressOptions options;
    options.level = 1 + static_cast<int>(size % 3);
    options.dictionary_id = (size % 2 != 0) ? kDictionaryId : 0;
    std::vector<uint8_t> frame;
    if (compressor.compress(in, options, frame) != Status::kOk) std::abort();
    std::vector<uint8_t> back;
    if (decompressor.decompress(frame, DecompressLimits{.max_output = size}, back) != Status::kOk) {
      std::abort();
    }
    if (back.size() != size || !std::equal(back.begin(), back.end(), in.begin())) std::abort();
  }
  return 0;
}
