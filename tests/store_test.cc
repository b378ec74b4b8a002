// Unit tests of the durable path without sockets: SqliteStore on real SQLite files
// (pragmas, migrations, collapse, retention, acks and dismiss, receipts), and the
// ChannelHub over a DurableHistory: answers after commit, delivery after commit,
// failed commits refused with their offsets released, dedup of pending messages.
#include <gtest/gtest.h>

#include <sqlite3.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>

#include "server/channel_hub.h"
#include "server/durable_history.h"
#include "server/memory_history.h"
#include "server/sqlite_store.h"

namespace herald::server {
namespace {

using codec::Status;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/herald-store-test-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

PublicationPtr record(const std::string& channel, uint64_t offset, const std::string& id = "",
                      const std::string& key = "", bool dismiss = false, uint32_t ttl_s = 0, int64_t created = 1000) {
  v1::Publication p;
  p.set_channel(channel);
  p.set_offset(offset);
  p.set_epoch("e1");
  p.set_message_id(id);
  p.set_collapse_key(key);
  p.set_dismiss_on_read(dismiss);
  p.set_ttl_s(ttl_s);
  p.set_created_at_ms(created);
  p.set_payload("x" + std::to_string(offset));
  return std::make_shared<const PublicationRecord>(std::move(p));
}

std::vector<uint64_t> offsets(const std::vector<PublicationPtr>& v) {
  std::vector<uint64_t> o;
  for (const auto& p : v) o.push_back(p->offset());
  return o;
}

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SqliteSettings s;
    s.dir = dir_.path() + "/data";
    store_ = std::make_unique<SqliteStore>(s);
    std::string error;
    ASSERT_TRUE(store_->open(error)) << error;
  }
  void put(const PublicationPtr& r, int64_t retain_until = 0) {
    ASSERT_TRUE(store_->begin());
    StoredMessage m{r, retain_until, true};
    ASSERT_TRUE(store_->put_message(m)) << store_->last_error();
    ASSERT_TRUE(store_->put_channel({r->channel(), "e1", r->offset(), 0})) << store_->last_error();
    ASSERT_TRUE(store_->commit()) << store_->last_error();
  }
  TempDir dir_;
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(SqliteStoreTest, OpensInWalModeWithTheAskedSyncModeAndAVersionedSchema) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_.path() + "/data/herald.db").c_str(), &db), SQLITE_OK);
  auto one = [&](const char* sql) {
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db, sql, -1, &s, nullptr);
    std::string v = sqlite3_step(s) == SQLITE_ROW ? reinterpret_cast<const char*>(sqlite3_column_text(s, 0)) : "";
    sqlite3_finalize(s);
    return v;
  };
  EXPECT_EQ(one("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(one("SELECT version FROM schema_version"), std::to_string(kStoreSchemaVersion));
  sqlite3_close(db);
  // Opening again keeps the schema (no second migration).
  SqliteSettings s;
  s.dir = dir_.path() + "/data";
  s.synchronous_full = false;
  SqliteStore again(s);
  std::string error;
  EXPECT_TRUE(again.open(error)) << error;
}

TEST_F(SqliteStoreTest, ReadsRangesInOrderSkippingExpiredAndCollapsed) {
  put(record("c", 1, "a", "k"));
  put(record("c", 2, "b", "", false, 1, 1000));  // expires at 2000
  put(record("c", 3, "c", "k"));                  // replaces offset 1
  put(record("c", 4, "d"));
  std::vector<PublicationPtr> out;
  ASSERT_TRUE(store_->read_range("c", 0, 4, 1500, out));
  EXPECT_EQ(offsets(out), (std::vector<uint64_t>{2, 3, 4}));
  out.clear();
  ASSERT_TRUE(store_->read_range("c", 0, 4, 2500, out));
  EXPECT_EQ(offsets(out), (std::vector<uint64_t>{3, 4}));
  out.clear();
  ASSERT_TRUE(store_->read_range("c", 3, 3, 0, out));
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(out.size(), 0u);
  out.clear();
  ASSERT_TRUE(store_->read_range("c", 3, 4, 0, out));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0]->payload(), "x4");
}

