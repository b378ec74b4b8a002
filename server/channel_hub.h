// ChannelHub: the one place publications get their offsets (via History), are
// deduplicated by message id, and are handed to the event loops that have subscribers;
// it also counts each user's connections (in the state of the user's personal channel).
// No libevent, no sockets: deliveries go to a DeliverySink. Thread-safe.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "codec/status.h"
#include "server/history.h"
#include "server/publication.h"

namespace herald::server {

// What a publisher sends (HTTP API or a Publish frame).
struct PublishDraft {
  std::string channel, message_id, type, content_type, collapse_key;
  int priority = 3;  // 0..3 = P0..P3; anything else is treated as P3
  uint32_t ttl_s = 0;
  bool dismiss_on_read = false;
  std::string payload;
};

struct PublishOutcome {
  codec::Status status = codec::Status::kOk;
  uint64_t offset = 0;     // the publication's offset (the original one when duplicate)
  std::string epoch;       // the channel's epoch at that offset
  bool duplicate = false;  // message_id seen on this channel within the window: not published again
};

// The final outcome of a deferred (durable) publish, called once on the store
// thread with no hub lock held. Must be cheap: post the answer to its own thread.
using PublishDone = std::function<void(const PublishOutcome& outcome)>;

struct SubscribeOutcome {
  codec::Status status = codec::Status::kOk;
  bool durable = false;      // the channel is durable (its History is the durable one)
  ChannelPosition position;  // the channel's position when the subscriber was registered
  bool recovered = false;    // resume asked and complete (replay holds everything missed)
};

// Where the hub hands publications for a loop. The real sink posts to the loop's
// MPSC queue.
class DeliverySink {
 public:
  virtual ~DeliverySink() = default;
  // Called with the channel's hub lock held, once per publication for each loop
  // that has subscribers of its channel, in offset order per channel and loop.
  // `subscribers`: how many the channel has on that loop (the deliveries this
  // posts, for the loop's backlog). Must be cheap and must not call back into the
  // hub (post to the loop's queue).
  virtual void deliver(size_t loop, const PublicationPtr& publication, uint32_t subscribers) noexcept = 0;
};

struct HubLimits {
  // A publication whose serialized herald.v1.Publication (offset and epoch
  // included) would exceed this is refused with kMessageTooLarge: clients
  // announce 1 MiB by default, and a server must not send them more (protocol §10.7).
  size_t max_message_size = 1024 * 1024;
  // Longer message ids are refused with kInvalidField (they are kept for the dedup window).
  size_t max_message_id = 128;
  // Dedup entries kept at most, all channels together (enforced per shard as
  // max / 64). Beyond it the oldest of the shard are forgotten before their window
  // ends: a late retry of such a message is then published again (counted in
  // Stats::dedup_evictions).
  size_t max_dedup_entries = 1'000'000;
};

// SUBSCRIBER CONTRACT (read this before writing a loop's delivery code)
//
// subscribe() registers the subscriber and reads the channel's position (and,
// for resume, the replay) in one step under the channel's lock, and publish()
// assigns an offset and calls the sink under the same lock. Hence:
//   1. Every publication the sink gets for this loop AFTER subscribe() returned
//      has offset > position.offset, and every one of them up to the matching
//      unsubscribe() reaches the sink for this loop (gapless, in offset order).
//   2. The loop's queue may still hold publications of the channel delivered
//      BEFORE subscribe() (for another subscriber on the same loop, or an
//      earlier subscription): their offsets are <= position.offset. The
//      subscriber MUST skip every publication with offset <= position.offset
//      (in position.epoch); with resume, those are exactly what `replay` holds
//      (when recovered) or what the client must reload otherwise.
//   3. After unsubscribe() the queue may still hold publications of the
//      channel; a loop drops them for a connection that is no longer subscribed.
// So: send SubscribeOk(position), then `replay`, then live publications with
// offset > position.offset. Priority lanes may reorder them later (protocol §13);
// that is the lanes' business, not the hub's.
//
// Epochs: a channel's epoch changes only when its history is lost (restart, or
// an idle channel forgotten by sweep(), which happens only while it has no
// subscriber), so a registered subscriber never sees the epoch change under it
// in one process.
class ChannelHub {
 public:
  // `loops`: number of event loops (loop ids 0..loops-1; at least 1).
  // `history`, `sink`: must outlive the hub. `options`: the channel's history
  // options (from its namespace policy); called from publishing threads without
  // any hub lock, so it must be thread-safe; empty = ChannelOptions{}.
  // `dedup_window_ms`: how long a message id is remembered (0 = no dedup).
  ChannelHub(size_t loops, History& history, DeliverySink& sink,
             std::function<ChannelOptions(std::string_view channel)> options, uint64_t dedup_window_ms,
             HubLimits limits = {});
  ~ChannelHub();
  ChannelHub(const ChannelHub&) = delete;
  ChannelHub& operator=(const ChannelHub&) = delete;

  // Publishes `draft` at wall-clock `now_unix_ms` (its created_at_ms) and
  // monotonic `now_ms` (dedup window). Any thread. Statuses:
  //   kOk                  published: offset/epoch set; the sink got it for every
  //                        loop with subscribers; or duplicate = true with the
  //                        original offset/epoch (nothing stored or delivered).
  //   kBadChannel          not a valid channel name (patterns with '*' included).
  //   kInvalidField        message_id longer than limits.max_message_id.
  //   kMessageTooLarge     the publication would exceed limits.max_message_size.
  //   kStorageUnavailable  History::append failed; nothing stored or delivered.
  // Throws only std::bad_alloc.
  // For a durable channel this waits for the commit (blocking the caller): use
  // the overload with `done` on event loops.
  PublishOutcome publish(PublishDraft draft, int64_t now_unix_ms, uint64_t now_ms);

