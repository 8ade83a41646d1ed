// The campaign scheduler: claims due jobs with a lease, notifies their devices through a
// Notifier, records each step (waves.h decides them), and moves campaigns on (next wave, halt,
// done). Several schedulers over one store never run the same job at once (Store::ClaimJobs).
// `Tick` is one pass, for tests with a FakeClock; `Start` runs passes on a thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "iotpki/campaign/waves.h"
#include "iotpki/common/clock.h"
#include "iotpki/store/store.h"

namespace iotpki::campaign {

// What a device is told (MqttNotifier signs it: command.h).
struct RotateCommand {
  std::string campaign;
  int64_t job = 0;  // ordinal
  std::string device_id;
  store::CampaignMode mode = store::CampaignMode::kRenew;
  int64_t attempt = 0;
  // When the scheduler stops waiting for this attempt (the job's next_attempt_at): the signed
  // command's not_after, so a device never acts on an attempt the server has given up on.
  int64_t answer_by = 0;

  bool operator==(const RotateCommand&) const = default;
};

// Delivers rotate commands. Implementations: in memory (tests), MQTT (later). Thread safety:
// Notify may be called from the scheduler's thread while others read what was sent.
class Notifier {
 public:
  virtual ~Notifier() = default;
  // Unavailable (or any error) if the command could not be handed over; the job then counts a
  // failed attempt and is retried.
  virtual Result<void> Notify(const RotateCommand& command) = 0;
};

// Keeps every command; refuses those for devices in `unreachable`.
class InMemoryNotifier final : public Notifier {
 public:
  Result<void> Notify(const RotateCommand& command) override;
  std::vector<RotateCommand> sent() const;
  void SetUnreachable(std::set<std::string> device_ids);

 private:
  mutable std::mutex mu_;
  std::vector<RotateCommand> sent_;    // Guarded by mu_.
  std::set<std::string> unreachable_;  // Guarded by mu_.
};

struct SchedulerOptions {
  std::string owner = "server";              // Lease owner and audit actor ("server:<owner>").
  std::chrono::seconds lease{300};           // How long a claim holds a job.
  size_t batch = 500;                        // Jobs claimed per pass.
  std::chrono::milliseconds interval{1000};  // Between passes when idle (Start).
};

struct TickReport {
  int64_t claimed = 0;
  int64_t notified = 0;
  int64_t retried = 0;                  // failed attempts with a retry to come
  int64_t failed = 0;                   // jobs failed for good
  int64_t conflicts = 0;                // steps another writer overtook (compare-and-set lost)
  std::vector<CampaignAction> actions;  // campaign transitions written
};

class Scheduler {
 public:
  // Everything must outlive the scheduler.
  Scheduler(store::Store& store, Notifier& notifier, const Clock& clock, Jitter& jitter,
            SchedulerOptions options);
  ~Scheduler();  // Stops the thread.
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // One pass: claim due jobs and step them (one commit for the pass, then the commands), then
  // apply each running campaign's next action. Errors of the store end the pass; a lost
  // compare-and-set does not.
  Result<TickReport> Tick();

  // Runs Tick on a thread until Stop: again at once while a pass claimed a full batch, after
  // `interval` otherwise. A failed pass is logged by the caller's `on_error` and retried;
  // `on_pass` (optional) sees every report (metrics).
  void Start(std::function<void(const Error&)> on_error,
             std::function<void(const TickReport&)> on_pass = nullptr);
  void Stop();

 private:
  struct Planned {
    const store::Campaign* campaign;
    store::Job job;
    JobStep step;
  };
  // Steps every claimed job (one transaction for the pass), then sends the commands of those
  // notified, then records the sends that failed (one more transaction).
  Result<void> StepJobs(const std::map<int64_t, store::Campaign>& campaigns,
                        const std::vector<store::Job>& jobs, int64_t now, TickReport& report);
  // Commits `steps` in one transaction, or each alone when a compare-and-set was lost (counted
  // in report.conflicts); which ones were committed, in order.
  Result<std::vector<bool>> CommitSteps(const std::vector<Planned>& steps, TickReport& report);

  store::Store& store_;
  Notifier& notifier_;
  const Clock& clock_;
  Jitter& jitter_;
  const SchedulerOptions options_;
  const std::string actor_;

  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;  // Guarded by mu_.
  std::thread thread_;
};

}  // namespace iotpki::campaign
