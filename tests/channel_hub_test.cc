// ChannelHub with MemoryHistory: offsets, epochs, dedup, resume, per-loop delivery,
// validation, idle channels, and the subscriber contract under concurrent publish/subscribe.
#include "server/channel_hub.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <barrier>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "server/memory_history.h"

namespace herald::server {
namespace {

using codec::Status;

// Stands in for the loops' MPSC queues: one FIFO per loop.
class QueueSink final : public DeliverySink {
 public:
  explicit QueueSink(size_t loops) : queues_(loops) {}
  void deliver(size_t loop, const PublicationPtr& publication, uint32_t subscribers) noexcept override {
    std::lock_guard lock(mu_);
    queues_[loop].push_back(publication);
    last_subscribers_[loop] = subscribers;
  }
  // The `subscribers` of the last delivery to `loop` (0 if none yet).
  uint32_t last_subscribers(size_t loop) {
    std::lock_guard lock(mu_);
    return last_subscribers_[loop];
  }
  // Everything queued for `loop` so far, oldest first; empties the queue.
  std::vector<PublicationPtr> take(size_t loop) {
    std::lock_guard lock(mu_);
    std::vector<PublicationPtr> out(queues_[loop].begin(), queues_[loop].end());
    queues_[loop].clear();
    return out;
  }
  std::vector<uint64_t> take_offsets(size_t loop) {
    std::vector<uint64_t> out;
    for (const auto& p : take(loop)) out.push_back(p->offset());
    return out;
  }

