// loadgen: the benchmark load generator for Herald and its peers (mosquitto, Redis, NATS).
// A coordinator process forks worker processes (each at most --per-worker sockets, its own
// epoll loop), gathers their counts and latency histograms over pipes, samples the server's
// /proc figures and prints one JSON line per run. Every phase is bounded in time and count.
// It measures only: it starts no server (bench/run.sh does).
//
//   loadgen --system herald --server 127.0.0.1:7600 --workload broadcast --subscribers 1000
//           --rate 50 --seconds 10 --server-pid 1234
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench/loadgen/herald_protocol.h"
#include "bench/loadgen/histogram.h"
#include "bench/api_post.h"
#include "bench/loadgen/protocol.h"
#include "server/jwt.h"

namespace herald::bench {
namespace {

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}
double secs_since(uint64_t t) { return static_cast<double>(now_ns() - t) / 1e9; }

enum class Workload { kIdle, kBroadcast, kUnicast, kPriority, kReconnect };

const char* workload_name(Workload w) {
  switch (w) {
    case Workload::kIdle: return "idle";
    case Workload::kBroadcast: return "broadcast";
    case Workload::kUnicast: return "unicast";
    case Workload::kPriority: return "priority";
    case Workload::kReconnect: return "reconnect";
  }
  return "?";
}

struct Options {
  System system = System::kHerald;
  std::string server = "127.0.0.1:7600";
  std::string api;  // Herald HTTP API (reconnect: the missed messages are published through it)
  Workload workload = Workload::kBroadcast;
  int subscribers = 1000;
  int publishers = 1;
  double rate = 0;           // total publishes per second; 0 = flat out (end-to-end credit)
  double probe_rate = 50;    // priority: P0 probes per second
  uint64_t messages = 0;     // bound on publishes (0: rate * seconds, or 1,000,000 flat out)
  double seconds = 10;       // bound on the publishing phase
  int payload = 128;
  int qos = 0;
  int priority = 1;          // Herald: priority of the publishes (priority workload: flood P3, probes P0)
  int missed = 10;           // reconnect: messages waiting per user
  int per_worker = 19000;
  uint64_t max_inflight = 0; // flat out: messages published but not yet delivered (0 = auto)
  double connect_timeout = 60;
  double drain_timeout = 10;
  double settle = 2;         // idle: wait before sampling memory
  int warmup = 0;            // idle: connections opened (and kept) before the "before" sample
  int rcvbuf = 0;            // subscribers' SO_RCVBUF (0 = the kernel's default)
  int sub_workers = 0;       // subscriber processes (0: as few as --per-worker allows)
  bool spread_sources = true; // bind to 127.1.x.y source addresses (false: the kernel picks 127.0.0.1)
  std::vector<int> server_pids;
  std::string meta = "{}";   // JSON object merged into the result line
  std::string secret = "herald-dev-secret";
  std::string prefix = "b";  // user ids: prefix + index
  std::string channel = "bench:all";
  // worker only
  int worker = -1;
  bool publisher_role = false;
  int first = 0;
  int count = 0;
};

[[noreturn]] void usage(const std::string& why, int status = 2) {
  std::fprintf(stderr,
               "loadgen: %s\n"
               "usage: loadgen --system herald|herald-ws|mqtt|redis|nats --server HOST:PORT\n"
               "  --workload idle|broadcast|unicast|priority|reconnect --subscribers N [--publishers N]\n"
               "  [--rate MSG/S (0 = flat out)] [--messages N] [--seconds S] [--payload BYTES] [--qos 0|1]\n"
               "  [--priority 0-3] [--probe-rate MSG/S] [--missed N --api HOST:PORT] [--per-worker N]\n"
               "  [--max-inflight N] [--connect-timeout S] [--drain-timeout S] [--settle S] [--warmup N]\n"
               "  [--server-pid PID]... [--meta JSON] [--prefix P] [--channel C] [--rcvbuf BYTES]\n"
               "  [--sub-workers N] [--no-source-spread]\n",
               why.c_str());
  std::exit(status);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) usage(k + " needs a value");
      return argv[++i];
    };
    auto num = [&]() { return std::stod(val()); };
    if (k == "--help" || k == "-h") {
      usage("the benchmark load generator (bench/run.sh drives it; docs/benchmarks.md, issue 7)", 0);
    } else if (k == "--system") {
      if (!parse_system(val(), o.system)) usage("unknown system " + std::string(argv[i]));
    } else if (k == "--server") o.server = val();
    else if (k == "--api") o.api = val();
    else if (k == "--workload") {
      const std::string w = val();
      if (w == "idle") o.workload = Workload::kIdle;
      else if (w == "broadcast") o.workload = Workload::kBroadcast;
      else if (w == "unicast") o.workload = Workload::kUnicast;
      else if (w == "priority") o.workload = Workload::kPriority;
      else if (w == "reconnect") o.workload = Workload::kReconnect;
      else usage("unknown workload " + w);
    } else if (k == "--subscribers") o.subscribers = static_cast<int>(num());
    else if (k == "--publishers") o.publishers = static_cast<int>(num());
    else if (k == "--rate") o.rate = num();
    else if (k == "--probe-rate") o.probe_rate = num();
    else if (k == "--messages") o.messages = static_cast<uint64_t>(num());
    else if (k == "--seconds") o.seconds = num();
    else if (k == "--payload") o.payload = static_cast<int>(num());
    else if (k == "--qos") o.qos = static_cast<int>(num());
    else if (k == "--priority") o.priority = static_cast<int>(num());
    else if (k == "--missed") o.missed = static_cast<int>(num());
    else if (k == "--per-worker") o.per_worker = static_cast<int>(num());
    else if (k == "--max-inflight") o.max_inflight = static_cast<uint64_t>(num());
    else if (k == "--connect-timeout") o.connect_timeout = num();
    else if (k == "--drain-timeout") o.drain_timeout = num();
    else if (k == "--settle") o.settle = num();
    else if (k == "--warmup") o.warmup = static_cast<int>(num());
    else if (k == "--rcvbuf") o.rcvbuf = static_cast<int>(num());
    else if (k == "--no-source-spread") o.spread_sources = false;
    else if (k == "--sub-workers") o.sub_workers = static_cast<int>(num());
    else if (k == "--server-pid") o.server_pids.push_back(static_cast<int>(num()));
    else if (k == "--meta") o.meta = val();
    else if (k == "--secret") o.secret = val();
    else if (k == "--prefix") o.prefix = val();
    else if (k == "--channel") o.channel = val();
    else if (k == "--worker") o.worker = static_cast<int>(num());
    else if (k == "--role") o.publisher_role = val() == "pub";
    else if (k == "--first") o.first = static_cast<int>(num());
    else if (k == "--count") o.count = static_cast<int>(num());
    else usage("unknown option " + k);
  }
  if (o.subscribers < 0 || o.per_worker < 1 || o.per_worker > 19000) usage("--per-worker must be 1..19000");
  if (o.payload < 17) usage("--payload must be at least 17 bytes (send time, sequence, class)");
  if (o.publishers < 1) usage("--publishers must be at least 1");
  if (o.priority < 0 || o.priority > 3) usage("--priority must be 0..3");
  if (o.workload == Workload::kReconnect && o.system != System::kHerald) usage("reconnect is Herald only");
  if (o.workload == Workload::kPriority && o.system != System::kHerald && o.system != System::kHeraldWs)
    usage("priority is Herald only");
  if (o.messages == 0) {
    o.messages = o.rate > 0 ? static_cast<uint64_t>(std::ceil(o.rate * o.seconds)) : 1'000'000;
  }
  return o;
}

