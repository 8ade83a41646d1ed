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

void GroupCommitter::CommitGroup(const std::vector<Writer*>& group) {
  batches_.fetch_add(group.size(), std::memory_order_relaxed);
  if (group.size() > 1) {
    store::WriteBatch merged;
    for (Writer* w : group) merged.Append(*w->batch);
    transactions_.fetch_add(1, std::memory_order_relaxed);
    auto info = store_.Commit(merged);
    if (info) {
      size_t next = 0;
      for (Writer* w : group) {
        store::CommitInfo own{.time = info->time};
        size_t k = AuditCount(*w->batch);
        for (size_t i = 0; i < k && next < info->audit_seqs.size(); ++i) {
          own.audit_seqs.push_back(info->audit_seqs[next++]);
        }
        w->result = std::move(own);
      }
      return;
    }
    // One batch spoiled the transaction (or the store failed): nothing of it was written, so
    // each batch gets its own attempt and its own answer.
    fallbacks_.fetch_add(1, std::memory_order_relaxed);
  }
  for (Writer* w : group) {
    transactions_.fetch_add(1, std::memory_order_relaxed);
    w->result = store_.Commit(*w->batch);
  }
}

GroupCommitter::Stats GroupCommitter::stats() const {
  return Stats{transactions_.load(), batches_.load(), fallbacks_.load()};
}

}  // namespace iotpki::ca
