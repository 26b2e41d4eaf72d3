#include "load_generator.h"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <memory>

#include "http_client.h"

namespace llmux::bench {

namespace asio = boost::asio;
using json = nlohmann::json;

namespace {

// NOTE: common English words; with most BPE vocabularies each is one token after a space, so a
// `prompt: text` request of N words is about N tokens (usage reports the real count).
constexpr const char* kWords[] = {
    "the", "of", "and", "to", "in", "is", "was", "for", "on", "that", "with", "as", "by", "at",
    "from", "his", "an", "were", "are", "which", "this", "be", "or", "has", "had", "one",
    "first", "their", "its", "new", "after", "who", "they", "have", "her", "she", "two", "been",
    "other", "when", "there", "all", "during", "into", "school", "time", "may", "years", "more",
    "most", "only", "over", "city", "some", "world", "would", "where", "later", "up", "such"};

double Since(Clock::time_point t0, Clock::time_point t) {
  return std::chrono::duration<double>(t - t0).count();
}

class Generator {
 public:
  // `t0`: the run's origin (shared by every process of the run); `poll_admin`: this process
  // polls GET /admin/stats (one process per run does).
  Generator(const Scenario& sc, const Run& run, const Target& target, Clock::time_point t0,
            bool poll_admin)
      : sc_(sc), run_(run), target_(target), poll_admin_(poll_admin && !sc.admin_key.empty()),
        client_(io_, target.host, target.port), stop_timer_(io_), admin_timer_(io_), t0_(t0) {}

  RunData Execute() {
    deadline_ = t0_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(run_.duration_s));
    for (size_t k = 0; k < run_.tenants.size(); ++k) {
      const TenantLoad* t = sc_.FindTenant(run_.tenants[k]);
      size_t scenario_index = static_cast<size_t>(t - sc_.tenants.data());
      lanes_.push_back(std::make_unique<TenantState>(TenantState{t, k, Rng(TenantSeed(sc_.seed, scenario_index)),
                                                                 asio::steady_timer(io_), 0}));
      result_.tenants.push_back(t->name);
    }
    for (auto& ts : lanes_) {
      const double first = ts->load->start_s + (ts->load->rate > 0 ? ts->rng.Exponential(ts->load->rate) : 0);
      ScheduleAt(*ts, first, ts->load->concurrency > 0 ? ts->load->concurrency : 1);
    }
    if (poll_admin_) PollAdmin();
    stop_timer_.expires_at(deadline_);
    stop_timer_.async_wait([this](boost::system::error_code) { OnDeadline(); });
    io_.run();
    double last = 0;
    for (const RequestRecord& r : result_.records) last = std::max(last, r.end);
    result_.duration_s = last;
    return std::move(result_);
  }

 private:
  struct TenantState {
    const TenantLoad* load;
    size_t index;  // in the run
    Rng rng;
    asio::steady_timer timer;
    double next_at;  // Poisson: the next arrival (seconds since t0)
  };

  bool Issuing() const {
    return !stopped_issuing_ && (run_.max_requests == 0 || issued_ < run_.max_requests);
  }

  // Sends `count` requests at `at` seconds (count > 1 only for a closed loop's first wave).
  void ScheduleAt(TenantState& ts, double at, int count) {
    ts.next_at = at;
    ts.timer.expires_at(t0_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(at)));
    ts.timer.async_wait([this, &ts, count](boost::system::error_code ec) {
      if (ec || !Issuing()) return;
      for (int i = 0; i < count && Issuing(); ++i) Send(ts);
      if (ts.load->rate > 0) ScheduleAt(ts, ts.next_at + ts.rng.Exponential(ts.load->rate), 1);
    });
  }

