/*
 * trtfarm shim: a plain C view of the parts of TensorRT's C++ API that trtfarm uses.
 *
 * The same source is compiled once per TensorRT flavour into its own shared object
 * (libtrtfarm_shim_rtx.so, libtrtfarm_shim_trt.so): both flavours define nvinfer1 inline code
 * with different layouts, so they must never share a symbol namespace.
 *
 * Rules of this boundary:
 * - no C++ types cross it: opaque handles, fixed-width integers, byte buffers, C strings;
 * - every fallible call returns a TRTFARM_* status and, on failure, fills the caller's message
 *   buffer (always NUL-terminated, truncated if needed);
 * - callbacks are C function pointers plus a `void* user` that the shim passes back untouched.
 *   The shim serialises callback invocations (TensorRT may call its logger from several threads).
 * - builds and inspections run one at a time per process (per shim): TensorRT has one logger per
 *   process, and concurrent TensorRT-RTX builds with different targets interfere.
 *
 * Enum values below equal TensorRT's own enum values; the shim checks that with static_assert.
 */
#ifndef TRTFARM_SHIM_H
#define TRTFARM_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a declaration in this header changes; the Rust side refuses a mismatch. */
#define TRTFARM_SHIM_ABI_VERSION 1

/* Status codes. */
#define TRTFARM_OK 0
#define TRTFARM_E_LOAD 1        /* a TensorRT library or symbol could not be loaded */
#define TRTFARM_E_PARSE 2       /* the ONNX parser rejected the model: see trtfarm_parser_error */
#define TRTFARM_E_CONFIG 3      /* a builder call was rejected by TensorRT */
#define TRTFARM_E_BUILD 4       /* the builder failed */
#define TRTFARM_E_CANCELLED 5   /* the progress callback asked to stop */
#define TRTFARM_E_WRITE 6       /* the plan writer callback failed */
#define TRTFARM_E_UNSUPPORTED 7 /* the call does not exist in this flavour */
#define TRTFARM_E_INVALID 8     /* bad arguments from the caller */
#define TRTFARM_E_INTERNAL 9    /* an unexpected C++ exception or allocation failure */

/* Flavour compiled into this shim. */
#define TRTFARM_FLAVOUR_TENSORRT_RTX 1
#define TRTFARM_FLAVOUR_TENSORRT 2

/* Kinds of builder calls (trtfarm_builder_call.kind). Arguments a and b as documented. */
#define TRTFARM_CALL_SET_FLAG 1                  /* a: BuilderFlag, b: 1 = set, 0 = clear */
#define TRTFARM_CALL_SET_OPTIMIZATION_LEVEL 2    /* a: level */
#define TRTFARM_CALL_SET_MEMORY_POOL_LIMIT 3     /* a: MemoryPoolType, b: bytes */
#define TRTFARM_CALL_SET_MAX_AUX_STREAMS 4       /* a: streams */
#define TRTFARM_CALL_SET_AVG_TIMING_ITERATIONS 5 /* a: iterations */
#define TRTFARM_CALL_SET_TACTIC_SOURCES 6        /* a: bit mask of TacticSource */
#define TRTFARM_CALL_SET_TILING_LEVEL 7          /* a: TilingOptimizationLevel */
#define TRTFARM_CALL_SET_HARDWARE_COMPAT 8       /* a: HardwareCompatibilityLevel */
#define TRTFARM_CALL_SET_NB_COMPUTE_CAPS 9       /* a: count (RTX only) */
#define TRTFARM_CALL_SET_COMPUTE_CAP 10          /* a: ComputeCapability, b: index (RTX only) */
#define TRTFARM_CALL_SET_PROFILING_VERBOSITY 11  /* a: ProfilingVerbosity */
#define TRTFARM_CALL_ADD_PROFILE 12              /* a: index into trtfarm_build_params.profiles */
#define TRTFARM_CALL_SET_TIMING_CACHE 13         /* a: 1 = ignore mismatch; bytes from params */

/* nvinfer1::BuilderFlag values used by trtfarm. */
#define TRTFARM_FLAG_REFIT 4
#define TRTFARM_FLAG_TF32 6
#define TRTFARM_FLAG_VERSION_COMPATIBLE 12
#define TRTFARM_FLAG_EXCLUDE_LEAN_RUNTIME 13
#define TRTFARM_FLAG_ERROR_ON_TIMING_CACHE_MISS 15
#define TRTFARM_FLAG_STRIP_PLAN 18
#define TRTFARM_FLAG_REFIT_IDENTICAL 19
#define TRTFARM_FLAG_REFIT_INDIVIDUAL 22
#define TRTFARM_FLAG_EDITABLE_TIMING_CACHE 26

/* Progress events (trtfarm_progress_fn kind). */
#define TRTFARM_PROGRESS_PHASE_START 1
#define TRTFARM_PROGRESS_STEP 2
#define TRTFARM_PROGRESS_PHASE_FINISH 3

