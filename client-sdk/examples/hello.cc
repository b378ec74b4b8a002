// The two-minute C++ example: subscribe to a channel and print messages as they arrive.
// Build against the installed SDK with CMake (this folder's CMakeLists.txt uses
// find_package(Herald)); run: ./hello_cpp 127.0.0.1 7600 "$(herald token -u alice --channels news)" news 3
#include <herald/client.h>

#include <condition_variable>
#include <cstdlib>
#include <iostream>
#include <mutex>

int main(int argc, char** argv) {
  if (argc != 6) {
    std::cerr << "usage: " << argv[0] << " HOST PORT TOKEN CHANNEL COUNT\n";
    return 2;
  }
  herald::Options options;
  options.host = argv[1];
  options.port = static_cast<uint16_t>(std::atoi(argv[2]));
  options.token = argv[3];
  options.position_file = "hello.positions";  // a restarted app resumes where it stopped

  std::mutex mu;
  std::condition_variable cv;
  int remaining = std::atoi(argv[5]);
  bool failed = false;

  herald::Handlers handlers;  // all called on the SDK's loop thread
  handlers.on_subscribed = [](const herald::Subscribed& s) {
    std::cout << "subscribed " << s.channel << (s.lost_history() ? " (history lost: reload your state)" : "")
              << std::endl;
  };
  handlers.on_message = [&](const herald::Message& m) {
    std::cout << m.channel << " #" << m.offset << ": " << m.payload << std::endl;
    std::lock_guard<std::mutex> lock(mu);
    if (--remaining == 0) cv.notify_one();
  };  // returning acks the message
  handlers.on_state = [&](herald::ConnectionState state, const herald::Error* e) {
    if (e != nullptr) std::cerr << herald::to_string(state) << ": " << e->name << ": " << e->text << std::endl;
    if (state == herald::ConnectionState::kFailed) {
      std::lock_guard<std::mutex> lock(mu);
      failed = true;
      cv.notify_one();
    }
  };

  std::string error;
  auto client = herald::Client::create(options, handlers, &error);
  if (!client) {
    std::cerr << "herald: " << error << std::endl;
    return 1;
  }
  client->subscribe(argv[4]);
  client->start();
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return remaining <= 0 || failed; });
  return failed ? 1 : 0;  // ~Client stops and stores positions
}
