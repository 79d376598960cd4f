// cuDNN stand-in for the CPU emulation: the fused kernels call no cuDNN, but kernels/cuda/check.h and
// context.h name its types. Without it the system's cudnn.h pulls in the real CUDA runtime headers,
// which clash with this folder's cuda_runtime.h.
#pragma once

typedef int cudnnStatus_t;
#define CUDNN_STATUS_SUCCESS 0
typedef struct cudnnContext* cudnnHandle_t;
inline const char* cudnnGetErrorString(cudnnStatus_t) { return "emulated cuDNN"; }
