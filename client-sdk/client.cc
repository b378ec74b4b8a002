// herald::Client: the libevent transport under a ClientSession. Owns sockets, TLS, timers,
// reconnect scheduling, the command queue from app threads and the position store; holds
// no protocol logic (that is client_session.cc). Plain TCP uses one event and a small
// output buffer per connection (no bufferevent: per-connection memory is the product);
// TLS uses libevent's OpenSSL bufferevent.
#include "herald/client.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <event2/util.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <system_error>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "client-sdk/client_session.h"
#include "client-sdk/position_store.h"

namespace herald {

using codec::Status;

std::string_view status_name(int code) noexcept {
  if (code < 0 || code > UINT16_MAX || !codec::is_known_status(static_cast<uint32_t>(code))) return "kUnknownStatus";
  return codec::to_string(static_cast<Status>(code));
}
std::string_view status_description(int code) noexcept {
  if (code < 0 || code > UINT16_MAX || !codec::is_known_status(static_cast<uint32_t>(code))) return "unknown status";
  return codec::describe(static_cast<Status>(code));
}
bool status_temporary(int code) noexcept {
  if (code < 0 || code > UINT16_MAX || !codec::is_known_status(static_cast<uint32_t>(code))) return false;
  return codec::is_temporary(static_cast<Status>(code));
}

std::string_view to_string(ConnectionState s) noexcept {
  switch (s) {
    case ConnectionState::kStopped: return "stopped";
    case ConnectionState::kConnecting: return "connecting";
    case ConnectionState::kConnected: return "connected";
    case ConnectionState::kReconnecting: return "reconnecting";
    case ConnectionState::kFailed: return "failed";
  }
  return "unknown";
}

namespace {

uint64_t now_ms() noexcept {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}
int64_t unix_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One codec context (zstd contexts, scratch) per thread that drives sessions: shared by
// every client on that loop, never per connection.
codec::CodecContext* thread_codec_context() {
  thread_local codec::CodecContext ctx;
  return &ctx;
}

// Plain TCP reads land here (per thread, shared by its connections), then go straight
// into the session.
constexpr size_t kReadBuffer = 64 * 1024;
uint8_t* thread_read_buffer() {
  thread_local std::unique_ptr<uint8_t[]> buf(new uint8_t[kReadBuffer]);
  return buf.get();
}

void enable_libevent_threads() {
  static std::once_flag once;
  std::call_once(once, [] { evthread_use_pthreads(); });
}

std::string openssl_errors() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

bool is_ip_literal(const std::string& host) {
  in6_addr a6;
  in_addr a4;
  return inet_pton(AF_INET, host.c_str(), &a4) == 1 || inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

}  // namespace

struct Client::Impl final : client::ClientSessionHost {
  // Marks "inside one of this client's libevent callbacks" (and so maybe inside an app
  // handler): stop() must not tear the transport down under the running callback.
  struct Dispatch {
    explicit Dispatch(Impl* i) : impl(i) { ++impl->dispatching; }
    ~Dispatch() { --impl->dispatching; }
    Impl* impl;
  };

  struct ResolveResult {
    uint64_t attempt = 0;
    std::vector<sockaddr_storage> addresses;
    std::string error;
  };
  // Shared with resolver threads, which may outlive the client.
  struct ResolveSlot {
    std::mutex mu;
    int fd = -1;  // eventfd that wakes the loop; -1 once the client is destroyed
    std::vector<ResolveResult> results;
  };

  struct Command {
    enum class Kind : uint8_t { kStart, kStop, kSubscribe, kUnsubscribe, kAck, kPing } kind;
    std::string channel, epoch;
    uint64_t offset = 0;
  };

  Impl(event_base* b, bool own, Options o, Handlers h)
      : opt(std::move(o)),
        handlers(std::move(h)),
        base(b),
        own_base(own),
        session(session_options(opt), this, opt.compression ? thread_codec_context_for_base() : nullptr) {}

  ~Impl() override {
    close_transport();
    if (resolve_ev != nullptr) event_free(resolve_ev);
    if (resolve_slot) {
      std::lock_guard<std::mutex> lock(resolve_slot->mu);  // a resolver thread still running
      if (resolve_slot->fd >= 0) ::close(resolve_slot->fd);  // finds no client to answer
      resolve_slot->fd = -1;
    }
    if (timer != nullptr) event_free(timer);
    if (wake != nullptr) event_free(wake);
    if (ssl_ctx != nullptr) SSL_CTX_free(ssl_ctx);
    if (own_base && base != nullptr) {
      // A TLS bufferevent that wrote just before it was freed still holds a reference for
      // its deferred write callback, and event_base_free drops queued callbacks without
      // running them: the bufferevent, its SSL and buffers would leak. The loop thread has
      // been joined, so this thread may run the base until nothing is left to run.
      for (int i = 0; i < 8 && event_base_loop(base, EVLOOP_NONBLOCK) == 0; ++i) {
      }
      event_base_free(base);
    }
  }

