#!/usr/bin/env python3
"""Converts an `llmux make-model` directory (Llama architecture, safetensors) to GGUF with
llama.cpp's own gguf-py, then reads the GGUF back and checks every tensor against the
safetensors bytes.

  to_gguf.py MODEL_DIR OUT.gguf        (PYTHONPATH must hold llama.cpp's gguf-py)

Weights keep their dtype bit for bit (F32, F16, BF16); 1-D norm weights become F32 as
llama.cpp's convert_hf_to_gguf.py writes them (an exact widening, checked as such). q_proj and
k_proj rows are permuted as convert_hf_to_gguf.py's LlamaModel.permute does: Hugging Face
checkpoints rotate the two halves of each head (rotate_half), GGUF interleaves pairs. The check
undoes the permutation and compares bytes. Needs only Debian's python3-numpy; no torch.
"""
import json
import struct
import sys
from pathlib import Path

import numpy as np
import gguf

ST_DTYPES = {"F32": (np.float32, gguf.GGMLQuantizationType.F32),
             "F16": (np.float16, gguf.GGMLQuantizationType.F16),
             # numpy has no bfloat16: carry the raw 16-bit words and tell gguf-py the type.
             "BF16": (np.uint16, gguf.GGMLQuantizationType.BF16)}


def fail(msg):
    sys.exit(f"to_gguf: {msg}")


def read_safetensors(model_dir):
    """Returns {name: (st_dtype, ndarray)} over every *.safetensors shard, memory-mapped."""
    out = {}
    shards = sorted(model_dir.glob("*.safetensors"))
    if not shards:
        fail(f"no *.safetensors in {model_dir}")
    for shard in shards:
        raw = np.memmap(shard, dtype=np.uint8, mode="r")
        (hlen,) = struct.unpack("<Q", raw[:8].tobytes())
        header = json.loads(raw[8:8 + hlen].tobytes())
        base = 8 + hlen
        for name, info in header.items():
            if name == "__metadata__":
                continue
            if info["dtype"] not in ST_DTYPES:
                fail(f"{name}: dtype {info['dtype']} not supported")
            np_dtype = ST_DTYPES[info["dtype"]][0]
            begin, end = info["data_offsets"]
            arr = raw[base + begin:base + end].view(np_dtype).reshape(info["shape"])
            out[name] = (info["dtype"], arr)
    return out


