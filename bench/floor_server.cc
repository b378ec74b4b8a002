// floor_server: the latency floor of this machine for pub/sub delivery. A deliberately minimal
// Redis RESP2 pub/sub server (SUBSCRIBE, PUBLISH, PING; anything else gets -ERR) that does
// nothing but the sends: no auth, no history, no persistence, no per-message logging. Not a
// product; a yardstick for what any server on these cores could reach (bench/peers/README.md).
//
//   floor_server [--threads N] [--port P] [--bind ADDR] [--uring] [--max-output BYTES]
//
// Prints "port=NNNN" on stdout once listening. SIGINT/SIGTERM stop it (exit 0).
//
// Each thread owns an epoll and its connections (thread 0 accepts and deals them out
// round-robin). A PUBLISH builds the message once, hands the other threads' subscribers to
// them (a queue and an eventfd per thread), writes to its own thread's subscribers with one
// write() each (--uring: one io_uring_enter for all of them), then replies to the publisher.
#include <arpa/inet.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

namespace herald::bench {
namespace {

constexpr size_t kMaxInput = 1u << 20;      // unparsed input kept per connection; past it: closed
constexpr size_t kMaxArgs = 64;             // elements of one command
constexpr size_t kMaxHeaderLine = 32;       // "*N\r\n" or "$N\r\n": longer is garbage
constexpr size_t kReadChunk = 256u << 10;   // one recv() into the thread's buffer
constexpr size_t kKeepCapacity = 64u << 10; // buffers larger than this are freed once empty
constexpr int kMaxThreads = 64;
constexpr unsigned kRingEntries = 4096;     // --uring: sends submitted per io_uring_enter at most
constexpr uint64_t kWakeTag = ~uint64_t{0};
constexpr uint64_t kListenTag = ~uint64_t{0} - 1;

struct Options {
  int threads = 2;
  int port = 0;
  std::string bind = "127.0.0.1";
  bool uring = false;
  size_t max_output = 32u << 20;  // Redis's pub/sub hard limit; 0 = none
};

[[noreturn]] void usage(const char* why, int status) {
  std::fprintf(status == 0 ? stdout : stderr,
               "floor_server: %s\n"
               "usage: floor_server [--threads N (default 2)] [--port P (0 = any)] [--bind ADDR (127.0.0.1)]\n"
               "                    [--uring] [--max-output BYTES (per subscriber, 0 = no limit; 33554432)]\n"
               "A minimal Redis RESP2 pub/sub server (SUBSCRIBE, PUBLISH, PING) that only sends: the\n"
               "latency floor for bench/loadgen --system redis. Prints port=NNNN once listening.\n",
               why);
  std::exit(status);
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view k = argv[i];
    auto val = [&]() -> const char* {
      if (i + 1 >= argc) usage("an option needs a value", 2);
      return argv[++i];
    };
    auto num = [&](long long lo, long long hi) -> long long {
      const char* v = val();
      char* end = nullptr;
      errno = 0;
      const long long n = std::strtoll(v, &end, 10);
      if (errno != 0 || end == v || *end != '\0' || n < lo || n > hi) {
        std::fprintf(stderr, "floor_server: %.*s: bad value '%s'\n", static_cast<int>(k.size()), k.data(), v);
        std::exit(2);
      }
      return n;
    };
    if (k == "--help" || k == "-h") usage("the latency floor server (bench/peers/README.md)", 0);
    else if (k == "--threads") o.threads = static_cast<int>(num(1, kMaxThreads));
    else if (k == "--port") o.port = static_cast<int>(num(0, 65535));
    else if (k == "--bind") o.bind = val();
    else if (k == "--uring") o.uring = true;
    else if (k == "--max-output") o.max_output = static_cast<size_t>(num(0, 1LL << 40));
    else {
      std::fprintf(stderr, "floor_server: unknown option %s\n", argv[i]);
      usage("see above", 2);
    }
  }
  return o;
}

// A subscriber as the registry knows it: its fd in its owning thread, and the connection's
// id there (fds are reused; the id tells whether the fd is still that connection).
struct Sub {
  int fd;
  uint64_t id;
};
using SubList = std::shared_ptr<const std::vector<Sub>>;

// Channel -> subscribers, split by owning thread. Subscriptions change at start and on close;
// a publish takes the mutex for one lookup and leaves with immutable snapshots, built once
// after each change (copy-on-write), that the other threads read without any lock.
class Registry {
 public:
  explicit Registry(int threads) : threads_(threads) {}