bool has_publishers(Workload w) {
  return w == Workload::kBroadcast || w == Workload::kUnicast || w == Workload::kPriority;
}
bool broadcast_like(Workload w) { return w == Workload::kBroadcast || w == Workload::kPriority; }

bool split_hostport(const std::string& a, std::string& host, int& port) {
  const auto c = a.rfind(':');
  if (c == std::string::npos) return false;
  host = a.substr(0, c);
  port = std::atoi(a.c_str() + c + 1);
  return port > 0;
}

// ---- worker ---------------------------------------------------------------------------

constexpr int kClasses = 2;         // 0: the main stream (or the P3 flood), 1: P0 probes
constexpr size_t kOutCap = 256 * 1024;  // a publisher connection's unsent bytes before it waits

class Worker;

struct Conn final : Sink {
  Worker* w = nullptr;
  int fd = -1;
  int index = 0;  // global connection index (user id suffix) or publisher number
  int cls = 0;    // publishers: the class they send
  enum class State : uint8_t { kIdle, kConnecting, kOpen, kReady, kDead } state = State::kIdle;
  bool want_out = false;
  std::unique_ptr<Protocol> proto;
  std::string out;
  size_t out_off = 0;
  void on_ready() override;
  void on_message(std::string_view payload) override;
  void on_published() override;
  void on_error(std::string what) override;
};

struct Stream {  // one paced (or flat-out) publish stream of a class
  double rate = 0;
  uint64_t limit = 0;
  uint64_t sent = 0;
  uint64_t t0 = 0;
  std::vector<Conn*> conns;
  size_t rr = 0;
};

class Worker {
 public:
  explicit Worker(const Options& o) : o_(o), rng_(static_cast<uint32_t>(o.worker * 7919 + 17)) {
    payload_.assign(static_cast<size_t>(o.payload), 'x');
  }

  int run() {
    rlimit rl{};
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    signal(SIGPIPE, SIG_IGN);
    if (!split_hostport(o_.server, host_, port_)) return report_fatal("bad --server " + o_.server);
    ep_ = epoll_create1(0);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kStdin;
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    epoll_ctl(ep_, EPOLL_CTL_ADD, 0, &ev);
    tfd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    ev.data.u64 = kTimer;
    epoll_ctl(ep_, EPOLL_CTL_ADD, tfd_, &ev);
    setup_connections();
    std::vector<epoll_event> events(512);
    uint64_t last_status = 0;
    while (!stop_) {
      const int n = epoll_wait(ep_, events.data(), static_cast<int>(events.size()), 20);
      for (int i = 0; i < n; ++i) {
        const epoll_event& e = events[static_cast<size_t>(i)];
        if (e.data.u64 == kStdin) {
          commands();
        } else if (e.data.u64 == kTimer) {
          uint64_t x;
          while (read(tfd_, &x, sizeof x) > 0) {
          }
        } else {
          handle(conns_[e.data.u64], e.events);
        }
      }
      start_more();
      if (publishing_) publish_due();
      const uint64_t t = now_ns();
      if (t - last_status >= 5'000'000) {
        last_status = t;
        status();
      }
    }
    status();
    for (int c = 0; c < kClasses; ++c) line("H " + std::to_string(c) + " " + hist_[c].serialize());
    line("Z");
    return 0;
  }

  // Sink callbacks (through Conn).
  void ready(Conn& c) {
    if (c.state == Conn::State::kReady) return;
    c.state = Conn::State::kReady;
    ++ready_;
    --pending_;
  }
  void message(std::string_view p) {
    int cls = 0;
    if (p.size() >= 17 && latency_) {
      uint64_t sent;
      std::memcpy(&sent, p.data(), 8);
      cls = p[16] == 1 ? 1 : 0;
      if (recv_ns_ > sent) hist_[cls].record(recv_ns_ - sent);
      else hist_[cls].record(0);
    }
    ++delivered_[cls];
  }
  void published() { ++confirmed_; }
  void error(Conn& c, std::string what) {
    if (c.state == Conn::State::kDead) return;
    if (c.state != Conn::State::kReady) --pending_;
    else --ready_;
    c.state = Conn::State::kDead;
    ++dead_;
    if (errors_reported_ < 5) {
      ++errors_reported_;
      std::string s = what;
      for (char& ch : s)
        if (ch == '\n' || ch == '\r') ch = ' ';
      line("E conn " + std::to_string(c.index) + ": " + s);
    }
    if (c.fd >= 0) {
      epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
      close(c.fd);
      c.fd = -1;
    }
  }

 private:
  static constexpr uint64_t kStdin = ~uint64_t{0};
  static constexpr uint64_t kTimer = ~uint64_t{0} - 1;
  static constexpr int kConnectWindow = 200;  // connections handshaking at once

