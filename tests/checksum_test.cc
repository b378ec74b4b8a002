// CRC32C: known vectors, the extend property, hardware == software, and a cross-check
// against an independent implementation (Python's crc32c module, Debian python3-crc32c).
#include "codec/checksum.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace herald::codec {
namespace {

std::span<const uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

// Bit-at-a-time reference, written straight from the definition; slow but obvious.
uint32_t crc32c_bitwise(std::span<const uint8_t> data) {
  uint32_t crc = 0xFFFFFFFF;
  for (uint8_t byte : data) {
    crc ^= byte;
    for (int i = 0; i < 8; ++i) crc = (crc >> 1) ^ ((crc & 1) != 0 ? 0x82F63B78u : 0);
  }
  return ~crc;
}

TEST(Crc32c, KnownVectors) {
  // RFC 3720 (iSCSI) appendix B.4 and the usual "check" value.
  std::array<uint8_t, 32> zeros{};
  std::array<uint8_t, 32> ones{};
  ones.fill(0xFF);
  std::array<uint8_t, 32> ascending{};
  std::iota(ascending.begin(), ascending.end(), uint8_t{0});
  std::array<uint8_t, 32> descending{};
  for (size_t i = 0; i < descending.size(); ++i) descending[i] = static_cast<uint8_t>(31 - i);

  for (auto* f : {&crc32c, &crc32c_software}) {
    EXPECT_EQ(f(bytes_of("123456789"), 0), 0xE3069283u);
    EXPECT_EQ(f(zeros, 0), 0x8A9136AAu);
    EXPECT_EQ(f(ones, 0), 0x62A8AB43u);
    EXPECT_EQ(f(ascending, 0), 0x46DD794Eu);
    EXPECT_EQ(f(descending, 0), 0x113FDB5Cu);
    EXPECT_EQ(f({}, 0), 0u);
    EXPECT_EQ(f(bytes_of("a"), 0), 0xC1D04330u);
  }
  EXPECT_EQ(crc32c_bitwise(bytes_of("123456789")), 0xE3069283u);
}

TEST(Crc32c, DefaultArgumentStartsANewChecksum) {
  EXPECT_EQ(crc32c(bytes_of("123456789")), 0xE3069283u);
  EXPECT_EQ(crc32c_software(bytes_of("123456789")), 0xE3069283u);
}

TEST(Crc32c, HardwarePathIsUsedWhereAvailable) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  EXPECT_EQ(crc32c_hardware(), __builtin_cpu_supports("sse4.2") != 0);
#endif
  if (!crc32c_hardware()) {
    std::printf("note: no CRC32C instruction on this machine; hardware tests compare "
                "software with itself\n");
  }
}

TEST(Crc32c, ExtendAtEverySplitPoint) {
  // Long enough to cross every interleaving block size of the hardware path (3 x 1024).
  const std::vector<uint8_t> data = random_bytes(3 * 1024 + 3 * 128 + 3 * 32 + 13, 1);
  const std::span<const uint8_t> all(data);
  const uint32_t whole = crc32c_bitwise(all);
  ASSERT_EQ(crc32c(all), whole);
  ASSERT_EQ(crc32c_software(all), whole);
  for (size_t split = 0; split <= data.size(); ++split) {
    const auto a = all.first(split);
    const auto b = all.subspan(split);
    ASSERT_EQ(crc32c(b, crc32c(a)), whole) << "split " << split;
    ASSERT_EQ(crc32c_software(b, crc32c_software(a)), whole) << "split " << split;
    ASSERT_EQ(crc32c(b, crc32c_software(a)), whole) << "split " << split;
  }
}

TEST(Crc32c, ExtendAtEveryPairOfSplitPoints) {
  const std::vector<uint8_t> data = random_bytes(200, 2);
  const std::span<const uint8_t> all(data);
  const uint32_t whole = crc32c(all);
  for (size_t i = 0; i <= data.size(); ++i) {
    for (size_t j = i; j <= data.size(); ++j) {
      uint32_t crc = crc32c(all.first(i));
      crc = crc32c(all.subspan(i, j - i), crc);
      crc = crc32c(all.subspan(j), crc);
      ASSERT_EQ(crc, whole) << i << "," << j;
    }
  }
}

