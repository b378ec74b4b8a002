// BatchWriter: the sends of many sockets in one system call (io_uring).
//
// At the end of each event-loop iteration the loop writes every connection that has
// output queued. On loopback a write costs about 5 µs whatever its size, and a broadcast or
// a burst of unicast publishes leaves hundreds of connections to write in one iteration.
// BatchWriter queues one sendmsg per connection in an io_uring submission queue and hands
// them to the kernel with one io_uring_enter, which also waits for their completions: the
// kernel runs every send at once, in the loop's thread, as writev would.
//
// A send of several small pieces (a header and a body per frame) is copied into one buffer
// first: the kernel's work grows with the pieces of a send, and on loopback copying them
// here once is cheaper than letting the kernel walk them.
//
// Semantics are those of writev on a non-blocking socket: each send carries MSG_DONTWAIT,
// so a full socket buffer completes with -EAGAIN at once (io_uring never parks the send to
// retry it later), and a send may be partial. Nothing is in flight once run() returns, so
// the iovec arrays and the bytes they point at need only live until then.
//
// One per event loop, used by that loop's thread only. If the kernel refuses io_uring
// (too old, or forbidden by a seccomp profile), open() fails and the loop keeps writev.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

struct io_uring;

namespace herald::server {

class BatchWriter {
 public:
  BatchWriter();
  ~BatchWriter();
  BatchWriter(const BatchWriter&) = delete;
  BatchWriter& operator=(const BatchWriter&) = delete;

  // Sets up a ring of `entries` submission slots (more sends are submitted in several
  // rounds). False, with `error` set, if the kernel refuses.
  bool open(unsigned entries, std::string* error);
  bool is_open() const noexcept { return ring_ != nullptr; }

  // A table of `count` sockets registered with the ring (fixed files): a send to a socket
  // in the table skips the kernel's lookup of its descriptor (and the reference taken
  // and dropped on the file) on every call. False if the kernel refuses (sends then
  // name descriptors, as without a table). After open().
  bool open_files(unsigned count) noexcept;
  unsigned file_slots() const noexcept { return file_slots_; }
  // Puts `fd` into slot `slot` of the table (-1 empties it). The table holds a reference
  // to the socket: empty the slot before closing the descriptor, or the socket stays
  // open. False if refused (the slot is then not to be used).
  bool set_file(unsigned slot, int fd) noexcept;

  // Queues a send of iov[0..n) to `fd`; `tag` comes back with its result. The iovecs are
  // copied; the bytes they point at must stay until run() returns. A send of several
  // pieces and at most kGatherMax bytes is copied into one buffer of the writer instead
  // (the kernel pays per piece; on loopback copying small pieces here once is cheaper),
  // while the run's buffer (kArenaBytes) has room.
  // `file_slot`: the slot `fd` was put into with set_file(), or -1.
  void add(int fd, const iovec* iov, size_t n, uint64_t tag, int file_slot = -1);
  // Sends of at most this many bytes in several pieces are copied into one buffer
  // first (see add()); the buffer holds kArenaBytes per run.
  static constexpr size_t kGatherMax = 16 * 1024;
  static constexpr size_t kArenaBytes = 2 * 1024 * 1024;
  size_t queued() const noexcept { return sends_.size(); }
  // Sends add() copied into one buffer since open (for tests and diagnostics).
  uint64_t gathered() const noexcept { return gathered_; }

  // Submits every queued send and waits for all of them. `done(tag, result)` is called once
  // per send, in queue order: result is the byte count written, -errno, or kNotSent when
  // the ring failed before the kernel took the send (the caller writes it with writev).
  // A ring that fails is closed (is_open() turns false). Returns the io_uring_enter calls.
  static constexpr long kNotSent = -1'000'000;
  int run(const std::function<void(uint64_t tag, long result)>& done);
  void close() noexcept;

 private:
  struct Send {
    msghdr msg;
    size_t iov_begin;
    uint64_t tag;
    int fd;
    int file_slot;  // fixed-file slot, or -1
    long result;
  };
  // Copies iov[0..n) into the gather arena; null if it has no room.
  uint8_t* gather(const iovec* iov, size_t n, size_t bytes);

  std::unique_ptr<io_uring> ring_;
  unsigned entries_ = 0;
  unsigned file_slots_ = 0;
  std::vector<Send> sends_;
  std::vector<iovec> iovs_;
  std::unique_ptr<uint8_t[]> arena_;
  size_t arena_used_ = 0;
  uint64_t gathered_ = 0;
};

}  // namespace herald::server