  // The codec context of the loop thread. Own-thread mode: decided before the thread
  // exists, so each client gets its own (its thread is the only user).
  codec::CodecContext* thread_codec_context_for_base() {
    if (own_base) {
      own_ctx = std::make_unique<codec::CodecContext>();
      return own_ctx.get();
    }
    return thread_codec_context();
  }

  static client::SessionOptions session_options(const Options& o) {
    client::SessionOptions s;
    s.client_name = o.client_name;
    s.device_id = o.device_id;
    s.compression = o.compression;
    s.checksum = o.checksum;
    s.max_message_size = o.max_message_size;
    s.heartbeat_ms = o.heartbeat_ms;
    s.heartbeat_timeout_ms = o.heartbeat_timeout_ms;
    s.handshake_timeout_ms = o.connect_timeout_ms;
    s.manual_ack = o.manual_ack;
    s.gap_timeout_ms = o.gap_timeout_ms;
    return s;
  }

  bool init(std::string* error) {
    if (opt.host.empty() || opt.port == 0) return fail_init(error, "host and port are required");
    if (opt.token.empty() && !opt.token_provider) return fail_init(error, "a token or a token_provider is required");
    if (opt.max_message_size != 0 && opt.max_message_size < 16 * 1024) {
      return fail_init(error, "max_message_size must be 0 or at least 16384");
    }
    if (opt.tls) {
      ssl_ctx = SSL_CTX_new(TLS_client_method());
      if (ssl_ctx == nullptr) return fail_init(error, "SSL_CTX_new failed: " + openssl_errors());
      SSL_CTX_set_min_proto_version(ssl_ctx, TLS1_2_VERSION);
      // Our frames detect truncation themselves (STYLE.md: OpenSSL 3 + libevent 2.1).
      SSL_CTX_set_options(ssl_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
      SSL_CTX_set_verify(ssl_ctx, opt.verify_peer ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
      if (!opt.ca_file.empty()) {
        if (SSL_CTX_load_verify_locations(ssl_ctx, opt.ca_file.c_str(), nullptr) != 1) {
          return fail_init(error, "cannot load ca_file " + opt.ca_file + ": " + openssl_errors());
        }
      } else if (SSL_CTX_set_default_verify_paths(ssl_ctx) != 1) {
        return fail_init(error, "cannot load the system trust store: " + openssl_errors());
      }
    }
    if (!opt.position_file.empty()) {
      store = std::make_unique<client::PositionFileStore>(opt.position_file);
      std::string e;
      if (!store->load(&e)) return fail_init(error, "position_file: " + e);
    }
    timer = event_new(base, -1, 0, &Impl::on_timer_cb, this);
    wake = event_new(base, -1, 0, &Impl::on_wake_cb, this);
    if (timer == nullptr || wake == nullptr) return fail_init(error, "event_new failed");
    return true;
  }

  static bool fail_init(std::string* error, std::string text) {
    if (error != nullptr) *error = std::move(text);
    return false;
  }

  // ---- commands from any thread ---------------------------------------------------------

  void post(Command c) {
    {
      std::lock_guard<std::mutex> lock(mu);
      commands.push_back(std::move(c));
    }
    event_active(wake, EV_READ, 0);
  }

  static void on_wake_cb(evutil_socket_t, short, void* arg) {
    Impl* self = static_cast<Impl*>(arg);
    Dispatch d(self);
    self->run_commands();
  }

  void run_commands() {
    std::vector<Command> batch;
    {
      std::lock_guard<std::mutex> lock(mu);
      batch.swap(commands);
    }
    for (Command& c : batch) {
      switch (c.kind) {
        case Command::Kind::kStart:
          if (!started) {
            started = true;
            connect_now();
          }
          break;
        case Command::Kind::kStop:
          stop_in_loop();
          if (own_base) event_base_loopbreak(base);
          break;
        case Command::Kind::kSubscribe: {
          std::string epoch;
          uint64_t offset = 0;
          load_position(c.channel, epoch, offset);
          session.subscribe(c.channel, epoch, offset);
          break;
        }
        case Command::Kind::kUnsubscribe:
          session.unsubscribe(c.channel);
          if (store) store->erase(c.channel);
          break;
        case Command::Kind::kAck:
          session.ack(c.channel, c.epoch, c.offset);
          break;
        case Command::Kind::kPing:
          ping_sent = std::chrono::steady_clock::now();
          ping_nonce = session.ping();
          break;

      }
    }
    after_session_call(Status::kOk);
  }

  void load_position(const std::string& channel, std::string& epoch, uint64_t& offset) {
    if (opt.load_position) {
      try {
        if (opt.load_position(channel, epoch, offset)) return;
      } catch (...) {
        report_handler_exception("load_position");
      }
      epoch.clear();
      offset = 0;
      return;
    }
    if (store && store->get(channel, epoch, offset)) return;
    epoch.clear();
    offset = 0;
  }

  // ---- connection -----------------------------------------------------------------------

  void set_state(ConnectionState s, const Error* error) {
    state.store(s, std::memory_order_release);
    if (handlers.on_state) {
      try {
        handlers.on_state(s, error);
      } catch (...) {
        report_handler_exception("on_state");
      }
    }
  }

  void connect_now() {
    reconnect_at = UINT64_MAX;
    set_state(ConnectionState::kConnecting, nullptr);
    std::string host = opt.host;
    std::string port = std::to_string(opt.port);
    if (const std::string& to = session.reconnect_to(); !to.empty()) {
      // GoAway.reconnect_to: "host:port" (or "[v6]:port").
      const auto colon = to.rfind(':');
      if (colon != std::string::npos && colon + 1 < to.size()) {
        host = to.substr(0, colon);
        port = to.substr(colon + 1);
        if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
      }
    }
    connect_host = host;
    connect_port = port;
    // One deadline covers resolving and connecting.
    connect_deadline = now_ms() + opt.connect_timeout_ms;
    addresses.clear();
    next_address = 0;
    std::string error;
    if (resolve(host, port, EVUTIL_AI_NUMERICHOST, addresses, error)) {
      connect_next_address();  // an IP literal: no resolver needed
      return;
    }
    start_resolve(host, port);
    arm_timer();
  }

  // getaddrinfo into a list of addresses; false with the resolver's message on failure.
  static bool resolve(const std::string& host, const std::string& port, int flags,
                      std::vector<sockaddr_storage>& out, std::string& error) {
    evutil_addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = flags;
    evutil_addrinfo* res = nullptr;
    const int gai = evutil_getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
    if (gai != 0 || res == nullptr) {
      error = evutil_gai_strerror(gai);
      return false;
    }
    for (const evutil_addrinfo* a = res; a != nullptr; a = a->ai_next) {
      if (a->ai_addrlen > sizeof(sockaddr_storage)) continue;
      sockaddr_storage ss{};
      std::memcpy(&ss, a->ai_addr, a->ai_addrlen);
      out.push_back(ss);
    }
    evutil_freeaddrinfo(res);
    return !out.empty();
  }

  // A host name goes to the system resolver on a short-lived thread: getaddrinfo blocks for
  // as long as DNS takes, and the loop thread must keep serving timers and other clients.
  // The thread leaves its answer, tagged with the attempt it belongs to, and wakes the loop
  // through an eventfd (safe from any thread, whatever locking the app's event_base has).
  void start_resolve(const std::string& host, const std::string& port) {
    if (resolve_ev == nullptr) {  // made on first use: clients given IP addresses never need it
      const int efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      const int why = errno;
      if (efd >= 0) resolve_ev = event_new(base, efd, EV_READ | EV_PERSIST, &Impl::on_resolved_cb, this);
      if (resolve_ev == nullptr || event_add(resolve_ev, nullptr) != 0) {
        if (resolve_ev != nullptr) event_free(resolve_ev);
        resolve_ev = nullptr;
        if (efd >= 0) ::close(efd);
        connection_failed(Status::kConnectFailed,
                          "cannot resolve " + host + ": " + (efd < 0 ? std::strerror(why) : "event_add failed"));
        return;
      }
      resolve_slot = std::make_shared<ResolveSlot>();
      resolve_slot->fd = efd;
    }
    const uint64_t attempt = ++resolve_attempt;
    resolving = true;
    std::shared_ptr<ResolveSlot> slot = resolve_slot;
    try {
      std::thread([slot, host, port, attempt] {
        ResolveResult r;
        r.attempt = attempt;
        if (!resolve(host, port, EVUTIL_AI_ADDRCONFIG, r.addresses, r.error) && r.error.empty()) {
          r.error = "no usable address";
        }
        std::lock_guard<std::mutex> lock(slot->mu);
        if (slot->fd < 0) return;  // the client is gone
        slot->results.push_back(std::move(r));
        const uint64_t one = 1;
        [[maybe_unused]] const ssize_t n = ::write(slot->fd, &one, sizeof one);
      }).detach();
    } catch (const std::system_error& e) {
      resolving = false;
      connection_failed(Status::kConnectFailed, "cannot resolve " + host + ": no thread for the resolver: " + e.what());
    }
  }

  static void on_resolved_cb(evutil_socket_t fd, short, void* arg) {
    Impl* self = static_cast<Impl*>(arg);
    Dispatch d(self);
    uint64_t n = 0;
    [[maybe_unused]] const ssize_t got = ::read(fd, &n, sizeof n);
    std::vector<ResolveResult> results;
    {
      std::lock_guard<std::mutex> lock(self->resolve_slot->mu);
      results.swap(self->resolve_slot->results);
    }
    for (ResolveResult& r : results) {
      // Stale answers (the attempt timed out or the client stopped) are dropped.
      if (self->resolving && r.attempt == self->resolve_attempt) self->resolved(r);
    }
  }

  void resolved(ResolveResult& r) {
    resolving = false;
    if (!r.error.empty()) {
      connection_failed(Status::kConnectFailed, "cannot resolve " + connect_host + ": " + r.error);
      return;
    }
    addresses = std::move(r.addresses);
    next_address = 0;
    connect_next_address();
  }

  // Connects to addresses[next_address]; a failure moves on to the next address, and the
  // last failure ends the attempt.
  void connect_next_address() {
    std::string why;
    while (next_address < addresses.size()) {
      const sockaddr_storage& ss = addresses[next_address++];
      if (start_connect(ss, why)) return;
    }
    connection_failed(Status::kConnectFailed, why);
  }

  bool start_connect(const sockaddr_storage& ss, std::string& why) {
    const socklen_t len = ss.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      why = std::string("socket: ") + std::strerror(errno);
      return false;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!opt.bind_address.empty()) {
      evutil_addrinfo* local = nullptr;
      evutil_addrinfo lh{};
      lh.ai_family = ss.ss_family;
      lh.ai_socktype = SOCK_STREAM;
      lh.ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_PASSIVE;
      if (evutil_getaddrinfo(opt.bind_address.c_str(), "0", &lh, &local) != 0 || local == nullptr ||
          ::bind(fd, local->ai_addr, local->ai_addrlen) != 0) {
        why = "cannot bind to " + opt.bind_address + ": " + std::strerror(errno);
        if (local != nullptr) evutil_freeaddrinfo(local);
        ::close(fd);
        fd = -1;
        return false;
      }
      evutil_freeaddrinfo(local);
    }
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS) {
      why = "connect to " + connect_host + ":" + connect_port + ": " + std::strerror(errno);
      ::close(fd);
      fd = -1;
      return false;
    }
    connecting = event_new(base, fd, EV_WRITE, &Impl::on_connect_cb, this);
    event_add(connecting, nullptr);
    arm_timer();
    return true;
  }

