// Tests bench/floor_server over real sockets: starts the binary on port 0 (two threads, so
// connections land on both), checks the exact RESP2 bytes it sends, that the load generator's
// Redis adapter (bench/loadgen/redis_protocol.cc) agrees with it, and that SIGTERM stops it
// with exit status 0. Prints the server's stderr when a test fails.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "protocol.h"

namespace herald::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kTimeout = std::chrono::seconds(10);

int ms_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

// floor_server started with `args`, stopped by SIGTERM (and checked to exit 0) when destroyed.
class FloorServer {
 public:
  explicit FloorServer(std::vector<std::string> args) {
    char tmpl[] = "/tmp/floor-server-XXXXXX";
    const int log_fd = ::mkstemp(tmpl);
    log_path_ = tmpl;
    int out[2];
    if (log_fd < 0 || ::pipe(out) != 0) return;
    args.insert(args.begin(), FLOOR_SERVER_PATH);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      ::dup2(log_fd, 2);
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      _exit(127);
    }
    ::close(out[1]);
    ::close(log_fd);
    // The first stdout line is "port=NNNN".
    std::string line;
    const auto deadline = Clock::now() + kTimeout;
    pollfd p{out[0], POLLIN, 0};
    while (line.find('\n') == std::string::npos && ::poll(&p, 1, ms_left(deadline)) > 0) {
      char b[64];
      const ssize_t n = ::read(out[0], b, sizeof b);
      if (n <= 0) break;
      line.append(b, static_cast<size_t>(n));
    }
    ::close(out[0]);
    if (line.rfind("port=", 0) == 0) port_ = std::atoi(line.c_str() + 5);
  }
  FloorServer(const FloorServer&) = delete;
  FloorServer& operator=(const FloorServer&) = delete;

  ~FloorServer() {
    if (pid_ > 0 && !stopped_) stop();
    if (::testing::Test::HasFailure()) {
      std::ifstream f(log_path_);
      std::cerr << "---- floor_server stderr ----\n" << f.rdbuf() << "\n";
    }
    ::unlink(log_path_.c_str());
  }

  // SIGTERM; returns the exit status (-1: killed after the deadline or not a normal exit).
  int stop() {
    stopped_ = true;
    ::kill(pid_, SIGTERM);
    const auto deadline = Clock::now() + kTimeout;
    int st = 0;
    while (::waitpid(pid_, &st, WNOHANG) != pid_) {
      if (Clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &st, 0);
        return -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  }

  int port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int port_ = -1;
  bool stopped_ = false;
  std::string log_path_;
};

// A blocking client socket with deadlines on reads.
class Client {
 public:
  explicit Client(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd_);
      fd_ = -1;
      return;
    }
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client() {
    if (fd_ >= 0) ::close(fd_);
  }

  bool ok() const { return fd_ >= 0; }

  bool send(std::string_view s) {
    while (!s.empty()) {
      const ssize_t n = ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      s.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Exactly n bytes, or fewer if the deadline passed or the server closed.
  std::string read(size_t n) {
    std::string got;
    const auto deadline = Clock::now() + kTimeout;
    while (got.size() < n) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, ms_left(deadline)) <= 0) break;
      char b[65536];
      const ssize_t r = ::recv(fd_, b, std::min(sizeof b, n - got.size()), 0);
      if (r <= 0) break;
      got.append(b, static_cast<size_t>(r));
    }
    return got;
  }

  // Whatever arrives within `ms` (for "nothing more was sent").
  std::string read_for(int ms) {
    std::string got;
    pollfd p{fd_, POLLIN, 0};
    while (::poll(&p, 1, ms) > 0) {
      char b[4096];
      const ssize_t r = ::recv(fd_, b, sizeof b, 0);
      if (r <= 0) break;
      got.append(b, static_cast<size_t>(r));
    }
    return got;
  }

  // True when the server closed the connection (EOF or reset) within the deadline.
  bool closed_by_server() {
    const auto deadline = Clock::now() + kTimeout;
    for (;;) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, ms_left(deadline)) <= 0) return false;
      char b[4096];
      const ssize_t r = ::recv(fd_, b, sizeof b, 0);
      if (r <= 0) return true;
    }
  }

  int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

std::string bulk(std::string_view s) { return "$" + std::to_string(s.size()) + "\r\n" + std::string(s) + "\r\n"; }
std::string command(std::initializer_list<std::string_view> args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (std::string_view a : args) out += bulk(a);
  return out;
}
std::string subscribed(std::string_view ch, int count) {
  return "*3\r\n$9\r\nsubscribe\r\n" + bulk(ch) + ":" + std::to_string(count) + "\r\n";
}
std::string message(std::string_view ch, std::string_view payload) {
  return "*3\r\n$7\r\nmessage\r\n" + bulk(ch) + bulk(payload);
}
// Reads as many bytes as `want` has and expects exactly them.
void expect_read(Client& c, const std::string& want) { EXPECT_EQ(c.read(want.size()), want); }

