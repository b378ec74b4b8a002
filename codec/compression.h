// zstd compression of message bodies (docs/protocol.md: one zstd frame per compressed
// message) with pinned window and output limits, and the shared dictionary set.
// Sans-IO: no sockets, no clock, no logging, no threads of its own.
//
// Memory: every limit below is checked before allocating. The only unbounded failure is
// running out of memory while a vector or zstd context grows; these functions are
// noexcept, so an allocation failure there terminates the process (std::bad_alloc
// escaping a noexcept function) instead of returning a status.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "codec/status.h"

// libzstd's opaque types, declared here so that users of this header need not include
// <zstd.h>. The typedefs match zstd.h exactly (repeating a typedef is legal C++).
struct ZSTD_CCtx_s;
struct ZSTD_DCtx_s;
struct ZSTD_CDict_s;
struct ZSTD_DDict_s;
typedef struct ZSTD_CCtx_s ZSTD_CCtx;
typedef struct ZSTD_DCtx_s ZSTD_DCtx;
typedef struct ZSTD_CDict_s ZSTD_CDict;
typedef struct ZSTD_DDict_s ZSTD_DDict;

namespace herald::codec {

inline constexpr int kMaxWindowLog = 23;  // 8 MiB, the protocol's pinned maximum
inline constexpr int kDefaultCompressWindowLog = 20;
// Bodies shorter than this are sent uncompressed (the encoder's decision, not enforced here).
inline constexpr size_t kDefaultCompressThreshold = 256;

// A set of zstd dictionaries (as written by `zstd --train` or ZDICT_trainFromBuffer), each
// known by the non-zero id stored in the dictionary itself.
//
// Threads: build it once at start-up on one thread (add() is not thread-safe), then share
// it read-only as shared_ptr<const DictionarySet>; every const member may be called from
// any number of threads at once (ZSTD_CDict/ZSTD_DDict are immutable once created).
class DictionarySet {
 public:
  DictionarySet() noexcept;
  ~DictionarySet();
  DictionarySet(const DictionarySet&) = delete;
  DictionarySet& operator=(const DictionarySet&) = delete;

  // Loads `dictionary` (its bytes are copied; the span may be freed afterwards) for both
  // directions; `level` is the compression level of every frame compressed with it (zstd
  // fixes the level when the dictionary is digested). On success stores the dictionary's
  // id in *id_out when id_out is not null.
  // Errors (the set is unchanged): kUnknownDictionary if the bytes are not a zstd
  // dictionary with a non-zero id (raw-content dictionaries have none) or zstd rejects its
  // entropy tables; kInvalidField if a dictionary with that id is already loaded.
  Status add(std::span<const uint8_t> dictionary, int level = 3,
             uint32_t* id_out = nullptr) noexcept;

  // The digested dictionary with this id, or nullptr if absent. Owned by the set; valid
  // while the set lives.
  const ZSTD_CDict* cdict(uint32_t id) const noexcept;
  const ZSTD_DDict* ddict(uint32_t id) const noexcept;

  // Ids of every loaded dictionary, in the order they were added.
  std::vector<uint32_t> ids() const;
  bool contains(uint32_t id) const noexcept;

 private:
  struct Entry;
  std::vector<Entry> entries_;
};

struct CompressOptions {
  // zstd level; ignored when dictionary_id != 0 (the dictionary's level from add() applies).
  int level = 3;
  // Clamped to [10, kMaxWindowLog]; zstd shrinks it further to fit small inputs.
  int window_log = kDefaultCompressWindowLog;
  // 0 = no dictionary; otherwise the id of a dictionary in the Compressor's set.
  uint32_t dictionary_id = 0;
};

// Compresses message bodies. One per event loop: its zstd context is reused for every
// message. Not thread-safe; may be moved between threads while not in use.
class Compressor {
 public:
  // `dictionaries` may be null (then only dictionary_id 0 works). Allocates the zstd
  // context now (an allocation failure terminates, see the file comment).
  explicit Compressor(std::shared_ptr<const DictionarySet> dictionaries = nullptr) noexcept;
  ~Compressor();
  Compressor(Compressor&&) noexcept;
  Compressor& operator=(Compressor&&) noexcept;

