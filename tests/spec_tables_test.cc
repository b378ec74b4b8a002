// docs/protocol.md and the code share one list of status codes (§9.1) and of
// frame types (§4.1): this test fails when the two drift apart in either
// direction (a row missing, a number or name or flag different).
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <string>

#include "codec/frame_header.h"
#include "codec/status.h"

namespace herald::codec {
namespace {

std::string read_spec() {
  std::ifstream in(std::string(HERALD_SOURCE_DIR) + "/docs/protocol.md");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The lines of the section whose heading starts with `heading`.
std::string section(const std::string& spec, const std::string& heading) {
  const auto start = spec.find("\n" + heading);
  if (start == std::string::npos) return "";
  const auto end = spec.find("\n### ", start + 1);
  return spec.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

TEST(SpecTables, StatusTableMatchesStatusList) {
  const std::string table = section(read_spec(), "### 9.1");
  ASSERT_FALSE(table.empty()) << "docs/protocol.md has no §9.1";
  // | 100 | kBadMagic | no | ...
  const std::regex row(R"(\n\| (\d+) \| (k\w+) \| (?:\*\*)?(yes|no)(?:\*\*)? \|)");
  std::map<int, std::pair<std::string, bool>> documented;
  for (std::sregex_iterator it(table.begin(), table.end(), row), end; it != end; ++it) {
    documented[std::stoi((*it)[1])] = {(*it)[2], (*it)[3] == "yes"};
  }
  std::map<int, std::pair<std::string, bool>> code;
#define HERALD_STATUS_ROW(name, number, temporary, text) code[number] = {#name, temporary};
  HERALD_STATUS_LIST(HERALD_STATUS_ROW)
#undef HERALD_STATUS_ROW
  EXPECT_EQ(documented, code);
}

TEST(SpecTables, FrameTypeTableMatchesFrameTypeList) {
  const std::string table = section(read_spec(), "### 4.1");
  ASSERT_FALSE(table.empty()) << "docs/protocol.md has no §4.1";
  // | `0x020` | Publication | S→C | **data** | ...
  const std::regex row(R"(\n\| `0x([0-9A-Fa-f]{3})` \| (\w+) \| [^|]+ \| (\*\*data\*\*|control) \|)");
  std::map<int, std::pair<std::string, bool>> documented;
  for (std::sregex_iterator it(table.begin(), table.end(), row), end; it != end; ++it) {
    documented[std::stoi((*it)[1], nullptr, 16)] = {(*it)[2], (*it)[3] == "control"};
  }
  std::map<int, std::pair<std::string, bool>> code;
#define HERALD_TYPE_ROW(name, number, control) code[number] = {std::string(#name).substr(1), control};
  HERALD_FRAME_TYPE_LIST(HERALD_TYPE_ROW)
#undef HERALD_TYPE_ROW
  EXPECT_EQ(documented, code);
}

}  // namespace
}  // namespace herald::codec