  int report_fatal(const std::string& s) {
    line("E " + s);
    line("Z");
    return 1;
  }
  void line(const std::string& s) {
    std::string l = s + "\n";
    size_t off = 0;
    while (off < l.size()) {
      const ssize_t n = ::write(1, l.data() + off, l.size() - off);
      if (n <= 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        return;
      }
      off += static_cast<size_t>(n);
    }
  }
  void status() {
    // S connected ready dead delivered0 delivered1 sent0 sent1 confirmed done
    line("S " + std::to_string(connected_) + " " + std::to_string(ready_) + " " + std::to_string(dead_) + " " +
         std::to_string(delivered_[0]) + " " + std::to_string(delivered_[1]) + " " + std::to_string(streams_[0].sent) +
         " " + std::to_string(streams_[1].sent) + " " + std::to_string(confirmed_) + " " +
         (publish_done_ ? "1" : "0"));
  }

  std::string token_for(const std::string& user, bool publish) const {
    server::JwtSettings js;
    js.secret = o_.secret;
    nlohmann::json claims = {{"sub", user}, {"exp", std::time(nullptr) + 3 * 3600}};
    if (publish) claims["publish"] = true;
    return server::sign_token(claims, js);
  }

  void setup_connections() {
    const bool herald = o_.system == System::kHerald || o_.system == System::kHeraldWs;
    if (o_.publisher_role) {
      streams_[0].rate = o_.rate;
      streams_[0].limit = o_.messages;
      const int n = o_.publishers + (o_.workload == Workload::kPriority ? 1 : 0);
      conns_.resize(static_cast<size_t>(n));
      for (int i = 0; i < n; ++i) {
        Conn& c = conns_[static_cast<size_t>(i)];
        c.w = this;
        c.index = i;
        c.cls = (o_.workload == Workload::kPriority && i == n - 1) ? 1 : 0;
        ConnParams p;
        p.client_id = "lg-pub-" + std::to_string(i) + "-" + std::to_string(getpid());
        p.user_id = "pub" + std::to_string(i);
        p.qos = o_.qos;
        p.host = host_ + ":" + std::to_string(port_);
        if (herald) p.token = token_for(p.user_id, true);
        int prio = o_.priority;
        if (o_.workload == Workload::kPriority) prio = c.cls == 1 ? 0 : 3;
        c.proto = herald ? make_herald_protocol(p, o_.system == System::kHeraldWs, prio) : make_protocol(o_.system, p);
        streams_[c.cls].conns.push_back(&c);
      }
      if (o_.workload == Workload::kPriority) {
        streams_[1].rate = o_.probe_rate;
        streams_[1].limit = static_cast<uint64_t>(std::ceil(o_.probe_rate * o_.seconds));
      }
    } else {
      latency_ = o_.workload != Workload::kReconnect;
      conns_.resize(static_cast<size_t>(o_.count));
      for (int i = 0; i < o_.count; ++i) {
        Conn& c = conns_[static_cast<size_t>(i)];
        c.w = this;
        c.index = o_.first + i;
        ConnParams p;
        p.user_id = o_.prefix + std::to_string(c.index);
        p.client_id = "lg-" + p.user_id;
        p.qos = o_.qos;
        p.host = host_ + ":" + std::to_string(port_);
        if (herald) p.token = token_for(p.user_id, false);
        c.proto = herald ? make_herald_protocol(p, o_.system == System::kHeraldWs, o_.priority)
                         : make_protocol(o_.system, p);
      }
    }
    for (Conn& c : conns_) {
      if (!c.proto) {
        report_fatal("no adapter for this system");
        std::exit(1);
      }
    }
  }

  // Opens connections while fewer than kConnectWindow are handshaking.
  void start_more() {
    while (next_ < conns_.size() && pending_ < kConnectWindow) {
      Conn& c = conns_[next_++];
      ++pending_;
      open(c);
    }
  }

