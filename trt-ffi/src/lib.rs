//! TensorRT through our own shim.
