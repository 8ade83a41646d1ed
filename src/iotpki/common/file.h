// File access used by every layer: whole-file reads, atomic durable writes.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

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

}  // namespace iotpki
