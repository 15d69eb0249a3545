// Host side of the CUDA engine: packs and uploads weights, owns the workspace, and enqueues the
// kernels of kernels.cuh chunk by chunk. Compiles with nvcc, or with a C++20 compiler and
// CC_CUDA_EMULATE (see compat.cuh) for the CPU emulation the tests use.
#include "runner.hpp"

#include <algorithm>
#include <climits>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels.cuh"

namespace cc_cuda {
namespace {

void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess)
        throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(e));
}
#define CC_CHECK(expr) check((expr), #expr)

// Makes `device` current for the scope, restoring the caller's device afterwards (PyTorch keeps
// its own notion of the current device on the same thread).
struct DeviceGuard {
    int prev = -1, dev;
    explicit DeviceGuard(int d) : dev(d) {
        CC_CHECK(cudaGetDevice(&prev));
        if (prev != dev) CC_CHECK(cudaSetDevice(dev));
    }
    ~DeviceGuard() {
        if (prev >= 0 && prev != dev) cudaSetDevice(prev);
    }
};

}  // namespace

// A device allocation that only grows (outside the anonymous namespace: Impl holds them).
template <typename T>
struct DevBuf {
    T* p = nullptr;
    size_t n = 0;
    ~DevBuf() { reset(); }
    void reset() {
        if (p) cudaFree(p);
        p = nullptr;
        n = 0;
    }
    // Grows to at least `count` elements (contents lost). The caller has synchronised.
    void reserve(size_t count) {
        if (count <= n) return;
        reset();
        CC_CHECK(cudaMalloc(reinterpret_cast<void**>(&p), count * sizeof(T)));
        n = count;
    }
};

namespace {

constexpr int kNoBad = 0x7f7f7f7f;  // the flag after a byte-wise memset of 0x7f
constexpr int kPixels = kImg * kImg;
constexpr int64_t kImageElems = int64_t(kImg) * kImg * 3;

size_t elem_size(DType t) { return t == DType::f64 ? 8 : t == DType::f32 ? 4 : 1; }
int round16(size_t v) { return int((v + 15) / 16 * 16); }

}  // namespace

int device_count(std::string* error) {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        if (error) *error = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
        cudaGetLastError();  // clear the sticky-free error state
        return -1;
    }
    return n;
}

std::string device_name(int device) {
    cudaDeviceProp p;
    CC_CHECK(cudaGetDeviceProperties(&p, device));
    return p.name;
}

std::string device_capability(int device) {
    int major = 0, minor = 0;
    CC_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    CC_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    return std::to_string(major) + "." + std::to_string(minor);
}

int runtime_version() {
    int v = 0;
    cudaRuntimeGetVersion(&v);
    return v;
}

int driver_version() {
    int v = 0;
    cudaDriverGetVersion(&v);
    return v;
}

struct Runner::Impl {
    DevBuf<float> weights;
    DevBuf<DevModel> models;
    DevBuf<float> prep, a, b, out;
    DevBuf<unsigned char> staging;
    DevBuf<int> flag;
    int* flag_host = nullptr;
    cudaStream_t own_stream = nullptr;
    cudaEvent_t done = nullptr;
    int64_t stride_a = 0, stride_b = 0;  // floats per pair
    std::array<int, 5> max_n{};
    ~Impl() {
        if (flag_host) cudaFreeHost(flag_host);
        if (own_stream) cudaStreamDestroy(own_stream);
        if (done) cudaEventDestroy(done);
    }
};

