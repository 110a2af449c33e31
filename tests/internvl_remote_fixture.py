"""A tiny local "remote code" InternVL checkpoint (model_type internvl_chat), for tests of dfa_internvl.

`write_remote_internvl(dir)` writes what an original InternVL release ships: a config.json whose
`auto_map` names a configuration_*.py and a modeling_*.py in the same folder, the weights, and a
tokenizer. `AutoModel.from_pretrained(dir, trust_remote_code=True)` then really imports and runs that
code. The model keeps the real `chat()` / `batch_chat()` signatures and prompt handling (ChatML template,
`<image>` expanded to `<img>` + `<IMG_CONTEXT>` x num_image_token x tiles + `</img>`, left-padded batches)
over a tiny bag-of-embeddings language model, so its answers depend on both the pixels and the question.
"""

from __future__ import annotations

import json
from pathlib import Path

CONFIGURATION = """
from transformers import PretrainedConfig


class InternVLChatConfig(PretrainedConfig):
    model_type = "internvl_chat"

    def __init__(self, vision_config=None, llm_config=None, force_image_size=None, num_image_token=4,
                 hidden_size=16, vocab_size=400, template="internvl2_5", dynamic_image_size=False,
                 use_thumbnail=False, min_dynamic_patch=1, max_dynamic_patch=6, **kwargs):
        super().__init__(**kwargs)
        self.vision_config = vision_config or {"image_size": 448}
        self.llm_config = llm_config or {}
        self.force_image_size = force_image_size
        self.num_image_token = num_image_token
        self.hidden_size = hidden_size
        self.vocab_size = vocab_size
        self.template = template
        self.dynamic_image_size = dynamic_image_size
        self.use_thumbnail = use_thumbnail
        self.min_dynamic_patch = min_dynamic_patch
        self.max_dynamic_patch = max_dynamic_patch
"""

MODELING = """
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from .configuration_internvl_chat import InternVLChatConfig

SEP = "<|im_end|>"


def chatml(system_message, question):
    return (f"<|im_start|>system\\n{system_message}{SEP}\\n<|im_start|>user\\n{question}{SEP}\\n"
            "<|im_start|>assistant\\n")


class InternVLChatModel(PreTrainedModel):
    config_class = InternVLChatConfig
    main_input_name = "pixel_values"
    _no_split_modules = []

    def __init__(self, config):
        super().__init__(config)
        self.template = config.template
        self.num_image_token = config.num_image_token
        self.system_message = "You are a tiny test model."
        self.img_context_token_id = None
        hidden = config.hidden_size
        self.vision_model = nn.Linear(3 * 4 * 4, hidden)
        self.mlp1 = nn.Linear(hidden, hidden * config.num_image_token)
        self.embed = nn.Embedding(config.vocab_size, hidden)
        self.mix = nn.Linear(2 * hidden, hidden)
        self.lm_head = nn.Linear(hidden, config.vocab_size)
        self.calls = []  # (method, number of questions): lets tests see which entry point answered
        self.post_init()

    def extract_feature(self, pixel_values):
        pooled = F.adaptive_avg_pool2d(pixel_values.float(), 4).flatten(1)
        features = self.mlp1(torch.tanh(self.vision_model(pooled)))
        return features.view(len(pixel_values), self.num_image_token, -1)

    def _greedy(self, input_ids, image_embeds, max_new_tokens, eos_token_id):
        # a bag-of-embeddings "language model": the mean prompt embedding (image features included) is the
        # context, each step mixes it with the previous token, so every prompt token and pixel counts
        embeds = self.embed(input_ids)
        if image_embeds is not None:
            mask = input_ids == self.img_context_token_id
            assert int(mask.sum()) == image_embeds.shape[0] * image_embeds.shape[1], "image tokens != tiles"
            embeds[mask] = image_embeds.reshape(-1, embeds.shape[-1])
        context, previous = embeds.mean(0), embeds[-1]
        tokens = []
        for _ in range(max_new_tokens):
            hidden = torch.tanh(self.mix(torch.cat([context, previous])))
            token = int(self.lm_head(hidden).argmax())
            if token == eos_token_id:
                break
            tokens.append(token)
            previous = self.embed.weight[token]
            context = context + hidden / (len(tokens) + 1)
        return tokens

    def _query(self, question, num_patches_list, start, end, context):
        query = chatml(self.system_message, question)
        for num_patches in num_patches_list:
            query = query.replace("<image>", start + context * self.num_image_token * num_patches + end, 1)
        return query

    @torch.no_grad()
    def chat(self, tokenizer, pixel_values, question, generation_config, history=None, return_history=False,
             num_patches_list=None, IMG_START_TOKEN="<img>", IMG_END_TOKEN="</img>",
             IMG_CONTEXT_TOKEN="<IMG_CONTEXT>", verbose=False):
        self.calls.append(("chat", 1))
        if history is None and pixel_values is not None and "<image>" not in question:
            question = "<image>\\n" + question
        if num_patches_list is None:
            num_patches_list = [pixel_values.shape[0]] if pixel_values is not None else []
        assert pixel_values is None or len(pixel_values) == sum(num_patches_list)
        self.img_context_token_id = tokenizer.convert_tokens_to_ids(IMG_CONTEXT_TOKEN)
        query = self._query(question, num_patches_list, IMG_START_TOKEN, IMG_END_TOKEN, IMG_CONTEXT_TOKEN)
        input_ids = tokenizer(query, return_tensors="pt")["input_ids"][0].to(self.device)
        generation_config["eos_token_id"] = tokenizer.convert_tokens_to_ids(SEP)
        image_embeds = self.extract_feature(pixel_values) if pixel_values is not None else None
        tokens = self._greedy(input_ids, image_embeds, generation_config["max_new_tokens"],
                              generation_config["eos_token_id"])
        response = tokenizer.decode(tokens, skip_special_tokens=True).split(SEP)[0].strip()
        return (response, (history or []) + [(question, response)]) if return_history else response

    @torch.no_grad()
    def batch_chat(self, tokenizer, pixel_values, questions, generation_config, num_patches_list=None,
                   history=None, return_history=False, IMG_START_TOKEN="<img>", IMG_END_TOKEN="</img>",
                   IMG_CONTEXT_TOKEN="<IMG_CONTEXT>", verbose=False, image_counts=None):
        if history is not None or return_history:
            raise NotImplementedError
        if image_counts is not None:
            num_patches_list = image_counts
        self.calls.append(("batch_chat", len(questions)))
        self.img_context_token_id = tokenizer.convert_tokens_to_ids(IMG_CONTEXT_TOKEN)
        queries = []
        for idx, num_patches in enumerate(num_patches_list):
            question = questions[idx]
            if pixel_values is not None and "<image>" not in question:
                question = "<image>\\n" + question
            queries.append(self._query(question, [num_patches], IMG_START_TOKEN, IMG_END_TOKEN, IMG_CONTEXT_TOKEN))
        tokenizer.padding_side = "left"
        model_inputs = tokenizer(queries, return_tensors="pt", padding=True)
        generation_config["eos_token_id"] = tokenizer.convert_tokens_to_ids(SEP)
        image_embeds = self.extract_feature(pixel_values)
        responses, first = [], 0
        for row, num_patches in enumerate(num_patches_list):
            ids = model_inputs["input_ids"][row][model_inputs["attention_mask"][row].bool()].to(self.device)
            tokens = self._greedy(ids, image_embeds[first : first + num_patches],
                                  generation_config["max_new_tokens"], generation_config["eos_token_id"])
            first += num_patches
            responses.append(tokenizer.decode(tokens, skip_special_tokens=True).split(SEP)[0].strip())
        return responses
"""


