// SqliteStore: schema and migrations, pragmas read back at open, prepared
// statements per connection, one writer connection (store thread) and a small
// pool of reader connections (WAL lets them read while the writer commits).
#include "server/sqlite_store.h"

#include <sqlite3.h>

#include <filesystem>
#include <map>
#include <unordered_map>

namespace herald::server {

namespace {

// Migrations: kMigrations[i] brings a database from version i to i + 1. Append
// only; never edit a released step. `messages` is a rowid table on purpose: its rows
// (about 1 KiB) are too large for WITHOUT ROWID, which would store them in the index
// b-tree and spill to overflow pages (about 4x the disk space in a 1M-message test).
const char* const kMigrations[] = {
    // 0 -> 1
    "CREATE TABLE channels("
    "  name TEXT PRIMARY KEY, epoch TEXT NOT NULL, last_offset INTEGER NOT NULL,"
    "  trimmed_to INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
    "CREATE TABLE messages("
    "  channel TEXT NOT NULL, offset INTEGER NOT NULL, message_id TEXT NOT NULL,"
    "  collapse_key TEXT NOT NULL, created_ms INTEGER NOT NULL, retain_until_ms INTEGER NOT NULL,"
    "  expires_ms INTEGER NOT NULL, dismiss INTEGER NOT NULL, dismissed_ms INTEGER NOT NULL DEFAULT 0,"
    "  body BLOB NOT NULL, PRIMARY KEY(channel, offset));"
    "CREATE INDEX messages_by_id ON messages(message_id, channel) WHERE message_id <> '';"
    "CREATE INDEX messages_by_key ON messages(channel, collapse_key) WHERE collapse_key <> '';"
    "CREATE INDEX messages_by_retention ON messages(retain_until_ms) WHERE retain_until_ms > 0;"
    "CREATE TABLE devices(user TEXT NOT NULL, device TEXT NOT NULL, first_seen_ms INTEGER NOT NULL,"
    "  last_seen_ms INTEGER NOT NULL, PRIMARY KEY(user, device)) WITHOUT ROWID;"
    "CREATE TABLE deliveries(channel TEXT NOT NULL, offset INTEGER NOT NULL, device TEXT NOT NULL,"
    "  sent_ms INTEGER NOT NULL DEFAULT 0, acked_ms INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY(channel, offset, device)) WITHOUT ROWID;"
    "CREATE TABLE cursors(channel TEXT NOT NULL, device TEXT NOT NULL, epoch TEXT NOT NULL,"
    "  acked_offset INTEGER NOT NULL, PRIMARY KEY(channel, device)) WITHOUT ROWID;",
};
static_assert(std::size(kMigrations) == kStoreSchemaVersion);

std::string_view col_text(sqlite3_stmt* s, int i) {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
  return p == nullptr ? std::string_view() : std::string_view(p, static_cast<size_t>(sqlite3_column_bytes(s, i)));
}

}  // namespace

// One connection with its prepared statements (created on first use, kept).
struct SqliteStore::Conn {
  sqlite3* db = nullptr;
  std::unordered_map<const char*, sqlite3_stmt*> stmts;

  ~Conn() {
    for (auto& [sql, st] : stmts) sqlite3_finalize(st);
    if (db != nullptr) sqlite3_close_v2(db);
  }
  // The statement for `sql` (a string literal: its address is the key), reset and
  // unbound; nullptr on error.
  sqlite3_stmt* get(const char* sql) {
    auto it = stmts.find(sql);
    if (it != stmts.end()) {
      sqlite3_reset(it->second);
      sqlite3_clear_bindings(it->second);
      return it->second;
    }
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, nullptr) != SQLITE_OK) return nullptr;
    stmts.emplace(sql, st);
    return st;
  }
  bool exec(const char* sql) { return sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK; }
  std::string error() const { return db != nullptr ? sqlite3_errmsg(db) : "no database"; }
};

