// A real network partition between herald::Client and heraldd. heraldd runs in a network
// namespace of its own, reached through a veth pair; a blackhole route in that namespace
// silently drops everything it sends to the client, as a cut path between two hosts would
// (both sockets stay open, nothing is reset). The client's heartbeat notices, reconnect
// attempts time out with backoff, and once the route is gone the client resumes with no gap
// and no duplicate. Needs root and iproute2 (CI runs as root; .ci/install-deps.sh installs
// iproute2); without them the test fails, it is never skipped.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include "tests/client_support/recorder.h"

namespace herald::testing {
namespace {

constexpr const char* kIp = "/usr/sbin/ip";

bool run(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0; }

// A namespace with a veth pair to it, named and numbered after this process so that tests
// running in parallel do not collide. The client's side is `client_ip`, heraldd's `server_ip`.
class NetNs {
 public:
  NetNs() {
    const unsigned pid = static_cast<unsigned>(::getpid());
    name_ = "hp" + std::to_string(pid);
    outer_ = "hpa" + std::to_string(pid % 10000000);
    inner_ = "hpb" + std::to_string(pid % 10000000);
    const std::string net = "10.99." + std::to_string(pid % 256) + ".";
    const unsigned base = (pid / 256) % 32 * 8;
    client_ip_ = net + std::to_string(base + 1);
    server_ip_ = net + std::to_string(base + 2);
    const std::string in = std::string(kIp) + " netns exec " + name_ + " " + kIp;
    ok_ = run(std::string(kIp) + " netns add " + name_) &&
          run(std::string(kIp) + " link add " + outer_ + " type veth peer name " + inner_) &&
          run(std::string(kIp) + " link set " + inner_ + " netns " + name_) &&
          run(std::string(kIp) + " addr add " + client_ip_ + "/29 dev " + outer_) &&
          run(std::string(kIp) + " link set " + outer_ + " up") && run(in + " addr add " + server_ip_ + "/29 dev " + inner_) &&
          run(in + " link set " + inner_ + " up") && run(in + " link set lo up");
  }
  ~NetNs() {
    run(std::string(kIp) + " link del " + outer_);
    run(std::string(kIp) + " netns del " + name_);
  }
  bool ok() const { return ok_; }
  const std::string& name() const { return name_; }
  const std::string& client_ip() const { return client_ip_; }
  const std::string& server_ip() const { return server_ip_; }

  // Everything heraldd sends to the client vanishes (true), or flows again (false).
  bool cut(bool on) const {
    return run(std::string(kIp) + " netns exec " + name_ + " " + kIp + " route " + (on ? "add" : "del") +
               " blackhole " + client_ip_ + "/32");
  }

  // Runs `f` on a thread that has entered the namespace (its loopback is heraldd's).
  template <class F>
  bool inside(F&& f) const {
    bool entered = false;
    std::thread t([&] {
      const int fd = ::open(("/var/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC);
      entered = fd >= 0 && ::setns(fd, CLONE_NEWNET) == 0;
      if (fd >= 0) ::close(fd);
      if (entered) f();
    });
    t.join();
    return entered;
  }

 private:
  std::string name_, outer_, inner_, client_ip_, server_ip_;
  bool ok_ = false;
};

TEST(ClientPartition, HeartbeatCatchesACutPathThenBackoffAndResumeWithNoGap) {
  NetNs ns;
  ASSERT_TRUE(ns.ok()) << "cannot make a network namespace with a veth pair (needs root and iproute2)";
  HeralddProcess server;
  server.set_exec_prefix({kIp, "netns", "exec", ns.name()});
  ASSERT_TRUE(server.start({"--listen.tcp", ns.server_ip() + ":0"}));
  ASSERT_EQ(server.address("tcp").rfind(ns.server_ip() + ":", 0), 0u) << server.address("tcp");
  // The HTTP API listens on the namespace's loopback: publishing goes through a thread in it.
  auto publish_inside = [&](const std::string& text) {
    uint64_t offset = 0;
    EXPECT_TRUE(ns.inside([&] { offset = publish(server, "news", text); }));
    return offset;
  };

  Recorder rec;
  Options o = client_options(server.port("tcp"), "alice", {"news"});
  o.host = ns.server_ip();
  o.bind_address = ns.client_ip();
  detect_silence_quickly(o);  // a SYN whose SYN-ACK is dropped never completes
  auto client = herald::Client::create(o, rec.handlers());
  ASSERT_TRUE(client);
  client->subscribe("news");
  client->start();
  ASSERT_TRUE(rec.wait_subscribed(1));
  ASSERT_EQ(publish_inside("1"), 1u);
  ASSERT_TRUE(rec.wait_messages(1));

  ASSERT_TRUE(ns.cut(true));
  const auto cut_at = std::chrono::steady_clock::now();
  // Published while the path is cut: heraldd accepts it, the client cannot see it yet.
  ASSERT_EQ(publish_inside("2"), 2u);
  ASSERT_TRUE(rec.wait_state_code(507));  // kHeartbeatTimeout
  // Reconnect attempts fail while the path stays cut (connect timeouts), spaced by backoff.
  const ConnectionState reconnecting = ConnectionState::kReconnecting;
  ASSERT_TRUE(rec.wait_state_code(700, 2, &reconnecting, 10000));  // kConnectFailed: "connect ... timed out"
  ASSERT_EQ(publish_inside("3"), 3u);
  ASSERT_TRUE(ns.cut(false));

  ASSERT_TRUE(rec.wait_subscribed(2, 10000));
  ASSERT_EQ(publish_inside("4"), 4u);
  ASSERT_TRUE(rec.wait_messages(4, 10000));
  const auto subs = rec.snapshot(rec.subscribed);
  EXPECT_TRUE(subs.back().resumed);
  EXPECT_TRUE(subs.back().recovered);
  const auto got = rec.snapshot(rec.messages);
  ASSERT_EQ(got.size(), 4u);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].offset, i + 1);
    EXPECT_EQ(got[i].payload, "\"" + std::to_string(i + 1) + "\"");
  }

  const auto gaps = rec.connect_gaps_ms(cut_at);  // attempts spaced by the backoff
  ASSERT_GE(gaps.size(), 1u);
  for (const int64_t g : gaps) EXPECT_GE(g, 50);
}

}  // namespace
}  // namespace herald::testing