TEST(Crc32c, HardwareMatchesSoftwareAtEveryLengthAndAlignment) {
  const std::vector<uint8_t> data = random_bytes(5000 + 8, 3);
  for (size_t offset = 0; offset < 8; ++offset) {
    for (size_t n = 0; n + offset <= 5000; ++n) {
      const std::span<const uint8_t> s(data.data() + offset, n);
      ASSERT_EQ(crc32c(s), crc32c_software(s)) << "offset " << offset << " length " << n;
    }
  }
  // Spot checks against the definition itself, including around the block sizes.
  for (size_t n : {0u, 1u, 7u, 8u, 9u, 95u, 96u, 97u, 383u, 384u, 385u, 3071u, 3072u, 3073u,
                   3551u, 4999u}) {
    const std::span<const uint8_t> s(data.data() + 1, n);
    ASSERT_EQ(crc32c(s), crc32c_bitwise(s)) << "length " << n;
  }
}

TEST(Crc32c, HardwareMatchesSoftwareOnLargeBuffersAndSeeds) {
  std::mt19937 rng(4);
  for (size_t n : {size_t{1} << 16, (size_t{1} << 20) + 7, size_t{3} * 1024 * 7 + 5}) {
    const std::vector<uint8_t> data = random_bytes(n, static_cast<uint32_t>(n));
    for (int i = 0; i < 4; ++i) {
      const uint32_t seed = static_cast<uint32_t>(rng());
      ASSERT_EQ(crc32c(data, seed), crc32c_software(data, seed)) << n;
    }
  }
}

// Runs `command` through the shell and returns its standard output and exit status.
struct CommandResult {
  std::string output;
  int status = -1;
};
CommandResult run(const std::string& command) {
  CommandResult result;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) result.output.append(buf.data(), n);
  result.status = ::pclose(pipe);
  return result;
}

TEST(Crc32c, MatchesPythonCrc32cModule) {
  // The Python module is an independent implementation (Google's crc32c C library or its
  // own tables); a missing interpreter or module is a broken test machine, not a skip.
  const char* python = "/usr/bin/python3";
  ASSERT_EQ(::access(python, X_OK), 0)
      << python << " is missing; install Debian's python3 and python3-crc32c";
  const CommandResult probe = run(std::string(python) + " -c 'import crc32c' 2>&1");
  ASSERT_EQ(probe.status, 0) << "/usr/bin/python3 cannot import crc32c (install the Debian "
                                "package python3-crc32c): "
                             << probe.output;

  char dir_template[] = "/tmp/herald_crc32c_XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  const std::filesystem::path dir(dir_template);
  std::vector<uint32_t> expected;
  std::string args;
  std::mt19937 rng(5);
  for (size_t n : {0u, 1u, 9u, 100u, 1024u, 4093u, 65536u, 100003u}) {
    const std::vector<uint8_t> data = random_bytes(n, static_cast<uint32_t>(rng()));
    const auto path = dir / ("buf" + std::to_string(n));
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(n));
    expected.push_back(crc32c(data));
    args += " " + path.string();
  }
  const CommandResult r = run(std::string(python) +
                              " -c 'import crc32c, sys\n"
                              "for p in sys.argv[1:]:\n"
                              "    print(crc32c.crc32c(open(p, \"rb\").read()))'" +
                              args + " 2>&1");
  std::filesystem::remove_all(dir);
  ASSERT_EQ(r.status, 0) << r.output;
  std::istringstream lines(r.output);
  for (size_t i = 0; i < expected.size(); ++i) {
    uint64_t value = 0;
    ASSERT_TRUE(lines >> value) << "unexpected python output: " << r.output;
    EXPECT_EQ(value, expected[i]) << "buffer " << i;
  }
}

}  // namespace
}  // namespace herald::codec
