// DurableHistory: the History of durable channels, over a Store, with the store
// thread that group-commits publications, acks, sent marks and devices, and runs
// retention in small steps. Must not deliver, know loops or sessions, or take hub locks
// (its commit hook does that, in the hub).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "server/history.h"
#include "server/store.h"

namespace herald::server {

struct DurableSettings {
  uint32_t commit_window_us = 1000;  // after the first write of a batch, wait at most this long for more
  size_t commit_batch = 2000;        // writes per transaction at most
  // Publication bytes (serialized bodies) per transaction at most (the first write is
  // always taken): a commit's fsync grows with its size, and every publisher in it and
  // behind it waits for that fsync, so this bounds publish latency. 0 = no bound.
  size_t commit_max_bytes = 1 << 20;
  uint32_t retention_interval_ms = 1000;
  size_t retention_batch = 500;      // messages deleted per retention step (one small transaction)
  int64_t dedup_lookback_until_ms = 0;  // Unix ms until which find_message_id asks the store (start + window)
};

struct DurableStats {
  uint64_t commits = 0, commit_failures = 0, writes = 0, retention_deleted = 0;
  uint64_t queue = 0;  // writes waiting
  uint64_t last_commit_us = 0, max_batch = 0;
};

class DurableHistory final : public History {
 public:
  // Called on the store thread after a transaction, once per publication in it,
  // in queue order: committed or not. No lock is held.
  using CommitHook = std::function<void(const PublicationPtr& record, bool committed)>;
  // Called on the store thread after a committed transaction that dismissed messages.
  using DismissHook = std::function<void(std::vector<DismissNotice>&& notices)>;

  // `store` must be open and outlive this object.
  DurableHistory(Store& store, DurableSettings settings);
  ~DurableHistory() override;  // stop()s
  DurableHistory(const DurableHistory&) = delete;
  DurableHistory& operator=(const DurableHistory&) = delete;

  // Loads every channel's position; false with `error`. Call once, before start().
  bool load(std::string& error);
  // Starts the store thread. The hooks must be set and stay valid until stop().
  void start(CommitHook on_commit, DismissHook on_dismiss);
  // Commits what is queued, then joins the store thread. Idempotent.
  void stop();

  // ---- History (per-channel calls under the hub's channel lock) ----
  // Reserves the next offset and queues the write; never returns nullptr.
  using History::append;  // the slot overload: the store looks channels up itself
  PublicationPtr append(v1::Publication&& draft, const ChannelOptions& options, int64_t now_unix_ms) override;
  // Committed publications only. "Nothing seen" ({"", 0}) returns everything still
  // kept (and true): a durable channel's first-time reader gets what retention kept.
  bool read_since(std::string_view channel, std::string_view epoch, uint64_t offset, int64_t now_unix_ms,
                  std::vector<PublicationPtr>& out) override;
  ChannelPosition position(std::string_view channel) override;  // committed position
  bool deferred() const noexcept override { return true; }
  void make_visible(const PublicationRecord& record) override;
  void rollback(const PublicationRecord& record) override;
  bool find_message_id(std::string_view channel, std::string_view message_id, int64_t since_unix_ms,
                       uint64_t& offset, std::string& epoch) override;

  // ---- receipts (any thread; queued, committed with the next batch) ----
  void note_device(const std::string& user, const std::string& device, int64_t now_ms);
  void note_sent(const std::string& channel, uint64_t offset, const std::string& device, int64_t now_ms);
  void note_ack(const std::string& user, const std::string& device, const std::string& channel,
                const std::string& epoch, uint64_t offset, int64_t now_ms);
  // Reads (any thread).
  bool ack_cursor(const std::string& channel, const std::string& device, std::string& epoch, uint64_t& offset);
  Store& store() noexcept { return store_; }

  DurableStats stats() const;

 private:
  struct Channel {
    std::string epoch;
    uint64_t assigned = 0;  // last offset reserved (hub lock)
    uint64_t visible = 0;   // last offset committed and made visible (hub lock)
    uint64_t generation = 0;  // bumped by rollback (hub lock)
    std::atomic<uint64_t> trimmed_to{0};  // written by the store thread
    bool from_store = false;  // existed when the server started (dedup may need the store)
  };
  struct Op {
    enum class Kind : uint8_t { kPublish, kDevice, kSent, kAck } kind = Kind::kPublish;
    PublicationPtr record;
    uint64_t generation = 0;
    int64_t retain_until_ms = 0;
    size_t history_size = 0;
    bool latest_value = false;
    std::string user, device, channel, epoch;
    uint64_t offset = 0;
    int64_t at_ms = 0;
  };

  Channel* find(std::string_view channel);
  Channel& find_or_create(std::string_view channel);
  void push(Op&& op);
  void run();
  void commit_batch(std::deque<Op>& batch);
  void retention(int64_t now_ms);

  Store& store_;
  const DurableSettings settings_;
  CommitHook on_commit_;
  DismissHook on_dismiss_;

  mutable std::mutex map_mu_;  // guards channels_ (the map, not the entries)
  std::unordered_map<std::string, std::unique_ptr<Channel>> channels_;

  mutable std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<Op> queue_;
  size_t queue_bytes_ = 0;  // publication bytes in queue_
  bool stopping_ = false;
  std::thread thread_;

  // Store thread only.
  std::unordered_map<std::string, uint64_t> failed_generation_;  // channel -> highest generation that failed
  std::unordered_map<std::string, size_t> to_trim_;  // channel -> history_size, size retention pending
  std::unordered_map<std::string, uint64_t> last_written_;  // channel -> last offset committed
  uint64_t hook_generation_ = 0;  // generation of the publication whose commit hook runs

  std::atomic<uint64_t> commits_{0}, commit_failures_{0}, writes_{0}, retention_deleted_{0};
  std::atomic<uint64_t> last_commit_us_{0}, max_batch_{0};
};

}  // namespace herald::server
