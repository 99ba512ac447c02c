// The op registry: every op name a graph may use, mapped to the factory of its family.
#include <unordered_map>

#include "graph/ops/common.h"

namespace pyrnn::graph {

std::unique_ptr<Op> make_op(const BuildContext& ctx) {
  using namespace ops;
  static const std::unordered_map<std::string, Factory> kRegistry = {
      {"size", make_int_op},         {"int_add", make_int_op},      {"int_sub", make_int_op},
      {"int_mul", make_int_op},      {"int_floordiv", make_int_op}, {"identity", make_shape_op},
      {"reshape", make_shape_op},    {"flatten", make_shape_op},    {"squeeze", make_shape_op},
      {"unsqueeze", make_shape_op},  {"permute", make_shape_op},    {"select", make_shape_op},
      {"slice", make_shape_op},      {"cat", make_shape_op},        {"stack", make_shape_op},
      {"full", make_shape_op},       {"expand", make_shape_op},     {"relu", make_unary},
      {"sigmoid", make_unary},       {"tanh", make_unary},          {"silu", make_unary},
      {"gelu", make_unary},          {"leaky_relu", make_unary},    {"elu", make_unary},
      {"hardtanh", make_unary},      {"softplus", make_unary},      {"neg", make_unary},
      {"exp", make_unary},           {"log", make_unary},           {"sqrt", make_unary},
      {"rsqrt", make_unary},         {"abs", make_unary},           {"add", make_binary},
      {"sub", make_binary},          {"mul", make_binary},          {"div", make_binary},
      {"sum", make_reduction},       {"mean", make_reduction},      {"amax", make_reduction},
      {"norm", make_reduction},      {"softmax", make_softmax},     {"log_softmax", make_softmax},
      {"layer_norm", make_norm},     {"batch_norm", make_norm},     {"linear", make_linear},
      {"embedding", make_embedding}, {"conv1d", make_conv1d},       {"max_pool1d", make_pool1d},
      {"avg_pool1d", make_pool1d},   {"rnn", make_recurrent},       {"rnn_cell", make_recurrent},
      {"flip", make_shape_op},
  };
  const auto found = kRegistry.find(ctx.node().op);
  if (found == kRegistry.end()) throw std::invalid_argument("unknown op '" + ctx.node().op + "'");
  return found->second(ctx);
}

}  // namespace pyrnn::graph
