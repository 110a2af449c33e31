"""DFA-GPT: LLaVA-1.5 with LoRA and a trainable projector, tuned on DFA-Instruct."""
