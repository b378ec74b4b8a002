// ChannelHub: 64 shards by channel hash, each a mutex over its channels' subscriber
// counts and dedup entries, with a FIFO of dedup expiries so sweep() only touches what expired.
#include "server/channel_hub.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "server/policy.h"

namespace herald::server {

namespace {

constexpr size_t kShards = 64;

// Bytes the offset and epoch fields may add to a publication once History has
// set them: offset tag + 10-byte varint, epoch tag + length + up to 64 bytes.
constexpr size_t kPositionFieldsReserve = 1 + 10 + 1 + 1 + 64;

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

// Subscribers per loop of one channel. Most channels (every personal one) have
// subscribers on a single loop: that loop and its count are held inline; a channel
// with subscribers on a second loop gets a heap array of one count per loop, kept
// until the channel state goes.
class LoopCounts {
 public:
  LoopCounts() noexcept = default;
  ~LoopCounts() { delete[] many_; }
  LoopCounts(const LoopCounts&) = delete;
  LoopCounts& operator=(const LoopCounts&) = delete;

  uint32_t get(size_t loop) const noexcept {
    if (many_ != nullptr) return many_[loop];
    return loop == loop_ ? count_ : 0;
  }
  // Throws std::bad_alloc (nothing changed then).
  void add(size_t loop, size_t loops) {
    if (many_ == nullptr) {
      if (count_ == 0 || loop == loop_) {
        loop_ = static_cast<uint32_t>(loop);
        ++count_;
        return;
      }
      many_ = new uint32_t[loops]();
      many_[loop_] = count_;
    }
    ++many_[loop];
  }
  // The count of `loop` must be above 0.
  void remove(size_t loop) noexcept {
    if (many_ != nullptr) {
      --many_[loop];
    } else {
      --count_;
    }
  }

 private:
  uint32_t* many_ = nullptr;  // one count per loop, once two loops had subscribers
  uint32_t loop_ = 0;         // while many_ is null: the one loop that may have subscribers
  uint32_t count_ = 0;        // ... and their number
};

}  // namespace

struct ChannelHub::ChannelState {
  struct Dedup {
    uint64_t offset = 0;
    std::string epoch;
    uint64_t expires_ms = 0;  // monotonic
    uint64_t seq = 0;         // matches the live expiry queue item
    bool pending = false;     // durable publication not committed yet
  };
  // A durable publication waiting for its commit, and who waits for the answer.
  struct Pending {
    PublicationPtr record;
    std::vector<std::pair<PublishDone, bool>> waiters;  // (done, answered as duplicate)
  };
  using DedupMap = std::unordered_map<std::string, Dedup, StringHash, std::equal_to<>>;

