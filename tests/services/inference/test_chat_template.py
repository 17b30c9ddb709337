"""Chat templates come from the GGUF file and render exactly as the model's authors publish them."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from services.inference.chat_template import ChatTemplate, ChatTurn
from services.inference.gguf_meta import read_gguf
from services.runtime.errors import InvalidArgument

# Mistral-7B-Instruct's `chat_template` as published in its tokenizer_config.json (and GGUF files).
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)


def tiny_mistral_gguf(path: Path) -> Path:
    """A GGUF file with Mistral's metadata and template and no tensors."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(32768)
    writer.add_embedding_length(4096)
    writer.add_file_type(15)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(["<unk>", "<s>", "</s>"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template(MISTRAL_TEMPLATE)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_mistral_template_renders_inst_blocks_from_the_gguf_file(tmp_path: Path) -> None:
    facts = read_gguf(tiny_mistral_gguf(tmp_path / "mistral.gguf"))
    assert (facts.architecture, facts.quantization, facts.bos_token, facts.eos_token) == (
        "llama",
        "Q4_K_M",
        "<s>",
        "</s>",
    )
    template = ChatTemplate.from_gguf(facts)
    assert template is not None
    rendered = template.render(
        [ChatTurn("user", "What is 2+2?"), ChatTurn("assistant", "4"), ChatTurn("user", "And 3+3?")]
    )
    assert rendered.text == "<s>[INST] What is 2+2? [/INST]4</s> [INST] And 3+3? [/INST]"
    assert rendered.has_special_tokens  # BOS is in the text: the tokenizer must not add another


def test_a_template_that_refuses_the_roles_names_the_field(tmp_path: Path) -> None:
    template = ChatTemplate.from_gguf(read_gguf(tiny_mistral_gguf(tmp_path / "mistral.gguf")))
    assert template is not None
    with pytest.raises(InvalidArgument) as info:
        template.render([ChatTurn("assistant", "Hi"), ChatTurn("assistant", "again")], field="messages")
    assert info.value.field == "messages"
