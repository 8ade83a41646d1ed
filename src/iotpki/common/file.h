// File access used by every layer: whole-file reads, atomic durable writes.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>

#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"

namespace iotpki {

// Reads a whole file. NotFound if it does not exist; refuses files over max_size bytes.
Result<Bytes> ReadFile(const std::filesystem::path& path, size_t max_size = 64 << 20);
Result<std::string> ReadTextFile(const std::filesystem::path& path, size_t max_size = 64 << 20);

// Writes to a temporary file in the same directory with the given mode, fsyncs it, renames it
// over `path` and fsyncs the directory: after a crash the file is either old or new, never
// partial. mode 0600 for anything secret.
Result<void> WriteFileAtomic(const std::filesystem::path& path, ByteView data, int mode = 0644);
inline Result<void> WriteFileAtomic(const std::filesystem::path& path, std::string_view data,
                                    int mode = 0644) {
  return WriteFileAtomic(path, AsBytes(data), mode);
}

// The error of a failed file operation, its message "DOING PATH: strerror(err)": NotFound
// (ENOENT), AlreadyExists (EEXIST), PermissionDenied (EACCES, EPERM, EROFS), ResourceExhausted
// for a full disk or a file size limit (ENOSPC, EDQUOT, EFBIG; the message starts "disk full: "),
// DataLoss (EIO: the device may have lost written data), Internal otherwise.
Error FileError(std::string_view doing, const std::filesystem::path& path, int err);

// fsyncs a directory so that entries created or renamed in it survive a crash.
Result<void> SyncDirectory(const std::filesystem::path& dir);

// Owns a POSIX file descriptor: closed when the owner goes (or by Close, which reports what
// close(2) says: some file systems report a failed write only there). -1 holds nothing.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  // Closes now; 0, or the errno of a failed close(2) (the descriptor is gone either way).
  int Close() {
    if (fd_ < 0) return 0;
    int rc = ::close(std::exchange(fd_, -1));
    return rc == 0 ? 0 : errno;
  }

 private:
  int fd_ = -1;
};

}  // namespace iotpki
