// BatchWriter against real loopback TCP sockets: every send of a submission is made and
// reported with its own result, bytes arrive intact and in order, a full socket answers
// -EAGAIN at once (never parked), a partial send is reported as such, a reset peer is an
// error and no SIGPIPE, and more sends than the ring holds go in several rounds.
#include "server/batch_writer.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace herald::server {
namespace {

// A connected loopback TCP pair; the sending end is non-blocking, like heraldd's sockets.
struct Pair {
  int send_fd = -1, recv_fd = -1;
  Pair() = default;
  Pair(const Pair&) = delete;
  Pair& operator=(const Pair&) = delete;
  Pair(Pair&& o) noexcept : send_fd(std::exchange(o.send_fd, -1)), recv_fd(std::exchange(o.recv_fd, -1)) {}
  ~Pair() {
    if (send_fd >= 0) ::close(send_fd);
    if (recv_fd >= 0) ::close(recv_fd);
  }
};

Pair make_pair(int sndbuf = 0) {
  Pair p;
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  EXPECT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  EXPECT_EQ(::listen(listener, 1), 0);
  EXPECT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len), 0);
  p.send_fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (sndbuf > 0) ::setsockopt(p.send_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
  EXPECT_EQ(::connect(p.send_fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  p.recv_fd = ::accept(listener, nullptr, nullptr);
  ::close(listener);
  if (sndbuf > 0) ::setsockopt(p.recv_fd, SOL_SOCKET, SO_RCVBUF, &sndbuf, sizeof(sndbuf));
  ::fcntl(p.send_fd, F_SETFL, ::fcntl(p.send_fd, F_GETFL) | O_NONBLOCK);
  return p;
}

std::string read_some(int fd, size_t want) {
  std::string got;
  char buf[65536];
  while (got.size() < want) {
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, 2000) <= 0) break;
    const ssize_t r = ::read(fd, buf, sizeof(buf));
    if (r <= 0) break;
    got.append(buf, static_cast<size_t>(r));
  }
  return got;
}

TEST(BatchWriter, SendsEverySocketsIovecsInOneSubmission) {
  BatchWriter w;
  std::string error;
  ASSERT_TRUE(w.open(64, &error)) << error;
  std::vector<Pair> pairs;
  for (int i = 0; i < 20; ++i) pairs.push_back(make_pair());
  std::vector<std::string> heads, bodies;
  for (int i = 0; i < 20; ++i) {
    heads.push_back("head" + std::to_string(i) + ":");
    bodies.push_back(std::string(100 + static_cast<size_t>(i) * 37, static_cast<char>('a' + i % 26)));
  }
  for (int i = 0; i < 20; ++i) {
    iovec iov[2] = {{heads[i].data(), heads[i].size()}, {bodies[i].data(), bodies[i].size()}};
    w.add(pairs[i].send_fd, iov, 2, static_cast<uint64_t>(1000 + i));
  }
  EXPECT_EQ(w.queued(), 20u);
  std::vector<std::pair<uint64_t, long>> results;
  EXPECT_EQ(w.run([&](uint64_t tag, long r) { results.emplace_back(tag, r); }), 1);  // one io_uring_enter
  EXPECT_EQ(w.queued(), 0u);
  ASSERT_EQ(results.size(), 20u);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(results[i].first, static_cast<uint64_t>(1000 + i));  // queue order
    EXPECT_EQ(results[i].second, static_cast<long>(heads[i].size() + bodies[i].size()));
    EXPECT_EQ(read_some(pairs[i].recv_fd, heads[i].size() + bodies[i].size()), heads[i] + bodies[i]);
  }
  EXPECT_EQ(w.run([&](uint64_t, long) { ADD_FAILURE() << "nothing was queued"; }), 0);
}

// Sends of several small pieces are copied into one buffer before they go (kGatherMax);
// bigger ones, and small ones once the buffer of the run is full, go as they are. Either
// way every peer reads exactly its pieces, in order, and each result counts the bytes sent.
TEST(BatchWriter, SmallPiecesAreGatheredAndEverySendArrivesIntact) {
  BatchWriter w;
  ASSERT_TRUE(w.open(64, nullptr));
  constexpr int kSends = 200;
  std::vector<Pair> pairs;
  for (int i = 0; i < kSends; ++i) pairs.push_back(make_pair());
  // Sends of 3..10 pieces; every 7th is bigger than kGatherMax; together the small ones
  // need more than the buffer of one run, so the last of them go as iovecs.
  std::vector<std::vector<std::string>> pieces(kSends);
  size_t gatherable = 0;
  for (int i = 0; i < kSends; ++i) {
    const size_t n = 3 + static_cast<size_t>(i) % 8;
    const size_t each = i % 7 == 0 ? BatchWriter::kGatherMax / 2 : 1500 + static_cast<size_t>(i) * 8;
    for (size_t k = 0; k < n; ++k) pieces[i].push_back(std::string(each, static_cast<char>('A' + (i + k) % 50)));
    if (i % 7 != 0) gatherable += n * each;
  }
  ASSERT_GT(gatherable, BatchWriter::kArenaBytes);
  for (int round = 0; round < 2; ++round) {  // the second run reuses the buffer
    const uint64_t gathered_before = w.gathered();
    for (int i = 0; i < kSends; ++i) {
      std::vector<iovec> iov;
      for (auto& s : pieces[i]) iov.push_back({s.data(), s.size()});
      w.add(pairs[i].send_fd, iov.data(), iov.size(), static_cast<uint64_t>(i));
    }
    std::vector<long> results(kSends, 0);
    w.run([&](uint64_t tag, long r) { results[tag] = r; });
    for (int i = 0; i < kSends; ++i) {
      std::string want;
      for (auto& s : pieces[i]) want += s;
      EXPECT_EQ(results[i], static_cast<long>(want.size())) << i;
      EXPECT_EQ(read_some(pairs[i].recv_fd, want.size()), want) << i;
    }
    // Some were gathered, but not the big ones nor those past the buffer's room.
    const uint64_t gathered = w.gathered() - gathered_before;
    EXPECT_GT(gathered, 100u);
    EXPECT_LT(gathered, static_cast<uint64_t>(kSends - kSends / 7));
  }
}

