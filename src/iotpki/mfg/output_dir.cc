#include "iotpki/mfg/output_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

namespace iotpki::mfg {
namespace {

namespace fs = std::filesystem;
constexpr char kPartialDir[] = ".partial";
constexpr char kLockFile[] = ".lock";

}  // namespace

Result<void> WriteFileUnsynced(const fs::path& path, ByteView data, int mode) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd.valid()) return Fail(FileError("cannot create", path, errno));
  // The umask must not widen or narrow what the caller asked for (0600 for secrets).
  if (::fchmod(fd.get(), static_cast<mode_t>(mode)) != 0) {
    return Fail(FileError("cannot set the mode of", path, errno));
  }
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Fail(FileError("cannot write", path, n < 0 ? errno : EIO));
    done += static_cast<size_t>(n);
  }
  // close() reports delayed allocation failures on some file systems (NFS, quota).
  if (int err = fd.Close(); err != 0) return Fail(FileError("cannot write", path, err));
  return {};
}

Result<OutputDir> OutputDir::Open(const fs::path& out, bool must_be_empty) {
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) return Fail(FileError("cannot create the output directory", out, ec.value()));
  if (!fs::is_directory(out, ec)) {
    return Fail(Code::kFailedPrecondition, "--out " + out.string() + " is not a directory");
  }
  if (must_be_empty && !fs::is_empty(out, ec)) {
    return Fail(Code::kFailedPrecondition,
                "--out " + out.string() +
                    " is not empty (continue the batch in it with --resume, or choose a new one)");
  }
  fs::path lock = out / kLockFile;
  Fd fd(::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd.valid()) return Fail(FileError("cannot write to the output directory:", lock, errno));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    return Fail(Code::kFailedPrecondition,
                "another iotpki mfg provision is working in " + out.string());
  }
  OutputDir dir(out, std::move(fd));
  if (::mkdir((out / kPartialDir).c_str(), 0700) != 0 && errno != EEXIST) {
    return Fail(FileError("cannot create", out / kPartialDir, errno));
  }
  return dir;
}

fs::path OutputDir::Partial(std::string_view serial) const {
  return path_ / kPartialDir / fs::path(serial);
}
fs::path OutputDir::Final(std::string_view serial) const { return path_ / fs::path(serial); }

Result<void> OutputDir::MakePartial(std::string_view serial) const {
  fs::path dir = Partial(serial);
  if (::mkdir(dir.c_str(), 0700) == 0) return {};
  if (errno != EEXIST) return Fail(FileError("cannot create", dir, errno));
  IOTPKI_CHECK(RemovePartial(serial));
  if (::mkdir(dir.c_str(), 0700) != 0) return Fail(FileError("cannot create", dir, errno));
  return {};
}

Result<void> OutputDir::Publish(std::string_view serial) const {
  fs::path from = Partial(serial), to = Final(serial);
  // rename(2) would replace an empty directory; a device folder is never replaced.
  if (::access(to.c_str(), F_OK) == 0) {
    return Fail(Code::kAlreadyExists, to.string() + " already exists");
  }
  if (::rename(from.c_str(), to.c_str()) != 0) return Fail(FileError("cannot rename", from, errno));
  return {};
}

Result<void> OutputDir::Unpublish(std::string_view serial) const {
  fs::path from = Final(serial), to = Partial(serial);
  if (::rename(from.c_str(), to.c_str()) != 0) {
    if (errno == ENOENT) return Fail(Code::kNotFound, from.string() + " does not exist");
    return Fail(FileError("cannot rename", from, errno));
  }
  return {};
}

Result<void> OutputDir::RemovePartial(std::string_view serial) const {
  std::error_code ec;
  fs::remove_all(Partial(serial), ec);
  if (ec) return Fail(FileError("cannot remove", Partial(serial), ec.value()));
  return {};
}

Result<std::vector<std::string>> OutputDir::ListPartial() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it(path_ / kPartialDir, ec), end; !ec && it != end;
       it.increment(ec)) {
    out.push_back(it->path().filename().string());
  }
  if (ec) return Fail(FileError("cannot list", path_ / kPartialDir, ec.value()));
  return out;
}

Result<void> OutputDir::Sync() const {
  Fd fd(::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return Fail(FileError("cannot open", path_, errno));
  if (::syncfs(fd.get()) != 0) {
    return Fail(FileError("cannot flush the file system of", path_, errno));
  }
  return {};
}

}  // namespace iotpki::mfg