  static void on_connect_cb(evutil_socket_t, short, void* arg) {
    Impl* self = static_cast<Impl*>(arg);
    Dispatch d(self);
    self->tcp_connected();
  }

  void tcp_connected() {
    event_free(connecting);
    connecting = nullptr;
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) {
      if (next_address < addresses.size()) {  // another address of the name may answer
        ::close(fd);
        fd = -1;
        connect_next_address();
        return;
      }
      connection_failed(Status::kConnectFailed,
                        "connect to " + connect_host + ":" + connect_port + ": " + std::strerror(err));
      return;
    }
    if (opt.tls) {
      SSL* ssl = SSL_new(ssl_ctx);
      const std::string& name = opt.server_name.empty() ? connect_host : opt.server_name;
      if (is_ip_literal(name)) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str());
      } else {
        // SNI (SSL_set_tlsext_host_name is a macro with an old-style cast).
        SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, const_cast<char*>(name.c_str()));
        SSL_set1_host(ssl, name.c_str());             // certificate name check
      }
      bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
      if (bev != nullptr) bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
      tls_handshaking = true;
    } else {
      // Plain TCP: the fd stays ours, one persistent read event.
      io = event_new(base, fd, EV_READ | EV_PERSIST, &Impl::on_io_cb, this);
      if (io == nullptr || event_add(io, nullptr) != 0) {
        connection_failed(Status::kConnectFailed, "event_new failed");
        return;
      }
      session_start();
      return;
    }
    if (bev == nullptr) {
      ::close(fd);
      fd = -1;
      connection_failed(Status::kConnectFailed, "bufferevent_openssl_socket_new failed");
      return;
    }
    fd = -1;  // owned by the bufferevent now
    bufferevent_setcb(bev, &Impl::on_read_cb, &Impl::on_write_cb, &Impl::on_event_cb, this);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
  }

  // ---- plain TCP I/O ------------------------------------------------------------------------

  static void on_io_cb(evutil_socket_t, short what, void* arg) {
    Impl* self = static_cast<Impl*>(arg);
    Dispatch d(self);
    self->tcp_io(what);
  }

  void tcp_io(short what) {
    if ((what & EV_WRITE) != 0) {
      if (!flush_output()) return;
      if (closing) {
        if (out.empty()) finish_close();
        return;
      }
    }
    if ((what & EV_READ) == 0 || closing) return;
    uint8_t* buf = thread_read_buffer();
    const uint64_t now = now_ms();
    const int64_t unix_now = unix_ms();
    Status s = Status::kOk;
    // A few reads per wakeup, so one busy connection cannot starve the others on the loop.
    for (int i = 0; i < 4 && codec::ok(s) && !closing; ++i) {
      const ssize_t n = ::recv(fd, buf, kReadBuffer, 0);
      if (n > 0) {
        s = session.on_bytes({buf, static_cast<size_t>(n)}, now, unix_now);
        if (static_cast<size_t>(n) < kReadBuffer) break;
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
      const int err = n < 0 ? errno : 0;
      const Status eof = session.on_eof();
      if (!codec::ok(session.fatal())) {
        finish_close();
      } else if (!codec::ok(eof)) {
        lost(eof, "server closed the connection inside a frame");
      } else if (err != 0) {
        lost(Status::kConnectionLost, std::string("connection error: ") + std::strerror(err));
      } else {
        lost(Status::kConnectionLost, "server closed the connection");
      }
      return;
    }
    after_session_call(s);
  }

  // Writes what the session queued. False if the connection failed (and was torn down).
  bool flush_output() {
    size_t off = 0;
    while (off < out.size()) {
      const ssize_t n = ::send(fd, out.data() + off, out.size() - off, MSG_NOSIGNAL);
      if (n > 0) {
        off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      lost(Status::kConnectionLost, std::string("write failed: ") + std::strerror(errno));
      return false;
    }
    out.erase(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(off));
    if (out.empty() && out.capacity() > 4096) out.shrink_to_fit();  // idle connections stay small
    // Ask for EV_WRITE only while something waits.
    const bool want_write = !out.empty();
    if (want_write != write_armed) {
      event_del(io);
      event_assign(io, base, fd, static_cast<short>(EV_READ | EV_PERSIST | (want_write ? EV_WRITE : 0)), &Impl::on_io_cb,
                   this);
      event_add(io, nullptr);
      write_armed = want_write;
    }
    return true;
  }

  void session_start() {
    connect_deadline = UINT64_MAX;  // the session's handshake timeout takes over
    session.connection_opened(now_ms());
    after_session_call(Status::kOk);
  }

  static void on_read_cb(bufferevent*, void* arg) {
    Impl* self = static_cast<Impl*>(arg);
    Dispatch d(self);
    self->read_input();
  }

  void read_input() {
    evbuffer* in = bufferevent_get_input(bev);
    const uint64_t now = now_ms();
    const int64_t unix_now = unix_ms();
    Status s = Status::kOk;
    // Feed every contiguous chunk as it lies in the buffer: no copy.
    while (evbuffer_get_length(in) > 0 && codec::ok(s) && !closing) {
      evbuffer_iovec vec[8];
      const int n = evbuffer_peek(in, -1, nullptr, vec, 8);
      size_t used = 0;
      for (int i = 0; i < n && i < 8 && codec::ok(s); ++i) {
        s = session.on_bytes({static_cast<const uint8_t*>(vec[i].iov_base), vec[i].iov_len}, now, unix_now);
        used += vec[i].iov_len;
      }
      evbuffer_drain(in, used);
    }
    after_session_call(s);
  }

  static void on_write_cb(bufferevent*, void* arg) {
    Impl* self = static_cast<Impl*>(arg);
    Dispatch d(self);
    // CLOSING: the last frame (our Error) is written; now close.
    if (self->closing && evbuffer_get_length(bufferevent_get_output(self->bev)) == 0) self->finish_close();
  }

  static void on_event_cb(bufferevent*, short what, void* arg) {
    Impl* self = static_cast<Impl*>(arg);
    Dispatch d(self);
    self->transport_event(what);
  }

  void transport_event(short what) {
    if ((what & BEV_EVENT_CONNECTED) != 0) {
      tls_handshaking = false;
      session_start();
      return;
    }
    if (tls_handshaking && (what & BEV_EVENT_ERROR) != 0) {
      SSL* ssl = bufferevent_openssl_get_ssl(bev);
      const long verify = ssl != nullptr ? SSL_get_verify_result(ssl) : X509_V_OK;
      std::string detail;
      while (const unsigned long e = bufferevent_get_openssl_error(bev)) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        if (!detail.empty()) detail += "; ";
        detail += buf;
      }
      if (verify != X509_V_OK) {
        connection_failed(Status::kCertificateVerifyFailed,
                          std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify) +
                              " (server " + connect_host + ")");
      } else {
        connection_failed(Status::kTlsHandshakeFailed,
                          "TLS handshake with " + connect_host + " failed" + (detail.empty() ? "" : ": " + detail));
      }
      return;
    }
    if (tls_handshaking && (what & BEV_EVENT_EOF) != 0) {
      connection_failed(Status::kTlsHandshakeFailed, "server closed the connection during the TLS handshake");
      return;
    }
    if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) != 0) {
      const int err = EVUTIL_SOCKET_ERROR();
      const Status eof = session.on_eof();
      if (!codec::ok(session.fatal())) {
        finish_close();  // the server said why (Error/GoAway) before closing
      } else if (!codec::ok(eof)) {
        lost(eof, "server closed the connection inside a frame");
      } else if ((what & BEV_EVENT_ERROR) != 0 && err != 0) {
        lost(Status::kConnectionLost, std::string("connection error: ") + evutil_socket_error_to_string(err));
      } else {
        lost(Status::kConnectionLost, "server closed the connection");
      }
    }
  }

  // After every call into the session: act on a fatal status, re-arm the timer.
  void after_session_call(Status s) {
    // Cork: everything one callback produced goes out in one write.
    if (io != nullptr && !out.empty() && !flush_output()) return;
    if (!codec::ok(s) || session.state() == client::ClientSession::State::kClosing) {
      begin_close();
      return;
    }
    flush_positions(false);
    arm_timer();
  }

  void begin_close() {
    if (closing || (bev == nullptr && io == nullptr)) {
      if (bev == nullptr && io == nullptr) teardown(session.fatal(), session.fatal_text());
      return;
    }
    closing = true;
    // §9.2: flush our last frame, at most 1 s.
    close_deadline = now_ms() + 1000;
    if (io != nullptr) {
      if (out.empty()) {
        finish_close();
      } else {
        arm_timer();  // the write event finishes the close
      }
      return;
    }
    bufferevent_disable(bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
      finish_close();
    } else {
      arm_timer();
    }
  }

  void finish_close() {
    const Status s = session.fatal();
    teardown(s == Status::kOk ? Status::kConnectionLost : s,
             s == Status::kOk ? std::string("connection closed") : session.fatal_text());
  }

  void lost(Status s, std::string text) { teardown(s, std::move(text)); }

  void connection_failed(Status s, std::string text) { teardown(s, std::move(text)); }

  void close_transport() {
    resolving = false;  // a late answer of the resolver is dropped (resolved_command)
    if (connecting != nullptr) {
      event_free(connecting);
      connecting = nullptr;
    }
    if (io != nullptr) {
      event_free(io);  // safe inside its own callback: libevent no longer touches it after
      io = nullptr;
    }
    out.clear();
    out.shrink_to_fit();
    write_armed = false;
    if (fd >= 0) {
      ::close(fd);
      fd = -1;
    }
    if (bev != nullptr) {
      bufferevent_free(bev);  // safe inside its own callbacks (libevent defers it)
      bev = nullptr;
    }
    closing = false;
    tls_handshaking = false;
    close_deadline = UINT64_MAX;
    connect_deadline = UINT64_MAX;
  }

  void teardown(Status s, std::string text) {
    close_transport();
    session.connection_closed();
    flush_positions(true);
    if (stopping) return;
    last_error_text = std::move(text);
    Error e;
    e.code = static_cast<int>(s);
    e.name = codec::to_string(s);
    e.text = last_error_text;
    e.temporary = codec::is_temporary(s);
    if (client::ClientSession::should_reconnect(s, static_cast<bool>(opt.token_provider))) {
      const uint64_t delay = session.reconnect_delay_ms(opt.reconnect_initial_ms, opt.reconnect_max_ms,
                                                        static_cast<uint32_t>(rng()));
      reconnect_at = now_ms() + delay;
      e.temporary = true;
      set_state(ConnectionState::kReconnecting, &e);
      arm_timer();
    } else {
      reconnect_at = UINT64_MAX;
      set_state(ConnectionState::kFailed, &e);
      started = false;
    }
  }

  void stop_in_loop() {
    stopping = true;
    session.close();
    close_transport();
    session.connection_closed();
    flush_positions(true);
    reconnect_at = UINT64_MAX;
    if (timer != nullptr) event_del(timer);
    armed_at = UINT64_MAX;
    started = false;
    if (state.load() != ConnectionState::kStopped) set_state(ConnectionState::kStopped, nullptr);
    stopping = false;
  }

  // ---- timer ----------------------------------------------------------------------------

  void arm_timer() {
    uint64_t d = std::min({session.next_deadline_ms(), reconnect_at, connect_deadline, close_deadline});
    if (store && store->dirty()) d = std::min(d, store_flush_at);
    if (d == UINT64_MAX) return;
    if (d >= armed_at && armed_at != UINT64_MAX && event_pending(timer, EV_TIMEOUT, nullptr)) return;
    const uint64_t now = now_ms();
    const uint64_t wait = d > now ? d - now : 0;
    timeval tv{static_cast<time_t>(wait / 1000), static_cast<suseconds_t>((wait % 1000) * 1000)};
    event_add(timer, &tv);
    armed_at = d;
  }

  static void on_timer_cb(evutil_socket_t, short, void* arg) {
    Impl* self = static_cast<Impl*>(arg);
    Dispatch d(self);
    self->timer_fired();
  }

  void timer_fired() {
    armed_at = UINT64_MAX;
    const uint64_t now = now_ms();
    if (closing && now >= close_deadline) {
      finish_close();
      return;
    }
    if (resolving && now >= connect_deadline) {
      connection_failed(Status::kConnectFailed, "resolving " + connect_host + " timed out");
      return;
    }
    if (connecting != nullptr && now >= connect_deadline) {
      connection_failed(Status::kConnectFailed, "connect to " + connect_host + " timed out");
      return;
    }
    if (bev != nullptr && tls_handshaking && now >= connect_deadline) {
      connection_failed(Status::kTlsHandshakeFailed, "TLS handshake with " + connect_host + " timed out");
      return;
    }
    if (reconnect_at != UINT64_MAX && now >= reconnect_at) {
      connect_now();
      return;
    }
    if ((bev != nullptr || io != nullptr) && !closing && !tls_handshaking) {
      after_session_call(session.on_timer(now, unix_ms()));
      return;
    }
    flush_positions(false);
    arm_timer();
  }

  void flush_positions(bool force) {
    if (!store || !store->dirty()) return;
    const uint64_t now = now_ms();
    if (!force && now < store_flush_at) return;
    std::string e;
    if (!store->save(&e)) {
      last_error_text = e;
      Error err;
      err.code = static_cast<int>(Status::kInternal);
      err.name = codec::to_string(Status::kInternal);
      err.text = last_error_text;
      err.temporary = true;
      call_on_error(err);
    }
    store_flush_at = now + 200;  // at most five writes a second
  }

  // ---- ClientSessionHost ----------------------------------------------------------------

  void write(std::span<const uint8_t> bytes) noexcept override {
    if (bev != nullptr) {
      bufferevent_write(bev, bytes.data(), bytes.size());
    } else if (io != nullptr) {
      out.insert(out.end(), bytes.begin(), bytes.end());
    }
  }

  std::string token() noexcept override {
    if (!opt.token_provider) return opt.token;
    try {
      return opt.token_provider();
    } catch (...) {
      report_handler_exception("token_provider");
      return {};
    }
  }

  void on_ready(std::string_view, std::string_view) noexcept override { set_state(ConnectionState::kConnected, nullptr); }

  void on_subscribed(const client::SubscribedInfo& info) noexcept override {
    if (!handlers.on_subscribed) return;
    Subscribed s;
    s.channel = info.channel;
    s.epoch = info.epoch;
    s.offset = info.offset;
    s.resumed = info.resumed;
    s.recovered = info.recovered;
    try {
      handlers.on_subscribed(s);
    } catch (...) {
      report_handler_exception("on_subscribed");
    }
  }

  void on_subscribe_failed(std::string_view channel, Status code, std::string_view text) noexcept override {
    if (!codec::is_temporary(code) && store) store->erase(channel);
    Error e;
    e.code = static_cast<int>(code);
    e.name = codec::to_string(code);
    e.text = text;
    e.temporary = codec::is_temporary(code);
    e.channel = channel;
    call_on_error(e);
  }

  void on_publication(const client::PublicationView& p) noexcept override {
    if (!handlers.on_message) return;
    Message m;
    m.channel = p.channel;
    m.epoch = p.epoch;
    m.message_id = p.message_id;
    m.type = p.type;
    m.content_type = p.content_type;
    m.collapse_key = p.collapse_key;
    m.payload = p.payload;
    m.offset = p.offset;
    m.priority = p.priority;
    m.created_at_ms = p.created_at_ms;
    m.ttl_s = p.ttl_s;
    m.dismiss_on_read = p.dismiss_on_read;
    try {
      handlers.on_message(m);
    } catch (...) {
      report_handler_exception("on_message");
    }
  }

  void on_position(std::string_view channel, std::string_view epoch, uint64_t offset) noexcept override {
    {
      std::lock_guard<std::mutex> lock(positions_mu);
      auto it = positions.find(channel);
      if (it == positions.end()) it = positions.emplace(std::string(channel), Position{}).first;
      it->second.epoch.assign(epoch);
      it->second.offset = offset;
    }
    if (opt.store_position) {
      try {
        opt.store_position(channel, epoch, offset);
      } catch (...) {
        report_handler_exception("store_position");
      }
    } else if (store) {
      store->set(channel, epoch, offset);
    }
  }

  void on_dismiss(std::string_view channel, uint64_t offset, std::string_view message_id) noexcept override {
    if (!handlers.on_dismiss) return;
    try {
      handlers.on_dismiss(channel, offset, message_id);
    } catch (...) {
      report_handler_exception("on_dismiss");
    }
  }

  void on_pong(uint64_t nonce) noexcept override {
    if (nonce == 0 || nonce != ping_nonce || !handlers.on_pong) return;
    ping_nonce = 0;
    const auto rtt = std::chrono::steady_clock::now() - ping_sent;
    try {
      handlers.on_pong(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(rtt).count()));
    } catch (...) {
      report_handler_exception("on_pong");
    }
  }

  void call_on_error(const Error& e) noexcept {
    if (!handlers.on_error) return;
    try {
      handlers.on_error(e);
    } catch (...) {
      // A throwing error handler has nowhere left to report to.
    }
  }

  void report_handler_exception(const char* which) noexcept {
    Error e;
    e.code = static_cast<int>(Status::kInternal);
    e.name = codec::to_string(Status::kInternal);
    e.text = which;  // static string
    call_on_error(e);
  }

  struct Position {
    std::string epoch;
    uint64_t offset = 0;
  };

  Options opt;
  Handlers handlers;
  event_base* base;
  bool own_base;
  std::unique_ptr<codec::CodecContext> own_ctx;  // own-thread mode only
  client::ClientSession session;
  std::unique_ptr<client::PositionFileStore> store;
  SSL_CTX* ssl_ctx = nullptr;
  event* timer = nullptr;
  event* wake = nullptr;
  event* connecting = nullptr;
  bufferevent* bev = nullptr;           // TLS
  event* io = nullptr;                  // plain TCP: read (and, while output waits, write)
  std::vector<uint8_t> out;             // plain TCP: bytes the socket did not take yet
  int fd = -1;
  std::string connect_host;
  std::string connect_port;
  std::vector<sockaddr_storage> addresses;  // of connect_host, tried in order
  size_t next_address = 0;
  std::shared_ptr<ResolveSlot> resolve_slot;  // made with resolve_ev
  event* resolve_ev = nullptr;
  uint64_t resolve_attempt = 0;
  bool resolving = false;
  std::string last_error_text;
  std::thread thread;
  std::mutex mu;
  std::vector<Command> commands;
  mutable std::mutex positions_mu;
  std::map<std::string, Position, std::less<>> positions;
  std::atomic<ConnectionState> state{ConnectionState::kStopped};
  std::minstd_rand rng{std::random_device{}()};
  std::chrono::steady_clock::time_point ping_sent;
  uint64_t ping_nonce = 0;
  uint64_t reconnect_at = UINT64_MAX;
  uint64_t connect_deadline = UINT64_MAX;
  uint64_t close_deadline = UINT64_MAX;
  uint64_t armed_at = UINT64_MAX;
  uint64_t store_flush_at = 0;
  bool started = false;
  bool closing = false;
  bool stopping = false;
  bool tls_handshaking = false;
  bool write_armed = false;
  int dispatching = 0;  // depth of this client's callbacks on the stack (loop thread)
};

