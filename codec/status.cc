// Names and descriptions for Status, generated from HERALD_STATUS_LIST.
#include "codec/status.h"

namespace herald::codec {

std::string_view to_string(Status s) noexcept {
  switch (s) {
#define HERALD_STATUS_NAME(name, number, temporary, text) \
  case Status::name:                                      \
    return #name;
    HERALD_STATUS_LIST(HERALD_STATUS_NAME)
#undef HERALD_STATUS_NAME
  }
  return "kUnknownStatus";
}

std::string_view describe(Status s) noexcept {
  switch (s) {
#define HERALD_STATUS_TEXT(name, number, temporary, text) \
  case Status::name:                                      \
    return text;
    HERALD_STATUS_LIST(HERALD_STATUS_TEXT)
#undef HERALD_STATUS_TEXT
  }
  return "unknown status";
}

bool is_temporary(Status s) noexcept {
  switch (s) {
#define HERALD_STATUS_TEMP(name, number, temporary, text) \
  case Status::name:                                      \
    return temporary;
    HERALD_STATUS_LIST(HERALD_STATUS_TEMP)
#undef HERALD_STATUS_TEMP
  }
  return false;
}

bool is_known_status(uint32_t number) noexcept {
  switch (number) {
#define HERALD_STATUS_NUM(name, number, temporary, text) case number:
    HERALD_STATUS_LIST(HERALD_STATUS_NUM)
#undef HERALD_STATUS_NUM
    return true;
    default:
      return false;
  }
}

}  // namespace herald::codec