class FloorServerTest : public ::testing::Test {
 protected:
  FloorServer server_{{"--port", "0", "--threads", "2"}};
};

TEST_F(FloorServerTest, PublishReachesBothSubscribersWithTheExactBytes) {
  ASSERT_GT(server_.port(), 0);
  // Dealt out round-robin: a on thread 0, b on thread 1, the publisher on thread 0.
  Client a(server_.port()), b(server_.port()), pub(server_.port());
  ASSERT_TRUE(a.ok() && b.ok() && pub.ok());
  for (Client* c : {&a, &b}) {
    ASSERT_TRUE(c->send(command({"SUBSCRIBE", "news"})));
    EXPECT_EQ(c->read(subscribed("news", 1).size()), subscribed("news", 1));
  }
  static const char kRaw[] = "line\r\n*3\r\n$7\r\nmessage\0\xff end";
  const std::string payload(kRaw, sizeof kRaw - 1);
  ASSERT_TRUE(pub.send(command({"PUBLISH", "news", payload})));
  EXPECT_EQ(pub.read(4), ":2\r\n");
  EXPECT_EQ(a.read(message("news", payload).size()), message("news", payload));
  EXPECT_EQ(b.read(message("news", payload).size()), message("news", payload));
  // Nobody listens on another channel; nothing more reaches the subscribers.
  ASSERT_TRUE(pub.send(command({"publish", "other", "x"})));
  EXPECT_EQ(pub.read(4), ":0\r\n");
  EXPECT_EQ(a.read_for(50), "");
  EXPECT_EQ(b.read_for(0), "");
  EXPECT_EQ(server_.stop(), 0);
}

TEST_F(FloorServerTest, UnknownCommandGetsAnErrorAndTheConnectionStays) {
  ASSERT_GT(server_.port(), 0);
  Client c(server_.port());
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.send(command({"GET", "k"})));
  expect_read(c, "-ERR unknown command\r\n");
  ASSERT_TRUE(c.send(command({"PING"})));
  expect_read(c, "+PONG\r\n");
  ASSERT_TRUE(c.send("PING\r\n"));  // inline, as redis-cli or telnet would
  expect_read(c, "+PONG\r\n");
  ASSERT_TRUE(c.send(command({"PUBLISH", "only-two-args"})));
  expect_read(c, "-ERR wrong number of arguments for 'publish' command\r\n");
}

