#include "iotpki/crypto/secret.h"

#include <gtest/gtest.h>

#include <type_traits>

namespace iotpki::crypto {
namespace {

static_assert(!std::is_copy_constructible_v<Secret>, "no implicit copies of a secret");
static_assert(!std::is_copy_assignable_v<Secret>, "no implicit copies of a secret");
static_assert(std::is_nothrow_move_constructible_v<Secret>);

TEST(Secret, TakeWipesTheSource) {
  std::string pass = "correct horse";
  Secret s = Secret::Take(pass);
  EXPECT_TRUE(pass.empty());
  EXPECT_EQ(s.view(), "correct horse");
}

TEST(Secret, MoveLeavesTheSourceEmptyAndKeepsTheBuffer) {
  Secret a(Bytes{1, 2, 3, 4});
  const uint8_t* where = a.bytes().data();
  Secret b = std::move(a);
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): the contract under test
  EXPECT_EQ(b.bytes().data(), where) << "moving must not copy the bytes elsewhere";
  Secret c;
  c = std::move(b);
  EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(c.size(), 4u);
}

TEST(Secret, CopyIsExplicitAndEqualityComparesBytes) {
  Secret a(Bytes{9, 8, 7});
  Secret b = a.Copy();
  EXPECT_TRUE(a == b);
  EXPECT_FALSE(a == Secret(Bytes{9, 8, 6}));
  EXPECT_FALSE(a == Secret(Bytes{9, 8}));
  EXPECT_NE(a.bytes().data(), b.bytes().data());
}

}  // namespace
}  // namespace iotpki::crypto
