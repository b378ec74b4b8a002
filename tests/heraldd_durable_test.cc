// Integration tests of the durable store against the real heraldd: restarts
// (SIGKILL), offsets and epochs, dedup after restart, the offline inbox, collapse
// keys and TTLs, acks and receipts, dismiss on read, state channels, the admin
// integrity check and start-up refusals. TESTING.md "Durability".
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <map>
#include <set>
#include <sstream>

#include "tests/support/heraldd_process.h"

namespace herald::testing {
namespace {

using codec::FrameType;
using codec::Status;

nlohmann::json body(const std::string& channel, const std::string& text, const std::string& message_id = "") {
  nlohmann::json j = {{"channel", channel}, {"type", "test"}, {"priority", 1}, {"payload", {{"text", text}}}};
  if (!message_id.empty()) j["message_id"] = message_id;
  return j;
}

HttpResponse publish(const HeralddProcess& s, const nlohmann::json& b) {
  return http(s.port("api"), "POST", "/v1/publish", b.dump());
}

std::string text_of(const v1::Publication& p) { return nlohmann::json::parse(p.payload())["text"]; }

// Reads publications until `n` arrived or `timeout_ms` passed (other frames skipped).
std::vector<v1::Publication> read_publications(Client& c, size_t n, int timeout_ms = 5000) {
  std::vector<v1::Publication> out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (out.size() < n && std::chrono::steady_clock::now() < deadline) {
    auto r = c.read(100);
    if (r && r->type == FrameType::kPublication) out.push_back(r->as<v1::Publication>());
  }
  return out;
}

// A client with a device id (receipts are per device).
bool connect_device(Client& c, const std::string& user, const std::string& device) {
  v1::Hello hello;
  hello.add_versions(1);
  hello.set_device_id(device);
  return c.handshake(make_token(user), nullptr, &hello);
}

void ack(Client& c, const std::string& channel, uint64_t offset) {
  v1::Ack a;
  a.set_channel(channel);
  a.set_offset(offset);
  ASSERT_TRUE(c.send(a));
}

// Polls GET /v1/messages/{id} until `pred` holds for the answer (acks are recorded
// by the store thread a moment after they arrive).
nlohmann::json wait_receipt(const HeralddProcess& s, const std::string& id,
                            const std::function<bool(const nlohmann::json&)>& pred) {
  nlohmann::json last;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    HttpResponse r = http(s.port("api"), "GET", "/v1/messages/" + id);
    last = r.json();
    if (r.status == 200 && pred(last)) return last;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return last;
}

std::string device_state(const nlohmann::json& receipt, const std::string& device) {
  if (!receipt.contains("messages") || receipt["messages"].empty()) return "";
  for (const auto& d : receipt["messages"][0]["devices"]) {
    if (d["device"] == device) return d["state"];
  }
  return "";
}

class Durable : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.start(args())) << server_.log(); }
  virtual std::vector<std::string> args() {
    return {"--namespace", "name=dur,subscribe=any,durable=true,history_size=1000,history_ttl_s=0",
            "--namespace", "name=md,subscribe=any,durable=true,latest_value=true,history_ttl_s=0",
            "--namespace", "name=news,subscribe=any"};
  }
  void restart() {
    ASSERT_EQ(server_.stop(SIGKILL), 128 + SIGKILL);
    ASSERT_TRUE(server_.start(args())) << server_.log();
  }
  void expect_integrity_ok() {
    HttpResponse r = http(server_.port("api"), "GET", "/v1/admin/integrity");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_TRUE(r.json()["ok"].get<bool>()) << r.body;
    EXPECT_EQ(r.json()["result"], "ok");
  }
  HeralddProcess server_;
};

