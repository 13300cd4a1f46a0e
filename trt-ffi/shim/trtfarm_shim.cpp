// trtfarm shim: implements trtfarm_shim.h over TensorRT's C++ API.
//
// Compiled twice by build.rs: with -DTRTFARM_FLAVOUR_RTX against the TensorRT-RTX headers, and
// without it against the TensorRT Enterprise headers. TensorRT is never linked: the libraries are
// dlopen'ed by path and the factory entry points resolved by name, so the farm starts on machines
// without TensorRT. Nothing here may depend on time, pid or addresses (reproducible RTX plans).

#include "trtfarm_shim.h"
#include "trtfarm_callbacks.hpp"

#include <NvInfer.h>
#include <NvInferRuntime.h>
#include <NvOnnxParser.h>

#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <string>

#define TRTFARM_API extern "C" __attribute__((visibility("default")))

namespace
{
using nvinfer1::BuilderFlag;

// The Rust side sends TensorRT's enum values; prove the numbers in the header are TensorRT's.
static_assert(static_cast<int>(BuilderFlag::kREFIT) == TRTFARM_FLAG_REFIT, "BuilderFlag");
static_assert(static_cast<int>(BuilderFlag::kTF32) == TRTFARM_FLAG_TF32, "BuilderFlag");
static_assert(static_cast<int>(BuilderFlag::kVERSION_COMPATIBLE) == TRTFARM_FLAG_VERSION_COMPATIBLE, "BuilderFlag");
static_assert(static_cast<int>(BuilderFlag::kEXCLUDE_LEAN_RUNTIME) == TRTFARM_FLAG_EXCLUDE_LEAN_RUNTIME, "BuilderFlag");
static_assert(static_cast<int>(BuilderFlag::kERROR_ON_TIMING_CACHE_MISS) == TRTFARM_FLAG_ERROR_ON_TIMING_CACHE_MISS,
    "BuilderFlag");
static_assert(static_cast<int>(BuilderFlag::kSTRIP_PLAN) == TRTFARM_FLAG_STRIP_PLAN, "BuilderFlag");
static_assert(static_cast<int>(BuilderFlag::kREFIT_IDENTICAL) == TRTFARM_FLAG_REFIT_IDENTICAL, "BuilderFlag");
static_assert(static_cast<int>(BuilderFlag::kREFIT_INDIVIDUAL) == TRTFARM_FLAG_REFIT_INDIVIDUAL, "BuilderFlag");
static_assert(static_cast<int>(BuilderFlag::kEDITABLE_TIMING_CACHE) == TRTFARM_FLAG_EDITABLE_TIMING_CACHE, "BuilderFlag");
static_assert(static_cast<int>(nvinfer1::MemoryPoolType::kWORKSPACE) == 0, "MemoryPoolType");
static_assert(static_cast<int>(nvinfer1::MemoryPoolType::kTACTIC_DRAM) == 4, "MemoryPoolType");
static_assert(static_cast<int>(nvinfer1::MemoryPoolType::kTACTIC_SHARED_MEMORY) == 5, "MemoryPoolType");
static_assert(static_cast<int>(nvinfer1::ProfilingVerbosity::kDETAILED) == 2, "ProfilingVerbosity");
static_assert(static_cast<int>(nvinfer1::TilingOptimizationLevel::kFULL) == 3, "TilingOptimizationLevel");
static_assert(static_cast<int>(nvinfer1::HardwareCompatibilityLevel::kSAME_COMPUTE_CAPABILITY) == 2,
    "HardwareCompatibilityLevel");
#ifdef TRTFARM_FLAVOUR_RTX
static_assert(static_cast<int>(nvinfer1::ComputeCapability::kSM120) == 120, "ComputeCapability");
#endif

using CreateFn = void* (*) (void*, int32_t);
using CreateParserFn = void* (*) (void*, void*, int);
using VersionFn = int32_t (*)();

// Copies `text` into the caller's buffer, always NUL-terminated.
void setMessage(char* buffer, size_t size, std::string const& text)
{
    if (buffer == nullptr || size == 0)
    {
        return;
    }
    size_t const n = text.size() < size - 1 ? text.size() : size - 1;
    std::memcpy(buffer, text.data(), n);
    buffer[n] = '\0';
}

nvinfer1::Dims toDims(int32_t nbDims, int64_t const* values)
{
    nvinfer1::Dims dims{};
    dims.nbDims = nbDims;
    for (int32_t i = 0; i < nbDims; ++i)
    {
        dims.d[i] = values[i];
    }
    return dims;
}

} // namespace

