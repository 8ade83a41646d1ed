// Group commit: concurrent callers' write batches merged into one store transaction, so that
// one fsync makes many issuances durable. Each caller still learns its own outcome: when a
// merged transaction fails (one batch breaks a constraint, say), the group is split in halves
// and each half committed again, recursively, so only the faulty batch fails and the others
// commit in a few transactions.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "iotpki/common/error.h"
#include "iotpki/store/store.h"

namespace iotpki::ca {

using CommitFn = std::function<Result<store::CommitInfo>(const store::WriteBatch&)>;

// The group commit's core, without threads: commits `batches` through `commit` merged into one
// transaction and returns each batch's own outcome, in order (its share of the audit sequence
// numbers on success). A merged transaction that fails is bisected (see above); a store that
// fails every transaction thus costs up to 2n-1 attempts. `failed_merges`, if set, counts merged
// transactions that failed.
std::vector<Result<store::CommitInfo>> CommitMerged(
    std::span<const store::WriteBatch* const> batches, const CommitFn& commit,
    uint64_t* failed_merges = nullptr);

// Thread-safe. Callers block in Commit; the first caller in the queue becomes the leader,
// commits everything queued behind it (up to max_group batches) in one transaction, and wakes
// the others. No thread of its own.
class GroupCommitter {
 public:
  explicit GroupCommitter(store::Store& store, size_t max_group = 512)
      : store_(store), max_group_(max_group == 0 ? 1 : max_group) {}

  // Returns once `batch` is durable (or refused), with the commit time and its own audit
  // sequence numbers. Errors are those of Store::Commit for this batch alone.
  Result<store::CommitInfo> Commit(const store::WriteBatch& batch);

  struct Stats {
    uint64_t transactions = 0;  // store commits made, including fallbacks
    uint64_t batches = 0;       // batches committed or refused
    uint64_t fallbacks = 0;     // merged transactions that failed and were split in halves
  };
  Stats stats() const;

 private:
  struct Writer {
    const store::WriteBatch* batch;
    std::optional<Result<store::CommitInfo>> result;
    bool done = false;
    std::condition_variable cv;
  };
  void CommitGroup(const std::vector<Writer*>& group);

  store::Store& store_;
  const size_t max_group_;
  std::mutex mu_;
  std::deque<Writer*> queue_;
  std::atomic<uint64_t> transactions_{0}, batches_{0}, fallbacks_{0};
};

}  // namespace iotpki::ca
