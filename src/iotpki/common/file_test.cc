#include "iotpki/common/file.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

namespace iotpki {
namespace {

TEST(File, AtomicWriteSetsModeAndReplaces) {
  auto dir =
      std::filesystem::temp_directory_path() / ("iotpki-file-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto path = dir / "secret";
  ASSERT_TRUE(WriteFileAtomic(path, std::string_view("one"), 0600));
  ASSERT_TRUE(WriteFileAtomic(path, std::string_view("two"), 0600));
  EXPECT_EQ(*ReadTextFile(path), "two");
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 1);
  std::filesystem::remove_all(dir);
}

// `--out /dev/null` or a pipe: the data goes to the device, which stays what it was (a rename
// over /dev/null replaced the device node with a file when run as root).
TEST(File, AtomicWriteToAPipeWritesInPlace) {
  auto dir =
      std::filesystem::temp_directory_path() / ("iotpki-fifo-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto fifo = dir / "pipe";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::string got;
  std::thread reader([&] {
    int fd = ::open(fifo.c_str(), O_RDONLY);
    char buf[64];
    ssize_t n;
    while (fd >= 0 && (n = ::read(fd, buf, sizeof buf)) > 0)
      got.append(buf, static_cast<size_t>(n));
    if (fd >= 0) ::close(fd);
  });
  auto r = WriteFileAtomic(fifo, std::string_view("through the pipe"));
  reader.join();
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(got, "through the pipe");
  struct stat st {};
  ASSERT_EQ(::lstat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 1);
  std::filesystem::remove_all(dir);
}

TEST(File, AtomicWriteRefusesADirectory) {
  auto r = WriteFileAtomic(std::filesystem::temp_directory_path(), std::string_view("x"));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("is a directory"), std::string::npos);
}

bool IsOpen(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

TEST(Fd, ClosesOnceWhenItsLastOwnerGoes) {
  int pipes[2];
  ASSERT_EQ(::pipe(pipes), 0);
  Fd write_end(pipes[1]);
  {
    Fd read_end(pipes[0]);
    Fd moved(std::move(read_end));
    EXPECT_FALSE(read_end.valid());  // NOLINT(bugprone-use-after-move): moved-from holds nothing
    EXPECT_EQ(moved.get(), pipes[0]);
    EXPECT_TRUE(IsOpen(pipes[0]));
  }
  EXPECT_FALSE(IsOpen(pipes[0]));
  EXPECT_EQ(write_end.Close(), 0);
  EXPECT_FALSE(IsOpen(pipes[1]));
  EXPECT_EQ(write_end.Close(), 0);  // nothing left to close
  Fd assigned(::dup(STDERR_FILENO));
  int first = assigned.get();
  assigned = Fd(::dup(STDERR_FILENO));
  EXPECT_FALSE(IsOpen(first) && first != assigned.get());
  int kept = assigned.release();
  EXPECT_TRUE(IsOpen(kept));
  ::close(kept);
}

TEST(File, MissingFileIsNotFound) {
  auto r = ReadFile("/nonexistent/iotpki/file");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kNotFound);
}

TEST(File, UnwritableDirectoryFails) {
  auto r = WriteFileAtomic("/nonexistent/iotpki/file", std::string_view("x"));
  EXPECT_FALSE(r);
}

// One errno mapping for every layer (the factory's output and common's files once disagreed on
// EIO): EIO means written data may be gone, which is DataLoss, not an internal error.
TEST(File, FileErrorMapsErrnoToCodes) {
  auto dataloss = FileError("cannot sync", "/x/y", EIO);
  EXPECT_EQ(dataloss.code(), Code::kDataLoss);
  EXPECT_EQ(dataloss.message(), "cannot sync /x/y: " + std::string(std::strerror(EIO)));
  EXPECT_EQ(FileError("cannot open", "f", ENOENT).code(), Code::kNotFound);
  EXPECT_EQ(FileError("cannot create", "f", EEXIST).code(), Code::kAlreadyExists);
  for (int err : {EACCES, EPERM, EROFS}) {
    EXPECT_EQ(FileError("cannot write", "f", err).code(), Code::kPermissionDenied) << err;
  }
  for (int err : {ENOSPC, EDQUOT, EFBIG}) {
    auto full = FileError("cannot write", "f", err);
    EXPECT_EQ(full.code(), Code::kResourceExhausted) << err;
    EXPECT_EQ(full.message().rfind("disk full: cannot write f: ", 0), 0u) << full.message();
  }
  EXPECT_EQ(FileError("cannot read", "f", EBADF).code(), Code::kInternal);
}

}  // namespace
}  // namespace iotpki
