// SqliteStore: the embedded default Store, one SQLite 3 database (WAL mode) in the
// data directory. The only file of heraldd that includes sqlite3.h; must not know
// about loops, sessions, the hub or the wire protocol beyond PublicationRecord bodies.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "server/store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace herald::server {

struct SqliteSettings {
  std::string dir = "./herald-data";  // created when missing; the database is <dir>/herald.db
  bool synchronous_full = true;       // FULL: survives power loss; false = NORMAL: survives a process crash only
  size_t max_readers = 8;             // reader connections kept open
};

// The schema version this build writes (migrations bring older databases to it;
// a newer database is refused).
inline constexpr int kStoreSchemaVersion = 1;

class SqliteStore final : public Store {
 public:
  explicit SqliteStore(SqliteSettings settings);
  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  // Creates the directory, opens <dir>/herald.db, sets WAL and the synchronous
  // mode, reads both back and refuses to run (false, `error` naming store.dir or
  // store.synchronous) when SQLite does not confirm them; then migrates the schema.
  bool open(std::string& error) override;
  bool load_channels(std::vector<StoredChannel>& out, std::string& error) override;

  bool begin() override;
  bool commit() override;
  void rollback() noexcept override;
  bool put_message(const StoredMessage& m) override;
  bool put_channel(const StoredChannel& c) override;
  bool put_device(std::string_view user, std::string_view device, int64_t now_ms) override;
  bool record_sent(std::string_view channel, uint64_t offset, std::string_view device, int64_t now_ms) override;
  bool record_ack(std::string_view user, std::string_view device, std::string_view channel, std::string_view epoch,
                  uint64_t offset, int64_t now_ms, std::vector<DismissNotice>& dismissed) override;
  long trim_expired(int64_t now_ms, size_t limit, std::vector<std::pair<std::string, uint64_t>>& trimmed) override;
  long trim_channel(std::string_view channel, uint64_t keep_after, size_t limit, uint64_t& trimmed_to) override;
  std::string last_error() const override;

  bool read_range(std::string_view channel, uint64_t after, uint64_t upto, int64_t now_ms,
                  std::vector<PublicationPtr>& out) override;
  bool find_message_id(std::string_view channel, std::string_view message_id, int64_t since_ms, uint64_t& offset,
                       std::string& epoch, bool& found) override;
  bool ack_cursor(std::string_view channel, std::string_view device, std::string& epoch, uint64_t& offset) override;
  bool receipts(std::string_view message_id, int64_t now_ms, std::vector<MessageReceipt>& out) override;
  std::string integrity_check() override;

  const std::string& path() const noexcept { return path_; }

 private:
  struct Conn;
  class Reader;
  std::unique_ptr<Conn> open_conn(bool writer, std::string& error);
  bool fail(const char* what);
  Reader reader();

  SqliteSettings settings_;
  std::string path_;
  std::unique_ptr<Conn> writer_;
  std::string last_error_;
  std::mutex readers_mu_;
  std::vector<std::unique_ptr<Conn>> idle_readers_;
};

}  // namespace herald::server
