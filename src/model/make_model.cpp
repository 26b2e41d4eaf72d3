#include "model/make_model.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "model/bpe_builder.h"
#include "model/model_shapes.h"
#include "model/safetensors_writer.h"

namespace llmux {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

constexpr uint64_t kChunkElements = 1u << 20;  // per generation work item
constexpr const char* kBos = "<|begin_of_text|>";
constexpr const char* kEos = "<|end_of_text|>";
constexpr const char* kImStart = "<|im_start|>";
constexpr const char* kImEnd = "<|im_end|>";

// splitmix64's output function.
inline uint64_t Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t TensorKey(uint64_t seed, std::string_view name) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (char c : name) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  return Mix(seed ^ Mix(h));
}

// NOTE: a counter-based generator (value = f(key, index)) makes every element independent
// of how the work is split across threads, so output bytes never depend on --threads.
// Irwin-Hall(4) of 16-bit lanes: close to normal, cheap, and bounded at 3.46 sigma, which
// keeps random-weight activations tame.
inline float Sample(uint64_t key, uint64_t index) {
  const uint64_t r = Mix(key + (index + 1) * 0x9e3779b97f4a7c15ull);
  const int64_t sum =
      static_cast<int64_t>((r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48));
  // Sum of 4 uniform 16-bit values: mean 131070, sd 65536 / sqrt(3).
  constexpr float kScale = 0.02f * 1.7320508f / 65536.0f;
  return static_cast<float>(sum - 131070) * kScale;
}

struct WorkItem {
  size_t tensor;
  uint64_t begin;  // element range
  uint64_t count;
};

// Fills OUT with ITEM's elements converted by CONVERT (float -> the stored scalar type).
template <typename T, typename Convert>
void FillAs(const WorkItem& item, uint64_t key, float offset, Convert convert,
            std::vector<std::byte>& out) {
  out.resize(item.count * sizeof(T));
  T* dst = reinterpret_cast<T*>(out.data());  // vector<byte> storage is suitably aligned
  for (uint64_t i = 0; i < item.count; ++i) dst[i] = convert(offset + Sample(key, item.begin + i));
}

void Fill(const WorkItem& item, uint64_t key, bool norm, DType dtype, std::vector<std::byte>& out) {
  const float offset = norm ? 1.0f : 0.0f;
  switch (dtype) {
    case DType::kF32:
      FillAs<float>(
          item, key, offset, [](float v) { return v; }, out);
      return;
    case DType::kF16:
      FillAs<uint16_t>(
          item, key, offset, [](float v) { return FloatToHalf(v); }, out);
      return;
    case DType::kBF16:
      FillAs<uint16_t>(
          item, key, offset, [](float v) { return FloatToBf16(v); }, out);
      return;
    case DType::kI32:
      LLMUX_CHECK(false) << "make-model does not write I32 weights";
  }
}

Status WriteText(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return Internal(path.string() + ": write failed");
  return Status::Ok();
}

// The shortest decimal that round-trips the float (1e-05, not 9.999999747378752e-06).
double Decimal(float f) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), f);
  return std::strtod(std::string(buf, end).c_str(), nullptr);
}

std::string TorchDTypeName(DType t) {
  switch (t) {
    case DType::kF32:
      return "float32";
    case DType::kF16:
      return "float16";
    case DType::kBF16:
      return "bfloat16";
    case DType::kI32:
      return "int32";
  }
  return "?";
}