TEST_F(FloorServerTest, PipelinedAndByteAtATimeCommandsAllArriveInOrder) {
  ASSERT_GT(server_.port(), 0);
  Client sub(server_.port()), other(server_.port()), pub(server_.port());
  ASSERT_TRUE(sub.ok() && other.ok() && pub.ok());
  ASSERT_TRUE(sub.send(command({"SUBSCRIBE", "a", "b", "a"})));
  const std::string confirms = subscribed("a", 1) + subscribed("b", 2) + subscribed("a", 2);
  EXPECT_EQ(sub.read(confirms.size()), confirms);
  ASSERT_TRUE(other.send(command({"SUBSCRIBE", "b"})));
  EXPECT_EQ(other.read(subscribed("b", 1).size()), subscribed("b", 1));
  std::string batch, want_sub, want_other, want_replies;
  for (int i = 0; i < 200; ++i) {
    const std::string ch = i % 2 == 0 ? "a" : "b";
    std::string p = "m";  // not "m" + to_string(i): GCC 12 warns falsely (-Wrestrict) at -O3
    p += std::to_string(i);
    batch += command({"PUBLISH", ch, p});
    want_sub += message(ch, p);
    if (ch == "b") want_other += message(ch, p);
    want_replies += ch == "a" ? ":1\r\n" : ":2\r\n";
  }
  ASSERT_TRUE(pub.send(batch));
  EXPECT_EQ(pub.read(want_replies.size()), want_replies);
  // One more, a byte at a time.
  const std::string last = command({"PUBLISH", "a", "last"});
  for (char ch : last) {
    ASSERT_TRUE(pub.send(std::string_view(&ch, 1)));
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  EXPECT_EQ(pub.read(4), ":1\r\n");
  want_sub += message("a", "last");
  EXPECT_EQ(sub.read(want_sub.size()), want_sub);
  EXPECT_EQ(other.read(want_other.size()), want_other);
}

TEST_F(FloorServerTest, OversizedOrMalformedInputClosesTheConnection) {
  ASSERT_GT(server_.port(), 0);
  {
    Client c(server_.port());
    ASSERT_TRUE(c.send("*3\r\n$7\r\nPUBLISH\r\n$1\r\nx\r\n$99999999\r\n"));  // declared past 1 MiB
    expect_read(c, "-ERR Protocol error: invalid bulk length\r\n");
    EXPECT_TRUE(c.closed_by_server());
  }
  {
    Client c(server_.port());
    ASSERT_TRUE(c.send("*1\r\n+PING\r\n"));
    expect_read(c, "-ERR Protocol error: expected '$'\r\n");
    EXPECT_TRUE(c.closed_by_server());
  }
  {
    // An inline line that never ends: closed once more than 1 MiB is buffered. Exactly one
    // byte more, so that the server has read everything when it closes (no reset).
    Client c(server_.port());
    const std::string chunk(64 << 10, 'x');
    for (int i = 0; i < 16; ++i) ASSERT_TRUE(c.send(chunk));
    ASSERT_TRUE(c.send("x"));
    expect_read(c, "-ERR input buffer limit reached\r\n");
    EXPECT_TRUE(c.closed_by_server());
  }
  Client alive(server_.port());
  ASSERT_TRUE(alive.send(command({"PING"})));
  expect_read(alive, "+PONG\r\n");
}

// The load generator's Redis adapter, through its own bytes, against floor_server.
struct Events final : Sink {
  int ready = 0, published = 0;
  std::vector<std::string> messages;
  std::string error;
  void on_ready() override { ++ready; }
  void on_message(std::string_view p) override { messages.emplace_back(p); }
  void on_published() override { ++published; }
  void on_error(std::string what) override { error = std::move(what); }
};

// Feeds what arrives on c to the adapter until `done` or the deadline.
template <typename Done>
void pump(Client& c, Protocol& proto, Events& ev, Done done) {
  const auto deadline = Clock::now() + kTimeout;
  while (!done() && ev.error.empty() && Clock::now() < deadline) {
    pollfd p{c.fd(), POLLIN, 0};
    if (::poll(&p, 1, ms_left(deadline)) <= 0) break;
    uint8_t b[65536];
    const ssize_t r = ::recv(c.fd(), b, sizeof b, 0);
    if (r <= 0) break;
    std::string out;
    proto.on_input(b, static_cast<size_t>(r), out, ev);
  }
}

TEST_F(FloorServerTest, TheLoadGeneratorsRedisAdapterAgrees) {
  ASSERT_GT(server_.port(), 0);
  const ConnParams params;
  Client s1(server_.port()), s2(server_.port()), p(server_.port());
  auto a1 = make_redis_protocol(params), a2 = make_redis_protocol(params), ap = make_redis_protocol(params);
  Events e1, e2, ep;
  const std::string ch = "bench:all";
  std::string out;
  a1->start_subscriber(out, &ch, 1);
  ASSERT_TRUE(s1.send(out));
  out.clear();
  a2->start_subscriber(out, &ch, 1);
  ASSERT_TRUE(s2.send(out));
  out.clear();
  ap->start_publisher(out);
  ASSERT_TRUE(p.send(out));
  pump(s1, *a1, e1, [&] { return e1.ready == 1; });
  pump(s2, *a2, e2, [&] { return e2.ready == 1; });
  pump(p, *ap, ep, [&] { return ep.ready == 1; });
  ASSERT_EQ(e1.ready + e2.ready + ep.ready, 3) << e1.error << e2.error << ep.error;
  std::vector<std::string> payloads = {std::string(17, '\0'), "a\r\nb", std::string(100000, '\xff'), ""};
  out.clear();
  for (const std::string& pl : payloads) ap->publish(out, ch, pl);
  ASSERT_TRUE(p.send(out));
  pump(p, *ap, ep, [&] { return ep.published == 4; });
  pump(s1, *a1, e1, [&] { return e1.messages.size() == 4; });
  pump(s2, *a2, e2, [&] { return e2.messages.size() == 4; });
  EXPECT_EQ(ep.published, 4) << ep.error;
  EXPECT_EQ(e1.messages, payloads) << e1.error;
  EXPECT_EQ(e2.messages, payloads) << e2.error;
}

TEST(FloorServerUring, DeliversLikeTheWriteMode) {
  FloorServer server({"--port", "0", "--threads", "2", "--uring"});
  ASSERT_GT(server.port(), 0);
  Client a(server.port()), b(server.port()), c(server.port()), pub(server.port());
  for (Client* s : {&a, &b, &c}) {
    ASSERT_TRUE(s->send(command({"SUBSCRIBE", "u"})));
    EXPECT_EQ(s->read(subscribed("u", 1).size()), subscribed("u", 1));
  }
  std::string batch, want;
  for (int i = 0; i < 50; ++i) {
    batch += command({"PUBLISH", "u", std::to_string(i)});
    want += message("u", std::to_string(i));
  }
  ASSERT_TRUE(pub.send(batch));
  for (Client* s : {&a, &b, &c}) EXPECT_EQ(s->read(want.size()), want);
  EXPECT_EQ(server.stop(), 0);
}

}  // namespace
}  // namespace herald::bench