TEST_F(Durable, AcknowledgedPublicationsSurviveSigkillWithOffsetsAndEpoch) {
  std::string epoch;
  for (int i = 1; i <= 5; ++i) {
    HttpResponse r = publish(server_, body("dur:orders", "m" + std::to_string(i)));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["offset"], i);
    epoch = r.json()["epoch"];
  }
  restart();
  expect_integrity_ok();
  Client c(server_.port("tcp"));
  ASSERT_TRUE(c.handshake(make_token("u1")));
  auto ok = c.subscribe("dur:orders", true, epoch, 2);
  ASSERT_TRUE(ok);
  ASSERT_EQ(ok->type, FrameType::kSubscribeOk);
  EXPECT_TRUE(ok->as<v1::SubscribeOk>().recovered());
  EXPECT_TRUE(ok->as<v1::SubscribeOk>().durable());
  EXPECT_EQ(ok->as<v1::SubscribeOk>().epoch(), epoch);
  EXPECT_EQ(ok->as<v1::SubscribeOk>().offset(), 5u);
  auto got = read_publications(c, 3);
  ASSERT_EQ(got.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(got[i].offset(), i + 3);
    EXPECT_EQ(text_of(got[i]), "m" + std::to_string(i + 3));
  }
  // Offsets continue in the same epoch after the restart.
  HttpResponse r = publish(server_, body("dur:orders", "m6"));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.json()["offset"], 6);
  EXPECT_EQ(r.json()["epoch"], epoch);
  auto live = read_publications(c, 1);
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].offset(), 6u);
}

TEST_F(Durable, LiveChannelsStayMemoryOnlyAndSaySo) {
  HttpResponse r = publish(server_, body("news:x", "hello"));
  ASSERT_EQ(r.status, 200);
  const std::string epoch = r.json()["epoch"];
  restart();
  Client c(server_.port("tcp"));
  ASSERT_TRUE(c.handshake(make_token("u1")));
  auto ok = c.subscribe("news:x", true, epoch, 0);
  ASSERT_EQ(ok->type, FrameType::kSubscribeOk);
  EXPECT_FALSE(ok->as<v1::SubscribeOk>().durable());
  EXPECT_FALSE(ok->as<v1::SubscribeOk>().recovered());  // the memory history is gone: new epoch
}

TEST_F(Durable, ResumeFromAnotherEpochIsNotRecovered) {
  ASSERT_EQ(publish(server_, body("dur:a", "x")).status, 200);
  Client c(server_.port("tcp"));
  ASSERT_TRUE(c.handshake(make_token("u1")));
  auto ok = c.subscribe("dur:a", true, "0000000000000000", 0);
  ASSERT_EQ(ok->type, FrameType::kSubscribeOk);
  EXPECT_FALSE(ok->as<v1::SubscribeOk>().recovered());
  EXPECT_TRUE(read_publications(c, 1, 300).empty());  // nothing partial
}

TEST_F(Durable, IdempotencyKeysAreDeduplicatedAfterARestart) {
  HttpResponse first = publish(server_, body("dur:pay", "once", "pay-1"));
  ASSERT_EQ(first.status, 200);
  EXPECT_FALSE(first.json()["duplicate"].get<bool>());
  restart();
  HttpResponse again = publish(server_, body("dur:pay", "once", "pay-1"));
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_TRUE(again.json()["duplicate"].get<bool>());
  EXPECT_EQ(again.json()["offset"], first.json()["offset"]);
  EXPECT_EQ(again.json()["epoch"], first.json()["epoch"]);
  // Stored once.
  Client c(server_.port("tcp"));
  ASSERT_TRUE(c.handshake(make_token("u1")));
  ASSERT_EQ(c.subscribe("dur:pay", true, "", 0)->type, FrameType::kSubscribeOk);
  auto got = read_publications(c, 2, 500);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].message_id(), "pay-1");
}

