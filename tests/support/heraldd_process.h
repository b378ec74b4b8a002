// Integration test helpers: start the real heraldd on port 0 and read its ready
// file; a blocking client speaking the binary protocol over a real socket;
// a minimal HTTP/1.1 client for the API. The server's log is printed when a
// test fails.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "codec/frame_encoder.h"
#include "codec/message.h"
#include "codec/message_reader.h"
#include "server/jwt.h"

namespace herald::testing {

inline const char* kDevSecret = "herald-dev-secret";
inline const char* kDevApiKey = "herald-dev-api-key";

// A token for `user` signed with the server's development secret.
inline std::string make_token(const std::string& user, nlohmann::json extra = nlohmann::json::object(),
                              int64_t ttl_s = 3600) {
  nlohmann::json claims = {{"sub", user}, {"exp", std::time(nullptr) + ttl_s}};
  for (auto& [k, v] : extra.items()) claims[k] = v;
  server::JwtSettings s;
  s.secret = kDevSecret;
  return server::sign_token(claims, s);
}

inline bool split_address(const std::string& a, std::string& host, uint16_t& port) {
  const auto colon = a.rfind(':');
  if (colon == std::string::npos) return false;
  host = a.substr(0, colon);
  port = static_cast<uint16_t>(std::stoi(a.substr(colon + 1)));
  return true;
}

class HeralddProcess {
 public:
  HeralddProcess() = default;
  HeralddProcess(const HeralddProcess&) = delete;
  ~HeralddProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      ::waitpid(pid_, &st, 0);
    }
    if (::testing::Test::HasFailure()) std::cerr << "---- heraldd log ----\n" << log() << "---- end ----\n";
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

