// What one small write to each of many loopback TCP sockets costs on this machine, with one
// write(2) per socket against one io_uring submission carrying every socket's send
// (liburing). This is the fan-out step of a broadcast: the same 144-byte frame to N
// subscribers. A separate reader process drains every socket so that buffers never fill.
// Prints one JSON line per mode and round count: sender CPU and wall time per write.
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

double thread_cpu_s() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::exit(1);
}

// Accepted ends go to the reader process; connected ends stay with the sender.
void make_pairs(int n, std::vector<int>& senders, std::vector<int>& receivers) {
  const int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(lfd, 4096) != 0 ||
      ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    die("listen");
  }
  for (int i = 0; i < n; ++i) {
    const int c = ::socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0 || ::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("connect");
    int one = 1;
    ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const int r = ::accept(lfd, nullptr, nullptr);
    if (r < 0) die("accept");
    senders.push_back(c);
    receivers.push_back(r);
  }
  ::close(lfd);
}

// Reads everything until every socket is closed.
void reader(const std::vector<int>& fds) {
  const int ep = ::epoll_create1(0);
  for (int fd : fds) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  size_t open = fds.size();
  std::vector<epoll_event> evs(1024);
  char buf[65536];
  while (open > 0) {
    const int k = ::epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), 1000);
    for (int i = 0; i < k; ++i) {
      const ssize_t r = ::read(evs[static_cast<size_t>(i)].data.fd, buf, sizeof buf);
      if (r <= 0) {
        ::epoll_ctl(ep, EPOLL_CTL_DEL, evs[static_cast<size_t>(i)].data.fd, nullptr);
        --open;
      }
    }
  }
}

struct Result {
  double cpu_s = 0, wall_s = 0;
};

Result run_write(const std::vector<int>& fds, int rounds, const char* frame, size_t size) {
  const double c0 = thread_cpu_s();
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < rounds; ++r) {
    for (int fd : fds) {
      if (::write(fd, frame, size) != static_cast<ssize_t>(size)) die("write");
    }
  }
  return {thread_cpu_s() - c0, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()};
}

Result run_uring(const std::vector<int>& fds, int rounds, const char* frame, size_t size) {
  io_uring ring;
  const unsigned entries = static_cast<unsigned>(std::min<size_t>(4096, fds.size()));
  if (io_uring_queue_init(entries, &ring, 0) != 0) die("io_uring_queue_init");
  const double c0 = thread_cpu_s();
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < rounds; ++r) {
    size_t next = 0;
    while (next < fds.size()) {
      unsigned queued = 0;
      while (next < fds.size() && queued < entries) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring);
        io_uring_prep_send(sqe, fds[next++], frame, size, 0);
        ++queued;
      }
      if (io_uring_submit_and_wait(&ring, queued) < 0) die("io_uring_submit_and_wait");
      io_uring_cqe* cqe = nullptr;
      unsigned head = 0, seen = 0;
      io_uring_for_each_cqe(&ring, head, cqe) {
        if (cqe->res != static_cast<int>(size)) {
          std::fprintf(stderr, "send: %d\n", cqe->res);
          std::exit(1);
        }
        ++seen;
      }
      io_uring_cq_advance(&ring, seen);
    }
  }
  Result res{thread_cpu_s() - c0, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()};
  io_uring_queue_exit(&ring);
  return res;
}

}  // namespace

int main(int argc, char** argv) {
  int n = 1000, rounds = 200, reps = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--sockets") n = std::atoi(argv[i + 1]);
    else if (k == "--rounds") rounds = std::atoi(argv[i + 1]);
    else if (k == "--reps") reps = std::atoi(argv[i + 1]);
  }
  if (n <= 0 || n > 9000 || rounds <= 0 || reps <= 0) {
    std::fprintf(stderr, "usage: fanout_write [--sockets 1..9000] [--rounds N] [--reps N]\n");
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);
  std::vector<int> senders, receivers;
  make_pairs(n, senders, receivers);
  const pid_t child = ::fork();
  if (child == 0) {
    for (int fd : senders) ::close(fd);
    reader(receivers);
    _exit(0);
  }
  for (int fd : receivers) ::close(fd);
  char frame[144];
  std::memset(frame, 'x', sizeof frame);
  // Alternate the modes so that both see the same machine.
  for (int rep = 1; rep <= reps; ++rep) {
    for (const char* mode : {"write", "io_uring"}) {
      const bool uring = std::strcmp(mode, "io_uring") == 0;
      const Result r = uring ? run_uring(senders, rounds, frame, sizeof frame) : run_write(senders, rounds, frame, sizeof frame);
      const double writes = static_cast<double>(n) * rounds;
      std::printf(
          "{\"bench\":\"fanout_write\",\"mode\":\"%s\",\"rep\":%d,\"sockets\":%d,\"rounds\":%d,\"bytes\":%zu,"
          "\"sender_cpu_ns_per_write\":%.0f,\"wall_ns_per_write\":%.0f}\n",
          mode, rep, n, rounds, sizeof frame, r.cpu_s * 1e9 / writes, r.wall_s * 1e9 / writes);
      std::fflush(stdout);
    }
  }
  for (int fd : senders) ::close(fd);
  int st = 0;
  ::waitpid(child, &st, 0);
  return 0;
}