// A reader connection borrowed from the pool for one call.
class SqliteStore::Reader {
 public:
  Reader(SqliteStore* s, std::unique_ptr<Conn> c) : store_(s), conn_(std::move(c)) {}
  Reader(Reader&&) = default;
  ~Reader() {
    if (!conn_) return;
    // A statement left mid-step would hold a read transaction open (and pin the WAL).
    for (auto& [sql, st] : conn_->stmts) sqlite3_reset(st);
    std::lock_guard lock(store_->readers_mu_);
    if (store_->idle_readers_.size() < store_->settings_.max_readers) store_->idle_readers_.push_back(std::move(conn_));
  }
  Conn* operator->() const { return conn_.get(); }
  explicit operator bool() const { return conn_ != nullptr; }

 private:
  SqliteStore* store_;
  std::unique_ptr<Conn> conn_;
};

namespace {

void bind_text(sqlite3_stmt* s, int i, std::string_view v) {
  sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}
void bind_i64(sqlite3_stmt* s, int i, int64_t v) { sqlite3_bind_int64(s, i, v); }
void bind_u64(sqlite3_stmt* s, int i, uint64_t v) { sqlite3_bind_int64(s, i, static_cast<int64_t>(v)); }

// Runs a statement that returns no rows.
bool step_done(sqlite3_stmt* s) {
  if (s == nullptr) return false;
  const int rc = sqlite3_step(s);
  sqlite3_reset(s);
  return rc == SQLITE_DONE;
}

}  // namespace

SqliteStore::SqliteStore(SqliteSettings settings) : settings_(std::move(settings)) {}

SqliteStore::~SqliteStore() {
  idle_readers_.clear();
  writer_.reset();
}

std::unique_ptr<SqliteStore::Conn> SqliteStore::open_conn(bool writer, std::string& error) {
  auto c = std::make_unique<Conn>();
  const int flags = (writer ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY) |
                    SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
  if (sqlite3_open_v2(path_.c_str(), &c->db, flags, nullptr) != SQLITE_OK) {
    error = "store.dir: cannot open " + path_ + ": " + c->error();
    return nullptr;
  }
  // Readers wait for the writer's checkpoints instead of failing with SQLITE_BUSY.
  sqlite3_busy_timeout(c->db, 5000);
  return c;
}