  // Starts heraldd with listeners (TCP, API, WebSocket) on 127.0.0.1:0 plus `args`,
  // waits for its ready file. The durable store goes to a directory of this process
  // (data_dir()) unless `args` names --store.dir; a restart (start() again after stop())
  // keeps it.
  bool start(const std::vector<std::string>& args = {}) {
    if (dir_.empty()) {
      char tmpl[] = "/tmp/heraldd-test-XXXXXX";
      dir_ = ::mkdtemp(tmpl);
    }
    const std::string ready = dir_ + "/ready.json";
    std::error_code ignored;
    std::filesystem::remove(ready, ignored);
    std::vector<std::string> argv = exec_prefix_;
    const std::vector<std::string> own = {HERALDD_PATH, "--ready-file", ready, "--listen.tcp", "127.0.0.1:0",
                                     "--listen.api", "127.0.0.1:0", "--listen.ws", "127.0.0.1:0",
                                     "--server.loops", "2"};
    argv.insert(argv.end(), own.begin(), own.end());
    if (std::find(args.begin(), args.end(), "--store.dir") == args.end()) {
      argv.push_back("--store.dir");
      argv.push_back(data_dir());
    }
    argv.insert(argv.end(), args.begin(), args.end());
    log_path_ = dir_ + "/heraldd.log";
    pid_ = ::fork();
    if (pid_ == 0) {
      // Appends: the log of every run (restarts) stays readable.
      const int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      std::vector<char*> cargv;
      for (auto& a : argv) cargv.push_back(a.data());
      cargv.push_back(nullptr);
      ::execv(cargv[0], cargv.data());
      ::_exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (std::chrono::steady_clock::now() < deadline) {
      std::ifstream in(ready);
      if (in) {
        nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
        if (!j.is_discarded()) {
          ready_ = j;
          return true;
        }
      }
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        exit_status_ = st;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  // Runs heraldd through a wrapper that execs it in place (so pid() is heraldd's), e.g.
  // {"/usr/sbin/ip", "netns", "exec", "NAME"} to start it in a network namespace.
  void set_exec_prefix(std::vector<std::string> prefix) { exec_prefix_ = std::move(prefix); }

  std::string address(const std::string& listener) const {
    return ready_.contains(listener) ? ready_[listener].get<std::string>() : "";
  }
  uint16_t port(const std::string& listener) const {
    std::string host;
    uint16_t p = 0;
    split_address(address(listener), host, p);
    return p;
  }
  pid_t pid() const { return pid_; }

  // Sends `sig` and waits up to `timeout_ms` for exit; returns the exit code
  // (128+signal if killed), or -1 on timeout.
  int stop(int sig = SIGTERM, int timeout_ms = 10000) {
    if (pid_ <= 0) return exit_status_;
    ::kill(pid_, sig);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        exit_status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        return exit_status_;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }

  // Resident memory in KiB from /proc.
  long rss_kb() const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    }
    return -1;
  }

  std::string log() const {
    std::ifstream in(log_path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  const std::string& dir() const { return dir_; }
  std::string data_dir() const { return dir_ + "/data"; }

 private:
  pid_t pid_ = -1;
  int exit_status_ = -1;
  std::string dir_;
  std::vector<std::string> exec_prefix_;
  std::string log_path_;
  nlohmann::json ready_;
};

// `receive_buffer` > 0: SO_RCVBUF, set before connect() so the window offered in the
// handshake already fits it (tcp(7): it must be set before connect to take effect).
inline int connect_tcp(uint16_t port, const char* host = "127.0.0.1", int receive_buffer = 0) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (receive_buffer > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, host, &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// One decoded message from the server.
struct Received {
  codec::FrameType type;
  std::unique_ptr<google::protobuf::Message> message;
  template <class M>
  const M& as() const {
    return static_cast<const M&>(*message);
  }
};

// A blocking binary-protocol client over a real TCP socket.
class Client {
 public:
  // `receive_buffer` > 0: a small receive buffer from the start (see connect_tcp), for
  // slow consumers that must later receive everything promptly.
  explicit Client(uint16_t port, const char* host = "127.0.0.1", int receive_buffer = 0)
      : fd_(connect_tcp(port, host, receive_buffer)) {}
  ~Client() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    if (fd_ >= 0) ::close(fd_);
  }

  // TLS handshake over the connected socket (certificate checked against `ctx`'s
  // trust store, host name `host`). False with `error` set on failure.
  bool start_tls(SSL_CTX* ctx, const std::string& host, std::string* error = nullptr) {
    ssl_ = SSL_new(ctx);
    SSL_set_fd(ssl_, fd_);
    SSL_ctrl(ssl_, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, const_cast<char*>(host.c_str()));
    SSL_set1_host(ssl_, host.c_str());
    if (SSL_connect(ssl_) != 1) {
      if (error != nullptr) {
        char buf[256];
        ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
        *error = buf;
      }
      return false;
    }
    return true;
  }
  Client(const Client&) = delete;
  bool connected() const { return fd_ >= 0; }
  int fd() const { return fd_; }

  bool send_raw(std::span<const uint8_t> bytes) {
    size_t off = 0;
    while (off < bytes.size()) {
      const ssize_t n = ssl_ != nullptr ? SSL_write(ssl_, bytes.data() + off, static_cast<int>(bytes.size() - off))
                                        : ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }

  bool send(const google::protobuf::Message& m) {
    codec::FrameType type;
    if (!codec::frame_type_for(m, type)) return false;
    std::vector<uint8_t> body;
    codec::serialize_message(m, SIZE_MAX, body);
    codec::EncodedMessage em;
    codec::EncodeOptions o;
    o.checksum = checksum_;
    if (!codec::ok(codec::encode_message(type, body, o, nullptr, em))) return false;
    std::vector<uint8_t> wire;
    codec::append_frames(em, seq_, wire);
    return send_raw(wire);
  }

  // Next message from the server, or nullopt after `timeout_ms` or at EOF/error
  // (then closed() tells which, and error() the decode status).
  std::optional<Received> read(int timeout_ms = 3000) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      if (pos_ < buf_.size()) {
        codec::InboundMessage m;
        codec::DecodeResult r =
            reader_.read(std::span<const uint8_t>(buf_).subspan(pos_), 0, m);
        pos_ += r.consumed;
        if (pos_ == buf_.size()) {
          buf_.clear();
          pos_ = 0;
        }
        if (r.status == codec::Status::kOk) {
          Received out{m.type, nullptr};
          if (!codec::ok(codec::decode_message(m.type, m.body, SIZE_MAX, out.message))) return std::nullopt;
          return out;
        }
        if (r.status != codec::Status::kNeedMore) {
          error_ = r.status;
          return std::nullopt;
        }
      }
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline || closed_) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      const int wait = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count());
      const bool buffered = ssl_ != nullptr && SSL_pending(ssl_) > 0;
      if (!buffered && ::poll(&p, 1, wait) <= 0) return std::nullopt;
      uint8_t tmp[65536];
      const ssize_t n = ssl_ != nullptr ? SSL_read(ssl_, tmp, sizeof tmp) : ::recv(fd_, tmp, sizeof tmp, 0);
      if (n <= 0) {
        closed_ = true;
        return std::nullopt;
      }
      // Keep already-buffered bytes: append (buffers are small in tests).
      std::vector<uint8_t> rest(buf_.begin() + static_cast<ptrdiff_t>(pos_), buf_.end());
      rest.insert(rest.end(), tmp, tmp + n);
      buf_.swap(rest);
      pos_ = 0;
    }
  }

