// zstd compressor, limit-checking decompressor and dictionary set.
// Sans-IO: no sockets, no clock, no logging; all memory is bounded by the caller's limits.
#include "codec/compression.h"

#include <algorithm>
#include <exception>
#include <utility>

// For ZSTD_getFrameHeader, which reads the window size, dictionary id and content size
// without decoding anything. It lives in zstd's "static linking only" section; we link the
// shared libzstd, which exports it, and the build pins libzstd 1.5.4 (the struct layout has
// not changed since 1.3).
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>
#include <zstd_errors.h>

namespace herald::codec {
namespace {

struct CDictDeleter {
  void operator()(ZSTD_CDict* p) const noexcept { ZSTD_freeCDict(p); }
};
struct DDictDeleter {
  void operator()(ZSTD_DDict* p) const noexcept { ZSTD_freeDDict(p); }
};

int clamp_to_bounds(int value, ZSTD_bounds bounds) {
  return std::clamp(value, bounds.lowerBound, bounds.upperBound);
}

// Smallest buffer used when the frame does not declare its content size (our own frames
// always do; the protocol requires it, so this path only serves non-conforming peers).
constexpr size_t kMinOutputStep = 4 * 1024;

// Makes out.size() == n with capacity exactly n when it has to grow: reserve() allocates
// what it is asked for, whereas resize() alone may double the capacity past the limit.
void grow_to(std::vector<uint8_t>& out, size_t n) {
  if (out.capacity() < n) out.reserve(n);
  out.resize(n);
}

Status status_from_zstd_error(size_t code) {
  switch (ZSTD_getErrorCode(code)) {
    case ZSTD_error_frameParameter_windowTooLarge:
      return Status::kWindowTooLarge;
    case ZSTD_error_memory_allocation:
      return Status::kInternal;
    default:
      return Status::kDecompressionFailed;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------
// DictionarySet

struct DictionarySet::Entry {
  uint32_t id;
  std::unique_ptr<ZSTD_CDict, CDictDeleter> cdict;
  std::unique_ptr<ZSTD_DDict, DDictDeleter> ddict;
};

DictionarySet::DictionarySet() noexcept = default;
DictionarySet::~DictionarySet() = default;

Status DictionarySet::add(std::span<const uint8_t> dictionary, int level,
                          uint32_t* id_out) noexcept {
  // 0 both for bytes without the dictionary magic and for a dictionary whose id is 0.
  const uint32_t id = ZSTD_getDictID_fromDict(dictionary.data(), dictionary.size());
  if (id == 0) return Status::kUnknownDictionary;
  if (contains(id)) return Status::kInvalidField;
  // Both copy the bytes; they return null when the entropy tables do not parse.
  std::unique_ptr<ZSTD_CDict, CDictDeleter> cdict(
      ZSTD_createCDict(dictionary.data(), dictionary.size(), level));
  std::unique_ptr<ZSTD_DDict, DDictDeleter> ddict(
      ZSTD_createDDict(dictionary.data(), dictionary.size()));
  if (!cdict || !ddict) return Status::kUnknownDictionary;
  entries_.push_back(Entry{id, std::move(cdict), std::move(ddict)});
  if (id_out != nullptr) *id_out = id;
  return Status::kOk;
}

const ZSTD_CDict* DictionarySet::cdict(uint32_t id) const noexcept {
  for (const Entry& e : entries_) {
    if (e.id == id) return e.cdict.get();
  }
  return nullptr;
}

const ZSTD_DDict* DictionarySet::ddict(uint32_t id) const noexcept {
  for (const Entry& e : entries_) {
    if (e.id == id) return e.ddict.get();
  }
  return nullptr;
}

std::vector<uint32_t> DictionarySet::ids() const {
  std::vector<uint32_t> result;
  result.reserve(entries_.size());
  for (const Entry& e : entries_) result.push_back(e.id);
  return result;
}

bool DictionarySet::contains(uint32_t id) const noexcept {
  return std::any_of(entries_.begin(), entries_.end(),
                     [id](const Entry& e) { return e.id == id; });
}

// ---------------------------------------------------------------------------------------
// Compressor

void Compressor::CCtxDeleter::operator()(ZSTD_CCtx* cctx) const noexcept { ZSTD_freeCCtx(cctx); }

Compressor::Compressor(std::shared_ptr<const DictionarySet> dictionaries) noexcept
    : dictionaries_(std::move(dictionaries)), cctx_(ZSTD_createCCtx()) {
  if (!cctx_) std::terminate();  // out of memory at start-up, see compression.h
}

Compressor::~Compressor() = default;
Compressor::Compressor(Compressor&&) noexcept = default;
Compressor& Compressor::operator=(Compressor&&) noexcept = default;

Status Compressor::compress(std::span<const uint8_t> in, const CompressOptions& options,
                            std::vector<uint8_t>& out) noexcept {
  ZSTD_CCtx* cctx = cctx_.get();
  if (cctx == nullptr) return Status::kCompressionFailed;  // moved-from
  const ZSTD_CDict* cdict = nullptr;
  if (options.dictionary_id != 0) {
    if (dictionaries_) cdict = dictionaries_->cdict(options.dictionary_id);
    if (cdict == nullptr) return Status::kUnknownDictionary;
  }

  // Parameters are set on every call because options differ per message; resetting them
  // also drops the previous message's dictionary reference.
  ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
  const int window_log = clamp_to_bounds(std::min(options.window_log, kMaxWindowLog),
                                         ZSTD_cParam_getBounds(ZSTD_c_windowLog));
  const int level = clamp_to_bounds(options.level, ZSTD_cParam_getBounds(ZSTD_c_compressionLevel));
  if (ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level)) ||
      ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, window_log)) ||
      ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1)) ||
      ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0)) ||
      ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_dictIDFlag, 1)) ||
      (cdict != nullptr && ZSTD_isError(ZSTD_CCtx_refCDict(cctx, cdict)))) {
    return Status::kCompressionFailed;
  }

  // One-shot compression pledges in.size(), so the header records the content size.
  const size_t old_size = out.size();
  const size_t bound = ZSTD_compressBound(in.size());
  out.resize(old_size + bound);
  const size_t written = ZSTD_compress2(cctx, out.data() + old_size, bound, in.data(), in.size());
  if (ZSTD_isError(written)) {
    out.resize(old_size);
    return Status::kCompressionFailed;
  }
  out.resize(old_size + written);
  return Status::kOk;
}

