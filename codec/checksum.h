// CRC32C (Castagnoli) over byte spans: the frame body checksum of docs/protocol.md §5.
// Pure functions: no allocation, no state beyond constant tables; any thread may call.
#pragma once

#include <cstdint>
#include <span>

namespace herald::codec {

// CRC32C (Castagnoli polynomial 0x1EDC6F41, reflected, initial value and final xor
// 0xFFFFFFFF): the standard one used by iSCSI, ext4 and SCTP.
// Returns the checksum of `data`. `crc` is a previous result to extend, so that
// crc32c(b, crc32c(a)) == crc32c(a || b); the default 0 starts a new checksum.
// crc32c of the ASCII bytes "123456789" is 0xE3069283.
// Uses the CPU's CRC32C instruction when crc32c_hardware() is true, else crc32c_software().
uint32_t crc32c(std::span<const uint8_t> data, uint32_t crc = 0) noexcept;

// True when crc32c() uses a CPU instruction: SSE4.2 on x86-64 (detected at run time), or
// the ARMv8 CRC extension on AArch64 (when the build targets it, e.g. -march=armv8.1-a).
bool crc32c_hardware() noexcept;

// The portable table-driven implementation (slicing-by-8), same contract as crc32c().
// crc32c() falls back to it; exposed so tests and benchmarks can compare the two paths.
uint32_t crc32c_software(std::span<const uint8_t> data, uint32_t crc = 0) noexcept;

}  // namespace herald::codec
