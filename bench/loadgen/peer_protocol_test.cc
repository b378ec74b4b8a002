// Tests the load generator's MQTT, Redis and NATS adapters against the real mosquitto,
// redis-server and nats-server (started by bench/peers/start.sh on free loopback ports in
// temporary directories), over real sockets; then replays what the servers sent at every
// split point. Owns no adapter logic: it only drives the adapters like the load generator.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "protocol.h"

namespace herald::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kTimeout = std::chrono::seconds(20);

// ---------------------------------------------------------------------------------------
// A peer server started by bench/peers/start.sh, stopped (by its pid) when destroyed.

int free_port() {
  for (int attempt = 0; attempt < 20; ++attempt) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    int port = -1;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      port = ntohs(a.sin_port);
    }
    ::close(fd);
    if (port > 0 && port != 1883 && port != 6379 && port != 4222) return port;
  }
  return -1;
}

bool process_gone(int pid) {
  if (::kill(pid, 0) != 0) return errno == ESRCH;
  // Not our child: once it exits, whoever adopted it may leave a zombie behind for a while.
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  auto close_paren = s.rfind(')');
  return close_paren != std::string::npos && close_paren + 2 < s.size() && s[close_paren + 2] == 'Z';
}

class PeerServer {
 public:
  PeerServer(const std::string& system, const std::string& variant = "") : system_(system) {
    char tmpl[] = "/tmp/herald-peer-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) return;
    dir_ = tmpl;
    for (int attempt = 0; attempt < 3 && pid_ <= 0; ++attempt) {  // a port may be taken meanwhile
      port_ = free_port();
      std::string cmd = std::string(HERALD_SOURCE_DIR) + "/bench/peers/start.sh " + system + " " +
                        std::to_string(port_) + " " + dir_ + " " + variant;
      FILE* f = ::popen(cmd.c_str(), "r");
      if (f == nullptr) break;
      char line[256] = {};
      std::string out;
      while (std::fgets(line, sizeof line, f) != nullptr) out += line;
      int rc = ::pclose(f);
      if (rc == 0) {
        std::istringstream in(out);
        in >> pid_ >> version_;
      }
    }
  }
  PeerServer(const PeerServer&) = delete;
  PeerServer& operator=(const PeerServer&) = delete;

  ~PeerServer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      auto deadline = Clock::now() + std::chrono::seconds(10);
      while (!process_gone(pid_) && Clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      if (!process_gone(pid_)) ::kill(pid_, SIGKILL);
    }
    if (::testing::Test::HasFailure() && !dir_.empty()) {
      std::string base = system_ == "mqtt" ? "mosquitto" : system_;
      for (const char* ext : {".log", ".stdout"}) {
        std::ifstream f(dir_ + "/" + base + ext);
        std::cerr << "---- " << base << ext << " ----\n" << f.rdbuf() << "\n";
      }
    }
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

  bool ok() const { return pid_ > 0; }
  int port() const { return port_; }
  const std::string& version() const { return version_; }

 private:
  std::string system_;
  std::string dir_;
  int port_ = -1;
  int pid_ = -1;
  std::string version_;
};

// ---------------------------------------------------------------------------------------
// Events reported by an adapter, in order, as text ("ready", "msg:<payload>", "pub", "err").

struct Recorder final : Sink {
  std::vector<std::string> log;
  std::vector<std::string> messages;
  size_t ready = 0;
  size_t published = 0;
  std::string error;
  void on_ready() override {
    ++ready;
    log.push_back("ready");
  }
  void on_message(std::string_view payload) override {
    messages.emplace_back(payload);
    log.push_back("msg:" + std::string(payload));
  }
  void on_published() override {
    ++published;
    log.push_back("pub");
  }
  void on_error(std::string what) override {
    if (error.empty()) error = what;
    log.push_back("err:" + what);
  }
};

// "" when equal, else where two event lists first differ (short: payloads can be 100 kB).
std::string diff(const std::vector<std::string>& got, const std::vector<std::string>& want) {
  if (got == want) return "";
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  auto show = [i](const std::vector<std::string>& v) {
    if (i >= v.size()) return std::string("<end>");
    std::string out;
    for (char ch : v[i].substr(0, 60)) {
      if (ch >= 0x20 && ch < 0x7f) {
        out.push_back(ch);
      } else {
        char hex[8];
        std::snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned char>(ch));
        out += hex;
      }
    }
    return out + " (" + std::to_string(v[i].size()) + " bytes)";
  };
  return "first difference at " + std::to_string(i) + " of " + std::to_string(got.size()) + " vs " +
         std::to_string(want.size()) + ": got " + show(got) + ", want " + show(want);
}

