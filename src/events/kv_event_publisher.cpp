// The ZeroMQ KV-event publisher: engine thread -> bounded queue -> publisher thread -> sockets.
#include "llmux/kv_event_publisher.h"

#include <zmq.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "events/kv_event_batch.h"
#include "events/replay_buffer.h"
#include "events/wire.h"
#include "llmux/thread_annotations.h"

namespace llmux {
namespace {

using events::KvEvent;

constexpr int kPollMs = 20;               // publisher wakeup when idle (replay requests)
constexpr size_t kMaxEventsPerBatch = 1024;
constexpr int kShutdownFlushMs = 1000;

Status ZmqError(const std::string& what) {
  return Unavailable("kv_events: " + what + ": " + zmq_strerror(zmq_errno()));
}

class KvEventPublisher final : public KvEventSink {
 public:
  explicit KvEventPublisher(const KvEventPublisherOptions& o)
      : options_(o), replay_(static_cast<size_t>(std::max(0, o.buffer_batches))) {}

  ~KvEventPublisher() override {
    {
      MutexLock lock(mu_);
      stopping_ = true;
    }
    cv_.NotifyAll();
    if (thread_.joinable()) thread_.join();
    if (pub_ != nullptr) zmq_close(pub_);
    if (router_ != nullptr) zmq_close(router_);
    if (ctx_ != nullptr) zmq_ctx_term(ctx_);
  }