TEST_F(SqliteStoreTest, FindsMessageIdsWithinTheWindow) {
  put(record("c", 1, "pay-1", "", false, 0, 5000));
  uint64_t offset = 0;
  std::string epoch;
  bool found = false;
  ASSERT_TRUE(store_->find_message_id("c", "pay-1", 4000, offset, epoch, found));
  EXPECT_TRUE(found);
  EXPECT_EQ(offset, 1u);
  EXPECT_EQ(epoch, "e1");
  ASSERT_TRUE(store_->find_message_id("c", "pay-1", 6000, offset, epoch, found));
  EXPECT_FALSE(found);  // older than the window
  ASSERT_TRUE(store_->find_message_id("other", "pay-1", 0, offset, epoch, found));
  EXPECT_FALSE(found);  // ids are per channel
}

TEST_F(SqliteStoreTest, RetentionDeletesPrefixesAndRaisesTrimmedTo) {
  for (uint64_t i = 1; i <= 10; ++i) put(record("c", i), i <= 4 ? 100 : 0);
  ASSERT_TRUE(store_->begin());
  std::vector<std::pair<std::string, uint64_t>> trimmed;
  EXPECT_EQ(store_->trim_expired(200, 100, trimmed), 4);
  ASSERT_EQ(trimmed.size(), 1u);
  EXPECT_EQ(trimmed[0], (std::pair<std::string, uint64_t>{"c", 4}));
  uint64_t to = 0;
  EXPECT_EQ(store_->trim_channel("c", 7, 2, to), 2);  // a small step: offsets 5 and 6
  EXPECT_EQ(to, 6u);
  EXPECT_EQ(store_->trim_channel("c", 7, 2, to), 1);
  EXPECT_EQ(to, 7u);
  ASSERT_TRUE(store_->commit());
  std::vector<StoredChannel> channels;
  std::string error;
  ASSERT_TRUE(store_->load_channels(channels, error));
  ASSERT_EQ(channels.size(), 1u);
  EXPECT_EQ(channels[0].trimmed_to, 7u);
  EXPECT_EQ(channels[0].last_offset, 10u);
  std::vector<PublicationPtr> out;
  ASSERT_TRUE(store_->read_range("c", 0, 10, 0, out));
  EXPECT_EQ(offsets(out), (std::vector<uint64_t>{8, 9, 10}));
}

TEST_F(SqliteStoreTest, AcksMoveTheCursorMarkReceiptsAndDismissOnce) {
  put(record("user:u", 1, "m1"));
  put(record("user:u", 2, "m2", "", true));
  put(record("user:u", 3, "m3", "", false, 1, 1000));
  ASSERT_TRUE(store_->begin());
  ASSERT_TRUE(store_->put_device("u", "phone", 10));
  ASSERT_TRUE(store_->put_device("u", "desktop", 10));
  ASSERT_TRUE(store_->record_sent("user:u", 1, "phone", 20));
  ASSERT_TRUE(store_->record_sent("user:u", 2, "phone", 20));
  std::vector<DismissNotice> dismissed;
  ASSERT_TRUE(store_->record_ack("u", "desktop", "user:u", "e1", 2, 30, dismissed));
  ASSERT_TRUE(store_->record_ack("u", "desktop", "user:u", "e1", 1, 40, dismissed));  // lower: ignored
  ASSERT_TRUE(store_->commit());
  ASSERT_EQ(dismissed.size(), 1u);
  EXPECT_EQ(dismissed[0].message_id, "m2");
  EXPECT_EQ(dismissed[0].device, "desktop");
  EXPECT_EQ(dismissed[0].user, "u");

  std::string epoch;
  uint64_t cursor = 0;
  ASSERT_TRUE(store_->ack_cursor("user:u", "desktop", epoch, cursor));
  EXPECT_EQ(epoch, "e1");
  EXPECT_EQ(cursor, 2u);

  auto state = [&](const std::string& id, const std::string& device, int64_t now) {
    std::vector<MessageReceipt> rs;
    EXPECT_TRUE(store_->receipts(id, now, rs));
    for (const auto& r : rs)
      for (const auto& d : r.devices)
        if (d.device == device) return d.state;
    return std::string("none");
  };
  EXPECT_EQ(state("m1", "phone", 50), "sent");
  EXPECT_EQ(state("m1", "desktop", 50), "acked");
  EXPECT_EQ(state("m2", "phone", 50), "dismissed");
  EXPECT_EQ(state("m2", "desktop", 50), "acked");
  EXPECT_EQ(state("m3", "phone", 50), "pending");
  EXPECT_EQ(state("m3", "phone", 5000), "expired");
  std::vector<MessageReceipt> none;
  ASSERT_TRUE(store_->receipts("nope", 0, none));
  EXPECT_TRUE(none.empty());

  // Dismissed messages leave the inbox.
  std::vector<PublicationPtr> out;
  ASSERT_TRUE(store_->read_range("user:u", 0, 3, 50, out));
  EXPECT_EQ(offsets(out), (std::vector<uint64_t>{1, 3}));
  EXPECT_EQ(store_->integrity_check(), "ok");
}

