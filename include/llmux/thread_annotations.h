// Clang thread-safety analysis (https://clang.llvm.org/docs/ThreadSafetyAnalysis.html): the
// annotations, and a Mutex, SharedMutex, scoped locks and a condition variable that carry them.
//
// Shared state is declared `T x_ GUARDED_BY(mutex_);` and read or written only under a lock of
// that mutex; a function that expects the caller to hold it says `REQUIRES(mutex_)`. Clang
// builds (the ASan+UBSan tree of `make test`, the fuzz tree) compile with -Wthread-safety
// -Werror=thread-safety, so an access without the lock is a compile error there; elsewhere the
// annotations compile to nothing and the classes are thin wrappers over the std ones.
//
// NOTE: the analysis does not look into constructors and destructors, nor into lambdas unless
// they are annotated themselves: a predicate handed to CondVar::Wait that reads guarded state
// says `[&]() REQUIRES(mutex_) { ... }`.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <shared_mutex>

#if defined(__clang__)
#define LLMUX_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define LLMUX_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) LLMUX_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY LLMUX_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) LLMUX_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) LLMUX_THREAD_ANNOTATION(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) LLMUX_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) LLMUX_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define REQUIRES(...) LLMUX_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) LLMUX_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
#define ACQUIRE(...) LLMUX_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) LLMUX_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) LLMUX_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) LLMUX_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#define RELEASE_GENERIC(...) LLMUX_THREAD_ANNOTATION(release_generic_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) LLMUX_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define EXCLUDES(...) LLMUX_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) LLMUX_THREAD_ANNOTATION(assert_capability(x))
#define RETURN_CAPABILITY(x) LLMUX_THREAD_ANNOTATION(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS LLMUX_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace llmux {

class CondVar;

// std::mutex as a capability. Lock it through MutexLock.
class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  bool TryLock() TRY_ACQUIRE(true) { return mu_.try_lock(); }
  // Tells the analysis the caller holds the mutex (checked by nothing at run time).
  void AssertHeld() const ASSERT_CAPABILITY(this) {}

 private:
  friend class MutexLock;
  std::mutex mu_;
};

// std::shared_mutex as a capability: WriterLock for exclusive, ReaderLock for shared access.
class CAPABILITY("shared_mutex") SharedMutex {
 public:
  SharedMutex() = default;
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  void LockShared() ACQUIRE_SHARED() { mu_.lock_shared(); }
  void UnlockShared() RELEASE_SHARED() { mu_.unlock_shared(); }

 private:
  std::shared_mutex mu_;
};

// Holds a Mutex for its scope (std::unique_lock underneath, so CondVar can wait on it).
// Unlock/Lock release and retake it inside the scope.
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : lock_(mu.mu_) {}
  ~MutexLock() RELEASE() {}
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  void Unlock() RELEASE() { lock_.unlock(); }
  void Lock() ACQUIRE() { lock_.lock(); }

 private:
  friend class CondVar;
  std::unique_lock<std::mutex> lock_;
};

class SCOPED_CAPABILITY WriterLock {
 public:
  explicit WriterLock(SharedMutex& mu) ACQUIRE(mu) : mu_(mu) { mu_.Lock(); }
  ~WriterLock() RELEASE() { mu_.Unlock(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  SharedMutex& mu_;
};

class SCOPED_CAPABILITY ReaderLock {
 public:
  explicit ReaderLock(SharedMutex& mu) ACQUIRE_SHARED(mu) : mu_(mu) { mu_.LockShared(); }
  ~ReaderLock() RELEASE() { mu_.UnlockShared(); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  SharedMutex& mu_;
};

// std::condition_variable over a MutexLock. The mutex is held again when a wait returns, as
// for the std one; spurious wake-ups happen, so waits without a predicate sit in a loop that
// re-checks the condition.
class CondVar {
 public:
  void NotifyOne() { cv_.notify_one(); }
  void NotifyAll() { cv_.notify_all(); }

  void Wait(MutexLock& lock) { cv_.wait(lock.lock_); }
  template <typename Pred>
  void Wait(MutexLock& lock, Pred pred) {
    cv_.wait(lock.lock_, std::move(pred));
  }
  // False on timeout.
  template <typename Rep, typename Period>
  bool WaitFor(MutexLock& lock, std::chrono::duration<Rep, Period> timeout) {
    return cv_.wait_for(lock.lock_, timeout) == std::cv_status::no_timeout;
  }
  // The predicate's value when the wait ends (false: timed out with it still false).
  template <typename Rep, typename Period, typename Pred>
  bool WaitFor(MutexLock& lock, std::chrono::duration<Rep, Period> timeout, Pred pred) {
    return cv_.wait_for(lock.lock_, timeout, std::move(pred));
  }
  template <typename Clock, typename Duration>
  bool WaitUntil(MutexLock& lock, std::chrono::time_point<Clock, Duration> deadline) {
    return cv_.wait_until(lock.lock_, deadline) == std::cv_status::no_timeout;
  }
  template <typename Clock, typename Duration, typename Pred>
  bool WaitUntil(MutexLock& lock, std::chrono::time_point<Clock, Duration> deadline, Pred pred) {
    return cv_.wait_until(lock.lock_, deadline, std::move(pred));
  }

 private:
  std::condition_variable cv_;
};

}  // namespace llmux
