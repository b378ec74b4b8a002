// Crash test: publishers and a subscriber run against the real heraldd while it is
// killed with SIGKILL at random moments and restarted on the same data directory.
// Checks acked ⊆ delivered, nothing delivered that was never published, no gap or
// duplicate in what a resuming subscriber sees, every idempotency key stored at most
// once, and PRAGMA integrity_check ok after every restart. TESTING.md "Durability".
//
// HERALD_CRASH_KILLS=N sets the number of kills (default 20, the CI run);
// HERALD_CRASH_SEED=S replays one random schedule.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <set>

#include "tests/support/heraldd_process.h"

namespace herald::testing {
namespace {

using codec::FrameType;

const std::vector<std::string> kChannels = {"crash:a", "crash:b"};

// Output limits well above what a resume replays here: P2/P3 replays above the soft limit
// would be shed (by design, the client resumes again), which this test would count as gaps.
std::vector<std::string> server_args() {
  return {"--namespace", "name=crash,subscribe=any,durable=true,history_size=10000000,history_ttl_s=0",
          "--delivery.soft_limit_bytes", "16777216", "--delivery.hard_limit_bytes", "33554432"};
}

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

struct Ledger {
  std::mutex mu;
  std::set<std::string> attempted;                 // every id ever sent
  std::map<std::string, std::pair<std::string, uint64_t>> acked;  // id -> (channel, offset)
  std::set<std::string> unanswered;                // sent, no answer (killed): retried next round
  std::map<std::string, int> delivered;            // id -> times delivered live/by resume
  std::map<std::string, std::pair<std::string, uint64_t>> position;  // channel -> (epoch, last offset seen)
  uint64_t retries = 0, retried_duplicates = 0, gaps = 0, delivered_twice = 0, refused = 0;
};

void publisher(const HeralddProcess& s, Ledger& l, int id, std::atomic<bool>& stop, uint64_t& seq) {
  std::vector<std::string> retry;
  {
    std::lock_guard lock(l.mu);
    for (const auto& m : l.unanswered) {
      if (m.rfind("p" + std::to_string(id) + "-", 0) == 0) retry.push_back(m);
    }
  }
  while (!stop.load()) {
    std::string mid;
    bool is_retry = false;
    if (!retry.empty()) {
      mid = retry.back();
      retry.pop_back();
      is_retry = true;
    } else {
      mid = "p" + std::to_string(id) + "-" + std::to_string(++seq);
    }
    const std::string& channel = kChannels[std::hash<std::string>{}(mid) % kChannels.size()];
    {
      std::lock_guard lock(l.mu);
      l.attempted.insert(mid);
      l.unanswered.insert(mid);
      if (is_retry) ++l.retries;
    }
    nlohmann::json b = {{"channel", channel}, {"message_id", mid}, {"payload", {{"id", mid}}}};
    HttpResponse r = http(s.port("api"), "POST", "/v1/publish", b.dump());
    std::lock_guard lock(l.mu);
    if (r.status == 200) {
      const auto j = r.json();
      l.acked[mid] = {j["channel"], j["offset"]};
      l.unanswered.erase(mid);
      if (j["duplicate"].get<bool>()) ++l.retried_duplicates;
    } else if (r.status != 0) {
      ++l.refused;  // an answer that is not an ack: nothing was promised
      l.unanswered.erase(mid);
    } else {
      return;  // the server is gone; this id stays unanswered
    }
  }
}

void subscriber(const HeralddProcess& s, Ledger& l, std::atomic<bool>& stop) {
  Client c(s.port("tcp"));
  if (!c.handshake(make_token("crash-reader"))) return;
  // Both Subscribes first; then one loop: a channel's SubscribeOk always comes before its publications.
  uint64_t rid = 0;
  for (const auto& ch : kChannels) {
    std::pair<std::string, uint64_t> from;
    {
      std::lock_guard lock(l.mu);
      from = l.position[ch];
    }
    v1::Subscribe sub;
    sub.set_request_id(++rid);
    sub.set_channel(ch);
    sub.set_resume(true);
    sub.set_epoch(from.first);
    sub.set_offset(from.second);
    if (!c.send(sub)) return;
  }
  while (!stop.load()) {
    auto r = c.read(50);
    if (!r) {
      if (c.closed()) return;
      continue;
    }
    if (r->type == FrameType::kSubscribeOk) {
      const auto& so = r->as<v1::SubscribeOk>();
      std::lock_guard lock(l.mu);
      if (!so.recovered()) ++l.gaps;  // a durable channel must always recover
      if (l.position[so.channel()].first.empty()) l.position[so.channel()].first = so.epoch();
      continue;
    }
    if (r->type != FrameType::kPublication) continue;
    const auto& p = r->as<v1::Publication>();
    std::lock_guard lock(l.mu);
    auto& pos = l.position[p.channel()];
    if (pos.first.empty()) {
      pos.first = p.epoch();  // subscribed before the channel had any publication
    } else if (p.epoch() != pos.first) {
      ++l.gaps;  // an epoch change means the history was lost
      pos = {p.epoch(), 0};
    }
    if (p.offset() <= pos.second) {
      ++l.delivered_twice;
      continue;
    }
    if (p.offset() != pos.second + 1) ++l.gaps;
    pos.second = p.offset();
    ++l.delivered[p.message_id()];
  }
}

bool integrity_ok(const HeralddProcess& s, std::string& detail) {
  HttpResponse r = http(s.port("api"), "GET", "/v1/admin/integrity");
  detail = r.body;
  return r.status == 200 && r.json()["ok"] == true;
}

TEST(CrashTest, SigkillAtRandomMomentsLosesNothingAcknowledged) {
  const int kills = env_int("HERALD_CRASH_KILLS", 20);
  const unsigned seed = static_cast<unsigned>(env_int("HERALD_CRASH_SEED", static_cast<int>(std::random_device{}())));
  std::mt19937 rng(seed);
  std::cout << "crash test: " << kills << " kills, seed " << seed << "\n";
  HeralddProcess s;
  Ledger l;
  uint64_t seq[2] = {0, 0};
  for (int round = 0; round < kills; ++round) {
    ASSERT_TRUE(s.start(server_args())) << "round " << round << "\n" << s.log();
    std::string detail;
    ASSERT_TRUE(integrity_ok(s, detail)) << "round " << round << ": " << detail;
    std::atomic<bool> stop{false};
    std::thread sub([&] { subscriber(s, l, stop); });
    std::thread p0([&] { publisher(s, l, 0, stop, seq[0]); });
    std::thread p1([&] { publisher(s, l, 1, stop, seq[1]); });
    // The random moment: anywhere from the first publishes to a busy steady state.
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(50, 500)(rng)));
    ASSERT_EQ(s.stop(SIGKILL), 128 + SIGKILL);
    stop = true;
    p0.join();
    p1.join();
    sub.join();
  }

