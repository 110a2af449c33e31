"""Tiny random checkpoints built from transformers config objects, for tests and the demo.

Nothing is downloaded: the tokenizer is trained in-process on a few sentences, the weights are
random, and the result is saved with `save_pretrained` so callers load it back through the real
`from_pretrained` path, exactly like a hub checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from dfa_bench.chat_templates import VICUNA_CHAT_TEMPLATE

_CORPUS = [
    "Yes. This face image is forged.",
    "No. This face image is a bona fide, unmanipulated face.",
    "A. B. C. D. E. Face swapping (FS). Face reenactment (FR). Face editing (FE). Entire face synthesis (EFS).",
    "1. Eyes: a visible blending seam. 2. Mouth and lips: colour mismatch. 3. Cheeks and jawline: warping.",
    "USER: ASSISTANT: Is this face real or fake? Answer yes or no.",
]


def _bpe(vocab_size: int, special_tokens: list[str]):
    """A byte-level BPE tokenizer (the `tokenizers` object) trained in-process on a few sentences."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special_tokens, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(_CORPUS, trainer)
    return tokenizer


def build_tokenizer(vocab_size: int = 400):
    """A byte-level BPE tokenizer with LLaVA's special tokens, trained on a few sentences."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=_bpe(vocab_size, ["<unk>", "<s>", "</s>", "<pad>", "<image>"]),
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
        chat_template=VICUNA_CHAT_TEMPLATE,
    )


def build_tiny_llava(
    output: Path | str, *, seed: int = 0, image_size: int = 30, patch_size: int = 6, initializer_range: float = 0.02
) -> Path:
    """Save a random LlavaForConditionalGeneration (CLIP vision tower + Llama LM) with its processor.

    A wider `initializer_range` (e.g. 0.2) spreads the frozen `lm_head`'s logits, so that a LoRA on the
    decoder can move them: training tests need it, at 0.02 the loss stays near log(vocab)."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    output = Path(output)
    tokenizer = build_tokenizer()
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=image_size, patch_size=patch_size, projection_dim=32,
    )  # fmt: skip
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, initializer_range=initializer_range,
    )  # fmt: skip
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=VICUNA_CHAT_TEMPLATE,
    )
    model.save_pretrained(output)
    processor.save_pretrained(output)
    return output


# The chat template transformers' InternVL conversion script gives the "-hf" checkpoints (ChatML turns;
# the image becomes one <IMG_CONTEXT> that the processor expands to <img>, the context tokens, </img>).
INTERNVL_CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{'<|im_end|>\n'}}{% endfor %}{% if add_generation_prompt %}{{'<|im_start|>assistant\n' }}{% endif %}"
)
# The named image tokens InternVLProcessor reads from its tokenizer (the -hf tokenizers carry them too).
INTERNVL_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}


def build_internvl_tokenizer(vocab_size: int = 400):
    """A byte-level BPE tokenizer with Qwen2's ChatML specials and InternVL's image tokens."""
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *INTERNVL_TOKENS.values()]
    return PreTrainedTokenizerFast(
        tokenizer_object=_bpe(vocab_size, specials),
        eos_token="<|im_end|>",  # Qwen2 chat models stop at the end of the assistant turn
        pad_token="<|endoftext|>",
        extra_special_tokens=dict(INTERNVL_TOKENS),
        chat_template=INTERNVL_CHAT_TEMPLATE,
    )


def build_tiny_internvl(
    output: Path | str, *, seed: int = 0, image_size: int = 28, patch_size: int = 7, max_patches: int = 4
) -> Path:
    """Save a random transformers-native InternVLForConditionalGeneration (InternVL3-hf layout) with its processor.

    InternViT-style vision tower + Qwen2 LM + pixel-shuffle MLP projector, a GotOcr2 image processor that
    tiles images like InternVL's dynamic preprocessing (`max_patches` tiles plus a thumbnail, ImageNet
    mean/std), and an InternVLProcessor with the ChatML template of the converted checkpoints.
    """
    import torch
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
        InternVLVisionConfig,
        Qwen2Config,
    )

    output = Path(output)
    tokenizer = build_internvl_tokenizer()
    downsample_ratio = 0.5
    # image tokens per tile after the pixel shuffle, which folds each 2x2 patch block into one token
    image_seq_length = int((image_size // patch_size) ** 2 * downsample_ratio**2)
    vision = InternVLVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        image_size=image_size, patch_size=patch_size,
    )  # fmt: skip
    # A wider initialisation than the default 0.02 spreads the random LM's logits, so greedy answers are
    # decided by clear margins (not float noise) and differ between prompts and images.
    text = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=2048, bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True, initializer_range=0.2,
    )  # fmt: skip
    config = InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.context_image_token_id,
        image_seq_length=image_seq_length,
        downsample_ratio=downsample_ratio,
    )
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    size = {"height": image_size, "width": image_size}
    image_processor = GotOcr2ImageProcessor(
        size=size, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], max_patches=max_patches
    )
    processor = InternVLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(size=size),
        image_seq_length=image_seq_length,
        chat_template=INTERNVL_CHAT_TEMPLATE,
    )
    model.save_pretrained(output)
    processor.save_pretrained(output)
    return output