bool SqliteStore::open(std::string& error) {
  std::error_code ec;
  std::filesystem::create_directories(settings_.dir, ec);
  if (ec) {
    error = "store.dir: cannot create " + settings_.dir + ": " + ec.message();
    return false;
  }
  path_ = (std::filesystem::path(settings_.dir) / "herald.db").string();
  writer_ = open_conn(true, error);
  if (!writer_) return false;

  // WAL, then the sync mode; both read back: a setting SQLite silently ignored
  // would make the durability promise false.
  std::string mode;
  if (sqlite3_stmt* s = writer_->get("PRAGMA journal_mode=WAL"); s != nullptr && sqlite3_step(s) == SQLITE_ROW) {
    mode = col_text(s, 0);
    sqlite3_reset(s);
  }
  if (mode != "wal") {
    error = "store.dir: SQLite did not switch " + path_ + " to WAL mode (journal_mode=" + mode + ")";
    return false;
  }
  const int want = settings_.synchronous_full ? 2 : 1;
  if (!writer_->exec(settings_.synchronous_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL")) {
    error = "store.synchronous: " + writer_->error();
    return false;
  }
  int got = -1;
  if (sqlite3_stmt* s = writer_->get("PRAGMA synchronous"); s != nullptr && sqlite3_step(s) == SQLITE_ROW) {
    got = sqlite3_column_int(s, 0);
    sqlite3_reset(s);
  }
  if (got != want) {
    error = "store.synchronous: asked for " + std::string(want == 2 ? "FULL" : "NORMAL") +
            " but SQLite reports synchronous=" + std::to_string(got) + "; refusing to run";
    return false;
  }
  // Checkpoints stay small and regular; the WAL file does not grow without bound.
  writer_->exec("PRAGMA wal_autocheckpoint=4000");
  writer_->exec("PRAGMA cache_size=-65536");

  // Schema version and migrations, in one transaction.
  if (!writer_->exec("BEGIN IMMEDIATE") ||
      !writer_->exec("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)")) {
    error = "store.dir: " + path_ + ": " + writer_->error();
    return false;
  }
  int version = 0;
  bool has_row = false;
  if (sqlite3_stmt* s = writer_->get("SELECT version FROM schema_version"); s != nullptr) {
    if (sqlite3_step(s) == SQLITE_ROW) {
      version = sqlite3_column_int(s, 0);
      has_row = true;
    }
    sqlite3_reset(s);
  }
  if (version > kStoreSchemaVersion) {
    writer_->exec("ROLLBACK");
    error = "store.dir: " + path_ + " has schema version " + std::to_string(version) + ", newer than this heraldd (" +
            std::to_string(kStoreSchemaVersion) + ")";
    return false;
  }
  for (int v = version; v < kStoreSchemaVersion; ++v) {
    if (!writer_->exec(kMigrations[v])) {
      error = "store.dir: migrating " + path_ + " to version " + std::to_string(v + 1) + ": " + writer_->error();
      writer_->exec("ROLLBACK");
      return false;
    }
  }
  const char* set_version =
      has_row ? "UPDATE schema_version SET version = ?1" : "INSERT INTO schema_version(version) VALUES(?1)";
  sqlite3_stmt* s = writer_->get(set_version);
  if (s != nullptr) sqlite3_bind_int(s, 1, kStoreSchemaVersion);
  if (!step_done(s) || !writer_->exec("COMMIT")) {
    error = "store.dir: " + path_ + ": " + writer_->error();
    writer_->exec("ROLLBACK");
    return false;
  }
  return true;
}

bool SqliteStore::load_channels(std::vector<StoredChannel>& out, std::string& error) {
  sqlite3_stmt* s = writer_->get("SELECT name, epoch, last_offset, trimmed_to FROM channels");
  if (s == nullptr) {
    error = "store: " + writer_->error();
    return false;
  }
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    StoredChannel c;
    c.name = col_text(s, 0);
    c.epoch = col_text(s, 1);
    c.last_offset = static_cast<uint64_t>(sqlite3_column_int64(s, 2));
    c.trimmed_to = static_cast<uint64_t>(sqlite3_column_int64(s, 3));
    out.push_back(std::move(c));
  }
  sqlite3_reset(s);
  if (rc != SQLITE_DONE) {
    error = "store: reading channels: " + writer_->error();
    return false;
  }
  return true;
}

bool SqliteStore::fail(const char* what) {
  last_error_ = std::string(what) + ": " + writer_->error();
  return false;
}

std::string SqliteStore::last_error() const { return last_error_; }

bool SqliteStore::begin() { return writer_->exec("BEGIN IMMEDIATE") || fail("begin"); }

bool SqliteStore::commit() {
  if (writer_->exec("COMMIT")) return true;
  fail("commit");
  rollback();
  return false;
}

void SqliteStore::rollback() noexcept {
  // After some errors (SQLITE_FULL, SQLITE_IOERR) SQLite already rolled back.
  if (writer_ && sqlite3_get_autocommit(writer_->db) == 0) writer_->exec("ROLLBACK");
}