  // Last start: read everything stored, from the beginning.
  ASSERT_TRUE(s.start(server_args())) << s.log();
  std::string detail;
  ASSERT_TRUE(integrity_ok(s, detail)) << detail;
  {
    // Catch the live subscriber up from where it stopped.
    std::atomic<bool> stop{false};
    std::thread sub([&] { subscriber(s, l, stop); });
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
      bool caught_up = true;
      {
        std::lock_guard lock(l.mu);
        for (const auto& [id, at] : l.acked) {
          if (l.delivered.count(id) == 0) caught_up = false;
        }
      }
      if (caught_up || std::chrono::steady_clock::now() > deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    stop = true;
    sub.join();
  }
  std::map<std::string, int> stored;  // id -> how many offsets hold it
  for (const auto& ch : kChannels) {
    // Read the whole channel from offset 1; a replay cut short (shed or closed for
    // a large backlog) is resumed from the last offset read, as a client would.
    std::string epoch;
    uint64_t expect = 1, last = 0;
    for (int attempt = 0; attempt < 100 && (last == 0 || expect <= last); ++attempt) {
      Client c(s.port("tcp"));
      ASSERT_TRUE(c.handshake(make_token("crash-auditor")));
      auto ok = c.subscribe(ch, true, epoch, expect - 1);
      ASSERT_TRUE(ok);
      ASSERT_EQ(ok->type, FrameType::kSubscribeOk);
      ASSERT_TRUE(ok->as<v1::SubscribeOk>().recovered()) << ch << " from " << expect - 1;
      epoch = ok->as<v1::SubscribeOk>().epoch();
      last = ok->as<v1::SubscribeOk>().offset();
      while (expect <= last) {
        auto r = c.read(2000);
        if (!r) break;
        if (r->type != FrameType::kPublication) continue;
        const auto& p = r->as<v1::Publication>();
        if (p.offset() != expect) break;  // a gap: resume from expect - 1
        ++stored[p.message_id()];
        ++expect;
      }
    }
    ASSERT_GT(expect, last) << "could not read " << ch << " up to " << last;
  }

  std::lock_guard lock(l.mu);
  size_t acked_missing = 0, phantom = 0, stored_twice = 0, acked_not_delivered = 0;
  for (const auto& [id, at] : l.acked) {
    if (stored.count(id) == 0) ++acked_missing;
    if (l.delivered.count(id) == 0) ++acked_not_delivered;
  }
  for (const auto& [id, n] : l.delivered) {
    if (l.attempted.count(id) == 0) ++phantom;
  }
  for (const auto& [id, n] : stored) {
    if (l.attempted.count(id) == 0) ++phantom;
    if (n > 1) ++stored_twice;
  }
  std::cout << "crash test: attempted " << l.attempted.size() << ", acked " << l.acked.size() << ", stored "
            << stored.size() << ", delivered " << l.delivered.size() << ", unanswered " << l.unanswered.size()
            << ", retries " << l.retries << " (" << l.retried_duplicates << " answered as duplicates), refused "
            << l.refused << ", delivered twice " << l.delivered_twice << ", gaps " << l.gaps << "\n";
  EXPECT_GT(l.acked.size(), 0u);
  EXPECT_EQ(acked_missing, 0u) << "acknowledged but not stored";
  EXPECT_EQ(acked_not_delivered, 0u) << "acknowledged but never delivered to the resuming subscriber";
  EXPECT_EQ(phantom, 0u) << "delivered or stored but never published";
  EXPECT_EQ(stored_twice, 0u) << "an idempotency key stored at two offsets";
  EXPECT_EQ(l.delivered_twice, 0u) << "a resuming subscriber got an offset twice";
  EXPECT_EQ(l.gaps, 0u) << "a resuming subscriber saw a gap or an unrecovered resume";
}

}  // namespace
}  // namespace herald::testing