// One connection: a non-blocking socket driven by an adapter, recording what the server
// sent (`input`) and what the adapter answered from on_input (`answers`).
class Conn {
 public:
  Conn(int port, std::unique_ptr<Protocol> proto) : proto_(std::move(proto)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    connect_failed_ = rc != 0 && errno != EINPROGRESS;
  }
  ~Conn() {
    if (fd_ >= 0) ::close(fd_);
  }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  Protocol& proto() { return *proto_; }
  Recorder& events() { return events_; }
  const std::string& input() const { return input_; }
  const std::string& answers() const { return answers_; }
  bool dead() const { return dead_ || connect_failed_; }
  int fd() const { return fd_; }
  bool wants_write() const { return !outbox_.empty(); }

  void queue(const std::string& bytes) { outbox_ += bytes; }

  // Publishes through the adapter, remembering how much input had arrived by then, so a
  // replay can make the same calls at the same points.
  void publish(std::string_view channel, std::string_view payload) {
    std::string out;
    proto_->publish(out, channel, payload);
    outbox_ += out;
    script_.push_back({input_.size(), std::string(payload)});
  }
  struct Step {
    size_t at;  // bytes of input received before the call
    std::string payload;
  };
  const std::vector<Step>& script() const { return script_; }

  void on_readable() {
    uint8_t buf[16384];
    for (;;) {
      ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n > 0) {
        input_.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
        std::string out;
        if (!failed_ && !proto_->on_input(buf, static_cast<size_t>(n), out, events_)) failed_ = true;
        answers_ += out;
        outbox_ += out;
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EINTR)) dead_ = true;
      return;
    }
  }

  void on_writable() {
    while (!outbox_.empty()) {
      ssize_t n = ::send(fd_, outbox_.data(), outbox_.size(), MSG_NOSIGNAL);
      if (n > 0) {
        outbox_.erase(0, static_cast<size_t>(n));
      } else {
        if (n < 0 && errno != EAGAIN && errno != EINTR) dead_ = true;
        return;
      }
    }
  }

 private:
  int fd_ = -1;
  bool connect_failed_ = false;
  bool dead_ = false;
  bool failed_ = false;
  std::unique_ptr<Protocol> proto_;
  Recorder events_;
  std::string input_;
  std::string answers_;
  std::string outbox_;
  std::vector<Step> script_;
};

// Drives the connections until `done` holds (true) or the deadline passes (false).
bool pump(const std::vector<Conn*>& conns, const std::function<bool()>& done) {
  auto deadline = Clock::now() + kTimeout;
  while (!done()) {
    if (Clock::now() > deadline) return false;
    std::vector<pollfd> fds;
    for (Conn* c : conns) {
      short ev = POLLIN;
      if (c->wants_write()) ev |= POLLOUT;
      fds.push_back({c->fd(), ev, 0});
    }
    ::poll(fds.data(), fds.size(), 20);
    for (size_t i = 0; i < conns.size(); ++i) {
      if (fds[i].revents & POLLOUT) conns[i]->on_writable();
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) conns[i]->on_readable();
      if (conns[i]->wants_write()) conns[i]->on_writable();
    }
  }
  return true;
}

// ---------------------------------------------------------------------------------------
// Per-system facts.

struct Case {
  const char* system;  // start.sh's name and ConnParams flavour
  System kind;
  int qos;
  const char* channel;
};

std::unique_ptr<Protocol> make(const Case& c, const std::string& id) {
  ConnParams p;
  p.client_id = id;
  p.qos = c.qos;
  switch (c.kind) {
    case System::kMqtt:
      return make_mqtt_protocol(p);
    case System::kRedis:
      return make_redis_protocol(p);
    default:
      return make_nats_protocol(p);
  }
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return std::string(info.param.system) + "_qos" + std::to_string(info.param.qos);
}

