// Store: the durable storage interface of heraldd (messages, channel positions,
// devices, delivery receipts, ack cursors). Knows nothing of SQLite (sqlite_store.h
// implements it), of loops, sessions or the hub; never delivers anything.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "server/publication.h"

namespace herald::server {

// A channel's durable position.
struct StoredChannel {
  std::string name;
  std::string epoch;
  uint64_t last_offset = 0;  // latest offset ever committed
  uint64_t trimmed_to = 0;   // every offset <= this was deleted by retention (0 = none)
};

// One publication to write, with what retention needs.
struct StoredMessage {
  PublicationPtr record;
  int64_t retain_until_ms = 0;  // retention deletes it after this (0 = kept until trimmed by size)
  bool replace_collapse_key = false;  // delete older messages of the channel with the same collapse key
};

// The state of one message for one device (GET /v1/messages/{id}).
struct DeviceReceipt {
  std::string device;
  std::string state;  // "pending", "sent", "acked", "expired", "dismissed"
  int64_t sent_ms = 0, acked_ms = 0, dismissed_ms = 0;
};

struct MessageReceipt {
  std::string channel, epoch, message_id;
  uint64_t offset = 0;
  int64_t created_ms = 0, expires_ms = 0;  // expires_ms 0 = no TTL of its own
  bool dismiss_on_read = false;
  std::vector<DeviceReceipt> devices;
};

// A dismiss-on-read message acked by `device`: every other device of `user` gets a Dismiss.
struct DismissNotice {
  std::string user, device, channel, message_id;
  uint64_t offset = 0;
};

// Threading: the writer calls (begin..commit, put_*, record_*, trim_*) come from one
// thread, the store thread, only. The reader calls (read_*, find_*, receipts,
// integrity_check) may come from any thread at once and see committed data only.
// Every call reports failure by returning false; last_error() (writer thread) says why.
class Store {
 public:
  virtual ~Store() = default;

  // ---- start-up (before any other call, one thread) ----
  // Opens or creates the store and migrates its schema. False with `error` naming
  // the problem (e.g. a setting the database does not confirm).
  virtual bool open(std::string& error) = 0;
  // Every channel's position.
  virtual bool load_channels(std::vector<StoredChannel>& out, std::string& error) = 0;

  // ---- writer (store thread) ----
  virtual bool begin() = 0;
  virtual bool commit() = 0;  // durable when it returns true (per the sync setting)
  virtual void rollback() noexcept = 0;
  virtual bool put_message(const StoredMessage& m) = 0;
  virtual bool put_channel(const StoredChannel& c) = 0;
  virtual bool put_device(std::string_view user, std::string_view device, int64_t now_ms) = 0;
  virtual bool record_sent(std::string_view channel, uint64_t offset, std::string_view device, int64_t now_ms) = 0;
  // Moves `device`'s ack cursor on `channel` (epoch `epoch`) up to `offset`, marks the
  // messages in between acked for it, and for the dismiss-on-read ones among them not
  // dismissed yet, marks them dismissed and appends a notice to `dismissed`.
  virtual bool record_ack(std::string_view user, std::string_view device, std::string_view channel,
                          std::string_view epoch, uint64_t offset, int64_t now_ms,
                          std::vector<DismissNotice>& dismissed) = 0;
  // Retention, in small steps: deletes at most `limit` messages whose retain_until_ms
  // passed (raising their channels' trimmed_to), then at most `limit` messages of
  // `channel` with offset <= `keep_after`. Returns how many were deleted, or -1;
  // `trimmed` gets (channel, new trimmed_to) per channel touched, `trimmed_to` the
  // channel's new trimmed_to.
  virtual long trim_expired(int64_t now_ms, size_t limit, std::vector<std::pair<std::string, uint64_t>>& trimmed) = 0;
  virtual long trim_channel(std::string_view channel, uint64_t keep_after, size_t limit, uint64_t& trimmed_to) = 0;
  virtual std::string last_error() const = 0;

  // ---- readers (any thread) ----
  // Messages of `channel` with after < offset <= upto, in offset order, skipping
  // dismissed ones and those whose own TTL passed at `now_ms`.
  virtual bool read_range(std::string_view channel, uint64_t after, uint64_t upto, int64_t now_ms,
                          std::vector<PublicationPtr>& out) = 0;
  // Whether `channel` holds a message with this id created at or after `since_ms`.
  virtual bool find_message_id(std::string_view channel, std::string_view message_id, int64_t since_ms,
                               uint64_t& offset, std::string& epoch, bool& found) = 0;
  // `device`'s ack cursor on `channel` ({"", 0} when it never acked).
  virtual bool ack_cursor(std::string_view channel, std::string_view device, std::string& epoch,
                          uint64_t& offset) = 0;
  // Every stored message with this publisher id, with its per-device states at `now_ms`.
  virtual bool receipts(std::string_view message_id, int64_t now_ms, std::vector<MessageReceipt>& out) = 0;
  // "ok", or the problems PRAGMA integrity_check (or its equivalent) found.
  virtual std::string integrity_check() = 0;
};

}  // namespace herald::server