TEST_F(Durable, BatchPublishesAreAllCommittedBeforeTheAnswer) {
  nlohmann::json msgs = nlohmann::json::array();
  for (int i = 0; i < 50; ++i) msgs.push_back(body("dur:batch", "b" + std::to_string(i), "b-" + std::to_string(i)));
  HttpResponse r = http(server_.port("api"), "POST", "/v1/publish/batch", nlohmann::json{{"messages", msgs}}.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(r.json()["results"].size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(r.json()["results"][i]["offset"], i + 1);
  restart();
  Client c(server_.port("tcp"));
  ASSERT_TRUE(c.handshake(make_token("u1")));
  ASSERT_EQ(c.subscribe("dur:batch", true, "", 0)->type, FrameType::kSubscribeOk);
  auto got = read_publications(c, 50);
  ASSERT_EQ(got.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(got[i].message_id(), "b-" + std::to_string(i));
}

TEST_F(Durable, ClientPublishOnADurableChannelIsAnsweredAfterCommit) {
  ASSERT_EQ(server_.stop(SIGKILL), 128 + SIGKILL);
  ASSERT_TRUE(server_.start({"--namespace", "name=dur,subscribe=any,publish=any,durable=true"}));
  Client c(server_.port("tcp"));
  ASSERT_TRUE(c.handshake(make_token("pub", {{"publish", true}})));
  v1::Publish p;
  p.set_request_id(9);
  p.set_channel("dur:client");
  p.set_message_id("c-1");
  p.set_payload("{}");
  ASSERT_TRUE(c.send(p));
  auto ok = c.read_until(FrameType::kPublishOk);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->as<v1::PublishOk>().request_id(), 9u);
  EXPECT_EQ(ok->as<v1::PublishOk>().offset(), 1u);
  ASSERT_EQ(server_.stop(SIGKILL), 128 + SIGKILL);
  ASSERT_TRUE(server_.start({"--namespace", "name=dur,subscribe=any,publish=any,durable=true"}));
  Client d(server_.port("tcp"));
  ASSERT_TRUE(d.handshake(make_token("pub", {{"publish", true}})));
  ASSERT_TRUE(d.send(p));
  auto again = d.read_until(FrameType::kPublishOk);
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->as<v1::PublishOk>().duplicate());
  EXPECT_EQ(again->as<v1::PublishOk>().offset(), 1u);
}

TEST_F(Durable, OfflineInboxGivesExactlyTheUnackedTailInOrder) {
  for (int i = 1; i <= 10; ++i) {
    ASSERT_EQ(publish(server_, body("user:bob", "n" + std::to_string(i), "bob-" + std::to_string(i))).status, 200);
  }
  {
    // First connection of this device: the whole undelivered inbox.
    Client c(server_.port("tcp"));
    ASSERT_TRUE(connect_device(c, "bob", "phone"));
    auto ok = c.subscribe("user:bob");
    ASSERT_EQ(ok->type, FrameType::kSubscribeOk);
    EXPECT_TRUE(ok->as<v1::SubscribeOk>().durable());
    EXPECT_TRUE(ok->as<v1::SubscribeOk>().recovered());
    auto got = read_publications(c, 10);
    ASSERT_EQ(got.size(), 10u);
    for (size_t i = 0; i < 10; ++i) EXPECT_EQ(got[i].offset(), i + 1);
    ack(c, "user:bob", 6);
    // The ack is recorded by the store thread: wait until the receipt says so.
    auto r = wait_receipt(server_, "bob-6", [](const nlohmann::json& j) { return device_state(j, "phone") == "acked"; });
    ASSERT_EQ(device_state(r, "phone"), "acked") << r.dump();
    auto r7 = wait_receipt(server_, "bob-7", [](const nlohmann::json& j) { return device_state(j, "phone") == "sent"; });
    EXPECT_EQ(device_state(r7, "phone"), "sent") << r7.dump();
  }
  for (int i = 11; i <= 12; ++i) ASSERT_EQ(publish(server_, body("user:bob", "n" + std::to_string(i))).status, 200);
  restart();  // and across a restart
  Client c(server_.port("tcp"));
  ASSERT_TRUE(connect_device(c, "bob", "phone"));
  ASSERT_EQ(c.subscribe("user:bob")->type, FrameType::kSubscribeOk);
  auto got = read_publications(c, 6);
  ASSERT_EQ(got.size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(got[i].offset(), i + 7);
  EXPECT_TRUE(read_publications(c, 1, 300).empty());
  // Another device of the same user still has all of it.
  Client other(server_.port("tcp"));
  ASSERT_TRUE(connect_device(other, "bob", "watch"));
  ASSERT_EQ(other.subscribe("user:bob")->type, FrameType::kSubscribeOk);
  EXPECT_EQ(read_publications(other, 12).size(), 12u);
}

TEST_F(Durable, AFullInboxAboveTheOutputLimitIsReplayedWhole) {
  // 1000 P1 messages of 1.5 KiB: 1.5 MiB, above delivery.hard_limit_bytes (1 MiB).
  nlohmann::json msgs = nlohmann::json::array();
  for (int i = 0; i < 1000; ++i) {
    nlohmann::json m = body("user:big", std::string(1500, 'a' + static_cast<char>(i % 26)));
    msgs.push_back(std::move(m));
    if (msgs.size() == 200) {
      ASSERT_EQ(http(server_.port("api"), "POST", "/v1/publish/batch", nlohmann::json{{"messages", msgs}}.dump()).status,
                200);
      msgs = nlohmann::json::array();
    }
  }
  Client c(server_.port("tcp"));
  ASSERT_TRUE(connect_device(c, "big", "phone"));
  ASSERT_EQ(c.subscribe("user:big")->type, FrameType::kSubscribeOk);
  auto got = read_publications(c, 1000, 10000);
  ASSERT_EQ(got.size(), 1000u);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].offset(), i + 1);
}