struct trtfarm_toolchain
{
    void* builderLibrary{nullptr};
    void* parserLibrary{nullptr};
    CreateFn createBuilder{nullptr};
    CreateFn createRuntime{nullptr};
    CreateParserFn createParser{nullptr};
    trtfarm_version version{};
    Logger* logger{nullptr}; // sharedLogger(), never freed
};

namespace
{
int32_t applyCall(trtfarm_toolchain& tc, nvinfer1::IBuilder& builder, nvinfer1::IBuilderConfig& config,
    trtfarm_build_params const& params, trtfarm_builder_call const& call, std::string& error)
{
    auto const a = call.a;
    auto const b = call.b;
    bool ok = true;
    switch (call.kind)
    {
    case TRTFARM_CALL_SET_FLAG:
        if (b != 0)
        {
            config.setFlag(static_cast<BuilderFlag>(a));
        }
        else
        {
            config.clearFlag(static_cast<BuilderFlag>(a));
        }
        ok = config.getFlag(static_cast<BuilderFlag>(a)) == (b != 0);
        break;
    case TRTFARM_CALL_SET_OPTIMIZATION_LEVEL:
        config.setBuilderOptimizationLevel(static_cast<int32_t>(a));
        ok = config.getBuilderOptimizationLevel() == a;
        break;
    case TRTFARM_CALL_SET_MEMORY_POOL_LIMIT:
        config.setMemoryPoolLimit(static_cast<nvinfer1::MemoryPoolType>(a), static_cast<size_t>(b));
        ok = config.getMemoryPoolLimit(static_cast<nvinfer1::MemoryPoolType>(a)) == static_cast<size_t>(b);
        break;
    case TRTFARM_CALL_SET_MAX_AUX_STREAMS: ok = config.setMaxAuxStreams(static_cast<int32_t>(a)); break;
    case TRTFARM_CALL_SET_AVG_TIMING_ITERATIONS:
        config.setAvgTimingIterations(static_cast<int32_t>(a));
        ok = config.getAvgTimingIterations() == a;
        break;
    case TRTFARM_CALL_SET_TACTIC_SOURCES:
        ok = config.setTacticSources(static_cast<nvinfer1::TacticSources>(a));
        break;
    case TRTFARM_CALL_SET_TILING_LEVEL:
        ok = config.setTilingOptimizationLevel(static_cast<nvinfer1::TilingOptimizationLevel>(a));
        break;
    case TRTFARM_CALL_SET_HARDWARE_COMPAT:
        config.setHardwareCompatibilityLevel(static_cast<nvinfer1::HardwareCompatibilityLevel>(a));
        ok = static_cast<int64_t>(config.getHardwareCompatibilityLevel()) == a;
        break;
#ifdef TRTFARM_FLAVOUR_RTX
    case TRTFARM_CALL_SET_NB_COMPUTE_CAPS: ok = config.setNbComputeCapabilities(static_cast<int32_t>(a)); break;
    case TRTFARM_CALL_SET_COMPUTE_CAP:
        ok = config.setComputeCapability(static_cast<nvinfer1::ComputeCapability>(a), static_cast<int32_t>(b));
        break;
#endif
    case TRTFARM_CALL_SET_PROFILING_VERBOSITY:
        config.setProfilingVerbosity(static_cast<nvinfer1::ProfilingVerbosity>(a));
        ok = static_cast<int64_t>(config.getProfilingVerbosity()) == a;
        break;
    case TRTFARM_CALL_ADD_PROFILE:
    {
        if (a < 0 || static_cast<size_t>(a) >= params.nb_profiles)
        {
            error = "optimization profile index " + std::to_string(a) + " out of range";
            return TRTFARM_E_INVALID;
        }
        trtfarm_profile const& profile = params.profiles[a];
        nvinfer1::IOptimizationProfile* p = builder.createOptimizationProfile();
        if (p == nullptr)
        {
            error = "createOptimizationProfile failed";
            return TRTFARM_E_CONFIG;
        }
        for (size_t i = 0; i < profile.nb_inputs; ++i)
        {
            trtfarm_profile_input const& in = profile.inputs[i];
            if (in.nb_dims < 0 || in.nb_dims > nvinfer1::Dims::MAX_DIMS)
            {
                error = std::string("input '") + in.name + "' has an invalid rank";
                return TRTFARM_E_INVALID;
            }
            using Sel = nvinfer1::OptProfileSelector;
            if (!p->setDimensions(in.name, Sel::kMIN, toDims(in.nb_dims, in.min))
                || !p->setDimensions(in.name, Sel::kOPT, toDims(in.nb_dims, in.opt))
                || !p->setDimensions(in.name, Sel::kMAX, toDims(in.nb_dims, in.max)))
            {
                error = "optimization profile " + std::to_string(a) + ": TensorRT rejected the dimensions of input '"
                    + in.name + "'";
                return TRTFARM_E_CONFIG;
            }
        }
        if (config.addOptimizationProfile(p) < 0)
        {
            error = "optimization profile " + std::to_string(a) + " is invalid";
            return TRTFARM_E_CONFIG;
        }
        return TRTFARM_OK;
    }
    case TRTFARM_CALL_SET_TIMING_CACHE:
    {
        Owned<nvinfer1::ITimingCache> cache{config.createTimingCache(params.timing_cache, params.timing_cache_size)};
        if (cache == nullptr)
        {
            error = "createTimingCache rejected the timing cache";
            return TRTFARM_E_CONFIG;
        }
        // setTimingCache copies the cache into the config, so ours may go.
        ok = config.setTimingCache(*cache, a != 0);
        break;
    }
    default:
        error = "builder call kind " + std::to_string(call.kind) + " does not exist in this flavour";
        return TRTFARM_E_UNSUPPORTED;
    }
    (void) tc;
    if (!ok)
    {
        error = "TensorRT rejected builder call kind " + std::to_string(call.kind) + " (a=" + std::to_string(a)
            + ", b=" + std::to_string(b) + ")";
        return TRTFARM_E_CONFIG;
    }
    return TRTFARM_OK;
}

// Appends TensorRT's first error of this call (if any) to a shim message.
std::string withFirstError(std::string text, std::string const& firstError)
{
    if (!firstError.empty())
    {
        text += ": ";
        text += firstError;
    }
    return text;
}

int32_t buildEngine(trtfarm_toolchain& tc, trtfarm_build_params const& params, std::string& error)
{
    SinkScope scope(*tc.logger, params.log, params.user);
    Sink& sink = tc.logger->sink;

    Owned<nvinfer1::IBuilder> builder{
        static_cast<nvinfer1::IBuilder*>(tc.createBuilder(tc.logger, NV_TENSORRT_VERSION))};
    if (builder == nullptr)
    {
        error = withFirstError("createInferBuilder failed", scope.firstError());
        return TRTFARM_E_BUILD;
    }
    Owned<nvinfer1::INetworkDefinition> network{builder->createNetworkV2(0)};
    if (network == nullptr)
    {
        error = withFirstError("createNetworkV2 failed", scope.firstError());
        return TRTFARM_E_BUILD;
    }
    Owned<nvonnxparser::IParser> parser{
        static_cast<nvonnxparser::IParser*>(tc.createParser(network.get(), tc.logger, NV_ONNX_PARSER_VERSION))};
    if (parser == nullptr)
    {
        error = withFirstError("createNvOnnxParser failed", scope.firstError());
        return TRTFARM_E_BUILD;
    }

    bool parsed = false;
    if (params.onnx_path != nullptr)
    {
        parsed = parser->parseFromFile(
            params.onnx_path, static_cast<int>(nvinfer1::ILogger::Severity::kWARNING));
    }
    else
    {
        parsed = parser->parse(params.onnx_bytes, params.onnx_size, nullptr);
    }
    if (!parsed || parser->getNbErrors() > 0)
    {
        int const n = parser->getNbErrors();
        for (int i = 0; i < n; ++i)
        {
            nvonnxparser::IParserError const* e = parser->getError(i);
            if (e == nullptr || params.parser_error == nullptr)
            {
                continue;
            }
            trtfarm_parser_error out{};
            out.code = static_cast<int32_t>(e->code());
            out.node_index = e->node();
            out.node_name = e->nodeName() != nullptr ? e->nodeName() : "";
            out.node_operator = e->nodeOperator() != nullptr ? e->nodeOperator() : "";
            out.description = e->desc() != nullptr ? e->desc() : "";
            std::lock_guard<std::mutex> lock(sink.mutex);
            params.parser_error(params.user, &out);
        }
        error = n > 0 ? std::string("the ONNX parser reported ") + std::to_string(n) + " error(s)"
                      : withFirstError("the ONNX parser failed", scope.firstError());
        return TRTFARM_E_PARSE;
    }

    Owned<nvinfer1::IBuilderConfig> config{builder->createBuilderConfig()};
    if (config == nullptr)
    {
        error = withFirstError("createBuilderConfig failed", scope.firstError());
        return TRTFARM_E_BUILD;
    }
    for (size_t i = 0; i < params.nb_calls; ++i)
    {
        int32_t const status = applyCall(tc, *builder, *config, params, params.calls[i], error);
        if (status != TRTFARM_OK)
        {
            error = withFirstError("builder call #" + std::to_string(i) + ": " + error, scope.firstError());
            return status;
        }
    }

    ProgressMonitor monitor(sink, params.progress, params.user);
    config->setProgressMonitor(&monitor);
    StreamWriter writer(sink, params.write_plan, params.user);
    bool const built = builder->buildSerializedNetworkToStream(*network, *config, writer);
    config->setProgressMonitor(nullptr);
    if (monitor.cancelled)
    {
        error = "the build was cancelled by the progress callback";
        return TRTFARM_E_CANCELLED;
    }
    if (writer.failed)
    {
        error = "the plan writer failed after " + std::to_string(writer.total) + " bytes";
        return TRTFARM_E_WRITE;
    }
    if (!built || writer.total == 0)
    {
        error = withFirstError("buildSerializedNetworkToStream failed", scope.firstError());
        return TRTFARM_E_BUILD;
    }

    if (params.write_timing_cache != nullptr)
    {
        nvinfer1::ITimingCache const* cache = config->getTimingCache();
        Owned<nvinfer1::IHostMemory> blob{cache != nullptr ? cache->serialize() : nullptr};
        if (blob == nullptr)
        {
            error = withFirstError("the timing cache could not be serialised", scope.firstError());
            return TRTFARM_E_BUILD;
        }
        if (!writeAll(sink, params.write_timing_cache, params.user, blob->data(), blob->size()))
        {
            error = "the timing cache writer failed";
            return TRTFARM_E_WRITE;
        }
    }
    return TRTFARM_OK;
}

int32_t inspectPlan(trtfarm_toolchain& tc, void const* plan, size_t size, trtfarm_log_fn log,
    trtfarm_write_fn write, void* user, std::string& error)
{
    SinkScope scope(*tc.logger, log, user);
    Owned<nvinfer1::IRuntime> runtime{
        static_cast<nvinfer1::IRuntime*>(tc.createRuntime(tc.logger, NV_TENSORRT_VERSION))};
    if (runtime == nullptr)
    {
        error = withFirstError("createInferRuntime failed", scope.firstError());
        return TRTFARM_E_BUILD;
    }
    Owned<nvinfer1::ICudaEngine> engine{runtime->deserializeCudaEngine(plan, size)};
    if (engine == nullptr)
    {
        error = withFirstError("deserializeCudaEngine failed", scope.firstError());
        return TRTFARM_E_BUILD;
    }
    Owned<nvinfer1::IEngineInspector> inspector{engine->createEngineInspector()};
    if (inspector == nullptr)
    {
        error = withFirstError("createEngineInspector failed", scope.firstError());
        return TRTFARM_E_BUILD;
    }
    char const* json = inspector->getEngineInformation(nvinfer1::LayerInformationFormat::kJSON);
    if (json == nullptr)
    {
        error = withFirstError("getEngineInformation failed", scope.firstError());
        return TRTFARM_E_BUILD;
    }
    if (!writeAll(tc.logger->sink, write, user, json, std::strlen(json)))
    {
        error = "the layer information writer failed";
        return TRTFARM_E_WRITE;
    }
    return TRTFARM_OK;
}

void* resolve(void* library, char const* name, char const* path, std::string& error)
{
    void* symbol = dlsym(library, name);
    if (symbol == nullptr && error.empty())
    {
        error = std::string("symbol ") + name + " not found in " + path;
    }
    return symbol;
}

// Runs one C entry point's body so that no C++ exception crosses the C boundary: an exception
// becomes TRTFARM_E_INTERNAL with its message.
template <typename Body>
int32_t guarded(char* message, size_t message_size, Body&& body)
{
    try
    {
        return body();
    }
    catch (std::bad_alloc const&)
    {
        setMessage(message, message_size, "out of memory");
        return TRTFARM_E_INTERNAL;
    }
    catch (std::exception const& e)
    {
        setMessage(message, message_size, std::string("internal error: ") + e.what());
        return TRTFARM_E_INTERNAL;
    }
    catch (...)
    {
        setMessage(message, message_size, "internal error");
        return TRTFARM_E_INTERNAL;
    }
}

} // namespace