/* Opaque: the loaded TensorRT libraries and their factory entry points. */
typedef struct trtfarm_toolchain trtfarm_toolchain;

/* One log message from TensorRT; severity is nvinfer1::ILogger::Severity (0 = internal error). */
typedef void (*trtfarm_log_fn)(void* user, int32_t severity, const char* message);
/* A progress event. Returns 1 to continue, 0 to cancel (only honoured for steps). */
typedef int32_t (*trtfarm_progress_fn)(
    void* user, int32_t kind, const char* phase, const char* parent, int32_t value);
/* Receives the next chunk of a byte stream; returns the number of bytes taken, or -1. */
typedef int64_t (*trtfarm_write_fn)(void* user, const void* data, int64_t size);

/* Versions: `library` is what the loaded TensorRT reports, `headers` what the shim was built with. */
typedef struct trtfarm_version {
    int32_t library_major;
    int32_t library_minor;
    int32_t library_patch;
    int32_t library_build;
    int32_t library_raw; /* getInferLibVersion() as is */
    int32_t headers_major;
    int32_t headers_minor;
    int32_t headers_patch;
    int32_t headers_build;
} trtfarm_version;

/* One input's dimensions in an optimisation profile. */
typedef struct trtfarm_profile_input {
    const char* name;
    int32_t nb_dims;
    const int64_t* min; /* nb_dims values each */
    const int64_t* opt;
    const int64_t* max;
} trtfarm_profile_input;

/* One optimisation profile. */
typedef struct trtfarm_profile {
    const trtfarm_profile_input* inputs;
    size_t nb_inputs;
} trtfarm_profile;

/* One builder call (see TRTFARM_CALL_*). */
typedef struct trtfarm_builder_call {
    int32_t kind;
    int64_t a;
    int64_t b;
} trtfarm_builder_call;

/* A parser error; the strings are valid only during the callback. */
typedef struct trtfarm_parser_error {
    int32_t code;
    int32_t node_index;
    const char* node_name;
    const char* node_operator;
    const char* description;
} trtfarm_parser_error;

/* Receives one parser error. */
typedef void (*trtfarm_parser_error_fn)(void* user, const trtfarm_parser_error* error);

/* Everything one build needs. Exactly one of onnx_path / onnx_bytes is set. */
typedef struct trtfarm_build_params {
    const char* onnx_path; /* parsed with parseFromFile, so external data beside it is found */
    const void* onnx_bytes;
    size_t onnx_size;
    const trtfarm_profile* profiles;
    size_t nb_profiles;
    const trtfarm_builder_call* calls; /* applied in order to the IBuilderConfig */
    size_t nb_calls;
    const void* timing_cache; /* input for TRTFARM_CALL_SET_TIMING_CACHE (may be empty) */
    size_t timing_cache_size;
    trtfarm_log_fn log;
    trtfarm_progress_fn progress;
    trtfarm_write_fn write_plan;
    trtfarm_write_fn write_timing_cache; /* NULL: do not serialise the timing cache */
    trtfarm_parser_error_fn parser_error;
    void* user;
} trtfarm_build_params;

/* Shim ABI version (TRTFARM_SHIM_ABI_VERSION at compile time). */
int32_t trtfarm_shim_abi_version(void);
/* Flavour compiled into this shim (TRTFARM_FLAVOUR_*). */
int32_t trtfarm_shim_flavour(void);

/* Loads the builder and ONNX-parser libraries by path and resolves their entry points. */
int32_t trtfarm_toolchain_open(const char* builder_library, const char* parser_library,
    trtfarm_toolchain** out, char* message, size_t message_size);
/* Library and header versions of an open toolchain. */
void trtfarm_toolchain_version(const trtfarm_toolchain* toolchain, trtfarm_version* out);
/*
 * Forgets a toolchain. TensorRT keeps a process-wide pointer to the logger and may run threads,
 * so the libraries stay mapped and the shim's single logger stays alive.
 */
void trtfarm_toolchain_close(trtfarm_toolchain* toolchain);

/*
 * Parses, configures and builds one engine, streaming the plan through params->write_plan.
 * Parser errors go to params->parser_error, the timing cache (if asked) to write_timing_cache.
 */
int32_t trtfarm_build_engine(trtfarm_toolchain* toolchain, const trtfarm_build_params* params,
    char* message, size_t message_size);

/*
 * Deserialises a plan with IRuntime and writes the engine inspector's kJSON output to `write`.
 * Needs whatever TensorRT needs to deserialise (a CUDA driver, for TensorRT-RTX 1.7).
 */
int32_t trtfarm_inspect_plan(trtfarm_toolchain* toolchain, const void* plan, size_t plan_size,
    trtfarm_log_fn log, trtfarm_write_fn write, void* user, char* message, size_t message_size);

#ifdef __cplusplus
}
#endif

#endif /* TRTFARM_SHIM_H */
