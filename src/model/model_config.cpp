// ModelConfig from an HF config.json (Llama, Mistral, Qwen2).
//
// Absent optional keys take the HF class defaults (LlamaConfig/MistralConfig/Qwen2Config):
// rms_norm_eps 1e-6, rope_theta 10000, tie_word_embeddings false, num_key_value_heads =
// num_attention_heads, head_dim = hidden_size / num_attention_heads.
#include "llmux/model_config.h"

#include <climits>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numbers>
#include <sstream>
#include <string>

#include "llmux/file_util.h"

namespace llmux {
namespace {

using nlohmann::json;

// Reads config keys with one-line InvalidArgument errors naming the key and the file.
class Reader {
 public:
  Reader(const json& j, std::string_view source) : j_(j), source_(source) {}

  Status Error(std::string_view key, std::string_view what) const {
    return InvalidArgument(std::string(source_) + ": \"" + std::string(key) + "\" " +
                           std::string(what));
  }

  // Present and not null.
  bool Has(const char* key) const {
    auto it = j_.find(key);
    return it != j_.end() && !it->is_null();
  }

  StatusOr<int> Int(const char* key, std::optional<int> fallback, int min_value) const {
    if (!Has(key)) {
      if (fallback) return *fallback;
      return Error(key, "is required");
    }
    const json& v = j_.at(key);
    if (!v.is_number_integer()) return Error(key, "must be an integer, got " + v.dump());
    if (v.is_number_unsigned() ? v.get<uint64_t>() > INT_MAX : v.get<int64_t>() > INT_MAX) {
      return Error(key, "is too large: " + v.dump());
    }
    const int64_t x = v.get<int64_t>();
    if (x < min_value) {
      return Error(key, "must be >= " + std::to_string(min_value) + ", got " + v.dump());
    }
    return static_cast<int>(x);
  }

  // A finite number > 0.
  StatusOr<float> Positive(const json& obj, const char* key, std::optional<float> fallback,
                           std::string_view shown_key) const {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) {
      if (fallback) return *fallback;
      return Error(shown_key, "is required");
    }
    if (!it->is_number()) return Error(shown_key, "must be a number, got " + it->dump());
    const double x = it->get<double>();
    if (!std::isfinite(x) || x <= 0) return Error(shown_key, "must be > 0, got " + it->dump());
    return static_cast<float>(x);
  }

  StatusOr<bool> Bool(const char* key, bool fallback) const {
    if (!Has(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_boolean()) return Error(key, "must be true or false, got " + v.dump());
    return v.get<bool>();
  }

  // A token id in [0, vocab) or, for a list-valued key, a list of them.
  StatusOr<std::vector<int>> TokenIds(const char* key, int vocab) const {
    std::vector<int> ids;
    if (!Has(key)) return ids;
    const json& v = j_.at(key);
    const json list = v.is_array() ? v : json::array({v});
    for (const json& id : list) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= vocab) {
        return Error(key,
                     "must be a token id in [0, vocab_size) or a list of them, got " + v.dump());
      }
      ids.push_back(static_cast<int>(id.get<int64_t>()));
    }
    return ids;
  }

 private:
  const json& j_;
  std::string_view source_;
};

StatusOr<Architecture> ParseArchitecture(const json& j, const Reader& r) {
  std::string name;
  if (r.Has("architectures")) {
    const json& a = j.at("architectures");
    if (!a.is_array() || a.empty() || !a[0].is_string()) {
      return r.Error("architectures", "must be a non-empty list of strings");
    }
    name = a[0].get<std::string>();
  } else if (r.Has("model_type") && j.at("model_type").is_string()) {
    const std::string type = j.at("model_type").get<std::string>();
    if (type == "llama") name = "LlamaForCausalLM";
    if (type == "mistral") name = "MistralForCausalLM";
    if (type == "qwen2") name = "Qwen2ForCausalLM";
    if (name.empty()) name = "model_type " + type;
  } else {
    return r.Error("architectures", "is required");
  }
  if (name == "LlamaForCausalLM") return Architecture::kLlama;
  if (name == "MistralForCausalLM") return Architecture::kMistral;
  if (name == "Qwen2ForCausalLM") return Architecture::kQwen2;
  return Unimplemented(r.Error("architectures", "").message() + "'" + name + "' is not supported" +
                       " (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)");
}

