// CRC32C: a CPU-instruction path (SSE4.2 on x86-64, ARMv8 CRC on AArch64) and a portable
// slicing-by-8 fallback. Every table is built at compile time; nothing here allocates.
#include "codec/checksum.h"

#include <array>
#include <bit>
#include <cstddef>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define HERALD_CRC32C_X86 1
// Only the functions below get SSE4.2, so the build does not need -msse4.2 and the
// binary still runs (on the software path) on CPUs without it.
#define HERALD_CRC32C_TARGET __attribute__((target("sse4.2")))
#elif defined(__aarch64__) && defined(__ARM_FEATURE_CRC32)
#include <arm_acle.h>
#define HERALD_CRC32C_ARM 1
// The build already targets the CRC extension (e.g. -march=armv8.1-a), so no attribute
// and no run-time check are needed.
#define HERALD_CRC32C_TARGET
#endif

namespace herald::codec {
namespace {

// 0x1EDC6F41 bit-reversed. In the reflected form used throughout, bit 31 of a uint32_t
// is the coefficient of x^0 and bit 0 that of x^31.
constexpr uint32_t kPolynomial = 0x82F63B78;

// p(x) * x mod P(x).
constexpr uint32_t times_x(uint32_t p) {
  return (p >> 1) ^ ((p & 1) != 0 ? kPolynomial : 0);
}

// a(x) * b(x) mod P(x), bit by bit (compile time only).
constexpr uint32_t multiply(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (int i = 0; i < 32; ++i) {  // b holds b(x) * x^i here
    if ((a & (0x80000000u >> i)) != 0) product ^= b;
    b = times_x(b);
  }
  return product;
}

// Slicing-by-8 tables: kTables[k][b] is the CRC register after feeding byte b followed by
// k zero bytes into a zero register, so eight table lookups advance the CRC by 8 bytes.
using Table = std::array<uint32_t, 256>;
constexpr std::array<Table, 8> kTables = [] {
  std::array<Table, 8> t{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t crc = b;
    for (int bit = 0; bit < 8; ++bit) crc = times_x(crc);
    t[0][b] = crc;
  }
  for (size_t k = 1; k < 8; ++k) {
    for (size_t b = 0; b < 256; ++b) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xFF];
  }
  return t;
}();

inline uint64_t load_le64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);  // unaligned-safe; compiles to one load
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
  return v;
}

// `state` is the raw CRC register (already inverted); returns the register after `data`.
uint32_t software_update(const uint8_t* p, size_t n, uint32_t state) {
  const auto& t = kTables;
  for (; n >= 8; p += 8, n -= 8) {
    const uint64_t w = load_le64(p) ^ state;
    state = t[7][w & 0xFF] ^ t[6][(w >> 8) & 0xFF] ^ t[5][(w >> 16) & 0xFF] ^
            t[4][(w >> 24) & 0xFF] ^ t[3][(w >> 32) & 0xFF] ^ t[2][(w >> 40) & 0xFF] ^
            t[1][(w >> 48) & 0xFF] ^ t[0][w >> 56];
  }
  for (; n > 0; ++p, --n) state = (state >> 8) ^ t[0][(state ^ *p) & 0xFF];
  return state;
}

#if defined(HERALD_CRC32C_TARGET)

// Why interleave: the CRC32 instruction has a latency of ~3 cycles but a throughput of
// one per cycle, so one dependent chain runs at a third of the possible speed. We split a
// block into three equal stripes A|B|C, run three independent chains (A from the incoming
// register, B and C from zero), and join them with CRC linearity:
//   crc(A|B|C, s) = shift(shift(crc(A, s), |B|) ^ crc(B, 0), |C|) ^ crc(C, 0)
// where shift(r, n) = r * x^(8n) mod P is "feed n zero bytes". For a fixed n that is a
// linear map of the 32-bit register, so it is four 256-entry table lookups (one per byte
// of r), tables computed at compile time. This avoids a PCLMUL dependency and costs two
// lookups-and-xors per block, which is small next to the stripe work.
struct ShiftTable {
  std::array<Table, 4> t;
  uint32_t apply(uint32_t r) const noexcept {
    return t[0][r & 0xFF] ^ t[1][(r >> 8) & 0xFF] ^ t[2][(r >> 16) & 0xFF] ^ t[3][r >> 24];
  }
};

