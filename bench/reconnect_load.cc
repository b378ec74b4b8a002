// Reconnect storm: N clients (one user each) connect at once to a running heraldd,
// each subscribes to its personal channel (the offline inbox) and must receive the
// M messages published while it was away. Reports the time until all are caught up.
// One thread, non-blocking sockets, epoll. Measures only; publishes the missed messages
// first through the HTTP API (batch) unless --no-publish.
//
//   reconnect_load --tcp 127.0.0.1:7600 --api 127.0.0.1:7680 --clients 10000 --missed 10
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "codec/frame_encoder.h"
#include "codec/message.h"
#include "codec/message_reader.h"
#include "herald.pb.h"
#include <nlohmann/json.hpp>
#include "server/jwt.h"

namespace {

using namespace herald;

bool split(const std::string& a, std::string& host, int& port) {
  const auto c = a.rfind(':');
  if (c == std::string::npos) return false;
  host = a.substr(0, c);
  port = std::atoi(a.c_str() + c + 1);
  return true;
}

int connect_nb(const std::string& host, int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void frame(const google::protobuf::Message& m, uint32_t& seq, std::vector<uint8_t>& out) {
  codec::FrameType type;
  codec::frame_type_for(m, type);
  std::vector<uint8_t> body;
  codec::serialize_message(m, SIZE_MAX, body);
  codec::EncodedMessage em;
  codec::EncodeOptions o;
  o.checksum = false;
  codec::encode_message(type, body, o, nullptr, em);
  codec::append_frames(em, seq, out);
}

struct Conn {
  int fd = -1;
  std::vector<uint8_t> out;
  size_t sent = 0;
  std::vector<uint8_t> in;
  std::unique_ptr<codec::MessageReader> reader;
  int got = 0;
  bool done = false;
};

// POST body to the API with Connection: close; returns the HTTP status.
int http_post(const std::string& host, int port, const std::string& path, const std::string& body) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return 0;
  const std::string req = "POST " + path +
                          " HTTP/1.1\r\nHost: b\r\nConnection: close\r\nAuthorization: Bearer herald-dev-api-key\r\n"
                          "Content-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body;
  size_t off = 0;
  while (off < req.size()) {
    const ssize_t n = ::send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  std::string resp;
  char buf[8192];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) resp.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return resp.size() > 12 ? std::atoi(resp.c_str() + 9) : 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string tcp = "127.0.0.1:7600", api = "127.0.0.1:7680", prefix = "rc";
  int clients = 10000, missed = 10;
  bool publish = true;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    const std::string v = i + 1 < argc ? argv[i + 1] : "";
    if (k == "--tcp") tcp = v, ++i;
    else if (k == "--api") api = v, ++i;
    else if (k == "--clients") clients = std::atoi(v.c_str()), ++i;
    else if (k == "--missed") missed = std::atoi(v.c_str()), ++i;
    else if (k == "--prefix") prefix = v, ++i;
    else if (k == "--no-publish") publish = false;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);

  std::string host, api_host;
  int port = 0, api_port = 0;
  if (!split(tcp, host, port) || !split(api, api_host, api_port)) return 2;
  using Clock = std::chrono::steady_clock;
  if (publish) {
    // The messages the users missed: `missed` per user, 500 per batch request.
    const auto t0 = Clock::now();
    std::string batch;
    int in_batch = 0;
    auto flush = [&] {
      if (in_batch == 0) return true;
      const int s = http_post(api_host, api_port, "/v1/publish/batch", "{\"messages\":[" + batch + "]}");
      batch.clear();
      in_batch = 0;
      return s == 200;
    };
    for (int m = 0; m < missed; ++m) {
      for (int u = 0; u < clients; ++u) {
        if (in_batch > 0) batch += ",";
        batch += "{\"channel\":\"user:" + prefix + std::to_string(u) + "\",\"priority\":2,\"payload\":{\"n\":" +
                 std::to_string(m) + ",\"text\":\"you missed this one while offline\"}}";
        if (++in_batch == 500 && !flush()) {
          std::fprintf(stderr, "publish failed\n");
          return 1;
        }
      }
    }
    if (!flush()) return 1;
    std::printf("published %d messages in %.2f s\n", clients * missed,
                std::chrono::duration<double>(Clock::now() - t0).count());
  }