def write_remote_internvl(
    output: Path | str,
    *,
    seed: int = 0,
    image_size: int = 28,
    dynamic_image_size: bool = True,
    max_dynamic_patch: int = 6,
) -> Path:
    """Write the checkpoint into `output` (created) and return it."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModel

    from dfa_bench.tiny_models import build_internvl_tokenizer

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "configuration_internvl_chat.py").write_text(CONFIGURATION)
    (output / "modeling_internvl_chat.py").write_text(MODELING)
    tokenizer = build_internvl_tokenizer()
    tokenizer.chat_template = None  # the originals render prompts in code (conversation.py), not Jinja
    tokenizer.save_pretrained(output)
    config = {
        "architectures": ["InternVLChatModel"],
        "auto_map": {
            "AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
            "AutoModel": "modeling_internvl_chat.InternVLChatModel",
        },
        "model_type": "internvl_chat",
        "vision_config": {"image_size": 448},  # overridden by force_image_size, as in the real configs
        "force_image_size": image_size,
        "num_image_token": 4,
        "hidden_size": 16,
        "vocab_size": len(tokenizer),
        "template": "internvl2_5",
        "dynamic_image_size": dynamic_image_size,
        "use_thumbnail": True,
        "min_dynamic_patch": 1,
        "max_dynamic_patch": max_dynamic_patch,
        "torch_dtype": "float32",
    }
    (output / "config.json").write_text(json.dumps(config, indent=2))
    model = AutoModel.from_config(AutoConfig.from_pretrained(output, trust_remote_code=True), trust_remote_code=True)
    generator = torch.Generator().manual_seed(seed)
    # wide random weights: answers then hinge on clear logit margins and differ between inputs
    state = {name: torch.randn(p.shape, generator=generator) * 0.5 for name, p in model.state_dict().items()}
    save_file(state, str(output / "model.safetensors"), metadata={"format": "pt"})
    return output
