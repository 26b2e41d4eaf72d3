// Small file helpers shared by the loaders (model config, tokenizer, chat templates).
#pragma once

#include <filesystem>
#include <string>

#include "llmux/status.h"

namespace llmux {

// The whole file as bytes. NotFound when it does not exist or cannot be opened; DataLoss when
// reading fails part-way.
StatusOr<std::string> ReadFileToString(const std::filesystem::path& path);

}  // namespace llmux
