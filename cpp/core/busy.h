// The error of a stream found in use by another thread: its own type so that callers can tell
// it from other failures (the C API returns a status for it) while Python still sees the
// RuntimeError it always raised.
#pragma once

#include <stdexcept>

namespace pyrnn {

class StreamBusy : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace pyrnn
