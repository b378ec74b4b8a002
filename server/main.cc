// heraldd: the Herald push server. Runs on embedded defaults with no arguments;
// `heraldd --help` lists every setting.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <iostream>

#include "server/config.h"
#include "server/server.h"

namespace {

constexpr const char* kModules[] = {"server", "loop", "session", "api", "tls", "hub"};

void setup_logging(const herald::server::Config& config) {
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  for (const char* name : kModules) {
    auto logger = std::make_shared<spdlog::logger>(name, sink);
    auto it = config.log_levels.find(name);
    logger->set_level(spdlog::level::from_str(it != config.log_levels.end() ? it->second : config.log_level));
    spdlog::register_logger(logger);
  }
  spdlog::set_default_logger(spdlog::get("server"));
}

}  // namespace

int main(int argc, char** argv) {
  herald::server::Config config;
  std::string message;
  switch (herald::server::load_config(argc, argv, config, message)) {
    case herald::server::ConfigResult::kExit:
      std::cout << message;
      return 0;
    case herald::server::ConfigResult::kError:
      std::cerr << "heraldd: " << message << "\n";
      return 2;
    case herald::server::ConfigResult::kRun:
      break;
  }
  setup_logging(config);
  spdlog::get("server")->debug("configuration:\n{}", herald::server::to_toml(config, herald::server::Secrets::kRedact));
  herald::server::Server server(std::move(config));
  std::string error;
  if (!server.start(error)) {
    spdlog::get("server")->critical("cannot start: {}", error);
    return 1;
  }
  return server.run();
}
