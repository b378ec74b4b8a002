// WebSocket vs binary TCP, measured against the real heraldd in the same run:
//  - fan-out throughput: S subscribers of one channel, M publications through the HTTP
//    batch API, time until every subscriber has all of them (deliveries per second);
//  - idle memory: server RSS growth per connection after Hello/Auth/Subscribe, for N
//    connections of each kind.
// Runs alternate TCP and WebSocket (herald.v1 binary) and print each run plus the
// median ratio. Usage: ws_fanout HERALDD [--subscribers S] [--messages M] [--reps R]
//                      [--idle N] [--json]   (docs/benchmarks.md has results)
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "codec/frame_encoder.h"
#include "codec/message.h"
#include "server/jwt.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string heraldd;
  int subscribers = 100;
  int messages = 2000;
  int reps = 3;
  int idle = 2000;
  bool json = false;
};

void die(const std::string& what) {
  std::fprintf(stderr, "ws_fanout: %s\n", what.c_str());
  std::exit(1);
}

// ---------------------------------------------------------------- heraldd

struct Server {
  pid_t pid = -1;
  std::string dir;
  nlohmann::json ready;

  void start(const std::string& bin, const std::vector<std::string>& extra) {
    char tmpl[] = "/tmp/ws-fanout-XXXXXX";
    dir = ::mkdtemp(tmpl);
    const std::string ready_path = dir + "/ready.json";
    std::vector<std::string> args = {bin, "--ready-file", ready_path, "--listen.tcp", "127.0.0.1:0",
                                     "--listen.api", "127.0.0.1:0", "--listen.ws", "127.0.0.1:0",
                                     "--server.loops", "1", "--server.log_level", "warn",
                                     "--limits.max_connections_per_user", "100000",
                                     "--limits.api_max_body_bytes", "67108864",
                                     "--delivery.soft_limit_bytes", "33554432",
                                     "--delivery.hard_limit_bytes", "67108864", "--store.dir", dir + "/data"};
    args.insert(args.end(), extra.begin(), extra.end());
    pid = ::fork();
    if (pid == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    for (int i = 0; i < 1500; ++i) {
      std::ifstream in(ready_path);
      if (in) {
        ready = nlohmann::json::parse(in, nullptr, false);
        if (!ready.is_discarded()) return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    die("heraldd did not start");
  }
  uint16_t port(const char* name) const {
    const std::string a = ready[name].get<std::string>();
    return static_cast<uint16_t>(std::stoi(a.substr(a.rfind(':') + 1)));
  }
  long rss_kb() const {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    }
    return -1;
  }
  ~Server() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

int connect_to(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("connect failed");
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

void write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) die("send failed");
    off += static_cast<size_t>(n);
  }
}

std::string http_post(uint16_t port, const std::string& path, const std::string& body) {
  const int fd = connect_to(port);
  write_all(fd, "POST " + path + " HTTP/1.1\r\nHost: x\r\nX-API-Key: herald-dev-api-key\r\nConnection: close\r\n"
                "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

// ---------------------------------------------------------------- clients

std::string herald_frames(const std::string& user, uint32_t& seq) {
  std::string out;
  const auto add = [&](const google::protobuf::Message& m) {
    herald::codec::FrameType type;
    herald::codec::frame_type_for(m, type);
    std::vector<uint8_t> body;
    herald::codec::serialize_message(m, SIZE_MAX, body);
    herald::codec::EncodedMessage em;
    herald::codec::EncodeOptions o;
    o.checksum = false;
    herald::codec::encode_message(type, body, o, nullptr, em);
    std::vector<uint8_t> wire;
    herald::codec::append_frames(em, seq, wire);
    out.append(wire.begin(), wire.end());
  };
  herald::v1::Hello hello;
  hello.add_versions(1);
  add(hello);
  herald::v1::Auth auth;
  herald::server::JwtSettings js;
  js.secret = "herald-dev-secret";
  auth.set_token(herald::server::sign_token(
      {{"sub", user}, {"exp", std::time(nullptr) + 3600}, {"channels", {"bench"}}}, js));
  add(auth);
  herald::v1::Subscribe sub;
  sub.set_request_id(1);
  sub.set_channel("bench");
  add(sub);
  return out;
}

std::string ws_binary_message(const std::string& payload) {
  std::string f;
  f += static_cast<char>(0x82);
  if (payload.size() < 126) {
    f += static_cast<char>(0x80 | payload.size());
  } else {
    f += static_cast<char>(0x80 | 126);
    f += static_cast<char>(payload.size() >> 8);
    f += static_cast<char>(payload.size() & 0xFF);
  }
  f += std::string("\0\0\0\0", 4);  // a zero mask key leaves the payload as is
  return f + payload;
}

struct Conn {
  int fd = -1;
  bool ws = false;
  std::string buf;
  size_t pos = 0;
  int subscribed = 0;
  int publications = 0;
  bool upgraded = false;
};

// Counts Herald frames in `data` (whole frames).
void count_frames(Conn& c, const char* data, size_t n, size_t* used) {
  size_t off = 0;
  while (n - off >= 16) {
    const auto* p = reinterpret_cast<const uint8_t*>(data + off);
    const uint32_t len = herald::codec::get_u32(p + 8);
    if (n - off < 16 + len) break;
    const uint16_t type = herald::codec::get_u16(p + 6) & herald::codec::kTypeMask;
    if (type == 0x020) ++c.publications;
    if (type == 0x011) ++c.subscribed;
    if (type == 0x032) die("server sent an Error frame");
    off += 16 + len;
  }
  *used = off;
}

void consume(Conn& c) {
  if (!c.ws) {
    size_t used = 0;
    count_frames(c, c.buf.data() + c.pos, c.buf.size() - c.pos, &used);
    c.pos += used;
  } else {
    if (!c.upgraded) {
      const size_t e = c.buf.find("\r\n\r\n", c.pos);
      if (e == std::string::npos) return;
      if (c.buf.compare(c.pos, 12, "HTTP/1.1 101") != 0) die("upgrade refused: " + c.buf.substr(c.pos, 40));
      c.upgraded = true;
      c.pos = e + 4;
    }
    for (;;) {
      const size_t avail = c.buf.size() - c.pos;
      if (avail < 2) break;
      const auto* p = reinterpret_cast<const uint8_t*>(c.buf.data() + c.pos);
      size_t hdr = 2;
      uint64_t len = p[1] & 0x7F;
      if (len == 126) {
        if (avail < 4) break;
        len = (p[2] << 8) | p[3];
        hdr = 4;
      } else if (len == 127) {
        if (avail < 10) break;
        len = 0;
        for (int i = 0; i < 8; ++i) len = (len << 8) | p[2 + i];
        hdr = 10;
      }
      if (avail < hdr + len) break;
      if ((p[0] & 0x0F) == 0x2) {
        size_t used = 0;
        count_frames(c, c.buf.data() + c.pos + hdr, len, &used);
        if (used != len) die("a WebSocket message did not hold whole frames");
      } else if ((p[0] & 0x0F) == 0x8) {
        die("server closed the WebSocket");
      }
      c.pos += hdr + len;
    }
  }
  if (c.pos > 65536 || c.pos == c.buf.size()) {
    c.buf.erase(0, c.pos);
    c.pos = 0;
  }
}

std::vector<Conn> open_connections(const Server& s, bool ws, int n, const std::string& prefix) {
  std::vector<Conn> conns(static_cast<size_t>(n));
  const uint16_t port = s.port(ws ? "ws" : "tcp");
  for (int i = 0; i < n; ++i) {
    Conn& c = conns[static_cast<size_t>(i)];
    c.ws = ws;
    c.fd = connect_to(port);
    uint32_t seq = 0;
    const std::string frames = herald_frames(prefix + std::to_string(i), seq);
    if (ws) {
      write_all(c.fd, "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                      "Sec-WebSocket-Protocol: herald.v1\r\n\r\n" + ws_binary_message(frames));
    } else {
      write_all(c.fd, frames);
    }
    ::fcntl(c.fd, F_SETFL, O_NONBLOCK);
  }
  return conns;
}

// Polls every connection until `done` holds or the deadline passes.
template <class Done>
bool pump(std::vector<Conn>& conns, Done done, double timeout_s) {
  std::vector<pollfd> pfds(conns.size());
  for (size_t i = 0; i < conns.size(); ++i) pfds[i] = {conns[i].fd, POLLIN, 0};
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  char buf[262144];
  while (!done()) {
    if (Clock::now() > deadline) return false;
    if (::poll(pfds.data(), pfds.size(), 100) <= 0) continue;
    for (size_t i = 0; i < pfds.size(); ++i) {
      if (pfds[i].revents == 0) continue;
      for (;;) {
        const ssize_t n = ::recv(conns[i].fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        conns[i].buf.append(buf, static_cast<size_t>(n));
        if (static_cast<size_t>(n) < sizeof buf) break;
      }
      consume(conns[i]);
    }
  }
  return true;
}

void close_all(std::vector<Conn>& conns) {
  for (auto& c : conns) ::close(c.fd);
  conns.clear();
}

std::string payload_json() {
  // A realistic trading notification (~260 bytes, bench/notifications.h style).
  return R"({"channel":"bench","type":"order_filled","priority":1,"payload":{"order_id":"O-2024-118812","account":"ACC-77123","symbol":"BTC-USD","side":"buy","qty":"0.25","price":"64210.50","fee":"1.61","venue":"XNAS","filled_at":"2026-11-21T09:12:44.118Z","remaining":"0","status":"filled"}})";
}

// One fan-out run; returns deliveries per second.
double fanout_run(const Options& o, bool ws) {
  Server s;
  s.start(o.heraldd, {});
  std::vector<Conn> conns = open_connections(s, ws, o.subscribers, "sub");
  if (!pump(conns, [&] { return std::all_of(conns.begin(), conns.end(), [](const Conn& c) { return c.subscribed == 1; }); },
            30)) {
    die("subscribers did not get SubscribeOk");
  }
  std::string batch = R"({"messages":[)";
  for (int i = 0; i < 1000; ++i) batch += (i ? "," : "") + payload_json();
  batch += "]}";
  const int batches = std::max(1, o.messages / 1000);
  const int total = batches * 1000;
  const uint16_t api = s.port("api");
  const auto t0 = Clock::now();
  std::thread publisher([&] {
    for (int b = 0; b < batches; ++b) {
      const std::string r = http_post(api, "/v1/publish/batch", batch);
      if (r.rfind("HTTP/1.1 200", 0) != 0) die("batch publish failed: " + r.substr(0, 200));
    }
  });
  const bool ok = pump(conns, [&] {
    return std::all_of(conns.begin(), conns.end(), [&](const Conn& c) { return c.publications >= total; });
  }, 120);
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  publisher.join();
  if (!ok) die("not every subscriber got every publication");
  close_all(conns);
  return static_cast<double>(total) * o.subscribers / secs;
}

// Server RSS growth per idle connection (after Hello/Auth/Subscribe), in bytes.
double idle_bytes_per_connection(const Options& o, bool ws) {
  Server s;
  s.start(o.heraldd, {});
  // Warm up the allocator and the loop with a few connections first.
  std::vector<Conn> warm = open_connections(s, ws, 50, "warm");
  pump(warm, [&] { return std::all_of(warm.begin(), warm.end(), [](const Conn& c) { return c.subscribed == 1; }); }, 30);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const long before = s.rss_kb();
  std::vector<Conn> conns = open_connections(s, ws, o.idle, "idle");
  if (!pump(conns, [&] { return std::all_of(conns.begin(), conns.end(), [](const Conn& c) { return c.subscribed == 1; }); },
            60)) {
    die("idle connections did not get SubscribeOk");
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const long after = s.rss_kb();
  close_all(conns);
  close_all(warm);
  return static_cast<double>(after - before) * 1024.0 / o.idle;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (argc < 2) die("usage: ws_fanout HERALDD [--subscribers S] [--messages M] [--reps R] [--idle N] [--json]");
  o.heraldd = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    const auto next = [&] { return i + 1 < argc ? std::atoi(argv[++i]) : 0; };
    if (a == "--subscribers") o.subscribers = next();
    else if (a == "--messages") o.messages = next();
    else if (a == "--reps") o.reps = next();
    else if (a == "--idle") o.idle = next();
    else if (a == "--json") o.json = true;
    else die("unknown argument " + a);
  }
  std::signal(SIGPIPE, SIG_IGN);
  std::vector<double> tcp, ws, ratio;
  for (int r = 0; r < o.reps; ++r) {
    const double t = fanout_run(o, false);
    const double w = fanout_run(o, true);
    tcp.push_back(t);
    ws.push_back(w);
    ratio.push_back(w / t);
    std::printf("run %d: tcp %.0f deliveries/s, websocket %.0f deliveries/s, ratio %.2f\n", r + 1, t, w, w / t);
    std::fflush(stdout);
  }
  std::vector<double> mem_tcp, mem_ws;
  for (int r = 0; r < o.reps; ++r) {
    mem_tcp.push_back(idle_bytes_per_connection(o, false));
    mem_ws.push_back(idle_bytes_per_connection(o, true));
    std::printf("idle run %d: tcp %.0f B/connection, websocket %.0f B/connection\n", r + 1, mem_tcp.back(),
                mem_ws.back());
    std::fflush(stdout);
  }
  std::printf("median: tcp %.0f/s, websocket %.0f/s, websocket/tcp %.2f; idle tcp %.0f B, websocket %.0f B, "
              "difference %+.0f B per connection\n",
              median(tcp), median(ws), median(ratio), median(mem_tcp), median(mem_ws),
              median(mem_ws) - median(mem_tcp));
  if (o.json) {
    nlohmann::json j = {{"tcp_deliveries_per_s", tcp}, {"ws_deliveries_per_s", ws}, {"ratio", ratio},
                        {"idle_tcp_bytes", mem_tcp}, {"idle_ws_bytes", mem_ws}};
    std::printf("%s\n", j.dump().c_str());
  }
  return 0;
}
