"""FastVLM's layout with the tower's feature map average-pooled to a few image tokens (DFA-GPT-mini's option).

`FastVlmForConditionalGeneration` flattens a convolutional tower's whole NCHW map into image tokens (49 at
224 px for EfficientNet-Lite0). This class pools that map to `image_seq_length` tokens (a square: 1, 4, 9...)
before the projector, as LLaVA-style models that compress their visual tokens do: the LM then reads what the
image holds as a whole, not each face's layout token by token, and each sample is 48 tokens shorter. Module
tree, processor (`LlavaProcessor` with patch_size = image size / tokens per side) and weights are FastVLM's.

It is a transformers model type of its own (`dfa_pooled_fast_vlm`), registered with the auto classes by
`register()`, which every loader here calls before `from_pretrained`.
"""

from __future__ import annotations

import math
from typing import Any

MODEL_TYPE = "dfa_pooled_fast_vlm"
_classes: dict[str, Any] = {}


def register() -> dict[str, Any]:
    """Register the pooled model type with AutoConfig and AutoModelForImageTextToText (idempotent);
    returns {"config": the config class, "model": the model class}."""
    if _classes:
        return _classes
    import torch.nn.functional as F
    from torch import nn
    from transformers import AutoConfig, AutoModelForImageTextToText, FastVlmConfig, FastVlmForConditionalGeneration
    from transformers.models.fast_vlm.modeling_fast_vlm import FastVlmModel, FastVlmPreTrainedModel
    from transformers.utils.generic import can_return_tuple, merge_with_config_defaults

    class PooledFastVlmConfig(FastVlmConfig):
        model_type = MODEL_TYPE

    class PooledFastVlmModel(FastVlmModel):
        config_class = PooledFastVlmConfig

        @merge_with_config_defaults  # as FastVlmModel's own: return_dict and friends from the config
        @can_return_tuple
        def get_image_features(self, pixel_values: Any, vision_feature_layer: Any = None,
                               vision_feature_select_strategy: Any = None, **kwargs: Any) -> Any:  # fmt: skip
            outputs = self.vision_tower(pixel_values, return_dict=True, **kwargs)
            side = math.isqrt(self.config.image_seq_length)
            grid = F.adaptive_avg_pool2d(outputs.last_hidden_state, side)  # (B, C, side, side)
            outputs.pooler_output = self.multi_modal_projector(grid.flatten(2).permute(0, 2, 1))
            return outputs

    class PooledFastVlmForConditionalGeneration(FastVlmForConditionalGeneration):
        config_class = PooledFastVlmConfig

        def __init__(self, config: PooledFastVlmConfig) -> None:
            FastVlmPreTrainedModel.__init__(self, config)  # FastVLM's own __init__ with the pooled inner model
            self.model = PooledFastVlmModel(config)
            self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
            self.post_init()

    AutoConfig.register(MODEL_TYPE, PooledFastVlmConfig)
    AutoModelForImageTextToText.register(PooledFastVlmConfig, PooledFastVlmForConditionalGeneration)
    _classes.update(config=PooledFastVlmConfig, model=PooledFastVlmForConditionalGeneration)
    return _classes
