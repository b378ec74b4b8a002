// Server wiring: context, loops, listeners, API, signals, graceful shutdown.
#include "server/server.h"

#include <arpa/inet.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <fstream>

#include "codec/frame_encoder.h"
#include "codec/message.h"
#include "server/allocator.h"
#include "server/connection.h"
#include "server/tls.h"
#include "server/ws_handshake.h"

namespace herald::server {
namespace {

constexpr uint32_t kSweepMs = 1000;
// How often the live histories' memory is checked against limits.history_memory_bytes.
constexpr uint32_t kHistoryCheckMs = 100;
constexpr uint32_t kStopCheckMs = 20;

std::string address_of(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (sa->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, buf, sizeof buf);
  } else if (sa->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, buf, sizeof buf);
  }
  return buf;
}

std::string bound_address(evutil_socket_t fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "";
  const auto* sa = reinterpret_cast<const sockaddr*>(&ss);
  const uint16_t port = ntohs(sa->sa_family == AF_INET ? reinterpret_cast<const sockaddr_in*>(sa)->sin_port
                                                       : reinterpret_cast<const sockaddr_in6*>(sa)->sin6_port);
  const std::string host = address_of(sa);
  return sa->sa_family == AF_INET6 ? "[" + host + "]:" + std::to_string(port) : host + ":" + std::to_string(port);
}

bool resolve(const std::string& host, uint16_t port, sockaddr_storage& ss, socklen_t& len) {
  std::memset(&ss, 0, sizeof ss);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    len = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    len = sizeof(sockaddr_in6);
    return true;
  }
  if (host == "localhost") return resolve("127.0.0.1", port, ss, len);
  return false;
}