Runner::Runner(const std::vector<ModelWeights>& models, std::array<float, 3> mean, int device,
               size_t workspace_bytes)
    : mean_(mean), device_(device), impl_(new Impl) {
    if (models.empty()) throw std::invalid_argument("at least one model is needed");
    DeviceGuard guard(device);
    Impl& im = *impl_;
    // Pack every model's arrays into one buffer, each array at a 64-byte boundary.
    std::vector<float> host;
    auto put = [&host](const float* src, size_t count) {
        const size_t off = size_t(round16(host.size()));
        host.resize(off + round16(count), 0.0f);
        std::copy(src, src + count, host.begin() + off);
        return off;
    };
    struct Offsets {
        size_t w0, b0, dw[4], pw[4], pb[4], ro;
    };
    std::vector<Offsets> offs;
    for (const ModelWeights& m : models) {
        const auto& n = m.n;
        for (int v : n)
            if (v < 1) throw std::invalid_argument("filter counts must all be >= 1");
        n_.push_back(n);
        for (int l = 0; l < 5; ++l) im.max_n[l] = std::max(im.max_n[l], n[l]);
        Offsets o{};
        std::vector<float> t(size_t(75) * n[0]);
        for (int c = 0; c < n[0]; ++c)
            for (int tap = 0; tap < 75; ++tap) t[size_t(tap) * n[0] + c] = m.w0.at(size_t(c) * 75 + tap);
        o.w0 = put(t.data(), t.size());
        o.b0 = put(m.b0.data(), n[0]);
        for (int l = 0; l < 4; ++l) {
            const int ni = n[l], no = n[l + 1];
            if (m.dw[l].size() != size_t(ni) * 25 || m.pw[l].size() != size_t(ni) * no ||
                m.pb[l].size() != size_t(no))
                throw std::invalid_argument("layer " + std::to_string(l + 1) + ": array sizes do not "
                                            "match the filter counts");
            o.dw[l] = put(m.dw[l].data(), m.dw[l].size());
            t.assign(size_t(ni) * no, 0.0f);
            for (int oc = 0; oc < no; ++oc)
                for (int ic = 0; ic < ni; ++ic) t[size_t(ic) * no + oc] = m.pw[l][size_t(oc) * ni + ic];
            o.pw[l] = put(t.data(), t.size());
            o.pb[l] = put(m.pb[l].data(), no);
        }
        if (m.w0.size() != size_t(n[0]) * 75 || m.b0.size() != size_t(n[0]) ||
            m.readout.size() != size_t(kMap * kMap) * n[4])
            throw std::invalid_argument("w0, b0 or readout: array sizes do not match the filter counts");
        t.assign(size_t(kMap * kMap) * n[4], 0.0f);
        for (int p = 0; p < kMap * kMap; ++p)
            for (int c = 0; c < n[4]; ++c) t[size_t(c) * kMap * kMap + p] = m.readout[size_t(p) * n[4] + c];
        o.ro = put(t.data(), t.size());
        offs.push_back(o);
    }
    im.weights.reserve(host.size());
    CC_CHECK(cudaMemcpy(im.weights.p, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice));
    std::vector<DevModel> dm(models.size());
    for (size_t i = 0; i < models.size(); ++i) {
        const float* w = im.weights.p;
        DevModel& d = dm[i];
        for (int l = 0; l < 5; ++l) d.n[l] = n_[i][l];
        d.w0 = w + offs[i].w0;
        d.b0 = w + offs[i].b0;
        for (int l = 0; l < 4; ++l) {
            d.dw[l] = w + offs[i].dw[l];
            d.pw[l] = w + offs[i].pw[l];
            d.pb[l] = w + offs[i].pb[l];
        }
        d.ro = w + offs[i].ro;
        d.ro_bias = models[i].readout_bias;
    }
    im.models.reserve(dm.size());
    CC_CHECK(cudaMemcpy(im.models.p, dm.data(), dm.size() * sizeof(DevModel), cudaMemcpyHostToDevice));

    // Ping-pong buffers: A holds layers 0, 2, 4; B layers 1, 3.
    const auto& mx = im.max_n;
    im.stride_a = round16(std::max<size_t>(size_t(kPixels) * mx[0], size_t(kMap * kMap) * std::max(mx[2], mx[4])));
    im.stride_b = round16(std::max<size_t>(size_t(56 * 56) * mx[1], size_t(kMap * kMap) * mx[3]));
    const size_t per_pair = sizeof(float) * size_t(im.stride_a + im.stride_b + kPrepFloats);
    max_pairs_ = int(std::min<size_t>(65535, std::max<size_t>(1, workspace_bytes / per_pair)));

    im.flag.reserve(1);
    CC_CHECK(cudaMallocHost(reinterpret_cast<void**>(&im.flag_host), sizeof(int)));
    CC_CHECK(cudaStreamCreateWithFlags(&im.own_stream, cudaStreamNonBlocking));
    CC_CHECK(cudaEventCreateWithFlags(&im.done, cudaEventDisableTiming));
}