// Payloads with the bytes text protocols trip over: CR LF, NUL, 0xff, "MSG"/"$" look-alikes,
// an empty one, and one larger than a socket read (100 kB) so it arrives in pieces.
std::vector<std::string> payloads(size_t n, bool with_big) {
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) {
    std::string p = "m" + std::to_string(i) + "\r\n";
    p.push_back('\0');
    p.push_back(static_cast<char>(0xff));
    p += "\r\nMSG x 1 5\r\n$3\r\n*3\r\n";
    p.append(i * 37 % 300, static_cast<char>('a' + i % 26));
    p.push_back('\0');
    out.push_back(p);
  }
  out.push_back("");
  if (with_big) {
    std::string big(100'000, '\0');
    for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7 + 3);
    big.replace(1000, 2, "\r\n");
    out.push_back(big);
  }
  return out;
}

// Everything one fresh adapter reports for `input` cut into pieces at `cuts` (ascending
// offsets), after the same start calls as the live connection.
struct Replay {
  std::vector<std::string> log;
  std::string answers;
};

class PeerTest : public ::testing::TestWithParam<Case> {};

// Two subscribers and a publisher through the adapters: every payload arrives at each
// subscriber exactly once, intact and in order; every publish is confirmed; then the
// bytes each server sent replay identically at every split point.
TEST_P(PeerTest, DeliversExactlyOnceIntactAndReplaysAtEverySplit) {
  const Case& c = GetParam();
  PeerServer server(c.system);
  ASSERT_TRUE(server.ok()) << "bench/peers/start.sh " << c.system << " failed";

  std::string channel = c.channel;
  Conn sub1(server.port(), make(c, "sub-1"));
  Conn sub2(server.port(), make(c, "sub-2"));
  Conn pub(server.port(), make(c, "pub-1"));
  std::vector<Conn*> all = {&sub1, &sub2, &pub};
  for (Conn* s : {&sub1, &sub2}) {
    std::string out;
    s->proto().start_subscriber(out, &channel, 1);
    s->queue(out);
  }
  std::string out;
  pub.proto().start_publisher(out);
  pub.queue(out);
  ASSERT_TRUE(pump(all, [&] {
    return sub1.events().ready == 1 && sub2.events().ready == 1 && pub.events().ready == 1;
  })) << sub1.events().error << sub2.events().error << pub.events().error;

  std::vector<std::string> sent = payloads(40, true);
  for (const std::string& p : sent) pub.publish(channel, p);
  ASSERT_TRUE(pump(all, [&] {
    return sub1.events().messages.size() >= sent.size() && sub2.events().messages.size() >= sent.size() &&
           pub.events().published == sent.size();
  })) << "sub1 " << sub1.events().messages.size() << " sub2 " << sub2.events().messages.size()
      << " published " << pub.events().published << " of " << sent.size() << " " << sub1.events().error
      << sub2.events().error << pub.events().error;
  // A last marker: once it is in, any duplicate of the earlier ones would have arrived too.
  pub.publish(channel, "end");
  sent.push_back("end");
  ASSERT_TRUE(pump(all, [&] {
    return sub1.events().messages.size() >= sent.size() && sub2.events().messages.size() >= sent.size() &&
           pub.events().published == sent.size();
  }));
  for (Conn* s : {&sub1, &sub2}) {
    EXPECT_EQ(diff(s->events().messages, sent), "");  // exactly once, intact, in order
    EXPECT_TRUE(s->events().error.empty()) << s->events().error;
    EXPECT_EQ(s->events().ready, 1u);
  }
  EXPECT_EQ(pub.events().published, sent.size());
  EXPECT_TRUE(pub.events().error.empty()) << pub.events().error;
  EXPECT_TRUE(pub.events().messages.empty());

  if (c.kind == System::kMqtt && c.qos == 1) {
    // One PUBACK (4 bytes) per delivered message, nothing else; more messages than
    // mosquitto's 20 in flight arrived, so it took the PUBACKs.
    EXPECT_EQ(sub1.answers().size(), 4 * sent.size());
    EXPECT_EQ(sub2.answers().size(), 4 * sent.size());
    EXPECT_EQ(static_cast<uint8_t>(sub1.answers()[0]), 0x40);
  } else {
    EXPECT_EQ(sub1.answers(), "");  // nothing to answer (no server PING in this short run)
  }

  // Replays: a fresh adapter, the same start calls, the recorded server bytes cut up.
  auto replay_sub = [&](const std::string& input, const std::vector<size_t>& cuts) {
    auto p = make(c, "sub-1");
    std::string ignored;
    p->start_subscriber(ignored, &channel, 1);
    Recorder r;
    std::string answers;
    size_t at = 0;
    for (size_t i = 0; i <= cuts.size(); ++i) {
      size_t to = i < cuts.size() ? cuts[i] : input.size();
      std::string o;
      p->on_input(reinterpret_cast<const uint8_t*>(input.data()) + at, to - at, o, r);
      answers += o;
      at = to;
    }
    return Replay{r.log, answers};
  };
  // The publisher: byte at a time, with its publish calls made at the same points of the
  // input as in the live run (when a PONG or PINGRESP arrives decides what the next covers).
  auto replay_pub = [&](const std::string& input) {
    auto p = make(c, "pub-1");
    std::string answers;
    p->start_publisher(answers);
    answers.clear();
    Recorder r;
    size_t step = 0;
    for (size_t at = 0; at <= input.size(); ++at) {
      for (; step < pub.script().size() && pub.script()[step].at == at; ++step) {
        std::string ignored;
        p->publish(ignored, channel, pub.script()[step].payload);
      }
      if (at == input.size()) break;
      p->on_input(reinterpret_cast<const uint8_t*>(input.data()) + at, 1, answers, r);
    }
    return Replay{r.log, answers};
  };

  // Byte at a time, the whole recorded stream (it holds the 100 kB payload).
  std::vector<size_t> every;
  for (size_t i = 1; i < sub1.input().size(); ++i) every.push_back(i);
  Replay bytes = replay_sub(sub1.input(), every);
  EXPECT_EQ(diff(bytes.log, sub1.events().log), "");
  EXPECT_TRUE(bytes.answers == sub1.answers());
  Replay pub_bytes = replay_pub(pub.input());
  EXPECT_EQ(diff(pub_bytes.log, pub.events().log), "");
  EXPECT_TRUE(pub_bytes.answers == pub.answers());

  // Every single split point of the stream's first 4 kB (the handshake and the small
  // messages): each gives what the same 4 kB give fed whole.
  const std::string head = sub1.input().substr(0, 4096);
  const Replay whole = replay_sub(head, {});
  EXPECT_GT(whole.log.size(), 5u);
  for (size_t cut = 1; cut < head.size(); ++cut) {
    Replay r = replay_sub(head, {cut});
    ASSERT_EQ(diff(r.log, whole.log), "") << "split at " << cut;
    ASSERT_TRUE(r.answers == whole.answers) << "split at " << cut;
  }
  // Random chunkings of the whole stream.
  std::mt19937 rng(7);
  for (int round = 0; round < 50; ++round) {
    std::vector<size_t> cuts;
    size_t at = 0;
    while (true) {
      at += 1 + rng() % 3000;
      if (at >= sub1.input().size()) break;
      cuts.push_back(at);
    }
    Replay r = replay_sub(sub1.input(), cuts);
    ASSERT_EQ(diff(r.log, sub1.events().log), "") << "round " << round;
  }
}