TRTFARM_API int32_t trtfarm_shim_abi_version(void)
{
    return TRTFARM_SHIM_ABI_VERSION;
}

TRTFARM_API int32_t trtfarm_shim_flavour(void)
{
#ifdef TRTFARM_FLAVOUR_RTX
    return TRTFARM_FLAVOUR_TENSORRT_RTX;
#else
    return TRTFARM_FLAVOUR_TENSORRT;
#endif
}

TRTFARM_API int32_t trtfarm_toolchain_open(char const* builder_library, char const* parser_library,
    trtfarm_toolchain** out, char* message, size_t message_size)
{
    if (builder_library == nullptr || parser_library == nullptr || out == nullptr)
    {
        setMessage(message, message_size, "null argument");
        return TRTFARM_E_INVALID;
    }
    *out = nullptr;
    return guarded(message, message_size, [&]() -> int32_t {
        // RTLD_LOCAL: the other flavour's shim may live in the same process with its own TensorRT.
        void* builderLib = dlopen(builder_library, RTLD_NOW | RTLD_LOCAL);
        if (builderLib == nullptr)
        {
            char const* why = dlerror();
            setMessage(message, message_size, std::string("dlopen failed: ") + (why != nullptr ? why : builder_library));
            return TRTFARM_E_LOAD;
        }
        void* parserLib = dlopen(parser_library, RTLD_NOW | RTLD_LOCAL);
        if (parserLib == nullptr)
        {
            char const* why = dlerror();
            setMessage(message, message_size, std::string("dlopen failed: ") + (why != nullptr ? why : parser_library));
            return TRTFARM_E_LOAD;
        }
        std::string error;
        auto* tc = new trtfarm_toolchain();
        tc->builderLibrary = builderLib;
        tc->parserLibrary = parserLib;
        tc->createBuilder = reinterpret_cast<CreateFn>(
            resolve(builderLib, "createInferBuilder_INTERNAL", builder_library, error));
        tc->createRuntime = reinterpret_cast<CreateFn>(
            resolve(builderLib, "createInferRuntime_INTERNAL", builder_library, error));
        auto libVersion = reinterpret_cast<VersionFn>(resolve(builderLib, "getInferLibVersion", builder_library, error));
        tc->createParser = reinterpret_cast<CreateParserFn>(
            resolve(parserLib, "createNvOnnxParser_INTERNAL", parser_library, error));
        if (!error.empty())
        {
            delete tc;
            setMessage(message, message_size, error);
            return TRTFARM_E_LOAD;
        }
        // The split functions exist since TensorRT 10; older libraries only have the packed form.
        auto major = reinterpret_cast<VersionFn>(dlsym(builderLib, "getInferLibMajorVersion"));
        auto minor = reinterpret_cast<VersionFn>(dlsym(builderLib, "getInferLibMinorVersion"));
        auto patch = reinterpret_cast<VersionFn>(dlsym(builderLib, "getInferLibPatchVersion"));
        auto build = reinterpret_cast<VersionFn>(dlsym(builderLib, "getInferLibBuildVersion"));
        trtfarm_version& v = tc->version;
        v.library_raw = libVersion();
        v.library_major = major != nullptr ? major() : v.library_raw / 10000;
        v.library_minor = minor != nullptr ? minor() : (v.library_raw / 100) % 100;
        v.library_patch = patch != nullptr ? patch() : v.library_raw % 100;
        v.library_build = build != nullptr ? build() : 0;
        v.headers_major = NV_TENSORRT_MAJOR;
        v.headers_minor = NV_TENSORRT_MINOR;
        v.headers_patch = NV_TENSORRT_PATCH;
        v.headers_build = NV_TENSORRT_BUILD;
        // Interfaces are vtables: a different major version has a different layout.
        if (v.library_major != v.headers_major)
        {
            std::string text = std::string(builder_library) + " is version " + std::to_string(v.library_major) + "."
                + std::to_string(v.library_minor) + "." + std::to_string(v.library_patch)
                + " but this shim was compiled against headers " + std::to_string(v.headers_major) + "."
                + std::to_string(v.headers_minor) + "." + std::to_string(v.headers_patch);
            delete tc;
            setMessage(message, message_size, text);
            return TRTFARM_E_LOAD;
        }
        tc->logger = &sharedLogger();
        *out = tc;
        return TRTFARM_OK;
    });
}

