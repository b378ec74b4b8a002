// Fragment prefix encode/parse and the per-connection Reassembler that rebuilds
// fragmented Publication/Publish bodies. Sans-IO: no sockets, no clock (time is a
// parameter), no logging, no threads; it never decompresses (that is the caller's next step).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "codec/frame_decoder.h"
#include "codec/frame_header.h"
#include "codec/status.h"

namespace herald::codec {

// Fragment prefix, 8 bytes at the start of a fragment's body (big-endian):
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +---------------------------------------------------------------+
//   |                        ref (u32)                              |
//   +-------------------------------+-----------------------------+-+
//   |          index (u16)          |   fflags: reserved = 0      |L|
//   +-------------------------------+-----------------------------+-+
//
//   L = kFragmentLast: this fragment ends the message.
inline constexpr uint16_t kFragmentLast = 0x0001;

struct FragmentPrefix {
  uint32_t ref = 0;     // sender-chosen id of the partial message
  uint16_t index = 0;   // 0, 1, 2, ... within the message
  bool last = false;    // the L bit
};

// Parses the 8-byte prefix at the start of a fragment payload (bytes after it are
// not looked at). `out` is written only on kOk.
// Errors: kBodyTooShort (fewer than 8 bytes), kBadFragmentHeader (a reserved fflags bit set).
Status parse_fragment_prefix(std::span<const uint8_t> payload, FragmentPrefix& out) noexcept;

// Writes the 8 prefix bytes. Never fails.
void encode_fragment_prefix(const FragmentPrefix& p, uint8_t out[kFragmentPrefixSize]) noexcept;

// Defaults of docs/protocol.md §8.
struct ReassemblyLimits {
  uint32_t max_fragments = 128;                       // per message
  uint32_t max_partial_messages = 4;                  // in progress at once per connection
  size_t max_message_size = kDefaultMaxMessageSize;   // bytes of one reassembled message
  size_t max_buffered_bytes = 1024 * 1024;            // all partial messages of the connection
  uint64_t timeout_ms = 10'000;                       // a partial message older than this fails
};

// A whole message rebuilt from fragments: its frame type, flags (only kFlagCompressed may be
// set) and the concatenated pieces (still compressed if the C flag is set).
struct ReassembledMessage {
  FrameType type = FrameType::kPublication;
  uint16_t flags = 0;
  std::vector<uint8_t> body;
};

// Rebuilds the fragmented messages of one connection. Sans-IO: the caller passes the time
// (any monotonic milliseconds; a clock that steps back counts as no time passing).
// Not thread-safe: one per connection, used on that connection's loop only.
//
// Memory: nothing is allocated until a fragment needs it. Each accepted piece is kept in its
// own exactly sized buffer (no growth slack, so what the cap counts is what the heap holds,
// give or take a per-piece allocation header), and the pieces are joined into one buffer
// when the last fragment arrives: a piece is copied at most twice, never re-copied as the
// message grows. A completed message's buffer is moved to the caller; an error frees every
// buffer.
class Reassembler {
 public:
  explicit Reassembler(const ReassemblyLimits& limits = {}) noexcept : limits_(limits) {}

  // Adds one fragment frame (frame.header.fragment() must be true; frame.payload starts with
  // the prefix; the payload is only read during the call). Returns:
  //   kNeedMore  the fragment was accepted and its message is still incomplete;
  //   kOk        this fragment completed a message, moved into `out` (out is written only on kOk);
  //   an error   sticky: every later add()/expire() returns it, and every partial message is
  //              freed at once (buffered_bytes() == 0, partial_messages() == 0).
  // Checks, in this order, all before anything of the fragment is copied:
  //   kInternal                 frame.header.fragment() is false (a caller bug, not the peer's);
  //   kReassemblyTimeout        some partial message (this fragment's or any other) started
  //                             more than timeout_ms before now_ms;
  //   kFragmentedControl        the frame type is not Publication/Publish (defensive: the
  //                             decoder already rejects it);
  //   kBodyTooShort             payload shorter than the 8-byte prefix;
  //   kBadFragmentHeader        a reserved fflags bit is set;
  //   kFragmentOutOfOrder       index 0 for a ref in progress (duplicate start), index != 0 for
  //                             an unknown ref (missing start), or not the next index of its
  //                             ref (duplicate or missing fragment);
  //   kFragmentMismatch         frame type or the C flag differs from the message's first
  //                             fragment (the K flag may differ: checksums are per frame);
  //   kEmptyFragment            a non-last fragment with no bytes after the prefix;
  //   kTooManyFragments         index + 1 > max_fragments;
  //   kTooManyPartialMessages   a non-last index-0 fragment would make more than
  //                             max_partial_messages in progress (a one-fragment message,
  //                             index 0 with LAST, never occupies a slot and is not counted);
  //   kReassemblyTooLarge       the message's bytes would exceed max_message_size (exactly
  //                             the limit is fine);
  //   kReassemblyMemoryExceeded the bytes held for all partial messages plus this piece would
  //                             exceed max_buffered_bytes (the completing piece and a
  //                             one-fragment message count too, since they are copied), or
  //                             the allocator failed.
  // While the last fragment's message is being joined, its pieces and the joined buffer
  // coexist for the duration of the call (at most max_message_size more than the cap).
  // A single fragment with index 0 and LAST is a complete message.
  Status add(const Frame& frame, uint64_t now_ms, ReassembledMessage& out) noexcept;

  // Call from the owner's timer. Returns kReassemblyTimeout (sticky, frees everything) if a
  // partial message started more than timeout_ms before now_ms; the earlier sticky error if
  // there was one; else kOk.
  Status expire(uint64_t now_ms) noexcept;

  // The earliest now_ms at which expire() would fail; UINT64_MAX when nothing is partial
  // (or the deadline does not fit in 64 bits).
  uint64_t next_deadline_ms() const noexcept;

  size_t partial_messages() const noexcept { return slots_.size(); }
  // Sum of the pieces held for partial messages (what the memory cap counts).
  size_t buffered_bytes() const noexcept { return buffered_; }
  // kOk until an error; then that error forever.
  Status error() const noexcept { return error_; }

  // New limits apply from the next add()/expire() on (e.g. after negotiation), also to the
  // partial messages already held: a lowered cap fails the next fragment that breaks it.
  void set_limits(const ReassemblyLimits& limits) noexcept { limits_ = limits; }
  const ReassemblyLimits& limits() const noexcept { return limits_; }

 private:
  struct Slot {
    uint32_t ref = 0;
    uint16_t next_index = 0;
    FrameType type = FrameType::kPublication;
    uint16_t flags = 0;  // kFlagCompressed or 0
    uint64_t started_ms = 0;
    size_t bytes = 0;  // sum of pieces[i].size()
    std::vector<std::vector<uint8_t>> pieces;  // each exactly sized; empty pieces are not kept
  };

  Status fail(Status s) noexcept;
  bool any_expired(uint64_t now_ms) const noexcept;
  Slot* find(uint32_t ref) noexcept;
  void remove(Slot& slot) noexcept;

  ReassemblyLimits limits_;
  Status error_ = Status::kOk;
  std::vector<Slot> slots_;  // the partial messages, unordered; at most max_partial_messages
  size_t buffered_ = 0;      // sum of slots_[i].bytes
};

}  // namespace herald::codec