INSTANTIATE_TEST_SUITE_P(Peers, PeerTest,
                         ::testing::Values(Case{"mosquitto", System::kMqtt, 0, "bench/t1"},
                                           Case{"mosquitto", System::kMqtt, 1, "bench/t1"},
                                           Case{"redis", System::kRedis, 0, "bench:t1"},
                                           Case{"nats", System::kNats, 0, "bench.t1"}),
                         case_name);

// ---------------------------------------------------------------------------------------
// Refusals from the real servers reach on_error, and the connection is not reported ready.

void expect_refused(Conn& conn, const std::string& needle) {
  ASSERT_TRUE(pump({&conn}, [&] { return !conn.events().error.empty(); })) << "no error reported";
  EXPECT_NE(conn.events().error.find(needle), std::string::npos) << conn.events().error;
  EXPECT_EQ(conn.events().ready, 0u);
  EXPECT_TRUE(conn.events().messages.empty());
}

TEST(PeerRefusal, MqttSubackRefusedIsAnError) {
  PeerServer server("mosquitto", "refuse");  // subscriptions allowed under bench/# only
  ASSERT_TRUE(server.ok());
  // The allowed channel first: one refusal among several subscriptions still fails.
  Conn conn(server.port(), make({"mosquitto", System::kMqtt, 1, ""}, "refused-1"));
  std::string channels[2] = {"bench/ok", "forbidden/x"};
  std::string out;
  conn.proto().start_subscriber(out, channels, 2);
  conn.queue(out);
  expect_refused(conn, "refused (SUBACK 0x80)");

  // And the same broker accepts a subscription it allows (the refusal was the ACL).
  Conn good(server.port(), make({"mosquitto", System::kMqtt, 1, ""}, "allowed-1"));
  out.clear();
  good.proto().start_subscriber(out, channels, 1);
  good.queue(out);
  ASSERT_TRUE(pump({&good}, [&] { return good.events().ready == 1 || !good.events().error.empty(); }));
  EXPECT_EQ(good.events().ready, 1u) << good.events().error;
}

