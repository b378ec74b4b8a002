// The codec stays sans-IO: no file in codec/ may include a socket, event loop,
// TLS, logging, thread or clock header (STYLE.md "Layers you can see").
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

namespace {

const std::regex& forbidden_include() {
  static const std::regex re(
      R"(#\s*include\s*[<"](event2/|event\.h|sys/socket\.h|netinet/|arpa/inet\.h|sys/epoll\.h|poll\.h|)"
      R"(unistd\.h|openssl/|spdlog|thread|mutex|chrono|ctime|time\.h|iostream|cstdio|stdio\.h|syslog\.h))");
  return re;
}

TEST(CodecLayering, NoIoLoggingThreadsOrClockInCodec) {
  const std::filesystem::path codec = std::filesystem::path(HERALD_SOURCE_DIR) / "codec";
  ASSERT_TRUE(std::filesystem::is_directory(codec)) << codec;
  const std::regex& forbidden = forbidden_include();
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(codec)) {
    const auto ext = entry.path().extension();
    if (ext != ".h" && ext != ".cc") continue;
    ++files;
    std::ifstream in(entry.path());
    std::string line;
    int n = 0;
    while (std::getline(in, line)) {
      ++n;
      EXPECT_FALSE(std::regex_search(line, forbidden)) << entry.path().filename().string() << ":" << n << ": " << line;
    }
  }
  EXPECT_GE(files, 10u);
}

// The check itself must be able to fail: the same pattern flags these lines.
TEST(CodecLayering, PatternCatchesForbiddenIncludes) {
  const std::regex& forbidden = forbidden_include();
  EXPECT_TRUE(std::regex_search(std::string("#include <event2/event.h>"), forbidden));
  EXPECT_TRUE(std::regex_search(std::string("#include <sys/socket.h>"), forbidden));
  EXPECT_TRUE(std::regex_search(std::string("#include \"spdlog/spdlog.h\""), forbidden));
  EXPECT_TRUE(std::regex_search(std::string("#include <chrono>"), forbidden));
  EXPECT_FALSE(std::regex_search(std::string("#include <zstd.h>"), forbidden));
  EXPECT_FALSE(std::regex_search(std::string("#include \"codec/frame_header.h\""), forbidden));
}

}  // namespace
