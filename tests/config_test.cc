// heraldd configuration: defaults, TOML file, flag overrides, every validation
// error, --help coverage, to_toml round trip, policy_for and split_host_port.
#include "server/config.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <ostream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <toml.hpp>

namespace herald::server {

// gtest shows a Config that differs as its TOML.
void PrintTo(const Config& c, std::ostream* os) { *os << "\n" << to_toml(c); }

namespace {

namespace fs = std::filesystem;

ConfigResult run(const std::vector<std::string>& args, Config& c, std::string& message) {
  std::vector<const char*> argv = {"heraldd"};
  for (const auto& a : args) argv.push_back(a.c_str());
  return load_config(static_cast<int>(argv.size()), argv.data(), c, message);
}

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::path(::testing::TempDir()) / "herald-config-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    cert_ = write("cert.pem", "-----BEGIN CERTIFICATE-----\n");
    key_ = write("key.pem", "-----BEGIN PRIVATE KEY-----\n");
    dict_ = write("dict.zstd", "dictionary");
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }

  fs::path dir_;
  std::string cert_, key_, dict_;
};

TEST_F(ConfigTest, NoArgumentsGiveTheEmbeddedDefaults) {
  Config c;
  c.loops = 99;  // load_config must replace it
  std::string msg;
  ASSERT_EQ(run({}, c, msg), ConfigResult::kRun) << msg;
  EXPECT_EQ(c, Config{});
  EXPECT_EQ(c.loops, 0u);
  EXPECT_GE(c.loop_count(), 1u);
  EXPECT_EQ(c.tcp, "127.0.0.1:7600");
  EXPECT_EQ(c.api, "127.0.0.1:7680");
  EXPECT_EQ(c.tls, "");
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.jwt_algorithm, "HS256");
  EXPECT_EQ(c.max_frame_size, 65536u);
  EXPECT_EQ(c.max_message_size, 1048576u);
  EXPECT_TRUE(c.compression);
  EXPECT_FALSE(c.checksum);
  EXPECT_TRUE(c.default_secret());
  EXPECT_TRUE(c.default_api_key());
  ASSERT_EQ(c.namespaces.size(), 2u);
  EXPECT_EQ(c.namespaces[0].name, "");
  EXPECT_EQ(c.namespaces[0].subscribe, NamespacePolicy::Subscribe::kGrant);
  EXPECT_EQ(c.namespaces[0].publish, NamespacePolicy::Publish::kNone);
  EXPECT_EQ(c.namespaces[0].history_size, 100u);
  EXPECT_EQ(c.namespaces[0].history_ttl_s, 300u);
  EXPECT_EQ(c.namespaces[1].name, "user");
  EXPECT_EQ(c.namespaces[1].history_size, 1000u);
  EXPECT_EQ(c.namespaces[1].history_ttl_s, 86400u);
}

TEST_F(ConfigTest, EmptyArgvIsTreatedAsNoArguments) {
  Config c;
  std::string msg;
  EXPECT_EQ(load_config(0, nullptr, c, msg), ConfigResult::kRun) << msg;
  EXPECT_EQ(c, Config{});
}

TEST_F(ConfigTest, TomlFileIsLoaded) {
  const std::string file = write("herald.toml", R"(# a comment
[server]
loops = 4
ready_file = ")" + (dir_ / "ready.json").string() + R"("
log_level = "debug"
log_levels = { session = "trace", api = "warn" }

[listen]
tcp = "0.0.0.0:0"
tls = "[::1]:0"
api = ""

[tls]
cert_file = ")" + cert_ + R"("
key_file = ")" + key_ + R"("

[auth]
jwt_secret = "0123456789abcdef-production"
jwt_algorithm = "HS512"
jwt_issuer = "issuer"
api_keys = ["k1", "k2"]

[protocol]
heartbeat_ms = 5000
max_frame_size = 16384
max_message_size = 16384
checksum = true
dictionary_file = ")" + dict_ + R"("

[limits]
max_subscriptions = 7

[delivery]
soft_limit_bytes = 100
hard_limit_bytes = 200

[[namespace]]
name = "news"
subscribe = "any"
publish = "grant"
history_size = 50
history_ttl_s = 60

[[namespace]]
name = "user"
history_size = 5
)");
  Config c;
  std::string msg;
  ASSERT_EQ(run({"--config", file}, c, msg), ConfigResult::kRun) << msg;
  EXPECT_EQ(c.loops, 4u);
  EXPECT_EQ(c.loop_count(), 4u);
  EXPECT_EQ(c.ready_file, (dir_ / "ready.json").string());
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.log_levels, (std::map<std::string, std::string>{{"session", "trace"}, {"api", "warn"}}));
  EXPECT_EQ(c.tcp, "0.0.0.0:0");
  EXPECT_EQ(c.tls, "[::1]:0");
  EXPECT_EQ(c.api, "");
  EXPECT_EQ(c.tls_cert_file, cert_);
  EXPECT_EQ(c.tls_key_file, key_);
  EXPECT_EQ(c.jwt_secret, "0123456789abcdef-production");
  EXPECT_FALSE(c.default_secret());
  EXPECT_EQ(c.jwt_algorithm, "HS512");
  EXPECT_EQ(c.jwt_issuer, "issuer");
  EXPECT_EQ(c.jwt_audience, "");
  EXPECT_EQ(c.api_keys, (std::vector<std::string>{"k1", "k2"}));
  EXPECT_FALSE(c.default_api_key());
  EXPECT_EQ(c.heartbeat_ms, 5000u);
  EXPECT_EQ(c.max_frame_size, 16384u);
  EXPECT_EQ(c.max_message_size, 16384u);
  EXPECT_TRUE(c.checksum);
  EXPECT_TRUE(c.compression);  // not in the file: default
  EXPECT_EQ(c.dictionary_file, dict_);
  EXPECT_EQ(c.max_subscriptions, 7u);
  EXPECT_EQ(c.soft_limit_bytes, 100u);
  EXPECT_EQ(c.hard_limit_bytes, 200u);
  // The file named "news" and "user"; the default namespace "" is added back.
  ASSERT_EQ(c.namespaces.size(), 3u);
  EXPECT_EQ(c.namespaces[0].name, "");
  EXPECT_EQ(c.namespaces[0].history_size, 100u);
  EXPECT_EQ(c.namespaces[1].name, "news");
  EXPECT_EQ(c.namespaces[1].subscribe, NamespacePolicy::Subscribe::kAny);
  EXPECT_EQ(c.namespaces[1].publish, NamespacePolicy::Publish::kGrant);
  EXPECT_EQ(c.namespaces[1].history_size, 50u);
  EXPECT_EQ(c.namespaces[1].history_ttl_s, 60u);
  EXPECT_EQ(c.namespaces[2].name, "user");
  EXPECT_EQ(c.namespaces[2].history_size, 5u);
  EXPECT_EQ(c.namespaces[2].history_ttl_s, 86400u);  // omitted: the "user" built-in value
}

