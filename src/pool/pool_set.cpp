// PoolSet: builds every pool of the server and routes tenant policy to the right engine.
#include <unistd.h>

#include "llmux/log.h"
#include "llmux/pool.h"
#include "pool/local_engine.h"
#include "pool/process_engine.h"

namespace llmux {
namespace {

// How long Create waits for a process pool's first worker to load its model.
constexpr std::chrono::minutes kFirstStartTimeout{10};

std::string ChatTemplateSpec(const ChatTemplateSource& s) {
  switch (s.kind) {
    case ChatTemplateSource::Kind::kModel: return "";
    case ChatTemplateSource::Kind::kBuiltin: return "builtin:" + s.value;
    case ChatTemplateSource::Kind::kFile: return "file:" + s.value;
  }
  return "";
}

class PoolImpl final : public Pool {
 public:
  PoolImpl(PoolSection config, std::unique_ptr<Tokenizer> tokenizer,
           std::unique_ptr<ChatTemplate> chat_template)
      : config_(std::move(config)),
        tokenizer_(std::move(tokenizer)),
        chat_template_(std::move(chat_template)),
        model_name_(ServedModelName(config_.model)) {}

  void SetEngine(std::unique_ptr<Engine> engine, pool::ProcessEngine* process) {
    engine_ = std::move(engine);
    process_ = process;
    max_model_len_ = engine_->model_config().max_position_embeddings;
    if (config_.model.max_model_len > 0) {
      max_model_len_ = std::min(max_model_len_, config_.model.max_model_len);
    }
  }
  pool::ProcessEngine* process() { return process_; }

  const PoolSection& config() const override { return config_; }
  Engine* engine() override { return engine_.get(); }
  const Tokenizer& tokenizer() const override { return *tokenizer_; }
  const ChatTemplate& chat_template() const override { return *chat_template_; }
  const std::string& model_name() const override { return model_name_; }
  int32_t max_model_len() const override { return max_model_len_; }
  PoolStatus Describe() const override {
    PoolStatus s;
    if (process_ != nullptr) {
      s = process_->Describe();
    } else {
      s.name = config_.name;
      s.isolation = PoolIsolation::kThread;
      s.state = stopped_ ? PoolState::kStopped : PoolState::kReady;
      s.pid = ::getpid();
      s.stats = engine_->Stats();
    }
    s.model = model_name_;
    return s;
  }
  void Stop() {
    engine_->Stop();
    stopped_ = true;
  }

 private:
  const PoolSection config_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ChatTemplate> chat_template_;
  const std::string model_name_;
  std::unique_ptr<Engine> engine_;
  pool::ProcessEngine* process_ = nullptr;  // engine_ when it is a process pool
  int32_t max_model_len_ = 0;
  std::atomic<bool> stopped_{false};
};

class PoolSetImpl final : public PoolSet {
 public:
  explicit PoolSetImpl(std::vector<std::unique_ptr<PoolImpl>> pools) : pools_(std::move(pools)) {}
  ~PoolSetImpl() override { Stop(); }

  Pool* Find(const std::string& name) override {
    for (auto& p : pools_) {
      if (p->name() == name) return p.get();
    }
    return nullptr;
  }
  std::vector<Pool*> pools() override {
    std::vector<Pool*> out;
    for (auto& p : pools_) out.push_back(p.get());
    return out;
  }
  Status ApplyPolicy(const TenantPolicy& policy) override {
    for (const auto& [name, t] : policy.tenants) {
      Pool* p = Find(t.pool);
      if (p == nullptr) {
        return FailedPrecondition("tenant \"" + name + "\" names unknown pool \"" + t.pool + "\"");
      }
      LLMUX_RETURN_IF_ERROR(p->engine()->UpsertTenant(name, TenantLimitsOf(t)));
    }
    return Status::Ok();
  }
  void Stop() override {
    for (auto& p : pools_) p->Stop();
  }