constexpr ShiftTable make_shift_table(size_t bytes) {
  uint32_t x_pow = 0x80000000u;  // x^0
  for (size_t i = 0; i < 8 * bytes; ++i) x_pow = times_x(x_pow);
  ShiftTable s{};
  for (uint32_t b = 0; b < 256; ++b) {
    for (uint32_t k = 0; k < 4; ++k) s.t[k][b] = multiply(b << (8 * k), x_pow);
  }
  return s;
}

// Stripe lengths (bytes, multiples of 8). The long one amortises the join on big buffers;
// the short ones keep 1 KiB frames (the common case) mostly on three chains.
constexpr size_t kLongStripe = 1024;
constexpr size_t kMediumStripe = 128;
constexpr size_t kShortStripe = 32;
constexpr ShiftTable kShiftLong = make_shift_table(kLongStripe);
constexpr ShiftTable kShiftMedium = make_shift_table(kMediumStripe);
constexpr ShiftTable kShiftShort = make_shift_table(kShortStripe);

#if defined(HERALD_CRC32C_X86)
HERALD_CRC32C_TARGET inline uint32_t hw_step64(uint32_t state, uint64_t v) {
  return static_cast<uint32_t>(_mm_crc32_u64(state, v));
}
HERALD_CRC32C_TARGET inline uint32_t hw_step8(uint32_t state, uint8_t v) {
  return _mm_crc32_u8(state, v);
}
#else
inline uint32_t hw_step64(uint32_t state, uint64_t v) { return __crc32cd(state, v); }
inline uint32_t hw_step8(uint32_t state, uint8_t v) { return __crc32cb(state, v); }
#endif

// Consumes as many whole 3 * kStripe blocks as fit.
template <size_t kStripe>
HERALD_CRC32C_TARGET inline uint32_t hw_blocks(const uint8_t*& p, size_t& n, uint32_t state,
                                               const ShiftTable& shift) {
  for (; n >= 3 * kStripe; p += 3 * kStripe, n -= 3 * kStripe) {
    uint32_t a = state, b = 0, c = 0;
    for (size_t i = 0; i < kStripe; i += 8) {
      a = hw_step64(a, load_le64(p + i));
      b = hw_step64(b, load_le64(p + kStripe + i));
      c = hw_step64(c, load_le64(p + 2 * kStripe + i));
    }
    state = shift.apply(shift.apply(a) ^ b) ^ c;
  }
  return state;
}

HERALD_CRC32C_TARGET uint32_t hardware_update(const uint8_t* p, size_t n, uint32_t state) {
  state = hw_blocks<kLongStripe>(p, n, state, kShiftLong);
  state = hw_blocks<kMediumStripe>(p, n, state, kShiftMedium);
  state = hw_blocks<kShortStripe>(p, n, state, kShiftShort);
  for (; n >= 8; p += 8, n -= 8) state = hw_step64(state, load_le64(p));
  for (; n > 0; ++p, --n) state = hw_step8(state, *p);
  return state;
}

bool detect_hardware() noexcept {
#if defined(HERALD_CRC32C_X86)
  // Required when this may run before libgcc's own constructor (static initialisers).
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2");
#else
  return true;
#endif
}

#endif  // HERALD_CRC32C_TARGET

}  // namespace

bool crc32c_hardware() noexcept {
#if defined(HERALD_CRC32C_TARGET)
  static const bool hardware = detect_hardware();
  return hardware;
#else
  return false;
#endif
}

uint32_t crc32c(std::span<const uint8_t> data, uint32_t crc) noexcept {
#if defined(HERALD_CRC32C_TARGET)
  if (crc32c_hardware()) return ~hardware_update(data.data(), data.size(), ~crc);
#endif
  return ~software_update(data.data(), data.size(), ~crc);
}

uint32_t crc32c_software(std::span<const uint8_t> data, uint32_t crc) noexcept {
  return ~software_update(data.data(), data.size(), ~crc);
}

}  // namespace herald::codec
