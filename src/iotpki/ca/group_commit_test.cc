#include "iotpki/ca/group_commit.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>
#include <vector>

#include "iotpki/common/clock.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/store/sqlite/sqlite_store.h"

namespace iotpki::ca {
namespace {

store::Device NewDevice(int i) {
  store::Device d;
  d.device_id = ToHex(crypto::Sha256(AsBytes("device-" + std::to_string(i))));
  d.serial = "SN-" + std::to_string(i);
  d.model = "m";
  return d;
}

store::WriteBatch DeviceBatch(int i) {
  store::WriteBatch b;
  b.InsertDevice(NewDevice(i));
  b.AppendAudit({.actor = "test", .action = "device.add", .subject = NewDevice(i).device_id});
  return b;
}

class GroupCommitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("iotpki-gc-" + ToHex(crypto::RandomBytes(6)));
    std::filesystem::create_directories(dir_);
    auto s = store::OpenSqliteStore(dir_ / "t.db", clock_);
    ASSERT_TRUE(s) << s.error().ToString();
    store_ = std::move(*s);
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  FakeClock clock_{1'750'000'000};
  std::filesystem::path dir_;
  std::unique_ptr<store::Store> store_;
};

TEST_F(GroupCommitTest, ConcurrentBatchesAllCommitWithTheirOwnAuditSeqs) {
  GroupCommitter gc(*store_);
  constexpr int kThreads = 8, kPerThread = 25;
  std::vector<std::thread> threads;
  std::vector<std::vector<int64_t>> seqs(kThreads * kPerThread);
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        int n = t * kPerThread + i;
        auto info = gc.Commit(DeviceBatch(n));
        if (!info) {
          ++failures;
          continue;
        }
        seqs[n] = info->audit_seqs;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  std::set<int64_t> all;
  for (const auto& s : seqs) {
    ASSERT_EQ(s.size(), 1u);
    all.insert(s[0]);
  }
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kPerThread));
  // Each batch's audit row is the one that names its device.
  auto rows = store_->ReadAudit(1, 1000);
  ASSERT_TRUE(rows);
  for (int n = 0; n < kThreads * kPerThread; ++n) {
    EXPECT_EQ((*rows)[static_cast<size_t>(seqs[n][0] - 1)].subject, NewDevice(n).device_id);
  }
  auto stats = gc.stats();
  EXPECT_EQ(stats.batches, static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_LE(stats.transactions, stats.batches);
}

TEST_F(GroupCommitTest, AFailingBatchFailsAloneAndTheOthersCommit) {
  ASSERT_TRUE(store_->Commit(DeviceBatch(0)));
  GroupCommitter gc(*store_);
  constexpr int kThreads = 8;
  std::vector<std::thread> threads;
  std::vector<bool> ok(kThreads * 10);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        int n = t * 10 + i;  // n == 0 duplicates the device committed above
        auto r = gc.Commit(DeviceBatch(n));
        ok[n] = r.has_value();
        if (n == 0) {
          EXPECT_EQ(r.error().code(), Code::kAlreadyExists);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int n = 1; n < kThreads * 10; ++n) EXPECT_TRUE(ok[n]) << n;
  EXPECT_FALSE(ok[0]);
  auto count = store_->CountDevices({});
  ASSERT_TRUE(count);
  EXPECT_EQ(*count, kThreads * 10);
}

TEST_F(GroupCommitTest, OneTokenInManyConcurrentBatchesCommitsOnce) {
  // As the JSON API does: the replay row first in each issuance's batch. Whether the duplicates
  // meet in one merged transaction or in successive ones, exactly one batch commits, and the
  // other devices' batches are not held back by them.
  GroupCommitter gc(*store_);
  for (int round = 0; round < 20; ++round) {
    constexpr int kThreads = 8;
    std::string token_owner = NewDevice(1000 + round).device_id;
    std::atomic<int> committed{0}, replays{0}, others{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        int n = round * kThreads + t;
        store::WriteBatch b;
        // Even threads replay one token; odd threads carry tokens of their own.
        b.RecordToken(t % 2 == 0 ? token_owner : NewDevice(n).device_id, 1'750'000'000);
        b.Append(DeviceBatch(n));
        auto r = gc.Commit(b);
        if (t % 2 == 1) {
          EXPECT_TRUE(r) << r.error().ToString();
          if (r) ++others;
        } else if (r) {
          ++committed;
        } else {
          EXPECT_EQ(r.error().code(), Code::kAlreadyExists) << r.error().ToString();
          ++replays;
        }
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(committed.load(), 1);
    EXPECT_EQ(replays.load(), kThreads / 2 - 1);
    EXPECT_EQ(others.load(), kThreads / 2);
  }
  EXPECT_EQ(*store_->CountDevices({}), 20 * (8 / 2 + 1));
}

// A merged transaction that one batch spoils: that batch fails alone with its own error, the
// others commit, and the store is not asked once per batch (512 fsyncs for a full group).
TEST_F(GroupCommitTest, AFailingBatchInAMergedCommitCostsFewTransactions) {
  ASSERT_TRUE(store_->Commit(DeviceBatch(0)));
  constexpr int kBatches = 64;
  for (int bad : {0, 37, kBatches - 1}) {
    std::vector<store::WriteBatch> batches;
    int base = 1000 * (bad + 1);
    for (int i = 0; i < kBatches; ++i) batches.push_back(DeviceBatch(i == bad ? 0 : base + i));
    std::vector<const store::WriteBatch*> ptrs;
    for (const auto& b : batches) ptrs.push_back(&b);
    int commits = 0;
    uint64_t failed_merges = 0;
    auto results = CommitMerged(
        ptrs,
        [&](const store::WriteBatch& b) {
          ++commits;
          return store_->Commit(b);
        },
        &failed_merges);
    ASSERT_EQ(results.size(), static_cast<size_t>(kBatches));
    for (int i = 0; i < kBatches; ++i) {
      if (i == bad) {
        ASSERT_FALSE(results[i]);
        EXPECT_EQ(results[i].error().code(), Code::kAlreadyExists);
      } else {
        ASSERT_TRUE(results[i]) << i << ": " << results[i].error().ToString();
        ASSERT_EQ(results[i]->audit_seqs.size(), 1u);
        // Each batch's audit row is the one that names its device.
        auto row = store_->ReadAudit(results[i]->audit_seqs[0], 1);
        ASSERT_TRUE(row && row->size() == 1u);
        EXPECT_EQ(row->at(0).subject, NewDevice(base + i).device_id);
      }
    }
    // Bisection: the merged try, then two halves on each of log2(64) levels.
    EXPECT_LE(commits, 1 + 2 * 6) << "bad batch " << bad;
    EXPECT_GE(failed_merges, 1u);
  }
  EXPECT_EQ(*store_->CountDevices({}), 1 + 3 * (kBatches - 1));
}

// GroupCommitter merges its callers' batches with WriteBatch::Append.
TEST(WriteBatchAppendTest, KeepsOrderAndKinds) {
  store::WriteBatch a, b;
  a.InsertDevice(NewDevice(1));
  b.UpdateDeviceState(NewDevice(1).device_id, store::DeviceState::kManufactured,
                      store::DeviceState::kActive);
  b.RevokeCertificate("01", store::RevocationReason::kSuperseded);
  b.AppendAudit({.actor = "x"});
  b.RecordToken(NewDevice(1).device_id, 42);
  a.Append(b);
  EXPECT_EQ(b.size(), 4u);  // copied from
  store::WriteBatch moved;
  moved.Append(std::move(a)).Append(std::move(b));
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): Append leaves it empty
  EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move)
  ASSERT_EQ(moved.size(), 9u);
  // a's own device, b's four copied into a, then b's four moved.
  EXPECT_TRUE(std::holds_alternative<store::InsertDeviceOp>(moved.ops()[0]));
  for (size_t start : {size_t{1}, size_t{5}}) {
    EXPECT_TRUE(std::holds_alternative<store::UpdateDeviceStateOp>(moved.ops()[start]));
    EXPECT_TRUE(std::holds_alternative<store::RevokeCertificateOp>(moved.ops()[start + 1]));
    EXPECT_TRUE(std::holds_alternative<store::AppendAuditOp>(moved.ops()[start + 2]));
    const auto* token = std::get_if<store::RecordTokenOp>(&moved.ops()[start + 3]);
    ASSERT_NE(token, nullptr);
    EXPECT_EQ(token->device_id, NewDevice(1).device_id);
    EXPECT_EQ(token->timestamp, 42);
  }
}

}  // namespace
}  // namespace iotpki::ca
