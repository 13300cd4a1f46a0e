// Adapters from TensorRT's callback interfaces (ILogger, IProgressMonitor, IStreamWriter) to the
// C function pointers of trtfarm_shim.h. Internal to trtfarm_shim.cpp, included once.
#ifndef TRTFARM_CALLBACKS_HPP
#define TRTFARM_CALLBACKS_HPP

#include "trtfarm_shim.h"

#include <NvInfer.h>

#include <memory>
#include <mutex>
#include <string>

namespace
{
// The callbacks of the build in progress. TensorRT may call the logger from its own threads, so
// every callback runs under `mutex`: the Rust side never sees two calls at once.
struct Sink
{
    std::mutex mutex;
    trtfarm_log_fn log{nullptr};
    void* user{nullptr};
    // First kERROR/kINTERNAL_ERROR text of the current call, for the status message. The first,
    // not the last: without a GPU, TensorRT follows each error with a generic CUDA error.
    std::string firstError;
};

// TensorRT keeps the first logger it is given for the whole process ("The logger passed into
// createInferBuilder differs from one already registered ... the current new logger is
// ignored"), so there is exactly one, never destroyed, shared by every toolchain of this shim.
class Logger final : public nvinfer1::ILogger
{
public:
    void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override
    {
        try
        {
            std::lock_guard<std::mutex> lock(sink.mutex);
            if (severity <= Severity::kERROR && sink.firstError.empty())
            {
                sink.firstError = msg != nullptr ? msg : "";
            }
            if (sink.log != nullptr)
            {
                sink.log(sink.user, static_cast<int32_t>(severity), msg != nullptr ? msg : "");
            }
        }
        catch (...)
        {
            // A logger must not throw into TensorRT; losing one message is the lesser evil.
        }
    }

    Sink sink;
};

Logger& sharedLogger()
{
    static Logger* logger = new Logger();
    return *logger;
}

// One build or inspection at a time per process: the logger above can only route messages to
// one caller, and concurrent TensorRT-RTX builds with different targets were seen to fail
// ("Target SM 86 is not found in the accelerator list").
std::mutex& processBuildMutex()
{
    static std::mutex* mutex = new std::mutex();
    return *mutex;
}

// Routes the build's callbacks into the logger for the duration of one call.
class SinkScope
{
public:
    SinkScope(Logger& logger, trtfarm_log_fn log, void* user)
        : mLogger(logger)
    {
        std::lock_guard<std::mutex> lock(mLogger.sink.mutex);
        mLogger.sink.log = log;
        mLogger.sink.user = user;
        mLogger.sink.firstError.clear();
    }
    ~SinkScope()
    {
        std::lock_guard<std::mutex> lock(mLogger.sink.mutex);
        mLogger.sink.log = nullptr;
        mLogger.sink.user = nullptr;
    }
    std::string firstError()
    {
        std::lock_guard<std::mutex> lock(mLogger.sink.mutex);
        return mLogger.sink.firstError;
    }

private:
    Logger& mLogger;
};

class ProgressMonitor final : public nvinfer1::IProgressMonitor
{
public:
    ProgressMonitor(Sink& sink, trtfarm_progress_fn fn, void* user)
        : mSink(sink)
        , mFn(fn)
        , mUser(user)
    {
    }
    void phaseStart(char const* phaseName, char const* parentPhase, int32_t nbSteps) noexcept override
    {
        call(TRTFARM_PROGRESS_PHASE_START, phaseName, parentPhase, nbSteps);
    }
    bool stepComplete(char const* phaseName, int32_t step) noexcept override
    {
        if (call(TRTFARM_PROGRESS_STEP, phaseName, nullptr, step) == 0)
        {
            cancelled = true;
        }
        // Once cancelled, keep answering false: TensorRT may ask again from a nested phase.
        return !cancelled;
    }
    void phaseFinish(char const* phaseName) noexcept override
    {
        call(TRTFARM_PROGRESS_PHASE_FINISH, phaseName, nullptr, 0);
    }

    bool cancelled{false};

private:
    int32_t call(int32_t kind, char const* phase, char const* parent, int32_t value) noexcept
    {
        if (mFn == nullptr)
        {
            return 1;
        }
        try
        {
            std::lock_guard<std::mutex> lock(mSink.mutex);
            return mFn(mUser, kind, phase != nullptr ? phase : "", parent, value);
        }
        catch (...)
        {
            return 0;
        }
    }

    Sink& mSink;
    trtfarm_progress_fn mFn;
    void* mUser;
};

// Streams the plan to the Rust writer, which hashes and writes it to disk.
class StreamWriter final : public nvinfer1::IStreamWriter
{
public:
    StreamWriter(Sink& sink, trtfarm_write_fn fn, void* user)
        : mSink(sink)
        , mFn(fn)
        , mUser(user)
    {
    }
    int64_t write(void const* data, int64_t nbBytes) override
    {
        if (failed)
        {
            return -1;
        }
        int64_t written = -1;
        {
            std::lock_guard<std::mutex> lock(mSink.mutex);
            written = mFn(mUser, data, nbBytes);
        }
        if (written != nbBytes)
        {
            failed = true;
            return -1;
        }
        total += nbBytes;
        return nbBytes;
    }

    bool failed{false};
    int64_t total{0};

private:
    Sink& mSink;
    trtfarm_write_fn mFn;
    void* mUser;
};

// Owns a TensorRT object; TensorRT 10+ objects are destroyed with delete.
template <typename T>
struct Deleter
{
    void operator()(T* p) const noexcept
    {
        delete p;
    }
};
template <typename T>
using Owned = std::unique_ptr<T, Deleter<T>>;

// Writes a byte buffer through a write callback under the sink mutex.
bool writeAll(Sink& sink, trtfarm_write_fn fn, void* user, void const* data, size_t size)
{
    std::lock_guard<std::mutex> lock(sink.mutex);
    return fn(user, data, static_cast<int64_t>(size)) == static_cast<int64_t>(size);
}

} // namespace

#endif // TRTFARM_CALLBACKS_HPP
