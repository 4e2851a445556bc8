"""Prompt building and the response-only label mask, token by token on a known chat."""

from __future__ import annotations

import copy

import pytest

from tunesmith.errors import DataError
from tunesmith.evaluate.prompting import few_shot_turns, prompt_messages, reference
from tunesmith.records import (
    ChatRecord,
    ClassificationRecord,
    InstructionRecord,
    Message,
    QARecord,
)
from tunesmith.train.causal import encode_messages, encode_records
from tunesmith.train.encoding import IGNORE_INDEX
from tunesmith.train.prompts import prompt_ids, record_messages, render_segments, response_ids

CHAT = [
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "How?"},
    {"role": "assistant", "content": "Fine."},
]


def _labelled_pieces(tokenizer, example):
    """The decoded runs of consecutive labelled tokens."""
    pieces, run = [], []
    for token, label in zip(example["input_ids"], example["labels"], strict=True):
        if label == IGNORE_INDEX:
            if run:
                pieces.append(tokenizer.decode(run))
                run = []
        else:
            assert label == token  # labels are the tokens themselves; the loss shifts them
            run.append(token)
    if run:
        pieces.append(tokenizer.decode(run))
    return pieces


def test_chat_template_labels_every_assistant_turn_and_its_eos(smol_tokenizer):
    example = encode_messages(smol_tokenizer, CHAT)
    # The ids spell exactly what the model's own chat template renders.
    assert smol_tokenizer.decode(example["input_ids"]) == smol_tokenizer.apply_chat_template(CHAT, tokenize=False)
    assert _labelled_pieces(smol_tokenizer, example) == ["Hello!<|im_end|>", "Fine.<|im_end|>"]
    # Token by token: what is learned is the reply and the end-of-turn token, nothing else.
    tokens = smol_tokenizer.convert_ids_to_tokens(example["input_ids"])
    learned = [t for t, label in zip(tokens, example["labels"], strict=True) if label != IGNORE_INDEX]
    assert learned == ["Hello", "!", "<|im_end|>", "Fine", ".", "<|im_end|>"]
    # The newline the template prints after <|im_end|> is not learned (generation stops at EOS).
    end = example["input_ids"].index(smol_tokenizer.eos_token_id, len(example["input_ids"]) - 3)
    assert example["labels"][end] == smol_tokenizer.eos_token_id
    assert example["labels"][end + 1 :] == [IGNORE_INDEX]


def test_plain_template_without_chat_template(smol_tokenizer):
    plain = copy.deepcopy(smol_tokenizer)
    plain.chat_template = None
    segments = render_segments(plain, CHAT[:2])
    bos, eos = plain.bos_token, plain.eos_token
    assert segments == [
        (f"{bos}### User:\nHi there\n\n### Assistant:\n", False),
        (f"Hello!{eos}\n\n", True),
    ]
    example = encode_messages(plain, CHAT)
    assert _labelled_pieces(plain, example) == [f"Hello!{eos}", f"Fine.{eos}"]


def test_eos_is_added_when_the_template_does_not_end_turns_with_it(smol_tokenizer):
    tok = copy.deepcopy(smol_tokenizer)
    # A template that closes turns with a newline only.
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
    )
    example = encode_messages(tok, CHAT[:2])
    assert example["input_ids"][-1] == tok.eos_token_id
    assert _labelled_pieces(tok, example) == ["Hello!\n<|im_end|>"]


def test_template_that_rewrites_earlier_turns_is_refused(smol_tokenizer):
    tok = copy.deepcopy(smol_tokenizer)
    # Prints the number of messages first, so each rendering differs from the previous one.
    tok.chat_template = "{{ messages|length }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(DataError, match="turn by turn"):
        encode_messages(tok, CHAT)


def test_record_messages_for_each_format():
    assert record_messages(InstructionRecord(instruction="Translate", input="Hello", output="Bonjour")) == [
        {"role": "user", "content": "Translate\n\nHello"},
        {"role": "assistant", "content": "Bonjour"},
    ]
    assert record_messages(InstructionRecord(instruction="Say hi", output="hi"))[0]["content"] == "Say hi"
    assert record_messages(QARecord(question="Capital?", answer="Paris", context="France..."))[0] == {
        "role": "user",
        "content": "Context: France...\n\nQuestion: Capital?",
    }
    assert record_messages(QARecord(question="Capital?", answer="Paris"))[0]["content"] == "Capital?"
    classification = record_messages(ClassificationRecord(text="Great film", label="fresh"), ["fresh", "rotten"])
    assert classification[0]["content"] == (
        "Classify the text as one of: fresh, rotten. Answer with the label only.\n\nText: Great film"
    )
    assert classification[1] == {"role": "assistant", "content": "fresh"}


def test_prompt_and_response_ids_join_into_the_training_encoding(smol_tokenizer):
    messages = CHAT[:3]
    full = encode_messages(smol_tokenizer, CHAT)
    prompt = prompt_ids(smol_tokenizer, messages)
    reply = response_ids(smol_tokenizer, messages, "Fine.")
    assert full["input_ids"][: len(prompt)] == prompt
    assert full["input_ids"][len(prompt) : len(prompt) + len(reply)] == reply
    assert reply[-1] == smol_tokenizer.eos_token_id


def test_truncation_cuts_the_end_and_drops_examples_left_without_a_response(smol_tokenizer):
    short = QARecord(question="Who?", answer="Me")
    long = QARecord(question="word " * 200, answer="Me")
    encoded = encode_records([short, long], smol_tokenizer, max_length=64)
    assert encoded.n_truncated == 1 and encoded.n_dropped == 1
    assert len(encoded.examples) == 1 and encoded.lengths == [len(encoded.examples[0]["input_ids"])]


def test_few_shot_examples_come_from_train_in_the_prompt_before_the_question():
    train = [QARecord(question=f"q{i}", answer=f"a{i}") for i in range(10)]
    shots = few_shot_turns(train, 3, seed=1)
    assert len(shots) == 6 and [m["role"] for m in shots] == ["user", "assistant"] * 3
    assert {m["content"] for m in shots[::2]} <= {r.question for r in train}
    assert few_shot_turns(train, 3, seed=1) == shots  # deterministic by seed
    test = ChatRecord(messages=(
        Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hey"),
    ))
    messages = prompt_messages(test, shots)
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert messages[1:-1] == shots and messages[-1] == {"role": "user", "content": "Hi"}
    assert reference(test) == "Hey"
    assert few_shot_turns(train, 0, seed=1) == []