StatusOr<RopeScaling> ParseRopeScaling(const json& j, const Reader& r) {
  RopeScaling rs;
  if (!r.Has("rope_scaling")) return rs;
  const json& s = j.at("rope_scaling");
  if (!s.is_object()) return r.Error("rope_scaling", "must be an object or null");
  std::string type;
  for (const char* k : {"rope_type", "type"}) {
    auto it = s.find(k);
    if (it != s.end() && !it->is_null()) {
      if (!it->is_string()) return r.Error("rope_scaling." + std::string(k), "must be a string");
      type = it->get<std::string>();
      break;
    }
  }
  if (type.empty()) return r.Error("rope_scaling.rope_type", "is required");
  if (type == "default") return rs;
  if (type == "linear") {
    rs.type = RopeScaling::Type::kLinear;
    LLMUX_ASSIGN_OR_RETURN(rs.factor, r.Positive(s, "factor", std::nullopt, "rope_scaling.factor"));
    return rs;
  }
  if (type == "llama3") {
    rs.type = RopeScaling::Type::kLlama3;
    LLMUX_ASSIGN_OR_RETURN(rs.factor, r.Positive(s, "factor", std::nullopt, "rope_scaling.factor"));
    LLMUX_ASSIGN_OR_RETURN(rs.low_freq_factor, r.Positive(s, "low_freq_factor", std::nullopt,
                                                          "rope_scaling.low_freq_factor"));
    LLMUX_ASSIGN_OR_RETURN(rs.high_freq_factor, r.Positive(s, "high_freq_factor", std::nullopt,
                                                           "rope_scaling.high_freq_factor"));
    LLMUX_ASSIGN_OR_RETURN(float original,
                           r.Positive(s, "original_max_position_embeddings", std::nullopt,
                                      "rope_scaling.original_max_position_embeddings"));
    const json& o = s.at("original_max_position_embeddings");
    if (!o.is_number_integer() || o.get<int64_t>() > INT_MAX) {
      return r.Error("rope_scaling.original_max_position_embeddings", "must be an integer");
    }
    rs.original_max_position_embeddings = static_cast<int>(original);
    if (rs.high_freq_factor <= rs.low_freq_factor) {
      return r.Error("rope_scaling.high_freq_factor", "must be > low_freq_factor");
    }
    return rs;
  }
  return Unimplemented(std::string(r.Error("rope_scaling.rope_type", "").message()) + "'" + type +
                       "' is not supported (supported: linear, llama3, default)");
}

StatusOr<ModelConfig> Parse(const json& j, std::string_view source) {
  if (!j.is_object()) return InvalidArgument(std::string(source) + ": not a JSON object");
  Reader r(j, source);
  ModelConfig c;
  LLMUX_ASSIGN_OR_RETURN(c.arch, ParseArchitecture(j, r));
  LLMUX_ASSIGN_OR_RETURN(c.vocab_size, r.Int("vocab_size", std::nullopt, 1));
  LLMUX_ASSIGN_OR_RETURN(c.hidden_size, r.Int("hidden_size", std::nullopt, 1));
  LLMUX_ASSIGN_OR_RETURN(c.intermediate_size, r.Int("intermediate_size", std::nullopt, 1));
  LLMUX_ASSIGN_OR_RETURN(c.num_layers, r.Int("num_hidden_layers", std::nullopt, 1));
  LLMUX_ASSIGN_OR_RETURN(c.num_heads, r.Int("num_attention_heads", std::nullopt, 1));
  LLMUX_ASSIGN_OR_RETURN(c.num_kv_heads, r.Int("num_key_value_heads", c.num_heads, 1));
  if (c.num_heads % c.num_kv_heads != 0) {
    return r.Error("num_key_value_heads", "(" + std::to_string(c.num_kv_heads) +
                                              ") must divide num_attention_heads (" +
                                              std::to_string(c.num_heads) + ")");
  }
  if (r.Has("head_dim")) {
    LLMUX_ASSIGN_OR_RETURN(c.head_dim, r.Int("head_dim", std::nullopt, 1));
  } else {
    if (c.hidden_size % c.num_heads != 0) {
      return r.Error("hidden_size", "(" + std::to_string(c.hidden_size) +
                                        ") must be divisible by num_attention_heads (" +
                                        std::to_string(c.num_heads) + ")");
    }
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (c.head_dim % 2 != 0) {
    return r.Error("head_dim",
                   "must be even for rotary embeddings, got " + std::to_string(c.head_dim));
  }
  LLMUX_ASSIGN_OR_RETURN(c.max_position_embeddings,
                         r.Int("max_position_embeddings", std::nullopt, 1));
  // NOTE: llmux has no sliding-window attention. Capping the context at the window makes
  // full attention exactly equivalent, so such models are served with a shorter context
  // instead of being refused (Mistral v0.1: window 4096).
  if (c.arch != Architecture::kQwen2 || r.Has("use_sliding_window")) {
    LLMUX_ASSIGN_OR_RETURN(bool use_window, r.Bool("use_sliding_window", true));
    if (use_window && r.Has("sliding_window")) {
      LLMUX_ASSIGN_OR_RETURN(int window, r.Int("sliding_window", std::nullopt, 1));
      c.max_position_embeddings = std::min(c.max_position_embeddings, window);
    }
  }
  LLMUX_ASSIGN_OR_RETURN(c.rms_norm_eps, r.Positive(j, "rms_norm_eps", 1e-6f, "rms_norm_eps"));
  LLMUX_ASSIGN_OR_RETURN(c.rope_theta, r.Positive(j, "rope_theta", 10000.0f, "rope_theta"));
  LLMUX_ASSIGN_OR_RETURN(c.rope_scaling, ParseRopeScaling(j, r));
  LLMUX_ASSIGN_OR_RETURN(c.tie_word_embeddings, r.Bool("tie_word_embeddings", false));
  // Qwen2 always has q/k/v biases; Llama/Mistral only when attention_bias says so.
  LLMUX_ASSIGN_OR_RETURN(bool bias, r.Bool("attention_bias", false));
  c.attention_bias = c.arch == Architecture::kQwen2 || bias;
  if (r.Has("hidden_act")) {
    const json& act = j.at("hidden_act");
    if (!act.is_string()) return r.Error("hidden_act", "must be a string");
    if (act.get<std::string>() != "silu") {
      return Unimplemented(std::string(source) + ": \"hidden_act\" '" + act.get<std::string>() +
                           "' is not supported (supported: silu)");
    }
  }
  LLMUX_ASSIGN_OR_RETURN(std::vector<int> bos, r.TokenIds("bos_token_id", c.vocab_size));
  if (bos.size() > 1) return r.Error("bos_token_id", "must be a single token id");
  c.bos_token_id = bos.empty() ? -1 : bos[0];
  LLMUX_ASSIGN_OR_RETURN(c.eos_token_ids, r.TokenIds("eos_token_id", c.vocab_size));
  // Newer transformers write "dtype"; older ones "torch_dtype".
  for (const char* key : {"torch_dtype", "dtype"}) {
    if (!r.Has(key)) continue;
    const json& d = j.at(key);
    const std::string s = d.is_string() ? d.get<std::string>() : d.dump();
    if (s == "float32") {
      c.torch_dtype = DType::kF32;
    } else if (s == "float16") {
      c.torch_dtype = DType::kF16;
    } else if (s == "bfloat16") {
      c.torch_dtype = DType::kBF16;
    } else {
      return r.Error(key, "must be \"float32\", \"float16\" or \"bfloat16\", got " + d.dump());
    }
    break;
  }
  return c;
}

}  // namespace