  // Appends exactly one zstd frame holding `in` to `out` (existing contents are kept): the
  // frame header records the content size and the dictionary id, there is no zstd checksum
  // (Herald frames carry their own CRC32C), and the window log is at most
  // min(options.window_log, kMaxWindowLog). `in` and `out` must not overlap.
  // Errors (`out` is left unchanged): kUnknownDictionary if options.dictionary_id is not
  // 0 and not in the set; kCompressionFailed if zstd reports an error or this object was
  // moved from.
  Status compress(std::span<const uint8_t> in, const CompressOptions& options,
                  std::vector<uint8_t>& out) noexcept;

 private:
  struct CCtxDeleter {
    void operator()(ZSTD_CCtx* cctx) const noexcept;
  };
  std::shared_ptr<const DictionarySet> dictionaries_;
  std::unique_ptr<ZSTD_CCtx, CCtxDeleter> cctx_;
};

struct DecompressLimits {
  size_t max_output = 1024 * 1024;  // the negotiated max message size
  int max_window_log = kMaxWindowLog;
  // The wire protocol requires Frame_Content_Size (docs/protocol.md §6.2): without it
  // a frame fails with kDecompressionFailed, before the window check.
  bool require_content_size = false;
};

// Decompresses message bodies under limits. One per event loop: its zstd context (and the
// window buffer zstd keeps in it, at most 2^max_window_log bytes plus a block) is reused
// for every message. Not thread-safe; may be moved between threads while not in use.
class Decompressor {
 public:
  // `dictionaries` may be null (then frames naming a dictionary get kUnknownDictionary).
  // Allocates the zstd context now (an allocation failure terminates).
  explicit Decompressor(std::shared_ptr<const DictionarySet> dictionaries = nullptr) noexcept;
  ~Decompressor();
  Decompressor(Decompressor&&) noexcept;
  Decompressor& operator=(Decompressor&&) noexcept;

  // Decompresses `in`, which must be exactly one zstd frame, replacing the contents of
  // `out` (its capacity is reused; `in` and `out` must not overlap).
  // Before allocating anything it parses the frame header and checks, in this order:
  //   not a zstd frame (bad magic, skippable frame, reserved bit, truncated header,
  //     legacy formats) -> kDecompressionFailed
  //   no content size while limits.require_content_size -> kDecompressionFailed
  //   window size above 2^limits.max_window_log -> kWindowTooLarge
  //   dictionary id not 0 and not in the set -> kUnknownDictionary
  //   declared content size above limits.max_output -> kDecompressedTooLarge
  // Then it decodes, growing `out` in bounded steps and never reserving more than
  // limits.max_output bytes (or the declared content size, when there is one):
  //   more output than limits.max_output -> kDecompressedTooLarge
  //   corrupt data, output size different from the declared content size, a missing end
  //     of frame, or bytes after the frame -> kDecompressionFailed
  //   zstd could not allocate its window buffer, or this object was moved from -> kInternal
  // On success `out` holds exactly the decompressed bytes. On any error `out` is empty
  // and the context is reset, so the next call decodes normally.
  Status decompress(std::span<const uint8_t> in, const DecompressLimits& limits,
                    std::vector<uint8_t>& out) noexcept;

 private:
  struct DCtxDeleter {
    void operator()(ZSTD_DCtx* dctx) const noexcept;
  };
  Status decode(std::span<const uint8_t> in, const DecompressLimits& limits,
                std::vector<uint8_t>& out) noexcept;

  std::shared_ptr<const DictionarySet> dictionaries_;
  std::unique_ptr<ZSTD_DCtx, DCtxDeleter> dctx_;
};

}  // namespace herald::codec
