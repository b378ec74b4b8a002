// Per-connection output queue: a control lane and four publication lanes (P0..P3),
// output limits with shedding, and the order in which frames are handed to one writev.
// Sans-IO: no sockets, no libevent, no clock (time is a parameter), no logging, no threads.
#pragma once

#include <sys/uio.h>  // struct iovec

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "codec/frame_encoder.h"
#include "server/publication.h"

namespace herald::server {

// Output limits of one event loop, shared read-only (by pointer) by its connections'
// lanes; it must outlive them. Every limit counts wire bytes (headers and bodies) of
// everything queued for a connection, prepared-but-unwritten frames included.
struct OutputLimits {
  size_t soft_bytes = 256 * 1024;  // above this: shed P3 then P2 ...
  uint64_t soft_ms = 10'000;       // ... and if it stays above for this long: slow consumer
  size_t hard_bytes = 1024 * 1024; // a frame that would go above this: slow consumer at once
  size_t batch_bytes = 64 * 1024;  // most bytes prepared for one write
};

// Called by consumed() for each publication (queued with a record) whose last byte was
// just written; a null `fn` is never called. `fn` must not touch the lanes it is called from.
struct WrittenHook {
  void (*fn)(void* ctx, const PublicationRecord& publication) noexcept = nullptr;
  void* ctx = nullptr;
};

enum class EnqueueOutcome : uint8_t {
  kQueued,        // the lanes own it now
  kShed,          // a P2/P3 message was dropped because of the soft limit (counted)
  kSlowConsumer,  // not queued: the caller closes the connection with kSlowConsumer
};

// Counters of one event loop (pass the same instance to every DeliveryLanes of the
// loop; not thread-safe, like everything on a loop). queued/shed are indexed by
// priority and count publication messages: queued = accepted by enqueue(), shed = the
// new message refused with kShed plus every queued message dropped to make room.
// Messages thrown away by clear()/discard_queued() (the connection is closing) are not
// counted. frames_out/bytes_out count what consumed() reports as written, control
// frames included; `out` the same per frame type (a frame counts once it is whole on
// the socket). queued_bytes is the gauge of wire bytes queued on all the loop's lanes.
// collapsed, by priority of the message replaced, counts queued state-channel messages
// replaced by a newer one with the same channel and collapse key (enqueue with collapse).
struct LaneCounters {
  uint64_t queued[4] = {};
  uint64_t shed[4] = {};
  uint64_t collapsed[4] = {};
  uint64_t frames_out = 0;
  uint64_t bytes_out = 0;
  codec::FrameTally out;
  int64_t queued_bytes = 0;
};

// Output queue of one connection. Control frames (replies, Pong, Error, GoAway ...) go
// first, then P0, then P1..P3 shared by deficit round robin over bytes (weights 8:4:1),
// so P0 never waits behind a batch and no lower lane starves. Frames of different
// messages may interleave (a P0 message between the fragments of a P3 one, protocol.md
// §7.3, §13); within a lane messages go out in order, so at most one message per lane
// is in progress: never more than 4 fragmented messages at once, as §7.3 requires.
// Sequence numbers are given when a frame is prepared, so the wire sees 0, 1, 2, ...
// A write may leave prepared frames of which nothing went out (the socket was full);
// when a control frame or a P0 is queued, those go back to the heads of their lanes
// with their sequence numbers (and the round robin as it was before them), so the
// urgent frame waits behind at most one partly written frame, never behind a batch.
// Bulk enqueues leave them prepared: a full socket's next write takes them as they are.
//
// Memory: one instance per connection. An empty DeliveryLanes owns no heap memory and
// sizeof(DeliveryLanes) <= kMaxSize (40 bytes on LP64; checked by a static_assert in
// the .cc): the queues, the ring and the round robin live in a block of about 320 bytes
// allocated when something is queued and freed when everything is written. Each queued
// message costs one node: 48 bytes for a publication (its PublicationPtr or a hold of a
// HeldPublication, and a pointer to the shared frames, whose bytes are never copied), 88
// for a control frame (its EncodedMessage is moved in, buffers included). The first
// publication node has room in the block itself, the next come from the heap one by one
// until 4 are, then from a pool of 32 made with one allocation and freed with the block (a
// broadcast queues dozens per connection between two writes). Headers of prepared frames
// live in a ring of 48-byte slots: in the block itself for up to two small frames, else
// allocated (8 at first, or up to 32 when that much is queued, then doubling) while
// something is in flight and freed as soon as nothing is. A unicast delivery of one small
// publication therefore allocates once.
//
// Not thread-safe: used by the connection's event loop thread only. All functions are
// noexcept; an allocation failure makes enqueue*() answer kSlowConsumer (the connection
// closes and memory returns) and prepare() stop early.
class DeliveryLanes {
 public:
  static constexpr size_t kMaxSize = 40;
  // Deficit round robin quantum per unit of weight (bytes per round: P1 8 KiB,
  // P2 4 KiB, P3 1 KiB).
  static constexpr uint32_t kQuantum = 1024;