std::string_view ArchitectureName(Architecture a) {
  switch (a) {
    case Architecture::kLlama:
      return "LlamaForCausalLM";
    case Architecture::kMistral:
      return "MistralForCausalLM";
    case Architecture::kQwen2:
      return "Qwen2ForCausalLM";
  }
  return "?";
}

StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text, std::string_view source) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    return InvalidArgument(std::string(source) + ": not valid JSON: " + e.what());
  }
  try {
    return Parse(j, source);
  } catch (const json::exception& e) {  // a type check missed above; never let it escape
    return InvalidArgument(std::string(source) + ": " + e.what());
  }
}

StatusOr<ModelConfig> LoadModelConfig(const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / "config.json";
  LLMUX_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseModelConfig(text, path.string());
}

namespace {

// Rounds to float32 and keeps the compiler from fusing the surrounding multiply-add into an
// FMA. NOTE: PyTorch evaluates each operator separately with float32 rounding; fused
// rounding would differ from HF in the last bit for some frequencies.
float Rounded(float x) {
  volatile float v = x;
  return v;
}

}  // namespace

std::vector<float> RopeInvFreq(const ModelConfig& config) {
  const int dim = config.head_dim;
  std::vector<float> inv(static_cast<size_t>(dim / 2));
  for (int i = 0; i < dim / 2; ++i) {
    // As HF: 1 / base ** (arange(0, dim, 2) / dim) in float32.
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    const float p = static_cast<float>(
        std::pow(static_cast<double>(config.rope_theta), static_cast<double>(exponent)));
    inv[i] = 1.0f / p;
  }
  const RopeScaling& rs = config.rope_scaling;
  switch (rs.type) {
    case RopeScaling::Type::kNone:
      break;
    case RopeScaling::Type::kLinear:
      for (float& f : inv) f /= rs.factor;
      break;
    case RopeScaling::Type::kLlama3: {
      // transformers' _compute_llama3_parameters.
      const float old_ctx = static_cast<float>(rs.original_max_position_embeddings);
      const float low_freq_wavelen = old_ctx / rs.low_freq_factor;
      const float high_freq_wavelen = old_ctx / rs.high_freq_factor;
      for (float& f : inv) {
        const float wavelen = 2.0f * std::numbers::pi_v<float> / f;
        if (wavelen > low_freq_wavelen) {
          f = f / rs.factor;  // low frequency: fully scaled
        } else if (wavelen >= high_freq_wavelen) {
          const float smooth =
              (old_ctx / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
          f = Rounded(Rounded((1.0f - smooth) * f) / rs.factor) + Rounded(smooth * f);
        }  // high frequency: unchanged
      }
      break;
    }
  }
  return inv;
}

}  // namespace llmux