ordered_json ConfigJson(const ModelShape& shape, const ModelConfig& c, DType dtype, uint64_t seed) {
  ordered_json j;
  j["architectures"] = {std::string(ArchitectureName(c.arch))};
  j["model_type"] = c.arch == Architecture::kQwen2 ? "qwen2" : "llama";
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_layers;
  j["num_attention_heads"] = c.num_heads;
  j["num_key_value_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = Decimal(c.rms_norm_eps);
  j["rope_theta"] = Decimal(c.rope_theta);
  if (c.rope_scaling.type == RopeScaling::Type::kLlama3) {
    j["rope_scaling"] = {
        {"rope_type", "llama3"},
        {"factor", Decimal(c.rope_scaling.factor)},
        {"low_freq_factor", Decimal(c.rope_scaling.low_freq_factor)},
        {"high_freq_factor", Decimal(c.rope_scaling.high_freq_factor)},
        {"original_max_position_embeddings", c.rope_scaling.original_max_position_embeddings}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["hidden_act"] = "silu";
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.arch == Architecture::kQwen2) {
    j["use_sliding_window"] = false;
  } else {
    j["attention_bias"] = c.attention_bias;
  }
  j["bos_token_id"] = c.bos_token_id;
  j["eos_token_id"] = c.eos_token_ids;
  j["initializer_range"] = 0.02;
  j["torch_dtype"] = TorchDTypeName(dtype);
  j["llmux_make_model"] = {{"shape", std::string(shape.name)},
                           {"like", std::string(shape.like)},
                           {"seed", seed},
                           {"note", "random weights; not a trained model"}};
  return j;
}

std::string ChatTemplate() {
  // ChatML with a leading BOS. Literal newlines (no escapes inside Jinja strings).
  return "{{ bos_token }}{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
         "{{ message['content'] }}<|im_end|>\n{% endfor %}"
         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
}

ordered_json TokenizerConfigJson(const std::vector<SpecialToken>& specials, int max_pos) {
  ordered_json decoder = ordered_json::object();
  for (const SpecialToken& s : specials) {
    decoder[std::to_string(s.id)] = {{"content", s.content}, {"lstrip", false},
                                     {"normalized", false},  {"rstrip", false},
                                     {"single_word", false}, {"special", true}};
  }
  ordered_json j;
  j["added_tokens_decoder"] = std::move(decoder);
  j["bos_token"] = kBos;
  j["eos_token"] = kEos;
  j["clean_up_tokenization_spaces"] = false;
  j["model_max_length"] = max_pos;
  j["tokenizer_class"] = "PreTrainedTokenizerFast";
  j["chat_template"] = ChatTemplate();
  return j;
}

// Generates and writes the tensors [first, last) of SPECS into one file.
Status WriteWeights(const fs::path& path, const std::vector<TensorSpec>& specs, size_t first,
                    size_t last, const MakeModelOptions& opt, int threads) {
  std::vector<TensorHeader> headers;
  std::vector<WorkItem> items;
  for (size_t t = first; t < last; ++t) {
    headers.push_back({specs[t].name, opt.dtype, specs[t].shape});
    const uint64_t n = specs[t].numel();
    for (uint64_t b = 0; b < n; b += kChunkElements) {
      items.push_back({t, b, std::min(kChunkElements, n - b)});
    }
  }
  std::vector<uint64_t> keys(specs.size());
  for (size_t t = first; t < last; ++t) keys[t] = TensorKey(opt.seed, specs[t].name);

  LLMUX_ASSIGN_OR_RETURN(auto writer, SafetensorsWriter::Create(path, headers, {{"format", "pt"}}));
  const size_t window = static_cast<size_t>(threads) * 2;
  std::vector<std::vector<std::byte>> buffers(window);
  for (size_t w0 = 0; w0 < items.size(); w0 += window) {
    const size_t w1 = std::min(items.size(), w0 + window);
    auto work = [&](size_t tid) {
      for (size_t i = w0 + tid; i < w1; i += static_cast<size_t>(threads)) {
        const WorkItem& item = items[i];
        Fill(item, keys[item.tensor], specs[item.tensor].init == TensorInit::kNorm, opt.dtype,
             buffers[i - w0]);
      }
    };
    if (threads == 1 || w1 - w0 == 1) {
      work(0);
    } else {
      std::vector<std::jthread> pool;
      for (size_t tid = 0; tid < static_cast<size_t>(threads); ++tid) pool.emplace_back(work, tid);
    }  // jthreads join here
    for (size_t i = w0; i < w1; ++i) LLMUX_RETURN_IF_ERROR(writer->Append(buffers[i - w0]));
  }
  return writer->Finish();
}

std::string ShardName(size_t k, size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "model-%05zu-of-%05zu.safetensors", k + 1, n);
  return buf;
}

}  // namespace

ModelConfig MakeModelConfig(const ModelShape& shape, DType dtype) {
  ModelConfig c = ShapeConfig(shape);
  c.torch_dtype = dtype;
  c.bos_token_id = c.vocab_size - 4;                       // <|begin_of_text|>
  c.eos_token_ids = {c.vocab_size - 3, c.vocab_size - 1};  // <|end_of_text|>, <|im_end|>
  return c;
}

std::string MakeModelConfigJson(const ModelShape& shape, DType dtype, uint64_t seed) {
  return ConfigJson(shape, MakeModelConfig(shape, dtype), dtype, seed).dump(2);
}