  // The live History's data for this channel (History::append's slot), so a publish
  // looks the channel up once, here. Emptied when sweep() lets the History forget it.
  ChannelSlot history;
  LoopCounts subscribers;             // per loop
  uint32_t total = 0;                 // sum of subscribers
  uint32_t user_connections = 0;      // personal channels: the user's connections (add_user_connection)
  // Allocated with the channel's first remembered message id (an empty map is 56
  // bytes, which every personal channel would pay); released with the state.
  std::unique_ptr<DedupMap> dedup;
  bool has_dedup() const noexcept { return dedup != nullptr && !dedup->empty(); }
  // Offset order (the store commits a channel in order). Allocated only while the
  // channel has uncommitted publications: an empty std::deque allocates its map and
  // first block (about 600 bytes), which every personal channel would pay.
  std::unique_ptr<std::deque<Pending>> pending;
};

struct alignas(64) ChannelHub::Shard {
  using Channels = std::unordered_map<std::string, ChannelState, StringHash, std::equal_to<>>;
  // One item per remembered message id, in insertion order. Items point into
  // the maps: a ChannelState stays while it has dedup entries, and a dedup entry
  // is erased only when its live item (the newest for that key) is popped, after
  // any stale ones (left by re-remembering an expired, not yet swept id), so an
  // item never points at freed memory.
  struct Expiry {
    ChannelEntry* channel;  // its name and state (nodes don't move)
    std::pair<const std::string, ChannelState::Dedup>* entry;
    uint64_t expires_ms;
    uint64_t seq;
  };
  mutable std::mutex mu;
  Channels channels;
  std::deque<Expiry> expiries;
  size_t dedup_live = 0;
  uint64_t next_seq = 1;
};

ChannelHub::ChannelHub(size_t loops, History& history, DeliverySink& sink,
                       std::function<ChannelOptions(std::string_view channel)> options, uint64_t dedup_window_ms,
                       HubLimits limits)
    : loops_(std::max<size_t>(loops, 1)),
      history_(history),
      sink_(sink),
      options_(std::move(options)),
      dedup_window_ms_(dedup_window_ms),
      limits_(limits),
      dedup_cap_per_shard_(std::max<size_t>(1, (limits.max_dedup_entries + kShards - 1) / kShards)),
      shards_(new Shard[kShards]) {}

ChannelHub::~ChannelHub() = default;

ChannelHub::Shard& ChannelHub::shard_for(std::string_view channel) const noexcept {
  return shards_[std::hash<std::string_view>{}(channel) % kShards];
}

PublishOutcome ChannelHub::publish(PublishDraft draft, int64_t now_unix_ms, uint64_t now_ms) {
  struct Wait {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    PublishOutcome out;
  };
  auto w = std::make_shared<Wait>();
  PublishOutcome out;
  if (publish(std::move(draft), now_unix_ms, now_ms,
              [w](const PublishOutcome& o) {
                std::lock_guard lock(w->mu);
                w->out = o;
                w->done = true;
                w->cv.notify_all();
              },
              out)) {
    return out;
  }
  std::unique_lock lock(w->mu);
  w->cv.wait(lock, [&] { return w->done; });
  return w->out;
}

bool ChannelHub::publish(PublishDraft draft, int64_t now_unix_ms, uint64_t now_ms, PublishDone done,
                         PublishOutcome& out) {
  out = PublishOutcome{};
  if (!valid_channel_name(draft.channel)) {
    out.status = codec::Status::kBadChannel;
    return true;
  }
  if (draft.message_id.size() > limits_.max_message_id) {
    out.status = codec::Status::kInvalidField;
    return true;
  }
  if (draft.payload.size() > limits_.max_message_size) {  // cheap early answer before building
    out.status = codec::Status::kMessageTooLarge;
    return true;
  }

  v1::Publication pub;
  pub.set_channel(draft.channel);
  // Protobuf allocates a string for every string field set, even to "": a history
  // keeps many publications, and most have no id, type, collapse key or content type.
  if (!draft.message_id.empty()) pub.set_message_id(draft.message_id);
  if (!draft.type.empty()) pub.set_type(std::move(draft.type));
  pub.set_priority(draft.priority >= 0 && draft.priority <= 3 ? static_cast<v1::Priority>(draft.priority) : v1::P3);
  pub.set_created_at_ms(now_unix_ms);
  if (!draft.collapse_key.empty()) pub.set_collapse_key(std::move(draft.collapse_key));
  pub.set_ttl_s(draft.ttl_s);
  if (!draft.content_type.empty()) pub.set_content_type(std::move(draft.content_type));
  pub.set_payload(std::move(draft.payload));
  pub.set_dismiss_on_read(draft.dismiss_on_read);
  if (pub.ByteSizeLong() + kPositionFieldsReserve > limits_.max_message_size) {
    out.status = codec::Status::kMessageTooLarge;
    return true;
  }
  // Outside the lock: it is configuration lookup, not channel state.
  const ChannelOptions options = options_for(draft.channel);
  const bool dedup = dedup_window_ms_ > 0 && !draft.message_id.empty();

  Shard& shard = shard_for(draft.channel);
  std::lock_guard lock(shard.mu);
  auto it = shard.channels.find(std::string_view(draft.channel));
  ChannelEntry* entry = it == shard.channels.end() ? nullptr : &*it;
  ChannelState* state = entry == nullptr ? nullptr : &entry->second;
  if (dedup && state != nullptr && state->has_dedup()) {
    auto d = state->dedup->find(std::string_view(draft.message_id));
    // An expired entry not yet swept counts as gone; remember() reuses it.
    if (d != state->dedup->end() && d->second.expires_ms > now_ms) {
      out.offset = d->second.offset;
      out.epoch = d->second.epoch;
      out.duplicate = true;
      dedup_hits_.fetch_add(1, std::memory_order_relaxed);
      if (d->second.pending && state->pending != nullptr) {
        // Acknowledged only once the original is committed (or refused if it fails).
        for (ChannelState::Pending& p : *state->pending) {
          if (p.record->offset() == d->second.offset) {
            p.waiters.emplace_back(std::move(done), true);
            return false;
          }
        }
      }
      return true;
    }
  }
  History& history = history_for(options);
  if (dedup && history.deferred()) {
    // Ids published before a restart are only in the store.
    const int64_t since = now_unix_ms - static_cast<int64_t>(dedup_window_ms_);
    if (history.find_message_id(draft.channel, draft.message_id, since, out.offset, out.epoch)) {
      out.duplicate = true;
      dedup_hits_.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    out.offset = 0;
    out.epoch.clear();
  }

  // Only the live History's data is remembered in the state (the durable one ignores slots anyway).
  PublicationPtr record = state != nullptr && &history == &history_
                              ? history.append(std::move(pub), options, now_unix_ms, state->history)
                              : history.append(std::move(pub), options, now_unix_ms);
  if (!record) {
    out.status = codec::Status::kStorageUnavailable;
    return true;
  }
  out.offset = record->offset();
  out.epoch = record->epoch();
  if (history.deferred()) {
    if (state == nullptr) {
      entry = &*shard.channels.try_emplace(draft.channel).first;
      state = &entry->second;
    }
    ChannelState::Pending p;
    p.record = record;
    p.waiters.emplace_back(std::move(done), false);
    if (state->pending == nullptr) state->pending = std::make_unique<std::deque<ChannelState::Pending>>();
    state->pending->push_back(std::move(p));
    if (dedup) remember(shard, draft.channel, entry, draft.message_id, record, now_ms, true);
    return false;
  }
  publishes_.fetch_add(1, std::memory_order_relaxed);
  if (dedup) remember(shard, draft.channel, entry, draft.message_id, record, now_ms);
  if (state != nullptr && state->total > 0) {
    for (size_t loop = 0; loop < loops_; ++loop) {
      if (const uint32_t n = state->subscribers.get(loop); n > 0) sink_.deliver(loop, record, n);
    }
  }
  return true;
}

bool ChannelHub::may_defer(std::string_view channel) { return history_for(options_for(channel)).deferred(); }

void ChannelHub::on_committed(const PublicationPtr& record, bool committed) {
  std::vector<std::pair<PublishDone, bool>> waiters;
  {
    Shard& shard = shard_for(record->channel());
    std::lock_guard lock(shard.mu);
    auto it = shard.channels.find(std::string_view(record->channel()));
    if (it == shard.channels.end()) return;  // cannot happen: a pending publication keeps its state
    ChannelState& state = it->second;
    if (state.pending == nullptr) return;
    auto p = std::find_if(state.pending->begin(), state.pending->end(),
                          [&](const ChannelState::Pending& x) { return x.record == record; });
    if (p == state.pending->end()) return;
    waiters = std::move(p->waiters);
    state.pending->erase(p);
    if (state.pending->empty()) state.pending.reset();
    History& history = durable_ != nullptr ? *durable_ : history_;
    const std::string& id = record->publication().message_id();
    const bool has_id = !id.empty() && state.has_dedup();
    auto d = has_id ? state.dedup->find(std::string_view(id)) : ChannelState::DedupMap::iterator{};
    const bool ours = has_id && d != state.dedup->end() && d->second.pending && d->second.offset == record->offset() &&
                      d->second.epoch == record->epoch();
    if (committed) {
      history.make_visible(*record);
      publishes_.fetch_add(1, std::memory_order_relaxed);
      if (ours) d->second.pending = false;
      if (state.total > 0) {
        for (size_t loop = 0; loop < loops_; ++loop) {
          if (const uint32_t n = state.subscribers.get(loop); n > 0) sink_.deliver(loop, record, n);
        }
      }
    } else {
      history.rollback(*record);
      // The id was not stored: a retry must publish it again. The expiry queue
      // item stays; it is stale once the entry's seq no longer matches.
      if (ours) {
        d->second.expires_ms = 0;
        d->second.pending = false;
      }
    }
  }
  PublishOutcome out;
  for (auto& [done, duplicate] : waiters) {
    if (!done) continue;
    if (committed) {
      out.status = codec::Status::kOk;
      out.offset = record->offset();
      out.epoch = record->epoch();
      out.duplicate = duplicate;
    } else {
      out = PublishOutcome{};
      out.status = codec::Status::kStorageUnavailable;
    }
    done(out);
  }
}

void ChannelHub::remember(Shard& shard, std::string_view channel, ChannelEntry* entry,
                          const std::string& message_id, const PublicationPtr& record, uint64_t now_ms, bool pending) {
  if (entry == nullptr) entry = &*shard.channels.try_emplace(std::string(channel)).first;
  ChannelState* state = &entry->second;
  if (state->dedup == nullptr) state->dedup = std::make_unique<ChannelState::DedupMap>();
  auto [it, inserted] = state->dedup->try_emplace(message_id);
  ChannelState::Dedup& d = it->second;
  d.offset = record->offset();
  d.epoch = record->epoch();
  d.expires_ms = now_ms + dedup_window_ms_;
  d.seq = shard.next_seq++;
  d.pending = pending;
  if (inserted) ++shard.dedup_live;
  shard.expiries.push_back(Shard::Expiry{entry, &*it, d.expires_ms, d.seq});
  // The entry just added is the newest and the cap is >= 1, so it is never the one evicted.
  while (shard.dedup_live > dedup_cap_per_shard_) {
    if (pop_dedup_front(shard)) dedup_evictions_.fetch_add(1, std::memory_order_relaxed);
  }
}

bool ChannelHub::pop_dedup_front(Shard& shard) noexcept {
  const Shard::Expiry item = shard.expiries.front();
  shard.expiries.pop_front();
  if (item.entry->second.seq != item.seq) return false;  // stale: the id was remembered again later
  ChannelState& state = item.channel->second;
  // find + erase(iterator): erase(key) with a key that lives in the erased node is asking for trouble.
  state.dedup->erase(state.dedup->find(std::string_view(item.entry->first)));
  if (state.dedup->empty()) state.dedup.reset();  // a subscribed channel may stay long after its last id
  --shard.dedup_live;
  erase_if_unused(shard, *item.channel);
  return true;
}

void ChannelHub::erase_if_unused(Shard& shard, ChannelEntry& entry) noexcept {
  const ChannelState& state = entry.second;
  if (state.total > 0 || state.user_connections > 0 || state.has_dedup() || state.pending != nullptr) return;
  shard.channels.erase(shard.channels.find(std::string_view(entry.first)));
}

SubscribeOutcome ChannelHub::subscribe(size_t loop, std::string_view channel, bool resume, std::string_view epoch,
                                       uint64_t offset, int64_t now_unix_ms, std::vector<PublicationPtr>& replay) {
  SubscribeOutcome out;
  replay.clear();
  if (loop >= loops_) {
    out.status = codec::Status::kInternal;
    return out;
  }
  if (!valid_channel_name(channel)) {
    out.status = codec::Status::kBadChannel;
    return out;
  }
  Shard& shard = shard_for(channel);
  std::lock_guard lock(shard.mu);
  const ChannelOptions options = options_for(channel);
  History& history = history_for(options);
  out.durable = &history == durable_;
  // History first, registration last: if anything throws, nothing is registered.
  out.position = history.position(channel);
  if (resume) {
    out.recovered = history.read_since(channel, epoch, offset, now_unix_ms, replay);
    if (!out.recovered) replay.clear();
    // Never beyond the announced position (contract, point 1).
    while (!replay.empty() && replay.back()->offset() > out.position.offset) replay.pop_back();
  }
  auto it = shard.channels.find(channel);
  if (it == shard.channels.end()) {
    it = shard.channels.try_emplace(std::string(channel)).first;
  }
  it->second.subscribers.add(loop, loops_);
  ++it->second.total;
  return out;
}

void ChannelHub::unsubscribe(size_t loop, std::string_view channel) {
  if (loop >= loops_) return;
  Shard& shard = shard_for(channel);
  std::lock_guard lock(shard.mu);
  auto it = shard.channels.find(channel);
  if (it == shard.channels.end() || it->second.subscribers.get(loop) == 0) return;
  it->second.subscribers.remove(loop);
  --it->second.total;
  erase_if_unused(shard, *it);
}

namespace {
// "user:<id>", the channel whose hub state also holds the user's connection count.
std::string personal_channel(std::string_view user) {
  std::string channel;
  channel.reserve(kUserNamespace.size() + 1 + user.size());
  channel.append(kUserNamespace).append(":").append(user);
  return channel;
}
}  // namespace

codec::Status ChannelHub::add_user_connection(std::string_view user, uint32_t max) {
  std::string channel = personal_channel(user);
  Shard& shard = shard_for(channel);
  std::lock_guard lock(shard.mu);
  auto it = shard.channels.find(std::string_view(channel));
  if (it == shard.channels.end()) {
    if (max == 0) return codec::Status::kTooManyConnections;
    it = shard.channels.try_emplace(std::move(channel)).first;
  }
  if (it->second.user_connections >= max) return codec::Status::kTooManyConnections;
  ++it->second.user_connections;
  return codec::Status::kOk;
}

void ChannelHub::remove_user_connection(std::string_view user) {
  std::string channel = personal_channel(user);
  Shard& shard = shard_for(channel);
  std::lock_guard lock(shard.mu);
  auto it = shard.channels.find(std::string_view(channel));
  if (it == shard.channels.end() || it->second.user_connections == 0) return;
  --it->second.user_connections;
  erase_if_unused(shard, *it);
}

void ChannelHub::sweep(int64_t now_unix_ms, uint64_t now_ms) {
  for (size_t i = 0; i < kShards; ++i) {
    Shard& shard = shards_[i];
    std::lock_guard lock(shard.mu);
    // Insertion order is expiry order up to clock skew between publishing
    // threads (now_ms read before the lock); an entry a little out of order just
    // waits for the next sweep, and publish() ignores expired entries anyway.
    while (!shard.expiries.empty() && shard.expiries.front().expires_ms <= now_ms) pop_dedup_front(shard);
  }

  std::vector<std::string> idle;
  history_.collect_idle(now_unix_ms, idle);
  for (const std::string& name : idle) {
    Shard& shard = shard_for(name);
    std::lock_guard lock(shard.mu);
    auto it = shard.channels.find(std::string_view(name));
    // Forgetting a subscribed channel would restart its offsets under its subscribers.
    if (it != shard.channels.end() && it->second.total > 0) continue;
    if (history_.drop_if_idle(name, now_unix_ms) && it != shard.channels.end()) it->second.history = ChannelSlot{};
  }
}

size_t ChannelHub::trim_history(size_t limit_bytes) {
  if (limit_bytes == 0 || history_.memory_bytes() <= limit_bytes) return 0;
  const size_t target = limit_bytes - limit_bytes / 10;
  size_t dropped = 0;
  std::vector<std::string> names;
  // collect_oldest() estimates the cutoff; each pass starts from what is kept
  // then, so a short estimate is corrected by the next. Bounded: the last pass
  // of a run that keeps falling short trims less than asked, never loops.
  constexpr int kMaxPasses = 8;
  for (int pass = 0; pass < kMaxPasses; ++pass) {
    const size_t used = history_.memory_bytes();
    if (used <= target) break;
    names.clear();
    int64_t cutoff_ms = 0;
    history_.collect_oldest(used - target, names, cutoff_ms);
    if (names.empty()) break;
    for (const std::string& name : names) {
      Shard& shard = shard_for(name);
      std::lock_guard lock(shard.mu);
      dropped += history_.trim_through(name, cutoff_ms);
    }
  }
  return dropped;
}

ChannelHub::Stats ChannelHub::stats() const {
  Stats st;
  for (size_t i = 0; i < kShards; ++i) {
    std::lock_guard lock(shards_[i].mu);
    st.channels += shards_[i].channels.size();
    st.dedup_entries += shards_[i].dedup_live;
  }
  st.publishes = publishes_.load(std::memory_order_relaxed);
  st.dedup_hits = dedup_hits_.load(std::memory_order_relaxed);
  st.dedup_evictions = dedup_evictions_.load(std::memory_order_relaxed);
  return st;
}

}  // namespace herald::server
