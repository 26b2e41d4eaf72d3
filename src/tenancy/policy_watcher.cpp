// inotify watcher on the policy file's folder; reloads the PolicyStore on a change.
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>

#include "llmux/tenant_policy.h"

namespace llmux {

class PolicyFileWatcher::Impl {
 public:
  Impl(PolicyStore* store, OnReload on_reload, Millis debounce)
      : store_(store), on_reload_(std::move(on_reload)), debounce_(debounce) {}
  ~Impl() {
    Stop();
    if (inotify_fd_ >= 0) ::close(inotify_fd_);
    if (stop_fd_ >= 0) ::close(stop_fd_);
  }

  Status Init() {
    dir_ = store_->path().parent_path();
    file_name_ = store_->path().filename().string();
    inotify_fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (inotify_fd_ < 0) return Internal(std::string("inotify_init1: ") + std::strerror(errno));
    stop_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (stop_fd_ < 0) return Internal(std::string("eventfd: ") + std::strerror(errno));
    const uint32_t mask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE;
    if (::inotify_add_watch(inotify_fd_, dir_.c_str(), mask) < 0) {
      return Internal("inotify_add_watch " + dir_.string() + ": " + std::strerror(errno));
    }
    thread_ = std::thread([this] { Run(); });
    return Status::Ok();
  }

  void Stop() {
    if (!thread_.joinable()) return;
    const uint64_t one = 1;
    ssize_t n = ::write(stop_fd_, &one, sizeof(one));
    (void)n;
    thread_.join();
  }

 private:
  // Whether an event names our file: written/renamed onto it, or (Kubernetes ConfigMap) the
  // "..data" symlink swapped. A bare create is counted only for a symlink: a regular file is
  // still empty at creation and its CLOSE_WRITE follows.
  bool Relevant(const inotify_event& ev) const {
    if ((ev.mask & IN_Q_OVERFLOW) != 0) return true;  // events were lost; re-read to be sure
    if (ev.len == 0) return false;
    const std::string name(ev.name);
    if (name != file_name_ && name != "..data") return false;
    if ((ev.mask & IN_CREATE) != 0) {
      struct stat st {};
      return ::lstat((dir_ / name).c_str(), &st) == 0 && S_ISLNK(st.st_mode);
    }
    return true;
  }

  // Drains the inotify queue; true when any event was relevant.
  bool DrainEvents() {
    bool relevant = false;
    alignas(inotify_event) char buf[16 * 1024];
    for (;;) {
      const ssize_t n = ::read(inotify_fd_, buf, sizeof(buf));
      if (n <= 0) break;
      for (ssize_t off = 0; off < n;) {
        const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
        relevant = relevant || Relevant(*ev);
        off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      }
    }
    return relevant;
  }

  void Run() {
    bool pending = false;
    auto deadline = std::chrono::steady_clock::now();
    for (;;) {
      int timeout_ms = -1;
      if (pending) {
        const auto left =
            std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
        timeout_ms = static_cast<int>(std::max<std::int64_t>(left.count(), 0));
      }
      pollfd fds[2] = {{inotify_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
      const int r = ::poll(fds, 2, timeout_ms);
      if (r < 0 && errno != EINTR) return;
      if ((fds[1].revents & POLLIN) != 0) return;
      if ((fds[0].revents & POLLIN) != 0 && DrainEvents()) {
        // Editors write in steps; wait for the burst to settle before reading.
        pending = true;
        deadline = std::chrono::steady_clock::now() + debounce_;
        continue;
      }
      if (pending && std::chrono::steady_clock::now() >= deadline) {
        pending = false;
        bool changed = false;
        const Status s = store_->ReloadIfChanged(&changed);
        if ((changed || !s.ok()) && on_reload_) on_reload_(s);
      }
    }
  }

  PolicyStore* store_;
  OnReload on_reload_;
  Millis debounce_;
  std::filesystem::path dir_;
  std::string file_name_;
  int inotify_fd_ = -1;
  int stop_fd_ = -1;
  std::thread thread_;
};

PolicyFileWatcher::PolicyFileWatcher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

PolicyFileWatcher::~PolicyFileWatcher() { Stop(); }

void PolicyFileWatcher::Stop() {
  if (impl_) impl_->Stop();
}

StatusOr<std::unique_ptr<PolicyFileWatcher>> PolicyFileWatcher::Start(PolicyStore* store,
                                                                      OnReload on_reload,
                                                                      Millis debounce) {
  LLMUX_CHECK(store != nullptr);
  auto impl = std::make_unique<Impl>(store, std::move(on_reload), debounce);
  LLMUX_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<PolicyFileWatcher>(new PolicyFileWatcher(std::move(impl)));
}

}  // namespace llmux