TRTFARM_API void trtfarm_toolchain_version(trtfarm_toolchain const* toolchain, trtfarm_version* out)
{
    if (toolchain != nullptr && out != nullptr)
    {
        *out = toolchain->version;
    }
}

TRTFARM_API void trtfarm_toolchain_close(trtfarm_toolchain* toolchain)
{
    // The libraries and the shared logger stay: TensorRT holds on to the logger process-wide.
    delete toolchain;
}

TRTFARM_API int32_t trtfarm_build_engine(
    trtfarm_toolchain* toolchain, trtfarm_build_params const* params, char* message, size_t message_size)
{
    if (toolchain == nullptr || params == nullptr || params->write_plan == nullptr
        || (params->onnx_path == nullptr && params->onnx_bytes == nullptr))
    {
        setMessage(message, message_size, "null argument");
        return TRTFARM_E_INVALID;
    }
    return guarded(message, message_size, [&]() -> int32_t {
        std::lock_guard<std::mutex> lock(processBuildMutex());
        std::string error;
        int32_t const status = buildEngine(*toolchain, *params, error);
        setMessage(message, message_size, error);
        return status;
    });
}

TRTFARM_API int32_t trtfarm_inspect_plan(trtfarm_toolchain* toolchain, void const* plan, size_t plan_size,
    trtfarm_log_fn log, trtfarm_write_fn write, void* user, char* message, size_t message_size)
{
    if (toolchain == nullptr || plan == nullptr || write == nullptr)
    {
        setMessage(message, message_size, "null argument");
        return TRTFARM_E_INVALID;
    }
    return guarded(message, message_size, [&]() -> int32_t {
        std::lock_guard<std::mutex> lock(processBuildMutex());
        std::string error;
        int32_t const status = inspectPlan(*toolchain, plan, plan_size, log, write, user, error);
        setMessage(message, message_size, error);
        return status;
    });
}
