// A GGUF file of the Llama architecture (general.architecture "llama", as llama.cpp's
// convert_hf_to_gguf.py writes it) seen as a Hugging Face model: the ModelConfig from its
// metadata and a WeightStore under HF tensor names.
//
// llama.cpp's converter permutes the rows of attn_q / attn_k per head from HF's rotate-half
// layout to interleaved pairs; they are permuted back here (a copy of those two matrices,
// row by row, so Q8_0 rows move whole). Every other tensor is used in place from the mapping.
#pragma once

#include <filesystem>
#include <memory>

#include "llmux/model_config.h"
#include "llmux/safetensors.h"
#include "llmux/status.h"
#include "model/gguf_file.h"

namespace llmux {

struct GgufLlama {
  ModelConfig config;
  std::unique_ptr<WeightStore> weights;  // owns the GgufFile
};

// InvalidArgument / DataLoss / Unimplemented naming the file and the key or tensor at fault.
StatusOr<GgufLlama> OpenGgufLlama(const std::filesystem::path& path);
StatusOr<GgufLlama> GgufLlamaFromFile(std::unique_ptr<GgufFile> file);

}  // namespace llmux