  server::JwtSettings js;
  js.secret = "herald-dev-secret";
  std::vector<Conn> conns(static_cast<size_t>(clients));
  const int ep = epoll_create1(0);
  const auto t0 = Clock::now();
  for (int i = 0; i < clients; ++i) {
    Conn& c = conns[static_cast<size_t>(i)];
    c.fd = connect_nb(host, port);
    if (c.fd < 0) {
      std::fprintf(stderr, "connect %d failed: %s\n", i, std::strerror(errno));
      return 1;
    }
    uint32_t seq = 0;
    v1::Hello hello;
    hello.add_versions(1);
    hello.set_device_id("bench");
    frame(hello, seq, c.out);
    v1::Auth auth;
    const std::string user = prefix + std::to_string(i);
    auth.set_token(server::sign_token(nlohmann::json{{"sub", user}, {"exp", std::time(nullptr) + 3600}}, js));
    frame(auth, seq, c.out);
    v1::Subscribe sub;
    sub.set_request_id(1);
    sub.set_channel("user:" + user);
    frame(sub, seq, c.out);
    codec::ReaderLimits l;
    l.compression = false;
    c.reader = std::make_unique<codec::MessageReader>(l);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.u32 = static_cast<uint32_t>(i);
    epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
  }
  int done = 0, failed = 0;
  std::vector<epoll_event> events(1024);
  uint8_t buf[65536];
  while (done + failed < clients) {
    if (Clock::now() - t0 > std::chrono::seconds(120)) break;
    const int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 1000);
    for (int k = 0; k < n; ++k) {
      Conn& c = conns[events[static_cast<size_t>(k)].data.u32];
      if (c.done || c.fd < 0) continue;
      if ((events[static_cast<size_t>(k)].events & EPOLLOUT) && c.sent < c.out.size()) {
        const ssize_t w = ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
        if (w > 0) c.sent += static_cast<size_t>(w);
        if (c.sent == c.out.size()) {
          epoll_event ev{};
          ev.events = EPOLLIN;
          ev.data.u32 = events[static_cast<size_t>(k)].data.u32;
          epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
        }
      }
      if (events[static_cast<size_t>(k)].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        const ssize_t r = ::recv(c.fd, buf, sizeof buf, 0);
        if (r <= 0) {
          if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
            ++failed;
            ::close(c.fd);
            c.fd = -1;
          }
          continue;
        }
        c.in.insert(c.in.end(), buf, buf + r);
        size_t pos = 0;
        for (;;) {
          codec::InboundMessage m;
          const codec::DecodeResult d = c.reader->read(std::span<const uint8_t>(c.in).subspan(pos), 0, m);
          pos += d.consumed;
          if (d.status == codec::Status::kNeedMore) break;
          if (d.status != codec::Status::kOk) {
            ++failed;
            c.done = true;
            break;
          }
          if (m.type == codec::FrameType::kPublication && ++c.got == missed) {
            c.done = true;
            ++done;
            break;
          }
          if (m.type == codec::FrameType::kError) {
            ++failed;
            c.done = true;
            break;
          }
        }
        c.in.erase(c.in.begin(), c.in.begin() + static_cast<long>(pos));
      }
    }
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("clients=%d missed=%d caught_up=%d failed=%d all_caught_up_after_s=%.2f\n", clients, missed, done,
              failed, secs);
  for (Conn& c : conns)
    if (c.fd >= 0) ::close(c.fd);
  return done == clients ? 0 : 1;
}
