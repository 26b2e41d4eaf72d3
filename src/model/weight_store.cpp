// WeightStore: the tensors of a model directory, single-file or sharded.
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <system_error>
#include <unordered_map>

#include "llmux/safetensors.h"

namespace llmux {
namespace {

using nlohmann::json;

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";
// An index lists one entry per tensor; real ones are a few hundred KiB.
constexpr uintmax_t kMaxIndexBytes = 64ull << 20;

class WeightStoreImpl final : public WeightStore {
 public:
  explicit WeightStoreImpl(std::vector<std::unique_ptr<SafetensorsFile>> files)
      : files_(std::move(files)) {}

  // Indexes every tensor of every file; DataLoss when a name appears in two files.
  Status BuildIndex(const std::vector<std::string>& file_names) {
    for (size_t f = 0; f < files_.size(); ++f) {
      for (const HostTensor& t : files_[f]->tensors()) {
        auto [it, inserted] = index_.emplace(t.name, Entry{&t, f});
        if (!inserted) {
          return DataLoss("tensor '" + t.name + "' is present in two shards: " +
                          file_names[it->second.file] + " and " + file_names[f]);
        }
      }
    }
    return Status::Ok();
  }

  const HostTensor* Find(std::string_view name) const override {
    auto it = index_.find(std::string(name));
    return it == index_.end() ? nullptr : it->second.tensor;
  }

  std::vector<std::string> Names() const override {
    std::vector<std::string> names;
    names.reserve(index_.size());
    for (const auto& [name, entry] : index_) names.push_back(name);
    return names;  // sorted: index_ is an ordered map
  }

 private:
  struct Entry {
    const HostTensor* tensor;
    size_t file;
  };
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Entry> index_;
};

// A shard name must be a plain file name inside the model directory.
bool IsSafeShardName(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos &&
         name.find('\\') == std::string::npos && name.find("..") == std::string::npos &&
         name.find('\0') == std::string::npos;
}

StatusOr<std::string> ReadSmallFile(const std::filesystem::path& path, uintmax_t cap) {
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) return Internal(path.string() + ": " + ec.message());
  if (size > cap) {
    return InvalidArgument(path.string() + ": " + std::to_string(size) + " bytes exceeds the " +
                           std::to_string(cap) + "-byte limit");
  }
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return Internal(path.string() + ": cannot open");
  std::string text(size, '\0');
  const size_t got = std::fread(text.data(), 1, size, f);
  std::fclose(f);
  if (got != size) return DataLoss(path.string() + ": short read");
  return text;
}

// weight_map of the index: tensor name -> shard file name, validated.
StatusOr<std::map<std::string, std::string>> ParseIndex(const std::filesystem::path& path) {
  LLMUX_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path, kMaxIndexBytes));
  const std::string src = path.string();
  json index;
  try {
    index = json::parse(text);
  } catch (const json::exception& e) {
    return DataLoss(src + ": not valid JSON: " + e.what());
  }
  if (!index.is_object()) return DataLoss(src + ": not a JSON object");
  auto wm = index.find("weight_map");
  if (wm == index.end() || !wm->is_object()) {
    return DataLoss(src + ": missing or non-object \"weight_map\"");
  }
  std::map<std::string, std::string> weight_map;
  for (const auto& [name, shard] : wm->items()) {
    if (!shard.is_string()) {
      return DataLoss(src + ": weight_map entry for tensor '" + name + "' is not a string");
    }
    const std::string shard_name = shard.get<std::string>();
    if (!IsSafeShardName(shard_name)) {
      return InvalidArgument(src + ": tensor '" + name + "' names shard '" + shard_name +
                             "', which is not a plain file name in the model directory");
    }
    weight_map.emplace(name, shard_name);
  }
  if (weight_map.empty()) return DataLoss(src + ": \"weight_map\" is empty");
  return weight_map;
}

StatusOr<std::unique_ptr<WeightStore>> OpenSharded(const std::filesystem::path& dir) {
  const std::filesystem::path index_path = dir / kIndexFile;
  LLMUX_ASSIGN_OR_RETURN(auto weight_map, ParseIndex(index_path));
  std::set<std::string> shard_set;
  for (const auto& [name, shard] : weight_map) shard_set.insert(shard);
  const std::vector<std::string> shard_names(shard_set.begin(), shard_set.end());

  std::vector<std::unique_ptr<SafetensorsFile>> files;
  std::map<std::string, const SafetensorsFile*> by_name;
  for (const std::string& shard : shard_names) {
    auto file = SafetensorsFile::Open(dir / shard);
    if (!file.ok()) {
      if (file.status().code() == StatusCode::kNotFound) {
        return NotFound(index_path.string() + ": shard '" + shard +
                        "' is missing: " + file.status().message());
      }
      return file.status();
    }
    by_name[shard] = file->get();
    files.push_back(std::move(file).value());
  }
  for (const auto& [name, shard] : weight_map) {
    if (by_name[shard]->Find(name) == nullptr) {
      return DataLoss(index_path.string() + ": tensor '" + name + "' is listed in shard '" + shard +
                      "' but absent from it");
    }
  }
  auto store = std::make_unique<WeightStoreImpl>(std::move(files));
  LLMUX_RETURN_IF_ERROR(store->BuildIndex(shard_names).WithContext(dir.string()));
  return std::unique_ptr<WeightStore>(std::move(store));
}

}  // namespace

StatusOr<std::unique_ptr<WeightStore>> WeightStore::Open(const std::filesystem::path& model_dir) {
  std::error_code ec;
  if (std::filesystem::exists(model_dir / kIndexFile, ec)) {
    try {
      return OpenSharded(model_dir);
    } catch (const std::exception& e) {  // std::filesystem / allocation failures
      return Internal(model_dir.string() + ": cannot open sharded weights: " + e.what());
    }
  }
  const std::filesystem::path single = model_dir / kSingleFile;
  if (!std::filesystem::exists(single, ec)) {
    return NotFound(model_dir.string() + ": neither " + kSingleFile + " nor " + kIndexFile +
                    " found");
  }
  LLMUX_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(single));
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  files.push_back(std::move(file));
  auto store = std::make_unique<WeightStoreImpl>(std::move(files));
  LLMUX_RETURN_IF_ERROR(store->BuildIndex({kSingleFile}));
  return std::unique_ptr<WeightStore>(std::move(store));
}

}  // namespace llmux
