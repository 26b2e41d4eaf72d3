// Reading tokenizer.json and tokenizer_config.json into a TokenizerImpl.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer_impl.h"

namespace llmux::tokenizer_internal {
namespace {

// j[key], or null when absent.
const nlohmann::json& Field(const nlohmann::json& j, const char* key) {
  static const nlohmann::json kNull;
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

// A token string from tokenizer_config.json: a plain string or an AddedToken object.
std::string ConfigToken(const nlohmann::json& config, const char* key) {
  if (!config.contains(key)) return "";
  const auto& v = config.at(key);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content")) return v.at("content").get<std::string>();
  return "";
}

// Special-token ids that a post-processor adds around a single sequence.
Status ParsePostProcessor(const nlohmann::json& j, std::vector<int32_t>& prefix,
                          std::vector<int32_t>& suffix) {
  if (j.is_null()) return Status::Ok();
  const std::string type = j.at("type").get<std::string>();
  if (type == "Sequence") {
    for (const auto& p : j.at("processors")) {
      LLMUX_RETURN_IF_ERROR(ParsePostProcessor(p, prefix, suffix));
    }
    return Status::Ok();
  }
  if (type == "ByteLevel") return Status::Ok();  // only adjusts offsets
  if (type != "TemplateProcessing") {
    return Unimplemented("tokenizer.json post_processor type '" + type + "' is not supported");
  }
  bool seen_sequence = false;
  for (const auto& item : j.at("single")) {
    if (item.contains("Sequence")) {
      seen_sequence = true;
      continue;
    }
    const std::string name = item.at("SpecialToken").at("id").get<std::string>();
    const auto& ids = j.at("special_tokens").at(name).at("ids");
    for (const auto& id : ids) (seen_sequence ? suffix : prefix).push_back(id.get<int32_t>());
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::unique_ptr<TokenizerImpl>> LoadTokenizer(std::string_view tokenizer_json,
                                                       std::string_view tokenizer_config_json) {
  auto impl = std::make_unique<TokenizerImpl>();
  try {
    const nlohmann::json j = nlohmann::json::parse(tokenizer_json);
    nlohmann::json config = nlohmann::json::object();
    if (!tokenizer_config_json.empty()) config = nlohmann::json::parse(tokenizer_config_json);

    const auto& model = j.at("model");
    const std::string type = model.value("type", std::string("BPE"));
    if (type != "BPE") {
      return Unimplemented("tokenizer.json model type '" + type + "' is not supported (BPE only)");
    }
    LLMUX_ASSIGN_OR_RETURN(impl->model, BpeModel::Parse(model));
    LLMUX_ASSIGN_OR_RETURN(impl->normalizer, ParseNormalizer(Field(j, "normalizer")));
    LLMUX_ASSIGN_OR_RETURN(impl->pre_tokenizer, ParsePreTokenizer(Field(j, "pre_tokenizer")));
    LLMUX_ASSIGN_OR_RETURN(impl->decoder, ParseDecoder(Field(j, "decoder")));

    std::vector<AddedToken> added;
    for (const auto& t : Field(j, "added_tokens")) {
      AddedToken a;
      a.id = t.at("id").get<int32_t>();
      a.content = t.at("content").get<std::string>();
      a.special = t.value("special", false);
      a.lstrip = t.value("lstrip", false);
      a.rstrip = t.value("rstrip", false);
      a.normalized = t.value("normalized", !a.special);
      a.single_word = t.value("single_word", false);
      if (a.id < 0) return DataLoss("added token '" + a.content + "' has a negative id");
      added.push_back(std::move(a));
    }
    LLMUX_ASSIGN_OR_RETURN(impl->added,
                           AddedVocab::Build(std::move(added), impl->normalizer.get()));
    impl->vocab_size = std::max(impl->model->size(), impl->added->max_id() + 1);

    LLMUX_RETURN_IF_ERROR(
        ParsePostProcessor(Field(j, "post_processor"), impl->prefix_special, impl->suffix_special));

    auto token_id = [&](const std::string& s) -> std::optional<int32_t> {
      if (s.empty()) return std::nullopt;
      if (const AddedToken* a = impl->added->FindByContent(s)) return a->id;
      return impl->model->TokenToId(s);
    };
    impl->bos_token = ConfigToken(config, "bos_token");
    impl->eos_token = ConfigToken(config, "eos_token");
    impl->bos_id = token_id(impl->bos_token);
    impl->eos_id = token_id(impl->eos_token);
    if (!impl->bos_id && impl->prefix_special.size() == 1) {
      // No config: the template's leading special token is the BOS.
      impl->bos_id = impl->prefix_special[0];
      impl->bos_token = std::string(impl->Piece(*impl->bos_id).value_or(""));
    }
    // NOTE: as LlamaTokenizerFast, add_bos_token / add_eos_token in the config override the
    // post-processor template.
    if (config.contains("add_bos_token") && config.at("add_bos_token").is_boolean()) {
      impl->prefix_special.clear();
      if (config.at("add_bos_token").get<bool>()) {
        if (!impl->bos_id) return DataLoss("add_bos_token is set but bos_token is unknown");
        impl->prefix_special.push_back(*impl->bos_id);
      }
    }
    if (config.contains("add_eos_token") && config.at("add_eos_token").is_boolean()) {
      impl->suffix_special.clear();
      if (config.at("add_eos_token").get<bool>()) {
        if (!impl->eos_id) return DataLoss("add_eos_token is set but eos_token is unknown");
        impl->suffix_special.push_back(*impl->eos_id);
      }
    }
    impl->decoder.clean_up_tokenization_spaces =
        config.contains("clean_up_tokenization_spaces") &&
        config.at("clean_up_tokenization_spaces").is_boolean() &&
        config.at("clean_up_tokenization_spaces").get<bool>();
  } catch (const nlohmann::json::exception& e) {
    return DataLoss(std::string("malformed tokenizer json: ") + e.what());
  }
  return impl;
}

}  // namespace llmux::tokenizer_internal