// A gathered send that only partly fits reports the bytes that went, and they are the
// first bytes of its pieces in order.
TEST(BatchWriter, AGatheredSendCanBePartial) {
  BatchWriter w;
  ASSERT_TRUE(w.open(8, nullptr));
  Pair slow = make_pair(4096);
  std::vector<std::string> pieces;
  for (int k = 0; k < 8; ++k) pieces.push_back(std::string(2000, static_cast<char>('a' + k)));
  std::string all;
  for (auto& s : pieces) all += s;
  std::vector<iovec> iov;
  for (auto& s : pieces) iov.push_back({s.data(), s.size()});
  // Send until the buffers are full, then read a little at a time: the space that frees
  // comes in pieces smaller than a send, so some send goes through only in part.
  std::string sent, got;
  long partial = 0;
  char buf[1500];
  for (int i = 0; i < 2000 && partial == 0; ++i) {  // bounded
    long r = 0;
    w.add(slow.send_fd, iov.data(), iov.size(), 1);
    w.run([&](uint64_t, long res) { r = res; });
    if (r > 0) sent += all.substr(0, static_cast<size_t>(r));
    if (r > 0 && r < static_cast<long>(all.size())) partial = r;
    if (r == -EAGAIN) {
      const ssize_t n = ::read(slow.recv_fd, buf, sizeof(buf));
      if (n > 0) got.append(buf, static_cast<size_t>(n));
    } else {
      ASSERT_GT(r, 0);
    }
  }
  ASSERT_GT(partial, 0) << "no partial send was seen";
  got += read_some(slow.recv_fd, sent.size() - got.size());
  EXPECT_EQ(got, sent);
}

// Sockets in the fixed-file table are sent to by slot; a slot emptied before close()
// lets the socket close (the peer reads end of stream); a slot outside the table is refused.
TEST(BatchWriter, FixedFilesAreSentToBySlotAndReleasedBeforeClose) {
  BatchWriter w;
  ASSERT_TRUE(w.open(8, nullptr));
  ASSERT_TRUE(w.open_files(16));
  EXPECT_EQ(w.file_slots(), 16u);
  EXPECT_FALSE(w.open_files(16));  // once
  Pair a = make_pair();
  Pair b = make_pair();
  ASSERT_TRUE(w.set_file(3, a.send_fd));
  ASSERT_TRUE(w.set_file(9, b.send_fd));
  EXPECT_FALSE(w.set_file(16, a.send_fd));
  const std::string one = "by slot, one piece";
  const std::string head = "by slot, ", tail = "two pieces";
  iovec iov1{const_cast<char*>(one.data()), one.size()};
  iovec iov2[2] = {{const_cast<char*>(head.data()), head.size()}, {const_cast<char*>(tail.data()), tail.size()}};
  // The descriptor given is ignored for a fixed file: -1 proves the slot is used.
  w.add(-1, &iov1, 1, 1, 3);
  w.add(-1, iov2, 2, 2, 9);
  std::vector<long> r;
  w.run([&](uint64_t, long res) { r.push_back(res); });
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0], static_cast<long>(one.size()));
  EXPECT_EQ(r[1], static_cast<long>(head.size() + tail.size()));
  EXPECT_EQ(read_some(a.recv_fd, one.size()), one);
  EXPECT_EQ(read_some(b.recv_fd, head.size() + tail.size()), head + tail);
  // Emptied, then closed: the socket really closes.
  ASSERT_TRUE(w.set_file(3, -1));
  ::close(a.send_fd);
  a.send_fd = -1;
  pollfd pfd{a.recv_fd, POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 2000), 1);
  char c;
  EXPECT_EQ(::read(a.recv_fd, &c, 1), 0);  // end of stream
  // An emptied slot fails its send alone.
  w.add(-1, &iov1, 1, 1, 3);
  w.add(-1, &iov1, 1, 2, 9);
  r.clear();
  w.run([&](uint64_t, long res) { r.push_back(res); });
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0], -EBADF);
  EXPECT_EQ(r[1], static_cast<long>(one.size()));
}

