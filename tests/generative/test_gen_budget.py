"""Prompts longer than the token budget keep their latest tokens (the question), not the start."""

from __future__ import annotations

from tunesmith.evaluate.generation import GenerationSettings, score_model
from tunesmith.evaluate.prompting import reply_rows
from tunesmith.records import ChatRecord, Message
from tunesmith.train.encoding import IGNORE_INDEX
from tunesmith.train.prompts import prompt_ids, response_ids

HISTORY = " ".join(f"old detail number {i}." for i in range(60))


def _long_chat():
    return ChatRecord(messages=(
        Message("user", HISTORY), Message("assistant", "Noted."),
        Message("user", "So what is the capital of France?"), Message("assistant", "Paris"),
    ))


def test_generation_prompts_over_the_budget_keep_their_latest_tokens(smol_tokenizer, tiny_llama):
    record = _long_chat()
    messages = [{"role": m.role, "content": m.content} for m in record.messages[:-1]]
    full = prompt_ids(smol_tokenizer, messages)
    max_length, new_tokens = 48, 4
    assert len(full) > 3 * max_length
    seen = []
    real_generate = tiny_llama.generate

    def generate_and_record(**kwargs):  # the real generate; the prompts it got are kept
        seen.append(kwargs["input_ids"][kwargs["attention_mask"].bool()].tolist())
        return real_generate(**kwargs)

    tiny_llama.generate = generate_and_record
    try:
        score_model(tiny_llama, smol_tokenizer, [record],
                    settings=GenerationSettings(max_new_tokens=new_tokens), max_length=max_length,
                    generation_limit=None)
    finally:
        del tiny_llama.generate
    assert seen == [full[-(max_length - new_tokens):]]
    assert "capital of France" in smol_tokenizer.decode(seen[0])


def test_scoring_rows_over_the_budget_drop_the_oldest_prompt_tokens(smol_tokenizer):
    record = _long_chat()
    messages = [{"role": m.role, "content": m.content} for m in record.messages[:-1]]
    (row,) = reply_rows(smol_tokenizer, [messages], ["Paris"], max_length=40)
    prompt, answer = prompt_ids(smol_tokenizer, messages), response_ids(smol_tokenizer, messages, "Paris")
    assert len(row["input_ids"]) == 40
    assert row["input_ids"] == (prompt + answer)[-40:]
    assert [t for t in row["labels"] if t != IGNORE_INDEX] == answer  # the reply is whole
