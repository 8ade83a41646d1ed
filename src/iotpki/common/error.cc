#include "iotpki/common/error.h"

namespace iotpki {

std::string_view CodeName(Code code) {
  switch (code) {
    case Code::kInvalidArgument:
      return "invalid_argument";
    case Code::kNotFound:
      return "not_found";
    case Code::kAlreadyExists:
      return "already_exists";
    case Code::kPermissionDenied:
      return "permission_denied";
    case Code::kUnauthenticated:
      return "unauthenticated";
    case Code::kFailedPrecondition:
      return "failed_precondition";
    case Code::kResourceExhausted:
      return "resource_exhausted";
    case Code::kUnavailable:
      return "unavailable";
    case Code::kAborted:
      return "aborted";
    case Code::kUnimplemented:
      return "unimplemented";
    case Code::kInternal:
      return "internal";
    case Code::kDataLoss:
      return "data_loss";
  }
  return "unknown";
}

std::string Error::ToString() const {
  if (detail_.empty()) return message_;
  return message_ + " (" + detail_ + ")";
}

Error&& Error::Context(std::string_view what) && {
  message_ = std::string(what) + ": " + message_;
  return std::move(*this);
}

}  // namespace iotpki