  void Send(TenantState& ts) {
    ++issued_;
    ++outstanding_;
    const size_t id = result_.records.size();
    RequestRecord rec;
    rec.tenant = ts.index;
    rec.prompt_tokens = ts.load->prompt_len.Sample(ts.rng);
    const int64_t out = ts.load->output_len.Sample(ts.rng);
    std::string body = BuildRequestBody(sc_, *ts.load, target_.model, rec.prompt_tokens, out, ts.rng);
    rec.start = Since(t0_, Clock::now());
    result_.records.push_back(std::move(rec));
    const std::string path = sc_.api == "chat" ? "/v1/chat/completions" : "/v1/completions";
    StreamSink sink;
    sink.on_event = [this, id](const std::string& data, Clock::time_point at) { OnEvent(id, data, at); };
    sink.on_done = [this, id, &ts](const HttpResult& r) { OnDone(id, ts, r); };
    client_.PostStream(path, ts.load->key, std::move(body), std::move(sink));
  }

  void OnEvent(size_t id, const std::string& data, Clock::time_point at) {
    RequestRecord& r = result_.records[id];
    if (data == "[DONE]") return;
    json j = json::parse(data, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || j.contains("error")) {
      r.stream_error = true;
      if (r.error.empty()) r.error = data.substr(0, 200);
      return;
    }
    if (auto u = j.find("usage"); u != j.end() && u->is_object()) {
      r.prompt_tokens = u->value("prompt_tokens", r.prompt_tokens);
      r.output_tokens = u->value("completion_tokens", r.output_tokens);
    }
    auto c = j.find("choices");
    if (c == j.end() || !c->is_array() || c->empty()) return;
    const json& choice = (*c)[0];
    std::string text;
    if (auto t = choice.find("text"); t != choice.end() && t->is_string()) text = t->get<std::string>();
    if (auto d = choice.find("delta"); d != choice.end() && d->is_object()) text = d->value("content", "");
    if (auto m = choice.find("message"); m != choice.end() && m->is_object()) text = m->value("content", "");
    // Every chunk with a choice is a token arrival (its text may be empty: a special token, or
    // bytes held back until a UTF-8 character is complete), except the closing chunk that
    // only carries finish_reason — unless nothing came before it (then it is the first token).
    auto fr = choice.find("finish_reason");
    const bool closing = text.empty() && fr != choice.end() && !fr->is_null();
    if (!closing || r.chunks.empty()) r.chunks.push_back(Since(t0_, at));
  }

  void OnDone(size_t id, TenantState& ts, const HttpResult& res) {
    RequestRecord& r = result_.records[id];
    r.end = Since(t0_, Clock::now());
    r.status = res.status;
    if (!res.error.empty() && r.error.empty()) r.error = res.error;
    if (r.ok() && r.output_tokens == 0) r.output_tokens = static_cast<int64_t>(r.chunks.size());
    --outstanding_;
    // Closed loop: the finished request's slot issues the next one at once — after 100 ms when
    // it failed, so a rejected tenant does not spin the shared CPUs on instant 429s.
    if (ts.load->concurrency > 0 && Issuing()) {
      if (r.ok()) return Send(ts);
      auto backoff = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(100));
      backoff->async_wait([this, &ts, backoff](boost::system::error_code) {
        if (Issuing()) return Send(ts);
        MaybeFinish();
      });
    } else {
      MaybeFinish();
    }
  }

  void OnDeadline() {
    stopped_issuing_ = true;
    for (auto& ts : lanes_) ts->timer.cancel();
    if (MaybeFinish()) return;
    stop_timer_.expires_after(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(sc_.drain_s)));
    stop_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      client_.CancelAll();  // the rest are recorded as unfinished
    });
  }

  bool MaybeFinish() {
    if (!Issuing() && outstanding_ == 0 && !finishing_) {
      stopped_issuing_ = true;
      finishing_ = true;
      for (auto& ts : lanes_) ts->timer.cancel();
      stop_timer_.cancel();
      if (!poll_admin_) return true;
      admin_timer_.cancel();
      PollAdmin(/*last=*/true);
      return true;
    }
    return finishing_;
  }

  void PollAdmin(bool last = false) {
    client_.Get("/admin/stats", sc_.admin_key, [this, last](const HttpResult& r) {
      if (r.status == 200) {
        ++result_.admin_polls;
        json j = json::parse(r.body, nullptr, false);
        if (j.is_object() && j.contains("tenants") && j["tenants"].is_object()) {
          for (auto& [name, t] : j["tenants"].items()) {
            int64_t& seen = result_.max_inflight_seen[name];
            seen = std::max<int64_t>(seen, t.value("inflight_tokens", int64_t{0}));
            result_.inflight_high_water[name] = t.value("inflight_high_water", int64_t{0});
          }
        }
      }
      if (last) return client_.Shutdown();
      if (finishing_) return;
      admin_timer_.expires_after(std::chrono::milliseconds(100));
      admin_timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec && !finishing_) PollAdmin();
      });
    });
  }

  const Scenario& sc_;
  const Run& run_;
  const Target& target_;
  const bool poll_admin_;
  asio::io_context io_;
  HttpClient client_;
  asio::steady_timer stop_timer_, admin_timer_;
  std::vector<std::unique_ptr<TenantState>> lanes_;
  Clock::time_point t0_, deadline_;
  RunData result_;
  int64_t issued_ = 0, outstanding_ = 0;
  bool stopped_issuing_ = false, finishing_ = false;
};

