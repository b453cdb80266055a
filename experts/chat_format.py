"""Turning chat messages into a prompt string with the model's own chat template."""

from __future__ import annotations


def render_chat(tokenizer, messages: list[dict[str, str]]) -> str:
    """Apply the tokenizer's chat template; models without one get a plain role-prefixed transcript."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"