bool SqliteStore::put_message(const StoredMessage& m) {
  const v1::Publication& p = m.record->publication();
  if (m.replace_collapse_key && !p.collapse_key().empty()) {
    sqlite3_stmt* d = writer_->get("DELETE FROM messages WHERE channel = ?1 AND collapse_key = ?2 AND offset < ?3");
    if (d == nullptr) return fail("prepare collapse");
    bind_text(d, 1, p.channel());
    bind_text(d, 2, p.collapse_key());
    bind_u64(d, 3, p.offset());
    if (!step_done(d)) return fail("collapse");
  }
  sqlite3_stmt* s = writer_->get(
      "INSERT INTO messages(channel, offset, message_id, collapse_key, created_ms, retain_until_ms, expires_ms,"
      " dismiss, body) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
  if (s == nullptr) return fail("prepare insert");
  bind_text(s, 1, p.channel());
  bind_u64(s, 2, p.offset());
  bind_text(s, 3, p.message_id());
  bind_text(s, 4, p.collapse_key());
  bind_i64(s, 5, p.created_at_ms());
  bind_i64(s, 6, m.retain_until_ms);
  bind_i64(s, 7, m.record->expires_at_ms());
  sqlite3_bind_int(s, 8, p.dismiss_on_read() ? 1 : 0);
  const std::string& body = m.record->body();
  sqlite3_bind_blob(s, 9, body.data(), static_cast<int>(body.size()), SQLITE_STATIC);
  return step_done(s) || fail("insert message");
}

bool SqliteStore::put_channel(const StoredChannel& c) {
  sqlite3_stmt* s = writer_->get(
      "INSERT INTO channels(name, epoch, last_offset, trimmed_to) VALUES(?1, ?2, ?3, ?4)"
      " ON CONFLICT(name) DO UPDATE SET epoch = excluded.epoch, last_offset = excluded.last_offset,"
      " trimmed_to = max(trimmed_to, excluded.trimmed_to)");
  if (s == nullptr) return fail("prepare channel");
  bind_text(s, 1, c.name);
  bind_text(s, 2, c.epoch);
  bind_u64(s, 3, c.last_offset);
  bind_u64(s, 4, c.trimmed_to);
  return step_done(s) || fail("channel");
}

bool SqliteStore::put_device(std::string_view user, std::string_view device, int64_t now_ms) {
  sqlite3_stmt* s = writer_->get(
      "INSERT INTO devices(user, device, first_seen_ms, last_seen_ms) VALUES(?1, ?2, ?3, ?3)"
      " ON CONFLICT(user, device) DO UPDATE SET last_seen_ms = excluded.last_seen_ms");
  if (s == nullptr) return fail("prepare device");
  bind_text(s, 1, user);
  bind_text(s, 2, device);
  bind_i64(s, 3, now_ms);
  return step_done(s) || fail("device");
}

bool SqliteStore::record_sent(std::string_view channel, uint64_t offset, std::string_view device, int64_t now_ms) {
  sqlite3_stmt* s = writer_->get(
      "INSERT INTO deliveries(channel, offset, device, sent_ms) VALUES(?1, ?2, ?3, ?4)"
      " ON CONFLICT(channel, offset, device) DO UPDATE SET sent_ms = excluded.sent_ms WHERE sent_ms = 0");
  if (s == nullptr) return fail("prepare sent");
  bind_text(s, 1, channel);
  bind_u64(s, 2, offset);
  bind_text(s, 3, device);
  bind_i64(s, 4, now_ms);
  return step_done(s) || fail("sent");
}

bool SqliteStore::record_ack(std::string_view user, std::string_view device, std::string_view channel,
                             std::string_view epoch, uint64_t offset, int64_t now_ms,
                             std::vector<DismissNotice>& dismissed) {
  uint64_t old = 0;
  {
    sqlite3_stmt* s = writer_->get("SELECT epoch, acked_offset FROM cursors WHERE channel = ?1 AND device = ?2");
    if (s == nullptr) return fail("prepare cursor");
    bind_text(s, 1, channel);
    bind_text(s, 2, device);
    if (sqlite3_step(s) == SQLITE_ROW && col_text(s, 0) == epoch) old = static_cast<uint64_t>(sqlite3_column_int64(s, 1));
    sqlite3_reset(s);
  }
  if (offset <= old) return true;
  sqlite3_stmt* c = writer_->get(
      "INSERT INTO cursors(channel, device, epoch, acked_offset) VALUES(?1, ?2, ?3, ?4)"
      " ON CONFLICT(channel, device) DO UPDATE SET epoch = excluded.epoch, acked_offset = excluded.acked_offset");
  if (c == nullptr) return fail("prepare cursor update");
  bind_text(c, 1, channel);
  bind_text(c, 2, device);
  bind_text(c, 3, epoch);
  bind_u64(c, 4, offset);
  if (!step_done(c)) return fail("cursor update");

  sqlite3_stmt* d = writer_->get(
      "INSERT INTO deliveries(channel, offset, device, sent_ms, acked_ms)"
      " SELECT channel, offset, ?3, 0, ?5 FROM messages WHERE channel = ?1 AND offset > ?2 AND offset <= ?4"
      " ON CONFLICT(channel, offset, device) DO UPDATE SET acked_ms = excluded.acked_ms WHERE acked_ms = 0");
  if (d == nullptr) return fail("prepare ack");
  bind_text(d, 1, channel);
  bind_u64(d, 2, old);
  bind_text(d, 3, device);
  bind_u64(d, 4, offset);
  bind_i64(d, 5, now_ms);
  if (!step_done(d)) return fail("ack");

  sqlite3_stmt* q = writer_->get(
      "SELECT offset, message_id FROM messages WHERE channel = ?1 AND offset > ?2 AND offset <= ?3"
      " AND dismiss = 1 AND dismissed_ms = 0");
  if (q == nullptr) return fail("prepare dismiss");
  bind_text(q, 1, channel);
  bind_u64(q, 2, old);
  bind_u64(q, 3, offset);
  const size_t first = dismissed.size();
  int rc;
  while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
    dismissed.push_back(DismissNotice{std::string(user), std::string(device), std::string(channel),
                                      std::string(col_text(q, 1)), static_cast<uint64_t>(sqlite3_column_int64(q, 0))});
  }
  sqlite3_reset(q);
  if (rc != SQLITE_DONE) return fail("dismiss");
  if (dismissed.size() > first) {
    sqlite3_stmt* u = writer_->get(
        "UPDATE messages SET dismissed_ms = ?4 WHERE channel = ?1 AND offset > ?2 AND offset <= ?3"
        " AND dismiss = 1 AND dismissed_ms = 0");
    if (u == nullptr) return fail("prepare dismiss update");
    bind_text(u, 1, channel);
    bind_u64(u, 2, old);
    bind_u64(u, 3, offset);
    bind_i64(u, 4, now_ms);
    if (!step_done(u)) return fail("dismiss update");
  }
  return true;
}

