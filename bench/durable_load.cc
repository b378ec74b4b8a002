// W4 load generator: acknowledged durable publishes per second and publish latency
// against a running heraldd's HTTP API. Keep-alive connections driven by epoll from a
// few threads (not a thread per connection), optional HTTP pipelining, and its own CPU
// use reported, since it shares the machine with the server it measures.
// Measures only; starts nothing (bench/run_durable_bench.sh starts heraldd).
//
//   durable_load --api 127.0.0.1:7680 --mode single --connections 64 --seconds 10
//   durable_load --api 127.0.0.1:7680 --mode batch --batch 500 --connections 4 --seconds 10
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string host = "127.0.0.1";
  int port = 7680;
  std::string mode = "single";  // single | batch
  int connections = 64;
  int threads = 1;     // epoll threads; connections are spread over them
  int pipeline = 1;    // requests in flight per connection (HTTP/1.1 pipelining)
  int batch = 500;
  int payload = 1024;
  double seconds = 10;
  std::string channel_prefix = "user:bench";
  int channels = 1000;
  std::string key = "herald-dev-api-key";
};

struct Totals {
  std::atomic<uint64_t> acked{0}, failed{0}, requests{0};
  std::mutex mu;
  std::vector<double> latencies_ms;  // per request (a batch request acks `batch` messages)
};

int connect_to(const Options& o) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(o.port));
  ::inet_pton(AF_INET, o.host.c_str(), &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

struct Conn {
  int fd = -1;
  int id = 0;
  uint64_t seq = 0;
  std::string out;                // bytes not yet written
  size_t out_off = 0;
  std::string in;                 // bytes read, not yet parsed
  std::deque<Clock::time_point> sent;  // one per request in flight
  std::deque<int> counts;              // messages per request in flight
  bool dead = false;
};

// Appends one request to c.out.
void add_request(Conn& c, const Options& o, const std::string& payload) {
  const int n = o.mode == "batch" ? o.batch : 1;
  std::string body;
  body.reserve(static_cast<size_t>(n) * (payload.size() + 96) + 16);
  if (o.mode == "batch") body += "{\"messages\":[";
  for (int i = 0; i < n; ++i) {
    const uint64_t s = ++c.seq;
    if (i > 0) body += ',';
    body += "{\"channel\":\"";
    body += o.channel_prefix;
    body += std::to_string((static_cast<uint64_t>(c.id) * 7919 + s) % static_cast<uint64_t>(o.channels));
    body += "\",\"message_id\":\"b";
    body += std::to_string(c.id);
    body += '-';
    body += std::to_string(s);
    body += "\",\"priority\":2,\"payload\":";
    body += payload;
    body += '}';
  }
  if (o.mode == "batch") body += "]}";
  c.out += o.mode == "batch" ? "POST /v1/publish/batch" : "POST /v1/publish";
  c.out += " HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer ";
  c.out += o.key;
  c.out += "\r\nContent-Type: application/json\r\nContent-Length: ";
  c.out += std::to_string(body.size());
  c.out += "\r\n\r\n";
  c.out += body;
  c.sent.push_back(Clock::now());
  c.counts.push_back(n);
}

bool flush(Conn& c) {
  while (c.out_off < c.out.size()) {
    const ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
    if (n < 0 && errno == EAGAIN) return true;
    if (n <= 0) return false;
    c.out_off += static_cast<size_t>(n);
  }
  c.out.clear();
  c.out_off = 0;
  return true;
}

// Parses whole responses from c.in. Returns false on a broken stream.
bool parse(Conn& c, Totals& t, std::vector<double>& lat, int& finished) {
  size_t pos = 0;
  finished = 0;
  for (;;) {
    const size_t he = c.in.find("\r\n\r\n", pos);
    if (he == std::string::npos) break;
    size_t len = 0;
    // Header names from evhttp are "Content-Length".
    const size_t cl = c.in.find("Content-Length: ", pos);
    if (cl != std::string::npos && cl < he) len = std::strtoul(c.in.c_str() + cl + 16, nullptr, 10);
    if (c.in.size() < he + 4 + len) break;
    if (c.sent.empty()) return false;
    const int status = c.in.size() > pos + 12 ? std::atoi(c.in.c_str() + pos + 9) : 0;
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - c.sent.front()).count();
    const int n = c.counts.front();
    c.sent.pop_front();
    c.counts.pop_front();
    t.requests.fetch_add(1, std::memory_order_relaxed);
    if (status == 200) {
      t.acked.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
      lat.push_back(ms);
    } else {
      t.failed.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
    }
    pos = he + 4 + len;
    ++finished;
  }
  c.in.erase(0, pos);
  return true;
}

