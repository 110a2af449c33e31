"""`dfa_hf`: any transformers image-text-to-text checkpoint whose processor has a chat template.

Qwen2-VL, SmolVLM, Idefics3, PaliGemma, LLaVA, transformers-native InternVL and the like load through
`AutoModelForImageTextToText` + `AutoProcessor`. The prompt is rendered by the processor's chat template
(an image entry, then the question), batches are left-padded so greedy answers do not depend on the
batch size, and DF-D answers carry a forgery probability read from the first generated token.

    lmms-eval --model dfa_hf --model_args pretrained=Qwen/Qwen2-VL-2B-Instruct,dtype=bfloat16 ...

model_args: pretrained (required), dtype (auto|float32|bfloat16|float16), device / device_map,
attn_implementation, trust_remote_code, max_new_tokens (overrides the task's), system_prompt,
chat_template (a Jinja file, for checkpoints that ship none), dfd_probability (default true). Subclasses change one hook: `load_model`, `build_messages`,
`prepare_batch` or `generate`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from loguru import logger

from dfa_bench.adapters.base import DFAAdapter, truncate_at_stops
from dfa_bench.adapters.first_token import (  # noqa: F401  (answer_token_ids: part of this module's API)
    answer_token_ids,
    first_token_ids,
    forgery_probability,
    next_token_logits,
    parting_point,
    two_way_probability,
    yes_probability,
)
from dfa_bench.contract import AdapterConfigError, Answer, Query, as_bool, local_path_or_hub_id
from dfa_bench.templates import dfd_answer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# How a DF-D forgery probability is read (adapters/first_token.py): "yes_no", P(yes) of the first answer token,
# for models that answer a yes/no question with "Yes"/"No" first (zero-shot MLLMs); "reference_answer", where
# the bench's two reference answers part ("This face image is forged ..." / "... is a bona fide ..."), for
# models trained on DFA-Instruct, whose answers start with the verdict.
DFD_DECISIONS = ("yes_no", "reference_answer")


class DFAHF(DFAAdapter):
    """A transformers image-text-to-text model, batched, with DF-D probabilities."""

    name = "dfa_hf"
    default_dfd_decision = "yes_no"

    def __init__(
        self,
        pretrained: str | None = None,
        dtype: str = "auto",
        device_map: str | None = None,
        device: str | None = None,
        attn_implementation: str | None = None,
        trust_remote_code: bool | str = False,
        max_new_tokens: int | str | None = None,
        system_prompt: str | None = None,
        chat_template: str | None = None,
        dfd_probability: bool | str = True,
        dfd_decision: str | None = None,
        batch_size: int | str = 1,
        response_cache: str | None = None,
        max_batch_size: int | None = None,
        **unknown: Any,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            response_cache=response_cache,
            max_batch_size=max_batch_size,
            device=device,
            **unknown,
        )
        if not pretrained:
            raise ValueError(f"{self.name}: model_args must name pretrained=<checkpoint path or hub id>")
        if str(dtype) != "auto" and str(dtype) not in DTYPES:
            raise ValueError(f"{self.name}: dtype must be auto or one of {sorted(DTYPES)}, not {dtype!r}")
        self.pretrained = local_path_or_hub_id(str(pretrained), arg="pretrained", adapter=self.name)
        self.chat_template = self._read_chat_template(str(chat_template)) if chat_template else None
        self.dtype_name = str(dtype)
        self.device_map = str(device_map) if device_map else None
        self.attn_implementation = attn_implementation or None
        self.trust_remote_code = as_bool(trust_remote_code)
        self.max_new_tokens = int(max_new_tokens) if max_new_tokens not in (None, "") else None
        self.system_prompt = self._resolve_system_prompt(str(system_prompt)) if system_prompt else None
        self.dfd_probability = as_bool(dfd_probability)
        self.dfd_decision = str(dfd_decision or self.default_dfd_decision)
        if self.dfd_decision not in DFD_DECISIONS:
            raise AdapterConfigError(
                f"{self.name}: dfd_decision must be one of {list(DFD_DECISIONS)}, not {dfd_decision!r}"
            )
        if self.device_map and self.world_size > 1:
            raise AdapterConfigError(
                f"{self.name}: device_map={self.device_map} spreads one model over the GPUs, but this run has "
                f"{self.world_size} processes, each answering its share on its own GPU: drop device_map, or run "
                "one process"
            )

        self.model, self.processor = self.load_model()
        self.model.eval()
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        # Left padding: every prompt then ends at the last column, where generation continues, so a
        # padded row's answer is the answer it gets alone (right padding would put pads between them).
        self.tokenizer.padding_side = "left"
        self.yes_ids, self.no_ids = answer_token_ids(self.tokenizer)
        if self.dfd_probability and self.dfd_decision == "yes_no" and not (self.yes_ids and self.no_ids):
            logger.warning(f"{self.name}: no distinct yes/no tokens in this vocabulary; DF-D answers get no score")
            self.dfd_probability = False
        self.eos_ids = self._eos_ids()
        if self.tokenizer.pad_token is None and self.tokenizer.eos_token is not None:
            # tokenizers without a pad token (many LLaMA ones) cannot pad a batch; pad with end-of-sequence
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.pad_id = self.tokenizer.pad_token_id
        # What identifies this model's answers in the response cache (paths and options, never secrets).
        # Device, attention kernel and batch size are left out: they change speed, not the answers meant.
        self.fingerprint = {
            "adapter": self.name,
            "pretrained": self.pretrained,
            "dtype": self.dtype_name,
            "max_new_tokens": self.max_new_tokens,
            "system_prompt": self.system_prompt,
            "dfd_probability": self.dfd_probability,
            "dfd_decision": self.dfd_decision,
        }
        if self.chat_template:
            self.fingerprint["chat_template"] = self.chat_template

    # -------------------------------------------------------------------------------- hooks

    def load_model(self) -> tuple[Any, Any]:
        """(model, processor) from `self.pretrained`, on the requested device and dtype."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from dfa_bench.adapters.pooled_vlm import register as register_pooled_vlm

        processor = self.load_processor(AutoProcessor)
        self.check_processor(processor)
        register_pooled_vlm()  # DFA-GPT-mini's pooled-token model type, if this is one
        model = AutoModelForImageTextToText.from_pretrained(self.pretrained, **self._from_pretrained_kwargs())
        return model, processor

    def load_processor(self, auto_class: Any, **kwargs: Any) -> Any:
        """`auto_class.from_pretrained(self.pretrained)`; a checkpoint without an image processor config
        is named as such (transformers' OSError reads like a download problem)."""
        try:
            return auto_class.from_pretrained(self.pretrained, trust_remote_code=self.trust_remote_code, **kwargs)
        except OSError as exc:
            if "image processor" not in str(exc):
                raise
            raise AdapterConfigError(
                f"{self.name}: {self.pretrained} has no image processor (no preprocessor_config.json or "
                "processor_config.json); DFA-Bench needs an image-text-to-text checkpoint"
            ) from None

    def check_processor(self, processor: Any) -> None:
        """What every item needs, checked once before the weights load: an image processor and a chat
        template (`chat_template=` supplies one). Without them every item would fail, one by one."""
        if self.chat_template:
            processor.chat_template = self.chat_template
        tokenizer = getattr(processor, "tokenizer", processor)
        if getattr(processor, "image_processor", None) is None:
            raise AdapterConfigError(
                f"{self.name}: {self.pretrained} has no image processor ({type(processor).__name__}); "
                "DFA-Bench needs an image-text-to-text checkpoint"
            )
        if not getattr(processor, "chat_template", None) and not getattr(tokenizer, "chat_template", None):
            raise AdapterConfigError(
                f"{self.name}: {self.pretrained} ships no chat template (neither its processor nor its tokenizer "
                "has one); pass chat_template=PATH to a Jinja template file, or use the checkpoint's chat/instruct "
                "release"
            )

    def build_messages(self, query: Query) -> list[dict]:
        """Chat-template messages: one image entry per image, then the question text."""
        text = query.prompt
        messages: list[dict] = []
        if self.system_prompt:
            if self._template_has_system():
                messages.append({"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
            else:  # a template that knows only user/assistant turns would mislabel a system turn
                text = f"{self.system_prompt}\n{text}"
        content = [{"type": "image"} for _ in query.images] + [{"type": "text", "text": text}]
        messages.append({"role": "user", "content": content})
        return messages

    def render_prompt(self, query: Query) -> str:
        """The prompt string the model sees, generation prompt included."""
        messages = self.build_messages(query)
        renderer = self.processor if getattr(self.processor, "chat_template", None) else self.tokenizer
        return renderer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def prepare_batch(self, queries: list[Query]) -> Any:
        """Processor outputs for a batch, left-padded, on the model's device and dtype."""
        images = [list(q.images) for q in queries] if any(q.images for q in queries) else None
        return self.encode([self.render_prompt(q) for q in queries], images)

    def encode(self, texts: list[str], images: list[list] | None) -> Any:
        """Rendered prompts and their images (per-sample lists) as model inputs on its device and dtype."""
        kwargs: dict[str, Any] = {"text": texts, "padding": True, "return_tensors": "pt"}
        if images:
            kwargs["images"] = images  # nested: per-sample lists (Idefics3, SmolVLM)
        batch = self.processor(**kwargs)
        device, dtype = self.input_device, self.model.dtype
        for key, value in batch.items():  # only floating tensors (pixel values) take the model dtype
            if isinstance(value, torch.Tensor):
                batch[key] = value.to(device, dtype=dtype) if value.is_floating_point() else value.to(device)
        return batch

    def decoding(self, gen_kwargs: dict) -> dict[str, Any]:
        """lmms-eval's generation_kwargs as `generate` settings (greedy unless a positive temperature)."""
        temperature = float(gen_kwargs.get("temperature") or 0)
        # lmms-eval's convention: a positive temperature samples unless do_sample is explicitly false
        do_sample = temperature > 0 and as_bool(gen_kwargs.get("do_sample", True))
        settings: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens or int(gen_kwargs.get("max_new_tokens") or 1024),
            "do_sample": do_sample,
            "num_beams": int(gen_kwargs.get("num_beams") or 1),
        }
        if do_sample:
            settings["temperature"] = temperature
            if gen_kwargs.get("top_p") is not None:
                settings["top_p"] = float(gen_kwargs["top_p"])
        return settings

    def generate(self, batch: Any, gen_kwargs: dict, *, first_logits: bool = False, **extra: Any) -> Any:
        """`model.generate` output: `sequences`, and per-step raw `logits` when `first_logits` is set.
        `extra` goes to `model.generate` as it is (a `streamer` for the interactive chat)."""
        kwargs: dict[str, Any] = {
            **self.decoding(gen_kwargs),
            "pad_token_id": self.pad_id,
            "return_dict_in_generate": True,
            # Raw first-step logits, not `scores`: scores are after logits processors (temperature,
            # top-p, repetition penalty), and P(yes) should be the model's, whatever the decoding.
            "output_logits": first_logits,
            **extra,
        }
        if not kwargs["do_sample"]:  # greedy: clear sampling defaults a checkpoint's generation_config may carry
            kwargs.update(temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            return self.model.generate(**batch, **kwargs)

    # -------------------------------------------------------------------------------- answering

    def answer(self, queries: list[Query]) -> list[Answer]:
        gen_kwargs = dict(queries[0].gen_kwargs)  # the base class batches by identical settings
        until = gen_kwargs.pop("until", None) or []
        until = [until] if isinstance(until, str) else list(until)
        want_scores = self.dfd_probability and any(q.task == "dfd" for q in queries)
        yes_no = want_scores and self.dfd_decision == "yes_no"
        batch = self.prepare_batch(queries)
        output = self.generate(batch, gen_kwargs, first_logits=yes_no)
        prompt_len = batch["input_ids"].shape[1]
        new_tokens = output.sequences[:, prompt_len:]
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        scores: dict[int, float] = {}
        if yes_no and getattr(output, "logits", None):
            first = output.logits[0]
            # beam search keeps num_beams rows per query; at the first step they are all the same
            first = first.view(len(queries), -1, first.shape[-1])[:, 0]
            p_yes = yes_probability(first, self.yes_ids, self.no_ids).tolist()
            scores = {
                i: forgery_probability(float(p_yes[i]), q.doc["polarity"])
                for i, q in enumerate(queries)
                if q.task == "dfd" and q.doc.get("polarity") in ("forged", "authentic")
            }
        elif want_scores:
            scores = self.reference_answer_scores(queries)
        input_counts = batch["attention_mask"].sum(dim=1).tolist()
        answers = []
        for i in range(len(queries)):
            score = scores.get(i)
            score = None if score is None or math.isnan(score) else score
            usage = {"input_tokens": int(input_counts[i]), "output_tokens": self._output_count(new_tokens[i])}
            answers.append(Answer(truncate_at_stops(texts[i], until).strip(), score=score, usage=usage))
        return answers

    def reference_answer_scores(self, queries: list[Query]) -> dict[int, float]:
        """P(forgery) per DF-D query (by index), read where its two reference answers (templates.dfd_answer)
        part after the prompt: both rendered with the chat template as training renders them, tokenized by
        the processor, and one forward of their shared prefix per batch. One image per query."""
        picked = [
            i for i, q in enumerate(queries) if q.task == "dfd" and q.doc.get("polarity") in ("forged", "authentic")
        ]
        if not picked:
            return {}
        renderer = self.processor if getattr(self.processor, "chat_template", None) else self.tokenizer
        texts, images = [], []
        for i in picked:
            messages = self.build_messages(queries[i])
            for label in ("forgery", "bona_fide"):
                answer = dfd_answer(queries[i].doc["polarity"], label)
                reply = {"role": "assistant", "content": [{"type": "text", "text": answer}]}
                texts.append(
                    renderer.apply_chat_template([*messages, reply], tokenize=False, add_generation_prompt=False)
                )
                images.append(list(queries[i].images))
        encoded = self.encode(texts, images if any(images) else None)
        prefixes, forged, bona = [], [], []
        for k, i in enumerate(picked):
            pair = [
                encoded["input_ids"][row][encoded["attention_mask"][row].bool()].tolist() for row in (2 * k, 2 * k + 1)
            ]
            what = f"{self.name}: item {queries[i].doc.get('question_id', i)}: its two DF-D reference answers"
            common, (forged_id, bona_id) = parting_point(pair, what)
            prefixes.append(pair[0][:common])
            forged.append(forged_id)
            bona.append(bona_id)
        extra = {key: value[::2] for key, value in encoded.items() if key not in ("input_ids", "attention_mask")}
        with torch.inference_mode():
            logits = next_token_logits(self.model, prefixes, self.pad_id, **extra)
        p_forgery = two_way_probability(logits, torch.tensor(forged), torch.tensor(bona))
        return {i: float(p) for i, p in zip(picked, p_forgery.tolist())}

    # -------------------------------------------------------------------------------- helpers

    @property
    def input_device(self) -> torch.device:
        """Where inputs go: the embedding's device (the first stage under a device_map)."""
        return self.model.get_input_embeddings().weight.device

    def _from_pretrained_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "dtype": "auto" if self.dtype_name == "auto" else DTYPES[self.dtype_name],
            "trust_remote_code": self.trust_remote_code,
            # a plain device as device_map loads the weights straight onto it (no detour through CPU memory)
            "device_map": self.device_map or self.device_name,
        }
        if self.attn_implementation:
            kwargs["attn_implementation"] = self.attn_implementation
        return kwargs

    def _read_chat_template(self, path: str) -> str:
        try:
            return Path(path).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AdapterConfigError(f"{self.name}: chat_template={path}: {exc}") from None

    def _template_has_system(self) -> bool:
        template = getattr(self.processor, "chat_template", None) or getattr(self.tokenizer, "chat_template", None)
        return "system" in str(template or "")

    def _eos_ids(self) -> list[int]:
        ids = getattr(self.model.generation_config, "eos_token_id", None)
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.append(self.tokenizer.eos_token_id)
        return ids

    def _output_count(self, tokens: torch.Tensor) -> int:
        """Generated tokens up to and including the first end-of-sequence; the rest is batch padding."""
        for position, token in enumerate(tokens.tolist()):
            if token in self.eos_ids:
                return position + 1
        return len(tokens)