  // `limits` (not null) and `counters` (may be null: nothing is counted) must outlive
  // the lanes; both are normally the event loop's.
  explicit DeliveryLanes(const OutputLimits* limits, LaneCounters* counters = nullptr) noexcept;
  ~DeliveryLanes();  // frees everything queued
  DeliveryLanes(const DeliveryLanes&) = delete;
  DeliveryLanes& operator=(const DeliveryLanes&) = delete;

  // Queues a control frame (reply, Pong, Error, GoAway, SubscribeOk, PublishOk,
  // Dismiss ...), moved in and owned by the lanes until written. Control frames go
  // before every publication lane, are never shed, and count toward the limits.
  // Returns kQueued, or kSlowConsumer (nothing queued, `frame` left untouched) if the
  // queued bytes would exceed hard_bytes — except when no other frame waits to be
  // prepared (the queue is empty or holds only the rest of a frame partly written):
  // then one frame is always accepted, so an Error can still be sent
  // after discard_queued(). It must be a control message (never fragmented); a message
  // without frames is ignored (kQueued).
  EnqueueOutcome enqueue_control(codec::EncodedMessage&& frame, uint64_t now_ms) noexcept;

  // Queues a shared publication's frames for this connection: `frames` =
  // record->encoded(variant, ...), kept alive by `record` (if `record` is null the
  // caller keeps `frames` alive until it is written or cleared). `priority` 0..3;
  // anything else is treated as 3. The same message must not be queued twice at
  // different priorities at once (its fragment ref would be in progress twice).
  //
  // Limits, with soft = min(soft_bytes, hard_bytes) and "droppable" = queued messages of
  // a lane none of whose frames has been prepared (a started message is always sent
  // completely):
  //  - nothing queued at all: accepted whatever its size (kQueued);
  //  - queued + size <= soft: kQueued;
  //  - P3: kShed (a new message never drops one of its own or a higher priority);
  //  - P2: if dropping droppable P3 messages (oldest first) makes it fit under soft,
  //    they are dropped and it is queued; otherwise nothing is dropped and it is shed;
  //  - P0/P1: never dropped. If queued - droppable P2/P3 + size > hard_bytes:
  //    kSlowConsumer, nothing dropped, nothing queued. Otherwise droppable P3, then P2,
  //    messages are dropped oldest first until it fits under soft (or none is left) and
  //    it is queued.
  // Every message dropped or shed counts in counters->shed[its priority]; every
  // accepted one in counters->queued[priority].
  //
  // `collapse` (state channels, whose subscribers want the latest value per key, not
  // every update): when `record` has a non-empty collapse key and a message queued with
  // `collapse` for the same channel and collapse key has not started (none of its frames
  // prepared), that older message is replaced: it is dropped (counted in
  // counters->collapsed[its priority], not as shed) and the new one is queued at the end
  // of its own lane, so offsets within a lane stay increasing and a client resuming from
  // the last offset it saw misses nothing. The limits above are applied as if the older
  // message were already gone; if the new one is refused (kShed, kSlowConsumer) the older
  // one stays queued. Costs one scan of the queued publications (O(queued)).
  EnqueueOutcome enqueue(PublicationPtr record, const codec::EncodedMessage* frames, int priority,
                         uint64_t now_ms, bool collapse = false) noexcept;
  // The same for a publication held by the calling thread (a loop's fan-out): the entry
  // takes a hold of `held` (released when the entry goes) instead of a PublicationPtr.
  EnqueueOutcome enqueue(HeldPublication* held, const codec::EncodedMessage* frames, int priority, uint64_t now_ms,
                         bool collapse = false) noexcept;

  // True while a control frame or a P0 frame waits to be prepared: the connection
  // should write now instead of at the end of the loop iteration. (A frame partly
  // written does not count: the writer is already waiting on the socket.)
  bool urgent() const noexcept;

  // Describes the next bytes to write in up to `max_iov` iovecs and returns how many it
  // filled (0 when empty or max_iov is 0). In order: the unwritten rest of frames
  // already prepared (their sequence numbers are fixed), then new frames: control, P0,
  // then P1..P3 by deficit round robin. New frames are taken whole while the total stays
  // within limits->batch_bytes, and while they fit in the iovecs (header and body take
  // one each); the first frame is always taken, even if larger (with max_iov == 1 only
  // its header is described, the body follows next time). Each new frame gets the next
  // sequence number. The iovecs point into memory owned by the lanes (headers) and by
  // the shared messages (bodies); they are valid until the next call of any non-const
  // function, so write (or copy) them, then report with consumed() (possibly 0).
  // `urgent_only`: new frames are taken from the control and P0 lanes only (the frame
  // partly written still comes first): for a write that must not carry bulk.
  size_t prepare(struct iovec* iov, size_t max_iov, bool urgent_only = false) noexcept;

