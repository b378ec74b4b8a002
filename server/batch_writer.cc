#include "server/batch_writer.h"

#include <liburing.h>

#include <cerrno>
#include <cstring>
#include <new>

namespace herald::server {

BatchWriter::BatchWriter() = default;

BatchWriter::~BatchWriter() { close(); }

bool BatchWriter::open(unsigned entries, std::string* error) {
  auto ring = std::make_unique<io_uring>();
  const int rc = io_uring_queue_init(entries, ring.get(), 0);
  if (rc < 0) {
    if (error != nullptr) *error = std::strerror(-rc);
    return false;
  }
  ring_ = std::move(ring);
  entries_ = entries;
  return true;
}

uint8_t* BatchWriter::gather(const iovec* iov, size_t n, size_t bytes) {
  if (!arena_) arena_.reset(new (std::nothrow) uint8_t[kArenaBytes]);
  if (!arena_ || kArenaBytes - arena_used_ < bytes) return nullptr;
  uint8_t* out = arena_.get() + arena_used_;
  uint8_t* p = out;
  for (size_t i = 0; i < n; ++i) {
    std::memcpy(p, iov[i].iov_base, iov[i].iov_len);
    p += iov[i].iov_len;
  }
  arena_used_ += bytes;
  return out;
}

bool BatchWriter::open_files(unsigned count) noexcept {
  if (!ring_ || file_slots_ != 0 || count == 0) return false;
  if (io_uring_register_files_sparse(ring_.get(), count) < 0) return false;
  file_slots_ = count;
  return true;
}

bool BatchWriter::set_file(unsigned slot, int fd) noexcept {
  if (!ring_ || slot >= file_slots_) return false;
  return io_uring_register_files_update(ring_.get(), slot, &fd, 1) == 1;
}

void BatchWriter::add(int fd, const iovec* iov, size_t n, uint64_t tag, int file_slot) {
  // The kernel pays per piece of a send; small pieces are cheaper to copy here once.
  if (n > 1) {
    size_t bytes = 0;
    for (size_t i = 0; i < n; ++i) bytes += iov[i].iov_len;
    if (bytes <= kGatherMax) {
      if (uint8_t* g = gather(iov, n, bytes)) {
        ++gathered_;
        const iovec one{g, bytes};
        add(fd, &one, 1, tag, file_slot);
        return;
      }
    }
  }
  Send s{};
  s.iov_begin = iovs_.size();
  s.msg.msg_iovlen = n;
  s.tag = tag;
  s.fd = fd;
  s.file_slot = file_slot;
  s.result = 0;
  iovs_.insert(iovs_.end(), iov, iov + n);
  sends_.push_back(s);
}

int BatchWriter::run(const std::function<void(uint64_t, long)>& done) {
  if (sends_.empty()) return 0;
  // The iovec vector no longer grows: its addresses are final now.
  for (Send& s : sends_) {
    s.msg.msg_iov = iovs_.data() + s.iov_begin;
    s.result = kNotSent;
  }
  int enters = 0;
  size_t next = 0;
  while (next < sends_.size() && ring_) {
    unsigned queued = 0;
    while (next < sends_.size() && queued < entries_) {
      io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
      if (sqe == nullptr) break;  // the ring is empty at each round's start: cannot happen
      Send& s = sends_[next];
      const int target = s.file_slot >= 0 ? s.file_slot : s.fd;
      if (s.msg.msg_iovlen == 1) {
        // One piece (most sends, once gathered): a plain send, without a msghdr to copy in.
        io_uring_prep_send(sqe, target, s.msg.msg_iov[0].iov_base, s.msg.msg_iov[0].iov_len,
                           MSG_DONTWAIT | MSG_NOSIGNAL);
      } else {
        io_uring_prep_sendmsg(sqe, target, &s.msg, MSG_DONTWAIT | MSG_NOSIGNAL);
      }
      if (s.file_slot >= 0) sqe->flags |= IOSQE_FIXED_FILE;
      io_uring_sqe_set_data64(sqe, next);
      ++next;
      ++queued;
    }
    int rc;
    do {
      rc = io_uring_submit_and_wait(ring_.get(), queued);
    } while (rc == -EINTR);
    ++enters;
    if (rc < 0) {
      // The kernel took none of this round: its sends stay kNotSent and the caller writes
      // them itself. The ring is closed so the queued entries are never submitted later.
      close();
      break;
    }
    // Every submitted send completes before its CQE is waited for (MSG_DONTWAIT: never
    // parked), so these waits do not block.
    for (unsigned seen = 0; seen < queued; ++seen) {
      io_uring_cqe* cqe = nullptr;
      int w;
      do {
        w = io_uring_wait_cqe(ring_.get(), &cqe);
      } while (w == -EINTR);
      if (w < 0) {
        // Sent or not, nobody can tell: those connections are closed (the client resumes).
        for (size_t i = next - queued; i < next; ++i) {
          if (sends_[i].result == kNotSent) sends_[i].result = -EIO;
        }
        close();
        break;
      }
      sends_[io_uring_cqe_get_data64(cqe)].result = cqe->res;
      io_uring_cqe_seen(ring_.get(), cqe);
    }
  }
  for (const Send& s : sends_) done(s.tag, s.result);
  sends_.clear();
  iovs_.clear();
  arena_used_ = 0;
  return enters;
}

void BatchWriter::close() noexcept {
  if (!ring_) return;
  io_uring_queue_exit(ring_.get());  // drops the table's references too
  ring_.reset();
  file_slots_ = 0;
}

}  // namespace herald::server
