#include "thread_pool.hpp"

#include <chrono>
#include <system_error>
#include <string>
#include <stdexcept>

namespace cc {

#if defined(__x86_64__) || defined(__i386__)
FlushDenormals::FlushDenormals() {
    unsigned csr;
    __asm__ volatile("stmxcsr %0" : "=m"(csr));
    saved_ = csr;
    csr |= 0x8040u;  // FTZ (bit 15) | DAZ (bit 6)
    __asm__ volatile("ldmxcsr %0" : : "m"(csr));
}
FlushDenormals::~FlushDenormals() {
    unsigned csr = unsigned(saved_);
    __asm__ volatile("ldmxcsr %0" : : "m"(csr));
}
#elif defined(__aarch64__)
FlushDenormals::FlushDenormals() {
    unsigned long long fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    saved_ = fpcr;
    fpcr |= 1ull << 24;  // FZ
    __asm__ volatile("msr fpcr, %0" : : "r"(fpcr));
}
FlushDenormals::~FlushDenormals() { __asm__ volatile("msr fpcr, %0" : : "r"(saved_)); }
#else
FlushDenormals::FlushDenormals() {}
FlushDenormals::~FlushDenormals() {}
#endif

ThreadPool::ThreadPool(int threads) {
    try {
        for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
    } catch (const std::system_error& e) {  // the OS refused a thread (limits, memory)
        stop();
        throw std::runtime_error("could not start " + std::to_string(threads) + " threads: " + e.what() +
                                 " (ask for fewer threads)");
    }
}

ThreadPool::~ThreadPool() { stop(); }

void ThreadPool::stop() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
        generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
}

void ThreadPool::run(int n, const std::function<void(int)>& fn) {
    FlushDenormals flush;
    if (n > size()) n = size();
    if (n <= 1) {
        fn(0);
        return;
    }
    {
        std::lock_guard<std::mutex> lock(mu_);
        job_ = &fn;
        job_n_ = n;
        elastic_ = false;
        pending_.store(n - 1, std::memory_order_relaxed);
        generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    fn(0);
    while (pending_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
}

void ThreadPool::run_elastic(const std::function<void(int)>& fn) {
    FlushDenormals flush;
    if (workers_.empty()) {
        fn(0);
        return;
    }
    {
        std::lock_guard<std::mutex> lock(mu_);
        job_ = &fn;
        job_n_ = size();
        elastic_ = true;
        // The generation first: a worker that sees open_ set then also sees this job's generation.
        generation_.fetch_add(1, std::memory_order_seq_cst);
        open_.store(true, std::memory_order_seq_cst);
    }
    wake_.notify_all();
    fn(0);
    open_.store(false, std::memory_order_seq_cst);
    while (inside_.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
}

void ThreadPool::worker_loop(int id) {
    FlushDenormals flush;  // workers run nothing but jobs
    unsigned seen = 0;
    for (;;) {
        // Poll for spin_us before sleeping on the condition variable (the clock read every 64 polls).
        const auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(spin_ns_.load());
        for (unsigned i = 1; generation_.load(std::memory_order_acquire) == seen; ++i) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
            if (i % 64 == 0 && std::chrono::steady_clock::now() >= until) break;
        }
        const std::function<void(int)>* job;
        int n;
        bool elastic;
        {
            std::unique_lock<std::mutex> lock(mu_);
            wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
            seen = generation_.load(std::memory_order_acquire);
            if (stop_) return;
            job = job_;
            n = job_n_;
            elastic = elastic_;
        }
        if (elastic) {
            // Join only while that very job is open (Dekker with run_elastic's close: either we
            // see it closed, or it sees us inside and waits).
            inside_.fetch_add(1, std::memory_order_seq_cst);
            if (open_.load(std::memory_order_seq_cst) && generation_.load(std::memory_order_seq_cst) == seen)
                (*job)(id);
            inside_.fetch_sub(1, std::memory_order_seq_cst);
        } else if (id < n) {
            (*job)(id);
            pending_.fetch_sub(1, std::memory_order_acq_rel);
        }
    }
}

}  // namespace cc