TEST(PeerRefusal, RedisErrorReplyIsAnError) {
  PeerServer server("redis");
  ASSERT_TRUE(server.ok());
  // RESP2 allows only (UN)SUBSCRIBE, PING and a few more on a subscribed connection: a
  // PUBLISH there is refused with -ERR.
  Conn conn(server.port(), make({"redis", System::kRedis, 0, ""}, "sub"));
  std::string channel = "bench:x";
  std::string out;
  conn.proto().start_subscriber(out, &channel, 1);
  conn.queue(out);
  ASSERT_TRUE(pump({&conn}, [&] { return conn.events().ready == 1; }));
  out.clear();
  conn.proto().publish(out, channel, "not allowed here");
  conn.queue(out);
  ASSERT_TRUE(pump({&conn}, [&] { return !conn.events().error.empty(); }));
  EXPECT_NE(conn.events().error.find("redis: ERR"), std::string::npos) << conn.events().error;
  EXPECT_EQ(conn.events().published, 0u);
}

TEST(PeerRefusal, NatsErrIsAnError) {
  PeerServer server("nats");
  ASSERT_TRUE(server.ok());
  Conn conn(server.port(), make({"nats", System::kNats, 0, ""}, "sub"));
  std::string channel = "bench..bad";  // an empty token: not a valid subject
  std::string out;
  conn.proto().start_subscriber(out, &channel, 1);
  conn.queue(out);
  expect_refused(conn, "Invalid Subject");
}

// ---------------------------------------------------------------------------------------
// Bad bytes (no server can be made to send these): each is reported once, with its reason,
// and the adapter stays failed.

std::string feed(Protocol& p, std::string_view bytes, Recorder& r) {
  std::string out;
  p.on_input(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), out, r);
  return out;
}

TEST(PeerLimits, MqttRemainingLengthOverLimitOrMalformed) {
  {
    auto p = make_mqtt_protocol({});
    Recorder r;
    std::string ignored;
    p->start_publisher(ignored);
    feed(*p, std::string("\x20\x02\x00\x00", 4), r);
    ASSERT_EQ(r.ready, 1u);
    // PUBLISH declaring 200 MB: refused from the header, before any body arrives.
    feed(*p, std::string("\x30\x80\x80\x80\x60", 5), r);
    EXPECT_NE(r.error.find("larger than the adapter's limit"), std::string::npos) << r.error;
    feed(*p, std::string("\x20\x02\x00\x00", 4), r);
    EXPECT_EQ(r.log.size(), 2u);  // failed stays failed: nothing more is reported
  }
  {
    auto p = make_mqtt_protocol({});
    Recorder r;
    feed(*p, std::string("\x20\x02\x00\x00\x30\xff\xff\xff\xff\x01", 10), r);
    EXPECT_NE(r.error.find("longer than 4 bytes"), std::string::npos) << r.error;
  }
  {
    auto p = make_mqtt_protocol({});
    Recorder r;
    feed(*p, std::string("\x20\x02\x00\x05", 4), r);
    EXPECT_NE(r.error.find("not authorized"), std::string::npos) << r.error;
  }
  {
    auto p = make_mqtt_protocol({});
    Recorder r;
    feed(*p, std::string("\x20\x02\x00\x00\x40\x02\x00\x07", 8), r);  // PUBACK never asked for
    EXPECT_NE(r.error.find("not in flight"), std::string::npos) << r.error;
  }
}

