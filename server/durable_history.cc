// DurableHistory: offsets reserved under the hub lock, written by the store thread
// in group commits (one transaction per batch), made visible by the hub's commit hook.
#include "server/durable_history.h"

#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

namespace herald::server {

namespace {

std::string new_epoch() {
  // 16 hex characters: a durable channel's epoch changes only when its history is lost.
  unsigned char b[8] = {};
  if (RAND_bytes(b, sizeof b) != 1) {
    const auto t = std::chrono::steady_clock::now().time_since_epoch().count();
    for (size_t i = 0; i < sizeof b; ++i) b[i] = static_cast<unsigned char>(t >> (8 * i));
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string e(16, '0');
  for (size_t i = 0; i < sizeof b; ++i) {
    e[2 * i] = kHex[b[i] >> 4];
    e[2 * i + 1] = kHex[b[i] & 15];
  }
  return e;
}

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

uint64_t mono_us() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

std::shared_ptr<spdlog::logger> logger() {
  auto l = spdlog::get("store");
  return l ? l : spdlog::default_logger();
}

}  // namespace

DurableHistory::DurableHistory(Store& store, DurableSettings settings) : store_(store), settings_(settings) {}

DurableHistory::~DurableHistory() { stop(); }

bool DurableHistory::load(std::string& error) {
  std::vector<StoredChannel> rows;
  if (!store_.load_channels(rows, error)) return false;
  std::lock_guard lock(map_mu_);
  for (StoredChannel& r : rows) {
    auto c = std::make_unique<Channel>();
    c->epoch = std::move(r.epoch);
    c->assigned = c->visible = r.last_offset;
    c->trimmed_to = r.trimmed_to;
    c->from_store = true;
    last_written_[r.name] = r.last_offset;
    channels_.emplace(std::move(r.name), std::move(c));
  }
  return true;
}

void DurableHistory::start(CommitHook on_commit, DismissHook on_dismiss) {
  on_commit_ = std::move(on_commit);
  on_dismiss_ = std::move(on_dismiss);
  thread_ = std::thread([this] { run(); });
}

void DurableHistory::stop() {
  {
    std::lock_guard lock(queue_mu_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

DurableHistory::Channel* DurableHistory::find(std::string_view channel) {
  std::lock_guard lock(map_mu_);
  auto it = channels_.find(std::string(channel));
  return it == channels_.end() ? nullptr : it->second.get();
}

DurableHistory::Channel& DurableHistory::find_or_create(std::string_view channel) {
  std::lock_guard lock(map_mu_);
  auto& slot = channels_[std::string(channel)];
  if (!slot) {
    slot = std::make_unique<Channel>();
    slot->epoch = new_epoch();
  }
  return *slot;
}

PublicationPtr DurableHistory::append(v1::Publication&& draft, const ChannelOptions& options, int64_t now_unix_ms) {
  Channel& c = find_or_create(draft.channel());
  draft.set_offset(++c.assigned);
  draft.set_epoch(c.epoch);
  auto record = std::make_shared<const PublicationRecord>(std::move(draft));
  Op op;
  op.kind = Op::Kind::kPublish;
  op.record = record;
  op.generation = c.generation;
  op.retain_until_ms = options.history_ttl_s == 0 ? 0 : now_unix_ms + int64_t{options.history_ttl_s} * 1000;
  op.history_size = options.history_size;
  op.latest_value = options.latest_value;
  // Under the hub lock: per channel, the queue order is the offset order.
  push(std::move(op));
  return record;
}

void DurableHistory::make_visible(const PublicationRecord& record) {
  if (Channel* c = find(record.channel())) c->visible = std::max(c->visible, record.offset());
}

void DurableHistory::rollback(const PublicationRecord& record) {
  Channel* c = find(record.channel());
  if (c == nullptr) return;
  // Only the first failure of a generation releases the reserved offsets; the
  // publications reserved in that generation after it fail on the store thread.
  if (record.offset() <= c->visible || record.offset() > c->assigned || hook_generation_ != c->generation) return;
  ++c->generation;
  c->assigned = c->visible;
}

ChannelPosition DurableHistory::position(std::string_view channel) {
  Channel* c = find(channel);
  if (c == nullptr || (c->visible == 0 && !c->from_store)) return {};
  return {c->epoch, c->visible};
}

bool DurableHistory::read_since(std::string_view channel, std::string_view epoch, uint64_t offset,
                                int64_t now_unix_ms, std::vector<PublicationPtr>& out) {
  Channel* c = find(channel);
  const bool nothing_seen = epoch.empty() && offset == 0;
  if (c == nullptr) return nothing_seen;
  const uint64_t visible = c->visible;
  if (!nothing_seen) {
    if (epoch != c->epoch || offset > visible || offset < c->trimmed_to.load()) return false;
  }
  if (offset >= visible) return true;
  std::vector<PublicationPtr> rows;
  if (!store_.read_range(channel, offset, visible, now_unix_ms, rows)) return false;
  out.insert(out.end(), rows.begin(), rows.end());
  return true;
}

bool DurableHistory::find_message_id(std::string_view channel, std::string_view message_id, int64_t since_unix_ms,
                                     uint64_t& offset, std::string& epoch) {
  Channel* c = find(channel);
  // What this process published is in the hub's dedup memory; only channels that
  // existed at start, within a dedup window of it, can hold ids it never saw.
  if (c == nullptr || !c->from_store || wall_ms() > settings_.dedup_lookback_until_ms) return false;
  bool found = false;
  if (!store_.find_message_id(channel, message_id, since_unix_ms, offset, epoch, found)) return false;
  return found && offset <= c->visible;
}

void DurableHistory::note_device(const std::string& user, const std::string& device, int64_t now_ms) {
  Op op;
  op.kind = Op::Kind::kDevice;
  op.user = user;
  op.device = device;
  op.at_ms = now_ms;
  push(std::move(op));
}

void DurableHistory::note_sent(const std::string& channel, uint64_t offset, const std::string& device,
                               int64_t now_ms) {
  Op op;
  op.kind = Op::Kind::kSent;
  op.channel = channel;
  op.offset = offset;
  op.device = device;
  op.at_ms = now_ms;
  push(std::move(op));
}

void DurableHistory::note_ack(const std::string& user, const std::string& device, const std::string& channel,
                              const std::string& epoch, uint64_t offset, int64_t now_ms) {
  Op op;
  op.kind = Op::Kind::kAck;
  op.user = user;
  op.device = device;
  op.channel = channel;
  op.epoch = epoch;
  op.offset = offset;
  op.at_ms = now_ms;
  push(std::move(op));
}

bool DurableHistory::ack_cursor(const std::string& channel, const std::string& device, std::string& epoch,
                                uint64_t& offset) {
  return store_.ack_cursor(channel, device, epoch, offset);
}

namespace {

size_t op_bytes(const PublicationPtr& record) { return record ? record->body().size() : 0; }

}  // namespace

void DurableHistory::push(Op&& op) {
  bool wake;
  {
    std::lock_guard lock(queue_mu_);
    const size_t max_bytes = settings_.commit_max_bytes;
    const size_t before = queue_bytes_;
    queue_bytes_ += op_bytes(op.record);
    // Wake the store thread for the first write, and when a transaction's worth of
    // bytes is waiting (it may be in its group-commit window).
    wake = queue_.empty() || (max_bytes > 0 && before < max_bytes && queue_bytes_ >= max_bytes);
    queue_.push_back(std::move(op));
  }
  if (wake) queue_cv_.notify_one();
}

DurableStats DurableHistory::stats() const {
  DurableStats s;
  s.commits = commits_.load();
  s.commit_failures = commit_failures_.load();
  s.writes = writes_.load();
  s.retention_deleted = retention_deleted_.load();
  s.last_commit_us = last_commit_us_.load();
  s.max_batch = max_batch_.load();
  std::lock_guard lock(queue_mu_);
  s.queue = queue_.size();
  return s;
}

// ---------------------------------------------------------------- store thread

void DurableHistory::run() {
  using Clock = std::chrono::steady_clock;
  auto next_retention = Clock::now() + std::chrono::milliseconds(settings_.retention_interval_ms);
  std::deque<Op> batch;
  for (;;) {
    {
      std::unique_lock lock(queue_mu_);
      queue_cv_.wait_until(lock, next_retention, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty() && stopping_) break;
      const size_t max_bytes = settings_.commit_max_bytes;
      const auto full = [&] {
        return queue_.size() >= settings_.commit_batch || (max_bytes > 0 && queue_bytes_ >= max_bytes);
      };
      if (!queue_.empty() && settings_.commit_window_us > 0 && !full()) {
        // Group commit: give concurrent publishers a short window to join this transaction.
        const auto until = Clock::now() + std::chrono::microseconds(settings_.commit_window_us);
        queue_cv_.wait_until(lock, until, [&] { return stopping_ || full(); });
      }
      size_t bytes = 0;
      while (!queue_.empty() && batch.size() < settings_.commit_batch) {
        const size_t b = op_bytes(queue_.front().record);
        if (!batch.empty() && max_bytes > 0 && bytes + b > max_bytes) break;
        bytes += b;
        queue_bytes_ -= b;
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    if (!batch.empty()) commit_batch(batch);
    batch.clear();
    if (Clock::now() >= next_retention) {
      retention(wall_ms());
      next_retention = Clock::now() + std::chrono::milliseconds(settings_.retention_interval_ms);
    }
  }
}

void DurableHistory::commit_batch(std::deque<Op>& batch) {
  const uint64_t t0 = mono_us();
  std::vector<const Op*> skipped;  // publications of a failed generation: not written
  std::unordered_map<std::string, uint64_t> last;  // channel -> highest offset written in this batch
  std::vector<DismissNotice> dismissed;
  bool ok = store_.begin();
  for (const Op& op : batch) {
    if (!ok) break;
    switch (op.kind) {
      case Op::Kind::kPublish: {
        const std::string& ch = op.record->channel();
        auto f = failed_generation_.find(ch);
        if (f != failed_generation_.end() && op.generation <= f->second) {
          skipped.push_back(&op);
          break;
        }
        StoredMessage m;
        m.record = op.record;
        m.retain_until_ms = op.retain_until_ms;
        m.replace_collapse_key = true;  // a newer message with the key replaces the older one
        ok = store_.put_message(m);
        uint64_t& l = last[ch];
        l = std::max(l, op.record->offset());
        if (!op.latest_value) to_trim_[ch] = op.history_size;  // state channels: only collapse replaces
        break;
      }
      case Op::Kind::kDevice:
        ok = store_.put_device(op.user, op.device, op.at_ms);
        break;
      case Op::Kind::kSent:
        ok = store_.record_sent(op.channel, op.offset, op.device, op.at_ms);
        break;
      case Op::Kind::kAck:
        ok = store_.record_ack(op.user, op.device, op.channel, op.epoch, op.offset, op.at_ms, dismissed);
        break;
    }
  }
  if (ok) {
    for (const auto& [ch, offset] : last) {
      StoredChannel c;
      c.name = ch;
      c.last_offset = offset;
      Channel* mem = find(ch);
      if (mem != nullptr) {
        std::lock_guard lock(map_mu_);  // epoch never changes once created; read it safely
        c.epoch = mem->epoch;
      }
      ok = store_.put_channel(c);
      if (!ok) break;
    }
  }
  ok = ok && store_.commit();
  if (!ok) {
    store_.rollback();
    commit_failures_.fetch_add(1, std::memory_order_relaxed);
    logger()->error("store: transaction of {} writes failed: {}", batch.size(), store_.last_error());
    dismissed.clear();
  } else {
    commits_.fetch_add(1, std::memory_order_relaxed);
    writes_.fetch_add(batch.size(), std::memory_order_relaxed);
    for (const auto& [ch, offset] : last) last_written_[ch] = offset;
  }
  last_commit_us_.store(mono_us() - t0, std::memory_order_relaxed);
  if (batch.size() > max_batch_.load(std::memory_order_relaxed)) max_batch_.store(batch.size());

  // Completions in queue order: per channel that is offset order.
  for (const Op& op : batch) {
    if (op.kind != Op::Kind::kPublish) continue;
    const bool was_skipped = std::find(skipped.begin(), skipped.end(), &op) != skipped.end();
    const bool committed = ok && !was_skipped;
    if (!committed) {
      uint64_t& g = failed_generation_[op.record->channel()];
      g = std::max(g, op.generation);
    }
    hook_generation_ = op.generation;  // read by rollback(), which the hook calls on this thread
    on_commit_(op.record, committed);
  }
  if (!dismissed.empty() && on_dismiss_) on_dismiss_(std::move(dismissed));
}

void DurableHistory::retention(int64_t now_ms) {
  // Small transactions, so a retention step delays the next group commit by little.
  long deleted = 0;
  const auto raise = [this](const std::string& channel, uint64_t to) {
    if (Channel* c = find(channel)) {
      uint64_t t = c->trimmed_to.load();
      while (t < to && !c->trimmed_to.compare_exchange_weak(t, to)) {
      }
    }
  };
  if (store_.begin()) {
    std::vector<std::pair<std::string, uint64_t>> trimmed;
    const long n = store_.trim_expired(now_ms, settings_.retention_batch, trimmed);
    if (n >= 0 && store_.commit()) {
      deleted += n;
      for (const auto& [ch, to] : trimmed) raise(ch, to);
    } else {
      store_.rollback();
    }
  }
  size_t steps = 0;
  for (auto it = to_trim_.begin(); it != to_trim_.end() && steps < 64; ++steps) {
    const auto w = last_written_.find(it->first);
    const uint64_t last = w == last_written_.end() ? 0 : w->second;
    const uint64_t keep_after = last > it->second ? last - it->second : 0;  // history_size 0: keep none
    long n = 0;
    if (keep_after > 0 && store_.begin()) {
      uint64_t to = 0;
      n = store_.trim_channel(it->first, keep_after, settings_.retention_batch, to);
      if (n >= 0 && store_.commit()) {
        deleted += n;
        raise(it->first, to);
      } else {
        store_.rollback();
        n = 0;
      }
    }
    // Done with this channel unless a full step suggests more is left.
    if (n < static_cast<long>(settings_.retention_batch)) {
      it = to_trim_.erase(it);
    } else {
      ++it;
    }
  }
  if (deleted > 0) retention_deleted_.fetch_add(static_cast<uint64_t>(deleted), std::memory_order_relaxed);
}

}  // namespace herald::server