TEST_F(Durable, CollapseKeyReplacesTheOlderOneAndExpiredMessagesAreNeverDelivered) {
  auto with = [](const std::string& text, const std::string& key, uint32_t ttl) {
    nlohmann::json j = body("user:carl", text);
    if (!key.empty()) j["collapse_key"] = key;
    if (ttl > 0) j["ttl_s"] = ttl;
    return j;
  };
  ASSERT_EQ(publish(server_, with("price 1", "btc", 0)).status, 200);
  ASSERT_EQ(publish(server_, with("short lived", "", 1)).status, 200);
  ASSERT_EQ(publish(server_, with("price 2", "btc", 0)).status, 200);
  ASSERT_EQ(publish(server_, with("other", "eth", 0)).status, 200);
  // Wait (by the wall clock) until the 1 s TTL has passed.
  const auto until = std::chrono::system_clock::now() + std::chrono::milliseconds(1100);
  while (std::chrono::system_clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  Client c(server_.port("tcp"));
  ASSERT_TRUE(connect_device(c, "carl", "d1"));
  ASSERT_EQ(c.subscribe("user:carl")->type, FrameType::kSubscribeOk);
  auto got = read_publications(c, 3, 1000);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(text_of(got[0]), "price 2");
  EXPECT_EQ(text_of(got[1]), "other");
}

TEST_F(Durable, AckOnOneDeviceDismissesOnTheOthersAndReceiptsSayWho) {
  Client desktop(server_.port("tcp")), phone(server_.port("tcp"));
  ASSERT_TRUE(connect_device(desktop, "dana", "desktop"));
  ASSERT_TRUE(connect_device(phone, "dana", "phone"));
  ASSERT_EQ(desktop.subscribe("user:dana")->type, FrameType::kSubscribeOk);
  ASSERT_EQ(phone.subscribe("user:dana")->type, FrameType::kSubscribeOk);
  nlohmann::json b = body("user:dana", "new sign-in", "sec-1");
  b["dismiss_on_read"] = true;
  HttpResponse r = publish(server_, b);
  ASSERT_EQ(r.status, 200);
  const uint64_t offset = r.json()["offset"];
  ASSERT_EQ(read_publications(desktop, 1).size(), 1u);
  ASSERT_EQ(read_publications(phone, 1).size(), 1u);

  auto sent = wait_receipt(server_, "sec-1", [](const nlohmann::json& j) {
    return device_state(j, "desktop") == "sent" && device_state(j, "phone") == "sent";
  });
  EXPECT_EQ(device_state(sent, "desktop"), "sent") << sent.dump();

  ack(desktop, "user:dana", offset);
  auto d = phone.read_until(FrameType::kDismiss);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->as<v1::Dismiss>().channel(), "user:dana");
  EXPECT_EQ(d->as<v1::Dismiss>().offset(), offset);
  EXPECT_EQ(d->as<v1::Dismiss>().message_id(), "sec-1");
  // The device that read it gets no Dismiss.
  EXPECT_FALSE(desktop.read_until(FrameType::kDismiss, 300));

  auto rec = wait_receipt(server_, "sec-1", [](const nlohmann::json& j) {
    return device_state(j, "desktop") == "acked" && device_state(j, "phone") == "dismissed";
  });
  EXPECT_EQ(device_state(rec, "desktop"), "acked") << rec.dump();
  EXPECT_EQ(device_state(rec, "phone"), "dismissed") << rec.dump();
  EXPECT_EQ(rec["messages"][0]["channel"], "user:dana");
  EXPECT_EQ(rec["messages"][0]["offset"], offset);
  EXPECT_TRUE(rec["messages"][0]["devices"][0].contains("acked_at_ms") ||
              rec["messages"][0]["devices"][1].contains("acked_at_ms"));

  // It left the inbox: a device connecting later does not get it.
  Client tablet(server_.port("tcp"));
  ASSERT_TRUE(connect_device(tablet, "dana", "tablet"));
  ASSERT_EQ(tablet.subscribe("user:dana")->type, FrameType::kSubscribeOk);
  EXPECT_TRUE(read_publications(tablet, 1, 300).empty());
}

