// A small persistent thread pool for fork-join work: run(n, fn) calls fn(0..n-1) on the calling
// thread and n-1 workers and returns when all are done. After each job, workers poll for the
// next one for spin_us microseconds before sleeping: on a VM a core that halts runs the next
// job slowly for a while, so a stimulus loop may keep them polling between its calls.
// Every job runs with subnormal floats flushed to zero (FlushDenormals): on x86 an operation on
// a subnormal input or result can cost ~100x a normal one, a deadline risk for stimulus loops
// fed tiny values, while the change to any result is below 1e-37.
#pragma once
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace cc {

// While alive, the calling thread treats subnormal inputs as zero and flushes subnormal results
// to zero (x86 MXCSR DAZ + FTZ; aarch64 FPCR.FZ); the previous mode is restored after.
class FlushDenormals {
public:
    FlushDenormals();
    ~FlushDenormals();
    FlushDenormals(const FlushDenormals&) = delete;
    FlushDenormals& operator=(const FlushDenormals&) = delete;

private:
    unsigned long long saved_ = 0;
};

class ThreadPool {
public:
    explicit ThreadPool(int threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return int(workers_.size()) + 1; }
    void set_spin_us(double us) { spin_ns_.store(int64_t(us * 1e3)); }
    double spin_us() const { return spin_ns_.load() / 1e3; }
    // Not re-entrant: one run() / run_elastic() at a time (the Engine serialises callers).
    void run(int n, const std::function<void(int)>& fn);
    // For work that fn claims itself (atomic counters): fn(0) runs on the calling thread, and
    // fn(id) on each worker that wakes while the job is still open; returns once fn(0) has
    // returned and every worker that joined has left. A sleeping worker (a futex wake-up in a
    // VM can take longer than one image) then costs nothing: the caller does its share.
    void run_elastic(const std::function<void(int)>& fn);

private:
    void worker_loop(int id);
    void stop();  // wakes, ends and joins every worker

    std::vector<std::thread> workers_;
    std::mutex mu_;
    std::condition_variable wake_;
    const std::function<void(int)>* job_ = nullptr;
    int job_n_ = 0;
    std::atomic<unsigned> generation_{0};
    std::atomic<int> pending_{0};
    bool elastic_ = false;            // the current job is run_elastic's
    std::atomic<bool> open_{false};   // run_elastic: workers may still join
    std::atomic<int> inside_{0};      // run_elastic: workers in fn (or checking whether to enter)
    bool stop_ = false;
    std::atomic<int64_t> spin_ns_{200000};  // 0.2 ms, as compactcortex.engine.frontend
};

}  // namespace cc
