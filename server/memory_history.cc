// MemoryHistory: per-channel epoch, offset counter and ring of kept publications.
// Per-channel data is guarded by the caller's (hub's) lock; the mutexes here guard the map only.
#include "server/memory_history.h"

#include <algorithm>
#include <array>
#include <climits>
#include <functional>
#include <mutex>
#include <new>
#include <random>
#include <unordered_map>
#include <utility>

namespace herald::server {

namespace {

constexpr size_t kShards = 64;
constexpr int64_t kNoLimit = INT64_MAX;

// 32 bytes: one is kept per publication in every live channel's history.
struct Kept {
  PublicationPtr publication;
  int64_t appended_ms = 0;  // Unix ms of the append
  uint32_t ttl_s = 0;       // kept until appended_ms + ttl_s; 0 = no time limit
  uint32_t bytes = 0;       // what the history counts for it: PublicationRecord::memory_bytes() + kEntryBytes
  int64_t keep_until_ms() const noexcept {
    const int64_t ttl_ms = int64_t{ttl_s} * 1000;
    return ttl_s == 0 || appended_ms > kNoLimit - ttl_ms ? kNoLimit : appended_ms + ttl_ms;
  }
};

// A FIFO ring of Kept. Not std::deque: libstdc++'s allocates ~512 bytes for an
// empty deque, and there may be a channel per user. Not a vector of Kept either:
// storing into a constructed slot reads it first (to release what it held), and the
// slot an append fills is rarely in the cache; here it is constructed in raw memory.
class Ring {
 public:
  Ring() noexcept = default;
  ~Ring() {
    while (!empty()) pop_front();
    ::operator delete(buf_);
  }
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  size_t size() const noexcept { return count_; }
  bool empty() const noexcept { return count_ == 0; }
  const Kept& front() const noexcept { return buf_[head_]; }
  // front().keep_until_ms(), or kNoLimit when empty, without reading the ring: an append
  // checks it every time, and the oldest entry is rarely in the cache.
  int64_t front_until() const noexcept { return front_until_; }
  const Kept& back() const noexcept { return at(count_ - 1); }
  // i-th oldest, i < size().
  const Kept& at(size_t i) const noexcept { return buf_[(head_ + i) % capacity_]; }

  // Returns the bytes the history counted for the entry.
  uint32_t pop_front() noexcept {
    const uint32_t bytes = buf_[head_].bytes;
    buf_[head_].~Kept();  // releases the publication now
    head_ = (head_ + 1) % capacity_;
    if (--count_ == 0) head_ = 0;
    front_until_ = count_ == 0 ? kNoLimit : buf_[head_].keep_until_ms();
    return bytes;
  }
  // Throws std::bad_alloc (nothing changed then).
  void push_back(Kept k) {
    if (count_ == capacity_) reshape(std::max<size_t>(4, capacity_ * 2));
    if (count_ == 0) front_until_ = k.keep_until_ms();
    new (&buf_[(head_ + count_) % capacity_]) Kept(std::move(k));
    ++count_;
  }
  // Gives memory back after history_size shrank or most entries expired.
  void shrink_if_sparse() {
    if (count_ == 0) {
      if (capacity_ > 0) reshape(0);
    } else if (capacity_ > 16 && count_ < capacity_ / 4) {
      reshape(std::max<size_t>(4, count_ * 2));
    }
  }

 private:
  // Moves the entries to a new buffer of `capacity` (>= size(); 0 frees the buffer).
  void reshape(size_t capacity) {
    Kept* next = capacity == 0 ? nullptr : static_cast<Kept*>(::operator new(capacity * sizeof(Kept)));
    for (size_t i = 0; i < count_; ++i) {
      Kept& from = buf_[(head_ + i) % capacity_];
      new (&next[i]) Kept(std::move(from));
      from.~Kept();
    }
    ::operator delete(buf_);
    buf_ = next;
    capacity_ = capacity;
    head_ = 0;
  }