TEST_F(ConfigTest, DottedKeysAndSubtablesWork) {
  const std::string file = write("dotted.toml", "server.loops = 3\n[server.log_levels]\nhub = \"debug\"\n");
  Config c;
  std::string msg;
  ASSERT_EQ(run({"--config", file}, c, msg), ConfigResult::kRun) << msg;
  EXPECT_EQ(c.loops, 3u);
  EXPECT_EQ(c.log_levels.at("hub"), "debug");
}

TEST_F(ConfigTest, FlagsOverrideTheFile) {
  const std::string file = write("herald.toml", R"(
[server]
loops = 4
log_levels = { session = "trace" }
[listen]
tcp = "127.0.0.1:1000"
[auth]
api_keys = ["file-key"]
[protocol]
compression = true
[delivery]
soft_limit_bytes = 100
[[namespace]]
name = "news"
)");
  Config c;
  std::string msg;
  ASSERT_EQ(run({"--config", file, "--server.loops", "2", "--listen.tcp", "127.0.0.1:0", "--auth.api_keys", "k1,k2",
                 "--protocol.compression=false", "--delivery.soft_limit_bytes", "1000", "--server.log_levels",
                 "api=warn,hub=error", "--namespace", "name=trade,subscribe=none,publish=any,history_size=0"},
                c, msg),
            ConfigResult::kRun)
      << msg;
  EXPECT_EQ(c.loops, 2u);
  EXPECT_EQ(c.tcp, "127.0.0.1:0");
  EXPECT_EQ(c.api_keys, (std::vector<std::string>{"k1", "k2"}));
  EXPECT_FALSE(c.compression);
  EXPECT_EQ(c.soft_limit_bytes, 1000u);
  // A map flag replaces the file's map.
  EXPECT_EQ(c.log_levels, (std::map<std::string, std::string>{{"api", "warn"}, {"hub", "error"}}));
  // --namespace replaces the file's list; built-ins come back in front.
  ASSERT_EQ(c.namespaces.size(), 3u);
  EXPECT_EQ(c.namespaces[0].name, "");
  EXPECT_EQ(c.namespaces[1].name, "user");
  EXPECT_EQ(c.namespaces[2].name, "trade");
  EXPECT_EQ(c.namespaces[2].subscribe, NamespacePolicy::Subscribe::kNone);
  EXPECT_EQ(c.namespaces[2].publish, NamespacePolicy::Publish::kAny);
  EXPECT_EQ(c.namespaces[2].history_size, 0u);
  EXPECT_EQ(c.namespaces[2].history_ttl_s, 300u);
}