float MakeModelWeight(uint64_t seed, std::string_view name, bool norm, uint64_t index) {
  return (norm ? 1.0f : 0.0f) + Sample(TensorKey(seed, name), index);
}

StatusOr<MakeModelResult> MakeModel(const MakeModelOptions& opt) {
  const ModelShape* shape = FindModelShape(opt.shape);
  if (shape == nullptr) {
    std::string names;
    for (const ModelShape& s : ModelShapes())
      names += (names.empty() ? "" : ", ") + std::string(s.name);
    return InvalidArgument("unknown shape '" + opt.shape + "' (shapes: " + names + ")");
  }
  if (opt.dtype == DType::kI32) return InvalidArgument("dtype must be f32, f16 or bf16");
  if (opt.out_dir.empty()) return InvalidArgument("an output directory is required");
  std::error_code ec;
  fs::create_directories(opt.out_dir, ec);
  if (ec) return Internal(opt.out_dir.string() + ": cannot create: " + ec.message());

  MakeModelResult result;
  ModelConfig& c = result.config;
  c = MakeModelConfig(*shape, opt.dtype);
  const int v = c.vocab_size;
  const std::vector<SpecialToken> specials = {
      {v - 4, kBos}, {v - 3, kEos}, {v - 2, kImStart}, {v - 1, kImEnd}};

  // Tokenizer: byte-level BPE filling every id below the specials.
  const ByteLevelBpe bpe = BuildByteLevelBpe(v - static_cast<int>(specials.size()));
  LLMUX_RETURN_IF_ERROR(
      WriteText(opt.out_dir / "tokenizer.json", TokenizerJson(bpe, specials, kBos)));
  LLMUX_RETURN_IF_ERROR(
      WriteText(opt.out_dir / "tokenizer_config.json",
                TokenizerConfigJson(specials, c.max_position_embeddings).dump(2)));
  LLMUX_RETURN_IF_ERROR(
      WriteText(opt.out_dir / "config.json", MakeModelConfigJson(*shape, opt.dtype, opt.seed)));
  result.files = {"config.json", "tokenizer.json", "tokenizer_config.json"};

  // Weights: consecutive tensors grouped into shards of at most max_shard_bytes.
  const std::vector<TensorSpec> specs = ModelTensors(c);
  std::vector<size_t> shard_begin = {0};
  uint64_t shard_bytes = 0;
  for (size_t t = 0; t < specs.size(); ++t) {
    const uint64_t n = specs[t].numel() * DTypeSize(opt.dtype);
    result.weight_bytes += n;
    if (shard_bytes > 0 && shard_bytes + n > opt.max_shard_bytes) {
      shard_begin.push_back(t);
      shard_bytes = 0;
    }
    shard_bytes += n;
  }
  shard_begin.push_back(specs.size());
  const size_t num_shards = shard_begin.size() - 1;

  int threads = opt.threads > 0
                    ? opt.threads
                    : static_cast<int>(std::min(16u, std::thread::hardware_concurrency()));
  threads = std::max(threads, 1);
  const fs::path index_path = opt.out_dir / "model.safetensors.index.json";
  const fs::path single_path = opt.out_dir / "model.safetensors";
  if (num_shards == 1) {
    fs::remove(index_path, ec);  // a stale index would shadow the new single file
    LLMUX_RETURN_IF_ERROR(WriteWeights(single_path, specs, 0, specs.size(), opt, threads));
    result.files.push_back("model.safetensors");
    return result;
  }
  fs::remove(single_path, ec);
  fs::remove(index_path, ec);
  ordered_json weight_map = ordered_json::object();
  for (size_t k = 0; k < num_shards; ++k) {
    const std::string name = ShardName(k, num_shards);
    LLMUX_RETURN_IF_ERROR(
        WriteWeights(opt.out_dir / name, specs, shard_begin[k], shard_begin[k + 1], opt, threads));
    for (size_t t = shard_begin[k]; t < shard_begin[k + 1]; ++t) weight_map[specs[t].name] = name;
    result.files.push_back(name);
  }
  ordered_json index = {{"metadata", {{"total_size", result.weight_bytes}}},
                        {"weight_map", std::move(weight_map)}};
  LLMUX_RETURN_IF_ERROR(WriteText(index_path, index.dump(2)));
  result.files.push_back("model.safetensors.index.json");
  return result;
}

}  // namespace llmux