  Kept* buf_ = nullptr;  // raw memory for capacity_ entries; [head_, head_ + count_) mod capacity_ are live
  size_t capacity_ = 0;
  size_t head_ = 0;
  size_t count_ = 0;
  int64_t front_until_ = kNoLimit;
};

static_assert(sizeof(Kept) == MemoryHistory::kEntryBytes);

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

}  // namespace

struct alignas(64) MemoryHistory::Shard {
  // What the shard's channels keep, together. Per shard, not one process-wide counter:
  // two loops appending to different channels would otherwise write the same cache
  // line at every append. Declared first, so they outlive the channels on destruction.
  std::atomic<int64_t> publications{0};
  std::atomic<int64_t> bytes{0};
  mutable std::mutex mu;
  // unique_ptr: a Channel must not move while a per-channel call uses it
  // without this mutex (node-based maps don't move values either, but this says so).
  std::unordered_map<std::string, std::unique_ptr<Channel>, StringHash, std::equal_to<>> channels;
  std::mt19937_64 rng;
};

struct MemoryHistory::Channel {
  explicit Channel(Shard& s) noexcept : shard(s) {}

  Shard& shard;  // counts what this channel keeps
  std::string epoch;
  uint64_t last_offset = 0;
  Ring kept;
  // Written under the hub lock. Read without it, under the shard mutex only, by
  // collect_idle() and collect_oldest(); hence atomic (relaxed: they are hints).
  std::atomic<int64_t> last_append_ms{0};
  std::atomic<int64_t> idle_hint_ms{kNoLimit};   // when the channel may be idle (Unix ms)
  std::atomic<int64_t> oldest_ms{kNoLimit};      // appended_ms of the oldest kept; kNoLimit when none
  std::atomic<int64_t> bytes{0};                 // what it keeps, counted as Kept::bytes

  // Keeps `k` as the newest publication. Throws std::bad_alloc (nothing changed then).
  void keep(Kept k) {
    const int64_t at = k.appended_ms;
    const uint32_t b = k.bytes;
    kept.push_back(std::move(k));
    if (kept.size() == 1) oldest_ms.store(at, std::memory_order_relaxed);
    count(1, b);
  }

  // Drops the oldest kept publication while `drop(kept)` is true; returns how many.
  // Only from the oldest end: what is kept stays a gapless run of offsets.
  template <typename Pred>
  size_t drop_oldest_while(Pred drop) noexcept {
    size_t n = 0;
    int64_t b = 0;
    while (!kept.empty() && drop(kept)) {
      b += kept.pop_front();
      ++n;
    }
    if (n > 0) {
      oldest_ms.store(kept.empty() ? kNoLimit : kept.front().appended_ms, std::memory_order_relaxed);
      count(-static_cast<int64_t>(n), -b);
    }
    return n;
  }