 private:
  std::vector<std::unique_ptr<PoolImpl>> pools_;
};

}  // namespace

std::string ServedModelName(const ModelSection& model) {
  if (!model.name.empty()) return model.name;
  std::filesystem::path folder = model.path.lexically_normal();
  if (!folder.has_filename()) folder = folder.parent_path();
  return folder.filename().string();
}

Status CheckModelFolder(const ModelSection& model) {
  const std::string& dir = model.path.string();
  const std::string key =
      "model.path" + (model.path_origin.empty() ? "" : " (" + model.path_origin + ")");
  std::error_code ec;
  if (!std::filesystem::exists(model.path, ec)) {
    return NotFound(key + ": the model folder " + dir + " does not exist");
  }
  if (!std::filesystem::is_directory(model.path, ec)) {
    return InvalidArgument(key + ": " + dir +
                           " is not a folder; model.path names a Hugging Face model folder");
  }
  if (!std::filesystem::exists(model.path / "config.json", ec)) {
    return InvalidArgument(key + ": " + dir +
                           " is not a model folder: it has no config.json (a Hugging Face model "
                           "folder holds config.json, model.safetensors and tokenizer.json)");
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<PoolSet>> PoolSet::Create(const ServerConfig& config,
                                                   const std::vector<Lane>& lanes,
                                                   const PoolSetOptions& options) {
  std::vector<LaneConfig> lane_configs;
  for (const Lane& l : lanes) {
    lane_configs.push_back(LaneConfig{l.name, l.max_wait.count(), l.arrival_order});
  }
  std::vector<std::unique_ptr<PoolImpl>> pools;
  for (const PoolSection& section : config.pools) {
    const std::string context = "pool " + section.name;
    if (section.model.path.empty()) return InvalidArgument(context + ": model.path is empty");
    LLMUX_RETURN_IF_ERROR(CheckModelFolder(section.model).WithContext(context));
    const std::filesystem::path dir = section.model.path;
    auto tokenizer = Tokenizer::FromModelDir(dir);
    if (!tokenizer.ok()) return tokenizer.status().WithContext(context + ": tokenizer");
    auto chat_template = ChatTemplate::FromSpec(ChatTemplateSpec(section.model.chat_template),
                                                dir / "tokenizer_config.json");
    if (!chat_template.ok() && chat_template.status().code() == StatusCode::kNotFound &&
        section.model.chat_template.kind == ChatTemplateSource::Kind::kModel) {
      LogEvent(LogLevel::kWarn, "chat_template_missing",
               {F("pool", section.name), F("model", dir.string()), F("fallback", "builtin:chatml")});
      chat_template = ChatTemplate::FromSpec("builtin:chatml", dir / "tokenizer_config.json");
    }
    if (!chat_template.ok()) return chat_template.status().WithContext(context + ": chat template");
    auto pool = std::make_unique<PoolImpl>(section, std::move(tokenizer).value(),
                                           std::move(chat_template).value());
    switch (section.isolation) {
      case PoolIsolation::kThread: {
        LLMUX_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine,
                               pool::CreateLocalEngine(section, lane_configs));
        engine->Start();
        pool->SetEngine(std::move(engine), nullptr);
        break;
      }
      case PoolIsolation::kProcess: {
        LLMUX_ASSIGN_OR_RETURN(std::unique_ptr<pool::ProcessEngine> engine,
                               pool::ProcessEngine::Create(section, lane_configs, options));
        pool::ProcessEngine* raw = engine.get();
        engine->Start();
        pool->SetEngine(std::move(engine), raw);
        break;
      }
    }
    pools.push_back(std::move(pool));
  }
  // Workers load in parallel; wait for each first start.
  auto set = std::make_unique<PoolSetImpl>(std::move(pools));
  for (Pool* p : set->pools()) {
    auto* impl = static_cast<PoolImpl*>(p);
    if (impl->process() == nullptr) continue;
    Status s = impl->process()->WaitUntilFirstReady(kFirstStartTimeout);
    if (!s.ok()) return s;
  }
  return std::unique_ptr<PoolSet>(std::move(set));
}

}  // namespace llmux