// ---- Client ------------------------------------------------------------------------------

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<Client> Client::create(Options options, Handlers handlers, std::string* error) {
  enable_libevent_threads();  // before the base exists: app threads post commands to it
  event_base* base = event_base_new();
  if (base == nullptr) {
    if (error != nullptr) *error = "event_base_new failed";
    return nullptr;
  }
  auto impl = std::make_unique<Impl>(base, true, std::move(options), std::move(handlers));
  if (!impl->init(error)) return nullptr;
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

std::unique_ptr<Client> Client::attach(event_base* base, Options options, Handlers handlers, std::string* error) {
  if (base == nullptr) {
    if (error != nullptr) *error = "event_base is null";
    return nullptr;
  }
  auto impl = std::make_unique<Impl>(base, false, std::move(options), std::move(handlers));
  if (!impl->init(error)) return nullptr;
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

Client::~Client() {
  if (impl_) stop();
}

int Client::start() {
  Impl& i = *impl_;
  if (i.own_base && !i.thread.joinable()) {
    i.thread = std::thread([&i] { event_base_loop(i.base, EVLOOP_NO_EXIT_ON_EMPTY); });
  }
  i.post({Impl::Command::Kind::kStart, {}, {}, 0});
  return 0;
}

int Client::stop() {
  Impl& i = *impl_;
  if (i.own_base) {
    if (!i.thread.joinable()) return 0;
    if (std::this_thread::get_id() == i.thread.get_id()) return static_cast<int>(Status::kInvalidField);
    i.post({Impl::Command::Kind::kStop, {}, {}, 0});
    i.thread.join();
    // Commands posted after the stop are dropped with the queue.
    std::lock_guard<std::mutex> lock(i.mu);
    i.commands.clear();
    return 0;
  }
  // Attach mode runs on the loop thread. From inside one of this client's callbacks the
  // transport is in use: refuse rather than free it under the caller.
  if (i.dispatching > 0) return static_cast<int>(Status::kInvalidField);
  i.run_commands();  // apply what was queued, then stop now
  i.stop_in_loop();
  return 0;
}

int Client::subscribe(std::string_view channel) {
  // Validated here so the caller gets kBadChannel at once.
  if (!client::ClientSession::valid_channel_name(channel)) return static_cast<int>(Status::kBadChannel);
  impl_->post({Impl::Command::Kind::kSubscribe, std::string(channel), {}, 0});
  return 0;
}

int Client::unsubscribe(std::string_view channel) {
  impl_->post({Impl::Command::Kind::kUnsubscribe, std::string(channel), {}, 0});
  return 0;
}

int Client::ack(std::string_view channel, std::string_view epoch, uint64_t offset) {
  impl_->post({Impl::Command::Kind::kAck, std::string(channel), std::string(epoch), offset});
  return 0;
}

int Client::ping() {
  if (state() != ConnectionState::kConnected) return static_cast<int>(Status::kConnectionLost);
  impl_->post({Impl::Command::Kind::kPing, {}, {}, 0});
  return 0;
}

ConnectionState Client::state() const noexcept { return impl_->state.load(std::memory_order_acquire); }

bool Client::position(std::string_view channel, std::string& epoch, uint64_t& offset) const {
  std::lock_guard<std::mutex> lock(impl_->positions_mu);
  const auto it = impl_->positions.find(channel);
  if (it == impl_->positions.end()) return false;
  epoch = it->second.epoch;
  offset = it->second.offset;
  return true;
}

}  // namespace herald