TEST(PeerLimits, RedisBulkAndLineLimits) {
  {
    auto p = make_redis_protocol({});
    Recorder r;
    feed(*p, "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$999999999\r\n", r);
    EXPECT_NE(r.error.find("bulk length out of range"), std::string::npos) << r.error;
  }
  {
    auto p = make_redis_protocol({});
    Recorder r;
    feed(*p, std::string(70'000, 'x'), r);
    EXPECT_NE(r.error.find("reply line too long"), std::string::npos) << r.error;
  }
  {
    auto p = make_redis_protocol({});
    Recorder r;
    feed(*p, "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nabXY", r);  // no CRLF after the bulk
    EXPECT_NE(r.error.find("not ended by CRLF"), std::string::npos) << r.error;
  }
}

TEST(PeerLimits, NatsPayloadAndLineLimits) {
  {
    auto p = make_nats_protocol({});
    Recorder r;
    feed(*p, "INFO {}\r\nMSG a 1 999999999\r\n", r);
    EXPECT_NE(r.error.find("larger than the adapter's limit"), std::string::npos) << r.error;
  }
  {
    auto p = make_nats_protocol({});
    Recorder r;
    feed(*p, "PONG\r\n", r);
    EXPECT_NE(r.error.find("first line is not INFO"), std::string::npos) << r.error;
  }
  {
    auto p = make_nats_protocol({});
    Recorder r;
    std::string out = feed(*p, "INFO {}\r\nPING\r\nMSG a 1 reply.to 2\r\nhi\r\n", r);
    EXPECT_EQ(out, "PONG\r\n");  // the server's PING is answered
    EXPECT_EQ(r.messages, std::vector<std::string>{"hi"});  // MSG with a reply subject
    feed(*p, std::string(70'000, 'x'), r);
    EXPECT_NE(r.error.find("control line too long"), std::string::npos) << r.error;
  }
}

// MQTT QoS 0 and NATS confirm publishes with one ping in flight at a time: the pong confirms
// every publish written before its ping, and publishes written meanwhile get the next ping.
TEST(PeerConfirm, OnePingInFlightCoversThePublishesBeforeIt) {
  auto count = [](const std::string& s, std::string_view what) {
    size_t n = 0;
    for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
    return n;
  };
  {
    auto p = make_mqtt_protocol({});
    Recorder r;
    std::string out;
    p->start_publisher(out);
    feed(*p, std::string("\x20\x02\x00\x00", 4), r);
    out.clear();
    for (int i = 0; i < 3; ++i) p->publish(out, "t", "x");
    EXPECT_EQ(count(out, std::string("\xc0\x00", 2)), 1u);  // one PINGREQ, after the first PUBLISH
    std::string answer = feed(*p, std::string("\xd0\x00", 2), r);
    EXPECT_EQ(r.published, 1u);
    EXPECT_EQ(answer, std::string("\xc0\x00", 2));  // the next ping covers the other two
    answer = feed(*p, std::string("\xd0\x00", 2), r);
    EXPECT_EQ(r.published, 3u);
    EXPECT_EQ(answer, "");
    feed(*p, std::string("\xd0\x00", 2), r);  // a PINGRESP nobody asked for
    EXPECT_NE(r.error.find("unexpected PINGRESP"), std::string::npos) << r.error;
  }
  {
    auto p = make_nats_protocol({});
    Recorder r;
    std::string out;
    p->start_publisher(out);
    EXPECT_EQ(count(out, "PING\r\n"), 1u);
    out.clear();
    for (int i = 0; i < 3; ++i) p->publish(out, "t", "x");  // before ready: the handshake ping is in flight
    EXPECT_EQ(out, "PUB t 1\r\nx\r\nPUB t 1\r\nx\r\nPUB t 1\r\nx\r\n");
    std::string answer = feed(*p, "INFO {}\r\nPONG\r\n", r);
    EXPECT_EQ(r.ready, 1u);
    EXPECT_EQ(r.published, 0u);
    EXPECT_EQ(answer, "PING\r\n");
    answer = feed(*p, "PONG\r\n", r);
    EXPECT_EQ(r.published, 3u);
    EXPECT_EQ(answer, "");
  }
}

}  // namespace
}  // namespace herald::bench
