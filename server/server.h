// heraldd as an object: builds the shared context, the event loops, the hub,
// the listeners (TCP, TLS, WebSocket, HTTP API) and runs the acceptor/API loop on the
// calling thread until a graceful shutdown finishes.
#pragma once

#include <event2/event.h>
#include <event2/listener.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "server/channel_hub.h"
#include "server/config.h"
#include "server/durable_history.h"
#include "server/sqlite_store.h"
#include "server/http_api.h"
#include "server/loop.h"
#include "server/memory_history.h"
#include "server/metrics.h"
#include "server/server_context.h"
#include "server/token_bucket.h"

namespace herald::server {

class Server final : public ApiBackend, public DeliverySink {
 public:
  explicit Server(Config config);
  ~Server() override;

  // Loads TLS and dictionaries, binds every listener, starts the loops and
  // writes the ready file. False with `error` naming the setting on failure.
  bool start(std::string& error);
  // Runs until SIGTERM/SIGINT (or request_shutdown) and the graceful shutdown
  // finished. Returns the process exit code.
  int run();
  // Thread-safe.
  void request_shutdown();

  // ---- DeliverySink (called under a channel lock) ----
  void deliver(size_t loop, const PublicationPtr& publication, uint32_t subscribers) noexcept override;

  // ---- ApiBackend (API loop thread) ----
  ApiPublishResult publish_one(const std::string& channel, const ApiPublishRequest& r) override;
  void publish_async(const std::string& channel, const ApiPublishRequest& r,
                     std::function<void(ApiPublishResult)> done) override;
  void message_receipts(const std::string& message_id, std::function<void(int, nlohmann::json)> done) override;
  void integrity_check(std::function<void(int, nlohmann::json)> done) override;
  void user_info(const std::string& user, std::function<void(nlohmann::json)> done) override;
  void disconnect_user(const std::string& user, codec::Status code, const std::string& reason,
                       std::function<void(size_t)> done) override;
  nlohmann::json server_stats() override;

 private:
  static void on_accept(evconnlistener* listener, evutil_socket_t fd, sockaddr* addr, int len, void* arg);
  static void on_accept_error(evconnlistener* listener, void* arg);
  static void on_signal(evutil_socket_t sig, short, void* arg);
  static void on_main_wakeup(evutil_socket_t, short, void* arg);
  static void on_sweep(evutil_socket_t, short, void* arg);
  static void on_history_check(evutil_socket_t, short, void* arg);
  static void on_stop_check(evutil_socket_t, short, void* arg);
  void post_main(std::function<void()> fn);
  bool listen(const std::string& setting, const std::string& address, evconnlistener*& out, std::string& bound,
              std::string& error);
  bool load_dictionary(std::string& error);
  void accept(evutil_socket_t fd, sockaddr* addr, bool tls, bool ws);
  void begin_shutdown();
  bool write_ready_file(std::string& error);
  bool open_store(std::string& error);
  void on_dismiss(std::vector<DismissNotice>&& notices);

  Config config_;
  Metrics metrics_;
  ServerContext context_;
  std::unique_ptr<MemoryHistory> history_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<DurableHistory> durable_;
  std::mutex workers_mu_;
  std::vector<std::thread> workers_;  // admin work off the API loop (integrity check); joined at the end
  std::unique_ptr<ChannelHub> hub_;
  std::unique_ptr<ConnectionLimiter> limiter_;
  std::vector<std::unique_ptr<Loop>> loops_;
  std::unique_ptr<HttpApi> api_;
  event_base* base_ = nullptr;
  evconnlistener* tcp_listener_ = nullptr;
  evconnlistener* tls_listener_ = nullptr;
  evconnlistener* ws_listener_ = nullptr;
  std::vector<event*> events_;
  event* wakeup_ev_ = nullptr;
  event* stop_check_ev_ = nullptr;
  std::mutex post_mu_;
  std::vector<std::function<void()>> posted_;
  std::string bound_tcp_, bound_tls_, bound_api_, bound_ws_;
  size_t next_loop_ = 0;
  std::unique_ptr<TokenBucket> accept_rate_;  // limits.accept_rate, main thread only
  std::atomic<bool> shutting_down_{false};  // written by the main loop, read by API threads
  uint64_t shutdown_deadline_ms_ = 0;
  uint64_t started_ms_ = 0;
  bool history_trim_logged_ = false;  // the first trim for limits.history_memory_bytes is logged at info
  std::atomic<bool> shutdown_requested_{false};
};

}  // namespace herald::server
