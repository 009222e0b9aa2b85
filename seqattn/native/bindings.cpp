// The Python module of seqattn's CPU kernels (built by seqattn/native/__init__.py).

#include <torch/extension.h>

at::Tensor few_query_attention(const at::Tensor& query, const at::Tensor& keys, const at::Tensor& values,
                               const c10::optional<at::Tensor>& mask, double scale);
at::Tensor dropout_apply(const at::Tensor& x, const c10::optional<at::Tensor>& residual, int64_t seed,
                         int64_t levels, double scale, bool relu, bool out_bf16);
at::Tensor relu_dropout_backward(const at::Tensor& grad, const at::Tensor& out, double scale);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("few_query_attention", &few_query_attention, "Few-query attention (float32 or bfloat16)");
  m.def("dropout_apply", &dropout_apply, "Dropout with a counter-based mask, optionally after a ReLU or before a residual sum");
  m.def("relu_dropout_backward", &relu_dropout_backward, "Gradient of relu_dropout from its output");
}