TEST(BatchWriter, MoreSendsThanTheRingHoldsGoInRounds) {
  BatchWriter w;
  ASSERT_TRUE(w.open(4, nullptr));
  std::vector<Pair> pairs;
  for (int i = 0; i < 10; ++i) pairs.push_back(make_pair());
  const std::string msg = "0123456789";
  for (int i = 0; i < 10; ++i) {
    iovec iov{const_cast<char*>(msg.data()), msg.size()};
    w.add(pairs[i].send_fd, &iov, 1, static_cast<uint64_t>(i));
  }
  int calls = 0;
  EXPECT_EQ(w.run([&](uint64_t tag, long r) {
              EXPECT_EQ(tag, static_cast<uint64_t>(calls++));
              EXPECT_EQ(r, 10);
            }),
            3);  // 4 + 4 + 2
  EXPECT_EQ(calls, 10);
  for (auto& p : pairs) EXPECT_EQ(read_some(p.recv_fd, 10), msg);
}

// A socket whose buffers are full: -EAGAIN comes back at once (MSG_DONTWAIT), and a send
// that only partly fits reports the bytes that went; a healthy socket in the same
// submission is unaffected.
TEST(BatchWriter, AFullSocketAnswersEagainAtOnceAndAPartialSendIsReported) {
  BatchWriter w;
  ASSERT_TRUE(w.open(16, nullptr));
  Pair slow = make_pair(4096);
  Pair fine = make_pair();
  const std::string big(1 << 20, 'x');
  iovec iov{const_cast<char*>(big.data()), big.size()};
  // Only part of 1 MiB fits into the small buffers: the sends report what went, until the
  // buffers are full and the next one answers -EAGAIN (bounded: the peer never reads).
  long first = 0, written = 0, last = 0;
  for (int i = 0; i < 100; ++i) {
    w.add(slow.send_fd, &iov, 1, 1);
    w.run([&](uint64_t, long r) { last = r; });
    if (last < 0) break;
    if (first == 0) first = last;
    written += last;
  }
  ASSERT_GT(first, 0);
  EXPECT_LT(first, static_cast<long>(big.size()));  // partial
  EXPECT_EQ(last, -EAGAIN);
  // Now the buffers are full: -EAGAIN, without waiting, next to a send that works.
  const std::string small = "still here";
  iovec iov2{const_cast<char*>(small.data()), small.size()};
  w.add(slow.send_fd, &iov, 1, 1);
  w.add(fine.send_fd, &iov2, 1, 2);
  std::vector<long> r;
  const auto start = std::chrono::steady_clock::now();
  w.run([&](uint64_t, long res) { r.push_back(res); });
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0], -EAGAIN);
  EXPECT_EQ(r[1], static_cast<long>(small.size()));
  EXPECT_LT(took, std::chrono::seconds(1));  // a guard against parking, not a speed check
  EXPECT_EQ(read_some(fine.recv_fd, small.size()), small);
  // What the sends reported as written is what the peer can read.
  EXPECT_EQ(read_some(slow.recv_fd, static_cast<size_t>(written)).size(), static_cast<size_t>(written));
  EXPECT_TRUE(w.is_open());
}

// A peer that reset the connection: the send fails with an errno and the process gets no
// SIGPIPE (the test would die of it: gtest does not ignore SIGPIPE).
TEST(BatchWriter, AResetPeerIsAnErrorWithoutSigpipe) {
  BatchWriter w;
  ASSERT_TRUE(w.open(8, nullptr));
  Pair p = make_pair();
  linger l{1, 0};
  ::setsockopt(p.recv_fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  ::close(p.recv_fd);  // RST
  p.recv_fd = -1;
  ::usleep(20000);
  const std::string msg = "nobody reads this";
  iovec iov{const_cast<char*>(msg.data()), msg.size()};
  long r = 0;
  for (int i = 0; i < 3 && r >= 0; ++i) {  // the first send may still be accepted locally
    w.add(p.send_fd, &iov, 1, 7);
    w.run([&](uint64_t tag, long res) {
      EXPECT_EQ(tag, 7u);
      r = res;
    });
  }
  EXPECT_TRUE(r == -EPIPE || r == -ECONNRESET) << r;
  EXPECT_TRUE(w.is_open());
}

TEST(BatchWriter, ABadDescriptorFailsOnlyItsOwnSend) {
  BatchWriter w;
  ASSERT_TRUE(w.open(8, nullptr));
  Pair p = make_pair();
  const std::string msg = "ok";
  iovec iov{const_cast<char*>(msg.data()), msg.size()};
  w.add(-1, &iov, 1, 1);
  w.add(p.send_fd, &iov, 1, 2);
  std::vector<long> r;
  w.run([&](uint64_t, long res) { r.push_back(res); });
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0], -EBADF);
  EXPECT_EQ(r[1], 2);
  EXPECT_EQ(read_some(p.recv_fd, 2), msg);
}

}  // namespace
}  // namespace herald::server