Runner::~Runner() {
    try {
        DeviceGuard guard(device_);
        cudaEventSynchronize(impl_->done);  // the last call's work, which uses the buffers
        impl_.reset();
    } catch (...) {
    }
}

size_t Runner::device_bytes() const {
    const Impl& im = *impl_;
    return (im.weights.n + im.prep.n + im.a.n + im.b.n + im.out.n) * sizeof(float) +
           im.models.n * sizeof(DevModel) + im.staging.n + sizeof(int);
}

int64_t Runner::predict_device(const ImageBatch& images, float* out, uintptr_t stream, bool check) {
    return run(images, out, reinterpret_cast<void*>(stream), check, false);
}

int64_t Runner::predict_host(const ImageBatch& images, float* out, bool check) {
    return run(images, out, nullptr, check, true);
}

int64_t Runner::run(const ImageBatch& x, float* out, void* stream_ptr, bool check_finite, bool host) {
    std::lock_guard<std::mutex> lock(mu_);
    DeviceGuard guard(device_);
    Impl& im = *impl_;
    if (x.count <= 0) throw std::invalid_argument("empty batch");
    if (x.count > INT_MAX / 2) throw std::invalid_argument("too many images in one call");
    if (host && !(x.sn == kImageElems &&
                  ((x.sy == 336 && x.sx == 3 && x.sc == 1) || (x.sy == 112 && x.sx == 1 && x.sc == kPixels))))
        throw std::invalid_argument("host images must be C-contiguous NHWC or NCHW");
    cudaStream_t stream = host ? im.own_stream : reinterpret_cast<cudaStream_t>(stream_ptr);

    // Chunking: ic images x mg models per chunk, at most max_pairs_ pairs.
    const int nimg = int(x.count), nm = num_models();
    int mg, ic;
    if (nm <= max_pairs_) {
        mg = nm;
        ic = std::min(nimg, max_pairs_ / nm);
    } else {
        mg = max_pairs_;
        ic = 1;
    }
    const size_t esz = elem_size(x.dtype);
    const size_t need_pairs = size_t(mg) * ic;
    if (need_pairs * im.stride_a > im.a.n || size_t(ic) * kPrepFloats > im.prep.n ||
        (host && (size_t(nimg) * nm > im.out.n || size_t(ic) * kImageElems * esz > im.staging.n))) {
        CC_CHECK(cudaEventSynchronize(im.done));  // earlier calls may still use the old buffers
        im.a.reserve(need_pairs * im.stride_a);
        im.b.reserve(need_pairs * im.stride_b);
        im.prep.reserve(size_t(ic) * kPrepFloats);
        if (host) {
            im.out.reserve(size_t(nimg) * nm);
            im.staging.reserve(size_t(ic) * kImageElems * 8);
        }
    }
    float* dst = host ? im.out.p : out;

    CC_CHECK(cudaStreamWaitEvent(stream, im.done, 0));  // after the previous call's work
    CC_CHECK(cudaMemsetAsync(im.flag.p, 0x7f, sizeof(int), stream));
    const std::array<int, 5>& mx = im.max_n;
    for (int i0 = 0; i0 < nimg; i0 += ic) {
        const int icn = std::min(ic, nimg - i0);
        const unsigned char* src;
        int64_t sn = x.sn;
        if (host) {
            CC_CHECK(cudaMemcpyAsync(im.staging.p,
                                     static_cast<const unsigned char*>(x.data) + size_t(i0) * kImageElems * esz,
                                     size_t(icn) * kImageElems * esz, cudaMemcpyHostToDevice, stream));
            src = im.staging.p;
        } else {
            src = static_cast<const unsigned char*>(x.data) + int64_t(i0) * x.sn * int64_t(esz);
        }
        const unsigned prep_blocks = unsigned((int64_t(icn) * kPrepFloats + 255) / 256);
        // prep_kernel<T> for the batch's dtype: recentre raw uint8 pixels, take floats as they are.
        auto prep = [&](auto* typed, int recentre) {
            using T = std::remove_const_t<std::remove_pointer_t<decltype(typed)>>;
            CC_CHECK(ccgpu::launch(prep_kernel<T>, dim3(prep_blocks), dim3(256), 0, stream, typed,
                                   (long long)sn, (long long)x.sy, (long long)x.sx, (long long)x.sc, icn,
                                   mean_[0], mean_[1], mean_[2], recentre, im.prep.p, im.flag.p, i0));
        };
        switch (x.dtype) {
            case DType::f32: prep(reinterpret_cast<const float*>(src), 0); break;
            case DType::f64: prep(reinterpret_cast<const double*>(src), 0); break;
            case DType::u8: prep(reinterpret_cast<const unsigned char*>(src), 1); break;
        }
        CC_CHECK(cudaGetLastError());
        for (int m0 = 0; m0 < nm; m0 += mg) {
            const int mgn = std::min(mg, nm - m0);
            const unsigned pairs = unsigned(mgn * icn);
            const Chunk ch{im.models.p, m0, icn, i0, nm};
            const long long sa = im.stride_a, sb = im.stride_b;
            auto oblocks = [](int c) { return unsigned((c + kDwOut - 1) / kDwOut); };
            CC_CHECK(ccgpu::launch(conv0_kernel, dim3(kC0Tiles * kC0Tiles, unsigned((mx[0] + kC0Ch - 1) / kC0Ch), pairs),
                      dim3(256), 0, stream, ch, im.prep.p, im.a.p, sa));
            CC_CHECK(ccgpu::launch(dwpw_kernel<2, 112>, dim3(49, oblocks(mx[1]), pairs), dim3(256), 0, stream,
                      ch, 1, im.a.p, sa, im.b.p, sb));
            CC_CHECK(ccgpu::launch(dwpw_kernel<2, 56>, dim3(13, oblocks(mx[2]), pairs), dim3(256), 0, stream,
                      ch, 2, im.b.p, sb, im.a.p, sa));
            CC_CHECK(ccgpu::launch(dwpw_kernel<1, 28>, dim3(13, oblocks(mx[3]), pairs), dim3(256), 0, stream,
                      ch, 3, im.a.p, sa, im.b.p, sb));
            CC_CHECK(ccgpu::launch(dwpw_kernel<1, 28>, dim3(13, oblocks(mx[4]), pairs), dim3(256), 0, stream,
                      ch, 4, im.b.p, sb, im.a.p, sa));
            CC_CHECK(ccgpu::launch(readout_kernel, dim3(pairs), dim3(256), 0, stream, ch, im.a.p, sa, dst));
            CC_CHECK(cudaGetLastError());
        }
    }
    if (host)
        CC_CHECK(cudaMemcpyAsync(out, im.out.p, size_t(nimg) * nm * sizeof(float),
                                 cudaMemcpyDeviceToHost, stream));
    if (check_finite) CC_CHECK(cudaMemcpyAsync(im.flag_host, im.flag.p, sizeof(int), cudaMemcpyDeviceToHost, stream));
    CC_CHECK(cudaEventRecord(im.done, stream));
    if (host || check_finite) CC_CHECK(cudaStreamSynchronize(stream));
    if (check_finite && *im.flag_host != kNoBad) return *im.flag_host;
    return -1;
}

}  // namespace cc_cuda
