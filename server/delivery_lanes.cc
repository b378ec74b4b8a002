// DeliveryLanes: intrusive per-lane FIFOs of small nodes, a ring of prepared frame
// headers, shedding and deficit round robin. Sans-IO: no sockets, no clock, no logging.
#include "server/delivery_lanes.h"

#include <algorithm>
#include <limits>
#include <new>
#include <utility>

namespace herald::server {

// A queued message. Lives in its lane's list until its last frame is prepared
// ("detached"), then only the ring slots of its unwritten frames refer to it; it is
// freed when detached and none of its frames is in flight.
struct DeliveryLanes::Entry {
  Entry* next = nullptr;
  const codec::EncodedMessage* frames = nullptr;
  uint32_t next_frame = 0;  // frames [0, next_frame) have been prepared
  uint32_t end_frame = 0;   // frames to send: frame_count(), or next_frame once discarded
  uint32_t in_flight = 0;   // prepared frames not yet completely written
  int8_t lane = 0;          // 0 = control, 1 + priority (a started publication may move to 0)
  bool control = false;     // a ControlEntry (else a PublicationEntry)
  bool collapsible = false; // queued with enqueue(..., collapse = true): a newer one may replace it
  bool held = false;        // a PublicationEntry holding its record through a HeldPublication
};

struct DeliveryLanes::ControlEntry : Entry {
  codec::EncodedMessage message;
};

// Holds its record one of two ways (Entry::held says which): a PublicationPtr of its own,
// or a hold of a loop's HeldPublication, released with the entry. 48 bytes either way.
struct DeliveryLanes::PublicationEntry : Entry {
  PublicationEntry(PublicationPtr&& owned, HeldPublication* h) noexcept {
    if (h != nullptr) {
      h->hold();
      held = true;
      holder = h;
    } else {
      new (&record) PublicationPtr(std::move(owned));
    }
  }
  ~PublicationEntry() {
    if (held) {
      holder->release();
    } else {
      record.~PublicationPtr();
    }
  }
  PublicationEntry(const PublicationEntry&) = delete;
  PublicationEntry& operator=(const PublicationEntry&) = delete;
  const PublicationRecord* get() const noexcept { return held ? holder->get() : record.get(); }
  union {
    PublicationPtr record;
    HeldPublication* holder;
  };
};

// One prepared frame: its header (with its sequence number), how much of it (header
// then body) was written, and the round robin as it was before the frame was picked,
// so that a frame given back (return_unwritten) is picked again exactly as before.
struct DeliveryLanes::Slot {
  Entry* entry;
  uint32_t frame;
  uint32_t written;
  uint8_t header[codec::kHeaderSize];
  uint32_t deficit[3];
  uint8_t rr_lane;
};

namespace {

constexpr uint64_t kNever = std::numeric_limits<uint64_t>::max();
constexpr uint32_t kWeights[3] = {8, 4, 1};  // P1, P2, P3
constexpr uint16_t kFirstRingCap = 8;
constexpr uint16_t kMaxFirstRingCap = 32;  // a prepare() of 64 iovecs takes at most 32 frames
constexpr size_t kMaxRingCap = size_t{1} << 15;  // fits the uint16_t count

// Lanes in internal numbering.
constexpr int kControl = 0;
constexpr int kP0 = 1;
constexpr int kP1 = 2;
constexpr int kP2 = 3;
constexpr int kP3 = 4;

}  // namespace

// Everything an idle connection does not need: allocated when something is queued and
// freed when everything is written (or dropped), so an idle connection pays only for
// the DeliveryLanes object itself. Once kPoolAfter publications are queued at once, the
// next entries come from a pool of kPoolEntries made with one allocation (a broadcast
// queues dozens per connection between two writes; a unicast connection rarely more than
// one), the rest from the heap; the pool is freed with the State, which happens only once
// no entry is left.
struct DeliveryLanes::State {
  static constexpr size_t kPoolEntries = 32;
  static constexpr size_t kPoolBytes = kPoolEntries * sizeof(PublicationEntry);
  static_assert(sizeof(PublicationEntry) <= 48, "a queued publication costs 48 bytes");
  struct FreeEntry {
    FreeEntry* next;
  };
  unsigned char* pool = nullptr;     // kPoolBytes, or null
  FreeEntry* pool_free = nullptr;    // returned pool entries
  uint16_t pool_used = 0;            // pool entries handed out at least once (the rest never were)
  uint32_t heap_entries = 0;         // publication entries on the heap
  static constexpr uint32_t kPoolAfter = 4;  // heap entries queued at once before the pool is made
  Lane lanes[kLanes];
  Slot* ring = nullptr;              // prepared frames in sequence order; null when none
  size_t droppable_bytes[2] = {};    // unstarted messages of P2, P3
  uint64_t soft_since_ms = kNever;   // when queued bytes last went above soft; kNever if not above
  uint32_t deficit[3] = {};          // round robin deficits of P1, P2, P3
  uint16_t ring_head = 0;
  uint16_t ring_count = 0;
  uint16_t ring_cap = 0;             // a power of two (or 0)
  uint8_t rr_lane = 2;               // 0..2 = P1..P3: whose turn it is (2: P1 is next)
  bool first_entry_used = false;
  // The first publication entry and the first two prepared frames have room here (after
  // the fields every call reads): a unicast connection rarely has more queued, and then
  // costs one allocation, not three.
  static constexpr uint16_t kSmallRing = 2;
  alignas(PublicationEntry) unsigned char first_entry[sizeof(PublicationEntry)];
  Slot small_ring[kSmallRing];
};

// The bound every connection pays; see the class comment. On LP64: pointers 24, byte
// count 8, sequence 4, padding 4.
static_assert(sizeof(DeliveryLanes) <= DeliveryLanes::kMaxSize, "DeliveryLanes grew: it is paid per connection");

namespace {

size_t frame_size(const codec::EncodedMessage* m, uint32_t i) noexcept { return codec::kHeaderSize + m->body(i).size(); }

}  // namespace

DeliveryLanes::DeliveryLanes(const OutputLimits* limits, LaneCounters* counters) noexcept
    : limits_(limits), counters_(counters) {}

bool DeliveryLanes::ensure_state() noexcept {
  if (s_ == nullptr) s_ = new (std::nothrow) State;
  return s_ != nullptr;
}

void DeliveryLanes::free_state_if_idle() noexcept {
  if (s_ == nullptr || queued_bytes_ != 0 || s_->ring_count != 0 || !nothing_waiting()) return;
  drop_ring();
  delete[] s_->pool;
  delete s_;
  s_ = nullptr;
}

DeliveryLanes::~DeliveryLanes() { clear(); }

const LaneCounters& DeliveryLanes::counters() const noexcept {
  static const LaneCounters kNone;
  return counters_ != nullptr ? *counters_ : kNone;
}

size_t DeliveryLanes::soft_limit() const noexcept { return std::min(limits_->soft_bytes, limits_->hard_bytes); }

bool DeliveryLanes::nothing_waiting() const noexcept {
  if (s_ == nullptr) return true;
  for (const Lane& l : s_->lanes) {
    if (l.head != nullptr) return false;
  }
  return true;
}

void DeliveryLanes::track_soft(uint64_t now_ms) noexcept {
  if (s_ == nullptr) return;  // nothing queued
  if (queued_bytes_ <= soft_limit()) {
    s_->soft_since_ms = kNever;
  } else if (s_->soft_since_ms == kNever) {
    s_->soft_since_ms = now_ms;
  }
}

void DeliveryLanes::push_back(int lane, Entry* e) noexcept {
  Lane& l = s_->lanes[lane];
  e->next = nullptr;
  if (l.tail != nullptr) {
    l.tail->next = e;
  } else {
    l.head = e;
  }
  l.tail = e;
}

void DeliveryLanes::add_queued(size_t n) noexcept {
  queued_bytes_ += n;
  if (counters_ != nullptr) counters_->queued_bytes += static_cast<int64_t>(n);
}

void DeliveryLanes::sub_queued(size_t n) noexcept {
  queued_bytes_ -= n;
  if (counters_ != nullptr) counters_->queued_bytes -= static_cast<int64_t>(n);
}

void DeliveryLanes::release(Entry* e) noexcept {
  if (e->control) {
    delete static_cast<ControlEntry*>(e);
  } else {
    auto* p = static_cast<PublicationEntry*>(e);
    p->~PublicationEntry();
    free_publication_entry(p);
  }
}

void* DeliveryLanes::alloc_publication_entry() noexcept {
  State& s = *s_;
  if (!s.first_entry_used) {
    s.first_entry_used = true;
    return s.first_entry;
  }
  if (s.pool_free != nullptr) {
    State::FreeEntry* f = s.pool_free;
    s.pool_free = f->next;
    return f;
  }
  if (s.pool == nullptr && s.heap_entries >= State::kPoolAfter) s.pool = new (std::nothrow) unsigned char[State::kPoolBytes];
  if (s.pool != nullptr && s.pool_used < State::kPoolEntries) return s.pool + sizeof(PublicationEntry) * s.pool_used++;
  void* mem = ::operator new(sizeof(PublicationEntry), std::nothrow);
  if (mem != nullptr) ++s.heap_entries;
  return mem;
}

void DeliveryLanes::free_publication_entry(void* mem) noexcept {
  State& s = *s_;
  auto* raw = static_cast<unsigned char*>(mem);
  if (raw == s.first_entry) {
    s.first_entry_used = false;
  } else if (s.pool != nullptr && raw >= s.pool && raw < s.pool + State::kPoolBytes) {
    auto* f = static_cast<State::FreeEntry*>(mem);
    f->next = s.pool_free;
    s.pool_free = f;
  } else {
    ::operator delete(mem);
    --s.heap_entries;
  }
}

EnqueueOutcome DeliveryLanes::enqueue_control(codec::EncodedMessage&& frame, uint64_t now_ms) noexcept {
  if (frame.frame_count() == 0) return EnqueueOutcome::kQueued;
  const size_t size = frame.wire_size();
  // With nothing waiting, at most one batch of prepared frames is ahead: let one frame
  // (an Error) through so the client learns why it is closed.
  if (queued_bytes_ + size > limits_->hard_bytes && !nothing_waiting()) return EnqueueOutcome::kSlowConsumer;
  if (!ensure_state()) return EnqueueOutcome::kSlowConsumer;
  return_unwritten();  // it goes before them
  auto* e = new (std::nothrow) ControlEntry;
  if (e == nullptr) return EnqueueOutcome::kSlowConsumer;
  e->message = std::move(frame);
  e->frames = &e->message;
  e->end_frame = static_cast<uint32_t>(e->message.frame_count());
  e->lane = kControl;
  e->control = true;
  push_back(kControl, e);
  add_queued(size);
  track_soft(now_ms);
  return EnqueueOutcome::kQueued;
}

void DeliveryLanes::drop_oldest(int lane, size_t incoming, size_t soft) noexcept {
  Lane& l = s_->lanes[lane];
  Entry* prev = nullptr;
  Entry* e = l.head;
  // Only the head can have started; it is sent completely.
  if (e != nullptr && e->next_frame > 0) {
    prev = e;
    e = e->next;
  }
  while (e != nullptr && queued_bytes_ + incoming > soft) {
    Entry* next = e->next;
    if (prev != nullptr) {
      prev->next = next;
    } else {
      l.head = next;
    }
    if (l.tail == e) l.tail = prev;
    const size_t w = e->frames->wire_size();
    sub_queued(w);
    s_->droppable_bytes[lane - kP2] -= w;
    if (counters_ != nullptr) ++counters_->shed[lane - kP0];
    release(e);
    e = next;
  }
}

DeliveryLanes::Entry* DeliveryLanes::find_collapsible(std::string_view channel, std::string_view key, int* lane,
                                                      Entry** prev) const noexcept {
  if (s_ == nullptr) return nullptr;
  for (int l = kP0; l <= kP3; ++l) {
    Entry* before = nullptr;
    for (Entry* e = s_->lanes[l].head; e != nullptr; before = e, e = e->next) {
      if (!e->collapsible || e->next_frame != 0) continue;
      const PublicationRecord* r = static_cast<PublicationEntry*>(e)->get();
      if (r != nullptr && r->publication().collapse_key() == key && r->channel() == channel) {
        *lane = l;
        *prev = before;
        return e;
      }
    }
  }
  return nullptr;
}

void DeliveryLanes::unlink(int lane, Entry* prev, Entry* e) noexcept {
  Lane& l = s_->lanes[lane];
  if (prev != nullptr) {
    prev->next = e->next;
  } else {
    l.head = e->next;
  }
  if (l.tail == e) l.tail = prev;
  e->next = nullptr;
}

EnqueueOutcome DeliveryLanes::enqueue(PublicationPtr record, const codec::EncodedMessage* frames, int priority,
                                      uint64_t now_ms, bool collapse) noexcept {
  return enqueue_publication(std::move(record), nullptr, frames, priority, now_ms, collapse);
}

EnqueueOutcome DeliveryLanes::enqueue(HeldPublication* held, const codec::EncodedMessage* frames, int priority,
                                      uint64_t now_ms, bool collapse) noexcept {
  return enqueue_publication(nullptr, held, frames, priority, now_ms, collapse);
}

EnqueueOutcome DeliveryLanes::enqueue_publication(PublicationPtr&& owned, HeldPublication* held,
                                                  const codec::EncodedMessage* frames, int priority, uint64_t now_ms,
                                                  bool collapse) noexcept {
  const PublicationRecord* record = held != nullptr ? held->get() : owned.get();
  if (frames == nullptr || frames->frame_count() == 0) return EnqueueOutcome::kQueued;
  if (priority < 0 || priority > 3) priority = 3;
  const int lane = kP0 + priority;
  const size_t size = frames->wire_size();
  const size_t soft = soft_limit();
  // A P0 goes before prepared frames nothing of which was written (and may shed them).
  if (priority == 0) return_unwritten();

  // A state channel's older, unstarted value of the same key goes when this one is queued.
  collapse = collapse && record != nullptr && !record->publication().collapse_key().empty();
  int old_lane = 0;
  Entry* old_prev = nullptr;
  Entry* old = collapse ? find_collapsible(record->channel(), record->publication().collapse_key(), &old_lane, &old_prev)
                        : nullptr;
  // Limits as if `old` were gone already.
  const size_t freed = old != nullptr ? old->frames->wire_size() : 0;
  const size_t queued = queued_bytes_ - freed;
  size_t droppable_p2 = s_ != nullptr ? s_->droppable_bytes[0] : 0;
  size_t droppable_p3 = s_ != nullptr ? s_->droppable_bytes[1] : 0;
  if (old_lane == kP2) droppable_p2 -= freed;
  if (old_lane == kP3) droppable_p3 -= freed;

  const bool over_soft = queued != 0 && queued + size > soft;
  if (over_soft) {
    // Decide before dropping anything, so nothing is dropped for a message that is
    // refused anyway.
    if (priority == 3 || (priority == 2 && queued - droppable_p3 + size > soft)) {
      if (counters_ != nullptr) ++counters_->shed[priority];
      return EnqueueOutcome::kShed;
    }
    if (priority <= 1 && queued - droppable_p2 - droppable_p3 + size > limits_->hard_bytes) {
      return EnqueueOutcome::kSlowConsumer;
    }
  }
  if (!ensure_state()) return EnqueueOutcome::kSlowConsumer;
  void* mem = alloc_publication_entry();
  if (mem == nullptr) return EnqueueOutcome::kSlowConsumer;
  auto* e = new (mem) PublicationEntry(std::move(owned), held);
  e->frames = frames;
  e->end_frame = static_cast<uint32_t>(frames->frame_count());
  e->lane = static_cast<int8_t>(lane);
  e->collapsible = collapse;
  if (old != nullptr) {
    unlink(old_lane, old_prev, old);
    sub_queued(freed);
    if (old_lane >= kP2) s_->droppable_bytes[old_lane - kP2] -= freed;
    if (counters_ != nullptr) ++counters_->collapsed[old_lane - kP0];
    release(old);
    if (old_lane >= kP1) reset_round_robin_if_idle();
  }
  if (over_soft) {
    drop_oldest(kP3, size, soft);
    if (priority <= 1) drop_oldest(kP2, size, soft);
  }
  push_back(lane, e);
  add_queued(size);
  if (lane >= kP2) s_->droppable_bytes[lane - kP2] += size;
  if (counters_ != nullptr) ++counters_->queued[priority];
  track_soft(now_ms);
  return EnqueueOutcome::kQueued;
}

bool DeliveryLanes::urgent() const noexcept {
  return s_ != nullptr && (s_->lanes[kControl].head != nullptr || s_->lanes[kP0].head != nullptr);
}

DeliveryLanes::Slot& DeliveryLanes::slot(size_t k) const noexcept {
  return s_->ring[(s_->ring_head + k) & (s_->ring_cap - 1u)];
}

bool DeliveryLanes::reserve_slot() noexcept {
  if (s_->ring_count < s_->ring_cap) return true;
  // The first ring is sized for what is queued (about one frame per 128 bytes, at most a
  // full batch of kMaxFirstRingCap frames), so a batch of small frames does not grow it
  // two or three times over.
  size_t cap = kFirstRingCap;
  if (s_->ring_cap != 0) {
    cap = std::max<size_t>(size_t{s_->ring_cap} * 2, kFirstRingCap);
  } else {
    const size_t frames = (queued_bytes_ + 127) / 128;
    if (frames <= State::kSmallRing) {
      s_->ring = s_->small_ring;  // one or two small frames: the State's own room
      s_->ring_head = 0;
      s_->ring_cap = State::kSmallRing;
      return true;
    }
    while (cap < kMaxFirstRingCap && cap < frames) cap *= 2;
  }
  if (cap > kMaxRingCap) return false;
  Slot* r = new (std::nothrow) Slot[cap];
  if (r == nullptr) return false;
  for (size_t k = 0; k < s_->ring_count; ++k) r[k] = slot(k);
  if (s_->ring != s_->small_ring) delete[] s_->ring;
  s_->ring = r;
  s_->ring_head = 0;
  s_->ring_cap = static_cast<uint16_t>(cap);
  return true;
}

void DeliveryLanes::reset_round_robin_if_idle() noexcept {
  // An idle lane keeps no credit (classic DRR); once all three are idle the next
  // round starts fresh with P1, so a lone burst is sent in priority order.
  if (s_->lanes[kP1].head != nullptr || s_->lanes[kP2].head != nullptr || s_->lanes[kP3].head != nullptr) {
    for (int i = 0; i < 3; ++i) {
      if (s_->lanes[kP1 + i].head == nullptr) s_->deficit[i] = 0;
    }
    return;
  }
  s_->deficit[0] = s_->deficit[1] = s_->deficit[2] = 0;
  s_->rr_lane = 2;
}

void DeliveryLanes::advance_round_robin() noexcept {
  s_->rr_lane = static_cast<uint8_t>(s_->rr_lane == 2 ? 0 : s_->rr_lane + 1);
  if (s_->lanes[kP1 + s_->rr_lane].head != nullptr) {
    s_->deficit[s_->rr_lane] += kQuantum * kWeights[s_->rr_lane];
  } else {
    s_->deficit[s_->rr_lane] = 0;  // an idle lane saves no credit
  }
}

DeliveryLanes::Entry* DeliveryLanes::pick_round_robin(size_t* size) noexcept {
  if (s_->lanes[kP1].head == nullptr && s_->lanes[kP2].head == nullptr && s_->lanes[kP3].head == nullptr) return nullptr;
  int visited = 0;
  for (;;) {
    Entry* e = s_->lanes[kP1 + s_->rr_lane].head;
    if (e == nullptr) {
      s_->deficit[s_->rr_lane] = 0;
    } else {
      const size_t s = frame_size(e->frames, e->next_frame);
      if (s <= s_->deficit[s_->rr_lane]) {
        *size = s;
        return e;  // the deficit is spent when the frame is actually prepared
      }
    }
    if (++visited == 3) {
      // A whole round without a frame small enough (frames bigger than a quantum):
      // skip the rounds in which nobody could send, as if they had been run.
      uint64_t rounds = std::numeric_limits<uint64_t>::max();
      for (int i = 0; i < 3; ++i) {
        const Entry* h = s_->lanes[kP1 + i].head;
        if (h == nullptr) continue;
        const uint64_t need = frame_size(h->frames, h->next_frame) - s_->deficit[i];
        const uint64_t q = uint64_t{kQuantum} * kWeights[i];
        rounds = std::min(rounds, (need + q - 1) / q);
      }
      for (int i = 0; i < 3; ++i) {
        if (s_->lanes[kP1 + i].head != nullptr) {
          s_->deficit[i] += static_cast<uint32_t>((rounds - 1) * kQuantum * kWeights[i]);
        }
      }
      visited = 0;
    }
    advance_round_robin();
  }
}

DeliveryLanes::Entry* DeliveryLanes::pick(size_t* size, bool urgent_only) noexcept {
  for (int lane : {kControl, kP0}) {
    if (Entry* e = s_->lanes[lane].head) {
      *size = frame_size(e->frames, e->next_frame);
      return e;
    }
  }
  return urgent_only ? nullptr : pick_round_robin(size);
}

size_t DeliveryLanes::prepare(struct iovec* iov, size_t max_iov, bool urgent_only) noexcept {
  if (iov == nullptr || max_iov == 0 || s_ == nullptr) return 0;
  // Pass 1: count what the already prepared frames still need, then prepare new ones
  // into the ring. The iovecs are filled only afterwards, because growing the ring
  // moves the headers.
  size_t pieces = 0;
  size_t bytes = 0;
  for (size_t k = 0; k < s_->ring_count; ++k) {
    const Slot& s = slot(k);
    const size_t size = frame_size(s.entry->frames, s.frame);
    pieces += (s.written < codec::kHeaderSize ? 1 : 0) + (size > std::max<size_t>(s.written, codec::kHeaderSize) ? 1 : 0);
    bytes += size - s.written;
  }
  const size_t batch = limits_->batch_bytes;
  while (pieces < max_iov) {
    uint32_t deficit[3] = {s_->deficit[0], s_->deficit[1], s_->deficit[2]};
    const uint8_t rr_lane = s_->rr_lane;
    size_t size = 0;
    Entry* e = pick(&size, urgent_only);
    if (e == nullptr) break;
    if (bytes > 0 && bytes + size > batch) break;
    const size_t need = size > codec::kHeaderSize ? 2 : 1;
    if (pieces > 0 && pieces + need > max_iov) break;
    if (!reserve_slot()) break;
    Slot& s = slot(s_->ring_count++);
    s.entry = e;
    s.frame = e->next_frame;
    s.written = 0;
    std::copy(deficit, deficit + 3, s.deficit);
    s.rr_lane = rr_lane;
    e->frames->write_header(e->next_frame, next_sequence_++, s.header);
    if (e->next_frame == 0 && e->lane >= kP2) s_->droppable_bytes[e->lane - kP2] -= e->frames->wire_size();
    ++e->next_frame;
    ++e->in_flight;
    if (e->lane >= kP1) s_->deficit[e->lane - kP1] -= static_cast<uint32_t>(size);
    if (e->next_frame == e->end_frame) {
      // Detach: the next message of this lane may start; the slots keep this one alive.
      Lane& l = s_->lanes[e->lane];
      l.head = e->next;
      if (l.head == nullptr) {
        l.tail = nullptr;
        if (e->lane >= kP1) reset_round_robin_if_idle();
      }
      e->next = nullptr;
    }
    pieces += need;
    bytes += size;
  }
  // Pass 2: describe the ring in order.
  size_t n = 0;
  for (size_t k = 0; k < s_->ring_count && n < max_iov; ++k) {
    Slot& s = slot(k);
    if (s.written < codec::kHeaderSize) {
      iov[n].iov_base = s.header + s.written;
      iov[n].iov_len = codec::kHeaderSize - s.written;
      if (++n == max_iov) break;
    }
    const auto body = s.entry->frames->body(s.frame);
    const size_t off = s.written > codec::kHeaderSize ? s.written - codec::kHeaderSize : 0;
    if (off < body.size()) {
      // writev never writes through iov_base; the shared body stays immutable.
      iov[n].iov_base = const_cast<uint8_t*>(body.data() + off);
      iov[n].iov_len = body.size() - off;
      ++n;
    }
  }
  return n;
}

void DeliveryLanes::consumed(size_t n, uint64_t now_ms, WrittenHook written) noexcept {
  if (s_ == nullptr) return;
  size_t left = n;
  while (left > 0 && s_->ring_count > 0) {
    Slot& s = slot(0);
    const size_t rest = frame_size(s.entry->frames, s.frame) - s.written;
    if (left < rest) {
      s.written += static_cast<uint32_t>(left);
      left = 0;
      break;
    }
    left -= rest;
    Entry* e = s.entry;
    s_->ring_head = static_cast<uint16_t>((s_->ring_head + 1u) & (s_->ring_cap - 1u));
    --s_->ring_count;
    if (counters_ != nullptr) {
      ++counters_->frames_out;
      // The type field (bytes 6-7 of the header) without its flag bits.
      const auto type = static_cast<codec::FrameType>(((s.header[6] << 8) | s.header[7]) & codec::kTypeMask);
      counters_->out.add(type, frame_size(e->frames, s.frame));
    }
    if (--e->in_flight == 0 && e->next_frame == e->end_frame) {
      if (written.fn != nullptr && !e->control) {
        const PublicationRecord* r = static_cast<PublicationEntry*>(e)->get();
        if (r != nullptr) written.fn(written.ctx, *r);
      }
      release(e);
    }
  }
  const size_t done = n - left;
  sub_queued(done);
  if (counters_ != nullptr) counters_->bytes_out += done;
  free_ring_if_empty();
  track_soft(now_ms);
  free_state_if_idle();
}

void DeliveryLanes::return_unwritten() noexcept {
  if (s_ == nullptr) return;
  // Only the first slot can be partly written (writes go in ring order), so every slot
  // behind it with nothing written leaves the ring, last first: the sequence numbers
  // handed out stay contiguous, and each message goes back to the head of its lane in
  // the order it was prepared.
  while (s_->ring_count > 0) {
    Slot& s = slot(s_->ring_count - 1u);
    if (s.written != 0) break;
    Entry* e = s.entry;
    --s_->ring_count;
    --next_sequence_;
    --e->in_flight;
    const bool detached = e->next_frame == e->end_frame;
    --e->next_frame;
    if (detached) {
      // Its lane's head was the next message after it, never started since (its frames
      // would be behind this one in the ring, and were returned first).
      Lane& l = s_->lanes[e->lane];
      e->next = l.head;
      l.head = e;
      if (l.tail == nullptr) l.tail = e;
    }
    if (e->next_frame == 0 && e->lane >= kP2) s_->droppable_bytes[e->lane - kP2] += e->frames->wire_size();
    std::copy(s.deficit, s.deficit + 3, s_->deficit);
    s_->rr_lane = s.rr_lane;
  }
  free_ring_if_empty();
}

void DeliveryLanes::drop_ring() noexcept {
  if (s_->ring != s_->small_ring) delete[] s_->ring;
  s_->ring = nullptr;
  s_->ring_cap = 0;
  s_->ring_head = 0;
}

void DeliveryLanes::free_ring_if_empty() noexcept {
  if (s_->ring_count != 0 || s_->ring == nullptr) return;
  drop_ring();
}

bool DeliveryLanes::soft_limit_exceeded_too_long(uint64_t now_ms) const noexcept {
  if (s_ == nullptr) return false;
  if (queued_bytes_ <= soft_limit() || s_->soft_since_ms == kNever || now_ms < s_->soft_since_ms) return false;
  return now_ms - s_->soft_since_ms >= limits_->soft_ms;
}

size_t DeliveryLanes::queued_frames(int lane) const noexcept {
  if (lane < -1 || lane > 3 || s_ == nullptr) return 0;
  const int l = lane + 1;
  size_t n = 0;
  for (const Entry* e = s_->lanes[l].head; e != nullptr; e = e->next) n += e->end_frame - e->next_frame;
  for (size_t k = 0; k < s_->ring_count; ++k) {
    if (slot(k).entry->lane == l) ++n;
  }
  return n;
}

size_t DeliveryLanes::discard_channel(std::string_view channel) noexcept {
  if (s_ == nullptr) return 0;
  return_unwritten();  // prepared but unwritten messages of the channel are dropped too
  size_t dropped = 0;
  for (int lane = kP0; lane <= kP3; ++lane) {
    Lane& l = s_->lanes[lane];
    Entry* prev = nullptr;
    for (Entry* e = l.head; e != nullptr;) {
      Entry* next = e->next;
      const PublicationRecord* r = static_cast<PublicationEntry*>(e)->get();
      if (r == nullptr || r->channel() != channel) {
        prev = e;
        e = next;
        continue;
      }
      // Unlink it from its lane.
      if (prev != nullptr) {
        prev->next = next;
      } else {
        l.head = next;
      }
      if (l.tail == e) l.tail = prev;
      e->next = nullptr;
      if (e->next_frame > 0) {
        // Started (only a lane's head can be): its last fragments must still go out, or
        // the client would hold a message that never completes. They move to the front
        // of the control lane, ahead of the UnsubscribeOk the caller queues next.
        e->lane = kControl;
        Lane& c = s_->lanes[kControl];
        e->next = c.head;
        c.head = e;
        if (c.tail == nullptr) c.tail = e;
      } else {
        const size_t w = e->frames->wire_size();
        sub_queued(w);
        if (lane >= kP2) s_->droppable_bytes[lane - kP2] -= w;
        release(e);
        ++dropped;
      }
      e = next;
    }
  }
  reset_round_robin_if_idle();
  if (queued_bytes_ <= soft_limit()) s_->soft_since_ms = kNever;
  free_state_if_idle();
  return dropped;
}

void DeliveryLanes::discard_queued() noexcept {
  discard_unprepared();
  free_state_if_idle();
}

void DeliveryLanes::discard_unprepared() noexcept {
  if (s_ == nullptr) return;
  return_unwritten();  // only a frame already partly written must still go out
  for (Lane& l : s_->lanes) {
    for (Entry* e = l.head; e != nullptr;) {
      Entry* next = e->next;
      for (uint32_t i = e->next_frame; i < e->end_frame; ++i) sub_queued(frame_size(e->frames, i));
      e->end_frame = e->next_frame;
      e->next = nullptr;
      // A started message with frames in flight lives on in the ring until they are written.
      if (e->in_flight == 0) release(e);
      e = next;
    }
    l = Lane{};
  }
  s_->droppable_bytes[0] = s_->droppable_bytes[1] = 0;
  reset_round_robin_if_idle();
  if (queued_bytes_ <= soft_limit()) s_->soft_since_ms = kNever;
}

void DeliveryLanes::clear() noexcept {
  if (s_ == nullptr) return;
  discard_unprepared();
  // Every entry is detached now; each goes with the last slot that refers to it.
  for (size_t k = 0; k < s_->ring_count; ++k) {
    Entry* e = slot(k).entry;
    if (--e->in_flight == 0) release(e);
  }
  drop_ring();
  s_->ring_count = 0;
  sub_queued(queued_bytes_);
  s_->soft_since_ms = kNever;
  free_state_if_idle();
}

}  // namespace herald::server
