#!/usr/bin/env python3
"""Writes the seed corpora under tests/fuzz/corpus/<target>/ (small, deterministic).

Run from anywhere: python3 tests/fuzz/make_corpus.py. The files are committed; rerun after
changing a seed here. libFuzzer adds its own findings to a scratch copy (make fuzz), not here.
"""
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- openai_request: byte 0 even = chat, odd = completions ----
chat = {"model": "stories", "messages": [{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": "Once upon a time"}],
        "temperature": 0.7, "top_p": 0.9, "top_k": 40, "max_tokens": 32, "n": 2, "seed": 7,
        "stop": ["\n", "The end"], "logprobs": True, "top_logprobs": 5,
        "logit_bias": {"13": -100, "42": 3.5}, "stream": True,
        "stream_options": {"include_usage": True}}
write("openai_request", "chat_full", b"\x00" + json.dumps(chat).encode())
write("openai_request", "chat_parts", b"\x00" + json.dumps(
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
                                               {"type": "text", "text": "b"}]}]}).encode())
write("openai_request", "completion_ids", b"\x01" + json.dumps(
    {"prompt": [[1, 403, 407], [1, 2]], "max_tokens": 5, "logprobs": 3, "echo": False}).encode())
write("openai_request", "completion_text", b"\x01" + json.dumps(
    {"prompt": ["a", "b"], "min_tokens": 2, "stop_token_ids": [2], "ignore_eos": True}).encode())
write("openai_request", "raw_numbers", b"\x01" + b'{"prompt":"x","temperature":1e999,"top_p":-0,"n":1e308}')
write("openai_request", "deep", b"\x00" + b"[" * 70 + b"]" * 70)
write("openai_request", "bad_utf8", b"\x00" + b'{"messages":[{"role":"user","content":"\xff\xfe"}]}')
write("openai_request", "unsupported", b"\x00" + json.dumps(
    {"messages": [{"role": "tool", "content": "x"}], "tools": [], "best_of": 2}).encode())