double CpuSeconds(const rusage& u) {
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

// A child's records travel to the parent as JSON over a pipe.
json RecordsJson(const RunData& d) {
  json records = json::array();
  for (const RequestRecord& r : d.records) {
    records.push_back({{"tenant", d.tenants[r.tenant]}, {"start", r.start}, {"end", r.end},
                       {"status", r.status}, {"stream_error", r.stream_error},
                       {"prompt_tokens", r.prompt_tokens}, {"output_tokens", r.output_tokens},
                       {"chunks", r.chunks}, {"error", r.error}});
  }
  return {{"records", records}, {"duration_s", d.duration_s}};
}

// Appends `part`'s records to `into` (tenant indexes re-mapped to `into.tenants`).
void Merge(const json& part, RunData& into) {
  for (const json& j : part.at("records")) {
    RequestRecord r;
    const std::string tenant = j.at("tenant").get<std::string>();
    for (size_t k = 0; k < into.tenants.size(); ++k) {
      if (into.tenants[k] == tenant) r.tenant = k;
    }
    r.start = j.at("start").get<double>();
    r.end = j.at("end").get<double>();
    r.status = j.at("status").get<int>();
    r.stream_error = j.at("stream_error").get<bool>();
    r.prompt_tokens = j.at("prompt_tokens").get<int64_t>();
    r.output_tokens = j.at("output_tokens").get<int64_t>();
    r.chunks = j.at("chunks").get<std::vector<double>>();
    r.error = j.at("error").get<std::string>();
    into.records.push_back(std::move(r));
  }
  into.duration_s = std::max(into.duration_s, part.at("duration_s").get<double>());
}

struct Child {
  std::string tenant;
  pid_t pid = -1;
  int fd = -1;  // read end of its pipe
};

// Forks a process that runs the load of `tenants` in `run` alone (at `nice` when > 0) and
// writes its records to a pipe.
StatusOr<Child> StartChild(const Scenario& sc, const Run& run, const Target& target,
                           const std::vector<std::string>& tenants, Clock::time_point t0,
                           int nice) {
  int fds[2];
  if (pipe(fds) != 0) return Internal("pipe failed");
  const pid_t pid = fork();
  if (pid < 0) return Internal("fork failed");
  if (pid == 0) {
    close(fds[0]);
    // NOTE: lowering a process's priority needs no privilege; the parent keeps its own.
    if (nice > 0 && setpriority(PRIO_PROCESS, 0, nice) != 0) _exit(1);
    Run own = run;
    own.tenants = tenants;
    Generator g(sc, own, target, t0, /*poll_admin=*/false);
    const std::string out = RecordsJson(g.Execute()).dump();
    size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = write(fds[1], out.data() + done, out.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) _exit(1);
      done += static_cast<size_t>(n);
    }
    _exit(0);  // NOTE: no destructors or atexit handlers of the parent's state in the child
  }
  close(fds[1]);
  std::string names;
  for (const std::string& t : tenants) names += (names.empty() ? "" : ", ") + t;
  return Child{names, pid, fds[0]};
}

}  // namespace