// ---------------------------------------------------------------------------------------
// Decompressor

void Decompressor::DCtxDeleter::operator()(ZSTD_DCtx* dctx) const noexcept { ZSTD_freeDCtx(dctx); }

Decompressor::Decompressor(std::shared_ptr<const DictionarySet> dictionaries) noexcept
    : dictionaries_(std::move(dictionaries)), dctx_(ZSTD_createDCtx()) {
  if (!dctx_) std::terminate();  // out of memory at start-up, see compression.h
}

Decompressor::~Decompressor() = default;
Decompressor::Decompressor(Decompressor&&) noexcept = default;
Decompressor& Decompressor::operator=(Decompressor&&) noexcept = default;

Status Decompressor::decompress(std::span<const uint8_t> in, const DecompressLimits& limits,
                                std::vector<uint8_t>& out) noexcept {
  const Status status = decode(in, limits, out);
  if (status != Status::kOk) {
    out.clear();
    // Don't keep a half-decoded frame around until the next call (decode() also resets
    // before each frame).
    if (dctx_) ZSTD_DCtx_reset(dctx_.get(), ZSTD_reset_session_only);
  }
  return status;
}

Status Decompressor::decode(std::span<const uint8_t> in, const DecompressLimits& limits,
                            std::vector<uint8_t>& out) noexcept {
  out.clear();
  ZSTD_DCtx* dctx = dctx_.get();
  if (dctx == nullptr) return Status::kInternal;  // moved-from

  // Every limit is checked on the header alone, before zstd allocates its window or we
  // allocate output. getFrameHeader only knows the zstd1 format, so legacy frames (which
  // the streaming decoder would otherwise accept) are refused here too.
  ZSTD_frameHeader header;
  const size_t header_result = ZSTD_getFrameHeader(&header, in.data(), in.size());
  if (ZSTD_isError(header_result) || header_result != 0) {  // > 0: header is truncated
    return Status::kDecompressionFailed;
  }
  if (header.frameType != ZSTD_frame) return Status::kDecompressionFailed;  // skippable
  if (limits.require_content_size && header.frameContentSize == ZSTD_CONTENTSIZE_UNKNOWN) {
    return Status::kDecompressionFailed;
  }
  const int window_log_limit = std::clamp(limits.max_window_log, 0, 63);
  if (header.windowSize > (uint64_t{1} << window_log_limit)) return Status::kWindowTooLarge;
  const ZSTD_DDict* ddict = nullptr;
  if (header.dictID != 0) {
    if (dictionaries_) ddict = dictionaries_->ddict(header.dictID);
    if (ddict == nullptr) return Status::kUnknownDictionary;
  }
  const bool size_known = header.frameContentSize != ZSTD_CONTENTSIZE_UNKNOWN;
  if (size_known && header.frameContentSize > limits.max_output) {
    return Status::kDecompressedTooLarge;
  }

  ZSTD_DCtx_reset(dctx, ZSTD_reset_session_only);
  // windowLogMax backs up the header check inside zstd itself; refDDict(nullptr) drops
  // the previous frame's dictionary.
  const int zstd_window_log =
      clamp_to_bounds(limits.max_window_log, ZSTD_dParam_getBounds(ZSTD_d_windowLogMax));
  if (ZSTD_isError(ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, zstd_window_log)) ||
      ZSTD_isError(ZSTD_DCtx_refDDict(dctx, ddict))) {
    return Status::kInternal;
  }

  // Output never grows past `limit`: the declared size (already <= max_output) or
  // max_output. Reaching it with the frame unfinished is decided by a one-byte probe.
  const size_t limit =
      size_known ? static_cast<size_t>(header.frameContentSize) : limits.max_output;
  grow_to(out, size_known ? limit : std::min(limit, std::max(kMinOutputStep, 4 * in.size())));
  ZSTD_inBuffer input{in.data(), in.size(), 0};
  size_t produced = 0;
  for (;;) {
    if (produced == out.size() && out.size() < limit) {
      grow_to(out, std::min(limit, std::max(kMinOutputStep, 2 * out.size())));
    }
    const size_t consumed_before = input.pos;
    if (produced == out.size()) {
      // At the limit. zstd may still owe nothing but the end of the frame (an empty last
      // block), so ask for one byte: getting it means the output is too large.
      uint8_t probe = 0;
      ZSTD_outBuffer output{&probe, 1, 0};
      const size_t result = ZSTD_decompressStream(dctx, &output, &input);
      if (ZSTD_isError(result)) return status_from_zstd_error(result);
      if (output.pos != 0) {
        // With a declared size, zstd normally catches the mismatch itself first.
        return size_known ? Status::kDecompressionFailed : Status::kDecompressedTooLarge;
      }
      if (result == 0) break;
      if (input.pos == consumed_before) return Status::kDecompressionFailed;  // truncated
      continue;
    }
    // Here produced < out.size(), so out.data() is never null.
    ZSTD_outBuffer output{out.data(), out.size(), produced};
    const size_t result = ZSTD_decompressStream(dctx, &output, &input);
    if (ZSTD_isError(result)) return status_from_zstd_error(result);
    const bool progressed = output.pos != produced || input.pos != consumed_before;
    produced = output.pos;
    if (result == 0) break;  // frame complete and fully flushed
    // zstd stops early only when the output is full; room left with all input consumed
    // means the frame ends before its last block.
    if (input.pos == input.size && produced < out.size()) return Status::kDecompressionFailed;
    if (!progressed) return Status::kDecompressionFailed;
  }
  // zstd stops at the end of the frame; whatever follows is not part of this message.
  if (input.pos != input.size) return Status::kDecompressionFailed;
  if (size_known && produced != limit) return Status::kDecompressionFailed;
  out.resize(produced);
  return Status::kOk;
}

}  // namespace herald::codec