long SqliteStore::trim_expired(int64_t now_ms, size_t limit, std::vector<std::pair<std::string, uint64_t>>& trimmed) {
  sqlite3_stmt* s = writer_->get(
      "SELECT channel, offset FROM messages WHERE retain_until_ms > 0 AND retain_until_ms <= ?1"
      " ORDER BY retain_until_ms LIMIT ?2");
  if (s == nullptr) { fail("prepare expired"); return -1; }
  bind_i64(s, 1, now_ms);
  bind_i64(s, 2, static_cast<int64_t>(limit));
  std::map<std::string, uint64_t> upto;  // channel -> highest expired offset
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    uint64_t& u = upto[std::string(col_text(s, 0))];
    u = std::max(u, static_cast<uint64_t>(sqlite3_column_int64(s, 1)));
  }
  sqlite3_reset(s);
  if (rc != SQLITE_DONE) { fail("expired"); return -1; }
  long n = 0;
  for (const auto& [channel, offset] : upto) {
    // Retention times grow with the offset within a channel, so everything up to
    // the highest expired offset has expired too: delete that prefix.
    uint64_t to = 0;
    const long d = trim_channel(channel, offset, limit, to);
    if (d < 0) return -1;
    trimmed.emplace_back(channel, to);
    n += d;
  }
  return n;
}

long SqliteStore::trim_channel(std::string_view channel, uint64_t keep_after, size_t limit, uint64_t& trimmed_to) {
  trimmed_to = 0;
  if (keep_after == 0) return 0;
  // The limit-th lowest offset <= keep_after bounds this step.
  uint64_t upto = keep_after;
  sqlite3_stmt* q = writer_->get(
      "SELECT offset FROM messages WHERE channel = ?1 AND offset <= ?2 ORDER BY offset LIMIT 1 OFFSET ?3");
  if (q == nullptr) { fail("prepare trim"); return -1; }
  bind_text(q, 1, channel);
  bind_u64(q, 2, keep_after);
  bind_i64(q, 3, static_cast<int64_t>(limit > 0 ? limit - 1 : 0));
  if (sqlite3_step(q) == SQLITE_ROW) upto = static_cast<uint64_t>(sqlite3_column_int64(q, 0));
  sqlite3_reset(q);
  sqlite3_stmt* d = writer_->get("DELETE FROM messages WHERE channel = ?1 AND offset <= ?2");
  if (d == nullptr) { fail("prepare trim delete"); return -1; }
  bind_text(d, 1, channel);
  bind_u64(d, 2, upto);
  if (!step_done(d)) { fail("trim delete"); return -1; }
  const long n = sqlite3_changes(writer_->db);
  sqlite3_stmt* dd = writer_->get("DELETE FROM deliveries WHERE channel = ?1 AND offset <= ?2");
  if (dd == nullptr) { fail("prepare trim deliveries"); return -1; }
  bind_text(dd, 1, channel);
  bind_u64(dd, 2, upto);
  if (!step_done(dd)) { fail("trim deliveries"); return -1; }
  sqlite3_stmt* c = writer_->get("UPDATE channels SET trimmed_to = max(trimmed_to, ?2) WHERE name = ?1");
  if (c == nullptr) { fail("prepare trim channel"); return -1; }
  bind_text(c, 1, channel);
  bind_u64(c, 2, upto);
  if (!step_done(c)) { fail("trim channel"); return -1; }
  trimmed_to = upto;
  return n;
}

