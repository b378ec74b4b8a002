// History: where a channel's offsets come from and what is kept of it for resume.
// An interface only: MemoryHistory (live channels) and the durable store implement it.
// Must not deliver anything, know about subscribers or loops, or take the hub's locks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "herald.pb.h"
#include "server/publication.h"

namespace herald::server {

// What a channel keeps (from its namespace's policy, resolved by the hub per call).
struct ChannelOptions {
  size_t history_size = 100;     // publications kept for resume; 0 = none (offsets still count)
  uint32_t history_ttl_s = 300;  // how long each one is kept after append; 0 = no time limit
  bool durable = false;          // kept in the durable store (the hub's durable History)
  bool latest_value = false;     // durable state channel: only the latest publication per collapse key is kept
};

// Where a channel stands: its epoch and the offset of its latest publication.
// {"", 0} for a channel that has no state at all (never published to, or
// forgotten); its first publication then starts a new epoch at offset 1.
struct ChannelPosition {
  std::string epoch;
  uint64_t offset = 0;  // offset of the latest publication (0 = none yet)
};

// See History::append(..., ChannelSlot&): where an implementation keeps one
// channel's data, remembered by the caller between calls.
struct ChannelSlot {
  void* data = nullptr;
};

// Threading contract, for every implementation:
// - Every call names one channel, and the caller serializes the calls for one
//   channel (the ChannelHub calls them all with that channel's hub lock held).
//   An implementation therefore needs no per-channel lock of its own.
// - Calls for different channels may run concurrently on any threads; what the
//   implementation shares between channels (its channel map) it guards itself.
// - collect_idle() is the one exception: it runs without any hub lock and may
//   only look at what is safe to read concurrently with the per-channel calls.
class History {
 public:
  virtual ~History() = default;

  // Gives `draft` the channel's next offset (last + 1; 1 for a new epoch) and
  // the channel's epoch (both set on the draft), stores it (evicting beyond
  // options.history_size and what is older than options.history_ttl_s), and
  // returns the record. Returns nullptr when it could not be stored (the hub
  // answers kStorageUnavailable); the offset is then not consumed.
  virtual PublicationPtr append(v1::Publication&& draft, const ChannelOptions& options, int64_t now_unix_ms) = 0;

  // The same, with a place the caller keeps for this channel (the hub keeps one in
  // its channel state). An implementation may remember in `slot` where its own
  // per-channel data is, and use that on the next call instead of looking the
  // channel up. The caller starts with an empty slot, passes the same slot only
  // for the same channel and History, and empties it when drop_if_idle() forgot the
  // channel. This default ignores the slot.
  virtual PublicationPtr append(v1::Publication&& draft, const ChannelOptions& options, int64_t now_unix_ms,
                                ChannelSlot& slot) {
    (void)slot;
    return append(std::move(draft), options, now_unix_ms);
  }

  // Appends to `out` the publications of `channel` with offset > `offset`, in
  // offset order, and returns true; returns false (and appends nothing) when
  // recovery would not be complete: `epoch` is not the channel's epoch, some
  // publication after `offset` is no longer kept, or `offset` is beyond the
  // channel's latest offset.
  // An empty `epoch` with offset 0 means "nothing seen": true, with whatever
  // the current epoch holds, if its publication 1 is still kept (always for a
  // channel with no state). Publications whose own ttl_s has passed are still
  // returned (they keep the offsets gapless); the caller decides whether to send them.
  virtual bool read_since(std::string_view channel, std::string_view epoch, uint64_t offset,
                          int64_t now_unix_ms, std::vector<PublicationPtr>& out) = 0;

  // The channel's current position ({"", 0} if it has no state).
  virtual ChannelPosition position(std::string_view channel) = 0;

  // Idle channels: the implementation may forget a channel that keeps no
  // publication any more (its offsets then restart at 1 in a new epoch, which is
  // safe only while nobody is subscribed; the hub checks that). Implementations
  // that never forget channels (a durable store) keep these defaults.
  //
  // Appends to `out` the names of channels that probably keep nothing at
  // `now_unix_ms`. A hint: it may be stale by the time the caller acts on it.
  // No hub lock is held.
  virtual void collect_idle(int64_t now_unix_ms, std::vector<std::string>& out) {
    (void)now_unix_ms;
    (void)out;
  }
  // Forgets `channel` if it keeps no publication at `now_unix_ms`; returns
  // whether it did. Called with the channel's hub lock held, and only when the
  // channel has no subscriber.
  virtual bool drop_if_idle(std::string_view channel, int64_t now_unix_ms) {
    (void)channel;
    (void)now_unix_ms;
    return false;
  }

  // ---- memory (histories kept in process memory) ----
  // The bytes the kept publications hold, as PublicationRecord::memory_bytes()
  // counts them. Any thread, no lock.
  virtual size_t memory_bytes() const { return 0; }
  // To free about `bytes` of the oldest kept publications, all channels together:
  // sets `cutoff_ms` (Unix ms) and appends to `out` the channels that keep something
  // appended at or before it. An estimate, made without any hub lock: the caller
  // trims those channels and asks again if memory_bytes() is still too high.
  virtual void collect_oldest(size_t bytes, std::vector<std::string>& out, int64_t& cutoff_ms) {
    (void)bytes;
    (void)out;
    (void)cutoff_ms;
  }
  // Under the channel's hub lock: drops the channel's kept publications appended
  // at or before `cutoff_ms` (from the oldest end, so what stays is still a gapless
  // run ending at the latest; offsets and epoch do not change). Returns how many.
  virtual size_t trim_through(std::string_view channel, int64_t cutoff_ms) {
    (void)channel;
    (void)cutoff_ms;
    return 0;
  }

  // ---- deferred (durable) histories ----
  // True when append() only reserves the offset: the publication becomes visible
  // (position, read_since) later, when the implementation's commit hook runs and
  // the hub calls make_visible(); or it fails and the hub calls rollback().
  virtual bool deferred() const noexcept { return false; }
  // Under the channel's hub lock, in offset order: `record` is committed.
  virtual void make_visible(const PublicationRecord& record) { (void)record; }
  // Under the channel's hub lock: the commit of `record` failed. Every offset
  // reserved after the last visible one is released (their publications fail too).
  virtual void rollback(const PublicationRecord& record) { (void)record; }
  // Under the channel's hub lock, after the hub's own dedup memory missed: whether
  // the channel stores a publication with `message_id` created at or after
  // `since_unix_ms` (e.g. from before a restart). Sets offset and epoch when true.
  virtual bool find_message_id(std::string_view channel, std::string_view message_id, int64_t since_unix_ms,
                               uint64_t& offset, std::string& epoch) {
    (void)channel;
    (void)message_id;
    (void)since_unix_ms;
    (void)offset;
    (void)epoch;
    return false;
  }
};

}  // namespace herald::server