  Status Start() {
    ctx_ = zmq_ctx_new();
    if (ctx_ == nullptr) return ZmqError("zmq_ctx_new");
    pub_ = zmq_socket(ctx_, ZMQ_PUB);
    if (pub_ == nullptr) return ZmqError("PUB socket");
    const int linger = 0, hwm = 100000;
    zmq_setsockopt(pub_, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(pub_, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    if (zmq_bind(pub_, options_.endpoint.c_str()) != 0) {
      return ZmqError("bind endpoint " + options_.endpoint);
    }
    if (!options_.replay_endpoint.empty()) {
      router_ = zmq_socket(ctx_, ZMQ_ROUTER);
      if (router_ == nullptr) return ZmqError("ROUTER socket");
      zmq_setsockopt(router_, ZMQ_LINGER, &linger, sizeof(linger));
      if (zmq_bind(router_, options_.replay_endpoint.c_str()) != 0) {
        return ZmqError("bind replay_endpoint " + options_.replay_endpoint);
      }
    }
    thread_ = std::thread([this] { ThreadMain(); });
    return Status::Ok();
  }

  void OnBlocksStored(std::vector<KvBlockStored> blocks) override {
    std::vector<KvEvent> events;
    events.reserve(blocks.size());
    for (KvBlockStored& b : blocks) {
      KvEvent e;
      e.kind = KvEvent::Kind::kBlockStored;
      e.stored = std::move(b);
      events.push_back(std::move(e));
    }
    Enqueue(std::move(events));
  }

  void OnBlocksRemoved(std::vector<uint64_t> block_hashes) override {
    std::vector<KvEvent> events(1);
    events[0].kind = KvEvent::Kind::kBlockRemoved;
    events[0].removed = std::move(block_hashes);
    Enqueue(std::move(events));
  }

  void OnAllCleared() override {
    std::vector<KvEvent> events(1);
    events[0].kind = KvEvent::Kind::kAllBlocksCleared;
    Enqueue(std::move(events));
  }

  KvEventCounters Counters() const override {
    return {published_.load(std::memory_order_relaxed), dropped_.load(std::memory_order_relaxed)};
  }

 private:
  // Never waits on I/O: the lock is only held for queue pushes and swaps.
  void Enqueue(std::vector<KvEvent> events) {
    size_t dropped = 0;
    {
      MutexLock lock(mu_);
      for (KvEvent& e : events) {
        if (queue_.size() >= static_cast<size_t>(std::max(0, options_.max_queue_events))) {
          ++dropped;
          continue;
        }
        queue_.push_back(std::move(e));
      }
    }
    if (dropped > 0) dropped_.fetch_add(static_cast<int64_t>(dropped), std::memory_order_relaxed);
    cv_.NotifyOne();
  }

  void ThreadMain() {
    auto flush_deadline = std::chrono::steady_clock::time_point::max();
    while (true) {
      std::deque<KvEvent> taken;
      bool stopping;
      {
        MutexLock lock(mu_);
        cv_.WaitFor(lock, std::chrono::milliseconds(kPollMs),
                     [this]() REQUIRES(mu_) { return stopping_ || !queue_.empty(); });
        taken.swap(queue_);
        stopping = stopping_;
      }
      if (stopping && flush_deadline == std::chrono::steady_clock::time_point::max()) {
        flush_deadline = std::chrono::steady_clock::now() +
                         std::chrono::milliseconds(kShutdownFlushMs);
      }
      while (!taken.empty()) {
        std::vector<KvEvent> batch;
        while (!taken.empty() && batch.size() < kMaxEventsPerBatch) {
          events::AppendEvent(std::move(taken.front()), &batch);
          taken.pop_front();
        }
        Publish(std::move(batch));
        if (std::chrono::steady_clock::now() > flush_deadline) break;
      }
      ServiceReplay();
      if (stopping) break;
    }
  }

  void Publish(std::vector<KvEvent> events) {
    events::KvEventBatch batch;
    batch.ts = std::chrono::duration<double>(
                   std::chrono::system_clock::now().time_since_epoch()).count();
    const int64_t count = static_cast<int64_t>(events.size());
    batch.events = std::move(events);
    batch.data_parallel_rank = options_.data_parallel_rank;
    std::string payload = events::EncodeBatch(
        batch, options_.medium,
        options_.map_events ? events::KvEventFormat::kMap : events::KvEventFormat::kArray);
    const uint64_t seq = next_seq_++;
    const std::string seq_bytes = events::EncodeSeq(static_cast<int64_t>(seq));
    // A PUB socket never blocks: a subscriber past its high-water mark loses messages (it can
    // notice from the sequence numbers and replay).
    zmq_send(pub_, options_.topic.data(), options_.topic.size(), ZMQ_SNDMORE);
    zmq_send(pub_, seq_bytes.data(), seq_bytes.size(), ZMQ_SNDMORE);
    zmq_send(pub_, payload.data(), payload.size(), 0);
    published_.fetch_add(count, std::memory_order_relaxed);
    replay_.Add(seq, std::move(payload));
  }

  // Serves every waiting replay request: [identity, "", start_seq (8 bytes big-endian)] gets
  // [identity, "", seq, payload] per buffered batch from start_seq on, then [identity, "", -1, ""].
  void ServiceReplay() {
    if (router_ == nullptr) return;
    while (true) {
      std::vector<std::string> frames;
      if (!ReceiveMultipart(router_, &frames)) return;
      if (frames.empty()) continue;
      const std::string& id = frames[0];
      if (frames.size() == 3 && frames[2].size() == 8) {
        const int64_t start = events::DecodeSeq(frames[2]);
        for (const auto& [seq, payload] : replay_.From(start < 0 ? 0 : start)) {
          SendReply(id, events::EncodeSeq(static_cast<int64_t>(seq)), *payload);
        }
      }
      // A malformed request (wrong frame count or seq size) gets only the end marker.
      SendReply(id, events::EncodeSeq(-1), std::string());
    }
  }

  void SendReply(const std::string& id, const std::string& seq, const std::string& payload) {
    zmq_send(router_, id.data(), id.size(), ZMQ_SNDMORE);
    zmq_send(router_, "", 0, ZMQ_SNDMORE);
    zmq_send(router_, seq.data(), seq.size(), ZMQ_SNDMORE);
    zmq_send(router_, payload.data(), payload.size(), 0);
  }

  // Non-blocking: false when no message is waiting.
  static bool ReceiveMultipart(void* socket, std::vector<std::string>* frames) {
    while (true) {
      zmq_msg_t msg;
      zmq_msg_init(&msg);
      const int flags = frames->empty() ? ZMQ_DONTWAIT : 0;
      if (zmq_msg_recv(&msg, socket, flags) < 0) {
        zmq_msg_close(&msg);
        return !frames->empty();
      }
      frames->emplace_back(static_cast<const char*>(zmq_msg_data(&msg)), zmq_msg_size(&msg));
      const bool more = zmq_msg_more(&msg) != 0;
      zmq_msg_close(&msg);
      if (!more) return true;
    }
  }

  const KvEventPublisherOptions options_;
  void* ctx_ = nullptr;
  void* pub_ = nullptr;
  void* router_ = nullptr;
  std::thread thread_;

  Mutex mu_;
  CondVar cv_;
  std::deque<KvEvent> queue_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;

  // Publisher thread only.
  events::ReplayBuffer replay_;
  uint64_t next_seq_ = 0;

  std::atomic<int64_t> published_{0};
  std::atomic<int64_t> dropped_{0};
};

}  // namespace

StatusOr<std::shared_ptr<KvEventSink>> CreateKvEventPublisher(
    const KvEventPublisherOptions& options) {
  if (options.endpoint.empty()) return InvalidArgument("kv_events: endpoint is empty");
  if (options.buffer_batches < 0) return InvalidArgument("kv_events: negative buffer_batches");
  if (options.max_queue_events <= 0) return InvalidArgument("kv_events: max_queue_events <= 0");
  auto publisher = std::make_shared<KvEventPublisher>(options);
  LLMUX_RETURN_IF_ERROR(publisher->Start());
  return std::shared_ptr<KvEventSink>(std::move(publisher));
}

}  // namespace llmux