SqliteStore::Reader SqliteStore::reader() {
  {
    std::lock_guard lock(readers_mu_);
    if (!idle_readers_.empty()) {
      auto c = std::move(idle_readers_.back());
      idle_readers_.pop_back();
      return Reader(this, std::move(c));
    }
  }
  std::string error;
  return Reader(this, open_conn(false, error));
}

bool SqliteStore::read_range(std::string_view channel, uint64_t after, uint64_t upto, int64_t now_ms,
                             std::vector<PublicationPtr>& out) {
  Reader r = reader();
  if (!r) return false;
  sqlite3_stmt* s = r->get(
      "SELECT body FROM messages WHERE channel = ?1 AND offset > ?2 AND offset <= ?3"
      " AND dismissed_ms = 0 AND (expires_ms = 0 OR expires_ms > ?4) ORDER BY offset");
  if (s == nullptr) return false;
  bind_text(s, 1, channel);
  bind_u64(s, 2, after);
  bind_u64(s, 3, upto);
  bind_i64(s, 4, now_ms);
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    v1::Publication p;
    if (!p.ParseFromArray(sqlite3_column_blob(s, 0), sqlite3_column_bytes(s, 0))) {
      sqlite3_reset(s);
      return false;
    }
    out.push_back(std::make_shared<const PublicationRecord>(std::move(p)));
  }
  sqlite3_reset(s);
  return rc == SQLITE_DONE;
}

bool SqliteStore::find_message_id(std::string_view channel, std::string_view message_id, int64_t since_ms,
                                  uint64_t& offset, std::string& epoch, bool& found) {
  found = false;
  Reader r = reader();
  if (!r) return false;
  sqlite3_stmt* s = r->get(
      "SELECT m.offset, c.epoch FROM messages m JOIN channels c ON c.name = m.channel"
      " WHERE m.message_id = ?2 AND m.channel = ?1 AND m.created_ms >= ?3 ORDER BY m.offset LIMIT 1");
  if (s == nullptr) return false;
  bind_text(s, 1, channel);
  bind_text(s, 2, message_id);
  bind_i64(s, 3, since_ms);
  const int rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) {
    found = true;
    offset = static_cast<uint64_t>(sqlite3_column_int64(s, 0));
    epoch = col_text(s, 1);
  }
  sqlite3_reset(s);
  return rc == SQLITE_ROW || rc == SQLITE_DONE;
}

bool SqliteStore::ack_cursor(std::string_view channel, std::string_view device, std::string& epoch,
                             uint64_t& offset) {
  epoch.clear();
  offset = 0;
  Reader r = reader();
  if (!r) return false;
  sqlite3_stmt* s = r->get("SELECT epoch, acked_offset FROM cursors WHERE channel = ?1 AND device = ?2");
  if (s == nullptr) return false;
  bind_text(s, 1, channel);
  bind_text(s, 2, device);
  const int rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) {
    epoch = col_text(s, 0);
    offset = static_cast<uint64_t>(sqlite3_column_int64(s, 1));
  }
  sqlite3_reset(s);
  return rc == SQLITE_ROW || rc == SQLITE_DONE;
}