  void add(std::string_view channel, int thread, Sub s) {
    std::lock_guard lock(mu_);
    auto it = map_.find(channel);
    if (it == map_.end()) it = map_.emplace(std::string(channel), Channel(threads_)).first;
    Channel& c = it->second;
    c.subs[static_cast<size_t>(thread)].push_back(s);
    c.snap[static_cast<size_t>(thread)].reset();
    ++c.total;
  }

  void remove(std::string_view channel, int thread, uint64_t id) {
    std::lock_guard lock(mu_);
    auto it = map_.find(channel);
    if (it == map_.end()) return;
    Channel& c = it->second;
    auto& v = c.subs[static_cast<size_t>(thread)];
    for (size_t i = 0; i < v.size(); ++i) {
      if (v[i].id != id) continue;
      v[i] = v.back();  // order among subscribers does not matter
      v.pop_back();
      c.snap[static_cast<size_t>(thread)].reset();
      if (--c.total == 0) map_.erase(it);
      return;
    }
  }

  // Sets out[t] to thread t's subscribers of `channel` (null when it has none); returns the
  // total. Any thread may call.
  size_t lookup(std::string_view channel, std::vector<SubList>& out) {
    std::lock_guard lock(mu_);
    auto it = map_.find(channel);
    if (it == map_.end()) {
      for (SubList& s : out) s.reset();
      return 0;
    }
    Channel& c = it->second;
    for (size_t t = 0; t < static_cast<size_t>(threads_); ++t) {
      if (!c.snap[t] && !c.subs[t].empty()) c.snap[t] = std::make_shared<const std::vector<Sub>>(c.subs[t]);
      out[t] = c.snap[t];
    }
    return c.total;
  }