 private:
  void count(int64_t publications, int64_t b) noexcept {
    // Only the holder of the channel's hub lock writes `bytes`: no read-modify-write needed.
    bytes.store(bytes.load(std::memory_order_relaxed) + b, std::memory_order_relaxed);
    shard.publications.fetch_add(publications, std::memory_order_relaxed);
    shard.bytes.fetch_add(b, std::memory_order_relaxed);
  }
};

MemoryHistory::MemoryHistory(int64_t idle_grace_ms)
    : idle_grace_ms_(std::max<int64_t>(0, idle_grace_ms)), shards_(new Shard[kShards]) {
  std::random_device rd;
  for (size_t i = 0; i < kShards; ++i) {
    std::seed_seq seq{rd(), rd(), rd(), rd(), static_cast<unsigned>(i)};
    shards_[i].rng.seed(seq);
  }
}

MemoryHistory::~MemoryHistory() = default;

MemoryHistory::Shard& MemoryHistory::shard_for(std::string_view channel) const noexcept {
  // The hub shards by the same hash; using the high bits here keeps the two
  // shardings independent, so one hub shard's channels spread over all of these.
  return shards_[(std::hash<std::string_view>{}(channel) >> 58) % kShards];
}

MemoryHistory::Channel* MemoryHistory::find(std::string_view channel) const {
  Shard& s = shard_for(channel);
  std::lock_guard lock(s.mu);
  auto it = s.channels.find(channel);
  return it == s.channels.end() ? nullptr : it->second.get();
}

MemoryHistory::Channel& MemoryHistory::find_or_create(std::string_view channel) {
  Shard& s = shard_for(channel);
  std::lock_guard lock(s.mu);
  auto it = s.channels.find(channel);
  if (it != s.channels.end()) return *it->second;
  auto c = std::make_unique<Channel>(s);
  static constexpr char kHex[] = "0123456789abcdef";
  const uint64_t r = s.rng();
  c->epoch.resize(8);
  for (size_t i = 0; i < 8; ++i) c->epoch[i] = kHex[(r >> (4 * i)) & 0xF];
  Channel& ref = *c;
  s.channels.emplace(std::string(channel), std::move(c));
  return ref;
}

size_t MemoryHistory::purge(Channel& c, int64_t now_unix_ms) noexcept {
  // front_until() and not front(): an append checks this every time, and the oldest
  // entry is rarely in the cache. Only from the oldest end, so a younger entry may
  // outlive its time a little if the TTL changed between appends.
  return c.drop_oldest_while(
      [now_unix_ms](const Ring& r) { return r.front_until() != kNoLimit && r.front_until() <= now_unix_ms; });
}

int64_t MemoryHistory::idle_at(const Channel& c) const noexcept {
  const int64_t last = c.last_append_ms.load(std::memory_order_relaxed);
  const int64_t grace_end = last > kNoLimit - idle_grace_ms_ ? kNoLimit : last + idle_grace_ms_;
  return c.kept.empty() ? grace_end : std::max(grace_end, c.kept.back().keep_until_ms());
}

PublicationPtr MemoryHistory::append(v1::Publication&& draft, const ChannelOptions& options, int64_t now_unix_ms) {
  ChannelSlot slot;
  return append(std::move(draft), options, now_unix_ms, slot);
}

PublicationPtr MemoryHistory::append(v1::Publication&& draft, const ChannelOptions& options, int64_t now_unix_ms,
                                     ChannelSlot& slot) {
  if (slot.data == nullptr) slot.data = &find_or_create(draft.channel());
  Channel& c = *static_cast<Channel*>(slot.data);
  if (purge(c, now_unix_ms) > 0) c.kept.shrink_if_sparse();
  draft.set_offset(c.last_offset + 1);
  draft.set_epoch(c.epoch);
  auto record = std::make_shared<const PublicationRecord>(std::move(draft));
  ++c.last_offset;  // only once nothing can throw any more: a failed append consumes no offset
  c.last_append_ms.store(now_unix_ms, std::memory_order_relaxed);

  const size_t keep = options.history_size;
  c.drop_oldest_while([limit = std::max<size_t>(keep, 1)](const Ring& r) { return r.size() >= limit; });
  if (keep > 0) {
    const size_t bytes = record->memory_bytes() + kEntryBytes;
    c.keep(Kept{record, now_unix_ms, options.history_ttl_s,
                static_cast<uint32_t>(std::min<size_t>(bytes, UINT32_MAX))});
  } else {
    c.kept.shrink_if_sparse();
  }
  c.idle_hint_ms.store(idle_at(c), std::memory_order_relaxed);
  return record;
}

bool MemoryHistory::read_since(std::string_view channel, std::string_view epoch, uint64_t offset,
                               int64_t now_unix_ms, std::vector<PublicationPtr>& out) {
  Channel* c = find(channel);
  if (c == nullptr) return epoch.empty() && offset == 0;
  purge(*c, now_unix_ms);
  const bool nothing_seen = epoch.empty() && offset == 0;
  if (!nothing_seen && epoch != c->epoch) return false;
  if (offset > c->last_offset) return false;  // the client claims what was never published
  if (offset == c->last_offset) return true;
  if (c->kept.empty()) return false;  // something after `offset` exists but nothing is kept
  const uint64_t first_kept = c->kept.front().publication->offset();
  if (offset + 1 < first_kept) return false;  // a gap: never a partial recovery
  const size_t from = static_cast<size_t>(offset + 1 - first_kept);
  out.reserve(out.size() + (c->kept.size() - from));
  for (size_t i = from; i < c->kept.size(); ++i) out.push_back(c->kept.at(i).publication);
  return true;
}

ChannelPosition MemoryHistory::position(std::string_view channel) {
  const Channel* c = find(channel);
  if (c == nullptr) return {};
  return ChannelPosition{c->epoch, c->last_offset};
}

void MemoryHistory::collect_idle(int64_t now_unix_ms, std::vector<std::string>& out) {
  for (size_t i = 0; i < kShards; ++i) {
    Shard& s = shards_[i];
    std::lock_guard lock(s.mu);
    for (const auto& [name, c] : s.channels) {
      const int64_t hint = c->idle_hint_ms.load(std::memory_order_relaxed);
      if (hint != kNoLimit && hint <= now_unix_ms) out.push_back(name);
    }
  }
}

bool MemoryHistory::drop_if_idle(std::string_view channel, int64_t now_unix_ms) {
  Shard& s = shard_for(channel);
  std::lock_guard lock(s.mu);
  auto it = s.channels.find(channel);
  if (it == s.channels.end()) return false;
  Channel& c = *it->second;
  purge(c, now_unix_ms);
  const int64_t at = idle_at(c);
  if (at == kNoLimit || at > now_unix_ms) {
    c.kept.shrink_if_sparse();
    c.idle_hint_ms.store(at, std::memory_order_relaxed);  // the hint was early: try again then
    return false;
  }
  // Whatever a changed TTL left behind the expired front goes too, uncounted first.
  c.drop_oldest_while([](const Ring&) { return true; });
  s.channels.erase(it);
  return true;
}

void MemoryHistory::collect_oldest(size_t bytes, std::vector<std::string>& out, int64_t& cutoff_ms) {
  // Per channel: from when to when it kept publications, and how many bytes.
  struct Span {
    int64_t oldest, newest;
    double bytes;
  };
  std::vector<Span> spans;
  int64_t lo = kNoLimit, hi = INT64_MIN;
  for (size_t i = 0; i < kShards; ++i) {
    Shard& s = shards_[i];
    std::lock_guard lock(s.mu);
    for (const auto& entry : s.channels) {
      const Channel& c = *entry.second;
      const int64_t b = c.bytes.load(std::memory_order_relaxed);
      const int64_t oldest = c.oldest_ms.load(std::memory_order_relaxed);
      if (b <= 0 || oldest == kNoLimit) continue;
      const int64_t newest = std::max(oldest, c.last_append_ms.load(std::memory_order_relaxed));
      spans.push_back(Span{oldest, newest, static_cast<double>(b)});
      lo = std::min(lo, oldest);
      hi = std::max(hi, newest);
    }
  }
  if (spans.empty()) return;
  // Bytes appended at or before `t`, taking each channel's appends as spread evenly
  // over its span. The earliest `t` at which that reaches `bytes` is the cutoff; the
  // hub's next pass moves it on if the estimate fell short.
  const auto older_than = [&spans](int64_t t) {
    double sum = 0;
    for (const Span& sp : spans) {
      if (t < sp.oldest) continue;
      if (t >= sp.newest) {
        sum += sp.bytes;
      } else {
        sum += sp.bytes * static_cast<double>(t - sp.oldest + 1) / static_cast<double>(sp.newest - sp.oldest + 1);
      }
    }
    return sum;
  };
  const double want = static_cast<double>(bytes);
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (older_than(mid) >= want) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  cutoff_ms = lo;
  for (size_t i = 0; i < kShards; ++i) {
    Shard& s = shards_[i];
    std::lock_guard lock(s.mu);
    for (const auto& [name, c] : s.channels) {
      if (c->oldest_ms.load(std::memory_order_relaxed) <= cutoff_ms) out.push_back(name);
    }
  }
}

size_t MemoryHistory::trim_through(std::string_view channel, int64_t cutoff_ms) {
  Channel* c = find(channel);
  if (c == nullptr) return 0;
  const size_t n = c->drop_oldest_while([cutoff_ms](const Ring& r) { return r.front().appended_ms <= cutoff_ms; });
  if (n > 0) {
    c->kept.shrink_if_sparse();
    c->idle_hint_ms.store(idle_at(*c), std::memory_order_relaxed);
  }
  return n;
}

size_t MemoryHistory::memory_bytes() const {
  int64_t sum = 0;
  for (size_t i = 0; i < kShards; ++i) sum += shards_[i].bytes.load(std::memory_order_relaxed);
  return sum > 0 ? static_cast<size_t>(sum) : 0;
}

size_t MemoryHistory::publications() const noexcept {
  int64_t sum = 0;
  for (size_t i = 0; i < kShards; ++i) sum += shards_[i].publications.load(std::memory_order_relaxed);
  return sum > 0 ? static_cast<size_t>(sum) : 0;
}

MemoryHistory::Stats MemoryHistory::stats() const {
  Stats st;
  for (size_t i = 0; i < kShards; ++i) {
    std::lock_guard lock(shards_[i].mu);
    st.channels += shards_[i].channels.size();
  }
  st.publications = publications();
  st.bytes = memory_bytes();
  return st;
}

}  // namespace herald::server