  void open(Conn& c) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) {
      c.fd = -1;
      error(c, std::string("socket: ") + std::strerror(errno));
      return;
    }
    c.fd = fd;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (o_.rcvbuf > 0 && !o_.publisher_role) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &o_.rcvbuf, sizeof o_.rcvbuf);
    // Source address 127.1.x.y, 100 connections per address: ephemeral ports never run
    // out and no server sees more than 100 connections from one address.
    if (o_.spread_sources && host_.rfind("127.", 0) == 0) {
      setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
      const uint32_t slot = static_cast<uint32_t>(c.index / 100 + (o_.publisher_role ? 60000 : 0));
      sockaddr_in src{};
      src.sin_family = AF_INET;
      src.sin_addr.s_addr = htonl((127u << 24) | (1u << 16) | ((slot + 1) & 0xffffu));
      if (bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
        error(c, std::string("bind: ") + std::strerror(errno));
        return;
      }
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port_));
    inet_pton(AF_INET, host_.c_str(), &a.sin_addr);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS) {
      error(c, std::string("connect: ") + std::strerror(errno));
      return;
    }
    c.state = Conn::State::kConnecting;
    if (o_.publisher_role) {
      c.proto->start_publisher(c.out);
    } else {
      const std::string ch = broadcast_like(o_.workload) ? o_.channel : "user:" + o_.prefix + std::to_string(c.index);
      c.proto->start_subscriber(c.out, &ch, 1);
    }
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.u64 = static_cast<uint64_t>(&c - conns_.data());
    c.want_out = true;
    epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
  }

  void want_out(Conn& c, bool on) {
    if (c.want_out == on || c.fd < 0) return;
    c.want_out = on;
    epoll_event ev{};
    ev.events = EPOLLIN | (on ? uint32_t{EPOLLOUT} : uint32_t{0});
    ev.data.u64 = static_cast<uint64_t>(&c - conns_.data());
    epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
  }

  void flush(Conn& c) {
    while (c.fd >= 0 && c.out_off < c.out.size()) {
      const ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
      if (n > 0) {
        c.out_off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        want_out(c, true);
        return;
      }
      if (n < 0 && errno == EINTR) continue;
      error(c, std::string("send: ") + std::strerror(errno));
      return;
    }
    c.out.clear();
    c.out_off = 0;
    want_out(c, false);
  }

  void handle(Conn& c, uint32_t events) {
    if (c.fd < 0) return;
    if (c.state == Conn::State::kConnecting && (events & (EPOLLOUT | EPOLLIN | EPOLLERR | EPOLLHUP))) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        error(c, std::string("connect: ") + std::strerror(err));
        return;
      }
      c.state = Conn::State::kOpen;
      ++connected_;
    }
    if (events & EPOLLOUT) flush(c);
    if (c.fd >= 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
      for (int round = 0; round < 4 && c.fd >= 0; ++round) {
        const ssize_t n = ::recv(c.fd, buf_, sizeof buf_, 0);
        if (n > 0) {
          recv_ns_ = now_ns();
          if (!c.proto->on_input(buf_, static_cast<size_t>(n), c.out, c)) {
            error(c, "protocol error");
            return;
          }
          if (!c.out.empty()) flush(c);
          if (static_cast<size_t>(n) < sizeof buf_) break;
          continue;
        }
        if (n == 0) {
          error(c, "closed by the server");
          return;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        if (errno == EINTR) continue;
        error(c, std::string("recv: ") + std::strerror(errno));
        return;
      }
    }
  }

  void commands() {
    char b[4096];
    for (;;) {
      const ssize_t n = ::read(0, b, sizeof b);
      if (n == 0) {  // the coordinator is gone
        stop_ = true;
        return;
      }
      if (n < 0) return;
      cmd_.append(b, static_cast<size_t>(n));
      size_t nl;
      while ((nl = cmd_.find('\n')) != std::string::npos) {
        const std::string l = cmd_.substr(0, nl);
        cmd_.erase(0, nl + 1);
        if (l == "G") {
          publishing_ = o_.publisher_role;
          publish_start_ = now_ns();
          for (Stream& s : streams_) s.t0 = publish_start_;
        } else if (l == "X") {
          stop_ = true;
        } else if (l.rfind("C ", 0) == 0) {
          credit_delivered_ = std::stoull(l.substr(2));
        }
      }
    }
  }

  // Sends every message that is due; arms the timer for the next one.
  void publish_due() {
    const uint64_t t = now_ns();
    if (secs_since(publish_start_) >= o_.seconds) {
      finish_publishing();
      return;
    }
    uint64_t next_wake = t + 20'000'000;
    bool all_done = true;
    for (int cls = 0; cls < kClasses; ++cls) {
      Stream& s = streams_[cls];
      if (s.conns.empty() || s.sent >= s.limit) continue;
      all_done = false;
      uint64_t allowed;
      if (s.rate > 0) {
        const double elapsed = static_cast<double>(t - s.t0) / 1e9;
        uint64_t due = static_cast<uint64_t>(elapsed * s.rate) + 1;
        // Catch up at most 20 ms worth of messages; a longer stall is dropped from the
        // schedule (counted), so the generator never bursts for ever after a pause.
        const uint64_t max_behind = static_cast<uint64_t>(s.rate * 0.02) + 1;
        if (due > s.sent + max_behind) {
          ++behind_;
          const uint64_t skip = due - s.sent - max_behind;
          s.t0 += static_cast<uint64_t>(static_cast<double>(skip) / s.rate * 1e9);
          due = s.sent + max_behind;
        }
        allowed = due > s.sent ? due - s.sent : 0;
        const uint64_t next = s.t0 + static_cast<uint64_t>(static_cast<double>(s.sent + allowed) / s.rate * 1e9);
        next_wake = std::min(next_wake, std::max(next, t + 50'000));
      } else {
        // Flat out: at most max_inflight messages published but not yet delivered.
        const uint64_t fanout = broadcast_like(o_.workload) ? static_cast<uint64_t>(std::max(o_.subscribers, 1)) : 1;
        const uint64_t delivered_msgs = credit_delivered_ / fanout;
        const uint64_t inflight = s.sent > delivered_msgs ? s.sent - delivered_msgs : 0;
        allowed = inflight_cap() > inflight ? inflight_cap() - inflight : 0;
        if (o_.workload == Workload::kPriority) allowed = 1024;  // a flat-out flood: only TCP holds it back
        next_wake = std::min(next_wake, t + 1'000'000);
      }
      allowed = std::min(allowed, s.limit - s.sent);
      send_messages(s, cls, allowed);
    }
    if (all_done) {
      finish_publishing();
      return;
    }
    itimerspec its{};
    its.it_value.tv_sec = static_cast<time_t>(next_wake / 1'000'000'000u);
    its.it_value.tv_nsec = static_cast<long>(next_wake % 1'000'000'000u);
    timerfd_settime(tfd_, TFD_TIMER_ABSTIME, &its, nullptr);
  }

  uint64_t inflight_cap() const {
    if (o_.max_inflight > 0) return o_.max_inflight;
    if (o_.workload == Workload::kUnicast) return 5000;
    return std::max<uint64_t>(4, 50000 / static_cast<uint64_t>(std::max(o_.subscribers, 1)));
  }

  void send_messages(Stream& s, int cls, uint64_t n) {
    std::string channel;
    for (uint64_t k = 0; k < n; ++k) {
      Conn* c = nullptr;
      for (size_t tries = 0; tries < s.conns.size(); ++tries) {
        Conn* cand = s.conns[s.rr++ % s.conns.size()];
        if (cand->state == Conn::State::kReady && cand->out.size() - cand->out_off < kOutCap) {
          c = cand;
          break;
        }
      }
      if (c == nullptr) break;  // every publisher connection is backed up: TCP pushes back
      const uint64_t seq = s.sent;
      const uint64_t t = now_ns();
      std::memcpy(payload_.data(), &t, 8);
      std::memcpy(payload_.data() + 8, &seq, 8);
      payload_[16] = static_cast<char>(cls);
      if (o_.workload == Workload::kUnicast) {
        const int user = static_cast<int>(rng_() % static_cast<uint32_t>(std::max(o_.subscribers, 1)));
        channel = "user:" + o_.prefix + std::to_string(user);
        c->proto->publish(c->out, channel, payload_);
      } else {
        c->proto->publish(c->out, o_.channel, payload_);
      }
      ++s.sent;
    }
    for (Conn* c : s.conns)
      if (!c->out.empty() && !c->want_out) flush(*c);
  }

  void finish_publishing() {
    publishing_ = false;
    publish_done_ = true;
    status();
  }

  const Options& o_;
  std::string host_;
  int port_ = 0;
  int ep_ = -1;
  int tfd_ = -1;
  std::vector<Conn> conns_;
  size_t next_ = 0;
  int pending_ = 0;
  uint64_t connected_ = 0, ready_ = 0, dead_ = 0, confirmed_ = 0, behind_ = 0;
  uint64_t delivered_[kClasses] = {};
  Histogram hist_[kClasses];
  Stream streams_[kClasses];
  bool latency_ = true;
  bool publishing_ = false, publish_done_ = false, stop_ = false;
  uint64_t publish_start_ = 0;
  uint64_t credit_delivered_ = 0;
  uint64_t recv_ns_ = 0;
  int errors_reported_ = 0;
  std::string cmd_;
  std::string payload_;
  std::minstd_rand rng_;
  uint8_t buf_[256 * 1024];
};

void Conn::on_ready() { w->ready(*this); }
void Conn::on_message(std::string_view payload) { w->message(payload); }
void Conn::on_published() { w->published(); }
void Conn::on_error(std::string what) { w->error(*this, std::move(what)); }

// ---- server figures from /proc ---------------------------------------------------------

struct ProcSample {
  bool ok = false;
  double cpu_s = 0;
  double sys_s = 0;  // the part of cpu_s spent in the kernel (stime; softirqs included here)
  uint64_t rss = 0, hwm = 0, syscw = 0;
};

ProcSample sample(const std::vector<int>& pids) {
  ProcSample s;
  if (pids.empty()) return s;
  s.ok = true;
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  for (int pid : pids) {
    const std::string base = "/proc/" + std::to_string(pid);
    std::ifstream stat(base + "/stat");
    std::string all((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    const auto rp = all.rfind(')');
    if (rp == std::string::npos) {
      s.ok = false;
      continue;
    }
    std::istringstream f(all.substr(rp + 2));
    std::string field;
    double utime = 0, stime = 0;
    for (int i = 3; f >> field; ++i) {  // field 3 is the state
      if (i == 14) utime = std::stod(field);
      if (i == 15) {
        stime = std::stod(field);
        break;
      }
    }
    s.cpu_s += (utime + stime) / tick;
    s.sys_s += stime / tick;
    std::ifstream status(base + "/status");
    std::string l;
    while (std::getline(status, l)) {
      if (l.rfind("VmRSS:", 0) == 0) s.rss += std::stoull(l.substr(6)) * 1024;
      if (l.rfind("VmHWM:", 0) == 0) s.hwm += std::stoull(l.substr(6)) * 1024;
    }
    std::ifstream io(base + "/io");
    while (std::getline(io, l)) {
      if (l.rfind("syscw:", 0) == 0) s.syscw += std::stoull(l.substr(6));
    }
  }
  return s;
}

// ---- coordinator ------------------------------------------------------------------------

struct WorkerProc {
  pid_t pid = -1;
  int to = -1;    // its stdin
  int from = -1;  // its stdout
  bool publisher = false;
  int count = 0;
  std::string in;
  // latest status
  uint64_t connected = 0, ready = 0, dead = 0, confirmed = 0;
  uint64_t delivered[kClasses] = {};
  uint64_t sent[kClasses] = {};
  bool publish_done = false;
  bool finished = false;
  Histogram hist[kClasses];
  std::vector<std::string> errors;
};

// POSTs body to the API with Connection: close; returns the HTTP status (0 on error).
int http_post(const std::string& hostport, const std::string& path, const std::string& body) {
  std::string host;
  int port = 0;
  if (!split_hostport(hostport, host, port)) return 0;
  return herald::bench::api_post(host, static_cast<uint16_t>(port), path, body);
}

class Coordinator {
 public:
  Coordinator(const Options& o, int argc, char** argv) : o_(o), argc_(argc), argv_(argv) {}

  int run() {
    signal(SIGPIPE, SIG_IGN);
    // Workers run this same program (by its real path, so ps shows "loadgen").
    char path[4096];
    const ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    self_ = n > 0 ? std::string(path, static_cast<size_t>(n)) : std::string("/proc/self/exe");
    if (o_.workload == Workload::kReconnect && !prepublish()) return 1;
    const ProcSample s0 = sample(o_.server_pids);
    uint64_t t_start = now_ns();
    // Idle with --warmup W: W connections first, then the "before" sample (sw), then the
    // rest. Memory per connection is then the slope over the rest, so what a server
    // allocates once (for its first connections, or the first on each thread) is not
    // spread over the measured ones; every system is measured the same way.
    const int warm = o_.workload == Workload::kIdle ? std::clamp(o_.warmup, 0, std::max(o_.subscribers - 1, 0)) : 0;
    ProcSample sw;
    if (warm > 0) {
      if (!spawn_one(false, 0, warm)) return fail_exit("could not start the worker processes");
      std::string why;
      if (!wait_setup(static_cast<uint64_t>(warm), 0, 0, t_start, why)) return fail_exit(why);
      const uint64_t until = now_ns() + static_cast<uint64_t>(o_.settle * 1e9);
      while (now_ns() < until) pump(50);
      sw = sample(o_.server_pids);
      t_start = now_ns();
    }
    if (!spawn(warm)) return fail_exit("could not start the worker processes");
    uint64_t sub_total = static_cast<uint64_t>(o_.subscribers);
    uint64_t pub_total = has_publishers(o_.workload)
                             ? static_cast<uint64_t>(o_.publishers + (o_.workload == Workload::kPriority ? 1 : 0))
                             : 0;
    // Phase 1: connect, handshake, subscribe (reconnect: until every inbox is drained).
    const uint64_t want_reconnect = sub_total * static_cast<uint64_t>(o_.missed);
    {
      std::string why;
      if (!wait_setup(sub_total, pub_total, o_.workload == Workload::kReconnect ? want_reconnect : 0, t_start, why)) {
        return fail_exit(why);
      }
    }
    const double setup_s = secs_since(t_start);
    nlohmann::json result = base_result();
    result["setup_seconds"] = setup_s;
    uint64_t delivered_final = 0, expected = 0;
    double seconds = 0;
    ProcSample s1, s2;
    ProcSample c1, c2;  // the load generator's own processes, same moments
    if (o_.workload == Workload::kIdle) {
      const uint64_t until = now_ns() + static_cast<uint64_t>(o_.settle * 1e9);
      while (now_ns() < until) pump(50);
      s1 = sample(o_.server_pids);
      s2 = s1;
      seconds = setup_s;
    } else if (o_.workload == Workload::kReconnect) {
      s1 = s0;
      s2 = sample(o_.server_pids);
      seconds = setup_s;
      expected = want_reconnect;
      delivered_final = totals().delivered[0];
      result["published"] = want_reconnect;
    } else {
      s1 = sample(o_.server_pids);
      c1 = sample(worker_pids());
      const uint64_t t0 = now_ns();
      send_all_publishers("G\n");
      uint64_t pub_done_at = 0, last_change = now_ns(), last_delivered = 0, last_progress = now_ns();
      for (;;) {
        pump(20);
        const Totals t = totals();
        if (o_.rate == 0) send_all_publishers("C " + std::to_string(t.delivered[0]) + "\n");
        const uint64_t d = t.delivered[0] + t.delivered[1];
        if (d != last_delivered) {
          last_delivered = d;
          last_change = now_ns();
        }
        if (t.publish_done && pub_done_at == 0) pub_done_at = now_ns();
        if (pub_done_at != 0) {
          expected = expected_deliveries(t);
          if (d >= expected) break;
          if (secs_since(pub_done_at) > o_.drain_timeout) break;
          if (t.sub_ready == 0) break;
        }
        if (secs_since(t0) > o_.seconds + o_.drain_timeout + 30) break;  // hard bound
        if (any_worker_exited()) break;
        if (secs_since(last_progress) >= 1.0) last_progress = now_ns();
      }
      s2 = sample(o_.server_pids);
      c2 = sample(worker_pids());
      seconds = static_cast<double>(last_change - t0) / 1e9;
      (void)last_progress;
    }
    // Collect the histograms.
    send_all("X\n");
    const uint64_t until = now_ns() + 10'000'000'000u;
    while (!all_finished() && now_ns() < until) pump(50);
    reap();
    const Totals t = totals();
    Histogram h[kClasses];
    for (auto& w : workers_)
      for (int c = 0; c < kClasses; ++c) h[c].merge(w.hist[c]);

    const bool priority = o_.workload == Workload::kPriority;
    if (has_publishers(o_.workload)) {
      expected = expected_deliveries(t);
      delivered_final = priority ? t.delivered[1] : t.delivered[0];
      const uint64_t expected_main = priority ? t.sent[1] * sub_total : expected;
      result["published"] = priority ? t.sent[1] : t.sent[0];
      result["delivered"] = delivered_final;
      result["lost"] = expected_main > delivered_final ? expected_main - delivered_final : 0;
      if (delivered_final > expected_main) result["duplicates"] = delivered_final - expected_main;
      result["seconds"] = seconds;
      result["deliveries_per_s"] = seconds > 0 ? static_cast<double>(t.delivered[0] + t.delivered[1]) / seconds : 0;
      const Histogram& lh = priority ? h[1] : h[0];
      result["latency_us"] = {{"p50", lh.quantile(0.5) / 1e3},
                              {"p99", lh.quantile(0.99) / 1e3},
                              {"p999", lh.quantile(0.999) / 1e3},
                              {"max", static_cast<double>(lh.max()) / 1e3}};
      if (priority) {
        result["flood"] = {{"published", t.sent[0]},
                           {"delivered", t.delivered[0]},
                           {"not_delivered", t.sent[0] * sub_total - std::min(t.sent[0] * sub_total, t.delivered[0])},
                           {"latency_us", {{"p50", h[0].quantile(0.5) / 1e3}, {"p99", h[0].quantile(0.99) / 1e3}}}};
      }
      result["rate"] = o_.rate;
    } else if (o_.workload == Workload::kReconnect) {
      delivered_final = t.delivered[0];
      result["delivered"] = delivered_final;
      result["lost"] = expected > delivered_final ? expected - delivered_final : 0;
      result["seconds"] = seconds;
      result["deliveries_per_s"] = seconds > 0 ? static_cast<double>(delivered_final) / seconds : 0;
    }
    if (s0.ok && s2.ok) {
      nlohmann::json srv;
      srv["cpu_s"] = s2.cpu_s - s1.cpu_s;
      srv["sys_s"] = s2.sys_s - s1.sys_s;
      srv["rss_bytes"] = s2.rss;
      srv["rss_peak_bytes"] = s2.hwm;
      if (o_.workload == Workload::kIdle && sub_total > 0) {
        const double from_zero =
            (static_cast<double>(s1.rss) - static_cast<double>(s0.rss)) / static_cast<double>(sub_total);
        srv["rss_before_bytes"] = s0.rss;
        if (warm > 0 && sw.ok) {
          srv["rss_per_conn_bytes"] = (static_cast<double>(s1.rss) - static_cast<double>(sw.rss)) /
                                      static_cast<double>(sub_total - static_cast<uint64_t>(warm));
          srv["rss_per_conn_from_zero_bytes"] = from_zero;
          srv["rss_after_warmup_bytes"] = sw.rss;
          srv["warmup_connections"] = warm;
        } else {
          srv["rss_per_conn_bytes"] = from_zero;
        }
      }
      if (o_.workload == Workload::kReconnect) {
        srv["cpu_s"] = s2.cpu_s - s0.cpu_s;
        srv["sys_s"] = s2.sys_s - s0.sys_s;
      }
      const uint64_t deliveries = t.delivered[0] + t.delivered[1];
      if (deliveries > 0 && o_.workload != Workload::kIdle) {
        srv["write_calls_per_delivery"] = static_cast<double>(s2.syscw - s1.syscw) / static_cast<double>(deliveries);
      }
      result["server"] = srv;
    }
    if (c1.ok && c2.ok) {
      // What the subscribers and publishers cost on the same cores: with the server's CPU
      // it shows whether the machine, not the server, was the limit.
      result["client"] = {{"cpu_s", c2.cpu_s - c1.cpu_s}, {"sys_s", c2.sys_s - c1.sys_s}, {"processes", workers_.size()}};
      result["cores"] = sysconf(_SC_NPROCESSORS_ONLN);
    }
    std::printf("%s\n", result.dump().c_str());
    std::fflush(stdout);
    print_errors();
    // Verdict: every connection up and alive to the end, nothing missing.
    if (t.dead > 0) return fail_msg(std::to_string(t.dead) + " connection(s) failed or were closed by the server");
    const uint64_t lost = result.value("lost", uint64_t{0});
    if (lost > 0) {
      const uint64_t of = priority ? t.sent[1] * sub_total : expected;
      return fail_msg(std::to_string(lost) + " deliveries missing of " + std::to_string(of) +
                      (priority ? " P0 probe deliveries" : "") + " (not received within --drain-timeout)");
    }
    return 0;
  }

 private:
  struct Totals {
    uint64_t sub_ready = 0, pub_ready = 0, connected = 0, dead = 0, confirmed = 0;
    uint64_t delivered[kClasses] = {};
    uint64_t sent[kClasses] = {};
    bool publish_done = false;
    std::string text() const {
      return "connected " + std::to_string(connected) + ", ready " + std::to_string(sub_ready) + "+" +
             std::to_string(pub_ready) + ", failed " + std::to_string(dead);
    }
  };

  Totals totals() const {
    Totals t;
    bool any_pub = false, all_done = true;
    for (const auto& w : workers_) {
      (w.publisher ? t.pub_ready : t.sub_ready) += w.ready;
      t.connected += w.connected;
      t.dead += w.dead;
      t.confirmed += w.confirmed;
      for (int c = 0; c < kClasses; ++c) {
        t.delivered[c] += w.delivered[c];
        t.sent[c] += w.sent[c];
      }
      if (w.publisher) {
        any_pub = true;
        all_done = all_done && w.publish_done;
      }
    }
    t.publish_done = any_pub && all_done;
    return t;
  }

  uint64_t expected_deliveries(const Totals& t) const {
    if (o_.workload == Workload::kUnicast) return t.sent[0];
    return (t.sent[0] + t.sent[1]) * static_cast<uint64_t>(o_.subscribers);
  }

  nlohmann::json base_result() const {
    nlohmann::json r = nlohmann::json::parse(o_.meta, nullptr, false);
    if (!r.is_object()) r = nlohmann::json::object();
    r["mode"] = workload_name(o_.workload);
    r["system"] = system_name(o_.system);
    r["connections"] = o_.subscribers;
    if (o_.payload != 128) r["payload_bytes"] = o_.payload;
    if (o_.system == System::kMqtt) r["qos"] = o_.qos;
    return r;
  }

  bool prepublish() {
    if (o_.api.empty()) {
      std::fprintf(stderr, "loadgen: reconnect needs --api (Herald's HTTP API)\n");
      return false;
    }
    const uint64_t t0 = now_ns();
    std::string batch;
    int in_batch = 0;
    auto flush = [&] {
      if (in_batch == 0) return true;
      const int s = http_post(o_.api, "/v1/publish/batch", "{\"messages\":[" + batch + "]}");
      batch.clear();
      in_batch = 0;
      return s == 200;
    };
    for (int m = 0; m < o_.missed; ++m) {
      for (int u = 0; u < o_.subscribers; ++u) {
        if (in_batch > 0) batch += ",";
        batch += "{\"channel\":\"user:" + o_.prefix + std::to_string(u) + "\",\"priority\":2,\"payload\":{\"n\":" +
                 std::to_string(m) + ",\"text\":\"you missed this one while offline\"}}";
        if (++in_batch == 500 && !flush()) {
          std::fprintf(stderr, "loadgen: publishing the missed messages through %s failed\n", o_.api.c_str());
          return false;
        }
      }
    }
    if (!flush()) return false;
    std::fprintf(stderr, "loadgen: published %d missed messages in %.2f s\n", o_.subscribers * o_.missed, secs_since(t0));
    return true;
  }

  std::vector<int> worker_pids() const {
    std::vector<int> pids;
    for (const WorkerProc& w : workers_) pids.push_back(static_cast<int>(w.pid));
    return pids;
  }

  // Waits until `subs` subscribers and `pubs` publishers are ready (reconnect: until
  // `deliveries` arrived); false with the reason if a connection died, a worker exited or
  // --connect-timeout passed.
  bool wait_setup(uint64_t subs, uint64_t pubs, uint64_t deliveries, uint64_t t_start, std::string& why) {
    for (;;) {
      pump(100);
      const Totals t = totals();
      if (deliveries > 0) {
        if (t.delivered[0] >= deliveries) return true;
      } else if (t.sub_ready == subs && t.pub_ready == pubs) {
        return true;
      }
      if (t.dead > 0) {
        why = "connections failed during setup (see the errors above)";
        return false;
      }
      if (secs_since(t_start) > o_.connect_timeout) {
        why = "setup timed out after " + std::to_string(o_.connect_timeout) + " s: " + t.text();
        return false;
      }
      if (any_worker_exited()) {
        why = "a worker exited early";
        return false;
      }
    }
  }

  // Subscriber workers for subscribers [first, --subscribers), and the publisher.
  bool spawn(int first) {
    int per = o_.per_worker;
    if (o_.sub_workers > 0) per = std::min(per, (o_.subscribers + o_.sub_workers - 1) / o_.sub_workers);
    per = std::max(per, 1);
    while (first < o_.subscribers) {
      const int n = std::min(per, o_.subscribers - first);
      if (!spawn_one(false, first, n)) return false;
      first += n;
    }
    if (has_publishers(o_.workload) && !spawn_one(true, 0, 0)) return false;
    return true;
  }

  bool spawn_one(bool publisher, int first, int count) {
    int to[2], from[2];
    if (pipe2(to, O_CLOEXEC) != 0 || pipe2(from, O_CLOEXEC) != 0) return false;
    std::vector<std::string> args;
    for (int i = 0; i < argc_; ++i) args.push_back(argv_[i]);
    args.insert(args.end(), {"--worker", std::to_string(workers_.size()), "--role", publisher ? "pub" : "sub",
                             "--first", std::to_string(first), "--count", std::to_string(count)});
    const pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
      dup2(to[0], 0);
      dup2(from[1], 1);
      std::vector<char*> cargv;
      for (auto& a : args) cargv.push_back(a.data());
      cargv.push_back(nullptr);
      execv(self_.c_str(), cargv.data());
      _exit(127);
    }
    close(to[0]);
    close(from[1]);
    WorkerProc w;
    w.pid = pid;
    w.to = to[1];
    w.from = from[0];
    w.publisher = publisher;
    w.count = count;
    fcntl(w.from, F_SETFL, O_NONBLOCK);
    workers_.push_back(std::move(w));
    return true;
  }

  void send_all(const std::string& s) {
    for (auto& w : workers_)
      if (w.to >= 0) (void)!::write(w.to, s.data(), s.size());
  }
  void send_all_publishers(const std::string& s) {
    for (auto& w : workers_)
      if (w.publisher && w.to >= 0) (void)!::write(w.to, s.data(), s.size());
  }

  // Reads what the workers wrote for up to `ms`, then prints progress once a second.
  void pump(int ms) {
    std::vector<pollfd> p;
    for (auto& w : workers_) p.push_back({w.from, POLLIN, 0});
    if (poll(p.data(), p.size(), ms) > 0) {
      for (size_t i = 0; i < workers_.size(); ++i) {
        if (!(p[i].revents & (POLLIN | POLLHUP))) continue;
        WorkerProc& w = workers_[i];
        char b[65536];
        for (;;) {
          const ssize_t n = ::read(w.from, b, sizeof b);
          if (n <= 0) {
            if (n == 0) w.finished = true;
            break;
          }
          w.in.append(b, static_cast<size_t>(n));
        }
        size_t nl;
        while ((nl = w.in.find('\n')) != std::string::npos) {
          on_line(w, w.in.substr(0, nl));
          w.in.erase(0, nl + 1);
        }
      }
    }
    const uint64_t t = now_ns();
    if (t - last_progress_ >= 1'000'000'000u) {
      const Totals s = totals();
      const uint64_t d = s.delivered[0] + s.delivered[1];
      const double dt = static_cast<double>(t - last_progress_) / 1e9;
      std::fprintf(stderr, "loadgen %s %s: connected %lu, ready %lu/%d, failed %lu, sent %lu, received %lu (%.0f/s)\n",
                   system_name(o_.system), workload_name(o_.workload), static_cast<unsigned long>(s.connected),
                   static_cast<unsigned long>(s.sub_ready), o_.subscribers, static_cast<unsigned long>(s.dead),
                   static_cast<unsigned long>(s.sent[0] + s.sent[1]), static_cast<unsigned long>(d),
                   last_progress_ == 0 ? 0.0 : static_cast<double>(d - last_delivered_) / dt);
      last_progress_ = t;
      last_delivered_ = d;
    }
  }

  void on_line(WorkerProc& w, const std::string& l) {
    if (l.empty()) return;
    std::istringstream in(l.substr(1));
    switch (l[0]) {
      case 'S': {
        int done = 0;
        in >> w.connected >> w.ready >> w.dead >> w.delivered[0] >> w.delivered[1] >> w.sent[0] >> w.sent[1] >>
            w.confirmed >> done;
        w.publish_done = done != 0;
        break;
      }
      case 'E':
        if (w.errors.size() < 5) w.errors.push_back(l.substr(2));
        std::fprintf(stderr, "loadgen worker %d: %s\n", static_cast<int>(&w - workers_.data()), l.substr(2).c_str());
        break;
      case 'H': {
        int cls = 0;
        in >> cls;
        std::string rest;
        std::getline(in, rest);
        if (cls >= 0 && cls < kClasses) w.hist[cls].parse(rest);
        break;
      }
      case 'Z':
        w.finished = true;
        break;
      default:
        break;
    }
  }

  bool all_finished() const {
    return std::all_of(workers_.begin(), workers_.end(), [](const WorkerProc& w) { return w.finished; });
  }
  bool any_worker_exited() {
    for (auto& w : workers_) {
      if (w.pid <= 0) continue;
      int st = 0;
      if (waitpid(w.pid, &st, WNOHANG) == w.pid) {
        w.pid = -1;
        std::fprintf(stderr, "loadgen: worker exited (status %d)\n", st);
        return true;
      }
    }
    return false;
  }
  void reap() {
    for (auto& w : workers_) {
      if (w.to >= 0) close(w.to), w.to = -1;
      if (w.pid <= 0) continue;
      const uint64_t until = now_ns() + 3'000'000'000u;
      int st = 0;
      while (waitpid(w.pid, &st, WNOHANG) != w.pid) {
        if (now_ns() > until) {
          kill(w.pid, SIGKILL);
          waitpid(w.pid, &st, 0);
          break;
        }
        usleep(10000);
      }
      w.pid = -1;
    }
  }
  void print_errors() const {}
  int fail_msg(const std::string& why) {
    std::fprintf(stderr, "loadgen: FAILED: %s\n", why.c_str());
    return 1;
  }
  int fail_exit(const std::string& why) {
    send_all("X\n");
    const uint64_t until = now_ns() + 3'000'000'000u;
    while (!all_finished() && now_ns() < until) pump(50);
    reap();
    return fail_msg(why);
  }

  const Options& o_;
  int argc_;
  char** argv_;
  std::vector<WorkerProc> workers_;
  std::string self_;
  uint64_t last_progress_ = 0, last_delivered_ = 0;
};

}  // namespace
}  // namespace herald::bench

int main(int argc, char** argv) {
  using namespace herald::bench;
  const Options o = parse(argc, argv);
  if (o.worker >= 0) {
    auto w = std::make_unique<Worker>(o);
    return w->run();
  }
  Coordinator c(o, argc, argv);
  return c.run();
}
