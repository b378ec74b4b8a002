// The installed SDK: `cmake --install` into a temporary prefix, then an application outside
// the tree is built against it twice (the C example with pkg-config, the C++ and C
// examples with find_package(Herald)) and run against the real heraldd; the installed
// `herald` CLI runs too.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>

#include "tests/client_support/recorder.h"

#ifndef HERALD_EXAMPLE_FLAGS
#define HERALD_EXAMPLE_FLAGS ""
#endif

namespace herald::testing {
namespace {

int sh(const std::string& cmd) {
  const int st = std::system(cmd.c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs argv in `cwd` with stdout and stderr to `out`; returns the pid.
pid_t spawn(const std::vector<std::string>& argv, const std::string& out, const std::string& cwd) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::chdir(cwd.c_str()) != 0) ::_exit(126);
    const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    std::vector<char*> a;
    for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    ::execv(a[0], a.data());
    ::_exit(127);
  }
  return pid;
}

// Exit code, or -1 if it did not exit within timeout_ms (then it is killed).
int wait_exit(pid_t pid, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    int st = 0;
    if (::waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return -1;
}

bool wait_for_text(const std::string& path, const std::string& text, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (slurp(path).find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

class ClientInstall : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/herald-install-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    prefix_ = dir_ + "/prefix";
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  // Runs `example` (subscribes to news, prints 2 messages) against a fresh heraldd.
  void run_example(const std::string& example) {
    HeralddProcess server;
    ASSERT_TRUE(server.start());
    const std::string out = dir_ + "/" + std::filesystem::path(example).filename().string() + ".out";
    const pid_t pid = spawn({example, "127.0.0.1", std::to_string(server.port("tcp")),
                             make_token("alice", {{"channels", {"news"}}}), "news", "2"},
                            out, dir_);
    ASSERT_TRUE(wait_for_text(out, "subscribed news", 10000)) << slurp(out);
    ASSERT_NE(publish(server, "news", "one"), 0u);
    ASSERT_NE(publish(server, "news", "two"), 0u);
    EXPECT_EQ(wait_exit(pid, 10000), 0) << slurp(out);
    const std::string text = slurp(out);
    EXPECT_NE(text.find("news #1: \"one\""), std::string::npos) << text;
    EXPECT_NE(text.find("news #2: \"two\""), std::string::npos) << text;
  }
  std::string dir_, prefix_;
};

TEST_F(ClientInstall, InstalledPackageBuildsAndRunsOutOfTreeExamples) {
  ASSERT_EQ(sh("cmake --install " HERALD_BINARY_DIR " --prefix " + prefix_ + " > " + dir_ + "/install.log 2>&1"), 0)
      << slurp(dir_ + "/install.log");
  for (const char* f : {"include/herald_client.h", "include/herald/client.h", "lib/libherald_client.so",
                        "lib/cmake/Herald/HeraldConfig.cmake", "lib/cmake/Herald/HeraldTargets.cmake",
                        "lib/pkgconfig/herald-client.pc", "bin/herald"}) {
    EXPECT_TRUE(std::filesystem::exists(prefix_ + "/" + f)) << f;
  }
  // Only the SDK's API is exported: no codec or protobuf symbols leak into apps.
  EXPECT_EQ(sh("nm -D --defined-only " + prefix_ + "/lib/libherald_client.so | grep -q 'herald5codec'"), 1);
  EXPECT_EQ(sh("nm -D --defined-only " + prefix_ + "/lib/libherald_client.so | grep -q 'herald2v1'"), 1);
  EXPECT_EQ(sh("nm -D --defined-only " + prefix_ + "/lib/libherald_client.so | grep -q herald_client_new"), 0);

  // C, with pkg-config.
  const std::string pc = "PKG_CONFIG_PATH=" + prefix_ + "/lib/pkgconfig";
  ASSERT_EQ(sh(pc + " cc -std=c99 -Wall -Wextra -Werror " HERALD_EXAMPLE_FLAGS " " HERALD_SOURCE_DIR
                    "/client-sdk/examples/hello.c -o " + dir_ + "/hello_c_pc $(" + pc +
               " pkg-config --cflags --libs herald-client) -lpthread -Wl,-rpath," + prefix_ + "/lib > " + dir_ +
               "/cc.log 2>&1"),
            0)
      << slurp(dir_ + "/cc.log");
  run_example(dir_ + "/hello_c_pc");

  // C++ and C, with find_package(Herald).
  const std::string build = dir_ + "/example-build";
  ASSERT_EQ(sh("cmake -S " HERALD_SOURCE_DIR "/client-sdk/examples -B " + build + " -G Ninja -DCMAKE_PREFIX_PATH=" +
               prefix_ + " -DCMAKE_C_FLAGS='" HERALD_EXAMPLE_FLAGS "' -DCMAKE_CXX_FLAGS='" HERALD_EXAMPLE_FLAGS
               "' > " + dir_ + "/cmake.log 2>&1 && cmake --build " + build + " >> " + dir_ + "/cmake.log 2>&1"),
            0)
      << slurp(dir_ + "/cmake.log");
  run_example(build + "/hello_cpp");
  run_example(build + "/hello_c");

  // The installed CLI finds the installed library.
  EXPECT_EQ(sh(prefix_ + "/bin/herald --help > /dev/null"), 0);
  EXPECT_EQ(sh(prefix_ + "/bin/herald token -u bob --secret 0123456789abcdef0123 > /dev/null"), 0);
}

}  // namespace
}  // namespace herald::testing