  // `n` bytes of what the last prepare() described were written (a partial write is
  // fine: the rest stays first in line, in order). Frees finished messages. `n` beyond
  // what is in flight is ignored. `written`: told of every publication
  // completely written by these bytes (message receipts' "sent"), in the order written.
  void consumed(size_t n, uint64_t now_ms, WrittenHook written = {}) noexcept;

  // True when queued bytes are above the soft limit and have been ever since a moment at
  // least soft_ms before `now_ms` (the caller closes with kSlowConsumer). For the
  // caller's timer.
  bool soft_limit_exceeded_too_long(uint64_t now_ms) const noexcept;

  // Wire bytes waiting (headers + bodies), prepared-but-unwritten included.
  size_t queued_bytes() const noexcept { return queued_bytes_; }
  // Frames of lane `lane` (-1 = control, 0..3) not yet completely written (prepared
  // ones included). O(messages in the lane); for tests and diagnostics.
  size_t queued_frames(int lane) const noexcept;
  bool empty() const noexcept { return queued_bytes_ == 0; }

  // The sequence number the next prepared frame gets.
  uint32_t next_sequence() const noexcept { return next_sequence_; }
  // For frames the connection wrote before the lanes existed (or took over).
  void set_next_sequence(uint32_t s) noexcept { next_sequence_ = s; }

  // The counters passed to the constructor (loop-level), or an all-zero instance if none.
  const LaneCounters& counters() const noexcept;

  // Drops every frame not yet written, keeping a frame partly written (it carries its
  // sequence number and its first bytes are on the wire): the stream stays well-formed, so an
  // Error frame queued next (always accepted, see enqueue_control) follows them. For
  // closing with kSlowConsumer. A message cut short this way is discarded by the
  // receiver at end of stream (§7.6). Not counted as shed.
  void discard_queued() noexcept;

  // Unsubscribed from `channel`: drops its publications that have not started, so none
  // follows an UnsubscribeOk queued next (protocol §10.5). A started (fragmented)
  // publication of the channel keeps its remaining frames, moved ahead of every
  // control frame queued after this call. Returns how many were dropped (not counted
  // as shed). O(queued publications).
  size_t discard_channel(std::string_view channel) noexcept;

  // Drops everything, prepared frames included (the socket is gone or the flush deadline
  // passed); empty() afterwards. next_sequence() is unchanged. Not counted as shed.
  void clear() noexcept;

 private:
  struct Entry;
  struct ControlEntry;
  struct PublicationEntry;
  struct Slot;
  struct Lane {
    Entry* head = nullptr;
    Entry* tail = nullptr;
  };
  static constexpr int kLanes = 5;  // index 0 = control, 1 + p = publication priority p

  struct State;

  // enqueue() of a record held by `held`, or else owned by `owned` (which may be null).
  EnqueueOutcome enqueue_publication(PublicationPtr&& owned, HeldPublication* held,
                                     const codec::EncodedMessage* frames, int priority, uint64_t now_ms,
                                     bool collapse) noexcept;
  void push_back(int lane, Entry* e) noexcept;
  Entry* pick(size_t* frame_size, bool urgent_only) noexcept;
  Entry* pick_round_robin(size_t* frame_size) noexcept;
  void advance_round_robin() noexcept;
  void reset_round_robin_if_idle() noexcept;
  void drop_oldest(int lane, size_t incoming, size_t soft) noexcept;
  // The queued, unstarted, collapsible publication of `channel` with `key` (and the
  // entry before it in its lane, or null), or null.
  Entry* find_collapsible(std::string_view channel, std::string_view key, int* lane, Entry** prev) const noexcept;
  void unlink(int lane, Entry* prev, Entry* e) noexcept;
  bool reserve_slot() noexcept;
  Slot& slot(size_t k) const noexcept;
  void release(Entry* e) noexcept;
  void add_queued(size_t n) noexcept;
  void sub_queued(size_t n) noexcept;
  void track_soft(uint64_t now_ms) noexcept;
  size_t soft_limit() const noexcept;
  bool nothing_waiting() const noexcept;
  bool ensure_state() noexcept;        // false if it could not be allocated
  void free_state_if_idle() noexcept;  // once nothing is queued or in flight
  void discard_unprepared() noexcept;  // discard_queued() without freeing the state
  void return_unwritten() noexcept;    // see the class comment: unwritten frames back to their lanes
  void free_ring_if_empty() noexcept;
  void drop_ring() noexcept;  // frees the ring (unless it is the State's own room)
  // Where a publication entry is made and freed (the State's own room, its pool, the heap).
  void* alloc_publication_entry() noexcept;
  void free_publication_entry(void* mem) noexcept;

  const OutputLimits* limits_;
  LaneCounters* counters_;
  State* s_ = nullptr;               // null while nothing is queued
  size_t queued_bytes_ = 0;
  uint32_t next_sequence_ = 0;
};

}  // namespace herald::server