TEST(SqliteStoreOpen, RefusesANewerSchemaAndAnUncreatableDirectory) {
  TempDir dir;
  {
    SqliteSettings s;
    s.dir = dir.path();
    SqliteStore st(s);
    std::string error;
    ASSERT_TRUE(st.open(error)) << error;
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir.path() + "/herald.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE schema_version SET version = 7", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  SqliteSettings s;
  s.dir = dir.path();
  SqliteStore st(s);
  std::string error;
  EXPECT_FALSE(st.open(error));
  EXPECT_NE(error.find("schema version 7"), std::string::npos) << error;

  SqliteSettings bad;
  bad.dir = "/proc/no-such-dir/x";
  SqliteStore nowhere(bad);
  EXPECT_FALSE(nowhere.open(error));
  EXPECT_EQ(error.rfind("store.dir: ", 0), 0u) << error;
}

// A Store whose commits fail while `fail` is set (the SQLite one underneath).
class FlakyStore final : public Store {
 public:
  explicit FlakyStore(Store& s) : s_(s) {}
  std::atomic<bool> fail{false};
  bool open(std::string& e) override { return s_.open(e); }
  bool load_channels(std::vector<StoredChannel>& o, std::string& e) override { return s_.load_channels(o, e); }
  bool begin() override { return s_.begin(); }
  bool commit() override {
    if (fail.load()) {
      s_.rollback();
      return false;
    }
    return s_.commit();
  }
  void rollback() noexcept override { s_.rollback(); }
  bool put_message(const StoredMessage& m) override { return s_.put_message(m); }
  bool put_channel(const StoredChannel& c) override { return s_.put_channel(c); }
  bool put_device(std::string_view u, std::string_view d, int64_t n) override { return s_.put_device(u, d, n); }
  bool record_sent(std::string_view c, uint64_t o, std::string_view d, int64_t n) override {
    return s_.record_sent(c, o, d, n);
  }
  bool record_ack(std::string_view u, std::string_view d, std::string_view c, std::string_view e, uint64_t o,
                  int64_t n, std::vector<DismissNotice>& out) override {
    return s_.record_ack(u, d, c, e, o, n, out);
  }
  long trim_expired(int64_t n, size_t l, std::vector<std::pair<std::string, uint64_t>>& t) override {
    return s_.trim_expired(n, l, t);
  }
  long trim_channel(std::string_view c, uint64_t k, size_t l, uint64_t& t) override { return s_.trim_channel(c, k, l, t); }
  std::string last_error() const override { return fail ? "injected failure" : s_.last_error(); }
  bool read_range(std::string_view c, uint64_t a, uint64_t u, int64_t n, std::vector<PublicationPtr>& o) override {
    return s_.read_range(c, a, u, n, o);
  }
  bool find_message_id(std::string_view c, std::string_view m, int64_t s, uint64_t& o, std::string& e,
                       bool& f) override {
    return s_.find_message_id(c, m, s, o, e, f);
  }
  bool ack_cursor(std::string_view c, std::string_view d, std::string& e, uint64_t& o) override {
    return s_.ack_cursor(c, d, e, o);
  }
  bool receipts(std::string_view m, int64_t n, std::vector<MessageReceipt>& o) override { return s_.receipts(m, n, o); }
  std::string integrity_check() override { return s_.integrity_check(); }

 private:
  Store& s_;
};

class Sink final : public DeliverySink {
 public:
  void deliver(size_t, const PublicationPtr& p, uint32_t) noexcept override {
    std::lock_guard lock(mu);
    got.push_back(p->offset());
  }
  std::vector<uint64_t> take() {
    std::lock_guard lock(mu);
    return std::exchange(got, {});
  }
  std::mutex mu;
  std::vector<uint64_t> got;
};

class DurableHubTest : public ::testing::Test {
 protected:
  void SetUp() override { open(); }
  void TearDown() override { close(); }
  void open() {
    SqliteSettings s;
    s.dir = dir_.path();
    sqlite_ = std::make_unique<SqliteStore>(s);
    std::string error;
    ASSERT_TRUE(sqlite_->open(error)) << error;
    flaky_ = std::make_unique<FlakyStore>(*sqlite_);
    DurableSettings ds;
    ds.dedup_lookback_until_ms = INT64_MAX;
    durable_ = std::make_unique<DurableHistory>(*flaky_, ds);
    ASSERT_TRUE(durable_->load(error)) << error;
    hub_ = std::make_unique<ChannelHub>(1, memory_, sink_,
                                        [](std::string_view) {
                                          ChannelOptions o;
                                          o.durable = true;
                                          o.history_ttl_s = 0;
                                          return o;
                                        },
                                        60'000);
    hub_->set_durable(durable_.get());
    durable_->start([this](const PublicationPtr& r, bool ok) { hub_->on_committed(r, ok); },
                    [](std::vector<DismissNotice>&&) {});
  }
  void close() {
    if (durable_) durable_->stop();
    hub_.reset();
    durable_.reset();
    flaky_.reset();
    sqlite_.reset();
  }
  PublishDraft draft(const std::string& id = "") {
    PublishDraft d;
    d.channel = "dur:c";
    d.message_id = id;
    d.payload = "p";
    return d;
  }
  TempDir dir_;
  MemoryHistory memory_;
  Sink sink_;
  std::unique_ptr<SqliteStore> sqlite_;
  std::unique_ptr<FlakyStore> flaky_;
  std::unique_ptr<DurableHistory> durable_;
  std::unique_ptr<ChannelHub> hub_;
  std::vector<PublicationPtr> replay_;
};

TEST_F(DurableHubTest, AnswersAndDeliversOnlyAfterTheCommit) {
  ASSERT_EQ(hub_->subscribe(0, "dur:c", false, "", 0, 0, replay_).status, Status::kOk);
  std::mutex mu;
  std::condition_variable cv;
  std::vector<PublishOutcome> answers;
  for (int i = 0; i < 5; ++i) {
    PublishOutcome now;
    const bool immediate = hub_->publish(draft(), 1000, 0,
                                         [&](const PublishOutcome& o) {
                                           // At answer time the publication is stored and delivered.
                                           std::vector<PublicationPtr> stored;
                                           sqlite_->read_range("dur:c", o.offset - 1, o.offset, 0, stored);
                                           EXPECT_EQ(stored.size(), 1u);
                                           std::lock_guard lock(mu);
                                           answers.push_back(o);
                                           cv.notify_all();
                                         },
                                         now);
    EXPECT_FALSE(immediate);
  }
  EXPECT_TRUE(hub_->may_defer("dur:c"));  // so a caller must give `done`
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(5), [&] { return answers.size() == 5; }));
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(answers[i].status, Status::kOk);
    EXPECT_EQ(answers[i].offset, i + 1);
  }
  EXPECT_EQ(sink_.take(), (std::vector<uint64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(durable_->position("dur:c").offset, 5u);
}

TEST_F(DurableHubTest, AFailedCommitIsRefusedReleasesItsOffsetsAndNothingIsDelivered) {
  ASSERT_EQ(hub_->subscribe(0, "dur:c", false, "", 0, 0, replay_).status, Status::kOk);
  EXPECT_EQ(hub_->publish(draft("a"), 1000, 0).offset, 1u);
  flaky_->fail = true;
  const PublishOutcome refused = hub_->publish(draft("b"), 1000, 0);
  EXPECT_EQ(refused.status, Status::kStorageUnavailable);
  flaky_->fail = false;
  // The offset was not used; the refused id was not remembered (a retry publishes).
  const PublishOutcome retry = hub_->publish(draft("b"), 1000, 0);
  EXPECT_EQ(retry.status, Status::kOk);
  EXPECT_FALSE(retry.duplicate);
  EXPECT_EQ(retry.offset, 2u);
  EXPECT_EQ(sink_.take(), (std::vector<uint64_t>{1, 2}));
  std::vector<PublicationPtr> stored;
  ASSERT_TRUE(sqlite_->read_range("dur:c", 0, 10, 0, stored));
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(stored[1]->publication().message_id(), "b");
}

TEST_F(DurableHubTest, DuplicatesOfAPendingMessageAreAnsweredAfterItsCommit) {
  std::atomic<int> answered{0};
  PublishOutcome first, second;
  PublishOutcome now;
  EXPECT_FALSE(hub_->publish(draft("same"), 1000, 0, [&](const PublishOutcome& o) {
    first = o;
    ++answered;
  }, now));
  const bool immediate =
      hub_->publish(draft("same"), 1000, 0, [&](const PublishOutcome& o) {
        second = o;
        ++answered;
      }, now);
  if (immediate) {
    second = now;  // the first was already committed
    ++answered;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (answered.load() < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  ASSERT_EQ(answered.load(), 2);
  EXPECT_EQ(first.status, Status::kOk);
  EXPECT_FALSE(first.duplicate);
  EXPECT_TRUE(second.duplicate);
  EXPECT_EQ(second.offset, first.offset);
}

TEST_F(DurableHubTest, OffsetsEpochsAndIdsSurviveReopening) {
  const PublishOutcome a = hub_->publish(draft("x"), 1000, 0);
  ASSERT_EQ(a.status, Status::kOk);
  close();
  open();
  const PublishOutcome dup = hub_->publish(draft("x"), 1000, 0);
  EXPECT_TRUE(dup.duplicate);
  EXPECT_EQ(dup.offset, a.offset);
  EXPECT_EQ(dup.epoch, a.epoch);
  const PublishOutcome b = hub_->publish(draft("y"), 1000, 0);
  EXPECT_EQ(b.offset, a.offset + 1);
  EXPECT_EQ(b.epoch, a.epoch);
  const SubscribeOutcome s = hub_->subscribe(0, "dur:c", true, a.epoch, 0, 0, replay_);
  EXPECT_TRUE(s.recovered);
  EXPECT_TRUE(s.durable);
  EXPECT_EQ(offsets(replay_), (std::vector<uint64_t>{1, 2}));
  EXPECT_FALSE(hub_->subscribe(0, "dur:c", true, "other", 0, 0, replay_).recovered);
  EXPECT_TRUE(replay_.empty());
}

}  // namespace
}  // namespace herald::server

namespace herald::server {
namespace {

// store.commit_max_bytes: a transaction holds at most that many publication bytes
// (always at least one write), so a burst is committed in several bounded transactions,
// in order; with no bound the same burst is one transaction.
TEST(DurableCommitBytes, TransactionsAreBoundedInBytesAndKeepTheirOrder) {
  for (const size_t max_bytes : {size_t{4096}, size_t{0}}) {
    TempDir dir;
    SqliteSettings s;
    s.dir = dir.path();
    SqliteStore store(s);
    std::string error;
    ASSERT_TRUE(store.open(error)) << error;
    DurableSettings ds;
    ds.commit_window_us = 1'000'000;  // everything below arrives within one window (waited out only without a bound)
    ds.commit_max_bytes = max_bytes;
    DurableHistory durable(store, ds);
    ASSERT_TRUE(durable.load(error)) << error;
    std::mutex mu;
    std::condition_variable cv;
    std::vector<uint64_t> committed;
    durable.start(
        [&](const PublicationPtr& r, bool ok) {
          EXPECT_TRUE(ok);
          durable.make_visible(*r);
          std::lock_guard lock(mu);
          committed.push_back(r->offset());
          cv.notify_all();
        },
        [](std::vector<DismissNotice>&&) {});
    ChannelOptions o;
    o.durable = true;
    size_t body = 0;
    for (int i = 0; i < 40; ++i) {
      v1::Publication p;
      p.set_channel("dur:bytes");
      p.set_payload(std::string(1000, 'x'));
      body = durable.append(std::move(p), o, 1000)->body().size();
    }
    {
      std::unique_lock lock(mu);
      ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return committed.size() == 40; }));
    }
    std::vector<uint64_t> in_order(40);
    for (uint64_t i = 0; i < 40; ++i) in_order[i] = i + 1;
    EXPECT_EQ(committed, in_order);
    const DurableStats st = durable.stats();
    durable.stop();
    if (max_bytes > 0) {
      EXPECT_EQ(st.max_batch, max_bytes / body) << "body " << body;
      EXPECT_GE(st.commits, 40 / (max_bytes / body));
    } else {
      EXPECT_EQ(st.commits, 1u);
      EXPECT_EQ(st.max_batch, 40u);
    }
  }
}

}  // namespace
}  // namespace herald::server