bool SqliteStore::receipts(std::string_view message_id, int64_t now_ms, std::vector<MessageReceipt>& out) {
  Reader r = reader();
  if (!r) return false;
  sqlite3_stmt* m = r->get(
      "SELECT m.channel, m.offset, c.epoch, m.created_ms, m.expires_ms, m.dismiss, m.dismissed_ms"
      " FROM messages m JOIN channels c ON c.name = m.channel WHERE m.message_id = ?1 ORDER BY m.channel, m.offset"
      " LIMIT 10000");
  if (m == nullptr || message_id.empty()) return m != nullptr;
  bind_text(m, 1, message_id);
  struct Row {
    MessageReceipt r;
    int64_t dismissed_ms;
  };
  std::vector<Row> rows;
  int rc;
  while ((rc = sqlite3_step(m)) == SQLITE_ROW) {
    Row row;
    row.r.channel = col_text(m, 0);
    row.r.offset = static_cast<uint64_t>(sqlite3_column_int64(m, 1));
    row.r.epoch = col_text(m, 2);
    row.r.message_id = std::string(message_id);
    row.r.created_ms = sqlite3_column_int64(m, 3);
    row.r.expires_ms = sqlite3_column_int64(m, 4);
    row.r.dismiss_on_read = sqlite3_column_int(m, 5) != 0;
    row.dismissed_ms = sqlite3_column_int64(m, 6);
    rows.push_back(std::move(row));
  }
  sqlite3_reset(m);
  if (rc != SQLITE_DONE) return false;

  for (Row& row : rows) {
    // Devices: every known device of the channel's user (personal channels), plus
    // every device that has a delivery row.
    std::map<std::string, DeviceReceipt> devices;
    constexpr std::string_view kUserPrefix = "user:";
    if (row.r.channel.starts_with(kUserPrefix)) {
      sqlite3_stmt* d = r->get("SELECT device FROM devices WHERE user = ?1");
      if (d == nullptr) return false;
      bind_text(d, 1, std::string_view(row.r.channel).substr(kUserPrefix.size()));
      while (sqlite3_step(d) == SQLITE_ROW) {
        const std::string dev(col_text(d, 0));
        devices[dev].device = dev;
      }
      sqlite3_reset(d);
    }
    sqlite3_stmt* q = r->get("SELECT device, sent_ms, acked_ms FROM deliveries WHERE channel = ?1 AND offset = ?2");
    if (q == nullptr) return false;
    bind_text(q, 1, row.r.channel);
    bind_u64(q, 2, row.r.offset);
    while (sqlite3_step(q) == SQLITE_ROW) {
      const std::string dev(col_text(q, 0));
      DeviceReceipt& dr = devices[dev];
      dr.device = dev;
      dr.sent_ms = sqlite3_column_int64(q, 1);
      dr.acked_ms = sqlite3_column_int64(q, 2);
    }
    sqlite3_reset(q);
    for (auto& [dev, dr] : devices) {
      if (dr.acked_ms > 0) {
        dr.state = "acked";
      } else if (row.dismissed_ms > 0) {
        dr.state = "dismissed";
        dr.dismissed_ms = row.dismissed_ms;
      } else if (row.r.expires_ms > 0 && now_ms >= row.r.expires_ms) {
        dr.state = "expired";
      } else if (dr.sent_ms > 0) {
        dr.state = "sent";
      } else {
        dr.state = "pending";
      }
      row.r.devices.push_back(std::move(dr));
    }
    out.push_back(std::move(row.r));
  }
  return true;
}

std::string SqliteStore::integrity_check() {
  Reader r = reader();
  if (!r) return "cannot open a reader connection";
  std::string result;
  sqlite3_stmt* s = r->get("PRAGMA integrity_check");
  if (s == nullptr) return "PRAGMA integrity_check: " + r->error();
  while (sqlite3_step(s) == SQLITE_ROW) {
    if (!result.empty()) result += "\n";
    result += col_text(s, 0);
  }
  sqlite3_reset(s);
  return result.empty() ? "no answer" : result;
}

}  // namespace herald::server