  // Reads until a message of `type` arrives (skipping others), or nullopt.
  std::optional<Received> read_until(codec::FrameType type, int timeout_ms = 3000) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      const int left = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
      auto r = read(std::max(left, 1));
      if (!r) return std::nullopt;
      if (r->type == type) return r;
    }
    return std::nullopt;
  }

  // True when the server closes the connection within `timeout_ms` (any
  // remaining messages are read and dropped).
  bool wait_closed(int timeout_ms = 3000) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (!closed_ && std::chrono::steady_clock::now() < deadline) {
      if (!read(50) && error_ != codec::Status::kOk) {
        // Undecodable input: drain the socket until EOF.
        uint8_t tmp[4096];
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 50) > 0 && ::recv(fd_, tmp, sizeof tmp, 0) <= 0) closed_ = true;
      }
    }
    return closed_;
  }

  // Hello -> Welcome -> Auth -> AuthOk. Returns the first non-expected message
  // (e.g. an Error) in `failure` when it does not get AuthOk.
  bool handshake(const std::string& token, std::optional<Received>* failure = nullptr,
                 const v1::Hello* hello_override = nullptr) {
    v1::Hello hello;
    if (hello_override != nullptr) {
      hello = *hello_override;
    } else {
      hello.add_versions(1);
    }
    if (!send(hello)) return false;
    auto w = read();
    if (!w || w->type != codec::FrameType::kWelcome) {
      if (failure != nullptr) *failure = std::move(w);
      return false;
    }
    welcome_ = w->as<v1::Welcome>();
    if (welcome_.checksum()) checksum_ = true;
    v1::Auth auth;
    auth.set_token(token);
    if (!send(auth)) return false;
    auto ok = read();
    if (!ok || ok->type != codec::FrameType::kAuthOk) {
      if (failure != nullptr) *failure = std::move(ok);
      return false;
    }
    return true;
  }

  // Subscribe and wait for SubscribeOk (or an Error, returned in `reply`).
  std::optional<Received> subscribe(const std::string& channel, bool resume = false, const std::string& epoch = "",
                                    uint64_t offset = 0) {
    v1::Subscribe s;
    s.set_request_id(++request_id_);
    s.set_channel(channel);
    s.set_resume(resume);
    s.set_epoch(epoch);
    s.set_offset(offset);
    if (!send(s)) return std::nullopt;
    return read();
  }

  bool closed() const { return closed_; }
  codec::Status error() const { return error_; }
  const v1::Welcome& welcome() const { return welcome_; }
  // Shrinks SO_RCVBUF after connect: the kernel has already offered a bigger window, so
  // it drops data that no longer fits and the server's TCP retransmits with exponential
  // backoff (seconds of silence once the client reads again). Fine for a client that is
  // only meant to be closed as a slow consumer; one that must later receive everything
  // promptly passes receive_buffer to the constructor instead.
  void shrink_receive_buffer(int bytes) { ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes); }

 private:
  int fd_;
  SSL* ssl_ = nullptr;
  uint32_t seq_ = 0;
  uint64_t request_id_ = 0;
  bool checksum_ = false;
  bool closed_ = false;
  codec::Status error_ = codec::Status::kOk;
  std::vector<uint8_t> buf_;
  size_t pos_ = 0;
  codec::MessageReader reader_{[] {
    codec::ReaderLimits l;
    l.decoder.max_frame_size = 16 * 1024 * 1024;
    l.max_message_size = 16 * 1024 * 1024;
    l.reassembly.max_message_size = 16 * 1024 * 1024;
    l.reassembly.max_buffered_bytes = 16 * 1024 * 1024;
    l.compression = false;
    return l;
  }()};
  v1::Welcome welcome_;
};

struct HttpResponse {
  int status = 0;
  std::string body;
  nlohmann::json json() const { return nlohmann::json::parse(body, nullptr, false); }
};

// One HTTP/1.1 request with Connection: close.
inline HttpResponse http(uint16_t port, const std::string& method, const std::string& path,
                         const std::string& body = "", const std::string& api_key = kDevApiKey) {
  HttpResponse r;
  const int fd = connect_tcp(port);
  if (fd < 0) return r;
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  if (!api_key.empty()) req += "Authorization: Bearer " + api_key + "\r\n";
  if (!body.empty() || method == "POST") {
    req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  req += "\r\n" + body;
  ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string resp;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) break;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    resp.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (resp.size() > 12) r.status = std::stoi(resp.substr(9, 3));
  const auto sep = resp.find("\r\n\r\n");
  if (sep != std::string::npos) r.body = resp.substr(sep + 4);
  return r;
}

// The value of one sample of GET /metrics, e.g.
// metric(port, "herald_shed_total{priority=\"P3\"}"); -1 if absent.
inline double metric(uint16_t api_port, const std::string& sample) {
  const HttpResponse m = http(api_port, "GET", "/metrics", "", "");
  const std::string key = "\n" + sample + " ";
  const auto at = m.body.find(key);
  if (at == std::string::npos) return -1;
  return std::stod(m.body.substr(at + key.size()));
}

// Polls metric() until `ok(value)` holds or `timeout_ms` passed; returns the last value.
template <class Pred>
double wait_metric(uint16_t api_port, const std::string& sample, Pred ok, int timeout_ms = 5000) {
  double v = metric(api_port, sample);
  for (int waited = 0; !ok(v) && waited < timeout_ms; waited += 50) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    v = metric(api_port, sample);
  }
  return v;
}

}  // namespace herald::testing
