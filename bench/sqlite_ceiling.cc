// W4 ceiling: how many 1 KiB rows per second SQLite itself commits on this disk
// (WAL, synchronous=FULL, heraldd's `messages` schema and pragmas), and how long a
// commit of N rows takes. No heraldd, no HTTP: the upper bound any durable publish
// path can reach here. Writes only under --dir (a temporary directory it removes).
//
//   sqlite_ceiling --dir /tmp/ceil --rows 1,50,200,500,1000,2000 --seconds 5
#include <sqlite3.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

bool exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::fprintf(stderr, "sqlite: %s: %s\n", sql, err != nullptr ? err : "?");
    sqlite3_free(err);
    return false;
  }
  return true;
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(i), v.end());
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "/tmp/herald-sqlite-ceiling";
  std::string rows_list = "1,50,200,500,1000,2000";
  double seconds = 5;
  int payload = 1024;
  bool full = true;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--dir") {
      dir = v;
    } else if (k == "--rows") {
      rows_list = v;
    } else if (k == "--seconds") {
      seconds = std::atof(v.c_str());
    } else if (k == "--payload") {
      payload = std::atoi(v.c_str());
    } else if (k == "--sync") {
      full = v == "FULL";
    } else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  std::vector<int> sizes;
  std::stringstream ss(rows_list);
  for (std::string item; std::getline(ss, item, ',');) sizes.push_back(std::atoi(item.c_str()));

  std::mt19937_64 rng(42);
  std::string body(static_cast<size_t>(payload), '\0');
  for (char& c : body) c = static_cast<char>(rng());  // incompressible, like the protobuf bodies
  std::printf("sqlite %s, payload %d B, synchronous=%s, %.1f s per size\n", sqlite3_libversion(), payload,
              full ? "FULL" : "NORMAL", seconds);
  for (const int n : sizes) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    sqlite3* db = nullptr;
    if (sqlite3_open((dir + "/ceiling.db").c_str(), &db) != SQLITE_OK) return 1;
    // heraldd's pragmas and table (server/sqlite_store.cc).
    if (!exec(db, "PRAGMA journal_mode=WAL") || !exec(db, full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL") ||
        !exec(db, "PRAGMA wal_autocheckpoint=4000") || !exec(db, "PRAGMA cache_size=-65536") ||
        !exec(db,
              "CREATE TABLE messages(channel TEXT NOT NULL, offset INTEGER NOT NULL, message_id TEXT NOT NULL,"
              " collapse_key TEXT NOT NULL, created_ms INTEGER NOT NULL, retain_until_ms INTEGER NOT NULL,"
              " expires_ms INTEGER NOT NULL, dismiss INTEGER NOT NULL, dismissed_ms INTEGER NOT NULL DEFAULT 0,"
              " body BLOB NOT NULL, PRIMARY KEY(channel, offset));"
              "CREATE INDEX messages_by_id ON messages(message_id, channel) WHERE message_id <> '';"
              "CREATE INDEX messages_by_key ON messages(channel, collapse_key) WHERE collapse_key <> '';")) {
      return 1;
    }
    sqlite3_stmt* ins = nullptr;
    sqlite3_prepare_v2(db,
                       "INSERT INTO messages(channel, offset, message_id, collapse_key, created_ms, retain_until_ms,"
                       " expires_ms, dismiss, body) VALUES(?1, ?2, ?3, '', 0, 0, 0, 0, ?4)",
                       -1, &ins, nullptr);
    std::vector<uint64_t> next(1000, 0);
    std::vector<double> commit_ms;
    uint64_t rows = 0, seq = 0;
    const double cpu0 = cpu_seconds();
    const auto t0 = Clock::now();
    const auto end = t0 + std::chrono::duration<double>(seconds);
    while (Clock::now() < end) {
      const auto c0 = Clock::now();
      exec(db, "BEGIN IMMEDIATE");
      for (int i = 0; i < n; ++i) {
        const size_t ch = (seq * 7919) % next.size();
        std::string channel = "user:bench";
        channel += std::to_string(ch);
        std::string id = "m";
        id += std::to_string(seq++);
        sqlite3_bind_text(ins, 1, channel.data(), static_cast<int>(channel.size()), SQLITE_TRANSIENT);
        sqlite3_bind_int64(ins, 2, static_cast<int64_t>(++next[ch]));
        sqlite3_bind_text(ins, 3, id.data(), static_cast<int>(id.size()), SQLITE_TRANSIENT);
        sqlite3_bind_blob(ins, 4, body.data(), static_cast<int>(body.size()), SQLITE_STATIC);
        if (sqlite3_step(ins) != SQLITE_DONE) {
          std::fprintf(stderr, "insert: %s\n", sqlite3_errmsg(db));
          return 1;
        }
        sqlite3_reset(ins);
      }
      if (!exec(db, "COMMIT")) return 1;
      commit_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - c0).count());
      rows += static_cast<uint64_t>(n);
    }
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const double cpu = cpu_seconds() - cpu0;
    std::printf(
        "rows_per_commit=%5d commits=%6zu rows_per_s=%8.0f MiB_per_s=%6.1f commit_ms p50=%6.2f p99=%6.2f max=%6.2f "
        "cpu=%3.0f%%\n",
        n, commit_ms.size(), static_cast<double>(rows) / secs,
        static_cast<double>(rows) * payload / secs / (1024 * 1024), percentile(commit_ms, 0.5),
        percentile(commit_ms, 0.99), *std::max_element(commit_ms.begin(), commit_ms.end()), 100 * cpu / secs);
    std::fflush(stdout);
    sqlite3_finalize(ins);
    sqlite3_close(db);
  }
  std::filesystem::remove_all(dir);
  return 0;
}
