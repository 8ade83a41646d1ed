#include "iotpki/common/file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

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

TEST(File, MissingFileIsNotFound) {
  auto r = ReadFile("/nonexistent/iotpki/file");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kNotFound);
}

TEST(File, UnwritableDirectoryFails) {
  auto r = WriteFileAtomic("/nonexistent/iotpki/file", std::string_view("x"));
  EXPECT_FALSE(r);
}

}  // namespace
}  // namespace iotpki
