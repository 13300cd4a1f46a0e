/*
 * Stand-in for CUDA's cuda_runtime_api.h, used by build.rs only when no complete CUDA toolkit
 * headers are found (the nvidia-cuda-runtime wheel ships cuda_runtime_api.h without the crt/
 * directory it includes). TensorRT's headers only need the two opaque handle types; these are
 * the same declarations CUDA makes, so the ABI is identical. The shim never calls CUDA.
 */
#ifndef TRTFARM_CUDA_RUNTIME_API_STUB_H
#define TRTFARM_CUDA_RUNTIME_API_STUB_H
typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;
#endif
