// A small persistent thread pool for fork-join work: run(n, fn) calls fn(0..n-1) on the calling
// thread and n-1 workers and returns when all are done. Workers spin briefly before sleeping so
// back-to-back calls (a stimulus loop) do not pay a futex wake-up each time.
#pragma once
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace cc {

class ThreadPool {
public:
    explicit ThreadPool(int threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return int(workers_.size()) + 1; }
    // Not re-entrant: one run() at a time (the Engine serialises callers).
    void run(int n, const std::function<void(int)>& fn);

private:
    void worker_loop(int id);

    std::vector<std::thread> workers_;
    std::mutex mu_;
    std::condition_variable wake_;
    const std::function<void(int)>* job_ = nullptr;
    int job_n_ = 0;
    std::atomic<unsigned> generation_{0};
    std::atomic<int> pending_{0};
    bool stop_ = false;
};

}  // namespace cc