TEST_F(Durable, ReceiptsOfUnknownIdsAre404AndPendingDevicesAreListed) {
  EXPECT_EQ(http(server_.port("api"), "GET", "/v1/messages/nope").status, 404);
  EXPECT_EQ(http(server_.port("api"), "GET", "/v1/messages/nope", "", "").status, 401);
  {
    Client c(server_.port("tcp"));
    ASSERT_TRUE(connect_device(c, "erin", "laptop"));  // known device, offline afterwards
  }
  // The device is recorded by the store thread: publish once it is there.
  ASSERT_EQ(publish(server_, body("user:erin", "x", "e-1")).status, 200);
  auto rec = wait_receipt(server_, "e-1", [](const nlohmann::json& j) { return device_state(j, "laptop") != ""; });
  EXPECT_EQ(device_state(rec, "laptop"), "pending") << rec.dump();
}

TEST_F(Durable, StateChannelGivesTheSnapshotFirstAndSurvivesARestart) {
  auto tick = [&](const std::string& sym, int px) {
    nlohmann::json j = body("md:ticker", sym + "=" + std::to_string(px));
    j["collapse_key"] = sym;
    return publish(server_, j).status;
  };
  ASSERT_EQ(tick("BTC", 1), 200);
  ASSERT_EQ(tick("ETH", 7), 200);
  ASSERT_EQ(tick("BTC", 2), 200);
  ASSERT_EQ(tick("BTC", 3), 200);
  restart();
  Client c(server_.port("tcp"));
  ASSERT_TRUE(c.handshake(make_token("trader")));
  auto ok = c.subscribe("md:ticker");
  ASSERT_EQ(ok->type, FrameType::kSubscribeOk);
  auto snap = read_publications(c, 3, 500);
  ASSERT_EQ(snap.size(), 2u);
  EXPECT_EQ(text_of(snap[0]), "ETH=7");
  EXPECT_EQ(text_of(snap[1]), "BTC=3");
  ASSERT_EQ(tick("ETH", 8), 200);
  auto upd = read_publications(c, 1);
  ASSERT_EQ(upd.size(), 1u);
  EXPECT_EQ(text_of(upd[0]), "ETH=8");
}

TEST_F(Durable, StatsReportTheStore) {
  ASSERT_EQ(publish(server_, body("dur:s", "x")).status, 200);
  HttpResponse r = http(server_.port("api"), "GET", "/v1/stats");
  ASSERT_EQ(r.status, 200);
  EXPECT_GE(r.json()["store"]["commits"].get<uint64_t>(), 1u) << r.body;
}

// Small socket buffers, so a subscriber that stops reading makes the server queue.
class DurableSlowState : public Durable {
  std::vector<std::string> args() override {
    auto a = Durable::args();
    for (const char* x : {"--delivery.send_buffer_bytes", "16384", "--limits.api_max_body_bytes", "4194304"})
      a.push_back(x);
    return a;
  }
};