  // The same, for any thread that must not block. Returns true when `out` is the
  // final outcome (live channels, refusals, duplicates of committed messages);
  // `done` is then not called. Returns false for a durable channel's publication
  // (or a duplicate of one not committed yet): `done` gets the outcome once the
  // store's transaction holding it committed (kOk) or failed (kStorageUnavailable,
  // nothing stored, nothing delivered). Live delivery of a durable publication
  // also waits for its commit (persist, then acknowledge and fan out).
  bool publish(PublishDraft draft, int64_t now_unix_ms, uint64_t now_ms, PublishDone done, PublishOutcome& out);
  // Whether a publish to `channel` may be answered later (through `done`): false
  // means the overload above always returns true, so `done` may be left empty (a
  // callback costs an allocation per publish). Any thread.
  bool may_defer(std::string_view channel);

  // Durable channels (ChannelOptions::durable) use `durable` (a deferred History:
  // DurableHistory) instead of the live one. Call before any publish; `durable`
  // must outlive the hub, and its commit hook must call on_committed().
  void set_durable(History* durable) noexcept { durable_ = durable; }
  // The durable History's commit hook: makes `record` visible, delivers it to the
  // loops with subscribers (committed) or releases its offset (not committed), and
  // answers its publisher(s). Store thread; takes the channel's lock.
  void on_committed(const PublicationPtr& record, bool committed);

  // Registers one subscriber of `channel` on loop `loop` (counted per loop; the
  // loop gets deliveries while its count > 0) and, in the same step, sets
  // position to the channel's position. With `resume`, `replay` is set to the
  // publications after (epoch, offset) up to position.offset and recovered to
  // whether that is complete (History::read_since); when not, replay is empty.
  // `replay` is always cleared first. Read the SUBSCRIBER CONTRACT above.
  // Call from loop `loop`'s thread (any thread is safe). Statuses: kOk,
  // kBadChannel (nothing registered), kInternal (loop out of range).
  // Throws only std::bad_alloc (then nothing is registered).
  SubscribeOutcome subscribe(size_t loop, std::string_view channel, bool resume, std::string_view epoch,
                             uint64_t offset, int64_t now_unix_ms, std::vector<PublicationPtr>& replay);

  // Removes one subscriber of `channel` on `loop`; when the loop's count drops
  // to 0 it gets no more deliveries of the channel (see contract, point 3).
  // Unknown channel, zero count or loop out of range: does nothing.
  void unsubscribe(size_t loop, std::string_view channel);

  // Counts one connection of `user` against `max`: kOk (counted) or kTooManyConnections
  // (not counted) when `max` are counted already. The count is kept in the state of
  // the user's personal channel "user:<user>", the one per-user entry the hub has
  // anyway, so a user costs no second map entry. Any thread.
  codec::Status add_user_connection(std::string_view user, uint32_t max);
  // Uncounts one connection of `user` (nothing if none is counted). Any thread.
  void remove_user_connection(std::string_view user);

  // Drops expired dedup entries and channel state nobody needs, and lets the
  // History forget idle channels that have no subscriber. Call from a timer
  // (every few seconds); cost is proportional to what expired plus one scan of
  // History::collect_idle.
  void sweep(int64_t now_unix_ms, uint64_t now_ms);

  // Keeps the live History's memory (History::memory_bytes) within `limit_bytes`:
  // once above it, drops the oldest kept publications of all live channels
  // together until it is at most 90 % of the limit, so that a steady stream is
  // trimmed once per tenth of the limit rather than at every publish. Offsets and
  // epochs do not change; a client resuming from before what is still kept gets
  // recovered=false, as after a TTL. Returns how many publications it dropped.
  // 0 = no limit. Call from a timer; costs one read of a few counters while under
  // the limit, and a scan of the History's channels per trimming pass.
  size_t trim_history(size_t limit_bytes);

  struct Stats {
    size_t channels = 0;       // channels with subscribers, dedup entries or counted user connections
    size_t dedup_entries = 0;  // message ids remembered
    uint64_t publishes = 0;    // publications stored (duplicates not counted)
    uint64_t dedup_hits = 0;   // publishes answered as duplicates
    uint64_t dedup_evictions = 0;  // entries forgotten early because of max_dedup_entries
  };
  // A snapshot (locks each shard briefly). Any thread.
  Stats stats() const;

  size_t loops() const noexcept { return loops_; }

 private:
  struct ChannelState;
  using ChannelEntry = std::pair<const std::string, ChannelState>;  // a shard map's node: name and state
  struct Shard;
  Shard& shard_for(std::string_view channel) const noexcept;
  void remember(Shard& shard, std::string_view channel, ChannelEntry* entry, const std::string& message_id,
                const PublicationPtr& record, uint64_t now_ms, bool pending = false);
  bool pop_dedup_front(Shard& shard) noexcept;  // true if a live entry was erased
  void erase_if_unused(Shard& shard, ChannelEntry& entry) noexcept;
  ChannelOptions options_for(std::string_view channel) const { return options_ ? options_(channel) : ChannelOptions{}; }
  History& history_for(const ChannelOptions& o) noexcept { return o.durable && durable_ != nullptr ? *durable_ : history_; }

  const size_t loops_;
  History& history_;
  History* durable_ = nullptr;
  DeliverySink& sink_;
  std::function<ChannelOptions(std::string_view)> options_;
  const uint64_t dedup_window_ms_;
  const HubLimits limits_;
  size_t dedup_cap_per_shard_;
  std::unique_ptr<Shard[]> shards_;
  std::atomic<uint64_t> publishes_{0};
  std::atomic<uint64_t> dedup_hits_{0};
  std::atomic<uint64_t> dedup_evictions_{0};
};

}  // namespace herald::server