 private:
  std::mutex mu_;
  std::vector<std::deque<PublicationPtr>> queues_;
  std::map<size_t, uint32_t> last_subscribers_;
};

// A History that can be told to fail appends (a full disk, in the durable store).
class FlakyHistory final : public History {
 public:
  bool fail = false;
  using History::append;  // the slot overload: forwards here, without the slot
  PublicationPtr append(v1::Publication&& draft, const ChannelOptions& o, int64_t now) override {
    return fail ? nullptr : inner.append(std::move(draft), o, now);
  }
  bool read_since(std::string_view c, std::string_view e, uint64_t off, int64_t now,
                  std::vector<PublicationPtr>& out) override {
    return inner.read_since(c, e, off, now, out);
  }
  ChannelPosition position(std::string_view c) override { return inner.position(c); }
  MemoryHistory inner;
};

PublishDraft draft(std::string channel, std::string message_id = "", std::string payload = "x") {
  PublishDraft d;
  d.channel = std::move(channel);
  d.message_id = std::move(message_id);
  d.payload = std::move(payload);
  return d;
}

std::vector<uint64_t> offsets_of(const std::vector<PublicationPtr>& v) {
  std::vector<uint64_t> out;
  for (const auto& p : v) out.push_back(p->offset());
  return out;
}

constexpr uint64_t kWindow = 300'000;

struct Fixture : ::testing::Test {
  ChannelOptions options{100, 300};
  QueueSink sink{2};
  MemoryHistory history;
  ChannelHub hub{2, history, sink, [this](std::string_view) { return options; }, kWindow};
  std::vector<PublicationPtr> replay;
};

using ChannelHubTest = Fixture;

// Live channels are answered at once: a publisher needs no callback for them.
TEST_F(ChannelHubTest, LiveChannelsNeverDefer) {
  EXPECT_FALSE(hub.may_defer("c"));
  options.durable = true;  // durable, but no durable History was set: kept live
  EXPECT_FALSE(hub.may_defer("c"));
  PublishOutcome out;
  EXPECT_TRUE(hub.publish(draft("c"), 0, 0, {}, out));
  EXPECT_EQ(out.status, Status::kOk);
}

TEST_F(ChannelHubTest, OffsetsCountFromOnePerChannel) {
  EXPECT_EQ(hub.publish(draft("a"), 0, 0).offset, 1u);
  EXPECT_EQ(hub.publish(draft("a"), 0, 0).offset, 2u);
  EXPECT_EQ(hub.publish(draft("b"), 0, 0).offset, 1u);
  EXPECT_EQ(hub.publish(draft("a"), 0, 0).offset, 3u);
  EXPECT_EQ(hub.publish(draft("b"), 0, 0).offset, 2u);
  EXPECT_EQ(history.position("a").offset, 3u);
  EXPECT_EQ(hub.stats().publishes, 5u);
}

TEST_F(ChannelHubTest, EpochIsStableWithinTheProcessAndEightHexDigits) {
  const PublishOutcome first = hub.publish(draft("news"), 0, 0);
  ASSERT_EQ(first.status, Status::kOk);
  ASSERT_EQ(first.epoch.size(), 8u);
  EXPECT_EQ(first.epoch.find_first_not_of("0123456789abcdef"), std::string::npos);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(hub.publish(draft("news"), i, i).epoch, first.epoch);
  EXPECT_EQ(history.position("news").epoch, first.epoch);
  // Another process (another MemoryHistory) starts the channel in a new epoch.
  MemoryHistory restarted;
  v1::Publication p;
  p.set_channel("news");
  EXPECT_NE(restarted.append(std::move(p), options, 0)->epoch(), first.epoch);
}

TEST_F(ChannelHubTest, PublicationCarriesTheDraftAndClampsPriority) {
  hub.subscribe(0, "c", false, "", 0, 0, replay);
  PublishDraft d = draft("c", "id-1", "{\"a\":1}");
  d.type = "order_filled";
  d.content_type = "application/json";
  d.collapse_key = "ord-7";
  d.ttl_s = 30;
  d.dismiss_on_read = true;
  d.priority = 0;
  ASSERT_EQ(hub.publish(d, 1'700'000'000'000, 5).status, Status::kOk);
  d.message_id = "id-2";
  d.priority = 7;
  ASSERT_EQ(hub.publish(d, 0, 5).status, Status::kOk);
  d.message_id = "id-3";
  d.priority = -1;
  ASSERT_EQ(hub.publish(d, 0, 5).status, Status::kOk);
  const auto got = sink.take(0);
  ASSERT_EQ(got.size(), 3u);
  const v1::Publication& p = got[0]->publication();
  EXPECT_EQ(p.channel(), "c");
  EXPECT_EQ(p.offset(), 1u);
  EXPECT_EQ(p.message_id(), "id-1");
  EXPECT_EQ(p.type(), "order_filled");
  EXPECT_EQ(p.content_type(), "application/json");
  EXPECT_EQ(p.collapse_key(), "ord-7");
  EXPECT_EQ(p.ttl_s(), 30u);
  EXPECT_TRUE(p.dismiss_on_read());
  EXPECT_TRUE(p.payload().empty());  // kept once, in the body
  EXPECT_EQ(got[0]->payload(), "{\"a\":1}");
  EXPECT_EQ(p.created_at_ms(), 1'700'000'000'000);
  EXPECT_EQ(p.priority(), v1::P0);
  EXPECT_EQ(got[1]->priority(), v1::P3);
  EXPECT_EQ(got[2]->priority(), v1::P3);
}

// A history keeps many publications: one without id, type, collapse key or content
// type holds no string for them (protobuf allocates one for every field set, "" too).
TEST_F(ChannelHubTest, EmptyFieldsCostAPublicationNoMemory) {
  hub.subscribe(0, "c", false, "", 0, 0, replay);
  ASSERT_EQ(hub.publish(draft("c", "", "x"), 0, 5).status, Status::kOk);
  const auto got = sink.take(0);
  ASSERT_EQ(got.size(), 1u);
  v1::Publication bare;
  bare.set_channel("c");
  bare.set_epoch(got[0]->epoch());
  EXPECT_EQ(got[0]->publication().SpaceUsedLong(), bare.SpaceUsedLong());
  v1::Publication with_empty = bare;
  with_empty.set_type("");
  EXPECT_GT(with_empty.SpaceUsedLong(), bare.SpaceUsedLong());  // what the test guards against
}

TEST_F(ChannelHubTest, DuplicateReturnsOriginalAndNeitherStoresNorDelivers) {
  hub.subscribe(1, "orders", false, "", 0, 0, replay);
  const PublishOutcome first = hub.publish(draft("orders", "m-1"), 0, 1000);
  ASSERT_EQ(first.status, Status::kOk);
  EXPECT_FALSE(first.duplicate);
  EXPECT_EQ(hub.publish(draft("orders", "m-2"), 0, 1000).offset, 2u);
  EXPECT_EQ(sink.take_offsets(1), (std::vector<uint64_t>{1, 2}));

  const PublishOutcome dup = hub.publish(draft("orders", "m-1", "other payload"), 0, 2000);
  EXPECT_EQ(dup.status, Status::kOk);
  EXPECT_TRUE(dup.duplicate);
  EXPECT_EQ(dup.offset, 1u);
  EXPECT_EQ(dup.epoch, first.epoch);
  EXPECT_TRUE(sink.take(1).empty());
  EXPECT_EQ(history.position("orders").offset, 2u);
  EXPECT_EQ(history.stats().publications, 2u);
  EXPECT_EQ(hub.publish(draft("orders", "m-3"), 0, 2000).offset, 3u);

  const auto st = hub.stats();
  EXPECT_EQ(st.dedup_hits, 1u);
  EXPECT_EQ(st.publishes, 3u);
  EXPECT_EQ(st.dedup_entries, 3u);
}

TEST_F(ChannelHubTest, DedupIsPerChannelAndIgnoresEmptyIds) {
  EXPECT_FALSE(hub.publish(draft("a", "same"), 0, 0).duplicate);
  EXPECT_FALSE(hub.publish(draft("b", "same"), 0, 0).duplicate);
  EXPECT_FALSE(hub.publish(draft("a", ""), 0, 0).duplicate);
  EXPECT_FALSE(hub.publish(draft("a", ""), 0, 0).duplicate);
  EXPECT_EQ(hub.stats().dedup_entries, 2u);
}

TEST_F(ChannelHubTest, DedupExpiresAfterTheWindow) {
  ASSERT_EQ(hub.publish(draft("a", "m"), 0, 1000).offset, 1u);
  EXPECT_TRUE(hub.publish(draft("a", "m"), 0, 1000 + kWindow - 1).duplicate);
  // Expired but not swept yet: publishing again is a new publication.
  const PublishOutcome again = hub.publish(draft("a", "m"), 0, 1000 + kWindow);
  EXPECT_FALSE(again.duplicate);
  EXPECT_EQ(again.offset, 2u);
  // ... which the dedup now remembers with its own window.
  EXPECT_EQ(hub.publish(draft("a", "m"), 0, 1000 + kWindow + 5).offset, 2u);

  // Swept: the entries and the channel states (no subscribers) go.
  ASSERT_EQ(hub.publish(draft("b", "n"), 0, 1000 + kWindow + 10).offset, 1u);
  EXPECT_EQ(hub.stats().channels, 2u);
  hub.sweep(0, 1000 + kWindow);  // only a's first (stale) item is due
  EXPECT_EQ(hub.stats().dedup_entries, 2u);
  hub.sweep(0, 1000 + 2 * kWindow);
  EXPECT_EQ(hub.stats().dedup_entries, 1u);
  EXPECT_EQ(hub.stats().channels, 1u);
  hub.sweep(0, 1000 + 2 * kWindow + 10);
  EXPECT_EQ(hub.stats().dedup_entries, 0u);
  EXPECT_EQ(hub.stats().channels, 0u);
  EXPECT_EQ(hub.publish(draft("b", "n"), 0, 1000 + 2 * kWindow + 10).offset, 2u);
}

TEST_F(ChannelHubTest, ZeroWindowTurnsDedupOff) {
  ChannelHub h(1, history, sink, nullptr, 0);
  EXPECT_EQ(h.publish(draft("a", "m"), 0, 0).offset, 1u);
  EXPECT_EQ(h.publish(draft("a", "m"), 0, 0).offset, 2u);
  EXPECT_EQ(h.stats().dedup_entries, 0u);
}

TEST_F(ChannelHubTest, DedupEntriesAreBoundedOldestFirst) {
  HubLimits limits;
  limits.max_dedup_entries = 64;  // one per shard
  ChannelHub h(1, history, sink, nullptr, kWindow, limits);
  for (int i = 0; i < 1000; ++i) h.publish(draft("ch" + std::to_string(i % 7), "id" + std::to_string(i)), 0, i);
  const auto st = h.stats();
  EXPECT_LE(st.dedup_entries, 64u);
  EXPECT_GE(st.dedup_evictions, 1000u - 64u);
  EXPECT_EQ(st.dedup_entries + st.dedup_evictions, 1000u);
  // The newest id is still remembered.
  EXPECT_TRUE(h.publish(draft("ch" + std::to_string(999 % 7), "id999"), 0, 1000).duplicate);
  h.sweep(0, 10 * kWindow);
  EXPECT_EQ(h.stats().dedup_entries, 0u);
  EXPECT_EQ(h.stats().channels, 0u);
}

TEST_F(ChannelHubTest, ResumeReplaysEverythingAfterTheOffsetInOrder) {
  std::string epoch;
  for (int i = 0; i < 5; ++i) epoch = hub.publish(draft("trade:BTC"), 0, 0).epoch;
  const SubscribeOutcome s = hub.subscribe(0, "trade:BTC", true, epoch, 2, 0, replay);
  EXPECT_EQ(s.status, Status::kOk);
  EXPECT_TRUE(s.recovered);
  EXPECT_EQ(s.position.epoch, epoch);
  EXPECT_EQ(s.position.offset, 5u);
  EXPECT_EQ(offsets_of(replay), (std::vector<uint64_t>{3, 4, 5}));
  for (const auto& p : replay) EXPECT_EQ(p->epoch(), epoch);

  // Live publications follow, above position.offset.
  hub.publish(draft("trade:BTC"), 0, 0);
  EXPECT_EQ(sink.take_offsets(0), (std::vector<uint64_t>{6}));

  // Up to date already: recovered, nothing to replay.
  EXPECT_TRUE(hub.subscribe(1, "trade:BTC", true, epoch, 6, 0, replay).recovered);
  EXPECT_TRUE(replay.empty());
  // "Nothing seen" (empty epoch, offset 0): everything the epoch holds.
  EXPECT_TRUE(hub.subscribe(1, "trade:BTC", true, "", 0, 0, replay).recovered);
  EXPECT_EQ(offsets_of(replay), (std::vector<uint64_t>{1, 2, 3, 4, 5, 6}));
  // Without resume: position only.
  replay.push_back(nullptr);
  const SubscribeOutcome plain = hub.subscribe(1, "trade:BTC", false, epoch, 1, 0, replay);
  EXPECT_FALSE(plain.recovered);
  EXPECT_EQ(plain.position.offset, 6u);
  EXPECT_TRUE(replay.empty());
}

TEST_F(ChannelHubTest, ResumeOnAnUnknownChannel) {
  const SubscribeOutcome s = hub.subscribe(0, "quiet", true, "", 0, 0, replay);
  EXPECT_TRUE(s.recovered);
  EXPECT_EQ(s.position.epoch, "");
  EXPECT_EQ(s.position.offset, 0u);
  EXPECT_TRUE(replay.empty());
  // An epoch from before a restart (or an offset) cannot be honoured.
  EXPECT_FALSE(hub.subscribe(0, "quiet", true, "0badc0de", 0, 0, replay).recovered);
  EXPECT_FALSE(hub.subscribe(0, "quiet", true, "0badc0de", 3, 0, replay).recovered);
  EXPECT_FALSE(hub.subscribe(0, "quiet", true, "", 3, 0, replay).recovered);
  // The first publication starts an epoch at 1 and reaches the subscriber.
  const PublishOutcome p = hub.publish(draft("quiet"), 0, 0);
  EXPECT_EQ(p.offset, 1u);
  EXPECT_EQ(sink.take_offsets(0), (std::vector<uint64_t>{1}));
}

TEST_F(ChannelHubTest, NotRecoveredForWrongEpochOrFutureOffset) {
  std::string epoch;
  for (int i = 0; i < 3; ++i) epoch = hub.publish(draft("a"), 0, 0).epoch;
  std::string wrong = epoch;
  wrong[0] = wrong[0] == '0' ? '1' : '0';
  SubscribeOutcome s = hub.subscribe(0, "a", true, wrong, 1, 0, replay);
  EXPECT_EQ(s.status, Status::kOk);
  EXPECT_FALSE(s.recovered);
  EXPECT_TRUE(replay.empty());
  EXPECT_EQ(s.position.offset, 3u);
  EXPECT_FALSE(hub.subscribe(0, "a", true, epoch, 4, 0, replay).recovered);
  EXPECT_FALSE(hub.subscribe(0, "a", true, "", 1, 0, replay).recovered);
}

TEST_F(ChannelHubTest, NotRecoveredWhenEvictedByHistorySize) {
  options.history_size = 3;
  std::string epoch;
  for (int i = 0; i < 5; ++i) epoch = hub.publish(draft("a"), 0, 0).epoch;  // keeps 3, 4, 5
  EXPECT_FALSE(hub.subscribe(0, "a", true, epoch, 1, 0, replay).recovered);
  EXPECT_TRUE(replay.empty());
  EXPECT_FALSE(hub.subscribe(0, "a", true, "", 0, 0, replay).recovered);
  ASSERT_TRUE(hub.subscribe(0, "a", true, epoch, 2, 0, replay).recovered);
  EXPECT_EQ(offsets_of(replay), (std::vector<uint64_t>{3, 4, 5}));
  EXPECT_EQ(history.stats().publications, 3u);
}

TEST_F(ChannelHubTest, NotRecoveredWhenExpiredByTtl) {
  options.history_ttl_s = 10;
  std::string epoch = hub.publish(draft("a"), 1'000'000, 0).epoch;  // kept until 1'010'000
  hub.publish(draft("a"), 1'005'000, 0);                             // kept until 1'015'000
  ASSERT_TRUE(hub.subscribe(0, "a", true, epoch, 0, 1'009'999, replay).recovered);
  EXPECT_EQ(offsets_of(replay), (std::vector<uint64_t>{1, 2}));
  EXPECT_FALSE(hub.subscribe(0, "a", true, epoch, 0, 1'010'000, replay).recovered);
  ASSERT_TRUE(hub.subscribe(0, "a", true, epoch, 1, 1'010'000, replay).recovered);
  EXPECT_EQ(offsets_of(replay), (std::vector<uint64_t>{2}));
  EXPECT_FALSE(hub.subscribe(0, "a", true, epoch, 1, 1'015'000, replay).recovered);
  // Everything expired but the client saw it all: still recovered.
  EXPECT_TRUE(hub.subscribe(0, "a", true, epoch, 2, 2'000'000, replay).recovered);
  EXPECT_EQ(history.stats().publications, 0u);
}

TEST_F(ChannelHubTest, ZeroHistoryStillCountsOffsets) {
  options.history_size = 0;
  std::string epoch;
  for (int i = 0; i < 3; ++i) epoch = hub.publish(draft("live"), 0, 0).epoch;
  EXPECT_EQ(history.position("live").offset, 3u);
  EXPECT_FALSE(hub.subscribe(0, "live", true, epoch, 2, 0, replay).recovered);
  EXPECT_TRUE(hub.subscribe(0, "live", true, epoch, 3, 0, replay).recovered);
  EXPECT_EQ(history.stats().publications, 0u);
}

TEST_F(ChannelHubTest, DeliversOnlyToLoopsWithSubscribersCountedPerLoop) {
  QueueSink s3(3);
  ChannelHub h(3, history, s3, nullptr, kWindow);
  h.subscribe(0, "c", false, "", 0, 0, replay);
  h.subscribe(0, "c", false, "", 0, 0, replay);
  h.subscribe(2, "c", false, "", 0, 0, replay);
  h.subscribe(1, "other", false, "", 0, 0, replay);
  h.publish(draft("c"), 0, 0);
  EXPECT_EQ(s3.take_offsets(0), (std::vector<uint64_t>{1}));  // once per loop, not per subscriber
  EXPECT_TRUE(s3.take(1).empty());
  EXPECT_EQ(s3.take_offsets(2), (std::vector<uint64_t>{1}));
  EXPECT_EQ(s3.last_subscribers(0), 2u);  // the deliveries each post stands for (loop backlog)
  EXPECT_EQ(s3.last_subscribers(2), 1u);

  h.unsubscribe(0, "c");  // one of two left on loop 0
  h.publish(draft("c"), 0, 0);
  EXPECT_EQ(s3.take_offsets(0), (std::vector<uint64_t>{2}));
  EXPECT_EQ(s3.last_subscribers(0), 1u);
  EXPECT_EQ(s3.take_offsets(2), (std::vector<uint64_t>{2}));

  h.unsubscribe(0, "c");
  h.unsubscribe(0, "c");      // below zero: ignored
  h.unsubscribe(7, "c");      // no such loop: ignored
  h.unsubscribe(1, "nope");   // unknown channel: ignored
  h.publish(draft("c"), 0, 0);
  EXPECT_TRUE(s3.take(0).empty());
  EXPECT_EQ(s3.take_offsets(2), (std::vector<uint64_t>{3}));

  h.unsubscribe(2, "c");
  h.publish(draft("c"), 0, 0);
  EXPECT_TRUE(s3.take(2).empty());
  EXPECT_EQ(h.stats().channels, 1u);  // "other"
  h.unsubscribe(1, "other");
  EXPECT_EQ(h.stats().channels, 0u);

  EXPECT_EQ(h.subscribe(3, "c", false, "", 0, 0, replay).status, Status::kInternal);
  EXPECT_EQ(h.stats().channels, 0u);
}

// A channel's subscribers counted on one loop are held inline; when that loop's count
// is back to 0 another loop takes its place (the state kept alive by a dedup entry).
TEST_F(ChannelHubTest, SubscribersMoveFromOneLoopToAnother) {
  QueueSink s3(3);
  ChannelHub h(3, history, s3, nullptr, kWindow);
  h.publish(draft("d", "m1"), 0, 0);  // the dedup entry keeps the channel state
  h.subscribe(1, "d", false, "", 0, 0, replay);
  h.publish(draft("d"), 0, 0);
  EXPECT_EQ(s3.take_offsets(1), (std::vector<uint64_t>{2}));
  h.unsubscribe(1, "d");
  h.unsubscribe(1, "d");  // below zero: ignored
  h.subscribe(2, "d", false, "", 0, 0, replay);
  h.publish(draft("d"), 0, 0);
  EXPECT_TRUE(s3.take(1).empty());
  EXPECT_TRUE(s3.take(0).empty());
  EXPECT_EQ(s3.take_offsets(2), (std::vector<uint64_t>{3}));
  h.subscribe(0, "d", false, "", 0, 0, replay);  // a second loop: counts per loop from here on
  h.unsubscribe(2, "d");
  h.publish(draft("d"), 0, 0);
  EXPECT_EQ(s3.take_offsets(0), (std::vector<uint64_t>{4}));
  EXPECT_TRUE(s3.take(2).empty());
}

// Per-user connection counts live in the personal channel's state, apart from its
// subscriber counts.
TEST_F(ChannelHubTest, UserConnectionsAreCountedAgainstTheLimit) {
  EXPECT_EQ(hub.add_user_connection("alice", 2), Status::kOk);
  EXPECT_EQ(hub.add_user_connection("alice", 2), Status::kOk);
  EXPECT_EQ(hub.add_user_connection("alice", 2), Status::kTooManyConnections);
  EXPECT_EQ(hub.add_user_connection("bob", 2), Status::kOk);
  EXPECT_EQ(hub.add_user_connection("carol", 0), Status::kTooManyConnections);
  EXPECT_EQ(hub.stats().channels, 2u);  // user:alice, user:bob

  // Subscribing to and leaving user:alice leaves the count alone, and the other way round.
  hub.subscribe(0, "user:alice", false, "", 0, 0, replay);
  hub.unsubscribe(0, "user:alice");
  EXPECT_EQ(hub.add_user_connection("alice", 2), Status::kTooManyConnections);
  hub.subscribe(1, "user:alice", false, "", 0, 0, replay);
  hub.remove_user_connection("alice");
  hub.remove_user_connection("alice");
  hub.remove_user_connection("alice");  // none left: ignored
  hub.remove_user_connection("dave");   // never counted: ignored
  hub.publish(draft("user:alice"), 0, 0);
  EXPECT_EQ(sink.take_offsets(1), (std::vector<uint64_t>{1}));
  EXPECT_EQ(hub.add_user_connection("alice", 1), Status::kOk);
  EXPECT_EQ(hub.add_user_connection("alice", 1), Status::kTooManyConnections);

  hub.remove_user_connection("alice");
  hub.remove_user_connection("bob");
  EXPECT_EQ(hub.stats().channels, 1u);  // user:alice still has its subscriber
  hub.unsubscribe(1, "user:alice");
  EXPECT_EQ(hub.stats().channels, 0u);
}

TEST_F(ChannelHubTest, InvalidChannelIsBadChannel) {
  for (const std::string& bad : {std::string(), std::string("a b"), std::string("news*"), std::string("é"),
                                 std::string(256, 'a'), std::string("a\0b", 3)}) {
    EXPECT_EQ(hub.publish(draft(bad), 0, 0).status, Status::kBadChannel) << bad;
    EXPECT_EQ(hub.subscribe(0, bad, false, "", 0, 0, replay).status, Status::kBadChannel) << bad;
  }
  EXPECT_EQ(hub.stats().channels, 0u);
  EXPECT_EQ(history.stats().channels, 0u);
  EXPECT_EQ(hub.publish(draft(std::string(255, 'a')), 0, 0).status, Status::kOk);
  EXPECT_EQ(hub.publish(draft("user:42/a-b_c.d@e"), 0, 0).status, Status::kOk);
}

TEST_F(ChannelHubTest, TooLargeIsMessageTooLarge) {
  hub.subscribe(0, "big", false, "", 0, 0, replay);
  const PublishOutcome huge = hub.publish(draft("big", "m", std::string(1024 * 1024, 'x')), 0, 0);
  EXPECT_EQ(huge.status, Status::kMessageTooLarge);
  // The limit is on the whole publication (what a client must accept), not the payload alone.
  EXPECT_EQ(hub.publish(draft("big", "m", std::string(1024 * 1024 - 16, 'x')), 0, 0).status,
            Status::kMessageTooLarge);
  EXPECT_EQ(hub.publish(draft("big", "m", std::string(1024 * 1024 - 256, 'x')), 0, 0).status, Status::kOk);
  EXPECT_EQ(sink.take_offsets(0), (std::vector<uint64_t>{1}));

  HubLimits limits;
  limits.max_message_size = 1000;
  ChannelHub h(1, history, sink, nullptr, kWindow, limits);
  EXPECT_EQ(h.publish(draft("small", "", std::string(1000, 'x')), 0, 0).status, Status::kMessageTooLarge);
  const PublishOutcome ok = h.publish(draft("small", "", std::string(800, 'x')), 0, 0);
  EXPECT_EQ(ok.status, Status::kOk);
  std::vector<PublicationPtr> r;
  ASSERT_TRUE(history.read_since("small", ok.epoch, 0, 0, r));
  ASSERT_EQ(r.size(), 1u);
  EXPECT_LE(r[0]->body().size(), 1000u);
  EXPECT_FALSE(history.read_since("small", ok.epoch, 5, 0, r));
}

TEST_F(ChannelHubTest, LongMessageIdIsInvalidField) {
  EXPECT_EQ(hub.publish(draft("a", std::string(129, 'm')), 0, 0).status, Status::kInvalidField);
  EXPECT_EQ(hub.publish(draft("a", std::string(128, 'm')), 0, 0).status, Status::kOk);
}

TEST_F(ChannelHubTest, FailedAppendIsStorageUnavailableAndNotRemembered) {
  FlakyHistory flaky;
  ChannelHub h(2, flaky, sink, nullptr, kWindow);
  h.subscribe(0, "d", false, "", 0, 0, replay);
  flaky.fail = true;
  const PublishOutcome failed = h.publish(draft("d", "m"), 0, 0);
  EXPECT_EQ(failed.status, Status::kStorageUnavailable);
  EXPECT_TRUE(sink.take(0).empty());
  EXPECT_EQ(h.stats().dedup_entries, 0u);
  flaky.fail = false;
  const PublishOutcome retried = h.publish(draft("d", "m"), 0, 1);  // the retry is not a "duplicate"
  EXPECT_FALSE(retried.duplicate);
  EXPECT_EQ(retried.offset, 1u);  // the failed append consumed no offset
  EXPECT_EQ(sink.take_offsets(0), (std::vector<uint64_t>{1}));
}

TEST_F(ChannelHubTest, SweepForgetsIdleChannelsWithoutSubscribers) {
  MemoryHistory h0(/*idle_grace_ms=*/1000);
  ChannelHub h(2, h0, sink, [](std::string_view) { return ChannelOptions{10, 5}; }, kWindow);
  const std::string e_free = h.publish(draft("free"), 0, 0).epoch;
  const std::string e_held = h.publish(draft("held"), 0, 0).epoch;
  h.subscribe(1, "held", false, "", 0, 0, replay);
  h.sweep(4999, 0);  // still kept
  EXPECT_EQ(h0.stats().channels, 2u);
  h.sweep(5000, 0);  // nothing kept any more; "held" has a subscriber
  EXPECT_EQ(h0.stats().channels, 1u);
  EXPECT_EQ(h0.position("free").offset, 0u);
  EXPECT_EQ(h0.position("held").offset, 1u);
  EXPECT_EQ(h0.position("held").epoch, e_held);
  // Forgotten = history lost = a new epoch from offset 1; the old epoch is not recovered.
  const PublishOutcome again = h.publish(draft("free"), 6000, 0);
  EXPECT_EQ(again.offset, 1u);
  EXPECT_NE(again.epoch, e_free);
  EXPECT_FALSE(h.subscribe(0, "free", true, e_free, 1, 6000, replay).recovered);
  h.unsubscribe(0, "free");

  // history_size 0: forgotten only after the idle grace since the last append.
  MemoryHistory h1(/*idle_grace_ms=*/1000);
  ChannelHub g(1, h1, sink, [](std::string_view) { return ChannelOptions{0, 0}; }, kWindow);
  g.publish(draft("ephemeral"), 10'000, 0);
  g.sweep(10'999, 0);
  EXPECT_EQ(h1.position("ephemeral").offset, 1u);
  g.sweep(11'000, 0);
  EXPECT_EQ(h1.stats().channels, 0u);

  // No TTL: kept (and remembered) however long it is idle.
  MemoryHistory h2(0);
  ChannelHub k(1, h2, sink, [](std::string_view) { return ChannelOptions{10, 0}; }, kWindow);
  k.publish(draft("forever"), 0, 0);
  k.sweep(INT64_MAX, 0);
  EXPECT_EQ(h2.position("forever").offset, 1u);
}

// The hub remembers where the History keeps a channel it has state for (here: a
// counted user connection and a dedup entry, neither of which stops the History
// forgetting the channel). Once sweep() forgot it, the next publish must not use
// that memory (ASan checks) and starts a new epoch at offset 1.
TEST_F(ChannelHubTest, AChannelTheHistoryForgotIsLookedUpAgainNotReused) {
  MemoryHistory h0(/*idle_grace_ms=*/1000);
  ChannelHub h(1, h0, sink, [](std::string_view) { return ChannelOptions{10, 5}; }, kWindow);
  ASSERT_EQ(h.add_user_connection("7", 4), codec::Status::kOk);
  const PublishOutcome first = h.publish(draft("user:7"), 0, 0);
  EXPECT_EQ(h.publish(draft("user:7", "m1"), 0, 0).offset, 2u);
  h.sweep(7000, 0);
  EXPECT_EQ(h0.stats().channels, 0u);
  EXPECT_EQ(h.stats().channels, 1u);  // the hub still counts the user's connection and m1
  for (uint64_t want = 1; want <= 3; ++want) {
    const PublishOutcome again = h.publish(draft("user:7"), 7000, 1);
    EXPECT_EQ(again.offset, want);
    EXPECT_NE(again.epoch, first.epoch);
  }
  EXPECT_EQ(h0.position("user:7").offset, 3u);
  EXPECT_EQ(h0.stats().publications, 3u);
}

// ---- the live histories' memory limit (ChannelHub::trim_history)

// Every kept publication of `channel` (its epoch's kept run), found by resuming from
// the lowest offset the history still recovers.
std::vector<PublicationPtr> kept_of(MemoryHistory& h, const std::string& channel, int64_t now) {
  const ChannelPosition pos = h.position(channel);
  std::vector<PublicationPtr> out;
  for (uint64_t from = 0; from <= pos.offset; ++from) {
    out.clear();
    if (h.read_since(channel, from == 0 ? "" : pos.epoch, from, now, out)) return out;
  }
  return {};
}

size_t bytes_of(const std::vector<PublicationPtr>& v) {
  size_t sum = 0;
  for (const auto& p : v) sum += p->memory_bytes() + MemoryHistory::kEntryBytes;
  return sum;
}

TEST_F(ChannelHubTest, HistoryCountsWhatItKeepsAndUncountsWhatGoes) {
  MemoryHistory h(/*idle_grace_ms=*/0);
  ChannelHub g(1, h, sink, [](std::string_view c) { return c == "a" ? ChannelOptions{3, 10} : ChannelOptions{5, 0}; },
               kWindow);
  EXPECT_EQ(h.memory_bytes(), 0u);
  for (int i = 0; i < 5; ++i) g.publish(draft("a", "", std::string(100 + i, 'x')), 1000, 0);  // 3 kept
  for (int i = 0; i < 4; ++i) g.publish(draft("b", "", std::string(2000, 'y')), 1000, 0);    // all 4 kept
  const size_t a = bytes_of(kept_of(h, "a", 1000)), b = bytes_of(kept_of(h, "b", 1000));
  EXPECT_EQ(kept_of(h, "a", 1000).size(), 3u);
  EXPECT_GT(b, 4u * 2000);  // the bodies, at least
  EXPECT_EQ(h.memory_bytes(), a + b);
  EXPECT_EQ(h.stats().bytes, a + b);
  EXPECT_EQ(h.stats().publications, 7u);
  // "a" expires after 10 s; reading it then drops and uncounts all three.
  EXPECT_TRUE(kept_of(h, "a", 11'000).empty());
  EXPECT_EQ(h.memory_bytes(), b);
  g.sweep(11'000, 0);  // "a" is forgotten; "b" (no TTL) stays
  EXPECT_EQ(h.stats().channels, 1u);
  EXPECT_EQ(h.memory_bytes(), b);
  EXPECT_EQ(h.stats().publications, 4u);
}

TEST_F(ChannelHubTest, TrimHistoryDropsTheOldestFirstAcrossChannels) {
  MemoryHistory h(/*idle_grace_ms=*/0);
  ChannelHub g(1, h, sink, [](std::string_view) { return ChannelOptions{100, 0}; }, kWindow);
  const std::string body(500, 'z');
  std::string old_epoch;
  for (int i = 0; i < 10; ++i) old_epoch = g.publish(draft("old", "", body), 1000 + i, 0).epoch;
  for (int i = 0; i < 10; ++i) g.publish(draft("new", "", body), 5000 + i, 0);
  ASSERT_EQ(g.subscribe(0, "old", false, "", 0, 5010, replay).status, Status::kOk);  // trimmed while subscribed
  const size_t one = kept_of(h, "new", 5010).front()->memory_bytes() + MemoryHistory::kEntryBytes;
  EXPECT_EQ(h.memory_bytes(), 20 * one);

  // Under the limit, or without one: nothing goes.
  EXPECT_EQ(g.trim_history(0), 0u);
  EXPECT_EQ(g.trim_history(20 * one), 0u);
  EXPECT_EQ(h.memory_bytes(), 20 * one);

  // A limit of 15: trimmed to 90 % of it (13.5), from the oldest, so "old" loses its
  // first 7 and "new" keeps everything.
  const size_t limit = 15 * one;
  const size_t dropped = g.trim_history(limit);
  EXPECT_EQ(dropped, 7u);
  EXPECT_LE(h.memory_bytes(), limit - limit / 10);
  EXPECT_EQ(offsets_of(kept_of(h, "new", 5010)), (std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
  EXPECT_EQ(offsets_of(kept_of(h, "old", 5010)), (std::vector<uint64_t>{8, 9, 10}));
  EXPECT_EQ(h.memory_bytes(), 13 * one);
  EXPECT_EQ(h.stats().publications, 13u);

  // Offsets and epoch are untouched: a resume from before what is kept is refused,
  // a resume from within it still recovers, and the next offset follows on.
  EXPECT_FALSE(g.subscribe(0, "old", true, old_epoch, 3, 5010, replay).recovered);
  const SubscribeOutcome in = g.subscribe(0, "old", true, old_epoch, 7, 5010, replay);
  EXPECT_TRUE(in.recovered);
  EXPECT_EQ(offsets_of(replay), (std::vector<uint64_t>{8, 9, 10}));
  const PublishOutcome next = g.publish(draft("old", "", body), 6000, 0);
  EXPECT_EQ(next.offset, 11u);
  EXPECT_EQ(next.epoch, old_epoch);
  EXPECT_EQ(h.memory_bytes(), 14 * one);
}

TEST_F(ChannelHubTest, TrimHistoryEmptiesChannelsWhenEverythingIsOld) {
  MemoryHistory h(/*idle_grace_ms=*/0);
  ChannelHub g(1, h, sink, [](std::string_view) { return ChannelOptions{1000, 0}; }, kWindow);
  // 50 channels, appended to in turn over time: the limit leaves room for 10 % of it.
  for (int t = 0; t < 20; ++t) {
    for (int c = 0; c < 50; ++c) g.publish(draft("c" + std::to_string(c), "", std::string(200, 'q')), t * 1000 + c, 0);
  }
  const size_t before = h.memory_bytes();
  const size_t limit = before / 10;
  EXPECT_GT(g.trim_history(limit), 0u);
  EXPECT_LE(h.memory_bytes(), limit - limit / 10);
  EXPECT_GT(h.memory_bytes(), 0u);
  // What is left is the newest: every kept publication was appended after every dropped one.
  // Publication `o` of channel `c` was appended at (o - 1) * 1000 + c.
  size_t kept = 0;
  int64_t newest_dropped = -1, oldest_kept = INT64_MAX;
  for (int c = 0; c < 50; ++c) {
    const auto k = kept_of(h, "c" + std::to_string(c), 0);
    kept += k.size();
    const uint64_t first = k.empty() ? 21 : k.front()->offset();
    if (!k.empty()) {
      EXPECT_EQ(k.back()->offset(), 20u);  // a channel keeps a run ending at its latest
      oldest_kept = std::min<int64_t>(oldest_kept, static_cast<int64_t>(first - 1) * 1000 + c);
    }
    if (first > 1) newest_dropped = std::max<int64_t>(newest_dropped, static_cast<int64_t>(first - 2) * 1000 + c);
  }
  EXPECT_LT(newest_dropped, oldest_kept);
  EXPECT_GE(newest_dropped, 0);
  EXPECT_EQ(kept, h.stats().publications);
  // A limit below one publication: everything goes, and the channels still count on.
  g.trim_history(1);
  EXPECT_EQ(h.memory_bytes(), 0u);
  EXPECT_EQ(h.stats().publications, 0u);
  EXPECT_EQ(g.publish(draft("c0"), 30'000, 0).offset, 21u);
}

// Publishers, resuming readers and a trimmer at once (run under ASan and TSan too):
// a recovered resume is always a gapless run ending at the position, and the byte
// count always matches what is kept.
TEST(ChannelHubConcurrency, TrimmingWhilePublishingKeepsRunsGaplessAndCountsExact) {
  MemoryHistory history(/*idle_grace_ms=*/0);
  QueueSink sink(2);
  ChannelHub hub(2, history, sink, [](std::string_view) { return ChannelOptions{200, 0}; }, 0);
  const std::array<std::string, 6> names = {"t0", "t1", "t2", "t3", "t4", "user:5"};
  std::atomic<int64_t> clock{1};
  std::atomic<bool> stop{false};
  std::atomic<int> violations{0};
  const size_t limit = 64 * 1024;

  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t) + 11u);
      for (int n = 0; n < 6000; ++n) {
        hub.publish(draft(names[rng() % names.size()], "", std::string(64 + rng() % 512, 'p')), clock.fetch_add(1), 0);
        if (n % 8 == 0) std::this_thread::yield();
      }
    });
  }
  std::thread reader([&] {
    std::vector<PublicationPtr> replay;
    std::mt19937 rng(7);
    while (!stop.load()) {
      const std::string& ch = names[rng() % names.size()];
      // The position through the hub (under the channel's lock, as the History's contract asks).
      const ChannelPosition pos = hub.subscribe(0, ch, false, "", 0, clock.load(), replay).position;
      hub.unsubscribe(0, ch);
      if (pos.offset < 5) continue;
      const SubscribeOutcome out = hub.subscribe(0, ch, true, pos.epoch, pos.offset - 5, clock.load(), replay);
      if (out.recovered) {
        uint64_t expect = pos.offset - 4;
        for (const auto& p : replay) {
          if (p->offset() != expect++) ++violations;
        }
        if (expect != out.position.offset + 1) ++violations;
      }
      hub.unsubscribe(0, ch);
    }
  });
  std::thread trimmer([&] {
    while (!stop.load()) {
      hub.trim_history(limit);
      std::this_thread::yield();
    }
  });
  for (auto& t : threads) t.join();
  stop.store(true);
  reader.join();
  trimmer.join();
  EXPECT_EQ(violations.load(), 0);
  hub.trim_history(limit);
  EXPECT_LE(history.memory_bytes(), limit);
  size_t bytes = 0, count = 0;
  for (const auto& ch : names) {
    const auto k = kept_of(history, ch, clock.load());
    bytes += bytes_of(k);
    count += k.size();
  }
  EXPECT_EQ(history.memory_bytes(), bytes);
  EXPECT_EQ(history.stats().publications, count);
}

// The subscriber contract under concurrency: 4 threads publish (with retried
// message ids) to the same channels while 2 loop threads subscribe and
// unsubscribe with resume and consume their loop's queue, and a timer thread
// sweeps. Checks that (a) each channel's offsets are unique and gapless, and (b)
// every subscription gets, from replay and then deliveries above
// position.offset, every offset after its resume point exactly once, in order.
// Run under ASan and TSan for (c).
TEST(ChannelHubConcurrency, PublishersAndResumingSubscribersKeepTheContract) {
  constexpr int kPublishers = 4;
  constexpr int kPerPublisher = 2500;
  constexpr size_t kChannels = 4;
  constexpr size_t kLoops = 2;
  constexpr size_t kSlots = 2;  // subscribers per channel per loop (counts > 1 on one loop)
  const std::array<std::string, kChannels> names = {"c0", "c1", "ns:c2", "user:3"};

  QueueSink sink(kLoops);
  MemoryHistory history(/*idle_grace_ms=*/0);
  // "drop:" channels keep nothing and nobody subscribes: sweep forgets them while
  // they are being published to, racing append with drop_if_idle.
  auto options = [](std::string_view channel) {
    return channel.starts_with("drop:") ? ChannelOptions{0, 0} : ChannelOptions{1'000'000, 0};
  };
  constexpr uint64_t kDedupWindow = 2000;
  ChannelHub hub(kLoops, history, sink, options, kDedupWindow);
  std::atomic<uint64_t> clock{1};  // monotonic ms: one tick per publish

  struct Published {
    size_t channel;
    uint64_t offset;
    std::string epoch;
  };
  std::vector<std::vector<Published>> published(kPublishers);
  constexpr int kMinSessions = 400;
  std::atomic<int> sessions{0};
  std::barrier start(kPublishers + static_cast<int>(kLoops));
  std::atomic<int> duplicate_mismatches{0};

  std::vector<std::thread> threads;
  for (int t = 0; t < kPublishers; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t) * 7919u + 1u);
      start.arrive_and_wait();
      // Keep publishing until the loops have done enough subscriptions, so the
      // two really overlap however the 2 cores schedule the threads.
      for (int n = 0; n < kPerPublisher || sessions.load() < kMinSessions; ++n) {
        const size_t ch = rng() % kChannels;
        const std::string id = "p" + std::to_string(t) + "-" + std::to_string(n);
        const PublishOutcome out = hub.publish(draft(names[ch], id), 0, clock.fetch_add(1));
        EXPECT_EQ(out.status, Status::kOk);
        EXPECT_FALSE(out.duplicate);
        published[t].push_back({ch, out.offset, out.epoch});
        if (n % 5 == 0) {  // a publisher retrying after a lost answer
          const PublishOutcome retry = hub.publish(draft(names[ch], id), 0, clock.fetch_add(1));
          if (retry.duplicate) {
            if (retry.offset != out.offset || retry.epoch != out.epoch) ++duplicate_mismatches;
          } else {
            published[t].push_back({ch, retry.offset, retry.epoch});  // the window passed: a new one
          }
        }
        if (n % 3 == 0) hub.publish(draft("drop:" + std::to_string(n % 16)), 0, clock.load());
        if (n % 4 == 0) std::this_thread::yield();  // 6 busy threads on 2 cores: let the loops run too
      }
    });
  }

  std::atomic<bool> stop_sweeper{false};
  std::thread sweeper([&] {
    while (!stop_sweeper.load()) {
      hub.sweep(1, clock.load());
      (void)hub.stats();
      std::this_thread::yield();
    }
  });

  // Known once every publisher is done (publisher results are joined first).
  std::array<uint64_t, kChannels> final_offset{};
  std::atomic<bool> publishing_done{false};
  std::atomic<int> contract_violations{0};
  std::atomic<int> recovered_replays{0};

  auto violation = [&](const std::string& what) {
    if (contract_violations.fetch_add(1) < 10) ADD_FAILURE() << what;
  };

  std::vector<std::thread> loops;
  for (size_t loop = 0; loop < kLoops; ++loop) {
    loops.emplace_back([&, loop] {
      struct Sub {
        bool subscribed = false;
        std::string epoch;
        uint64_t last_seen = 0;   // the client's resume point
        uint64_t position = 0;    // SubscribeOk.offset of the current subscription
      };
      std::array<std::array<Sub, kSlots>, kChannels> subs{};
      std::mt19937 rng(static_cast<unsigned>(loop) + 100u);
      std::vector<PublicationPtr> replay;
      start.arrive_and_wait();

      auto subscribe = [&](size_t ch, Sub& s) {
        const SubscribeOutcome out = hub.subscribe(loop, names[ch], true, s.epoch, s.last_seen, 0, replay);
        ++sessions;
        if (out.status != Status::kOk || !out.recovered) {
          violation("subscribe failed or not recovered on " + names[ch]);
          return;
        }
        if (!replay.empty()) ++recovered_replays;
        uint64_t expect = s.last_seen + 1;
        for (const auto& p : replay) {
          if (p->offset() != expect++ || p->epoch() != out.position.epoch) violation("replay out of order");
        }
        if (expect != out.position.offset + 1) violation("replay does not end at position");
        s.subscribed = true;
        s.position = out.position.offset;
        s.last_seen = out.position.offset;
        if (!out.position.epoch.empty()) s.epoch = out.position.epoch;
      };
      auto drain = [&] {
        for (const auto& p : sink.take(loop)) {
          const auto it = std::find(names.begin(), names.end(), p->channel());
          if (it == names.end()) {
            violation("delivery of an unsubscribed channel " + p->channel());
            continue;
          }
          for (Sub& s : subs[static_cast<size_t>(it - names.begin())]) {
            if (!s.subscribed || p->offset() <= s.position) continue;  // the contract's skip rule
            if (p->offset() != s.last_seen + 1) {
              violation(p->channel() + ": expected " + std::to_string(s.last_seen + 1) + " got " +
                        std::to_string(p->offset()));
            }
            if (!s.epoch.empty() && p->epoch() != s.epoch) violation("epoch changed under a subscriber");
            s.epoch = p->epoch();
            s.last_seen = p->offset();
          }
        }
      };

      while (!publishing_done.load()) {
        const size_t ch = rng() % kChannels;
        Sub& s = subs[ch][rng() % kSlots];
        if (s.subscribed) {
          hub.unsubscribe(loop, names[ch]);
          s.subscribed = false;
        } else {
          subscribe(ch, s);
        }
        drain();
        if (rng() % 4 == 0) std::this_thread::yield();
      }
      // Everything is published: every subscription, old or new, must reach the end.
      for (size_t ch = 0; ch < kChannels; ++ch) {
        for (Sub& s : subs[ch]) {
          if (!s.subscribed) subscribe(ch, s);
        }
      }
      drain();
      for (size_t ch = 0; ch < kChannels; ++ch) {
        for (Sub& s : subs[ch]) {
          if (s.last_seen != final_offset[ch]) {
            violation(names[ch] + ": ended at " + std::to_string(s.last_seen) + " of " +
                      std::to_string(final_offset[ch]));
          }
          hub.unsubscribe(loop, names[ch]);
        }
      }
    });
  }

  for (auto& t : threads) t.join();
  // (a) Offsets per channel: unique and gapless, one epoch.
  for (size_t ch = 0; ch < kChannels; ++ch) {
    std::vector<uint64_t> offsets;
    std::string epoch;
    for (const auto& per : published) {
      for (const auto& p : per) {
        if (p.channel != ch) continue;
        offsets.push_back(p.offset);
        if (epoch.empty()) epoch = p.epoch;
        EXPECT_EQ(p.epoch, epoch);
      }
    }
    std::sort(offsets.begin(), offsets.end());
    ASSERT_FALSE(offsets.empty());
    for (size_t i = 0; i < offsets.size(); ++i) ASSERT_EQ(offsets[i], i + 1) << names[ch];
    final_offset[ch] = offsets.size();
  }
  publishing_done.store(true);  // release: final_offset is visible to the loop threads
  for (auto& t : loops) t.join();
  stop_sweeper.store(true);
  sweeper.join();

  EXPECT_EQ(duplicate_mismatches.load(), 0);
  EXPECT_EQ(contract_violations.load(), 0);
  ::testing::Test::RecordProperty("sessions", sessions.load());
  ::testing::Test::RecordProperty("publishes", static_cast<int>(hub.stats().publishes));
  ::testing::Test::RecordProperty("recovered_replays", recovered_replays.load());
  EXPECT_GE(sessions.load(), kMinSessions);
  EXPECT_GT(recovered_replays.load(), 10);
  EXPECT_GT(hub.stats().dedup_hits, 0u);

  hub.sweep(1, clock.load() + kDedupWindow);
  EXPECT_EQ(hub.stats().channels, 0u);
  EXPECT_EQ(hub.stats().dedup_entries, 0u);
}

}  // namespace
}  // namespace herald::server