# ---- http_request: raw bytes on the wire (pipelined requests allowed) ----
body = json.dumps({"model": "stories", "prompt": "Once upon a time", "max_tokens": 4})
write("http_request", "post", "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
      "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
write("http_request", "pipelined", "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /v1/models?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
chunked = json.dumps({"messages": [{"role": "user", "content": "hi"}]})
write("http_request", "chunked", "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
      "Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(chunked), chunked))
write("http_request", "bad_length", "POST /v1/completions HTTP/1.1\r\nContent-Length: -5\r\n\r\n")
write("http_request", "http10", "GET / HTTP/1.0\r\n\r\n")
write("http_request", "folded_header", "GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n")

# ---- config: llmux.yaml and tenants.yaml texts ----
write("config", "server", """server:
  listen: "127.0.0.1:0"
  read_timeout: 5s
  admin_api_keys: [ { sha256: "%s" } ]
model: { path: "/models/x", name: x, max_model_len: 512 }
engine: { backend: cpu, threads: 1, kv_cache_tokens: 4096, max_seqs: 8 }
tenants_file: tenants.yaml
""" % ("ab" * 32))
write("config", "tenants", """lanes: [ { name: premium, max_wait: 2s }, { name: batch } ]
tenants:
  a:
    api_keys: [ { sha256: "%s" } ]
    lane: premium
    weight: 2
    max_inflight_tokens: 100000
    reserved: { kv_tokens: 512, seqs: 2 }
    rate_limit: { requests_per_minute: 10, tokens_per_minute: 1000 }
    prefix_cache: { mode: shared, group: g }
  b: { api_keys: [ { sha256: "%s" } ], lane: batch }
""" % ("cd" * 32, "ef" * 32))
write("config", "anchors", "a: &x [1, 2]\nb: *x\nc: !!str 3\nd: { e: [ {f: g} ] }\n")
write("config", "deep", "a: " + "[" * 80 + "]" * 80 + "\n")
write("config", "truncated", "lanes: [ { name: pre")
write("config", "tabs", "server:\n\tlisten: x\n")

# ---- safetensors: 8-byte little-endian header length, JSON header, data ----
def safetensors(header, data=b""):
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data

write("safetensors", "f32", safetensors(
    {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
     "__metadata__": {"format": "pt"}}, b"\0" * 16))
write("safetensors", "bf16_f16", safetensors(
    {"a": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]},
     "b": {"dtype": "F16", "shape": [1, 1], "data_offsets": [6, 8]}}, b"\1" * 8))
write("safetensors", "overlap", safetensors(
    {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
     "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12))
write("safetensors", "huge_len", struct.pack("<Q", 2**63) + b"{}")
write("safetensors", "shape_overflow", safetensors(
    {"a": {"dtype": "F32", "shape": [2**62, 8], "data_offsets": [0, 8]}}, b"\0" * 8))
write("safetensors", "short", b"\x05\x00")

# ---- tokenizer: byte 0 = mode (0 encode, 1 decode ids, 2 JSON\0TEXT) | flags << 2 ----
write("tokenizer", "stories_encode", b"\x00Once upon a time, there was a little girl.\n")
write("tokenizer", "stories_encode_special", b"\x0c<s>Hi</s> \xe2\x96\x81 \xf0\x9f\xa6\x99 \xff")
write("tokenizer", "stories_decode", b"\x01" + b"".join(struct.pack(">H", i) for i in
                                                       [1, 403, 407, 261, 378, 3, 259, 2, 0, 511]))


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [(b, chr(c)) for b, c in zip(bs, cs)]


vocab = {}
for _, u in bytes_to_unicode():
    vocab[u] = len(vocab)
merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld"]
for m in merges:
    a, b = m.split(" ")
    vocab[a + b] = len(vocab)
byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
tok = {"version": "1.0",
       "added_tokens": [{"id": len(vocab), "content": "<|endoftext|>", "single_word": False,
                         "lstrip": False, "rstrip": False, "normalized": False, "special": True}],
       "normalizer": None, "pre_tokenizer": byte_level, "post_processor": byte_level,
       "decoder": byte_level,
       "model": {"type": "BPE", "dropout": None, "unk_token": None,
                 "continuing_subword_prefix": None, "end_of_word_suffix": None,
                 "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": merges}}
tok_json = json.dumps(tok, ensure_ascii=False).encode()
write("tokenizer", "byte_level", b"\x02" + tok_json + b"\0hello world<|endoftext|> h\xc3\xa9llo \xf0\x9f\xa6\x99")
write("tokenizer", "byte_level_bad_utf8", b"\x06" + tok_json + b"\0\xc3\x28 \xed\xa0\x80 abc")

# ---- chat_template: TEMPLATE\0ROLE\0CONTENT...; byte 0 in 1..4 = a built-in ----
msgs = b"system\0Be brief.\0user\0Hello\0assistant\0Hi!\0user\0Bye"
write("chat_template", "builtin1", b"\x01" + msgs)
write("chat_template", "builtin2", b"\x02" + msgs)
write("chat_template", "builtin3", b"\x03user\0\xff\xfe {{ raw }}")
write("chat_template", "chatml", b"{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
      b"<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}\0" + msgs)
write("chat_template", "macros", b"{% macro f(x) %}{{ f(x) }}{% endmacro %}{{ f(1) }}\0user\0a")
write("chat_template", "filters", b"{{ messages | map(attribute='content') | join(', ') | upper | trim }}"
      b"{% set ns = namespace(n=0) %}{% for m in messages|reverse %}{% set ns.n = ns.n + 1 %}"
      b"{% endfor %}{{ ns.n }}{{ raise_exception('x') if ns.n > 3 }}{{ strftime_now('%Y') }}\0" + msgs)
write("chat_template", "syntax_error", b"{% for %}{{ \0user\0a")

# ---- stop_strings: byte 0 = stop count, byte 1 = chunk size, stops NUL-separated, text ----
write("stop_strings", "basic", b"\x02\x03The end\0\n\0Once upon a time. The end. More")
write("stop_strings", "overlap", b"\x02\x01abcd\0bc\0xxabcdyy")
write("stop_strings", "none", b"\x00\x04no stop strings here \xff\xfe")
write("stop_strings", "prefix_tail", b"\x01\x02aaab\0aaaaaaab")

# ---- gguf: a 1-layer Llama (hidden 32, ffn 64, 2 heads / 1 KV head, vocab 8) ----
def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gguf(kvs, tensors, version=3, alignment=32, tail=b""):
    """kvs: [(key, type, packed value)]; tensors: [(name, ne, ggml_type, data)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, typ, val in kvs:
        out += gstr(key) + struct.pack("<I", typ) + val
    offsets, off = [], 0
    for _, _, _, data in tensors:
        offsets.append(off)
        off = (off + len(data) + alignment - 1) // alignment * alignment
    for (name, ne, typ, _), o in zip(tensors, offsets):
        out += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        out += struct.pack("<IQ", typ, o)
    out += b"\0" * (-len(out) % alignment)
    for (_, _, _, data), o in zip(tensors, offsets):
        out += data + b"\0" * (-len(data) % alignment)
    return out + tail


def q8_rows(rows, cols):  # scale 1/64 as F16 (0x2400), q = (r + c) % 17 - 8
    return b"".join(struct.pack("<H", 0x2400) + bytes(((r + c) % 17 - 8) & 0xff for c in range(k, k + 32))
                    for r in range(rows) for k in range(0, cols, 32))


u32 = lambda v: struct.pack("<I", v)
llama_kvs = [("general.architecture", 8, gstr("llama")), ("llama.embedding_length", 4, u32(32)),
             ("llama.feed_forward_length", 4, u32(64)), ("llama.block_count", 4, u32(1)),
             ("llama.attention.head_count", 4, u32(2)), ("llama.attention.head_count_kv", 4, u32(1)),
             ("llama.context_length", 4, u32(128)), ("llama.rope.freq_base", 6, struct.pack("<f", 10000.0)),
             ("llama.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-5)),
             ("tokenizer.ggml.tokens", 9, u32(8) + struct.pack("<Q", 8) + b"".join(gstr("t%d" % i) for i in range(8))),
             ("tokenizer.ggml.bos_token_id", 4, u32(1)), ("general.alignment", 4, u32(32))]
f32v = lambda n: struct.pack("<%df" % n, *[1.0] * n)
llama_tensors = [("token_embd.weight", [32, 8], 1, struct.pack("<256H", *[0x3c00] * 256)),
                 ("output_norm.weight", [32], 0, f32v(32)),
                 ("blk.0.attn_norm.weight", [32], 0, f32v(32)),
                 ("blk.0.attn_q.weight", [32, 32], 8, q8_rows(32, 32)),
                 ("blk.0.attn_k.weight", [32, 16], 8, q8_rows(16, 32)),
                 ("blk.0.attn_v.weight", [32, 16], 30, struct.pack("<512H", *[0x3f80] * 512)),
                 ("blk.0.attn_output.weight", [32, 32], 0, f32v(1024)),
                 ("blk.0.ffn_norm.weight", [32], 0, f32v(32)),
                 ("blk.0.ffn_gate.weight", [32, 64], 8, q8_rows(64, 32)),
                 ("blk.0.ffn_up.weight", [32, 64], 8, q8_rows(64, 32)),
                 ("blk.0.ffn_down.weight", [64, 32], 8, q8_rows(32, 64))]
write("gguf", "llama_q8", gguf(llama_kvs, llama_tensors))
write("gguf", "llama_v2_align64", gguf(llama_kvs[:-1] + [("general.alignment", 4, u32(64))],
                                       llama_tensors, version=2, alignment=64))
write("gguf", "truncated", gguf(llama_kvs, llama_tensors)[:700])
write("gguf", "huge_counts", b"GGUF" + struct.pack("<IQQ", 3, 2**62, 2**62))
write("gguf", "huge_string", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 2**63))
write("gguf", "dim_overflow", gguf([], [("x", [2**32, 2**32, 2**20], 0, b"")]))
write("gguf", "q4_type", gguf(llama_kvs, [("token_embd.weight", [32, 8], 2, b"\0" * 144)]))
write("gguf", "overlap", gguf([], [("a", [8], 0, f32v(8)), ("b", [8], 0, f32v(8))], alignment=32)
      .replace(struct.pack("<IQ", 0, 32), struct.pack("<IQ", 0, 0)))
