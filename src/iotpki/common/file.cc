#include "iotpki/common/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

namespace iotpki {
namespace {}  // namespace

Error FileError(std::string_view doing, const std::filesystem::path& path, int err) {
  std::string what = std::string(doing) + " " + path.string() + ": " + std::strerror(err);
  switch (err) {
    case ENOENT:
      return Error(Code::kNotFound, what);
    case EEXIST:
      return Error(Code::kAlreadyExists, what);
    case EACCES:
    case EPERM:
    case EROFS:
      return Error(Code::kPermissionDenied, what);
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return Error(Code::kResourceExhausted, "disk full: " + what);
    case EIO:
      return Error(Code::kDataLoss, what);
    default:
      return Error(Code::kInternal, what);
  }
}

Result<Bytes> ReadFile(const std::filesystem::path& path, size_t max_size) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return Fail(FileError("cannot open", path, errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Fail(FileError("cannot stat", path, errno));
  if (S_ISDIR(st.st_mode)) {
    return Fail(Code::kInvalidArgument, path.string() + " is a directory, not a file");
  }
  Bytes out;
  uint8_t buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(FileError("cannot read", path, errno));
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_size) {
      return Fail(Code::kInvalidArgument,
                  path.string() + " is larger than " + std::to_string(max_size) + " bytes");
    }
    out.insert(out.end(), buf, buf + n);
  }
  return out;
}

Result<std::string> ReadTextFile(const std::filesystem::path& path, size_t max_size) {
  IOTPKI_TRY(Bytes data, ReadFile(path, max_size));
  return std::string(data.begin(), data.end());
}

Result<void> SyncDirectory(const std::filesystem::path& dir) {
  Fd fd(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return Fail(FileError("cannot open directory", dir, errno));
  if (::fsync(fd.get()) != 0) return Fail(FileError("cannot sync directory", dir, errno));
  return {};
}

// `path` is a device, a pipe or a socket (`--out /dev/stdout`, `/dev/null`): written in place,
// since renaming a file over it would replace the device node (as root, /dev/null itself).
Result<void> WriteInPlace(const std::filesystem::path& path, ByteView data) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (fd.get() < 0) return Fail(FileError("cannot open", path, errno));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(FileError("cannot write", path, errno));
    }
    off += static_cast<size_t>(n);
  }
  return {};
}

Result<void> WriteFileAtomic(const std::filesystem::path& path, ByteView data, int mode) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    if (S_ISDIR(st.st_mode)) {
      return Fail(Code::kInvalidArgument, path.string() + " is a directory, not a file");
    }
    return WriteInPlace(path, data);
  }
  std::filesystem::path dir = path.parent_path();
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::filesystem::path tmp = path;
  tmp += ".tmp-" + std::to_string(rng() % 1000000000);
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (fd.get() < 0) return Fail(FileError("cannot create", tmp, errno));
  // The umask may have narrowed the mode; callers ask for exactly what they want.
  if (::fchmod(fd.get(), static_cast<mode_t>(mode)) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Fail(FileError("cannot chmod", tmp, err));
  }
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::unlink(tmp.c_str());
      return Fail(FileError("cannot write", path, err));
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Fail(FileError("cannot sync", path, err));
  }
  ::close(fd.release());
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Fail(FileError("cannot rename into", path, err));
  }
  return SyncDirectory(dir);
}

}  // namespace iotpki