TEST_F(DurableSlowState, ASlowConsumerOfAStateChannelGetsTheLatestValuePerKeyInOrder) {
  // The small receive buffer is set before connect: shrunk afterwards, the kernel drops
  // what it had already offered a window for, and the server's retransmission timer backs
  // off for seconds, which looks like a server that stopped writing.
  Client slow(server_.port("tcp"), "127.0.0.1", 16384);
  ASSERT_TRUE(slow.handshake(make_token("slow-trader")));
  ASSERT_EQ(slow.subscribe("md:book")->type, FrameType::kSubscribeOk);

  // 2,000 updates of 8 keys (1 KiB each, P2) while the subscriber reads nothing.
  constexpr int kUpdates = 2000;
  constexpr int kKeys = 8;
  std::map<std::string, uint64_t> latest;  // key -> offset of its last update
  std::map<uint64_t, std::string> sent;    // offset -> text
  for (int b = 0; b < kUpdates / 1000; ++b) {
    nlohmann::json batch = {{"messages", nlohmann::json::array()}};
    for (int i = b * 1000; i < (b + 1) * 1000; ++i) {
      nlohmann::json m = body("md:book", "k" + std::to_string(i % kKeys) + "=" + std::to_string(i) + std::string(1000, '.'));
      m["collapse_key"] = "k" + std::to_string(i % kKeys);
      m["priority"] = 2;
      batch["messages"].push_back(std::move(m));
    }
    HttpResponse r = http(server_.port("api"), "POST", "/v1/publish/batch", batch.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    const auto results = r.json()["results"];
    for (int i = 0; i < 1000; ++i) {
      const auto& res = results[static_cast<size_t>(i)];
      ASSERT_TRUE(res.contains("offset")) << res.dump();
      const uint64_t off = res["offset"];
      latest[batch["messages"][static_cast<size_t>(i)]["collapse_key"]] = off;
      sent[off] = batch["messages"][static_cast<size_t>(i)]["payload"]["text"];
    }
  }
  // Every update was either written to the socket or replaced in the queue (none shed):
  // wait until the replaced ones show in the metric, then read everything.
  const std::string collapsed_sample = "herald_collapsed_total{priority=\"P2\"}";
  EXPECT_GT(wait_metric(server_.port("api"), collapsed_sample, [](double v) { return v > 0; }), 0);
  // Read until the last update published: it is its key's latest value, so it must
  // arrive, and offsets only increase, so nothing may follow it (a short read checks).
  // The deadline is generous for a loaded sanitizer build; reading stops as soon as the
  // stream is complete, not after a silence.
  const uint64_t last = sent.rbegin()->first;
  std::vector<v1::Publication> got;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (got.empty() || got.back().offset() < last) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    auto m = slow.read(static_cast<int>(left.count()));
    if (!m) break;
    if (m->type == FrameType::kPublication) got.push_back(m->as<v1::Publication>());
  }
  while (auto m = slow.read(300)) {
    if (m->type == FrameType::kPublication) got.push_back(m->as<v1::Publication>());
  }
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.back().offset(), last) << "the newest update of all reaches the slow consumer";
  EXPECT_LT(got.size(), static_cast<size_t>(kUpdates / 4)) << "a slow consumer should get far fewer than every update";
  const double collapsed = wait_metric(server_.port("api"), collapsed_sample,
                                       [&](double v) { return v + static_cast<double>(got.size()) >= kUpdates; });
  EXPECT_EQ(collapsed + static_cast<double>(got.size()), kUpdates) << "every update delivered or replaced, exactly once";
  EXPECT_EQ(metric(server_.port("api"), "herald_shed_total{priority=\"P2\"}"), 0);

  // Offsets only increase (so per key too), every message is one that was published,
  // and the last of every key is its latest value.
  std::map<std::string, uint64_t> last_seen;
  for (size_t i = 0; i < got.size(); ++i) {
    if (i > 0) {
      EXPECT_GT(got[i].offset(), got[i - 1].offset());
    }
    EXPECT_EQ(text_of(got[i]), sent[got[i].offset()]);
    last_seen[got[i].collapse_key()] = got[i].offset();
  }
  EXPECT_EQ(last_seen, latest);
  // Resume is correct from any point of this stream: a client that saw only the first
  // i messages (last offset X) already had the latest value of every key whose latest
  // offset is <= X; the rest come from the replay (offsets > X).
  for (size_t i = 0; i < got.size(); ++i) {
    std::map<std::string, uint64_t> prefix;
    for (size_t j = 0; j <= i; ++j) prefix[got[j].collapse_key()] = got[j].offset();
    for (const auto& [key, off] : latest) {
      if (off <= got[i].offset()) {
        EXPECT_EQ(prefix[key], off) << "cut after " << i << ", key " << key;
      }
    }
  }
  // And the server's replay from the middle of the stream gives exactly the rest.
  const uint64_t cut = got[got.size() / 2].offset();
  Client again(server_.port("tcp"));
  ASSERT_TRUE(again.handshake(make_token("slow-trader")));
  auto resumed = again.subscribe("md:book", true, got[0].epoch(), cut);
  ASSERT_EQ(resumed->type, FrameType::kSubscribeOk);
  EXPECT_TRUE(resumed->as<v1::SubscribeOk>().recovered());
  std::set<uint64_t> expected;
  for (const auto& [key, off] : latest) {
    if (off > cut) expected.insert(off);
  }
  std::set<uint64_t> replayed;
  for (const auto& p : read_publications(again, expected.size() + 1, 1000)) replayed.insert(p.offset());
  EXPECT_EQ(replayed, expected);
}

TEST(DurableStartup, RefusesABadSynchronousSettingAndAnUnusableDirectory) {
  HeralddProcess a;
  EXPECT_FALSE(a.start({"--store.synchronous", "OFF"}));
  EXPECT_NE(a.log().find("store.synchronous"), std::string::npos) << a.log();
  HeralddProcess b;
  EXPECT_FALSE(b.start({"--store.dir", "/proc/herald-cannot-be-here"}));
  EXPECT_NE(b.log().find("store.dir"), std::string::npos) << b.log();
}

