#!/usr/bin/python3
"""KV-event subscriber for kv_events.test.mjs, written the way a router would (pyzmq + msgpack).

Subscribes to llmuxd's PUB endpoint, prints "READY" once subscribed, and decodes every batch
until a line arrives on stdin; then waits until the stream is quiet, asks the ROUTER replay
endpoint for every batch from --replay-from on, and prints one JSON object:
  {"live": [msg...], "replay": [msg...], "replay_end": seq}
msg = {"topic": str, "seq": int, "ts": float, "rank": int|null, "events": [...]}, events as
decoded msgpack arrays (map-shaped events normalised to arrays; "shapes" says which were seen)
with block hashes as decimal strings (they exceed 2^53).
Exits 3 with a message when pyzmq or msgpack is missing.
"""
import argparse
import json
import select
import sys
import time

try:
    import msgpack
    import zmq
except ImportError as e:  # the test turns this into a failure under CI=true
    print(f"MISSING: {e}", flush=True)
    sys.exit(3)


def decode(frames):
    if len(frames) != 3:
        raise ValueError(f"expected 3 frames, got {len(frames)}")
    topic, seq_bytes, payload = frames
    if len(seq_bytes) != 8:
        raise ValueError(f"sequence frame has {len(seq_bytes)} bytes")
    return topic.decode(), int.from_bytes(seq_bytes, "big", signed=True), payload


# Positional field order of each event (vLLM's struct order), for map-shaped events.
FIELDS = {
    "BlockStored": ["block_hashes", "parent_block_hash", "token_ids", "block_size", "lora_id",
                    "medium", "lora_name", "extra_keys"],
    "BlockRemoved": ["block_hashes", "medium"],
    "AllBlocksCleared": [],
}


def positional(e):
    """A map-shaped event ({"type": ..., fields...}) as the positional array, as readers that
    accept both shapes normalise it."""
    tag = e.get("type")
    if tag not in FIELDS:
        raise ValueError(f"unknown event type {tag!r}")
    return [tag] + [e[f] for f in FIELDS[tag]]


def batch_json(payload):
    batch = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    if not isinstance(batch, list) or len(batch) != 3:
        raise ValueError(f"batch is not a 3-element array: {batch!r}")
    ts, events, rank = batch
    out = []
    shapes = set()
    for e in events:
        if isinstance(e, dict):
            shapes.add("map")
            e = positional(e)
        else:
            shapes.add("array")
        if not isinstance(e, list) or not e:
            raise ValueError(f"event is not a tagged array: {e!r}")
        e = list(e)
        if e[0] == "BlockStored":
            e[1] = [str(h) for h in e[1]]
            e[2] = None if e[2] is None else str(e[2])
        elif e[0] == "BlockRemoved":
            e[1] = [str(h) for h in e[1]]
        elif e[0] != "AllBlocksCleared":
            raise ValueError(f"unknown event tag {e[0]!r}")
        out.append(e)
    return {"ts": ts, "rank": rank, "events": out, "shapes": sorted(shapes)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--replay", required=True)
    ap.add_argument("--replay-from", type=int, default=0)
    ap.add_argument("--quiet-ms", type=int, default=500)
    ap.add_argument("--timeout-s", type=float, default=120)
    args = ap.parse_args()

    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(args.endpoint)
    time.sleep(0.5)  # let the subscription reach the publisher
    print("READY", flush=True)

    live = []
    deadline = time.monotonic() + args.timeout_s
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    stop = False
    quiet_since = None
    while time.monotonic() < deadline:
        if not stop and select.select([sys.stdin], [], [], 0)[0]:
            sys.stdin.readline()
            stop = True
            quiet_since = time.monotonic()
        if dict(poller.poll(50)).get(sub):
            topic, seq, payload = decode(sub.recv_multipart())
            live.append({"topic": topic, "seq": seq, **batch_json(payload)})
            quiet_since = time.monotonic()
        elif stop and time.monotonic() - quiet_since > args.quiet_ms / 1000:
            break

    req = ctx.socket(zmq.DEALER)
    req.setsockopt(zmq.LINGER, 0)
    req.setsockopt(zmq.RCVTIMEO, 5000)
    req.connect(args.replay)
    req.send_multipart([b"", args.replay_from.to_bytes(8, "big", signed=True)])
    replay = []
    end = None
    while True:
        frames = req.recv_multipart()
        if len(frames) != 3 or frames[0] != b"":
            raise ValueError(f"bad replay reply with {len(frames)} frames")
        seq = int.from_bytes(frames[1], "big", signed=True)
        if seq == -1:
            if frames[2] != b"":
                raise ValueError("end marker with a payload")
            end = seq
            break
        replay.append({"seq": seq, **batch_json(frames[2])})
    print(json.dumps({"live": live, "replay": replay, "replay_end": end}), flush=True)
    sub.close()
    req.close()
    ctx.term()


if __name__ == "__main__":
    main()