// Refuses a connection over a limit with an Error frame (header version 1,
// sequence 0: the client has not said Hello yet), best effort, then closes.
void refuse(evutil_socket_t fd, codec::Status code, const std::string& text) {
  v1::Error e;
  e.set_code(static_cast<uint32_t>(code));
  e.set_text(text);
  e.set_temporary(codec::is_temporary(code));
  std::vector<uint8_t> body;
  codec::EncodedMessage m;
  codec::EncodeOptions o;
  o.checksum = false;
  if (codec::ok(codec::serialize_message(e, 4096, body)) &&
      codec::ok(codec::encode_message(codec::FrameType::kError, body, o, nullptr, m))) {
    std::vector<uint8_t> wire;
    uint32_t seq = 0;
    codec::append_frames(m, seq, wire);
    [[maybe_unused]] ssize_t n = ::send(fd, wire.data(), wire.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  evutil_closesocket(fd);
}

}  // namespace

Server::Server(Config config) : config_(std::move(config)) {
  accept_rate_ = std::make_unique<TokenBucket>(config_.accept_rate, config_.accept_burst, monotonic_us());
  history_ = std::make_unique<MemoryHistory>();
  const Config* cfg = &config_;
  HubLimits hub_limits;
  hub_limits.max_message_size = config_.max_message_size;
  hub_ = std::make_unique<ChannelHub>(
      config_.loop_count(), *history_, *this,
      [cfg](std::string_view channel) {
        const NamespacePolicy& p = cfg->policy_for(channel);
        ChannelOptions o;
        o.history_size = p.history_size;
        o.history_ttl_s = p.history_ttl_s;
        o.durable = p.durable;
        o.latest_value = p.latest_value;
        return o;
      },
      uint64_t{config_.dedup_window_s} * 1000, hub_limits);
  limiter_ = std::make_unique<ConnectionLimiter>(config_.max_connections, config_.max_connections_per_ip,
                                                 config_.max_connections_per_user, hub_.get());

  context_.config = &config_;
  context_.hub = hub_.get();
  context_.metrics = &metrics_;
  context_.limiter = limiter_.get();
  context_.loops = &loops_;
  JwtSettings js;
  js.secret = config_.jwt_secret;
  js.algorithm = config_.jwt_algorithm;
  js.issuer = config_.jwt_issuer;
  js.audience = config_.jwt_audience;
  js.leeway_s = config_.jwt_leeway_s;
  context_.verifier = std::make_unique<JwtVerifier>(js);
  SessionConfig& sc = context_.session_config;
  sc.negotiation.zstd = config_.compression;
  sc.negotiation.max_frame_size = config_.max_frame_size;
  sc.negotiation.max_message_size = config_.max_message_size;
  sc.negotiation.heartbeat_ms = config_.heartbeat_ms;
  sc.negotiation.pong_timeout_ms = config_.pong_timeout_ms;
  sc.negotiation.checksum = config_.checksum;
  sc.handshake_timeout_ms = config_.handshake_timeout_ms;
  sc.refresh_grace_ms = config_.refresh_grace_s * 1000;
  sc.max_subscriptions = config_.max_subscriptions;
  sc.policy = [cfg](std::string_view channel) -> const NamespacePolicy& { return cfg->policy_for(channel); };
  context_.ws_settings.handshake_timeout_ms = config_.ws_handshake_timeout_ms;
  context_.ws_settings.max_header_bytes = config_.ws_max_header_bytes;
  context_.ws_settings.max_message_bytes = config_.ws_max_message_bytes;
  context_.ws_settings.origins = config_.ws_origins;
  context_.output_limits.soft_bytes = config_.soft_limit_bytes;
  context_.output_limits.soft_ms = config_.soft_limit_ms;
  context_.output_limits.hard_bytes = config_.hard_limit_bytes;
  context_.output_limits.batch_bytes = config_.batch_bytes;
  context_.publish_backlog = config_.publish_backlog;
}

Server::~Server() {
  for (auto& loop : loops_) loop->join();
  if (durable_) durable_->stop();  // commits what is queued; its hooks use the hub and loops
  for (auto& t : workers_) t.join();
  loops_.clear();
  api_.reset();
  if (tcp_listener_ != nullptr) evconnlistener_free(tcp_listener_);
  if (tls_listener_ != nullptr) evconnlistener_free(tls_listener_);
  if (ws_listener_ != nullptr) evconnlistener_free(ws_listener_);
  for (event* e : events_) event_free(e);
  if (base_ != nullptr) event_base_free(base_);
  if (context_.ssl_ctx != nullptr) SSL_CTX_free(context_.ssl_ctx);
}

bool Server::load_dictionary(std::string& error) {
  if (config_.dictionary_file.empty()) return true;
  std::ifstream in(config_.dictionary_file, std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto set = std::make_shared<codec::DictionarySet>();
  uint32_t id = 0;
  if (bytes.empty() || !codec::ok(set->add(bytes, 3, &id))) {
    error = "protocol.dictionary_file: " + config_.dictionary_file + " is not a zstd dictionary with an id";
    return false;
  }
  context_.session_config.dictionaries = set;
  context_.session_config.negotiation.dictionary_ids = {id};
  context_.session_config.publication_dictionary_id = id;
  context_.shared_encoding.dictionary_id = id;
  // With a dictionary, small notifications are worth compressing (docs/benchmarks.md).
  context_.shared_encoding.compress_threshold = 64;
  return true;
}

bool Server::listen(const std::string& setting, const std::string& address, evconnlistener*& out,
                    std::string& bound, std::string& error) {
  std::string host;
  uint16_t port = 0;
  sockaddr_storage ss;
  socklen_t len = 0;
  if (!split_host_port(address, host, port) || !resolve(host, port, ss, len)) {
    error = setting + ": cannot use \"" + address + "\" as an address";
    return false;
  }
  evconnlistener* l = evconnlistener_new_bind(base_, on_accept, this,
                                              LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                              1024, reinterpret_cast<sockaddr*>(&ss), static_cast<int>(len));
  if (l == nullptr) {
    error = setting + ": cannot listen on " + address + ": " + std::strerror(errno);
    return false;
  }
  evconnlistener_set_error_cb(l, on_accept_error);
  bound = bound_address(evconnlistener_get_fd(l));
  out = l;
  return true;
}

bool Server::start(std::string& error) {
  std::signal(SIGPIPE, SIG_IGN);
  evthread_use_pthreads();
  base_ = event_base_new();
  if (base_ == nullptr) {
    error = "event_base_new failed";
    return false;
  }
  started_ms_ = monotonic_ms();
  if (!load_dictionary(error)) return false;
  if (!open_store(error)) return false;
  if (!config_.tls.empty() || (config_.ws_tls && !config_.ws.empty())) {
    std::string tls_error;
    context_.ssl_ctx = make_tls_context(config_.tls_cert_file, config_.tls_key_file, tls_error);
    if (context_.ssl_ctx == nullptr) {
      error = "tls: " + tls_error;
      return false;
    }
  }
  // WebSocket sessions offer no compression: browsers cannot decode zstd.
  context_.ws_session_config = context_.session_config;
  context_.ws_session_config.negotiation.zstd = false;
  context_.ws_session_config.negotiation.dictionary_ids.clear();
  context_.ws_session_config.publication_dictionary_id = 0;
  for (size_t i = 0; i < config_.loop_count(); ++i) loops_.push_back(std::make_unique<Loop>(i, &context_));
  if (!config_.tcp.empty() && !listen("listen.tcp", config_.tcp, tcp_listener_, bound_tcp_, error)) return false;
  if (!config_.tls.empty() && !listen("listen.tls", config_.tls, tls_listener_, bound_tls_, error)) return false;
  if (!config_.ws.empty() && !listen("listen.ws", config_.ws, ws_listener_, bound_ws_, error)) return false;
  if (!config_.api.empty()) {
    ApiConfig ac;
    ac.api_keys = config_.api_keys;
    ac.max_body_bytes = config_.api_max_body_bytes;
    ac.threads = config_.api_threads;
    api_ = std::make_unique<HttpApi>(base_, ac, this, &metrics_);
    std::string host;
    uint16_t port = 0;
    std::string api_error;
    if (!split_host_port(config_.api, host, port) || !api_->bind(host, port, bound_api_, api_error)) {
      error = "listen.api: cannot listen on " + config_.api + (api_error.empty() ? "" : ": " + api_error);
      return false;
    }
    api_->start();
  }
  for (int sig : {SIGTERM, SIGINT}) {
    event* e = evsignal_new(base_, sig, on_signal, this);
    event_add(e, nullptr);
    events_.push_back(e);
  }
  wakeup_ev_ = event_new(base_, -1, EV_PERSIST | EV_READ, on_main_wakeup, this);
  event_add(wakeup_ev_, nullptr);
  events_.push_back(wakeup_ev_);
  event* sweep = event_new(base_, -1, EV_PERSIST, on_sweep, this);
  timeval tv{kSweepMs / 1000, 0};
  event_add(sweep, &tv);
  events_.push_back(sweep);
  event* history_check = event_new(base_, -1, EV_PERSIST, on_history_check, this);
  timeval htv{0, kHistoryCheckMs * 1000};
  event_add(history_check, &htv);
  events_.push_back(history_check);
  for (auto& loop : loops_) loop->start();

  spdlog::get("server")->info("heraldd listening: tcp={} tls={} ws={}{} api={} loops={} allocator={}",
                              bound_tcp_.empty() ? "off" : bound_tcp_, bound_tls_.empty() ? "off" : bound_tls_,
                              bound_ws_.empty() ? "off" : bound_ws_, config_.ws_tls ? " (wss)" : "",
                              bound_api_.empty() ? "off" : bound_api_, loops_.size(), allocator_name());
  if (config_.default_secret()) {
    spdlog::get("server")->warn("auth.jwt_secret is the built-in development secret: set your own before production");
  }
  if (config_.default_api_key()) {
    spdlog::get("server")->warn("auth.api_keys holds the built-in development key: set your own before production");
  }
  return write_ready_file(error);
}

bool Server::write_ready_file(std::string& error) {
  if (config_.ready_file.empty()) return true;
  nlohmann::json j = nlohmann::json::object();
  if (!bound_tcp_.empty()) j["tcp"] = bound_tcp_;
  if (!bound_tls_.empty()) j["tls"] = bound_tls_;
  if (!bound_api_.empty()) j["api"] = bound_api_;
  if (!bound_ws_.empty()) j["ws"] = bound_ws_;
  j["pid"] = ::getpid();
  const std::string tmp = config_.ready_file + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump() << "\n";
    if (!out) {
      error = "server.ready_file: cannot write " + tmp;
      return false;
    }
  }
  // Readers see the whole file or none: rename is atomic.
  if (std::rename(tmp.c_str(), config_.ready_file.c_str()) != 0) {
    error = "server.ready_file: cannot rename to " + config_.ready_file + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

bool Server::open_store(std::string& error) {
  SqliteSettings ss;
  ss.dir = config_.store_dir;
  ss.synchronous_full = config_.store_synchronous == "FULL";
  store_ = std::make_unique<SqliteStore>(ss);
  const uint64_t t0 = monotonic_ms();
  if (!store_->open(error)) return false;
  DurableSettings ds;
  ds.commit_window_us = config_.store_commit_window_us;
  ds.commit_batch = config_.store_commit_batch;
  ds.commit_max_bytes = config_.store_commit_max_bytes;
  ds.retention_interval_ms = config_.store_retention_interval_ms;
  ds.retention_batch = config_.store_retention_batch;
  ds.dedup_lookback_until_ms = unix_ms() + int64_t{config_.dedup_window_s} * 1000;
  durable_ = std::make_unique<DurableHistory>(*store_, ds);
  if (!durable_->load(error)) return false;
  hub_->set_durable(durable_.get());
  context_.durable = durable_.get();
  durable_->start([this](const PublicationPtr& record, bool committed) { hub_->on_committed(record, committed); },
                  [this](std::vector<DismissNotice>&& notices) { on_dismiss(std::move(notices)); });
  spdlog::get("server")->info("store: {} (synchronous={}) opened in {} ms", store_->path(), config_.store_synchronous,
                              monotonic_ms() - t0);
  return true;
}

void Server::on_dismiss(std::vector<DismissNotice>&& notices) {
  // Store thread: hand each notice to every loop; each finds the user's other devices there.
  auto shared = std::make_shared<const std::vector<DismissNotice>>(std::move(notices));
  for (auto& loop : loops_) {
    loop->post([shared](Loop& l) {
      for (const DismissNotice& n : *shared) {
        for (Connection* c : l.connections_of(n.user)) {
          const std::string& dev = c->session().device_id().empty() ? std::string("default") : c->session().device_id();
          if (dev != n.device) c->send_dismiss(n.channel, n.offset, n.message_id);
        }
      }
    });
  }
}

int Server::run() {
  event_base_dispatch(base_);
  for (auto& loop : loops_) loop->join();
  if (durable_) durable_->stop();
  spdlog::get("server")->info("heraldd stopped");
  return 0;
}

// ---------------------------------------------------------------- accept

void Server::on_accept(evconnlistener* listener, evutil_socket_t fd, sockaddr* addr, int, void* arg) {
  auto* s = static_cast<Server*>(arg);
  const bool ws = listener == s->ws_listener_;
  s->accept(fd, addr, listener == s->tls_listener_ || (ws && s->config_.ws_tls), ws);
}

void Server::on_accept_error(evconnlistener*, void*) {
  // EMFILE and friends: keep serving existing connections; libevent retries.
  spdlog::get("server")->warn("accept failed: {}", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

void Server::accept(evutil_socket_t fd, sockaddr* addr, bool tls, bool ws) {
  if (shutting_down_) {
    evutil_closesocket(fd);
    return;
  }
  if (!accept_rate_->take(monotonic_us())) {
    // Checked first and costs nothing per client: a connect storm is refused cheaply.
    metrics_.connection_rejected(RejectReason::kAcceptRate);
    if (!tls) refuse(fd, codec::Status::kRateLimited, "accept rate limit reached, retry later");
    else evutil_closesocket(fd);
    return;
  }
  const std::string ip = address_of(addr);
  const char* which = "";
  const std::string* ip_key = nullptr;
  codec::Status s = limiter_->add_connection(ip, &which, &ip_key);
  if (!codec::ok(s)) {
    metrics_.connection_rejected(std::string_view(which) == "ip" ? RejectReason::kLimitIp : RejectReason::kLimitTotal);
    if (ws && !tls) {
      // An HTTP client cannot read an Error frame: answer 503 (best effort).
      const std::string r = http_response(503, "text/plain; charset=utf-8",
                                          std::string("connection limit reached (") + which + ")\n");
      [[maybe_unused]] ssize_t n = ::send(fd, r.data(), r.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      evutil_closesocket(fd);
    } else if (!tls) {
      refuse(fd, s, std::string("connection limit reached (") + which + ")");
    } else {
      evutil_closesocket(fd);
    }
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (config_.send_buffer_bytes > 0) {
    // A small kernel buffer keeps the backlog in the lanes, where priorities, shedding
    // and the slow-consumer limits apply, instead of in the socket.
    const int size = static_cast<int>(std::min<uint32_t>(config_.send_buffer_bytes, INT32_MAX));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  }
  if (config_.unsent_limit_bytes > 0) {
    // Bytes TCP has not sent yet can be overtaken only while they are still in the lanes:
    // the socket takes (and reports writable) only while less than this is unsent, however
    // large its buffer grows for what is in flight.
    const int lowat = static_cast<int>(std::min<uint32_t>(config_.unsent_limit_bytes, INT32_MAX));
    setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof lowat);
  }
  Loop& loop = *loops_[next_loop_++ % loops_.size()];
  loop.post_connection(fd, tls, ip_key, ws);
}

// ---------------------------------------------------------------- posting to the main loop

void Server::post_main(std::function<void()> fn) {
  {
    std::lock_guard lock(post_mu_);
    posted_.push_back(std::move(fn));
  }
  event_active(wakeup_ev_, EV_READ, 0);
}

void Server::on_main_wakeup(evutil_socket_t, short, void* arg) {
  auto* s = static_cast<Server*>(arg);
  std::vector<std::function<void()>> fns;
  {
    std::lock_guard lock(s->post_mu_);
    fns.swap(s->posted_);
  }
  for (auto& fn : fns) fn();
}

void Server::on_sweep(evutil_socket_t, short, void* arg) {
  auto* s = static_cast<Server*>(arg);
  s->hub_->sweep(unix_ms(), monotonic_ms());
}

void Server::on_history_check(evutil_socket_t, short, void* arg) {
  auto* s = static_cast<Server*>(arg);
  const size_t trimmed = s->hub_->trim_history(s->config_.history_memory_bytes);
  if (trimmed > 0) {
    s->metrics_.history_trimmed(trimmed);
    if (!s->history_trim_logged_) {
      s->history_trim_logged_ = true;
      spdlog::get("hub")->info(
          "live channel histories reached limits.history_memory_bytes ({} bytes): the oldest kept publications "
          "are dropped from now on (herald_history_trimmed_total counts them)",
          s->config_.history_memory_bytes);
    }
    spdlog::get("hub")->debug("history above {} bytes: dropped the {} oldest kept publications",
                              s->config_.history_memory_bytes, trimmed);
  }
  s->metrics_.set_history(s->history_->memory_bytes(), s->history_->publications());
}

// ---------------------------------------------------------------- shutdown

void Server::request_shutdown() {
  if (shutdown_requested_.exchange(true)) return;
  post_main([this] { begin_shutdown(); });
}

void Server::on_signal(evutil_socket_t sig, short, void* arg) {
  auto* s = static_cast<Server*>(arg);
  spdlog::get("server")->info("signal {}: shutting down", static_cast<int>(sig));
  s->shutdown_requested_ = true;
  s->begin_shutdown();
}

void Server::begin_shutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  // Stop accepting; every loop flushes what it holds, says GoAway, closes.
  if (tcp_listener_ != nullptr) evconnlistener_disable(tcp_listener_);
  if (tls_listener_ != nullptr) evconnlistener_disable(tls_listener_);
  if (ws_listener_ != nullptr) evconnlistener_disable(ws_listener_);
  shutdown_deadline_ms_ = monotonic_ms() + config_.shutdown_timeout_ms;
  for (auto& loop : loops_) loop->post_shutdown(config_.shutdown_timeout_ms);
  stop_check_ev_ = event_new(base_, -1, EV_PERSIST, on_stop_check, this);
  timeval tv{0, kStopCheckMs * 1000};
  event_add(stop_check_ev_, &tv);
  events_.push_back(stop_check_ev_);
}

void Server::on_stop_check(evutil_socket_t, short, void* arg) {
  auto* s = static_cast<Server*>(arg);
  size_t open = 0;
  for (auto& loop : s->loops_) open += loop->connection_count();
  if (open == 0 || monotonic_ms() >= s->shutdown_deadline_ms_ + 500) {
    for (auto& loop : s->loops_) loop->post([](Loop& l) { event_base_loopbreak(l.base()); });
    event_base_loopexit(s->base_, nullptr);
  }
}

// ---------------------------------------------------------------- DeliverySink

void Server::deliver(size_t loop, const PublicationPtr& publication, uint32_t subscribers) noexcept {
  loops_[loop]->post_publication(publication, subscribers);
}

// ---------------------------------------------------------------- ApiBackend

namespace {

// What the hub gets for one target channel of an API publish request.
PublishDraft draft_of(const std::string& channel, const ApiPublishRequest& r) {
  PublishDraft d;
  d.channel = channel;
  d.message_id = r.message_id;
  d.type = r.type;
  d.content_type = r.content_type;
  d.collapse_key = r.collapse_key;
  d.priority = r.priority;
  d.ttl_s = r.ttl_s;
  d.dismiss_on_read = r.dismiss_on_read;
  d.payload = r.payload;
  return d;
}

ApiPublishResult result_of(const std::string& channel, const PublishOutcome& o) {
  ApiPublishResult out;
  out.channel = channel;
  out.status = o.status;
  out.offset = o.offset;
  out.epoch = o.epoch;
  out.duplicate = o.duplicate;
  return out;
}

}  // namespace

ApiPublishResult Server::publish_one(const std::string& channel, const ApiPublishRequest& r) {
  ApiPublishResult out;
  out.channel = channel;
  if (shutting_down_) {
    out.status = codec::Status::kGoingAway;
    return out;
  }
  if (Loop::admission_closed(loops_, context_.publish_backlog, r.priority <= 1)) {
    out.status = codec::Status::kRateLimited;  // publish admission: the loops are behind
    metrics_.publish_paused();
    return out;
  }
  PublishDraft d = draft_of(channel, r);
  return result_of(channel, hub_->publish(std::move(d), unix_ms(), monotonic_ms()));
}

void Server::publish_async(const std::string& channel, const ApiPublishRequest& r,
                           std::function<void(ApiPublishResult)> done) {
  auto result = [channel](const PublishOutcome& o) { return result_of(channel, o); };
  if (shutting_down_) {
    ApiPublishResult out;
    out.channel = channel;
    out.status = codec::Status::kGoingAway;
    done(out);
    return;
  }
  if (Loop::admission_closed(loops_, context_.publish_backlog, r.priority <= 1)) {
    // Publish admission: the event loops are too far behind; nothing was published.
    ApiPublishResult out;
    out.channel = channel;
    out.status = codec::Status::kRateLimited;
    metrics_.publish_paused();
    done(out);
    return;
  }
  PublishDraft d = draft_of(channel, r);
  PublishOutcome o;
  auto shared_done = std::make_shared<std::function<void(ApiPublishResult)>>(std::move(done));
  // Durable: the answer comes from the store thread after the commit; the HttpApi
  // hands it to the API thread of the request.
  const bool now = hub_->publish(
      std::move(d), unix_ms(), monotonic_ms(),
      [shared_done, result](const PublishOutcome& out) { (*shared_done)(result(out)); }, o);
  if (now) (*shared_done)(result(o));
}

void Server::message_receipts(const std::string& message_id, std::function<void(int, nlohmann::json)> done) {
  // A few indexed reads on a reader connection: quick enough for the API loop.
  std::vector<MessageReceipt> rs;
  if (!store_ || !store_->receipts(message_id, unix_ms(), rs)) {
    done(503, nlohmann::json{{"error",
                              {{"code", static_cast<int>(codec::Status::kStorageUnavailable)},
                               {"name", "kStorageUnavailable"},
                               {"message", "the store could not be read"},
                               {"temporary", true}}}});
    return;
  }
  if (rs.empty()) {
    done(404, nlohmann::json{{"error",
                              {{"code", 0},
                               {"name", "not_found"},
                               {"message", "no stored message has this id (never published to a durable channel, "
                                           "replaced by its collapse key, or deleted by retention)"},
                               {"temporary", false}}}});
    return;
  }
  nlohmann::json list = nlohmann::json::array();
  for (const MessageReceipt& m : rs) {
    nlohmann::json devices = nlohmann::json::array();
    for (const DeviceReceipt& d : m.devices) {
      nlohmann::json j = {{"device", d.device}, {"state", d.state}};
      if (d.sent_ms > 0) j["sent_at_ms"] = d.sent_ms;
      if (d.acked_ms > 0) j["acked_at_ms"] = d.acked_ms;
      if (d.dismissed_ms > 0) j["dismissed_at_ms"] = d.dismissed_ms;
      devices.push_back(std::move(j));
    }
    nlohmann::json j = {{"channel", m.channel},     {"offset", m.offset},   {"epoch", m.epoch},
                        {"created_at_ms", m.created_ms}, {"dismiss_on_read", m.dismiss_on_read},
                        {"devices", std::move(devices)}};
    if (m.expires_ms > 0) j["expires_at_ms"] = m.expires_ms;
    list.push_back(std::move(j));
  }
  done(200, nlohmann::json{{"message_id", message_id}, {"messages", std::move(list)}});
}

void Server::integrity_check(std::function<void(int, nlohmann::json)> done) {
  if (!store_) {
    done(503, nlohmann::json{{"error", {{"code", 605}, {"name", "kStorageUnavailable"}, {"message", "no store"},
                                        {"temporary", true}}}});
    return;
  }
  // PRAGMA integrity_check reads the whole database: run it off the API loop.
  std::lock_guard lock(workers_mu_);  // API threads may ask at once
  workers_.emplace_back([this, done = std::move(done)]() mutable {
    const uint64_t t0 = monotonic_ms();
    const std::string result = store_->integrity_check();
    const uint64_t took = monotonic_ms() - t0;
    post_main([done = std::move(done), result, took] {
      done(200, nlohmann::json{{"ok", result == "ok"}, {"result", result}, {"took_ms", took}});
    });
  });
}

namespace {

// Collects one answer per loop, then calls `done` on the main loop.
template <class T>
struct Gather {
  std::mutex mu;
  size_t remaining;
  T value;
  std::function<void(T)> done;
};

}  // namespace

void Server::user_info(const std::string& user, std::function<void(nlohmann::json)> done) {
  auto g = std::make_shared<Gather<nlohmann::json>>();
  g->remaining = loops_.size();
  g->value = nlohmann::json{{"user", user}, {"connections", nlohmann::json::array()}};
  g->done = std::move(done);
  for (auto& loop : loops_) {
    loop->post([this, g, user](Loop& l) {
      nlohmann::json conns = nlohmann::json::array();
      for (Connection* c : l.connections_of(user)) {
        conns.push_back({{"session_id", c->session_id()},
                         {"device_id", c->session().device_id()},
                         {"peer_ip", c->peer_ip()},
                         {"loop", l.index()},
                         {"subscriptions", c->session().subscriptions()}});
      }
      std::lock_guard lock(g->mu);
      for (auto& c : conns) g->value["connections"].push_back(std::move(c));
      if (--g->remaining == 0) post_main([g] { g->done(std::move(g->value)); });
    });
  }
}

void Server::disconnect_user(const std::string& user, codec::Status code, const std::string& reason,
                             std::function<void(size_t)> done) {
  auto g = std::make_shared<Gather<size_t>>();
  g->remaining = loops_.size();
  g->value = 0;
  g->done = std::move(done);
  for (auto& loop : loops_) {
    loop->post([this, g, user, code, reason](Loop& l) {
      size_t n = 0;
      for (Connection* c : l.connections_of(user)) {
        c->disconnect(code, reason);
        ++n;
      }
      std::lock_guard lock(g->mu);
      g->value += n;
      if (--g->remaining == 0) post_main([g] { g->done(g->value); });
    });
  }
}

nlohmann::json Server::server_stats() {
  const ChannelHub::Stats hs = hub_->stats();
  nlohmann::json loops = nlohmann::json::array();
  for (auto& loop : loops_) loops.push_back({{"index", loop->index()}, {"connections", loop->connection_count()}});
  nlohmann::json store = nullptr;
  if (durable_) {
    const DurableStats ds = durable_->stats();
    store = {{"commits", ds.commits},           {"commit_failures", ds.commit_failures},
             {"writes", ds.writes},             {"queue", ds.queue},
             {"last_commit_us", ds.last_commit_us}, {"max_batch", ds.max_batch},
             {"retention_deleted", ds.retention_deleted}};
  }
  const MemoryHistory::Stats mh = history_->stats();
  return {{"uptime_s", (monotonic_ms() - started_ms_) / 1000},
          {"allocator", allocator_name()},
          {"store", store},
          {"connections_open", limiter_->total()},
          {"loops", loops},
          {"hub",
           {{"channels", hs.channels},
            {"dedup_entries", hs.dedup_entries},
            {"publishes", hs.publishes},
            {"dedup_hits", hs.dedup_hits},
            {"dedup_evictions", hs.dedup_evictions}}},
          {"history",
           {{"channels", mh.channels},
            {"publications", mh.publications},
            {"bytes", mh.bytes},
            {"limit_bytes", config_.history_memory_bytes}}}};
}

// ---------------------------------------------------------------- ConnectionLimiter

codec::Status ConnectionLimiter::add_connection(const std::string& ip, const char** which, const std::string** key) {
  std::lock_guard lock(mu_);
  if (total_ >= max_total_) {
    *which = "total";
    return codec::Status::kTooManyConnections;
  }
  auto it = per_ip_.try_emplace(ip, 0).first;
  uint32_t& n = it->second;
  if (n >= max_per_ip_) {
    if (n == 0) per_ip_.erase(it);
    *which = "ip";
    return codec::Status::kTooManyConnections;
  }
  ++n;
  *key = &it->first;  // map nodes do not move; this one stays while its count is above 0
  ++total_;
  return codec::Status::kOk;
}

void ConnectionLimiter::remove_connection(const std::string& ip) {
  std::lock_guard lock(mu_);
  auto it = per_ip_.find(ip);
  if (it != per_ip_.end() && --it->second == 0) per_ip_.erase(it);
  if (total_ > 0) --total_;
}

codec::Status ConnectionLimiter::add_user(const std::string& user) {
  return hub_->add_user_connection(user, max_per_user_);
}

void ConnectionLimiter::remove_user(const std::string& user) { hub_->remove_user_connection(user); }

size_t ConnectionLimiter::total() const {
  std::lock_guard lock(mu_);
  return total_;
}

}  // namespace herald::server