std::string BuildRequestBody(const Scenario& sc, const TenantLoad& t, const std::string& model,
                             int64_t prompt_len, int64_t output_len, Rng& rng) {
  json body = {{"model", model},
               {"max_tokens", output_len},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}},
               {"temperature", 0}};
  if (t.ignore_eos) body["ignore_eos"] = true;
  if (sc.prompt == "ids") {
    json ids = json::array();
    for (int64_t i = 0; i < prompt_len; ++i) ids.push_back(rng.Int(sc.token_id_min, sc.token_id_max));
    body["prompt"] = std::move(ids);
  } else {
    std::string text;
    constexpr int64_t kNumWords = sizeof(kWords) / sizeof(kWords[0]);
    for (int64_t i = 0; i < prompt_len; ++i) {
      if (i) text += ' ';
      text += kWords[rng.Int(0, kNumWords - 1)];
    }
    if (sc.api == "chat") {
      body["messages"] = json::array({{{"role", "user"}, {"content", text}}});
    } else {
      body["prompt"] = text;
    }
  }
  return body.dump();
}

StatusOr<RunData> ExecuteRun(const Scenario& sc, const Run& run, const Target& target) {
  boost::system::error_code ec;
  boost::asio::ip::make_address(target.host, ec);
  if (ec) return InvalidArgument("bad host address \"" + target.host + "\": " + ec.message());
  // NOTE: steady_clock is CLOCK_MONOTONIC, one clock for every process of the machine, so the
  // processes of a run share its origin and their records merge on one time line.
  const Clock::time_point t0 = Clock::now();
  std::vector<Child> children;
  Run shared = run;
  shared.tenants.clear();
  for (const std::string& name : run.tenants) {
    const TenantLoad* t = sc.FindTenant(name);
    if (t == nullptr || !t->own_process) {
      shared.tenants.push_back(name);
      continue;
    }
    StatusOr<Child> c = StartChild(sc, run, target, {name}, t0, /*nice=*/0);
    if (!c.ok()) return c.status();
    children.push_back(*c);
  }
  if (sc.flood_nice > 0 && !shared.tenants.empty()) {
    // The flood in a niced process of its own; this process only polls /admin/stats.
    StatusOr<Child> c = StartChild(sc, run, target, shared.tenants, t0, sc.flood_nice);
    if (!c.ok()) return c.status();
    children.push_back(*c);
    shared.tenants.clear();
  }
  rusage self_before{};
  getrusage(RUSAGE_SELF, &self_before);
  RunData data;
  {
    Generator g(sc, shared, target, t0, /*poll_admin=*/true);
    RunData mine = g.Execute();
    data = std::move(mine);
  }
  rusage self_after{};
  getrusage(RUSAGE_SELF, &self_after);
  const RunData own_part = std::move(data);
  data = RunData{};
  data.tenants = run.tenants;
  data.max_inflight_seen = own_part.max_inflight_seen;
  data.inflight_high_water = own_part.inflight_high_water;
  data.admin_polls = own_part.admin_polls;
  Merge(RecordsJson(own_part), data);
  data.loadgen_cpu_s = CpuSeconds(self_after) - CpuSeconds(self_before);
  data.loadgen_processes = 1 + static_cast<int>(children.size());
  Status failed = Status::Ok();
  for (Child& c : children) {
    std::string text;
    char buf[65536];
    for (;;) {
      const ssize_t n = read(c.fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      text.append(buf, static_cast<size_t>(n));
    }
    close(c.fd);
    int st = 0;
    rusage u{};
    while (wait4(c.pid, &st, 0, &u) < 0 && errno == EINTR) {
    }
    data.loadgen_cpu_s += CpuSeconds(u);
    const json part = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || part.is_discarded()) {
      failed = Internal("the load process of tenant(s) " + c.tenant + " failed");
      continue;
    }
    Merge(part, data);
  }
  if (!failed.ok()) return failed;
  std::sort(data.records.begin(), data.records.end(),
            [](const RequestRecord& a, const RequestRecord& b) { return a.start < b.start; });
  return data;
}

}  // namespace llmux::bench
