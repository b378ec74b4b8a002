// The `herald` CLI against the real heraldd: --help for every command, exit codes for
// usage errors, refusals, timeouts and unreachable servers, tokens that the server's own
// verifier accepts, pub through the HTTP API, sub in text and JSON lines, ping.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>

#include "server/jwt.h"
#include "server/tls.h"
#include "tests/client_support/recorder.h"

namespace herald::testing {
namespace {

struct CliRun {
  int code = -1;
  std::string out, err;
};

// Runs the CLI with `args` (a shell fragment), capturing stdout and stderr.
CliRun herald_cli(const std::string& args, const std::string& dir) {
  CliRun r;
  const std::string out = dir + "/out", err = dir + "/err";
  const int st = std::system((std::string("timeout 30 ") + HERALD_CLI_PATH + " " + args + " > " + out + " 2> " + err).c_str());
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream o(out), e(err);
  std::stringstream so, se;
  so << o.rdbuf();
  se << e.rdbuf();
  r.out = so.str();
  r.err = se.str();
  return r;
}

class ClientCli : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/herald-cli-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  CliRun run(const std::string& args) { return herald_cli(args, dir_); }
  std::string dir_;
};

TEST_F(ClientCli, HelpForEveryCommandAndUsageErrors) {
  for (const char* cmd : {"", "sub", "pub", "token", "ping"}) {
    const CliRun r = run(std::string(cmd) + " --help");
    EXPECT_EQ(r.code, 0) << cmd;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << cmd << r.out;
  }
  EXPECT_NE(run("--help").out.find("Exit codes"), std::string::npos);
  EXPECT_EQ(run("").code, 2);                      // a command is required
  EXPECT_EQ(run("sub").code, 2);                   // channels are required
  EXPECT_EQ(run("sub --bogus news").code, 2);
  EXPECT_EQ(run("token").code, 2);                 // --user is required
  EXPECT_EQ(run("sub -s nonsense -u a news").code, 2);
  EXPECT_EQ(run("sub news").code, 2);              // no --token and no --user
  EXPECT_EQ(run("pub -c news -d '{not json'").code, 2);
  EXPECT_EQ(run("pub --users a -c news").code, 2);
}

TEST_F(ClientCli, TokensVerifyWithTheServersVerifier) {
  {
    std::ofstream(dir_ + "/heraldd.toml") << "[auth]\njwt_secret = \"a-config-secret-of-enough-length\"\n";
  }
  const CliRun r = run("token -u alice --channels news,trade:* --publish --ttl 600 --config " + dir_ + "/heraldd.toml");
  ASSERT_EQ(r.code, 0) << r.err;
  std::string token = r.out;
  while (!token.empty() && token.back() == '\n') token.pop_back();
  server::JwtSettings s;
  s.secret = "a-config-secret-of-enough-length";
  server::JwtVerifier verifier(s);
  server::TokenClaims claims;
  ASSERT_EQ(verifier.verify(token, std::time(nullptr), claims), codec::Status::kOk);
  EXPECT_EQ(claims.user_id, "alice");
  EXPECT_EQ(claims.channels, (std::vector<std::string>{"news", "trade:*"}));
  EXPECT_TRUE(claims.publish);
  EXPECT_NEAR(static_cast<double>(claims.expires_at_s), static_cast<double>(std::time(nullptr) + 600), 5);
  // Another secret does not verify.
  s.secret = "herald-dev-secret";
  EXPECT_EQ(server::JwtVerifier(s).verify(token, std::time(nullptr), claims), codec::Status::kAuthFailed);
  // --secret wins; the default is the development secret, said on stderr.
  const CliRun dev = run("token -u bob");
  EXPECT_EQ(dev.code, 0);
  EXPECT_NE(dev.err.find("development secret"), std::string::npos);
  std::string dev_token = dev.out.substr(0, dev.out.find('\n'));
  EXPECT_EQ(server::JwtVerifier(s).verify(dev_token, std::time(nullptr), claims), codec::Status::kOk);
  EXPECT_EQ(run("token -u bob --config " + dir_ + "/missing.toml").code, 2);
}

TEST_F(ClientCli, PubSubAndPingAgainstHeraldd) {
  HeralddProcess server;
  ASSERT_TRUE(server.start());
  const std::string tcp = "-s " + server.address("tcp");
  const std::string api = "--api " + server.address("api");

  // sub in the background (JSON lines, two messages), then publish two.
  const std::string sub_out = dir_ + "/sub.out", sub_err = dir_ + "/sub.err";
  const std::string cmd = std::string("timeout 20 ") + HERALD_CLI_PATH + " sub " + tcp +
                          " -u alice --json -n 2 news > " + sub_out + " 2> " + sub_err + "; echo $? > " + dir_ +
                          "/sub.rc";
  std::thread sub([cmd] { (void)std::system(cmd.c_str()); });
  auto read = [](const std::string& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (read(sub_err).find("subscribed to news") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const CliRun p1 = run("pub " + api + " -c news --type order_filled -p P1 --id m-1 -d '{\"qty\":2}'");
  ASSERT_EQ(p1.code, 0) << p1.err;
  EXPECT_EQ(nlohmann::json::parse(p1.out)["offset"], 1);
  const CliRun p2 = run("pub " + api + " -c news --text 'plain words'");
  ASSERT_EQ(p2.code, 0) << p2.err;
  sub.join();
  EXPECT_EQ(read(dir_ + "/sub.rc"), "0\n") << read(sub_err);
  std::istringstream lines(read(sub_out));
  std::string line;
  std::vector<nlohmann::json> got;
  while (std::getline(lines, line)) got.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(got.size(), 2u) << read(sub_out);
  EXPECT_EQ(got[0]["offset"], 1);
  EXPECT_EQ(got[0]["type"], "order_filled");
  EXPECT_EQ(got[0]["priority"], 1);
  EXPECT_EQ(got[0]["message_id"], "m-1");
  EXPECT_EQ(got[0]["payload"]["qty"], 2);
  EXPECT_EQ(got[1]["payload"], "plain words");
  EXPECT_EQ(got[1]["content_type"], "text/plain");

  // Text output, and a position file: a second run resumes after what the first printed.
  const std::string pos = " --position-file " + dir_ + "/pos";
  std::filesystem::create_directories(dir_ + "/t1");
  std::thread text([&] {
    const CliRun r = herald_cli("sub " + tcp + " -u alice -n 1 news" + pos, dir_ + "/t1");
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, "news 3 headline breaking\n");
  });
  const auto deadline2 = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (read(dir_ + "/t1/err").find("subscribed to news") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline2) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(run("pub " + api + " -c news --type headline --text breaking").code, 0);
  text.join();
  ASSERT_EQ(run("pub " + api + " -c news --text later").code, 0);
  const CliRun resumed = run("sub " + tcp + " -u alice -n 1 news" + pos);
  EXPECT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_EQ(resumed.out, "news 4 - later\n");
  EXPECT_NE(resumed.err.find("resumed"), std::string::npos) << resumed.err;

  // Refusals and failures have their exit codes.
  const CliRun dup = run("pub " + api + " -c news --id m-1 -d 1");
  EXPECT_EQ(dup.code, 0);
  EXPECT_EQ(nlohmann::json::parse(dup.out)["duplicate"], true);
  const CliRun badkey = run("pub " + api + " --key wrong -c news -d 1");
  EXPECT_EQ(badkey.code, 3);
  EXPECT_NE(badkey.err.find("HTTP 401"), std::string::npos) << badkey.err;
  const CliRun badchan = run("pub " + api + " -c 'no spaces' -d 1");
  EXPECT_EQ(badchan.code, 3);
  EXPECT_NE(badchan.err.find("kBadChannel"), std::string::npos) << badchan.err;
  const CliRun noapi = run("pub --api 127.0.0.1:" + std::to_string(free_port()) + " -c news -d 1");
  EXPECT_EQ(noapi.code, 5) << noapi.err;
  const CliRun refused = run("sub " + tcp + " -u alice user:bob");
  EXPECT_EQ(refused.code, 3);
  EXPECT_NE(refused.err.find("kPermissionDenied"), std::string::npos) << refused.err;
  const CliRun badtoken = run("sub " + tcp + " -t not-a-token news");
  EXPECT_EQ(badtoken.code, 3);
  EXPECT_NE(badtoken.err.find("kAuthFailed"), std::string::npos) << badtoken.err;
  const CliRun quiet = run("sub " + tcp + " -u alice -q --timeout 0.3 news");
  EXPECT_EQ(quiet.code, 4);
  EXPECT_NE(quiet.err.find("timed out"), std::string::npos);

  const CliRun ping = run("ping " + tcp + " -u alice -n 2 --interval-ms 10");
  EXPECT_EQ(ping.code, 0) << ping.err;
  EXPECT_NE(ping.out.find("pong 2: rtt"), std::string::npos) << ping.out;
  EXPECT_NE(ping.out.find("2 pongs: min"), std::string::npos) << ping.out;
  const CliRun noserver = run("ping -s 127.0.0.1:" + std::to_string(free_port()) + " -u alice");
  EXPECT_EQ(noserver.code, 5);
  EXPECT_NE(noserver.err.find("kConnectFailed"), std::string::npos) << noserver.err;
}

TEST_F(ClientCli, SubOverTlsChecksTheCertificate) {
  ASSERT_EQ(std::system(("cd " + dir_ + " && " + server::kDevCertCommand + " >/dev/null 2>&1").c_str()), 0);
  ASSERT_EQ(std::system(("cd " + dir_ +
                         " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
                         "-keyout other-key.pem -out other-cert.pem -subj /CN=other >/dev/null 2>&1")
                            .c_str()),
            0);
  HeralddProcess server;
  ASSERT_TRUE(server.start({"--listen.tls", "127.0.0.1:0", "--tls.cert_file", dir_ + "/dev-cert.pem",
                            "--tls.key_file", dir_ + "/dev-key.pem"}));
  const std::string tls = "-s " + server.address("tls") + " --tls -u alice ";
  const CliRun wrong = run("ping " + tls + "--ca " + dir_ + "/other-cert.pem");
  EXPECT_EQ(wrong.code, 5);
  EXPECT_NE(wrong.err.find("certificate verify failed"), std::string::npos) << wrong.err;
  const CliRun right = run("ping " + tls + "--ca " + dir_ + "/dev-cert.pem --server-name localhost -n 1");
  EXPECT_EQ(right.code, 0) << right.err;
  EXPECT_NE(right.out.find("TLS"), std::string::npos);
}

}  // namespace
}  // namespace herald::testing