void run_thread(const Options& o, int first_id, int count, const std::string& payload, const std::atomic<bool>& stop,
                Totals& t, std::atomic<int>& connected, const std::atomic<bool>& go) {
  const int ep = ::epoll_create1(0);
  std::vector<Conn> conns(static_cast<size_t>(count));
  std::vector<double> lat;
  lat.reserve(1 << 20);
  // Every connection first (the measured time starts when all are up).
  for (int i = 0; i < count; ++i) {
    Conn& c = conns[static_cast<size_t>(i)];
    c.id = first_id + i;
    c.fd = connect_to(o);
    if (c.fd < 0) {
      c.dead = true;
      t.failed.fetch_add(1);
    }
  }
  connected.fetch_add(1);
  while (!go.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  for (int i = 0; i < count; ++i) {
    Conn& c = conns[static_cast<size_t>(i)];
    if (c.dead) continue;
    for (int k = 0; k < o.pipeline; ++k) add_request(c, o, payload);
    if (!flush(c)) {
      c.dead = true;
      continue;
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<uint32_t>(i);
    ::epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
  }
  epoll_event events[256];
  char buf[65536];
  for (;;) {
    const bool stopping = stop.load(std::memory_order_relaxed);
    size_t in_flight = 0;
    for (const Conn& c : conns) in_flight += c.dead ? 0 : c.sent.size();
    if (stopping && in_flight == 0) break;
    const int n = ::epoll_wait(ep, events, 256, 100);
    if (n < 0 && errno != EINTR) break;
    for (int e = 0; e < n; ++e) {
      Conn& c = conns[events[e].data.u32];
      if (c.dead) continue;
      if (events[e].events & EPOLLOUT) {
        if (!flush(c)) c.dead = true;
        if (c.out.empty()) {
          epoll_event ev{};
          ev.events = EPOLLIN;
          ev.data.u32 = events[e].data.u32;
          ::epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
        }
      }
      if (!(events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
      const ssize_t r = ::recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
      if (r == 0 || (r < 0 && errno != EAGAIN)) {
        c.dead = true;
        continue;
      }
      if (r < 0) continue;
      c.in.append(buf, static_cast<size_t>(r));
      int finished = 0;
      if (!parse(c, t, lat, finished)) {
        c.dead = true;
        continue;
      }
      if (stop.load(std::memory_order_relaxed)) continue;  // let what is in flight finish
      for (int k = 0; k < finished; ++k) add_request(c, o, payload);
      if (finished > 0) {
        if (!flush(c)) {
          c.dead = true;
        } else if (!c.out.empty()) {
          epoll_event ev{};
          ev.events = EPOLLIN | EPOLLOUT;
          ev.data.u32 = events[e].data.u32;
          ::epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
        }
      }
    }
  }
  for (Conn& c : conns) {
    if (c.dead && !c.sent.empty()) t.failed.fetch_add(c.sent.size());
    if (c.fd >= 0) ::close(c.fd);
  }
  ::close(ep);
  std::lock_guard lock(t.mu);
  t.latencies_ms.insert(t.latencies_ms.end(), lat.begin(), lat.end());
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(i), v.end());
  return v[i];
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--api") {
      o.host = v.substr(0, v.rfind(':'));
      o.port = std::atoi(v.c_str() + v.rfind(':') + 1);
    } else if (k == "--mode") {
      o.mode = v;
    } else if (k == "--connections") {
      o.connections = std::atoi(v.c_str());
    } else if (k == "--threads") {
      o.threads = std::max(1, std::atoi(v.c_str()));
    } else if (k == "--pipeline") {
      o.pipeline = std::max(1, std::atoi(v.c_str()));
    } else if (k == "--batch") {
      o.batch = std::atoi(v.c_str());
    } else if (k == "--payload") {
      o.payload = std::atoi(v.c_str());
    } else if (k == "--seconds") {
      o.seconds = std::atof(v.c_str());
    } else if (k == "--channels") {
      o.channels = std::max(1, std::atoi(v.c_str()));
    } else if (k == "--channel-prefix") {
      o.channel_prefix = v;
    } else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (o.mode != "single" && o.mode != "batch") {
    std::fprintf(stderr, "--mode: single or batch\n");
    return 2;
  }
  // The payload: a JSON string of `payload` bytes (the JSON text adds 2 quotes).
  std::string payload(static_cast<size_t>(std::max(2, o.payload)), 'x');
  payload.front() = payload.back() = '"';
  std::atomic<bool> stop{false};
  Totals t;
  std::vector<std::thread> threads;
  std::atomic<int> connected{0};
  std::atomic<bool> go{false};
  const int per = (o.connections + o.threads - 1) / o.threads;
  for (int th = 0, first = 0; th < o.threads && first < o.connections; ++th, first += per) {
    const int count = std::min(per, o.connections - first);
    threads.emplace_back([&, first, count] { run_thread(o, first, count, payload, stop, t, connected, go); });
  }
  while (connected.load() < static_cast<int>(threads.size())) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const double cpu0 = cpu_seconds();
  const auto t0 = Clock::now();
  go = true;
  std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
  stop = true;
  for (auto& th : threads) th.join();
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  const double cpu = cpu_seconds() - cpu0;
  std::printf(
      "mode=%s connections=%d pipeline=%d batch=%d payload=%dB seconds=%.1f acked=%llu failed=%llu "
      "acked_per_s=%.0f request_latency_ms p50=%.2f p99=%.2f max=%.2f loadgen_cpu=%.0f%%\n",
      o.mode.c_str(), o.connections, o.pipeline, o.mode == "batch" ? o.batch : 1, o.payload, secs,
      static_cast<unsigned long long>(t.acked.load()), static_cast<unsigned long long>(t.failed.load()),
      static_cast<double>(t.acked.load()) / secs, percentile(t.latencies_ms, 0.5), percentile(t.latencies_ms, 0.99),
      t.latencies_ms.empty() ? 0.0 : *std::max_element(t.latencies_ms.begin(), t.latencies_ms.end()),
      100 * cpu / secs);
  return t.failed.load() == 0 ? 0 : 1;
}