TEST_F(ConfigTest, FlagFormsAndRepeats) {
  Config c;
  std::string msg;
  ASSERT_EQ(run({"--ready-file", (dir_ / "r.json").string(), "--auth.api_keys", "a", "--auth.api_keys", "b,c",
                 "--server.loops", "1", "--server.loops", "5", "--protocol.checksum", "yes", "--listen.api", "",
                 "--namespace", "name=a", "--namespace", "name=b,history_ttl_s=1"},
                c, msg),
            ConfigResult::kRun)
      << msg;
  EXPECT_EQ(c.ready_file, (dir_ / "r.json").string());
  EXPECT_EQ(c.api_keys, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(c.loops, 5u);  // the last one wins
  EXPECT_TRUE(c.checksum);
  EXPECT_EQ(c.api, "");
  ASSERT_EQ(c.namespaces.size(), 4u);
  EXPECT_EQ(c.namespaces[2].name, "a");
  EXPECT_EQ(c.namespaces[3].name, "b");
  EXPECT_EQ(c.namespaces[3].history_ttl_s, 1u);

  ASSERT_EQ(run({"--server.ready_file=" + (dir_ / "s.json").string()}, c, msg), ConfigResult::kRun) << msg;
  EXPECT_EQ(c.ready_file, (dir_ / "s.json").string());
}

// One row: arguments (a "@FILE" argument is replaced by the path of a TOML
// file holding `toml`), and the setting the message must name.
struct BadCase {
  std::vector<std::string> args;
  std::string toml;
  std::string names;
};

TEST_F(ConfigTest, EveryBadSettingIsAnErrorNamingIt) {
  const std::string missing = (dir_ / "missing.pem").string();
  const std::string a_dir = dir_.string();
  const std::vector<BadCase> cases = {
      // ports and addresses
      {{"--listen.tcp", "1.2.3.4:99999"}, "", "listen.tcp"},
      {{"--listen.tcp", "1.2.3.4"}, "", "listen.tcp"},
      {{"--listen.tcp", "localhost:80"}, "", "listen.tcp"},
      {{"--listen.tcp", "::1:80"}, "", "listen.tcp"},
      {{"--listen.tcp", "1.2.3.4:"}, "", "listen.tcp"},
      {{"--listen.tcp", "1.2.3.4:-1"}, "", "listen.tcp"},
      {{"--listen.api", "[::1]80"}, "", "listen.api"},
      {{"--listen.api", "[::1:80"}, "", "listen.api"},
      {{"--listen.api", "127.0.0.1:7600"}, "", "listen.api"},  // same as listen.tcp
      {{"--listen.tls", "300.0.0.1:1", "--tls.cert_file", "x", "--tls.key_file", "y"}, "", "listen.tls"},
      // tls without files, missing files
      {{"--listen.tls", "127.0.0.1:0"}, "", "tls.cert_file"},
      {{"--listen.tls", "127.0.0.1:0", "--tls.cert_file", "@CERT"}, "", "tls.key_file"},
      {{"--listen.tls", "127.0.0.1:0", "--tls.cert_file", missing, "--tls.key_file", "@KEY"}, "", "tls.cert_file"},
      {{"--listen.tls", "127.0.0.1:0", "--tls.cert_file", "@CERT", "--tls.key_file", missing}, "", "tls.key_file"},
      {{"--listen.tls", "127.0.0.1:0", "--tls.cert_file", a_dir, "--tls.key_file", "@KEY"}, "", "tls.cert_file"},
      {{"--protocol.dictionary_file", missing}, "", "protocol.dictionary_file"},
      {{"--protocol.dictionary_file", a_dir}, "", "protocol.dictionary_file"},
      // [server]
      {{"--server.loops", "257"}, "", "server.loops"},
      {{"--server.loops", "-1"}, "", "server.loops"},
      {{"--server.loops", "four"}, "", "server.loops"},
      {{"--server.loops", "99999999999999999999999"}, "", "server.loops"},
      {{"--server.ready_file", (dir_ / "no-such-dir" / "ready.json").string()}, "", "server.ready_file"},
      {{"--server.log_level", "verbose"}, "", "server.log_level"},
      {{"--server.log_level", "critical"}, "", "server.log_level"},
      {{"--server.log_levels", "session=loud"}, "", "server.log_levels"},
      {{"--server.log_levels", "session"}, "", "server.log_levels"},
      {{"--server.log_levels", "=debug"}, "", "server.log_levels"},
      {{"--server.log_levels", "a=info,a=debug"}, "", "server.log_levels"},
      {{"--server.shutdown_timeout_ms", "4294967296"}, "", "server.shutdown_timeout_ms"},
      // [auth]
      {{"--auth.jwt_algorithm", "RS256"}, "", "auth.jwt_algorithm"},
      {{"--auth.jwt_algorithm", "none"}, "", "auth.jwt_algorithm"},
      {{"--auth.jwt_secret", "short"}, "", "auth.jwt_secret"},
      {{"--auth.jwt_secret", "123456789012345"}, "", "auth.jwt_secret"},
      {{"--auth.api_keys", "k1,,k2"}, "", "auth.api_keys"},
      {{"--auth.api_keys", ""}, "", "auth.api_keys"},
      {{"--auth.api_keys", "has space"}, "", "auth.api_keys"},
      {{"--auth.jwt_leeway_s", "x"}, "", "auth.jwt_leeway_s"},
      {{"--auth.refresh_grace_s", "1.5"}, "", "auth.refresh_grace_s"},
      // [protocol]
      {{"--protocol.max_frame_size", "16383"}, "", "protocol.max_frame_size"},
      {{"--protocol.max_frame_size", "16777217"}, "", "protocol.max_frame_size"},
      {{"--protocol.max_message_size", "16383"}, "", "protocol.max_message_size"},
      {{"--protocol.max_frame_size", "16384", "--protocol.max_message_size", "2095617"}, "", "protocol.max_message_size"},
      {{"--protocol.heartbeat_ms", "4999"}, "", "protocol.heartbeat_ms"},
      {{"--protocol.heartbeat_ms", "120001"}, "", "protocol.heartbeat_ms"},
      {{"--protocol.handshake_timeout_ms", "0"}, "", "protocol.handshake_timeout_ms"},
      {{"--protocol.pong_timeout_ms", "0"}, "", "protocol.pong_timeout_ms"},
      {{"--protocol.compression", "maybe"}, "", "protocol.compression"},
      {{"--protocol.checksum", ""}, "", "protocol.checksum"},
      // [limits]
      {{"--limits.max_connections", "0"}, "", "limits.max_connections"},
      {{"--limits.max_connections_per_user", "0"}, "", "limits.max_connections_per_user"},
      {{"--limits.max_connections_per_ip", "0"}, "", "limits.max_connections_per_ip"},
      {{"--limits.max_subscriptions", "0"}, "", "limits.max_subscriptions"},
      {{"--limits.api_max_body_bytes", "0"}, "", "limits.api_max_body_bytes"},
      // [delivery]
      {{"--delivery.soft_limit_bytes", "1048577"}, "", "delivery.soft_limit_bytes"},
      {{"--delivery.hard_limit_bytes", "1000"}, "", "delivery.soft_limit_bytes"},
      {{"--delivery.hard_limit_bytes", "0", "--delivery.soft_limit_bytes", "0"}, "", "delivery.hard_limit_bytes"},
      {{"--delivery.batch_bytes", "0"}, "", "delivery.batch_bytes"},
      {{"--delivery.publish_backlog", "0"}, "", "delivery.publish_backlog"},
      {{"--delivery.soft_limit_ms", "x"}, "", "delivery.soft_limit_ms"},
      {{"--delivery.dedup_window_s", "-5"}, "", "delivery.dedup_window_s"},
      // namespaces from flags
      {{"--namespace", "name=a:b"}, "", "namespace.name"},
      {{"--namespace", "name=a*"}, "", "namespace.name"},
      {{"--namespace", "name=a b"}, "", "namespace.name"},
      {{"--namespace", "name=" + std::string(254, 'n')}, "", "namespace.name"},
      {{"--namespace", "name=news", "--namespace", "name=news"}, "", "namespace.name"},
      {{"--namespace", "subscribe=any"}, "", "namespace.name"},
      {{"--namespace", "name=news,subscribe=all"}, "", "namespace.subscribe"},
      {{"--namespace", "name=news,publish=everyone"}, "", "namespace.publish"},
      {{"--namespace", "name=news,history_size=-1"}, "", "namespace.history_size"},
      {{"--namespace", "name=news,history_ttl_s=4294967296"}, "", "namespace.history_ttl_s"},
      {{"--namespace", "name=news,history=5"}, "", "namespace.history"},
      {{"--namespace", "name=news,subscribe=any,subscribe=none"}, "", "namespace.subscribe"},
      {{"--namespace", "name=news,oops"}, "", "namespace"},
      // TOML: unknown sections and keys, types, ranges, syntax
      {{"--config", "@FILE"}, "[server]\nlops = 4\n", "server.lops"},
      {{"--config", "@FILE"}, "[sever]\nloops = 4\n", "sever"},
      {{"--config", "@FILE"}, "loops = 4\n", "loops"},
      {{"--config", "@FILE"}, "[server]\nloops = \"4\"\n", "server.loops"},
      {{"--config", "@FILE"}, "[server]\nloops = -4\n", "server.loops"},
      {{"--config", "@FILE"}, "[server]\nloops = 4.0\n", "server.loops"},
      {{"--config", "@FILE"}, "[server]\nloops = 1000\n", "server.loops"},
      {{"--config", "@FILE"}, "[server]\nlog_levels = \"session=debug\"\n", "server.log_levels"},
      {{"--config", "@FILE"}, "[server]\nlog_levels = { session = 1 }\n", "server.log_levels.session"},
      {{"--config", "@FILE"}, "[listen]\ntcp = 7600\n", "listen.tcp"},
      {{"--config", "@FILE"}, "[protocol]\ncompression = \"yes\"\n", "protocol.compression"},
      {{"--config", "@FILE"}, "[auth]\napi_keys = \"k1\"\n", "auth.api_keys"},
      {{"--config", "@FILE"}, "[auth]\napi_keys = [\"k1\", 2]\n", "auth.api_keys"},
      {{"--config", "@FILE"}, "[limits]\nmax_connections = 4294967296\n", "limits.max_connections"},
      {{"--config", "@FILE"}, "server = 4\n", "server"},
      {{"--config", "@FILE"}, "[server\nloops = 4\n", "--config"},
      {{"--config", "@FILE"}, "[server]\nloops = \n", "--config"},
      {{"--config", "@FILE"}, "[namespace]\nname = \"x\"\n", "namespace"},
      {{"--config", "@FILE"}, "[[namespace]]\nsubscribe = \"any\"\n", "namespace.name"},
      {{"--config", "@FILE"}, "[[namespace]]\nname = \"a\"\nsubscrbe = \"any\"\n", "namespace.subscrbe"},
      {{"--config", "@FILE"}, "[[namespace]]\nname = \"a\"\nsubscribe = \"all\"\n", "namespace.subscribe"},
      {{"--config", "@FILE"}, "[[namespace]]\nname = \"a\"\npublish = \"all\"\n", "namespace.publish"},
      {{"--config", "@FILE"}, "[[namespace]]\nname = \"a\"\nhistory_size = -1\n", "namespace.history_size"},
      {{"--config", "@FILE"}, "[[namespace]]\nname = \"a\"\nhistory_ttl_s = \"1\"\n", "namespace.history_ttl_s"},
      {{"--config", "@FILE"}, "[[namespace]]\nname = 5\n", "namespace.name"},
      {{"--config", "@FILE"}, "[[namespace]]\nname = \"x:y\"\n", "namespace.name"},
      {{"--config", "@FILE"}, "[[namespace]]\nname = \"a\"\n[[namespace]]\nname = \"a\"\n", "namespace.name"},
      {{"--config", missing}, "", "--config"},
      {{"--config", a_dir}, "", "--config"},
      // command line itself
      {{"--no-such-flag"}, "", "--no-such-flag"},
      {{"stray-positional"}, "", "stray-positional"},
      {{"--listen.tcp"}, "", "--listen.tcp"},
  };
  for (const auto& bad : cases) {
    std::vector<std::string> args;
    const std::string file = write("bad.toml", bad.toml);
    for (const auto& a : bad.args) args.push_back(a == "@FILE" ? file : a == "@CERT" ? cert_ : a == "@KEY" ? key_ : a);
    std::string shown;
    for (const auto& a : bad.args) shown += " " + a;
    Config c;
    c.loops = 77;
    std::string msg;
    ASSERT_EQ(run(args, c, msg), ConfigResult::kError) << "heraldd" << shown << "\n" << bad.toml;
    EXPECT_NE(msg.find(bad.names), std::string::npos) << "heraldd" << shown << "\nmessage: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
    EXPECT_EQ(c.loops, 77u) << "out must be untouched on error";
  }
}

TEST_F(ConfigTest, MessagesSayWhatIsWrong) {
  Config c;
  std::string msg;
  ASSERT_EQ(run({"--listen.tcp", "1.2.3.4:99999"}, c, msg), ConfigResult::kError);
  EXPECT_EQ(msg.rfind("listen.tcp: \"1.2.3.4:99999\" is not host:port with port 0-65535", 0), 0u) << msg;

  const std::string file = write("typo.toml", "[server]\n\nlogs_level = \"debug\"\n");
  ASSERT_EQ(run({"--config", file}, c, msg), ConfigResult::kError);
  EXPECT_NE(msg.find("server.logs_level: unknown setting"), std::string::npos) << msg;
  EXPECT_NE(msg.find("line 3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean server.log_level?"), std::string::npos) << msg;

  ASSERT_EQ(run({"--delivery.soft_limit_bytes", "2000000"}, c, msg), ConfigResult::kError);
  EXPECT_EQ(msg, "delivery.soft_limit_bytes: 2000000 is more than delivery.hard_limit_bytes (1048576)");

  const std::string syntax = write("syntax.toml", "[server]\nloops = 1\nloops = 2\n");
  ASSERT_EQ(run({"--config", syntax}, c, msg), ConfigResult::kError);
  EXPECT_EQ(msg.rfind("--config: \"" + syntax + "\" line ", 0), 0u) << msg;
}

TEST_F(ConfigTest, UnreadableFilesAreErrors) {
  const std::string locked = write("locked.pem", "x");
  ASSERT_EQ(::chmod(locked.c_str(), 0), 0);
  // Returns 0 when every expectation holds (so it can run in a child process).
  auto check = [&]() -> int {
    Config c;
    std::string msg;
    if (run({"--protocol.dictionary_file", locked}, c, msg) != ConfigResult::kError) return 1;
    if (msg.find("protocol.dictionary_file") == std::string::npos) return 2;
    if (msg.find("cannot be read") == std::string::npos) return 3;
    if (run({"--config", locked}, c, msg) != ConfigResult::kError) return 4;
    if (msg.find("--config") == std::string::npos) return 5;
    return 0;
  };
  if (::geteuid() != 0) {
    EXPECT_EQ(check(), 0);
    return;
  }
  // Root reads every file: check as the unprivileged user "nobody" instead.
  const std::string dir = std::filesystem::path(locked).parent_path().string();
  ASSERT_EQ(::chmod(dir.c_str(), 0755), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(100);
    ::_exit(check());
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1-5: which expectation failed; 100: cannot become nobody";
}

TEST_F(ConfigTest, TlsFilesAreOnlyCheckedWhileTlsIsOn) {
  Config c;
  std::string msg;
  EXPECT_EQ(run({"--tls.cert_file", "/nonexistent/cert.pem"}, c, msg), ConfigResult::kRun) << msg;
  EXPECT_EQ(run({"--listen.tls", "127.0.0.1:0", "--tls.cert_file", cert_, "--tls.key_file", key_}, c, msg),
            ConfigResult::kRun)
      << msg;
}

TEST_F(ConfigTest, EdgeValuesAreAccepted) {
  Config c;
  std::string msg;
  ASSERT_EQ(run({"--server.loops", "256", "--protocol.heartbeat_ms", "120000", "--protocol.max_frame_size",
                 "16777216", "--protocol.max_message_size", "2147482112", "--delivery.soft_limit_bytes", "1048576",
                 "--auth.jwt_secret", "1234567890123456", "--listen.tcp", "", "--listen.api", "", "--auth.api_keys",
                 "", "--listen.tls", "[::]:0", "--tls.cert_file", cert_, "--tls.key_file", key_, "--namespace",
                 "name=,subscribe=any", "--namespace", "name=a.b@c/d-e_f", "--namespace",
                 "name=" + std::string(253, 'n')},
                c, msg),
            ConfigResult::kRun)
      << msg;
  EXPECT_EQ(c.loops, 256u);
  EXPECT_EQ(c.max_message_size, 2147482112u);  // exactly 128 * (16 MiB - 12)
  EXPECT_TRUE(c.api_keys.empty());             // allowed while the API listener is off
  ASSERT_EQ(c.namespaces.size(), 4u);           // user added back, "", a.b@c/d-e_f, nnn...
  EXPECT_EQ(c.namespaces[0].name, "user");
  EXPECT_EQ(c.namespaces[1].subscribe, NamespacePolicy::Subscribe::kAny);
  // Two listeners on port 0 of the same host are fine: each gets its own port.
  ASSERT_EQ(run({"--listen.tcp", "127.0.0.1:0", "--listen.api", "127.0.0.1:0"}, c, msg), ConfigResult::kRun) << msg;
  // 128 * (16384 - 12) is the most for the smallest frame size.
  ASSERT_EQ(run({"--protocol.max_frame_size", "16384", "--protocol.max_message_size", "2095616"}, c, msg),
            ConfigResult::kRun)
      << msg;
}

TEST_F(ConfigTest, UserNamespaceRulesAreAcceptedButDocumentedAsIgnored) {
  Config c;
  std::string msg;
  ASSERT_EQ(run({"--namespace", "name=user,subscribe=any,history_size=10"}, c, msg), ConfigResult::kRun) << msg;
  EXPECT_EQ(c.policy_for("user:42").history_size, 10u);
  EXPECT_EQ(c.policy_for("user:42").history_ttl_s, 86400u);
}

std::vector<std::string> toml_setting_names(const std::string& text) {
  std::istringstream in(text);
  const auto root = toml::parse(in, "to_toml");
  std::vector<std::string> names;
  for (const auto& [section, body] : root.as_table()) {
    if (section == "namespace") {
      for (const auto& ns : body.as_array())
        for (const auto& [key, v] : ns.as_table()) names.push_back("namespace." + key);
      continue;
    }
    for (const auto& [key, v] : body.as_table()) names.push_back(section + "." + key);
  }
  return names;
}

TEST_F(ConfigTest, HelpDocumentsEverySettingWithItsDefault) {
  Config c;
  c.loops = 77;
  std::string help;
  ASSERT_EQ(run({"--help"}, c, help), ConfigResult::kExit);
  EXPECT_EQ(c.loops, 77u);
  const auto names = toml_setting_names(to_toml(Config{}));
  ASSERT_GE(names.size(), 40u);
  for (const auto& name : names) {
    if (name.rfind("namespace.", 0) == 0) {
      // [[namespace]] keys are documented under --namespace.
      EXPECT_NE(help.find("--namespace"), std::string::npos);
      EXPECT_NE(help.find(name.substr(10)), std::string::npos) << name;
      continue;
    }
    const std::string flag = "--" + name;
    size_t at = help.find(flag + " ");
    if (at == std::string::npos) at = help.find(flag + ",");
    ASSERT_NE(at, std::string::npos) << flag << "\n" << help;
    // Its description, up to the next flag, gives the default.
    const size_t next = help.find("\n  --", at + 1);
    const std::string entry = help.substr(at, next == std::string::npos ? std::string::npos : next - at);
    EXPECT_NE(entry.find("(default: "), std::string::npos) << entry;
  }
  for (const char* extra : {"--config", "--print-config", "--ready-file", "--help", "--version", "--namespace"})
    EXPECT_NE(help.find(extra), std::string::npos) << extra;
  EXPECT_NE(help.find("(default: 127.0.0.1:7600)"), std::string::npos);
  EXPECT_NE(help.find("(default: herald-dev-api-key)"), std::string::npos);

  std::string help2;
  EXPECT_EQ(run({"-h"}, c, help2), ConfigResult::kExit);
  EXPECT_EQ(help, help2);
}

// docs/configuration.md documents every setting and its TOML examples load.
TEST_F(ConfigTest, DocsCoverEverySettingAndTheirExamplesLoad) {
  std::ifstream in(std::string(HERALD_SOURCE_DIR) + "/docs/configuration.md");
  ASSERT_TRUE(in) << "docs/configuration.md";
  const std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const auto& name : toml_setting_names(to_toml(Config{}))) {
    if (name.rfind("namespace.", 0) == 0) {
      EXPECT_NE(doc.find("| `" + name.substr(10) + "` |"), std::string::npos) << name;
      continue;
    }
    EXPECT_NE(doc.find("| `" + name + "` | `--" + name + "`"), std::string::npos) << name;
  }
  size_t blocks = 0;
  for (size_t at = doc.find("```toml\n"); at != std::string::npos; at = doc.find("```toml\n", at + 1)) {
    const size_t start = at + 8;
    const size_t end = doc.find("```", start);
    ASSERT_NE(end, std::string::npos);
    std::string text = doc.substr(start, end - start);
    for (const auto& [from, to] : {std::pair<std::string, std::string>{"/etc/herald/cert.pem", cert_},
                                   std::pair<std::string, std::string>{"/etc/herald/key.pem", key_}}) {
      const size_t pos = text.find(from);
      if (pos != std::string::npos) text.replace(pos, from.size(), to);
    }
    const std::string file = write("doc" + std::to_string(blocks++) + ".toml", text);
    Config c;
    std::string msg;
    EXPECT_EQ(run({"--config", file}, c, msg), ConfigResult::kRun) << msg << "\n" << text;
  }
  EXPECT_GE(blocks, 2u);
}

TEST_F(ConfigTest, VersionExits) {
  Config c;
  std::string msg;
  ASSERT_EQ(run({"--version"}, c, msg), ConfigResult::kExit);
  EXPECT_EQ(msg.rfind("heraldd ", 0), 0u) << msg;
}

TEST_F(ConfigTest, PrintConfigExitsWithTheValidatedToml) {
  Config c;
  std::string msg;
  ASSERT_EQ(run({"--print-config", "--server.loops", "3"}, c, msg), ConfigResult::kExit);
  EXPECT_EQ(c.loops, 3u);
  EXPECT_EQ(msg, to_toml(c));
  EXPECT_NE(msg.find("loops = 3\n"), std::string::npos);
  // An invalid configuration is still an error.
  EXPECT_EQ(run({"--print-config", "--server.loops", "300"}, c, msg), ConfigResult::kError);
}

// A config where every setting differs from its default.
Config everything_changed(const std::string& cert, const std::string& key, const std::string& dict,
                          const std::string& ready) {
  Config c;
  c.loops = 3;
  c.ready_file = ready;
  c.log_level = "trace";
  c.log_levels = {{"session", "debug"}, {"api", "off"}, {"odd.name-x", "error"}};
  c.shutdown_timeout_ms = 1;
  c.tcp = "[::1]:0";
  c.tls = "0.0.0.0:7443";
  c.api = "";
  c.ws = "[::]:8443";
  c.tls_cert_file = cert;
  c.tls_key_file = key;
  c.ws_tls = true;
  c.ws_origins = {"https://app.example.com", "*"};
  c.ws_handshake_timeout_ms = 1;
  c.ws_max_header_bytes = 1024;
  c.ws_max_message_bytes = 1024;
  c.jwt_secret = "a \"quoted\" \\ secret\twith\ttabs \xc3\xa9";
  c.jwt_algorithm = "HS384";
  c.jwt_issuer = "https://issuer.example";
  c.jwt_audience = "herald";
  c.jwt_leeway_s = 0;
  c.refresh_grace_s = 5;
  c.api_keys = {"k1", "k2", "k3"};
  c.handshake_timeout_ms = 100;
  c.heartbeat_ms = 6000;
  c.pong_timeout_ms = 500;
  c.max_frame_size = 16777216;
  c.max_message_size = 16384;
  c.compression = false;
  c.checksum = true;
  c.dictionary_file = dict;
  c.max_connections = 1;
  c.max_connections_per_user = 2;
  c.max_connections_per_ip = 3;
  c.max_subscriptions = 4;
  c.api_max_body_bytes = 5;
  c.api_threads = 3;
  c.accept_rate = 0;
  c.accept_burst = 11;
  c.soft_limit_bytes = 6;
  c.soft_limit_ms = 7;
  c.hard_limit_bytes = 8;
  c.batch_bytes = 9;
  c.send_buffer_bytes = 12;
  c.unsent_limit_bytes = 13;
  c.io_uring = false;
  c.dedup_window_s = 10;
  c.publish_backlog = 14;
  c.store_dir = "/var/lib/herald data";
  c.store_synchronous = "NORMAL";
  c.store_commit_window_us = 0;
  c.store_commit_batch = 11;
  c.store_commit_max_bytes = 4096;
  c.store_retention_interval_ms = 12;
  c.store_retention_batch = 13;
  NamespacePolicy news;
  news.name = "news";
  news.subscribe = NamespacePolicy::Subscribe::kAny;
  news.publish = NamespacePolicy::Publish::kAny;
  news.history_size = 0;
  news.history_ttl_s = 1;
  news.durable = true;
  news.latest_value = true;
  NamespacePolicy user = builtin_namespace_policy("user");
  user.history_size = 2;
  NamespacePolicy deflt = builtin_namespace_policy("");
  deflt.subscribe = NamespacePolicy::Subscribe::kNone;
  deflt.publish = NamespacePolicy::Publish::kGrant;
  c.namespaces = {news, user, deflt};
  return c;
}

TEST_F(ConfigTest, ToTomlRoundTrips) {
  const Config changed = everything_changed(cert_, key_, dict_, (dir_ / "ready.json").string());
  // Every line of the default TOML differs in `changed`, so the round trip
  // below really covers every setting.
  {
    std::istringstream defaults(to_toml(Config{}));
    const std::string other = to_toml(changed);
    std::string line;
    while (std::getline(defaults, line)) {
      if (line.empty() || line[0] == '#' || line[0] == '[' || line.rfind("name = ", 0) == 0) continue;
      if (line.rfind("history_", 0) == 0 || line.rfind("subscribe", 0) == 0 || line.rfind("publish", 0) == 0 ||
          line.rfind("durable", 0) == 0 || line.rfind("latest_value", 0) == 0)
        continue;  // namespace lines repeat across namespaces
      EXPECT_EQ(other.find(line + "\n"), std::string::npos) << "unchanged: " << line;
    }
  }
  for (const Config& original : {Config{}, changed}) {
    const std::string file = write("round.toml", to_toml(original));
    Config loaded;
    std::string msg;
    ASSERT_EQ(run({"--config", file}, loaded, msg), ConfigResult::kRun) << msg << "\n" << to_toml(original);
    EXPECT_EQ(loaded, original);
    EXPECT_EQ(to_toml(loaded), to_toml(original));
  }
}

TEST_F(ConfigTest, StoreSettingsAndDurableNamespacesAreValidated) {
  Config c;
  std::string msg;
  EXPECT_EQ(run({"--store.synchronous", "OFF"}, c, msg), ConfigResult::kError);
  EXPECT_EQ(msg, "store.synchronous: \"OFF\" is not FULL or NORMAL");
  EXPECT_EQ(run({"--store.dir", ""}, c, msg), ConfigResult::kError);
  EXPECT_EQ(msg, "store.dir: must not be empty");
  EXPECT_EQ(run({"--store.commit_window_us", "100001"}, c, msg), ConfigResult::kError);
  EXPECT_EQ(msg, "store.commit_window_us: 100001 is outside 0-100000");
  EXPECT_EQ(run({"--store.commit_batch", "0"}, c, msg), ConfigResult::kError);
  EXPECT_EQ(msg, "store.commit_batch: must be at least 1");
  EXPECT_EQ(run({"--namespace", "name=md,latest_value=true"}, c, msg), ConfigResult::kError);
  EXPECT_EQ(msg, "namespace.latest_value: needs durable = true (namespace \"md\")");
  EXPECT_EQ(run({"--namespace", "name=md,durable=maybe"}, c, msg), ConfigResult::kError);
  EXPECT_EQ(msg, "namespace.durable: \"maybe\" is not true or false");

  ASSERT_EQ(run({"--namespace", "name=md,durable=true,latest_value=true"}, c, msg), ConfigResult::kRun) << msg;
  EXPECT_TRUE(c.policy_for("md:x").durable);
  EXPECT_TRUE(c.policy_for("md:x").latest_value);
  EXPECT_TRUE(c.policy_for("user:1").durable);  // the built-in inbox, added back
  EXPECT_FALSE(c.policy_for("news").durable);
  EXPECT_EQ(c.store_dir, "./herald-data");
  EXPECT_EQ(c.store_synchronous, "FULL");

  const std::string file = write("durable.toml", "[[namespace]]\nname = \"md\"\ndurable = 1\n");
  EXPECT_EQ(run({"--config", file}, c, msg), ConfigResult::kError);
  EXPECT_NE(msg.find("namespace.durable: expected true or false, got an integer"), std::string::npos) << msg;
}

TEST_F(ConfigTest, RedactedTomlHidesOnlyNonDefaultSecrets) {
  Config c;
  EXPECT_NE(to_toml(c, Secrets::kRedact).find("herald-dev-secret"), std::string::npos);
  c.jwt_secret = "a-very-secret-production-key";
  c.api_keys = {"herald-dev-api-key", "prod-key-1"};
  const std::string text = to_toml(c, Secrets::kRedact);
  EXPECT_EQ(text.find("a-very-secret-production-key"), std::string::npos) << text;
  EXPECT_EQ(text.find("prod-key-1"), std::string::npos) << text;
  EXPECT_NE(text.find("jwt_secret = \"(redacted)\""), std::string::npos) << text;
  EXPECT_NE(text.find("api_keys = [\"herald-dev-api-key\", \"(redacted)\"]"), std::string::npos) << text;
  EXPECT_NE(to_toml(c).find("a-very-secret-production-key"), std::string::npos);
}

TEST(ConfigPolicy, PolicyForMatchesTheNamespace) {
  Config c;
  std::string msg;
  const char* argv[] = {"heraldd", "--namespace", "name=trade,subscribe=any,history_size=7", "--namespace",
                        "name=,history_size=11"};
  ASSERT_EQ(load_config(5, argv, c, msg), ConfigResult::kRun) << msg;
  EXPECT_EQ(c.policy_for("trade:BTC-USD").name, "trade");
  EXPECT_EQ(c.policy_for("trade:BTC-USD").history_size, 7u);
  EXPECT_EQ(c.policy_for("trade:a:b").name, "trade");  // the namespace is before the first ':'
  EXPECT_EQ(c.policy_for("news").name, "");            // no ':' -> default namespace
  EXPECT_EQ(c.policy_for("news").history_size, 11u);
  EXPECT_EQ(c.policy_for("other:x").name, "");  // unknown namespace -> default
  EXPECT_EQ(c.policy_for("trade").name, "");    // "trade" itself has no namespace
  EXPECT_EQ(c.policy_for(":x").name, "");
  EXPECT_EQ(c.policy_for("user:42").name, "user");
  EXPECT_EQ(c.policy_for("user:42").history_size, 1000u);
  EXPECT_EQ(c.policy_for("").name, "");

  Config defaults;
  EXPECT_EQ(defaults.policy_for("user:1").history_ttl_s, 86400u);
  EXPECT_EQ(defaults.policy_for("x:1").history_size, 100u);

  Config bare;  // hand-built without a "" namespace: still a policy
  bare.namespaces = {builtin_namespace_policy("user")};
  EXPECT_EQ(bare.policy_for("x:1").name, "");
  EXPECT_EQ(bare.policy_for("x:1").subscribe, NamespacePolicy::Subscribe::kGrant);
  bare.namespaces.clear();
  EXPECT_EQ(bare.policy_for("user:1").history_size, 100u);
}

TEST(ConfigSplitHostPort, Cases) {
  struct Good {
    const char* in;
    const char* host;
    uint16_t port;
  };
  for (const Good& g : {Good{"127.0.0.1:7600", "127.0.0.1", 7600}, Good{"0.0.0.0:0", "0.0.0.0", 0},
                        Good{"1.2.3.4:65535", "1.2.3.4", 65535}, Good{"[::1]:80", "::1", 80},
                        Good{"[::]:0", "::", 0}, Good{"[2001:db8::1]:443", "2001:db8::1", 443},
                        Good{"[::ffff:10.0.0.1]:1", "::ffff:10.0.0.1", 1}, Good{"10.0.0.1:00080", "10.0.0.1", 80}}) {
    std::string host;
    uint16_t port = 1234;
    ASSERT_TRUE(split_host_port(g.in, host, port)) << g.in;
    EXPECT_EQ(host, g.host) << g.in;
    EXPECT_EQ(port, g.port) << g.in;
  }
  for (const char* bad : {"", ":", ":80", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:99999",
                          "127.0.0.1:-1", "127.0.0.1:+1", "127.0.0.1:8o", "127.0.0.1:000080", "127.0.0.1: 80",
                          " 127.0.0.1:80", "256.0.0.1:80", "1.2.3:80", "localhost:80", "example.com:443", "::1:80",
                          "[::1]", "[::1]:", "[::1]80", "[::1", "::1]:80", "[127.0.0.1]:80", "[fe80::1%eth0]:80",
                          "[]:80", "[::1]:80:80", "[::g]:80"}) {
    std::string host;
    uint16_t port = 0;
    EXPECT_FALSE(split_host_port(bad, host, port)) << bad;
  }
}

}  // namespace
}  // namespace herald::server