// server.api_threads: several API loops accept on the same listener; durable publishes
// answered from the store thread and the routes answered from the event loops (users,
// disconnect) or a worker (integrity) reach the right loop whichever one accepted.
TEST(DurableApiThreads, EveryRouteAnswersFromEveryApiThread) {
  HeralddProcess server;
  ASSERT_TRUE(server.start({"--server.api_threads", "3", "--namespace",
                            "name=dur,subscribe=any,durable=true,history_size=1000,history_ttl_s=0"}))
      << server.log();
  const uint16_t api = server.port("api");
  // 6 publishers x 40 publishes, one connection each (the kernel spreads them).
  std::vector<std::thread> publishers;
  std::mutex mu;
  std::vector<uint64_t> offsets;
  std::atomic<int> failures{0};
  for (int t = 0; t < 6; ++t) {
    publishers.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) {
        HttpResponse r = http(api, "POST", "/v1/publish",
                              body("dur:threads", "m", "t" + std::to_string(t) + "-" + std::to_string(i)).dump());
        if (r.status != 200) {
          ++failures;
          continue;
        }
        std::lock_guard lock(mu);
        offsets.push_back(r.json()["offset"]);
      }
    });
  }
  for (auto& t : publishers) t.join();
  EXPECT_EQ(failures.load(), 0);
  std::sort(offsets.begin(), offsets.end());
  ASSERT_EQ(offsets.size(), 240u);
  for (size_t i = 0; i < offsets.size(); ++i) EXPECT_EQ(offsets[i], i + 1);
  // Each route several times, on new connections.
  for (int i = 0; i < 9; ++i) {
    EXPECT_EQ(http(api, "GET", "/v1/users/nobody").status, 200);
    EXPECT_EQ(http(api, "POST", "/v1/users/nobody/disconnect", "{}").status, 200);
    EXPECT_EQ(http(api, "GET", "/v1/stats").status, 200);
    EXPECT_EQ(http(api, "GET", "/v1/messages/t0-" + std::to_string(i)).status, 200);
    EXPECT_EQ(http(api, "GET", "/healthz").status, 200);
  }
  HttpResponse integrity = http(api, "GET", "/v1/admin/integrity");
  ASSERT_EQ(integrity.status, 200) << integrity.body;
  EXPECT_TRUE(integrity.json()["ok"].get<bool>());
  // A clean shutdown stops the API threads.
  EXPECT_EQ(server.stop(SIGTERM), 0) << server.log();
}

TEST(DurableStartup, NormalSynchronousModeRunsAndKeepsData) {
  HeralddProcess s;
  ASSERT_TRUE(s.start({"--store.synchronous", "NORMAL"})) << s.log();
  EXPECT_NE(s.log().find("synchronous=NORMAL"), std::string::npos);
  ASSERT_EQ(publish(s, body("user:z", "kept")).status, 200);
  ASSERT_EQ(s.stop(SIGKILL), 128 + SIGKILL);
  ASSERT_TRUE(s.start({"--store.synchronous", "NORMAL"}));
  Client c(s.port("tcp"));
  ASSERT_TRUE(c.handshake(make_token("z")));
  ASSERT_EQ(c.subscribe("user:z")->type, FrameType::kSubscribeOk);
  EXPECT_EQ(read_publications(c, 1).size(), 1u);
}

TEST(DurableStartup, ANewerSchemaIsRefused) {
  HeralddProcess s;
  ASSERT_TRUE(s.start()) << s.log();
  ASSERT_EQ(s.stop(SIGTERM), 0);
  const std::string cmd = "sqlite3 " + s.data_dir() + "/herald.db 'UPDATE schema_version SET version = 999'";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  EXPECT_FALSE(s.start());
  EXPECT_NE(s.log().find("schema version 999"), std::string::npos) << s.log();
}

