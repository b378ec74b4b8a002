// MemoryHistory: the History of live (non-durable) channels, kept in process memory.
// Nothing survives a restart: every channel gets a fresh random epoch when it is
// (re)created, so an offset from before a restart or a forgotten channel is never trusted.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "server/history.h"

namespace herald::server {

// Per channel: its epoch (8 random hex characters, drawn when the channel is
// created, i.e. at its first append in this process or after it was forgotten),
// its latest offset (offsets start at 1) and a ring of the last
// options.history_size publications, each kept for options.history_ttl_s after
// its append (TTL checked on append and read; evicted from the oldest end only,
// so what is kept is always a gapless run of offsets ending at the latest).
//
// Threading (see History): the per-channel data is guarded by the caller's lock
// (the hub's per-channel lock); MemoryHistory's own mutexes guard only its channel
// map (sharded, so lookups for different channels rarely contend). A channel's
// data is only ever freed by drop_if_idle(), which runs under that channel's hub
// lock, so a pointer looked up by a per-channel call stays valid for the call.
// collect_idle() reads a per-channel atomic hint, never the per-channel data.
//
// Forgetting: a channel is idle when it keeps no publication (all evicted or
// expired) and nothing was appended for `idle_grace_ms`. ChannelHub::sweep()
// forgets idle channels that have no subscriber (collect_idle + drop_if_idle);
// their next publication starts a new epoch at offset 1. The grace keeps the
// offsets of channels that keep no history (history_size 0) counting up for a
// while instead of restarting at every sweep.
//
// Memory: every kept publication is counted at PublicationRecord::memory_bytes()
// plus kEntryBytes, per channel and in total (memory_bytes()). The process-wide limit
// (limits.history_memory_bytes) is enforced by ChannelHub::trim_history():
// collect_oldest() picks the channels and the cutoff time, trim_through() drops
// what each kept from at or before it, oldest first across all channels.
class MemoryHistory final : public History {
 public:
  // What keeping a publication costs a channel's ring, on top of the record itself.
  static constexpr size_t kEntryBytes = 32;

  explicit MemoryHistory(int64_t idle_grace_ms = 60'000);
  ~MemoryHistory() override;
  MemoryHistory(const MemoryHistory&) = delete;
  MemoryHistory& operator=(const MemoryHistory&) = delete;

  // Never returns nullptr (memory is the store); throws only std::bad_alloc.
  PublicationPtr append(v1::Publication&& draft, const ChannelOptions& options, int64_t now_unix_ms) override;
  // `slot` remembers the channel's data: a channel is freed only by drop_if_idle(),
  // after which the caller empties its slot (History's contract).
  PublicationPtr append(v1::Publication&& draft, const ChannelOptions& options, int64_t now_unix_ms,
                        ChannelSlot& slot) override;
  bool read_since(std::string_view channel, std::string_view epoch, uint64_t offset, int64_t now_unix_ms,
                  std::vector<PublicationPtr>& out) override;
  ChannelPosition position(std::string_view channel) override;
  void collect_idle(int64_t now_unix_ms, std::vector<std::string>& out) override;
  bool drop_if_idle(std::string_view channel, int64_t now_unix_ms) override;
  size_t memory_bytes() const override;
  void collect_oldest(size_t bytes, std::vector<std::string>& out, int64_t& cutoff_ms) override;
  size_t trim_through(std::string_view channel, int64_t cutoff_ms) override;

  struct Stats {
    size_t channels = 0;      // channels with state (an epoch)
    size_t publications = 0;  // publications kept, all channels
    size_t bytes = 0;         // what they hold, as memory_bytes()
  };
  // A snapshot; safe from any thread. Locks each shard briefly to count channels.
  Stats stats() const;
  // Publications kept, all channels: without a lock (the history check runs it ten times a second).
  size_t publications() const noexcept;

 private:
  struct Channel;
  struct Shard;
  Shard& shard_for(std::string_view channel) const noexcept;
  Channel* find(std::string_view channel) const;
  Channel& find_or_create(std::string_view channel);
  size_t purge(Channel& c, int64_t now_unix_ms) noexcept;  // drops expired; returns how many
  int64_t idle_at(const Channel& c) const noexcept;

  int64_t idle_grace_ms_;
  std::unique_ptr<Shard[]> shards_;
};

}  // namespace herald::server