 private:
  struct Channel {
    explicit Channel(int n) : subs(static_cast<size_t>(n)), snap(static_cast<size_t>(n)) {}
    std::vector<std::vector<Sub>> subs;
    std::vector<SubList> snap;  // null until the first publish after a change
    size_t total = 0;
  };
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  const int threads_;
  std::mutex mu_;
  std::unordered_map<std::string, Channel, Hash, std::equal_to<>> map_;
};

// Work one thread posts to another: a connection to adopt, or a message for its subscribers.
struct Item {
  int accept_fd = -1;
  std::shared_ptr<const std::string> msg;
  SubList subs;
};

struct Conn {
  int fd = -1;
  uint64_t id = 0;
  bool want_out = false;  // EPOLLOUT registered: a write would block
  bool queued = false;    // in the loop's list of connections to write this pass
  bool closed = false;    // closed; freed at the end of the epoll batch
  bool close_after_write = false;
  std::string in;   // an incomplete command carried over to the next read (usually empty)
  std::string out;  // bytes not yet written, from out_off
  size_t out_off = 0;
  std::vector<std::string> channels;
};

void append_uint(std::string& out, uint64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_bulk(std::string& out, std::string_view s) {
  out.push_back('$');
  append_uint(out, s.size());
  out.append("\r\n");
  out.append(s);
  out.append("\r\n");
}

bool eq_nocase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

// Parses the decimal in [p, end) (an optional '-' first); false unless it is all digits.
bool parse_int(const char* p, const char* end, int64_t& v) {
  if (p == end) return false;
  const auto r = std::from_chars(p, end, v);
  return r.ec == std::errc() && r.ptr == end;
}

enum class Parse : uint8_t { kOk, kNeedMore, kError };

// One command from `in` at `pos`: a RESP array of bulk strings, or an inline command (words
// on one line, as redis-cli and telnet send). On kOk, args point into `in` and `pos` moves
// past the command; an empty command yields argc 0. A length is checked against kMaxInput
// before its bytes are waited for. An incomplete command is parsed again from its start
// when more arrives: only its short header lines are rescanned, never a bulk body.
Parse parse_command(std::string_view in, size_t& pos, std::string_view* args, size_t& argc, const char*& why) {
  const char* base = in.data();
  const char* end = base + in.size();
  const char* p = base + pos;
  argc = 0;
  auto line_end = [&](const char* from) -> const char* {  // the '\r' of "\r\n", or null
    const size_t span = std::min<size_t>(static_cast<size_t>(end - from), kMaxHeaderLine);
    const void* nl = std::memchr(from, '\n', span);
    return nl == nullptr ? nullptr : static_cast<const char*>(nl) - 1;
  };
  if (*p != '*') {
    const void* nl = std::memchr(p, '\n', static_cast<size_t>(end - p));
    if (nl == nullptr) return Parse::kNeedMore;
    const char* le = static_cast<const char*>(nl);
    const char* stop = le > p && le[-1] == '\r' ? le - 1 : le;
    for (const char* q = p; q < stop;) {
      while (q < stop && (*q == ' ' || *q == '\t')) ++q;
      const char* w = q;
      while (q < stop && *q != ' ' && *q != '\t') ++q;
      if (q == w) break;
      if (argc == kMaxArgs) {
        why = "too many arguments";
        return Parse::kError;
      }
      args[argc++] = std::string_view(w, static_cast<size_t>(q - w));
    }
    pos = static_cast<size_t>(le + 1 - base);
    return Parse::kOk;
  }
  // The integer of a "*N\r\n" or "$N\r\n" line at p; on kOk, p moves past the line.
  auto header_int = [&](int64_t& v, const char* bad) -> Parse {
    const char* cr = line_end(p);
    if (cr == nullptr) {
      if (static_cast<size_t>(end - p) < kMaxHeaderLine) return Parse::kNeedMore;
      why = bad;
      return Parse::kError;
    }
    if (cr <= p || *cr != '\r' || !parse_int(p + 1, cr, v)) {
      why = bad;
      return Parse::kError;
    }
    p = cr + 2;
    return Parse::kOk;
  };
  int64_t n = 0;
  if (const Parse r = header_int(n, "invalid multibulk length"); r != Parse::kOk) return r;
  if (n > static_cast<int64_t>(kMaxArgs)) {
    why = "too many arguments";
    return Parse::kError;
  }
  for (int64_t i = 0; i < n; ++i) {  // n <= 0: an empty command, as Redis treats it
    if (p == end) return Parse::kNeedMore;
    if (*p != '$') {
      why = "expected '$'";
      return Parse::kError;
    }
    int64_t len = 0;
    if (const Parse r = header_int(len, "invalid bulk length"); r != Parse::kOk) return r;
    if (len < 0 || len > static_cast<int64_t>(kMaxInput)) {
      why = "invalid bulk length";
      return Parse::kError;
    }
    if (static_cast<size_t>(end - p) < static_cast<size_t>(len) + 2) return Parse::kNeedMore;
    if (p[len] != '\r' || p[len + 1] != '\n') {
      why = "bulk string not ended by CRLF";
      return Parse::kError;
    }
    args[argc++] = std::string_view(p, static_cast<size_t>(len));
    p += len + 2;
  }
  pos = static_cast<size_t>(p - base);
  return Parse::kOk;
}

class Loop;

struct Server {
  Options opts;
  Registry registry;
  std::vector<std::unique_ptr<Loop>> loops;
  int listen_fd = -1;
  explicit Server(const Options& o) : opts(o), registry(o.threads) {}
};

// One thread: its epoll, its connections, its inbox from the other threads.
class Loop {
 public:
  Loop(int index, Server& server) : index_(index), server_(server), outbox_(static_cast<size_t>(server.opts.threads)),
                                     snaps_(static_cast<size_t>(server.opts.threads)) {
    ep_ = ::epoll_create1(EPOLL_CLOEXEC);
    efd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ep_ < 0 || efd_ < 0) {
      std::perror("floor_server: epoll_create1/eventfd");
      std::exit(1);
    }
    watch(efd_, kWakeTag, EPOLLIN, EPOLL_CTL_ADD);
    if (index_ == 0) watch(server_.listen_fd, kListenTag, EPOLLIN, EPOLL_CTL_ADD);
  }
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;
  ~Loop() {
    if (ring_ready_) io_uring_queue_exit(&ring_);
    ::close(ep_);
    ::close(efd_);
  }

  // Any thread: queues `items` (moved out) and wakes the loop if its inbox was empty.
  void post(std::vector<Item>& items) {
    bool was_empty;
    {
      std::lock_guard lock(inbox_mu_);
      was_empty = inbox_.empty();
      if (was_empty) {
        inbox_.swap(items);
      } else {
        for (Item& it : items) inbox_.push_back(std::move(it));
      }
    }
    items.clear();
    if (was_empty) wake();
  }

  // Any thread: makes run() return.
  void stop() {
    stop_.store(true, std::memory_order_relaxed);
    wake();
  }

  void run() {
    if (server_.opts.uring) init_ring();
    std::vector<epoll_event> events(256);
    while (!stop_.load(std::memory_order_relaxed)) {
      const int n = ::epoll_wait(ep_, events.data(), static_cast<int>(events.size()), -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        std::perror("floor_server: epoll_wait");
        break;
      }
      for (int i = 0; i < n; ++i) {
        const epoll_event& e = events[static_cast<size_t>(i)];
        if (e.data.u64 == kWakeTag) {
          drain_inbox();
        } else if (e.data.u64 == kListenTag) {
          accept_all();
        } else {
          Conn* c = find(static_cast<int>(e.data.u64 >> 32), e.data.u64 & 0xffffffffu);
          if (c == nullptr) continue;  // closed earlier in this batch
          if ((e.events & EPOLLOUT) && c->want_out) {
            write_now(*c);
            if (c->closed) continue;
          }
          if (e.events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(*c);
        }
      }
      graveyard_.clear();
    }
    for (auto& c : conns_)
      if (c) ::close(c->fd);
    conns_.clear();
  }

 private:
  void wake() {
    const uint64_t one = 1;
    (void)!::write(efd_, &one, sizeof one);
  }

  void watch(int fd, uint64_t tag, uint32_t events, int op) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = tag;
    if (::epoll_ctl(ep_, op, fd, &ev) != 0 && op == EPOLL_CTL_ADD) {
      std::perror("floor_server: epoll_ctl");
    }
  }
  static uint64_t tag_of(const Conn& c) { return (static_cast<uint64_t>(c.fd) << 32) | (c.id & 0xffffffffu); }

  // The connection on `fd` if it is still the one with this id (low 32 bits compared for
  // epoll tags).
  Conn* find(int fd, uint64_t id) {
    if (fd < 0 || static_cast<size_t>(fd) >= conns_.size()) return nullptr;
    Conn* c = conns_[static_cast<size_t>(fd)].get();
    if (c == nullptr || (c->id & 0xffffffffu) != (id & 0xffffffffu)) return nullptr;
    return c;
  }

  void init_ring() {
    io_uring_params p{};
    // One thread submits; completions need no interrupt of this thread.
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN;
    int r = io_uring_queue_init_params(kRingEntries, &ring_, &p);
    if (r != 0) {
      io_uring_params plain{};
      r = io_uring_queue_init_params(kRingEntries, &ring_, &plain);
    }
    if (r != 0) {
      std::fprintf(stderr, "floor_server: --uring: io_uring_queue_init: %s\n", std::strerror(-r));
      std::exit(1);
    }
    ring_ready_ = true;
  }

  void adopt(int fd) {
    if (static_cast<size_t>(fd) >= conns_.size()) conns_.resize(static_cast<size_t>(fd) + 1024);
    auto c = std::make_unique<Conn>();
    c->fd = fd;
    c->id = ++next_id_;
    watch(fd, tag_of(*c), EPOLLIN, EPOLL_CTL_ADD);
    conns_[static_cast<size_t>(fd)] = std::move(c);
  }

  // Thread 0: accepts every pending connection and deals them out round-robin.
  void accept_all() {
    const int threads = server_.opts.threads;
    for (;;) {
      const int fd = ::accept4(server_.listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE) {
          // Level-triggered: the backlog would wake us again at once. Say it once, back off.
          if (!said_emfile_) std::fprintf(stderr, "floor_server: accept: %s (raise ulimit -n)\n", std::strerror(errno));
          said_emfile_ = true;
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        break;
      }
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      const int target = static_cast<int>(accepted_++ % static_cast<uint64_t>(threads));
      if (target == index_) {
        adopt(fd);
      } else {
        Item it;
        it.accept_fd = fd;
        outbox_[static_cast<size_t>(target)].push_back(std::move(it));
      }
    }
    post_outboxes();
  }

  void drain_inbox() {
    uint64_t x;
    (void)!::read(efd_, &x, sizeof x);  // reset before taking the items: a later post wakes us again
    {
      std::lock_guard lock(inbox_mu_);
      taken_.swap(inbox_);
    }
    for (Item& it : taken_) {
      if (it.accept_fd >= 0) {
        adopt(it.accept_fd);
        continue;
      }
      for (const Sub& s : *it.subs) deliver(s, *it.msg);
    }
    taken_.clear();  // drops the references to messages and snapshots; keeps the capacity
    write_queued();
  }

  void on_readable(Conn& c) {
    for (int round = 0; round < 4; ++round) {
      const ssize_t n = ::recv(c.fd, buf_.get(), kReadChunk, 0);
      if (n > 0) {
        const std::string_view data(buf_.get(), static_cast<size_t>(n));
        if (c.in.empty()) {
          const size_t used = execute(c, data);
          if (!c.closed && used < data.size()) c.in.assign(data.substr(used));
        } else {
          c.in.append(data);
          const size_t used = execute(c, c.in);
          if (!c.closed) {
            c.in.erase(0, used);
            if (c.in.empty() && c.in.capacity() > kKeepCapacity) std::string().swap(c.in);
          }
        }
        if (!c.closed && c.in.size() > kMaxInput) {
          c.out.append("-ERR input buffer limit reached\r\n");
          c.close_after_write = true;
        }
        end_pass(c);
        if (c.closed || static_cast<size_t>(n) < kReadChunk) return;
        continue;
      }
      if (n == 0) {
        close_conn(c);
        return;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR) continue;
      close_conn(c);
      return;
    }
  }

  // Runs every complete command in `in`; returns the bytes consumed. Replies go to c.out,
  // deliveries to the subscribers' buffers and the outboxes; nothing is written yet.
  size_t execute(Conn& c, std::string_view in) {
    size_t pos = 0;
    std::string_view args[kMaxArgs];
    while (pos < in.size() && !c.closed && !c.close_after_write) {
      size_t argc = 0;
      const char* why = "";
      const Parse r = parse_command(in, pos, args, argc, why);
      if (r == Parse::kNeedMore) break;
      if (r == Parse::kError) {
        c.out.append("-ERR Protocol error: ");
        c.out.append(why);
        c.out.append("\r\n");
        c.close_after_write = true;
        return in.size();
      }
      if (argc == 0) continue;
      command(c, args, argc);
    }
    return pos;
  }

  void command(Conn& c, const std::string_view* args, size_t argc) {
    const std::string_view name = args[0];
    if (eq_nocase(name, "PUBLISH")) {
      if (argc != 3) return wrong_args(c, "publish");
      publish(c, args[1], args[2]);
    } else if (eq_nocase(name, "SUBSCRIBE")) {
      if (argc < 2) return wrong_args(c, "subscribe");
      for (size_t i = 1; i < argc; ++i) subscribe(c, args[i]);
    } else if (eq_nocase(name, "PING")) {
      if (argc == 1) c.out.append("+PONG\r\n");
      else if (argc == 2) append_bulk(c.out, args[1]);
      else wrong_args(c, "ping");
    } else {
      c.out.append("-ERR unknown command\r\n");
    }
  }

  static void wrong_args(Conn& c, const char* cmd) {
    c.out.append("-ERR wrong number of arguments for '");
    c.out.append(cmd);
    c.out.append("' command\r\n");
  }

  void subscribe(Conn& c, std::string_view ch) {
    bool known = false;
    for (const std::string& s : c.channels) known = known || s == ch;
    if (!known) {
      server_.registry.add(ch, index_, Sub{c.fd, c.id});
      c.channels.emplace_back(ch);
    }
    c.out.append("*3\r\n$9\r\nsubscribe\r\n");
    append_bulk(c.out, ch);
    c.out.push_back(':');
    append_uint(c.out, c.channels.size());
    c.out.append("\r\n");
  }

  void publish(Conn& c, std::string_view ch, std::string_view payload) {
    const size_t receivers = server_.registry.lookup(ch, snaps_);
    if (receivers > 0) {
      auto msg = std::make_shared<std::string>();
      msg->reserve(ch.size() + payload.size() + 40);
      msg->append("*3\r\n$7\r\nmessage\r\n");
      append_bulk(*msg, ch);
      append_bulk(*msg, payload);
      std::shared_ptr<const std::string> shared = std::move(msg);
      for (size_t t = 0; t < snaps_.size(); ++t) {
        if (!snaps_[t]) continue;
        if (static_cast<int>(t) == index_) {
          for (const Sub& s : *snaps_[t]) deliver(s, *shared);
        } else {
          Item it;
          it.msg = shared;
          it.subs = std::move(snaps_[t]);
          outbox_[t].push_back(std::move(it));
        }
      }
    }
    c.out.push_back(':');
    append_uint(c.out, receivers);
    c.out.append("\r\n");
  }

  // Appends a message to one of this thread's subscribers; written at the end of the pass.
  void deliver(const Sub& s, const std::string& msg) {
    Conn* c = find(s.fd, s.id);
    if (c == nullptr || c->id != s.id || c->closed) return;  // gone since the snapshot
    const size_t max = server_.opts.max_output;
    if (max != 0 && c->out.size() - c->out_off + msg.size() > max) {
      // A subscriber this far behind is cut, as Redis does; the load generator sees the close.
      close_conn(*c);
      return;
    }
    c->out.append(msg);
    if (!c->queued && !c->want_out) {
      c->queued = true;
      queued_.push_back(Sub{c->fd, c->id});
    }
  }

  // After one read: hand the other threads their share first (they write in parallel),
  // write this thread's subscribers, then answer the connection that was read.
  void end_pass(Conn& c) {
    post_outboxes();
    write_queued();
    if (c.closed) return;
    if (c.out.size() > c.out_off && !c.want_out) write_now(c);
    if (!c.closed && c.close_after_write) close_conn(c);
  }

  void post_outboxes() {
    for (size_t t = 0; t < outbox_.size(); ++t) {
      if (!outbox_[t].empty()) server_.loops[t]->post(outbox_[t]);
    }
  }

  void write_queued() {
    if (queued_.empty()) return;
    if (ring_ready_) {
      write_queued_uring();
    } else {
      for (const Sub& s : queued_) {
        Conn* c = find(s.fd, s.id);
        if (c == nullptr || c->id != s.id || !c->queued) continue;
        c->queued = false;
        write_now(*c);
      }
    }
    queued_.clear();
  }

  // --uring: one send per queued connection, all submitted with one io_uring_enter (per
  // kRingEntries). MSG_DONTWAIT makes a full socket complete with -EAGAIN at once instead
  // of arming a poll, so every completion is in when submit_and_wait returns and the buffers
  // may change again.
  void write_queued_uring() {
    size_t next = 0;
    while (next < queued_.size()) {
      inflight_.clear();
      while (next < queued_.size() && inflight_.size() < kRingEntries) {
        const Sub s = queued_[next++];
        Conn* c = find(s.fd, s.id);
        if (c == nullptr || c->id != s.id || !c->queued) continue;
        c->queued = false;
        io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
        io_uring_prep_send(sqe, c->fd, c->out.data() + c->out_off, c->out.size() - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        io_uring_sqe_set_data64(sqe, inflight_.size());
        inflight_.push_back(s);
      }
      if (inflight_.empty()) break;
      const int r = io_uring_submit_and_wait(&ring_, static_cast<unsigned>(inflight_.size()));
      if (r < 0) {
        std::fprintf(stderr, "floor_server: io_uring_submit_and_wait: %s\n", std::strerror(-r));
        std::exit(1);
      }
      unsigned seen = 0, head = 0;
      io_uring_cqe* cqe = nullptr;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        ++seen;
        const Sub s = inflight_[static_cast<size_t>(io_uring_cqe_get_data64(cqe))];
        Conn* c = find(s.fd, s.id);
        if (c == nullptr || c->id != s.id) continue;
        if (cqe->res > 0) {
          c->out_off += static_cast<size_t>(cqe->res);
          write_now(*c);  // a short send: the rest with write(), or EPOLLOUT
        } else if (cqe->res == -EAGAIN || cqe->res == -EINTR) {
          write_now(*c);
        } else {
          close_conn(*c);
        }
      }
      io_uring_cq_advance(&ring_, seen);
    }
  }

  // Writes what c.out holds until done or the socket is full (then waits for EPOLLOUT).
  void write_now(Conn& c) {
    while (c.out_off < c.out.size()) {
      // write(2), not send(2): the same path into TCP, and /proc/PID/io counts it (syscw), so
      // loadgen's write_calls_per_delivery means here what it means for the peers. SIGPIPE
      // is ignored; the socket is non-blocking.
      const ssize_t n = ::write(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off);
      if (n > 0) {
        c.out_off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (c.out_off > c.out.size() / 2) {  // keep the unsent tail, not what went out
          c.out.erase(0, c.out_off);
          c.out_off = 0;
        }
        if (!c.want_out) {
          c.want_out = true;
          watch(c.fd, tag_of(c), EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
        }
        return;
      }
      close_conn(c);
      return;
    }
    c.out.clear();
    c.out_off = 0;
    if (c.out.capacity() > kKeepCapacity) std::string().swap(c.out);
    if (c.want_out) {
      c.want_out = false;
      watch(c.fd, tag_of(c), EPOLLIN, EPOLL_CTL_MOD);
    }
  }

  // Unsubscribes and closes at once; the Conn itself lives until the end of the epoll batch
  // (a caller up the stack may still hold it).
  void close_conn(Conn& c) {
    if (c.closed) return;
    c.closed = true;
    if (!stop_.load(std::memory_order_relaxed)) {
      for (const std::string& ch : c.channels) server_.registry.remove(ch, index_, c.id);
    }
    ::close(c.fd);
    graveyard_.push_back(std::move(conns_[static_cast<size_t>(c.fd)]));
  }

  const int index_;
  Server& server_;
  int ep_ = -1;
  int efd_ = -1;
  std::atomic<bool> stop_{false};
  std::vector<std::unique_ptr<Conn>> conns_;  // by fd
  std::vector<std::unique_ptr<Conn>> graveyard_;
  uint64_t next_id_ = 0;
  uint64_t accepted_ = 0;  // thread 0: connections dealt out so far
  bool said_emfile_ = false;
  std::vector<Sub> queued_;                  // connections with output to write this pass
  std::vector<std::vector<Item>> outbox_;    // per target thread, posted at the end of a pass
  std::vector<SubList> snaps_;               // lookup results, reused
  std::unique_ptr<char[]> buf_{new char[kReadChunk]};
  std::mutex inbox_mu_;
  std::vector<Item> inbox_;                  // guarded by inbox_mu_
  std::vector<Item> taken_;                  // the inbox being processed (this thread only)
  io_uring ring_{};
  bool ring_ready_ = false;
  std::vector<Sub> inflight_;                // --uring: the sends of one submission
};

int listen_on(const Options& o) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(o.port));
  if (::inet_pton(AF_INET, o.bind.c_str(), &a.sin_addr) != 1) {
    std::fprintf(stderr, "floor_server: --bind %s: not an IPv4 address\n", o.bind.c_str());
    std::exit(2);
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 4096) != 0) {
    std::fprintf(stderr, "floor_server: --bind %s --port %d: %s\n", o.bind.c_str(), o.port, std::strerror(errno));
    std::exit(1);
  }
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  std::printf("port=%d\n", ntohs(a.sin_port));
  std::fflush(stdout);
  return fd;
}

}  // namespace
}  // namespace herald::bench

int main(int argc, char** argv) {
  using namespace herald::bench;
  const Options o = parse_options(argc, argv);
  // Tens of thousands of subscribers: take every descriptor the hard limit allows.
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  ::signal(SIGPIPE, SIG_IGN);
  // SIGINT/SIGTERM are taken by sigwait() below, never by the loop threads.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  Server server(o);
  server.listen_fd = listen_on(o);
  for (int i = 0; i < o.threads; ++i) server.loops.push_back(std::make_unique<Loop>(i, server));
  std::vector<std::thread> threads;
  for (auto& loop : server.loops) threads.emplace_back([&l = *loop] { l.run(); });

  int sig = 0;
  sigwait(&stop_signals, &sig);
  for (auto& loop : server.loops) loop->stop();
  for (std::thread& t : threads) t.join();
  ::close(server.listen_fd);
  server.loops.clear();
  return 0;
}