// Disk full (TESTING.md): heraldd's store on a 3 MiB tmpfs in its own mount namespace
// (unshare -m); the space is filled and freed from inside that namespace (nsenter).
class DiskFull : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/heraldd-full-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    data_ = dir_ + "/data";
    std::filesystem::create_directories(data_);
    const std::string ready = dir_ + "/ready.json";
    const std::string script = "mount -t tmpfs -o size=3m tmpfs " + data_ + " && exec " + HERALDD_PATH +
                               " --ready-file " + ready + " --listen.tcp 127.0.0.1:0 --listen.api 127.0.0.1:0 --listen.ws 127.0.0.1:0" +
                               " --server.loops 1 --store.dir " + data_ + " >" + dir_ + "/log 2>&1";
    child_ = ::fork();
    if (child_ == 0) {
      ::execl("/usr/bin/unshare", "unshare", "-m", "--propagation", "private", "sh", "-c", script.c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (std::chrono::steady_clock::now() < deadline) {
      std::ifstream in(ready);
      nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
      if (in && !j.is_discarded() && j.contains("api")) {
        std::string host;
        split_address(j["api"], host, api_);
        split_address(j["tcp"], host, tcp_);
        return;
      }
      int st = 0;
      if (::waitpid(child_, &st, WNOHANG) == child_) {
        child_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL() << "heraldd did not start in a mount namespace: " << log();
  }
  void TearDown() override {
    if (child_ > 0) {
      ::kill(child_, SIGKILL);
      int st = 0;
      ::waitpid(child_, &st, 0);
    }
    if (HasFailure()) std::cerr << "---- heraldd log ----\n" << log() << "---- end ----\n";
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string log() const {
    std::ifstream in(dir_ + "/log");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // Runs `cmd` in heraldd's mount namespace.
  int in_namespace(const std::string& cmd) const {
    const std::string full = "nsenter -t " + std::to_string(child_) + " -m sh -c '" + cmd + "' >/dev/null 2>&1";
    return std::system(full.c_str());
  }
  HttpResponse publish_id(const std::string& id) const {
    nlohmann::json b = {{"channel", "user:full"}, {"message_id", id}, {"payload", std::string(1024, 'x')}};
    return http(api_, "POST", "/v1/publish", b.dump());
  }

  std::string dir_, data_;
  pid_t child_ = -1;
  uint16_t api_ = 0, tcp_ = 0;
};

TEST_F(DiskFull, PublishesAreRefusedNothingUnstoredIsAckedAndServiceReturns) {
  std::set<std::string> acked, refused;
  int n = 0;
  for (; n < 20; ++n) {
    ASSERT_EQ(publish_id("f-" + std::to_string(n)).status, 200);
    acked.insert("f-" + std::to_string(n));
  }
  // Fill the file system (dd stops with ENOSPC).
  in_namespace("dd if=/dev/zero of=" + data_ + "/filler bs=4096");
  int first_refusal = -1;
  for (int k = 0; k < 2000 && refused.size() < 5; ++k, ++n) {
    const std::string id = "f-" + std::to_string(n);
    HttpResponse r = publish_id(id);
    if (r.status == 200) {
      acked.insert(id);
      continue;
    }
    ASSERT_EQ(r.status, 503) << r.body;
    EXPECT_EQ(r.json()["error"]["code"], static_cast<int>(Status::kStorageUnavailable)) << r.body;
    EXPECT_TRUE(r.json()["error"]["temporary"].get<bool>());
    if (first_refusal < 0) first_refusal = k;
    refused.insert(id);
  }
  ASSERT_FALSE(refused.empty()) << "the store never ran out of space";
  EXPECT_NE(log().find("full"), std::string::npos) << "the log names the cause";

  // Space returns: publishes succeed again.
  ASSERT_EQ(in_namespace("rm -f " + data_ + "/filler"), 0);
  bool back = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!back && std::chrono::steady_clock::now() < deadline) {
    const std::string id = "f-" + std::to_string(n++);
    HttpResponse r = publish_id(id);
    if (r.status == 200) {
      acked.insert(id);
      back = true;
    } else {
      refused.insert(id);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ASSERT_TRUE(back) << log();

  // Everything acknowledged is stored, in order, and nothing refused is.
  Client c(tcp_);
  ASSERT_TRUE(c.handshake(make_token("full")));
  auto ok = c.subscribe("user:full", true, "", 0);
  ASSERT_EQ(ok->type, FrameType::kSubscribeOk);
  std::set<std::string> got;
  uint64_t last = 0;
  for (auto& p : read_publications(c, acked.size() + 1, 3000)) {
    EXPECT_GT(p.offset(), last);
    last = p.offset();
    got.insert(p.message_id());
  }
  EXPECT_EQ(got, acked);
  HttpResponse integrity = http(api_, "GET", "/v1/admin/integrity");
  EXPECT_EQ(integrity.json()["result"], "ok") << integrity.body;
}

}  // namespace
}  // namespace herald::testing
