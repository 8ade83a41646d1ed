#include "iotpki/ca/group_commit.h"

#include <algorithm>
#include <variant>

namespace iotpki::ca {
namespace {

size_t AuditCount(const store::WriteBatch& batch) {
  return static_cast<size_t>(std::count_if(
      batch.ops().begin(), batch.ops().end(),
      [](const store::WriteOp& op) { return std::holds_alternative<store::AppendAuditOp>(op); }));
}

}  // namespace

Result<store::CommitInfo> GroupCommitter::Commit(const store::WriteBatch& batch) {
  Writer self{&batch};
  std::unique_lock<std::mutex> lock(mu_);
  queue_.push_back(&self);
  while (!self.done && queue_.front() != &self) self.cv.wait(lock);
  if (self.done) return std::move(*self.result);

  // This caller leads: it commits itself and whoever queued behind it meanwhile.
  size_t n = std::min(queue_.size(), max_group_);
  std::vector<Writer*> group(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(n));
  lock.unlock();
  CommitGroup(group);
  lock.lock();
  for (size_t i = 0; i < n; ++i) {
    Writer* w = queue_.front();
    queue_.pop_front();
    w->done = true;
    if (w != &self) w->cv.notify_one();
  }
  if (!queue_.empty()) queue_.front()->cv.notify_one();
  return std::move(*self.result);
}

std::vector<Result<store::CommitInfo>> CommitMerged(
    std::span<const store::WriteBatch* const> batches, const CommitFn& commit,
    uint64_t* failed_merges) {
  std::vector<Result<store::CommitInfo>> results;
  results.reserve(batches.size());
  if (batches.size() > 1) {
    store::WriteBatch merged;
    for (const store::WriteBatch* b : batches) merged.Append(*b);
    auto info = commit(merged);
    if (info) {
      size_t next = 0;
      for (const store::WriteBatch* b : batches) {
        store::CommitInfo own{.time = info->time};
        size_t k = AuditCount(*b);
        for (size_t i = 0; i < k && next < info->audit_seqs.size(); ++i) {
          own.audit_seqs.push_back(info->audit_seqs[next++]);
        }
        results.push_back(std::move(own));
      }
      return results;
    }
    // One batch spoiled the transaction (or the store failed): nothing of it was written. Each
    // half is tried again on its own, down to the batch at fault, which fails alone with its own
    // error: with one bad batch among n, about 2 log2(n) transactions rather than n.
    if (failed_merges != nullptr) ++*failed_merges;
    size_t half = batches.size() / 2;
    results = CommitMerged(batches.first(half), commit, failed_merges);
    auto rest = CommitMerged(batches.subspan(half), commit, failed_merges);
    for (auto& r : rest) results.push_back(std::move(r));
    return results;
  }
  for (const store::WriteBatch* b : batches) results.push_back(commit(*b));
  return results;
}

void GroupCommitter::CommitGroup(const std::vector<Writer*>& group) {
  batches_.fetch_add(group.size(), std::memory_order_relaxed);
  std::vector<const store::WriteBatch*> batches;
  batches.reserve(group.size());
  for (Writer* w : group) batches.push_back(w->batch);
  uint64_t failed = 0;
  auto results = CommitMerged(
      batches,
      [this](const store::WriteBatch& b) {
        transactions_.fetch_add(1, std::memory_order_relaxed);
        return store_.Commit(b);
      },
      &failed);
  fallbacks_.fetch_add(failed, std::memory_order_relaxed);
  for (size_t i = 0; i < group.size(); ++i) group[i]->result = std::move(results[i]);
}

GroupCommitter::Stats GroupCommitter::stats() const {
  return Stats{transactions_.load(), batches_.load(), fallbacks_.load()};
}

}  // namespace iotpki::ca