def permute(w, n_head, n_head_kv):
    # convert_hf_to_gguf.py LlamaModel.permute, on numpy.
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def unpermute(w, n_head, n_head_kv):
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def gguf_name(hf):
    fixed = {"model.embed_tokens.weight": "token_embd.weight",
             "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    if hf in fixed:
        return fixed[hf]
    parts = hf.split(".")
    if parts[:2] != ["model", "layers"]:
        fail(f"unexpected tensor {hf}")
    layer, rest = parts[2], ".".join(parts[3:])
    per_layer = {"input_layernorm.weight": "attn_norm.weight",
                 "self_attn.q_proj.weight": "attn_q.weight",
                 "self_attn.k_proj.weight": "attn_k.weight",
                 "self_attn.v_proj.weight": "attn_v.weight",
                 "self_attn.o_proj.weight": "attn_output.weight",
                 "post_attention_layernorm.weight": "ffn_norm.weight",
                 "mlp.gate_proj.weight": "ffn_gate.weight",
                 "mlp.up_proj.weight": "ffn_up.weight",
                 "mlp.down_proj.weight": "ffn_down.weight"}
    if rest not in per_layer:
        fail(f"unexpected tensor {hf}")
    return f"blk.{layer}.{per_layer[rest]}"


def widen_to_f32(st_dtype, arr):
    if st_dtype == "F32":
        return np.ascontiguousarray(arr)
    if st_dtype == "F16":
        return arr.astype(np.float32)
    return (arr.astype(np.uint32) << 16).view(np.float32)  # BF16 -> F32 is exact


def add_tokenizer(w, model_dir, vocab_size):
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    cfg = json.loads((model_dir / "config.json").read_text())
    model = tok["model"]
    pre = tok.get("pre_tokenizer") or {}
    if model.get("type") != "BPE" or pre.get("type") != "ByteLevel" or not pre.get("use_regex"):
        fail("only byte-level BPE tokenizers with the GPT-2 regex are supported "
             f"(model {model.get('type')}, pre_tokenizer {pre.get('type')})")
    tokens = [None] * vocab_size
    types = [gguf.TokenType.NORMAL] * vocab_size
    for text, i in model["vocab"].items():
        tokens[i] = text
    for added in tok.get("added_tokens", []):
        tokens[added["id"]] = added["content"]
        types[added["id"]] = (gguf.TokenType.CONTROL if added.get("special")
                              else gguf.TokenType.USER_DEFINED)
    for i, t in enumerate(tokens):
        if t is None:
            tokens[i] = f"[PAD{i}]"
            types[i] = gguf.TokenType.UNUSED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")  # ByteLevel(use_regex) is GPT-2's pre-tokenizer regex
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(cfg["bos_token_id"])
    eos = cfg["eos_token_id"]
    w.add_eos_token_id(eos[0] if isinstance(eos, list) else eos)
    w.add_add_bos_token(True)  # llmux's TemplateProcessing puts BOS before every prompt
    w.add_add_eos_token(False)


def main():
    if len(sys.argv) != 3:
        fail("usage: to_gguf.py MODEL_DIR OUT.gguf")
    model_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    cfg = json.loads((model_dir / "config.json").read_text())
    if cfg.get("model_type") != "llama":
        fail(f"model_type {cfg.get('model_type')}: only llama is converted")
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hidden = cfg["hidden_size"]
    head_dim = cfg.get("head_dim") or hidden // n_head
    tensors = read_safetensors(model_dir)
    dtypes = {d for d, a in tensors.values() if a.ndim == 2}
    if len(dtypes) != 1:
        fail(f"mixed matrix dtypes {dtypes}")
    (mat_dtype,) = dtypes
    file_type = {"F32": gguf.LlamaFileType.ALL_F32, "F16": gguf.LlamaFileType.MOSTLY_F16,
                 "BF16": gguf.LlamaFileType.MOSTLY_BF16}[mat_dtype]

    w = gguf.GGUFWriter(str(out), "llama")
    w.add_name(model_dir.name)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(hidden)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_vocab_size(cfg["vocab_size"])
    w.add_file_type(file_type)
    add_tokenizer(w, model_dir, cfg["vocab_size"])

    expected = {}  # gguf name -> (hf name, transform kind)
    for hf, (st_dtype, arr) in tensors.items():
        name = gguf_name(hf)
        if arr.ndim == 1:
            data, raw_dtype, kind = widen_to_f32(st_dtype, arr), None, "widen"
        else:
            data = np.ascontiguousarray(arr)
            kind = "same"
            if hf.endswith("q_proj.weight"):
                data, kind = np.ascontiguousarray(permute(data, n_head, n_head)), "perm_q"
            elif hf.endswith("k_proj.weight"):
                data, kind = np.ascontiguousarray(permute(data, n_head, n_kv)), "perm_k"
            raw_dtype = ST_DTYPES[st_dtype][1]
        if raw_dtype == gguf.GGMLQuantizationType.BF16:
            w.add_tensor(name, data, raw_shape=data.shape, raw_dtype=raw_dtype)
        else:
            w.add_tensor(name, data)
        expected[name] = (hf, kind)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # Read back with gguf-py's reader and compare with the safetensors bytes.
    reader = gguf.GGUFReader(str(out))
    seen = set()
    for t in reader.tensors:
        if t.name not in expected:
            fail(f"unexpected tensor {t.name} in {out}")
        hf, kind = expected[t.name]
        st_dtype, src = tensors[hf]
        got = np.asarray(t.data)
        if kind == "widen":
            back = got.view(np.float32).reshape(src.shape)
            narrowed = {"F32": back, "F16": back.astype(np.float16),
                        "BF16": (back.view(np.uint32) >> 16).astype(np.uint16)}[st_dtype]
            ok = narrowed.tobytes() == np.ascontiguousarray(src).tobytes() and \
                np.array_equal(back, widen_to_f32(st_dtype, src))
        else:
            back = got.view(src.dtype).reshape(src.shape)
            if kind == "perm_q":
                back = unpermute(back, n_head, n_head)
            elif kind == "perm_k":
                back = unpermute(back, n_head, n_kv)
            ok = np.ascontiguousarray(back).tobytes() == np.ascontiguousarray(src).tobytes()
        if not ok:
            fail(f"{t.name}: GGUF bytes differ from {hf}")
        seen.add(t.name)
    if seen != set(expected):
        fail(f"tensors missing from {out}: {sorted(set(expected) - seen)}")
    print(f"to_gguf: {out}: {len(seen)} tensors ({mat_dtype}) identical to {model_dir} "
          "(q/k permuted, norms widened to F32 exactly)")


if __name__ == "__main__":
    main()
